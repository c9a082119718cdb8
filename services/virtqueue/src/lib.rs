//! The device side of a split virtqueue (virtio 1.2, section 2.7), over memory a guest
//! controls: what a device domain uses to take requests from a guest's queue and give them
//! back (docs/virtio.md).
//!
//! Everything in the queue is the guest's to write, at any time, so nothing read from it is
//! trusted (requirement 4 of docs/virtio.md):
//! - the available index may move by at most the queue's size past what was taken
//!   ([`Broken::IndexJump`]); a head or `next` must name a descriptor of the table;
//! - a chain ends after at most [`MAX_CHAIN`] buffers, so a descriptor loop ends there
//!   ([`Broken::TooLong`]); an indirect table is followed only from the main table, is a whole
//!   number of descriptors, at most [`MAX_CHAIN`] of them, and is never combined with `NEXT`;
//! - every buffer lies wholly inside the guest's RAM ([`GuestMemory::contains`]), device-writable
//!   buffers come after every device-readable one, and lengths add up without overflow;
//! - every ring access goes through [`GuestMemory`], which refuses what is outside the RAM.
//!
//! Memory ordering: the index that publishes entries is read before them (acquire), the used
//! element and the data before the used index (release), and each event index written before
//! the other side's is read (full fence); `GuestMemory`'s accesses must be plain loads and
//! stores of normal memory for these fences to order them.
//!
//! A broken queue is reported, not repaired: the device domain then tells the kernel
//! (`virtio_signal` with `broken`), and the guest's device needs a reset. Nothing here panics
//! or loops on any memory content (the tests feed it random memory).

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

use core::sync::atomic::{fence, Ordering};

use mica_abi::virtio::queue::{self, F_INDIRECT, F_NEXT, F_WRITE};

pub mod blk;

/// Most buffers of one chain a device takes (`seg_max` + 2 for a block device).
pub use mica_abi::virtio::queue::MAX_CHAIN;

/// Available ring flag: the driver asks for no interrupts (ignored with event indices).
const AVAIL_F_NO_INTERRUPT: u16 = 1;
/// Used ring flag: the device asks for no notifications (ignored with event indices).
const USED_F_NO_NOTIFY: u16 = 1;

/// A guest's memory as the device domain reaches it, by guest-physical address.
pub trait GuestMemory {
    /// Whether `[addr, addr + len)` lies wholly in the guest's RAM.
    fn contains(&self, addr: u64, len: u64) -> bool;
    /// Copies `buf.len()` bytes from `addr`; `false` (nothing read) outside the RAM.
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool;
    /// Copies `bytes` to `addr`; `false` (nothing written) outside the RAM.
    fn write(&mut self, addr: u64, bytes: &[u8]) -> bool;
}

/// How the guest broke its queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Broken {
    /// A ring or a descriptor table is not in its RAM.
    OutsideRam,
    /// The available index moved more than the queue's size past what was taken.
    IndexJump,
    /// A head or a `next` names no descriptor of its table.
    BadIndex,
    /// A chain has more than [`MAX_CHAIN`] buffers (or loops).
    TooLong,
    /// An indirect table that is empty, not whole descriptors, too long, nested, or with
    /// `NEXT`.
    BadIndirect,
    /// A buffer outside its RAM, or lengths that overflow.
    BadBuffer,
    /// A device-readable buffer after a device-writable one.
    ReadAfterWrite,
}

/// One buffer of a chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buffer {
    /// Guest-physical address (the whole buffer is in the guest's RAM).
    pub addr: u64,
    /// Bytes.
    pub len: u32,
    /// The device writes it (else it reads it).
    pub device_writes: bool,
}

/// A request: the buffers of one chain, device-readable ones first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    /// The head descriptor's index (what goes back in the used ring).
    pub head: u16,
    /// Its buffers, in order.
    pub buffers: heapless::Vec<Buffer, MAX_CHAIN>,
}

impl Chain {
    /// Bytes the device may read, and bytes it may write.
    pub fn lengths(&self) -> (u64, u64) {
        let total = |w: bool| {
            self.buffers
                .iter()
                .filter(|b| b.device_writes == w)
                .map(|b| u64::from(b.len))
                .sum()
        };
        (total(false), total(true))
    }
}

/// A live queue as its device sees it: where the guest put it, and how far the device got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Queue {
    size: u16,
    desc: u64,
    driver: u64,
    device: u64,
    event_idx: bool,
    last_avail: u16,
    used: u16,
}

impl Queue {
    /// The queue of `size` entries (a power of two, as the kernel checked) at `desc`,
    /// `driver` (available ring) and `device` (used ring), with event indices if
    /// `VIRTIO_F_EVENT_IDX` was negotiated; nothing taken or used yet.
    pub fn new(size: u16, desc: u64, driver: u64, device: u64, event_idx: bool) -> Self {
        Queue {
            size,
            desc,
            driver,
            device,
            event_idx,
            last_avail: 0,
            used: 0,
        }
    }

    /// The available index up to which chains were taken, and the used index published:
    /// what a restarted device domain resumes from.
    pub fn positions(&self) -> (u16, u16) {
        (self.last_avail, self.used)
    }

    /// Resumes from `positions` (see [`positions`](Self::positions)).
    pub fn resume(&mut self, (last_avail, used): (u16, u16)) {
        self.last_avail = last_avail;
        self.used = used;
    }

    /// Takes the next chain the driver made available, if any.
    pub fn pop(&mut self, mem: &mut impl GuestMemory) -> Result<Option<Chain>, Broken> {
        let avail = read_u16(mem, self.driver + 2)?;
        let pending = avail.wrapping_sub(self.last_avail);
        if pending == 0 {
            return Ok(None);
        }
        // The ring entry and the descriptors are read after the index that published them.
        fence(Ordering::Acquire);
        if self.size == 0 || pending > self.size {
            return Err(Broken::IndexJump);
        }
        let slot = u64::from(self.last_avail % self.size);
        let head = read_u16(mem, self.driver + 4 + 2 * slot)?;
        let chain = self.walk(mem, head)?;
        self.last_avail = self.last_avail.wrapping_add(1);
        if self.event_idx {
            // avail_event: notify again once past what was taken. A caller about to wait
            // pops once more after this (the fence orders this write before that read), so a
            // chain made available meanwhile is not missed.
            let at = self.device + 4 + 8 * u64::from(self.size);
            write(mem, at, &self.last_avail.to_le_bytes())?;
            fence(Ordering::SeqCst);
        }
        Ok(Some(chain))
    }

    /// Gives chain `head` back with `written` bytes written into its buffers: the used
    /// element first, then the used index (the driver reads them in that order).
    pub fn push_used(
        &mut self,
        mem: &mut impl GuestMemory,
        head: u16,
        written: u32,
    ) -> Result<(), Broken> {
        if self.size == 0 {
            return Err(Broken::IndexJump);
        }
        let slot = u64::from(self.used % self.size);
        let mut element = [0u8; 8];
        element[..4].copy_from_slice(&u32::from(head).to_le_bytes());
        element[4..].copy_from_slice(&written.to_le_bytes());
        write(mem, self.device + 4 + 8 * slot, &element)?;
        self.used = self.used.wrapping_add(1);
        // The element (and the data written into the buffers) before the index.
        fence(Ordering::Release);
        write(mem, self.device + 2, &self.used.to_le_bytes())
    }

    /// Whether the driver wants an interrupt for what was used since the used index was
    /// `before`: with event indices, once the used index passed its `used_event`; otherwise
    /// unless it set `NO_INTERRUPT`.
    pub fn wants_interrupt(&self, mem: &mut impl GuestMemory, before: u16) -> Result<bool, Broken> {
        if self.used == before {
            return Ok(false);
        }
        // The used index written before the driver's wishes are read.
        fence(Ordering::SeqCst);
        if self.event_idx {
            let used_event = read_u16(mem, self.driver + 4 + 2 * u64::from(self.size))?;
            // virtio 1.2, 2.7.10: new - event - 1 < new - old, in 16-bit arithmetic.
            let new = self.used;
            return Ok(new.wrapping_sub(used_event).wrapping_sub(1) < new.wrapping_sub(before));
        }
        Ok(read_u16(mem, self.driver)? & AVAIL_F_NO_INTERRUPT == 0)
    }

    /// Tells the driver whether to notify (without event indices: the used ring's flag).
    pub fn ask_notifications(&self, mem: &mut impl GuestMemory, on: bool) -> Result<(), Broken> {
        if self.event_idx {
            return Ok(());
        }
        let flags: u16 = if on { 0 } else { USED_F_NO_NOTIFY };
        write(mem, self.device, &flags.to_le_bytes())
    }

    /// Follows the chain from `head`, checking everything (see the module's rules).
    fn walk(&self, mem: &mut impl GuestMemory, head: u16) -> Result<Chain, Broken> {
        let mut chain = Chain {
            head,
            buffers: heapless::Vec::new(),
        };
        // The table being walked: the queue's, or an indirect one.
        let (mut table, mut entries, mut indirect) = (self.desc, self.size, false);
        let mut index = head;
        let mut writing = false;
        let mut total = 0u64;
        // Each step adds a buffer or enters the one indirect table: the walk ends within
        // MAX_CHAIN + 2 steps whatever the memory holds.
        for _ in 0..MAX_CHAIN + 2 {
            if index >= entries {
                return Err(Broken::BadIndex);
            }
            let mut d = [0u8; queue::DESCRIPTOR as usize];
            let at = table + queue::DESCRIPTOR * u64::from(index);
            if !mem.read(at, &mut d) {
                return Err(Broken::OutsideRam);
            }
            let addr = u64::from_le_bytes(d[0..8].try_into().unwrap_or_default());
            let len = u32::from_le_bytes(d[8..12].try_into().unwrap_or_default());
            let flags = u16::from_le_bytes([d[12], d[13]]);
            let next = u16::from_le_bytes([d[14], d[15]]);
            if flags & F_INDIRECT != 0 {
                let count = u64::from(len) / queue::DESCRIPTOR;
                let whole = u64::from(len).is_multiple_of(queue::DESCRIPTOR);
                if indirect || flags & F_NEXT != 0 || count == 0 || !whole {
                    return Err(Broken::BadIndirect);
                }
                if count > MAX_CHAIN as u64 {
                    return Err(Broken::BadIndirect);
                }
                if !mem.contains(addr, u64::from(len)) {
                    return Err(Broken::OutsideRam);
                }
                (table, entries, indirect) = (addr, count as u16, true);
                index = 0;
                continue;
            }
            let device_writes = flags & F_WRITE != 0;
            if writing && !device_writes {
                return Err(Broken::ReadAfterWrite);
            }
            writing |= device_writes;
            total += u64::from(len);
            if total > u64::from(u32::MAX) || !mem.contains(addr, u64::from(len)) {
                return Err(Broken::BadBuffer);
            }
            let buffer = Buffer {
                addr,
                len,
                device_writes,
            };
            chain.buffers.push(buffer).map_err(|_| Broken::TooLong)?;
            if flags & F_NEXT == 0 {
                return Ok(chain);
            }
            index = next;
        }
        Err(Broken::TooLong)
    }
}

fn read_u16(mem: &impl GuestMemory, addr: u64) -> Result<u16, Broken> {
    let mut b = [0u8; 2];
    if !mem.read(addr, &mut b) {
        return Err(Broken::OutsideRam);
    }
    Ok(u16::from_le_bytes(b))
}

fn write(mem: &mut impl GuestMemory, addr: u64, bytes: &[u8]) -> Result<(), Broken> {
    if mem.write(addr, bytes) {
        Ok(())
    } else {
        Err(Broken::OutsideRam)
    }
}

#[cfg(test)]
mod tests;
