//! Physical address ranges and the arithmetic that carves free RAM out of a machine.
//!
//! Boot code learns RAM, reserved regions, the hypervisor image and the device tree
//! as ranges; what is left after subtracting the last three from the first is what the
//! frame allocator may hand out. Keeping this arithmetic here (not in the HAL) lets it be
//! tested on the host, where an off-by-one costs a test failure instead of a corrupted DTB.

use core::fmt;

/// A half-open range of physical addresses `[start, end)`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PhysRange {
    /// First byte of the range.
    pub start: u64,
    /// One past the last byte of the range.
    pub end: u64,
}

impl PhysRange {
    /// The range `[start, start + size)`, or `None` if it would wrap past 2^64.
    pub fn from_base_size(start: u64, size: u64) -> Option<PhysRange> {
        Some(PhysRange {
            start,
            end: start.checked_add(size)?,
        })
    }

    /// Number of bytes in the range.
    pub fn size(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Whether the range contains no byte.
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// Whether the two ranges share at least one byte.
    pub fn overlaps(&self, other: &PhysRange) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// Whether `other` lies entirely inside this range.
    pub fn contains_range(&self, other: &PhysRange) -> bool {
        other.start >= self.start && other.end <= self.end
    }

    /// The largest sub-range whose ends are multiples of `align` (a power of two); empty
    /// if none exists.
    pub fn align_inward(&self, align: u64) -> PhysRange {
        debug_assert!(align.is_power_of_two());
        let mask = align.saturating_sub(1);
        let start = self.start.checked_add(mask).map_or(!mask, |s| s & !mask);
        let end = self.end & !mask;
        if end <= start {
            PhysRange { start, end: start }
        } else {
            PhysRange { start, end }
        }
    }

    /// The smallest range whose ends are multiples of `align` (a power of two) that
    /// covers this one (saturating at the top of the address space).
    pub fn align_outward(&self, align: u64) -> PhysRange {
        debug_assert!(align.is_power_of_two());
        let mask = align.saturating_sub(1);
        let start = self.start & !mask;
        let end = self.end.checked_add(mask).map_or(!mask, |e| e & !mask);
        PhysRange { start, end }
    }
}

impl fmt::Debug for PhysRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}..{:#x}", self.start, self.end)
    }
}

impl fmt::Display for PhysRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#011x}-{:#011x})", self.start, self.end)
    }
}

/// Why a range could not be recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemMapError {
    /// More disjoint ranges than the fixed capacity of the set.
    TooManyRanges,
}

/// A set of disjoint, sorted, non-adjacent physical ranges with a fixed capacity
/// (boot code runs before any heap exists).
#[derive(Clone)]
pub struct RangeSet<const N: usize> {
    ranges: heapless::Vec<PhysRange, N>,
}

impl<const N: usize> Default for RangeSet<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> RangeSet<N> {
    /// An empty set.
    pub const fn new() -> Self {
        RangeSet {
            ranges: heapless::Vec::new(),
        }
    }

    /// The ranges, sorted by address.
    pub fn iter(&self) -> impl Iterator<Item = PhysRange> + '_ {
        self.ranges.iter().copied()
    }

    /// Number of disjoint ranges.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether the set covers no byte.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Total bytes covered.
    pub fn total(&self) -> u64 {
        self.ranges.iter().map(PhysRange::size).sum()
    }

    /// Whether `r` lies entirely inside one range of the set.
    pub fn contains_range(&self, r: &PhysRange) -> bool {
        self.ranges.iter().any(|x| x.contains_range(r))
    }

    /// Adds `r`, merging it with every range it overlaps or touches. On error the set
    /// is unchanged.
    pub fn insert(&mut self, r: PhysRange) -> Result<(), MemMapError> {
        if r.is_empty() {
            return Ok(());
        }
        let mut merged = r;
        let mut out: heapless::Vec<PhysRange, N> = heapless::Vec::new();
        let mut placed = false;
        for x in self.ranges.iter().copied() {
            if x.end < merged.start {
                out.push(x).map_err(|_| MemMapError::TooManyRanges)?;
            } else if merged.end < x.start {
                if !placed {
                    out.push(merged).map_err(|_| MemMapError::TooManyRanges)?;
                    placed = true;
                }
                out.push(x).map_err(|_| MemMapError::TooManyRanges)?;
            } else {
                merged = PhysRange {
                    start: merged.start.min(x.start),
                    end: merged.end.max(x.end),
                };
            }
        }
        if !placed {
            out.push(merged).map_err(|_| MemMapError::TooManyRanges)?;
        }
        self.ranges = out;
        Ok(())
    }

    /// Removes every byte of `r` from the set. Removing from the middle of a range splits
    /// it, which can exceed the capacity; on error the set is unchanged.
    pub fn remove(&mut self, r: PhysRange) -> Result<(), MemMapError> {
        if r.is_empty() {
            return Ok(());
        }
        let mut out: heapless::Vec<PhysRange, N> = heapless::Vec::new();
        for x in self.ranges.iter().copied() {
            if !x.overlaps(&r) {
                out.push(x).map_err(|_| MemMapError::TooManyRanges)?;
                continue;
            }
            let left = PhysRange {
                start: x.start,
                end: r.start,
            };
            let right = PhysRange {
                start: r.end,
                end: x.end,
            };
            for piece in [left, right] {
                if !piece.is_empty() {
                    out.push(piece).map_err(|_| MemMapError::TooManyRanges)?;
                }
            }
        }
        self.ranges = out;
        Ok(())
    }

    /// Shrinks every range to its `align`-aligned interior, dropping ranges that vanish.
    pub fn align_inward(&mut self, align: u64) {
        let mut out: heapless::Vec<PhysRange, N> = heapless::Vec::new();
        for x in self.ranges.iter() {
            let a = x.align_inward(align);
            if !a.is_empty() {
                // Cannot fail: `out` never holds more entries than `self.ranges`.
                let _ = out.push(a);
            }
        }
        self.ranges = out;
    }

    /// Takes `size` bytes aligned to `align` from the lowest range large enough and
    /// returns them, or `None` if no range can give them.
    pub fn take(&mut self, size: u64, align: u64) -> Option<PhysRange> {
        debug_assert!(align.is_power_of_two());
        let mask = align.saturating_sub(1);
        let found = self.ranges.iter().find_map(|x| {
            let start = x.start.checked_add(mask)? & !mask;
            let end = start.checked_add(size)?;
            (end <= x.end).then_some(PhysRange { start, end })
        })?;
        self.remove(found).ok()?;
        Some(found)
    }
}

impl<const N: usize> fmt::Debug for RangeSet<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.ranges.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> PhysRange {
        PhysRange { start, end }
    }

    fn set(rs: &[PhysRange]) -> RangeSet<8> {
        let mut s = RangeSet::new();
        for x in rs {
            s.insert(*x).unwrap();
        }
        s
    }

    #[test]
    fn insert_merges_overlapping_and_adjacent() {
        let s = set(&[
            r(0x3000, 0x4000),
            r(0x1000, 0x2000),
            r(0x2000, 0x3000),
            r(0x8000, 0x9000),
        ]);
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            vec![r(0x1000, 0x4000), r(0x8000, 0x9000)]
        );
        assert_eq!(s.total(), 0x4000);
    }

    #[test]
    fn remove_splits_and_trims() {
        let mut s = set(&[r(0x0, 0x10000)]);
        s.remove(r(0x4000, 0x5000)).unwrap();
        s.remove(r(0x0, 0x1000)).unwrap();
        s.remove(r(0xF000, 0x20000)).unwrap();
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            vec![r(0x1000, 0x4000), r(0x5000, 0xF000)]
        );
        s.remove(r(0x0, u64::MAX)).unwrap();
        assert!(s.is_empty());
    }

    #[test]
    fn capacity_overflow_leaves_the_set_unchanged() {
        let mut s: RangeSet<2> = RangeSet::new();
        s.insert(r(0, 0x10000)).unwrap();
        s.remove(r(0x1000, 0x2000)).unwrap();
        let before = s.iter().collect::<Vec<_>>();
        assert_eq!(s.remove(r(0x3000, 0x4000)), Err(MemMapError::TooManyRanges));
        assert_eq!(s.iter().collect::<Vec<_>>(), before);
    }

    #[test]
    fn alignment_rounds_the_right_way() {
        assert_eq!(r(0x1001, 0x5fff).align_inward(0x1000), r(0x2000, 0x5000));
        assert!(r(0x1001, 0x1fff).align_inward(0x1000).is_empty());
        assert_eq!(r(0x1001, 0x5fff).align_outward(0x1000), r(0x1000, 0x6000));
        assert_eq!(r(u64::MAX - 5, u64::MAX).align_inward(0x1000).size(), 0);
    }

    #[test]
    fn take_returns_aligned_memory_and_removes_it() {
        let mut s = set(&[r(0x1000, 0x3000), r(0x10_1000, 0x40_0000)]);
        let got = s.take(0x10_0000, 0x10_0000).unwrap();
        assert_eq!(got, r(0x20_0000, 0x30_0000));
        assert!(!s.iter().any(|x| x.overlaps(&got)));
        assert_eq!(s.total(), 0x2000 + 0x2F_F000 - 0x10_0000);
        assert!(s.take(0x100_0000, 0x1000).is_none());
    }
}
