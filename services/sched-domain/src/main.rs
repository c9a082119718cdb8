//! `sched`: the scheduling policy domain (docs/scheduling.md).
//!
//! Runs [`mica_service_sched::run`] with no fault injection.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use mica_rt::BootInfo;

fn main(info: BootInfo) -> ! {
    mica_service_sched::run(info, mica_service_sched::Options::default())
}

mica_rt::entry!(main);
