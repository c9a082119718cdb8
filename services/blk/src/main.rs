//! `blk`: the block service's driver half (docs/virtio.md). It drives the real disk the
//! manifest's `[[drive]]` passes through to it (QEMU's `virtio-blk-device`: a DeviceMemory
//! capability over its transport's page and its interrupt) with the `virtio-drivers` crate,
//! its DMA memory in its own RAM, given to the driver at its physical address
//! (`mica_rt::memory::physical`: without an IOMMU the device reaches memory by it, so this
//! domain is trusted for DMA, docs/security.md).
//!
//! What it does today is check the disk from end to end, across power cycles: sector 0 holds
//! a record of the boots that wrote it (`MICA-BLK boot N`); each boot reads it and the 15
//! sectors after it, says what it found, then writes the next record with sectors 1-15 of
//! that boot's pattern, flushes (durable before it says so), reads everything back and
//! compares. Serving guests' device domains, each on an extent of the disk, is the next step
//! (docs/virtio.md, "What comes next").
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use mica_abi::ObjectType;
use mica_rt::{bootinfo, memory, println, virtio, BootInfo};

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
    let Some(entry) = page
        .caps()
        .iter()
        .find(|c| c.object_type == ObjectType::DeviceMemory as u8)
    else {
        println!("blk: no device passed through: give this domain a [[drive]]");
        mica_rt::exit()
    };
    let name = mica_abi::bootinfo::name_str(&entry.name);
    let Some(dma) = memory::ram_window() else {
        println!("blk: no free RAM for DMA");
        mica_rt::exit()
    };
    let Some(physical) = memory::physical(dma.ipa(), dma.len() as u64) else {
        println!("blk: the DMA memory is not in one RAM chunk");
        mica_rt::exit()
    };
    virtio::init_dma(dma, physical);
    let Some(mut disk) = virtio::block_device(name) else {
        println!("blk: {name}: no virtio block device there");
        mica_rt::exit()
    };
    let capacity = disk.capacity();
    println!("blk: {name}: a disk of {capacity} sectors (a virtio-blk device passed through)");
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
            n + 1
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

mica_rt::entry!(main);
