//! A virtio-blk request (virtio 1.2, 5.2.6), carried out against a [`Disk`]: what a device
//! domain does with each chain it takes from a guest's queue.
//!
//! The request's layout is the guest's to choose, within the rules: a 16-byte header (type,
//! reserved, sector) in the device-readable buffers, then the data (device-readable for a
//! write, device-writable for a read), then one status byte, the last device-writable byte.
//! The header and the data may be split across buffers in any way. What is checked:
//! - a chain without a whole header or without a byte to write the status into cannot be
//!   answered: [`Unanswerable`] (the device domain reports the queue broken);
//! - a read or write whose data is not whole sectors, or reaches past the disk, completes with
//!   `IOERR` and touches nothing; an unknown type with `UNSUPP`;
//! - a flush completes only when the disk says everything before it is durable.

use mica_abi::virtio::blk::{request, result, SECTOR};

use crate::{Chain, GuestMemory};

pub mod pipeline;

/// The storage behind a block device (a RAM disk, an extent of a real disk).
pub trait Disk {
    /// Its size in sectors.
    fn sectors(&self) -> u64;
    /// Reads whole sectors from `sector` into `buf` (a multiple of [`SECTOR`] bytes).
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> bool;
    /// Writes whole sectors at `sector`; done when it returns `true`.
    fn write(&mut self, sector: u64, data: &[u8]) -> bool;
    /// Makes every completed write durable.
    fn flush(&mut self) -> bool;
    /// Its identifier (`GET_ID`: at most 20 bytes).
    fn id(&self) -> &[u8];
}

/// A chain that is no block request: no whole header, or no byte for the status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unanswerable;

/// Bytes moved between the guest and the disk at a time.
const CHUNK: usize = 4096;

/// What a chain asks, once its header is read and its data checked against the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ask {
    /// `IN`: `bytes` (whole sectors inside the disk) from `sector` into the device-writable
    /// bytes before the status.
    Read {
        /// First sector.
        sector: u64,
        /// Bytes.
        bytes: u64,
    },
    /// `OUT`: `bytes` (whole sectors inside the disk) at `sector` from the device-readable
    /// bytes after the header.
    Write {
        /// First sector.
        sector: u64,
        /// Bytes.
        bytes: u64,
    },
    /// `FLUSH`.
    Flush,
    /// `GET_ID`, with room for the 20 bytes of the identifier.
    GetId,
    /// Answered at once with this status, touching nothing: an unknown type (`UNSUPP`), data
    /// that is not whole sectors or reaches past the disk (`IOERR`).
    Fail(u8),
}

/// A chain read as a block request: what it asks and where its status byte goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// What it asks.
    pub ask: Ask,
    /// Offset of the status byte in the chain's device-writable bytes (the last one).
    status_at: u64,
}

/// Reads the request in `chain` for a disk of `sectors` sectors.
pub fn parse(
    chain: &Chain,
    mem: &mut impl GuestMemory,
    sectors: u64,
) -> Result<Parsed, Unanswerable> {
    let (readable, writable) = chain.lengths();
    if readable < request::HEADER || writable == 0 {
        return Err(Unanswerable);
    }
    let mut header = [0u8; request::HEADER as usize];
    if !copy_out(chain, mem, 0, &mut header) {
        return Err(Unanswerable);
    }
    let kind = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let sector = u64::from_le_bytes(header[8..16].try_into().unwrap_or_default());
    let status_at = writable - 1;
    let data = |bytes: u64, ask: Ask| {
        if extent(sectors, sector, bytes).is_some() {
            ask
        } else {
            Ask::Fail(result::IOERR)
        }
    };
    let ask = match kind {
        request::IN => data(
            status_at,
            Ask::Read {
                sector,
                bytes: status_at,
            },
        ),
        request::OUT => {
            let bytes = readable - request::HEADER;
            data(bytes, Ask::Write { sector, bytes })
        }
        request::FLUSH => Ask::Flush,
        request::GET_ID if status_at >= 20 => Ask::GetId,
        _ => Ask::Fail(result::UNSUPP),
    };
    Ok(Parsed { ask, status_at })
}

/// Ends the request: writes `status` into its status byte; returns the bytes written into the
/// chain's device-writable buffers (what goes in the used ring) when `data_written` bytes of
/// data were.
pub fn finish(
    chain: &Chain,
    mem: &mut impl GuestMemory,
    parsed: &Parsed,
    status: u8,
    data_written: u64,
) -> Result<u32, Unanswerable> {
    if !copy_in(chain, mem, parsed.status_at, &[status]) {
        return Err(Unanswerable);
    }
    Ok((data_written.min(parsed.status_at) + 1) as u32)
}

/// The identifier `GET_ID` writes: the disk's, cut or zero-padded to 20 bytes.
fn identifier(id: &[u8]) -> [u8; 20] {
    let mut out = [0u8; 20];
    let n = id.len().min(20);
    out[..n].copy_from_slice(&id[..n]);
    out
}

/// Carries out the request in `chain` and writes its status; returns the bytes written into
/// the chain's device-writable buffers (what goes in the used ring).
pub fn serve(
    chain: &Chain,
    mem: &mut impl GuestMemory,
    disk: &mut impl Disk,
) -> Result<u32, Unanswerable> {
    let parsed = parse(chain, mem, disk.sectors())?;
    let (status, data_written) = match parsed.ask {
        Ask::Read { sector, bytes } => read(chain, mem, disk, sector, bytes),
        Ask::Write { sector, bytes } => write(chain, mem, disk, sector, bytes),
        Ask::Flush if disk.flush() => (result::OK, 0),
        Ask::Flush => (result::IOERR, 0),
        Ask::GetId if copy_in(chain, mem, 0, &identifier(disk.id())) => (result::OK, 20),
        Ask::GetId => (result::IOERR, 0),
        Ask::Fail(status) => (status, 0),
    };
    finish(chain, mem, &parsed, status, data_written)
}

/// The sectors `[sector, sector + bytes / SECTOR)` when `bytes` is whole sectors inside a
/// disk of `sectors`.
fn extent(sectors: u64, sector: u64, bytes: u64) -> Option<u64> {
    if bytes == 0 || !bytes.is_multiple_of(SECTOR) {
        return None;
    }
    let end = sector.checked_add(bytes / SECTOR)?;
    (end <= sectors).then_some(bytes / SECTOR)
}

/// `IN` of `bytes` that [`parse`] checked: the data is the device-writable bytes before the
/// status.
fn read(
    chain: &Chain,
    mem: &mut impl GuestMemory,
    disk: &mut impl Disk,
    sector: u64,
    bytes: u64,
) -> (u8, u64) {
    let mut buf = [0u8; CHUNK];
    let mut done = 0u64;
    while done < bytes {
        let n = (bytes - done).min(CHUNK as u64) as usize;
        let at = sector + done / SECTOR;
        if !disk.read(at, &mut buf[..n]) || !copy_in(chain, mem, done, &buf[..n]) {
            return (result::IOERR, done);
        }
        done += n as u64;
    }
    (result::OK, bytes)
}

/// `OUT` of `bytes` that [`parse`] checked: the data is the device-readable bytes after the
/// header.
fn write(
    chain: &Chain,
    mem: &mut impl GuestMemory,
    disk: &mut impl Disk,
    sector: u64,
    bytes: u64,
) -> (u8, u64) {
    let mut buf = [0u8; CHUNK];
    let mut done = 0u64;
    while done < bytes {
        let n = (bytes - done).min(CHUNK as u64) as usize;
        let from = request::HEADER + done;
        if !copy_out(chain, mem, from, &mut buf[..n])
            || !disk.write(sector + done / SECTOR, &buf[..n])
        {
            return (result::IOERR, 0);
        }
        done += n as u64;
    }
    (result::OK, 0)
}

/// The pieces of bytes `[from, from + len)` of the chain's device-readable (`writable` false)
/// or device-writable bytes, taken as one run: each piece's guest-physical address, its offset
/// in the run's `[from, from + len)`, and its length.
fn pieces(
    chain: &Chain,
    writable: bool,
    from: u64,
    len: usize,
) -> impl Iterator<Item = (u64, usize, usize)> + '_ {
    let end = from + len as u64;
    let mut at = 0u64;
    chain
        .buffers
        .iter()
        .filter(move |b| b.device_writes == writable)
        .filter_map(move |b| {
            let (start, stop) = (at, at + u64::from(b.len));
            at = stop;
            let (lo, hi) = (from.max(start), end.min(stop));
            (lo < hi).then(|| {
                (
                    b.addr + (lo - start),
                    (lo - from) as usize,
                    (hi - lo) as usize,
                )
            })
        })
}

/// Copies `out.len()` bytes from offset `from` of the chain's device-readable bytes.
fn copy_out(chain: &Chain, mem: &mut impl GuestMemory, from: u64, out: &mut [u8]) -> bool {
    let mut filled = 0;
    for (addr, at, n) in pieces(chain, false, from, out.len()) {
        if !mem.read(addr, &mut out[at..at + n]) {
            return false;
        }
        filled += n;
    }
    filled == out.len()
}

/// Copies `bytes` to offset `to` of the chain's device-writable bytes.
fn copy_in(chain: &Chain, mem: &mut impl GuestMemory, to: u64, bytes: &[u8]) -> bool {
    let mut done = 0;
    for (addr, at, n) in pieces(chain, true, to, bytes.len()) {
        if !mem.write(addr, &bytes[at..at + n]) {
            return false;
        }
        done += n;
    }
    done == bytes.len()
}
