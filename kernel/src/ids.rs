//! The ids the kernel's tables are indexed by, in a module of their own so that every object
//! module can name every other object without importing it.

use mica_caps::SpaceId;

/// A domain's id: the index of its capability space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomainId(pub u16);

impl DomainId {
    /// The id as an index.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
    /// The capability space of the domain.
    pub const fn space(self) -> SpaceId {
        SpaceId(self.0)
    }
}

/// Index into the kernel's vCPU table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VcpuId(pub u16);

impl VcpuId {
    /// The id as an index.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}
