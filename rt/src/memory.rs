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

/// Memory mapped into this domain outside its RAM for as long as the value lives: frames of
/// a Memory capability the domain holds (a control domain's pool, for copying an image into
/// a new domain's RAM or scrubbing it, or for DMA buffers). [`map_window`] makes one; dropping
/// it unmaps it.
///
/// Another domain or a device may use the same frames at the same time (that is the point),
/// so every access is volatile or atomic, a byte or an aligned 8-byte word at a time
/// (`crate::bulk`), and nothing hands out a reference into the window.
#[derive(Debug)]
pub struct Window {
    ipa: u64,
    len: usize,
    /// Made by [`map_window`] (unmapped when dropped), not [`ram_window`].
    mapped: bool,
}

/// Maps `frames` of the Memory capability `memory` at `ipa` of this domain with `perms`.
/// `ipa` must be page aligned and outside the domain's RAM; the kernel refuses a range that
/// overlaps anything already mapped there (`SlotOccupied`), so the window is the only way to
/// these addresses.
pub fn map_window(
    memory: crate::Slot,
    ipa: u64,
    frames: crate::FrameRange,
    perms: crate::Rights,
) -> Result<Window, crate::Status> {
    let info = boot_info();
    let len = frames
        .count()
        .checked_mul(PAGE_SIZE)
        .ok_or(crate::Status::InvalidArgument)?;
    let end = ipa.checked_add(len).ok_or(crate::Status::InvalidArgument)?;
    let ram = info.ram_base..info.boot_page.saturating_add(PAGE_SIZE);
    if !ipa.is_multiple_of(PAGE_SIZE) || (ipa < ram.end && ram.start < end) {
        return Err(crate::Status::InvalidArgument);
    }
    let len = usize::try_from(len).map_err(|_| crate::Status::InvalidArgument)?;
    crate::hypercall::mem_map(crate::Slot::SELF_DOMAIN, memory, ipa, frames, perms)?;
    Ok(Window {
        ipa,
        len,
        mapped: true,
    })
}

/// The domain's free RAM ([`take_free_ram`]) as a window, from its first page boundary: for
/// buffers a device reaches by guest-physical address (the virtio devices the kernel gives a
/// guest read and write its own RAM, so the address is the IPA). `None` once the free RAM was
/// taken, or if no whole page is free.
pub fn ram_window() -> Option<Window> {
    let words = take_free_ram()?;
    let start = words.as_ptr() as u64;
    let end = start + (words.len() as u64) * 8;
    // The reference is dropped here: from now on the RAM is reached only through the
    // window's volatile and atomic accesses, as a device may write it at any time.
    let ipa = start.next_multiple_of(PAGE_SIZE);
    let len = (end.saturating_sub(ipa) / PAGE_SIZE) * PAGE_SIZE;
    (len > 0).then(|| Window {
        ipa,
        len: len as usize,
        mapped: false,
    })
}

impl Window {
    /// Where it is mapped.
    pub fn ipa(&self) -> u64 {
        self.ipa
    }

    /// Its size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty (never: a window has at least one page).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn check(&self, offset: usize, len: usize) -> Option<*mut u8> {
        let end = offset.checked_add(len)?;
        (end <= self.len).then_some((self.ipa as usize + offset) as *mut u8)
    }

    /// Copies `bytes` to `offset`; false (nothing written) if they do not fit.
    pub fn write(&mut self, offset: usize, bytes: &[u8]) -> bool {
        let Some(at) = self.check(offset, bytes.len()) else {
            return false;
        };
        // SAFETY: `check` keeps the bytes inside the window: mapped writable by the kernel
        // (as `map_window` asked) at an IPA outside RAM, or the free RAM `ram_window` took
        // once from `take_free_ram` (mapped read-write, past every Rust object); either way no
        // Rust object lives there and the window is the only path to it. Atomic word and byte
        // stores cannot be torn by what another agent writes.
        unsafe { crate::bulk::copy_to(at, bytes) };
        true
    }

    /// Writes `len` zero bytes from `offset`; false (nothing written) if out of range.
    pub fn zero(&mut self, offset: usize, len: usize) -> bool {
        let Some(at) = self.check(offset, len) else {
            return false;
        };
        let mut i = 0;
        while i < len {
            let p = at.wrapping_add(i);
            if (p as usize).is_multiple_of(8) && len - i >= 8 {
                // SAFETY: as in `write`; `p` is 8-byte aligned with 8 bytes left in range.
                unsafe { core::ptr::write_volatile(p as *mut u64, 0) };
                i += 8;
            } else {
                // SAFETY: as in `write`.
                unsafe { core::ptr::write_volatile(p, 0) };
                i += 1;
            }
        }
        true
    }

    /// Copies from `offset` into `out`; false (nothing read) if out of range.
    pub fn read(&self, offset: usize, out: &mut [u8]) -> bool {
        let Some(at) = self.check(offset, out.len()) else {
            return false;
        };
        // SAFETY: as in `write`, for a mapping that may be read-only (so volatile loads).
        unsafe { crate::bulk::copy_from_volatile(at, out) };
        true
    }

    /// The address of byte `offset`, for a device (DMA) or another domain to use: never
    /// dereferenced by safe code. `None` if out of range.
    pub fn address_of(&self, offset: usize) -> Option<u64> {
        (offset < self.len).then_some(self.ipa + offset as u64)
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        if !self.mapped {
            return;
        }
        let _ = crate::hypercall::mem_unmap(
            crate::Slot::SELF_DOMAIN,
            self.ipa,
            self.len as u64 / PAGE_SIZE,
        );
    }
}

/// The system image, as the kernel maps it read-only into the control domain
/// (`system-image` in its boot-info page, at `mica_abi::sysimage::SYSTEM_IMAGE_IPA`); `None`
/// in any other domain. Parse it with `mica_abi::sysimage::SystemImage::parse`.
pub fn system_image() -> Option<&'static [u8]> {
    let r = bootinfo()?.shared("system-image")?;
    let size = usize::try_from(r.size).ok()?;
    let info = boot_info();
    if r.ipa != mica_abi::sysimage::SYSTEM_IMAGE_IPA
        || size == 0
        || r.rights != crate::Rights::READ
        || info.in_ram(r.ipa)
        || info.in_ram(r.ipa.saturating_add(r.size - 1))
    {
        return None;
    }
    // SAFETY: the kernel maps the system image here, readable, for the control domain's
    // lifetime (it never unmaps it: the capability is the kernel's grant, and this domain's
    // code never revokes or deletes it), outside the domain's RAM, so no Rust object
    // overlaps it. Nobody writes it: it is the boot image the kernel only reads, and every
    // mapping of it is read-only. So a shared slice of it is sound for 'static.
    Some(unsafe { core::slice::from_raw_parts(r.ipa as *const u8, size) })
}

/// One chunk of this domain's RAM: its IPA, its size in bytes and its physical address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RamChunk {
    /// Where the domain sees it.
    pub ipa: u64,
    /// Bytes.
    pub size: u64,
    /// Where a device sees it.
    pub physical: u64,
}

/// This domain's RAM chunks, in IPA order: for a driver whose device reaches memory by
/// physical address (DMA, with no IOMMU in between). The kernel gives a domain its RAM as
/// Memory capabilities in slots 0, 1, ... (at most `mica_abi::layout::MAX_RAM_CHUNKS`),
/// mapped one after the other from [`mica_abi::sysimage::DOMAIN_RAM_BASE`]; `cap_identify`
/// tells each one's frames. The list ends at the first slot that holds no Memory capability,
/// and where the RAM the kernel reported ends: a Memory capability after the chunks (a shared
/// region's, derived into the next free slot) is no RAM chunk.
pub fn ram_chunks() -> impl Iterator<Item = RamChunk> {
    let end = boot_info().ram_end();
    let mut ipa = Some(mica_abi::sysimage::DOMAIN_RAM_BASE);
    (0..mica_abi::layout::MAX_RAM_CHUNKS as u16).map_while(move |slot| {
        if ipa? >= end {
            return None;
        }
        let info = crate::hypercall::cap_identify(crate::Slot(slot)).ok()?;
        let frames = info
            .frames
            .filter(|_| info.object_type == mica_abi::ObjectType::Memory)?;
        let size = frames.count().checked_mul(PAGE_SIZE)?;
        let here = ipa?;
        ipa = here.checked_add(size);
        Some(RamChunk {
            ipa: here,
            size,
            physical: frames.first().checked_mul(PAGE_SIZE)?,
        })
    })
}

/// The physical address of this domain's RAM at `ipa .. ipa + len`, if those bytes lie in one
/// of its RAM chunks ([`ram_chunks`]).
pub fn physical(ipa: u64, len: u64) -> Option<u64> {
    ram_chunks().find_map(|c| {
        let offset = ipa.checked_sub(c.ipa).filter(|o| *o < c.size)?;
        let end = offset.checked_add(len)?;
        (end <= c.size).then(|| c.physical + offset)
    })
}
