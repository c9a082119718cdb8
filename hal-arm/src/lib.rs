//! The aarch64 EL2 hardware layer of Mica.
//!
//! Two halves. The pure half ([`pagetable`], [`esr`], [`mmio`], [`vgic`], [`traps`]) is
//! descriptor arithmetic, decoding and emulation that builds and is unit-tested on the host,
//! and may not use `unsafe` (`#![deny(unsafe_code)]`). The hardware half (`aarch64`,
//! compiled only for aarch64) is the EL2 entry code, exception vectors, stage-1 MMU,
//! GICv3, generic timer, PSCI, PL011 and SMP bring-up; it is tested by booting it
//! (`make smoke`). This is the one crate where `cfg(target_arch = "aarch64")` chooses
//! code, and every `unsafe` block in it carries a `// SAFETY:` comment.
#![cfg_attr(not(test), no_std)]
// The pure half has no business with `unsafe`: the compiler holds it to that. Only the
// hardware half (`aarch64`) may use it, each block with a `// SAFETY:` comment.
#![deny(unsafe_code)]

pub mod esr;
pub mod mmio;
pub mod pagetable;
pub mod traps;
pub mod vgic;

#[cfg(kani)]
mod proofs;

#[cfg(target_arch = "aarch64")]
extern crate alloc;

#[cfg(target_arch = "aarch64")]
#[allow(unsafe_code)]
pub mod aarch64;
