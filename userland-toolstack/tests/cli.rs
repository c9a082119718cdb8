//! Integration tests of the `mica` binary's command line, none of which start a real QEMU.
//!
//! The unit tests cover the library; these check what scripts and the Makefile see: the
//! exact `--dry-run` command line, flag defaults, exit statuses and error messages. Where a
//! boot matters, a stand-in `qemu-system-aarch64` on `PATH` ([`fake_qemu`]) prints what the
//! hypervisor would and behaves as QEMU would.

use std::path::Path;
use std::process::{Command, Output};

fn mica(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mica"))
        .args(args)
        .output()
        .expect("run the mica binary")
}

/// Runs `mica` with `PATH` set to `path` (a stand-in QEMU first) in directory `cwd`.
fn mica_with(path: &str, cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mica"))
        .args(args)
        .env("PATH", path)
        .current_dir(cwd)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run the mica binary")
}

/// Writes a stand-in `qemu-system-aarch64` into `dir` that runs the shell `body`; returns a
/// `PATH` with `dir` first.
fn fake_qemu(dir: &Path, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let fake = dir.join("qemu-system-aarch64");
    std::fs::write(&fake, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// The repository's root.
fn root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn run_dry_run_prints_the_default_command_line() {
    let out = mica(&["run", "build/aarch64/mica.img", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "qemu-system-aarch64 -M virt,virtualization=on,gic-version=3 -cpu cortex-a72 -smp 2 \
         -m 512M -nographic -kernel build/aarch64/mica.img\n"
    );
}

#[test]
fn run_dry_run_passes_every_option_through() {
    let out = mica(&[
        "run",
        "img",
        "--smp",
        "4",
        "--memory",
        "1G",
        "--append",
        "mica.poweroff_after_ms=500 quiet",
        "--dtb",
        "board.dtb",
        "--qemu-arg",
        "-d",
        "--qemu-arg=guest_errors",
        "--timeout",
        "5",
        "--dry-run",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6, "{text}");
    assert_eq!(
        lines[1],
        "qemu-system-aarch64 -M 'virt,virtualization=on,gic-version=3,dumpdtb=<tmp>/qemu.dtb' \
         -cpu cortex-a72 -smp 4 -m 1G -nographic -kernel img \
         -append 'mica.poweroff_after_ms=500 quiet' -dtb board.dtb -d guest_errors"
    );
    assert!(lines[2].contains("use it as it is"), "{text}");
    assert_eq!(
        lines[5],
        "qemu-system-aarch64 -M virt,virtualization=on,gic-version=3 -cpu cortex-a72 -smp 4 \
         -m 1G -nographic -device 'loader,file=img,addr=<0x40000000+text_offset>,force-raw=on' \
         -device 'loader,file=<tmp>/edited.dtb,addr=0x44000000,force-raw=on' \
         -device 'loader,file=<tmp>/shim.bin,addr=0x40100000,force-raw=on' \
         -device loader,addr=0x40100000,cpu-num=0 -d guest_errors"
    );
}

#[test]
fn run_dry_run_with_dtb_edits_shows_both_commands() {
    let out = mica(&[
        "run",
        "img",
        "--remove-dtb-node",
        "pl061",
        "--break-dtb-memory",
        "--dry-run",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6, "{text}");
    assert!(lines[1].contains("dumpdtb=<tmp>/qemu.dtb"), "{text}");
    assert!(lines[1].ends_with("-nographic -kernel img"), "{text}");
    assert!(lines[2].contains("remove nodes pl061"), "{text}");
    assert!(lines[2].contains("reserve all RAM"), "{text}");
    assert!(!lines[5].contains("-kernel"), "{text}");
    assert!(!lines[5].contains("-dtb"), "{text}");
    assert!(
        lines[5].ends_with(
            "-device 'loader,file=<tmp>/edited.dtb,addr=0x44000000,force-raw=on' \
             -device 'loader,file=<tmp>/shim.bin,addr=0x40100000,force-raw=on' \
             -device loader,addr=0x40100000,cpu-num=0"
        ),
        "{text}"
    );
}

#[test]
fn run_with_dtb_edits_refuses_small_memory() {
    let out = mica(&[
        "run",
        "img",
        "--remove-dtb-node",
        "memory",
        "--memory",
        "64M",
        "--dry-run",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("memory size 64M is too small for an edited device tree"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn run_rejects_zero_cpus() {
    let out = mica(&["run", "img", "--smp", "0", "--dry-run"]);
    assert_eq!(out.status.code(), Some(2), "clap usage error");
}

#[test]
fn run_of_a_missing_image_fails_clearly() {
    let out = mica(&["run", "/nonexistent/mica.img"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("image /nonexistent/mica.img does not exist"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn image_of_a_non_elf_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("not-elf");
    std::fs::write(&input, b"hello").unwrap();
    let output = dir.path().join("out.img");
    let out = mica(&[
        "image",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not an ELF file"), "{}", stderr(&out));
    assert!(!output.exists());
}

#[test]
fn smoke_with_unknown_scenario_names_the_available_ones() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["boot-smp1", "boot-smp4"] {
        std::fs::write(dir.path().join(format!("{name}.toml")), "").unwrap();
    }
    let out = mica(&[
        "smoke",
        "--dir",
        dir.path().to_str().unwrap(),
        "--scenario",
        "boot-smp2",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no scenario named `boot-smp2`")
            && stderr(&out).contains("available: boot-smp1, boot-smp4"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        stdout(&out).lines().last(),
        Some("smoke: 0 passed, 0 failed")
    );
}

#[test]
fn smoke_failure_exits_non_zero_with_summary_last() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("needs-image.toml"),
        "description = \"d\"\n[expect]\nlines = ['x']\n",
    )
    .unwrap();
    let out = mica(&[
        "smoke",
        "--dir",
        dir.path().to_str().unwrap(),
        "--hypervisor",
        "/nonexistent/mica.img",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "smoke: needs-image ... FAILED: image /nonexistent/mica.img does not exist (build it first, e.g. `make`)",
            "---- transcript of needs-image ----",
            "---- end of needs-image ----",
            "smoke: 0 passed, 1 failed",
        ]
    );
}

/// A one-segment aarch64 ELF64 executable loaded at the domain RAM base.
fn guest_elf() -> Vec<u8> {
    let code = b"\x1f\x20\x03\xd5\x1f\x20\x03\xd5"; // nop; nop
    let base = 0x4000_0000u64;
    let mut elf = vec![0u8; 64 + 56];
    elf[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\x00");
    elf[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf[18..20].copy_from_slice(&183u16.to_le_bytes()); // EM_AARCH64
    elf[20..24].copy_from_slice(&1u32.to_le_bytes());
    elf[24..32].copy_from_slice(&base.to_le_bytes());
    elf[32..40].copy_from_slice(&64u64.to_le_bytes());
    elf[52..54].copy_from_slice(&64u16.to_le_bytes());
    elf[54..56].copy_from_slice(&56u16.to_le_bytes());
    elf[56..58].copy_from_slice(&1u16.to_le_bytes());
    let ph = 64;
    elf[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    elf[ph + 8..ph + 16].copy_from_slice(&120u64.to_le_bytes());
    elf[ph + 16..ph + 24].copy_from_slice(&base.to_le_bytes());
    elf[ph + 24..ph + 32].copy_from_slice(&base.to_le_bytes());
    elf[ph + 32..ph + 40].copy_from_slice(&(code.len() as u64).to_le_bytes());
    elf[ph + 40..ph + 48].copy_from_slice(&0x1000u64.to_le_bytes());
    elf.extend_from_slice(code);
    elf
}

/// A stand-in hypervisor Image: the arm64 header and a little body.
fn hypervisor_image() -> Vec<u8> {
    let mut img = vec![0u8; 0x800];
    img[8..16].copy_from_slice(&0x20_0000u64.to_le_bytes());
    img[16..24].copy_from_slice(&0x1800u64.to_le_bytes());
    img[56..60].copy_from_slice(b"ARM\x64");
    img
}

const SYSTEM: &str = r#"
[system]
name = "cli"
arch = "aarch64"
[machine]
cpus = 3
memory_mib = 256
boot_args = "mica.poweroff_after_ms=100"
[[domain]]
name = "g"
kind = "guest"
binary = "guest"
memory_kib = 64
"#;

#[test]
fn build_writes_a_system_image_and_run_boots_a_manifest_with_its_machine() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    std::fs::write(p("cli.toml"), SYSTEM).unwrap();
    std::fs::write(p("guest"), guest_elf()).unwrap();
    std::fs::write(p("mica.img"), hypervisor_image()).unwrap();
    let (manifest, output, hypervisor, guests) =
        (p("cli.toml"), p("out.img"), p("mica.img"), p(""));
    let inputs = ["--hypervisor", &hypervisor, "--guests-dir", &guests];
    let mut args = vec!["build", &manifest, "-o", &output];
    args.extend(inputs);
    let out = mica(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with(&format!(
            "mica: wrote {} (system cli: 1 domain;",
            p("out.img")
        )),
        "{}",
        stdout(&out)
    );
    let built = std::fs::read(&output).unwrap();
    assert_eq!(&built[0x2000..0x2008], b"MICASYS1");

    let mut args = vec!["run", &manifest, "--dry-run"];
    args.extend(inputs);
    let out = mica(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("# mica build "), "{text}");
    assert!(
        lines[1].contains("-smp 3 -m 256M -nographic -kernel ")
            && lines[1].ends_with(" -append mica.poweroff_after_ms=100"),
        "{text}"
    );
    args.extend(["--smp", "1", "--memory", "1G", "--append", "x=1"]);
    let out = mica(&args);
    assert!(
        stdout(&out).contains("-smp 1 -m 1G -nographic") && stdout(&out).contains("-append x=1"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn build_of_a_manifest_whose_guest_is_missing_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("cli.toml");
    std::fs::write(&manifest, SYSTEM).unwrap();
    let out = mica(&[
        "build",
        &manifest.to_string_lossy(),
        "-o",
        &dir.path().join("out.img").to_string_lossy(),
        "--guests-dir",
        "/nonexistent",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "mica: error: {}:12:10: domain `g`: binary `guest` not found at /nonexistent/guest: \
             run `make build` first (or pass --guests-dir DIR if the guests are built elsewhere)\n",
            manifest.display()
        )
    );
    let mut bad = SYSTEM.replace("cpus = 3", "cpus = 3\ncolour = 1");
    std::fs::write(&manifest, &bad).unwrap();
    let out = mica(&["build", &manifest.to_string_lossy(), "-o", "/dev/null"]);
    assert!(
        stderr(&out).contains(":7:1: unknown field `colour`"),
        "{}",
        stderr(&out)
    );
    bad = SYSTEM.replace("memory_kib = 64", "memory_kib = 64\nvcpus = 2\ncpus = [0]");
    std::fs::write(&manifest, &bad).unwrap();
    let out = mica(&["build", &manifest.to_string_lossy(), "-o", "/dev/null"]);
    assert!(
        stderr(&out).contains(":15:8: cpus has 1 entries but vcpus = 2"),
        "{}",
        stderr(&out)
    );
}

/// SIGTERM to `mica run` stops QEMU before `mica` exits (143): QEMU must never outlive it.
/// A stand-in `qemu-system-aarch64` on `PATH` records its PID and sleeps.
#[test]
fn run_stops_qemu_when_it_is_sent_sigterm() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("qemu.pid");
    let path = fake_qemu(
        dir.path(),
        &format!("echo $$ > {}\nexec sleep 60", pid_file.display()),
    );
    let image = dir.path().join("mica.img");
    std::fs::write(&image, hypervisor_image()).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_mica"))
        .args(["run", image.to_str().unwrap()])
        .env("PATH", path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let qemu_pid = loop {
        if let Ok(text) = std::fs::read_to_string(&pid_file) {
            if let Ok(pid) = text.trim().parse::<u32>() {
                break pid;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "QEMU never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let killed = Command::new("kill")
        .args(["-s", "TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    assert!(stderr(&out).contains("QEMU stopped"), "{}", stderr(&out));
    // Reaped by `mica`, so its /proc entry is gone (a zombie would still have one).
    assert!(
        !std::path::Path::new(&format!("/proc/{qemu_pid}")).exists(),
        "QEMU (pid {qemu_pid}) outlived mica run"
    );
}

/// A boot that ends in `mica: fatal: ...` powers the machine off, so QEMU exits 0; `mica run`
/// must still fail (status 3), having passed the console through (issue 15, item 3).
#[test]
fn run_fails_when_the_hypervisor_reports_a_fatal_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = fake_qemu(
        dir.path(),
        "printf 'mica: Mica 0.1.0 starting at EL2 on cpu 0\\r\\n'\n\
         printf 'mica: fatal: cannot start the system: out of memory\\r\\nmica: powering off\\r\\n'\n\
         exit 0",
    );
    let image = dir.path().join("mica.img");
    std::fs::write(&image, hypervisor_image()).unwrap();
    let out = mica_with(&path, dir.path(), &["run", image.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("mica: fatal: cannot start the system: out of memory\r\n"),
        "the console is passed through unchanged: {}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains(
            "mica: the hypervisor stopped with a fatal error (cannot start the system: out of memory): exit status 3"
        ),
        "{}",
        stderr(&out)
    );
    // The same boot without the fatal line is a success.
    let path = fake_qemu(dir.path(), "printf 'mica: powering off\\r\\n'\nexit 0");
    let out = mica_with(&path, dir.path(), &["run", image.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// A file that is neither an image nor a manifest is refused before QEMU starts (item 4).
#[test]
fn run_of_a_file_that_is_no_image_fails_before_qemu_starts() {
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("started");
    let path = fake_qemu(
        dir.path(),
        &format!("touch {}\nexec sleep 60", started.display()),
    );
    let readme = root().join("README.md");
    let out = mica_with(&path, dir.path(), &["run", readme.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "mica: error: {} is not a bootable image: no arm64 Image header",
            readme.display()
        )),
        "{}",
        stderr(&out)
    );
    assert!(!started.exists(), "QEMU was started");
}

/// `--smp` below the CPUs a manifest pins, or `--memory` too small for it, is refused with
/// the domains named (items 5 and 17).
#[test]
fn run_refuses_a_machine_smaller_than_the_manifest_needs() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let system = SYSTEM.to_owned()
        + "[[domain]]\nname = \"policy\"\nkind = \"service\"\nbinary = \"guest\"\n\
           memory_kib = 64\ncpus = [2]\nsched_policy = true\n\
           [[pool]]\nname = \"fair\"\ncpus = [0, 1]\npolicy = \"credit\"\n";
    std::fs::write(p("cli.toml"), system).unwrap();
    std::fs::write(p("guest"), guest_elf()).unwrap();
    std::fs::write(p("mica.img"), hypervisor_image()).unwrap();
    let (manifest, hypervisor, guests) = (p("cli.toml"), p("mica.img"), p(""));
    let base = [
        "run",
        &manifest,
        "--hypervisor",
        &hypervisor,
        "--guests-dir",
        &guests,
        "--dry-run",
    ];
    let out = mica(&[&base[..], &["--smp", "3"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let out = mica(&[&base[..], &["--smp", "1"]].concat());
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "mica: error: --smp 1 gives the machine CPUs 0 to 0 but the manifest pins policy (cpus [2]), \
         pool fair (cpus [0, 1]) to CPUs it lacks; the kernel would move those vCPUs to other \
         CPUs (a policy domain into the pool it manages): give at least 3 CPUs (the manifest's \
         [machine] cpus = 3)\n"
    );
    let control = std::fs::read_to_string(root().join("images/lifecycle.toml")).unwrap();
    std::fs::write(
        p("ctl.toml"),
        control
            .replace("binary = \"spinner\"", "binary = \"guest\"")
            .replace("binary = \"ctl\"", "binary = \"guest\""),
    )
    .unwrap();
    let ctl_manifest = p("ctl.toml");
    let mut args = base;
    args[1] = &ctl_manifest;
    let out = mica(&[&args[..], &["--memory", "140M"]].concat());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with(
            "mica: error: --memory 140M: the control domain `ctl` needs its 64 MiB pool as one \
             free block aligned to 64 MiB, and 140 MiB of RAM has none"
        ) && stderr(&out).ends_with("give the machine at least 192 MiB\n"),
        "{}",
        stderr(&out)
    );
    let out = mica(&[&args[..], &["--memory", "192M"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
}

/// `--exit-when-idle` stops the machine when the kernel says every domain has ended;
/// without it `mica run` says the machine stays up (item 16).
#[test]
fn run_exit_when_idle_stops_qemu_once_every_domain_has_ended() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    std::fs::write(p("cli.toml"), SYSTEM).unwrap();
    std::fs::write(p("guest"), guest_elf()).unwrap();
    std::fs::write(p("mica.img"), hypervisor_image()).unwrap();
    let path = fake_qemu(
        dir.path(),
        "printf '[g] done\\r\\nmica: all domains have ended; 1000 KiB free, as at boot\\r\\n'\nexec sleep 30",
    );
    let (manifest, hypervisor, guests) = (p("cli.toml"), p("mica.img"), p(""));
    let base = [
        "run",
        &manifest,
        "--hypervisor",
        &hypervisor,
        "--guests-dir",
        &guests,
    ];
    let started = std::time::Instant::now();
    let out = mica_with(
        &path,
        dir.path(),
        &[&base[..], &["--exit-when-idle"]].concat(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(started.elapsed().as_secs() < 20, "QEMU was not stopped");
    assert!(
        stderr(&out).contains("mica: every domain has ended: QEMU stopped (--exit-when-idle)"),
        "{}",
        stderr(&out)
    );
    let out = mica_with(
        &path,
        dir.path(),
        &[&base[..], &["--timeout", "2"]].concat(),
    );
    assert_eq!(out.status.code(), Some(124), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(
        text.contains("the machine stays up after its domains end, until you quit QEMU (Ctrl-A X) or pass --exit-when-idle")
            && text.contains("mica: every domain has ended; the machine stays up until you quit QEMU (Ctrl-A X)"),
        "{text}"
    );
}

/// A system with a control domain: `mica run` keeps the serial log beside the socket (what
/// `mica ctl console` reads for a domain that has ended) and removes the socket at the end.
#[test]
fn run_keeps_the_serial_log_and_removes_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let control = std::fs::read_to_string(root().join("images/lifecycle.toml")).unwrap();
    std::fs::write(
        p("ctl.toml"),
        control
            .replace("binary = \"spinner\"", "binary = \"guest\"")
            .replace("binary = \"ctl\"", "binary = \"guest\""),
    )
    .unwrap();
    std::fs::write(p("guest"), guest_elf()).unwrap();
    std::fs::write(p("mica.img"), hypervisor_image()).unwrap();
    let socket = p("run/ctl.sock");
    // QEMU creates the socket; the stand-in makes a file there.
    let path = fake_qemu(
        dir.path(),
        &format!("touch {socket}\nprintf '[base] spinner: started\\r\\n'\nexit 0"),
    );
    let (manifest, hypervisor, guests) = (p("ctl.toml"), p("mica.img"), p(""));
    let out = mica_with(
        &path,
        dir.path(),
        &[
            "run",
            &manifest,
            "--hypervisor",
            &hypervisor,
            "--guests-dir",
            &guests,
            "--ctl-socket",
            &socket,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(p("run/ctl.log")).unwrap(),
        "[base] spinner: started\r\n"
    );
    assert!(!Path::new(&socket).exists(), "the socket is left behind");
}

/// `--socket` is accepted after the subcommand too (item 8), and a missing socket is named
/// with the directory a relative one was taken from (item 9).
#[test]
fn ctl_socket_option_anywhere_and_missing_sockets_named() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        ["ctl", "--socket", "/nonexistent/s.sock", "list"],
        ["ctl", "list", "--socket", "/nonexistent/s.sock"],
    ] {
        let out = mica(&args);
        assert_eq!(out.status.code(), Some(2));
        assert!(
            stderr(&out).starts_with("mica ctl: no control socket at /nonexistent/s.sock: "),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let out = mica_with("/usr/bin:/bin", dir.path(), &["ctl", "stats"]);
    assert_eq!(out.status.code(), Some(2));
    let cwd = dir.path().canonicalize().unwrap();
    let text = stderr(&out);
    assert!(
        text.starts_with(&format!(
            "mica ctl: no control socket at {}/build/ctl.sock (`build/ctl.sock` relative to {}): ",
            cwd.display(),
            cwd.display()
        )) || text.starts_with(&format!(
            "mica ctl: no control socket at {}/build/ctl.sock (`build/ctl.sock` relative to {}): ",
            dir.path().display(),
            dir.path().display()
        )),
        "{text}"
    );
    assert!(!text.contains("is the system running?"), "{text}");
}

/// `--memory-kib 0` (or any size the control domain cannot give) is a usage error, not the
/// image's size in disguise (item 10).
#[test]
fn ctl_create_refuses_sizes_it_cannot_give() {
    for kib in ["0", "6", "1023"] {
        let out = mica(&[
            "ctl",
            "--socket",
            "/nonexistent/s.sock",
            "create",
            "x",
            "--image",
            "spinner",
            "--memory-kib",
            kib,
        ]);
        assert_eq!(out.status.code(), Some(2), "{kib}");
        assert!(
            stderr(&out).contains(&format!(
                "invalid value '{kib}' for '--memory-kib <N>': {kib}: give a multiple of 4"
            )),
            "{}",
            stderr(&out)
        );
    }
}

/// `mica ctl --help` shows every command with its arguments, exactly as docs/toolstack.md
/// writes them (item 13).
#[test]
fn ctl_help_shows_every_command_as_the_docs_do() {
    let out = mica(&["ctl", "--help"]);
    assert!(out.status.success());
    let help = stdout(&out);
    let docs = std::fs::read_to_string(root().join("docs/toolstack.md")).unwrap();
    let block = docs
        .split("## `mica ctl`")
        .nth(1)
        .and_then(|s| s.split("```\n").nth(1))
        .expect("docs/toolstack.md has the mica ctl synopsis block");
    let usage: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Usage: "))
        .take_while(|l| !l.is_empty())
        .map(|l| l.trim_start_matches("Usage: ").trim())
        .collect();
    let documented: Vec<&str> = block.lines().map(str::trim).collect();
    assert_eq!(usage, documented, "{help}");
    for command in [
        "list",
        "create",
        "pause",
        "unpause",
        "destroy",
        "reboot",
        "console NAME [--follow | --attach]",
        "stats",
    ] {
        assert!(help.contains(command), "{command} missing: {help}");
    }
}

/// `console NAME` of a domain that has ended: the control domain knows it no more, so its
/// last output comes from the serial log beside the socket (item 12). A stand-in control
/// domain answers on a socket.
#[test]
fn ctl_console_of_an_ended_domain_reads_the_serial_log() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ctl.sock");
    std::fs::write(
        dir.path().join("ctl.log"),
        "[hello] hello: started\r\n[spinner] spinning\r\n[hello] hello: done\r\n\
         mica: domain hello (id 2) powered itself off (PSCI SYSTEM_OFF)\r\n\
         mica: domain hello (id 2) destroyed: 2048 KiB scrubbed, 1003 MiB free\r\n",
    )
    .unwrap();
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let server = std::thread::spawn(move || {
        for _ in 0..2 {
            let (mut s, _) = listener.accept().unwrap();
            let mut header = [0u8; 16];
            s.read_exact(&mut header).unwrap();
            let len = u32::from_le_bytes(header[12..16].try_into().unwrap()) as usize;
            let mut payload = vec![0u8; len];
            s.read_exact(&mut payload).unwrap();
            // An error reply: no such domain (code 5).
            let mut reply = b"MCTL".to_vec();
            reply.extend_from_slice(&2u16.to_le_bytes());
            reply.extend_from_slice(&0x101u16.to_le_bytes());
            reply.extend_from_slice(&header[8..12]);
            reply.extend_from_slice(&8u32.to_le_bytes());
            reply.extend_from_slice(&5u32.to_le_bytes());
            reply.extend_from_slice(&0u32.to_le_bytes());
            s.write_all(&reply).unwrap();
        }
    });
    let sock = socket.to_str().unwrap();
    let out = mica(&["ctl", "--socket", sock, "console", "hello"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello: started\nhello: done\n");
    assert!(
        stderr(&out).contains("hello has ended; its last output, from the serial log"),
        "{}",
        stderr(&out)
    );
    let out = mica(&["ctl", "--socket", sock, "console", "nobody"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(stderr(&out), "mica ctl: no such domain\n");
    server.join().unwrap();
}
