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
pub const FRAME_SIZE: u64 = mica_abi::layout::PAGE_SIZE;

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

/// Most NUMA nodes with their own allocator.
pub const MAX_NODES: usize = 4;
/// Most node spans recorded (RAM ranges tagged with their node).
const MAX_SPANS: usize = 32;

/// One node's buddy allocator and accounting.
struct NodeFrames {
    buddy: buddy_system_allocator::FrameAllocator<40>,
    managed: u64,
    allocated: u64,
}

impl NodeFrames {
    const fn new() -> NodeFrames {
        NodeFrames {
            buddy: buddy_system_allocator::FrameAllocator::new(),
            managed: 0,
            allocated: 0,
        }
    }
}

/// The frame allocator: one buddy allocator per NUMA node over that node's free RAM (all RAM
/// is node 0 on a machine the device tree describes without nodes).
pub struct Frames {
    nodes: [NodeFrames; MAX_NODES],
    /// Which node each added range belongs to (to return frames to the right allocator).
    spans: heapless::Vec<(PhysRange, u8), MAX_SPANS>,
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
            nodes: [const { NodeFrames::new() }; MAX_NODES],
            spans: heapless::Vec::new(),
        }
    }

    /// Adds every range of `free` (frame-aligned) to node 0.
    pub fn add_ranges<const N: usize>(&mut self, free: &RangeSet<N>) {
        self.add_ranges_on(0, free);
    }

    /// Adds free RAM, each piece to the node the platform says its memory belongs to.
    pub fn add_ranges_by_node<const N: usize>(
        &mut self,
        free: &RangeSet<N>,
        platform: &Platform<'_>,
    ) {
        for node in 0..MAX_NODES as u32 {
            let mut mine: RangeSet<N> = free.clone();
            for r in free.iter() {
                // Cut out every part of `r` that belongs to another node.
                let mut at = r.start;
                while at < r.end {
                    let n = platform.node_of_address(at).min(MAX_NODES as u32 - 1);
                    let span_end = platform
                        .ram_nodes
                        .iter()
                        .find(|(s, _)| s.start <= at && at < s.end)
                        .map_or(r.end, |(s, _)| s.end.min(r.end));
                    if n != node {
                        let _ = mine.remove(PhysRange {
                            start: at,
                            end: span_end,
                        });
                    }
                    at = span_end;
                }
            }
            if !mine.is_empty() {
                self.add_ranges_on(node as usize, &mine);
            }
        }
    }

    /// Adds every range of `free` to node `node` (clamped to the nodes supported).
    pub fn add_ranges_on<const N: usize>(&mut self, node: usize, free: &RangeSet<N>) {
        let node = node.min(MAX_NODES - 1);
        for r in free.iter() {
            let r = r.align_inward(FRAME_SIZE);
            if r.is_empty() {
                continue;
            }
            if self.spans.push((r, node as u8)).is_err() {
                // Out of span records: the range stays unused rather than be mis-attributed.
                continue;
            }
            let n = &mut self.nodes[node];
            n.buddy.add_frame(
                (r.start / FRAME_SIZE) as usize,
                (r.end / FRAME_SIZE) as usize,
            );
            n.managed += r.size();
        }
    }

    /// The node the frame at `pa` belongs to.
    pub fn node_of(&self, pa: u64) -> Option<usize> {
        self.spans
            .iter()
            .find(|(r, _)| r.start <= pa && pa < r.end)
            .map(|(_, n)| *n as usize)
    }

    /// Nodes that manage memory.
    pub fn node_count(&self) -> usize {
        self.nodes
            .iter()
            .rposition(|n| n.managed > 0)
            .map_or(1, |i| i + 1)
    }

    /// Bytes under management.
    pub fn managed_bytes(&self) -> u64 {
        self.nodes.iter().map(|n| n.managed).sum()
    }

    /// Bytes under management on `node`.
    pub fn managed_bytes_on(&self, node: usize) -> u64 {
        self.nodes.get(node).map_or(0, |n| n.managed)
    }

    /// Bytes currently free.
    pub fn free_bytes(&self) -> u64 {
        self.nodes.iter().map(|n| n.managed - n.allocated).sum()
    }

    /// Bytes currently free on `node`.
    pub fn free_bytes_on(&self, node: usize) -> u64 {
        self.nodes.get(node).map_or(0, |n| n.managed - n.allocated)
    }

    /// Allocates `count` contiguous frames (rounded up to a power of two, aligned to that
    /// size) from any node, lowest first.
    pub fn alloc(&mut self, count: usize) -> Option<PhysRange> {
        (0..MAX_NODES).find_map(|node| self.alloc_on(node, count))
    }

    /// Allocates `count` contiguous frames from node `node` only.
    pub fn alloc_on(&mut self, node: usize, count: usize) -> Option<PhysRange> {
        if count == 0 {
            return None;
        }
        let n = self.nodes.get_mut(node)?;
        let pages = count.checked_next_power_of_two()?;
        let first = n.buddy.alloc(pages)?;
        n.allocated += pages as u64 * FRAME_SIZE;
        PhysRange::from_base_size(first as u64 * FRAME_SIZE, pages as u64 * FRAME_SIZE)
    }

    /// Returns a range obtained from [`Frames::alloc`] or [`Frames::alloc_on`] to its node.
    pub fn free(&mut self, range: PhysRange) {
        let node = self.node_of(range.start).unwrap_or(0);
        let n = &mut self.nodes[node];
        let pages = (range.size() / FRAME_SIZE) as usize;
        n.buddy.dealloc((range.start / FRAME_SIZE) as usize, pages);
        n.allocated = n.allocated.saturating_sub(range.size());
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
    fn nodes_have_their_own_allocators_and_frees_go_home() {
        let mut f = Frames::new();
        let mut n0: RangeSet<2> = RangeSet::new();
        n0.insert(PhysRange {
            start: 0x4000_0000,
            end: 0x4010_0000,
        })
        .unwrap();
        let mut n1: RangeSet<2> = RangeSet::new();
        n1.insert(PhysRange {
            start: 0x8000_0000,
            end: 0x8010_0000,
        })
        .unwrap();
        f.add_ranges_on(0, &n0);
        f.add_ranges_on(1, &n1);
        assert_eq!(f.node_count(), 2);
        let r = f.alloc_on(1, 16).unwrap();
        assert!(r.start >= 0x8000_0000);
        assert_eq!(f.node_of(r.start), Some(1));
        assert_eq!(f.free_bytes_on(1), 0x10_0000 - 16 * FRAME_SIZE);
        assert_eq!(f.free_bytes_on(0), 0x10_0000);
        f.free(r);
        assert_eq!(f.free_bytes_on(1), 0x10_0000);
        // Node 1 full: a strict allocation fails, an unconstrained one comes from node 0.
        assert!(f.alloc_on(1, 256).is_some());
        assert!(f.alloc_on(1, 1).is_none());
        let any = f.alloc(1).unwrap();
        assert_eq!(f.node_of(any.start), Some(0));
        assert!(f.alloc_on(7, 1).is_none());
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
