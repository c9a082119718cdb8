//! The control domain's logic that needs no hardware: the server side of the `mica ctl`
//! protocol (framing, resynchronisation, request decoding, replies), the allocator of the
//! memory pool domains are created from, the boot stub of a created domain, and whether the
//! console's interrupt can be trusted.
//!
//! `main.rs` is the domain: it drives the virtio console, makes the hypercalls and keeps the
//! table of domains; everything here is plain data in, data out, so `cargo test -p
//! mica-service-ctl` checks it on the host (STYLE.md §1).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod boot;
pub mod pool;
pub mod protocol;
pub mod report;
pub mod transport;
