//! The one place effects are applied ([`crate::effect`]): a queue, drained in order by the
//! outermost [`Kernel::apply`]; effects that arise while it drains join the end of the queue.

use super::*;

impl<H: Hal> Kernel<H> {
    /// Applies `effects`, and every effect they cause, before returning (unless called while
    /// effects are being applied: then they are queued behind the others). What a table
    /// reports through a callback may be pushed onto `self.effects` directly, then
    /// `apply([])` drains it: no list in between.
    pub(crate) fn apply(&mut self, effects: impl IntoIterator<Item = Effect>) {
        self.effects.extend(effects);
        if self.applying {
            return;
        }
        self.applying = true;
        while let Some(effect) = self.effects.pop_front() {
            self.perform(effect);
        }
        self.applying = false;
    }

    fn perform(&mut self, effect: Effect) {
        match effect {
            Effect::Removed(removal) => self.undo(removal),
            Effect::Deliver(delivery) => self.deliver(delivery),
            Effect::EndDomain(id) => self.end_domain(id),
            Effect::Dismantle(id) => self.dismantle(id),
            Effect::Release(id) => self.release(id),
            Effect::FreePool(pool) => {
                self.hal.zero_phys(pool);
                self.frames.free(pool);
            }
        }
    }

    /// Undoes what a removed capability made possible, and ends what a destroyed object was:
    /// mappings made through a removed Memory capability go; a destroyed event channel
    /// closes, an Irq line is masked and forgotten, a Vcpu stops for good, and a Domain ends
    /// like by `domain_destroy` (its vCPUs leave every CPU, then everything it had goes, the
    /// domains it created with it).
    fn undo(&mut self, removal: Removal) {
        match removal {
            Removal::Capability { addr, .. } => {
                // One mapping at a time, found afresh (`unmap_one` removes it): collecting them
                // first copied a table-sized list per domain, the bulk of a revoke's cost.
                for id in 0..SPACES {
                    for _ in 0..crate::domain::MAX_MAPPINGS {
                        let Some((ipa, pages)) = self.domains[id]
                            .as_ref()
                            .and_then(|d| d.mappings.made_through(addr))
                        else {
                            break;
                        };
                        self.unmap_one(DomainId(id as u16), ipa, pages);
                    }
                }
            }
            Removal::ObjectDestroyed {
                object,
                object_type: ObjectType::EventChannel,
            } => {
                self.channels.close(object);
            }
            Removal::ObjectDestroyed {
                object,
                object_type: ObjectType::Irq,
            } => {
                let removed = self.irqs.remove(object);
                self.drive_lines(removed);
            }
            Removal::ObjectDestroyed {
                object_type: ObjectType::Vcpu | ObjectType::Domain,
                ..
            } if cfg!(feature = "mutant-destroyed-objects-live-on") => {}
            Removal::ObjectDestroyed {
                object,
                object_type: ObjectType::Vcpu,
            } => {
                if let Some(v) = self.vcpu_of_object(object) {
                    self.retire_vcpu(v);
                }
            }
            Removal::ObjectDestroyed {
                object,
                object_type: ObjectType::Domain,
            } => {
                let found = self.domains().find(|d| d.object == object).map(|d| d.id);
                if let Some(id) = found {
                    self.end_domain(id);
                }
            }
            _ => {}
        }
    }

    /// Carries out what the table of interrupt lines asked of the interrupt controller.
    pub(super) fn drive_lines(&self, actions: impl IntoIterator<Item = LineAction>) {
        for action in actions {
            match action {
                LineAction::Enable { intid, cpu } => self.hal.irq_enable(intid, cpu),
                LineAction::Disable(intid) => self.hal.irq_disable(intid),
                LineAction::Deactivate(intid) => self.hal.irq_deactivate(intid),
            }
        }
    }

    /// Interrupts the physical CPU a vCPU's change concerns ([`Kick`]).
    pub(super) fn kick(&mut self, kick: Option<Kick>) {
        if let Some(Kick { cpu, resched }) = kick {
            if resched {
                self.request_resched(cpu);
            }
            self.stir(cpu);
            self.hal.kick(cpu);
        }
    }
}
