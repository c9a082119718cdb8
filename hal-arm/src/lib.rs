//! The aarch64 EL2 hardware layer of Mica.
//!
//! Two halves. The pure half ([`pagetable`], [`esr`]) is descriptor arithmetic and
//! decoding that builds and is unit-tested on the host. The hardware half (`aarch64`,
//! compiled only for aarch64) is the EL2 entry code, exception vectors, stage-1 MMU,
//! GICv3, generic timer, PSCI, PL011 and SMP bring-up; it is tested by booting it
//! (`make smoke`). This is the one crate where `cfg(target_arch = "aarch64")` chooses
//! code, and every `unsafe` block in it carries a `// SAFETY:` comment.
#![cfg_attr(not(test), no_std)]

pub mod esr;
pub mod mmio;
pub mod pagetable;
pub mod traps;
pub mod vgic;

#[cfg(target_arch = "aarch64")]
extern crate alloc;

#[cfg(target_arch = "aarch64")]
pub mod aarch64;
