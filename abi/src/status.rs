//! Status codes: the closed set of ways a hypercall or capability operation can fail.
//!
//! On the wire a hypercall returns `0` ([`SUCCESS`]) or one of these codes in `x0`
//! (`rax` on x86_64). The numbers are part of the ABI: never renumber, only append.

/// The raw value a hypercall returns in its status register when it succeeded.
pub const SUCCESS: u64 = 0;

/// Why an operation failed. `0` is success and is deliberately not a variant, so a
/// `Result<T, Status>` cannot hold a "successful error".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u64)]
pub enum Status {
    /// The function id names no hypercall of this kernel.
    UnknownCall = 1,
    /// An argument is malformed (bad flags, misaligned address, reserved bits set).
    InvalidArgument = 2,
    /// The slot is out of range, empty, or holds a capability of the wrong object type.
    InvalidCapability = 3,
    /// The capability refers to an object that has since been destroyed (generation mismatch).
    StaleCapability = 4,
    /// The capability lacks a right the operation needs.
    InsufficientRights = 5,
    /// A range or index lies outside what the capability or object covers.
    OutOfRange = 6,
    /// The destination slot already holds a capability.
    SlotOccupied = 7,
    /// A capability space, table or queue has no free entry.
    NoFreeSlot = 8,
    /// The domain's kernel-memory quota cannot pay for the object.
    QuotaExceeded = 9,
    /// The kernel has no free memory for the request.
    OutOfMemory = 10,
    /// The object is in a state that does not allow the operation (e.g. starting a running vCPU).
    WrongState = 11,
    /// The resource is temporarily in use; retrying later may succeed.
    Busy = 12,
    /// The operation is recognised but not supported on this system or object.
    NotSupported = 13,
    /// The peer end of a channel is closed or was revoked.
    PeerClosed = 14,
    /// Admitting the request would promise more CPU time than exists (reservations above 100%).
    Overcommitted = 15,
    /// Another domain has the name already, or the system image reserves it.
    NameInUse = 16,
}

impl Status {
    /// Every status, in numeric order (for tables, docs and exhaustive tests).
    pub const ALL: [Status; 16] = [
        Status::UnknownCall,
        Status::InvalidArgument,
        Status::InvalidCapability,
        Status::StaleCapability,
        Status::InsufficientRights,
        Status::OutOfRange,
        Status::SlotOccupied,
        Status::NoFreeSlot,
        Status::QuotaExceeded,
        Status::OutOfMemory,
        Status::WrongState,
        Status::Busy,
        Status::NotSupported,
        Status::PeerClosed,
        Status::Overcommitted,
        Status::NameInUse,
    ];

    /// The value placed in the status register.
    pub const fn to_raw(self) -> u64 {
        self as u64
    }

    /// Decodes a status register: `Ok(())` for [`SUCCESS`], the status for a known code,
    /// and `None` for a value this ABI version does not define.
    pub fn from_raw(raw: u64) -> Option<Result<(), Status>> {
        if raw == SUCCESS {
            return Some(Ok(()));
        }
        Status::ALL
            .iter()
            .copied()
            .find(|s| s.to_raw() == raw)
            .map(Err)
    }

    /// A short human-readable name, used in kernel and toolstack reports.
    pub const fn name(self) -> &'static str {
        match self {
            Status::UnknownCall => "unknown call",
            Status::InvalidArgument => "invalid argument",
            Status::InvalidCapability => "invalid capability",
            Status::StaleCapability => "stale capability",
            Status::InsufficientRights => "insufficient rights",
            Status::OutOfRange => "out of range",
            Status::SlotOccupied => "slot occupied",
            Status::NoFreeSlot => "no free slot",
            Status::QuotaExceeded => "quota exceeded",
            Status::OutOfMemory => "out of memory",
            Status::WrongState => "wrong state",
            Status::Busy => "busy",
            Status::NotSupported => "not supported",
            Status::PeerClosed => "peer closed",
            Status::Overcommitted => "overcommitted",
            Status::NameInUse => "name in use",
        }
    }
}

impl core::fmt::Display for Status {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_dense() {
        for (i, s) in Status::ALL.iter().enumerate() {
            assert_eq!(
                s.to_raw(),
                i as u64 + 1,
                "{s:?} is out of order in Status::ALL"
            );
            assert_eq!(Status::from_raw(s.to_raw()), Some(Err(*s)));
        }
        assert_eq!(Status::from_raw(SUCCESS), Some(Ok(())));
        assert_eq!(Status::from_raw(Status::ALL.len() as u64 + 1), None);
        assert_eq!(Status::from_raw(u64::MAX), None);
    }
}
