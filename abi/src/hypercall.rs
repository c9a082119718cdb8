//! The hypercall table: every call's number, arguments, results, rights and statuses.
//!
//! Calls use the SMCCC vendor-specific hypervisor service range (DESIGN.md §3): fast
//! calls, SMC64 convention, owning entity 6, so a function id is
//! [`VENDOR_HYP_BASE`]` | number`. On aarch64 the id goes in x0 (`hvc #0`), arguments in
//! x1-x6, the status comes back in x0 and values in x1-x3; x86_64 uses `vmmcall` with the
//! registers of DESIGN.md §3. [`TABLE`] is the single definition the kernel's decoder,
//! `mica-rt`'s wrappers and `docs/hypercalls.md` (checked by a test) all follow.

use crate::{ObjectType, Rights, Status};

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

/// A hypercall of this ABI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Call {
    /// Who the caller is.
    Whoami = 0x00,
    /// Write bytes to the hypervisor console.
    ConsoleWrite = 0x01,
    /// Give up the rest of this time slice.
    Yield = 0x02,
    /// Describe the capability in a slot.
    CapIdentify = 0x10,
    /// Copy a capability within the caller's space with fewer rights or a sub-range.
    CapDerive = 0x11,
    /// Place a derived copy of a capability into another domain's space.
    CapGrant = 0x12,
    /// Delete every descendant of a capability.
    CapRevoke = 0x13,
    /// Delete a capability.
    CapDelete = 0x14,
    /// Map frames of a Memory capability into a domain's guest-physical space.
    MemMap = 0x20,
    /// Remove guest-physical mappings from a domain.
    MemUnmap = 0x21,
    /// Create an empty domain.
    DomainCreate = 0x30,
    /// Destroy a domain: stop its vCPUs, revoke what it holds, scrub its memory.
    DomainDestroy = 0x31,
    /// Stop scheduling a domain's vCPUs.
    DomainPause = 0x32,
    /// Resume a paused domain.
    DomainUnpause = 0x33,
    /// Restart a domain from its image.
    DomainRestart = 0x34,
    /// A domain's state, size and CPU time.
    DomainInfo = 0x35,
    /// Read a domain's recent console output.
    ConsoleRead = 0x36,
    /// Name a domain (console prefix and reports).
    DomainSetName = 0x37,
    /// Type bytes into a domain's emulated console.
    ConsoleInput = 0x38,
    /// Choose how a created domain boots (Mica's protocol or Linux's).
    DomainSetBoot = 0x39,
    /// Create a vCPU in a domain.
    VcpuCreate = 0x40,
    /// Start a created vCPU at an entry point.
    VcpuStart = 0x41,
    /// Create an event channel: two connected endpoint capabilities.
    EvtchnCreate = 0x50,
    /// Bind an endpoint to a port of the caller's event page.
    EvtchnBind = 0x51,
    /// Signal the peer of an endpoint.
    EvtchnSend = 0x52,
    /// Mask or unmask the upcall of a bound endpoint.
    EvtchnMask = 0x53,
    /// Register the caller's event page.
    EventPageSet = 0x54,
    /// Set a vCPU's scheduling parameters.
    SchedSet = 0x60,
    /// Deliver a physical interrupt as an event.
    IrqBindEvent = 0x70,
    /// Deliver a physical interrupt as a hardware-deactivated virtual interrupt.
    IrqBindVirtual = 0x71,
    /// Acknowledge (deactivate) an interrupt delivered as an event.
    IrqAck = 0x72,
    /// Stop delivering an interrupt (it is masked).
    IrqUnbind = 0x73,
}

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
const DOMAIN_CONTROL: CapArg = CapArg {
    arg: "domain",
    types: &[ObjectType::Domain],
    rights: Rights::CONTROL,
    self_domain: true,
};

/// A Domain capability with CONTROL (never [`SELF_DOMAIN`]).
const NAMED_DOMAIN_CONTROL: CapArg = CapArg {
    self_domain: false,
    ..DOMAIN_CONTROL
};

/// Any capability, no right needed, under argument name `arg`.
const fn any_cap(arg: &'static str) -> CapArg {
    CapArg {
        arg,
        types: &ObjectType::ALL,
        rights: Rights::empty(),
        self_domain: false,
    }
}

/// A capability of type `t` carrying `rights`, under argument name `arg`.
const fn cap(arg: &'static str, t: &'static [ObjectType], rights: Rights) -> CapArg {
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

use Status::*;

/// Every hypercall, in numeric order.
pub const TABLE: &[CallSpec] = &[
    CallSpec {
        call: Call::Whoami,
        name: "whoami",
        summary: "the caller's domain id, vCPU index and capability-space size",
        args: crate::args::Whoami::ARGS,
        returns: &["domain_id", "vcpu_index", "slots"],
        caps: &[],
        statuses: &[],
    },
    CallSpec {
        call: Call::ConsoleWrite,
        name: "console_write",
        summary: "write `len` bytes, packed little-endian in x2-x6, to the console",
        args: crate::args::ConsoleWrite::ARGS,
        returns: &["written"],
        caps: &[],
        statuses: &[InvalidArgument],
    },
    CallSpec {
        call: Call::Yield,
        name: "yield",
        summary: "give the CPU to the next runnable vCPU",
        args: crate::args::Yield::ARGS,
        returns: &[],
        caps: &[],
        statuses: &[],
    },
    CallSpec {
        call: Call::CapIdentify,
        name: "cap_identify",
        summary: "object type and rights (x1 = type | rights << 8) and frame range of a capability",
        args: crate::args::CapIdentify::ARGS,
        returns: &["type_and_rights", "first_frame", "frame_count"],
        caps: &[any_cap("slot")],
        statuses: &[InvalidArgument, InvalidCapability, StaleCapability],
    },
    CallSpec {
        call: Call::CapDerive,
        name: "cap_derive",
        summary: "copy `src` into empty slot `dst` with `rights` (a subset) and, for memory, \
                  frames [first, first+count) (count 0 = the same range)",
        args: crate::args::CapDerive::ARGS,
        returns: &[],
        caps: &[any_cap("src")],
        statuses: &[
            InvalidArgument,
            InvalidCapability,
            StaleCapability,
            InsufficientRights,
            OutOfRange,
            SlotOccupied,
            QuotaExceeded,
        ],
    },
    CallSpec {
        call: Call::CapGrant,
        name: "cap_grant",
        summary: "place a derived copy of `src` into slot `dst` of the domain named by Domain \
                  capability `domain`",
        args: crate::args::CapGrant::ARGS,
        returns: &[],
        caps: &[
            cap("src", &ObjectType::ALL, Rights::GRANT),
            cap("domain", &[ObjectType::Domain], Rights::GRANT),
        ],
        statuses: &[
            InvalidArgument,
            InvalidCapability,
            StaleCapability,
            InsufficientRights,
            OutOfRange,
            SlotOccupied,
            QuotaExceeded,
        ],
    },
    CallSpec {
        call: Call::CapRevoke,
        name: "cap_revoke",
        summary: "delete every descendant of the capability, in every space, and undo their mappings; \
                  a Domain or Vcpu object whose last capability goes is destroyed (see cap_delete)",
        args: crate::args::CapRevoke::ARGS,
        returns: &["removed"],
        caps: &[any_cap("slot")],
        statuses: &[InvalidArgument, InvalidCapability],
    },
    CallSpec {
        call: Call::CapDelete,
        name: "cap_delete",
        summary: "delete the capability (its children stay, re-parented) and undo its mappings; if it \
                  was the last capability to a Domain, the domain ends as by domain_destroy (with the \
                  domains it created), to a Vcpu, the vCPU stops for good",
        args: crate::args::CapDelete::ARGS,
        returns: &[],
        caps: &[any_cap("slot")],
        statuses: &[InvalidArgument, InvalidCapability],
    },
    CallSpec {
        call: Call::MemMap,
        name: "mem_map",
        summary: "map frames [first, first+count) of Memory capability `memory` at guest-physical \
                  `ipa` of `domain` (a Domain capability or SELF_DOMAIN) with `perms` (READ, WRITE, \
                  EXECUTE within the capability's rights); the stage-2 tables it needs are charged to \
                  `domain`'s quota",
        args: crate::args::MemMap::ARGS,
        returns: &[],
        caps: &[
            DOMAIN_CONTROL,
            cap(
                "memory",
                &[ObjectType::Memory, ObjectType::DeviceMemory],
                Rights::READ,
            ),
        ],
        statuses: &[
            InvalidArgument,
            InvalidCapability,
            StaleCapability,
            InsufficientRights,
            OutOfRange,
            SlotOccupied,
            OutOfMemory,
            QuotaExceeded,
        ],
    },
    CallSpec {
        call: Call::MemUnmap,
        name: "mem_unmap",
        summary: "remove `count` pages of mappings at guest-physical `ipa` of `domain`",
        args: crate::args::MemUnmap::ARGS,
        returns: &["unmapped"],
        caps: &[DOMAIN_CONTROL],
        statuses: &[InvalidArgument, InvalidCapability, StaleCapability, InsufficientRights, OutOfRange],
    },
    CallSpec {
        call: Call::DomainCreate,
        name: "domain_create",
        summary: "create an empty domain, named `unnamed-<id>`, with `slots` capability slots and \
                  `quota` bytes of kernel memory (paid from the caller's quota); its Domain capability \
                  goes in `dst`; it ends with the last capability to it (so, unless handed on, with \
                  the caller)",
        args: crate::args::DomainCreate::ARGS,
        returns: &["domain_id"],
        caps: &[],
        statuses: &[InvalidArgument, SlotOccupied, NoFreeSlot, QuotaExceeded, OutOfMemory],
    },
    CallSpec {
        call: Call::DomainDestroy,
        name: "domain_destroy",
        summary: "stop the domain's vCPUs, revoke everything it holds, scrub its private memory",
        args: crate::args::DomainDestroy::ARGS,
        returns: &[],
        caps: &[DOMAIN_CONTROL],
        statuses: &[InvalidArgument, InvalidCapability, StaleCapability, InsufficientRights, WrongState],
    },
    CallSpec {
        call: Call::DomainPause,
        name: "domain_pause",
        summary: "stop scheduling the domain's vCPUs",
        args: crate::args::DomainPause::ARGS,
        returns: &[],
        caps: &[DOMAIN_CONTROL],
        statuses: &[InvalidArgument, InvalidCapability, StaleCapability, InsufficientRights, WrongState],
    },
    CallSpec {
        call: Call::DomainUnpause,
        name: "domain_unpause",
        summary: "resume scheduling a paused domain",
        args: crate::args::DomainUnpause::ARGS,
        returns: &[],
        caps: &[DOMAIN_CONTROL],
        statuses: &[InvalidArgument, InvalidCapability, StaleCapability, InsufficientRights, WrongState],
    },
    CallSpec {
        call: Call::DomainRestart,
        name: "domain_restart",
        summary: "stop the domain's vCPUs, scrub and reload its RAM from its image and start it \
                  again (domains created from the system image only)",
        args: crate::args::DomainRestart::ARGS,
        returns: &[],
        caps: &[DOMAIN_CONTROL],
        statuses: &[InvalidArgument, InvalidCapability, StaleCapability, InsufficientRights, WrongState, NotSupported],
    },
    CallSpec {
        call: Call::DomainInfo,
        name: "domain_info",
        summary: "x1 = id | state << 16 (0 running, 1 paused, 2 dying) | vCPUs << 24; x2 = bytes of \
                  RAM the kernel gave it; x3 = CPU time of all its vCPUs in ns",
        args: crate::args::DomainInfo::ARGS,
        returns: &["id_state_vcpus", "memory_bytes", "cpu_time_ns"],
        caps: &[DOMAIN_CONTROL],
        statuses: &[InvalidArgument, InvalidCapability, StaleCapability, InsufficientRights],
    },
    CallSpec {
        call: Call::ConsoleRead,
        name: "console_read",
        summary: "the domain's console output: x1 = bytes written so far, x2-x3 = up to 16 bytes \
                  from byte `offset` (the last 4 KiB are kept; an older offset reads from the oldest \
                  kept byte, whose offset is x1 minus the kept length), low byte first",
        args: crate::args::ConsoleRead::ARGS,
        returns: &["total", "bytes0", "bytes1"],
        caps: &[DOMAIN_CONTROL],
        statuses: &[InvalidArgument, InvalidCapability, StaleCapability, InsufficientRights],
    },
    CallSpec {
        call: Call::DomainSetName,
        name: "domain_set_name",
        summary: "name a domain through a Domain capability (never SELF_DOMAIN): 1-31 bytes of \
                  `[a-z0-9-]`, packed little-endian in x2-x5, NUL-padded, used by no other live domain \
                  nor reserved by the system image, not starting with `unnamed-`",
        args: crate::args::DomainSetName::ARGS,
        returns: &[],
        caps: &[NAMED_DOMAIN_CONTROL],
        statuses: &[InvalidArgument, InvalidCapability, StaleCapability, InsufficientRights, NameInUse],
    },
    CallSpec {
        call: Call::ConsoleInput,
        name: "console_input",
        summary: "type `len` bytes (at most 32, packed little-endian in x3-x6) into the emulated \
                  console (PL011) of a domain that has one (a Linux guest; any other: `WrongState`); \
                  x1 = how many its receive FIFO took (fewer when the guest is slow to read: send \
                  the rest again)",
        args: crate::args::ConsoleInput::ARGS,
        returns: &["taken"],
        caps: &[NAMED_DOMAIN_CONTROL],
        statuses: &[InvalidArgument, InvalidCapability, StaleCapability, InsufficientRights, WrongState],
    },
    CallSpec {
        call: Call::DomainSetBoot,
        name: "domain_set_boot",
        summary: "choose how a domain the caller created boots, before any of its vCPUs has \
                  started: `protocol` 0 = Mica's, 1 = Linux's (caches off, RAM cleaned to the point of \
                  coherency at the start of vCPU 0, an emulated PL011 console, a clock starting with \
                  vCPU 0); a domain of the system image keeps its record's",
        args: crate::args::DomainSetBoot::ARGS,
        returns: &[],
        caps: &[NAMED_DOMAIN_CONTROL],
        statuses: &[InvalidArgument, InvalidCapability, StaleCapability, InsufficientRights, WrongState],
    },
    CallSpec {
        call: Call::VcpuCreate,
        name: "vcpu_create",
        summary: "create vCPU number `index` in `domain`, to run on physical CPU `cpu` (0xFF: the \
                  kernel picks): any CPU if the caller holds a SchedControl capability, else one its \
                  own vCPUs may run on; its Vcpu capability goes in `dst`",
        args: crate::args::VcpuCreate::ARGS,
        returns: &[],
        caps: &[DOMAIN_CONTROL],
        statuses: &[
            InvalidArgument,
            InvalidCapability,
            StaleCapability,
            InsufficientRights,
            SlotOccupied,
            QuotaExceeded,
            WrongState,
        ],
    },
    CallSpec {
        call: Call::VcpuStart,
        name: "vcpu_start",
        summary: "start a created vCPU at guest-physical `entry` with `arg` in x0",
        args: crate::args::VcpuStart::ARGS,
        returns: &[],
        caps: &[cap("vcpu", &[ObjectType::Vcpu], Rights::CONTROL)],
        statuses: &[InvalidArgument, InvalidCapability, StaleCapability, InsufficientRights, WrongState],
    },
    CallSpec {
        call: Call::EvtchnCreate,
        name: "evtchn_create",
        summary: "create an event channel; its two connected endpoints (SEND | RECEIVE | GRANT) go \
                  in empty slots `dst_a` and `dst_b` (grant one to the peer domain)",
        args: crate::args::EvtchnCreate::ARGS,
        returns: &[],
        caps: &[],
        statuses: &[InvalidArgument, InvalidCapability, SlotOccupied, QuotaExceeded, OutOfMemory],
    },
    CallSpec {
        call: Call::EvtchnBind,
        name: "evtchn_bind",
        summary: "deliver events sent to `endpoint` as port `port` of the caller's event page, \
                  waking vCPU `vcpu` (events latched before binding are delivered now)",
        args: crate::args::EvtchnBind::ARGS,
        returns: &[],
        caps: &[cap("endpoint", &[ObjectType::EventChannel], Rights::RECEIVE)],
        statuses: &[InvalidArgument, InvalidCapability, StaleCapability, InsufficientRights, SlotOccupied, WrongState],
    },
    CallSpec {
        call: Call::EvtchnSend,
        name: "evtchn_send",
        summary: "signal the other endpoint of the channel: its port becomes pending and, unless \
                  masked, its vCPU is woken and gets the upcall",
        args: crate::args::EvtchnSend::ARGS,
        returns: &[],
        caps: &[cap("endpoint", &[ObjectType::EventChannel], Rights::SEND)],
        statuses: &[InvalidArgument, InvalidCapability, StaleCapability, InsufficientRights, PeerClosed],
    },
    CallSpec {
        call: Call::EvtchnMask,
        name: "evtchn_mask",
        summary: "mask (`masked` = 1) or unmask (0) the upcall of an endpoint; unmasking with an \
                  event pending raises it",
        args: crate::args::EvtchnMask::ARGS,
        returns: &[],
        caps: &[cap("endpoint", &[ObjectType::EventChannel], Rights::RECEIVE)],
        statuses: &[InvalidArgument, InvalidCapability, StaleCapability, InsufficientRights],
    },
    CallSpec {
        call: Call::EventPageSet,
        name: "event_page_set",
        summary: "use the page at guest-physical `ipa` (page aligned, mapped writable in the \
                  caller's RAM) as the caller's event page",
        args: crate::args::EventPageSet::ARGS,
        returns: &[],
        caps: &[],
        statuses: &[InvalidArgument, OutOfRange],
    },
    CallSpec {
        call: Call::SchedSet,
        name: "sched_set",
        summary: "through SchedControl capability `control`, set the priority, budget, period and \
                  affinity of the vCPU named by `target` (`abi::sched::pack_target`: domain id, \
                  vCPU index, priority); budget 0 and period 0 = no reservation; reservations on \
                  a CPU above 100% are refused; the vCPU migrates if its CPU leaves `affinity`",
        args: crate::args::SchedSet::ARGS,
        returns: &[],
        caps: &[cap("control", &[ObjectType::SchedControl], Rights::CONTROL)],
        statuses: &[InvalidArgument, InvalidCapability, StaleCapability, InsufficientRights, OutOfRange, Overcommitted],
    },
    CallSpec {
        call: Call::IrqBindEvent,
        name: "irq_bind_event",
        summary: "deliver the physical interrupt of Irq capability `irq` as an event on endpoint \
                  `endpoint` (held by the caller and bound to a port of its event page); the line \
                  stays active until `irq_ack`; the interrupt is enabled and routed to the CPU of \
                  the endpoint's vCPU",
        args: crate::args::IrqBindEvent::ARGS,
        returns: &[],
        caps: &[
            cap("irq", &[ObjectType::Irq], Rights::RECEIVE),
            cap("endpoint", &[ObjectType::EventChannel], Rights::RECEIVE),
        ],
        statuses: &[InvalidArgument, InvalidCapability, StaleCapability, InsufficientRights, WrongState],
    },
    CallSpec {
        call: Call::IrqBindVirtual,
        name: "irq_bind_virtual",
        summary: "inject the physical interrupt of Irq capability `irq` into the caller's virtual GIC \
                  as the same INTID, hardware-linked: the guest's EOI deactivates the physical line; \
                  routed to the CPU of vCPU `vcpu`",
        args: crate::args::IrqBindVirtual::ARGS,
        returns: &[],
        caps: &[cap("irq", &[ObjectType::Irq], Rights::RECEIVE)],
        statuses: &[InvalidArgument, InvalidCapability, StaleCapability, InsufficientRights, NotSupported],
    },
    CallSpec {
        call: Call::IrqAck,
        name: "irq_ack",
        summary: "deactivate the physical interrupt after handling an event-delivered occurrence",
        args: crate::args::IrqAck::ARGS,
        returns: &[],
        caps: &[cap("irq", &[ObjectType::Irq], Rights::RECEIVE)],
        statuses: &[InvalidArgument, InvalidCapability, StaleCapability, InsufficientRights, WrongState],
    },
    CallSpec {
        call: Call::IrqUnbind,
        name: "irq_unbind",
        summary: "stop delivering the interrupt; the physical line is masked (and deactivated if it \
                  was left active)",
        args: crate::args::IrqUnbind::ARGS,
        returns: &[],
        caps: &[cap("irq", &[ObjectType::Irq], Rights::RECEIVE)],
        statuses: &[InvalidArgument, InvalidCapability, StaleCapability, InsufficientRights],
    },
];

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
        TABLE
            .iter()
            .map(|s| s.call)
            .find(|c| c.number() as u64 == id & 0xFFFF)
    }

    /// The call's row in [`TABLE`].
    pub fn spec(self) -> &'static CallSpec {
        // Every variant has a row: checked by `every_call_has_one_row` below.
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
