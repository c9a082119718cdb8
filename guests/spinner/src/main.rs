//! `spinner`: loops forever without ever yielding, to show that the kernel's preemptive
//! scheduler keeps other domains running next to it.
//!
//! Every `2^arg` iterations (`2^30` when `arg` is 0: about every 2 s under QEMU TCG) it
//! prints a progress line, so a transcript shows it was still being scheduled. Built
//! without the heap.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use mica_rt::{println, BootInfo};

/// log2 of the iterations between progress lines when the manifest gives none.
const DEFAULT_PERIOD_LOG2: u64 = 30;

fn main(info: BootInfo) -> ! {
    let period_log2 = info.arg_or(DEFAULT_PERIOD_LOG2).min(63);
    let mask = (1u64 << period_log2) - 1;
    println!("spinner: started");
    let mut counter: u64 = 0;
    let mut reports: u64 = 0;
    loop {
        counter = core::hint::black_box(counter.wrapping_add(1));
        if counter & mask == 0 {
            reports += 1;
            println!("spinner: still spinning ({reports} x 2^{period_log2} iterations)");
        }
    }
}

mica_rt::entry!(main);
