//! Invoking a hypercall: its registers are decoded by `mica_abi::args` (the one definition
//! of every call's arguments and their syntax, which the runtime encodes with too; what fails
//! it is `InvalidArgument` or `OutOfRange`, before anything is looked at), then each call's
//! check section (capability look-ups, ranges, states — reads only) runs before its act
//! section. The table of calls and their statuses is `mica_abi::hypercall::TABLE`;
//! `docs/hypercalls.md` describes each.
//!
//! This file only routes: each call's `invoke_*` method lives with its object family —
//! `capabilities.rs`, `memory.rs` (mappings), `creation.rs` (domains and vCPUs made),
//! `lifecycle.rs` (a domain's state, name and end), `events.rs` (event channels, the event
//! page), `interrupts.rs` (IRQ lines), `schedule.rs` (scheduling parameters), `output.rs`
//! (the console) and `virtio.rs` (guests' virtio devices).

use super::*;
use mica_abi::args::{self as a, Args};

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
            Args::ConsoleWrite(x) => k.invoke_console_write(caller, x),
            Args::Yield(_) => {
                k.yield_cpu(cpu);
                Ok([0; 3])
            }
            Args::CapIdentify(x) => k.invoke_cap_identify(caller, x),
            Args::CapDerive(x) => k.invoke_cap_derive(caller, x),
            Args::CapGrant(x) => k.invoke_cap_grant(caller, x),
            Args::CapRevoke(x) => k.invoke_cap_revoke(caller, x),
            Args::CapDelete(x) => k.invoke_cap_delete(caller, x),
            Args::MemMap(x) => k.invoke_mem_map(caller, x),
            Args::MemUnmap(x) => k.invoke_mem_unmap(caller, x),
            Args::DomainCreate(x) => k.invoke_domain_create(caller, x),
            Args::DomainDestroy(x) => k.invoke_domain_destroy(caller, x),
            Args::DomainPause(x) => k.invoke_domain_pause(caller, x),
            Args::DomainUnpause(x) => k.invoke_domain_unpause(caller, x),
            Args::VcpuCreate(x) => k.invoke_vcpu_create(caller, x),
            Args::EvtchnCreate(x) => k.invoke_evtchn_create(caller, x),
            Args::EvtchnBind(x) => k.invoke_evtchn_bind(caller, x),
            Args::EvtchnSend(x) => k.invoke_evtchn_send(caller, x),
            Args::EvtchnMask(x) => k.invoke_evtchn_mask(caller, x),
            Args::SchedSet(x) => k.invoke_sched_set(caller, x),
            Args::IrqBindEvent(x) => k.invoke_irq_bind_event(caller, x),
            Args::IrqBindVirtual(x) => k.invoke_irq_bind_virtual(caller, x),
            Args::IrqAck(x) => k.invoke_irq_ack(caller, x),
            Args::IrqUnbind(x) => k.invoke_irq_unbind(caller, x),
            Args::DomainRestart(x) => k.invoke_domain_restart(caller, x),
            Args::DomainInfo(x) => k.invoke_domain_info(caller, x),
            Args::ConsoleRead(x) => k.invoke_console_read(caller, x),
            Args::DomainSetName(x) => k.invoke_domain_set_name(caller, x),
            Args::ConsoleInput(x) => k.invoke_console_input(caller, x),
            Args::DomainSetBoot(x) => k.invoke_domain_set_boot(caller, x),
            Args::EventPageSet(x) => k.invoke_event_page_set(caller, x),
            Args::VcpuStart(x) => k.invoke_vcpu_start(caller, x),
            Args::VirtioInfo(x) => k.invoke_virtio_info(caller, x),
            Args::VirtioQueue(x) => k.invoke_virtio_queue(caller, x),
            Args::VirtioSignal(x) => k.invoke_virtio_signal(caller, x),
            Args::VirtioConfig(x) => k.invoke_virtio_config(caller, x),
        }
    }
}
