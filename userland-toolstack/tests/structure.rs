//! The shape the privileged code keeps (docs/architecture.md, "Where the kernel's code is"):
//! the kernel's modules import in one direction only, and no non-test file of a privileged
//! crate grows past [`MOST_LINES`]. Read from the sources, no build needed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Most lines of a privileged crate's non-test code in one file.
const MOST_LINES: usize = 800;

/// The crates linked into the hypervisor binary.
const PRIVILEGED: &[&str] = &["kernel", "caps", "abi", "hal-arm", "boot"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate is in the repository")
        .to_owned()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A file's code before its in-file tests (`#[cfg(test)]` at the start of a line); nothing
/// for files that are tests, proofs or test support as a whole.
fn non_test_code(path: &Path) -> String {
    let name = path.file_name().unwrap().to_string_lossy();
    let in_tests = path.components().any(|c| c.as_os_str() == "tests");
    if in_tests || ["tests.rs", "proofs.rs", "testing.rs"].contains(&name.as_ref()) {
        return String::new();
    }
    let text = std::fs::read_to_string(path).unwrap();
    match text.find("\n#[cfg(test)]") {
        Some(end) => text[..end].to_owned(),
        None => text,
    }
}

/// The kernel's top-level modules (`kernel/src/NAME.rs` or `NAME/`) and the ones each
/// names through `crate::`.
fn kernel_imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = root().join("kernel/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap().as_os_str();
        let module = first.to_string_lossy().trim_end_matches(".rs").to_owned();
        if ["lib", "tests", "testing"].contains(&module.as_str()) {
            continue;
        }
        let code = non_test_code(&file);
        let names = graph.entry(module.clone()).or_default();
        for (at, _) in code.match_indices("crate::") {
            let name: String = code[at + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name != module && src.join(format!("{name}.rs")).exists() || src.join(&name).is_dir()
            {
                names.insert(name);
            }
        }
    }
    graph
}

#[test]
fn kernel_modules_import_in_one_direction() {
    let graph = kernel_imports();
    assert!(
        graph.len() > 10,
        "the kernel's modules were found: {graph:?}"
    );
    // Depth-first search for a path back to where it started.
    fn back_to(
        graph: &BTreeMap<String, BTreeSet<String>>,
        start: &str,
        at: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in graph.get(at).into_iter().flatten() {
            path.push(next.clone());
            if next == start {
                return true;
            }
            if seen.insert(next.clone()) && back_to(graph, start, next, path, seen) {
                return true;
            }
            path.pop();
        }
        false
    }
    for module in graph.keys() {
        let mut path = vec![module.clone()];
        if back_to(&graph, module, module, &mut path, &mut BTreeSet::new()) {
            panic!("an import circle: {}", path.join(" -> "));
        }
    }
}

#[test]
fn no_privileged_file_is_too_long() {
    let mut long = Vec::new();
    for krate in PRIVILEGED {
        let mut files = Vec::new();
        rust_files(&root().join(krate).join("src"), &mut files);
        for file in files {
            let lines = non_test_code(&file).lines().count();
            if lines > MOST_LINES {
                long.push(format!("{} ({lines} lines)", file.display()));
            }
        }
    }
    assert!(
        long.is_empty(),
        "split these by concern (at most {MOST_LINES} lines of non-test code each): {long:?}"
    );
}
