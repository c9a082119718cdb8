//! Hypercalls: each call's check and perform, one test per call.

use mica_abi::hypercall::{pack_console_bytes, Call, SELF_DOMAIN, VENDOR_HYP_BASE};
use mica_abi::sysimage;
use mica_abi::{ObjectType, Rights, Status};

use crate::domain::DomainId;
use crate::kernel::Exit;
use crate::psci;

use crate::testing::*;

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
