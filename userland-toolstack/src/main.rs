//! `mica`: the host command line for Mica systems.
//!
//! Only argument parsing and exit statuses live here; the work is done by the library
//! modules (`mica::image`, `mica::builder`, `mica::qemu`, `mica::smoke`) so that it can be
//! unit-tested.
//! The exit statuses are part of the interface (`docs/toolstack.md`): scripts and the
//! Makefile rely on them.
#![forbid(unsafe_code)]

use clap::{Args, Parser, Subcommand};
use mica::builder::{self, BuildOptions};
use mica::dtb::DtbEdits;
use mica::manifest::{Manifest, DEFAULT_GUESTS_DIR};
use mica::qemu::{self, MachineConfig, MachineOverrides};
use mica::serial;
use mica::smoke::{self, SmokeOptions};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Exit status when `--timeout` stopped QEMU (as `timeout(1)`).
const EXIT_TIMEOUT: u8 = 124;
/// `mica run` stopped QEMU because it was sent SIGTERM or SIGHUP (128 + SIGTERM).
const EXIT_SIGNALLED: u8 = 143;
/// Exit status for a failed command or a failed smoke scenario.
const EXIT_FAILURE: u8 = 1;
/// `mica run`: the hypervisor printed `mica: fatal: ...` (a boot it refused, a kernel panic)
/// and powered off, which QEMU reports as a clean exit.
const EXIT_FATAL: u8 = 3;
/// Exit status when `mica smoke` could not run any scenario.
const EXIT_NOTHING_RAN: u8 = 2;

/// The Mica host toolstack.
#[derive(Debug, Parser)]
#[command(name = "mica", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a system manifest without building or booting it: schema, names, references,
    /// CPUs, memory, channels, shared regions, devices, and every domain's ELF file.
    /// Exit status: 0 valid, 1 not (every error found on stderr, one per line).
    Check(CheckArgs),
    /// Turn the hypervisor's bare-metal ELF into a flat arm64 Image (Linux boot protocol).
    Image(ImageArgs),
    /// Build one bootable image from a system manifest: the hypervisor and every domain.
    Build(BuildArgs),
    /// Boot an image, or a system manifest (built first), under qemu-system-aarch64 with the
    /// console on this terminal. Exit status: QEMU's (0 after the hypervisor powered off
    /// cleanly), 3 if the hypervisor reported a fatal error, 124 --timeout, 143 SIGTERM or
    /// SIGHUP, 1 nothing booted (the error says why).
    Run(RunArgs),
    /// Boot every smoke scenario and check its serial transcript.
    Smoke(SmokeArgs),
    /// Boot the benchmark systems (bench/*.toml), collect their figures, write
    /// bench/results.json and the tables of docs/PERFORMANCE.md.
    Bench(BenchArgs),
    /// Boot the same bare-metal guest under Mica and under Xen 4.17 (Debian's package,
    /// downloaded into build/xen) on the same QEMU machine under -icount; write
    /// bench/xen-results.json and the comparison table of docs/PERFORMANCE.md.
    BenchXen(BenchXenArgs),
    /// Fetch a Linux guest's files: Debian's current arm64 kernel and busybox-static through
    /// apt (checked against apt's verified index, cached under build/linux), and an
    /// initramfs with the virtio and ext4 modules and a shell on the console. Prints where
    /// they are.
    FetchLinux(FetchLinuxArgs),
    /// Count the source lines that run privileged on each architecture and those that run in
    /// domains; write the table into docs/PERFORMANCE.md.
    Tcb(TcbArgs),
    /// Control a running system through its `ctl` domain (list, create, pause, unpause,
    /// destroy, reboot, console, stats). Exit status: 0 done, 1 refused by the system, 2 bad
    /// usage or no connection.
    Ctl(CtlArgs),
}

#[derive(Debug, Args)]
#[command(override_usage = mica::ctl::SYNOPSIS)]
struct CtlArgs {
    /// The control socket (`mica run` prints where it is; relative to this directory).
    #[arg(long, value_name = "PATH", default_value = mica::ctl::DEFAULT_SOCKET, global = true)]
    socket: PathBuf,
    /// Answer in JSON (for scripts) instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Debug, Subcommand)]
enum CtlCommand {
    /// Every domain, the control domain included: id, name, state, vCPUs, memory, CPU time,
    /// role.
    List,
    /// Create a domain from an image record of the system image.
    Create {
        /// The new domain's name.
        name: String,
        /// The domain record of the system image whose image to run.
        #[arg(long, value_name = "IMG")]
        image: String,
        /// RAM in KiB: a multiple of 4, at least 8 [default: the record's].
        #[arg(long, value_name = "N", value_parser = parse_memory_kib)]
        memory_kib: Option<u32>,
        /// vCPUs [default: the record's].
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=8))]
        vcpus: Option<u32>,
        /// x0 at entry [default: the record's arg].
        #[arg(long, value_name = "N")]
        arg: Option<u64>,
    },
    /// Stop scheduling a domain.
    Pause {
        /// The domain.
        name: String,
    },
    /// Resume a paused domain.
    Unpause {
        /// The domain.
        name: String,
    },
    /// Destroy a domain (its memory returns to where it came from).
    Destroy {
        /// The domain.
        name: String,
        /// Even the scheduling policy domain (refused without it).
        #[arg(long)]
        force: bool,
    },
    /// Restart a domain from its image.
    Reboot {
        /// The domain.
        name: String,
        /// Even the scheduling policy domain (refused without it).
        #[arg(long)]
        force: bool,
    },
    /// A domain's console output (the last 4 KiB the kernel keeps; for a domain that has
    /// ended, from the serial log `mica run` keeps beside the socket).
    Console {
        /// The domain.
        name: String,
        /// Keep printing new output until interrupted.
        #[arg(long, conflicts_with = "attach")]
        follow: bool,
        /// Type into its console too (a Linux guest's): interactive on a terminal, Ctrl-]
        /// leaves; from a pipe, the input is sent and output printed until it goes quiet.
        #[arg(long)]
        attach: bool,
    },
    /// The ctl domain's statistics: domains, free pool memory, requests (and how many were
    /// refused), malformed frames.
    Stats,
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// The directory of bench files (*.toml).
    #[arg(long, default_value = mica::bench::DEFAULT_DIR)]
    dir: PathBuf,
    /// Run only this bench (a file stem in the directory); nothing is written.
    #[arg(long, value_name = "NAME")]
    bench: Option<String>,
    /// The hypervisor image the systems are built with.
    #[arg(long, value_name = "IMAGE", default_value = smoke::DEFAULT_HYPERVISOR)]
    hypervisor: PathBuf,
    /// Where the guest binaries are.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_GUESTS_DIR)]
    guests_dir: PathBuf,
    /// Where to write the machine-readable results.
    #[arg(long, value_name = "FILE", default_value = mica::bench::DEFAULT_RESULTS)]
    results: PathBuf,
    /// The document whose marked sections get the tables.
    #[arg(long, value_name = "FILE", default_value = mica::bench::DEFAULT_DOC)]
    doc: PathBuf,
    /// Print the figures only; write nothing.
    #[arg(long)]
    no_write: bool,
}

#[derive(Debug, Args)]
struct BenchXenArgs {
    /// The Mica system that runs the guest (one domain); its machine is Xen's too.
    #[arg(long, value_name = "MANIFEST", default_value = mica::bench_xen::DEFAULT_SYSTEM)]
    system: PathBuf,
    /// The Mica hypervisor image.
    #[arg(long, value_name = "IMAGE", default_value = smoke::DEFAULT_HYPERVISOR)]
    hypervisor: PathBuf,
    /// Where the Mica build of the guest is.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_GUESTS_DIR)]
    guests_dir: PathBuf,
    /// The Xen build of the guest (ELF; `--features xen`).
    #[arg(long, value_name = "ELF", default_value = mica::bench_xen::DEFAULT_XEN_GUEST)]
    xen_guest: PathBuf,
    /// Where Xen is downloaded and cached, and the Xen run's files are written.
    #[arg(long, value_name = "DIR", default_value = mica::bench_xen::DEFAULT_CACHE)]
    cache: PathBuf,
    /// Where to write the machine-readable results.
    #[arg(long, value_name = "FILE", default_value = mica::bench_xen::DEFAULT_RESULTS)]
    results: PathBuf,
    /// The document whose marked section gets the table.
    #[arg(long, value_name = "FILE", default_value = mica::bench::DEFAULT_DOC)]
    doc: PathBuf,
    /// Print the figures only; write nothing.
    #[arg(long)]
    no_write: bool,
}

#[derive(Debug, Args)]
struct FetchLinuxArgs {
    /// Where the packages are downloaded and the initramfs is built.
    #[arg(long, value_name = "DIR", default_value = mica::build::linux::DEFAULT_CACHE)]
    cache: PathBuf,
}

#[derive(Debug, Args)]
struct TcbArgs {
    /// The repository's root directory.
    #[arg(long, default_value = ".")]
    root: PathBuf,
    /// The document whose marked section gets the table.
    #[arg(long, value_name = "FILE", default_value = mica::bench::DEFAULT_DOC)]
    doc: PathBuf,
    /// Print the table only; write nothing.
    #[arg(long)]
    no_write: bool,
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// The system manifest (images/NAME.toml).
    manifest: PathBuf,
    /// Where `binary = "NAME"` domains are looked for.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_GUESTS_DIR)]
    guests_dir: PathBuf,
    /// Check the manifest only, not the domains' ELF files (for a tree where nothing is
    /// built yet).
    #[arg(long)]
    no_binaries: bool,
}

#[derive(Debug, Args)]
struct ImageArgs {
    /// The aarch64 ELF, linked with the Mica boot header at its lowest address.
    elf: PathBuf,
    /// Where to write the Image.
    #[arg(short, long, value_name = "IMAGE")]
    output: PathBuf,
}

/// Where `mica build` (and `mica run` of a manifest) finds its inputs.
#[derive(Debug, Args)]
struct BuildInputs {
    /// The hypervisor's arm64 Image (as `mica image` writes it).
    #[arg(long, value_name = "IMAGE", default_value = builder::DEFAULT_HYPERVISOR)]
    hypervisor: PathBuf,
    /// Where `binary = "NAME"` domains are looked for.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_GUESTS_DIR)]
    guests_dir: PathBuf,
}

impl BuildInputs {
    fn options(&self) -> BuildOptions {
        BuildOptions {
            hypervisor: self.hypervisor.clone(),
            guests_dir: self.guests_dir.clone(),
        }
    }
}

#[derive(Debug, Args)]
struct BuildArgs {
    /// The system manifest (images/NAME.toml).
    manifest: PathBuf,
    /// Where to write the bootable image.
    #[arg(short, long, value_name = "OUT")]
    output: PathBuf,
    #[command(flatten)]
    inputs: BuildInputs,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The arm64 Image to boot (QEMU -kernel), or a system manifest (*.toml) to build first.
    image: PathBuf,
    /// For a manifest with a control domain: the Unix socket its virtio console is
    /// connected to (what `mica ctl --socket` talks to).
    #[arg(long, value_name = "PATH", default_value = mica::ctl::DEFAULT_SOCKET)]
    ctl_socket: PathBuf,
    /// Number of CPUs (QEMU -smp) [default: the manifest's [machine] cpus, else 2].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    smp: Option<u32>,
    /// RAM size, as QEMU spells it (QEMU -m) [default: the manifest's memory_mib, else 512M].
    #[arg(long)]
    memory: Option<String>,
    /// Boot arguments (QEMU -append; they appear in /chosen/bootargs) [default: the
    /// manifest's boot_args, else none].
    #[arg(long, value_name = "ARGS")]
    append: Option<String>,
    /// Start from this DTB instead of QEMU's own (QEMU -dtb for the dump; `mica` then loads
    /// the result itself, as for the DTB edits).
    #[arg(long, value_name = "FILE")]
    dtb: Option<PathBuf>,
    /// Stop QEMU after this many seconds and exit with status 124.
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
    /// Boot with a DTB without every node whose name before `@` is NAME (repeatable).
    #[arg(long = "remove-dtb-node", value_name = "NAME")]
    remove_dtb_nodes: Vec<String>,
    /// Boot with a DTB whose RAM is all reserved (/reserved-memory no-map + /memreserve/).
    #[arg(long)]
    break_dtb_memory: bool,
    /// One more QEMU argument, passed verbatim after the others (repeatable).
    #[arg(long = "qemu-arg", value_name = "ARG", allow_hyphen_values = true)]
    qemu_args: Vec<String>,
    /// Print the QEMU command line(s) instead of running them.
    #[arg(long)]
    dry_run: bool,
    /// Stop QEMU and exit 0 when the kernel reports that every domain has ended (otherwise
    /// the machine stays up until you quit QEMU with Ctrl-A X).
    #[arg(long)]
    exit_when_idle: bool,
    /// For a manifest: what to build it from.
    #[command(flatten)]
    inputs: BuildInputs,
}

#[derive(Debug, Args)]
struct SmokeArgs {
    /// The directory of scenario files (*.toml).
    #[arg(long, default_value = smoke::DEFAULT_DIR)]
    dir: PathBuf,
    /// Run only this scenario (a file stem in the directory).
    #[arg(long, value_name = "NAME")]
    scenario: Option<String>,
    /// The image scenarios boot unless they name their own; `system` scenarios are built
    /// with it.
    #[arg(long, value_name = "IMAGE", default_value = smoke::DEFAULT_HYPERVISOR)]
    hypervisor: PathBuf,
    /// Where the guest binaries of `system` scenarios are.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_GUESTS_DIR)]
    guests_dir: PathBuf,
    /// How many scenarios to run at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    jobs: u32,
    /// For each scenario that passed and has a `[doc]` table, rewrite the document sections
    /// that show its run (`make readme`).
    #[arg(long)]
    update_docs: bool,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Check(args) => check(args),
        Command::Image(args) => image(args),
        Command::Build(args) => build(args),
        Command::Run(args) => run(args),
        Command::Smoke(args) => smoke(args),
        Command::Bench(args) => bench(args),
        Command::BenchXen(args) => bench_xen(args),
        Command::FetchLinux(args) => fetch_linux(args),
        Command::Tcb(args) => tcb(args),
        Command::Ctl(args) => ctl(args),
    }
}

fn ctl(args: CtlArgs) -> ExitCode {
    use mica::ctl::Command as C;
    let command = match args.command {
        CtlCommand::List => C::List,
        CtlCommand::Stats => C::Stats,
        CtlCommand::Create {
            name,
            image,
            memory_kib,
            vcpus,
            arg,
        } => C::Create {
            name,
            image,
            memory_kib,
            vcpus,
            arg,
        },
        CtlCommand::Pause { name } => C::Pause(name),
        CtlCommand::Unpause { name } => C::Unpause(name),
        CtlCommand::Destroy { name, force } => C::Destroy { name, force },
        CtlCommand::Reboot { name, force } => C::Reboot { name, force },
        CtlCommand::Console {
            name,
            follow,
            attach,
        } => C::Console {
            name,
            follow,
            attach,
        },
    };
    ExitCode::from(mica::ctl::execute(
        &args.socket,
        &command,
        args.json,
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    ))
}

/// `--memory-kib`: what the control domain can give (`mica::ctl::check_memory_kib`).
fn parse_memory_kib(text: &str) -> Result<u32, String> {
    let kib: u32 = text.parse().map_err(|e| format!("{e}"))?;
    mica::ctl::check_memory_kib(kib)
        .map_err(|e| e.to_string().trim_start_matches("--memory-kib ").to_owned())
}

fn fail(err: &dyn std::error::Error) -> ExitCode {
    eprintln!("mica: error: {err}");
    ExitCode::from(EXIT_FAILURE)
}

/// `N things`, with the `s` only when N is not 1.
fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

fn check(args: CheckArgs) -> ExitCode {
    let errors: Vec<Box<dyn std::error::Error>> = match Manifest::load(&args.manifest) {
        Err(err) => vec![Box::new(err)],
        Ok(manifest) if args.no_binaries => {
            report_ok(
                &manifest,
                &args.manifest,
                " (ELF files not checked: --no-binaries)",
            );
            return ExitCode::SUCCESS;
        }
        Ok(manifest) => {
            let errors = builder::check_domain_elves(&manifest, &args.guests_dir);
            if errors.is_empty() {
                report_ok(&manifest, &args.manifest, "");
                return ExitCode::SUCCESS;
            }
            errors
                .into_iter()
                .map(|e| Box::new(e) as Box<dyn std::error::Error>)
                .collect()
        }
    };
    for err in &errors {
        eprintln!("{err}");
    }
    if let Some(hint) = not_a_manifest_hint(&args.manifest) {
        eprintln!("mica: {hint}");
    }
    eprintln!(
        "mica: {}: {}",
        args.manifest.display(),
        count(errors.len(), "error")
    );
    ExitCode::from(EXIT_FAILURE)
}

fn report_ok(manifest: &Manifest, path: &Path, note: &str) {
    println!(
        "mica: {}: ok ({}, {}, {}){note}",
        path.display(),
        count(manifest.domains.len(), "domain"),
        count(manifest.channels.len(), "channel"),
        count(manifest.shares.len(), "shared region"),
    );
}

fn image(args: ImageArgs) -> ExitCode {
    match mica::image::convert_file(&args.elf, &args.output) {
        Ok(header) => {
            println!(
                "mica: wrote {} (text_offset {:#x}, image_size {:#x})",
                args.output.display(),
                header.text_offset,
                header.image_size
            );
            ExitCode::SUCCESS
        }
        Err(err) => fail(&err),
    }
}

fn build(args: BuildArgs) -> ExitCode {
    match builder::build_file(&args.manifest, &args.inputs.options(), &args.output) {
        Ok(summary) => {
            println!(
                "mica: wrote {} (system {}: {} domain{}; system image {:#x} bytes at offset {:#x}; {:#x} bytes in all)",
                args.output.display(),
                summary.system,
                summary.domains,
                if summary.domains == 1 { "" } else { "s" },
                summary.system_size,
                summary.system_offset,
                summary.file_size,
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            let code = fail(&err);
            if let Some(hint) = not_a_manifest_hint(&args.manifest) {
                eprintln!("mica: {hint}");
            }
            code
        }
    }
}

/// Whether `mica run` was given a system manifest rather than an image.
fn is_manifest(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "toml")
}

/// Removes the control socket (and nothing else) when `mica run` ends, so that a socket
/// left behind never makes `mica ctl` wait on a system that is gone.
struct RemoveSocket(Option<PathBuf>);

impl Drop for RemoveSocket {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// For a file given as a manifest that is not one: what it is, and what to give instead.
fn not_a_manifest_hint(path: &Path) -> Option<String> {
    if let Ok(bench) = mica::bench::BenchFile::load(path) {
        return Some(format!(
            "{} is a `mica bench` file (`make bench` boots it), not a system manifest; the system it boots is {}",
            path.display(),
            bench.system.display()
        ));
    }
    let table: toml::Table = std::fs::read_to_string(path).ok()?.parse().ok()?;
    if table.contains_key("expect") && table.contains_key("description") {
        return Some(format!(
            "{} is a smoke scenario (`mica smoke --scenario {}`), not a system manifest{}",
            path.display(),
            path.file_stem()?.to_string_lossy(),
            match table.get("system").and_then(|s| s.as_str()) {
                Some(system) => format!("; the system it boots is {system}"),
                None => String::new(),
            }
        ));
    }
    None
}

/// The machine's RAM in MiB from a `-m` value, if it can be read.
fn memory_mib(spec: &str) -> Option<u64> {
    mica::bootloader::parse_memory_size(spec).map(|bytes| bytes >> 20)
}

fn run(args: RunArgs) -> ExitCode {
    // A manifest is built into a temporary image that lives until QEMU is done.
    let built = if is_manifest(&args.image) {
        match builder::build_to_temp(&args.image, &args.inputs.options()) {
            Ok(built) => Some(built),
            Err(err) => {
                let code = fail(&err);
                if let Some(hint) = not_a_manifest_hint(&args.image) {
                    eprintln!("mica: {hint}");
                }
                return code;
            }
        }
    } else {
        None
    };
    let image = built
        .as_ref()
        .map_or_else(|| args.image.clone(), |b| b.file.to_path_buf());
    // A machine other than the manifest's must still have what the manifest asks for.
    if let Some(manifest) = built.as_ref().map(|b| &b.manifest) {
        let problems = mica::manifest::machine_problems(
            manifest,
            args.smp.unwrap_or(manifest.machine.cpus),
            &format!("--smp {}", args.smp.unwrap_or(0)),
            args.memory.as_deref().and_then(memory_mib),
            &format!("--memory {}", args.memory.as_deref().unwrap_or("")),
        );
        if !problems.is_empty() {
            for problem in &problems {
                eprintln!("mica: error: {problem}");
            }
            return ExitCode::from(EXIT_FAILURE);
        }
    }
    // A control domain gets its console device, on a socket `mica ctl` connects to.
    let has_control = built
        .as_ref()
        .is_some_and(|b| b.manifest.domains.iter().any(|d| d.control));
    let ctl_args = if has_control {
        if !args.dry_run {
            if let Some(dir) = args
                .ctl_socket
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
            {
                let _ = std::fs::create_dir_all(dir);
            }
            // A socket left by an earlier run would make QEMU fail to listen.
            let _ = std::fs::remove_file(&args.ctl_socket);
            eprintln!(
                "mica: control socket {} (try `target/release/mica ctl --socket {} list` in another terminal)",
                args.ctl_socket.display(),
                args.ctl_socket.display()
            );
        }
        mica::ctl::qemu_args(&args.ctl_socket)
    } else {
        if built.is_some() && !args.dry_run {
            eprintln!(
                "mica: this system has no control domain (`control = true`): `mica ctl` cannot reach it{}",
                if args.exit_when_idle {
                    "; mica stops QEMU when every domain has ended (--exit-when-idle)"
                } else {
                    "; the machine stays up after its domains end, until you quit QEMU (Ctrl-A X) or pass --exit-when-idle"
                }
            );
        }
        Vec::new()
    };
    // The machine's drives, on the transports the builder gave their servers.
    let drives = built.as_ref().map_or(&[][..], |b| &b.manifest.drives[..]);
    let mut ctl_args = ctl_args;
    if !drives.is_empty() {
        if !args.dry_run {
            match mica::boot::drives::prepare(drives) {
                Ok(lines) => lines.iter().for_each(|l| eprintln!("mica: {l}")),
                Err(e) => {
                    eprintln!("mica: error: {e}");
                    return ExitCode::from(EXIT_FAILURE);
                }
            }
        }
        ctl_args.extend(mica::boot::drives::qemu_args(drives));
    }
    let overrides = MachineOverrides {
        smp: args.smp,
        memory: args.memory,
        append: args.append,
    };
    let config = MachineConfig {
        dtb: args.dtb,
        dtb_edits: DtbEdits {
            remove_nodes: args.remove_dtb_nodes,
            reserve_all_memory: args.break_dtb_memory,
        },
        extra_args: ctl_args.into_iter().chain(args.qemu_args).collect(),
        ..MachineConfig::new(
            image,
            built.as_ref().map(|b| &b.manifest.machine),
            &overrides,
        )
    };
    if args.dry_run {
        return match qemu::dry_run_lines(&config) {
            Ok(lines) => {
                if let Some(built) = &built {
                    println!(
                        "# mica build {} -o {} (a temporary file, removed when mica exits; `mica build` keeps one)",
                        args.image.display(),
                        built.file.display()
                    );
                }
                for line in lines {
                    println!("{line}");
                }
                ExitCode::SUCCESS
            }
            Err(err) => fail(&err),
        };
    }
    let launch = match qemu::prepare(&config, None) {
        Ok(launch) => launch,
        Err(err) => return fail(&err),
    };
    let _socket = RemoveSocket(has_control.then(|| args.ctl_socket.clone()));
    // The serial log `mica ctl console` reads for domains that have ended.
    let log = if has_control {
        let path = mica::ctl::console_log_path(&args.ctl_socket);
        match std::fs::File::create(&path) {
            Ok(file) => Some(file),
            Err(err) => {
                eprintln!(
                    "mica: cannot write the serial log {}: {err}",
                    path.display()
                );
                None
            }
        }
    } else {
        None
    };
    // SIGTERM or SIGHUP to `mica run` (e.g. `kill` of it or of the `make run` above it, or
    // the terminal closing) stops QEMU first (watched from before QEMU starts): it would otherwise outlive us, holding the
    // terminal in raw mode and the ctl socket.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP] {
        if let Err(err) = signal_hook::flag::register(signal, Arc::clone(&stop)) {
            eprintln!("mica: cannot watch for signal {signal}: {err}");
        }
    }
    // The console goes through us (serial.rs): stdout piped, stdin and stderr QEMU's own.
    let mut child = match launch
        .command()
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
    {
        Ok(child) => child,
        Err(source) => {
            return fail(&qemu::QemuError::Spawn {
                program: launch.program.clone(),
                source,
            })
        }
    };
    let (events_tx, events) = std::sync::mpsc::channel();
    let reader = child.stdout.take().map(|pipe| {
        std::thread::spawn(move || {
            let mut log = log;
            let mut stdout = std::io::stdout();
            serial::pass_through(
                pipe,
                &mut stdout,
                log.as_mut().map(|f| f as &mut dyn std::io::Write),
                &mut |line| {
                    if let Some(event) = serial::classify(line) {
                        let _ = events_tx.send(event);
                    }
                },
            );
        })
    });
    // Joins the console thread (QEMU has exited or been stopped, so its pipe ends).
    let finish = |reader: Option<std::thread::JoinHandle<()>>| {
        if let Some(reader) = reader {
            let _ = reader.join();
        }
    };
    let deadline = args
        .timeout
        .map(|secs| std::time::Instant::now() + Duration::from_secs(secs));
    let mut fatal = None;
    let mut said_idle = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) => {}
            Err(source) => break Err(qemu::QemuError::Wait(source)),
        }
        while let Ok(event) = events.try_recv() {
            match event {
                serial::Event::Fatal(what) => fatal = Some(what),
                serial::Event::AllEnded if args.exit_when_idle => {
                    if let Err(err) = qemu::stop(&mut child) {
                        return fail(&err);
                    }
                    finish(reader);
                    eprintln!("\nmica: every domain has ended: QEMU stopped (--exit-when-idle)");
                    return ExitCode::SUCCESS;
                }
                serial::Event::AllEnded if !said_idle => {
                    said_idle = true;
                    eprintln!(
                        "mica: every domain has ended; the machine stays up until you quit QEMU (Ctrl-A X) (`mica run --exit-when-idle` stops it here)"
                    );
                }
                serial::Event::AllEnded => {}
            }
        }
        if stop.load(Ordering::Relaxed) {
            if let Err(err) = qemu::stop(&mut child) {
                return fail(&err);
            }
            finish(reader);
            eprintln!("\nmica: signalled: QEMU stopped");
            return ExitCode::from(EXIT_SIGNALLED);
        }
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            if let Err(err) = qemu::stop(&mut child) {
                return fail(&err);
            }
            finish(reader);
            let secs = args.timeout.unwrap_or(0);
            eprintln!("\nmica: timed out after {secs} s: QEMU stopped (--timeout)");
            return ExitCode::from(EXIT_TIMEOUT);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    finish(reader);
    while let Ok(event) = events.try_recv() {
        if let serial::Event::Fatal(what) = event {
            fatal = Some(what);
        }
    }
    match status {
        Ok(status) => {
            if let Some(what) = fatal {
                eprintln!(
                    "mica: the hypervisor stopped with a fatal error ({what}): exit status {EXIT_FATAL}"
                );
                return ExitCode::from(EXIT_FATAL);
            }
            use std::os::unix::process::ExitStatusExt;
            let code = status
                .code()
                .or_else(|| status.signal().map(|s| 128 + s))
                .unwrap_or(i32::from(EXIT_FAILURE));
            ExitCode::from(u8::try_from(code).unwrap_or(EXIT_FAILURE))
        }
        Err(err) => fail(&err),
    }
}

fn smoke(args: SmokeArgs) -> ExitCode {
    let options = SmokeOptions {
        dir: args.dir,
        scenario: args.scenario,
        hypervisor: args.hypervisor,
        guests_dir: args.guests_dir,
        jobs: args.jobs as usize,
    };
    match smoke::run(&options, &mut std::io::stdout()) {
        Ok(outcomes) if args.update_docs => {
            let mut code = ExitCode::SUCCESS;
            for outcome in &outcomes {
                if outcome.result.is_err() {
                    code = ExitCode::from(EXIT_FAILURE);
                    continue;
                }
                let path = options.dir.join(format!("{}.toml", outcome.name));
                let Ok(scenario) = mica::scenario::Scenario::load(&path, &options.hypervisor)
                else {
                    continue;
                };
                let Some(doc) = &scenario.doc else {
                    continue;
                };
                let sections = mica::doc_transcript::sections(
                    doc,
                    &scenario.expect,
                    &scenario.steps,
                    &outcome.transcript,
                );
                let named: Vec<(&str, String)> = sections
                    .iter()
                    .map(|(n, t)| (n.as_str(), t.clone()))
                    .collect();
                match mica::bench::update_doc(&doc.file, &named) {
                    Ok(()) => println!(
                        "smoke: wrote {} of {} from {}",
                        sections
                            .iter()
                            .map(|(n, _)| n.as_str())
                            .collect::<Vec<_>>()
                            .join(" and "),
                        doc.file.display(),
                        outcome.name
                    ),
                    Err(err) => {
                        eprintln!("mica: error: {err}");
                        code = ExitCode::from(EXIT_FAILURE);
                    }
                }
            }
            code
        }
        Ok(outcomes) if outcomes.iter().all(|o| o.result.is_ok()) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(EXIT_FAILURE),
        Err(err) => {
            eprintln!("mica: error: {err}");
            println!("{}", smoke::summary(&[]));
            ExitCode::from(EXIT_NOTHING_RAN)
        }
    }
}

fn bench(args: BenchArgs) -> ExitCode {
    use mica::bench::{self, BenchOptions, Figures};
    let options = BenchOptions {
        dir: args.dir,
        only: args.bench,
        hypervisor: args.hypervisor,
        guests_dir: args.guests_dir,
    };
    let files = match bench::list(&options.dir, options.only.as_deref()) {
        Ok(files) => files,
        Err(err) => return fail(&err),
    };
    let mut results = Vec::new();
    for (name, path) in &files {
        println!("bench: {name} ...");
        match bench::run_one(name, path, &options) {
            Ok(result) => {
                match &result.figures {
                    Figures::Icount(ms) => {
                        for m in ms {
                            println!(
                                "bench: {name}: {}: median {} ns, min {} ns, max {} ns, {} iterations",
                                m.name, m.median_ns, m.min_ns, m.max_ns, m.iterations
                            );
                        }
                    }
                    Figures::Idle(i) => println!(
                        "bench: {name}: QEMU used {:.2} s of host CPU in {:.1} s with every guest idle",
                        i.cpu_secs, i.window_secs
                    ),
                }
                results.push(result);
            }
            Err(err) => return fail(&err),
        }
    }
    if args.no_write || options.only.is_some() {
        return ExitCode::SUCCESS;
    }
    let provenance = bench::Provenance::gather();
    if let Err(source) = std::fs::write(&args.results, bench::results_json(&results, &provenance)) {
        return fail(&bench::BenchError::Write {
            path: args.results,
            source,
        });
    }
    let sections = [
        (
            bench::SECTION_ICOUNT,
            bench::icount_table(&results, &provenance),
        ),
        (
            bench::SECTION_IDLE,
            bench::idle_table(&results, &provenance),
        ),
    ];
    if let Err(err) = bench::update_doc(&args.doc, &sections) {
        return fail(&err);
    }
    println!(
        "bench: wrote {} and the tables of {}",
        args.results.display(),
        args.doc.display()
    );
    ExitCode::SUCCESS
}

fn bench_xen(args: BenchXenArgs) -> ExitCode {
    use mica::bench_xen::{self, PeerOptions};
    let options = PeerOptions {
        system: args.system,
        hypervisor: args.hypervisor,
        guests_dir: args.guests_dir,
        xen_guest: args.xen_guest,
        cache: args.cache,
    };
    let results = match bench_xen::run(&options, &mut |line| println!("bench-xen: {line}")) {
        Ok(results) => results,
        Err(err) => return fail(&err),
    };
    for (who, run) in [("mica", &results.mica), ("xen", &results.xen)] {
        for m in &run.measurements {
            println!(
                "bench-xen: {who}: {}: median {} ns, min {} ns, max {} ns, {} iterations",
                m.name, m.median_ns, m.min_ns, m.max_ns, m.iterations
            );
        }
    }
    let provenance = mica::bench::Provenance::gather();
    let table = bench_xen::table(&results, &provenance);
    if args.no_write {
        print!("{table}");
        return ExitCode::SUCCESS;
    }
    if let Err(source) = std::fs::write(
        &args.results,
        bench_xen::results_json(&results, &provenance),
    ) {
        return fail(&mica::bench::BenchError::Write {
            path: args.results,
            source,
        });
    }
    if let Err(err) = mica::bench::update_doc(&args.doc, &[(bench_xen::SECTION, table)]) {
        return fail(&err);
    }
    println!(
        "bench-xen: wrote {} and the table of {}",
        args.results.display(),
        args.doc.display()
    );
    ExitCode::SUCCESS
}

fn fetch_linux(args: FetchLinuxArgs) -> ExitCode {
    let mut say = |line: &str| eprintln!("fetch-linux: {line}");
    match mica::build::linux::fetch(&args.cache, &mut say) {
        Ok(files) => {
            println!(
                "kernel:    {} ({})",
                files.kernel.display(),
                files.kernel_package
            );
            println!(
                "           arm64 Image, text_offset {:#x}, image_size {} MiB",
                files.header.text_offset,
                files.header.image_size >> 20
            );
            println!(
                "initramfs: {} ({}; modules: {})",
                files.initramfs.display(),
                if files.built { "built now" } else { "cached" },
                files.modules.join(" ")
            );
            println!(
                "disk tools: {} (appended to the initramfs of a guest with disks)",
                files.disk_tools.display()
            );
            ExitCode::SUCCESS
        }
        Err(err) => fail(&err),
    }
}

fn tcb(args: TcbArgs) -> ExitCode {
    let rows = match mica::tcb::measure(&args.root) {
        Ok(rows) => rows,
        Err(err) => return fail(&err),
    };
    let table = mica::tcb::table(&rows);
    print!("{table}");
    if args.no_write {
        return ExitCode::SUCCESS;
    }
    match mica::bench::update_doc(&args.doc, &[(mica::tcb::SECTION, table)]) {
        Ok(()) => {
            println!("tcb: wrote the table of {}", args.doc.display());
            ExitCode::SUCCESS
        }
        Err(err) => fail(&err),
    }
}
