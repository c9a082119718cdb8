//! The scheduling policy domain's shell: the accounting page in, `sched_set` calls out.
//!
//! Every decision is `mica-sched`'s (host-tested); this crate only does what needs the
//! hardware and the kernel (docs/scheduling.md):
//! 1. find its authority in the boot-info page: `sched-control` (SchedControl, CONTROL),
//!    the read-only region `sched-accounting` and the endpoint `sched-events`;
//! 2. take a consistent copy of the page (the seqlock reader of `mica_sched::snapshot`);
//! 3. every [`REPLAN_NS`] (its virtual timer) and whenever the kernel reports that vCPUs
//!    came or went, plan, issue the changes in the plan's order, and print one line per
//!    change and per refusal; `sched: ready` after the first plan is applied;
//! 4. every [`JUDGE_WINDOW_NS`] under an unchanged plan, print the judge's verdicts (the
//!    smoke scenarios expect them).
//!
//! It keeps no state that matters across a restart: a new instance reads the page, derives
//! the same plan and finds nothing to change, so the kernel's parameters (which it keeps
//! when the policy domain dies) simply carry on.

#![no_std]
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicBool, Ordering};

use heapless::Vec;
use mica_abi::sched::{ACCOUNTING_IPA, MAX_ACCOUNTED_VCPUS};
use mica_rt::gic::{self, GICR_BASE, GICR_STRIDE, SGI_FRAME};
use mica_rt::hypercall::{self, Port, Slot};
use mica_rt::ring::{RingMemory, SharedRegion};
use mica_rt::{events, irq, memory, println, BootInfo, ObjectType, Status};
use mica_sched::snapshot::{read_consistent, PAGE_BYTES};
use mica_sched::{judge, Change, Note, Plan, Planner, Policies, Policy, Snapshot, VcpuKey};

/// How often the policy recomputes (credit's activity interval).
pub const REPLAN_NS: u64 = 100_000_000;
/// The judge's window.
pub const JUDGE_WINDOW_NS: u64 = 1_000_000_000;
/// How long a fresh instance watches before its first plan, so that the first plan already
/// knows which vCPUs are idle.
pub const OBSERVE_NS: u64 = 50_000_000;
/// The event port the kernel's `sched-events` endpoint is bound to.
const EVENTS_PORT: Port = Port(0);
/// The guest's virtual timer (PPI 27).
const VTIMER: u32 = 27;

/// How this build behaves besides the policy.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Fault on purpose (write the read-only accounting page) after this many judged
    /// windows: the `sched-policy-crash` scenario.
    pub fault_after_windows: Option<u32>,
}

/// Set by the IRQ handler when the virtual timer fired.
static TIMER_FIRED: AtomicBool = AtomicBool::new(false);

fn on_irq() {
    while let Some(intid) = gic::acknowledge() {
        if intid == VTIMER {
            gic::stop_virtual_timer();
            TIMER_FIRED.store(true, Ordering::Release);
        }
        gic::end_of_interrupt(intid);
    }
}

/// Stops the domain after saying why (nothing to schedule without its authority).
fn give_up(why: &str) -> ! {
    println!("sched: error: {why}; the kernel keeps its current parameters");
    mica_rt::exit()
}

/// The domain's main loop.
pub fn run(info: BootInfo, options: Options) -> ! {
    let policies = Policies::from_arg(info.arg);
    let Some(boot) = mica_rt::bootinfo() else {
        give_up("no boot-info page")
    };
    let Some(control) = boot.cap_slot("sched-control", ObjectType::SchedControl) else {
        give_up("no `sched-control` capability (is the domain marked sched_policy?)")
    };
    let Some(page) = memory::shared_region("sched-accounting") else {
        give_up("no `sched-accounting` region")
    };
    let own = hypercall::whoami().ok().map(|w| w.domain_id as u16);
    if let Some(events_endpoint) = boot.endpoint("sched-events") {
        if events::register().is_err() || events::bind(events_endpoint, EVENTS_PORT, 0).is_err() {
            println!("sched: warning: cannot bind `sched-events`; replanning on the timer only");
        }
    }
    let timer_ok = start_timer();
    if !timer_ok {
        println!("sched: warning: no redistributor for the virtual timer; replanning when woken");
    }
    let ticks_per_ns = |ns: u64| {
        let hz = gic::counter_hz().max(1);
        (u128::from(ns) * u128::from(hz) / 1_000_000_000).min(u128::from(u32::MAX)) as u32
    };
    print_policies(&policies, &page, own);

    let mut planner = Planner::new(policies, own);
    let mut shell = Shell {
        control,
        page,
        notes: Vec::new(),
        probed: Vec::new(),
    };
    // Watch one short interval first: the first plan then knows who is idle.
    if let Some(first) = shell.snapshot() {
        let _ = planner.plan(&first);
    }
    sleep(ticks_per_ns(OBSERVE_NS), timer_ok);

    let mut ready = false;
    let mut window: Option<Snapshot> = None;
    let mut windows = 0u32;
    loop {
        let Some(snap) = shell.snapshot() else {
            println!("sched: warning: no consistent copy of the accounting page");
            sleep(ticks_per_ns(REPLAN_NS), timer_ok);
            continue;
        };
        let members: Vec<VcpuKey, MAX_ACCOUNTED_VCPUS> = snap.vcpus.iter().map(|v| v.key).collect();
        let plan = planner.plan(&snap);
        let changed = shell.apply(&plan, &snap);
        if !ready {
            println!(
                "sched: ready ({} vCPUs planned, {changed} changed)",
                plan.decisions.len()
            );
            ready = true;
        }
        // The judge's window runs under one plan: restart it after changes.
        match &window {
            Some(start) if changed == 0 => {
                if snap.now_ns.saturating_sub(start.now_ns) >= JUDGE_WINDOW_NS {
                    for verdict in judge::judge(&plan, start, &snap) {
                        println!("{verdict}");
                    }
                    windows += 1;
                    window = Some(snap);
                    if options.fault_after_windows == Some(windows) {
                        println!("sched: fault injection: writing the read-only accounting page");
                        shell.page.write(0, &[0xFF; 8]);
                        give_up("the accounting page took a write");
                    }
                }
            }
            _ => window = shell.snapshot(),
        }
        // Wait for the next round: the timer, or the kernel reporting that vCPUs came or
        // went (its budget-overrun reports alone do not warrant a new plan).
        let deadline = ticks_per_ns(REPLAN_NS);
        TIMER_FIRED.store(false, Ordering::Release);
        if timer_ok {
            gic::arm_virtual_timer(deadline);
        }
        loop {
            irq::disable();
            let fired = TIMER_FIRED.load(Ordering::Acquire);
            let pending = events::take_pending();
            if !fired && pending.is_empty() {
                irq::wait();
            }
            irq::enable();
            if fired || !timer_ok {
                break;
            }
            if !pending.is_empty() {
                let now: Option<Vec<VcpuKey, MAX_ACCOUNTED_VCPUS>> = shell
                    .snapshot()
                    .map(|s| s.vcpus.iter().map(|v| v.key).collect());
                if now.is_some_and(|now| now != members) {
                    gic::stop_virtual_timer();
                    break;
                }
            }
        }
    }
}

/// What the loop needs besides the planner.
struct Shell {
    control: Slot,
    page: SharedRegion,
    /// Refusals already printed (printed again only when they change).
    notes: Vec<Note, MAX_ACCOUNTED_VCPUS>,
    /// Refused reservations already put to the kernel.
    probed: Vec<VcpuKey, MAX_ACCOUNTED_VCPUS>,
}

impl Shell {
    /// A consistent copy of the accounting page.
    fn snapshot(&self) -> Option<Snapshot> {
        let mut buffer = [0u8; PAGE_BYTES];
        let page = &self.page;
        let seq = || u64::from(page.load_acquire(0)) | u64::from(page.load_acquire(4)) << 32;
        read_consistent(
            seq,
            |out| {
                page.read(0, out);
                page.fence();
            },
            &mut buffer,
            64,
        )
        .ok()?;
        Snapshot::from_bytes(&buffer)
    }

    /// Issues the plan's changes and prints them and new refusals; returns how many
    /// `sched_set` calls succeeded.
    fn apply(&mut self, plan: &Plan, snap: &Snapshot) -> usize {
        let mut done = 0;
        for change in plan.changes(snap) {
            match sched_set(self.control, &change) {
                Ok(()) => {
                    println!("{change}");
                    done += 1;
                }
                Err(status) => println!("{change}: refused by the kernel: {status}"),
            }
        }
        if plan.notes.as_slice() != self.notes.as_slice() {
            let seen = core::mem::replace(&mut self.notes, plan.notes.clone());
            for note in plan.notes.iter().filter(|n| !seen.contains(n)) {
                println!("{note}");
                if let Note::Overcommitted { key, .. } = note {
                    self.probe_refusal(plan, snap, *note, *key);
                }
            }
        }
        done
    }

    /// Puts a reservation the library refused to the kernel once, to show that its own
    /// admission control refuses it too (`Overcommitted`), and prints the answer.
    fn probe_refusal(&mut self, plan: &Plan, snap: &Snapshot, note: Note, key: VcpuKey) {
        let Note::Overcommitted {
            cpu,
            budget_us,
            period_us,
            ..
        } = note
        else {
            return;
        };
        if self.probed.contains(&key) || snap.get(key).is_none() {
            return;
        }
        let _ = self.probed.push(key);
        let Some(decision) = plan.decision(key) else {
            return;
        };
        let mut asked = *decision;
        asked.params =
            mica_sched::Params::reserved(mica_sched::RT_PRIORITY, budget_us, period_us, cpu);
        let probe = Change {
            decision: asked,
            previous: decision.params,
        };
        match sched_set(self.control, &probe) {
            Err(status) => println!(
                "sched: rt on CPU {cpu}: the kernel also refuses {key} budget {budget_us} us / period {period_us} us: status {status}"
            ),
            Ok(()) => {
                println!("sched: rt on CPU {cpu}: the kernel ACCEPTED the over-committing {key}; restoring");
                let _ = sched_set(
                    self.control,
                    &Change {
                        decision: *decision,
                        previous: asked.params,
                    },
                );
            }
        }
    }
}

/// `sched_set` for `change`.
fn sched_set(control: Slot, change: &Change) -> Result<(), Status> {
    hypercall::sched_set(
        control,
        change.target(),
        change.budget_ns(),
        change.period_ns(),
        change.affinity(),
    )
}

/// Prints the policy of every CPU in a pool.
fn print_policies(policies: &Policies, page: &SharedRegion, own: Option<u16>) {
    // `cpus` is the word after `seq` and `now_ns` (abi::sched::SchedPage).
    let cpus = page.load_acquire(16).clamp(1, mica_sched::MAX_CPUS as u32);
    println!(
        "sched: policy domain {} (accounting page at {ACCOUNTING_IPA:#x}, {cpus} CPUs)",
        own.unwrap_or(u16::MAX)
    );
    for cpu in 0..cpus as usize {
        let p = policies.of(cpu);
        if p != Policy::None {
            println!("sched: CPU {cpu}: {}", p.name());
        }
    }
}

/// Sleeps `ticks` counter ticks (the virtual timer); without the timer, until woken.
fn sleep(ticks: u32, timer_ok: bool) {
    if !timer_ok {
        events::wfi();
        return;
    }
    TIMER_FIRED.store(false, Ordering::Release);
    gic::arm_virtual_timer(ticks);
    irq::disable();
    while !TIMER_FIRED.load(Ordering::Acquire) {
        irq::wait();
        irq::enable();
        irq::disable();
    }
    irq::enable();
}

// The virtual GICv3 registers this domain touches (IHI 0069).
const GICD_CTLR: u64 = 0x0000;
const GICR_TYPER: u64 = 0x0008;
const GICR_WAKER: u64 = 0x0014;
const GICR_IGROUPR0: u64 = SGI_FRAME + 0x0080;
const GICR_ISENABLER0: u64 = SGI_FRAME + 0x0100;
const CTLR_ARE_GRP1: u32 = 1 << 4 | 1 << 1;
const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
const TYPER_LAST: u64 = 1 << 4;

/// Enables the virtual timer's interrupt on vCPU 0 and installs the handler; false if the
/// redistributor is not found.
fn start_timer() -> bool {
    let me = gic::affinity();
    let wanted = (me >> 32 & 0xFF) << 24 | (me & 0xFF_FFFF);
    let mut rd = GICR_BASE;
    let mut found = None;
    for _ in 0..8 {
        let typer = gic::read64(rd + GICR_TYPER);
        if typer >> 32 == wanted {
            found = Some(rd);
            break;
        }
        if typer & TYPER_LAST != 0 {
            break;
        }
        rd += GICR_STRIDE;
    }
    let Some(rd) = found else { return false };
    gic::write32(gic::GICD_BASE + GICD_CTLR, CTLR_ARE_GRP1);
    let waker = gic::read32(rd + GICR_WAKER);
    gic::write32(rd + GICR_WAKER, waker & !WAKER_PROCESSOR_SLEEP);
    while gic::read32(rd + GICR_WAKER) & WAKER_CHILDREN_ASLEEP != 0 {
        core::hint::spin_loop();
    }
    gic::write32(rd + GICR_IGROUPR0, 1 << VTIMER);
    gic::write32(rd + GICR_ISENABLER0, 1 << VTIMER);
    gic::enable_system_registers();
    gic::set_priority_mask(0xFF);
    gic::enable_group1(true);
    irq::set_handler(on_irq);
    irq::enable();
    true
}
