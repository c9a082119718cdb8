//! What can be wrong with a manifest, and where: every problem names the file and, where
//! there is a span, the line and column, and says what to write instead.

use super::*;

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
    /// `kernel`, `initramfs`, `cmdline` or `script` on a domain that is not `kind = "linux"`.
    #[error("domain `{0}`: kernel, initramfs, cmdline and script are for `kind = \"linux\"` domains; a guest or service runs an ELF (`binary` or `path`)")]
    LinuxFieldElsewhere(String),
    /// `binary` or `path` on a Linux domain.
    #[error("domain `{0}` is `kind = \"linux\"`: it boots a kernel Image (`kernel = \"FILE\"`, or leave it out for the Debian kernel `mica fetch-linux` caches), not an ELF")]
    LinuxElf(String),
    /// A role a Linux guest cannot have.
    #[error("domain `{domain}` is `kind = \"linux\"`: `{field}` is for Mica's own domains (Linux runs with its MMU off until it turns it on, and does not speak Mica's control or policy protocols)")]
    LinuxRole {
        /// The domain.
        domain: String,
        /// The field.
        field: &'static str,
    },
    /// The command line is too long or holds a NUL.
    #[error(
        "cmdline is {0} bytes or holds a NUL: Linux takes at most {MAX_CMDLINE} bytes of text"
    )]
    Cmdline(usize),
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
    /// More drives than QEMU's board has free transports.
    #[error("the machine has {0} drives, and at most {MAX_DRIVES} fit: each needs a 4 KiB page of QEMU's virtio-mmio transports to itself (a device is passed through a page at a time), and the last page is the control domain's console's")]
    TooManyDrives(usize),
    /// A drive of no size or too large.
    #[error("drive `{0}`: give its size_mib, from 1 to {MAX_DRIVE_MIB} (1 TiB)")]
    DriveSize(String),
    /// Two drives of one name.
    #[error("drive `{name}` is named twice (first on line {other_line}): QEMU names each drive's backend by it")]
    DriveNameTwice {
        /// The name.
        name: String,
        /// The first one.
        other_line: usize,
    },
    /// A domain driving two drives.
    #[error("`{server}` drives `{other}` already (line {other_line}): a block service drives one drive; give this one a block service of its own")]
    DriveServerTwice {
        /// The domain.
        server: String,
        /// The drive it has.
        other: String,
        /// Where that one is.
        other_line: usize,
    },
    /// Two drives on one file.
    #[error("{file} is drive `{other}`'s file already (line {other_line}): give each drive a file of its own")]
    DriveFileTwice {
        /// The file.
        file: String,
        /// The drive that has it.
        other: String,
        /// Where that one is.
        other_line: usize,
    },
    /// A guest's disk slot under one of its passed-through devices.
    #[error("disk `{disk}`: its virtio registers at {window:#x} lie in the page of the guest's device `{device}`: the kernel answers them, so move the device (a [[drive]] it serves takes a page of QEMU's virtio transports) or give the guest its disks elsewhere")]
    DiskSlotTaken {
        /// The disk.
        disk: String,
        /// The device.
        device: String,
        /// The slot's window.
        window: u64,
    },
    /// A drive without a file.
    #[error("drive `{0}`: file = \"\": name the host file that holds the disk (created, sparse, when missing)")]
    DriveFile(String),
    /// `offset_mib` without `drive`.
    #[error("disk `{0}`: offset_mib without drive: name the [[drive]] the disk is an extent of, or leave out offset_mib (a RAM disk of its server)")]
    DiskOffsetWithoutDrive(String),
    /// `drive` names no drive.
    #[error("disk `{disk}`: drive = \"{drive}\" names no [[drive]] of this system; the drives are: {drives}")]
    DiskNoSuchDrive {
        /// The disk.
        disk: String,
        /// The name given.
        drive: String,
        /// The drives there are.
        drives: String,
    },
    /// An extent past the drive's end.
    #[error("disk `{disk}`: offset_mib = {offset_mib} and size_mib = {size_mib} end past drive `{drive}`, which has {drive_mib} MiB")]
    DiskPastDrive {
        /// The disk.
        disk: String,
        /// Its offset.
        offset_mib: u64,
        /// Its size.
        size_mib: u64,
        /// The drive.
        drive: String,
        /// The drive's size.
        drive_mib: u64,
    },
    /// Two extents of one drive overlap.
    #[error("disk `{disk}` overlaps disk `{other}` (line {other_line}) on drive `{drive}`: give each guest its own part of the drive")]
    DiskOverlap {
        /// The disk.
        disk: String,
        /// The one it overlaps.
        other: String,
        /// Where that one is.
        other_line: usize,
        /// The drive.
        drive: String,
    },
    /// A disk served by its drive's own server.
    #[error("disk `{disk}`: `{server}` drives `{drive}` itself: name a device domain (binary `vda`) as the disk's server, which passes the guest's requests to `{server}`")]
    DiskServedByDriveServer {
        /// The disk.
        disk: String,
        /// The server.
        server: String,
        /// The drive.
        drive: String,
    },
    /// No room for a disk's I/O region in the block service's RAM.
    #[error("disk `{disk}`: the block service `{service}` has no room for the disk's {kib} KiB I/O region below its boot-info page and its other regions: give it more memory_kib")]
    DiskIoDoesNotFit {
        /// The disk.
        disk: String,
        /// The block service.
        service: String,
        /// The region's size.
        kib: u64,
    },
    /// The device domain's window for an I/O region is taken.
    #[error("disk `{disk}`: `{device}` already has a shared region at {address:#x}, where the disk's I/O region goes: move that region")]
    DiskIoWindowTaken {
        /// The disk.
        disk: String,
        /// The device domain.
        device: String,
        /// The window.
        address: u64,
    },
    /// A disk's name.
    #[error("disk name `{0}`: use 1 to 17 of a-z, 0-9 and `-` (the server's capabilities are NAME, NAME-events and NAME-ram)")]
    BadDiskName(String),
    /// A disk served by its own guest.
    #[error("disk `{disk}`: `{guest}` cannot serve its own disk: name another domain as its server (one that runs a virtio device domain)")]
    DiskServedByItself {
        /// The disk.
        disk: String,
        /// The guest.
        guest: String,
    },
    /// A disk of no size.
    #[error("disk `{0}`: size_mib = 0: give the disk's size in MiB (at least 1)")]
    DiskSize(String),
    /// More disks on a guest than a domain may have.
    #[error("`{guest}` has more than {most} disks: a domain has at most {most} virtio devices (mica_abi::virtio::MAX_DEVICES)")]
    TooManyDisks {
        /// The guest.
        guest: String,
        /// The limit.
        most: usize,
    },
    /// More servings of guests' RAM by one server than its guest-physical space has windows for.
    #[error("`{server}` serves more than {most} disks: each needs a window of its guest-physical space for the guest's RAM")]
    TooManyDisksServed {
        /// The server.
        server: String,
        /// The limit.
        most: usize,
    },
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
