//! Integration tests of the `mica` binary's command line, none of which start a real QEMU.
//!
//! The unit tests cover the library; these check what scripts and the Makefile see: the
//! exact `--dry-run` command line, flag defaults, exit statuses and error messages.

use std::process::{Command, Output};

fn mica(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mica"))
        .args(args)
        .output()
        .expect("run the mica binary")
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
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("qemu.pid");
    let fake = dir.path().join("qemu-system-aarch64");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho $$ > {}\nexec sleep 60\n",
            pid_file.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let image = dir.path().join("mica.img");
    std::fs::write(&image, b"not really an image").unwrap();
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
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
