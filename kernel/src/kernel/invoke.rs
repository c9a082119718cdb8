//! Invoking a decoded hypercall: each request's check section (capability look-ups, ranges,
//! states — reads only) runs before its act section. Decoding is `crate::hypercall`'s.

use super::*;
use crate::hypercall::{decode, Request};
use mica_abi::hypercall;

impl<H: Hal> Kernel<H> {
    /// Decodes, checks and performs `call` for vCPU `v` of `caller` on physical CPU `cpu`.
    pub(super) fn dispatch(
        k: &mut Self,
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
                k.apply_removals(removals);
                Ok([n as u64, 0, 0])
            }
            Request::CapDelete { slot } => {
                let mut removals = Vec::new();
                k.caps.delete(space, slot, |r| removals.push(r))?;
                k.apply_removals(removals);
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
                let info =
                    k.caps
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
                    k.apply([Effect::Deliver(delivery)]);
                }
                Ok([0; 3])
            }
            Request::EvtchnSend { endpoint } => {
                let info =
                    k.caps
                        .lookup(space, endpoint, ObjectType::EventChannel, Rights::SEND)?;
                let id = k
                    .channels
                    .find(info.object)
                    .ok_or(Status::StaleCapability)?;
                if let Some(delivery) = k.channels.send(id)? {
                    k.apply([Effect::Deliver(delivery)]);
                }
                Ok([0; 3])
            }
            Request::EvtchnMask { endpoint, masked } => {
                let info =
                    k.caps
                        .lookup(space, endpoint, ObjectType::EventChannel, Rights::RECEIVE)?;
                let id = k
                    .channels
                    .find(info.object)
                    .ok_or(Status::StaleCapability)?;
                if let Some(delivery) = k.channels.mask(id, masked)? {
                    k.apply([Effect::Deliver(delivery)]);
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
}
