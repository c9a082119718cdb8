//! The Vcpu object: a register context that belongs to one domain and runs on one CPU at a time.

use mica_caps::ObjectRef;

use crate::hal::Hal;
pub use crate::ids::{DomainId, VcpuId};

/// What a vCPU is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VcpuState {
    /// Created but not started (or stopped with PSCI CPU_OFF).
    Off,
    /// Waiting in its CPU's run queue.
    Runnable,
    /// On its physical CPU right now.
    Running,
    /// Waiting for an interrupt (trapped WFI).
    Blocked,
}

/// A vCPU.
pub struct Vcpu<H: Hal> {
    /// Its domain.
    pub domain: DomainId,
    /// Its index within the domain (its virtual MPIDR affinity 0).
    pub index: u16,
    /// The physical CPU it runs on.
    pub cpu: usize,
    /// Scheduling state.
    pub state: VcpuState,
    /// The Vcpu object.
    pub object: ObjectRef,
    /// Where its original capability was put (its creator's space, or the root's).
    pub original: mica_caps::CapAddr,
    /// Saved registers (owned by the physical CPU while `Running`).
    pub context: H::Context,
    /// A virtual interrupt became pending since it last blocked.
    pub wake_pending: bool,
    /// Times it was scheduled in.
    pub runs: u64,
    /// Scheduling parameters and accounting.
    pub sched: crate::sched::SchedState,
    /// What the manifest asked the policy for (published in the accounting page).
    pub request: mica_abi::sysimage::SchedRequest,
    /// Its Vcpu object was destroyed: it never runs again (it stays in its domain's list,
    /// so the other vCPUs keep their indices, until the domain goes).
    pub retired: bool,
}
