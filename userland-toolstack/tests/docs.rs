//! The documents agree with the system: the README's transcripts with the smoke scenario
//! that produces them, and every relative link with a file of the repository.
//!
//! `make readme` writes the README's `make run` and `mica ctl` transcripts from a run of
//! `tests/smoke/readme.toml`; this test (no QEMU) reads them back and checks them against
//! that scenario's regexes (`mica::doc_transcript::check`), which the smoke run holds against
//! the real system. A transcript edited by hand, or a scenario changed without `make readme`,
//! fails here.

use mica::scenario::Scenario;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate is in the repository")
        .to_owned()
}

#[test]
fn document_transcripts_match_their_scenarios() {
    let dir = root().join("tests/smoke");
    let mut checked = 0;
    let mut problems = Vec::new();
    for (name, path) in mica::smoke::list_scenarios(&dir).unwrap() {
        let scenario = Scenario::load(&path, Path::new("build/aarch64/mica.img"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let Some(doc) = &scenario.doc else {
            continue;
        };
        let file = root().join(&doc.file);
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for problem in mica::doc_transcript::check(&text, doc, &scenario.expect, &scenario.steps) {
            problems.push(format!("{} (from {name}): {problem}", doc.file.display()));
        }
        checked += 1;
    }
    assert!(
        checked >= 1,
        "no scenario has a [doc] table (tests/smoke/readme.toml should)"
    );
    assert!(
        problems.is_empty(),
        "{}\n(run `make readme` to write the transcripts from a real run)",
        problems.join("\n")
    );
}

/// GitHub's anchor for a heading: lower case, punctuation other than `-` and `_` dropped,
/// spaces as `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(text: &str) -> Vec<String> {
    let mut in_code = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        }
        if !in_code && line.starts_with('#') {
            out.push(anchor(line.trim_start_matches('#')));
        }
    }
    out
}

/// Every `](target)` of README.md and docs/*.md that is not a URL names a file or directory
/// inside the repository (a clone has nothing beside it), and a `#fragment` names a heading.
#[test]
fn relative_links_stay_inside_the_repository_and_resolve() {
    let root = root();
    let mut files = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    let link = regex::Regex::new(r"\]\(([^)\s]+)\)").unwrap();
    let mut problems = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let shown = file.strip_prefix(&root).unwrap().display().to_string();
        for target in link.captures_iter(&text).map(|c| c[1].to_owned()) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, fragment) = match target.split_once('#') {
                Some((p, f)) => (p, Some(f)),
                None => (target.as_str(), None),
            };
            let resolved = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            let Ok(real) = resolved.canonicalize() else {
                problems.push(format!("{shown}: link ({target}) names nothing"));
                continue;
            };
            if !real.starts_with(root.canonicalize().unwrap()) {
                problems.push(format!(
                    "{shown}: link ({target}) leaves the repository: a clone cannot open it"
                ));
                continue;
            }
            if let Some(fragment) = fragment.filter(|_| real.extension().is_some_and(|e| e == "md"))
            {
                let headings = anchors(&std::fs::read_to_string(&real).unwrap());
                if !headings.iter().any(|h| h == fragment) {
                    problems.push(format!("{shown}: link ({target}): no heading #{fragment}"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
