//! The one place that knows how to boot a Mica image under QEMU.
//!
//! `mica run`, the smoke harness and later commands all build their QEMU command line here,
//! so the machine flags (EL2 on, GICv3, a CPU without VHE: see the notes on aarch64 EL2 under
//! QEMU) cannot drift between what a developer runs and what the tests check. Edited device
//! trees are produced here too: QEMU dumps the DTB it would give the guest, [`crate::dtb`]
//! rewrites it, and the boot loads the Image, the rewritten DTB and a boot shim with QEMU's
//! generic loader instead of `-kernel`/`-dtb` (QEMU would rewrite the memory nodes of a
//! `-dtb`; see [`crate::bootloader`]).

use crate::bootloader::{self, LayoutError};
use crate::dtb::{self, DtbEdits};
use crate::manifest::Machine;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The QEMU binary for aarch64 systems.
pub const QEMU: &str = "qemu-system-aarch64";
/// The machine: `virt` with EL2 (no EL3) and a GICv3.
pub const MACHINE: &str = "virt,virtualization=on,gic-version=3";
/// The CPU: no VHE, 8-bit VMIDs (the notes explain why this is the baseline).
pub const CPU: &str = "cortex-a72";
/// How to get QEMU on Debian.
pub const QEMU_INSTALL_HINT: &str = "apt-get install -y --no-install-recommends qemu-system-arm";
/// How long QEMU gets to dump its DTB when no other limit applies.
pub const DUMP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long QEMU gets to exit after SIGTERM before it is killed.
pub const TERM_GRACE: Duration = Duration::from_secs(2);

/// Why QEMU could not be prepared or run.
#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    /// QEMU is not installed.
    #[error("{QEMU} not found on PATH; on Debian install it with: {QEMU_INSTALL_HINT}")]
    NotInstalled,
    /// The image to boot does not exist.
    #[error("image {0} does not exist (build it first, e.g. `make`)")]
    NoImage(PathBuf),
    /// The file to boot is not something QEMU can boot.
    #[error("{0} is not a bootable image: no arm64 Image header (`ARM\\x64` at offset 56) and not an ELF file; give the hypervisor image (build/aarch64/mica.img), one `mica build` wrote, or a system manifest (images/NAME.toml)")]
    NotAnImage(PathBuf),
    /// QEMU could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Waiting for or signalling QEMU failed.
    #[error("lost track of QEMU: {0}")]
    Wait(std::io::Error),
    /// A temporary file could not be made or used.
    #[error("temporary file for the boot: {0}")]
    TempFile(std::io::Error),
    /// QEMU failed to dump its device tree.
    #[error("QEMU did not dump its DTB ({status}): {stderr}")]
    DumpFailed {
        /// How QEMU ended.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// QEMU took too long to dump its device tree.
    #[error("QEMU did not dump its DTB within {0} s")]
    DumpTimedOut(u64),
    /// The DTB could not be read.
    #[error("{path}: {source}")]
    ReadDtb {
        /// The DTB file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The DTB could not be rewritten.
    #[error("editing the DTB: {0}")]
    Dtb(#[from] dtb::DtbError),
    /// The image could not be read to load it ourselves.
    #[error("{path}: {source}")]
    ReadImage {
        /// The image file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The Image, DTB or RAM size do not suit booting as the boot loader.
    #[error("{0}")]
    Layout(#[from] LayoutError),
}

/// `-smp` when neither a manifest nor an override says.
pub const DEFAULT_SMP: u32 = 2;
/// `-m` when neither a manifest nor an override says.
pub const DEFAULT_MEMORY: &str = "512M";

/// Machine settings given explicitly (`mica run` flags, a smoke scenario's `[qemu]`);
/// `None` leaves the value to the manifest or the default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MachineOverrides {
    /// `-smp`.
    pub smp: Option<u32>,
    /// `-m`, as QEMU spells it.
    pub memory: Option<String>,
    /// `-append`; replaces the manifest's `boot_args` entirely.
    pub append: Option<String>,
}

/// Everything that decides how the machine looks to the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MachineConfig {
    /// The arm64 Image (or ELF) given to `-kernel`.
    pub image: PathBuf,
    /// `-smp`.
    pub smp: u32,
    /// `-m`, as QEMU spells it.
    pub memory: String,
    /// `-append`, if any.
    pub append: Option<String>,
    /// A DTB file to use instead of QEMU's own (`-dtb`).
    pub dtb: Option<PathBuf>,
    /// Edits to apply to the DTB the guest gets.
    pub dtb_edits: DtbEdits,
    /// Further arguments, verbatim, after all of ours.
    pub extra_args: Vec<String>,
}

impl MachineConfig {
    /// The machine that boots `image`, with no DTB changes or extra arguments. Each of CPUs,
    /// memory and boot arguments comes from the first that gives it: `overrides`, the
    /// manifest's `[machine]` (`system`, when the image was built from a manifest), the
    /// defaults ([`DEFAULT_SMP`], [`DEFAULT_MEMORY`], no boot arguments).
    pub fn new(image: PathBuf, system: Option<&Machine>, overrides: &MachineOverrides) -> Self {
        MachineConfig {
            image,
            smp: overrides
                .smp
                .or(system.map(|m| m.cpus))
                .unwrap_or(DEFAULT_SMP),
            memory: overrides
                .memory
                .clone()
                .or(system.map(|m| format!("{}M", m.memory_mib)))
                .unwrap_or_else(|| DEFAULT_MEMORY.to_owned()),
            append: overrides
                .append
                .clone()
                .or(system.and_then(|m| m.boot_args.clone())),
            dtb: None,
            dtb_edits: DtbEdits::default(),
            extra_args: Vec::new(),
        }
    }

    /// Whether the boot needs a DTB that QEMU must not touch, so that `mica` loads the Image,
    /// the DTB and a boot shim itself ([`MachineConfig::loader_args`]) instead of `-kernel`.
    pub fn boots_as_loader(&self) -> bool {
        !self.dtb_edits.is_empty() || self.dtb.is_some()
    }

    /// `-M`, `-cpu`, `-smp`, `-m`, `-nographic`: the machine, with `dumpdtb=` added to `-M`
    /// if `dumpdtb` is given.
    fn machine_args(&self, dumpdtb: Option<&Path>) -> Vec<OsString> {
        let mut machine = OsString::from(MACHINE);
        if let Some(path) = dumpdtb {
            machine.push(",dumpdtb=");
            machine.push(path);
        }
        vec![
            "-M".into(),
            machine,
            "-cpu".into(),
            CPU.into(),
            "-smp".into(),
            self.smp.to_string().into(),
            "-m".into(),
            self.memory.clone().into(),
            "-nographic".into(),
        ]
    }

    /// The QEMU arguments (without the program) for a `-kernel` boot, with `dtb` as `-dtb`
    /// and, if `dumpdtb` is given, `dumpdtb=` added to `-M` so QEMU writes its DTB there and
    /// exits.
    pub fn args(&self, dtb: Option<&Path>, dumpdtb: Option<&Path>) -> Vec<OsString> {
        let mut args = self.machine_args(dumpdtb);
        args.push("-kernel".into());
        args.push(self.image.clone().into());
        if let Some(append) = &self.append {
            args.push("-append".into());
            args.push(append.into());
        }
        if let Some(dtb) = dtb {
            args.push("-dtb".into());
            args.push(dtb.into());
        }
        args.extend(self.extra_args.iter().map(OsString::from));
        args
    }

    /// The QEMU arguments (without the program) for a boot in which `mica` is the boot
    /// loader: no `-kernel`, `-append` or `-dtb`; the generic loader puts the files of
    /// `files` in RAM raw and starts CPU 0 in the shim.
    pub fn loader_args(&self, files: &LoaderFiles) -> Vec<OsString> {
        let mut args = self.machine_args(None);
        for (file, addr) in [
            (&files.image, files.image_addr.clone()),
            (&files.dtb, format!("{:#x}", bootloader::DTB_ADDR)),
            (&files.shim, format!("{:#x}", bootloader::SHIM_ADDR)),
        ] {
            let mut device = OsString::from("loader,file=");
            device.push(escape_commas(file.as_os_str()));
            device.push(format!(",addr={addr},force-raw=on"));
            args.push("-device".into());
            args.push(device);
        }
        args.push("-device".into());
        args.push(format!("loader,addr={:#x},cpu-num=0", bootloader::SHIM_ADDR).into());
        args.extend(self.extra_args.iter().map(OsString::from));
        args
    }
}

/// What the generic loader puts in RAM when `mica` is the boot loader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoaderFiles {
    /// The arm64 Image, loaded raw.
    pub image: PathBuf,
    /// Where it goes (RAM base + `text_offset`), as written on the command line.
    pub image_addr: String,
    /// The DTB, loaded raw at [`bootloader::DTB_ADDR`].
    pub dtb: PathBuf,
    /// The boot shim, loaded raw at [`bootloader::SHIM_ADDR`].
    pub shim: PathBuf,
}

/// QEMU option values end at a comma unless it is doubled.
fn escape_commas(value: &OsStr) -> OsString {
    let s = value.to_string_lossy();
    if s.contains(',') {
        s.replace(',', ",,").into()
    } else {
        value.to_owned()
    }
}

/// A QEMU command ready to start; owns the temporary files (edited DTB, boot shim), if
/// any, until dropped.
#[derive(Debug)]
pub struct Launch {
    /// The QEMU binary.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    _files: Option<tempfile::TempDir>,
}

impl Launch {
    /// A launch of `program` with `args` that owns no temporary files (for a command line
    /// made elsewhere, such as `mica bench-xen`'s Xen boot).
    pub fn new(program: PathBuf, args: Vec<OsString>) -> Launch {
        Launch {
            program,
            args,
            _files: None,
        }
    }

    /// A `Command` for this launch (stdio left to the caller).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        cmd
    }

    /// The command line, quoted for a POSIX shell.
    pub fn command_line(&self) -> String {
        shell_line(self.program.as_os_str(), &self.args)
    }
}

/// Quotes one word for a POSIX shell when it needs it.
pub fn shell_quote(word: &OsStr) -> String {
    let s = word.to_string_lossy();
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./,=:+@%".contains(c));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A whole command line, quoted for a POSIX shell.
pub fn shell_line(program: &OsStr, args: &[OsString]) -> String {
    std::iter::once(program)
        .chain(args.iter().map(OsString::as_os_str))
        .map(shell_quote)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Finds `qemu-system-aarch64` on `PATH`.
pub fn find_qemu() -> Result<PathBuf, QemuError> {
    let path = std::env::var_os("PATH").ok_or(QemuError::NotInstalled)?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(QEMU))
        .find(|candidate| candidate.is_file())
        .ok_or(QemuError::NotInstalled)
}

/// What `--dry-run` shows: the commands that would run, in order. Fails only for what
/// would make the real run fail before QEMU starts whatever the files hold (too little RAM
/// for the boot-loader layout, an Image that does not fit it).
pub fn dry_run_lines(config: &MachineConfig) -> Result<Vec<String>, QemuError> {
    let program = OsStr::new(QEMU);
    if !config.boots_as_loader() {
        return Ok(vec![shell_line(program, &config.args(None, None))]);
    }
    bootloader::check_memory(&config.memory)?;
    let dumped = Path::new("<tmp>/qemu.dtb");
    // The Image's address comes from its header; show a placeholder if it cannot be read.
    let (image_addr, entry) = match read_image_header(&config.image) {
        Ok((header, len)) => {
            let addr = bootloader::image_address(&header, len)?;
            (format!("{addr:#x}"), format!("{addr:#x}"))
        }
        Err(_) => (
            format!("<{:#x}+text_offset>", bootloader::RAM_BASE),
            "RAM base + the Image's text_offset".to_owned(),
        ),
    };
    let files = LoaderFiles {
        image: config.image.clone(),
        image_addr,
        dtb: PathBuf::from("<tmp>/edited.dtb"),
        shim: PathBuf::from("<tmp>/shim.bin"),
    };
    let rewrite = if config.dtb_edits.is_empty() {
        "use it as it is".to_owned()
    } else {
        format!("rewrite it: {}", describe_edits(&config.dtb_edits))
    };
    Ok(vec![
        "# 1. dump the DTB QEMU would give the guest".to_owned(),
        shell_line(program, &config.args(config.dtb.as_deref(), Some(dumped))),
        format!("# 2. {rewrite} -> <tmp>/edited.dtb"),
        format!(
            "# 3. write the boot shim <tmp>/shim.bin: x0 = {:#x} (the DTB), x1 = x2 = x3 = 0, branch to {entry}",
            bootloader::DTB_ADDR
        ),
        "# 4. boot as the boot loader (no -kernel/-append/-dtb): Image, DTB and shim loaded raw, CPU 0 starts in the shim at EL2"
            .to_owned(),
        shell_line(program, &config.loader_args(&files)),
    ])
}

/// Whether the file at `path` starts like something `-kernel` boots: an arm64 Image (its
/// magic at offset 56) or an ELF file.
pub fn is_bootable(path: &Path) -> bool {
    let mut head = Vec::with_capacity(crate::image::HEADER_LEN);
    let read = std::fs::File::open(path).and_then(|file| {
        std::io::Read::read_to_end(
            &mut std::io::Read::take(file, crate::image::HEADER_LEN as u64),
            &mut head,
        )
    });
    read.is_ok()
        && (head.starts_with(b"\x7fELF") || head.get(56..60) == Some(b"ARM\x64".as_slice()))
}

/// Reads the start of the file at `path`; returns its arm64 Image header and the file length.
fn read_image_header(path: &Path) -> Result<(crate::image::ImageHeader, u64), QemuError> {
    let read_error = |source| QemuError::ReadImage {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let len = file.metadata().map_err(read_error)?.len();
    let mut head = Vec::with_capacity(crate::image::HEADER_LEN);
    std::io::Read::read_to_end(
        &mut std::io::Read::take(file, crate::image::HEADER_LEN as u64),
        &mut head,
    )
    .map_err(read_error)?;
    // Only the header is read, so check_image_header compares image_size with the header
    // length; bootloader::image_address takes the larger of image_size and the file length.
    let header = crate::image::check_image_header(&head).map_err(LayoutError::from)?;
    Ok((header, len))
}

/// The DTB edits in words.
pub fn describe_edits(edits: &DtbEdits) -> String {
    let mut parts = Vec::new();
    if !edits.remove_nodes.is_empty() {
        parts.push(format!("remove nodes {}", edits.remove_nodes.join(", ")));
    }
    if edits.reserve_all_memory {
        parts.push("reserve all RAM (/reserved-memory no-map + /memreserve/)".to_owned());
    }
    parts.join("; ")
}

/// Checks the image exists and QEMU is installed, makes the edited DTB if one is needed
/// (running QEMU once with `dumpdtb`, allowed until `deadline`), and returns the command.
pub fn prepare(config: &MachineConfig, deadline: Option<Instant>) -> Result<Launch, QemuError> {
    if !config.image.is_file() {
        return Err(QemuError::NoImage(config.image.clone()));
    }
    // Anything else would boot nothing and print nothing until Ctrl-A X.
    if !is_bootable(&config.image) {
        return Err(QemuError::NotAnImage(config.image.clone()));
    }
    let program = find_qemu()?;
    if !config.boots_as_loader() {
        return Ok(Launch {
            args: config.args(None, None),
            program,
            _files: None,
        });
    }
    // Everything that can be checked without QEMU first, so that mistakes fail fast.
    let memory = bootloader::check_memory(&config.memory)?;
    let (header, image_len) = read_image_header(&config.image)?;
    let image_addr = bootloader::image_address(&header, image_len)?;

    let dir = tempfile::Builder::new()
        .prefix("mica-boot-")
        .tempdir()
        .map_err(QemuError::TempFile)?;
    let dumped = dir.path().join("qemu.dtb");
    dump_dtb(&program, config, &dumped, deadline)?;
    let original = std::fs::read(&dumped).map_err(|source| QemuError::ReadDtb {
        path: dumped.clone(),
        source,
    })?;
    let edited = if config.dtb_edits.is_empty() {
        original
    } else {
        dtb::rewrite(&original, &config.dtb_edits)?
    };
    bootloader::check_dtb_fits(edited.len(), memory)?;
    let files = LoaderFiles {
        image: config.image.clone(),
        image_addr: format!("{image_addr:#x}"),
        dtb: dir.path().join("edited.dtb"),
        shim: dir.path().join("shim.bin"),
    };
    std::fs::write(&files.dtb, &edited).map_err(QemuError::TempFile)?;
    let shim = bootloader::boot_shim(bootloader::DTB_ADDR, image_addr);
    std::fs::write(&files.shim, shim).map_err(QemuError::TempFile)?;
    Ok(Launch {
        args: config.loader_args(&files),
        program,
        _files: Some(dir),
    })
}

/// Runs QEMU with `dumpdtb=` so it writes the DTB it would give the guest to `out` (within
/// [`DUMP_TIMEOUT`], and before `deadline` if given).
pub fn dump_dtb(
    program: &Path,
    config: &MachineConfig,
    out: &Path,
    deadline: Option<Instant>,
) -> Result<(), QemuError> {
    let mut child = Command::new(program)
        .args(config.args(config.dtb.as_deref(), Some(out)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| QemuError::Spawn {
            program: program.to_owned(),
            source,
        })?;
    let limit = deadline
        .map(|d| d.saturating_duration_since(Instant::now()))
        .unwrap_or(DUMP_TIMEOUT)
        .min(DUMP_TIMEOUT);
    let status = match wait_timeout(&mut child, limit)? {
        Some(status) => status,
        None => {
            stop(&mut child)?;
            return Err(QemuError::DumpTimedOut(limit.as_secs()));
        }
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        // QEMU has exited, so this read ends; a failure only loses the message.
        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
    }
    let dumped = std::fs::metadata(out).map(|m| m.len() > 0).unwrap_or(false);
    if !status.success() || !dumped {
        return Err(QemuError::DumpFailed {
            status: describe_status(status),
            stderr: stderr.trim().to_owned(),
        });
    }
    Ok(())
}

/// Waits up to `limit` for `child` to exit; `None` if it is still running.
pub fn wait_timeout(child: &mut Child, limit: Duration) -> Result<Option<ExitStatus>, QemuError> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().map_err(QemuError::Wait)? {
            return Ok(Some(status));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(20)));
    }
}

/// Stops `child` and reaps it: SIGTERM first, so QEMU restores the terminal it put in raw
/// mode, then SIGKILL if it has not exited after [`TERM_GRACE`].
pub fn stop(child: &mut Child) -> Result<ExitStatus, QemuError> {
    if let Some(status) = child.try_wait().map_err(QemuError::Wait)? {
        return Ok(status);
    }
    // std only sends SIGKILL; `kill(1)` sends SIGTERM to exactly the process we started.
    let termed = Command::new("kill")
        .args(["-s", "TERM", &child.id().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if termed {
        if let Some(status) = wait_timeout(child, TERM_GRACE)? {
            return Ok(status);
        }
    }
    // It may have exited in between; kill then fails harmlessly and wait reaps it.
    let _ = child.kill();
    child.wait().map_err(QemuError::Wait)
}

/// An exit status in words ("status 1", "signal 9").
pub fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("status {code}"),
        (None, Some(sig)) => format!("signal {sig}"),
        (None, None) => "unknown status".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> MachineConfig {
        MachineConfig {
            image: PathBuf::from("build/aarch64/mica.img"),
            smp: 4,
            memory: "1G".to_owned(),
            append: Some("mica.poweroff_after_ms=500 x=1".to_owned()),
            dtb: None,
            dtb_edits: DtbEdits::default(),
            extra_args: vec!["-d".to_owned(), "guest_errors".to_owned()],
        }
    }

    #[test]
    fn command_line_has_the_machine_flags() {
        let lines = dry_run_lines(&config()).unwrap();
        assert_eq!(
            lines,
            [
                "qemu-system-aarch64 -M virt,virtualization=on,gic-version=3 -cpu cortex-a72 \
              -smp 4 -m 1G -nographic -kernel build/aarch64/mica.img \
              -append 'mica.poweroff_after_ms=500 x=1' -d guest_errors"
            ]
        );
    }

    #[test]
    fn dumpdtb_is_added_to_the_machine_option() {
        let args = config().args(Some(Path::new("/t/e.dtb")), Some(Path::new("/t/q.dtb")));
        assert_eq!(
            args[1],
            "virt,virtualization=on,gic-version=3,dumpdtb=/t/q.dtb"
        );
        let at = args.iter().position(|a| a == "-dtb").unwrap();
        assert_eq!(args[at + 1], "/t/e.dtb");
    }

    #[test]
    fn dry_run_with_edits_shows_dump_and_loader_boot() {
        let mut c = config();
        c.dtb_edits.remove_nodes.push("pl061".to_owned());
        let lines = dry_run_lines(&c).unwrap();
        assert_eq!(lines.len(), 6, "{lines:#?}");
        assert!(lines[1].contains("dumpdtb=<tmp>/qemu.dtb"), "{}", lines[1]);
        assert!(
            lines[1].contains("-kernel build/aarch64/mica.img -append"),
            "the dump has bootargs: {}",
            lines[1]
        );
        assert!(lines[2].contains("remove nodes pl061"));
        assert!(lines[3].contains("x0 = 0x44000000"), "{}", lines[3]);
        let boot = &lines[5];
        for absent in ["-kernel", "-append", "-dtb", "dumpdtb"] {
            assert!(!boot.contains(absent), "{absent} in {boot}");
        }
        assert!(
            boot.contains("-device 'loader,file=<tmp>/edited.dtb,addr=0x44000000,force-raw=on'"),
            "{boot}"
        );
        assert!(
            boot.contains("-device 'loader,file=<tmp>/shim.bin,addr=0x40100000,force-raw=on'"),
            "{boot}"
        );
        assert!(
            boot.ends_with("-device loader,addr=0x40100000,cpu-num=0 -d guest_errors"),
            "{boot}"
        );
    }

    #[test]
    fn loader_args_place_the_image_and_escape_commas() {
        let files = LoaderFiles {
            image: PathBuf::from("/a,b/mica.img"),
            image_addr: "0x40200000".to_owned(),
            dtb: PathBuf::from("/t/e.dtb"),
            shim: PathBuf::from("/t/s.bin"),
        };
        let args: Vec<String> = config()
            .loader_args(&files)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert_eq!(
            args,
            [
                "-M",
                "virt,virtualization=on,gic-version=3",
                "-cpu",
                "cortex-a72",
                "-smp",
                "4",
                "-m",
                "1G",
                "-nographic",
                "-device",
                "loader,file=/a,,b/mica.img,addr=0x40200000,force-raw=on",
                "-device",
                "loader,file=/t/e.dtb,addr=0x44000000,force-raw=on",
                "-device",
                "loader,file=/t/s.bin,addr=0x40100000,force-raw=on",
                "-device",
                "loader,addr=0x40100000,cpu-num=0",
                "-d",
                "guest_errors",
            ]
        );
    }

    #[test]
    fn dry_run_reads_the_image_address_from_its_header() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("mica.img");
        let mut bytes = vec![0u8; 0x1000];
        bytes[8..16].copy_from_slice(&0x20_0000u64.to_le_bytes());
        bytes[16..24].copy_from_slice(&0x2_0000u64.to_le_bytes());
        bytes[56..60].copy_from_slice(b"ARM\x64");
        std::fs::write(&image, &bytes).unwrap();
        let mut c = config();
        c.image = image.clone();
        c.dtb = Some(PathBuf::from("board.dtb"));
        let lines = dry_run_lines(&c).unwrap();
        assert!(
            lines[1].contains("-dtb board.dtb"),
            "dump uses --dtb: {}",
            lines[1]
        );
        assert!(lines[2].contains("use it as it is"), "{}", lines[2]);
        assert!(lines[3].ends_with("branch to 0x40200000"), "{}", lines[3]);
        let expected = format!(
            "-device loader,file={},addr=0x40200000,force-raw=on",
            image.display()
        );
        assert!(lines[5].contains(&expected), "{}", lines[5]);
    }

    #[test]
    fn edited_trees_need_128m() {
        let mut c = config();
        c.memory = "64M".to_owned();
        c.dtb_edits.remove_nodes.push("memory".to_owned());
        let err = dry_run_lines(&c).unwrap_err();
        assert!(err.to_string().contains("at least 128M"), "{err}");
        c.dtb_edits = DtbEdits::default();
        assert_eq!(
            dry_run_lines(&c).unwrap().len(),
            1,
            "plain boots are not limited"
        );
    }

    #[test]
    fn overrides_beat_the_manifest_which_beats_the_defaults() {
        let image = PathBuf::from("x.img");
        let none = MachineOverrides::default();
        let plain = MachineConfig::new(image.clone(), None, &none);
        assert_eq!(
            (plain.smp, plain.memory.as_str(), plain.append),
            (2, "512M", None)
        );
        let system = Machine {
            cpus: 4,
            memory_mib: 1024,
            boot_args: Some("a=1".to_owned()),
        };
        let from_manifest = MachineConfig::new(image.clone(), Some(&system), &none);
        assert_eq!(
            (
                from_manifest.smp,
                from_manifest.memory.as_str(),
                from_manifest.append.as_deref()
            ),
            (4, "1024M", Some("a=1"))
        );
        let overrides = MachineOverrides {
            smp: Some(1),
            memory: Some("2G".to_owned()),
            append: Some("b=2".to_owned()),
        };
        let overridden = MachineConfig::new(image, Some(&system), &overrides);
        assert_eq!(
            (
                overridden.smp,
                overridden.memory.as_str(),
                overridden.append.as_deref()
            ),
            (1, "2G", Some("b=2"))
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote(OsStr::new("plain-1.0")), "plain-1.0");
        assert_eq!(shell_quote(OsStr::new("")), "''");
        assert_eq!(shell_quote(OsStr::new("it's x")), r"'it'\''s x'");
    }

    #[test]
    fn missing_image_is_reported_before_anything_runs() {
        let mut c = config();
        c.image = PathBuf::from("/nonexistent/mica.img");
        assert!(matches!(prepare(&c, None), Err(QemuError::NoImage(_))));
    }
}
