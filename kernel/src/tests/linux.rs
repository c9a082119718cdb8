//! Linux domains (`FLAG_LINUX`): started by the arm64 boot protocol, an emulated PL011 fed
//! through `console_input`, a clock that starts at their boot.

use mica_abi::args::{self as a, Slot};
use mica_abi::layout::{self, DomainLayout};
use mica_abi::sysimage;
use mica_abi::Status;

use crate::kernel::{Exit, Kernel};
use crate::memmap::{PhysRange, RangeSet};
use crate::psci;
use crate::uart::{int, reg};

use crate::testing::*;

/// A control domain on CPU 0 and a two-vCPU Linux domain on CPU 1 (its device tree "at"
/// `arg`), booted at t = 5 s.
fn linux_kernel() -> Box<Kernel<MockHal>> {
    let mut ctl = dom("ctl");
    ctl.flags = sysimage::FLAG_CONTROL;
    ctl.cpus[0] = 0;
    let mut linux = dom("linux");
    linux.flags = sysimage::FLAG_LINUX;
    linux.vcpus = 2;
    linux.cpus[..2].copy_from_slice(&[1, 1]);
    linux.arg = layout::RAM_BASE + 0x8000;
    let mut k = Box::new(Kernel::new(MockHal::default()));
    let mut free: RangeSet<4> = RangeSet::new();
    free.insert(PhysRange {
        start: 0x4000_0000,
        end: 0x4800_0000,
    })
    .unwrap();
    k.frames.add_ranges(&free);
    k.hal.now.set(5_000_000_000);
    k.load_system(image(&[ctl, linux])).unwrap();
    k
}

#[test]
fn a_linux_domain_enters_with_its_device_tree_in_x0_and_no_boot_info_page() {
    let mut k = linux_kernel();
    let l = id_of(&k, "linux");
    let v0 = k.domain(l).unwrap().vcpus[0];
    let c = &k.vcpu(v0).unwrap().context;
    assert_eq!(c.regs, [layout::RAM_BASE + 0x8000, 0, 0, 0]);
    assert!(!c.cacheable, "Linux starts with its caches off");
    assert_eq!(c.clock_base, 5_000_000_000, "its clock starts at its boot");
    // Its last page is plain RAM: nothing was written there.
    let d = k.domain(l).unwrap();
    let last = d
        .translate(DomainLayout::new(256 * 1024).boot_page())
        .unwrap();
    let memory = k.hal.memory.borrow();
    assert!((last..last + 4096).all(|pa| !memory.contains_key(&pa)));
    drop(memory);
    // A Mica domain's clock is the system's.
    let ctl = k.domain(id_of(&k, "ctl")).unwrap().vcpus[0];
    assert_eq!(k.vcpu(ctl).unwrap().context.clock_base, 0);
    // A secondary vCPU started through PSCI shares the domain's clock.
    assert_eq!(run(&mut k, 1), Some(v0));
    let r = raw(
        &mut k,
        1,
        mica_abi::psci::CPU_ON_64,
        [1, layout::RAM_BASE, 7, 0, 0, 0],
    );
    assert_eq!(r[0], psci::ret::SUCCESS);
    let v1 = k.domain(l).unwrap().vcpus[1];
    assert_eq!(k.vcpu(v1).unwrap().context.clock_base, 5_000_000_000);
    assert_eq!(k.vcpu(v1).unwrap().context.regs, [7, 0, 0, 0]);
}

#[test]
fn console_input_reaches_a_linux_domains_uart_and_nothing_else() {
    let mut k = linux_kernel();
    let l = id_of(&k, "linux");
    assert!(k.domain(id_of(&k, "ctl")).unwrap().uart.is_none());
    assert!(k.domain(l).unwrap().uart.is_some());
    run(&mut k, 0).unwrap();
    let info = boot_info(&k, id_of(&k, "ctl"));
    let linux = Slot(info.cap("dom-linux").unwrap().slot);
    // The guest unmasks the receive interrupts; then 40 bytes come: 32 fit.
    k.domain_mut(l)
        .unwrap()
        .uart
        .as_mut()
        .unwrap()
        .write(reg::IMSC, int::RX | int::RT);
    let text = [b'x'; 40];
    let r = call(&mut k, 0, a::ConsoleInput::new(linux, &text[..32]));
    assert_eq!((status(r), r[1]), (Ok(()), 32));
    let r = call(&mut k, 0, a::ConsoleInput::new(linux, &text[32..]));
    assert_eq!(
        (status(r), r[1]),
        (Ok(()), 0),
        "the FIFO is full until the guest reads"
    );
    let uart = k.domain_mut(l).unwrap().uart.as_mut().unwrap();
    assert!(uart.line());
    assert_eq!(uart.read(reg::DR), u32::from(b'x'));
    // Its own console, a Mica domain's, a bad length: refused, nothing changed.
    let r = call(&mut k, 0, a::ConsoleInput::new(Slot::SELF_DOMAIN, b"x"));
    assert_eq!(status(r), Err(Status::InsufficientRights));
    let mut bad = a::ConsoleInput::new(linux, b"x");
    bad.len = 33;
    assert_eq!(status(call(&mut k, 0, bad)), Err(Status::InvalidArgument));
    let empty = Slot(info.cap("free-memory").unwrap().slot);
    assert_ne!(
        status(call(&mut k, 0, a::ConsoleInput::new(empty, b"x"))),
        Ok(())
    );
}

#[test]
fn a_linux_domain_that_cannot_read_its_console_gets_no_input_from_a_mica_domain() {
    let mut k = linux_kernel();
    // The Linux domain itself has no Domain capability over anyone, itself included.
    let l = id_of(&k, "linux");
    let v0 = k.domain(l).unwrap().vcpus[0];
    assert_eq!(run(&mut k, 1), Some(v0));
    let r = call(&mut k, 1, a::ConsoleInput::new(Slot(0), b"x"));
    assert_ne!(status(r), Ok(()));
    k.handle_exit(1, Exit::Yield);
}
