//! `sched-faulty`: the policy domain, built to fault on purpose after its first judged
//! window, for the `sched-policy-crash` smoke scenario: it writes to the read-only
//! accounting page, the kernel stops and destroys it, and the domain the manifest starts
//! after it takes over.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use mica_rt::BootInfo;

fn main(info: BootInfo) -> ! {
    let options = mica_service_sched::Options {
        fault_after_windows: Some(1),
    };
    mica_service_sched::run(info, options)
}

mica_rt::entry!(main);
