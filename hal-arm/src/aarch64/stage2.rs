//! Stage-2 translation for a domain: guest-physical to physical, 4 KiB pages and 2 MiB
//! blocks, 39-bit guest-physical space, tagged with the domain's VMID.

use mica_abi::{Rights, Status};
use mica_kernel::frames::Frames;
use mica_kernel::hal::Stage2;
use mica_kernel::memmap::PhysRange;

use super::sysreg::{isb, read_sysreg, write_sysreg};
use crate::pagetable::{s2, MapError, PageTable, TableMemory, ENTRIES, PAGE_SIZE};

/// VTCR_EL2 for every domain: T0SZ 25 (39-bit IPA), SL0 1 (start at level 1), inner/outer
/// write-back walks, inner shareable, 4 KiB granule, PS from the CPU, RES1 bit 31.
pub fn vtcr() -> u64 {
    let ps = (read_sysreg!("id_aa64mmfr0_el1") & 0xF).min(5);
    (1 << 31) | (ps << 16) | (0b11 << 12) | (0b01 << 10) | (0b01 << 8) | (1 << 6) | 25
}

/// Table memory taken from, and given back to, the kernel's frame allocator. RAM is
/// identity-mapped at EL2, so a table's physical address is also where EL2 writes it.
struct FrameTables<'a> {
    frames: Option<&'a mut Frames>,
}

impl TableMemory for FrameTables<'_> {
    fn alloc_table(&mut self) -> Option<u64> {
        let r = self.frames.as_mut()?.alloc(1)?;
        // SAFETY: a frame just taken from the allocator: free RAM, identity-mapped normal
        // memory at EL2, owned by this table tree from now on.
        unsafe { core::ptr::write_bytes(r.start as *mut u8, 0, PAGE_SIZE as usize) };
        Some(r.start)
    }

    fn table(&mut self, pa: u64) -> &mut [u64; ENTRIES] {
        // SAFETY: `pa` is a table of this tree (allocated by `alloc_table`), identity-mapped,
        // and the kernel lock serialises every change to a domain's tables.
        unsafe { &mut *(pa as *mut [u64; ENTRIES]) }
    }

    fn free_table(&mut self, pa: u64) {
        if let Some(f) = self.frames.as_mut() {
            f.free(PhysRange {
                start: pa,
                end: pa + PAGE_SIZE,
            });
        }
    }
}

/// A domain's stage-2 tables.
pub struct ArmStage2 {
    root: u64,
    vmid: u16,
}

impl ArmStage2 {
    /// Empty tables for `vmid`.
    pub fn new(vmid: u16, frames: &mut Frames) -> Result<ArmStage2, Status> {
        let t = PageTable::new_stage2(FrameTables {
            frames: Some(frames),
        })
        .ok_or(Status::OutOfMemory)?;
        Ok(ArmStage2 {
            root: t.root(),
            vmid,
        })
    }

    /// The VTTBR_EL2 value that selects these tables.
    pub fn vttbr(&self) -> u64 {
        (self.vmid as u64) << 48 | self.root
    }

    fn flush_tlb(&self) {
        // TLBI VMALLS12E1IS acts on the VMID in VTTBR_EL2: select ours for the duration.
        let saved = read_sysreg!("vttbr_el2");
        write_sysreg!("vttbr_el2", self.vttbr());
        isb();
        // SAFETY: invalidating stage-1 and stage-2 TLB entries of this VMID only.
        unsafe {
            core::arch::asm!(
                "dsb ishst",
                "tlbi vmalls12e1is",
                "dsb ish",
                "isb",
                options(nostack)
            )
        };
        write_sysreg!("vttbr_el2", saved);
        isb();
    }
}

impl ArmStage2 {
    /// Maps `pages` pages at `ipa` to `pa` with leaf attributes `attrs`.
    fn map_with(
        &mut self,
        ipa: u64,
        pa: u64,
        pages: u64,
        attrs: u64,
        frames: &mut Frames,
    ) -> Result<(), Status> {
        let size = pages
            .checked_mul(PAGE_SIZE)
            .ok_or(Status::InvalidArgument)?;
        let mut t = PageTable::from_root(
            FrameTables {
                frames: Some(frames),
            },
            self.root,
            true,
        );
        t.map_attrs(ipa, pa, size, attrs).map_err(|e| match e {
            MapError::OutOfTables => Status::OutOfMemory,
            MapError::Conflict(_) => Status::SlotOccupied,
            MapError::OutOfRange => Status::OutOfRange,
            MapError::Misaligned => Status::InvalidArgument,
        })?;
        // New entries replace invalid ones only: no stale translation to invalidate, but the
        // table writes must be visible to the walker before the guest runs.
        // SAFETY: a barrier.
        unsafe { core::arch::asm!("dsb ishst", options(nostack)) };
        Ok(())
    }
}

impl Stage2 for ArmStage2 {
    fn map(
        &mut self,
        ipa: u64,
        pa: u64,
        pages: u64,
        perms: Rights,
        frames: &mut Frames,
    ) -> Result<(), Status> {
        let attrs = s2::attributes(
            perms.contains(Rights::READ),
            perms.contains(Rights::WRITE),
            perms.contains(Rights::EXECUTE),
        );
        self.map_with(ipa, pa, pages, attrs, frames)
    }

    fn map_device(
        &mut self,
        ipa: u64,
        pa: u64,
        pages: u64,
        perms: Rights,
        frames: &mut Frames,
    ) -> Result<(), Status> {
        let attrs =
            s2::device_attributes(perms.contains(Rights::READ), perms.contains(Rights::WRITE));
        self.map_with(ipa, pa, pages, attrs, frames)
    }

    fn unmap(&mut self, ipa: u64, pages: u64) {
        let mut t = PageTable::from_root(FrameTables { frames: None }, self.root, true);
        let _ = t.unmap(ipa, pages.saturating_mul(PAGE_SIZE));
        self.flush_tlb();
    }

    fn release(&mut self, frames: &mut Frames) {
        PageTable::from_root(
            FrameTables {
                frames: Some(frames),
            },
            self.root,
            true,
        )
        .free_all();
        self.flush_tlb();
        self.root = 0;
    }
}
