//! The shape of a domain's guest-physical address space, shared by the kernel, the HALs, the
//! runtime and the toolstack.
//!
//! Stage 2 translates 39-bit guest-physical addresses on every architecture Mica runs on
//! (aarch64: VTCR_EL2.T0SZ = 25 with a level-1 root; x86_64 NPT: a four-level table limited to
//! the same range), so an address is valid in a domain exactly when it is below
//! [`IPA_LIMIT`]. Every check of a guest-physical range uses this one value.

/// Bits of a guest-physical address.
pub const IPA_BITS: u32 = 39;

/// One past the highest guest-physical address a domain can have mapped.
pub const IPA_LIMIT: u64 = 1 << IPA_BITS;
