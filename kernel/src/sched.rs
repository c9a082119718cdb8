//! The scheduling mechanism: fixed priorities, budget/period reservations, round-robin among
//! equals, affinity, and the one-shot timer deadline that replaces a fixed-rate tick.
//!
//! Pure and time-explicit: every function takes `now` (nanoseconds of the system counter), so
//! the policy domain's parameters can be checked against exact schedules on the host. The
//! kernel keeps one [`SchedState`] per vCPU and asks [`choose`] which vCPU a CPU runs next and
//! [`next_deadline`] when the CPU must look again; nothing here knows about registers or GICs.
//!
//! Rules (DESIGN.md §6):
//! - a runnable, unthrottled vCPU with a higher priority always runs before a lower one;
//! - among equal priorities the least recently run goes first, each for at most [`SLICE_NS`]
//!   while another equal is waiting;
//! - a vCPU with a budget runs at most `budget` per `period`; when it is used up the vCPU is
//!   throttled until its next period starts, when the budget is replenished in full;
//! - a vCPU only runs on a CPU in its affinity mask (the kernel migrates it when the mask
//!   changes).

/// Round-robin time slice among equal priorities.
pub const SLICE_NS: u64 = 10_000_000;
/// Default priority of a vCPU nobody configured.
pub const DEFAULT_PRIORITY: u8 = 100;

/// What the policy sets for a vCPU (through the SchedControl capability).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedParams {
    /// Higher runs first.
    pub priority: u8,
    /// Nanoseconds of CPU per period; 0 = unlimited.
    pub budget_ns: u64,
    /// Replenishment period in nanoseconds; 0 = no reservation.
    pub period_ns: u64,
    /// Physical CPUs it may run on (bit n = CPU n).
    pub affinity: u64,
}

impl SchedParams {
    /// Default parameters for a vCPU pinned to `cpu`.
    pub const fn default_on(cpu: usize) -> SchedParams {
        SchedParams {
            priority: DEFAULT_PRIORITY,
            budget_ns: 0,
            period_ns: 0,
            affinity: 1 << cpu,
        }
    }

    /// Whether the budget limits this vCPU.
    pub const fn has_reservation(&self) -> bool {
        self.budget_ns > 0 && self.period_ns > 0
    }

    /// Whether the parameters make sense: budget within period, affinity not empty.
    pub fn is_valid(&self, cpus: usize) -> bool {
        let all = if cpus >= 64 {
            u64::MAX
        } else {
            (1u64 << cpus) - 1
        };
        let reservation_ok = (self.budget_ns == 0 && self.period_ns == 0)
            || (self.budget_ns > 0
                && self.period_ns >= self.budget_ns
                && self.period_ns >= 100_000);
        reservation_ok && self.affinity & all != 0 && self.affinity & !all == 0
    }
}

/// A vCPU's scheduling state and accounting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedState {
    /// Current parameters.
    pub params: SchedParams,
    /// Budget left in this period.
    pub budget_left: u64,
    /// When the current period started.
    pub period_start: u64,
    /// Out of budget until `period_start + period`.
    pub throttled: bool,
    /// Sequence number of its last start (round robin: the least recent goes first).
    pub last_run: u64,
    /// When it started its current run, if running.
    pub running_since: Option<u64>,
    /// When its current turn on the CPU began ([`start`](Self::start); a
    /// [`resume`](Self::resume) after the kernel ran does not move it): its time slice ends
    /// [`SLICE_NS`] later, however often it exits meanwhile.
    pub turn_start: u64,
    /// Total nanoseconds run.
    pub run_time: u64,
    /// Times it was woken from blocking.
    pub wakeups: u64,
    /// Times it used up its budget.
    pub overruns: u64,
}

impl SchedState {
    /// A fresh vCPU with `params`, its period starting `now`.
    pub const fn new(params: SchedParams, now: u64) -> SchedState {
        SchedState {
            params,
            budget_left: params.budget_ns,
            period_start: now,
            throttled: false,
            last_run: 0,
            running_since: None,
            turn_start: now,
            run_time: 0,
            wakeups: 0,
            overruns: 0,
        }
    }

    /// New parameters from the policy: the budget restarts with a fresh period.
    pub fn set_params(&mut self, params: SchedParams, now: u64) {
        // A running vCPU's time so far is charged to its run time under the old parameters,
        // not to the new budget (the kernel charges a running vCPU only when it chooses
        // again, which may be long after it started).
        if let Some(since) = self.running_since {
            self.run_time = self.run_time.saturating_add(now.saturating_sub(since));
            self.running_since = Some(now);
        }
        self.params = params;
        self.budget_left = params.budget_ns;
        self.period_start = now;
        self.throttled = false;
    }

    /// Starts a turn on the CPU at `now`; `seq` orders turns for round robin.
    pub fn start(&mut self, now: u64, seq: u64) {
        self.replenish(now);
        self.running_since = Some(now);
        self.turn_start = now;
        self.last_run = seq;
    }

    /// Continues the current turn after the kernel ran (the time was charged already).
    pub fn resume(&mut self, now: u64) {
        self.replenish(now);
        self.running_since = Some(now);
    }

    /// Ends (or checkpoints) a run at `now`, charging the time; returns whether the budget ran
    /// out (the vCPU is now throttled).
    pub fn charge(&mut self, now: u64) -> bool {
        let Some(since) = self.running_since.take() else {
            return false;
        };
        let used = now.saturating_sub(since);
        self.run_time = self.run_time.saturating_add(used);
        if !self.params.has_reservation() {
            return false;
        }
        self.budget_left = self.budget_left.saturating_sub(used);
        if self.budget_left == 0 && !self.throttled {
            self.throttled = true;
            self.overruns += 1;
            return true;
        }
        false
    }

    /// Starts new periods that have begun by `now` (refilling the budget and lifting the
    /// throttle).
    pub fn replenish(&mut self, now: u64) {
        let p = self.params.period_ns;
        if !self.params.has_reservation() || now < self.period_start.saturating_add(p) {
            return;
        }
        let periods = (now - self.period_start) / p;
        self.period_start += periods * p;
        self.budget_left = self.params.budget_ns;
        self.throttled = false;
    }

    /// When the next period starts (a throttled vCPU may run again then).
    pub fn next_period(&self) -> Option<u64> {
        self.params
            .has_reservation()
            .then(|| self.period_start.saturating_add(self.params.period_ns))
    }

    /// Its total run time at `now`: what was charged, plus the run in progress (the kernel
    /// charges a running vCPU only when it chooses again, not on every exit).
    pub fn run_time_at(&self, now: u64) -> u64 {
        let current = self
            .running_since
            .map_or(0, |since| now.saturating_sub(since));
        self.run_time.saturating_add(current)
    }

    /// Whether it may run at `now` (budget permitting).
    pub fn eligible(&self) -> bool {
        !self.throttled
    }

    /// Whether its time slice, begun at [`turn_start`](Self::turn_start), is over at `now`.
    pub fn slice_over(&self, now: u64) -> bool {
        now >= self.turn_start.saturating_add(SLICE_NS)
    }
}

/// A candidate for a CPU: an identifier and its state (borrowed: the state is over 100 bytes,
/// and copying it for every candidate on every exit showed in the null hypercall's profile).
#[derive(Clone, Copy, Debug)]
pub struct Candidate<'a, Id> {
    /// Who.
    pub id: Id,
    /// Its scheduling state (already replenished for `now`).
    pub sched: &'a SchedState,
}

/// Which of `candidates` (runnable vCPUs allowed on this CPU) runs next: the highest priority
/// among those not throttled, the least recently run among equals.
pub fn choose<'a, Id: Copy>(candidates: impl Iterator<Item = Candidate<'a, Id>>) -> Option<Id> {
    candidates
        .filter(|c| c.sched.eligible())
        .max_by(|a, b| {
            a.sched
                .params
                .priority
                .cmp(&b.sched.params.priority)
                .then(b.sched.last_run.cmp(&a.sched.last_run))
        })
        .map(|c| c.id)
}

/// When the CPU must run the scheduler again, given the vCPU it runs (`running`, running at
/// `now`) and the others that want it: the end of the running vCPU's time slice (counted from
/// the start of its turn, not from `now`: a vCPU that exits often must not push it away and
/// starve an equal) if an equal is waiting, the end of its budget and its own next
/// replenishment, or the next replenishment of a throttled one of higher or equal priority.
/// `None`: nothing needs a timer (tickless). Until then the kernel lets the running vCPU go
/// on without choosing again (`Kernel::pick`'s fast path), so nothing that changes the choice
/// with time alone may be missing here.
pub fn next_deadline<'a>(
    now: u64,
    running: Option<&SchedState>,
    others: impl Iterator<Item = &'a SchedState> + Clone,
) -> Option<u64> {
    let mut deadline: Option<u64> = None;
    let mut consider = |t: u64| deadline = Some(deadline.map_or(t, |d| d.min(t)));
    if let Some(r) = running {
        let prio = r.params.priority;
        if others
            .clone()
            .any(|o| o.eligible() && o.params.priority == prio)
        {
            consider(r.turn_start.saturating_add(SLICE_NS).max(now));
        }
        if r.params.has_reservation() {
            consider(now.saturating_add(r.budget_left));
            // Its own next period refills its budget (the kernel does not look again before
            // the deadline, even when the vCPU exits).
            if let Some(t) = r.next_period() {
                consider(t.max(now));
            }
        }
        for o in others.filter(|o| o.throttled && o.params.priority >= prio) {
            if let Some(t) = o.next_period() {
                consider(t);
            }
        }
    } else {
        for o in others.filter(|o| o.throttled) {
            if let Some(t) = o.next_period() {
                consider(t);
            }
        }
    }
    deadline
}

/// Admission control for reservations on one CPU: whether the utilisations (budget/period)
/// of `reservations` sum to at most 100% (fixed-point, parts per million).
pub fn admissible(reservations: impl Iterator<Item = SchedParams>) -> bool {
    let total: u64 = reservations
        .filter(SchedParams::has_reservation)
        .map(|p| p.budget_ns.saturating_mul(1_000_000) / p.period_ns)
        .fold(0u64, u64::saturating_add);
    total <= 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(priority: u8, budget_ms: u64, period_ms: u64) -> SchedParams {
        SchedParams {
            priority,
            budget_ns: budget_ms * 1_000_000,
            period_ns: period_ms * 1_000_000,
            affinity: 1,
        }
    }

    #[test]
    fn higher_priority_wins_and_equals_round_robin() {
        let mut a = SchedState::new(params(5, 0, 0), 0);
        let mut b = SchedState::new(params(5, 0, 0), 0);
        let c = SchedState::new(params(1, 0, 0), 0);
        a.last_run = 10;
        b.last_run = 5;
        fn cands<'a>(
            a: &'a SchedState,
            b: &'a SchedState,
            c: &'a SchedState,
        ) -> [Candidate<'a, char>; 3] {
            [
                Candidate { id: 'a', sched: a },
                Candidate { id: 'b', sched: b },
                Candidate { id: 'c', sched: c },
            ]
        }
        assert_eq!(
            choose(cands(&a, &b, &c).into_iter()),
            Some('b'),
            "least recently run of the highest priority"
        );
        b.last_run = 20;
        assert_eq!(choose(cands(&a, &b, &c).into_iter()), Some('a'));
        a.throttled = true;
        b.throttled = true;
        assert_eq!(
            choose(cands(&a, &b, &c).into_iter()),
            Some('c'),
            "throttled ones wait"
        );
        assert_eq!(choose(core::iter::empty::<Candidate<u8>>()), None);
    }

    #[test]
    fn a_budget_throttles_until_the_next_period() {
        let ms = 1_000_000;
        let mut s = SchedState::new(params(5, 2, 10), 0);
        s.start(0, 1);
        assert!(!s.charge(ms), "1 ms of 2");
        s.resume(ms);
        assert!(s.charge(5 * ms), "overran");
        assert!(s.throttled);
        assert_eq!(s.overruns, 1);
        assert_eq!(s.next_period(), Some(10 * ms));
        s.replenish(9 * ms);
        assert!(s.throttled);
        s.replenish(23 * ms);
        assert!(!s.throttled);
        assert_eq!(s.period_start, 20 * ms, "periods stay aligned");
        assert_eq!(s.budget_left, 2 * ms);
        assert_eq!(s.run_time, 5 * ms);
        // The run in progress counts in what is reported, before it is charged.
        s.start(30 * ms, 2);
        assert_eq!(s.run_time_at(33 * ms), 8 * ms);
        assert_eq!(s.run_time, 5 * ms);
        // New parameters while it runs: the time so far is not charged to the new budget.
        s.set_params(params(5, 2, 10), 40 * ms);
        assert!(!s.charge(41 * ms), "1 ms of the new 2");
        assert_eq!(s.run_time, 16 * ms);
    }

    #[test]
    fn the_timer_is_one_shot_to_the_next_event_and_off_when_nothing_needs_it() {
        let ms = 1_000_000;
        let alone = SchedState::new(params(5, 0, 0), 0);
        assert_eq!(next_deadline(0, Some(&alone), [].iter()), None, "tickless");
        let equal = SchedState::new(params(5, 0, 0), 0);
        assert_eq!(
            next_deadline(0, Some(&alone), [equal].iter()),
            Some(SLICE_NS)
        );
        let reserved = SchedState::new(params(5, 2, 10), 0);
        assert_eq!(next_deadline(0, Some(&reserved), [].iter()), Some(2 * ms));
        let mut throttled = SchedState::new(params(9, 2, 10), 0);
        throttled.throttled = true;
        assert_eq!(
            next_deadline(3 * ms, Some(&alone), [throttled].iter()),
            Some(10 * ms)
        );
        assert_eq!(
            next_deadline(3 * ms, None, [throttled].iter()),
            Some(10 * ms),
            "idle CPU wakes for a replenishment"
        );
        assert_eq!(next_deadline(3 * ms, None, [alone].iter()), None);
    }

    #[test]
    fn admission_refuses_overcommitment() {
        assert!(admissible([params(1, 2, 10), params(1, 5, 10)].into_iter()));
        assert!(admissible([params(1, 5, 10), params(1, 5, 10)].into_iter()));
        assert!(!admissible(
            [params(1, 5, 10), params(1, 6, 10)].into_iter()
        ));
        assert!(
            admissible([params(1, 0, 0); 10].into_iter()),
            "best effort costs nothing"
        );
    }

    #[test]
    fn parameters_are_validated() {
        assert!(params(1, 2, 10).is_valid(2));
        assert!(!params(1, 11, 10).is_valid(2), "budget beyond period");
        assert!(!SchedParams {
            affinity: 0,
            ..params(1, 0, 0)
        }
        .is_valid(2));
        assert!(
            !SchedParams {
                affinity: 0b100,
                ..params(1, 0, 0)
            }
            .is_valid(2),
            "CPU 2 does not exist"
        );
        assert!(!SchedParams {
            budget_ns: 5,
            period_ns: 0,
            ..params(1, 0, 0)
        }
        .is_valid(2));
    }
}
