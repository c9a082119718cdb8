//! Unit tests of manifest parsing and checking.

use super::*;

const TWO: &str = r#"
[system]
name = "two-guests"
arch = "aarch64"

[machine]
cpus = 2
memory_mib = 512
boot_args = "mica.poweroff_after_ms=5000"

[[domain]]
name = "hello-a"
kind = "guest"
binary = "hello"
memory_kib = 2048
cpus = [0]
arg = 5

[[domain]]
name = "hello-b"
kind = "service"
path = "elves/hello.elf"
memory_kib = 2048
vcpus = 2
priority = 3
mmu_off_cacheable = false
start = "after-destroy"
after = "hello-a"
memory_from = "hello-a"
"#;

fn parse(text: &str) -> Result<Manifest, ManifestError> {
    Manifest::parse(Path::new("images/t.toml"), text)
}

/// The error for `text`, as printed.
fn error(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

/// TWO with the first `from` replaced by `to` (`from` must occur).
fn edit(from: &str, to: &str) -> String {
    assert!(TWO.contains(from), "{from}");
    TWO.replacen(from, to, 1)
}

#[test]
fn parses_every_field() {
    let m = parse(TWO).unwrap();
    assert_eq!(m.name, "two-guests");
    assert_eq!(m.arch, Arch::Aarch64);
    assert_eq!(
        m.machine,
        Machine {
            cpus: 2,
            memory_mib: 512,
            boot_args: Some("mica.poweroff_after_ms=5000".to_owned()),
        }
    );
    let [a, b] = &m.domains[..] else {
        panic!("{:?}", m.domains)
    };
    assert_eq!(a.name, "hello-a");
    assert_eq!(a.kind, DomainKind::Guest);
    assert_eq!(a.elf, DomainElf::Binary("hello".to_owned()));
    assert_eq!(a.elf_at.to_string(), "images/t.toml:14:10");
    assert_eq!(a.memory_kib, 2048);
    assert_eq!(a.vcpus, 1);
    assert_eq!(a.cpus, Some(vec![0]));
    assert_eq!(a.arg, 5);
    assert_eq!(a.start, Start::AtBoot);
    assert_eq!(a.memory_from, None);
    assert_eq!(a.priority, 0);
    assert!(a.mmu_off_cacheable);
    assert_eq!(b.kind, DomainKind::Service);
    assert_eq!(b.elf, DomainElf::Path(PathBuf::from("elves/hello.elf")));
    assert_eq!(b.vcpus, 2);
    assert_eq!(b.cpus, None);
    assert_eq!(b.start, Start::AfterDestroyOf(0));
    assert_eq!(b.memory_from, Some(0));
    assert_eq!(b.priority, 3);
    assert!(!b.mmu_off_cacheable);
    assert_eq!(m.dir(), Path::new("images"));
}

/// Measured under QEMU 7.2 with `images/lifecycle.toml` and `--memory`: 128, 160 and 190
/// MiB stop at boot with `cannot create domain ctl: out of memory`; 192 MiB boots `ctl`.
#[test]
fn the_control_pool_needs_an_aligned_block_the_device_tree_does_not_split() {
    assert_eq!(qemu_dtb_offset_mib(140), 70);
    assert_eq!(qemu_dtb_offset_mib(1024), 128);
    for mib in [128, 140, 160, 190, 191] {
        assert_eq!(pool_blocks(mib), 0, "{mib} MiB");
    }
    assert_eq!(pool_blocks(192), 1);
    assert_eq!(
        pool_blocks(256),
        2,
        "[64, 128) below the DTB at 128, and [192, 256)"
    );
    assert_eq!(pool_blocks(512), 6);
    let text = edit("memory_mib = 512", "memory_mib = 160")
        + "\n[[domain]]\nname = \"ctl\"\nkind = \"service\"\nbinary = \"ctl\"\nmemory_kib = 2048\ncontrol = true\n";
    let err = error(&text);
    assert!(
        err.contains("the control domain `ctl` needs its 64 MiB pool as one free block aligned to 64 MiB, and memory_mib = 160 has none")
            && err.ends_with("set memory_mib to at least 192"),
        "{err}"
    );
    let m = parse(&text.replace("memory_mib = 160", "memory_mib = 192")).unwrap();
    assert!(machine_problems(&m, 2, "--smp 2", Some(192), "--memory 192M").is_empty());
    let problems = machine_problems(&m, 1, "--smp 1", Some(191), "--memory 191M");
    assert_eq!(
        problems.len(),
        1,
        "CPU 0 is all hello-a asks for: {problems:?}"
    );
    assert!(
        problems[0].starts_with("--memory 191M: the control domain `ctl` needs")
            && problems[0].ends_with("give the machine at least 192 MiB"),
        "{problems:?}"
    );
    let pinned = parse(
        &text
            .replace("cpus = [0]", "cpus = [1]")
            .replace("memory_mib = 160", "memory_mib = 192"),
    )
    .unwrap();
    let problems = machine_problems(&pinned, 1, "--smp 1", None, "");
    assert_eq!(
        problems,
        ["--smp 1 gives the machine CPUs 0 to 0 but the manifest pins hello-a (cpus [1]) to CPUs it lacks; the kernel would move those vCPUs to other CPUs (a policy domain into the pool it manages): give at least 2 CPUs (the manifest's [machine] cpus = 2)"]
    );
}

#[test]
fn memory_mib_defaults_to_512() {
    let m = parse(&edit("memory_mib = 512\n", "")).unwrap();
    assert_eq!(m.machine.memory_mib, DEFAULT_MACHINE_MEMORY_MIB);
}

#[test]
fn syntax_errors_have_positions() {
    assert_eq!(
        error(&edit("priority = 3", "priority = 3\ncolour = \"blue\"")),
        "images/t.toml:26:1: unknown field `colour`, expected one of `name`, `kind`, \
         `binary`, `path`, `kernel`, `initramfs`, `cmdline`, `script`, `memory_kib`, `vcpus`, `cpus`, `arg`, `start`, `after`, \
         `memory_from`, `priority`, `mmu_off_cacheable`, `sched`, `sched_policy`, \
         `memory_node`, `control`, `devices`, `disks`"
    );
    let err = error(&edit("arch = \"aarch64\"", "arch = \"x86_64\""));
    assert!(err.starts_with("images/t.toml:4:8: "), "{err}");
    assert!(
        err.contains("unknown variant `x86_64`, expected `aarch64`"),
        "{err}"
    );
    let err = error(&edit("kind = \"guest\"", "kind = \"vm\""));
    assert!(
        err.contains("expected one of `guest`, `service`, `linux`"),
        "{err}"
    );
    let err = error(&edit("start = \"after-destroy\"", "start = \"later\""));
    assert!(err.contains("expected `boot` or `after-destroy`"), "{err}");
    let err = error(&edit("memory_kib = 2048\ncpus", "memory_kib = -4\ncpus"));
    assert!(err.starts_with("images/t.toml:15:14: "), "{err}");
    let err = error("[system]\nname = \"x\"\n");
    assert!(err.contains("missing field `arch`"), "{err}");
}

#[test]
fn names_are_checked() {
    assert_eq!(
        error(&edit("name = \"hello-b\"", "name = \"hello-a\"")),
        "images/t.toml:20:8: a domain named `hello-a` already exists (line 12): \
         give every domain a unique name"
    );
    let err = error(&edit("name = \"hello-b\"", "name = \"Hello_B\""));
    assert!(
        err.contains("domain name `Hello_B` is not allowed"),
        "{err}"
    );
    let long = format!("name = \"{}\"", "a".repeat(32));
    assert!(error(&edit("name = \"hello-b\"", &long)).contains("1 to 31 characters"));
    let err = error(&edit("name = \"two-guests\"", "name = \"\""));
    assert!(err.starts_with("images/t.toml:3:8: system name"), "{err}");
}

#[test]
fn domain_references_are_checked() {
    assert_eq!(
        error(&edit("after = \"hello-a\"", "after = \"hello-c\"")),
        "images/t.toml:28:9: after = \"hello-c\" names no domain of this system; \
         the domains are: hello-a, hello-b"
    );
    let err = error(&edit("after = \"hello-a\"", "after = \"hello-b\""));
    assert!(err.contains("after names the domain itself"), "{err}");
    let err = error(&edit("start = \"after-destroy\"\n", ""));
    assert!(err.contains("`after` only applies"), "{err}");
    let err = error(&edit("after = \"hello-a\"\n", ""));
    assert!(err.starts_with("images/t.toml:27:9: "), "{err}");
    assert!(err.contains("needs `after = \"NAME\"`"), "{err}");
    let err = error(&edit(
        "start = \"after-destroy\"\nafter = \"hello-a\"\n",
        "",
    ));
    assert!(err.contains("memory_from = \"hello-a\" needs"), "{err}");
    let err = error(&edit(
        "memory_kib = 2048\nvcpus",
        "memory_kib = 4096\nvcpus",
    ));
    assert!(err.contains("give both the same memory_kib"), "{err}");
    let cycle = edit(
        "arg = 5\n",
        "arg = 5\nstart = \"after-destroy\"\nafter = \"hello-b\"\n",
    )
    .replace("memory_from = \"hello-a\"\n", "");
    assert_eq!(
        error(&cycle),
        "images/t.toml:19:9: start-after cycle hello-a -> hello-b -> hello-a: none of \
         these domains would ever start; give one of them start = \"boot\""
    );
    let third = format!(
        "{TWO}\n[[domain]]\nname = \"c\"\nkind = \"guest\"\nbinary = \"x\"\n\
         memory_kib = 2048\nstart = \"after-destroy\"\nafter = \"hello-a\"\n\
         memory_from = \"hello-a\"\n"
    );
    assert!(error(&third).contains("`hello-b` already receives the memory of `hello-a`"));
}

#[test]
fn images_and_sizes_are_checked() {
    let err = error(&edit("binary = \"hello\"\n", ""));
    assert!(
        err.starts_with("images/t.toml:12:8: domain `hello-a` needs exactly one of"),
        "{err}"
    );
    let err = error(&edit(
        "binary = \"hello\"",
        "binary = \"hello\"\npath = \"x\"",
    ));
    assert!(err.starts_with("images/t.toml:15:8: "), "{err}");
    let err = error(&edit("binary = \"hello\"", "binary = \"../hello\""));
    assert!(err.contains("use `path = \"...\"`"), "{err}");
    assert_eq!(
        error(&edit("memory_kib = 2048\ncpus", "memory_kib = 2050\ncpus")),
        "images/t.toml:15:14: memory_kib = 2050: give a multiple of 4 (whole 4 KiB pages), \
         at least 64"
    );
    assert!(
        error(&edit("memory_kib = 2048\ncpus", "memory_kib = 60\ncpus")).contains("at least 64")
    );
    let err = error(&edit("vcpus = 2", "vcpus = 9"));
    assert!(err.contains("vcpus = 9: give 1 to 8"), "{err}");
}

#[test]
fn cpus_are_checked() {
    assert_eq!(
        error(&edit("cpus = [0]", "cpus = [0, 1]")),
        "images/t.toml:16:8: cpus has 2 entries but vcpus = 1: give one physical CPU per \
         vCPU, or leave `cpus` out to let the kernel choose"
    );
    assert_eq!(
        error(&edit("cpus = [0]", "cpus = [2]")),
        "images/t.toml:16:9: CPU 2 does not exist: [machine] cpus = 2, so use 0 to 1, \
         or raise [machine] cpus"
    );
    let err = error(&edit("cpus = 2", "cpus = 17"));
    assert!(err.starts_with("images/t.toml:7:8: cpus = 17"), "{err}");
    assert!(error(&edit("cpus = 2", "cpus = 0")).contains("1 to 16 CPUs"));
    let err = error(&edit("memory_mib = 512", "memory_mib = 64"));
    assert!(
        err.starts_with("images/t.toml:8:14: memory_mib = 64"),
        "{err}"
    );
}

#[test]
fn memory_must_fit() {
    let big = edit("memory_kib = 2048\ncpus", "memory_kib = 65536\ncpus")
        .replace("memory_mib = 512", "memory_mib = 128")
        .replace("start = \"after-destroy\"\nafter = \"hello-a\"\n", "")
        .replace("memory_from = \"hello-a\"\n", "");
    assert_eq!(
        error(&big),
        "images/t.toml:8:14: the domains need 67584 KiB of RAM but memory_mib = 128 leaves \
         65536 KiB after the 64 MiB the hypervisor keeps: set memory_mib to at least 130, \
         or give the domains less memory_kib"
    );
    // A domain that receives another's frames needs no RAM of its own.
    let reuse = edit("memory_kib = 2048\ncpus", "memory_kib = 32768\ncpus")
        .replace("memory_kib = 2048\nvcpus", "memory_kib = 32768\nvcpus")
        .replace("memory_mib = 512", "memory_mib = 128");
    assert!(parse(&reuse).is_ok());
}

#[test]
fn no_domains() {
    let err = error("[system]\nname = \"x\"\narch = \"aarch64\"\n[machine]\ncpus = 1\n");
    assert_eq!(
        err,
        "images/t.toml: the system has no domains: add at least one [[domain]] table"
    );
}

#[test]
fn missing_elves_name_the_path_tried() {
    let m = parse(TWO).unwrap();
    let err = m.domain_elfs(Path::new("/nonexistent/guests")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "images/t.toml:14:10: domain `hello-a`: binary `hello` not found at \
         /nonexistent/guests/hello: run `make build` first (or pass --guests-dir DIR if \
         the guests are built elsewhere)"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello"), b"x").unwrap();
    let err = m.domain_elfs(dir.path()).unwrap_err();
    assert!(
        matches!(err, ManifestError::MissingPath { ref tried, .. }
            if tried == Path::new("images/elves/hello.elf")),
        "{err}"
    );
    assert!(err
        .to_string()
        .contains("relative to the manifest's directory"));
    std::fs::create_dir_all(dir.path().join("elves")).unwrap();
    std::fs::write(dir.path().join("elves/hello.elf"), b"x").unwrap();
    let mut moved = m.clone();
    moved.path = dir.path().join("t.toml");
    assert_eq!(
        moved.domain_elfs(dir.path()).unwrap(),
        [dir.path().join("hello"), dir.path().join("elves/hello.elf")]
    );
}

/// TWO's domains, both at boot, with a channel and a shared region between them.
fn linked() -> String {
    let base = TWO
        .replace("start = \"after-destroy\"\nafter = \"hello-a\"\n", "")
        .replace("memory_from = \"hello-a\"\n", "");
    format!("{base}{LINKS}")
}

const LINKS: &str = r#"
[[channel]]
name = "a-b"
reason = "requests and responses"
a = { domain = "hello-a", endpoint = "to-b" }
b = { domain = "hello-b", endpoint = "to-a" }

[[shared]]
name = "ring"
reason = "the rings"
owner = "hello-a"
peer = "hello-b"
pages = 2
owner_offset_kib = 1024
peer_address = 0x8000_0000
peer_access = "read-write"
"#;

/// `linked()` with the first `from` replaced by `to`.
fn link_edit(from: &str, to: &str) -> String {
    let text = linked();
    assert!(text.contains(from), "{from}");
    text.replacen(from, to, 1)
}

/// `linked()` with one more `[[shared]]` (owner, peer, pages, offset, address).
fn second_share(owner: &str, peer: &str, pages: u32, offset_kib: u64, address: u64) -> String {
    format!(
        "{}\n[[shared]]\nname = \"second\"\nreason = \"r\"\nowner = \"{owner}\"\n\
         peer = \"{peer}\"\npages = {pages}\nowner_offset_kib = {offset_kib}\n\
         peer_address = {address:#x}\npeer_access = \"read-only\"\n",
        linked()
    )
}

#[test]
fn channels_and_shares_parse() {
    let m = parse(&linked()).unwrap();
    assert_eq!(
        m.channels,
        [Channel {
            name: "a-b".to_owned(),
            reason: "requests and responses".to_owned(),
            a: Endpoint {
                domain: 0,
                name: "to-b".to_owned()
            },
            b: Endpoint {
                domain: 1,
                name: "to-a".to_owned()
            },
        }]
    );
    assert_eq!(
        m.shares,
        [Share {
            name: "ring".to_owned(),
            reason: "the rings".to_owned(),
            owner: 0,
            peer: 1,
            pages: 2,
            owner_offset: 1024 * 1024,
            peer_address: 0x8000_0000,
            peer_access: PeerAccess::ReadWrite,
        }]
    );
    assert_eq!(m.shares[0].size(), 8192);
    assert_eq!(PeerAccess::ReadWrite.rights(), Rights::READ | Rights::WRITE);
    assert_eq!(PeerAccess::ReadOnly.rights(), Rights::READ);
    // Without either section there are none.
    let plain = parse(TWO).unwrap();
    assert!(plain.channels.is_empty() && plain.shares.is_empty());
}

#[test]
fn channel_errors() {
    // Line numbers: the channel table starts on line 28 of `linked()`.
    assert_eq!(
        error(&link_edit("\"hello-b\", endpoint", "\"hello-c\", endpoint")),
        "images/t.toml:32:16: domain = \"hello-c\" names no domain of this system; the \
         domains are: hello-a, hello-b"
    );
    assert_eq!(
        error(&link_edit("\"hello-b\", endpoint", "\"hello-a\", endpoint")),
        "images/t.toml:32:16: both endpoints of channel `a-b` are in domain `hello-a`: a \
         channel connects two different domains, so name another domain in `b`"
    );
    assert_eq!(
        error(&link_edit("reason = \"requests and responses\"\n", "")),
        "images/t.toml:29:8: channel `a-b` needs a `reason`: add reason = \"...\", saying \
         why this authority exists (every capability the manifest grants is named and \
         given a reason)"
    );
    let err = error(&link_edit("\"requests and responses\"", "\"  \""));
    assert!(
        err.starts_with("images/t.toml:30:10: channel `a-b` needs a `reason`"),
        "{err}"
    );
    let long = "e".repeat(24);
    assert_eq!(
        error(&link_edit("\"to-a\"", &format!("\"{long}\""))),
        format!(
            "images/t.toml:32:38: endpoint `{long}` is not allowed: use 1 to 23 characters \
             from a-z, 0-9 and `-` (a boot-info page entry holds 24 bytes)"
        )
    );
    assert!(parse(&link_edit("\"to-a\"", &format!("\"{}\"", "e".repeat(23)))).is_ok());
    let err = error(&link_edit("name = \"a-b\"", "name = \"A B\""));
    assert!(err.contains("channel name `A B` is not allowed"), "{err}");
    let err = error(&link_edit("endpoint = \"to-b\"", "endpoint = \"to_b\""));
    assert!(err.contains("endpoint `to_b` is not allowed"), "{err}");
    let err = error(&link_edit(
        "endpoint = \"to-b\"",
        "endpoint = \"to-b\", slot = 3",
    ));
    assert!(
        err.contains("unknown field `slot`, expected `domain` or `endpoint`"),
        "{err}"
    );
    let err = error(&link_edit("[[channel]]", "[[channel]]\ncolour = 1"));
    assert!(
        err.starts_with("images/t.toml:29:1: unknown field `colour`"),
        "{err}"
    );
    let err = error(&link_edit(
        "b = { domain = \"hello-b\", endpoint = \"to-a\" }\n",
        "",
    ));
    assert!(err.contains("missing field `b`"), "{err}");

    // Two channels: duplicate names, and endpoint names clashing in one domain.
    let twice = format!(
        "{}\n[[channel]]\nname = \"a-b\"\nreason = \"r\"\n\
         a = {{ domain = \"hello-a\", endpoint = \"x\" }}\n\
         b = {{ domain = \"hello-b\", endpoint = \"y\" }}\n",
        linked()
    );
    assert_eq!(
        error(&twice),
        "images/t.toml:45:8: a channel named `a-b` already exists (line 29): give every \
         channel a unique name"
    );
    let clash = twice
        .replacen(
            "name = \"a-b\"\nreason = \"r\"",
            "name = \"b-a\"\nreason = \"r\"",
            1,
        )
        .replace("endpoint = \"y\"", "endpoint = \"to-a\"");
    assert_eq!(
        error(&clash),
        "images/t.toml:48:38: domain `hello-b` already has a capability named `to-a` \
         (line 32): channel endpoints and shared regions share one namespace per domain, \
         so choose another name"
    );
    // The same endpoint name in two different domains is fine.
    assert!(parse(
        &twice
            .replacen(
                "name = \"a-b\"\nreason = \"r\"",
                "name = \"c\"\nreason = \"r\"",
                1
            )
            .replace("endpoint = \"x\"", "endpoint = \"to-a\"")
    )
    .is_ok());

    let mut many = linked();
    for i in 0..MAX_CHANNELS {
        many.push_str(&format!(
            "[[channel]]\nname = \"c{i}\"\nreason = \"r\"\n\
             a = {{ domain = \"hello-a\", endpoint = \"a{i}\" }}\n\
             b = {{ domain = \"hello-b\", endpoint = \"b{i}\" }}\n"
        ));
    }
    let err = error(&many);
    assert!(
        err.contains("the system has 33 channels; a system image holds at most 32"),
        "{err}"
    );
}

#[test]
fn share_errors() {
    // Line numbers: the shared table starts on line 34 of `linked()`.
    assert_eq!(
        error(&link_edit("owner = \"hello-a\"", "owner = \"nobody\"")),
        "images/t.toml:37:9: owner = \"nobody\" names no domain of this system; the \
         domains are: hello-a, hello-b"
    );
    let err = error(&link_edit("peer = \"hello-b\"", "peer = \"nobody\""));
    assert!(
        err.starts_with("images/t.toml:38:8: peer = \"nobody\" names no domain"),
        "{err}"
    );
    assert_eq!(
        error(&link_edit("peer = \"hello-b\"", "peer = \"hello-a\"")),
        "images/t.toml:38:8: shared region `ring` has `hello-a` as both owner and peer: a \
         domain already has its own RAM, so name another domain as `peer`"
    );
    let err = error(&link_edit("reason = \"the rings\"\n", ""));
    assert!(
        err.starts_with("images/t.toml:35:8: shared region `ring` needs a `reason`"),
        "{err}"
    );
    let err = error(&link_edit(
        "name = \"ring\"",
        &format!("name = \"{}\"", "r".repeat(24)),
    ));
    assert!(
        err.contains("shared region name `rrrrrrrrrrrrrrrrrrrrrrrr` is not allowed"),
        "{err}"
    );
    assert_eq!(
        error(&link_edit("pages = 2", "pages = 0")),
        "images/t.toml:39:9: pages = 0: a shared region has at least one 4 KiB page"
    );
    assert_eq!(
        error(&link_edit(
            "owner_offset_kib = 1024",
            "owner_offset_kib = 1026"
        )),
        "images/t.toml:40:20: owner_offset_kib = 1026: give a multiple of 4 (shared regions \
         are whole 4 KiB pages)"
    );
    // hello-a has 2048 KiB: the region may end at 2044 KiB, not beyond.
    assert!(parse(&link_edit(
        "owner_offset_kib = 1024",
        "owner_offset_kib = 2036"
    ))
    .is_ok());
    assert_eq!(
        error(&link_edit(
            "owner_offset_kib = 1024",
            "owner_offset_kib = 2040"
        )),
        "images/t.toml:40:20: the region 2040..2048 KiB does not fit in `hello-a`'s RAM \
         below its last page (2048 KiB of RAM; the last 4 KiB are its boot-info page): \
         lower owner_offset_kib or pages, or raise `hello-a`'s memory_kib to at least 2052"
    );
    let err = error(&link_edit("pages = 2", "pages = 4294967295"));
    assert!(err.contains("does not fit in `hello-a`'s RAM"), "{err}");
    let err = error(&link_edit(
        "peer_access = \"read-write\"",
        "peer_access = \"write\"",
    ));
    assert!(
        err.contains("expected `read-only` or `read-write`"),
        "{err}"
    );
    assert_eq!(
        error(&link_edit(
            "peer_address = 0x8000_0000",
            "peer_address = 0x8000_0800"
        )),
        "images/t.toml:41:16: peer_address = 0x80000800 is not page aligned: give a \
         multiple of 0x1000"
    );
    // hello-b's RAM is 0x40000000..0x40200000.
    assert_eq!(
        error(&link_edit(
            "peer_address = 0x8000_0000",
            "peer_address = 0x401f_f000"
        )),
        "images/t.toml:41:16: peer_address 0x401ff000..0x40201000 is not above `hello-b`'s \
         RAM (0x40000000..0x40200000, with emulated devices below it) and below \
         0x8000000000 (the end of its 39-bit guest-physical space): map it at 0x80000000, \
         for example"
    );
    assert!(parse(&link_edit(
        "peer_address = 0x8000_0000",
        "peer_address = 0x4020_0000"
    ))
    .is_ok());
    let err = error(&link_edit(
        "peer_address = 0x8000_0000",
        "peer_address = 0x0800_0000",
    ));
    assert!(err.contains("is not above `hello-b`'s RAM"), "{err}");
    let err = error(&link_edit(
        "peer_address = 0x8000_0000",
        "peer_address = 0x7f_ffff_f000",
    ));
    assert!(
        err.contains("0x7ffffff000..0x8000001000 is not above"),
        "{err}"
    );
    let err = error(&link_edit(
        "peer_address = 0x8000_0000",
        "peer_address = -4096",
    ));
    assert!(err.starts_with("images/t.toml:41:16: "), "{err}");

    // Two regions of one owner may not overlap; different owners may use the same offsets.
    assert_eq!(
        error(&second_share("hello-a", "hello-b", 1, 1028, 0x9000_0000)),
        "images/t.toml:50:20: the region 1028..1032 KiB of `hello-a`'s RAM overlaps shared \
         region `ring` (1024..1032 KiB, line 40): give the regions disjoint \
         owner_offset_kib ranges (this one at 1032 or above, for example)"
    );
    assert!(parse(&second_share("hello-a", "hello-b", 1, 1032, 0x9000_0000)).is_ok());
    assert!(parse(&second_share("hello-b", "hello-a", 1, 1024, 0x8000_0000)).is_ok());
    // Two regions mapped into one peer may not overlap there.
    assert_eq!(
        error(&second_share("hello-a", "hello-b", 1, 1032, 0x8000_1000)),
        "images/t.toml:51:16: peer_address 0x80001000..0x80002000 overlaps shared region \
         `ring` (0x80000000..0x80002000, line 41), also mapped into `hello-b`: map this one \
         at 0x80002000 or above, for example"
    );
    assert!(parse(&second_share("hello-a", "hello-b", 1, 1032, 0x8000_2000)).is_ok());
    // A share name is a capability name in both domains.
    let clash = second_share("hello-b", "hello-a", 1, 1024, 0x8000_0000)
        .replace("name = \"second\"", "name = \"to-a\"");
    assert_eq!(
        error(&clash),
        "images/t.toml:45:8: domain `hello-b` already has a capability named `to-a` \
         (line 32): channel endpoints and shared regions share one namespace per domain, \
         so choose another name"
    );

    let mut many = linked();
    for i in 0..MAX_SHARES {
        many.push_str(&format!(
            "[[shared]]\nname = \"s{i}\"\nreason = \"r\"\nowner = \"hello-b\"\n\
             peer = \"hello-a\"\npages = 1\nowner_offset_kib = {}\n\
             peer_address = {:#x}\npeer_access = \"read-only\"\n",
            4 * i,
            0x8000_0000 + 0x1000 * i
        ));
    }
    let err = error(&many);
    assert!(
        err.contains("the system has 17 shared regions; a system image holds at most 16"),
        "{err}"
    );
    let nine = many
        .split("[[shared]]\nname = \"s8\"")
        .next()
        .unwrap()
        .to_owned();
    let err = error(&nine);
    assert!(
        err.contains("domain `hello-b` owns or maps more than 8 shared regions"),
        "{err}"
    );
}

/// Every manifest in `images/` parses and passes every check that needs no built file.
const SCHED: &str = r#"
[system]
name = "sched"
arch = "aarch64"

[machine]
cpus = 4

[[pool]]
name = "fair"
cpus = [0, 1]
policy = "credit"

[[pool]]
name = "realtime"
cpus = [2]
policy = "rt"

[[domain]]
name = "policy"
kind = "service"
binary = "sched"
memory_kib = 2048
cpus = [3]
priority = 200
sched_policy = true

[[domain]]
name = "heavy"
kind = "guest"
binary = "worker"
memory_kib = 1024
cpus = [0]
sched = { weight = 4, cap_percent = 50 }

[[domain]]
name = "light"
kind = "guest"
binary = "worker"
memory_kib = 1024
vcpus = 2
cpus = [0, 1]
sched = { weight = 1 }

[[domain]]
name = "control-loop"
kind = "guest"
binary = "worker"
memory_kib = 1024
cpus = [2]
sched = { budget_us = 2000, period_us = 10000 }

[[domain]]
name = "policy-again"
kind = "service"
binary = "sched"
memory_kib = 2048
cpus = [3]
sched_policy = true
start = "after-destroy"
after = "policy"
"#;

fn sched_edit(from: &str, to: &str) -> String {
    assert!(SCHED.contains(from), "{from}");
    SCHED.replacen(from, to, 1)
}

fn sched_error(from: &str, to: &str) -> String {
    error(&sched_edit(from, to))
}

#[test]
fn pools_and_sched_requests_parse_and_the_policy_domain_gets_their_policies() {
    use mica_abi::sched::{pack_policies, policy};
    let m = parse(SCHED).unwrap();
    assert_eq!(
        m.pools,
        [
            Pool {
                name: "fair".to_owned(),
                cpus: vec![0, 1],
                policy: PoolPolicy::Credit
            },
            Pool {
                name: "realtime".to_owned(),
                cpus: vec![2],
                policy: PoolPolicy::Rt
            },
        ]
    );
    let arg = pack_policies(&[policy::CREDIT, policy::CREDIT, policy::RT, policy::NONE]);
    assert!(m.domains[0].sched_policy);
    assert_eq!(m.domains[0].arg, arg);
    assert_eq!(m.domains[4].arg, arg, "the restarted policy domain too");
    let heavy = m.domains[1].sched;
    assert_eq!((heavy.weight, heavy.cap_percent), (4, 50));
    assert_eq!(m.domains[2].sched.weight, 1);
    let rt = m.domains[3].sched;
    assert_eq!((rt.budget_us, rt.period_us), (2000, 10_000));
    assert!(!m.domains[1].sched_policy);
    assert_eq!(
        m.domains[1].sched.memory_node, 0,
        "not given: the CPU's node"
    );
    let placed = parse(&sched_edit(
        "cpus = [2]\nsched",
        "cpus = [2]\nmemory_node = 1\nsched",
    ))
    .unwrap();
    assert_eq!(
        placed.domains[3].sched.memory_node, 2,
        "node 1 is written as 2"
    );
    assert!(
        sched_error("cpus = [2]\nsched", "cpus = [2]\nmemory_node = 255\nsched")
            .contains("memory_node = 255: give a NUMA node number from 0 to 254")
    );
}

#[test]
fn pool_errors() {
    assert_eq!(
        sched_error("cpus = [2]\npolicy", "cpus = [1]\npolicy"),
        "images/t.toml:16:9: CPU 1 is already in pool `fair` (line 11): a CPU belongs to at most one pool"
    );
    assert_eq!(
        sched_error("name = \"realtime\"", "name = \"fair\""),
        "images/t.toml:15:8: a pool named `fair` already exists (line 10): give every pool a unique name"
    );
    assert!(sched_error("cpus = [0, 1]", "cpus = []").contains("pool `fair` has no CPUs"));
    assert!(sched_error("cpus = [0, 1]", "cpus = [0, 7]").contains("CPU 7 does not exist"));
    assert!(sched_error("policy = \"rt\"", "policy = \"edf\"")
        .contains("unknown variant `edf`, expected one of `credit`, `rt`, `partition`"));
    assert!(sched_error("name = \"fair\"", "name = \"Fair\"")
        .contains("pool name `Fair` is not allowed"));
}

#[test]
fn sched_request_errors() {
    assert_eq!(
        sched_error("weight = 4,", "weight = 0,"),
        "images/t.toml:34:20: weight = 0: give 1 to 65535 (relative to the other domains of the credit pool)"
    );
    assert!(sched_error("cap_percent = 50", "cap_percent = 101")
        .contains("cap_percent = 101: give 1 to 100"));
    assert!(sched_error("budget_us = 2000", "budget_us = 20000")
        .contains("budget_us = 20000, period_us = 10000: give 1 <= budget_us <= period_us"));
    assert!(
        sched_error("budget_us = 2000, period_us = 10000", "budget_us = 2000")
            .contains("a reservation needs both budget_us and period_us")
    );
    assert!(sched_error(
        "budget_us = 2000, period_us = 10000",
        "budget_us = 20, period_us = 50"
    )
    .contains("period_us from 100"));
    assert!(sched_error(
        "{ weight = 1 }",
        "{ weight = 1, budget_us = 1, period_us = 100 }"
    )
    .contains("sched mixes a credit request"));
    assert!(sched_error("{ weight = 1 }", "{}").contains("sched is empty"));
    assert!(sched_error("{ weight = 1 }", "{ weight = 1, share = 2 }")
        .contains("unknown field `share`"));
    assert_eq!(
        sched_error("cpus = [2]\nsched", "cpus = [0]\nsched"),
        "images/t.toml:51:9: domain `control-loop` asks for a reservation, which only a `rt` pool honours, but its CPU 0 is in `credit` pool `fair`: pin its vCPUs with `cpus` to CPUs of a `rt` pool"
    );
    assert!(sched_error("cpus = [0, 1]\nsched", "sched")
        .contains("asks for a weight, which only a `credit` pool honours, but it has no `cpus`"));
    assert!(sched_error(
        "cpus = [0]\nsched = { weight = 4",
        "cpus = [3]\nsched = { weight = 4"
    )
    .contains("but its CPU 3 is in no pool"));
}

#[test]
fn policy_domain_errors() {
    assert_eq!(
        sched_error("priority = 200\nsched_policy = true", "priority = 200\nsched_policy = true\narg = 3"),
        "images/t.toml:27:7: the policy domain's arg is computed from the [[pool]] tables (each CPU's policy, mica_abi::sched::pack_policies): remove `arg`"
    );
    assert!(
        sched_error("start = \"after-destroy\"\nafter = \"policy\"\n", "")
            .contains("domain `policy-again` is a second policy domain")
    );
    assert!(sched_error("after = \"policy\"", "after = \"heavy\"")
        .contains("domain `policy-again` is a second policy domain"));
    let none = SCHED.replace("sched_policy = true", "sched_policy = false");
    assert!(error(&none)
        .contains("a domain asks for scheduling (`sched`) but no domain has sched_policy = true"));
    let bare = TWO.replacen(
        "[[domain]]",
        "[[pool]]\nname = \"p\"\ncpus = [0]\npolicy = \"partition\"\n\n[[domain]]",
        1,
    );
    assert!(error(&bare)
        .contains("the system has [[pool]] tables but no domain has sched_policy = true"));
}

#[test]
fn links_between_domains_that_never_run_together_are_refused() {
    let chain = r#"
[system]
name = "chain"
arch = "aarch64"
[machine]
cpus = 1
[[domain]]
name = "first"
kind = "guest"
binary = "hello"
memory_kib = 1024
[[domain]]
name = "second"
kind = "guest"
binary = "hello"
memory_kib = 1024
start = "after-destroy"
after = "first"
[[domain]]
name = "third"
kind = "guest"
binary = "hello"
memory_kib = 1024
start = "after-destroy"
after = "second"
[[domain]]
name = "other"
kind = "guest"
binary = "hello"
memory_kib = 1024
"#;
    let channel = |a: &str, b: &str| {
        format!(
            "{chain}[[channel]]\nname = \"c\"\nreason = \"r\"\na = {{ domain = \"{a}\", endpoint = \"x\" }}\nb = {{ domain = \"{b}\", endpoint = \"y\" }}\n"
        )
    };
    // Either order, directly or through the chain.
    let err = error(&channel("first", "second"));
    assert!(err.starts_with("images/t.toml:35:16: channel `c` links `first` and `second`, but `second` starts only after `first` is destroyed (second after first)"), "{err}");
    let err = error(&channel("third", "first"));
    assert!(err.starts_with("images/t.toml:34:16: channel `c` links `first` and `third`, but `third` starts only after `first` is destroyed (third after second after first)"), "{err}");
    // Domains that can run at the same time may be linked.
    parse(&channel("second", "other")).unwrap();
    parse(&channel("third", "other")).unwrap();
    let share = |owner: &str, peer: &str| {
        format!(
            "{chain}[[shared]]\nname = \"s\"\nreason = \"r\"\nowner = \"{owner}\"\npeer = \"{peer}\"\npages = 1\nowner_offset_kib = 0\npeer_address = 0x8000_0000\npeer_access = \"read-only\"\n"
        )
    };
    let err = error(&share("second", "first"));
    assert!(
        err.contains("shared region `s` links `first` and `second`")
            && err.contains("remove the shared region"),
        "{err}"
    );
    parse(&share("other", "third")).unwrap();
}

#[test]
fn every_manifest_in_images_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../images");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let m = Manifest::load(&path).unwrap_or_else(|e| panic!("{e}"));
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            assert_eq!(
                m.name,
                stem,
                "{}: [system] name is the file stem",
                path.display()
            );
            checked.push(stem);
        }
    }
    for expected in [
        "default",
        "destroy-scrub",
        "event-flood",
        "isolation",
        "pingpong",
        "revoke-shared",
        "smp-guest",
        "two-guests",
    ] {
        assert!(
            checked.iter().any(|c| c == expected),
            "images/{expected}.toml is missing"
        );
    }
}

/// TWO with `hello-b` the control domain, given `devices`.
fn control(devices: &str) -> String {
    edit(
        "priority = 3",
        &format!("priority = 3\ncontrol = true\ndevices = [{devices}]"),
    )
}

#[test]
fn control_domain_and_devices() {
    let m = parse(&control(
        "{ name = \"console\", address = 0x0a003e00, size = 0x200, interrupt = 79 }",
    ))
    .unwrap();
    assert!(m.domains[1].control && !m.domains[0].control);
    assert_eq!(
        m.devices,
        [Device {
            name: "console".into(),
            domain: 1,
            mmio_base: 0x0a00_3000,
            mmio_size: 0x1000,
            interrupt: 79,
        }]
    );
    // A window across a page boundary covers both pages; no interrupt is 0.
    let m = parse(&control(
        "{ name = \"regs\", address = 0x0900_0ff0, size = 0x20 }",
    ))
    .unwrap();
    assert_eq!(
        (m.devices[0].mmio_base, m.devices[0].mmio_size),
        (0x0900_0000, 0x2000)
    );
    assert_eq!(m.devices[0].interrupt, 0);
}

#[test]
fn control_and_device_errors_name_the_place() {
    let guest = edit("arg = 5", "arg = 5\ncontrol = true");
    assert_eq!(
        error(&guest),
        "images/t.toml:18:11: domain `hello-a` is a guest: only a `kind = \"service\"` domain may be the control domain"
    );
    let two = control("")
        .replace("arg = 5", "arg = 5\ncontrol = true")
        .replace("kind = \"guest\"", "kind = \"service\"");
    assert!(
        error(&two).contains(
            "domain `hello-b` is a second control domain (the first is `hello-a`, line 12)"
        ),
        "{}",
        error(&two)
    );
    let dev = |d: &str| error(&control(d));
    assert!(
        dev("{ name = \"Console\", address = 0x0a003e00, size = 0x200 }")
            .contains("device name `Console`: use 1 to 19 characters")
    );
    assert!(
        dev("{ name = \"console\", address = 0x0a003e00, size = 0 }")
            .contains("the window 0xa003e00 + 0x0 is empty or wraps")
    );
    assert!(
        dev("{ name = \"console\", address = 0x40000000, size = 0x200 }")
            .contains("overlap `hello-b`'s RAM (0x40000000..0x40200000)")
    );
    assert!(
        dev("{ name = \"console\", address = 0x0a003e00, size = 0x200, interrupt = 16 }")
            .contains("interrupt = 16: give the GIC INTID of a shared peripheral interrupt")
    );
    let twice = dev(
        "{ name = \"a\", address = 0x0a003e00, size = 0x200, interrupt = 79 }, \
                     { name = \"b\", address = 0x0a003c00, size = 0x200, interrupt = 78 }",
    );
    assert!(
        twice.contains("device `b`: its pages 0xa003000..0xa004000 overlap those of device `a`"),
        "{twice}"
    );
    let irq = dev(
        "{ name = \"a\", address = 0x0a003e00, size = 0x200, interrupt = 79 }, \
                   { name = \"b\", address = 0x0a000000, size = 0x200, interrupt = 79 }",
    );
    assert!(
        irq.contains("interrupt 79 is already the interrupt of device `a`"),
        "{irq}"
    );
    let dup = dev("{ name = \"a\", address = 0x0a003e00, size = 0x200 }, \
                   { name = \"a\", address = 0x0a000000, size = 0x200 }");
    assert!(dup.contains("already has a capability named `a`"), "{dup}");
    assert!(error(&control(
        "{ name = \"a\", address = 1, size = 2, colour = 3 }"
    ))
    .contains("unknown field `colour`"));
}

#[test]
fn drives_are_devices_of_their_servers_each_on_a_page_of_its_own() {
    let mut text =
        control("{ name = \"console\", address = 0x0a003e00, size = 0x200, interrupt = 79 }");
    for i in 0..2 {
        text += &format!(
            "\n[[drive]]\nname = \"disk{i}\"\nfile = \"../build/d{i}.img\"\nsize_mib = 8\nserver = \"{}\"\n",
            if i == 1 { "hello-a" } else { "hello-b" }
        );
    }
    let m = parse(&text).unwrap();
    let placed: Vec<(u32, u64, u32, usize)> = m
        .drives
        .iter()
        .map(|d| {
            let dev = m.devices.iter().find(|x| x.name == d.name).unwrap();
            assert_eq!(dev.domain, d.server);
            assert_eq!(dev.mmio_size, 0x1000);
            (d.transport, dev.mmio_base, dev.interrupt, d.server)
        })
        .collect();
    assert_eq!(
        placed,
        [(23, 0x0a00_2000, 48 + 23, 1), (15, 0x0a00_1000, 48 + 15, 0)]
    );
    assert_eq!(drive_transport(2), Some(7));
    assert_eq!(m.drives[0].size_mib, 8);
    assert!(m.drives[0].file.ends_with("build/d0.img"));
    assert_eq!(drive_transport(3), None);
}

#[test]
fn disks_on_a_drive_get_a_channel_and_an_io_region_to_its_server() {
    let text = r#"
[system]
name = "four"
arch = "aarch64"

[machine]
cpus = 2
memory_mib = 512

[[drive]]
name = "disk0"
file = "d.img"
size_mib = 64
server = "blk"

[[domain]]
name = "blk"
kind = "service"
binary = "blk"
memory_kib = 4096

[[domain]]
name = "g1"
kind = "guest"
binary = "blkfront"
memory_kib = 1024
disks = [{ name = "vda", server = "v1", drive = "disk0", offset_mib = 8, size_mib = 16 }]

[[domain]]
name = "v1"
kind = "service"
binary = "vda"
memory_kib = 1024

[[domain]]
name = "g2"
kind = "guest"
binary = "blkfront"
memory_kib = 1024
disks = [{ name = "vdb", server = "v2", drive = "disk0", size_mib = 8 }]

[[domain]]
name = "v2"
kind = "service"
binary = "vda"
memory_kib = 1024
"#;
    let m = parse(text).unwrap();
    let on: Vec<_> = m
        .disks
        .iter()
        .map(|d| (d.name.as_str(), d.on_drive, d.sectors))
        .collect();
    assert_eq!(
        on,
        [
            (
                "vda",
                Some(OnDrive {
                    drive: 0,
                    first_sector: 8 * 2048
                }),
                16 * 2048
            ),
            (
                "vdb",
                Some(OnDrive {
                    drive: 0,
                    first_sector: 0
                }),
                8 * 2048
            ),
        ]
    );
    let channels: Vec<_> = m
        .channels
        .iter()
        .map(|c| {
            (
                c.name.as_str(),
                c.a.domain,
                c.a.name.as_str(),
                c.b.domain,
                c.b.name.as_str(),
            )
        })
        .collect();
    assert_eq!(
        channels,
        [
            ("vda-io", 2, "vda-blk", 0, "vda"),
            ("vdb-io", 4, "vdb-blk", 0, "vdb")
        ]
    );
    // Both regions in blk's RAM, from the top of its usable RAM down; each at the device
    // domain's first I/O window.
    let bytes = mica_abi::blkio::region_bytes(4) as u64;
    let top = DomainLayout::new(4096 * 1024).usable_end() - DOMAIN_RAM_BASE;
    let shares: Vec<_> = m
        .shares
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                s.owner,
                s.peer,
                s.size(),
                s.owner_offset,
                s.peer_address,
            )
        })
        .collect();
    assert_eq!(
        shares,
        [
            ("vda-io", 0, 2, bytes, top - bytes, 0x30_0000_0000),
            ("vdb-io", 0, 4, bytes, top - 2 * bytes, 0x30_0000_0000),
        ]
    );
    // Too little RAM in the block service for both regions.
    let err = error(&text.replacen("memory_kib = 4096", "memory_kib = 512", 1));
    assert!(
        err.contains("the block service `blk` has no room for the disk's"),
        "{err}"
    );
}
