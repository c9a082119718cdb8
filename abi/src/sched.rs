//! Scheduling as the policy domain sees it: the `sched_set` argument encoding and the
//! read-only accounting page.
//!
//! The kernel runs a fixed-priority scheduler with budget/period reservations on every CPU;
//! the domain holding the SchedControl capability chooses the parameters (`sched_set`) and
//! watches the result in the accounting page, which the kernel keeps current and which the
//! domain can only read. A restarted policy domain rebuilds its whole view from the page.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Guest-physical address where the accounting page is mapped in the policy domain.
pub const ACCOUNTING_IPA: u64 = 0x9000_0000;
/// vCPU entries in the page.
pub const MAX_ACCOUNTED_VCPUS: usize = 64;

/// `VcpuAccount::state` values.
pub mod state {
    /// Not started, or stopped.
    pub const OFF: u8 = 0;
    /// Waiting for a CPU.
    pub const RUNNABLE: u8 = 1;
    /// On a CPU.
    pub const RUNNING: u8 = 2;
    /// Waiting for an interrupt.
    pub const BLOCKED: u8 = 3;
}

/// One vCPU's line in the accounting page.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct VcpuAccount {
    /// Domain id.
    pub domain: u16,
    /// vCPU index in the domain.
    pub index: u16,
    /// Physical CPU it runs on.
    pub cpu: u8,
    /// [`state`] value.
    pub state: u8,
    /// Current priority.
    pub priority: u8,
    /// 1 if this entry describes a live vCPU.
    pub valid: u8,
    /// Nanoseconds it has run.
    pub run_time_ns: u64,
    /// Times it was woken.
    pub wakeups: u32,
    /// Times it used up its budget.
    pub overruns: u32,
    /// Current budget per period, microseconds (0 = none).
    pub budget_us: u32,
    /// Current period, microseconds (0 = none).
    pub period_us: u32,
    /// Allowed CPUs.
    pub affinity: u64,
    /// What the manifest asked for (the policy's input).
    pub request: crate::sysimage::SchedRequest,
    /// NUMA node of the vCPU's CPU.
    pub node: u8,
    /// NUMA node of its domain's memory.
    pub memory_node: u8,
    /// Reserved.
    pub reserved: u16,
}
/// The accounting page.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct SchedPage {
    /// Incremented before and after every update: odd while the kernel writes (read it, copy
    /// the entries, read it again: equal and even means a consistent copy).
    pub seq: u64,
    /// Kernel time of the last update, ns.
    pub now_ns: u64,
    /// Physical CPUs online.
    pub cpus: u32,
    /// Reserved.
    pub reserved: u32,
    /// One entry per vCPU slot of the kernel.
    pub vcpus: [VcpuAccount; MAX_ACCOUNTED_VCPUS],
}

const _: () = assert!(core::mem::size_of::<VcpuAccount>() == 56);
const _: () = assert!(core::mem::size_of::<SchedPage>() <= 4096);

/// Policy codes of [`pack_policies`].
pub mod policy {
    /// No policy domain decisions: kernel defaults.
    pub const NONE: u8 = 0;
    /// Fair share by weight, optional cap.
    pub const CREDIT: u8 = 1;
    /// Budget/period reservations with admission control.
    pub const RT: u8 = 2;
    /// One vCPU per CPU, no sharing.
    pub const PARTITION: u8 = 3;
}

/// The policy of each physical CPU (its pool's), four bits per CPU, as the `arg` the
/// toolstack passes the policy domain.
pub fn pack_policies(per_cpu: &[u8]) -> u64 {
    per_cpu
        .iter()
        .take(16)
        .enumerate()
        .fold(0, |acc, (i, p)| acc | (u64::from(*p & 0xF) << (4 * i)))
}

/// The policy of CPU `cpu` in a packed argument.
pub const fn policy_of(packed: u64, cpu: usize) -> u8 {
    if cpu >= 16 {
        return policy::NONE;
    }
    ((packed >> (4 * cpu)) & 0xF) as u8
}

/// Packs the `target` argument of `sched_set`: domain id, vCPU index and priority.
pub const fn pack_target(domain: u16, vcpu: u16, priority: u8) -> u64 {
    domain as u64 | (vcpu as u64) << 16 | (priority as u64) << 32
}

/// Unpacks `target`: `None` if reserved bits are set.
pub const fn unpack_target(target: u64) -> Option<(u16, u16, u8)> {
    if target >> 40 != 0 {
        return None;
    }
    Some((target as u16, (target >> 16) as u16, (target >> 32) as u8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_round_trip_and_reserved_bits_are_refused() {
        assert_eq!(unpack_target(pack_target(3, 1, 200)), Some((3, 1, 200)));
        assert_eq!(unpack_target(1 << 40), None);
    }

    #[test]
    fn policies_pack_per_cpu() {
        let p = pack_policies(&[policy::CREDIT, policy::RT, policy::NONE, policy::PARTITION]);
        assert_eq!(policy_of(p, 0), policy::CREDIT);
        assert_eq!(policy_of(p, 1), policy::RT);
        assert_eq!(policy_of(p, 3), policy::PARTITION);
        assert_eq!(policy_of(p, 20), policy::NONE);
    }
}
