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
        .mappings
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
    k.handle_exit(1, &Exit::Yield);
}

/// A domain created at run time boots Linux's way once its creator says so
/// (`domain_set_boot`), before its vCPUs start; never afterwards, never for itself.
#[test]
fn domain_set_boot_makes_a_created_domain_a_linux_domain() {
    use mica_abi::hypercall::{BOOT_LINUX, BOOT_MICA};
    use mica_abi::Rights;
    let (mut k, cpu) = builder();
    let r = call(
        &mut k,
        cpu,
        a::DomainCreate {
            dst: Slot(5),
            slots: Slot(16),
            quota: 64 * 1024,
        },
    );
    assert_eq!(status(r), Ok(()));
    let child = crate::domain::DomainId(r[1] as u16);
    let set = |k: &mut Kernel<MockHal>, domain: Slot, protocol: u64| {
        status(call(k, cpu, a::DomainSetBoot { domain, protocol }))
    };
    assert_eq!(set(&mut k, Slot(5), 2), Err(Status::InvalidArgument));
    assert_eq!(
        set(&mut k, Slot::SELF_DOMAIN, BOOT_LINUX),
        Err(Status::InsufficientRights)
    );
    assert_eq!(
        set(&mut k, Slot(9), BOOT_LINUX),
        Err(Status::InvalidCapability)
    );
    assert_eq!(set(&mut k, Slot(5), BOOT_LINUX), Ok(()));
    assert!(k.domain(child).unwrap().linux && k.domain(child).unwrap().uart.is_some());
    // RAM, a vCPU, and vCPU 0 starts: caches off, x0 = the tree, clock from now.
    let first = call(&mut k, cpu, a::CapIdentify { slot: Slot(0) })[2];
    let rwx = Rights::READ | Rights::WRITE | Rights::EXECUTE;
    let derive = a::CapDerive {
        src: Slot(0),
        dst: Slot(6),
        rights: rwx,
        first_frame: first + 8,
        frame_count: 8,
    };
    assert_eq!(status(call(&mut k, cpu, derive)), Ok(()));
    let map = a::MemMap {
        domain: Slot(5),
        memory: Slot(6),
        ipa: layout::RAM_BASE,
        first_frame: first + 8,
        frame_count: 8,
        perms: rwx,
    };
    assert_eq!(status(call(&mut k, cpu, map)), Ok(()));
    let vcpu = a::VcpuCreate {
        domain: Slot(5),
        dst: Slot(7),
        index: Slot(0),
        cpu: 1,
    };
    assert_eq!(status(call(&mut k, cpu, vcpu)), Ok(()));
    k.hal.now.set(9_000);
    let start = a::VcpuStart {
        vcpu: Slot(7),
        entry: layout::RAM_BASE,
        arg: layout::RAM_BASE + 0x7000,
    };
    assert_eq!(status(call(&mut k, cpu, start)), Ok(()));
    let v = k.domain(child).unwrap().vcpus[0];
    let c = &k.vcpu(v).unwrap().context;
    assert_eq!(c.regs, [layout::RAM_BASE + 0x7000, 0, 0, 0]);
    assert!(!c.cacheable);
    assert_eq!(c.clock_base, 9_000);
    // Started: too late to change; a domain of the system image keeps its record's.
    assert_eq!(set(&mut k, Slot(5), BOOT_MICA), Err(Status::WrongState));
    assert!(k.domain(child).unwrap().linux);
}

#[test]
fn a_domain_of_the_system_image_keeps_its_boot_protocol() {
    use mica_abi::hypercall::BOOT_MICA;
    let mut k = linux_kernel();
    run(&mut k, 0).unwrap();
    let info = boot_info(&k, id_of(&k, "ctl"));
    let linux = Slot(info.cap("dom-linux").unwrap().slot);
    let r = call(
        &mut k,
        0,
        a::DomainSetBoot {
            domain: linux,
            protocol: BOOT_MICA,
        },
    );
    assert_eq!(status(r), Err(Status::WrongState));
    assert!(k.domain(id_of(&k, "linux")).unwrap().linux);
}
