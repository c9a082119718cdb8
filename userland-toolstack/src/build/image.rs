//! `mica image`: turn the hypervisor's bare-metal ELF into a flat arm64 `Image`.
//!
//! QEMU's `-kernel` and U-Boot's `booti` both load an arm64 Linux-boot-protocol `Image`: a
//! flat copy of memory starting with a 64-byte header that says where it wants to sit
//! (`text_offset` above a 2 MiB-aligned base) and how much memory it needs (`image_size`,
//! which covers the BSS the file leaves out). The hypervisor is linked as an ELF with that
//! header at its lowest address, so converting it is a matter of laying every `PT_LOAD`
//! segment's file bytes at its physical offset and then checking that the header really is
//! there. The ELF64 parsing ([`parse_elf`]) is done by hand: we need the file header and
//! the program headers and nothing else, and doing it here gives errors that say what is
//! wrong. `mica build` reads domain ELFs with the same parser.

use std::path::{Path, PathBuf};

/// Offset of the `ARM\x64` magic in the arm64 Image header.
pub const MAGIC_OFFSET: usize = 56;
/// The arm64 Image magic number, `ARM\x64`.
pub const MAGIC: [u8; 4] = *b"ARM\x64";
/// Size of the arm64 Image header.
pub const HEADER_LEN: usize = 64;
/// The Linux arm64 boot protocol places the image `text_offset` above a base aligned to this.
pub const BASE_ALIGN: u64 = 2 * 1024 * 1024;
/// The largest image we are willing to lay out; anything bigger is a linking mistake.
pub const MAX_IMAGE_LEN: u64 = 256 * 1024 * 1024;

const ELF_MAGIC: [u8; 4] = *b"\x7fELF";
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const EM_AARCH64: u16 = 183;
const PT_LOAD: u32 = 1;
const ELF64_HEADER_LEN: usize = 64;
const ELF64_PHDR_LEN: usize = 56;

/// Why an ELF could not be turned into an arm64 Image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The input or output file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The input does not start with the ELF magic.
    #[error("not an ELF file (no \\x7fELF magic)")]
    NotElf,
    /// The ELF is not 64-bit little-endian.
    #[error("not a 64-bit little-endian ELF (class {class}, data encoding {data})")]
    NotElf64Le {
        /// `e_ident[EI_CLASS]`.
        class: u8,
        /// `e_ident[EI_DATA]`.
        data: u8,
    },
    /// The ELF is for another machine.
    #[error("ELF machine is {0}, not aarch64 (183)")]
    NotAarch64(u16),
    /// A header or table points outside the file.
    #[error("truncated ELF: {what} lies outside the {len}-byte file")]
    Truncated {
        /// Which structure.
        what: String,
        /// The file's length.
        len: usize,
    },
    /// The program header entries have an unexpected size.
    #[error("ELF program header entries are {0} bytes, expected 56")]
    BadPhentsize(u16),
    /// No `PT_LOAD` segment carries file bytes.
    #[error("the ELF has no PT_LOAD segment with file contents")]
    NoLoadSegments,
    /// Two segments want the same bytes of the image.
    #[error(
        "PT_LOAD segments overlap: physical {first_start:#x}..{first_end:#x} and {second_start:#x}..{second_end:#x}"
    )]
    Overlap {
        /// Start of the earlier segment.
        first_start: u64,
        /// End of the earlier segment's file bytes.
        first_end: u64,
        /// Start of the later segment.
        second_start: u64,
        /// End of the later segment's file bytes.
        second_end: u64,
    },
    /// The segments span an absurd range.
    #[error("the image would be {0:#x} bytes long (over 256 MiB): are the segments' physical addresses right?")]
    TooLarge(u64),
    /// The entry point is not at the start of the image.
    #[error("ELF entry point {entry:#x} is at image offset {offset:#x}; the arm64 boot protocol starts execution at offset 0")]
    EntryNotAtStart {
        /// `e_entry`.
        entry: u64,
        /// Where that lands in the image.
        offset: u64,
    },
    /// The image is smaller than its own header.
    #[error("not an arm64 Image: {0} bytes is shorter than the 64-byte header")]
    TooShortForHeader(usize),
    /// The magic is missing.
    #[error("not an arm64 Image: no ARM\\x64 magic at offset 56 — was the ELF linked with the Mica boot header?")]
    NoMagic,
    /// `image_size` does not cover the file.
    #[error("arm64 Image header says image_size = {image_size:#x}, smaller than the {file_len:#x}-byte file: the header's image_size must cover the file and the BSS")]
    ImageSizeTooSmall {
        /// The header's `image_size`.
        image_size: u64,
        /// The file length.
        file_len: u64,
    },
    /// `text_offset` disagrees with where the ELF is linked.
    #[error("the ELF is linked at {lowest:#x} but the header's text_offset {text_offset:#x} makes a boot loader place it at a 2 MiB-aligned base + {text_offset:#x}: link it at such an address or fix text_offset")]
    TextOffsetMismatch {
        /// The lowest `p_paddr`.
        lowest: u64,
        /// The header's `text_offset`.
        text_offset: u64,
    },
}

/// The fields of an arm64 Image header that a boot loader uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageHeader {
    /// Where above a 2 MiB-aligned base the image must be placed.
    pub text_offset: u64,
    /// Bytes of memory the image needs from its start, BSS included.
    pub image_size: u64,
    /// The header's flags (endianness, page size, placement).
    pub flags: u64,
}

/// One `PT_LOAD` program header, as far as the layouts care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadSegment {
    /// `p_paddr`: where the segment's bytes go in (guest-)physical memory.
    pub paddr: u64,
    /// `p_vaddr`.
    pub vaddr: u64,
    /// `p_memsz`: bytes in memory (the rest after `filesz` is zero).
    pub memsz: u64,
    /// `p_offset`: where the file bytes start in the ELF.
    pub offset: u64,
    /// `p_filesz`: bytes present in the file.
    pub filesz: u64,
}

/// The parts of an aarch64 ELF64 executable that `mica image` and `mica build` use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Elf {
    /// `e_type` ([`ET_EXEC`] for a statically linked executable).
    pub elf_type: u16,
    /// `e_entry`.
    pub entry: u64,
    /// Every `PT_LOAD` segment, in program-header order; the file bytes of each are
    /// bounds-checked.
    pub loads: Vec<LoadSegment>,
}

/// `e_type` of an executable file.
pub const ET_EXEC: u16 = 2;

fn read_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    let mut w = [0; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    let mut w = [0; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Bounds-checks `start..start+len` against `total`, naming `what` on failure.
fn check_range(start: u64, len: u64, total: usize, what: &str) -> Result<(), ImageError> {
    match start.checked_add(len) {
        Some(end) if end <= total as u64 => Ok(()),
        _ => Err(ImageError::Truncated {
            what: what.to_owned(),
            len: total,
        }),
    }
}

/// Lays out an aarch64 ELF's `PT_LOAD` segments as a flat arm64 Image and checks its header.
///
/// Each segment's file bytes go at `p_paddr - lowest p_paddr`; gaps are zero; segments
/// with no file bytes (BSS) add nothing, since the header's `image_size` covers them.
pub fn elf_to_image(elf: &[u8]) -> Result<Vec<u8>, ImageError> {
    let parsed = parse_elf(elf)?;
    let entry = parsed.entry;
    let mut segments: Vec<LoadSegment> =
        parsed.loads.into_iter().filter(|s| s.filesz > 0).collect();
    segments.sort_by_key(|s| s.paddr);
    let base = segments.first().ok_or(ImageError::NoLoadSegments)?.paddr;

    let mut end = 0u64;
    for pair in segments.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if a.paddr + a.filesz > b.paddr {
            return Err(ImageError::Overlap {
                first_start: a.paddr,
                first_end: a.paddr + a.filesz,
                second_start: b.paddr,
                second_end: b.paddr + b.filesz,
            });
        }
    }
    for s in &segments {
        let seg_end = s
            .paddr
            .checked_add(s.filesz)
            .ok_or(ImageError::TooLarge(u64::MAX))?;
        end = end.max(seg_end - base);
    }
    if end > MAX_IMAGE_LEN {
        return Err(ImageError::TooLarge(end));
    }

    // The boot protocol jumps to the first byte of the image.
    if entry != 0 {
        if let Some(s) = segments
            .iter()
            .find(|s| entry >= s.vaddr && entry < s.vaddr + s.memsz.max(s.filesz))
        {
            let offset = s.paddr + (entry - s.vaddr) - base;
            if offset != 0 {
                return Err(ImageError::EntryNotAtStart { entry, offset });
            }
        }
    }

    let mut image = vec![0u8; end as usize];
    for s in &segments {
        let dst = (s.paddr - base) as usize;
        let src = s.offset as usize;
        image[dst..dst + s.filesz as usize].copy_from_slice(&elf[src..src + s.filesz as usize]);
    }

    let header = check_image_header(&image)?;
    if base.wrapping_sub(header.text_offset) % BASE_ALIGN != 0 {
        return Err(ImageError::TextOffsetMismatch {
            lowest: base,
            text_offset: header.text_offset,
        });
    }
    Ok(image)
}

/// Parses an aarch64 ELF64 little-endian file: its type, entry point and `PT_LOAD`
/// segments, checking that every header and every segment's file bytes lie inside `elf`.
pub fn parse_elf(elf: &[u8]) -> Result<Elf, ImageError> {
    if elf.len() < 4 || elf[..4] != ELF_MAGIC {
        return Err(ImageError::NotElf);
    }
    if elf.len() < ELF64_HEADER_LEN {
        return Err(ImageError::Truncated {
            what: "the ELF header".to_owned(),
            len: elf.len(),
        });
    }
    if elf[4] != ELFCLASS64 || elf[5] != ELFDATA2LSB {
        return Err(ImageError::NotElf64Le {
            class: elf[4],
            data: elf[5],
        });
    }
    let machine = read_u16(elf, 18);
    if machine != EM_AARCH64 {
        return Err(ImageError::NotAarch64(machine));
    }
    let elf_type = read_u16(elf, 16);
    let entry = read_u64(elf, 24);
    let phoff = read_u64(elf, 32);
    let phentsize = read_u16(elf, 54);
    let phnum = read_u16(elf, 56);
    if phnum > 0 && usize::from(phentsize) != ELF64_PHDR_LEN {
        return Err(ImageError::BadPhentsize(phentsize));
    }
    check_range(
        phoff,
        u64::from(phnum) * ELF64_PHDR_LEN as u64,
        elf.len(),
        "the program header table",
    )?;

    let mut loads = Vec::new();
    for i in 0..usize::from(phnum) {
        let at = phoff as usize + i * ELF64_PHDR_LEN;
        if read_u32(elf, at) != PT_LOAD {
            continue;
        }
        let seg = LoadSegment {
            offset: read_u64(elf, at + 8),
            vaddr: read_u64(elf, at + 16),
            paddr: read_u64(elf, at + 24),
            filesz: read_u64(elf, at + 32),
            memsz: read_u64(elf, at + 40),
        };
        if seg.filesz > 0 {
            check_range(
                seg.offset,
                seg.filesz,
                elf.len(),
                &format!("PT_LOAD segment {i}'s file bytes"),
            )?;
        }
        loads.push(seg);
    }
    Ok(Elf {
        elf_type,
        entry,
        loads,
    })
}

impl LoadSegment {
    /// The segment's file bytes in `elf` (the file [`parse_elf`] checked this segment against).
    pub fn file_bytes<'a>(&self, elf: &'a [u8]) -> &'a [u8] {
        let start = self.offset as usize;
        elf.get(start..start + self.filesz as usize).unwrap_or(&[])
    }
}

/// Checks that `image` starts with a valid arm64 Image header and returns it.
pub fn check_image_header(image: &[u8]) -> Result<ImageHeader, ImageError> {
    if image.len() < HEADER_LEN {
        return Err(ImageError::TooShortForHeader(image.len()));
    }
    if image[MAGIC_OFFSET..MAGIC_OFFSET + 4] != MAGIC {
        return Err(ImageError::NoMagic);
    }
    let header = ImageHeader {
        text_offset: read_u64(image, 8),
        image_size: read_u64(image, 16),
        flags: read_u64(image, 24),
    };
    if header.image_size < image.len() as u64 {
        return Err(ImageError::ImageSizeTooSmall {
            image_size: header.image_size,
            file_len: image.len() as u64,
        });
    }
    Ok(header)
}

/// Reads the ELF at `input`, converts it and writes the Image to `output`.
pub fn convert_file(input: &Path, output: &Path) -> Result<ImageHeader, ImageError> {
    let elf = std::fs::read(input).map_err(|source| ImageError::Io {
        path: input.to_owned(),
        source,
    })?;
    let image = elf_to_image(&elf)?;
    let header = check_image_header(&image)?;
    std::fs::write(output, &image).map_err(|source| ImageError::Io {
        path: output.to_owned(),
        source,
    })?;
    Ok(header)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A PT_LOAD segment for the synthetic ELF: physical address, file bytes, memory size.
    pub(crate) struct Load {
        pub(crate) paddr: u64,
        pub(crate) bytes: Vec<u8>,
        pub(crate) memsz: u64,
    }

    /// A valid arm64 Image header followed by `body`.
    pub(crate) fn header(text_offset: u64, image_size: u64, body: &[u8]) -> Vec<u8> {
        let mut h = vec![0u8; HEADER_LEN];
        h[0..4].copy_from_slice(&0x1400_0010u32.to_le_bytes()); // b +0x40
        h[8..16].copy_from_slice(&text_offset.to_le_bytes());
        h[16..24].copy_from_slice(&image_size.to_le_bytes());
        h[24..32].copy_from_slice(&0xau64.to_le_bytes());
        h[56..60].copy_from_slice(&MAGIC);
        h.extend_from_slice(body);
        h
    }

    /// Writes a little ELF64 aarch64 executable with the given segments, entry and machine.
    pub(crate) fn elf(loads: &[Load], entry: u64, machine: u16) -> Vec<u8> {
        let phoff = ELF64_HEADER_LEN;
        let mut data_off = phoff + loads.len() * ELF64_PHDR_LEN;
        let mut out = vec![0u8; data_off];
        out[..4].copy_from_slice(&ELF_MAGIC);
        out[4] = ELFCLASS64;
        out[5] = ELFDATA2LSB;
        out[6] = 1;
        out[16..18].copy_from_slice(&2u16.to_le_bytes());
        out[18..20].copy_from_slice(&machine.to_le_bytes());
        out[20..24].copy_from_slice(&1u32.to_le_bytes());
        out[24..32].copy_from_slice(&entry.to_le_bytes());
        out[32..40].copy_from_slice(&(phoff as u64).to_le_bytes());
        out[52..54].copy_from_slice(&(ELF64_HEADER_LEN as u16).to_le_bytes());
        out[54..56].copy_from_slice(&(ELF64_PHDR_LEN as u16).to_le_bytes());
        out[56..58].copy_from_slice(&(loads.len() as u16).to_le_bytes());
        let mut bodies = Vec::new();
        for (i, l) in loads.iter().enumerate() {
            let at = phoff + i * ELF64_PHDR_LEN;
            out[at..at + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
            out[at + 4..at + 8].copy_from_slice(&5u32.to_le_bytes());
            out[at + 8..at + 16].copy_from_slice(&(data_off as u64).to_le_bytes());
            out[at + 16..at + 24].copy_from_slice(&l.paddr.to_le_bytes());
            out[at + 24..at + 32].copy_from_slice(&l.paddr.to_le_bytes());
            out[at + 32..at + 40].copy_from_slice(&(l.bytes.len() as u64).to_le_bytes());
            out[at + 40..at + 48].copy_from_slice(&l.memsz.to_le_bytes());
            out[at + 48..at + 56].copy_from_slice(&0x1000u64.to_le_bytes());
            data_off += l.bytes.len();
            bodies.extend_from_slice(&l.bytes);
        }
        out.extend_from_slice(&bodies);
        out
    }

    const BASE: u64 = 0x4020_0000;

    #[test]
    fn lays_out_segments_with_gaps_and_no_bss() {
        let text = header(0x20_0000, 0x3000, b"code");
        let text_len = text.len();
        let loads = [
            Load {
                paddr: BASE,
                memsz: text.len() as u64,
                bytes: text.clone(),
            },
            Load {
                paddr: BASE + 0x1000,
                bytes: b"data".to_vec(),
                memsz: 4,
            },
            Load {
                paddr: BASE + 0x2000,
                bytes: Vec::new(),
                memsz: 0x1000,
            },
        ];
        let image = elf_to_image(&elf(&loads, BASE, EM_AARCH64)).unwrap();
        assert_eq!(image.len(), 0x1004, "ends at the last file byte, no BSS");
        assert_eq!(&image[..text_len], &text[..]);
        assert!(image[text_len..0x1000].iter().all(|&b| b == 0));
        assert_eq!(&image[0x1000..], b"data");
        let h = check_image_header(&image).unwrap();
        assert_eq!(h.text_offset, 0x20_0000);
        assert_eq!(h.image_size, 0x3000);
    }

    #[test]
    fn segment_order_in_the_file_does_not_matter() {
        let text = header(0x20_0000, 0x2000, b"");
        let loads = [
            Load {
                paddr: BASE + 0x1000,
                bytes: b"late".to_vec(),
                memsz: 4,
            },
            Load {
                paddr: BASE,
                memsz: text.len() as u64,
                bytes: text,
            },
        ];
        let image = elf_to_image(&elf(&loads, BASE, EM_AARCH64)).unwrap();
        assert_eq!(&image[0x1000..], b"late");
        assert_eq!(image[MAGIC_OFFSET..MAGIC_OFFSET + 4], MAGIC);
    }

    #[test]
    fn rejects_missing_magic() {
        let mut text = header(0x20_0000, 0x1000, b"");
        text[56] = 0;
        let loads = [Load {
            paddr: BASE,
            memsz: 64,
            bytes: text,
        }];
        let err = elf_to_image(&elf(&loads, BASE, EM_AARCH64)).unwrap_err();
        assert!(matches!(err, ImageError::NoMagic));
        assert!(err.to_string().contains("ARM\\x64 magic at offset 56"));
    }

    #[test]
    fn rejects_image_size_smaller_than_file() {
        let text = header(0x20_0000, 0x10, b"0123456789");
        let loads = [Load {
            paddr: BASE,
            memsz: 74,
            bytes: text,
        }];
        let err = elf_to_image(&elf(&loads, BASE, EM_AARCH64)).unwrap_err();
        assert!(matches!(
            err,
            ImageError::ImageSizeTooSmall {
                image_size: 0x10,
                file_len: 74
            }
        ));
    }

    #[test]
    fn rejects_text_offset_that_disagrees_with_link_address() {
        let text = header(0x8_0000, 0x1000, b"");
        let loads = [Load {
            paddr: BASE,
            memsz: 64,
            bytes: text,
        }];
        let err = elf_to_image(&elf(&loads, BASE, EM_AARCH64)).unwrap_err();
        assert!(matches!(err, ImageError::TextOffsetMismatch { .. }));
    }

    #[test]
    fn rejects_wrong_machine_and_non_elf() {
        let loads = [Load {
            paddr: BASE,
            memsz: 64,
            bytes: header(0x20_0000, 0x1000, b""),
        }];
        let err = elf_to_image(&elf(&loads, BASE, 62)).unwrap_err();
        assert!(matches!(err, ImageError::NotAarch64(62)));
        assert!(matches!(
            elf_to_image(b"MZ not an elf").unwrap_err(),
            ImageError::NotElf
        ));
    }

    #[test]
    fn rejects_entry_not_at_image_start() {
        let loads = [Load {
            paddr: BASE,
            memsz: 64,
            bytes: header(0x20_0000, 0x1000, b""),
        }];
        let err = elf_to_image(&elf(&loads, BASE + 8, EM_AARCH64)).unwrap_err();
        assert!(matches!(err, ImageError::EntryNotAtStart { offset: 8, .. }));
    }

    #[test]
    fn rejects_overlapping_and_truncated_segments() {
        let loads = [
            Load {
                paddr: BASE,
                memsz: 64,
                bytes: header(0x20_0000, 0x1000, b""),
            },
            Load {
                paddr: BASE + 32,
                memsz: 4,
                bytes: b"oops".to_vec(),
            },
        ];
        let err = elf_to_image(&elf(&loads, BASE, EM_AARCH64)).unwrap_err();
        assert!(matches!(err, ImageError::Overlap { .. }));

        let mut bytes = elf(&loads[..1], BASE, EM_AARCH64);
        bytes.truncate(bytes.len() - 10);
        let err = elf_to_image(&bytes).unwrap_err();
        assert!(matches!(err, ImageError::Truncated { .. }));
    }

    #[test]
    fn rejects_elf_without_loadable_bytes() {
        let loads = [Load {
            paddr: BASE,
            memsz: 0x1000,
            bytes: Vec::new(),
        }];
        let err = elf_to_image(&elf(&loads, BASE, EM_AARCH64)).unwrap_err();
        assert!(matches!(err, ImageError::NoLoadSegments));
    }
}
