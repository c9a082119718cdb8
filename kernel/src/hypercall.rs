//! Hypercall handling: decode the registers into a typed request, check it against the
//! caller's capabilities without side effects, then perform it.
//!
//! [`decode`] is pure: it turns `(call, x1..x6)` into a [`Request`] or an `InvalidArgument`
//! status, rejecting slots that do not fit in 16 bits, unknown rights bits and misaligned or
//! wrapping addresses. [`dispatch`] then runs each request's check section (capability
//! look-ups, ranges, states — reads only) before its act section. The table of calls and their
//! statuses is `mica_abi::hypercall::TABLE`; `docs/hypercalls.md` describes each.

use alloc::vec::Vec;

use mica_abi::hypercall::{self, Call, SELF_DOMAIN};
use mica_abi::{ObjectType, Rights, Status};
use mica_caps::{CapAddr, FrameRange};

use crate::domain::DomainId;
use crate::frames::FRAME_SIZE;
use crate::hal::Hal;
use crate::kernel::{slot_arg, Kernel, Share};
use crate::vcpu::VcpuId;
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
        op: crate::kernel::IrqOp,
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
            op: crate::kernel::IrqOp::BindEvent {
                endpoint: slot_arg(a[1])?,
            },
        },
        Call::IrqBindVirtual => Request::Irq {
            irq: slot_arg(a[0])?,
            op: crate::kernel::IrqOp::BindVirtual {
                vcpu: slot_arg(a[1])?,
            },
        },
        Call::IrqAck => Request::Irq {
            irq: slot_arg(a[0])?,
            op: crate::kernel::IrqOp::Ack,
        },
        Call::IrqUnbind => Request::Irq {
            irq: slot_arg(a[0])?,
            op: crate::kernel::IrqOp::Unbind,
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

/// Decodes, checks and performs `call` for vCPU `v` of `caller` on physical CPU `cpu`.
pub fn dispatch<H: Hal>(
    k: &mut Kernel<H>,
    cpu: usize,
    v: VcpuId,
    caller: DomainId,
    call: Call,
    args: [u64; 6],
) -> Result<[u64; 3], Status> {
    let request = decode(call, args)?;
    let space = caller.space();
    match request {
        Request::Whoami => {
            let index = k.vcpu(v).map_or(0, |x| x.index) as u64;
            let slots = k.caps.space(space).map_or(0, |s| s.slots as u64);
            Ok([caller.0 as u64, index, slots])
        }
        Request::ConsoleWrite { len, regs } => {
            let mut buf = [0u8; hypercall::CONSOLE_WRITE_MAX];
            let bytes = hypercall::unpack_console_bytes(len, regs, &mut buf)
                .ok_or(Status::InvalidArgument)?;
            let copy: heapless::Vec<u8, { hypercall::CONSOLE_WRITE_MAX }> =
                heapless::Vec::from_slice(bytes).map_err(|_| Status::InvalidArgument)?;
            k.console_bytes(caller, &copy);
            Ok([len, 0, 0])
        }
        Request::Yield => {
            k.yield_cpu(cpu);
            Ok([0; 3])
        }
        Request::CapIdentify { slot } => {
            let info = k.caps.identify(space, slot)?;
            let kind = info.object_type as u64 | (info.rights.bits() as u64) << 8;
            let (first, count) = info.frames.map_or((0, 0), |f| (f.first(), f.count()));
            Ok([kind, first, count])
        }
        Request::CapDerive {
            src,
            dst,
            rights,
            frames,
        } => {
            k.caps.derive(space, src, dst, rights, frames)?;
            Ok([0; 3])
        }
        Request::CapGrant {
            src,
            domain,
            dst,
            rights,
            frames,
        } => {
            k.caps.grant(space, src, domain, dst, rights, frames)?;
            Ok([0; 3])
        }
        Request::CapRevoke { slot } => {
            let mut removals = Vec::new();
            let n = k.caps.revoke(space, slot, |r| removals.push(r))?;
            k.apply_removals(&removals);
            Ok([n as u64, 0, 0])
        }
        Request::CapDelete { slot } => {
            let mut removals = Vec::new();
            k.caps.delete(space, slot, |r| removals.push(r))?;
            k.apply_removals(&removals);
            Ok([0; 3])
        }
        Request::MemMap {
            domain,
            memory,
            ipa,
            first_frame,
            pages,
            perms,
        } => {
            // Check.
            let target = k.domain_arg(caller, domain, Rights::CONTROL)?;
            // RAM (Memory) or device registers (DeviceMemory).
            let info = match k
                .caps
                .lookup(space, memory, ObjectType::Memory, Rights::READ)
            {
                Err(Status::InvalidCapability) => {
                    k.caps
                        .lookup(space, memory, ObjectType::DeviceMemory, Rights::READ)?
                }
                other => other?,
            };
            let device = info.object_type == ObjectType::DeviceMemory;
            if !info.rights.contains(perms) {
                return Err(Status::InsufficientRights);
            }
            let range = info.frames.ok_or(Status::InvalidCapability)?;
            let last = first_frame.checked_add(pages).ok_or(Status::OutOfRange)?;
            if first_frame < range.first() || last > range.first() + range.count() {
                return Err(Status::OutOfRange);
            }
            let d = k.domain(target).ok_or(Status::StaleCapability)?;
            if d.state == crate::domain::DomainState::Dying {
                return Err(Status::WrongState);
            }
            if d.mappings.iter().any(|m| m.overlaps(ipa, pages)) {
                return Err(Status::SlotOccupied);
            }
            // Act.
            let through = CapAddr::new(space, memory);
            let pa = first_frame * FRAME_SIZE;
            if device {
                k.map_device_checked(target, ipa, pa, pages, perms, through)?;
            } else {
                k.map_checked(target, ipa, pa, pages, perms, through)?;
            }
            Ok([0; 3])
        }
        Request::MemUnmap { domain, ipa, pages } => {
            let target = k.domain_arg(caller, domain, Rights::CONTROL)?;
            let n = k.unmap_range(target, ipa, pages)?;
            Ok([n, 0, 0])
        }
        Request::DomainCreate { dst, slots, quota } => {
            let id = k.create_empty_domain(caller, dst, slots, quota)?;
            Ok([id.0 as u64, 0, 0])
        }
        Request::DomainDestroy { domain } => {
            let target = k.domain_arg(caller, domain, Rights::CONTROL)?;
            if k.domain(target)
                .is_some_and(|d| d.state == crate::domain::DomainState::Dying)
            {
                return Err(Status::WrongState);
            }
            k.destroy(target);
            Ok([0; 3])
        }
        Request::DomainPause { domain } => {
            let target = k.domain_arg(caller, domain, Rights::CONTROL)?;
            k.pause(target)?;
            Ok([0; 3])
        }
        Request::DomainUnpause { domain } => {
            let target = k.domain_arg(caller, domain, Rights::CONTROL)?;
            k.unpause(target)?;
            Ok([0; 3])
        }
        Request::VcpuCreate {
            domain,
            dst,
            index,
            cpu,
        } => {
            let target = k.domain_arg(caller, domain, Rights::CONTROL)?;
            k.create_vcpu(caller, target, dst, index, cpu)?;
            Ok([0; 3])
        }
        Request::EvtchnCreate { dst_a, dst_b } => {
            // Check: two distinct empty slots and room in the endpoint table.
            if dst_a == dst_b {
                return Err(Status::InvalidArgument);
            }
            for slot in [dst_a, dst_b] {
                if k.caps.identify(space, slot).is_ok() {
                    return Err(Status::SlotOccupied);
                }
            }
            if !k.channels.has_room() {
                return Err(Status::OutOfMemory);
            }
            k.check_fair_share(caller, Share::Endpoints)?;
            // Act.
            let a = k
                .caps
                .create_object(space, dst_a, ObjectType::EventChannel, None)?;
            let b = match k
                .caps
                .create_object(space, dst_b, ObjectType::EventChannel, None)
            {
                Ok(b) => b,
                Err(e) => {
                    let _ = k.caps.delete(space, dst_a, |_| {});
                    return Err(e);
                }
            };
            k.channels.create(a, b)?;
            Ok([0; 3])
        }
        Request::EvtchnBind {
            endpoint,
            port,
            vcpu,
        } => {
            let info = k
                .caps
                .lookup(space, endpoint, ObjectType::EventChannel, Rights::RECEIVE)?;
            let id = k
                .channels
                .find(info.object)
                .ok_or(Status::StaleCapability)?;
            let d = k.domain(caller).ok_or(Status::StaleCapability)?;
            if vcpu as usize >= d.vcpus.len() {
                return Err(Status::InvalidArgument);
            }
            if d.event_page.is_none() {
                return Err(Status::WrongState);
            }
            let binding = crate::evtchn::Binding {
                domain: caller,
                port,
                vcpu,
            };
            if let Some(delivery) = k.channels.bind(id, binding)? {
                k.deliver(delivery);
            }
            Ok([0; 3])
        }
        Request::EvtchnSend { endpoint } => {
            let info = k
                .caps
                .lookup(space, endpoint, ObjectType::EventChannel, Rights::SEND)?;
            let id = k
                .channels
                .find(info.object)
                .ok_or(Status::StaleCapability)?;
            if let Some(delivery) = k.channels.send(id)? {
                k.deliver(delivery);
            }
            Ok([0; 3])
        }
        Request::EvtchnMask { endpoint, masked } => {
            let info = k
                .caps
                .lookup(space, endpoint, ObjectType::EventChannel, Rights::RECEIVE)?;
            let id = k
                .channels
                .find(info.object)
                .ok_or(Status::StaleCapability)?;
            if let Some(delivery) = k.channels.mask(id, masked)? {
                k.deliver(delivery);
            }
            Ok([0; 3])
        }
        Request::SchedSet {
            control,
            domain,
            vcpu,
            params,
        } => {
            k.set_sched(caller, control, domain, vcpu, params)?;
            Ok([0; 3])
        }
        Request::Irq { irq, op } => {
            k.irq_call(caller, irq, op)?;
            Ok([0; 3])
        }
        Request::DomainRestart { domain } => {
            let target = k.domain_arg(caller, domain, Rights::CONTROL)?;
            k.restart_domain(target)?;
            Ok([0; 3])
        }
        Request::DomainInfo { domain } => {
            let target = k.domain_arg(caller, domain, Rights::CONTROL)?;
            Ok(k.domain_info(target)?)
        }
        Request::ConsoleRead { domain, offset } => {
            let target = k.domain_arg(caller, domain, Rights::CONTROL)?;
            let d = k.domain(target).ok_or(Status::StaleCapability)?;
            let (_, words) = d.read_console(offset);
            Ok([d.console_total, words[0], words[1]])
        }
        Request::DomainSetName { domain, name } => {
            // Naming needs authority over the domain: a capability, never the implicit one a
            // domain has over itself (or any domain could pass itself off as another).
            if domain == SELF_DOMAIN {
                return Err(Status::InsufficientRights);
            }
            let target = k.domain_arg(caller, domain, Rights::CONTROL)?;
            k.set_name(target, &name)?;
            Ok([0; 3])
        }
        Request::EventPageSet { ipa } => {
            let d = k.domain(caller).ok_or(Status::StaleCapability)?;
            let last = ipa.checked_add(FRAME_SIZE - 1).ok_or(Status::OutOfRange)?;
            if d.translate_writable(ipa).is_none() || d.translate_writable(last).is_none() {
                return Err(Status::OutOfRange);
            }
            if let Some(d) = k.domain_mut(caller) {
                d.event_page = Some(ipa);
            }
            Ok([0; 3])
        }
        Request::VcpuStart { vcpu, entry, arg } => {
            k.start_vcpu(caller, vcpu, entry, arg)?;
            Ok([0; 3])
        }
    }
}
