//! The vCPU state machine (`crate::vcpu`) on its own: wake-ups, blocking, pausing, retiring
//! and a domain's end, and which physical CPU each change interrupts.

use crate::domain::DomainState;
use crate::ids::DomainId;
use crate::sched::{SchedParams, SchedState};
use crate::testing::{MockContext, MockHal};
use crate::vcpu::{Kick, Left, Vcpu, VcpuState};
use mica_caps::ObjectRef;

fn vcpu(state: VcpuState) -> Vcpu<MockHal> {
    Vcpu {
        domain: DomainId(1),
        index: 0,
        cpu: 3,
        state,
        object: ObjectRef {
            index: 1,
            generation: 1,
        },
        original: mica_caps::CapAddr::new(mica_caps::SpaceId(0), 1),
        context: MockContext::default(),
        wake_pending: false,
        runs: 0,
        sched: SchedState::new(SchedParams::default_on(3), 0),
        request: mica_abi::sysimage::SchedRequest::default(),
        retired: false,
    }
}

const KICK: Option<Kick> = Some(Kick {
    cpu: 3,
    resched: false,
});

#[test]
fn a_wake_before_the_wfi_keeps_it_from_blocking() {
    let mut v = vcpu(VcpuState::Running);
    assert_eq!(v.wake(true), None, "running: only remembered");
    assert!(!v.wait_for_interrupt(), "the pending wake-up is consumed");
    assert_eq!(v.state, VcpuState::Running);
    assert!(v.wait_for_interrupt());
    assert_eq!(v.state, VcpuState::Blocked);
    assert_eq!(v.wake(true), KICK);
    assert_eq!((v.state, v.sched.wakeups), (VcpuState::Runnable, 1));
}

#[test]
fn a_paused_domains_vcpu_becomes_runnable_without_a_kick() {
    let mut v = vcpu(VcpuState::Blocked);
    assert_eq!(v.interrupt(false), None);
    assert_eq!(v.state, VcpuState::Runnable);
    let mut running = vcpu(VcpuState::Running);
    assert_eq!(
        running.interrupt(false),
        KICK,
        "a running vCPU is interrupted"
    );
    assert_eq!(vcpu(VcpuState::Off).interrupt(true), None);
    let mut left = vcpu(VcpuState::Running);
    assert_eq!(left.left_cpu(Some(DomainState::Paused)), Left::Nothing);
    assert_eq!(left.state, VcpuState::Runnable);
}

#[test]
fn a_retired_vcpu_never_runs_again() {
    let mut v = vcpu(VcpuState::Running);
    let pulled = Some(Kick {
        cpu: 3,
        resched: true,
    });
    assert_eq!(v.retire(), pulled, "pulled off its CPU");
    assert_eq!(v.left_cpu(Some(DomainState::Running)), Left::Stopped);
    assert_eq!(v.state, VcpuState::Off);
    assert_eq!(v.make_runnable(true), None);
    assert_eq!(v.wake(true), None);
    assert_eq!(v.state, VcpuState::Off);
    let mut blocked = vcpu(VcpuState::Blocked);
    assert_eq!(blocked.retire(), None);
    assert_eq!(blocked.state, VcpuState::Off);
}

#[test]
fn leaving_the_cpu_of_a_dying_domain_stops_it() {
    let mut v = vcpu(VcpuState::Running);
    assert_eq!(v.left_cpu(Some(DomainState::Dying)), Left::Stopped);
    assert_eq!(v.state, VcpuState::Off);
    let mut r = vcpu(VcpuState::Running);
    assert_eq!(
        r.left_cpu(Some(DomainState::Running)),
        Left::Kick(KICK.unwrap())
    );
    assert_eq!(r.state, VcpuState::Runnable);
    let mut gone = vcpu(VcpuState::Running);
    assert_eq!(gone.left_cpu(None), Left::Nothing);
}
