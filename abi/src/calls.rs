//! Every hypercall, defined once: its number, Rust name, wire name, summary, argument
//! registers (with their types and docs), results, capability arguments, statuses and the
//! check of its arguments together.
//!
//! The one `calls!` invocation below (the macro is defined in `crate::args`) generates from
//! these entries the [`Call`] enum and the rows of [`TABLE`] (both re-exported by
//! `crate::hypercall`), one argument type per call with its `Checked` impl, the enum of any
//! call's arguments [`Args`], and [`decode`], [`names`] and [`round_trip`] (all re-exported
//! by `crate::args`). Nothing else in the crate lists the calls.
//!
//! Adding a hypercall touches four files: an entry here, in numeric order; a routing line
//! in `kernel/src/kernel/invoke.rs`; its `invoke_*` method in the kernel's family file; its
//! section in `docs/hypercalls.md` (the tests fail until that agrees with [`TABLE`]).
//!
//! An entry:
//!
//! ```text
//! /// What the call does (the doc of its `Call` variant and of its argument type).
//! NUMBER RustName "wire_name" {
//!     summary: "one line, as docs/hypercalls.md says it",
//!     args: {
//!         /// What x1 is.
//!         name: Type,                // x1 first, at most six; u64, Slot, Port, Rights, bool
//!         ...
//!     },
//!     returns: ["x1", ...],          // the result registers' names, at most three
//!     caps: [CapArg, ...],           // the arguments that name capabilities
//!     statuses: [Status, ...],       // every status it can return besides success
//!     check: |a| expr,               // optional: the arguments together (default Ok(()))
//! }
//! ```
//!
//! A check sees the decoded arguments as `a` (a reference to the argument type) and returns
//! `Result<(), Status>`; it runs after every register has passed its type's decoding and
//! before anything looks at the caller's capabilities.

use crate::args::{calls, check_frames, check_ipa_range, Port, Slot};
use crate::hypercall::{
    any_cap, cap, BOOT_LINUX, BOOT_MICA, CONSOLE_INPUT_MAX, CONSOLE_WRITE_MAX, DOMAIN_CONTROL,
    NAMED_DOMAIN_CONTROL,
};
use crate::layout::PAGE_SIZE;
use crate::{ObjectType, Rights, Status};

calls! {
    /// Who the caller is.
    0x00 Whoami "whoami" {
        summary: "the caller's domain id, vCPU index and capability-space size",
        args: {},
        returns: ["domain_id", "vcpu_index", "slots"],
        caps: [],
        statuses: [],
    }

    /// Write bytes to the hypervisor console.
    0x01 ConsoleWrite "console_write" {
        summary: "write `len` bytes, packed little-endian in x2-x6, to the console",
        args: {
            /// Bytes to write (at most [`CONSOLE_WRITE_MAX`]), packed little-endian into the
            /// five registers after it.
            len: u64,
            /// Bytes 0-7.
            bytes0: u64,
            /// Bytes 8-15.
            bytes1: u64,
            /// Bytes 16-23.
            bytes2: u64,
            /// Bytes 24-31.
            bytes3: u64,
            /// Bytes 32-39.
            bytes4: u64,
        },
        returns: ["written"],
        caps: [],
        statuses: [InvalidArgument],
        check: |a| {
            if a.len > CONSOLE_WRITE_MAX as u64 {
                return Err(Status::InvalidArgument);
            }
            Ok(())
        },
    }

    /// Give up the rest of this time slice.
    0x02 Yield "yield" {
        summary: "give the CPU to the next runnable vCPU",
        args: {},
        returns: [],
        caps: [],
        statuses: [],
    }

    /// Describe the capability in a slot.
    0x10 CapIdentify "cap_identify" {
        summary: "object type and rights (x1 = type | rights << 8) and frame range of a capability",
        args: {
            /// The slot.
            slot: Slot,
        },
        returns: ["type_and_rights", "first_frame", "frame_count"],
        caps: [any_cap("slot")],
        statuses: [InvalidArgument, InvalidCapability, StaleCapability],
    }

    /// Copy a capability within the caller's space with fewer rights or a sub-range.
    0x11 CapDerive "cap_derive" {
        summary: "copy `src` into empty slot `dst` with `rights` (a subset) and, for memory, \
                  frames [first, first+count) (count 0 = the same range)",
        args: {
            /// Source slot.
            src: Slot,
            /// Destination slot.
            dst: Slot,
            /// Rights of the copy.
            rights: Rights,
            /// First frame of the sub-range (absolute).
            first_frame: u64,
            /// Frames in it (0: the source's range).
            frame_count: u64,
        },
        returns: [],
        caps: [any_cap("src")],
        statuses: [
            InvalidArgument,
            InvalidCapability,
            StaleCapability,
            InsufficientRights,
            OutOfRange,
            SlotOccupied,
            QuotaExceeded,
        ],
        check: |a| check_frames(a.first_frame, a.frame_count),
    }

    /// Place a derived copy of a capability into another domain's space.
    0x12 CapGrant "cap_grant" {
        summary: "place a derived copy of `src` into slot `dst` of the domain named by Domain \
                  capability `domain`",
        args: {
            /// Source slot.
            src: Slot,
            /// Slot of the receiver's Domain capability.
            domain: Slot,
            /// Slot in the receiver's space.
            dst: Slot,
            /// Rights of the copy.
            rights: Rights,
            /// First frame of the sub-range (absolute).
            first_frame: u64,
            /// Frames in it (0: the source's range).
            frame_count: u64,
        },
        returns: [],
        caps: [
            cap("src", &ObjectType::ALL, Rights::GRANT),
            cap("domain", &[ObjectType::Domain], Rights::GRANT),
        ],
        statuses: [
            InvalidArgument,
            InvalidCapability,
            StaleCapability,
            InsufficientRights,
            OutOfRange,
            SlotOccupied,
            QuotaExceeded,
        ],
        check: |a| check_frames(a.first_frame, a.frame_count),
    }

    /// Delete every descendant of a capability.
    0x13 CapRevoke "cap_revoke" {
        summary: "delete every descendant of the capability, in every space, and undo their mappings; \
                  a Domain or Vcpu object whose last capability goes is destroyed (see cap_delete)",
        args: {
            /// The slot.
            slot: Slot,
        },
        returns: ["removed"],
        caps: [any_cap("slot")],
        statuses: [InvalidArgument, InvalidCapability],
    }

    /// Delete a capability.
    0x14 CapDelete "cap_delete" {
        summary: "delete the capability (its children stay, re-parented) and undo its mappings; if it \
                  was the last capability to a Domain, the domain ends as by domain_destroy (with the \
                  domains it created), to a Vcpu, the vCPU stops for good",
        args: {
            /// The slot.
            slot: Slot,
        },
        returns: [],
        caps: [any_cap("slot")],
        statuses: [InvalidArgument, InvalidCapability],
    }

    /// Map frames of a Memory capability into a domain's guest-physical space.
    0x20 MemMap "mem_map" {
        summary: "map frames [first, first+count) of Memory capability `memory` at guest-physical \
                  `ipa` of `domain` (a Domain capability or SELF_DOMAIN) with `perms` (READ, WRITE, \
                  EXECUTE within the capability's rights); the stage-2 tables it needs are charged to \
                  `domain`'s quota",
        args: {
            /// Domain capability slot, or [`Slot::SELF_DOMAIN`].
            domain: Slot,
            /// Memory or DeviceMemory capability slot.
            memory: Slot,
            /// Guest-physical address (page aligned).
            ipa: u64,
            /// First frame (absolute).
            first_frame: u64,
            /// Frames.
            frame_count: u64,
            /// READ, WRITE, EXECUTE (READ included).
            perms: Rights,
        },
        returns: [],
        caps: [
            DOMAIN_CONTROL,
            cap("memory", &[ObjectType::Memory, ObjectType::DeviceMemory], Rights::READ),
        ],
        statuses: [
            InvalidArgument,
            InvalidCapability,
            StaleCapability,
            InsufficientRights,
            OutOfRange,
            SlotOccupied,
            OutOfMemory,
            QuotaExceeded,
        ],
        check: |a| {
            let perms = Rights::READ | Rights::WRITE | Rights::EXECUTE;
            if !perms.contains(a.perms) || !a.perms.contains(Rights::READ) {
                return Err(Status::InvalidArgument);
            }
            check_ipa_range(a.ipa, a.frame_count)
        },
    }

    /// Remove guest-physical mappings from a domain.
    0x21 MemUnmap "mem_unmap" {
        summary: "remove `count` pages of mappings at guest-physical `ipa` of `domain`",
        args: {
            /// Domain capability slot, or [`Slot::SELF_DOMAIN`].
            domain: Slot,
            /// Guest-physical address (page aligned).
            ipa: u64,
            /// Pages.
            frame_count: u64,
        },
        returns: ["unmapped"],
        caps: [DOMAIN_CONTROL],
        statuses: [InvalidArgument, InvalidCapability, StaleCapability, InsufficientRights, OutOfRange],
        check: |a| check_ipa_range(a.ipa, a.frame_count),
    }

    /// Create an empty domain.
    0x30 DomainCreate "domain_create" {
        summary: "create an empty domain, named `unnamed-<id>`, with `slots` capability slots and \
                  `quota` bytes of kernel memory (paid from the caller's quota); its Domain capability \
                  goes in `dst`; it ends with the last capability to it (so, unless handed on, with \
                  the caller)",
        args: {
            /// Slot for the new Domain capability.
            dst: Slot,
            /// Slots of its space (16 bits).
            slots: Slot,
            /// Kernel-memory quota in bytes.
            quota: u64,
        },
        returns: ["domain_id"],
        caps: [],
        statuses: [InvalidArgument, SlotOccupied, NoFreeSlot, QuotaExceeded, OutOfMemory],
    }

    /// Destroy a domain: stop its vCPUs, revoke what it holds, scrub its memory.
    0x31 DomainDestroy "domain_destroy" {
        summary: "stop the domain's vCPUs, revoke everything it holds, scrub its private memory",
        args: {
            /// Domain capability slot, or [`Slot::SELF_DOMAIN`].
            domain: Slot,
        },
        returns: [],
        caps: [DOMAIN_CONTROL],
        statuses: [InvalidArgument, InvalidCapability, StaleCapability, InsufficientRights, WrongState],
    }

    /// Stop scheduling a domain's vCPUs.
    0x32 DomainPause "domain_pause" {
        summary: "stop scheduling the domain's vCPUs",
        args: {
            /// Domain capability slot, or [`Slot::SELF_DOMAIN`].
            domain: Slot,
        },
        returns: [],
        caps: [DOMAIN_CONTROL],
        statuses: [InvalidArgument, InvalidCapability, StaleCapability, InsufficientRights, WrongState],
    }

    /// Resume a paused domain.
    0x33 DomainUnpause "domain_unpause" {
        summary: "resume scheduling a paused domain",
        args: {
            /// Domain capability slot, or [`Slot::SELF_DOMAIN`].
            domain: Slot,
        },
        returns: [],
        caps: [DOMAIN_CONTROL],
        statuses: [InvalidArgument, InvalidCapability, StaleCapability, InsufficientRights, WrongState],
    }

    /// Restart a domain from its image.
    0x34 DomainRestart "domain_restart" {
        summary: "stop the domain's vCPUs, scrub and reload its RAM from its image and start it \
                  again (domains created from the system image only)",
        args: {
            /// Domain capability slot, or [`Slot::SELF_DOMAIN`].
            domain: Slot,
        },
        returns: [],
        caps: [DOMAIN_CONTROL],
        statuses: [
            InvalidArgument,
            InvalidCapability,
            StaleCapability,
            InsufficientRights,
            WrongState,
            NotSupported,
        ],
    }

    /// A domain's state, size and CPU time.
    0x35 DomainInfo "domain_info" {
        summary: "x1 = id | state << 16 (0 running, 1 paused, 2 dying) | vCPUs << 24; x2 = bytes of \
                  RAM the kernel gave it; x3 = CPU time of all its vCPUs in ns",
        args: {
            /// Domain capability slot, or [`Slot::SELF_DOMAIN`].
            domain: Slot,
        },
        returns: ["id_state_vcpus", "memory_bytes", "cpu_time_ns"],
        caps: [DOMAIN_CONTROL],
        statuses: [InvalidArgument, InvalidCapability, StaleCapability, InsufficientRights],
    }

    /// Read a domain's recent console output.
    0x36 ConsoleRead "console_read" {
        summary: "the domain's console output: x1 = bytes written so far, x2-x3 = up to 16 bytes \
                  from byte `offset` (the last 4 KiB are kept; an older offset reads from the oldest \
                  kept byte, whose offset is x1 minus the kept length), low byte first",
        args: {
            /// Domain capability slot, or [`Slot::SELF_DOMAIN`].
            domain: Slot,
            /// Byte offset in its console output.
            offset: u64,
        },
        returns: ["total", "bytes0", "bytes1"],
        caps: [DOMAIN_CONTROL],
        statuses: [InvalidArgument, InvalidCapability, StaleCapability, InsufficientRights],
    }

    /// Name a domain (console prefix and reports).
    0x37 DomainSetName "domain_set_name" {
        summary: "name a domain through a Domain capability (never SELF_DOMAIN): 1-31 bytes of \
                  `[a-z0-9-]`, packed little-endian in x2-x5, NUL-padded, used by no other live domain \
                  nor reserved by the system image, not starting with `unnamed-`",
        args: {
            /// Domain capability slot.
            domain: Slot,
            /// Bytes 0-7 of the name: 1-31 bytes of `[a-z0-9-]`, packed little-endian into
            /// the four registers from here, NUL-padded.
            name0: u64,
            /// Bytes 8-15.
            name1: u64,
            /// Bytes 16-23.
            name2: u64,
            /// Bytes 24-31.
            name3: u64,
        },
        returns: [],
        caps: [NAMED_DOMAIN_CONTROL],
        statuses: [InvalidArgument, InvalidCapability, StaleCapability, InsufficientRights, NameInUse],
        check: |a| {
            let name = a.name();
            let len = name.iter().position(|b| *b == 0).unwrap_or(32);
            let valid = (1..=31).contains(&len)
                && name[..len]
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
                && name[len..].iter().all(|b| *b == 0);
            if !valid {
                return Err(Status::InvalidArgument);
            }
            Ok(())
        },
    }

    /// Type bytes into a domain's emulated console.
    0x38 ConsoleInput "console_input" {
        summary: "type `len` bytes (at most 32, packed little-endian in x3-x6) into the emulated \
                  console (PL011) of a domain that has one (a Linux guest; any other: `WrongState`); \
                  x1 = how many its receive FIFO took (fewer when the guest is slow to read: send \
                  the rest again)",
        args: {
            /// Domain capability slot.
            domain: Slot,
            /// Bytes to type (at most [`CONSOLE_INPUT_MAX`]), packed little-endian into the
            /// four registers after it.
            len: u64,
            /// Bytes 0-7.
            bytes0: u64,
            /// Bytes 8-15.
            bytes1: u64,
            /// Bytes 16-23.
            bytes2: u64,
            /// Bytes 24-31.
            bytes3: u64,
        },
        returns: ["taken"],
        caps: [NAMED_DOMAIN_CONTROL],
        statuses: [InvalidArgument, InvalidCapability, StaleCapability, InsufficientRights, WrongState],
        check: |a| {
            if a.len > CONSOLE_INPUT_MAX as u64 {
                return Err(Status::InvalidArgument);
            }
            Ok(())
        },
    }

    /// Choose how a created domain boots (Mica's protocol or Linux's).
    0x39 DomainSetBoot "domain_set_boot" {
        summary: "choose how a domain the caller created boots, before any of its vCPUs has \
                  started: `protocol` 0 = Mica's, 1 = Linux's (caches off, RAM cleaned to the point of \
                  coherency at the start of vCPU 0, an emulated PL011 console, a clock starting with \
                  vCPU 0); a domain of the system image keeps its record's",
        args: {
            /// Domain capability slot.
            domain: Slot,
            /// [`BOOT_MICA`] or [`BOOT_LINUX`].
            protocol: u64,
        },
        returns: [],
        caps: [NAMED_DOMAIN_CONTROL],
        statuses: [InvalidArgument, InvalidCapability, StaleCapability, InsufficientRights, WrongState],
        check: |a| match a.protocol {
            BOOT_MICA | BOOT_LINUX => Ok(()),
            _ => Err(Status::InvalidArgument),
        },
    }

    /// Create a vCPU in a domain.
    0x40 VcpuCreate "vcpu_create" {
        summary: "create vCPU number `index` in `domain`, to run on physical CPU `cpu` (0xFF: the \
                  kernel picks): any CPU if the caller holds a SchedControl capability, else one its \
                  own vCPUs may run on; its Vcpu capability goes in `dst`",
        args: {
            /// Domain capability slot, or [`Slot::SELF_DOMAIN`].
            domain: Slot,
            /// Slot for the Vcpu capability.
            dst: Slot,
            /// Its index in the domain (16 bits).
            index: Slot,
            /// Physical CPU (`ANY_CPU`: the kernel picks).
            cpu: u64,
        },
        returns: [],
        caps: [DOMAIN_CONTROL],
        statuses: [
            InvalidArgument,
            InvalidCapability,
            StaleCapability,
            InsufficientRights,
            SlotOccupied,
            QuotaExceeded,
            WrongState,
        ],
    }

    /// Start a created vCPU at an entry point.
    0x41 VcpuStart "vcpu_start" {
        summary: "start a created vCPU at guest-physical `entry` with `arg` in x0",
        args: {
            /// Vcpu capability slot.
            vcpu: Slot,
            /// Guest-physical entry point.
            entry: u64,
            /// x0 at entry.
            arg: u64,
        },
        returns: [],
        caps: [cap("vcpu", &[ObjectType::Vcpu], Rights::CONTROL)],
        statuses: [InvalidArgument, InvalidCapability, StaleCapability, InsufficientRights, WrongState],
    }

    /// Create an event channel: two connected endpoint capabilities.
    0x50 EvtchnCreate "evtchn_create" {
        summary: "create an event channel; its two connected endpoints (SEND | RECEIVE | GRANT) go \
                  in empty slots `dst_a` and `dst_b` (grant one to the peer domain)",
        args: {
            /// Slot for the first endpoint.
            dst_a: Slot,
            /// Slot for the second endpoint.
            dst_b: Slot,
        },
        returns: [],
        caps: [],
        statuses: [InvalidArgument, InvalidCapability, SlotOccupied, QuotaExceeded, OutOfMemory],
    }

    /// Bind an endpoint to a port of the caller's event page.
    0x51 EvtchnBind "evtchn_bind" {
        summary: "deliver events sent to `endpoint` as port `port` of the caller's event page, \
                  waking vCPU `vcpu` (events latched before binding are delivered now)",
        args: {
            /// Endpoint capability slot.
            endpoint: Slot,
            /// Event-page port.
            port: Port,
            /// Index of the vCPU to wake (16 bits).
            vcpu: Slot,
        },
        returns: [],
        caps: [cap("endpoint", &[ObjectType::EventChannel], Rights::RECEIVE)],
        statuses: [
            InvalidArgument,
            InvalidCapability,
            StaleCapability,
            InsufficientRights,
            SlotOccupied,
            WrongState,
        ],
    }

    /// Signal the peer of an endpoint.
    0x52 EvtchnSend "evtchn_send" {
        summary: "signal the other endpoint of the channel: its port becomes pending and, unless \
                  masked, its vCPU is woken and gets the upcall",
        args: {
            /// Endpoint capability slot.
            endpoint: Slot,
        },
        returns: [],
        caps: [cap("endpoint", &[ObjectType::EventChannel], Rights::SEND)],
        statuses: [InvalidArgument, InvalidCapability, StaleCapability, InsufficientRights, PeerClosed],
    }

    /// Mask or unmask the upcall of a bound endpoint.
    0x53 EvtchnMask "evtchn_mask" {
        summary: "mask (`masked` = 1) or unmask (0) the upcall of an endpoint; unmasking with an \
                  event pending raises it",
        args: {
            /// Endpoint capability slot.
            endpoint: Slot,
            /// Mask (1) or unmask (0).
            masked: bool,
        },
        returns: [],
        caps: [cap("endpoint", &[ObjectType::EventChannel], Rights::RECEIVE)],
        statuses: [InvalidArgument, InvalidCapability, StaleCapability, InsufficientRights],
    }

    /// Register the caller's event page.
    0x54 EventPageSet "event_page_set" {
        summary: "use the page at guest-physical `ipa` (page aligned, mapped writable in the \
                  caller's RAM) as the caller's event page",
        args: {
            /// Guest-physical address of the page (page aligned).
            ipa: u64,
        },
        returns: [],
        caps: [],
        statuses: [InvalidArgument, OutOfRange],
        check: |a| {
            if !a.ipa.is_multiple_of(PAGE_SIZE) {
                return Err(Status::InvalidArgument);
            }
            Ok(())
        },
    }

    /// Set a vCPU's scheduling parameters.
    0x60 SchedSet "sched_set" {
        summary: "through SchedControl capability `control`, set the priority, budget, period and \
                  affinity of the vCPU named by `target` (`abi::sched::pack_target`: domain id, \
                  vCPU index, priority); budget 0 and period 0 = no reservation; reservations on \
                  a CPU above 100% are refused; the vCPU migrates if its CPU leaves `affinity`",
        args: {
            /// SchedControl capability slot.
            control: Slot,
            /// Domain, vCPU and priority (`crate::sched::pack_target`).
            target: u64,
            /// Budget per period, ns.
            budget_ns: u64,
            /// Period, ns.
            period_ns: u64,
            /// Physical CPUs it may run on (a bit per CPU).
            affinity: u64,
        },
        returns: [],
        caps: [cap("control", &[ObjectType::SchedControl], Rights::CONTROL)],
        statuses: [
            InvalidArgument,
            InvalidCapability,
            StaleCapability,
            InsufficientRights,
            OutOfRange,
            Overcommitted,
        ],
        check: |a| {
            crate::sched::unpack_target(a.target)
                .map(|_| ())
                .ok_or(Status::InvalidArgument)
        },
    }

    /// Deliver a physical interrupt as an event.
    0x70 IrqBindEvent "irq_bind_event" {
        summary: "deliver the physical interrupt of Irq capability `irq` as an event on endpoint \
                  `endpoint` (held by the caller and bound to a port of its event page); the line \
                  stays active until `irq_ack`; the interrupt is enabled and routed to the CPU of \
                  the endpoint's vCPU",
        args: {
            /// Irq capability slot.
            irq: Slot,
            /// Endpoint capability slot.
            endpoint: Slot,
        },
        returns: [],
        caps: [
            cap("irq", &[ObjectType::Irq], Rights::RECEIVE),
            cap("endpoint", &[ObjectType::EventChannel], Rights::RECEIVE),
        ],
        statuses: [InvalidArgument, InvalidCapability, StaleCapability, InsufficientRights, WrongState],
    }

    /// Deliver a physical interrupt as a hardware-deactivated virtual interrupt.
    0x71 IrqBindVirtual "irq_bind_virtual" {
        summary: "inject the physical interrupt of Irq capability `irq` into the caller's virtual GIC \
                  as the same INTID, hardware-linked: the guest's EOI deactivates the physical line; \
                  routed to the CPU of vCPU `vcpu`",
        args: {
            /// Irq capability slot.
            irq: Slot,
            /// Index of the vCPU (16 bits).
            vcpu: Slot,
        },
        returns: [],
        caps: [cap("irq", &[ObjectType::Irq], Rights::RECEIVE)],
        statuses: [InvalidArgument, InvalidCapability, StaleCapability, InsufficientRights, NotSupported],
    }

    /// Acknowledge (deactivate) an interrupt delivered as an event.
    0x72 IrqAck "irq_ack" {
        summary: "deactivate the physical interrupt after handling an event-delivered occurrence",
        args: {
            /// Irq capability slot.
            irq: Slot,
        },
        returns: [],
        caps: [cap("irq", &[ObjectType::Irq], Rights::RECEIVE)],
        statuses: [InvalidArgument, InvalidCapability, StaleCapability, InsufficientRights, WrongState],
    }

    /// Stop delivering an interrupt (it is masked).
    0x73 IrqUnbind "irq_unbind" {
        summary: "stop delivering the interrupt; the physical line is masked (and deactivated if it \
                  was left active)",
        args: {
            /// Irq capability slot.
            irq: Slot,
        },
        returns: [],
        caps: [cap("irq", &[ObjectType::Irq], Rights::RECEIVE)],
        statuses: [InvalidArgument, InvalidCapability, StaleCapability, InsufficientRights],
    }

    /// What a virtio device's driver has set up (for the domain that serves it).
    0x80 VirtioInfo "virtio_info" {
        summary: "the virtio device's status and epoch (x1 = status | epoch << 32), the features \
                  driver and device agreed on, and the size of each live queue (16 bits each, \
                  queue 0 lowest; 0 = not live)",
        args: {
            /// VirtioDevice capability slot.
            device: Slot,
        },
        returns: ["status_and_epoch", "features", "queue_sizes"],
        caps: [cap("device", &[ObjectType::VirtioDevice], Rights::CONTROL)],
        statuses: [InvalidArgument, InvalidCapability, StaleCapability, InsufficientRights],
    }

    /// Where a live queue of a virtio device is in its guest's memory.
    0x81 VirtioQueue "virtio_queue" {
        summary: "the guest-physical addresses of live queue `queue`'s descriptor table, \
                  available ring and used ring; WrongState if the queue is not live or the \
                  guest reset the device since `epoch`",
        args: {
            /// VirtioDevice capability slot.
            device: Slot,
            /// The queue's index.
            queue: u64,
            /// The epoch the serving domain works in (`virtio_info`).
            epoch: u64,
        },
        returns: ["desc", "driver", "device"],
        caps: [cap("device", &[ObjectType::VirtioDevice], Rights::CONTROL)],
        statuses: [InvalidArgument, InvalidCapability, StaleCapability, InsufficientRights, WrongState],
    }

    /// The serving domain used buffers of a virtio device, or found its queues broken.
    0x82 VirtioSignal "virtio_signal" {
        summary: "buffers of the device's queues were used in `epoch` (the guest is interrupted), \
                  or, with `broken`, the guest broke a queue's rules (the device needs a reset); \
                  WrongState if the driver reset the device since `epoch`",
        args: {
            /// VirtioDevice capability slot.
            device: Slot,
            /// The epoch the serving domain worked in (`virtio_info`).
            epoch: u64,
            /// The device needs a reset instead.
            broken: bool,
        },
        returns: [],
        caps: [cap("device", &[ObjectType::VirtioDevice], Rights::CONTROL)],
        statuses: [InvalidArgument, InvalidCapability, StaleCapability, InsufficientRights, WrongState],
    }

    /// Eight bytes of a virtio device's configuration, as its guest reads them.
    0x83 VirtioConfig "virtio_config" {
        summary: "eight bytes of the device's configuration space from `offset` (little-endian; \
                  zero past its end), as the guest sees them: a block device's capacity at 0",
        args: {
            /// VirtioDevice capability slot.
            device: Slot,
            /// Byte offset in the configuration space (below `virtio::CONFIG_BYTES`).
            offset: u64,
        },
        returns: ["value"],
        caps: [cap("device", &[ObjectType::VirtioDevice], Rights::CONTROL)],
        statuses: [InvalidArgument, InvalidCapability, StaleCapability, InsufficientRights],
        check: |a| {
            if a.offset >= crate::virtio::CONFIG_BYTES as u64 {
                return Err(Status::InvalidArgument);
            }
            Ok(())
        },
    }
}
