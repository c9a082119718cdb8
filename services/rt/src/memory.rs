//! The domain's view of its RAM: where the image ends, the free RAM after it, and probing
//! addresses outside it.
//!
//! Everything Rust owns (code, data, BSS with the boot stack, the heap and any `smp`
//! stacks) lies in `[RAM base, image end)` (`mica-domain.ld`); the rest of RAM up to
//! `ram_base + ram_size` belongs to no Rust object, except what the kernel placed there: the
//! boot-info page (just past `ram_size`) and any shared region the domain owns, which the
//! boot-info page lists. The runtime hands out the largest part of the rest once as a plain
//! slice ([`take_free_ram`]).

use crate::bootinfo::{bootinfo, largest_free, PAGE_SIZE};
use crate::entry::boot_info;
use crate::ring::SharedRegion;
use core::ops::Range;
use core::sync::atomic::{AtomicBool, Ordering};

extern "C" {
    /// First byte after the image, BSS included (4 KiB aligned; from `mica-domain.ld`).
    static __mica_rt_image_end: u8;
}

/// First IPA after the loaded image and its BSS (page aligned).
pub fn image_end() -> u64 {
    core::ptr::addr_of!(__mica_rt_image_end) as u64
}

/// The largest part of the RAM beyond the image, `[image_end, ram_base + ram_size)`, that
/// holds neither the boot-info page nor a shared region the boot-info page lists; 8-byte
/// aligned; empty before `main` runs or if the image does not fit the RAM the kernel
/// reported.
pub fn free_ram() -> Range<u64> {
    let info = boot_info();
    let start = image_end();
    let end = info.ram_end() & !7;
    if info.ram_size == 0 || start < info.ram_base || start > end {
        return start..start;
    }
    let mut reserved = [const { 0..0 }; mica_abi::bootinfo::MAX_REGIONS + 1];
    reserved[0] = info.boot_page..info.boot_page.saturating_add(PAGE_SIZE);
    if let Some(page) = bootinfo() {
        for (r, entry) in reserved[1..].iter_mut().zip(page.regions()) {
            *r = entry.ipa..entry.ipa.saturating_add(entry.size);
        }
    }
    largest_free(start, end, &reserved)
}

static FREE_RAM_TAKEN: AtomicBool = AtomicBool::new(false);

/// The RAM beyond the image as words, handed out once (`None` afterwards, or before `main`).
pub fn take_free_ram() -> Option<&'static mut [u64]> {
    let range = free_ram();
    if range.is_empty() || FREE_RAM_TAKEN.swap(true, Ordering::AcqRel) {
        return None;
    }
    let words = usize::try_from((range.end - range.start) / 8).ok()?;
    // SAFETY: the kernel maps the domain's whole RAM `[ram_base, ram_base + ram_size)`
    // readable and writable (docs/domains.md), and `free_ram` lies inside it, 8-byte
    // aligned. No Rust object lives there (the linker script ends every section before
    // `__mica_rt_image_end`), it overlaps neither the boot-info page nor any shared region
    // (which a peer may write or the owner may revoke), and the flag above hands the range
    // out at most once, so this is the only reference to it for the rest of the program.
    Some(unsafe { core::slice::from_raw_parts_mut(range.start as *mut u64, words) })
}

/// Reads the 8-byte word at `ipa`, which must lie outside the domain's RAM (`None` if it is
/// inside, misaligned, or RAM is not known yet). For tests of isolation: when the kernel
/// has not mapped `ipa` here the read is a stage-2 fault and the domain is stopped, so a
/// return means the address *was* reachable.
pub fn probe_read(ipa: u64) -> Option<u64> {
    let info = boot_info();
    if info.ram_size == 0
        || info.in_ram(ipa)
        || !ipa.is_multiple_of(8)
        || info.in_ram(ipa.saturating_add(7))
    {
        return None;
    }
    let value: u64;
    // SAFETY: `ipa` is outside the domain's RAM, so it is not memory of any Rust object and
    // the load cannot race with or alias Rust data. With the MMU off the IPA is used as is;
    // if nothing is mapped there the kernel stops the domain and the load never completes.
    unsafe {
        core::arch::asm!(
            "ldr {value}, [{addr}]",
            addr = in(reg) ipa,
            value = out(reg) value,
            options(nostack, readonly, preserves_flags),
        );
    }
    Some(value)
}

/// The shared region `name` listed in the boot-info page, as memory for rings or plain
/// atomic loads and stores (`mica_rt::ring::RingMemory`); `None` if it is not listed, is
/// empty or misaligned, wraps, or overlaps the image or the boot-info page.
///
/// A peer's region lies outside the domain's RAM; an owner's lies in its RAM, where
/// [`take_free_ram`] never hands it out. If the owner revokes the peer's copy, the peer's next
/// access faults and the kernel stops the peer (docs/domains.md).
pub fn shared_region(name: &str) -> Option<SharedRegion> {
    let region = bootinfo()?.shared(name)?;
    let range = region.range();
    let info = boot_info();
    let size = usize::try_from(region.size).ok()?;
    let overlaps = |r: &Range<u64>| range.start < r.end && r.start < range.end;
    let image = info.ram_base..image_end();
    let page = info.boot_page..info.boot_page.saturating_add(PAGE_SIZE);
    if size == 0
        || !region.ipa.is_multiple_of(8)
        || region.ipa.checked_add(region.size).is_none()
        || overlaps(&image)
        || overlaps(&page)
    {
        return None;
    }
    // SAFETY: the kernel maps the region readable (and writable if its rights say so) at
    // `[ipa, ipa + size)` for as long as the capability lasts (revoking it makes accesses
    // fault, which stops the domain: no access ever sees other memory). The checks above
    // keep it off the image (every Rust object), the boot-info page and, as `free_ram`
    // excludes listed regions, the free RAM; so no Rust reference covers it, and
    // `SharedRegion` touches it only with atomic accesses, which is also how the peer's
    // concurrent writes stay free of data races. `ipa` is 8-byte aligned.
    Some(unsafe { SharedRegion::new(region.ipa as *mut u8, size) })
}
