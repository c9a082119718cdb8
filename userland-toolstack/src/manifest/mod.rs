//! System manifests: one TOML file in `images/` describes a whole Mica system.
//!
//! The system is data (STYLE.md §8): the machine it boots on, every domain, and the event
//! channels and shared regions between domains (each with the reason it exists), each a table
//! of named fields, never a positional tuple or a string mini-language. A manifest is read
//! in two steps. Serde, with `deny_unknown_fields` on every table, turns the text into the
//! `*Section` structs that mirror the file, keeping the source span of each value that a
//! later check may complain about; [`Manifest::parse`] then checks what serde cannot (names,
//! ranges, references between domains, memory that must fit, shared regions that must fit
//! and not overlap, one name per capability in each domain) and produces a [`Manifest`]
//! whose domains refer to each other by index. Every error names the file and, where there
//! is a span, the line and column; it says what is wrong and what to write instead.
//!
//! Whether the domains' ELF files exist is a separate step ([`Manifest::domain_elfs`]), so
//! a manifest can be checked on a machine where nothing has been built yet.
//! `docs/manifest.md` documents the format field by field.

use mica_abi::bootinfo::{MAX_CAPS, MAX_REGIONS};
use mica_abi::layout::DomainLayout;
use mica_abi::sysimage::{
    SchedRequest, CONTROL_POOL_BYTES, DOMAIN_RAM_BASE, MAX_CHANNELS, MAX_DEVICES, MAX_DOMAINS,
    MAX_SHARES, MAX_VCPUS_PER_DOMAIN, NAME_LEN,
};
use mica_abi::Rights;
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// RAM the hypervisor keeps for itself; the domains share the rest of `[machine] memory_mib`.
pub const HYPERVISOR_RESERVED_MIB: u64 = 64;
/// Most physical CPUs: the kernel records at most this many.
pub const MAX_MACHINE_CPUS: u32 = mica_abi::layout::MAX_CPUS as u32;
/// Least machine RAM: the hypervisor's share plus room for the boot-loader layout of
/// `mica run` (a DTB at RAM base + 64 MiB).
pub const MIN_MACHINE_MEMORY_MIB: u64 = 128;
/// Most machine RAM: QEMU `virt` has RAM from 1 GiB up to 256 GiB.
pub const MAX_MACHINE_MEMORY_MIB: u64 = 255 * 1024;
/// `[machine] memory_mib` when the manifest leaves it out (as `mica run`'s default `512M`).
pub const DEFAULT_MACHINE_MEMORY_MIB: u64 = 512;
/// Longest domain or system name, in bytes (a domain record holds 32, NUL-terminated).
pub const MAX_NAME_LEN: usize = 31;
/// Longest name of a channel, endpoint or shared region, in bytes (a boot-info page entry
/// holds 24, NUL-padded).
pub const MAX_CAP_NAME_LEN: usize = NAME_LEN - 1;
/// Bytes of a page: shared regions are whole pages.
pub const PAGE_BYTES: u64 = mica_abi::layout::PAGE_SIZE;
/// End of the guest-physical address space the kernel gives every domain.
pub const IPA_LIMIT: u64 = mica_abi::layout::IPA_LIMIT;
/// Least memory a domain may have.
pub const MIN_DOMAIN_MEMORY_KIB: u64 = 64;
/// Where `binary = "NAME"` is looked for unless `--guests-dir` says otherwise.
pub const DEFAULT_GUESTS_DIR: &str = "target/aarch64-unknown-none/release";

mod check;
mod file;
mod model;
mod problem;

use check::*;
pub use check::{check_control_pool, machine_problems, pool_blocks, qemu_dtb_offset_mib};
use file::*;
pub use model::*;
pub use problem::*;

/// The problem of a manifest error without its location.
fn problem_text(e: &ManifestError) -> String {
    match e {
        ManifestError::Invalid { problem, .. } => problem.to_string(),
        other => other.to_string(),
    }
}

impl Manifest {
    /// Parses and checks manifest text; `path` names the file in errors and is the base of
    /// relative `path = "..."` entries.
    pub fn parse(path: &Path, text: &str) -> Result<Manifest, ManifestError> {
        let file: ManifestFile = toml::from_str(text).map_err(|e| ManifestError::Syntax {
            at: e.span().map_or_else(
                || Location::file(path),
                |span| Location::at_offset(path, text, span.start),
            ),
            message: e.message().trim().to_owned(),
        })?;
        Checker { path, text }.check(file)
    }

    /// Reads, parses and checks the manifest at `path`.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// The directory `path = "..."` entries are relative to.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new(""))
    }

    /// The ELF file of every domain, in order, checking that each exists: `binary = "NAME"`
    /// is `guests_dir/NAME`, `path = "FILE"` is relative to the manifest's directory.
    pub fn domain_elfs(&self, guests_dir: &Path) -> Result<Vec<PathBuf>, ManifestError> {
        self.domains
            .iter()
            .map(|d| self.domain_elf(d, guests_dir))
            .collect()
    }

    /// The ELF file of `domain` (one of this manifest's), checking that it exists.
    pub fn domain_elf(&self, d: &Domain, guests_dir: &Path) -> Result<PathBuf, ManifestError> {
        match &d.elf {
            DomainElf::Binary(binary) => {
                let tried = guests_dir.join(binary);
                if tried.is_file() {
                    Ok(tried)
                } else {
                    Err(ManifestError::MissingBinary {
                        at: d.elf_at.clone(),
                        domain: d.name.clone(),
                        binary: binary.clone(),
                        tried,
                    })
                }
            }
            // Not an ELF: its kernel, where `mica build` looks for it first (a fetched one is
            // resolved, and fetched, by the builder: `build::builder::linux_files`).
            DomainElf::Linux(LinuxImage {
                kernel: LinuxFile::Fetched,
                ..
            }) => Ok(PathBuf::from(crate::build::linux::DEFAULT_CACHE)),
            DomainElf::Linux(LinuxImage {
                kernel: LinuxFile::Path(path),
                ..
            })
            | DomainElf::Path(path) => {
                let tried = self.dir().join(path);
                if tried.is_file() {
                    Ok(tried)
                } else {
                    Err(ManifestError::MissingPath {
                        at: d.elf_at.clone(),
                        domain: d.name.clone(),
                        tried,
                    })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
