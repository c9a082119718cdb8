//! `peek`: reads the window `sharer` lends it until the window is revoked.
//!
//! The `revoke-shared` scenario. Waits for sharer's event on `to-sharer`, reads the shared
//! page `window` (mapped read-only) a few times, tells sharer, waits for the next event (the
//! window has been revoked) and reads the window once more: that access must fault, and the
//! kernel stops this domain and reports it. Should the read return, peek says so.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use mica_rt::ring::RingMemory;
use mica_rt::{events, memory, println, BootInfo, Port};

/// Reads before telling sharer.
const READS: u32 = 3;

fn main(_info: BootInfo) -> ! {
    let Some(page) = mica_rt::bootinfo() else {
        println!("peek: no valid boot-info page");
        mica_rt::exit()
    };
    let (Some(to_sharer), Some(window)) =
        (page.endpoint("to-sharer"), memory::shared_region("window"))
    else {
        println!("peek: boot-info page lacks endpoint to-sharer or region window");
        mica_rt::exit()
    };
    if let Err(s) = events::register().and_then(|()| events::bind(to_sharer, Port(0), 0)) {
        println!("peek: event set-up refused ({s:?})");
        mica_rt::exit()
    }
    events::wait();
    for _ in 0..READS {
        println!("peek: read {}", window.load_acquire(0));
    }
    if let Err(s) = events::send(to_sharer) {
        println!("peek: telling sharer refused ({s:?})");
        mica_rt::exit()
    }
    events::wait();
    println!("peek: reading the window after revoke");
    let value = window.load_acquire(0);
    println!("peek: read {value} after revoke: NOT REFUSED");
    mica_rt::exit()
}

mica_rt::entry!(main);
