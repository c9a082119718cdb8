//! Which EL1 system registers a guest reaches, and what a trapped access does.
//!
//! A guest runs with traps set in three EL2 registers, so that no state a guest can write
//! outlives its turn on a physical CPU, and no state another domain left behind (or the
//! hypervisor keeps) can be read:
//!
//! | state | trapped by | a guest access |
//! | --- | --- | --- |
//! | debug registers (breakpoints, watchpoints, OS lock, DCC) | `MDCR_EL2.{TDA,TDOSA,TDRA}` | read as zero, writes ignored |
//! | performance monitors (`PM*`, counters, filters) | `MDCR_EL2.{TPM,TPMCR}` | read as zero, writes ignored |
//! | EL1 physical timer (`CNTP_*`) | `CNTHCTL_EL2.EL1PCEN = 0` | read as zero, writes ignored |
//! | `ACTLR_EL1` | `HCR_EL2.TACR` | read as zero, writes ignored |
//! | implementation-defined registers (CRn 11 and 15) | `HCR_EL2.TIDCP` | read as zero, writes ignored |
//! | LORegion registers | `HCR_EL2.TLOR` | read as zero (no regions), writes ignored |
//! | trace unit registers | `CPTR_EL2.TTA` (when implemented) | read as zero, writes ignored |
//! | activity monitors | `CPTR_EL2.TAM` (when implemented) | read as zero, writes ignored |
//! | data cache maintenance by set/way | `HCR_EL2.TSW` | performed as clean and invalidate |
//! | ID registers (`ID_AA64*`, the AArch32 `ID_*`, `MVFR*`) | `HCR_EL2.TID3` | the CPU's value with what a guest is not given masked out ([`sanitise_id`]) |
//! | `ICC_SGI*R_EL1` | the GIC's virtual interface (`ICH_HCR_EL2`) | emulated by the vGIC |
//!
//! Read-as-zero / write-ignored is what the Arm architecture allows for an absent feature,
//! and what an unmodified Linux needs: at boot it clears the OS lock, resets breakpoints and
//! the PMU user-enable register on every CPU, and it finds no PMU, trace unit or activity
//! monitor described in the device tree it is given. A cache invalidation by set/way would
//! throw away other domains' (and the hypervisor's) dirty lines, so it is turned into the
//! non-destructive clean and invalidate of the same line.
//!
//! The ID registers tell a guest which features it may use. A feature whose state the vCPU
//! context does not switch, or whose registers trap, must not be on offer: on `-cpu max`
//! Linux would otherwise turn on SVE (whose `ZCR_EL1` and Z registers `CPTR_EL2` traps, so
//! the domain stopped at its first vector instruction), SME, MTE (tags and `TFSR_EL1`),
//! pointer authentication (its keys), the activity monitors, RAS error records, MPAM,
//! SPE, the trace buffer and the PMU. [`sanitise_id`] hides those and `WFIT`/`WFET` (whose
//! timeout a trapped WFx would lose), `MOPS` and nested virtualisation; it keeps what needs
//! no hypervisor state: the base ISA, AdvSIMD/FP, the crypto and atomic instructions, BTI,
//! SSBS, DIT, the speculation-safety fields, the memory-model fields and the breakpoint and
//! watchpoint counts (those registers read as zero). Mica's own domains see the same.
//!
//! Everything else a guest's EL1 uses (translation, exception, thread and virtual-timer
//! registers, `MDSCR_EL1`, the GIC virtual interface) is switched with the vCPU (see
//! `aarch64::context`). Encodings follow the Arm ARM (DDI 0487), chapter D19/D23 register
//! descriptions ("op0, op1, CRn, CRm, op2").

use crate::vgic::SysregTrap;

/// What the hypervisor does with a trapped system-register access of a guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SysregAction {
    /// A write of an SGI generation register: the vGIC generates the SGIs (true: Group 1).
    GenerateSgi {
        /// Group 1 (else Group 0).
        group1: bool,
    },
    /// A read returns 0 in Rt, a write does nothing; the guest goes on.
    ReadAsZero,
    /// `DC ISW/CSW/CISW`: clean and invalidate the line the operand names, by set/way.
    CleanInvalidateBySetWay,
    /// A read of ID register `S3_0_C0_C<crm>_<op2>`: the CPU's value, [`sanitise_id`]d.
    IdRegister {
        /// CRm (1-7).
        crm: u8,
        /// op2.
        op2: u8,
    },
    /// Nothing a guest may use: the domain is stopped.
    Refuse,
}

/// What kind of register `t` is, as the table in the module documentation sorts them.
pub fn classify(t: &SysregTrap) -> SysregAction {
    if let Some(group1) = t.sgi_group1() {
        return SysregAction::GenerateSgi { group1 };
    }
    let key = (t.op0, t.op1, t.crn, t.crm, t.op2);
    match key {
        // DC ISW (op2 2, CRm 6), DC CSW (CRm 10), DC CISW (CRm 14): op0 1, op1 0, CRn 7.
        (1, 0, 7, 6 | 10 | 14, 2) if !t.read => SysregAction::CleanInvalidateBySetWay,
        // ID group 3: op0 3, op1 0, CRn 0, CRm 1-7 (read only; a write is UNDEFINED).
        (3, 0, 0, crm @ 1..=7, op2) if t.read => SysregAction::IdRegister { crm, op2 },
        // Debug and trace: every op0 = 2 register (MDSCR_EL1 included, which the vCPU
        // context keeps and the guest may not change).
        (2, _, _, _, _) => SysregAction::ReadAsZero,
        // ACTLR_EL1.
        (3, 0, 1, 0, 1) => SysregAction::ReadAsZero,
        // LORSA/LOREA/LORN/LORC/LORID_EL1.
        (3, 0, 10, 4, 0..=3 | 7) => SysregAction::ReadAsZero,
        // PMU: PMINTENSET/CLR_EL1 (op1 0, CRn 9, CRm 14), PMCR, PMCNTENSET/CLR, PMOVSCLR,
        // PMSWINC, PMSELR, PMCEID0/1, PMCCNTR, PMXEVTYPER/CNTR, PMUSERENR, PMOVSSET (op1 3,
        // CRn 9, CRm 12-14), PMEVCNTR<n>/PMEVTYPER<n>/PMCCFILTR (op1 3, CRn 14, CRm 8-15).
        (3, 0, 9, 14, 1 | 2) => SysregAction::ReadAsZero,
        (3, 3, 9, 12..=14, _) => SysregAction::ReadAsZero,
        (3, 3, 14, 8..=15, _) => SysregAction::ReadAsZero,
        // EL1 physical timer: CNTP_TVAL/CTL/CVAL_EL0 (op1 3, CRn 14, CRm 2).
        (3, 3, 14, 2, 0..=2) => SysregAction::ReadAsZero,
        // Activity monitors: AMCR_EL0 .. AMEVTYPER1<n>_EL0 (op1 3, CRn 13, CRm 2-15).
        (3, 3, 13, 2..=15, _) => SysregAction::ReadAsZero,
        // Implementation-defined: CRn 11 and 15 (HCR_EL2.TIDCP).
        (3, _, 11 | 15, _, _) => SysregAction::ReadAsZero,
        _ => SysregAction::Refuse,
    }
}

/// A field of an ID register: bits `[shift + 3 : shift]`.
const fn field(shift: u32) -> u64 {
    0xF << shift
}

/// The fields a guest keeps of ID register `S3_0_C0_C<crm>_<op2>` (the rest read as 0, "not
/// implemented"); `u64::MAX` keeps the whole register. Arm ARM D19.2 gives the layouts.
pub fn id_fields_kept(crm: u8, op2: u8) -> u64 {
    match (crm, op2) {
        // The AArch32 ID registers (ID_PFR0_EL1 .. MVFR2_EL1): what AArch32 EL0 would use.
        (1..=3, _) => u64::MAX,
        // ID_AA64PFR0_EL1: all but RAS [31:28], SVE [35:32], SEL2 [39:36], MPAM [43:40],
        // AMU [47:44], RME [55:52].
        (4, 0) => !(field(28) | field(32) | field(36) | field(40) | field(44) | field(52)),
        // ID_AA64PFR1_EL1: BT [3:0], SSBS [7:4] and CSV2_frac [35:32] only (no MTE, SME,
        // RAS_frac, MPAM_frac, NMI, GCS, ...).
        (4, 1) => field(0) | field(4) | field(32),
        // ID_AA64DFR0_EL1: DebugVer [3:0], BRPs [15:12], WRPs [23:20], CTX_CMPs [31:28],
        // DoubleLock [39:36] only (no PMU, SPE, trace, BRBE).
        (5, 0) => field(0) | field(12) | field(20) | field(28) | field(36),
        // ID_AA64ISAR0_EL1: the crypto, atomic, CRC, RNDR, TLB-range instructions.
        (6, 0) => u64::MAX,
        // ID_AA64ISAR1_EL1: all but APA [7:4], API [11:8], GPA [27:24], GPI [31:28] (pointer
        // authentication) and LS64 [63:60].
        (6, 1) => !(field(4) | field(8) | field(24) | field(28) | field(60)),
        // ID_AA64ISAR2_EL1: all but WFxT [3:0], GPA3 [11:8], APA3 [15:12], MOPS [19:16],
        // PAC_frac [27:24].
        (6, 2) => !(field(0) | field(8) | field(12) | field(16) | field(24)),
        // ID_AA64MMFR0/1_EL1, MMFR3/4: translation features a guest's own stage 1 uses.
        (7, 0 | 1 | 3 | 4) => u64::MAX,
        // ID_AA64MMFR2_EL1: all but NV [27:24] (no nested virtualisation).
        (7, 2) => !field(24),
        // ID_AA64PFR2, ZFR0 (SVE), SMFR0 (SME), FPFR0, DFR1, AFR0/1, ISAR3, reserved: none.
        _ => 0,
    }
}

/// What a guest reads in ID register `S3_0_C0_C<crm>_<op2>` whose value on this CPU is
/// `value`.
pub fn sanitise_id(crm: u8, op2: u8, value: u64) -> u64 {
    value & id_fields_kept(crm, op2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trap(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8, read: bool) -> SysregTrap {
        SysregTrap {
            op0,
            op1,
            crn,
            crm,
            op2,
            rt: 1,
            read,
        }
    }

    #[test]
    fn every_register_class_the_traps_catch_has_an_answer() {
        use SysregAction::*;
        let cases = [
            // OSLAR_EL1 write, OSLSR_EL1 read, DBGBVR0_EL1, DBGWVR3_EL1, MDSCR_EL1, MDRAR_EL1.
            (trap(2, 0, 1, 0, 4, false), ReadAsZero),
            (trap(2, 0, 1, 1, 4, true), ReadAsZero),
            (trap(2, 0, 0, 0, 4, false), ReadAsZero),
            (trap(2, 0, 0, 3, 6, true), ReadAsZero),
            (trap(2, 0, 0, 2, 2, true), ReadAsZero),
            (trap(2, 0, 1, 0, 0, true), ReadAsZero),
            // PMCR_EL0, PMSELR_EL0, PMCCNTR_EL0, PMUSERENR_EL0, PMEVCNTR5_EL0, PMCCFILTR_EL0,
            // PMINTENSET_EL1.
            (trap(3, 3, 9, 12, 0, true), ReadAsZero),
            (trap(3, 3, 9, 12, 5, false), ReadAsZero),
            (trap(3, 3, 9, 13, 0, true), ReadAsZero),
            (trap(3, 3, 9, 14, 0, false), ReadAsZero),
            (trap(3, 3, 14, 8, 5, true), ReadAsZero),
            (trap(3, 3, 14, 15, 7, false), ReadAsZero),
            (trap(3, 0, 9, 14, 1, false), ReadAsZero),
            // CNTP_CTL_EL0, CNTP_CVAL_EL0, CNTP_TVAL_EL0.
            (trap(3, 3, 14, 2, 1, false), ReadAsZero),
            (trap(3, 3, 14, 2, 2, true), ReadAsZero),
            (trap(3, 3, 14, 2, 0, true), ReadAsZero),
            // ACTLR_EL1, LORID_EL1, CBAR_EL1 (S3_1_C15_C3_0), L2CTLR_EL1 (S3_1_C11_C0_2).
            (trap(3, 0, 1, 0, 1, true), ReadAsZero),
            (trap(3, 0, 10, 4, 7, true), ReadAsZero),
            (trap(3, 1, 15, 3, 0, true), ReadAsZero),
            (trap(3, 1, 11, 0, 2, true), ReadAsZero),
            // AMCNTENSET0_EL0.
            (trap(3, 3, 13, 2, 5, false), ReadAsZero),
            // DC ISW, DC CSW, DC CISW.
            (trap(1, 0, 7, 6, 2, false), CleanInvalidateBySetWay),
            (trap(1, 0, 7, 10, 2, false), CleanInvalidateBySetWay),
            (trap(1, 0, 7, 14, 2, false), CleanInvalidateBySetWay),
            // ICC_SGI1R_EL1.
            (trap(3, 0, 12, 11, 5, false), GenerateSgi { group1: true }),
            // ID_AA64PFR0_EL1, ID_AA64ZFR0_EL1, MVFR0_EL1 reads; a write to an ID register.
            (trap(3, 0, 0, 4, 0, true), IdRegister { crm: 4, op2: 0 }),
            (trap(3, 0, 0, 4, 4, true), IdRegister { crm: 4, op2: 4 }),
            (trap(3, 0, 0, 3, 0, true), IdRegister { crm: 3, op2: 0 }),
            (trap(3, 0, 0, 4, 0, false), Refuse),
            // Not trapped for a reason: SCTLR_EL1, a DC by VA, CNTVCT_EL0, ICC_PMR_EL1.
            (trap(3, 0, 1, 0, 0, false), Refuse),
            (trap(1, 3, 7, 14, 1, false), Refuse),
            (trap(3, 3, 14, 0, 2, true), Refuse),
            (trap(3, 0, 4, 6, 0, false), Refuse),
        ];
        for (t, expected) in cases {
            assert_eq!(classify(&t), expected, "{t:?}");
        }
    }

    /// What QEMU's `-cpu max` offers (QEMU 7.2) loses SVE, SME, MTE, pointer authentication,
    /// AMU, RAS, MPAM, the PMU, SPE, WFxT and NV, and keeps the base features Linux needs.
    #[test]
    fn max_features_are_hidden_and_the_base_kept() {
        let nibble = |v: u64, shift: u32| (v >> shift) & 0xF;
        // ID_AA64PFR0_EL1 of -cpu max: EL0-3 AArch64, FP, AdvSIMD, GIC 1, RAS 1, SVE 1,
        // SEL2 1, AMU 1, DIT 1, CSV2 2, CSV3 1.
        let pfr0 = 0x1101_1011_1111_2222_u64 | 1 << 28 | 1 << 32 | 1 << 36 | 1 << 44;
        let g = sanitise_id(4, 0, pfr0);
        for (shift, kept) in [
            (0, true),
            (16, true),
            (20, true),
            (24, true),
            (28, false),
            (32, false),
            (36, false),
            (44, false),
            (48, true),
            (56, true),
        ] {
            assert_eq!(
                nibble(g, shift) == nibble(pfr0, shift),
                kept,
                "PFR0 [{}:{shift}]",
                shift + 3
            );
        }
        // ID_AA64PFR1_EL1: BT 1, SSBS 2, MTE 3, SME 1 -> BT and SSBS only.
        let pfr1 = 1 | 2 << 4 | 3 << 8 | 1 << 24;
        assert_eq!(sanitise_id(4, 1, pfr1), 1 | 2 << 4);
        // ID_AA64ISAR1_EL1: APA/API/GPA/GPI gone, DPB, JSCVT, FCMA, LRCPC kept.
        let isar1 = 0x0011_1111_1111_1111_u64;
        let g = sanitise_id(6, 1, isar1);
        assert_eq!(
            [nibble(g, 4), nibble(g, 8), nibble(g, 24), nibble(g, 28)],
            [0; 4]
        );
        assert_eq!(
            [nibble(g, 0), nibble(g, 12), nibble(g, 16), nibble(g, 20)],
            [1; 4]
        );
        // ID_AA64ISAR2_EL1: WFxT gone.
        assert_eq!(sanitise_id(6, 2, 0x2) & 0xF, 0);
        // ID_AA64DFR0_EL1: PMUVer [11:8] gone, DebugVer and the breakpoint counts kept.
        let dfr0 = 0x0000_0000_f051_5506_u64 | 0x1 << 32;
        let g = sanitise_id(5, 0, dfr0);
        assert_eq!(nibble(g, 8), 0, "no PMU");
        assert_eq!(nibble(g, 32), 0, "no SPE");
        assert_eq!([nibble(g, 0), nibble(g, 12), nibble(g, 20)], [6, 5, 5]);
        // SVE's and SME's own ID registers, and AArch32's kept whole.
        assert_eq!(sanitise_id(4, 4, u64::MAX), 0);
        assert_eq!(sanitise_id(4, 5, u64::MAX), 0);
        assert_eq!(sanitise_id(2, 3, 0x1234), 0x1234);
        assert_eq!(sanitise_id(7, 2, 1 << 24 | 1), 1, "no NV");
    }
}
