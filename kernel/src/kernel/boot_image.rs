//! Building the system image's domains: their space, RAM, mappings, loaded segments and vCPUs,
//! and starting vCPU 0 with its boot-info page.

use super::*;

impl<H: Hal> Kernel<H> {
    /// Creates the root capability space and every domain the system image starts at boot.
    /// A domain that cannot be created is reported and skipped; the rest still start.
    pub fn load_system(&mut self, image: SystemImage<'static>) -> Result<(), Status> {
        let root = self.caps.create_root_space(SLOTS as u16, u64::MAX / 4)?;
        self.root = Some(root);
        self.image = Some(image);
        self.boot_free = self.frames.free_bytes();
        let mut started: heapless::Vec<DomainId, { sysimage::MAX_DOMAINS }> = heapless::Vec::new();
        for (index, record) in image.domains().iter().enumerate() {
            if record.flags & sysimage::FLAG_START_AT_BOOT != 0 {
                match self.instantiate(index, record, None) {
                    Ok(id) => {
                        let _ = started.push(id);
                    }
                    Err(e) => log!(self, "cannot create domain {}: {e}", record.name()),
                }
            }
        }
        self.wire_links();
        self.grant_domains_to_control();
        for id in started {
            if let Err(e) = self.boot_vcpu0(id) {
                log!(self, "cannot start domain {}: {e}", id.0);
            }
        }
        Ok(())
    }

    pub(super) fn start_from_image(
        &mut self,
        index: usize,
        ram: Option<heapless::Vec<PhysRange, { crate::domain::MAX_RAM_CHUNKS }>>,
    ) {
        let Some(image) = self.image else { return };
        let Some(record) = image.domains().get(index) else {
            return;
        };
        match self.instantiate(index, record, ram) {
            Ok(id) => {
                self.wire_links();
                self.grant_domains_to_control();
                if let Err(e) = self.boot_vcpu0(id) {
                    log!(self, "cannot start domain {}: {e}", record.name());
                }
            }
            Err(e) => log!(self, "cannot create domain {}: {e}", record.name()),
        }
    }

    /// The live domain created from image record `index`.
    pub(super) fn domain_of_record(&self, index: u32) -> Option<DomainId> {
        self.domains()
            .find(|d| d.image_index == Some(index as usize))
            .map(|d| d.id)
    }

    /// Creates domain `index` of the system image: its space, RAM (fresh, or `ram` handed
    /// over), mappings, loaded segments and vCPUs; vCPU 0 starts.
    pub(super) fn instantiate(
        &mut self,
        index: usize,
        record: &DomainRecord,
        ram: Option<heapless::Vec<PhysRange, { crate::domain::MAX_RAM_CHUNKS }>>,
    ) -> Result<DomainId, Status> {
        let root = self.root.ok_or(Status::WrongState)?;
        let handed_over = ram.is_some();
        let pages = record.memory_bytes / FRAME_SIZE;
        if ram.is_none() && self.frames.free_bytes() < record.memory_bytes + 64 * FRAME_SIZE {
            return Err(Status::OutOfMemory);
        }
        let dom_slot = self.free_root_slot()?;
        let (space, object) =
            self.caps
                .create_domain(root, dom_slot, DOMAIN_SLOTS, DOMAIN_QUOTA)?;
        let id = DomainId(space.0);
        let stage2 = match self.hal.new_stage2(id.0, &mut self.frames) {
            Ok(s) => s,
            Err(e) => {
                let _ = self.caps.delete(root, dom_slot, |_| {});
                return Err(e);
            }
        };
        // The id stays this domain's until its teardown has finished.
        let _ = self.caps.hold_space(space);
        let arch = self.hal.new_domain_arch(record.vcpu_count as u16);
        self.domains[id.index()] = Some(Domain::new(
            id,
            record.name(),
            object,
            CapAddr::new(root, dom_slot),
            stage2,
            arch,
            Some(index),
        ));
        if record.flags & sysimage::FLAG_LINUX != 0 {
            if let Some(d) = self.domains[id.index()].as_mut() {
                d.linux = true;
                d.uart = Some(crate::uart::Pl011::new());
            }
        }
        if let Err(e) = self.build_domain(id, dom_slot, record, pages, ram) {
            self.queue_dismantle(id);
            return Err(e);
        }
        let d = self.domain(id).ok_or(Status::WrongState)?;
        let first_pa = d.ram.first().map_or(0, |r| r.start);
        let cpus: heapless::Vec<usize, 8> = d
            .vcpus
            .iter()
            .filter_map(|v| self.vcpu(*v))
            .map(|v| v.cpu)
            .collect();
        log!(
            self,
            "domain {} (id {}): {} KiB RAM at PA {:#x}{}{}, {} vCPU(s) on CPU {:?}",
            d.name(),
            id.0,
            record.memory_bytes >> 10,
            first_pa,
            if handed_over {
                " (scrubbed RAM of the domain it follows)"
            } else {
                ""
            },
            numa_note(self.frames.node_count(), d.memory_node),
            cpus.len(),
            cpus.as_slice()
        );
        Ok(id)
    }

    pub(super) fn build_domain(
        &mut self,
        id: DomainId,
        dom_slot: u16,
        record: &DomainRecord,
        pages: u64,
        ram: Option<heapless::Vec<PhysRange, { crate::domain::MAX_RAM_CHUNKS }>>,
    ) -> Result<(), Status> {
        let root = self.root.ok_or(Status::WrongState)?;
        // RAM: handed-over chunks (already scrubbed) or fresh ones, zeroed here.
        // NUMA: RAM from the node the manifest names, else the node of vCPU 0's CPU, else
        // (that node being full) from any node.
        let node = match record.sched.memory_node {
            0 => self.cpu_node(first_vcpu_cpu(record, id, self.hal.cpus())) as usize,
            n => n as usize - 1,
        };
        let chunks = match ram {
            Some(chunks) => chunks,
            None => {
                let mut chunks = heapless::Vec::new();
                let mut left = pages;
                while left > 0 {
                    let n = prev_power_of_two(left).min(1 << 18);
                    let r = self
                        .frames
                        .alloc_on(node, n as usize)
                        .or_else(|| self.frames.alloc(n as usize))
                        .ok_or(Status::OutOfMemory)?;
                    self.hal.zero_phys(r);
                    if chunks.push(r).is_err() {
                        self.frames.free(r);
                        return Err(Status::OutOfMemory);
                    }
                    left -= n;
                }
                chunks
            }
        };
        let memory_node = chunks
            .first()
            .and_then(|r| self.frames.node_of(r.start))
            .unwrap_or(0) as u8;
        if let Some(d) = self.domains[id.index()].as_mut() {
            d.memory_node = memory_node;
        }
        let mut ipa = sysimage::DOMAIN_RAM_BASE;
        for (i, r) in chunks.iter().enumerate() {
            let d = self.domains[id.index()]
                .as_mut()
                .ok_or(Status::WrongState)?;
            let _ = d.ram.push(*r);
            let n = r.size() / FRAME_SIZE;
            let slot = self.free_root_slot()?;
            let range = FrameRange::new(r.start / FRAME_SIZE, n).ok_or(Status::InvalidArgument)?;
            self.caps
                .create_object(root, slot, ObjectType::Memory, Some(range))?;
            let d = self.domains[id.index()]
                .as_mut()
                .ok_or(Status::WrongState)?;
            let _ = d.ram_caps.push(slot);
            let all = Rights::READ | Rights::WRITE | Rights::EXECUTE | Rights::GRANT;
            let granted = self.caps.grant(root, slot, dom_slot, i as u16, all, None)?;
            let perms = Rights::READ | Rights::WRITE | Rights::EXECUTE;
            self.map_checked(id, ipa, r.start, n, perms, granted)?;
            ipa += r.size();
        }
        // Load the image.
        if let Some(image) = self.image {
            for seg in image.segments_of(record).unwrap_or(&[]) {
                let bytes = image.segment_bytes(seg);
                self.copy_to_guest(id, seg.ipa, bytes)?;
            }
        }
        // vCPUs.
        let cpus = self.hal.cpus().max(1);
        for index in 0..record.vcpu_count as u16 {
            let slot = self.free_root_slot()?;
            let object = self
                .caps
                .create_object(root, slot, ObjectType::Vcpu, None)?;
            let vid = self.free_vcpu_id()?;
            let wanted = record
                .affinity
                .get(index as usize)
                .copied()
                .unwrap_or(sysimage::ANY_CPU) as usize;
            let cpu = if wanted < cpus {
                wanted
            } else {
                (id.index() + index as usize) % cpus
            };
            self.vcpu_end = self.vcpu_end.max(vid.index() + 1);
            self.vcpus[vid.index()] = Some(Vcpu {
                domain: id,
                index,
                cpu,
                state: VcpuState::Off,
                object,
                original: CapAddr::new(root, slot),
                context: self.hal.new_context(),
                wake_pending: false,
                runs: 0,
                sched: SchedState::new(params_for(record, cpu), self.hal.now_ns()),
                request: record.sched,
                retired: false,
            });
            let d = self.domains[id.index()]
                .as_mut()
                .ok_or(Status::WrongState)?;
            let _ = d.vcpus.push(vid);
            let _ = d.vcpu_caps.push(slot);
        }
        if record.flags & sysimage::FLAG_SCHED_CONTROL != 0 {
            self.grant_sched_control(id)?;
        }
        if record.flags & sysimage::FLAG_CONTROL != 0 {
            self.grant_control(id)?;
        }
        if let Some(image) = self.image {
            let index = self.domain(id).and_then(|d| d.image_index);
            for dev in image
                .devices()
                .iter()
                .filter(|dev| Some(dev.domain as usize) == index)
            {
                self.wire_device(id, dev)?;
            }
        }
        Ok(())
    }

    pub(super) fn boot_vcpu0(&mut self, id: DomainId) -> Result<(), Status> {
        let image = self.image.ok_or(Status::WrongState)?;
        let d = self.domain(id).ok_or(Status::WrongState)?;
        let record = d
            .image_index
            .and_then(|i| image.domains().get(i))
            .ok_or(Status::WrongState)?;
        let v0 = *d.vcpus.first().ok_or(Status::WrongState)?;
        let layout = DomainLayout::new(record.memory_bytes);
        let regs = if record.flags & sysimage::FLAG_LINUX != 0 {
            // The arm64 Linux boot protocol: no boot-info page (all of the RAM is Linux's),
            // x0 = the device tree the builder placed. Linux starts with its caches off: what
            // the kernel zeroed and loaded must be in memory, not only in the caches.
            let ram = d.ram.clone();
            for r in ram.iter() {
                self.hal.clean_to_poc(*r);
            }
            DomainLayout::linux_entry_regs(record.arg)
        } else {
            self.write_boot_info(id, layout.boot_page())?;
            layout.entry_regs(record.arg)
        };
        let dc = record.flags & sysimage::FLAG_DEFAULT_CACHEABLE != 0;
        let clock_base = if record.flags & sysimage::FLAG_LINUX != 0 {
            self.hal.now_ns()
        } else {
            0
        };
        if let Some(d) = self.domains[id.index()].as_mut() {
            d.clock_base_ns = clock_base;
        }
        let v = self.vcpu_mut(v0).ok_or(Status::WrongState)?;
        v.context.reset(record.entry, regs, 0, dc);
        v.context.set_clock_base(clock_base);
        self.make_runnable(v0);
        self.publish_accounting();
        self.notify_policy();
        Ok(())
    }

    /// Writes domain `id`'s boot-info page, with its current boot count and vCPU count, at
    /// guest-physical `ipa` (its [`DomainLayout::boot_page`]).
    pub(super) fn write_boot_info(&mut self, id: DomainId, ipa: u64) -> Result<(), Status> {
        let d = self.domain(id).ok_or(Status::WrongState)?;
        let mut info = d.boot_info;
        info.boots = d.boots as u32;
        info.vcpu_count = d.vcpus.len() as u32;
        self.copy_to_guest(id, ipa, zerocopy::IntoBytes::as_bytes(&info))
    }
}
