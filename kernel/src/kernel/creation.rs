//! What domains create at run time: domains and vCPUs, within their authority (placement) and
//! their share of the kernel's fixed tables.

use super::*;

impl<H: Hal> Kernel<H> {
    /// Creates an empty domain on behalf of `caller` (hypercall `domain_create`), named
    /// `unnamed-<id>` until its creator names it.
    pub(crate) fn create_empty_domain(
        &mut self,
        caller: DomainId,
        dst: u16,
        slots: u16,
        quota: u64,
    ) -> Result<DomainId, Status> {
        self.check_fair_share(caller, Share::Domains)?;
        let (space, object) = self.caps.create_domain(caller.space(), dst, slots, quota)?;
        let id = DomainId(space.0);
        let stage2 = match self.hal.new_stage2(id.0, &mut self.frames) {
            Ok(s) => s,
            Err(e) => {
                let _ = self.caps.delete(caller.space(), dst, |_| {});
                return Err(e);
            }
        };
        let _ = self.caps.hold_space(space);
        let mut name: heapless::String<32> = heapless::String::new();
        let _ = write!(name, "{UNNAMED_PREFIX}{}", id.0);
        // Its interrupt controller serves one vCPU and grows as vCPUs are created (a guest
        // sees exactly the redistributors of the vCPUs it has).
        let arch = self.hal.new_domain_arch(1);
        self.domains[id.index()] = Some(Domain::new(
            id,
            &name,
            object,
            CapAddr::new(caller.space(), dst),
            stage2,
            arch,
            None,
        ));
        Ok(id)
    }

    /// Creates vCPU `index` of `target` for `caller`, its capability in `dst`, on physical
    /// CPU `cpu` (or [`sysimage::ANY_CPU`]): a CPU the caller may place work on (see
    /// [`Kernel::placement`]).
    pub(crate) fn create_vcpu(
        &mut self,
        caller: DomainId,
        target: DomainId,
        dst: u16,
        index: u16,
        cpu: u64,
    ) -> Result<(), Status> {
        let d = self.domain(target).ok_or(Status::StaleCapability)?;
        if d.state == DomainState::Dying {
            return Err(Status::WrongState);
        }
        if index as usize != d.vcpus.len() || index as usize >= crate::domain::MAX_VCPUS_PER_DOMAIN
        {
            return Err(Status::InvalidArgument);
        }
        let cpus = self.hal.cpus().clamp(1, MAX_CPUS);
        let allowed = self.placement(caller);
        let cpu = match cpu {
            c if c == sysimage::ANY_CPU as u64 => {
                // Spread the domain's vCPUs over the CPUs the caller may use.
                let n = (target.index() + index as usize) % allowed.count_ones().max(1) as usize;
                (0..cpus)
                    .filter(|c| allowed & (1 << c) != 0)
                    .nth(n)
                    .ok_or(Status::InsufficientRights)?
            }
            c if (c as usize) < cpus => {
                if allowed & (1 << c) == 0 {
                    return Err(Status::InsufficientRights);
                }
                c as usize
            }
            _ => return Err(Status::InvalidArgument),
        };
        self.check_fair_share(caller, Share::Vcpus)?;
        let vid = self.free_vcpu_id()?;
        let object = self
            .caps
            .create_object(caller.space(), dst, ObjectType::Vcpu, None)?;
        self.vcpu_end = self.vcpu_end.max(vid.index() + 1);
        self.vcpus[vid.index()] = Some(Vcpu {
            domain: target,
            index,
            cpu,
            state: VcpuState::Off,
            object,
            original: CapAddr::new(caller.space(), dst),
            context: self.hal.new_context(),
            wake_pending: false,
            runs: 0,
            sched: SchedState::new(SchedParams::default_on(cpu), 0),
            request: sysimage::SchedRequest::default(),
            retired: false,
        });
        if let Some(d) = self.domains[target.index()].as_mut() {
            let _ = d.vcpus.push(vid);
            self.hal.grow_domain_arch(&mut d.arch, d.vcpus.len() as u16);
        }
        Ok(())
    }

    /// Starts a created vCPU named by capability `slot` of `caller`.
    pub(crate) fn start_vcpu(
        &mut self,
        caller: DomainId,
        slot: u16,
        entry: u64,
        arg: u64,
    ) -> Result<(), Status> {
        let info = self
            .caps
            .lookup(caller.space(), slot, ObjectType::Vcpu, Rights::CONTROL)?;
        let v = self
            .vcpus
            .iter()
            .position(|x| x.as_ref().is_some_and(|x| x.object == info.object))
            .map(|i| VcpuId(i as u16))
            .ok_or(Status::StaleCapability)?;
        let (domain, state, index) = self
            .vcpu(v)
            .map(|x| (x.domain, x.state, x.index))
            .ok_or(Status::StaleCapability)?;
        let d = self.domain(domain).ok_or(Status::StaleCapability)?;
        if state != VcpuState::Off || d.state == DomainState::Dying {
            return Err(Status::WrongState);
        }
        if d.mappings.translate(entry).is_none() {
            return Err(Status::InvalidArgument);
        }
        let dc = self.default_cacheable(d);
        if d.linux && index == 0 {
            // The arm64 boot protocol: what the creator wrote must be in memory, not only in
            // the caches, and the guest's clock starts now.
            let ram: heapless::Vec<PhysRange, { crate::domain::MAX_MAPPINGS }> = d
                .mappings
                .iter()
                .filter(|m| !m.device)
                .filter_map(|m| PhysRange::from_base_size(m.pa, m.pages * FRAME_SIZE))
                .collect();
            for r in ram {
                self.hal.clean_to_poc(r);
            }
            let now = self.hal.now_ns();
            if let Some(d) = self.domains[domain.index()].as_mut() {
                d.clock_base_ns = now;
            }
        }
        let clock_base = self.domain(domain).map_or(0, |d| d.clock_base_ns);
        if let Some(x) = self.vcpus[v.index()].as_mut() {
            x.context.reset(entry, [arg, 0, 0, 0], index, dc);
            x.context.set_clock_base(clock_base);
        }
        self.make_runnable(v);
        Ok(())
    }

    /// Whether `d`'s vCPUs start with default-cacheable memory (HCR_EL2.DC): never a Linux
    /// domain; a domain of the system image as its record says; a created Mica domain always
    /// (Mica's runtime uses exclusives before its MMU is on).
    pub(crate) fn default_cacheable(&self, d: &Domain<H>) -> bool {
        if d.linux {
            return false;
        }
        match d.image_index {
            Some(i) => self
                .image
                .and_then(|image| image.domains().get(i).copied())
                .is_some_and(|r| r.flags & sysimage::FLAG_DEFAULT_CACHEABLE != 0),
            None => true,
        }
    }

    /// `domain_set_boot`.
    pub(super) fn invoke_domain_set_boot(
        &mut self,
        caller: DomainId,
        mica_abi::args::DomainSetBoot { domain, protocol }: mica_abi::args::DomainSetBoot,
    ) -> Result<[u64; 3], Status> {
        if domain == Slot::SELF_DOMAIN {
            return Err(Status::InsufficientRights);
        }
        let target = self.domain_arg(caller, domain, Rights::CONTROL)?;
        let d = self.domain(target).ok_or(Status::StaleCapability)?;
        let started = d.vcpus.iter().any(|v| {
            self.vcpu(*v)
                .is_some_and(|x| x.state != VcpuState::Off || x.runs > 0)
        });
        if d.image_index.is_some() || d.state == DomainState::Dying || started {
            return Err(Status::WrongState);
        }
        let linux = protocol == mica_abi::hypercall::BOOT_LINUX;
        if let Some(d) = self.domains[target.index()].as_mut() {
            d.linux = linux;
            d.uart = linux.then(crate::uart::Pl011::new);
        }
        Ok([0; 3])
    }

    /// Refuses (`QuotaExceeded`) another entry of a fixed kernel table for `caller` when it
    /// and the domains it created, directly or not, already hold their share of it (a
    /// quarter), so no domain can fill a table that every domain needs. The control domain,
    /// which manages the system's domains, has no share limit. (The tables themselves go with
    /// the scale work; then quota alone pays.)
    pub(crate) fn check_fair_share(&self, caller: DomainId, share: Share) -> Result<(), Status> {
        if self.control == Some(caller) {
            return Ok(());
        }
        let mine = |space: SpaceId| self.in_subtree(space, caller.space());
        let (held, capacity) = match share {
            Share::Domains => (
                (0..SPACES as u16)
                    .map(SpaceId)
                    .filter(|s| *s != caller.space())
                    .filter(|s| {
                        self.caps
                            .space(*s)
                            .is_some_and(|i| i.state != mica_caps::SpaceState::Free)
                    })
                    .filter(|s| mine(*s))
                    .count(),
                SPACES,
            ),
            Share::Vcpus => {
                // The vCPU records in use, each paid by whoever created its Vcpu object: a
                // look at the (small) vCPU table, not at every object of the system.
                let held = self.vcpus[..self.vcpu_end.min(MAX_VCPUS)]
                    .iter()
                    .flatten()
                    .filter(|v| {
                        self.caps
                            .resolve(v.object)
                            .is_ok_and(|o| mine(o.charged_to))
                    })
                    .count();
                (held, MAX_VCPUS)
            }
            Share::Endpoints => {
                let held = self
                    .caps
                    .objects()
                    .filter(|o| o.object_type == ObjectType::EventChannel && mine(o.charged_to))
                    .count();
                (held, MAX_ENDPOINTS)
            }
        };
        let needed = if share == Share::Endpoints { 2 } else { 1 };
        if held + needed > capacity / 4 {
            return Err(Status::QuotaExceeded);
        }
        Ok(())
    }

    /// Whether capability space `space` is `of` or was created by it, directly or not.
    pub(super) fn in_subtree(&self, space: SpaceId, of: SpaceId) -> bool {
        let mut current = Some(space);
        for _ in 0..=SPACES {
            match current {
                Some(s) if s == of => return true,
                Some(s) => current = self.caps.space(s).and_then(|i| i.parent),
                None => return false,
            }
        }
        false
    }

    /// Whether a slot of `domain`'s space holds a capability to a live object of `object_type`
    /// carrying `rights`.
    pub(super) fn holds(&self, domain: DomainId, object_type: ObjectType, rights: Rights) -> bool {
        let slots = self.caps.space(domain.space()).map_or(0, |s| s.slots);
        (0..slots).any(|slot| {
            self.caps
                .lookup(domain.space(), slot, object_type, rights)
                .is_ok()
        })
    }
}

/// The hypercalls on creation (routed by `invoke.rs`, their arguments decoded by `mica-abi`):
/// each checks with no side effect, then acts.
impl<H: Hal> Kernel<H> {
    /// `domain_create`.
    pub(super) fn invoke_domain_create(
        &mut self,
        caller: DomainId,
        mica_abi::args::DomainCreate { dst, slots, quota }: mica_abi::args::DomainCreate,
    ) -> Result<[u64; 3], Status> {
        let id = self.create_empty_domain(caller, dst.0, slots.0, quota)?;
        Ok([id.0 as u64, 0, 0])
    }

    /// `vcpu_create`.
    pub(super) fn invoke_vcpu_create(
        &mut self,
        caller: DomainId,
        mica_abi::args::VcpuCreate {
            domain,
            dst,
            index,
            cpu,
        }: mica_abi::args::VcpuCreate,
    ) -> Result<[u64; 3], Status> {
        let target = self.domain_arg(caller, domain, Rights::CONTROL)?;
        self.create_vcpu(caller, target, dst.0, index.0, cpu)?;
        Ok([0; 3])
    }

    /// `vcpu_start`.
    pub(super) fn invoke_vcpu_start(
        &mut self,
        caller: DomainId,
        mica_abi::args::VcpuStart { vcpu, entry, arg }: mica_abi::args::VcpuStart,
    ) -> Result<[u64; 3], Status> {
        self.start_vcpu(caller, vcpu.0, entry, arg)?;
        Ok([0; 3])
    }
}
