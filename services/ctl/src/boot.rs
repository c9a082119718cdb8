//! How a created domain starts: its RAM layout and the stub that enters its image.
//!
//! The kernel's boot protocol (docs/domains.md) has vCPU 0 start with x0 = arg, x1 = the RAM
//! base, x2 = the usable RAM size and x3 = the boot-info page. `vcpu_start` sets only x0
//! (the other registers are 0), so a domain the control domain creates starts in a 64-byte
//! stub at the end of its boot-info page that loads x1-x3 and branches to the image's entry
//! point; the image then sees exactly what a domain the kernel created sees.

use mica_abi::sysimage::DOMAIN_RAM_BASE;

/// Bytes of a page.
pub const PAGE: u64 = mica_abi::layout::PAGE_SIZE;
/// Where the stub lies in the boot-info page (after the `BootInfo` structure).
pub const STUB_OFFSET: u64 = 0xF00;

/// Where things are in a created domain of `ram_bytes` of RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// RAM size in bytes (whole pages, at least two).
    pub ram_bytes: u64,
}

impl Layout {
    /// The layout of a domain with `ram_bytes` (rounded up to pages); `None` below 2 pages.
    pub fn new(ram_bytes: u64) -> Option<Layout> {
        let ram_bytes = ram_bytes.checked_next_multiple_of(PAGE)?;
        (ram_bytes >= 2 * PAGE).then_some(Layout { ram_bytes })
    }

    /// x2: usable RAM, without the boot-info page.
    pub fn usable(&self) -> u64 {
        self.ram_bytes - PAGE
    }

    /// x3: the boot-info page's IPA.
    pub fn boot_page(&self) -> u64 {
        DOMAIN_RAM_BASE + self.usable()
    }

    /// Where vCPU 0 starts: the stub.
    pub fn stub_ipa(&self) -> u64 {
        self.boot_page() + STUB_OFFSET
    }

    /// The stub for an image entering at `entry`, as bytes to put at [`Layout::stub_ipa`].
    pub fn stub(&self, entry: u64) -> [u8; 56] {
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
        let literals = [DOMAIN_RAM_BASE, self.usable(), self.boot_page(), entry];
        let mut out = [0u8; 56];
        for (i, word) in code.iter().enumerate() {
            out[i * 4..i * 4 + 4].copy_from_slice(&word.to_le_bytes());
        }
        for (i, lit) in literals.iter().enumerate() {
            out[24 + i * 8..32 + i * 8].copy_from_slice(&lit.to_le_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_stub() {
        let l = Layout::new(1 << 20).unwrap();
        assert_eq!(l.usable(), (1 << 20) - 4096);
        assert_eq!(l.boot_page(), 0x400F_F000);
        assert_eq!(l.stub_ipa(), 0x400F_FF00);
        assert!(Layout::new(4096).is_none());
        let stub = l.stub(0x4000_1234);
        let word = |i: usize| u32::from_le_bytes(stub[i * 4..i * 4 + 4].try_into().unwrap());
        // As an assembler writes them: ldr x1, #24; ldr x2, #28; ldr x3, #32; ldr x4, #36.
        assert_eq!(word(0), 0x5800_00C1);
        assert_eq!(word(1), 0x5800_00E2);
        assert_eq!(word(2), 0x5800_0103);
        assert_eq!(word(3), 0x5800_0124);
        assert_eq!(word(4), 0xD61F_0080);
        assert_eq!(&stub[48..56], &0x4000_1234u64.to_le_bytes());
        assert_eq!(&stub[24..32], &DOMAIN_RAM_BASE.to_le_bytes());
        assert!(STUB_OFFSET + stub.len() as u64 <= PAGE);
        assert!(
            core::mem::size_of::<mica_abi::bootinfo::BootInfo>() as u64 <= STUB_OFFSET,
            "the stub does not overlap the boot-info structure"
        );
    }
}
