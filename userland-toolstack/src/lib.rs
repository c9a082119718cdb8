//! The Mica host toolstack: build, run and test Mica systems from a development machine.
//!
//! The `mica` binary is a thin command-line shell over these modules so that each piece
//! (image conversion, system manifests and the system image builder, the QEMU runner,
//! device-tree edits, scenario files and transcript judging, benchmark collection, the
//! comparison with Xen and the trusted-code count) is a plain function that unit tests can
//! call without QEMU. Nothing here needs `unsafe`.
#![forbid(unsafe_code)]

pub mod bench;
pub mod bench_xen;
pub mod bootloader;
pub mod builder;
pub mod ctl;
pub mod doc_transcript;
pub mod dtb;
pub mod image;
pub mod json;
pub mod judge;
pub mod manifest;
pub mod qemu;
pub mod scenario;
pub mod serial;
pub mod smoke;
pub mod steps;
pub mod sysimage;
pub mod tcb;
pub mod transcript;
