//! Dynamically linked programs from Debian packages for a Linux guest's initramfs, with the
//! shared libraries they load.
//!
//! busybox has no `mkfs.ext4` and no `e2fsck`, which the disk scenarios and any user of a
//! virtual disk reach for first, so the initramfs carries e2fsprogs' own ([`PROGRAMS`]). Those
//! are dynamically linked: [`gather`] fetches their package and every `lib*` package it depends
//! on (apt's `Pre-Depends` and `Depends`, followed to the end, so renamed library packages are
//! found without a list here), then takes exactly the libraries the programs need: the
//! program's `PT_INTERP` (the dynamic loader, at the path it names) and its `DT_NEEDED`
//! entries, and theirs, each at the path its package installs it to (glibc's loader searches
//! those directories without an `ld.so.cache`). A library no fetched package has is an error
//! naming it, not a guest that fails at run time.

use crate::build::linux::{LinuxError, ARCH};
use crate::debian;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

/// A program taken from a package: where the package installs it, and the names the
/// initramfs gives it in `/sbin` (the first a file, the others links to it; `mke2fs` picks
/// the file system type from the name it is run by).
#[derive(Clone, Copy, Debug)]
pub struct Program {
    /// The Debian package.
    pub package: &'static str,
    /// Its path in the package.
    pub path: &'static str,
    /// Its names in `/sbin`.
    pub names: &'static [&'static str],
}

/// The programs every Linux guest's initramfs carries besides busybox.
pub const PROGRAMS: [Program; 2] = [
    Program {
        package: "e2fsprogs",
        path: "sbin/mke2fs",
        names: &["mke2fs", "mkfs.ext4", "mkfs.ext2"],
    },
    Program {
        package: "e2fsprogs",
        path: "sbin/e2fsck",
        names: &["e2fsck", "fsck.ext4", "fsck.ext2"],
    },
];

/// Configuration files taken as they are (package, path in it and in the initramfs).
pub const CONFIG: [(&str, &str); 1] = [("e2fsprogs", "etc/mke2fs.conf")];

/// What [`gather`] adds to an initramfs.
#[derive(Debug, Default)]
pub struct Extras {
    /// Files: path in the initramfs, contents.
    pub files: Vec<(String, Vec<u8>)>,
    /// Symbolic links: path, target.
    pub links: Vec<(String, String)>,
    /// Every package taken, `NAME VERSION`, sorted: part of the initramfs's cache name.
    pub packages: Vec<String>,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> LinuxError + '_ {
    move |source| LinuxError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Fetches [`PROGRAMS`]' packages and the library packages they depend on into `cache` and
/// returns the files to add (see the module's description).
pub fn gather(cache: &Path, say: &mut dyn FnMut(&str)) -> Result<Extras, LinuxError> {
    let mut roots: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut packages = Vec::new();
    let mut pending: VecDeque<String> = PROGRAMS.iter().map(|p| p.package.to_owned()).collect();
    pending.extend(CONFIG.iter().map(|(p, _)| (*p).to_owned()));
    while let Some(name) = pending.pop_front() {
        if roots.contains_key(&name) {
            continue;
        }
        // One question to apt for everything queued (a no-op once they are remembered).
        let mut queued: Vec<String> = pending.iter().cloned().collect();
        queued.push(name.clone());
        debian::remember(&queued, ARCH);
        let fetched = debian::fetch(cache, &name, ARCH, say)?;
        packages.push(format!("{name} {}", fetched.entry.version));
        for dep in debian::dependencies(&debian::show(&name, ARCH)?) {
            if dep.starts_with("lib") && !roots.contains_key(&dep) {
                pending.push_back(dep);
            }
        }
        roots.insert(name, fetched.unpacked);
    }
    packages.sort();

    // Every shared object the library packages install, by file name.
    let mut objects: BTreeMap<String, (String, PathBuf)> = BTreeMap::new();
    for root in roots.values() {
        for (relative, file) in shared_objects(root)? {
            let name = relative.rsplit('/').next().unwrap_or(&relative).to_owned();
            objects.entry(name).or_insert((relative, file));
        }
    }

    let mut extras = Extras {
        packages,
        ..Extras::default()
    };
    let mut wanted: VecDeque<(String, String)> = VecDeque::new();
    for program in &PROGRAMS {
        let path = roots[program.package].join(program.path);
        let bytes = std::fs::read(&path).map_err(io_error(&path))?;
        let needs = elf_needs(&bytes).map_err(|why| LinuxError::BadProgram {
            path: path.clone(),
            why,
        })?;
        if let Some(interp) = needs.interp {
            let name = interp.rsplit('/').next().unwrap_or(&interp).to_owned();
            wanted.push_back((name, interp.trim_start_matches('/').to_owned()));
        }
        for lib in needs.needed {
            wanted.push_back((lib, String::new()));
        }
        let [first, others @ ..] = program.names else {
            continue;
        };
        extras.files.push((format!("sbin/{first}"), bytes));
        for other in others {
            extras
                .links
                .push((format!("sbin/{other}"), (*first).to_owned()));
        }
    }
    let mut placed = BTreeSet::new();
    while let Some((name, at)) = wanted.pop_front() {
        let Some((relative, file)) = objects.get(&name) else {
            return Err(LinuxError::MissingLibrary {
                library: name,
                packages: roots.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        };
        let at = if at.is_empty() { relative.clone() } else { at };
        if !placed.insert(at.clone()) {
            continue;
        }
        let bytes = std::fs::read(file).map_err(io_error(file))?;
        let needs = elf_needs(&bytes).map_err(|why| LinuxError::BadProgram {
            path: file.clone(),
            why,
        })?;
        for lib in needs.needed {
            wanted.push_back((lib, String::new()));
        }
        extras.files.push((at, bytes));
    }
    for (package, path) in CONFIG {
        let file = roots[package].join(path);
        let bytes = std::fs::read(&file).map_err(io_error(&file))?;
        extras.files.push((path.to_owned(), bytes));
    }
    Ok(extras)
}

/// The shared objects under `root`'s `lib` and `usr/lib`: each name (relative to `root`) with
/// the regular file it is, or its symbolic links lead to inside `root` (an absolute link
/// target is taken relative to `root`, never the host's own file).
fn shared_objects(root: &Path) -> Result<Vec<(String, PathBuf)>, LinuxError> {
    let mut found = Vec::new();
    let canonical_root = std::fs::canonicalize(root).map_err(io_error(root))?;
    // Real directories only: a link in their place could lead anywhere on the host.
    let mut dirs: Vec<PathBuf> = ["lib", "usr/lib"]
        .iter()
        .map(|d| root.join(d))
        .filter(|d| std::fs::symlink_metadata(d).is_ok_and(|m| m.is_dir()))
        .collect();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).map_err(io_error(&dir))? {
            let path = entry.map_err(io_error(&dir))?.path();
            let meta = std::fs::symlink_metadata(&path).map_err(io_error(&path))?;
            if meta.is_dir() {
                dirs.push(path);
                continue;
            }
            let is_object = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains(".so"));
            let Some(relative) = path
                .strip_prefix(root)
                .ok()
                .and_then(|p| p.to_str())
                .map(str::to_owned)
            else {
                continue;
            };
            let file = is_object
                .then(|| resolve_inside(root, &path))
                .flatten()
                // Whatever directory links the path went through, the file itself must be
                // inside the package.
                .filter(|f| std::fs::canonicalize(f).is_ok_and(|c| c.starts_with(&canonical_root)));
            if let Some(file) = file {
                found.push((relative, file));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The regular file `path` is or leads to through at most 8 symbolic links, all inside `root`.
fn resolve_inside(root: &Path, path: &Path) -> Option<PathBuf> {
    let mut at = path.to_owned();
    for _ in 0..8 {
        let meta = std::fs::symlink_metadata(&at).ok()?;
        if meta.is_file() {
            return Some(at);
        }
        let target = std::fs::read_link(&at).ok()?;
        at = if target.is_absolute() {
            root.join(target.strip_prefix("/").ok()?)
        } else {
            at.parent()?.join(target)
        };
        if at
            .components()
            .any(|c| c == std::path::Component::ParentDir)
        {
            at = normalise(&at)?;
        }
        if !at.starts_with(root) {
            return None;
        }
    }
    None
}

/// `path` with its `..` components taken out (lexically).
fn normalise(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            c => out.push(c),
        }
    }
    Some(out)
}

/// What an ELF file needs to run: its interpreter (`PT_INTERP`) and the shared objects its
/// dynamic section names (`DT_NEEDED`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// The dynamic loader's path, for an executable.
    pub interp: Option<String>,
    /// Shared objects by name.
    pub needed: Vec<String>,
}

/// Reads [`Needs`] from a 64-bit ELF file.
pub fn elf_needs(data: &[u8]) -> Result<Needs, String> {
    use object::elf::{FileHeader64, DT_NEEDED, PT_INTERP};
    use object::read::elf::{Dyn, FileHeader, ProgramHeader};
    use object::Endianness;
    let header = FileHeader64::<Endianness>::parse(data).map_err(|e| e.to_string())?;
    let endian = header.endian().map_err(|e| e.to_string())?;
    let mut needs = Needs::default();
    let mut dynamic_segment = false;
    for ph in header
        .program_headers(endian, data)
        .map_err(|e| e.to_string())?
    {
        dynamic_segment |= ph.p_type(endian) == object::elf::PT_DYNAMIC;
        if ph.p_type(endian) == PT_INTERP {
            let bytes = ph
                .data(endian, data)
                .map_err(|()| "a PT_INTERP outside the file".to_owned())?;
            let text = String::from_utf8_lossy(bytes);
            needs.interp = Some(text.trim_end_matches('\0').to_owned());
        }
    }
    let sections = header.sections(endian, data).map_err(|e| e.to_string())?;
    let dynamic = sections.dynamic(endian, data).map_err(|e| e.to_string())?;
    if dynamic.is_none() && dynamic_segment {
        // Its libraries would go unnoticed: say so rather than build a guest that fails.
        return Err("a PT_DYNAMIC segment but no dynamic section to read it from".to_owned());
    }
    if let Some((dynamic, link)) = dynamic {
        let strings = sections
            .strings(endian, data, link)
            .map_err(|e| e.to_string())?;
        for d in dynamic {
            if d.tag32(endian) == Some(DT_NEEDED) {
                let name = d.string(endian, strings).map_err(|e| e.to_string())?;
                needs
                    .needed
                    .push(String::from_utf8_lossy(name).into_owned());
            }
        }
    }
    Ok(needs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_binary_names_its_loader_and_libc() {
        // The host's own test binary is a dynamically linked ELF file like the guest's programs.
        let exe = std::env::current_exe().unwrap();
        let needs = elf_needs(&std::fs::read(exe).unwrap()).unwrap();
        assert!(needs.interp.as_deref().is_some_and(|i| i.contains("ld-")));
        assert!(needs.needed.iter().any(|n| n.starts_with("libc.so")));
        assert!(elf_needs(b"not an ELF file").is_err());
    }

    #[test]
    fn links_are_followed_inside_the_root_only() {
        let root = std::env::temp_dir().join(format!("mica-programs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let lib = root.join("lib/aarch64-linux-gnu");
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::write(lib.join("libx.so.2.1"), b"x").unwrap();
        let link = |target: &str, name: &str| {
            std::os::unix::fs::symlink(target, lib.join(name)).unwrap();
        };
        link("libx.so.2.1", "libx.so.2");
        link("/lib/aarch64-linux-gnu/libx.so.2.1", "libx-abs.so");
        link("../../../../etc/passwd", "escape.so");
        link("/etc/hostname", "host.so");
        // Through a directory link that leads out of the package.
        std::os::unix::fs::symlink("/etc", lib.join("etcdir")).unwrap();
        link("etcdir/hostname", "via-dir.so");
        let found = shared_objects(&root).unwrap();
        let names: Vec<&str> = found.iter().map(|(r, _)| r.as_str()).collect();
        assert_eq!(
            names,
            [
                "lib/aarch64-linux-gnu/libx-abs.so",
                "lib/aarch64-linux-gnu/libx.so.2",
                "lib/aarch64-linux-gnu/libx.so.2.1"
            ]
        );
        assert!(found.iter().all(|(_, f)| f == &lib.join("libx.so.2.1")));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
