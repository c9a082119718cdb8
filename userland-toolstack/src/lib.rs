//! The Mica host toolstack: build, run and test Mica systems from a development machine.
//!
//! The `mica` binary is a thin command-line shell over these modules so that each piece
//! (image conversion, system manifests and the system image builder, the QEMU runner,
//! device-tree edits, scenario files and transcript judging, benchmark collection, the
//! comparison with Xen and the trusted-code count) is a plain function that unit tests can
//! call without QEMU. Nothing here needs `unsafe`.
#![forbid(unsafe_code)]

pub mod boot;
pub mod build;
pub mod ctl;
pub mod debian;
pub mod json;
pub mod manifest;
pub mod measure;
pub mod smoke;

// The modules under their old, flat names (what `main.rs` and the tests use).
pub use boot::{bootloader, qemu, serial};
pub use build::{builder, dtb, image, sysimage};
pub use measure::{bench, bench_xen, tcb};
pub use smoke::{doc_transcript, judge, scenario, steps, transcript};
