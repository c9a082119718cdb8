//! Bringing the machine up: from the entry code to every CPU idling with a running tick.
//!
//! The boot CPU reads the device tree, builds and enables the EL2 map, starts the console,
//! checks that the machine has what Mica needs (naming what is missing if not), divides
//! RAM between the kernel heap and the frame allocator, brings up the GIC and its tick,
//! starts every other CPU through PSCI `CPU_ON`, prints the banner and idles. Fatal errors
//! are reported and then, unless `mica.on_fatal=halt`, the machine is powered off.

use core::fmt;
use core::sync::atomic::Ordering;

use buddy_system_allocator::LockedHeap;
use mica_kernel::bootargs::{BootArgs, OnFatal, SelfTest};
use mica_kernel::frames::BootMemory;
use mica_kernel::memmap::PhysRange;
use mica_kernel::platform::Platform;

use super::cpu::{self, CPUS, MAX_CPUS};
use super::hal::{KERNEL, KICK_SGI};
use super::state::{BootState, BOOT_COUNTER, STATE};
use super::sysreg::{counter, counter_hz, mpidr_affinity};
use super::{console, gic, mmu::El2Map, psci, timer};
use crate::pagetable::MemoryKind;
use crate::println;
use crate::vgic::MAINTENANCE_PPI;

/// The kernel heap (carved from RAM at boot).
#[global_allocator]
static HEAP: LockedHeap<33> = LockedHeap::empty();

/// QEMU `virt`'s PL011, used only when the device tree cannot be read at all, so that
/// the failure can still be reported on the emulator's console.
const FALLBACK_UART: u64 = 0x0900_0000;
/// The largest device tree Mica accepts (Linux's limit too).
const MAX_DTB_SIZE: u32 = 2 << 20;

extern "C" {
    static __image_start: u8;
    static __image_end: u8;
    fn mica_secondary_entry();
}

/// The hypervisor's own footprint (text to BSS).
fn hypervisor_range() -> PhysRange {
    // Only the addresses of the linker-script symbols are taken, never their contents.
    let (start, end) = (
        &raw const __image_start as u64,
        &raw const __image_end as u64,
    );
    PhysRange { start, end }
}

/// Everything the boot loader loaded: the hypervisor and, after it, the system image
/// `mica build` appended (the Image header's `image_size`, offset 16, covers both).
fn image_range() -> PhysRange {
    let own = hypervisor_range();
    // SAFETY: the Image header is the first 64 bytes of the loaded image, directly
    // addressable (MMU off) or identity-mapped; offset 16 is the little-endian image_size.
    let size = unsafe { core::ptr::read_volatile((own.start + 16) as *const u64) };
    let end = own.start.checked_add(size).unwrap_or(own.end);
    PhysRange {
        start: own.start,
        end: end.max(own.end),
    }
}

/// The system image after the hypervisor, if `mica build` appended one.
fn system_image() -> Option<&'static [u8]> {
    let own = hypervisor_range();
    let len = image_range().end.checked_sub(own.end)?;
    if len == 0 {
        return None;
    }
    // SAFETY: `[own.end, own.end + len)` was loaded by the boot loader as part of the image,
    // lies in RAM kept out of the frame allocator (it is inside `image_range`), and is never
    // written.
    Some(unsafe { core::slice::from_raw_parts(own.end as *const u8, len as usize) })
}

/// Reads the device tree header at `pa` (MMU off, so `pa` is directly addressable) and
/// returns the whole blob if it looks like one.
fn dtb_blob(pa: u64) -> Option<&'static [u8]> {
    if pa == 0 || !pa.is_multiple_of(8) {
        return None;
    }
    // SAFETY: x0 from the boot loader is the DTB's address by the arm64 boot protocol; the
    // MMU is off, so any physical address is accessible. The header's first two big-endian
    // words are the magic and the total size.
    let (magic, size) = unsafe {
        (
            u32::from_be(core::ptr::read_volatile(pa as *const u32)),
            u32::from_be(core::ptr::read_volatile((pa + 4) as *const u32)),
        )
    };
    if magic != 0xD00D_FEED || !(40..=MAX_DTB_SIZE).contains(&size) {
        return None;
    }
    // SAFETY: the blob is `size` bytes at `pa`, lies in memory the boot loader reserved for
    // it, is never written, and is kept out of the frame allocator, so it lives forever.
    Some(unsafe { core::slice::from_raw_parts(pa as *const u8, size as usize) })
}

/// The boot CPU's entry when the boot loader started Mica at another exception level than
/// EL2 (`entry.rs`: MMU off, CPU 0's stack, BSS zeroed, nothing of EL2 set up; `current_el`
/// is CurrentEL). Mica cannot run there: it says so on the UART the device tree names (QEMU
/// virt's if the tree names none or cannot be read), then powers off through the tree's PSCI
/// conduit, or stops here if it gives none.
#[no_mangle]
extern "C" fn mica_wrong_el_main(dtb_pa: u64, current_el: u64) -> ! {
    let platform = dtb_blob(dtb_pa).and_then(|blob| Platform::parse(blob, dtb_pa).ok());
    let uart = platform
        .as_ref()
        .and_then(|p| p.uart)
        .map_or(FALLBACK_UART, |u| u.start) as usize;
    console::early_line(uart, format_args!(""));
    console::early_line(
        uart,
        format_args!(
            "mica: fatal: Mica {} was started at EL{}, and runs only at EL2 (the boot loader must enter it in hypervisor mode; QEMU: -machine virt,virtualization=on)",
            mica_abi::VERSION,
            (current_el >> 2) & 3
        ),
    );
    if let Some(conduit) = platform.and_then(|p| p.psci) {
        console::early_line(uart, format_args!("mica: powering off"));
        let e = psci::system_off_via(conduit);
        console::early_line(uart, format_args!("mica: PSCI SYSTEM_OFF failed: {e:?}"));
    }
    cpu::halt()
}

/// The boot CPU's Rust entry, called by `entry.rs` with the MMU off.
#[no_mangle]
extern "C" fn mica_primary_main(dtb_pa: u64) -> ! {
    BOOT_COUNTER.store(counter(), Ordering::Relaxed);
    CPUS[0].hw_id.store(mpidr_affinity(), Ordering::Relaxed);
    let image = image_range();

    let Some(blob) = dtb_blob(dtb_pa) else {
        fallback_console(image);
        fatal(
            OnFatal::PowerOff,
            format_args!("no flattened device tree at {dtb_pa:#x} (x0 at entry): bad magic, size or alignment"),
        );
    };
    let platform = match Platform::parse(blob, dtb_pa) {
        Ok(p) => p,
        Err(e) => {
            fallback_console(image);
            fatal(
                OnFatal::PowerOff,
                format_args!("cannot read the device tree at {dtb_pa:#x}: {e}"),
            );
        }
    };
    let args = BootArgs::parse(platform.bootargs);

    // The EL2 map: RAM first (as large blocks), then the image and tree (absorbed by RAM
    // blocks if inside), then the devices.
    let mut map = El2Map::new();
    let mut map_error = None;
    for r in platform.ram.iter() {
        if let Err(e) = map.identity(r.start, r.end, MemoryKind::Normal) {
            map_error.get_or_insert((r, e));
        }
    }
    for r in [image, platform.dtb] {
        if let Err(e) = map.identity(r.start, r.end, MemoryKind::Normal) {
            map_error.get_or_insert((r, e));
        }
    }
    let uart = platform.uart.map(|u| u.start).unwrap_or(FALLBACK_UART);
    for r in platform.device_ranges().chain([PhysRange {
        start: uart,
        end: uart + 0x1000,
    }]) {
        if let Err(e) = map.identity(r.start, r.end, MemoryKind::Device) {
            map_error.get_or_insert((r, e));
        }
    }
    map.activate();
    console::init(uart as usize);

    println!("");
    println!(
        "mica: Mica {} starting at EL2 on cpu 0 (MPIDR {:#x})",
        mica_abi::VERSION,
        mpidr_affinity()
    );
    if platform.uart.is_none() {
        println!("mica: warning: no PL011 in the device tree; console on {FALLBACK_UART:#x} (QEMU virt) as a guess");
    }
    if let Some((r, e)) = map_error {
        fatal(
            args.on_fatal,
            format_args!("cannot map {r} into the EL2 address space: {e:?}"),
        );
    }
    report_platform(&platform, &args);
    if let Err(missing) = platform.check_required() {
        fatal(args.on_fatal, format_args!("{missing}"));
    }

    let plan = match BootMemory::plan(&platform, image) {
        Ok(p) => p,
        Err(e) => fatal(args.on_fatal, format_args!("cannot divide RAM: {e}")),
    };
    // SAFETY: the heap range is free RAM (not the image, the tree or a reserved region),
    // mapped normal and writable in the EL2 map, and given to nothing else.
    unsafe {
        HEAP.lock()
            .init(plan.heap.start as usize, plan.heap.size() as usize)
    };
    KERNEL
        .lock()
        .frames
        .add_ranges_by_node(&plan.free, &platform);
    println!(
        "mica: memory: {} MiB RAM, {} KiB kernel heap at {:#x}, {} MiB in {} free ranges for the frame allocator",
        plan.ram_total >> 20,
        plan.heap.size() >> 10,
        plan.heap.start,
        plan.free.total() >> 20,
        plan.free.len()
    );

    let timer_info = platform.timer.unwrap_or(mica_kernel::platform::TimerInfo {
        el1_physical: 30,
        virtual_timer: 27,
        el2_physical: 26,
        from_tree: false,
    });
    let state = STATE.call_once(|| BootState {
        platform,
        args,
        tick_intid: timer_info.el2_physical,
        vtimer_intid: timer_info.virtual_timer,
    });

    let gic_info = state
        .platform
        .gic
        .as_ref()
        .expect("checked by check_required");
    gic::init_distributor(gic_info.distributor.start as usize);
    start_cpu_services(0);
    CPUS[0].online.store(true, Ordering::Release);
    let boot_node = state
        .platform
        .cpus
        .iter()
        .find(|c| c.hw_id == CPUS[0].hw_id.load(Ordering::Relaxed));
    KERNEL.lock().set_cpu_node(
        0,
        boot_node.and_then(|c| c.numa_node).unwrap_or(0).min(255) as u8,
    );
    start_secondaries(state);

    let managed = KERNEL.lock().frames.managed_bytes();
    println!(
        "Mica {} (aarch64 EL2): {} CPU{} online, {} MiB RAM managed, model \"{}\"",
        mica_abi::VERSION,
        cpu::online_count(),
        if cpu::online_count() == 1 { "" } else { "s" },
        managed >> 20,
        state.platform.model
    );
    report_numa();
    if state.args.selftest == Some(SelfTest::El2Fault) {
        let bad = 0xDEAD_0000_0000u64;
        println!("mica: self-test: reading unmapped address {bad:#x} at EL2");
        // SAFETY: deliberately unsound read of an unmapped address, asked for by the
        // `mica.selftest=el2-fault` boot argument, to show the exception report; the
        // translation fault is taken before any value is produced.
        let _ = unsafe { core::ptr::read_volatile(bad as *const u64) };
    }
    load_system(state);
    super::run::run(0)
}

/// With more than one NUMA node: which CPUs and how much RAM each node has.
fn report_numa() {
    let k = KERNEL.lock();
    let nodes = k.frames.node_count();
    if nodes < 2 {
        return;
    }
    for node in 0..nodes {
        let mut cpus: heapless::Vec<usize, MAX_CPUS> = heapless::Vec::new();
        for (c, state) in CPUS.iter().enumerate() {
            if state.online.load(Ordering::Acquire) && k.cpu_node(c) as usize == node {
                let _ = cpus.push(c);
            }
        }
        println!(
            "mica: NUMA node {node}: CPUs {:?}, {} MiB RAM managed",
            cpus.as_slice(),
            k.frames.managed_bytes_on(node) >> 20
        );
    }
}

/// Creates the domains of the system image appended to the hypervisor, if there is one.
fn load_system(state: &BootState) {
    let Some(blob) = system_image() else {
        println!("mica: no system image: nothing to run");
        return;
    };
    match mica_abi::sysimage::SystemImage::parse(blob) {
        Ok(image) => {
            println!(
                "mica: system image: {} domain(s), {} KiB",
                image.domains().len(),
                image.size() >> 10
            );
            let mut k = KERNEL.lock();
            k.console_timestamps = state.args.console_timestamps;
            let own = hypervisor_range();
            k.set_image_range(PhysRange {
                start: own.end,
                end: own.end + blob.len() as u64,
            });
            if let Err(e) = k.load_system(image) {
                drop(k);
                fatal(
                    state.args.on_fatal,
                    format_args!("cannot start the system: {e}"),
                );
            }
        }
        Err(e) => fatal(state.args.on_fatal, format_args!("{e}")),
    }
}

fn fallback_console(image: PhysRange) {
    let mut map = El2Map::new();
    let _ = map.identity(image.start, image.end, MemoryKind::Normal);
    let _ = map.identity(FALLBACK_UART, FALLBACK_UART + 0x1000, MemoryKind::Device);
    map.activate();
    console::init(FALLBACK_UART as usize);
}

fn report_platform(p: &Platform<'_>, args: &BootArgs<'_>) {
    println!(
        "mica: device tree at {:#x} ({} bytes), model \"{}\"",
        p.dtb.start,
        p.dtb.size(),
        p.model
    );
    for r in p.ram.iter() {
        println!("mica: RAM      {r} {} MiB", r.size() >> 20);
    }
    for r in p.reserved.iter() {
        println!("mica: reserved {r}");
    }
    if let Some(g) = &p.gic {
        println!(
            "mica: GICv3 distributor {:#x}, {} redistributor region(s) from {:#x}",
            g.distributor.start,
            g.redistributors.len(),
            g.redistributors.first().map_or(0, |r| r.start)
        );
    }
    if let Some(t) = &p.timer {
        println!(
            "mica: timer INTIDs: EL2 physical {}, virtual {}{}",
            t.el2_physical,
            t.virtual_timer,
            if t.from_tree {
                ""
            } else {
                " (architected defaults)"
            }
        );
    }
    println!(
        "mica: {} CPU(s) in the device tree",
        p.cpus.len() + p.cpus_ignored
    );
    if p.cpus_ignored > 0 {
        let verb = if p.cpus_ignored == 1 { "stays" } else { "stay" };
        println!(
            "mica: warning: only the first {MAX_CPUS} CPUs are used; {} {verb} off",
            p.cpus_ignored
        );
    }
    if !p.unused.is_empty() {
        let mut line = heapless::String::<200>::new();
        for (i, u) in p.unused.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            let ok = if u.count > 1 {
                fmt::write(&mut line, format_args!("{sep}{} ({})", u.name, u.count))
            } else {
                fmt::write(&mut line, format_args!("{sep}{}", u.name))
            };
            if ok.is_err() {
                let _ = line.push_str(", ...");
                break;
            }
        }
        println!("mica: device tree nodes not used: {line}");
    }
    if !p.bootargs.is_empty() {
        println!("mica: boot arguments: {}", p.bootargs);
    }
    for word in args.rejected.iter() {
        println!("mica: warning: boot argument not understood, ignored: {word}");
    }
}

/// Per-CPU interrupt controller and tick set-up.
fn start_cpu_services(me: usize) {
    let Some(state) = STATE.get() else {
        cpu::halt()
    };
    let regions: heapless::Vec<(usize, usize), 4> = state
        .platform
        .gic
        .iter()
        .flat_map(|g| g.redistributors.iter())
        .map(|r| (r.start as usize, r.size() as usize))
        .collect();
    if let Err(e) = gic::init_cpu(me, mpidr_affinity(), &regions) {
        println!("mica: cpu {me}: GIC redistributor set-up failed: {e:?}; halting this CPU");
        cpu::halt();
    }
    // Stage-2 translation control, the same for every domain (tables differ per VTTBR).
    super::sysreg::write_sysreg!("vtcr_el2", super::stage2::vtcr());
    // What a guest's EL1 traps (debug, PMU, physical timer, ...): crate::traps.
    super::el2::configure();
    gic::enable_private(me, state.tick_intid);
    gic::enable_private(me, KICK_SGI);
    gic::enable_private(me, state.vtimer_intid);
    gic::enable_private(me, MAINTENANCE_PPI);
    // The bring-up tick: one timer interrupt per CPU shows the timer and GIC work.
    let period = counter_hz() / u64::from(state.args.tick_hz);
    timer::housekeeping_at(me, counter() + period);
    timer::program(me, None);
}

fn start_secondaries(state: &BootState) {
    let boot_id = CPUS[0].hw_id.load(Ordering::Relaxed);
    let entry = mica_secondary_entry as *const () as u64;
    let mut started = 0usize;
    for (idx, c) in (1..MAX_CPUS).zip(state.platform.cpus.iter().filter(|c| c.hw_id != boot_id)) {
        CPUS[idx].hw_id.store(c.hw_id, Ordering::Release);
        KERNEL
            .lock()
            .set_cpu_node(idx, c.numa_node.unwrap_or(0).min(255) as u8);
        match psci::cpu_on(c.hw_id, entry, idx as u64) {
            Ok(()) => started += 1,
            Err(e) => println!(
                "mica: warning: PSCI CPU_ON for MPIDR {:#x} failed: {e:?}",
                c.hw_id
            ),
        }
    }
    // Wait up to a second for them to report online.
    let deadline = counter() + counter_hz();
    while cpu::online_count() < started + 1 && counter() < deadline {
        core::hint::spin_loop();
    }
    if cpu::online_count() < started + 1 {
        println!(
            "mica: warning: {} of {started} started CPUs did not come online",
            started + 1 - cpu::online_count()
        );
    }
}

/// A secondary CPU's Rust entry, called by `entry.rs` with its MMU on and stack set.
#[no_mangle]
extern "C" fn mica_secondary_main(idx: u64) -> ! {
    let me = idx as usize;
    start_cpu_services(me);
    CPUS[me].online.store(true, Ordering::Release);
    println!("mica: cpu {me} online (MPIDR {:#x})", mpidr_affinity());
    super::run::run(me)
}

/// Reports a fatal error and powers off (or halts, as the boot arguments ask).
pub fn fatal(on_fatal: OnFatal, what: fmt::Arguments<'_>) -> ! {
    println!("mica: fatal: {what}");
    if on_fatal == OnFatal::PowerOff {
        println!("mica: powering off");
        let e = psci::system_off();
        println!("mica: PSCI SYSTEM_OFF failed: {e:?}; halting");
    } else {
        println!("mica: halting (mica.on_fatal=halt)");
    }
    cpu::halt()
}

/// The panic path: report where, then behave as for any fatal error.
pub fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let on_fatal = STATE.get().map_or(OnFatal::PowerOff, |s| s.args.on_fatal);
    fatal(
        on_fatal,
        format_args!("kernel panic on cpu {}: {info}", cpu::current()),
    )
}
