//! Acting as the boot loader: where the Image, the DTB and a tiny boot shim go in guest RAM.
//!
//! QEMU's `-dtb` is not a faithful channel for an edited device tree: QEMU 7.2's arm boot
//! code (`arm_load_dtb`) deletes every `memory` / `memory@...` node of the file it is given
//! and adds its own for `-m`. So when a run asks for an edited tree, [`crate::qemu`] boots
//! without `-kernel`/`-dtb` and does the boot loader's job itself with QEMU's generic
//! loader (`-device loader`): the Image goes raw at RAM base + its `text_offset`, the DTB
//! goes raw at [`DTB_ADDR`], and CPU 0 starts (at EL2, as the machine has no EL3) in a
//! [`boot_shim`] that sets up the registers the arm64 boot protocol requires and branches
//! to the Image. The secondary CPUs stay powered off until the hypervisor starts them with
//! PSCI `CPU_ON`, which QEMU implements itself (conduit `smc`).
//!
//! Nothing may be put in the first MiB of RAM: without `-kernel`, QEMU places its own DTB
//! there for firmware, and QEMU refuses to start when two ROM blobs overlap.

use crate::image::{ImageError, ImageHeader};

/// Where RAM starts on QEMU's `virt` machine.
pub const RAM_BASE: u64 = 0x4000_0000;
/// How much at the start of RAM QEMU keeps for its own firmware DTB when there is no `-kernel`.
pub const QEMU_DTB_RESERVED: u64 = 0x10_0000;
/// Where the boot shim goes: just above QEMU's own DTB.
pub const SHIM_ADDR: u64 = RAM_BASE + QEMU_DTB_RESERVED;
/// Where the (edited) DTB goes: RAM base + 64 MiB.
pub const DTB_ADDR: u64 = RAM_BASE + 64 * MIB;
/// The least RAM this mode accepts, so that the DTB at [`DTB_ADDR`] has room above it.
pub const MIN_MEMORY: u64 = 128 * MIB;
/// The size of the boot shim: six instructions and two 64-bit literals.
pub const SHIM_LEN: usize = 40;

const MIB: u64 = 1024 * 1024;

/// Why the boot-loader layout cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// `-m` is not a size we can read.
    #[error("cannot read the memory size `{0}` (expected e.g. 256M, 1G or a number of MiB)")]
    BadMemorySize(String),
    /// There is too little RAM for the DTB at RAM base + 64 MiB.
    #[error("memory size {0} is too small for an edited device tree: the runner loads the DTB at {DTB_ADDR:#x} (RAM base + 64 MiB) and needs at least 128M")]
    MemoryTooSmall(String),
    /// The file is not an arm64 Image.
    #[error("an edited device tree needs an arm64 Image (the runner loads it itself): {0}")]
    NotAnImage(#[from] ImageError),
    /// The Image would overlap the shim, QEMU's DTB or the edited DTB.
    #[error("the Image (text_offset {text_offset:#x}, {size:#x} bytes) does not fit between the boot shim at {SHIM_ADDR:#x} and the DTB at {DTB_ADDR:#x}")]
    ImageDoesNotFit {
        /// The header's `text_offset`.
        text_offset: u64,
        /// The larger of the file length and the header's `image_size`.
        size: u64,
    },
    /// The DTB does not fit above [`DTB_ADDR`].
    #[error("the {size:#x}-byte DTB does not fit in RAM at {DTB_ADDR:#x}")]
    DtbDoesNotFit {
        /// The DTB's length.
        size: u64,
    },
}

/// Parses a QEMU `-m` value (`[size=]N[suffix][,...]`, no suffix meaning MiB) into bytes.
pub fn parse_memory_size(spec: &str) -> Option<u64> {
    let first = spec.split(',').next()?.trim();
    let value = first.strip_prefix("size=").unwrap_or(first).trim();
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, suffix) = value.split_at(split);
    let unit: u64 = match suffix.to_ascii_uppercase().as_str() {
        "" | "M" | "MB" | "MIB" => MIB,
        "B" => 1,
        "K" | "KB" | "KIB" => 1024,
        "G" | "GB" | "GIB" => 1024 * MIB,
        "T" | "TB" | "TIB" => 1024 * 1024 * MIB,
        _ => return None,
    };
    if number.is_empty() {
        return None;
    }
    if number.contains('.') {
        let n: f64 = number.parse().ok()?;
        let bytes = n * unit as f64;
        (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
    } else {
        number.parse::<u64>().ok()?.checked_mul(unit)
    }
}

/// Checks that `-m` gives this mode enough RAM; returns the size in bytes.
pub fn check_memory(spec: &str) -> Result<u64, LayoutError> {
    let bytes =
        parse_memory_size(spec).ok_or_else(|| LayoutError::BadMemorySize(spec.to_owned()))?;
    if bytes < MIN_MEMORY {
        return Err(LayoutError::MemoryTooSmall(spec.to_owned()));
    }
    Ok(bytes)
}

/// Where the Image goes: RAM base + `text_offset` (where it is linked to run), after checking
/// that it lies above the shim and below the DTB.
pub fn image_address(header: &ImageHeader, file_len: u64) -> Result<u64, LayoutError> {
    let size = header.image_size.max(file_len);
    let start = RAM_BASE.checked_add(header.text_offset);
    let end = start.and_then(|s| s.checked_add(size));
    match (start, end) {
        (Some(start), Some(end)) if start >= SHIM_ADDR + SHIM_LEN as u64 && end <= DTB_ADDR => {
            Ok(start)
        }
        _ => Err(LayoutError::ImageDoesNotFit {
            text_offset: header.text_offset,
            size,
        }),
    }
}

/// Checks that a DTB of `len` bytes fits in `memory` bytes of RAM at [`DTB_ADDR`].
pub fn check_dtb_fits(len: usize, memory: u64) -> Result<(), LayoutError> {
    let size = len as u64;
    if DTB_ADDR - RAM_BASE + size > memory {
        return Err(LayoutError::DtbDoesNotFit { size });
    }
    Ok(())
}

/// `LDR Xt, <pc + byte_offset>` (literal, 64-bit); `byte_offset` must be a multiple of 4
/// within +-1 MiB.
pub const fn ldr_literal_x(rt: u32, byte_offset: i32) -> u32 {
    let imm19 = ((byte_offset / 4) as u32) & 0x7_ffff;
    0x5800_0000 | (imm19 << 5) | (rt & 31)
}

/// `MOV Xd, XZR` (the alias of `ORR Xd, XZR, XZR`).
pub const fn mov_x_zero(rd: u32) -> u32 {
    0xAA1F_03E0 | (rd & 31)
}

/// `BR Xn`.
pub const fn br(rn: u32) -> u32 {
    0xD61F_0000 | ((rn & 31) << 5)
}

/// The boot shim CPU 0 starts in: what a boot loader does per the arm64 boot protocol.
///
/// ```text
///  0: ldr x0, 24     // x0 = physical address of the DTB
///  4: ldr x4, 32     // x4 = the Image's first byte
///  8: mov x1, xzr    // x1 = x2 = x3 = 0 (reserved)
/// 12: mov x2, xzr
/// 16: mov x3, xzr
/// 20: br  x4
/// 24: .quad dtb
/// 32: .quad entry
/// ```
///
/// The literals are 8-byte aligned: with the MMU off every access is Device memory, where
/// an unaligned load faults.
pub fn boot_shim(dtb: u64, entry: u64) -> [u8; SHIM_LEN] {
    let code = [
        ldr_literal_x(0, 24),
        ldr_literal_x(4, 32 - 4),
        mov_x_zero(1),
        mov_x_zero(2),
        mov_x_zero(3),
        br(4),
    ];
    let mut out = [0u8; SHIM_LEN];
    for (slot, word) in out.chunks_exact_mut(4).zip(code) {
        slot.copy_from_slice(&word.to_le_bytes());
    }
    out[24..32].copy_from_slice(&dtb.to_le_bytes());
    out[32..40].copy_from_slice(&entry.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instruction_encodings_match_hand_computed_words() {
        // ldr x0, #24: imm19 = 6 -> 0x58000000 | 6 << 5 | 0
        assert_eq!(ldr_literal_x(0, 24), 0x5800_00C0);
        // ldr x4, #28: imm19 = 7 -> 0x58000000 | 7 << 5 | 4
        assert_eq!(ldr_literal_x(4, 28), 0x5800_00E4);
        // ldr x1, #-4: imm19 = 0x7ffff
        assert_eq!(ldr_literal_x(1, -4), 0x58FF_FFE1);
        assert_eq!(mov_x_zero(1), 0xAA1F_03E1);
        assert_eq!(mov_x_zero(3), 0xAA1F_03E3);
        assert_eq!(br(4), 0xD61F_0080);
        assert_eq!(br(30), 0xD61F_03C0, "ret-like br x30");
    }

    #[test]
    fn shim_bytes_are_what_an_assembler_produces() {
        // llvm-mc --triple=aarch64 -filetype=obj of the listing in the doc comment,
        // then llvm-objdump -d: the same bytes.
        let shim = boot_shim(0x4400_0000, 0x4020_0000);
        let expected: [u8; SHIM_LEN] = [
            0xc0, 0x00, 0x00, 0x58, // ldr x0, 0x18
            0xe4, 0x00, 0x00, 0x58, // ldr x4, 0x20
            0xe1, 0x03, 0x1f, 0xaa, // mov x1, xzr
            0xe2, 0x03, 0x1f, 0xaa, // mov x2, xzr
            0xe3, 0x03, 0x1f, 0xaa, // mov x3, xzr
            0x80, 0x00, 0x1f, 0xd6, // br x4
            0x00, 0x00, 0x00, 0x44, 0x00, 0x00, 0x00, 0x00, // .quad 0x44000000
            0x00, 0x00, 0x20, 0x40, 0x00, 0x00, 0x00, 0x00, // .quad 0x40200000
        ];
        assert_eq!(shim, expected);
    }

    #[test]
    fn memory_sizes_as_qemu_spells_them() {
        assert_eq!(parse_memory_size("256M"), Some(256 * MIB));
        assert_eq!(parse_memory_size("1G"), Some(1024 * MIB));
        assert_eq!(parse_memory_size("1g"), Some(1024 * MIB));
        assert_eq!(parse_memory_size("512"), Some(512 * MIB));
        assert_eq!(parse_memory_size("1.5G"), Some(1536 * MIB));
        assert_eq!(
            parse_memory_size("size=2G,slots=2,maxmem=4G"),
            Some(2048 * MIB)
        );
        assert_eq!(parse_memory_size("131072K"), Some(128 * MIB));
        assert_eq!(parse_memory_size("lots"), None);
        assert_eq!(parse_memory_size("12Q"), None);
        assert_eq!(parse_memory_size(""), None);
    }

    #[test]
    fn small_memory_is_refused() {
        assert_eq!(check_memory("128M").unwrap(), 128 * MIB);
        let err = check_memory("64M").unwrap_err();
        assert!(matches!(err, LayoutError::MemoryTooSmall(_)));
        assert!(err.to_string().contains("at least 128M"), "{err}");
        assert!(matches!(
            check_memory("many"),
            Err(LayoutError::BadMemorySize(_))
        ));
    }

    #[test]
    fn image_goes_at_ram_base_plus_text_offset() {
        let header = ImageHeader {
            text_offset: 0x20_0000,
            image_size: 0xd_3000,
            flags: 2,
        };
        assert_eq!(image_address(&header, 0x1_1180).unwrap(), 0x4020_0000);
        let low = ImageHeader {
            text_offset: 0,
            ..header
        };
        assert!(matches!(
            image_address(&low, 0x1000),
            Err(LayoutError::ImageDoesNotFit { .. })
        ));
        let huge = ImageHeader {
            image_size: 64 * MIB,
            ..header
        };
        assert!(image_address(&huge, 0x1000).is_err(), "would cover the DTB");
        let wraps = ImageHeader {
            text_offset: u64::MAX - 4,
            ..header
        };
        assert!(image_address(&wraps, 0x1000).is_err());
    }

    #[test]
    fn dtb_must_fit_in_ram() {
        assert!(check_dtb_fits(0x10_0000, 128 * MIB).is_ok());
        assert!(check_dtb_fits(64 * MIB as usize, 128 * MIB).is_ok());
        assert!(check_dtb_fits(64 * MIB as usize + 1, 128 * MIB).is_err());
    }
}
