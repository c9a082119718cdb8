//! Single-producer/single-consumer rings for request/response protocols between domains.
//!
//! A ring lives in memory both domains map: a [`RingHeader`] followed by `capacity` slots of
//! `slot_size` bytes (`capacity` a power of two). The producer fills slot `producer %
//! capacity`, then publishes by storing `producer + 1` (release); the consumer reads
//! `producer` (acquire), takes slots up to it and publishes `consumer`. Indices are free-running
//! `u32`s compared with wrapping arithmetic. Notification suppression works like virtio's
//! `VIRTIO_F_EVENT_IDX`: each side writes the index at which it next wants an event
//! (`producer_event` for the consumer's wake-up, `consumer_event` for the producer's), and
//! [`need_event`] tells the other side whether its update crossed it.
//!
//! Everything a peer writes is untrusted: [`available`] and [`free_slots`] reject index pairs
//! that claim more entries than the ring holds, and [`slot_offset`] only produces offsets
//! inside the ring, so a peer that writes garbage cannot make the other side read or write
//! outside it, or loop without bound (the number of entries taken is capped by `capacity`).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The shared header at the start of a ring (each field written by one side only).
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct RingHeader {
    /// Written by the producer: entries published so far.
    pub producer: u32,
    /// Written by the consumer: wake me (send an event) when `producer` passes this.
    pub producer_event: u32,
    /// Written by the consumer: entries consumed so far.
    pub consumer: u32,
    /// Written by the producer: wake me when `consumer` passes this (ring was full).
    pub consumer_event: u32,
}

/// Bytes of the header; slots start at this offset (kept 64-byte aligned for cache lines).
pub const HEADER_SIZE: usize = 64;
/// Byte offset of [`RingHeader::producer`].
pub const PRODUCER_OFFSET: usize = 0;
/// Byte offset of [`RingHeader::producer_event`].
pub const PRODUCER_EVENT_OFFSET: usize = 4;
/// Byte offset of [`RingHeader::consumer`].
pub const CONSUMER_OFFSET: usize = 8;
/// Byte offset of [`RingHeader::consumer_event`].
pub const CONSUMER_EVENT_OFFSET: usize = 12;

/// Why a ring cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// The geometry does not fit the memory, or capacity is not a power of two.
    BadGeometry,
    /// The peer's indices claim more entries than the ring holds: it is misbehaving.
    Corrupt,
}

/// A ring's shape, checked once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    capacity: u32,
    slot_size: usize,
}

impl Geometry {
    /// `capacity` slots of `slot_size` bytes in `memory_size` bytes; `capacity` must be a
    /// power of two and everything must fit.
    pub fn new(capacity: u32, slot_size: usize, memory_size: usize) -> Result<Geometry, RingError> {
        if capacity == 0 || !capacity.is_power_of_two() || slot_size == 0 {
            return Err(RingError::BadGeometry);
        }
        let need = (capacity as usize)
            .checked_mul(slot_size)
            .and_then(|s| s.checked_add(HEADER_SIZE));
        match need {
            Some(n) if n <= memory_size => Ok(Geometry {
                capacity,
                slot_size,
            }),
            _ => Err(RingError::BadGeometry),
        }
    }

    /// Slots in the ring.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Bytes per slot.
    pub fn slot_size(&self) -> usize {
        self.slot_size
    }

    /// Bytes the ring occupies.
    pub fn size(&self) -> usize {
        HEADER_SIZE + self.capacity as usize * self.slot_size
    }
}

/// Byte offset of the slot for free-running index `index`: always inside the ring.
pub fn slot_offset(g: &Geometry, index: u32) -> usize {
    let mask = if cfg!(feature = "mutant-ring-mask-off-by-one") {
        g.capacity
    } else {
        g.capacity - 1
    };
    HEADER_SIZE + (index & mask) as usize * g.slot_size
}

/// Entries the consumer may take, given the producer's (untrusted) and its own index.
pub fn available(g: &Geometry, producer: u32, consumer: u32) -> Result<u32, RingError> {
    let n = producer.wrapping_sub(consumer);
    if n > g.capacity {
        Err(RingError::Corrupt)
    } else {
        Ok(n)
    }
}

/// Slots the producer may fill, given its own and the consumer's (untrusted) index.
pub fn free_slots(g: &Geometry, producer: u32, consumer: u32) -> Result<u32, RingError> {
    let used = producer.wrapping_sub(consumer);
    if used > g.capacity {
        Err(RingError::Corrupt)
    } else {
        Ok(g.capacity - used)
    }
}

/// Whether moving an index from `old` to `new` crossed `event` (the peer asked to be woken
/// when the index passes `event`): virtio's `vring_need_event`.
pub fn need_event(event: u32, new: u32, old: u32) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_is_checked() {
        assert!(Geometry::new(8, 64, 4096).is_ok());
        assert_eq!(Geometry::new(6, 64, 4096), Err(RingError::BadGeometry));
        assert_eq!(
            Geometry::new(64, 64, 4096),
            Err(RingError::BadGeometry),
            "64 * 64 + header > 4096"
        );
        assert_eq!(Geometry::new(0, 64, 4096), Err(RingError::BadGeometry));
        assert!(
            Geometry::new(1 << 31, usize::MAX / 2, usize::MAX).is_err(),
            "overflow is refused, not wrapped"
        );
    }

    #[test]
    fn indices_wrap_and_garbage_is_rejected() {
        let g = Geometry::new(8, 32, 4096).unwrap();
        assert_eq!(available(&g, 5, 2), Ok(3));
        assert_eq!(available(&g, 2, u32::MAX - 1), Ok(4), "wrapped");
        assert_eq!(available(&g, 100, 2), Err(RingError::Corrupt));
        assert_eq!(
            available(&g, 1, 2),
            Err(RingError::Corrupt),
            "consumer ahead of producer"
        );
        assert_eq!(free_slots(&g, 10, 2), Ok(0));
        assert_eq!(free_slots(&g, 11, 2), Err(RingError::Corrupt));
        for i in [0u32, 7, 8, u32::MAX] {
            let off = slot_offset(&g, i);
            assert!(off >= HEADER_SIZE && off + 32 <= g.size());
        }
    }

    #[test]
    fn event_index_suppresses_notifications() {
        // The consumer asked to be woken when producer passes 4.
        assert!(need_event(4, 5, 4));
        assert!(need_event(4, 7, 3));
        assert!(!need_event(4, 4, 3));
        assert!(!need_event(9, 7, 3));
        assert!(need_event(u32::MAX, 1, u32::MAX - 1), "across the wrap");
    }

    #[test]
    fn every_index_pair_is_safe() {
        // Bounded-exhaustive: every producer/consumer pair near the wrap point and near zero.
        let g = Geometry::new(4, 16, 4096).unwrap();
        let near = |x: u32| (0..12u32).map(move |d| x.wrapping_add(d));
        for p in near(0).chain(near(u32::MAX - 6)) {
            for c in near(0).chain(near(u32::MAX - 6)) {
                if let Ok(n) = available(&g, p, c) {
                    assert!(n <= g.capacity());
                    for k in 0..n {
                        let off = slot_offset(&g, c.wrapping_add(k));
                        assert!(off + g.slot_size() <= g.size());
                    }
                }
                if let Ok(f) = free_slots(&g, p, c) {
                    assert!(f <= g.capacity());
                }
            }
        }
    }
}
