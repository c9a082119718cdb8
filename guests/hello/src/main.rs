//! `hello`: the smallest Mica guest — it says who it is, counts, and ends its domain.
//!
//! Counts to the manifest's `arg` (5 when 0), yielding after each line so that two `hello`
//! domains sharing a CPU interleave (the `two-guests` smoke scenario).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use mica_rt::{hypercall, println, BootInfo};

fn main(info: BootInfo) -> ! {
    let count = info.arg_or(5);
    match hypercall::whoami() {
        Ok(me) => println!(
            "hello: started (domain {}, vcpu {})",
            me.domain_id, me.vcpu_index
        ),
        Err(status) => println!("hello: started (whoami refused: {status:?})"),
    }
    for i in 1..=count {
        println!("hello: count {i}");
        let _ = hypercall::yield_now();
    }
    println!("hello: done");
    mica_rt::exit()
}

mica_rt::entry!(main);
