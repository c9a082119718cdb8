//! Registers of a device passed through to this domain (a DeviceMemory capability and its
//! window, listed by name in the boot-info page).
//!
//! Accesses are 32-bit and bounds-checked against the window, so a driver domain needs no
//! `unsafe` of its own.

use mica_abi::ObjectType;

use crate::bootinfo::bootinfo;

/// A device window.
#[derive(Clone, Copy, Debug)]
pub struct Device {
    base: u64,
    size: u64,
}

impl Device {
    /// The device the boot-info page lists as `name` (a DeviceMemory capability and a region
    /// of that name), if there is one.
    pub fn find(name: &str) -> Option<Device> {
        let info = bootinfo()?;
        info.cap_slot(name, ObjectType::DeviceMemory)?;
        let r = info.shared(name)?;
        (r.size >= 4).then_some(Device {
            base: r.ipa,
            size: r.size,
        })
    }

    /// The register window of this domain's virtio slot `slot`
    /// (`mica_abi::layout::devices::virtio_slot`), for a driver that speaks the transport
    /// itself: nothing is mapped there, the kernel answers every access from the device's
    /// register file (docs/virtio.md).
    pub fn virtio_slot(slot: u32) -> Option<Device> {
        let (base, _) = mica_abi::layout::devices::virtio_slot(slot)?;
        Some(Device {
            base,
            size: mica_abi::virtio::WINDOW,
        })
    }

    fn address(&self, offset: u64) -> Option<u64> {
        (offset.is_multiple_of(4) && offset.checked_add(4)? <= self.size)
            .then(|| self.base + offset)
    }

    /// Reads the 32-bit register at `offset` (0 outside the window).
    pub fn read32(&self, offset: u64) -> u32 {
        match self.address(offset) {
            // SAFETY: the address lies inside this domain's device window, which the kernel
            // mapped as device memory (the boot-info page lists it), or inside a virtio slot,
            // where every access traps to the kernel; a 32-bit aligned read of a device
            // register has no effect on this domain's memory.
            Some(a) => unsafe { core::ptr::read_volatile(a as *const u32) },
            None => 0,
        }
    }

    /// Writes the 32-bit register at `offset` (ignored outside the window).
    pub fn write32(&self, offset: u64, value: u32) {
        if let Some(a) = self.address(offset) {
            // SAFETY: as for `read32`: inside a mapped device window or a virtio slot, aligned.
            unsafe { core::ptr::write_volatile(a as *mut u32, value) };
        }
    }
}
