//! `hello`: the smallest Mica guest — it counts, then ends its domain.
//!
//! Built on `mica-rt`. Printing arrives with the console hypercall (issue 4), which
//! turns this into the guest the `two-guests` smoke scenario runs.
#![no_std]
#![no_main]

/// The domain's entry, called by `mica-rt` with a stack.
#[no_mangle]
extern "C" fn mica_main() -> ! {
    let mut count = 0u64;
    for i in 0..1000u64 {
        count = core::hint::black_box(count + i);
    }
    let _ = count;
    mica_rt::exit()
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    mica_rt::exit()
}
