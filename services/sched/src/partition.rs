//! `partition`: one vCPU per physical CPU, alone at [`PARTITION_PRIORITY`], no budget.
//!
//! The CPUs whose policy is `partition` form one pool (the policy argument says only which
//! policy each CPU has). Each vCPU on a pool CPU gets a pool CPU of its own: it keeps the
//! one it is on if no vCPU earlier in vCPU order claimed it, otherwise the lowest free one
//! (the kernel migrates it). A vCPU left over when the pool has fewer CPUs than vCPUs is an
//! error the domain reports ([`Note::PartitionFull`](crate::Note::PartitionFull)); it stays
//! where it is at [`BACKGROUND_PRIORITY`], so it only runs while the owner of that CPU
//! leaves it idle and the owner's latency is unaffected.

use heapless::Vec;

use crate::{
    Decision, Observed, Params, Policy, VcpuKey, BACKGROUND_PRIORITY, MAX_VCPUS, PARTITION_PRIORITY,
};

/// Where a vCPU of the pool goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// The vCPU.
    pub key: VcpuKey,
    /// Its own CPU, or `None` if the pool has none left.
    pub cpu: Option<u8>,
}

/// Gives each of `members` (vCPUs on CPUs of `pool`, a CPU mask) a CPU of its own.
pub fn assign(members: &[Observed], pool: u64) -> Vec<Assignment, MAX_VCPUS> {
    let mut sorted: Vec<Observed, MAX_VCPUS> = members.iter().copied().collect();
    sorted.sort_unstable_by_key(|v| v.key);
    let mut taken = 0u64;
    let mut out: Vec<Assignment, MAX_VCPUS> = sorted
        .iter()
        .map(|v| {
            let own = 1u64 << v.cpu;
            let cpu = (pool & own != 0 && taken & own == 0).then(|| {
                taken |= own;
                v.cpu
            });
            Assignment { key: v.key, cpu }
        })
        .collect();
    for a in out.iter_mut().filter(|a| a.cpu.is_none()) {
        let free = pool & !taken;
        if free != 0 {
            let cpu = free.trailing_zeros() as u8;
            taken |= 1 << cpu;
            a.cpu = Some(cpu);
        }
    }
    out
}

/// The decision for `key` on `cpu`: the owner runs alone at the top; a left-over vCPU in
/// the background.
pub fn decision(key: VcpuKey, cpu: u8, owner: bool) -> Decision {
    let priority = if owner {
        PARTITION_PRIORITY
    } else {
        BACKGROUND_PRIORITY
    };
    Decision {
        key,
        cpu,
        policy: Policy::Partition,
        params: Params::unlimited(priority, cpu),
        weight: 1,
        active: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use crate::{Note, Planner, Policies};
    use mica_abi::sched::{pack_policies, policy};
    use mica_abi::sysimage::SchedRequest;

    fn on(domain: u16, cpu: u8) -> Observed {
        vcpu(domain, cpu, SchedRequest::default())
    }

    #[test]
    fn each_vcpu_gets_a_cpu_of_its_own() {
        // Both start on CPU 1: the first keeps it, the second moves to the free CPU 2.
        let a = assign(&[on(2, 1), on(1, 1)], 0b110);
        assert_eq!(
            a.as_slice(),
            [
                Assignment {
                    key: on(1, 1).key,
                    cpu: Some(1)
                },
                Assignment {
                    key: on(2, 1).key,
                    cpu: Some(2)
                },
            ]
        );
    }

    #[test]
    fn more_vcpus_than_cpus_is_reported() {
        let arg = pack_policies(&[policy::NONE, policy::PARTITION, policy::PARTITION]);
        let mut planner = Planner::new(Policies::from_arg(arg), None);
        let snap = snapshot(3, 0, &[on(1, 1), on(2, 2), on(3, 1), on(4, 0)]);
        let plan = planner.plan(&snap);
        assert_eq!(
            plan.notes.as_slice(),
            [Note::PartitionFull {
                key: on(3, 1).key,
                pool: 0b110,
                vcpus: 3
            }]
        );
        let p = |d: u16| plan.decision(on(d, 0).key).map(|d| d.params);
        assert_eq!(p(1), Some(Params::unlimited(PARTITION_PRIORITY, 1)));
        assert_eq!(p(2), Some(Params::unlimited(PARTITION_PRIORITY, 2)));
        assert_eq!(p(3), Some(Params::unlimited(BACKGROUND_PRIORITY, 1)));
        assert_eq!(p(4), None, "CPU 0 is in no pool");
        assert!(std::format!("{}", plan.notes[0])
            .starts_with("sched: partition error: 3 vCPUs for 2 CPUs"));
    }

    #[test]
    fn the_planner_moves_a_vcpu_to_a_free_partition_cpu() {
        let arg = pack_policies(&[policy::PARTITION, policy::PARTITION]);
        let mut planner = Planner::new(Policies::from_arg(arg), None);
        let snap = snapshot(2, 0, &[on(1, 0), on(2, 0)]);
        let plan = planner.plan(&snap);
        let changes = plan.changes(&snap);
        let moved = changes.iter().find(|c| c.decision.key.domain == 2).unwrap();
        assert_eq!(moved.decision.cpu, 1);
        assert_eq!(moved.affinity(), 0b10);
        assert!(plan.notes.is_empty());
    }
}
