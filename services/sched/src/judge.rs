//! Measuring what the vCPUs received over a window, against what the plan promised.
//!
//! The smoke scenarios run under QEMU `-icount` (virtual time follows instructions), so run
//! times in the accounting page are deterministic; the policy domain compares two snapshots
//! taken a window apart, under one unchanged plan, and prints one verdict line per check:
//! - credit: the run times of the active, uncapped vCPUs of a CPU against their weights
//!   (each one's part of their total within ±[`CREDIT_TOLERANCE_PERCENT`]% of its weight's
//!   part), printed as ratios to the lightest one:
//!   `sched: credit ratio within 20%: 1.00 : 2.02 : 3.96 (weights 1 : 2 : 4, CPU 0)`;
//! - cap: a capped vCPU's run time against its cap, within ±[`CAP_TOLERANCE_POINTS`]
//!   percentage points;
//! - rt: an admitted reservation received its budget in every period of the window (one
//!   overrun per period: it used the whole budget each time, and no more than that).

use core::fmt;

use heapless::Vec;

use crate::{Plan, Policy, Snapshot, VcpuKey, MAX_CPUS};

/// Tolerance of the credit ratio, percent of each expected share.
pub const CREDIT_TOLERANCE_PERCENT: u64 = 20;
/// Tolerance of a cap, percentage points of the CPU.
pub const CAP_TOLERANCE_POINTS: u64 = 5;
/// Most vCPUs in one credit ratio line.
pub const MAX_RATIO: usize = 8;
/// Most verdicts of one window.
pub const MAX_VERDICTS: usize = 32;

/// One check over a window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The active, uncapped credit vCPUs of a CPU, in vCPU order.
    CreditRatio {
        /// The CPU.
        cpu: u8,
        /// Each vCPU's weight and run time relative to the lightest, in hundredths.
        ratios: Vec<(u16, u64), MAX_RATIO>,
        /// Whether every share was within tolerance.
        ok: bool,
    },
    /// A capped credit vCPU.
    Cap {
        /// The vCPU.
        key: VcpuKey,
        /// Its CPU.
        cpu: u8,
        /// Its cap, percent.
        cap_percent: u8,
        /// What it received, tenths of a percent of the window.
        got_permille: u64,
        /// Within tolerance.
        ok: bool,
    },
    /// An admitted rt reservation.
    Reservation {
        /// The vCPU.
        key: VcpuKey,
        /// Its CPU.
        cpu: u8,
        /// Budget, microseconds.
        budget_us: u32,
        /// Period, microseconds.
        period_us: u32,
        /// Whole periods in the window.
        periods: u64,
        /// Times it used up its budget in the window.
        overruns: u64,
        /// Run time in the window, microseconds.
        run_us: u64,
        /// Budget received in every period.
        ok: bool,
    },
}

impl Verdict {
    /// Whether the check passed.
    pub fn ok(&self) -> bool {
        match self {
            Verdict::CreditRatio { ok, .. }
            | Verdict::Cap { ok, .. }
            | Verdict::Reservation { ok, .. } => *ok,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::CreditRatio { cpu, ratios, ok } => {
                let how = if *ok { "within" } else { "OUTSIDE" };
                write!(f, "sched: credit ratio {how} {CREDIT_TOLERANCE_PERCENT}%: ")?;
                for (i, (_, r)) in ratios.iter().enumerate() {
                    let sep = if i == 0 { "" } else { " : " };
                    write!(f, "{sep}{}.{:02}", r / 100, r % 100)?;
                }
                write!(f, " (weights ")?;
                for (i, (w, _)) in ratios.iter().enumerate() {
                    let sep = if i == 0 { "" } else { " : " };
                    write!(f, "{sep}{w}")?;
                }
                write!(f, ", CPU {cpu})")
            }
            Verdict::Cap {
                key,
                cpu,
                cap_percent,
                got_permille,
                ok,
            } => {
                let how = if *ok { "within" } else { "OUTSIDE" };
                write!(
                    f,
                    "sched: cap {how} {CAP_TOLERANCE_POINTS} points: {key} got {}.{}% of CPU {cpu} (cap {cap_percent}%)",
                    got_permille / 10,
                    got_permille % 10
                )
            }
            Verdict::Reservation {
                key,
                cpu,
                budget_us,
                period_us,
                periods,
                overruns,
                run_us,
                ok,
            } => {
                let how = if *ok { "met" } else { "MISSED" };
                write!(
                    f,
                    "sched: rt reservation {how}: {key} {budget_us} us / {period_us} us on CPU {cpu}: {periods} periods, {overruns} budgets used up, {run_us} us run"
                )
            }
        }
    }
}

/// The checks of `plan` over the window from `start` to `end` (snapshots of the page).
pub fn judge(plan: &Plan, start: &Snapshot, end: &Snapshot) -> Vec<Verdict, MAX_VERDICTS> {
    let mut out: Vec<Verdict, MAX_VERDICTS> = Vec::new();
    let elapsed_ns = end.now_ns.saturating_sub(start.now_ns);
    if elapsed_ns == 0 {
        return out;
    }
    // Run time, overruns and request of a vCPU seen in both snapshots.
    let delta = |key: VcpuKey| {
        let (a, b) = (start.get(key)?, end.get(key)?);
        Some((
            b.run_time_ns.saturating_sub(a.run_time_ns),
            u64::from(b.overruns.saturating_sub(a.overruns)),
            b.request,
        ))
    };
    for cpu in 0..MAX_CPUS as u8 {
        // Credit ratio.
        let mut members: Vec<(u16, u64), MAX_RATIO> = Vec::new();
        for d in plan
            .decisions
            .iter()
            .filter(|d| d.cpu == cpu && d.policy == Policy::Credit && d.active)
        {
            if let Some((run, _, request)) = delta(d.key) {
                if request.cap_percent == 0 && run > 0 {
                    let _ = members.push((d.weight, run));
                }
            }
        }
        if members.len() >= 2 {
            let total_w: u64 = members.iter().map(|(w, _)| u64::from(*w)).sum();
            let total_run: u64 = members.iter().map(|(_, r)| *r).sum();
            // |run/total_run - w/total_w| <= tol% × w/total_w, in integers.
            let ok = members.iter().all(|(w, run)| {
                let got = u128::from(*run) * u128::from(total_w);
                let want = u128::from(*w) * u128::from(total_run);
                got.abs_diff(want) * 100 <= want * u128::from(CREDIT_TOLERANCE_PERCENT)
            });
            let (w_ref, run_ref) = members
                .iter()
                .copied()
                .min_by_key(|(w, _)| *w)
                .unwrap_or((1, 1));
            let ratios = members
                .iter()
                .map(|(w, run)| {
                    let r = u128::from(*run) * u128::from(w_ref) * 100 / u128::from(run_ref.max(1));
                    (*w, r as u64)
                })
                .collect();
            let _ = out.push(Verdict::CreditRatio { cpu, ratios, ok });
        }
        // Caps and reservations.
        for d in plan.decisions.iter().filter(|d| d.cpu == cpu) {
            let Some((run, overruns, request)) = delta(d.key) else {
                continue;
            };
            if d.policy == Policy::Credit && request.cap_percent > 0 && d.active {
                let got_permille = run * 1000 / elapsed_ns;
                let want = u64::from(request.cap_percent) * 10;
                let _ = out.push(Verdict::Cap {
                    key: d.key,
                    cpu,
                    cap_percent: request.cap_percent,
                    got_permille,
                    ok: got_permille.abs_diff(want) <= CAP_TOLERANCE_POINTS * 10,
                });
            }
            if d.policy == Policy::Rt && d.params.priority == crate::RT_PRIORITY {
                let period_ns = u64::from(d.params.period_us) * 1000;
                let budget_ns = u64::from(d.params.budget_us) * 1000;
                let periods = elapsed_ns / period_ns.max(1);
                // Its whole budget in every period (one overrun each, allowing the window's
                // partial periods at either end), and never more than the budget.
                let ok = overruns + 1 >= periods
                    && run + budget_ns >= periods * budget_ns
                    && run <= (periods + 2) * budget_ns;
                let _ = out.push(Verdict::Reservation {
                    key: d.key,
                    cpu,
                    budget_us: d.params.budget_us,
                    period_us: d.params.period_us,
                    periods,
                    overruns,
                    run_us: run / 1000,
                    ok,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use crate::{Planner, Policies};
    use mica_abi::sched::{pack_policies, policy};

    #[test]
    fn a_credit_ratio_within_tolerance_prints_like_the_scenario_expects() {
        let arg = pack_policies(&[policy::CREDIT]);
        let mut planner = Planner::new(Policies::from_arg(arg), None);
        let ws = [
            vcpu(1, 0, weight(1, 0)),
            vcpu(2, 0, weight(2, 0)),
            vcpu(3, 0, weight(4, 0)),
        ];
        let start = snapshot(1, 0, &ws);
        let plan = planner.plan(&start);
        let mut end = start.clone();
        end.now_ns = 700_000_000;
        for (v, run) in end.vcpus.iter_mut().zip([100u64, 202, 396]) {
            v.run_time_ns = run * 1_000_000;
        }
        let v = judge(&plan, &start, &end);
        assert_eq!(v.len(), 1);
        assert!(v[0].ok());
        assert_eq!(
            std::format!("{}", v[0]),
            "sched: credit ratio within 20%: 1.00 : 2.02 : 3.96 (weights 1 : 2 : 4, CPU 0)"
        );
        // 1 : 1 : 1 is far off 1 : 2 : 4.
        for v in end.vcpus.iter_mut() {
            v.run_time_ns = 233_000_000;
        }
        let v = judge(&plan, &start, &end);
        assert!(!v[0].ok());
        assert!(std::format!("{}", v[0]).contains("OUTSIDE 20%"));
    }

    #[test]
    fn a_cap_is_judged_in_points_of_the_window() {
        let arg = pack_policies(&[policy::CREDIT]);
        let mut planner = Planner::new(Policies::from_arg(arg), None);
        let start = snapshot(1, 0, &[vcpu(1, 0, weight(1, 25))]);
        let plan = planner.plan(&start);
        let mut end = start.clone();
        end.now_ns = 1_000_000_000;
        end.vcpus[0].run_time_ns = 251_000_000;
        let v = judge(&plan, &start, &end);
        assert_eq!(
            std::format!("{}", v[0]),
            "sched: cap within 5 points: dom1/0 got 25.1% of CPU 0 (cap 25%)"
        );
        end.vcpus[0].run_time_ns = 310_000_000;
        assert!(!judge(&plan, &start, &end)[0].ok());
    }

    #[test]
    fn a_reservation_is_met_when_it_used_its_budget_every_period() {
        let arg = pack_policies(&[policy::RT]);
        let mut planner = Planner::new(Policies::from_arg(arg), None);
        let start = snapshot(1, 0, &[vcpu(1, 0, reservation(2000, 10_000))]);
        let plan = planner.plan(&start);
        let mut end = start.clone();
        end.now_ns = 1_000_000_000;
        end.vcpus[0].run_time_ns = 200_000_000;
        end.vcpus[0].overruns = 100;
        let v = judge(&plan, &start, &end);
        assert!(v[0].ok());
        assert_eq!(
            std::format!("{}", v[0]),
            "sched: rt reservation met: dom1/0 2000 us / 10000 us on CPU 0: 100 periods, 100 budgets used up, 200000 us run"
        );
        end.vcpus[0].overruns = 90;
        end.vcpus[0].run_time_ns = 180_000_000;
        assert!(!judge(&plan, &start, &end)[0].ok(), "missed ten periods");
    }
}
