//! The runtime every Mica domain is built on: entry, stack and the hypercall conduit.
//!
//! A domain's `_start` (in `entry`) sets up a stack and calls the domain's
//! `mica_main`; [`exit`] ends the domain. Hypercalls use the SMCCC conduit of DESIGN.md
//! §3 (`hvc #0`, function id in x0, status back in x0). The typed wrappers for the
//! kernel's calls, console, heap and panic reporting arrive with the hypercall table
//! (issue 4); what is here is what every later piece stands on.
#![cfg_attr(not(test), no_std)]

pub mod hypercall;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod entry;

/// PSCI SYSTEM_OFF: under Mica it ends the calling domain (DESIGN.md §3).
pub const PSCI_SYSTEM_OFF: u64 = 0x8400_0008;

/// Ends the calling domain.
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub fn exit() -> ! {
    let _ = hypercall::call(PSCI_SYSTEM_OFF, [0; 6]);
    loop {
        core::hint::spin_loop();
    }
}
