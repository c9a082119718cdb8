//! The queue against a driver written here (the layout of virtio 1.2, 2.7) and against guests
//! that break every rule, including random memory.

use super::*;

/// A guest's RAM: 64 KiB at 0x4000_0000.
struct Ram {
    base: u64,
    bytes: Vec<u8>,
}

impl Ram {
    fn new() -> Self {
        Ram {
            base: 0x4000_0000,
            bytes: vec![0; 0x1_0000],
        }
    }

    fn offset(&self, addr: u64, len: u64) -> Option<usize> {
        let off = addr.checked_sub(self.base)?;
        let end = off.checked_add(len)?;
        (end <= self.bytes.len() as u64).then_some(off as usize)
    }

    fn put(&mut self, addr: u64, bytes: &[u8]) {
        assert!(self.write(addr, bytes), "{addr:#x} in RAM");
    }

    fn u16_at(&self, addr: u64) -> u16 {
        let mut b = [0; 2];
        assert!(self.read(addr, &mut b));
        u16::from_le_bytes(b)
    }
}

impl GuestMemory for Ram {
    fn contains(&self, addr: u64, len: u64) -> bool {
        self.offset(addr, len).is_some()
    }
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        let Some(off) = self.offset(addr, buf.len() as u64) else {
            return false;
        };
        buf.copy_from_slice(&self.bytes[off..off + buf.len()]);
        true
    }
    fn write(&mut self, addr: u64, bytes: &[u8]) -> bool {
        let Some(off) = self.offset(addr, bytes.len() as u64) else {
            return false;
        };
        self.bytes[off..off + bytes.len()].copy_from_slice(bytes);
        true
    }
}

const SIZE: u16 = 16;
const DESC: u64 = 0x4000_0000;
const DRIVER: u64 = 0x4000_1000;
const DEVICE: u64 = 0x4000_2000;
const DATA: u64 = 0x4000_8000;

/// The driver's side, as Linux's virtio_ring writes it.
struct Driver {
    avail: u16,
}

impl Driver {
    fn descriptor(ram: &mut Ram, table: u64, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..16].copy_from_slice(&next.to_le_bytes());
        ram.put(table + 16 * u64::from(i), &d);
    }

    /// Makes chain `head` available.
    fn offer(&mut self, ram: &mut Ram, head: u16) {
        ram.put(
            DRIVER + 4 + 2 * u64::from(self.avail % SIZE),
            &head.to_le_bytes(),
        );
        self.avail = self.avail.wrapping_add(1);
        ram.put(DRIVER + 2, &self.avail.to_le_bytes());
    }
}

fn queue() -> Queue {
    Queue::new(SIZE, DESC, DRIVER, DEVICE, false)
}

/// A block request: header (16 bytes, read), data (written), status (written).
fn block_request(ram: &mut Ram, head: u16) {
    Driver::descriptor(ram, DESC, head, DATA, 16, F_NEXT, head + 1);
    Driver::descriptor(
        ram,
        DESC,
        head + 1,
        DATA + 0x100,
        4096,
        F_NEXT | F_WRITE,
        head + 2,
    );
    Driver::descriptor(ram, DESC, head + 2, DATA + 0x2000, 1, F_WRITE, 0);
}

#[test]
fn a_request_is_taken_and_given_back() {
    let (mut ram, mut q, mut driver) = (Ram::new(), queue(), Driver { avail: 0 });
    assert_eq!(q.pop(&mut ram), Ok(None), "nothing offered");
    block_request(&mut ram, 3);
    driver.offer(&mut ram, 3);
    let chain = q.pop(&mut ram).unwrap().unwrap();
    assert_eq!(chain.head, 3);
    let shape: Vec<(u64, u32, bool)> = chain
        .buffers
        .iter()
        .map(|b| (b.addr, b.len, b.device_writes))
        .collect();
    assert_eq!(
        shape,
        [
            (DATA, 16, false),
            (DATA + 0x100, 4096, true),
            (DATA + 0x2000, 1, true)
        ]
    );
    assert_eq!(chain.lengths(), (16, 4097));
    assert_eq!(q.pop(&mut ram), Ok(None), "taken once");
    q.push_used(&mut ram, 3, 4097).unwrap();
    assert_eq!(ram.u16_at(DEVICE + 2), 1, "used index published");
    let mut element = [0u8; 8];
    assert!(ram.read(DEVICE + 4, &mut element));
    assert_eq!(element, [3, 0, 0, 0, 0x01, 0x10, 0, 0]);
    assert!(q.wants_interrupt(&mut ram, 0).unwrap());
    assert!(!q.wants_interrupt(&mut ram, 1).unwrap(), "nothing new");
    assert_eq!(q.positions(), (1, 1));
}

#[test]
fn the_index_wraps_around_the_ring_and_past_u16() {
    let (mut ram, mut q, mut driver) = (Ram::new(), queue(), Driver { avail: 0xFFF0 });
    q.resume((0xFFF0, 0xFFF0));
    block_request(&mut ram, 0);
    for _ in 0..40 {
        driver.offer(&mut ram, 0);
        let chain = q.pop(&mut ram).unwrap().unwrap();
        q.push_used(&mut ram, chain.head, 0).unwrap();
    }
    assert_eq!(q.positions(), (0x0018, 0x0018));
}

#[test]
fn indirect_tables_are_followed_once() {
    let (mut ram, mut q, mut driver) = (Ram::new(), queue(), Driver { avail: 0 });
    let table = 0x4000_4000;
    Driver::descriptor(&mut ram, table, 0, DATA, 16, F_NEXT, 1);
    Driver::descriptor(&mut ram, table, 1, DATA + 0x100, 512, F_WRITE, 0);
    Driver::descriptor(&mut ram, DESC, 5, table, 32, F_INDIRECT, 0);
    driver.offer(&mut ram, 5);
    let chain = q.pop(&mut ram).unwrap().unwrap();
    assert_eq!((chain.head, chain.buffers.len()), (5, 2));
    // An indirect descriptor inside an indirect table, or with NEXT, or of a partial size.
    for (what, flags, len) in [
        ("nested", F_INDIRECT, 32),
        ("with NEXT", F_INDIRECT | F_NEXT, 32),
        ("partial", F_INDIRECT, 24),
        ("empty", F_INDIRECT, 0),
        ("too long", F_INDIRECT, 16 * (MAX_CHAIN as u32 + 1)),
    ] {
        let (mut ram, mut q, mut driver) = (Ram::new(), queue(), Driver { avail: 0 });
        if what == "nested" {
            Driver::descriptor(&mut ram, table, 0, table, 32, flags, 0);
            Driver::descriptor(&mut ram, DESC, 0, table, 32, F_INDIRECT, 0);
        } else {
            Driver::descriptor(&mut ram, DESC, 0, table, len, flags, 1);
        }
        driver.offer(&mut ram, 0);
        assert_eq!(q.pop(&mut ram), Err(Broken::BadIndirect), "{what}");
    }
}

#[test]
fn hostile_queues_are_reported_not_followed() {
    type Build = fn(&mut Ram);
    let cases: [(&str, Build, Broken); 8] = [
        (
            "a loop",
            |ram| Driver::descriptor(ram, DESC, 0, DATA, 8, F_NEXT, 0),
            Broken::TooLong,
        ),
        (
            "a two-descriptor loop",
            |ram| {
                Driver::descriptor(ram, DESC, 0, DATA, 8, F_NEXT, 1);
                Driver::descriptor(ram, DESC, 1, DATA, 8, F_NEXT, 0);
            },
            Broken::TooLong,
        ),
        (
            "next past the table",
            |ram| Driver::descriptor(ram, DESC, 0, DATA, 8, F_NEXT, SIZE),
            Broken::BadIndex,
        ),
        (
            "a buffer outside RAM",
            |ram| Driver::descriptor(ram, DESC, 0, 0x1000, 8, 0, 0),
            Broken::BadBuffer,
        ),
        (
            "a buffer running past the end of RAM",
            |ram| Driver::descriptor(ram, DESC, 0, 0x4000_F000, 0x2000, 0, 0),
            Broken::BadBuffer,
        ),
        (
            "an address that wraps",
            |ram| Driver::descriptor(ram, DESC, 0, u64::MAX - 4, 64, 0, 0),
            Broken::BadBuffer,
        ),
        (
            "read after write",
            |ram| {
                Driver::descriptor(ram, DESC, 0, DATA, 8, F_NEXT | F_WRITE, 1);
                Driver::descriptor(ram, DESC, 1, DATA, 8, 0, 0);
            },
            Broken::ReadAfterWrite,
        ),
        (
            "an indirect table outside RAM",
            |ram| Driver::descriptor(ram, DESC, 0, 0x1000, 32, F_INDIRECT, 0),
            Broken::OutsideRam,
        ),
    ];
    for (what, build, broken) in cases {
        let (mut ram, mut q, mut driver) = (Ram::new(), queue(), Driver { avail: 0 });
        build(&mut ram);
        driver.offer(&mut ram, 0);
        assert_eq!(q.pop(&mut ram), Err(broken), "{what}");
        assert_eq!(q.positions(), (0, 0), "{what}: nothing taken");
    }
    // A head past the table, and an index that jumps.
    let (mut ram, mut q) = (Ram::new(), queue());
    ram.put(DRIVER + 4, &SIZE.to_le_bytes());
    ram.put(DRIVER + 2, &1u16.to_le_bytes());
    assert_eq!(q.pop(&mut ram), Err(Broken::BadIndex));
    ram.put(DRIVER + 2, &(SIZE + 1).to_le_bytes());
    assert_eq!(q.pop(&mut ram), Err(Broken::IndexJump));
    // Rings outside RAM.
    let mut far = Queue::new(SIZE, DESC, 0x1000, DEVICE, false);
    assert_eq!(far.pop(&mut ram), Err(Broken::OutsideRam));
    let mut used_far = Queue::new(SIZE, DESC, DRIVER, 0x1000, false);
    assert_eq!(used_far.push_used(&mut ram, 0, 0), Err(Broken::OutsideRam));
}

#[test]
fn a_chain_of_the_most_buffers_is_taken_and_one_more_is_not() {
    for (n, ok) in [(MAX_CHAIN, true), (MAX_CHAIN + 1, false)] {
        let mut ram = Ram::new();
        // The main table has 256 entries, more than MAX_CHAIN: the bound is the chain's.
        let mut q = Queue::new(256, DESC, DRIVER, DEVICE, false);
        for i in 0..n as u16 {
            let flags = if i as usize == n - 1 { 0 } else { F_NEXT };
            Driver::descriptor(&mut ram, DESC, i, DATA, 8, flags, i + 1);
        }
        ram.put(DRIVER + 4, &0u16.to_le_bytes());
        ram.put(DRIVER + 2, &1u16.to_le_bytes());
        let r = q.pop(&mut ram);
        assert_eq!(r.is_ok(), ok, "{n} buffers: {r:?}");
        if !ok {
            assert_eq!(r, Err(Broken::TooLong));
        }
    }
}

#[test]
fn event_indices_suppress_interrupts_and_notifications() {
    let (mut ram, mut driver) = (Ram::new(), Driver { avail: 0 });
    let mut q = Queue::new(SIZE, DESC, DRIVER, DEVICE, true);
    block_request(&mut ram, 0);
    // The driver wants an interrupt once used passes 2 (used_event = 2).
    ram.put(DRIVER + 4 + 2 * u64::from(SIZE), &2u16.to_le_bytes());
    let mut interrupts = Vec::new();
    for _ in 0..4 {
        driver.offer(&mut ram, 0);
        let chain = q.pop(&mut ram).unwrap().unwrap();
        let before = q.positions().1;
        q.push_used(&mut ram, chain.head, 0).unwrap();
        interrupts.push(q.wants_interrupt(&mut ram, before).unwrap());
    }
    assert_eq!(interrupts, [false, false, true, false]);
    // avail_event follows what was taken: the driver notifies for the next one.
    assert_eq!(ram.u16_at(DEVICE + 4 + 8 * u64::from(SIZE)), 4);
    // Without event indices, the driver's NO_INTERRUPT flag and the device's NO_NOTIFY.
    let mut plain = queue();
    plain.resume((0, 0));
    ram.put(DRIVER, &1u16.to_le_bytes());
    plain.push_used(&mut ram, 0, 0).unwrap();
    assert!(!plain.wants_interrupt(&mut ram, 0).unwrap());
    plain.ask_notifications(&mut ram, false).unwrap();
    assert_eq!(ram.u16_at(DEVICE), 1);
}

#[test]
fn random_memory_never_panics_and_what_is_taken_is_in_ram() {
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut taken, mut refused) = (0, 0);
    for _ in 0..3000 {
        let mut ram = Ram::new();
        // Random descriptors (addresses mostly near RAM), random ring contents.
        for i in 0..SIZE {
            let r = next();
            let addr = match r % 4 {
                0 => r >> 16,
                _ => 0x4000_0000 + ((r >> 20) & 0xFFF0),
            };
            let len = ((r >> 8) & 0x3FF) as u32 * if r % 7 == 0 { 0x10_0000 } else { 1 };
            let flags = (r >> 40) as u16 & 7;
            let next_index = (r >> 48) as u16 % (SIZE + 2);
            Driver::descriptor(&mut ram, DESC, i, addr, len, flags, next_index);
        }
        let r = next();
        ram.put(DRIVER + 2, &((r & 0x1F) as u16).to_le_bytes());
        for i in 0..SIZE {
            ram.put(
                DRIVER + 4 + 2 * u64::from(i),
                &((next() % 20) as u16).to_le_bytes(),
            );
        }
        let mut q = Queue::new(SIZE, DESC, DRIVER, DEVICE, r % 2 == 0);
        for _ in 0..SIZE + 2 {
            match q.pop(&mut ram) {
                Ok(Some(chain)) => {
                    taken += 1;
                    assert!(chain.buffers.len() <= MAX_CHAIN);
                    for b in &chain.buffers {
                        assert!(ram.contains(b.addr, u64::from(b.len)));
                    }
                    q.push_used(&mut ram, chain.head, 0).unwrap();
                }
                Ok(None) => break,
                Err(_) => {
                    refused += 1;
                    break;
                }
            }
        }
    }
    assert!(
        taken > 100 && refused > 100,
        "taken {taken}, refused {refused}"
    );
}

// ----- Block requests ------------------------------------------------------------------------

mod block {
    use super::*;
    use crate::blk::{serve, Disk, Unanswerable};
    use mica_abi::virtio::blk::{request, result};

    /// A RAM disk of `sectors` sectors that can be told to fail.
    struct RamDisk {
        bytes: Vec<u8>,
        fail: bool,
        flushes: u32,
    }

    impl RamDisk {
        fn new(sectors: usize) -> Self {
            RamDisk {
                bytes: vec![0; sectors * 512],
                fail: false,
                flushes: 0,
            }
        }
    }

    impl Disk for RamDisk {
        fn sectors(&self) -> u64 {
            self.bytes.len() as u64 / 512
        }
        fn read(&mut self, sector: u64, buf: &mut [u8]) -> bool {
            let at = sector as usize * 512;
            buf.copy_from_slice(&self.bytes[at..at + buf.len()]);
            !self.fail
        }
        fn write(&mut self, sector: u64, data: &[u8]) -> bool {
            if self.fail {
                return false;
            }
            let at = sector as usize * 512;
            self.bytes[at..at + data.len()].copy_from_slice(data);
            true
        }
        fn flush(&mut self) -> bool {
            self.flushes += 1;
            !self.fail
        }
        fn id(&self) -> &[u8] {
            b"mica-ramdisk"
        }
    }

    const HEADER: u64 = 0x4000_8000;
    const DATA: u64 = 0x4000_9000;
    const STATUS: u64 = 0x4000_C000;

    fn header(ram: &mut Ram, kind: u32, sector: u64) {
        let mut h = [0u8; 16];
        h[..4].copy_from_slice(&kind.to_le_bytes());
        h[8..].copy_from_slice(&sector.to_le_bytes());
        ram.put(HEADER, &h);
    }

    fn chain(buffers: &[(u64, u32, bool)]) -> Chain {
        Chain {
            head: 0,
            buffers: buffers
                .iter()
                .map(|&(addr, len, device_writes)| Buffer {
                    addr,
                    len,
                    device_writes,
                })
                .collect(),
        }
    }

    fn status(ram: &Ram) -> u8 {
        let mut b = [0u8];
        assert!(ram.read(STATUS, &mut b));
        b[0]
    }

    #[test]
    fn a_write_then_a_read_of_the_same_sectors() {
        let (mut ram, mut disk) = (Ram::new(), RamDisk::new(64));
        let data: Vec<u8> = (0..1024u32).map(|i| (i * 7) as u8).collect();
        ram.put(DATA, &data);
        header(&mut ram, request::OUT, 5);
        let out = chain(&[(HEADER, 16, false), (DATA, 1024, false), (STATUS, 1, true)]);
        assert_eq!(serve(&out, &mut ram, &mut disk), Ok(1));
        assert_eq!(status(&ram), result::OK);
        assert_eq!(&disk.bytes[5 * 512..7 * 512], &data[..]);
        // Read it back into two buffers, the status after them in a third.
        ram.put(DATA, &[0; 1024]);
        header(&mut ram, request::IN, 5);
        let rd = chain(&[
            (HEADER, 16, false),
            (DATA, 600, true),
            (DATA + 600, 424, true),
            (STATUS, 1, true),
        ]);
        assert_eq!(serve(&rd, &mut ram, &mut disk), Ok(1025));
        assert_eq!(status(&ram), result::OK);
        let mut back = vec![0u8; 1024];
        assert!(ram.read(DATA, &mut back));
        assert_eq!(back, data);
    }

    #[test]
    fn the_header_and_data_may_be_split_anyhow_and_the_status_share_a_buffer() {
        let (mut ram, mut disk) = (Ram::new(), RamDisk::new(8));
        header(&mut ram, request::OUT, 1);
        ram.put(HEADER + 16, &[0xAB; 512]);
        // Header split 10 + 6, data in the same buffer as the header's end.
        let out = chain(&[
            (HEADER, 10, false),
            (HEADER + 10, 518, false),
            (STATUS, 1, true),
        ]);
        assert_eq!(serve(&out, &mut ram, &mut disk), Ok(1));
        assert_eq!(&disk.bytes[512..1024], &[0xAB; 512][..]);
        // A read whose status is the last byte of the data's buffer.
        header(&mut ram, request::IN, 1);
        let rd = chain(&[(HEADER, 16, false), (DATA, 513, true)]);
        assert_eq!(serve(&rd, &mut ram, &mut disk), Ok(513));
        let mut b = [0u8; 2];
        assert!(ram.read(DATA + 511, &mut b));
        assert_eq!(b, [0xAB, result::OK]);
    }

    #[test]
    fn requests_past_the_disk_or_of_partial_sectors_fail_and_touch_nothing() {
        for (what, kind, sector, len) in [
            ("write past the end", request::OUT, 7, 1024),
            ("read past the end", request::IN, 8, 512),
            ("a sector that wraps", request::IN, u64::MAX, 512),
            ("half a sector", request::OUT, 0, 256),
            ("no data", request::IN, 0, 0),
        ] {
            let (mut ram, mut disk) = (Ram::new(), RamDisk::new(8));
            ram.put(DATA, &[0x5A; 1024]);
            header(&mut ram, kind, sector);
            let writes = kind == request::IN;
            let mut bufs = vec![(HEADER, 16, false)];
            if len > 0 {
                bufs.push((DATA, len, writes));
            }
            bufs.push((STATUS, 1, true));
            let c = chain(&bufs);
            assert!(serve(&c, &mut ram, &mut disk).is_ok(), "{what}");
            assert_eq!(status(&ram), result::IOERR, "{what}");
            assert!(disk.bytes.iter().all(|b| *b == 0), "{what}: disk untouched");
            let mut back = vec![0u8; 1024];
            assert!(ram.read(DATA, &mut back));
            assert!(back.iter().all(|b| *b == 0x5A), "{what}: guest untouched");
        }
    }

    #[test]
    fn flush_get_id_unknown_types_and_failing_disks() {
        let (mut ram, mut disk) = (Ram::new(), RamDisk::new(8));
        header(&mut ram, request::FLUSH, 0);
        let flush = chain(&[(HEADER, 16, false), (STATUS, 1, true)]);
        assert_eq!(serve(&flush, &mut ram, &mut disk), Ok(1));
        assert_eq!((status(&ram), disk.flushes), (result::OK, 1));
        header(&mut ram, request::GET_ID, 0);
        let id = chain(&[(HEADER, 16, false), (DATA, 20, true), (STATUS, 1, true)]);
        assert_eq!(serve(&id, &mut ram, &mut disk), Ok(21));
        let mut b = [0u8; 12];
        assert!(ram.read(DATA, &mut b));
        assert_eq!(&b, b"mica-ramdisk");
        header(&mut ram, 99, 0);
        assert_eq!(serve(&flush, &mut ram, &mut disk), Ok(1));
        assert_eq!(status(&ram), result::UNSUPP);
        disk.fail = true;
        header(&mut ram, request::FLUSH, 0);
        assert_eq!(serve(&flush, &mut ram, &mut disk), Ok(1));
        assert_eq!(
            status(&ram),
            result::IOERR,
            "a failed flush is not acknowledged"
        );
    }

    #[test]
    fn a_chain_that_is_no_request_is_unanswerable() {
        let (mut ram, mut disk) = (Ram::new(), RamDisk::new(8));
        header(&mut ram, request::FLUSH, 0);
        let short = chain(&[(HEADER, 15, false), (STATUS, 1, true)]);
        assert_eq!(serve(&short, &mut ram, &mut disk), Err(Unanswerable));
        let no_status = chain(&[(HEADER, 16, false)]);
        assert_eq!(serve(&no_status, &mut ram, &mut disk), Err(Unanswerable));
        assert_eq!(disk.flushes, 0);
    }
}

// ----- Requests in flight --------------------------------------------------------------------

mod in_flight {
    use super::*;
    use crate::blk::pipeline::{Backend, Op, Pipeline, Progress};
    use mica_abi::virtio::blk::{request, result};
    use std::collections::VecDeque;

    /// A disk that answers only when the test says, in the order it says, through slots of
    /// `SLOT` bytes.
    struct Later {
        disk: Vec<u8>,
        slots: Vec<Vec<u8>>,
        waiting: Vec<(u32, Op)>,
        answers: VecDeque<(u32, bool)>,
        refuse: bool,
    }

    const SLOT: usize = 1024;

    impl Later {
        fn new(slots: usize) -> Self {
            Later {
                disk: vec![0; 64 * 512],
                slots: vec![vec![0; SLOT]; slots],
                waiting: Vec::new(),
                answers: VecDeque::new(),
                refuse: false,
            }
        }

        /// Carries out the waiting operation at `index` and queues its answer.
        fn answer(&mut self, index: usize) {
            let (tag, op) = self.waiting.remove(index);
            match op {
                Op::Read {
                    slot,
                    sector,
                    sectors,
                } => {
                    let (at, n) = (sector as usize * 512, sectors as usize * 512);
                    self.slots[slot][..n].copy_from_slice(&self.disk[at..at + n]);
                }
                Op::Write {
                    slot,
                    sector,
                    sectors,
                } => {
                    let (at, n) = (sector as usize * 512, sectors as usize * 512);
                    self.disk[at..at + n].copy_from_slice(&self.slots[slot][..n]);
                }
                Op::Flush => {}
            }
            self.answers.push_back((tag, true));
        }
    }

    impl Backend for Later {
        type Memory = Ram;
        fn sectors(&self) -> u64 {
            self.disk.len() as u64 / 512
        }
        fn id(&self) -> &[u8] {
            b"later"
        }
        fn slots(&self) -> usize {
            self.slots.len()
        }
        fn slot_bytes(&self) -> usize {
            SLOT
        }
        fn copy_from_guest(
            &mut self,
            slot: usize,
            at: usize,
            mem: &Ram,
            addr: u64,
            len: usize,
        ) -> bool {
            mem.read(addr, &mut self.slots[slot][at..at + len])
        }
        fn copy_to_guest(
            &self,
            slot: usize,
            at: usize,
            mem: &mut Ram,
            addr: u64,
            len: usize,
        ) -> bool {
            mem.write(addr, &self.slots[slot][at..at + len])
        }
        fn submit(&mut self, tag: u32, op: Op) -> bool {
            if self.refuse {
                return false;
            }
            self.waiting.push((tag, op));
            true
        }
        fn poll(&mut self) -> Option<(u32, bool)> {
            self.answers.pop_front()
        }
    }

    fn header_at(i: u16) -> u64 {
        0x4000_3000 + 0x20 * u64::from(i)
    }
    fn data_at(i: u16) -> u64 {
        0x4000_8000 + 0x1000 * u64::from(i)
    }
    fn status_at(i: u16) -> u64 {
        0x4000_3800 + u64::from(i)
    }

    /// Request `i` (descriptors 3i..3i+2): `kind` of `bytes` at `sector`.
    fn offer(ram: &mut Ram, driver: &mut Driver, i: u16, kind: u32, sector: u64, bytes: u32) {
        let mut h = [0u8; 16];
        h[..4].copy_from_slice(&kind.to_le_bytes());
        h[8..].copy_from_slice(&sector.to_le_bytes());
        ram.put(header_at(i), &h);
        ram.put(status_at(i), &[0xFF]);
        let reads = kind == request::IN || kind == request::GET_ID;
        let data_flags = if reads { F_WRITE } else { 0 };
        let d = 3 * i;
        Driver::descriptor(ram, DESC, d, header_at(i), 16, F_NEXT, d + 1);
        Driver::descriptor(
            ram,
            DESC,
            d + 1,
            data_at(i),
            bytes,
            F_NEXT | data_flags,
            d + 2,
        );
        Driver::descriptor(ram, DESC, d + 2, status_at(i), 1, F_WRITE, 0);
        driver.offer(ram, d);
    }

    fn status(ram: &Ram, i: u16) -> u8 {
        let mut b = [0u8];
        assert!(ram.read(status_at(i), &mut b));
        b[0]
    }

    /// The used ring's elements so far: (head, length).
    fn used(ram: &Ram) -> Vec<(u16, u32)> {
        (0..ram.u16_at(DEVICE + 2))
            .map(|n| {
                let mut e = [0u8; 8];
                assert!(ram.read(DEVICE + 4 + 8 * u64::from(n % SIZE), &mut e));
                let head = u16::from_le_bytes([e[0], e[1]]);
                (head, u32::from_le_bytes([e[4], e[5], e[6], e[7]]))
            })
            .collect()
    }

    #[test]
    fn several_requests_are_in_flight_and_answered_in_any_order() {
        let (mut ram, mut q, mut driver) = (Ram::new(), queue(), Driver { avail: 0 });
        let mut disk = Later::new(2);
        let mut p = Pipeline::new(&disk);
        let a: Vec<u8> = (0..3072u32).map(|i| (i * 13 + 1) as u8).collect();
        let b: Vec<u8> = (0..512u32).map(|i| (i * 7 + 3) as u8).collect();
        ram.put(data_at(0), &a);
        ram.put(data_at(1), &b);
        // Three pieces of a slot each, one piece, and a read that must wait for a slot.
        offer(&mut ram, &mut driver, 0, request::OUT, 0, 3072);
        offer(&mut ram, &mut driver, 1, request::OUT, 8, 512);
        offer(&mut ram, &mut driver, 2, request::IN, 8, 512);
        let step = p.step(Some((1, &mut q)), &mut ram, &mut disk).unwrap();
        assert_eq!(
            step,
            Progress {
                used: 0,
                submitted: 2,
                more: false,
            }
        );
        assert_eq!(p.in_flight(), 2);
        assert_eq!(q.positions(), (2, 0), "the third chain waits in the queue");
        // The second request is answered first.
        disk.answer(1);
        let step = p.step(Some((1, &mut q)), &mut ram, &mut disk).unwrap();
        assert_eq!(
            step,
            Progress {
                used: 1,
                submitted: 1,
                more: false,
            }
        );
        assert_eq!(used(&ram), vec![(3, 1)]);
        assert_eq!(status(&ram, 1), result::OK);
        // The first request's pieces, the read between them.
        while !disk.waiting.is_empty() {
            disk.answer(disk.waiting.len() - 1);
            p.step(Some((1, &mut q)), &mut ram, &mut disk).unwrap();
        }
        assert_eq!(p.in_flight(), 0);
        assert_eq!((p.most_in_flight(), p.capacity()), (2, 2));
        assert_eq!(used(&ram), vec![(3, 1), (6, 513), (0, 1)]);
        assert_eq!([status(&ram, 0), status(&ram, 2)], [result::OK; 2]);
        assert_eq!(&disk.disk[..3072], &a[..]);
        assert_eq!(&disk.disk[8 * 512..9 * 512], &b[..]);
        let mut back = vec![0u8; 512];
        assert!(ram.read(data_at(2), &mut back));
        assert_eq!(back, b);
    }

    #[test]
    fn an_answer_after_the_guests_reset_writes_nothing() {
        let (mut ram, mut q, mut driver) = (Ram::new(), queue(), Driver { avail: 0 });
        let mut disk = Later::new(1);
        disk.disk[..512].fill(0xAB);
        let mut p = Pipeline::new(&disk);
        offer(&mut ram, &mut driver, 0, request::IN, 0, 512);
        p.step(Some((1, &mut q)), &mut ram, &mut disk).unwrap();
        disk.answer(0);
        // The guest reset the device (epoch 2, a new queue) before the answer came.
        let mut fresh = queue();
        ram.put(DRIVER + 2, &0u16.to_le_bytes());
        let step = p.step(Some((2, &mut fresh)), &mut ram, &mut disk).unwrap();
        assert_eq!(step, Progress::default());
        assert_eq!(p.in_flight(), 0, "the slot is free again");
        assert_eq!(status(&ram, 0), 0xFF);
        assert_eq!(ram.u16_at(DEVICE + 2), 0);
        let mut back = vec![0u8; 512];
        assert!(ram.read(data_at(0), &mut back));
        assert!(back.iter().all(|&b| b == 0), "no data written");
        // While the device is not live, answers are dropped and nothing is taken.
        let mut driver = Driver { avail: 0 };
        offer(&mut ram, &mut driver, 0, request::IN, 0, 512);
        assert_eq!(
            p.step(None, &mut ram, &mut disk).unwrap(),
            Progress::default()
        );
        assert!(disk.waiting.is_empty());
    }

    #[test]
    fn what_needs_no_disk_is_answered_at_once_and_refusals_fail_the_request() {
        let (mut ram, mut q, mut driver) = (Ram::new(), queue(), Driver { avail: 0 });
        let mut disk = Later::new(1);
        let mut p = Pipeline::new(&disk);
        offer(&mut ram, &mut driver, 0, request::GET_ID, 0, 20);
        offer(&mut ram, &mut driver, 1, 77, 0, 512);
        offer(&mut ram, &mut driver, 2, request::IN, 63, 1024); // past the disk
        let step = p.step(Some((1, &mut q)), &mut ram, &mut disk).unwrap();
        assert_eq!(
            step,
            Progress {
                used: 3,
                submitted: 0,
                more: false,
            }
        );
        let mut id = [0u8; 5];
        assert!(ram.read(data_at(0), &mut id));
        assert_eq!(&id, b"later");
        assert_eq!(
            [status(&ram, 0), status(&ram, 1), status(&ram, 2)],
            [result::OK, result::UNSUPP, result::IOERR]
        );
        // A backend that refuses: the request fails, the slot stays free.
        disk.refuse = true;
        offer(&mut ram, &mut driver, 3, request::FLUSH, 0, 0);
        let step = p.step(Some((1, &mut q)), &mut ram, &mut disk).unwrap();
        assert_eq!(
            step,
            Progress {
                used: 1,
                submitted: 0,
                more: false,
            }
        );
        assert_eq!(status(&ram, 3), result::IOERR);
        assert_eq!(p.in_flight(), 0);
        // A queue full of requests answered at once is taken a step's worth at a time.
        let mut q = Queue::new(128, DESC, DRIVER, DEVICE, false);
        ram.put(DRIVER + 2, &100u16.to_le_bytes());
        for n in 0..100u16 {
            ram.put(DRIVER + 4 + 2 * u64::from(n), &0u16.to_le_bytes());
        }
        let step = p.step(Some((1, &mut q)), &mut ram, &mut disk).unwrap();
        let most = crate::blk::pipeline::MAX_TAKEN_PER_STEP;
        assert_eq!((step.used, step.more), (most, true));
        let step = p.step(Some((1, &mut q)), &mut ram, &mut disk).unwrap();
        assert_eq!((step.used, step.more), (100 - most, false));
        // An answer to nothing in flight changes nothing.
        disk.answers.push_back((0x1234_5600, true));
        assert_eq!(
            p.step(Some((1, &mut q)), &mut ram, &mut disk).unwrap(),
            Progress::default()
        );
    }
}
