//! The bootable Mica binaries, `mica-aarch64` and `mica-x86_64`.
//!
//! The library part is empty: it exists so that `cargo test` and `cargo clippy` on the
//! host have something to check in this package while the binaries themselves are only
//! built for their bare-metal targets (see the Makefile).
#![no_std]
#![forbid(unsafe_code)]
