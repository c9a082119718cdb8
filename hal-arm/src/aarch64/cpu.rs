//! Per-CPU identity and state: logical index, hardware id, online flag, tick count.
//!
//! A CPU's logical index lives in TPIDR_EL2 (set by the entry code) and indexes the
//! static [`CPUS`] table; the boot CPU is index 0, the others follow device-tree order.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Most CPUs Mica brings up (the device tree may list more; they stay off).
pub const MAX_CPUS: usize = mica_kernel::platform::MAX_CPUS;
/// Bytes of EL2 stack per CPU.
pub const STACK_SIZE: usize = 32 * 1024;

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

/// This CPU's logical index.
#[inline]
pub fn current() -> usize {
    (super::sysreg::read_sysreg!("tpidr_el2") as usize).min(MAX_CPUS - 1)
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
