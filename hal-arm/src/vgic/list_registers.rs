//! The list registers of the virtual CPU interface: what is listed on entry, what the guest
//! acknowledged and ended, folded back on exit (IHI 0069 12.4.6).

use super::*;

impl Vgic {
    // ---- List registers ----------------------------------------------------------------

    /// The ICH_LR<n>_EL2 value for `intid` with the given state.
    pub(super) fn encode(intid: u32, irq: &Interrupt, pending: bool, latched: bool) -> u64 {
        let mut value = u64::from(intid) | u64::from(irq.priority) << lr::PRIORITY_SHIFT;
        if pending {
            value |= lr::PENDING;
        }
        if irq.active {
            value |= lr::ACTIVE;
        }
        if irq.group1 {
            value |= lr::GROUP1;
        }
        match irq.hardware {
            Some(physical) => value |= lr::HW | u64::from(physical) << lr::PINTID_SHIFT,
            // A level interrupt listed from its line: ask to be told of its deactivation so
            // the caller can resample the line. Kept while the entry is only active too: a
            // refill between the guest's acknowledgement and its EOI must not lose it.
            None if !irq.edge && !latched => value |= lr::EOI,
            None => {}
        }
        value
    }

    /// Records what list register `slot` of `vcpu` holds for the model (`None`: nothing):
    /// the one place the records and their `occupied` bits change.
    fn record(&mut self, vcpu: usize, slot: usize, listed: Option<Listed>) {
        let Some(cpu) = self.cpu.get_mut(vcpu) else {
            return;
        };
        let Some(entry) = cpu.list.get_mut(slot) else {
            return;
        };
        *entry = listed;
        let bit = 1u16 << slot;
        if listed.is_some() {
            cpu.occupied |= bit;
        } else {
            cpu.occupied &= !bit;
        }
    }

    /// The list registers of `vcpu` the model holds entries in (bit n: LR n).
    fn occupied(&self, vcpu: usize) -> u16 {
        self.cpu.get(vcpu).map_or(0, |c| c.occupied)
    }

    /// The model's record of list register `slot` of `vcpu`.
    fn listed(&self, vcpu: usize, slot: usize) -> Option<Listed> {
        self.cpu.get(vcpu)?.list.get(slot).copied().flatten()
    }

    /// Restores the latch a list register took if the guest never saw it.
    pub(super) fn unlist(&mut self, vcpu: usize, slot: usize, restore_latch: bool) {
        let Some(listed) = self.listed(vcpu, slot) else {
            return;
        };
        self.record(vcpu, slot, None);
        if let Some(irq) = self.interrupt_mut(vcpu, listed.intid) {
            irq.listed = false;
            if restore_latch && listed.latched {
                irq.latch = true;
            }
        }
    }

    /// Takes the pending state of `intid` for a list register: (pending, from the latch).
    pub(super) fn take_pending(&mut self, vcpu: usize, intid: u32) -> (bool, bool) {
        let Some(irq) = self.interrupt(vcpu, intid).copied() else {
            return (false, false);
        };
        // A hardware-linked interrupt is never listed pending and active: its pending state
        // stays with the physical distributor meanwhile.
        let pending = irq.pending()
            && self.eligible(vcpu, intid, &irq)
            && !(irq.active && irq.hardware.is_some());
        let latched = pending && irq.latch;
        if latched {
            if let Some(irq) = self.interrupt_mut(vcpu, intid) {
                irq.latch = false;
            }
        }
        (pending, latched)
    }

    /// The best interrupt for `vcpu` that is not in a list register and must be: active, or
    /// pending and eligible.
    pub(super) fn best_candidate(&self, vcpu: usize) -> Option<(Rank, u32)> {
        self.maybe_interesting(vcpu)
            // The cheap tests first: most interrupts are neither active nor pending, and the
            // routing test decodes an SPI's IROUTER.
            .filter(|(intid, irq)| {
                (irq.active || irq.pending())
                    && !irq.listed
                    && self.routed_here(vcpu, *intid)
                    && (irq.active || self.eligible(vcpu, *intid, irq))
            })
            .map(|(intid, irq)| ((!irq.active, irq.priority, intid), intid))
            .min()
    }

    /// Fills `vcpu`'s list registers before it runs. `lrs` holds the ICH_LR<n>_EL2 values
    /// (as many as ICH_VTR_EL2.ListRegs + 1 says; at most 16 are used) and is rewritten in
    /// place; `elrsr` is ICH_ELRSR_EL2 (bit n: LR n holds no valid interrupt). List
    /// registers the model filled earlier are refreshed from the model; the others are used
    /// only if empty. Write every LR back, then ICH_HCR_EL2 = [`FillOutcome::ich_hcr`].
    pub fn fill_list_registers(
        &mut self,
        vcpu: usize,
        lrs: &mut [u64],
        elrsr: u32,
    ) -> Result<FillOutcome, VgicError> {
        self.check_vcpu(vcpu)?;
        let count = lrs.len().min(MAX_LIST_REGISTERS);
        let in_range = (1u32 << count) - 1;
        // Nothing listed and nothing that may be pending or active (the common exit): there
        // is nothing to do.
        let quiet = |g: &Vgic| {
            g.occupied(vcpu) == 0
                && g.spi_maybe == 0
                && g.cpu.get(vcpu).is_some_and(|c| c.maybe == 0)
        };
        if quiet(self) {
            return Ok(FillOutcome {
                valid: 0,
                underflow: false,
            });
        }
        self.prune(vcpu);

        // 1. Refresh what the model already listed.
        for slot in bits(u64::from(u32::from(self.occupied(vcpu)) & in_range)) {
            let slot = slot as usize;
            let Some(listed) = self.listed(vcpu, slot) else {
                continue;
            };
            if listed.latched {
                // Filled before without a sync in between: the guest has not run.
                if let Some(irq) = self.interrupt_mut(vcpu, listed.intid) {
                    irq.latch = true;
                }
            }
            let (pending, latched) = self.take_pending(vcpu, listed.intid);
            let Some(irq) = self.interrupt(vcpu, listed.intid).copied() else {
                continue;
            };
            if let Some(entry) = lrs.get_mut(slot) {
                if pending || irq.active {
                    *entry = Self::encode(listed.intid, &irq, pending, latched);
                    let intid = listed.intid;
                    self.record(vcpu, slot, Some(Listed { intid, latched }));
                } else {
                    *entry = 0;
                    self.unlist(vcpu, slot, false);
                }
            }
        }

        // 2. List the best remaining candidates, evicting worse pending-only entries.
        let mut underflow = false;
        for _ in 0..count + PRIVATE_INTERRUPTS + MAX_SPIS {
            let Some((rank, intid)) = self.best_candidate(vcpu) else {
                break;
            };
            let slot = match self.free_slot(vcpu, lrs, count, elrsr) {
                Some(slot) => slot,
                None => match self.eviction_victim(vcpu, rank) {
                    Some(slot) => {
                        self.unlist(vcpu, slot, true);
                        if let Some(entry) = lrs.get_mut(slot) {
                            *entry = 0;
                        }
                        slot
                    }
                    None => {
                        underflow = true;
                        break;
                    }
                },
            };
            let (pending, latched) = self.take_pending(vcpu, intid);
            let Some(irq) = self.interrupt_mut(vcpu, intid) else {
                break;
            };
            irq.listed = true;
            let irq = *irq;
            if let Some(entry) = lrs.get_mut(slot) {
                *entry = Self::encode(intid, &irq, pending, latched);
            }
            self.record(vcpu, slot, Some(Listed { intid, latched }));
        }

        let valid = u32::from(self.occupied(vcpu)) & in_range;
        Ok(FillOutcome { valid, underflow })
    }

    /// A list register the model may use: not the model's, and empty.
    pub(super) fn free_slot(
        &self,
        vcpu: usize,
        lrs: &[u64],
        count: usize,
        elrsr: u32,
    ) -> Option<usize> {
        let occupied = self.cpu.get(vcpu)?.occupied;
        (0..count).find(|&n| {
            occupied & (1 << n) == 0
                && (elrsr & (1 << n) != 0 || lrs.get(n).is_some_and(|v| v & lr::STATE_MASK == 0))
        })
    }

    /// The worst pending-only list register, if it ranks below `rank`.
    pub(super) fn eviction_victim(&self, vcpu: usize, rank: Rank) -> Option<usize> {
        let cpu = self.cpu.get(vcpu)?;
        cpu.list
            .iter()
            .enumerate()
            .filter_map(|(slot, listed)| {
                let listed = (*listed)?;
                let irq = self.interrupt(vcpu, listed.intid)?;
                (!irq.active).then_some(((!irq.active, irq.priority, listed.intid), slot))
            })
            .max()
            .filter(|(worst, _)| *worst > rank)
            .map(|(_, slot)| slot)
    }

    /// Folds `vcpu`'s list registers back into the model after it ran: `lrs` are the
    /// ICH_LR<n>_EL2 values read at exit. An entry the guest acknowledged is active; one it
    /// deactivated (state invalid) is inactive and its register free; one still pending
    /// stays pending.
    pub fn sync_from_list_registers(&mut self, vcpu: usize, lrs: &[u64]) -> Result<(), VgicError> {
        self.check_vcpu(vcpu)?;
        for slot in bits(u64::from(self.occupied(vcpu))) {
            let slot = slot as usize;
            let Some(listed) = self.listed(vcpu, slot) else {
                continue;
            };
            let value = lrs.get(slot).copied().unwrap_or(0);
            if value & lr::VINTID_MASK != u64::from(listed.intid) {
                // Not what the model wrote: the guest never saw it.
                self.unlist(vcpu, slot, true);
                continue;
            }
            if value & lr::STATE_MASK == 0 {
                // Deactivated: inactive, and the register is free.
                if let Some(irq) = self.interrupt_mut(vcpu, listed.intid) {
                    irq.active = false;
                }
                self.unlist(vcpu, slot, false);
                continue;
            }
            let pending = value & lr::PENDING != 0;
            if let Some(irq) = self.interrupt_mut(vcpu, listed.intid) {
                irq.active = value & lr::ACTIVE != 0;
                if pending && listed.latched {
                    irq.latch = true;
                }
            }
            let intid = listed.intid;
            self.record(
                vcpu,
                slot,
                Some(Listed {
                    intid,
                    latched: false,
                }),
            );
        }
        Ok(())
    }
}
