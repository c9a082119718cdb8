//! What a Linux guest is given at boot: the flattened device tree that describes exactly the
//! domain Mica made for it.
//!
//! Linux on arm64 learns its machine from the device tree whose address it finds in x0 at
//! entry (Documentation/arch/arm64/booting.rst). A Mica domain is not QEMU's `virt` machine
//! but looks like it where it has the same things (the addresses are
//! [`mica_abi::layout::devices`]), so [`device_tree`] writes only what the domain was given:
//!
//! - `/memory`: its RAM; `/chosen`: the command line, the initramfs and the console;
//! - `/cpus`: one node per vCPU, `reg` its MPIDR affinity ([`mica_abi::layout::vcpu_affinity`]),
//!   started through PSCI;
//! - `/psci`: PSCI 1.0 (0.2-compatible) over `hvc`, which the kernel emulates per domain;
//! - the GICv3 the hypervisor emulates (distributor, one redistributor per vCPU, the
//!   maintenance interrupt), the architected timer (its four PPIs, as `arm,armv8-timer` names
//!   them), the PL011 console and its clock;
//! - one `virtio,mmio` node per virtio device the domain has (none until the virtio work).
//!
//! No PMU, no flash, no RTC, no PCI: the domain has none. Built with `vm-fdt` (no_std +
//! alloc), so the host builder and the control domain (creating a guest at run time) write
//! the same tree. The tests hold the output to golden files and have `dtc` decompile it with
//! no warning.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod boot;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use mica_abi::layout::{devices, vcpu_affinity};
use vm_fdt::FdtWriter;

/// The GIC's phandle in the tree.
const GIC_PHANDLE: u32 = 1;
/// The console clock's phandle.
const CLOCK_PHANDLE: u32 = 2;
/// Interrupt specifier, first cell: an SPI (GIC binding).
const SPI: u32 = 0;
/// Interrupt specifier, first cell: a PPI.
const PPI: u32 = 1;
/// Interrupt specifier, third cell: edge, rising.
const EDGE_RISING: u32 = 1;
/// Interrupt specifier, third cell: level, high.
const LEVEL_HIGH: u32 = 4;
/// The PL011's reference clock (its divisors are computed from it; the emulation ignores them).
const UART_CLOCK_HZ: u32 = 24_000_000;
/// Most vCPUs a tree describes (the emulated GIC's limit per domain).
pub const MAX_VCPUS: u32 = 8;

/// One virtio-mmio device of the domain: its slot in [`devices::VIRTIO_BASE`]'s range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioSlot(pub u32);

/// What the domain was given, as the tree describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinuxDomain<'a> {
    /// vCPUs (1 to [`MAX_VCPUS`]).
    pub vcpus: u32,
    /// Guest-physical base of its RAM.
    pub ram_base: u64,
    /// Bytes of RAM.
    pub ram_size: u64,
    /// The kernel command line.
    pub bootargs: &'a str,
    /// The initramfs, `[start, end)` in guest-physical addresses, if there is one.
    pub initrd: Option<(u64, u64)>,
    /// Its virtio-mmio devices.
    pub virtio: &'a [VirtioSlot],
}

/// Why a tree could not be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TreeError {
    /// No vCPU, or more than [`MAX_VCPUS`].
    Vcpus(u32),
    /// The RAM is empty or wraps.
    Ram,
    /// The initramfs is empty, reversed or outside the RAM.
    Initrd,
    /// A virtio slot past the last one, or the same slot twice.
    Virtio(u32),
    /// The writer refused (a bug here, not bad input).
    Write(String),
}

impl core::fmt::Display for TreeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TreeError::Vcpus(n) => write!(f, "{n} vCPUs: a Linux guest has 1 to {MAX_VCPUS}"),
            TreeError::Ram => write!(f, "the RAM is empty or wraps"),
            TreeError::Initrd => write!(f, "the initramfs is empty or not inside the RAM"),
            TreeError::Virtio(n) => write!(f, "virtio slot {n} is past the last or given twice"),
            TreeError::Write(why) => write!(f, "writing the device tree: {why}"),
        }
    }
}

fn write_error(e: vm_fdt::Error) -> TreeError {
    TreeError::Write(format!("{e:?}"))
}

/// The two cells of a 64-bit value (`#address-cells = <2>`, `#size-cells = <2>`).
fn cells(value: u64) -> [u32; 2] {
    [(value >> 32) as u32, value as u32]
}

/// Checks `d` (nothing is written for a domain the tree cannot describe).
fn check(d: &LinuxDomain<'_>) -> Result<(), TreeError> {
    if d.vcpus == 0 || d.vcpus > MAX_VCPUS {
        return Err(TreeError::Vcpus(d.vcpus));
    }
    let ram_end = d.ram_base.checked_add(d.ram_size).ok_or(TreeError::Ram)?;
    if d.ram_size == 0 {
        return Err(TreeError::Ram);
    }
    if let Some((start, end)) = d.initrd {
        if start >= end || start < d.ram_base || end > ram_end {
            return Err(TreeError::Initrd);
        }
    }
    for (i, slot) in d.virtio.iter().enumerate() {
        if slot.0 >= devices::VIRTIO_SLOTS || d.virtio[..i].contains(slot) {
            return Err(TreeError::Virtio(slot.0));
        }
    }
    Ok(())
}

/// The console's node path, for `stdout-path`.
fn uart_node() -> String {
    format!("pl011@{:x}", devices::UART_BASE)
}

/// The flattened device tree (DTB) for `d`.
pub fn device_tree(d: &LinuxDomain<'_>) -> Result<Vec<u8>, TreeError> {
    check(d)?;
    let mut w = FdtWriter::new().map_err(write_error)?;
    let root = w.begin_node("").map_err(write_error)?;
    w.property_string("compatible", "linux,dummy-virt")
        .map_err(write_error)?;
    w.property_string("model", "Mica domain")
        .map_err(write_error)?;
    w.property_u32("#address-cells", 2).map_err(write_error)?;
    w.property_u32("#size-cells", 2).map_err(write_error)?;
    w.property_u32("interrupt-parent", GIC_PHANDLE)
        .map_err(write_error)?;

    // /chosen
    let chosen = w.begin_node("chosen").map_err(write_error)?;
    w.property_string("bootargs", d.bootargs)
        .map_err(write_error)?;
    w.property_string("stdout-path", &format!("/{}", uart_node()))
        .map_err(write_error)?;
    if let Some((start, end)) = d.initrd {
        w.property_u64("linux,initrd-start", start)
            .map_err(write_error)?;
        w.property_u64("linux,initrd-end", end)
            .map_err(write_error)?;
    }
    w.end_node(chosen).map_err(write_error)?;

    // /memory
    let memory = w
        .begin_node(&format!("memory@{:x}", d.ram_base))
        .map_err(write_error)?;
    w.property_string("device_type", "memory")
        .map_err(write_error)?;
    let [b0, b1] = cells(d.ram_base);
    let [s0, s1] = cells(d.ram_size);
    w.property_array_u32("reg", &[b0, b1, s0, s1])
        .map_err(write_error)?;
    w.end_node(memory).map_err(write_error)?;

    // /cpus
    let cpus = w.begin_node("cpus").map_err(write_error)?;
    w.property_u32("#address-cells", 1).map_err(write_error)?;
    w.property_u32("#size-cells", 0).map_err(write_error)?;
    for index in 0..d.vcpus {
        let mpidr = vcpu_affinity(index as usize) as u32;
        let cpu = w
            .begin_node(&format!("cpu@{mpidr:x}"))
            .map_err(write_error)?;
        w.property_string("device_type", "cpu")
            .map_err(write_error)?;
        w.property_string("compatible", "arm,armv8")
            .map_err(write_error)?;
        w.property_u32("reg", mpidr).map_err(write_error)?;
        w.property_string("enable-method", "psci")
            .map_err(write_error)?;
        w.end_node(cpu).map_err(write_error)?;
    }
    w.end_node(cpus).map_err(write_error)?;

    // /psci
    let psci = w.begin_node("psci").map_err(write_error)?;
    w.property_string_list(
        "compatible",
        alloc::vec!["arm,psci-1.0".into(), "arm,psci-0.2".into()],
    )
    .map_err(write_error)?;
    w.property_string("method", "hvc").map_err(write_error)?;
    w.end_node(psci).map_err(write_error)?;

    // The GICv3.
    let gic = w
        .begin_node(&format!("intc@{:x}", devices::GICD_BASE))
        .map_err(write_error)?;
    w.property_string("compatible", "arm,gic-v3")
        .map_err(write_error)?;
    w.property_u32("#interrupt-cells", 3).map_err(write_error)?;
    w.property_null("interrupt-controller")
        .map_err(write_error)?;
    // An interrupt provider states its address cells (dtc's interrupt_provider check); the
    // GIC has no children here, so the ranges are empty.
    w.property_u32("#address-cells", 2).map_err(write_error)?;
    w.property_u32("#size-cells", 2).map_err(write_error)?;
    w.property_null("ranges").map_err(write_error)?;
    w.property_u32("#redistributor-regions", 1)
        .map_err(write_error)?;
    let [gd0, gd1] = cells(devices::GICD_BASE);
    let [gds0, gds1] = cells(devices::GICD_SIZE);
    let [gr0, gr1] = cells(devices::GICR_BASE);
    let [grs0, grs1] = cells(u64::from(d.vcpus) * devices::GICR_STRIDE);
    w.property_array_u32("reg", &[gd0, gd1, gds0, gds1, gr0, gr1, grs0, grs1])
        .map_err(write_error)?;
    w.property_array_u32(
        "interrupts",
        &[PPI, devices::MAINTENANCE_INTID - 16, LEVEL_HIGH],
    )
    .map_err(write_error)?;
    w.property_phandle(GIC_PHANDLE).map_err(write_error)?;
    w.end_node(gic).map_err(write_error)?;

    // The architected timer: secure, non-secure physical, virtual, hypervisor PPIs.
    let timer = w.begin_node("timer").map_err(write_error)?;
    w.property_string("compatible", "arm,armv8-timer")
        .map_err(write_error)?;
    let mut timer_irqs = Vec::new();
    for intid in [
        devices::SECURE_TIMER_INTID,
        devices::PHYSICAL_TIMER_INTID,
        devices::VIRTUAL_TIMER_INTID,
        devices::HYP_TIMER_INTID,
    ] {
        timer_irqs.extend_from_slice(&[PPI, intid - 16, LEVEL_HIGH]);
    }
    w.property_array_u32("interrupts", &timer_irqs)
        .map_err(write_error)?;
    w.property_null("always-on").map_err(write_error)?;
    w.end_node(timer).map_err(write_error)?;

    // The console's clock and the PL011.
    let clock = w.begin_node("apb-pclk").map_err(write_error)?;
    w.property_string("compatible", "fixed-clock")
        .map_err(write_error)?;
    w.property_u32("#clock-cells", 0).map_err(write_error)?;
    w.property_u32("clock-frequency", UART_CLOCK_HZ)
        .map_err(write_error)?;
    w.property_string("clock-output-names", "clk24mhz")
        .map_err(write_error)?;
    w.property_phandle(CLOCK_PHANDLE).map_err(write_error)?;
    w.end_node(clock).map_err(write_error)?;

    let uart = w.begin_node(&uart_node()).map_err(write_error)?;
    w.property_string_list(
        "compatible",
        alloc::vec!["arm,pl011".into(), "arm,primecell".into()],
    )
    .map_err(write_error)?;
    let [u0, u1] = cells(devices::UART_BASE);
    let [us0, us1] = cells(devices::UART_SIZE);
    w.property_array_u32("reg", &[u0, u1, us0, us1])
        .map_err(write_error)?;
    w.property_array_u32("interrupts", &[SPI, devices::UART_INTID - 32, LEVEL_HIGH])
        .map_err(write_error)?;
    w.property_array_u32("clocks", &[CLOCK_PHANDLE, CLOCK_PHANDLE])
        .map_err(write_error)?;
    w.property_string_list(
        "clock-names",
        alloc::vec!["uartclk".into(), "apb_pclk".into()],
    )
    .map_err(write_error)?;
    w.end_node(uart).map_err(write_error)?;

    // virtio-mmio devices, in slot order.
    let mut slots: Vec<u32> = d.virtio.iter().map(|s| s.0).collect();
    slots.sort_unstable();
    for slot in slots {
        let base = devices::VIRTIO_BASE + u64::from(slot) * devices::VIRTIO_SIZE;
        let node = w
            .begin_node(&format!("virtio_mmio@{base:x}"))
            .map_err(write_error)?;
        w.property_string("compatible", "virtio,mmio")
            .map_err(write_error)?;
        let [v0, v1] = cells(base);
        let [vs0, vs1] = cells(devices::VIRTIO_SIZE);
        w.property_array_u32("reg", &[v0, v1, vs0, vs1])
            .map_err(write_error)?;
        w.property_array_u32(
            "interrupts",
            &[SPI, devices::VIRTIO_FIRST_INTID + slot - 32, EDGE_RISING],
        )
        .map_err(write_error)?;
        w.property_null("dma-coherent").map_err(write_error)?;
        w.end_node(node).map_err(write_error)?;
    }

    w.end_node(root).map_err(write_error)?;
    w.finish().map_err(write_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    fn two_vcpus() -> LinuxDomain<'static> {
        LinuxDomain {
            vcpus: 2,
            ram_base: 0x4000_0000,
            ram_size: 256 << 20,
            bootargs: "console=ttyAMA0 earlycon",
            initrd: Some((0x4800_0000, 0x4840_0000)),
            virtio: &[],
        }
    }

    fn with_virtio() -> LinuxDomain<'static> {
        LinuxDomain {
            vcpus: 4,
            ram_base: 0x4000_0000,
            ram_size: 1 << 30,
            bootargs: "console=ttyAMA0 root=/dev/vda",
            initrd: None,
            virtio: &[VirtioSlot(1), VirtioSlot(0)],
        }
    }

    /// `dtc -I dtb -O dts` of `dtb`: its output, and that it warned about nothing.
    fn decompile(dtb: &[u8]) -> String {
        let dir = tempdir();
        let path = dir.join("tree.dtb");
        std::fs::write(&path, dtb).unwrap();
        let out = Command::new("dtc")
            .args(["-I", "dtb", "-O", "dts"])
            .arg(&path)
            .output()
            .expect("dtc runs (scripts/setup.sh installs device-tree-compiler)");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(out.status.success(), "dtc failed");
        let warnings = String::from_utf8_lossy(&out.stderr);
        assert!(warnings.trim().is_empty(), "dtc warned:\n{warnings}");
        String::from_utf8(out.stdout).unwrap()
    }

    fn tempdir() -> std::path::PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mica-linux-guest-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Compares with `tests/golden/NAME.dts`; `MICA_UPDATE_GOLDEN=1` rewrites it.
    fn golden(name: &str, dts: &str) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(format!("{name}.dts"));
        if std::env::var_os("MICA_UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, dts).unwrap();
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(
            dts,
            want,
            "{} differs (MICA_UPDATE_GOLDEN=1 cargo test -p mica-linux-guest rewrites it)",
            path.display()
        );
    }

    #[test]
    fn two_vcpus_and_an_initramfs_match_the_golden_tree() {
        let dts = decompile(&device_tree(&two_vcpus()).unwrap());
        golden("two-vcpus-initramfs", &dts);
        assert!(dts.contains("linux,initrd-start = <0x00 0x48000000>;"));
        assert!(dts.contains("stdout-path = \"/pl011@9000000\";"));
        // One redistributor per vCPU.
        assert!(dts.contains("reg = <0x00 0x8000000 0x00 0x10000 0x00 0x80a0000 0x00 0x40000>;"));
        assert!(!dts.contains("virtio"));
    }

    #[test]
    fn virtio_devices_appear_in_slot_order_and_match_the_golden_tree() {
        let dts = decompile(&device_tree(&with_virtio()).unwrap());
        golden("four-vcpus-virtio", &dts);
        let first = dts.find("virtio_mmio@a000000").unwrap();
        let second = dts.find("virtio_mmio@a000200").unwrap();
        assert!(first < second);
        assert!(dts.contains("interrupts = <0x00 0x10 0x01>;"));
        assert!(dts.contains("interrupts = <0x00 0x11 0x01>;"));
        assert!(!dts.contains("initrd"));
        for cpu in 0..4 {
            assert!(dts.contains(&format!("cpu@{cpu} {{")), "cpu@{cpu}");
        }
    }

    #[test]
    fn what_the_tree_cannot_describe_is_refused() {
        let mut d = two_vcpus();
        d.vcpus = 0;
        assert_eq!(device_tree(&d), Err(TreeError::Vcpus(0)));
        d.vcpus = MAX_VCPUS + 1;
        assert_eq!(device_tree(&d), Err(TreeError::Vcpus(MAX_VCPUS + 1)));
        let mut d = two_vcpus();
        d.ram_size = 0;
        assert_eq!(device_tree(&d), Err(TreeError::Ram));
        d.ram_size = u64::MAX;
        assert_eq!(device_tree(&d), Err(TreeError::Ram));
        let mut d = two_vcpus();
        d.initrd = Some((0x3000_0000, 0x3000_1000));
        assert_eq!(device_tree(&d), Err(TreeError::Initrd));
        d.initrd = Some((0x4800_0000, 0x4800_0000));
        assert_eq!(device_tree(&d), Err(TreeError::Initrd));
        let mut d = two_vcpus();
        d.virtio = &[VirtioSlot(devices::VIRTIO_SLOTS)];
        assert_eq!(
            device_tree(&d),
            Err(TreeError::Virtio(devices::VIRTIO_SLOTS))
        );
        d.virtio = &[VirtioSlot(3), VirtioSlot(3)];
        assert_eq!(device_tree(&d), Err(TreeError::Virtio(3)));
    }

    #[test]
    fn any_vcpu_count_and_slot_set_gives_a_tree_dtc_reads_cleanly() {
        let slots: Vec<VirtioSlot> = (0..devices::VIRTIO_SLOTS).map(VirtioSlot).collect();
        for vcpus in 1..=MAX_VCPUS {
            let d = LinuxDomain {
                vcpus,
                virtio: &slots[..vcpus as usize],
                ..two_vcpus()
            };
            let dts = decompile(&device_tree(&d).unwrap());
            assert_eq!(dts.matches("device_type = \"cpu\"").count(), vcpus as usize);
        }
    }
}
