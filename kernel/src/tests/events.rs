//! Event channels and shared memory.

use mica_abi::args::{self as a, Port, Slot};
use mica_abi::hypercall::Call;
use mica_abi::sysimage;
use mica_abi::{ObjectType, Rights, Status};

use crate::kernel::{Exit, Kernel};
use crate::memmap::RangeSet;
use crate::psci;
use crate::vcpu::VcpuState;

use crate::testing::*;

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
        flags: 0,
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
    let owner_pa = k
        .domain(ping)
        .unwrap()
        .mappings
        .translate(ring_owner.ipa)
        .unwrap();
    assert_eq!(
        k.domain(pong).unwrap().mappings.translate(0x8000_0000),
        Some(owner_pa)
    );
    assert_eq!(
        k.domain(pong).unwrap().mappings.translate(0x8000_1000),
        Some(owner_pa + 0x1000)
    );
    assert_eq!(
        k.domain(pong).unwrap().mappings.translate(0x8000_2000),
        None
    );
}

#[test]
fn events_set_page_bits_wake_the_receiver_and_coalesce() {
    let mut k = linked_kernel();
    let (ping, pong) = (id_of(&k, "ping"), id_of(&k, "pong"));
    let to_pong = Slot(boot_info(&k, ping).cap("to-pong").unwrap().slot);
    let to_ping = Slot(boot_info(&k, pong).cap("to-ping").unwrap().slot);
    let page = sysimage::DOMAIN_RAM_BASE + 0x10000;
    // Binding needs an event page first.
    assert_eq!(
        status(call(
            &mut k,
            1,
            a::EvtchnBind {
                endpoint: to_ping,
                port: Port(70),
                vcpu: Slot(0),
            }
        )),
        Err(Status::WrongState)
    );
    // Raw registers from here on where decoding must refuse: a misaligned page, a port past
    // the event page, a mask flag that is neither 0 nor 1.
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
        status(call(&mut k, 1, a::EventPageSet { ipa: 0x9000_0000 })),
        Err(Status::OutOfRange)
    );
    assert_eq!(
        status(call(&mut k, 1, a::EventPageSet { ipa: page })),
        Ok(())
    );
    assert_eq!(
        status(hvc(
            &mut k,
            1,
            Call::EvtchnBind,
            [to_ping.raw(), 4096, 0, 0, 0, 0]
        )),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        status(call(
            &mut k,
            1,
            a::EvtchnBind {
                endpoint: to_ping,
                port: Port(70),
                vcpu: Slot(5),
            }
        )),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        status(call(
            &mut k,
            1,
            a::EvtchnBind {
                endpoint: to_ping,
                port: Port(70),
                vcpu: Slot(0),
            }
        )),
        Ok(())
    );
    // pong blocks in WFI; ping's send wakes it and sets port 70.
    let pong_v = k.current(1).unwrap();
    k.handle_exit(1, &Exit::WaitForInterrupt);
    assert_eq!(run(&mut k, 1), None);
    assert_eq!(
        status(call(&mut k, 0, a::EvtchnSend { endpoint: to_pong })),
        Ok(())
    );
    assert_eq!(run(&mut k, 1), Some(pong_v), "woken");
    let page_pa = k.domain(pong).unwrap().mappings.translate(page).unwrap();
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
            status(call(&mut k, 0, a::EvtchnSend { endpoint: to_pong })),
            Ok(())
        );
    }
    assert_eq!(k.frames.free_bytes(), free);
    // Those sends left a wake-up pending: the next WFI returns at once.
    k.handle_exit(1, &Exit::WaitForInterrupt);
    assert_eq!(run(&mut k, 1), Some(pong_v));
    // Masked: bits but no wake-up; unmask wakes.
    assert_eq!(
        status(hvc(
            &mut k,
            1,
            Call::EvtchnMask,
            [to_ping.raw(), 2, 0, 0, 0, 0]
        )),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        status(call(
            &mut k,
            1,
            a::EvtchnMask {
                endpoint: to_ping,
                masked: true,
            }
        )),
        Ok(())
    );
    k.handle_exit(1, &Exit::WaitForInterrupt);
    assert_eq!(run(&mut k, 1), None);
    assert_eq!(
        status(call(&mut k, 0, a::EvtchnSend { endpoint: to_pong })),
        Ok(())
    );
    assert_eq!(run(&mut k, 1), None, "masked: still blocked");
    k.vcpu_mut(pong_v).unwrap().state = VcpuState::Blocked;
    k.wake(pong_v);
    run(&mut k, 1).unwrap();
    assert_eq!(
        status(call(
            &mut k,
            1,
            a::EvtchnMask {
                endpoint: to_ping,
                masked: false,
            }
        )),
        Ok(())
    );
    // Rights: pong cannot send on ping's endpoint slot number in its own space if empty.
    assert_eq!(
        status(call(&mut k, 1, a::EvtchnSend { endpoint: Slot(40) })),
        Err(Status::InvalidCapability)
    );
}

#[test]
fn closing_an_endpoint_makes_sends_fail_with_peer_closed() {
    let mut k = linked_kernel();
    let (ping, pong) = (id_of(&k, "ping"), id_of(&k, "pong"));
    let to_pong = Slot(boot_info(&k, ping).cap("to-pong").unwrap().slot);
    let to_ping = Slot(boot_info(&k, pong).cap("to-ping").unwrap().slot);
    assert_eq!(
        status(call(&mut k, 1, a::CapDelete { slot: to_ping })),
        Ok(())
    );
    assert_eq!(
        status(call(&mut k, 0, a::EvtchnSend { endpoint: to_pong })),
        Err(Status::PeerClosed)
    );
    // And when the peer's whole domain goes.
    let mut k = linked_kernel();
    raw(&mut k, 1, psci::SYSTEM_OFF, [0; 6]);
    assert_eq!(run(&mut k, 1), None);
    assert_eq!(
        status(call(&mut k, 0, a::EvtchnSend { endpoint: to_pong })),
        Err(Status::PeerClosed)
    );
}

#[test]
fn evtchn_create_makes_a_connected_pair_in_the_callers_space() {
    let mut k = linked_kernel();
    assert_eq!(
        status(call(
            &mut k,
            0,
            a::EvtchnCreate {
                dst_a: Slot(20),
                dst_b: Slot(20),
            }
        )),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        status(call(
            &mut k,
            0,
            a::EvtchnCreate {
                dst_a: Slot(0),
                dst_b: Slot(21),
            }
        )),
        Err(Status::SlotOccupied)
    );
    assert_eq!(
        status(call(
            &mut k,
            0,
            a::EvtchnCreate {
                dst_a: Slot(20),
                dst_b: Slot(21),
            }
        )),
        Ok(())
    );
    let page = sysimage::DOMAIN_RAM_BASE + 0x10000;
    assert_eq!(
        status(call(&mut k, 0, a::EventPageSet { ipa: page })),
        Ok(())
    );
    assert_eq!(
        status(call(
            &mut k,
            0,
            a::EvtchnBind {
                endpoint: Slot(21),
                port: Port(3),
                vcpu: Slot(0),
            }
        )),
        Ok(())
    );
    assert_eq!(
        status(call(&mut k, 0, a::EvtchnSend { endpoint: Slot(20) })),
        Ok(())
    );
    let ping = id_of(&k, "ping");
    let pa = k.domain(ping).unwrap().mappings.translate(page).unwrap();
    assert_eq!(read_u64(&k.hal.memory.borrow(), pa), 1 << 3);
}

#[test]
fn revoking_a_share_unmaps_it_from_the_peer_only() {
    let mut k = linked_kernel();
    let (ping, pong) = (id_of(&k, "ping"), id_of(&k, "pong"));
    let ring = Slot(boot_info(&k, ping).cap("ring").unwrap().slot);
    let r = call(&mut k, 0, a::CapRevoke { slot: ring });
    assert_eq!(status(r), Ok(()));
    assert_eq!(r[1], 1, "the peer's copy");
    assert_eq!(
        k.domain(pong).unwrap().mappings.translate(0x8000_0000),
        None
    );
    assert!(!k
        .domain(pong)
        .unwrap()
        .stage2
        .pages
        .contains_key(&0x8000_0000));
    assert!(
        k.domain(ping)
            .unwrap()
            .mappings
            .translate(sysimage::DOMAIN_RAM_BASE + 0x8000)
            .is_some(),
        "the owner keeps it"
    );
    // The peer's next access faults and stops only the peer.
    k.handle_exit(
        1,
        &Exit::MemoryFault {
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
