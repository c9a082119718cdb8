//! Names of capability spaces and of the slots inside them.
//!
//! A domain names a capability only by a slot index of its own space; the kernel adds the
//! space id it knows from the calling vCPU. The pair is a [`CapAddr`]. Both halves are small
//! integers so the derivation-tree links stored in every slot stay compact.

/// The index of a capability space inside a [`crate::CapSystem`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpaceId(pub u16);

impl SpaceId {
    /// The id as an array index.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// Where a capability lives: a slot of a capability space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CapAddr {
    /// The capability space.
    pub space: SpaceId,
    /// The slot index inside that space.
    pub slot: u16,
}

impl CapAddr {
    /// The address of `slot` in `space`.
    pub const fn new(space: SpaceId, slot: u16) -> CapAddr {
        CapAddr { space, slot }
    }
}
