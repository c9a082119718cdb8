//! `intruder`: attacks isolation through what a domain may create or leave behind, and
//! reports each verdict on one line.
//!
//! A refused attack prints `intruder: <attack>: refused (<status>)`; a defence that held
//! prints `intruder: <attack>: ok (<what>)`. A broken one prints a line with `NOT REFUSED`,
//! `ZOMBIE`, `DRAINED`, `FAILED` or `LEAKED`, which the `isolation-*` smoke scenarios forbid.
//! `arg` picks the attacks (docs/security.md lists them with the findings they test):
//!
//! - 0 `lifecycle`: a child domain runs a counting loop on another CPU; once the child's
//!   Vcpu and Domain capabilities are deleted the loop must stop at once (a vCPU left
//!   running would run inside the next domain given the child's id). Then: it may not take
//!   another domain's name, and it ends leaving a running child, `orphan`, which must end
//!   with it.
//! - 1 `tables`: maps and unmaps one page at 40,000 ever-new guest-physical addresses (each
//!   needing new stage-2 tables): the kernel must free the tables, or its memory drains;
//!   then maps far-apart pages into a child with a 16 KiB quota: the child's quota must pay
//!   for the tables.
//! - 2 `greedy`: creates domains and event channels until refused, then ends: what it
//!   created must end with it.
//! - 3 `loud`: prints terminal control bytes, floods the kernel log (10,000 children created
//!   and deleted, each end a log line; then PSCI CPU_ON of its second vCPU, over and over) and
//!   the console: the kernel must print the bytes as `?` and cut both floods to its budget.
//! - 4 `plant`: writes marker values into debug, PMU and EL1 physical-timer registers, then
//!   ends; 5 `snoop`, on the same CPU after it: reads them, and implementation-defined
//!   registers that would show the machine's layout; runs set/way cache maintenance.
//! - 6 `bystander`: waits a second, then creates a domain and an event channel, which must
//!   succeed whatever a `greedy` neighbour did.
#![no_std]
#![no_main]

use mica_rt::hypercall;
use mica_rt::{memory, println, psci, BootInfo, FrameRange, Rights, Slot, Status};

/// Where a child's RAM starts in its own guest-physical space.
const CHILD_RAM: u64 = 0x4000_0000;
/// Pages of the intruder's RAM lent to each child.
const CHILD_PAGES: u64 = 16;
/// Bytes in a page.
const PAGE: u64 = mica_abi::layout::PAGE_SIZE;
/// Slots the attacks use (above what the kernel gave the domain at boot).
const CHILD_DOMAIN: Slot = Slot(50);
const CHILD_MEMORY: Slot = Slot(51);
const CHILD_VCPU: Slot = Slot(52);
const ORPHAN_DOMAIN: Slot = Slot(53);
const ORPHAN_MEMORY: Slot = Slot(54);
const ORPHAN_VCPU: Slot = Slot(55);
/// The Memory capability over the domain's RAM (the kernel puts RAM chunk 0 in slot 0).
const RAM: Slot = Slot(0);

/// A counting loop for a child, AArch64 machine code: `x0` = address of the counter.
/// `ldr x1, [x0]; add x1, x1, #1; str x1, [x0]; b .-12`.
const COUNTER_LOOP: [u32; 4] = [0xF940_0001, 0x9100_0421, 0xF900_0001, 0x17FF_FFFD];
/// A vCPU entry that turns itself off at once: `movz x0, #2; movk x0, #0x8400, lsl #16`
/// (PSCI CPU_OFF, 0x8400_0002), `hvc #0`, `b .`.
const CPU_OFF_STUB: [u32; 4] = [0xD280_0040, 0xF2B0_8000, 0xD400_0002, 0x1400_0000];

fn report<T>(attack: &str, outcome: Result<T, Status>) {
    match outcome {
        Err(status) => println!("intruder: {attack}: refused ({status:?})"),
        Ok(_) => println!("intruder: {attack}: NOT REFUSED"),
    }
}

/// Milliseconds of the virtual counter.
fn now_ms() -> u64 {
    let (count, hz): (u64, u64);
    // SAFETY: reading the virtual counter and its frequency has no side effects; both are
    // readable at EL1.
    unsafe {
        core::arch::asm!("isb", "mrs {0}, cntvct_el0", "mrs {1}, cntfrq_el0", out(reg) count, out(reg) hz, options(nomem, nostack));
    }
    count / (hz / 1000).max(1)
}

fn wait_ms(ms: u64) {
    let until = now_ms() + ms;
    while now_ms() < until {
        let _ = hypercall::yield_now();
    }
}

/// The RAM the intruder lends its children and maps around: its free RAM, page aligned,
/// with the frame number of its first page.
struct Lendable {
    words: &'static mut [u64],
    /// Guest-physical address of `words[0]` (the MMU is off: also its address).
    ipa: u64,
    /// Absolute frame number of that page (for capabilities and `mem_map`).
    frame: u64,
}

impl Lendable {
    fn take(info: &BootInfo) -> Option<Lendable> {
        let ram = hypercall::cap_identify(RAM).ok()?;
        let words = memory::take_free_ram()?;
        let start = words.as_ptr() as u64;
        let skip = (start.next_multiple_of(PAGE) - start) / 8;
        let words = words.get_mut(skip as usize..)?;
        let ipa = words.as_ptr() as u64;
        let frame = ram.frames?.first() + (ipa - info.ram_base) / PAGE;
        Some(Lendable { words, ipa, frame })
    }

    /// Page `page`'s words.
    fn page(&mut self, page: u64) -> &mut [u64] {
        let from = (page * PAGE / 8) as usize;
        &mut self.words[from..from + (PAGE / 8) as usize]
    }

    /// Writes `code` at the start of page `page`, made visible to instruction fetch.
    fn write_code(&mut self, page: u64, code: &[u32]) {
        let words = self.page(page);
        for (i, pair) in code.chunks(2).enumerate() {
            let low = u64::from(pair[0]);
            let high = u64::from(pair.get(1).copied().unwrap_or(0));
            words[i] = low | high << 32;
        }
        let at = words.as_ptr() as u64;
        // SAFETY: cache maintenance by address of the intruder's own RAM, then barriers: no
        // memory content changes, the new code becomes visible to instruction fetch on every
        // CPU (a no-op under emulation, required on hardware).
        unsafe {
            core::arch::asm!("dc cvau, {0}", "dsb ish", "ic ivau, {0}", "dsb ish", "isb", in(reg) at, options(nostack));
        }
    }

    /// The counter word of the child lent pages from `page` (its second page).
    fn counter(&self, page: u64) -> u64 {
        let word = &self.words[((page + 1) * PAGE / 8) as usize];
        // SAFETY: a plain load of a word of the intruder's own RAM, which a child's vCPU may be
        // writing at the same time (a torn or stale value is fine: only a change is looked
        // for); volatile so each call reads memory again.
        unsafe { core::ptr::read_volatile(word) }
    }
}

/// Lends pages `[page, page + CHILD_PAGES)` to a new child (its capability in `domain`),
/// writes the counting loop there and starts its vCPU 0 on physical CPU `cpu`.
fn spawn(
    lend: &mut Lendable,
    page: u64,
    domain: Slot,
    memory: Slot,
    vcpu: Slot,
    cpu: u64,
) -> Result<u64, Status> {
    let id = hypercall::domain_create(domain, 8, 64 * 1024)?;
    let frames = FrameRange::new(lend.frame + page, CHILD_PAGES).ok_or(Status::InvalidArgument)?;
    let rwx = Rights::READ | Rights::WRITE | Rights::EXECUTE;
    hypercall::cap_derive(RAM, memory, rwx, Some(frames))?;
    hypercall::mem_map(domain, memory, CHILD_RAM, frames, rwx)?;
    lend.write_code(page, &COUNTER_LOOP);
    hypercall::vcpu_create(domain, vcpu, 0, cpu)?;
    hypercall::vcpu_start(vcpu, CHILD_RAM, CHILD_RAM + PAGE)?;
    Ok(id)
}

/// Whether the counter of the child at `page` moves within `ms` milliseconds.
fn counting(lend: &Lendable, page: u64, ms: u64) -> bool {
    let before = lend.counter(page);
    let until = now_ms() + ms;
    while now_ms() < until {
        if lend.counter(page) != before {
            return true;
        }
    }
    false
}

fn lifecycle(info: &BootInfo) {
    let Some(mut lend) = Lendable::take(info) else {
        println!("intruder: no free RAM to lend: FAILED");
        return;
    };
    match spawn(&mut lend, 0, CHILD_DOMAIN, CHILD_MEMORY, CHILD_VCPU, 1) {
        Ok(id) => println!("intruder: child (id {id}) started on CPU 1"),
        Err(status) => {
            println!("intruder: cannot start a child: FAILED ({status:?})");
            return;
        }
    }
    if !counting(&lend, 0, 2000) {
        println!("intruder: the child never counted: FAILED");
        return;
    }
    println!("intruder: child counts");
    let deleted = hypercall::cap_delete(CHILD_VCPU).and(hypercall::cap_delete(CHILD_DOMAIN));
    if let Err(status) = deleted {
        println!("intruder: cannot delete the child's capabilities: FAILED ({status:?})");
        return;
    }
    // Give a vCPU that wrongly goes on running time to show it.
    wait_ms(20);
    if counting(&lend, 0, 500) {
        println!("intruder: a deleted domain's vCPU still runs: ZOMBIE");
    } else {
        println!("intruder: delete the child's capabilities: ok (its vCPU stopped)");
    }
    // A new domain may get the id now: nothing of the old one may run in it.
    match hypercall::domain_create(CHILD_DOMAIN, 8, 0) {
        Ok(id) => {
            wait_ms(20);
            if counting(&lend, 0, 500) {
                println!("intruder: the old vCPU runs in new domain {id}: ZOMBIE");
            } else {
                println!(
                    "intruder: a new domain (id {id}) after it: ok (nothing of the old one runs)"
                );
            }
            let _ = hypercall::cap_delete(CHILD_DOMAIN);
        }
        Err(status) => println!("intruder: cannot create a domain after it: FAILED ({status:?})"),
    }
    names();
    // A child with a running vCPU, left behind: it must end with its creator.
    match spawn(
        &mut lend,
        CHILD_PAGES,
        ORPHAN_DOMAIN,
        ORPHAN_MEMORY,
        ORPHAN_VCPU,
        1,
    ) {
        Ok(id) => {
            let _ = hypercall::domain_set_name(ORPHAN_DOMAIN, "orphan");
            if counting(&lend, CHILD_PAGES, 2000) {
                println!("intruder: leaving orphan (id {id}) running; it must end with me");
            } else {
                println!("intruder: the orphan never counted: FAILED");
            }
        }
        Err(status) => println!("intruder: cannot start the orphan: FAILED ({status:?})"),
    }
}

/// Names belong to one domain, and naming needs a capability.
fn names() {
    report(
        "rename itself to another domain's name",
        hypercall::domain_set_name(Slot::SELF_DOMAIN, "hello"),
    );
    report(
        "rename itself to a fresh name",
        hypercall::domain_set_name(Slot::SELF_DOMAIN, "innocent"),
    );
    if let Err(status) = hypercall::domain_create(CHILD_DOMAIN, 8, 0) {
        println!("intruder: cannot create a domain to name: FAILED ({status:?})");
        return;
    }
    report(
        "name a child after another domain",
        hypercall::domain_set_name(CHILD_DOMAIN, "hello"),
    );
    report(
        "name a child after itself",
        hypercall::domain_set_name(CHILD_DOMAIN, "intruder"),
    );
    report(
        "name a child like an unnamed domain",
        hypercall::domain_set_name(CHILD_DOMAIN, "unnamed-1"),
    );
    let _ = hypercall::cap_delete(CHILD_DOMAIN);
}

fn tables(info: &BootInfo) {
    let Some(lend) = Lendable::take(info) else {
        println!("intruder: no free RAM to map: FAILED");
        return;
    };
    let rw = Rights::READ | Rights::WRITE;
    let Some(page) = FrameRange::new(lend.frame, 1) else {
        println!(
            "intruder: frame {:#x} is no frame range: FAILED",
            lend.frame
        );
        return;
    };
    const ROUNDS: u64 = 40_000;
    let started = now_ms();
    for i in 0..ROUNDS {
        // A new 2 MiB region each time (a new level-3 table), a new GiB every 512.
        let ipa = 0x1_0000_0000 + i * 0x20_0000;
        if let Err(status) = hypercall::mem_map(Slot::SELF_DOMAIN, RAM, ipa, page, rw) {
            println!("intruder: stage-2 tables DRAINED the kernel after {i} maps ({status:?})");
            return;
        }
        if let Err(status) = hypercall::mem_unmap(Slot::SELF_DOMAIN, ipa, 1) {
            println!("intruder: unmap at {ipa:#x}: FAILED ({status:?})");
            return;
        }
    }
    println!(
        "intruder: map and unmap one page at {ROUNDS} new addresses: ok (tables freed, {} ms)",
        now_ms() - started
    );
    // A child with a 16 KiB quota: two far-apart pages need four tables; the third pair
    // must be refused, and the intruder's own quota must not pay instead.
    if let Err(status) = hypercall::domain_create(CHILD_DOMAIN, 1, 16 * 1024) {
        println!("intruder: cannot create a child: FAILED ({status:?})");
        return;
    }
    let mut outcome = Ok(());
    for i in 0..3u64 {
        outcome = hypercall::mem_map(CHILD_DOMAIN, RAM, 0x1_0000_0000 + i * (1 << 30), page, rw);
        if outcome.is_err() {
            println!("intruder: far-apart pages mapped into the child before refusal: {i}");
            break;
        }
    }
    report(
        "map a third far-apart page into a child with a 16 KiB quota",
        outcome,
    );
}

fn greedy() {
    // Domain capabilities in slots 20.., event channels in pairs of slots 30..63.
    let mut domains = 0u16;
    let refusal = loop {
        match hypercall::domain_create(Slot(20 + domains), 1, 0) {
            Ok(_) => domains += 1,
            Err(status) => break Some(status),
        }
        if domains == 10 {
            break None;
        }
    };
    match refusal {
        Some(status) => {
            println!("intruder: create domains until refused: refused ({status:?}) after {domains}")
        }
        None => println!("intruder: create domains until refused: NOT REFUSED after {domains}"),
    }
    let mut channels = 0u16;
    let refusal = loop {
        let a = Slot(30 + 2 * channels);
        if a.0 + 1 >= 64 {
            break None;
        }
        match hypercall::evtchn_create(a, Slot(a.0 + 1)) {
            Ok(()) => channels += 1,
            Err(status) => break Some(status),
        }
    };
    match refusal {
        Some(status) => println!(
            "intruder: create event channels until refused: refused ({status:?}) after {channels}"
        ),
        None => {
            println!("intruder: create event channels until refused: NOT REFUSED after {channels}")
        }
    }
    println!("intruder: greedy ends; everything it created must end with it");
}

fn bystander() {
    wait_ms(1000);
    match hypercall::domain_create(Slot(50), 4, 0) {
        Ok(id) => println!("intruder: a bystander creates a domain (id {id}): ok"),
        Err(status) => {
            println!("intruder: a bystander cannot create a domain: FAILED ({status:?})")
        }
    }
    match hypercall::evtchn_create(Slot(51), Slot(52)) {
        Ok(()) => println!("intruder: a bystander creates an event channel: ok"),
        Err(status) => {
            println!("intruder: a bystander cannot create an event channel: FAILED ({status:?})")
        }
    }
}

fn loud(info: &BootInfo) {
    // Terminal control sequences: a raw C1 CSI byte, and CSI encoded as UTF-8.
    let _ = hypercall::console_write(b"intruder: c1 \x9b31mraw \xc2\x9b32mutf8 \x1b[0m\n");
    let Some(mut lend) = Lendable::take(info) else {
        println!("intruder: no free RAM for the CPU_ON stub: FAILED");
        return;
    };
    // The kernel logs every domain's end, paid by its creator: 10,000 children created and
    // deleted at once (about 900 KB of log lines), with no console output in between.
    for i in 0..10_000u32 {
        let made = hypercall::domain_create(CHILD_DOMAIN, 1, 0)
            .and_then(|_| hypercall::cap_delete(CHILD_DOMAIN));
        if let Err(status) = made {
            println!("intruder: create and destroy a child failed after {i}: FAILED ({status:?})");
            return;
        }
    }
    wait_ms(2000);
    // One more log line, now within the budget: the kernel says what it dropped.
    let _ = hypercall::domain_create(CHILD_DOMAIN, 1, 0)
        .and_then(|_| hypercall::cap_delete(CHILD_DOMAIN));
    println!("intruder: created and destroyed 10,001 children");
    // The kernel logs every CPU_ON too (paid the same way).
    lend.write_code(0, &CPU_OFF_STUB);
    let mut started = 0;
    while started < 200 {
        match psci::cpu_on(1, lend.ipa, 0) {
            Ok(()) => started += 1,
            Err(psci::Error::AlreadyOn) => {}
            Err(e) => {
                println!("intruder: CPU_ON refused after {started}: FAILED ({e})");
                return;
            }
        }
    }
    println!("intruder: started vCPU 1 200 times");
    // 1.2 MB of console output.
    for i in 0..30_000u32 {
        let mut line = [b'.'; 40];
        line[..21].copy_from_slice(b"intruder: flood line ");
        let mut n = i;
        for d in (21..26).rev() {
            line[d] = b'0' + (n % 10) as u8;
            n /= 10;
        }
        line[26] = b' ';
        line[39] = b'\n';
        let _ = hypercall::console_write(&line);
    }
    wait_ms(2000);
    println!("intruder: loud done");
}

/// Registers one domain may write and another must not read back (markers and names).
const PLANTED: [(&str, u64); 6] = [
    ("DBGBVR0_EL1", 0x4000_1230),
    ("DBGWVR0_EL1", 0x4000_5678),
    ("CNTP_CVAL_EL0", 0x0123_4567_89AB_CDEF),
    ("PMSELR_EL0", 0b10101),
    ("PMCCFILTR_EL0", 1 << 27),
    ("PMUSERENR_EL0", 0b0101),
];

macro_rules! write_reg {
    ($reg:literal, $value:expr) => {
        // SAFETY: an EL1 system register write with no effect on memory; the hypervisor traps
        // it (and ignores it) or, if it does not, the register keeps the value (the leak under
        // test). The timer is written with its enable bit clear.
        unsafe { core::arch::asm!(concat!("msr ", $reg, ", {0}"), "isb", in(reg) $value, options(nostack)) }
    };
}

macro_rules! read_reg {
    ($reg:literal) => {{
        let value: u64;
        // SAFETY: an EL1 system register read with no side effect.
        unsafe { core::arch::asm!(concat!("mrs {0}, ", $reg), out(reg) value, options(nomem, nostack)) };
        value
    }};
}

fn plant() {
    write_reg!("dbgbvr0_el1", PLANTED[0].1);
    write_reg!("dbgwvr0_el1", PLANTED[1].1);
    write_reg!("cntp_ctl_el0", 0u64);
    write_reg!("cntp_cval_el0", PLANTED[2].1);
    write_reg!("pmselr_el0", PLANTED[3].1);
    write_reg!("pmccfiltr_el0", PLANTED[4].1);
    write_reg!("pmuserenr_el0", PLANTED[5].1);
    println!("intruder: planted markers in debug, PMU and EL1 physical-timer registers");
}

fn snoop() {
    let seen = [
        read_reg!("dbgbvr0_el1"),
        read_reg!("dbgwvr0_el1"),
        read_reg!("cntp_cval_el0"),
        read_reg!("pmselr_el0"),
        read_reg!("pmccfiltr_el0"),
        read_reg!("pmuserenr_el0"),
    ];
    for ((name, marker), value) in PLANTED.iter().zip(seen) {
        if value == *marker {
            println!("intruder: {name} holds what another domain wrote: LEAKED");
        } else {
            println!("intruder: read {name}: ok ({value:#x})");
        }
    }
    // An implementation-defined register: QEMU's Cortex-A72 has CBAR_EL1, the GIC's physical
    // address. HCR_EL2.TIDCP traps it on hardware; QEMU 7.2 does not implement that trap, so
    // what this prints depends on the emulator (docs/security.md), and is only reported.
    let cbar = read_reg!("s3_1_c15_c3_0");
    println!("intruder: read CBAR_EL1 (implementation-defined): {cbar:#x}");
    // The cycle counter, which would time the hypervisor's work for others.
    let cycles = read_reg!("pmccntr_el0");
    println!("intruder: read PMCCNTR_EL0: {cycles:#x}");
    // Set/way cache maintenance (level 1, set 0, way 0): must neither fault nor reach the
    // physical caches as an invalidate.
    let level1 = 0u64;
    // SAFETY: set/way cache maintenance from EL1; under Mica it traps and is performed as a
    // clean and invalidate, which loses no data.
    unsafe {
        core::arch::asm!("dc isw, {0}", "dc csw, {0}", "dc cisw, {0}", "dsb sy", in(reg) level1, options(nostack));
    }
    println!("intruder: dc isw, csw, cisw: ok (survived)");
}

fn main(info: BootInfo) -> ! {
    println!("intruder: started (arg {})", info.arg);
    match info.arg {
        0 => lifecycle(&info),
        1 => tables(&info),
        2 => greedy(),
        3 => loud(&info),
        4 => plant(),
        5 => snoop(),
        6 => bystander(),
        other => println!("intruder: unknown arg {other}"),
    }
    println!("intruder: done");
    mica_rt::exit()
}

mica_rt::entry!(main);
