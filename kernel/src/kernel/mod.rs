//! The kernel: every object, the capability system, the frame allocator and the run queues,
//! behind one lock.
//!
//! One big lock (as seL4 does) keeps the reasoning simple: a physical CPU takes it when its
//! guest exits to the kernel and drops it before re-entering a guest, so guests run in
//! parallel while kernel work is serialised and short. The HAL calls [`Kernel::pick`] to learn
//! what to run, [`Kernel::handle_exit`] when a guest exits, and [`Kernel::tick`] on its timer.

use core::fmt::{self, Write};

use mica_abi::args::Slot;
use mica_abi::hypercall::Call;
use mica_abi::layout::DomainLayout;
use mica_abi::sysimage::{self, DomainRecord, SystemImage};
use mica_abi::{ObjectType, Rights, Status};
use mica_caps::{CapAddr, CapSystem, FrameRange, Removal, SpaceId};

use crate::domain::{Domain, DomainId, DomainState, Mapping};
use crate::effect::Effect;
use crate::evtchn::{Binding, Channels, Delivery};
use crate::frames::{Frames, FRAME_SIZE};
use crate::hal::{Hal, Stage2, VcpuContext};
use crate::irq::{IrqLines, IrqOutcome, IrqRoute, LineAction, Occurrence};
use crate::memmap::PhysRange;
use crate::psci;
use crate::sched::{self, Candidate, SchedParams, SchedState};
use crate::vcpu::{Kick, Left, Vcpu, VcpuId, VcpuState};

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
    /// Whether console and log lines carry the time since the machine started
    /// (`mica.console_timestamps=on`).
    pub console_timestamps: bool,
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
    irqs: IrqLines,
    current: [Option<VcpuId>; MAX_CPUS],
    /// The CPU must choose again: its vCPU's turn is over, it blocked or yielded, its
    /// parameters or its domain's state changed.
    resched: [bool; MAX_CPUS],
    /// Something [`Kernel::pick`] weighs may have changed on the CPU since it last looked
    /// (a vCPU there became runnable, the CPU was kicked): the next pick looks at every
    /// candidate; until then the running vCPU simply goes on.
    stirred: [bool; MAX_CPUS],
    image: Option<SystemImage<'static>>,
    /// Scrubbed RAM of a destroyed domain waiting for the domain that takes it over.
    handoff: Option<(
        usize,
        heapless::Vec<PhysRange, { crate::domain::MAX_RAM_CHUNKS }>,
    )>,
    /// Every event-channel endpoint.
    pub channels: Channels<MAX_ENDPOINTS>,
    /// Channel, share and virtio records of the image already set up (bit i = record i).
    wired: (u64, u64, u64),
    /// Free frame memory before the first domain was created.
    boot_free: u64,
    /// Effects waiting to be applied ([`Kernel::apply`]).
    effects: alloc::collections::VecDeque<Effect>,
    /// Whether [`Kernel::apply`] is applying them (effects that arise meanwhile only queue).
    applying: bool,
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

mod boot_image;
mod capabilities;
mod creation;
mod events;
mod execute;
mod exits;
mod grants;
mod interrupts;
mod invoke;
mod lifecycle;
mod memory;
mod output;
mod schedule;
mod virtio;

impl<H: Hal> Kernel<H> {
    /// An empty kernel (no domains, no memory). `const` so it can live in a static.
    pub const fn new(hal: H) -> Self {
        Kernel {
            hal,
            console_timestamps: false,
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
            irqs: IrqLines::new(),
            current: [None; MAX_CPUS],
            resched: [false; MAX_CPUS],
            stirred: [false; MAX_CPUS],
            image: None,
            handoff: None,
            channels: Channels::new(),
            wired: (0, 0, 0),
            boot_free: 0,
            effects: alloc::collections::VecDeque::new(),
            applying: false,
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

    fn free_slot_in(&self, space: SpaceId) -> Result<u16, Status> {
        let slots = self.caps.space(space).map_or(0, |s| s.slots);
        (0..slots)
            .find(|s| self.caps.capability(CapAddr::new(space, *s)).is_none())
            .ok_or(Status::NoFreeSlot)
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

    /// Copies `bytes` into domain `id`'s memory at guest-physical `ipa`, page by page.
    fn copy_to_guest(&mut self, id: DomainId, ipa: u64, bytes: &[u8]) -> Result<(), Status> {
        let d = self.domain(id).ok_or(Status::WrongState)?;
        let mut done = 0usize;
        while done < bytes.len() {
            let at = ipa + done as u64;
            let pa = d.mappings.translate(at).ok_or(Status::OutOfRange)?;
            let in_page = (FRAME_SIZE - (at % FRAME_SIZE)) as usize;
            let n = in_page.min(bytes.len() - done);
            self.hal.write_phys(pa, &bytes[done..done + n]);
            done += n;
        }
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

pub(crate) fn name_copy(s: &str) -> heapless::String<32> {
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
