//! Kani proofs: capability operations keep the invariants for every value of their arguments.
//!
//! `verify/` checks the invariants by random and bounded-exhaustive testing over a menu of
//! arguments; these harnesses let the values be anything (every rights bit pattern, every
//! frame range, every outcome of an earlier operation) and have Kani (CBMC) prove the
//! invariants for all of them, from one start state and a bounded number of operations. Slots
//! are chosen from short lists of constants rather than left symbolic: a symbolic index into
//! the system makes CBMC read the whole system at a symbolic offset on every access (a single
//! derive took over ten minutes that way), and the bounded-exhaustive checker already tries
//! every slot. The harnesses use only the public API, so they keep proving what they say while
//! the operations' insides change. What each proves, its bounds and its time:
//! `docs/verification.md`. Run with `cargo kani -p mica-caps`.

use mica_abi::{ObjectType, Rights, Status};

use crate::{
    domain_charge, meaningful_rights, object_cost, CapAddr, CapInfo, CapSystem, FrameRange,
    ObjectRef, Removal, SpaceId, SpaceState,
};

/// Capability spaces in the proof universe: the root and one domain.
const SPACES: usize = 2;
/// Slots per space.
const SLOTS: usize = 4;
/// Object-table entries: all in use in the start state, so a new object must reuse the entry
/// of a destroyed one.
const OBJECTS: usize = 3;
/// Every slot of the universe.
const ALL: usize = SPACES * SLOTS;

type System = CapSystem<SPACES, SLOTS, OBJECTS>;

const ROOT: SpaceId = SpaceId(0);
const CHILD: SpaceId = SpaceId(1);
/// The child domain's quota: room for two event channels.
const CHILD_QUOTA: u64 = 2 * object_cost(ObjectType::EventChannel);

/// The start state, built through the public API:
///
/// - root space 0 (4 slots): slot 0 the only capability of the Domain object of space 1,
///   slot 1 the original of a Memory object over frames [0, 4), slot 2 a child of it (READ |
///   WRITE | GRANT, [0, 4)), slot 3 empty;
/// - space 1 (4 slots, quota for two event channels): slot 0 a grandchild granted from root
///   slot 2 (READ | GRANT, [1, 3)), slot 1 the only capability of an event channel the child
///   paid for, slots 2-3 empty;
/// - every object entry in use.
///
/// The derivation tree crosses spaces and is three deep, and each removal path (domain
/// teardown, an object's last capability, one of several) is one operation away.
fn start() -> System {
    let mut sys = System::new();
    let child_charge = domain_charge(SLOTS as u16, CHILD_QUOTA).unwrap_or(0);
    let quota = 2 * child_charge + 3 * object_cost(ObjectType::Memory);
    let root = sys.create_root_space(SLOTS as u16, quota);
    let child = sys.create_domain(ROOT, 0, SLOTS as u16, CHILD_QUOTA);
    let mem = sys.create_object(ROOT, 1, ObjectType::Memory, FrameRange::new(0, 4));
    let rw = Rights::READ | Rights::WRITE | Rights::GRANT;
    let derived = sys.derive(ROOT, 1, 2, rw, None);
    let to_child = Rights::READ | Rights::GRANT;
    let granted = sys.grant(ROOT, 2, 0, 0, to_child, FrameRange::new(1, 2));
    let channel = sys.create_object(CHILD, 1, ObjectType::EventChannel, None);
    assert!(root == Ok(ROOT) && child.map(|c| c.0) == Ok(CHILD));
    assert!(mem.is_ok() && derived.is_ok() && granted == Ok(CapAddr::new(CHILD, 0)));
    assert!(channel.is_ok());
    sys
}

/// Calls `f` with one of `choices`, each on its own path: Kani explores all of them and `f`
/// sees a constant on each (see the module comment for why slots are not symbolic). Each
/// call should start from a constant state (a clone of one built before), not from what an
/// earlier call left: CBMC merges the paths after each call, and a merged state makes every
/// later call work on all earlier alternatives at once.
fn for_any<T: Copy, const N: usize>(choices: [T; N], mut f: impl FnMut(T)) {
    let chosen: usize = kani::any();
    kani::assume(chosen < N);
    for i in 0..N {
        if i == chosen {
            f(choices[i]);
        }
    }
}

/// Any rights bits, undefined ones included.
fn any_rights() -> Rights {
    Rights::from_bits_retain(kani::any())
}

/// Any frame range (or none), with any first frame and count.
fn any_frames() -> Option<FrameRange> {
    if kani::any() {
        FrameRange::new(kani::any(), kani::any())
    } else {
        None
    }
}

/// Whether `child` grants no more than `parent`: same object, rights and frames within.
fn within(child: &CapInfo, parent: &CapInfo) -> bool {
    let frames_within = match (child.frames, parent.frames) {
        (None, None) => true,
        (Some(c), Some(p)) => p.contains(c),
        _ => false,
    };
    child.object == parent.object
        && child.object_type == parent.object_type
        && parent.rights.contains(child.rights)
        && frames_within
}

/// I1 for a new capability at `child` derived from `src`: it is linked as the source's
/// child and grants no more than it, and only meaningful rights.
fn check_child(sys: &System, src: CapAddr, child: CapAddr) {
    let (Some(s), Some(c)) = (sys.capability(src), sys.capability(child)) else {
        panic!("I1: derive left no capability");
    };
    assert!(
        c.parent == Some(src),
        "I4: the new capability is not the source's child"
    );
    assert!(
        within(&c.info, &s.info),
        "I1: derived authority beyond the source"
    );
    assert!(
        meaningful_rights(c.info.object_type).contains(c.info.rights),
        "I1: rights meaningless for the type"
    );
}

/// The address of slot `i` of the universe.
fn addr(i: usize) -> CapAddr {
    CapAddr::new(SpaceId((i / SLOTS) as u16), (i % SLOTS) as u16)
}

/// Whether `root` is a proper ancestor of `at` (following parent links, at most `ALL` steps).
fn descends_from(sys: &System, at: CapAddr, root: CapAddr) -> bool {
    let mut cursor = sys.capability(at).and_then(|v| v.parent);
    for _ in 0..ALL {
        match cursor {
            Some(a) if a == root => return true,
            Some(a) => cursor = sys.capability(a).and_then(|v| v.parent),
            None => return false,
        }
    }
    false
}

/// I6: quota charged equals quota refunded, per space: what a space has in use is exactly the
/// cost of the live objects it paid for plus the charge of the domains it created that are
/// not yet released, and never above its quota.
fn check_quota(sys: &System) {
    for index in 0..SPACES {
        let id = SpaceId(index as u16);
        let Some(space) = sys.space(id) else {
            continue;
        };
        assert!(space.state != SpaceState::Dying, "I6: a space left dying");
        let mut expected = 0u64;
        for object in sys.objects() {
            if object.charged_to == id && object.object_type != ObjectType::Domain {
                expected = expected.saturating_add(object_cost(object.object_type));
            }
        }
        for child in 0..SPACES {
            if let Some(c) = sys.space(SpaceId(child as u16)) {
                if c.state != SpaceState::Free && c.parent == Some(id) {
                    let charge = domain_charge(c.slots, c.quota).unwrap_or(u64::MAX);
                    expected = expected.saturating_add(charge);
                }
            }
        }
        assert!(
            space.used == expected,
            "I6: quota charged != quota refunded"
        );
        assert!(space.used <= space.quota, "I6: quota exceeded");
    }
}

/// The invariants of `docs/capabilities.md` that hold in every state between operations:
/// I1 (authority within the parent's and the object's), I3 (capabilities only in live
/// spaces), I4 (the derivation forest's links agree), I5 (every capability resolves; counts
/// match) and I6.
fn check_state(sys: &System) {
    for i in 0..ALL {
        let at = addr(i);
        let Some(view) = sys.capability(at) else {
            continue;
        };
        let info = view.info;
        let space = sys.space(at.space);
        assert!(
            space.is_some_and(|s| s.state == SpaceState::Live && at.slot < s.slots),
            "I3: a capability outside a live space"
        );
        let object = sys.resolve(info.object);
        assert!(
            object.is_ok_and(|o| o.object_type == info.object_type),
            "I5: a capability that does not resolve"
        );
        assert!(
            meaningful_rights(info.object_type).contains(info.rights),
            "I1: rights meaningless for the type"
        );
        match (info.frames, object.ok().and_then(|o| o.frames)) {
            (None, None) => {}
            (Some(c), Some(o)) => assert!(o.contains(c), "I1: frames outside the object's"),
            _ => panic!("I1: frames on the wrong type"),
        }
        match view.parent {
            Some(parent) => {
                let p = sys.capability(parent);
                assert!(
                    p.is_some_and(|p| within(&info, &p.info)),
                    "I1: beyond the parent"
                );
                let listed = sys.children(parent).filter(|c| *c == at).count();
                assert!(listed == 1, "I4: child not listed exactly once");
            }
            None => assert!(view.next_sibling.is_none(), "I4: a root with a sibling"),
        }
        if let Some(first) = view.first_child {
            assert!(
                sys.capability(first).is_some_and(|k| k.parent == Some(at)),
                "I4: a first child with another parent"
            );
        }
    }
    for object in sys.objects() {
        let named = (0..ALL)
            .filter(|i| sys.capability(addr(*i)).map(|v| v.info.object) == Some(object.object))
            .count();
        assert!(
            object.capabilities != 0 && named == object.capabilities as usize,
            "I5: capability count"
        );
    }
    check_quota(sys);
}

/// What a revoke or delete reported through its callback.
struct Reports {
    /// Slots reported as removed capabilities (bit `space * SLOTS + slot`).
    removed: u32,
    /// Reported more than once.
    duplicate: bool,
    /// References reported as destroyed objects.
    destroyed: [Option<ObjectRef>; OBJECTS],
    destroyed_count: usize,
}

impl Reports {
    fn new() -> Reports {
        Reports {
            removed: 0,
            duplicate: false,
            destroyed: [None; OBJECTS],
            destroyed_count: 0,
        }
    }

    fn record(&mut self, removal: Removal) {
        match removal {
            Removal::Capability { addr, .. } => {
                let bit = 1u32 << (addr.space.index() * SLOTS + usize::from(addr.slot));
                self.duplicate |= self.removed & bit != 0;
                self.removed |= bit;
            }
            Removal::ObjectDestroyed { object, .. } => {
                if let Some(slot) = self.destroyed.get_mut(self.destroyed_count) {
                    *slot = Some(object);
                }
                self.destroyed_count += 1;
            }
            Removal::SpaceReleased { .. } => {}
        }
    }

    /// I2 (reporting half): exactly the capabilities that disappeared were reported, each
    /// once; I5: no destroyed object's reference resolves.
    fn check(&self, before: &System, after: &System) {
        assert!(!self.duplicate, "I2: a removal reported twice");
        assert!(
            self.destroyed_count <= OBJECTS,
            "I5: more destructions than objects"
        );
        for i in 0..ALL {
            let old = before.capability(addr(i)).map(|v| v.info);
            let gone = old.is_some() && after.capability(addr(i)).map(|v| v.info) != old;
            assert!(
                gone == (self.removed & (1 << i) != 0),
                "I2: removals misreported"
            );
        }
        for object in self.destroyed.iter().flatten() {
            assert!(
                after.resolve(*object) == Err(Status::StaleCapability),
                "I5: a destroyed object still resolves"
            );
        }
    }
}

// ---- Harnesses -------------------------------------------------------------------------

/// Derive from an original and from a narrowed, granted copy, with any rights bits and any
/// frame range: on success the new capability is the source's child, within its authority,
/// with meaningful rights only (I1, I4); on failure nothing changed (I8).
#[kani::proof]
#[kani::unwind(9)]
fn caps_derive_never_amplifies() {
    let start = start();
    for_any([(ROOT, 1, 3), (CHILD, 0, 2)], |(space, src, dst)| {
        let mut sys = start.clone();
        match sys.derive(space, src, dst, any_rights(), any_frames()) {
            Ok(()) => check_child(&sys, CapAddr::new(space, src), CapAddr::new(space, dst)),
            Err(_) => assert!(sys == start, "I8: a failed derive changed the system"),
        }
    });
}

/// Grant a narrowed Memory capability of the root into the child domain with any rights
/// bits and any frame range: as for derive, across spaces.
#[kani::proof]
#[kani::unwind(9)]
fn caps_grant_never_amplifies() {
    let mut sys = start();
    let before = sys.clone();
    match sys.grant(ROOT, 2, 0, 2, any_rights(), any_frames()) {
        Ok(at) => {
            assert!(at == CapAddr::new(CHILD, 2), "grant landed elsewhere");
            check_child(&sys, CapAddr::new(ROOT, 2), at);
        }
        Err(_) => assert!(sys == before, "I8: a failed grant changed the system"),
    }
}

/// The start state satisfies every invariant; grown by three more derives and grants (an
/// original with a child that has two children, one with a child granted into the other
/// space), a revoke of the original or of a capability in the other space removes exactly
/// its old descendants, each reported once, leaves everything else unchanged (I2), and
/// every invariant holds after. The tree is a constant: Kani's part is the removal reports
/// and the invariants over both spaces; `verify/`'s bounded-exhaustive checker covers other
/// shapes.
#[kani::proof]
#[kani::unwind(12)]
fn caps_revoke_removes_exactly_the_descendants() {
    let mut tree = start();
    check_state(&tree);
    let read = Rights::READ | Rights::GRANT;
    let derived = tree.derive(ROOT, 2, 3, read, FrameRange::new(0, 2));
    let granted = tree.grant(ROOT, 3, 0, 3, Rights::READ, None);
    let again = tree.derive(CHILD, 0, 2, Rights::READ, None);
    assert!(derived.is_ok() && granted.is_ok() && again.is_ok());
    for_any([(ROOT, 1), (CHILD, 0)], |(space, slot)| {
        let mut sys = tree.clone();
        let root = CapAddr::new(space, slot);
        let mut reports = Reports::new();
        assert!(sys.revoke(space, slot, |r| reports.record(r)).is_ok());
        reports.check(&tree, &sys);
        for i in 0..ALL {
            let old = tree.capability(addr(i)).map(|v| v.info);
            let new = sys.capability(addr(i)).map(|v| v.info);
            if descends_from(&tree, addr(i), root) {
                assert!(new.is_none(), "I2: revoke left a descendant");
            } else {
                assert!(new == old, "I2: revoke removed a non-descendant");
            }
        }
        check_state(&sys);
    });
}

/// Delete the last capability of the domain (tearing it down), the last capability of the
/// event channel the child paid for, or one of several capabilities of a Memory object; then
/// create an event channel, or a Memory object over any frames, in the root's empty slot (it
/// can only reuse a destroyed object's table entry): removals are reported exactly (I2),
/// quota charged equals quota refunded after each step (I6), and no reference to a destroyed
/// object resolves, even once its table entry is reused (I5).
#[kani::proof]
#[kani::unwind(9)]
fn caps_destroy_then_create_refunds_and_refuses_stale_references() {
    let start = start();
    for_any([(ROOT, 0), (CHILD, 1), (ROOT, 1)], |(space, slot)| {
        let mut sys = start.clone();
        let mut reports = Reports::new();
        assert!(sys.delete(space, slot, |r| reports.record(r)).is_ok());
        reports.check(&start, &sys);
        check_quota(&sys);
        let _ = sys.create_object(ROOT, 3, ObjectType::EventChannel, None);
        for object in reports.destroyed.iter().flatten() {
            assert!(
                sys.resolve(*object) == Err(Status::StaleCapability),
                "I5: a stale reference resolves after its entry was reused"
            );
        }
        check_quota(&sys);
    });
}
