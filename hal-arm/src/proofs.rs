//! Kani proofs for the pure half of the aarch64 layer: the MMIO access decoder, the stage-2
//! page-table mapper and the virtual GIC's register handlers.
//!
//! What each proves, its bounds and its time: `docs/verification.md`. Run them with
//! `verify/kani.sh` (the stage-2 harnesses need the CBMC option it passes them).

use crate::mmio::{decode_instruction, decode_syndrome, MmioAccess, Syndrome, ZERO_REGISTER};
use crate::pagetable::{s2, MapError, PageTable, TableMemory, ENTRIES, PAGE_SIZE};
use crate::vgic::{gicd, Vgic, REDISTRIBUTOR_STRIDE, SGI_FRAME};

/// Calls `f` with one of `choices`, each on its own path, so `f` sees a constant: table
/// positions, register offsets and INTIDs are chosen this way because a symbolic index into
/// a large object (a 4 KiB table, the vGIC's 6 KiB of state) makes CBMC reason about all of
/// it at a symbolic offset on every access.
fn for_any<T: Copy, const N: usize>(choices: [T; N], mut f: impl FnMut(T)) {
    let chosen: usize = kani::any();
    kani::assume(chosen < N);
    for i in 0..N {
        if i == chosen {
            f(choices[i]);
        }
    }
}

// ---- MMIO decoding ---------------------------------------------------------------------

/// What every accepted access must satisfy: registers are x0-x30 or the zero register, a
/// register moves 1, 2, 4 or 8 bytes and the whole access 1, 2, 4, 8 or 16, a writeback base
/// is x0-x30 or SP, and a pair's two halves have addresses that do not wrap.
fn check_access(access: &MmioAccess) {
    assert!(access.register <= ZERO_REGISTER);
    assert!(matches!(access.size, 1 | 2 | 4 | 8));
    assert!(matches!(access.total_size(), 1 | 2 | 4 | 8 | 16));
    if let Some(second) = access.pair {
        assert!(second <= ZERO_REGISTER);
        assert!(access.size == 4 || access.size == 8);
    }
    if let Some(writeback) = access.writeback {
        assert!(writeback.base_register <= 31);
    }
}

/// Any 32-bit word decodes without panicking, and an accepted one names valid registers
/// and sizes.
#[kani::proof]
fn mmio_any_instruction_decodes_safely() {
    if let Ok(access) = decode_instruction(kani::any()) {
        check_access(&access);
    }
}

/// Any accepted instruction, completed on any register file with any device data and split
/// into transfers at any address: no panic, and the transfers are one per register.
#[kani::proof]
fn mmio_any_access_completes_safely() {
    let Ok(access) = decode_instruction(kani::any()) else {
        return;
    };
    if let Some(transfers) = access.transfers(kani::any()) {
        assert!(transfers.len() == if access.pair.is_some() { 2 } else { 1 });
    }
    let mut registers: [u64; 31] = kani::any();
    let _ = access.store_value(&registers, kani::any());
    let _ = access.complete(&mut registers, kani::any());
}

/// Any ESR_EL2 value decodes without panicking, and a syndrome that describes the access
/// names a valid register and size.
#[kani::proof]
fn mmio_any_syndrome_decodes_safely() {
    let esr: u64 = kani::any();
    if let Ok(Syndrome::Decoded(access)) = decode_syndrome(esr) {
        check_access(&access);
        assert!(access.pair.is_none() && access.writeback.is_none());
    }
}

// ---- Stage-2 page tables ---------------------------------------------------------------

/// Tables the proofs use: a stage-2 root, one level-2 and one level-3 table.
const TABLES: usize = 3;
/// Where the fake table memory starts (any 4 KiB-aligned address works).
const TABLE_BASE: u64 = 0x7_0000_0000;

/// A fixed pool of tables, handed out lowest free first and taken back by `free_table`
/// (which the mapper may call when a table empties).
#[derive(Clone)]
struct Pool {
    tables: [[u64; ENTRIES]; TABLES],
    used: [bool; TABLES],
}

impl Pool {
    fn new() -> Pool {
        Pool {
            tables: [[0; ENTRIES]; TABLES],
            used: [false; TABLES],
        }
    }

    fn slot(pa: u64) -> usize {
        let index = pa.checked_sub(TABLE_BASE).map(|o| o / PAGE_SIZE);
        assert!(
            pa.is_multiple_of(PAGE_SIZE),
            "a table address is not page aligned"
        );
        match index {
            Some(i) if (i as usize) < TABLES => i as usize,
            _ => panic!("the mapper used an address it was not given"),
        }
    }
}

impl TableMemory for Pool {
    fn alloc_table(&mut self) -> Option<u64> {
        let free = self.used.iter().position(|u| !u)?;
        self.used[free] = true;
        self.tables[free] = [0; ENTRIES];
        Some(TABLE_BASE + free as u64 * PAGE_SIZE)
    }

    fn table(&mut self, pa: u64) -> &mut [u64; ENTRIES] {
        let i = Pool::slot(pa);
        assert!(self.used[i], "the mapper used a table it freed");
        &mut self.tables[i]
    }

    fn free_table(&mut self, pa: u64) {
        let i = Pool::slot(pa);
        assert!(self.used[i], "a table freed twice");
        self.used[i] = false;
    }
}

/// Guest-physical pages the page-table proofs map in: `WINDOW` pages from `WINDOW_BASE`,
/// inside one level-3 table, which [`fresh_tree`] allocates up front. Where a request starts
/// and how many pages it covers are constants on each path ([`for_any`]): a symbolic guest
/// address or size makes the table indices symbolic, and CBMC then reasons about every table
/// at every offset at once (it ran out of memory). What is mapped there is symbolic: the
/// output address and the permissions, and so whether each request succeeds.
const WINDOW: u64 = 4;
/// The first page of the window (any page-aligned address would do).
const WINDOW_BASE: u64 = 0x4000_0000;
/// The mapping the proofs start from: window pages 1 and 2.
const FIRST: (u64, u64) = (1, 2);
/// Ranges (first page, pages) relative to [`FIRST`]: overlapping its start from below,
/// sharing its start and ending inside it, overlapping its end from inside, and just after
/// it. (Disjoint ranges and exact repeats are the same paths through the mapper.)
const RANGES: [(u64, u64); 4] = [(0, 2), (1, 1), (2, 2), (3, 1)];

/// A stage-2 tree whose level-2 and level-3 tables for the window exist: it maps one page
/// right after the window and its overhang (which the proofs never probe), so no request
/// allocates a table and none of them empties one.
fn fresh_tree() -> PageTable<Pool> {
    let Some(mut table) = PageTable::new_stage2(Pool::new()) else {
        panic!("the root table");
    };
    let sentinel = WINDOW_BASE + (WINDOW + 1) * PAGE_SIZE;
    let attrs = s2::attributes(true, false, false);
    assert!(table.map_attrs(sentinel, 0, PAGE_SIZE, attrs).is_ok());
    table
}

/// The same tree over a copy of its tables.
fn copy(table: &mut PageTable<Pool>) -> PageTable<Pool> {
    let root = table.root();
    PageTable::from_root(table.memory().clone(), root, true)
}

/// A mapping request: `pages` pages from window page `page`, to any page-aligned output
/// address below 2^40, readable, and writable and executable or not.
#[derive(Clone, Copy)]
struct Request {
    ipa: u64,
    pa: u64,
    pages: u64,
    attrs: u64,
}

fn any_request((page, pages): (u64, u64)) -> Request {
    let pa: u64 = kani::any();
    kani::assume(pa.is_multiple_of(PAGE_SIZE) && pa < 1 << 40);
    Request {
        ipa: WINDOW_BASE + page * PAGE_SIZE,
        pa,
        pages,
        attrs: s2::attributes(true, kani::any(), kani::any()),
    }
}

impl Request {
    fn map(&self, table: &mut PageTable<Pool>) -> Result<(), MapError> {
        // Not `map_attrs`: its undo when tables run out is unreachable here (no request
        // allocates), but symbolic execution cannot tell, and the undo's walk over 512-entry
        // tables then costs minutes.
        table.map_inner(self.ipa, self.pa, self.pages * PAGE_SIZE, self.attrs)
    }

    fn contains(&self, ipa: u64) -> bool {
        ipa >= self.ipa && ipa < self.ipa + self.pages * PAGE_SIZE
    }

    /// Where this request maps `ipa` (which it contains).
    fn output(&self, ipa: u64) -> u64 {
        self.pa + (ipa - self.ipa)
    }
}

/// A byte offset inside a page at which the proofs probe (so the in-page offset of the
/// translation is checked too).
const PROBE_OFFSET: u64 = 0x9A8;

/// What an address must translate to.
enum Want {
    /// Nothing.
    Unmapped,
    /// This output address, with at least these attribute bits.
    Mapped(u64, u64),
    /// Either nothing or that (a refused request's own pages, see below).
    Either(u64, u64),
}

/// Checks what the tree says about every window page and the one after it.
fn expect(table: &mut PageTable<Pool>, want: impl Fn(u64) -> Want) {
    for page in [0, 1, 2, 3, WINDOW] {
        let probe = WINDOW_BASE + page * PAGE_SIZE + PROBE_OFFSET;
        match (table.lookup(probe), want(probe)) {
            (None, Want::Unmapped | Want::Either(..)) => {}
            (Some((entry, pa)), Want::Mapped(out, attrs) | Want::Either(out, attrs)) => {
                assert!(pa == out, "translate disagrees with what was mapped");
                assert!(entry & attrs == attrs, "the mapping lost its permissions");
            }
            (Some(_), Want::Unmapped) => panic!("an address translates that nobody mapped"),
            (None, Want::Mapped(..)) => panic!("a mapped address does not translate"),
        }
    }
}

/// A mapping of window pages 1-2, then a second of one or two pages overlapping its start,
/// sharing its start, overlapping its end, or just after it, each to any
/// output address with any permissions: each one that succeeds translates exactly as
/// requested at every page (in-page offset included); the second never changes what the
/// first mapped (an overlap with a different target or permissions is refused, so mappings
/// stay disjoint); pages neither covers do not translate. A refused second request may leave
/// its pages before the conflicting one mapped as it asked (`map_attrs` undoes a prefix only
/// when tables run out; docs/verification.md), never anything else.
#[kani::proof]
#[kani::unwind(9)]
fn stage2_map_keeps_mappings_disjoint() {
    let mut table = fresh_tree();
    let a = any_request(FIRST);
    let mapped_a = a.map(&mut table).is_ok();
    for_any(RANGES, |second| {
        let mut table = copy(&mut table);
        let b = any_request(second);
        let mapped_b = b.map(&mut table).is_ok();
        expect(&mut table, |ipa| {
            if mapped_a && a.contains(ipa) {
                if mapped_b && b.contains(ipa) {
                    // Both succeeded over the same address: only if they agree there.
                    assert!(b.output(ipa) == a.output(ipa) && b.attrs == a.attrs);
                }
                Want::Mapped(a.output(ipa), a.attrs)
            } else if b.contains(ipa) && mapped_b {
                Want::Mapped(b.output(ipa), b.attrs)
            } else if b.contains(ipa) {
                Want::Either(b.output(ipa), b.attrs)
            } else {
                Want::Unmapped
            }
        });
    });
}

/// A mapping of window pages 1-2 to any output address, then an unmap of one or two pages
/// overlapping its start, sharing its start, overlapping its end, or just after it: a refused
/// unmap leaves the mapping whole; an accepted one leaves exactly the mapped pages outside
/// its range translating as before.
#[kani::proof]
#[kani::unwind(9)]
fn stage2_unmap_removes_exactly_its_range() {
    let mut table = fresh_tree();
    let a = any_request(FIRST);
    let mapped = a.map(&mut table).is_ok();
    for_any(RANGES, |(page, pages)| {
        let mut table = copy(&mut table);
        let start = WINDOW_BASE + page * PAGE_SIZE;
        let unmapped = table.unmap(start, pages * PAGE_SIZE).is_ok();
        expect(&mut table, |ipa| {
            let in_unmap = ipa >= start && ipa < start + pages * PAGE_SIZE;
            if mapped && a.contains(ipa) && !(unmapped && in_unmap) {
                Want::Mapped(a.output(ipa), a.attrs)
            } else {
                Want::Unmapped
            }
        });
    });
}

// ---- Virtual GIC -----------------------------------------------------------------------
//
// Under `cfg(kani)` the vGIC model is smaller (2 vCPUs, 32 SPIs, 4 list registers:
// `vgic/mod.rs`); the code is the same. The harnesses write on one vGIC in sequence: a
// `Vgic::clone` per path (as a menu of operations from one start state needs) costs CBMC
// more than the writes themselves.

/// Offset of vCPU `vcpu`'s SGI frame register `offset` in the redistributor region.
const fn sgi(vcpu: u64, offset: u64) -> u64 {
    vcpu * REDISTRIBUTOR_STRIDE + SGI_FRAME + offset
}

/// A one-vCPU vGIC with 32 SPIs, its distributor enabled for Group 1.
fn vgic_enabled() -> Vgic {
    let Ok(mut gic) = Vgic::new(1, 32) else {
        panic!("a one-vCPU vGIC");
    };
    let _ = gic.distributor_write(gicd::CTLR, 4, u64::from(gicd::CTLR_ENABLE_GRP1));
    gic
}

/// The guest writes any value to the set-pending register of SPIs 32-63: the bookkeeping
/// (`Vgic::consistency`, what the unit tests check after every step: no interrupt in two
/// list registers, `listed` flags agree with the records, every pending or active interrupt
/// has its `maybe` bit) holds after it, and nothing indexes out of range or panics. (One
/// write: a second, to set-active, makes this harness take CBMC three minutes.)
#[kani::proof]
#[kani::unwind(33)]
fn vgic_distributor_write_keeps_the_bookkeeping() {
    let mut gic = vgic_enabled();
    let value: u32 = kani::any();
    let _ = gic.distributor_write(gicd::ISPENDR + 4, 4, u64::from(value));
    assert!(
        gic.consistency().is_ok(),
        "vGIC bookkeeping broken by a distributor write"
    );
}

/// The same through vCPU 0's SGI frame (SGIs and PPIs): any value to set-enable,
/// set-pending, set-active and clear-pending, in that order, the bookkeeping checked after
/// each.
#[kani::proof]
#[kani::unwind(33)]
fn vgic_sgi_frame_writes_keep_the_bookkeeping() {
    let mut gic = vgic_enabled();
    for offset in [
        gicd::ISENABLER,
        gicd::ISPENDR,
        gicd::ISACTIVER,
        gicd::ICPENDR,
    ] {
        let value: u32 = kani::any();
        let _ = gic.redistributor_write(sgi(0, offset), 4, u64::from(value));
        assert!(
            gic.consistency().is_ok(),
            "vGIC bookkeeping broken by a redistributor write"
        );
    }
}
