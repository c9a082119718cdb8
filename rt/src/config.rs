//! The configuration the toolstack writes into a domain's image (docs/domains.md).
//!
//! `mica build` looks for the symbol [`SYMBOL`] in a domain's ELF file and, when the manifest
//! gives that domain a configuration (the block service: its clients, `mica_abi::blkio`),
//! writes it over the symbol's bytes before the image is loaded, the way seL4's Microkit
//! patches variables into its protection domains. A domain that never calls [`bytes`] has no
//! such symbol (the linker drops it), and one that is given nothing reads zeros.

use core::cell::UnsafeCell;

/// The symbol's name.
pub const SYMBOL: &str = mica_abi::config::SYMBOL;
/// Bytes of the configuration area.
pub const BYTES: usize = mica_abi::config::BYTES;

/// The configuration area: in `.data` (so it has bytes in the ELF file to write over), and
/// behind an `UnsafeCell` so the compiler does not take its contents for the zeros it was
/// compiled with.
#[repr(C, align(8))]
pub struct Area(UnsafeCell<[u8; BYTES]>);

// SAFETY: nothing writes the area while the domain runs: the toolstack writes the image file
// before boot, and this module hands out only shared references.
unsafe impl Sync for Area {}

/// The area the toolstack writes (found by its symbol name, so not mangled).
#[no_mangle]
#[link_section = ".data.mica_config"]
pub static MICA_CONFIG: Area = Area(UnsafeCell::new([0; BYTES]));

/// The configuration as the toolstack wrote it (zeros if it wrote none).
pub fn bytes() -> &'static [u8] {
    // SAFETY: the area is never written while the domain runs (see the `Sync` impl), so a
    // shared reference for 'static is sound; reading through the cell's pointer keeps the
    // compiler from assuming the compiled-in zeros.
    unsafe { &*MICA_CONFIG.0.get() }
}
