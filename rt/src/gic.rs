//! The guest side of the virtual GICv3 and virtual timer every Mica domain has.
//!
//! Mica emulates a GICv3 distributor at [`GICD_BASE`] and one redistributor per vCPU from
//! [`GICR_BASE`] (QEMU `virt`'s addresses); the CPU interface is the hardware's virtual one,
//! reached through the `ICC_*_EL1` system registers. The register accessors here are safe:
//! they only touch those windows (anything else is refused) and system registers whose
//! effects are confined to the domain. Register offsets and bits are the GICv3
//! architecture's (IHI 0069).

/// Guest-physical address of the distributor (64 KiB).
pub const GICD_BASE: u64 = mica_abi::layout::devices::GICD_BASE;
/// Guest-physical address of vCPU 0's redistributor; vCPU `i`'s is `i` strides higher.
pub const GICR_BASE: u64 = mica_abi::layout::devices::GICR_BASE;
/// Bytes per redistributor: RD_base frame then SGI_base frame.
pub const GICR_STRIDE: u64 = mica_abi::layout::devices::GICR_STRIDE;
/// Offset of the SGI_base frame within a redistributor.
pub const SGI_FRAME: u64 = 0x1_0000;
/// The end of the redistributor region for the most vCPUs a domain has.
const GICR_END: u64 = GICR_BASE + 8 * GICR_STRIDE;

/// Whether `[ipa, ipa + size)` lies in the GIC windows and is naturally aligned.
fn in_windows(ipa: u64, size: u64) -> bool {
    let inside = |base: u64, end: u64| ipa >= base && ipa.saturating_add(size) <= end;
    ipa.is_multiple_of(size)
        && (inside(GICD_BASE, GICD_BASE + mica_abi::layout::devices::GICD_SIZE)
            || inside(GICR_BASE, GICR_END))
}

/// Reads the 32-bit GIC register at `ipa` (0 outside the windows).
pub fn read32(ipa: u64) -> u32 {
    if !in_windows(ipa, 4) {
        return 0;
    }
    // SAFETY: `ipa` is an aligned register of the emulated GIC, which no Rust object
    // occupies (the domain's RAM starts at 0x4000_0000); the MMU is off or maps it flat, and
    // a read only traps to the hypervisor's emulation.
    unsafe { core::ptr::read_volatile(ipa as *const u32) }
}

/// Writes the 32-bit GIC register at `ipa` (ignored outside the windows).
pub fn write32(ipa: u64, value: u32) {
    if in_windows(ipa, 4) {
        // SAFETY: as in `read32`.
        unsafe { core::ptr::write_volatile(ipa as *mut u32, value) }
    }
}

/// Reads the 64-bit GIC register at `ipa` (0 outside the windows).
pub fn read64(ipa: u64) -> u64 {
    if !in_windows(ipa, 8) {
        return 0;
    }
    // SAFETY: as in `read32`.
    unsafe { core::ptr::read_volatile(ipa as *const u64) }
}

/// Writes two consecutive 32-bit GIC registers at `ipa` with one `stp` (an access the
/// hypervisor must decode from the instruction: the syndrome does not describe pairs).
pub fn write_pair32(ipa: u64, first: u32, second: u32) {
    if in_windows(ipa, 8) {
        // SAFETY: as in `read32`, for the 8 bytes at `ipa`; the asm only stores there.
        unsafe {
            core::arch::asm!("stp {0:w}, {1:w}, [{2}]", in(reg) first, in(reg) second,
                in(reg) ipa, options(nostack, preserves_flags));
        }
    }
}

/// Reads two consecutive 32-bit GIC registers at `ipa` with one `ldp`.
pub fn read_pair32(ipa: u64) -> (u32, u32) {
    if !in_windows(ipa, 8) {
        return (0, 0);
    }
    let (first, second): (u32, u32);
    // SAFETY: as in `read32`, for the 8 bytes at `ipa`; the asm only loads from there.
    unsafe {
        core::arch::asm!("ldp {0:w}, {1:w}, [{2}]", out(reg) first, out(reg) second,
            in(reg) ipa, options(nostack, preserves_flags, readonly));
    }
    (first, second)
}

macro_rules! sysreg_read {
    ($reg:literal) => {{
        let v: u64;
        // SAFETY: reading this EL1/EL0 system register has no side effect on memory.
        unsafe { core::arch::asm!(concat!("mrs {0}, ", $reg), out(reg) v, options(nomem, nostack, preserves_flags)) };
        v
    }};
}

macro_rules! sysreg_write {
    ($reg:literal, $val:expr) => {{
        let v: u64 = $val;
        // SAFETY: this EL1/EL0 register controls only the vCPU's virtual interrupt interface
        // or virtual timer; writing it cannot touch memory.
        unsafe { core::arch::asm!(concat!("msr ", $reg, ", {0}"), "isb", in(reg) v, options(nostack, preserves_flags)) };
    }};
}

/// This vCPU's MPIDR affinity (Aff0 is its index in the domain under Mica).
pub fn affinity() -> u64 {
    sysreg_read!("mpidr_el1") & 0xFF_00FF_FFFF
}

/// ICC_SRE_EL1: enables the system-register interface (SRE, bit 0).
pub fn enable_system_registers() {
    sysreg_write!("s3_0_c12_c12_5", 1);
}

/// ICC_PMR_EL1: interrupts with a priority value below `mask` are signalled.
pub fn set_priority_mask(mask: u8) {
    sysreg_write!("s3_0_c4_c6_0", u64::from(mask));
}

/// ICC_BPR1_EL1: the Group 1 binary point.
pub fn set_binary_point(value: u8) {
    sysreg_write!("s3_0_c12_c12_3", u64::from(value));
}

/// ICC_IGRPEN1_EL1: Group 1 interrupts on or off.
pub fn enable_group1(on: bool) {
    sysreg_write!("s3_0_c12_c12_7", u64::from(on));
}

/// ICC_IAR1_EL1: acknowledges the highest-priority pending Group 1 interrupt; its INTID,
/// or `None` if nothing is pending (1020-1023).
pub fn acknowledge() -> Option<u32> {
    let intid = (sysreg_read!("s3_0_c12_c12_0") & 0xFF_FFFF) as u32;
    (intid < 1020).then_some(intid)
}

/// ICC_EOIR1_EL1: ends `intid` (priority drop and, with EOImode 0, deactivation).
pub fn end_of_interrupt(intid: u32) {
    sysreg_write!("s3_0_c12_c12_1", u64::from(intid));
}

/// ICC_SGI1R_EL1: sends Group 1 SGI `intid` (0-15) to the vCPUs of this domain whose
/// Aff0 is set in `targets` (Aff3-Aff1 = 0, range selector 0).
pub fn send_sgi(intid: u8, targets: u16) {
    sysreg_write!(
        "s3_0_c12_c11_5",
        u64::from(intid & 0xF) << 24 | u64::from(targets)
    );
}

/// CNTFRQ_EL0: the counter frequency.
pub fn counter_hz() -> u64 {
    sysreg_read!("cntfrq_el0")
}

/// CNTVCT_EL0: this domain's clock, in [`counter_hz`] ticks (the physical count less the
/// domain's offset: the time it was created for a domain created at run time, none for one
/// of the boot image).
pub fn virtual_count() -> u64 {
    sysreg_read!("cntvct_el0")
}

/// This domain's clock ([`virtual_count`]) in nanoseconds.
pub fn now_ns() -> u64 {
    let ns = u128::from(virtual_count()) * 1_000_000_000 / u128::from(counter_hz().max(1));
    ns.min(u128::from(u64::MAX)) as u64
}

/// Arms the virtual timer to fire in `ticks` counter ticks (CNTV_TVAL_EL0, then
/// CNTV_CTL_EL0 = ENABLE).
pub fn arm_virtual_timer(ticks: u32) {
    sysreg_write!("cntv_tval_el0", u64::from(ticks));
    sysreg_write!("cntv_ctl_el0", 1);
}

/// Stops the virtual timer (CNTV_CTL_EL0 = 0), which lowers its interrupt line.
pub fn stop_virtual_timer() {
    sysreg_write!("cntv_ctl_el0", 0);
}
