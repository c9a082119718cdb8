//! The block service's protocol with the device domains it serves, and the table of clients
//! the toolstack gives it (docs/virtio.md, "The block service").
//!
//! Each client (the device domain of one guest's disk) shares one region with `blk`, owned by
//! `blk` (so it lies in no guest's RAM and a client's death cannot take it):
//!
//! - bytes `0..CONTROL_BYTES`: the request ring (client → blk) at [`REQUEST_RING`] and the
//!   completion ring (blk → client) at [`COMPLETION_RING`], [`crate::ring`] rings of
//!   [`RING_CAPACITY`] entries;
//! - then data slots of [`SLOT_BYTES`] each: a request names the slot its data is in (a write)
//!   or goes to (a read), so the drive reads or writes the slot in place (DMA) and `blk`
//!   never sees a guest's memory (requirement 3), and a client sees only its own slots.
//!
//! Everything a client writes is untrusted: [`check`] turns a request into what `blk` may do
//! with it (an absolute sector inside the client's extent of the disk, a byte range inside
//! one of its slots), or refuses it. The extent is never the client's word: it comes from
//! the table of clients the toolstack builds from the manifest ([`Client`]).

use crate::virtio::blk::SECTOR;

/// Bytes of the rings' page at the start of a client's region.
pub const CONTROL_BYTES: usize = 4096;
/// Where the request ring is in the region.
pub const REQUEST_RING: usize = 0;
/// Where the completion ring is in the region.
pub const COMPLETION_RING: usize = 2048;
/// Entries of each ring (at most this many requests in flight per client).
pub const RING_CAPACITY: u32 = 32;
/// Bytes of a request ring entry (the ring's slot, with its 4-byte length).
pub const REQUEST_SLOT: usize = 32;
/// Bytes of a completion ring entry.
pub const COMPLETION_SLOT: usize = 16;
/// Bytes of a data slot: the most one request moves. A page for each buffer a chain may
/// have: Linux gives a request at most `seg_max` data buffers (the chain's less its header
/// and status) and they are pages unless they are contiguous, so a usual request goes to the
/// drive in one piece.
pub const SLOT_BYTES: usize = crate::virtio::queue::MAX_CHAIN * crate::layout::PAGE_SIZE as usize;
/// Bytes of an encoded [`Request`].
pub const REQUEST_BYTES: usize = 24;
/// Bytes of an encoded [`Completion`].
pub const COMPLETION_BYTES: usize = 8;

/// Data slots in a client region of `bytes` bytes.
pub const fn slots(bytes: usize) -> usize {
    bytes.saturating_sub(CONTROL_BYTES) / SLOT_BYTES
}

/// The region size for `slots` data slots.
pub const fn region_bytes(slots: usize) -> usize {
    CONTROL_BYTES + slots * SLOT_BYTES
}

/// What a request asks.
pub mod op {
    /// Read `sectors` sectors into the slot.
    pub const READ: u8 = 0;
    /// Write `sectors` sectors from the slot.
    pub const WRITE: u8 = 1;
    /// Make every write completed before it durable.
    pub const FLUSH: u8 = 2;
}

/// How a request ended.
pub mod status {
    /// Done (for a write or flush: durable as the device promises).
    pub const OK: u8 = 0;
    /// The disk failed it.
    pub const IO_ERROR: u8 = 1;
    /// [`super::check`] refused it: outside the extent or the slots, or not a request.
    pub const REFUSED: u8 = 2;
}

/// A request, as a client puts it in the request ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// The client's own tag, returned in the completion.
    pub tag: u32,
    /// [`op`].
    pub op: u8,
    /// The data slot.
    pub slot: u16,
    /// Sectors to move (0 for a flush).
    pub sectors: u32,
    /// The first sector, counted from the start of the client's extent.
    pub sector: u64,
}

impl Request {
    /// The ring entry.
    pub fn encode(&self) -> [u8; REQUEST_BYTES] {
        let mut b = [0u8; REQUEST_BYTES];
        b[0..4].copy_from_slice(&self.tag.to_le_bytes());
        b[4] = self.op;
        b[6..8].copy_from_slice(&self.slot.to_le_bytes());
        b[8..12].copy_from_slice(&self.sectors.to_le_bytes());
        b[16..24].copy_from_slice(&self.sector.to_le_bytes());
        b
    }

    /// Reads a ring entry; `None` unless it is exactly [`REQUEST_BYTES`] long.
    pub fn decode(b: &[u8]) -> Option<Request> {
        let b: &[u8; REQUEST_BYTES] = b.try_into().ok()?;
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut sector = [0u8; 8];
        sector.copy_from_slice(&b[16..24]);
        Some(Request {
            tag: u32_at(0),
            op: b[4],
            slot: u16::from_le_bytes([b[6], b[7]]),
            sectors: u32_at(8),
            sector: u64::from_le_bytes(sector),
        })
    }
}

/// A completion, as `blk` puts it in the completion ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// The request's tag.
    pub tag: u32,
    /// [`status`].
    pub status: u8,
}

impl Completion {
    /// The ring entry.
    pub fn encode(&self) -> [u8; COMPLETION_BYTES] {
        let mut b = [0u8; COMPLETION_BYTES];
        b[0..4].copy_from_slice(&self.tag.to_le_bytes());
        b[4] = self.status;
        b
    }

    /// Reads a ring entry; `None` unless it is exactly [`COMPLETION_BYTES`] long.
    pub fn decode(b: &[u8]) -> Option<Completion> {
        let b: &[u8; COMPLETION_BYTES] = b.try_into().ok()?;
        Some(Completion {
            tag: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            status: b[4],
        })
    }
}

/// A client's extent of the disk, in sectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// Its first sector on the disk.
    pub first: u64,
    /// Its length.
    pub sectors: u64,
}

/// What `blk` may do for a request that [`check`] accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    /// Read `bytes` from the disk at absolute sector `sector` into the region at `at`.
    Read {
        /// Absolute sector.
        sector: u64,
        /// Offset in the client's region.
        at: usize,
        /// Bytes.
        bytes: usize,
    },
    /// Write `bytes` from the region at `at` to the disk at absolute sector `sector`.
    Write {
        /// Absolute sector.
        sector: u64,
        /// Offset in the client's region.
        at: usize,
        /// Bytes.
        bytes: usize,
    },
    /// Flush the disk.
    Flush,
}

/// What `blk` may do for `request` of a client with `extent` and `slots` data slots: every
/// sector inside the extent (no wrap), every byte inside one slot, or `None`.
pub fn check(request: &Request, extent: Extent, slots: usize) -> Option<Work> {
    if request.op == op::FLUSH {
        return Some(Work::Flush);
    }
    let bytes = usize::try_from(u64::from(request.sectors).checked_mul(SECTOR)?).ok()?;
    if request.sectors == 0 || bytes > SLOT_BYTES || usize::from(request.slot) >= slots {
        return None;
    }
    let end = request.sector.checked_add(u64::from(request.sectors))?;
    if end > extent.sectors {
        return None;
    }
    let sector = extent.first.checked_add(request.sector)?;
    let at = CONTROL_BYTES + usize::from(request.slot) * SLOT_BYTES;
    match request.op {
        op::READ => Some(Work::Read { sector, at, bytes }),
        op::WRITE => Some(Work::Write { sector, at, bytes }),
        _ => None,
    }
}

/// One client in the table the toolstack gives `blk` (through [`Client::encode`] into the
/// domain's configuration): the name of its channel end and region in `blk`'s boot-info page,
/// and its extent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    /// The channel end and region name.
    pub name: [u8; crate::bootinfo::NAME_LEN],
    /// Its extent of the disk.
    pub extent: Extent,
}

/// Bytes of an encoded [`Client`].
pub const CLIENT_BYTES: usize = crate::bootinfo::NAME_LEN + 16;
/// What a client table starts with.
pub const CLIENTS_MAGIC: [u8; 8] = *b"MICABLK1";
/// The most clients a table holds.
pub const MAX_CLIENTS: usize = 16;
/// Bytes of a table of [`MAX_CLIENTS`] (magic, count, entries).
pub const CLIENTS_BYTES: usize = 16 + MAX_CLIENTS * CLIENT_BYTES;

const _: () = assert!(CLIENTS_BYTES <= crate::config::BYTES);

/// The table of `clients` (at most [`MAX_CLIENTS`], else `None`).
pub fn encode_clients(clients: &[Client]) -> Option<[u8; CLIENTS_BYTES]> {
    if clients.len() > MAX_CLIENTS {
        return None;
    }
    let mut b = [0u8; CLIENTS_BYTES];
    b[..8].copy_from_slice(&CLIENTS_MAGIC);
    b[8..12].copy_from_slice(&(clients.len() as u32).to_le_bytes());
    for (i, c) in clients.iter().enumerate() {
        let at = 16 + i * CLIENT_BYTES;
        b[at..at + crate::bootinfo::NAME_LEN].copy_from_slice(&c.name);
        let e = at + crate::bootinfo::NAME_LEN;
        b[e..e + 8].copy_from_slice(&c.extent.first.to_le_bytes());
        b[e + 8..e + 16].copy_from_slice(&c.extent.sectors.to_le_bytes());
    }
    Some(b)
}

/// Client `index` of a table, if the table is one and has it.
pub fn client(table: &[u8], index: usize) -> Option<Client> {
    if table.get(..8)? != CLIENTS_MAGIC {
        return None;
    }
    let count = u32::from_le_bytes(table.get(8..12)?.try_into().ok()?) as usize;
    if index >= count.min(MAX_CLIENTS) {
        return None;
    }
    let at = 16 + index * CLIENT_BYTES;
    let entry = table.get(at..at + CLIENT_BYTES)?;
    let mut name = [0u8; crate::bootinfo::NAME_LEN];
    name.copy_from_slice(&entry[..crate::bootinfo::NAME_LEN]);
    let e = &entry[crate::bootinfo::NAME_LEN..];
    Some(Client {
        name,
        extent: Extent {
            first: u64::from_le_bytes(e[..8].try_into().ok()?),
            sectors: u64::from_le_bytes(e[8..16].try_into().ok()?),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXTENT: Extent = Extent {
        first: 1000,
        sectors: 4096,
    };

    fn read(slot: u16, sector: u64, sectors: u32) -> Request {
        Request {
            tag: 7,
            op: op::READ,
            slot,
            sectors,
            sector,
        }
    }

    #[test]
    fn the_rings_and_slots_fit_their_places() {
        use crate::ring::{Geometry, HEADER_SIZE};
        let requests = Geometry::new(RING_CAPACITY, REQUEST_SLOT, COMPLETION_RING).unwrap();
        let completions = Geometry::new(
            RING_CAPACITY,
            COMPLETION_SLOT,
            CONTROL_BYTES - COMPLETION_RING,
        )
        .unwrap();
        assert!(REQUEST_RING + requests.size() <= COMPLETION_RING);
        assert!(COMPLETION_RING + completions.size() <= CONTROL_BYTES);
        // A ring slot holds the message and its length.
        const { assert!(REQUEST_BYTES + 4 <= REQUEST_SLOT && COMPLETION_BYTES + 4 <= COMPLETION_SLOT) };
        const { assert!(HEADER_SIZE < COMPLETION_RING) };
        assert_eq!(slots(region_bytes(4)), 4);
        assert_eq!(slots(CONTROL_BYTES - 1), 0);
        assert!((SLOT_BYTES as u64).is_multiple_of(SECTOR));
    }

    #[test]
    fn messages_round_trip_and_other_lengths_are_refused() {
        let r = Request {
            tag: 0xDEAD_BEEF,
            op: op::WRITE,
            slot: 3,
            sectors: 128,
            sector: u64::MAX - 5,
        };
        assert_eq!(Request::decode(&r.encode()), Some(r));
        assert_eq!(Request::decode(&r.encode()[..23]), None);
        let c = Completion {
            tag: 9,
            status: status::IO_ERROR,
        };
        assert_eq!(Completion::decode(&c.encode()), Some(c));
        assert_eq!(Completion::decode(&[0; 9]), None);
    }

    #[test]
    fn requests_stay_inside_the_extent_and_the_slots() {
        assert_eq!(
            check(&read(1, 0, 8), EXTENT, 2),
            Some(Work::Read {
                sector: 1000,
                at: CONTROL_BYTES + SLOT_BYTES,
                bytes: 4096
            })
        );
        // The last sectors of the extent, a whole slot.
        let whole = (SLOT_BYTES as u64 / SECTOR) as u32;
        assert!(check(
            &read(0, EXTENT.sectors - u64::from(whole), whole),
            EXTENT,
            1
        )
        .is_some());
        for bad in [
            read(0, 4090, 8),      // past the extent's end
            read(0, u64::MAX, 2),  // wraps
            read(2, 0, 1),         // no such slot
            read(0, 0, 0),         // nothing
            read(0, 0, whole + 1), // more than a slot
            read(0, 0, u32::MAX),  // far more
        ] {
            assert_eq!(check(&bad, EXTENT, 2), None, "{bad:?}");
        }
        let mut unknown = read(0, 0, 1);
        unknown.op = 9;
        assert_eq!(check(&unknown, EXTENT, 2), None);
        let mut flush = read(99, u64::MAX, 0);
        flush.op = op::FLUSH;
        assert_eq!(check(&flush, EXTENT, 2), Some(Work::Flush));
        // Writes like reads.
        let mut write = read(0, 255, 1);
        write.op = op::WRITE;
        assert_eq!(
            check(&write, EXTENT, 1),
            Some(Work::Write {
                sector: 1255,
                at: CONTROL_BYTES,
                bytes: 512
            })
        );
    }

    /// Every request over a small space of values: an accepted one lies inside the extent
    /// and inside one slot of the region.
    #[test]
    fn nothing_accepted_leaves_the_extent_or_the_region() {
        let slots_n = 3;
        let region = region_bytes(slots_n);
        for op in 0..4u8 {
            for slot in 0..5u16 {
                for sector in [
                    0,
                    1,
                    127,
                    128,
                    255,
                    256,
                    3584,
                    3585,
                    4095,
                    4096,
                    u64::MAX - 1,
                ] {
                    for sectors in [0, 1, 2, 64, 128, 256, 511, 512, 513, 4096] {
                        let r = Request {
                            tag: 0,
                            op,
                            slot,
                            sectors,
                            sector,
                        };
                        match check(&r, EXTENT, slots_n) {
                            None | Some(Work::Flush) => {}
                            Some(Work::Read {
                                sector: s,
                                at,
                                bytes,
                            })
                            | Some(Work::Write {
                                sector: s,
                                at,
                                bytes,
                            }) => {
                                assert!(s >= EXTENT.first);
                                assert!(s + bytes as u64 / SECTOR <= EXTENT.first + EXTENT.sectors);
                                assert!(at >= CONTROL_BYTES && at + bytes <= region);
                                let slot_start = (at - CONTROL_BYTES) / SLOT_BYTES;
                                assert_eq!(
                                    (at + bytes - 1 - CONTROL_BYTES) / SLOT_BYTES,
                                    slot_start
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_client_table_round_trips_and_refuses_what_it_is_not() {
        let mut name = [0u8; crate::bootinfo::NAME_LEN];
        name[..3].copy_from_slice(b"vda");
        let clients = [
            Client {
                name,
                extent: EXTENT,
            },
            Client {
                name,
                extent: Extent {
                    first: 5,
                    sectors: 6,
                },
            },
        ];
        let table = encode_clients(&clients).unwrap();
        assert_eq!(client(&table, 0), Some(clients[0].clone()));
        assert_eq!(client(&table, 1), Some(clients[1].clone()));
        assert_eq!(client(&table, 2), None);
        assert_eq!(client(&[0u8; CLIENTS_BYTES], 0), None);
        // A count past the table is clamped, a short table refused.
        let mut big = table;
        big[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(client(&big, MAX_CLIENTS - 1).is_some());
        assert_eq!(client(&big, MAX_CLIENTS), None);
        assert_eq!(client(&table[..40], 0), None);
        assert!(encode_clients(&vec![clients[0].clone(); MAX_CLIENTS + 1]).is_none());
    }
}
