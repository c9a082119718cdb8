//! Where a Linux guest's pieces go in its RAM, by the arm64 boot protocol
//! (Documentation/arch/arm64/booting.rst): the Image at a 2 MiB-aligned base plus its header's
//! `text_offset`, with `image_size` bytes (BSS included) kept free from there; the device tree
//! 8-byte aligned and at most 2 MiB (its address in x0 at entry:
//! [`mica_abi::layout::DomainLayout::linux_entry_regs`]); the initramfs anywhere in RAM that overlaps neither.
//!
//! [`place`] puts the Image at the start of the RAM (the RAM base is 2 MiB aligned) and the
//! device tree and the initramfs at the top of what the domain may load into, the tree in a
//! fixed slot of [`DTB_SLOT`] bytes so its address is known before it is written (the tree
//! names the initramfs' address; the initramfs' place depends only on its size). Everything
//! between the Image and the initramfs is free memory for the kernel.

use mica_abi::layout::PAGE_SIZE;

/// The boot protocol's alignment of the Image's base.
pub const IMAGE_BASE_ALIGN: u64 = 2 << 20;
/// Bytes kept for the device tree (a Mica domain's tree is a few KiB; the protocol's limit is
/// 2 MiB).
pub const DTB_SLOT: u64 = 64 << 10;
/// Free RAM the kernel needs above its own `image_size` to get as far as its first message
/// (page tables, the early allocations): a domain smaller than its Image plus this cannot boot.
pub const MIN_FREE_RAM: u64 = 16 << 20;

/// Guest-physical addresses of a Linux guest's pieces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Where the Image is loaded and vCPU 0 enters.
    pub image: u64,
    /// One past the memory the Image claims (`image + image_size`).
    pub image_end: u64,
    /// The initramfs, `[start, end)`, if there is one.
    pub initrd: Option<(u64, u64)>,
    /// The device tree (x0 at entry).
    pub dtb: u64,
}

/// Why the pieces do not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlaceError {
    /// The RAM base is not 2 MiB aligned or the `text_offset` is not page aligned.
    Misaligned,
    /// The usable RAM is too small: it would need at least `least` bytes (all of it, for the
    /// Image, [`MIN_FREE_RAM`], the initramfs and the device tree's slot).
    TooSmall {
        /// Bytes of usable RAM that would do.
        least: u64,
    },
}

impl core::fmt::Display for PlaceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PlaceError::Misaligned => write!(
                f,
                "the RAM base is not 2 MiB aligned or the Image's text_offset is not page aligned"
            ),
            PlaceError::TooSmall { least } => write!(
                f,
                "the kernel, its initramfs and {} MiB for it to start need at least {} KiB of RAM",
                MIN_FREE_RAM >> 20,
                least.div_ceil(1024)
            ),
        }
    }
}

fn page_up(n: u64) -> Option<u64> {
    n.checked_add(PAGE_SIZE - 1).map(|n| n & !(PAGE_SIZE - 1))
}

/// Places an Image whose header says `text_offset` and `image_size`, an initramfs of
/// `initrd_len` bytes (0: none) and the device tree in `[ram_base, usable_end)`.
pub fn place(
    ram_base: u64,
    usable_end: u64,
    text_offset: u64,
    image_size: u64,
    initrd_len: u64,
) -> Result<Placement, PlaceError> {
    if !ram_base.is_multiple_of(IMAGE_BASE_ALIGN) || !text_offset.is_multiple_of(PAGE_SIZE) {
        return Err(PlaceError::Misaligned);
    }
    let too_big = PlaceError::TooSmall { least: u64::MAX };
    let initrd_pages = page_up(initrd_len).ok_or(too_big)?;
    // Everything the RAM must hold, bottom to top.
    let needed = [
        text_offset,
        image_size,
        MIN_FREE_RAM,
        initrd_pages,
        DTB_SLOT,
    ]
    .iter()
    .try_fold(0u64, |sum, n| sum.checked_add(*n))
    .and_then(page_up)
    .ok_or(too_big)?;
    if usable_end < ram_base || usable_end - ram_base < needed {
        return Err(PlaceError::TooSmall { least: needed });
    }
    let image = ram_base + text_offset;
    let dtb = (usable_end - DTB_SLOT) & !(PAGE_SIZE - 1);
    let initrd = (initrd_len > 0).then(|| {
        let start = dtb - initrd_pages;
        (start, start + initrd_len)
    });
    Ok(Placement {
        image,
        image_end: image + image_size,
        initrd,
        dtb,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: u64 = 0x4000_0000;
    const MIB: u64 = 1 << 20;

    #[test]
    fn the_pieces_sit_apart_in_the_ram() {
        let end = BASE + 256 * MIB - PAGE_SIZE;
        let p = place(BASE, end, 0, 32 * MIB, 3 * MIB + 5).unwrap();
        assert_eq!(p.image, BASE);
        assert_eq!(p.image_end, BASE + 32 * MIB);
        let (start, stop) = p.initrd.unwrap();
        assert_eq!(stop - start, 3 * MIB + 5);
        assert!(start.is_multiple_of(PAGE_SIZE) && start >= p.image_end + MIN_FREE_RAM);
        assert!(stop <= p.dtb && p.dtb + DTB_SLOT <= end && p.dtb.is_multiple_of(8));
    }

    #[test]
    fn text_offset_moves_the_image_and_no_initramfs_is_none() {
        let p = place(BASE, BASE + 64 * MIB, 0x8_0000, 20 * MIB, 0).unwrap();
        assert_eq!(p.image, BASE + 0x8_0000);
        assert_eq!(p.initrd, None);
    }

    #[test]
    fn too_little_ram_says_how_much_would_do() {
        let err = place(BASE, BASE + 40 * MIB, 0, 32 * MIB, 4 * MIB).unwrap_err();
        let PlaceError::TooSmall { least } = err else {
            panic!("{err:?}")
        };
        assert_eq!(least, 32 * MIB + MIN_FREE_RAM + 4 * MIB + DTB_SLOT);
        assert!(place(BASE, BASE + least, 0, 32 * MIB, 4 * MIB).is_ok());
        assert!(place(BASE, BASE + least - PAGE_SIZE, 0, 32 * MIB, 4 * MIB).is_err());
    }

    #[test]
    fn hostile_headers_are_refused_not_wrapped() {
        assert_eq!(
            place(BASE, BASE + MIB, 0, u64::MAX - 10, 0),
            Err(PlaceError::TooSmall { least: u64::MAX })
        );
        assert_eq!(
            place(BASE, BASE + MIB, 3, 0, 0),
            Err(PlaceError::Misaligned)
        );
        assert_eq!(
            place(BASE + 4096, BASE + MIB, 0, 0, 0),
            Err(PlaceError::Misaligned)
        );
        assert!(place(BASE, BASE - 1, 0, 0, 0).is_err());
    }
}
