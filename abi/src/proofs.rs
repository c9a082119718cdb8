//! Kani proofs for the ABI's hypercall decoding, its parsers and the ring's index arithmetic.
//!
//! - [`crate::args::decode`], what the kernel does first with every hypercall: for every
//!   call of the table and any register values it returns arguments or a status and never
//!   panics, and what it accepts encodes back to the same registers; for every call and any
//!   value of its argument type, `decode(encode(args)) == args` unless the call's checks
//!   refuse the combination;
//! - [`crate::sysimage::SystemImage::parse`] on any byte string up to a bound never panics
//!   or reads out of bounds, and every image it accepts satisfies the placement rules the
//!   kernel relies on when it builds the initial domains;
//! - the boot-info page's lookups and edits never panic, whatever the counts say;
//! - [`crate::ring`]: whatever indices a hostile peer publishes, the offsets the other side
//!   computes stay inside the ring, and it never takes more entries than the ring holds.
//!
//! What each proves, its bounds and its time: `docs/verification.md`. Run with
//! `cargo kani -p mica-abi`.

use crate::args::{decode, names, Args, Port, Slot};
use crate::bootinfo::{self, BootInfo, CapEntry, RegionEntry, MAX_CAPS, MAX_REGIONS};
use crate::hypercall::{Call, TABLE};
use crate::ring::{self, Geometry, HEADER_SIZE};
use crate::sysimage::{
    ChannelRecord, DeviceRecord, DomainRecord, SegmentRecord, ShareRecord, SystemImage,
    DOMAIN_RAM_BASE, MAX_VCPUS_PER_DOMAIN,
};
use crate::Rights;
use zerocopy::{FromBytes, FromZeros};

// ---- Hypercall decoding ----------------------------------------------------------------

/// Any 16-bit slot number.
impl kani::Arbitrary for Slot {
    fn any() -> Slot {
        Slot(kani::any())
    }
}

/// Any port of the event page (the type's range, `0..PORTS`).
impl kani::Arbitrary for Port {
    fn any() -> Port {
        let port: u16 = kani::any();
        kani::assume(usize::from(port) < crate::event::PORTS);
        Port(port)
    }
}

/// Any set of the defined rights.
impl kani::Arbitrary for Rights {
    fn any() -> Rights {
        Rights::from_bits_truncate(kani::any())
    }
}

/// Every call of the table, any six argument registers: decoding never panics, accepts only
/// arguments of the call it was asked for, and what it accepts encodes back to exactly the
/// registers it came from (the call's arguments; zeros past them), so no two register
/// values decode to the same arguments.
#[kani::proof]
#[kani::unwind(33)]
fn hypercall_decode_any_registers() {
    let index: usize = kani::any();
    kani::assume(index < TABLE.len());
    let call = TABLE[index].call;
    let regs: [u64; 6] = kani::any();
    if let Ok(args) = decode(call, regs) {
        assert!(args.call() == call, "decoded as another call");
        let used = names(call).len();
        let encoded = args.to_regs();
        for i in 0..6 {
            let want = if i < used { regs[i] } else { 0 };
            assert!(encoded[i] == want, "re-encodes differently");
        }
    }
}

/// Every call, any value of its argument type (any slots, defined rights, ports of the event
/// page, any addresses and counts): `decode(encode(args)) == args`, unless the call's checks
/// of the arguments together refuse them, and then decoding refuses them too.
#[kani::proof]
#[kani::unwind(33)]
fn hypercall_encode_then_decode_round_trips() {
    let args: Args = kani::any();
    match decode(args.call(), args.to_regs()) {
        Ok(back) => assert!(back == args, "decode(encode(args)) != args"),
        Err(_) => assert!(args.check().is_err(), "valid arguments refused"),
    }
}

/// Any function id in x0: it names a call of the table with exactly that id, or none.
#[kani::proof]
#[kani::unwind(40)]
fn hypercall_function_ids_decode_exactly() {
    let id: u64 = kani::any();
    if let Some(call) = Call::from_function_id(id) {
        assert!(call.function_id() == id);
        assert!(TABLE.iter().any(|spec| spec.call == call));
    }
}

// ---- System image ----------------------------------------------------------------------

const PAGE: u64 = 4096;
/// The 39-bit guest-physical address space every window must stay in.
const IPA_TOP: u64 = 1 << 39;

/// The placement rules of an accepted image (`docs/manifest.md`), restated here apart from
/// `crate::layout` so the parser is checked against the rules, not against itself: every
/// domain's RAM is non-empty and page sized, its last page is the boot-info page, and its
/// entry point and segments lie below that page (each segment's bytes inside the image);
/// shared regions lie in the owner's RAM below its boot-info page and at a peer address
/// above the peer's RAM; device windows are page aligned and clear of the domain's RAM; all
/// windows stay in the 39-bit address space; channels and shares name domains that exist.
fn check_placement(image: &SystemImage<'_>, len: usize) {
    let domains = image.domains();
    assert!(!domains.is_empty());
    for d in domains {
        assert!(d.memory_bytes != 0 && d.memory_bytes.is_multiple_of(PAGE));
        let Some(ram_end) = DOMAIN_RAM_BASE.checked_add(d.memory_bytes) else {
            panic!("the domain's RAM wraps");
        };
        let boot_page = ram_end - PAGE;
        assert!(d.entry >= DOMAIN_RAM_BASE && d.entry < boot_page);
        assert!(d.vcpu_count >= 1 && d.vcpu_count as usize <= MAX_VCPUS_PER_DOMAIN);
        let Some(segments) = image.segments_of(d) else {
            panic!("an accepted domain's segment table is out of range");
        };
        for s in segments {
            assert!(s.ipa >= DOMAIN_RAM_BASE && s.file_size <= s.mem_size);
            assert!(s
                .ipa
                .checked_add(s.mem_size)
                .is_some_and(|end| end <= boot_page));
            let bytes = image.segment_bytes(s);
            assert!(bytes.len() as u64 == s.file_size);
            assert!(s
                .offset
                .checked_add(s.file_size)
                .is_some_and(|end| end <= len as u64));
        }
    }
    for c in image.channels() {
        assert!((c.a_domain as usize) < domains.len() && (c.b_domain as usize) < domains.len());
    }
    for sh in image.shares() {
        check_share(domains, sh);
    }
    for dev in image.devices() {
        check_device(domains, dev);
    }
}

/// One past the last byte of `[start, start + size)` when it does not wrap and stays in the
/// 39-bit space.
fn window_end(start: u64, size: u64) -> Option<u64> {
    start.checked_add(size).filter(|end| *end <= IPA_TOP)
}

fn check_share(domains: &[DomainRecord], sh: &ShareRecord) {
    let owner = domains.get(sh.owner as usize);
    let peer = domains.get(sh.peer as usize);
    assert!(sh.owner != sh.peer);
    let (Some(owner), Some(peer)) = (owner, peer) else {
        panic!("a share names a domain that does not exist");
    };
    let size = u64::from(sh.pages) * PAGE;
    assert!(size != 0 && sh.owner_offset.is_multiple_of(PAGE) && sh.peer_ipa.is_multiple_of(PAGE));
    // Inside the owner's RAM, below its boot-info page.
    assert!(sh
        .owner_offset
        .checked_add(size)
        .is_some_and(|end| end + PAGE <= owner.memory_bytes));
    // Above the peer's RAM (below it are the devices the kernel emulates).
    assert!(window_end(sh.peer_ipa, size).is_some());
    assert!(sh.peer_ipa >= DOMAIN_RAM_BASE + peer.memory_bytes);
    let rights = Rights::from_bits(sh.peer_rights);
    assert!(rights
        .is_some_and(|r| r.contains(Rights::READ) && (Rights::READ | Rights::WRITE).contains(r)));
}

fn check_device(domains: &[DomainRecord], dev: &DeviceRecord) {
    let Some(d) = domains.get(dev.domain as usize) else {
        panic!("a device names a domain that does not exist");
    };
    assert!(dev.mmio_size != 0);
    assert!(dev.mmio_base.is_multiple_of(PAGE) && dev.mmio_size.is_multiple_of(PAGE));
    assert!(dev.guest_address.is_multiple_of(PAGE));
    assert!(dev.interrupt == 0 || (32..1020).contains(&dev.interrupt));
    let Some(end) = window_end(dev.guest_address, dev.mmio_size) else {
        panic!("a device window wraps or leaves the 39-bit space");
    };
    assert!(end <= DOMAIN_RAM_BASE || dev.guest_address >= DOMAIN_RAM_BASE + d.memory_bytes);
}

/// Bytes of the largest record (a domain record): what [`record`] reads a record from.
const DOMAIN: usize = size_of::<DomainRecord>();

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

/// A model of [`bootinfo::text`], the UTF-8 check of names, for the parser proofs: any
/// field reads as the empty name, a short one, one of 19 bytes (the longest a device may
/// have) or one of 20, and never longer than the field. `core`'s UTF-8 validation of 32
/// symbolic bytes alone runs CBMC past ten minutes; what the parsers do with a name's text
/// (empty or not, its length, equality) is covered by these four. [`text_is_a_prefix`]
/// checks the real function on short fields.
#[allow(dead_code)] // Used through `kani::stub`.
fn text_model(field: &[u8]) -> &str {
    const TEXTS: [&str; 4] = ["", "d", "nineteen-bytes-name", "twenty-bytes-name-xx"];
    let i: usize = kani::any();
    kani::assume(i < TEXTS.len() && TEXTS[i].len() <= field.len());
    TEXTS[i]
}

/// The real [`bootinfo::text`] on any 4 bytes: the text is a prefix of the field, ends
/// before the first NUL and is empty when those bytes are not UTF-8.
#[kani::proof]
#[kani::unwind(6)]
fn text_is_a_prefix() {
    let field: [u8; 4] = kani::any();
    let text = bootinfo::text(&field);
    assert!(field.starts_with(text.as_bytes()));
    assert!(!text.as_bytes().contains(&0));
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    assert!(text.len() == end || text.is_empty());
}

/// Any byte string of up to 64 bytes (a header and what follows, too short for a domain
/// record): no panic, no out-of-bounds read, and nothing is accepted. The bytes are a 64-byte
/// array whose header says how long the image is (`total_size`, any value): `parse` reads
/// nothing past `total_size`, so that covers every shorter string too (one shorter than the
/// header is refused by the first read). With
/// [`sysimage_records_obey_placement`] this covers `parse`: it frames the tables with
/// `zerocopy`'s checked slice casts (every count against the bytes left), then checks the
/// records ([`SystemImage::check_records`]). Larger symbolic strings are out of reach: every
/// record read is then at a symbolic offset into the whole string, and 144 bytes already
/// take CBMC minutes (docs/verification.md).
#[kani::proof]
#[kani::unwind(2)]
fn sysimage_parse_any_short_bytes() {
    let blob: [u8; 64] = kani::any();
    assert!(SystemImage::parse(&blob).is_err());
}

/// Any contents of two domain records, one segment, one channel, one shared region and one
/// device record (tables with fewer records run a prefix of the same checks), over a 64-byte
/// image of any bytes: whatever the record checks parse runs
/// accept obeys the placement rules ([`check_placement`]), and the checks never panic.
/// Names: [`text_model`].
#[kani::proof]
#[kani::stub(crate::bootinfo::text, text_model)]
#[kani::unwind(3)]
fn sysimage_records_obey_placement() {
    let blob: [u8; 64] = kani::any();
    let domains: [DomainRecord; 2] = [record(), record()];
    let segments: [SegmentRecord; 1] = [record()];
    let channels: [ChannelRecord; 1] = [record()];
    let shares: [ShareRecord; 1] = [record()];
    let devices: [DeviceRecord; 1] = [record()];
    let image = SystemImage::from_tables(&blob, &domains, &segments, &channels, &shares, &devices);
    if image.check_records().is_ok() {
        check_placement(&image, blob.len());
    }
}

/// A record of any bytes.
fn record<T: FromBytes>() -> T {
    let bytes: [u8; DOMAIN] = kani::any();
    let Ok((record, _)) = T::read_from_prefix(&bytes) else {
        panic!("a record larger than a domain record");
    };
    record
}

// ---- Boot-info page --------------------------------------------------------------------

/// Counts a torn boot-info page may hold: none, some, full, one past, and the largest.
/// Constants: a symbolic count makes every entry move a write at a symbolic index.
const COUNTS: [u32; 5] = [0, 3, 32, 33, u32::MAX];

/// Any bytes as a boot-info page, with capability and region counts from [`COUNTS`]:
/// removing entries and adding one never panic and clamp the counts to the arrays. (Lookups
/// by name, `take(count)` over the arrays, are left out: 32 name comparisons over symbolic
/// entries run CBMC past minutes.)
#[kani::proof]
#[kani::unwind(34)]
fn bootinfo_any_page() {
    let page: BootInfo = kani::any();
    for_any(COUNTS, |count| {
        let mut page = page;
        // Slots are what the removal below keeps by: constants, so the entries it moves
        // move to constant places.
        for (i, cap) in page.caps.iter_mut().enumerate() {
            cap.slot = i as u16;
        }
        page.cap_count = count;
        page.region_count = count.min(9);
        page.retain_caps(|c| c.slot % 2 == 0);
        assert!(page.cap_count <= count && page.cap_count as usize <= MAX_CAPS);
        let pushed = page.push_cap(CapEntry::new_zeroed());
        assert!(!pushed || page.cap_count as usize <= MAX_CAPS);
        let regions = page.region_count;
        let pushed = page.push_region(RegionEntry::new_zeroed());
        assert!(pushed == ((regions as usize) < MAX_REGIONS));
    });
}

// ---- SPSC ring -------------------------------------------------------------------------

/// Ring shapes (capacity, slot size) the ring proofs use: the smallest, small odd slots, a
/// typical one, the largest capacity, and ones that do not fit or are no power of two. The
/// shape is a constant on each path: capacity times slot size with both symbolic is a 64-bit
/// multiplication, which SAT solvers handle badly.
const SHAPES: [(u32, usize); 7] = [
    (1, 1),
    (2, 12),
    (4, 64),
    (64, 256),
    (1 << 31, 3),
    (3, 8),
    (0, 8),
];

/// Any geometry of [`SHAPES`] over any memory size: what the ring accepts fits its memory,
/// and for any indices a hostile peer publishes: the consumer is told at most `capacity`
/// entries are available, the producer at most `capacity` are free, and every slot either
/// side then touches lies inside the ring.
#[kani::proof]
#[kani::unwind(8)]
fn ring_hostile_indices_stay_inside() {
    for_any(SHAPES, |(capacity, slot_size)| {
        ring_indices(capacity, slot_size);
    });
}

fn ring_indices(capacity: u32, slot_size: usize) {
    let memory: usize = kani::any();
    let Ok(g) = Geometry::new(capacity, slot_size, memory) else {
        return;
    };
    assert!(g.size() <= memory && g.capacity() == capacity && g.slot_size() == slot_size);
    let producer: u32 = kani::any();
    let consumer: u32 = kani::any();
    let k: u32 = kani::any();
    if let Ok(n) = ring::available(&g, producer, consumer) {
        assert!(n <= capacity);
        if k < n {
            let offset = ring::slot_offset(&g, consumer.wrapping_add(k));
            assert!(offset >= HEADER_SIZE && offset + slot_size <= g.size());
        }
    }
    if let Ok(free) = ring::free_slots(&g, producer, consumer) {
        assert!(free <= capacity);
        if k < free {
            let offset = ring::slot_offset(&g, producer.wrapping_add(k));
            assert!(offset >= HEADER_SIZE && offset + slot_size <= g.size());
        }
    }
    // Even an index nobody checked maps inside.
    let offset = ring::slot_offset(&g, kani::any());
    assert!(offset >= HEADER_SIZE && offset + slot_size <= g.size());
}
