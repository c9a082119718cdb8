//! `mica`: the host command line for Mica systems.
//!
//! Only argument parsing and exit statuses live here; the work is done by the library
//! modules (`mica::image`, `mica::qemu`, `mica::smoke`) so that it can be unit-tested.
//! The exit statuses are part of the interface (`docs/toolstack.md`): scripts and the
//! Makefile rely on them.
#![forbid(unsafe_code)]

use clap::{Args, Parser, Subcommand};
use mica::dtb::DtbEdits;
use mica::qemu::{self, MachineConfig};
use mica::smoke::{self, SmokeOptions};
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

/// Exit status when `--timeout` stopped QEMU (as `timeout(1)`).
const EXIT_TIMEOUT: u8 = 124;
/// Exit status for a failed command or a failed smoke scenario.
const EXIT_FAILURE: u8 = 1;
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
    /// Turn the hypervisor's bare-metal ELF into a flat arm64 Image (Linux boot protocol).
    Image(ImageArgs),
    /// Boot an image under qemu-system-aarch64 with the console on this terminal.
    Run(RunArgs),
    /// Boot every smoke scenario and check its serial transcript.
    Smoke(SmokeArgs),
}

#[derive(Debug, Args)]
struct ImageArgs {
    /// The aarch64 ELF, linked with the Mica boot header at its lowest address.
    elf: PathBuf,
    /// Where to write the Image.
    #[arg(short, long, value_name = "IMAGE")]
    output: PathBuf,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The arm64 Image to boot (QEMU -kernel).
    image: PathBuf,
    /// Number of CPUs (QEMU -smp).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    smp: u32,
    /// RAM size, as QEMU spells it (QEMU -m).
    #[arg(long, default_value = "512M")]
    memory: String,
    /// Boot arguments (QEMU -append; they appear in /chosen/bootargs).
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
}

#[derive(Debug, Args)]
struct SmokeArgs {
    /// The directory of scenario files (*.toml).
    #[arg(long, default_value = smoke::DEFAULT_DIR)]
    dir: PathBuf,
    /// Run only this scenario (a file stem in the directory).
    #[arg(long, value_name = "NAME")]
    scenario: Option<String>,
    /// The image scenarios boot unless they name their own.
    #[arg(long, value_name = "IMAGE", default_value = smoke::DEFAULT_HYPERVISOR)]
    hypervisor: PathBuf,
    /// How many scenarios to run at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    jobs: u32,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Image(args) => image(args),
        Command::Run(args) => run(args),
        Command::Smoke(args) => smoke(args),
    }
}

fn fail(err: &dyn std::error::Error) -> ExitCode {
    eprintln!("mica: error: {err}");
    ExitCode::from(EXIT_FAILURE)
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

fn run(args: RunArgs) -> ExitCode {
    let config = MachineConfig {
        image: args.image,
        smp: args.smp,
        memory: args.memory,
        append: args.append,
        dtb: args.dtb,
        dtb_edits: DtbEdits {
            remove_nodes: args.remove_dtb_nodes,
            reserve_all_memory: args.break_dtb_memory,
        },
        extra_args: args.qemu_args,
    };
    if args.dry_run {
        return match qemu::dry_run_lines(&config) {
            Ok(lines) => {
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
    let mut child = match launch
        .command()
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
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
    let status = match args.timeout {
        None => child.wait().map_err(qemu::QemuError::Wait),
        Some(secs) => match qemu::wait_timeout(&mut child, Duration::from_secs(secs)) {
            Ok(Some(status)) => Ok(status),
            Ok(None) => {
                if let Err(err) = qemu::stop(&mut child) {
                    return fail(&err);
                }
                eprintln!("\nmica: timed out after {secs} s: QEMU stopped (--timeout)");
                return ExitCode::from(EXIT_TIMEOUT);
            }
            Err(err) => Err(err),
        },
    };
    match status {
        Ok(status) => {
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
        jobs: args.jobs as usize,
    };
    match smoke::run(&options, &mut std::io::stdout()) {
        Ok(outcomes) if outcomes.iter().all(|o| o.result.is_ok()) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(EXIT_FAILURE),
        Err(err) => {
            eprintln!("mica: error: {err}");
            println!("{}", smoke::summary(&[]));
            ExitCode::from(EXIT_NOTHING_RAN)
        }
    }
}
