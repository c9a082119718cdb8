//! virtio over MMIO, as guests see it and as Mica's device domains serve it: the register
//! window (virtio 1.2, section 4.2.2, "Version 2"), the device status and feature bits, the
//! split virtqueue's layout (section 2.7) and the block device's configuration and requests
//! (section 5.2).
//!
//! The kernel's register model (`kernel/src/virtio.rs`), the per-guest device domains that
//! walk the queues and the block service all read these numbers from here; `docs/virtio.md`
//! says who does what.

/// Bytes of one device's register window (what a guest's device tree gives each
/// `virtio,mmio` node; the guest-physical slots are `crate::layout::devices::virtio_slot`).
pub const WINDOW: u64 = 0x200;

/// Most virtio devices one domain has.
pub const MAX_DEVICES: usize = 4;
/// Most queues of one of Mica's devices (a block device has one, a network card two).
pub const MAX_QUEUES: usize = 2;
/// Most bytes of a device's configuration space Mica's devices have.
pub const CONFIG_BYTES: usize = 64;

/// `MagicValue`: "virt", little-endian.
pub const MAGIC: u32 = 0x7472_6976;
/// `Version` of the modern (virtio 1.x) MMIO transport.
pub const VERSION: u32 = 2;
/// `VendorID` Mica's devices answer ("MICA" read as ASCII, little-endian).
pub const VENDOR: u32 = u32::from_le_bytes(*b"MICA");

/// Register offsets in the window (virtio 1.2, table 4.1). Every register is 32 bits wide;
/// the device configuration space from [`reg::CONFIG`] may also be read 8 and 16 bits at a
/// time.
pub mod reg {
    /// Read: [`super::MAGIC`].
    pub const MAGIC: u64 = 0x000;
    /// Read: [`super::VERSION`].
    pub const VERSION: u64 = 0x004;
    /// Read: the device type ([`super::device`]).
    pub const DEVICE_ID: u64 = 0x008;
    /// Read: [`super::VENDOR`].
    pub const VENDOR_ID: u64 = 0x00C;
    /// Read: 32 feature bits of the device, the word [`DEVICE_FEATURES_SEL`] chose.
    pub const DEVICE_FEATURES: u64 = 0x010;
    /// Write: which 32 feature bits [`DEVICE_FEATURES`] shows.
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    /// Write: 32 feature bits the driver accepts, the word [`DRIVER_FEATURES_SEL`] chose.
    pub const DRIVER_FEATURES: u64 = 0x020;
    /// Write: which 32 feature bits [`DRIVER_FEATURES`] sets.
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    /// Write: the queue the `QUEUE_*` registers address.
    pub const QUEUE_SEL: u64 = 0x030;
    /// Read: the most entries the selected queue may have (0: no such queue).
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    /// Write: the selected queue's size.
    pub const QUEUE_NUM: u64 = 0x038;
    /// Read/write: the selected queue is in use.
    pub const QUEUE_READY: u64 = 0x044;
    /// Write: buffers are available in the queue written (its index).
    pub const QUEUE_NOTIFY: u64 = 0x050;
    /// Read: why the interrupt is raised ([`super::interrupt`]).
    pub const INTERRUPT_STATUS: u64 = 0x060;
    /// Write: the interrupt reasons the driver handled.
    pub const INTERRUPT_ACK: u64 = 0x064;
    /// Read/write: the device status ([`super::status`]); writing 0 resets the device.
    pub const STATUS: u64 = 0x070;
    /// Write: the descriptor table's guest-physical address, low 32 bits.
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    /// Write: the descriptor table's guest-physical address, high 32 bits.
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    /// Write: the available ring's (driver area's) address, low 32 bits.
    pub const QUEUE_DRIVER_LOW: u64 = 0x090;
    /// Write: the available ring's address, high 32 bits.
    pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
    /// Write: the used ring's (device area's) address, low 32 bits.
    pub const QUEUE_DEVICE_LOW: u64 = 0x0A0;
    /// Write: the used ring's address, high 32 bits.
    pub const QUEUE_DEVICE_HIGH: u64 = 0x0A4;
    /// Write: the shared memory region the `SHM_*` registers describe.
    pub const SHM_SEL: u64 = 0x0AC;
    /// Read: the selected shared memory region's length, low 32 bits (all ones: none).
    pub const SHM_LEN_LOW: u64 = 0x0B0;
    /// Read: the length, high 32 bits.
    pub const SHM_LEN_HIGH: u64 = 0x0B4;
    /// Read: the selected shared memory region's address, low 32 bits.
    pub const SHM_BASE_LOW: u64 = 0x0B8;
    /// Read: the address, high 32 bits.
    pub const SHM_BASE_HIGH: u64 = 0x0BC;
    /// Read/write: the selected queue's reset (only with `VIRTIO_F_RING_RESET`).
    pub const QUEUE_RESET: u64 = 0x0C0;
    /// Read: changes whenever the device configuration does.
    pub const CONFIG_GENERATION: u64 = 0x0FC;
    /// The device-specific configuration space.
    pub const CONFIG: u64 = 0x100;
}

/// Device types (`DeviceID`, virtio 1.2 section 5).
pub mod device {
    /// Network card.
    pub const NET: u32 = 1;
    /// Block device.
    pub const BLOCK: u32 = 2;
}

/// Device status bits (virtio 1.2 section 2.1).
pub mod status {
    /// The guest found the device.
    pub const ACKNOWLEDGE: u32 = 1;
    /// The guest knows how to drive it.
    pub const DRIVER: u32 = 2;
    /// The driver is ready: the device may use the queues.
    pub const DRIVER_OK: u32 = 4;
    /// The driver finished negotiating features (the device clears it if it refuses them).
    pub const FEATURES_OK: u32 = 8;
    /// The device met an error it cannot recover from without a reset.
    pub const DEVICE_NEEDS_RESET: u32 = 64;
    /// The driver gave up on the device.
    pub const FAILED: u32 = 128;
    /// Every bit a driver may write.
    pub const DRIVER_BITS: u32 = ACKNOWLEDGE | DRIVER | DRIVER_OK | FEATURES_OK | FAILED;
}

/// Interrupt reasons (`InterruptStatus`, `InterruptACK`).
pub mod interrupt {
    /// The device used buffers of a queue.
    pub const USED_BUFFER: u32 = 1;
    /// The device configuration (or the status: `DEVICE_NEEDS_RESET`) changed.
    pub const CONFIG_CHANGE: u32 = 2;
    /// Both.
    pub const ALL: u32 = USED_BUFFER | CONFIG_CHANGE;
}

/// Feature bits independent of the device type (virtio 1.2 section 6).
pub mod feature {
    /// Descriptors may point to tables of descriptors.
    pub const INDIRECT_DESC: u64 = 1 << 28;
    /// `used_event` and `avail_event` suppress notifications.
    pub const EVENT_IDX: u64 = 1 << 29;
    /// The modern interface (a Version 2 device without it is refused by Linux).
    pub const VERSION_1: u64 = 1 << 32;
    /// What a device may offer: the device-type bits (0-23) and, of the transport's (24-40),
    /// the ones Mica's devices implement. Not offered: packed rings, ring reset,
    /// notification data, access to platform memory restrictions.
    pub const OFFERABLE: u64 = 0x00FF_FFFF | INDIRECT_DESC | EVENT_IDX | VERSION_1;
}

/// The split virtqueue (virtio 1.2 section 2.7).
pub mod queue {
    /// The most entries a queue may have (a power of two).
    pub const MAX_SIZE: u16 = 32768;
    /// Most buffers of one chain Mica's devices take; a block device advertises `seg_max` =
    /// `MAX_CHAIN - 2` (a request's header and status take two), so the largest request Linux
    /// builds fits.
    pub const MAX_CHAIN: usize = 64;
    /// Bytes of one descriptor (`addr` u64, `len` u32, `flags` u16, `next` u16).
    pub const DESCRIPTOR: u64 = 16;
    /// Alignment of the descriptor table.
    pub const DESC_ALIGN: u64 = 16;
    /// Alignment of the available ring.
    pub const DRIVER_ALIGN: u64 = 2;
    /// Alignment of the used ring.
    pub const DEVICE_ALIGN: u64 = 4;
    /// A descriptor continues in `next`.
    pub const F_NEXT: u16 = 1;
    /// The device writes the buffer (the driver reads it).
    pub const F_WRITE: u16 = 2;
    /// The buffer is a table of descriptors.
    pub const F_INDIRECT: u16 = 4;

    /// Bytes of the descriptor table of a queue of `size` entries.
    pub const fn desc_bytes(size: u16) -> u64 {
        DESCRIPTOR * size as u64
    }

    /// Bytes of the available ring: `flags`, `idx`, `ring[size]`, `used_event`.
    pub const fn driver_bytes(size: u16) -> u64 {
        6 + 2 * size as u64
    }

    /// Bytes of the used ring: `flags`, `idx`, `ring[size]` of (`id` u32, `len` u32),
    /// `avail_event`.
    pub const fn device_bytes(size: u16) -> u64 {
        6 + 8 * size as u64
    }
}

/// The block device (virtio 1.2 section 5.2).
pub mod blk {
    /// Feature: `seg_max` gives the most segments of a request.
    pub const F_SEG_MAX: u64 = 1 << 2;
    /// Feature: `blk_size` gives the logical block size.
    pub const F_BLK_SIZE: u64 = 1 << 6;
    /// Feature: the device has a cache; `FLUSH` requests make writes durable.
    pub const F_FLUSH: u64 = 1 << 9;

    /// Configuration offsets (from [`super::reg::CONFIG`]).
    pub mod config {
        /// `capacity`: the size in 512-byte sectors (64 bits).
        pub const CAPACITY: u64 = 0;
        /// `seg_max` (32 bits).
        pub const SEG_MAX: u64 = 12;
        /// `blk_size` (32 bits).
        pub const BLK_SIZE: u64 = 20;
        /// Bytes of the configuration Mica's block devices have (through `num_queues`).
        pub const SIZE: usize = 36;
    }

    /// Bytes of a sector, the unit of `capacity` and of a request's `sector`.
    pub const SECTOR: u64 = 512;
    /// The logical block Mica's block devices advertise.
    pub const BLOCK: u32 = 4096;

    /// Request types (the first 32 bits of a request's header).
    pub mod request {
        /// Read.
        pub const IN: u32 = 0;
        /// Write.
        pub const OUT: u32 = 1;
        /// Make every completed write durable.
        pub const FLUSH: u32 = 4;
        /// The device's identifier string (20 bytes).
        pub const GET_ID: u32 = 8;
        /// Bytes of the header: `type` u32, `reserved` u32, `sector` u64.
        pub const HEADER: u64 = 16;
    }

    /// Request completion codes (the last byte the device writes).
    pub mod result {
        /// Done.
        pub const OK: u8 = 0;
        /// The device failed it.
        pub const IOERR: u8 = 1;
        /// Not a request this device does.
        pub const UNSUPP: u8 = 2;
    }
}
