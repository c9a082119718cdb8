//! Guests' virtio devices (docs/virtio.md): giving a guest a device served by another domain,
//! passing on what the guest's register writes ask for, and the serving domain's calls.
//!
//! The register file is `crate::virtio::VirtioMmio` in the guest's domain record; the HAL
//! applies the guest's accesses to it (`Domain::virtio_access`) and hands what a write asks
//! for to [`Kernel::virtio_written`]. The serving domain holds a VirtioDevice capability
//! (CONTROL) and the receiving end of a channel the kernel raises.

use super::*;
use crate::virtio::{GuestDevice, Identity, VirtioMmio, Written, MAX_DEVICES};

impl<H: Hal> Kernel<H> {
    /// Gives `guest` a virtio device `identity` with configuration `config` in virtio slot
    /// `slot` (its register window and interrupt: `mica_abi::layout::devices::virtio_slot`),
    /// served by `server`. The server gets, in free slots of its space, a VirtioDevice
    /// capability with CONTROL and the receiving end of the channel the kernel raises when the
    /// guest notifies, resets the device or sets `DRIVER_OK`; their slots are returned, in
    /// that order. Both are image domains (the server's Domain capability is in the root
    /// space).
    pub fn add_virtio_device(
        &mut self,
        guest: DomainId,
        server: DomainId,
        device: (Identity, &[u8]),
        slot: u32,
    ) -> Result<(u16, u16), Status> {
        // Check.
        let root = self.root.ok_or(Status::WrongState)?;
        let (window, intid) =
            mica_abi::layout::devices::virtio_slot(slot).ok_or(Status::InvalidArgument)?;
        let g = self.domain(guest).ok_or(Status::InvalidArgument)?;
        if g.virtio.len() >= MAX_DEVICES {
            return Err(Status::NoFreeSlot);
        }
        if g.virtio.iter().any(|d| d.window == window) || g.mappings.at(window).is_some() {
            return Err(Status::SlotOccupied);
        }
        let s = self.domain(server).ok_or(Status::InvalidArgument)?;
        if s.original.space != root || server == guest {
            return Err(Status::InvalidArgument);
        }
        if g.state == DomainState::Dying || s.state == DomainState::Dying {
            return Err(Status::WrongState);
        }
        let server_domain_slot = s.original.slot;
        // Everything the act below takes, so it cannot fail half-way: three root slots, two
        // of the server's, a pair of endpoints.
        let free = |space: SpaceId, slots: u16| {
            (0..slots)
                .filter(|s| self.caps.capability(CapAddr::new(space, *s)).is_none())
                .count()
        };
        let root_slots = self.caps.space(root).map_or(0, |s| s.slots);
        let server_slots = self.caps.space(server.space()).map_or(0, |s| s.slots);
        if free(root, root_slots) < 3 || free(server.space(), server_slots) < 2 {
            return Err(Status::NoFreeSlot);
        }
        if !self.channels.has_room() {
            return Err(Status::OutOfMemory);
        }
        // The record's room, before anything is made.
        let g = self.domains[guest.index()]
            .as_mut()
            .ok_or(Status::WrongState)?;
        g.virtio.try_reserve(1).map_err(|_| Status::OutOfMemory)?;
        // Act: the object (original in the root space), the server's copy, the channel.
        let space = server.space();
        let root_slot = self.free_root_slot()?;
        let object = self
            .caps
            .create_object(root, root_slot, ObjectType::VirtioDevice, None)?;
        let device_slot = self.free_slot_in(space)?;
        self.caps.grant(
            root,
            root_slot,
            server_domain_slot,
            device_slot,
            Rights::CONTROL,
            None,
        )?;
        // Both ends' originals in the root space, so both go with the guest.
        let their_slot = self.free_root_slot()?;
        let theirs = self
            .caps
            .create_object(root, their_slot, ObjectType::EventChannel, None)?;
        let events_slot = self.free_slot_in(space)?;
        self.caps.grant(
            root,
            their_slot,
            server_domain_slot,
            events_slot,
            Rights::RECEIVE,
            None,
        )?;
        let kernel_slot = self.free_root_slot()?;
        let ours = self
            .caps
            .create_object(root, kernel_slot, ObjectType::EventChannel, None)?;
        let (notify, _) = self.channels.create(ours, theirs)?;
        let (identity, config) = device;
        let record = GuestDevice {
            window,
            intid,
            mmio: VirtioMmio::new(identity, config),
            object,
            original: CapAddr::new(root, root_slot),
            notify,
            channel_originals: [
                (CapAddr::new(root, kernel_slot), ours),
                (CapAddr::new(root, their_slot), theirs),
            ],
        };
        let g = self.domains[guest.index()]
            .as_mut()
            .ok_or(Status::WrongState)?;
        g.virtio.push(record);
        Ok((device_slot, events_slot))
    }

    /// What a guest's write to the registers of its virtio device `index` asks for: the
    /// serving domain is told (coalesced, never waited for), and the device's interrupt line
    /// follows the register file.
    pub fn virtio_written(&mut self, guest: DomainId, index: usize, written: Written) {
        self.virtio_update(guest, index, written != Written::Nothing);
    }

    /// The register file of `guest`'s virtio device `index` changed: its interrupt line
    /// follows it, and with `tell` the serving domain is told (coalesced, never waited for).
    pub(super) fn virtio_update(&mut self, guest: DomainId, index: usize, tell: bool) {
        let Some(d) = self.domains[guest.index()].as_mut() else {
            return;
        };
        let Some(device) = d.virtio.get(index) else {
            return;
        };
        let (notify, intid, line) = (device.notify, device.intid, device.mmio.line());
        let woken = self.hal.set_line(&mut d.arch, intid, line);
        self.interrupt_vcpus(guest, woken);
        if tell {
            if let Ok(Some(delivery)) = self.channels.send(notify) {
                self.apply([Effect::Deliver(delivery)]);
            }
        }
    }

    /// A guest's access to guest-physical `ipa`, in the window of one of its virtio devices,
    /// as the HAL decoded it: `Some(value)` for a read (0 for a write), `None` if it is in no
    /// window or is an access a driver may not make (the guest's fault).
    pub fn virtio_mmio(
        &mut self,
        guest: DomainId,
        ipa: u64,
        size: u64,
        write: Option<u32>,
    ) -> Option<u32> {
        let d = self.domains[guest.index()].as_mut()?;
        let index = d.virtio_at(ipa)?;
        let offset = d.virtio.get(index)?.offset(ipa)?;
        let (value, written) = d.virtio_access(index, offset, size, write)?;
        self.virtio_written(guest, index, written);
        Some(value)
    }

    /// The device the VirtioDevice capability in `caller`'s slot `slot` names (CONTROL
    /// needed): its guest and index there.
    fn virtio_arg(&self, caller: DomainId, slot: Slot) -> Result<(DomainId, usize), Status> {
        let info = self.caps.lookup(
            caller.space(),
            slot.0,
            ObjectType::VirtioDevice,
            Rights::CONTROL,
        )?;
        self.domains()
            .find_map(|d| {
                let i = d.virtio.iter().position(|v| v.object == info.object)?;
                Some((d.id, i))
            })
            .ok_or(Status::StaleCapability)
    }

    fn virtio_device(&self, (guest, index): (DomainId, usize)) -> Result<&GuestDevice, Status> {
        self.domain(guest)
            .and_then(|d| d.virtio.get(index))
            .ok_or(Status::StaleCapability)
    }
}

/// The hypercalls of the domain that serves a virtio device (routed by `invoke.rs`, their
/// arguments decoded by `mica-abi`): each checks with no side effect, then acts.
impl<H: Hal> Kernel<H> {
    /// `virtio_info`.
    pub(super) fn invoke_virtio_info(
        &mut self,
        caller: DomainId,
        mica_abi::args::VirtioInfo { device }: mica_abi::args::VirtioInfo,
    ) -> Result<[u64; 3], Status> {
        let mmio = &self.virtio_device(self.virtio_arg(caller, device)?)?.mmio;
        let mut sizes = 0u64;
        for (i, q) in mmio.live_queues() {
            sizes |= u64::from(q.size) << (16 * u32::from(i));
        }
        let state = u64::from(mmio.status()) | u64::from(mmio.epoch()) << 32;
        Ok([state, mmio.negotiated(), sizes])
    }

    /// `virtio_queue`.
    pub(super) fn invoke_virtio_queue(
        &mut self,
        caller: DomainId,
        mica_abi::args::VirtioQueue {
            device,
            queue,
            epoch,
        }: mica_abi::args::VirtioQueue,
    ) -> Result<[u64; 3], Status> {
        let mmio = &self.virtio_device(self.virtio_arg(caller, device)?)?.mmio;
        if u64::from(mmio.epoch()) != epoch {
            return Err(Status::WrongState);
        }
        let (_, q) = mmio
            .live_queues()
            .find(|(i, _)| u64::from(*i) == queue)
            .ok_or(Status::WrongState)?;
        Ok([q.desc, q.driver, q.device])
    }

    /// `virtio_config`.
    pub(super) fn invoke_virtio_config(
        &mut self,
        caller: DomainId,
        mica_abi::args::VirtioConfig { device, offset }: mica_abi::args::VirtioConfig,
    ) -> Result<[u64; 3], Status> {
        let mmio = &self.virtio_device(self.virtio_arg(caller, device)?)?.mmio;
        Ok([mmio.config_word(offset), 0, 0])
    }

    /// `virtio_signal`.
    pub(super) fn invoke_virtio_signal(
        &mut self,
        caller: DomainId,
        mica_abi::args::VirtioSignal {
            device,
            epoch,
            broken,
        }: mica_abi::args::VirtioSignal,
    ) -> Result<[u64; 3], Status> {
        // Check.
        let (guest, index) = self.virtio_arg(caller, device)?;
        if u64::from(self.virtio_device((guest, index))?.mmio.epoch()) != epoch {
            return Err(Status::WrongState);
        }
        // Act.
        let d = self.domains[guest.index()]
            .as_mut()
            .ok_or(Status::StaleCapability)?;
        let mmio = &mut d.virtio.get_mut(index).ok_or(Status::StaleCapability)?.mmio;
        if broken {
            mmio.fail();
        } else {
            mmio.used(epoch as u32);
        }
        self.virtio_written(guest, index, Written::Nothing);
        Ok([0; 3])
    }
}
