//! The boot-info page: what the kernel tells a domain about itself when it starts.
//!
//! The kernel writes it into the last 4 KiB page of the domain's RAM before vCPU 0 starts and
//! passes its guest-physical address in x3; x2 (the RAM size) excludes it. It lists the
//! capabilities the system manifest granted the domain, by name, and the shared regions mapped
//! into it, so a domain asks for "the channel to pong" instead of hard-coding slot numbers.

use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

/// The first eight bytes of the page.
pub const MAGIC: [u8; 8] = *b"MICABOOT";
/// Layout version.
pub const VERSION: u32 = 1;
/// Most named capabilities listed.
pub const MAX_CAPS: usize = 32;
/// Most shared regions listed.
pub const MAX_REGIONS: usize = 8;
/// Bytes of a name (NUL-padded UTF-8).
pub const NAME_LEN: usize = 24;

/// The suffixes that name the other capabilities and regions of a device or a disk after it
/// (`NAME` + suffix) in a boot-info page: the kernel and the toolstack list them so, the
/// domains look them up so, and the manifest checks reserve the names.
pub mod suffix {
    /// A passed-through device's interrupt line, beside its DeviceMemory capability.
    pub const IRQ: &str = "-irq";
    /// A virtio device's event endpoint, in the domain that serves the device.
    pub const EVENTS: &str = "-events";
    /// The guest's RAM, shared with the domain that serves its disk.
    pub const RAM: &str = "-ram";
    /// A disk's I/O region between its device domain and the block service (`mica_abi::blkio`).
    pub const IO: &str = "-io";
    /// The device domain's end of its channel to the block service (the service's end is
    /// named after the disk alone).
    pub const BLK: &str = "-blk";
}

/// A named capability in the domain's space.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[cfg_attr(kani, derive(kani::Arbitrary))]
#[repr(C)]
pub struct CapEntry {
    /// Name from the manifest.
    pub name: [u8; NAME_LEN],
    /// Slot in the domain's capability space.
    pub slot: u16,
    /// `ObjectType` as a number.
    pub object_type: u8,
    /// Reserved.
    pub reserved: u8,
    /// `Rights` bits.
    pub rights: u32,
}

/// A shared region mapped into the domain.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[cfg_attr(kani, derive(kani::Arbitrary))]
#[repr(C)]
pub struct RegionEntry {
    /// Name from the manifest.
    pub name: [u8; NAME_LEN],
    /// Guest-physical address.
    pub ipa: u64,
    /// Size in bytes.
    pub size: u64,
    /// Slot of the Memory capability it is mapped through (revoking that unmaps it).
    pub slot: u16,
    /// Reserved.
    pub reserved: u16,
    /// `Rights` bits it is mapped with.
    pub rights: u32,
}

/// The page.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[cfg_attr(kani, derive(kani::Arbitrary))]
#[repr(C)]
pub struct BootInfo {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// [`VERSION`].
    pub version: u32,
    /// Times the domain has been restarted (0 on first boot).
    pub boots: u32,
    /// The domain's id.
    pub domain_id: u32,
    /// vCPUs it may start.
    pub vcpu_count: u32,
    /// Valid entries in `caps`.
    pub cap_count: u32,
    /// Valid entries in `regions`.
    pub region_count: u32,
    /// Named capabilities.
    pub caps: [CapEntry; MAX_CAPS],
    /// Shared regions.
    pub regions: [RegionEntry; MAX_REGIONS],
}

const _: () = assert!(core::mem::size_of::<CapEntry>() == 32);
const _: () = assert!(core::mem::size_of::<RegionEntry>() == 48);
const _: () = assert!(core::mem::size_of::<BootInfo>() <= 4096);

/// Copies `name` into a NUL-padded field (truncating at [`NAME_LEN`]).
pub fn name_field(name: &str) -> [u8; NAME_LEN] {
    let mut out = [0; NAME_LEN];
    for (o, b) in out.iter_mut().zip(name.bytes()) {
        *o = b;
    }
    out
}

/// The text of a NUL-padded name field.
pub fn name_str(field: &[u8; NAME_LEN]) -> &str {
    text(field)
}

/// The text of a NUL-padded field of any length: the bytes before the first NUL, or `""`
/// when they are not UTF-8. (The one UTF-8 check of names, which the parser proofs replace
/// with a model: docs/verification.md.)
pub fn text(field: &[u8]) -> &str {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    core::str::from_utf8(&field[..end]).unwrap_or("")
}

impl BootInfo {
    /// An empty page for domain `domain_id`.
    pub fn new(domain_id: u32, vcpu_count: u32, boots: u32) -> BootInfo {
        let mut b = BootInfo::new_zeroed();
        b.magic = MAGIC;
        b.version = VERSION;
        b.domain_id = domain_id;
        b.vcpu_count = vcpu_count;
        b.boots = boots;
        b
    }

    /// The named capability `name`.
    pub fn cap(&self, name: &str) -> Option<&CapEntry> {
        self.caps
            .iter()
            .take(self.cap_count as usize)
            .find(|c| name_str(&c.name) == name)
    }

    /// The shared region `name`.
    pub fn region(&self, name: &str) -> Option<&RegionEntry> {
        self.regions
            .iter()
            .take(self.region_count as usize)
            .find(|r| name_str(&r.name) == name)
    }

    /// Appends a capability entry; false when full.
    pub fn push_cap(&mut self, entry: CapEntry) -> bool {
        let i = self.cap_count as usize;
        match self.caps.get_mut(i) {
            Some(slot) => {
                *slot = entry;
                self.cap_count += 1;
                true
            }
            None => false,
        }
    }

    /// Removes every capability entry for which `keep` is false, keeping the order of the rest.
    pub fn retain_caps(&mut self, mut keep: impl FnMut(&CapEntry) -> bool) {
        let n = if cfg!(feature = "mutant-retain-caps-unclamped") {
            self.cap_count as usize
        } else {
            (self.cap_count as usize).min(MAX_CAPS)
        };
        let mut kept = 0;
        for i in 0..n {
            if keep(&self.caps[i]) {
                self.caps[kept] = self.caps[i];
                kept += 1;
            }
        }
        for c in &mut self.caps[kept..n] {
            *c = CapEntry::new_zeroed();
        }
        self.cap_count = kept as u32;
    }

    /// Appends a region entry; false when full.
    pub fn push_region(&mut self, entry: RegionEntry) -> bool {
        let i = self.region_count as usize;
        match self.regions.get_mut(i) {
            Some(slot) => {
                *slot = entry;
                self.region_count += 1;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retain_caps_keeps_order_and_clears_the_rest() {
        let mut b = BootInfo::new(3, 1, 0);
        for (i, n) in ["a", "b", "c", "d"].iter().enumerate() {
            assert!(b.push_cap(CapEntry {
                name: name_field(n),
                slot: i as u16,
                object_type: 0,
                reserved: 0,
                rights: 0
            }));
        }
        b.retain_caps(|c| c.slot % 2 == 1);
        assert_eq!(b.cap_count, 2);
        assert_eq!(b.cap("b").map(|c| c.slot), Some(1));
        assert_eq!(b.cap("d").map(|c| c.slot), Some(3));
        assert!(b.cap("a").is_none() && b.cap("c").is_none());
        assert_eq!(name_str(&b.caps[0].name), "b");
        assert_eq!(name_str(&b.caps[2].name), "", "vacated entries are zeroed");
        b.cap_count = 99; // a torn page: counts past the array are clamped
        b.retain_caps(|_| true);
        assert_eq!(b.cap_count, MAX_CAPS as u32);
    }

    #[test]
    fn entries_are_found_by_name() {
        let mut b = BootInfo::new(3, 1, 0);
        assert!(b.push_cap(CapEntry {
            name: name_field("to-pong"),
            slot: 9,
            object_type: 4,
            reserved: 0,
            rights: 0x60
        }));
        assert!(b.push_region(RegionEntry {
            name: name_field("ring"),
            ipa: 0x8000_0000,
            size: 0x1000,
            slot: 10,
            reserved: 0,
            rights: 3
        }));
        assert_eq!(b.cap("to-pong").map(|c| c.slot), Some(9));
        assert!(b.cap("to-ping").is_none());
        assert_eq!(b.region("ring").map(|r| r.ipa), Some(0x8000_0000));
        for _ in 1..MAX_CAPS {
            assert!(b.push_cap(CapEntry {
                name: name_field("x"),
                slot: 0,
                object_type: 0,
                reserved: 0,
                rights: 0
            }));
        }
        assert!(!b.push_cap(CapEntry {
            name: name_field("y"),
            slot: 0,
            object_type: 0,
            reserved: 0,
            rights: 0
        }));
        assert_eq!(
            name_str(&name_field("a-very-long-name-that-is-truncated")).len(),
            NAME_LEN
        );
    }
}
