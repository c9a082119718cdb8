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
use super::sysreg::{counter, counter_hz, isb, write_sysreg};

/// No housekeeping deadline.
const NONE: u64 = u64::MAX;

/// Per CPU: the next housekeeping deadline in counter ticks (`NONE` when there is none).
static HOUSEKEEPING: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(NONE) }; MAX_CPUS];

/// Counter ticks for `ns` nanoseconds.
pub fn ns_to_ticks(ns: u64) -> u64 {
    (u128::from(ns) * u128::from(counter_hz()) / 1_000_000_000) as u64
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
    let deadline = kernel_ns.map_or(NONE, ns_to_ticks).min(housekeeping);
    if deadline == NONE {
        write_sysreg!("s3_4_c14_c2_1", 0); // CNTHP_CTL_EL2: disabled
    } else {
        write_sysreg!("s3_4_c14_c2_2", deadline); // CNTHP_CVAL_EL2
        write_sysreg!("s3_4_c14_c2_1", 1); // CNTHP_CTL_EL2: ENABLE, IMASK = 0
    }
    isb();
}

/// Silences the timer after it fired (it is level-triggered until reprogrammed).
pub fn silence() {
    write_sysreg!("s3_4_c14_c2_1", 0);
    isb();
}

/// The counter now (re-exported for callers that compare deadlines).
pub fn now() -> u64 {
    counter()
}
