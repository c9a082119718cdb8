//! What the firmware's device tree says about the machine, reduced to what Mica uses.
//!
//! The flattened device tree is parsed once, at boot, into a plain [`Platform`] value: RAM
//! and reserved ranges, CPUs (MPIDR and NUMA node), the GICv3, the PL011 console, the
//! architected timer's interrupts, the PSCI conduit, the model string and the boot
//! arguments. Everything else the tree describes is listed in [`Platform::unused`] so boot
//! can say what it ignored instead of failing. Parsing uses the `fdt` crate but avoids its
//! convenience accessors that panic on missing nodes; a missing piece is reported by
//! [`Platform::check_required`] with a message that names it.

use core::fmt;

use crate::memmap::{MemMapError, PhysRange, RangeSet};

/// Most CPUs a platform description records (more are counted in `cpus_ignored`).
pub const MAX_CPUS: usize = mica_abi::layout::MAX_CPUS;
/// Most disjoint RAM ranges recorded.
pub const MAX_RAM_RANGES: usize = 16;
/// Most disjoint reserved ranges recorded.
pub const MAX_RESERVED_RANGES: usize = 32;
/// Most GICv3 redistributor regions recorded.
pub const MAX_REDIST_REGIONS: usize = 4;
/// Most distinct unused node names recorded.
pub const MAX_UNUSED_KINDS: usize = 32;

/// One CPU described by the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuInfo {
    /// The hardware id (on aarch64 the MPIDR affinity fields from `reg`).
    pub hw_id: u64,
    /// `numa-node-id`, if the tree gives one.
    pub numa_node: Option<u32>,
}

/// Where the GICv3 lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GicV3Info {
    /// The distributor (GICD) frame.
    pub distributor: PhysRange,
    /// The redistributor (GICR) regions.
    pub redistributors: heapless::Vec<PhysRange, MAX_REDIST_REGIONS>,
}

/// The PPIs (as GIC INTIDs) of the architected generic timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerInfo {
    /// EL1 physical timer.
    pub el1_physical: u32,
    /// EL1 virtual timer (what guests use).
    pub virtual_timer: u32,
    /// EL2 physical timer (the hypervisor's tick).
    pub el2_physical: u32,
    /// Whether the numbers came from the tree (false: architected defaults were assumed).
    pub from_tree: bool,
}

/// How firmware PSCI calls are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciConduit {
    /// `smc #0`.
    Smc,
    /// `hvc #0` (unusable from EL2, where it would trap to ourselves).
    Hvc,
}

/// A node kind the tree describes and Mica does not use, with how many such nodes there are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnusedNode<'a> {
    /// Node name without its unit address (`virtio_mmio` for `virtio_mmio@a000000`).
    pub name: &'a str,
    /// How many nodes had this name.
    pub count: u32,
}

/// The machine, as far as Mica cares.
#[derive(Clone, Debug)]
pub struct Platform<'a> {
    /// The root `model` property, or `"unknown"`.
    pub model: &'a str,
    /// `/chosen/bootargs`, or empty.
    pub bootargs: &'a str,
    /// Where the tree itself lies in physical memory.
    pub dtb: PhysRange,
    /// RAM from every `device_type = "memory"` node.
    pub ram: RangeSet<MAX_RAM_RANGES>,
    /// RAM ranges whose memory node names a `numa-node-id`.
    pub ram_nodes: heapless::Vec<(PhysRange, u32), MAX_RAM_RANGES>,
    /// `/reserved-memory` children and `/memreserve/` entries.
    pub reserved: RangeSet<MAX_RESERVED_RANGES>,
    /// The CPUs in tree order.
    pub cpus: heapless::Vec<CpuInfo, MAX_CPUS>,
    /// CPUs beyond [`MAX_CPUS`] that were not recorded.
    pub cpus_ignored: usize,
    /// The interrupt controller, if it is a GICv3.
    pub gic: Option<GicV3Info>,
    /// The PL011 UART chosen as console.
    pub uart: Option<PhysRange>,
    /// The architected timer.
    pub timer: Option<TimerInfo>,
    /// The PSCI conduit.
    pub psci: Option<PsciConduit>,
    /// Node kinds present but not used.
    pub unused: heapless::Vec<UnusedNode<'a>, MAX_UNUSED_KINDS>,
}

/// Why the tree could not be read at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlatformError {
    /// The blob is not a valid flattened device tree.
    InvalidDtb,
    /// More disjoint memory ranges than Mica records.
    TooManyRanges,
}

impl From<MemMapError> for PlatformError {
    fn from(_: MemMapError) -> Self {
        PlatformError::TooManyRanges
    }
}

impl fmt::Display for PlatformError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlatformError::InvalidDtb => f.write_str("the device tree blob is not valid (bad magic, version or size)"),
            PlatformError::TooManyRanges => write!(
                f,
                "the device tree describes more than {MAX_RAM_RANGES} RAM or {MAX_RESERVED_RANGES} reserved ranges"
            ),
        }
    }
}

/// A piece of the machine Mica cannot run without.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissingPiece {
    /// No memory node with a usable `reg`.
    Memory,
    /// No CPU node.
    Cpus,
    /// No `arm,gic-v3` interrupt controller.
    GicV3,
    /// No PSCI node, or one whose conduit cannot be used from EL2.
    Psci,
}

impl fmt::Display for MissingPiece {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MissingPiece::Memory => {
                "the device tree has no memory node (device_type = \"memory\" with a non-empty reg): there is no RAM to manage"
            }
            MissingPiece::Cpus => "the device tree has no cpu nodes under /cpus",
            MissingPiece::GicV3 => "the device tree has no GICv3 (compatible \"arm,gic-v3\") interrupt controller",
            MissingPiece::Psci => "the device tree has no PSCI node with method \"smc\" (needed to start CPUs and power off)",
        })
    }
}

const GIC_V3: &str = "arm,gic-v3";
const PL011: &str = "arm,pl011";
const TIMERS: [&str; 2] = ["arm,armv8-timer", "arm,armv7-timer"];
const PSCIS: [&str; 3] = ["arm,psci-1.0", "arm,psci-0.2", "arm,psci"];

/// Architected PPI numbers (GIC INTIDs) used when the tree has no timer node.
const DEFAULT_TIMER: TimerInfo = TimerInfo {
    el1_physical: 30,
    virtual_timer: 27,
    el2_physical: 26,
    from_tree: false,
};

impl<'a> Platform<'a> {
    /// Parses the tree in `blob`, which firmware placed at physical address `dtb_pa`.
    pub fn parse(blob: &'a [u8], dtb_pa: u64) -> Result<Platform<'a>, PlatformError> {
        let fdt = fdt::Fdt::new(blob).map_err(|_| PlatformError::InvalidDtb)?;
        let root = fdt.find_node("/").ok_or(PlatformError::InvalidDtb)?;
        let dtb = PhysRange::from_base_size(dtb_pa, fdt.total_size() as u64)
            .ok_or(PlatformError::InvalidDtb)?;
        let mut p = Platform {
            model: str_prop(root, "model").unwrap_or("unknown"),
            bootargs: "",
            dtb,
            ram: RangeSet::new(),
            ram_nodes: heapless::Vec::new(),
            reserved: RangeSet::new(),
            cpus: heapless::Vec::new(),
            cpus_ignored: 0,
            gic: None,
            uart: None,
            timer: None,
            psci: None,
            unused: heapless::Vec::new(),
        };

        for res in fdt.memory_reservations() {
            if let Some(r) = PhysRange::from_base_size(res.address() as u64, res.size() as u64) {
                p.reserved.insert(r)?;
            }
        }

        let mut stdout_path: Option<&'a str> = None;
        let mut uart_node_name: Option<&'a str> = None;
        for node in root.children() {
            let base = node.name.split('@').next().unwrap_or(node.name);
            if !enabled(node) {
                // Not for this world: QEMU's `secure=on` describes secure-only RAM and a
                // secure UART this way.
                continue;
            }
            if str_prop(node, "device_type") == Some("memory") {
                let numa = u32_prop(node, "numa-node-id");
                for r in regs(node) {
                    p.ram.insert(r)?;
                    if let Some(n) = numa {
                        let _ = p.ram_nodes.push((r, n));
                    }
                }
                continue;
            }
            match base {
                "chosen" => {
                    p.bootargs = str_prop(node, "bootargs").unwrap_or("");
                    stdout_path = str_prop(node, "stdout-path");
                    continue;
                }
                "reserved-memory" => {
                    for child in node.children().filter(|c| enabled(*c)) {
                        for r in regs(child) {
                            p.reserved.insert(r)?;
                        }
                    }
                    continue;
                }
                "cpus" => {
                    for cpu in node.children() {
                        if str_prop(cpu, "device_type") != Some("cpu") {
                            continue;
                        }
                        let Some(hw_id) = first_reg_address(cpu) else {
                            continue;
                        };
                        let info = CpuInfo {
                            hw_id,
                            numa_node: u32_prop(cpu, "numa-node-id"),
                        };
                        if p.cpus.push(info).is_err() {
                            p.cpus_ignored += 1;
                        }
                    }
                    continue;
                }
                "aliases" | "__symbols__" | "__fixups__" | "__local_fixups__" => continue,
                _ => {}
            }
            if is_compatible(node, &[GIC_V3]) && p.gic.is_none() {
                p.gic = gic_info(node);
                if p.gic.is_some() {
                    continue;
                }
            }
            if is_compatible(node, &TIMERS) && p.timer.is_none() {
                p.timer = Some(timer_info(node).unwrap_or(DEFAULT_TIMER));
                continue;
            }
            if is_compatible(node, &PSCIS) && p.psci.is_none() {
                p.psci = match str_prop(node, "method") {
                    Some("smc") => Some(PsciConduit::Smc),
                    Some("hvc") => Some(PsciConduit::Hvc),
                    _ => None,
                };
                continue;
            }
            if is_compatible(node, &[PL011]) && uart_node_name.is_none() {
                uart_node_name = Some(node.name);
                p.uart = regs(node).next();
                continue;
            }
            if node.property("compatible").is_some() {
                p.note_unused(base);
            }
        }

        // Prefer the UART /chosen/stdout-path names (options after ':' stripped), if it is
        // a PL011 other than the first one found.
        if let Some(path) = stdout_path {
            let path = path.split(':').next().unwrap_or(path);
            let node = if path.starts_with('/') {
                fdt.find_node(path)
            } else {
                fdt.aliases().and_then(|a| a.resolve_node(path))
            };
            if let Some(node) = node.filter(|n| enabled(*n)) {
                if is_compatible(node, &[PL011]) && Some(node.name) != uart_node_name {
                    if let Some(r) = regs(node).next() {
                        p.uart = Some(r);
                    }
                }
            }
        }
        Ok(p)
    }

    fn note_unused(&mut self, name: &'a str) {
        if let Some(u) = self.unused.iter_mut().find(|u| u.name == name) {
            u.count = u.count.saturating_add(1);
        } else {
            // Past the capacity further kinds are dropped from the report, which is only
            // informational.
            let _ = self.unused.push(UnusedNode { name, count: 1 });
        }
    }

    /// Checks that everything Mica cannot boot without is present.
    pub fn check_required(&self) -> Result<(), MissingPiece> {
        if self.ram.is_empty() {
            return Err(MissingPiece::Memory);
        }
        if self.cpus.is_empty() {
            return Err(MissingPiece::Cpus);
        }
        if self.gic.is_none() {
            return Err(MissingPiece::GicV3);
        }
        if self.psci != Some(PsciConduit::Smc) {
            return Err(MissingPiece::Psci);
        }
        Ok(())
    }

    /// Every physical range that must be mapped as device memory for Mica to drive the
    /// machine (GIC frames and the console).
    pub fn device_ranges(&self) -> impl Iterator<Item = PhysRange> + '_ {
        let gic = self
            .gic
            .iter()
            .flat_map(|g| core::iter::once(g.distributor).chain(g.redistributors.iter().copied()));
        gic.chain(self.uart)
    }

    /// The largest NUMA node id named by a CPU, if any.
    pub fn numa_nodes(&self) -> Option<u32> {
        let cpus = self.cpus.iter().filter_map(|c| c.numa_node);
        let ram = self.ram_nodes.iter().map(|(_, n)| *n);
        cpus.chain(ram).max().map(|n| n + 1)
    }

    /// The NUMA node of physical address `pa` (node 0 without NUMA information).
    pub fn node_of_address(&self, pa: u64) -> u32 {
        self.ram_nodes
            .iter()
            .find(|(r, _)| r.start <= pa && pa < r.end)
            .map_or(0, |(_, n)| *n)
    }
}

fn str_prop<'a>(node: fdt::node::FdtNode<'_, 'a>, name: &str) -> Option<&'a str> {
    let v = node.property(name)?.value;
    let v = v.strip_suffix(&[0]).unwrap_or(v);
    // A string-list property yields its first string.
    let first = v.split(|b| *b == 0).next()?;
    core::str::from_utf8(first).ok()
}

/// Whether a node describes something this world may use: no `status`, or `"okay"` (or the
/// older `"ok"`). Devicetree Specification 0.4, 2.3.4: `"disabled"` and the rest mean not.
fn enabled(node: fdt::node::FdtNode<'_, '_>) -> bool {
    matches!(str_prop(node, "status"), None | Some("okay" | "ok"))
}

fn u32_prop(node: fdt::node::FdtNode<'_, '_>, name: &str) -> Option<u32> {
    let v = node.property(name)?.value;
    Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?))
}

fn is_compatible(node: fdt::node::FdtNode<'_, '_>, wanted: &[&str]) -> bool {
    let Some(prop) = node.property("compatible") else {
        return false;
    };
    prop.value
        .split(|b| *b == 0)
        .filter_map(|s| core::str::from_utf8(s).ok())
        .any(|s| wanted.contains(&s))
}

fn be_cells(bytes: &[u8]) -> Option<u64> {
    match bytes.len() {
        4 => Some(u32::from_be_bytes(bytes.try_into().ok()?) as u64),
        8 => Some(u64::from_be_bytes(bytes.try_into().ok()?)),
        _ => None,
    }
}

/// The `reg` entries of `node` as physical ranges (entries that do not decode are skipped).
fn regs<'a>(node: fdt::node::FdtNode<'_, 'a>) -> impl Iterator<Item = PhysRange> + 'a {
    node.raw_reg()
        .into_iter()
        .flatten()
        .filter_map(|raw| PhysRange::from_base_size(be_cells(raw.address)?, be_cells(raw.size)?))
        .filter(|r| !r.is_empty())
}

fn first_reg_address(node: fdt::node::FdtNode<'_, '_>) -> Option<u64> {
    be_cells(node.raw_reg()?.next()?.address)
}

fn gic_info(node: fdt::node::FdtNode<'_, '_>) -> Option<GicV3Info> {
    let n_redist = u32_prop(node, "#redistributor-regions").unwrap_or(1) as usize;
    let mut it = regs(node);
    let distributor = it.next()?;
    let mut redistributors = heapless::Vec::new();
    for r in it.take(n_redist.min(MAX_REDIST_REGIONS)) {
        let _ = redistributors.push(r);
    }
    if redistributors.is_empty() {
        return None;
    }
    Some(GicV3Info {
        distributor,
        redistributors,
    })
}

/// Decodes `interrupts = <type num flags>...` of the timer node: secure physical,
/// non-secure physical, virtual, hypervisor physical (the binding's order).
fn timer_info(node: fdt::node::FdtNode<'_, '_>) -> Option<TimerInfo> {
    let v = node.property("interrupts")?.value;
    let mut ppis = v.chunks_exact(12).map(|c| {
        let kind = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        let num = u32::from_be_bytes([c[4], c[5], c[6], c[7]]);
        // Type 1 = PPI; PPI n is INTID 16 + n.
        (kind == 1).then_some(num + 16)
    });
    let _secure = ppis.next()??;
    let el1_physical = ppis.next()??;
    let virtual_timer = ppis.next()??;
    let el2_physical = ppis.next()??;
    Some(TimerInfo {
        el1_physical,
        virtual_timer,
        el2_physical,
        from_tree: true,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use vm_fdt::FdtWriter;

    /// Options for a synthetic QEMU-virt-like device tree.
    pub struct TreeSpec {
        pub memory: Vec<(u64, u64)>,
        pub reserved: Vec<(u64, u64)>,
        pub memreserve: Vec<(u64, u64)>,
        pub cpus: usize,
        pub numa: bool,
        pub psci_method: Option<&'static str>,
        pub gic: bool,
        pub bootargs: &'static str,
        /// What QEMU's `secure=on` adds: secure-only RAM and a secure UART (first among the
        /// UARTs here), both `status = "disabled"`, and a disabled reserved region.
        pub secure: bool,
    }

    impl Default for TreeSpec {
        fn default() -> Self {
            TreeSpec {
                memory: vec![(0x4000_0000, 0x4000_0000)],
                reserved: vec![],
                memreserve: vec![],
                cpus: 4,
                numa: false,
                psci_method: Some("smc"),
                gic: true,
                bootargs: "mica.poweroff_after_ms=100",
                secure: false,
            }
        }
    }

    pub fn build_tree(spec: &TreeSpec) -> Vec<u8> {
        let reservations: Vec<vm_fdt::FdtReserveEntry> = spec
            .memreserve
            .iter()
            .map(|(a, s)| vm_fdt::FdtReserveEntry::new(*a, *s).unwrap())
            .collect();
        let mut w = FdtWriter::new_with_mem_reserv(&reservations).unwrap();
        let root = w.begin_node("").unwrap();
        w.property_string("model", "linux,dummy-virt").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        w.property_u32("interrupt-parent", 1).unwrap();
        for (i, (base, size)) in spec.memory.iter().enumerate() {
            let n = w.begin_node(&format!("memory@{base:x}")).unwrap();
            w.property_string("device_type", "memory").unwrap();
            w.property_array_u64("reg", &[*base, *size]).unwrap();
            if spec.numa {
                w.property_u32("numa-node-id", i as u32).unwrap();
            }
            w.end_node(n).unwrap();
        }
        if spec.secure {
            let n = w.begin_node("secram@e000000").unwrap();
            w.property_string("device_type", "memory").unwrap();
            w.property_array_u64("reg", &[0xe00_0000, 0x100_0000])
                .unwrap();
            w.property_string("status", "disabled").unwrap();
            w.property_string("secure-status", "okay").unwrap();
            w.end_node(n).unwrap();
        }
        if !spec.reserved.is_empty() || spec.secure {
            let n = w.begin_node("reserved-memory").unwrap();
            w.property_u32("#address-cells", 2).unwrap();
            w.property_u32("#size-cells", 2).unwrap();
            w.property_null("ranges").unwrap();
            for (base, size) in &spec.reserved {
                let c = w.begin_node(&format!("fw@{base:x}")).unwrap();
                w.property_array_u64("reg", &[*base, *size]).unwrap();
                w.end_node(c).unwrap();
            }
            if spec.secure {
                let c = w.begin_node("unused@47000000").unwrap();
                w.property_array_u64("reg", &[0x4700_0000, 0x10_0000])
                    .unwrap();
                w.property_string("status", "disabled").unwrap();
                w.end_node(c).unwrap();
            }
            w.end_node(n).unwrap();
        }
        let cpus = w.begin_node("cpus").unwrap();
        w.property_u32("#address-cells", 1).unwrap();
        w.property_u32("#size-cells", 0).unwrap();
        for i in 0..spec.cpus {
            let c = w.begin_node(&format!("cpu@{i}")).unwrap();
            w.property_string("device_type", "cpu").unwrap();
            w.property_string("compatible", "arm,cortex-a72").unwrap();
            w.property_u32("reg", i as u32).unwrap();
            if spec.numa {
                w.property_u32("numa-node-id", (i % 2) as u32).unwrap();
            }
            w.end_node(c).unwrap();
        }
        w.end_node(cpus).unwrap();
        if let Some(m) = spec.psci_method {
            let n = w.begin_node("psci").unwrap();
            w.property_string_list(
                "compatible",
                vec![
                    "arm,psci-1.0".into(),
                    "arm,psci-0.2".into(),
                    "arm,psci".into(),
                ],
            )
            .unwrap();
            w.property_string("method", m).unwrap();
            w.end_node(n).unwrap();
        }
        if spec.gic {
            let n = w.begin_node("intc@8000000").unwrap();
            w.property_string("compatible", "arm,gic-v3").unwrap();
            w.property_u32("#interrupt-cells", 3).unwrap();
            w.property_u32("#redistributor-regions", 1).unwrap();
            w.property_array_u64("reg", &[0x800_0000, 0x1_0000, 0x80a_0000, 0xf6_0000])
                .unwrap();
            w.property_u32("phandle", 1).unwrap();
            w.end_node(n).unwrap();
        }
        let t = w.begin_node("timer").unwrap();
        w.property_string("compatible", "arm,armv8-timer").unwrap();
        w.property_array_u32(
            "interrupts",
            &[1, 13, 0x104, 1, 14, 0x104, 1, 11, 0x104, 1, 10, 0x104],
        )
        .unwrap();
        w.end_node(t).unwrap();
        let uarts: &[&str] = if spec.secure {
            &["pl011@9040000", "pl011@9000000", "pl011@9001000"]
        } else {
            &["pl011@9000000", "pl011@9001000"]
        };
        for name in uarts {
            let n = w.begin_node(name).unwrap();
            if *name == "pl011@9040000" {
                w.property_string("status", "disabled").unwrap();
                w.property_string("secure-status", "okay").unwrap();
            }
            w.property_string_list(
                "compatible",
                vec!["arm,pl011".into(), "arm,primecell".into()],
            )
            .unwrap();
            let base = u64::from_str_radix(name.split('@').nth(1).unwrap(), 16).unwrap();
            w.property_array_u64("reg", &[base, 0x1000]).unwrap();
            w.end_node(n).unwrap();
        }
        for i in 0..3u64 {
            let n = w
                .begin_node(&format!("virtio_mmio@{:x}", 0xa00_0000 + i * 0x200))
                .unwrap();
            w.property_string("compatible", "virtio,mmio").unwrap();
            w.end_node(n).unwrap();
        }
        let n = w.begin_node("chosen").unwrap();
        w.property_string("bootargs", spec.bootargs).unwrap();
        w.property_string("stdout-path", "/pl011@9001000:115200n8")
            .unwrap();
        w.end_node(n).unwrap();
        w.end_node(root).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn parses_a_qemu_virt_like_tree() {
        let blob = build_tree(&TreeSpec {
            reserved: vec![(0x4800_0000, 0x10_0000)],
            ..Default::default()
        });
        let p = Platform::parse(&blob, 0x4400_0000).unwrap();
        assert_eq!(p.model, "linux,dummy-virt");
        assert_eq!(p.bootargs, "mica.poweroff_after_ms=100");
        assert_eq!(p.dtb.start, 0x4400_0000);
        assert_eq!(p.dtb.size(), blob.len() as u64);
        assert_eq!(
            p.ram.iter().collect::<Vec<_>>(),
            vec![PhysRange {
                start: 0x4000_0000,
                end: 0x8000_0000
            }]
        );
        assert_eq!(p.reserved.total(), 0x10_0000);
        assert_eq!(p.cpus.len(), 4);
        assert_eq!(
            p.cpus[3],
            CpuInfo {
                hw_id: 3,
                numa_node: None
            }
        );
        let gic = p.gic.as_ref().unwrap();
        assert_eq!(
            gic.distributor,
            PhysRange {
                start: 0x800_0000,
                end: 0x801_0000
            }
        );
        assert_eq!(gic.redistributors.len(), 1);
        assert_eq!(
            p.timer,
            Some(TimerInfo {
                el1_physical: 30,
                virtual_timer: 27,
                el2_physical: 26,
                from_tree: true
            })
        );
        assert_eq!(p.psci, Some(PsciConduit::Smc));
        // stdout-path names the second UART; its options suffix is ignored.
        assert_eq!(
            p.uart,
            Some(PhysRange {
                start: 0x900_1000,
                end: 0x900_2000
            })
        );
        assert!(p.unused.contains(&UnusedNode {
            name: "virtio_mmio",
            count: 3
        }));
        assert!(p.unused.contains(&UnusedNode {
            name: "pl011",
            count: 1
        }));
        assert_eq!(p.check_required(), Ok(()));
        assert_eq!(p.device_ranges().count(), 3);
    }

    #[test]
    fn disabled_nodes_are_not_used() {
        let plain_blob = build_tree(&TreeSpec::default());
        let plain = Platform::parse(&plain_blob, 0).unwrap();
        let blob = build_tree(&TreeSpec {
            secure: true,
            ..Default::default()
        });
        let p = Platform::parse(&blob, 0).unwrap();
        assert_eq!(
            p.ram.iter().collect::<Vec<_>>(),
            plain.ram.iter().collect::<Vec<_>>(),
            "secure-only RAM is not RAM to manage"
        );
        assert_eq!(p.reserved.iter().count(), 0, "a disabled reservation");
        assert_eq!(p.uart, plain.uart, "the secure UART is not the console");
        assert_eq!(p.unused, plain.unused);
    }

    #[test]
    fn memreserve_and_numa_are_read() {
        let blob = build_tree(&TreeSpec {
            memreserve: vec![(0x4100_0000, 0x2000)],
            numa: true,
            ..Default::default()
        });
        let p = Platform::parse(&blob, 0x4000_0000).unwrap();
        assert_eq!(
            p.reserved.iter().next(),
            Some(PhysRange {
                start: 0x4100_0000,
                end: 0x4100_2000
            })
        );
        assert_eq!(p.cpus[1].numa_node, Some(1));
        assert_eq!(p.numa_nodes(), Some(2));
        let two = build_tree(&TreeSpec {
            memory: vec![(0x4000_0000, 0x4000_0000), (0x8000_0000, 0x4000_0000)],
            numa: true,
            ..Default::default()
        });
        let p = Platform::parse(&two, 0).unwrap();
        assert_eq!(p.ram_nodes.len(), 2);
        assert_eq!(p.node_of_address(0x9000_0000), 1);
        assert_eq!(p.node_of_address(0x4000_0000), 0);
    }

    #[test]
    fn missing_pieces_are_named() {
        let no_mem = build_tree(&TreeSpec {
            memory: vec![],
            ..Default::default()
        });
        let p = Platform::parse(&no_mem, 0x4000_0000).unwrap();
        assert_eq!(p.check_required(), Err(MissingPiece::Memory));
        assert!(MissingPiece::Memory.to_string().contains("no memory node"));

        let no_gic = build_tree(&TreeSpec {
            gic: false,
            ..Default::default()
        });
        assert_eq!(
            Platform::parse(&no_gic, 0).unwrap().check_required(),
            Err(MissingPiece::GicV3)
        );
        let hvc = build_tree(&TreeSpec {
            psci_method: Some("hvc"),
            ..Default::default()
        });
        assert_eq!(
            Platform::parse(&hvc, 0).unwrap().check_required(),
            Err(MissingPiece::Psci)
        );
        let no_cpus = build_tree(&TreeSpec {
            cpus: 0,
            ..Default::default()
        });
        assert_eq!(
            Platform::parse(&no_cpus, 0).unwrap().check_required(),
            Err(MissingPiece::Cpus)
        );
    }

    #[test]
    fn more_cpus_than_recorded_are_counted() {
        let blob = build_tree(&TreeSpec {
            cpus: MAX_CPUS + 3,
            ..Default::default()
        });
        let p = Platform::parse(&blob, 0).unwrap();
        assert_eq!(p.cpus.len(), MAX_CPUS);
        assert_eq!(p.cpus_ignored, 3);
    }

    #[test]
    fn garbage_is_rejected_not_panicked_on() {
        assert_eq!(
            Platform::parse(&[0u8; 64], 0).err(),
            Some(PlatformError::InvalidDtb)
        );
        assert_eq!(
            Platform::parse(&[], 0).err(),
            Some(PlatformError::InvalidDtb)
        );
        let mut blob = build_tree(&TreeSpec::default());
        blob.truncate(blob.len() / 2);
        assert_eq!(
            Platform::parse(&blob, 0).err(),
            Some(PlatformError::InvalidDtb)
        );
    }
}
