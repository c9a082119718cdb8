//! `ctl`: the control domain. Serves `mica ctl` over a passed-through virtio console.
//!
//! It holds what the kernel gives a domain with `FLAG_CONTROL`: a 64 MiB memory pool
//! (`free-memory`), a SchedControl capability (`sched-control`; not used yet: created domains
//! get the kernel's default scheduling), the system image read-only (`system-image`), and a
//! Domain capability with CONTROL and GRANT for every other domain (`dom-<name>`, re-read
//! from the boot-info page because the kernel adds domains that start later and drops those
//! that end). With those, and only
//! capability-checked hypercalls, it lists, creates (from an image record of the system
//! image, in RAM from its pool), pauses, unpauses, restarts and destroys domains and reads
//! their consoles. It lists itself too (`domain_info` of `SELF_DOMAIN`) but refuses to pause,
//! destroy or reboot itself, and refuses to destroy or reboot the scheduling policy domain
//! unless the request says `FLAG_FORCE`. The byte stream, framing and request decoding are
//! `mica_service_ctl::protocol` (host-tested); this file is the hardware and hypercall side.
//!
//! The first [`DMA_PAGES`] pages of the pool are the virtio driver's DMA memory (there is no
//! IOMMU: this domain is trusted for DMA, docs/domains.md); the rest is for domains.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]
#![forbid(unsafe_code)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("ctl is a Mica domain: build it for aarch64-unknown-none (make build)");
}

#[cfg(target_os = "none")]
mod domain {
    extern crate alloc;

    use alloc::vec::Vec;
    use mica_abi::bootinfo::{name_str, BootInfo as BootPageLayout, CapEntry};
    use mica_abi::ctl::{
        ConsoleInputReply, ConsoleReply, DomainEntry, ErrorCode, Kind, StatsReply, MAX_PAYLOAD,
        ROLE_CONTROL, ROLE_DOMAIN, ROLE_SCHED_POLICY,
    };
    use mica_abi::layout::DomainLayout;
    use mica_abi::sysimage::{
        SegmentRecord, SystemImage, ANY_CPU, DOMAIN_RAM_BASE, FLAG_CONTROL, FLAG_LINUX,
        FLAG_SCHED_CONTROL,
    };
    use mica_rt::hypercall as hc;
    use mica_rt::memory::{map_window, system_image};
    use mica_rt::{
        events, println, virtio, BootInfo, FrameRange, ObjectType, Port, Rights, Slot, Status,
    };
    use mica_service_ctl::boot::{self, PAGE, STUB_OFFSET};
    use mica_service_ctl::pool::{Pool, Run};
    use mica_service_ctl::protocol::{
        error_frame, frame, Event, FrameReader, Name, Request, MAX_FRAME,
    };
    use mica_service_ctl::report;
    use mica_service_ctl::transport::{interrupt_mode, InterruptMode};
    use zerocopy::IntoBytes;

    /// Pool pages kept for the virtio driver's DMA.
    const DMA_PAGES: u64 = 16;
    /// Where the DMA pages are mapped.
    const DMA_IPA: u64 = 0x9000_0000;
    /// Where a new domain's RAM is mapped while its image is copied in or it is scrubbed.
    const COPY_IPA: u64 = 0xC000_0000;
    /// Capability slots of a created domain.
    const CHILD_SLOTS: u64 = 32;
    /// Kernel-memory quota of a created domain (paid from this domain's) besides its stage-2
    /// tables.
    const CHILD_QUOTA: u64 = 64 << 10;

    /// The quota of a created domain with `pages` of RAM: [`CHILD_QUOTA`] and its stage-2
    /// tables, which the kernel charges to it: at worst a last-level table per 512 pages
    /// (2 MiB), one more at each end of the range, and the levels above.
    fn child_quota(pages: u64) -> u64 {
        CHILD_QUOTA + (pages.div_ceil(512) + 2 + 3) * PAGE
    }
    /// The event port the console's interrupt arrives on.
    const IRQ_PORT: Port = Port(1);
    /// The passed-through device's name in the manifest (`devices = [{ name = "console", ... }]`).
    const DEVICE: &str = "console";
    /// How many times to yield while waiting for a destroyed domain to be gone.
    const TEARDOWN_YIELDS: u32 = 1_000_000;

    /// A domain this domain created (and whose RAM it lent from the pool).
    struct Created {
        name: Name,
        slot: Slot,
        vcpu_slots: Vec<Slot>,
        run: Run,
        image: Name,
        memory_kib: u32,
        vcpus: u32,
        arg: Option<u64>,
    }

    struct Ctl {
        pool_slot: Slot,
        /// Physical frame of pool page 0 of [`Ctl::pool`] (after the DMA pages).
        pool_frame: u64,
        pool: Pool,
        image: Option<SystemImage<'static>>,
        /// Its own name (its record's, the one with `FLAG_CONTROL`).
        own_name: Option<Name>,
        created: Vec<Created>,
        /// Well-formed requests.
        requests: u64,
        /// Of those, the ones answered with an error.
        refused: u64,
        /// Frames that were no request.
        malformed: u64,
        /// Slots handed out but perhaps not yet filled (so two picks never collide).
        slots: u64,
    }

    type Refusal = (ErrorCode, u32);

    fn refused(status: Status) -> Refusal {
        (ErrorCode::Refused, status as u32)
    }

    /// A domain a request names.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Target {
        /// This domain.
        Itself,
        /// One it created (its Domain capability).
        Created(Slot),
        /// One the kernel granted it (`dom-<name>`).
        Granted(Slot),
    }

    impl Target {
        /// The Domain capability to use in hypercalls.
        fn slot(self) -> Slot {
            match self {
                Target::Itself => Slot::SELF_DOMAIN,
                Target::Created(s) | Target::Granted(s) => s,
            }
        }
    }

    impl Ctl {
        /// A free slot of this domain's capability space.
        fn free_slot(&self, skip: &[Slot]) -> Result<Slot, Refusal> {
            (8..self.slots.min(u64::from(u16::MAX)) as u16)
                .map(Slot)
                .find(|s| {
                    !skip.contains(s)
                        && matches!(hc::cap_identify(*s), Err(Status::InvalidCapability))
                })
                .ok_or(refused(Status::NoFreeSlot))
        }

        /// Every Domain capability the kernel granted (`dom-<name>`), from a fresh copy of the
        /// boot-info page.
        fn granted(&self) -> Vec<(Name, Slot)> {
            let Some(page) = mica_rt::bootinfo::reread() else {
                return Vec::new();
            };
            page.caps()
                .iter()
                .filter(|c| c.object_type == ObjectType::Domain as u8)
                .filter_map(|c| {
                    let name = name_str(&c.name).strip_prefix("dom-")?;
                    Some((Name::new(name)?, Slot(c.slot)))
                })
                .collect()
        }

        /// The domain called `name`.
        fn find(&self, name: &Name) -> Result<Target, Refusal> {
            if self.own_name == Some(*name) {
                return Ok(Target::Itself);
            }
            if let Some(c) = self.created.iter().find(|c| c.name == *name) {
                return Ok(Target::Created(c.slot));
            }
            self.granted()
                .into_iter()
                .find(|(n, s)| n == name && hc::domain_info(*s).is_ok())
                .map(|(_, s)| Target::Granted(s))
                .ok_or((ErrorCode::NoSuchDomain, 0))
        }

        /// What a domain of the system image is to the system (by its record's flags; a
        /// domain this domain created is an ordinary one whatever its image).
        fn role(&self, name: &Name, target: Target) -> u32 {
            let record_flags = || {
                self.image
                    .and_then(|i| i.domains().iter().find(|d| d.name() == name.as_str()))
                    .map_or(0, |d| d.flags)
            };
            match target {
                Target::Itself => ROLE_CONTROL,
                Target::Created(_) => ROLE_DOMAIN,
                Target::Granted(_) if record_flags() & FLAG_SCHED_CONTROL != 0 => ROLE_SCHED_POLICY,
                Target::Granted(_) => ROLE_DOMAIN,
            }
        }

        fn entries(&self) -> Vec<DomainEntry> {
            let mut out: Vec<DomainEntry> = Vec::new();
            // Itself, then its own domains: their names are the ones it gave them.
            let named = self
                .own_name
                .map(|n| (n, Target::Itself))
                .into_iter()
                .chain(
                    self.created
                        .iter()
                        .map(|c| (c.name, Target::Created(c.slot))),
                )
                .chain(
                    self.granted()
                        .into_iter()
                        .map(|(n, s)| (n, Target::Granted(s))),
                );
            for (name, target) in named {
                let slot = target.slot();
                let Ok(info) = hc::domain_info(slot) else {
                    continue;
                };
                if out.iter().any(|e| u32::from(info.id) == e.id) {
                    continue;
                }
                out.push(DomainEntry {
                    name: name.field(),
                    id: u32::from(info.id),
                    state: u32::from(info.state),
                    vcpus: u32::from(info.vcpus),
                    role: self.role(&name, target),
                    memory_bytes: match self.created.iter().find(|c| c.slot == slot) {
                        Some(c) => c.run.count * PAGE,
                        None => info.memory_bytes,
                    },
                    cpu_time_ns: info.cpu_time_ns,
                });
            }
            out.sort_by_key(|e| e.id);
            out
        }

        /// Serves one request: the reply's kind and payload go into `out`.
        fn serve(&mut self, request: Request, out: &mut Vec<u8>) -> Result<(), Refusal> {
            match request {
                Request::List => {
                    for e in self.entries().iter().take(MAX_PAYLOAD / 64) {
                        out.extend_from_slice(e.as_bytes());
                    }
                }
                Request::Stats => {
                    let reply = StatsReply {
                        domains: self.entries().len() as u32,
                        reserved: 0,
                        pool_free_bytes: self.pool.free_pages() * PAGE,
                        requests: self.requests,
                        refused: self.refused,
                        malformed: self.malformed,
                    };
                    out.extend_from_slice(reply.as_bytes());
                }
                Request::Pause(name) => {
                    hc::domain_pause(self.find_other(&name, true)?.slot()).map_err(refused)?
                }
                Request::Unpause(name) => {
                    hc::domain_unpause(self.find_other(&name, true)?.slot()).map_err(refused)?
                }
                Request::Destroy { name, force } => {
                    self.find_other(&name, force)?;
                    self.destroy(&name)?
                }
                Request::Reboot { name, force } => match self.find_other(&name, force)? {
                    Target::Itself => return Err((ErrorCode::Itself, 0)),
                    Target::Granted(slot) => hc::domain_restart(slot).map_err(refused)?,
                    Target::Created(_) => {
                        let index = self.created.iter().position(|c| c.name == name);
                        let Some(c) = index.map(|i| self.created.remove(i)) else {
                            return Err((ErrorCode::NoSuchDomain, 0));
                        };
                        let (image, memory_kib, vcpus, arg) =
                            (c.image, c.memory_kib, c.vcpus, c.arg);
                        self.created.push(c);
                        self.destroy(&name)?;
                        self.create(name, image, memory_kib, vcpus, arg)?;
                    }
                },
                Request::Create {
                    name,
                    image,
                    memory_kib,
                    vcpus,
                    arg,
                } => {
                    if self.find(&name).is_ok() {
                        return Err((ErrorCode::NameTaken, 0));
                    }
                    self.create(name, image, memory_kib, vcpus, arg)?;
                }
                Request::ConsoleInput { name, len, bytes } => {
                    // Never its own console: it has none to type into, and a request for
                    // itself names no other domain.
                    let slot = self.find_other(&name, true)?.slot();
                    let mut taken = 0;
                    while taken < len {
                        let n = hc::console_input(slot, &bytes[taken..len]).map_err(refused)?;
                        taken += n;
                        if n == 0 {
                            break;
                        }
                    }
                    let reply = ConsoleInputReply {
                        taken: taken as u32,
                        reserved: 0,
                    };
                    out.extend_from_slice(reply.as_bytes());
                }
                Request::Console { name, offset } => {
                    let slot = self.find(&name)?.slot();
                    let mut bytes: Vec<u8> = Vec::new();
                    let mut at = offset;
                    let mut first = None;
                    let mut total = 0;
                    let room = MAX_PAYLOAD - core::mem::size_of::<ConsoleReply>();
                    while bytes.len() + 16 <= room {
                        let mut chunk = [0u8; 16];
                        let (t, n) = hc::console_read(slot, at, &mut chunk).map_err(refused)?;
                        total = t;
                        let from = at.max(t.saturating_sub(4096));
                        first.get_or_insert(from);
                        if n == 0 {
                            break;
                        }
                        bytes.extend_from_slice(&chunk[..n]);
                        at = from + n as u64;
                    }
                    let reply = ConsoleReply {
                        offset: first.unwrap_or(offset),
                        total,
                    };
                    out.extend_from_slice(reply.as_bytes());
                    out.extend_from_slice(&bytes);
                }
            }
            Ok(())
        }

        /// The domain called `name` for a request that changes it: refused for itself, and
        /// for a domain the system depends on unless `force`.
        fn find_other(&self, name: &Name, force: bool) -> Result<Target, Refusal> {
            let target = self.find(name)?;
            match self.role(name, target) {
                ROLE_CONTROL => Err((ErrorCode::Itself, 0)),
                ROLE_SCHED_POLICY if !force => Err((ErrorCode::Protected, 0)),
                _ => Ok(target),
            }
        }

        /// Creates `name` from image record `image`.
        fn create(
            &mut self,
            name: Name,
            image_name: Name,
            memory_kib: u32,
            vcpus: u32,
            arg: Option<u64>,
        ) -> Result<(), Refusal> {
            let image = self.image.ok_or((ErrorCode::NoSuchImage, 0))?;
            let record = image
                .domains()
                .iter()
                .find(|d| d.name() == image_name.as_str())
                .ok_or((ErrorCode::NoSuchImage, 0))?;
            let segments = image.segments_of(record).unwrap_or(&[]);
            let linux = record.flags & FLAG_LINUX != 0;
            if linux {
                // Its device tree (a segment) describes the record's RAM and vCPUs, and x0
                // must point at it.
                let same_memory =
                    memory_kib == 0 || u64::from(memory_kib) * 1024 == record.memory_bytes;
                let same_vcpus = vcpus == 0 || vcpus == record.vcpu_count;
                if !same_memory || !same_vcpus || arg.is_some() {
                    return Err((ErrorCode::FixedImage, 0));
                }
            }
            let ram_bytes = match memory_kib {
                0 => record.memory_bytes,
                kib => u64::from(kib) * 1024,
            };
            let layout = boot::layout(ram_bytes).ok_or(refused(Status::InvalidArgument))?;
            let fits = segments.iter().all(|s| layout.holds(s.ipa, s.mem_size))
                && layout.holds(record.entry, 4);
            if !fits {
                // The image and its boot-info page do not both fit (the rule the builder
                // and the kernel's image parser apply).
                return Err(refused(Status::OutOfRange));
            }
            let vcpus = match vcpus {
                0 => record.vcpu_count,
                n => n,
            };
            let arg_value = arg.unwrap_or(record.arg);
            let pages = layout.ram_bytes / PAGE;
            let run = self.pool.take(pages).ok_or((ErrorCode::NoMemory, 0))?;
            let Some(frames) = FrameRange::new(self.pool_frame + run.first, pages) else {
                self.pool.give_back(run);
                return Err(refused(Status::InvalidArgument));
            };
            let slot = match self.free_slot(&[]) {
                Ok(s) => s,
                Err(e) => {
                    self.pool.give_back(run);
                    return Err(e);
                }
            };
            let id = match hc::domain_create(slot, CHILD_SLOTS, child_quota(pages)) {
                Ok(id) => id,
                Err(status) => {
                    self.pool.give_back(run);
                    return Err(refused(status));
                }
            };
            let mut created = Created {
                name,
                slot,
                vcpu_slots: Vec::new(),
                run,
                image: image_name,
                memory_kib: (layout.ram_bytes / 1024) as u32,
                vcpus,
                arg,
            };
            let built = self.build(
                &mut created,
                id,
                &layout,
                frames,
                record.entry,
                arg_value,
                &image,
                segments,
                linux,
            );
            // Kept even on failure: `destroy` below undoes whatever was done.
            self.created.push(created);
            if let Err(e) = built {
                let _ = self.destroy(&name);
                return Err(e);
            }
            println!(
                "ctl: created {} (id {id}) from image {}: {} KiB, {vcpus} vCPU(s)",
                name.as_str(),
                image_name.as_str(),
                layout.ram_bytes / 1024
            );
            Ok(())
        }

        #[allow(clippy::too_many_arguments)]
        fn build(
            &self,
            c: &mut Created,
            id: u64,
            layout: &DomainLayout,
            frames: FrameRange,
            entry: u64,
            arg: u64,
            image: &SystemImage<'static>,
            segments: &[SegmentRecord],
            linux: bool,
        ) -> Result<(), Refusal> {
            let rwx = Rights::READ | Rights::WRITE | Rights::EXECUTE;
            hc::domain_set_name(c.slot, c.name.as_str()).map_err(refused)?;
            if linux {
                hc::domain_set_boot(c.slot, mica_abi::hypercall::BOOT_LINUX).map_err(refused)?;
            }
            // Its RAM: the capability (its slot 0) and the mapping.
            hc::cap_grant(self.pool_slot, c.slot, Slot(0), rwx, Some(frames)).map_err(refused)?;
            hc::mem_map(c.slot, self.pool_slot, DOMAIN_RAM_BASE, frames, rwx).map_err(refused)?;
            // The image, the boot-info page and the stub, through a temporary window.
            {
                let mut window = map_window(
                    self.pool_slot,
                    COPY_IPA,
                    frames,
                    Rights::READ | Rights::WRITE,
                )
                .map_err(refused)?;
                for s in segments {
                    let offset = (s.ipa - DOMAIN_RAM_BASE) as usize;
                    if !window.write(offset, image.segment_bytes(s)) {
                        return Err(refused(Status::OutOfRange));
                    }
                }
                if linux {
                    // The arm64 Linux boot protocol: no boot-info page, no stub; the Image,
                    // the initramfs and the device tree are all it needs (x0 = the tree).
                    drop(window);
                    return self.start_vcpus(c, entry, arg);
                }
                let mut page = BootPageLayout::new(id as u32, c.vcpus, 0);
                let _ = page.push_cap(CapEntry {
                    name: mica_abi::bootinfo::name_field("ram"),
                    slot: 0,
                    object_type: ObjectType::Memory as u8,
                    reserved: 0,
                    rights: rwx.bits(),
                });
                let page_offset = layout.usable_bytes() as usize;
                window.write(page_offset, page.as_bytes());
                window.write(
                    page_offset + STUB_OFFSET as usize,
                    &boot::stub(layout, entry),
                );
            }
            // vCPUs, then vCPU 0 starts in the stub.
            self.start_vcpus(c, boot::stub_ipa(layout), arg)
        }

        /// Creates `c`'s vCPUs and starts vCPU 0 at `entry` with x0 = `arg`.
        fn start_vcpus(&self, c: &mut Created, entry: u64, arg: u64) -> Result<(), Refusal> {
            for index in 0..c.vcpus {
                let v = self.free_slot(&c.vcpu_slots)?;
                hc::vcpu_create(c.slot, v, u64::from(index), u64::from(ANY_CPU))
                    .map_err(refused)?;
                c.vcpu_slots.push(v);
            }
            let first = *c
                .vcpu_slots
                .first()
                .ok_or(refused(Status::InvalidArgument))?;
            hc::vcpu_start(first, entry, arg).map_err(refused)
        }

        /// Destroys `name`; for a domain it created, waits until it is gone, scrubs its RAM
        /// and returns it to the pool.
        fn destroy(&mut self, name: &Name) -> Result<(), Refusal> {
            let (slot, ours) = match self.find(name)? {
                Target::Itself => return Err((ErrorCode::Itself, 0)),
                Target::Created(slot) => (slot, true),
                Target::Granted(slot) => (slot, false),
            };
            match hc::domain_destroy(slot) {
                Ok(()) | Err(Status::WrongState) => {}
                Err(status) => return Err(refused(status)),
            }
            // Gone once the kernel has revoked every copy of its Domain capability.
            let mut left = TEARDOWN_YIELDS;
            while hc::domain_info(slot).is_ok() && left > 0 {
                let _ = hc::yield_now();
                left -= 1;
            }
            if !ours {
                return Ok(());
            }
            let Some(i) = self.created.iter().position(|c| c.name == *name) else {
                return Ok(());
            };
            if left == 0 {
                // Still tearing down: keep the books (and the RAM) for the next attempt.
                return Err(refused(Status::WrongState));
            }
            self.reclaim(i);
            Ok(())
        }

        /// Domains it created that ended by themselves (powered off, or stopped by the
        /// kernel after a fault): their RAM comes back to the pool.
        fn reap(&mut self) {
            while let Some(i) = self
                .created
                .iter()
                .position(|c| hc::domain_info(c.slot).is_err())
            {
                println!(
                    "ctl: {} ended by itself; taking its RAM back",
                    self.created[i].name.as_str()
                );
                self.reclaim(i);
            }
        }

        /// Forgets created domain `i` (gone from the kernel): deletes its capabilities,
        /// scrubs its RAM and returns it to the pool.
        fn reclaim(&mut self, i: usize) {
            let c = self.created.remove(i);
            let name = c.name;
            for v in &c.vcpu_slots {
                let _ = hc::cap_delete(*v);
            }
            let _ = hc::cap_delete(c.slot);
            // The kernel scrubs only RAM it allocated (its `destroyed: 0 KiB scrubbed` line
            // for this domain says so): this came from the pool, scrub it here.
            let window = FrameRange::new(self.pool_frame + c.run.first, c.run.count)
                .ok_or(Status::InvalidArgument)
                .and_then(|frames| {
                    map_window(
                        self.pool_slot,
                        COPY_IPA,
                        frames,
                        Rights::READ | Rights::WRITE,
                    )
                });
            match window {
                Ok(mut window) => {
                    let len = window.len();
                    window.zero(0, len);
                    drop(window);
                    self.pool.give_back(c.run);
                    println!(
                        "{}",
                        report::destroyed(
                            name.as_str(),
                            c.run.count * 4,
                            self.pool.free_pages() * 4
                        )
                    );
                }
                Err(status) => println!(
                    "ctl: destroyed {}, but cannot map its RAM to scrub it ({status:?}): {} KiB not returned to the pool",
                    name.as_str(),
                    c.run.count * 4
                ),
            }
        }
    }

    fn main(_info: BootInfo) -> ! {
        match run() {
            Ok(never) => match never {},
            Err(why) => {
                println!("ctl: cannot serve: {why}");
                mica_rt::exit()
            }
        }
    }

    fn run() -> Result<core::convert::Infallible, &'static str> {
        let page = mica_rt::bootinfo().ok_or("no boot-info page")?;
        let pool_slot = page
            .cap_slot("free-memory", ObjectType::Memory)
            .ok_or("no `free-memory` pool: is this domain `control = true` in the manifest?")?;
        let pool_info =
            hc::cap_identify(pool_slot).map_err(|_| "the pool capability is not valid")?;
        let pool_frames = pool_info
            .frames
            .filter(|f| f.count() > DMA_PAGES)
            .ok_or("the pool is too small")?;
        let slots = hc::whoami().map(|w| w.slots).unwrap_or(64);
        let dma = map_window(
            pool_slot,
            DMA_IPA,
            FrameRange::new(pool_frames.first(), DMA_PAGES).ok_or("the pool is too small")?,
            Rights::READ | Rights::WRITE,
        )
        .map_err(|_| "cannot map the DMA pages")?;
        virtio::init_dma(dma, pool_frames.first() * PAGE);
        let image = system_image().and_then(|bytes| SystemImage::parse(bytes).ok());
        // Its own record: its name, and the interrupt the manifest gives its console.
        let own = image.and_then(|i| {
            let (index, record) = i
                .domains()
                .iter()
                .enumerate()
                .find(|(_, d)| d.flags & FLAG_CONTROL != 0)?;
            let interrupt = i
                .devices()
                .iter()
                .find(|d| d.domain as usize == index && name_str(&d.name) == DEVICE)
                .map(|d| d.interrupt);
            Some((Name::new(record.name()), interrupt))
        });
        let mut ctl = Ctl {
            pool_slot,
            pool_frame: pool_frames.first() + DMA_PAGES,
            pool: Pool::new(pool_frames.count() - DMA_PAGES),
            image,
            own_name: own.and_then(|o| o.0),
            created: Vec::new(),
            requests: 0,
            refused: 0,
            malformed: 0,
            slots,
        };
        let (mut console, transport) =
            virtio::console(DEVICE).ok_or("no virtio console in the `console` device window")?;
        // The console's interrupt as an event, if it is the one the console's transport
        // raises (else: poll, yielding).
        let irq = page.cap_slot("console-irq", ObjectType::Irq);
        let manifest_intid = own.and_then(|o| o.1).filter(|_| irq.is_some());
        let mode = interrupt_mode(transport, manifest_intid);
        if let InterruptMode::WrongInterrupt {
            manifest_intid,
            transport_intid,
        } = mode
        {
            println!(
                "{}",
                report::wrong_interrupt(transport, transport_intid, manifest_intid)
            );
        }
        let bound = match (mode, irq) {
            (InterruptMode::Interrupt, Some(irq)) => bind_interrupt(&ctl, irq).is_ok(),
            _ => false,
        };
        println!(
            "ctl: ready (virtio console at {transport:#x}, {}; pool {} KiB free; {} image record(s))",
            if bound { "interrupt-driven" } else { "polled" },
            ctl.pool.free_pages() * 4,
            ctl.image.map_or(0, |i| i.domains().len())
        );
        let mut reader = FrameReader::new();
        let mut input: Vec<u8> = Vec::with_capacity(256);
        loop {
            input.clear();
            while input.len() < 256 {
                match console.recv(true) {
                    Ok(Some(b)) => input.push(b),
                    _ => break,
                }
            }
            if input.is_empty() {
                if bound {
                    events::wait();
                    let _ = console.ack_interrupt();
                    if let Some(irq) = irq {
                        let _ = hc::irq_ack(irq);
                    }
                } else {
                    let _ = hc::yield_now();
                }
                continue;
            }
            let mut found: Vec<Event> = Vec::new();
            reader.feed(&input, &mut |e| found.push(e));
            for event in found {
                let mut reply: heapless::Vec<u8, MAX_FRAME> = heapless::Vec::new();
                match event {
                    Event::Request { id, request } => {
                        ctl.requests += 1;
                        ctl.reap();
                        let mut payload = Vec::new();
                        match ctl.serve(request, &mut payload) {
                            Ok(()) => {
                                frame(&mut reply, Kind::Ok, id, &[&payload]);
                            }
                            Err((code, status)) => {
                                ctl.refused += 1;
                                error_frame(&mut reply, id, code, status)
                            }
                        }
                    }
                    Event::Error { id, code } => {
                        ctl.malformed += 1;
                        error_frame(&mut reply, id, code, 0);
                    }
                }
                let _ = console.send_bytes(&reply);
            }
        }
    }

    /// Binds the console's interrupt to an event on a local channel's endpoint.
    fn bind_interrupt(ctl: &Ctl, irq: Slot) -> Result<(), Status> {
        events::register()?;
        let a = ctl.free_slot(&[]).map_err(|_| Status::NoFreeSlot)?;
        let b = ctl.free_slot(&[a]).map_err(|_| Status::NoFreeSlot)?;
        hc::evtchn_create(a, b)?;
        events::bind(a, IRQ_PORT, 0)?;
        hc::irq_bind_event(irq, a)
    }

    mica_rt::entry!(main);
}
