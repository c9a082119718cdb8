//! Frame ranges: the physical extent a Memory or DeviceMemory capability covers, in absolute
//! frame numbers (physical address / [`crate::layout::PAGE_SIZE`]).
//!
//! A range is a first frame number and a non-zero count whose end does not overflow; the
//! constructor checks both, so every `FrameRange` in the system is well formed and the
//! containment arithmetic below cannot overflow. The one type for the capability system, the
//! kernel, the runtime's typed wrappers and every domain; on the wire a range is two
//! registers (first frame, count), and in `cap_derive`/`cap_grant` a count of 0 (with first
//! frame 0) means "the source's whole range", which the wrappers take as `None`.

/// A non-empty range of physical frames `[first, first + count)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FrameRange {
    first: u64,
    count: u64,
}

impl FrameRange {
    /// The range `[first, first + count)`; `None` when `count` is zero or the end overflows.
    pub const fn new(first: u64, count: u64) -> Option<FrameRange> {
        if count == 0 {
            return None;
        }
        match first.checked_add(count) {
            Some(_) => Some(FrameRange { first, count }),
            None => None,
        }
    }

    /// The first frame number.
    pub const fn first(self) -> u64 {
        self.first
    }

    /// How many frames the range covers (never zero).
    pub const fn count(self) -> u64 {
        self.count
    }

    /// One past the last frame (cannot overflow: checked at construction).
    pub const fn end(self) -> u64 {
        self.first + self.count
    }

    /// Whether `other` lies entirely inside `self`.
    pub const fn contains(self, other: FrameRange) -> bool {
        other.first >= self.first && other.end() <= self.end()
    }

    /// Whether frame number `frame` lies inside the range.
    pub const fn contains_frame(self, frame: u64) -> bool {
        frame >= self.first && frame < self.end()
    }

    /// Whether the two ranges share at least one frame.
    pub const fn overlaps(self, other: FrameRange) -> bool {
        self.first < other.end() && other.first < self.end()
    }
}

impl FrameRange {
    /// The two registers that carry `range` in a call (first frame, count); `None` (the
    /// source's whole range, in `cap_derive` and `cap_grant`) is `(0, 0)`.
    pub const fn to_regs(range: Option<FrameRange>) -> (u64, u64) {
        match range {
            Some(r) => (r.first, r.count),
            None => (0, 0),
        }
    }
}
