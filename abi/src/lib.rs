//! The Mica ABI: every number, status, rights bit and shared layout that crosses a boundary.
//!
//! The kernel, the service domains, the guests' runtime and the host toolstack all import
//! this crate, so the two sides of every interface are compiled from one definition and
//! cannot drift (the lesson of Hubris' `sys/abi` and NOVA's single syscall table).
//! Nothing in here has behaviour beyond encoding, decoding and converting units (`time`);
//! nothing needs `unsafe`.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod args;
pub mod blkio;
pub mod bootinfo;
// Every hypercall, defined once; `hypercall` and `args` re-export what it generates.
mod calls;
pub mod config;
pub mod ctl;
pub mod event;
pub mod frames;
pub mod hypercall;
pub mod layout;
pub mod object;
pub mod psci;
pub mod ring;
pub mod sched;
pub mod status;
pub mod sysimage;
pub mod time;
pub mod virtio;

#[cfg(kani)]
mod proofs;

pub use frames::FrameRange;
pub use object::{ObjectType, Rights};
pub use status::{Status, SUCCESS};

/// The release this ABI belongs to, as printed in the kernel banner.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
