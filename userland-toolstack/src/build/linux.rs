//! The files a Linux guest boots from: Debian's own arm64 kernel and an initramfs built here.
//!
//! Nothing of Debian is in the repository. [`fetch`] asks apt (through [`crate::debian`]) for
//! the kernel the metapackage `linux-image-arm64` currently depends on and for
//! `busybox-static`, both arm64, checks each against apt's verified index, unpacks them under
//! the cache (`build/linux/` by default) and builds an initramfs ([`initramfs`]):
//!
//! - `/bin/busybox` (static) and the links `busybox --install` makes at boot;
//! - the kernel modules Mica's virtual devices need ([`MODULES`]: `virtio_mmio`, `virtio_blk`,
//!   `virtio_net`, `virtio_console`, `ext4`) with everything they depend on, in load order:
//!   Debian's package ships no `modules.dep` (its post-install script runs `depmod`), so the
//!   order comes from each module's own `.modinfo` `depends=` list ([`module_order`]);
//! - `/dev/console`, so `/init` has its standard streams before devtmpfs is mounted;
//! - `/init` ([`init_script`]): mounts proc, sysfs and devtmpfs, prints [`INIT_LINE`] (the
//!   line `mica bench-xen` times Linux boot to), loads the modules, prints [`READY_LINE`] and
//!   starts a shell on the console.
//!
//! A second archive holds e2fsprogs' `mkfs.ext4` and `e2fsck` with the shared libraries they
//! load ([`crate::build::programs`]), for guests with disks ([`LinuxFiles::disk_tools`]).
//!
//! A second run finds the packages in the cache (their hashes checked again) and the
//! initramfs already built for those two versions, and says so.

use crate::build::image::{check_image_header, ImageError, ImageHeader};
use crate::debian::{self, DebianError};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Where the packages and the initramfs are kept by default.
pub const DEFAULT_CACHE: &str = "build/linux";
/// The metapackage that names Debian's current arm64 kernel.
pub const KERNEL_METAPACKAGE: &str = "linux-image-arm64";
/// The static busybox package.
pub const BUSYBOX: &str = "busybox-static";
/// The architecture of both.
pub const ARCH: &str = "arm64";
/// The modules the initramfs loads (by module name), before their dependencies are added.
/// ext4 asks the crypto API for `crc32c` (metadata checksums, on by default in `mkfs.ext4`)
/// only when it mounts, through `modprobe`, which the initramfs has not: it is loaded first.
pub const MODULES: [&str; 6] = [
    "virtio_mmio",
    "virtio_blk",
    "virtio_net",
    "virtio_console",
    "crc32c_generic",
    "ext4",
];
/// What `/init` prints first: the end of a Linux guest's boot as the benchmarks time it.
pub const INIT_LINE: &str = "mica-linux: init started";
/// What `/init` prints when the modules are loaded, just before the shell starts.
pub const READY_LINE: &str = "mica-linux: ready";

/// Why the guest's files could not be had.
#[derive(Debug, thiserror::Error)]
pub enum LinuxError {
    /// A package could not be had.
    #[error(transparent)]
    Debian(#[from] DebianError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The metapackage names no kernel package.
    #[error("{KERNEL_METAPACKAGE}:{ARCH} depends on no linux-image package (its Depends: `{0}`)")]
    NoKernelPackage(String),
    /// The kernel package holds no `boot/vmlinuz-*`, or more than one.
    #[error("{0}: expected exactly one boot/vmlinuz-* in the kernel package")]
    NoKernel(PathBuf),
    /// The kernel is not an arm64 Image.
    #[error("{path}: {source}")]
    NotAnImage {
        /// The file.
        path: PathBuf,
        /// Why.
        source: ImageError,
    },
    /// A module the initramfs needs is not in the package.
    #[error("module {module} (needed by {needed_by}) is not in {dir}")]
    MissingModule {
        /// The module's name.
        module: String,
        /// Who needs it.
        needed_by: String,
        /// Where it was looked for.
        dir: PathBuf,
    },
    /// A module's `.modinfo` could not be read.
    #[error("{path}: not a kernel module with a .modinfo section ({why})")]
    BadModule {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// A program or library of the initramfs is not an ELF file whose needs can be read.
    #[error("{path}: not a program or shared library whose needs can be read ({why})")]
    BadProgram {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// A program of the initramfs needs a shared library no fetched package has.
    #[error(
        "the initramfs's programs need {library}, which none of these packages has: {packages}"
    )]
    MissingLibrary {
        /// The library's name.
        library: String,
        /// The packages looked in.
        packages: String,
    },
    /// Modules depend on each other in a circle.
    #[error("kernel modules depend on each other in a circle, through {0}")]
    DependencyCycle(String),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> LinuxError + '_ {
    move |source| LinuxError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A Linux guest's files, ready to boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinuxFiles {
    /// The kernel package (name and version), e.g. `linux-image-6.1.0-57-arm64 6.1.192-3`.
    pub kernel_package: String,
    /// The kernel release (`6.1.0-57-arm64`): the name of its modules directory.
    pub release: String,
    /// The arm64 Image.
    pub kernel: PathBuf,
    /// Its header.
    pub header: ImageHeader,
    /// The initramfs (an uncompressed newc cpio archive).
    pub initramfs: PathBuf,
    /// A second archive, of the disk tools ([`crate::build::programs`]), which the builder
    /// appends to the initramfs of a Linux guest with disks (the kernel unpacks concatenated
    /// archives in turn). Apart, because they do not fit the small guests `mica ctl create`
    /// starts (docs/linux-guests.md).
    pub disk_tools: PathBuf,
    /// The modules `/init` loads, in order.
    pub modules: Vec<String>,
    /// Whether the initramfs was built by this run (else it was in the cache).
    pub built: bool,
}

/// The kernel package `linux-image-arm64` depends on now: the first name of its `Depends`.
pub fn kernel_package_of(depends: &str) -> Option<String> {
    let first = depends.split(',').next()?.split('|').next()?.trim();
    let name = first.split_whitespace().next()?;
    let name = name.split(':').next()?;
    (name.starts_with("linux-image-") && !name.is_empty()).then(|| name.to_owned())
}

/// Fetches the kernel and busybox into `cache` and builds the initramfs there (unless the
/// cache already has one for these versions). `say` gets a line for each step.
///
/// One fetch at a time per cache (a lock file in it, held until this returns): two smoke
/// scenarios building Linux guests at once (`mica smoke --jobs 2`) would otherwise download
/// the same package into the same scratch directory.
pub fn fetch(cache: &Path, say: &mut dyn FnMut(&str)) -> Result<LinuxFiles, LinuxError> {
    std::fs::create_dir_all(cache).map_err(io_error(cache))?;
    let lock_path = cache.join(".lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_error(&lock_path))?;
    lock.lock().map_err(io_error(&lock_path))?;
    fetch_locked(cache, say)
}

fn fetch_locked(cache: &Path, say: &mut dyn FnMut(&str)) -> Result<LinuxFiles, LinuxError> {
    debian::remember(&[KERNEL_METAPACKAGE.into(), BUSYBOX.into()], ARCH);
    let depends = debian::field(KERNEL_METAPACKAGE, ARCH, "Depends")?;
    let kernel_name =
        kernel_package_of(&depends).ok_or_else(|| LinuxError::NoKernelPackage(depends.clone()))?;
    let kernel_pkg = debian::fetch(cache, &kernel_name, ARCH, say)?;
    let busybox_pkg = debian::fetch(cache, BUSYBOX, ARCH, say)?;

    let boot = kernel_pkg.unpacked.join("boot");
    let images: Vec<PathBuf> = std::fs::read_dir(&boot)
        .map_err(io_error(&boot))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .collect();
    let [kernel] = images.as_slice() else {
        return Err(LinuxError::NoKernel(boot));
    };
    let release = kernel
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("vmlinuz-"))
        .unwrap_or_default()
        .to_owned();
    let header = {
        let mut head = vec![0u8; 64];
        use std::io::Read;
        std::fs::File::open(kernel)
            .and_then(|mut f| f.read_exact(&mut head))
            .map_err(io_error(kernel))?;
        check_image_header(&head).map_err(|source| LinuxError::NotAnImage {
            path: kernel.clone(),
            source,
        })?
    };

    let modules_dir = kernel_pkg
        .unpacked
        .join("lib/modules")
        .join(&release)
        .join("kernel");
    let index = index_modules(&modules_dir)?;
    let mut depends_of = BTreeMap::new();
    let order = module_order(
        &MODULES,
        &mut |name: &str| -> Result<Vec<String>, LinuxError> {
            let path = index
                .get(&normalise(name))
                .ok_or_else(|| LinuxError::MissingModule {
                    module: name.to_owned(),
                    needed_by: "the initramfs".to_owned(),
                    dir: modules_dir.clone(),
                })?;
            let deps = module_depends(path)?;
            depends_of.insert(name.to_owned(), deps.clone());
            Ok(deps)
        },
    )?;

    let name = format!(
        "initramfs-{}-busybox-{}-{}.cpio",
        kernel_pkg.entry.version,
        busybox_pkg.entry.version.replace(':', "_"),
        fingerprint(&init_script(&order))
    );
    let initramfs = cache.join(name);
    let built = !initramfs.is_file();
    if built {
        say(&format!(
            "building {} ({} modules: {})",
            initramfs.display(),
            order.len(),
            order.join(" ")
        ));
        let busybox = busybox_pkg.unpacked.join("bin/busybox");
        let mut files = vec![(
            "bin/busybox".to_owned(),
            std::fs::read(&busybox).map_err(io_error(&busybox))?,
        )];
        for m in &order {
            let path = &index[&normalise(m)];
            files.push((
                format!("lib/modules/{}.ko", normalise(m)),
                std::fs::read(path).map_err(io_error(path))?,
            ));
        }
        let archive = initramfs_archive(&files, &[], &order);
        let partial = initramfs.with_extension("cpio.part");
        std::fs::write(&partial, archive).map_err(io_error(&partial))?;
        std::fs::rename(&partial, &initramfs).map_err(io_error(&initramfs))?;
    } else {
        say(&format!("using the cached {}", initramfs.display()));
    }

    let extras = crate::build::programs::gather(cache, say)?;
    // Named for what goes in: the packages' versions, the programs and the files taken.
    let disk_tools = cache.join(format!(
        "disk-tools-{}.cpio",
        fingerprint(&format!(
            "{}\n{:?}\n{:?}",
            extras.packages.join("\n"),
            crate::build::programs::PROGRAMS,
            crate::build::programs::CONFIG
        ))
    ));
    if disk_tools.is_file() {
        say(&format!("using the cached {}", disk_tools.display()));
    } else {
        say(&format!(
            "building {} ({})",
            disk_tools.display(),
            extras.packages.join(", ")
        ));
        let archive = extra_archive(&extras.files, &extras.links);
        let partial = disk_tools.with_extension("cpio.part");
        std::fs::write(&partial, archive).map_err(io_error(&partial))?;
        std::fs::rename(&partial, &disk_tools).map_err(io_error(&disk_tools))?;
    }

    let current = cache.join(CURRENT);
    let marker = format!(
        "{}\n{}\n{}\n",
        kernel.display(),
        initramfs.display(),
        disk_tools.display()
    );
    if std::fs::read_to_string(&current).ok().as_deref() != Some(marker.as_str()) {
        std::fs::write(&current, marker).map_err(io_error(&current))?;
    }
    Ok(LinuxFiles {
        kernel_package: format!("{kernel_name} {}", kernel_pkg.entry.version),
        release,
        kernel: kernel.clone(),
        header,
        initramfs,
        disk_tools,
        modules: order,
        built,
    })
}

/// The file in the cache naming the kernel, the initramfs and the disk tools the last
/// [`fetch`] settled on (one path per line), so `mica check` and `mica build` find them
/// without asking apt.
pub const CURRENT: &str = "current";

/// What the last [`fetch`] into a cache settled on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cached {
    /// The arm64 Image.
    pub kernel: PathBuf,
    /// The initramfs.
    pub initramfs: PathBuf,
    /// The disk tools' archive ([`LinuxFiles::disk_tools`]).
    pub disk_tools: PathBuf,
}

/// The files the last [`fetch`] into `cache` settled on, if they are all still there.
pub fn cached(cache: &Path) -> Option<Cached> {
    let text = std::fs::read_to_string(cache.join(CURRENT)).ok()?;
    let mut lines = text.lines().map(PathBuf::from);
    let files = Cached {
        kernel: lines.next()?,
        initramfs: lines.next()?,
        disk_tools: lines.next()?,
    };
    [&files.kernel, &files.initramfs, &files.disk_tools]
        .iter()
        .all(|f| f.is_file())
        .then_some(files)
}

/// Module names treat `-` and `_` alike (the kernel does): this is the `_` form.
pub fn normalise(name: &str) -> String {
    name.replace('-', "_")
}

/// Every `*.ko` under `dir`, by normalised module name.
fn index_modules(dir: &Path) -> Result<BTreeMap<String, PathBuf>, LinuxError> {
    let mut found = BTreeMap::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).map_err(io_error(&d))? {
            let path = entry.map_err(io_error(&d))?.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Some(stem) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".ko"))
            {
                found.insert(normalise(stem), path);
            }
        }
    }
    Ok(found)
}

/// The `depends=` list of a module file's `.modinfo` section.
fn module_depends(path: &Path) -> Result<Vec<String>, LinuxError> {
    use object::{Object, ObjectSection};
    let bytes = std::fs::read(path).map_err(io_error(path))?;
    let bad = |why: String| LinuxError::BadModule {
        path: path.to_owned(),
        why,
    };
    let file = object::File::parse(&*bytes).map_err(|e| bad(e.to_string()))?;
    let section = file
        .section_by_name(".modinfo")
        .ok_or_else(|| bad("no .modinfo".to_owned()))?;
    let data = section.data().map_err(|e| bad(e.to_string()))?;
    Ok(modinfo_depends(data))
}

/// The modules named by the `depends=` entry of a `.modinfo` section (NUL-separated
/// `key=value` strings); none when there is no such entry or it is empty.
pub fn modinfo_depends(modinfo: &[u8]) -> Vec<String> {
    modinfo
        .split(|b| *b == 0)
        .filter_map(|entry| entry.strip_prefix(b"depends="))
        .flat_map(|list| {
            String::from_utf8_lossy(list)
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(normalise)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `wanted` and everything they depend on, each after all of its dependencies (a depth-first
/// post-order; `depends` gives a module's direct dependencies). A circle is an error.
pub fn module_order(
    wanted: &[&str],
    depends: &mut dyn FnMut(&str) -> Result<Vec<String>, LinuxError>,
) -> Result<Vec<String>, LinuxError> {
    fn visit(
        name: &str,
        depends: &mut dyn FnMut(&str) -> Result<Vec<String>, LinuxError>,
        done: &mut BTreeSet<String>,
        on_path: &mut Vec<String>,
        order: &mut Vec<String>,
    ) -> Result<(), LinuxError> {
        let name = normalise(name);
        if done.contains(&name) {
            return Ok(());
        }
        if on_path.contains(&name) {
            return Err(LinuxError::DependencyCycle(name));
        }
        on_path.push(name.clone());
        for dep in depends(&name)? {
            visit(&dep, depends, done, on_path, order)?;
        }
        on_path.pop();
        done.insert(name.clone());
        order.push(name);
        Ok(())
    }
    let mut done = BTreeSet::new();
    let mut order = Vec::new();
    for name in wanted {
        visit(name, depends, &mut done, &mut Vec::new(), &mut order)?;
    }
    Ok(order)
}

/// The `/init` script: mounts, the line the benchmarks time to, the modules in `order`, then
/// a shell on the console (with job control, through busybox's `cttyhack`).
pub fn init_script(order: &[String]) -> String {
    let mut s = String::from(
        "#!/bin/busybox sh\n\
         /bin/busybox mkdir -p /proc /sys /dev /tmp\n\
         /bin/busybox mount -t proc proc /proc\n\
         /bin/busybox mount -t sysfs sysfs /sys\n\
         /bin/busybox mount -t devtmpfs devtmpfs /dev\n\
         /bin/busybox --install -s /bin\n\
         export PATH=/sbin:/usr/sbin:/bin:/usr/bin\n",
    );
    s.push_str(&format!("echo {INIT_LINE}\n"));
    for m in order {
        s.push_str(&format!(
            "insmod /lib/modules/{m}.ko || echo \"mica-linux: insmod {m} failed\"\n"
        ));
    }
    s.push_str(&format!("echo {READY_LINE}\n"));
    // PID 1 stays this script: busybox's poweroff, reboot and halt ask init with SIGUSR2,
    // SIGTERM and SIGUSR1, which it turns into the system call (PSCI SYSTEM_OFF or
    // SYSTEM_RESET to the hypervisor). The shell runs in the background (cttyhack gives it
    // the console) so `wait` can be interrupted by them, and comes back if it exits.
    s.push_str(
        "trap '/bin/busybox poweroff -f' USR2\n\
         trap '/bin/busybox reboot -f' TERM\n\
         trap '/bin/busybox halt -f' USR1\n",
    );
    // The domain's `script` (docs/manifest.md), if its initramfs has one: beside the shell,
    // so that both come up at once and power-off still reaches init.
    let script = crate::manifest::SCRIPT_PATH;
    s.push_str(&format!("if [ -f /{script} ]; then sh /{script} & fi\n"));
    s.push_str(
        "while :; do setsid cttyhack sh; done &\n\
         while :; do wait; done\n",
    );
    s
}

/// A short, stable fingerprint of what goes into an initramfs besides the packages (the
/// `/init` script and the module order), part of its cache name so a changed script is
/// rebuilt: 64-bit FNV-1a (a few lines; no hash crate is needed for a cache key).
pub fn fingerprint(text: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:08x}", hash >> 32)
}

/// The initramfs: directories, `/dev/console`, `/init`, `files` (path, contents; programs
/// in `bin/` and `sbin/` and shared objects executable) and symbolic `links` (path, target),
/// each after the directories it is in.
pub fn initramfs_archive(
    files: &[(String, Vec<u8>)],
    links: &[(String, String)],
    order: &[String],
) -> Vec<u8> {
    let mut cpio = Newc::default();
    let base = ["bin", "dev", "lib", "lib/modules", "proc", "sys", "tmp"];
    cpio.directories(base.into_iter().map(str::to_owned), files, links);
    // The console device (major 5, minor 1), as the kernel's own default initramfs has it.
    cpio.char_device("dev/console", 0o600, 5, 1);
    cpio.file("init", 0o755, init_script(order).as_bytes());
    cpio.contents(files, links);
    cpio.finish()
}

/// An archive of `files` and `links` alone (with their directories), to be appended to an
/// initramfs.
pub fn extra_archive(files: &[(String, Vec<u8>)], links: &[(String, String)]) -> Vec<u8> {
    let mut cpio = Newc::default();
    cpio.directories(std::iter::empty(), files, links);
    cpio.contents(files, links);
    cpio.finish()
}

impl Newc {
    /// The directories `named`, and every directory `files` and `links` are in, each after its
    /// parent.
    fn directories(
        &mut self,
        named: impl Iterator<Item = String>,
        files: &[(String, Vec<u8>)],
        links: &[(String, String)],
    ) {
        let mut dirs: BTreeSet<String> = named.collect();
        for path in files.iter().map(|f| &f.0).chain(links.iter().map(|l| &l.0)) {
            let mut at = path.as_str();
            while let Some((parent, _)) = at.rsplit_once('/') {
                dirs.insert(parent.to_owned());
                at = parent;
            }
        }
        // A BTreeSet's order puts every directory after its parent.
        for dir in &dirs {
            self.directory(dir);
        }
    }

    /// `files` (programs in `bin/` and `sbin/` and shared objects executable) and `links`.
    fn contents(&mut self, files: &[(String, Vec<u8>)], links: &[(String, String)]) {
        for (path, contents) in files {
            let executable = path.starts_with("bin/")
                || path.starts_with("sbin/")
                || path.rsplit('/').next().is_some_and(|n| n.contains(".so"));
            self.file(path, if executable { 0o755 } else { 0o644 }, contents);
        }
        for (path, target) in links {
            self.symlink(path, target);
        }
    }
}

/// A writer of the `newc` cpio format the kernel unpacks into its initramfs
/// (Documentation/driver-api/early-userspace/buffer-format.rst): per entry a 110-byte ASCII
/// header of thirteen 8-digit hex fields, the NUL-terminated name, the data, each padded to 4
/// bytes; a `TRAILER!!!` entry ends it. Written here rather than taken from a crate because
/// it is this small and the archive must be reproducible (every time stamp 0, inode numbers
/// in order) and hold a device node, which is all there is to it.
#[derive(Default)]
pub struct Newc {
    out: Vec<u8>,
    inode: u32,
}

impl Newc {
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.inode += 1;
        let name_size = name.len() + 1;
        let fields: [u32; 13] = [
            self.inode,
            mode,
            0,                 // uid
            0,                 // gid
            1,                 // nlink
            0,                 // mtime
            data.len() as u32, // filesize
            0,                 // devmajor
            0,                 // devminor
            rdev.0,            // rdevmajor
            rdev.1,            // rdevminor
            name_size as u32,  // namesize
            0,                 // check
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    /// A directory (mode 0755).
    pub fn directory(&mut self, path: &str) {
        self.entry(path, 0o040_755, (0, 0), &[]);
    }

    /// A regular file with permission bits `perm`.
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) {
        self.entry(path, 0o100_000 | (perm & 0o7777), (0, 0), data);
    }

    /// A symbolic link to `target`.
    pub fn symlink(&mut self, path: &str, target: &str) {
        self.entry(path, 0o120_777, (0, 0), target.as_bytes());
    }

    /// A character device node.
    pub fn char_device(&mut self, path: &str, perm: u32, major: u32, minor: u32) {
        self.entry(path, 0o020_000 | (perm & 0o7777), (major, minor), &[]);
    }

    /// The archive, with its trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.inode = 0;
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One entry read back: name, mode, (rdevmajor, rdevminor), data.
    type Entry = (String, u32, (u32, u32), Vec<u8>);

    /// Reads a newc archive back, trailer excluded.
    fn read_newc(mut b: &[u8]) -> Vec<Entry> {
        let mut out = Vec::new();
        let hex = |s: &[u8]| u32::from_str_radix(std::str::from_utf8(s).unwrap(), 16).unwrap();
        let total = b.len();
        loop {
            assert_eq!(&b[..6], b"070701");
            let field = |i: usize| hex(&b[6 + i * 8..6 + (i + 1) * 8]);
            let (mode, size, rdev, namesize) =
                (field(1), field(6), (field(9), field(10)), field(11));
            let name = std::str::from_utf8(&b[110..110 + namesize as usize - 1])
                .unwrap()
                .to_owned();
            let at = |n: usize| (n + 3) & !3;
            let data_start = at(total - b.len() + 110 + namesize as usize) - (total - b.len());
            let data = b[data_start..data_start + size as usize].to_vec();
            let next = at(total - b.len() + data_start + size as usize) - (total - b.len());
            if name == "TRAILER!!!" {
                assert_eq!(next, b.len(), "nothing after the trailer");
                return out;
            }
            out.push((name, mode, rdev, data));
            b = &b[next..];
        }
    }

    #[test]
    fn the_archive_reads_back_with_every_entry_aligned() {
        let files = vec![
            ("bin/busybox".to_owned(), vec![1u8; 5]),
            ("lib/modules/virtio_mmio.ko".to_owned(), vec![2u8; 8]),
            ("sbin/mke2fs".to_owned(), vec![3u8; 4]),
            ("lib/aarch64-linux-gnu/libc.so.6".to_owned(), vec![4u8; 4]),
            ("etc/mke2fs.conf".to_owned(), vec![5u8; 2]),
        ];
        let links = vec![("sbin/mkfs.ext4".to_owned(), "mke2fs".to_owned())];
        let order = vec!["virtio_mmio".to_owned()];
        let archive = initramfs_archive(&files, &links, &order);
        assert!(archive.len().is_multiple_of(4));
        let entries = read_newc(&archive);
        let find = |n: &str| entries.iter().find(|e| e.0 == n).unwrap().clone();
        assert_eq!(find("dev").1, 0o040_755);
        assert_eq!(find("dev/console").1, 0o020_600);
        assert_eq!(find("dev/console").2, (5, 1));
        assert_eq!(find("bin/busybox").1, 0o100_755);
        assert_eq!(find("bin/busybox").3, vec![1u8; 5]);
        assert_eq!(find("lib/modules/virtio_mmio.ko").1, 0o100_644);
        assert_eq!(find("sbin/mke2fs").1, 0o100_755);
        assert_eq!(find("lib/aarch64-linux-gnu/libc.so.6").1, 0o100_755);
        assert_eq!(find("etc/mke2fs.conf").1, 0o100_644);
        assert_eq!(find("sbin/mkfs.ext4").1, 0o120_777);
        assert_eq!(find("sbin/mkfs.ext4").3, b"mke2fs");
        // Every entry's directory comes before it.
        for (i, entry) in entries.iter().enumerate() {
            if let Some((parent, _)) = entry.0.rsplit_once('/') {
                let at = entries.iter().position(|e| e.0 == parent);
                assert!(at.is_some_and(|at| at < i), "{} before {parent}", entry.0);
                assert_eq!(entries[at.unwrap()].1, 0o040_755);
            }
        }
        let init = String::from_utf8(find("init").3).unwrap();
        assert!(init.starts_with("#!/bin/busybox sh\n"));
        assert!(init.contains(INIT_LINE) && init.contains(READY_LINE));
        assert!(init.contains("insmod /lib/modules/virtio_mmio.ko"));
        // A domain's `script` runs after the modules, before the shell.
        let run = format!("sh /{}", crate::manifest::SCRIPT_PATH);
        let (ready, script, shell) = (
            init.find(READY_LINE).unwrap(),
            init.find(&run).unwrap(),
            init.find("cttyhack sh").unwrap(),
        );
        assert!(ready < script && script < shell, "{init}");
        // Reproducible: the same inputs give the same bytes.
        assert_eq!(archive, initramfs_archive(&files, &links, &order));
    }

    #[test]
    fn the_archive_is_what_cpio_lists_when_cpio_is_installed() {
        let archive = initramfs_archive(&[("bin/busybox".to_owned(), vec![7u8; 3])], &[], &[]);
        let Ok(mut child) = std::process::Command::new("cpio")
            .args(["-t", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
        else {
            return; // cpio is not installed: read_newc above is the check
        };
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&archive).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let listed = String::from_utf8(out.stdout).unwrap();
        for name in ["bin", "dev/console", "init", "bin/busybox"] {
            assert!(listed.lines().any(|l| l == name), "{name} in {listed}");
        }
    }

    #[test]
    fn modinfo_depends_are_read_and_normalised() {
        let info = b"license=GPL\0depends=virtio,virtio_ring,crc-16\0intree=Y\0";
        assert_eq!(modinfo_depends(info), ["virtio", "virtio_ring", "crc_16"]);
        assert!(modinfo_depends(b"depends=\0name=virtio\0").is_empty());
        assert!(modinfo_depends(b"").is_empty());
    }

    #[test]
    fn modules_come_after_what_they_depend_on_and_once() {
        let graph: BTreeMap<&str, Vec<&str>> = [
            ("ext4", vec!["jbd2", "mbcache", "crc16"]),
            ("jbd2", vec![]),
            ("mbcache", vec![]),
            ("crc16", vec![]),
            ("virtio_blk", vec!["virtio_ring"]),
            ("virtio_ring", vec![]),
        ]
        .into_iter()
        .collect();
        let mut deps = |n: &str| -> Result<Vec<String>, LinuxError> {
            Ok(graph[n].iter().map(|s| s.to_string()).collect())
        };
        let order = module_order(&["virtio_blk", "ext4", "virtio-blk"], &mut deps).unwrap();
        assert_eq!(
            order,
            [
                "virtio_ring",
                "virtio_blk",
                "jbd2",
                "mbcache",
                "crc16",
                "ext4"
            ]
        );
        let mut circle = |n: &str| -> Result<Vec<String>, LinuxError> {
            Ok(vec![if n == "a" { "b" } else { "a" }.to_owned()])
        };
        assert!(matches!(
            module_order(&["a"], &mut circle),
            Err(LinuxError::DependencyCycle(_))
        ));
    }

    #[test]
    fn the_kernel_package_is_the_first_dependency() {
        assert_eq!(
            kernel_package_of("linux-image-6.1.0-57-arm64 (= 6.1.192-3)").as_deref(),
            Some("linux-image-6.1.0-57-arm64")
        );
        assert_eq!(
            kernel_package_of("linux-image-6.1.0-57-arm64:arm64 | linux-image-x, foo").as_deref(),
            Some("linux-image-6.1.0-57-arm64")
        );
        assert_eq!(kernel_package_of("libc6"), None);
        assert_eq!(kernel_package_of(""), None);
    }
}
