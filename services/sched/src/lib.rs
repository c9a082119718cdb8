//! The scheduling policy of Mica's policy domain, as pure functions: from a snapshot of the
//! accounting page to the `sched_set` calls that carry the policy out.
//!
//! The kernel has the mechanism (DESIGN.md §6, `kernel/src/sched.rs`): per CPU, fixed
//! priorities, budget/period reservations that throttle a vCPU until its next period, round
//! robin among equals, affinity, and admission control that keeps the reservations of a CPU
//! within 100%. This crate decides the parameters. It is `no_std`, allocation-free and
//! `forbid(unsafe_code)`, so every policy is unit-tested on the host and the policy domain
//! (`services/sched-domain`) is a thin shell: read the page, [`Planner::plan`], issue each
//! [`Change`], print what changed, wait.
//!
//! Every CPU follows the policy of its pool (`mica_abi::sched::pack_policies`, the domain's
//! `arg`, computed by the toolstack from the manifest's `[[pool]]` tables):
//! - [`credit`]: fair share by weight with an optional cap;
//! - [`rt`]: the manifest's budget/period as a reservation, admission-controlled;
//! - [`partition`]: one vCPU per CPU, alone at the top priority;
//! - CPUs in no pool keep the kernel's defaults.
//!
//! [`numa`] places a domain's vCPUs on the CPUs of the node holding its memory, given the
//! topology; [`judge`] measures what the vCPUs received over a window, for the smoke tests.
//!
//! Nothing here keeps state the accounting page cannot rebuild: a restarted policy domain
//! starts with an empty [`Planner`], derives the same plan from the page, and finds the
//! kernel already running it (no [`Change`]s), so a crash and restart disturbs nothing.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod credit;
pub mod judge;
pub mod numa;
pub mod partition;
pub mod rt;
pub mod snapshot;

use core::fmt;

use heapless::Vec;
use mica_abi::sched::{pack_target, policy, policy_of};
use mica_abi::sysimage::SchedRequest;

pub use snapshot::{Observed, Snapshot};

/// Most vCPUs the accounting page describes.
pub const MAX_VCPUS: usize = mica_abi::sched::MAX_ACCOUNTED_VCPUS;
/// Most CPUs a policy argument describes (four bits each in a `u64`): the kernel's limit.
pub const MAX_CPUS: usize = mica_abi::layout::MAX_CPUS;
const _: () = assert!(MAX_CPUS * 4 <= 64);
/// Parts per million: utilisations and shares.
pub const PPM: u64 = 1_000_000;

/// Priority of a partitioned vCPU: nothing else runs on its CPU.
pub const PARTITION_PRIORITY: u8 = 250;
/// Priority of an admitted reservation.
pub const RT_PRIORITY: u8 = 200;
/// Priority of every vCPU of a credit CPU (the kernel's default).
pub const CREDIT_PRIORITY: u8 = 100;
/// Priority of best-effort work on an rt or partition CPU: it runs when the reserved or
/// partitioned vCPUs leave the CPU idle.
pub const BACKGROUND_PRIORITY: u8 = 50;

/// A CPU's policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// No pool: the kernel's defaults, untouched.
    None,
    /// Fair share by weight, optional cap.
    Credit,
    /// Reservations with admission control.
    Rt,
    /// One vCPU per CPU.
    Partition,
}

impl Policy {
    /// The policy of a `mica_abi::sched::policy` code (unknown codes: [`Policy::None`]).
    pub const fn from_code(code: u8) -> Policy {
        match code {
            policy::CREDIT => Policy::Credit,
            policy::RT => Policy::Rt,
            policy::PARTITION => Policy::Partition,
            _ => Policy::None,
        }
    }

    /// The name the manifest and the console use.
    pub const fn name(self) -> &'static str {
        match self {
            Policy::None => "none",
            Policy::Credit => "credit",
            Policy::Rt => "rt",
            Policy::Partition => "partition",
        }
    }
}

/// The policy of every CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policies {
    per_cpu: [Policy; MAX_CPUS],
}

impl Policies {
    /// Decodes the policy domain's argument (`mica_abi::sched::pack_policies`).
    pub fn from_arg(arg: u64) -> Policies {
        Policies {
            per_cpu: core::array::from_fn(|cpu| Policy::from_code(policy_of(arg, cpu))),
        }
    }

    /// The policy of `cpu` ([`Policy::None`] beyond [`MAX_CPUS`]).
    pub fn of(&self, cpu: usize) -> Policy {
        self.per_cpu.get(cpu).copied().unwrap_or(Policy::None)
    }

    /// The CPUs (bit n = CPU n) below `cpus` whose policy is `policy`.
    pub fn cpus_with(&self, policy: Policy, cpus: u32) -> u64 {
        (0..(cpus as usize).min(MAX_CPUS))
            .filter(|&c| self.per_cpu[c] == policy)
            .fold(0, |mask, c| mask | 1 << c)
    }
}

/// A vCPU: domain id and index in the domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VcpuKey {
    /// Domain id.
    pub domain: u16,
    /// vCPU index in the domain.
    pub index: u16,
}

impl fmt::Display for VcpuKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dom{}/{}", self.domain, self.index)
    }
}

/// Scheduling parameters as the accounting page shows them (microseconds) and `sched_set`
/// takes them (in nanoseconds: [`Change`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// Higher runs first.
    pub priority: u8,
    /// CPU time per period, microseconds; 0 with `period_us` 0 = no reservation.
    pub budget_us: u32,
    /// Replenishment period, microseconds.
    pub period_us: u32,
    /// Physical CPUs it may run on (bit n = CPU n).
    pub affinity: u64,
}

impl Params {
    /// No reservation, pinned to `cpu`.
    pub const fn unlimited(priority: u8, cpu: u8) -> Params {
        Params {
            priority,
            budget_us: 0,
            period_us: 0,
            affinity: 1 << cpu,
        }
    }

    /// A reservation of `budget_us` per `period_us`, pinned to `cpu`.
    pub const fn reserved(priority: u8, budget_us: u32, period_us: u32, cpu: u8) -> Params {
        Params {
            priority,
            budget_us,
            period_us,
            affinity: 1 << cpu,
        }
    }

    /// Whether a budget limits the vCPU.
    pub const fn has_reservation(&self) -> bool {
        self.budget_us > 0 && self.period_us > 0
    }

    /// The share of a CPU the reservation takes, parts per million (0 without one): the
    /// kernel's admission control adds these up per CPU (`mica_kernel::sched::admissible`).
    pub const fn utilisation_ppm(&self) -> u64 {
        if self.has_reservation() {
            // The kernel computes it in nanoseconds; microseconds give the same quotient.
            self.budget_us as u64 * PPM / self.period_us as u64
        } else {
            0
        }
    }
}

/// What the plan decided for one vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Which vCPU.
    pub key: VcpuKey,
    /// The CPU it is to run on (its affinity names only this one).
    pub cpu: u8,
    /// The policy of that CPU.
    pub policy: Policy,
    /// The parameters.
    pub params: Params,
    /// Credit: its weight (1 for the other policies).
    pub weight: u16,
    /// Credit: whether it wanted the CPU during the last interval (idle vCPUs get only a
    /// wake-up allowance).
    pub active: bool,
}

/// Something the policy domain reports besides the changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Note {
    /// rt: a reservation that would take the CPU past 100%; the vCPU runs best effort.
    Overcommitted {
        /// The vCPU.
        key: VcpuKey,
        /// Its CPU.
        cpu: u8,
        /// What it asked for.
        budget_us: u32,
        /// Per this period.
        period_us: u32,
        /// What the reservations admitted before it leave, parts per million.
        free_ppm: u64,
    },
    /// partition: more vCPUs than CPUs in the partition pool; this one only runs when the
    /// vCPU owning its CPU leaves it idle.
    PartitionFull {
        /// The vCPU left without a CPU of its own.
        key: VcpuKey,
        /// The pool's CPUs.
        pool: u64,
        /// vCPUs in the pool.
        vcpus: usize,
    },
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Note::Overcommitted {
                key,
                cpu,
                budget_us,
                period_us,
                free_ppm,
            } => write!(
                f,
                "sched: rt on CPU {cpu}: {key} budget {budget_us} us / period {period_us} us refused: over-committed ({}.{}% of the CPU left), runs best effort",
                free_ppm / 10_000,
                free_ppm % 10_000 / 1000
            ),
            Note::PartitionFull { key, pool, vcpus } => write!(
                f,
                "sched: partition error: {vcpus} vCPUs for {} CPUs (mask {pool:#x}): {key} has no CPU of its own, runs in the background",
                pool.count_ones()
            ),
        }
    }
}

/// One `sched_set` call: a vCPU whose parameters differ from the plan's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    /// What to set.
    pub decision: Decision,
    /// What the accounting page showed.
    pub previous: Params,
}

impl Change {
    /// `target` of `sched_set` (`mica_abi::sched::pack_target`).
    pub const fn target(&self) -> u64 {
        let d = &self.decision;
        pack_target(d.key.domain, d.key.index, d.params.priority)
    }

    /// `budget_ns` of `sched_set`.
    pub const fn budget_ns(&self) -> u64 {
        self.decision.params.budget_us as u64 * 1000
    }

    /// `period_ns` of `sched_set`.
    pub const fn period_ns(&self) -> u64 {
        self.decision.params.period_us as u64 * 1000
    }

    /// `affinity` of `sched_set`.
    pub const fn affinity(&self) -> u64 {
        self.decision.params.affinity
    }
}

impl fmt::Display for Change {
    /// The console line: `sched: <policy> on CPU <n>: <vcpu> weight <w> -> budget <b> us /
    /// period <p> us`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.decision;
        write!(f, "sched: {} on CPU {}: {}", d.policy.name(), d.cpu, d.key)?;
        if d.policy == Policy::Credit {
            write!(f, " weight {}", d.weight)?;
            if !d.active {
                write!(f, " (idle)")?;
            }
        }
        write!(f, " -> ")?;
        if d.params.has_reservation() {
            write!(
                f,
                "budget {} us / period {} us",
                d.params.budget_us, d.params.period_us
            )?;
        } else {
            write!(f, "no budget")?;
        }
        write!(f, ", priority {}", d.params.priority)
    }
}

/// Everything one planning round decided.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// One decision per managed vCPU (vCPUs of no-pool CPUs and the policy domain's own are
    /// left out), in [`VcpuKey`] order.
    pub decisions: Vec<Decision, MAX_VCPUS>,
    /// Refusals and errors.
    pub notes: Vec<Note, MAX_VCPUS>,
}

impl Plan {
    /// The decision for `key`.
    pub fn decision(&self, key: VcpuKey) -> Option<&Decision> {
        self.decisions.iter().find(|d| d.key == key)
    }

    /// The `sched_set` calls that turn `snapshot`'s parameters into the plan's, in an order
    /// the kernel's admission control accepts one by one: every call that lowers a CPU's
    /// reserved utilisation (or moves a vCPU away) before any that raises one.
    pub fn changes(&self, snapshot: &Snapshot) -> Vec<Change, MAX_VCPUS> {
        let mut changes: Vec<Change, MAX_VCPUS> = self
            .decisions
            .iter()
            .filter_map(|d| {
                let seen = snapshot.get(d.key)?;
                (seen.params != d.params).then_some(Change {
                    decision: *d,
                    previous: seen.params,
                })
            })
            .collect();
        // Growth in reserved utilisation on the vCPU's (new) CPU: a move counts in full.
        let growth = |c: &Change| -> i64 {
            let new = c.decision.params.utilisation_ppm() as i64;
            if c.previous.affinity == c.decision.params.affinity {
                new - c.previous.utilisation_ppm() as i64
            } else {
                new
            }
        };
        changes.sort_unstable_by_key(|c| (growth(c), c.decision.key));
        changes
    }
}

/// What the planner remembers between rounds: each vCPU's run time at the last one, to tell
/// the vCPUs that want a CPU from the idle ones. Losing it (a restart) costs one round of
/// judging by the vCPUs' states instead.
#[derive(Clone, Copy, Debug)]
struct Seen {
    key: VcpuKey,
    run_time_ns: u64,
    now_ns: u64,
}

/// Turns snapshots into plans.
#[derive(Clone, Debug)]
pub struct Planner {
    policies: Policies,
    own_domain: Option<u16>,
    topology: Option<numa::Topology>,
    history: Vec<Seen, MAX_VCPUS>,
}

impl Planner {
    /// A planner for `policies`, leaving the vCPUs of domain `own_domain` (the policy
    /// domain itself) alone.
    pub fn new(policies: Policies, own_domain: Option<u16>) -> Planner {
        Planner {
            policies,
            own_domain,
            topology: None,
            history: Vec::new(),
        }
    }

    /// Uses `topology` instead of the nodes the accounting page shows ([`numa`]).
    pub fn set_topology(&mut self, topology: numa::Topology) {
        self.topology = Some(topology);
    }

    /// The policies.
    pub fn policies(&self) -> &Policies {
        &self.policies
    }

    /// Plans from `snapshot` and remembers its run times for the next round.
    pub fn plan(&mut self, snapshot: &Snapshot) -> Plan {
        let mut plan = Plan::default();
        let managed = |v: &&Observed| {
            Some(v.key.domain) != self.own_domain
                && self.policies.of(v.cpu as usize) != Policy::None
        };
        // 1. Where each vCPU runs: partition assigns CPUs; NUMA may move the others to a CPU
        //    of the same policy on their memory's node.
        let mut placed: Vec<(Observed, u8), MAX_VCPUS> = Vec::new();
        let pool = self.policies.cpus_with(Policy::Partition, snapshot.cpus);
        let in_partition: Vec<Observed, MAX_VCPUS> = snapshot
            .vcpus
            .iter()
            .filter(managed)
            .filter(|v| self.policies.of(v.cpu as usize) == Policy::Partition)
            .copied()
            .collect();
        let assignment = partition::assign(&in_partition, pool);
        // The topology given, or the nodes the page shows (all 0 without NUMA: no moves).
        let derived;
        let topology = match &self.topology {
            Some(t) => t,
            None => {
                derived = numa::Topology::from_snapshot(snapshot);
                &derived
            }
        };
        let mut load = [0u32; MAX_CPUS];
        for v in snapshot.vcpus.iter().filter(managed) {
            if let Some(l) = load.get_mut(v.cpu as usize) {
                *l += 1;
            }
        }
        for v in snapshot.vcpus.iter().filter(managed) {
            let policy = self.policies.of(v.cpu as usize);
            let cpu = match policy {
                Policy::Partition => assignment
                    .iter()
                    .find(|a| a.key == v.key)
                    .and_then(|a| a.cpu)
                    .unwrap_or(v.cpu),
                _ => topology.place(v, self.policies.cpus_with(policy, snapshot.cpus), &mut load),
            };
            let _ = placed.push((*v, cpu));
        }
        // 2. Per CPU, the policy's parameters.
        for cpu in 0..(snapshot.cpus as usize).min(MAX_CPUS) {
            let on_cpu: Vec<Observed, MAX_VCPUS> = placed
                .iter()
                .filter(|(_, c)| *c as usize == cpu)
                .map(|(v, _)| *v)
                .collect();
            if on_cpu.is_empty() {
                continue;
            }
            let cpu = cpu as u8;
            match self.policies.of(cpu as usize) {
                Policy::None => {}
                Policy::Credit => {
                    let active: Vec<bool, MAX_VCPUS> = on_cpu
                        .iter()
                        .map(|v| credit::is_active(self.previous(v.key), v, snapshot.now_ns))
                        .collect();
                    for d in credit::plan_cpu(cpu, &on_cpu, &active) {
                        let _ = plan.decisions.push(d);
                    }
                }
                Policy::Rt => {
                    let (decisions, notes) = rt::plan_cpu(cpu, &on_cpu);
                    plan.decisions.extend(decisions);
                    plan.notes.extend(notes);
                }
                Policy::Partition => {
                    for v in on_cpu.iter() {
                        let owner = assignment.iter().any(|a| a.key == v.key && a.cpu.is_some());
                        let _ = plan.decisions.push(partition::decision(v.key, cpu, owner));
                    }
                }
            }
        }
        for a in assignment.iter().filter(|a| a.cpu.is_none()) {
            let _ = plan.notes.push(Note::PartitionFull {
                key: a.key,
                pool,
                vcpus: in_partition.len(),
            });
        }
        plan.decisions.sort_unstable_by_key(|d| d.key);
        self.remember(snapshot);
        plan
    }

    /// The run time and time of the last round for `key`.
    fn previous(&self, key: VcpuKey) -> Option<(u64, u64)> {
        self.history
            .iter()
            .find(|s| s.key == key)
            .map(|s| (s.run_time_ns, s.now_ns))
    }

    fn remember(&mut self, snapshot: &Snapshot) {
        self.history.clear();
        for v in snapshot.vcpus.iter() {
            let _ = self.history.push(Seen {
                key: v.key,
                run_time_ns: v.run_time_ns,
                now_ns: snapshot.now_ns,
            });
        }
    }
}

/// The weight a credit request stands for (0 = the default 1).
pub const fn weight_of(request: &SchedRequest) -> u16 {
    if request.weight == 0 {
        1
    } else {
        request.weight
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Snapshots written by hand.
    use super::*;
    use mica_abi::sched::state;

    /// A vCPU of domain `domain` on `cpu`, runnable, with `request`.
    pub fn vcpu(domain: u16, cpu: u8, request: SchedRequest) -> Observed {
        Observed {
            key: VcpuKey { domain, index: 0 },
            cpu,
            state: state::RUNNABLE,
            run_time_ns: 0,
            wakeups: 0,
            overruns: 0,
            params: Params::unlimited(100, cpu),
            request,
            node: 0,
            memory_node: 0,
        }
    }

    /// A credit request.
    pub fn weight(weight: u16, cap_percent: u8) -> SchedRequest {
        SchedRequest {
            weight,
            cap_percent,
            ..SchedRequest::default()
        }
    }

    /// An rt request.
    pub fn reservation(budget_us: u32, period_us: u32) -> SchedRequest {
        SchedRequest {
            budget_us,
            period_us,
            ..SchedRequest::default()
        }
    }

    /// A snapshot of `vcpus` at `now_ns` on a machine with `cpus` CPUs.
    pub fn snapshot(cpus: u32, now_ns: u64, vcpus: &[Observed]) -> Snapshot {
        let mut s = Snapshot {
            now_ns,
            cpus,
            vcpus: Vec::new(),
        };
        for v in vcpus {
            let _ = s.vcpus.push(*v);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use mica_abi::sched::pack_policies;

    #[test]
    fn policies_decode_from_the_argument() {
        let arg = pack_policies(&[policy::CREDIT, policy::NONE, policy::RT, policy::PARTITION]);
        let p = Policies::from_arg(arg);
        assert_eq!(p.of(0), Policy::Credit);
        assert_eq!(p.of(1), Policy::None);
        assert_eq!(p.of(2), Policy::Rt);
        assert_eq!(p.of(3), Policy::Partition);
        assert_eq!(p.of(40), Policy::None);
        assert_eq!(p.cpus_with(Policy::Rt, 4), 0b100);
        assert_eq!(p.cpus_with(Policy::None, 2), 0b10, "only CPUs that exist");
    }

    #[test]
    fn no_pool_cpus_and_the_policy_domain_are_left_alone() {
        let arg = pack_policies(&[policy::CREDIT, policy::NONE]);
        let mut planner = Planner::new(Policies::from_arg(arg), Some(9));
        let snap = snapshot(
            2,
            0,
            &[
                vcpu(1, 0, weight(1, 0)),
                vcpu(2, 1, weight(1, 0)),
                vcpu(9, 0, weight(1, 0)),
            ],
        );
        let plan = planner.plan(&snap);
        let keys: std::vec::Vec<u16> = plan.decisions.iter().map(|d| d.key.domain).collect();
        assert_eq!(keys, [1]);
    }

    #[test]
    fn changes_only_what_differs_and_lowers_before_it_raises() {
        let arg = pack_policies(&[policy::CREDIT]);
        let mut planner = Planner::new(Policies::from_arg(arg), None);
        let mut a = vcpu(1, 0, weight(1, 0));
        let b = vcpu(2, 0, weight(1, 0));
        // `a` holds the whole CPU; `b` arrives: `a` must shrink before `b` grows.
        a.params = Params::reserved(CREDIT_PRIORITY, 10_000, 10_000, 0);
        let snap = snapshot(1, 0, &[b, a]);
        let plan = planner.plan(&snap);
        let changes = planner_changes(&plan, &snap);
        assert_eq!(changes, [(1, 5000), (2, 5000)]);
        // Once applied, nothing changes.
        let mut applied = snap.clone();
        for v in applied.vcpus.iter_mut() {
            v.params = plan.decision(v.key).unwrap().params;
        }
        assert!(planner.plan(&applied).changes(&applied).is_empty());
    }

    fn planner_changes(plan: &Plan, snap: &Snapshot) -> std::vec::Vec<(u16, u32)> {
        plan.changes(snap)
            .iter()
            .map(|c| (c.decision.key.domain, c.decision.params.budget_us))
            .collect()
    }

    #[test]
    fn change_encodes_the_hypercall_and_prints_the_line() {
        let c = Change {
            decision: Decision {
                key: VcpuKey {
                    domain: 3,
                    index: 1,
                },
                cpu: 0,
                policy: Policy::Credit,
                params: Params::reserved(CREDIT_PRIORITY, 2857, 10_000, 0),
                weight: 2,
                active: true,
            },
            previous: Params::unlimited(CREDIT_PRIORITY, 0),
        };
        assert_eq!(c.target(), pack_target(3, 1, CREDIT_PRIORITY));
        assert_eq!(
            (c.budget_ns(), c.period_ns(), c.affinity()),
            (2_857_000, 10_000_000, 1)
        );
        assert_eq!(
            std::format!("{c}"),
            "sched: credit on CPU 0: dom3/1 weight 2 -> budget 2857 us / period 10000 us, priority 100"
        );
    }
}
