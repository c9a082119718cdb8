//! The EL2 stage-1 translation regime: an identity map of RAM (normal, cached) and of the
//! devices Mica drives (device-nGnRE), built by the boot CPU and shared by all CPUs.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, Ordering};

use aarch64_cpu::registers::{
    Readable, Writeable, ID_AA64MMFR0_EL1, MAIR_EL2, SCTLR_EL2, TCR_EL2, TTBR0_EL2,
};

use super::sysreg::{dsb_sy, isb};
use crate::pagetable::{
    MapError, MemoryKind, PageTable, TableMemory, ENTRIES, MAIR_EL2 as MAIR_VALUE,
};

/// Translation tables available to the EL2 map (256 KiB).
const POOL_TABLES: usize = 64;

#[repr(C, align(4096))]
struct Table([u64; ENTRIES]);

struct Pool(UnsafeCell<[Table; POOL_TABLES]>);

// SAFETY: the pool is written only by the boot CPU while it builds the map, before any
// other CPU is started; afterwards the tables are only read by the MMU.
unsafe impl Sync for Pool {}

static POOL: Pool = Pool(UnsafeCell::new(
    [const { Table([0; ENTRIES]) }; POOL_TABLES],
));

/// MAIR_EL2, TCR_EL2 and TTBR0_EL2 for secondary CPUs, read by their entry code with the
/// MMU off (so the boot CPU cleans them to the point of coherency).
#[no_mangle]
pub static MICA_MMU_CONFIG: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];

/// Hands out tables from [`POOL`]. The map is an identity map, so a table's physical
/// address is also its address before and after the MMU is on.
pub struct PoolMemory {
    used: usize,
}

impl TableMemory for PoolMemory {
    fn alloc_table(&mut self) -> Option<u64> {
        if self.used == POOL_TABLES {
            return None;
        }
        let base = POOL.0.get() as u64;
        self.used += 1;
        Some(base + (self.used as u64 - 1) * 4096)
    }

    fn table(&mut self, pa: u64) -> &mut [u64; ENTRIES] {
        // SAFETY: `pa` came from `alloc_table`, so it is a distinct, aligned table inside
        // POOL (zeroed BSS); only the boot CPU builds the map, one table borrow at a time.
        unsafe { &mut *(pa as *mut [u64; ENTRIES]) }
    }
}

/// The map under construction.
pub struct El2Map {
    table: PageTable<PoolMemory>,
}

impl El2Map {
    /// An empty map. Call once, on the boot CPU.
    pub fn new() -> El2Map {
        // The pool has room for at least the root table.
        let table = PageTable::new(PoolMemory { used: 0 }).unwrap_or_else(|| unreachable_pool());
        El2Map { table }
    }

    /// Identity-maps `[start, end)` rounded out to whole pages.
    pub fn identity(&mut self, start: u64, end: u64, kind: MemoryKind) -> Result<(), MapError> {
        let s = start & !0xFFF;
        let e = end.checked_add(0xFFF).ok_or(MapError::OutOfRange)? & !0xFFF;
        self.table.map(s, s, e - s, kind)
    }

    /// Turns the MMU on with this map on the calling (boot) CPU and publishes the
    /// configuration for the others.
    pub fn activate(self) {
        let root = self.table.root();
        // Output size: what the CPU implements, at most 48 bits (PARange 0b0101).
        let ps = ID_AA64MMFR0_EL1.get() & 0xF;
        let ps = ps.min(5);
        // TCR_EL2: RES1 bits 31 and 23, PS, SH0 inner, ORGN0/IRGN0 write-back
        // write-allocate, TG0 4 KiB, T0SZ 16 (48-bit input addresses).
        let tcr =
            (1 << 31) | (1 << 23) | (ps << 16) | (0b11 << 12) | (0b01 << 10) | (0b01 << 8) | 16;
        MICA_MMU_CONFIG[0].store(MAIR_VALUE, Ordering::Relaxed);
        MICA_MMU_CONFIG[1].store(tcr, Ordering::Relaxed);
        MICA_MMU_CONFIG[2].store(root, Ordering::Relaxed);
        // The tables were written with the MMU (and so the caches) off; make sure no stale
        // line for them survives in the caches the table walker will look up.
        let pool = POOL.0.get() as u64;
        invalidate_dcache_range(pool, pool + (POOL_TABLES as u64) * 4096);
        MAIR_EL2.set(MAIR_VALUE);
        TCR_EL2.set(tcr);
        TTBR0_EL2.set(root);
        dsb_sy();
        isb();
        // SAFETY: invalidating EL2 TLB entries before first use of the new tables.
        unsafe { core::arch::asm!("tlbi alle2", "dsb nsh", "isb", options(nostack)) };
        SCTLR_EL2.set(SCTLR_EL2.get() | (1 << 0) | (1 << 2) | (1 << 12));
        isb();
        // Secondaries read the config with their MMU off: push it to the point of coherency.
        clean_dcache_range(
            MICA_MMU_CONFIG.as_ptr() as u64,
            MICA_MMU_CONFIG.as_ptr() as u64 + 24,
        );
    }
}

impl Default for El2Map {
    fn default() -> Self {
        Self::new()
    }
}

fn unreachable_pool() -> ! {
    panic!("the EL2 translation table pool is empty at boot")
}

const CACHE_LINE: u64 = 64;

fn invalidate_dcache_range(start: u64, end: u64) {
    let mut a = start & !(CACHE_LINE - 1);
    while a < end {
        // SAFETY: invalidating lines of memory that the MMU-off writes already put in RAM
        // and that nothing cached holds newer data for.
        unsafe { core::arch::asm!("dc ivac, {0}", in(reg) a, options(nostack)) };
        a += CACHE_LINE;
    }
    dsb_sy();
}

fn clean_dcache_range(start: u64, end: u64) {
    let mut a = start & !(CACHE_LINE - 1);
    while a < end {
        // SAFETY: cleaning a cache line only writes it back to memory.
        unsafe { core::arch::asm!("dc cvac, {0}", in(reg) a, options(nostack)) };
        a += CACHE_LINE;
    }
    dsb_sy();
}

/// Writes every dirty line of `[start, end)` back to the point of coherency and drops it
/// from the caches, so a guest that starts with its MMU and caches off (Linux) reads what
/// EL2 wrote through its cacheable map, and no line EL2 left dirty is written back later over
/// what the guest wrote meanwhile. The line size is CTR_EL0.DminLine's, not assumed.
pub fn clean_invalidate_dcache_range(start: u64, end: u64) {
    let ctr: u64 = super::sysreg::read_sysreg!("ctr_el0");
    // DminLine, bits [19:16]: log2 of the smallest data cache line, in 4-byte words.
    let line = 4u64 << ((ctr >> 16) & 0xF);
    let mut a = start & !(line - 1);
    while a < end {
        // SAFETY: a clean and invalidate by address writes the line back before dropping it:
        // no memory content changes for anyone. `a` is in RAM the kernel owns (a domain's
        // frames), identity-mapped at EL2.
        unsafe { core::arch::asm!("dc civac, {0}", in(reg) a, options(nostack)) };
        a += line;
    }
    dsb_sy();
}

/// Zeroes `[start, end)` (RAM the kernel owns: a domain's frames or a new table, which the EL2
/// map identity-maps as normal writable memory). Whole blocks go with `DC ZVA`, which zeroes
/// a block of DCZID_EL0.BS words in one instruction (a 256 MiB domain's RAM in 4 million
/// instructions instead of about 20); the rest, or everything when DCZID_EL0.DZP forbids
/// `DC ZVA`, with ordinary stores.
pub fn zero_range(start: u64, end: u64) {
    if end <= start {
        return;
    }
    let dczid: u64 = super::sysreg::read_sysreg!("dczid_el0");
    let block = 4u64 << (dczid & 0xF);
    let first = start.next_multiple_of(block);
    let last = end & !(block - 1);
    if dczid & 0x10 != 0 || first >= last {
        // SAFETY: `[start, end)` is RAM the kernel owns, mapped normal and writable (above).
        unsafe { core::ptr::write_bytes(start as *mut u8, 0, (end - start) as usize) };
        return;
    }
    // SAFETY: as above, for the unaligned head and tail.
    unsafe {
        core::ptr::write_bytes(start as *mut u8, 0, (first - start) as usize);
        core::ptr::write_bytes(last as *mut u8, 0, (end - last) as usize);
    }
    let mut a = first;
    while a < last {
        // SAFETY: `a` is a block-aligned address inside `[start, end)`, RAM the kernel owns,
        // mapped as normal memory (DC ZVA on device memory would fault); zeroing it is what
        // the caller asked for.
        unsafe { core::arch::asm!("dc zva, {0}", in(reg) a, options(nostack, preserves_flags)) };
        a += block;
    }
    dsb_sy();
}
