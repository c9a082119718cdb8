//! The boot-info page: the capabilities and shared regions the kernel lists for the domain.
//!
//! The kernel writes a `mica_abi::bootinfo::BootInfo` into the last 4 KiB of the domain's RAM
//! and passes its address in x3 (docs/domains.md), so a domain finds "the channel to pong" by
//! name instead of hard-coding slot numbers. The page lies in the domain's own RAM, where its
//! own code could have scribbled over it, so [`BootPage::validate`] checks the magic and
//! version and clamps the counts before anything is looked up; [`bootinfo`] copies and
//! validates it once. The pure parts (validation, lookups, carving free RAM around the
//! regions) are host-tested.

use core::ops::{Deref, Range};

use mica_abi::bootinfo::{self as abi, name_str, MAGIC, MAX_CAPS, MAX_REGIONS, VERSION};
use mica_abi::{ObjectType, Rights};

use crate::hypercall::Slot;

pub use mica_abi::bootinfo::{CapEntry, RegionEntry};

/// Bytes of the boot-info page.
pub const PAGE_SIZE: u64 = mica_abi::layout::PAGE_SIZE;

/// A validated copy of the boot-info page: magic and version checked, counts at most
/// [`MAX_CAPS`] and [`MAX_REGIONS`]. Dereferences to the ABI layout, so `cap(name)` and
/// `region(name)` work as in `mica_abi`.
#[derive(Clone, Copy, Debug)]
pub struct BootPage(abi::BootInfo);

/// A shared region mapped into the domain, as the boot-info page lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// Guest-physical address of its first byte.
    pub ipa: u64,
    /// Bytes.
    pub size: u64,
    /// The Memory capability it is mapped through (the owner revokes through it).
    pub slot: Slot,
    /// The rights it is mapped with.
    pub rights: Rights,
}

impl Region {
    /// The guest-physical range it occupies (saturating at the top of the address space).
    pub const fn range(&self) -> Range<u64> {
        self.ipa..self.ipa.saturating_add(self.size)
    }
}

impl BootPage {
    /// Checks a copy of the page: `None` unless the magic and version match; counts larger
    /// than the arrays are clamped to them.
    pub fn validate(mut page: abi::BootInfo) -> Option<BootPage> {
        if page.magic != MAGIC || page.version != VERSION {
            return None;
        }
        page.cap_count = page.cap_count.min(MAX_CAPS as u32);
        if !cfg!(feature = "mutant-bootinfo-counts-unclamped") {
            page.region_count = page.region_count.min(MAX_REGIONS as u32);
        }
        Some(BootPage(page))
    }

    /// The listed capabilities.
    pub fn caps(&self) -> &[CapEntry] {
        &self.0.caps[..self.0.cap_count as usize]
    }

    /// The listed shared regions.
    pub fn regions(&self) -> &[RegionEntry] {
        &self.0.regions[..self.0.region_count as usize]
    }

    /// The slot of the capability `name` if it names an object of type `object_type`.
    pub fn cap_slot(&self, name: &str, object_type: ObjectType) -> Option<Slot> {
        let entry = self.cap(name)?;
        (u64::from(entry.object_type) == object_type as u64).then_some(Slot(entry.slot))
    }

    /// The slot of the event-channel endpoint `name`.
    pub fn endpoint(&self, name: &str) -> Option<Slot> {
        self.cap_slot(name, ObjectType::EventChannel)
    }

    /// The shared region `name`.
    pub fn shared(&self, name: &str) -> Option<Region> {
        let r = self.region(name)?;
        Some(Region {
            ipa: r.ipa,
            size: r.size,
            slot: Slot(r.slot),
            rights: Rights::from_bits_retain(r.rights),
        })
    }

    /// The name of every listed capability and region, for diagnostics.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        let caps = self.caps().iter().map(|c| name_str(&c.name));
        caps.chain(self.regions().iter().map(|r| name_str(&r.name)))
    }
}

impl Deref for BootPage {
    type Target = abi::BootInfo;

    fn deref(&self) -> &abi::BootInfo {
        &self.0
    }
}

/// Whether x3 = `page` is where the boot protocol puts the page given x1 = `ram_base` and
/// x2 = `ram_size`: the page-aligned 4 KiB right after the usable RAM.
pub const fn page_address_ok(page: u64, ram_base: u64, ram_size: u64) -> bool {
    page != 0
        && page.is_multiple_of(PAGE_SIZE)
        && ram_size != 0
        && page >= ram_base
        && ram_base.checked_add(ram_size).is_some()
        && page == ram_base + ram_size
        && page.checked_add(PAGE_SIZE).is_some()
}

/// The largest part of `[start, end)` that overlaps none of `reserved`, with its ends
/// rounded inwards to 8 bytes (an empty range at `start` if there is none).
pub fn largest_free(start: u64, end: u64, reserved: &[Range<u64>]) -> Range<u64> {
    let candidates = core::iter::once(start).chain(reserved.iter().map(|r| r.end));
    let mut best = start..start;
    for from in candidates {
        if from < start || from >= end || reserved.iter().any(|r| r.contains(&from)) {
            continue;
        }
        let to = reserved
            .iter()
            .filter(|r| r.start >= from)
            .map(|r| r.start)
            .fold(end, u64::min);
        // Checked: a region the page lists may end anywhere, up to the top (found by Kani).
        let first = from.checked_next_multiple_of(8).unwrap_or(to);
        let aligned = first.min(to)..to & !7;
        if aligned.end > aligned.start && aligned.end - aligned.start > best.end - best.start {
            best = aligned;
        }
    }
    best
}

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub use bare_metal::{bootinfo, reread};

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod bare_metal {
    use super::{page_address_ok, BootPage};
    use crate::entry::boot_info;

    static PAGE: spin::Once<Option<BootPage>> = spin::Once::new();

    /// The boot-info page the kernel passed in x3, copied and validated on first use; `None`
    /// if x3 is not where the boot protocol puts it or the page is not valid.
    pub fn bootinfo() -> Option<&'static BootPage> {
        PAGE.call_once(|| {
            let info = boot_info();
            if !page_address_ok(info.boot_page, info.ram_base, info.ram_size) {
                return None;
            }
            let page = info.boot_page as *const mica_abi::bootinfo::BootInfo;
            // SAFETY: `page_address_ok` puts the page right after the usable RAM, in the last
            // 4 KiB of the domain's RAM, which the kernel maps readable and which no Rust
            // object occupies (x2 excludes it, so nothing the runtime hands out reaches it).
            // It is page aligned, so aligned for the struct, which fits in 4 KiB, and every bit
            // pattern is a valid value of it (integers and byte arrays only). Only the kernel
            // wrote it, before the domain started, so the read races with nothing.
            let copy = unsafe { core::ptr::read_volatile(page) };
            BootPage::validate(copy)
        })
        .as_ref()
    }

    /// A fresh copy of the boot-info page, validated: for a domain whose page the kernel
    /// rewrites while it runs (the control domain's lists the domains that started since);
    /// `None` if x3 is not where the boot protocol puts it or the page is not valid.
    pub fn reread() -> Option<BootPage> {
        let info = boot_info();
        if !page_address_ok(info.boot_page, info.ram_base, info.ram_size) {
            return None;
        }
        let page = info.boot_page as *const mica_abi::bootinfo::BootInfo;
        // SAFETY: as in `bootinfo`: the page lies in the last 4 KiB of the domain's RAM,
        // outside every Rust object, aligned and valid for any bit pattern. The kernel may
        // rewrite it between two of the domain's hypercalls, never during one of its
        // instructions' reads of a word it wrote; a torn copy (a rewrite while this copies)
        // has the magic and version checked and its counts clamped, so at worst it lists a
        // stale name, which the caller's next hypercall through that slot finds out.
        let copy = unsafe { core::ptr::read_volatile(page) };
        BootPage::validate(copy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mica_abi::bootinfo::name_field;

    fn page() -> abi::BootInfo {
        let mut b = abi::BootInfo::new(3, 1, 0);
        b.push_cap(CapEntry {
            name: name_field("to-pong"),
            slot: 9,
            object_type: ObjectType::EventChannel as u8,
            reserved: 0,
            rights: (Rights::SEND | Rights::RECEIVE).bits(),
        });
        b.push_cap(CapEntry {
            name: name_field("ring"),
            slot: 10,
            object_type: ObjectType::Memory as u8,
            reserved: 0,
            rights: (Rights::READ | Rights::WRITE).bits(),
        });
        b.push_region(RegionEntry {
            name: name_field("ring"),
            ipa: 0x8000_0000,
            size: 0x2000,
            slot: 10,
            reserved: 0,
            rights: (Rights::READ | Rights::WRITE).bits(),
        });
        b
    }

    #[test]
    fn a_valid_page_answers_lookups_by_name_and_type() {
        let p = BootPage::validate(page()).unwrap();
        assert_eq!(p.endpoint("to-pong"), Some(Slot(9)));
        assert_eq!(
            p.endpoint("ring"),
            None,
            "a Memory capability is no endpoint"
        );
        assert_eq!(p.cap_slot("ring", ObjectType::Memory), Some(Slot(10)));
        let r = p.shared("ring").unwrap();
        assert_eq!(r.range(), 0x8000_0000..0x8000_2000);
        assert_eq!(r.slot, Slot(10));
        assert_eq!(r.rights, Rights::READ | Rights::WRITE);
        assert_eq!(p.names().collect::<Vec<_>>(), ["to-pong", "ring", "ring"]);
    }

    #[test]
    fn bad_magic_version_and_counts_are_handled() {
        let mut bad = page();
        bad.magic[0] = b'X';
        assert!(BootPage::validate(bad).is_none());
        let mut bad = page();
        bad.version = VERSION + 1;
        assert!(BootPage::validate(bad).is_none());
        let mut huge = page();
        huge.cap_count = u32::MAX;
        huge.region_count = 1000;
        let p = BootPage::validate(huge).unwrap();
        assert_eq!(p.caps().len(), MAX_CAPS);
        assert_eq!(p.regions().len(), MAX_REGIONS);
        assert_eq!(p.endpoint("nothing"), None);
    }

    #[test]
    fn the_page_must_follow_usable_ram() {
        let base = 0x4000_0000;
        let size = (2 << 20) - 4096;
        assert!(page_address_ok(base + size, base, size));
        assert!(!page_address_ok(0, base, size));
        assert!(!page_address_ok(base + size + 8, base, size));
        assert!(!page_address_ok(base, base, size));
        assert!(!page_address_ok(base + size, base, 0));
        assert!(!page_address_ok(!4095, !4095, 0));
    }

    #[test]
    #[allow(clippy::single_range_in_vec_init)] // a list of one reserved range is meant
    fn free_ram_avoids_every_reserved_range() {
        assert_eq!(largest_free(0x100, 0x1000, &[]), 0x100..0x1000);
        // A region in the middle: the larger side wins.
        assert_eq!(largest_free(0x100, 0x1000, &[0x200..0x300]), 0x300..0x1000);
        assert_eq!(largest_free(0x100, 0x1000, &[0x800..0x900]), 0x100..0x800);
        // Regions outside, overlapping the start, covering everything.
        assert_eq!(
            largest_free(0x100, 0x1000, &[0x0..0x180, 0x2000..0x3000]),
            0x180..0x1000
        );
        assert_eq!(largest_free(0x100, 0x1000, &[0x0..0x2000]), 0x100..0x100);
        assert!(largest_free(0x103, 0x107, &[]).is_empty());
        assert_eq!(largest_free(0x103, 0x111, &[]), 0x108..0x110);
        for (start, end) in [(0u64, 64u64), (5, 77), (0x100, 0x1000)] {
            let reserved = [10..20, 30..31, 40..90, 0x400..0x500];
            let r = largest_free(start, end, &reserved);
            assert!(r.start >= start && r.end <= end && r.start <= r.end);
            for res in &reserved {
                assert!(r.end <= res.start || r.start >= res.end || r.is_empty());
            }
        }
    }
}
