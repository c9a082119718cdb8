//! The serde mirror of a manifest file: one struct per table, unknown fields refused, the
//! source span kept for every value a later check may complain about.

use super::*;

// ---------------------------------------------------------------------------------------
// The file as written.

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ManifestFile {
    pub(crate) system: SystemSection,
    pub(crate) machine: MachineSection,
    #[serde(default, rename = "domain")]
    pub(crate) domains: Vec<DomainSection>,
    #[serde(default, rename = "channel")]
    pub(crate) channels: Vec<ChannelSection>,
    #[serde(default, rename = "shared")]
    pub(crate) shares: Vec<SharedSection>,
    #[serde(default, rename = "pool")]
    pub(crate) pools: Vec<PoolSection>,
    #[serde(default, rename = "drive")]
    pub(crate) drives: Vec<DriveSection>,
}

/// `[[drive]]`: a disk of the machine (a host file QEMU presents as a virtio-blk device),
/// passed through to the domain that drives it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DriveSection {
    pub(crate) name: Spanned<String>,
    pub(crate) file: Spanned<String>,
    pub(crate) size_mib: Spanned<u64>,
    pub(crate) server: Spanned<String>,
}

/// `[system]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SystemSection {
    pub(crate) name: Spanned<String>,
    pub(crate) arch: Arch,
}

/// `[machine]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MachineSection {
    pub(crate) cpus: Spanned<u32>,
    #[serde(default)]
    pub(crate) memory_mib: Option<Spanned<u64>>,
    #[serde(default)]
    pub(crate) boot_args: Option<String>,
}

/// One `[[domain]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DomainSection {
    pub(crate) name: Spanned<String>,
    pub(crate) kind: DomainKind,
    #[serde(default)]
    pub(crate) binary: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) path: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) kernel: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) initramfs: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) cmdline: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) script: Option<Spanned<String>>,
    pub(crate) memory_kib: Spanned<u64>,
    #[serde(default)]
    pub(crate) vcpus: Option<Spanned<u32>>,
    #[serde(default)]
    pub(crate) cpus: Option<Spanned<Vec<Spanned<u32>>>>,
    #[serde(default)]
    pub(crate) arg: Option<Spanned<u64>>,
    #[serde(default)]
    pub(crate) start: Option<Spanned<StartMode>>,
    #[serde(default)]
    pub(crate) after: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) memory_from: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) priority: u32,
    #[serde(default)]
    pub(crate) mmu_off_cacheable: Option<bool>,
    #[serde(default)]
    pub(crate) sched: Option<Spanned<SchedSection>>,
    #[serde(default)]
    pub(crate) sched_policy: Option<Spanned<bool>>,
    #[serde(default)]
    pub(crate) memory_node: Option<Spanned<u64>>,
    #[serde(default)]
    pub(crate) control: Option<Spanned<bool>>,
    #[serde(default)]
    pub(crate) devices: Vec<DeviceSection>,
    #[serde(default)]
    pub(crate) disks: Vec<DiskSection>,
}

/// One entry of a domain's `disks = [...]`: a virtio block device served by another domain.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DiskSection {
    pub(crate) name: Spanned<String>,
    pub(crate) server: Spanned<String>,
    pub(crate) size_mib: Spanned<u64>,
    #[serde(default)]
    pub(crate) drive: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) offset_mib: Option<Spanned<u64>>,
}

/// One entry of a domain's `devices = [...]`: an MMIO device passed through to it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeviceSection {
    pub(crate) name: Spanned<String>,
    pub(crate) address: Spanned<u64>,
    pub(crate) size: Spanned<u64>,
    #[serde(default)]
    pub(crate) interrupt: Option<Spanned<u64>>,
}

/// A domain's `sched = { ... }`: what it asks the scheduling policy of its pool for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SchedSection {
    #[serde(default)]
    pub(crate) weight: Option<Spanned<u64>>,
    #[serde(default)]
    pub(crate) cap_percent: Option<Spanned<u64>>,
    #[serde(default)]
    pub(crate) budget_us: Option<Spanned<u64>>,
    #[serde(default)]
    pub(crate) period_us: Option<Spanned<u64>>,
}

/// One `[[pool]]`: physical CPUs scheduled by one policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PoolSection {
    pub(crate) name: Spanned<String>,
    pub(crate) cpus: Spanned<Vec<Spanned<u32>>>,
    pub(crate) policy: Spanned<PoolPolicy>,
}

/// One `[[channel]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChannelSection {
    pub(crate) name: Spanned<String>,
    /// Optional here so that a missing one gets our message, not serde's.
    #[serde(default)]
    pub(crate) reason: Option<Spanned<String>>,
    pub(crate) a: EndpointSection,
    pub(crate) b: EndpointSection,
}

/// `a = { domain = "...", endpoint = "..." }` of a `[[channel]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EndpointSection {
    pub(crate) domain: Spanned<String>,
    pub(crate) endpoint: Spanned<String>,
}

/// One `[[shared]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SharedSection {
    pub(crate) name: Spanned<String>,
    #[serde(default)]
    pub(crate) reason: Option<Spanned<String>>,
    pub(crate) owner: Spanned<String>,
    pub(crate) peer: Spanned<String>,
    pub(crate) pages: Spanned<u32>,
    pub(crate) owner_offset_kib: Spanned<u64>,
    pub(crate) peer_address: Spanned<u64>,
    pub(crate) peer_access: PeerAccess,
}

/// `start`, as written.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum StartMode {
    Boot,
    AfterDestroy,
}
