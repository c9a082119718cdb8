//! Exception syndrome decoding: ESR_EL2 into words for the EL2 exception report.
//!
//! Names follow the Arm ARM (DDI 0487) D19.2.41, "ESR_EL2, Exception Syndrome Register
//! (EL2)", field EC.

/// Exception classes (ESR_EL2.EC) Mica handles by name.
pub mod class {
    /// Trapped WFI or WFE (HCR_EL2.TWI/TWE).
    pub const WFX: u8 = 0x01;
    /// HVC from AArch64: a hypercall (ELR already points past it).
    pub const HVC64: u8 = 0x16;
    /// SMC from AArch64, trapped by HCR_EL2.TSC (ELR points at it).
    pub const SMC64: u8 = 0x17;
    /// A trapped MSR, MRS or system instruction (AArch64).
    pub const SYSREG: u8 = 0x18;
    /// An instruction abort from a lower exception level (a stage-2 fault on fetch).
    pub const INSTRUCTION_ABORT_LOWER: u8 = 0x20;
    /// A data abort from a lower exception level (a stage-2 fault on a load or store).
    pub const DATA_ABORT_LOWER: u8 = 0x24;
}

/// The exception class field, ESR_EL2[31:26].
pub fn exception_class(esr: u64) -> u8 {
    ((esr >> 26) & 0x3F) as u8
}

/// The instruction-specific syndrome, ESR_EL2[24:0].
pub fn iss(esr: u64) -> u32 {
    (esr & 0x1FF_FFFF) as u32
}

/// The exception class in words.
pub fn class_name(ec: u8) -> &'static str {
    match ec {
        0x00 => "unknown reason",
        class::WFX => "trapped WFI/WFE",
        0x07 => "trapped SVE/SIMD/FP access",
        0x0E => "illegal execution state",
        0x11 | 0x15 => "SVC instruction",
        0x12 | 0x16 => "HVC instruction",
        0x13 | 0x17 => "SMC instruction",
        0x18 => "trapped MSR/MRS/system instruction",
        0x19 => "trapped SVE access",
        0x20 => "instruction abort from a lower exception level",
        0x21 => "instruction abort without a change in exception level",
        0x22 => "PC alignment fault",
        0x24 => "data abort from a lower exception level",
        0x25 => "data abort without a change in exception level",
        0x26 => "SP alignment fault",
        0x28 | 0x2C => "trapped floating-point exception",
        0x2F => "SError interrupt",
        0x30 | 0x31 => "breakpoint",
        0x32 | 0x33 => "software step",
        0x34 | 0x35 => "watchpoint",
        0x38 | 0x3C => "BRK instruction",
        _ => "reserved or unrecognised exception class",
    }
}

/// For aborts (EC 0x20-0x25): the fault status code ISS[5:0] in words.
pub fn fault_status_name(esr: u64) -> Option<&'static str> {
    let ec = exception_class(esr);
    if !(0x20..=0x25).contains(&ec) {
        return None;
    }
    let fsc = iss(esr) & 0x3F;
    Some(match fsc {
        0x00..=0x03 => "address size fault",
        0x04..=0x07 => "translation fault",
        0x09..=0x0B => "access flag fault",
        0x0D..=0x0F => "permission fault",
        0x10 => "synchronous external abort",
        0x21 => "alignment fault",
        0x30 => "TLB conflict abort",
        _ => "other fault",
    })
}

/// For data aborts: whether the access was a write (ISS.WnR, bit 6).
pub fn is_write(esr: u64) -> bool {
    iss(esr) & (1 << 6) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_level_1_translation_fault_on_read() {
        // What QEMU reports for `ldr x0, [unmapped]` at EL2 with the MMU on.
        let esr = 0x9600_0005;
        assert_eq!(exception_class(esr), 0x25);
        assert_eq!(
            class_name(0x25),
            "data abort without a change in exception level"
        );
        assert_eq!(fault_status_name(esr), Some("translation fault"));
        assert!(!is_write(esr));
        assert!(is_write(esr | 1 << 6));
    }

    #[test]
    fn every_class_has_a_name_and_non_aborts_have_no_fault_status() {
        for ec in 0..64u8 {
            assert!(!class_name(ec).is_empty());
        }
        assert_eq!(fault_status_name(0x5A00_0000), None, "HVC is not an abort");
        assert_eq!(class_name(0x16), "HVC instruction");
    }
}
