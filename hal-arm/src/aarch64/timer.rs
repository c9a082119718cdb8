//! The per-CPU EL2 physical timer (CNTHP_*_EL2), used one-shot: it fires at the next moment a
//! CPU must look at its run queue, and is off when nothing needs it.
//!
//! The deadline is the earliest of what the kernel asks for (the end of a time slice or a
//! budget, a reservation's replenishment, a blocked vCPU's own timer) and the hypervisor's
//! housekeeping: the bring-up tick every CPU takes once, and on CPU 0 the power-off time and
//! the heartbeat when the boot arguments ask for them. An idle CPU with no deadline sleeps in
//! WFI until an interrupt: no fixed-rate tick.

use core::sync::atomic::{AtomicU64, Ordering};

use super::cpu::MAX_CPUS;
use super::sysreg::{clock, counter, isb, write_sysreg};

/// No housekeeping deadline.
const NONE: u64 = u64::MAX;

/// Per CPU: the next housekeeping deadline in counter ticks (`NONE` when there is none).
static HOUSEKEEPING: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(NONE) }; MAX_CPUS];

/// The timer's state as this CPU last programmed it: `UNKNOWN` (nothing programmed, or it
/// fired and was silenced), `NONE` (off) or the compare value. Only its own CPU touches it.
static PROGRAMMED: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(UNKNOWN) }; MAX_CPUS];

/// [`PROGRAMMED`] when the timer's state is not known.
const UNKNOWN: u64 = 0;

/// Counter ticks for `ns` nanoseconds (rounded up: the timer never fires before `ns`).
pub fn ns_to_ticks(ns: u64) -> u64 {
    clock().ticks(ns)
}

/// Asks for a housekeeping interrupt on `cpu` at counter value `at` (keeps an earlier one).
pub fn housekeeping_at(cpu: usize, at: u64) {
    if let Some(h) = HOUSEKEEPING.get(cpu) {
        h.fetch_min(at, Ordering::AcqRel);
    }
}

/// Takes the housekeeping deadline of `cpu` if it has passed; returns whether it had.
pub fn take_housekeeping(cpu: usize, now: u64) -> bool {
    let Some(h) = HOUSEKEEPING.get(cpu) else {
        return false;
    };
    let at = h.load(Ordering::Acquire);
    at <= now
        && h.compare_exchange(at, NONE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
}

/// Programs this CPU's timer for the earlier of the kernel's deadline (`kernel_ns`, system
/// counter nanoseconds) and its housekeeping, or turns it off.
pub fn program(cpu: usize, kernel_ns: Option<u64>) {
    let housekeeping = HOUSEKEEPING
        .get(cpu)
        .map_or(NONE, |h| h.load(Ordering::Acquire));
    let deadline = kernel_ns.map_or(NONE, ns_to_ticks).min(housekeeping).max(1);
    // Most exits keep the deadline (the vCPU goes on): then the timer is left as it is.
    let programmed = PROGRAMMED.get(cpu);
    if programmed.is_some_and(|p| p.swap(deadline, Ordering::Relaxed) == deadline) {
        return;
    }
    if deadline == NONE {
        write_sysreg!("s3_4_c14_c2_1", 0); // CNTHP_CTL_EL2: disabled
    } else {
        write_sysreg!("s3_4_c14_c2_2", deadline); // CNTHP_CVAL_EL2
        write_sysreg!("s3_4_c14_c2_1", 1); // CNTHP_CTL_EL2: ENABLE, IMASK = 0
    }
    isb();
}

/// Silences this CPU's timer after it fired (it is level-triggered until reprogrammed).
pub fn silence(cpu: usize) {
    write_sysreg!("s3_4_c14_c2_1", 0);
    isb();
    if let Some(p) = PROGRAMMED.get(cpu) {
        p.store(UNKNOWN, Ordering::Relaxed);
    }
}

/// The counter now (re-exported for callers that compare deadlines).
pub fn now() -> u64 {
    counter()
}
