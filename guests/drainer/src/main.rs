//! `drainer`: takes `flooder`'s events slowly until the flooder is gone.
//!
//! The `event-flood` scenario. Binds `to-flooder` to port 0, then loops: take what is pending
//! (a round that finds something counts as a wake-up); with the endpoint masked, yield a few
//! times (draining slowly, and letting the `hello` on the same CPU run); unmask; then send an
//! event of its own on `to-flooder`, which answers `PeerClosed` once the flooder has closed its
//! end. The kernel does not tell a receiver that its peer closed, so the drainer polls (by
//! yielding) rather than sleeping in WFI when nothing is pending. Events coalesce in the
//! pending bit, so the wake-ups are far fewer than the events sent.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use mica_rt::{events, hypercall, println, BootInfo, Port, Status};

/// Yields per round while draining.
const SLOW_YIELDS: u32 = 4;

fn main(_info: BootInfo) -> ! {
    let Some(to_flooder) = mica_rt::bootinfo().and_then(|p| p.endpoint("to-flooder")) else {
        println!("drainer: boot-info page lacks endpoint to-flooder");
        mica_rt::exit()
    };
    if let Err(s) = events::register().and_then(|()| events::bind(to_flooder, Port(0), 0)) {
        println!("drainer: event set-up refused ({s:?})");
        mica_rt::exit()
    }
    println!("drainer: draining");
    let mut wakeups = 0u64;
    loop {
        if events::take_pending().contains(Port(0)) {
            wakeups += 1;
        }
        let _ = events::mask(to_flooder);
        for _ in 0..SLOW_YIELDS {
            let _ = hypercall::yield_now();
        }
        let _ = events::unmask(to_flooder);
        match events::send(to_flooder) {
            Ok(()) => {}
            Err(Status::PeerClosed) => break,
            Err(s) => {
                println!("drainer: send refused ({s:?})");
                break;
            }
        }
    }
    // Whatever arrived in the last round.
    if events::take_pending().contains(Port(0)) {
        wakeups += 1;
    }
    println!("drainer: {wakeups} wake-ups, flooder gone");
    mica_rt::exit()
}

mica_rt::entry!(main);
