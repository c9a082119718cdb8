//! The EL2 controls every CPU runs guests under: what a guest's EL1 traps to the hypervisor,
//! and how many GIC list registers and active-priority registers a vCPU's context switches.
//!
//! [`configure`] runs once on each CPU before it runs a guest. Which registers are trapped,
//! and what a trapped access does, is the table in [`crate::traps`]; the per-vCPU state that
//! is switched instead is `context::ArmContext`. Field positions follow the Arm ARM (DDI
//! 0487): D19.2.49 HCR_EL2, D19.2.76 MDCR_EL2, D19.2.30 CPTR_EL2, D19.12 CNTHCTL_EL2, and the
//! GIC architecture specification (IHI 0069) 12.5.27 ICH_VTR_EL2.

use core::sync::atomic::{AtomicUsize, Ordering};

use super::sysreg::{isb, read_sysreg, write_sysreg};
use crate::vgic::MAX_LIST_REGISTERS;

/// HCR_EL2 bits (D19.2.49).
pub mod hcr {
    use aarch64_cpu::registers::HCR_EL2 as R;

    /// VM: stage-2 translation.
    pub const VM: u64 = R::VM::Enable.value;
    /// SWIO: set/way invalidation override (invalidate becomes clean and invalidate).
    pub const SWIO: u64 = R::SWIO::SET.value;
    /// PTW: protected table walk (a stage-1 walk into device memory faults).
    pub const PTW: u64 = R::PTW::SET.value;
    /// FMO: physical FIQs to EL2, virtual FIQs to the guest.
    pub const FMO: u64 = R::FMO::EnableVirtualFIQ.value;
    /// IMO: physical IRQs to EL2, virtual IRQs to the guest.
    pub const IMO: u64 = R::IMO::EnableVirtualIRQ.value;
    /// AMO: physical SErrors to EL2.
    pub const AMO: u64 = R::AMO::SET.value;
    /// FB: the guest's TLB and branch-predictor maintenance is broadcast (its vCPUs move).
    pub const FB: u64 = R::FB::SET.value;
    /// BSU = inner shareable: the guest's barriers reach the other CPUs it may run on.
    pub const BSU_INNER: u64 = R::BSU::InnerShareable.value;
    /// DC: default cacheable (stage 1 off still sees normal write-back memory).
    pub const DC: u64 = R::DC::SET.value;
    /// TWI: trap WFI.
    pub const TWI: u64 = R::TWI::SET.value;
    /// TWE: trap WFE.
    pub const TWE: u64 = R::TWE::SET.value;
    /// TID3: trap reads of the ID group 3 registers (answered sanitised, `crate::traps`).
    pub const TID3: u64 = R::TID3::SET.value;
    /// TSC: trap SMC.
    pub const TSC: u64 = R::TSC::EnableTrapEl1SmcToEl2.value;
    /// TIDCP: trap implementation-defined system registers.
    pub const TIDCP: u64 = R::TIDCP::SET.value;
    /// TACR: trap ACTLR_EL1.
    pub const TACR: u64 = R::TACR::SET.value;
    /// TSW: trap data cache maintenance by set/way.
    pub const TSW: u64 = R::TSW::SET.value;
    /// RW: EL1 is AArch64.
    pub const RW: u64 = R::RW::EL1IsAarch64.value;
    /// TLOR: trap the LORegion registers.
    pub const TLOR: u64 = R::TLOR::SET.value;
}

/// HCR_EL2 while a guest runs (`DC` is added per vCPU). Every trap of the table in
/// [`crate::traps`] that HCR_EL2 controls, plus WFI/WFE and SMC.
pub const HCR_GUEST: u64 = hcr::VM
    | hcr::SWIO
    | hcr::PTW
    | hcr::FMO
    | hcr::IMO
    | hcr::AMO
    | hcr::FB
    | hcr::BSU_INNER
    | hcr::TWI
    | hcr::TWE
    | hcr::TID3
    | hcr::TSC
    | hcr::TIDCP
    | hcr::TACR
    | hcr::TSW
    | hcr::RW
    | hcr::TLOR;

/// MDCR_EL2 bits (D19.2.76).
mod mdcr {
    use aarch64_cpu::registers::MDCR_EL2 as R;

    /// HPMN: event counters EL1 may use (kept as reset; every PMU access traps anyway).
    pub const HPMN_MASK: u64 = R::HPMN.mask << R::HPMN.shift;
    /// TPMCR: trap PMCR_EL0.
    pub const TPMCR: u64 = R::TPMCR::SET.value;
    /// TPM: trap every performance-monitor register.
    pub const TPM: u64 = R::TPM::SET.value;
    /// TDA: trap the debug registers (breakpoints, watchpoints, MDSCR, DCC).
    pub const TDA: u64 = R::TDA::SET.value;
    /// TDOSA: trap the OS lock and power-down registers.
    pub const TDOSA: u64 = R::TDOSA::SET.value;
    /// TDRA: trap the debug ROM address register.
    pub const TDRA: u64 = R::TDRA::SET.value;
}

/// CPTR_EL2 bits beyond the ones set at entry (D19.2.30).
mod cptr {
    /// TTA: trap the trace unit's system registers (RES0 without one). `aarch64-cpu` does
    /// not name this field.
    pub const TTA: u64 = 1 << 20;
    /// TAM: trap the activity monitors (RES0 without them).
    pub const TAM: u64 = aarch64_cpu::registers::CPTR_EL2::TAM::SET.value;
}

/// CNTHCTL_EL2.EL1PCTEN: EL1 may read the physical counter (the same as the virtual one:
/// CNTVOFF_EL2 is 0). EL1PCEN (bit 1) stays clear: the EL1 physical timer traps.
const CNTHCTL_EL1PCTEN: u64 = aarch64_cpu::registers::CNTHCTL_EL2::EL1PCTEN::SET.value;

/// List registers the GIC has (ICH_VTR_EL2.ListRegs + 1), set by [`configure`].
static LIST_REGISTERS: AtomicUsize = AtomicUsize::new(0);
/// ICH_AP0R<n>/AP1R<n> registers in use (1, 2 or 4 for 5, 6 or 7 priority bits).
static ACTIVE_PRIORITY_REGISTERS: AtomicUsize = AtomicUsize::new(1);

/// List registers every vCPU context switches: all the GIC has (at most
/// [`MAX_LIST_REGISTERS`]).
pub fn list_registers() -> usize {
    LIST_REGISTERS
        .load(Ordering::Relaxed)
        .clamp(1, MAX_LIST_REGISTERS)
}

/// Active-priority registers per group a vCPU context switches.
pub fn active_priority_registers() -> usize {
    ACTIVE_PRIORITY_REGISTERS
        .load(Ordering::Relaxed)
        .clamp(1, 4)
}

/// Sets this CPU's trap controls for running guests and reads the GIC's virtual-interface
/// shape. Called on every CPU before its first guest.
pub fn configure() {
    let mdcr = read_sysreg!("mdcr_el2") & mdcr::HPMN_MASK
        | mdcr::TPMCR
        | mdcr::TPM
        | mdcr::TDA
        | mdcr::TDOSA
        | mdcr::TDRA;
    write_sysreg!("mdcr_el2", mdcr);
    write_sysreg!("cnthctl_el2", CNTHCTL_EL1PCTEN);
    // Nobody's EL1 physical timer may fire: the guests cannot reach it any more.
    write_sysreg!("cntp_ctl_el0", 0);
    let dfr0 = read_sysreg!("id_aa64dfr0_el1");
    let pfr0 = read_sysreg!("id_aa64pfr0_el1");
    let mut cptr = read_sysreg!("cptr_el2");
    // ID_AA64DFR0_EL1.TraceVer [7:4], ID_AA64PFR0_EL1.AMU [47:44].
    if (dfr0 >> 4) & 0xF != 0 {
        cptr |= cptr::TTA;
    }
    if (pfr0 >> 44) & 0xF != 0 {
        cptr |= cptr::TAM;
    }
    write_sysreg!("cptr_el2", cptr);
    // ICH_VTR_EL2: ListRegs [4:0] (count - 1), PRIbits [31:29] (bits - 1).
    let vtr = read_sysreg!("s3_4_c12_c11_1");
    LIST_REGISTERS.store((vtr & 0x1F) as usize + 1, Ordering::Relaxed);
    let priority_bits = ((vtr >> 29) & 7) + 1;
    let registers = match priority_bits {
        7.. => 4,
        6 => 2,
        _ => 1,
    };
    ACTIVE_PRIORITY_REGISTERS.store(registers, Ordering::Relaxed);
    isb();
}
