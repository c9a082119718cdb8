//! Bulk copies to and from memory that another agent (a peer domain, a device) may touch at
//! the same time, and that is no Rust object. Where source and destination share their
//! alignment, the middle moves in 64-byte blocks of SIMD loads and stores (inline assembly on
//! bare-metal aarch64: opaque to the compiler, so a peer's concurrent write is no data race in
//! Rust's model, only different bytes); elsewhere, and at the ragged ends, whole aligned 8-byte
//! words with relaxed atomic accesses (plain loads and stores on aarch64, which cannot tear)
//! and single bytes. Under QEMU's `-icount` every instruction costs the same time, and a
//! megabyte moved eight bytes at a time cost the block path more than the whole disk read on
//! the bare machine (docs/PERFORMANCE.md, the disk figures); no crate offers a copy with these
//! access rules.

use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

const WORD: usize = 8;
/// Bytes of one block of the fast path.
const BLOCK: usize = 64;

/// How a copy of `n` bytes from `src` to `dst` splits: bytes before both are 16-byte aligned
/// (all of them when their alignments differ), then bytes that are whole blocks.
fn split(dst: usize, src: usize, n: usize) -> (usize, usize) {
    let head = (dst.wrapping_neg() & 15).min(n);
    if src.wrapping_add(head) & 15 != 0 {
        return (n, 0);
    }
    (head, (n - head) / BLOCK * BLOCK)
}

/// Moves `len` bytes (whole blocks) from `src` to `dst`, both 16-byte aligned: four SIMD
/// instructions a block.
///
/// # Safety
///
/// `[src, src + len)` valid for reads, `[dst, dst + len)` valid for writes, for the whole
/// call; the two do not overlap.
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
unsafe fn blocks(dst: *mut u8, src: *const u8, len: usize) {
    let n = len / BLOCK;
    if n == 0 {
        return;
    }
    // SAFETY: the caller vouches for both ranges; the loop touches exactly `n` blocks of each,
    // 16-byte aligned, and only the registers it names (flags included: no
    // `preserves_flags`).
    unsafe {
        core::arch::asm!(
            "2:",
            "ldp {a:q}, {b:q}, [{src}], #32",
            "ldp {c:q}, {d:q}, [{src}], #32",
            "stp {a:q}, {b:q}, [{dst}], #32",
            "stp {c:q}, {d:q}, [{dst}], #32",
            "subs {n}, {n}, #1",
            "b.ne 2b",
            src = inout(reg) src => _,
            dst = inout(reg) dst => _,
            n = inout(reg) n => _,
            a = out(vreg) _,
            b = out(vreg) _,
            c = out(vreg) _,
            d = out(vreg) _,
            options(nostack),
        );
    }
}

/// The host's tests (single-threaded) use a plain copy in place of the assembly, so the
/// splitting around it is what they test.
///
/// # Safety
///
/// As for the bare-metal version.
#[cfg(all(test, not(all(target_arch = "aarch64", target_os = "none"))))]
unsafe fn blocks(dst: *mut u8, src: *const u8, len: usize) {
    // SAFETY: the caller's contract.
    unsafe { core::ptr::copy_nonoverlapping(src, dst, len) }
}

/// Other targets (the runtime is built for x86_64 too, not run there yet) copy the blocks
/// word by word with atomic accesses, as the ends (the source may be a Rust slice, read
/// through relaxed atomic loads there: to be revisited when x86 domains run).
///
/// # Safety
///
/// As for the bare-metal version.
#[cfg(all(not(test), not(all(target_arch = "aarch64", target_os = "none"))))]
unsafe fn blocks(dst: *mut u8, src: *const u8, len: usize) {
    // SAFETY: the caller's contract.
    unsafe { copy_words(dst, src, len) }
}

/// Copies `len` bytes from `src` to `dst` word by word where both are 8-byte aligned, byte by
/// byte otherwise, with relaxed atomic accesses on both sides.
///
/// # Safety
///
/// Both ranges valid for reads and writes (atomic loads ask for both) for the whole call, no
/// part of any Rust object, not overlapping.
unsafe fn copy_words(dst: *mut u8, src: *const u8, len: usize) {
    let src = src.cast_mut();
    let mut i = 0;
    if (dst as usize ^ src as usize) & (WORD - 1) == 0 {
        while i < len && (dst as usize + i) & (WORD - 1) != 0 {
            // SAFETY: inside both ranges; byte accesses need no alignment.
            let b = unsafe { AtomicU8::from_ptr(src.add(i)) }.load(Ordering::Relaxed);
            // SAFETY: as above.
            unsafe { AtomicU8::from_ptr(dst.add(i)) }.store(b, Ordering::Relaxed);
            i += 1;
        }
        while i + WORD <= len {
            // SAFETY: inside both ranges, both 8-byte aligned here.
            let w = unsafe { AtomicU64::from_ptr(src.add(i).cast()) }.load(Ordering::Relaxed);
            // SAFETY: as above.
            unsafe { AtomicU64::from_ptr(dst.add(i).cast()) }.store(w, Ordering::Relaxed);
            i += WORD;
        }
    }
    while i < len {
        // SAFETY: inside both ranges.
        let b = unsafe { AtomicU8::from_ptr(src.add(i)) }.load(Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { AtomicU8::from_ptr(dst.add(i)) }.store(b, Ordering::Relaxed);
        i += 1;
    }
}

/// Copies `len` bytes from `src` to `dst`: two ranges of shared memory (a device domain's
/// copy between a guest's RAM and the block service's data slots).
///
/// # Safety
///
/// Both ranges valid for reads and writes for the whole call, no part of any Rust object, not
/// overlapping.
pub(crate) unsafe fn copy_between(dst: *mut u8, src: *const u8, len: usize) {
    if len < BLOCK {
        // SAFETY: the caller's contract.
        return unsafe { copy_words(dst, src, len) };
    }
    let (head, body) = split(dst as usize, src as usize, len);
    // SAFETY: the caller's contract, on the three parts of the ranges in turn.
    unsafe {
        copy_words(dst, src, head);
        blocks(dst.add(head), src.add(head), body);
        copy_words(
            dst.add(head + body),
            src.add(head + body),
            len - head - body,
        );
    }
}

/// Copies `data` to `dst`.
///
/// # Safety
///
/// `[dst, dst + data.len())` must be valid for writes for the whole call and be no part of
/// any Rust object: this domain reaches it only through atomic (or volatile) accesses.
unsafe fn copy_to_words(dst: *mut u8, data: &[u8]) {
    let n = data.len();
    let head = dst.align_offset(WORD).min(n);
    let words = (n - head) / WORD;
    for (i, b) in data[..head].iter().enumerate() {
        // SAFETY: inside the range the caller vouches for; byte accesses need no alignment.
        unsafe { AtomicU8::from_ptr(dst.add(i)) }.store(*b, Ordering::Relaxed);
    }
    // Whole chunks of the slice, so that each word is one load (no bounds check, no call).
    for (w, chunk) in data[head..head + words * WORD]
        .chunks_exact(WORD)
        .enumerate()
    {
        let mut word = [0u8; WORD];
        word.copy_from_slice(chunk);
        // SAFETY: inside the range; `head` made `dst + head + 8w` 8-byte aligned.
        unsafe { AtomicU64::from_ptr(dst.add(head + w * WORD).cast()) }
            .store(u64::from_ne_bytes(word), Ordering::Relaxed);
    }
    for (i, b) in data.iter().enumerate().skip(head + words * WORD) {
        // SAFETY: as for the head.
        unsafe { AtomicU8::from_ptr(dst.add(i)) }.store(*b, Ordering::Relaxed);
    }
}

/// Copies `out.len()` bytes from `src` into `out`.
///
/// # Safety
///
/// `[src, src + out.len())` must be valid for reads and writes for the whole call (atomic
/// loads ask for both) and be no part of any Rust object (as for [`copy_to`]).
unsafe fn copy_from_words(src: *const u8, out: &mut [u8]) {
    let n = out.len();
    let head = src.align_offset(WORD).min(n);
    let words = (n - head) / WORD;
    let src = src.cast_mut();
    for (i, b) in out[..head].iter_mut().enumerate() {
        // SAFETY: inside the range the caller vouches for; byte accesses need no alignment.
        *b = unsafe { AtomicU8::from_ptr(src.add(i)) }.load(Ordering::Relaxed);
    }
    for (w, chunk) in out[head..head + words * WORD]
        .chunks_exact_mut(WORD)
        .enumerate()
    {
        let at = head + w * WORD;
        // SAFETY: inside the range; `head` made `src + at` 8-byte aligned.
        let word = unsafe { AtomicU64::from_ptr(src.add(at).cast()) }.load(Ordering::Relaxed);
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    for (i, b) in out.iter_mut().enumerate().skip(head + words * WORD) {
        // SAFETY: as for the head.
        *b = unsafe { AtomicU8::from_ptr(src.add(i)) }.load(Ordering::Relaxed);
    }
}

/// Copies `out.len()` bytes from `src` into `out` with volatile loads: for memory that may be
/// mapped read-only, which atomic loads may not touch.
///
/// # Safety
///
/// `[src, src + out.len())` must be valid for reads for the whole call and be no part of any
/// Rust object.
unsafe fn copy_from_volatile_words(src: *const u8, out: &mut [u8]) {
    let n = out.len();
    let head = src.align_offset(WORD).min(n);
    let words = (n - head) / WORD;
    for (i, b) in out[..head].iter_mut().enumerate() {
        // SAFETY: inside the range the caller vouches for.
        *b = unsafe { core::ptr::read_volatile(src.add(i)) };
    }
    for (w, chunk) in out[head..head + words * WORD]
        .chunks_exact_mut(WORD)
        .enumerate()
    {
        // SAFETY: inside the range; `head` made `src + head + 8w` 8-byte aligned, so the load
        // is one aligned 8-byte access.
        let word = unsafe { core::ptr::read_volatile(src.add(head + w * WORD).cast::<u64>()) };
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    for (i, b) in out.iter_mut().enumerate().skip(head + words * WORD) {
        // SAFETY: as for the head.
        *b = unsafe { core::ptr::read_volatile(src.add(i)) };
    }
}

/// Copies `data` to `dst`.
///
/// # Safety
///
/// `[dst, dst + data.len())` must be valid for writes for the whole call and be no part of
/// any Rust object: this domain reaches it only through atomic (or volatile) accesses, or
/// the block copy's assembly.
pub(crate) unsafe fn copy_to(dst: *mut u8, data: &[u8]) {
    if data.len() < BLOCK {
        // Shorter than a block (a ring's messages): one call, as before the blocks.
        // SAFETY: the caller's contract.
        return unsafe { copy_to_words(dst, data) };
    }
    let (head, body) = split(dst as usize, data.as_ptr() as usize, data.len());
    // SAFETY: the caller's contract for `dst`; `data` is a slice, valid for reads.
    unsafe {
        copy_to_words(dst, &data[..head]);
        blocks(dst.add(head), data[head..].as_ptr(), body);
        copy_to_words(dst.add(head + body), &data[head + body..]);
    }
}

/// Copies `out.len()` bytes from `src` into `out`.
///
/// # Safety
///
/// `[src, src + out.len())` must be valid for reads and writes for the whole call (atomic
/// loads ask for both) and be no part of any Rust object (as for [`copy_to`]).
pub(crate) unsafe fn copy_from(src: *const u8, out: &mut [u8]) {
    if out.len() < BLOCK {
        // SAFETY: the caller's contract.
        return unsafe { copy_from_words(src, out) };
    }
    let (head, body) = split(out.as_ptr() as usize, src as usize, out.len());
    // SAFETY: the caller's contract for `src`; `out` is a slice, valid for writes.
    unsafe {
        copy_from_words(src, &mut out[..head]);
        blocks(out[head..].as_mut_ptr(), src.add(head), body);
        copy_from_words(src.add(head + body), &mut out[head + body..]);
    }
}

/// Copies `out.len()` bytes from `src` into `out` with volatile loads (and the block copy's
/// loads): for memory that may be mapped read-only, which atomic loads may not touch.
///
/// # Safety
///
/// `[src, src + out.len())` must be valid for reads for the whole call and be no part of any
/// Rust object.
#[cfg_attr(
    not(all(target_arch = "aarch64", target_os = "none")),
    allow(dead_code)
)]
pub(crate) unsafe fn copy_from_volatile(src: *const u8, out: &mut [u8]) {
    if out.len() < BLOCK {
        // SAFETY: the caller's contract.
        return unsafe { copy_from_volatile_words(src, out) };
    }
    let (head, body) = split(out.as_ptr() as usize, src as usize, out.len());
    // SAFETY: the caller's contract for `src`; `out` is a slice, valid for writes. The
    // blocks' loads only read (the host tests' stand-in is a plain copy of memory they own).
    unsafe {
        copy_from_volatile_words(src, &mut out[..head]);
        blocks(out[head..].as_mut_ptr(), src.add(head), body);
        copy_from_volatile_words(src.add(head + body), &mut out[head + body..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every offset and length around the word and block boundaries, against a plain copy.
    #[test]
    fn copies_match_a_plain_copy_at_every_alignment() {
        let data: Vec<u8> = (0..320u32).map(|i| (i * 37 + 5) as u8).collect();
        for offset in 0..17 {
            for len in (0..40).chain([63, 64, 65, 127, 128, 129, 150, 200, 250]) {
                let mut words = [0u64; 40];
                let base = words.as_mut_ptr().cast::<u8>();
                // SAFETY: `words` is 320 bytes, offset + len < 320; only these calls touch it.
                unsafe { copy_to(base.add(offset), &data[..len]) };
                let mut back = vec![0u8; len];
                // SAFETY: as above.
                unsafe { copy_from(base.add(offset), &mut back) };
                assert_eq!(back, &data[..len], "offset {offset}, len {len}");
                let mut again = vec![0u8; len];
                // SAFETY: as above.
                unsafe { copy_from_volatile(base.add(offset), &mut again) };
                assert_eq!(again, back, "offset {offset}, len {len}");
                let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
                assert!(bytes[..offset].iter().all(|&b| b == 0));
                assert!(bytes[offset + len..].iter().all(|&b| b == 0));
            }
        }
    }

    /// Between two ranges, at every pair of alignments.
    #[test]
    fn copies_between_ranges_match_a_plain_copy() {
        let data: Vec<u8> = (0..320u32).map(|i| (i * 13 + 1) as u8).collect();
        for from in 0..17 {
            for to in 0..17 {
                for len in [0, 1, 7, 8, 9, 63, 64, 65, 130, 200, 290] {
                    let mut src = [0u64; 40];
                    let mut dst = [0u64; 40];
                    let s = src.as_mut_ptr().cast::<u8>();
                    let d = dst.as_mut_ptr().cast::<u8>();
                    // SAFETY: both arrays are 320 bytes; from/to + len < 320; only these
                    // calls touch them.
                    unsafe {
                        copy_to(s.add(from), &data[..len]);
                        copy_between(d.add(to), s.add(from), len);
                    }
                    let bytes: Vec<u8> = dst.iter().flat_map(|w| w.to_ne_bytes()).collect();
                    assert_eq!(&bytes[to..to + len], &data[..len], "{from} -> {to}, {len}");
                    assert!(bytes[..to].iter().all(|&b| b == 0));
                    assert!(bytes[to + len..].iter().all(|&b| b == 0));
                }
            }
        }
    }
}
