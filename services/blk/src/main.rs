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
//! (`mica_abi::blkio::check`) before the disk is touched, a write is acknowledged only when
//! the device completed it and a flush only when the device flushed (virtio-blk's `FLUSH`),
//! and one event per client ends a batch of completions.
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
use mica_abi::ObjectType;
use mica_rt::ring::{Ring, RingMemory, SharedRegion};
use mica_rt::{bootinfo, events, memory, println, virtio, BootInfo, Port, Slot};

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
        serve(name, &mut disk, table)
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
    /// A completion the full ring could not take yet (no request is taken meanwhile).
    held: Option<Completion>,
    /// It wrote its rings in a way no client may: no longer served.
    broken: bool,
}

/// Serves the clients of `table` from `disk`, for ever.
fn serve(drive: &str, disk: &mut virtio::Block, table: &'static [u8]) -> ! {
    let Some(page) = bootinfo() else {
        mica_rt::exit()
    };
    let mut clients: Vec<Client> = Vec::new();
    if let Err(s) = events::register() {
        println!("blk: {drive}: event set-up refused ({s:?})");
        mica_rt::exit()
    }
    for client in (0..blkio::MAX_CLIENTS).map_while(|i| blkio::client(table, i)) {
        let mut name = heapless::String::<24>::new();
        let _ = name.push_str(mica_abi::bootinfo::name_str(&client.name));
        let name_str = name.as_str();
        let mut io = heapless::String::<32>::new();
        let _ = (io.push_str(name_str), io.push_str("-io"));
        let found = page.endpoint(name_str).zip(memory::shared_region(&io));
        let Some((endpoint, region)) = found else {
            println!("blk: {drive}: client {name} has no channel or I/O region: not served");
            continue;
        };
        let rings = mica_rt::ring::blkio_rings(region);
        let Some((requests, completions)) = rings else {
            println!("blk: {drive}: client {name}'s I/O region is too small: not served");
            continue;
        };
        let port = Port(clients.len() as u16);
        if events::bind(endpoint, port, 0).is_err() {
            println!("blk: {drive}: cannot wait on client {name}'s channel: not served");
            continue;
        }
        println!(
            "blk: {drive}: serving {name}: sectors {}..{} of the disk, {} data slots",
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
            held: None,
            broken: false,
        });
    }
    let mut buf = alloc::vec![0u8; blkio::SLOT_BYTES];
    loop {
        for c in clients.iter_mut().filter(|c| !c.broken) {
            let mut tell = false;
            loop {
                if let Some(done) = c.held.take() {
                    match c.completions.push(&done.encode()) {
                        Ok(notify) => tell |= notify,
                        Err(_) => {
                            c.held = Some(done);
                            break;
                        }
                    }
                }
                let mut msg = [0u8; blkio::REQUEST_SLOT];
                let popped = match c.requests.pop(&mut msg) {
                    Ok(Some(popped)) => popped,
                    Ok(None) => break,
                    Err(e) => {
                        println!(
                            "blk: {drive}: client {} broke its ring ({e:?}): no longer served",
                            c.name
                        );
                        c.broken = true;
                        break;
                    }
                };
                let request = Request::decode(&msg[..popped.len]);
                let status = match request.and_then(|r| blkio::check(&r, c.extent, c.slots)) {
                    None => blkio::status::REFUSED,
                    Some(work) => carry_out(disk, work, &c.region, &mut buf),
                };
                c.held = Some(Completion {
                    tag: request.map_or(0, |r| r.tag),
                    status,
                });
                tell = true;
            }
            if tell {
                let _ = events::send(c.endpoint);
            }
        }
        events::wait();
    }
}

/// Does what a checked request asks, through `buf`: the disk's driver copies through its
/// own DMA pages, the region is read and written with atomic accesses.
fn carry_out(disk: &mut virtio::Block, work: Work, region: &SharedRegion, buf: &mut [u8]) -> u8 {
    let done = match work {
        Work::Read { sector, at, bytes } => {
            let ok = disk.read_blocks(sector as usize, &mut buf[..bytes]).is_ok();
            if ok {
                region.write(at, &buf[..bytes]);
            }
            ok
        }
        Work::Write { sector, at, bytes } => {
            region.read(at, &mut buf[..bytes]);
            disk.write_blocks(sector as usize, &buf[..bytes]).is_ok()
        }
        Work::Flush => disk.flush().is_ok(),
    };
    if done {
        blkio::status::OK
    } else {
        blkio::status::IO_ERROR
    }
}

mica_rt::entry!(main);
