//! A checked manifest: the machine, the domains (referring to each other by index), the
//! pools, channels, shared regions and devices.

use super::*;

// ---------------------------------------------------------------------------------------
// The checked manifest.

/// The instruction set a system is built for.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// Armv8-A, hypervisor at EL2.
    Aarch64,
}

/// The scheduling policy of a `[[pool]]` (`mica_abi::sched::policy`).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PoolPolicy {
    /// Fair share by weight, optional cap.
    Credit,
    /// Budget/period reservations with admission control.
    Rt,
    /// One vCPU per CPU.
    Partition,
}

impl PoolPolicy {
    /// The code in the policy domain's argument (`mica_abi::sched::pack_policies`).
    pub fn code(self) -> u8 {
        match self {
            PoolPolicy::Credit => mica_abi::sched::policy::CREDIT,
            PoolPolicy::Rt => mica_abi::sched::policy::RT,
            PoolPolicy::Partition => mica_abi::sched::policy::PARTITION,
        }
    }

    /// The name in the manifest.
    pub fn name(self) -> &'static str {
        match self {
            PoolPolicy::Credit => "credit",
            PoolPolicy::Rt => "rt",
            PoolPolicy::Partition => "partition",
        }
    }
}

/// A checked `[[pool]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    /// Unique among pools.
    pub name: String,
    /// Its physical CPUs (each in no other pool).
    pub cpus: Vec<u32>,
    /// Its policy.
    pub policy: PoolPolicy,
}

/// What a domain is for.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DomainKind {
    /// A guest: runs a workload.
    Guest,
    /// A service domain: serves other domains (scheduler, control, device backends).
    Service,
    /// A guest running an unmodified Linux kernel (booted by the arm64 Linux boot protocol,
    /// `docs/linux-guests.md`).
    Linux,
}

/// The machine the system boots on (what `mica run` and `mica smoke` give QEMU).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    /// Physical CPUs.
    pub cpus: u32,
    /// RAM in MiB.
    pub memory_mib: u64,
    /// Hypervisor boot arguments (`/chosen/bootargs`).
    pub boot_args: Option<String>,
}

/// Where a domain's ELF comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DomainElf {
    /// A guest binary of this workspace, looked for in the guests directory.
    Binary(String),
    /// A file, relative to the manifest's directory.
    Path(PathBuf),
    /// Not an ELF: a Linux kernel Image with its initramfs and command line.
    Linux(LinuxImage),
}

/// Where a Linux guest's kernel or initramfs comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinuxFile {
    /// What `mica fetch-linux` keeps under `build/linux` (Debian's kernel, the initramfs built
    /// for it); `mica build` fetches it when the cache does not have it.
    Fetched,
    /// A file, relative to the manifest's directory.
    Path(PathBuf),
}

/// A `kind = "linux"` domain's boot files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinuxImage {
    /// The arm64 Image (`kernel = "FILE"`, else [`LinuxFile::Fetched`]).
    pub kernel: LinuxFile,
    /// The initramfs (`initramfs = "FILE"`, else [`LinuxFile::Fetched`]).
    pub initramfs: LinuxFile,
    /// The kernel command line (`cmdline`, else [`DEFAULT_CMDLINE`]).
    pub cmdline: String,
    /// A shell script `/init` runs once the guest is ready, beside its shell
    /// (`script = "FILE"`, relative to the manifest; it becomes [`SCRIPT_PATH`], which only
    /// the fetched initramfs's `/init` runs).
    pub script: Option<PathBuf>,
}

/// Where a Linux guest's `script` is in its initramfs (`/init` runs it if it is there).
pub const SCRIPT_PATH: &str = "etc/mica/run";

/// A Linux guest's command line unless the manifest gives one: the console is the domain's
/// emulated PL011 (the device tree's `stdout-path` says so too).
pub const DEFAULT_CMDLINE: &str = "console=ttyAMA0";
/// Longest command line (arm64 Linux's `COMMAND_LINE_SIZE` is 2048, terminator included).
pub const MAX_CMDLINE: usize = 2047;

/// When a domain starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// When the system boots.
    AtBoot,
    /// When the domain with this index (in [`Manifest::domains`]) is destroyed.
    AfterDestroyOf(usize),
}

/// One checked domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Domain {
    /// Unique name: 1..=31 bytes of `a-z`, `0-9`, `-`.
    pub name: String,
    /// Guest or service.
    pub kind: DomainKind,
    /// Its ELF.
    pub elf: DomainElf,
    /// Where `binary`/`path` is written, for errors about the file.
    pub elf_at: Location,
    /// RAM in KiB (a multiple of 4, at least 64).
    pub memory_kib: u64,
    /// vCPUs (1..=8).
    pub vcpus: u32,
    /// The physical CPU of each vCPU, or `None` to let the kernel choose.
    pub cpus: Option<Vec<u32>>,
    /// Passed to vCPU 0 in x0.
    pub arg: u64,
    /// When it starts.
    pub start: Start,
    /// The index of the domain whose scrubbed RAM frames it receives, if any.
    pub memory_from: Option<usize>,
    /// Scheduling priority (higher runs first).
    pub priority: u32,
    /// Run with the MMU off on cacheable memory (`FLAG_DEFAULT_CACHEABLE`; never for Linux).
    pub mmu_off_cacheable: bool,
    /// What it asks the scheduling policy for (all zero: nothing).
    pub sched: SchedRequest,
    /// It is the scheduling policy domain (`FLAG_SCHED_CONTROL`); its `arg` is the pools'
    /// policies (`mica_abi::sched::pack_policies`).
    pub sched_policy: bool,
    /// It is the control domain (`FLAG_CONTROL`).
    pub control: bool,
}

/// A checked device passed through to a domain (`devices = [...]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// Its name in the domain's boot-info page (1..=19 bytes; the interrupt is `NAME-irq`).
    pub name: String,
    /// The index of the domain that gets it.
    pub domain: usize,
    /// The page-aligned physical base of its MMIO window (`address` rounded down).
    pub mmio_base: u64,
    /// The window's size: whole pages covering `address .. address + size`.
    pub mmio_size: u64,
    /// GIC INTID of its interrupt (32..=1019), or 0 for none.
    pub interrupt: u32,
}

/// A disk of the machine (`[[drive]]`): a host file QEMU presents as a virtio-blk device on
/// the `virt` board's virtio-mmio transport [`Drive::transport`], passed through to its server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drive {
    /// Its name: the server's device (and interrupt, `NAME-irq`).
    pub name: String,
    /// The host file, relative to the working directory (the manifest's `file` is relative
    /// to the manifest).
    pub file: PathBuf,
    /// Its size in MiB: the file is created this large (sparse) when missing.
    pub size_mib: u64,
    /// The index of the domain that drives it.
    pub server: usize,
    /// The virtio-mmio transport QEMU puts it on ([`drive_transport`]).
    pub transport: u32,
}

/// QEMU's `virt` board has [`VIRT_TRANSPORTS`] virtio-mmio transports of 0x200 bytes from
/// [`VIRT_TRANSPORT_BASE`], transport `n`'s interrupt SPI `16 + n`: eight to a 4 KiB page.
/// A device is passed through a page at a time, so each drive gets a page of its own: the
/// last transport of pages 2, 1 and 0 (23, 15, 7; `mica run` names it with `bus=`), page 3
/// being the control domain's console's (transport 31, the first `-device`). At most
/// [`MAX_DRIVES`].
pub const fn drive_transport(index: u32) -> Option<u32> {
    if index < MAX_DRIVES {
        Some(VIRT_TRANSPORTS - 1 - 8 * (index + 1))
    } else {
        None
    }
}

/// The most `[[drive]]`s a machine has ([`drive_transport`]).
pub const MAX_DRIVES: u32 = 3;

/// The first virtio-mmio transport of QEMU's `virt` board.
pub const VIRT_TRANSPORT_BASE: u64 = 0x0a00_0000;
/// How many it has.
pub const VIRT_TRANSPORTS: u32 = 32;
/// Bytes of each.
pub const VIRT_TRANSPORT_SIZE: u64 = 0x200;
/// The INTID of transport 0's interrupt (SPI 16).
pub const VIRT_TRANSPORT_FIRST_INTID: u32 = 48;

/// A virtio block device of a guest (its `disks`), served by another domain (docs/virtio.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disk {
    /// Its name: the server's capabilities are NAME (the device), NAME-events (its
    /// notifications) and NAME-ram (the guest's RAM, shared with the server).
    pub name: String,
    /// The index of the guest.
    pub guest: usize,
    /// The index of the domain that serves it.
    pub server: usize,
    /// The guest's virtio slot (its disks in order, from 0).
    pub slot: u32,
    /// Its size in 512-byte sectors.
    pub sectors: u64,
    /// Pages of the guest's RAM shared with the server (all of it below the last page).
    pub ram_pages: u32,
    /// Where the server sees the guest's RAM.
    pub ram_address: u64,
    /// The extent of a `[[drive]]` the disk is, if it is not a RAM disk of its server.
    pub on_drive: Option<OnDrive>,
}

/// A guest's disk as an extent of a machine disk (`drive` and `offset_mib`): the server (a
/// device domain) passes its requests to the drive's server (the block service) through the
/// channel and the region the toolstack adds for it ([`Manifest::channels`], [`Manifest::shares`],
/// both named `NAME-io`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OnDrive {
    /// The index of the drive in [`Manifest::drives`].
    pub drive: usize,
    /// The extent's first sector on the drive.
    pub first_sector: u64,
}

/// How a shared region is mapped into its peer.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum PeerAccess {
    /// Readable (`Rights::READ`).
    ReadOnly,
    /// Readable and writable (`Rights::READ | Rights::WRITE`).
    ReadWrite,
}

impl PeerAccess {
    /// The `Rights` of the peer's capability and mapping.
    pub fn rights(self) -> Rights {
        match self {
            PeerAccess::ReadOnly => Rights::READ,
            PeerAccess::ReadWrite => Rights::READ | Rights::WRITE,
        }
    }
}

/// One end of a checked channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The domain's index in [`Manifest::domains`].
    pub domain: usize,
    /// The capability's name in that domain's boot-info page (1..=23 bytes).
    pub name: String,
}

/// A checked `[[channel]]`: an event channel created at boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Channel {
    /// Unique among channels.
    pub name: String,
    /// Why the two domains may signal each other.
    pub reason: String,
    /// The first end.
    pub a: Endpoint,
    /// The second end, in another domain.
    pub b: Endpoint,
}

/// A checked `[[shared]]`: part of one domain's RAM mapped into another at boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Share {
    /// The region's and both capabilities' name (1..=23 bytes).
    pub name: String,
    /// Why the peer may see this memory.
    pub reason: String,
    /// The index of the domain whose RAM it is.
    pub owner: usize,
    /// The index of the domain it is mapped into.
    pub peer: usize,
    /// Size in 4 KiB pages (at least 1).
    pub pages: u32,
    /// Byte offset in the owner's RAM (page aligned, below its boot-info page).
    pub owner_offset: u64,
    /// Guest-physical address in the peer (page aligned, above its RAM).
    pub peer_address: u64,
    /// How the peer may access it.
    pub peer_access: PeerAccess,
}

impl Share {
    /// Size in bytes.
    pub fn size(&self) -> u64 {
        u64::from(self.pages) * PAGE_BYTES
    }
}

/// A checked manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The file it was read from.
    pub path: PathBuf,
    /// `[system] name`.
    pub name: String,
    /// `[system] arch`.
    pub arch: Arch,
    /// `[machine]`.
    pub machine: Machine,
    /// The domains, in file order (their index is their place in the system image).
    pub domains: Vec<Domain>,
    /// The `[[channel]]` tables, in file order.
    pub channels: Vec<Channel>,
    /// The `[[shared]]` tables, in file order.
    pub shares: Vec<Share>,
    /// The `[[pool]]` tables, in file order.
    pub pools: Vec<Pool>,
    /// Every domain's `devices`, in domain order.
    pub devices: Vec<Device>,
    /// Every domain's `disks`, in domain order.
    pub disks: Vec<Disk>,
    /// The machine's `[[drive]]`s, in order (each is also a device of its server, in
    /// `devices`).
    pub drives: Vec<Drive>,
}
