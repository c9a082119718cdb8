//! `blk`: the block service's driver half (docs/virtio.md). It drives the real disk the
//! manifest's `[[drive]]` passes through to it (QEMU's `virtio-blk-device`: a DeviceMemory
//! capability over its transport's page and its interrupt) with the `virtio-drivers` crate,
//! its DMA memory in its own RAM, given to the driver at its physical address
//! (`mica_rt::memory::physical`: without an IOMMU the device reaches memory by it, so this
//! domain is trusted for DMA, docs/security.md).
//!
//! It serves the device domains of the guests' disks that are extents of the drive: the
//! table of them is the configuration `mica build` writes into this image
//! (`mica_rt::config`, `mica_abi::blkio::Client`: each one's name and extent), never a
//! client's word. Each client has a channel and an I/O region (rings and data slots) named
//! after it; every request is checked against the client's extent and slots
//! (`mica_abi::blkio::check`) before the disk is touched. Up to
//! [`virtio::MAX_AT_DRIVE`] requests are at the drive at once, each answered when the drive's
//! interrupt says it is done: a write only when the device completed it, a flush only once
//! the drive is idle and the device flushed (virtio-blk's `FLUSH`); one event per client ends
//! a batch of completions.
//!
//! A drive with no clients is checked instead, from end to end and across power cycles:
//! sector 0 holds a record of the boot that wrote it (`MICA-BLK boot N`); each boot reads it
//! and the 15 sectors after it, says what it found, then writes the next record with sectors
//! 1-15 of that boot's pattern, flushes, reads everything back and compares.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;
use mica_abi::blkio::{self, Completion, Request, Work};
use mica_abi::bootinfo::suffix;
use mica_abi::ObjectType;
use mica_rt::ring::{Ring, RingMemory, SharedRegion};
use mica_rt::{bootinfo, events, hypercall, memory, println, virtio, BootInfo, Port, Slot};

/// Bytes of a sector.
const SECTOR: usize = 512;
/// Sectors of the record and its pattern (one buffer of them, on this domain's small stack).
const SECTORS: usize = 16;
/// What sector 0 starts with.
const MAGIC: &[u8; 14] = b"MICA-BLK boot ";

fn pattern(boot: u32, sector: usize, i: usize) -> u8 {
    (sector as u8).wrapping_mul(29) ^ (i as u8).wrapping_mul(7) ^ (boot as u8).wrapping_mul(0x3D)
}

/// The boot number in a record sector, if it is one.
fn record_of(sector: &[u8]) -> Option<u32> {
    let rest = sector.strip_prefix(MAGIC.as_slice())?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    core::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

fn main(_info: BootInfo) -> ! {
    let Some(page) = bootinfo() else {
        println!("blk: no valid boot-info page");
        mica_rt::exit()
    };
    let Some(dma) = memory::ram_window() else {
        println!("blk: no free RAM for DMA");
        mica_rt::exit()
    };
    // Only the pages the DMA pool uses need one RAM chunk.
    let dma_bytes = dma.len().min(virtio::MAX_DMA_PAGES * 4096) as u64;
    let Some(physical) = memory::physical(dma.ipa(), dma_bytes) else {
        println!("blk: the DMA memory is not in one RAM chunk");
        mica_rt::exit()
    };
    virtio::init_dma(dma, physical);
    // The device reads and writes the clients' data slots (in this domain's RAM) in place.
    for chunk in memory::ram_chunks() {
        if !virtio::dma_direct(chunk.ipa, chunk.size, chunk.physical) {
            println!(
                "blk: cannot give the device RAM chunk {:#x} in place",
                chunk.ipa
            );
            mica_rt::exit()
        }
    }
    // The first device passed through that is a virtio block device.
    let found = page
        .caps()
        .iter()
        .filter(|c| c.object_type == ObjectType::DeviceMemory as u8)
        .map(|c| mica_abi::bootinfo::name_str(&c.name))
        .find_map(|name| virtio::block_device(name).map(|disk| (name, disk)));
    let Some((name, mut disk)) = found else {
        println!("blk: no virtio block device passed through: give this domain a [[drive]]");
        mica_rt::exit()
    };
    let capacity = disk.capacity();
    println!("blk: {name}: a disk of {capacity} sectors (a virtio-blk device passed through)");
    let table = mica_rt::config::bytes();
    if blkio::client(table, 0).is_some() {
        serve(name, disk, table)
    }
    if capacity < SECTORS as u64 {
        println!("blk: {name}: smaller than {SECTORS} sectors");
        mica_rt::exit()
    }
    let mut buf = [0u8; SECTORS * SECTOR];
    if let Err(e) = disk.read_blocks(0, &mut buf) {
        println!("blk: {name}: reading sectors 0..{SECTORS} failed: {e:?}");
        mica_rt::exit()
    }
    let boot = match record_of(&buf[..SECTOR]) {
        Some(n) => {
            let bad = (1..SECTORS)
                .flat_map(|s| (0..SECTOR).map(move |i| (s, i)))
                .filter(|&(s, i)| buf[s * SECTOR + i] != pattern(n, s, i))
                .count();
            println!("blk: {name}: found boot {n}'s record and pattern, {bad} bytes differ");
            n.saturating_add(1)
        }
        None => {
            println!("blk: {name}: no record in sector 0 (a new disk)");
            1
        }
    };
    buf.fill(0);
    buf[..MAGIC.len()].copy_from_slice(MAGIC);
    let mut digits = heapless::String::<10>::new();
    let _ = core::fmt::write(&mut digits, format_args!("{boot}"));
    buf[MAGIC.len()..MAGIC.len() + digits.len()].copy_from_slice(digits.as_bytes());
    for s in 1..SECTORS {
        for i in 0..SECTOR {
            buf[s * SECTOR + i] = pattern(boot, s, i);
        }
    }
    if let Err(e) = disk.write_blocks(0, &buf).and_then(|()| disk.flush()) {
        println!("blk: {name}: writing or flushing failed: {e:?}");
        mica_rt::exit()
    }
    buf.fill(0);
    if let Err(e) = disk.read_blocks(0, &mut buf) {
        println!("blk: {name}: reading back failed: {e:?}");
        mica_rt::exit()
    }
    let record_bad = buf[..SECTOR]
        .iter()
        .zip(
            MAGIC
                .iter()
                .chain(digits.as_bytes())
                .chain(core::iter::repeat(&0)),
        )
        .filter(|(a, b)| a != b)
        .count();
    let bad = record_bad
        + (1..SECTORS)
            .flat_map(|s| (0..SECTOR).map(move |i| (s, i)))
            .filter(|&(s, i)| buf[s * SECTOR + i] != pattern(boot, s, i))
            .count();
    println!(
        "blk: {name}: boot {boot}: wrote, flushed and read back {SECTORS} sectors, {bad} bytes differ"
    );
    mica_rt::exit()
}

/// One device domain this service serves.
struct Client {
    name: heapless::String<24>,
    endpoint: Slot,
    region: SharedRegion,
    requests: Ring<SharedRegion>,
    completions: Ring<SharedRegion>,
    extent: blkio::Extent,
    slots: usize,
    /// Completions the full ring could not take yet (no request is taken meanwhile).
    held: Vec<Completion>,
    /// A flush taken from its ring, done once nothing is at the drive (its tag).
    flush: Option<u32>,
    /// Completions were pushed since it was last told.
    tell: bool,
    /// It wrote its rings in a way no client may: no longer served.
    broken: bool,
}

impl Client {
    /// Gives `done` back (or holds it while the ring is full).
    fn answer(&mut self, done: Completion) {
        self.held.push(done);
        self.answer_held();
    }

    /// Gives back what was held, in order, as far as the ring takes it.
    fn answer_held(&mut self) {
        while let Some(first) = self.held.first() {
            if self.completions.push(&first.encode()).is_err() {
                break;
            }
            self.held.remove(0);
            self.tell = true;
        }
    }
}

/// A client's request at the drive (a read's data goes straight into the client's slot).
struct Pending {
    token: u16,
    client: usize,
    tag: u32,
}

/// Event-channel slots for the drive's interrupt (high slots, above what the kernel hands
/// out), and its port: after every client's.
const IRQ_TX: Slot = Slot(60);
const IRQ_RX: Slot = Slot(61);
const IRQ_PORT: Port = Port(blkio::MAX_CLIENTS as u16);

/// Serves the clients of `table` from `disk`, for ever: requests taken from every client while
/// the drive has room for them ([`virtio::MAX_AT_DRIVE`] at once), each answered when the
/// drive's interrupt says it is done; a flush once nothing is at the drive.
fn serve(drive_name: &str, disk: virtio::Block, table: &'static [u8]) -> ! {
    let Some(page) = bootinfo() else {
        mica_rt::exit()
    };
    let mut clients: Vec<Client> = Vec::new();
    if let Err(s) = events::register() {
        println!("blk: {drive_name}: event set-up refused ({s:?})");
        mica_rt::exit()
    }
    let mut irq_name = heapless::String::<32>::new();
    let _ = (
        irq_name.push_str(drive_name),
        irq_name.push_str(suffix::IRQ),
    );
    let Some(irq) = page.cap_slot(&irq_name, ObjectType::Irq) else {
        println!("blk: {drive_name}: no interrupt ({irq_name}) among the capabilities");
        mica_rt::exit()
    };
    let wired = hypercall::evtchn_create(IRQ_TX, IRQ_RX)
        .and_then(|()| events::bind(IRQ_RX, IRQ_PORT, 0))
        .and_then(|()| hypercall::irq_bind_event(irq, IRQ_RX));
    if let Err(s) = wired {
        println!("blk: {drive_name}: cannot wait for the drive's interrupt ({s:?})");
        mica_rt::exit()
    }
    for client in (0..blkio::MAX_CLIENTS).map_while(|i| blkio::client(table, i)) {
        let mut name = heapless::String::<24>::new();
        let _ = name.push_str(mica_abi::bootinfo::name_str(&client.name));
        let name_str = name.as_str();
        let mut io = heapless::String::<32>::new();
        let _ = (io.push_str(name_str), io.push_str(suffix::IO));
        let found = page.endpoint(name_str).zip(memory::shared_region(&io));
        let Some((endpoint, region)) = found else {
            println!("blk: {drive_name}: client {name} has no channel or I/O region: not served");
            continue;
        };
        let rings = mica_rt::ring::blkio_rings(region);
        let Some((requests, completions)) = rings else {
            println!("blk: {drive_name}: client {name}'s I/O region is too small: not served");
            continue;
        };
        let port = Port(clients.len() as u16);
        if events::bind(endpoint, port, 0).is_err() {
            println!("blk: {drive_name}: cannot wait on client {name}'s channel: not served");
            continue;
        }
        println!(
            "blk: {drive_name}: serving {name}: sectors {}..{} of the disk, {} data slots",
            client.extent.first,
            client.extent.first + client.extent.sectors,
            blkio::slots(region.len())
        );
        clients.push(Client {
            name,
            endpoint,
            region,
            requests,
            completions,
            extent: client.extent,
            slots: blkio::slots(region.len()),
            held: Vec::new(),
            flush: None,
            tell: false,
            broken: false,
        });
    }
    let mut drive = virtio::Drive::new(disk);
    let mut pending: Vec<Pending> = Vec::new();
    let mut fired = false;
    // The client the next scan for new requests starts at (round-robin).
    let mut next = 0;
    loop {
        if fired {
            // The device's interrupt first, then the line: what it finishes after this
            // raises both again.
            drive.ack_interrupt();
            let _ = hypercall::irq_ack(irq);
        }
        // Completions a full ring could not take before.
        for c in clients.iter_mut() {
            c.answer_held();
        }
        // What the drive finished.
        while let Some((token, result)) = drive.done() {
            let Some(i) = pending.iter().position(|p| p.token == token) else {
                println!("blk: {drive_name}: the drive finished request {token}, which it was not given: stopping");
                mica_rt::exit()
            };
            let p = pending.swap_remove(i);
            let Some(c) = clients.get_mut(p.client) else {
                continue;
            };
            let status = match result {
                Ok(()) => blkio::status::OK,
                Err(_) => blkio::status::IO_ERROR,
            };
            c.answer(Completion { tag: p.tag, status });
        }
        // Flushes, once every write before them is done.
        if drive.in_flight() == 0 {
            for c in clients.iter_mut() {
                if let Some(tag) = c.flush.take() {
                    let status = match drive.flush() {
                        Ok(()) => blkio::status::OK,
                        Err(_) => blkio::status::IO_ERROR,
                    };
                    c.answer(Completion { tag, status });
                }
            }
        }
        // New requests, from every client in turn, while the drive has room; none while a
        // flush waits for the drive to empty (else other clients could keep it busy for ever).
        let mut more = clients.iter().all(|c| c.flush.is_none());
        while more {
            more = false;
            for k in 0..clients.len() {
                let index = (next + k) % clients.len();
                let Some(c) = clients.get_mut(index) else {
                    break;
                };
                if c.broken || !c.held.is_empty() {
                    continue;
                }
                if !drive.has_room() {
                    more = false;
                    break;
                }
                let mut msg = [0u8; blkio::REQUEST_SLOT];
                let popped = match c.requests.pop(&mut msg) {
                    Ok(Some(popped)) => popped,
                    Ok(None) => continue,
                    Err(e) => {
                        println!(
                            "blk: {drive_name}: client {} broke its ring ({e:?}): no longer served",
                            c.name
                        );
                        c.broken = true;
                        continue;
                    }
                };
                more = true;
                next = index + 1;
                let request = Request::decode(&msg[..popped.len]);
                let tag = request.map_or(0, |r| r.tag);
                let work = request.and_then(|r| blkio::check(&r, c.extent, c.slots));
                let started = match work {
                    None => Err(blkio::status::REFUSED),
                    Some(Work::Flush) => {
                        c.flush = Some(tag);
                        more = false;
                        break;
                    }
                    Some(Work::Read { sector, at, bytes }) => drive
                        .start_read(sector, &c.region, at, bytes)
                        .map_err(|_| blkio::status::IO_ERROR),
                    Some(Work::Write { sector, at, bytes }) => drive
                        .start_write(sector, &c.region, at, bytes)
                        .map_err(|_| blkio::status::IO_ERROR),
                };
                match started {
                    Ok(token) => pending.push(Pending {
                        token,
                        client: index,
                        tag,
                    }),
                    Err(status) => c.answer(Completion { tag, status }),
                }
            }
        }
        for c in clients.iter_mut() {
            if core::mem::take(&mut c.tell) {
                let _ = events::send(c.endpoint);
            }
        }
        // A flush taken with nothing at the drive is done before waiting.
        if drive.in_flight() == 0 && clients.iter().any(|c| c.flush.is_some()) {
            fired = false;
            continue;
        }
        fired = events::wait().contains(IRQ_PORT);
    }
}

mica_rt::entry!(main);
