//! NUMA-aware placement: a domain's vCPUs run on CPUs of the node that holds its memory.
//!
//! The policy domain needs two maps: the node of every CPU and the node of every domain's
//! memory ([`Topology`]). With them, [`place`] keeps a vCPU where it is when its CPU is on
//! its memory's node (or the node is unknown), and otherwise moves it to the least loaded
//! CPU of the same policy on that node; when that node has no CPU of the policy it stays.
//! Credit and rt CPUs use it ([`crate::Planner::set_topology`]); partition assigns CPUs on
//! its own.
//!
//! The accounting page carries, per vCPU, the node of its CPU and of its domain's memory
//! (`VcpuAccount::node`, `memory_node`); [`Topology::from_snapshot`] turns them into the two
//! maps, and the planner uses that unless [`crate::Planner::set_topology`] gave one. The page
//! has no per-CPU node table, so a CPU on which no vCPU runs has no known node and is never
//! a target: a vCPU moves only to a CPU of its node that already hosts a vCPU.

use heapless::Vec;

use crate::{Observed, MAX_CPUS};

/// Most domains a topology names (a system image holds at most 16, restarts reuse ids).
pub const MAX_DOMAINS: usize = 64;

/// Which node each CPU and each domain's memory is on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    cpu_node: [Option<u8>; MAX_CPUS],
    domain_node: Vec<(u16, u8), MAX_DOMAINS>,
}

impl Topology {
    /// CPU `i` is on node `cpu_node[i]`; domain `d`'s memory is on the node paired with it
    /// in `domain_node`.
    pub fn new(cpu_node: &[u8], domain_node: &[(u16, u8)]) -> Topology {
        Topology {
            cpu_node: core::array::from_fn(|i| cpu_node.get(i).copied()),
            domain_node: domain_node.iter().copied().take(MAX_DOMAINS).collect(),
        }
    }

    /// The nodes a snapshot shows: each vCPU's CPU's node and its domain's memory node.
    pub fn from_snapshot(snapshot: &crate::Snapshot) -> Topology {
        let mut t = Topology {
            cpu_node: [None; MAX_CPUS],
            domain_node: Vec::new(),
        };
        for v in snapshot.vcpus.iter() {
            if let Some(n) = t.cpu_node.get_mut(v.cpu as usize) {
                *n = Some(v.node);
            }
            if t.node_of_domain(v.key.domain).is_none() {
                let _ = t.domain_node.push((v.key.domain, v.memory_node));
            }
        }
        t
    }

    /// The node of domain `domain`'s memory, if known.
    pub fn node_of_domain(&self, domain: u16) -> Option<u8> {
        self.domain_node
            .iter()
            .find(|(d, _)| *d == domain)
            .map(|(_, n)| *n)
    }

    /// The CPUs (mask) of `pool` on node `node`.
    pub fn cpus_on(&self, node: u8, pool: u64) -> u64 {
        (0..MAX_CPUS)
            .filter(|&c| pool & (1 << c) != 0 && self.cpu_node[c] == Some(node))
            .fold(0, |m, c| m | 1 << c)
    }

    /// Where vCPU `v` should run among the CPUs of `pool`; `load` counts the vCPUs placed
    /// on each CPU and is updated for a move.
    pub fn place(&self, v: &Observed, pool: u64, load: &mut [u32; MAX_CPUS]) -> u8 {
        place(
            v.cpu,
            self.node_of_domain(v.key.domain),
            &self.cpu_node,
            pool,
            load,
        )
    }
}

/// The CPU for a vCPU now on `cpu` whose memory is on `node`, among the CPUs of `pool`
/// (`cpu_node[i]`: the node of CPU `i`); `load` counts vCPUs per CPU and follows a move.
pub fn place(
    cpu: u8,
    node: Option<u8>,
    cpu_node: &[Option<u8>],
    pool: u64,
    load: &mut [u32; MAX_CPUS],
) -> u8 {
    let Some(node) = node else { return cpu };
    if cpu_node.get(cpu as usize).copied().flatten() == Some(node) {
        return cpu;
    }
    let best = (0..MAX_CPUS.min(cpu_node.len()))
        .filter(|&c| pool & (1 << c) != 0 && cpu_node[c] == Some(node))
        .min_by_key(|&c| (load[c], c));
    match best {
        Some(to) => {
            if let Some(from) = load.get_mut(cpu as usize) {
                *from = from.saturating_sub(1);
            }
            load[to] += 1;
            to as u8
        }
        None => cpu,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use crate::{Planner, Policies, Policy};
    use mica_abi::sched::{pack_policies, policy};

    #[test]
    fn a_vcpu_on_its_memorys_node_stays() {
        let nodes = [Some(0), Some(0), Some(1), Some(1)];
        let mut load = [0; MAX_CPUS];
        assert_eq!(place(1, Some(0), &nodes, 0b1111, &mut load), 1);
        assert_eq!(place(1, None, &nodes, 0b1111, &mut load), 1, "unknown node");
    }

    #[test]
    fn a_vcpu_moves_to_the_least_loaded_cpu_of_its_node() {
        let nodes = [Some(0), Some(0), Some(1), Some(1)];
        let mut load = [2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(place(0, Some(1), &nodes, 0b1111, &mut load), 3);
        assert_eq!(load[..4], [1, 0, 1, 1]);
        assert_eq!(
            place(0, Some(1), &nodes, 0b1111, &mut load),
            2,
            "ties: lowest"
        );
        assert_eq!(
            place(0, Some(1), &nodes, 0b0011, &mut load),
            0,
            "no CPU of the pool on that node: stays"
        );
    }

    #[test]
    fn the_page_s_nodes_drive_placement() {
        // CPUs 0 and 1 (node 0), 2 and 3 (node 1), all credit. dom1's memory is on node 1 but
        // it runs on CPU 0: it moves to CPU 3, the least loaded CPU of node 1 that the page
        // knows; the others stay on their node; CPU 1 runs nothing, so its node is unknown.
        let arg = pack_policies(&[policy::CREDIT; 4]);
        let mut planner = Planner::new(Policies::from_arg(arg), None);
        let mut misplaced = vcpu(1, 0, weight(1, 0));
        misplaced.memory_node = 1;
        let on_node_1 = |domain: u16, cpu: u8| {
            let mut v = vcpu(domain, cpu, weight(1, 0));
            v.node = 1;
            v.memory_node = 1;
            v
        };
        let (a, b, c) = (on_node_1(2, 2), on_node_1(3, 3), on_node_1(4, 2));
        let snap = snapshot(4, 0, &[misplaced, a, b, c]);
        let t = Topology::from_snapshot(&snap);
        assert_eq!(t.cpus_on(1, 0b1111), 0b1100);
        assert_eq!(t.cpus_on(0, 0b1111), 0b0001, "CPU 1 hosts nothing: unknown");
        let plan = planner.plan(&snap);
        assert_eq!(plan.decision(misplaced.key).unwrap().cpu, 3);
        assert_eq!(plan.decision(a.key).unwrap().cpu, 2);
        let changes = plan.changes(&snap);
        assert!(changes
            .iter()
            .any(|c| c.decision.key == misplaced.key && c.affinity() == 0b1000));
    }

    #[test]
    fn the_planner_places_credit_vcpus_on_their_node() {
        // CPUs 0,1 on node 0, CPUs 2,3 on node 1, all credit. dom1's memory is on node 1,
        // its two vCPUs start on CPU 0: they spread over CPUs 2 and 3.
        let arg = pack_policies(&[policy::CREDIT; 4]);
        let mut planner = Planner::new(Policies::from_arg(arg), None);
        planner.set_topology(Topology::new(&[0, 0, 1, 1], &[(1, 1), (2, 0)]));
        let mut b = vcpu(1, 0, weight(1, 0));
        b.key.index = 1;
        let snap = snapshot(
            4,
            0,
            &[vcpu(1, 0, weight(1, 0)), b, vcpu(2, 0, weight(1, 0))],
        );
        let plan = planner.plan(&snap);
        let cpu = |d: u16, i: u16| {
            plan.decisions
                .iter()
                .find(|x| x.key.domain == d && x.key.index == i)
                .unwrap()
                .cpu
        };
        assert_eq!((cpu(1, 0), cpu(1, 1), cpu(2, 0)), (2, 3, 0));
        assert!(plan.decisions.iter().all(|d| d.policy == Policy::Credit));
        assert_eq!(
            plan.decisions[0].params.budget_us,
            crate::credit::PERIOD_US,
            "alone on CPU 2"
        );
    }
}
