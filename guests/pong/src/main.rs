//! `pong`: the server of the `pingpong` scenario — answers requests until told to stop.
//!
//! Finds its endpoint `to-ping` and the shared region `ring` (ping's memory, mapped here
//! read-write) in the boot-info page, binds the endpoint to port 0 and waits for ping's first
//! event (the rings are set up) before it touches the region. Then it answers each request
//! with every payload byte XOR 0x5A plus the sequence number (the message format is in
//! `ping`), sleeping in WFI when there is nothing to do. On the stop request it prints how
//! many requests it served and closes its endpoint, which tells ping (whose sends now answer
//! `PeerClosed`) that pong will not touch the region again; then it ends.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use mica_rt::channel::{Channel, Endpoint, Error, Layout, Side};
use mica_rt::{events, memory, println, BootInfo, Port};

/// The rings' shape (as in `ping`).
const LAYOUT: Layout = Layout {
    capacity: 16,
    slot_size: 64,
};
/// Bytes of a message.
const MESSAGE: usize = 48;
/// The stop request's kind.
const KIND_STOP: u8 = 1;

fn fail(what: &str, error: Error) -> ! {
    println!("pong: {what} failed: {error:?}");
    mica_rt::exit()
}

fn wait() {
    events::wait();
}

fn main(_info: BootInfo) -> ! {
    let Some(page) = mica_rt::bootinfo() else {
        println!("pong: no valid boot-info page");
        mica_rt::exit()
    };
    let (Some(to_ping), Some(region)) = (page.endpoint("to-ping"), memory::shared_region("ring"))
    else {
        println!("pong: boot-info page lacks endpoint to-ping or region ring");
        mica_rt::exit()
    };
    if let Err(s) = events::register().and_then(|()| events::bind(to_ping, Port(0), 0)) {
        println!("pong: event set-up refused ({s:?})");
        mica_rt::exit()
    }
    // Ping's first event says the rings are initialised.
    events::wait();
    let mut channel = match Channel::new(region, LAYOUT, Side::Server, Endpoint(to_ping)) {
        Ok(c) => c,
        Err(e) => fail("ring set-up", e),
    };
    let mut served = 0u64;
    let mut buf = [0u8; MESSAGE];
    loop {
        let len = match channel.recv_blocking(&mut buf, wait) {
            Ok(len) => len,
            Err(e) => fail("receive", e),
        };
        if len >= 1 && buf[0] == KIND_STOP {
            break;
        }
        let seq = buf.get(8..16).map_or(0, |b| {
            let mut s = [0; 8];
            s.copy_from_slice(b);
            u64::from_le_bytes(s)
        });
        for b in buf.iter_mut().take(len).skip(16) {
            *b = (*b ^ 0x5A).wrapping_add(seq as u8);
        }
        if let Err(e) = channel.send_blocking(&buf[..len], wait) {
            fail("respond", e);
        }
        served += 1;
    }
    println!("pong: served {served} requests");
    // The last access to the region is behind us: closing tells ping it may end.
    if let Err(s) = events::close(to_ping) {
        println!("pong: closing to-ping refused ({s:?})");
    }
    mica_rt::exit()
}

mica_rt::entry!(main);
