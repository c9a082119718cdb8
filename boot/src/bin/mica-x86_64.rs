//! `mica-x86_64`: the Mica hypervisor for x86_64 (AMD SVM) — not yet bootable.
//!
//! Linked and linted in CI so the x86 side of the HAL boundary keeps compiling; the PVH
//! entry that would make QEMU boot it is future work (see `docs/architecture.md`). If
//! something does jump to `_start`, it says so on COM1 and halts.
#![no_std]
#![no_main]

/// Entry point: report and halt.
#[no_mangle]
extern "C" fn _start() -> ! {
    mica_hal_x86::serial::write("mica-x86_64: x86_64 bring-up is not implemented yet; halting\n");
    halt()
}

fn halt() -> ! {
    loop {
        // SAFETY: `cli; hlt` only stops this CPU.
        unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    mica_hal_x86::serial::write("mica-x86_64: panic\n");
    halt()
}
