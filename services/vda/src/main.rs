//! `vda`: the device domain of one guest's virtio disk (docs/virtio.md): the disk is its own
//! RAM (RAM-disk mode), or an extent of a real disk the block service `blk` drives, when the
//! manifest's disk names a `[[drive]]` (then the boot-info page has the channel NAME-blk and
//! the I/O region NAME-io: each request goes to `blk` through a data slot of its own, several
//! in flight at once, answered as `blk` answers them; the guest's vCPUs never wait).
//!
//! From its boot-info page it takes the first VirtioDevice capability (named NAME by the
//! manifest's `disks`), the kernel's notification channel NAME-events and the guest's RAM,
//! shared with it as NAME-ram. The disk is its own free RAM, as large as the device's capacity
//! (`virtio_config`; a domain too small for it says so and ends). Then, for every notification:
//! `virtio_info` (the driver ready? the epoch), `virtio_queue` for a new epoch, take every
//! chain the guest made available (`mica_virtqueue::Queue::pop`: every rule checked), carry out
//! each request (`mica_virtqueue::blk::serve`), give it back, and interrupt the guest once per
//! batch if it asked (`virtio_signal`). A guest that breaks its queue gets its device marked
//! as needing a reset (`virtio_signal` with `broken`); this domain goes on.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use mica_abi::blkio;
use mica_abi::bootinfo::suffix;
use mica_abi::virtio::{feature, status};
use mica_abi::ObjectType;
use mica_rt::ring::{Ring, RingMemory, SharedRegion};
use mica_rt::{events, hypercall, memory, println, BootInfo, Port, Slot};
use mica_virtqueue::blk::pipeline::{Backend, Op, Pipeline, MAX_TAKEN_PER_STEP};
use mica_virtqueue::blk::{self, Disk};
use mica_virtqueue::{GuestMemory, Queue};
use zerocopy::IntoBytes;

/// The guest's RAM as this domain sees it: guest-physical `base..base + len` at the region.
struct GuestRam {
    region: SharedRegion,
    base: u64,
}

impl GuestRam {
    fn offset(&self, addr: u64, len: u64) -> Option<usize> {
        let off = addr.checked_sub(self.base)?;
        let end = off.checked_add(len)?;
        (end <= self.region.len() as u64).then_some(off as usize)
    }
}

impl GuestMemory for GuestRam {
    fn contains(&self, addr: u64, len: u64) -> bool {
        self.offset(addr, len).is_some()
    }
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        let Some(off) = self.offset(addr, buf.len() as u64) else {
            return false;
        };
        self.region.read(off, buf);
        true
    }
    fn write(&mut self, addr: u64, bytes: &[u8]) -> bool {
        let Some(off) = self.offset(addr, bytes.len() as u64) else {
            return false;
        };
        self.region.write(off, bytes);
        true
    }
}

/// A disk in this domain's free RAM.
struct RamDisk {
    bytes: &'static mut [u8],
}

impl Disk for RamDisk {
    fn sectors(&self) -> u64 {
        self.bytes.len() as u64 / 512
    }
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> bool {
        let at = sector as usize * 512;
        match self.bytes.get(at..at + buf.len()) {
            Some(src) => {
                buf.copy_from_slice(src);
                true
            }
            None => false,
        }
    }
    fn write(&mut self, sector: u64, data: &[u8]) -> bool {
        let at = sector as usize * 512;
        match self.bytes.get_mut(at..at + data.len()) {
            Some(dst) => {
                dst.copy_from_slice(data);
                true
            }
            None => false,
        }
    }
    fn flush(&mut self) -> bool {
        // RAM: a completed write is as durable as it gets.
        true
    }
    fn id(&self) -> &[u8] {
        b"mica-ram-disk"
    }
}

/// An extent of a real disk, served by the block service through the I/O region's rings and
/// data slots: the requests of the guest in flight at once ([`Pipeline`]), one slot each.
struct Remote {
    sectors: u64,
    region: SharedRegion,
    slots: usize,
    requests: Ring<SharedRegion>,
    completions: Ring<SharedRegion>,
    /// Requests were pushed since the block service was last told.
    unsent: bool,
}

impl Remote {
    fn slot_offset(slot: usize, at: usize) -> usize {
        blkio::CONTROL_BYTES + slot * blkio::SLOT_BYTES + at
    }
}

impl Backend for Remote {
    type Memory = GuestRam;
    fn sectors(&self) -> u64 {
        self.sectors
    }
    fn id(&self) -> &[u8] {
        b"mica-blk-extent"
    }
    fn slots(&self) -> usize {
        self.slots
    }
    fn slot_bytes(&self) -> usize {
        blkio::SLOT_BYTES
    }
    fn copy_from_guest(
        &mut self,
        slot: usize,
        at: usize,
        mem: &GuestRam,
        addr: u64,
        len: usize,
    ) -> bool {
        let Some(off) = mem.offset(addr, len as u64) else {
            return false;
        };
        mem.region
            .copy_to(off, &self.region, Self::slot_offset(slot, at), len);
        true
    }
    fn copy_to_guest(
        &self,
        slot: usize,
        at: usize,
        mem: &mut GuestRam,
        addr: u64,
        len: usize,
    ) -> bool {
        let Some(off) = mem.offset(addr, len as u64) else {
            return false;
        };
        self.region
            .copy_to(Self::slot_offset(slot, at), &mem.region, off, len);
        true
    }
    fn submit(&mut self, tag: u32, op: Op) -> bool {
        let (op, slot, sector, sectors) = match op {
            Op::Read {
                slot,
                sector,
                sectors,
            } => (blkio::op::READ, slot, sector, sectors),
            Op::Write {
                slot,
                sector,
                sectors,
            } => (blkio::op::WRITE, slot, sector, sectors),
            Op::Flush => (blkio::op::FLUSH, 0, 0, 0),
        };
        let request = blkio::Request {
            tag,
            op,
            slot: slot as u16,
            sectors,
            sector,
        };
        let pushed = self.requests.push(&request.encode()).is_ok();
        self.unsent |= pushed;
        pushed
    }
    fn poll(&mut self) -> Option<(u32, bool)> {
        loop {
            let mut msg = [0u8; blkio::COMPLETION_SLOT];
            let popped = self.completions.pop(&mut msg).ok()??;
            // An entry that is no completion is skipped (the service's mistake).
            if let Some(c) = blkio::Completion::decode(&msg[..popped.len]) {
                return Some((c.tag, c.status == blkio::status::OK));
            }
        }
    }
}

/// Takes and serves the chains the guest made available, at most [`MAX_TAKEN_PER_STEP`];
/// `Ok(true)` if there may be more, `Err` if it broke its queue.
fn serve_batch(
    q: &mut Queue,
    ram: &mut GuestRam,
    disk: &mut impl Disk,
    served: &mut u64,
) -> Result<bool, ()> {
    for _ in 0..MAX_TAKEN_PER_STEP {
        let Some(chain) = q.pop(ram).map_err(drop)? else {
            return Ok(false);
        };
        let written = blk::serve(&chain, ram, disk).map_err(drop)?;
        q.push_used(ram, chain.head, written).map_err(drop)?;
        *served += 1;
    }
    Ok(true)
}

fn main(_info: BootInfo) -> ! {
    let Some(page) = mica_rt::bootinfo() else {
        println!("vda: no valid boot-info page");
        mica_rt::exit()
    };
    let Some(entry) = page
        .caps()
        .iter()
        .find(|c| c.object_type == ObjectType::VirtioDevice as u8)
    else {
        println!("vda: no VirtioDevice capability to serve");
        mica_rt::exit()
    };
    let name = mica_abi::bootinfo::name_str(&entry.name);
    let device = Slot(entry.slot);
    let mut events_name = heapless::String::<24>::new();
    let mut ram_name = heapless::String::<24>::new();
    let _ = (
        events_name.push_str(name),
        events_name.push_str(suffix::EVENTS),
    );
    let _ = (ram_name.push_str(name), ram_name.push_str(suffix::RAM));
    let (Some(notify), Some(region)) = (
        page.endpoint(&events_name),
        memory::shared_region(&ram_name),
    ) else {
        println!("vda: boot-info page lacks {events_name} or {ram_name}");
        mica_rt::exit()
    };
    // The guest's notifications on port 0 (a block service's answers on port 1).
    if let Err(s) = events::register().and_then(|()| events::bind(notify, Port(0), 0)) {
        println!("vda: event set-up refused ({s:?})");
        mica_rt::exit()
    }
    // The disk is as large as the guest is told (its capacity).
    let capacity =
        hypercall::virtio_config(device, mica_abi::virtio::blk::config::CAPACITY).unwrap_or(0);
    let mut blk_name = heapless::String::<24>::new();
    let mut io_name = heapless::String::<24>::new();
    let _ = (blk_name.push_str(name), blk_name.push_str(suffix::BLK));
    let _ = (io_name.push_str(name), io_name.push_str(suffix::IO));
    let remote = page
        .endpoint(&blk_name)
        .zip(memory::shared_region(&io_name));
    if let Some((endpoint, io)) = remote {
        let rings = mica_rt::ring::blkio_rings(io);
        let Some((requests, completions)) = rings else {
            println!("vda: {io_name} holds no rings and data slot");
            mica_rt::exit()
        };
        if let Err(s) = events::bind(endpoint, Port(1), 0) {
            println!("vda: cannot wait on {blk_name} ({s:?})");
            mica_rt::exit()
        }
        let remote = Remote {
            sectors: capacity,
            slots: blkio::slots(io.len()),
            region: io,
            requests,
            completions,
            unsent: false,
        };
        let pipeline = Pipeline::new(&remote);
        println!(
            "vda: serving {name}: {capacity} sectors of a real disk, through the block service, {} requests in flight",
            pipeline.capacity()
        );
        run_remote(device, region, remote, pipeline, endpoint)
    }
    let Some(words) = memory::take_free_ram() else {
        println!("vda: no free RAM for the disk");
        mica_rt::exit()
    };
    let bytes = words.as_mut_bytes();
    let want = usize::try_from(capacity.saturating_mul(512)).unwrap_or(usize::MAX);
    if bytes.len() < want {
        println!(
            "vda: {name} has {capacity} sectors but only {} fit this domain's RAM: give it more memory_kib",
            bytes.len() / 512
        );
        mica_rt::exit()
    }
    let disk = RamDisk {
        bytes: &mut bytes[..want],
    };
    println!(
        "vda: serving {name}: a RAM disk of {} sectors",
        disk.sectors()
    );
    run(device, region, disk)
}

/// The guest's RAM as the device domain reaches it.
fn guest_ram(region: SharedRegion) -> GuestRam {
    GuestRam {
        region,
        base: mica_abi::sysimage::DOMAIN_RAM_BASE,
    }
}

/// Brings `queue` up to date with the device: `None` while the driver does not drive it, the
/// queue of its epoch from the start when a new driver (or the first) made it ready. Ends
/// this domain when the device is gone (its guest ended), after `served` requests.
fn refresh(device: Slot, queue: &mut Option<(u32, Queue)>, served: u64) {
    let Ok(info) = hypercall::virtio_info(device) else {
        println!("vda: the device is gone; served {served} requests");
        mica_rt::exit()
    };
    // A device marked as needing a reset stays dead until the driver resets it (a new
    // epoch): taking its queue up again would only break on the same chain.
    let live = info.status & status::DRIVER_OK != 0
        && info.status & status::DEVICE_NEEDS_RESET == 0
        && info.queue_sizes[0] != 0;
    if !live {
        *queue = None;
    } else if queue.as_ref().is_none_or(|(epoch, _)| *epoch != info.epoch) {
        *queue = hypercall::virtio_queue(device, 0, info.epoch)
            .ok()
            .map(|[desc, driver, used]| {
                let event_idx = info.features & feature::EVENT_IDX != 0;
                let q = Queue::new(info.queue_sizes[0], desc, driver, used, event_idx);
                (info.epoch, q)
            });
    }
}

/// The guest broke its queue in `epoch`: its device needs a reset.
fn broke(device: Slot, epoch: u32, broken: &mut u64) {
    // The kernel takes the verdict only for the epoch it is still in. A driver that reset
    // the device while this domain was reading its rings (it may: the reset is the
    // kernel's, at once) broke nothing: what was read was its next setup.
    if hypercall::virtio_signal(device, epoch, true).is_ok() {
        *broken += 1;
        println!("vda: the guest broke its queue ({broken} times): its device needs a reset");
    }
}

/// Interrupts the guest if it wants to be told of what was used since `before`.
fn tell(device: Slot, epoch: u32, q: &Queue, ram: &mut GuestRam, before: u16) {
    if q.wants_interrupt(ram, before).unwrap_or(true) {
        let _ = hypercall::virtio_signal(device, epoch, false);
    }
}

/// Serves the guest's device `device` from the RAM disk `disk`, for ever: each request is
/// done before the next is taken (nothing to wait for).
fn run(device: Slot, region: SharedRegion, mut disk: impl Disk) -> ! {
    let mut ram = guest_ram(region);
    let mut queue: Option<(u32, Queue)> = None;
    let (mut served, mut broken) = (0u64, 0u64);
    loop {
        refresh(device, &mut queue, served);
        let mut more = false;
        if let Some((epoch, q)) = queue.as_mut() {
            let before = q.positions().1;
            match serve_batch(q, &mut ram, &mut disk, &mut served) {
                Ok(left) => {
                    more = left;
                    tell(device, *epoch, q, &mut ram, before);
                }
                Err(()) => {
                    broke(device, *epoch, &mut broken);
                    queue = None;
                }
            }
        }
        // A batch that stopped at its limit goes on after looking at the device again.
        if !more {
            events::wait();
        }
    }
}

/// Serves the guest's device `device` from an extent the block service serves, for ever:
/// several requests in flight (`pipeline`), the service told once per batch (`endpoint`),
/// the guest interrupted once per batch of answers if it asked.
fn run_remote(
    device: Slot,
    region: SharedRegion,
    mut remote: Remote,
    mut pipeline: Pipeline,
    endpoint: Slot,
) -> ! {
    let mut ram = guest_ram(region);
    let mut queue: Option<(u32, Queue)> = None;
    let (mut served, mut broken) = (0u64, 0u64);
    // The most requests in flight said so far (once every slot was busy: once).
    let mut most_told = 0;
    loop {
        refresh(device, &mut queue, served);
        let outcome = match queue.as_mut() {
            Some((epoch, q)) => {
                let before = q.positions().1;
                let step = pipeline.step(Some((*epoch, q)), &mut ram, &mut remote);
                step.map(|p| (p, Some((*epoch, before))))
            }
            None => pipeline
                .step(None, &mut ram, &mut remote)
                .map(|p| (p, None)),
        };
        if core::mem::take(&mut remote.unsent) {
            let _ = events::send(endpoint);
        }
        let mut more = false;
        match (outcome, queue.as_mut()) {
            (Ok((progress, Some((epoch, before)))), Some((_, q))) => {
                more = progress.more;
                served += u64::from(progress.used);
                tell(device, epoch, q, &mut ram, before);
                let most = pipeline.most_in_flight();
                if most > most_told {
                    most_told = most;
                    if most == pipeline.capacity() {
                        println!("vda: {most} of the guest's requests in flight at once");
                    }
                }
            }
            (Ok(_), _) => {}
            (Err(_), Some((epoch, _))) => {
                broke(device, *epoch, &mut broken);
                queue = None;
            }
            (Err(_), None) => {}
        }
        // A step that stopped at its limit goes on after looking at the device again.
        if !more {
            events::wait();
        }
    }
}

mica_rt::entry!(main);
