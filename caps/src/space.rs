//! Capability spaces: the per-domain slot arrays and the kernel-memory quota they carry.
//!
//! A space's size is fixed when its domain is created and paid for by the creator. A space
//! outlives its Domain object only as a *zombie*: emptied of capabilities, it stays reserved
//! while objects it paid for are still alive elsewhere, so every byte of kernel memory is
//! always charged to a space that exists.

use crate::{ObjectRef, SpaceId};

/// The life cycle of a capability space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpaceState {
    /// Unused; may be given to a new domain.
    Free,
    /// Belongs to a live domain (or is the root space).
    Live,
    /// Being torn down inside one operation; never visible between operations.
    Dying,
    /// Its domain is gone and its slots are empty, but objects it paid for are still alive, or
    /// the kernel still holds state under its id.
    Zombie,
}

/// A snapshot of a capability space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SpaceInfo {
    /// Where the space is in its life cycle.
    pub state: SpaceState,
    /// How many slots it has (fixed at creation).
    pub slots: u16,
    /// The kernel memory, in bytes, it may have charged at once.
    pub quota: u64,
    /// The kernel memory, in bytes, currently charged to it.
    pub used: u64,
    /// The space that created it and paid for it (`None` for the root space).
    pub parent: Option<SpaceId>,
    /// The Domain object that owns it (`None` for the root space).
    pub domain: Option<ObjectRef>,
    /// The kernel still holds state named by this space's id (a domain record, vCPUs,
    /// stage-2 tables): the space is not released, and so its id not reused, until the kernel
    /// lets go ([`crate::CapSystem::hold_space`], [`crate::CapSystem::let_go_of_space`]).
    pub held: bool,
}

impl SpaceInfo {
    pub(crate) const FREE: SpaceInfo = SpaceInfo {
        state: SpaceState::Free,
        slots: 0,
        quota: 0,
        used: 0,
        parent: None,
        domain: None,
        held: false,
    };
}
