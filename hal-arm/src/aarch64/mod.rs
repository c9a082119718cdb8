//! The aarch64 EL2 hardware: everything that touches a register or a device.

pub mod boot;
pub mod console;
pub mod context;
pub mod cpu;
pub mod el2;
mod entry;
pub mod gic;
pub mod hal;
pub mod irq;
pub mod mmu;
pub mod pl011;
pub mod psci;
pub mod run;
pub mod stage2;
mod state;
pub mod sysreg;
pub mod timer;
pub mod trap;
