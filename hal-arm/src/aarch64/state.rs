//! What boot learned and the CPUs and interrupt handlers read afterwards: written once by the
//! boot CPU (`boot`), read by run-time interrupt handling (`irq`).

use core::sync::atomic::AtomicU64;

use mica_kernel::bootargs::BootArgs;
use mica_kernel::platform::Platform;

/// What boot learned, for the CPUs and interrupt handlers that run afterwards.
pub struct BootState {
    /// The machine, from the device tree.
    pub platform: Platform<'static>,
    /// The boot arguments.
    pub args: BootArgs<'static>,
    /// INTID of the EL2 physical timer (the hypervisor's tick).
    pub tick_intid: u32,
    /// INTID of the guests' virtual timer.
    pub vtimer_intid: u32,
}

pub static STATE: spin::Once<BootState> = spin::Once::new();
/// Counter value when every online CPU had taken a tick (0 = not yet).
pub static ALL_TICKING_AT: AtomicU64 = AtomicU64::new(0);
/// Counter value when the boot CPU entered Rust.
pub static BOOT_COUNTER: AtomicU64 = AtomicU64::new(0);
