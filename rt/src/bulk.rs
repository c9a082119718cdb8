//! Bulk copies to and from memory that another agent (a peer domain, a device) may touch at
//! the same time, and that is no Rust object: whole aligned 8-byte words with relaxed atomic
//! accesses (plain loads and stores on aarch64, which cannot tear), single bytes at the ragged
//! ends. A copy a byte at a time cost the block path about eight times the instructions
//! (docs/PERFORMANCE.md, the disk figures); no crate offers a copy with these access rules.

use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

const WORD: usize = 8;

/// Copies `data` to `dst`.
///
/// # Safety
///
/// `[dst, dst + data.len())` must be valid for writes for the whole call and be no part of
/// any Rust object: this domain reaches it only through atomic (or volatile) accesses.
pub(crate) unsafe fn copy_to(dst: *mut u8, data: &[u8]) {
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
pub(crate) unsafe fn copy_from(src: *const u8, out: &mut [u8]) {
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
#[cfg_attr(
    not(all(target_arch = "aarch64", target_os = "none")),
    allow(dead_code)
)]
pub(crate) unsafe fn copy_from_volatile(src: *const u8, out: &mut [u8]) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every offset and length around the word boundaries, against a plain copy.
    #[test]
    fn copies_match_a_plain_copy_at_every_alignment() {
        let data: Vec<u8> = (0..64u32).map(|i| (i * 37 + 5) as u8).collect();
        for offset in 0..9 {
            for len in 0..40 {
                let mut words = [0u64; 8];
                let base = words.as_mut_ptr().cast::<u8>();
                // SAFETY: `words` is 64 bytes, offset + len < 64; only these calls touch it.
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
}
