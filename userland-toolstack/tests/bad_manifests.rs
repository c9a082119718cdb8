//! `mica check` on the bad-manifest suite (`tests/bad-manifests/`) and on `images/`.
//!
//! Every `tests/bad-manifests/NAME.toml` is broken in one way; `NAME.expected` holds the first
//! line `mica check` must print for it (its first error, the path as
//! `tests/bad-manifests/NAME.toml`). A manifest that passes, a different first line or a
//! missing `.expected` fails the test. Every `images/*.toml` must pass `mica check
//! --no-binaries`, so this runs before anything is built.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository's root: `mica check` runs there, so paths in messages are relative to it.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate is in the repository")
        .to_owned()
}

fn mica_check(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mica"))
        .arg("check")
        .args(args)
        .current_dir(root())
        .output()
        .expect("run mica check")
}

/// The `*.toml` files of `dir` (relative to the root), sorted, as relative paths.
fn manifests(dir: &str) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(root().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| format!("{dir}/{}", p.file_name().unwrap().to_string_lossy()))
        .collect();
    found.sort();
    found
}

#[test]
fn every_bad_manifest_fails_with_its_expected_error() {
    let files = manifests("tests/bad-manifests");
    assert!(
        files.len() >= 12,
        "the suite has {} manifests, expected at least 12",
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        let expected_path = root().join(file.replace(".toml", ".expected"));
        let Ok(expected) = std::fs::read_to_string(&expected_path) else {
            failures.push(format!(
                "{file}: no {} (write the first line `mica check {file}` must print there)",
                expected_path.display()
            ));
            continue;
        };
        let out = mica_check(&[file]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr.lines().next().unwrap_or("");
        if out.status.success() {
            failures.push(format!("{file}: mica check passed it; it must fail"));
        } else if out.status.code() != Some(1) {
            failures.push(format!("{file}: exit status {:?}, not 1", out.status));
        } else if first != expected.trim_end() {
            failures.push(format!(
                "{file}:\n  expected: {}\n  got:      {first}",
                expected.trim_end()
            ));
        }
        if !stderr
            .lines()
            .last()
            .is_some_and(|l| l.starts_with(&format!("mica: {file}: ")) && l.contains("error"))
        {
            failures.push(format!(
                "{file}: the last line is not the error count: {stderr}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_expected_file_has_its_manifest() {
    let dir = root().join("tests/bad-manifests");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "expected") {
            assert!(
                path.with_extension("toml").is_file(),
                "{}: no manifest beside it",
                path.display()
            );
        }
    }
}

#[test]
fn every_image_manifest_passes_without_binaries() {
    for file in manifests("images") {
        let out = mica_check(&["--no-binaries", &file]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.starts_with(&format!("mica: {file}: ok (")),
            "{file}: {stdout}"
        );
    }
}

#[test]
fn every_image_manifest_passes_with_its_binaries() {
    if !root()
        .join("target/aarch64-unknown-none/release/hello")
        .is_file()
    {
        println!("note: the guests are not built (make build): ELF files not checked");
        return;
    }
    for file in manifests("images") {
        let out = mica_check(&[&file]);
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_summary_counts_domains_channels_and_shares() {
    let out = mica_check(&["--no-binaries", "images/pingpong.toml"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().next(),
        Some("mica: images/pingpong.toml: ok (2 domains, 1 channel, 1 shared region) (ELF files not checked: --no-binaries)")
    );
}
