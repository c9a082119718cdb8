//! `mica smoke`: boot every scenario under QEMU and judge its serial transcript.
//!
//! Each scenario boots through the same [`crate::qemu`] code as `mica run`, and its console
//! is read with a deadline by [`crate::transcript`] (a guest that prints nothing still times
//! out). The meaning of the transcript is decided by [`crate::judge`]; this module only moves
//! lines and reports.

use crate::builder::{self, BuildError, BuildOptions};
use crate::judge::{Failure, Judge, QemuEnd, Step};
use crate::qemu::{self, QemuError};
use crate::scenario::{Boot, Scenario, ScenarioError};
use crate::transcript::{Next, Running};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where scenarios live by default.
pub const DEFAULT_DIR: &str = "tests/smoke";
/// The hypervisor image scenarios boot by default.
pub const DEFAULT_HYPERVISOR: &str = "build/aarch64/mica.img";
/// Prefix of QEMU's own stderr lines in a transcript.
pub const STDERR_PREFIX: &str = "[qemu stderr] ";

/// Why the harness could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum SmokeError {
    /// The scenario directory cannot be listed.
    #[error("cannot read scenario directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The directory holds no scenario.
    #[error("no scenarios (*.toml) in {0}")]
    NoScenarios(PathBuf),
    /// `--scenario` names none of them.
    #[error("no scenario named `{name}` in {dir}; available: {available}")]
    UnknownScenario {
        /// The name asked for.
        name: String,
        /// The directory.
        dir: PathBuf,
        /// The names there, comma-separated.
        available: String,
    },
}

/// Why one scenario failed.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioFailure {
    /// The scenario file is unusable.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// The scenario's system could not be built.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// QEMU could not be prepared or driven.
    #[error(transparent)]
    Qemu(#[from] QemuError),
    /// The transcript did not meet the expectations.
    #[error(transparent)]
    Judged(#[from] Failure),
    /// A `mica ctl` step failed.
    #[error(transparent)]
    Step(#[from] crate::steps::StepFailure),
    /// The scenario's `[qemu]` machine lacks what its system's manifest asks for.
    #[error("{0}")]
    Machine(String),
    /// The control socket's directory could not be made.
    #[error("cannot make a directory for the control socket: {0}")]
    Socket(std::io::Error),
    /// A drive's file could not be made or used.
    #[error("{0}")]
    Drive(String),
}

/// How the harness is asked to run.
#[derive(Clone, Debug)]
pub struct SmokeOptions {
    /// The scenario directory.
    pub dir: PathBuf,
    /// Run only this scenario.
    pub scenario: Option<String>,
    /// The image scenarios boot unless they name another; scenarios with a `system` are
    /// built with it.
    pub hypervisor: PathBuf,
    /// Where the guest binaries a `system` names are.
    pub guests_dir: PathBuf,
    /// How many scenarios run at once.
    pub jobs: usize,
}

/// The result of one scenario.
#[derive(Debug)]
pub struct Outcome {
    /// The scenario's name.
    pub name: String,
    /// How long it took.
    pub elapsed: Duration,
    /// Pass, or why not.
    pub result: Result<(), ScenarioFailure>,
    /// Everything QEMU printed (stderr lines prefixed with [`STDERR_PREFIX`]).
    pub transcript: Vec<String>,
}

impl Outcome {
    /// The one-line report: `smoke: <name> ... ok (<secs> s)` or `... FAILED: <reason>`.
    pub fn line(&self) -> String {
        match &self.result {
            Ok(()) => format!(
                "smoke: {} ... ok ({:.1} s)",
                self.name,
                self.elapsed.as_secs_f64()
            ),
            Err(reason) => format!("smoke: {} ... FAILED: {reason}", self.name),
        }
    }
}

/// The scenario files in `dir` (name, path), sorted by name.
pub fn list_scenarios(dir: &Path) -> Result<Vec<(String, PathBuf)>, SmokeError> {
    let entries = std::fs::read_dir(dir).map_err(|source| SmokeError::Dir {
        path: dir.to_owned(),
        source,
    })?;
    let mut found = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|source| SmokeError::Dir {
                path: dir.to_owned(),
                source,
            })?
            .path();
        if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
            if let Some(stem) = path.file_stem() {
                found.push((stem.to_string_lossy().into_owned(), path));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Picks the scenarios to run: all of them, or the one named.
pub fn select(
    dir: &Path,
    all: Vec<(String, PathBuf)>,
    only: Option<&str>,
) -> Result<Vec<(String, PathBuf)>, SmokeError> {
    if all.is_empty() {
        return Err(SmokeError::NoScenarios(dir.to_owned()));
    }
    let Some(name) = only else {
        return Ok(all);
    };
    if all.iter().any(|(n, _)| n == name) {
        return Ok(all.into_iter().filter(|(n, _)| n == name).collect());
    }
    Err(SmokeError::UnknownScenario {
        name: name.to_owned(),
        dir: dir.to_owned(),
        available: all
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Boots one loaded scenario and judges it, filling `transcript`. A scenario with a
/// `system` first builds it into a temporary image (removed when this returns).
fn boot_and_judge(
    scenario: &Scenario,
    guests_dir: &Path,
    transcript: &mut Vec<String>,
) -> Result<(), ScenarioFailure> {
    let limit = Duration::from_secs(scenario.timeout_secs);
    let (mut machine, built) = match &scenario.boot {
        Boot::Image(image) => (scenario.machine(image.clone(), None), None),
        Boot::System {
            manifest,
            hypervisor,
        } => {
            let options = BuildOptions {
                hypervisor: hypervisor.clone(),
                guests_dir: guests_dir.to_owned(),
            };
            let built = builder::build_to_temp(manifest, &options)?;
            let machine = scenario.machine(built.file.to_path_buf(), Some(&built.manifest.machine));
            // `[qemu]` may give another machine than the manifest's: it must still fit.
            let problems = crate::manifest::machine_problems(
                &built.manifest,
                machine.smp,
                &format!("[qemu] smp = {}", machine.smp),
                crate::bootloader::parse_memory_size(&machine.memory).map(|b| b >> 20),
                &format!("[qemu] memory = \"{}\"", machine.memory),
            );
            if let Some(problem) = problems.into_iter().next() {
                return Err(ScenarioFailure::Machine(problem));
            }
            (machine, Some(built))
        }
    };
    // The timeout counts from here: building the system (and fetching a Linux guest's
    // files, which waits while another scenario fetches them) is not the boot's time.
    let start = Instant::now();
    let deadline = start + limit;
    // A system with a control domain gets its console on a socket the steps talk to.
    let has_control = built
        .as_ref()
        .is_some_and(|b| b.manifest.domains.iter().any(|d| d.control));
    let socket = if has_control {
        let (dir, path) = crate::steps::socket_dir().map_err(ScenarioFailure::Socket)?;
        let mut extra = crate::ctl::qemu_args(&path);
        extra.append(&mut machine.extra_args);
        machine.extra_args = extra;
        Some((dir, path))
    } else {
        None
    };
    // The machine's drives, on the transports the builder gave their servers: new (empty)
    // files in a directory of the scenario's own, never the files the manifest names (a
    // user's disks), removed with it.
    let _drives_dir = match built.as_ref().filter(|b| !b.manifest.drives.is_empty()) {
        Some(b) => {
            let dir = TempDir::new("drives").map_err(|e| ScenarioFailure::Drive(e.to_string()))?;
            let drives: Vec<crate::manifest::Drive> = b
                .manifest
                .drives
                .iter()
                .map(|d| crate::manifest::Drive {
                    file: dir.0.join(format!("{}.img", d.name)),
                    ..d.clone()
                })
                .collect();
            crate::boot::drives::prepare(&drives)
                .map_err(|e| ScenarioFailure::Drive(e.to_string()))?;
            machine
                .extra_args
                .extend(crate::boot::drives::qemu_args(&drives));
            Some(dir)
        }
        None => None,
    };
    let mut judge = Judge::new(&scenario.expect);
    // Every boot but the last runs until every domain has ended (or the scenario's line),
    // then is powered off.
    for boot in 1..scenario.boots {
        if let Some((_, path)) = &socket {
            let _ = std::fs::remove_file(path);
        }
        let launch = qemu::prepare(&machine, Some(deadline))?;
        let mut qemu = Running::spawn_logged(&launch, None)?;
        let verdict: Result<(), Failure> = loop {
            match qemu.next(deadline)? {
                Next::Serial(line) => {
                    // The kernel's own line (a domain's lines carry its name first), or the
                    // scenario's own.
                    let ended = match &scenario.power_off_after {
                        Some(re) => re.is_match(&line),
                        None => line.starts_with(crate::serial::ALL_ENDED),
                    };
                    let step = judge.feed(&line);
                    transcript.push(line);
                    match step {
                        Step::Fail(f) => break Err(f),
                        _ if ended => break Ok(()),
                        _ => {}
                    }
                }
                Next::Stderr(line) => transcript.push(format!("{STDERR_PREFIX}{line}")),
                Next::Exited(status) => break judge.ended(qemu_end(status)),
                Next::TimedOut => break Err(judge.timed_out(scenario.timeout_secs)),
            }
        };
        let stopped = qemu.stop();
        verdict?;
        stopped?;
        transcript.push(format!(
            "{STDERR_PREFIX}boot {boot} ended; the machine is powered off and booted again on the same drives"
        ));
    }
    if let Some((_, path)) = socket.as_ref().filter(|_| scenario.boots > 1) {
        let _ = std::fs::remove_file(path);
    }
    let launch = qemu::prepare(&machine, Some(deadline))?;
    // The serial log beside the socket, as `mica run` keeps it.
    let log = socket
        .as_ref()
        .and_then(|(_, path)| std::fs::File::create(crate::ctl::console_log_path(path)).ok());
    let mut qemu = Running::spawn_logged(&launch, log)?;
    let verdict: Result<(), Failure> = loop {
        match qemu.next(deadline)? {
            Next::Serial(line) => {
                let step = judge.feed(&line);
                transcript.push(line);
                match step {
                    Step::Continue => {}
                    Step::Pass => break Ok(()),
                    Step::Fail(f) => break Err(f),
                }
            }
            Next::Stderr(line) => transcript.push(format!("{STDERR_PREFIX}{line}")),
            Next::Exited(status) => break judge.ended(qemu_end(status)),
            Next::TimedOut => break Err(judge.timed_out(scenario.timeout_secs)),
        }
    };
    let verdict = match (verdict, &socket) {
        (Ok(()), Some((_, path))) if !scenario.steps.is_empty() => crate::steps::run(
            &scenario.steps,
            path,
            &mut qemu,
            &scenario.expect,
            deadline,
            transcript,
        )
        .map_err(ScenarioFailure::from),
        (Ok(()), None) if !scenario.steps.is_empty() => {
            Err(ScenarioFailure::from(crate::steps::StepFailure::Run {
                step: 1,
                what: scenario.steps[0].describe(),
                problem: "the scenario's system has no control domain (`control = true`)".into(),
            }))
        }
        (verdict, _) => verdict.map_err(ScenarioFailure::from),
    };
    qemu.stop()?;
    drop(built);
    verdict
}

/// A directory of this run's own, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> std::io::Result<TempDir> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mica-smoke-{what}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn qemu_end(status: std::process::ExitStatus) -> QemuEnd {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => QemuEnd::Exited(code),
        (None, Some(sig)) => QemuEnd::Signalled(sig),
        (None, None) => QemuEnd::Exited(-1),
    }
}

/// Loads and runs one scenario file.
pub fn run_one(name: &str, path: &Path, options: &SmokeOptions) -> Outcome {
    let start = Instant::now();
    let mut transcript = Vec::new();
    let result = Scenario::load(path, &options.hypervisor)
        .map_err(ScenarioFailure::from)
        .and_then(|scenario| boot_and_judge(&scenario, &options.guests_dir, &mut transcript));
    Outcome {
        name: name.to_owned(),
        elapsed: start.elapsed(),
        result,
        transcript,
    }
}

/// Runs the selected scenarios, `jobs` at a time, printing each one's line to `out` as it
/// finishes; then each failure's transcript and the summary line. Returns the outcomes.
pub fn run(
    options: &SmokeOptions,
    out: &mut (dyn Write + Send),
) -> Result<Vec<Outcome>, SmokeError> {
    let chosen = select(
        &options.dir,
        list_scenarios(&options.dir)?,
        options.scenario.as_deref(),
    )?;
    // In name order. Longest first (by timeout), and longest first for one job with shortest
    // first for the other, were tried with two jobs: no faster than one (docs/testing.md).
    let order: Vec<usize> = (0..chosen.len()).collect();
    let next = AtomicUsize::new(0);
    let slots: Mutex<Vec<Option<Outcome>>> = Mutex::new((0..chosen.len()).map(|_| None).collect());
    let out = Mutex::new(out);
    std::thread::scope(|scope| {
        for _ in 0..options.jobs.clamp(1, chosen.len()) {
            scope.spawn(|| {
                while let Some(&i) = order.get(next.fetch_add(1, Ordering::SeqCst)) {
                    let Some((name, path)) = chosen.get(i) else {
                        break;
                    };
                    let outcome = run_one(name, path, options);
                    if let Ok(mut out) = out.lock() {
                        let _ = writeln!(out, "{}", outcome.line());
                        let _ = out.flush();
                    }
                    if let Ok(mut slots) = slots.lock() {
                        slots[i] = Some(outcome);
                    }
                }
            });
        }
    });
    let outcomes: Vec<Outcome> = slots
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .into_iter()
        .flatten()
        .collect();
    let out = out
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for failed in outcomes.iter().filter(|o| o.result.is_err()) {
        let _ = writeln!(out, "---- transcript of {} ----", failed.name);
        for line in &failed.transcript {
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(out, "---- end of {} ----", failed.name);
    }
    let _ = writeln!(out, "{}", summary(&outcomes));
    Ok(outcomes)
}

/// The last line: `smoke: N passed, M failed`.
pub fn summary(outcomes: &[Outcome]) -> String {
    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    format!(
        "smoke: {} passed, {} failed",
        outcomes.len() - failed,
        failed
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(dir: &Path, hypervisor: &str) -> SmokeOptions {
        SmokeOptions {
            dir: dir.to_owned(),
            scenario: None,
            hypervisor: PathBuf::from(hypervisor),
            guests_dir: PathBuf::from(crate::manifest::DEFAULT_GUESTS_DIR),
            jobs: 1,
        }
    }

    fn names(list: &[(String, PathBuf)]) -> Vec<&str> {
        list.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn lists_toml_files_sorted_by_name() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["b.toml", "a.toml", "notes.md", "c.toml.bak"] {
            std::fs::write(dir.path().join(f), "").unwrap();
        }
        std::fs::create_dir(dir.path().join("d.toml")).unwrap();
        let all = list_scenarios(dir.path()).unwrap();
        assert_eq!(names(&all), ["a", "b"]);
        let one = select(dir.path(), all.clone(), Some("b")).unwrap();
        assert_eq!(names(&one), ["b"]);
        let err = select(dir.path(), all, Some("zzz")).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "no scenario named `zzz` in {}; available: a, b",
                dir.path().display()
            )
        );
        assert!(matches!(
            select(dir.path(), Vec::new(), None),
            Err(SmokeError::NoScenarios(_))
        ));
    }

    #[test]
    fn bad_scenario_file_fails_that_scenario_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("broken.toml"), "description = 3\n").unwrap();
        let outcome = run_one(
            "broken",
            &dir.path().join("broken.toml"),
            &options(dir.path(), "x.img"),
        );
        assert!(matches!(outcome.result, Err(ScenarioFailure::Scenario(_))));
        assert!(
            outcome.line().starts_with("smoke: broken ... FAILED: "),
            "{}",
            outcome.line()
        );
    }

    #[test]
    fn missing_image_fails_without_qemu() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("boot.toml");
        std::fs::write(&path, "description = \"d\"\n[expect]\nlines = ['x']\n").unwrap();
        let outcome = run_one("boot", &path, &options(dir.path(), "/nonexistent/mica.img"));
        assert_eq!(
            outcome.line(),
            "smoke: boot ... FAILED: image /nonexistent/mica.img does not exist (build it first, e.g. `make`)"
        );
        assert_eq!(summary(&[outcome]), "smoke: 0 passed, 1 failed");
    }

    #[test]
    fn a_system_that_does_not_build_fails_before_qemu() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("sys.toml");
        std::fs::write(
            &manifest,
            "[system]\nname = \"sys\"\narch = \"aarch64\"\n[machine]\ncpus = 1\n\
             [[domain]]\nname = \"g\"\nkind = \"guest\"\nbinary = \"nothing-here\"\n\
             memory_kib = 64\n",
        )
        .unwrap();
        let path = dir.path().join("sys-boot.toml");
        std::fs::write(
            &path,
            format!(
                "description = \"d\"\nsystem = \"{}\"\n[expect]\nlines = ['x']\n",
                manifest.display()
            ),
        )
        .unwrap();
        let outcome = run_one("sys-boot", &path, &options(dir.path(), "x.img"));
        assert!(
            matches!(outcome.result, Err(ScenarioFailure::Build(_))),
            "{}",
            outcome.line()
        );
        assert!(
            outcome.line().contains("binary `nothing-here` not found"),
            "{}",
            outcome.line()
        );
    }

    #[test]
    fn run_prints_lines_transcripts_and_summary() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("one.toml"), "nonsense").unwrap();
        let options = options(dir.path(), "x.img");
        let mut out = Vec::new();
        let outcomes = run(&options, &mut out).unwrap();
        assert_eq!(outcomes.len(), 1);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("smoke: one ... FAILED: "));
        assert_eq!(lines[1], "---- transcript of one ----");
        assert_eq!(lines[2], "---- end of one ----");
        assert_eq!(lines[3], "smoke: 0 passed, 1 failed");
    }
}
