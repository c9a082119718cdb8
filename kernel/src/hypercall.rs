//! Hypercall decoding: the registers of a call into the kernel's typed [`Request`].
//!
//! [`decode`] is pure: the syntax of every call's arguments (slots that fit in 16 bits, known
//! rights bits, aligned and non-wrapping addresses, ...) is `mica_abi::args`'s, which the
//! runtime encodes with too; what fails it is `InvalidArgument` (or `OutOfRange`).
//! `Kernel::dispatch` (`kernel/invoke.rs`) then runs each request's check section
//! (capability look-ups, ranges, states — reads only) before its act section. The table of
//! calls and their statuses is `mica_abi::hypercall::TABLE`; `docs/hypercalls.md` describes
//! each.

use mica_abi::hypercall::Call;
use mica_abi::{Rights, Status};
use mica_caps::FrameRange;

/// A decoded hypercall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// `whoami`.
    Whoami,
    /// `console_write`: up to 40 bytes.
    ConsoleWrite {
        /// Byte count.
        len: u64,
        /// Packed bytes.
        regs: [u64; 5],
    },
    /// `yield`.
    Yield,
    /// `cap_identify`.
    CapIdentify {
        /// Slot.
        slot: u16,
    },
    /// `cap_derive`.
    CapDerive {
        /// Source slot.
        src: u16,
        /// Destination slot.
        dst: u16,
        /// Rights of the copy.
        rights: Rights,
        /// Sub-range (None = the same range).
        frames: Option<FrameRange>,
    },
    /// `cap_grant`.
    CapGrant {
        /// Source slot.
        src: u16,
        /// Slot of the Domain capability of the receiver.
        domain: u16,
        /// Slot in the receiver's space.
        dst: u16,
        /// Rights of the copy.
        rights: Rights,
        /// Sub-range (None = the same range).
        frames: Option<FrameRange>,
    },
    /// `cap_revoke`.
    CapRevoke {
        /// Slot.
        slot: u16,
    },
    /// `cap_delete`.
    CapDelete {
        /// Slot.
        slot: u16,
    },
    /// `mem_map`.
    MemMap {
        /// Domain argument (slot or SELF_DOMAIN).
        domain: u64,
        /// Memory capability slot.
        memory: u16,
        /// Guest-physical address (page aligned).
        ipa: u64,
        /// First frame (absolute frame number within the capability's range).
        first_frame: u64,
        /// Pages.
        pages: u64,
        /// Permissions.
        perms: Rights,
    },
    /// `mem_unmap`.
    MemUnmap {
        /// Domain argument.
        domain: u64,
        /// Guest-physical address.
        ipa: u64,
        /// Pages.
        pages: u64,
    },
    /// `domain_create`.
    DomainCreate {
        /// Slot for the new Domain capability.
        dst: u16,
        /// Slots of its space.
        slots: u16,
        /// Kernel-memory quota in bytes.
        quota: u64,
    },
    /// `domain_destroy`.
    DomainDestroy {
        /// Domain argument.
        domain: u64,
    },
    /// `domain_pause`.
    DomainPause {
        /// Domain argument.
        domain: u64,
    },
    /// `domain_unpause`.
    DomainUnpause {
        /// Domain argument.
        domain: u64,
    },
    /// `vcpu_create`.
    VcpuCreate {
        /// Domain argument.
        domain: u64,
        /// Slot for the Vcpu capability.
        dst: u16,
        /// vCPU index in the domain.
        index: u16,
        /// Physical CPU (0xFF = any).
        cpu: u64,
    },
    /// `evtchn_create`.
    EvtchnCreate {
        /// Slot for the first endpoint.
        dst_a: u16,
        /// Slot for the second endpoint.
        dst_b: u16,
    },
    /// `evtchn_bind`.
    EvtchnBind {
        /// Endpoint slot.
        endpoint: u16,
        /// Event-page port.
        port: u16,
        /// vCPU index to wake.
        vcpu: u16,
    },
    /// `evtchn_send`.
    EvtchnSend {
        /// Endpoint slot.
        endpoint: u16,
    },
    /// `evtchn_mask`.
    EvtchnMask {
        /// Endpoint slot.
        endpoint: u16,
        /// Mask (true) or unmask.
        masked: bool,
    },
    /// `sched_set`.
    SchedSet {
        /// SchedControl capability slot.
        control: u16,
        /// Target domain id.
        domain: u16,
        /// Target vCPU index.
        vcpu: u16,
        /// New parameters.
        params: crate::sched::SchedParams,
    },
    /// `irq_bind_event`, `irq_bind_virtual`, `irq_ack`, `irq_unbind`.
    Irq {
        /// Irq capability slot.
        irq: u16,
        /// What to do.
        op: IrqOp,
    },
    /// `domain_restart`.
    DomainRestart {
        /// Domain argument.
        domain: u64,
    },
    /// `domain_info`.
    DomainInfo {
        /// Domain argument.
        domain: u64,
    },
    /// `console_read`.
    ConsoleRead {
        /// Domain argument.
        domain: u64,
        /// Byte offset.
        offset: u64,
    },
    /// `domain_set_name`.
    DomainSetName {
        /// Domain argument.
        domain: u64,
        /// The name, NUL-padded.
        name: [u8; 32],
    },
    /// `event_page_set`.
    EventPageSet {
        /// Guest-physical address of the page.
        ipa: u64,
    },
    /// `vcpu_start`.
    VcpuStart {
        /// Vcpu capability slot.
        vcpu: u16,
        /// Entry point.
        entry: u64,
        /// x0 at entry.
        arg: u64,
    },
}

fn frames(first: u64, count: u64) -> Option<FrameRange> {
    // `mica_abi::args` checked the range: 0 frames (then first = 0) means "the same range".
    FrameRange::new(first, count)
}

/// Decodes the argument registers of `call` (their syntax is `mica_abi::args`'s, the one
/// definition of every call's arguments). Pure: no state is read.
pub fn decode(call: Call, regs: [u64; 6]) -> Result<Request, Status> {
    use mica_abi::args as a;
    Ok(match call {
        Call::Whoami => Request::Whoami,
        Call::ConsoleWrite => {
            let x = a::ConsoleWrite::from_regs(regs)?;
            Request::ConsoleWrite {
                len: x.len,
                regs: x.packed(),
            }
        }
        Call::Yield => Request::Yield,
        Call::CapIdentify => Request::CapIdentify {
            slot: a::CapIdentify::from_regs(regs)?.slot.0,
        },
        Call::CapDerive => {
            let x = a::CapDerive::from_regs(regs)?;
            Request::CapDerive {
                src: x.src.0,
                dst: x.dst.0,
                rights: x.rights,
                frames: frames(x.first_frame, x.frame_count),
            }
        }
        Call::CapGrant => {
            let x = a::CapGrant::from_regs(regs)?;
            Request::CapGrant {
                src: x.src.0,
                domain: x.domain.0,
                dst: x.dst.0,
                rights: x.rights,
                frames: frames(x.first_frame, x.frame_count),
            }
        }
        Call::CapRevoke => Request::CapRevoke {
            slot: a::CapRevoke::from_regs(regs)?.slot.0,
        },
        Call::CapDelete => Request::CapDelete {
            slot: a::CapDelete::from_regs(regs)?.slot.0,
        },
        Call::MemMap => {
            let x = a::MemMap::from_regs(regs)?;
            Request::MemMap {
                domain: x.domain.raw(),
                memory: x.memory.0,
                ipa: x.ipa,
                first_frame: x.first_frame,
                pages: x.frame_count,
                perms: x.perms,
            }
        }
        Call::MemUnmap => {
            let x = a::MemUnmap::from_regs(regs)?;
            Request::MemUnmap {
                domain: x.domain.raw(),
                ipa: x.ipa,
                pages: x.frame_count,
            }
        }
        Call::DomainCreate => {
            let x = a::DomainCreate::from_regs(regs)?;
            Request::DomainCreate {
                dst: x.dst.0,
                slots: x.slots.0,
                quota: x.quota,
            }
        }
        Call::DomainDestroy => Request::DomainDestroy {
            domain: a::DomainDestroy::from_regs(regs)?.domain.raw(),
        },
        Call::DomainPause => Request::DomainPause {
            domain: a::DomainPause::from_regs(regs)?.domain.raw(),
        },
        Call::DomainUnpause => Request::DomainUnpause {
            domain: a::DomainUnpause::from_regs(regs)?.domain.raw(),
        },
        Call::VcpuCreate => {
            let x = a::VcpuCreate::from_regs(regs)?;
            Request::VcpuCreate {
                domain: x.domain.raw(),
                dst: x.dst.0,
                index: x.index.0,
                cpu: x.cpu,
            }
        }
        Call::VcpuStart => {
            let x = a::VcpuStart::from_regs(regs)?;
            Request::VcpuStart {
                vcpu: x.vcpu.0,
                entry: x.entry,
                arg: x.arg,
            }
        }
        Call::EvtchnCreate => {
            let x = a::EvtchnCreate::from_regs(regs)?;
            Request::EvtchnCreate {
                dst_a: x.dst_a.0,
                dst_b: x.dst_b.0,
            }
        }
        Call::EvtchnBind => {
            let x = a::EvtchnBind::from_regs(regs)?;
            Request::EvtchnBind {
                endpoint: x.endpoint.0,
                port: x.port.0,
                vcpu: x.vcpu.0,
            }
        }
        Call::EvtchnSend => Request::EvtchnSend {
            endpoint: a::EvtchnSend::from_regs(regs)?.endpoint.0,
        },
        Call::EvtchnMask => {
            let x = a::EvtchnMask::from_regs(regs)?;
            Request::EvtchnMask {
                endpoint: x.endpoint.0,
                masked: x.masked,
            }
        }
        Call::SchedSet => {
            let x = a::SchedSet::from_regs(regs)?;
            let (domain, vcpu, priority) =
                mica_abi::sched::unpack_target(x.target).ok_or(Status::InvalidArgument)?;
            Request::SchedSet {
                control: x.control.0,
                domain,
                vcpu,
                params: crate::sched::SchedParams {
                    priority,
                    budget_ns: x.budget_ns,
                    period_ns: x.period_ns,
                    affinity: x.affinity,
                },
            }
        }
        Call::IrqBindEvent => {
            let x = a::IrqBindEvent::from_regs(regs)?;
            Request::Irq {
                irq: x.irq.0,
                op: IrqOp::BindEvent {
                    endpoint: x.endpoint.0,
                },
            }
        }
        Call::IrqBindVirtual => {
            let x = a::IrqBindVirtual::from_regs(regs)?;
            Request::Irq {
                irq: x.irq.0,
                op: IrqOp::BindVirtual { vcpu: x.vcpu.0 },
            }
        }
        Call::IrqAck => Request::Irq {
            irq: a::IrqAck::from_regs(regs)?.irq.0,
            op: IrqOp::Ack,
        },
        Call::IrqUnbind => Request::Irq {
            irq: a::IrqUnbind::from_regs(regs)?.irq.0,
            op: IrqOp::Unbind,
        },
        Call::DomainRestart => Request::DomainRestart {
            domain: a::DomainRestart::from_regs(regs)?.domain.raw(),
        },
        Call::DomainInfo => Request::DomainInfo {
            domain: a::DomainInfo::from_regs(regs)?.domain.raw(),
        },
        Call::ConsoleRead => {
            let x = a::ConsoleRead::from_regs(regs)?;
            Request::ConsoleRead {
                domain: x.domain.raw(),
                offset: x.offset,
            }
        }
        Call::DomainSetName => {
            let x = a::DomainSetName::from_regs(regs)?;
            Request::DomainSetName {
                domain: x.domain.raw(),
                name: x.name(),
            }
        }
        Call::EventPageSet => Request::EventPageSet {
            ipa: a::EventPageSet::from_regs(regs)?.ipa,
        },
    })
}

/// An operation on an Irq capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqOp {
    /// Deliver as events on this endpoint slot.
    BindEvent {
        /// Endpoint slot.
        endpoint: u16,
    },
    /// Inject into the caller's virtual GIC for this vCPU.
    BindVirtual {
        /// vCPU index.
        vcpu: u16,
    },
    /// Deactivate after an event delivery.
    Ack,
    /// Mask and unbind.
    Unbind,
}

/// Decodes a capability-slot argument.
pub(crate) fn slot_arg(arg: u64) -> Result<u16, Status> {
    u16::try_from(arg).map_err(|_| Status::InvalidArgument)
}
