//! `credit`: fair share by weight, with an optional cap, on the kernel's budget mechanism.
//!
//! Every vCPU of a credit CPU runs at [`CREDIT_PRIORITY`](crate::CREDIT_PRIORITY), so the
//! kernel round-robins them, and each gets a budget of `PERIOD_US × share` per
//! [`PERIOD_US`]: a vCPU that used its share is throttled until its next period and the
//! others run. The shares of a CPU add up to at most 100%, so the kernel's admission control
//! (which counts every budget on the CPU) accepts them, and the CPU is never idle while a
//! vCPU with budget left wants it.
//!
//! Shares ([`shares`]): the vCPUs that were *active* during the last interval split the CPU
//! by weight (`share = weight / sum of active weights`). A capped vCPU never gets more than
//! its cap; what its cap leaves over goes to the uncapped ones by weight (water-filling), so
//! the policy stays work-conserving. An *idle* vCPU (blocked for most of the last interval,
//! [`is_active`]) takes no share; it keeps a small wake-up allowance
//! ([`WAKE_SHARE_PPM`], at most its cap) so it can run at once when it wakes, and at the
//! next round, having used its allowance, it counts as active again and gets its full share.
//! The policy domain recomputes every interval from the accounting page; nothing else is
//! remembered, so a restarted policy domain derives the same budgets.
//!
//! Budgets are whole microseconds, at least [`MIN_BUDGET_US`] (a budget of 0 would mean
//! "unlimited" to the kernel); rounding down keeps their sum within the period.

use heapless::Vec;

use crate::{weight_of, Decision, Observed, Params, Policy, CREDIT_PRIORITY, MAX_VCPUS, PPM};

/// The replenishment period of every credit vCPU.
pub const PERIOD_US: u32 = 10_000;
/// The budget an idle vCPU keeps so it can run as soon as it wakes (5% of the CPU).
pub const WAKE_SHARE_PPM: u64 = 50_000;
/// The least budget: the kernel reads a budget of 0 as "no limit".
pub const MIN_BUDGET_US: u32 = 20;
/// An interval in which a vCPU ran less than this share of the time (half a wake-up
/// allowance) leaves it idle.
pub const ACTIVE_THRESHOLD_PPM: u64 = WAKE_SHARE_PPM / 2;

/// Whether `v` wanted the CPU since the last round, which saw it at `previous` (run time,
/// time). Without a previous round (a fresh vCPU, a restarted policy domain), by its state.
pub fn is_active(previous: Option<(u64, u64)>, v: &Observed, now_ns: u64) -> bool {
    match previous {
        Some((run, then)) if v.run_time_ns >= run && now_ns > then => {
            let used = u128::from(v.run_time_ns - run);
            let elapsed = u128::from(now_ns - then);
            used * u128::from(PPM) >= elapsed * u128::from(ACTIVE_THRESHOLD_PPM)
        }
        _ => v.wants_cpu(),
    }
}

/// One vCPU's claim on a credit CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim {
    /// Relative weight (at least 1).
    pub weight: u16,
    /// Most of the CPU it may have, parts per million (`PPM` = no cap).
    pub cap_ppm: u64,
    /// Whether it wants the CPU.
    pub active: bool,
}

/// The share of the CPU of each claim, parts per million, summing to at most `PPM`.
pub fn shares(claims: &[Claim]) -> Vec<u64, MAX_VCPUS> {
    let idle = claims.iter().filter(|c| !c.active).count() as u64;
    // Idle vCPUs keep an allowance; never more than half the CPU for all of them.
    let allowance = if idle * WAKE_SHARE_PPM > PPM / 2 {
        PPM / 2 / idle.max(1)
    } else {
        WAKE_SHARE_PPM
    };
    let mut share: Vec<u64, MAX_VCPUS> = claims
        .iter()
        .map(|c| {
            if c.active {
                0
            } else {
                allowance.min(c.cap_ppm)
            }
        })
        .collect();
    let mut left = PPM.saturating_sub(share.iter().sum());
    // Water-filling among the active ones: a cap below the fair share is granted as it is
    // and the rest is shared again, until no cap binds.
    let mut fixed: Vec<bool, MAX_VCPUS> = claims.iter().map(|c| !c.active).collect();
    loop {
        let weights: u64 = claims
            .iter()
            .zip(fixed.iter())
            .filter(|(_, f)| !**f)
            .map(|(c, _)| u64::from(c.weight))
            .sum();
        if weights == 0 {
            break;
        }
        let fair = |c: &Claim| left * u64::from(c.weight) / weights;
        let capped = claims
            .iter()
            .enumerate()
            .find(|(i, c)| !fixed[*i] && fair(c) > c.cap_ppm);
        match capped {
            Some((i, c)) => {
                share[i] = c.cap_ppm;
                fixed[i] = true;
                left -= c.cap_ppm;
            }
            None => {
                for (i, c) in claims.iter().enumerate() {
                    if !fixed[i] {
                        share[i] = fair(c);
                    }
                }
                break;
            }
        }
    }
    share
}

/// Budgets (microseconds per [`PERIOD_US`]) for `shares`: rounded down, at least
/// [`MIN_BUDGET_US`], and together within the period (what the minimums add is taken from
/// the largest budget).
pub fn budgets(shares: &[u64]) -> Vec<u32, MAX_VCPUS> {
    let mut budgets: Vec<u32, MAX_VCPUS> = shares
        .iter()
        .map(|s| ((u64::from(PERIOD_US) * s / PPM) as u32).max(MIN_BUDGET_US))
        .collect();
    let total: u32 = budgets.iter().sum();
    if total > PERIOD_US {
        if let Some(largest) = budgets.iter_mut().max() {
            *largest = largest.saturating_sub(total - PERIOD_US).max(MIN_BUDGET_US);
        }
    }
    budgets
}

/// The decisions for the vCPUs `on_cpu` of credit CPU `cpu`; `active[i]` says whether
/// `on_cpu[i]` wanted the CPU.
pub fn plan_cpu(cpu: u8, on_cpu: &[Observed], active: &[bool]) -> Vec<Decision, MAX_VCPUS> {
    let claims: Vec<Claim, MAX_VCPUS> = on_cpu
        .iter()
        .zip(active)
        .map(|(v, a)| Claim {
            weight: weight_of(&v.request),
            cap_ppm: match v.request.cap_percent {
                0 => PPM,
                p => u64::from(p.min(100)) * (PPM / 100),
            },
            active: *a,
        })
        .collect();
    let shares = shares(&claims);
    let budgets = budgets(&shares);
    on_cpu
        .iter()
        .zip(claims.iter())
        .zip(budgets.iter())
        .map(|((v, c), b)| Decision {
            key: v.key,
            cpu,
            policy: Policy::Credit,
            params: Params::reserved(CREDIT_PRIORITY, *b, PERIOD_US, cpu),
            weight: c.weight,
            active: c.active,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use crate::{Planner, Policies};
    use mica_abi::sched::{pack_policies, policy, state};

    fn claim(weight: u16, cap_percent: u64, active: bool) -> Claim {
        Claim {
            weight,
            cap_ppm: if cap_percent == 0 {
                PPM
            } else {
                cap_percent * 10_000
            },
            active,
        }
    }

    #[test]
    fn active_vcpus_share_by_weight() {
        let s = shares(&[claim(1, 0, true), claim(2, 0, true), claim(4, 0, true)]);
        assert_eq!(s.as_slice(), [142_857, 285_714, 571_428]);
        assert_eq!(
            budgets(&s).as_slice(),
            [1428, 2857, 5714],
            "10 ms × 1/7, 2/7, 4/7"
        );
        assert_eq!(
            shares(&[claim(3, 0, true)]).as_slice(),
            [PPM],
            "alone: all of it"
        );
    }

    #[test]
    fn a_cap_binds_and_its_rest_goes_to_the_others() {
        // Fair would be 50/50; the 25% cap leaves 75% to the other.
        let s = shares(&[claim(1, 25, true), claim(1, 0, true)]);
        assert_eq!(s.as_slice(), [250_000, 750_000]);
        // A cap above the fair share does not bind.
        let s = shares(&[claim(1, 80, true), claim(1, 0, true)]);
        assert_eq!(s.as_slice(), [500_000, 500_000]);
        // Alone and capped: the cap, and the CPU idles for the rest.
        assert_eq!(shares(&[claim(4, 25, true)]).as_slice(), [250_000]);
        // Caps cascade: 10% binds, then among the rest 30% binds.
        let s = shares(&[claim(1, 10, true), claim(1, 30, true), claim(1, 0, true)]);
        assert_eq!(s.as_slice(), [100_000, 300_000, 600_000]);
    }

    #[test]
    fn idle_vcpus_keep_only_a_wake_up_allowance() {
        let s = shares(&[claim(1, 0, true), claim(8, 0, false)]);
        assert_eq!(s.as_slice(), [PPM - WAKE_SHARE_PPM, WAKE_SHARE_PPM]);
        // An idle capped vCPU keeps at most its cap.
        let s = shares(&[claim(1, 2, false), claim(1, 0, true)]);
        assert_eq!(s.as_slice(), [20_000, 980_000]);
        // Many idle ones share at most half the CPU.
        let many = [claim(1, 0, false); 20];
        let s = shares(&many);
        assert_eq!(s.iter().sum::<u64>(), PPM / 2);
    }

    #[test]
    fn budgets_stay_within_the_period_and_never_reach_zero() {
        let s = shares(&[claim(65535, 0, true), claim(1, 0, true), claim(1, 0, true)]);
        let b = budgets(&s);
        assert!(b.iter().all(|b| *b >= MIN_BUDGET_US));
        assert!(b.iter().sum::<u32>() <= PERIOD_US);
    }

    #[test]
    fn activity_is_judged_by_the_time_used_in_the_interval() {
        let ms = 1_000_000;
        let mut v = vcpu(1, 0, weight(1, 0));
        v.run_time_ns = 50 * ms;
        assert!(is_active(Some((0, 0)), &v, 100 * ms), "ran half the time");
        v.state = state::BLOCKED;
        assert!(
            !is_active(Some((49 * ms, 0)), &v, 100 * ms),
            "ran 1% of the time and blocks"
        );
        assert!(!is_active(None, &v, 100 * ms), "no history: blocked = idle");
        v.state = state::RUNNABLE;
        assert!(
            is_active(None, &v, 100 * ms),
            "no history: runnable = active"
        );
        assert!(
            is_active(Some((60 * ms, 0)), &v, 100 * ms),
            "run time went back: a new vCPU in a reused slot, judged by its state"
        );
    }

    #[test]
    fn the_planner_shares_a_credit_cpu_and_recomputes_when_one_goes_idle() {
        let ms = 1_000_000;
        let arg = pack_policies(&[policy::CREDIT]);
        let mut planner = Planner::new(Policies::from_arg(arg), None);
        let mut a = vcpu(1, 0, weight(1, 0));
        let mut b = vcpu(2, 0, weight(3, 0));
        let plan = planner.plan(&snapshot(1, 0, &[a, b]));
        let budget = |plan: &crate::Plan, d: u16| {
            plan.decisions
                .iter()
                .find(|x| x.key.domain == d)
                .unwrap()
                .params
                .budget_us
        };
        assert_eq!((budget(&plan, 1), budget(&plan, 2)), (2500, 7500));
        // Over the next 100 ms `b` blocks after 1 ms: it goes idle, `a` gets the rest.
        a.run_time_ns = 25 * ms;
        b.run_time_ns = ms;
        b.state = state::BLOCKED;
        let plan = planner.plan(&snapshot(1, 100 * ms, &[a, b]));
        assert_eq!((budget(&plan, 1), budget(&plan, 2)), (9500, 500));
        assert!(!plan.decision(b.key).unwrap().active);
        // It wakes and uses its allowance: active again, full share.
        a.run_time_ns += 95 * ms;
        b.run_time_ns += 5 * ms;
        b.state = state::RUNNABLE;
        let plan = planner.plan(&snapshot(1, 200 * ms, &[a, b]));
        assert_eq!((budget(&plan, 1), budget(&plan, 2)), (2500, 7500));
    }
}
