//! Transcripts in documents (the README's `make run` boot and its `mica ctl` session):
//! written from a smoke scenario's run, checked against the scenario's regexes.
//!
//! A scenario with a `[doc]` table names a document and up to two marked sections in it
//! (the markers of [`crate::bench::markers`]). After the scenario passes, `mica smoke
//! --update-docs` (`make readme`) writes
//!
//! - the boot section: `$ BOOT-COMMAND`, then the serial lines that its `expect.lines` and
//!   `expect.any_order` regexes matched, in the order they came, `...` where lines were left
//!   out;
//! - the session section: for each `ctl` step, `$ SESSION-COMMAND ARGS...` and what the
//!   command printed.
//!
//! [`check`] (run by `cargo test -p mica`, without QEMU) reads the sections back: every boot
//! line shown matches a regex of its own (the ordered ones in order) and every regex has its
//! line; the commands are the steps', in order; every step's `output` regexes match what is
//! shown under it. The smoke run holds the same regexes against the running system, so a
//! document cannot drift from what the system prints without one of the two failing.

use crate::judge::Expectations;
use crate::steps::{Action, Step};
use serde::Deserialize;
use std::path::PathBuf;

/// The `[doc]` table of a scenario.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DocSection {
    /// The document (relative to the directory `mica smoke` runs in).
    pub file: PathBuf,
    /// The marked section that shows the boot.
    #[serde(default)]
    pub boot_section: Option<String>,
    /// The command shown before the boot lines.
    #[serde(default = "default_boot_command")]
    pub boot_command: String,
    /// The marked section that shows the `ctl` steps.
    #[serde(default)]
    pub session_section: Option<String>,
    /// What each step's arguments are shown after.
    #[serde(default = "default_session_command")]
    pub session_command: String,
}

fn default_boot_command() -> String {
    "make run".to_owned()
}

fn default_session_command() -> String {
    "target/release/mica ctl".to_owned()
}

/// The serial lines of a transcript before the first step (QEMU's stderr left out).
pub fn serial_before_steps(transcript: &[String]) -> Vec<&str> {
    transcript
        .iter()
        .take_while(|l| !l.starts_with("[step 1] "))
        .filter(|l| !l.starts_with(crate::smoke::STDERR_PREFIX))
        .map(String::as_str)
        .collect()
}

/// The boot section's text (without fences) for `serial`, the lines the run printed.
pub fn boot_text(doc: &DocSection, expect: &Expectations, serial: &[&str]) -> String {
    let mut picked: Vec<usize> = Vec::new();
    let mut from = 0;
    for re in &expect.lines {
        if let Some(i) = (from..serial.len()).find(|&i| re.is_match(serial[i])) {
            picked.push(i);
            from = i + 1;
        }
    }
    for re in &expect.any_order {
        if let Some(i) = (0..serial.len()).find(|i| !picked.contains(i) && re.is_match(serial[*i]))
        {
            picked.push(i);
        }
    }
    picked.sort_unstable();
    let mut out = format!("$ {}\n", doc.boot_command);
    let mut previous: Option<usize> = None;
    for i in picked {
        if previous.is_some_and(|p| i > p + 1) {
            out.push_str("...\n");
        }
        out.push_str(serial[i]);
        out.push('\n');
        previous = Some(i);
    }
    out.push_str("...\n");
    out
}

/// A step's output as a document shows it: the temporary directory of the smoke run's
/// socket reads as `build/`, where `mica run` puts it.
fn as_shown(line: &str) -> String {
    let line = match regex::Regex::new(r"/\S*/mica-ctl[^/\s]*/") {
        Ok(re) => re.replace_all(line, "build/").into_owned(),
        Err(_) => line.to_owned(),
    };
    // A guest's terminal controls (a shell asking where the cursor is) and carriage returns
    // are not text to show.
    match regex::Regex::new(r"\x1b\[[0-9;?]*[A-Za-z]|\r") {
        Ok(re) => re.replace_all(&line, "").into_owned(),
        Err(_) => line,
    }
}

/// A step's command as the document shows it: `mica ctl ARGS`, with what it reads on stdin
/// piped in by `printf` when it has input.
fn shown_command(doc: &DocSection, args: &[String], input: Option<&str>) -> String {
    let command = format!("{} {}", doc.session_command, args.join(" "));
    match input {
        None => command,
        Some(text) => {
            let quoted = text
                .replace('\\', "\\\\")
                .replace('\n', "\\n")
                .replace('\'', "'\\''")
                .replace('%', "%%");
            format!("printf '{quoted}' | {command}")
        }
    }
}

/// The session section's text (without fences) from the steps and the run's transcript.
pub fn session_text(doc: &DocSection, steps: &[Step], transcript: &[String]) -> String {
    let mut out = String::new();
    for (i, step) in steps.iter().enumerate() {
        let Action::Ctl(args, input) = &step.action else {
            continue;
        };
        out.push_str(&format!(
            "$ {}\n",
            shown_command(doc, args, input.as_deref())
        ));
        let prefix = format!("[step {}] ", i + 1);
        // The first `[step N]` line is the step itself; its output follows.
        for line in transcript
            .iter()
            .filter_map(|l| l.strip_prefix(&prefix))
            .skip(1)
        {
            out.push_str(&as_shown(line));
            out.push('\n');
        }
    }
    out
}

/// The text between `section`'s markers in `doc`, fences removed; `None` without markers.
pub fn section_body<'a>(doc: &'a str, section: &str) -> Option<&'a str> {
    let (begin, end) = crate::bench::markers(section);
    let start = doc.find(&begin)? + begin.len();
    let stop = doc[start..].find(&end)? + start;
    let body = doc[start..stop].trim_matches('\n');
    Some(
        body.strip_prefix("```\n")
            .and_then(|b| b.strip_suffix("```"))
            .unwrap_or(body),
    )
}

/// A section's content as written into the document: the text in a code block.
pub fn fenced(text: &str) -> String {
    format!("```\n{}\n```", text.trim_end_matches('\n'))
}

/// What is wrong with the boot section `body` for `expect`.
pub fn check_boot(body: &str, doc: &DocSection, expect: &Expectations) -> Vec<String> {
    let mut problems = Vec::new();
    let mut lines = body.lines();
    let first = format!("$ {}", doc.boot_command);
    if lines.next() != Some(first.as_str()) {
        problems.push(format!("the boot transcript does not start with `{first}`"));
    }
    let mut next = 0;
    let mut used = vec![false; expect.any_order.len()];
    for line in lines.filter(|l| *l != "...") {
        if expect.lines.get(next).is_some_and(|re| re.is_match(line)) {
            next += 1;
            continue;
        }
        match (0..used.len()).find(|&i| !used[i] && expect.any_order[i].is_match(line)) {
            Some(i) => used[i] = true,
            None => problems.push(format!(
                "boot line `{line}` matches neither the next ordered regex ({}) nor an unused any_order one",
                expect
                    .lines
                    .get(next)
                    .map_or("none left".to_owned(), |re| format!("/{}/", re.as_str()))
            )),
        }
    }
    for re in &expect.lines[next.min(expect.lines.len())..] {
        problems.push(format!("no boot line shown for /{}/", re.as_str()));
    }
    for (i, re) in expect.any_order.iter().enumerate() {
        if !used[i] {
            problems.push(format!(
                "no boot line shown for any_order /{}/",
                re.as_str()
            ));
        }
    }
    problems
}

/// What is wrong with the session section `body` for `steps`.
pub fn check_session(body: &str, doc: &DocSection, steps: &[Step]) -> Vec<String> {
    let mut problems = Vec::new();
    // Each command with the lines under it.
    let mut shown: Vec<(String, String)> = Vec::new();
    for line in body.lines() {
        if let Some(command) = line.strip_prefix("$ ") {
            shown.push((command.to_owned(), String::new()));
        } else if let Some((_, output)) = shown.last_mut() {
            output.push_str(line);
            output.push('\n');
        } else {
            problems.push(format!("`{line}` comes before any command"));
        }
    }
    let ctl_steps: Vec<(usize, &Step, String)> = steps
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match &s.action {
            Action::Ctl(args, input) => {
                Some((i + 1, s, shown_command(doc, args, input.as_deref())))
            }
            Action::Garbage(_) => None,
        })
        .collect();
    if shown.len() != ctl_steps.len() {
        problems.push(format!(
            "the session shows {} commands, the scenario has {} ctl steps",
            shown.len(),
            ctl_steps.len()
        ));
    }
    for ((command, output), (n, step, expected)) in shown.iter().zip(&ctl_steps) {
        if command != expected {
            problems.push(format!(
                "command `{command}` is not step {n}'s `{expected}`"
            ));
            continue;
        }
        for re in &step.output {
            if !re.is_match(output) {
                problems.push(format!(
                    "the output shown for `{command}` does not match step {n}'s /{}/",
                    re.as_str().trim_start_matches("(?m)")
                ));
            }
        }
    }
    problems
}

/// What is wrong with the document text `text` for the scenario's `doc`, `expect` and
/// `steps` (every section it names must be there and agree).
pub fn check(text: &str, doc: &DocSection, expect: &Expectations, steps: &[Step]) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(section) = &doc.boot_section {
        match section_body(text, section) {
            Some(body) => problems.extend(check_boot(body, doc, expect)),
            None => problems.push(format!("no section `{section}` (its markers)")),
        }
    }
    if let Some(section) = &doc.session_section {
        match section_body(text, section) {
            Some(body) => problems.extend(check_session(body, doc, steps)),
            None => problems.push(format!("no section `{section}` (its markers)")),
        }
    }
    problems
}

/// The sections to write for a passed run of a scenario with `doc`.
pub fn sections(
    doc: &DocSection,
    expect: &Expectations,
    steps: &[Step],
    transcript: &[String],
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(section) = &doc.boot_section {
        let serial = serial_before_steps(transcript);
        out.push((section.clone(), fenced(&boot_text(doc, expect, &serial))));
    }
    if let Some(section) = &doc.session_section {
        out.push((
            section.clone(),
            fenced(&session_text(doc, steps, transcript)),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::ExitMode;
    use crate::steps::StepSection;
    use regex::Regex;

    fn doc() -> DocSection {
        DocSection {
            file: PathBuf::from("README.md"),
            boot_section: Some("boot".into()),
            boot_command: default_boot_command(),
            session_section: Some("session".into()),
            session_command: default_session_command(),
        }
    }

    fn expect() -> Expectations {
        Expectations {
            lines: vec![Regex::new("^start").unwrap(), Regex::new("^ready").unwrap()],
            any_order: vec![Regex::new(r"^\[a\] done").unwrap()],
            never: Vec::new(),
            exit: ExitMode::Kill,
        }
    }

    fn steps() -> Vec<Step> {
        let section = StepSection {
            ctl: Some(vec!["list".into()]),
            output: vec![r"^1 +a +running".into()],
            ..StepSection::default()
        };
        vec![Step::from_section(1, &section).unwrap()]
    }

    #[test]
    fn a_run_is_written_and_reads_back_clean() {
        let transcript: Vec<String> = [
            "start",
            "noise",
            "[a] done",
            "ready",
            "more",
            "[step 1] mica ctl list",
            "[step 1] ID   NAME",
            "[step 1] 1    a running",
            "[step 1] see /tmp/mica-ctlXy12/ctl.log",
        ]
        .map(String::from)
        .to_vec();
        let sections = sections(&doc(), &expect(), &steps(), &transcript);
        assert_eq!(
            sections[0].1,
            "```\n$ make run\nstart\n...\n[a] done\nready\n...\n```"
        );
        assert_eq!(
            sections[1].1,
            "```\n$ target/release/mica ctl list\nID   NAME\n1    a running\nsee build/ctl.log\n```"
        );
        let (b0, b1) = crate::bench::markers("boot");
        let (s0, s1) = crate::bench::markers("session");
        let text = format!(
            "# Doc\n{b0}\n{}\n{b1}\nprose\n{s0}\n{}\n{s1}\n",
            sections[0].1, sections[1].1
        );
        assert_eq!(
            check(&text, &doc(), &expect(), &steps()),
            Vec::<String>::new()
        );
    }

    #[test]
    fn stale_documents_are_caught() {
        let (b0, b1) = crate::bench::markers("boot");
        let (s0, s1) = crate::bench::markers("session");
        // A boot line the scenario does not expect, an ordered one missing; a command the
        // scenario does not run and output its regex refuses.
        let text = format!(
            "{b0}\n```\n$ make run\nstart\nold line\n...\n```\n{b1}\n{s0}\n```\n$ target/release/mica ctl list\n1    b running\n$ target/release/mica ctl stats\n```\n{s1}\n"
        );
        let problems = check(&text, &doc(), &expect(), &steps());
        let all = problems.join("\n");
        assert!(
            all.contains("boot line `old line` matches neither"),
            "{all}"
        );
        assert!(all.contains("no boot line shown for /^ready/"), "{all}");
        assert!(all.contains("no boot line shown for any_order"), "{all}");
        assert!(
            all.contains("shows 2 commands, the scenario has 1"),
            "{all}"
        );
        assert!(
            all.contains("does not match step 1's /^1 +a +running/"),
            "{all}"
        );
        assert!(check("no markers", &doc(), &expect(), &steps())[0].contains("no section `boot`"));
    }
}
