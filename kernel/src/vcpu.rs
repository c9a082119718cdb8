//! The Vcpu object: a register context that belongs to one domain and runs on one CPU at a time.

use mica_caps::ObjectRef;

use crate::domain::DomainState;
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

/// A physical CPU to interrupt (an IPI) so that it looks again at what it runs; with
/// `resched`, its scheduler decides afresh even if the vCPU it runs could go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kick {
    /// The CPU.
    pub cpu: usize,
    /// Whether its scheduler must decide again.
    pub resched: bool,
}

/// What follows a vCPU's leaving its physical CPU ([`Vcpu::left_cpu`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Left {
    /// Nothing.
    Nothing,
    /// It may run again: its CPU looks again.
    Kick(Kick),
    /// It stopped for good or its domain is dying: the domain may now have no vCPU on any
    /// CPU, and can be dismantled.
    Stopped,
}

/// The vCPU's state machine. Pure: each change says which physical CPU must be interrupted
/// ([`Kick`]), and the kernel carries that out in one place (`Kernel::kick`,
/// `kernel/execute.rs`). `domain_running` is whether its domain is running (not paused or
/// dying): a runnable vCPU of a paused domain waits without disturbing its CPU.
impl<H: Hal> Vcpu<H> {
    fn kick(&self, resched: bool) -> Kick {
        Kick {
            cpu: self.cpu,
            resched,
        }
    }

    /// It may run (started, woken, its domain resumed): runnable, and its CPU looks again if
    /// its domain runs. A retired vCPU goes off instead.
    pub fn make_runnable(&mut self, domain_running: bool) -> Option<Kick> {
        if self.retired {
            self.state = VcpuState::Off;
            return None;
        }
        self.state = VcpuState::Runnable;
        domain_running.then(|| self.kick(false))
    }

    /// A virtual interrupt became pending since it last blocked: remembered (a WFI that
    /// follows does not block), and a blocked vCPU becomes runnable.
    pub fn wake(&mut self, domain_running: bool) -> Option<Kick> {
        self.wake_pending = true;
        if self.state != VcpuState::Blocked {
            return None;
        }
        self.sched.wakeups += 1;
        self.make_runnable(domain_running)
    }

    /// A virtual interrupt may have become deliverable: a blocked vCPU wakes; a running one
    /// has its CPU interrupted so that it exits and sees the interrupt (the HAL refills its
    /// interrupt state before every entry); a runnable or stopped one needs nothing.
    pub fn interrupt(&mut self, domain_running: bool) -> Option<Kick> {
        match self.state {
            VcpuState::Blocked => self.wake(domain_running),
            VcpuState::Running => Some(self.kick(false)),
            VcpuState::Runnable | VcpuState::Off => None,
        }
    }

    /// Its physical CPU chose it.
    pub fn run(&mut self) {
        self.state = VcpuState::Running;
    }

    /// It waits for an interrupt (a trapped WFI): blocked, unless one came since it last
    /// blocked. Whether it blocked (its CPU then chooses again).
    pub fn wait_for_interrupt(&mut self) -> bool {
        if core::mem::take(&mut self.wake_pending) {
            return false;
        }
        self.state = VcpuState::Blocked;
        true
    }

    /// It turned itself off (PSCI CPU_OFF): off until started again.
    pub fn power_off(&mut self) {
        self.state = VcpuState::Off;
    }

    /// Its domain ends: a running vCPU is pulled off its CPU (it stops when it leaves it),
    /// any other stops now.
    pub fn stop(&mut self) -> Option<Kick> {
        if self.state == VcpuState::Running {
            return Some(self.kick(true));
        }
        self.state = VcpuState::Off;
        None
    }

    /// Its Vcpu object was destroyed: it stops as [`stop`](Self::stop) does and never runs
    /// again.
    pub fn retire(&mut self) -> Option<Kick> {
        self.retired = true;
        self.wake_pending = false;
        self.stop()
    }

    /// It has just left its physical CPU; `domain` is its domain's state (`None`: gone).
    pub fn left_cpu(&mut self, domain: Option<DomainState>) -> Left {
        if self.retired {
            self.state = VcpuState::Off;
            return Left::Stopped;
        }
        match (self.state, domain) {
            (VcpuState::Running, Some(DomainState::Running)) => {
                self.make_runnable(true).map_or(Left::Nothing, Left::Kick)
            }
            (VcpuState::Running, Some(DomainState::Paused)) => {
                self.state = VcpuState::Runnable;
                Left::Nothing
            }
            (_, Some(DomainState::Dying)) => {
                self.state = VcpuState::Off;
                Left::Stopped
            }
            _ => Left::Nothing,
        }
    }
}
