//! The hypervisor console: formatted lines to the PL011, safe to use from any CPU and
//! from the exception path.
//!
//! Lines from different CPUs never interleave: a line is written under a lock that
//! records its holder. If the holder itself re-enters (an exception while printing), it
//! writes without waiting, so a fault report is never lost to a deadlock.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicUsize, Ordering};

use super::pl011::Pl011;

static UART: AtomicUsize = AtomicUsize::new(0);
/// 0 = free, otherwise the holding CPU's index + 1.
static LOCK: AtomicUsize = AtomicUsize::new(0);

/// Directs the console to the PL011 at `base` (mapped as device memory).
pub fn init(base: usize) {
    // SAFETY: the caller mapped `base` as device memory and it is the platform's PL011;
    // only this module drives it afterwards.
    let mut uart = unsafe { Pl011::new(base) };
    uart.enable();
    UART.store(base, Ordering::Release);
}

struct Writer(Pl011);

impl Write for Writer {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.0.put(b'\r');
            }
            self.0.put(b);
        }
        Ok(())
    }
}

/// Runs `f` with the UART, under the console lock (or without waiting if this CPU already
/// holds it: an exception while printing must still be reported).
fn with_writer(f: impl FnOnce(&mut Writer)) {
    let base = UART.load(Ordering::Acquire);
    if base == 0 {
        return;
    }
    let me = super::cpu::current() + 1;
    let reentered = LOCK.load(Ordering::Relaxed) == me;
    if !reentered {
        while LOCK
            .compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
    }
    // SAFETY: `base` was registered by `init` as this platform's mapped PL011, and the lock
    // (or re-entry by its holder, which has stopped using its own writer) makes this the only
    // writer.
    let mut w = Writer(unsafe { Pl011::new(base) });
    f(&mut w);
    if !reentered {
        LOCK.store(0, Ordering::Release);
    }
}

/// Prints `args` and a newline as one line.
pub fn print_line(args: fmt::Arguments<'_>) {
    with_writer(|w| {
        let _ = w.write_fmt(args);
        let _ = w.write_str("\n");
    });
}

/// Writes raw bytes (already formatted lines) to the console under the lock.
pub fn write_bytes(bytes: &[u8]) {
    with_writer(|w| {
        for &b in bytes {
            if b == b'\n' {
                w.0.put(b'\r');
            }
            w.0.put(b);
        }
    });
}

/// Prints a formatted line on the hypervisor console.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => { $crate::aarch64::console::print_line(format_args!($($arg)*)) };
}
