//! `worker`: the load of the scheduler scenarios (`tests/smoke/sched-*.toml`).
//!
//! `arg` 0: spins forever, never yielding, and prints a progress line every 2^28 iterations
//! (so a transcript shows it kept running; the policy domain's judge measures its share
//! exactly from the accounting page). `arg` 1: idles, blocked in WFI for good (nothing is
//! bound to wake it), so it wants no CPU at all. Built without the heap.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use mica_rt::{events, println, BootInfo};

/// log2 of the iterations between progress lines.
const PROGRESS_LOG2: u32 = 28;

fn main(info: BootInfo) -> ! {
    if info.arg == 1 {
        println!("worker: idling in WFI");
        loop {
            events::wfi();
        }
    }
    println!("worker: spinning");
    let mask = (1u64 << PROGRESS_LOG2) - 1;
    let mut counter: u64 = 0;
    loop {
        counter = core::hint::black_box(counter.wrapping_add(1));
        if counter & mask == 0 {
            println!(
                "worker: {} x 2^{PROGRESS_LOG2} iterations",
                counter >> PROGRESS_LOG2
            );
        }
    }
}

mica_rt::entry!(main);
