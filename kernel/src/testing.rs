//! A mock HAL and system-image builders, for the kernel's host tests and the harnesses in
//! `verify/` (feature `testing`): every decision the kernel makes runs on the host against
//! them.
//!
//! The mock's stage 2 takes real frames from the kernel's frame allocator for its tables (a
//! root per address space, a level-2 table per GiB and a level-3 table per 2 MiB that holds a
//! page, like the aarch64 HAL's 39-bit tables), so a table the kernel forgets to free shows as
//! memory that never comes back.

extern crate std;

use std::boxed::Box;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::format;
use std::string::String;
use std::vec::Vec;

use mica_abi::hypercall::Call;
use mica_abi::sysimage::{self, DomainRecord, Header, SegmentRecord, SystemImage};
use mica_abi::{Rights, Status};

use crate::domain::DomainId;
use crate::frames::Frames;
use crate::hal::{Hal, Stage2, VcpuContext};
use crate::kernel::{Exit, Kernel};
use crate::memmap::{PhysRange, RangeSet};
use crate::vcpu::VcpuId;

// ----- The mock HAL ---------------------------------------------------------------------------

/// A stage 2 that records pages, and holds real frames for its tables.
#[derive(Default)]
pub struct MockStage2 {
    /// RAM pages: IPA -> (PA, permissions).
    pub pages: BTreeMap<u64, (u64, Rights)>,
    /// Device pages: IPA -> PA.
    pub device_pages: BTreeMap<u64, u64>,
    /// The root table's frame.
    pub root: Option<PhysRange>,
    /// Table frames below the root: one per GiB region (level 2) and per 2 MiB region
    /// (level 3) that holds a page, keyed by (level, region).
    pub tables: BTreeMap<(u8, u64), PhysRange>,
}

impl MockStage2 {
    /// The (level, region) keys of the tables the pages mapped now need.
    fn needed(&self) -> BTreeSet<(u8, u64)> {
        self.pages
            .keys()
            .chain(self.device_pages.keys())
            .flat_map(|ipa| [(2u8, ipa >> 30), (3u8, ipa >> 21)])
            .collect()
    }

    /// Allocates tables the pages need and frees the ones they no longer do.
    fn settle(&mut self, frames: &mut Frames) -> Result<(), Status> {
        let needed = self.needed();
        let stale: Vec<(u8, u64)> = self
            .tables
            .keys()
            .filter(|k| !needed.contains(k))
            .copied()
            .collect();
        for k in stale {
            if let Some(r) = self.tables.remove(&k) {
                frames.free(r);
            }
        }
        for k in needed {
            if let std::collections::btree_map::Entry::Vacant(e) = self.tables.entry(k) {
                e.insert(frames.alloc(1).ok_or(Status::OutOfMemory)?);
            }
        }
        Ok(())
    }

    /// Every frame it holds (root and tables).
    pub fn frames_held(&self) -> u64 {
        (self.tables.len() as u64 + u64::from(self.root.is_some())) * 4096
    }
}

impl Stage2 for MockStage2 {
    fn map(
        &mut self,
        ipa: u64,
        pa: u64,
        pages: u64,
        perms: Rights,
        frames: &mut Frames,
    ) -> Result<(), Status> {
        for i in 0..pages {
            assert!(
                !self.pages.contains_key(&(ipa + i * 4096)),
                "kernel mapped twice at {ipa:#x}"
            );
        }
        for i in 0..pages {
            self.pages.insert(ipa + i * 4096, (pa + i * 4096, perms));
        }
        let settled = self.settle(frames);
        if settled.is_err() {
            // As the real HAL: on error nothing is mapped.
            for i in 0..pages {
                self.pages.remove(&(ipa + i * 4096));
            }
            let _ = self.settle(frames);
        }
        settled
    }
    fn unmap(&mut self, ipa: u64, pages: u64, frames: &mut Frames) {
        for i in 0..pages {
            self.pages.remove(&(ipa + i * 4096));
            self.device_pages.remove(&(ipa + i * 4096));
        }
        let _ = self.settle(frames);
    }
    fn release(&mut self, frames: &mut Frames) {
        self.pages.clear();
        self.device_pages.clear();
        let _ = self.settle(frames);
        if let Some(r) = self.root.take() {
            frames.free(r);
        }
    }
    fn table_bytes(&self) -> u64 {
        self.tables.len() as u64 * 4096
    }
    fn table_bytes_at_most(&self, ipa: u64, _: u64, pages: u64) -> u64 {
        if pages == 0 {
            return 0;
        }
        let last = ipa + (pages - 1) * 4096;
        ((last >> 30) - (ipa >> 30) + 1 + (last >> 21) - (ipa >> 21) + 1) * 4096
    }
    fn map_device(
        &mut self,
        ipa: u64,
        pa: u64,
        pages: u64,
        _: Rights,
        frames: &mut Frames,
    ) -> Result<(), Status> {
        for i in 0..pages {
            self.device_pages.insert(ipa + i * 4096, pa + i * 4096);
        }
        self.settle(frames)
    }
}

/// A vCPU context that records what the kernel set.
#[derive(Default, Debug, Clone, PartialEq)]
pub struct MockContext {
    /// The virtual timer's deadline, if armed (set by tests).
    pub timer: Option<u64>,
    /// Where its clock starts (`set_clock_base`).
    pub clock_base: u64,
    /// Where the vCPU starts.
    pub entry: u64,
    /// x0-x3 at entry.
    pub regs: [u64; 4],
    /// The last call's result registers.
    pub result: Option<[u64; 4]>,
    /// Its index in the domain.
    pub index: u16,
    /// Whether it starts with default-cacheable memory.
    pub cacheable: bool,
}

impl VcpuContext for MockContext {
    fn reset(&mut self, entry: u64, regs: [u64; 4], index: u16, cacheable: bool) {
        *self = MockContext {
            timer: None,
            clock_base: 0,
            entry,
            regs,
            result: None,
            index,
            cacheable,
        };
    }
    fn set_result(&mut self, regs: [u64; 4]) {
        self.result = Some(regs);
    }
    fn set_clock_base(&mut self, ns: u64) {
        self.clock_base = ns;
    }
    fn timer_deadline_ns(&self) -> Option<u64> {
        self.timer
    }
}

/// The mock hardware: a console, physical memory as a byte map, a clock tests set, and logs
/// of interrupt-controller calls and kicks.
#[derive(Default)]
pub struct MockHal {
    /// Interrupt-controller calls, in words.
    pub irq_log: RefCell<Vec<String>>,
    /// Whether injecting a hardware interrupt succeeds.
    pub inject_ok: std::cell::Cell<bool>,
    /// The clock (ns).
    pub now: std::cell::Cell<u64>,
    /// Everything written to the console.
    pub console: RefCell<String>,
    /// Physical memory: address -> non-zero byte.
    pub memory: RefCell<BTreeMap<u64, u8>>,
    /// CPUs kicked, in order.
    pub kicks: RefCell<Vec<usize>>,
    /// The level of every emulated interrupt line last driven (`set_line`), by INTID.
    pub lines: RefCell<BTreeMap<u32, bool>>,
}

impl Hal for MockHal {
    type Stage2 = MockStage2;
    type Context = MockContext;
    /// The vCPU count it was made for, to check that a restart resets it.
    type DomainArch = u16;
    fn new_stage2(&self, _: u16, frames: &mut Frames) -> Result<MockStage2, Status> {
        let root = frames.alloc(1).ok_or(Status::OutOfMemory)?;
        Ok(MockStage2 {
            root: Some(root),
            ..MockStage2::default()
        })
    }
    fn new_context(&self) -> MockContext {
        MockContext::default()
    }
    fn new_domain_arch(&self, vcpus: u16) -> u16 {
        vcpus
    }
    fn console_write(&self, bytes: &[u8]) {
        self.console
            .borrow_mut()
            .push_str(&String::from_utf8_lossy(bytes));
    }
    fn zero_phys(&self, range: PhysRange) {
        let mut m = self.memory.borrow_mut();
        let keys: Vec<u64> = m.range(range.start..range.end).map(|(k, _)| *k).collect();
        for k in keys {
            m.remove(&k);
        }
    }
    fn write_phys(&self, pa: u64, bytes: &[u8]) {
        let mut m = self.memory.borrow_mut();
        for (i, b) in bytes.iter().enumerate() {
            if *b != 0 {
                m.insert(pa + i as u64, *b);
            } else {
                m.remove(&(pa + i as u64));
            }
        }
    }
    fn kick(&self, cpu: usize) {
        self.kicks.borrow_mut().push(cpu);
    }
    fn now_ns(&self) -> u64 {
        self.now.get()
    }
    fn irq_enable(&self, intid: u32, cpu: usize) {
        self.irq_log
            .borrow_mut()
            .push(format!("enable {intid} on {cpu}"));
    }
    fn irq_disable(&self, intid: u32) {
        self.irq_log.borrow_mut().push(format!("disable {intid}"));
    }
    fn irq_deactivate(&self, intid: u32) {
        self.irq_log
            .borrow_mut()
            .push(format!("deactivate {intid}"));
    }
    fn inject_hardware_irq(&self, _: &mut u16, vcpu: u16, intid: u32) -> bool {
        self.irq_log
            .borrow_mut()
            .push(format!("inject {intid} to vcpu {vcpu}"));
        self.inject_ok.get()
    }
    fn atomic_or_phys(&self, pa: u64, bits: u64) -> bool {
        let old = read_u64(&self.memory.borrow(), pa);
        self.write_phys(pa, &(old | bits).to_le_bytes());
        true
    }
    fn cpus(&self) -> usize {
        2
    }
    fn set_line(&self, _: &mut u16, intid: u32, asserted: bool) -> u32 {
        self.lines.borrow_mut().insert(intid, asserted);
        0
    }
}

/// The little-endian word at `pa` of the mock's memory.
pub fn read_u64(m: &BTreeMap<u64, u8>, pa: u64) -> u64 {
    let mut b = [0u8; 8];
    for (i, x) in b.iter_mut().enumerate() {
        *x = *m.get(&(pa + i as u64)).unwrap_or(&0);
    }
    u64::from_le_bytes(b)
}

/// The boot-info page domain `id` would read.
pub fn boot_info(k: &Kernel<MockHal>, id: DomainId) -> mica_abi::bootinfo::BootInfo {
    use zerocopy::FromBytes;
    let d = k.domain(id).unwrap();
    let layout = mica_abi::layout::DomainLayout::new(d.ram.iter().map(|r| r.size()).sum());
    let pa = d.mappings.translate(layout.boot_page()).unwrap();
    let m = k.hal.memory.borrow();
    let bytes: Vec<u8> = (0..size_of::<mica_abi::bootinfo::BootInfo>() as u64)
        .map(|i| *m.get(&(pa + i)).unwrap_or(&0))
        .collect();
    mica_abi::bootinfo::BootInfo::read_from_bytes(&bytes).unwrap()
}

// ----- System images for tests ----------------------------------------------------------------

/// A domain record of a test system image.
pub struct Dom {
    /// NUMA node of its RAM (0: the kernel chooses).
    pub memory_node: u8,
    /// Extra record flags (`sysimage::FLAG_*`).
    pub flags: u32,
    /// Scheduling priority (0: default).
    pub priority: u32,
    /// Its name.
    pub name: &'static str,
    /// RAM in KiB.
    pub kib: u64,
    /// vCPUs.
    pub vcpus: u32,
    /// Physical CPU of each vCPU.
    pub cpus: [u8; 8],
    /// x0 at entry.
    pub arg: u64,
    /// Started at boot.
    pub at_boot: bool,
    /// Starts after record `after - 1` is destroyed (0: no).
    pub after: u32,
    /// Takes the RAM of record `memory_from - 1` (0: no).
    pub memory_from: u32,
    /// Its one segment's bytes, at the RAM base.
    pub payload: &'static [u8],
}

/// A 256 KiB, one-vCPU domain started at boot.
pub fn dom(name: &'static str) -> Dom {
    Dom {
        memory_node: 0,
        flags: 0,
        priority: 0,
        name,
        kib: 256,
        vcpus: 1,
        cpus: [sysimage::ANY_CPU; 8],
        arg: 0,
        at_boot: true,
        after: 0,
        memory_from: 0,
        payload: b"\x01\x02\x03\x04code",
    }
}

/// A system image of `doms`.
pub fn image(doms: &[Dom]) -> SystemImage<'static> {
    image_with(doms, &[], &[])
}

/// A system image with channels and shared regions.
pub fn image_with(
    doms: &[Dom],
    channels: &[sysimage::ChannelRecord],
    shares: &[sysimage::ShareRecord],
) -> SystemImage<'static> {
    image_with_devices(doms, channels, shares, &[])
}

/// A system image with channels, shared regions and devices.
pub fn image_with_devices(
    doms: &[Dom],
    channels: &[sysimage::ChannelRecord],
    shares: &[sysimage::ShareRecord],
    devices: &[sysimage::DeviceRecord],
) -> SystemImage<'static> {
    image_with_virtio(doms, channels, shares, devices, &[])
}

/// A system image with channels, shared regions, devices and virtio devices.
pub fn image_with_virtio(
    doms: &[Dom],
    channels: &[sysimage::ChannelRecord],
    shares: &[sysimage::ShareRecord],
    devices: &[sysimage::DeviceRecord],
    virtio: &[sysimage::VirtioRecord],
) -> SystemImage<'static> {
    use zerocopy::IntoBytes;
    let header_len = size_of::<Header>() + doms.len() * size_of::<DomainRecord>();
    let data_start = header_len
        + doms.len() * size_of::<SegmentRecord>()
        + size_of_val(channels)
        + size_of_val(shares)
        + size_of_val(devices)
        + size_of_val(virtio);
    let mut records = Vec::new();
    let mut segments = Vec::new();
    let mut offset = data_start as u64;
    for (i, d) in doms.iter().enumerate() {
        let mut name = [0u8; 32];
        name[..d.name.len()].copy_from_slice(d.name.as_bytes());
        records.push(DomainRecord {
            name,
            memory_bytes: d.kib * 1024,
            entry: sysimage::DOMAIN_RAM_BASE,
            arg: d.arg,
            first_segment: i as u32,
            segment_count: 1,
            vcpu_count: d.vcpus,
            flags: if d.at_boot {
                sysimage::FLAG_START_AT_BOOT
            } else {
                0
            } | if d.flags & sysimage::FLAG_LINUX == 0 {
                sysimage::FLAG_DEFAULT_CACHEABLE
            } else {
                0
            } | d.flags,
            affinity: d.cpus,
            start_after: d.after,
            memory_from: d.memory_from,
            priority: d.priority,
            sched: mica_abi::sysimage::SchedRequest {
                memory_node: d.memory_node,
                ..Default::default()
            },
        });
        segments.push(SegmentRecord {
            ipa: sysimage::DOMAIN_RAM_BASE,
            offset,
            file_size: d.payload.len() as u64,
            mem_size: 0x2000,
        });
        offset += d.payload.len() as u64;
    }
    let header = Header {
        magic: sysimage::MAGIC,
        version: sysimage::VERSION,
        domain_count: doms.len() as u32,
        total_size: offset,
        channel_count: channels.len() as u32,
        share_count: shares.len() as u32,
        device_count: devices.len() as u32,
        virtio_count: virtio.len() as u32,
    };
    let mut blob = header.as_bytes().to_vec();
    for r in &records {
        blob.extend_from_slice(r.as_bytes());
    }
    for s in &segments {
        blob.extend_from_slice(s.as_bytes());
    }
    blob.extend_from_slice(channels.as_bytes());
    blob.extend_from_slice(shares.as_bytes());
    blob.extend_from_slice(devices.as_bytes());
    blob.extend_from_slice(virtio.as_bytes());
    for d in doms {
        blob.extend_from_slice(d.payload);
    }
    SystemImage::parse(Box::leak(blob.into_boxed_slice())).unwrap()
}

/// The 64 MiB of RAM the test kernel manages.
pub const RAM: PhysRange = PhysRange {
    start: 0x4000_0000,
    end: 0x4400_0000,
};

/// A kernel with [`RAM`] that has loaded `doms`.
pub fn kernel(doms: &[Dom]) -> Box<Kernel<MockHal>> {
    let mut k = Box::new(Kernel::new(MockHal::default()));
    let mut free: RangeSet<4> = RangeSet::new();
    free.insert(RAM).unwrap();
    k.frames.add_ranges(&free);
    k.load_system(image(doms)).unwrap();
    k
}

/// A kernel with one domain, `name`, running on CPU 0 (returned with the CPU).
pub fn single(name: &'static str) -> (Box<Kernel<MockHal>>, usize) {
    let mut d = dom(name);
    d.cpus[0] = 0;
    let mut k = kernel(&[d]);
    run(&mut k, 0).unwrap();
    (k, 0)
}

/// Like [`single`], for a domain `builder` that holds scheduling authority (so it may place
/// vCPUs on any CPU).
pub fn builder() -> (Box<Kernel<MockHal>>, usize) {
    let mut d = dom("builder");
    d.cpus[0] = 0;
    d.flags = sysimage::FLAG_SCHED_CONTROL;
    let mut k = kernel(&[d]);
    run(&mut k, 0).unwrap();
    (k, 0)
}

/// The id of the domain named `name`.
pub fn id_of(k: &Kernel<MockHal>, name: &str) -> DomainId {
    k.domains()
        .find(|d| d.name() == name)
        .map(|d| d.id)
        .unwrap()
}

/// Runs `cpu`'s scheduler and returns the vCPU it picked.
pub fn run(k: &mut Kernel<MockHal>, cpu: usize) -> Option<VcpuId> {
    k.pick(cpu).map(|n| n.vcpu)
}

/// Issues a Mica hypercall from whatever runs on `cpu` and returns x0-x3.
pub fn hvc(k: &mut Kernel<MockHal>, cpu: usize, call: Call, args: [u64; 6]) -> [u64; 4] {
    raw(k, cpu, call.function_id(), args)
}

/// Issues the call `args` are the arguments of from whatever runs on `cpu`, encoded as the
/// runtime encodes it (`mica_abi::args`); x0-x3 after it.
pub fn call<A: mica_abi::args::CallArgs>(k: &mut Kernel<MockHal>, cpu: usize, args: A) -> [u64; 4] {
    hvc(k, cpu, A::CALL, args.regs())
}

/// Issues a call with function id `function` from whatever runs on `cpu`; x0-x3 after it.
pub fn raw(k: &mut Kernel<MockHal>, cpu: usize, function: u64, args: [u64; 6]) -> [u64; 4] {
    let v = k.current(cpu).expect("something runs on this cpu");
    k.handle_exit(cpu, &Exit::Hvc { function, args });
    k.vcpu(v)
        .and_then(|x| x.context.result)
        .unwrap_or([u64::MAX; 4])
}

/// The status of a call's result registers.
pub fn status(r: [u64; 4]) -> Result<(), Status> {
    Status::from_raw(r[0]).unwrap_or(Err(Status::NotSupported))
}
