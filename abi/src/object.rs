//! Kernel object types and the rights a capability can carry.
//!
//! Which rights mean something for which object type is written down in
//! `docs/capabilities.md`; the bits themselves are fixed here.

use bitflags::bitflags;

/// The kinds of kernel object a capability can name (DESIGN.md §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum ObjectType {
    /// An address space: stage-2 table, capability space and kernel-memory quota.
    Domain = 1,
    /// A virtual CPU belonging to one domain.
    Vcpu = 2,
    /// A range of physical RAM frames.
    Memory = 3,
    /// One endpoint of an event channel.
    EventChannel = 4,
    /// A physical interrupt line.
    Irq = 5,
    /// A range of device MMIO frames.
    DeviceMemory = 6,
    /// Authority over scheduling parameters on a set of physical CPUs.
    SchedControl = 7,
    /// A guest's virtio device, for the domain that serves it: what the driver set up, and
    /// reporting used buffers (docs/virtio.md).
    VirtioDevice = 8,
}

impl ObjectType {
    /// Every object type, in numeric order.
    pub const ALL: [ObjectType; 8] = [
        ObjectType::Domain,
        ObjectType::Vcpu,
        ObjectType::Memory,
        ObjectType::EventChannel,
        ObjectType::Irq,
        ObjectType::DeviceMemory,
        ObjectType::SchedControl,
        ObjectType::VirtioDevice,
    ];

    /// Decodes the wire value; `None` for an unknown type.
    pub fn from_raw(raw: u64) -> Option<ObjectType> {
        ObjectType::ALL.iter().copied().find(|t| *t as u64 == raw)
    }

    /// Whether capabilities of this type carry a frame range.
    pub const fn has_frame_range(self) -> bool {
        matches!(self, ObjectType::Memory | ObjectType::DeviceMemory)
    }
}

bitflags! {
    /// Rights carried by a capability. A derived capability's rights are always a subset
    /// of its source's.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub struct Rights: u32 {
        /// Memory: map readable. Event channel: inspect state.
        const READ = 1 << 0;
        /// Memory: map writable.
        const WRITE = 1 << 1;
        /// Memory: map executable.
        const EXECUTE = 1 << 2;
        /// Place derived copies of this capability into other spaces; on a Domain
        /// capability, place capabilities into that domain's space.
        const GRANT = 1 << 3;
        /// Domain/Vcpu: pause, unpause, destroy, start. SchedControl: set parameters.
        /// VirtioDevice: serve it.
        const CONTROL = 1 << 4;
        /// Event channel: send on this endpoint.
        const SEND = 1 << 5;
        /// Event channel / Irq: receive, bind and acknowledge.
        const RECEIVE = 1 << 6;
    }
}
