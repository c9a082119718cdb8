//! Per-CPU identity and state: logical index, hardware id, online flag, tick count.
//!
//! A CPU's logical index lives in TPIDR_EL2 (set by the entry code) and indexes the
//! static [`CPUS`] table; the boot CPU is index 0, the others follow device-tree order.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Most CPUs Mica brings up (the device tree may list more; they stay off).
pub const MAX_CPUS: usize = mica_kernel::platform::MAX_CPUS;
/// Bytes of EL2 stack per CPU.
pub const STACK_SIZE: usize = 128 * 1024;

/// What is known about one CPU.
pub struct PerCpu {
    /// MPIDR affinity fields.
    pub hw_id: AtomicU64,
    /// The CPU has run its Rust entry.
    pub online: AtomicBool,
    /// EL2 timer ticks taken.
    pub ticks: AtomicU64,
}

impl PerCpu {
    const fn new() -> Self {
        PerCpu {
            hw_id: AtomicU64::new(u64::MAX),
            online: AtomicBool::new(false),
            ticks: AtomicU64::new(0),
        }
    }
}

/// The per-CPU table.
pub static CPUS: [PerCpu; MAX_CPUS] = [const { PerCpu::new() }; MAX_CPUS];

/// The block TPIDR_EL2 points at on each CPU; the world switch reads `guest` (offset 8).
#[repr(C)]
pub struct CpuLocal {
    /// The CPU's logical index.
    pub index: AtomicU64,
    /// The context of the vCPU this CPU runs (written by the world switch).
    pub guest: AtomicU64,
}

const fn locals() -> [CpuLocal; MAX_CPUS] {
    let mut l = [const {
        CpuLocal {
            index: AtomicU64::new(0),
            guest: AtomicU64::new(0),
        }
    }; MAX_CPUS];
    let mut i = 0;
    while i < MAX_CPUS {
        l[i] = CpuLocal {
            index: AtomicU64::new(i as u64),
            guest: AtomicU64::new(0),
        };
        i += 1;
    }
    l
}

/// Every CPU's local block (the entry code points TPIDR_EL2 at entry `index`).
#[no_mangle]
pub static MICA_CPU_LOCALS: [CpuLocal; MAX_CPUS] = locals();

/// This CPU's logical index.
#[inline]
pub fn current() -> usize {
    let tpidr = super::sysreg::read_sysreg!("tpidr_el2");
    let base = MICA_CPU_LOCALS.as_ptr() as u64;
    let offset = tpidr.saturating_sub(base) as usize;
    (offset / core::mem::size_of::<CpuLocal>()).min(MAX_CPUS - 1)
}

/// How many CPUs are online.
pub fn online_count() -> usize {
    CPUS.iter()
        .filter(|c| c.online.load(Ordering::Acquire))
        .count()
}

/// Stops this CPU for good: interrupts masked, waiting for an event that is never acted on.
pub fn halt() -> ! {
    super::sysreg::mask_interrupts();
    loop {
        super::sysreg::wfi();
    }
}
