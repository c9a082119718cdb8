//! The runtime every Mica domain is built on: entry, console, hypercalls, PSCI, heap, panics.
//!
//! A domain names its `fn main(info: BootInfo) -> !` with [`entry!`]; the runtime's `_start`
//! (in `entry`) enables FP/SIMD, installs exception vectors that report and end the domain,
//! zeroes BSS, switches to a static stack, initialises the heap and calls `main` with what the
//! kernel passed in x0-x2 (docs/domains.md). [`println!`] buffers a line and sends it with the
//! `console_write` hypercall in chunks of at most 40 bytes. [`hypercall`] has one typed wrapper
//! per row of `mica_abi::hypercall::TABLE`, each built from a pure encoder that host tests
//! check against the table; [`psci`] speaks PSCI over `hvc` or `smc`; [`smp`] starts further
//! vCPUs on their own stacks. [`bootinfo()`] reads the boot-info page (named capabilities and
//! shared regions); [`irq`] takes IRQs to a handler and [`gic`] drives the virtual GICv3
//! and timer; [`events`] registers the event page, binds, sends and waits; [`ring`] is
//! the single-producer/single-consumer ring over shared memory (one algorithm, run by domains
//! and checked by `mica-verify`) and [`channel`] pairs two rings with an event endpoint.
//!
//! Only the parts that must run on the hardware are compiled for `aarch64-unknown-none`
//! (`cfg(bare_metal)` below stands for `all(target_arch = "aarch64", target_os = "none")`);
//! everything else builds and is tested on the host, where the conduit is a recording mock
//! under `cfg(test)`. This is the only crate under `services/` allowed `unsafe`: every block
//! says why it is sound.
#![cfg_attr(not(test), no_std)]

#[cfg(all(target_arch = "aarch64", target_os = "none", feature = "virtio"))]
extern crate alloc;

pub mod bootinfo;
mod bulk;
pub mod channel;
pub mod conduit;
pub mod config;
pub mod console;
pub mod entry;
pub mod events;
pub mod hypercall;
// Used by `virtio` (bare metal); built everywhere so that its tests run on the host.
#[cfg_attr(
    not(all(target_arch = "aarch64", target_os = "none", feature = "virtio")),
    allow(dead_code)
)]
mod pages;
pub mod psci;
pub mod ring;

#[cfg(kani)]
mod proofs;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod device;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod exception;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod gic;
#[cfg(all(target_arch = "aarch64", target_os = "none", feature = "heap"))]
pub mod heap;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod irq;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod memory;
#[cfg(all(target_arch = "aarch64", target_os = "none", feature = "panic-handler"))]
mod panic;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod smp;
#[cfg(all(target_arch = "aarch64", target_os = "none", feature = "virtio"))]
pub mod virtio;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub use bootinfo::bootinfo;
pub use entry::BootInfo;
pub use hypercall::{FrameRange, Port, Slot};
pub use mica_abi::{ObjectType, Rights, Status};

/// Ends the calling domain (PSCI SYSTEM_OFF over `hvc`; under Mica it stops only this
/// domain). Should the hypervisor return anyway, the vCPU parks itself.
#[cfg(target_os = "none")]
pub fn exit() -> ! {
    let _ = psci::system_off();
    loop {
        let _ = psci::cpu_off();
        core::hint::spin_loop();
    }
}
