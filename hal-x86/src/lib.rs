//! The x86_64 (AMD SVM) hardware layer of Mica: for now only the COM1 console.
//!
//! x86_64 is Mica's second architecture (DESIGN.md §1). What exists today is the 16550
//! serial console the x86 binary reports through; PVH entry, long mode, the LAPIC and the
//! SVM world switch are future work, tracked in `docs/architecture.md`. The binary is
//! built and linted in CI so the crate graph and the HAL boundary stay honest for both
//! architectures, but it is not booted.
#![cfg_attr(not(test), no_std)]

#[cfg(all(target_arch = "x86_64", target_os = "none"))]
pub mod serial;

/// The I/O port of the first legacy serial port (COM1).
pub const COM1: u16 = 0x3F8;
