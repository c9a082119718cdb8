//! The kernel: every object, the capability system, the frame allocator and the run queues,
//! behind one lock.
//!
//! One big lock (as seL4 does) keeps the reasoning simple: a physical CPU takes it when its
//! guest exits to the kernel and drops it before re-entering a guest, so guests run in
//! parallel while kernel work is serialised and short. The HAL calls [`Kernel::pick`] to learn
//! what to run, [`Kernel::handle_exit`] when a guest exits, and [`Kernel::tick`] on its timer.

use alloc::vec::Vec;
use core::fmt::{self, Write};

use mica_abi::hypercall::{Call, SELF_DOMAIN};
use mica_abi::layout::DomainLayout;
use mica_abi::sysimage::{self, DomainRecord, SystemImage};
use mica_abi::{ObjectType, Rights, Status};
use mica_caps::{CapAddr, CapSystem, FrameRange, Removal, SpaceId};

use crate::domain::{Domain, DomainId, DomainState, Mapping};
use crate::evtchn::{Binding, Channels, Delivery};
use crate::frames::{Frames, FRAME_SIZE};
use crate::hal::{Hal, Stage2, VcpuContext};
use crate::irq::{IrqLine, IrqOutcome, IrqRoute, MAX_IRQS};
use crate::memmap::PhysRange;
use crate::psci;
use crate::sched::{self, Candidate, SchedParams, SchedState};
use crate::vcpu::{Vcpu, VcpuId, VcpuState};

/// Most capability spaces: every domain plus the root.
pub const SPACES: usize = sysimage::MAX_DOMAINS + 1;
/// Slots per space (the root's size; domains get [`DOMAIN_SLOTS`]).
pub const SLOTS: usize = 128;
/// Most live kernel objects.
pub const OBJECTS: usize = 512;
/// Most vCPUs in the system.
pub const MAX_VCPUS: usize = 64;
/// Most physical CPUs.
pub const MAX_CPUS: usize = crate::platform::MAX_CPUS;
/// Capability slots of a domain created from the system image.
pub const DOMAIN_SLOTS: u16 = 64;
/// Kernel-memory quota of a domain created from the system image.
pub const DOMAIN_QUOTA: u64 = 1 << 20;

/// The capability system the kernel uses.
pub type Caps = CapSystem<SPACES, SLOTS, OBJECTS>;

/// Why a guest left the CPU, as the HAL decoded it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// `hvc #0` with function id and arguments x1-x6.
    Hvc {
        /// x0.
        function: u64,
        /// x1-x6.
        args: [u64; 6],
    },
    /// A trapped `smc #0`.
    Smc {
        /// x0.
        function: u64,
        /// x1-x6.
        args: [u64; 6],
    },
    /// A trapped WFI: wait for an interrupt.
    WaitForInterrupt,
    /// A trapped WFE (a spin-wait hint): give others the CPU, stay runnable.
    Yield,
    /// A stage-2 fault the HAL did not emulate.
    MemoryFault {
        /// Faulting guest-physical address.
        ipa: u64,
        /// Whether it was a write.
        write: bool,
        /// The guest's program counter.
        pc: u64,
    },
    /// A physical interrupt (already handled by the HAL); only rescheduling may follow.
    Interrupt,
    /// Something the kernel does not emulate.
    Unhandled {
        /// The architectural syndrome (ESR_EL2).
        syndrome: u64,
        /// The guest's program counter.
        pc: u64,
        /// What it was, in words.
        what: &'static str,
    },
}

/// A reference to the vCPU a physical CPU should run.
pub struct Next {
    /// The vCPU.
    pub vcpu: VcpuId,
    /// Its domain.
    pub domain: DomainId,
}

impl<H: Hal> Kernel<H> {
    /// When CPU `cpu` must call [`Kernel::tick`] next (its one-shot timer), as decided by the
    /// last [`Kernel::pick`]; `None`: no timer is needed.
    pub fn deadline(&self, cpu: usize) -> Option<u64> {
        self.deadlines.get(cpu).copied().flatten()
    }
}

/// The kernel state.
pub struct Kernel<H: Hal> {
    /// The hardware layer.
    pub hal: H,
    /// Capabilities.
    pub caps: Caps,
    /// Free RAM.
    pub frames: Frames,
    root: Option<SpaceId>,
    domains: [Option<Domain<H>>; SPACES],
    vcpus: [Option<Vcpu<H>>; MAX_VCPUS],
    /// One past the highest vCPU slot ever filled: the scans on every `pick` stop there.
    vcpu_end: usize,
    deadlines: [Option<u64>; MAX_CPUS],
    /// Counts vCPU starts: the round-robin order among equal priorities.
    run_seq: u64,
    /// The scheduling accounting page and the root slot of its Memory capability.
    accounting: Option<(PhysRange, u16)>,
    /// Its sequence number (even when consistent).
    accounting_seq: u64,
    /// The kernel's end of the policy domain's change channel.
    sched_events: Option<crate::evtchn::EndpointId>,
    /// NUMA node of each CPU.
    cpu_nodes: [u8; MAX_CPUS],
    /// The control domain, if the image has one.
    control: Option<DomainId>,
    /// Its memory pool and the root slot of the pool's Memory capability.
    control_pool: Option<(PhysRange, u16)>,
    /// Where the system image lies (set by the HAL at boot).
    image_range: Option<PhysRange>,
    /// Physical interrupt lines handed to domains.
    irqs: heapless::Vec<IrqLine, MAX_IRQS>,
    current: [Option<VcpuId>; MAX_CPUS],
    resched: [bool; MAX_CPUS],
    image: Option<SystemImage<'static>>,
    /// Scrubbed RAM of a destroyed domain waiting for the domain that takes it over.
    handoff: Option<(
        usize,
        heapless::Vec<PhysRange, { crate::domain::MAX_RAM_CHUNKS }>,
    )>,
    /// Every event-channel endpoint.
    pub channels: Channels<MAX_ENDPOINTS>,
    /// Channel and share records of the image already set up (bit i = record i).
    wired: (u64, u64),
    /// Free frame memory before the first domain was created.
    boot_free: u64,
}

/// Most event-channel endpoints in the system.
pub const MAX_ENDPOINTS: usize = 128;

/// Writes a `mica:` line to the console.
macro_rules! log {
    ($k:expr, $($arg:tt)*) => { $k.log(format_args!($($arg)*)) };
}

/// Writes a `mica:` line about what a domain did, paid from a console budget
/// ([`Kernel::log_for`]).
macro_rules! log_for {
    ($k:expr, $about:expr, $($arg:tt)*) => { $k.log_for($about, format_args!($($arg)*)) };
}

/// Writes a `mica:` line paid from the console budget of a given domain
/// ([`Kernel::log_paid_by`]).
macro_rules! log_paid_by {
    ($k:expr, $payer:expr, $($arg:tt)*) => { $k.log_paid_by($payer, format_args!($($arg)*)) };
}

impl<H: Hal> Kernel<H> {
    /// An empty kernel (no domains, no memory). `const` so it can live in a static.
    pub const fn new(hal: H) -> Self {
        Kernel {
            hal,
            caps: CapSystem::new(),
            frames: Frames::new(),
            root: None,
            domains: [const { None }; SPACES],
            vcpus: [const { None }; MAX_VCPUS],
            vcpu_end: 0,
            deadlines: [None; MAX_CPUS],
            run_seq: 0,
            accounting: None,
            accounting_seq: 0,
            sched_events: None,
            cpu_nodes: [0; MAX_CPUS],
            control: None,
            control_pool: None,
            image_range: None,
            irqs: heapless::Vec::new(),
            current: [None; MAX_CPUS],
            resched: [false; MAX_CPUS],
            image: None,
            handoff: None,
            channels: Channels::new(),
            wired: (0, 0),
            boot_free: 0,
        }
    }

    /// Prints a kernel line.
    pub fn log(&self, args: fmt::Arguments<'_>) {
        let mut line = heapless::String::<256>::new();
        let _ = line.write_str("mica: ");
        let _ = line.write_fmt(args);
        let _ = line.write_str("\n");
        self.hal.console_write(line.as_bytes());
    }

    /// The domain with id `id`, if it exists.
    pub fn domain(&self, id: DomainId) -> Option<&Domain<H>> {
        self.domains.get(id.index())?.as_ref()
    }

    /// The vCPU `id`, if it exists.
    pub fn vcpu(&self, id: VcpuId) -> Option<&Vcpu<H>> {
        self.vcpus.get(id.index())?.as_ref()
    }

    /// The vCPU `id` for the HAL's world switch.
    pub fn vcpu_mut(&mut self, id: VcpuId) -> Option<&mut Vcpu<H>> {
        self.vcpus.get_mut(id.index())?.as_mut()
    }

    /// The domain `id` for the HAL (e.g. its virtual interrupt controller).
    pub fn domain_mut(&mut self, id: DomainId) -> Option<&mut Domain<H>> {
        self.domains.get_mut(id.index())?.as_mut()
    }

    /// Every live domain.
    pub fn domains(&self) -> impl Iterator<Item = &Domain<H>> {
        self.domains.iter().flatten()
    }

    /// Records where the system image lies (boot), so a control domain can be given it.
    pub fn set_image_range(&mut self, range: PhysRange) {
        self.image_range = Some(range);
    }

    /// Records that CPU `cpu` is on NUMA node `node` (boot, from the device tree).
    pub fn set_cpu_node(&mut self, cpu: usize, node: u8) {
        if let Some(n) = self.cpu_nodes.get_mut(cpu) {
            *n = node;
        }
    }

    /// The NUMA node of CPU `cpu`.
    pub fn cpu_node(&self, cpu: usize) -> u8 {
        self.cpu_nodes.get(cpu).copied().unwrap_or(0)
    }

    /// The vCPU running on `cpu`, if any.
    pub fn current(&self, cpu: usize) -> Option<VcpuId> {
        *self.current.get(cpu)?
    }

    // ----- Boot -----------------------------------------------------------------------------

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

    fn start_from_image(
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
    fn domain_of_record(&self, index: u32) -> Option<DomainId> {
        self.domains()
            .find(|d| d.image_index == Some(index as usize))
            .map(|d| d.id)
    }

    fn free_slot_in(&self, space: SpaceId) -> Result<u16, Status> {
        let slots = self.caps.space(space).map_or(0, |s| s.slots);
        (0..slots)
            .find(|s| self.caps.capability(CapAddr::new(space, *s)).is_none())
            .ok_or(Status::NoFreeSlot)
    }

    /// Sets up every channel and shared region of the image whose domains both exist and
    /// that is not set up yet, recording each in the domains' boot-info pages.
    fn wire_links(&mut self) {
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
    }

    fn wire_channel(
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

    fn wire_share(
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
        for (d, (cap, region)) in [(owner, owner_entries), (peer, peer_entries)] {
            if let Some(dom) = self.domains[d.index()].as_mut() {
                let _ = dom.boot_info.push_cap(cap);
                let _ = dom.boot_info.push_region(region);
            }
        }
        Ok(())
    }

    fn free_root_slot(&self) -> Result<u16, Status> {
        let root = self.root.ok_or(Status::WrongState)?;
        (0..SLOTS as u16)
            .find(|s| self.caps.capability(CapAddr::new(root, *s)).is_none())
            .ok_or(Status::NoFreeSlot)
    }

    fn free_vcpu_id(&self) -> Result<VcpuId, Status> {
        self.vcpus
            .iter()
            .position(Option::is_none)
            .map(|i| VcpuId(i as u16))
            .ok_or(Status::OutOfMemory)
    }

    /// Creates domain `index` of the system image: its space, RAM (fresh, or `ram` handed
    /// over), mappings, loaded segments and vCPUs; vCPU 0 starts.
    fn instantiate(
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
        if let Err(e) = self.build_domain(id, dom_slot, record, pages, ram) {
            self.teardown(id);
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

    fn build_domain(
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

    /// Gives the policy domain `id` its SchedControl capability, the read-only accounting page
    /// and the endpoint on which the kernel reports changes, all listed in its boot info.
    fn grant_sched_control(&mut self, id: DomainId) -> Result<(), Status> {
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
    fn grant_control(&mut self, id: DomainId) -> Result<(), Status> {
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
    fn grant_domains_to_control(&mut self) {
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
    fn forget_dead_domains_in_control(&mut self) {
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
    fn rewrite_control_boot_info(&mut self) {
        let Some(ctl) = self.control else { return };
        if let Some(d) = self.domain(ctl) {
            let layout = DomainLayout::new(d.ram.iter().map(|r| r.size()).sum());
            let _ = self.write_boot_info(ctl, layout.boot_page());
        }
    }

    /// Writes domain `id`'s boot-info page, with its current boot count and vCPU count, at
    /// guest-physical `ipa` (its [`DomainLayout::boot_page`]).
    fn write_boot_info(&mut self, id: DomainId, ipa: u64) -> Result<(), Status> {
        let d = self.domain(id).ok_or(Status::WrongState)?;
        let mut info = d.boot_info;
        info.boots = d.boots as u32;
        info.vcpu_count = d.vcpus.len() as u32;
        self.copy_to_guest(id, ipa, zerocopy::IntoBytes::as_bytes(&info))
    }

    /// Rewrites the accounting page from the kernel's vCPU table (a seqlock: `seq` is odd
    /// while the entries change).
    pub fn publish_accounting(&mut self) {
        use mica_abi::sched::{state, SchedPage, VcpuAccount, MAX_ACCOUNTED_VCPUS};
        use zerocopy::{FromZeros, IntoBytes};
        let Some((frame, _)) = self.accounting else {
            return;
        };
        self.accounting_seq = self.accounting_seq.wrapping_add(2);
        let mut page = SchedPage::new_zeroed();
        page.seq = self.accounting_seq;
        page.now_ns = self.hal.now_ns();
        page.cpus = self.hal.cpus() as u32;
        for (i, v) in self.vcpus.iter().enumerate().take(MAX_ACCOUNTED_VCPUS) {
            let Some(v) = v else { continue };
            page.vcpus[i] = VcpuAccount {
                domain: v.domain.0,
                index: v.index,
                cpu: v.cpu as u8,
                state: match v.state {
                    VcpuState::Off => state::OFF,
                    VcpuState::Runnable => state::RUNNABLE,
                    VcpuState::Running => state::RUNNING,
                    VcpuState::Blocked => state::BLOCKED,
                },
                priority: v.sched.params.priority,
                valid: 1,
                run_time_ns: v.sched.run_time,
                wakeups: v.sched.wakeups as u32,
                overruns: v.sched.overruns as u32,
                budget_us: (v.sched.params.budget_ns / 1000) as u32,
                period_us: (v.sched.params.period_ns / 1000) as u32,
                affinity: v.sched.params.affinity,
                request: v.request,
                node: self.cpu_nodes.get(v.cpu).copied().unwrap_or(0),
                memory_node: self.domain(v.domain).map_or(0, |d| d.memory_node),
                reserved: 0,
            };
        }
        // Odd sequence first, then the entries, then the even sequence.
        self.hal
            .write_phys(frame.start, &(self.accounting_seq - 1).to_le_bytes());
        self.hal.write_phys(frame.start + 8, &page.as_bytes()[8..]);
        self.hal.write_phys(frame.start, &page.seq.to_le_bytes());
    }

    /// Tells the policy domain that something changed (coalesced; ignored if it is gone).
    pub(crate) fn notify_policy(&mut self) {
        let Some(end) = self.sched_events else { return };
        if let Ok(Some(delivery)) = self.channels.send(end) {
            self.deliver(delivery);
        }
    }

    /// `sched_set`, after decoding: checks, then applies new parameters to one vCPU.
    pub(crate) fn set_sched(
        &mut self,
        caller: DomainId,
        control: u16,
        domain: u16,
        index: u16,
        params: SchedParams,
    ) -> Result<(), Status> {
        self.caps.lookup(
            caller.space(),
            control,
            ObjectType::SchedControl,
            Rights::CONTROL,
        )?;
        let cpus = self.hal.cpus().max(1);
        if !params.is_valid(cpus) {
            return Err(Status::InvalidArgument);
        }
        let v = self
            .domain(DomainId(domain))
            .and_then(|d| d.vcpus.get(index as usize).copied())
            .ok_or(Status::OutOfRange)?;
        let old_cpu = self.vcpu(v).ok_or(Status::OutOfRange)?.cpu;
        let new_cpu = if params.affinity & (1 << old_cpu) != 0 {
            old_cpu
        } else {
            params.affinity.trailing_zeros() as usize
        };
        // Admission: reservations on the CPU it will run on stay within 100%.
        let others = self
            .vcpus
            .iter()
            .enumerate()
            .filter_map(|(i, x)| x.as_ref().filter(|x| i != v.index() && x.cpu == new_cpu))
            .map(|x| x.sched.params);
        if !sched::admissible(others.chain(core::iter::once(params))) {
            return Err(Status::Overcommitted);
        }
        // Act.
        let now = self.hal.now_ns();
        let x = self.vcpus[v.index()].as_mut().ok_or(Status::OutOfRange)?;
        x.sched.set_params(params, now);
        let state = x.state;
        if new_cpu != old_cpu {
            x.cpu = new_cpu;
            if state == VcpuState::Running {
                // Its current CPU lets go of it at the next pick; it then runs on the new one.
                self.resched[old_cpu] = true;
                self.hal.kick(old_cpu);
            }
        }
        self.resched[new_cpu] = true;
        self.hal.kick(new_cpu);
        self.publish_accounting();
        Ok(())
    }

    fn boot_vcpu0(&mut self, id: DomainId) -> Result<(), Status> {
        let image = self.image.ok_or(Status::WrongState)?;
        let d = self.domain(id).ok_or(Status::WrongState)?;
        let record = d
            .image_index
            .and_then(|i| image.domains().get(i))
            .ok_or(Status::WrongState)?;
        let v0 = *d.vcpus.first().ok_or(Status::WrongState)?;
        let layout = DomainLayout::new(record.memory_bytes);
        self.write_boot_info(id, layout.boot_page())?;
        let regs = layout.entry_regs(record.arg);
        let dc = record.flags & sysimage::FLAG_DEFAULT_CACHEABLE != 0;
        let v = self.vcpu_mut(v0).ok_or(Status::WrongState)?;
        v.context.reset(record.entry, regs, 0, dc);
        self.make_runnable(v0);
        self.publish_accounting();
        self.notify_policy();
        Ok(())
    }

    /// Copies `bytes` into domain `id`'s memory at guest-physical `ipa`, page by page.
    fn copy_to_guest(&mut self, id: DomainId, ipa: u64, bytes: &[u8]) -> Result<(), Status> {
        let d = self.domain(id).ok_or(Status::WrongState)?;
        let mut done = 0usize;
        while done < bytes.len() {
            let at = ipa + done as u64;
            let pa = d.translate(at).ok_or(Status::OutOfRange)?;
            let in_page = (FRAME_SIZE - (at % FRAME_SIZE)) as usize;
            let n = in_page.min(bytes.len() - done);
            self.hal.write_phys(pa, &bytes[done..done + n]);
            done += n;
        }
        Ok(())
    }

    // ----- Scheduling -----------------------------------------------------------------------

    fn make_runnable(&mut self, v: VcpuId) {
        let Some(vcpu) = self.vcpus[v.index()].as_mut() else {
            return;
        };
        if vcpu.retired {
            vcpu.state = VcpuState::Off;
            return;
        }
        vcpu.state = VcpuState::Runnable;
        let (cpu, domain) = (vcpu.cpu, vcpu.domain);
        if self
            .domain(domain)
            .is_some_and(|d| d.state == DomainState::Running)
        {
            self.hal.kick(cpu);
        }
    }

    /// What physical CPU `cpu` should run now (`None`: idle until an interrupt), following
    /// the mechanism of [`sched`]: the running vCPU is charged for its time and keeps the CPU
    /// unless its slice ended (a [`Kernel::tick`]), it yielded or blocked, or a vCPU of higher
    /// priority became runnable. Also computes [`Kernel::deadline`].
    pub fn pick(&mut self, cpu: usize) -> Option<Next> {
        if cpu >= MAX_CPUS {
            return None;
        }
        let now = self.hal.now_ns();
        if let Some(c) = self.current[cpu] {
            let mut overran = false;
            let still = self.vcpus[c.index()].as_mut().map(|x| {
                overran = x.sched.charge(now);
                (x.state, x.domain)
            });
            if overran {
                self.notify_policy();
            }
            let retired = self.vcpus[c.index()].as_ref().is_none_or(|x| x.retired);
            let keeps_running = !retired
                && still.is_some_and(|(state, d)| {
                    state == VcpuState::Running
                        && self
                            .domain(d)
                            .is_some_and(|d| d.state == DomainState::Running)
                });
            if !keeps_running {
                // Blocked, stopped, paused or dying: off the CPU first (this may restart or
                // tear down its domain, which changes what is runnable).
                self.current[cpu] = None;
                self.leave_cpu(c);
            }
        }
        let current = self.current[cpu];
        let resched = core::mem::take(&mut self.resched[cpu]);
        // Everything that may run here, with budgets replenished for `now`.
        let mut candidates: heapless::Vec<Candidate<VcpuId>, MAX_VCPUS> = heapless::Vec::new();
        let mut waiting: heapless::Vec<SchedState, MAX_VCPUS> = heapless::Vec::new();
        for i in 0..self.vcpu_end.min(MAX_VCPUS) {
            let id = VcpuId(i as u16);
            let running_domain = match self.vcpus[i].as_ref() {
                Some(x) if x.cpu == cpu => self
                    .domain(x.domain)
                    .is_some_and(|d| d.state == DomainState::Running),
                _ => continue,
            };
            let Some(x) = self.vcpus[i].as_mut() else {
                continue;
            };
            x.sched.replenish(now);
            let runnable = x.state == VcpuState::Runnable
                || (x.state == VcpuState::Running && current == Some(id));
            if running_domain && runnable {
                let _ = candidates.push(Candidate { id, sched: x.sched });
            }
        }
        let best = sched::choose(candidates.iter().copied());
        // The running vCPU keeps the CPU unless something better came or its turn is over.
        let keep = current.filter(|c| {
            !resched
                && candidates.iter().any(|k| k.id == *c && k.sched.eligible())
                && best.is_some_and(|b| {
                    let prio = |id: VcpuId| {
                        candidates
                            .iter()
                            .find(|k| k.id == id)
                            .map_or(0, |k| k.sched.params.priority)
                    };
                    prio(b) <= prio(*c)
                })
        });
        let chosen = keep.or(best);
        if let Some(c) = current.filter(|c| Some(*c) != chosen) {
            self.current[cpu] = None;
            self.leave_cpu(c);
        }
        let timers = self.blocked_timer_deadline(cpu);
        let Some(v) = chosen else {
            for k in candidates.iter() {
                let _ = waiting.push(k.sched);
            }
            self.deadlines[cpu] = earliest(sched::next_deadline(now, None, &waiting), timers);
            return None;
        };
        let vcpu = self.vcpus[v.index()].as_mut()?;
        if current != Some(v) {
            vcpu.runs += 1;
        }
        vcpu.state = VcpuState::Running;
        if current != Some(v) {
            self.run_seq += 1;
            vcpu.sched.start(now, self.run_seq);
        } else {
            vcpu.sched.resume(now);
        }
        let (domain, running) = (vcpu.domain, vcpu.sched);
        self.current[cpu] = Some(v);
        for k in candidates.iter().filter(|k| k.id != v) {
            let _ = waiting.push(k.sched);
        }
        self.deadlines[cpu] = earliest(sched::next_deadline(now, Some(&running), &waiting), timers);
        Some(Next { vcpu: v, domain })
    }

    /// The earliest virtual-timer deadline of the vCPUs blocked on `cpu`.
    fn blocked_timer_deadline(&self, cpu: usize) -> Option<u64> {
        self.vcpus
            .iter()
            .take(self.vcpu_end)
            .flatten()
            .filter(|v| v.cpu == cpu && v.state == VcpuState::Blocked)
            .filter_map(|v| v.context.timer_deadline_ns())
            .min()
    }

    /// `v` has just left its physical CPU.
    fn leave_cpu(&mut self, v: VcpuId) {
        let Some(vcpu) = self.vcpus[v.index()].as_ref() else {
            return;
        };
        let domain = vcpu.domain;
        let state = self.domain(domain).map(|d| d.state);
        if vcpu.retired {
            if let Some(x) = self.vcpus[v.index()].as_mut() {
                x.state = VcpuState::Off;
            }
            self.finish_if_quiescent(domain);
            return;
        }
        match (vcpu.state, state) {
            (VcpuState::Running, Some(DomainState::Running)) => self.make_runnable(v),
            (VcpuState::Running, Some(DomainState::Paused)) => {
                if let Some(x) = self.vcpus[v.index()].as_mut() {
                    x.state = VcpuState::Runnable;
                }
            }
            (_, Some(DomainState::Dying)) => {
                if let Some(x) = self.vcpus[v.index()].as_mut() {
                    x.state = VcpuState::Off;
                }
                self.finish_if_quiescent(domain);
            }
            _ => {}
        }
    }

    /// The timer of `cpu` fired (its deadline, or a periodic tick): the scheduler looks again
    /// (round robin among equals, budgets), and blocked vCPUs wake to check their virtual
    /// timer.
    pub fn tick(&mut self, cpu: usize) {
        if cpu >= MAX_CPUS {
            return;
        }
        let now = self.hal.now_ns();
        let expired: heapless::Vec<VcpuId, MAX_VCPUS> = self
            .vcpus
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                v.as_ref()
                    .filter(|v| {
                        v.cpu == cpu
                            && v.state == VcpuState::Blocked
                            && v.context.timer_deadline_ns().is_some_and(|d| d <= now)
                    })
                    .map(|_| VcpuId(i as u16))
            })
            .collect();
        for v in expired {
            self.wake(v);
        }
        self.resched[cpu] = true;
        if cpu == 0 {
            self.publish_accounting();
        }
    }

    /// Marks vCPU `v` as having a pending virtual interrupt: a blocked vCPU becomes runnable.
    pub fn wake(&mut self, v: VcpuId) {
        let Some(vcpu) = self.vcpus[v.index()].as_mut() else {
            return;
        };
        vcpu.wake_pending = true;
        if vcpu.state == VcpuState::Blocked {
            vcpu.sched.wakeups += 1;
            self.make_runnable(v);
        }
    }

    /// A virtual interrupt of vCPU `v` may have become deliverable: a blocked `v` wakes
    /// ([`wake`](Self::wake)); a running one has its physical CPU interrupted so that it
    /// exits and sees the interrupt (the HAL refills its interrupt state before every entry).
    /// A runnable or stopped `v` needs nothing.
    pub fn interrupt_vcpu(&mut self, v: VcpuId) {
        let Some(vcpu) = self.vcpu(v) else { return };
        match vcpu.state {
            VcpuState::Blocked => self.wake(v),
            VcpuState::Running => self.hal.kick(vcpu.cpu),
            VcpuState::Runnable | VcpuState::Off => {}
        }
    }

    // ----- Exits ----------------------------------------------------------------------------

    /// Handles an exit of the vCPU running on `cpu`.
    pub fn handle_exit(&mut self, cpu: usize, exit: Exit) {
        let Some(v) = self.current(cpu) else { return };
        let Some(domain) = self.vcpu(v).map(|x| x.domain) else {
            return;
        };
        match exit {
            Exit::Hvc { function, args } => {
                let regs = if psci::is_psci(function) {
                    self.psci(cpu, v, domain, function, args)
                } else if function & !0xFFFF == mica_abi::hypercall::VENDOR_HYP_BASE {
                    match self.hypercall(cpu, v, domain, function, args) {
                        Ok(values) => [0, values[0], values[1], values[2]],
                        Err(s) => [s.to_raw(), 0, 0, 0],
                    }
                } else {
                    // SMCCC: an unknown function id answers NOT_SUPPORTED.
                    [psci::ret::NOT_SUPPORTED, 0, 0, 0]
                };
                self.set_result(v, regs);
            }
            Exit::Smc { function, args } => {
                let regs = if psci::is_psci(function) {
                    self.psci(cpu, v, domain, function, args)
                } else {
                    [psci::ret::NOT_SUPPORTED, 0, 0, 0]
                };
                self.set_result(v, regs);
            }
            Exit::WaitForInterrupt => {
                if let Some(x) = self.vcpus[v.index()].as_mut() {
                    if x.wake_pending {
                        x.wake_pending = false;
                    } else {
                        x.state = VcpuState::Blocked;
                        self.resched[cpu] = true;
                    }
                }
            }
            Exit::MemoryFault { ipa, write, pc } => {
                let index = self.vcpu(v).map_or(0, |x| x.index);
                let name = self.domain(domain).map_or("?", |d| d.name());
                let name: heapless::String<32> = name_copy(name);
                log_for!(
                    self,
                    domain,
                    "domain {} (id {}) stopped: vCPU {index} {} guest-physical {ipa:#x} at pc {pc:#x}, which it was not given",
                    name,
                    domain.0,
                    if write { "wrote" } else { "read" }
                );
                self.destroy(domain);
            }
            Exit::Unhandled { syndrome, pc, what } => {
                let name: heapless::String<32> =
                    name_copy(self.domain(domain).map_or("?", |d| d.name()));
                log_for!(
                    self,
                    domain,
                    "domain {} (id {}) stopped: {what} (syndrome {syndrome:#x}) at pc {pc:#x}",
                    name,
                    domain.0
                );
                self.destroy(domain);
            }
            Exit::Yield => self.yield_cpu(cpu),
            Exit::Interrupt => {}
        }
    }

    fn set_result(&mut self, v: VcpuId, regs: [u64; 4]) {
        if let Some(x) = self.vcpus[v.index()].as_mut() {
            x.context.set_result(regs);
        }
    }

    // ----- PSCI ------------------------------------------------------------------------------

    fn psci(
        &mut self,
        cpu: usize,
        v: VcpuId,
        domain: DomainId,
        function: u64,
        args: [u64; 6],
    ) -> [u64; 4] {
        use psci::ret;
        let r = match function {
            psci::VERSION => psci::VERSION_1_1,
            psci::FEATURES => {
                if psci::implemented(args[0]) {
                    ret::SUCCESS
                } else {
                    ret::NOT_SUPPORTED
                }
            }
            psci::MIGRATE_INFO_TYPE => 2, // Trusted OS not present: no migration needed.
            f if psci::CPU_ON.contains(&f) => self.psci_cpu_on(domain, args[0], args[1], args[2]),
            f if psci::AFFINITY_INFO.contains(&f) => {
                match self.domain_vcpu_by_mpidr(domain, args[0]) {
                    Some(t) => match self.vcpu(t).map(|x| x.state) {
                        Some(VcpuState::Off) | None => ret::AFFINITY_OFF,
                        Some(_) => ret::AFFINITY_ON,
                    },
                    None => ret::INVALID_PARAMETERS,
                }
            }
            psci::CPU_OFF => {
                if let Some(x) = self.vcpus[v.index()].as_mut() {
                    x.state = VcpuState::Off;
                }
                self.resched[cpu] = true;
                ret::SUCCESS
            }
            psci::SYSTEM_OFF => {
                let name: heapless::String<32> =
                    name_copy(self.domain(domain).map_or("?", |d| d.name()));
                log_for!(
                    self,
                    domain,
                    "domain {} (id {}) powered itself off (PSCI SYSTEM_OFF)",
                    name,
                    domain.0
                );
                self.destroy(domain);
                ret::SUCCESS
            }
            psci::SYSTEM_RESET => {
                let name: heapless::String<32> =
                    name_copy(self.domain(domain).map_or("?", |d| d.name()));
                log_for!(
                    self,
                    domain,
                    "domain {} (id {}) restarts (PSCI SYSTEM_RESET)",
                    name,
                    domain.0
                );
                self.restart(domain);
                ret::SUCCESS
            }
            _ => ret::NOT_SUPPORTED,
        };
        [r, 0, 0, 0]
    }

    fn domain_vcpu_by_mpidr(&self, domain: DomainId, mpidr: u64) -> Option<VcpuId> {
        // vCPU n has virtual MPIDR affinity n (Aff0); higher affinity levels are 0.
        if mpidr & 0xFF_00FF_FF00 != 0 {
            return None;
        }
        self.domain(domain)?
            .vcpus
            .get((mpidr & 0xFF) as usize)
            .copied()
    }

    fn psci_cpu_on(&mut self, domain: DomainId, target: u64, entry: u64, context: u64) -> u64 {
        use psci::ret;
        let Some(t) = self.domain_vcpu_by_mpidr(domain, target) else {
            return ret::INVALID_PARAMETERS;
        };
        let Some(d) = self.domain(domain) else {
            return ret::INVALID_PARAMETERS;
        };
        if d.translate(entry).is_none() {
            return ret::INVALID_ADDRESS;
        }
        let dc = d
            .image_index
            .and_then(|i| self.image?.domains().get(i).copied())
            .is_some_and(|r| r.flags & sysimage::FLAG_DEFAULT_CACHEABLE != 0);
        let Some(x) = self.vcpus[t.index()].as_mut() else {
            return ret::INVALID_PARAMETERS;
        };
        if x.retired {
            // Its Vcpu object was destroyed: it is gone for good.
            return ret::DENIED;
        }
        if x.state != VcpuState::Off {
            return ret::ALREADY_ON;
        }
        let (index, cpu) = (x.index, x.cpu);
        x.context.reset(entry, [context, 0, 0, 0], index, dc);
        self.make_runnable(t);
        let name = name_copy(self.domain(domain).map_or("?", |d| d.name()));
        log_for!(
            self,
            domain,
            "domain {} (id {}): vCPU {index} started on CPU {cpu} (PSCI CPU_ON)",
            name,
            domain.0
        );
        ret::SUCCESS
    }

    // ----- Hypercalls ------------------------------------------------------------------------

    fn hypercall(
        &mut self,
        cpu: usize,
        v: VcpuId,
        domain: DomainId,
        function: u64,
        args: [u64; 6],
    ) -> Result<[u64; 3], Status> {
        let call = Call::from_function_id(function).ok_or(Status::UnknownCall)?;
        crate::hypercall::dispatch(self, cpu, v, domain, call, args)
    }

    pub(crate) fn request_resched(&mut self, cpu: usize) {
        if cpu < MAX_CPUS {
            self.resched[cpu] = true;
        }
    }

    /// The vCPU on `cpu` yields: it goes behind every runnable vCPU of its priority.
    pub(crate) fn yield_cpu(&mut self, cpu: usize) {
        if let Some(v) = self.current(cpu) {
            self.run_seq += 1;
            if let Some(x) = self.vcpus[v.index()].as_mut() {
                x.sched.last_run = self.run_seq;
            }
        }
        self.request_resched(cpu);
    }

    /// Buffers console output of `domain`, printing each complete line with its name (see
    /// [`Kernel::flush_console`]); `\r` is dropped. Every byte also goes to the domain's
    /// console log (`console_read`).
    pub(crate) fn console_bytes(&mut self, domain: DomainId, bytes: &[u8]) {
        if let Some(d) = self.domains[domain.index()].as_mut() {
            for &b in bytes {
                d.log_console(b);
            }
        }
        for &b in bytes {
            match b {
                b'\n' => self.flush_console(domain),
                b'\r' => {}
                _ => {
                    let full = match self.domains[domain.index()].as_mut() {
                        Some(d) => d.console.push(b).is_err(),
                        None => return,
                    };
                    if full {
                        self.flush_console(domain);
                        if let Some(d) = self.domains[domain.index()].as_mut() {
                            let _ = d.console.push(b);
                        }
                    }
                }
            }
        }
    }

    /// Prints `domain`'s buffered console line as `[name] text`: plain text only (see
    /// [`crate::console::sanitize`]), paid from the domain's console budget (dropped, and
    /// counted, when it cannot pay).
    fn flush_console(&mut self, domain: DomainId) {
        let now = self.hal.now_ns();
        let Some(d) = self.domains[domain.index()].as_mut() else {
            return;
        };
        let mut line = heapless::Vec::<u8, 256>::new();
        let _ = line.push(b'[');
        let _ = line.extend_from_slice(d.name.as_bytes());
        let _ = line.extend_from_slice(b"] ");
        crate::console::sanitize(&d.console, &mut line);
        let _ = line.push(b'\n');
        d.console.clear();
        match d.console_budget.pay(now, line.len()) {
            Some(0) => {}
            Some(dropped) => {
                let mut note = heapless::String::<128>::new();
                let _ = writeln!(
                    note,
                    "[{}] ({dropped} bytes of console output dropped: over its budget)",
                    d.name
                );
                self.hal.console_write(note.as_bytes());
            }
            None => return,
        }
        self.hal.console_write(&line);
    }

    /// Prints a kernel line about something domain `about` did, paid from the console budget
    /// of the domain answerable for it (see [`Kernel::payer`]): a domain cannot flood the
    /// console through the kernel's log either.
    fn log_for(&mut self, about: DomainId, args: fmt::Arguments<'_>) {
        let payer = self.payer(about);
        self.log_paid_by(payer, args);
    }

    /// Prints a kernel line paid from `payer`'s console budget (unconditionally if it is
    /// gone).
    fn log_paid_by(&mut self, payer: DomainId, args: fmt::Arguments<'_>) {
        let mut line = heapless::String::<256>::new();
        let _ = line.write_str("mica: ");
        let _ = line.write_fmt(args);
        let _ = line.write_str("\n");
        let now = self.hal.now_ns();
        let Some(d) = self.domains[payer.index()].as_mut() else {
            self.hal.console_write(line.as_bytes());
            return;
        };
        match d.console_budget.pay(now, line.len()) {
            Some(0) => {}
            Some(dropped) => {
                let mut note = heapless::String::<128>::new();
                let _ = writeln!(
                    note,
                    "mica: ({dropped} bytes of log about domain {} dropped: over its budget)",
                    d.name
                );
                self.hal.console_write(note.as_bytes());
            }
            None => return,
        }
        self.hal.console_write(line.as_bytes());
    }

    /// The domain whose console budget pays for log lines about `id`: the domain that created
    /// it, if a domain did (so creating and destroying domains in a loop cannot flood the
    /// console), else `id` itself.
    fn payer(&self, id: DomainId) -> DomainId {
        match self.domain(id) {
            Some(d) if Some(d.original.space) != self.root => {
                let creator = DomainId(d.original.space.0);
                if self.domain(creator).is_some() {
                    creator
                } else {
                    id
                }
            }
            _ => id,
        }
    }

    /// Resolves a Domain-capability argument (or [`SELF_DOMAIN`]) of `caller` needing `rights`.
    pub(crate) fn domain_arg(
        &self,
        caller: DomainId,
        arg: u64,
        rights: Rights,
    ) -> Result<DomainId, Status> {
        if arg == SELF_DOMAIN {
            return Ok(caller);
        }
        let slot = slot_arg(arg)?;
        let info = self
            .caps
            .lookup(caller.space(), slot, ObjectType::Domain, rights)?;
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
    fn map_into(&mut self, id: DomainId, m: Mapping) -> Result<(), Status> {
        let d = self.domains[id.index()]
            .as_mut()
            .ok_or(Status::WrongState)?;
        if d.mappings.is_full() {
            return Err(Status::OutOfMemory);
        }
        if d.mappings.iter().any(|x| x.overlaps(m.ipa, m.pages)) {
            return Err(Status::SlotOccupied);
        }
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
            let _ = d.mappings.push(recorded);
        }
        self.caps.refund_space(id.space(), reserve, |_| {});
        self.settle_tables(id);
        mapped
    }

    /// Passes image device `dev` through to domain `id`: its window as a DeviceMemory
    /// capability mapped as device memory, its interrupt as a masked Irq capability.
    fn wire_device(&mut self, id: DomainId, dev: &sysimage::DeviceRecord) -> Result<(), Status> {
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
            if self.irqs.is_full() || self.irqs.iter().any(|l| l.intid == dev.interrupt) {
                return Err(Status::NoFreeSlot);
            }
            let slot = self.free_slot_in(space)?;
            let object = self
                .caps
                .create_object(space, slot, ObjectType::Irq, None)?;
            let _ = self.irqs.push(IrqLine {
                object,
                intid: dev.interrupt,
                route: IrqRoute::Unbound,
                active: false,
            });
            self.hal.irq_disable(dev.interrupt);
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
            for (i, b) in b"-irq".iter().enumerate() {
                if let Some(c) = name.get_mut(len + i) {
                    *c = *b;
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

    /// The line whose Irq object `object` is.
    fn irq_line(&self, object: mica_caps::ObjectRef) -> Option<usize> {
        self.irqs.iter().position(|l| l.object == object)
    }

    /// `irq_bind_event`, `irq_bind_virtual`, `irq_ack`, `irq_unbind` after decoding.
    pub(crate) fn irq_call(&mut self, caller: DomainId, irq: u16, op: IrqOp) -> Result<(), Status> {
        let info = self
            .caps
            .lookup(caller.space(), irq, ObjectType::Irq, Rights::RECEIVE)?;
        let i = self.irq_line(info.object).ok_or(Status::StaleCapability)?;
        let intid = self.irqs[i].intid;
        match op {
            IrqOp::BindEvent { endpoint } => {
                let ep = self.caps.lookup(
                    caller.space(),
                    endpoint,
                    ObjectType::EventChannel,
                    Rights::RECEIVE,
                )?;
                let id = self
                    .channels
                    .find(ep.object)
                    .ok_or(Status::StaleCapability)?;
                let binding = self
                    .channels
                    .get(id)
                    .and_then(|e| e.binding)
                    .ok_or(Status::WrongState)?;
                let cpu = self.vcpu_cpu(binding.domain, binding.vcpu).unwrap_or(0);
                self.irqs[i].route = IrqRoute::Event(id);
                self.hal.irq_enable(intid, cpu);
            }
            IrqOp::BindVirtual { vcpu } => {
                let cpu = self.vcpu_cpu(caller, vcpu).ok_or(Status::InvalidArgument)?;
                self.irqs[i].route = IrqRoute::Virtual {
                    domain: caller,
                    vcpu,
                };
                self.hal.irq_enable(intid, cpu);
            }
            IrqOp::Ack => {
                if !self.irqs[i].active {
                    return Err(Status::WrongState);
                }
                self.irqs[i].active = false;
                self.hal.irq_deactivate(intid);
            }
            IrqOp::Unbind => self.release_irq(i),
        }
        Ok(())
    }

    fn vcpu_cpu(&self, domain: DomainId, index: u16) -> Option<usize> {
        let v = *self.domain(domain)?.vcpus.get(index as usize)?;
        Some(self.vcpu(v)?.cpu)
    }

    /// Masks line `i`, deactivates it if it was left active, and unbinds it.
    fn release_irq(&mut self, i: usize) {
        let Some(line) = self.irqs.get_mut(i) else {
            return;
        };
        line.route = IrqRoute::Unbound;
        let (intid, active) = (line.intid, core::mem::take(&mut line.active));
        self.hal.irq_disable(intid);
        if active {
            self.hal.irq_deactivate(intid);
        }
    }

    /// A physical interrupt `intid` owned by a domain fired (the HAL acknowledged it).
    pub fn physical_interrupt(&mut self, intid: u32) -> IrqOutcome {
        let Some(i) = self.irqs.iter().position(|l| l.intid == intid) else {
            self.hal.irq_disable(intid);
            return IrqOutcome::Deactivate;
        };
        match self.irqs[i].route {
            IrqRoute::Unbound => {
                self.hal.irq_disable(intid);
                IrqOutcome::Deactivate
            }
            IrqRoute::Event(ep) => match self.channels.raise(ep) {
                Ok(delivery) => {
                    self.irqs[i].active = true;
                    if let Some(d) = delivery {
                        self.deliver(d);
                    }
                    IrqOutcome::LeaveActive
                }
                Err(_) => {
                    self.release_irq(i);
                    IrqOutcome::Deactivate
                }
            },
            IrqRoute::Virtual { domain, vcpu } => {
                let v = self
                    .domain(domain)
                    .and_then(|d| d.vcpus.get(vcpu as usize).copied());
                let injected = match (v, self.domains[domain.index()].as_mut()) {
                    (Some(_), Some(d)) => self.hal.inject_hardware_irq(&mut d.arch, vcpu, intid),
                    _ => false,
                };
                match v {
                    Some(v) if injected => {
                        self.interrupt_vcpu(v);
                        IrqOutcome::LeaveActive
                    }
                    _ => {
                        self.release_irq(i);
                        IrqOutcome::Deactivate
                    }
                }
            }
        }
    }

    /// Undoes what removed capabilities made possible, and ends what destroyed objects were:
    /// mappings made through a removed Memory capability go; a destroyed event channel
    /// closes, an Irq line is masked and forgotten, a Vcpu stops for good, and a Domain is
    /// destroyed like by `domain_destroy` (its vCPUs leave every CPU, then everything it had
    /// goes, the domains it created with it).
    pub(crate) fn apply_removals(&mut self, removals: &[Removal]) {
        for r in removals {
            match r {
                Removal::Capability { addr, .. } => {
                    for id in 0..SPACES {
                        let through: heapless::Vec<(u64, u64), { crate::domain::MAX_MAPPINGS }> =
                            match self.domains[id].as_ref() {
                                Some(d) => d
                                    .mappings
                                    .iter()
                                    .filter(|m| m.through == *addr)
                                    .map(|m| (m.ipa, m.pages))
                                    .collect(),
                                None => continue,
                            };
                        for (ipa, pages) in through {
                            self.unmap_one(DomainId(id as u16), ipa, pages);
                        }
                    }
                }
                Removal::ObjectDestroyed {
                    object,
                    object_type: ObjectType::EventChannel,
                } => {
                    self.channels.close(*object);
                }
                Removal::ObjectDestroyed {
                    object,
                    object_type: ObjectType::Irq,
                } => {
                    if let Some(i) = self.irq_line(*object) {
                        self.release_irq(i);
                        self.irqs.swap_remove(i);
                    }
                }
                Removal::ObjectDestroyed {
                    object_type: ObjectType::Vcpu | ObjectType::Domain,
                    ..
                } if cfg!(feature = "mutant-destroyed-objects-live-on") => {}
                Removal::ObjectDestroyed {
                    object,
                    object_type: ObjectType::Vcpu,
                } => {
                    if let Some(v) = self.vcpu_of_object(*object) {
                        self.retire_vcpu(v);
                    }
                }
                Removal::ObjectDestroyed {
                    object,
                    object_type: ObjectType::Domain,
                } => {
                    let found = self.domains().find(|d| d.object == *object).map(|d| d.id);
                    if let Some(id) = found {
                        self.destroy(id);
                    }
                }
                _ => {}
            }
        }
    }

    /// The vCPU whose Vcpu object is `object`.
    fn vcpu_of_object(&self, object: mica_caps::ObjectRef) -> Option<VcpuId> {
        self.vcpus
            .iter()
            .take(self.vcpu_end)
            .position(|x| x.as_ref().is_some_and(|x| x.object == object))
            .map(|i| VcpuId(i as u16))
    }

    /// vCPU `v`'s object is gone: it stops now (or as soon as it leaves its CPU) and never
    /// runs again.
    fn retire_vcpu(&mut self, v: VcpuId) {
        let Some(x) = self.vcpus[v.index()].as_mut() else {
            return;
        };
        x.retired = true;
        x.wake_pending = false;
        if x.state == VcpuState::Running {
            let cpu = x.cpu;
            self.request_resched(cpu);
            self.hal.kick(cpu);
        } else {
            x.state = VcpuState::Off;
        }
        self.publish_accounting();
    }

    /// Removes the recorded mapping of domain `id` that starts at `ipa` (`pages` long) from
    /// its stage 2, and refunds the table memory that frees.
    fn unmap_one(&mut self, id: DomainId, ipa: u64, pages: u64) {
        let Some(d) = self.domains[id.index()].as_mut() else {
            return;
        };
        let Some(i) = d.mappings.iter().position(|m| m.ipa == ipa) else {
            return;
        };
        let m = d.mappings.swap_remove(i);
        d.stage2.unmap(m.ipa, pages, &mut self.frames);
        if d.event_page.is_some_and(|p| m.overlaps(p, 1)) {
            d.event_page = None;
        }
        self.settle_tables(id);
    }

    /// Brings the quota charge of domain `id`'s stage-2 tables in line with what they hold
    /// now (after a map reserved the most they could grow, or an unmap freed some).
    fn settle_tables(&mut self, id: DomainId) {
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

    /// Performs an event-channel delivery: the port bit and its summary bit in the receiver's
    /// event page, then (unless masked) a wake-up and the upcall.
    pub(crate) fn deliver(&mut self, delivery: Delivery) {
        let Binding { domain, port, vcpu } = delivery.binding;
        let Some(d) = self.domains[domain.index()].as_mut() else {
            return;
        };
        if d.state == DomainState::Dying {
            return;
        }
        let Some((word, bit)) = mica_abi::event::port_position(port as u64) else {
            return;
        };
        let page = d.event_page;
        let targets = page.and_then(|page| {
            let pending =
                d.translate_writable(page + mica_abi::event::pending_offset(word) as u64)?;
            let summary = d.translate_writable(page + mica_abi::event::SUMMARY_OFFSET as u64)?;
            Some((pending, summary))
        });
        if let Some((pending, summary)) = targets {
            let ok = self.hal.atomic_or_phys(pending, bit)
                && self.hal.atomic_or_phys(summary, 1 << word);
            if !ok {
                return;
            }
        }
        if !delivery.wake {
            return;
        }
        let Some(d) = self.domains[domain.index()].as_mut() else {
            return;
        };
        let Some(&v) = d.vcpus.get(vcpu as usize) else {
            return;
        };
        let raised = self.hal.raise_upcall(&mut d.arch, vcpu);
        let running = self.vcpu(v).map(|x| (x.state == VcpuState::Running, x.cpu));
        self.wake(v);
        if let (true, Some((true, cpu))) = (raised, running) {
            self.hal.kick(cpu);
        }
    }

    /// Unmaps every whole mapping of `id` inside `[ipa, ipa + pages)`; returns pages unmapped.
    pub(crate) fn unmap_range(
        &mut self,
        id: DomainId,
        ipa: u64,
        pages: u64,
    ) -> Result<u64, Status> {
        let d = self.domains[id.index()]
            .as_mut()
            .ok_or(Status::WrongState)?;
        let end = ipa
            .checked_add(
                pages
                    .checked_mul(FRAME_SIZE)
                    .ok_or(Status::InvalidArgument)?,
            )
            .ok_or(Status::InvalidArgument)?;
        // Check: no mapping is cut in two.
        for m in d.mappings.iter() {
            if m.overlaps(ipa, pages) && (m.ipa < ipa || m.ipa + m.pages * FRAME_SIZE > end) {
                return Err(Status::InvalidArgument);
            }
        }
        let inside: heapless::Vec<(u64, u64), { crate::domain::MAX_MAPPINGS }> = d
            .mappings
            .iter()
            .filter(|m| m.overlaps(ipa, pages))
            .map(|m| (m.ipa, m.pages))
            .collect();
        let mut unmapped = 0;
        for (at, n) in inside {
            self.unmap_one(id, at, n);
            unmapped += n;
        }
        Ok(unmapped)
    }

    // ----- Lifecycle -------------------------------------------------------------------------

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
        let cpu: u64 = d
            .vcpus
            .iter()
            .filter_map(|v| self.vcpu(*v))
            .map(|v| v.sched.run_time)
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
        if d.state != DomainState::Running {
            return Err(Status::WrongState);
        }
        d.state = DomainState::Paused;
        self.kick_domain(id);
        Ok(())
    }

    /// Resumes a paused domain.
    pub(crate) fn unpause(&mut self, id: DomainId) -> Result<(), Status> {
        let d = self.domains[id.index()]
            .as_mut()
            .ok_or(Status::StaleCapability)?;
        if d.state != DomainState::Paused {
            return Err(Status::WrongState);
        }
        d.state = DomainState::Running;
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

    fn kick_domain(&mut self, id: DomainId) {
        let Some(d) = self.domain(id) else { return };
        let cpus: heapless::Vec<usize, 8> = d
            .vcpus
            .iter()
            .filter_map(|v| self.vcpu(*v))
            .filter(|x| x.state == VcpuState::Running)
            .map(|x| x.cpu)
            .collect();
        for cpu in cpus {
            self.resched[cpu] = true;
            self.hal.kick(cpu);
        }
    }

    /// Starts destroying a domain: its vCPUs stop; once none is on a CPU any more, its
    /// capabilities are revoked, mappings undone, memory scrubbed and freed.
    pub fn destroy(&mut self, id: DomainId) {
        let Some(d) = self.domains[id.index()].as_mut() else {
            return;
        };
        if d.state == DomainState::Dying {
            return;
        }
        d.state = DomainState::Dying;
        self.stop_vcpus(id);
        self.finish_if_quiescent(id);
    }

    /// Restarts a domain from its image: like destroy, but the domain keeps its identity and
    /// RAM, which is scrubbed and reloaded.
    fn restart(&mut self, id: DomainId) {
        let Some(d) = self.domains[id.index()].as_mut() else {
            return;
        };
        if d.image_index.is_none() {
            return self.destroy(id);
        }
        d.restart_pending = true;
        self.destroy(id);
    }

    fn stop_vcpus(&mut self, id: DomainId) {
        let Some(d) = self.domain(id) else { return };
        let vcpus = d.vcpus.clone();
        for v in vcpus {
            if let Some(x) = self.vcpus[v.index()].as_mut() {
                if x.state == VcpuState::Running {
                    let cpu = x.cpu;
                    self.resched[cpu] = true;
                    self.hal.kick(cpu);
                } else {
                    x.state = VcpuState::Off;
                }
            }
        }
    }

    fn finish_if_quiescent(&mut self, id: DomainId) {
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
        } else {
            self.teardown(id);
        }
    }

    fn finish_restart(&mut self, id: DomainId) {
        let Some(image) = self.image else { return };
        let Some(d) = self.domains[id.index()].as_mut() else {
            return;
        };
        d.restart_pending = false;
        d.state = DomainState::Running;
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

    /// Removes every trace of a domain whose vCPUs are all off the CPUs, in an order that
    /// leaves nothing of it reachable:
    ///
    /// 1. its Domain object goes with every capability to it, wherever they are, and its
    ///    capability space is emptied: each removal undoes what it made possible (mappings
    ///    through its capabilities in any domain, its event channels, its interrupt lines,
    ///    and the domains and vCPUs it created, which are destroyed in turn);
    /// 2. its vCPUs' objects, and the RAM the kernel gave it together with every capability
    ///    derived from that RAM (regions it shared are unmapped from its peers);
    /// 3. its stage 2 (TLBs invalidated first, then the tables freed and their charge
    ///    refunded), its vCPU records, event bindings and interrupt routes;
    /// 4. its RAM, scrubbed, then freed or handed to the image domain that follows it;
    /// 5. last, the kernel lets go of its id, which may then be given to a new domain.
    fn teardown(&mut self, id: DomainId) {
        let Some(root) = self.root else { return };
        let Some(d) = self.domains[id.index()].as_ref() else {
            return;
        };
        let name: heapless::String<32> = d.name.clone();
        let object = d.object;
        let image_index = d.image_index;
        let payer = self.payer(id);
        let vcpu_objects: heapless::Vec<mica_caps::ObjectRef, 8> = d
            .vcpus
            .iter()
            .filter_map(|v| self.vcpu(*v))
            .map(|v| v.object)
            .collect();
        let ram_objects: heapless::Vec<mica_caps::ObjectRef, { crate::domain::MAX_RAM_CHUNKS }> = d
            .ram_caps
            .iter()
            .filter_map(|slot| self.caps.identify(root, *slot).ok())
            .map(|c| c.object)
            .collect();
        // 1-2. Objects: each may already be gone (a domain ended by deleting its last
        //      Domain capability), which the capability system reports as stale.
        for o in core::iter::once(object)
            .chain(vcpu_objects)
            .chain(ram_objects)
        {
            let mut removals = Vec::new();
            let _ = self.caps.destroy_object(o, |r| removals.push(r));
            self.apply_removals(&removals);
        }
        let Some(mut d) = self.domains[id.index()].take() else {
            return;
        };
        // 3. Whatever is still mapped (through capabilities of other domains) goes with the
        //    tables, then the records that name the domain.
        d.stage2.release(&mut self.frames);
        self.caps.refund_space(id.space(), d.table_bytes, |_| {});
        for v in d.vcpus.iter() {
            self.vcpus[v.index()] = None;
        }
        self.channels.unbind_domain(id);
        let routed: heapless::Vec<usize, MAX_IRQS> = self
            .irqs
            .iter()
            .enumerate()
            .filter(|(_, l)| matches!(l.route, IrqRoute::Virtual { domain, .. } if domain == id))
            .map(|(i, _)| i)
            .collect();
        for i in routed {
            self.release_irq(i);
        }
        // 4. Memory: scrub, then hand over or free.
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
        // 5. The id is free for a new domain only now.
        self.caps.let_go_of_space(id.space(), |_| {});
        // 6. Whoever waited for this domain starts now.
        if let Some((next, _)) = successor {
            let ram = self.handoff.take().map(|(_, ram)| ram);
            self.start_from_image(next, ram);
        }
        self.publish_accounting();
        self.notify_policy();
        // 7. The last domain gone: say whether every frame came back.
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
    /// (the domains it built ran in it, and went with it), is scrubbed and freed.
    fn reclaim_control_pool(&mut self) {
        let (Some(root), Some((pool, slot))) = (self.root, self.control_pool.take()) else {
            return;
        };
        if let Ok(info) = self.caps.identify(root, slot) {
            let mut removals = Vec::new();
            let _ = self.caps.destroy_object(info.object, |r| removals.push(r));
            self.apply_removals(&removals);
        }
        self.hal.zero_phys(pool);
        self.frames.free(pool);
    }

    /// The image domain that starts after domain record `index` is destroyed, and whether it
    /// takes over its memory.
    fn successor_of(&self, index: usize) -> Option<(usize, bool)> {
        let image = self.image?;
        image.domains().iter().enumerate().find_map(|(i, r)| {
            (r.start_after as usize == index + 1)
                .then_some((i, r.memory_from as usize == index + 1))
        })
    }

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
        let arch = self
            .hal
            .new_domain_arch(crate::domain::MAX_VCPUS_PER_DOMAIN as u16);
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
            context: self.hal.new_context(),
            wake_pending: false,
            runs: 0,
            sched: SchedState::new(SchedParams::default_on(cpu), 0),
            request: sysimage::SchedRequest::default(),
            retired: false,
        });
        if let Some(d) = self.domains[target.index()].as_mut() {
            let _ = d.vcpus.push(vid);
        }
        Ok(())
    }

    /// The physical CPUs `caller` may place vCPUs on (one bit per CPU): every online CPU if
    /// it holds scheduling authority (a SchedControl capability with CONTROL), else only the
    /// CPUs its own vCPUs may run on, so a domain cannot escape the pinning its manifest or
    /// its policy gave it by creating vCPUs.
    pub fn placement(&self, caller: DomainId) -> u64 {
        let cpus = self.hal.cpus().clamp(1, MAX_CPUS);
        let online = if cpus >= 64 {
            u64::MAX
        } else {
            (1u64 << cpus) - 1
        };
        if self.holds(caller, ObjectType::SchedControl, Rights::CONTROL) {
            return online;
        }
        let own = self.domain(caller).map_or(0, |d| {
            d.vcpus
                .iter()
                .filter_map(|v| self.vcpu(*v))
                .filter(|v| !v.retired)
                .fold(0, |mask, v| mask | v.sched.params.affinity | 1 << v.cpu)
        });
        own & online
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
            Share::Vcpus | Share::Endpoints => {
                let wanted = match share {
                    Share::Vcpus => ObjectType::Vcpu,
                    _ => ObjectType::EventChannel,
                };
                let held = self
                    .caps
                    .objects()
                    .filter(|o| o.object_type == wanted && mine(o.charged_to))
                    .count();
                let capacity = match share {
                    Share::Vcpus => MAX_VCPUS,
                    _ => MAX_ENDPOINTS,
                };
                (held, capacity)
            }
        };
        let needed = if share == Share::Endpoints { 2 } else { 1 };
        if held + needed > capacity / 4 {
            return Err(Status::QuotaExceeded);
        }
        Ok(())
    }

    /// Whether capability space `space` is `of` or was created by it, directly or not.
    fn in_subtree(&self, space: SpaceId, of: SpaceId) -> bool {
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
    fn holds(&self, domain: DomainId, object_type: ObjectType, rights: Rights) -> bool {
        let slots = self.caps.space(domain.space()).map_or(0, |s| s.slots);
        (0..slots).any(|slot| {
            self.caps
                .lookup(domain.space(), slot, object_type, rights)
                .is_ok()
        })
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
        if d.translate(entry).is_none() {
            return Err(Status::InvalidArgument);
        }
        if let Some(x) = self.vcpus[v.index()].as_mut() {
            x.context.reset(entry, [arg, 0, 0, 0], index, true);
        }
        self.make_runnable(v);
        Ok(())
    }
}

/// A fixed kernel table a domain may take only a share of ([`Kernel::check_fair_share`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Share {
    /// Domain ids (capability spaces).
    Domains,
    /// vCPU records.
    Vcpus,
    /// Event-channel endpoints.
    Endpoints,
}

/// The name a domain created by `domain_create` has until its creator names it; names with
/// this prefix cannot be given by `domain_set_name`.
pub const UNNAMED_PREFIX: &str = "unnamed-";

/// An operation on an Irq capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqOp {
    /// Deliver as events on this endpoint slot.
    BindEvent {
        /// Endpoint slot.
        endpoint: u16,
    },
    /// Inject into the caller's virtual GIC for this vCPU.
    BindVirtual {
        /// vCPU index.
        vcpu: u16,
    },
    /// Deactivate after an event delivery.
    Ack,
    /// Mask and unbind.
    Unbind,
}

/// Decodes a capability-slot argument.
pub(crate) fn slot_arg(arg: u64) -> Result<u16, Status> {
    u16::try_from(arg).map_err(|_| Status::InvalidArgument)
}

fn name_copy(s: &str) -> heapless::String<32> {
    let mut n = heapless::String::new();
    for c in s.chars() {
        if n.push(c).is_err() {
            break;
        }
    }
    n
}

/// " on node N" when the machine has more than one node.
fn numa_note(nodes: usize, node: u8) -> heapless::String<16> {
    let mut s = heapless::String::new();
    if nodes > 1 {
        let _ = core::fmt::Write::write_fmt(&mut s, format_args!(" on node {node}"));
    }
    s
}

fn earliest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

/// The CPU vCPU 0 of image domain `record` (domain `id`) runs on among `cpus` CPUs.
fn first_vcpu_cpu(record: &DomainRecord, id: DomainId, cpus: usize) -> usize {
    let cpus = cpus.max(1);
    let wanted = record.affinity[0] as usize;
    if wanted < cpus {
        wanted
    } else {
        id.index() % cpus
    }
}

/// The scheduling parameters a vCPU of image domain `record` starts with on `cpu`.
fn params_for(record: &DomainRecord, cpu: usize) -> SchedParams {
    let mut p = SchedParams::default_on(cpu);
    if record.priority != 0 {
        p.priority = record.priority.min(255) as u8;
    }
    p
}

fn prev_power_of_two(n: u64) -> u64 {
    if n == 0 {
        0
    } else {
        1 << (63 - n.leading_zeros())
    }
}
