//! `mica bench`: boot the benchmark systems, collect their `bench:` lines, write the results.
//!
//! Each file `bench/NAME.toml` names a system manifest (`images/bench-*.toml`) and what to get
//! from it. A `kind = "icount"` bench boots under `-icount shift=0,sleep=off` ([`ICOUNT`]):
//! virtual time then follows executed instructions (1 ns each), so the guests' virtual-counter
//! figures repeat exactly from run to run. Its guests print
//! `bench: NAME: median M ns, min A ns, max B ns, N iterations` ([`parse_line`]); the run ends
//! when every measurement the file lists has been seen. A `kind = "idle"` bench boots without
//! `-icount`, waits for `ready_lines` lines `bench: idle` (every guest asleep in WFI), and
//! reads QEMU's user + system CPU time from `/proc/PID/stat` at the start and the end of
//! `idle_secs` wall-clock seconds.
//!
//! Booting goes through [`crate::qemu`] and [`crate::transcript`], like `mica run` and
//! `mica smoke`. The results go to `bench/results.json` ([`results_json`]) and to the marked
//! sections of `docs/PERFORMANCE.md` ([`replace_section`]), with the QEMU version, the QEMU
//! command lines and the git commit they came from.

use crate::builder::{self, BuildError, BuildOptions};
use crate::json::Json;
use crate::qemu::{self, MachineConfig, MachineOverrides, QemuError};
use crate::transcript::{Next, Running};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where bench files live by default.
pub const DEFAULT_DIR: &str = "bench";
/// Where the results go by default.
pub const DEFAULT_RESULTS: &str = "bench/results.json";
/// The document whose marked sections get the tables.
pub const DEFAULT_DOC: &str = "docs/PERFORMANCE.md";
/// The QEMU arguments that make virtual time follow executed instructions.
pub const ICOUNT: [&str; 2] = ["-icount", "shift=0,sleep=off"];
/// The section of [`DEFAULT_DOC`] with the instruction-count table.
pub const SECTION_ICOUNT: &str = "bench";
/// The section of [`DEFAULT_DOC`] with the idle host-CPU table.
pub const SECTION_IDLE: &str = "bench-idle";

/// What a bench measures.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Virtual-counter figures under `-icount`.
    #[default]
    Icount,
    /// Host CPU time of QEMU while every guest sleeps.
    Idle,
}

/// One `bench/NAME.toml` file.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BenchFile {
    /// One line saying what it measures.
    pub description: String,
    /// The system manifest to boot (relative to the directory `mica` runs in).
    pub system: PathBuf,
    /// What it measures.
    #[serde(default)]
    pub kind: Kind,
    /// For `icount`: the measurement names the run must print (it ends when all are in).
    #[serde(default)]
    pub measurements: Vec<String>,
    /// For `idle`: how many `bench: idle` lines mean every guest sleeps.
    #[serde(default)]
    pub ready_lines: usize,
    /// For `idle`: wall-clock seconds to measure.
    #[serde(default = "default_idle_secs")]
    pub idle_secs: u64,
    /// Wall-clock limit for the whole run (boot included).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// For `icount`: the Linux domain of the system to boot a second time directly on QEMU,
    /// with no hypervisor (its kernel, initramfs and command line; the system's drives; one
    /// CPU), collecting the same measurements, each reported with [`DIRECT_SUFFIX`].
    #[serde(default)]
    pub direct: Option<String>,
    /// For `icount`: let idle time pass at host speed ([`ICOUNT_SLEEP`]) instead of moving
    /// the clock to the next timer. For a bench that waits for a host device (a disk), where
    /// every wait would otherwise cost up to a timer period whatever the device took.
    #[serde(default)]
    pub sleep: bool,
}

/// [`ICOUNT`] with idle time passing at host speed ([`BenchFile::sleep`]).
pub const ICOUNT_SLEEP: [&str; 2] = ["-icount", "shift=0,sleep=on"];

impl BenchFile {
    /// The `-icount` arguments of its runs.
    fn icount(&self) -> [&'static str; 2] {
        if self.sleep {
            ICOUNT_SLEEP
        } else {
            ICOUNT
        }
    }
}

/// What a measurement of a [`BenchFile::direct`] boot has added to its name.
pub const DIRECT_SUFFIX: &str = "-direct";

fn default_idle_secs() -> u64 {
    10
}

fn default_timeout() -> u64 {
    300
}

impl BenchFile {
    /// Reads and checks a bench file.
    pub fn load(path: &Path) -> Result<BenchFile, BenchError> {
        let text = std::fs::read_to_string(path).map_err(|source| BenchError::Read {
            path: path.to_owned(),
            source,
        })?;
        let file: BenchFile = toml::from_str(&text).map_err(|e| BenchError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let problem = match file.kind {
            Kind::Icount if file.measurements.is_empty() => {
                Some("an icount bench must list its `measurements`")
            }
            Kind::Idle if file.ready_lines == 0 => {
                Some("an idle bench needs `ready_lines` (how many guests print `bench: idle`)")
            }
            Kind::Idle if file.idle_secs == 0 => Some("idle_secs must be at least 1"),
            Kind::Idle if file.direct.is_some() || file.sleep => {
                Some("`direct` and `sleep` are for icount benches")
            }
            _ => None,
        };
        match problem {
            Some(p) => Err(BenchError::Parse {
                path: path.to_owned(),
                message: p.to_owned(),
            }),
            None => Ok(file),
        }
    }
}

/// One measurement a guest printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Measurement {
    /// Its name (`null-hypercall`).
    pub name: String,
    /// Median over the iterations, in virtual nanoseconds.
    pub median_ns: u64,
    /// Smallest.
    pub min_ns: u64,
    /// Largest.
    pub max_ns: u64,
    /// How many iterations.
    pub iterations: u64,
}

/// What a serial line says, as far as benchmarks are concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BenchLine {
    /// A measurement.
    Measurement(Measurement),
    /// `bench: FAILED: ...`: the guest could not measure.
    Failed(String),
    /// `bench: idle`: the guest is going to sleep for good.
    Idle,
    /// Another `bench:` line (`bench: done (...)`) or a malformed one.
    Other(String),
}

/// Reads a serial line: `None` if it is not a `bench:` line. The kernel's `[domain] ` prefix
/// (or anything else before `bench: `) is skipped.
pub fn parse_line(line: &str) -> Option<BenchLine> {
    let at = line.find("bench: ")?;
    let rest = line[at + "bench: ".len()..].trim_end();
    if let Some(why) = rest.strip_prefix("FAILED") {
        return Some(BenchLine::Failed(
            why.trim_start_matches(':').trim().to_owned(),
        ));
    }
    if rest == "idle" {
        return Some(BenchLine::Idle);
    }
    Some(
        parse_measurement(rest)
            .map_or_else(|| BenchLine::Other(rest.to_owned()), BenchLine::Measurement),
    )
}

/// `NAME: median M ns, min A ns, max B ns, N iterations`.
fn parse_measurement(text: &str) -> Option<Measurement> {
    let (name, figures) = text.split_once(": ")?;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return None;
    }
    let parts: Vec<&str> = figures.split(", ").collect();
    let [median, min, max, iterations] = parts.as_slice() else {
        return None;
    };
    let field = |part: &str, key: &str, unit: &str| -> Option<u64> {
        let value = part.strip_prefix(key)?.strip_suffix(unit)?;
        value.parse().ok()
    };
    let m = Measurement {
        name: name.to_owned(),
        median_ns: field(median, "median ", " ns")?,
        min_ns: field(min, "min ", " ns")?,
        max_ns: field(max, "max ", " ns")?,
        iterations: field(iterations, "", " iterations")?,
    };
    (m.min_ns <= m.median_ns && m.median_ns <= m.max_ns && m.iterations > 0).then_some(m)
}

/// Why a bench could not give its figures.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The bench directory or a file cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A bench file is malformed.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The directory holds no bench file, or the one asked for is not there.
    #[error("no bench {0}")]
    NoBench(String),
    /// Its system does not build.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// QEMU could not be prepared or driven.
    #[error(transparent)]
    Qemu(#[from] QemuError),
    /// A guest said it could not measure.
    #[error("{bench}: the guest failed: {reason}")]
    GuestFailed {
        /// The bench.
        bench: String,
        /// What it printed after `bench: FAILED:`.
        reason: String,
    },
    /// The run ended (QEMU exited, or the time ran out) before every figure was in.
    #[error("{bench}: {how} before {missing} (last lines: {tail})")]
    Incomplete {
        /// The bench.
        bench: String,
        /// `QEMU exited with status 1`, `timed out after 300 s`.
        how: String,
        /// What was still missing.
        missing: String,
        /// The last console lines.
        tail: String,
    },
    /// A guest printed a measurement twice.
    #[error("{bench}: measurement {name} printed twice")]
    Duplicate {
        /// The bench.
        bench: String,
        /// The measurement.
        name: String,
    },
    /// QEMU's CPU time could not be read.
    #[error("cannot read QEMU's CPU time from {path}: {message}")]
    CpuTime {
        /// `/proc/PID/stat`.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A result file could not be written.
    #[error("{path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A document lacks its marked section.
    #[error("{0}")]
    Section(String),
}

/// Host CPU time QEMU used while every guest slept.
#[derive(Clone, Debug, PartialEq)]
pub struct IdleCpu {
    /// Wall-clock seconds measured.
    pub window_secs: f64,
    /// User + system CPU seconds QEMU used in that window.
    pub cpu_secs: f64,
    /// CPUs of the machine (`-smp`).
    pub cpus: u32,
}

/// What one bench gave.
#[derive(Clone, Debug, PartialEq)]
pub enum Figures {
    /// Virtual-counter measurements, in the order listed in the bench file.
    Icount(Vec<Measurement>),
    /// Idle host CPU time.
    Idle(IdleCpu),
}

/// One bench's result.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchResult {
    /// The bench's name (its file stem).
    pub name: String,
    /// Its description.
    pub description: String,
    /// The system manifest it booted.
    pub system: PathBuf,
    /// The QEMU command line, the temporary image shown as `<image built from SYSTEM>`.
    pub command: String,
    /// The figures.
    pub figures: Figures,
}

/// How `mica bench` is asked to run.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// The bench directory.
    pub dir: PathBuf,
    /// Run only this bench.
    pub only: Option<String>,
    /// The hypervisor image the systems are built with.
    pub hypervisor: PathBuf,
    /// Where the guests are.
    pub guests_dir: PathBuf,
}

/// The bench files in `dir` (name, path), sorted by name; only `only` if given.
pub fn list(dir: &Path, only: Option<&str>) -> Result<Vec<(String, PathBuf)>, BenchError> {
    let read = |source| BenchError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read)? {
        let path = entry.map_err(read)?.path();
        if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
            if let Some(stem) = path.file_stem() {
                let name = stem.to_string_lossy().into_owned();
                if only.is_none_or(|o| o == name) {
                    found.push((name, path));
                }
            }
        }
    }
    found.sort();
    if found.is_empty() {
        return Err(BenchError::NoBench(match only {
            Some(name) => format!("named `{name}` in {}", dir.display()),
            None => format!("files (*.toml) in {}", dir.display()),
        }));
    }
    Ok(found)
}

/// The last few lines of a transcript, joined.
fn tail(lines: &[String]) -> String {
    let from = lines.len().saturating_sub(5);
    lines[from..].join(" | ")
}

/// Boots one bench and collects its figures.
pub fn run_one(name: &str, path: &Path, options: &BenchOptions) -> Result<BenchResult, BenchError> {
    run_file(name, BenchFile::load(path)?, options)
}

/// Boots the system `file` names (built with `options`' hypervisor and guests) and collects
/// its figures; `options.dir` and `options.only` are not used.
pub fn run_file(
    name: &str,
    file: BenchFile,
    options: &BenchOptions,
) -> Result<BenchResult, BenchError> {
    let deadline = Instant::now() + Duration::from_secs(file.timeout_secs);
    let built = builder::build_to_temp(
        &file.system,
        &BuildOptions {
            hypervisor: options.hypervisor.clone(),
            guests_dir: options.guests_dir.clone(),
        },
    )?;
    let mut machine = MachineConfig::new(
        built.file.to_path_buf(),
        Some(&built.manifest.machine),
        &MachineOverrides::default(),
    );
    if file.kind == Kind::Icount {
        machine.extra_args = file.icount().iter().map(|a| (*a).to_owned()).collect();
    }
    // The machine's drives: new (empty) files of the bench's own, never a user's disks.
    let drives_dir = tempfile::TempDir::new().map_err(|source| BenchError::Write {
        path: std::env::temp_dir(),
        source,
    })?;
    let drives: Vec<crate::manifest::Drive> = built
        .manifest
        .drives
        .iter()
        .map(|d| crate::manifest::Drive {
            file: drives_dir.path().join(format!("{}.img", d.name)),
            ..d.clone()
        })
        .collect();
    crate::boot::drives::prepare(&drives).map_err(|e| BenchError::Parse {
        path: file.system.clone(),
        message: e.to_string(),
    })?;
    machine
        .extra_args
        .extend(crate::boot::drives::qemu_args(&drives));
    let launch = qemu::prepare(&machine, Some(deadline))?;
    let command = launch.command_line().replace(
        &qemu::shell_quote(built.file.as_os_str()),
        &format!("<image built from {}>", file.system.display()),
    );
    let mut running = Running::spawn(&launch)?;
    let figures = match file.kind {
        Kind::Icount => collect(name, &file, &mut running, deadline).map(Figures::Icount),
        Kind::Idle => idle(name, &file, &mut running, machine.smp, deadline).map(Figures::Idle),
    };
    running.stop()?;
    let mut figures = figures?;
    let mut command = hide_drives_dir(command, &drives);
    if let (Some(domain), Figures::Icount(got)) = (&file.direct, &mut figures) {
        let (line, measured) = direct(name, &file, domain, &built.manifest, &drives, deadline)?;
        command = format!("{command}; with no hypervisor: {line}");
        got.extend(measured);
    }
    Ok(BenchResult {
        name: name.to_owned(),
        description: file.description,
        system: file.system,
        command,
        figures,
    })
}

/// Boots Linux domain `domain` of `manifest` directly on QEMU under `-icount` (no
/// hypervisor: its kernel, the initramfs it gets under Mica, its command line, the same
/// `drives` on the same transports, one CPU, the machine's memory) and collects `file`'s
/// measurements, renamed with [`DIRECT_SUFFIX`]; returns the QEMU command line too. The
/// guest sees the whole drive where under Mica it sees its extent: the same bytes only for an
/// extent at offset 0 (the script reads no further than the extent).
fn direct(
    bench: &str,
    file: &BenchFile,
    domain: &str,
    manifest: &crate::manifest::Manifest,
    drives: &[crate::manifest::Drive],
    deadline: Instant,
) -> Result<(String, Vec<Measurement>), BenchError> {
    let problem = |message: String| BenchError::Parse {
        path: file.system.clone(),
        message,
    };
    let found = manifest.domains.iter().find(|d| d.name == domain);
    let Some((d, crate::manifest::DomainElf::Linux(linux))) = found.map(|d| (d, &d.elf)) else {
        return Err(problem(format!(
            "`direct` names `{domain}`, which is no Linux domain of the system"
        )));
    };
    let inputs = builder::linux_files(manifest, d, linux, true)?;
    let mut initramfs = tempfile::NamedTempFile::new().map_err(|source| BenchError::Write {
        path: std::env::temp_dir(),
        source,
    })?;
    let bytes = inputs.initramfs_bytes()?;
    std::io::Write::write_all(&mut initramfs, &bytes).map_err(|source| BenchError::Write {
        path: initramfs.path().to_owned(),
        source,
    })?;
    let mut args: Vec<std::ffi::OsString> = [
        "-M",
        "virt,gic-version=3",
        "-cpu",
        qemu::CPU,
        "-smp",
        "1",
        "-m",
    ]
    .into_iter()
    .map(Into::into)
    .collect();
    args.push(format!("{}M", manifest.machine.memory_mib).into());
    args.push("-nographic".into());
    args.push("-kernel".into());
    args.push(inputs.kernel.clone().into());
    args.push("-initrd".into());
    args.push(initramfs.path().into());
    args.push("-append".into());
    args.push(linux.cmdline.clone().into());
    args.extend(file.icount().iter().map(Into::into));
    args.extend(
        crate::boot::drives::qemu_args(drives)
            .into_iter()
            .map(Into::into),
    );
    let launch = qemu::Launch::new(qemu::find_qemu()?, args);
    let line = launch.command_line().replace(
        &qemu::shell_quote(initramfs.path().as_os_str()),
        "<the domain's initramfs>",
    );
    let line = hide_drives_dir(line, drives);
    let mut running = Running::spawn(&launch)?;
    let got = collect(bench, file, &mut running, deadline);
    running.stop()?;
    let measured = got?
        .into_iter()
        .map(|m| Measurement {
            name: format!("{}{DIRECT_SUFFIX}", m.name),
            ..m
        })
        .collect();
    Ok((line, measured))
}

/// Reads the console until every measurement `file` lists is in; they are returned in the
/// file's order.
pub fn collect(
    bench: &str,
    file: &BenchFile,
    running: &mut Running,
    deadline: Instant,
) -> Result<Vec<Measurement>, BenchError> {
    let mut got: BTreeMap<String, Measurement> = BTreeMap::new();
    let mut lines = Vec::new();
    let missing = |got: &BTreeMap<String, Measurement>| -> Vec<String> {
        file.measurements
            .iter()
            .filter(|m| !got.contains_key(*m))
            .cloned()
            .collect()
    };
    loop {
        let how = match running.next(deadline)? {
            Next::Serial(line) => {
                match parse_line(&line) {
                    Some(BenchLine::Measurement(m)) => {
                        if got.contains_key(&m.name) {
                            return Err(BenchError::Duplicate {
                                bench: bench.to_owned(),
                                name: m.name,
                            });
                        }
                        got.insert(m.name.clone(), m);
                    }
                    Some(BenchLine::Failed(reason)) => {
                        return Err(BenchError::GuestFailed {
                            bench: bench.to_owned(),
                            reason,
                        })
                    }
                    _ => {}
                }
                lines.push(line);
                if missing(&got).is_empty() {
                    break;
                }
                continue;
            }
            Next::Stderr(line) => {
                lines.push(format!("[qemu stderr] {line}"));
                continue;
            }
            Next::Exited(status) => format!("QEMU exited with {}", qemu::describe_status(status)),
            Next::TimedOut => format!("timed out after {} s", file.timeout_secs),
        };
        return Err(BenchError::Incomplete {
            bench: bench.to_owned(),
            how,
            missing: missing(&got).join(", "),
            tail: tail(&lines),
        });
    }
    Ok(file
        .measurements
        .iter()
        .filter_map(|m| got.remove(m))
        .collect())
}

/// Waits until every guest sleeps, then measures QEMU's CPU time over the window.
fn idle(
    bench: &str,
    file: &BenchFile,
    running: &mut Running,
    cpus: u32,
    deadline: Instant,
) -> Result<IdleCpu, BenchError> {
    let mut ready = 0;
    let mut lines = Vec::new();
    while ready < file.ready_lines {
        let how = match running.next(deadline)? {
            Next::Serial(line) => {
                match parse_line(&line) {
                    Some(BenchLine::Idle) => ready += 1,
                    Some(BenchLine::Failed(reason)) => {
                        return Err(BenchError::GuestFailed {
                            bench: bench.to_owned(),
                            reason,
                        })
                    }
                    _ => {}
                }
                lines.push(line);
                continue;
            }
            Next::Stderr(line) => {
                lines.push(format!("[qemu stderr] {line}"));
                continue;
            }
            Next::Exited(status) => format!("QEMU exited with {}", qemu::describe_status(status)),
            Next::TimedOut => format!("timed out after {} s", file.timeout_secs),
        };
        return Err(BenchError::Incomplete {
            bench: bench.to_owned(),
            how,
            missing: format!(
                "{} of {} `bench: idle` lines",
                file.ready_lines - ready,
                file.ready_lines
            ),
            tail: tail(&lines),
        });
    }
    let stat = PathBuf::from(format!("/proc/{}/stat", running.pid()));
    let hz = clock_ticks_per_second();
    let start_ticks = read_cpu_ticks(&stat)?;
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(file.idle_secs));
    let end_ticks = read_cpu_ticks(&stat)?;
    let window = start.elapsed().as_secs_f64();
    Ok(IdleCpu {
        window_secs: window,
        cpu_secs: end_ticks.saturating_sub(start_ticks) as f64 / hz as f64,
        cpus,
    })
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line, in clock ticks.
pub fn parse_proc_stat(text: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may itself hold spaces or ')'.
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state): field N is fields[N - 3].
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

fn read_cpu_ticks(path: &Path) -> Result<u64, BenchError> {
    let text = std::fs::read_to_string(path).map_err(|e| BenchError::CpuTime {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    parse_proc_stat(&text).ok_or_else(|| BenchError::CpuTime {
        path: path.to_owned(),
        message: format!("unexpected format: {}", text.trim()),
    })
}

/// `getconf CLK_TCK` (the unit of `/proc/PID/stat` times); 100 if it cannot be asked.
fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|hz| *hz > 0)
        .unwrap_or(100)
}

/// Where the figures came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provenance {
    /// `qemu-system-aarch64 --version`, first line.
    pub qemu_version: String,
    /// `git rev-parse HEAD`.
    pub commit: String,
    /// Whether the work tree had changes (`git status --porcelain` not empty).
    pub dirty: bool,
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Provenance {
    /// Asks QEMU and git.
    pub fn gather() -> Provenance {
        let qemu_version = command_output(qemu::QEMU, &["--version"])
            .and_then(|v| v.lines().next().map(str::to_owned))
            .unwrap_or_else(|| "unknown".to_owned());
        let commit = command_output("git", &["rev-parse", "HEAD"])
            .map(|c| c.trim().to_owned())
            .unwrap_or_else(|| "unknown".to_owned());
        let dirty =
            command_output("git", &["status", "--porcelain"]).is_some_and(|s| !s.trim().is_empty());
        Provenance {
            qemu_version,
            commit,
            dirty,
        }
    }

    /// `abc123` or `abc123 (with uncommitted changes)`.
    pub fn commit_text(&self) -> String {
        if self.dirty {
            format!(
                "{} (with uncommitted changes in the work tree)",
                self.commit
            )
        } else {
            self.commit.clone()
        }
    }
}

/// `bench/results.json`: every figure with its provenance.
pub fn results_json(results: &[BenchResult], provenance: &Provenance) -> String {
    let mut measurements = Vec::new();
    let mut idle = Vec::new();
    let mut runs = Vec::new();
    for r in results {
        runs.push(Json::object([
            ("bench", Json::from(r.name.as_str())),
            ("description", Json::from(r.description.as_str())),
            ("system", Json::from(r.system.display().to_string())),
            ("qemu_command", Json::from(r.command.as_str())),
        ]));
        match &r.figures {
            Figures::Icount(ms) => {
                for m in ms {
                    measurements.push(Json::object([
                        ("name", Json::from(m.name.as_str())),
                        ("bench", Json::from(r.name.as_str())),
                        ("median_ns", Json::from(m.median_ns)),
                        ("min_ns", Json::from(m.min_ns)),
                        ("max_ns", Json::from(m.max_ns)),
                        ("iterations", Json::from(m.iterations)),
                    ]));
                }
            }
            Figures::Idle(i) => idle.push(Json::object([
                ("bench", Json::from(r.name.as_str())),
                ("cpus", Json::from(u64::from(i.cpus))),
                ("window_s", Json::Number(round3(i.window_secs))),
                ("qemu_cpu_s", Json::Number(round3(i.cpu_secs))),
            ])),
        }
    }
    Json::object([
        ("qemu_version", Json::from(provenance.qemu_version.as_str())),
        (
            "icount_flags",
            Json::Array(ICOUNT.iter().map(|f| Json::from(*f)).collect()),
        ),
        ("commit", Json::from(provenance.commit.as_str())),
        ("work_tree_dirty", Json::Bool(provenance.dirty)),
        (
            "unit",
            Json::from("virtual ns (1 instruction = 1 ns under -icount shift=0)"),
        ),
        ("measurements", Json::Array(measurements)),
        ("idle_host_cpu", Json::Array(idle)),
        ("runs", Json::Array(runs)),
    ])
    .pretty()
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The Markdown table of the instruction-count figures.
pub fn icount_table(results: &[BenchResult], provenance: &Provenance) -> String {
    let mut out = String::new();
    let sleeping: Vec<String> = results
        .iter()
        .filter(|r| r.command.contains(ICOUNT_SLEEP[1]))
        .map(|r| format!("`{}`", r.name))
        .collect();
    let sleep_note = if sleeping.is_empty() {
        String::new()
    } else {
        let (benches, wait) = if sleeping.len() == 1 {
            ("bench", "waits")
        } else {
            ("benches", "wait")
        };
        format!(
            " (`{}` for the {benches} {}, which {wait} for a host device)",
            ICOUNT_SLEEP.join(" "),
            sleeping.join(", ")
        )
    };
    out.push_str(&format!(
        "Measured by `make bench` with {} under `{}`{sleep_note}, at commit {}.\n\n",
        provenance.qemu_version,
        ICOUNT.join(" "),
        provenance.commit_text()
    ));
    out.push_str("| measurement | system | median | min | max | iterations |\n");
    out.push_str("| --- | --- | ---: | ---: | ---: | ---: |\n");
    for r in results {
        if let Figures::Icount(ms) = &r.figures {
            for m in ms {
                out.push_str(&format!(
                    "| `{}` | `{}` | {} ns | {} ns | {} ns | {} |\n",
                    m.name,
                    r.system.display(),
                    m.median_ns,
                    m.min_ns,
                    m.max_ns,
                    m.iterations
                ));
            }
        }
    }
    out
}

/// The Markdown table of the idle host CPU time.
pub fn idle_table(results: &[BenchResult], provenance: &Provenance) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "Measured by `make bench` with {} (no `-icount`), at commit {}; wall-clock time on \
         the machine that ran it, so it varies from run to run and machine to machine.\n\n",
        provenance.qemu_version,
        provenance.commit_text()
    ));
    out.push_str("| system | CPUs | window | QEMU host CPU time | per second |\n");
    out.push_str("| --- | ---: | ---: | ---: | ---: |\n");
    for r in results {
        if let Figures::Idle(i) = &r.figures {
            out.push_str(&format!(
                "| `{}` | {} | {:.1} s | {:.2} s | {:.1} % of one host CPU |\n",
                r.system.display(),
                i.cpus,
                i.window_secs,
                i.cpu_secs,
                100.0 * i.cpu_secs / i.window_secs.max(f64::MIN_POSITIVE)
            ));
        }
    }
    out
}

/// The markers around a generated section.
pub fn markers(section: &str) -> (String, String) {
    (
        format!("<!-- {section}: generated by mica, do not edit by hand -->"),
        format!("<!-- end of {section} -->"),
    )
}

/// `doc` with the text between `section`'s markers replaced by `content` (the markers and
/// everything outside them kept). An error if the markers are missing or out of order.
pub fn replace_section(doc: &str, section: &str, content: &str) -> Result<String, BenchError> {
    let (begin, end) = markers(section);
    let start = doc
        .find(&begin)
        .ok_or_else(|| BenchError::Section(format!("no line `{begin}`")))?
        + begin.len();
    let stop = doc[start..]
        .find(&end)
        .ok_or_else(|| BenchError::Section(format!("no line `{end}` after `{begin}`")))?
        + start;
    let body = content.trim_end_matches('\n');
    Ok(format!("{}\n{body}\n{}", &doc[..start], &doc[stop..]))
}

/// Replaces the sections named in `sections` of the document at `path`.
pub fn update_doc(path: &Path, sections: &[(&str, String)]) -> Result<(), BenchError> {
    let mut doc = std::fs::read_to_string(path).map_err(|source| BenchError::Read {
        path: path.to_owned(),
        source,
    })?;
    for (section, content) in sections {
        doc = replace_section(&doc, section, content)
            .map_err(|e| BenchError::Section(format!("{}: {e}", path.display())))?;
    }
    std::fs::write(path, doc).map_err(|source| BenchError::Write {
        path: path.to_owned(),
        source,
    })
}

/// `line` with the temporary directory of the bench's new drive files shown as
/// `<new drives>` (it differs from run to run).
fn hide_drives_dir(line: String, drives: &[crate::manifest::Drive]) -> String {
    match drives.first().and_then(|d| d.file.parent()) {
        Some(dir) if !dir.as_os_str().is_empty() => {
            line.replace(&dir.display().to_string(), "<new drives>")
        }
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measurement_lines_parse_with_or_without_the_domain_prefix() {
        let m = Measurement {
            name: "null-hypercall".to_owned(),
            median_ns: 812,
            min_ns: 800,
            max_ns: 1404,
            iterations: 1000,
        };
        for line in [
            "bench: null-hypercall: median 812 ns, min 800 ns, max 1404 ns, 1000 iterations",
            "[bench] bench: null-hypercall: median 812 ns, min 800 ns, max 1404 ns, 1000 iterations\r",
        ] {
            assert_eq!(parse_line(line), Some(BenchLine::Measurement(m.clone())));
        }
    }

    #[test]
    fn other_lines() {
        assert_eq!(parse_line("mica: domain bench (id 1) destroyed"), None);
        assert_eq!(parse_line("[a] bench: idle"), Some(BenchLine::Idle));
        assert_eq!(
            parse_line("[a] bench: FAILED: whoami: ()"),
            Some(BenchLine::Failed("whoami: ()".to_owned()))
        );
        assert_eq!(
            parse_line("[a] bench: done (alone)"),
            Some(BenchLine::Other("done (alone)".to_owned()))
        );
    }

    #[test]
    fn malformed_measurements_are_not_figures() {
        for bad in [
            "bench: x: median 1 ns, min 2 ns, max 3 ns, 10 iterations", // min > median
            "bench: x: median 1 ns, min 1 ns, max 1 ns, 0 iterations",
            "bench: x: median 1 ns, min 1 ns, max 1 ns",
            "bench: x: median 1ns, min 1 ns, max 1 ns, 1 iterations",
            "bench: X Y: median 1 ns, min 1 ns, max 1 ns, 1 iterations",
            "bench: x: median -1 ns, min 1 ns, max 1 ns, 1 iterations",
        ] {
            assert!(
                matches!(parse_line(bad), Some(BenchLine::Other(_))),
                "{bad}: {:?}",
                parse_line(bad)
            );
        }
    }

    #[test]
    fn proc_stat_times() {
        let line = "4242 (qemu-system-aar) S 1 4242 4242 0 -1 4194560 5000 0 0 0 \
                    1234 567 0 0 20 0 5 0 100 0 0";
        assert_eq!(parse_proc_stat(line), Some(1234 + 567));
        let odd = "7 (a) b) c) R 1 7 7 0 -1 0 0 0 0 0 10 20 0 0";
        assert_eq!(parse_proc_stat(odd), Some(30));
        assert_eq!(parse_proc_stat("7 (x) R 1"), None);
    }

    #[test]
    fn sections_are_replaced_between_their_markers_only() {
        let (b, e) = markers("bench");
        let doc = format!("# Title\nhand text\n{b}\nold\ntable\n{e}\nmore hand text\n");
        let new = replace_section(&doc, "bench", "| a |\n").unwrap();
        assert_eq!(
            new,
            format!("# Title\nhand text\n{b}\n| a |\n{e}\nmore hand text\n")
        );
        assert_eq!(replace_section(&new, "bench", "| a |").unwrap(), new);
        assert!(replace_section(&doc, "tcb", "x").is_err());
        let reversed = format!("{e}\n{b}\n");
        assert!(replace_section(&reversed, "bench", "x").is_err());
    }

    #[test]
    fn results_carry_figures_and_provenance() {
        let results = vec![
            BenchResult {
                name: "alone".to_owned(),
                description: "d".to_owned(),
                system: PathBuf::from("images/bench-alone.toml"),
                command: "qemu-system-aarch64 -icount shift=0,sleep=off".to_owned(),
                figures: Figures::Icount(vec![Measurement {
                    name: "boot".to_owned(),
                    median_ns: 5,
                    min_ns: 5,
                    max_ns: 5,
                    iterations: 1,
                }]),
            },
            BenchResult {
                name: "idle".to_owned(),
                description: "i".to_owned(),
                system: PathBuf::from("images/bench-idle.toml"),
                command: "q".to_owned(),
                figures: Figures::Idle(IdleCpu {
                    window_secs: 10.0004,
                    cpu_secs: 0.25,
                    cpus: 2,
                }),
            },
        ];
        let p = Provenance {
            qemu_version: "QEMU emulator version 7.2".to_owned(),
            commit: "abc".to_owned(),
            dirty: false,
        };
        let json = results_json(&results, &p);
        for needle in [
            r#""median_ns": 5"#,
            r#""qemu_cpu_s": 0.25"#,
            r#""window_s": 10"#,
            r#""commit": "abc""#,
            r#""icount_flags": ["#,
            r#""qemu_command": "qemu-system-aarch64 -icount shift=0,sleep=off""#,
        ] {
            assert!(json.contains(needle), "{needle} in {json}");
        }
        let table = icount_table(&results, &p);
        assert!(table.contains("| `boot` | `images/bench-alone.toml` | 5 ns | 5 ns | 5 ns | 1 |"));
        assert!(!table.contains("idle"));
        let idle = idle_table(&results, &p);
        assert!(
            idle.contains(
                "| `images/bench-idle.toml` | 2 | 10.0 s | 0.25 s | 2.5 % of one host CPU |"
            ),
            "{idle}"
        );
    }

    #[test]
    fn bench_files_in_the_repository_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench");
        let files = list(&dir, None).unwrap();
        assert!(!files.is_empty());
        for (_, path) in files {
            let file = BenchFile::load(&path).unwrap();
            let system = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(&file.system);
            assert!(system.is_file(), "{}: {}", path.display(), system.display());
        }
    }

    #[test]
    fn bench_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.toml");
        std::fs::write(&path, "description = \"d\"\nsystem = \"s.toml\"\n").unwrap();
        assert!(BenchFile::load(&path)
            .unwrap_err()
            .to_string()
            .contains("measurements"));
        std::fs::write(
            &path,
            "description = \"d\"\nsystem = \"s.toml\"\nkind = \"idle\"\n",
        )
        .unwrap();
        assert!(BenchFile::load(&path)
            .unwrap_err()
            .to_string()
            .contains("ready_lines"));
        std::fs::write(
            &path,
            "description = \"d\"\nsystem = \"s.toml\"\nbogus = 1\n",
        )
        .unwrap();
        assert!(BenchFile::load(&path)
            .unwrap_err()
            .to_string()
            .contains("bogus"));
        std::fs::write(
            &path,
            "description = \"d\"\nsystem = \"s.toml\"\nkind = \"idle\"\nready_lines = 1\nsleep = true\n",
        )
        .unwrap();
        assert!(BenchFile::load(&path)
            .unwrap_err()
            .to_string()
            .contains("icount benches"));
        std::fs::write(
            &path,
            "description = \"d\"\nsystem = \"s.toml\"\nmeasurements = [\"m\"]\nsleep = true\n",
        )
        .unwrap();
        let file = BenchFile::load(&path).unwrap();
        assert_eq!(file.icount(), ICOUNT_SLEEP);
        assert!(file.direct.is_none());
        assert!(matches!(
            list(dir.path(), Some("y")),
            Err(BenchError::NoBench(_))
        ));
    }
}
