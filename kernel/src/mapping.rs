//! A domain's guest-physical mappings: the record of what was mapped where, through which
//! capability, so revoke, unmap and destroy can undo it.
//!
//! Pure: [`Mappings`] only keeps the records and answers questions about them. Installing
//! and removing the translations (the domain's stage 2) and charging its tables is the
//! kernel's part (`kernel/memory.rs`), which asks here first: every rule about which mapping
//! may be made or removed is in this file.

use mica_abi::layout::PAGE_SIZE;
use mica_abi::{Rights, Status};
use mica_caps::CapAddr;

/// Most guest-physical mappings one domain holds.
pub const MAX_MAPPINGS: usize = 64;

/// A guest-physical mapping, recorded so revoke and destroy can undo it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// First guest-physical address.
    pub ipa: u64,
    /// First physical address.
    pub pa: u64,
    /// Pages of [`PAGE_SIZE`].
    pub pages: u64,
    /// The Memory capability it was made through (revoking or deleting it unmaps this).
    pub through: CapAddr,
    /// READ, WRITE and EXECUTE as mapped.
    pub perms: Rights,
    /// Device registers (a DeviceMemory capability), not RAM: the kernel never reads or
    /// writes them on the domain's behalf.
    pub device: bool,
}

impl Mapping {
    /// Whether the mapping covers any page of `[ipa, ipa + pages)`.
    pub fn overlaps(&self, ipa: u64, pages: u64) -> bool {
        let end = self.ipa + self.pages * PAGE_SIZE;
        let other_end = ipa.saturating_add(pages.saturating_mul(PAGE_SIZE));
        self.ipa < other_end && ipa < end
    }

    /// Whether physical `pa` lies in it.
    pub fn holds_pa(&self, pa: u64) -> bool {
        pa >= self.pa && pa - self.pa < self.pages * PAGE_SIZE
    }

    /// Whether guest-physical `ipa` lies in it.
    pub fn holds_ipa(&self, ipa: u64) -> bool {
        ipa >= self.ipa && ipa - self.ipa < self.pages * PAGE_SIZE
    }

    /// The physical address of guest-physical `ipa`, which it covers.
    fn pa_of(&self, ipa: u64) -> u64 {
        self.pa + (ipa - self.ipa)
    }
}

/// Every mapping of one domain.
#[derive(Clone, Debug, Default)]
pub struct Mappings {
    list: heapless::Vec<Mapping, MAX_MAPPINGS>,
}

impl Mappings {
    /// No mappings.
    pub const fn new() -> Self {
        Mappings {
            list: heapless::Vec::new(),
        }
    }

    /// Whether a mapping of `[ipa, ipa + pages)` may be added: `OutOfMemory` when the record
    /// is full, `SlotOccupied` when a page of it is mapped already. No side effect.
    pub fn check_new(&self, ipa: u64, pages: u64) -> Result<(), Status> {
        if self.list.is_full() {
            return Err(Status::OutOfMemory);
        }
        if self.list.iter().any(|m| m.overlaps(ipa, pages)) {
            return Err(Status::SlotOccupied);
        }
        Ok(())
    }

    /// Records `m` (installed in stage 2 by the caller). As [`check_new`](Self::check_new).
    pub fn insert(&mut self, m: Mapping) -> Result<(), Status> {
        self.check_new(m.ipa, m.pages)?;
        self.list.push(m).map_err(|_| Status::OutOfMemory)
    }

    /// Forgets the mapping that starts at `ipa` and returns it (the caller unmaps it).
    pub fn remove(&mut self, ipa: u64) -> Option<Mapping> {
        let i = self.list.iter().position(|m| m.ipa == ipa)?;
        Some(self.list.swap_remove(i))
    }

    /// The first mapping made through capability `through` (`(ipa, pages)`), if any: what a
    /// removed capability leaves to undo, one at a time.
    pub fn made_through(&self, through: CapAddr) -> Option<(u64, u64)> {
        self.list
            .iter()
            .find(|m| m.through == through)
            .map(|m| (m.ipa, m.pages))
    }

    /// The mappings an unmap of `[ipa, ipa + pages)` removes (`(ipa, pages)` each): every
    /// one inside it. `InvalidArgument` if the range wraps, or would cut a mapping in two.
    /// No side effect.
    pub fn inside(
        &self,
        ipa: u64,
        pages: u64,
    ) -> Result<heapless::Vec<(u64, u64), MAX_MAPPINGS>, Status> {
        let end = pages
            .checked_mul(PAGE_SIZE)
            .and_then(|b| ipa.checked_add(b))
            .ok_or(Status::InvalidArgument)?;
        let overlapping = || self.list.iter().filter(move |m| m.overlaps(ipa, pages));
        if overlapping().any(|m| m.ipa < ipa || m.ipa + m.pages * PAGE_SIZE > end) {
            return Err(Status::InvalidArgument);
        }
        Ok(overlapping().map(|m| (m.ipa, m.pages)).collect())
    }

    /// The mapping containing guest-physical `ipa`, if any.
    pub fn at(&self, ipa: u64) -> Option<&Mapping> {
        self.list.iter().find(|m| m.holds_ipa(ipa))
    }

    /// Translates guest-physical `ipa` to physical, if mapped.
    pub fn translate(&self, ipa: u64) -> Option<u64> {
        self.at(ipa).map(|m| m.pa_of(ipa))
    }

    /// Translates `ipa` to physical if it is mapped writable.
    pub fn translate_writable(&self, ipa: u64) -> Option<u64> {
        self.at(ipa)
            .filter(|m| m.perms.contains(Rights::WRITE))
            .map(|m| m.pa_of(ipa))
    }

    /// Translates `ipa` to physical if it is RAM (see [`Mappings::maps_ram_at`]).
    pub fn translate_ram(&self, ipa: u64) -> Option<u64> {
        self.at(ipa).filter(|m| !m.device).map(|m| m.pa_of(ipa))
    }

    /// Whether physical `pa` is RAM mapped here (not device registers): the only physical
    /// memory the kernel reads on a domain's behalf (e.g. an instruction to decode), so a
    /// guest can never make the kernel touch a device.
    pub fn maps_ram_at(&self, pa: u64) -> bool {
        self.list.iter().any(|m| !m.device && m.holds_pa(pa))
    }

    /// Whether every byte of `[ipa, ipa + bytes)` is writable RAM mapped here (what a device
    /// may be told to write into).
    pub fn holds_ram(&self, ipa: u64, bytes: u64) -> bool {
        let Some(end) = ipa.checked_add(bytes) else {
            return false;
        };
        let mut at = ipa;
        while at < end {
            let Some(m) = self
                .at(at)
                .filter(|m| !m.device && m.perms.contains(Rights::WRITE))
            else {
                return false;
            };
            at = m.ipa + m.pages * PAGE_SIZE;
        }
        true
    }

    /// Every mapping.
    pub fn iter(&self) -> impl Iterator<Item = &Mapping> {
        self.list.iter()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mica_caps::SpaceId;

    fn map(ipa: u64, pa: u64, pages: u64, slot: u16) -> Mapping {
        Mapping {
            ipa,
            pa,
            pages,
            through: CapAddr::new(SpaceId(1), slot),
            perms: Rights::READ | Rights::WRITE,
            device: false,
        }
    }

    #[test]
    fn overlapping_mappings_are_refused_and_a_full_record_says_out_of_memory() {
        let mut m = Mappings::new();
        m.insert(map(0x1000, 0x8000_0000, 2, 1)).unwrap();
        assert_eq!(m.check_new(0x2000, 1), Err(Status::SlotOccupied));
        assert_eq!(m.check_new(0x0, 2), Err(Status::SlotOccupied));
        assert_eq!(m.check_new(0x3000, 1), Ok(()));
        assert_eq!(m.check_new(0x0, 1), Ok(()));
        for i in 1..MAX_MAPPINGS as u64 {
            m.insert(map(0x10_0000 * i, 0, 1, 2)).unwrap();
        }
        assert_eq!(m.check_new(0x3000, 1), Err(Status::OutOfMemory));
        assert_eq!(
            m.insert(map(0x3000, 0, 1, 2)),
            Err(Status::OutOfMemory),
            "insert keeps the rule it checks"
        );
    }

    #[test]
    fn an_unmap_takes_whole_mappings_only() {
        let mut m = Mappings::new();
        m.insert(map(0x1000, 0x8000_0000, 2, 1)).unwrap();
        m.insert(map(0x4000, 0x9000_0000, 1, 1)).unwrap();
        assert_eq!(
            m.inside(0x2000, 1),
            Err(Status::InvalidArgument),
            "cuts one"
        );
        assert_eq!(m.inside(!0xFFF, 2), Err(Status::InvalidArgument));
        let both = m.inside(0x0, 8).unwrap();
        assert_eq!(both.as_slice(), &[(0x1000, 2), (0x4000, 1)]);
        assert!(m.inside(0x8000, 1).unwrap().is_empty());
        assert_eq!(m.remove(0x1000).map(|x| x.pages), Some(2));
        assert_eq!(m.remove(0x1000), None);
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn translation_follows_the_records_and_device_memory_is_not_ram() {
        let mut m = Mappings::new();
        m.insert(map(0x1000, 0x8000_0000, 2, 1)).unwrap();
        let mut dev = map(0x10_0000, 0x0900_0000, 1, 2);
        dev.device = true;
        dev.perms = Rights::READ;
        m.insert(dev).unwrap();
        assert_eq!(m.translate(0x1abc), Some(0x8000_0abc));
        assert_eq!(m.translate(0x3000), None);
        // An address in the page before a mapping is not in it (it was: the look-up asked
        // whether the page starting at the address overlapped, and the translation wrapped).
        assert_eq!(m.translate(0x0800), None);
        assert_eq!(m.translate_ram(0x0ffc), None);
        assert_eq!(m.translate_writable(0x10_0000), None);
        assert_eq!(m.translate_ram(0x10_0004), None);
        assert_eq!(m.translate(0x10_0004), Some(0x0900_0004));
        assert!(m.maps_ram_at(0x8000_1fff) && !m.maps_ram_at(0x8000_2000));
        assert!(!m.maps_ram_at(0x0900_0000));
        assert_eq!(
            m.made_through(CapAddr::new(SpaceId(1), 2)),
            Some((0x10_0000, 1))
        );
        assert_eq!(m.made_through(CapAddr::new(SpaceId(1), 3)), None);
        // Writable RAM across two adjacent mappings, but not into device memory or a hole.
        m.insert(map(0x3000, 0x9000_0000, 1, 3)).unwrap();
        assert!(m.holds_ram(0x1ff0, 0x20) && m.holds_ram(0x1000, 3 * 4096));
        assert!(!m.holds_ram(0x1000, 3 * 4096 + 1), "past the end");
        assert!(!m.holds_ram(0x10_0000, 4), "device memory");
        assert!(!m.holds_ram(0x800, 0x900), "a hole before");
        assert!(!m.holds_ram(u64::MAX - 2, 4), "wraps");
        let mut ro = map(0x20_0000, 0xA000_0000, 1, 4);
        ro.perms = Rights::READ;
        m.insert(ro).unwrap();
        assert!(!m.holds_ram(0x20_0000, 4), "read-only");
    }
}
