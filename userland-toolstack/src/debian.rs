//! Debian packages by name, fetched through apt's own configuration.
//!
//! Peers and guests Mica is measured against or boots (Xen for `mica bench-xen`, Debian's
//! kernel for Linux guests) are Debian packages, downloaded at run time and kept under
//! `build/`; nothing of them is in the repository, and neither is the address of any archive:
//! [`fetch`] asks apt. For a package of another architecture than the host's (arm64 on an
//! x86_64 machine) it first adds that architecture to dpkg and refreshes apt's indexes
//! (`dpkg --add-architecture`, `apt-get update`, which needs root, as installing QEMU does).
//! Then:
//!
//! 1. `apt-cache show --no-all-versions NAME:ARCH` gives the candidate's `Version`,
//!    `Filename` and `SHA256` from the index apt verified against the archive's signed
//!    release file ([`parse_entry`]);
//! 2. a copy already in the cache whose SHA-256 matches is used as it is;
//! 3. otherwise `apt-get download NAME:ARCH` fetches the `.deb` into the cache, and its SHA-256
//!    is checked against the entry before anything uses it (a mismatch removes it);
//! 4. `dpkg-deb -x` unpacks it next to the `.deb`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Why a package could not be had.
#[derive(Debug, thiserror::Error)]
pub enum DebianError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A helper program failed or is missing.
    #[error("`{command}` failed: {message}")]
    Tool {
        /// The command line.
        command: String,
        /// What went wrong.
        message: String,
    },
    /// apt knows no such package.
    #[error("apt knows no package {package} (with a Version, Filename and SHA256), even after `apt-get update`")]
    NotFound {
        /// `NAME:ARCH`.
        package: String,
    },
    /// apt's entry has no such field.
    #[error("apt's entry for {package} has no {field} field")]
    NoField {
        /// `NAME:ARCH`.
        package: String,
        /// The field.
        field: String,
    },
    /// apt's entry is not usable.
    #[error("apt's entry for {package} is not usable: {why}")]
    BadEntry {
        /// `NAME:ARCH`.
        package: String,
        /// What is wrong with it.
        why: String,
    },
    /// The download does not have the hash apt's index gives.
    #[error("{file}: SHA-256 is {got}, but apt's index says {expected}; the download was removed")]
    HashMismatch {
        /// The downloaded file.
        file: PathBuf,
        /// From the index.
        expected: String,
        /// Of the file.
        got: String,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> DebianError + '_ {
    move |source| DebianError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One package's entry in a Debian index (`apt-cache show` prints the same stanzas).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageEntry {
    /// `Package`.
    pub name: String,
    /// `Architecture`.
    pub arch: String,
    /// `Version`.
    pub version: String,
    /// `Filename`: the `.deb`'s path in the archive.
    pub filename: String,
    /// `SHA256` of the `.deb`, lower-case hex.
    pub sha256: String,
}

impl PackageEntry {
    /// Checks what a download will trust: a relative `.deb` path without `..`, a 64-digit hex
    /// hash and a version.
    pub fn check(&self) -> Result<(), String> {
        if self.filename.starts_with('/')
            || self
                .filename
                .split('/')
                .any(|part| part == ".." || part.is_empty())
            || !self.filename.ends_with(".deb")
        {
            return Err(format!("Filename `{}`", self.filename));
        }
        if self.sha256.len() != 64 || !self.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("SHA256 `{}`", self.sha256));
        }
        if self.version.is_empty() || self.version.contains('/') {
            return Err(format!("Version `{}`", self.version));
        }
        Ok(())
    }

    /// The `.deb`'s file name (the last part of `Filename`).
    pub fn deb_name(&self) -> &str {
        self.filename.rsplit('/').next().unwrap_or(&self.filename)
    }

    /// The entry as a stanza (what [`parse_entry`] reads back).
    pub fn stanza(&self) -> String {
        format!(
            "Package: {}\nArchitecture: {}\nVersion: {}\nFilename: {}\nSHA256: {}\n",
            self.name, self.arch, self.version, self.filename, self.sha256
        )
    }
}

/// The first entry of package `name` for `arch` in Debian index text: stanzas separated by
/// blank lines, `Field: value` lines, continuation lines starting with a space or tab. `None`
/// if no stanza names the package and architecture with a `Version`, `Filename` and `SHA256`.
pub fn parse_entry(text: &str, name: &str, arch: &str) -> Option<PackageEntry> {
    let mut fields: BTreeMap<&str, &str> = BTreeMap::new();
    let entry = |fields: &BTreeMap<&str, &str>| -> Option<PackageEntry> {
        if fields.get("Package") != Some(&name) || fields.get("Architecture") != Some(&arch) {
            return None;
        }
        Some(PackageEntry {
            name: name.to_owned(),
            arch: arch.to_owned(),
            version: (*fields.get("Version")?).to_owned(),
            filename: (*fields.get("Filename")?).to_owned(),
            sha256: fields.get("SHA256")?.to_ascii_lowercase(),
        })
    };
    for line in text.lines().chain(std::iter::once("")) {
        if line.trim().is_empty() {
            if let Some(found) = entry(&fields) {
                return Some(found);
            }
            fields.clear();
        } else if !line.starts_with([' ', '\t']) {
            if let Some((field, value)) = line.split_once(':') {
                fields.insert(field, value.trim());
            }
        }
    }
    None
}

/// Runs `program args` (in `dir`, if given), returning its stdout; an error names the
/// command and carries what it printed on stderr.
pub fn tool(
    program: &str,
    args: &[&std::ffi::OsStr],
    dir: Option<&Path>,
) -> Result<Vec<u8>, DebianError> {
    let command = crate::qemu::shell_line(
        std::ffi::OsStr::new(program),
        &args.iter().map(|a| a.to_os_string()).collect::<Vec<_>>(),
    );
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null());
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let out = cmd.output().map_err(|e| DebianError::Tool {
        command: command.clone(),
        message: if e.kind() == std::io::ErrorKind::NotFound {
            format!("{program} is not installed")
        } else {
            e.to_string()
        },
    })?;
    if !out.status.success() {
        return Err(DebianError::Tool {
            command,
            message: format!(
                "{}: {}",
                crate::qemu::describe_status(out.status),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(out.stdout)
}

/// The SHA-256 of a file, lower-case hex (with `sha256sum`).
pub fn sha256(path: &Path) -> Result<String, DebianError> {
    let out = tool("sha256sum", &["--binary".as_ref(), path.as_os_str()], None)?;
    let text = String::from_utf8_lossy(&out);
    Ok(text
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase())
}

/// `apt-get download PACKAGE` into `dir`, showing apt's progress when stderr is a terminal
/// (a download of megabytes should not look like a hang), quietly otherwise.
fn download(package: &str, dir: &Path) -> Result<(), DebianError> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return tool(
            "apt-get",
            &["download".as_ref(), "-qq".as_ref(), package.as_ref()],
            Some(dir),
        )
        .map(drop);
    }
    let command = format!("apt-get download {package}");
    let status = Command::new("apt-get")
        .args(["download", package])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .status()
        .map_err(|e| DebianError::Tool {
            command: command.clone(),
            message: e.to_string(),
        })?;
    if !status.success() {
        return Err(DebianError::Tool {
            command,
            message: format!(
                "{} (apt said why above)",
                crate::qemu::describe_status(status)
            ),
        });
    }
    Ok(())
}

/// A package fetched and unpacked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// apt's entry it was checked against.
    pub entry: PackageEntry,
    /// The `.deb`.
    pub deb: PathBuf,
    /// Where it is unpacked.
    pub unpacked: PathBuf,
    /// Whether this run downloaded it (else the cached copy checked out).
    pub downloaded: bool,
}

/// Makes dpkg and apt know packages of `arch` (a no-op for the host's architecture or one
/// already added). `say` hears about the slow step.
fn ensure_architecture(arch: &str, say: &mut dyn FnMut(&str)) -> Result<(), DebianError> {
    let native = String::from_utf8_lossy(&tool("dpkg", &["--print-architecture".as_ref()], None)?)
        .trim()
        .to_owned();
    let foreign = String::from_utf8_lossy(&tool(
        "dpkg",
        &["--print-foreign-architectures".as_ref()],
        None,
    )?)
    .into_owned();
    if native == arch || foreign.split_whitespace().any(|a| a == arch) {
        return Ok(());
    }
    say(&format!(
        "adding the {arch} architecture to dpkg and refreshing apt's indexes (dpkg --add-architecture {arch}; apt-get update)"
    ));
    tool(
        "dpkg",
        &["--add-architecture".as_ref(), arch.as_ref()],
        None,
    )?;
    apt_update()
}

fn apt_update() -> Result<(), DebianError> {
    tool("apt-get", &["update".as_ref(), "-qq".as_ref()], None)?;
    // New indexes may name other versions: what apt said before no longer holds.
    if let Ok(mut shown) = SHOWN.lock() {
        shown.clear();
    }
    Ok(())
}

/// `apt-cache show --no-all-versions PACKAGE` (`PACKAGE` is `name:arch`): the candidate's
/// stanza, or `None` when apt knows no such package (`apt-cache show` fails for a name it
/// does not know). A stanza is remembered for the life of the process: without apt's binary
/// cache (Debian's container images turn it off) every call parses every index again, over
/// two seconds each, and `mica smoke` builds a Linux guest's files for each of its Linux
/// scenarios (40 s a build, most of it here, before this was remembered). A package apt did
/// not know is asked again (an `apt-get update` may have taught it).
fn apt_show(package: &str) -> Option<String> {
    let remembered = |shown: &BTreeMap<String, String>| shown.get(package).cloned();
    if let Some(text) = SHOWN.lock().ok().and_then(|shown| remembered(&shown)) {
        return Some(text);
    }
    let out = tool(
        "apt-cache",
        &[
            "show".as_ref(),
            "--no-all-versions".as_ref(),
            package.as_ref(),
        ],
        None,
    )
    .ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    // Output without a stanza (apt printed nothing useful) is not an answer.
    stanza_field(&text, "Package")?;
    if let Ok(mut shown) = SHOWN.lock() {
        shown.insert(package.to_owned(), text.clone());
    }
    Some(text)
}

/// The stanzas [`apt_show`] remembers, by `name:arch`.
static SHOWN: std::sync::Mutex<BTreeMap<String, String>> = std::sync::Mutex::new(BTreeMap::new());

/// Asks apt about every package of `names` (of architecture `arch`) not yet remembered in
/// one `apt-cache show` (each call costs the same seconds however many it names), so that
/// [`fetch`] and [`show`] find them remembered. Best effort: a name apt does not know is
/// only left out of its answer (and asked on its own later, as before); if the call fails,
/// every one is.
pub fn remember(names: &[String], arch: &str) {
    let wanted: Vec<String> = {
        let Ok(shown) = SHOWN.lock() else { return };
        names
            .iter()
            .map(|n| format!("{n}:{arch}"))
            .filter(|p| !shown.contains_key(p))
            .collect()
    };
    if wanted.len() < 2 {
        return;
    }
    let mut args: Vec<&std::ffi::OsStr> = vec!["show".as_ref(), "--no-all-versions".as_ref()];
    args.extend(wanted.iter().map(std::ffi::OsStr::new));
    let Ok(out) = tool("apt-cache", &args, None) else {
        return;
    };
    let text = String::from_utf8_lossy(&out);
    let Ok(mut shown) = SHOWN.lock() else { return };
    for (key, stanza) in stanzas_by_package(&text, arch) {
        if wanted.contains(&key) {
            shown.insert(key, stanza);
        }
    }
}

/// The stanzas of `apt-cache show` output for several packages, each under `name:arch`
/// (stanzas are separated by an empty line; an `Architecture: all` package answers for
/// `arch` too; stanzas of other architectures are left out).
pub fn stanzas_by_package(text: &str, arch: &str) -> Vec<(String, String)> {
    text.split("\n\n")
        .filter_map(|stanza| {
            let name = stanza_field(stanza, "Package")?;
            let of = stanza_field(stanza, "Architecture")?;
            (of == arch || of == "all")
                .then(|| (format!("{name}:{arch}"), format!("{}\n", stanza.trim_end())))
        })
        .collect()
}

/// apt's candidate entry for `name:arch`, refreshing apt's indexes once if it has none.
fn candidate(name: &str, arch: &str) -> Result<PackageEntry, DebianError> {
    let package = format!("{name}:{arch}");
    let show = || -> Result<Option<PackageEntry>, DebianError> {
        Ok(apt_show(&package).and_then(|text| parse_entry(&text, name, arch)))
    };
    let entry = match show()? {
        Some(entry) => entry,
        None => {
            apt_update()?;
            show()?.ok_or_else(|| DebianError::NotFound {
                package: package.clone(),
            })?
        }
    };
    entry
        .check()
        .map_err(|why| DebianError::BadEntry { package, why })?;
    Ok(entry)
}

/// apt's candidate entry for `name:arch` as `apt-cache show` prints it (one stanza); the
/// architecture is added to dpkg and apt's indexes refreshed first if needed.
pub fn show(name: &str, arch: &str) -> Result<String, DebianError> {
    ensure_architecture(arch, &mut |_| {})?;
    let package = format!("{name}:{arch}");
    let show = || apt_show(&package);
    match show() {
        Some(text) => Ok(text),
        None => {
            apt_update()?;
            show().ok_or(DebianError::NotFound { package })
        }
    }
}

/// Field `field` of apt's candidate entry for `name:arch` (continuation lines joined with a
/// space), e.g. a metapackage's `Depends`.
pub fn field(name: &str, arch: &str, field: &str) -> Result<String, DebianError> {
    stanza_field(&show(name, arch)?, field).ok_or_else(|| DebianError::NoField {
        package: format!("{name}:{arch}"),
        field: field.to_owned(),
    })
}

/// The packages a stanza's `Pre-Depends` and `Depends` name (the first of each `|`
/// alternative, without versions or architecture qualifiers).
pub fn dependencies(stanza: &str) -> Vec<String> {
    ["Pre-Depends", "Depends"]
        .iter()
        .filter_map(|f| stanza_field(stanza, f))
        .flat_map(|list| {
            list.split(',')
                .filter_map(|alt| {
                    let first = alt.split('|').next()?.split_whitespace().next()?;
                    let name = first.split(':').next()?;
                    (!name.is_empty()).then(|| name.to_owned())
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Field `field` of the first stanza in `text`, continuation lines joined with a space.
pub fn stanza_field(text: &str, field: &str) -> Option<String> {
    let mut value: Option<String> = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(v) = value.as_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        if value.is_some() {
            break;
        }
        if let Some((name, rest)) = line.split_once(':') {
            if name == field {
                value = Some(rest.trim().to_owned());
            }
        }
    }
    value
}

/// Where the record of the cached package `name` is kept in `cache`.
fn record_path(cache: &Path, name: &str) -> PathBuf {
    cache.join(format!("{name}.package"))
}

/// The package `name` of architecture `arch`, unpacked under `cache`: the cached copy if its
/// `.deb` still has the hash it was checked with and apt's candidate is still that version,
/// otherwise downloaded with `apt-get download`, checked against apt's index and unpacked.
/// `say` gets a line for each step.
pub fn fetch(
    cache: &Path,
    name: &str,
    arch: &str,
    say: &mut dyn FnMut(&str),
) -> Result<Fetched, DebianError> {
    std::fs::create_dir_all(cache).map_err(io_error(cache))?;
    let record = record_path(cache, name);
    let unpacked = cache.join(format!("{name}.unpacked"));
    let cached = std::fs::read_to_string(&record)
        .ok()
        .and_then(|text| parse_entry(&text, name, arch))
        .filter(|entry| entry.check().is_ok());
    ensure_architecture(arch, say)?;
    let entry = candidate(name, arch)?;
    if let Some(old) = cached.filter(|old| *old == entry) {
        let deb = cache.join(old.deb_name());
        if unpacked.is_dir() && deb.is_file() && sha256(&deb)? == old.sha256 {
            say(&format!(
                "using the cached {name} {} ({}; SHA-256 checked)",
                old.version,
                deb.display()
            ));
            return Ok(Fetched {
                entry: old,
                deb,
                unpacked,
                downloaded: false,
            });
        }
    }
    say(&format!(
        "downloading {name}:{arch} {} with apt-get download",
        entry.version
    ));
    // apt-get download names the file NAME_VERSION_ARCH.deb, with an epoch's ':' as "%3a";
    // it goes into a scratch directory first, so nothing unchecked sits in the cache.
    let scratch = cache.join(format!("{name}.download"));
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch).map_err(io_error(&scratch))?;
    }
    std::fs::create_dir_all(&scratch).map_err(io_error(&scratch))?;
    let package = format!("{name}:{arch}={}", entry.version);
    download(&package, &scratch)?;
    let downloaded = std::fs::read_dir(&scratch)
        .map_err(io_error(&scratch))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| DebianError::Tool {
            command: format!("apt-get download {package}"),
            message: "it left no .deb".to_owned(),
        })?;
    let got = sha256(&downloaded)?;
    let deb = cache.join(entry.deb_name());
    if got != entry.sha256 {
        let _ = std::fs::remove_dir_all(&scratch);
        return Err(DebianError::HashMismatch {
            file: deb,
            expected: entry.sha256,
            got,
        });
    }
    std::fs::rename(&downloaded, &deb).map_err(io_error(&deb))?;
    let _ = std::fs::remove_dir_all(&scratch);
    if unpacked.exists() {
        std::fs::remove_dir_all(&unpacked).map_err(io_error(&unpacked))?;
    }
    tool(
        "dpkg-deb",
        &["-x".as_ref(), deb.as_os_str(), unpacked.as_os_str()],
        None,
    )?;
    std::fs::write(&record, entry.stanza()).map_err(io_error(&record))?;
    say(&format!(
        "{name} {} unpacked into {} (SHA-256 {} checked against apt's index)",
        entry.version,
        unpacked.display(),
        entry.sha256
    ));
    Ok(Fetched {
        entry,
        deb,
        unpacked,
        downloaded: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> PackageEntry {
        PackageEntry {
            name: "xen-hypervisor-4.17-arm64".to_owned(),
            arch: "arm64".to_owned(),
            version: "4.17.5+72-g01140da4e8-1".to_owned(),
            filename: "pool/main/x/xen/xen-hypervisor-4.17-arm64_4.17.5+72-g01140da4e8-1_arm64.deb"
                .to_owned(),
            sha256: "ae97d9bb37f765ae1a37628894ad5156d0957ca7e39e7df86221ecb46502a1a8".to_owned(),
        }
    }

    #[test]
    fn the_entry_is_found_among_others_and_round_trips() {
        let e = entry();
        let text = format!(
            "Package: xen-utils-common\nArchitecture: all\nVersion: 1\nFilename: pool/a.deb\nSHA256: {}\n\n\
             Package: {}\nArchitecture: amd64\nVersion: 9\nFilename: pool/b.deb\nSHA256: {}\n\n\
             Package: {}\nArchitecture: arm64\nVersion: {}\nDescription: Xen\n the hypervisor\n Filename: not/this.deb\nFilename: {}\nSHA256: {}\n",
            e.sha256,
            e.name,
            e.sha256,
            e.name,
            e.version,
            e.filename,
            e.sha256.to_ascii_uppercase()
        );
        assert_eq!(parse_entry(&text, &e.name, "arm64"), Some(e.clone()));
        assert_eq!(parse_entry(&e.stanza(), &e.name, "arm64"), Some(e.clone()));
        assert_eq!(parse_entry(&text, &e.name, "riscv64"), None);
        assert_eq!(parse_entry(&text, "nothing", "arm64"), None);
        assert_eq!(
            e.deb_name(),
            "xen-hypervisor-4.17-arm64_4.17.5+72-g01140da4e8-1_arm64.deb"
        );
        assert_eq!(e.check(), Ok(()));
    }

    #[test]
    fn several_stanzas_are_told_apart_by_package() {
        let text = "Package: libc6\nArchitecture: arm64\nVersion: 2.36\nDescription: C\n library\n .\n more\n\nPackage: tzdata\nArchitecture: all\nVersion: 2024a\n\nPackage: libc6\nArchitecture: amd64\nVersion: 2.36\n\n";
        let found = stanzas_by_package(text, "arm64");
        let keys: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["libc6:arm64", "tzdata:arm64"]);
        assert_eq!(
            stanza_field(&found[0].1, "Description").as_deref(),
            Some("C library . more")
        );
        assert_eq!(
            stanza_field(&found[1].1, "Version").as_deref(),
            Some("2024a")
        );
    }

    #[test]
    fn a_field_is_read_with_its_continuation_lines() {
        let text = "Package: linux-image-arm64\nDepends: linux-image-6.1.0-57-arm64\n (= 6.1.192-3)\nDescription: x\n\nDepends: other\n";
        assert_eq!(
            stanza_field(text, "Depends").as_deref(),
            Some("linux-image-6.1.0-57-arm64 (= 6.1.192-3)")
        );
        assert_eq!(
            stanza_field(text, "Package").as_deref(),
            Some("linux-image-arm64")
        );
        assert_eq!(stanza_field(text, "Recommends"), None);
    }

    #[test]
    fn dependencies_are_the_first_alternatives_without_versions() {
        let text = "Package: e2fsprogs\nPre-Depends: libblkid1 (>= 2.36), libc6:arm64 (>= 2.34)\nDepends: logsave | foo,\n libext2fs2t64 (= 1.47)\n\n";
        assert_eq!(
            dependencies(text),
            ["libblkid1", "libc6", "logsave", "libext2fs2t64"]
        );
        assert!(dependencies("Package: libc6\n").is_empty());
    }

    #[test]
    fn unsafe_entries_are_refused() {
        for filename in [
            "/etc/passwd.deb",
            "pool/../../x.deb",
            "pool//x.deb",
            "pool/x.tar",
        ] {
            let e = PackageEntry {
                filename: filename.to_owned(),
                ..entry()
            };
            assert!(e.check().is_err(), "{filename}");
        }
        let e = PackageEntry {
            sha256: "abc".to_owned(),
            ..entry()
        };
        assert!(e.check().is_err());
        let e = PackageEntry {
            version: "1/../2".to_owned(),
            ..entry()
        };
        assert!(e.check().is_err());
    }
}
