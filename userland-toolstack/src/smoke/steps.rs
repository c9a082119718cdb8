//! `[[step]]` entries of smoke scenarios: `mica ctl` commands run against the running system.
//!
//! A scenario whose system has a control domain gets its control socket (`mica run
//! --ctl-socket`, in a temporary directory). Once the scenario's `[expect]` lines have all
//! matched, its steps run in order. Each step runs one command — `ctl = ["pause", "spin-b"]`
//! is `mica ctl --socket SOCKET pause spin-b`, run as a child process of the same `mica`
//! binary, or `garbage = { ... }` sends junk ([`crate::ctl::garbage`]) — then checks:
//!
//! - `status`: the command's exit status (default 0);
//! - `output`: regexes that must each match the command's output (stdout and stderr, in the
//!   order written; multi-line mode, so `^` and `$` are line ends);
//! - `serial`: regexes that must match serial lines in this order, starting with the lines
//!   printed while the command ran;
//! - `serial_never`: regexes no serial line may match from [`GRACE`] after the command
//!   returned until the last `serial` regex matched (a paused domain prints nothing).
//!
//! The scenario's `never` regexes keep applying to every line. Every step and its output go
//! into the transcript, prefixed `[step N]`.

use crate::ctl::Garbage;
use crate::judge::Expectations;
use crate::transcript::{Next, Running};
use regex::Regex;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long after a command returns its target's in-flight output is still excused.
pub const GRACE: Duration = Duration::from_millis(300);

/// One `[[step]]`, as written.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StepSection {
    /// `mica ctl` arguments after `--socket SOCKET`.
    #[serde(default)]
    pub ctl: Option<Vec<String>>,
    /// Junk to send instead.
    #[serde(default)]
    pub garbage: Option<Garbage>,
    /// What the `ctl` command reads on its stdin (e.g. the lines `console NAME --attach`
    /// types into a guest); nothing if absent.
    #[serde(default)]
    pub input: Option<String>,
    /// Expected exit status.
    #[serde(default)]
    pub status: u8,
    /// Regexes on the command's output.
    #[serde(default)]
    pub output: Vec<String>,
    /// Regexes on the serial lines after it, in order.
    #[serde(default)]
    pub serial: Vec<String>,
    /// Regexes no serial line may match while `serial` is awaited.
    #[serde(default)]
    pub serial_never: Vec<String>,
}

/// What a step does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// `mica ctl` with these arguments, and what it reads on stdin.
    Ctl(Vec<String>, Option<String>),
    /// A garbage run.
    Garbage(Garbage),
}

/// A checked step.
#[derive(Clone, Debug)]
pub struct Step {
    /// What it runs.
    pub action: Action,
    /// Expected exit status.
    pub status: u8,
    /// On the output.
    pub output: Vec<Regex>,
    /// On the serial lines, in order.
    pub serial: Vec<Regex>,
    /// Forbidden on the serial lines meanwhile.
    pub serial_never: Vec<Regex>,
}

/// Why a step section is unusable.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// Neither or both of `ctl` and `garbage`.
    #[error("step {0}: give exactly one of `ctl = [...]` and `garbage = {{ ... }}`")]
    Action(usize),
    /// A regex does not compile.
    #[error("step {step}: bad regex /{pattern}/: {source}")]
    Regex {
        /// 1-based step number.
        step: usize,
        /// The pattern.
        pattern: String,
        /// The compiler's message.
        source: regex::Error,
    },
}

fn compile(step: usize, patterns: &[String], multi_line: bool) -> Result<Vec<Regex>, StepError> {
    patterns
        .iter()
        .map(|p| {
            let text = if multi_line {
                format!("(?m){p}")
            } else {
                p.clone()
            };
            Regex::new(&text).map_err(|source| StepError::Regex {
                step,
                pattern: p.clone(),
                source,
            })
        })
        .collect()
}

impl Step {
    /// Checks step number `n` (1-based).
    pub fn from_section(n: usize, s: &StepSection) -> Result<Step, StepError> {
        let action = match (&s.ctl, &s.garbage) {
            (Some(args), None) if !args.is_empty() => Action::Ctl(args.clone(), s.input.clone()),
            (None, Some(g)) => Action::Garbage(*g),
            _ => return Err(StepError::Action(n)),
        };
        Ok(Step {
            action,
            status: s.status,
            output: compile(n, &s.output, true)?,
            serial: compile(n, &s.serial, false)?,
            serial_never: compile(n, &s.serial_never, false)?,
        })
    }

    /// The step as the transcript shows it.
    pub fn describe(&self) -> String {
        match &self.action {
            Action::Ctl(args, None) => format!("mica ctl {}", args.join(" ")),
            Action::Ctl(args, Some(input)) => {
                format!("mica ctl {} <<< {:?}", args.join(" "), input)
            }
            Action::Garbage(g) => format!(
                "garbage ({} random bytes, seed {}, {} truncated and {} oversized frames)",
                g.random_bytes, g.seed, g.truncated_frames, g.oversized_frames
            ),
        }
    }
}

/// Why the steps failed.
#[derive(Debug, thiserror::Error)]
pub enum StepFailure {
    /// The command could not run.
    #[error("step {step} ({what}): {problem}")]
    Run {
        /// 1-based.
        step: usize,
        /// The step.
        what: String,
        /// What went wrong.
        problem: String,
    },
    /// Wrong exit status.
    #[error("step {step} ({what}): exit status {got}, expected {expected}")]
    Status {
        /// 1-based.
        step: usize,
        /// The step.
        what: String,
        /// Got.
        got: i32,
        /// Expected.
        expected: u8,
    },
    /// An `output` regex did not match.
    #[error("step {step} ({what}): output does not match /{pattern}/")]
    Output {
        /// 1-based.
        step: usize,
        /// The step.
        what: String,
        /// The regex.
        pattern: String,
    },
    /// A `serial_never` or scenario `never` regex matched.
    #[error("step {step} ({what}): serial line matched /{pattern}/: {line}")]
    Forbidden {
        /// 1-based.
        step: usize,
        /// The step.
        what: String,
        /// The regex.
        pattern: String,
        /// The line.
        line: String,
    },
    /// QEMU ended or time ran out before a `serial` regex matched.
    #[error("step {step} ({what}): {end} before serial /{pattern}/ matched")]
    Serial {
        /// 1-based.
        step: usize,
        /// The step.
        what: String,
        /// How it ended.
        end: String,
        /// The regex.
        pattern: String,
    },
}

/// Runs `mica ctl --socket SOCKET ARGS...` (this binary): exit status and output (stdout and
/// stderr through one socket pair, so lines keep the order they were written in, as on a
/// terminal).
fn run_ctl(socket: &Path, args: &[String], input: Option<&str>) -> Result<(i32, String), String> {
    use std::io::Read;
    use std::os::fd::OwnedFd;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the mica binary: {e}"))?;
    let pipe = |e: std::io::Error| format!("cannot make a pipe for mica ctl: {e}");
    let (mut reader, writer) = std::os::unix::net::UnixStream::pair().map_err(pipe)?;
    let writer_too = writer.try_clone().map_err(pipe)?;
    // The Command (and with it our copies of the writing end) is gone after spawn, so the
    // read below ends when the child exits.
    let mut child = Command::new(exe)
        .arg("ctl")
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::from(OwnedFd::from(writer)))
        .stderr(Stdio::from(OwnedFd::from(writer_too)))
        .spawn()
        .map_err(|e| format!("cannot run mica ctl: {e}"))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        // From a thread, so a child that reads slowly cannot stall the read below; the pipe
        // closes when the thread is done (the child sees the input end).
        let text = text.to_owned();
        std::thread::spawn(move || {
            let _ = std::io::Write::write_all(&mut stdin, text.as_bytes());
        });
    }
    let mut bytes = Vec::new();
    let read = reader.read_to_end(&mut bytes);
    let status = child
        .wait()
        .map_err(|e| format!("cannot wait for mica ctl: {e}"))?;
    read.map_err(|e| format!("cannot read what mica ctl printed: {e}"))?;
    Ok((
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&bytes).into_owned(),
    ))
}

/// Runs `steps` against the system behind `socket`, reading its serial lines from `qemu`
/// until `deadline`; every line and step goes into `transcript`.
pub fn run(
    steps: &[Step],
    socket: &Path,
    qemu: &mut Running,
    expect: &Expectations,
    deadline: Instant,
    transcript: &mut Vec<String>,
) -> Result<(), StepFailure> {
    for (i, step) in steps.iter().enumerate() {
        let n = i + 1;
        let what = step.describe();
        transcript.push(format!("[step {n}] {what}"));
        let result = match &step.action {
            Action::Ctl(args, input) => run_ctl(socket, args, input.as_deref()),
            Action::Garbage(g) => {
                let mut out = Vec::new();
                crate::ctl::garbage(socket, g, &mut out)
                    .map(|status| {
                        (
                            i32::from(status),
                            String::from_utf8_lossy(&out).into_owned(),
                        )
                    })
                    .map_err(|e| e.to_string())
            }
        };
        let (status, output) = result.map_err(|problem| StepFailure::Run {
            step: n,
            what: what.clone(),
            problem,
        })?;
        let returned = Instant::now();
        for line in output.lines() {
            transcript.push(format!("[step {n}] {line}"));
        }
        if status != i32::from(step.status) {
            return Err(StepFailure::Status {
                step: n,
                what,
                got: status,
                expected: step.status,
            });
        }
        if let Some(re) = step.output.iter().find(|re| !re.is_match(&output)) {
            return Err(StepFailure::Output {
                step: n,
                what,
                pattern: re.as_str().trim_start_matches("(?m)").to_owned(),
            });
        }
        let mut waiting = step.serial.iter().peekable();
        while let Some(re) = waiting.peek() {
            let line = match qemu.next(deadline).map_err(|e| StepFailure::Run {
                step: n,
                what: what.clone(),
                problem: e.to_string(),
            })? {
                Next::Serial(line) => line,
                Next::Stderr(line) => {
                    transcript.push(format!("{}{line}", crate::smoke::STDERR_PREFIX));
                    continue;
                }
                Next::Exited(status) => {
                    return Err(StepFailure::Serial {
                        step: n,
                        what,
                        end: format!("QEMU exited ({status})"),
                        pattern: re.as_str().to_owned(),
                    })
                }
                Next::TimedOut => {
                    return Err(StepFailure::Serial {
                        step: n,
                        what,
                        end: "the scenario's time ran out".into(),
                        pattern: re.as_str().to_owned(),
                    })
                }
            };
            transcript.push(line.clone());
            let excused = returned.elapsed() < GRACE;
            let forbidden = expect
                .never
                .iter()
                .chain(step.serial_never.iter().filter(|_| !excused))
                .find(|re| re.is_match(&line));
            if let Some(re) = forbidden {
                return Err(StepFailure::Forbidden {
                    step: n,
                    what,
                    pattern: re.as_str().to_owned(),
                    line,
                });
            }
            if re.is_match(&line) {
                waiting.next();
            }
        }
    }
    Ok(())
}

/// The socket of a scenario that drives its control domain: in a fresh temporary directory.
pub fn socket_dir() -> std::io::Result<(tempfile::TempDir, PathBuf)> {
    let dir = tempfile::Builder::new().prefix("mica-ctl").tempdir()?;
    let path = dir.path().join("ctl.sock");
    Ok((dir, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_checked() {
        let ok = StepSection {
            ctl: Some(vec!["list".into()]),
            output: vec!["^1 +base".into()],
            ..StepSection::default()
        };
        let step = Step::from_section(1, &ok).unwrap();
        assert_eq!(step.describe(), "mica ctl list");
        assert!(step.output[0].is_match("ID NAME\n1   base running"));
        let neither = StepSection::default();
        assert_eq!(
            Step::from_section(2, &neither).unwrap_err().to_string(),
            "step 2: give exactly one of `ctl = [...]` and `garbage = { ... }`"
        );
        let both = StepSection {
            ctl: Some(vec!["list".into()]),
            garbage: Some(Garbage::default()),
            ..StepSection::default()
        };
        assert!(Step::from_section(3, &both).is_err());
        let bad = StepSection {
            ctl: Some(vec!["list".into()]),
            serial: vec!["(".into()],
            ..StepSection::default()
        };
        assert!(Step::from_section(4, &bad)
            .unwrap_err()
            .to_string()
            .starts_with("step 4: bad regex /(/"));
        let parsed: StepSection = toml::from_str(
            "garbage = { random_bytes = 10, seed = 3 }\noutput = ['sent']\nstatus = 0\n",
        )
        .unwrap();
        assert_eq!(
            Step::from_section(1, &parsed).unwrap().action,
            Action::Garbage(Garbage {
                random_bytes: 10,
                seed: 3,
                ..Garbage::default()
            })
        );
        assert!(toml::from_str::<StepSection>("ctl = ['list']\ncolour = 1\n").is_err());
    }
}
