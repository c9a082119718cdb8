//! The domain heap (feature `heap`): a buddy allocator over a static region in BSS.
//!
//! `entry::run` initialises it before `main`, so `alloc` works from the first line of a
//! domain. The region is part of the image (below `__mica_rt_image_end`), so
//! [`crate::memory::take_free_ram`] never hands it out.

use buddy_system_allocator::LockedHeap;
use core::cell::UnsafeCell;

/// Bytes of heap.
pub const HEAP_SIZE: usize = 256 * 1024;

#[repr(C, align(4096))]
struct Region(UnsafeCell<[u8; HEAP_SIZE]>);

// SAFETY: the region is never accessed through this static except to take its address
// once, in `init`; afterwards only the allocator (behind its lock) touches it.
unsafe impl Sync for Region {}

static REGION: Region = Region(UnsafeCell::new([0; HEAP_SIZE]));

#[global_allocator]
static HEAP: LockedHeap<32> = LockedHeap::empty();

/// Hands the region to the allocator. Called once, by `entry::run` on vCPU 0 before `main`.
pub(crate) fn init() {
    let start = REGION.0.get() as usize;
    // SAFETY: `REGION` is static, HEAP_SIZE bytes, used by nothing else; `run` calls this
    // exactly once, before any allocation, so no range is added twice.
    unsafe { HEAP.lock().init(start, HEAP_SIZE) };
}

/// Bytes the heap has handed out and not got back.
pub fn allocated() -> usize {
    HEAP.lock().stats_alloc_actual()
}
