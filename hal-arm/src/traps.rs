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
//! | `ICC_SGI*R_EL1` | the GIC's virtual interface (`ICH_HCR_EL2`) | emulated by the vGIC |
//!
//! Read-as-zero / write-ignored is what the Arm architecture allows for an absent feature,
//! and what an unmodified Linux needs: at boot it clears the OS lock, resets breakpoints and
//! the PMU user-enable register on every CPU, and it finds no PMU, trace unit or activity
//! monitor described in the device tree it is given. A cache invalidation by set/way would
//! throw away other domains' (and the hypervisor's) dirty lines, so it is turned into the
//! non-destructive clean and invalidate of the same line.
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
}
