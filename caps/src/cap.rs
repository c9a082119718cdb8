//! A capability as stored in a slot: what it names and where it sits in the derivation tree.
//!
//! The tree is intrusive: every capability holds its parent, its first child and its two
//! siblings, so inserting a child and unlinking a node are O(1), and revoke visits exactly the
//! descendants it removes (the shape seL4's MDB and Fiasco's mapping tree use).

use mica_abi::{ObjectType, Rights};

use crate::{CapAddr, CapSystem, FrameRange, ObjectRef};

/// What a capability grants: the object, its type, the rights and (for memory) the frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CapInfo {
    /// The object named, with the generation it had when the capability was made.
    pub object: ObjectRef,
    /// The object's type.
    pub object_type: ObjectType,
    /// The rights this capability carries.
    pub rights: Rights,
    /// The frames it covers: `Some` exactly for Memory and DeviceMemory.
    pub frames: Option<FrameRange>,
}

/// A stored capability with its derivation-tree links.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Cap {
    pub(crate) info: CapInfo,
    pub(crate) parent: Option<CapAddr>,
    pub(crate) first_child: Option<CapAddr>,
    pub(crate) prev_sibling: Option<CapAddr>,
    pub(crate) next_sibling: Option<CapAddr>,
}

/// A read-only view of a stored capability and its tree links, for inspection and the
/// invariant checkers in `verify/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CapView {
    /// What the capability grants.
    pub info: CapInfo,
    /// The capability it was derived from, if that still exists.
    pub parent: Option<CapAddr>,
    /// Its first child in the derivation tree.
    pub first_child: Option<CapAddr>,
    /// The next child of the same parent.
    pub next_sibling: Option<CapAddr>,
}

impl Cap {
    pub(crate) fn view(&self) -> CapView {
        CapView {
            info: self.info,
            parent: self.parent,
            first_child: self.first_child,
            next_sibling: self.next_sibling,
        }
    }
}

/// Iterator over the direct children of a capability, in the order of the sibling list.
///
/// Stops after as many steps as the system has slots, so even a corrupted list cannot make it
/// loop forever.
pub struct Children<'a, const SPACES: usize, const SLOTS: usize, const OBJECTS: usize> {
    pub(crate) system: &'a CapSystem<SPACES, SLOTS, OBJECTS>,
    pub(crate) next: Option<CapAddr>,
    pub(crate) budget: usize,
}

impl<const SPACES: usize, const SLOTS: usize, const OBJECTS: usize> Iterator
    for Children<'_, SPACES, SLOTS, OBJECTS>
{
    type Item = CapAddr;

    fn next(&mut self) -> Option<CapAddr> {
        let current = self.next?;
        self.budget = self.budget.checked_sub(1)?;
        self.next = self.system.cap(current).and_then(|cap| cap.next_sibling);
        Some(current)
    }
}
