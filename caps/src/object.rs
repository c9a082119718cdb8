//! Kernel objects as the capability system sees them: references with generations, what each
//! object costs in kernel memory, and which rights mean something for each type.
//!
//! The capability system does not hold the objects' state (registers, page tables, pending
//! bits): the kernel does, indexed by [`ObjectRef::index`]. What lives here is the part every
//! object shares: whether it is alive, its generation, its type, its frame range, which domain
//! pays for it, and how many capabilities name it. A reference whose generation no longer
//! matches fails with `Status::StaleCapability` and can never reach the object that reused
//! the entry.

use mica_abi::{ObjectType, Rights};

use crate::{FrameRange, SpaceId};

/// A reference to a kernel object: a table index plus the generation it was created with.
///
/// The kernel may keep these outside capability spaces (mapping records, event-channel
/// bindings, run queues) and must check them with [`crate::CapSystem::resolve`] before use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    /// The index of the object's entry in the object table.
    pub index: u32,
    /// The generation of the entry when the object was created.
    pub generation: u32,
}

/// A snapshot of a live object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ObjectInfo {
    /// The reference that resolves to this object.
    pub object: ObjectRef,
    /// What kind of object it is.
    pub object_type: ObjectType,
    /// The frames it covers (Memory and DeviceMemory only).
    pub frames: Option<FrameRange>,
    /// The space whose quota paid for it.
    pub charged_to: SpaceId,
    /// How many capabilities name it; it is destroyed when this drops to zero.
    pub capabilities: u32,
    /// For a Domain object: the capability space it owns.
    pub domain_space: Option<SpaceId>,
}

/// Kernel memory, in bytes, that one capability slot of a space costs its creator.
pub const CAP_SLOT_COST: u64 = 64;

/// Kernel memory, in bytes, charged to the creating domain's quota for one object of type
/// `object_type` (a Domain additionally pays for its slots and the quota it hands on, see
/// [`domain_charge`]).
pub const fn object_cost(object_type: ObjectType) -> u64 {
    match object_type {
        // Stage-2 root table and the domain record.
        ObjectType::Domain => 4096,
        // Saved register file, timer and vGIC state.
        ObjectType::Vcpu => 1024,
        ObjectType::EventChannel => 128,
        // The device's register file, in its guest's domain record.
        ObjectType::VirtioDevice => 256,
        ObjectType::Memory
        | ObjectType::DeviceMemory
        | ObjectType::Irq
        | ObjectType::SchedControl => 64,
    }
}

/// What creating a domain with `slots` capability slots and a kernel-memory `quota` charges its
/// creator: the Domain object, its slots, and the quota itself (carved out of the creator's, so
/// no chain of domains can promise more kernel memory than the root had). `None` on overflow.
pub const fn domain_charge(slots: u16, quota: u64) -> Option<u64> {
    let slot_bytes = (slots as u64) * CAP_SLOT_COST;
    match object_cost(ObjectType::Domain).checked_add(slot_bytes) {
        Some(fixed) => fixed.checked_add(quota),
        None => None,
    }
}

/// The rights that mean something for `object_type`; a capability never carries others and
/// derive refuses to ask for them (`docs/capabilities.md`, "Rights").
pub const fn meaningful_rights(object_type: ObjectType) -> Rights {
    let rights = match object_type {
        ObjectType::Domain
        | ObjectType::Vcpu
        | ObjectType::SchedControl
        | ObjectType::VirtioDevice => Rights::CONTROL.bits(),
        ObjectType::Memory => Rights::READ.bits() | Rights::WRITE.bits() | Rights::EXECUTE.bits(),
        ObjectType::DeviceMemory => Rights::READ.bits() | Rights::WRITE.bits(),
        ObjectType::EventChannel => {
            Rights::READ.bits() | Rights::SEND.bits() | Rights::RECEIVE.bits()
        }
        ObjectType::Irq => Rights::RECEIVE.bits(),
    };
    Rights::from_bits_retain(rights | Rights::GRANT.bits())
}

/// One entry of the object table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ObjectEntry {
    /// Bumped every time the entry's object is destroyed.
    pub(crate) generation: u32,
    /// Set once the generation can no longer be bumped: the entry is never reused.
    pub(crate) retired: bool,
    /// The object, while it is alive.
    pub(crate) live: Option<LiveObject>,
}

/// The shared state of a live object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct LiveObject {
    pub(crate) object_type: ObjectType,
    pub(crate) frames: Option<FrameRange>,
    pub(crate) charged_to: SpaceId,
    pub(crate) capabilities: u32,
    pub(crate) domain_space: Option<SpaceId>,
}

impl ObjectEntry {
    pub(crate) const EMPTY: ObjectEntry = ObjectEntry {
        generation: 0,
        retired: false,
        live: None,
    };

    /// A snapshot of the object at `index`, if alive.
    pub(crate) fn info(&self, index: u32) -> Option<ObjectInfo> {
        self.live.map(|live| ObjectInfo {
            object: ObjectRef {
                index,
                generation: self.generation,
            },
            object_type: live.object_type,
            frames: live.frames,
            charged_to: live.charged_to,
            capabilities: live.capabilities,
            domain_space: live.domain_space,
        })
    }
}
