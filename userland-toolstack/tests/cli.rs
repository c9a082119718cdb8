//! Integration tests of the `mica` binary's command line, none of which start QEMU.
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
