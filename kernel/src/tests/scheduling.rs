//! Scheduling: picking, round robin, blocking and waking, budgets, policy.

use std::vec::Vec;

use mica_abi::args::{self as a, Slot};
use mica_abi::hypercall::Call;
use mica_abi::sysimage;
use mica_abi::{ObjectType, Rights, Status};

use crate::domain::DomainId;
use crate::kernel::{Exit, Kernel};
use crate::memmap::{PhysRange, RangeSet};
use crate::vcpu::{VcpuId, VcpuState};

use crate::testing::*;

#[test]
fn vcpus_run_on_their_cpu_and_round_robin_on_the_tick() {
    let mut a = dom("a");
    a.cpus[0] = 0;
    let mut b = dom("b");
    b.cpus[0] = 0;
    let mut k = kernel(&[a, b]);
    let first = run(&mut k, 0).unwrap();
    assert_eq!(run(&mut k, 0), Some(first), "no tick, no switch");
    assert_eq!(run(&mut k, 1), None, "nothing is pinned to CPU 1");
    k.tick(0);
    let second = run(&mut k, 0).unwrap();
    assert_ne!(first, second);
    k.tick(0);
    assert_eq!(run(&mut k, 0), Some(first));
}

/// A vCPU that exits often (its own timer, interrupts, hypercalls) still gives the CPU up when
/// its slice is over: the slice counts from the start of its turn, not from its last exit.
/// (Linux with more vCPUs than CPUs hung in `smp_call_function` when the waiting vCPU's
/// frequent exits kept pushing its slice's end away from the vCPU it waited for.)
#[test]
fn a_vcpu_that_exits_often_does_not_keep_the_cpu_past_its_slice() {
    let mut a = dom("a");
    a.cpus[0] = 0;
    let mut b = dom("b");
    b.cpus[0] = 0;
    let mut k = kernel(&[a, b]);
    let first = run(&mut k, 0).unwrap();
    let slice = crate::sched::SLICE_NS;
    // Exits every tenth of a slice, the timer never firing in between.
    for step in 1..10 {
        k.hal.now.set(step * slice / 10);
        k.handle_exit(0, &Exit::Interrupt);
        assert_eq!(run(&mut k, 0), Some(first), "mid-slice, it keeps the CPU");
        assert_eq!(
            k.deadline(0),
            Some(slice),
            "the slice ends where it began + SLICE_NS"
        );
    }
    k.hal.now.set(slice + 1);
    k.handle_exit(0, &Exit::Interrupt);
    let second = run(&mut k, 0).unwrap();
    assert_ne!(second, first, "its slice is over and an equal waits");
}

#[test]
fn wfi_blocks_until_the_vcpu_is_woken() {
    let mut k = kernel(&[dom("a")]);
    let cpu = k
        .vcpu(k.domain(id_of(&k, "a")).unwrap().vcpus[0])
        .unwrap()
        .cpu;
    let v = run(&mut k, cpu).unwrap();
    k.handle_exit(cpu, &Exit::WaitForInterrupt);
    assert_eq!(run(&mut k, cpu), None);
    assert_eq!(k.vcpu(v).unwrap().state, VcpuState::Blocked);
    k.wake(v);
    assert_eq!(run(&mut k, cpu), Some(v));
    // A wake-up that arrives first makes the next WFI return at once.
    k.wake(v);
    k.handle_exit(cpu, &Exit::WaitForInterrupt);
    assert_eq!(run(&mut k, cpu), Some(v));
}

#[test]
fn interrupting_a_vcpu_wakes_it_or_kicks_its_cpu() {
    let mut k = kernel(&[dom("a")]);
    let v = k.domain(id_of(&k, "a")).unwrap().vcpus[0];
    let cpu = k.vcpu(v).unwrap().cpu;
    // Runnable: it will see the interrupt when it next enters; nothing to do.
    k.hal.kicks.borrow_mut().clear();
    k.interrupt_vcpu(v);
    assert!(k.hal.kicks.borrow().is_empty());
    assert!(!k.vcpu(v).unwrap().wake_pending);
    // Running: its CPU is interrupted, its state is left alone.
    assert_eq!(run(&mut k, cpu), Some(v));
    k.interrupt_vcpu(v);
    assert_eq!(*k.hal.kicks.borrow(), [cpu]);
    assert_eq!(k.vcpu(v).unwrap().state, VcpuState::Running);
    assert!(!k.vcpu(v).unwrap().wake_pending);
    // Blocked: it becomes runnable again.
    k.handle_exit(cpu, &Exit::WaitForInterrupt);
    assert_eq!(run(&mut k, cpu), None);
    k.interrupt_vcpu(v);
    assert_eq!(k.vcpu(v).unwrap().state, VcpuState::Runnable);
    assert_eq!(run(&mut k, cpu), Some(v));
    // An unknown vCPU is ignored.
    k.interrupt_vcpu(VcpuId(63));
}

fn sched_kernel() -> (Box<Kernel<MockHal>>, DomainId, Vec<DomainId>) {
    let mut policy = dom("policy");
    policy.flags = sysimage::FLAG_SCHED_CONTROL;
    policy.cpus[0] = 1;
    let mut doms = vec![policy];
    for name in ["low", "mid", "high"] {
        let mut d = dom(name);
        d.cpus[0] = 0;
        doms.push(d);
    }
    let k = kernel(&doms);
    let policy = id_of(&k, "policy");
    let guests = ["low", "mid", "high"]
        .iter()
        .map(|n| id_of(&k, n))
        .collect();
    (k, policy, guests)
}

/// [`sched_kernel`] with the policy domain running on CPU 1, and its `sched-control` slot.
fn sched_kernel_running() -> (Box<Kernel<MockHal>>, Slot, Vec<DomainId>) {
    let (mut k, policy, g) = sched_kernel();
    run(&mut k, 1).unwrap();
    let c = Slot(boot_info(&k, policy).cap("sched-control").unwrap().slot);
    (k, c, g)
}

fn set(
    k: &mut Kernel<MockHal>,
    control: Slot,
    d: DomainId,
    prio: u8,
    budget: u64,
    period: u64,
    aff: u64,
) -> Result<(), Status> {
    let target = mica_abi::sched::pack_target(d.0, 0, prio);
    status(call(
        k,
        1,
        a::SchedSet {
            control,
            target,
            budget_ns: budget,
            period_ns: period,
            affinity: aff,
        },
    ))
}

#[test]
fn the_policy_domain_gets_control_accounting_and_events() {
    let (mut k, policy, guests) = sched_kernel();
    run(&mut k, 1).unwrap();
    let info = boot_info(&k, policy);
    let control = info.cap("sched-control").unwrap();
    assert_eq!(control.object_type, ObjectType::SchedControl as u8);
    let page = info.region("sched-accounting").unwrap();
    assert_eq!(page.ipa, mica_abi::sched::ACCOUNTING_IPA);
    assert_eq!(page.rights, Rights::READ.bits(), "read-only");
    assert!(info.cap("sched-events").is_some());
    // The page lists every vCPU.
    use zerocopy::FromBytes;
    let pa = k
        .domain(policy)
        .unwrap()
        .mappings
        .translate(page.ipa)
        .unwrap();
    let m = k.hal.memory.borrow();
    let bytes: Vec<u8> = (0..size_of::<mica_abi::sched::SchedPage>() as u64)
        .map(|i| *m.get(&(pa + i)).unwrap_or(&0))
        .collect();
    drop(m);
    let sp = mica_abi::sched::SchedPage::read_from_bytes(&bytes).unwrap();
    assert_eq!(sp.seq % 2, 0, "consistent");
    let listed: Vec<u16> = sp
        .vcpus
        .iter()
        .filter(|v| v.valid == 1)
        .map(|v| v.domain)
        .collect();
    for g in guests {
        assert!(listed.contains(&g.0), "{listed:?}");
    }
    // Nobody else can use the call.
    let (mut k2, _, _) = sched_kernel();
    run(&mut k2, 0).unwrap();
    let r = call(
        &mut k2,
        0,
        a::SchedSet {
            control: Slot(0),
            target: 0,
            budget_ns: 0,
            period_ns: 0,
            affinity: 1,
        },
    );
    assert_eq!(status(r), Err(Status::InvalidCapability));
}

#[test]
fn sched_set_checks_then_applies_priority_budget_and_affinity() {
    let (mut k, c, g) = sched_kernel_running();
    let ms = 1_000_000;
    assert_eq!(
        set(&mut k, c, g[0], 10, 11 * ms, 10 * ms, 1),
        Err(Status::InvalidArgument),
        "budget > period"
    );
    assert_eq!(
        set(&mut k, c, g[0], 10, 0, 0, 0),
        Err(Status::InvalidArgument),
        "empty affinity"
    );
    assert_eq!(
        set(&mut k, c, g[0], 10, 0, 0, 1 << 7),
        Err(Status::InvalidArgument),
        "no CPU 7"
    );
    assert_eq!(
        set(&mut k, c, DomainId(15), 10, 0, 0, 1),
        Err(Status::OutOfRange)
    );
    // Raw registers: a target with reserved bits set, which decoding refuses.
    let target = mica_abi::sched::pack_target(g[0].0, 0, 1) | 1 << 45;
    assert_eq!(
        status(hvc(
            &mut k,
            1,
            Call::SchedSet,
            [c.raw(), target, 0, 0, 1, 0]
        )),
        Err(Status::InvalidArgument)
    );
    // Reservations: 60% + 50% on CPU 0 is refused.
    assert_eq!(set(&mut k, c, g[0], 10, 6 * ms, 10 * ms, 1), Ok(()));
    assert_eq!(
        set(&mut k, c, g[1], 10, 5 * ms, 10 * ms, 1),
        Err(Status::Overcommitted)
    );
    assert_eq!(set(&mut k, c, g[1], 10, 4 * ms, 10 * ms, 1), Ok(()));
    // Priority: `high` preempts on CPU 0.
    assert_eq!(set(&mut k, c, g[2], 200, 0, 0, 1), Ok(()));
    let v = run(&mut k, 0).unwrap();
    assert_eq!(k.vcpu(v).unwrap().domain, g[2]);
    // Affinity: move `high` to CPU 1.
    assert_eq!(set(&mut k, c, g[2], 200, 0, 0, 0b10), Ok(()));
    assert_ne!(
        run(&mut k, 0).map(|v| k.vcpu(v).unwrap().domain),
        Some(g[2])
    );
    let mut on_one = Vec::new();
    for _ in 0..3 {
        k.tick(1);
        if let Some(v) = run(&mut k, 1) {
            on_one.push(k.vcpu(v).unwrap().domain);
        }
    }
    assert!(on_one.contains(&g[2]), "runs on CPU 1 now: {on_one:?}");
}

#[test]
fn budgets_throttle_and_replenish_with_the_clock() {
    let (mut k, c, g) = sched_kernel_running();
    let ms = 1_000_000;
    // `high`: top priority but 2 ms per 10 ms.
    assert_eq!(set(&mut k, c, g[2], 200, 2 * ms, 10 * ms, 1), Ok(()));
    let v = run(&mut k, 0).unwrap();
    assert_eq!(k.vcpu(v).unwrap().domain, g[2]);
    assert_eq!(
        k.deadline(0),
        Some(2 * ms),
        "one-shot to the end of its budget"
    );
    k.hal.now.set(2 * ms);
    k.tick(0);
    let next = run(&mut k, 0).unwrap();
    assert_ne!(k.vcpu(next).unwrap().domain, g[2], "throttled");
    assert_eq!(k.vcpu(v).unwrap().sched.overruns, 1);
    assert!(k.deadline(0).is_some_and(|d| d <= 10 * ms));
    k.hal.now.set(10 * ms);
    k.tick(0);
    let back = run(&mut k, 0).unwrap();
    assert_eq!(
        k.vcpu(back).unwrap().domain,
        g[2],
        "replenished at the next period"
    );
}

/// Between full picks the running vCPU goes on without a look at the others (the fast
/// path); anything that could change the choice makes the next pick look again: a vCPU of
/// higher priority made runnable on the CPU preempts at the very next exit.
#[test]
fn the_running_vcpu_goes_on_until_something_changes_on_its_cpu() {
    let (mut k, c, g) = sched_kernel_running();
    assert_eq!(set(&mut k, c, g[2], 200, 0, 0, 1), Ok(()));
    let high = run(&mut k, 0).unwrap();
    assert_eq!(k.vcpu(high).unwrap().domain, g[2]);
    k.handle_exit(0, &Exit::WaitForInterrupt);
    let low = run(&mut k, 0).unwrap();
    assert_ne!(low, high);
    for step in 1..5 {
        k.hal.now.set(step * 1000);
        k.handle_exit(0, &Exit::Interrupt);
        assert_eq!(run(&mut k, 0), Some(low), "nothing changed: it goes on");
    }
    // The high-priority vCPU is woken (by another CPU, an event): the next exit preempts.
    k.wake(high);
    k.handle_exit(0, &Exit::Interrupt);
    assert_eq!(run(&mut k, 0), Some(high), "preempted at the next exit");
    // Its time, charged at full picks only, covers every exit in between.
    assert_eq!(k.vcpu(low).unwrap().sched.run_time, 4000);
}

/// A reserved vCPU's own replenishment is a deadline too: one that exits now and then across
/// its period's end gets the new period's budget, not an overrun.
#[test]
fn a_reserved_vcpu_is_refilled_at_its_period_even_between_full_picks() {
    let (mut k, c, g) = sched_kernel_running();
    let ms = 1_000_000;
    assert_eq!(set(&mut k, c, g[2], 200, 2 * ms, 10 * ms, 1), Ok(()));
    let v = run(&mut k, 0).unwrap();
    assert_eq!(k.vcpu(v).unwrap().domain, g[2]);
    // 1 ms of its 2 ms, then it sleeps until 9.5 ms.
    k.hal.now.set(ms);
    k.handle_exit(0, &Exit::WaitForInterrupt);
    run(&mut k, 0).unwrap();
    k.hal.now.set(9 * ms + ms / 2);
    k.wake(v);
    assert_eq!(run(&mut k, 0), Some(v));
    assert_eq!(
        k.deadline(0),
        Some(10 * ms),
        "the period's end comes before its last 1 ms of budget runs out"
    );
    // It exits every 0.3 ms up to 11.9 ms: 2.1 ms of running, 0.5 ms in the old period.
    let mut now = 9 * ms + ms / 2;
    while now < 11 * ms + 9 * ms / 10 {
        now += 3 * ms / 10;
        k.hal.now.set(now);
        if k.deadline(0).is_some_and(|d| d <= now) {
            k.tick(0);
        }
        k.handle_exit(0, &Exit::Interrupt);
        assert_eq!(run(&mut k, 0), Some(v), "at {now} ns");
    }
    assert_eq!(k.vcpu(v).unwrap().sched.overruns, 0);
}

#[test]
fn tickless_a_blocked_vcpu_wakes_at_its_own_timer_and_not_before() {
    let mut a = dom("sleeper");
    a.cpus[0] = 0;
    let mut k = kernel(&[a]);
    let v = run(&mut k, 0).unwrap();
    assert_eq!(k.deadline(0), None, "one vCPU, no budget: no timer at all");
    k.vcpu_mut(v).unwrap().context.timer = Some(5_000);
    k.handle_exit(0, &Exit::WaitForInterrupt);
    assert_eq!(run(&mut k, 0), None);
    assert_eq!(
        k.deadline(0),
        Some(5_000),
        "the idle CPU wakes for the vCPU's timer"
    );
    k.hal.now.set(4_000);
    k.tick(0);
    assert_eq!(run(&mut k, 0), None, "not yet");
    k.hal.now.set(5_000);
    k.tick(0);
    assert_eq!(run(&mut k, 0), Some(v));
    // WFE is a yield, not a block.
    k.handle_exit(0, &Exit::Yield);
    assert_eq!(run(&mut k, 0), Some(v));
    assert_eq!(k.vcpu(v).unwrap().state, VcpuState::Running);
}

#[test]
fn numa_domain_memory_comes_from_the_node_of_its_cpus_unless_the_manifest_says() {
    let mut near = dom("near");
    near.cpus[0] = 1;
    let mut chosen = dom("chosen");
    chosen.cpus[0] = 0;
    chosen.memory_node = 2; // node 1
    let mut plain = dom("plain");
    plain.cpus[0] = 0;
    let mut k = Box::new(Kernel::new(MockHal::default()));
    let mut n0: RangeSet<2> = RangeSet::new();
    n0.insert(PhysRange {
        start: 0x4000_0000,
        end: 0x4200_0000,
    })
    .unwrap();
    let mut n1: RangeSet<2> = RangeSet::new();
    n1.insert(PhysRange {
        start: 0x8000_0000,
        end: 0x8200_0000,
    })
    .unwrap();
    k.frames.add_ranges_on(0, &n0);
    k.frames.add_ranges_on(1, &n1);
    k.set_cpu_node(1, 1);
    k.load_system(image(&[near, chosen, plain])).unwrap();
    let check = |name: &str, node: u8| {
        let d = k.domain(id_of(&k, name)).unwrap();
        assert_eq!(d.memory_node, node, "{name}");
        assert_eq!(
            k.frames.node_of(d.ram[0].start),
            Some(node as usize),
            "{name}"
        );
    };
    check("near", 1);
    check("chosen", 1);
    check("plain", 0);
    assert!(k.hal.console.borrow().contains("on node 1"));
}
