//! The per-CPU EL2 physical timer (CNTHP_*_EL2) that gives the hypervisor its tick.
//!
//! Re-armed with an absolute compare value (`CVAL += period`) rather than TVAL, so the
//! tick does not drift by the interrupt latency.

use core::sync::atomic::{AtomicU64, Ordering};

use super::sysreg::{counter, isb, write_sysreg};

static PERIOD: AtomicU64 = AtomicU64::new(0);
static NEXT: [AtomicU64; super::cpu::MAX_CPUS] =
    [const { AtomicU64::new(0) }; super::cpu::MAX_CPUS];

/// Sets the tick period (in counter ticks) every CPU will use.
pub fn set_period(ticks: u64) {
    PERIOD.store(ticks.max(1), Ordering::Release);
}

/// Starts the tick on this CPU.
pub fn start(cpu: usize) {
    let next = counter() + PERIOD.load(Ordering::Acquire);
    NEXT[cpu].store(next, Ordering::Relaxed);
    write_sysreg!("s3_4_c14_c2_2", next); // CNTHP_CVAL_EL2
    write_sysreg!("s3_4_c14_c2_1", 1); // CNTHP_CTL_EL2: ENABLE, IMASK = 0
    isb();
}

/// Re-arms the tick on this CPU after it fired. Skips periods missed while interrupts
/// were masked rather than firing a burst of catch-up ticks.
pub fn rearm(cpu: usize) {
    let period = PERIOD.load(Ordering::Acquire);
    let now = counter();
    let mut next = NEXT[cpu].load(Ordering::Relaxed) + period;
    if next <= now {
        next = now + period;
    }
    NEXT[cpu].store(next, Ordering::Relaxed);
    write_sysreg!("s3_4_c14_c2_2", next);
    isb();
}
