//! `rt`: the manifest's budget/period as a reservation at [`RT_PRIORITY`], with admission
//! control.
//!
//! A vCPU of an rt CPU whose domain asks for `budget_us` per `period_us` gets exactly that,
//! above everything else on the CPU except partitioned vCPUs, so it receives its budget in
//! every period however busy the CPU is. Reservations are admitted while their utilisations
//! (`budget / period`) add up to at most 100%; the kernel enforces the same bound
//! (`Overcommitted`), and the library refuses first so that the refusal is reported with
//! what was asked and what was left ([`Note::Overcommitted`]). A refused vCPU, and any vCPU
//! without a reservation, runs best effort at [`BACKGROUND_PRIORITY`] in the time the
//! reservations leave.
//!
//! Admission is in a fixed order so that a newcomer never evicts an admitted reservation:
//! first the vCPUs already running with their reservation (after a restart: whatever the
//! previous policy domain admitted), then the others in vCPU order.

use heapless::Vec;

use crate::{
    Decision, Note, Observed, Params, Policy, BACKGROUND_PRIORITY, MAX_VCPUS, PPM, RT_PRIORITY,
};

/// The least period the kernel accepts, microseconds.
pub const MIN_PERIOD_US: u32 = 100;

/// The reservation `v` asks for, if it asks for a valid one.
pub fn requested(v: &Observed, cpu: u8) -> Option<Params> {
    let r = &v.request;
    (r.budget_us > 0 && r.period_us >= MIN_PERIOD_US && r.budget_us <= r.period_us)
        .then(|| Params::reserved(RT_PRIORITY, r.budget_us, r.period_us, cpu))
}

/// The decisions for the vCPUs `on_cpu` of rt CPU `cpu`, and the refusals.
pub fn plan_cpu(cpu: u8, on_cpu: &[Observed]) -> (Vec<Decision, MAX_VCPUS>, Vec<Note, MAX_VCPUS>) {
    let mut order: Vec<(bool, Observed), MAX_VCPUS> = on_cpu
        .iter()
        .map(|v| {
            let holds = requested(v, cpu).is_some_and(|p| p == v.params);
            (!holds, *v)
        })
        .collect();
    order.sort_unstable_by_key(|(newcomer, v)| (*newcomer, v.key));
    let mut used = 0u64;
    let mut decisions: Vec<Decision, MAX_VCPUS> = Vec::new();
    let mut notes: Vec<Note, MAX_VCPUS> = Vec::new();
    for (_, v) in order.iter() {
        let background = Params::unlimited(BACKGROUND_PRIORITY, cpu);
        let params = match requested(v, cpu) {
            Some(p) if used + p.utilisation_ppm() <= PPM => {
                used += p.utilisation_ppm();
                p
            }
            Some(p) => {
                let _ = notes.push(Note::Overcommitted {
                    key: v.key,
                    cpu,
                    budget_us: p.budget_us,
                    period_us: p.period_us,
                    free_ppm: PPM - used,
                });
                background
            }
            None => background,
        };
        let _ = decisions.push(Decision {
            key: v.key,
            cpu,
            policy: Policy::Rt,
            params,
            weight: 1,
            active: v.wants_cpu(),
        });
    }
    decisions.sort_unstable_by_key(|d| d.key);
    (decisions, notes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use crate::{Planner, Policies, VcpuKey};
    use mica_abi::sched::{pack_policies, policy};

    #[test]
    fn reservations_are_admitted_up_to_the_whole_cpu() {
        let a = vcpu(1, 0, reservation(2000, 10_000));
        let b = vcpu(2, 0, reservation(5000, 10_000));
        let c = vcpu(3, 0, reservation(3000, 10_000));
        let (d, notes) = plan_cpu(0, &[a, b, c]);
        assert!(notes.is_empty(), "20% + 50% + 30% = 100% fits");
        assert!(d.iter().all(|d| d.params.priority == RT_PRIORITY));
        assert_eq!(d[1].params, Params::reserved(RT_PRIORITY, 5000, 10_000, 0));
    }

    #[test]
    fn over_commitment_is_refused_and_runs_best_effort() {
        let a = vcpu(1, 0, reservation(2000, 10_000));
        let greedy = vcpu(2, 0, reservation(9000, 10_000));
        let spinner = vcpu(3, 0, weight(1, 0));
        let (d, notes) = plan_cpu(0, &[a, greedy, spinner]);
        assert_eq!(
            notes.as_slice(),
            [Note::Overcommitted {
                key: greedy.key,
                cpu: 0,
                budget_us: 9000,
                period_us: 10_000,
                free_ppm: 800_000,
            }]
        );
        assert_eq!(d[0].params, Params::reserved(RT_PRIORITY, 2000, 10_000, 0));
        assert_eq!(d[1].params, Params::unlimited(BACKGROUND_PRIORITY, 0));
        assert_eq!(d[2].params, Params::unlimited(BACKGROUND_PRIORITY, 0));
        assert_eq!(
            std::format!("{}", notes[0]),
            "sched: rt on CPU 0: dom2/0 budget 9000 us / period 10000 us refused: over-committed (80.0% of the CPU left), runs best effort"
        );
    }

    #[test]
    fn an_admitted_reservation_is_not_evicted_by_a_newcomer() {
        // dom5 already holds 60%; dom1 (earlier in vCPU order) asks for 50%: dom1 is refused.
        let mut holder = vcpu(5, 0, reservation(6000, 10_000));
        holder.params = Params::reserved(RT_PRIORITY, 6000, 10_000, 0);
        let newcomer = vcpu(1, 0, reservation(5000, 10_000));
        let (d, notes) = plan_cpu(0, &[newcomer, holder]);
        assert_eq!(notes.len(), 1);
        assert!(matches!(
            notes[0],
            Note::Overcommitted {
                key: VcpuKey { domain: 1, .. },
                ..
            }
        ));
        assert_eq!(d[1].params, holder.params, "in key order again");
    }

    #[test]
    fn invalid_requests_run_best_effort() {
        let bad = vcpu(1, 0, reservation(20_000, 10_000));
        let tiny = vcpu(2, 0, reservation(10, 50));
        assert_eq!(requested(&bad, 0), None);
        assert_eq!(requested(&tiny, 0), None);
    }

    #[test]
    fn the_planner_applies_rt_per_cpu_and_reports_refusals() {
        let arg = pack_policies(&[policy::RT, policy::RT]);
        let mut planner = Planner::new(Policies::from_arg(arg), None);
        let snap = snapshot(
            2,
            0,
            &[
                vcpu(1, 0, reservation(6000, 10_000)),
                vcpu(2, 1, reservation(6000, 10_000)),
                vcpu(3, 0, reservation(6000, 10_000)),
            ],
        );
        let plan = planner.plan(&snap);
        assert_eq!(plan.notes.len(), 1, "only CPU 0 is over-committed");
        let changes = plan.changes(&snap);
        assert_eq!(changes.len(), 3);
        // Lowering dom3 to best effort (no reservation) comes before the reservations.
        assert_eq!(changes[0].decision.key.domain, 3);
    }
}
