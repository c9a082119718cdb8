//! How domains and vCPUs end: pause and unpause, a domain's end in three effects (its vCPUs
//! stop; once none runs it is dismantled; then released), restart, retired vCPUs.

use super::*;

impl<H: Hal> Kernel<H> {
    /// The vCPU whose Vcpu object is `object`.
    pub(super) fn vcpu_of_object(&self, object: mica_caps::ObjectRef) -> Option<VcpuId> {
        self.vcpus
            .iter()
            .take(self.vcpu_end)
            .position(|x| x.as_ref().is_some_and(|x| x.object == object))
            .map(|i| VcpuId(i as u16))
    }

    /// vCPU `v`'s object is gone: it stops now (or as soon as it leaves its CPU) and never
    /// runs again.
    pub(super) fn retire_vcpu(&mut self, v: VcpuId) {
        let Some(x) = self.vcpus[v.index()].as_mut() else {
            return;
        };
        let kick = x.retire();
        self.kick(kick);
        self.publish_accounting();
    }

    /// `domain_restart`: restarts a domain created from the system image.
    pub(crate) fn restart_domain(&mut self, id: DomainId) -> Result<(), Status> {
        let d = self.domain(id).ok_or(Status::StaleCapability)?;
        if d.state == DomainState::Dying {
            return Err(Status::WrongState);
        }
        if d.image_index.is_none() {
            return Err(Status::NotSupported);
        }
        self.restart(id);
        Ok(())
    }

    /// `domain_info`: id, state and vCPU count; RAM bytes; CPU time in ns.
    pub(crate) fn domain_info(&self, id: DomainId) -> Result<[u64; 3], Status> {
        let d = self.domain(id).ok_or(Status::StaleCapability)?;
        let state = match d.state {
            DomainState::Running => 0u64,
            DomainState::Paused => 1,
            DomainState::Dying => 2,
        };
        let ram: u64 = d.ram.iter().map(|r| r.size()).sum();
        let now = self.hal.now_ns();
        let cpu: u64 = d
            .vcpus
            .iter()
            .filter_map(|v| self.vcpu(*v))
            .map(|v| v.sched.run_time_at(now))
            .sum();
        Ok([
            id.0 as u64 | state << 16 | (d.vcpus.len() as u64) << 24,
            ram,
            cpu,
        ])
    }

    /// `domain_set_name`: names domain `id` (the decoder validated the characters; the
    /// dispatcher, that the caller holds a Domain capability for it). Names are unique: one a
    /// live domain has, one the system image gives a domain (started or not), and the
    /// `unnamed-` names of domains not yet named are refused with `NameInUse`.
    pub(crate) fn set_name(&mut self, id: DomainId, name: &[u8; 32]) -> Result<(), Status> {
        let len = name.iter().position(|b| *b == 0).unwrap_or(32);
        let text = core::str::from_utf8(&name[..len]).map_err(|_| Status::InvalidArgument)?;
        let d = self.domain(id).ok_or(Status::StaleCapability)?;
        let own_record = d.image_index;
        let taken_live = self.domains().any(|o| o.id != id && o.name() == text);
        let taken_image = self.image.is_some_and(|image| {
            image
                .domains()
                .iter()
                .enumerate()
                .any(|(i, r)| Some(i) != own_record && r.name() == text)
        });
        if taken_live || taken_image || text.starts_with(UNNAMED_PREFIX) {
            return Err(Status::NameInUse);
        }
        let d = self.domains[id.index()]
            .as_mut()
            .ok_or(Status::StaleCapability)?;
        d.name = name_copy(text);
        Ok(())
    }

    /// Pauses a running domain.
    pub(crate) fn pause(&mut self, id: DomainId) -> Result<(), Status> {
        let d = self.domains[id.index()]
            .as_mut()
            .ok_or(Status::StaleCapability)?;
        d.state.pause()?;
        self.kick_domain(id);
        Ok(())
    }

    /// Resumes a paused domain.
    pub(crate) fn unpause(&mut self, id: DomainId) -> Result<(), Status> {
        let d = self.domains[id.index()]
            .as_mut()
            .ok_or(Status::StaleCapability)?;
        d.state.unpause()?;
        let all = d.vcpus.clone();
        let runnable: heapless::Vec<VcpuId, 8> = all
            .iter()
            .copied()
            .filter(|v| {
                self.vcpu(*v)
                    .is_some_and(|x| x.state == VcpuState::Runnable)
            })
            .collect();
        for v in runnable {
            self.make_runnable(v);
        }
        Ok(())
    }

    pub(super) fn kick_domain(&mut self, id: DomainId) {
        let Some(d) = self.domain(id) else { return };
        let cpus: heapless::Vec<usize, 8> = d
            .vcpus
            .iter()
            .filter_map(|v| self.vcpu(*v))
            .filter(|x| x.state == VcpuState::Running)
            .map(|x| x.cpu)
            .collect();
        for cpu in cpus {
            self.kick(Some(Kick { cpu, resched: true }));
        }
    }

    /// Ends domain `id` (`domain_destroy`, a fault, `SYSTEM_OFF`, its object destroyed): its
    /// vCPUs stop; once none is on a CPU any more, it is dismantled and released
    /// ([`crate::effect`]).
    pub fn destroy(&mut self, id: DomainId) {
        self.apply([Effect::EndDomain(id)]);
    }

    /// [`Effect::EndDomain`]: marks the domain dying and pulls its vCPUs off their CPUs.
    pub(super) fn end_domain(&mut self, id: DomainId) {
        let Some(d) = self.domains[id.index()].as_mut() else {
            return;
        };
        if !d.state.end() {
            return;
        }
        self.stop_vcpus(id);
        self.finish_if_quiescent(id);
    }

    /// Restarts a domain from its image: like destroy, but the domain keeps its identity and
    /// RAM, which is scrubbed and reloaded.
    pub(super) fn restart(&mut self, id: DomainId) {
        let Some(d) = self.domains[id.index()].as_mut() else {
            return;
        };
        if d.image_index.is_none() {
            return self.destroy(id);
        }
        d.restart_pending = true;
        self.destroy(id);
    }

    pub(super) fn stop_vcpus(&mut self, id: DomainId) {
        let Some(d) = self.domain(id) else { return };
        let vcpus = d.vcpus.clone();
        for v in vcpus {
            let kick = self.vcpus[v.index()].as_mut().and_then(|x| x.stop());
            self.kick(kick);
        }
    }

    pub(super) fn finish_if_quiescent(&mut self, id: DomainId) {
        let Some(d) = self.domain(id) else { return };
        if d.state != DomainState::Dying {
            return;
        }
        let busy = d
            .vcpus
            .iter()
            .any(|v| self.vcpu(*v).is_some_and(|x| x.state == VcpuState::Running));
        if busy {
            return;
        }
        if d.restart_pending {
            self.finish_restart(id);
        } else if !d.dismantling {
            self.queue_dismantle(id);
        }
    }

    /// Queues domain `id`'s dismantling (once).
    pub(super) fn queue_dismantle(&mut self, id: DomainId) {
        if let Some(d) = self.domains[id.index()].as_mut() {
            if !d.dismantling {
                d.dismantling = true;
                self.apply([Effect::Dismantle(id)]);
            }
        }
    }

    pub(super) fn finish_restart(&mut self, id: DomainId) {
        let Some(image) = self.image else { return };
        let Some(d) = self.domains[id.index()].as_mut() else {
            return;
        };
        d.restart_pending = false;
        d.state.restarted();
        d.boots += 1;
        d.console.clear();
        d.event_page = None;
        self.channels.unbind_domain(id);
        let Some(d) = self.domains[id.index()].as_mut() else {
            return;
        };
        let ram = d.ram.clone();
        let index = d.image_index;
        for r in ram.iter() {
            self.hal.zero_phys(*r);
        }
        let Some(record) = index.and_then(|i| image.domains().get(i)) else {
            return;
        };
        if let Some(d) = self.domains[id.index()].as_mut() {
            self.hal
                .reset_domain_arch(&mut d.arch, record.vcpu_count as u16);
            if let Some(uart) = d.uart.as_mut() {
                *uart = crate::uart::Pl011::new();
            }
            for device in d.virtio.iter_mut() {
                device.mmio.power_on();
            }
        }
        // The serving domains of its virtio devices drop what they had of them.
        let devices = self.domain(id).map_or(0, |d| d.virtio.len());
        for index in 0..devices {
            self.virtio_written(id, index, crate::virtio::Written::Reset);
        }
        for seg in image.segments_of(record).unwrap_or(&[]) {
            let bytes = image.segment_bytes(seg);
            if self.copy_to_guest(id, seg.ipa, bytes).is_err() {
                self.destroy(id);
                return;
            }
        }
        if self.boot_vcpu0(id).is_err() {
            self.destroy(id);
        }
    }

    /// [`Effect::Dismantle`]: a domain whose vCPUs are all off the CPUs loses its objects,
    /// and every capability to them, wherever they are: its Domain object (its capability
    /// space is emptied: mappings through its capabilities in any domain, its event channels,
    /// its interrupt lines, and the domains and vCPUs it created end in turn), its vCPUs'
    /// objects, and the RAM the kernel gave it (regions it shared leave its peers). The
    /// removals are queued, and [`Effect::Release`] behind them.
    pub(super) fn dismantle(&mut self, id: DomainId) {
        let Some(root) = self.root else { return };
        // The serving domain of each of its virtio devices hears of it at once: its next
        // call on the device fails, the device being gone (else it would wait for a
        // notification that can no longer come).
        let notify: heapless::Vec<_, { crate::virtio::MAX_DEVICES }> = self.domains[id.index()]
            .as_ref()
            .map(|d| d.virtio.iter().map(|v| v.notify).collect())
            .unwrap_or_default();
        for channel in notify {
            if let Ok(Some(delivery)) = self.channels.send(channel) {
                self.apply([Effect::Deliver(delivery)]);
            }
        }
        let Some(d) = self.domains[id.index()].as_ref() else {
            return;
        };
        // Each object with where its original capability was put (see
        // `CapSystem::destroy_object_from`).
        let domain = (d.original, d.object);
        let vcpu_objects: heapless::Vec<(CapAddr, mica_caps::ObjectRef), 8> = d
            .vcpus
            .iter()
            .filter_map(|v| self.vcpu(*v))
            .map(|v| (v.original, v.object))
            .collect();
        // Its virtio devices: the serving domains' capabilities to them and the kernel's
        // channels to those domains.
        let virtio_objects: heapless::Vec<
            (CapAddr, mica_caps::ObjectRef),
            { 3 * crate::virtio::MAX_DEVICES },
        > = d
            .virtio
            .iter()
            .flat_map(|v| {
                let [ours, theirs] = v.channel_originals;
                [(v.original, v.object), ours, theirs]
            })
            .collect();
        let ram_objects: heapless::Vec<
            (CapAddr, mica_caps::ObjectRef),
            { crate::domain::MAX_RAM_CHUNKS },
        > = d
            .ram_caps
            .iter()
            .filter_map(|slot| {
                let c = self.caps.identify(root, *slot).ok()?;
                Some((CapAddr::new(root, *slot), c.object))
            })
            .collect();
        // Each object may already be gone (a domain ended by deleting its last Domain
        // capability), which the capability system reports as stale.
        for (original, o) in core::iter::once(domain)
            .chain(vcpu_objects)
            .chain(virtio_objects)
            .chain(ram_objects)
        {
            let queue = &mut self.effects;
            let _ = self
                .caps
                .destroy_object_from(original, o, |r| queue.push_back(Effect::Removed(r)));
            self.apply([]);
        }
        self.apply([Effect::Release(id)]);
    }

    /// [`Effect::Release`]: what is left of a dismantled domain goes, in an order that leaves
    /// nothing of it reachable: its stage 2 (TLBs invalidated first, then the tables freed and
    /// their charge refunded), its vCPU records, event bindings and interrupt routes; its RAM,
    /// scrubbed, then freed or handed to the image domain that follows it; last, its id, which
    /// may then be given to a new domain.
    pub(super) fn release(&mut self, id: DomainId) {
        let Some(d) = self.domains[id.index()].as_ref() else {
            return;
        };
        let name: heapless::String<32> = d.name.clone();
        let image_index = d.image_index;
        let payer = self.payer(id);
        let Some(mut d) = self.domains[id.index()].take() else {
            return;
        };
        // Whatever is still mapped (through capabilities of other domains) goes with the
        // tables, then the records that name the domain.
        d.stage2.release(&mut self.frames);
        self.caps.refund_space(id.space(), d.table_bytes, |_| {});
        for v in d.vcpus.iter() {
            self.vcpus[v.index()] = None;
        }
        self.channels.unbind_domain(id);
        for line in self.irqs.routed_to(id) {
            let released = self.irqs.release(line.into());
            self.drive_lines(released);
        }
        // Memory: scrub, then hand over or free.
        let mut scrubbed = 0u64;
        for r in d.ram.iter() {
            self.hal.zero_phys(*r);
            scrubbed += r.size();
        }
        let successor = image_index.and_then(|i| self.successor_of(i));
        let takes_memory = successor.is_some_and(|(_, takes)| takes);
        if takes_memory {
            self.handoff = Some((successor.map_or(0, |s| s.0), d.ram.clone()));
        } else {
            for r in d.ram.iter() {
                self.frames.free(*r);
            }
        }
        if d.ram.is_empty() {
            // A domain built by another (`domain_create`) runs in memory its creator lent it:
            // the creator scrubs it when it takes it back.
            log_paid_by!(
                self,
                payer,
                "domain {name} (id {}) destroyed: its memory goes back to its creator, {} MiB free",
                id.0,
                self.frames.free_bytes() >> 20
            );
        } else {
            log_paid_by!(
                self,
                payer,
                "domain {name} (id {}) destroyed: {} KiB scrubbed, {} MiB free",
                id.0,
                scrubbed >> 10,
                self.frames.free_bytes() >> 20
            );
        }
        if self.control == Some(id) {
            self.control = None;
            self.reclaim_control_pool();
        }
        self.forget_dead_domains_in_control();
        // The id is free for a new domain only now.
        self.caps.let_go_of_space(id.space(), |_| {});
        // Whoever waited for this domain starts now.
        if let Some((next, _)) = successor {
            let ram = self.handoff.take().map(|(_, ram)| ram);
            self.start_from_image(next, ram);
        }
        self.publish_accounting();
        self.notify_policy();
        // The last domain gone: say whether every frame came back.
        if self.image.is_some() && self.domains().next().is_none() {
            // The accounting page lives as long as the kernel.
            let kept = self.accounting.map_or(0, |(page, _)| page.size());
            let (now, then) = (self.frames.free_bytes(), self.boot_free - kept);
            if now == then {
                log!(
                    self,
                    "all domains have ended; {} KiB free, as at boot",
                    now >> 10
                );
            } else {
                log!(
                    self,
                    "all domains have ended; {} KiB free, {} KiB at boot: LEAKED {} KiB",
                    now >> 10,
                    then >> 10,
                    then.saturating_sub(now) >> 10
                );
            }
        }
    }

    /// The control domain is gone: its memory pool, with every capability derived from it
    /// (the domains it built ran in it, and went with it), is scrubbed and freed once those
    /// capabilities' removals have been applied.
    pub(super) fn reclaim_control_pool(&mut self) {
        let (Some(root), Some((pool, slot))) = (self.root, self.control_pool.take()) else {
            return;
        };
        if let Ok(info) = self.caps.identify(root, slot) {
            let original = CapAddr::new(root, slot);
            let queue = &mut self.effects;
            let _ = self.caps.destroy_object_from(original, info.object, |r| {
                queue.push_back(Effect::Removed(r))
            });
            self.apply([]);
        }
        // Behind the removals: no domain maps the pool any more when it is scrubbed.
        self.apply([Effect::FreePool(pool)]);
    }

    /// The image domain that starts after domain record `index` is destroyed, and whether it
    /// takes over its memory.
    pub(super) fn successor_of(&self, index: usize) -> Option<(usize, bool)> {
        let image = self.image?;
        image.domains().iter().enumerate().find_map(|(i, r)| {
            (r.start_after as usize == index + 1)
                .then_some((i, r.memory_from as usize == index + 1))
        })
    }
}

/// The hypercalls on lifecycle (routed by `invoke.rs`, their arguments decoded by `mica-abi`):
/// each checks with no side effect, then acts.
impl<H: Hal> Kernel<H> {
    /// `domain_destroy`.
    pub(super) fn invoke_domain_destroy(
        &mut self,
        caller: DomainId,
        mica_abi::args::DomainDestroy { domain }: mica_abi::args::DomainDestroy,
    ) -> Result<[u64; 3], Status> {
        let target = self.domain_arg(caller, domain, Rights::CONTROL)?;
        if self
            .domain(target)
            .is_some_and(|d| d.state == crate::domain::DomainState::Dying)
        {
            return Err(Status::WrongState);
        }
        self.destroy(target);
        Ok([0; 3])
    }

    /// `domain_pause`.
    pub(super) fn invoke_domain_pause(
        &mut self,
        caller: DomainId,
        mica_abi::args::DomainPause { domain }: mica_abi::args::DomainPause,
    ) -> Result<[u64; 3], Status> {
        let target = self.domain_arg(caller, domain, Rights::CONTROL)?;
        self.pause(target)?;
        Ok([0; 3])
    }

    /// `domain_unpause`.
    pub(super) fn invoke_domain_unpause(
        &mut self,
        caller: DomainId,
        mica_abi::args::DomainUnpause { domain }: mica_abi::args::DomainUnpause,
    ) -> Result<[u64; 3], Status> {
        let target = self.domain_arg(caller, domain, Rights::CONTROL)?;
        self.unpause(target)?;
        Ok([0; 3])
    }

    /// `domain_restart`.
    pub(super) fn invoke_domain_restart(
        &mut self,
        caller: DomainId,
        mica_abi::args::DomainRestart { domain }: mica_abi::args::DomainRestart,
    ) -> Result<[u64; 3], Status> {
        let target = self.domain_arg(caller, domain, Rights::CONTROL)?;
        self.restart_domain(target)?;
        Ok([0; 3])
    }

    /// `domain_info`.
    pub(super) fn invoke_domain_info(
        &mut self,
        caller: DomainId,
        mica_abi::args::DomainInfo { domain }: mica_abi::args::DomainInfo,
    ) -> Result<[u64; 3], Status> {
        let target = self.domain_arg(caller, domain, Rights::CONTROL)?;
        self.domain_info(target)
    }

    /// `domain_set_name`.
    pub(super) fn invoke_domain_set_name(
        &mut self,
        caller: DomainId,
        x: mica_abi::args::DomainSetName,
    ) -> Result<[u64; 3], Status> {
        let (domain, name) = (x.domain, x.name());
        // Naming needs authority over the domain: a capability, never the implicit one a
        // domain has over itself (or any domain could pass itself off as another).
        if domain == Slot::SELF_DOMAIN {
            return Err(Status::InsufficientRights);
        }
        let target = self.domain_arg(caller, domain, Rights::CONTROL)?;
        self.set_name(target, &name)?;
        Ok([0; 3])
    }
}
