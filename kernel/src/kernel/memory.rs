//! Guest-physical mappings: made through capabilities, recorded, their stage-2 tables charged
//! to the domain mapped into, undone by unmap and by removed capabilities.

use super::*;

impl<H: Hal> Kernel<H> {
    /// Resolves a Domain-capability argument (or [`SELF_DOMAIN`]) of `caller` needing `rights`.
    pub(crate) fn domain_arg(
        &self,
        caller: DomainId,
        arg: Slot,
        rights: Rights,
    ) -> Result<DomainId, Status> {
        if arg == Slot::SELF_DOMAIN {
            return Ok(caller);
        }
        let info = self
            .caps
            .lookup(caller.space(), arg.0, ObjectType::Domain, rights)?;
        let object = self.caps.resolve(info.object)?;
        let space = object.domain_space.ok_or(Status::InvalidCapability)?;
        let id = DomainId(space.0);
        if self.domain(id).is_none() {
            return Err(Status::StaleCapability);
        }
        Ok(id)
    }

    /// Maps RAM after every check has passed (used by boot and `mem_map`).
    pub(crate) fn map_checked(
        &mut self,
        id: DomainId,
        ipa: u64,
        pa: u64,
        pages: u64,
        perms: Rights,
        through: CapAddr,
    ) -> Result<(), Status> {
        self.map_into(
            id,
            Mapping {
                ipa,
                pa,
                pages,
                through,
                perms,
                device: false,
            },
        )
    }

    /// Like [`Kernel::map_checked`], for device registers (device memory).
    pub(crate) fn map_device_checked(
        &mut self,
        id: DomainId,
        ipa: u64,
        pa: u64,
        pages: u64,
        perms: Rights,
        through: CapAddr,
    ) -> Result<(), Status> {
        self.map_into(
            id,
            Mapping {
                ipa,
                pa,
                pages,
                through,
                perms,
                device: true,
            },
        )
    }

    /// Installs `m` in domain `id`'s stage 2 and records it. The tables it may need are
    /// reserved from the domain's quota first (`QuotaExceeded` if it cannot pay), then the
    /// charge is settled to what they took.
    pub(super) fn map_into(&mut self, id: DomainId, m: Mapping) -> Result<(), Status> {
        let d = self.domains[id.index()]
            .as_mut()
            .ok_or(Status::WrongState)?;
        d.mappings.check_new(m.ipa, m.pages)?;
        let reserve = d.stage2.table_bytes_at_most(m.ipa, m.pa, m.pages);
        self.caps.charge_space(id.space(), reserve)?;
        let d = self.domains[id.index()]
            .as_mut()
            .ok_or(Status::WrongState)?;
        let mut recorded = m;
        let mapped = if m.device {
            // Recorded as not writable RAM: an event page can never live in device memory.
            recorded.perms -= Rights::WRITE;
            d.stage2
                .map_device(m.ipa, m.pa, m.pages, m.perms, &mut self.frames)
        } else {
            d.stage2
                .map(m.ipa, m.pa, m.pages, m.perms, &mut self.frames)
        };
        if mapped.is_ok() {
            // Checked above, and nothing changed the record since.
            let _ = d.mappings.insert(recorded);
        }
        self.caps.refund_space(id.space(), reserve, |_| {});
        self.settle_tables(id);
        mapped
    }

    /// Removes the recorded mapping of domain `id` that starts at `ipa` (`pages` long) from
    /// its stage 2, and refunds the table memory that frees.
    pub(super) fn unmap_one(&mut self, id: DomainId, ipa: u64, pages: u64) {
        let Some(d) = self.domains[id.index()].as_mut() else {
            return;
        };
        let Some(m) = d.mappings.remove(ipa) else {
            return;
        };
        d.stage2.unmap(m.ipa, pages, &mut self.frames);
        if d.event_page.is_some_and(|p| m.overlaps(p, 1)) {
            d.event_page = None;
        }
        let broken = d.virtio_check_rings();
        self.settle_tables(id);
        for index in broken {
            self.virtio_update(id, index, true);
        }
    }

    /// Brings the quota charge of domain `id`'s stage-2 tables in line with what they hold
    /// now (after a map reserved the most they could grow, or an unmap freed some).
    pub(super) fn settle_tables(&mut self, id: DomainId) {
        let Some(d) = self.domains[id.index()].as_mut() else {
            return;
        };
        let now = d.stage2.table_bytes();
        let before = core::mem::replace(&mut d.table_bytes, now);
        if now > before {
            // Within the reservation the map made: cannot fail.
            let _ = self.caps.charge_space(id.space(), now - before);
        } else if before > now && !cfg!(feature = "mutant-tables-not-refunded") {
            self.caps.refund_space(id.space(), before - now, |_| {});
        }
    }

    /// Unmaps every whole mapping of `id` inside `[ipa, ipa + pages)`; returns pages unmapped.
    pub(crate) fn unmap_range(
        &mut self,
        id: DomainId,
        ipa: u64,
        pages: u64,
    ) -> Result<u64, Status> {
        let d = self.domain(id).ok_or(Status::WrongState)?;
        let inside = d.mappings.inside(ipa, pages)?;
        let mut unmapped = 0;
        for (at, n) in inside {
            self.unmap_one(id, at, n);
            unmapped += n;
        }
        Ok(unmapped)
    }
}

/// The hypercalls on memory (routed by `invoke.rs`, their arguments decoded by `mica-abi`):
/// each checks with no side effect, then acts.
impl<H: Hal> Kernel<H> {
    /// `mem_map`.
    pub(super) fn invoke_mem_map(
        &mut self,
        caller: DomainId,
        mica_abi::args::MemMap {
            domain,
            memory,
            ipa,
            first_frame,
            frame_count: pages,
            perms,
        }: mica_abi::args::MemMap,
    ) -> Result<[u64; 3], Status> {
        let space = caller.space();
        let memory = memory.0;
        // Check.
        let target = self.domain_arg(caller, domain, Rights::CONTROL)?;
        // RAM (Memory) or device registers (DeviceMemory).
        let info = match self
            .caps
            .lookup(space, memory, ObjectType::Memory, Rights::READ)
        {
            Err(Status::InvalidCapability) => {
                self.caps
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
        let d = self.domain(target).ok_or(Status::StaleCapability)?;
        if d.state == crate::domain::DomainState::Dying {
            return Err(Status::WrongState);
        }
        d.mappings.check_new(ipa, pages)?;
        // Act.
        let through = CapAddr::new(space, memory);
        let pa = first_frame * FRAME_SIZE;
        if device {
            self.map_device_checked(target, ipa, pa, pages, perms, through)?;
        } else {
            self.map_checked(target, ipa, pa, pages, perms, through)?;
        }
        Ok([0; 3])
    }

    /// `mem_unmap`.
    pub(super) fn invoke_mem_unmap(
        &mut self,
        caller: DomainId,
        mica_abi::args::MemUnmap {
            domain,
            ipa,
            frame_count: pages,
        }: mica_abi::args::MemUnmap,
    ) -> Result<[u64; 3], Status> {
        let target = self.domain_arg(caller, domain, Rights::CONTROL)?;
        let n = self.unmap_range(target, ipa, pages)?;
        Ok([n, 0, 0])
    }
}
