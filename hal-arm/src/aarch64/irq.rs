//! Interrupts Mica takes at run time: kicks, the guests' virtual-timer and maintenance
//! lines, device interrupts owned by domains (handed to the kernel), and the hypervisor's own
//! tick with its housekeeping (bring-up report, power-off deadline, heartbeat).

use core::sync::atomic::Ordering;

use mica_kernel::hal::Hal as _;

use super::cpu::{self, CPUS};
use super::hal::KICK_SGI;
use super::state::{BootState, ALL_TICKING_AT, BOOT_COUNTER, STATE};
use super::sysreg::{counter, counter_hz};
use super::{gic, psci, timer};
use crate::println;
use crate::vgic::MAINTENANCE_PPI;

/// Called for every interrupt Mica takes; returns whether Mica deactivates it (false: it was
/// forwarded to a guest, which deactivates it).
pub fn on_interrupt(intid: u32) -> bool {
    let me = cpu::current();
    let Some(state) = STATE.get() else {
        return true;
    };
    if intid == KICK_SGI {
        // Another CPU changed this one's run queue: the run loop looks at it next.
        return true;
    }
    if intid == state.vtimer_intid || intid == MAINTENANCE_PPI {
        // A guest's virtual timer, or the vGIC's list registers asking for attention: the
        // exit this caused is the point. The run loop syncs the list registers after the
        // exit and samples the timer and refills them before the next entry; both lines are
        // already low here (the
        // world switch stopped the timer and turned the virtual interface off).
        return true;
    }
    if (32..gic::SPURIOUS).contains(&intid) {
        // A device interrupt owned by a domain: the kernel delivers it; the line stays active
        // until the domain acknowledges it (or its guest's EOI deactivates it).
        let outcome = super::hal::lock_kernel().physical_interrupt(intid);
        return outcome == mica_kernel::irq::IrqOutcome::Deactivate;
    }
    if intid != state.tick_intid {
        println!("mica: cpu {me}: unexpected interrupt {intid}");
        return true;
    }
    timer::silence(me);
    let now = counter();
    let housekeeping = timer::take_housekeeping(me, now);
    super::hal::lock_kernel().tick(me);
    if housekeeping {
        housekeeping_tick(me, now, state);
    }
    true
}

/// The hypervisor's own timer work on `me` at counter value `now`: the bring-up tick, and on
/// CPU 0 the power-off deadline and the heartbeat.
fn housekeeping_tick(me: usize, now: u64, state: &BootState) {
    let hz = counter_hz();
    let ticks = CPUS[me].ticks.fetch_add(1, Ordering::Relaxed) + 1;
    if ticks == 1 {
        println!(
            "cpu {me}: first tick (EL2 physical timer, INTID {}, one-shot)",
            state.tick_intid
        );
        let online = CPUS.iter().filter(|c| c.online.load(Ordering::Acquire));
        let all = online.clone().all(|c| c.ticks.load(Ordering::Relaxed) > 0);
        if all
            && ALL_TICKING_AT
                .compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            println!("mica: all {} CPUs ticking", online.count());
            if let Some(ms) = state.args.poweroff_after_ms {
                timer::housekeeping_at(0, now + ms * hz / 1000);
                super::hal::ArmHal.kick(0);
            }
            if let Some(s) = state.args.heartbeat_s {
                timer::housekeeping_at(0, now + s * hz);
                super::hal::ArmHal.kick(0);
            }
        }
    }
    if me != 0 {
        return;
    }
    let all_at = ALL_TICKING_AT.load(Ordering::Acquire);
    if all_at == 0 {
        return;
    }
    if let Some(ms) = state.args.poweroff_after_ms {
        let at = all_at + ms * hz / 1000;
        if now >= at {
            println!("mica: powering off (mica.poweroff_after_ms={ms})");
            let e = psci::system_off();
            println!("mica: PSCI SYSTEM_OFF failed: {e:?}");
            cpu::halt();
        }
        timer::housekeeping_at(0, at);
    }
    if let Some(s) = state.args.heartbeat_s {
        let uptime = (now - BOOT_COUNTER.load(Ordering::Relaxed)) / hz;
        if ticks > 1 {
            println!(
                "mica: uptime {uptime} s, {} MiB free",
                super::hal::lock_kernel().frames.free_bytes() >> 20
            );
        }
        timer::housekeeping_at(0, now + s * hz);
    }
}

/// The physical INTID of the guests' virtual timer on this machine (PPI 27 on QEMU `virt`).
pub fn vtimer_intid() -> u32 {
    STATE
        .get()
        .map_or(crate::vgic::VIRTUAL_TIMER_PPI, |s| s.vtimer_intid)
}
