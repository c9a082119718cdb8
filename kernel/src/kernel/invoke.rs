//! Invoking a hypercall: its registers are decoded by `mica_abi::args` (the one definition
//! of every call's arguments and their syntax, which the runtime encodes with too; what fails
//! it is `InvalidArgument` or `OutOfRange`, before anything is looked at), then each call's
//! check section (capability look-ups, ranges, states — reads only) runs before its act
//! section. The table of calls and their statuses is `mica_abi::hypercall::TABLE`;
//! `docs/hypercalls.md` describes each.

use super::*;
use mica_abi::args::{self as a, Args};
use mica_abi::hypercall;

impl<H: Hal> Kernel<H> {
    /// Decodes, checks and performs `call` for vCPU `v` of `caller` on physical CPU `cpu`.
    pub(super) fn dispatch(
        k: &mut Self,
        cpu: usize,
        v: VcpuId,
        caller: DomainId,
        call: Call,
        regs: [u64; 6],
    ) -> Result<[u64; 3], Status> {
        let args = a::decode(call, regs)?;
        let space = caller.space();
        match args {
            Args::Whoami(_) => {
                let index = k.vcpu(v).map_or(0, |x| x.index) as u64;
                let slots = k.caps.space(space).map_or(0, |s| s.slots as u64);
                Ok([caller.0 as u64, index, slots])
            }
            Args::ConsoleWrite(x) => {
                let len = x.len;
                let mut buf = [0u8; hypercall::CONSOLE_WRITE_MAX];
                let bytes = hypercall::unpack_console_bytes(len, x.packed(), &mut buf)
                    .ok_or(Status::InvalidArgument)?;
                let copy: heapless::Vec<u8, { hypercall::CONSOLE_WRITE_MAX }> =
                    heapless::Vec::from_slice(bytes).map_err(|_| Status::InvalidArgument)?;
                k.console_bytes(caller, &copy);
                Ok([len, 0, 0])
            }
            Args::Yield(_) => {
                k.yield_cpu(cpu);
                Ok([0; 3])
            }
            Args::CapIdentify(a::CapIdentify { slot }) => {
                let info = k.caps.identify(space, slot.0)?;
                let kind = info.object_type as u64 | (info.rights.bits() as u64) << 8;
                let (first, count) = info.frames.map_or((0, 0), |f| (f.first(), f.count()));
                Ok([kind, first, count])
            }
            Args::CapDerive(x) => {
                // A count of 0 (checked by the decoding: then the first frame is 0 too) is
                // the source's whole range.
                let frames = FrameRange::new(x.first_frame, x.frame_count);
                k.caps.derive(space, x.src.0, x.dst.0, x.rights, frames)?;
                Ok([0; 3])
            }
            Args::CapGrant(x) => {
                let frames = FrameRange::new(x.first_frame, x.frame_count);
                k.caps
                    .grant(space, x.src.0, x.domain.0, x.dst.0, x.rights, frames)?;
                Ok([0; 3])
            }
            Args::CapRevoke(a::CapRevoke { slot }) => {
                let mut removals = Vec::new();
                let n = k.caps.revoke(space, slot.0, |r| removals.push(r))?;
                k.apply_removals(removals);
                Ok([n as u64, 0, 0])
            }
            Args::CapDelete(a::CapDelete { slot }) => {
                let mut removals = Vec::new();
                k.caps.delete(space, slot.0, |r| removals.push(r))?;
                k.apply_removals(removals);
                Ok([0; 3])
            }
            Args::MemMap(a::MemMap {
                domain,
                memory,
                ipa,
                first_frame,
                frame_count: pages,
                perms,
            }) => {
                let memory = memory.0;
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
            Args::MemUnmap(a::MemUnmap {
                domain,
                ipa,
                frame_count: pages,
            }) => {
                let target = k.domain_arg(caller, domain, Rights::CONTROL)?;
                let n = k.unmap_range(target, ipa, pages)?;
                Ok([n, 0, 0])
            }
            Args::DomainCreate(a::DomainCreate { dst, slots, quota }) => {
                let id = k.create_empty_domain(caller, dst.0, slots.0, quota)?;
                Ok([id.0 as u64, 0, 0])
            }
            Args::DomainDestroy(a::DomainDestroy { domain }) => {
                let target = k.domain_arg(caller, domain, Rights::CONTROL)?;
                if k.domain(target)
                    .is_some_and(|d| d.state == crate::domain::DomainState::Dying)
                {
                    return Err(Status::WrongState);
                }
                k.destroy(target);
                Ok([0; 3])
            }
            Args::DomainPause(a::DomainPause { domain }) => {
                let target = k.domain_arg(caller, domain, Rights::CONTROL)?;
                k.pause(target)?;
                Ok([0; 3])
            }
            Args::DomainUnpause(a::DomainUnpause { domain }) => {
                let target = k.domain_arg(caller, domain, Rights::CONTROL)?;
                k.unpause(target)?;
                Ok([0; 3])
            }
            Args::VcpuCreate(a::VcpuCreate {
                domain,
                dst,
                index,
                cpu,
            }) => {
                let target = k.domain_arg(caller, domain, Rights::CONTROL)?;
                k.create_vcpu(caller, target, dst.0, index.0, cpu)?;
                Ok([0; 3])
            }
            Args::EvtchnCreate(a::EvtchnCreate { dst_a, dst_b }) => {
                let (dst_a, dst_b) = (dst_a.0, dst_b.0);
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
            Args::EvtchnBind(a::EvtchnBind {
                endpoint,
                port,
                vcpu,
            }) => {
                let (port, vcpu) = (port.0, vcpu.0);
                let info =
                    k.caps
                        .lookup(space, endpoint.0, ObjectType::EventChannel, Rights::RECEIVE)?;
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
                    k.apply([Effect::Deliver(delivery)]);
                }
                Ok([0; 3])
            }
            Args::EvtchnSend(a::EvtchnSend { endpoint }) => {
                let info =
                    k.caps
                        .lookup(space, endpoint.0, ObjectType::EventChannel, Rights::SEND)?;
                let id = k
                    .channels
                    .find(info.object)
                    .ok_or(Status::StaleCapability)?;
                if let Some(delivery) = k.channels.send(id)? {
                    k.apply([Effect::Deliver(delivery)]);
                }
                Ok([0; 3])
            }
            Args::EvtchnMask(a::EvtchnMask { endpoint, masked }) => {
                let info =
                    k.caps
                        .lookup(space, endpoint.0, ObjectType::EventChannel, Rights::RECEIVE)?;
                let id = k
                    .channels
                    .find(info.object)
                    .ok_or(Status::StaleCapability)?;
                if let Some(delivery) = k.channels.mask(id, masked)? {
                    k.apply([Effect::Deliver(delivery)]);
                }
                Ok([0; 3])
            }
            Args::SchedSet(x) => {
                // The decoding checked that the target unpacks.
                let (domain, vcpu, priority) =
                    mica_abi::sched::unpack_target(x.target).ok_or(Status::InvalidArgument)?;
                let params = crate::sched::SchedParams {
                    priority,
                    budget_ns: x.budget_ns,
                    period_ns: x.period_ns,
                    affinity: x.affinity,
                };
                k.set_sched(caller, x.control.0, domain, vcpu, params)?;
                Ok([0; 3])
            }
            Args::IrqBindEvent(a::IrqBindEvent { irq, endpoint }) => {
                let op = IrqOp::BindEvent {
                    endpoint: endpoint.0,
                };
                k.irq_call(caller, irq.0, op)?;
                Ok([0; 3])
            }
            Args::IrqBindVirtual(a::IrqBindVirtual { irq, vcpu }) => {
                k.irq_call(caller, irq.0, IrqOp::BindVirtual { vcpu: vcpu.0 })?;
                Ok([0; 3])
            }
            Args::IrqAck(a::IrqAck { irq }) => {
                k.irq_call(caller, irq.0, IrqOp::Ack)?;
                Ok([0; 3])
            }
            Args::IrqUnbind(a::IrqUnbind { irq }) => {
                k.irq_call(caller, irq.0, IrqOp::Unbind)?;
                Ok([0; 3])
            }
            Args::DomainRestart(a::DomainRestart { domain }) => {
                let target = k.domain_arg(caller, domain, Rights::CONTROL)?;
                k.restart_domain(target)?;
                Ok([0; 3])
            }
            Args::DomainInfo(a::DomainInfo { domain }) => {
                let target = k.domain_arg(caller, domain, Rights::CONTROL)?;
                Ok(k.domain_info(target)?)
            }
            Args::ConsoleRead(a::ConsoleRead { domain, offset }) => {
                let target = k.domain_arg(caller, domain, Rights::CONTROL)?;
                let d = k.domain(target).ok_or(Status::StaleCapability)?;
                let (_, words) = d.read_console(offset);
                Ok([d.console_total, words[0], words[1]])
            }
            Args::DomainSetName(x) => {
                let (domain, name) = (x.domain, x.name());
                // Naming needs authority over the domain: a capability, never the implicit one a
                // domain has over itself (or any domain could pass itself off as another).
                if domain == Slot::SELF_DOMAIN {
                    return Err(Status::InsufficientRights);
                }
                let target = k.domain_arg(caller, domain, Rights::CONTROL)?;
                k.set_name(target, &name)?;
                Ok([0; 3])
            }
            Args::EventPageSet(a::EventPageSet { ipa }) => {
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
            Args::VcpuStart(a::VcpuStart { vcpu, entry, arg }) => {
                k.start_vcpu(caller, vcpu.0, entry, arg)?;
                Ok([0; 3])
            }
        }
    }
}
