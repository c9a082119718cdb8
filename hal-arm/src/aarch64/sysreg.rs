//! Raw system-register access, for what `aarch64-cpu`'s register types do not fit, and
//! barriers.
//!
//! The bits of the EL2 controls are named by `aarch64-cpu`'s field definitions (HCR_EL2,
//! MDCR_EL2, CPTR_EL2, CNTHCTL_EL2 in `el2.rs`; SCTLR/TCR/MAIR in `mmu.rs`). Registers are read
//! and written here by name or architected encoding (Arm ARM DDI 0487, chapter D23 / GIC
//! architecture specification IHI 0069, chapter 12) where a register type does not fit: the
//! world switch saves and restores whole values, list registers and active-priority registers
//! are chosen by index at run time (`aarch64-cpu` has one type per register), and the EL1
//! registers of a guest are moved as plain values.

/// Reads a system register by name or `s3_*` encoding.
macro_rules! read_sysreg {
    ($reg:literal) => {{
        let v: u64;
        // SAFETY: reading this system register has no side effect on memory; the
        // register exists at EL2 on every CPU Mica supports (GICv3 with SRE, generic timer).
        unsafe { core::arch::asm!(concat!("mrs {0}, ", $reg), out(reg) v, options(nomem, nostack, preserves_flags)) };
        v
    }};
}

/// Writes a system register by name or `s3_*` encoding.
macro_rules! write_sysreg {
    ($reg:literal, $val:expr) => {{
        let v: u64 = $val;
        // SAFETY: the callers write documented values to EL2-owned registers (GIC CPU
        // interface, EL2 timer); none of them changes memory translation.
        unsafe { core::arch::asm!(concat!("msr ", $reg, ", {0}"), in(reg) v, options(nostack, preserves_flags)) };
    }};
}

pub(crate) use read_sysreg;
pub(crate) use write_sysreg;

/// ICC_SRE_EL2 (S3_4_C12_C9_5): system register interface enable at EL2.
pub const ICC_SRE_EL2: &str = "s3_4_c12_c9_5";

/// Instruction synchronisation barrier.
#[inline]
pub fn isb() {
    // SAFETY: a barrier has no memory or register side effects beyond ordering.
    unsafe { core::arch::asm!("isb", options(nostack, preserves_flags)) };
}

/// Full-system data synchronisation barrier.
#[inline]
pub fn dsb_sy() {
    // SAFETY: a barrier has no side effects beyond ordering.
    unsafe { core::arch::asm!("dsb sy", options(nostack, preserves_flags)) };
}

/// The counter (CNTPCT_EL0).
#[inline]
pub fn counter() -> u64 {
    isb();
    read_sysreg!("cntpct_el0")
}

/// The counter frequency in Hz (CNTFRQ_EL0).
#[inline]
pub fn counter_hz() -> u64 {
    read_sysreg!("cntfrq_el0")
}

/// The counter's conversions to and from nanoseconds (computed once: CNTFRQ_EL0 is set by
/// firmware before Mica starts and is the same on every CPU).
#[inline]
pub fn clock() -> &'static mica_abi::time::Clock {
    static CLOCK: spin::Once<mica_abi::time::Clock> = spin::Once::new();
    CLOCK.call_once(|| mica_abi::time::Clock::new(counter_hz()))
}

/// The affinity fields of this CPU's MPIDR_EL1 (Aff3 in [39:32], Aff2..Aff0 in [23:0]).
#[inline]
pub fn mpidr_affinity() -> u64 {
    read_sysreg!("mpidr_el1") & 0xFF_00FF_FFFF
}

/// Masks IRQs and FIQs on this CPU.
#[inline]
pub fn mask_interrupts() {
    // SAFETY: setting DAIF bits only masks interrupts.
    unsafe { core::arch::asm!("msr daifset, #0xf", options(nostack, preserves_flags)) };
}

/// Unmasks IRQs on this CPU.
#[inline]
pub fn unmask_irq() {
    // SAFETY: the EL2 vectors are installed before any CPU unmasks IRQs.
    unsafe { core::arch::asm!("msr daifclr, #2", options(nostack, preserves_flags)) };
}

/// `YIELD`: tells the CPU (or an emulator running CPUs in turn) that this one is waiting.
#[inline]
pub fn cpu_yield() {
    // SAFETY: YIELD is a hint with no architectural effect.
    unsafe { core::arch::asm!("yield", options(nomem, nostack, preserves_flags)) };
}

/// Waits for an interrupt.
#[inline]
pub fn wfi() {
    // SAFETY: WFI only suspends execution until an event.
    unsafe { core::arch::asm!("wfi", options(nomem, nostack, preserves_flags)) };
}
