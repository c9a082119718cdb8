//! Host tests of the kernel core against a mock HAL: boot instantiation, every hypercall's
//! decode/check/perform, PSCI, faults, and the domain lifecycle.

use std::vec::Vec;

use mica_abi::hypercall::{pack_console_bytes, Call, SELF_DOMAIN, VENDOR_HYP_BASE};
use mica_abi::sysimage;
use mica_abi::{ObjectType, Rights, Status};

use crate::domain::DomainId;
use crate::hal::Hal;
use crate::hypercall::{decode, Request};
use crate::kernel::{Exit, Kernel};
use crate::memmap::{PhysRange, RangeSet};
use crate::psci;
use crate::vcpu::{VcpuId, VcpuState};

use crate::testing::*;

// ----- Boot -----------------------------------------------------------------------------------

#[test]
fn boot_creates_domains_maps_ram_loads_images_and_starts_vcpu0() {
    let mut a = dom("alpha");
    a.cpus[0] = 1;
    a.arg = 42;
    let k = kernel(&[a, dom("beta")]);
    let alpha = k.domain(id_of(&k, "alpha")).unwrap();
    assert_eq!(alpha.ram.iter().map(|r| r.size()).sum::<u64>(), 256 * 1024);
    assert_eq!(alpha.stage2.pages.len(), 64);
    let pa = alpha.translate(sysimage::DOMAIN_RAM_BASE).unwrap();
    assert_eq!(k.hal.memory.borrow().get(&pa), Some(&1));
    assert_eq!(k.hal.memory.borrow().get(&(pa + 4)), Some(&b'c'));
    let v0 = k.vcpu(alpha.vcpus[0]).unwrap();
    assert_eq!(v0.cpu, 1);
    assert_eq!(v0.state, VcpuState::Runnable);
    assert_eq!(v0.context.entry, sysimage::DOMAIN_RAM_BASE);
    let info_ipa = sysimage::DOMAIN_RAM_BASE + 256 * 1024 - 4096;
    assert_eq!(
        v0.context.regs,
        [42, sysimage::DOMAIN_RAM_BASE, 256 * 1024 - 4096, info_ipa]
    );
    // The boot-info page is in the last page of RAM.
    let info_pa = alpha.translate(info_ipa).unwrap();
    let magic: Vec<u8> = (0..8)
        .map(|i| *k.hal.memory.borrow().get(&(info_pa + i)).unwrap_or(&0))
        .collect();
    assert_eq!(magic, b"MICABOOT");
    assert!(v0.context.cacheable);
    // The two domains got disjoint frames.
    let beta = k.domain(id_of(&k, "beta")).unwrap();
    assert!(!alpha
        .ram
        .iter()
        .any(|a| beta.ram.iter().any(|b| a.overlaps(b))));
    assert!(k.hal.console.borrow().contains("domain alpha (id"));
}

#[test]
fn a_domain_that_does_not_fit_is_reported_and_the_rest_start() {
    let mut huge = dom("huge");
    huge.kib = 1 << 20; // 1 GiB, more than the 64 MiB of RAM
    let k = kernel(&[huge, dom("small")]);
    assert!(k
        .hal
        .console
        .borrow()
        .contains("cannot create domain huge: out of memory"));
    assert!(k.domains().any(|d| d.name() == "small"));
    assert!(!k.domains().any(|d| d.name() == "huge"));
}

// ----- Scheduling -----------------------------------------------------------------------------

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

#[test]
fn wfi_blocks_until_the_vcpu_is_woken() {
    let mut k = kernel(&[dom("a")]);
    let cpu = k
        .vcpu(k.domain(id_of(&k, "a")).unwrap().vcpus[0])
        .unwrap()
        .cpu;
    let v = run(&mut k, cpu).unwrap();
    k.handle_exit(cpu, Exit::WaitForInterrupt);
    assert_eq!(run(&mut k, cpu), None);
    assert_eq!(k.vcpu(v).unwrap().state, VcpuState::Blocked);
    k.wake(v);
    assert_eq!(run(&mut k, cpu), Some(v));
    // A wake-up that arrives first makes the next WFI return at once.
    k.wake(v);
    k.handle_exit(cpu, Exit::WaitForInterrupt);
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
    k.handle_exit(cpu, Exit::WaitForInterrupt);
    assert_eq!(run(&mut k, cpu), None);
    k.interrupt_vcpu(v);
    assert_eq!(k.vcpu(v).unwrap().state, VcpuState::Runnable);
    assert_eq!(run(&mut k, cpu), Some(v));
    // An unknown vCPU is ignored.
    k.interrupt_vcpu(VcpuId(63));
}

// ----- Hypercalls: decode ---------------------------------------------------------------------

#[test]
fn decode_rejects_malformed_arguments() {
    assert_eq!(
        decode(Call::CapIdentify, [0x1_0003, 0, 0, 0, 0, 0]),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        decode(Call::ConsoleWrite, [41, 0, 0, 0, 0, 0]),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        decode(Call::CapDerive, [0, 1, 1 << 20, 0, 0, 0]),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        decode(Call::CapDerive, [0, 1, 1 << 40, 0, 0, 0]),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        decode(Call::MemMap, [SELF_DOMAIN, 0, 0x4000_0001, 0, 1, 1]),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        decode(Call::MemMap, [SELF_DOMAIN, 0, 0x4000_0000, 0, 0, 1]),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        decode(Call::MemMap, [SELF_DOMAIN, 0, 0x4000_0000, 0, 1, 2]),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        decode(Call::MemMap, [SELF_DOMAIN, 0, 0x4000_0000, 0, u64::MAX, 1]),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        decode(Call::MemMap, [SELF_DOMAIN, 0, 1 << 40, 0, 1, 1]),
        Err(Status::OutOfRange)
    );
    assert_eq!(
        decode(Call::MemUnmap, [0x1_0000, 0x4000_0000, 1, 0, 0, 0]),
        Err(Status::InvalidArgument)
    );
    assert_eq!(decode(Call::Whoami, [u64::MAX; 6]), Ok(Request::Whoami));
}

#[test]
fn decode_never_panics_on_any_input() {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Bias towards small and boundary values.
        match x % 4 {
            0 => x % 8,
            1 => x,
            2 => 0x4000_0000 + (x % 16) * 0x1000,
            _ => u64::MAX - (x % 3),
        }
    };
    // Every call of the table, the same number of times (it used to pick `TABLE[n % 16]`,
    // which left 14 calls unfuzzed).
    for spec in mica_abi::hypercall::TABLE {
        for _ in 0..10_000 {
            let args = [next(), next(), next(), next(), next(), next()];
            let _ = decode(spec.call, args);
        }
    }
}

// ----- Hypercalls: check and perform, one test per call --------------------------------------

fn single(name: &'static str) -> (Box<Kernel<MockHal>>, usize) {
    let mut d = dom(name);
    d.cpus[0] = 0;
    let mut k = kernel(&[d]);
    run(&mut k, 0).unwrap();
    (k, 0)
}

#[test]
fn whoami_reports_domain_vcpu_and_slots() {
    let (mut k, cpu) = single("who");
    let id = id_of(&k, "who");
    assert_eq!(
        hvc(&mut k, cpu, Call::Whoami, [0; 6]),
        [0, id.0 as u64, 0, 64]
    );
}

#[test]
fn console_write_prints_whole_lines_with_the_domain_name_and_escapes_controls() {
    let (mut k, cpu) = single("talker");
    let text = b"hello \x1b[31mworld\n";
    let regs = pack_console_bytes(text);
    let r = hvc(
        &mut k,
        cpu,
        Call::ConsoleWrite,
        [
            text.len() as u64,
            regs[0],
            regs[1],
            regs[2],
            regs[3],
            regs[4],
        ],
    );
    assert_eq!(r[..2], [0, text.len() as u64]);
    assert!(k
        .hal
        .console
        .borrow()
        .contains("[talker] hello ?[31mworld\n"));
    let r = hvc(&mut k, cpu, Call::ConsoleWrite, [41, 0, 0, 0, 0, 0]);
    assert_eq!(status(r), Err(Status::InvalidArgument));
}

#[test]
fn yield_reschedules() {
    let mut a = dom("a");
    a.cpus[0] = 0;
    let mut b = dom("b");
    b.cpus[0] = 0;
    let mut k = kernel(&[a, b]);
    let first = run(&mut k, 0).unwrap();
    assert_eq!(status(hvc(&mut k, 0, Call::Yield, [0; 6])), Ok(()));
    assert_ne!(run(&mut k, 0), Some(first));
}

#[test]
fn cap_identify_describes_the_ram_capability_and_refuses_bad_slots() {
    let (mut k, cpu) = single("ident");
    let r = hvc(&mut k, cpu, Call::CapIdentify, [0; 6]);
    assert_eq!(status(r), Ok(()));
    assert_eq!(r[1] & 0xFF, ObjectType::Memory as u64);
    assert_eq!(r[3], 64, "256 KiB = 64 frames");
    assert_eq!(
        status(hvc(&mut k, cpu, Call::CapIdentify, [5, 0, 0, 0, 0, 0])),
        Err(Status::InvalidCapability)
    );
    assert_eq!(
        status(hvc(&mut k, cpu, Call::CapIdentify, [9999, 0, 0, 0, 0, 0])),
        Err(Status::InvalidCapability)
    );
    assert_eq!(
        status(hvc(
            &mut k,
            cpu,
            Call::CapIdentify,
            [0x1_0000, 0, 0, 0, 0, 0]
        )),
        Err(Status::InvalidArgument),
        "a forged selector with high bits set"
    );
}

#[test]
fn cap_derive_never_widens_and_mem_map_through_it_is_undone_by_revoke() {
    let (mut k, cpu) = single("deriver");
    let id = id_of(&k, "deriver");
    let first = hvc(&mut k, cpu, Call::CapIdentify, [0; 6])[2];
    let ro = Rights::READ.bits() as u64;
    // A read-only copy of the first 4 frames in slot 1.
    assert_eq!(
        status(hvc(&mut k, cpu, Call::CapDerive, [0, 1, ro, first, 4, 0])),
        Ok(())
    );
    // More rights than the copy has: refused.
    let rw = (Rights::READ | Rights::WRITE).bits() as u64;
    assert_eq!(
        status(hvc(&mut k, cpu, Call::CapDerive, [1, 2, rw, 0, 0, 0])),
        Err(Status::InsufficientRights)
    );
    // A range beyond the source: refused.
    assert_eq!(
        status(hvc(&mut k, cpu, Call::CapDerive, [1, 2, ro, first, 5, 0])),
        Err(Status::OutOfRange)
    );
    // Map the copy read-only at a fresh address; writable is refused.
    let ipa = 0x8000_0000u64;
    assert_eq!(
        status(hvc(
            &mut k,
            cpu,
            Call::MemMap,
            [SELF_DOMAIN, 1, ipa, first, 4, rw]
        )),
        Err(Status::InsufficientRights)
    );
    assert_eq!(
        status(hvc(
            &mut k,
            cpu,
            Call::MemMap,
            [SELF_DOMAIN, 1, ipa, first, 4, ro]
        )),
        Ok(())
    );
    assert_eq!(
        k.domain(id).unwrap().stage2.pages.get(&ipa).map(|p| p.1),
        Some(Rights::READ)
    );
    // Overlapping an existing mapping: refused.
    assert_eq!(
        status(hvc(
            &mut k,
            cpu,
            Call::MemMap,
            [SELF_DOMAIN, 1, ipa, first, 1, ro]
        )),
        Err(Status::SlotOccupied)
    );
    // Revoking slot 0's descendants removes slot 1 and unmaps what was mapped through it.
    let r = hvc(&mut k, cpu, Call::CapRevoke, [0; 6]);
    assert_eq!(status(r), Ok(()));
    assert!(r[1] >= 1);
    assert!(!k.domain(id).unwrap().stage2.pages.contains_key(&ipa));
    assert!(
        k.domain(id)
            .unwrap()
            .stage2
            .pages
            .contains_key(&sysimage::DOMAIN_RAM_BASE),
        "slot 0's own mapping stays"
    );
    assert_eq!(
        status(hvc(&mut k, cpu, Call::CapIdentify, [1, 0, 0, 0, 0, 0])),
        Err(Status::InvalidCapability)
    );
}

#[test]
fn cap_delete_unmaps_and_empties_the_slot() {
    let (mut k, cpu) = single("deleter");
    let id = id_of(&k, "deleter");
    assert_eq!(status(hvc(&mut k, cpu, Call::CapDelete, [0; 6])), Ok(()));
    assert!(k.domain(id).unwrap().stage2.pages.is_empty());
    assert_eq!(
        status(hvc(&mut k, cpu, Call::CapDelete, [0; 6])),
        Err(Status::InvalidCapability)
    );
}

#[test]
fn cap_grant_needs_a_domain_capability() {
    let (mut k, cpu) = single("granter");
    // Slot 0 is Memory, not Domain.
    let r = hvc(
        &mut k,
        cpu,
        Call::CapGrant,
        [0, 0, 3, Rights::READ.bits() as u64, 0, 0],
    );
    assert_eq!(status(r), Err(Status::InvalidCapability));
    let r = hvc(
        &mut k,
        cpu,
        Call::CapGrant,
        [0, 7, 3, Rights::READ.bits() as u64, 0, 0],
    );
    assert_eq!(status(r), Err(Status::InvalidCapability));
}

/// A domain on CPU 0 that holds scheduling authority (so it may place vCPUs on any CPU).
fn builder() -> (Box<Kernel<MockHal>>, usize) {
    let mut d = dom("builder");
    d.cpus[0] = 0;
    d.flags = sysimage::FLAG_SCHED_CONTROL;
    let mut k = kernel(&[d]);
    run(&mut k, 0).unwrap();
    (k, 0)
}

#[test]
fn vcpu_create_keeps_to_the_callers_cpus_without_scheduling_authority() {
    let (mut k, cpu) = single("pinned");
    let r = hvc(&mut k, cpu, Call::DomainCreate, [5, 16, 64 * 1024, 0, 0, 0]);
    assert_eq!(status(r), Ok(()));
    for (target, index) in [(SELF_DOMAIN, 1), (5, 0)] {
        assert_eq!(
            status(hvc(
                &mut k,
                cpu,
                Call::VcpuCreate,
                [target, 7, index, 1, 0, 0]
            )),
            Err(Status::InsufficientRights),
            "CPU 1 is outside its pinning (target {target:#x})"
        );
    }
    // ANY_CPU picks one of its own.
    let any = sysimage::ANY_CPU as u64;
    assert_eq!(
        status(hvc(&mut k, cpu, Call::VcpuCreate, [5, 7, 0, any, 0, 0])),
        Ok(())
    );
    let child = DomainId(r[1] as u16);
    let v = k.domain(child).unwrap().vcpus[0];
    assert_eq!(k.vcpu(v).unwrap().cpu, 0);
    assert_eq!(
        status(hvc(
            &mut k,
            cpu,
            Call::VcpuCreate,
            [SELF_DOMAIN, 8, 1, any, 0, 0]
        )),
        Ok(())
    );
    let me = id_of(&k, "pinned");
    let v1 = k.domain(me).unwrap().vcpus[1];
    assert_eq!(k.vcpu(v1).unwrap().cpu, 0);
}

#[test]
fn domain_create_vcpu_create_and_start_build_a_running_domain() {
    let (mut k, cpu) = builder();
    // Create a domain (its capability in slot 5), give it RAM from our slot 0 and map it.
    let r = hvc(&mut k, cpu, Call::DomainCreate, [5, 16, 64 * 1024, 0, 0, 0]);
    assert_eq!(status(r), Ok(()));
    let child = DomainId(r[1] as u16);
    let first = hvc(&mut k, cpu, Call::CapIdentify, [0; 6])[2];
    let rwx = (Rights::READ | Rights::WRITE | Rights::EXECUTE).bits() as u64;
    assert_eq!(
        status(hvc(
            &mut k,
            cpu,
            Call::CapDerive,
            [0, 6, rwx, first + 8, 8, 0]
        )),
        Ok(())
    );
    assert_eq!(
        status(hvc(
            &mut k,
            cpu,
            Call::MemMap,
            [5, 6, 0x4000_0000, first + 8, 8, rwx]
        )),
        Ok(())
    );
    assert_eq!(k.domain(child).unwrap().mappings.len(), 1);
    // A vCPU for it, on CPU 1.
    assert_eq!(
        status(hvc(&mut k, cpu, Call::VcpuCreate, [5, 7, 1, 0, 0, 0])),
        Err(Status::InvalidArgument),
        "index 0 first"
    );
    assert_eq!(
        status(hvc(&mut k, cpu, Call::VcpuCreate, [5, 7, 0, 9, 0, 0])),
        Err(Status::InvalidArgument),
        "no CPU 9"
    );
    assert_eq!(
        status(hvc(&mut k, cpu, Call::VcpuCreate, [5, 7, 0, 1, 0, 0])),
        Ok(())
    );
    assert_eq!(
        status(hvc(
            &mut k,
            cpu,
            Call::VcpuStart,
            [7, 0x9000_0000, 0, 0, 0, 0]
        )),
        Err(Status::InvalidArgument),
        "entry unmapped"
    );
    assert_eq!(
        status(hvc(
            &mut k,
            cpu,
            Call::VcpuStart,
            [7, 0x4000_0000, 3, 0, 0, 0]
        )),
        Ok(())
    );
    assert_eq!(
        status(hvc(
            &mut k,
            cpu,
            Call::VcpuStart,
            [7, 0x4000_0000, 3, 0, 0, 0]
        )),
        Err(Status::WrongState)
    );
    let v = run(&mut k, 1).unwrap();
    assert_eq!(k.vcpu(v).unwrap().domain, child);
    assert_eq!(k.vcpu(v).unwrap().context.regs[0], 3);
    // Pause, unpause, destroy through the Domain capability.
    assert_eq!(
        status(hvc(&mut k, cpu, Call::DomainUnpause, [5, 0, 0, 0, 0, 0])),
        Err(Status::WrongState)
    );
    assert_eq!(
        status(hvc(&mut k, cpu, Call::DomainPause, [5, 0, 0, 0, 0, 0])),
        Ok(())
    );
    assert_eq!(run(&mut k, 1), None, "a paused domain does not run");
    assert_eq!(
        status(hvc(&mut k, cpu, Call::DomainUnpause, [5, 0, 0, 0, 0, 0])),
        Ok(())
    );
    assert_eq!(run(&mut k, 1), Some(v));
    assert_eq!(
        status(hvc(&mut k, cpu, Call::DomainDestroy, [5, 0, 0, 0, 0, 0])),
        Ok(())
    );
    // Its vCPU was running on CPU 1: the domain goes once CPU 1 lets go of it.
    assert!(k.domain(child).is_some());
    assert_eq!(run(&mut k, 1), None);
    assert!(k.domain(child).is_none());
    assert_eq!(
        status(hvc(&mut k, cpu, Call::DomainDestroy, [5, 0, 0, 0, 0, 0])),
        Err(Status::InvalidCapability)
    );
    // Our own RAM is untouched: the child only borrowed it.
    assert!(k
        .domain(id_of(&k, "builder"))
        .unwrap()
        .stage2
        .pages
        .contains_key(&0x4000_0000));
}

#[test]
fn mem_unmap_removes_whole_mappings_only() {
    let (mut k, cpu) = single("unmapper");
    let id = id_of(&k, "unmapper");
    let r = hvc(
        &mut k,
        cpu,
        Call::MemUnmap,
        [SELF_DOMAIN, 0x4000_0000, 1, 0, 0, 0],
    );
    assert_eq!(
        status(r),
        Err(Status::InvalidArgument),
        "cutting the RAM mapping in two"
    );
    let r = hvc(
        &mut k,
        cpu,
        Call::MemUnmap,
        [SELF_DOMAIN, 0x4000_0000, 64, 0, 0, 0],
    );
    assert_eq!(r[..2], [0, 64]);
    assert!(k.domain(id).unwrap().stage2.pages.is_empty());
}

#[test]
fn unknown_calls_fail_with_a_status() {
    let (mut k, cpu) = single("prober");
    assert_eq!(
        status(raw(&mut k, cpu, VENDOR_HYP_BASE | 0x7FFF, [0; 6])),
        Err(Status::UnknownCall)
    );
    assert_eq!(
        raw(&mut k, cpu, 0x8600_0000, [0; 6])[0],
        psci::ret::NOT_SUPPORTED
    );
    assert_eq!(raw(&mut k, cpu, 0, [0; 6])[0], psci::ret::NOT_SUPPORTED);
    let v = k.current(cpu).unwrap();
    k.handle_exit(
        cpu,
        Exit::Smc {
            function: 0xC200_0000,
            args: [0; 6],
        },
    );
    assert_eq!(
        k.vcpu(v).unwrap().context.result.unwrap()[0],
        psci::ret::NOT_SUPPORTED
    );
}

// ----- PSCI -----------------------------------------------------------------------------------

#[test]
fn psci_cpu_on_affinity_info_and_cpu_off() {
    let mut d = dom("smp");
    d.vcpus = 2;
    d.cpus[0] = 0;
    d.cpus[1] = 1;
    let mut k = kernel(&[d]);
    run(&mut k, 0).unwrap();
    assert_eq!(raw(&mut k, 0, psci::VERSION, [0; 6])[0], psci::VERSION_1_1);
    assert_eq!(
        raw(&mut k, 0, psci::AFFINITY_INFO[1], [1, 0, 0, 0, 0, 0])[0],
        psci::ret::AFFINITY_OFF
    );
    assert_eq!(
        raw(&mut k, 0, psci::CPU_ON[1], [1, 0x9000_0000, 7, 0, 0, 0])[0],
        psci::ret::INVALID_ADDRESS
    );
    assert_eq!(
        raw(&mut k, 0, psci::CPU_ON[1], [5, 0x4000_0000, 7, 0, 0, 0])[0],
        psci::ret::INVALID_PARAMETERS
    );
    assert_eq!(
        raw(&mut k, 0, psci::CPU_ON[1], [1, 0x4000_0100, 7, 0, 0, 0])[0],
        psci::ret::SUCCESS
    );
    assert_eq!(
        raw(&mut k, 0, psci::CPU_ON[1], [1, 0x4000_0100, 7, 0, 0, 0])[0],
        psci::ret::ALREADY_ON
    );
    let v1 = run(&mut k, 1).unwrap();
    let ctx = &k.vcpu(v1).unwrap().context;
    assert_eq!((ctx.entry, ctx.regs[0], ctx.index), (0x4000_0100, 7, 1));
    assert_eq!(
        raw(&mut k, 0, psci::AFFINITY_INFO[1], [1, 0, 0, 0, 0, 0])[0],
        psci::ret::AFFINITY_ON
    );
    assert_eq!(raw(&mut k, 1, psci::CPU_OFF, [0; 6])[0], psci::ret::SUCCESS);
    assert_eq!(run(&mut k, 1), None);
    assert_eq!(
        raw(&mut k, 0, psci::AFFINITY_INFO[1], [1, 0, 0, 0, 0, 0])[0],
        psci::ret::AFFINITY_OFF
    );
    assert_eq!(
        raw(&mut k, 0, psci::FEATURES, [psci::CPU_ON[1], 0, 0, 0, 0, 0])[0],
        psci::ret::SUCCESS
    );
    assert_eq!(
        raw(
            &mut k,
            0,
            psci::FEATURES,
            [psci::CPU_SUSPEND[1], 0, 0, 0, 0, 0]
        )[0],
        psci::ret::NOT_SUPPORTED
    );
}

#[test]
fn system_off_via_smc_ends_only_that_domain_and_scrubs_its_memory() {
    let mut a = dom("victim");
    a.cpus[0] = 0;
    let mut b = dom("bystander");
    b.cpus[0] = 1;
    let mut k = kernel(&[a, b]);
    let free_before_boot = 0x400_0000u64;
    run(&mut k, 0).unwrap();
    run(&mut k, 1).unwrap();
    let victim = id_of(&k, "victim");
    let ram = k.domain(victim).unwrap().ram.clone();
    // The guest writes a secret.
    k.hal.write_phys(ram[0].start + 100, b"secret");
    let v = k.current(0).unwrap();
    k.handle_exit(
        0,
        Exit::Smc {
            function: psci::SYSTEM_OFF,
            args: [0; 6],
        },
    );
    assert_eq!(
        k.vcpu(v).map(|x| x.state),
        Some(VcpuState::Running),
        "still on CPU 0 until it leaves"
    );
    assert_eq!(run(&mut k, 0), None);
    assert!(k.domain(victim).is_none());
    assert!(
        k.hal
            .memory
            .borrow()
            .range(ram[0].start..ram[0].end)
            .next()
            .is_none(),
        "scrubbed"
    );
    assert!(k.domains().any(|d| d.name() == "bystander"));
    let bystander_ram: u64 = k
        .domain(id_of(&k, "bystander"))
        .unwrap()
        .ram
        .iter()
        .map(|r| r.size())
        .sum();
    assert!(k.frames.free_bytes() >= free_before_boot - bystander_ram - 0x1000 * 16);
    assert!(k
        .hal
        .console
        .borrow()
        .contains("victim (id 1) powered itself off"));
}

#[test]
fn a_successor_gets_the_scrubbed_frames_of_the_domain_it_follows() {
    let mut writer = dom("writer");
    writer.cpus[0] = 0;
    let mut reader = dom("reader");
    reader.at_boot = false;
    reader.after = 1;
    reader.memory_from = 1;
    let mut k = kernel(&[writer, reader]);
    run(&mut k, 0).unwrap();
    let w = id_of(&k, "writer");
    let ram = k.domain(w).unwrap().ram.clone();
    k.hal.write_phys(ram[0].start + 0x1000, &[0x5E; 64]);
    raw(&mut k, 0, psci::SYSTEM_OFF, [0; 6]);
    assert_eq!(run(&mut k, 0), None);
    let r = id_of(&k, "reader");
    assert_eq!(k.domain(r).unwrap().ram, ram, "the same frames");
    assert!(
        k.hal
            .memory
            .borrow()
            .range(ram[0].start + 0x1000..ram[0].end - 4096)
            .next()
            .is_none(),
        "only zeros beyond the image"
    );
}

#[test]
fn system_reset_restarts_the_domain_with_its_boot_count() {
    let (mut k, cpu) = single("phoenix");
    let id = id_of(&k, "phoenix");
    let ram = k.domain(id).unwrap().ram.clone();
    k.hal.write_phys(ram[0].start + 0x3000, b"old state");
    k.domain_mut(id).unwrap().arch = 99;
    raw(&mut k, cpu, psci::SYSTEM_RESET, [0; 6]);
    let v = run(&mut k, cpu).unwrap();
    assert_eq!(k.domain(id).unwrap().boots, 1);
    assert_eq!(k.domain(id).unwrap().arch, 1, "architectural state reset");
    let info = boot_info(&k, id);
    assert_eq!(info.boots, 1, "the boot-info page counts restarts");
    assert_eq!(
        k.vcpu(v).unwrap().context.regs[3],
        sysimage::DOMAIN_RAM_BASE + 256 * 1024 - 4096
    );
    assert!(k
        .hal
        .memory
        .borrow()
        .range(ram[0].start + 0x3000..ram[0].end - 4096)
        .next()
        .is_none());
    assert_eq!(
        k.hal.memory.borrow().get(&ram[0].start),
        Some(&1),
        "image reloaded"
    );
}

// ----- Faults ---------------------------------------------------------------------------------

#[test]
fn a_memory_fault_stops_only_the_faulting_domain() {
    let mut a = dom("wild");
    a.cpus[0] = 0;
    let mut b = dom("calm");
    b.cpus[0] = 1;
    let mut k = kernel(&[a, b]);
    run(&mut k, 0).unwrap();
    run(&mut k, 1).unwrap();
    k.handle_exit(
        0,
        Exit::MemoryFault {
            ipa: 0x8000_0000,
            write: false,
            pc: 0x4000_0010,
        },
    );
    assert_eq!(run(&mut k, 0), None);
    assert!(!k.domains().any(|d| d.name() == "wild"));
    assert!(run(&mut k, 1).is_some());
    let console = k.hal.console.borrow();
    assert!(
        console.contains(
            "domain wild (id 1) stopped: vCPU 0 read guest-physical 0x80000000 at pc 0x40000010"
        ),
        "{console}"
    );
}

// ----- Event channels and shared memory ------------------------------------------------------

use mica_abi::bootinfo::name_field;
use mica_abi::event::{pending_offset, SUMMARY_OFFSET};

fn linked_kernel() -> Box<Kernel<MockHal>> {
    let mut ping = dom("ping");
    ping.cpus[0] = 0;
    let mut pong = dom("pong");
    pong.cpus[0] = 1;
    let channel = sysimage::ChannelRecord {
        a_domain: 0,
        b_domain: 1,
        a_name: name_field("to-pong"),
        b_name: name_field("to-ping"),
        reserved: [0; 2],
    };
    let share = sysimage::ShareRecord {
        name: name_field("ring"),
        owner: 0,
        peer: 1,
        pages: 2,
        peer_rights: (Rights::READ | Rights::WRITE).bits(),
        owner_offset: 0x8000,
        peer_ipa: 0x8000_0000,
        reserved: 0,
    };
    let mut k = Box::new(Kernel::new(MockHal::default()));
    let mut free: RangeSet<4> = RangeSet::new();
    free.insert(RAM).unwrap();
    k.frames.add_ranges(&free);
    k.load_system(image_with(&[ping, pong], &[channel], &[share]))
        .unwrap();
    run(&mut k, 0).unwrap();
    run(&mut k, 1).unwrap();
    k
}

#[test]
fn boot_wires_channels_and_shares_and_lists_them_in_boot_info() {
    let k = linked_kernel();
    let (ping, pong) = (id_of(&k, "ping"), id_of(&k, "pong"));
    let pi = boot_info(&k, ping);
    let po = boot_info(&k, pong);
    let to_pong = pi.cap("to-pong").unwrap();
    assert_eq!(to_pong.object_type, ObjectType::EventChannel as u8);
    assert!(po.cap("to-ping").is_some());
    let ring_owner = pi.region("ring").unwrap();
    let ring_peer = po.region("ring").unwrap();
    assert_eq!(ring_owner.ipa, sysimage::DOMAIN_RAM_BASE + 0x8000);
    assert_eq!(ring_peer.ipa, 0x8000_0000);
    // Both see the same frames.
    let owner_pa = k.domain(ping).unwrap().translate(ring_owner.ipa).unwrap();
    assert_eq!(
        k.domain(pong).unwrap().translate(0x8000_0000),
        Some(owner_pa)
    );
    assert_eq!(
        k.domain(pong).unwrap().translate(0x8000_1000),
        Some(owner_pa + 0x1000)
    );
    assert_eq!(k.domain(pong).unwrap().translate(0x8000_2000), None);
}

#[test]
fn events_set_page_bits_wake_the_receiver_and_coalesce() {
    let mut k = linked_kernel();
    let (ping, pong) = (id_of(&k, "ping"), id_of(&k, "pong"));
    let to_pong = boot_info(&k, ping).cap("to-pong").unwrap().slot as u64;
    let to_ping = boot_info(&k, pong).cap("to-ping").unwrap().slot as u64;
    let page = sysimage::DOMAIN_RAM_BASE + 0x10000;
    // Binding needs an event page first.
    assert_eq!(
        status(hvc(&mut k, 1, Call::EvtchnBind, [to_ping, 70, 0, 0, 0, 0])),
        Err(Status::WrongState)
    );
    assert_eq!(
        status(hvc(
            &mut k,
            1,
            Call::EventPageSet,
            [page + 8, 0, 0, 0, 0, 0]
        )),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        status(hvc(
            &mut k,
            1,
            Call::EventPageSet,
            [0x9000_0000, 0, 0, 0, 0, 0]
        )),
        Err(Status::OutOfRange)
    );
    assert_eq!(
        status(hvc(&mut k, 1, Call::EventPageSet, [page, 0, 0, 0, 0, 0])),
        Ok(())
    );
    assert_eq!(
        status(hvc(
            &mut k,
            1,
            Call::EvtchnBind,
            [to_ping, 4096, 0, 0, 0, 0]
        )),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        status(hvc(&mut k, 1, Call::EvtchnBind, [to_ping, 70, 5, 0, 0, 0])),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        status(hvc(&mut k, 1, Call::EvtchnBind, [to_ping, 70, 0, 0, 0, 0])),
        Ok(())
    );
    // pong blocks in WFI; ping's send wakes it and sets port 70.
    let pong_v = k.current(1).unwrap();
    k.handle_exit(1, Exit::WaitForInterrupt);
    assert_eq!(run(&mut k, 1), None);
    assert_eq!(
        status(hvc(&mut k, 0, Call::EvtchnSend, [to_pong, 0, 0, 0, 0, 0])),
        Ok(())
    );
    assert_eq!(run(&mut k, 1), Some(pong_v), "woken");
    let page_pa = k.domain(pong).unwrap().translate(page).unwrap();
    let m = k.hal.memory.borrow().clone();
    assert_eq!(
        read_u64(&m, page_pa + pending_offset(1) as u64),
        1 << 6,
        "port 70 = word 1, bit 6"
    );
    assert_eq!(read_u64(&m, page_pa + SUMMARY_OFFSET as u64), 1 << 1);
    // A thousand more sends change nothing but the same bits: no memory is used per event.
    let free = k.frames.free_bytes();
    for _ in 0..1000 {
        assert_eq!(
            status(hvc(&mut k, 0, Call::EvtchnSend, [to_pong, 0, 0, 0, 0, 0])),
            Ok(())
        );
    }
    assert_eq!(k.frames.free_bytes(), free);
    // Those sends left a wake-up pending: the next WFI returns at once.
    k.handle_exit(1, Exit::WaitForInterrupt);
    assert_eq!(run(&mut k, 1), Some(pong_v));
    // Masked: bits but no wake-up; unmask wakes.
    assert_eq!(
        status(hvc(&mut k, 1, Call::EvtchnMask, [to_ping, 2, 0, 0, 0, 0])),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        status(hvc(&mut k, 1, Call::EvtchnMask, [to_ping, 1, 0, 0, 0, 0])),
        Ok(())
    );
    k.handle_exit(1, Exit::WaitForInterrupt);
    assert_eq!(run(&mut k, 1), None);
    assert_eq!(
        status(hvc(&mut k, 0, Call::EvtchnSend, [to_pong, 0, 0, 0, 0, 0])),
        Ok(())
    );
    assert_eq!(run(&mut k, 1), None, "masked: still blocked");
    k.vcpu_mut(pong_v).unwrap().state = VcpuState::Blocked;
    k.wake(pong_v);
    run(&mut k, 1).unwrap();
    assert_eq!(
        status(hvc(&mut k, 1, Call::EvtchnMask, [to_ping, 0, 0, 0, 0, 0])),
        Ok(())
    );
    // Rights: pong cannot send on ping's endpoint slot number in its own space if empty.
    assert_eq!(
        status(hvc(&mut k, 1, Call::EvtchnSend, [40, 0, 0, 0, 0, 0])),
        Err(Status::InvalidCapability)
    );
}

#[test]
fn closing_an_endpoint_makes_sends_fail_with_peer_closed() {
    let mut k = linked_kernel();
    let (ping, pong) = (id_of(&k, "ping"), id_of(&k, "pong"));
    let to_pong = boot_info(&k, ping).cap("to-pong").unwrap().slot as u64;
    let to_ping = boot_info(&k, pong).cap("to-ping").unwrap().slot as u64;
    assert_eq!(
        status(hvc(&mut k, 1, Call::CapDelete, [to_ping, 0, 0, 0, 0, 0])),
        Ok(())
    );
    assert_eq!(
        status(hvc(&mut k, 0, Call::EvtchnSend, [to_pong, 0, 0, 0, 0, 0])),
        Err(Status::PeerClosed)
    );
    // And when the peer's whole domain goes.
    let mut k = linked_kernel();
    raw(&mut k, 1, psci::SYSTEM_OFF, [0; 6]);
    assert_eq!(run(&mut k, 1), None);
    assert_eq!(
        status(hvc(&mut k, 0, Call::EvtchnSend, [to_pong, 0, 0, 0, 0, 0])),
        Err(Status::PeerClosed)
    );
}

#[test]
fn evtchn_create_makes_a_connected_pair_in_the_callers_space() {
    let mut k = linked_kernel();
    assert_eq!(
        status(hvc(&mut k, 0, Call::EvtchnCreate, [20, 20, 0, 0, 0, 0])),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        status(hvc(&mut k, 0, Call::EvtchnCreate, [0, 21, 0, 0, 0, 0])),
        Err(Status::SlotOccupied)
    );
    assert_eq!(
        status(hvc(&mut k, 0, Call::EvtchnCreate, [20, 21, 0, 0, 0, 0])),
        Ok(())
    );
    let page = sysimage::DOMAIN_RAM_BASE + 0x10000;
    assert_eq!(
        status(hvc(&mut k, 0, Call::EventPageSet, [page, 0, 0, 0, 0, 0])),
        Ok(())
    );
    assert_eq!(
        status(hvc(&mut k, 0, Call::EvtchnBind, [21, 3, 0, 0, 0, 0])),
        Ok(())
    );
    assert_eq!(
        status(hvc(&mut k, 0, Call::EvtchnSend, [20, 0, 0, 0, 0, 0])),
        Ok(())
    );
    let ping = id_of(&k, "ping");
    let pa = k.domain(ping).unwrap().translate(page).unwrap();
    assert_eq!(read_u64(&k.hal.memory.borrow(), pa), 1 << 3);
}

#[test]
fn revoking_a_share_unmaps_it_from_the_peer_only() {
    let mut k = linked_kernel();
    let (ping, pong) = (id_of(&k, "ping"), id_of(&k, "pong"));
    let ring = boot_info(&k, ping).cap("ring").unwrap().slot as u64;
    let r = hvc(&mut k, 0, Call::CapRevoke, [ring, 0, 0, 0, 0, 0]);
    assert_eq!(status(r), Ok(()));
    assert_eq!(r[1], 1, "the peer's copy");
    assert_eq!(k.domain(pong).unwrap().translate(0x8000_0000), None);
    assert!(!k
        .domain(pong)
        .unwrap()
        .stage2
        .pages
        .contains_key(&0x8000_0000));
    assert!(
        k.domain(ping)
            .unwrap()
            .translate(sysimage::DOMAIN_RAM_BASE + 0x8000)
            .is_some(),
        "the owner keeps it"
    );
    // The peer's next access faults and stops only the peer.
    k.handle_exit(
        1,
        Exit::MemoryFault {
            ipa: 0x8000_0000,
            write: false,
            pc: 0x4000_0100,
        },
    );
    assert_eq!(run(&mut k, 1), None);
    assert!(k.domain(pong).is_none());
    assert!(k.domain(ping).is_some());
}

#[test]
fn the_end_of_the_last_domain_reports_free_memory_against_boot() {
    let mut k = linked_kernel();
    raw(&mut k, 0, psci::SYSTEM_OFF, [0; 6]);
    raw(&mut k, 1, psci::SYSTEM_OFF, [0; 6]);
    run(&mut k, 0);
    run(&mut k, 1);
    assert!(k.domains().next().is_none());
    let console = k.hal.console.borrow();
    assert!(
        console.contains("all domains have ended;") && console.contains("free, as at boot"),
        "{console}"
    );
}

// ----- Scheduling -----------------------------------------------------------------------------

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

fn set(
    k: &mut Kernel<MockHal>,
    control: u64,
    d: DomainId,
    prio: u8,
    budget: u64,
    period: u64,
    aff: u64,
) -> Result<(), Status> {
    let target = mica_abi::sched::pack_target(d.0, 0, prio);
    status(hvc(
        k,
        1,
        Call::SchedSet,
        [control, target, budget, period, aff, 0],
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
    let pa = k.domain(policy).unwrap().translate(page.ipa).unwrap();
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
    let r = hvc(&mut k2, 0, Call::SchedSet, [0, 0, 0, 0, 1, 0]);
    assert_eq!(status(r), Err(Status::InvalidCapability));
}

#[test]
fn sched_set_checks_then_applies_priority_budget_and_affinity() {
    let (mut k, policy, g) = sched_kernel();
    run(&mut k, 1).unwrap();
    let c = boot_info(&k, policy).cap("sched-control").unwrap().slot as u64;
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
    let target = mica_abi::sched::pack_target(g[0].0, 0, 1) | 1 << 45;
    assert_eq!(
        status(hvc(&mut k, 1, Call::SchedSet, [c, target, 0, 0, 1, 0])),
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
    let (mut k, policy, g) = sched_kernel();
    run(&mut k, 1).unwrap();
    let c = boot_info(&k, policy).cap("sched-control").unwrap().slot as u64;
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

#[test]
fn tickless_a_blocked_vcpu_wakes_at_its_own_timer_and_not_before() {
    let mut a = dom("sleeper");
    a.cpus[0] = 0;
    let mut k = kernel(&[a]);
    let v = run(&mut k, 0).unwrap();
    assert_eq!(k.deadline(0), None, "one vCPU, no budget: no timer at all");
    k.vcpu_mut(v).unwrap().context.timer = Some(5_000);
    k.handle_exit(0, Exit::WaitForInterrupt);
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
    k.handle_exit(0, Exit::Yield);
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

// ----- Devices and interrupts -----------------------------------------------------------------

use crate::irq::IrqOutcome;

fn device_kernel() -> Box<Kernel<MockHal>> {
    let mut drv = dom("drv");
    drv.cpus[0] = 1;
    let mut other = dom("other");
    other.cpus[0] = 0;
    let rtc = sysimage::DeviceRecord {
        name: name_field("rtc"),
        domain: 0,
        interrupt: 34,
        mmio_base: 0x0901_0000,
        mmio_size: 0x1000,
        guest_address: 0x0901_0000,
        reserved: 0,
    };
    let mut k = Box::new(Kernel::new(MockHal::default()));
    let mut free: RangeSet<4> = RangeSet::new();
    free.insert(RAM).unwrap();
    k.frames.add_ranges(&free);
    k.load_system(image_with_devices(&[drv, other], &[], &[], &[rtc]))
        .unwrap();
    run(&mut k, 0).unwrap();
    run(&mut k, 1).unwrap();
    k
}

#[test]
fn devices_become_mapped_device_memory_and_a_masked_irq_capability() {
    let k = device_kernel();
    let drv = id_of(&k, "drv");
    let info = boot_info(&k, drv);
    assert_eq!(
        info.cap("rtc").unwrap().object_type,
        ObjectType::DeviceMemory as u8
    );
    assert_eq!(
        info.cap("rtc-irq").unwrap().object_type,
        ObjectType::Irq as u8
    );
    assert_eq!(info.region("rtc").unwrap().ipa, 0x0901_0000);
    assert_eq!(
        k.domain(drv).unwrap().stage2.device_pages.get(&0x0901_0000),
        Some(&0x0901_0000)
    );
    assert!(
        k.hal.irq_log.borrow().contains(&"disable 34".to_string()),
        "masked until bound"
    );
    assert!(boot_info(&k, id_of(&k, "other")).cap("rtc").is_none());
}

#[test]
fn an_interrupt_bound_to_an_event_is_delivered_and_stays_active_until_acknowledged() {
    let mut k = device_kernel();
    let drv = id_of(&k, "drv");
    let irq = boot_info(&k, drv).cap("rtc-irq").unwrap().slot as u64;
    let page = sysimage::DOMAIN_RAM_BASE + 0x10000;
    assert_eq!(
        status(hvc(&mut k, 1, Call::EvtchnCreate, [30, 31, 0, 0, 0, 0])),
        Ok(())
    );
    assert_eq!(
        status(hvc(&mut k, 1, Call::IrqBindEvent, [irq, 31, 0, 0, 0, 0])),
        Err(Status::WrongState),
        "endpoint unbound"
    );
    assert_eq!(
        status(hvc(&mut k, 1, Call::EventPageSet, [page, 0, 0, 0, 0, 0])),
        Ok(())
    );
    assert_eq!(
        status(hvc(&mut k, 1, Call::EvtchnBind, [31, 9, 0, 0, 0, 0])),
        Ok(())
    );
    assert_eq!(
        status(hvc(&mut k, 1, Call::IrqBindEvent, [31, 31, 0, 0, 0, 0])),
        Err(Status::InvalidCapability),
        "not an Irq"
    );
    assert_eq!(
        status(hvc(&mut k, 1, Call::IrqBindEvent, [irq, 31, 0, 0, 0, 0])),
        Ok(())
    );
    assert!(
        k.hal
            .irq_log
            .borrow()
            .contains(&"enable 34 on 1".to_string()),
        "routed to the vCPU's CPU"
    );
    assert_eq!(
        status(hvc(&mut k, 1, Call::IrqAck, [irq, 0, 0, 0, 0, 0])),
        Err(Status::WrongState),
        "nothing to ack"
    );
    assert_eq!(k.physical_interrupt(34), IrqOutcome::LeaveActive);
    let pa = k.domain(drv).unwrap().translate(page).unwrap();
    assert_eq!(read_u64(&k.hal.memory.borrow(), pa), 1 << 9);
    assert_eq!(
        status(hvc(&mut k, 1, Call::IrqAck, [irq, 0, 0, 0, 0, 0])),
        Ok(())
    );
    assert!(k
        .hal
        .irq_log
        .borrow()
        .contains(&"deactivate 34".to_string()));
    // Another domain cannot touch the line.
    assert_eq!(
        status(hvc(&mut k, 0, Call::IrqUnbind, [irq, 0, 0, 0, 0, 0])),
        Err(Status::InvalidCapability)
    );
    // Unbound: masked, and a stray occurrence is deactivated by the kernel.
    assert_eq!(
        status(hvc(&mut k, 1, Call::IrqUnbind, [irq, 0, 0, 0, 0, 0])),
        Ok(())
    );
    assert_eq!(k.physical_interrupt(34), IrqOutcome::Deactivate);
    assert_eq!(
        k.physical_interrupt(99),
        IrqOutcome::Deactivate,
        "nobody's line"
    );
}

#[test]
fn an_interrupt_bound_as_virtual_is_injected_hardware_linked() {
    let mut k = device_kernel();
    let drv = id_of(&k, "drv");
    let irq = boot_info(&k, drv).cap("rtc-irq").unwrap().slot as u64;
    assert_eq!(
        status(hvc(&mut k, 1, Call::IrqBindVirtual, [irq, 4, 0, 0, 0, 0])),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        status(hvc(&mut k, 1, Call::IrqBindVirtual, [irq, 0, 0, 0, 0, 0])),
        Ok(())
    );
    k.hal.inject_ok.set(true);
    assert_eq!(k.physical_interrupt(34), IrqOutcome::LeaveActive);
    assert!(k
        .hal
        .irq_log
        .borrow()
        .contains(&"inject 34 to vcpu 0".to_string()));
    // A HAL that cannot inject: the kernel unbinds rather than leave the line stuck.
    k.hal.inject_ok.set(false);
    assert_eq!(k.physical_interrupt(34), IrqOutcome::Deactivate);
}

#[test]
fn device_memory_maps_as_device_and_dies_with_its_domain() {
    let mut k = device_kernel();
    let drv = id_of(&k, "drv");
    let rtc = boot_info(&k, drv).cap("rtc").unwrap().slot as u64;
    let rw = (Rights::READ | Rights::WRITE).bits() as u64;
    let rwx = (Rights::READ | Rights::WRITE | Rights::EXECUTE).bits() as u64;
    let frame = 0x0901_0000 / 4096;
    assert_eq!(
        status(hvc(
            &mut k,
            1,
            Call::MemMap,
            [SELF_DOMAIN, rtc, 0xA000_0000, frame, 1, rwx]
        )),
        Err(Status::InsufficientRights),
        "never executable"
    );
    assert_eq!(
        status(hvc(
            &mut k,
            1,
            Call::MemMap,
            [SELF_DOMAIN, rtc, 0xA000_0000, frame, 1, rw]
        )),
        Ok(())
    );
    assert_eq!(
        k.domain(drv).unwrap().stage2.device_pages.get(&0xA000_0000),
        Some(&0x0901_0000)
    );
    raw(&mut k, 1, psci::SYSTEM_OFF, [0; 6]);
    assert_eq!(run(&mut k, 1), None);
    assert!(k.domain(drv).is_none());
    assert_eq!(
        k.physical_interrupt(34),
        IrqOutcome::Deactivate,
        "the line went with its domain"
    );
}

// ----- The control domain's calls -------------------------------------------------------------

#[test]
fn a_control_domain_gets_a_pool_the_system_image_and_every_domain() {
    let mut ctl = dom("ctl");
    ctl.flags = sysimage::FLAG_CONTROL;
    ctl.cpus[0] = 0;
    let mut a = dom("web");
    a.cpus[0] = 1;
    let mut later = dom("later");
    later.at_boot = false;
    later.after = 2;
    later.cpus[0] = 1;
    let mut k = Box::new(Kernel::new(MockHal::default()));
    let mut free: RangeSet<4> = RangeSet::new();
    free.insert(PhysRange {
        start: 0x4000_0000,
        end: 0x4800_0000,
    })
    .unwrap();
    k.frames.add_ranges(&free);
    k.set_image_range(PhysRange {
        start: 0x5000_0000,
        end: 0x5000_3000,
    });
    k.load_system(image(&[ctl, a, later])).unwrap();
    run(&mut k, 0).unwrap();
    run(&mut k, 1).unwrap();
    let c = id_of(&k, "ctl");
    let info = boot_info(&k, c);
    let pool = info.cap("free-memory").unwrap();
    assert_eq!(pool.object_type, ObjectType::Memory as u8);
    let r = hvc(
        &mut k,
        0,
        Call::CapIdentify,
        [pool.slot as u64, 0, 0, 0, 0, 0],
    );
    assert_eq!(r[3] * 4096, sysimage::CONTROL_POOL_BYTES);
    assert_eq!(
        info.region("system-image").unwrap().ipa,
        sysimage::SYSTEM_IMAGE_IPA
    );
    assert_eq!(
        k.domain(c).unwrap().translate(sysimage::SYSTEM_IMAGE_IPA),
        Some(0x5000_0000)
    );
    let web = info.cap("dom-web").unwrap().slot as u64;
    // It may set the scheduling of what it runs.
    let sched = info.cap("sched-control").unwrap();
    assert_eq!(sched.object_type, ObjectType::SchedControl as u8);
    let target = mica_abi::sched::pack_target(id_of(&k, "web").0, 0, 7);
    let r = hvc(
        &mut k,
        0,
        Call::SchedSet,
        [sched.slot as u64, target, 0, 0, 0b10, 0],
    );
    assert_eq!(status(r), Ok(()));
    // domain_info, console_read, set_name, pause, restart through that capability.
    let w = id_of(&k, "web");
    let r = hvc(&mut k, 0, Call::DomainInfo, [web, 0, 0, 0, 0, 0]);
    assert_eq!(status(r), Ok(()));
    assert_eq!(r[1] & 0xFFFF, w.0 as u64);
    assert_eq!((r[1] >> 16) & 0xFF, 0, "running");
    assert_eq!(r[1] >> 24, 1, "one vCPU");
    assert_eq!(r[2], 256 * 1024);
    let text = b"hi there, console\n";
    let regs = pack_console_bytes(text);
    hvc(
        &mut k,
        1,
        Call::ConsoleWrite,
        [
            text.len() as u64,
            regs[0],
            regs[1],
            regs[2],
            regs[3],
            regs[4],
        ],
    );
    let r = hvc(&mut k, 0, Call::ConsoleRead, [web, 3, 0, 0, 0, 0]);
    assert_eq!(r[1], text.len() as u64);
    let mut got = r[2].to_le_bytes().to_vec();
    got.extend_from_slice(&r[3].to_le_bytes());
    assert_eq!(&got[..15], &text[3..], "15 bytes from offset 3");
    assert_eq!(&got[15..], &[0], "nothing past the end");
    let name = pack_console_bytes(b"www");
    assert_eq!(
        status(hvc(
            &mut k,
            0,
            Call::DomainSetName,
            [web, name[0], 0, 0, 0, 0]
        )),
        Ok(())
    );
    assert_eq!(k.domain(w).unwrap().name(), "www");
    let bad = pack_console_bytes(b"BAD NAME");
    assert_eq!(
        status(hvc(
            &mut k,
            0,
            Call::DomainSetName,
            [web, bad[0], 0, 0, 0, 0]
        )),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        status(hvc(&mut k, 0, Call::DomainPause, [web, 0, 0, 0, 0, 0])),
        Ok(())
    );
    assert_eq!(
        (hvc(&mut k, 0, Call::DomainInfo, [web, 0, 0, 0, 0, 0])[1] >> 16) & 0xFF,
        1,
        "paused"
    );
    assert_eq!(
        status(hvc(&mut k, 0, Call::DomainUnpause, [web, 0, 0, 0, 0, 0])),
        Ok(())
    );
    assert_eq!(
        status(hvc(&mut k, 0, Call::DomainRestart, [web, 0, 0, 0, 0, 0])),
        Ok(())
    );
    run(&mut k, 1);
    assert_eq!(k.domain(w).unwrap().boots, 1);
    // Other domains cannot do any of this.
    assert_eq!(
        status(hvc(&mut k, 1, Call::DomainInfo, [web, 0, 0, 0, 0, 0])),
        Err(Status::InvalidCapability)
    );
    // A domain started later (after `web` goes) is granted to the control domain too.
    assert_eq!(
        status(hvc(&mut k, 0, Call::DomainDestroy, [web, 0, 0, 0, 0, 0])),
        Ok(())
    );
    run(&mut k, 1);
    assert!(k.domains().any(|d| d.name() == "later"));
    assert!(
        boot_info(&k, c).cap("dom-later").is_some(),
        "listed in the control domain's boot info"
    );
    assert!(
        boot_info(&k, c).cap("dom-web").is_none(),
        "a destroyed domain's entry goes (its slot may hold another domain next)"
    );
    assert!(
        boot_info(&k, c).cap("free-memory").is_some(),
        "the rest stay"
    );
}

// ----- Isolation: objects decide lifetimes ----------------------------------------------------

/// The builder creates a child (Domain capability in slot 5) running on `child_cpu` in 8
/// pages of the builder's RAM (Memory capability in slot 6, vCPU capability in slot 7).
fn child_running_on(k: &mut Kernel<MockHal>, cpu: usize, child_cpu: u64) -> (DomainId, VcpuId) {
    let r = hvc(k, cpu, Call::DomainCreate, [5, 16, 64 * 1024, 0, 0, 0]);
    assert_eq!(status(r), Ok(()));
    let child = DomainId(r[1] as u16);
    let first = hvc(k, cpu, Call::CapIdentify, [0; 6])[2];
    let rwx = (Rights::READ | Rights::WRITE | Rights::EXECUTE).bits() as u64;
    let derive = [0, 6, rwx, first + 8, 8, 0];
    assert_eq!(status(hvc(k, cpu, Call::CapDerive, derive)), Ok(()));
    let map = [5, 6, 0x4000_0000, first + 8, 8, rwx];
    assert_eq!(status(hvc(k, cpu, Call::MemMap, map)), Ok(()));
    let create = [5, 7, 0, child_cpu, 0, 0];
    assert_eq!(status(hvc(k, cpu, Call::VcpuCreate, create)), Ok(()));
    let start = [7, 0x4000_0000, 0, 0, 0, 0];
    assert_eq!(status(hvc(k, cpu, Call::VcpuStart, start)), Ok(()));
    let v = run(k, child_cpu as usize).expect("the child runs");
    assert_eq!(k.vcpu(v).unwrap().domain, child);
    (child, v)
}

#[test]
fn deleting_a_vcpu_capability_stops_the_vcpu_for_good() {
    let (mut k, cpu) = builder();
    let (child, v) = child_running_on(&mut k, cpu, 1);
    assert_eq!(
        status(hvc(&mut k, cpu, Call::CapDelete, [7, 0, 0, 0, 0, 0])),
        Ok(())
    );
    assert!(k.vcpu(v).unwrap().retired);
    assert_eq!(run(&mut k, 1), None, "it leaves CPU 1 at once");
    assert_eq!(k.vcpu(v).unwrap().state, VcpuState::Off);
    // Nothing brings it back: not a wake-up, not PSCI CPU_ON from a sibling.
    k.wake(v);
    assert_eq!(run(&mut k, 1), None);
    assert!(k.domain(child).is_some(), "the domain itself lives on");
}

#[test]
fn deleting_a_domain_capability_destroys_the_domain_before_its_id_is_reused() {
    let (mut k, cpu) = builder();
    let free_before = k.frames.free_bytes();
    let (child, v) = child_running_on(&mut k, cpu, 1);
    // The last (only) Domain capability goes while the child runs on CPU 1.
    assert_eq!(
        status(hvc(&mut k, cpu, Call::CapDelete, [5, 0, 0, 0, 0, 0])),
        Ok(())
    );
    assert_eq!(
        k.domain(child).map(|d| d.state),
        Some(crate::domain::DomainState::Dying)
    );
    // Until CPU 1 lets go of the vCPU, the id stays taken: a new domain gets another one.
    let r = hvc(&mut k, cpu, Call::DomainCreate, [9, 16, 64 * 1024, 0, 0, 0]);
    assert_eq!(status(r), Ok(()));
    assert_ne!(
        r[1] as u16, child.0,
        "the id of a dying domain is not reused"
    );
    assert_eq!(run(&mut k, 1), None, "the vCPU leaves CPU 1 and is gone");
    assert!(k.domain(child).is_none());
    assert!(k.vcpu(v).is_none());
    assert_eq!(
        status(hvc(&mut k, cpu, Call::CapIdentify, [7, 0, 0, 0, 0, 0])),
        Err(Status::InvalidCapability),
        "the Vcpu capability went with its domain"
    );
    // The next domain created may reuse the id, and nothing of the old one is left in it.
    assert_eq!(
        status(hvc(&mut k, cpu, Call::CapDelete, [9, 0, 0, 0, 0, 0])),
        Ok(())
    );
    let r = hvc(&mut k, cpu, Call::DomainCreate, [5, 16, 64 * 1024, 0, 0, 0]);
    let fresh = DomainId(r[1] as u16);
    let d = k.domain(fresh).unwrap();
    assert!(d.vcpus.is_empty() && d.mappings.is_empty());
    assert!(!k
        .domains()
        .any(|d| d.id != fresh && d.id == child && d.state != crate::domain::DomainState::Running));
    assert_eq!(
        k.frames.free_bytes(),
        free_before - 4096,
        "no table leaked: only the fresh domain's root table is in use"
    );
}

#[test]
fn the_domains_a_domain_created_die_with_it() {
    let (mut k, cpu) = builder();
    let (child, _) = child_running_on(&mut k, cpu, 1);
    // A grandchild, created by the builder but handed to nobody else.
    let r = hvc(&mut k, cpu, Call::DomainCreate, [10, 8, 8 * 1024, 0, 0, 0]);
    let grandchild = DomainId(r[1] as u16);
    let builder_id = id_of(&k, "builder");
    k.handle_exit(
        cpu,
        Exit::MemoryFault {
            ipa: 0x8000_0000,
            write: false,
            pc: 0,
        },
    );
    assert_eq!(run(&mut k, cpu), None);
    assert!(k.domain(builder_id).is_none());
    assert!(k.domain(grandchild).is_none(), "an idle child goes at once");
    assert_eq!(run(&mut k, 1), None);
    assert!(k.domain(child).is_none(), "a running one once off its CPU");
    assert!(
        k.hal.console.borrow().contains("KiB free, as at boot"),
        "{}",
        k.hal.console.borrow()
    );
}

#[test]
fn stage2_tables_are_charged_to_the_domain_and_freed_on_unmap() {
    let (mut k, cpu) = single("mapper");
    let me = id_of(&k, "mapper");
    let first = hvc(&mut k, cpu, Call::CapIdentify, [0; 6])[2];
    let used = |k: &Kernel<MockHal>| k.caps.space(me.space()).unwrap().used;
    let before = used(&k);
    let rw = (Rights::READ | Rights::WRITE).bits() as u64;
    // One page at ever-new addresses, mapped and unmapped: the charge comes back each time.
    for i in 0..200u64 {
        let ipa = 0x1_0000_0000 + i * (1 << 30) + i * (1 << 21);
        let map = [SELF_DOMAIN, 0, ipa, first, 1, rw];
        assert_eq!(status(hvc(&mut k, cpu, Call::MemMap, map)), Ok(()));
        assert_eq!(used(&k), before + 2 * 4096, "a level-2 and a level-3 table");
        let unmap = [SELF_DOMAIN, ipa, 1, 0, 0, 0];
        assert_eq!(status(hvc(&mut k, cpu, Call::MemUnmap, unmap)), Ok(()));
        assert_eq!(used(&k), before);
    }
    // Tables a mapping needs are paid by the domain mapped into: a child with a 16 KiB quota
    // gets two far-apart pages (two tables each), not a third.
    let r = hvc(&mut k, cpu, Call::DomainCreate, [5, 1, 16 * 1024, 0, 0, 0]);
    let child = DomainId(r[1] as u16);
    let mine = used(&k);
    for i in 0..3u64 {
        let map = [5, 0, 0x1_0000_0000 + i * (1 << 30), first, 1, rw];
        let expected = if i < 2 {
            Ok(())
        } else {
            Err(Status::QuotaExceeded)
        };
        assert_eq!(status(hvc(&mut k, cpu, Call::MemMap, map)), expected, "{i}");
    }
    assert_eq!(used(&k), mine, "the mapper paid nothing");
    let space = k.caps.space(child.space()).unwrap();
    assert_eq!(space.used, 4 * 4096);
    assert_eq!(
        k.domain(child).unwrap().mappings.len(),
        2,
        "the refused map left nothing"
    );
}

#[test]
fn naming_needs_a_capability_and_names_are_unique() {
    let (mut k, cpu) = builder();
    let name = |text: &str| {
        let mut regs = [0u64; 4];
        for (i, b) in text.bytes().enumerate() {
            regs[i / 8] |= (b as u64) << ((i % 8) * 8);
        }
        regs
    };
    let set = |k: &mut Kernel<MockHal>, slot: u64, text: &str| {
        let n = name(text);
        status(hvc(
            k,
            cpu,
            Call::DomainSetName,
            [slot, n[0], n[1], n[2], n[3], 0],
        ))
    };
    assert_eq!(
        set(&mut k, SELF_DOMAIN, "fresh"),
        Err(Status::InsufficientRights)
    );
    let r = hvc(&mut k, cpu, Call::DomainCreate, [5, 16, 64 * 1024, 0, 0, 0]);
    let child = DomainId(r[1] as u16);
    assert_eq!(
        k.domain(child).unwrap().name(),
        format!("unnamed-{}", child.0)
    );
    assert_eq!(set(&mut k, 5, "builder"), Err(Status::NameInUse));
    assert_eq!(set(&mut k, 5, "unnamed-3"), Err(Status::NameInUse));
    assert_eq!(set(&mut k, 5, "child"), Ok(()));
    assert_eq!(set(&mut k, 5, "child"), Ok(()), "its own name again");
    let r = hvc(&mut k, cpu, Call::DomainCreate, [6, 16, 64 * 1024, 0, 0, 0]);
    assert_eq!(status(r), Ok(()));
    assert_eq!(set(&mut k, 6, "child"), Err(Status::NameInUse));
    assert_eq!(k.domain(child).unwrap().name(), "child");
}

#[test]
fn a_domain_takes_at_most_its_share_of_the_fixed_tables() {
    let (mut k, cpu) = single("greedy");
    let mut domains = 0;
    for slot in 5..30u64 {
        match status(hvc(&mut k, cpu, Call::DomainCreate, [slot, 1, 0, 0, 0, 0])) {
            Ok(()) => domains += 1,
            Err(e) => {
                assert_eq!(e, Status::QuotaExceeded);
                break;
            }
        }
    }
    assert_eq!(domains, crate::kernel::SPACES / 4);
    let mut channels = 0;
    for slot in (30..64u64).step_by(2) {
        match status(hvc(
            &mut k,
            cpu,
            Call::EvtchnCreate,
            [slot, slot + 1, 0, 0, 0, 0],
        )) {
            Ok(()) => channels += 1,
            Err(e) => {
                assert_eq!(e, Status::QuotaExceeded);
                break;
            }
        }
    }
    assert_eq!(channels, crate::kernel::MAX_ENDPOINTS / 8);
    // Everything it created goes with it: the tables are as free as before.
    let greedy = id_of(&k, "greedy");
    k.destroy(greedy);
    assert_eq!(run(&mut k, cpu), None);
    assert_eq!(k.domains().count(), 0);
    assert!(k.channels.has_room());
    assert!(k
        .hal
        .console
        .borrow()
        .contains("all domains have ended; 65536 KiB free, as at boot"));
}

#[test]
fn a_console_flood_is_cut_to_the_domains_budget_and_control_bytes_are_replaced() {
    let (mut k, cpu) = single("loud");
    let write = |k: &mut Kernel<MockHal>, bytes: &[u8]| {
        let p = pack_console_bytes(bytes);
        hvc(
            k,
            cpu,
            Call::ConsoleWrite,
            [bytes.len() as u64, p[0], p[1], p[2], p[3], p[4]],
        )
    };
    write(&mut k, b"\x1b[2J\x9b2J \xc2\x9b1m\n");
    assert!(k.hal.console.borrow().contains("[loud] ?[2J?2J ?1m\n"));
    let line = b"0123456789012345678901234567890123456789";
    let before = k.hal.console.borrow().len();
    for _ in 0..25_000 {
        write(&mut k, line);
    }
    // The clock of the mock HAL stands still: nothing refills the bucket.
    let printed = k.hal.console.borrow().len() - before;
    assert!(
        printed <= crate::console::BURST_BYTES as usize,
        "{printed} bytes of a 1 MB flood printed"
    );
    // Its own console log kept everything (the newest bytes).
    let d = k.domain(id_of(&k, "loud")).unwrap();
    assert!(d.console_total > 1_000_000);
    // Once time passes, output resumes with a note of what was dropped.
    k.hal.now.set(10_000_000_000);
    write(&mut k, b"back\n");
    let console = k.hal.console.borrow();
    assert!(console.contains("bytes of console output dropped: over its budget)\n[loud] "));
    assert!(console.ends_with("back\n"));
}
