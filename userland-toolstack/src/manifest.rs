//! System manifests: one TOML file in `images/` describes a whole Mica system.
//!
//! The system is data (STYLE.md §8): the machine it boots on, every domain, and the event
//! channels and shared regions between domains (each with the reason it exists), each a table
//! of named fields, never a positional tuple or a string mini-language. A manifest is read
//! in two steps. Serde, with `deny_unknown_fields` on every table, turns the text into the
//! `*Section` structs that mirror the file, keeping the source span of each value that a
//! later check may complain about; [`Manifest::parse`] then checks what serde cannot (names,
//! ranges, references between domains, memory that must fit, shared regions that must fit
//! and not overlap, one name per capability in each domain) and produces a [`Manifest`]
//! whose domains refer to each other by index. Every error names the file and, where there
//! is a span, the line and column; it says what is wrong and what to write instead.
//!
//! Whether the domains' ELF files exist is a separate step ([`Manifest::domain_elfs`]), so
//! a manifest can be checked on a machine where nothing has been built yet.
//! `docs/manifest.md` documents the format field by field.

use mica_abi::bootinfo::{MAX_CAPS, MAX_REGIONS};
use mica_abi::sysimage::{
    SchedRequest, CONTROL_POOL_BYTES, DOMAIN_RAM_BASE, MAX_CHANNELS, MAX_DEVICES, MAX_DOMAINS,
    MAX_SHARES, MAX_VCPUS_PER_DOMAIN, NAME_LEN,
};
use mica_abi::Rights;
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// RAM the hypervisor keeps for itself; the domains share the rest of `[machine] memory_mib`.
pub const HYPERVISOR_RESERVED_MIB: u64 = 64;
/// Most physical CPUs: the kernel records at most this many.
pub const MAX_MACHINE_CPUS: u32 = mica_abi::layout::MAX_CPUS as u32;
/// Least machine RAM: the hypervisor's share plus room for the boot-loader layout of
/// `mica run` (a DTB at RAM base + 64 MiB).
pub const MIN_MACHINE_MEMORY_MIB: u64 = 128;
/// Most machine RAM: QEMU `virt` has RAM from 1 GiB up to 256 GiB.
pub const MAX_MACHINE_MEMORY_MIB: u64 = 255 * 1024;
/// `[machine] memory_mib` when the manifest leaves it out (as `mica run`'s default `512M`).
pub const DEFAULT_MACHINE_MEMORY_MIB: u64 = 512;
/// Longest domain or system name, in bytes (a domain record holds 32, NUL-terminated).
pub const MAX_NAME_LEN: usize = 31;
/// Longest name of a channel, endpoint or shared region, in bytes (a boot-info page entry
/// holds 24, NUL-padded).
pub const MAX_CAP_NAME_LEN: usize = NAME_LEN - 1;
/// Bytes of a page: shared regions are whole pages.
pub const PAGE_BYTES: u64 = mica_abi::layout::PAGE_SIZE;
/// End of the guest-physical address space the kernel gives every domain (39 bits).
pub const IPA_LIMIT: u64 = 1 << 39;
/// Least memory a domain may have.
pub const MIN_DOMAIN_MEMORY_KIB: u64 = 64;
/// Where `binary = "NAME"` is looked for unless `--guests-dir` says otherwise.
pub const DEFAULT_GUESTS_DIR: &str = "target/aarch64-unknown-none/release";

// ---------------------------------------------------------------------------------------
// The file as written.

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    system: SystemSection,
    machine: MachineSection,
    #[serde(default, rename = "domain")]
    domains: Vec<DomainSection>,
    #[serde(default, rename = "channel")]
    channels: Vec<ChannelSection>,
    #[serde(default, rename = "shared")]
    shares: Vec<SharedSection>,
    #[serde(default, rename = "pool")]
    pools: Vec<PoolSection>,
}

/// `[system]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SystemSection {
    name: Spanned<String>,
    arch: Arch,
}

/// `[machine]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MachineSection {
    cpus: Spanned<u32>,
    #[serde(default)]
    memory_mib: Option<Spanned<u64>>,
    #[serde(default)]
    boot_args: Option<String>,
}

/// One `[[domain]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DomainSection {
    name: Spanned<String>,
    kind: DomainKind,
    #[serde(default)]
    binary: Option<Spanned<String>>,
    #[serde(default)]
    path: Option<Spanned<String>>,
    memory_kib: Spanned<u64>,
    #[serde(default)]
    vcpus: Option<Spanned<u32>>,
    #[serde(default)]
    cpus: Option<Spanned<Vec<Spanned<u32>>>>,
    #[serde(default)]
    arg: Option<Spanned<u64>>,
    #[serde(default)]
    start: Option<Spanned<StartMode>>,
    #[serde(default)]
    after: Option<Spanned<String>>,
    #[serde(default)]
    memory_from: Option<Spanned<String>>,
    #[serde(default)]
    priority: u32,
    #[serde(default)]
    mmu_off_cacheable: Option<bool>,
    #[serde(default)]
    sched: Option<Spanned<SchedSection>>,
    #[serde(default)]
    sched_policy: Option<Spanned<bool>>,
    #[serde(default)]
    memory_node: Option<Spanned<u64>>,
    #[serde(default)]
    control: Option<Spanned<bool>>,
    #[serde(default)]
    devices: Vec<DeviceSection>,
}

/// One entry of a domain's `devices = [...]`: an MMIO device passed through to it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceSection {
    name: Spanned<String>,
    address: Spanned<u64>,
    size: Spanned<u64>,
    #[serde(default)]
    interrupt: Option<Spanned<u64>>,
}

/// A domain's `sched = { ... }`: what it asks the scheduling policy of its pool for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SchedSection {
    #[serde(default)]
    weight: Option<Spanned<u64>>,
    #[serde(default)]
    cap_percent: Option<Spanned<u64>>,
    #[serde(default)]
    budget_us: Option<Spanned<u64>>,
    #[serde(default)]
    period_us: Option<Spanned<u64>>,
}

/// One `[[pool]]`: physical CPUs scheduled by one policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolSection {
    name: Spanned<String>,
    cpus: Spanned<Vec<Spanned<u32>>>,
    policy: Spanned<PoolPolicy>,
}

/// One `[[channel]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelSection {
    name: Spanned<String>,
    /// Optional here so that a missing one gets our message, not serde's.
    #[serde(default)]
    reason: Option<Spanned<String>>,
    a: EndpointSection,
    b: EndpointSection,
}

/// `a = { domain = "...", endpoint = "..." }` of a `[[channel]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointSection {
    domain: Spanned<String>,
    endpoint: Spanned<String>,
}

/// One `[[shared]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SharedSection {
    name: Spanned<String>,
    #[serde(default)]
    reason: Option<Spanned<String>>,
    owner: Spanned<String>,
    peer: Spanned<String>,
    pages: Spanned<u32>,
    owner_offset_kib: Spanned<u64>,
    peer_address: Spanned<u64>,
    peer_access: PeerAccess,
}

/// `start`, as written.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum StartMode {
    Boot,
    AfterDestroy,
}

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
}

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
    /// Run with the MMU off on cacheable memory (`FLAG_DEFAULT_CACHEABLE`).
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
}

// ---------------------------------------------------------------------------------------
// Errors.

/// A line and column in a file, both 1-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// Line.
    pub line: usize,
    /// Column, in characters.
    pub column: usize,
}

/// Where in which file a problem is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub path: PathBuf,
    /// Where in it, when known.
    pub position: Option<Position>,
}

impl Location {
    /// The position of byte `offset` of `text`, the contents of `path`.
    pub fn at_offset(path: &Path, text: &str, offset: usize) -> Location {
        let mut at = offset.min(text.len());
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        let before = &text[..at];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Location {
            path: path.to_owned(),
            position: Some(Position {
                line: before.matches('\n').count() + 1,
                column: before[line_start..].chars().count() + 1,
            }),
        }
    }

    /// The whole file, no position.
    pub fn file(path: &Path) -> Location {
        Location {
            path: path.to_owned(),
            position: None,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some(Position { line, column }) => {
                write!(f, "{}:{line}:{column}", self.path.display())
            }
            None => write!(f, "{}", self.path.display()),
        }
    }
}

/// Why a manifest cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The manifest could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The manifest.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not TOML or breaks the schema (unknown field, wrong type, missing field).
    #[error("{at}: {message}")]
    Syntax {
        /// Where.
        at: Location,
        /// The parser's message.
        message: String,
    },
    /// A value is out of range or contradicts another.
    #[error("{at}: {problem}")]
    Invalid {
        /// Where.
        at: Location,
        /// What is wrong and what to write instead (boxed: some problems carry several
        /// names and numbers).
        problem: Box<Problem>,
    },
    /// A `binary = "NAME"` was not found in the guests directory.
    #[error("{at}: domain `{domain}`: binary `{binary}` not found at {tried}: run `make build` first (or pass --guests-dir DIR if the guests are built elsewhere)")]
    MissingBinary {
        /// Where `binary` is written.
        at: Location,
        /// The domain.
        domain: String,
        /// The binary's name.
        binary: String,
        /// The path looked at.
        tried: PathBuf,
    },
    /// A `path = "FILE"` does not exist.
    #[error("{at}: domain `{domain}`: ELF file {tried} does not exist (`path` is relative to the manifest's directory)")]
    MissingPath {
        /// Where `path` is written.
        at: Location,
        /// The domain.
        domain: String,
        /// The path looked at.
        tried: PathBuf,
    },
}

/// What is wrong with a value the parser accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// A system name breaks the rules.
    #[error("system name `{0}` is not allowed: use 1 to 31 characters from a-z, 0-9 and `-`")]
    BadSystemName(String),
    /// A domain name breaks the rules.
    #[error("domain name `{0}` is not allowed: use 1 to 31 characters from a-z, 0-9 and `-`")]
    BadDomainName(String),
    /// Two domains share a name.
    #[error("a domain named `{name}` already exists (line {first_line}): give every domain a unique name")]
    DuplicateDomain {
        /// The name.
        name: String,
        /// Line of the first one.
        first_line: usize,
    },
    /// No `[[domain]]` at all.
    #[error("the system has no domains: add at least one [[domain]] table")]
    NoDomains,
    /// Too many domains.
    #[error("the system has {0} domains; a system image holds at most 16: remove some")]
    TooManyDomains(usize),
    /// `[machine] cpus` out of range.
    #[error("cpus = {0}: a machine has 1 to {MAX_MACHINE_CPUS} CPUs (the kernel records at most {MAX_MACHINE_CPUS})")]
    MachineCpus(u32),
    /// `[machine] memory_mib` out of range.
    #[error("memory_mib = {0}: give 128 to 261120 (the hypervisor keeps 64 MiB for itself; QEMU virt has at most 255 GiB of RAM)")]
    MachineMemory(u64),
    /// Neither or both of `binary` and `path`.
    #[error("domain `{0}` needs exactly one of `binary = \"NAME\"` (a guest of this workspace) or `path = \"FILE\"` (an ELF file, relative to the manifest)")]
    ElfSource(String),
    /// `binary` is not a plain file name.
    #[error("binary = \"{0}\" is not the name of a guest binary: write just the name (e.g. \"hello\"), or use `path = \"...\"` for an ELF file elsewhere")]
    BadBinaryName(String),
    /// `path` is empty.
    #[error("path is empty: give the ELF file's path, relative to the manifest's directory")]
    EmptyPath,
    /// `memory_kib` out of range.
    #[error("memory_kib = {0}: give a multiple of 4 (whole 4 KiB pages), at least 64")]
    DomainMemory(u64),
    /// `vcpus` out of range.
    #[error("vcpus = {0}: give 1 to 8")]
    Vcpus(u32),
    /// `cpus` has the wrong length.
    #[error("cpus has {len} entries but vcpus = {vcpus}: give one physical CPU per vCPU, or leave `cpus` out to let the kernel choose")]
    CpusLength {
        /// Entries in `cpus`.
        len: usize,
        /// `vcpus`.
        vcpus: u32,
    },
    /// A `cpus` entry names a CPU the machine does not have.
    #[error("CPU {cpu} does not exist: [machine] cpus = {machine_cpus}, so use 0 to {last}, or raise [machine] cpus", last = machine_cpus - 1)]
    NoSuchCpu {
        /// The entry.
        cpu: u32,
        /// `[machine] cpus`.
        machine_cpus: u32,
    },
    /// `after`/`memory_from` names no domain.
    #[error("{field} = \"{name}\" names no domain of this system; the domains are: {known}")]
    UnknownDomain {
        /// `after` or `memory_from`.
        field: &'static str,
        /// The name written.
        name: String,
        /// The domains, comma-separated.
        known: String,
    },
    /// `after`/`memory_from` names the domain itself.
    #[error("{field} names the domain itself: name another domain")]
    SelfReference {
        /// `after` or `memory_from`.
        field: &'static str,
    },
    /// `start = "after-destroy"` without `after`.
    #[error("start = \"after-destroy\" needs `after = \"NAME\"`, the domain whose destruction starts this one")]
    StartWithoutAfter,
    /// `after` without `start = "after-destroy"`.
    #[error("`after` only applies to a domain that waits: add start = \"after-destroy\", or remove `after`")]
    AfterWithoutStart,
    /// `memory_from` without `after` naming the same domain.
    #[error("memory_from = \"{memory_from}\" needs start = \"after-destroy\" and after = \"{memory_from}\": a domain can only receive the memory of the domain whose destruction starts it")]
    MemoryFromWithoutAfter {
        /// The donor named.
        memory_from: String,
    },
    /// `memory_from` with a different memory size.
    #[error("memory_kib = {memory_kib} but `{donor}` has memory_kib = {donor_kib}: a domain that receives another's frames takes all of them, so give both the same memory_kib")]
    MemoryFromSize {
        /// The receiver's size.
        memory_kib: u64,
        /// The donor.
        donor: String,
        /// The donor's size.
        donor_kib: u64,
    },
    /// Two domains receive the same donor's frames.
    #[error("`{receiver}` already receives the memory of `{donor}`: only one domain can")]
    DonorTaken {
        /// The first receiver.
        receiver: String,
        /// The donor.
        donor: String,
    },
    /// Domains wait for each other in a cycle.
    #[error("start-after cycle {cycle}: none of these domains would ever start; give one of them start = \"boot\"")]
    StartCycle {
        /// `a -> b -> a`.
        cycle: String,
    },
    /// A channel, endpoint or shared-region name breaks the rules.
    #[error("{what} `{name}` is not allowed: use 1 to 23 characters from a-z, 0-9 and `-` (a boot-info page entry holds 24 bytes)")]
    BadCapabilityName {
        /// `channel name`, `endpoint` or `shared region name`.
        what: &'static str,
        /// The name written.
        name: String,
    },
    /// Two channels share a name.
    #[error("a channel named `{name}` already exists (line {first_line}): give every channel a unique name")]
    DuplicateChannel {
        /// The name.
        name: String,
        /// Line of the first one.
        first_line: usize,
    },
    /// A channel or shared region without a reason.
    #[error("{what} `{name}` needs a `reason`: add reason = \"...\", saying why this authority exists (every capability the manifest grants is named and given a reason)")]
    MissingReason {
        /// `channel` or `shared region`.
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// Both endpoints of a channel in one domain.
    #[error("both endpoints of channel `{channel}` are in domain `{domain}`: a channel connects two different domains, so name another domain in `b`")]
    ChannelToItself {
        /// The channel.
        channel: String,
        /// The domain.
        domain: String,
    },
    /// A shared region whose peer is its owner.
    #[error("shared region `{name}` has `{domain}` as both owner and peer: a domain already has its own RAM, so name another domain as `peer`")]
    ShareWithItself {
        /// The region.
        name: String,
        /// The domain.
        domain: String,
    },
    /// A name used twice in one domain's boot-info page.
    #[error("domain `{domain}` already has a capability named `{name}` (line {first_line}): channel endpoints and shared regions share one namespace per domain, so choose another name")]
    DuplicateCapability {
        /// The domain.
        domain: String,
        /// The name.
        name: String,
        /// Line of the first one.
        first_line: usize,
    },
    /// Too many channels.
    #[error(
        "the system has {0} channels; a system image holds at most {MAX_CHANNELS}: remove some"
    )]
    TooManyChannels(usize),
    /// Too many shared regions.
    #[error(
        "the system has {0} shared regions; a system image holds at most {MAX_SHARES}: remove some"
    )]
    TooManyShares(usize),
    /// More names than a boot-info page lists.
    #[error("domain `{domain}` gets more than {MAX_CAPS} named capabilities (channel endpoints and shared regions); its boot-info page lists at most {MAX_CAPS}: remove some")]
    TooManyCapabilities {
        /// The domain.
        domain: String,
    },
    /// More shared regions than a boot-info page lists.
    #[error("domain `{domain}` owns or maps more than {MAX_REGIONS} shared regions; its boot-info page lists at most {MAX_REGIONS}: remove some, or merge them into larger ones")]
    TooManyRegions {
        /// The domain.
        domain: String,
    },
    /// `pages = 0`.
    #[error("pages = 0: a shared region has at least one 4 KiB page")]
    SharePages,
    /// `owner_offset_kib` not page aligned.
    #[error("owner_offset_kib = {0}: give a multiple of 4 (shared regions are whole 4 KiB pages)")]
    OwnerOffsetAlign(u64),
    /// The region does not lie in the owner's RAM below its boot-info page.
    #[error("the region {offset_kib}..{end_kib} KiB does not fit in `{owner}`'s RAM below its last page ({owner_kib} KiB of RAM; the last 4 KiB are its boot-info page): lower owner_offset_kib or pages, or raise `{owner}`'s memory_kib to at least {least_kib}")]
    ShareOutsideOwner {
        /// `owner_offset_kib`.
        offset_kib: u64,
        /// `owner_offset_kib` + the size in KiB.
        end_kib: u64,
        /// The owner.
        owner: String,
        /// The owner's `memory_kib`.
        owner_kib: u64,
        /// The least `memory_kib` that holds the region and the boot-info page.
        least_kib: u64,
    },
    /// Two shared regions overlap in their owner's RAM.
    #[error("the region {offset_kib}..{end_kib} KiB of `{owner}`'s RAM overlaps shared region `{other}` ({other_offset_kib}..{other_end_kib} KiB, line {other_line}): give the regions disjoint owner_offset_kib ranges (this one at {other_end_kib} or above, for example)")]
    ShareOverlap {
        /// This region's `owner_offset_kib`.
        offset_kib: u64,
        /// Its end in KiB.
        end_kib: u64,
        /// The owner.
        owner: String,
        /// The other region.
        other: String,
        /// Its `owner_offset_kib`.
        other_offset_kib: u64,
        /// Its end in KiB.
        other_end_kib: u64,
        /// Line of its `owner_offset_kib`.
        other_line: usize,
    },
    /// `peer_address` not page aligned.
    #[error("peer_address = {0:#x} is not page aligned: give a multiple of 0x1000")]
    PeerAddressAlign(u64),
    /// `peer_address` not between the peer's RAM and the end of its address space.
    #[error("peer_address {address:#x}..{end:#x} is not above `{peer}`'s RAM (0x40000000..{ram_end:#x}, with emulated devices below it) and below {IPA_LIMIT:#x} (the end of its 39-bit guest-physical space): map it at {suggestion:#x}, for example")]
    PeerAddressRange {
        /// `peer_address`.
        address: u64,
        /// `peer_address` + the size.
        end: u64,
        /// The peer.
        peer: String,
        /// End of the peer's RAM.
        ram_end: u64,
        /// A free address to suggest.
        suggestion: u64,
    },
    /// Two shared regions overlap in their peer's address space.
    #[error("peer_address {address:#x}..{end:#x} overlaps shared region `{other}` ({other_address:#x}..{other_end:#x}, line {other_line}), also mapped into `{peer}`: map this one at {other_end:#x} or above, for example")]
    PeerAddressOverlap {
        /// `peer_address`.
        address: u64,
        /// Its end.
        end: u64,
        /// The peer.
        peer: String,
        /// The other region.
        other: String,
        /// Its `peer_address`.
        other_address: u64,
        /// Its end.
        other_end: u64,
        /// Line of its `peer_address`.
        other_line: usize,
    },
    /// A pool name breaks the rules.
    #[error("pool name `{0}` is not allowed: use 1 to 31 characters from a-z, 0-9 and `-`")]
    BadPoolName(String),
    /// Two pools share a name.
    #[error(
        "a pool named `{name}` already exists (line {first_line}): give every pool a unique name"
    )]
    DuplicatePool {
        /// The name.
        name: String,
        /// Line of the first one.
        first_line: usize,
    },
    /// A pool without CPUs.
    #[error("pool `{0}` has no CPUs: list at least one, e.g. cpus = [0]")]
    EmptyPool(String),
    /// A CPU in two pools.
    #[error("CPU {cpu} is already in pool `{other}` (line {other_line}): a CPU belongs to at most one pool")]
    CpuInTwoPools {
        /// The CPU.
        cpu: u32,
        /// The pool that has it.
        other: String,
        /// Line of that pool's `cpus`.
        other_line: usize,
    },
    /// `weight` out of range.
    #[error("weight = {0}: give 1 to 65535 (relative to the other domains of the credit pool)")]
    SchedWeight(u64),
    /// `cap_percent` out of range.
    #[error("cap_percent = {0}: give 1 to 100 (percent of one CPU), or leave it out for no cap")]
    SchedCap(u64),
    /// Only one of `budget_us` and `period_us`.
    #[error("a reservation needs both budget_us and period_us (budget_us of CPU time in every period_us)")]
    SchedReservationHalf,
    /// `budget_us`/`period_us` out of range.
    #[error("budget_us = {budget_us}, period_us = {period_us}: give 1 <= budget_us <= period_us, with period_us from 100 to 10000000 (10 s)")]
    SchedReservation {
        /// `budget_us`.
        budget_us: u64,
        /// `period_us`.
        period_us: u64,
    },
    /// Credit and rt fields together.
    #[error("sched mixes a credit request (weight, cap_percent) with a reservation (budget_us, period_us): a domain is in one pool, so give the fields of its pool's policy")]
    SchedMixed,
    /// `sched = {}`.
    #[error("sched is empty: give weight/cap_percent (credit pool) or budget_us and period_us (rt pool), or remove it")]
    SchedEmpty,
    /// A `sched` request on a domain whose CPUs are not all in pools of the matching policy.
    #[error("domain `{domain}` asks for {what}, which only a `{policy}` pool honours, but {where_}: pin its vCPUs with `cpus` to CPUs of a `{policy}` pool")]
    SchedWrongPool {
        /// The domain.
        domain: String,
        /// `a weight`, `a cap`, `a reservation`.
        what: &'static str,
        /// The policy that honours it.
        policy: &'static str,
        /// Where its vCPUs are instead.
        where_: String,
    },
    /// `sched` or `[[pool]]` without a policy domain.
    #[error("{what} but no domain has sched_policy = true: add the policy domain (binary = \"sched\", sched_policy = true), or remove {it}")]
    NoPolicyDomain {
        /// What needs one.
        what: &'static str,
        /// What to remove.
        it: &'static str,
    },
    /// Two policy domains at boot, or one that does not follow another.
    #[error("domain `{domain}` is a second policy domain: only one starts at boot; another must start = \"after-destroy\" with `after` naming a policy domain (a restart)")]
    SecondPolicyDomain {
        /// The domain.
        domain: String,
    },
    /// `control = true` on a guest.
    #[error(
        "domain `{0}` is a guest: only a `kind = \"service\"` domain may be the control domain"
    )]
    ControlGuest(String),
    /// A second control domain.
    #[error("domain `{domain}` is a second control domain (the first is `{first}`, line {first_line}): a system has at most one")]
    SecondControlDomain {
        /// This domain.
        domain: String,
        /// The first one.
        first: String,
        /// Its line.
        first_line: usize,
    },
    /// A device name that is not a boot-info name.
    #[error("device name `{0}`: use 1 to 19 characters from `a-z`, `0-9`, `-` (the interrupt is listed as NAME-irq, in 23 bytes)")]
    BadDeviceName(String),
    /// An empty or wrapping MMIO window.
    #[error("device `{name}`: the window {address:#x} + {size:#x} is empty or wraps: give its registers' address and a size of at least 1")]
    DeviceWindow {
        /// The device.
        name: String,
        /// `address`.
        address: u64,
        /// `size`.
        size: u64,
    },
    /// The window does not stay clear of the domain's RAM or the address space.
    #[error("device `{name}`: its pages {base:#x}..{end:#x} overlap `{domain}`'s RAM ({ram_start:#x}..{ram_end:#x}) or leave the 39-bit guest-physical space: a device is seen at its physical address, so it must lie outside the domain's RAM")]
    DeviceOutsideSpace {
        /// The device.
        name: String,
        /// The domain.
        domain: String,
        /// Page-aligned base.
        base: u64,
        /// Page-aligned end.
        end: u64,
        /// Start of the domain's RAM.
        ram_start: u64,
        /// End of it.
        ram_end: u64,
    },
    /// Two devices share a page.
    #[error("device `{name}`: its pages {base:#x}..{end:#x} overlap those of device `{other}` (line {other_line}): a page of registers is passed to one domain only; give both devices' registers to one domain as one device")]
    DeviceOverlap {
        /// The device.
        name: String,
        /// Page-aligned base.
        base: u64,
        /// Page-aligned end.
        end: u64,
        /// The other device.
        other: String,
        /// Its line.
        other_line: usize,
    },
    /// Not an SPI.
    #[error("interrupt = {0}: give the GIC INTID of a shared peripheral interrupt (32 to 1019; QEMU virt's virtio-mmio transport n is 48 + n), or leave it out")]
    DeviceInterrupt(u64),
    /// Two devices with one interrupt.
    #[error("interrupt {intid} is already the interrupt of device `{other}` (line {other_line}): an interrupt goes to one device")]
    DeviceInterruptTaken {
        /// The INTID.
        intid: u64,
        /// The other device.
        other: String,
        /// Its line.
        other_line: usize,
    },
    /// A channel or shared region between two domains that never run at the same time.
    #[error("{what} `{name}` links `{earlier}` and `{later}`, but `{later}` starts only after `{earlier}` is destroyed ({chain}): the two never run at the same time, so the kernel would never create it and no domain would ever hold it; link domains that can run together, or remove the {what}")]
    NeverTogether {
        /// `channel` or `shared region`.
        what: &'static str,
        /// Its name.
        name: String,
        /// The domain that must be gone first.
        earlier: String,
        /// The domain that starts after it.
        later: String,
        /// The `after` chain from `later` to `earlier`.
        chain: String,
    },
    /// Too many devices.
    #[error("the system has {0} devices; a system image holds at most {MAX_DEVICES}: remove some")]
    TooManyDevices(usize),
    /// `memory_node` out of range.
    #[error("memory_node = {0}: give a NUMA node number from 0 to 254 (leave it out for the node of the domain's first CPU)")]
    MemoryNode(u64),
    /// `arg` on the policy domain.
    #[error("the policy domain's arg is computed from the [[pool]] tables (each CPU's policy, mica_abi::sched::pack_policies): remove `arg`")]
    PolicyDomainArg,
    /// The domains' memory exceeds what the machine has.
    #[error("the domains need {need_kib} KiB of RAM but memory_mib = {memory_mib} leaves {available_kib} KiB after the 64 MiB the hypervisor keeps: set memory_mib to at least {least_mib}, or give the domains less memory_kib")]
    MemoryDoesNotFit {
        /// Sum of `memory_kib` over domains with fresh frames.
        need_kib: u64,
        /// `[machine] memory_mib`.
        memory_mib: u64,
        /// What is left for domains.
        available_kib: u64,
        /// The least `memory_mib` that fits.
        least_mib: u64,
    },
    /// No 64 MiB-aligned block of free RAM is left for the control domain's pool.
    #[error("the control domain `{control}` needs its 64 MiB pool as one free block aligned to 64 MiB{others}, and memory_mib = {memory_mib} has {blocks}: the hypervisor lies in the first 64 MiB of RAM and QEMU puts the device tree {dtb_mib} MiB in (half the RAM, at most 128 MiB): set memory_mib to at least {least_mib}")]
    ControlPoolDoesNotFit {
        /// The control domain.
        control: String,
        /// What other domains take of such blocks, in words (empty if nothing).
        others: String,
        /// `[machine] memory_mib`.
        memory_mib: u64,
        /// How many such blocks there are, in words.
        blocks: String,
        /// Where the device tree lies, MiB from the start of RAM.
        dtb_mib: u64,
        /// The least `memory_mib` that has room.
        least_mib: u64,
    },
}

// ---------------------------------------------------------------------------------------
// Parsing and checking.

/// Whether `name` is 1..=31 bytes of `a-z`, `0-9`, `-`.
pub fn is_valid_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Whether `binary` is a plain file name (no directory, not `.`/`..`).
fn is_plain_file_name(binary: &str) -> bool {
    !binary.is_empty()
        && binary != "."
        && binary != ".."
        && !binary.contains(['/', '\\'])
        && !binary.contains('\0')
}

/// The fields of a domain that need no other domain to check.
struct DomainBasics {
    elf: DomainElf,
    elf_at: Location,
    vcpus: u32,
    cpus: Option<Vec<u32>>,
}

/// Checks a manifest's text, keeping the file name and text for error positions.
struct Checker<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Checker<'_> {
    fn at<T>(&self, value: &Spanned<T>) -> Location {
        Location::at_offset(self.path, self.text, value.span().start)
    }

    fn invalid<T>(&self, value: &Spanned<T>, problem: Problem) -> ManifestError {
        ManifestError::Invalid {
            at: self.at(value),
            problem: Box::new(problem),
        }
    }

    fn invalid_file(&self, problem: Problem) -> ManifestError {
        ManifestError::Invalid {
            at: Location::file(self.path),
            problem: Box::new(problem),
        }
    }

    fn machine(&self, m: MachineSection) -> Result<Machine, ManifestError> {
        let cpus = *m.cpus.get_ref();
        if !(1..=MAX_MACHINE_CPUS).contains(&cpus) {
            return Err(self.invalid(&m.cpus, Problem::MachineCpus(cpus)));
        }
        let memory_mib = match &m.memory_mib {
            Some(mib) => {
                let value = *mib.get_ref();
                if !(MIN_MACHINE_MEMORY_MIB..=MAX_MACHINE_MEMORY_MIB).contains(&value) {
                    return Err(self.invalid(mib, Problem::MachineMemory(value)));
                }
                value
            }
            None => DEFAULT_MACHINE_MEMORY_MIB,
        };
        Ok(Machine {
            cpus,
            memory_mib,
            boot_args: m.boot_args,
        })
    }

    /// Checks one domain on its own (names of others are resolved by the caller).
    fn domain_fields(
        &self,
        d: &DomainSection,
        machine: &Machine,
    ) -> Result<DomainBasics, ManifestError> {
        let name = d.name.get_ref();
        let (elf, elf_at) = match (&d.binary, &d.path) {
            (Some(binary), None) => {
                if !is_plain_file_name(binary.get_ref()) {
                    return Err(
                        self.invalid(binary, Problem::BadBinaryName(binary.get_ref().clone()))
                    );
                }
                (DomainElf::Binary(binary.get_ref().clone()), self.at(binary))
            }
            (None, Some(path)) => {
                if path.get_ref().is_empty() {
                    return Err(self.invalid(path, Problem::EmptyPath));
                }
                (
                    DomainElf::Path(PathBuf::from(path.get_ref())),
                    self.at(path),
                )
            }
            (Some(_), Some(second)) => {
                return Err(self.invalid(second, Problem::ElfSource(name.clone())))
            }
            (None, None) => return Err(self.invalid(&d.name, Problem::ElfSource(name.clone()))),
        };
        let memory_kib = *d.memory_kib.get_ref();
        if !memory_kib.is_multiple_of(4) || memory_kib < MIN_DOMAIN_MEMORY_KIB {
            return Err(self.invalid(&d.memory_kib, Problem::DomainMemory(memory_kib)));
        }
        let vcpus = match &d.vcpus {
            Some(v) => {
                let value = *v.get_ref();
                if !(1..=MAX_VCPUS_PER_DOMAIN as u32).contains(&value) {
                    return Err(self.invalid(v, Problem::Vcpus(value)));
                }
                value
            }
            None => 1,
        };
        let cpus = match &d.cpus {
            Some(list) => {
                let entries = list.get_ref();
                if entries.len() != vcpus as usize {
                    return Err(self.invalid(
                        list,
                        Problem::CpusLength {
                            len: entries.len(),
                            vcpus,
                        },
                    ));
                }
                for cpu in entries {
                    if *cpu.get_ref() >= machine.cpus {
                        return Err(self.invalid(
                            cpu,
                            Problem::NoSuchCpu {
                                cpu: *cpu.get_ref(),
                                machine_cpus: machine.cpus,
                            },
                        ));
                    }
                }
                Some(entries.iter().map(|c| *c.get_ref()).collect())
            }
            None => None,
        };
        Ok(DomainBasics {
            elf,
            elf_at,
            vcpus,
            cpus,
        })
    }

    /// Resolves `after`/`memory_from` to a domain index.
    fn reference(
        &self,
        field: &'static str,
        value: &Spanned<String>,
        own: usize,
        names: &[&str],
    ) -> Result<usize, ManifestError> {
        match names.iter().position(|n| n == value.get_ref()) {
            Some(i) if i == own => Err(self.invalid(value, Problem::SelfReference { field })),
            Some(i) => Ok(i),
            None => Err(self.invalid(
                value,
                Problem::UnknownDomain {
                    field,
                    name: value.get_ref().clone(),
                    known: names.join(", "),
                },
            )),
        }
    }

    fn check(&self, file: ManifestFile) -> Result<Manifest, ManifestError> {
        let name = &file.system.name;
        if !is_valid_name(name.get_ref()) {
            return Err(self.invalid(name, Problem::BadSystemName(name.get_ref().clone())));
        }
        let memory_at = match &file.machine.memory_mib {
            Some(mib) => self.at(mib),
            None => Location::file(self.path),
        };
        let machine = self.machine(file.machine)?;
        let pools = self.pools(&file.pools, &machine)?;
        let sections = &file.domains;
        if sections.is_empty() {
            return Err(self.invalid_file(Problem::NoDomains));
        }
        if sections.len() > MAX_DOMAINS {
            return Err(self.invalid(
                &sections[MAX_DOMAINS].name,
                Problem::TooManyDomains(sections.len()),
            ));
        }
        // Names first: `after` and `memory_from` may name a later domain.
        for (i, d) in sections.iter().enumerate() {
            let n = d.name.get_ref();
            if !is_valid_name(n) {
                return Err(self.invalid(&d.name, Problem::BadDomainName(n.clone())));
            }
            if let Some(first) = sections[..i].iter().find(|e| e.name.get_ref() == n) {
                let first_line = self.at(&first.name).position.map_or(0, |p| p.line);
                return Err(self.invalid(
                    &d.name,
                    Problem::DuplicateDomain {
                        name: n.clone(),
                        first_line,
                    },
                ));
            }
        }
        let names: Vec<&str> = sections.iter().map(|d| d.name.get_ref().as_str()).collect();

        let mut domains = Vec::with_capacity(sections.len());
        for (i, d) in sections.iter().enumerate() {
            let DomainBasics {
                elf,
                elf_at,
                vcpus,
                cpus,
            } = self.domain_fields(d, &machine)?;
            let mode = d.start.as_ref().map_or(StartMode::Boot, |s| *s.get_ref());
            let start = match (mode, &d.after) {
                (StartMode::Boot, None) => Start::AtBoot,
                (StartMode::Boot, Some(after)) => {
                    return Err(self.invalid(after, Problem::AfterWithoutStart))
                }
                (StartMode::AfterDestroy, Some(after)) => {
                    Start::AfterDestroyOf(self.reference("after", after, i, &names)?)
                }
                (StartMode::AfterDestroy, None) => {
                    let at = d
                        .start
                        .as_ref()
                        .map_or_else(|| self.at(&d.name), |s| self.at(s));
                    return Err(ManifestError::Invalid {
                        at,
                        problem: Box::new(Problem::StartWithoutAfter),
                    });
                }
            };
            let memory_from = match &d.memory_from {
                None => None,
                Some(from) => {
                    let donor = self.reference("memory_from", from, i, &names)?;
                    if start != Start::AfterDestroyOf(donor) {
                        return Err(self.invalid(
                            from,
                            Problem::MemoryFromWithoutAfter {
                                memory_from: from.get_ref().clone(),
                            },
                        ));
                    }
                    let donor_kib = *sections[donor].memory_kib.get_ref();
                    if donor_kib != *d.memory_kib.get_ref() {
                        return Err(self.invalid(
                            &d.memory_kib,
                            Problem::MemoryFromSize {
                                memory_kib: *d.memory_kib.get_ref(),
                                donor: from.get_ref().clone(),
                                donor_kib,
                            },
                        ));
                    }
                    if let Some(other) = sections[..i].iter().find(|e| {
                        e.memory_from.as_ref().map(|f| f.get_ref()) == Some(from.get_ref())
                    }) {
                        return Err(self.invalid(
                            from,
                            Problem::DonorTaken {
                                receiver: other.name.get_ref().clone(),
                                donor: from.get_ref().clone(),
                            },
                        ));
                    }
                    Some(donor)
                }
            };
            let mut sched = self.sched_request(d, &cpus, &pools)?;
            if let Some(node) = &d.memory_node {
                let value = *node.get_ref();
                if value > 254 {
                    return Err(self.invalid(node, Problem::MemoryNode(value)));
                }
                // The record says node n as n + 1 (0: the node of the first vCPU's CPU).
                sched.memory_node = value as u8 + 1;
            }
            domains.push(Domain {
                name: d.name.get_ref().clone(),
                kind: d.kind,
                elf,
                elf_at,
                memory_kib: *d.memory_kib.get_ref(),
                vcpus,
                cpus,
                arg: d.arg.as_ref().map_or(0, |a| *a.get_ref()),
                start,
                memory_from,
                priority: d.priority,
                mmu_off_cacheable: d.mmu_off_cacheable.unwrap_or(true),
                sched,
                sched_policy: d.sched_policy.as_ref().is_some_and(|p| *p.get_ref()),
                control: d.control.as_ref().is_some_and(|c| *c.get_ref()),
            });
        }
        self.check_start_cycles(sections, &domains)?;
        self.policy_domains(sections, &file.pools, &mut domains, &pools, &machine)?;
        check_memory_fits(memory_at.clone(), &machine, &domains)?;
        check_control_pool(machine.memory_mib, &domains).map_err(|problem| {
            ManifestError::Invalid {
                at: memory_at,
                problem,
            }
        })?;
        let mut names_in = Namespaces::new(domains.len());
        let channels = self.channels(&file.channels, &names, &mut names_in)?;
        let shares = self.shares(&file.shares, &names, &domains, &mut names_in)?;
        self.links_meet(&file.channels, &file.shares, &domains)?;
        self.control_domain(sections, &domains)?;
        let devices = self.devices(sections, &domains, &mut names_in)?;
        Ok(Manifest {
            path: self.path.to_owned(),
            name: name.get_ref().clone(),
            arch: file.system.arch,
            machine,
            domains,
            channels,
            shares,
            pools,
            devices,
        })
    }

    /// At most one control domain, and a service.
    fn control_domain(
        &self,
        sections: &[DomainSection],
        domains: &[Domain],
    ) -> Result<(), ManifestError> {
        let mut first: Option<usize> = None;
        for (i, d) in domains.iter().enumerate().filter(|(_, d)| d.control) {
            let flag = sections[i].control.as_ref().expect("control is set");
            if d.kind != DomainKind::Service {
                return Err(self.invalid(flag, Problem::ControlGuest(d.name.clone())));
            }
            if let Some(f) = first {
                return Err(self.invalid(
                    flag,
                    Problem::SecondControlDomain {
                        domain: d.name.clone(),
                        first: domains[f].name.clone(),
                        first_line: self.line(&sections[f].name),
                    },
                ));
            }
            first = Some(i);
        }
        Ok(())
    }

    /// Checks every domain's `devices`: names in the domain's boot-info namespace, whole
    /// pages outside its RAM, no page or interrupt given twice.
    fn devices(
        &self,
        sections: &[DomainSection],
        domains: &[Domain],
        namespaces: &mut Namespaces,
    ) -> Result<Vec<Device>, ManifestError> {
        let mut devices: Vec<(Device, &DeviceSection)> = Vec::new();
        for (i, d) in sections.iter().enumerate() {
            for dev in &d.devices {
                let name = dev.name.get_ref();
                if name.len() > NAME_LEN - 5 || !is_valid_name(name) {
                    return Err(self.invalid(&dev.name, Problem::BadDeviceName(name.clone())));
                }
                if devices.len() == MAX_DEVICES {
                    let total = sections.iter().map(|d| d.devices.len()).sum();
                    return Err(self.invalid(&dev.name, Problem::TooManyDevices(total)));
                }
                self.claim_name(namespaces, i, &domains[i].name, &dev.name)?;
                let irq_name = Spanned::new(dev.name.span(), format!("{name}-irq"));
                if dev.interrupt.is_some() {
                    self.claim_name(namespaces, i, &domains[i].name, &irq_name)?;
                }
                let (address, size) = (*dev.address.get_ref(), *dev.size.get_ref());
                let window = Problem::DeviceWindow {
                    name: name.clone(),
                    address,
                    size,
                };
                let Some(end) = address.checked_add(size).filter(|_| size > 0) else {
                    return Err(self.invalid(&dev.size, window));
                };
                let base = address & !(PAGE_BYTES - 1);
                let end = end.next_multiple_of(PAGE_BYTES);
                let ram_start = DOMAIN_RAM_BASE;
                let ram_end = DOMAIN_RAM_BASE + domains[i].memory_kib * 1024;
                if end > IPA_LIMIT || (base < ram_end && ram_start < end) {
                    return Err(self.invalid(
                        &dev.address,
                        Problem::DeviceOutsideSpace {
                            name: name.clone(),
                            domain: domains[i].name.clone(),
                            base,
                            end,
                            ram_start,
                            ram_end,
                        },
                    ));
                }
                if let Some((other, at)) = devices
                    .iter()
                    .find(|(o, _)| base < o.mmio_base + o.mmio_size && o.mmio_base < end)
                {
                    return Err(self.invalid(
                        &dev.address,
                        Problem::DeviceOverlap {
                            name: name.clone(),
                            base,
                            end,
                            other: other.name.clone(),
                            other_line: self.line(&at.name),
                        },
                    ));
                }
                let interrupt = match &dev.interrupt {
                    None => 0,
                    Some(irq) => {
                        let intid = *irq.get_ref();
                        if !(32..=1019).contains(&intid) {
                            return Err(self.invalid(irq, Problem::DeviceInterrupt(intid)));
                        }
                        if let Some((other, at)) = devices
                            .iter()
                            .find(|(o, _)| u64::from(o.interrupt) == intid)
                        {
                            return Err(self.invalid(
                                irq,
                                Problem::DeviceInterruptTaken {
                                    intid,
                                    other: other.name.clone(),
                                    other_line: self.line(&at.name),
                                },
                            ));
                        }
                        intid as u32
                    }
                };
                devices.push((
                    Device {
                        name: name.clone(),
                        domain: i,
                        mmio_base: base,
                        mmio_size: end - base,
                        interrupt,
                    },
                    dev,
                ));
            }
        }
        Ok(devices.into_iter().map(|(d, _)| d).collect())
    }
}

impl Checker<'_> {
    /// Checks the `[[pool]]` tables: names, CPUs that exist, each CPU in at most one pool.
    fn pools(
        &self,
        sections: &[PoolSection],
        machine: &Machine,
    ) -> Result<Vec<Pool>, ManifestError> {
        let mut pools = Vec::with_capacity(sections.len());
        let mut owner: Vec<Option<usize>> = vec![None; machine.cpus as usize];
        for (i, p) in sections.iter().enumerate() {
            let name = p.name.get_ref();
            if !is_valid_name(name) {
                return Err(self.invalid(&p.name, Problem::BadPoolName(name.clone())));
            }
            if let Some(first) = sections[..i].iter().find(|e| e.name.get_ref() == name) {
                return Err(self.invalid(
                    &p.name,
                    Problem::DuplicatePool {
                        name: name.clone(),
                        first_line: self.line(&first.name),
                    },
                ));
            }
            if p.cpus.get_ref().is_empty() {
                return Err(self.invalid(&p.cpus, Problem::EmptyPool(name.clone())));
            }
            let mut cpus = Vec::with_capacity(p.cpus.get_ref().len());
            for cpu in p.cpus.get_ref() {
                let c = *cpu.get_ref();
                if c >= machine.cpus {
                    return Err(self.invalid(
                        cpu,
                        Problem::NoSuchCpu {
                            cpu: c,
                            machine_cpus: machine.cpus,
                        },
                    ));
                }
                if let Some(other) = owner[c as usize] {
                    return Err(self.invalid(
                        cpu,
                        Problem::CpuInTwoPools {
                            cpu: c,
                            other: sections[other].name.get_ref().clone(),
                            other_line: self.line(&sections[other].cpus),
                        },
                    ));
                }
                owner[c as usize] = Some(i);
                cpus.push(c);
            }
            pools.push(Pool {
                name: name.clone(),
                cpus,
                policy: *p.policy.get_ref(),
            });
        }
        Ok(pools)
    }

    /// Checks a domain's `sched = { ... }` against its CPUs' pools.
    fn sched_request(
        &self,
        d: &DomainSection,
        cpus: &Option<Vec<u32>>,
        pools: &[Pool],
    ) -> Result<SchedRequest, ManifestError> {
        let Some(sched) = &d.sched else {
            return Ok(SchedRequest::default());
        };
        let s = sched.get_ref();
        let mut request = SchedRequest::default();
        if let Some(w) = &s.weight {
            let value = *w.get_ref();
            if !(1..=u64::from(u16::MAX)).contains(&value) {
                return Err(self.invalid(w, Problem::SchedWeight(value)));
            }
            request.weight = value as u16;
        }
        if let Some(c) = &s.cap_percent {
            let value = *c.get_ref();
            if !(1..=100).contains(&value) {
                return Err(self.invalid(c, Problem::SchedCap(value)));
            }
            request.cap_percent = value as u8;
        }
        match (&s.budget_us, &s.period_us) {
            (None, None) => {}
            (Some(b), Some(p)) => {
                let (budget_us, period_us) = (*b.get_ref(), *p.get_ref());
                if budget_us == 0
                    || budget_us > period_us
                    || !(100..=10_000_000).contains(&period_us)
                {
                    return Err(self.invalid(
                        b,
                        Problem::SchedReservation {
                            budget_us,
                            period_us,
                        },
                    ));
                }
                request.budget_us = budget_us as u32;
                request.period_us = period_us as u32;
            }
            (Some(half), None) | (None, Some(half)) => {
                return Err(self.invalid(half, Problem::SchedReservationHalf))
            }
        }
        let credit = s.weight.is_some() || s.cap_percent.is_some();
        let rt = s.budget_us.is_some();
        if credit && rt {
            return Err(self.invalid(sched, Problem::SchedMixed));
        }
        if !credit && !rt {
            return Err(self.invalid(sched, Problem::SchedEmpty));
        }
        let (what, policy) = match (rt, s.cap_percent.is_some()) {
            (true, _) => ("a reservation", PoolPolicy::Rt),
            (false, true) => ("a cap", PoolPolicy::Credit),
            (false, false) => ("a weight", PoolPolicy::Credit),
        };
        let where_ = match cpus {
            None => Some("it has no `cpus` (the kernel would choose its CPUs)".to_owned()),
            Some(list) => {
                list.iter()
                    .find_map(|c| match pools.iter().find(|p| p.cpus.contains(c)) {
                        Some(p) if p.policy == policy => None,
                        Some(p) => Some(format!(
                            "its CPU {c} is in `{}` pool `{}`",
                            p.policy.name(),
                            p.name
                        )),
                        None => Some(format!("its CPU {c} is in no pool")),
                    })
            }
        };
        if let Some(where_) = where_ {
            return Err(self.invalid(
                sched,
                Problem::SchedWrongPool {
                    domain: d.name.get_ref().clone(),
                    what,
                    policy: policy.name(),
                    where_,
                },
            ));
        }
        Ok(request)
    }

    /// Checks the policy domains (one at boot, restarts after a policy domain, no `arg`) and
    /// gives each its argument: every CPU's policy (`pack_policies`).
    fn policy_domains(
        &self,
        sections: &[DomainSection],
        pool_sections: &[PoolSection],
        domains: &mut [Domain],
        pools: &[Pool],
        machine: &Machine,
    ) -> Result<(), ManifestError> {
        let policy: Vec<usize> = (0..domains.len())
            .filter(|&i| domains[i].sched_policy)
            .collect();
        let mut at_boot = 0;
        for &i in &policy {
            let flag = sections[i]
                .sched_policy
                .as_ref()
                .expect("sched_policy is set");
            if let Some(arg) = &sections[i].arg {
                return Err(self.invalid(arg, Problem::PolicyDomainArg));
            }
            let second = match domains[i].start {
                Start::AtBoot => {
                    at_boot += 1;
                    at_boot > 1
                }
                Start::AfterDestroyOf(j) => !domains[j].sched_policy,
            };
            if second {
                return Err(self.invalid(
                    flag,
                    Problem::SecondPolicyDomain {
                        domain: domains[i].name.clone(),
                    },
                ));
            }
        }
        if policy.is_empty() {
            if let Some(d) = sections.iter().find_map(|d| d.sched.as_ref()) {
                return Err(self.invalid(
                    d,
                    Problem::NoPolicyDomain {
                        what: "a domain asks for scheduling (`sched`)",
                        it: "`sched`",
                    },
                ));
            }
            if let Some(p) = pool_sections.first() {
                return Err(self.invalid(
                    &p.name,
                    Problem::NoPolicyDomain {
                        what: "the system has [[pool]] tables",
                        it: "the pools",
                    },
                ));
            }
            return Ok(());
        }
        let per_cpu: Vec<u8> = (0..machine.cpus)
            .map(|c| {
                pools
                    .iter()
                    .find(|p| p.cpus.contains(&c))
                    .map_or(mica_abi::sched::policy::NONE, |p| p.policy.code())
            })
            .collect();
        let arg = mica_abi::sched::pack_policies(&per_cpu);
        for &i in &policy {
            domains[i].arg = arg;
        }
        Ok(())
    }
}

impl Checker<'_> {
    /// Fails if domains wait for each other's destruction in a cycle (none would start).
    fn check_start_cycles(
        &self,
        sections: &[DomainSection],
        domains: &[Domain],
    ) -> Result<(), ManifestError> {
        for (first, d) in domains.iter().enumerate() {
            let mut path = vec![first];
            let mut start = d.start;
            while let Start::AfterDestroyOf(next) = start {
                if next == first {
                    let mut names: Vec<&str> =
                        path.iter().map(|&i| domains[i].name.as_str()).collect();
                    names.push(&d.name);
                    let at = sections[first]
                        .after
                        .as_ref()
                        .map_or_else(|| self.at(&sections[first].name), |a| self.at(a));
                    return Err(ManifestError::Invalid {
                        at,
                        problem: Box::new(Problem::StartCycle {
                            cycle: names.join(" -> "),
                        }),
                    });
                }
                if path.contains(&next) {
                    // A cycle that does not include `first`: reported from one of its members.
                    break;
                }
                path.push(next);
                start = domains[next].start;
            }
        }
        Ok(())
    }
}

impl Checker<'_> {
    /// Fails if a channel or shared region links two domains that never exist together:
    /// one waits (through its `after` chain) for the other's destruction. The kernel wires
    /// a link only while both its domains exist, so such a capability would be granted to
    /// nobody. Runs after the channels and shares are checked, so every name resolves.
    fn links_meet(
        &self,
        channels: &[ChannelSection],
        shares: &[SharedSection],
        domains: &[Domain],
    ) -> Result<(), ManifestError> {
        let index = |name: &Spanned<String>| {
            domains
                .iter()
                .position(|d| d.name == *name.get_ref())
                .expect("checked before")
        };
        let links = channels
            .iter()
            .map(|c| ("channel", &c.name, &c.a.domain, &c.b.domain))
            .chain(
                shares
                    .iter()
                    .map(|s| ("shared region", &s.name, &s.owner, &s.peer)),
            );
        for (what, name, first, second) in links {
            for (later, earlier) in [(second, first), (first, second)] {
                if let Some(chain) = waits_for(domains, index(later), index(earlier)) {
                    return Err(self.invalid(
                        later,
                        Problem::NeverTogether {
                            what,
                            name: name.get_ref().clone(),
                            earlier: earlier.get_ref().clone(),
                            later: later.get_ref().clone(),
                            chain,
                        },
                    ));
                }
            }
        }
        Ok(())
    }
}

/// If `later` starts only after `earlier` is destroyed (its `after` chain reaches it), the
/// chain as `later after X after earlier`. Chains have no cycles (checked before).
fn waits_for(domains: &[Domain], later: usize, earlier: usize) -> Option<String> {
    let mut chain = vec![domains[later].name.as_str()];
    let mut at = later;
    while let Start::AfterDestroyOf(next) = domains[at].start {
        chain.push(&domains[next].name);
        if next == earlier {
            return Some(chain.join(" after "));
        }
        at = next;
    }
    None
}

/// Whether `name` can be a channel, endpoint or shared-region name: 1..=23 bytes of `a-z`,
/// `0-9`, `-`.
pub fn is_valid_capability_name(name: &str) -> bool {
    name.len() <= MAX_CAP_NAME_LEN && is_valid_name(name)
}

/// The names each domain's boot-info page will list, with the line each is written on, and
/// how many shared regions each domain owns or maps.
struct Namespaces {
    names: Vec<Vec<(String, usize)>>,
    regions: Vec<usize>,
}

impl Namespaces {
    fn new(domains: usize) -> Namespaces {
        Namespaces {
            names: vec![Vec::new(); domains],
            regions: vec![0; domains],
        }
    }
}

/// A shared region checked so far, for overlap errors.
struct Placed {
    line_of_offset: usize,
    line_of_address: usize,
}

impl Checker<'_> {
    fn line<T>(&self, value: &Spanned<T>) -> usize {
        self.at(value).position.map_or(0, |p| p.line)
    }

    /// The index of the domain `value` names (`field` is the key, for the error).
    fn domain_named(
        &self,
        field: &'static str,
        value: &Spanned<String>,
        names: &[&str],
    ) -> Result<usize, ManifestError> {
        names
            .iter()
            .position(|n| n == value.get_ref())
            .ok_or_else(|| {
                self.invalid(
                    value,
                    Problem::UnknownDomain {
                        field,
                        name: value.get_ref().clone(),
                        known: names.join(", "),
                    },
                )
            })
    }

    fn capability_name(
        &self,
        what: &'static str,
        value: &Spanned<String>,
    ) -> Result<String, ManifestError> {
        if is_valid_capability_name(value.get_ref()) {
            Ok(value.get_ref().clone())
        } else {
            Err(self.invalid(
                value,
                Problem::BadCapabilityName {
                    what,
                    name: value.get_ref().clone(),
                },
            ))
        }
    }

    fn reason(
        &self,
        what: &'static str,
        name: &Spanned<String>,
        reason: &Option<Spanned<String>>,
    ) -> Result<String, ManifestError> {
        let problem = Problem::MissingReason {
            what,
            name: name.get_ref().clone(),
        };
        match reason {
            Some(r) if !r.get_ref().trim().is_empty() => Ok(r.get_ref().clone()),
            Some(r) => Err(self.invalid(r, problem)),
            None => Err(self.invalid(name, problem)),
        }
    }

    /// Adds `value` to the boot-info names of domain `domain` (named `domain_name`).
    fn claim_name(
        &self,
        namespaces: &mut Namespaces,
        domain: usize,
        domain_name: &str,
        value: &Spanned<String>,
    ) -> Result<(), ManifestError> {
        let names = &mut namespaces.names[domain];
        if let Some((_, first_line)) = names.iter().find(|(n, _)| n == value.get_ref()) {
            return Err(self.invalid(
                value,
                Problem::DuplicateCapability {
                    domain: domain_name.to_owned(),
                    name: value.get_ref().clone(),
                    first_line: *first_line,
                },
            ));
        }
        if names.len() == MAX_CAPS {
            return Err(self.invalid(
                value,
                Problem::TooManyCapabilities {
                    domain: domain_name.to_owned(),
                },
            ));
        }
        names.push((value.get_ref().clone(), self.line(value)));
        Ok(())
    }

    /// Checks the `[[channel]]` tables against the domains.
    fn channels(
        &self,
        sections: &[ChannelSection],
        names: &[&str],
        namespaces: &mut Namespaces,
    ) -> Result<Vec<Channel>, ManifestError> {
        if sections.len() > MAX_CHANNELS {
            return Err(self.invalid(
                &sections[MAX_CHANNELS].name,
                Problem::TooManyChannels(sections.len()),
            ));
        }
        let mut channels = Vec::with_capacity(sections.len());
        for (i, c) in sections.iter().enumerate() {
            let name = self.capability_name("channel name", &c.name)?;
            if let Some(first) = sections[..i].iter().find(|e| *e.name.get_ref() == name) {
                return Err(self.invalid(
                    &c.name,
                    Problem::DuplicateChannel {
                        name,
                        first_line: self.line(&first.name),
                    },
                ));
            }
            let reason = self.reason("channel", &c.name, &c.reason)?;
            let mut ends = Vec::with_capacity(2);
            for end in [&c.a, &c.b] {
                let domain = self.domain_named("domain", &end.domain, names)?;
                let endpoint = self.capability_name("endpoint", &end.endpoint)?;
                ends.push(Endpoint {
                    domain,
                    name: endpoint,
                });
            }
            let [a, b] = <[Endpoint; 2]>::try_from(ends).expect("two ends");
            if a.domain == b.domain {
                return Err(self.invalid(
                    &c.b.domain,
                    Problem::ChannelToItself {
                        channel: name,
                        domain: names[a.domain].to_owned(),
                    },
                ));
            }
            self.claim_name(namespaces, a.domain, names[a.domain], &c.a.endpoint)?;
            self.claim_name(namespaces, b.domain, names[b.domain], &c.b.endpoint)?;
            channels.push(Channel { name, reason, a, b });
        }
        Ok(channels)
    }

    /// Checks the `[[shared]]` tables against the domains and each other.
    fn shares(
        &self,
        sections: &[SharedSection],
        names: &[&str],
        domains: &[Domain],
        namespaces: &mut Namespaces,
    ) -> Result<Vec<Share>, ManifestError> {
        if sections.len() > MAX_SHARES {
            return Err(self.invalid(
                &sections[MAX_SHARES].name,
                Problem::TooManyShares(sections.len()),
            ));
        }
        let mut shares: Vec<Share> = Vec::with_capacity(sections.len());
        let mut placed: Vec<Placed> = Vec::with_capacity(sections.len());
        for s in sections {
            let name = self.capability_name("shared region name", &s.name)?;
            let reason = self.reason("shared region", &s.name, &s.reason)?;
            let owner = self.domain_named("owner", &s.owner, names)?;
            let peer = self.domain_named("peer", &s.peer, names)?;
            if owner == peer {
                return Err(self.invalid(
                    &s.peer,
                    Problem::ShareWithItself {
                        name,
                        domain: names[owner].to_owned(),
                    },
                ));
            }
            let pages = *s.pages.get_ref();
            if pages == 0 {
                return Err(self.invalid(&s.pages, Problem::SharePages));
            }
            let size_kib = u64::from(pages) * (PAGE_BYTES / 1024);

            // In the owner: whole pages of its RAM, below its boot-info page.
            let offset_kib = *s.owner_offset_kib.get_ref();
            if !offset_kib.is_multiple_of(PAGE_BYTES / 1024) {
                return Err(
                    self.invalid(&s.owner_offset_kib, Problem::OwnerOffsetAlign(offset_kib))
                );
            }
            let end_kib = offset_kib.saturating_add(size_kib);
            let owner_kib = domains[owner].memory_kib;
            if end_kib > owner_kib - PAGE_BYTES / 1024 {
                return Err(self.invalid(
                    &s.owner_offset_kib,
                    Problem::ShareOutsideOwner {
                        offset_kib,
                        end_kib,
                        owner: names[owner].to_owned(),
                        owner_kib,
                        least_kib: end_kib.saturating_add(PAGE_BYTES / 1024),
                    },
                ));
            }
            for (other, at) in shares.iter().zip(&placed) {
                let other_offset_kib = other.owner_offset / 1024;
                let other_end_kib = other_offset_kib + other.size() / 1024;
                if other.owner == owner && offset_kib < other_end_kib && other_offset_kib < end_kib
                {
                    return Err(self.invalid(
                        &s.owner_offset_kib,
                        Problem::ShareOverlap {
                            offset_kib,
                            end_kib,
                            owner: names[owner].to_owned(),
                            other: other.name.clone(),
                            other_offset_kib,
                            other_end_kib,
                            other_line: at.line_of_offset,
                        },
                    ));
                }
            }

            // In the peer: above its RAM, below the end of its address space, and clear
            // of every other region mapped into it.
            let address = *s.peer_address.get_ref();
            if !address.is_multiple_of(PAGE_BYTES) {
                return Err(self.invalid(&s.peer_address, Problem::PeerAddressAlign(address)));
            }
            let size = size_kib * 1024;
            let end = address.saturating_add(size);
            let ram_end = DOMAIN_RAM_BASE + domains[peer].memory_kib * 1024;
            if address < ram_end || end > IPA_LIMIT {
                return Err(self.invalid(
                    &s.peer_address,
                    Problem::PeerAddressRange {
                        address,
                        end,
                        peer: names[peer].to_owned(),
                        ram_end,
                        suggestion: ram_end.next_multiple_of(DOMAIN_RAM_BASE),
                    },
                ));
            }
            for (other, at) in shares.iter().zip(&placed) {
                let other_end = other.peer_address + other.size();
                if other.peer == peer && address < other_end && other.peer_address < end {
                    return Err(self.invalid(
                        &s.peer_address,
                        Problem::PeerAddressOverlap {
                            address,
                            end,
                            peer: names[peer].to_owned(),
                            other: other.name.clone(),
                            other_address: other.peer_address,
                            other_end,
                            other_line: at.line_of_address,
                        },
                    ));
                }
            }

            for domain in [owner, peer] {
                self.claim_name(namespaces, domain, names[domain], &s.name)?;
                namespaces.regions[domain] += 1;
                if namespaces.regions[domain] > MAX_REGIONS {
                    return Err(self.invalid(
                        &s.name,
                        Problem::TooManyRegions {
                            domain: names[domain].to_owned(),
                        },
                    ));
                }
            }
            placed.push(Placed {
                line_of_offset: self.line(&s.owner_offset_kib),
                line_of_address: self.line(&s.peer_address),
            });
            shares.push(Share {
                name,
                reason,
                owner,
                peer,
                pages,
                owner_offset: offset_kib * 1024,
                peer_address: address,
                peer_access: s.peer_access,
            });
        }
        Ok(shares)
    }
}

/// Fails if the domains' fresh memory does not fit in the machine's RAM minus the
/// hypervisor's share (a domain with `memory_from` reuses its donor's frames).
fn check_memory_fits(
    memory_at: Location,
    machine: &Machine,
    domains: &[Domain],
) -> Result<(), ManifestError> {
    let need_kib: u64 = domains
        .iter()
        .filter(|d| d.memory_from.is_none())
        .map(|d| {
            d.memory_kib
                + if d.control {
                    CONTROL_POOL_BYTES / 1024
                } else {
                    0
                }
        })
        .sum();
    let available_kib = (machine.memory_mib - HYPERVISOR_RESERVED_MIB) * 1024;
    if need_kib > available_kib {
        return Err(ManifestError::Invalid {
            at: memory_at,
            problem: Box::new(Problem::MemoryDoesNotFit {
                need_kib,
                memory_mib: machine.memory_mib,
                available_kib,
                least_mib: HYPERVISOR_RESERVED_MIB + need_kib.div_ceil(1024),
            }),
        });
    }
    Ok(())
}

/// The size and alignment of the block the control domain's pool needs: the kernel's buddy
/// allocator hands out power-of-two blocks aligned to their size, and the pool is one.
const POOL_BLOCK_MIB: u64 = CONTROL_POOL_BYTES >> 20;

/// Where QEMU `virt` puts the device tree it gives a `-kernel` boot without initrd, in MiB
/// from the start of RAM: at half the RAM, at most 128 MiB in (`hw/arm/boot.c`; measured:
/// `-m 140M` puts it at RAM + 70 MiB, `-m 1G` at RAM + 128 MiB). It takes 1 MiB; 2 MiB are
/// counted, for the alignment QEMU may add.
pub fn qemu_dtb_offset_mib(memory_mib: u64) -> u64 {
    (memory_mib / 2).min(128)
}

/// How many pool-sized, pool-aligned blocks of free RAM a machine of `memory_mib` has: not
/// the first (the hypervisor, its heap and the system image lie there) and none that holds
/// the device tree.
pub fn pool_blocks(memory_mib: u64) -> u64 {
    let dtb = qemu_dtb_offset_mib(memory_mib);
    (1..memory_mib / POOL_BLOCK_MIB)
        .map(|k| k * POOL_BLOCK_MIB)
        .filter(|&start| start + POOL_BLOCK_MIB <= memory_mib)
        .filter(|&start| dtb + 2 <= start || start + POOL_BLOCK_MIB <= dtb)
        .count() as u64
}

/// Pool-sized blocks the domains other than the control domain take whole: each domain's
/// fresh RAM comes in power-of-two chunks (the kernel's `build_domain`), and each chunk of
/// 64 MiB or more uses that many such blocks.
fn blocks_taken(domains: &[Domain]) -> u64 {
    domains
        .iter()
        .filter(|d| d.memory_from.is_none())
        .map(|d| (d.memory_kib >> 10) / POOL_BLOCK_MIB)
        .sum()
}

/// Fails if a system with a control domain leaves no block for its pool on a machine of
/// `memory_mib` (the boot would stop with `cannot start the system: out of memory`).
pub fn check_control_pool(memory_mib: u64, domains: &[Domain]) -> Result<(), Box<Problem>> {
    let Some(control) = domains.iter().find(|d| d.control) else {
        return Ok(());
    };
    let taken = blocks_taken(domains);
    let fits = |mib: u64| pool_blocks(mib) > taken;
    if fits(memory_mib) {
        return Ok(());
    }
    let least_mib = (memory_mib..=MAX_MACHINE_MEMORY_MIB)
        .find(|&m| fits(m))
        .unwrap_or(MAX_MACHINE_MEMORY_MIB);
    let blocks = match pool_blocks(memory_mib) {
        0 => "none".to_owned(),
        n => format!("only {n}"),
    };
    Err(Box::new(Problem::ControlPoolDoesNotFit {
        control: control.name.clone(),
        others: match taken {
            0 => String::new(),
            n => format!(" besides the {n} such block(s) the other domains' RAM takes"),
        },
        memory_mib,
        blocks,
        dtb_mib: qemu_dtb_offset_mib(memory_mib),
        least_mib,
    }))
}

/// What keeps the system from booting on a machine other than its `[machine]` (`mica run
/// --smp/--memory`, a smoke scenario's `[qemu]`): CPUs the domains or pools name that the
/// machine lacks (the kernel would move those vCPUs elsewhere), and RAM that does not
/// suffice. `what_cpus` and `what_memory` say where the values came from (`--smp 2`).
pub fn machine_problems(
    manifest: &Manifest,
    cpus: u32,
    what_cpus: &str,
    memory_mib: Option<u64>,
    what_memory: &str,
) -> Vec<String> {
    let mut problems = Vec::new();
    let missing =
        |list: &[u32]| -> Vec<u32> { list.iter().copied().filter(|c| *c >= cpus).collect() };
    let mut pinned = Vec::new();
    for d in &manifest.domains {
        if let Some(list) = &d.cpus {
            if !missing(list).is_empty() {
                pinned.push(format!("{} (cpus {list:?})", d.name));
            }
        }
    }
    for p in &manifest.pools {
        if !missing(&p.cpus).is_empty() {
            pinned.push(format!("pool {} (cpus {:?})", p.name, p.cpus));
        }
    }
    if !pinned.is_empty() {
        let highest = manifest
            .domains
            .iter()
            .filter_map(|d| d.cpus.as_ref())
            .chain(manifest.pools.iter().map(|p| &p.cpus))
            .flatten()
            .max()
            .copied()
            .unwrap_or(0);
        problems.push(format!(
            "{what_cpus} gives the machine CPUs 0 to {} but the manifest pins {} to CPUs it lacks; the kernel would move those vCPUs to other CPUs (a policy domain into the pool it manages): give at least {} CPUs (the manifest's [machine] cpus = {})",
            cpus.saturating_sub(1),
            pinned.join(", "),
            highest + 1,
            manifest.machine.cpus
        ));
    }
    if let Some(memory_mib) = memory_mib {
        let machine = Machine {
            memory_mib,
            ..manifest.machine.clone()
        };
        let at = Location::file(&manifest.path);
        let fits = if memory_mib < HYPERVISOR_RESERVED_MIB {
            Err(format!(
                "{what_memory} is less than the {HYPERVISOR_RESERVED_MIB} MiB the hypervisor keeps"
            ))
        } else {
            check_memory_fits(at, &machine, &manifest.domains)
                .map_err(|e| problem_text(&e))
                .and_then(|()| {
                    check_control_pool(memory_mib, &manifest.domains).map_err(|p| p.to_string())
                })
        };
        if let Err(text) = fits {
            // The manifest's words for `[machine] memory_mib`, said of this machine.
            let text = text.replace(
                &format!("memory_mib = {memory_mib} "),
                &format!("{memory_mib} MiB of RAM "),
            );
            let text = regex::Regex::new(r"set memory_mib to at least (\d+)")
                .map(|re| {
                    re.replace_all(&text, "give the machine at least ${1} MiB")
                        .into_owned()
                })
                .unwrap_or(text);
            problems.push(format!("{what_memory}: {text}"));
        }
    }
    problems
}

/// The problem of a manifest error without its location.
fn problem_text(e: &ManifestError) -> String {
    match e {
        ManifestError::Invalid { problem, .. } => problem.to_string(),
        other => other.to_string(),
    }
}

impl Manifest {
    /// Parses and checks manifest text; `path` names the file in errors and is the base of
    /// relative `path = "..."` entries.
    pub fn parse(path: &Path, text: &str) -> Result<Manifest, ManifestError> {
        let file: ManifestFile = toml::from_str(text).map_err(|e| ManifestError::Syntax {
            at: e.span().map_or_else(
                || Location::file(path),
                |span| Location::at_offset(path, text, span.start),
            ),
            message: e.message().trim().to_owned(),
        })?;
        Checker { path, text }.check(file)
    }

    /// Reads, parses and checks the manifest at `path`.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// The directory `path = "..."` entries are relative to.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new(""))
    }

    /// The ELF file of every domain, in order, checking that each exists: `binary = "NAME"`
    /// is `guests_dir/NAME`, `path = "FILE"` is relative to the manifest's directory.
    pub fn domain_elfs(&self, guests_dir: &Path) -> Result<Vec<PathBuf>, ManifestError> {
        self.domains
            .iter()
            .map(|d| self.domain_elf(d, guests_dir))
            .collect()
    }

    /// The ELF file of `domain` (one of this manifest's), checking that it exists.
    pub fn domain_elf(&self, d: &Domain, guests_dir: &Path) -> Result<PathBuf, ManifestError> {
        match &d.elf {
            DomainElf::Binary(binary) => {
                let tried = guests_dir.join(binary);
                if tried.is_file() {
                    Ok(tried)
                } else {
                    Err(ManifestError::MissingBinary {
                        at: d.elf_at.clone(),
                        domain: d.name.clone(),
                        binary: binary.clone(),
                        tried,
                    })
                }
            }
            DomainElf::Path(path) => {
                let tried = self.dir().join(path);
                if tried.is_file() {
                    Ok(tried)
                } else {
                    Err(ManifestError::MissingPath {
                        at: d.elf_at.clone(),
                        domain: d.name.clone(),
                        tried,
                    })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = r#"
[system]
name = "two-guests"
arch = "aarch64"

[machine]
cpus = 2
memory_mib = 512
boot_args = "mica.poweroff_after_ms=5000"

[[domain]]
name = "hello-a"
kind = "guest"
binary = "hello"
memory_kib = 2048
cpus = [0]
arg = 5

[[domain]]
name = "hello-b"
kind = "service"
path = "elves/hello.elf"
memory_kib = 2048
vcpus = 2
priority = 3
mmu_off_cacheable = false
start = "after-destroy"
after = "hello-a"
memory_from = "hello-a"
"#;

    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(Path::new("images/t.toml"), text)
    }

    /// The error for `text`, as printed.
    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    /// TWO with the first `from` replaced by `to` (`from` must occur).
    fn edit(from: &str, to: &str) -> String {
        assert!(TWO.contains(from), "{from}");
        TWO.replacen(from, to, 1)
    }

    #[test]
    fn parses_every_field() {
        let m = parse(TWO).unwrap();
        assert_eq!(m.name, "two-guests");
        assert_eq!(m.arch, Arch::Aarch64);
        assert_eq!(
            m.machine,
            Machine {
                cpus: 2,
                memory_mib: 512,
                boot_args: Some("mica.poweroff_after_ms=5000".to_owned()),
            }
        );
        let [a, b] = &m.domains[..] else {
            panic!("{:?}", m.domains)
        };
        assert_eq!(a.name, "hello-a");
        assert_eq!(a.kind, DomainKind::Guest);
        assert_eq!(a.elf, DomainElf::Binary("hello".to_owned()));
        assert_eq!(a.elf_at.to_string(), "images/t.toml:14:10");
        assert_eq!(a.memory_kib, 2048);
        assert_eq!(a.vcpus, 1);
        assert_eq!(a.cpus, Some(vec![0]));
        assert_eq!(a.arg, 5);
        assert_eq!(a.start, Start::AtBoot);
        assert_eq!(a.memory_from, None);
        assert_eq!(a.priority, 0);
        assert!(a.mmu_off_cacheable);
        assert_eq!(b.kind, DomainKind::Service);
        assert_eq!(b.elf, DomainElf::Path(PathBuf::from("elves/hello.elf")));
        assert_eq!(b.vcpus, 2);
        assert_eq!(b.cpus, None);
        assert_eq!(b.start, Start::AfterDestroyOf(0));
        assert_eq!(b.memory_from, Some(0));
        assert_eq!(b.priority, 3);
        assert!(!b.mmu_off_cacheable);
        assert_eq!(m.dir(), Path::new("images"));
    }

    /// Measured under QEMU 7.2 with `images/lifecycle.toml` and `--memory`: 128, 160 and 190
    /// MiB stop at boot with `cannot create domain ctl: out of memory`; 192 MiB boots `ctl`.
    #[test]
    fn the_control_pool_needs_an_aligned_block_the_device_tree_does_not_split() {
        assert_eq!(qemu_dtb_offset_mib(140), 70);
        assert_eq!(qemu_dtb_offset_mib(1024), 128);
        for mib in [128, 140, 160, 190, 191] {
            assert_eq!(pool_blocks(mib), 0, "{mib} MiB");
        }
        assert_eq!(pool_blocks(192), 1);
        assert_eq!(
            pool_blocks(256),
            2,
            "[64, 128) below the DTB at 128, and [192, 256)"
        );
        assert_eq!(pool_blocks(512), 6);
        let text = edit("memory_mib = 512", "memory_mib = 160")
            + "\n[[domain]]\nname = \"ctl\"\nkind = \"service\"\nbinary = \"ctl\"\nmemory_kib = 2048\ncontrol = true\n";
        let err = error(&text);
        assert!(
            err.contains("the control domain `ctl` needs its 64 MiB pool as one free block aligned to 64 MiB, and memory_mib = 160 has none")
                && err.ends_with("set memory_mib to at least 192"),
            "{err}"
        );
        let m = parse(&text.replace("memory_mib = 160", "memory_mib = 192")).unwrap();
        assert!(machine_problems(&m, 2, "--smp 2", Some(192), "--memory 192M").is_empty());
        let problems = machine_problems(&m, 1, "--smp 1", Some(191), "--memory 191M");
        assert_eq!(
            problems.len(),
            1,
            "CPU 0 is all hello-a asks for: {problems:?}"
        );
        assert!(
            problems[0].starts_with("--memory 191M: the control domain `ctl` needs")
                && problems[0].ends_with("give the machine at least 192 MiB"),
            "{problems:?}"
        );
        let pinned = parse(
            &text
                .replace("cpus = [0]", "cpus = [1]")
                .replace("memory_mib = 160", "memory_mib = 192"),
        )
        .unwrap();
        let problems = machine_problems(&pinned, 1, "--smp 1", None, "");
        assert_eq!(
            problems,
            ["--smp 1 gives the machine CPUs 0 to 0 but the manifest pins hello-a (cpus [1]) to CPUs it lacks; the kernel would move those vCPUs to other CPUs (a policy domain into the pool it manages): give at least 2 CPUs (the manifest's [machine] cpus = 2)"]
        );
    }

    #[test]
    fn memory_mib_defaults_to_512() {
        let m = parse(&edit("memory_mib = 512\n", "")).unwrap();
        assert_eq!(m.machine.memory_mib, DEFAULT_MACHINE_MEMORY_MIB);
    }

    #[test]
    fn syntax_errors_have_positions() {
        assert_eq!(
            error(&edit("priority = 3", "priority = 3\ncolour = \"blue\"")),
            "images/t.toml:26:1: unknown field `colour`, expected one of `name`, `kind`, \
             `binary`, `path`, `memory_kib`, `vcpus`, `cpus`, `arg`, `start`, `after`, \
             `memory_from`, `priority`, `mmu_off_cacheable`, `sched`, `sched_policy`, \
             `memory_node`, `control`, `devices`"
        );
        let err = error(&edit("arch = \"aarch64\"", "arch = \"x86_64\""));
        assert!(err.starts_with("images/t.toml:4:8: "), "{err}");
        assert!(
            err.contains("unknown variant `x86_64`, expected `aarch64`"),
            "{err}"
        );
        let err = error(&edit("kind = \"guest\"", "kind = \"vm\""));
        assert!(err.contains("expected `guest` or `service`"), "{err}");
        let err = error(&edit("start = \"after-destroy\"", "start = \"later\""));
        assert!(err.contains("expected `boot` or `after-destroy`"), "{err}");
        let err = error(&edit("memory_kib = 2048\ncpus", "memory_kib = -4\ncpus"));
        assert!(err.starts_with("images/t.toml:15:14: "), "{err}");
        let err = error("[system]\nname = \"x\"\n");
        assert!(err.contains("missing field `arch`"), "{err}");
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(
            error(&edit("name = \"hello-b\"", "name = \"hello-a\"")),
            "images/t.toml:20:8: a domain named `hello-a` already exists (line 12): \
             give every domain a unique name"
        );
        let err = error(&edit("name = \"hello-b\"", "name = \"Hello_B\""));
        assert!(
            err.contains("domain name `Hello_B` is not allowed"),
            "{err}"
        );
        let long = format!("name = \"{}\"", "a".repeat(32));
        assert!(error(&edit("name = \"hello-b\"", &long)).contains("1 to 31 characters"));
        let err = error(&edit("name = \"two-guests\"", "name = \"\""));
        assert!(err.starts_with("images/t.toml:3:8: system name"), "{err}");
    }

    #[test]
    fn domain_references_are_checked() {
        assert_eq!(
            error(&edit("after = \"hello-a\"", "after = \"hello-c\"")),
            "images/t.toml:28:9: after = \"hello-c\" names no domain of this system; \
             the domains are: hello-a, hello-b"
        );
        let err = error(&edit("after = \"hello-a\"", "after = \"hello-b\""));
        assert!(err.contains("after names the domain itself"), "{err}");
        let err = error(&edit("start = \"after-destroy\"\n", ""));
        assert!(err.contains("`after` only applies"), "{err}");
        let err = error(&edit("after = \"hello-a\"\n", ""));
        assert!(err.starts_with("images/t.toml:27:9: "), "{err}");
        assert!(err.contains("needs `after = \"NAME\"`"), "{err}");
        let err = error(&edit(
            "start = \"after-destroy\"\nafter = \"hello-a\"\n",
            "",
        ));
        assert!(err.contains("memory_from = \"hello-a\" needs"), "{err}");
        let err = error(&edit(
            "memory_kib = 2048\nvcpus",
            "memory_kib = 4096\nvcpus",
        ));
        assert!(err.contains("give both the same memory_kib"), "{err}");
        let cycle = edit(
            "arg = 5\n",
            "arg = 5\nstart = \"after-destroy\"\nafter = \"hello-b\"\n",
        )
        .replace("memory_from = \"hello-a\"\n", "");
        assert_eq!(
            error(&cycle),
            "images/t.toml:19:9: start-after cycle hello-a -> hello-b -> hello-a: none of \
             these domains would ever start; give one of them start = \"boot\""
        );
        let third = format!(
            "{TWO}\n[[domain]]\nname = \"c\"\nkind = \"guest\"\nbinary = \"x\"\n\
             memory_kib = 2048\nstart = \"after-destroy\"\nafter = \"hello-a\"\n\
             memory_from = \"hello-a\"\n"
        );
        assert!(error(&third).contains("`hello-b` already receives the memory of `hello-a`"));
    }

    #[test]
    fn images_and_sizes_are_checked() {
        let err = error(&edit("binary = \"hello\"\n", ""));
        assert!(
            err.starts_with("images/t.toml:12:8: domain `hello-a` needs exactly one of"),
            "{err}"
        );
        let err = error(&edit(
            "binary = \"hello\"",
            "binary = \"hello\"\npath = \"x\"",
        ));
        assert!(err.starts_with("images/t.toml:15:8: "), "{err}");
        let err = error(&edit("binary = \"hello\"", "binary = \"../hello\""));
        assert!(err.contains("use `path = \"...\"`"), "{err}");
        assert_eq!(
            error(&edit("memory_kib = 2048\ncpus", "memory_kib = 2050\ncpus")),
            "images/t.toml:15:14: memory_kib = 2050: give a multiple of 4 (whole 4 KiB pages), \
             at least 64"
        );
        assert!(
            error(&edit("memory_kib = 2048\ncpus", "memory_kib = 60\ncpus"))
                .contains("at least 64")
        );
        let err = error(&edit("vcpus = 2", "vcpus = 9"));
        assert!(err.contains("vcpus = 9: give 1 to 8"), "{err}");
    }

    #[test]
    fn cpus_are_checked() {
        assert_eq!(
            error(&edit("cpus = [0]", "cpus = [0, 1]")),
            "images/t.toml:16:8: cpus has 2 entries but vcpus = 1: give one physical CPU per \
             vCPU, or leave `cpus` out to let the kernel choose"
        );
        assert_eq!(
            error(&edit("cpus = [0]", "cpus = [2]")),
            "images/t.toml:16:9: CPU 2 does not exist: [machine] cpus = 2, so use 0 to 1, \
             or raise [machine] cpus"
        );
        let err = error(&edit("cpus = 2", "cpus = 17"));
        assert!(err.starts_with("images/t.toml:7:8: cpus = 17"), "{err}");
        assert!(error(&edit("cpus = 2", "cpus = 0")).contains("1 to 16 CPUs"));
        let err = error(&edit("memory_mib = 512", "memory_mib = 64"));
        assert!(
            err.starts_with("images/t.toml:8:14: memory_mib = 64"),
            "{err}"
        );
    }

    #[test]
    fn memory_must_fit() {
        let big = edit("memory_kib = 2048\ncpus", "memory_kib = 65536\ncpus")
            .replace("memory_mib = 512", "memory_mib = 128")
            .replace("start = \"after-destroy\"\nafter = \"hello-a\"\n", "")
            .replace("memory_from = \"hello-a\"\n", "");
        assert_eq!(
            error(&big),
            "images/t.toml:8:14: the domains need 67584 KiB of RAM but memory_mib = 128 leaves \
             65536 KiB after the 64 MiB the hypervisor keeps: set memory_mib to at least 130, \
             or give the domains less memory_kib"
        );
        // A domain that receives another's frames needs no RAM of its own.
        let reuse = edit("memory_kib = 2048\ncpus", "memory_kib = 32768\ncpus")
            .replace("memory_kib = 2048\nvcpus", "memory_kib = 32768\nvcpus")
            .replace("memory_mib = 512", "memory_mib = 128");
        assert!(parse(&reuse).is_ok());
    }

    #[test]
    fn no_domains() {
        let err = error("[system]\nname = \"x\"\narch = \"aarch64\"\n[machine]\ncpus = 1\n");
        assert_eq!(
            err,
            "images/t.toml: the system has no domains: add at least one [[domain]] table"
        );
    }

    #[test]
    fn missing_elves_name_the_path_tried() {
        let m = parse(TWO).unwrap();
        let err = m.domain_elfs(Path::new("/nonexistent/guests")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "images/t.toml:14:10: domain `hello-a`: binary `hello` not found at \
             /nonexistent/guests/hello: run `make build` first (or pass --guests-dir DIR if \
             the guests are built elsewhere)"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hello"), b"x").unwrap();
        let err = m.domain_elfs(dir.path()).unwrap_err();
        assert!(
            matches!(err, ManifestError::MissingPath { ref tried, .. }
                if tried == Path::new("images/elves/hello.elf")),
            "{err}"
        );
        assert!(err
            .to_string()
            .contains("relative to the manifest's directory"));
        std::fs::create_dir_all(dir.path().join("elves")).unwrap();
        std::fs::write(dir.path().join("elves/hello.elf"), b"x").unwrap();
        let mut moved = m.clone();
        moved.path = dir.path().join("t.toml");
        assert_eq!(
            moved.domain_elfs(dir.path()).unwrap(),
            [dir.path().join("hello"), dir.path().join("elves/hello.elf")]
        );
    }

    /// TWO's domains, both at boot, with a channel and a shared region between them.
    fn linked() -> String {
        let base = TWO
            .replace("start = \"after-destroy\"\nafter = \"hello-a\"\n", "")
            .replace("memory_from = \"hello-a\"\n", "");
        format!("{base}{LINKS}")
    }

    const LINKS: &str = r#"
[[channel]]
name = "a-b"
reason = "requests and responses"
a = { domain = "hello-a", endpoint = "to-b" }
b = { domain = "hello-b", endpoint = "to-a" }

[[shared]]
name = "ring"
reason = "the rings"
owner = "hello-a"
peer = "hello-b"
pages = 2
owner_offset_kib = 1024
peer_address = 0x8000_0000
peer_access = "read-write"
"#;

    /// `linked()` with the first `from` replaced by `to`.
    fn link_edit(from: &str, to: &str) -> String {
        let text = linked();
        assert!(text.contains(from), "{from}");
        text.replacen(from, to, 1)
    }

    /// `linked()` with one more `[[shared]]` (owner, peer, pages, offset, address).
    fn second_share(owner: &str, peer: &str, pages: u32, offset_kib: u64, address: u64) -> String {
        format!(
            "{}\n[[shared]]\nname = \"second\"\nreason = \"r\"\nowner = \"{owner}\"\n\
             peer = \"{peer}\"\npages = {pages}\nowner_offset_kib = {offset_kib}\n\
             peer_address = {address:#x}\npeer_access = \"read-only\"\n",
            linked()
        )
    }

    #[test]
    fn channels_and_shares_parse() {
        let m = parse(&linked()).unwrap();
        assert_eq!(
            m.channels,
            [Channel {
                name: "a-b".to_owned(),
                reason: "requests and responses".to_owned(),
                a: Endpoint {
                    domain: 0,
                    name: "to-b".to_owned()
                },
                b: Endpoint {
                    domain: 1,
                    name: "to-a".to_owned()
                },
            }]
        );
        assert_eq!(
            m.shares,
            [Share {
                name: "ring".to_owned(),
                reason: "the rings".to_owned(),
                owner: 0,
                peer: 1,
                pages: 2,
                owner_offset: 1024 * 1024,
                peer_address: 0x8000_0000,
                peer_access: PeerAccess::ReadWrite,
            }]
        );
        assert_eq!(m.shares[0].size(), 8192);
        assert_eq!(PeerAccess::ReadWrite.rights(), Rights::READ | Rights::WRITE);
        assert_eq!(PeerAccess::ReadOnly.rights(), Rights::READ);
        // Without either section there are none.
        let plain = parse(TWO).unwrap();
        assert!(plain.channels.is_empty() && plain.shares.is_empty());
    }

    #[test]
    fn channel_errors() {
        // Line numbers: the channel table starts on line 28 of `linked()`.
        assert_eq!(
            error(&link_edit("\"hello-b\", endpoint", "\"hello-c\", endpoint")),
            "images/t.toml:32:16: domain = \"hello-c\" names no domain of this system; the \
             domains are: hello-a, hello-b"
        );
        assert_eq!(
            error(&link_edit("\"hello-b\", endpoint", "\"hello-a\", endpoint")),
            "images/t.toml:32:16: both endpoints of channel `a-b` are in domain `hello-a`: a \
             channel connects two different domains, so name another domain in `b`"
        );
        assert_eq!(
            error(&link_edit("reason = \"requests and responses\"\n", "")),
            "images/t.toml:29:8: channel `a-b` needs a `reason`: add reason = \"...\", saying \
             why this authority exists (every capability the manifest grants is named and \
             given a reason)"
        );
        let err = error(&link_edit("\"requests and responses\"", "\"  \""));
        assert!(
            err.starts_with("images/t.toml:30:10: channel `a-b` needs a `reason`"),
            "{err}"
        );
        let long = "e".repeat(24);
        assert_eq!(
            error(&link_edit("\"to-a\"", &format!("\"{long}\""))),
            format!(
                "images/t.toml:32:38: endpoint `{long}` is not allowed: use 1 to 23 characters \
                 from a-z, 0-9 and `-` (a boot-info page entry holds 24 bytes)"
            )
        );
        assert!(parse(&link_edit("\"to-a\"", &format!("\"{}\"", "e".repeat(23)))).is_ok());
        let err = error(&link_edit("name = \"a-b\"", "name = \"A B\""));
        assert!(err.contains("channel name `A B` is not allowed"), "{err}");
        let err = error(&link_edit("endpoint = \"to-b\"", "endpoint = \"to_b\""));
        assert!(err.contains("endpoint `to_b` is not allowed"), "{err}");
        let err = error(&link_edit(
            "endpoint = \"to-b\"",
            "endpoint = \"to-b\", slot = 3",
        ));
        assert!(
            err.contains("unknown field `slot`, expected `domain` or `endpoint`"),
            "{err}"
        );
        let err = error(&link_edit("[[channel]]", "[[channel]]\ncolour = 1"));
        assert!(
            err.starts_with("images/t.toml:29:1: unknown field `colour`"),
            "{err}"
        );
        let err = error(&link_edit(
            "b = { domain = \"hello-b\", endpoint = \"to-a\" }\n",
            "",
        ));
        assert!(err.contains("missing field `b`"), "{err}");

        // Two channels: duplicate names, and endpoint names clashing in one domain.
        let twice = format!(
            "{}\n[[channel]]\nname = \"a-b\"\nreason = \"r\"\n\
             a = {{ domain = \"hello-a\", endpoint = \"x\" }}\n\
             b = {{ domain = \"hello-b\", endpoint = \"y\" }}\n",
            linked()
        );
        assert_eq!(
            error(&twice),
            "images/t.toml:45:8: a channel named `a-b` already exists (line 29): give every \
             channel a unique name"
        );
        let clash = twice
            .replacen(
                "name = \"a-b\"\nreason = \"r\"",
                "name = \"b-a\"\nreason = \"r\"",
                1,
            )
            .replace("endpoint = \"y\"", "endpoint = \"to-a\"");
        assert_eq!(
            error(&clash),
            "images/t.toml:48:38: domain `hello-b` already has a capability named `to-a` \
             (line 32): channel endpoints and shared regions share one namespace per domain, \
             so choose another name"
        );
        // The same endpoint name in two different domains is fine.
        assert!(parse(
            &twice
                .replacen(
                    "name = \"a-b\"\nreason = \"r\"",
                    "name = \"c\"\nreason = \"r\"",
                    1
                )
                .replace("endpoint = \"x\"", "endpoint = \"to-a\"")
        )
        .is_ok());

        let mut many = linked();
        for i in 0..MAX_CHANNELS {
            many.push_str(&format!(
                "[[channel]]\nname = \"c{i}\"\nreason = \"r\"\n\
                 a = {{ domain = \"hello-a\", endpoint = \"a{i}\" }}\n\
                 b = {{ domain = \"hello-b\", endpoint = \"b{i}\" }}\n"
            ));
        }
        let err = error(&many);
        assert!(
            err.contains("the system has 33 channels; a system image holds at most 32"),
            "{err}"
        );
    }

    #[test]
    fn share_errors() {
        // Line numbers: the shared table starts on line 34 of `linked()`.
        assert_eq!(
            error(&link_edit("owner = \"hello-a\"", "owner = \"nobody\"")),
            "images/t.toml:37:9: owner = \"nobody\" names no domain of this system; the \
             domains are: hello-a, hello-b"
        );
        let err = error(&link_edit("peer = \"hello-b\"", "peer = \"nobody\""));
        assert!(
            err.starts_with("images/t.toml:38:8: peer = \"nobody\" names no domain"),
            "{err}"
        );
        assert_eq!(
            error(&link_edit("peer = \"hello-b\"", "peer = \"hello-a\"")),
            "images/t.toml:38:8: shared region `ring` has `hello-a` as both owner and peer: a \
             domain already has its own RAM, so name another domain as `peer`"
        );
        let err = error(&link_edit("reason = \"the rings\"\n", ""));
        assert!(
            err.starts_with("images/t.toml:35:8: shared region `ring` needs a `reason`"),
            "{err}"
        );
        let err = error(&link_edit(
            "name = \"ring\"",
            &format!("name = \"{}\"", "r".repeat(24)),
        ));
        assert!(
            err.contains("shared region name `rrrrrrrrrrrrrrrrrrrrrrrr` is not allowed"),
            "{err}"
        );
        assert_eq!(
            error(&link_edit("pages = 2", "pages = 0")),
            "images/t.toml:39:9: pages = 0: a shared region has at least one 4 KiB page"
        );
        assert_eq!(
            error(&link_edit(
                "owner_offset_kib = 1024",
                "owner_offset_kib = 1026"
            )),
            "images/t.toml:40:20: owner_offset_kib = 1026: give a multiple of 4 (shared regions \
             are whole 4 KiB pages)"
        );
        // hello-a has 2048 KiB: the region may end at 2044 KiB, not beyond.
        assert!(parse(&link_edit(
            "owner_offset_kib = 1024",
            "owner_offset_kib = 2036"
        ))
        .is_ok());
        assert_eq!(
            error(&link_edit(
                "owner_offset_kib = 1024",
                "owner_offset_kib = 2040"
            )),
            "images/t.toml:40:20: the region 2040..2048 KiB does not fit in `hello-a`'s RAM \
             below its last page (2048 KiB of RAM; the last 4 KiB are its boot-info page): \
             lower owner_offset_kib or pages, or raise `hello-a`'s memory_kib to at least 2052"
        );
        let err = error(&link_edit("pages = 2", "pages = 4294967295"));
        assert!(err.contains("does not fit in `hello-a`'s RAM"), "{err}");
        let err = error(&link_edit(
            "peer_access = \"read-write\"",
            "peer_access = \"write\"",
        ));
        assert!(
            err.contains("expected `read-only` or `read-write`"),
            "{err}"
        );
        assert_eq!(
            error(&link_edit(
                "peer_address = 0x8000_0000",
                "peer_address = 0x8000_0800"
            )),
            "images/t.toml:41:16: peer_address = 0x80000800 is not page aligned: give a \
             multiple of 0x1000"
        );
        // hello-b's RAM is 0x40000000..0x40200000.
        assert_eq!(
            error(&link_edit(
                "peer_address = 0x8000_0000",
                "peer_address = 0x401f_f000"
            )),
            "images/t.toml:41:16: peer_address 0x401ff000..0x40201000 is not above `hello-b`'s \
             RAM (0x40000000..0x40200000, with emulated devices below it) and below \
             0x8000000000 (the end of its 39-bit guest-physical space): map it at 0x80000000, \
             for example"
        );
        assert!(parse(&link_edit(
            "peer_address = 0x8000_0000",
            "peer_address = 0x4020_0000"
        ))
        .is_ok());
        let err = error(&link_edit(
            "peer_address = 0x8000_0000",
            "peer_address = 0x0800_0000",
        ));
        assert!(err.contains("is not above `hello-b`'s RAM"), "{err}");
        let err = error(&link_edit(
            "peer_address = 0x8000_0000",
            "peer_address = 0x7f_ffff_f000",
        ));
        assert!(
            err.contains("0x7ffffff000..0x8000001000 is not above"),
            "{err}"
        );
        let err = error(&link_edit(
            "peer_address = 0x8000_0000",
            "peer_address = -4096",
        ));
        assert!(err.starts_with("images/t.toml:41:16: "), "{err}");

        // Two regions of one owner may not overlap; different owners may use the same offsets.
        assert_eq!(
            error(&second_share("hello-a", "hello-b", 1, 1028, 0x9000_0000)),
            "images/t.toml:50:20: the region 1028..1032 KiB of `hello-a`'s RAM overlaps shared \
             region `ring` (1024..1032 KiB, line 40): give the regions disjoint \
             owner_offset_kib ranges (this one at 1032 or above, for example)"
        );
        assert!(parse(&second_share("hello-a", "hello-b", 1, 1032, 0x9000_0000)).is_ok());
        assert!(parse(&second_share("hello-b", "hello-a", 1, 1024, 0x8000_0000)).is_ok());
        // Two regions mapped into one peer may not overlap there.
        assert_eq!(
            error(&second_share("hello-a", "hello-b", 1, 1032, 0x8000_1000)),
            "images/t.toml:51:16: peer_address 0x80001000..0x80002000 overlaps shared region \
             `ring` (0x80000000..0x80002000, line 41), also mapped into `hello-b`: map this one \
             at 0x80002000 or above, for example"
        );
        assert!(parse(&second_share("hello-a", "hello-b", 1, 1032, 0x8000_2000)).is_ok());
        // A share name is a capability name in both domains.
        let clash = second_share("hello-b", "hello-a", 1, 1024, 0x8000_0000)
            .replace("name = \"second\"", "name = \"to-a\"");
        assert_eq!(
            error(&clash),
            "images/t.toml:45:8: domain `hello-b` already has a capability named `to-a` \
             (line 32): channel endpoints and shared regions share one namespace per domain, \
             so choose another name"
        );

        let mut many = linked();
        for i in 0..MAX_SHARES {
            many.push_str(&format!(
                "[[shared]]\nname = \"s{i}\"\nreason = \"r\"\nowner = \"hello-b\"\n\
                 peer = \"hello-a\"\npages = 1\nowner_offset_kib = {}\n\
                 peer_address = {:#x}\npeer_access = \"read-only\"\n",
                4 * i,
                0x8000_0000 + 0x1000 * i
            ));
        }
        let err = error(&many);
        assert!(
            err.contains("the system has 17 shared regions; a system image holds at most 16"),
            "{err}"
        );
        let nine = many
            .split("[[shared]]\nname = \"s8\"")
            .next()
            .unwrap()
            .to_owned();
        let err = error(&nine);
        assert!(
            err.contains("domain `hello-b` owns or maps more than 8 shared regions"),
            "{err}"
        );
    }

    /// Every manifest in `images/` parses and passes every check that needs no built file.
    const SCHED: &str = r#"
[system]
name = "sched"
arch = "aarch64"

[machine]
cpus = 4

[[pool]]
name = "fair"
cpus = [0, 1]
policy = "credit"

[[pool]]
name = "realtime"
cpus = [2]
policy = "rt"

[[domain]]
name = "policy"
kind = "service"
binary = "sched"
memory_kib = 2048
cpus = [3]
priority = 200
sched_policy = true

[[domain]]
name = "heavy"
kind = "guest"
binary = "worker"
memory_kib = 1024
cpus = [0]
sched = { weight = 4, cap_percent = 50 }

[[domain]]
name = "light"
kind = "guest"
binary = "worker"
memory_kib = 1024
vcpus = 2
cpus = [0, 1]
sched = { weight = 1 }

[[domain]]
name = "control-loop"
kind = "guest"
binary = "worker"
memory_kib = 1024
cpus = [2]
sched = { budget_us = 2000, period_us = 10000 }

[[domain]]
name = "policy-again"
kind = "service"
binary = "sched"
memory_kib = 2048
cpus = [3]
sched_policy = true
start = "after-destroy"
after = "policy"
"#;

    fn sched_edit(from: &str, to: &str) -> String {
        assert!(SCHED.contains(from), "{from}");
        SCHED.replacen(from, to, 1)
    }

    fn sched_error(from: &str, to: &str) -> String {
        error(&sched_edit(from, to))
    }

    #[test]
    fn pools_and_sched_requests_parse_and_the_policy_domain_gets_their_policies() {
        use mica_abi::sched::{pack_policies, policy};
        let m = parse(SCHED).unwrap();
        assert_eq!(
            m.pools,
            [
                Pool {
                    name: "fair".to_owned(),
                    cpus: vec![0, 1],
                    policy: PoolPolicy::Credit
                },
                Pool {
                    name: "realtime".to_owned(),
                    cpus: vec![2],
                    policy: PoolPolicy::Rt
                },
            ]
        );
        let arg = pack_policies(&[policy::CREDIT, policy::CREDIT, policy::RT, policy::NONE]);
        assert!(m.domains[0].sched_policy);
        assert_eq!(m.domains[0].arg, arg);
        assert_eq!(m.domains[4].arg, arg, "the restarted policy domain too");
        let heavy = m.domains[1].sched;
        assert_eq!((heavy.weight, heavy.cap_percent), (4, 50));
        assert_eq!(m.domains[2].sched.weight, 1);
        let rt = m.domains[3].sched;
        assert_eq!((rt.budget_us, rt.period_us), (2000, 10_000));
        assert!(!m.domains[1].sched_policy);
        assert_eq!(
            m.domains[1].sched.memory_node, 0,
            "not given: the CPU's node"
        );
        let placed = parse(&sched_edit(
            "cpus = [2]\nsched",
            "cpus = [2]\nmemory_node = 1\nsched",
        ))
        .unwrap();
        assert_eq!(
            placed.domains[3].sched.memory_node, 2,
            "node 1 is written as 2"
        );
        assert!(
            sched_error("cpus = [2]\nsched", "cpus = [2]\nmemory_node = 255\nsched")
                .contains("memory_node = 255: give a NUMA node number from 0 to 254")
        );
    }

    #[test]
    fn pool_errors() {
        assert_eq!(
            sched_error("cpus = [2]\npolicy", "cpus = [1]\npolicy"),
            "images/t.toml:16:9: CPU 1 is already in pool `fair` (line 11): a CPU belongs to at most one pool"
        );
        assert_eq!(
            sched_error("name = \"realtime\"", "name = \"fair\""),
            "images/t.toml:15:8: a pool named `fair` already exists (line 10): give every pool a unique name"
        );
        assert!(sched_error("cpus = [0, 1]", "cpus = []").contains("pool `fair` has no CPUs"));
        assert!(sched_error("cpus = [0, 1]", "cpus = [0, 7]").contains("CPU 7 does not exist"));
        assert!(sched_error("policy = \"rt\"", "policy = \"edf\"")
            .contains("unknown variant `edf`, expected one of `credit`, `rt`, `partition`"));
        assert!(sched_error("name = \"fair\"", "name = \"Fair\"")
            .contains("pool name `Fair` is not allowed"));
    }

    #[test]
    fn sched_request_errors() {
        assert_eq!(
            sched_error("weight = 4,", "weight = 0,"),
            "images/t.toml:34:20: weight = 0: give 1 to 65535 (relative to the other domains of the credit pool)"
        );
        assert!(sched_error("cap_percent = 50", "cap_percent = 101")
            .contains("cap_percent = 101: give 1 to 100"));
        assert!(sched_error("budget_us = 2000", "budget_us = 20000")
            .contains("budget_us = 20000, period_us = 10000: give 1 <= budget_us <= period_us"));
        assert!(
            sched_error("budget_us = 2000, period_us = 10000", "budget_us = 2000")
                .contains("a reservation needs both budget_us and period_us")
        );
        assert!(sched_error(
            "budget_us = 2000, period_us = 10000",
            "budget_us = 20, period_us = 50"
        )
        .contains("period_us from 100"));
        assert!(sched_error(
            "{ weight = 1 }",
            "{ weight = 1, budget_us = 1, period_us = 100 }"
        )
        .contains("sched mixes a credit request"));
        assert!(sched_error("{ weight = 1 }", "{}").contains("sched is empty"));
        assert!(sched_error("{ weight = 1 }", "{ weight = 1, share = 2 }")
            .contains("unknown field `share`"));
        assert_eq!(
            sched_error("cpus = [2]\nsched", "cpus = [0]\nsched"),
            "images/t.toml:51:9: domain `control-loop` asks for a reservation, which only a `rt` pool honours, but its CPU 0 is in `credit` pool `fair`: pin its vCPUs with `cpus` to CPUs of a `rt` pool"
        );
        assert!(sched_error("cpus = [0, 1]\nsched", "sched").contains(
            "asks for a weight, which only a `credit` pool honours, but it has no `cpus`"
        ));
        assert!(sched_error(
            "cpus = [0]\nsched = { weight = 4",
            "cpus = [3]\nsched = { weight = 4"
        )
        .contains("but its CPU 3 is in no pool"));
    }

    #[test]
    fn policy_domain_errors() {
        assert_eq!(
            sched_error("priority = 200\nsched_policy = true", "priority = 200\nsched_policy = true\narg = 3"),
            "images/t.toml:27:7: the policy domain's arg is computed from the [[pool]] tables (each CPU's policy, mica_abi::sched::pack_policies): remove `arg`"
        );
        assert!(
            sched_error("start = \"after-destroy\"\nafter = \"policy\"\n", "")
                .contains("domain `policy-again` is a second policy domain")
        );
        assert!(sched_error("after = \"policy\"", "after = \"heavy\"")
            .contains("domain `policy-again` is a second policy domain"));
        let none = SCHED.replace("sched_policy = true", "sched_policy = false");
        assert!(error(&none).contains(
            "a domain asks for scheduling (`sched`) but no domain has sched_policy = true"
        ));
        let bare = TWO.replacen(
            "[[domain]]",
            "[[pool]]\nname = \"p\"\ncpus = [0]\npolicy = \"partition\"\n\n[[domain]]",
            1,
        );
        assert!(error(&bare)
            .contains("the system has [[pool]] tables but no domain has sched_policy = true"));
    }

    #[test]
    fn links_between_domains_that_never_run_together_are_refused() {
        let chain = r#"
[system]
name = "chain"
arch = "aarch64"
[machine]
cpus = 1
[[domain]]
name = "first"
kind = "guest"
binary = "hello"
memory_kib = 1024
[[domain]]
name = "second"
kind = "guest"
binary = "hello"
memory_kib = 1024
start = "after-destroy"
after = "first"
[[domain]]
name = "third"
kind = "guest"
binary = "hello"
memory_kib = 1024
start = "after-destroy"
after = "second"
[[domain]]
name = "other"
kind = "guest"
binary = "hello"
memory_kib = 1024
"#;
        let channel = |a: &str, b: &str| {
            format!(
                "{chain}[[channel]]\nname = \"c\"\nreason = \"r\"\na = {{ domain = \"{a}\", endpoint = \"x\" }}\nb = {{ domain = \"{b}\", endpoint = \"y\" }}\n"
            )
        };
        // Either order, directly or through the chain.
        let err = error(&channel("first", "second"));
        assert!(err.starts_with("images/t.toml:35:16: channel `c` links `first` and `second`, but `second` starts only after `first` is destroyed (second after first)"), "{err}");
        let err = error(&channel("third", "first"));
        assert!(err.starts_with("images/t.toml:34:16: channel `c` links `first` and `third`, but `third` starts only after `first` is destroyed (third after second after first)"), "{err}");
        // Domains that can run at the same time may be linked.
        parse(&channel("second", "other")).unwrap();
        parse(&channel("third", "other")).unwrap();
        let share = |owner: &str, peer: &str| {
            format!(
                "{chain}[[shared]]\nname = \"s\"\nreason = \"r\"\nowner = \"{owner}\"\npeer = \"{peer}\"\npages = 1\nowner_offset_kib = 0\npeer_address = 0x8000_0000\npeer_access = \"read-only\"\n"
            )
        };
        let err = error(&share("second", "first"));
        assert!(
            err.contains("shared region `s` links `first` and `second`")
                && err.contains("remove the shared region"),
            "{err}"
        );
        parse(&share("other", "third")).unwrap();
    }

    #[test]
    fn every_manifest_in_images_is_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../images");
        let mut checked = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let m = Manifest::load(&path).unwrap_or_else(|e| panic!("{e}"));
                let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
                assert_eq!(
                    m.name,
                    stem,
                    "{}: [system] name is the file stem",
                    path.display()
                );
                checked.push(stem);
            }
        }
        for expected in [
            "default",
            "destroy-scrub",
            "event-flood",
            "isolation",
            "pingpong",
            "revoke-shared",
            "smp-guest",
            "two-guests",
        ] {
            assert!(
                checked.iter().any(|c| c == expected),
                "images/{expected}.toml is missing"
            );
        }
    }

    /// TWO with `hello-b` the control domain, given `devices`.
    fn control(devices: &str) -> String {
        edit(
            "priority = 3",
            &format!("priority = 3\ncontrol = true\ndevices = [{devices}]"),
        )
    }

    #[test]
    fn control_domain_and_devices() {
        let m = parse(&control(
            "{ name = \"console\", address = 0x0a003e00, size = 0x200, interrupt = 79 }",
        ))
        .unwrap();
        assert!(m.domains[1].control && !m.domains[0].control);
        assert_eq!(
            m.devices,
            [Device {
                name: "console".into(),
                domain: 1,
                mmio_base: 0x0a00_3000,
                mmio_size: 0x1000,
                interrupt: 79,
            }]
        );
        // A window across a page boundary covers both pages; no interrupt is 0.
        let m = parse(&control(
            "{ name = \"regs\", address = 0x0900_0ff0, size = 0x20 }",
        ))
        .unwrap();
        assert_eq!(
            (m.devices[0].mmio_base, m.devices[0].mmio_size),
            (0x0900_0000, 0x2000)
        );
        assert_eq!(m.devices[0].interrupt, 0);
    }

    #[test]
    fn control_and_device_errors_name_the_place() {
        let guest = edit("arg = 5", "arg = 5\ncontrol = true");
        assert_eq!(
            error(&guest),
            "images/t.toml:18:11: domain `hello-a` is a guest: only a `kind = \"service\"` domain may be the control domain"
        );
        let two = control("")
            .replace("arg = 5", "arg = 5\ncontrol = true")
            .replace("kind = \"guest\"", "kind = \"service\"");
        assert!(
            error(&two).contains(
                "domain `hello-b` is a second control domain (the first is `hello-a`, line 12)"
            ),
            "{}",
            error(&two)
        );
        let dev = |d: &str| error(&control(d));
        assert!(
            dev("{ name = \"Console\", address = 0x0a003e00, size = 0x200 }")
                .contains("device name `Console`: use 1 to 19 characters")
        );
        assert!(
            dev("{ name = \"console\", address = 0x0a003e00, size = 0 }")
                .contains("the window 0xa003e00 + 0x0 is empty or wraps")
        );
        assert!(
            dev("{ name = \"console\", address = 0x40000000, size = 0x200 }")
                .contains("overlap `hello-b`'s RAM (0x40000000..0x40200000)")
        );
        assert!(
            dev("{ name = \"console\", address = 0x0a003e00, size = 0x200, interrupt = 16 }")
                .contains("interrupt = 16: give the GIC INTID of a shared peripheral interrupt")
        );
        let twice = dev(
            "{ name = \"a\", address = 0x0a003e00, size = 0x200, interrupt = 79 }, \
                         { name = \"b\", address = 0x0a003c00, size = 0x200, interrupt = 78 }",
        );
        assert!(
            twice
                .contains("device `b`: its pages 0xa003000..0xa004000 overlap those of device `a`"),
            "{twice}"
        );
        let irq = dev(
            "{ name = \"a\", address = 0x0a003e00, size = 0x200, interrupt = 79 }, \
                       { name = \"b\", address = 0x0a000000, size = 0x200, interrupt = 79 }",
        );
        assert!(
            irq.contains("interrupt 79 is already the interrupt of device `a`"),
            "{irq}"
        );
        let dup = dev("{ name = \"a\", address = 0x0a003e00, size = 0x200 }, \
                       { name = \"a\", address = 0x0a000000, size = 0x200 }");
        assert!(dup.contains("already has a capability named `a`"), "{dup}");
        assert!(error(&control(
            "{ name = \"a\", address = 1, size = 2, colour = 3 }"
        ))
        .contains("unknown field `colour`"));
    }
}
