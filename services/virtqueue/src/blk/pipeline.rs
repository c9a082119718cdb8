//! Block requests that complete later: the device domain of a disk that is an extent of a
//! real disk (docs/virtio.md) keeps several of its guest's requests in flight at once, each in
//! one data slot of the block service's region.
//!
//! A chain taken from the queue is read as a request ([`super::parse`]); what needs the disk
//! (a read, a write, a flush) waits for a free slot, then goes to the [`Backend`] and is given
//! back when the backend answers, in whatever order it answers (virtio lets a device use
//! chains in any order). A request larger than a slot moves through its slot a slot's worth at
//! a time. What needs no disk (`GET_ID`, an unknown type, data past the disk) is answered at
//! once. No chain is taken while every slot is busy, so the guest's queue holds what waits.
//!
//! A request of an epoch before the guest's last reset is dropped when its answer comes:
//! nothing is written into the guest's memory for it, and its slot is free again only then
//! (the backend may still be writing into it until it answers).

use mica_abi::virtio::blk::{request, result, SECTOR};

use super::{copy_in, finish, identifier, parse, pieces, Ask, Parsed, Unanswerable};
use crate::{Broken, Chain, GuestMemory, Queue};

/// Most requests in flight at once (the backend's slots beyond it go unused).
pub const MAX_IN_FLIGHT: usize = 8;

/// What a backend is asked to do with a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Read `sectors` from `sector` into the slot.
    Read {
        /// The data slot.
        slot: usize,
        /// First sector of the disk.
        sector: u64,
        /// Sectors.
        sectors: u32,
    },
    /// Write `sectors` at `sector` from the slot.
    Write {
        /// The data slot.
        slot: usize,
        /// First sector of the disk.
        sector: u64,
        /// Sectors.
        sectors: u32,
    },
    /// Make every completed write durable.
    Flush,
}

/// A disk whose requests complete later, with data slots the device domain fills and reads.
pub trait Backend {
    /// The guest memory its data moves to and from (one copy each way: straight between a
    /// slot and the guest's buffer).
    type Memory: GuestMemory;
    /// Its size in sectors.
    fn sectors(&self) -> u64;
    /// Its identifier (`GET_ID`: at most 20 bytes).
    fn id(&self) -> &[u8];
    /// Its data slots.
    fn slots(&self) -> usize;
    /// Bytes of each slot (a multiple of [`SECTOR`]).
    fn slot_bytes(&self) -> usize;
    /// Copies `len` bytes of the guest's memory at `addr` into slot `slot` at offset `at`;
    /// `false` (nothing copied) unless they all lie in its RAM. `at + len` is at most
    /// [`slot_bytes`](Self::slot_bytes).
    fn copy_from_guest(
        &mut self,
        slot: usize,
        at: usize,
        mem: &Self::Memory,
        addr: u64,
        len: usize,
    ) -> bool;
    /// Copies `len` bytes of slot `slot` at offset `at` to the guest's memory at `addr`;
    /// `false` (nothing copied) unless they all lie in its RAM.
    fn copy_to_guest(
        &self,
        slot: usize,
        at: usize,
        mem: &mut Self::Memory,
        addr: u64,
        len: usize,
    ) -> bool;
    /// Asks for `op`, answered later with `tag`; `false` if it cannot take it.
    fn submit(&mut self, tag: u32, op: Op) -> bool;
    /// The next answer: a tag it was given and whether the operation succeeded.
    fn poll(&mut self) -> Option<(u32, bool)>;
}

/// Why a step stopped: the guest broke its queue, or a chain is no block request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The queue broke a rule ([`Broken`]).
    Queue(Broken),
    /// A chain without a whole header or a byte for its status.
    NotARequest,
}

impl From<Broken> for Fault {
    fn from(b: Broken) -> Self {
        Fault::Queue(b)
    }
}

impl From<Unanswerable> for Fault {
    fn from(_: Unanswerable) -> Self {
        Fault::NotARequest
    }
}

/// What one [`Pipeline::step`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Chains given back to the guest.
    pub used: u32,
    /// Operations submitted to the backend.
    pub submitted: u32,
    /// It stopped after [`MAX_TAKEN_PER_STEP`] chains: step again before waiting.
    pub more: bool,
}

/// Most chains one [`Pipeline::step`] takes: a guest that keeps its queue full of requests
/// answered at once (`GET_ID`) cannot keep its device domain from everything else.
pub const MAX_TAKEN_PER_STEP: u32 = 64;

/// One request in flight, in the slot of its index.
#[derive(Clone, Debug)]
struct InFlight {
    chain: Chain,
    parsed: Parsed,
    /// The device's epoch when the chain was taken.
    epoch: u32,
    /// The tag of the operation in flight.
    tag: u32,
    /// Data bytes moved by the operations answered so far.
    done: u64,
    /// Data bytes of the operation in flight.
    piece: u64,
}

/// The requests of one device in flight.
#[derive(Debug)]
pub struct Pipeline {
    slots: heapless::Vec<Option<InFlight>, MAX_IN_FLIGHT>,
    piece_bytes: u64,
    sequence: u32,
    most: usize,
}

impl Pipeline {
    /// Nothing in flight, with as many slots as `backend` has (at most [`MAX_IN_FLIGHT`]).
    pub fn new(backend: &impl Backend) -> Self {
        // Whole sectors, and few enough of them for an operation's 32-bit count.
        let piece_bytes = (backend.slot_bytes() as u64).min(u64::from(u32::MAX)) / SECTOR * SECTOR;
        let count = if piece_bytes == 0 {
            0
        } else {
            backend.slots().min(MAX_IN_FLIGHT)
        };
        let mut slots = heapless::Vec::new();
        slots.extend((0..count).map(|_| None));
        Pipeline {
            slots,
            piece_bytes,
            sequence: 0,
            most: 0,
        }
    }

    /// Requests in flight (of any epoch).
    pub fn in_flight(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    /// The most requests that were in flight at once.
    pub fn most_in_flight(&self) -> usize {
        self.most
    }

    /// The most requests it keeps in flight (the backend's slots, at most [`MAX_IN_FLIGHT`]).
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Takes the backend's answers and the guest's new chains until neither comes. `live` is
    /// the device's queue and its epoch while the driver drives it (`None`: answers are
    /// dropped and no chain is taken).
    pub fn step<B: Backend>(
        &mut self,
        mut live: Option<(u32, &mut Queue)>,
        mem: &mut B::Memory,
        backend: &mut B,
    ) -> Result<Progress, Fault> {
        let mut progress = Progress::default();
        let mut taken = 0u32;
        loop {
            let mut moved = false;
            while let Some((tag, ok)) = backend.poll() {
                moved = true;
                self.answer(tag, ok, live.as_mut(), mem, backend, &mut progress)?;
            }
            if let Some((epoch, queue)) = live.as_mut() {
                while let Some(free) = self.slots.iter().position(Option::is_none) {
                    if taken == MAX_TAKEN_PER_STEP {
                        progress.more = true;
                        return Ok(progress);
                    }
                    let Some(chain) = queue.pop(mem)? else {
                        break;
                    };
                    moved = true;
                    taken += 1;
                    self.start(free, chain, *epoch, queue, mem, backend, &mut progress)?;
                }
            }
            if !moved {
                return Ok(progress);
            }
        }
    }

    /// Begins `chain` in slot `free`: answered at once, or its first operation submitted.
    #[allow(clippy::too_many_arguments)]
    fn start<B: Backend>(
        &mut self,
        free: usize,
        chain: Chain,
        epoch: u32,
        queue: &mut Queue,
        mem: &mut B::Memory,
        backend: &mut B,
        progress: &mut Progress,
    ) -> Result<(), Fault> {
        let parsed = parse(&chain, mem, backend.sectors())?;
        let now = match parsed.ask {
            Ask::Fail(status) => Some((status, 0)),
            Ask::GetId if copy_in(&chain, mem, 0, &identifier(backend.id())) => {
                Some((result::OK, 20))
            }
            Ask::GetId => Some((result::IOERR, 0)),
            Ask::Read { .. } | Ask::Write { .. } | Ask::Flush => None,
        };
        if let Some((status, written)) = now {
            let len = finish(&chain, mem, &parsed, status, written)?;
            queue.push_used(mem, chain.head, len)?;
            progress.used += 1;
            return Ok(());
        }
        let mut entry = InFlight {
            chain,
            parsed,
            epoch,
            tag: 0,
            done: 0,
            piece: 0,
        };
        match self.submit(free, &mut entry, mem, backend) {
            true => {
                progress.submitted += 1;
                if let Some(slot) = self.slots.get_mut(free) {
                    *slot = Some(entry);
                }
                self.most = self.most.max(self.in_flight());
                Ok(())
            }
            false => {
                let len = finish(&entry.chain, mem, &entry.parsed, result::IOERR, 0)?;
                queue.push_used(mem, entry.chain.head, len)?;
                progress.used += 1;
                Ok(())
            }
        }
    }

    /// Submits the next operation of `entry` (in slot `slot`): the next piece of its data,
    /// or its flush. `false` if the data could not be taken from the guest or the backend
    /// refused.
    fn submit<B: Backend>(
        &mut self,
        slot: usize,
        entry: &mut InFlight,
        mem: &mut B::Memory,
        backend: &mut B,
    ) -> bool {
        self.sequence = self.sequence.wrapping_add(1) & 0x00FF_FFFF;
        entry.tag = self.sequence << 8 | slot as u32;
        let op = match entry.parsed.ask {
            Ask::Read { sector, bytes } => {
                entry.piece = (bytes - entry.done).min(self.piece_bytes);
                Op::Read {
                    slot,
                    sector: sector + entry.done / SECTOR,
                    sectors: (entry.piece / SECTOR) as u32,
                }
            }
            Ask::Write { sector, bytes } => {
                entry.piece = (bytes - entry.done).min(self.piece_bytes);
                let from = request::HEADER + entry.done;
                let mut moved = 0;
                for (addr, at, n) in pieces(&entry.chain, false, from, entry.piece as usize) {
                    if !backend.copy_from_guest(slot, at, mem, addr, n) {
                        return false;
                    }
                    moved += n as u64;
                }
                if moved != entry.piece {
                    return false;
                }
                Op::Write {
                    slot,
                    sector: sector + entry.done / SECTOR,
                    sectors: (entry.piece / SECTOR) as u32,
                }
            }
            Ask::Flush => {
                entry.piece = 0;
                Op::Flush
            }
            Ask::GetId | Ask::Fail(_) => return false,
        };
        backend.submit(entry.tag, op)
    }

    /// The backend answered `tag`: the request's next operation, or the chain given back
    /// (dropped if it was taken before the guest's last reset).
    fn answer<B: Backend>(
        &mut self,
        tag: u32,
        ok: bool,
        live: Option<&mut (u32, &mut Queue)>,
        mem: &mut B::Memory,
        backend: &mut B,
        progress: &mut Progress,
    ) -> Result<(), Fault> {
        let slot = (tag & 0xFF) as usize;
        // An answer to nothing in flight (a backend's mistake) changes nothing.
        let Some(mut entry) = self
            .slots
            .get_mut(slot)
            .and_then(|s| s.take_if(|e| e.tag == tag))
        else {
            return Ok(());
        };
        let Some((_, queue)) = live.filter(|(epoch, _)| *epoch == entry.epoch) else {
            return Ok(());
        };
        let mut status = if ok { result::OK } else { result::IOERR };
        if ok {
            if let Ask::Read { .. } = entry.parsed.ask {
                let mut moved = 0;
                for (addr, at, n) in pieces(&entry.chain, true, entry.done, entry.piece as usize) {
                    if !backend.copy_to_guest(slot, at, mem, addr, n) {
                        break;
                    }
                    moved += n as u64;
                }
                if moved != entry.piece {
                    status = result::IOERR;
                }
            }
        }
        if status == result::OK {
            entry.done += entry.piece;
            let total = match entry.parsed.ask {
                Ask::Read { bytes, .. } | Ask::Write { bytes, .. } => bytes,
                _ => 0,
            };
            if entry.done < total {
                if self.submit(slot, &mut entry, mem, backend) {
                    progress.submitted += 1;
                    if let Some(s) = self.slots.get_mut(slot) {
                        *s = Some(entry);
                    }
                    return Ok(());
                }
                status = result::IOERR;
            }
        }
        let written = match entry.parsed.ask {
            Ask::Read { .. } => entry.done,
            _ => 0,
        };
        let len = finish(&entry.chain, mem, &entry.parsed, status, written)?;
        queue.push_used(mem, entry.chain.head, len)?;
        progress.used += 1;
        Ok(())
    }
}
