//! Typed wrappers for every Mica hypercall, one per row of `mica_abi::hypercall::TABLE`.
//!
//! Each call has two halves. [`encode`] turns typed arguments into a [`Request`] (the
//! function id and x1-x6, in the table's argument order): a pure function, host-tested
//! against the table. The wrapper of the same name issues the request with `hvc #0` and
//! decodes the reply through [`Reply::result`] into `Result<_, Status>`. Slots are typed
//! [`Slot`]s (`u16` on the wire), so a typed wrapper cannot forge one; [`raw_call`] is the
//! escape hatch for attack tests that must send what the types forbid.

use crate::conduit::{self, Conduit};
use mica_abi::hypercall::{Call, CONSOLE_WRITE_MAX};
use mica_abi::{ObjectType, Rights, Status};

pub use crate::conduit::Reply;

pub use mica_abi::args::{Port, Slot};

/// Frames of a Memory capability, as absolute frame numbers (physical address / 4 KiB;
/// `cap_identify` reports a capability's range in the same numbers). `cap_derive` and
/// `cap_grant` take `Option<FrameRange>`: `None` is the source's whole range.
pub use mica_abi::FrameRange;

/// One hypercall ready to issue: x0 and x1-x6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// The SMCCC function id (x0).
    pub function: u64,
    /// x1-x6.
    pub args: [u64; 6],
}

impl Request {
    /// A request for `call` with `args`.
    pub const fn new(call: Call, args: [u64; 6]) -> Request {
        Request {
            function: call.function_id(),
            args,
        }
    }

    /// Issues the request with `hvc #0`.
    pub fn issue(self) -> Reply {
        raw_call(self.function, self.args)
    }
}

/// Issues any function id with any arguments, unchecked: for attack tests.
pub fn raw_call(function: u64, args: [u64; 6]) -> Reply {
    conduit::call(Conduit::Hvc, function, args)
}

/// Issues any call of the table from its argument type (`mica_abi::args`), returning x1-x3
/// or the failure status. Every call is reachable this way, including one this runtime has
/// no typed wrapper for yet; the wrappers below decode the values into types.
pub fn call<A: mica_abi::args::CallArgs>(args: A) -> Result<[u64; 3], Status> {
    Request::new(A::CALL, args.regs()).issue().result()
}

/// What `whoami` answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Whoami {
    /// The caller's domain id.
    pub domain_id: u64,
    /// The calling vCPU's index within its domain (0 = the boot vCPU).
    pub vcpu_index: u64,
    /// Number of slots in the caller's capability space.
    pub slots: u64,
}

/// What `cap_identify` answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapInfo {
    /// The object the capability names.
    pub object_type: ObjectType,
    /// The rights it carries.
    pub rights: Rights,
    /// For Memory and DeviceMemory: the absolute frame range; otherwise `None`.
    pub frames: Option<FrameRange>,
}

impl CapInfo {
    /// Decodes x1-x3 (`type | rights << 8`, first frame, frame count). An object type this
    /// runtime does not know is [`Status::NotSupported`].
    pub fn from_values(values: [u64; 3]) -> Result<CapInfo, Status> {
        let object_type = ObjectType::from_raw(values[0] & 0xFF).ok_or(Status::NotSupported)?;
        let rights = Rights::from_bits_retain((values[0] >> 8) as u32);
        Ok(CapInfo {
            object_type,
            rights,
            frames: FrameRange::new(values[1], values[2]),
        })
    }
}

/// Pure encoders: typed arguments to registers, in the order of `TABLE`'s `args`.
pub mod encode {
    use super::{FrameRange, Port, Request, Slot};
    use mica_abi::args as a;
    use mica_abi::Rights;

    /// `whoami`.
    pub fn whoami() -> Request {
        Request::new(a::Whoami::CALL, a::Whoami {}.to_regs())
    }

    /// `console_write` of up to 40 bytes (more are cut).
    pub fn console_write(bytes: &[u8]) -> Request {
        Request::new(a::ConsoleWrite::CALL, a::ConsoleWrite::new(bytes).to_regs())
    }

    /// `yield`.
    pub fn yield_now() -> Request {
        Request::new(a::Yield::CALL, a::Yield {}.to_regs())
    }

    /// `cap_identify`.
    pub fn cap_identify(slot: Slot) -> Request {
        Request::new(a::CapIdentify::CALL, a::CapIdentify { slot }.to_regs())
    }

    /// `cap_derive`.
    pub fn cap_derive(src: Slot, dst: Slot, rights: Rights, frames: Option<FrameRange>) -> Request {
        let (first_frame, frame_count) = FrameRange::to_regs(frames);
        let args = a::CapDerive {
            src,
            dst,
            rights,
            first_frame,
            frame_count,
        };
        Request::new(a::CapDerive::CALL, args.to_regs())
    }

    /// `cap_grant`.
    pub fn cap_grant(
        src: Slot,
        domain: Slot,
        dst: Slot,
        rights: Rights,
        frames: Option<FrameRange>,
    ) -> Request {
        let (first_frame, frame_count) = FrameRange::to_regs(frames);
        let args = a::CapGrant {
            src,
            domain,
            dst,
            rights,
            first_frame,
            frame_count,
        };
        Request::new(a::CapGrant::CALL, args.to_regs())
    }

    /// `cap_revoke`.
    pub fn cap_revoke(slot: Slot) -> Request {
        Request::new(a::CapRevoke::CALL, a::CapRevoke { slot }.to_regs())
    }

    /// `cap_delete`.
    pub fn cap_delete(slot: Slot) -> Request {
        Request::new(a::CapDelete::CALL, a::CapDelete { slot }.to_regs())
    }

    /// `mem_map`.
    pub fn mem_map(
        domain: Slot,
        memory: Slot,
        ipa: u64,
        frames: FrameRange,
        perms: Rights,
    ) -> Request {
        let args = a::MemMap {
            domain,
            memory,
            ipa,
            first_frame: frames.first(),
            frame_count: frames.count(),
            perms,
        };
        Request::new(a::MemMap::CALL, args.to_regs())
    }

    /// `mem_unmap`.
    pub fn mem_unmap(domain: Slot, ipa: u64, frame_count: u64) -> Request {
        let args = a::MemUnmap {
            domain,
            ipa,
            frame_count,
        };
        Request::new(a::MemUnmap::CALL, args.to_regs())
    }

    /// `domain_create` (`slots` is cut to 16 bits, as the kernel would refuse more).
    pub fn domain_create(dst: Slot, slots: u64, quota: u64) -> Request {
        let args = a::DomainCreate {
            dst,
            slots: Slot(slots.min(u64::from(u16::MAX)) as u16),
            quota,
        };
        Request::new(a::DomainCreate::CALL, args.to_regs())
    }

    /// `domain_destroy`.
    pub fn domain_destroy(domain: Slot) -> Request {
        Request::new(
            a::DomainDestroy::CALL,
            a::DomainDestroy { domain }.to_regs(),
        )
    }

    /// `domain_pause`.
    pub fn domain_pause(domain: Slot) -> Request {
        Request::new(a::DomainPause::CALL, a::DomainPause { domain }.to_regs())
    }

    /// `domain_unpause`.
    pub fn domain_unpause(domain: Slot) -> Request {
        Request::new(
            a::DomainUnpause::CALL,
            a::DomainUnpause { domain }.to_regs(),
        )
    }

    /// `vcpu_create` (`index` is cut to 16 bits, as the kernel would refuse more).
    pub fn vcpu_create(domain: Slot, dst: Slot, index: u64, cpu: u64) -> Request {
        let args = a::VcpuCreate {
            domain,
            dst,
            index: Slot(index.min(u64::from(u16::MAX)) as u16),
            cpu,
        };
        Request::new(a::VcpuCreate::CALL, args.to_regs())
    }

    /// `vcpu_start`.
    pub fn vcpu_start(vcpu: Slot, entry: u64, arg: u64) -> Request {
        let args = a::VcpuStart { vcpu, entry, arg };
        Request::new(a::VcpuStart::CALL, args.to_regs())
    }

    /// `evtchn_create`.
    pub fn evtchn_create(dst_a: Slot, dst_b: Slot) -> Request {
        let args = a::EvtchnCreate { dst_a, dst_b };
        Request::new(a::EvtchnCreate::CALL, args.to_regs())
    }

    /// `evtchn_bind` (`vcpu` is cut to 16 bits, as the kernel would refuse more).
    pub fn evtchn_bind(endpoint: Slot, port: Port, vcpu: u64) -> Request {
        let args = a::EvtchnBind {
            endpoint,
            port,
            vcpu: Slot(vcpu.min(u64::from(u16::MAX)) as u16),
        };
        Request::new(a::EvtchnBind::CALL, args.to_regs())
    }

    /// `evtchn_send`.
    pub fn evtchn_send(endpoint: Slot) -> Request {
        Request::new(a::EvtchnSend::CALL, a::EvtchnSend { endpoint }.to_regs())
    }

    /// `evtchn_mask`.
    pub fn evtchn_mask(endpoint: Slot, masked: bool) -> Request {
        let args = a::EvtchnMask { endpoint, masked };
        Request::new(a::EvtchnMask::CALL, args.to_regs())
    }

    /// `event_page_set`.
    pub fn event_page_set(ipa: u64) -> Request {
        Request::new(a::EventPageSet::CALL, a::EventPageSet { ipa }.to_regs())
    }

    /// `sched_set` (`target` from `mica_abi::sched::pack_target`).
    pub fn sched_set(
        control: Slot,
        target: u64,
        budget_ns: u64,
        period_ns: u64,
        affinity: u64,
    ) -> Request {
        let args = a::SchedSet {
            control,
            target,
            budget_ns,
            period_ns,
            affinity,
        };
        Request::new(a::SchedSet::CALL, args.to_regs())
    }

    /// `domain_restart`.
    pub fn domain_restart(domain: Slot) -> Request {
        Request::new(
            a::DomainRestart::CALL,
            a::DomainRestart { domain }.to_regs(),
        )
    }

    /// `domain_info`.
    pub fn domain_info(domain: Slot) -> Request {
        Request::new(a::DomainInfo::CALL, a::DomainInfo { domain }.to_regs())
    }

    /// `console_read`.
    pub fn console_read(domain: Slot, offset: u64) -> Request {
        let args = a::ConsoleRead { domain, offset };
        Request::new(a::ConsoleRead::CALL, args.to_regs())
    }

    /// `console_input` (the first [`mica_abi::hypercall::CONSOLE_INPUT_MAX`] bytes of `bytes`).
    pub fn console_input(domain: Slot, bytes: &[u8]) -> Request {
        let args = a::ConsoleInput::new(domain, bytes);
        Request::new(a::ConsoleInput::CALL, args.to_regs())
    }

    /// `domain_set_boot`.
    pub fn domain_set_boot(domain: Slot, protocol: u64) -> Request {
        let args = a::DomainSetBoot { domain, protocol };
        Request::new(a::DomainSetBoot::CALL, args.to_regs())
    }

    /// `domain_set_name` (the first 32 bytes of `name`).
    pub fn domain_set_name(domain: Slot, name: &[u8]) -> Request {
        let args = a::DomainSetName::new(domain, name);
        Request::new(a::DomainSetName::CALL, args.to_regs())
    }

    /// `irq_bind_event`.
    pub fn irq_bind_event(irq: Slot, endpoint: Slot) -> Request {
        let args = a::IrqBindEvent { irq, endpoint };
        Request::new(a::IrqBindEvent::CALL, args.to_regs())
    }

    /// `irq_bind_virtual` (`vcpu` is cut to 16 bits, as the kernel would refuse more).
    pub fn irq_bind_virtual(irq: Slot, vcpu: u64) -> Request {
        let args = a::IrqBindVirtual {
            irq,
            vcpu: Slot(vcpu.min(u64::from(u16::MAX)) as u16),
        };
        Request::new(a::IrqBindVirtual::CALL, args.to_regs())
    }

    /// `irq_ack`.
    pub fn irq_ack(irq: Slot) -> Request {
        Request::new(a::IrqAck::CALL, a::IrqAck { irq }.to_regs())
    }

    /// `irq_unbind`.
    pub fn irq_unbind(irq: Slot) -> Request {
        Request::new(a::IrqUnbind::CALL, a::IrqUnbind { irq }.to_regs())
    }

    /// `virtio_info`.
    pub fn virtio_info(device: Slot) -> Request {
        Request::new(a::VirtioInfo::CALL, a::VirtioInfo { device }.to_regs())
    }

    /// `virtio_queue`.
    pub fn virtio_queue(device: Slot, queue: u64, epoch: u32) -> Request {
        let args = a::VirtioQueue {
            device,
            queue,
            epoch: u64::from(epoch),
        };
        Request::new(a::VirtioQueue::CALL, args.to_regs())
    }

    /// `virtio_config`.
    pub fn virtio_config(device: Slot, offset: u64) -> Request {
        let args = a::VirtioConfig { device, offset };
        Request::new(a::VirtioConfig::CALL, args.to_regs())
    }

    /// `virtio_signal`.
    pub fn virtio_signal(device: Slot, epoch: u32, broken: bool) -> Request {
        let args = a::VirtioSignal {
            device,
            epoch: u64::from(epoch),
            broken,
        };
        Request::new(a::VirtioSignal::CALL, args.to_regs())
    }
}

/// The caller's domain id, vCPU index and capability-space size.
pub fn whoami() -> Result<Whoami, Status> {
    let [domain_id, vcpu_index, slots] = encode::whoami().issue().result()?;
    Ok(Whoami {
        domain_id,
        vcpu_index,
        slots,
    })
}

/// Writes the first [`CONSOLE_WRITE_MAX`] bytes of `bytes` to the console; returns how many
/// the kernel took. Most code wants [`crate::println!`], which writes whole lines.
pub fn console_write(bytes: &[u8]) -> Result<usize, Status> {
    let [written, _, _] = encode::console_write(bytes).issue().result()?;
    Ok(usize::try_from(written)
        .unwrap_or(CONSOLE_WRITE_MAX)
        .min(bytes.len().min(CONSOLE_WRITE_MAX)))
}

/// Gives the CPU to the next runnable vCPU (the `yield` call).
pub fn yield_now() -> Result<(), Status> {
    encode::yield_now().issue().result().map(drop)
}

/// Describes the capability in `slot`.
pub fn cap_identify(slot: Slot) -> Result<CapInfo, Status> {
    CapInfo::from_values(encode::cap_identify(slot).issue().result()?)
}

/// Copies `src` into the empty slot `dst` with `rights` (a subset of the source's) and, for
/// memory, the sub-range `frames` (`None`: the source's whole range).
pub fn cap_derive(
    src: Slot,
    dst: Slot,
    rights: Rights,
    frames: Option<FrameRange>,
) -> Result<(), Status> {
    encode::cap_derive(src, dst, rights, frames)
        .issue()
        .result()
        .map(drop)
}

/// Places a derived copy of `src` into slot `dst` of the domain named by the Domain
/// capability `domain` (which needs GRANT).
pub fn cap_grant(
    src: Slot,
    domain: Slot,
    dst: Slot,
    rights: Rights,
    frames: Option<FrameRange>,
) -> Result<(), Status> {
    encode::cap_grant(src, domain, dst, rights, frames)
        .issue()
        .result()
        .map(drop)
}

/// Deletes every descendant of the capability in `slot`; returns how many were removed.
pub fn cap_revoke(slot: Slot) -> Result<u64, Status> {
    let [removed, _, _] = encode::cap_revoke(slot).issue().result()?;
    Ok(removed)
}

/// Deletes the capability in `slot` (its children stay).
pub fn cap_delete(slot: Slot) -> Result<(), Status> {
    encode::cap_delete(slot).issue().result().map(drop)
}

/// Maps `frames` of the Memory capability `memory` at guest-physical `ipa` of `domain` (a
/// Domain capability or [`Slot::SELF_DOMAIN`]) with `perms` (READ, WRITE, EXECUTE).
pub fn mem_map(
    domain: Slot,
    memory: Slot,
    ipa: u64,
    frames: FrameRange,
    perms: Rights,
) -> Result<(), Status> {
    encode::mem_map(domain, memory, ipa, frames, perms)
        .issue()
        .result()
        .map(drop)
}

/// Removes `frame_count` pages of mappings at `ipa` of `domain`; returns how many were mapped.
pub fn mem_unmap(domain: Slot, ipa: u64, frame_count: u64) -> Result<u64, Status> {
    let [unmapped, _, _] = encode::mem_unmap(domain, ipa, frame_count)
        .issue()
        .result()?;
    Ok(unmapped)
}

/// Creates an empty domain with `slots` capability slots and `quota` bytes of kernel memory;
/// its Domain capability goes in `dst`. Returns the new domain's id.
pub fn domain_create(dst: Slot, slots: u64, quota: u64) -> Result<u64, Status> {
    let [domain_id, _, _] = encode::domain_create(dst, slots, quota).issue().result()?;
    Ok(domain_id)
}

/// Destroys a domain: stops its vCPUs, revokes what it holds, scrubs its memory.
pub fn domain_destroy(domain: Slot) -> Result<(), Status> {
    encode::domain_destroy(domain).issue().result().map(drop)
}

/// Stops scheduling a domain's vCPUs.
pub fn domain_pause(domain: Slot) -> Result<(), Status> {
    encode::domain_pause(domain).issue().result().map(drop)
}

/// Resumes a paused domain.
pub fn domain_unpause(domain: Slot) -> Result<(), Status> {
    encode::domain_unpause(domain).issue().result().map(drop)
}

/// Creates vCPU number `index` in `domain`, to run on physical CPU `cpu`; its Vcpu
/// capability goes in `dst`.
pub fn vcpu_create(domain: Slot, dst: Slot, index: u64, cpu: u64) -> Result<(), Status> {
    encode::vcpu_create(domain, dst, index, cpu)
        .issue()
        .result()
        .map(drop)
}

/// Starts a created vCPU at guest-physical `entry` with `arg` in x0.
pub fn vcpu_start(vcpu: Slot, entry: u64, arg: u64) -> Result<(), Status> {
    encode::vcpu_start(vcpu, entry, arg)
        .issue()
        .result()
        .map(drop)
}

/// Creates an event channel; its two connected endpoints (SEND | RECEIVE | GRANT) go into
/// the empty slots `dst_a` and `dst_b`.
pub fn evtchn_create(dst_a: Slot, dst_b: Slot) -> Result<(), Status> {
    encode::evtchn_create(dst_a, dst_b)
        .issue()
        .result()
        .map(drop)
}

/// Routes events sent to `endpoint` to bit `port` of the caller's event page, waking vCPU
/// `vcpu`; events latched before the bind are delivered now.
pub fn evtchn_bind(endpoint: Slot, port: Port, vcpu: u64) -> Result<(), Status> {
    encode::evtchn_bind(endpoint, port, vcpu)
        .issue()
        .result()
        .map(drop)
}

/// Signals the other endpoint of `endpoint`'s channel; [`Status::PeerClosed`] once the
/// peer's last capability is gone.
pub fn evtchn_send(endpoint: Slot) -> Result<(), Status> {
    encode::evtchn_send(endpoint).issue().result().map(drop)
}

/// Masks (`true`) or unmasks the wake-up of a bound endpoint; unmasking with an event
/// pending raises it.
pub fn evtchn_mask(endpoint: Slot, masked: bool) -> Result<(), Status> {
    encode::evtchn_mask(endpoint, masked)
        .issue()
        .result()
        .map(drop)
}

/// Registers the page at guest-physical `ipa` (page aligned, in the caller's RAM) as the
/// caller's event page. Most code wants [`crate::events::register`].
pub fn event_page_set(ipa: u64) -> Result<(), Status> {
    encode::event_page_set(ipa).issue().result().map(drop)
}

/// Through the SchedControl capability `control`, sets the priority, budget, period and
/// affinity (a CPU bit mask) of the vCPU `target` names (`mica_abi::sched::pack_target`:
/// domain id, vCPU index, priority); budget and period 0 = no reservation.
pub fn sched_set(
    control: Slot,
    target: u64,
    budget_ns: u64,
    period_ns: u64,
    affinity: u64,
) -> Result<(), Status> {
    encode::sched_set(control, target, budget_ns, period_ns, affinity)
        .issue()
        .result()
        .map(drop)
}

/// Restarts a domain from its image (domains created from the system image).
pub fn domain_restart(domain: Slot) -> Result<(), Status> {
    encode::domain_restart(domain).issue().result().map(drop)
}

/// What the kernel says about a domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainInfo {
    /// Its id.
    pub id: u16,
    /// 0 running, 1 paused, 2 dying.
    pub state: u8,
    /// vCPUs.
    pub vcpus: u8,
    /// RAM the kernel gave it.
    pub memory_bytes: u64,
    /// CPU time of all its vCPUs, ns.
    pub cpu_time_ns: u64,
}

/// A domain's state, size and CPU time.
pub fn domain_info(domain: Slot) -> Result<DomainInfo, Status> {
    let [a, memory_bytes, cpu_time_ns] = encode::domain_info(domain).issue().result()?;
    Ok(DomainInfo {
        id: a as u16,
        state: (a >> 16) as u8,
        vcpus: (a >> 24) as u8,
        memory_bytes,
        cpu_time_ns,
    })
}

/// Up to 16 bytes of a domain's console output from `offset` into `out`: returns the total
/// bytes the domain has written and how many were copied (offsets older than the kept 4 KiB
/// read from the oldest kept byte).
pub fn console_read(domain: Slot, offset: u64, out: &mut [u8; 16]) -> Result<(u64, usize), Status> {
    let [total, w0, w1] = encode::console_read(domain, offset).issue().result()?;
    let oldest = total.saturating_sub(4096);
    let from = offset.max(oldest);
    let n = total.saturating_sub(from).min(16) as usize;
    for (i, b) in out.iter_mut().enumerate().take(n) {
        let w = if i < 8 { w0 } else { w1 };
        *b = (w >> ((i % 8) * 8)) as u8;
    }
    Ok((total, n))
}

/// Types up to [`mica_abi::hypercall::CONSOLE_INPUT_MAX`] bytes into a domain's emulated
/// console; returns how many its receive FIFO took.
pub fn console_input(domain: Slot, bytes: &[u8]) -> Result<usize, Status> {
    let [taken, _, _] = encode::console_input(domain, bytes).issue().result()?;
    Ok(taken as usize)
}

/// Chooses how a created domain boots ([`mica_abi::hypercall::BOOT_MICA`] or
/// [`mica_abi::hypercall::BOOT_LINUX`]), before any of its vCPUs starts.
pub fn domain_set_boot(domain: Slot, protocol: u64) -> Result<(), Status> {
    encode::domain_set_boot(domain, protocol)
        .issue()
        .result()
        .map(|_| ())
}

/// Names a domain (1-31 bytes of `[a-z0-9-]`).
pub fn domain_set_name(domain: Slot, name: &str) -> Result<(), Status> {
    encode::domain_set_name(domain, name.as_bytes())
        .issue()
        .result()
        .map(drop)
}

/// Delivers the interrupt of Irq capability `irq` as events on `endpoint`.
pub fn irq_bind_event(irq: Slot, endpoint: Slot) -> Result<(), Status> {
    encode::irq_bind_event(irq, endpoint)
        .issue()
        .result()
        .map(drop)
}

/// Injects the interrupt of Irq capability `irq` into this domain's virtual GIC for `vcpu`.
pub fn irq_bind_virtual(irq: Slot, vcpu: u64) -> Result<(), Status> {
    encode::irq_bind_virtual(irq, vcpu)
        .issue()
        .result()
        .map(drop)
}

/// Acknowledges (deactivates) an event-delivered interrupt.
pub fn irq_ack(irq: Slot) -> Result<(), Status> {
    encode::irq_ack(irq).issue().result().map(drop)
}

/// Stops delivering an interrupt (masks it).
pub fn irq_unbind(irq: Slot) -> Result<(), Status> {
    encode::irq_unbind(irq).issue().result().map(drop)
}

/// What the driver of a guest's virtio device has set up (`virtio_info`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioInfo {
    /// The device status (`mica_abi::virtio::status`).
    pub status: u32,
    /// Counts the guest's resets: what `virtio_signal` is given back.
    pub epoch: u32,
    /// The features driver and device agreed on.
    pub features: u64,
    /// Each queue's size if it is live, else 0 (queue 0 first).
    pub queue_sizes: [u16; 4],
}

/// What the driver of the virtio device `device` (a VirtioDevice capability) has set up.
pub fn virtio_info(device: Slot) -> Result<VirtioInfo, Status> {
    let [state, features, sizes] = encode::virtio_info(device).issue().result()?;
    Ok(VirtioInfo {
        status: state as u32,
        epoch: (state >> 32) as u32,
        features,
        queue_sizes: core::array::from_fn(|i| (sizes >> (16 * i)) as u16),
    })
}

/// Where live queue `queue` of the device is in its guest's memory, in `epoch`: the
/// descriptor table, the available ring, the used ring. `WrongState`: not live, or the guest
/// reset the device since `epoch`.
pub fn virtio_queue(device: Slot, queue: u16, epoch: u32) -> Result<[u64; 3], Status> {
    encode::virtio_queue(device, u64::from(queue), epoch)
        .issue()
        .result()
}

/// Eight bytes of the device's configuration from `offset` (a block device's capacity in
/// sectors at `mica_abi::virtio::blk::config::CAPACITY`), as its guest reads them.
pub fn virtio_config(device: Slot, offset: u64) -> Result<u64, Status> {
    let [value, _, _] = encode::virtio_config(device, offset).issue().result()?;
    Ok(value)
}

/// Reports used buffers of the device in `epoch` (the guest is interrupted), or, with
/// `broken`, that the guest broke a queue's rules. `WrongState`: the guest reset the device
/// since `epoch`.
pub fn virtio_signal(device: Slot, epoch: u32, broken: bool) -> Result<(), Status> {
    encode::virtio_signal(device, epoch, broken)
        .issue()
        .result()
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conduit::mock;
    use mica_abi::hypercall::{unpack_console_bytes, TABLE};

    const S1: Slot = Slot(1);
    const S2: Slot = Slot(2);
    const S3: Slot = Slot(3);

    /// Every encoder, fed distinct argument values, paired with its table name.
    fn every_encoder() -> Vec<(&'static str, Request)> {
        let f = FrameRange::new(5, 6).expect("a range");
        vec![
            ("whoami", encode::whoami()),
            ("console_write", encode::console_write(b"abc")),
            ("yield", encode::yield_now()),
            ("cap_identify", encode::cap_identify(S1)),
            (
                "cap_derive",
                encode::cap_derive(S1, S2, Rights::READ, Some(f)),
            ),
            (
                "cap_grant",
                encode::cap_grant(S1, S2, S3, Rights::WRITE, Some(f)),
            ),
            ("cap_revoke", encode::cap_revoke(S1)),
            ("cap_delete", encode::cap_delete(S1)),
            (
                "mem_map",
                encode::mem_map(S1, S2, 0x4000_0000, f, Rights::READ),
            ),
            ("mem_unmap", encode::mem_unmap(S1, 0x4000_0000, 6)),
            ("domain_create", encode::domain_create(S1, 64, 4096)),
            ("domain_destroy", encode::domain_destroy(S1)),
            ("domain_pause", encode::domain_pause(S1)),
            ("domain_unpause", encode::domain_unpause(S1)),
            ("vcpu_create", encode::vcpu_create(S1, S2, 1, 3)),
            ("vcpu_start", encode::vcpu_start(S1, 0x4000_1000, 9)),
            ("evtchn_create", encode::evtchn_create(S1, S2)),
            ("evtchn_bind", encode::evtchn_bind(S1, Port(3), 1)),
            ("evtchn_send", encode::evtchn_send(S1)),
            ("evtchn_mask", encode::evtchn_mask(S1, true)),
            ("event_page_set", encode::event_page_set(0x4000_2000)),
            ("sched_set", encode::sched_set(S1, 0x2_0001_0003, 1, 2, 3)),
            ("domain_restart", encode::domain_restart(S1)),
            ("domain_info", encode::domain_info(S1)),
            ("console_read", encode::console_read(S1, 7)),
            ("domain_set_name", encode::domain_set_name(S1, b"web")),
            ("console_input", encode::console_input(S1, b"ls\n")),
            ("domain_set_boot", encode::domain_set_boot(S1, 1)),
            ("irq_bind_event", encode::irq_bind_event(S1, S2)),
            ("irq_bind_virtual", encode::irq_bind_virtual(S1, 0)),
            ("irq_ack", encode::irq_ack(S1)),
            ("irq_unbind", encode::irq_unbind(S1)),
            ("virtio_info", encode::virtio_info(S1)),
            ("virtio_queue", encode::virtio_queue(S1, 1, 2)),
            ("virtio_signal", encode::virtio_signal(S1, 3, true)),
            ("virtio_config", encode::virtio_config(S1, 8)),
        ]
    }

    #[test]
    fn every_encoder_has_its_calls_id_and_arity() {
        // A call needs no typed wrapper to be reachable (`call` issues any argument type);
        // every wrapper there is must agree with the table.
        let encoders = every_encoder();
        for (name, request) in &encoders {
            let spec = TABLE
                .iter()
                .find(|spec| spec.name == *name)
                .unwrap_or_else(|| panic!("{name} is not in the table"));
            assert_eq!(request.function, spec.call.function_id(), "{}", spec.name);
            assert!(
                request.args[spec.args.len()..].iter().all(|a| *a == 0),
                "{} sets registers beyond its {} arguments",
                spec.name,
                spec.args.len()
            );
        }
    }

    #[test]
    fn virtio_info_is_decoded_into_its_fields() {
        mock::reply(Reply {
            status: 0,
            values: [0x0000_0007_0000_000F, 1 << 32, 0x0100_0040],
        });
        let info = virtio_info(S2).unwrap();
        assert_eq!((info.status, info.epoch), (0xF, 7));
        assert_eq!(info.features, 1 << 32);
        assert_eq!(info.queue_sizes, [0x40, 0x100, 0, 0]);
        assert_eq!(mock::take()[0].args, [2, 0, 0, 0, 0, 0]);
        assert_eq!(encode::virtio_signal(S1, 3, true).args, [1, 3, 1, 0, 0, 0]);
    }

    #[test]
    fn the_generic_call_sends_what_the_typed_wrapper_sends() {
        use mica_abi::args as a;
        mock::reply(Reply {
            status: 0,
            values: [7, 0, 0],
        });
        assert_eq!(call(a::CapRevoke { slot: S2 }), Ok([7, 0, 0]));
        let sent = mock::take();
        let wrapper = encode::cap_revoke(S2);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].function, wrapper.function);
        assert_eq!(sent[0].args, wrapper.args);
    }

    #[test]
    fn arguments_land_in_the_table_order() {
        let f = FrameRange::new(5, 6).expect("a range");
        let r = Rights::READ | Rights::WRITE;
        assert_eq!(
            encode::cap_identify(Slot(0xABC)).args,
            [0xABC, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            encode::cap_derive(S1, S2, r, Some(f)).args,
            [1, 2, 0b11, 5, 6, 0]
        );
        // The source's whole range is first frame 0, count 0.
        assert_eq!(
            encode::cap_derive(S1, S2, r, None).args,
            [1, 2, 0b11, 0, 0, 0]
        );
        assert_eq!(
            encode::cap_grant(S1, Slot::SELF_DOMAIN, S3, Rights::GRANT, Some(f)).args,
            [1, 0xFFFF, 3, Rights::GRANT.bits() as u64, 5, 6]
        );
        assert_eq!(
            encode::mem_map(Slot::SELF_DOMAIN, S2, 0x4800_0000, f, r).args,
            [0xFFFF, 2, 0x4800_0000, 5, 6, 0b11]
        );
        assert_eq!(
            encode::mem_unmap(S1, 0x4800_0000, 7).args,
            [1, 0x4800_0000, 7, 0, 0, 0]
        );
        assert_eq!(
            encode::domain_create(S3, 64, 1 << 20).args,
            [3, 64, 1 << 20, 0, 0, 0]
        );
        assert_eq!(encode::vcpu_create(S1, S2, 1, 3).args, [1, 2, 1, 3, 0, 0]);
        assert_eq!(
            encode::vcpu_start(S1, 0x4000_1000, 9).args,
            [1, 0x4000_1000, 9, 0, 0, 0]
        );
        assert_eq!(encode::evtchn_create(S2, S3).args, [2, 3, 0, 0, 0, 0]);
        assert_eq!(
            encode::evtchn_bind(S1, Port(4095), 2).args,
            [1, 4095, 2, 0, 0, 0]
        );
        assert_eq!(encode::evtchn_mask(S3, true).args, [3, 1, 0, 0, 0, 0]);
        assert_eq!(encode::evtchn_mask(S3, false).args, [3, 0, 0, 0, 0, 0]);
        assert_eq!(
            encode::event_page_set(0x4001_0000).args,
            [0x4001_0000, 0, 0, 0, 0, 0]
        );
        for (name, request) in every_encoder() {
            if name.starts_with("domain_")
                && !matches!(
                    name,
                    "domain_create" | "domain_set_name" | "domain_set_boot"
                )
            {
                assert_eq!(request.args, [1, 0, 0, 0, 0, 0], "{name}");
            }
        }
        assert_eq!(encode::domain_set_boot(S1, 1).args, [1, 1, 0, 0, 0, 0]);
    }

    #[test]
    fn names_pack_little_endian_and_stop_at_thirty_two_bytes() {
        assert_eq!(
            encode::domain_set_name(S1, b"web").args,
            [1, 0x0062_6577, 0, 0, 0, 0]
        );
        let long = [b'a'; 40];
        let r = encode::domain_set_name(S1, &long);
        assert_eq!(r.args[4], u64::from_le_bytes([b'a'; 8]));
        assert_eq!(r.args[5], 0);
    }

    #[test]
    fn console_write_packs_at_most_forty_bytes() {
        let text = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH";
        let request = encode::console_write(text);
        assert_eq!(request.args[0], 40);
        let mut buf = [0; CONSOLE_WRITE_MAX];
        let regs = [
            request.args[1],
            request.args[2],
            request.args[3],
            request.args[4],
            request.args[5],
        ];
        assert_eq!(
            unpack_console_bytes(request.args[0], regs, &mut buf),
            Some(&text[..40])
        );
        let short = encode::console_write(b"hi\n");
        assert_eq!(
            short.args,
            [3, u64::from_le_bytes(*b"hi\n\0\0\0\0\0"), 0, 0, 0, 0]
        );
        assert_eq!(encode::console_write(b"").args, [0; 6]);
    }

    #[test]
    fn wrappers_issue_their_request_and_decode_the_reply() {
        mock::reply(Reply {
            status: 0,
            values: [7, 1, 64],
        });
        assert_eq!(
            whoami(),
            Ok(Whoami {
                domain_id: 7,
                vcpu_index: 1,
                slots: 64
            })
        );
        let rights = Rights::READ | Rights::WRITE | Rights::GRANT;
        mock::reply(Reply {
            status: 0,
            values: [3 | ((rights.bits() as u64) << 8), 0x40000, 256],
        });
        assert_eq!(
            cap_identify(S2),
            Ok(CapInfo {
                object_type: ObjectType::Memory,
                rights,
                frames: FrameRange::new(0x40000, 256)
            })
        );
        mock::reply(Reply::failed(Status::InvalidCapability));
        assert_eq!(
            mem_map(
                Slot::SELF_DOMAIN,
                S3,
                0,
                FrameRange::new(0, 1).expect("a range"),
                Rights::READ
            ),
            Err(Status::InvalidCapability)
        );
        mock::reply(Reply {
            status: 0,
            values: [4, 0, 0],
        });
        assert_eq!(cap_revoke(S1), Ok(4));
        mock::reply(Reply {
            status: 0,
            values: [99, 0, 0],
        });
        assert_eq!(console_write(b"abc"), Ok(3), "never more than was sent");
        mock::reply(Reply {
            status: 0,
            values: [0, 0, 0],
        });
        assert_eq!(yield_now(), Ok(()));
        let log = mock::take();
        let functions: Vec<u64> = log.iter().map(|r| r.function).collect();
        assert_eq!(
            functions,
            [
                Call::Whoami,
                Call::CapIdentify,
                Call::MemMap,
                Call::CapRevoke,
                Call::ConsoleWrite,
                Call::Yield
            ]
            .map(Call::function_id)
        );
        assert!(log.iter().all(|r| r.conduit == Conduit::Hvc));
        assert_eq!(log[1].args[0], 2);
    }

    #[test]
    fn unknown_object_types_and_statuses_are_not_success() {
        assert_eq!(
            CapInfo::from_values([0x99, 0, 0]),
            Err(Status::NotSupported)
        );
        mock::reply(Reply {
            status: 0xDEAD,
            values: [1, 2, 3],
        });
        assert_eq!(whoami(), Err(Status::NotSupported));
        mock::take();
    }

    #[test]
    fn raw_call_passes_anything_through() {
        raw_call(0x8600_0000, [41, u64::MAX, 0, 0, 0, 1 << 63]);
        let log = mock::take();
        assert_eq!(log[0].function, 0x8600_0000);
        assert_eq!(log[0].args, [41, u64::MAX, 0, 0, 0, 1 << 63]);
    }
}
