//! A domain's first instructions, and what the kernel told it at boot.
//!
//! The kernel starts vCPU 0 at the ELF entry (`_start`, first in the image) at EL1h with
//! the MMU off (HCR_EL2.DC = 1 makes memory Normal cacheable anyway), DAIF masked, x0 = the
//! manifest's `arg`, x1 = RAM base IPA, x2 = usable RAM size, x3 = the boot-info page (just
//! past the usable RAM), SP undefined (docs/domains.md).
//! `_start` enables FP/SIMD (rustc emits SIMD), points VBAR_EL1 at the runtime's vectors,
//! zeroes BSS, takes the static boot stack and calls the domain's `mica_main`, which
//! [`crate::entry!`] defines to call [`run`] with the domain's `main`.

/// What the kernel passed vCPU 0 in x0-x3.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BootInfo {
    /// The per-domain argument from the system manifest (x0).
    pub arg: u64,
    /// First IPA of the domain's RAM (x1; `0x4000_0000` under Mica).
    pub ram_base: u64,
    /// Bytes of usable RAM (x2): the RAM below the boot-info page.
    pub ram_size: u64,
    /// Guest-physical address of the boot-info page (x3; 0 if the kernel gave none). Read it
    /// with [`crate::bootinfo()`], which validates it.
    pub boot_page: u64,
}

impl BootInfo {
    /// One past the last IPA of RAM.
    pub const fn ram_end(&self) -> u64 {
        self.ram_base.saturating_add(self.ram_size)
    }

    /// Whether `ipa` lies in the domain's RAM.
    pub const fn in_ram(&self, ipa: u64) -> bool {
        ipa >= self.ram_base && ipa < self.ram_end()
    }

    /// `arg`, or `default` when the manifest left it 0.
    pub const fn arg_or(&self, default: u64) -> u64 {
        if self.arg == 0 {
            default
        } else {
            self.arg
        }
    }
}

/// Bytes of stack vCPU 0 runs on (in BSS).
pub const BOOT_STACK_SIZE: usize = 64 * 1024;

/// Names the domain's entry function: `mica_rt::entry!(main)` with `fn main(BootInfo) -> !`.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        /// Called by `mica-rt`'s `_start` with the boot registers.
        #[no_mangle]
        pub extern "C" fn mica_main(arg: u64, ram_base: u64, ram_size: u64, boot_page: u64) -> ! {
            let main: fn($crate::BootInfo) -> ! = $main;
            $crate::entry::run(
                main,
                $crate::BootInfo {
                    arg,
                    ram_base,
                    ram_size,
                    boot_page,
                },
            )
        }
    };
}

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub use bare_metal::{boot_info, run};

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod bare_metal {
    use super::{BootInfo, BOOT_STACK_SIZE};
    use core::sync::atomic::{AtomicU64, Ordering};

    core::arch::global_asm!(
        r#"
        .section .text.entry, "ax"
        .global _start
    _start:
        mov     x19, x0
        mov     x20, x1
        mov     x21, x2
        mov     x22, x3
        mov     x9, #(3 << 20)              // CPACR_EL1.FPEN = 0b11: no FP/SIMD traps
        msr     cpacr_el1, x9
        adrp    x9, __mica_rt_vectors
        add     x9, x9, :lo12:__mica_rt_vectors
        msr     vbar_el1, x9
        isb
        adrp    x9, __mica_rt_bss_start
        add     x9, x9, :lo12:__mica_rt_bss_start
        adrp    x10, __mica_rt_bss_end
        add     x10, x10, :lo12:__mica_rt_bss_end
    1:  cmp     x9, x10                     // both 16-byte aligned by mica-domain.ld
        b.hs    2f
        stp     xzr, xzr, [x9], #16
        b       1b
    2:  adrp    x9, __mica_rt_boot_stack_top
        add     x9, x9, :lo12:__mica_rt_boot_stack_top
        mov     sp, x9
        mov     x29, xzr
        mov     x30, xzr
        mov     x0, x19
        mov     x1, x20
        mov     x2, x21
        mov     x3, x22
        bl      mica_main
    3:  wfe
        b       3b

        .section .bss.mica_rt_boot_stack, "aw", %nobits
        .balign 16
        .space  {stack}
    __mica_rt_boot_stack_top:
    "#,
        stack = const BOOT_STACK_SIZE,
    );

    static ARG: AtomicU64 = AtomicU64::new(0);
    static RAM_BASE: AtomicU64 = AtomicU64::new(0);
    static RAM_SIZE: AtomicU64 = AtomicU64::new(0);
    static BOOT_PAGE: AtomicU64 = AtomicU64::new(0);

    /// Records `info`, sets up the heap and runs the domain's `main` on vCPU 0. Called once,
    /// by the `mica_main` that [`crate::entry!`] defines.
    pub fn run(main: fn(BootInfo) -> !, info: BootInfo) -> ! {
        ARG.store(info.arg, Ordering::Relaxed);
        RAM_BASE.store(info.ram_base, Ordering::Relaxed);
        BOOT_PAGE.store(info.boot_page, Ordering::Relaxed);
        RAM_SIZE.store(info.ram_size, Ordering::Release);
        #[cfg(feature = "heap")]
        crate::heap::init();
        main(info)
    }

    /// What vCPU 0 was started with (all zero before [`run`]).
    pub fn boot_info() -> BootInfo {
        BootInfo {
            ram_size: RAM_SIZE.load(Ordering::Acquire),
            arg: ARG.load(Ordering::Relaxed),
            ram_base: RAM_BASE.load(Ordering::Relaxed),
            boot_page: BOOT_PAGE.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_info_ranges() {
        let info = BootInfo {
            arg: 0,
            ram_base: 0x4000_0000,
            ram_size: 1 << 20,
            boot_page: 0x4010_0000,
        };
        assert_eq!(info.ram_end(), 0x4010_0000);
        assert!(info.in_ram(0x4000_0000));
        assert!(info.in_ram(0x400F_FFFF));
        assert!(!info.in_ram(0x4010_0000));
        assert!(!info.in_ram(0x8000_0000));
        assert_eq!(info.arg_or(5), 5);
        assert_eq!(BootInfo { arg: 3, ..info }.arg_or(5), 3);
        let wrapping = BootInfo {
            arg: 0,
            ram_base: u64::MAX - 1,
            ram_size: 16,
            boot_page: 0,
        };
        assert_eq!(wrapping.ram_end(), u64::MAX);
    }
}
