//! `mica build`: a manifest, the hypervisor Image and every domain's ELF, made one bootable file.
//!
//! Each domain's ELF is read with the same parser as `mica image` ([`crate::image::parse_elf`]);
//! every `PT_LOAD` segment with memory becomes a segment of the system image at its physical
//! address, and the ELF entry point becomes vCPU 0's. Everything the kernel would refuse is
//! refused here first, with the domain and file named: a segment outside the domain's RAM, a
//! file that is not a static aarch64 executable. The system image is written by
//! [`crate::sysimage`] (which checks it with the kernel's parser) and appended to the
//! hypervisor. `mica run` and `mica smoke` boot manifests through [`build_to_temp`], the same
//! code path.

use crate::image::{self, ImageError, LoadSegment, ET_EXEC};
use crate::manifest::{
    Channel, Device, Disk, Domain, DomainElf, LinuxFile, LinuxImage, Location, Manifest,
    ManifestError, Share, Start,
};
use crate::sysimage::{self, ImageDomain, ImageSegment, SysimageError};
use mica_abi::bootinfo::name_field;
use mica_abi::layout::DomainLayout;
use mica_abi::sysimage::{
    ChannelRecord, DeviceRecord, DomainRecord, ShareRecord, VirtioRecord, ANY_CPU, DOMAIN_RAM_BASE,
    FLAG_CONTROL, FLAG_DEFAULT_CACHEABLE, FLAG_LINUX, FLAG_SCHED_CONTROL, FLAG_START_AT_BOOT,
    MAX_VCPUS_PER_DOMAIN,
};
use mica_linux_guest::boot::{self as linux_boot, PlaceError, DTB_SLOT};
use mica_linux_guest::{LinuxDomain, TreeError, VirtioSlot};
use std::path::{Path, PathBuf};

/// The hypervisor Image `mica build` uses unless told otherwise.
pub const DEFAULT_HYPERVISOR: &str = "build/aarch64/mica.img";

/// Where the inputs of a build are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildOptions {
    /// The hypervisor's arm64 Image (as `mica image` writes it).
    pub hypervisor: PathBuf,
    /// Where `binary = "NAME"` domains are looked for.
    pub guests_dir: PathBuf,
}

/// Why a system could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The manifest is unusable or names a missing file.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// An input could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The output could not be written.
    #[error("{path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The hypervisor Image is unusable.
    #[error("hypervisor {path}: {source}{hint}", hint = if matches!(source, SysimageError::NotAnImage(_)) { " (make it with `mica image`, e.g. `make build`)" } else { "" })]
    Hypervisor {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: SysimageError,
    },
    /// A domain's ELF cannot be loaded as the kernel would load it.
    #[error(transparent)]
    Domain(Box<DomainError>),
    /// The system image could not be laid out.
    #[error(transparent)]
    Layout(SysimageError),
    /// A temporary file for `mica run`/`mica smoke` could not be made.
    #[error("temporary system image: {0}")]
    TempFile(std::io::Error),
}

/// A domain whose ELF cannot be loaded as the kernel would load it.
#[derive(Debug, thiserror::Error)]
#[error("{at}: domain `{domain}`: {elf}: {problem}")]
pub struct DomainError {
    /// Where the domain's `binary`/`path` is written.
    pub at: Location,
    /// The domain.
    pub domain: String,
    /// Its ELF file.
    pub elf: PathBuf,
    /// What is wrong.
    pub problem: DomainProblem,
}

/// What is wrong with a domain's ELF.
#[derive(Debug, thiserror::Error)]
pub enum DomainProblem {
    /// Not an aarch64 ELF64, or truncated.
    #[error(transparent)]
    Elf(#[from] ImageError),
    /// The manifest gives the domain a configuration, but its binary has no area for it.
    #[error("the manifest gives this domain a configuration (it drives a [[drive]] that guests' disks are extents of), but its binary has no {0} area of mica_rt::config to hold it: run the block service (binary \"blk\")")]
    NoConfigArea(&'static str),
    /// Not `ET_EXEC`.
    #[error("e_type is {0}, not ET_EXEC (2): link the domain as a static executable")]
    NotExecutable(u16),
    /// Nothing to load.
    #[error("no PT_LOAD segment has memory (p_memsz > 0)")]
    NoSegments,
    /// A segment claims more file bytes than memory.
    #[error(
        "PT_LOAD segment at {ipa:#x} has {filesz:#x} file bytes but p_memsz is only {memsz:#x}"
    )]
    FileLargerThanMemory {
        /// `p_paddr`.
        ipa: u64,
        /// `p_filesz`.
        filesz: u64,
        /// `p_memsz`.
        memsz: u64,
    },
    /// A segment starts below the domain's RAM (or wraps around).
    #[error("PT_LOAD segment at {ipa:#x} lies outside the domain's RAM, which starts at {DOMAIN_RAM_BASE:#x}: link the domain there (p_paddr is the guest-physical address)")]
    OutsideRam {
        /// `p_paddr`.
        ipa: u64,
    },
    /// A segment ends beyond the domain's RAM.
    #[error("PT_LOAD segment {ipa:#x}..{end:#x} ends beyond the domain's usable RAM ({DOMAIN_RAM_BASE:#x}..{ram_end:#x}; the last page of its RAM is its boot-info page): raise memory_kib to at least {least_kib}")]
    RamTooSmall {
        /// `p_paddr`.
        ipa: u64,
        /// `p_paddr + p_memsz`.
        end: u64,
        /// End of the domain's usable RAM (where its boot-info page starts).
        ram_end: u64,
        /// The least `memory_kib` that holds every segment and the boot-info page.
        least_kib: u64,
    },
    /// Two segments share memory.
    #[error("PT_LOAD segments {first_start:#x}..{first_end:#x} and {second_start:#x}..{second_end:#x} overlap")]
    Overlap {
        /// Start of the lower segment.
        first_start: u64,
        /// Its end.
        first_end: u64,
        /// Start of the higher segment.
        second_start: u64,
        /// Its end.
        second_end: u64,
    },
    /// A Linux domain's kernel is not an arm64 Image.
    #[error("{0}")]
    NotLinuxImage(String),
    /// A Linux domain's pieces do not fit its RAM.
    #[error("{0}")]
    LinuxPlacement(PlaceError),
    /// A Linux domain's device tree cannot be written.
    #[error("its device tree: {0}")]
    LinuxTree(TreeError),
    /// The Linux files `mica fetch-linux` caches are not there (for `mica check`, which does
    /// not download).
    #[error("Debian's kernel and the initramfs are not fetched yet: `mica build` and `mica run` fetch them, or run `mica fetch-linux`")]
    NotFetched,
    /// Fetching the Linux files failed.
    #[error("{0}")]
    Fetch(String),
    /// The entry point is not in the domain's RAM.
    #[error(
        "entry point {entry:#x} is outside the domain's RAM {DOMAIN_RAM_BASE:#x}..{ram_end:#x}"
    )]
    EntryOutsideRam {
        /// `e_entry`.
        entry: u64,
        /// End of the domain's RAM.
        ram_end: u64,
    },
}

/// What a build produced, for the one-line report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildSummary {
    /// `[system] name`.
    pub system: String,
    /// How many domains.
    pub domains: usize,
    /// Where the system image starts in the file.
    pub system_offset: usize,
    /// Its size.
    pub system_size: usize,
    /// The whole file's size.
    pub file_size: usize,
}

/// The segments and record of `domain` (index `index`) from its ELF bytes.
pub fn load_domain(domain: &Domain, elf: &[u8]) -> Result<ImageDomain, DomainProblem> {
    let parsed = image::parse_elf(elf)?;
    if parsed.elf_type != ET_EXEC {
        return Err(DomainProblem::NotExecutable(parsed.elf_type));
    }
    let layout = DomainLayout::new(domain.memory_kib * 1024);
    // What the domain's image may use: its RAM up to the boot-info page (the kernel's rule,
    // which `SystemImage::parse` checks too).
    let ram_end = layout.usable_end();
    let loads: Vec<&LoadSegment> = parsed.loads.iter().filter(|s| s.memsz > 0).collect();
    if loads.is_empty() {
        return Err(DomainProblem::NoSegments);
    }
    for s in &loads {
        if s.filesz > s.memsz {
            return Err(DomainProblem::FileLargerThanMemory {
                ipa: s.paddr,
                filesz: s.filesz,
                memsz: s.memsz,
            });
        }
        let end = match s.paddr.checked_add(s.memsz) {
            Some(end) if s.paddr >= DOMAIN_RAM_BASE => end,
            _ => return Err(DomainProblem::OutsideRam { ipa: s.paddr }),
        };
        if end > ram_end {
            let least_kib = loads
                .iter()
                .map(|s| DomainLayout::least_ram_for(s.paddr.saturating_add(s.memsz)))
                .max()
                .unwrap_or(0)
                / 1024;
            return Err(DomainProblem::RamTooSmall {
                ipa: s.paddr,
                end,
                ram_end,
                least_kib,
            });
        }
    }
    let mut sorted = loads.clone();
    sorted.sort_by_key(|s| s.paddr);
    for pair in sorted.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if a.paddr + a.memsz > b.paddr {
            return Err(DomainProblem::Overlap {
                first_start: a.paddr,
                first_end: a.paddr + a.memsz,
                second_start: b.paddr,
                second_end: b.paddr + b.memsz,
            });
        }
    }
    if !(DOMAIN_RAM_BASE..ram_end).contains(&parsed.entry) {
        return Err(DomainProblem::EntryOutsideRam {
            entry: parsed.entry,
            ram_end,
        });
    }
    Ok(ImageDomain {
        record: record(domain, parsed.entry),
        segments: loads
            .iter()
            .map(|s| ImageSegment {
                ipa: s.paddr,
                mem_size: s.memsz,
                bytes: s.file_bytes(elf).to_vec(),
            })
            .collect(),
    })
}

/// The segments and record of Linux domain `domain`: its kernel Image at the start of its
/// RAM, the initramfs and the device tree that describes the domain at the top
/// ([`linux_boot::place`]); vCPU 0 enters the Image with x0 = the tree, which describes its
/// virtio devices in `virtio` (its disks' slots).
pub fn load_linux(
    domain: &Domain,
    linux: &LinuxImage,
    kernel: &[u8],
    initramfs: &[u8],
    virtio: &[VirtioSlot],
) -> Result<ImageDomain, DomainProblem> {
    let header = image::check_image_header(kernel).map_err(|e| {
        DomainProblem::NotLinuxImage(match e {
            ImageError::NoMagic => format!(
                "no ARM\\x64 magic at offset {}: not an arm64 Linux kernel Image",
                image::MAGIC_OFFSET
            ),
            e => format!("not an arm64 Linux kernel Image: {e}"),
        })
    })?;
    let layout = DomainLayout::new(domain.memory_kib * 1024);
    let place = linux_boot::place(
        DOMAIN_RAM_BASE,
        layout.usable_end(),
        header.text_offset,
        header.image_size,
        initramfs.len() as u64,
    )
    .map_err(DomainProblem::LinuxPlacement)?;
    let tree = mica_linux_guest::device_tree(&LinuxDomain {
        vcpus: domain.vcpus,
        ram_base: DOMAIN_RAM_BASE,
        ram_size: layout.ram_bytes,
        bootargs: &linux.cmdline,
        initrd: place.initrd,
        virtio,
    })
    .map_err(DomainProblem::LinuxTree)?;
    if tree.len() as u64 > DTB_SLOT {
        return Err(DomainProblem::LinuxTree(TreeError::Write(format!(
            "{} bytes, more than the {DTB_SLOT} kept for it",
            tree.len()
        ))));
    }
    let mut record = record(domain, place.image);
    record.arg = place.dtb;
    let mut segments = vec![ImageSegment {
        ipa: place.image,
        mem_size: kernel.len() as u64,
        bytes: kernel.to_vec(),
    }];
    if let Some((start, end)) = place.initrd {
        segments.push(ImageSegment {
            ipa: start,
            mem_size: end - start,
            bytes: initramfs.to_vec(),
        });
    }
    segments.push(ImageSegment {
        ipa: place.dtb,
        mem_size: tree.len() as u64,
        bytes: tree,
    });
    Ok(ImageDomain { record, segments })
}

/// The domain record of `domain` (segments are filled in by [`sysimage::write`]).
fn record(domain: &Domain, entry: u64) -> DomainRecord {
    let mut name = [0u8; 32];
    // The manifest checked the name is 1..=31 bytes.
    name[..domain.name.len()].copy_from_slice(domain.name.as_bytes());
    let mut affinity = [ANY_CPU; MAX_VCPUS_PER_DOMAIN];
    if let Some(cpus) = &domain.cpus {
        for (slot, cpu) in affinity.iter_mut().zip(cpus) {
            // The manifest checked every CPU is below [machine] cpus (at most 16).
            *slot = u8::try_from(*cpu).unwrap_or(ANY_CPU);
        }
    }
    let mut flags = 0;
    if domain.start == Start::AtBoot {
        flags |= FLAG_START_AT_BOOT;
    }
    if domain.mmu_off_cacheable {
        flags |= FLAG_DEFAULT_CACHEABLE;
    }
    if domain.sched_policy {
        flags |= FLAG_SCHED_CONTROL;
    }
    if domain.control {
        flags |= FLAG_CONTROL;
    }
    if matches!(domain.elf, DomainElf::Linux(_)) {
        flags |= FLAG_LINUX;
    }
    let link = |index: usize| u32::try_from(index + 1).unwrap_or(u32::MAX);
    DomainRecord {
        name,
        memory_bytes: domain.memory_kib * 1024,
        entry,
        arg: domain.arg,
        first_segment: 0,
        segment_count: 0,
        vcpu_count: domain.vcpus,
        flags,
        affinity,
        start_after: match domain.start {
            Start::AtBoot => 0,
            Start::AfterDestroyOf(index) => link(index),
        },
        memory_from: domain.memory_from.map_or(0, link),
        priority: domain.priority,
        sched: domain.sched,
    }
}

/// A domain index as a record field (the manifest holds at most 16 domains).
fn index(domain: usize) -> u32 {
    u32::try_from(domain).unwrap_or(u32::MAX)
}

/// The record of a checked `[[channel]]`.
fn channel_record(channel: &Channel) -> ChannelRecord {
    ChannelRecord {
        a_domain: index(channel.a.domain),
        b_domain: index(channel.b.domain),
        // The manifest checked every name is 1..=23 bytes.
        a_name: name_field(&channel.a.name),
        b_name: name_field(&channel.b.name),
        reserved: [0; 2],
    }
}

/// The record of a checked `[[shared]]`.
fn share_record(share: &Share) -> ShareRecord {
    ShareRecord {
        name: name_field(&share.name),
        owner: index(share.owner),
        peer: index(share.peer),
        pages: share.pages,
        peer_rights: share.peer_access.rights().bits(),
        owner_offset: share.owner_offset,
        peer_ipa: share.peer_address,
        flags: 0,
    }
}

/// The record of a checked device: seen by its domain at its physical address.
fn device_record(device: &Device) -> DeviceRecord {
    let mut name = [0u8; mica_abi::bootinfo::NAME_LEN];
    // The manifest checked the name is 1..=19 bytes.
    name[..device.name.len()].copy_from_slice(device.name.as_bytes());
    DeviceRecord {
        name,
        domain: index(device.domain),
        interrupt: device.interrupt,
        mmio_base: device.mmio_base,
        mmio_size: device.mmio_size,
        guest_address: device.mmio_base,
        reserved: 0,
    }
}

/// The virtio record of a checked disk: a block device with queues of 128 entries.
fn disk_record(disk: &Disk) -> VirtioRecord {
    VirtioRecord {
        name: name_field(&disk.name),
        guest: index(disk.guest),
        server: index(disk.server),
        slot: disk.slot,
        device_id: mica_abi::virtio::device::BLOCK,
        features: 0,
        capacity: disk.sectors,
        queue_size: 128,
        reserved: 0,
    }
}

/// The guest's RAM (below its last page), shared read-write with the server of its disk as
/// NAME-ram, so the server can walk the guest's queues and move its data.
fn disk_share_record(disk: &Disk) -> ShareRecord {
    let mut name = disk.name.clone();
    name.push_str(mica_abi::bootinfo::suffix::RAM);
    ShareRecord {
        name: name_field(&name),
        owner: index(disk.guest),
        peer: index(disk.server),
        pages: disk.ram_pages,
        peer_rights: (mica_abi::Rights::READ | mica_abi::Rights::WRITE).bits(),
        owner_offset: 0,
        peer_ipa: disk.ram_address,
        flags: mica_abi::sysimage::SHARE_PEER_ONLY,
    }
}

/// The bootable file for `manifest` from the hypervisor Image bytes and each domain's ELF
/// (path, for errors, and bytes), in manifest order.
pub fn build_bytes(
    manifest: &Manifest,
    hypervisor_path: &Path,
    hypervisor: &[u8],
    inputs: &[DomainInput],
) -> Result<Vec<u8>, BuildError> {
    let mut domains = Vec::with_capacity(manifest.domains.len());
    for (index, input) in inputs.iter().enumerate().take(manifest.domains.len()) {
        domains.push(load_domain_at(manifest, index, input)?);
    }
    let channels: Vec<ChannelRecord> = manifest.channels.iter().map(channel_record).collect();
    let mut shares: Vec<ShareRecord> = manifest.shares.iter().map(share_record).collect();
    shares.extend(manifest.disks.iter().map(disk_share_record));
    let devices: Vec<DeviceRecord> = manifest.devices.iter().map(device_record).collect();
    let virtio: Vec<VirtioRecord> = manifest.disks.iter().map(disk_record).collect();
    let system = sysimage::write_with_virtio(&domains, &channels, &shares, &devices, &virtio)
        .map_err(BuildError::Layout)?;
    sysimage::append_to_hypervisor(hypervisor, &system).map_err(|source| BuildError::Hypervisor {
        path: hypervisor_path.to_owned(),
        source,
    })
}

/// A domain's files, read: its ELF (or a Linux domain's kernel Image) and a Linux domain's
/// initramfs.
#[derive(Clone, Debug)]
pub struct DomainInput {
    /// The ELF or kernel file, for errors.
    pub path: PathBuf,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// A Linux domain's initramfs (file and bytes).
    pub initramfs: Option<(PathBuf, Vec<u8>)>,
}

impl From<(PathBuf, Vec<u8>)> for DomainInput {
    fn from((path, bytes): (PathBuf, Vec<u8>)) -> DomainInput {
        DomainInput {
            path,
            bytes,
            initramfs: None,
        }
    }
}

fn domain_error(domain: &Domain, path: &Path, problem: DomainProblem) -> BuildError {
    BuildError::Domain(Box::new(DomainError {
        at: domain.elf_at.clone(),
        domain: domain.name.clone(),
        elf: path.to_owned(),
        problem,
    }))
}

/// [`load_domain`] or [`load_linux`], with the domain and its file named in the error.
fn load_domain_at(
    manifest: &Manifest,
    index: usize,
    input: &DomainInput,
) -> Result<ImageDomain, BuildError> {
    let domain = &manifest.domains[index];
    match &domain.elf {
        DomainElf::Linux(linux) => {
            let initramfs = input.initramfs.as_ref().map_or(&[][..], |(_, b)| b);
            let slots: Vec<VirtioSlot> = manifest
                .disks
                .iter()
                .filter(|disk| disk.guest == index)
                .map(|disk| VirtioSlot(disk.slot))
                .collect();
            load_linux(domain, linux, &input.bytes, initramfs, &slots)
        }
        _ => load_domain(domain, &input.bytes).and_then(|mut loaded| {
            if let Some(config) = domain_config(manifest, index) {
                write_config(&mut loaded, &input.bytes, &config)?;
            }
            Ok(loaded)
        }),
    }
    .map_err(|problem| domain_error(domain, &input.path, problem))
}

/// The configuration `mica build` writes into domain `index`'s image (`mica_abi::config`), if
/// the manifest gives it one: for the server of a `[[drive]]`, the table of the disks that
/// are extents of it (`mica_abi::blkio`: each client's name and extent).
pub fn domain_config(manifest: &Manifest, index: usize) -> Option<Vec<u8>> {
    let drive = manifest.drives.iter().position(|d| d.server == index)?;
    let clients: Vec<mica_abi::blkio::Client> = manifest
        .disks
        .iter()
        .filter_map(|disk| {
            let on = disk.on_drive.filter(|on| on.drive == drive)?;
            Some(mica_abi::blkio::Client {
                name: mica_abi::bootinfo::name_field(&disk.name),
                extent: mica_abi::blkio::Extent {
                    first: on.first_sector,
                    sectors: disk.sectors,
                },
            })
        })
        .collect();
    mica_abi::blkio::encode_clients(&clients).map(|table| table.to_vec())
}

/// Writes `config` over the bytes of the symbol `mica_abi::config::SYMBOL` in the loaded
/// image of `elf` (the area `mica_rt::config` reads).
fn write_config(loaded: &mut ImageDomain, elf: &[u8], config: &[u8]) -> Result<(), DomainProblem> {
    use object::{Object, ObjectSymbol};
    let missing = || DomainProblem::NoConfigArea(mica_abi::config::SYMBOL);
    let file = object::File::parse(elf).map_err(|_| missing())?;
    let symbol = file
        .symbols()
        .find(|s| s.name() == Ok(mica_abi::config::SYMBOL))
        .ok_or_else(missing)?;
    if (config.len() as u64) > symbol.size() || symbol.size() > mica_abi::config::BYTES as u64 {
        return Err(missing());
    }
    let at = symbol.address();
    let segment = loaded
        .segments
        .iter_mut()
        .find(|s| s.ipa <= at && at + config.len() as u64 <= s.ipa + s.bytes.len() as u64)
        .ok_or_else(missing)?;
    let offset = (at - segment.ipa) as usize;
    segment.bytes[offset..offset + config.len()].copy_from_slice(config);
    Ok(())
}

/// The kernel and initramfs files of Linux domain `domain`: paths relative to the manifest,
/// or what `mica fetch-linux` keeps in [`crate::build::linux::DEFAULT_CACHE`] — fetched now
/// (progress on stderr) if `fetch`, else only if already cached. With a fetched initramfs, a
/// guest with disks also gets the disk tools' archive, to append to it.
pub fn linux_files(
    manifest: &Manifest,
    domain: &Domain,
    linux: &LinuxImage,
    fetch: bool,
) -> Result<LinuxInputs, BuildError> {
    use crate::build::linux::Cached;
    let cache = Path::new(crate::build::linux::DEFAULT_CACHE);
    let mut fetched: Option<Cached> = None;
    let mut get = |pick: fn(&Cached) -> PathBuf| -> Result<PathBuf, BuildError> {
        if fetched.is_none() {
            fetched = match crate::build::linux::cached(cache) {
                Some(files) if !fetch => Some(files),
                _ if !fetch => None,
                _ => {
                    let mut say = |line: &str| eprintln!("fetch-linux: {line}");
                    let files = crate::build::linux::fetch(cache, &mut say).map_err(|e| {
                        domain_error(domain, cache, DomainProblem::Fetch(e.to_string()))
                    })?;
                    Some(Cached {
                        kernel: files.kernel,
                        initramfs: files.initramfs,
                        disk_tools: files.disk_tools,
                    })
                }
            };
        }
        fetched
            .as_ref()
            .map(pick)
            .ok_or_else(|| domain_error(domain, cache, DomainProblem::NotFetched))
    };
    let mut resolve = |file: &LinuxFile, pick: fn(&Cached) -> PathBuf| match file {
        LinuxFile::Path(path) => {
            let tried = manifest.dir().join(path);
            if tried.is_file() {
                Ok(tried)
            } else {
                Err(BuildError::Manifest(ManifestError::MissingPath {
                    at: domain.elf_at.clone(),
                    domain: domain.name.clone(),
                    tried,
                }))
            }
        }
        LinuxFile::Fetched => get(pick),
    };
    let kernel = resolve(&linux.kernel, |c| c.kernel.clone())?;
    let initramfs = resolve(&linux.initramfs, |c| c.initramfs.clone())?;
    let script = match &linux.script {
        Some(path) => Some(resolve(&LinuxFile::Path(path.clone()), |c| {
            c.kernel.clone()
        })?),
        None => None,
    };
    let has_disks = manifest.disks.iter().any(|d| {
        manifest
            .domains
            .get(d.guest)
            .is_some_and(|g| g.name == domain.name)
    });
    let disk_tools = match linux.initramfs {
        LinuxFile::Fetched if has_disks => Some(get(|c| c.disk_tools.clone())?),
        _ => None,
    };
    Ok(LinuxInputs {
        kernel,
        initramfs,
        disk_tools,
        script,
    })
}

/// The files a Linux domain is built from ([`linux_files`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinuxInputs {
    /// The arm64 Image.
    pub kernel: PathBuf,
    /// The initramfs.
    pub initramfs: PathBuf,
    /// An archive appended to the initramfs (the disk tools, for a guest with disks).
    pub disk_tools: Option<PathBuf>,
    /// The domain's `script`, appended to the initramfs as [`crate::manifest::SCRIPT_PATH`].
    pub script: Option<PathBuf>,
}

impl LinuxInputs {
    /// The initramfs as the guest gets it: the base archive, then the disk tools' archive and
    /// the script's (newc archives are 4-byte multiples; the kernel unpacks one after the
    /// other).
    pub fn initramfs_bytes(&self) -> Result<Vec<u8>, BuildError> {
        let mut bytes = read(&self.initramfs)?;
        let mut append = |more: Vec<u8>| {
            bytes.resize(bytes.len().next_multiple_of(4), 0);
            bytes.extend(more);
        };
        if let Some(tools) = &self.disk_tools {
            append(read(tools)?);
        }
        if let Some(script) = &self.script {
            let file = (crate::manifest::SCRIPT_PATH.to_owned(), read(script)?);
            append(crate::build::linux::extra_archive(&[file], &[]));
        }
        Ok(bytes)
    }
}

/// Reads domain `domain`'s files (fetching a Linux domain's if `fetch`).
fn read_input(
    manifest: &Manifest,
    domain: &Domain,
    guests_dir: &Path,
    fetch: bool,
) -> Result<DomainInput, BuildError> {
    match &domain.elf {
        DomainElf::Linux(linux) => {
            let inputs = linux_files(manifest, domain, linux, fetch)?;
            let bytes = read(&inputs.kernel)?;
            let initramfs_bytes = inputs.initramfs_bytes()?;
            Ok(DomainInput {
                path: inputs.kernel,
                bytes,
                initramfs: Some((inputs.initramfs, initramfs_bytes)),
            })
        }
        _ => {
            let path = manifest.domain_elf(domain, guests_dir)?;
            let bytes = read(&path)?;
            Ok(DomainInput {
                path,
                bytes,
                initramfs: None,
            })
        }
    }
}

/// What `mica check` knows of the domains' ELF files without building: for every domain,
/// that its file exists and that [`load_domain`] (what `mica build` does with it) accepts
/// it: an aarch64 static executable whose segments and entry fit the domain's RAM; for a
/// Linux domain, its kernel Image and initramfs as [`load_linux`] places them (Debian's, when
/// `mica fetch-linux` has cached them; not yet fetched, they are checked by `mica build`,
/// which fetches them). Every domain is checked; the problems come back in manifest order
/// (empty: all fine).
pub fn check_domain_elves(manifest: &Manifest, guests_dir: &Path) -> Vec<BuildError> {
    let mut problems = Vec::new();
    for (index, domain) in manifest.domains.iter().enumerate() {
        let checked = read_input(manifest, domain, guests_dir, false)
            .and_then(|input| load_domain_at(manifest, index, &input));
        // Debian's kernel not fetched yet is no fault of the manifest: `mica build` fetches
        // it and checks it then (`mica check` does not download).
        if let Err(BuildError::Domain(e)) = &checked {
            if matches!(e.problem, DomainProblem::NotFetched) {
                continue;
            }
        }
        if let Err(err) = checked {
            problems.push(err);
        }
    }
    problems
}

fn read(path: &Path) -> Result<Vec<u8>, BuildError> {
    std::fs::read(path).map_err(|source| BuildError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Reads every input of `manifest` and builds the bootable file.
pub fn build(manifest: &Manifest, options: &BuildOptions) -> Result<Vec<u8>, BuildError> {
    // Every Mica domain's ELF is looked for first, so a missing one is reported before a
    // Linux guest's files are fetched.
    for domain in &manifest.domains {
        if !matches!(domain.elf, DomainElf::Linux(_)) {
            manifest.domain_elf(domain, &options.guests_dir)?;
        }
    }
    let hypervisor = read(&options.hypervisor)?;
    let inputs = manifest
        .domains
        .iter()
        .map(|d| read_input(manifest, d, &options.guests_dir, true))
        .collect::<Result<Vec<_>, _>>()?;
    build_bytes(manifest, &options.hypervisor, &hypervisor, &inputs)
}

fn summary(manifest: &Manifest, file: &[u8]) -> BuildSummary {
    let system_offset = sysimage::find_system_image(file).unwrap_or(file.len());
    BuildSummary {
        system: manifest.name.clone(),
        domains: manifest.domains.len(),
        system_offset,
        system_size: file.len() - system_offset,
        file_size: file.len(),
    }
}

/// `mica build MANIFEST -o OUT`: loads the manifest, builds, writes `output`.
pub fn build_file(
    manifest_path: &Path,
    options: &BuildOptions,
    output: &Path,
) -> Result<BuildSummary, BuildError> {
    let manifest = Manifest::load(manifest_path)?;
    let file = build(&manifest, options)?;
    std::fs::write(output, &file).map_err(|source| BuildError::Write {
        path: output.to_owned(),
        source,
    })?;
    Ok(summary(&manifest, &file))
}

/// A built system in a temporary file, deleted when this is dropped.
#[derive(Debug)]
pub struct TempSystem {
    /// The checked manifest.
    pub manifest: Manifest,
    /// The bootable file.
    pub file: tempfile::TempPath,
}

/// Builds `manifest_path` into a temporary file, for `mica run` and `mica smoke`.
pub fn build_to_temp(
    manifest_path: &Path,
    options: &BuildOptions,
) -> Result<TempSystem, BuildError> {
    let manifest = Manifest::load(manifest_path)?;
    let bytes = build(&manifest, options)?;
    let mut file = tempfile::Builder::new()
        .prefix(&format!("mica-{}-", manifest.name))
        .suffix(".img")
        .tempfile()
        .map_err(BuildError::TempFile)?;
    std::io::Write::write_all(&mut file, &bytes).map_err(BuildError::TempFile)?;
    Ok(TempSystem {
        manifest,
        file: file.into_temp_path(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Linux guest's initramfs is the base archive, the disk tools' and its script's, in
    /// that order, each starting 4-byte aligned.
    #[test]
    fn a_linux_guests_script_is_appended_to_its_initramfs() {
        let dir = tempfile::tempdir().unwrap();
        let put = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        };
        let inputs = LinuxInputs {
            kernel: put("Image", b"kernel"),
            initramfs: put("base.cpio", &[1u8; 6]),
            disk_tools: Some(put("tools.cpio", &[2u8; 8])),
            script: Some(put("run.sh", b"echo hello\n")),
        };
        let bytes = inputs.initramfs_bytes().unwrap();
        assert_eq!(&bytes[..8], &[1, 1, 1, 1, 1, 1, 0, 0]);
        assert_eq!(&bytes[8..16], &[2u8; 8]);
        let script = crate::build::linux::extra_archive(
            &[(
                crate::manifest::SCRIPT_PATH.to_owned(),
                b"echo hello\n".to_vec(),
            )],
            &[],
        );
        assert_eq!(&bytes[16..], &script[..]);
        let text = String::from_utf8_lossy(&script);
        assert!(text.contains("etc/mica/run") && text.contains("echo hello"));
        let without = LinuxInputs {
            script: None,
            disk_tools: None,
            ..inputs
        };
        assert_eq!(without.initramfs_bytes().unwrap(), vec![1u8; 6]);
    }
    use crate::image::tests::{elf, header, Load};
    use mica_abi::bootinfo::name_str;
    use mica_abi::sysimage::SystemImage;
    use mica_abi::Rights;

    const MANIFEST: &str = r#"
[system]
name = "pair"
arch = "aarch64"
[machine]
cpus = 2
[[domain]]
name = "writer"
kind = "guest"
binary = "guest"
memory_kib = 256
vcpus = 2
cpus = [1, 0]
arg = 7
priority = 2
[[domain]]
name = "reader"
kind = "service"
binary = "guest"
memory_kib = 256
start = "after-destroy"
after = "writer"
memory_from = "writer"
mmu_off_cacheable = false
"#;

    fn manifest(text: &str) -> Manifest {
        Manifest::parse(Path::new("images/pair.toml"), text).unwrap()
    }

    #[test]
    fn a_drive_server_is_configured_with_its_clients_extents() {
        let m = manifest(
            r#"
[system]
name = "one"
arch = "aarch64"
[machine]
cpus = 2
[[drive]]
name = "disk0"
file = "d.img"
size_mib = 64
server = "blk"
[[domain]]
name = "blk"
kind = "service"
binary = "blk"
memory_kib = 4096
[[domain]]
name = "g"
kind = "guest"
binary = "blkfront"
memory_kib = 1024
disks = [{ name = "vdb", server = "v", drive = "disk0", offset_mib = 2, size_mib = 3 }]
[[domain]]
name = "v"
kind = "service"
binary = "vda"
memory_kib = 1024
"#,
        );
        let table = domain_config(&m, 0).expect("blk drives disk0");
        let client = mica_abi::blkio::client(&table, 0).unwrap();
        assert_eq!(name_str(&client.name), "vdb");
        assert_eq!(
            client.extent,
            mica_abi::blkio::Extent {
                first: 2 * 2048,
                sectors: 3 * 2048
            }
        );
        assert_eq!(mica_abi::blkio::client(&table, 1), None);
        assert_eq!(domain_config(&m, 1), None);
        assert_eq!(domain_config(&m, 2), None);
    }

    /// A guest linked at the domain RAM base: text, data, and BSS.
    fn guest_elf() -> Vec<u8> {
        elf(
            &[
                Load {
                    paddr: DOMAIN_RAM_BASE,
                    bytes: b"\x1f\x20\x03\xd5text".to_vec(),
                    memsz: 8,
                },
                Load {
                    paddr: DOMAIN_RAM_BASE + 0x1000,
                    bytes: b"data!".to_vec(),
                    memsz: 0x800,
                },
                Load {
                    paddr: DOMAIN_RAM_BASE + 0x2000,
                    bytes: Vec::new(),
                    memsz: 0x1_0000,
                },
                Load {
                    paddr: DOMAIN_RAM_BASE + 0x8_0000,
                    bytes: Vec::new(),
                    memsz: 0,
                },
            ],
            DOMAIN_RAM_BASE,
            183,
        )
    }

    fn hypervisor() -> Vec<u8> {
        header(0x20_0000, 0x1_2345, &[0x5a; 0x900])
    }

    fn build_pair(m: &Manifest, guest: &[u8]) -> Result<Vec<u8>, BuildError> {
        let elves: Vec<DomainInput> = vec![
            (PathBuf::from("g/guest"), guest.to_vec()).into(),
            (PathBuf::from("g/guest"), guest.to_vec()).into(),
        ];
        build_bytes(m, Path::new("mica.img"), &hypervisor(), &elves)
    }

    #[test]
    fn round_trip_through_the_kernel_parser() {
        let file = build_pair(&manifest(MANIFEST), &guest_elf()).unwrap();
        let hyp = hypervisor();
        assert_eq!(file[..16], hyp[..16]);
        assert_eq!(file[24..hyp.len()], hyp[24..]);
        let offset = 0x1_3000; // image_size 0x12345 rounded up to 4 KiB
        assert!(file[hyp.len()..offset].iter().all(|&b| b == 0));
        let image_size = u64::from_le_bytes(file[16..24].try_into().unwrap());
        assert_eq!(image_size, (file.len() as u64).div_ceil(4096) * 4096);
        assert_eq!(sysimage::find_system_image(&file), Some(offset));

        let image = SystemImage::parse(&file[offset..]).unwrap();
        assert_eq!(offset + image.size(), file.len());
        let [writer, reader] = image.domains() else {
            panic!("two domains")
        };
        assert_eq!(writer.name(), "writer");
        assert_eq!(writer.memory_bytes, 256 * 1024);
        assert_eq!(writer.entry, DOMAIN_RAM_BASE);
        assert_eq!(writer.arg, 7);
        assert_eq!(writer.vcpu_count, 2);
        assert_eq!(
            writer.affinity,
            [1, 0, ANY_CPU, ANY_CPU, ANY_CPU, ANY_CPU, ANY_CPU, ANY_CPU]
        );
        assert_eq!(writer.flags, FLAG_START_AT_BOOT | FLAG_DEFAULT_CACHEABLE);
        assert_eq!((writer.start_after, writer.memory_from), (0, 0));
        assert_eq!(writer.priority, 2);
        assert_eq!(reader.name(), "reader");
        assert_eq!(reader.flags, 0, "waits, and not cacheable with the MMU off");
        assert_eq!(reader.affinity, [ANY_CPU; 8]);
        assert_eq!((reader.start_after, reader.memory_from), (1, 1));
        assert_eq!(reader.vcpu_count, 1);

        let segments = image.segments_of(writer).unwrap();
        assert_eq!(segments.len(), 3, "the p_memsz = 0 segment is dropped");
        assert_eq!(
            segments
                .iter()
                .map(|s| (s.ipa, s.file_size, s.mem_size))
                .collect::<Vec<_>>(),
            [
                (DOMAIN_RAM_BASE, 8, 8),
                (DOMAIN_RAM_BASE + 0x1000, 5, 0x800),
                (DOMAIN_RAM_BASE + 0x2000, 0, 0x1_0000)
            ]
        );
        assert_eq!(image.segment_bytes(&segments[0]), b"\x1f\x20\x03\xd5text");
        assert_eq!(image.segment_bytes(&segments[1]), b"data!");
        assert_eq!(image.segments_of(reader).unwrap()[1].offset % 8, 0);
    }

    /// MANIFEST's domains, both at boot, with two channels and two shared regions.
    fn linked_manifest() -> Manifest {
        let text = MANIFEST
            .replace("start = \"after-destroy\"\nafter = \"writer\"\n", "")
            .replace("memory_from = \"writer\"\n", "");
        manifest(&format!(
            r#"{text}
[[channel]]
name = "w-r"
reason = "requests"
a = {{ domain = "writer", endpoint = "to-reader" }}
b = {{ domain = "reader", endpoint = "to-writer" }}
[[channel]]
name = "r-w"
reason = "doorbell"
a = {{ domain = "reader", endpoint = "bell" }}
b = {{ domain = "writer", endpoint = "bell" }}
[[shared]]
name = "ring"
reason = "the rings"
owner = "writer"
peer = "reader"
pages = 2
owner_offset_kib = 128
peer_address = 0x8000_0000
peer_access = "read-write"
[[shared]]
name = "window"
reason = "a read-only view"
owner = "reader"
peer = "writer"
pages = 1
owner_offset_kib = 248
peer_address = 0x9000_0000
peer_access = "read-only"
"#
        ))
    }

    #[test]
    fn a_disk_becomes_a_virtio_record_and_a_share_of_the_guests_ram() {
        let text = MANIFEST
            .replace("start = \"after-destroy\"\nafter = \"writer\"\n", "")
            .replace("memory_from = \"writer\"\n", "")
            .replace(
                "priority = 2\n",
                "priority = 2\ndisks = [{ name = \"vda\", server = \"reader\", size_mib = 8 }]\n",
            );
        let file = build_pair(&manifest(&text), &guest_elf()).unwrap();
        let image = SystemImage::parse(&file[0x1_3000..]).unwrap();
        let [disk] = image.virtio() else {
            panic!("one virtio record")
        };
        assert_eq!(name_str(&disk.name), "vda");
        assert_eq!((disk.guest, disk.server, disk.slot), (0, 1, 0));
        assert_eq!((disk.capacity, disk.queue_size), (8 * 2048, 128));
        assert_eq!(disk.device_id, mica_abi::virtio::device::BLOCK);
        let [ram] = image.shares() else {
            panic!("the guest's RAM shared with the server")
        };
        assert_eq!(name_str(&ram.name), "vda-ram");
        // 256 KiB of RAM, the last page (the boot-info page) kept back.
        assert_eq!(
            (ram.owner, ram.peer, ram.pages, ram.owner_offset),
            (0, 1, 63, 0)
        );
        assert_eq!(ram.peer_ipa, 0x40_0000_0000);
        assert_eq!(ram.peer_rights, (Rights::READ | Rights::WRITE).bits());
        assert_eq!(
            ram.flags,
            mica_abi::sysimage::SHARE_PEER_ONLY,
            "not listed in the guest"
        );
    }

    #[test]
    fn channels_and_shares_reach_the_image() {
        let m = linked_manifest();
        let file = build_pair(&m, &guest_elf()).unwrap();
        let image = SystemImage::parse(&file[0x1_3000..]).unwrap();
        let channels: Vec<_> = image
            .channels()
            .iter()
            .map(|c| {
                (
                    c.a_domain,
                    name_str(&c.a_name),
                    c.b_domain,
                    name_str(&c.b_name),
                    c.reserved,
                )
            })
            .collect();
        assert_eq!(
            channels,
            [
                (0, "to-reader", 1, "to-writer", [0; 2]),
                (1, "bell", 0, "bell", [0; 2])
            ]
        );
        let [ring, window] = image.shares() else {
            panic!("two shares")
        };
        assert_eq!(name_str(&ring.name), "ring");
        assert_eq!((ring.owner, ring.peer, ring.pages), (0, 1, 2));
        assert_eq!(
            (ring.owner_offset, ring.peer_ipa),
            (128 * 1024, 0x8000_0000)
        );
        assert_eq!(ring.peer_rights, (Rights::READ | Rights::WRITE).bits());
        assert_eq!(name_str(&window.name), "window");
        assert_eq!((window.owner, window.peer, window.pages), (1, 0, 1));
        assert_eq!(
            (window.owner_offset, window.peer_ipa),
            (248 * 1024, 0x9000_0000)
        );
        assert_eq!(window.peer_rights, Rights::READ.bits());
        assert_eq!((ring.flags, window.flags), (0, 0));
        // Reproducible with the tables too.
        assert_eq!(build_pair(&linked_manifest(), &guest_elf()).unwrap(), file);
        // And a manifest without them writes none.
        let plain = build_pair(&manifest(MANIFEST), &guest_elf()).unwrap();
        let image = SystemImage::parse(&plain[0x1_3000..]).unwrap();
        assert!(image.channels().is_empty() && image.shares().is_empty());
    }

    #[test]
    fn builds_are_reproducible() {
        let m = manifest(MANIFEST);
        let first = build_pair(&m, &guest_elf()).unwrap();
        let second = build_pair(&manifest(MANIFEST), &guest_elf()).unwrap();
        assert_eq!(first, second);

        // And through the files, end to end.
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("images");
        std::fs::create_dir(&images).unwrap();
        std::fs::write(images.join("pair.toml"), MANIFEST).unwrap();
        std::fs::write(dir.path().join("guest"), guest_elf()).unwrap();
        std::fs::write(dir.path().join("mica.img"), hypervisor()).unwrap();
        let options = BuildOptions {
            hypervisor: dir.path().join("mica.img"),
            guests_dir: dir.path().to_owned(),
        };
        let out = [dir.path().join("a.img"), dir.path().join("b.img")];
        for o in &out {
            let s = build_file(&images.join("pair.toml"), &options, o).unwrap();
            assert_eq!(
                (s.system.as_str(), s.domains, s.system_offset),
                ("pair", 2, 0x1_3000)
            );
        }
        let a = std::fs::read(&out[0]).unwrap();
        assert_eq!(a, std::fs::read(&out[1]).unwrap());
        assert_eq!(a, first);
        let temp = build_to_temp(&images.join("pair.toml"), &options).unwrap();
        assert_eq!(std::fs::read(&temp.file).unwrap(), first);
        let path = temp.file.to_path_buf();
        drop(temp);
        assert!(!path.exists(), "the temporary image is removed");
    }

    fn domain_error(guest: &[u8]) -> String {
        build_pair(&manifest(MANIFEST), guest)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn guests_the_kernel_would_refuse_are_refused() {
        let low = elf(
            &[Load {
                paddr: 0x20_0000,
                bytes: b"code".to_vec(),
                memsz: 4,
            }],
            0x20_0000,
            183,
        );
        assert_eq!(
            domain_error(&low),
            "images/pair.toml:10:10: domain `writer`: g/guest: PT_LOAD segment at 0x200000 lies \
             outside the domain's RAM, which starts at 0x40000000: link the domain there \
             (p_paddr is the guest-physical address)"
        );
        let big = elf(
            &[Load {
                paddr: DOMAIN_RAM_BASE,
                bytes: b"code".to_vec(),
                memsz: 0x40_1000,
            }],
            DOMAIN_RAM_BASE,
            183,
        );
        assert!(domain_error(&big).ends_with(
            "PT_LOAD segment 0x40000000..0x40401000 ends beyond the domain's usable RAM \
             (0x40000000..0x4003f000; the last page of its RAM is its boot-info page): raise \
             memory_kib to at least 4104"
        ));
        // Exactly the domain's 256 KiB: the last page would be written over at boot.
        let fills = elf(
            &[Load {
                paddr: DOMAIN_RAM_BASE,
                bytes: b"code".to_vec(),
                memsz: 256 * 1024,
            }],
            DOMAIN_RAM_BASE,
            183,
        );
        assert!(domain_error(&fills).ends_with("raise memory_kib to at least 260"));
        let entry = elf(
            &[Load {
                paddr: DOMAIN_RAM_BASE,
                bytes: b"code".to_vec(),
                memsz: 4,
            }],
            0x1000,
            183,
        );
        assert!(domain_error(&entry).contains("entry point 0x1000 is outside"));
        let overlap = elf(
            &[
                Load {
                    paddr: DOMAIN_RAM_BASE,
                    bytes: b"code".to_vec(),
                    memsz: 0x2000,
                },
                Load {
                    paddr: DOMAIN_RAM_BASE + 0x1000,
                    bytes: b"data".to_vec(),
                    memsz: 4,
                },
            ],
            DOMAIN_RAM_BASE,
            183,
        );
        assert!(domain_error(&overlap).contains("overlap"));
        assert!(domain_error(&elf(&[], DOMAIN_RAM_BASE, 183)).contains("no PT_LOAD segment"));
        assert!(
            domain_error(&guest_elf().iter().map(|_| 0).collect::<Vec<u8>>())
                .ends_with("not an ELF file (no \\x7fELF magic)")
        );
        let wrong_machine = elf(
            &[Load {
                paddr: DOMAIN_RAM_BASE,
                bytes: b"code".to_vec(),
                memsz: 4,
            }],
            DOMAIN_RAM_BASE,
            62,
        );
        assert!(domain_error(&wrong_machine).contains("not aarch64"));
        let mut dynamic = guest_elf();
        dynamic[16] = 3; // ET_DYN
        assert!(domain_error(&dynamic).contains("e_type is 3, not ET_EXEC (2)"));
    }

    fn linux_domain(memory_kib: u64) -> (Domain, LinuxImage) {
        let m = manifest(&format!(
            "[system]\nname = \"l\"\narch = \"aarch64\"\n[machine]\ncpus = 2\nmemory_mib = 1024\n\
             [[domain]]\nname = \"linux\"\nkind = \"linux\"\nkernel = \"Image\"\n\
             initramfs = \"initrd\"\ncmdline = \"console=ttyAMA0 quiet\"\nvcpus = 2\n\
             memory_kib = {memory_kib}\n"
        ));
        let d = m.domains[0].clone();
        let DomainElf::Linux(linux) = d.elf.clone() else {
            panic!("not a Linux domain")
        };
        (d, linux)
    }

    #[test]
    fn a_linux_domain_boots_by_the_arm64_protocol() {
        let (d, linux) = linux_domain(64 * 1024);
        let kernel = header(0, 0x20_0000, &[0x11; 0x1000]);
        let initrd = vec![0x22; 5000];
        let built = load_linux(&d, &linux, &kernel, &initrd, &[]).unwrap();
        let r = built.record;
        assert_eq!(r.flags & FLAG_LINUX, FLAG_LINUX);
        assert_eq!(
            r.flags & FLAG_DEFAULT_CACHEABLE,
            0,
            "Linux runs with its caches off"
        );
        assert_eq!(
            r.entry, DOMAIN_RAM_BASE,
            "the Image at the 2 MiB-aligned RAM base"
        );
        let [image, initramfs, tree] = built.segments.as_slice() else {
            panic!("{} segments", built.segments.len())
        };
        assert_eq!(
            (image.ipa, image.bytes.as_slice()),
            (r.entry, kernel.as_slice())
        );
        assert_eq!(tree.ipa, r.arg, "x0 is the device tree");
        assert_eq!(&tree.bytes[..4], &[0xd0, 0x0d, 0xfe, 0xed], "an FDT");
        assert_eq!(initramfs.bytes, initrd);
        // Everything inside the RAM the domain may load into, nothing overlapping.
        let usable = DomainLayout::new(d.memory_kib * 1024).usable_end();
        assert!(image.ipa + 0x20_0000 <= initramfs.ipa);
        assert!(initramfs.ipa + initramfs.mem_size <= tree.ipa);
        assert!(tree.ipa + tree.mem_size <= usable);
        // The tree names the initramfs where it was put.
        let start = (initramfs.ipa as u32).to_be_bytes();
        assert!(tree.bytes.windows(4).any(|w| w == start));
    }

    #[test]
    fn a_linux_domain_too_small_for_its_kernel_says_how_much_would_do() {
        let (d, linux) = linux_domain(16 * 1024);
        let kernel = header(0, 0x200_0000, &[0x11; 0x1000]);
        let err = load_linux(&d, &linux, &kernel, &[0; 4096], &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("need at least"), "{err}");
        let not_an_image = load_linux(&d, &linux, b"text", &[], &[])
            .unwrap_err()
            .to_string();
        assert!(
            not_an_image.contains("not an arm64 Linux kernel Image"),
            "{not_an_image}"
        );
    }

    #[test]
    fn the_hypervisor_must_be_a_plain_image() {
        let m = manifest(MANIFEST);
        let elves: Vec<DomainInput> = vec![
            (PathBuf::from("g"), guest_elf()).into(),
            (PathBuf::from("g"), guest_elf()).into(),
        ];
        let built = build_bytes(&m, Path::new("mica.img"), &hypervisor(), &elves).unwrap();
        let err = build_bytes(&m, Path::new("x.img"), &built, &elves).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("hypervisor x.img: it already carries a system image"),
            "{err}"
        );
        let err = build_bytes(&m, Path::new("x.elf"), &guest_elf(), &elves).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("(make it with `mica image`, e.g. `make build`)"),
            "{err}"
        );
    }

    #[test]
    fn missing_inputs_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pair.toml");
        std::fs::write(&path, MANIFEST).unwrap();
        let options = BuildOptions {
            hypervisor: dir.path().join("mica.img"),
            guests_dir: dir.path().join("guests"),
        };
        let err = build_file(&path, &options, &dir.path().join("out.img")).unwrap_err();
        assert!(err.to_string().contains("run `make build` first"), "{err}");
        std::fs::create_dir(dir.path().join("guests")).unwrap();
        std::fs::write(dir.path().join("guests/guest"), guest_elf()).unwrap();
        let err = build_file(&path, &options, &dir.path().join("out.img")).unwrap_err();
        assert!(matches!(err, BuildError::Read { .. }), "{err}");
        assert!(!dir.path().join("out.img").exists());
    }

    #[test]
    fn check_reports_every_domain_whose_elf_is_missing_or_unusable() {
        let dir = tempfile::tempdir().unwrap();
        let m = manifest(MANIFEST);
        let errors: Vec<String> = check_domain_elves(&m, dir.path())
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors.iter().all(|e| e.contains("run `make build` first")));
        assert!(errors[0].contains("`writer`") && errors[1].contains("`reader`"));

        // A guest linked outside the domain's RAM: both domains are reported, by line.
        std::fs::write(dir.path().join("guest"), b"\x7fELF not really").unwrap();
        let errors = check_domain_elves(&m, dir.path());
        assert_eq!(errors.len(), 2);
        assert!(errors[0].to_string().starts_with("images/pair.toml:"));

        // The same file `mica build` takes passes.
        std::fs::write(dir.path().join("guest"), guest_elf()).unwrap();
        assert!(check_domain_elves(&m, dir.path()).is_empty());
        let small = MANIFEST.replace("memory_kib = 256", "memory_kib = 64");
        let errors = check_domain_elves(&manifest(&small), dir.path());
        assert!(
            errors[0]
                .to_string()
                .contains("raise memory_kib to at least"),
            "{}",
            errors[0]
        );
    }
}
