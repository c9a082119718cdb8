//! The physical frame allocator and the boot-time plan that feeds it.
//!
//! [`BootMemory::plan`] decides, from the platform description and where the hypervisor
//! image lies, which bytes of RAM are free, and sets aside the kernel heap; [`Frames`]
//! hands out 4 KiB frames from what is left. The buddy allocator itself is
//! `buddy_system_allocator`'s (power-of-two blocks, merged on free); this module only adds
//! byte/frame conversion and accounting.

use crate::memmap::{MemMapError, PhysRange, RangeSet};
use crate::platform::{Platform, MAX_RAM_RANGES, MAX_RESERVED_RANGES};

/// Size of a frame: the 4 KiB translation granule.
pub const FRAME_SIZE: u64 = 4096;

/// Most disjoint free ranges boot tracks (RAM ranges split by every hole punched in them).
pub const MAX_FREE_RANGES: usize = MAX_RAM_RANGES + MAX_RESERVED_RANGES + 4;

/// How boot divides RAM.
#[derive(Clone, Debug)]
pub struct BootMemory {
    /// RAM the frame allocator manages.
    pub free: RangeSet<MAX_FREE_RANGES>,
    /// RAM set aside for the kernel heap.
    pub heap: PhysRange,
    /// Total RAM the tree describes.
    pub ram_total: u64,
}

/// Why boot could not divide RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootMemoryError {
    /// Splitting RAM around reserved regions needs more ranges than boot tracks.
    TooManyRanges,
    /// No free range is large enough for the kernel heap.
    NoRoomForHeap {
        /// The heap size that was looked for.
        wanted: u64,
    },
}

impl From<MemMapError> for BootMemoryError {
    fn from(_: MemMapError) -> Self {
        BootMemoryError::TooManyRanges
    }
}

impl core::fmt::Display for BootMemoryError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BootMemoryError::TooManyRanges => {
                write!(f, "RAM splits into more than {MAX_FREE_RANGES} free ranges")
            }
            BootMemoryError::NoRoomForHeap { wanted } => {
                write!(
                    f,
                    "no free RAM range can hold the {} KiB kernel heap",
                    wanted / 1024
                )
            }
        }
    }
}

impl BootMemory {
    /// The kernel heap size for a machine with `free` bytes of free RAM: 1/64 of it,
    /// between 1 MiB and 16 MiB.
    pub fn heap_size_for(free: u64) -> u64 {
        (free / 64).clamp(1 << 20, 16 << 20) & !(FRAME_SIZE - 1)
    }

    /// Free RAM = RAM − reserved − the hypervisor image − the device tree, cut to whole
    /// frames, minus the kernel heap.
    pub fn plan(platform: &Platform<'_>, image: PhysRange) -> Result<BootMemory, BootMemoryError> {
        let mut free: RangeSet<MAX_FREE_RANGES> = RangeSet::new();
        for r in platform.ram.iter() {
            free.insert(r)?;
        }
        for r in platform.reserved.iter() {
            free.remove(r.align_outward(FRAME_SIZE))?;
        }
        free.remove(image.align_outward(FRAME_SIZE))?;
        free.remove(platform.dtb.align_outward(FRAME_SIZE))?;
        free.align_inward(FRAME_SIZE);
        let wanted = Self::heap_size_for(free.total());
        let heap = free
            .take(wanted, FRAME_SIZE)
            .ok_or(BootMemoryError::NoRoomForHeap { wanted })?;
        Ok(BootMemory {
            free,
            heap,
            ram_total: platform.ram.total(),
        })
    }
}

/// The buddy frame allocator over all free RAM.
pub struct Frames {
    buddy: buddy_system_allocator::FrameAllocator<40>,
    managed: u64,
    allocated: u64,
}

impl Default for Frames {
    fn default() -> Self {
        Self::new()
    }
}

impl Frames {
    /// An allocator with no memory.
    pub const fn new() -> Frames {
        Frames {
            buddy: buddy_system_allocator::FrameAllocator::new(),
            managed: 0,
            allocated: 0,
        }
    }

    /// Adds every range of `free` (frame-aligned) to the allocator.
    pub fn add_ranges<const N: usize>(&mut self, free: &RangeSet<N>) {
        for r in free.iter() {
            let r = r.align_inward(FRAME_SIZE);
            if r.is_empty() {
                continue;
            }
            self.buddy.add_frame(
                (r.start / FRAME_SIZE) as usize,
                (r.end / FRAME_SIZE) as usize,
            );
            self.managed += r.size();
        }
    }

    /// Bytes under management.
    pub fn managed_bytes(&self) -> u64 {
        self.managed
    }

    /// Bytes currently free.
    pub fn free_bytes(&self) -> u64 {
        self.managed - self.allocated
    }

    /// Allocates `count` contiguous frames (rounded up to a power of two, aligned to
    /// that size) and returns their physical range.
    pub fn alloc(&mut self, count: usize) -> Option<PhysRange> {
        if count == 0 {
            return None;
        }
        let n = count.checked_next_power_of_two()?;
        let first = self.buddy.alloc(n)?;
        self.allocated += n as u64 * FRAME_SIZE;
        PhysRange::from_base_size(first as u64 * FRAME_SIZE, n as u64 * FRAME_SIZE)
    }

    /// Returns a range obtained from [`Frames::alloc`].
    pub fn free(&mut self, range: PhysRange) {
        let n = (range.size() / FRAME_SIZE) as usize;
        self.buddy.dealloc((range.start / FRAME_SIZE) as usize, n);
        self.allocated = self.allocated.saturating_sub(range.size());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::tests::{build_tree, TreeSpec};

    const IMAGE: PhysRange = PhysRange {
        start: 0x4020_0000,
        end: 0x4035_1234,
    };

    #[test]
    fn plan_carves_image_dtb_and_reserved_out_of_ram() {
        let blob = build_tree(&TreeSpec {
            memory: vec![(0x4000_0000, 0x1000_0000)],
            reserved: vec![(0x4c00_0000, 0x1_0000)],
            memreserve: vec![(0x4f00_0800, 0x100)],
            ..Default::default()
        });
        let p = Platform::parse(&blob, 0x4800_0000).unwrap();
        let plan = BootMemory::plan(&p, IMAGE).unwrap();
        let forbidden = [
            IMAGE,
            p.dtb,
            PhysRange {
                start: 0x4c00_0000,
                end: 0x4c01_0000,
            },
            PhysRange {
                start: 0x4f00_0800,
                end: 0x4f00_0900,
            },
        ];
        for r in plan.free.iter().chain([plan.heap]) {
            assert_eq!(r.start % FRAME_SIZE, 0);
            assert_eq!(r.end % FRAME_SIZE, 0);
            assert!(p.ram.contains_range(&r), "{r:?} is not RAM");
            for f in &forbidden {
                assert!(!r.overlaps(f), "{r:?} overlaps {f:?}");
            }
        }
        assert!(!plan.free.iter().any(|r| r.overlaps(&plan.heap)));
        assert_eq!(
            plan.heap.size(),
            BootMemory::heap_size_for(plan.free.total() + plan.heap.size())
        );
        // Everything not forbidden is handed out: the loss is at most the forbidden
        // ranges rounded to frames.
        let lost = 0x1000_0000 - plan.free.total() - plan.heap.size();
        assert!(
            lost <= 0x20_0000 + 0x1_0000 + 2 * FRAME_SIZE + p.dtb.size() + FRAME_SIZE,
            "lost {lost:#x}"
        );
        assert_eq!(plan.ram_total, 0x1000_0000);
    }

    #[test]
    fn plan_fails_cleanly_when_ram_is_tiny() {
        let blob = build_tree(&TreeSpec {
            memory: vec![(0x4000_0000, 0x40_0000)],
            ..Default::default()
        });
        let p = Platform::parse(&blob, 0x4000_0000).unwrap();
        let err = BootMemory::plan(
            &p,
            PhysRange {
                start: 0x4010_0000,
                end: 0x4038_0000,
            },
        )
        .unwrap_err();
        assert_eq!(err, BootMemoryError::NoRoomForHeap { wanted: 1 << 20 });
    }

    #[test]
    fn allocator_hands_out_only_free_frames_once() {
        let blob = build_tree(&TreeSpec {
            memory: vec![(0x4000_0000, 0x200_0000)],
            ..Default::default()
        });
        let p = Platform::parse(&blob, 0x4100_0000).unwrap();
        let plan = BootMemory::plan(&p, IMAGE).unwrap();
        let mut frames = Frames::new();
        frames.add_ranges(&plan.free);
        assert_eq!(frames.managed_bytes(), plan.free.total());
        let mut seen = std::collections::BTreeSet::new();
        while let Some(r) = frames.alloc(1) {
            assert!(plan.free.contains_range(&r), "{r:?} was not free");
            assert!(seen.insert(r.start), "{r:?} handed out twice");
        }
        assert_eq!(seen.len() as u64 * FRAME_SIZE, plan.free.total());
        assert_eq!(frames.free_bytes(), 0);
        for start in seen {
            frames.free(PhysRange {
                start,
                end: start + FRAME_SIZE,
            });
        }
        assert_eq!(frames.free_bytes(), plan.free.total());
        // After freeing everything, large blocks merge again.
        assert!(frames.alloc(256).is_some());
        assert!(frames.alloc(0).is_none());
    }
}
