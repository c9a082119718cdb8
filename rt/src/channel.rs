//! A request/response channel: two rings in one shared region plus an event-channel endpoint.
//!
//! The region holds the request ring at offset 0 and the response ring right after it
//! (64-byte aligned). The client pushes requests and pops responses, the server the other
//! way round; either sends an event on its endpoint only when a ring operation says the peer
//! asked for one ([`Ring::push`] / [`Ring::pop`]), so a busy exchange costs no hypercalls
//! beyond the ones that wake a sleeping side. One event serves both rings: whoever wakes
//! looks at both.

use mica_abi::Status;

use crate::hypercall::Slot;
use crate::ring::{self, Ring, RingMemory};

/// Why a channel operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The ring refused (full, too large, corrupt, bad geometry).
    Ring(ring::Error),
    /// The event could not be sent (e.g. [`Status::PeerClosed`]).
    Event(Status),
}

impl From<ring::Error> for Error {
    fn from(e: ring::Error) -> Error {
        Error::Ring(e)
    }
}

/// The shape of both rings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Slots per ring (a power of two).
    pub capacity: u32,
    /// Bytes per slot (length prefix included).
    pub slot_size: usize,
}

impl Layout {
    /// Byte offset of the response ring.
    pub fn response_base(&self) -> usize {
        ring::ring_size(self.capacity, self.slot_size).next_multiple_of(64)
    }

    /// Bytes both rings need.
    pub fn size(&self) -> usize {
        self.response_base() + ring::ring_size(self.capacity, self.slot_size)
    }
}

/// Which end of the channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Pushes requests, pops responses; sets the rings up.
    Client,
    /// Pops requests, pushes responses.
    Server,
}

/// One end of a channel over `M`, signalling its peer through `notify`.
pub struct Channel<M, N> {
    tx: Ring<M>,
    rx: Ring<M>,
    notify: N,
}

/// How a channel signals its peer.
pub trait Notify {
    /// Sends one event to the peer.
    fn notify(&mut self) -> Result<(), Status>;
}

/// Signals through an event-channel endpoint (`evtchn_send`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint(pub Slot);

impl Notify for Endpoint {
    fn notify(&mut self) -> Result<(), Status> {
        crate::events::send(self.0)
    }
}

impl<F: FnMut() -> Result<(), Status>> Notify for F {
    fn notify(&mut self) -> Result<(), Status> {
        self()
    }
}

impl<M: RingMemory + Clone, N: Notify> Channel<M, N> {
    /// The `side` end over `memory`. The client zeroes both ring headers, so it must be set
    /// up before the server uses the region (the client tells the server with an event).
    pub fn new(memory: M, layout: Layout, side: Side, notify: N) -> Result<Self, Error> {
        let (cap, slot) = (layout.capacity, layout.slot_size);
        let second = layout.response_base();
        let (tx, rx) = match side {
            Side::Client => (
                Ring::init(memory.clone(), 0, cap, slot)?,
                Ring::init(memory, second, cap, slot)?,
            ),
            Side::Server => (
                Ring::attach(memory.clone(), second, cap, slot)?,
                Ring::attach(memory, 0, cap, slot)?,
            ),
        };
        Ok(Channel { tx, rx, notify })
    }

    /// Signals the peer regardless of the rings (e.g. "the rings are ready").
    pub fn kick(&mut self) -> Result<(), Error> {
        self.notify.notify().map_err(Error::Event)
    }

    /// Sends `message` (a request from the client, a response from the server), signalling
    /// the peer if it asked.
    pub fn send(&mut self, message: &[u8]) -> Result<(), Error> {
        if self.tx.push(message)? {
            self.kick()?;
        }
        Ok(())
    }

    /// Takes the next incoming message into `buf`, signalling the peer if it was waiting for
    /// the slot; `Ok(None)` when there is none.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<Option<usize>, Error> {
        match self.rx.pop(buf)? {
            None => Ok(None),
            Some(popped) => {
                if popped.notify {
                    self.kick()?;
                }
                Ok(Some(popped.len))
            }
        }
    }

    /// [`send`](Self::send), calling `idle` (e.g. [`crate::events::wait`]) while the ring is
    /// full.
    pub fn send_blocking(&mut self, message: &[u8], mut idle: impl FnMut()) -> Result<(), Error> {
        loop {
            match self.send(message) {
                Err(Error::Ring(ring::Error::Full)) => idle(),
                other => return other,
            }
        }
    }

    /// [`recv`](Self::recv), calling `idle` while nothing has arrived.
    pub fn recv_blocking(
        &mut self,
        buf: &mut [u8],
        mut idle: impl FnMut(),
    ) -> Result<usize, Error> {
        loop {
            if let Some(len) = self.recv(buf)? {
                return Ok(len);
            }
            idle();
        }
    }

    /// The largest message a slot holds.
    pub fn max_message(&self) -> usize {
        self.tx.max_message()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::SharedRegion;
    use std::cell::Cell;

    #[test]
    fn requests_and_responses_cross_with_few_events() {
        let layout = Layout {
            capacity: 4,
            slot_size: 32,
        };
        assert_eq!(layout.response_base(), 192);
        assert_eq!(layout.size(), 384);
        let mut backing = vec![0u64; layout.size() / 8];
        // SAFETY: the vector outlives both channels and is touched only through them.
        let region = unsafe { SharedRegion::new(backing.as_mut_ptr().cast(), layout.size()) };
        let to_server = Cell::new(0);
        let to_client = Cell::new(0);
        let mut client = Channel::new(region, layout, Side::Client, || {
            to_server.set(to_server.get() + 1);
            Ok(())
        })
        .unwrap();
        let mut server = Channel::new(region, layout, Side::Server, || {
            to_client.set(to_client.get() + 1);
            Ok(())
        })
        .unwrap();
        let mut buf = [0; 32];
        assert_eq!(server.recv(&mut buf), Ok(None));
        for i in 0..4u8 {
            client.send(&[i; 5]).unwrap();
        }
        assert_eq!(to_server.get(), 1, "one event for four requests");
        assert_eq!(client.send(b"x"), Err(Error::Ring(ring::Error::Full)));
        assert_eq!(client.recv(&mut buf), Ok(None));
        for i in 0..4u8 {
            assert_eq!(server.recv(&mut buf), Ok(Some(5)));
            assert_eq!(buf[..5], [i; 5]);
            server.send(&[i ^ 0x5A]).unwrap();
        }
        assert_eq!(to_server.get(), 1, "the server never slept again");
        assert_eq!(
            to_client.get(),
            2,
            "the full client was told of the free slot, then of the first response"
        );
        let mut idles = 0;
        let n = client.recv_blocking(&mut buf, || idles += 1).unwrap();
        assert_eq!((n, buf[0], idles), (1, 0x5A, 0));
        drop(backing);
    }

    #[test]
    fn a_closed_peer_is_reported() {
        let layout = Layout {
            capacity: 2,
            slot_size: 16,
        };
        let mut backing = vec![0u64; layout.size() / 8];
        // SAFETY: as above.
        let region = unsafe { SharedRegion::new(backing.as_mut_ptr().cast(), layout.size()) };
        let mut server = Channel::new(region, layout, Side::Server, || Ok(())).unwrap();
        assert_eq!(server.recv(&mut [0; 16]), Ok(None));
        let mut client =
            Channel::new(region, layout, Side::Client, || Err(Status::PeerClosed)).unwrap();
        assert_eq!(client.send(b"hi"), Err(Error::Event(Status::PeerClosed)));
        drop(backing);
    }
}
