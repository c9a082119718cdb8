//! Hypercall handling: decode the registers into a typed request, check it against the
//! caller's capabilities without side effects, then perform it.
//!
//! [`decode`] is pure: it turns `(call, x1..x6)` into a [`Request`] or an `InvalidArgument`
//! status, rejecting slots that do not fit in 16 bits, unknown rights bits and misaligned or
//! wrapping addresses. [`dispatch`] then runs each request's check section (capability
//! look-ups, ranges, states — reads only) before its act section. The table of calls and their
//! statuses is `mica_abi::hypercall::TABLE`; `docs/hypercalls.md` describes each.

use mica_abi::hypercall::{self, Call, SELF_DOMAIN};
use mica_abi::{Rights, Status};
use mica_caps::FrameRange;

use crate::frames::FRAME_SIZE;
use mica_abi::layout::IPA_LIMIT;

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

fn rights_arg(arg: u64) -> Result<Rights, Status> {
    let bits = u32::try_from(arg).map_err(|_| Status::InvalidArgument)?;
    Rights::from_bits(bits).ok_or(Status::InvalidArgument)
}

fn frames_arg(first: u64, count: u64) -> Result<Option<FrameRange>, Status> {
    if count == 0 {
        return Ok(None);
    }
    FrameRange::new(first, count)
        .map(Some)
        .ok_or(Status::InvalidArgument)
}

fn domain_selector(arg: u64) -> Result<u64, Status> {
    if arg == SELF_DOMAIN || arg <= u16::MAX as u64 {
        Ok(arg)
    } else {
        Err(Status::InvalidArgument)
    }
}

fn page_aligned(ipa: u64, pages: u64) -> Result<(), Status> {
    if !ipa.is_multiple_of(FRAME_SIZE) || pages == 0 {
        return Err(Status::InvalidArgument);
    }
    let end = pages
        .checked_mul(FRAME_SIZE)
        .and_then(|b| ipa.checked_add(b))
        .ok_or(Status::InvalidArgument)?;
    if end > IPA_LIMIT {
        return Err(Status::OutOfRange);
    }
    Ok(())
}

/// Decodes the argument registers of `call`. Pure: no state is read.
pub fn decode(call: Call, a: [u64; 6]) -> Result<Request, Status> {
    Ok(match call {
        Call::Whoami => Request::Whoami,
        Call::ConsoleWrite => {
            if a[0] > hypercall::CONSOLE_WRITE_MAX as u64 {
                return Err(Status::InvalidArgument);
            }
            Request::ConsoleWrite {
                len: a[0],
                regs: [a[1], a[2], a[3], a[4], a[5]],
            }
        }
        Call::Yield => Request::Yield,
        Call::CapIdentify => Request::CapIdentify {
            slot: slot_arg(a[0])?,
        },
        Call::CapDerive => Request::CapDerive {
            src: slot_arg(a[0])?,
            dst: slot_arg(a[1])?,
            rights: rights_arg(a[2])?,
            frames: frames_arg(a[3], a[4])?,
        },
        Call::CapGrant => Request::CapGrant {
            src: slot_arg(a[0])?,
            domain: slot_arg(a[1])?,
            dst: slot_arg(a[2])?,
            rights: rights_arg(a[3])?,
            frames: frames_arg(a[4], a[5])?,
        },
        Call::CapRevoke => Request::CapRevoke {
            slot: slot_arg(a[0])?,
        },
        Call::CapDelete => Request::CapDelete {
            slot: slot_arg(a[0])?,
        },
        Call::MemMap => {
            let perms = rights_arg(a[5])?;
            if !(Rights::READ | Rights::WRITE | Rights::EXECUTE).contains(perms)
                || !perms.contains(Rights::READ)
            {
                return Err(Status::InvalidArgument);
            }
            page_aligned(a[2], a[4])?;
            Request::MemMap {
                domain: domain_selector(a[0])?,
                memory: slot_arg(a[1])?,
                ipa: a[2],
                first_frame: a[3],
                pages: a[4],
                perms,
            }
        }
        Call::MemUnmap => {
            page_aligned(a[1], a[2])?;
            Request::MemUnmap {
                domain: domain_selector(a[0])?,
                ipa: a[1],
                pages: a[2],
            }
        }
        Call::DomainCreate => Request::DomainCreate {
            dst: slot_arg(a[0])?,
            slots: slot_arg(a[1])?,
            quota: a[2],
        },
        Call::DomainDestroy => Request::DomainDestroy {
            domain: domain_selector(a[0])?,
        },
        Call::DomainPause => Request::DomainPause {
            domain: domain_selector(a[0])?,
        },
        Call::DomainUnpause => Request::DomainUnpause {
            domain: domain_selector(a[0])?,
        },
        Call::VcpuCreate => Request::VcpuCreate {
            domain: domain_selector(a[0])?,
            dst: slot_arg(a[1])?,
            index: slot_arg(a[2])?,
            cpu: a[3],
        },
        Call::VcpuStart => Request::VcpuStart {
            vcpu: slot_arg(a[0])?,
            entry: a[1],
            arg: a[2],
        },
        Call::EvtchnCreate => Request::EvtchnCreate {
            dst_a: slot_arg(a[0])?,
            dst_b: slot_arg(a[1])?,
        },
        Call::EvtchnBind => {
            if a[1] >= mica_abi::event::PORTS as u64 {
                return Err(Status::InvalidArgument);
            }
            Request::EvtchnBind {
                endpoint: slot_arg(a[0])?,
                port: a[1] as u16,
                vcpu: slot_arg(a[2])?,
            }
        }
        Call::EvtchnSend => Request::EvtchnSend {
            endpoint: slot_arg(a[0])?,
        },
        Call::EvtchnMask => {
            let masked = match a[1] {
                0 => false,
                1 => true,
                _ => return Err(Status::InvalidArgument),
            };
            Request::EvtchnMask {
                endpoint: slot_arg(a[0])?,
                masked,
            }
        }
        Call::SchedSet => {
            let (domain, vcpu, priority) =
                mica_abi::sched::unpack_target(a[1]).ok_or(Status::InvalidArgument)?;
            Request::SchedSet {
                control: slot_arg(a[0])?,
                domain,
                vcpu,
                params: crate::sched::SchedParams {
                    priority,
                    budget_ns: a[2],
                    period_ns: a[3],
                    affinity: a[4],
                },
            }
        }
        Call::IrqBindEvent => Request::Irq {
            irq: slot_arg(a[0])?,
            op: IrqOp::BindEvent {
                endpoint: slot_arg(a[1])?,
            },
        },
        Call::IrqBindVirtual => Request::Irq {
            irq: slot_arg(a[0])?,
            op: IrqOp::BindVirtual {
                vcpu: slot_arg(a[1])?,
            },
        },
        Call::IrqAck => Request::Irq {
            irq: slot_arg(a[0])?,
            op: IrqOp::Ack,
        },
        Call::IrqUnbind => Request::Irq {
            irq: slot_arg(a[0])?,
            op: IrqOp::Unbind,
        },
        Call::DomainRestart => Request::DomainRestart {
            domain: domain_selector(a[0])?,
        },
        Call::DomainInfo => Request::DomainInfo {
            domain: domain_selector(a[0])?,
        },
        Call::ConsoleRead => Request::ConsoleRead {
            domain: domain_selector(a[0])?,
            offset: a[1],
        },
        Call::DomainSetName => {
            let mut name = [0u8; 32];
            for (i, b) in name.iter_mut().enumerate() {
                *b = (a[1 + i / 8] >> ((i % 8) * 8)) as u8;
            }
            let len = name.iter().position(|b| *b == 0).unwrap_or(32);
            let valid = (1..=31).contains(&len)
                && name[..len]
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
                && name[len..].iter().all(|b| *b == 0);
            if !valid {
                return Err(Status::InvalidArgument);
            }
            Request::DomainSetName {
                domain: domain_selector(a[0])?,
                name,
            }
        }
        Call::EventPageSet => {
            if !a[0].is_multiple_of(FRAME_SIZE) {
                return Err(Status::InvalidArgument);
            }
            Request::EventPageSet { ipa: a[0] }
        }
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
