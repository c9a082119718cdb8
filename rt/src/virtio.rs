//! Driving a passed-through virtio-mmio device with the `virtio-drivers` crate (feature
//! `virtio`).
//!
//! `virtio-drivers` needs a [`Hal`]: DMA memory the device can reach by physical address and
//! a way to give it the physical address of a driver buffer. The queues live in a [`Window`]
//! given to [`init_dma`] with its physical address (the guest MMU is off, so the virtual
//! address is the IPA of the window). A driver buffer inside a range given to [`dma_direct`]
//! (the domain's own RAM chunks, whose physical addresses `cap_identify` tells:
//! [`crate::memory::ram_chunks`]) goes to the device as it is, at its physical address, and
//! the device reads or writes it in place; any other buffer is bounced through pages of the
//! window. There is no IOMMU: a domain that drives a DMA-capable device can make it read or
//! write any physical memory, so it is trusted for DMA (docs/domains.md).
//!
//! Device registers are mapped by the kernel at their physical address (the manifest's
//! `devices`), so a register's physical address is its IPA.

use crate::memory::Window;
use crate::ring::SharedRegion;
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::ptr::NonNull;
use virtio_drivers::device::blk::{BlkReq, BlkResp, VirtIOBlk};
use virtio_drivers::device::console::VirtIOConsole;
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::{DeviceType, Transport};
use virtio_drivers::{BufferDirection, Hal, PhysAddr};

/// Most DMA pages (one bit each in the allocator).
pub const MAX_DMA_PAGES: usize = 64;
const PAGE: usize = mica_abi::layout::PAGE_SIZE as usize;
/// Bytes of one virtio-mmio transport's register block on QEMU virt.
pub const TRANSPORT_SIZE: usize = 0x200;
/// "virt" in little-endian: the first register of every virtio-mmio transport.
const MMIO_MAGIC: u32 = 0x7472_6976;
/// The virtio device id of a console.
const CONSOLE_DEVICE_ID: u32 = 3;
/// The virtio device id of a block device.
const BLOCK_DEVICE_ID: u32 = mica_abi::virtio::device::BLOCK;

struct DmaPool {
    window: Window,
    physical: u64,
    used: crate::pages::Pages,
    /// Ranges shared in place: (IPA, bytes, physical address).
    direct: Vec<(u64, u64, u64)>,
}

/// Most ranges [`dma_direct`] takes (a domain's RAM chunks).
pub const MAX_DIRECT: usize = mica_abi::layout::MAX_RAM_CHUNKS;

static DMA: spin::Mutex<Option<DmaPool>> = spin::Mutex::new(None);

/// Hands `window` (mapped over frames starting at `physical`) to the DMA allocator; at most
/// [`MAX_DMA_PAGES`] pages of it are used. False if a pool was given already.
pub fn init_dma(window: Window, physical: u64) -> bool {
    let mut dma = DMA.lock();
    if dma.is_some() {
        return false;
    }
    let pages = (window.len() / PAGE).min(MAX_DMA_PAGES);
    *dma = Some(DmaPool {
        window,
        physical,
        used: crate::pages::Pages::new(pages),
        direct: Vec::new(),
    });
    true
}

/// Lets the device reach `[ipa, ipa + bytes)` of this domain's memory in place, at
/// `physical`: a driver buffer wholly inside it is given to the device at its own physical
/// address instead of being bounced (the pool's own pages excepted). False before
/// [`init_dma`], for an empty or wrapping range, or past [`MAX_DIRECT`] ranges.
pub fn dma_direct(ipa: u64, bytes: u64, physical: u64) -> bool {
    let mut dma = DMA.lock();
    let Some(d) = dma.as_mut() else {
        return false;
    };
    let fits =
        bytes > 0 && ipa.checked_add(bytes).is_some() && physical.checked_add(bytes).is_some();
    if !fits || d.direct.len() >= MAX_DIRECT {
        return false;
    }
    d.direct.push((ipa, bytes, physical));
    true
}

/// Whether `[address, address + len)` is shared in place: inside a [`dma_direct`] range and
/// clear of the pool's window.
fn direct_in(d: &DmaPool, address: u64, len: u64) -> Option<u64> {
    let end = address.checked_add(len)?;
    let pool = d.window.ipa()..d.window.ipa() + d.window.len() as u64;
    if address < pool.end && pool.start < end {
        return None;
    }
    d.direct.iter().find_map(|&(ipa, bytes, physical)| {
        (address >= ipa && end <= ipa + bytes).then(|| physical + (address - ipa))
    })
}

/// Whether a buffer of `len` bytes at `address` would be shared in place (no DMA pages).
pub fn is_direct(address: u64, len: usize) -> bool {
    DMA.lock()
        .as_ref()
        .is_some_and(|d| direct_in(d, address, len as u64).is_some())
}

impl DmaPool {
    /// A run of `n` free pages, taken and zeroed: its first page index.
    fn take(&mut self, n: usize) -> Option<usize> {
        let first = self.used.take(n)?;
        self.window.zero(first * PAGE, n * PAGE);
        Some(first)
    }

    fn give_back(&mut self, physical: u64, n: usize) {
        let Some(first) = physical
            .checked_sub(self.physical)
            .map(|o| o as usize / PAGE)
        else {
            return;
        };
        self.used.give_back(first, n);
    }

    /// Whether `physical` is in the pool's pages (a bounced buffer), not a buffer in place.
    fn bounced(&self, physical: u64) -> Option<usize> {
        let offset = physical.checked_sub(self.physical)? as usize;
        (offset < self.used.count() * PAGE).then_some(offset)
    }
}

/// The [`Hal`] of a Mica domain: DMA from the pool given to [`init_dma`].
#[derive(Debug)]
pub struct MicaHal;

// SAFETY: `dma_alloc` hands out zeroed page runs of the window that no other allocation
// overlaps (the bitmap) until `dma_dealloc`; their physical address is the window's first
// frame's plus the offset and their virtual address the window's IPA plus the offset (MMU
// off), so the device and the driver see the same bytes. `share` gives a buffer inside a
// `dma_direct` range (and clear of the window) its own physical address, so the device
// reads and writes the buffer itself, which the caller keeps valid until `unshare`; any
// other buffer it bounces through window pages, so what the device sees is exactly the
// buffer's bytes at share time and what the driver gets back at unshare is exactly what the
// device wrote.
unsafe impl Hal for MicaHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let mut dma = DMA.lock();
        match dma.as_mut().and_then(|d| d.take(pages).map(|i| (d, i))) {
            Some((d, i)) => {
                let ipa = d.window.address_of(i * PAGE).unwrap_or(0);
                match NonNull::new(ipa as *mut u8) {
                    Some(v) => (d.physical + (i * PAGE) as u64, v),
                    None => (0, NonNull::dangling()),
                }
            }
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, _vaddr: NonNull<u8>, pages: usize) -> i32 {
        if let Some(d) = DMA.lock().as_mut() {
            d.give_back(paddr, pages);
        }
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as *mut u8).unwrap_or(NonNull::dangling())
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> PhysAddr {
        let len = buffer.len();
        let mut dma = DMA.lock();
        // No pool or no pages: there is no address to give the device that would not let it
        // read or write memory that is not the buffer's, so the domain stops here (a driver
        // checks for room first: `Drive::has_room`).
        let Some(d) = dma.as_mut() else {
            panic!("virtio: a buffer shared before init_dma")
        };
        // In place: the device reads or writes the buffer itself, and nothing here touches it.
        if let Some(physical) = direct_in(d, buffer.as_ptr().cast::<u8>() as u64, len as u64) {
            return physical;
        }
        let Some(first) = d.take(len.div_ceil(PAGE).max(1)) else {
            panic!("virtio: no DMA pages left for a {len}-byte buffer")
        };
        if direction != BufferDirection::DeviceToDriver {
            // SAFETY: the caller (virtio-drivers) promises `buffer` is valid for reads of its
            // length until `unshare`, and nothing writes it meanwhile.
            let bytes = unsafe { buffer.as_ref() };
            d.window.write(first * PAGE, bytes);
        }
        d.physical + (first * PAGE) as u64
    }

    unsafe fn unshare(paddr: PhysAddr, buffer: NonNull<[u8]>, direction: BufferDirection) {
        let len = buffer.len();
        let mut dma = DMA.lock();
        let Some(d) = dma.as_mut() else { return };
        // A buffer shared in place has nothing to copy back or give back.
        let Some(offset) = d.bounced(paddr) else {
            return;
        };
        if direction != BufferDirection::DriverToDevice {
            let mut buffer = buffer;
            // SAFETY: the caller promises `buffer` is valid for writes of its length (a
            // device-writable buffer it shared) and not otherwise accessed until now.
            let bytes = unsafe { buffer.as_mut() };
            d.window.read(offset, bytes);
        }
        d.give_back(paddr, len.div_ceil(PAGE).max(1));
    }
}

/// A virtio block device driven through [`MicaHal`].
pub type Block = VirtIOBlk<MicaHal, MmioTransport<'static>>;

static BLOCK_TAKEN: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// The block device the kernel gives this guest in virtio slot `slot`
/// (`mica_abi::layout::devices::virtio_slot`: registers the kernel answers, never mapped),
/// initialised; once per domain. Its DMA memory must have been given to [`init_dma`] (a guest's
/// own RAM, [`crate::memory::ram_window`], at physical address = IPA).
pub fn block(slot: u32) -> Option<Block> {
    let (address, _) = mica_abi::layout::devices::virtio_slot(slot)?;
    if BLOCK_TAKEN.swap(true, core::sync::atomic::Ordering::AcqRel) {
        return None;
    }
    let header = NonNull::new(address as *mut VirtIOHeader)?;
    // `address` is the register window of a virtio slot, which the kernel emulates for the
    // domain's lifetime: every access traps and is answered from the device's register file;
    // nothing is mapped there, so no memory is touched.
    // SAFETY: a trap-emulated window, valid for 'static; BLOCK_TAKEN makes this its only transport.
    let transport = unsafe { MmioTransport::new(header, TRANSPORT_SIZE) }.ok()?;
    if transport.device_type() != DeviceType::Block {
        return None;
    }
    VirtIOBlk::<MicaHal, _>::new(transport).ok()
}

/// The first virtio-mmio transport with device `device_id` in the device window `region` (a
/// DeviceMemory region of the boot-info page): its address.
fn transport_in(region: &str, device_id: u32) -> Option<u64> {
    let r = crate::bootinfo()?.shared(region)?;
    if r.size < TRANSPORT_SIZE as u64 || !r.ipa.is_multiple_of(PAGE as u64) {
        return None;
    }
    let transports = r.size as usize / TRANSPORT_SIZE;
    (0..transports)
        .map(|i| r.ipa + (i * TRANSPORT_SIZE) as u64)
        .find(|&a| {
            let magic = a as *const u32;
            let id = (a + 8) as *const u32;
            // SAFETY: the kernel maps the window `region` (device memory, readable) at its
            // IPA for the domain's lifetime; `a` and `a + 8` are aligned registers of a
            // transport inside it, and reading virtio-mmio MagicValue / DeviceID has no side
            // effect.
            unsafe {
                core::ptr::read_volatile(magic) == MMIO_MAGIC
                    && core::ptr::read_volatile(id) == device_id
            }
        })
}

/// The virtio block device passed through to this domain in the device window `region` (a
/// real disk: QEMU's `virtio-blk-device` for a `[[drive]]`), initialised; once per domain,
/// and not with [`block`]. Its DMA memory must have been given to [`init_dma`] with its real
/// physical address ([`crate::memory::physical`]): the device reaches memory by it.
pub fn block_device(region: &str) -> Option<Block> {
    let address = transport_in(region, BLOCK_DEVICE_ID)?;
    if BLOCK_TAKEN.swap(true, core::sync::atomic::Ordering::AcqRel) {
        return None;
    }
    let header = NonNull::new(address as *mut VirtIOHeader)?;
    // `header` is a virtio-mmio transport's register block (magic and device id checked) of
    // TRANSPORT_SIZE bytes inside a device window the kernel keeps mapped for the domain's
    // lifetime, and BLOCK_TAKEN makes this the only transport ever made over it.
    // SAFETY: a mapped transport block, valid for 'static, with no other transport over it.
    let transport = unsafe { MmioTransport::new(header, TRANSPORT_SIZE) }.ok()?;
    VirtIOBlk::<MicaHal, _>::new(transport).ok()
}

/// Most requests a [`Drive`] keeps at the device at once: with three descriptors each (a
/// device without indirect descriptors), as many as `virtio-drivers`' queue of 16 holds.
pub const MAX_AT_DRIVE: usize = 5;

/// A request at the device: its header and status, owned here (the box keeps them where the
/// device was told they are) until it is done, and where its data is.
struct AtDrive {
    token: u16,
    req: BlkReq,
    resp: BlkResp,
    /// The data's first byte, in a shared region the device reaches in place.
    data: *mut u8,
    len: usize,
    write: bool,
}

/// A block device with several requests at it at once, each taken back when the device is
/// done with it (its interrupt says when): the non-blocking calls of `virtio-drivers`, made
/// safe by owning each request's header and status from its start to its end. Its data moves
/// straight between the device and a slot of a [`SharedRegion`] in this domain's RAM (given to
/// [`dma_direct`]): no copy on either side.
pub struct Drive {
    blk: Block,
    // Boxed on purpose: the device holds the addresses of each request's header and status,
    // which must not move when the vector grows or a request is taken out of it.
    #[allow(clippy::vec_box)]
    at_drive: Vec<Box<AtDrive>>,
}

impl Drive {
    /// `blk`, its interrupts on.
    pub fn new(mut blk: Block) -> Drive {
        blk.enable_interrupts();
        Drive {
            blk,
            at_drive: Vec::new(),
        }
    }

    /// Its size in sectors.
    pub fn capacity(&self) -> u64 {
        self.blk.capacity()
    }

    /// Requests at the device.
    pub fn in_flight(&self) -> usize {
        self.at_drive.len()
    }

    /// Whether a request can start now: fewer than [`MAX_AT_DRIVE`] at the device, and DMA
    /// pages for its header, status and indirect table should they need bouncing.
    pub fn has_room(&self) -> bool {
        self.at_drive.len() < MAX_AT_DRIVE
            && DMA.lock().as_ref().is_some_and(|d| d.used.fits(&[1, 1, 1]))
    }

    /// Starts reading `bytes` (whole sectors) from `sector` into `region` at `offset`; done
    /// when [`done`](Self::done) returns the token returned here. `InvalidParam` unless the
    /// range lies in the region and the device reaches it in place ([`dma_direct`]).
    pub fn start_read(
        &mut self,
        sector: u64,
        region: &SharedRegion,
        offset: usize,
        bytes: usize,
    ) -> Result<u16, virtio_drivers::Error> {
        self.start(sector, region, offset, bytes, false)
    }

    /// Starts writing `bytes` (whole sectors) of `region` at `offset` to `sector`; as
    /// [`start_read`](Self::start_read).
    pub fn start_write(
        &mut self,
        sector: u64,
        region: &SharedRegion,
        offset: usize,
        bytes: usize,
    ) -> Result<u16, virtio_drivers::Error> {
        self.start(sector, region, offset, bytes, true)
    }

    fn start(
        &mut self,
        sector: u64,
        region: &SharedRegion,
        offset: usize,
        bytes: usize,
        write: bool,
    ) -> Result<u16, virtio_drivers::Error> {
        let data = region
            .range(offset, bytes)
            .filter(|&d| bytes > 0 && bytes.is_multiple_of(512) && is_direct(d as u64, bytes))
            .ok_or(virtio_drivers::Error::InvalidParam)?;
        let sector = usize::try_from(sector).map_err(|_| virtio_drivers::Error::InvalidParam)?;
        if !self.has_room() {
            return Err(virtio_drivers::Error::QueueFull);
        }
        let mut r = Box::new(AtDrive {
            token: 0,
            req: BlkReq::default(),
            resp: BlkResp::default(),
            data,
            len: bytes,
            write,
        });
        let r_mut = &mut *r;
        // `[data, data + bytes)` lies in a shared region mapped for the domain's lifetime,
        // and the device reaches it in place (`is_direct`, checked above): `virtio-drivers`
        // passes the slice to `share`, which only takes its address and length, and to
        // `unshare`, which does nothing with it. It is shared memory, as any DMA buffer is:
        // the peer domain may write it meanwhile (a misbehaving client), which changes only
        // what the device reads; Rust's aliasing rules about it hold only in that nothing
        // here dereferences it.
        // SAFETY: valid, mapped memory that no Rust code reads or writes through this slice.
        let buf = unsafe { core::slice::from_raw_parts_mut(data, bytes) };
        r_mut.token = if write {
            // SAFETY: the header and status live in the box, which `at_drive` keeps,
            // untouched, until `done` completes the request with them; the data stays where
            // it is (above) until then.
            unsafe {
                self.blk
                    .write_blocks_nb(sector, &mut r_mut.req, buf, &mut r_mut.resp)
            }?
        } else {
            // SAFETY: as above.
            unsafe {
                self.blk
                    .read_blocks_nb(sector, &mut r_mut.req, buf, &mut r_mut.resp)
            }?
        };
        self.at_drive.push(r);
        Ok(self.at_drive.last().map_or(0, |r| r.token))
    }

    /// The next request the device is done with: its token and whether it succeeded (a read's
    /// data is in its region). A token that names no request at the device (the device's
    /// mistake) comes back as `WrongToken` every time: the queue cannot go on.
    pub fn done(&mut self) -> Option<(u16, Result<(), virtio_drivers::Error>)> {
        let token = self.blk.peek_used()?;
        let Some(i) = self.at_drive.iter().position(|r| r.token == token) else {
            return Some((token, Err(virtio_drivers::Error::WrongToken)));
        };
        let mut r = self.at_drive.swap_remove(i);
        let r_mut = &mut *r;
        // SAFETY: the same range `start` made a slice of, for the same reason (shared in
        // place, never read or written through the slice).
        let buf = unsafe { core::slice::from_raw_parts_mut(r_mut.data, r_mut.len) };
        let result = if r_mut.write {
            // SAFETY: the same header, data and status `start` gave the device for `token`.
            unsafe {
                self.blk
                    .complete_write_blocks(token, &r_mut.req, buf, &mut r_mut.resp)
            }
        } else {
            // SAFETY: as above.
            unsafe {
                self.blk
                    .complete_read_blocks(token, &r_mut.req, buf, &mut r_mut.resp)
            }
        };
        Some((token, result))
    }

    /// Acknowledges the device's interrupt (before looking at what it finished).
    pub fn ack_interrupt(&mut self) {
        let _ = self.blk.ack_interrupt();
    }

    /// Makes every completed write durable, waiting for the device (`FLUSH`); only with
    /// nothing at the device.
    pub fn flush(&mut self) -> Result<(), virtio_drivers::Error> {
        if !self.at_drive.is_empty() {
            return Err(virtio_drivers::Error::NotReady);
        }
        self.blk.flush()
    }
}

/// Reads `buf.len()` bytes (whole sectors) from `sector` of `blk`, giving the CPU away
/// (`yield_now`) while the device works instead of spinning on its used ring as
/// `Block::read_blocks` does: on a CPU it shares with the domains that serve the disk, a
/// spinning guest holds the CPU until the scheduler takes it away, every request.
pub fn read_yielding(
    blk: &mut Block,
    sector: usize,
    buf: &mut [u8],
) -> Result<(), virtio_drivers::Error> {
    let mut req = BlkReq::default();
    let mut resp = BlkResp::default();
    // No other request may be at the device (it would sit at the head of the used ring and
    // this would wait for ever): `Block`'s blocking calls finish theirs before returning.
    // The header, data and status live in this frame, and it returns only after the device
    // handed this request back (`complete_read_blocks` took it off the used ring), or
    // without giving them to the device at all (an error from `read_blocks_nb`).
    // SAFETY: the buffers outlive the request (above).
    let token = unsafe { blk.read_blocks_nb(sector, &mut req, buf, &mut resp) }?;
    loop {
        if blk.peek_used() == Some(token) {
            // SAFETY: the same header, data and status as above, for this token.
            match unsafe { blk.complete_read_blocks(token, &req, buf, &mut resp) } {
                // The used ring changed under the look (a device's mistake): nothing was
                // taken off it, so the request is still the device's; wait on.
                Err(virtio_drivers::Error::WrongToken | virtio_drivers::Error::NotReady) => {}
                done => return done,
            }
        }
        let _ = crate::hypercall::yield_now();
    }
}

/// A virtio console driven through [`MicaHal`].
pub type Console = VirtIOConsole<MicaHal, MmioTransport<'static>>;

static CONSOLE_TAKEN: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Finds the virtio console among the transports of the device window `region` (a
/// DeviceMemory region of the boot-info page) and initialises it; once per domain. Returns
/// the console and its transport's physical address.
pub fn console(region: &str) -> Option<(Console, u64)> {
    let address = transport_in(region, CONSOLE_DEVICE_ID)?;
    if CONSOLE_TAKEN.swap(true, core::sync::atomic::Ordering::AcqRel) {
        return None;
    }
    let header = NonNull::new(address as *mut VirtIOHeader)?;
    // SAFETY: `header` is a virtio-mmio transport's register block (magic and device id
    // checked) of TRANSPORT_SIZE bytes inside a device window the kernel keeps mapped for
    // the domain's lifetime ('static), and the flag above makes this the only transport
    // ever made over it.
    let transport = unsafe { MmioTransport::new(header, TRANSPORT_SIZE) }.ok()?;
    if transport.device_type() != DeviceType::Console {
        return None;
    }
    let console = VirtIOConsole::<MicaHal, _>::new(transport).ok()?;
    Some((console, address))
}
