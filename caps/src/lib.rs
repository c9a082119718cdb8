//! Capability spaces, the derivation tree, rights arithmetic and revoke.
//!
//! Pure logic with no hardware in sight, so the kernel's most security-critical data
//! structure is tested and model-checked on the host (`verify/`). Everything lives in one
//! [`CapSystem`] of fixed size (const generics, no heap): the kernel owns exactly one, addresses
//! capabilities by (space, slot), and never needs an allocator to grant, derive or revoke.
//!
//! The model, the rights of each object type, every operation's rules and errors, and the
//! numbered invariants that `verify/` checks are written down in `docs/capabilities.md`.
//!
//! Ownership of the pieces:
//! - [`addr`]: how a capability is named (space id, slot index);
//! - [`FrameRange`] (from `mica-abi`): frame ranges carried by Memory and DeviceMemory capabilities;
//! - [`object`]: object references with generations, object costs and meaningful rights;
//! - [`space`]: capability spaces and their kernel-memory quota;
//! - [`system`]: the table itself and object creation; [`derive`](mod@derive) and [`revoke`]
//!   hold the derivation-tree operations.
#![no_std]
#![forbid(unsafe_code)]

pub mod addr;
pub mod cap;
pub mod derive;
pub mod object;
pub mod revoke;
pub mod space;
pub mod system;

#[cfg(kani)]
mod proofs;
#[cfg(test)]
mod tests;

pub use addr::{CapAddr, SpaceId};
pub use cap::{CapInfo, CapView, Children};
/// Frame ranges are an ABI fact: one type, in `mica-abi`.
pub use mica_abi::FrameRange;
pub use object::{
    domain_charge, meaningful_rights, object_cost, ObjectInfo, ObjectRef, CAP_SLOT_COST,
};
pub use revoke::Removal;
pub use space::{SpaceInfo, SpaceState};
pub use system::CapSystem;
