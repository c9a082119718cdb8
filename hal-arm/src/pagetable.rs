//! VMSAv8-64 translation tables with the 4 KiB granule: the EL2 stage-1 map of the kernel.
//!
//! Four levels (0-3) cover a 48-bit address space. [`PageTable::map`] uses 1 GiB and 2 MiB
//! blocks where address and size allow and 4 KiB pages elsewhere, and refuses to change an
//! existing mapping: a second request for the same range with the same attributes is
//! accepted (device frames shared by two drivers), anything else is an error. Table memory
//! comes from a [`TableMemory`] so the logic runs on the host against a `Vec` and at boot
//! against a static pool. Descriptor fields follow the Arm ARM (DDI 0487) D8.3,
//! "Translation table descriptor formats".

/// Entries in one table.
pub const ENTRIES: usize = 512;
/// Bytes mapped by one level-3 page.
pub const PAGE_SIZE: u64 = mica_abi::layout::PAGE_SIZE;
/// Bytes mapped by one level-2 block.
pub const BLOCK_2M: u64 = 1 << 21;
/// Bytes mapped by one level-1 block.
pub const BLOCK_1G: u64 = 1 << 30;
/// Size of the input address space (T0SZ = 16).
pub const VA_BITS: u32 = 48;

/// Descriptor bits (Arm ARM D8.3.1-D8.3.2).
pub mod desc {
    /// Bit 0: the descriptor is valid.
    pub const VALID: u64 = 1 << 0;
    /// Bit 1 at levels 0-2: next-level table (else block); at level 3 must be 1 (page).
    pub const TABLE_OR_PAGE: u64 = 1 << 1;
    /// AttrIndx[2:0] at bits [4:2]: index into MAIR_EL2.
    pub const fn attr_index(i: u64) -> u64 {
        (i & 7) << 2
    }
    /// AP[1] (bit 6): RES1 in a translation regime with one privilege level (EL2).
    pub const AP1: u64 = 1 << 6;
    /// AP[2] (bit 7): read-only.
    pub const READ_ONLY: u64 = 1 << 7;
    /// SH[1:0] = 0b11 (bits [9:8]): inner shareable.
    pub const INNER_SHAREABLE: u64 = 0b11 << 8;
    /// AF (bit 10): access flag, set so the first access does not fault.
    pub const ACCESS_FLAG: u64 = 1 << 10;
    /// XN (bit 54): execute never (EL2 regime).
    pub const EXECUTE_NEVER: u64 = 1 << 54;
    /// Output address bits [47:12].
    pub const ADDRESS_MASK: u64 = 0x0000_FFFF_FFFF_F000;
}

/// MAIR_EL2 attribute indices programmed by boot (see [`MAIR_EL2`]).
pub mod mair {
    /// Device-nGnRnE.
    pub const DEVICE_NGNRNE: u64 = 0;
    /// Device-nGnRE: MMIO registers.
    pub const DEVICE_NGNRE: u64 = 1;
    /// Normal, inner/outer write-back, read/write-allocate: RAM.
    pub const NORMAL_WB: u64 = 2;
    /// Normal, non-cacheable.
    pub const NORMAL_NC: u64 = 3;
}

/// The MAIR_EL2 value matching [`mair`]: attr0 0x00, attr1 0x04, attr2 0xFF, attr3 0x44.
pub const MAIR_EL2: u64 = (0x04 << 8) | (0xFF << 16) | (0x44 << 24);

/// What kind of memory a mapping is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryKind {
    /// Cached RAM, readable, writable and executable by EL2.
    Normal,
    /// Device registers: Device-nGnRE, never executable.
    Device,
}

impl MemoryKind {
    /// The attribute bits of a block or page descriptor for this kind.
    pub const fn attributes(self) -> u64 {
        match self {
            MemoryKind::Normal => {
                desc::attr_index(mair::NORMAL_WB)
                    | desc::AP1
                    | desc::INNER_SHAREABLE
                    | desc::ACCESS_FLAG
            }
            MemoryKind::Device => {
                desc::attr_index(mair::DEVICE_NGNRE)
                    | desc::AP1
                    | desc::ACCESS_FLAG
                    | desc::EXECUTE_NEVER
            }
        }
    }
}

/// Why a mapping could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// Address or size not a multiple of 4 KiB, or the range wraps.
    Misaligned,
    /// The range leaves the 48-bit address space.
    OutOfRange,
    /// The table memory is exhausted.
    OutOfTables,
    /// Part of the range is already mapped differently (at this input address).
    Conflict(u64),
}

/// Where translation tables live.
pub trait TableMemory {
    /// Allocates a zeroed, 4 KiB-aligned table and returns its physical address.
    fn alloc_table(&mut self) -> Option<u64>;
    /// The table at physical address `pa`, which `alloc_table` returned.
    fn table(&mut self, pa: u64) -> &mut [u64; ENTRIES];
    /// Gives a table back (called by [`PageTable::free_all`]); the default keeps it.
    fn free_table(&mut self, _pa: u64) {}
}

/// Stage-2 (guest-physical) descriptor attributes (Arm ARM D8.3.2, "Stage 2 attributes").
pub mod s2 {
    /// MemAttr[3:0] = 0b1111 (bits [5:2]): normal memory, inner and outer write-back.
    pub const NORMAL_WB: u64 = 0b1111 << 2;
    /// S2AP[0] (bit 6): the guest may read.
    pub const READ: u64 = 1 << 6;
    /// S2AP[1] (bit 7): the guest may write.
    pub const WRITE: u64 = 1 << 7;
    /// XN[1:0] = 0b10 (bits [54:53]): not executable at EL1 or EL0.
    pub const EXECUTE_NEVER: u64 = 0b10 << 53;

    /// MemAttr[3:0] = 0b0001 (bits [5:2]): Device-nGnRE.
    pub const DEVICE_NGNRE: u64 = 0b0001 << 2;

    /// The leaf attributes for device registers (never executable, not shareable).
    pub const fn device_attributes(read: bool, write: bool) -> u64 {
        let mut a = DEVICE_NGNRE | super::desc::ACCESS_FLAG | EXECUTE_NEVER;
        if read {
            a |= READ;
        }
        if write {
            a |= WRITE;
        }
        a
    }

    /// The leaf attributes for guest RAM with the given permissions.
    pub const fn attributes(read: bool, write: bool, execute: bool) -> u64 {
        let mut a = NORMAL_WB | super::desc::INNER_SHAREABLE | super::desc::ACCESS_FLAG;
        if read {
            a |= READ;
        }
        if write {
            a |= WRITE;
        }
        if !execute {
            a |= EXECUTE_NEVER;
        }
        a
    }
}

/// Level of the root table of a stage-2 tree.
pub const STAGE2_START_LEVEL: u32 = 1;

/// The level and size of the leaf [`PageTable::map`] uses at `va` -> `pa` with `left` bytes
/// still to map in a tree rooted at `start_level`: the largest block both addresses are
/// aligned to and that fits (no level-1 blocks when the root is at level 1).
fn leaf_for(start_level: u32, va: u64, pa: u64, left: u64) -> (u32, u64) {
    if (va | pa).is_multiple_of(BLOCK_1G) && left >= BLOCK_1G && start_level < 1 {
        (1, BLOCK_1G)
    } else if (va | pa).is_multiple_of(BLOCK_2M) && left >= BLOCK_2M {
        (2, BLOCK_2M)
    } else {
        (3, PAGE_SIZE)
    }
}

/// The most tables [`PageTable::map`] of `[va, va + size)` -> `pa` can allocate in a tree
/// rooted at `start_level`: one per region a table of each level covers in which it places a
/// leaf at or below that level, as if none of those tables existed yet. 0 for a request `map`
/// would refuse as misaligned.
pub fn tables_at_most(start_level: u32, va: u64, pa: u64, size: u64) -> u64 {
    let aligned = |x: u64| x.is_multiple_of(PAGE_SIZE);
    let Some(va_end) = va.checked_add(size) else {
        return 0;
    };
    if !aligned(va) || !aligned(pa) || !aligned(size) || pa.checked_add(size).is_none() {
        return 0;
    }
    let mut count = 0;
    // The last region counted for a table of each level (levels 1-3).
    let mut last = [u64::MAX; 4];
    let (mut va, mut pa) = (va, pa);
    while va < va_end {
        let (level, step) = leaf_for(start_level, va, pa, va_end - va);
        for l in start_level + 1..=level {
            // A level-`l` table covers what one entry of level `l - 1` maps.
            let region = va >> (39 - 9 * (l - 1));
            if let Some(seen) = last.get_mut(l as usize) {
                if *seen != region {
                    *seen = region;
                    count += 1;
                }
            }
        }
        va += step;
        pa += step;
    }
    count
}

// The stage-2 tree (rooted one level down) translates exactly the guest-physical space every
// domain has.
const _: () = assert!(VA_BITS - 9 == mica_abi::layout::IPA_BITS);

/// A translation table tree: 48-bit stage 1 rooted at level 0, or 39-bit stage 2 rooted at
/// level 1 (VTCR_EL2.T0SZ = 25, SL0 = 1).
pub struct PageTable<M: TableMemory> {
    root: u64,
    start_level: u32,
    memory: M,
}

impl<M: TableMemory> PageTable<M> {
    /// A stage-1 tree with an empty level-0 root, or `None` if no table can be allocated.
    pub fn new(memory: M) -> Option<Self> {
        Self::with_start_level(memory, 0)
    }

    /// A stage-2 tree: 39-bit input addresses, an empty level-1 root.
    pub fn new_stage2(memory: M) -> Option<Self> {
        Self::with_start_level(memory, STAGE2_START_LEVEL)
    }

    /// Re-opens an existing tree rooted at `root` (from [`PageTable::root`]) with `memory`.
    pub fn from_root(memory: M, root: u64, stage2: bool) -> Self {
        PageTable {
            root,
            start_level: if stage2 { 1 } else { 0 },
            memory,
        }
    }

    fn with_start_level(mut memory: M, start_level: u32) -> Option<Self> {
        let root = memory.alloc_table()?;
        Some(PageTable {
            root,
            start_level,
            memory,
        })
    }

    /// Bits of input address this tree translates.
    pub fn input_bits(&self) -> u32 {
        VA_BITS - 9 * self.start_level
    }

    /// The table memory.
    pub fn memory(&mut self) -> &mut M {
        &mut self.memory
    }

    /// Physical address of the root table (the TTBR value's base address).
    pub fn root(&self) -> u64 {
        self.root
    }

    /// Maps `[va, va + size)` to `[pa, pa + size)` as `kind` (stage 1).
    pub fn map(&mut self, va: u64, pa: u64, size: u64, kind: MemoryKind) -> Result<(), MapError> {
        self.map_attrs(va, pa, size, kind.attributes())
    }

    /// Maps `[va, va + size)` to `[pa, pa + size)` with leaf attribute bits `attrs`. Nothing
    /// is left half-mapped on error: what was mapped is undone.
    pub fn map_attrs(&mut self, va: u64, pa: u64, size: u64, attrs: u64) -> Result<(), MapError> {
        let result = self.map_inner(va, pa, size, attrs);
        if let Err(MapError::OutOfTables) = result {
            // Undo the prefix that was mapped before the tables ran out.
            let _ = self.unmap(va, size);
        }
        result
    }

    /// [`PageTable::map_attrs`] without the undo when tables run out (what the Kani proofs
    /// check: `crate::proofs`).
    pub(crate) fn map_inner(
        &mut self,
        va: u64,
        pa: u64,
        size: u64,
        attrs: u64,
    ) -> Result<(), MapError> {
        let aligned = |x: u64| x.is_multiple_of(PAGE_SIZE);
        if !aligned(va) || !aligned(pa) || !aligned(size) {
            return Err(MapError::Misaligned);
        }
        let va_end = va.checked_add(size).ok_or(MapError::Misaligned)?;
        let pa_end = pa.checked_add(size).ok_or(MapError::Misaligned)?;
        if va_end > 1 << self.input_bits() || pa_end > 1 << VA_BITS {
            return Err(MapError::OutOfRange);
        }
        let (mut va, mut pa) = (va, pa);
        while va < va_end {
            let (level, step) = leaf_for(self.start_level, va, pa, va_end - va);
            self.set_leaf(va, pa, level, attrs)?;
            va += step;
            pa += step;
        }
        Ok(())
    }

    fn index(va: u64, level: u32) -> usize {
        ((va >> (39 - 9 * level)) & (ENTRIES as u64 - 1)) as usize
    }

    fn set_leaf(&mut self, va: u64, pa: u64, level: u32, attrs: u64) -> Result<(), MapError> {
        let mut table = self.root;
        for l in self.start_level..level {
            let i = Self::index(va, l);
            let entry = self.memory.table(table)[i];
            table = if entry & desc::VALID == 0 {
                let next = self.memory.alloc_table().ok_or(MapError::OutOfTables)?;
                self.memory.table(table)[i] = next | desc::TABLE_OR_PAGE | desc::VALID;
                next
            } else if entry & desc::TABLE_OR_PAGE != 0 {
                entry & desc::ADDRESS_MASK
            } else {
                // A block already covers this address: fine only if it maps it the same way.
                let block_size = 1u64 << (39 - 9 * l);
                let want = (pa & !(block_size - 1)) | attrs | desc::VALID;
                let covers_same = (va & !(block_size - 1)) ^ (pa & !(block_size - 1)) == 0;
                return if entry == want && covers_same {
                    Ok(())
                } else {
                    Err(MapError::Conflict(va))
                };
            };
        }
        let i = Self::index(va, level);
        let leaf = pa | attrs | desc::VALID | if level == 3 { desc::TABLE_OR_PAGE } else { 0 };
        let slot = &mut self.memory.table(table)[i];
        match *slot {
            0 => {
                *slot = leaf;
                Ok(())
            }
            existing if existing == leaf => Ok(()),
            _ if cfg!(feature = "mutant-stage2-overwrites-mappings") => {
                *slot = leaf;
                Ok(())
            }
            _ => Err(MapError::Conflict(va)),
        }
    }

    /// Removes every leaf inside `[va, va + size)` (page aligned). A block that sticks out
    /// of the range is a `Conflict` (the kernel only unmaps whole mappings, which never share
    /// a block). Every table below the root that the removal leaves empty is unlinked and
    /// given to [`TableMemory::free_table`] (the caller must not reuse its memory before the
    /// TLBs forgot the old walk: the stage-2 HAL frees it only after its TLB invalidation).
    /// Returns pages removed.
    pub fn unmap(&mut self, va: u64, size: u64) -> Result<u64, MapError> {
        let result = self.unmap_leaves(va, size);
        if let Some(end) = va.checked_add(size) {
            self.prune(va, end);
        }
        result
    }

    /// Unlinks and frees the tables below the root covering `[va, end)` that hold no valid
    /// entry, the deepest level first so a parent emptied by its children goes too.
    fn prune(&mut self, va: u64, end: u64) {
        for level in (self.start_level + 1..=3).rev() {
            // One table of `level` covers what one entry of `level - 1` maps.
            let span = 1u64 << (39 - 9 * (level - 1));
            let mut at = va & !(span - 1);
            while at < end {
                if let Some((parent, i, table)) = self.table_entry(at, level - 1) {
                    if self
                        .memory
                        .table(table)
                        .iter()
                        .all(|e| *e & desc::VALID == 0)
                    {
                        self.memory.table(parent)[i] = 0;
                        self.memory.free_table(table);
                    }
                }
                at = match at.checked_add(span) {
                    Some(next) => next,
                    None => break,
                };
            }
        }
    }

    /// The table descriptor for `va` in a table of `level`: that table, the entry's index
    /// and the next-level table it points to (`None` if the walk meets no such descriptor).
    fn table_entry(&mut self, va: u64, level: u32) -> Option<(u64, usize, u64)> {
        let mut table = self.root;
        for l in self.start_level..=level {
            let i = Self::index(va, l);
            let entry = self.memory.table(table)[i];
            if entry & desc::VALID == 0 || entry & desc::TABLE_OR_PAGE == 0 || l == 3 {
                return None;
            }
            if l == level {
                return Some((table, i, entry & desc::ADDRESS_MASK));
            }
            table = entry & desc::ADDRESS_MASK;
        }
        None
    }

    fn unmap_leaves(&mut self, va: u64, size: u64) -> Result<u64, MapError> {
        if !va.is_multiple_of(PAGE_SIZE) || !size.is_multiple_of(PAGE_SIZE) {
            return Err(MapError::Misaligned);
        }
        let end = va.checked_add(size).ok_or(MapError::Misaligned)?;
        let mut at = va;
        let mut removed = 0;
        'next: while at < end {
            let mut table = self.root;
            for level in self.start_level..4 {
                let i = Self::index(at, level);
                let entry = self.memory.table(table)[i];
                let span = 1u64 << (39 - 9 * level);
                if entry & desc::VALID == 0 {
                    // Nothing here: skip to the end of this entry's span.
                    at = (at & !(span - 1)) + span;
                    continue 'next;
                }
                if level == 3 || entry & desc::TABLE_OR_PAGE == 0 {
                    if !at.is_multiple_of(span) || at + span > end {
                        return Err(MapError::Conflict(at));
                    }
                    self.memory.table(table)[i] = 0;
                    removed += span / PAGE_SIZE;
                    at += span;
                    continue 'next;
                }
                table = entry & desc::ADDRESS_MASK;
            }
        }
        Ok(removed)
    }

    /// Frees every table of the tree, the root included, back to the table memory, and
    /// returns that memory.
    pub fn free_all(mut self) -> M {
        self.free_level(self.root, self.start_level);
        self.memory
    }

    fn free_level(&mut self, table: u64, level: u32) {
        if level < 3 {
            for i in 0..ENTRIES {
                let entry = self.memory.table(table)[i];
                if entry & desc::VALID != 0 && entry & desc::TABLE_OR_PAGE != 0 {
                    self.free_level(entry & desc::ADDRESS_MASK, level + 1);
                }
            }
        }
        self.memory.free_table(table);
    }

    /// Walks the tree: the leaf descriptor and physical address `va` translates to.
    pub fn lookup(&mut self, va: u64) -> Option<(u64, u64)> {
        let mut table = self.root;
        for level in self.start_level..4 {
            let entry = self.memory.table(table)[Self::index(va, level)];
            if entry & desc::VALID == 0 {
                return None;
            }
            if level == 3 || entry & desc::TABLE_OR_PAGE == 0 {
                let size = 1u64 << (39 - 9 * level);
                return Some((
                    entry,
                    (entry & desc::ADDRESS_MASK & !(size - 1)) | (va & (size - 1)),
                ));
            }
            table = entry & desc::ADDRESS_MASK;
        }
        None
    }

    /// Walks the tree: the physical address and memory kind `va` translates to.
    pub fn translate(&mut self, va: u64) -> Option<(u64, MemoryKind)> {
        let mut table = self.root;
        for level in self.start_level..4 {
            let entry = self.memory.table(table)[Self::index(va, level)];
            if entry & desc::VALID == 0 {
                return None;
            }
            let is_leaf = level == 3 || entry & desc::TABLE_OR_PAGE == 0;
            if is_leaf {
                let size = 1u64 << (39 - 9 * level);
                let pa = (entry & desc::ADDRESS_MASK & !(size - 1)) | (va & (size - 1));
                let kind = if (entry >> 2) & 7 == mair::NORMAL_WB {
                    MemoryKind::Normal
                } else {
                    MemoryKind::Device
                };
                return Some((pa, kind));
            }
            table = entry & desc::ADDRESS_MASK;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tables in a `Vec`; "physical addresses" are fake but 4 KiB aligned and distinct.
    struct VecMemory {
        tables: Vec<[u64; ENTRIES]>,
        limit: usize,
    }

    const FAKE_BASE: u64 = 0x7_0000_0000;

    impl TableMemory for VecMemory {
        fn alloc_table(&mut self) -> Option<u64> {
            if self.tables.len() == self.limit {
                return None;
            }
            self.tables.push([0; ENTRIES]);
            Some(FAKE_BASE + (self.tables.len() as u64 - 1) * PAGE_SIZE)
        }
        fn table(&mut self, pa: u64) -> &mut [u64; ENTRIES] {
            &mut self.tables[((pa - FAKE_BASE) / PAGE_SIZE) as usize]
        }
    }

    fn table(limit: usize) -> PageTable<VecMemory> {
        PageTable::new(VecMemory {
            tables: Vec::new(),
            limit,
        })
        .unwrap()
    }

    #[test]
    fn maps_blocks_and_pages_and_translates_every_part() {
        let mut t = table(64);
        // 4 KiB head, a 2 MiB block, then a 4 KiB tail.
        t.map(0x401F_F000, 0x401F_F000, 0x20_2000, MemoryKind::Normal)
            .unwrap();
        t.map(0x0900_0000, 0x0900_0000, 0x1000, MemoryKind::Device)
            .unwrap();
        t.map(0x8000_0000, 0x8000_0000, BLOCK_1G, MemoryKind::Normal)
            .unwrap();
        for va in [
            0x401F_F000u64,
            0x4020_0000,
            0x402F_FFF8,
            0x403F_F123,
            0x4040_0FFF,
        ] {
            assert_eq!(t.translate(va), Some((va, MemoryKind::Normal)), "{va:#x}");
        }
        assert_eq!(t.translate(0x4040_1000), None);
        assert_eq!(t.translate(0x401F_E000), None);
        assert_eq!(
            t.translate(0x0900_0010),
            Some((0x0900_0010, MemoryKind::Device))
        );
        assert_eq!(
            t.translate(0xBFFF_FFFF),
            Some((0xBFFF_FFFF, MemoryKind::Normal))
        );
        assert_eq!(t.translate(0xC000_0000), None);
    }

    #[test]
    fn descriptors_have_the_architected_bits() {
        let mut t = table(8);
        t.map(0x20_0000, 0x20_0000, BLOCK_2M, MemoryKind::Normal)
            .unwrap();
        t.map(0x900_0000, 0x900_0000, PAGE_SIZE, MemoryKind::Device)
            .unwrap();
        let l0 = t.memory.tables[0][0];
        assert_eq!(l0 & 3, 3, "level-0 entry is a table");
        let l2 = t.memory.tables[2][1];
        assert_eq!(l2 & 3, 1, "a 2 MiB block descriptor");
        assert_eq!(l2 & desc::ADDRESS_MASK, 0x20_0000);
        assert_eq!((l2 >> 2) & 7, mair::NORMAL_WB);
        assert_ne!(l2 & desc::ACCESS_FLAG, 0);
        assert_eq!(l2 & desc::EXECUTE_NEVER, 0);
        let l3 = t.memory.tables[3][0];
        assert_eq!(l3 & 3, 3, "a page descriptor");
        assert_ne!(
            l3 & desc::EXECUTE_NEVER,
            0,
            "device memory is never executable"
        );
        assert_eq!((l3 >> 2) & 7, mair::DEVICE_NGNRE);
    }

    #[test]
    fn identical_remap_is_accepted_and_a_conflict_is_refused() {
        let mut t = table(16);
        t.map(0x800_0000, 0x800_0000, 0x1_0000, MemoryKind::Device)
            .unwrap();
        t.map(0x800_0000, 0x800_0000, 0x1_0000, MemoryKind::Device)
            .unwrap();
        assert_eq!(
            t.map(0x800_0000, 0x800_0000, 0x1000, MemoryKind::Normal),
            Err(MapError::Conflict(0x800_0000))
        );
        t.map(0x4000_0000, 0x4000_0000, BLOCK_2M, MemoryKind::Normal)
            .unwrap();
        assert_eq!(
            t.map(0x4000_1000, 0x5000_1000, 0x1000, MemoryKind::Normal),
            Err(MapError::Conflict(0x4000_1000))
        );
        t.map(0x4000_1000, 0x4000_1000, 0x1000, MemoryKind::Normal)
            .unwrap();
    }

    #[test]
    fn stage2_maps_unmaps_and_frees_every_table() {
        let mut t = PageTable::new_stage2(VecMemory {
            tables: Vec::new(),
            limit: 16,
        })
        .unwrap();
        assert_eq!(t.input_bits(), 39);
        let rw = s2::attributes(true, true, false);
        t.map_attrs(0x4000_0000, 0x8020_0000, BLOCK_2M + 0x3000, rw)
            .unwrap();
        let (d, pa) = t.lookup(0x4020_1234).unwrap();
        assert_eq!(pa, 0x8040_1234);
        assert_eq!(d & (s2::READ | s2::WRITE), s2::READ | s2::WRITE);
        assert_eq!(d & s2::EXECUTE_NEVER, s2::EXECUTE_NEVER);
        assert_eq!(t.lookup(0x4000_0000).unwrap().0 & 3, 1, "a 2 MiB block");
        assert_eq!(
            t.map_attrs(0, 0, PAGE_SIZE << 28, rw),
            Err(MapError::OutOfRange),
            "beyond 39 bits"
        );
        assert_eq!(
            t.unmap(0x4000_1000, PAGE_SIZE),
            Err(MapError::Conflict(0x4000_1000)),
            "inside a block"
        );
        assert_eq!(t.unmap(0x4000_0000, BLOCK_2M + 0x3000), Ok(512 + 3));
        assert_eq!(t.lookup(0x4020_1000), None);
        assert_eq!(
            t.unmap(0x4000_0000, BLOCK_2M),
            Ok(0),
            "unmapping nothing is fine"
        );
        let allocated = t.memory.tables.len();
        let mut freed = Vec::new();
        struct Count<'a>(&'a mut Vec<u64>, VecMemory);
        impl TableMemory for Count<'_> {
            fn alloc_table(&mut self) -> Option<u64> {
                self.1.alloc_table()
            }
            fn table(&mut self, pa: u64) -> &mut [u64; ENTRIES] {
                self.1.table(pa)
            }
            fn free_table(&mut self, pa: u64) {
                self.0.push(pa);
            }
        }
        let mut counted = PageTable::new_stage2(Count(
            &mut freed,
            VecMemory {
                tables: Vec::new(),
                limit: 16,
            },
        ))
        .unwrap();
        counted
            .map_attrs(0x4000_0000, 0x8000_0000, 0x3000, rw)
            .unwrap();
        counted.free_all();
        assert_eq!(freed.len(), 3, "root, level 2 and level 3 tables");
        assert!(allocated >= 3);
    }

    #[test]
    fn running_out_of_tables_leaves_nothing_half_mapped() {
        let mut t = table(4);
        let err = t.map(0x1000, 0x1000, 0x40_0000 + 0x2000, MemoryKind::Normal);
        assert_eq!(err, Err(MapError::OutOfTables));
        assert_eq!(t.translate(0x1000), None);
    }

    #[test]
    fn bad_requests_fail_without_panicking() {
        let mut t = table(4);
        assert_eq!(
            t.map(0x1001, 0x1000, 0x1000, MemoryKind::Normal),
            Err(MapError::Misaligned)
        );
        assert_eq!(
            t.map(0x1000, 0x1000, 0x1001, MemoryKind::Normal),
            Err(MapError::Misaligned)
        );
        assert_eq!(
            t.map(!0xFFF, 0, 0x2000, MemoryKind::Normal),
            Err(MapError::Misaligned)
        );
        assert_eq!(
            t.map(1 << 48, 1 << 48, 0x1000, MemoryKind::Normal),
            Err(MapError::OutOfRange)
        );
        // Four tables (root included) are exactly enough for one page; the next distant
        // page needs more.
        t.map(0x1000, 0x1000, 0x1000, MemoryKind::Normal).unwrap();
        assert_eq!(
            t.map(1 << 40, 1 << 40, 0x1000, MemoryKind::Normal),
            Err(MapError::OutOfTables)
        );
    }

    /// Table memory that counts what is live, for the freeing tests.
    struct Live {
        inner: VecMemory,
        live: usize,
    }

    impl TableMemory for Live {
        fn alloc_table(&mut self) -> Option<u64> {
            let pa = self.inner.alloc_table()?;
            self.live += 1;
            Some(pa)
        }
        fn table(&mut self, pa: u64) -> &mut [u64; ENTRIES] {
            self.inner.table(pa)
        }
        fn free_table(&mut self, pa: u64) {
            assert!(
                self.inner.table(pa).iter().all(|e| *e == 0),
                "freed a table that is not empty"
            );
            self.live -= 1;
        }
    }

    fn live_stage2() -> PageTable<Live> {
        PageTable::new_stage2(Live {
            inner: VecMemory {
                tables: Vec::new(),
                limit: 1 << 16,
            },
            live: 0,
        })
        .unwrap()
    }

    #[test]
    fn unmapping_frees_the_tables_it_empties_and_keeps_shared_ones() {
        let mut t = live_stage2();
        let rw = s2::attributes(true, true, false);
        // A page at ever-new addresses, mapped and unmapped: never more than root + 2 tables.
        for i in 0..2000u64 {
            let ipa = (i * 3 * BLOCK_2M + i * PAGE_SIZE) % (1 << 39);
            t.map_attrs(ipa, 0x8000_0000, PAGE_SIZE, rw).unwrap();
            assert!(t.memory.live <= 3);
            assert_eq!(t.unmap(ipa, PAGE_SIZE), Ok(1));
            assert_eq!(t.memory.live, 1, "only the root is left after {ipa:#x}");
        }
        // Two pages in one level-3 table: unmapping one keeps the table for the other.
        t.map_attrs(0x4000_0000, 0x8000_0000, PAGE_SIZE, rw)
            .unwrap();
        t.map_attrs(0x4000_3000, 0x8000_3000, PAGE_SIZE, rw)
            .unwrap();
        assert_eq!(t.memory.live, 3);
        t.unmap(0x4000_0000, PAGE_SIZE).unwrap();
        assert_eq!(t.memory.live, 3);
        assert_eq!(t.lookup(0x4000_3000).map(|(_, pa)| pa), Some(0x8000_3000));
        // A 2 MiB block next to it shares the level-2 table only.
        t.map_attrs(0x4020_0000, 0x8020_0000, BLOCK_2M, rw).unwrap();
        t.unmap(0x4000_3000, PAGE_SIZE).unwrap();
        assert_eq!(
            t.memory.live, 2,
            "the level-3 table went, the level-2 one stays"
        );
        t.unmap(0x4020_0000, BLOCK_2M).unwrap();
        assert_eq!(t.memory.live, 1);
        // A large unmap over nothing mapped is fine and frees nothing.
        assert_eq!(t.unmap(0, 1 << 35), Ok(0));
        assert_eq!(t.memory.live, 1);
    }

    #[test]
    fn tables_at_most_bounds_what_a_map_allocates() {
        let rw = s2::attributes(true, true, false);
        let cases: [(u64, u64, u64); 7] = [
            (0x4000_0000, 0x8000_0000, PAGE_SIZE),
            (0x4000_0000, 0x8000_0000, BLOCK_2M),
            (0x4000_1000, 0x8000_1000, 3 * BLOCK_2M),
            (0x4000_1000, 0x8000_2000, 3 * BLOCK_2M),
            (0x3FE0_0000, 0x8000_0000, 2 * BLOCK_2M),
            (0x3FFF_F000, 0x8000_0000, 2 * PAGE_SIZE),
            (0x7F_FFFF_F000, 0, PAGE_SIZE),
        ];
        for (va, pa, size) in cases {
            let mut t = live_stage2();
            let bound = tables_at_most(STAGE2_START_LEVEL, va, pa, size);
            t.map_attrs(va, pa, size, rw).unwrap();
            assert_eq!(
                t.memory.live as u64 - 1,
                bound,
                "a fresh tree allocates exactly the bound for {va:#x}+{size:#x}"
            );
            // Mapping next to it needs at most the bound, usually less.
            let next = va + size;
            if next + PAGE_SIZE <= 1 << 39 {
                let before = t.memory.live as u64;
                let bound = tables_at_most(STAGE2_START_LEVEL, next, pa + size, PAGE_SIZE);
                t.map_attrs(next, pa + size, PAGE_SIZE, rw).unwrap();
                assert!(t.memory.live as u64 - before <= bound);
            }
        }
        assert_eq!(tables_at_most(STAGE2_START_LEVEL, 0x1001, 0, PAGE_SIZE), 0);
        assert_eq!(
            tables_at_most(STAGE2_START_LEVEL, u64::MAX - 0xFFF, 0, PAGE_SIZE),
            0
        );
    }
}
