//! The system image: the compiled manifest and every domain image, appended to the hypervisor.
//!
//! `mica build` writes it; the kernel reads it at boot to create the initial domains. It
//! follows the hypervisor `Image` at the end of the hypervisor's own memory footprint (the
//! original `image_size`, BSS included, rounded to 4 KiB), and the arm64 header's
//! `image_size` is patched to cover it so a boot loader keeps the device tree clear of it.
//! Every multi-byte field is little-endian; every record is 8-byte aligned. The layout:
//!
//! ```text
//! Header | DomainRecord × domain_count | SegmentRecord × (sum of segment_count)
//!        | ChannelRecord × channel_count | ShareRecord × share_count | segment bytes
//! ```
//!
//! [`SystemImage::parse`] checks every offset, size and count against the blob before
//! anything is used, so a truncated or corrupt image is an error, never an out-of-bounds read.

use crate::layout::DomainLayout;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The first eight bytes of a system image.
pub const MAGIC: [u8; 8] = *b"MICASYS1";
/// The layout version this crate reads and writes (2: channels and shared regions; 3:
/// devices; 4: virtio devices).
pub const VERSION: u32 = 4;
/// Most domains in one image.
pub const MAX_DOMAINS: usize = 16;
/// Most vCPUs per domain.
pub const MAX_VCPUS_PER_DOMAIN: usize = 8;
/// The value of an affinity entry that lets the kernel choose the physical CPU.
pub const ANY_CPU: u8 = 0xFF;
/// Guest-physical address of every domain's RAM.
pub const DOMAIN_RAM_BASE: u64 = crate::layout::RAM_BASE;
/// Most event channels created at boot.
pub const MAX_CHANNELS: usize = 32;
/// Most shared regions created at boot.
pub const MAX_SHARES: usize = 16;
/// Most virtio devices in one image.
pub const MAX_VIRTIO: usize = 32;
/// Bytes of a capability or region name.
pub const NAME_LEN: usize = crate::bootinfo::NAME_LEN;

/// The image header.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct Header {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// [`VERSION`].
    pub version: u32,
    /// Number of [`DomainRecord`]s following the header.
    pub domain_count: u32,
    /// Size of the whole system image in bytes.
    pub total_size: u64,
    /// Number of [`ChannelRecord`]s.
    pub channel_count: u32,
    /// Number of [`ShareRecord`]s.
    pub share_count: u32,
    /// Number of [`DeviceRecord`]s.
    pub device_count: u32,
    /// Number of [`VirtioRecord`]s (after the devices).
    pub virtio_count: u32,
}

/// A device passed through to a domain at boot: its MMIO window becomes a DeviceMemory
/// capability mapped into the domain (device memory), its interrupt an Irq capability. Both
/// are listed in the domain's boot-info page: the window under `name`, the interrupt under
/// `name` + `-irq`.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct DeviceRecord {
    /// Name (NUL-padded, at most 19 bytes so `-irq` fits).
    pub name: [u8; NAME_LEN],
    /// Index of the domain that gets it.
    pub domain: u32,
    /// GIC INTID of its interrupt (an SPI, 32..1020), or 0 for none.
    pub interrupt: u32,
    /// Physical base of its MMIO window (page aligned).
    pub mmio_base: u64,
    /// Size of the window (a multiple of 4 KiB).
    pub mmio_size: u64,
    /// Where the domain sees it (page aligned, outside its RAM).
    pub guest_address: u64,
    /// Reserved, zero.
    pub reserved: u64,
}

/// A virtio device of a guest, served by another domain (docs/virtio.md): the kernel gives
/// the guest the device in virtio slot `slot` and the server, listed in its boot-info page,
/// a VirtioDevice capability named `name` and the end of its notification channel named
/// `name` + `-events`.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct VirtioRecord {
    /// Name (NUL-padded, at most 17 bytes so `-events` fits).
    pub name: [u8; NAME_LEN],
    /// Index of the guest that has the device.
    pub guest: u32,
    /// Index of the domain that serves it.
    pub server: u32,
    /// The guest's virtio slot (`crate::layout::devices::virtio_slot`).
    pub slot: u32,
    /// `DeviceID` (only `crate::virtio::device::BLOCK` so far).
    pub device_id: u32,
    /// Device-type features offered beyond Mica's own (within `virtio::feature::OFFERABLE`).
    pub features: u64,
    /// A block device's size in 512-byte sectors.
    pub capacity: u64,
    /// Entries of each queue at most (a power of two).
    pub queue_size: u32,
    /// Reserved, zero.
    pub reserved: u32,
}

/// Most devices passed through at boot.
pub const MAX_DEVICES: usize = 16;

/// [`DomainRecord::flags`]: start this domain when the system boots (otherwise it waits for
/// [`DomainRecord::start_after`] or a control domain).
pub const FLAG_START_AT_BOOT: u32 = 1 << 0;
/// [`DomainRecord::flags`]: the guest runs with its MMU off and expects its memory to be
/// normal cacheable memory anyway (HCR_EL2.DC); set for Mica's own Rust domains, never for
/// Linux.
pub const FLAG_DEFAULT_CACHEABLE: u32 = 1 << 1;
/// [`DomainRecord::flags`]: the domain is the scheduling policy: it receives a SchedControl
/// capability over every CPU (`sched-control`), the read-only accounting page
/// (`sched-accounting`, `abi::sched`) and an event endpoint on which the kernel reports
/// changes (`sched-events`).
pub const FLAG_SCHED_CONTROL: u32 = 1 << 2;
/// [`DomainRecord::flags`]: the domain is the control domain: it receives a memory pool of
/// [`CONTROL_POOL_BYTES`] (`free-memory`), a SchedControl capability (`sched-control`), the
/// system image read-only (`system-image`, at [`SYSTEM_IMAGE_IPA`]) and a Domain capability with CONTROL and GRANT for every other domain
/// (`dom-<name>`).
pub const FLAG_CONTROL: u32 = 1 << 3;
/// [`DomainRecord::flags`]: the domain is an unmodified Linux kernel, started by the arm64
/// Linux boot protocol instead of Mica's: vCPU 0 enters at [`DomainRecord::entry`] (the
/// Image's load address) with x0 = [`DomainRecord::arg`] (its device tree's address) and x1-x3
/// = 0, MMU and caches off; no boot-info page is written (the whole RAM is the guest's); it
/// gets an emulated PL011 at [`crate::layout::devices::UART_BASE`] as its console; and its
/// ID registers are answered sanitised (`docs/linux-guests.md`).
pub const FLAG_LINUX: u32 = 1 << 4;
/// Size of the control domain's memory pool, from which it creates domains.
pub const CONTROL_POOL_BYTES: u64 = 64 << 20;
/// Where the control domain sees the system image.
pub const SYSTEM_IMAGE_IPA: u64 = 0xA000_0000;

/// One domain.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct DomainRecord {
    /// Name, UTF-8, NUL-padded.
    pub name: [u8; 32],
    /// RAM size in bytes (a multiple of 4 KiB), mapped at [`DOMAIN_RAM_BASE`].
    pub memory_bytes: u64,
    /// Entry point of vCPU 0 (guest-physical).
    pub entry: u64,
    /// Passed to vCPU 0 in x0.
    pub arg: u64,
    /// Index of this domain's first [`SegmentRecord`].
    pub first_segment: u32,
    /// How many segments.
    pub segment_count: u32,
    /// How many vCPUs the domain may start (1..=[`MAX_VCPUS_PER_DOMAIN`]).
    pub vcpu_count: u32,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// Physical CPU of each vCPU, or [`ANY_CPU`].
    pub affinity: [u8; MAX_VCPUS_PER_DOMAIN],
    /// 1 + index of the domain whose destruction starts this one; 0 = none.
    pub start_after: u32,
    /// 1 + index of the domain whose (scrubbed) RAM frames this one receives; 0 = fresh
    /// frames. Only meaningful together with `start_after` naming the same domain.
    pub memory_from: u32,
    /// Scheduling priority (higher runs first; 0 = default).
    pub priority: u32,
    /// What the manifest asks the scheduling policy for (published in the accounting page).
    pub sched: SchedRequest,
}

/// A domain's scheduling request from the manifest, for the policy domain to honour.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct SchedRequest {
    /// Credit policy: relative weight (0 = default 1).
    pub weight: u16,
    /// Credit policy: at most this percentage of a CPU (0 = no cap).
    pub cap_percent: u8,
    /// NUMA node of the domain's memory: 0 = the node of its first vCPU's CPU, n = node n−1.
    pub memory_node: u8,
    /// Real-time policy: budget per period, microseconds (0 = none).
    pub budget_us: u32,
    /// Real-time policy: period, microseconds.
    pub period_us: u32,
}

/// One loadable piece of a domain image (an ELF `PT_LOAD` segment).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct SegmentRecord {
    /// Guest-physical load address.
    pub ipa: u64,
    /// Offset of the segment's bytes from the start of the system image.
    pub offset: u64,
    /// Bytes present in the image.
    pub file_size: u64,
    /// Bytes in memory (the rest after `file_size` is zero).
    pub mem_size: u64,
}

/// An event channel created at boot between two domains: each gets one endpoint capability
/// (send and receive rights), listed under its name in the domain's boot-info page.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct ChannelRecord {
    /// Index of the first domain.
    pub a_domain: u32,
    /// Index of the second domain.
    pub b_domain: u32,
    /// Name of the endpoint in the first domain (NUL-padded).
    pub a_name: [u8; NAME_LEN],
    /// Name of the endpoint in the second domain.
    pub b_name: [u8; NAME_LEN],
    /// Reserved, zero.
    pub reserved: [u32; 2],
}

/// A region of one domain's RAM shared with another at boot: the owner gets a derived Memory
/// capability over it (revoking its descendants unmaps it from the peer), the peer a copy
/// derived from that one, mapped at `peer_ipa`.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct ShareRecord {
    /// Name of the region and of both capabilities (NUL-padded).
    pub name: [u8; NAME_LEN],
    /// Index of the domain whose RAM it is.
    pub owner: u32,
    /// Index of the domain it is shared with.
    pub peer: u32,
    /// 4 KiB pages.
    pub pages: u32,
    /// Rights of the peer's mapping (`Rights` bits: READ, optionally WRITE).
    pub peer_rights: u32,
    /// Byte offset of the region in the owner's RAM (page aligned).
    pub owner_offset: u64,
    /// Where the peer sees it (page aligned, outside its RAM).
    pub peer_ipa: u64,
    /// [`SHARE_PEER_ONLY`], or 0.
    pub flags: u64,
}

/// [`ShareRecord::flags`]: the region is listed in the peer's boot-info page only, not the
/// owner's: the owner's RAM given to the server of its disk, which the owner goes on using as
/// its own (its runtime does not set it aside as a shared region).
pub const SHARE_PEER_ONLY: u64 = 1;

const _: () = assert!(core::mem::size_of::<Header>() == 40);
const _: () = assert!(core::mem::size_of::<DeviceRecord>() == 64);
const _: () = assert!(core::mem::size_of::<ChannelRecord>() == 64);
const _: () = assert!(core::mem::size_of::<ShareRecord>() == 64);
const _: () = assert!(core::mem::size_of::<VirtioRecord>() == 64);
const _: () = assert!(core::mem::size_of::<DomainRecord>() == 104);
const _: () = assert!(core::mem::size_of::<SegmentRecord>() == 32);

/// Why a system image cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// Too short for a header, or the magic is wrong.
    NotASystemImage,
    /// A layout version this kernel does not read.
    UnsupportedVersion(u32),
    /// Channel `index` is malformed.
    BadChannel(u32, &'static str),
    /// Shared region `index` is malformed.
    BadShare(u32, &'static str),
    /// Device `index` is malformed.
    BadDevice(u32, &'static str),
    /// Virtio device `index` is malformed.
    BadVirtio(u32, &'static str),
    /// `total_size` disagrees with the blob, or a table runs past the end.
    Truncated,
    /// More domains than [`MAX_DOMAINS`], or none.
    BadDomainCount(u32),
    /// Domain `index` is malformed (the `&str` says how).
    BadDomain(u32, &'static str),
}

impl core::fmt::Display for ImageError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ImageError::NotASystemImage => {
                write!(f, "no system image (magic MICASYS1) after the hypervisor")
            }
            ImageError::UnsupportedVersion(v) => {
                write!(f, "system image layout version {v}, expected {VERSION}")
            }
            ImageError::Truncated => write!(
                f,
                "the system image is truncated or its tables overlap its end"
            ),
            ImageError::BadDomainCount(n) => write!(
                f,
                "the system image has {n} domains (1..={MAX_DOMAINS} allowed)"
            ),
            ImageError::BadDomain(i, why) => write!(f, "domain #{i} of the system image: {why}"),
            ImageError::BadChannel(i, why) => write!(f, "channel #{i} of the system image: {why}"),
            ImageError::BadDevice(i, why) => {
                write!(f, "device #{i} of the system image: {why}")
            }
            ImageError::BadShare(i, why) => {
                write!(f, "shared region #{i} of the system image: {why}")
            }
            ImageError::BadVirtio(i, why) => {
                write!(f, "virtio device #{i} of the system image: {why}")
            }
        }
    }
}

/// A validated view of a system image.
#[derive(Clone, Copy, Debug)]
pub struct SystemImage<'a> {
    blob: &'a [u8],
    domains: &'a [DomainRecord],
    segments: &'a [SegmentRecord],
    channels: &'a [ChannelRecord],
    shares: &'a [ShareRecord],
    devices: &'a [DeviceRecord],
    virtio: &'a [VirtioRecord],
}

impl<'a> SystemImage<'a> {
    /// Checks and views `blob` (which may extend past the image; only `total_size` bytes
    /// are used).
    pub fn parse(blob: &'a [u8]) -> Result<SystemImage<'a>, ImageError> {
        let (header, _) =
            Header::read_from_prefix(blob).map_err(|_| ImageError::NotASystemImage)?;
        // One 64-bit compare (not a byte loop, which would set the parser proofs' loop bound).
        if u64::from_le_bytes(header.magic) != u64::from_le_bytes(MAGIC) {
            return Err(ImageError::NotASystemImage);
        }
        if header.version != VERSION {
            return Err(ImageError::UnsupportedVersion(header.version));
        }
        let total = usize::try_from(header.total_size).map_err(|_| ImageError::Truncated)?;
        let blob = blob.get(..total).ok_or(ImageError::Truncated)?;
        let n = header.domain_count as usize;
        if n == 0 || n > MAX_DOMAINS {
            return Err(ImageError::BadDomainCount(header.domain_count));
        }
        let rest = blob
            .get(core::mem::size_of::<Header>()..)
            .ok_or(ImageError::Truncated)?;
        let (domains, rest) = <[DomainRecord]>::ref_from_prefix_with_elems(rest, n)
            .map_err(|_| ImageError::Truncated)?;
        let segment_total: u64 = domains.iter().map(|d| d.segment_count as u64).sum();
        let segment_total = usize::try_from(segment_total).map_err(|_| ImageError::Truncated)?;
        let (segments, rest) = <[SegmentRecord]>::ref_from_prefix_with_elems(rest, segment_total)
            .map_err(|_| ImageError::Truncated)?;
        if header.channel_count as usize > MAX_CHANNELS || header.share_count as usize > MAX_SHARES
        {
            return Err(ImageError::Truncated);
        }
        let (channels, rest) =
            <[ChannelRecord]>::ref_from_prefix_with_elems(rest, header.channel_count as usize)
                .map_err(|_| ImageError::Truncated)?;
        let (shares, rest) =
            <[ShareRecord]>::ref_from_prefix_with_elems(rest, header.share_count as usize)
                .map_err(|_| ImageError::Truncated)?;
        if header.device_count as usize > MAX_DEVICES {
            return Err(ImageError::Truncated);
        }
        let (devices, rest) =
            <[DeviceRecord]>::ref_from_prefix_with_elems(rest, header.device_count as usize)
                .map_err(|_| ImageError::Truncated)?;
        if header.virtio_count as usize > MAX_VIRTIO {
            return Err(ImageError::Truncated);
        }
        let (virtio, _) =
            <[VirtioRecord]>::ref_from_prefix_with_elems(rest, header.virtio_count as usize)
                .map_err(|_| ImageError::Truncated)?;
        let image = SystemImage {
            blob,
            domains,
            segments,
            channels,
            shares,
            devices,
            virtio,
        };
        image.check_records()?;
        Ok(image)
    }

    /// Checks every record of the framed tables against the placement rules.
    pub(crate) fn check_records(&self) -> Result<(), ImageError> {
        for (i, dev) in self.devices.iter().enumerate() {
            self.check_device(i as u32, dev)?;
        }
        for (i, d) in self.domains.iter().enumerate() {
            self.check_domain(i as u32, d)?;
        }
        for (i, c) in self.channels.iter().enumerate() {
            self.check_channel(i as u32, c)?;
        }
        for (i, sh) in self.shares.iter().enumerate() {
            self.check_share(i as u32, sh)?;
        }
        for (i, v) in self.virtio.iter().enumerate() {
            self.check_virtio(i as u32, v)?;
        }
        Ok(())
    }

    /// A view of tables framed elsewhere, not yet checked: what the proofs hand to
    /// [`SystemImage::check_records`] (`crate::proofs`).
    #[cfg(kani)]
    pub(crate) fn from_tables(
        blob: &'a [u8],
        domains: &'a [DomainRecord],
        segments: &'a [SegmentRecord],
        channels: &'a [ChannelRecord],
        shares: &'a [ShareRecord],
        devices: &'a [DeviceRecord],
    ) -> SystemImage<'a> {
        SystemImage {
            blob,
            domains,
            segments,
            channels,
            shares,
            devices,
            virtio: &[],
        }
    }

    fn check_channel(&self, i: u32, c: &ChannelRecord) -> Result<(), ImageError> {
        let n = self.domains.len() as u32;
        if c.a_domain >= n || c.b_domain >= n {
            return Err(ImageError::BadChannel(
                i,
                "names a domain that does not exist",
            ));
        }
        for name in [&c.a_name, &c.b_name] {
            if crate::bootinfo::name_str(name).is_empty() {
                return Err(ImageError::BadChannel(
                    i,
                    "an endpoint name is empty or not UTF-8",
                ));
            }
        }
        Ok(())
    }

    fn check_share(&self, i: u32, sh: &ShareRecord) -> Result<(), ImageError> {
        let bad = |why| Err(ImageError::BadShare(i, why));
        let Some(owner) = self.domains.get(sh.owner as usize) else {
            return bad("the owner does not exist");
        };
        if sh.peer as usize >= self.domains.len() || sh.peer == sh.owner {
            return bad("the peer does not exist or is the owner");
        }
        if crate::bootinfo::name_str(&sh.name).is_empty() {
            return bad("the name is empty or not UTF-8");
        }
        if sh.flags & !SHARE_PEER_ONLY != 0 {
            return bad("unknown flags");
        }
        let size = (sh.pages as u64) * 4096;
        let allowed = crate::Rights::READ | crate::Rights::WRITE;
        if sh.pages == 0
            || !sh.owner_offset.is_multiple_of(4096)
            || !sh.peer_ipa.is_multiple_of(4096)
        {
            return bad("empty, or not page aligned");
        }
        match crate::Rights::from_bits(sh.peer_rights) {
            Some(r) if allowed.contains(r) && r.contains(crate::Rights::READ) => {}
            _ => return bad("peer rights must be READ, or READ and WRITE"),
        }
        // The last page of the owner's RAM is its boot-info page: never shared.
        let owner_layout = DomainLayout::new(owner.memory_bytes);
        match DOMAIN_RAM_BASE.checked_add(sh.owner_offset) {
            Some(start) if owner_layout.holds(start, size) => {}
            _ => {
                return bad("the region does not lie in the owner's RAM (below its boot-info page)")
            }
        }
        let peer = &self.domains[sh.peer as usize];
        if !DomainLayout::new(peer.memory_bytes).holds_shared_window(sh.peer_ipa, size) {
            return bad("the peer address is not above the peer's RAM, or leaves the 39-bit space");
        }
        Ok(())
    }

    fn check_device(&self, i: u32, dev: &DeviceRecord) -> Result<(), ImageError> {
        let bad = |why| Err(ImageError::BadDevice(i, why));
        let name = crate::bootinfo::name_str(&dev.name);
        // Room for NAME-irq (and a NUL) in a boot-info name.
        if name.is_empty() || name.len() > NAME_LEN - crate::bootinfo::suffix::IRQ.len() - 1 {
            return bad("the name is empty, not UTF-8 or longer than 19 bytes");
        }
        let Some(d) = self.domains.get(dev.domain as usize) else {
            return bad("the domain does not exist");
        };
        if dev.mmio_size == 0
            || !dev.mmio_base.is_multiple_of(4096)
            || !dev.mmio_size.is_multiple_of(4096)
            || !dev.guest_address.is_multiple_of(4096)
        {
            return bad("the MMIO window is empty or not page aligned");
        }
        if dev.interrupt != 0 && !(32..1020).contains(&dev.interrupt) {
            return bad("the interrupt is not an SPI (INTID 32-1019)");
        }
        if cfg!(feature = "mutant-device-window-unchecked")
            || DomainLayout::new(d.memory_bytes)
                .holds_device_window(dev.guest_address, dev.mmio_size)
        {
            Ok(())
        } else {
            bad("the guest address overlaps the domain's RAM or leaves the 39-bit address space")
        }
    }

    fn check_virtio(&self, i: u32, v: &VirtioRecord) -> Result<(), ImageError> {
        use crate::virtio::{device, feature, queue, MAX_DEVICES};
        let bad = |why| Err(ImageError::BadVirtio(i, why));
        let name = crate::bootinfo::name_str(&v.name);
        // Room for NAME-events in a boot-info name.
        if name.is_empty() || name.len() > NAME_LEN - crate::bootinfo::suffix::EVENTS.len() {
            return bad("the name is empty, not UTF-8 or longer than 17 bytes");
        }
        let n = self.domains.len() as u32;
        if v.guest >= n || v.server >= n || v.guest == v.server {
            return bad("the guest or the server does not exist, or they are one domain");
        }
        if crate::layout::devices::virtio_slot(v.slot).is_none() {
            return bad("no such virtio slot");
        }
        if v.device_id != device::BLOCK {
            return bad("not a block device (the only kind so far)");
        }
        if v.features & !feature::OFFERABLE != 0 {
            return bad("offers features Mica's devices do not implement");
        }
        if !v.queue_size.is_power_of_two() || v.queue_size > u32::from(queue::MAX_SIZE) {
            return bad("the queue size is not a power of two up to 32768");
        }
        let same_guest = || self.virtio.iter().filter(|o| o.guest == v.guest);
        if same_guest().filter(|o| o.slot == v.slot).count() > 1 {
            return bad("another device of the guest has this slot");
        }
        if same_guest().count() > MAX_DEVICES {
            return bad("the guest has more virtio devices than a domain may have");
        }
        Ok(())
    }

    /// The virtio devices of the image's guests.
    pub fn virtio(&self) -> &'a [VirtioRecord] {
        self.virtio
    }

    /// The devices passed through at boot.
    pub fn devices(&self) -> &'a [DeviceRecord] {
        self.devices
    }

    /// The channels created at boot.
    pub fn channels(&self) -> &'a [ChannelRecord] {
        self.channels
    }

    /// The shared regions created at boot.
    pub fn shares(&self) -> &'a [ShareRecord] {
        self.shares
    }

    fn check_domain(&self, i: u32, d: &DomainRecord) -> Result<(), ImageError> {
        let bad = |why| Err(ImageError::BadDomain(i, why));
        if crate::bootinfo::text(&d.name).is_empty() {
            return bad("the name is empty or not UTF-8");
        }
        if d.memory_bytes == 0 || !d.memory_bytes.is_multiple_of(4096) {
            return bad("memory size is zero or not a multiple of 4 KiB");
        }
        let ram_end = DOMAIN_RAM_BASE
            .checked_add(d.memory_bytes)
            .ok_or(ImageError::BadDomain(i, "memory size overflows"))?;
        if d.vcpu_count == 0 || d.vcpu_count as usize > MAX_VCPUS_PER_DOMAIN {
            return bad("vCPU count out of 1..=8");
        }
        if !(DOMAIN_RAM_BASE..ram_end).contains(&d.entry) {
            return bad("entry point outside the domain's RAM");
        }
        if d.flags & FLAG_LINUX != 0
            && d.flags & (FLAG_DEFAULT_CACHEABLE | FLAG_CONTROL | FLAG_SCHED_CONTROL) != 0
        {
            return bad("a Linux domain cannot be default-cacheable, control or policy");
        }
        for link in [d.start_after, d.memory_from] {
            if link as usize > self.domains.len() || link == i + 1 {
                return bad("start_after/memory_from names no other domain");
            }
        }
        let layout = crate::layout::DomainLayout::new(d.memory_bytes);
        if d.entry >= layout.usable_end() {
            return bad("entry point in the boot-info page");
        }
        let segments = self
            .segments_of(d)
            .ok_or(ImageError::BadDomain(i, "segment table out of range"))?;
        for s in segments {
            let data_end = s.offset.checked_add(s.file_size);
            match data_end {
                Some(data_end)
                    if s.file_size <= s.mem_size && data_end <= self.blob.len() as u64 => {}
                _ => return bad("a segment's bytes lie outside the image"),
            }
            if !layout.holds(s.ipa, s.mem_size) {
                return bad(
                    "a segment lies outside the domain's RAM or reaches its last page, the \
                     boot-info page",
                );
            }
        }
        Ok(())
    }

    /// The domain records.
    pub fn domains(&self) -> &'a [DomainRecord] {
        self.domains
    }

    /// The segments of `d` (a record of this image).
    pub fn segments_of(&self, d: &DomainRecord) -> Option<&'a [SegmentRecord]> {
        let start = d.first_segment as usize;
        self.segments
            .get(start..start.checked_add(d.segment_count as usize)?)
    }

    /// The file bytes of segment `s` (checked by `parse`).
    pub fn segment_bytes(&self, s: &SegmentRecord) -> &'a [u8] {
        let start = s.offset as usize;
        self.blob
            .get(start..start + s.file_size as usize)
            .unwrap_or(&[])
    }

    /// Total size in bytes.
    pub fn size(&self) -> usize {
        self.blob.len()
    }
}

impl DomainRecord {
    /// The name as a string (validated by [`SystemImage::parse`]).
    pub fn name(&self) -> &str {
        core::str::from_utf8(trim_nul(&self.name)).unwrap_or("?")
    }
}

fn trim_nul(b: &[u8]) -> &[u8] {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    &b[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(name: &str, first_segment: u32) -> DomainRecord {
        let mut n = [0u8; 32];
        n[..name.len()].copy_from_slice(name.as_bytes());
        DomainRecord {
            name: n,
            memory_bytes: 0x20_0000,
            entry: DOMAIN_RAM_BASE,
            arg: 7,
            first_segment,
            segment_count: 1,
            vcpu_count: 2,
            flags: FLAG_START_AT_BOOT,
            affinity: [ANY_CPU; MAX_VCPUS_PER_DOMAIN],
            start_after: 0,
            memory_from: 0,
            priority: 0,
            sched: SchedRequest::default(),
        }
    }

    /// Two domains, one segment each, in the documented layout.
    fn build(domains: &[DomainRecord], payload: &[&[u8]]) -> Vec<u8> {
        build_with_virtio(domains, payload, &[])
    }

    /// [`build`] with virtio records.
    fn build_with_virtio(
        domains: &[DomainRecord],
        payload: &[&[u8]],
        virtio: &[VirtioRecord],
    ) -> Vec<u8> {
        let header_len = size_of::<Header>() + size_of_val(domains);
        let data_start = header_len
            + payload.len() * size_of::<SegmentRecord>()
            + size_of::<ShareRecord>()
            + size_of_val(virtio);
        let mut segments = Vec::new();
        let mut offset = data_start as u64;
        for p in payload {
            segments.push(SegmentRecord {
                ipa: DOMAIN_RAM_BASE,
                offset,
                file_size: p.len() as u64,
                mem_size: 0x1000,
            });
            offset += p.len() as u64;
        }
        let header = Header {
            magic: MAGIC,
            version: VERSION,
            domain_count: domains.len() as u32,
            total_size: offset,
            channel_count: 0,
            share_count: 1,
            device_count: 0,
            virtio_count: virtio.len() as u32,
        };
        let mut out = header.as_bytes().to_vec();
        for d in domains {
            out.extend_from_slice(d.as_bytes());
        }
        for s in &segments {
            out.extend_from_slice(s.as_bytes());
        }
        let share = ShareRecord {
            name: crate::bootinfo::name_field("ring"),
            owner: 0,
            peer: if domains.len() > 1 { 1 } else { 0 },
            pages: 1,
            peer_rights: crate::Rights::READ.bits(),
            owner_offset: 0x1000,
            peer_ipa: 0x8000_0000,
            flags: 0,
        };
        out.extend_from_slice(share.as_bytes());
        out.extend_from_slice(virtio.as_bytes());
        for p in payload {
            out.extend_from_slice(p);
        }
        out
    }

    fn disk(guest: u32, server: u32, slot: u32) -> VirtioRecord {
        VirtioRecord {
            name: crate::bootinfo::name_field("vda"),
            guest,
            server,
            slot,
            device_id: crate::virtio::device::BLOCK,
            features: 0,
            capacity: 1 << 20,
            queue_size: 128,
            reserved: 0,
        }
    }

    #[test]
    fn virtio_records_are_checked() {
        let doms = [domain("hello", 0), domain("world", 1)];
        let parse = |v: &[VirtioRecord]| {
            SystemImage::parse(&build_with_virtio(&doms, &[b"abc", b"de"], v))
                .map(|i| i.virtio().len())
        };
        assert_eq!(parse(&[disk(0, 1, 0), disk(0, 1, 1)]), Ok(2));
        let mut cases = vec![
            ("a guest that does not exist", disk(2, 1, 0)),
            ("its own server", disk(1, 1, 0)),
            (
                "no such slot",
                disk(0, 1, crate::layout::devices::VIRTIO_SLOTS),
            ),
        ];
        let mut net = disk(0, 1, 0);
        net.device_id = crate::virtio::device::NET;
        cases.push(("not a block device", net));
        let mut packed = disk(0, 1, 0);
        packed.features = 1 << 34;
        cases.push(("packed rings", packed));
        let mut odd = disk(0, 1, 0);
        odd.queue_size = 100;
        cases.push(("a queue size not a power of two", odd));
        let mut unnamed = disk(0, 1, 0);
        unnamed.name = [0; NAME_LEN];
        cases.push(("no name", unnamed));
        for (what, v) in cases {
            assert!(
                matches!(parse(&[v]), Err(ImageError::BadVirtio(0, _))),
                "{what}"
            );
        }
        let twice = parse(&[disk(0, 1, 3), disk(0, 1, 3)]);
        assert!(
            matches!(twice, Err(ImageError::BadVirtio(0, _))),
            "one slot twice"
        );
        let many: Vec<VirtioRecord> = (0..5).map(|n| disk(0, 1, n)).collect();
        assert!(
            matches!(parse(&many), Err(ImageError::BadVirtio(0, _))),
            "five on one guest"
        );
    }

    #[test]
    fn a_well_formed_image_parses() {
        let blob = build(
            &[domain("hello", 0), domain("world", 1)],
            &[b"abc", b"defgh"],
        );
        let img = SystemImage::parse(&blob).unwrap();
        assert_eq!(img.domains().len(), 2);
        assert_eq!(img.shares().len(), 1);
        assert_eq!(img.shares()[0].peer_ipa, 0x8000_0000);
        assert_eq!(img.domains()[1].name(), "world");
        let seg = img.segments_of(&img.domains()[1]).unwrap()[0];
        assert_eq!(img.segment_bytes(&seg), b"defgh");
        // Trailing bytes after total_size are ignored.
        let mut longer = blob.clone();
        longer.extend_from_slice(&[0xAA; 100]);
        assert_eq!(SystemImage::parse(&longer).unwrap().size(), blob.len());
    }

    #[test]
    fn corrupt_images_are_rejected() {
        let good = build(&[domain("hello", 0)], &[b"abc"]);
        assert_eq!(
            SystemImage::parse(&good[..10]).err(),
            Some(ImageError::NotASystemImage)
        );
        assert_eq!(
            SystemImage::parse(&good[..good.len() - 1]).err(),
            Some(ImageError::Truncated)
        );
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(
            SystemImage::parse(&bad).err(),
            Some(ImageError::NotASystemImage)
        );
        let mut d = domain("hello", 0);
        d.entry = 0;
        assert!(matches!(
            SystemImage::parse(&build(&[d], &[b"abc"])),
            Err(ImageError::BadDomain(0, _))
        ));
        let mut d = domain("hello", 0);
        d.segment_count = 5;
        assert!(SystemImage::parse(&build(&[d], &[b"abc"])).is_err());
        let mut d = domain("hello", 0);
        d.start_after = 1;
        assert!(matches!(
            SystemImage::parse(&build(&[d], &[b"abc"])),
            Err(ImageError::BadDomain(0, _))
        ));
        let mut d = domain("", 0);
        d.name = [0xFF; 32];
        assert!(SystemImage::parse(&build(&[d], &[b"abc"])).is_err());
        assert!(SystemImage::parse(&build(&[], &[])).is_err());
        // A Linux domain runs with its caches off and holds no Mica role.
        for role in [FLAG_DEFAULT_CACHEABLE, FLAG_CONTROL, FLAG_SCHED_CONTROL] {
            let mut d = domain("linux", 0);
            d.flags = FLAG_LINUX | role;
            assert!(matches!(
                SystemImage::parse(&build(&[d], &[b"abc"])),
                Err(ImageError::BadDomain(0, _))
            ));
        }
        let mut d = domain("linux", 0);
        d.flags = FLAG_LINUX | FLAG_START_AT_BOOT;
        let img = build(&[d, domain("world", 1)], &[b"abc", b"de"]);
        assert_eq!(SystemImage::parse(&img).err(), None);
    }

    /// The kernel writes the boot-info page into the last page of a domain's RAM: an image
    /// whose segment reaches it (the whole RAM here, one 4 KiB page of which the segment
    /// fills) is refused, not overwritten at boot.
    #[test]
    fn a_segment_reaching_the_boot_info_page_is_refused() {
        let mut d = domain("hello", 0);
        d.memory_bytes = 0x1000;
        assert_eq!(
            SystemImage::parse(&build(&[d], &[b"abc"])).err(),
            Some(ImageError::BadDomain(
                0,
                "entry point in the boot-info page"
            ))
        );
        d.memory_bytes = 0x3000;
        let mut img = build(&[d, domain("world", 1)], &[b"abc", b"de"]);
        assert_eq!(
            SystemImage::parse(&img).err(),
            None,
            "a page of image, the shared page, the boot page"
        );
        // Grow the segment to three pages: into the boot-info page.
        let at = size_of::<Header>() + 2 * size_of::<DomainRecord>() + 24;
        img[at..at + 8].copy_from_slice(&0x3000u64.to_le_bytes());
        assert_eq!(
            SystemImage::parse(&img).err(),
            Some(ImageError::BadDomain(
                0,
                "a segment lies outside the domain's RAM or reaches its last page, the boot-info \
                 page"
            ))
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        let good = build(
            &[domain("hello", 0), domain("world", 1)],
            &[b"abc", b"defgh"],
        );
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..20_000 {
            let mut b = good.clone();
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let i = (state as usize) % b.len();
                b[i] = (state >> 32) as u8;
            }
            let _ = SystemImage::parse(&b);
        }
    }
}
