//! `irq`: drives the domain's virtual GICv3 the way Linux's GICv3 driver does, then checks
//! interrupt delivery (the `vgic` smoke scenario).
//!
//! vCPU 0 reads GICD_TYPER and GICD_PIDR2, enables the distributor (affinity routing, Group
//! 1), finds its redistributor by walking GICR_TYPER affinities up to the Last one, wakes it
//! (GICR_WAKER), sets priorities (with `stp`/`ldp` pairs, which the hypervisor must decode
//! from the instruction) and enables PPI 27 and SGIs 0-7, then its CPU interface (ICC_SRE,
//! ICC_PMR, ICC_IGRPEN1) and an IRQ handler. Then:
//! (a) arms its virtual timer a few times and counts the interrupts;
//! (b) starts vCPU 1, which sets up its own redistributor and CPU interface, and sends it
//!     SGIs, which vCPU 1 reports;
//! (c) with IRQs masked sends itself 8 SGIs of different priorities (more than the 4 list
//!     registers), unmasks, and checks each arrives once, highest priority first;
//! and prints `irq: done`.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use mica_rt::gic::{self, GICD_BASE, GICR_BASE, GICR_STRIDE, SGI_FRAME};
use mica_rt::smp::{self, VcpuStack};
use mica_rt::{irq, println, BootInfo};

const GICD_CTLR: u64 = 0x0000;
const GICD_TYPER: u64 = 0x0004;
const GICD_IPRIORITYR: u64 = 0x0400;
const GICD_PIDR2: u64 = 0xFFE8;
const GICR_TYPER: u64 = 0x0008;
const GICR_WAKER: u64 = 0x0014;
const GICR_IGROUPR0: u64 = SGI_FRAME + 0x0080;
const GICR_ISENABLER0: u64 = SGI_FRAME + 0x0100;
const GICR_IPRIORITYR: u64 = SGI_FRAME + 0x0400;
/// GICD_CTLR: ARE (affinity routing) and EnableGrp1.
const CTLR_ARE_GRP1: u32 = 1 << 4 | 1 << 1;
const CTLR_RWP: u32 = 1 << 31;
const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
const TYPER_LAST: u64 = 1 << 4;

/// The virtual timer's PPI.
const VTIMER: u32 = 27;
/// Timer interrupts to count.
const TIMER_ROUNDS: u32 = 5;
/// The SGIs vCPU 0 sends vCPU 1.
const SGIS_TO_VCPU1: [u8; 2] = [3, 5];

/// Virtual timer interrupts taken.
static TIMER_COUNT: AtomicU32 = AtomicU32::new(0);
/// Per vCPU: SGIs taken, one bit per INTID.
static SGIS_SEEN: [AtomicU32; 2] = [const { AtomicU32::new(0) }; 2];
/// SGIs vCPU 0 took in order, for (c).
static ORDER: [AtomicU32; 16] = [const { AtomicU32::new(u32::MAX) }; 16];
static ORDER_LEN: AtomicUsize = AtomicUsize::new(0);
/// Every SGI acknowledgement, by INTID (for "exactly once").
static SGI_TAKEN: [AtomicU32; 16] = [const { AtomicU32::new(0) }; 16];
/// Interrupts with an INTID this guest did not enable.
static UNEXPECTED: AtomicU32 = AtomicU32::new(0);
/// vCPU 1 has its GIC set up and takes IRQs.
static VCPU1_READY: AtomicBool = AtomicBool::new(false);
/// vCPU 1 has reported every SGI.
static VCPU1_DONE: AtomicBool = AtomicBool::new(false);

static VCPU1_STACK: VcpuStack<{ 16 * 1024 }> = VcpuStack::new();

fn this_vcpu() -> usize {
    (gic::affinity() & 0xFF) as usize
}

/// The IRQ handler (both vCPUs): acknowledge, account, end, until nothing is pending.
fn handle_irq() {
    let me = this_vcpu();
    while let Some(intid) = gic::acknowledge() {
        match intid {
            VTIMER => {
                gic::stop_virtual_timer();
                TIMER_COUNT.fetch_add(1, Ordering::AcqRel);
            }
            0..=15 => {
                if let Some(seen) = SGIS_SEEN.get(me) {
                    seen.fetch_or(1 << intid, Ordering::AcqRel);
                }
                if me == 0 {
                    if let Some(n) = SGI_TAKEN.get(intid as usize) {
                        n.fetch_add(1, Ordering::AcqRel);
                    }
                    let at = ORDER_LEN.fetch_add(1, Ordering::AcqRel);
                    if let Some(slot) = ORDER.get(at) {
                        slot.store(intid, Ordering::Release);
                    }
                }
            }
            _ => {
                UNEXPECTED.fetch_add(1, Ordering::AcqRel);
            }
        }
        gic::end_of_interrupt(intid);
    }
}

/// Waits until `done()`. Some conditions are another vCPU's plain stores, which raise no
/// interrupt: a WFI (which Mica blocks until an interrupt arrives, as hardware does) could
/// sleep forever on them, so the wait yields the CPU between checks instead; interrupts are
/// taken whenever this vCPU runs.
fn wait_until(done: impl Fn() -> bool) {
    while !done() {
        let _ = mica_rt::hypercall::yield_now();
    }
}

/// Finds this vCPU's redistributor by walking GICR_TYPER affinities to the Last one.
fn find_redistributor() -> Option<u64> {
    let me = gic::affinity();
    let wanted = (me >> 32 & 0xFF) << 24 | (me & 0xFF_FFFF);
    let mut rd = GICR_BASE;
    for _ in 0..8 {
        let typer = gic::read64(rd + GICR_TYPER);
        if typer >> 32 == wanted {
            return Some(rd);
        }
        if typer & TYPER_LAST != 0 {
            return None;
        }
        rd += GICR_STRIDE;
    }
    None
}

/// Priority of SGI `n` (0-7): SGI 7 highest (0x10) to SGI 0 lowest (0x80).
const fn sgi_priority(n: u32) -> u32 {
    (8 - n) * 0x10
}

/// Redistributor and CPU interface set-up of the calling vCPU, as gic_cpu_init does.
fn init_cpu() -> Option<u64> {
    let rd = find_redistributor()?;
    // Wake it: clear ProcessorSleep, wait for ChildrenAsleep to clear.
    let waker = gic::read32(rd + GICR_WAKER);
    gic::write32(rd + GICR_WAKER, waker & !WAKER_PROCESSOR_SLEEP);
    while gic::read32(rd + GICR_WAKER) & WAKER_CHILDREN_ASLEEP != 0 {
        core::hint::spin_loop();
    }
    gic::write32(rd + GICR_IGROUPR0, u32::MAX);
    // SGIs 0-7 (IPRIORITYR0 and 1) with one stp; PPIs 24-27 (IPRIORITYR6) one at a time.
    let word = |first: u32| (0..4).fold(0u32, |acc, i| acc | sgi_priority(first + i) << (8 * i));
    gic::write_pair32(rd + GICR_IPRIORITYR, word(0), word(4));
    gic::write32(rd + GICR_IPRIORITYR + 24, 0xA0A0_A0A0);
    gic::write32(rd + GICR_ISENABLER0, 1 << VTIMER | 0xFF);
    // CPU interface.
    gic::enable_system_registers();
    gic::set_priority_mask(0xFF);
    gic::set_binary_point(0);
    gic::enable_group1(true);
    Some(rd)
}

fn main(_info: BootInfo) -> ! {
    let typer = gic::read32(GICD_BASE + GICD_TYPER);
    let arch_rev = gic::read32(GICD_BASE + GICD_PIDR2) >> 4 & 0xF;
    println!(
        "irq: GICD_TYPER {typer:#x} ({} INTIDs, {} CPUs), GICv{arch_rev}",
        32 * ((typer & 0x1F) + 1),
        (typer >> 5 & 7) + 1
    );
    // Distributor: off, wait for RWP, SPI priorities with a pair store (read back with a
    // pair load), then affinity routing and Group 1 on.
    gic::write32(GICD_BASE + GICD_CTLR, 0);
    while gic::read32(GICD_BASE + GICD_CTLR) & CTLR_RWP != 0 {
        core::hint::spin_loop();
    }
    let spi_priorities = GICD_BASE + GICD_IPRIORITYR + 32;
    gic::write_pair32(spi_priorities, 0xA0A0_A0A0, 0x9090_9090);
    match gic::read_pair32(spi_priorities) {
        (0xA0A0_A0A0, 0x9090_9090) => println!("irq: stp/ldp of GICD_IPRIORITYR8-9: ok"),
        (a, b) => println!("irq: stp/ldp of GICD_IPRIORITYR8-9 read back {a:#x} {b:#x}"),
    }
    gic::write32(GICD_BASE + GICD_CTLR, CTLR_ARE_GRP1);
    println!("irq: GICD_CTLR {:#x}", gic::read32(GICD_BASE + GICD_CTLR));
    let Some(rd) = init_cpu() else {
        println!("irq: vcpu 0 found no redistributor");
        mica_rt::exit();
    };
    let (p0, p1) = gic::read_pair32(rd + GICR_IPRIORITYR);
    println!("irq: vcpu 0 redistributor at {rd:#x}, SGI priorities {p0:#010x} {p1:#010x}");
    irq::set_handler(handle_irq);
    irq::enable();

    // (a) The virtual timer.
    let period = (gic::counter_hz() / 200).max(1) as u32; // 5 ms
    for round in 1..=TIMER_ROUNDS {
        gic::arm_virtual_timer(period);
        wait_until(|| TIMER_COUNT.load(Ordering::Acquire) >= round);
    }
    println!(
        "irq: virtual timer interrupts: {}",
        TIMER_COUNT.load(Ordering::Acquire)
    );

    // (b) SGIs to vCPU 1.
    if let Err(e) = smp::start_vcpu(1, &VCPU1_STACK, secondary, 0) {
        println!("irq: starting vcpu 1 failed ({e})");
        mica_rt::exit();
    }
    wait_until(|| VCPU1_READY.load(Ordering::Acquire));
    for sgi in SGIS_TO_VCPU1 {
        gic::send_sgi(sgi, 1 << 1);
        wait_until(|| SGIS_SEEN[1].load(Ordering::Acquire) & (1 << sgi) != 0);
    }
    wait_until(|| VCPU1_DONE.load(Ordering::Acquire));

    // (c) More pending than list registers, sent lowest priority first while masked.
    irq::disable();
    for sgi in 0..8u8 {
        gic::send_sgi(sgi, 1 << 0);
    }
    irq::enable();
    wait_until(|| ORDER_LEN.load(Ordering::Acquire) >= 8);
    let order: [u32; 8] = core::array::from_fn(|i| ORDER[i].load(Ordering::Acquire));
    let once = (0..8).all(|i| SGI_TAKEN[i].load(Ordering::Acquire) == 1);
    let by_priority = order == [7, 6, 5, 4, 3, 2, 1, 0];
    if once && by_priority {
        println!("irq: 8 SGIs delivered in priority order");
    } else {
        println!("irq: SGI order {order:?}, each exactly once: {once}");
    }
    let unexpected = UNEXPECTED.load(Ordering::Acquire);
    if unexpected != 0 {
        println!("irq: {unexpected} unexpected interrupts");
    }
    println!("irq: done");
    mica_rt::exit()
}

/// vCPU 1: sets up its redistributor and CPU interface, reports each SGI vCPU 0 sends.
fn secondary(_arg: u64) -> ! {
    let Some(rd) = init_cpu() else {
        println!("irq: vcpu 1 found no redistributor");
        mica_rt::exit();
    };
    println!("irq: vcpu {} redistributor at {rd:#x}", this_vcpu());
    irq::set_handler(handle_irq);
    irq::enable();
    VCPU1_READY.store(true, Ordering::Release);
    for sgi in SGIS_TO_VCPU1 {
        wait_until(|| SGIS_SEEN[1].load(Ordering::Acquire) & (1 << sgi) != 0);
        println!("irq: vcpu 1 got SGI {sgi}");
    }
    VCPU1_DONE.store(true, Ordering::Release);
    let refused = mica_rt::psci::cpu_off();
    println!("irq: vcpu 1 CPU_OFF refused ({refused})");
    loop {
        irq::wait();
    }
}

mica_rt::entry!(main);
