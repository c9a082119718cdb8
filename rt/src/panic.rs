//! The panic handler (feature `panic-handler`): one line on the console, then the domain ends.

use crate::console;
use core::fmt::Write;

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    // Not the shared console: the panicking code may hold its lock.
    let mut out = console::emergency();
    match info.location() {
        Some(at) => {
            let _ = writeln!(out, "panic: {} at {at}", info.message());
        }
        None => {
            let _ = writeln!(out, "panic: {}", info.message());
        }
    }
    crate::exit()
}
