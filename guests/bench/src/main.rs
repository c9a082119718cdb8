//! `bench`: the benchmark guest — times what Mica costs a domain with the virtual counter.
//!
//! Every figure is read from `CNTVCT_EL0` (the virtual counter; `CNTVOFF_EL2` is 0 under
//! Mica, so it counts from machine start) and converted to nanoseconds with `CNTFRQ_EL0`.
//! `make bench` boots the `images/bench-*.toml` systems under QEMU with
//! `-icount shift=0,sleep=off`, where virtual time follows executed instructions (1 ns per
//! instruction) and every run gives the same figures (`docs/PERFORMANCE.md`). The counter
//! runs at 62.5 MHz on QEMU `virt`, so each single figure is a multiple of 16 ns.
//!
//! Each measurement is one line, the median, minimum and maximum over its iterations:
//! `bench: NAME: median M ns, min A ns, max B ns, N iterations`, after a few warm-up
//! iterations that are not counted. What the domain does is chosen by the manifest's `arg`:
//!
//! | `arg` | role | measurements it prints |
//! | --- | --- | --- |
//! | 1 | alone | `boot` (machine start → this domain's first instruction), `counter-read`, `null-hypercall` (`whoami`), `cap-derive`, `cap-revoke` and `cap-derive-revoke` (a one-frame copy of its own RAM capability, then revoking the RAM capability's descendants) |
//! | 10 | event sender | — (stamps the time into the shared region `stamp`, then sends on endpoint `bell`) |
//! | 11, 12 | event receiver | `event-same-cpu` (11), `event-cross-cpu` (12): send → the receiver running after its WFI |
//! | 20 | ring client | `ring-round-trip`: request → response over a `mica_rt::channel` in region `ring`, endpoint `bell` |
//! | 21 | ring server | — (answers each request) |
//! | 30, 31 | world-switch pair | 31 prints `world-switch`: one domain's `yield` → the other running (both on one CPU, region `stamp`) |
//! | 40 | builder | `domain-create` (`domain_create` → the new domain's first instruction), `domain-destroy` |
//! | 50 | idle | `bench: idle`, then WFI forever (the host-CPU measurement) |
//!
//! After its measurements a measuring domain prints `bench: done (NAME)` and ends.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};
use mica_rt::channel::{Channel, Endpoint, Layout, Side};
use mica_rt::hypercall::CapInfo;
use mica_rt::ring::{RingMemory, SharedRegion};
use mica_rt::{events, hypercall, memory, println, BootInfo, FrameRange, Port, Rights, Slot};

/// Counted iterations of each measurement.
const ITERATIONS: usize = 1000;
/// Iterations run before counting (caches, first-touch paths).
const WARMUP: usize = 16;
/// Iterations of the domain create/destroy measurement (each is a whole domain's life).
const DOMAIN_ITERATIONS: usize = 200;

/// The counter value at this domain's first instruction, written by `mica_bench_entry` before
/// `mica-rt`'s `_start` runs (it lives in `.data`, which `_start` does not clear).
#[no_mangle]
static BENCH_BOOT_STAMP: AtomicU64 = AtomicU64::new(u64::MAX);

core::arch::global_asm!(
    r#"
    .section .text.mica_bench_entry, "ax"
    .global mica_bench_entry
mica_bench_entry:
    mrs     x9, cntvct_el0
    adrp    x10, {stamp}
    add     x10, x10, :lo12:{stamp}
    str     x9, [x10]
    b       _start
    "#,
    stamp = sym BENCH_BOOT_STAMP,
);

/// Reads the virtual counter (after an `isb`, so earlier instructions have completed).
fn now() -> u64 {
    let ticks: u64;
    // SAFETY: reading CNTVCT_EL0 has no side effects; EL1 may read it (CNTHCTL_EL2 = 3).
    unsafe {
        core::arch::asm!(
            "isb",
            "mrs {t}, cntvct_el0",
            t = out(reg) ticks,
            options(nomem, nostack, preserves_flags)
        );
    }
    ticks
}

/// Counter ticks as nanoseconds.
fn ns(ticks: u64) -> u64 {
    let hz = u128::from(mica_rt::gic::counter_hz().max(1));
    (u128::from(ticks) * 1_000_000_000 / hz) as u64
}

/// Samples of one measurement, in counter ticks.
struct Samples {
    ticks: [u32; ITERATIONS],
    len: usize,
}

impl Samples {
    const fn new() -> Samples {
        Samples {
            ticks: [0; ITERATIONS],
            len: 0,
        }
    }

    fn push(&mut self, ticks: u64) {
        if self.len < ITERATIONS {
            self.ticks[self.len] = u32::try_from(ticks).unwrap_or(u32::MAX);
            self.len += 1;
        }
    }

    /// Prints the measurement's line: median (upper middle), min and max.
    fn report(&mut self, name: &str) {
        let s = &mut self.ticks[..self.len];
        if s.is_empty() {
            println!("bench: {name}: no samples");
            return;
        }
        s.sort_unstable();
        println!(
            "bench: {name}: median {} ns, min {} ns, max {} ns, {} iterations",
            ns(u64::from(s[s.len() / 2])),
            ns(u64::from(s[0])),
            ns(u64::from(s[s.len() - 1])),
            s.len()
        );
    }
}

/// Times `body` `WARMUP + ITERATIONS` times, counting the last `ITERATIONS`.
fn time(name: &str, mut body: impl FnMut()) {
    let mut samples = Samples::new();
    for i in 0..WARMUP + ITERATIONS {
        let t0 = now();
        body();
        let t1 = now();
        if i >= WARMUP {
            samples.push(t1.wrapping_sub(t0));
        }
    }
    samples.report(name);
}

fn fail(what: &str, detail: impl core::fmt::Debug) -> ! {
    println!("bench: FAILED: {what}: {detail:?}");
    mica_rt::exit()
}

fn done(name: &str) -> ! {
    println!("bench: done ({name})");
    mica_rt::exit()
}

/// Says the domain is done and sleeps for good. Domains that share memory end this way
/// rather than powering off: under `-icount` the kernel did not always finish tearing down a
/// domain while its peer slept on another CPU (docs/PERFORMANCE.md), and `mica bench` stops
/// QEMU once it has every measurement anyway.
fn park(name: &str) -> ! {
    println!("bench: done ({name})");
    loop {
        events::wfi();
    }
}

/// A 64-bit value and a sequence word in a shared region, as 32-bit atomic words: word 0 is
/// the sequence number, written last with release; words 2 and 3 the value's halves.
struct Mailbox(SharedRegion);

impl Mailbox {
    fn seq(&self) -> u32 {
        self.0.load_acquire(0)
    }

    fn value(&self) -> u64 {
        u64::from(self.0.load_acquire(8)) | u64::from(self.0.load_acquire(12)) << 32
    }

    fn post(&self, seq: u32, value: u64) {
        self.0.store_release(8, value as u32);
        self.0.store_release(12, (value >> 32) as u32);
        self.0.store_release(0, seq);
    }
}

fn region(name: &str) -> SharedRegion {
    memory::shared_region(name).unwrap_or_else(|| fail("boot-info page", name))
}

fn endpoint(name: &str) -> Slot {
    mica_rt::bootinfo()
        .and_then(|p| p.endpoint(name))
        .unwrap_or_else(|| fail("boot-info page", name))
}

/// Registers the event page and binds `name` to port 0 of vCPU 0.
fn bind(name: &str) -> Slot {
    let slot = endpoint(name);
    if let Err(s) = events::register().and_then(|()| events::bind(slot, Port(0), 0)) {
        fail("event set-up", s);
    }
    slot
}

/// Waits (in WFI) until some event is pending, and takes it.
fn wait_event() {
    events::wait();
}

/// Sleeps in WFI for at least `ticks` counter ticks, woken by the virtual timer (the kernel
/// wakes a blocked vCPU when its timer is due). Sleeping rather than spinning matters under
/// `-icount`: QEMU then runs the CPUs one at a time, and another CPU gets to run (e.g. a peer
/// reaches its WFI) only while this one is halted.
fn sleep(ticks: u32) {
    let until = now() + u64::from(ticks);
    mica_rt::gic::arm_virtual_timer(ticks);
    while now() < until {
        events::wfi();
    }
    mica_rt::gic::stop_virtual_timer();
}

/// How long the event sender sleeps before each send (counter ticks: 20 µs), so that the
/// receiver is asleep in WFI when the event comes.
const SETTLE_TICKS: u32 = 1250;

// ----- arg 1: boot, counter, null hypercall, capabilities ----------------------------------

fn alone() -> ! {
    let boot = BENCH_BOOT_STAMP.load(Ordering::Relaxed);
    let mut one = Samples::new();
    one.push(boot);
    one.report("boot");

    time("counter-read", || {});
    time("null-hypercall", || {
        if hypercall::whoami().is_err() {
            fail("whoami", ());
        }
    });

    // A one-frame copy of the domain's own RAM capability (slot 0 holds its first RAM chunk),
    // then the RAM capability's descendants revoked (the copy is the only one).
    let ram = Slot(0);
    let first = match hypercall::cap_identify(ram) {
        Ok(CapInfo {
            frames: Some(frames),
            ..
        }) => frames.first(),
        Ok(_) => fail("cap_identify of the RAM capability", "no frames"),
        Err(s) => fail("cap_identify of the RAM capability", s),
    };
    let Ok(me) = hypercall::whoami() else {
        fail("whoami", ())
    };
    let copy = Slot(me.slots as u16 - 1);
    let mut derive = Samples::new();
    let mut revoke = Samples::new();
    let mut both = Samples::new();
    for i in 0..WARMUP + ITERATIONS {
        let t0 = now();
        if let Err(s) = hypercall::cap_derive(ram, copy, Rights::READ, FrameRange::new(first, 1)) {
            fail("cap_derive", s);
        }
        let t1 = now();
        match hypercall::cap_revoke(ram) {
            Ok(1) => {}
            other => fail("cap_revoke (one descendant expected)", other),
        }
        let t2 = now();
        if i >= WARMUP {
            derive.push(t1 - t0);
            revoke.push(t2 - t1);
            both.push(t2 - t0);
        }
    }
    derive.report("cap-derive");
    revoke.report("cap-revoke");
    both.report("cap-derive-revoke");
    done("alone")
}

// ----- args 10-12: event channel send → receiver running ------------------------------------

/// Every round: wait for the receiver's "ready" event, sleep a little so that it reaches its
/// WFI, stamp the time into the mailbox, send.
fn event_sender() -> ! {
    let bell = bind("bell");
    let mailbox = Mailbox(region("stamp"));
    for round in 1..=(WARMUP + ITERATIONS) as u32 {
        wait_event();
        sleep(SETTLE_TICKS);
        mailbox.post(round, now());
        if let Err(s) = events::send(bell) {
            fail("evtchn_send", s);
        }
    }
    park("event sender")
}

/// Every round: say "ready", sleep in WFI, and on waking with the round's stamp in the
/// mailbox count the time since the sender stamped it.
fn event_receiver(name: &str) -> ! {
    let bell = bind("bell");
    let mailbox = Mailbox(region("stamp"));
    let mut samples = Samples::new();
    for round in 1..=(WARMUP + ITERATIONS) as u32 {
        if let Err(s) = events::send(bell) {
            fail("evtchn_send", s);
        }
        let woke = loop {
            events::wfi();
            let t = now();
            if mailbox.seq() == round {
                break t;
            }
        };
        let _ = events::take_pending();
        if round as usize > WARMUP {
            samples.push(woke.wrapping_sub(mailbox.value()));
        }
    }
    samples.report(name);
    park(name)
}

// ----- args 20-21: ring request → response ---------------------------------------------------

const RING_LAYOUT: Layout = Layout {
    capacity: 16,
    slot_size: 64,
};
const MESSAGE: usize = 32;

fn ring_client() -> ! {
    let bell = bind("bell");
    let mut channel = Channel::new(region("ring"), RING_LAYOUT, Side::Client, Endpoint(bell))
        .unwrap_or_else(|e| fail("ring set-up", e));
    if let Err(e) = channel.kick() {
        fail("kick", e);
    }
    let mut request = [0u8; MESSAGE];
    let mut response = [0u8; MESSAGE];
    let mut seq = 0u64;
    time("ring-round-trip", || {
        seq += 1;
        request[..8].copy_from_slice(&seq.to_le_bytes());
        if let Err(e) = channel.send(&request) {
            fail("ring send", e);
        }
        match channel.recv_blocking(&mut response, wait_event) {
            Ok(MESSAGE) if response[..8] == seq.to_le_bytes() => {}
            other => fail("ring response", other),
        }
    });
    park("ring client")
}

fn ring_server() -> ! {
    let bell = bind("bell");
    // The client's first event says the rings are initialised.
    wait_event();
    let mut channel = Channel::new(region("ring"), RING_LAYOUT, Side::Server, Endpoint(bell))
        .unwrap_or_else(|e| fail("ring set-up", e));
    let mut buf = [0u8; MESSAGE];
    loop {
        match channel.recv_blocking(&mut buf, wait_event) {
            Ok(len) => {
                if let Err(e) = channel.send_blocking(&buf[..len], wait_event) {
                    fail("ring respond", e);
                }
            }
            Err(e) => fail("ring receive", e),
        }
    }
}

// ----- args 30-31: world switch between two domains on one CPU -------------------------------

/// Both domains take turns: the one whose turn it is (odd sequence numbers for 31, even for
/// 30) counts the time since the other stamped the mailbox just before its `yield`, stamps
/// it itself and yields.
fn world_switch(second: bool) -> ! {
    let mailbox = Mailbox(region("stamp"));
    let mut samples = Samples::new();
    let rounds = (WARMUP + ITERATIONS) as u32;
    for round in 0..rounds {
        let mine = 2 * round + u32::from(second);
        while mailbox.seq() != mine {
            let _ = hypercall::yield_now();
        }
        let t = now();
        if mine > 0 && round as usize >= WARMUP {
            samples.push(t.wrapping_sub(mailbox.value()));
        }
        mailbox.post(mine + 1, now());
        let _ = hypercall::yield_now();
    }
    if second {
        samples.report("world-switch");
        done("world-switch")
    }
    // The first domain owns the region: stay until the second has taken its last turn.
    while mailbox.seq() != 2 * rounds {
        let _ = hypercall::yield_now();
    }
    mica_rt::exit()
}

// ----- arg 40: domain create → first instruction, destroy ------------------------------------

/// The child's program (checked with `llvm-mc`): `isb; mrs x1, cntvct_el0; mov x2,
/// #0x4000_0100; str x1, [x2]; dsb sy; 1: wfi; b 1b`. It stores its first counter reading at
/// offset 0x100 of its RAM and sleeps.
const CHILD_PROGRAM: [u32; 8] = [
    0xD503_3FDF,
    0xD53B_E041,
    0xD280_2002,
    0xF2A8_0002,
    0xF900_0041,
    0xD503_3F9F,
    0xD503_207F,
    0x17FF_FFFF,
];
/// Where the child stores its counter reading, from the start of its RAM.
const CHILD_STAMP: usize = 0x100;
/// The child's RAM: one page.
const CHILD_PAGES: u64 = 1;
/// The child's RAM base (guest-physical, in the child).
const CHILD_BASE: u64 = 0x4000_0000;
/// Capability slots and kernel-memory quota the child gets.
const CHILD_SLOTS: u64 = 8;
const CHILD_QUOTA: u64 = 64 * 1024;
/// The physical CPU the builder runs on (its manifest pins it there); the child runs there
/// too, so the builder's `yield` hands it the CPU.
const BUILDER_CPU: u64 = 0;

fn builder(info: &BootInfo) -> ! {
    let Ok(me) = hypercall::whoami() else {
        fail("whoami", ())
    };
    let top = me.slots as u16;
    let (child_slot, memory_slot, vcpu_slot) = (Slot(top - 1), Slot(top - 2), Slot(top - 3));
    // One page of free RAM past the image, as the child's RAM.
    let free = memory::free_ram();
    let page_ipa = (free.start + 0xFFF) & !0xFFF;
    if page_ipa + 0x1000 > free.end {
        fail("free RAM for the child", free);
    }
    // SAFETY: the page lies in the domain's RAM outside the image, the boot-info page and any
    // shared region (`free_ram`), no Rust object or reference covers it (nothing else uses
    // `free_ram`; `take_free_ram` is never called), and it is only touched through
    // `SharedRegion`'s atomic accesses while the child may write it.
    let page = unsafe { SharedRegion::new(page_ipa as *mut u8, 0x1000) };
    let ram = match hypercall::cap_identify(Slot(0)) {
        Ok(CapInfo {
            frames: Some(frames),
            ..
        }) => frames,
        Ok(_) => fail("cap_identify of the RAM capability", "no frames"),
        Err(s) => fail("cap_identify of the RAM capability", s),
    };
    let frame = ram.first() + (page_ipa - info.ram_base) / 0x1000;
    let Some(child_frames) = FrameRange::new(frame, CHILD_PAGES) else {
        fail("the child's frames", frame)
    };
    let rwx = Rights::READ | Rights::WRITE | Rights::EXECUTE;
    if let Err(s) = hypercall::cap_derive(Slot(0), memory_slot, rwx, Some(child_frames)) {
        fail("cap_derive of the child's page", s);
    }

    let mut create = Samples::new();
    let mut destroy = Samples::new();
    for i in 0..WARMUP + DOMAIN_ITERATIONS {
        for (n, word) in CHILD_PROGRAM.iter().enumerate() {
            page.store_release(4 * n, *word);
        }
        page.store_release(CHILD_STAMP, 0);
        page.store_release(CHILD_STAMP + 4, 0);
        let t0 = now();
        let steps = hypercall::domain_create(child_slot, CHILD_SLOTS, CHILD_QUOTA)
            .map(|_| ())
            .and_then(|()| {
                hypercall::mem_map(child_slot, memory_slot, CHILD_BASE, child_frames, rwx)
            })
            .and_then(|()| hypercall::vcpu_create(child_slot, vcpu_slot, 0, BUILDER_CPU))
            .and_then(|()| hypercall::vcpu_start(vcpu_slot, CHILD_BASE, 0));
        if let Err(s) = steps {
            fail("creating the child", s);
        }
        let started = loop {
            let lo = page.load_acquire(CHILD_STAMP);
            let hi = page.load_acquire(CHILD_STAMP + 4);
            if lo | hi != 0 {
                break u64::from(lo) | u64::from(hi) << 32;
            }
            let _ = hypercall::yield_now();
        };
        let t1 = now();
        if let Err(s) = hypercall::domain_destroy(child_slot) {
            fail("domain_destroy", s);
        }
        let t2 = now();
        // The child's vCPU capability (if the destroy left one) and Domain capability go.
        let _ = hypercall::cap_delete(vcpu_slot);
        let _ = hypercall::cap_delete(child_slot);
        if i >= WARMUP {
            create.push(started.wrapping_sub(t0));
            destroy.push(t2 - t1);
        }
    }
    create.report("domain-create");
    destroy.report("domain-destroy");
    done("domain")
}

// ----- arg 50: idle ----------------------------------------------------------------------------

fn idle() -> ! {
    println!("bench: idle");
    loop {
        events::wfi();
    }
}

fn main(info: BootInfo) -> ! {
    match info.arg {
        1 => alone(),
        10 => event_sender(),
        11 => event_receiver("event-same-cpu"),
        12 => event_receiver("event-cross-cpu"),
        20 => ring_client(),
        21 => ring_server(),
        30 => world_switch(false),
        31 => world_switch(true),
        40 => builder(&info),
        50 => idle(),
        other => fail("unknown arg (see the guest's documentation)", other),
    }
}

mica_rt::entry!(main);
