//! The policies run against the kernel's own scheduling mechanism (`mica_kernel::sched`),
//! simulated on one CPU: vCPUs that spin or mostly sleep, the kernel's pick / charge /
//! deadline rules, and the policy domain replanning from a snapshot every 100 ms, its
//! changes applied one by one through the kernel's admission check.

use mica_abi::sched::{pack_policies, policy, state};
use mica_abi::sysimage::SchedRequest;
use mica_kernel::sched::{self, Candidate, SchedParams, SchedState};
use mica_sched::{judge, Observed, Params, Planner, Policies, Snapshot, VcpuKey};

const MS: u64 = 1_000_000;
const REPLAN_NS: u64 = 100 * MS;

#[derive(Clone, Copy)]
enum Kind {
    /// Always wants the CPU.
    Spin,
    /// Wakes every `every` ns and works `work` ns.
    Sleepy { every: u64, work: u64 },
}

struct SimVcpu {
    key: VcpuKey,
    request: SchedRequest,
    kind: Kind,
    sched: SchedState,
    runnable: bool,
    work_left: u64,
    next_wake: u64,
}

struct Cpu {
    vcpus: Vec<SimVcpu>,
    now: u64,
    current: Option<usize>,
    deadline: Option<u64>,
    seq: u64,
    planner: Planner,
    snapshots: Vec<Snapshot>,
}

impl Cpu {
    fn new(policy_code: u8, vcpus: &[(u16, SchedRequest, Kind)]) -> Cpu {
        Cpu {
            vcpus: vcpus
                .iter()
                .map(|(domain, request, kind)| SimVcpu {
                    key: VcpuKey {
                        domain: *domain,
                        index: 0,
                    },
                    request: *request,
                    kind: *kind,
                    sched: SchedState::new(SchedParams::default_on(0), 0),
                    runnable: true,
                    work_left: match kind {
                        Kind::Spin => u64::MAX,
                        Kind::Sleepy { work, .. } => *work,
                    },
                    next_wake: 0,
                })
                .collect(),
            now: 0,
            current: None,
            deadline: None,
            seq: 0,
            planner: Planner::new(Policies::from_arg(pack_policies(&[policy_code])), None),
            snapshots: Vec::new(),
        }
    }

    fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot {
            now_ns: self.now,
            cpus: 1,
            vcpus: heapless::Vec::new(),
        };
        for (i, v) in self.vcpus.iter().enumerate() {
            let p = v.sched.params;
            let _ = s.vcpus.push(Observed {
                key: v.key,
                cpu: 0,
                state: if self.current == Some(i) {
                    state::RUNNING
                } else if v.runnable {
                    state::RUNNABLE
                } else {
                    state::BLOCKED
                },
                run_time_ns: v.sched.run_time,
                wakeups: v.sched.wakeups as u32,
                overruns: v.sched.overruns as u32,
                params: Params {
                    priority: p.priority,
                    budget_us: (p.budget_ns / 1000) as u32,
                    period_us: (p.period_ns / 1000) as u32,
                    affinity: p.affinity,
                },
                request: v.request,
                node: 0,
                memory_node: 0,
            });
        }
        s
    }

    /// The policy domain's round: plan, then each change through admission control.
    fn replan(&mut self) {
        let snap = self.snapshot();
        let plan = self.planner.plan(&snap);
        for c in plan.changes(&snap) {
            let i = self
                .vcpus
                .iter()
                .position(|v| v.key == c.decision.key)
                .unwrap();
            let params = SchedParams {
                priority: c.decision.params.priority,
                budget_ns: c.budget_ns(),
                period_ns: c.period_ns(),
                affinity: c.affinity(),
            };
            assert!(params.is_valid(1), "{params:?}");
            let others = self
                .vcpus
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, v)| v.sched.params);
            assert!(
                sched::admissible(others.chain(std::iter::once(params))),
                "the kernel would refuse {c}"
            );
            self.vcpus[i].sched.set_params(params, self.now);
            // The kernel reschedules the CPU after sched_set.
            self.deadline = Some(self.now);
        }
        self.snapshots.push(self.snapshot());
    }

    fn run_until(&mut self, end: u64) {
        let mut next_replan = 0;
        while self.now < end {
            if self.now >= next_replan {
                self.replan();
                next_replan += REPLAN_NS;
            }
            // Wake-ups.
            for v in self.vcpus.iter_mut() {
                if let Kind::Sleepy { every, work } = v.kind {
                    if !v.runnable && self.now >= v.next_wake {
                        v.runnable = true;
                        v.work_left = work;
                        v.next_wake += every;
                        v.sched.wakeups += 1;
                    }
                }
            }
            // pick(): charge, then keep or choose.
            let resched = self.deadline.is_some_and(|d| self.now >= d);
            if let Some(c) = self.current {
                self.vcpus[c].sched.charge(self.now);
            }
            for v in self.vcpus.iter_mut() {
                v.sched.replenish(self.now);
            }
            let candidates: Vec<usize> = self
                .vcpus
                .iter()
                .enumerate()
                .filter(|(_, v)| v.runnable)
                .map(|(i, _)| i)
                .collect();
            let best = sched::choose(candidates.iter().map(|&i| Candidate {
                id: i,
                sched: &self.vcpus[i].sched,
            }));
            let keep = self.current.filter(|&c| {
                !resched
                    && self.vcpus[c].runnable
                    && self.vcpus[c].sched.eligible()
                    && best.is_some_and(|b| {
                        self.vcpus[b].sched.params.priority <= self.vcpus[c].sched.params.priority
                    })
            });
            let chosen = keep.or(best);
            if chosen != self.current {
                if let Some(v) = chosen {
                    self.seq += 1;
                    self.vcpus[v].sched.start(self.now, self.seq);
                }
            } else if let Some(v) = chosen {
                self.vcpus[v].sched.resume(self.now);
            }
            self.current = chosen;
            let waiting = candidates
                .iter()
                .filter(|&&i| Some(i) != chosen)
                .map(|&i| &self.vcpus[i].sched);
            self.deadline =
                sched::next_deadline(self.now, chosen.map(|c| &self.vcpus[c].sched), waiting);
            // Run to the next event.
            let mut next = end.min(next_replan);
            if let Some(d) = self.deadline {
                next = next.min(d);
            }
            for v in self.vcpus.iter() {
                if !v.runnable {
                    next = next.min(v.next_wake);
                }
            }
            if let Some(c) = chosen {
                next = next.min(self.now.saturating_add(self.vcpus[c].work_left));
            }
            let next = next.max(self.now + 1);
            if let Some(c) = chosen {
                let v = &mut self.vcpus[c];
                if !matches!(v.kind, Kind::Spin) {
                    v.work_left -= (next - self.now).min(v.work_left);
                    if v.work_left == 0 {
                        v.sched.charge(next);
                        v.runnable = false;
                        self.current = None;
                    }
                }
            }
            self.now = next;
        }
        if let Some(c) = self.current {
            self.vcpus[c].sched.charge(self.now);
            self.vcpus[c].sched.resume(self.now);
        }
    }

    fn run_ms(&self, domain: u16) -> u64 {
        self.vcpus
            .iter()
            .find(|v| v.key.domain == domain)
            .unwrap()
            .sched
            .run_time
            / MS
    }
}

fn weight(weight: u16, cap_percent: u8) -> SchedRequest {
    SchedRequest {
        weight,
        cap_percent,
        ..SchedRequest::default()
    }
}

fn reservation(budget_us: u32, period_us: u32) -> SchedRequest {
    SchedRequest {
        budget_us,
        period_us,
        ..SchedRequest::default()
    }
}

/// Judges the window between the snapshots taken at `from` and `to` ms, under the plan of
/// the last round.
fn verdicts(cpu: &mut Cpu, from_ms: u64, to_ms: u64) -> Vec<judge::Verdict> {
    let at = |ms: u64| {
        cpu.snapshots
            .iter()
            .find(|s| s.now_ns == ms * MS)
            .cloned()
            .unwrap()
    };
    let (start, end) = (at(from_ms), at(to_ms));
    let plan = cpu.planner.clone().plan(&end);
    judge::judge(&plan, &start, &end).into_iter().collect()
}

#[test]
fn credit_weights_1_2_4_get_ratios_1_2_4() {
    let mut cpu = Cpu::new(
        policy::CREDIT,
        &[
            (1, weight(1, 0), Kind::Spin),
            (2, weight(2, 0), Kind::Spin),
            (3, weight(4, 0), Kind::Spin),
        ],
    );
    cpu.run_until(2000 * MS);
    let v = verdicts(&mut cpu, 500, 1500);
    assert_eq!(v.len(), 1);
    assert!(v[0].ok(), "{}", v[0]);
    let (a, b, c) = (cpu.run_ms(1), cpu.run_ms(2), cpu.run_ms(3));
    // Within 5% over the whole run.
    assert!((2 * a).abs_diff(b) * 20 <= b, "{a} {b} {c}");
    assert!((4 * a).abs_diff(c) * 20 <= c, "{a} {b} {c}");
    assert!(
        a + b + c >= 1990,
        "work-conserving: the CPU never idles ({a} {b} {c})"
    );
}

#[test]
fn a_capped_vcpu_gets_its_cap_while_the_other_idles() {
    let mut cpu = Cpu::new(
        policy::CREDIT,
        &[
            (1, weight(1, 25), Kind::Spin),
            (
                2,
                weight(1, 0),
                Kind::Sleepy {
                    every: 10 * MS,
                    work: 20_000,
                },
            ),
        ],
    );
    cpu.run_until(2000 * MS);
    let v = verdicts(&mut cpu, 500, 1500);
    let cap = v
        .iter()
        .find(|v| matches!(v, judge::Verdict::Cap { .. }))
        .unwrap();
    assert!(cap.ok(), "{cap}");
    let got = cpu.run_ms(1);
    assert!((490..=510).contains(&got), "25% of 2 s: {got} ms");
}

#[test]
fn an_uncapped_spinner_takes_what_an_idle_neighbour_leaves() {
    let mut cpu = Cpu::new(
        policy::CREDIT,
        &[
            (1, weight(1, 0), Kind::Spin),
            (
                2,
                weight(4, 0),
                Kind::Sleepy {
                    every: 10 * MS,
                    work: 100_000,
                },
            ),
        ],
    );
    cpu.run_until(1000 * MS);
    // The first round sees both runnable and splits 1 : 4; from the second on the sleeper
    // counts as idle: it still gets the 1% it needs out of its 5% wake-up allowance, and the
    // spinner the other 95%.
    let run = |at_ms: u64, d: u16| {
        let s = cpu
            .snapshots
            .iter()
            .find(|s| s.now_ns == at_ms * MS)
            .unwrap();
        s.vcpus
            .iter()
            .find(|v| v.key.domain == d)
            .unwrap()
            .run_time_ns
            / MS
    };
    let spinner = run(900, 1) - run(200, 1);
    assert!(spinner >= 660, "spinner got {spinner} of 700 ms");
    assert!(cpu.run_ms(2) >= 9, "sleeper got {} ms", cpu.run_ms(2));
}

#[test]
fn a_reservation_meets_every_period_next_to_two_spinners() {
    let mut cpu = Cpu::new(
        policy::RT,
        &[
            (1, reservation(2000, 10_000), Kind::Spin),
            (2, SchedRequest::default(), Kind::Spin),
            (3, SchedRequest::default(), Kind::Spin),
            (4, reservation(9000, 10_000), Kind::Spin),
        ],
    );
    cpu.run_until(1000 * MS);
    let v = verdicts(&mut cpu, 100, 900);
    let met = v
        .iter()
        .find(|v| matches!(v, judge::Verdict::Reservation { .. }))
        .unwrap();
    assert!(met.ok(), "{met}");
    assert_eq!(v.len(), 1, "the over-committing one was refused");
    assert!(cpu.run_ms(1).abs_diff(200) <= 2, "{} ms", cpu.run_ms(1));
    // The refused one and the spinners share the rest.
    assert!(cpu.run_ms(2) + cpu.run_ms(3) + cpu.run_ms(4) >= 790);
}

#[test]
fn a_restarted_planner_derives_the_same_plan_and_changes_nothing() {
    let mut cpu = Cpu::new(
        policy::CREDIT,
        &[
            (1, weight(1, 0), Kind::Spin),
            (2, weight(3, 50), Kind::Spin),
        ],
    );
    cpu.run_until(500 * MS);
    let snap = cpu.snapshot();
    let mut fresh = Planner::new(*cpu.planner.policies(), None);
    assert!(fresh.plan(&snap).changes(&snap).is_empty());
}
