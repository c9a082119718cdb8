//! Stage-2 translation for a domain: guest-physical to physical, 4 KiB pages and 2 MiB
//! blocks, 39-bit guest-physical space, tagged with the domain's VMID.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use mica_abi::layout::IPA_BITS;
use mica_abi::{Rights, Status};
use mica_kernel::frames::Frames;
use mica_kernel::hal::Stage2;
use mica_kernel::memmap::PhysRange;

use super::sysreg::{isb, read_sysreg, write_sysreg};
use crate::pagetable::{
    s2, tables_at_most, MapError, PageTable, TableMemory, ENTRIES, PAGE_SIZE, STAGE2_START_LEVEL,
};

/// VTCR_EL2 for every domain: T0SZ = 64 - [`IPA_BITS`] (39-bit IPA), SL0 1 (start at level
/// 1), inner/outer write-back walks, inner shareable, 4 KiB granule, PS from the CPU, RES1
/// bit 31.
pub fn vtcr() -> u64 {
    let ps = (read_sysreg!("id_aa64mmfr0_el1") & 0xF).min(5);
    let t0sz = u64::from(64 - IPA_BITS);
    (1 << 31) | (ps << 16) | (0b11 << 12) | (0b01 << 10) | (0b01 << 8) | (1 << 6) | t0sz
}

/// Table memory taken from the kernel's frame allocator. RAM is identity-mapped at EL2, so a
/// table's physical address is also where EL2 writes it. Tables a walk no longer reaches are
/// collected in `unlinked`, not freed: the caller frees them once the TLBs (and their walk
/// caches) of every CPU that may hold them have been invalidated.
struct FrameTables<'a> {
    frames: &'a mut Frames,
    /// Tables allocated during this operation.
    allocated: u64,
    /// Tables unlinked during this operation, waiting for the TLB invalidation.
    unlinked: Vec<u64>,
}

impl<'a> FrameTables<'a> {
    fn new(frames: &'a mut Frames) -> Self {
        FrameTables {
            frames,
            allocated: 0,
            unlinked: Vec::new(),
        }
    }

    /// Gives the unlinked tables back to the allocator (after the TLB invalidation).
    fn free_unlinked(&mut self) {
        for pa in self.unlinked.drain(..) {
            self.frames.free(PhysRange {
                start: pa,
                end: pa + PAGE_SIZE,
            });
        }
    }
}

impl TableMemory for FrameTables<'_> {
    fn alloc_table(&mut self) -> Option<u64> {
        let r = self.frames.alloc(1)?;
        // SAFETY: a frame just taken from the allocator: free RAM, identity-mapped normal
        // memory at EL2, owned by this table tree from now on.
        unsafe { core::ptr::write_bytes(r.start as *mut u8, 0, PAGE_SIZE as usize) };
        self.allocated += 1;
        Some(r.start)
    }

    fn table(&mut self, pa: u64) -> &mut [u64; ENTRIES] {
        // SAFETY: `pa` is a table of this tree (allocated by `alloc_table`), identity-mapped,
        // and the kernel lock serialises every change to a domain's tables.
        unsafe { &mut *(pa as *mut [u64; ENTRIES]) }
    }

    fn free_table(&mut self, pa: u64) {
        self.unlinked.push(pa);
    }
}

/// A domain's stage-2 tables.
pub struct ArmStage2 {
    root: u64,
    vmid: u16,
    /// Tables below the root, each one page (charged to the domain's quota by the kernel).
    tables: u64,
    /// The CPUs that have loaded this VMID (bit per logical CPU), and so may hold TLB
    /// entries tagged with it. Only ever grows: an entry may stay cached after the VMID is
    /// switched out. Changed and read under the kernel lock, like the tables (atomic only
    /// so that [`Stage2::unmap`]'s shared borrow can add the CPU that flushes).
    loaded_on: AtomicU32,
}

impl ArmStage2 {
    /// Empty tables for `vmid`.
    pub fn new(vmid: u16, frames: &mut Frames) -> Result<ArmStage2, Status> {
        let t = PageTable::new_stage2(FrameTables::new(frames)).ok_or(Status::OutOfMemory)?;
        Ok(ArmStage2 {
            root: t.root(),
            vmid,
            tables: 0,
            loaded_on: AtomicU32::new(0),
        })
    }

    /// The VTTBR_EL2 value that selects these tables.
    pub fn vttbr(&self) -> u64 {
        (self.vmid as u64) << 48 | self.root
    }

    /// The VTTBR_EL2 value for entering a vCPU of this domain on `cpu`, noting that `cpu`
    /// may cache this VMID's translations from now on.
    pub fn vttbr_for(&mut self, cpu: usize) -> u64 {
        self.loaded_on
            .fetch_or(1u32.checked_shl(cpu as u32).unwrap_or(0), Ordering::Relaxed);
        self.vttbr()
    }

    /// Invalidates this VMID's stage-1 and stage-2 TLB entries wherever they may be cached.
    ///
    /// No CPU has loaded the VMID (a domain being built): nothing to invalidate. Only this
    /// CPU has (a domain confined to it, like a policy domain on its own CPU): a local TLBI,
    /// without the inner-shareable broadcast every other CPU must take part in. Otherwise
    /// the broadcast.
    fn flush_tlb(&self) {
        let loaded_on = self.loaded_on.load(Ordering::Relaxed);
        if loaded_on == 0 {
            return;
        }
        let here = 1u32.checked_shl(super::cpu::current() as u32).unwrap_or(0);
        let local = loaded_on & !here == 0;
        // TLBI VMALLS12E1{,IS} acts on the VMID in VTTBR_EL2: select ours for the duration.
        // While it is selected this CPU may cache the VMID's entries too: count it in.
        self.loaded_on.fetch_or(here, Ordering::Relaxed);
        let saved = read_sysreg!("vttbr_el2");
        write_sysreg!("vttbr_el2", self.vttbr());
        isb();
        if local {
            // SAFETY: invalidating this CPU's stage-1 and stage-2 TLB entries of this VMID.
            unsafe {
                core::arch::asm!(
                    "dsb nshst",
                    "tlbi vmalls12e1",
                    "dsb nsh",
                    "isb",
                    options(nostack)
                )
            };
        } else {
            // SAFETY: invalidating stage-1 and stage-2 TLB entries of this VMID on every CPU.
            unsafe {
                core::arch::asm!(
                    "dsb ishst",
                    "tlbi vmalls12e1is",
                    "dsb ish",
                    "isb",
                    options(nostack)
                )
            };
        }
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
        let mut t = PageTable::from_root(FrameTables::new(frames), self.root, true);
        let result = t.map_attrs(ipa, pa, size, attrs).map_err(|e| match e {
            MapError::OutOfTables => Status::OutOfMemory,
            MapError::Conflict(_) => Status::SlotOccupied,
            MapError::OutOfRange => Status::OutOfRange,
            MapError::Misaligned => Status::InvalidArgument,
        });
        // A failed map undoes itself, which may unlink tables it had just allocated.
        let memory = t.memory();
        self.tables = self.tables + memory.allocated - memory.unlinked.len() as u64;
        if !memory.unlinked.is_empty() {
            self.flush_tlb();
            memory.free_unlinked();
        }
        result?;
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

    fn unmap(&mut self, ipa: u64, pages: u64, frames: &mut Frames) {
        let mut t = PageTable::from_root(FrameTables::new(frames), self.root, true);
        let _ = t.unmap(ipa, pages.saturating_mul(PAGE_SIZE));
        // Invalidate first: until then a CPU may still walk the unlinked tables.
        self.flush_tlb();
        let memory = t.memory();
        self.tables -= memory.unlinked.len() as u64;
        memory.free_unlinked();
    }

    fn release(&mut self, frames: &mut Frames) {
        // Invalidate first: no CPU may walk the tables once they are free memory again.
        self.flush_tlb();
        PageTable::from_root(FrameTables::new(frames), self.root, true)
            .free_all()
            .free_unlinked();
        self.root = 0;
        self.tables = 0;
    }

    fn table_bytes(&self) -> u64 {
        self.tables * PAGE_SIZE
    }

    fn table_bytes_at_most(&self, ipa: u64, pa: u64, pages: u64) -> u64 {
        tables_at_most(STAGE2_START_LEVEL, ipa, pa, pages.saturating_mul(PAGE_SIZE))
            .saturating_mul(PAGE_SIZE)
    }
}
