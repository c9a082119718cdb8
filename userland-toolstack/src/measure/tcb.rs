//! `mica tcb`: how many source lines run privileged on each architecture, and how many run
//! deprivileged in domains.
//!
//! A line is *code* when it holds anything outside comments and whitespace. Comments are
//! Rust's `//` (so also `///` and `//!` doc comments) and `/* */` (nested, as Rust allows);
//! text inside string literals is code, so every line of assembly inside `global_asm!` or
//! `asm!` counts, and so does every non-blank line of a linker script outside its `/* */`
//! comments (the same rules read `.ld` files). Test code is left out: files named `tests.rs`
//! or `testing.rs` (test support, compiled only for tests and harnesses), anything under a
//! `tests/` directory, `build.rs` (it runs on the build host), and every
//! module behind `#[cfg(test)]` — the attribute, the `mod` line and everything up to the
//! module's closing brace (or the `mod name;` line of an out-of-line one).
//!
//! What runs where ([`components`]): privileged on aarch64 are `abi`, `caps`, `kernel`,
//! `hal-arm` and boot's shared library, its `mica-aarch64` binary and linker script; on x86_64
//! the same with `hal-x86` and boot's x86_64 parts. Deprivileged is the domain runtime `rt`
//! and every crate under `services/` and `guests/`.

use std::path::{Path, PathBuf};

/// The section of `docs/PERFORMANCE.md` with the table.
pub const SECTION: &str = "tcb";

/// How the lines of some source divide up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Lines with code.
    pub code: u64,
    /// Lines with only comments (and whitespace).
    pub comment: u64,
    /// Empty or whitespace-only lines.
    pub blank: u64,
    /// Lines of `#[cfg(test)]` modules (whatever they hold).
    pub test: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.code += o.code;
        self.comment += o.comment;
        self.blank += o.blank;
        self.test += o.test;
    }
}

/// What one line holds, and its code with string contents and comments removed.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Line {
    kind: Kind,
    /// The characters outside comments and literals (literals kept as empty `""`).
    bare: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Code,
    Comment,
    Blank,
}

/// The lexical state carried from one line to the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Normal,
    /// Inside `/* */`, nested this deep.
    Block(u32),
    /// Inside `"..."`.
    Str,
    /// Inside `r#"..."#` with this many `#`.
    Raw(usize),
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Classifies every line of `text` (Rust or a linker script).
fn lex(text: &str) -> Vec<Line> {
    let mut state = State::Normal;
    let mut lines = Vec::new();
    for raw in text.lines() {
        let chars: Vec<char> = raw.chars().collect();
        let (mut code, mut comment) = (false, false);
        let mut bare = String::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let next = chars.get(i + 1).copied();
            match state {
                State::Block(depth) => {
                    if c == '/' && next == Some('*') {
                        state = State::Block(depth + 1);
                        i += 2;
                        comment = true;
                        continue;
                    }
                    if c == '*' && next == Some('/') {
                        state = if depth == 1 {
                            State::Normal
                        } else {
                            State::Block(depth - 1)
                        };
                        i += 2;
                        comment = true;
                        continue;
                    }
                    comment |= !c.is_whitespace();
                }
                State::Str => {
                    code |= !c.is_whitespace();
                    if c == '\\' {
                        i += 2;
                        continue;
                    }
                    if c == '"' {
                        state = State::Normal;
                        bare.push('"');
                    }
                }
                State::Raw(hashes) => {
                    code |= !c.is_whitespace();
                    if c == '"'
                        && chars[i + 1..].iter().take_while(|h| **h == '#').count() >= hashes
                    {
                        state = State::Normal;
                        bare.push('"');
                        i += 1 + hashes;
                        continue;
                    }
                }
                State::Normal => {
                    if c.is_whitespace() {
                        bare.push(c);
                        i += 1;
                        continue;
                    }
                    if c == '/' && next == Some('/') {
                        comment = true;
                        break;
                    }
                    if c == '/' && next == Some('*') {
                        state = State::Block(1);
                        comment = true;
                        i += 2;
                        continue;
                    }
                    code = true;
                    if c == '"' {
                        state = State::Str;
                        bare.push('"');
                        i += 1;
                        continue;
                    }
                    // r"..." / r#"..."# / br#"..."#: `r` not part of a longer identifier.
                    let prev = i.checked_sub(1).map(|p| chars[p]);
                    let before_prev = i.checked_sub(2).map(|p| chars[p]);
                    let starts_word = !prev.is_some_and(is_ident)
                        || (prev == Some('b') && !before_prev.is_some_and(is_ident));
                    if c == 'r' && starts_word {
                        let hashes = chars[i + 1..].iter().take_while(|h| **h == '#').count();
                        if chars.get(i + 1 + hashes) == Some(&'"') {
                            state = State::Raw(hashes);
                            bare.push_str("r\"");
                            i += 2 + hashes;
                            continue;
                        }
                    }
                    // A character literal ('x', '\n', '\''), not a lifetime ('a).
                    if c == '\'' {
                        let len = if next == Some('\\') {
                            // '\n', '\'', '\u{1F600}': the closing quote comes after the
                            // escaped character.
                            chars
                                .get(i + 3..)
                                .unwrap_or(&[])
                                .iter()
                                .take(10)
                                .position(|x| *x == '\'')
                                .map(|p| p + 4)
                        } else if chars.get(i + 2) == Some(&'\'') {
                            Some(3)
                        } else {
                            None
                        };
                        if let Some(len) = len {
                            bare.push_str("' '");
                            i += len;
                            continue;
                        }
                    }
                    bare.push(c);
                }
            }
            i += 1;
        }
        let kind = if code {
            Kind::Code
        } else if comment || matches!(state, State::Block(_)) && !raw.trim().is_empty() {
            Kind::Comment
        } else {
            Kind::Blank
        };
        lines.push(Line { kind, bare });
    }
    lines
}

/// Whether `code` (trimmed, without comments) declares a module: `mod`, `pub mod`,
/// `pub(crate) mod`, ...
fn declares_module(code: &str) -> bool {
    let rest = code
        .strip_prefix("pub(crate) ")
        .or_else(|| code.strip_prefix("pub(super) "))
        .or_else(|| code.strip_prefix("pub "))
        .unwrap_or(code);
    rest.starts_with("mod ")
}

/// Counts the lines of one source file (Rust or a linker script); `#[cfg(test)]` modules are
/// counted as `test`.
pub fn count_source(text: &str) -> Counts {
    let lines = lex(text);
    let mut counts = Counts::default();
    let mut depth: i64 = 0;
    // The index of a `#[cfg(test)]` line still waiting for the item it applies to.
    let mut pending: Option<usize> = None;
    // While inside a test module: the brace depth it started at.
    let mut skipping: Option<i64> = None;
    let mut kinds: Vec<Option<Kind>> = lines.iter().map(|l| Some(l.kind)).collect();
    for (n, line) in lines.iter().enumerate() {
        let opens = line.bare.matches('{').count() as i64;
        let closes = line.bare.matches('}').count() as i64;
        let before = depth;
        depth += opens - closes;
        if let Some(base) = skipping {
            kinds[n] = None;
            if depth <= base {
                skipping = None;
            }
            continue;
        }
        let code = line.bare.trim();
        if line.kind != Kind::Code {
            continue;
        }
        if let Some(rest) = code.strip_prefix("#[cfg(test)]") {
            let rest = rest.trim();
            if rest.is_empty() {
                pending = Some(n);
                continue;
            }
            if declares_module(rest) {
                pending = Some(n);
            }
        }
        let Some(attr) = pending else { continue };
        let item = code.strip_prefix("#[cfg(test)]").unwrap_or(code).trim();
        if item.starts_with("#[") && item.ends_with(']') {
            continue; // another attribute on the same item
        }
        pending = None;
        if !declares_module(item) {
            continue;
        }
        for k in &mut kinds[attr..=n] {
            *k = None;
        }
        if opens > closes {
            skipping = Some(before);
        }
    }
    for k in kinds {
        match k {
            Some(Kind::Code) => counts.code += 1,
            Some(Kind::Comment) => counts.comment += 1,
            Some(Kind::Blank) => counts.blank += 1,
            None => counts.test += 1,
        }
    }
    counts
}

/// Whether a file is counted at all (sources and linker scripts that are not tests).
pub fn is_counted(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let source = name.ends_with(".rs") || name.ends_with(".ld");
    let test_dir = path.components().any(|c| c.as_os_str() == "tests");
    source && !matches!(name, "tests.rs" | "testing.rs" | "build.rs") && !test_dir
}

/// Every counted file under `path` (a file or a directory), sorted.
fn files_under(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if path.is_file() {
        if is_counted(path) {
            out.push(path.to_owned());
        }
        return Ok(out);
    }
    for entry in std::fs::read_dir(path)? {
        let p = entry?.path();
        if p.file_name().is_some_and(|n| n == "target") {
            continue;
        }
        if p.is_dir() {
            out.extend(files_under(&p)?);
        } else if is_counted(&p) {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// Which side of the privilege line a component is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// At EL2 on aarch64.
    PrivilegedAarch64,
    /// In the hypervisor on x86_64.
    PrivilegedX86,
    /// In domains.
    Deprivileged,
}

impl Side {
    /// How the table names it.
    pub fn label(self) -> &'static str {
        match self {
            Side::PrivilegedAarch64 => "privileged, aarch64",
            Side::PrivilegedX86 => "privileged, x86_64",
            Side::Deprivileged => "deprivileged (domains)",
        }
    }
}

/// A named set of paths (relative to the repository root) on one side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Component {
    /// The side.
    pub side: Side,
    /// Its name in the table.
    pub name: String,
    /// Files or directories.
    pub paths: Vec<PathBuf>,
}

/// What runs where, in the repository at `root`: fixed lists for the privileged sides; the
/// domain runtime and every crate directory under `services/` and `guests/` for the
/// deprivileged side.
pub fn components(root: &Path) -> std::io::Result<Vec<Component>> {
    let c = |side, name: &str, paths: &[&str]| Component {
        side,
        name: name.to_owned(),
        paths: paths.iter().map(PathBuf::from).collect(),
    };
    let mut out = Vec::new();
    for (side, hal, bin, ld) in [
        (
            Side::PrivilegedAarch64,
            "hal-arm",
            "boot/src/bin/mica-aarch64.rs",
            "boot/src/arch/aarch64.ld",
        ),
        (
            Side::PrivilegedX86,
            "hal-x86",
            "boot/src/bin/mica-x86_64.rs",
            "boot/src/arch/x86_64.ld",
        ),
    ] {
        out.push(c(side, "abi", &["abi/src"]));
        out.push(c(side, "caps", &["caps/src"]));
        out.push(c(side, "kernel", &["kernel/src"]));
        out.push(c(side, hal, &[&format!("{hal}/src")]));
        out.push(c(side, "boot", &["boot/src/lib.rs", bin, ld]));
    }
    out.push(c(Side::Deprivileged, "rt", &["rt"]));
    for parent in ["services", "guests"] {
        let mut crates: Vec<PathBuf> = std::fs::read_dir(root.join(parent))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("Cargo.toml").is_file())
            .collect();
        crates.sort();
        for dir in crates {
            let rel = dir.strip_prefix(root).unwrap_or(&dir).to_owned();
            out.push(Component {
                side: Side::Deprivileged,
                name: rel.display().to_string(),
                paths: vec![rel],
            });
        }
    }
    Ok(out)
}

/// One component's figures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// The component.
    pub component: Component,
    /// Files counted.
    pub files: usize,
    /// Its lines.
    pub counts: Counts,
}

/// Counts every component in the repository at `root`.
pub fn measure(root: &Path) -> std::io::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for component in components(root)? {
        let mut counts = Counts::default();
        let mut files = 0;
        for path in &component.paths {
            let full = root.join(path);
            if !full.exists() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!(
                        "{} (component {}) does not exist",
                        full.display(),
                        component.name
                    ),
                ));
            }
            for file in files_under(&full)? {
                counts += count_source(&std::fs::read_to_string(&file)?);
                files += 1;
            }
        }
        rows.push(Row {
            component,
            files,
            counts,
        });
    }
    Ok(rows)
}

/// The Markdown table: each component, a total per side.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| side | component | files | code lines | comment lines | blank lines | test lines left out |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for side in [
        Side::PrivilegedAarch64,
        Side::PrivilegedX86,
        Side::Deprivileged,
    ] {
        let mut total = Counts::default();
        let mut files = 0;
        for r in rows.iter().filter(|r| r.component.side == side) {
            out.push_str(&format!(
                "| {} | `{}` | {} | {} | {} | {} | {} |\n",
                side.label(),
                r.component.name,
                r.files,
                r.counts.code,
                r.counts.comment,
                r.counts.blank,
                r.counts.test
            ));
            total += r.counts;
            files += r.files;
        }
        out.push_str(&format!(
            "| **{}** | **total** | {} | **{}** | {} | {} | {} |\n",
            side.label(),
            files,
            total.code,
            total.comment,
            total.blank,
            total.test
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(text: &str) -> (u64, u64, u64, u64) {
        let c = count_source(text);
        (c.code, c.comment, c.blank, c.test)
    }

    #[test]
    fn comments_blanks_and_code() {
        let text =
            "//! crate doc\n\n/// item doc\nfn f() {} // trailing\n   \n// plain\nlet x = 1;\n";
        assert_eq!(counts(text), (2, 3, 2, 0));
    }

    #[test]
    fn block_comments_nest_and_span_lines() {
        let text = "/* a\n /* nested */\n still comment */\ncode(); /* c */\n/* x */ code();\n*/";
        // The last line closes nothing (outside a comment `*/` is code).
        assert_eq!(counts(text), (3, 3, 0, 0));
    }

    #[test]
    fn comment_markers_inside_strings_are_code() {
        let text = "let url = \"http://x/*\";\nlet r = r#\"a \" // b\n\n/* not a comment */\"#;\nlet c = '\"'; // comment\nlet q = \"\\\"//\";\n";
        // Line 3 is empty inside the raw string: blank.
        assert_eq!(counts(text), (5, 0, 1, 0));
    }

    #[test]
    fn assembly_in_global_asm_counts_as_code() {
        let text = "core::arch::global_asm!(\n    r#\"\n    .global x\n// asm comment\nx:  mrs x0, cntvct_el0\n    \"#,\n);\n";
        assert_eq!(counts(text), (7, 0, 0, 0));
    }

    #[test]
    fn lifetimes_and_char_literals() {
        let text = "fn f<'a>(x: &'a str) -> char { '{' }\nlet e = '\\'';\nlet b = b'\"';\n}\n";
        // The '{' is a literal: braces stay balanced apart from the stray last line.
        assert_eq!(counts(text), (4, 0, 0, 0));
    }

    #[test]
    fn cfg_test_modules_are_left_out() {
        let text = "fn a() {}\n\n#[cfg(test)]\n// why\n#[allow(x)]\nmod tests {\n    fn t() {\n        let s = \"}\";\n    }\n}\nfn b() {}\n";
        // Lines 3-10 (attribute to closing brace) are test lines; the comment between is
        // counted as a test line too, since it lies inside the span.
        assert_eq!(counts(text), (2, 0, 1, 8));
    }

    #[test]
    fn out_of_line_and_other_cfg_test_items() {
        let text = "#[cfg(test)]\nmod tests;\n#[cfg(test)]\nfn helper() {}\n#[cfg(test)] pub(crate) mod inline {\n}\nfn c() {}\n";
        // `mod tests;` and its attribute: test. A cfg(test) fn stays code (only modules are
        // left out). The one-line attribute + mod opens a module closed on the next line.
        assert_eq!(counts(text), (3, 0, 0, 4));
    }

    #[test]
    fn linker_scripts() {
        let text = "/*\n * layout\n */\nOUTPUT_ARCH(aarch64)\n\nSECTIONS\n{\n  . = 0x40000000; /* base */\n}\n";
        assert_eq!(counts(text), (5, 3, 1, 0));
    }

    #[test]
    fn which_files_count() {
        for (path, counted) in [
            ("kernel/src/kernel.rs", true),
            ("kernel/src/tests.rs", false),
            ("kernel/src/tests/boot.rs", false),
            ("kernel/src/testing.rs", false),
            ("kernel/tests/smoke.rs", false),
            ("boot/build.rs", false),
            ("boot/src/arch/aarch64.ld", true),
            ("docs/x.md", false),
        ] {
            assert_eq!(is_counted(Path::new(path)), counted, "{path}");
        }
    }

    #[test]
    fn the_repository_has_every_component() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let rows = measure(&root).unwrap();
        for side in [
            Side::PrivilegedAarch64,
            Side::PrivilegedX86,
            Side::Deprivileged,
        ] {
            assert!(rows
                .iter()
                .any(|r| r.component.side == side && r.counts.code > 0));
        }
        let t = table(&rows);
        assert!(t.contains("| privileged, aarch64 | `hal-arm` |"), "{t}");
        assert!(t.contains("`rt`"), "{t}");
    }
}
