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
            let pending =
                d.translate_writable(page + mica_abi::event::pending_offset(word) as u64)?;
            let summary = d.translate_writable(page + mica_abi::event::SUMMARY_OFFSET as u64)?;
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

    /// The line whose Irq object `object` is.
    pub(super) fn irq_line(&self, object: mica_caps::ObjectRef) -> Option<usize> {
        self.irqs.iter().position(|l| l.object == object)
    }

    /// `irq_bind_event`, `irq_bind_virtual`, `irq_ack`, `irq_unbind` after decoding.
    pub(crate) fn irq_call(&mut self, caller: DomainId, irq: u16, op: IrqOp) -> Result<(), Status> {
        let info = self
            .caps
            .lookup(caller.space(), irq, ObjectType::Irq, Rights::RECEIVE)?;
        let i = self.irq_line(info.object).ok_or(Status::StaleCapability)?;
        let intid = self.irqs[i].intid;
        match op {
            IrqOp::BindEvent { endpoint } => {
                let ep = self.caps.lookup(
                    caller.space(),
                    endpoint,
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
                self.irqs[i].route = IrqRoute::Event(id);
                self.hal.irq_enable(intid, cpu);
            }
            IrqOp::BindVirtual { vcpu } => {
                let cpu = self.vcpu_cpu(caller, vcpu).ok_or(Status::InvalidArgument)?;
                self.irqs[i].route = IrqRoute::Virtual {
                    domain: caller,
                    vcpu,
                };
                self.hal.irq_enable(intid, cpu);
            }
            IrqOp::Ack => {
                if !self.irqs[i].active {
                    return Err(Status::WrongState);
                }
                self.irqs[i].active = false;
                self.hal.irq_deactivate(intid);
            }
            IrqOp::Unbind => self.release_irq(i),
        }
        Ok(())
    }

    pub(super) fn vcpu_cpu(&self, domain: DomainId, index: u16) -> Option<usize> {
        let v = *self.domain(domain)?.vcpus.get(index as usize)?;
        Some(self.vcpu(v)?.cpu)
    }

    /// Masks line `i`, deactivates it if it was left active, and unbinds it.
    pub(super) fn release_irq(&mut self, i: usize) {
        let Some(line) = self.irqs.get_mut(i) else {
            return;
        };
        line.route = IrqRoute::Unbound;
        let (intid, active) = (line.intid, core::mem::take(&mut line.active));
        self.hal.irq_disable(intid);
        if active {
            self.hal.irq_deactivate(intid);
        }
    }

    /// A physical interrupt `intid` owned by a domain fired (the HAL acknowledged it).
    pub fn physical_interrupt(&mut self, intid: u32) -> IrqOutcome {
        let Some(i) = self.irqs.iter().position(|l| l.intid == intid) else {
            self.hal.irq_disable(intid);
            return IrqOutcome::Deactivate;
        };
        match self.irqs[i].route {
            IrqRoute::Unbound => {
                self.hal.irq_disable(intid);
                IrqOutcome::Deactivate
            }
            IrqRoute::Event(ep) => match self.channels.raise(ep) {
                Ok(delivery) => {
                    self.irqs[i].active = true;
                    if let Some(d) = delivery {
                        self.apply([Effect::Deliver(d)]);
                    }
                    IrqOutcome::LeaveActive
                }
                Err(_) => {
                    self.release_irq(i);
                    IrqOutcome::Deactivate
                }
            },
            IrqRoute::Virtual { domain, vcpu } => {
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
                        self.release_irq(i);
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
        let op = IrqOp::BindEvent {
            endpoint: endpoint.0,
        };
        self.irq_call(caller, irq.0, op)?;
        Ok([0; 3])
    }

    /// `irq_bind_virtual`.
    pub(super) fn invoke_irq_bind_virtual(
        &mut self,
        caller: DomainId,
        mica_abi::args::IrqBindVirtual { irq, vcpu }: mica_abi::args::IrqBindVirtual,
    ) -> Result<[u64; 3], Status> {
        self.irq_call(caller, irq.0, IrqOp::BindVirtual { vcpu: vcpu.0 })?;
        Ok([0; 3])
    }

    /// `irq_ack`.
    pub(super) fn invoke_irq_ack(
        &mut self,
        caller: DomainId,
        mica_abi::args::IrqAck { irq }: mica_abi::args::IrqAck,
    ) -> Result<[u64; 3], Status> {
        self.irq_call(caller, irq.0, IrqOp::Ack)?;
        Ok([0; 3])
    }

    /// `irq_unbind`.
    pub(super) fn invoke_irq_unbind(
        &mut self,
        caller: DomainId,
        mica_abi::args::IrqUnbind { irq }: mica_abi::args::IrqUnbind,
    ) -> Result<[u64; 3], Status> {
        self.irq_call(caller, irq.0, IrqOp::Unbind)?;
        Ok([0; 3])
    }
}
