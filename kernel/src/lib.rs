//! The arch-neutral core of the Mica microhypervisor.
//!
//! Everything here builds and is tested on the host; the HAL crates (`hal-arm`,
//! `hal-x86`) only touch hardware and call in. The principles the code holds to:
//!
//! 1. **Three kinds of authority.** Memory, vCPUs and event channels (plus device MMIO
//!    and interrupts for drivers) are the only things the kernel offers, each as a
//!    capability. Policy (scheduling choices, I/O, the toolstack agent) lives in domains.
//! 2. **Decode, check, then perform.** A hypercall is decoded into a typed argument
//!    struct and checked against capabilities with no side effect before anything changes.
//! 3. **Nothing a domain passes in is trusted.** No input makes the kernel panic; every
//!    failure is a [`mica_abi::Status`].
//! 4. **Boot input is checked, not assumed.** Firmware tables are parsed into plain values
//!    ([`platform::Platform`]) and a missing piece is reported by name.
//! 5. **Fixed capacity at boot.** Before the heap exists, data structures have fixed
//!    capacity and report overflow as an error.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod bootargs;
pub mod console;
pub mod domain;
pub mod effect;
pub mod evtchn;
pub mod frames;
pub mod hal;
pub mod ids;
pub mod irq;
pub mod kernel;
pub mod mapping;
pub mod memmap;
pub mod platform;
pub mod psci;
pub mod sched;
pub mod uart;
pub mod vcpu;
pub mod virtio;

#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;
