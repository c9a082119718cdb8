//! The capability-system harness: an operation language, its interpreter, and the invariants.
//!
//! Every operation is decoded from small raw integers (so bolero, libFuzzer and the exhaustive
//! enumerator can all produce them) into a call on a 3-space × 4-slot × 4-object
//! [`CapSystem`]. [`Harness::step`] applies one operation, checks its postconditions against
//! the state before it, and then checks every global invariant. The invariant numbers (I1..I9)
//! are those of `docs/capabilities.md`; each [`Violation`] names one.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use mica_abi::{ObjectType, Rights, Status};
use mica_caps::{
    domain_charge, meaningful_rights, object_cost, CapAddr, CapInfo, CapSystem, CapView,
    FrameRange, ObjectRef, Removal, SpaceId, SpaceState,
};

/// Capability spaces in the harness universe.
pub const SPACES: usize = 3;
/// Slots per space (the most a space can have).
pub const SLOTS: usize = 4;
/// Object-table entries.
pub const OBJECTS: usize = 4;
/// How many destroyed-object references the harness remembers to re-check.
pub const RETIRED: usize = 4;

/// The system under test.
pub type System = CapSystem<SPACES, SLOTS, OBJECTS>;

/// The root space.
pub const ROOT: SpaceId = SpaceId(0);
/// The quota of the domain created at start-up: room for two event channels.
pub const CHILD_QUOTA: u64 = 2 * object_cost(ObjectType::EventChannel);

/// One operation, with raw operands decoded modulo small bounds (see [`Op::describe`]).
/// Out-of-range spaces and slots are deliberately reachable, to exercise the error paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, bolero::TypeGenerator)]
pub enum Op {
    /// Create an object into `slot` of `space`; `kind` picks the type and frames.
    Create {
        /// Space (mod 4: 3 is outside the system).
        space: u8,
        /// Slot (mod 5: 4 is outside every space).
        slot: u8,
        /// 0..=2 Memory [0,4) [4,8) [2,6); 3 DeviceMemory [8,10); 4 EventChannel; 5 Domain.
        kind: u8,
    },
    /// Create a domain whose Domain capability goes into `slot` of `space`.
    CreateDomain {
        /// Space.
        space: u8,
        /// Slot.
        slot: u8,
        /// 0: 4 slots with [`CHILD_QUOTA`]; 1: 2 slots, no quota; 2: huge quota; 3: no slots.
        kind: u8,
    },
    /// Derive `src` into `dst` of the same space.
    Derive {
        /// Space.
        space: u8,
        /// Source slot.
        src: u8,
        /// Destination slot.
        dst: u8,
        /// Rights choice, see [`rights_choice`].
        rights: u8,
        /// Range choice, see [`range_choice`].
        range: u8,
    },
    /// Grant `src` through the Domain capability in `domain` into `dst` of that domain.
    Grant {
        /// Space of the caller.
        space: u8,
        /// Source slot.
        src: u8,
        /// Slot of the Domain capability.
        domain: u8,
        /// Destination slot in the target domain.
        dst: u8,
        /// Rights choice.
        rights: u8,
        /// Range choice.
        range: u8,
    },
    /// Revoke the descendants of `slot`.
    Revoke {
        /// Space.
        space: u8,
        /// Slot.
        slot: u8,
    },
    /// Delete the capability in `slot`.
    Delete {
        /// Space.
        space: u8,
        /// Slot.
        slot: u8,
    },
}

impl Op {
    /// Decodes a byte string into operations, six bytes each (the fuzz target's input format).
    pub fn decode_all(data: &[u8]) -> Vec<Op> {
        data.chunks_exact(6)
            .map(|b| {
                let [k, a, c, d, e, f] = [b[0], b[1], b[2], b[3], b[4], b[5]];
                match k % 6 {
                    0 => Op::Create {
                        space: a,
                        slot: c,
                        kind: d,
                    },
                    1 => Op::CreateDomain {
                        space: a,
                        slot: c,
                        kind: d,
                    },
                    2 => Op::Derive {
                        space: a,
                        src: c,
                        dst: d,
                        rights: e,
                        range: f,
                    },
                    3 => Op::Grant {
                        space: a,
                        src: c,
                        domain: d,
                        dst: e,
                        rights: f,
                        range: k / 6,
                    },
                    4 => Op::Revoke { space: a, slot: c },
                    _ => Op::Delete { space: a, slot: c },
                }
            })
            .collect()
    }
}

fn space_of(raw: u8) -> SpaceId {
    SpaceId(u16::from(raw) % (SPACES as u16 + 1))
}

fn slot_of(raw: u8) -> u16 {
    u16::from(raw) % (SLOTS as u16 + 1)
}

/// Decodes a rights choice: 0 = the source's own rights, then a fixed menu that includes
/// rights beyond what a narrowed source has, rights meaningless for most types, and an
/// undefined bit.
pub fn rights_choice(raw: u8, source: Option<Rights>) -> Rights {
    match raw % 8 {
        0 => source.unwrap_or(Rights::READ),
        1 => Rights::READ,
        2 => Rights::READ | Rights::WRITE,
        3 => Rights::READ | Rights::GRANT,
        4 => Rights::GRANT,
        5 => Rights::CONTROL | Rights::GRANT,
        6 => Rights::WRITE | Rights::GRANT,
        _ => Rights::from_bits_retain(1 << 30),
    }
}

/// Decodes a range choice relative to the source's range `[f, f + n)`: 0 = keep it,
/// 1 = `[f, f + 2)`, 2 = `[f + 1, f + 3)`, 3 = `[f, f + n + 1)` (always too long).
pub fn range_choice(raw: u8, source: Option<FrameRange>) -> Option<FrameRange> {
    let (first, count) = source.map_or((0, 4), |r| (r.first(), r.count()));
    match raw % 4 {
        0 => None,
        1 => FrameRange::new(first, 2),
        2 => FrameRange::new(first.saturating_add(1), 2),
        _ => FrameRange::new(first, count.saturating_add(1)),
    }
}

fn create_choice(raw: u8) -> (ObjectType, Option<FrameRange>) {
    match raw % 6 {
        0 => (ObjectType::Memory, FrameRange::new(0, 4)),
        1 => (ObjectType::Memory, FrameRange::new(4, 4)),
        2 => (ObjectType::Memory, FrameRange::new(2, 4)),
        3 => (ObjectType::DeviceMemory, FrameRange::new(8, 2)),
        4 => (ObjectType::EventChannel, None),
        _ => (ObjectType::Domain, None),
    }
}

fn domain_choice(raw: u8) -> (u16, u64) {
    match raw % 4 {
        0 => (4, CHILD_QUOTA),
        1 => (2, 0),
        2 => (4, u64::MAX),
        _ => (0, 0),
    }
}

/// A broken invariant: which one, and what was seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The invariant, as numbered in `docs/capabilities.md`.
    pub invariant: &'static str,
    /// What was observed.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.invariant, self.detail)
    }
}

fn fail<T>(invariant: &'static str, detail: String) -> Result<T, Violation> {
    Err(Violation { invariant, detail })
}

/// Invariant names, as in `docs/capabilities.md`.
pub mod inv {
    /// I1: no operation yields rights or a range beyond its source.
    pub const I1: &str = "I1 derived authority within source";
    /// I2: revoke leaves no descendant anywhere; every removal is reported.
    pub const I2: &str = "I2 revoke removes every descendant and reports every removal";
    /// I3: a slot holds at most one capability, only inside a live space.
    pub const I3: &str = "I3 one capability per slot, only in live spaces";
    /// I4: the derivation tree is a forest.
    pub const I4: &str = "I4 derivation forest well formed";
    /// I5: stale references never resolve; live ones do.
    pub const I5: &str = "I5 stale references never resolve";
    /// I6: quota charged equals objects alive.
    pub const I6: &str = "I6 quota charged equals objects alive";
    /// I7: writable sharing only through a common writable ancestor.
    pub const I7: &str = "I7 writable sharing has a writable common ancestor";
    /// I8: a failing operation changes nothing.
    pub const I8: &str = "I8 failed operations have no effect";
    /// I9: frame objects are disjoint.
    pub const I9: &str = "I9 frame objects disjoint";
}

/// The system plus the harness's memory of destroyed objects' references.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Harness {
    /// The system under test.
    pub sys: System,
    retired: [Option<ObjectRef>; RETIRED],
    next_retired: usize,
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    /// The start state: a root space (4 slots) and one child domain (4 slots, [`CHILD_QUOTA`])
    /// whose Domain capability is in root slot 0; the third space is free. The root's quota
    /// pays for two such domains and three small objects.
    pub fn new() -> Harness {
        let mut sys = System::new();
        let domain = domain_charge(4, CHILD_QUOTA).unwrap_or(0);
        let quota = 2 * domain + 3 * object_cost(ObjectType::Memory);
        let root = sys.create_root_space(4, quota);
        let child = sys.create_domain(ROOT, 0, 4, CHILD_QUOTA);
        assert!(root == Ok(ROOT) && child.is_ok(), "harness start state");
        Harness {
            sys,
            retired: [None; RETIRED],
            next_retired: 0,
        }
    }

    /// References to destroyed objects the harness still remembers.
    pub fn retired(&self) -> impl Iterator<Item = ObjectRef> + '_ {
        self.retired.iter().flatten().copied()
    }

    fn retire(&mut self, object: ObjectRef) {
        if let Some(slot) = self.retired.get_mut(self.next_retired % RETIRED) {
            *slot = Some(object);
        }
        self.next_retired = (self.next_retired + 1) % RETIRED;
    }

    /// The lowest empty slot of `space`'s live range (the exhaustive checker's destination
    /// choice), or slot 0 when there is none.
    pub fn lowest_empty(&self, space: SpaceId) -> u8 {
        let slots = self.sys.space(space).map_or(0, |s| s.slots);
        (0..slots)
            .find(|&s| self.sys.capability(CapAddr::new(space, s)).is_none())
            .and_then(|s| u8::try_from(s).ok())
            .unwrap_or(0)
    }

    /// The space a Domain capability in `slot` of `space` names, if any.
    pub fn domain_target(&self, space: SpaceId, slot: u16) -> Option<SpaceId> {
        let info = self.sys.identify(space, slot).ok()?;
        self.sys.resolve(info.object).ok()?.domain_space
    }

    /// Applies `op`, checks its postconditions and every invariant. Returns the operation's own
    /// result (an error status is a legitimate outcome), or the first invariant broken.
    pub fn step(&mut self, op: Op) -> Result<Result<(), Status>, Violation> {
        let before = self.sys.clone();
        let mut removals = Vec::new();
        // The call's result, and for derive and grant the (source, child) pair to check.
        let (result, derived): (Result<(), Status>, Option<(CapAddr, CapAddr)>) = match op {
            Op::Create { space, slot, kind } => {
                let (ty, frames) = create_choice(kind);
                let result = self
                    .sys
                    .create_object(space_of(space), slot_of(slot), ty, frames);
                (result.map(|_| ()), None)
            }
            Op::CreateDomain { space, slot, kind } => {
                let (slots, quota) = domain_choice(kind);
                let result = self
                    .sys
                    .create_domain(space_of(space), slot_of(slot), slots, quota);
                (result.map(|_| ()), None)
            }
            Op::Derive {
                space,
                src,
                dst,
                rights,
                range,
            } => {
                let (space, src, dst) = (space_of(space), slot_of(src), slot_of(dst));
                let source = self.sys.identify(space, src).ok();
                let rights = rights_choice(rights, source.map(|s| s.rights));
                let frames = range_choice(range, source.and_then(|s| s.frames));
                let result = self.sys.derive(space, src, dst, rights, frames);
                let pair = (CapAddr::new(space, src), CapAddr::new(space, dst));
                (result, Some(pair))
            }
            Op::Grant {
                space,
                src,
                domain,
                dst,
                rights,
                range,
            } => {
                let (space, src, domain, dst) =
                    (space_of(space), slot_of(src), slot_of(domain), slot_of(dst));
                let source = self.sys.identify(space, src).ok();
                let rights = rights_choice(rights, source.map(|s| s.rights));
                let frames = range_choice(range, source.and_then(|s| s.frames));
                match self.sys.grant(space, src, domain, dst, rights, frames) {
                    Ok(at) => (Ok(()), Some((CapAddr::new(space, src), at))),
                    Err(status) => (Err(status), None),
                }
            }
            Op::Revoke { space, slot } => {
                let result = self
                    .sys
                    .revoke(space_of(space), slot_of(slot), |r| removals.push(r));
                (result.map(|_| ()), None)
            }
            Op::Delete { space, slot } => {
                let result = self
                    .sys
                    .delete(space_of(space), slot_of(slot), |r| removals.push(r));
                (result, None)
            }
        };
        if let Err(status) = result {
            if self.sys != before || !removals.is_empty() {
                return fail(
                    inv::I8,
                    format!("{op:?} failed with {status:?} but changed the system"),
                );
            }
            return Ok(Err(status));
        }
        if let Some((src, child)) = derived {
            check_child(&self.sys, src, child)?;
        }
        if let Op::Create { space, slot, kind } = op {
            let (ty, frames) = create_choice(kind);
            let info = self.sys.identify(space_of(space), slot_of(slot));
            if info.map(|i| (i.rights, i.frames)) != Ok((meaningful_rights(ty), frames)) {
                return fail(
                    inv::I1,
                    format!("original capability of {op:?} is {info:?}"),
                );
            }
        }
        check_reports(&before, &self.sys, &removals)?;
        match op {
            Op::Revoke { space, slot } => {
                let root = CapAddr::new(space_of(space), slot_of(slot));
                check_revoke(&before, &self.sys, root, &removals)?;
            }
            Op::Delete { space, slot } => {
                let addr = CapAddr::new(space_of(space), slot_of(slot));
                check_delete(&before, &self.sys, addr)?;
            }
            _ => {}
        }
        for removal in &removals {
            if let Removal::ObjectDestroyed { object, .. } = removal {
                self.retire(*object);
            }
        }
        self.check()?;
        Ok(Ok(()))
    }

    /// Checks every global invariant of the current state.
    pub fn check(&self) -> Result<(), Violation> {
        check_state(&self.sys, self.retired())
    }
}

/// I1 for one new capability: it names the source's object, with rights and frames inside the
/// source's, and is linked as the source's child.
fn check_child(sys: &System, src: CapAddr, child: CapAddr) -> Result<(), Violation> {
    let (Some(s), Some(c)) = (sys.capability(src), sys.capability(child)) else {
        return fail(
            inv::I1,
            format!("derive from {src:?} left no capability at {child:?}"),
        );
    };
    if c.parent != Some(src) {
        return fail(
            inv::I4,
            format!("{child:?} derived from {src:?} has parent {:?}", c.parent),
        );
    }
    within(&c.info, &s.info).map_err(|detail| Violation {
        invariant: inv::I1,
        detail: format!("{child:?}: {detail}"),
    })
}

/// Whether `child` grants no more than `parent`.
fn within(child: &CapInfo, parent: &CapInfo) -> Result<(), String> {
    if child.object != parent.object || child.object_type != parent.object_type {
        return Err(format!(
            "names {:?}, parent names {:?}",
            child.object, parent.object
        ));
    }
    if !parent.rights.contains(child.rights) {
        return Err(format!(
            "rights {:?} beyond parent's {:?}",
            child.rights, parent.rights
        ));
    }
    match (child.frames, parent.frames) {
        (None, None) => Ok(()),
        (Some(c), Some(p)) if p.contains(c) => Ok(()),
        (c, p) => Err(format!("frames {c:?} not within parent's {p:?}")),
    }
}

fn all_caps(sys: &System) -> BTreeMap<CapAddr, CapView> {
    sys.capabilities().collect()
}

/// Every descendant of `root` in `sys`, found by walking child lists.
pub fn descendants(sys: &System, root: CapAddr) -> BTreeSet<CapAddr> {
    let mut found = BTreeSet::new();
    let mut stack: Vec<CapAddr> = sys.children(root).collect();
    while let Some(addr) = stack.pop() {
        if found.insert(addr) {
            stack.extend(sys.children(addr));
        }
    }
    found
}

/// I2 (reporting half): the capabilities reported removed are exactly those that disappeared.
fn check_reports(before: &System, after: &System, removals: &[Removal]) -> Result<(), Violation> {
    let old = all_caps(before);
    let new = all_caps(after);
    let mut reported = BTreeSet::new();
    for removal in removals {
        if let Removal::Capability { addr, info } = removal {
            if old.get(addr).map(|v| v.info) != Some(*info) || !reported.insert(*addr) {
                return fail(
                    inv::I2,
                    format!("bogus or duplicate removal report for {addr:?}"),
                );
            }
        }
    }
    let gone: BTreeSet<CapAddr> = old
        .iter()
        .filter(|(addr, view)| new.get(addr).map(|v| v.info) != Some(view.info))
        .map(|(addr, _)| *addr)
        .collect();
    let appeared = new.keys().filter(|a| !old.contains_key(a)).count();
    if gone != reported {
        return fail(
            inv::I2,
            format!("removed {gone:?} but reported {reported:?}"),
        );
    }
    if appeared > 1 {
        return fail(
            inv::I3,
            format!("{appeared} capabilities appeared in one operation"),
        );
    }
    Ok(())
}

/// I2: after revoke, exactly the old descendants are gone and none remain.
fn check_revoke(
    before: &System,
    after: &System,
    root: CapAddr,
    removals: &[Removal],
) -> Result<(), Violation> {
    let expected = descendants(before, root);
    let reported: BTreeSet<CapAddr> = removals
        .iter()
        .filter_map(|r| match r {
            Removal::Capability { addr, .. } => Some(*addr),
            _ => None,
        })
        .collect();
    if reported != expected {
        return fail(
            inv::I2,
            format!("revoke of {root:?} removed {reported:?}, descendants were {expected:?}"),
        );
    }
    let left = descendants(after, root);
    if !left.is_empty() {
        return fail(
            inv::I2,
            format!("revoke of {root:?} left descendants {left:?}"),
        );
    }
    for (addr, view) in after.capabilities() {
        let mut cursor = view.parent;
        for _ in 0..SPACES * SLOTS {
            match cursor {
                Some(a) if a == root => {
                    return fail(
                        inv::I2,
                        format!("{addr:?} still descends from revoked {root:?}"),
                    )
                }
                Some(a) => cursor = after.capability(a).and_then(|v| v.parent),
                None => break,
            }
        }
    }
    if after.capability(root).map(|v| v.info) != before.capability(root).map(|v| v.info) {
        return fail(inv::I2, format!("revoke changed {root:?} itself"));
    }
    Ok(())
}

/// Delete: the slot is empty and the old children now hang from the old parent.
fn check_delete(before: &System, after: &System, addr: CapAddr) -> Result<(), Violation> {
    if after.capability(addr).is_some() {
        return fail(inv::I3, format!("delete left a capability at {addr:?}"));
    }
    let parent = before.capability(addr).and_then(|v| v.parent);
    for child in before.children(addr) {
        if let Some(view) = after.capability(child) {
            if view.parent != parent {
                return fail(
                    inv::I4,
                    format!(
                        "child {child:?} of deleted {addr:?} has parent {:?}, expected {parent:?}",
                        view.parent
                    ),
                );
            }
        }
    }
    Ok(())
}

fn ancestors(sys: &System, addr: CapAddr) -> Vec<CapAddr> {
    let mut chain = vec![addr];
    let mut cursor = sys.capability(addr).and_then(|v| v.parent);
    while let Some(a) = cursor {
        if chain.len() > SPACES * SLOTS {
            break;
        }
        chain.push(a);
        cursor = sys.capability(a).and_then(|v| v.parent);
    }
    chain
}

/// Every global invariant of one state (I1, I3..I7, I9).
pub fn check_state(
    sys: &System,
    retired: impl Iterator<Item = ObjectRef>,
) -> Result<(), Violation> {
    let caps = all_caps(sys);
    let total = caps.len();

    // I3: capabilities only in live spaces, inside their size; no dying space survives an op.
    for addr in caps.keys() {
        match sys.space(addr.space) {
            Some(s) if s.state == SpaceState::Live && addr.slot < s.slots => {}
            s => return fail(inv::I3, format!("capability at {addr:?} in space {s:?}")),
        }
    }

    // I4: parents exist and list the child exactly once; children point back; acyclic; roots
    // have no siblings; every capability is reached exactly once from the roots.
    let mut reached = 0usize;
    for (addr, view) in &caps {
        let kids: Vec<CapAddr> = sys.children(*addr).collect();
        if kids.len() > total {
            return fail(inv::I4, format!("child list of {addr:?} does not end"));
        }
        reached += kids.len();
        for kid in &kids {
            if caps.get(kid).map(|k| k.parent) != Some(Some(*addr)) {
                return fail(
                    inv::I4,
                    format!("{kid:?} is listed under {addr:?} but its parent differs"),
                );
            }
        }
        match view.parent {
            Some(parent) => {
                if !caps.contains_key(&parent) {
                    return fail(inv::I4, format!("{addr:?} has missing parent {parent:?}"));
                }
                let listed = sys.children(parent).filter(|c| c == addr).count();
                if listed != 1 {
                    return fail(
                        inv::I4,
                        format!("{addr:?} listed {listed} times under {parent:?}"),
                    );
                }
                let chain = ancestors(sys, *addr);
                if chain.len() > total {
                    return fail(inv::I4, format!("parent links from {addr:?} form a cycle"));
                }
            }
            None => {
                reached += 1;
                if view.next_sibling.is_some() {
                    return fail(inv::I4, format!("root {addr:?} has a sibling"));
                }
            }
        }
    }
    if reached != total {
        return fail(
            inv::I4,
            format!("{reached} capabilities reached from roots, {total} stored"),
        );
    }

    // I1: every capability is within its parent, within its object, within its type's rights.
    let objects: BTreeMap<u32, _> = sys.objects().map(|o| (o.object.index, o)).collect();
    for (addr, view) in &caps {
        if !meaningful_rights(view.info.object_type).contains(view.info.rights) {
            return fail(
                inv::I1,
                format!("{addr:?} carries rights meaningless for its type"),
            );
        }
        if let Some(parent) = view.parent.and_then(|p| caps.get(&p)) {
            within(&view.info, &parent.info).map_err(|d| Violation {
                invariant: inv::I1,
                detail: format!("{addr:?}: {d}"),
            })?;
        }
        let object = objects.get(&view.info.object.index);
        match (view.info.frames, object.and_then(|o| o.frames)) {
            (None, None) => {}
            (Some(c), Some(o)) if o.contains(c) => {}
            (c, o) => {
                return fail(
                    inv::I1,
                    format!("{addr:?} frames {c:?} outside object's {o:?}"),
                )
            }
        }
    }

    // I5: every capability resolves to a live object of its type, counts match, and no
    // remembered reference to a destroyed object resolves.
    let mut counts: BTreeMap<u32, u32> = BTreeMap::new();
    for (addr, view) in &caps {
        match sys.resolve(view.info.object) {
            Ok(o) if o.object_type == view.info.object_type => {}
            other => return fail(inv::I5, format!("{addr:?} resolves to {other:?}")),
        }
        *counts.entry(view.info.object.index).or_default() += 1;
    }
    for object in objects.values() {
        if counts.get(&object.object.index).copied().unwrap_or(0) != object.capabilities
            || object.capabilities == 0
        {
            return fail(
                inv::I5,
                format!(
                    "{:?} counts {} capabilities",
                    object.object, object.capabilities
                ),
            );
        }
    }
    for old in retired {
        if sys.resolve(old) != Err(Status::StaleCapability) {
            return fail(
                inv::I5,
                format!("destroyed {old:?} resolves to {:?}", sys.resolve(old)),
            );
        }
    }

    // I6: per space, used == costs of live objects it created + charges of domains it created
    // that are not yet released; used <= quota; domains and spaces correspond.
    for index in 0..SPACES {
        let id = SpaceId(index as u16);
        let Some(space) = sys.space(id) else { continue };
        if space.state == SpaceState::Free {
            if space.used != 0 || objects.values().any(|o| o.charged_to == id) {
                return fail(inv::I6, format!("free space {id:?} still charged"));
            }
            continue;
        }
        if space.state == SpaceState::Dying {
            return fail(inv::I6, format!("space {id:?} left dying"));
        }
        let mut expected = 0u64;
        for o in objects.values() {
            if o.charged_to == id && o.object_type != ObjectType::Domain {
                expected += object_cost(o.object_type);
            }
        }
        for child in 0..SPACES {
            let Some(c) = sys.space(SpaceId(child as u16)) else {
                continue;
            };
            if c.state != SpaceState::Free && c.parent == Some(id) {
                expected += domain_charge(c.slots, c.quota).unwrap_or(u64::MAX);
            }
        }
        if space.used != expected || space.used > space.quota {
            return fail(
                inv::I6,
                format!(
                    "space {id:?} used {} expected {expected} (quota {})",
                    space.used, space.quota
                ),
            );
        }
        let domain_alive = space.domain.is_some_and(|d| sys.resolve(d).is_ok());
        let should_be_live = space.parent.is_none() || domain_alive;
        if should_be_live != (space.state == SpaceState::Live) {
            return fail(
                inv::I6,
                format!(
                    "space {id:?} is {:?} but its domain alive = {domain_alive}",
                    space.state
                ),
            );
        }
    }

    // I9: frame objects pairwise disjoint.
    let ranges: Vec<FrameRange> = objects.values().filter_map(|o| o.frames).collect();
    for (i, a) in ranges.iter().enumerate() {
        if ranges.iter().skip(i + 1).any(|b| a.overlaps(*b)) {
            return fail(inv::I9, format!("frame objects overlap: {ranges:?}"));
        }
    }

    // I7: two writable capabilities in different spaces sharing a frame f have a common
    // ancestor (or, in different trees, the object itself) such that every capability on both
    // paths up to it carries WRITE and covers f.
    let writable: Vec<(CapAddr, FrameRange)> = caps
        .iter()
        .filter(|(_, v)| v.info.rights.contains(Rights::WRITE))
        .filter_map(|(a, v)| v.info.frames.map(|f| (*a, f)))
        .collect();
    for (i, (a, fa)) in writable.iter().enumerate() {
        for (b, fb) in writable.iter().skip(i + 1) {
            if a.space == b.space || !fa.overlaps(*fb) {
                continue;
            }
            let frame = fa.first().max(fb.first());
            let (pa, pb) = (ancestors(sys, *a), ancestors(sys, *b));
            let common = pa.iter().find(|x| pb.contains(x)).copied();
            let path_ok = |path: &[CapAddr]| {
                path.iter()
                    .take_while(|x| Some(**x) != common)
                    .chain(common.iter())
                    .all(|x| {
                        caps.get(x).is_some_and(|v| {
                            v.info.rights.contains(Rights::WRITE)
                                && v.info.frames.is_some_and(|r| r.contains_frame(frame))
                        })
                    })
            };
            let same_object =
                caps.get(a).map(|v| v.info.object) == caps.get(b).map(|v| v.info.object);
            if !same_object || !path_ok(&pa) || !path_ok(&pb) {
                return fail(inv::I7, format!("{a:?} and {b:?} both write frame {frame} without a common writable ancestor"));
            }
        }
    }
    Ok(())
}

/// Applies `ops` from the start state, checking after every step. On failure returns the index
/// of the operation after which the invariant broke.
pub fn run(ops: &[Op]) -> Result<Harness, (usize, Violation)> {
    let mut harness = Harness::new();
    harness.check().map_err(|v| (0, v))?;
    for (i, op) in ops.iter().enumerate() {
        let _status = harness.step(*op).map_err(|v| (i, v))?;
    }
    Ok(harness)
}
