//! `mica-aarch64`: the Mica hypervisor for aarch64 at EL2.
//!
//! Everything that runs lives in `mica-hal-arm` (entry, vectors, bring-up) and
//! `mica-kernel` (the arch-neutral core); this binary links them with the linker script
//! (`src/arch/aarch64.ld`) and routes panics to the kernel's fatal-error path. `mica image`
//! turns the ELF into the arm64 `Image` that boot loaders load.
#![no_std]
#![no_main]

// The entry point `_start` and everything it calls come from the HAL.
use mica_hal_arm as _;

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    mica_hal_arm::aarch64::boot::panic(info)
}
