//! Writing the system image that `mica_abi::sysimage` defines and the kernel reads at boot.
//!
//! The layout, the limits and the checking parser belong to `mica-abi`, shared with the
//! kernel; this module is the host-side writer only. It lays the records out exactly as
//! `abi/src/sysimage.rs` documents (`Header | DomainRecord × n | SegmentRecord × m |
//! ChannelRecord × c | ShareRecord × s | segment bytes`, every piece 8-byte aligned) and then
//! runs the kernel's own parser over the result,
//! so a bug here fails the build instead of producing an image the kernel rejects. It also
//! appends a system image to the hypervisor's arm64 `Image` and patches the header's
//! `image_size` so that a boot loader keeps the device tree clear of it.
//!
//! Everything is a pure function of its inputs (no clocks, no hash-map order), so the same
//! inputs give the same bytes.

use crate::image::{self, ImageError};
use mica_abi::sysimage::{
    ChannelRecord, DeviceRecord, DomainRecord, Header, ImageError as AbiImageError, SegmentRecord,
    ShareRecord, SystemImage, VirtioRecord, MAGIC, VERSION,
};
use zerocopy::IntoBytes;

/// Every table and every segment's bytes start at a multiple of this.
pub const ALIGN: usize = 8;
/// The system image starts, and the patched `image_size` ends, on a multiple of this.
pub const PAGE: u64 = mica_abi::layout::PAGE_SIZE;
/// Offset of `image_size` in the arm64 Image header.
pub const IMAGE_SIZE_OFFSET: usize = 16;

/// Why a system image could not be written or appended.
#[derive(Debug, thiserror::Error)]
pub enum SysimageError {
    /// The image laid out here does not pass `SystemImage::parse`.
    #[error(
        "toolstack bug: the system image just laid out does not parse ({0}); nothing was written"
    )]
    Unparsable(AbiImageError),
    /// More segments or bytes than the record fields hold.
    #[error("the system image would be too large for its records ({0})")]
    TooLarge(&'static str),
    /// The hypervisor file is not an arm64 Image.
    #[error("not an arm64 Image: {0}")]
    NotAnImage(#[from] ImageError),
    /// The hypervisor file already ends with a system image.
    #[error("it already carries a system image (at offset {offset:#x}): pass the plain hypervisor Image that `make build` writes (build/aarch64/mica.img)")]
    AlreadyBuilt {
        /// Where the system image starts in it.
        offset: usize,
    },
}

/// One loadable segment of a domain, with its file bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSegment {
    /// Guest-physical load address.
    pub ipa: u64,
    /// Bytes in memory (at least `bytes.len()`; the rest is zero).
    pub mem_size: u64,
    /// The bytes the image carries.
    pub bytes: Vec<u8>,
}

/// One domain to write: its record and its segments.
#[derive(Clone, Debug)]
pub struct ImageDomain {
    /// Every field but `first_segment` and `segment_count`, which [`write`] sets.
    pub record: DomainRecord,
    /// Its segments, in the order they are written.
    pub segments: Vec<ImageSegment>,
}

fn align_up(n: usize, align: usize) -> usize {
    n.div_ceil(align) * align
}

/// Lays out `domains`, the event channels and the shared regions as a system image (no
/// passed-through devices) and checks it with the kernel's parser.
pub fn write(
    domains: &[ImageDomain],
    channels: &[ChannelRecord],
    shares: &[ShareRecord],
) -> Result<Vec<u8>, SysimageError> {
    write_with_devices(domains, channels, shares, &[])
}

/// [`write`] with devices passed through to domains.
pub fn write_with_devices(
    domains: &[ImageDomain],
    channels: &[ChannelRecord],
    shares: &[ShareRecord],
    devices: &[DeviceRecord],
) -> Result<Vec<u8>, SysimageError> {
    write_with_virtio(domains, channels, shares, devices, &[])
}

/// [`write_with_devices`] with guests' virtio devices (docs/virtio.md).
pub fn write_with_virtio(
    domains: &[ImageDomain],
    channels: &[ChannelRecord],
    shares: &[ShareRecord],
    devices: &[DeviceRecord],
    virtio: &[VirtioRecord],
) -> Result<Vec<u8>, SysimageError> {
    let segment_total: usize = domains.iter().map(|d| d.segments.len()).sum();
    let data_start = size_of::<Header>()
        + size_of::<DomainRecord>() * domains.len()
        + size_of::<SegmentRecord>() * segment_total
        + size_of_val(channels)
        + size_of_val(shares)
        + size_of_val(devices)
        + size_of_val(virtio);
    debug_assert_eq!(data_start % ALIGN, 0, "record sizes are multiples of 8");

    let mut records = Vec::with_capacity(domains.len());
    let mut segments = Vec::with_capacity(segment_total);
    let mut data = Vec::new();
    for d in domains {
        let mut record = d.record;
        record.first_segment =
            u32::try_from(segments.len()).map_err(|_| SysimageError::TooLarge("segments"))?;
        record.segment_count =
            u32::try_from(d.segments.len()).map_err(|_| SysimageError::TooLarge("segments"))?;
        for s in &d.segments {
            segments.push(SegmentRecord {
                ipa: s.ipa,
                offset: (data_start + data.len()) as u64,
                file_size: s.bytes.len() as u64,
                mem_size: s.mem_size,
            });
            data.extend_from_slice(&s.bytes);
            data.resize(align_up(data.len(), ALIGN), 0);
        }
        records.push(record);
    }
    let header = Header {
        magic: MAGIC,
        version: VERSION,
        domain_count: u32::try_from(records.len())
            .map_err(|_| SysimageError::TooLarge("domains"))?,
        total_size: (data_start + data.len()) as u64,
        channel_count: u32::try_from(channels.len())
            .map_err(|_| SysimageError::TooLarge("channels"))?,
        share_count: u32::try_from(shares.len()).map_err(|_| SysimageError::TooLarge("shares"))?,
        device_count: u32::try_from(devices.len())
            .map_err(|_| SysimageError::TooLarge("devices"))?,
        virtio_count: u32::try_from(virtio.len())
            .map_err(|_| SysimageError::TooLarge("virtio devices"))?,
    };
    let mut out = Vec::with_capacity(data_start + data.len());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(records.as_bytes());
    out.extend_from_slice(segments.as_bytes());
    out.extend_from_slice(channels.as_bytes());
    out.extend_from_slice(shares.as_bytes());
    out.extend_from_slice(devices.as_bytes());
    out.extend_from_slice(virtio.as_bytes());
    out.extend_from_slice(&data);
    debug_assert_eq!(out.len(), data_start + data.len());
    SystemImage::parse(&out).map_err(SysimageError::Unparsable)?;
    Ok(out)
}

/// Where a system image starts in `file` if `file` ends with one: a 4 KiB-aligned offset at
/// which `SystemImage::parse` succeeds and whose `total_size` reaches exactly the end.
pub fn find_system_image(file: &[u8]) -> Option<usize> {
    (PAGE as usize..file.len())
        .step_by(PAGE as usize)
        .find(|&offset| {
            file[offset..].starts_with(&MAGIC)
                && SystemImage::parse(&file[offset..])
                    .is_ok_and(|image| offset + image.size() == file.len())
        })
}

/// The bootable file: the hypervisor Image, zeros up to its original `image_size` rounded up
/// to 4 KiB (where the kernel looks for the system image), the system image, and the header's
/// `image_size` patched to cover the whole file rounded up to 4 KiB.
pub fn append_to_hypervisor(hypervisor: &[u8], system: &[u8]) -> Result<Vec<u8>, SysimageError> {
    let header = image::check_image_header(hypervisor)?;
    if let Some(offset) = find_system_image(hypervisor) {
        return Err(SysimageError::AlreadyBuilt { offset });
    }
    let start = usize::try_from(header.image_size.div_ceil(PAGE) * PAGE)
        .map_err(|_| SysimageError::TooLarge("hypervisor image_size"))?;
    let mut out = Vec::with_capacity(start + system.len());
    out.extend_from_slice(hypervisor);
    // check_image_header guarantees image_size >= the file length.
    out.resize(start, 0);
    out.extend_from_slice(system);
    let image_size = (out.len() as u64).div_ceil(PAGE) * PAGE;
    out[IMAGE_SIZE_OFFSET..IMAGE_SIZE_OFFSET + 8].copy_from_slice(&image_size.to_le_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mica_abi::bootinfo::name_field;
    use mica_abi::sysimage::{ANY_CPU, DOMAIN_RAM_BASE, FLAG_START_AT_BOOT};
    use mica_abi::Rights;
    use zerocopy::FromZeros;

    fn domain(name: &str, segments: Vec<ImageSegment>) -> ImageDomain {
        let mut record = DomainRecord::new_zeroed();
        record.name[..name.len()].copy_from_slice(name.as_bytes());
        record.memory_bytes = 0x10_0000;
        record.entry = DOMAIN_RAM_BASE;
        record.vcpu_count = 1;
        record.flags = FLAG_START_AT_BOOT;
        record.affinity = [ANY_CPU; 8];
        ImageDomain { record, segments }
    }

    fn segment(ipa: u64, bytes: &[u8], mem_size: u64) -> ImageSegment {
        ImageSegment {
            ipa,
            mem_size,
            bytes: bytes.to_vec(),
        }
    }

    fn two_domains() -> [ImageDomain; 2] {
        [
            domain(
                "a",
                vec![
                    segment(DOMAIN_RAM_BASE, b"abc", 0x1000),
                    segment(DOMAIN_RAM_BASE + 0x1000, b"", 0x2000),
                ],
            ),
            domain("b", vec![segment(DOMAIN_RAM_BASE, b"0123456789", 0x1000)]),
        ]
    }

    fn channel(a: u32, a_name: &str, b: u32, b_name: &str) -> ChannelRecord {
        ChannelRecord {
            a_domain: a,
            b_domain: b,
            a_name: name_field(a_name),
            b_name: name_field(b_name),
            reserved: [0; 2],
        }
    }

    fn share(name: &str, owner: u32, peer: u32, owner_offset: u64, rights: Rights) -> ShareRecord {
        ShareRecord {
            name: name_field(name),
            owner,
            peer,
            pages: 2,
            peer_rights: rights.bits(),
            owner_offset,
            peer_ipa: 0x8000_0000,
            flags: 0,
        }
    }

    #[test]
    fn layout_is_the_documented_one() {
        let blob = write(&two_domains(), &[], &[]).unwrap();
        let data_start = 40 + 2 * 104 + 3 * 32;
        assert_eq!(blob.len(), data_start + 8 + 16, "each segment 8-aligned");
        let image = SystemImage::parse(&blob).unwrap();
        assert!(image.channels().is_empty() && image.shares().is_empty());
        let [a, b] = image.domains() else { panic!() };
        assert_eq!((a.first_segment, a.segment_count), (0, 2));
        assert_eq!((b.first_segment, b.segment_count), (2, 1));
        let segs = image.segments_of(a).unwrap();
        assert_eq!(segs[0].offset, data_start as u64);
        assert_eq!(image.segment_bytes(&segs[0]), b"abc");
        assert_eq!(segs[1].file_size, 0);
        let seg = image.segments_of(b).unwrap()[0];
        assert_eq!(seg.offset, data_start as u64 + 8);
        assert_eq!(image.segment_bytes(&seg), b"0123456789");
    }

    #[test]
    fn channels_and_shares_follow_the_segments() {
        let channels = [
            channel(0, "to-b", 1, "to-a"),
            channel(1, "kick", 0, "kicked"),
        ];
        let shares = [
            share(
                "ring",
                0,
                1,
                0x10_0000 - 0x3000,
                Rights::READ | Rights::WRITE,
            ),
            share("window", 1, 0, 0x1000, Rights::READ),
        ];
        let blob = write(&two_domains(), &channels, &shares).unwrap();
        let tables = 40 + 2 * 104 + 3 * 32;
        let data_start = tables + 2 * 64 + 2 * 64;
        assert_eq!(blob.len(), data_start + 8 + 16);
        assert_eq!(&blob[tables..tables + 64], channels[0].as_bytes());
        assert_eq!(&blob[tables + 128..tables + 192], shares[0].as_bytes());
        let image = SystemImage::parse(&blob).unwrap();
        assert_eq!(image.channels().as_bytes(), channels.as_bytes());
        assert_eq!(image.shares().as_bytes(), shares.as_bytes());
        let [a, _] = image.domains() else { panic!() };
        let first = image.segments_of(a).unwrap()[0];
        assert_eq!(
            first.offset, data_start as u64,
            "segment bytes after the tables"
        );
        assert_eq!(image.segment_bytes(&first), b"abc");
        // Same inputs, same bytes.
        assert_eq!(write(&two_domains(), &channels, &shares).unwrap(), blob);
    }

    #[test]
    fn a_record_the_kernel_rejects_is_a_toolstack_bug() {
        let mut d = domain("a", vec![segment(DOMAIN_RAM_BASE, b"x", 1)]);
        d.record.entry = 0;
        let err = write(&[d], &[], &[]).unwrap_err();
        assert!(matches!(err, SysimageError::Unparsable(_)), "{err}");
        assert!(err.to_string().starts_with("toolstack bug"), "{err}");

        // A share over the owner's last page (its boot-info page) or with write-only rights.
        let last_page = share("ring", 0, 1, 0x10_0000 - 0x2000, Rights::READ);
        let err = write(&two_domains(), &[], &[last_page]).unwrap_err();
        assert!(
            matches!(
                err,
                SysimageError::Unparsable(AbiImageError::BadShare(0, _))
            ),
            "{err}"
        );
        let write_only = share("ring", 0, 1, 0, Rights::WRITE);
        assert!(write(&two_domains(), &[], &[write_only]).is_err());
        let nameless = channel(0, "", 1, "to-a");
        let err = write(&two_domains(), &[nameless], &[]).unwrap_err();
        assert!(
            matches!(
                err,
                SysimageError::Unparsable(AbiImageError::BadChannel(0, _))
            ),
            "{err}"
        );
    }

    fn hypervisor(len: usize, image_size: u64) -> Vec<u8> {
        let mut hyp = vec![0x11u8; len];
        hyp[16..24].copy_from_slice(&image_size.to_le_bytes());
        hyp[56..60].copy_from_slice(&image::MAGIC);
        hyp
    }

    #[test]
    fn appended_after_the_rounded_footprint_and_header_patched() {
        let system = write(
            &[domain("a", vec![segment(DOMAIN_RAM_BASE, b"x", 1)])],
            &[],
            &[],
        )
        .unwrap();
        let hyp = hypervisor(0x1234, 0x5001);
        let out = append_to_hypervisor(&hyp, &system).unwrap();
        assert_eq!(out[..16], hyp[..16]);
        assert_eq!(out[24..0x1234], hyp[24..]);
        let patched = u64::from_le_bytes(out[16..24].try_into().unwrap());
        assert_eq!(
            patched,
            (0x6000 + system.len() as u64).div_ceil(PAGE) * PAGE
        );
        assert!(out[0x1234..0x6000].iter().all(|&b| b == 0));
        assert_eq!(&out[0x6000..], &system[..]);
        assert_eq!(find_system_image(&out), Some(0x6000));
        assert_eq!(find_system_image(&hyp), None);
        let err = append_to_hypervisor(&out, &system).unwrap_err();
        assert!(
            matches!(err, SysimageError::AlreadyBuilt { offset: 0x6000 }),
            "{err}"
        );
        let err = append_to_hypervisor(b"not an image", &system).unwrap_err();
        assert!(matches!(err, SysimageError::NotAnImage(_)), "{err}");
    }
}
