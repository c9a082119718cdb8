//! Unit tests: every operation, and every error each operation can return.
//!
//! The invariants over arbitrary operation sequences are checked in `verify/`; these tests pin
//! down each rule on a hand-built example so a failure points at one line of the docs.

extern crate std;

use std::vec::Vec;

use mica_abi::{ObjectType, Rights, Status};

use crate::{
    domain_charge, meaningful_rights, object_cost, CapAddr, CapSystem, FrameRange, ObjectRef,
    Removal, SpaceId, SpaceState,
};

type System = CapSystem<4, 8, 8>;

const ROOT_QUOTA: u64 = 1 << 20;
const MEM: Rights = Rights::READ.union(Rights::WRITE).union(Rights::EXECUTE);

fn frames(first: u64, count: u64) -> FrameRange {
    FrameRange::new(first, count).expect("valid range")
}

/// A root space with a Memory object [0, 16) in slot 0.
fn setup() -> (System, SpaceId, ObjectRef) {
    let mut sys = System::new();
    let root = sys.create_root_space(8, ROOT_QUOTA).expect("root");
    let mem = sys
        .create_object(root, 0, ObjectType::Memory, Some(frames(0, 16)))
        .expect("memory");
    (sys, root, mem)
}

/// `setup` plus a child domain whose Domain capability is in root slot 1.
fn setup_with_domain() -> (System, SpaceId, SpaceId) {
    let (mut sys, root, _) = setup();
    let (child, _) = sys.create_domain(root, 1, 4, 4096).expect("domain");
    (sys, root, child)
}

fn collect(sys: &mut System, space: SpaceId, slot: u16, revoke: bool) -> Vec<Removal> {
    let mut removed = Vec::new();
    if revoke {
        sys.revoke(space, slot, |r| removed.push(r))
            .expect("revoke");
    } else {
        sys.delete(space, slot, |r| removed.push(r))
            .expect("delete");
    }
    removed
}

#[test]
fn frame_ranges_are_checked() {
    assert_eq!(FrameRange::new(0, 0), None);
    assert_eq!(FrameRange::new(u64::MAX, 1), None);
    assert!(FrameRange::new(u64::MAX - 1, 1).is_some());
    assert!(frames(0, 4).contains(frames(1, 3)));
    assert!(!frames(0, 4).contains(frames(1, 4)));
    assert!(frames(0, 4).overlaps(frames(3, 1)));
    assert!(!frames(0, 4).overlaps(frames(4, 1)));
}

#[test]
fn root_space_rules() {
    let mut sys = CapSystem::<2, 4, 2>::new();
    assert_eq!(sys.create_root_space(0, 1), Err(Status::InvalidArgument));
    assert_eq!(sys.create_root_space(5, 1), Err(Status::InvalidArgument));
    assert_eq!(sys.create_root_space(4, 1), Ok(SpaceId(0)));
    assert_eq!(sys.create_root_space(4, 1), Ok(SpaceId(1)));
    assert_eq!(sys.create_root_space(4, 1), Err(Status::NoFreeSlot));
}

#[test]
fn create_object_gives_all_meaningful_rights_and_charges() {
    let (sys, root, mem) = setup();
    let info = sys.identify(root, 0).expect("identify");
    assert_eq!(info.object, mem);
    assert_eq!(info.object_type, ObjectType::Memory);
    assert_eq!(info.rights, MEM | Rights::GRANT);
    assert_eq!(info.frames, Some(frames(0, 16)));
    assert_eq!(
        sys.space(root).map(|s| s.used),
        Some(object_cost(ObjectType::Memory))
    );
}

#[test]
fn create_object_errors() {
    let (mut sys, root, _) = setup();
    let ev = ObjectType::EventChannel;
    assert_eq!(
        sys.create_object(root, 0, ev, None),
        Err(Status::SlotOccupied)
    );
    assert_eq!(
        sys.create_object(root, 8, ev, None),
        Err(Status::InvalidCapability)
    );
    assert_eq!(
        sys.create_object(SpaceId(3), 0, ev, None),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        sys.create_object(SpaceId(u16::MAX), 0, ev, None),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        sys.create_object(root, 1, ObjectType::Domain, None),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        sys.create_object(root, 1, ObjectType::Memory, None),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        sys.create_object(root, 1, ev, Some(frames(100, 1))),
        Err(Status::InvalidArgument)
    );
    // Overlaps the live Memory object [0, 16).
    assert_eq!(
        sys.create_object(root, 1, ObjectType::DeviceMemory, Some(frames(15, 2))),
        Err(Status::InvalidArgument)
    );
    // Object table full (8 entries, one used).
    for slot in 1..8 {
        sys.create_object(root, slot, ev, None)
            .expect("event channel");
    }
    sys.delete(root, 7, |_| {}).expect("delete");
    let mut small = CapSystem::<1, 8, 1>::new();
    let r = small.create_root_space(8, ROOT_QUOTA).expect("root");
    small.create_object(r, 0, ev, None).expect("first");
    assert_eq!(
        small.create_object(r, 1, ev, None),
        Err(Status::OutOfMemory)
    );
}

#[test]
fn quota_is_charged_and_refunded() {
    let mut sys = System::new();
    let cost = object_cost(ObjectType::EventChannel);
    let root = sys.create_root_space(8, 2 * cost).expect("root");
    let ev = ObjectType::EventChannel;
    sys.create_object(root, 0, ev, None).expect("one");
    sys.create_object(root, 1, ev, None).expect("two");
    assert_eq!(
        sys.create_object(root, 2, ev, None),
        Err(Status::QuotaExceeded)
    );
    sys.delete(root, 0, |_| {}).expect("delete");
    assert_eq!(sys.space(root).map(|s| s.used), Some(cost));
    sys.create_object(root, 2, ev, None)
        .expect("refunded quota is usable");
}

#[test]
fn object_survives_while_any_capability_names_it() {
    let (mut sys, root, mem) = setup();
    sys.derive(root, 0, 1, Rights::READ, None).expect("derive");
    let removed = collect(&mut sys, root, 0, false);
    assert_eq!(removed.len(), 1);
    assert!(sys.resolve(mem).is_ok());
    let removed = collect(&mut sys, root, 1, false);
    assert!(removed.contains(&Removal::ObjectDestroyed {
        object: mem,
        object_type: ObjectType::Memory
    }));
    assert_eq!(sys.resolve(mem), Err(Status::StaleCapability));
    assert_eq!(sys.space(root).map(|s| s.used), Some(0));
}

#[test]
fn stale_references_never_alias_a_new_object() {
    let (mut sys, root, mem) = setup();
    sys.delete(root, 0, |_| {}).expect("delete");
    let again = sys
        .create_object(root, 0, ObjectType::Memory, Some(frames(0, 16)))
        .expect("recreate");
    assert_eq!(again.index, mem.index, "entry reused");
    assert_ne!(again.generation, mem.generation);
    assert_eq!(sys.resolve(mem), Err(Status::StaleCapability));
    assert!(sys.resolve(again).is_ok());
    let bogus = ObjectRef {
        index: u32::MAX,
        generation: 0,
    };
    assert_eq!(sys.resolve(bogus), Err(Status::InvalidCapability));
}

#[test]
fn identify_and_lookup_errors() {
    let (sys, root, _) = setup();
    assert_eq!(sys.identify(root, 1), Err(Status::InvalidCapability));
    assert_eq!(sys.identify(root, 8), Err(Status::InvalidCapability));
    assert_eq!(sys.identify(root, u16::MAX), Err(Status::InvalidCapability));
    assert_eq!(sys.identify(SpaceId(2), 0), Err(Status::InvalidArgument));
    let mem = ObjectType::Memory;
    assert!(sys.lookup(root, 0, mem, Rights::WRITE).is_ok());
    assert_eq!(
        sys.lookup(root, 0, ObjectType::Irq, Rights::empty()),
        Err(Status::InvalidCapability)
    );
    assert_eq!(
        sys.lookup(root, 0, mem, Rights::SEND),
        Err(Status::InsufficientRights)
    );
}

#[test]
fn derive_narrows_rights_and_range() {
    let (mut sys, root, mem) = setup();
    sys.derive(root, 0, 1, Rights::READ, Some(frames(4, 4)))
        .expect("derive");
    let child = sys.identify(root, 1).expect("identify");
    assert_eq!(child.object, mem);
    assert_eq!(child.rights, Rights::READ);
    assert_eq!(child.frames, Some(frames(4, 4)));
    sys.derive(root, 1, 2, Rights::READ, None)
        .expect("same range");
    assert_eq!(
        sys.identify(root, 2).map(|i| i.frames),
        Ok(Some(frames(4, 4)))
    );
    let view = sys.capability(CapAddr::new(root, 2)).expect("view");
    assert_eq!(view.parent, Some(CapAddr::new(root, 1)));
}

#[test]
fn derive_errors() {
    let (mut sys, root, _) = setup();
    sys.derive(root, 0, 1, Rights::READ, Some(frames(4, 4)))
        .expect("derive");
    assert_eq!(
        sys.derive(root, 1, 2, Rights::READ | Rights::WRITE, None),
        Err(Status::InsufficientRights)
    );
    assert_eq!(
        sys.derive(root, 1, 2, Rights::READ, Some(frames(3, 2))),
        Err(Status::OutOfRange)
    );
    assert_eq!(
        sys.derive(root, 1, 2, Rights::READ, Some(frames(4, 5))),
        Err(Status::OutOfRange)
    );
    assert_eq!(
        sys.derive(root, 0, 2, Rights::SEND, None),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        sys.derive(root, 0, 2, Rights::from_bits_retain(1 << 31), None),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        sys.derive(root, 0, 1, Rights::READ, None),
        Err(Status::SlotOccupied)
    );
    assert_eq!(
        sys.derive(root, 0, 0, Rights::READ, None),
        Err(Status::SlotOccupied)
    );
    assert_eq!(
        sys.derive(root, 5, 2, Rights::READ, None),
        Err(Status::InvalidCapability)
    );
    assert_eq!(
        sys.derive(root, 0, 9, Rights::READ, None),
        Err(Status::InvalidCapability)
    );
    assert_eq!(
        sys.derive(SpaceId(7), 0, 2, Rights::READ, None),
        Err(Status::InvalidArgument)
    );
    sys.create_object(root, 3, ObjectType::EventChannel, None)
        .expect("event channel");
    let before_ev = sys.clone();
    assert_eq!(
        sys.derive(root, 3, 4, Rights::SEND, Some(frames(0, 1))),
        Err(Status::InvalidArgument)
    );
    assert_eq!(sys, before_ev, "failed derive changed nothing");
}

#[test]
fn domain_creation_charges_creator() {
    let (sys, root, child) = setup_with_domain();
    let info = sys.identify(root, 1).expect("domain cap");
    assert_eq!(info.object_type, ObjectType::Domain);
    assert_eq!(info.rights, meaningful_rights(ObjectType::Domain));
    let expected = object_cost(ObjectType::Memory) + domain_charge(4, 4096).expect("charge");
    assert_eq!(sys.space(root).map(|s| s.used), Some(expected));
    let child_info = sys.space(child).expect("child");
    assert_eq!(child_info.state, SpaceState::Live);
    assert_eq!(child_info.parent, Some(root));
    assert_eq!(child_info.slots, 4);
}

#[test]
fn domain_creation_errors() {
    let (mut sys, root, _) = setup_with_domain();
    assert_eq!(sys.create_domain(root, 1, 4, 0), Err(Status::SlotOccupied));
    assert_eq!(
        sys.create_domain(root, 2, 0, 0),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        sys.create_domain(root, 2, 9, 0),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        sys.create_domain(root, 2, 4, u64::MAX),
        Err(Status::QuotaExceeded)
    );
    assert_eq!(
        sys.create_domain(root, 2, 4, ROOT_QUOTA),
        Err(Status::QuotaExceeded)
    );
    assert_eq!(
        sys.create_domain(root, 99, 4, 0),
        Err(Status::InvalidCapability)
    );
    sys.create_domain(root, 2, 4, 0).expect("third space");
    sys.create_domain(root, 3, 4, 0).expect("fourth space");
    assert_eq!(sys.create_domain(root, 4, 4, 0), Err(Status::NoFreeSlot));
}

#[test]
fn grant_places_a_child_in_the_target_space() {
    let (mut sys, root, child) = setup_with_domain();
    let at = sys
        .grant(root, 0, 1, 2, Rights::READ, Some(frames(0, 2)))
        .expect("grant");
    assert_eq!(at, CapAddr::new(child, 2));
    let info = sys.identify(child, 2).expect("granted");
    assert_eq!(info.rights, Rights::READ);
    assert_eq!(info.frames, Some(frames(0, 2)));
    let view = sys.capability(at).expect("view");
    assert_eq!(view.parent, Some(CapAddr::new(root, 0)));
}

#[test]
fn grant_errors() {
    let (mut sys, root, child) = setup_with_domain();
    // Source without GRANT.
    sys.derive(root, 0, 2, Rights::READ, None).expect("derive");
    assert_eq!(
        sys.grant(root, 2, 1, 0, Rights::READ, None),
        Err(Status::InsufficientRights)
    );
    // Domain capability without GRANT.
    sys.derive(root, 1, 3, Rights::CONTROL, None)
        .expect("derive");
    assert_eq!(
        sys.grant(root, 0, 3, 0, Rights::READ, None),
        Err(Status::InsufficientRights)
    );
    // Not a Domain capability, empty slot, bad target slot, occupied target slot.
    assert_eq!(
        sys.grant(root, 0, 0, 0, Rights::READ, None),
        Err(Status::InvalidCapability)
    );
    assert_eq!(
        sys.grant(root, 0, 6, 0, Rights::READ, None),
        Err(Status::InvalidCapability)
    );
    assert_eq!(
        sys.grant(root, 6, 1, 0, Rights::READ, None),
        Err(Status::InvalidCapability)
    );
    assert_eq!(
        sys.grant(root, 0, 1, 4, Rights::READ, None),
        Err(Status::InvalidCapability)
    );
    sys.grant(root, 0, 1, 0, Rights::READ, None).expect("grant");
    assert_eq!(
        sys.grant(root, 0, 1, 0, Rights::READ, None),
        Err(Status::SlotOccupied)
    );
    // Rights and range rules are derive's.
    assert_eq!(
        sys.grant(root, 0, 1, 1, Rights::SEND, None),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        sys.grant(root, 0, 1, 1, Rights::READ, Some(frames(10, 10))),
        Err(Status::OutOfRange)
    );
    assert!(sys.identify(child, 1).is_err());
}

#[test]
fn revoke_removes_every_descendant_everywhere() {
    let (mut sys, root, child) = setup_with_domain();
    // root:0 -> root:2 -> child:0 -> child:1, and root:0 -> root:3.
    sys.derive(root, 0, 2, MEM | Rights::GRANT, None)
        .expect("derive");
    sys.grant(root, 2, 1, 0, MEM | Rights::GRANT, None)
        .expect("grant");
    sys.derive(child, 0, 1, Rights::READ, None).expect("derive");
    sys.derive(root, 0, 3, Rights::READ, None).expect("derive");
    let removed = collect(&mut sys, root, 0, true);
    let mut addrs: Vec<CapAddr> = removed
        .iter()
        .filter_map(|r| match r {
            Removal::Capability { addr, .. } => Some(*addr),
            _ => None,
        })
        .collect();
    addrs.sort();
    let mut expected = [
        CapAddr::new(root, 2),
        CapAddr::new(root, 3),
        CapAddr::new(child, 0),
        CapAddr::new(child, 1),
    ];
    expected.sort();
    assert_eq!(addrs, expected);
    assert_eq!(
        removed.len(),
        4,
        "no object destroyed: the revoked capability stays"
    );
    assert!(sys.identify(root, 0).is_ok());
    assert_eq!(sys.children(CapAddr::new(root, 0)).count(), 0);
    assert_eq!(sys.revoke(root, 0, |_| {}), Ok(0));
}

#[test]
fn revoke_and_delete_errors() {
    let (mut sys, root, _) = setup();
    assert_eq!(sys.revoke(root, 1, |_| {}), Err(Status::InvalidCapability));
    assert_eq!(
        sys.revoke(root, 100, |_| {}),
        Err(Status::InvalidCapability)
    );
    assert_eq!(
        sys.revoke(SpaceId(9), 0, |_| {}),
        Err(Status::InvalidArgument)
    );
    assert_eq!(sys.delete(root, 1, |_| {}), Err(Status::InvalidCapability));
    assert_eq!(
        sys.delete(root, 100, |_| {}),
        Err(Status::InvalidCapability)
    );
    assert_eq!(
        sys.delete(SpaceId(9), 0, |_| {}),
        Err(Status::InvalidArgument)
    );
}

#[test]
fn delete_relinks_children_to_the_parent() {
    let (mut sys, root, _) = setup();
    sys.derive(root, 0, 1, MEM, None).expect("derive");
    sys.derive(root, 1, 2, Rights::READ, None).expect("derive");
    sys.derive(root, 1, 3, Rights::WRITE, None).expect("derive");
    sys.derive(root, 0, 4, Rights::READ, None).expect("derive");
    sys.delete(root, 1, |_| {}).expect("delete");
    let mut kids: Vec<u16> = sys
        .children(CapAddr::new(root, 0))
        .map(|a| a.slot)
        .collect();
    kids.sort();
    assert_eq!(kids, [2, 3, 4]);
    for slot in [2, 3, 4] {
        let view = sys.capability(CapAddr::new(root, slot)).expect("view");
        assert_eq!(view.parent, Some(CapAddr::new(root, 0)));
    }
    // Deleting a root with children makes them roots; revoke from them still works.
    sys.delete(root, 0, |_| {}).expect("delete root");
    assert_eq!(
        sys.capability(CapAddr::new(root, 2)).and_then(|v| v.parent),
        None
    );
    assert_eq!(
        sys.capability(CapAddr::new(root, 2))
            .and_then(|v| v.next_sibling),
        None
    );
}

#[test]
fn deleting_a_domain_tears_down_its_space_and_refunds() {
    let (mut sys, root, child) = setup_with_domain();
    let used_before = sys.space(root).map(|s| s.used);
    sys.grant(root, 0, 1, 0, Rights::READ, None).expect("grant");
    sys.create_object(child, 1, ObjectType::EventChannel, None)
        .expect("child creates");
    let removed = collect(&mut sys, root, 1, false);
    assert!(removed.iter().any(|r| matches!(
        r,
        Removal::ObjectDestroyed {
            object_type: ObjectType::Domain,
            ..
        }
    )));
    assert!(removed.iter().any(|r| matches!(r,
        Removal::Capability { addr, .. } if *addr == CapAddr::new(child, 0))));
    assert!(removed.contains(&Removal::SpaceReleased { space: child }));
    assert_eq!(sys.space(child).map(|s| s.state), Some(SpaceState::Free));
    let expected = used_before.map(|u| u - domain_charge(4, 4096).expect("charge"));
    assert_eq!(sys.space(root).map(|s| s.used), expected);
    assert_eq!(sys.identify(child, 0), Err(Status::InvalidArgument));
}

#[test]
fn a_domain_whose_objects_outlive_it_stays_a_zombie() {
    let (mut sys, root, child) = setup_with_domain();
    // The child creates an event channel and hands it to a second domain.
    sys.create_object(child, 0, ObjectType::EventChannel, None)
        .expect("create");
    sys.create_domain(child, 1, 1, 0)
        .expect_err("child quota too small for a domain");
    let (grandchild, _) = sys.create_domain(root, 2, 4, 0).expect("second domain");
    sys.derive(root, 2, 3, Rights::GRANT, None)
        .expect("derive domain cap");
    sys.grant(root, 3, 1, 2, Rights::GRANT, None)
        .expect("give child the cap");
    sys.grant(child, 0, 2, 0, Rights::SEND | Rights::GRANT, None)
        .expect("child grants channel to second domain");
    sys.delete(root, 1, |_| {}).expect("delete child domain");
    assert_eq!(sys.space(child).map(|s| s.state), Some(SpaceState::Zombie));
    assert_eq!(
        sys.space(child).map(|s| s.used),
        Some(object_cost(ObjectType::EventChannel))
    );
    let mut removed = Vec::new();
    sys.delete(grandchild, 0, |r| removed.push(r))
        .expect("drop channel");
    assert!(removed.contains(&Removal::SpaceReleased { space: child }));
    assert_eq!(sys.space(child).map(|s| s.state), Some(SpaceState::Free));
}

#[test]
fn destroy_object_removes_every_capability_naming_it_everywhere() {
    let (mut sys, root, child) = setup_with_domain();
    // Copies of the Memory object in root and in the child, one derived from another, and an
    // unrelated Memory object derived from nothing.
    sys.derive(root, 0, 2, Rights::READ | Rights::GRANT, Some(frames(0, 4)))
        .expect("derive");
    sys.grant(root, 2, 1, 0, Rights::READ, Some(frames(1, 2)))
        .expect("grant to child");
    let other = sys
        .create_object(root, 3, ObjectType::Memory, Some(frames(32, 4)))
        .expect("other");
    let mem = sys.identify(root, 0).expect("mem").object;
    let used = sys.space(root).map(|s| s.used);
    let mut removed = Vec::new();
    sys.destroy_object(mem, |r| removed.push(r))
        .expect("destroy");
    for addr in [
        CapAddr::new(root, 0),
        CapAddr::new(root, 2),
        CapAddr::new(child, 0),
    ] {
        assert!(sys.capability(addr).is_none(), "{addr:?} still there");
        assert!(removed.iter().any(|r| matches!(r,
            Removal::Capability { addr: a, .. } if *a == addr)));
    }
    assert!(removed.contains(&Removal::ObjectDestroyed {
        object: mem,
        object_type: ObjectType::Memory
    }));
    assert_eq!(sys.resolve(mem), Err(Status::StaleCapability));
    assert_eq!(sys.resolve(other).map(|o| o.capabilities), Ok(1));
    assert_eq!(
        sys.space(root).map(|s| s.used),
        used.map(|u| u - object_cost(ObjectType::Memory))
    );
    assert_eq!(
        sys.destroy_object(mem, |_| {}),
        Err(Status::StaleCapability),
        "twice"
    );
}

#[test]
fn destroying_a_domain_object_empties_its_space_and_every_copy() {
    let (mut sys, root, child) = setup_with_domain();
    sys.derive(root, 1, 2, Rights::CONTROL, None).expect("copy");
    let domain = sys.identify(root, 1).expect("domain").object;
    let mut removed = Vec::new();
    sys.destroy_object(domain, |r| removed.push(r))
        .expect("destroy");
    assert!(sys.capability(CapAddr::new(root, 1)).is_none());
    assert!(sys.capability(CapAddr::new(root, 2)).is_none());
    assert!(removed.contains(&Removal::SpaceReleased { space: child }));
}

#[test]
fn a_held_space_is_not_released_until_the_kernel_lets_go() {
    let (mut sys, root, child) = setup_with_domain();
    sys.hold_space(child).expect("hold");
    let mut removed = Vec::new();
    sys.delete(root, 1, |r| removed.push(r)).expect("delete");
    assert!(!removed.contains(&Removal::SpaceReleased { space: child }));
    assert_eq!(sys.space(child).map(|s| s.state), Some(SpaceState::Zombie));
    // Its id cannot be handed to a new domain meanwhile.
    let (other, _) = sys.create_domain(root, 1, 4, 4096).expect("another");
    assert_ne!(other, child);
    let mut removed = Vec::new();
    sys.let_go_of_space(child, |r| removed.push(r));
    assert_eq!(removed, [Removal::SpaceReleased { space: child }]);
    assert_eq!(sys.space(child).map(|s| s.state), Some(SpaceState::Free));
    assert_eq!(
        sys.hold_space(child),
        Err(Status::InvalidArgument),
        "a free space cannot be held"
    );
}

#[test]
fn kernel_charges_count_against_the_quota_and_keep_a_zombie() {
    let (mut sys, root, child) = setup_with_domain();
    assert_eq!(sys.charge_space(child, 4097), Err(Status::QuotaExceeded));
    assert_eq!(
        sys.space(child).map(|s| s.used),
        Some(0),
        "nothing on error"
    );
    sys.charge_space(child, 4096).expect("fits");
    assert_eq!(
        sys.create_object(child, 0, ObjectType::EventChannel, None),
        Err(Status::QuotaExceeded)
    );
    sys.delete(root, 1, |_| {}).expect("delete");
    assert_eq!(sys.space(child).map(|s| s.state), Some(SpaceState::Zombie));
    let mut removed = Vec::new();
    sys.refund_space(child, 4096, |r| removed.push(r));
    assert_eq!(removed, [Removal::SpaceReleased { space: child }]);
    assert_eq!(sys.charge_space(child, 1), Err(Status::InvalidArgument));
}

#[test]
fn destroying_from_the_original_removes_the_same_capabilities_as_searching() {
    for from_original in [true, false] {
        let (mut sys, root, child) = setup_with_domain();
        sys.derive(root, 0, 2, Rights::READ | Rights::GRANT, Some(frames(0, 4)))
            .expect("derive");
        sys.grant(root, 2, 1, 0, Rights::READ, Some(frames(1, 2)))
            .expect("grant to child");
        let mem = sys.identify(root, 0).expect("mem").object;
        let mut removed = Vec::new();
        if from_original {
            sys.destroy_object_from(CapAddr::new(root, 0), mem, |r| removed.push(r))
                .expect("destroy");
        } else {
            // A stale hint (not the original) falls back to the search.
            sys.destroy_object_from(CapAddr::new(root, 2), mem, |r| removed.push(r))
                .expect("destroy");
        }
        for addr in [
            CapAddr::new(root, 0),
            CapAddr::new(root, 2),
            CapAddr::new(child, 0),
        ] {
            assert!(sys.capability(addr).is_none(), "{addr:?} ({from_original})");
        }
        assert!(removed.contains(&Removal::ObjectDestroyed {
            object: mem,
            object_type: ObjectType::Memory
        }));
        assert_eq!(sys.resolve(mem), Err(Status::StaleCapability));
    }
}

#[test]
fn destroying_from_a_root_that_is_not_the_original_still_removes_every_capability() {
    // The original (root 0) is deleted: its children (2 and the child's 0) become roots. A
    // capability derived from 2 into slot 0 becomes a root there when 2 is deleted; the
    // child's capability is a root of its own, not its descendant.
    let (mut sys, root, child) = setup_with_domain();
    sys.derive(root, 0, 2, Rights::READ | Rights::GRANT, Some(frames(0, 4)))
        .expect("derive");
    sys.grant(root, 0, 1, 0, Rights::READ, Some(frames(1, 2)))
        .expect("grant to child");
    let mem = sys.identify(root, 0).expect("mem").object;
    sys.delete(root, 0, |_| {}).expect("delete original");
    sys.derive(root, 2, 0, Rights::READ, Some(frames(0, 1)))
        .expect("derive into the original's slot");
    sys.delete(root, 2, |_| {}).expect("delete its parent");
    assert!(sys.capability(CapAddr::new(root, 0)).is_some());
    sys.destroy_object_from(CapAddr::new(root, 0), mem, |_| {})
        .expect("destroy");
    assert!(sys.capability(CapAddr::new(child, 0)).is_none());
    assert_eq!(sys.resolve(mem), Err(Status::StaleCapability));
}
