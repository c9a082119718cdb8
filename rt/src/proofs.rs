//! Kani proofs for what a domain parses from memory another party can write.
//!
//! - [`crate::ring::Ring`], the ring algorithm domains run, over memory whose every load
//!   returns whatever a hostile peer chose: pushes and pops only touch the ring's own bytes,
//!   never more than one slot of data per call, and a popped message fits its slot and the
//!   caller's buffer;
//! - [`crate::bootinfo`]: any bytes in the boot-info page validate to counts the lookups can
//!   use without panicking; the page address rule and the free-RAM carving keep the page and
//!   the shared regions out of what the domain is handed as free memory.
//!
//! What each proves, its bounds and its time: `docs/verification.md`. Run with
//! `cargo kani -p mica-rt`.

use core::cell::Cell;
use core::ops::Range;

use mica_abi::bootinfo::{BootInfo, MAX_CAPS, MAX_REGIONS};

use crate::bootinfo::{largest_free, page_address_ok, BootPage, PAGE_SIZE};
use crate::ring::{Error, Ring, RingMemory, LENGTH_SIZE};

// ---- Ring over hostile memory ----------------------------------------------------------

/// Memory shared with a peer that may write anything at any moment: every load and every
/// byte read returns an arbitrary value. Every access is checked to lie inside
/// `[ring_start, ring_end)`, the ring's own bytes, and its bytes are counted.
struct HostileMemory {
    len: usize,
    ring_start: usize,
    ring_end: usize,
    /// Slot bytes copied (read or written) so far.
    bytes: Cell<usize>,
}

impl HostileMemory {
    fn check(&self, offset: usize, len: usize) {
        assert!(offset >= self.ring_start, "access before the ring");
        assert!(
            offset
                .checked_add(len)
                .is_some_and(|end| end <= self.ring_end),
            "access past the ring"
        );
    }
}

impl RingMemory for HostileMemory {
    fn len(&self) -> usize {
        self.len
    }
    fn load_acquire(&self, offset: usize) -> u32 {
        self.check(offset, 4);
        assert!(offset.is_multiple_of(4), "misaligned word");
        // Header words are written by the peer (or scribbled over by it): anything.
        kani::any()
    }
    fn store_release(&self, offset: usize, _value: u32) {
        self.check(offset, 4);
        assert!(offset.is_multiple_of(4), "misaligned word");
    }
    fn fence(&self) {}
    fn read(&self, offset: usize, out: &mut [u8]) {
        self.check(offset, out.len());
        self.bytes.set(self.bytes.get() + out.len());
        // Only the length prefix's value matters to the algorithm; the payload is copied.
        if let Ok(prefix) = <&mut [u8; LENGTH_SIZE]>::try_from(&mut *out) {
            *prefix = kani::any();
        }
    }
    fn write(&self, offset: usize, data: &[u8]) {
        self.check(offset, data.len());
        self.bytes.set(self.bytes.get() + data.len());
    }
}

/// Largest message and buffer the ring harness uses.
const MESSAGE: usize = 12;

/// Ring shapes (capacity, slot size): constants, as in the ABI's ring proof (a symbolic
/// capacity times a symbolic slot size is a multiplication SAT solvers handle badly),
/// covering one slot, slots just big enough for a length, odd sizes, and shapes refused.
const SHAPES: [(u32, usize); 6] = [(1, 8), (2, 5), (4, 28), (8, 13), (3, 8), (2, 4)];

/// Calls `f` with one of `choices`, each on its own path, so `f` sees a constant.
fn for_any<T: Copy, const N: usize>(choices: [T; N], mut f: impl FnMut(T)) {
    let chosen: usize = kani::any();
    kani::assume(chosen < N);
    for (i, choice) in choices.into_iter().enumerate() {
        if i == chosen {
            f(choice);
        }
    }
}

/// Any ring shape of [`SHAPES`] at any base address in memory of any size, initialised by
/// this side or attached to, then a push or a pop of a message or into a buffer of any
/// length up to 12 bytes, while the peer writes anything into the header and the slots: no
/// access leaves the ring, the call copies at most one slot, and a popped message fits its
/// slot and the buffer.
#[kani::proof]
#[kani::unwind(7)]
fn ring_hostile_peer_cannot_move_accesses_outside() {
    for_any(SHAPES, |(capacity, slot_size)| {
        ring_ops(capacity, slot_size)
    });
}

fn ring_ops(capacity: u32, slot_size: usize) {
    let base: usize = kani::any();
    let len: usize = kani::any();
    let end = mica_abi::ring::HEADER_SIZE
        .checked_add((capacity as usize).saturating_mul(slot_size))
        .and_then(|size| size.checked_add(base));
    let memory = HostileMemory {
        len,
        ring_start: base,
        ring_end: end.unwrap_or(0),
        bytes: Cell::new(0),
    };
    let producer = kani::any();
    let ring = if producer {
        Ring::init(&memory, base, capacity, slot_size)
    } else {
        Ring::attach(&memory, base, capacity, slot_size)
    };
    let Ok(mut ring) = ring else {
        return;
    };
    assert!(
        end.is_some_and(|end| end <= len),
        "the ring leaves its memory"
    );
    let slot = ring.geometry().slot_size();
    let buffer = [0u8; MESSAGE];
    let mut out = [0u8; MESSAGE];
    {
        memory.bytes.set(0);
        let size: usize = kani::any();
        kani::assume(size <= MESSAGE);
        if kani::any() {
            match ring.push(&buffer[..size]) {
                Ok(_) => assert!(size <= slot - LENGTH_SIZE),
                Err(Error::TooLarge) => assert!(size > slot - LENGTH_SIZE),
                Err(e) => assert!(e == Error::Full || e == Error::Corrupt),
            }
        } else if let Ok(Some(popped)) = ring.pop(&mut out[..size]) {
            assert!(popped.len <= size && popped.len <= slot - LENGTH_SIZE);
        }
        assert!(
            memory.bytes.get() <= slot,
            "a call copied more than one slot"
        );
    }
}

// ---- Boot-info page --------------------------------------------------------------------

/// Any bytes as the boot-info page, its counts none, some, full, one past or the largest:
/// validation either refuses it or clamps the counts, so the listed entries are slices of the
/// arrays and every one of them can be read. (The lookups by name iterate over these slices;
/// comparing 40 symbolic names runs CBMC past minutes, so they are left out.)
#[kani::proof]
#[kani::unwind(34)]
fn bootinfo_any_page_validates_to_usable_counts() {
    let page: BootInfo = kani::any();
    // Counts a torn page may hold (constants: a symbolic count makes every loop over the
    // entries run to the bound over symbolic entries).
    for_any([0, 3, 32, 33, u32::MAX], |count| {
        let mut page = page;
        page.cap_count = count;
        page.region_count = count.min(9);
        let Some(page) = BootPage::validate(page) else {
            return;
        };
        assert!(page.caps().len() <= MAX_CAPS && page.regions().len() <= MAX_REGIONS);
        let slots: u32 = page.caps().iter().map(|c| u32::from(c.slot)).sum();
        let sizes = page
            .regions()
            .iter()
            .fold(0u64, |a, r| a.wrapping_add(r.size));
        let _ = (slots, sizes);
    });
}

/// The boot protocol's page address: whenever `page_address_ok` accepts x3 for RAM x1/x2,
/// the page is page aligned, directly after the RAM (so outside it) and does not wrap.
#[kani::proof]
fn bootinfo_page_address_is_after_the_ram() {
    let (page, base, size): (u64, u64, u64) = kani::any();
    if page_address_ok(page, base, size) {
        assert!(page.is_multiple_of(PAGE_SIZE) && size != 0);
        assert!(base.checked_add(size) == Some(page));
        assert!(page.checked_add(PAGE_SIZE).is_some());
    }
}

/// Carving free RAM around up to two reserved ranges (shared regions, the heap): the range
/// returned lies inside `[start, end)`, is 8-byte aligned and overlaps none of them.
#[kani::proof]
#[kani::unwind(4)]
fn bootinfo_free_ram_avoids_every_region() {
    let (start, end): (u64, u64) = kani::any();
    let count: usize = kani::any();
    kani::assume(count <= 2);
    let reserved: [Range<u64>; 2] = [
        kani::any::<u64>()..kani::any::<u64>(),
        kani::any::<u64>()..kani::any::<u64>(),
    ];
    let reserved = &reserved[..count];
    let free = largest_free(start, end, reserved);
    if free.is_empty() {
        return;
    }
    assert!(free.start >= start && free.end <= end);
    assert!(free.start.is_multiple_of(8) && free.end.is_multiple_of(8));
    for r in reserved {
        assert!(r.is_empty() || free.end <= r.start || free.start >= r.end);
    }
}
