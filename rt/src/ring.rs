//! Single-producer/single-consumer rings in memory shared with another domain.
//!
//! The layout, the index arithmetic and the notification rule are `mica_abi::ring`'s; this
//! module is the algorithm on top, written once over a [`RingMemory`] trait so that the same
//! code runs on a shared region in a domain ([`SharedRegion`], the one `unsafe` part) and in
//! `mica-verify`'s harnesses over a byte array, where random and exhaustive interleavings and
//! a peer writing garbage check it.
//!
//! Each slot holds a message: a little-endian `u32` length, then that many bytes (so at most
//! `slot_size - 4`). Each side keeps its own index privately and only *publishes* it in the
//! header; what the peer publishes is untrusted: an index pair claiming more entries than the
//! ring holds, or a length beyond the slot, is [`Error::Corrupt`], every offset comes from
//! [`slot_offset`] (inside the ring by construction), and every call does a bounded amount of
//! work (no loops over peer-controlled counts). A misbehaving peer can only make its own
//! messages wrong.
//!
//! Notifications follow virtio's event-index rule. A side that finds nothing to do (the
//! consumer an empty ring, the producer a full one) writes the index it is waiting to see
//! move into the peer's `*_event` field, fences, and looks again; the peer, after publishing
//! its index and fencing, asks [`need_event`] whether it crossed that field and only then
//! needs to send an event. The two fences order each side's store before its load, so at
//! least one side sees the other's: no wake-up is lost, and a busy peer is not interrupted.

use mica_abi::ring::{
    available, free_slots, need_event, slot_offset, Geometry, RingError, CONSUMER_EVENT_OFFSET,
    CONSUMER_OFFSET, HEADER_SIZE, PRODUCER_EVENT_OFFSET, PRODUCER_OFFSET,
};

/// Bytes of a slot's length prefix.
pub const LENGTH_SIZE: usize = 4;

/// Memory a ring lives in, as both sides see it. Every method may be called concurrently with
/// the peer writing the same memory; implementations panic on an access outside
/// `0..len()` or a misaligned word (the ring algorithm never makes one).
pub trait RingMemory {
    /// Bytes of memory.
    fn len(&self) -> usize;
    /// Whether the memory is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Loads the 4-byte-aligned word at `offset` with acquire ordering.
    fn load_acquire(&self, offset: usize) -> u32;
    /// Stores the 4-byte-aligned word at `offset` with release ordering.
    fn store_release(&self, offset: usize, value: u32);
    /// A full fence: orders this side's earlier stores before its later loads.
    fn fence(&self);
    /// Copies `out.len()` bytes from `offset` into `out`.
    fn read(&self, offset: usize, out: &mut [u8]);
    /// Copies `data` to `offset`.
    fn write(&self, offset: usize, data: &[u8]);
}

impl<T: RingMemory + ?Sized> RingMemory for &T {
    fn len(&self) -> usize {
        (**self).len()
    }
    fn load_acquire(&self, offset: usize) -> u32 {
        (**self).load_acquire(offset)
    }
    fn store_release(&self, offset: usize, value: u32) {
        (**self).store_release(offset, value)
    }
    fn fence(&self) {
        (**self).fence()
    }
    fn read(&self, offset: usize, out: &mut [u8]) {
        (**self).read(offset, out)
    }
    fn write(&self, offset: usize, data: &[u8]) {
        (**self).write(offset, data)
    }
}

/// Why a ring operation did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The ring does not fit its memory, its capacity is not a power of two, its slots cannot
    /// hold a length and a byte, or its start is not 8-byte aligned.
    Geometry,
    /// No free slot (push); the consumer will be asked to send an event when it frees one.
    Full,
    /// The message does not fit a slot (push), or the buffer cannot hold the next message
    /// (pop; the message stays in the ring).
    TooLarge,
    /// The peer published impossible indices or a length beyond its slot.
    Corrupt,
}

impl From<RingError> for Error {
    fn from(e: RingError) -> Error {
        match e {
            RingError::BadGeometry => Error::Geometry,
            RingError::Corrupt => Error::Corrupt,
        }
    }
}

/// Bytes a ring of `capacity` slots of `slot_size` bytes occupies (header and slots),
/// saturating.
pub const fn ring_size(capacity: u32, slot_size: usize) -> usize {
    (capacity as usize)
        .saturating_mul(slot_size)
        .saturating_add(HEADER_SIZE)
}

/// A message taken by [`Ring::pop`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Popped {
    /// Its length: the first `len` bytes of the buffer hold it.
    pub len: usize,
    /// Whether the producer asked to be told about the freed slot (send it an event).
    pub notify: bool,
}

/// One end of a ring at byte `base` of `memory`. A ring is used by one producer and one
/// consumer, each with its own `Ring` value: the producer calls only [`push`](Self::push),
/// the consumer only [`pop`](Self::pop).
#[derive(Clone, Debug)]
pub struct Ring<M> {
    memory: M,
    base: usize,
    geometry: Geometry,
    /// Entries this side has published as producer.
    produced: u32,
    /// Entries this side has consumed.
    consumed: u32,
}

impl<M> Ring<M> {
    /// The same end (shape and private indices) over another handle to the memory, e.g. a
    /// copy of it in a model checker that snapshots states.
    pub fn map_memory<N>(self, f: impl FnOnce(M) -> N) -> Ring<N> {
        Ring {
            memory: f(self.memory),
            base: self.base,
            geometry: self.geometry,
            produced: self.produced,
            consumed: self.consumed,
        }
    }
}

impl<M: RingMemory> Ring<M> {
    /// A ring of `capacity` slots of `slot_size` bytes at `base` in `memory`, whose header
    /// is zeroed: done once, by the side that sets the ring up, before the peer uses it.
    pub fn init(memory: M, base: usize, capacity: u32, slot_size: usize) -> Result<Self, Error> {
        let ring = Self::attach(memory, base, capacity, slot_size)?;
        for field in [
            PRODUCER_OFFSET,
            PRODUCER_EVENT_OFFSET,
            CONSUMER_OFFSET,
            CONSUMER_EVENT_OFFSET,
        ] {
            ring.store(field, 0);
        }
        Ok(ring)
    }

    /// The same ring, set up by the peer: nothing is written; this side starts at index 0.
    pub fn attach(memory: M, base: usize, capacity: u32, slot_size: usize) -> Result<Self, Error> {
        if slot_size <= LENGTH_SIZE || !base.is_multiple_of(8) {
            return Err(Error::Geometry);
        }
        let room = memory.len().checked_sub(base).ok_or(Error::Geometry)?;
        let geometry = Geometry::new(capacity, slot_size, room)?;
        Ok(Ring {
            memory,
            base,
            geometry,
            produced: 0,
            consumed: 0,
        })
    }

    /// The ring's shape.
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// The largest message a slot holds.
    pub fn max_message(&self) -> usize {
        self.geometry.slot_size() - LENGTH_SIZE
    }

    /// The memory the ring is in.
    pub fn memory(&self) -> &M {
        &self.memory
    }

    /// Entries this side has pushed.
    pub fn produced(&self) -> u32 {
        self.produced
    }

    /// Entries this side has popped.
    pub fn consumed(&self) -> u32 {
        self.consumed
    }

    fn load(&self, field: usize) -> u32 {
        self.memory.load_acquire(self.base + field)
    }

    fn store(&self, field: usize, value: u32) {
        self.memory.store_release(self.base + field, value)
    }

    /// Appends `message`. `Ok(true)` means the consumer asked to be told: send it an event.
    /// [`Error::Full`] leaves a request in the header for an event when a slot frees up.
    pub fn push(&mut self, message: &[u8]) -> Result<bool, Error> {
        let g = self.geometry;
        if message.len() > self.max_message() {
            return Err(Error::TooLarge);
        }
        let consumer = self.load(CONSUMER_OFFSET);
        if free_slots(&g, self.produced, consumer)? == 0 {
            // Ask to hear when the consumer moves past where it is, then look again: it may
            // have moved between the load and the store.
            self.store(CONSUMER_EVENT_OFFSET, consumer);
            self.memory.fence();
            let consumer = self.load(CONSUMER_OFFSET);
            if free_slots(&g, self.produced, consumer)? == 0 {
                return Err(Error::Full);
            }
        }
        let slot = self.base + slot_offset(&g, self.produced);
        self.memory
            .write(slot, &(message.len() as u32).to_le_bytes());
        self.memory.write(slot + LENGTH_SIZE, message);
        let old = self.produced;
        self.produced = old.wrapping_add(1);
        self.store(PRODUCER_OFFSET, self.produced);
        self.memory.fence();
        let event = self.load(PRODUCER_EVENT_OFFSET);
        Ok(need_event(event, self.produced, old))
    }

    /// Takes the next message into `out`. `Ok(None)` when the ring is empty, having left a
    /// request in the header for an event when the producer publishes the next one.
    pub fn pop(&mut self, out: &mut [u8]) -> Result<Option<Popped>, Error> {
        let g = self.geometry;
        let producer = self.load(PRODUCER_OFFSET);
        if available(&g, producer, self.consumed)? == 0 {
            self.store(PRODUCER_EVENT_OFFSET, self.consumed);
            self.memory.fence();
            let producer = self.load(PRODUCER_OFFSET);
            if available(&g, producer, self.consumed)? == 0 {
                return Ok(None);
            }
        }
        let slot = self.base + slot_offset(&g, self.consumed);
        let mut length = [0; LENGTH_SIZE];
        self.memory.read(slot, &mut length);
        let len = u32::from_le_bytes(length) as usize;
        if len > self.max_message() && !cfg!(feature = "mutant-ring-length-trusted") {
            return Err(Error::Corrupt);
        }
        let out = out.get_mut(..len).ok_or(Error::TooLarge)?;
        self.memory.read(slot + LENGTH_SIZE, out);
        let old = self.consumed;
        self.consumed = old.wrapping_add(1);
        self.store(CONSUMER_OFFSET, self.consumed);
        self.memory.fence();
        let event = self.load(CONSUMER_EVENT_OFFSET);
        Ok(Some(Popped {
            len,
            notify: need_event(event, self.consumed, old),
        }))
    }
}

/// The request and completion rings of a block-service client's I/O region
/// (`mica_abi::blkio`), as both sides attach them (the region starts zeroed: nothing to set
/// up); `None` if the region is too small for them and one data slot.
pub fn blkio_rings(region: SharedRegion) -> Option<(Ring<SharedRegion>, Ring<SharedRegion>)> {
    use mica_abi::blkio;
    if blkio::slots(region.len()) == 0 {
        return None;
    }
    let requests = Ring::attach(
        region,
        blkio::REQUEST_RING,
        blkio::RING_CAPACITY,
        blkio::REQUEST_SLOT,
    );
    let completions = Ring::attach(
        region,
        blkio::COMPLETION_RING,
        blkio::RING_CAPACITY,
        blkio::COMPLETION_SLOT,
    );
    requests.ok().zip(completions.ok())
}

/// A shared region (or any memory outside Rust's objects) that rings live in, accessed only
/// with atomic loads and stores, so a peer writing it concurrently is no data race.
#[derive(Clone, Copy, Debug)]
pub struct SharedRegion {
    base: *mut u8,
    size: usize,
}

impl SharedRegion {
    /// The `size` bytes at `base`.
    ///
    /// # Safety
    ///
    /// `[base, base + size)` must be memory that is readable and writable for as long as this
    /// value or a copy of it is used (for a shared region: mapped read-write into the domain;
    /// if it is revoked, the next access faults and the kernel stops the domain), `base` must
    /// be 8-byte aligned, and no Rust reference to any of it may exist (it is not part of any
    /// Rust object): the runtime and the peer touch it only through atomic accesses.
    pub const unsafe fn new(base: *mut u8, size: usize) -> SharedRegion {
        SharedRegion { base, size }
    }

    fn check(&self, offset: usize, len: usize) {
        let end = offset.checked_add(len);
        assert!(
            end.is_some_and(|end| end <= self.size),
            "ring access outside the shared region"
        );
    }

    /// The address of `len` bytes at `offset`, if they lie in the region.
    #[cfg_attr(not(feature = "virtio"), allow(dead_code))]
    pub(crate) fn range(&self, offset: usize, len: usize) -> Option<*mut u8> {
        let end = offset.checked_add(len)?;
        // `wrapping_add`: only an address is computed; `end <= size` keeps it in the region.
        (end <= self.size).then(|| self.base.wrapping_add(offset))
    }

    /// Copies `len` bytes at `offset` to `to` at `to_offset`: straight from one region into
    /// another (a guest's RAM and the block service's data slots), with no buffer between.
    /// The two ranges must not overlap (a panic, as for a range outside either region).
    pub fn copy_to(&self, offset: usize, to: &SharedRegion, to_offset: usize, len: usize) {
        self.check(offset, len);
        to.check(to_offset, len);
        let (from, dst) = (self.base as usize + offset, to.base as usize + to_offset);
        assert!(
            len == 0 || from + len <= dst || dst + len <= from,
            "overlapping copy within shared memory"
        );
        // SAFETY: `check` keeps both ranges inside their regions (valid for reads and
        // writes per `new`, no Rust object, touched only atomically or by the block copy),
        // and they do not overlap (above).
        unsafe { crate::bulk::copy_between(to.base.add(to_offset), self.base.add(offset), len) }
    }
}

impl RingMemory for SharedRegion {
    fn len(&self) -> usize {
        self.size
    }

    fn load_acquire(&self, offset: usize) -> u32 {
        self.check(offset, 4);
        assert!(offset.is_multiple_of(4));
        // SAFETY: `check` keeps the word inside the region, which `new`'s contract makes
        // valid, 8-byte aligned at its start (so the word is 4-byte aligned) and touched only
        // atomically.
        unsafe { core::sync::atomic::AtomicU32::from_ptr(self.base.add(offset).cast()) }
            .load(core::sync::atomic::Ordering::Acquire)
    }

    fn store_release(&self, offset: usize, value: u32) {
        self.check(offset, 4);
        assert!(offset.is_multiple_of(4));
        // SAFETY: as in `load_acquire`.
        unsafe { core::sync::atomic::AtomicU32::from_ptr(self.base.add(offset).cast()) }
            .store(value, core::sync::atomic::Ordering::Release)
    }

    fn fence(&self) {
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
    }

    fn read(&self, offset: usize, out: &mut [u8]) {
        self.check(offset, out.len());
        // SAFETY: `check` keeps every byte inside the region (valid per `new`, no Rust
        // object), which is only accessed atomically; relaxed is enough, the index loads
        // order them.
        unsafe { crate::bulk::copy_from(self.base.add(offset), out) }
    }

    fn write(&self, offset: usize, data: &[u8]) {
        self.check(offset, data.len());
        // SAFETY: as in `read`; the index store (release) publishes these bytes.
        unsafe { crate::bulk::copy_to(self.base.add(offset), data) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// Plain memory for the unit tests (`mica-verify` has the thorough harnesses).
    struct Bytes(Vec<Cell<u8>>);

    impl Bytes {
        fn new(size: usize) -> Bytes {
            Bytes((0..size).map(|_| Cell::new(0)).collect())
        }
    }

    impl RingMemory for Bytes {
        fn len(&self) -> usize {
            self.0.len()
        }
        fn load_acquire(&self, offset: usize) -> u32 {
            let mut b = [0; 4];
            self.read(offset, &mut b);
            u32::from_le_bytes(b)
        }
        fn store_release(&self, offset: usize, value: u32) {
            self.write(offset, &value.to_le_bytes())
        }
        fn fence(&self) {}
        fn read(&self, offset: usize, out: &mut [u8]) {
            let len = out.len();
            for (o, c) in out.iter_mut().zip(&self.0[offset..offset + len]) {
                *o = c.get();
            }
        }
        fn write(&self, offset: usize, data: &[u8]) {
            for (d, c) in data.iter().zip(&self.0[offset..offset + data.len()]) {
                c.set(*d);
            }
        }
    }

    #[test]
    fn messages_go_through_in_order_with_events_only_when_asked() {
        let mem = Bytes::new(1024);
        let mut tx = Ring::init(&mem, 0, 4, 16).unwrap();
        let mut rx = Ring::attach(&mem, 0, 4, 16).unwrap();
        let mut buf = [0; 16];
        assert_eq!(
            rx.pop(&mut buf),
            Ok(None),
            "empty: the consumer asks for an event"
        );
        assert_eq!(tx.push(b"one"), Ok(true), "so the first push notifies");
        assert_eq!(
            tx.push(b"two"),
            Ok(false),
            "the consumer has not looked since"
        );
        // A zeroed header asks for an event at index 0 both ways: one spurious event at most.
        assert_eq!(
            rx.pop(&mut buf),
            Ok(Some(Popped {
                len: 3,
                notify: true
            }))
        );
        assert_eq!(&buf[..3], b"one");
        assert_eq!(
            rx.pop(&mut buf),
            Ok(Some(Popped {
                len: 3,
                notify: false
            }))
        );
        assert_eq!(&buf[..3], b"two");
        for m in [&b"a"[..], b"bb", b"ccc", b"dddd"] {
            tx.push(m).unwrap();
        }
        assert_eq!(tx.push(b"e"), Err(Error::Full), "four slots");
        let first = rx.pop(&mut buf).unwrap().unwrap();
        assert!(
            first.notify,
            "the full producer asked to hear of a free slot"
        );
        assert_eq!(tx.push(b"e"), Ok(false));
        let lens: Vec<usize> = (0..4)
            .map(|_| rx.pop(&mut buf).unwrap().unwrap().len)
            .collect();
        assert_eq!(lens, [2, 3, 4, 1]);
        assert_eq!(tx.push(&[0; 13]), Err(Error::TooLarge));
        tx.push(&[7; 12]).unwrap();
        assert_eq!(rx.pop(&mut buf[..11]), Err(Error::TooLarge));
        assert_eq!(rx.pop(&mut buf).unwrap().unwrap().len, 12, "still there");
    }

    #[test]
    fn garbage_from_the_peer_is_corrupt() {
        let mem = Bytes::new(1024);
        let mut tx = Ring::init(&mem, 64, 4, 16).unwrap();
        let mut rx = Ring::attach(&mem, 64, 4, 16).unwrap();
        mem.store_release(64 + PRODUCER_OFFSET, 5);
        assert_eq!(rx.pop(&mut [0; 16]), Err(Error::Corrupt));
        mem.store_release(64 + PRODUCER_OFFSET, 1);
        mem.write(64 + HEADER_SIZE, &u32::MAX.to_le_bytes());
        assert_eq!(
            rx.pop(&mut [0; 16]),
            Err(Error::Corrupt),
            "length beyond the slot"
        );
        mem.store_release(64 + CONSUMER_OFFSET, 3);
        assert_eq!(
            tx.push(b"x"),
            Err(Error::Corrupt),
            "consumer ahead of producer"
        );
    }

    #[test]
    fn geometry_is_checked() {
        let mem = Bytes::new(256);
        assert!(Ring::attach(&mem, 0, 4, 48).is_ok());
        assert_eq!(Ring::attach(&mem, 0, 4, 49).err(), Some(Error::Geometry));
        assert_eq!(Ring::attach(&mem, 4, 2, 16).err(), Some(Error::Geometry));
        assert_eq!(Ring::attach(&mem, 512, 2, 16).err(), Some(Error::Geometry));
        assert_eq!(Ring::attach(&mem, 0, 3, 16).err(), Some(Error::Geometry));
        assert_eq!(Ring::attach(&mem, 0, 2, 4).err(), Some(Error::Geometry));
        assert_eq!(ring_size(4, 48), 256);
    }

    #[test]
    fn a_shared_region_is_memory_too() {
        let mut backing = vec![0u64; 64];
        // SAFETY: the vector outlives the region and is not touched otherwise until the end.
        let region = unsafe { SharedRegion::new(backing.as_mut_ptr().cast(), 512) };
        let mut tx = Ring::init(region, 0, 4, 32).unwrap();
        let mut rx = Ring::attach(region, 0, 4, 32).unwrap();
        tx.push(b"hello").unwrap();
        let mut buf = [0; 32];
        assert_eq!(rx.pop(&mut buf).unwrap().unwrap().len, 5);
        assert_eq!(&buf[..5], b"hello");
        drop(backing);
    }
}
