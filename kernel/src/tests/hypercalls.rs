//! Hypercalls: each call's check and perform, one test per call.

use mica_abi::args::{self as a, Slot};
use mica_abi::hypercall::{Call, VENDOR_HYP_BASE};
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
    assert_eq!(call(&mut k, cpu, a::Whoami {}), [0, id.0 as u64, 0, 64]);
}

#[test]
fn console_write_prints_whole_lines_with_the_domain_name_and_escapes_controls() {
    let (mut k, cpu) = single("talker");
    let text = b"hello \x1b[31mworld\n";
    let r = call(&mut k, cpu, a::ConsoleWrite::new(text));
    assert_eq!(r[..2], [0, text.len() as u64]);
    assert!(k
        .hal
        .console
        .borrow()
        .contains("[talker] hello ?[31mworld\n"));
    // Raw registers: a length over the 40 bytes five registers hold, refused by decoding.
    let r = hvc(&mut k, cpu, Call::ConsoleWrite, [41, 0, 0, 0, 0, 0]);
    assert_eq!(status(r), Err(Status::InvalidArgument));
}

/// `mica.console_timestamps=on`: each line carries the time since the machine started, as
/// Linux and Xen print it (`make bench-xen` reads Linux's boot time from it).
#[test]
fn console_lines_carry_the_time_when_asked() {
    let (mut k, cpu) = single("talker");
    k.console_timestamps = true;
    k.hal.now.set(12_345_678_901);
    call(&mut k, cpu, a::ConsoleWrite::new(b"ready\n"));
    assert!(
        k.hal
            .console
            .borrow()
            .ends_with("[   12.345678] [talker] ready\n"),
        "{}",
        k.hal.console.borrow()
    );
}

#[test]
fn yield_reschedules() {
    let mut a = dom("a");
    a.cpus[0] = 0;
    let mut b = dom("b");
    b.cpus[0] = 0;
    let mut k = kernel(&[a, b]);
    let first = run(&mut k, 0).unwrap();
    assert_eq!(status(call(&mut k, 0, a::Yield {})), Ok(()));
    assert_ne!(run(&mut k, 0), Some(first));
}

#[test]
fn cap_identify_describes_the_ram_capability_and_refuses_bad_slots() {
    let (mut k, cpu) = single("ident");
    let r = call(&mut k, cpu, a::CapIdentify { slot: Slot(0) });
    assert_eq!(status(r), Ok(()));
    assert_eq!(r[1] & 0xFF, ObjectType::Memory as u64);
    assert_eq!(r[3], 64, "256 KiB = 64 frames");
    assert_eq!(
        status(call(&mut k, cpu, a::CapIdentify { slot: Slot(5) })),
        Err(Status::InvalidCapability)
    );
    assert_eq!(
        status(call(&mut k, cpu, a::CapIdentify { slot: Slot(9999) })),
        Err(Status::InvalidCapability)
    );
    // Raw registers: a slot wider than 16 bits cannot be written as a `Slot`.
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
    let first = call(&mut k, cpu, a::CapIdentify { slot: Slot(0) })[2];
    let ro = Rights::READ;
    // A read-only copy of the first 4 frames in slot 1.
    assert_eq!(
        status(call(
            &mut k,
            cpu,
            a::CapDerive {
                src: Slot(0),
                dst: Slot(1),
                rights: ro,
                first_frame: first,
                frame_count: 4,
            }
        )),
        Ok(())
    );
    // More rights than the copy has: refused.
    let rw = Rights::READ | Rights::WRITE;
    assert_eq!(
        status(call(
            &mut k,
            cpu,
            a::CapDerive {
                src: Slot(1),
                dst: Slot(2),
                rights: rw,
                first_frame: 0,
                frame_count: 0,
            }
        )),
        Err(Status::InsufficientRights)
    );
    // A range beyond the source: refused.
    assert_eq!(
        status(call(
            &mut k,
            cpu,
            a::CapDerive {
                src: Slot(1),
                dst: Slot(2),
                rights: ro,
                first_frame: first,
                frame_count: 5,
            }
        )),
        Err(Status::OutOfRange)
    );
    // Map the copy read-only at a fresh address; writable is refused.
    let ipa = 0x8000_0000u64;
    assert_eq!(
        status(call(
            &mut k,
            cpu,
            a::MemMap {
                domain: Slot::SELF_DOMAIN,
                memory: Slot(1),
                ipa,
                first_frame: first,
                frame_count: 4,
                perms: rw,
            }
        )),
        Err(Status::InsufficientRights)
    );
    assert_eq!(
        status(call(
            &mut k,
            cpu,
            a::MemMap {
                domain: Slot::SELF_DOMAIN,
                memory: Slot(1),
                ipa,
                first_frame: first,
                frame_count: 4,
                perms: ro,
            }
        )),
        Ok(())
    );
    assert_eq!(
        k.domain(id).unwrap().stage2.pages.get(&ipa).map(|p| p.1),
        Some(Rights::READ)
    );
    // Overlapping an existing mapping: refused.
    assert_eq!(
        status(call(
            &mut k,
            cpu,
            a::MemMap {
                domain: Slot::SELF_DOMAIN,
                memory: Slot(1),
                ipa,
                first_frame: first,
                frame_count: 1,
                perms: ro,
            }
        )),
        Err(Status::SlotOccupied)
    );
    // Revoking slot 0's descendants removes slot 1 and unmaps what was mapped through it.
    let r = call(&mut k, cpu, a::CapRevoke { slot: Slot(0) });
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
        status(call(&mut k, cpu, a::CapIdentify { slot: Slot(1) })),
        Err(Status::InvalidCapability)
    );
}

#[test]
fn cap_delete_unmaps_and_empties_the_slot() {
    let (mut k, cpu) = single("deleter");
    let id = id_of(&k, "deleter");
    assert_eq!(
        status(call(&mut k, cpu, a::CapDelete { slot: Slot(0) })),
        Ok(())
    );
    assert!(k.domain(id).unwrap().stage2.pages.is_empty());
    assert_eq!(
        status(call(&mut k, cpu, a::CapDelete { slot: Slot(0) })),
        Err(Status::InvalidCapability)
    );
}

#[test]
fn cap_grant_needs_a_domain_capability() {
    let (mut k, cpu) = single("granter");
    // Slot 0 is Memory, not Domain.
    let r = call(
        &mut k,
        cpu,
        a::CapGrant {
            src: Slot(0),
            domain: Slot(0),
            dst: Slot(3),
            rights: Rights::READ,
            first_frame: 0,
            frame_count: 0,
        },
    );
    assert_eq!(status(r), Err(Status::InvalidCapability));
    let r = call(
        &mut k,
        cpu,
        a::CapGrant {
            src: Slot(0),
            domain: Slot(7),
            dst: Slot(3),
            rights: Rights::READ,
            first_frame: 0,
            frame_count: 0,
        },
    );
    assert_eq!(status(r), Err(Status::InvalidCapability));
}

#[test]
fn vcpu_create_keeps_to_the_callers_cpus_without_scheduling_authority() {
    let (mut k, cpu) = single("pinned");
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
    for (target, index) in [(Slot::SELF_DOMAIN, Slot(1)), (Slot(5), Slot(0))] {
        assert_eq!(
            status(call(
                &mut k,
                cpu,
                a::VcpuCreate {
                    domain: target,
                    dst: Slot(7),
                    index,
                    cpu: 1,
                }
            )),
            Err(Status::InsufficientRights),
            "CPU 1 is outside its pinning (target {:#x})",
            target.raw()
        );
    }
    // ANY_CPU picks one of its own.
    let any = sysimage::ANY_CPU as u64;
    assert_eq!(
        status(call(
            &mut k,
            cpu,
            a::VcpuCreate {
                domain: Slot(5),
                dst: Slot(7),
                index: Slot(0),
                cpu: any,
            }
        )),
        Ok(())
    );
    let child = DomainId(r[1] as u16);
    let v = k.domain(child).unwrap().vcpus[0];
    assert_eq!(k.vcpu(v).unwrap().cpu, 0);
    assert_eq!(
        status(call(
            &mut k,
            cpu,
            a::VcpuCreate {
                domain: Slot::SELF_DOMAIN,
                dst: Slot(8),
                index: Slot(1),
                cpu: any,
            }
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
    let child = DomainId(r[1] as u16);
    let first = call(&mut k, cpu, a::CapIdentify { slot: Slot(0) })[2];
    let rwx = Rights::READ | Rights::WRITE | Rights::EXECUTE;
    assert_eq!(
        status(call(
            &mut k,
            cpu,
            a::CapDerive {
                src: Slot(0),
                dst: Slot(6),
                rights: rwx,
                first_frame: first + 8,
                frame_count: 8,
            }
        )),
        Ok(())
    );
    assert_eq!(
        status(call(
            &mut k,
            cpu,
            a::MemMap {
                domain: Slot(5),
                memory: Slot(6),
                ipa: 0x4000_0000,
                first_frame: first + 8,
                frame_count: 8,
                perms: rwx,
            }
        )),
        Ok(())
    );
    assert_eq!(k.domain(child).unwrap().mappings.len(), 1);
    // A vCPU for it, on CPU 1.
    assert_eq!(
        status(call(
            &mut k,
            cpu,
            a::VcpuCreate {
                domain: Slot(5),
                dst: Slot(7),
                index: Slot(1),
                cpu: 0,
            }
        )),
        Err(Status::InvalidArgument),
        "index 0 first"
    );
    assert_eq!(
        status(call(
            &mut k,
            cpu,
            a::VcpuCreate {
                domain: Slot(5),
                dst: Slot(7),
                index: Slot(0),
                cpu: 9,
            }
        )),
        Err(Status::InvalidArgument),
        "no CPU 9"
    );
    assert_eq!(
        status(call(
            &mut k,
            cpu,
            a::VcpuCreate {
                domain: Slot(5),
                dst: Slot(7),
                index: Slot(0),
                cpu: 1,
            }
        )),
        Ok(())
    );
    assert_eq!(
        status(call(
            &mut k,
            cpu,
            a::VcpuStart {
                vcpu: Slot(7),
                entry: 0x9000_0000,
                arg: 0,
            }
        )),
        Err(Status::InvalidArgument),
        "entry unmapped"
    );
    assert_eq!(
        status(call(
            &mut k,
            cpu,
            a::VcpuStart {
                vcpu: Slot(7),
                entry: 0x4000_0000,
                arg: 3,
            }
        )),
        Ok(())
    );
    assert_eq!(
        status(call(
            &mut k,
            cpu,
            a::VcpuStart {
                vcpu: Slot(7),
                entry: 0x4000_0000,
                arg: 3,
            }
        )),
        Err(Status::WrongState)
    );
    let v = run(&mut k, 1).unwrap();
    assert_eq!(k.vcpu(v).unwrap().domain, child);
    assert_eq!(k.vcpu(v).unwrap().context.regs[0], 3);
    // Pause, unpause, destroy through the Domain capability.
    assert_eq!(
        status(call(&mut k, cpu, a::DomainUnpause { domain: Slot(5) })),
        Err(Status::WrongState)
    );
    assert_eq!(
        status(call(&mut k, cpu, a::DomainPause { domain: Slot(5) })),
        Ok(())
    );
    assert_eq!(run(&mut k, 1), None, "a paused domain does not run");
    assert_eq!(
        status(call(&mut k, cpu, a::DomainUnpause { domain: Slot(5) })),
        Ok(())
    );
    assert_eq!(run(&mut k, 1), Some(v));
    assert_eq!(
        status(call(&mut k, cpu, a::DomainDestroy { domain: Slot(5) })),
        Ok(())
    );
    // Its vCPU was running on CPU 1: the domain goes once CPU 1 lets go of it.
    assert!(k.domain(child).is_some());
    assert_eq!(run(&mut k, 1), None);
    assert!(k.domain(child).is_none());
    assert_eq!(
        status(call(&mut k, cpu, a::DomainDestroy { domain: Slot(5) })),
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
    let r = call(
        &mut k,
        cpu,
        a::MemUnmap {
            domain: Slot::SELF_DOMAIN,
            ipa: 0x4000_0000,
            frame_count: 1,
        },
    );
    assert_eq!(
        status(r),
        Err(Status::InvalidArgument),
        "cutting the RAM mapping in two"
    );
    let r = call(
        &mut k,
        cpu,
        a::MemUnmap {
            domain: Slot::SELF_DOMAIN,
            ipa: 0x4000_0000,
            frame_count: 64,
        },
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
        &Exit::Smc {
            function: 0xC200_0000,
            args: [0; 6],
        },
    );
    assert_eq!(
        k.vcpu(v).unwrap().context.result.unwrap()[0],
        psci::ret::NOT_SUPPORTED
    );
}
