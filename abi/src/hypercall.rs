//! The hypercall table: every call's number, arguments, results, rights and statuses.
//!
//! Calls use the SMCCC vendor-specific hypervisor service range (DESIGN.md §3): fast
//! calls, SMC64 convention, owning entity 6, so a function id is
//! [`VENDOR_HYP_BASE`]` | number`. On aarch64 the id goes in x0 (`hvc #0`), arguments in
//! x1-x6, the status comes back in x0 and values in x1-x3; x86_64 uses `vmmcall` with the
//! registers of DESIGN.md §3. [`TABLE`] is the single definition the kernel's decoder,
//! `mica-rt`'s wrappers and `docs/hypercalls.md` (checked by a test) all follow.
//!
//! The calls themselves, [`Call`] and the rows of [`TABLE`], are defined in `abi/src/calls.rs`,
//! one entry per call together with its argument type, and re-exported here. This module
//! holds what the rows are made of ([`CallSpec`], [`CapArg`]), the constants the calls'
//! arguments refer to, and the function ids.

use crate::{ObjectType, Rights, Status};

pub use crate::calls::{Call, TABLE};

/// Function id of vendor-specific hypervisor call 0: fast call (bit 31), SMC64 (bit 30),
/// owning entity number 6 (bits 29:24).
pub const VENDOR_HYP_BASE: u64 = 0xC600_0000;

/// The capability slot argument that names the calling domain itself (in calls that
/// take a Domain capability).
pub const SELF_DOMAIN: u64 = 0xFFFF;

/// Most bytes one `console_write` carries (five argument registers).
pub const CONSOLE_WRITE_MAX: usize = 40;
/// Most bytes one `console_input` carries (four argument registers).
pub const CONSOLE_INPUT_MAX: usize = 32;
/// `domain_set_boot`: the domain starts by Mica's protocol (the default): x0-x3 as
/// `docs/domains.md` says, memory default-cacheable while its MMU is off.
pub const BOOT_MICA: u64 = 0;
/// `domain_set_boot`: the domain is an unmodified Linux kernel (the arm64 boot protocol): it
/// starts with caches off and its RAM cleaned to the point of coherency, gets an emulated
/// PL011 console, and its clock starts when its vCPU 0 does.
pub const BOOT_LINUX: u64 = 1;

/// An argument that names a capability of the caller's space.
#[derive(Clone, Copy, Debug)]
pub struct CapArg {
    /// The argument's name (one of the call's `args`).
    pub arg: &'static str,
    /// The object types it may name (its object's type must be one of them).
    pub types: &'static [ObjectType],
    /// The rights it must carry.
    pub rights: Rights,
    /// Whether [`SELF_DOMAIN`] may stand for it (the caller's own domain, no capability).
    pub self_domain: bool,
}

/// A Domain capability with CONTROL, or [`SELF_DOMAIN`].
pub(crate) const DOMAIN_CONTROL: CapArg = CapArg {
    arg: "domain",
    types: &[ObjectType::Domain],
    rights: Rights::CONTROL,
    self_domain: true,
};

/// A Domain capability with CONTROL (never [`SELF_DOMAIN`]).
pub(crate) const NAMED_DOMAIN_CONTROL: CapArg = CapArg {
    self_domain: false,
    ..DOMAIN_CONTROL
};

/// Any capability, no right needed, under argument name `arg`.
pub(crate) const fn any_cap(arg: &'static str) -> CapArg {
    CapArg {
        arg,
        types: &ObjectType::ALL,
        rights: Rights::empty(),
        self_domain: false,
    }
}

/// A capability of type `t` carrying `rights`, under argument name `arg`.
pub(crate) const fn cap(arg: &'static str, t: &'static [ObjectType], rights: Rights) -> CapArg {
    CapArg {
        arg,
        types: t,
        rights,
        self_domain: false,
    }
}

/// One row of the table.
#[derive(Clone, Copy, Debug)]
pub struct CallSpec {
    /// The call.
    pub call: Call,
    /// Its name in docs and the `mica-rt` wrapper.
    pub name: &'static str,
    /// One line: what it does.
    pub summary: &'static str,
    /// Argument registers x1.. in order: their names.
    pub args: &'static [&'static str],
    /// Result registers x1.. in order: their names.
    pub returns: &'static [&'static str],
    /// The arguments that name capabilities, each with what it must be and carry.
    pub caps: &'static [CapArg],
    /// Every status the call can return besides success.
    pub statuses: &'static [Status],
}

impl Call {
    /// The call's number within the vendor range.
    pub const fn number(self) -> u16 {
        self as u16
    }

    /// The full SMCCC function id.
    pub const fn function_id(self) -> u64 {
        VENDOR_HYP_BASE | self as u64
    }

    /// Decodes a function id; `None` for anything this ABI does not define (the kernel
    /// answers [`Status::UnknownCall`]).
    pub fn from_function_id(id: u64) -> Option<Call> {
        if id & !0xFFFF != VENDOR_HYP_BASE {
            return None;
        }
        Call::from_number((id & 0xFFFF) as u16)
    }

    /// The call's row in [`TABLE`].
    pub fn spec(self) -> &'static CallSpec {
        // Every variant has a row: `crate::calls` makes both from one entry (and
        // `every_call_has_one_row_in_numeric_order` below checks it).
        TABLE.iter().find(|s| s.call == self).unwrap_or(&TABLE[0])
    }
}

/// Packs up to [`CONSOLE_WRITE_MAX`] bytes into the five argument registers of
/// `console_write`, little-endian.
pub fn pack_console_bytes(bytes: &[u8]) -> [u64; 5] {
    let mut regs = [0u64; 5];
    for (i, b) in bytes.iter().take(CONSOLE_WRITE_MAX).enumerate() {
        regs[i / 8] |= (*b as u64) << ((i % 8) * 8);
    }
    regs
}

/// Unpacks `len` bytes (at most [`CONSOLE_WRITE_MAX`]) from the registers into `out`
/// and returns them; `None` if `len` is too large.
pub fn unpack_console_bytes(
    len: u64,
    regs: [u64; 5],
    out: &mut [u8; CONSOLE_WRITE_MAX],
) -> Option<&[u8]> {
    let len = usize::try_from(len)
        .ok()
        .filter(|l| *l <= CONSOLE_WRITE_MAX)?;
    for (i, byte) in out.iter_mut().enumerate().take(len) {
        *byte = (regs[i / 8] >> ((i % 8) * 8)) as u8;
    }
    Some(&out[..len])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_call_has_one_row_in_numeric_order() {
        let mut last = None;
        for spec in TABLE {
            assert_eq!(TABLE.iter().filter(|s| s.call == spec.call).count(), 1);
            assert!(
                spec.args.len() <= 6,
                "{} has more than six arguments",
                spec.name
            );
            assert!(
                spec.returns.len() <= 3,
                "{} returns more than three values",
                spec.name
            );
            assert!(
                last < Some(spec.call.number()),
                "{} is out of order",
                spec.name
            );
            last = Some(spec.call.number());
            assert_eq!(spec.call.spec().name, spec.name);
            assert_eq!(
                Call::from_function_id(spec.call.function_id()),
                Some(spec.call)
            );
        }
    }

    /// Every call's wire name is its Rust name in snake case (`ConsoleWrite`,
    /// `console_write`): the two are written side by side in `abi/src/calls.rs`.
    #[test]
    fn every_wire_name_is_the_rust_name_in_snake_case() {
        for spec in TABLE {
            let mut snake = String::new();
            for (i, c) in format!("{:?}", spec.call).chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    snake.push('_');
                }
                snake.push(c.to_ascii_lowercase());
            }
            assert_eq!(spec.name, snake, "{:?}", spec.call);
        }
    }

    #[test]
    fn unknown_ids_decode_to_none() {
        for id in [
            0u64,
            0x8400_0000,
            VENDOR_HYP_BASE | 0xFFFF,
            VENDOR_HYP_BASE | 0x3,
            0xC500_0000,
            u64::MAX,
        ] {
            assert_eq!(Call::from_function_id(id), None, "{id:#x}");
        }
        assert_eq!(
            Call::from_function_id((1 << 32) | Call::Yield.function_id()),
            None
        );
    }

    #[test]
    fn console_bytes_round_trip() {
        let text = b"hello from a guest, forty bytes at most!";
        assert_eq!(text.len(), CONSOLE_WRITE_MAX);
        let regs = pack_console_bytes(text);
        let mut buf = [0; CONSOLE_WRITE_MAX];
        assert_eq!(unpack_console_bytes(40, regs, &mut buf), Some(&text[..]));
        assert_eq!(unpack_console_bytes(3, regs, &mut buf), Some(&b"hel"[..]));
        assert_eq!(unpack_console_bytes(41, regs, &mut buf), None);
        assert_eq!(unpack_console_bytes(u64::MAX, regs, &mut buf), None);
    }

    /// `docs/hypercalls.md` documents exactly the calls of the table, each with its id,
    /// arguments, results and statuses.
    #[test]
    fn docs_match_the_table() {
        let doc = include_str!("../../docs/hypercalls.md");
        let sections: Vec<&str> = doc.split("\n### ").skip(1).collect();
        assert_eq!(
            sections.len(),
            TABLE.len(),
            "docs/hypercalls.md has a section per call"
        );
        for (spec, section) in TABLE.iter().zip(&sections) {
            let heading = section.lines().next().unwrap_or_default();
            let want = format!("`{}` ({:#x})", spec.name, spec.call.function_id());
            assert_eq!(heading, want, "section heading for {}", spec.name);
            for arg in spec.args {
                assert!(
                    section.contains(&format!("`{arg}`")),
                    "{}: argument `{arg}` undocumented",
                    spec.name
                );
            }
            for ret in spec.returns {
                assert!(
                    section.contains(&format!("`{ret}`")),
                    "{}: result `{ret}` undocumented",
                    spec.name
                );
            }
            for status in spec.statuses {
                assert!(
                    section.contains(&format!("`{status:?}`")),
                    "{}: status {status:?} undocumented",
                    spec.name
                );
            }
            for c in spec.caps {
                assert!(
                    spec.args.contains(&c.arg),
                    "{}: {} is no argument",
                    spec.name,
                    c.arg
                );
                let line = format!("- `{}`: ", c.arg);
                let doc = section
                    .lines()
                    .find(|l| l.starts_with(&line))
                    .unwrap_or_else(|| {
                        panic!("{}: capability `{}` undocumented", spec.name, c.arg)
                    });
                for t in c.types {
                    assert!(
                        doc.contains(&format!("{t:?}")),
                        "{}: `{}` may be {t:?}",
                        spec.name,
                        c.arg
                    );
                }
                for (right, _) in c.rights.iter_names() {
                    assert!(
                        doc.contains(right),
                        "{}: `{}` needs {right}",
                        spec.name,
                        c.arg
                    );
                }
                assert_eq!(
                    doc.contains("SELF_DOMAIN"),
                    c.self_domain,
                    "{}: `{}`",
                    spec.name,
                    c.arg
                );
            }
        }
    }
}
