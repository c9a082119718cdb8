//! Event deliveries and physical interrupt lines handed to domains.

use super::*;

impl<H: Hal> Kernel<H> {
    /// Performs an event-channel delivery: the port bit and its summary bit in the receiver's
    /// event page, then (unless masked) a wake-up and the upcall.
    pub(crate) fn deliver(&mut self, delivery: Delivery) {
        let Binding { domain, port, vcpu } = delivery.binding;
        let Some(d) = self.domains[domain.index()].as_mut() else {
            return;
        };
        if d.state == DomainState::Dying {
            return;
        }
        let Some((word, bit)) = mica_abi::event::port_position(port as u64) else {
            return;
        };
        let page = d.event_page;
        let targets = page.and_then(|page| {
            let pending = d
                .mappings
                .translate_writable(page + mica_abi::event::pending_offset(word) as u64)?;
            let summary = d
                .mappings
                .translate_writable(page + mica_abi::event::SUMMARY_OFFSET as u64)?;
            Some((pending, summary))
        });
        if let Some((pending, summary)) = targets {
            let ok = self.hal.atomic_or_phys(pending, bit)
                && self.hal.atomic_or_phys(summary, 1 << word);
            if !ok {
                return;
            }
        }
        if !delivery.wake {
            return;
        }
        let Some(d) = self.domains[domain.index()].as_mut() else {
            return;
        };
        let Some(&v) = d.vcpus.get(vcpu as usize) else {
            return;
        };
        let raised = self.hal.raise_upcall(&mut d.arch, vcpu);
        let running = self.vcpu(v).map(|x| (x.state == VcpuState::Running, x.cpu));
        self.wake(v);
        if let (true, Some((true, cpu))) = (raised, running) {
            self.hal.kick(cpu);
        }
    }

    pub(super) fn vcpu_cpu(&self, domain: DomainId, index: u16) -> Option<usize> {
        let v = *self.domain(domain)?.vcpus.get(index as usize)?;
        Some(self.vcpu(v)?.cpu)
    }

    /// The line of the Irq capability in `caller`'s slot `irq` (RECEIVE needed).
    fn irq_arg(&self, caller: DomainId, irq: Slot) -> Result<usize, Status> {
        let info = self
            .caps
            .lookup(caller.space(), irq.0, ObjectType::Irq, Rights::RECEIVE)?;
        self.irqs.find(info.object).ok_or(Status::StaleCapability)
    }

    /// A physical interrupt `intid` owned by a domain fired (the HAL acknowledged it).
    pub fn physical_interrupt(&mut self, intid: u32) -> IrqOutcome {
        match self.irqs.occurrence(intid) {
            Occurrence::Nobody => {
                self.drive_lines([LineAction::Disable(intid)]);
                IrqOutcome::Deactivate
            }
            Occurrence::Event(line, ep) => match self.channels.raise(ep) {
                Ok(delivery) => {
                    self.irqs.delivered(line);
                    if let Some(d) = delivery {
                        self.apply([Effect::Deliver(d)]);
                    }
                    IrqOutcome::LeaveActive
                }
                Err(_) => {
                    let released = self.irqs.release(line);
                    self.drive_lines(released);
                    IrqOutcome::Deactivate
                }
            },
            Occurrence::Virtual { line, domain, vcpu } => {
                let v = self
                    .domain(domain)
                    .and_then(|d| d.vcpus.get(vcpu as usize).copied());
                let injected = match (v, self.domains[domain.index()].as_mut()) {
                    (Some(_), Some(d)) => self.hal.inject_hardware_irq(&mut d.arch, vcpu, intid),
                    _ => false,
                };
                match v {
                    Some(v) if injected => {
                        self.interrupt_vcpu(v);
                        IrqOutcome::LeaveActive
                    }
                    _ => {
                        let released = self.irqs.release(line);
                        self.drive_lines(released);
                        IrqOutcome::Deactivate
                    }
                }
            }
        }
    }
}

/// The hypercalls on interrupts (routed by `invoke.rs`, their arguments decoded by `mica-abi`):
/// each checks with no side effect, then acts.
impl<H: Hal> Kernel<H> {
    /// `irq_bind_event`.
    pub(super) fn invoke_irq_bind_event(
        &mut self,
        caller: DomainId,
        mica_abi::args::IrqBindEvent { irq, endpoint }: mica_abi::args::IrqBindEvent,
    ) -> Result<[u64; 3], Status> {
        // Check.
        let line = self.irq_arg(caller, irq)?;
        let ep = self.caps.lookup(
            caller.space(),
            endpoint.0,
            ObjectType::EventChannel,
            Rights::RECEIVE,
        )?;
        let id = self
            .channels
            .find(ep.object)
            .ok_or(Status::StaleCapability)?;
        let binding = self
            .channels
            .get(id)
            .and_then(|e| e.binding)
            .ok_or(Status::WrongState)?;
        let cpu = self.vcpu_cpu(binding.domain, binding.vcpu).unwrap_or(0);
        // Act.
        let bound = self.irqs.bind(line, IrqRoute::Event(id), cpu);
        self.drive_lines(bound);
        Ok([0; 3])
    }

    /// `irq_bind_virtual`.
    pub(super) fn invoke_irq_bind_virtual(
        &mut self,
        caller: DomainId,
        mica_abi::args::IrqBindVirtual { irq, vcpu }: mica_abi::args::IrqBindVirtual,
    ) -> Result<[u64; 3], Status> {
        // Check.
        let line = self.irq_arg(caller, irq)?;
        let cpu = self
            .vcpu_cpu(caller, vcpu.0)
            .ok_or(Status::InvalidArgument)?;
        // Act.
        let route = IrqRoute::Virtual {
            domain: caller,
            vcpu: vcpu.0,
        };
        let bound = self.irqs.bind(line, route, cpu);
        self.drive_lines(bound);
        Ok([0; 3])
    }

    /// `irq_ack`.
    pub(super) fn invoke_irq_ack(
        &mut self,
        caller: DomainId,
        mica_abi::args::IrqAck { irq }: mica_abi::args::IrqAck,
    ) -> Result<[u64; 3], Status> {
        let line = self.irq_arg(caller, irq)?;
        let acked = self.irqs.ack(line)?;
        self.drive_lines(acked);
        Ok([0; 3])
    }

    /// `irq_unbind`.
    pub(super) fn invoke_irq_unbind(
        &mut self,
        caller: DomainId,
        mica_abi::args::IrqUnbind { irq }: mica_abi::args::IrqUnbind,
    ) -> Result<[u64; 3], Status> {
        let line = self.irq_arg(caller, irq)?;
        let released = self.irqs.release(line);
        self.drive_lines(released);
        Ok([0; 3])
    }
}
