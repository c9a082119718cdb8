//! `ping`: the client of the `pingpong` scenario — requests out, responses checked.
//!
//! Finds its endpoint `to-pong` and the shared region `ring` (in its own RAM) in the boot-info
//! page, binds the endpoint to port 0, sets up a request ring and a response ring in the
//! region (`mica_rt::channel`, 16 slots of 64 bytes each), tells `pong` with an event, then
//! keeps the request ring as full as it can while it checks responses in order, sleeping in
//! WFI only when it can neither send nor receive. Nothing depends on timing: every wait is
//! for an event the ring protocol promises. After `arg` round trips (10000 when 0) it sends a
//! stop request and then waits (yielding) until its sends on `to-pong` answer `PeerClosed`:
//! pong closes its endpoint after its last access to the region, so pong never touches the
//! region after ping's domain (and with it the region) is gone.
//!
//! A message is 48 bytes: byte 0 the kind (0 = request/response, 1 = stop), bytes 8..16 the
//! sequence number (little-endian), bytes 16..48 the payload. Pong answers request `seq`
//! with the same header and every payload byte XOR 0x5A plus `seq` (mod 256).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use mica_rt::channel::{Channel, Endpoint, Error, Layout, Side};
use mica_rt::ring::Error as RingError;
use mica_rt::{events, hypercall, memory, println, BootInfo, Port, Status};

/// The rings' shape (both sides must agree).
const LAYOUT: Layout = Layout {
    capacity: 16,
    slot_size: 64,
};
/// Bytes of a message.
const MESSAGE: usize = 48;
/// Message kinds.
const KIND_DATA: u8 = 0;
const KIND_STOP: u8 = 1;
/// Mismatches reported one by one before ping stops listing them.
const REPORTED_MISMATCHES: u64 = 5;

/// The request with sequence number `seq`.
fn request(seq: u64) -> [u8; MESSAGE] {
    let mut m = [0; MESSAGE];
    m[0] = KIND_DATA;
    m[8..16].copy_from_slice(&seq.to_le_bytes());
    let mixed = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for (i, b) in m[16..].iter_mut().enumerate() {
        *b = (mixed >> ((i % 8) * 8)) as u8 ^ i as u8;
    }
    m
}

/// What pong must answer to `request(seq)`.
fn expected_response(seq: u64) -> [u8; MESSAGE] {
    let mut m = request(seq);
    for b in &mut m[16..] {
        *b = (*b ^ 0x5A).wrapping_add(seq as u8);
    }
    m
}

fn fail(what: &str, error: Error) -> ! {
    println!("ping: {what} failed: {error:?}");
    mica_rt::exit()
}

fn main(info: BootInfo) -> ! {
    let round_trips = info.arg_or(10_000);
    let Some(page) = mica_rt::bootinfo() else {
        println!("ping: no valid boot-info page");
        mica_rt::exit()
    };
    let (Some(to_pong), Some(region)) = (page.endpoint("to-pong"), memory::shared_region("ring"))
    else {
        println!("ping: boot-info page lacks endpoint to-pong or region ring");
        mica_rt::exit()
    };
    if let Err(s) = events::register().and_then(|()| events::bind(to_pong, Port(0), 0)) {
        println!("ping: event set-up refused ({s:?})");
        mica_rt::exit()
    }
    let mut channel = match Channel::new(region, LAYOUT, Side::Client, Endpoint(to_pong)) {
        Ok(c) => c,
        Err(e) => fail("ring set-up", e),
    };
    println!(
        "ping: started: {round_trips} round trips, rings of {} slots of {} bytes",
        LAYOUT.capacity, LAYOUT.slot_size
    );
    if let Err(e) = channel.kick() {
        fail("telling pong the rings are ready", e);
    }

    let (mut sent, mut checked, mut mismatches) = (0u64, 0u64, 0u64);
    let mut buf = [0u8; MESSAGE];
    while checked < round_trips {
        let mut progressed = false;
        while sent < round_trips {
            match channel.send(&request(sent)) {
                Ok(()) => {
                    sent += 1;
                    progressed = true;
                }
                Err(Error::Ring(RingError::Full)) => break,
                Err(e) => fail("send", e),
            }
        }
        loop {
            match channel.recv(&mut buf) {
                Ok(Some(len)) => {
                    progressed = true;
                    if len != MESSAGE || buf != expected_response(checked) {
                        mismatches += 1;
                        if mismatches <= REPORTED_MISMATCHES {
                            println!("ping: MISMATCH at {checked}");
                        }
                    }
                    checked += 1;
                }
                Ok(None) => break,
                Err(e) => fail("receive", e),
            }
        }
        if !progressed {
            // Both rings have asked pong for an event (full request ring / empty response
            // ring), so the wait ends when pong has done something.
            events::wait();
        }
    }

    let mut stop = [0u8; MESSAGE];
    stop[0] = KIND_STOP;
    stop[8..16].copy_from_slice(&sent.to_le_bytes());
    if let Err(e) = channel.send_blocking(&stop, || {
        events::wait();
    }) {
        fail("sending stop", e);
    }
    // Pong closes its endpoint after its last access to the region; until then ping's domain
    // (which owns the region) must not end, or pong's access could fault.
    loop {
        match events::send(to_pong) {
            Ok(()) => {
                let _ = hypercall::yield_now();
            }
            Err(Status::PeerClosed) => break,
            Err(s) => {
                println!("ping: waiting for pong to close refused ({s:?})");
                break;
            }
        }
    }
    println!("ping: sent {sent} requests, {checked} responses checked");
    if mismatches > 0 {
        println!("ping: {mismatches} MISMATCHES");
    }
    println!("ping: done");
    mica_rt::exit()
}

mica_rt::entry!(main);
