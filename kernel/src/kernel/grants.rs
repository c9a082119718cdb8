//! What the system image wires between domains (channels, shared regions, devices) and what
//! service domains are given (the policy domain's SchedControl and accounting page, the control
//! domain's pool, image and Domain capabilities).

use super::*;

impl<H: Hal> Kernel<H> {
    /// Sets up every channel and shared region of the image whose domains both exist and
    /// that is not set up yet, recording each in the domains' boot-info pages.
    pub(super) fn wire_links(&mut self) {
        let Some(image) = self.image else { return };
        for (i, c) in image.channels().iter().enumerate() {
            if self.wired.0 & (1 << i) != 0 {
                continue;
            }
            let (Some(a), Some(b)) = (
                self.domain_of_record(c.a_domain),
                self.domain_of_record(c.b_domain),
            ) else {
                continue;
            };
            self.wired.0 |= 1 << i;
            if let Err(e) = self.wire_channel(a, &c.a_name, b, &c.b_name) {
                log!(self, "cannot create channel #{i}: {e}");
            }
        }
        for (i, sh) in image.shares().iter().enumerate() {
            if self.wired.1 & (1 << i) != 0 {
                continue;
            }
            let (Some(o), Some(p)) = (
                self.domain_of_record(sh.owner),
                self.domain_of_record(sh.peer),
            ) else {
                continue;
            };
            self.wired.1 |= 1 << i;
            if let Err(e) = self.wire_share(o, p, sh) {
                log!(
                    self,
                    "cannot share region {}: {e}",
                    mica_abi::bootinfo::name_str(&sh.name)
                );
            }
        }
        for (i, v) in image.virtio().iter().enumerate() {
            if self.wired.2 & (1 << i) != 0 {
                continue;
            }
            let (Some(guest), Some(server)) = (
                self.domain_of_record(v.guest),
                self.domain_of_record(v.server),
            ) else {
                continue;
            };
            self.wired.2 |= 1 << i;
            if let Err(e) = self.wire_virtio(guest, server, v) {
                log!(
                    self,
                    "cannot give the virtio device {}: {e}",
                    mica_abi::bootinfo::name_str(&v.name)
                );
            }
        }
    }

    /// Gives `guest` the virtio device of record `v`, served by `server`, and lists the
    /// server's two capabilities in its boot-info page: the device under the record's name,
    /// the notification channel under the name and `-events`.
    fn wire_virtio(
        &mut self,
        guest: DomainId,
        server: DomainId,
        v: &sysimage::VirtioRecord,
    ) -> Result<(), Status> {
        use mica_abi::bootinfo::{name_field, name_str, CapEntry};
        use mica_abi::virtio::{blk, feature, queue};
        let size = u16::try_from(v.queue_size).map_err(|_| Status::InvalidArgument)?;
        let identity = crate::virtio::Identity {
            device_id: v.device_id,
            features: v.features
                | blk::F_SEG_MAX
                | blk::F_BLK_SIZE
                | blk::F_FLUSH
                | feature::EVENT_IDX
                | feature::INDIRECT_DESC,
            queue_max: [size, 0],
        };
        let mut config = [0u8; blk::config::SIZE];
        let at = |o: u64| o as usize;
        config[at(blk::config::CAPACITY)..][..8].copy_from_slice(&v.capacity.to_le_bytes());
        let seg_max = (queue::MAX_CHAIN - 2) as u32;
        config[at(blk::config::SEG_MAX)..][..4].copy_from_slice(&seg_max.to_le_bytes());
        config[at(blk::config::BLK_SIZE)..][..4].copy_from_slice(&blk::BLOCK.to_le_bytes());
        let (device, events) =
            self.add_virtio_device(guest, server, (identity, &config), v.slot)?;
        let name = name_str(&v.name);
        let mut events_name = heapless::String::<24>::new();
        let _ = events_name.push_str(name);
        let _ = events_name.push_str(mica_abi::bootinfo::suffix::EVENTS);
        let d = self.domains[server.index()]
            .as_mut()
            .ok_or(Status::WrongState)?;
        let rights = |t| mica_caps::meaningful_rights(t).bits() & !Rights::GRANT.bits();
        let _ = d.boot_info.push_cap(CapEntry {
            name: v.name,
            slot: device,
            object_type: ObjectType::VirtioDevice as u8,
            reserved: 0,
            rights: rights(ObjectType::VirtioDevice),
        });
        let _ = d.boot_info.push_cap(CapEntry {
            name: name_field(&events_name),
            slot: events,
            object_type: ObjectType::EventChannel as u8,
            reserved: 0,
            rights: Rights::RECEIVE.bits(),
        });
        Ok(())
    }

    pub(super) fn wire_channel(
        &mut self,
        a: DomainId,
        a_name: &[u8; 24],
        b: DomainId,
        b_name: &[u8; 24],
    ) -> Result<(), Status> {
        use mica_abi::bootinfo::CapEntry;
        if !self.channels.has_room() {
            return Err(Status::OutOfMemory);
        }
        let slot_a = self.free_slot_in(a.space())?;
        let obj_a = self
            .caps
            .create_object(a.space(), slot_a, ObjectType::EventChannel, None)?;
        let created_b = self.free_slot_in(b.space()).and_then(|slot| {
            Ok((
                slot,
                self.caps
                    .create_object(b.space(), slot, ObjectType::EventChannel, None)?,
            ))
        });
        let (slot_b, obj_b) = match created_b {
            Ok(x) => x,
            Err(e) => {
                let _ = self.caps.delete(a.space(), slot_a, |_| {});
                return Err(e);
            }
        };
        self.channels.create(obj_a, obj_b)?;
        let rights = mica_caps::meaningful_rights(ObjectType::EventChannel).bits();
        for (d, slot, name) in [(a, slot_a, a_name), (b, slot_b, b_name)] {
            if let Some(dom) = self.domains[d.index()].as_mut() {
                let entry = CapEntry {
                    name: *name,
                    slot,
                    object_type: ObjectType::EventChannel as u8,
                    reserved: 0,
                    rights,
                };
                let _ = dom.boot_info.push_cap(entry);
            }
        }
        Ok(())
    }

    pub(super) fn wire_share(
        &mut self,
        owner: DomainId,
        peer: DomainId,
        sh: &sysimage::ShareRecord,
    ) -> Result<(), Status> {
        use mica_abi::bootinfo::{CapEntry, RegionEntry};
        let root = self.root.ok_or(Status::WrongState)?;
        let size = sh.pages as u64 * FRAME_SIZE;
        let o = self.domain(owner).ok_or(Status::WrongState)?;
        // Find the RAM chunk (and its capability, slot = chunk index) holding the region.
        let mut chunk_ipa = sysimage::DOMAIN_RAM_BASE;
        let mut found = None;
        for (i, r) in o.ram.iter().enumerate() {
            let start = sysimage::DOMAIN_RAM_BASE + sh.owner_offset;
            if start >= chunk_ipa && start + size <= chunk_ipa + r.size() {
                found = Some((i as u16, r.start + (start - chunk_ipa)));
            }
            chunk_ipa += r.size();
        }
        let (chunk_slot, pa) = found.ok_or(Status::OutOfRange)?;
        let owner_root_slot = o.original.slot;
        let peer_root_slot = self.domain(peer).ok_or(Status::WrongState)?.original.slot;
        let frames = FrameRange::new(pa / FRAME_SIZE, sh.pages as u64);
        // The owner's capability over the region, derived from its RAM capability.
        let owner_slot = self.free_slot_in(owner.space())?;
        let owner_rights = Rights::READ | Rights::WRITE | Rights::GRANT;
        self.caps
            .derive(owner.space(), chunk_slot, owner_slot, owner_rights, frames)?;
        // The peer's copy is derived from the owner's (so the owner's revoke removes it). The
        // grant needs a Domain capability for the peer in the owner's space: a GRANT-only copy,
        // deleted again at once.
        let peer_rights =
            Rights::from_bits_truncate(sh.peer_rights) & (Rights::READ | Rights::WRITE);
        let granted = (|| {
            let via = self.free_slot_in(owner.space())?;
            let _ = owner_root_slot;
            self.caps.grant(
                root,
                peer_root_slot,
                owner_root_slot,
                via,
                Rights::GRANT,
                None,
            )?;
            let peer_slot = self.free_slot_in(peer.space())?;
            let result =
                self.caps
                    .grant(owner.space(), owner_slot, via, peer_slot, peer_rights, None);
            let _ = self.caps.delete(owner.space(), via, |_| {});
            result
        })();
        let peer_addr = match granted {
            Ok(a) => a,
            Err(e) => {
                let _ = self.caps.delete(owner.space(), owner_slot, |_| {});
                return Err(e);
            }
        };
        self.map_checked(
            peer,
            sh.peer_ipa,
            pa,
            sh.pages as u64,
            peer_rights,
            peer_addr,
        )?;
        let owner_entries = (
            CapEntry {
                name: sh.name,
                slot: owner_slot,
                object_type: ObjectType::Memory as u8,
                reserved: 0,
                rights: owner_rights.bits(),
            },
            RegionEntry {
                name: sh.name,
                ipa: sysimage::DOMAIN_RAM_BASE + sh.owner_offset,
                size,
                slot: owner_slot,
                reserved: 0,
                rights: (Rights::READ | Rights::WRITE).bits(),
            },
        );
        let peer_entries = (
            CapEntry {
                name: sh.name,
                slot: peer_addr.slot,
                object_type: ObjectType::Memory as u8,
                reserved: 0,
                rights: peer_rights.bits(),
            },
            RegionEntry {
                name: sh.name,
                ipa: sh.peer_ipa,
                size,
                slot: peer_addr.slot,
                reserved: 0,
                rights: peer_rights.bits(),
            },
        );
        let listed_in_owner = sh.flags & sysimage::SHARE_PEER_ONLY == 0;
        for (d, (cap, region)) in [(owner, owner_entries), (peer, peer_entries)] {
            if d == owner && !listed_in_owner {
                continue;
            }
            if let Some(dom) = self.domains[d.index()].as_mut() {
                let _ = dom.boot_info.push_cap(cap);
                let _ = dom.boot_info.push_region(region);
            }
        }
        Ok(())
    }

    /// Passes image device `dev` through to domain `id`: its window as a DeviceMemory
    /// capability mapped as device memory, its interrupt as a masked Irq capability.
    pub(super) fn wire_device(
        &mut self,
        id: DomainId,
        dev: &sysimage::DeviceRecord,
    ) -> Result<(), Status> {
        use mica_abi::bootinfo::{CapEntry, RegionEntry};
        let space = id.space();
        let pages = dev.mmio_size / FRAME_SIZE;
        let frames =
            FrameRange::new(dev.mmio_base / FRAME_SIZE, pages).ok_or(Status::InvalidArgument)?;
        let mmio_slot = self.free_slot_in(space)?;
        self.caps
            .create_object(space, mmio_slot, ObjectType::DeviceMemory, Some(frames))?;
        let rw = Rights::READ | Rights::WRITE;
        self.map_device_checked(
            id,
            dev.guest_address,
            dev.mmio_base,
            pages,
            rw,
            CapAddr::new(space, mmio_slot),
        )?;
        let mut irq_slot = None;
        if dev.interrupt != 0 {
            self.irqs.check_add(dev.interrupt)?;
            let slot = self.free_slot_in(space)?;
            let object = self
                .caps
                .create_object(space, slot, ObjectType::Irq, None)?;
            let masked = self.irqs.add(object, dev.interrupt)?;
            self.drive_lines(masked);
            irq_slot = Some(slot);
        }
        let d = self.domains[id.index()]
            .as_mut()
            .ok_or(Status::WrongState)?;
        let _ = d.boot_info.push_cap(CapEntry {
            name: dev.name,
            slot: mmio_slot,
            object_type: ObjectType::DeviceMemory as u8,
            reserved: 0,
            rights: rw.bits(),
        });
        let _ = d.boot_info.push_region(RegionEntry {
            name: dev.name,
            ipa: dev.guest_address,
            size: dev.mmio_size,
            slot: mmio_slot,
            reserved: 0,
            rights: rw.bits(),
        });
        if let Some(slot) = irq_slot {
            let mut name = dev.name;
            let len = name.iter().position(|b| *b == 0).unwrap_or(name.len());
            for (i, b) in mica_abi::bootinfo::suffix::IRQ.bytes().enumerate() {
                if let Some(c) = name.get_mut(len + i) {
                    *c = b;
                }
            }
            let _ = d.boot_info.push_cap(CapEntry {
                name,
                slot,
                object_type: ObjectType::Irq as u8,
                reserved: 0,
                rights: mica_caps::meaningful_rights(ObjectType::Irq).bits(),
            });
        }
        Ok(())
    }

    /// Gives the policy domain `id` its SchedControl capability, the read-only accounting page
    /// and the endpoint on which the kernel reports changes, all listed in its boot info.
    pub(super) fn grant_sched_control(&mut self, id: DomainId) -> Result<(), Status> {
        use mica_abi::bootinfo::{name_field, CapEntry, RegionEntry};
        let root = self.root.ok_or(Status::WrongState)?;
        let space = id.space();
        // SchedControl over every CPU.
        let control_slot = self.free_slot_in(space)?;
        self.caps
            .create_object(space, control_slot, ObjectType::SchedControl, None)?;
        // The accounting page: one kernel frame for the whole system, granted read-only.
        let (frame, root_slot) = match self.accounting {
            Some(a) => a,
            None => {
                let frame = self.frames.alloc(1).ok_or(Status::OutOfMemory)?;
                self.hal.zero_phys(frame);
                let slot = self.free_root_slot()?;
                let range =
                    FrameRange::new(frame.start / FRAME_SIZE, 1).ok_or(Status::InvalidArgument)?;
                self.caps
                    .create_object(root, slot, ObjectType::Memory, Some(range))?;
                self.accounting = Some((frame, slot));
                (frame, slot)
            }
        };
        let dom_slot = self.domain(id).ok_or(Status::WrongState)?.original.slot;
        let page_slot = self.free_slot_in(space)?;
        let page = self
            .caps
            .grant(root, root_slot, dom_slot, page_slot, Rights::READ, None)?;
        self.map_checked(
            id,
            mica_abi::sched::ACCOUNTING_IPA,
            frame.start,
            1,
            Rights::READ,
            page,
        )?;
        // The change-notification channel: the kernel's end lives in the root space.
        let events_slot = self.free_slot_in(space)?;
        let theirs = self
            .caps
            .create_object(space, events_slot, ObjectType::EventChannel, None)?;
        let kernel_slot = self.free_root_slot()?;
        let ours = self
            .caps
            .create_object(root, kernel_slot, ObjectType::EventChannel, None)?;
        let (kernel_end, _) = self.channels.create(ours, theirs)?;
        self.sched_events = Some(kernel_end);
        let d = self.domains[id.index()]
            .as_mut()
            .ok_or(Status::WrongState)?;
        let rights = |t| mica_caps::meaningful_rights(t).bits();
        let _ = d.boot_info.push_cap(CapEntry {
            name: name_field("sched-control"),
            slot: control_slot,
            object_type: ObjectType::SchedControl as u8,
            reserved: 0,
            rights: rights(ObjectType::SchedControl),
        });
        let _ = d.boot_info.push_cap(CapEntry {
            name: name_field("sched-accounting"),
            slot: page_slot,
            object_type: ObjectType::Memory as u8,
            reserved: 0,
            rights: Rights::READ.bits(),
        });
        let _ = d.boot_info.push_region(RegionEntry {
            name: name_field("sched-accounting"),
            ipa: mica_abi::sched::ACCOUNTING_IPA,
            size: FRAME_SIZE,
            slot: page_slot,
            reserved: 0,
            rights: Rights::READ.bits(),
        });
        let _ = d.boot_info.push_cap(CapEntry {
            name: name_field("sched-events"),
            slot: events_slot,
            object_type: ObjectType::EventChannel as u8,
            reserved: 0,
            rights: rights(ObjectType::EventChannel),
        });
        self.publish_accounting();
        Ok(())
    }

    /// Gives the control domain `id` what it needs to manage the system: its memory pool
    /// (`free-memory`), a SchedControl capability to set the scheduling of what it creates
    /// (`sched-control`), the system image read-only (`system-image`, mapped at
    /// [`sysimage::SYSTEM_IMAGE_IPA`]), and a Domain capability (CONTROL | GRANT) for every
    /// other domain (`dom-<name>`) — the ones that exist now; domains started later get theirs
    /// granted when they start.
    pub(super) fn grant_control(&mut self, id: DomainId) -> Result<(), Status> {
        use mica_abi::bootinfo::{name_field, CapEntry, RegionEntry};
        let root = self.root.ok_or(Status::WrongState)?;
        let space = id.space();
        let dom_slot = self.domain(id).ok_or(Status::WrongState)?.original.slot;
        // The pool: one contiguous block, zeroed, owned by the root and granted whole.
        let pages = sysimage::CONTROL_POOL_BYTES / FRAME_SIZE;
        let pool = self
            .frames
            .alloc(pages as usize)
            .ok_or(Status::OutOfMemory)?;
        self.hal.zero_phys(pool);
        let root_pool = self.free_root_slot()?;
        let range = FrameRange::new(pool.start / FRAME_SIZE, pool.size() / FRAME_SIZE)
            .ok_or(Status::InvalidArgument)?;
        self.caps
            .create_object(root, root_pool, ObjectType::Memory, Some(range))?;
        let pool_slot = self.free_slot_in(space)?;
        let all = Rights::READ | Rights::WRITE | Rights::EXECUTE | Rights::GRANT;
        self.caps
            .grant(root, root_pool, dom_slot, pool_slot, all, None)?;
        self.control_pool = Some((pool, root_pool));
        // Scheduling authority to delegate to the domains it creates.
        let sched_slot = self.free_slot_in(space)?;
        self.caps
            .create_object(space, sched_slot, ObjectType::SchedControl, None)?;
        // The system image, read-only.
        let image_entry = match (self.image_range, self.image) {
            (Some(range), Some(_)) => {
                let first = range.start / FRAME_SIZE;
                let count = range.align_outward(FRAME_SIZE).size() / FRAME_SIZE;
                let frames = FrameRange::new(first, count).ok_or(Status::InvalidArgument)?;
                let root_img = self.free_root_slot()?;
                self.caps
                    .create_object(root, root_img, ObjectType::Memory, Some(frames))?;
                let img_slot = self.free_slot_in(space)?;
                let at = self
                    .caps
                    .grant(root, root_img, dom_slot, img_slot, Rights::READ, None)?;
                self.map_checked(
                    id,
                    sysimage::SYSTEM_IMAGE_IPA,
                    first * FRAME_SIZE,
                    count,
                    Rights::READ,
                    at,
                )?;
                Some((img_slot, count * FRAME_SIZE))
            }
            _ => None,
        };
        let d = self.domains[id.index()]
            .as_mut()
            .ok_or(Status::WrongState)?;
        let _ = d.boot_info.push_cap(CapEntry {
            name: name_field("free-memory"),
            slot: pool_slot,
            object_type: ObjectType::Memory as u8,
            reserved: 0,
            rights: all.bits(),
        });
        let _ = d.boot_info.push_cap(CapEntry {
            name: name_field("sched-control"),
            slot: sched_slot,
            object_type: ObjectType::SchedControl as u8,
            reserved: 0,
            rights: mica_caps::meaningful_rights(ObjectType::SchedControl).bits(),
        });
        if let Some((slot, size)) = image_entry {
            let _ = d.boot_info.push_cap(CapEntry {
                name: name_field("system-image"),
                slot,
                object_type: ObjectType::Memory as u8,
                reserved: 0,
                rights: Rights::READ.bits(),
            });
            let _ = d.boot_info.push_region(RegionEntry {
                name: name_field("system-image"),
                ipa: sysimage::SYSTEM_IMAGE_IPA,
                size,
                slot,
                reserved: 0,
                rights: Rights::READ.bits(),
            });
        }
        self.control = Some(id);
        Ok(())
    }

    /// Grants the control domain a Domain capability for every domain it has none for.
    pub(super) fn grant_domains_to_control(&mut self) {
        use mica_abi::bootinfo::{name_field, CapEntry};
        let (Some(ctl), Some(root)) = (self.control, self.root) else {
            return;
        };
        let Some(ctl_slot) = self.domain(ctl).map(|d| d.original.slot) else {
            return;
        };
        let others: heapless::Vec<
            (DomainId, u16, heapless::String<32>),
            { sysimage::MAX_DOMAINS },
        > = self
            .domains()
            .filter(|d| d.id != ctl && d.original.space == root)
            .map(|d| (d.id, d.original.slot, d.name.clone()))
            .collect();
        for (id, slot, name) in others {
            let mut cap_name: heapless::String<24> = heapless::String::new();
            let _ = cap_name.push_str("dom-");
            for c in name.chars() {
                if cap_name.push(c).is_err() || cap_name.len() >= 23 {
                    break;
                }
            }
            let listed = self.domain(ctl).is_some_and(|d| {
                d.boot_info.cap(cap_name.as_str()).is_some_and(|c| {
                    c.object_type == ObjectType::Domain as u8
                        && self.caps.identify(ctl.space(), c.slot).is_ok_and(|i| {
                            self.caps
                                .resolve(i.object)
                                .is_ok_and(|o| o.domain_space == Some(id.space()))
                        })
                })
            });
            if listed {
                continue;
            }
            let Ok(dst) = self.free_slot_in(ctl.space()) else {
                return;
            };
            let rights = Rights::CONTROL | Rights::GRANT;
            if self
                .caps
                .grant(root, slot, ctl_slot, dst, rights, None)
                .is_err()
            {
                continue;
            }
            if let Some(d) = self.domains[ctl.index()].as_mut() {
                // A restarted domain keeps its name: replace a stale entry of that name.
                let entry = CapEntry {
                    name: name_field(cap_name.as_str()),
                    slot: dst,
                    object_type: ObjectType::Domain as u8,
                    reserved: 0,
                    rights: rights.bits(),
                };
                let n = d.boot_info.cap_count as usize;
                match d
                    .boot_info
                    .caps
                    .iter_mut()
                    .take(n)
                    .find(|c| mica_abi::bootinfo::name_str(&c.name) == cap_name.as_str())
                {
                    Some(old) => *old = entry,
                    None => {
                        let _ = d.boot_info.push_cap(entry);
                    }
                }
            }
        }
        self.rewrite_control_boot_info();
    }

    /// Drops from the control domain's boot-info page the `dom-<name>` entries whose
    /// capability is gone (the domain was destroyed), so a name never points at a slot that
    /// now holds something else, and rewrites the page.
    pub(super) fn forget_dead_domains_in_control(&mut self) {
        let Some(ctl) = self.control else { return };
        let caps = &self.caps;
        let Some(d) = self.domains[ctl.index()].as_mut() else {
            return;
        };
        d.boot_info.retain_caps(|c| {
            c.object_type != ObjectType::Domain as u8
                || caps
                    .identify(ctl.space(), c.slot)
                    .is_ok_and(|i| i.object_type == ObjectType::Domain)
        });
        self.rewrite_control_boot_info();
    }

    /// Copies the control domain's boot-info page into its RAM (it rereads it to see the
    /// domains that started or ended).
    pub(super) fn rewrite_control_boot_info(&mut self) {
        let Some(ctl) = self.control else { return };
        if let Some(d) = self.domain(ctl) {
            let layout = DomainLayout::new(d.ram.iter().map(|r| r.size()).sum());
            let _ = self.write_boot_info(ctl, layout.boot_page());
        }
    }
}
