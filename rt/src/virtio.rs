//! Driving a passed-through virtio-mmio device with the `virtio-drivers` crate (feature
//! `virtio`).
//!
//! `virtio-drivers` needs a [`Hal`]: DMA memory the device can reach by physical address and
//! a way to give it the physical address of a driver buffer. A Mica domain's RAM is guest
//! memory whose physical frames it does not know, so DMA goes through a [`Window`] over
//! frames of a Memory capability the domain holds (the control domain's pool: physical
//! address = the capability's first frame × 4096 + offset; the guest MMU is off, so the
//! virtual address is the IPA of the window). Driver buffers are bounced through pages of
//! the same window. There is no IOMMU: a domain that drives a DMA-capable device can make it
//! read or write any physical memory, so it is trusted for DMA (docs/domains.md).
//!
//! Device registers are mapped by the kernel at their physical address (the manifest's
//! `devices`), so a register's physical address is its IPA.

use crate::memory::Window;
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
}

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
    });
    true
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
}

/// The [`Hal`] of a Mica domain: DMA from the pool given to [`init_dma`].
#[derive(Debug)]
pub struct MicaHal;

// SAFETY: `dma_alloc` hands out zeroed page runs of the window that no other allocation
// overlaps (the bitmap) until `dma_dealloc`; their physical address is the window's first
// frame's plus the offset and their virtual address the window's IPA plus the offset (MMU
// off), so the device and the driver see the same bytes. `share` bounces through such
// pages, so what the device sees is exactly the buffer's bytes at share time and what the
// driver gets back at unshare is exactly what the device wrote.
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
        let Some(offset) = paddr.checked_sub(d.physical).map(|o| o as usize) else {
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

/// Most requests a [`Drive`] keeps at the device at once: each bounces through DMA pages of
/// its own (a 64 KiB request takes 16 of the [`MAX_DMA_PAGES`]).
pub const MAX_AT_DRIVE: usize = 3;

/// A request at the device: everything the device reads and writes for it, owned here (the
/// box keeps the header and status where the device was told they are) until it is done.
struct AtDrive {
    token: u16,
    req: BlkReq,
    resp: BlkResp,
    buf: Vec<u8>,
    write: bool,
}

/// A block device with several requests at it at once, each taken back when the device is
/// done with it (its interrupt says when): the non-blocking calls of `virtio-drivers`, made
/// safe by owning every buffer of a request from its start to its end.
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

    /// Whether a request of `bytes` can start now: fewer than [`MAX_AT_DRIVE`] at the device
    /// and DMA pages to bounce it through, in the order `virtio-drivers` shares its buffers
    /// (header, data, status, and the indirect table if the device offered them).
    pub fn has_room(&self, bytes: usize) -> bool {
        let pages = bytes.div_ceil(PAGE).max(1);
        self.at_drive.len() < MAX_AT_DRIVE
            && DMA
                .lock()
                .as_ref()
                .is_some_and(|d| d.used.fits(&[1, pages, 1, 1]))
    }

    /// Starts reading `bytes` (whole sectors) from `sector`: the data comes back from
    /// [`done`](Self::done) with the token returned here.
    pub fn start_read(&mut self, sector: u64, bytes: usize) -> Result<u16, virtio_drivers::Error> {
        self.start(sector, alloc::vec![0; bytes], false)
    }

    /// Starts writing `data` (whole sectors) at `sector`; done when [`done`](Self::done)
    /// returns the token returned here.
    pub fn start_write(
        &mut self,
        sector: u64,
        data: Vec<u8>,
    ) -> Result<u16, virtio_drivers::Error> {
        self.start(sector, data, true)
    }

    fn start(
        &mut self,
        sector: u64,
        buf: Vec<u8>,
        write: bool,
    ) -> Result<u16, virtio_drivers::Error> {
        if buf.is_empty() || !buf.len().is_multiple_of(512) || !self.has_room(buf.len()) {
            return Err(virtio_drivers::Error::InvalidParam);
        }
        let mut r = Box::new(AtDrive {
            token: 0,
            req: BlkReq::default(),
            resp: BlkResp::default(),
            buf,
            write,
        });
        let sector = usize::try_from(sector).map_err(|_| virtio_drivers::Error::InvalidParam)?;
        let r_mut = &mut *r;
        r_mut.token = if write {
            // SAFETY: the header, data and status live in the box and its vector, which
            // `at_drive` keeps, untouched, until `done` completes the request with them.
            unsafe {
                self.blk
                    .write_blocks_nb(sector, &mut r_mut.req, &r_mut.buf, &mut r_mut.resp)
            }?
        } else {
            // SAFETY: as above.
            unsafe {
                self.blk
                    .read_blocks_nb(sector, &mut r_mut.req, &mut r_mut.buf, &mut r_mut.resp)
            }?
        };
        self.at_drive.push(r);
        Ok(self.at_drive.last().map_or(0, |r| r.token))
    }

    /// The next request the device is done with: its token and, if it succeeded, its data
    /// (what was read, or what was written). A token that names no request at the device
    /// (the device's mistake) comes back as `WrongToken` every time: the queue cannot go on.
    pub fn done(&mut self) -> Option<(u16, Result<Vec<u8>, virtio_drivers::Error>)> {
        let token = self.blk.peek_used()?;
        let Some(i) = self.at_drive.iter().position(|r| r.token == token) else {
            return Some((token, Err(virtio_drivers::Error::WrongToken)));
        };
        let mut r = self.at_drive.swap_remove(i);
        let r_mut = &mut *r;
        let result = if r_mut.write {
            // SAFETY: the same header, data and status `start` gave the device for `token`.
            unsafe {
                self.blk
                    .complete_write_blocks(token, &r_mut.req, &r_mut.buf, &mut r_mut.resp)
            }
        } else {
            // SAFETY: as above.
            unsafe {
                self.blk
                    .complete_read_blocks(token, &r_mut.req, &mut r_mut.buf, &mut r_mut.resp)
            }
        };
        Some((token, result.map(|()| core::mem::take(&mut r_mut.buf))))
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
