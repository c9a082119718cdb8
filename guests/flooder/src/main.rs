//! `flooder`: sends events to `drainer` as fast as it can, then closes its end.
//!
//! The `event-flood` scenario. Sends `arg` events (100000 when 0) on `to-drainer` without
//! pause, counting what the kernel answers; `PeerClosed` (the drainer is gone) ends the loop
//! early. Then it closes its endpoint, which is how the drainer learns it is gone.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use mica_rt::{events, println, BootInfo, Status};

fn main(info: BootInfo) -> ! {
    let events_to_send = info.arg_or(100_000);
    let Some(to_drainer) = mica_rt::bootinfo().and_then(|p| p.endpoint("to-drainer")) else {
        println!("flooder: boot-info page lacks endpoint to-drainer");
        mica_rt::exit()
    };
    println!("flooder: sending {events_to_send} events");
    let (mut sent, mut refused) = (0u64, 0u64);
    for _ in 0..events_to_send {
        match events::send(to_drainer) {
            Ok(()) => sent += 1,
            Err(Status::PeerClosed) => {
                println!("flooder: drainer closed its end");
                break;
            }
            Err(_) => refused += 1,
        }
    }
    println!("flooder: sent {sent} events");
    if refused > 0 {
        println!("flooder: {refused} sends refused");
    }
    if let Err(s) = events::close(to_drainer) {
        println!("flooder: closing to-drainer refused ({s:?})");
    }
    mica_rt::exit()
}

mica_rt::entry!(main);
