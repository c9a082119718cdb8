//! `blkhostile`: a guest that drives its virtio disk (slot 0) as an attacker would, for the
//! `blk-hostile` scenario (docs/virtio.md, requirement 4).
//!
//! It speaks the transport itself (registers through `mica_rt::device::Device::virtio_slot`,
//! its queue in its own RAM) and, each time on a freshly reset device, feeds the device domain
//! a queue that breaks a rule: a descriptor loop, a buffer outside its RAM, a length of nearly
//! 4 GiB, an indirect table longer than any chain may be, an available index that jumps past
//! the queue's size, and rings placed outside its RAM. Each must end with the device reporting
//! `DEVICE_NEEDS_RESET` in its status, never with the request served. Then a storm of 100,000
//! notifications with nothing available, after which a valid read must still complete, and a
//! last valid read after every attack shows that the device domain carries on.
//! Every line says `refused` or `works`; anything else (`ACCEPTED`, `no answer`) is a failure.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use mica_abi::virtio::blk::{request, result};
use mica_abi::virtio::queue::{F_INDIRECT, F_NEXT, F_WRITE};
use mica_abi::virtio::{reg, status};
use mica_rt::device::Device;
use mica_rt::memory::{self, Window};
use mica_rt::{hypercall, println, BootInfo};

/// Entries of the queue.
const QSIZE: u16 = 8;
/// Where things are in the DMA window (offsets).
const DESC: usize = 0x0000;
const AVAIL: usize = 0x0100;
const USED: usize = 0x0200;
const HEADER: usize = 0x1000;
const DATA: usize = 0x2000;
const STATUS_BYTE: usize = 0x3000;
const INDIRECT: usize = 0x4000;
/// Bytes of the window the attacks use.
const SPAN: usize = 0x6000;
/// An address far outside the guest's RAM (and inside the 39-bit space).
const OUTSIDE: u64 = 0x70_0000_0000;
/// How many times the device's answer is looked for before giving up.
const PATIENCE: u32 = 200_000;

/// What the device did with what it was given.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// It marked itself as needing a reset.
    NeedsReset,
    /// It used the chain, with this completion code.
    Served(u8),
    /// Neither, within [`PATIENCE`].
    NoAnswer,
}

struct Driver {
    regs: Device,
    mem: Window,
    avail_idx: u16,
}

impl Driver {
    fn ipa(&self, offset: usize) -> u64 {
        self.mem.address_of(offset).unwrap_or(0)
    }

    fn put_u16(&mut self, offset: usize, v: u16) {
        self.mem.write(offset, &v.to_le_bytes());
    }

    fn used_idx(&self) -> u16 {
        let mut b = [0u8; 2];
        self.mem.read(USED + 2, &mut b);
        u16::from_le_bytes(b)
    }

    /// Resets the device and sets it up again with queue 0 at `rings` (or in this window),
    /// as a driver does; returns the status the device settled on.
    fn setup(&mut self, rings: Option<u64>) -> u32 {
        self.regs.write32(reg::STATUS, 0);
        self.mem.zero(0, SPAN);
        self.avail_idx = 0;
        self.regs
            .write32(reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
        // VERSION_1 (feature bit 32) and nothing else.
        self.regs.write32(reg::DRIVER_FEATURES_SEL, 1);
        self.regs.write32(reg::DRIVER_FEATURES, 1);
        self.regs.write32(reg::DRIVER_FEATURES_SEL, 0);
        self.regs.write32(reg::DRIVER_FEATURES, 0);
        self.regs.write32(
            reg::STATUS,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
        );
        self.regs.write32(reg::QUEUE_SEL, 0);
        self.regs.write32(reg::QUEUE_NUM, u32::from(QSIZE));
        let (desc, avail, used) = match rings {
            Some(at) => (at, at + 0x100, at + 0x200),
            None => (self.ipa(DESC), self.ipa(AVAIL), self.ipa(USED)),
        };
        for (low, addr) in [
            (reg::QUEUE_DESC_LOW, desc),
            (reg::QUEUE_DRIVER_LOW, avail),
            (reg::QUEUE_DEVICE_LOW, used),
        ] {
            self.regs.write32(low, addr as u32);
            self.regs.write32(low + 4, (addr >> 32) as u32);
        }
        self.regs.write32(reg::QUEUE_READY, 1);
        self.regs.write32(
            reg::STATUS,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK,
        );
        self.regs.read32(reg::STATUS)
    }

    /// Writes descriptor `i` of the table at `table` (a window offset).
    fn desc(&mut self, table: usize, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..].copy_from_slice(&next.to_le_bytes());
        self.mem.write(table + 16 * usize::from(i), &d);
    }

    /// A read request's header for `sector`.
    fn read_header(&mut self, sector: u64) {
        let mut h = [0u8; 16];
        h[..4].copy_from_slice(&request::IN.to_le_bytes());
        h[8..].copy_from_slice(&sector.to_le_bytes());
        self.mem.write(HEADER, &h);
        self.mem.write(STATUS_BYTE, &[0xFF]);
    }

    /// Makes chain `head` available with the available index moved by `step`, and notifies.
    fn offer(&mut self, head: u16, step: u16) {
        let slot = usize::from(self.avail_idx % QSIZE);
        self.put_u16(AVAIL + 4 + 2 * slot, head);
        self.avail_idx = self.avail_idx.wrapping_add(step);
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        self.put_u16(AVAIL + 2, self.avail_idx);
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        self.regs.write32(reg::QUEUE_NOTIFY, 0);
    }

    /// Waits for the device's answer to what was offered.
    fn verdict(&mut self, used_before: u16) -> Verdict {
        for _ in 0..PATIENCE {
            if self.regs.read32(reg::STATUS) & status::DEVICE_NEEDS_RESET != 0 {
                return Verdict::NeedsReset;
            }
            if self.used_idx() != used_before {
                let mut b = [0u8];
                self.mem.read(STATUS_BYTE, &mut b);
                return Verdict::Served(b[0]);
            }
            let _ = hypercall::yield_now();
        }
        Verdict::NoAnswer
    }

    /// A valid three-descriptor read of sector 0, offered and answered.
    fn valid_read(&mut self) -> Verdict {
        self.read_header(0);
        let (h, d, s) = (self.ipa(HEADER), self.ipa(DATA), self.ipa(STATUS_BYTE));
        self.desc(DESC, 0, h, 16, F_NEXT, 1);
        self.desc(DESC, 1, d, 4096, F_WRITE | F_NEXT, 2);
        self.desc(DESC, 2, s, 1, F_WRITE, 0);
        let before = self.used_idx();
        self.offer(0, 1);
        self.verdict(before)
    }
}

/// Says how an attack ended: `refused` when the device needs a reset, anything else is a hole.
fn report(attack: &str, v: Verdict) {
    match v {
        Verdict::NeedsReset => {
            println!("blkhostile: {attack}: refused (the device needs a reset)")
        }
        Verdict::Served(code) => println!("blkhostile: {attack}: ACCEPTED (completion {code})"),
        Verdict::NoAnswer => println!("blkhostile: {attack}: no answer"),
    }
}

fn main(_info: BootInfo) -> ! {
    let (Some(regs), Some(mem)) = (Device::virtio_slot(0), memory::ram_window()) else {
        println!("blkhostile: no virtio slot 0 or no free RAM");
        mica_rt::exit()
    };
    if mem.len() < SPAN || regs.read32(reg::MAGIC) != mica_abi::virtio::MAGIC {
        println!("blkhostile: no virtio device in slot 0, or too little RAM");
        mica_rt::exit()
    }
    let mut drv = Driver {
        regs,
        mem,
        avail_idx: 0,
    };

    // First, as a good driver: the device works.
    drv.setup(None);
    match drv.valid_read() {
        Verdict::Served(result::OK) => println!("blkhostile: a valid read first: works"),
        v => println!("blkhostile: a valid read first: no answer ({v:?})"),
    }

    // A descriptor loop: 0 -> 1 -> 0.
    drv.setup(None);
    drv.read_header(0);
    let h = drv.ipa(HEADER);
    let d = drv.ipa(DATA);
    drv.desc(DESC, 0, h, 16, F_NEXT, 1);
    drv.desc(DESC, 1, d, 512, F_WRITE | F_NEXT, 0);
    let before = drv.used_idx();
    drv.offer(0, 1);
    report("a descriptor loop", drv.verdict(before));

    // A buffer outside its RAM.
    drv.setup(None);
    drv.read_header(0);
    let s = drv.ipa(STATUS_BYTE);
    drv.desc(DESC, 0, h, 16, F_NEXT, 1);
    drv.desc(DESC, 1, OUTSIDE, 4096, F_WRITE | F_NEXT, 2);
    drv.desc(DESC, 2, s, 1, F_WRITE, 0);
    let before = drv.used_idx();
    drv.offer(0, 1);
    report("a buffer outside its RAM", drv.verdict(before));

    // A length of nearly 4 GiB, starting inside its RAM.
    drv.setup(None);
    drv.read_header(0);
    drv.desc(DESC, 0, h, 16, F_NEXT, 1);
    drv.desc(DESC, 1, d, 0xFFFF_F000, F_WRITE | F_NEXT, 2);
    drv.desc(DESC, 2, s, 1, F_WRITE, 0);
    let before = drv.used_idx();
    drv.offer(0, 1);
    report("a length of 4 GiB", drv.verdict(before));

    // An indirect table of 128 linked descriptors: longer than any chain may be.
    drv.setup(None);
    drv.read_header(0);
    for i in 0..128u16 {
        let (addr, flags) = if i == 0 {
            (h, F_NEXT)
        } else {
            (d, F_WRITE | F_NEXT)
        };
        drv.desc(
            INDIRECT,
            i,
            addr,
            16,
            if i == 127 { F_WRITE } else { flags },
            i + 1,
        );
    }
    let table = drv.ipa(INDIRECT);
    drv.desc(DESC, 0, table, 128 * 16, F_INDIRECT, 0);
    let before = drv.used_idx();
    drv.offer(0, 1);
    report("an indirect chain of 128", drv.verdict(before));

    // An available index 1,000 ahead: more chains than the queue has entries.
    drv.setup(None);
    let before = drv.used_idx();
    drv.offer(0, 1000);
    report("an available index that jumps", drv.verdict(before));

    // Rings outside its RAM: the device refuses the queue at once.
    let settled = drv.setup(Some(OUTSIDE));
    report(
        "rings outside its RAM",
        if settled & status::DEVICE_NEEDS_RESET != 0 {
            Verdict::NeedsReset
        } else {
            Verdict::Served(0)
        },
    );

    // A notification storm with nothing available, then a valid read.
    drv.setup(None);
    for _ in 0..100_000 {
        drv.regs.write32(reg::QUEUE_NOTIFY, 0);
    }
    match drv.valid_read() {
        Verdict::Served(result::OK) => {
            println!("blkhostile: 100000 notifications, then a valid read: works")
        }
        v => println!("blkhostile: 100000 notifications, then a valid read: no answer ({v:?})"),
    }

    // After all of it, the device domain still serves this guest.
    drv.setup(None);
    match drv.valid_read() {
        Verdict::Served(result::OK) => {
            println!("blkhostile: a valid read after every attack: works")
        }
        v => println!("blkhostile: a valid read after every attack: no answer ({v:?})"),
    }
    drv.regs.write32(reg::STATUS, 0);
    println!("blkhostile: done");
    mica_rt::exit()
}

mica_rt::entry!(main);
