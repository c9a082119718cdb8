//! Judge a serial transcript against a smoke scenario's expectations, line by line.
//!
//! This is the whole meaning of a smoke test, kept free of processes, pipes and clocks so
//! that every verdict can be unit-tested by feeding lines: the harness in `smoke` only
//! moves lines from QEMU to [`Judge::feed`] and reports how QEMU ended.

use regex::Regex;
use std::fmt;

/// What must happen at the end of a scenario once every expected line has been seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExitMode {
    /// QEMU is killed as soon as every expectation is met.
    #[default]
    Kill,
    /// QEMU must then exit by itself with status 0 (the guest powered the machine off).
    Poweroff,
}

/// The compiled expectations of one scenario.
#[derive(Clone, Debug)]
pub struct Expectations {
    /// Must match lines in this order (each on a later line than the previous one).
    pub lines: Vec<Regex>,
    /// Must each match some line, anywhere, in any order.
    pub any_order: Vec<Regex>,
    /// Any match on any line fails the scenario at once.
    pub never: Vec<Regex>,
    /// What must happen after everything above has matched.
    pub exit: ExitMode,
}

/// What the scenario was still waiting for when it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Missing {
    /// The first ordered regex not yet matched.
    Line(String),
    /// The `any_order` regexes never matched.
    AnyOrder(Vec<String>),
    /// Every line was seen; QEMU had not powered off.
    PowerOff,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Missing::Line(re) => write!(f, "line /{re}/ matched"),
            Missing::AnyOrder(res) => {
                let list: Vec<String> = res.iter().map(|r| format!("/{r}/")).collect();
                write!(f, "any_order {} matched", list.join(", "))
            }
            Missing::PowerOff => write!(f, "QEMU to power off by itself"),
        }
    }
}

/// How QEMU ended, as far as judging cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QemuEnd {
    /// Exited with this status code.
    Exited(i32),
    /// Killed by this signal (not by us).
    Signalled(i32),
}

impl fmt::Display for QemuEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QemuEnd::Exited(code) => write!(f, "QEMU exited with status {code}"),
            QemuEnd::Signalled(sig) => write!(f, "QEMU was killed by signal {sig}"),
        }
    }
}

/// Why a scenario failed; the message is the reason printed after `FAILED:`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// A `never` regex matched.
    #[error("line {line_number} matched never /{pattern}/: {line}")]
    Forbidden {
        /// The regex.
        pattern: String,
        /// The offending line.
        line: String,
        /// Its 1-based number in the serial transcript.
        line_number: usize,
    },
    /// QEMU ended before the expectations were met.
    #[error("{end} before {missing}")]
    EndedEarly {
        /// How it ended.
        end: QemuEnd,
        /// What was still missing.
        missing: Missing,
    },
    /// In `poweroff` mode, QEMU exited with a failure status after all lines matched.
    #[error("every expected line matched, then {0} (poweroff must exit with status 0)")]
    BadExit(QemuEnd),
    /// The scenario's time ran out.
    #[error("timed out after {secs} s waiting for {missing}")]
    TimedOut {
        /// The scenario's limit.
        secs: u64,
        /// What was still missing.
        missing: Missing,
    },
}

/// Where judging stands after a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Keep reading.
    Continue,
    /// The scenario passed: stop QEMU.
    Pass,
    /// The scenario failed: stop QEMU.
    Fail(Failure),
}

/// Judges one run, fed one serial line at a time.
#[derive(Debug)]
pub struct Judge<'e> {
    expect: &'e Expectations,
    next_line: usize,
    seen: Vec<bool>,
    lines_fed: usize,
}

impl<'e> Judge<'e> {
    /// Starts judging a run against `expect`.
    pub fn new(expect: &'e Expectations) -> Self {
        Judge {
            expect,
            next_line: 0,
            seen: vec![false; expect.any_order.len()],
            lines_fed: 0,
        }
    }

    /// Whether every ordered and unordered regex has matched.
    pub fn all_matched(&self) -> bool {
        self.next_line == self.expect.lines.len() && self.seen.iter().all(|&s| s)
    }

    fn missing(&self) -> Missing {
        if let Some(re) = self.expect.lines.get(self.next_line) {
            return Missing::Line(re.as_str().to_owned());
        }
        let unmatched: Vec<String> = self
            .expect
            .any_order
            .iter()
            .zip(&self.seen)
            .filter(|(_, &seen)| !seen)
            .map(|(re, _)| re.as_str().to_owned())
            .collect();
        if unmatched.is_empty() {
            Missing::PowerOff
        } else {
            Missing::AnyOrder(unmatched)
        }
    }

    /// Takes the next line of the serial transcript.
    pub fn feed(&mut self, line: &str) -> Step {
        self.lines_fed += 1;
        if let Some(re) = self.expect.never.iter().find(|re| re.is_match(line)) {
            return Step::Fail(Failure::Forbidden {
                pattern: re.as_str().to_owned(),
                line: line.to_owned(),
                line_number: self.lines_fed,
            });
        }
        if let Some(re) = self.expect.lines.get(self.next_line) {
            if re.is_match(line) {
                self.next_line += 1;
            }
        }
        for (re, seen) in self.expect.any_order.iter().zip(self.seen.iter_mut()) {
            if !*seen && re.is_match(line) {
                *seen = true;
            }
        }
        if self.all_matched() && self.expect.exit == ExitMode::Kill {
            Step::Pass
        } else {
            Step::Continue
        }
    }

    /// The verdict when QEMU ended by itself (after every line it printed was fed).
    pub fn ended(&self, end: QemuEnd) -> Result<(), Failure> {
        if !self.all_matched() {
            return Err(Failure::EndedEarly {
                end,
                missing: self.missing(),
            });
        }
        match (self.expect.exit, end) {
            (ExitMode::Kill, _) | (ExitMode::Poweroff, QemuEnd::Exited(0)) => Ok(()),
            (ExitMode::Poweroff, end) => Err(Failure::BadExit(end)),
        }
    }

    /// The verdict when the scenario's time limit of `secs` ran out.
    pub fn timed_out(&self, secs: u64) -> Failure {
        Failure::TimedOut {
            secs,
            missing: self.missing(),
        }
    }
}

/// How a finished transcript ended, for [`judge_transcript`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TranscriptEnd {
    /// QEMU ended by itself.
    Ended(QemuEnd),
    /// The time limit of this many seconds ran out.
    TimedOut(u64),
}

/// Judges a whole transcript at once: the same verdict the harness reaches line by line.
pub fn judge_transcript<'a>(
    expect: &Expectations,
    lines: impl IntoIterator<Item = &'a str>,
    end: TranscriptEnd,
) -> Result<(), Failure> {
    let mut judge = Judge::new(expect);
    for line in lines {
        match judge.feed(line) {
            Step::Continue => {}
            Step::Pass => return Ok(()),
            Step::Fail(f) => return Err(f),
        }
    }
    match end {
        TranscriptEnd::Ended(e) => judge.ended(e),
        TranscriptEnd::TimedOut(secs) => Err(judge.timed_out(secs)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(patterns: &[&str]) -> Vec<Regex> {
        patterns.iter().map(|p| Regex::new(p).unwrap()).collect()
    }

    fn expect(exit: ExitMode) -> Expectations {
        Expectations {
            lines: res(&["Mica .* 4 CPUs online", "powering off"]),
            any_order: res(&["cpu 1: tick", "cpu 2: tick"]),
            never: res(&["panic", "EL2 exception"]),
            exit,
        }
    }

    const GOOD: &[&str] = &[
        "Mica 0.1.0: 4 CPUs online, 1000 MiB",
        "cpu 2: tick",
        "cpu 0: tick",
        "cpu 1: tick",
        "powering off",
    ];

    #[test]
    fn kill_mode_passes_as_soon_as_everything_matched() {
        let e = expect(ExitMode::Kill);
        let mut j = Judge::new(&e);
        for line in &GOOD[..4] {
            assert_eq!(j.feed(line), Step::Continue);
        }
        assert_eq!(j.feed(GOOD[4]), Step::Pass);
        // Not even waiting for QEMU to end.
        let verdict = judge_transcript(&e, GOOD.iter().copied(), TranscriptEnd::TimedOut(1));
        assert_eq!(verdict, Ok(()));
    }

    #[test]
    fn poweroff_mode_needs_a_clean_exit() {
        let e = expect(ExitMode::Poweroff);
        let mut j = Judge::new(&e);
        for line in GOOD {
            assert_eq!(j.feed(line), Step::Continue);
        }
        assert_eq!(j.ended(QemuEnd::Exited(0)), Ok(()));
        assert_eq!(
            j.ended(QemuEnd::Exited(1)),
            Err(Failure::BadExit(QemuEnd::Exited(1)))
        );
        let timed_out = judge_transcript(&e, GOOD.iter().copied(), TranscriptEnd::TimedOut(60));
        let failure = timed_out.unwrap_err();
        assert_eq!(
            failure,
            Failure::TimedOut {
                secs: 60,
                missing: Missing::PowerOff
            }
        );
        assert_eq!(
            failure.to_string(),
            "timed out after 60 s waiting for QEMU to power off by itself"
        );
    }

    #[test]
    fn ordered_lines_must_come_in_order() {
        let e = expect(ExitMode::Kill);
        let lines = [
            "powering off",
            "Mica 0.1.0: 4 CPUs online",
            "cpu 1: tick",
            "cpu 2: tick",
        ];
        let verdict = judge_transcript(&e, lines, TranscriptEnd::Ended(QemuEnd::Exited(0)));
        let failure = verdict.unwrap_err();
        assert_eq!(
            failure,
            Failure::EndedEarly {
                end: QemuEnd::Exited(0),
                missing: Missing::Line("powering off".to_owned())
            }
        );
        assert_eq!(
            failure.to_string(),
            "QEMU exited with status 0 before line /powering off/ matched"
        );
    }

    #[test]
    fn unmatched_any_order_regexes_are_all_named() {
        let e = expect(ExitMode::Kill);
        let lines = ["Mica 0.1.0: 4 CPUs online", "powering off"];
        let failure = judge_transcript(&e, lines, TranscriptEnd::TimedOut(5)).unwrap_err();
        assert_eq!(
            failure.to_string(),
            "timed out after 5 s waiting for any_order /cpu 1: tick/, /cpu 2: tick/ matched"
        );
        let failure = judge_transcript(
            &e,
            ["cpu 1: tick", "Mica x 4 CPUs online", "powering off"],
            TranscriptEnd::Ended(QemuEnd::Signalled(9)),
        )
        .unwrap_err();
        assert_eq!(
            failure.to_string(),
            "QEMU was killed by signal 9 before any_order /cpu 2: tick/ matched"
        );
    }

    #[test]
    fn never_fails_at_once_with_the_line() {
        let e = expect(ExitMode::Poweroff);
        let mut j = Judge::new(&e);
        assert_eq!(j.feed("Mica 0.1.0: 4 CPUs online"), Step::Continue);
        let step = j.feed("cpu 1: EL2 exception: data abort");
        let Step::Fail(failure) = step else {
            panic!("expected a failure, got {step:?}");
        };
        assert_eq!(
            failure.to_string(),
            "line 2 matched never /EL2 exception/: cpu 1: EL2 exception: data abort"
        );
    }

    #[test]
    fn never_is_checked_before_a_pass() {
        let e = Expectations {
            lines: res(&["done"]),
            any_order: Vec::new(),
            never: res(&["panic"]),
            exit: ExitMode::Kill,
        };
        let verdict = judge_transcript(&e, ["done after panic"], TranscriptEnd::TimedOut(1));
        assert!(matches!(verdict, Err(Failure::Forbidden { .. })));
    }

    #[test]
    fn early_exit_names_the_first_missing_line() {
        let e = expect(ExitMode::Poweroff);
        let failure =
            judge_transcript(&e, [], TranscriptEnd::Ended(QemuEnd::Exited(1))).unwrap_err();
        assert_eq!(
            failure.to_string(),
            "QEMU exited with status 1 before line /Mica .* 4 CPUs online/ matched"
        );
    }

    #[test]
    fn poweroff_only_scenario_passes_on_clean_exit() {
        let e = Expectations {
            lines: Vec::new(),
            any_order: Vec::new(),
            never: Vec::new(),
            exit: ExitMode::Poweroff,
        };
        assert_eq!(
            judge_transcript(&e, ["anything"], TranscriptEnd::Ended(QemuEnd::Exited(0))),
            Ok(())
        );
    }
}
