//! Isolation: objects decide lifetimes; tables, names, placement, shares and the console.

use mica_abi::args::{self as a, Slot};
use mica_abi::{Rights, Status};

use crate::domain::DomainId;
use crate::kernel::{Exit, Kernel};
use crate::vcpu::{VcpuId, VcpuState};

use crate::testing::*;

/// The builder creates a child (Domain capability in slot 5) running on `child_cpu` in 8
/// pages of the builder's RAM (Memory capability in slot 6, vCPU capability in slot 7), with
/// every call's arguments typed as the runtime issues them (`mica_abi::args`).
fn child_running_on(k: &mut Kernel<MockHal>, cpu: usize, child_cpu: u64) -> (DomainId, VcpuId) {
    let create = a::DomainCreate {
        dst: Slot(5),
        slots: Slot(16),
        quota: 64 * 1024,
    };
    let r = call(k, cpu, create);
    assert_eq!(status(r), Ok(()));
    let child = DomainId(r[1] as u16);
    let first = call(k, cpu, a::CapIdentify { slot: Slot(0) })[2];
    let rwx = Rights::READ | Rights::WRITE | Rights::EXECUTE;
    let derive = a::CapDerive {
        src: Slot(0),
        dst: Slot(6),
        rights: rwx,
        first_frame: first + 8,
        frame_count: 8,
    };
    assert_eq!(status(call(k, cpu, derive)), Ok(()));
    let map = a::MemMap {
        domain: Slot(5),
        memory: Slot(6),
        ipa: 0x4000_0000,
        first_frame: first + 8,
        frame_count: 8,
        perms: rwx,
    };
    assert_eq!(status(call(k, cpu, map)), Ok(()));
    let vcpu = a::VcpuCreate {
        domain: Slot(5),
        dst: Slot(7),
        index: Slot(0),
        cpu: child_cpu,
    };
    assert_eq!(status(call(k, cpu, vcpu)), Ok(()));
    let start = a::VcpuStart {
        vcpu: Slot(7),
        entry: 0x4000_0000,
        arg: 0,
    };
    assert_eq!(status(call(k, cpu, start)), Ok(()));
    let v = run(k, child_cpu as usize).expect("the child runs");
    assert_eq!(k.vcpu(v).unwrap().domain, child);
    (child, v)
}

#[test]
fn deleting_a_vcpu_capability_stops_the_vcpu_for_good() {
    let (mut k, cpu) = builder();
    let (child, v) = child_running_on(&mut k, cpu, 1);
    assert_eq!(
        status(call(&mut k, cpu, a::CapDelete { slot: Slot(7) })),
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
        status(call(&mut k, cpu, a::CapDelete { slot: Slot(5) })),
        Ok(())
    );
    assert_eq!(
        k.domain(child).map(|d| d.state),
        Some(crate::domain::DomainState::Dying)
    );
    // Until CPU 1 lets go of the vCPU, the id stays taken: a new domain gets another one.
    let r = call(
        &mut k,
        cpu,
        a::DomainCreate {
            dst: Slot(9),
            slots: Slot(16),
            quota: 64 * 1024,
        },
    );
    assert_eq!(status(r), Ok(()));
    assert_ne!(
        r[1] as u16, child.0,
        "the id of a dying domain is not reused"
    );
    assert_eq!(run(&mut k, 1), None, "the vCPU leaves CPU 1 and is gone");
    assert!(k.domain(child).is_none());
    assert!(k.vcpu(v).is_none());
    assert_eq!(
        status(call(&mut k, cpu, a::CapIdentify { slot: Slot(7) })),
        Err(Status::InvalidCapability),
        "the Vcpu capability went with its domain"
    );
    // The next domain created may reuse the id, and nothing of the old one is left in it.
    assert_eq!(
        status(call(&mut k, cpu, a::CapDelete { slot: Slot(9) })),
        Ok(())
    );
    let r = call(
        &mut k,
        cpu,
        a::DomainCreate {
            dst: Slot(5),
            slots: Slot(16),
            quota: 64 * 1024,
        },
    );
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
    let r = call(
        &mut k,
        cpu,
        a::DomainCreate {
            dst: Slot(10),
            slots: Slot(8),
            quota: 8 * 1024,
        },
    );
    let grandchild = DomainId(r[1] as u16);
    let builder_id = id_of(&k, "builder");
    k.handle_exit(
        cpu,
        &Exit::MemoryFault {
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
    let first = call(&mut k, cpu, a::CapIdentify { slot: Slot(0) })[2];
    let used = |k: &Kernel<MockHal>| k.caps.space(me.space()).unwrap().used;
    let before = used(&k);
    let rw = Rights::READ | Rights::WRITE;
    // One page at ever-new addresses, mapped and unmapped: the charge comes back each time.
    for i in 0..200u64 {
        let ipa = 0x1_0000_0000 + i * (1 << 30) + i * (1 << 21);
        let map = a::MemMap {
            domain: Slot::SELF_DOMAIN,
            memory: Slot(0),
            ipa,
            first_frame: first,
            frame_count: 1,
            perms: rw,
        };
        assert_eq!(status(call(&mut k, cpu, map)), Ok(()));
        assert_eq!(used(&k), before + 2 * 4096, "a level-2 and a level-3 table");
        let unmap = a::MemUnmap {
            domain: Slot::SELF_DOMAIN,
            ipa,
            frame_count: 1,
        };
        assert_eq!(status(call(&mut k, cpu, unmap)), Ok(()));
        assert_eq!(used(&k), before);
    }
    // Tables a mapping needs are paid by the domain mapped into: a child with a 16 KiB quota
    // gets two far-apart pages (two tables each), not a third.
    let r = call(
        &mut k,
        cpu,
        a::DomainCreate {
            dst: Slot(5),
            slots: Slot(1),
            quota: 16 * 1024,
        },
    );
    let child = DomainId(r[1] as u16);
    let mine = used(&k);
    for i in 0..3u64 {
        let map = a::MemMap {
            domain: Slot(5),
            memory: Slot(0),
            ipa: 0x1_0000_0000 + i * (1 << 30),
            first_frame: first,
            frame_count: 1,
            perms: rw,
        };
        let expected = if i < 2 {
            Ok(())
        } else {
            Err(Status::QuotaExceeded)
        };
        assert_eq!(status(call(&mut k, cpu, map)), expected, "{i}");
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
    let set = |k: &mut Kernel<MockHal>, slot: Slot, text: &str| {
        status(call(k, cpu, a::DomainSetName::new(slot, text.as_bytes())))
    };
    assert_eq!(
        set(&mut k, Slot::SELF_DOMAIN, "fresh"),
        Err(Status::InsufficientRights)
    );
    let r = call(
        &mut k,
        cpu,
        a::DomainCreate {
            dst: Slot(5),
            slots: Slot(16),
            quota: 64 * 1024,
        },
    );
    let child = DomainId(r[1] as u16);
    assert_eq!(
        k.domain(child).unwrap().name(),
        format!("unnamed-{}", child.0)
    );
    assert_eq!(set(&mut k, Slot(5), "builder"), Err(Status::NameInUse));
    assert_eq!(set(&mut k, Slot(5), "unnamed-3"), Err(Status::NameInUse));
    assert_eq!(set(&mut k, Slot(5), "child"), Ok(()));
    assert_eq!(set(&mut k, Slot(5), "child"), Ok(()), "its own name again");
    let r = call(
        &mut k,
        cpu,
        a::DomainCreate {
            dst: Slot(6),
            slots: Slot(16),
            quota: 64 * 1024,
        },
    );
    assert_eq!(status(r), Ok(()));
    assert_eq!(set(&mut k, Slot(6), "child"), Err(Status::NameInUse));
    assert_eq!(k.domain(child).unwrap().name(), "child");
}

#[test]
fn a_domain_takes_at_most_its_share_of_the_fixed_tables() {
    let (mut k, cpu) = single("greedy");
    let mut domains = 0;
    for slot in 5..30 {
        match status(call(
            &mut k,
            cpu,
            a::DomainCreate {
                dst: Slot(slot),
                slots: Slot(1),
                quota: 0,
            },
        )) {
            Ok(()) => domains += 1,
            Err(e) => {
                assert_eq!(e, Status::QuotaExceeded);
                break;
            }
        }
    }
    assert_eq!(domains, crate::kernel::SPACES / 4);
    let mut channels = 0;
    for slot in (30..64).step_by(2) {
        let pair = a::EvtchnCreate {
            dst_a: Slot(slot),
            dst_b: Slot(slot + 1),
        };
        match status(call(&mut k, cpu, pair)) {
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
    let write = |k: &mut Kernel<MockHal>, bytes: &[u8]| call(k, cpu, a::ConsoleWrite::new(bytes));
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

#[test]
fn log_lines_about_a_domains_children_are_paid_by_it() {
    let (mut k, cpu) = single("parent");
    let before = k.hal.console.borrow().len();
    for _ in 0..2000 {
        let r = call(
            &mut k,
            cpu,
            a::DomainCreate {
                dst: Slot(5),
                slots: Slot(1),
                quota: 0,
            },
        );
        assert_eq!(status(r), Ok(()));
        assert_eq!(
            status(call(&mut k, cpu, a::CapDelete { slot: Slot(5) })),
            Ok(())
        );
    }
    // Each child's end is a line (about 90 bytes); the mock clock stands still, so the
    // parent's budget is never refilled.
    let printed = k.hal.console.borrow().len() - before;
    assert!(
        printed <= crate::console::BURST_BYTES as usize,
        "{printed} bytes of log for 2000 children"
    );
    k.hal.now.set(10_000_000_000);
    let r = call(
        &mut k,
        cpu,
        a::DomainCreate {
            dst: Slot(5),
            slots: Slot(1),
            quota: 0,
        },
    );
    assert_eq!(status(r), Ok(()));
    assert_eq!(
        status(call(&mut k, cpu, a::CapDelete { slot: Slot(5) })),
        Ok(())
    );
    let console = k.hal.console.borrow();
    assert!(console.contains(
        "bytes of log about domain parent dropped: over its budget)\nmica: domain unnamed-"
    ));
}
