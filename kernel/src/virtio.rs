//! A virtio-mmio device's register file, as the guest that has the device sees it
//! (virtio 1.2, section 4.2.2, the modern "Version 2" interface; numbers in `mica_abi::virtio`).
//!
//! The kernel keeps it, not the domain that serves the device (docs/virtio.md): a guest's
//! register reads are answered here without waiting for any domain, a `QueueNotify` only
//! signals the serving domain and returns, and everything the guest can observe of the device
//! (status, features, queue setup, pending interrupts) lives on when the serving domain dies.
//!
//! Pure: the caller decodes the guest's access, applies [`VirtioMmio::read`] /
//! [`VirtioMmio::write`], carries out what a write returns ([`Written`]: tell the serving
//! domain), and drives the device's interrupt line from [`VirtioMmio::line`], as for the
//! emulated PL011 (`crate::uart`). Nothing the guest writes is trusted: a queue it makes ready
//! must have a power-of-two size within the device's maximum and all three rings aligned and
//! inside its RAM (the caller says what its RAM is), or the device reports
//! `DEVICE_NEEDS_RESET` and the queue stays unusable; the features it accepts are the
//! device's and include `VIRTIO_F_VERSION_1`, or `FEATURES_OK` does not stick.

use mica_abi::virtio::{self, feature, interrupt, queue, reg, status};
use mica_caps::{CapAddr, ObjectRef};

use crate::evtchn::EndpointId;

pub use mica_abi::virtio::{CONFIG_BYTES, MAX_DEVICES, MAX_QUEUES};

// `virtio_info` reports each queue's size in 16 bits of one register.
const _: () = assert!(MAX_QUEUES <= 4);

/// One of a guest's virtio devices: where the guest sees it, its interrupt, its register file
/// and whom the kernel tells of what the guest did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestDevice {
    /// Guest-physical address of its register window ([`virtio::WINDOW`] bytes).
    pub window: u64,
    /// Its interrupt (an SPI of the guest's virtual GIC).
    pub intid: u32,
    /// The register file.
    pub mmio: VirtioMmio,
    /// Its VirtioDevice object.
    pub object: ObjectRef,
    /// Where the object's original capability is (the root space; destroyed with the guest).
    pub original: CapAddr,
    /// The kernel's end of the channel to the serving domain: raised on a notification, a
    /// reset and `DRIVER_OK`.
    pub notify: EndpointId,
    /// Where the originals of the channel's two ends are (the root space; the serving domain
    /// holds a copy of the second) and their objects: destroyed with the guest.
    pub channel_originals: [(CapAddr, ObjectRef); 2],
}

impl GuestDevice {
    /// The offset of guest-physical `ipa` in the window, if it is in it.
    pub fn offset(&self, ipa: u64) -> Option<u64> {
        ipa.checked_sub(self.window).filter(|o| *o < virtio::WINDOW)
    }
}

/// One virtqueue's setup, as the guest wrote it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Queue {
    /// The most entries the device allows (0: the queue does not exist).
    pub num_max: u16,
    /// Entries, as the driver chose.
    pub size: u16,
    /// The driver made it ready and the device accepted it (every check passed).
    pub ready: bool,
    /// Guest-physical address of the descriptor table.
    pub desc: u64,
    /// Guest-physical address of the available ring.
    pub driver: u64,
    /// Guest-physical address of the used ring.
    pub device: u64,
}

/// What a register write asks of the kernel beyond the register file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// Nothing.
    Nothing,
    /// The driver made buffers available in this queue: tell the serving domain.
    Notify(u16),
    /// The driver reset the device: the serving domain drops what it had of it (requests of
    /// the epoch before are ignored from now on).
    Reset,
    /// The driver set `DRIVER_OK`: the serving domain may start on the queues.
    DriverOk,
}

/// What makes a device: its type, what it offers and its configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    /// `DeviceID` (`mica_abi::virtio::device`).
    pub device_id: u32,
    /// The feature bits offered (`VIRTIO_F_VERSION_1` is always added).
    pub features: u64,
    /// Its queues' maximum sizes (0: no such queue).
    pub queue_max: [u16; MAX_QUEUES],
}

/// A device's register file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtioMmio {
    identity: Identity,
    config: [u8; CONFIG_BYTES],
    config_generation: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    queues: [Queue; MAX_QUEUES],
    status: u32,
    interrupt_status: u32,
    epoch: u32,
}

impl VirtioMmio {
    /// A device as found at boot: nothing negotiated, no queue ready, configuration
    /// `config` (its first bytes; the rest reads as zero).
    pub fn new(identity: Identity, config: &[u8]) -> Self {
        let mut queues = [Queue::default(); MAX_QUEUES];
        for (q, max) in queues.iter_mut().zip(identity.queue_max) {
            // A power of two within the transport's limit, or no queue.
            q.num_max = if max.is_power_of_two() && max <= queue::MAX_SIZE {
                max
            } else {
                0
            };
        }
        let mut bytes = [0; CONFIG_BYTES];
        let n = config.len().min(CONFIG_BYTES);
        bytes[..n].copy_from_slice(&config[..n]);
        VirtioMmio {
            identity: Identity {
                features: identity.features & feature::OFFERABLE | feature::VERSION_1,
                ..identity
            },
            config: bytes,
            config_generation: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            queues,
            status: 0,
            interrupt_status: 0,
            epoch: 0,
        }
    }

    /// Reads `size` bytes (1, 2 or 4) at `offset` in the window. `None` for an access a
    /// driver may not make: a register read other than whole and 32-bit aligned, or outside
    /// the window.
    pub fn read(&self, offset: u64, size: u64) -> Option<u32> {
        if offset >= reg::CONFIG {
            return self.read_config(offset - reg::CONFIG, size);
        }
        if size != 4 || !offset.is_multiple_of(4) {
            return None;
        }
        let q = self.selected();
        let word = |features: u64, sel: u32| match sel {
            0 => features as u32,
            1 => (features >> 32) as u32,
            _ => 0,
        };
        Some(match offset {
            reg::MAGIC => virtio::MAGIC,
            reg::VERSION => virtio::VERSION,
            reg::DEVICE_ID => self.identity.device_id,
            reg::VENDOR_ID => virtio::VENDOR,
            reg::DEVICE_FEATURES => word(self.identity.features, self.device_features_sel),
            reg::QUEUE_NUM_MAX => q.map_or(0, |q| u32::from(q.num_max)),
            reg::QUEUE_READY => q.map_or(0, |q| u32::from(q.ready)),
            reg::INTERRUPT_STATUS => self.interrupt_status,
            reg::STATUS => self.status,
            // No shared memory regions: a length of all ones says "none".
            reg::SHM_LEN_LOW | reg::SHM_LEN_HIGH | reg::SHM_BASE_LOW | reg::SHM_BASE_HIGH => {
                u32::MAX
            }
            reg::CONFIG_GENERATION => self.config_generation,
            // Write-only and reserved registers read as zero.
            _ => 0,
        })
    }

    /// Writes `value` (`size` bytes) at `offset`. `None` for an access a driver may not make
    /// (as [`read`](Self::read)); nothing changes then. `in_ram(ipa, bytes)` says whether
    /// the guest's RAM holds `[ipa, ipa + bytes)`: a queue's rings must lie there.
    pub fn write(
        &mut self,
        offset: u64,
        size: u64,
        value: u32,
        in_ram: impl Fn(u64, u64) -> bool,
    ) -> Option<Written> {
        if offset >= reg::CONFIG {
            // The configuration of Mica's devices is read-only: checked, then ignored.
            self.read_config(offset - reg::CONFIG, size)?;
            return Some(Written::Nothing);
        }
        if size != 4 || !offset.is_multiple_of(4) {
            return None;
        }
        let negotiating = self.status & (status::FEATURES_OK | status::DRIVER_OK) == 0;
        match offset {
            reg::DEVICE_FEATURES_SEL => self.device_features_sel = value,
            reg::DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            reg::DRIVER_FEATURES if negotiating => {
                let shift = match self.driver_features_sel {
                    0 => 0,
                    1 => 32,
                    _ => return Some(Written::Nothing),
                };
                self.driver_features &= !(0xFFFF_FFFF << shift);
                self.driver_features |= u64::from(value) << shift;
            }
            reg::QUEUE_SEL => self.queue_sel = value,
            reg::QUEUE_NUM => {
                if let Some(q) = self.selected_unready() {
                    q.size = value.min(u32::from(u16::MAX)) as u16;
                }
            }
            reg::QUEUE_DESC_LOW | reg::QUEUE_DESC_HIGH => self.set_address(offset, value),
            reg::QUEUE_DRIVER_LOW | reg::QUEUE_DRIVER_HIGH => self.set_address(offset, value),
            reg::QUEUE_DEVICE_LOW | reg::QUEUE_DEVICE_HIGH => self.set_address(offset, value),
            reg::QUEUE_READY => return Some(self.set_ready(value, in_ram)),
            reg::QUEUE_NOTIFY => {
                let live = self.status & status::DRIVER_OK != 0 && !self.needs_reset();
                let ready = self.queues.get(value as usize).is_some_and(|q| q.ready);
                if live && ready {
                    return Some(Written::Notify(value as u16));
                }
            }
            reg::INTERRUPT_ACK => self.interrupt_status &= !value,
            reg::STATUS => return Some(self.set_status(value)),
            // Read-only, reserved, and what Mica's devices do not offer (shared memory
            // regions, queue reset): ignored.
            _ => {}
        }
        Some(Written::Nothing)
    }

    /// The serving domain used buffers of the device's queues in `epoch`: the guest is
    /// interrupted. Completions of an epoch before the last reset are ignored.
    pub fn used(&mut self, epoch: u32) {
        if epoch == self.epoch && self.status & status::DRIVER_OK != 0 {
            self.interrupt_status |= interrupt::USED_BUFFER;
        }
    }

    /// The device met an error it cannot recover from without a reset (the guest broke a
    /// queue's rules): `DEVICE_NEEDS_RESET`, and the guest is told if it drives the device.
    pub fn fail(&mut self) {
        self.status |= status::DEVICE_NEEDS_RESET;
        if self.status & status::DRIVER_OK != 0 {
            self.interrupt_status |= interrupt::CONFIG_CHANGE;
        }
    }

    /// Whether the device's interrupt is raised (until the guest acknowledges every reason).
    pub fn line(&self) -> bool {
        self.interrupt_status != 0
    }

    /// The queues the serving domain may use now: the driver is ready, the device is not
    /// broken, and each has passed every check.
    pub fn live_queues(&self) -> impl Iterator<Item = (u16, &Queue)> {
        let live = self.status & status::DRIVER_OK != 0 && !self.needs_reset();
        self.queues
            .iter()
            .enumerate()
            .filter(move |(_, q)| live && q.ready)
            .map(|(i, q)| (i as u16, q))
    }

    /// The features both sides agreed on (meaningful once `FEATURES_OK` is set).
    pub fn negotiated(&self) -> u64 {
        self.driver_features & self.identity.features
    }

    /// Eight bytes of the configuration from `offset`, little-endian (zero past its end).
    pub fn config_word(&self, offset: u64) -> u64 {
        let mut word = [0u8; 8];
        for (i, b) in word.iter_mut().enumerate() {
            let at = usize::try_from(offset).ok().and_then(|o| o.checked_add(i));
            *b = at.and_then(|at| self.config.get(at)).copied().unwrap_or(0);
        }
        u64::from_le_bytes(word)
    }

    /// The device status.
    pub fn status(&self) -> u32 {
        self.status
    }

    /// Counts the resets: requests are tagged with it ([`used`](Self::used)).
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// What the device is.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    fn needs_reset(&self) -> bool {
        self.status & status::DEVICE_NEEDS_RESET != 0
    }

    fn read_config(&self, offset: u64, size: u64) -> Option<u32> {
        if !matches!(size, 1 | 2 | 4) || !offset.is_multiple_of(size) {
            return None;
        }
        let at = usize::try_from(offset).ok()?;
        let bytes = self.config.get(at..at.checked_add(size as usize)?);
        // Past the configuration, up to the end of the window: zero.
        if bytes.is_none() && offset + size > virtio::WINDOW - reg::CONFIG {
            return None;
        }
        let mut word = [0u8; 4];
        if let Some(b) = bytes {
            word[..b.len()].copy_from_slice(b);
        }
        Some(u32::from_le_bytes(word))
    }

    fn selected(&self) -> Option<&Queue> {
        self.queues
            .get(self.queue_sel as usize)
            .filter(|q| q.num_max != 0)
    }

    /// The selected queue while its setup may change: it exists and is not ready.
    fn selected_unready(&mut self) -> Option<&mut Queue> {
        self.queues
            .get_mut(self.queue_sel as usize)
            .filter(|q| q.num_max != 0 && !q.ready)
    }

    fn set_address(&mut self, offset: u64, value: u32) {
        let Some(q) = self.selected_unready() else {
            return;
        };
        let (field, high) = match offset {
            reg::QUEUE_DESC_LOW => (&mut q.desc, false),
            reg::QUEUE_DESC_HIGH => (&mut q.desc, true),
            reg::QUEUE_DRIVER_LOW => (&mut q.driver, false),
            reg::QUEUE_DRIVER_HIGH => (&mut q.driver, true),
            reg::QUEUE_DEVICE_LOW => (&mut q.device, false),
            _ => (&mut q.device, true),
        };
        let shift = if high { 32 } else { 0 };
        *field = *field & !(0xFFFF_FFFF << shift) | u64::from(value) << shift;
    }

    /// `QueueReady`: 1 makes the selected queue usable if its setup passes every check (else
    /// the device needs a reset), 0 stops it while the driver is not ready yet.
    fn set_ready(&mut self, value: u32, in_ram: impl Fn(u64, u64) -> bool) -> Written {
        let features_ok = self.status & status::FEATURES_OK != 0;
        let live = self.status & status::DRIVER_OK != 0;
        let Some(q) = self
            .queues
            .get_mut(self.queue_sel as usize)
            .filter(|q| q.num_max != 0)
        else {
            return Written::Nothing;
        };
        // A live queue stays where it is: Mica's devices do not offer VIRTIO_F_RING_RESET, so
        // the serving domain never has to follow a queue that moves under it.
        if q.ready || value == 0 {
            if !live {
                q.ready = false;
            }
            return Written::Nothing;
        }
        let size = q.size;
        let rings = [
            (q.desc, queue::desc_bytes(size), queue::DESC_ALIGN),
            (q.driver, queue::driver_bytes(size), queue::DRIVER_ALIGN),
            (q.device, queue::device_bytes(size), queue::DEVICE_ALIGN),
        ];
        let valid = features_ok
            && size.is_power_of_two()
            && size <= q.num_max
            && rings.iter().all(|&(at, bytes, align)| {
                at.is_multiple_of(align) && at.checked_add(bytes).is_some() && in_ram(at, bytes)
            });
        if valid {
            q.ready = true;
        } else {
            self.fail();
        }
        Written::Nothing
    }

    /// `Status`: 0 resets; otherwise the driver adds bits (it never clears one but by a
    /// reset). `FEATURES_OK` sticks only for features the device offered, with
    /// `VIRTIO_F_VERSION_1`; `DRIVER_OK` only after `FEATURES_OK`.
    fn set_status(&mut self, value: u32) -> Written {
        if value == 0 {
            self.reset();
            return Written::Reset;
        }
        let mut added = value & status::DRIVER_BITS & !self.status;
        if added & status::FEATURES_OK != 0 {
            let offered = self.driver_features & !self.identity.features == 0;
            if !offered || self.driver_features & feature::VERSION_1 == 0 {
                added &= !status::FEATURES_OK;
            }
        }
        if added & status::DRIVER_OK != 0 && (self.status | added) & status::FEATURES_OK == 0 {
            added &= !status::DRIVER_OK;
        }
        self.status |= added;
        if added & status::DRIVER_OK != 0 && !self.needs_reset() {
            Written::DriverOk
        } else {
            Written::Nothing
        }
    }

    /// The guest restarts: the device is as a reset leaves it (a new epoch).
    pub fn power_on(&mut self) {
        self.reset();
    }

    /// Back to what [`new`](Self::new) made, but a new epoch and the same configuration.
    fn reset(&mut self) {
        let epoch = self.epoch.wrapping_add(1);
        let generation = self.config_generation;
        let config = self.config;
        *self = VirtioMmio::new(self.identity, &config);
        self.epoch = epoch;
        self.config_generation = generation;
    }
}
