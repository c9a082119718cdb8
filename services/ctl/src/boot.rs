//! How a created domain starts: its RAM layout and the stub that enters its image.
//!
//! The kernel's boot protocol (docs/domains.md) has vCPU 0 start with x0 = arg, x1 = the RAM
//! base, x2 = the usable RAM size and x3 = the boot-info page. `vcpu_start` sets only x0
//! (the other registers are 0), so a domain the control domain creates starts in a 64-byte
//! stub at the end of its boot-info page that loads x1-x3 and branches to the image's entry
//! point; the image then sees exactly what a domain the kernel created sees.

use mica_abi::layout::{DomainLayout, PAGE_SIZE};

/// Bytes of a page.
pub const PAGE: u64 = PAGE_SIZE;
/// Where the stub lies in the boot-info page (after the `BootInfo` structure).
pub const STUB_OFFSET: u64 = 0xF00;

/// The layout (`mica_abi::layout`, the kernel's own) of a created domain with `ram_bytes`
/// rounded up to pages; `None` below two pages (no room for an image beside the boot-info
/// page).
pub fn layout(ram_bytes: u64) -> Option<DomainLayout> {
    let ram_bytes = ram_bytes.checked_next_multiple_of(PAGE)?;
    (ram_bytes >= 2 * PAGE).then_some(DomainLayout::new(ram_bytes))
}

/// Where vCPU 0 of a domain of `layout` starts: the stub, in its boot-info page.
pub fn stub_ipa(layout: &DomainLayout) -> u64 {
    layout.boot_page() + STUB_OFFSET
}

/// The stub for an image entering at `entry`, as bytes to put at [`stub_ipa`]: it loads the
/// x1-x3 of [`DomainLayout::entry_regs`] and branches to `entry` (x0, the argument, is what
/// `vcpu_start` set).
pub fn stub(layout: &DomainLayout, entry: u64) -> [u8; 56] {
    // ldr xN, <literal>: 0x58000000 | imm19 << 5 | N, imm19 = (literal - pc) / 4.
    let ldr = |rt: u32, at: u32, literal: u32| 0x5800_0000 | ((literal - at) / 4) << 5 | rt;
    let code: [u32; 6] = [
        ldr(1, 0, 24),
        ldr(2, 4, 32),
        ldr(3, 8, 40),
        ldr(4, 12, 48),
        0xD61F_0080, // br x4
        0xD503_201F, // nop (aligns the literals)
    ];
    let [_, x1, x2, x3] = layout.entry_regs(0);
    let literals = [x1, x2, x3, entry];
    let mut out = [0u8; 56];
    for (i, word) in code.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&word.to_le_bytes());
    }
    for (i, lit) in literals.iter().enumerate() {
        out[24 + i * 8..32 + i * 8].copy_from_slice(&lit.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_stub() {
        let l = layout((1 << 20) - 100).unwrap();
        assert_eq!(l.ram_bytes, 1 << 20, "rounded up to pages");
        assert_eq!(l.usable_bytes(), (1 << 20) - 4096);
        assert_eq!(l.boot_page(), 0x400F_F000);
        assert_eq!(stub_ipa(&l), 0x400F_FF00);
        assert!(layout(4096).is_none());
        let stub = stub(&l, 0x4000_1234);
        let word = |i: usize| u32::from_le_bytes(stub[i * 4..i * 4 + 4].try_into().unwrap());
        // As an assembler writes them: ldr x1, #24; ldr x2, #28; ldr x3, #32; ldr x4, #36.
        assert_eq!(word(0), 0x5800_00C1);
        assert_eq!(word(1), 0x5800_00E2);
        assert_eq!(word(2), 0x5800_0103);
        assert_eq!(word(3), 0x5800_0124);
        assert_eq!(word(4), 0xD61F_0080);
        assert_eq!(&stub[48..56], &0x4000_1234u64.to_le_bytes());
        assert_eq!(&stub[24..32], &mica_abi::layout::RAM_BASE.to_le_bytes());
        assert_eq!(&stub[32..40], &l.usable_bytes().to_le_bytes());
        assert_eq!(&stub[40..48], &l.boot_page().to_le_bytes());
        assert!(STUB_OFFSET + stub.len() as u64 <= PAGE);
        assert!(
            core::mem::size_of::<mica_abi::bootinfo::BootInfo>() as u64 <= STUB_OFFSET,
            "the stub does not overlap the boot-info structure"
        );
    }
}
