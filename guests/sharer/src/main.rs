//! `sharer`: lends `peek` a window into its RAM, then revokes it and keeps running.
//!
//! The `revoke-shared` scenario. Writes a counter value into the shared page `window` (in its
//! own RAM), tells peek over `to-peek` that it is ready, waits for peek's event saying it has
//! read the window, revokes the window (`cap_revoke` on its own `window` capability deletes
//! and unmaps peek's copy at once), tells peek, and carries on: its own copy of the page is
//! untouched, so it writes and reads it again before it ends.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use mica_rt::ring::RingMemory;
use mica_rt::{events, hypercall, memory, println, BootInfo, ObjectType, Port};

/// The value sharer writes for peek to read.
const COUNTER: u32 = 1000;

fn main(_info: BootInfo) -> ! {
    let Some(page) = mica_rt::bootinfo() else {
        println!("sharer: no valid boot-info page");
        mica_rt::exit()
    };
    let (Some(to_peek), Some(window), Some(region)) = (
        page.endpoint("to-peek"),
        memory::shared_region("window"),
        page.shared("window"),
    ) else {
        println!("sharer: boot-info page lacks endpoint to-peek or region window");
        mica_rt::exit()
    };
    // The capability named after the share is the one the peer's copy derives from.
    let window_cap = page
        .cap_slot("window", ObjectType::Memory)
        .unwrap_or(region.slot);
    if let Err(s) = events::register().and_then(|()| events::bind(to_peek, Port(0), 0)) {
        println!("sharer: event set-up refused ({s:?})");
        mica_rt::exit()
    }
    window.store_release(0, COUNTER);
    println!("sharer: wrote {COUNTER} into the window");
    if let Err(s) = events::send(to_peek) {
        println!("sharer: telling peek refused ({s:?})");
        mica_rt::exit()
    }
    events::wait();
    println!("sharer: peek has read the window");
    match hypercall::cap_revoke(window_cap) {
        Ok(removed) => println!("sharer: revoked the window ({removed} capabilities removed)"),
        Err(s) => println!("sharer: revoking the window refused ({s:?})"),
    }
    if let Err(s) = events::send(to_peek) {
        println!("sharer: telling peek of the revoke refused ({s:?})");
    }
    // Its own page is still its own.
    window.store_release(0, COUNTER + 1);
    for _ in 0..10 {
        let _ = hypercall::yield_now();
    }
    println!(
        "sharer: still running after revoke (window holds {})",
        window.load_acquire(0)
    );
    println!("sharer: done");
    mica_rt::exit()
}

mica_rt::entry!(main);
