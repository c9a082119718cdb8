//! `blkfront`: a guest that uses the virtio block device in its virtio slot 0 the way any
//! driver would (the `virtio-drivers` crate, DMA in its own RAM), for the `blk-ram`,
//! `blk-hostile` and `blk-four` scenarios.
//!
//! With bit 8 of its `arg` set ([`LOOK_BACK`]) it first reads the first sectors and says
//! whether they hold what its last pass wrote in an earlier boot (`blk-persist`).
//!
//! With bit 9 set ([`BENCH`]) it only reads the first [`BENCH_BYTES`] of its disk in order,
//! [`BENCH_REQUEST`] at a time (yielding the CPU while each is at the device), and prints how long that took on its own clock as the
//! `bench:` line `blk-aggN-I` (N: bits 4-7 of `arg`, the guests reading at once; I: bits 0-3,
//! this one's index), for `make bench`'s aggregate disk figures (bench/blk-agg*.toml).
//!
//! It reads the device's capacity, writes a pattern (a different byte per sector, mixed with
//! the pass number and the low byte of the manifest's `arg`) to the first sectors in requests of several sizes, flushes, reads them
//! back and compares, twice; then it reads a sector past the end, which must fail, and ends.
//! Every request goes through the kernel's register file and the device domain that serves
//! the disk (docs/virtio.md).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use mica_rt::{gic, memory, println, virtio, BootInfo};

/// Bytes of a sector (`capacity` counts them).
const SECTOR: usize = 512;
/// Sectors written and read back per pass.
const SECTORS: usize = 64;
/// Requests of these many sectors, in turn.
const SIZES: [usize; 4] = [1, 3, 8, 16];

/// The byte at `i` of `sector` in pass `pass` of the guest whose manifest `arg` is `who`
/// (guests sharing a real disk write different bytes, so one that saw another's data would
/// say so).
fn pattern(who: u8, pass: u8, sector: usize, i: usize) -> u8 {
    (sector as u8).wrapping_mul(31) ^ (i as u8) ^ pass.wrapping_mul(0x5B) ^ who.wrapping_mul(0xA7)
}

/// `arg` bit: look for an earlier boot's data first.
const LOOK_BACK: u64 = 0x100;
/// `arg` bit: time a sequential read instead ([`bench`]).
const BENCH: u64 = 0x200;
/// Bytes the bench reads.
const BENCH_BYTES: usize = 16 << 20;
/// Bytes of each of its reads.
const BENCH_REQUEST: usize = 64 * 1024;

/// Reads the first [`BENCH_BYTES`] of `disk` in order and prints the time as a `bench:` line.
fn bench(disk: &mut virtio::Block, arg: u64) -> ! {
    let name = alloc::format!("blk-agg{}-{}", (arg >> 4) & 0xF, arg & 0xF);
    if disk.capacity() < (BENCH_BYTES / SECTOR) as u64 {
        println!("bench: FAILED: {name}: the disk is smaller than {BENCH_BYTES} bytes");
        mica_rt::exit()
    }
    let mut buf = alloc::vec![0u8; BENCH_REQUEST];
    let start = gic::now_ns();
    for sector in (0..BENCH_BYTES / SECTOR).step_by(BENCH_REQUEST / SECTOR) {
        if let Err(e) = virtio::read_yielding(disk, sector, &mut buf) {
            println!("bench: FAILED: {name}: reading sector {sector}: {e:?}");
            mica_rt::exit()
        }
    }
    let t = gic::now_ns().saturating_sub(start);
    println!("bench: {name}: median {t} ns, min {t} ns, max {t} ns, 1 iterations");
    mica_rt::exit()
}

fn main(info: BootInfo) -> ! {
    let who = info.arg as u8;
    let Some(dma) = memory::ram_window() else {
        println!("blkfront: no free RAM for DMA");
        mica_rt::exit()
    };
    // The device reaches this guest's RAM by guest-physical address.
    let ipa = dma.ipa();
    virtio::init_dma(dma, ipa);
    if info.arg & BENCH != 0 {
        // Buffers in its own RAM go to the device in place, at their guest-physical address.
        for chunk in memory::ram_chunks() {
            virtio::dma_direct(chunk.ipa, chunk.size, chunk.ipa);
        }
    }
    let Some(mut disk) = virtio::block(0) else {
        println!("blkfront: no block device in virtio slot 0");
        mica_rt::exit()
    };
    if info.arg & BENCH != 0 {
        bench(&mut disk, info.arg)
    }
    let capacity = disk.capacity();
    println!("blkfront: a disk of {capacity} sectors");
    if capacity < SECTORS as u64 {
        println!("blkfront: the disk is smaller than {SECTORS} sectors");
        mica_rt::exit()
    }
    let mut buf = [0u8; 16 * SECTOR];
    if info.arg & LOOK_BACK != 0 {
        // What pass 2 of an earlier boot left, if anything.
        let (mut bad, mut zero) = (0usize, true);
        for sector in (0..SECTORS).step_by(16) {
            if let Err(e) = disk.read_blocks(sector, &mut buf) {
                println!(
                    "blkfront: reading sectors {sector}..{} failed: {e:?}",
                    sector + 16
                );
                mica_rt::exit()
            }
            for (i, b) in buf.iter().enumerate() {
                zero &= *b == 0;
                bad += usize::from(*b != pattern(who, 2, sector + i / SECTOR, i % SECTOR));
            }
        }
        if zero {
            println!("blkfront: no earlier boot's data (a new disk)");
        } else {
            println!("blkfront: an earlier boot's data: {SECTORS} sectors, {bad} bytes differ");
        }
    }
    for pass in 1..=2u8 {
        let mut sector = 0;
        let mut size = 0;
        while sector < SECTORS {
            let n = SIZES[size % SIZES.len()].min(SECTORS - sector);
            for (i, b) in buf[..n * SECTOR].iter_mut().enumerate() {
                *b = pattern(who, pass, sector + i / SECTOR, i % SECTOR);
            }
            if let Err(e) = disk.write_blocks(sector, &buf[..n * SECTOR]) {
                println!(
                    "blkfront: writing sectors {sector}..{} failed: {e:?}",
                    sector + n
                );
                mica_rt::exit()
            }
            sector += n;
            size += 1;
        }
        if let Err(e) = disk.flush() {
            println!("blkfront: flush failed: {e:?}");
            mica_rt::exit()
        }
        let mut bad = 0;
        for sector in (0..SECTORS).step_by(16) {
            let n = 16.min(SECTORS - sector);
            buf.fill(0);
            if let Err(e) = disk.read_blocks(sector, &mut buf[..n * SECTOR]) {
                println!(
                    "blkfront: reading sectors {sector}..{} failed: {e:?}",
                    sector + n
                );
                mica_rt::exit()
            }
            for (i, b) in buf[..n * SECTOR].iter().enumerate() {
                if *b != pattern(who, pass, sector + i / SECTOR, i % SECTOR) {
                    bad += 1;
                }
            }
        }
        println!("blkfront: pass {pass}: wrote, flushed and read back {SECTORS} sectors, {bad} bytes differ");
    }
    let past = disk.read_blocks(capacity as usize, &mut buf[..SECTOR]);
    println!(
        "blkfront: a read past the end: {}",
        if past.is_err() { "refused" } else { "ACCEPTED" }
    );
    println!("blkfront: done");
    mica_rt::exit()
}

mica_rt::entry!(main);
