//! `mica bench-xen`: the same guest under Mica and under Xen 4.17, on the same QEMU machine.
//!
//! The peer is Debian bookworm's `xen-hypervisor-4.17-arm64` package, fetched at run time and
//! kept under `build/xen/` (nothing of Xen is in the repository): [`fetch_xen`] has
//! [`crate::debian::fetch`] get it through apt (`apt-get download`, checked against the
//! SHA-256 of apt's verified index, unpacked with `dpkg-deb`); later runs reuse it while its
//! hash checks out and apt's candidate is the same version.
//!
//! Both runs boot the guest `guests/nullbench` ([`MEASUREMENTS`]) alone, under QEMU with the
//! machine of the Mica system `images/bench-xen-peer.toml` (the same `-M`, `-cpu`, `-smp`, `-m`
//! and `-nographic` as every `mica` boot, [`crate::qemu`]) and `-icount shift=0,sleep=off`
//! ([`crate::bench::ICOUNT`]), so every figure is an instruction count that repeats exactly:
//!
//! - **Mica**: the system is built and booted as `mica bench` boots its systems
//!   ([`crate::bench::run_file`]); the guest is the default build (an ELF domain).
//! - **Xen**: `-kernel` the Xen Image, `-dtb` QEMU's own device tree with Xen's dom0less
//!   configuration added to `/chosen` ([`xen_dtb`]: Xen's console on the PL011, and one
//!   domain with the manifest's RAM and vCPUs, an emulated PL011 (`vpl011`) and the guest as
//!   its kernel), and the guest's `--features xen` build, flattened to an arm64 Image
//!   ([`crate::image::elf_to_image`]), put in RAM at [`GUEST_ADDR`] by QEMU's generic loader.
//!   There is no dom0: Xen 4.17 boots only the domain.
//!
//! Each run ends (QEMU stopped) as soon as its figures are in. The results go to
//! `bench/xen-results.json` ([`results_json`]) and to the `bench-xen` section of
//! `docs/PERFORMANCE.md` ([`table`]).

use crate::bench::{self, BenchError, BenchFile, BenchOptions, Kind, Measurement, Provenance};
use crate::debian::{self, DebianError, PackageEntry};
use crate::dtb::{self, DtbError, NewNode};
use crate::image::ImageError;
use crate::json::Json;
use crate::manifest::{Manifest, ManifestError};
use crate::qemu::{self, Launch, MachineConfig, MachineOverrides, QemuError};
use crate::transcript::Running;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The package that holds Xen.
pub const PACKAGE: &str = "xen-hypervisor-4.17-arm64";
/// Its architecture.
pub const ARCH: &str = "arm64";
/// The Xen arm64 Image inside the package.
pub const XEN_IN_PACKAGE: &str = "boot/xen-4.17-arm64";
/// Where the package is downloaded and unpacked, and the Xen run's files are written.
pub const DEFAULT_CACHE: &str = "build/xen";
/// The Mica system of the comparison; its machine is the Xen run's too.
pub const DEFAULT_SYSTEM: &str = "images/bench-xen-peer.toml";
/// The guest built for Xen (`make bench-xen` builds it there, apart from the Mica build).
pub const DEFAULT_XEN_GUEST: &str = "build/xen/target/aarch64-unknown-none/release/nullbench";
/// How to build [`DEFAULT_XEN_GUEST`].
pub const XEN_GUEST_BUILD: &str = "cargo build --release --target aarch64-unknown-none \
     -p mica-guest-nullbench --features xen --target-dir build/xen/target";
/// Where the results go by default.
pub const DEFAULT_RESULTS: &str = "bench/xen-results.json";
/// The section of [`crate::bench::DEFAULT_DOC`] with the comparison table.
pub const SECTION: &str = "bench-xen";
/// What the guest measures, in table order.
pub const MEASUREMENTS: [&str; 3] = ["boot", "counter-read", "null-hypercall"];
/// Where QEMU's loader puts the guest Image for Xen: RAM base + 96 MiB, clear of the Xen
/// Image (loaded at the RAM base) and of the DTB (QEMU puts it at RAM base + 128 MiB).
pub const GUEST_ADDR: u64 = 0x4600_0000;
/// Xen's command line: its console on the machine's PL011.
pub const XEN_BOOTARGS: &str = "console=dtuart dtuart=/pl011@9000000";
/// The Linux boot comparison's Mica system: one Linux domain, console lines timestamped.
pub const LINUX_SYSTEM: &str = "images/bench-linux.toml";
/// Where QEMU's loader puts the Linux kernel Image for Xen (RAM base + 160 MiB, above the DTB
/// QEMU puts at RAM base + 128 MiB), and the initramfs after it.
pub const LINUX_KERNEL_ADDR: u64 = 0x4A00_0000;
/// Xen's command line for the Linux run: timestamps on its console lines, the guest's
/// included, since it booted.
pub const XEN_LINUX_BOOTARGS: &str = "console=dtuart dtuart=/pl011@9000000 console_timestamps=boot";
/// Wall-clock limit for each run, boot included.
pub const TIMEOUT: Duration = Duration::from_secs(300);

/// Why the comparison could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BenchXenError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The Xen package could not be had.
    #[error("the Xen package: {0}")]
    Debian(#[from] DebianError),
    /// The unpacked package lacks the Xen Image.
    #[error("the unpacked package has no {0}")]
    NoXen(PathBuf),
    /// The Xen build of the guest is missing.
    #[error("{0} does not exist: build the guest for Xen first (`make bench-xen` does: {XEN_GUEST_BUILD})")]
    NoGuest(PathBuf),
    /// The system is not one the comparison can mirror.
    #[error("{path}: {message}")]
    System {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The manifest does not load.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The guest ELF cannot be flattened to an Image.
    #[error("the Xen guest: {0}")]
    Image(#[from] ImageError),
    /// The device tree cannot be edited.
    #[error("Xen's device tree: {0}")]
    Dtb(#[from] DtbError),
    /// QEMU could not be prepared or driven.
    #[error(transparent)]
    Qemu(#[from] QemuError),
    /// A run gave no figures, or writing them failed.
    #[error(transparent)]
    Bench(#[from] BenchError),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> BenchXenError + '_ {
    move |source| BenchXenError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The Xen to compare with: apt's entry for its package and where its Image is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XenPackage {
    /// apt's entry the download was checked against.
    pub entry: PackageEntry,
    /// The unpacked Xen Image.
    pub xen: PathBuf,
    /// Whether this run downloaded it (else the cached copy checked out).
    pub downloaded: bool,
}

/// Xen, through [`crate::debian::fetch`] into `cache`. `say` gets a line for each step.
pub fn fetch_xen(cache: &Path, say: &mut dyn FnMut(&str)) -> Result<XenPackage, BenchXenError> {
    let fetched = debian::fetch(cache, PACKAGE, ARCH, say)?;
    let xen = fetched.unpacked.join(XEN_IN_PACKAGE);
    if !xen.is_file() {
        return Err(BenchXenError::NoXen(xen));
    }
    Ok(XenPackage {
        entry: fetched.entry,
        xen,
        downloaded: fetched.downloaded,
    })
}

/// The domain both hypervisors run the guest in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerDomain {
    /// RAM in KiB.
    pub memory_kib: u64,
    /// vCPUs.
    pub vcpus: u32,
    /// Where the guest Image is in machine RAM for Xen.
    pub guest_addr: u64,
    /// The Image's length in bytes.
    pub guest_len: u64,
}

/// `value` as two 32-bit cells, high first.
fn two_cells(value: u64) -> [u32; 2] {
    [(value >> 32) as u32, value as u32]
}

/// What [`xen_dtb`] adds to `/chosen`: Xen's command line and one dom0less domain node
/// (Xen's docs/misc/arm/device-tree/booting.txt) with the guest as its kernel module.
pub fn chosen_addition(bootargs: &str, domain: &PeerDomain) -> NewNode {
    let [addr_hi, addr_lo] = two_cells(domain.guest_addr);
    let [len_hi, len_lo] = two_cells(domain.guest_len);
    let module = NewNode::new(format!("module@{:x}", domain.guest_addr))
        .property(
            "compatible",
            dtb::strings(&["multiboot,kernel", "multiboot,module"]),
        )
        .property("reg", dtb::cells(&[addr_hi, addr_lo, len_hi, len_lo]));
    let domu = NewNode::new("domU1")
        .property("compatible", dtb::string("xen,domain"))
        .property("#address-cells", dtb::cells(&[2]))
        .property("#size-cells", dtb::cells(&[2]))
        .property("memory", dtb::cells(&two_cells(domain.memory_kib)))
        .property("cpus", dtb::cells(&[domain.vcpus]))
        .property("vpl011", Vec::new())
        .child(module);
    NewNode::new("chosen")
        .property("#address-cells", dtb::cells(&[2]))
        .property("#size-cells", dtb::cells(&[2]))
        .property("xen,xen-bootargs", dtb::string(bootargs))
        .child(domu)
}

/// QEMU's device tree `qemu_dtb` with Xen's dom0less configuration for `domain` in `/chosen`.
pub fn xen_dtb(qemu_dtb: &[u8], domain: &PeerDomain) -> Result<Vec<u8>, DtbError> {
    dtb::add_to_node(qemu_dtb, "chosen", &chosen_addition(XEN_BOOTARGS, domain))
}

/// `/chosen` additions for the Linux comparison: Xen's command line with timestamps and a
/// dom0less domain with the kernel (and its command line) and the initramfs as modules.
pub fn linux_chosen_addition(
    memory_kib: u64,
    vcpus: u32,
    kernel: (u64, u64),
    initramfs: (u64, u64),
    cmdline: &str,
) -> NewNode {
    let module = |(addr, len): (u64, u64), kind: &str| {
        let [addr_hi, addr_lo] = two_cells(addr);
        let [len_hi, len_lo] = two_cells(len);
        NewNode::new(format!("module@{addr:x}"))
            .property("compatible", dtb::strings(&[kind, "multiboot,module"]))
            .property("reg", dtb::cells(&[addr_hi, addr_lo, len_hi, len_lo]))
    };
    let domu = NewNode::new("domU1")
        .property("compatible", dtb::string("xen,domain"))
        .property("#address-cells", dtb::cells(&[2]))
        .property("#size-cells", dtb::cells(&[2]))
        .property("memory", dtb::cells(&two_cells(memory_kib)))
        .property("cpus", dtb::cells(&[vcpus]))
        .property("vpl011", Vec::new())
        .child(module(kernel, "multiboot,kernel").property("bootargs", dtb::string(cmdline)))
        .child(module(initramfs, "multiboot,ramdisk"));
    NewNode::new("chosen")
        .property("#address-cells", dtb::cells(&[2]))
        .property("#size-cells", dtb::cells(&[2]))
        .property("xen,xen-bootargs", dtb::string(XEN_LINUX_BOOTARGS))
        .child(domu)
}

/// The time since boot a console line is stamped with (`[    1.234567] `, after `prefix`),
/// if it is `line` (what follows the stamp, after `before`).
pub fn stamped(line: &str, prefix: &str, before: &str, text: &str) -> Option<u64> {
    let rest = line.strip_prefix(prefix)?.strip_prefix('[')?;
    let (stamp, after) = rest.split_once("] ")?;
    if after.strip_prefix(before)? != text {
        return None;
    }
    let (secs, micros) = stamp.trim().split_once('.')?;
    let secs: u64 = secs.parse().ok()?;
    let micros: u64 = micros.parse().ok()?;
    Some(secs * 1_000_000_000 + micros * 1_000)
}

/// One hypervisor's Linux boot: its QEMU command line and the time from machine start to
/// the guest's first `/init` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinuxBoot {
    /// The QEMU command line.
    pub command: String,
    /// Nanoseconds (instructions, under `-icount`) to `mica-linux: init started`.
    pub init_ns: u64,
}

/// Both Linux boots and the domain they ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinuxComparison {
    /// RAM of the domain.
    pub memory_kib: u64,
    /// Its vCPUs.
    pub vcpus: u32,
    /// The kernel package (name and version).
    pub kernel: String,
    /// Mica's run.
    pub mica: LinuxBoot,
    /// Xen's run.
    pub xen: LinuxBoot,
}

/// Reads `running`'s console until a line gives [`stamped`]'s time.
fn wait_stamped(
    who: &str,
    running: &mut Running,
    deadline: Instant,
    prefix: &str,
    before: &str,
) -> Result<u64, BenchXenError> {
    let text = crate::build::linux::INIT_LINE;
    loop {
        match running.next(deadline)? {
            crate::transcript::Next::Serial(line) => {
                if let Some(ns) = stamped(line.trim_end_matches('\r'), prefix, before, text) {
                    return Ok(ns);
                }
            }
            crate::transcript::Next::Stderr(_) => {}
            end => {
                return Err(BenchXenError::System {
                    path: PathBuf::from(LINUX_SYSTEM),
                    message: format!("{who}: no `{text}` line before {end:?}"),
                })
            }
        }
    }
}

/// Boots the Debian kernel and initramfs under Mica ([`LINUX_SYSTEM`]) and as a Xen dom0less
/// domain of the same size, on the same machine under `-icount`, and reads from each
/// hypervisor's timestamped console when `/init` printed its first line.
pub fn run_linux(
    options: &PeerOptions,
    package: &XenPackage,
    say: &mut dyn FnMut(&str),
) -> Result<LinuxComparison, BenchXenError> {
    let system = Path::new(LINUX_SYSTEM);
    let manifest = Manifest::load(system)?;
    let [domain] = manifest.domains.as_slice() else {
        return Err(BenchXenError::System {
            path: system.to_owned(),
            message: "the Linux comparison runs one Linux domain".to_owned(),
        });
    };
    let crate::manifest::DomainElf::Linux(linux) = &domain.elf else {
        return Err(BenchXenError::System {
            path: system.to_owned(),
            message: "its domain is not `kind = \"linux\"`".to_owned(),
        });
    };
    let crate::builder::LinuxInputs {
        kernel, initramfs, ..
    } = crate::builder::linux_files(&manifest, domain, linux, true).map_err(|e| {
        BenchXenError::System {
            path: system.to_owned(),
            message: e.to_string(),
        }
    })?;
    let kernel_package = kernel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();

    // Mica.
    let deadline = Instant::now() + TIMEOUT;
    let built = crate::builder::build_to_temp(
        system,
        &crate::builder::BuildOptions {
            hypervisor: options.hypervisor.clone(),
            guests_dir: options.guests_dir.clone(),
        },
    )
    .map_err(|e| BenchXenError::System {
        path: system.to_owned(),
        message: e.to_string(),
    })?;
    let mut config = MachineConfig::new(
        built.file.to_path_buf(),
        Some(&built.manifest.machine),
        &MachineOverrides::default(),
    );
    config.extra_args = bench::ICOUNT.iter().map(|a| (*a).to_owned()).collect();
    let launch = qemu::prepare(&config, Some(deadline))?;
    let mica_command = launch.command_line().replace(
        &qemu::shell_quote(built.file.as_os_str()),
        &format!("<image built from {LINUX_SYSTEM}>"),
    );
    say(&format!("mica linux: {mica_command}"));
    let mut running = Running::spawn(&launch)?;
    let mica_ns = wait_stamped("mica", &mut running, deadline, "", "[linux] ");
    running.stop()?;
    let mica_ns = mica_ns?;

    // Xen: the same files as modules of a dom0less domain of the same size.
    let deadline = Instant::now() + TIMEOUT;
    let kernel_len = std::fs::metadata(&kernel).map_err(io_error(&kernel))?.len();
    let initramfs_len = std::fs::metadata(&initramfs)
        .map_err(io_error(&initramfs))?
        .len();
    let initramfs_addr = (LINUX_KERNEL_ADDR + kernel_len).next_multiple_of(2 << 20);
    let mut config = MachineConfig::new(
        package.xen.clone(),
        Some(&manifest.machine),
        &MachineOverrides::default(),
    );
    config.append = None;
    let program = qemu::find_qemu()?;
    let dumped = options.cache.join("qemu-linux.dtb");
    qemu::dump_dtb(&program, &config, &dumped, Some(deadline))?;
    let qemu_dtb = std::fs::read(&dumped).map_err(io_error(&dumped))?;
    let addition = linux_chosen_addition(
        domain.memory_kib,
        domain.vcpus,
        (LINUX_KERNEL_ADDR, kernel_len),
        (initramfs_addr, initramfs_len),
        &linux.cmdline,
    );
    let dtb_path = options.cache.join("xen-linux.dtb");
    std::fs::write(&dtb_path, dtb::add_to_node(&qemu_dtb, "chosen", &addition)?)
        .map_err(io_error(&dtb_path))?;
    config.extra_args = bench::ICOUNT.iter().map(|a| (*a).to_owned()).collect();
    let mut args = config.args(Some(&dtb_path), None);
    for (file, addr) in [(&kernel, LINUX_KERNEL_ADDR), (&initramfs, initramfs_addr)] {
        let mut loader = OsString::from("loader,file=");
        loader.push(file.as_os_str());
        loader.push(format!(",addr={addr:#x},force-raw=on"));
        args.push("-device".into());
        args.push(loader);
    }
    let launch = Launch::new(program, args);
    let xen_command = launch.command_line();
    say(&format!("xen linux: {xen_command}"));
    let mut running = Running::spawn(&launch)?;
    let xen_ns = wait_stamped("xen", &mut running, deadline, "(XEN) ", "DOM1: ");
    running.stop()?;
    let xen_ns = xen_ns?;
    Ok(LinuxComparison {
        memory_kib: domain.memory_kib,
        vcpus: domain.vcpus,
        kernel: kernel_package,
        mica: LinuxBoot {
            command: mica_command,
            init_ns: mica_ns,
        },
        xen: LinuxBoot {
            command: xen_command,
            init_ns: xen_ns,
        },
    })
}

/// The Markdown paragraph and table of the Linux comparison.
pub fn linux_table(c: &LinuxComparison) -> String {
    format!(
        "Linux boot, machine start to the first line `/init` prints (`{}`), read from each \
         hypervisor's timestamped console (Mica `mica.console_timestamps=on`, Xen \
         `console_timestamps=boot`) under `{}`: the Debian kernel `{}` and the busybox \
         initramfs of `mica fetch-linux` in a domain of {} KiB and {} vCPU on a 1-CPU machine \
         (Mica: `{}`; Xen: the same files as dom0less modules).\n\n\
         | measurement | Mica | Xen | Mica / Xen |\n\
         | --- | ---: | ---: | ---: |\n\
         | `linux-boot` | {} ns | {} ns | {} |\n",
        crate::build::linux::INIT_LINE,
        bench::ICOUNT.join(" "),
        c.kernel,
        c.memory_kib,
        c.vcpus,
        LINUX_SYSTEM,
        c.mica.init_ns,
        c.xen.init_ns,
        ratio(c.mica.init_ns, c.xen.init_ns)
    )
}

/// How `mica bench-xen` is asked to run.
#[derive(Clone, Debug)]
pub struct PeerOptions {
    /// The Mica system (one domain running the guest).
    pub system: PathBuf,
    /// The Mica hypervisor image.
    pub hypervisor: PathBuf,
    /// Where the Mica build of the guest is.
    pub guests_dir: PathBuf,
    /// The Xen build of the guest (an ELF).
    pub xen_guest: PathBuf,
    /// Where Xen is cached and the Xen run's files go.
    pub cache: PathBuf,
}

/// One hypervisor's run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerRun {
    /// The QEMU command line.
    pub command: String,
    /// The figures, in [`MEASUREMENTS`] order.
    pub measurements: Vec<Measurement>,
}

/// Both runs and what they ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerResults {
    /// The Mica system.
    pub system: PathBuf,
    /// The guest's domain.
    pub domain: PeerDomain,
    /// The QEMU machine flags both runs share (`-M ... -nographic`).
    pub machine: String,
    /// Mica's run.
    pub mica: PeerRun,
    /// Xen's run.
    pub xen: PeerRun,
    /// The Xen package.
    pub package: XenPackage,
    /// The Linux boot comparison ([`run_linux`]).
    pub linux: LinuxComparison,
}

/// What a run must print, as a bench file.
fn peer_file(system: &Path) -> BenchFile {
    BenchFile {
        description: "the nullbench guest alone: machine start to its first instruction, \
                      the counter read, a null hypercall"
            .to_owned(),
        system: system.to_owned(),
        kind: Kind::Icount,
        measurements: MEASUREMENTS.iter().map(|m| (*m).to_owned()).collect(),
        ready_lines: 0,
        idle_secs: 0,
        timeout_secs: TIMEOUT.as_secs(),
        direct: None,
        sleep: false,
    }
}

/// The one domain of the system, which the Xen run mirrors.
fn peer_domain(
    path: &Path,
    manifest: &Manifest,
    guest_len: u64,
) -> Result<PeerDomain, BenchXenError> {
    match manifest.domains.as_slice() {
        [domain] => Ok(PeerDomain {
            memory_kib: domain.memory_kib,
            vcpus: domain.vcpus,
            guest_addr: GUEST_ADDR,
            guest_len,
        }),
        domains => Err(BenchXenError::System {
            path: path.to_owned(),
            message: format!(
                "the comparison runs one domain, and this system has {}",
                domains.len()
            ),
        }),
    }
}

/// The machine flags of a configuration (everything before `-kernel`).
fn machine_flags(config: &MachineConfig) -> String {
    let args = config.args(None, None);
    let end = args
        .iter()
        .position(|a| a == "-kernel")
        .unwrap_or(args.len());
    args[..end]
        .iter()
        .map(|a| qemu::shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Boots Xen with the guest under `-icount` and collects the figures.
fn run_xen(
    options: &PeerOptions,
    manifest: &Manifest,
    package: &XenPackage,
    say: &mut dyn FnMut(&str),
) -> Result<(PeerRun, PeerDomain, String), BenchXenError> {
    let deadline = Instant::now() + TIMEOUT;
    if !options.xen_guest.is_file() {
        return Err(BenchXenError::NoGuest(options.xen_guest.clone()));
    }
    let elf = std::fs::read(&options.xen_guest).map_err(io_error(&options.xen_guest))?;
    let image = crate::image::elf_to_image(&elf)?;
    let image_path = options.cache.join("nullbench-xen.img");
    std::fs::write(&image_path, &image).map_err(io_error(&image_path))?;
    let domain = peer_domain(&options.system, manifest, image.len() as u64)?;

    let mut config = MachineConfig::new(
        package.xen.clone(),
        Some(&manifest.machine),
        &MachineOverrides::default(),
    );
    config.append = None;
    let machine = machine_flags(&config);
    let program = qemu::find_qemu()?;
    let dumped = options.cache.join("qemu.dtb");
    qemu::dump_dtb(&program, &config, &dumped, Some(deadline))?;
    let qemu_dtb = std::fs::read(&dumped).map_err(io_error(&dumped))?;
    let dtb_path = options.cache.join("xen.dtb");
    std::fs::write(&dtb_path, xen_dtb(&qemu_dtb, &domain)?).map_err(io_error(&dtb_path))?;

    let mut loader = OsString::from("loader,file=");
    loader.push(image_path.as_os_str());
    loader.push(format!(",addr={GUEST_ADDR:#x},force-raw=on"));
    config.extra_args = bench::ICOUNT.iter().map(|a| (*a).to_owned()).collect();
    let mut args = config.args(Some(&dtb_path), None);
    args.push("-device".into());
    args.push(loader);
    let launch = Launch::new(program, args);
    let command = launch.command_line();
    say(&format!("xen: {command}"));
    let mut running = Running::spawn(&launch)?;
    let figures = bench::collect("xen", &peer_file(&options.system), &mut running, deadline);
    running.stop()?;
    Ok((
        PeerRun {
            command,
            measurements: figures?,
        },
        domain,
        machine,
    ))
}

/// Runs the comparison: Xen fetched (or found in the cache), then the Mica run, then Xen's.
pub fn run(options: &PeerOptions, say: &mut dyn FnMut(&str)) -> Result<PeerResults, BenchXenError> {
    let package = fetch_xen(&options.cache, say)?;
    say(&format!(
        "xen: {} {} ({})",
        PACKAGE,
        package.entry.version,
        if package.downloaded {
            "downloaded"
        } else {
            "cached"
        }
    ));
    let manifest = Manifest::load(&options.system)?;
    let mica = bench::run_file(
        "mica",
        peer_file(&options.system),
        &BenchOptions {
            dir: PathBuf::new(),
            only: None,
            hypervisor: options.hypervisor.clone(),
            guests_dir: options.guests_dir.clone(),
        },
    )?;
    say(&format!("mica: {}", mica.command));
    let bench::Figures::Icount(mica_figures) = mica.figures else {
        unreachable!("peer_file is an icount bench");
    };
    let (xen, domain, machine) = run_xen(options, &manifest, &package, say)?;
    let linux = run_linux(options, &package, say)?;
    say(&format!(
        "linux-boot: mica {} ns, xen {} ns",
        linux.mica.init_ns, linux.xen.init_ns
    ));
    Ok(PeerResults {
        linux,
        system: options.system.clone(),
        domain,
        machine,
        mica: PeerRun {
            command: mica.command,
            measurements: mica_figures,
        },
        xen,
        package,
    })
}

/// Mica's median over Xen's, to two decimals; `—` when Xen's is 0.
pub fn ratio(mica: u64, xen: u64) -> String {
    if xen == 0 {
        "—".to_owned()
    } else {
        format!("{:.2}", mica as f64 / xen as f64)
    }
}

/// The measurement `name` of a run.
fn find<'a>(run: &'a PeerRun, name: &str) -> Option<&'a Measurement> {
    run.measurements.iter().find(|m| m.name == name)
}

/// The Markdown table: each measurement's median and range under both, and the ratio.
pub fn table(results: &PeerResults, provenance: &Provenance) -> String {
    let mut out = format!(
        "Measured by `make bench-xen` with {} under `{}`, machine `{}`; Xen {} from Debian's \
         `{}` (`{}`, SHA-256 `{}`); the guest `guests/nullbench` in a domain of {} KiB RAM \
         and {} vCPU; at commit {}.\n\n",
        provenance.qemu_version,
        bench::ICOUNT.join(" "),
        results.machine,
        results.package.entry.version,
        PACKAGE,
        results.package.entry.deb_name(),
        results.package.entry.sha256,
        results.domain.memory_kib,
        results.domain.vcpus,
        provenance.commit_text()
    );
    out.push_str(
        "| measurement | Mica median | Mica min – max | Xen median | Xen min – max | iterations | Mica / Xen (medians) |\n",
    );
    out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for name in MEASUREMENTS {
        let (Some(m), Some(x)) = (find(&results.mica, name), find(&results.xen, name)) else {
            continue;
        };
        out.push_str(&format!(
            "| `{name}` | {} ns | {} – {} ns | {} ns | {} – {} ns | {} | {} |\n",
            m.median_ns,
            m.min_ns,
            m.max_ns,
            x.median_ns,
            x.min_ns,
            x.max_ns,
            if m.iterations == x.iterations {
                m.iterations.to_string()
            } else {
                format!("{} / {}", m.iterations, x.iterations)
            },
            ratio(m.median_ns, x.median_ns)
        ));
    }
    out.push('\n');
    out.push_str(&linux_table(&results.linux));
    out
}

fn figures_json(m: &Measurement) -> Json {
    Json::object([
        ("median_ns", Json::from(m.median_ns)),
        ("min_ns", Json::from(m.min_ns)),
        ("max_ns", Json::from(m.max_ns)),
        ("iterations", Json::from(m.iterations)),
    ])
}

/// `bench/xen-results.json`: both runs' figures, the ratios and where they came from.
pub fn results_json(results: &PeerResults, provenance: &Provenance) -> String {
    let mut measurements = Vec::new();
    for name in MEASUREMENTS {
        let (Some(m), Some(x)) = (find(&results.mica, name), find(&results.xen, name)) else {
            continue;
        };
        let ratio = if x.median_ns == 0 {
            Json::Number(f64::NAN)
        } else {
            Json::Number((m.median_ns as f64 / x.median_ns as f64 * 1000.0).round() / 1000.0)
        };
        measurements.push(Json::object([
            ("name", Json::from(name)),
            ("mica", figures_json(m)),
            ("xen", figures_json(x)),
            ("mica_over_xen", ratio),
        ]));
    }
    let package = &results.package;
    Json::object([
        ("qemu_version", Json::from(provenance.qemu_version.as_str())),
        (
            "icount_flags",
            Json::Array(bench::ICOUNT.iter().map(|f| Json::from(*f)).collect()),
        ),
        ("machine", Json::from(results.machine.as_str())),
        ("commit", Json::from(provenance.commit.as_str())),
        ("work_tree_dirty", Json::Bool(provenance.dirty)),
        (
            "unit",
            Json::from("virtual ns (1 instruction = 1 ns under -icount shift=0)"),
        ),
        (
            "xen",
            Json::object([
                ("package", Json::from(PACKAGE)),
                ("version", Json::from(package.entry.version.as_str())),
                ("filename", Json::from(package.entry.filename.as_str())),
                ("sha256", Json::from(package.entry.sha256.as_str())),
                (
                    "source",
                    Json::from("apt-get download (the archive apt is configured with)"),
                ),
                ("bootargs", Json::from(XEN_BOOTARGS)),
            ]),
        ),
        (
            "guest",
            Json::object([
                ("source", Json::from("guests/nullbench")),
                ("system", Json::from(results.system.display().to_string())),
                ("memory_kib", Json::from(results.domain.memory_kib)),
                ("vcpus", Json::from(u64::from(results.domain.vcpus))),
            ]),
        ),
        ("measurements", Json::Array(measurements)),
        (
            "runs",
            Json::Array(vec![
                Json::object([
                    ("hypervisor", Json::from("mica")),
                    ("qemu_command", Json::from(results.mica.command.as_str())),
                ]),
                Json::object([
                    ("hypervisor", Json::from("xen")),
                    ("qemu_command", Json::from(results.xen.command.as_str())),
                ]),
            ]),
        ),
        (
            "linux_boot",
            Json::object([
                ("kernel", Json::from(results.linux.kernel.as_str())),
                ("system", Json::from(LINUX_SYSTEM)),
                ("memory_kib", Json::from(results.linux.memory_kib)),
                ("vcpus", Json::from(u64::from(results.linux.vcpus))),
                ("until", Json::from(crate::build::linux::INIT_LINE)),
                ("mica_ns", Json::from(results.linux.mica.init_ns)),
                ("xen_ns", Json::from(results.linux.xen.init_ns)),
                (
                    "mica_over_xen",
                    Json::Number(
                        (results.linux.mica.init_ns as f64
                            / results.linux.xen.init_ns.max(1) as f64
                            * 1000.0)
                            .round()
                            / 1000.0,
                    ),
                ),
                (
                    "mica_qemu_command",
                    Json::from(results.linux.mica.command.as_str()),
                ),
                (
                    "xen_qemu_command",
                    Json::from(results.linux.xen.command.as_str()),
                ),
            ]),
        ),
    ])
    .pretty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qemu_like() -> Vec<u8> {
        let mut w = vm_fdt::FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        let uart = w.begin_node("pl011@9000000").unwrap();
        w.property_array_u64("reg", &[0x900_0000, 0x1000]).unwrap();
        w.end_node(uart).unwrap();
        let chosen = w.begin_node("chosen").unwrap();
        w.property_string("stdout-path", "/pl011@9000000").unwrap();
        w.end_node(chosen).unwrap();
        w.end_node(root).unwrap();
        w.finish().unwrap()
    }

    fn domain() -> PeerDomain {
        PeerDomain {
            memory_kib: 6144,
            vcpus: 1,
            guest_addr: GUEST_ADDR,
            guest_len: 0x3838,
        }
    }

    #[test]
    fn the_xen_tree_has_a_dom0less_domain() {
        let out = xen_dtb(&qemu_like(), &domain()).unwrap();
        let tree = fdt::Fdt::new(&out).unwrap();
        let chosen = tree.find_node("/chosen").unwrap();
        assert_eq!(
            chosen.property("stdout-path").unwrap().as_str(),
            Some("/pl011@9000000"),
            "QEMU's own properties are kept"
        );
        assert_eq!(
            chosen.property("xen,xen-bootargs").unwrap().as_str(),
            Some(XEN_BOOTARGS)
        );
        let domu = tree.find_node("/chosen/domU1").unwrap();
        assert_eq!(
            domu.property("compatible").unwrap().as_str(),
            Some("xen,domain")
        );
        assert_eq!(
            domu.property("memory").unwrap().value,
            [0, 0, 0, 0, 0, 0, 0x18, 0],
            "6144 KiB as a 64-bit value"
        );
        assert_eq!(domu.property("cpus").unwrap().as_usize(), Some(1));
        assert!(domu.property("vpl011").unwrap().value.is_empty());
        let module = tree.find_node("/chosen/domU1/module@46000000").unwrap();
        assert_eq!(
            module.property("compatible").unwrap().value,
            b"multiboot,kernel\0multiboot,module\0"
        );
        let reg: Vec<_> = module.reg().unwrap().collect();
        assert_eq!(reg.len(), 1);
        assert_eq!(reg[0].starting_address as u64, GUEST_ADDR);
        assert_eq!(reg[0].size, Some(0x3838));
        assert!(tree.find_node("/pl011@9000000").is_some());
    }

    #[test]
    fn the_chosen_node_must_exist_and_not_have_the_properties() {
        let mut w = vm_fdt::FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        w.end_node(root).unwrap();
        let bare = w.finish().unwrap();
        assert!(matches!(
            xen_dtb(&bare, &domain()),
            Err(DtbError::NoSuchNode(n)) if n == "chosen"
        ));
        let once = xen_dtb(&qemu_like(), &domain()).unwrap();
        assert!(
            matches!(
                xen_dtb(&once, &domain()),
                Err(DtbError::PropertyExists { node, property })
                    if node == "chosen" && property == "#address-cells"
            ),
            "added twice"
        );
    }

    fn measurement(name: &str, median: u64, min: u64, max: u64, n: u64) -> Measurement {
        Measurement {
            name: name.to_owned(),
            median_ns: median,
            min_ns: min,
            max_ns: max,
            iterations: n,
        }
    }

    fn results() -> PeerResults {
        PeerResults {
            system: PathBuf::from(DEFAULT_SYSTEM),
            domain: domain(),
            machine: "-M virt -smp 1 -m 256M -nographic".to_owned(),
            mica: PeerRun {
                command: "qemu-system-aarch64 <mica>".to_owned(),
                measurements: vec![
                    measurement("boot", 4_238_880, 4_238_880, 4_238_880, 1),
                    measurement("counter-read", 0, 0, 16, 1000),
                    measurement("null-hypercall", 7552, 7536, 17056, 1000),
                ],
            },
            xen: PeerRun {
                command: "qemu-system-aarch64 <xen>".to_owned(),
                measurements: vec![
                    measurement("boot", 8_011_904, 8_011_904, 8_011_904, 1),
                    measurement("counter-read", 0, 0, 16, 1000),
                    measurement("null-hypercall", 416, 416, 432, 1000),
                ],
            },
            package: XenPackage {
                entry: PackageEntry {
                    name: PACKAGE.to_owned(),
                    arch: ARCH.to_owned(),
                    version: "4.17.5+72-g01140da4e8-1".to_owned(),
                    filename: format!(
                        "pool/main/x/xen/{PACKAGE}_4.17.5+72-g01140da4e8-1_arm64.deb"
                    ),
                    sha256: "ae97d9bb37f765ae1a37628894ad5156d0957ca7e39e7df86221ecb46502a1a8"
                        .to_owned(),
                },
                xen: PathBuf::from("build/xen/pkg/boot/xen-4.17-arm64"),
                downloaded: false,
            },
            linux: LinuxComparison {
                memory_kib: 262144,
                vcpus: 1,
                kernel: "vmlinuz-6.1.0-57-arm64".to_owned(),
                mica: LinuxBoot {
                    command: "qemu-system-aarch64 <mica linux>".to_owned(),
                    init_ns: 900_000_000,
                },
                xen: LinuxBoot {
                    command: "qemu-system-aarch64 <xen linux>".to_owned(),
                    init_ns: 1_000_000_000,
                },
            },
        }
    }

    fn provenance() -> Provenance {
        Provenance {
            qemu_version: "QEMU emulator version 7.2.22".to_owned(),
            commit: "abc".to_owned(),
            dirty: false,
        }
    }

    #[test]
    fn the_table_compares_medians() {
        let table = table(&results(), &provenance());
        assert!(
            table.contains("| `linux-boot` | 900000000 ns | 1000000000 ns | 0.90 |"),
            "{table}"
        );
        for row in [
            "| `boot` | 4238880 ns | 4238880 – 4238880 ns | 8011904 ns | 8011904 – 8011904 ns | 1 | 0.53 |",
            "| `counter-read` | 0 ns | 0 – 16 ns | 0 ns | 0 – 16 ns | 1000 | — |",
            "| `null-hypercall` | 7552 ns | 7536 – 17056 ns | 416 ns | 416 – 432 ns | 1000 | 18.15 |",
        ] {
            assert!(table.contains(row), "{row} in\n{table}");
        }
        for fact in [
            "QEMU emulator version 7.2.22",
            "Xen 4.17.5+72-g01140da4e8-1",
            "`xen-hypervisor-4.17-arm64`",
            "SHA-256 `ae97d9bb",
            "6144 KiB",
            "at commit abc.",
        ] {
            assert!(table.contains(fact), "{fact} in\n{table}");
        }
    }

    #[test]
    fn the_json_has_both_runs_and_the_ratios() {
        let json = results_json(&results(), &provenance());
        for needle in [
            r#""version": "4.17.5+72-g01140da4e8-1""#,
            r#""mica_over_xen": 18.154"#,
            r#""mica_over_xen": null"#,
            r#""qemu_command": "qemu-system-aarch64 <xen>""#,
            r#""memory_kib": 6144"#,
            r#""median_ns": 416"#,
        ] {
            assert!(json.contains(needle), "{needle} in {json}");
        }
    }

    #[test]
    fn ratios() {
        assert_eq!(ratio(7552, 416), "18.15");
        assert_eq!(ratio(1, 3), "0.33");
        assert_eq!(ratio(5, 0), "—");
    }

    #[test]
    fn the_peer_system_in_the_repository_has_one_domain() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let path = root.join(DEFAULT_SYSTEM);
        let manifest = Manifest::load(&path).unwrap();
        let domain = peer_domain(&path, &manifest, 1).unwrap();
        assert_eq!(domain.vcpus, 1);
        assert!(domain.memory_kib > 4096, "Xen 4.17 needs more than 4 MiB");
        assert!(
            GUEST_ADDR + 0x10_0000 <= 0x4000_0000 + manifest.machine.memory_mib * 1024 * 1024,
            "the guest lies in RAM"
        );
    }

    #[test]
    fn stamped_lines_give_their_time() {
        let text = crate::build::linux::INIT_LINE;
        assert_eq!(
            stamped(
                &format!("[    1.234567] [linux] {text}"),
                "",
                "[linux] ",
                text
            ),
            Some(1_234_567_000)
        );
        assert_eq!(
            stamped(
                &format!("(XEN) [   12.000001] DOM1: {text}"),
                "(XEN) ",
                "DOM1: ",
                text
            ),
            Some(12_000_001_000)
        );
        assert_eq!(
            stamped(&format!("[linux] {text}"), "", "[linux] ", text),
            None
        );
        assert_eq!(
            stamped("[    1.2] [linux] other", "", "[linux] ", text),
            None
        );
        assert_eq!(
            stamped(&format!("[ x.y] [linux] {text}"), "", "[linux] ", text),
            None
        );
    }

    #[test]
    fn the_linux_domain_carries_kernel_initramfs_and_command_line() {
        let node = linux_chosen_addition(
            262144,
            1,
            (0x4a00_0000, 10),
            (0x4c00_0000, 20),
            "console=ttyAMA0",
        );
        let dom = &node.children[0];
        assert_eq!(dom.children.len(), 2);
        assert!(dom.children[0]
            .properties
            .iter()
            .any(|(n, _)| n == "bootargs"));
        assert!(dom.children[1].name.starts_with("module@4c000000"));
    }
}
