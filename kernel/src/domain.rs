//! The Domain object: an address space, a capability space and the vCPUs that run in it.

use mica_caps::{CapAddr, ObjectRef};

use crate::hal::Hal;
pub use crate::ids::{DomainId, VcpuId};
pub use crate::mapping::{Mapping, Mappings, MAX_MAPPINGS};
use crate::memmap::PhysRange;

extern crate alloc;

/// Most vCPUs of one domain.
pub const MAX_VCPUS_PER_DOMAIN: usize = mica_abi::sysimage::MAX_VCPUS_PER_DOMAIN;
/// Most separately allocated RAM chunks of one domain.
pub const MAX_RAM_CHUNKS: usize = mica_abi::layout::MAX_RAM_CHUNKS;
/// Bytes of console output buffered per domain until a newline.
pub const CONSOLE_LINE: usize = 160;

/// Where a domain is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainState {
    /// Its vCPUs may run.
    Running,
    /// Paused by a holder of its Domain capability: its vCPUs are not scheduled.
    Paused,
    /// Being destroyed: waiting for its vCPUs to leave every physical CPU.
    Dying,
}

/// The domain's lifecycle. Pure: the kernel kicks the vCPUs a change concerns
/// (`kernel/lifecycle.rs`).
impl DomainState {
    /// `domain_pause`: a running domain stops being scheduled (`WrongState` otherwise).
    pub fn pause(&mut self) -> Result<(), mica_abi::Status> {
        self.change(DomainState::Running, DomainState::Paused)
    }

    /// `domain_unpause`: a paused domain runs again (`WrongState` otherwise).
    pub fn unpause(&mut self) -> Result<(), mica_abi::Status> {
        self.change(DomainState::Paused, DomainState::Running)
    }

    /// It ends: dying from now on. `false` if it already was (ending happens once).
    pub fn end(&mut self) -> bool {
        core::mem::replace(self, DomainState::Dying) != DomainState::Dying
    }

    /// Its restart is done: it runs again (from dying).
    pub fn restarted(&mut self) {
        *self = DomainState::Running;
    }

    /// Whether its vCPUs may be scheduled.
    pub fn runs(self) -> bool {
        self == DomainState::Running
    }

    fn change(&mut self, from: DomainState, to: DomainState) -> Result<(), mica_abi::Status> {
        if *self != from {
            return Err(mica_abi::Status::WrongState);
        }
        *self = to;
        Ok(())
    }

    /// Lower-case name for listings.
    pub const fn name(self) -> &'static str {
        match self {
            DomainState::Running => "running",
            DomainState::Paused => "paused",
            DomainState::Dying => "dying",
        }
    }
}

/// A domain.
pub struct Domain<H: Hal> {
    /// Its name (from the manifest).
    pub name: heapless::String<32>,
    /// Its id (= capability space).
    pub id: DomainId,
    /// The Domain object.
    pub object: ObjectRef,
    /// Where the original Domain capability lives (in the creator's space).
    pub original: CapAddr,
    /// Lifecycle state.
    pub state: DomainState,
    /// Its vCPUs, by vCPU index.
    pub vcpus: heapless::Vec<VcpuId, 8>,
    /// Guest-physical translation.
    pub stage2: H::Stage2,
    /// Architectural extras (virtual interrupt controller).
    pub arch: H::DomainArch,
    /// VMID tagging its TLB entries.
    pub vmid: u16,
    /// Every mapping made into it.
    pub mappings: Mappings,
    /// RAM the kernel allocated for it (scrubbed and freed when it is destroyed).
    pub ram: heapless::Vec<PhysRange, MAX_RAM_CHUNKS>,
    /// Root-space slots of the Memory capabilities over `ram`, deleted at destroy.
    pub ram_caps: heapless::Vec<u16, MAX_RAM_CHUNKS>,
    /// Root-space slots of its vCPU capabilities.
    pub vcpu_caps: heapless::Vec<u16, 8>,
    /// Index of its record in the system image, if it came from one (for reboot).
    pub image_index: Option<usize>,
    /// Times it was restarted.
    pub boots: u64,
    /// Console output waiting for a newline.
    pub console: heapless::Vec<u8, CONSOLE_LINE>,
    /// Set when a restart was requested (SYSTEM_RESET) and is waiting for quiescence.
    pub restart_pending: bool,
    /// Its dismantling has been queued (it happens once).
    pub dismantling: bool,
    /// Guest-physical address of its event page (`event_page_set`).
    pub event_page: Option<u64>,
    /// What its boot-info page says (rewritten into its last RAM page on every start).
    pub boot_info: mica_abi::bootinfo::BootInfo,
    /// The NUMA node its RAM came from.
    pub memory_node: u8,
    /// The last [`CONSOLE_LOG`] bytes of its console output (a ring), for `console_read`.
    pub console_log: alloc::boxed::Box<[u8; CONSOLE_LOG]>,
    /// Console bytes written since it was created.
    pub console_total: u64,
    /// Stage-2 table memory charged to its quota (what [`crate::hal::Stage2::table_bytes`]
    /// reported after the last change).
    pub table_bytes: u64,
    /// Console output it may still write before the kernel drops it (a token bucket refilled
    /// with time, so one domain cannot flood the machine's console).
    pub console_budget: crate::console::Budget,
    /// It is an unmodified Linux kernel (`FLAG_LINUX`, or `domain_set_boot`): its vCPUs start
    /// with caches off, it has [`uart`](Self::uart) and its own clock base.
    pub linux: bool,
    /// The emulated PL011 a Linux domain has as its console (`None` for Mica's own domains,
    /// which write through `console_write`).
    pub uart: Option<crate::uart::Pl011>,
    /// Its virtio devices (`crate::virtio`; docs/virtio.md), at most
    /// [`crate::virtio::MAX_DEVICES`]. On the heap: a domain without devices (most) does not
    /// carry, copy and clear their room on every create.
    pub virtio: alloc::vec::Vec<crate::virtio::GuestDevice>,
    /// Where its vCPUs' clock starts (system-counter ns; [`crate::hal::VcpuContext::set_clock_base`]):
    /// the time a Linux domain was last started, so its clock begins near zero on every boot;
    /// 0 for Mica's own domains, whose time is the system's.
    pub clock_base_ns: u64,
}

impl<H: Hal> Domain<H> {
    /// A domain record for the new domain `id` whose Domain object is `object` and whose
    /// original capability is at `original`: running, no vCPUs, nothing mapped.
    pub fn new(
        id: DomainId,
        name: &str,
        object: ObjectRef,
        original: CapAddr,
        stage2: H::Stage2,
        arch: H::DomainArch,
        image_index: Option<usize>,
    ) -> Self {
        let mut text = heapless::String::new();
        for c in name.chars() {
            if text.push(c).is_err() {
                break;
            }
        }
        Domain {
            name: text,
            id,
            object,
            original,
            state: DomainState::Running,
            vcpus: heapless::Vec::new(),
            stage2,
            arch,
            vmid: id.0,
            mappings: Mappings::new(),
            ram: heapless::Vec::new(),
            ram_caps: heapless::Vec::new(),
            vcpu_caps: heapless::Vec::new(),
            image_index,
            boots: 0,
            console: heapless::Vec::new(),
            restart_pending: false,
            dismantling: false,
            event_page: None,
            boot_info: mica_abi::bootinfo::BootInfo::new(id.0 as u32, 0, 0),
            memory_node: 0,
            console_log: alloc::boxed::Box::new([0; CONSOLE_LOG]),
            console_total: 0,
            table_bytes: 0,
            console_budget: crate::console::Budget::FULL,
            linux: false,
            uart: None,
            virtio: alloc::vec::Vec::new(),
            clock_base_ns: 0,
        }
    }
}

impl<H: Hal> Domain<H> {
    /// The offset into its emulated PL011's window of guest-physical `ipa`, if it has one
    /// and `ipa` is in it.
    pub fn uart_offset(&self, ipa: u64) -> Option<u64> {
        use mica_abi::layout::devices::{UART_BASE, UART_SIZE};
        let offset = ipa.checked_sub(UART_BASE).filter(|o| *o < UART_SIZE)?;
        self.uart.as_ref().map(|_| offset)
    }
}

impl<H: Hal> Domain<H> {
    /// Which of its virtio devices has guest-physical `ipa` in its window.
    pub fn virtio_at(&self, ipa: u64) -> Option<usize> {
        self.virtio.iter().position(|d| d.offset(ipa).is_some())
    }

    /// Its virtio devices with a live queue whose rings are no longer all in its writable RAM
    /// (it unmapped them, or their capability went): each needs a reset now, so no domain is
    /// ever told to use memory the guest does not hold. Returns which.
    pub fn virtio_check_rings(&mut self) -> heapless::Vec<usize, { crate::virtio::MAX_DEVICES }> {
        use mica_abi::virtio::queue;
        let mappings = &self.mappings;
        let mut broken = heapless::Vec::new();
        for (i, device) in self.virtio.iter_mut().enumerate() {
            let lost = device.mmio.live_queues().any(|(_, q)| {
                !(mappings.holds_ram(q.desc, queue::desc_bytes(q.size))
                    && mappings.holds_ram(q.driver, queue::driver_bytes(q.size))
                    && mappings.holds_ram(q.device, queue::device_bytes(q.size)))
            });
            if lost {
                device.mmio.fail();
                let _ = broken.push(i);
            }
        }
        broken
    }

    /// The guest's access to the window of its virtio device `index` at `offset`: a read
    /// (`write` is `None`) returns the value, a write what it asks of the kernel. `None` for an
    /// access a driver may not make (nothing changed). A queue's rings must lie in the
    /// domain's writable RAM.
    pub fn virtio_access(
        &mut self,
        index: usize,
        offset: u64,
        size: u64,
        write: Option<u32>,
    ) -> Option<(u32, crate::virtio::Written)> {
        let device = self.virtio.get_mut(index)?;
        let mappings = &self.mappings;
        match write {
            Some(value) => {
                let in_ram = |ipa, bytes| mappings.holds_ram(ipa, bytes);
                device
                    .mmio
                    .write(offset, size, value, in_ram)
                    .map(|w| (0, w))
            }
            None => device
                .mmio
                .read(offset, size)
                .map(|v| (v, crate::virtio::Written::Nothing)),
        }
    }
}

/// Bytes of console output kept per domain.
pub const CONSOLE_LOG: usize = 4096;

impl<H: Hal> Domain<H> {
    /// Appends to the console log.
    pub fn log_console(&mut self, b: u8) {
        self.console_log[(self.console_total % CONSOLE_LOG as u64) as usize] = b;
        self.console_total += 1;
    }

    /// Up to 16 logged bytes from `offset` (moved forward to the oldest kept byte), packed
    /// little-endian into two words, with the offset actually used.
    pub fn read_console(&self, offset: u64) -> (u64, [u64; 2]) {
        let oldest = self.console_total.saturating_sub(CONSOLE_LOG as u64);
        let from = offset.max(oldest);
        let mut words = [0u64; 2];
        let n = self.console_total.saturating_sub(from).min(16);
        for i in 0..n {
            let b = self.console_log[((from + i) % CONSOLE_LOG as u64) as usize];
            words[(i / 8) as usize] |= (b as u64) << ((i % 8) * 8);
        }
        (from, words)
    }
}

impl<H: Hal> Domain<H> {
    /// The domain's name as text.
    pub fn name(&self) -> &str {
        self.name.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::DomainState::{self, *};
    use mica_abi::Status::WrongState;

    #[test]
    fn pause_and_unpause_only_from_the_state_they_leave_and_ending_is_once() {
        let mut s = Running;
        assert_eq!(s.unpause(), Err(WrongState));
        assert_eq!((s.pause(), s), (Ok(()), Paused));
        assert_eq!(s.pause(), Err(WrongState));
        assert!(!s.runs());
        assert_eq!((s.unpause(), s), (Ok(()), Running));
        assert!(s.end());
        assert!(!s.end(), "once");
        assert_eq!((s.pause(), s.unpause()), (Err(WrongState), Err(WrongState)));
        assert_eq!(s, DomainState::Dying);
        s.restarted();
        assert!(s.runs());
    }
}
