//! The hypervisor console: formatted lines to the PL011, safe to use from any CPU and
//! from the exception path.
//!
//! Lines from different CPUs never interleave: a line is written under a lock that
//! records its holder. If the holder itself re-enters (an exception while printing), it
//! writes without waiting, so a fault report is never lost to a deadlock.
//!
//! What the kernel prints while it holds the kernel lock (its log, domains' console lines)
//! is only queued ([`queue`]): the UART is slow, and no CPU may wait for it while holding the
//! lock every other CPU needs. Each CPU [`drain`]s the queue after letting go of the lock;
//! a full queue drops bytes and says how many. Boot and fault reports print directly, after
//! draining, so they keep their order.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

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

/// Bytes of kernel output waiting for the UART.
/// Writes one line straight to the PL011 at `base`, without the lock, the queue or knowing
/// which CPU this is (that needs EL2): for the report of a boot at the wrong exception level,
/// when nothing else runs.
pub fn early_line(base: usize, line: fmt::Arguments<'_>) {
    // SAFETY: `base` is a PL011's register frame (from the device tree, or QEMU virt's), and
    // with the MMU off it is accessed as Device memory; only this CPU runs.
    let mut uart = unsafe { Pl011::new(base) };
    uart.enable();
    let mut w = Writer(uart);
    let _ = w.write_fmt(line);
    let _ = w.write_str("\n");
}

const QUEUE_BYTES: usize = 16 * 1024;

/// Kernel output waiting for the UART: a ring of bytes.
struct Queue {
    bytes: [u8; QUEUE_BYTES],
    /// Index of the oldest byte.
    head: usize,
    /// Bytes waiting.
    len: usize,
    /// Bytes dropped because the ring was full, not yet reported.
    dropped: u64,
}

static QUEUED: spin::Mutex<Queue> = spin::Mutex::new(Queue {
    bytes: [0; QUEUE_BYTES],
    head: 0,
    len: 0,
    dropped: 0,
});

/// Set while a CPU is writing queued bytes to the UART.
static DRAINING: AtomicBool = AtomicBool::new(false);
/// Whether anything is queued (or was dropped): the check every CPU makes after each exit,
/// one load when there is nothing to do.
static PENDING: AtomicBool = AtomicBool::new(false);

/// Takes the queue's lock (held for a few byte copies only), yielding between attempts (see
/// `hal::lock_kernel` for why a CPU must not spin without `YIELD` under QEMU's `-icount`).
fn lock_queue() -> spin::MutexGuard<'static, Queue> {
    loop {
        if let Some(q) = QUEUED.try_lock() {
            return q;
        }
        super::sysreg::cpu_yield();
    }
}

/// Queues `bytes` (already formatted lines) for the UART; see the module documentation.
pub fn queue(bytes: &[u8]) {
    let mut q = lock_queue();
    for &b in bytes {
        if q.len == QUEUE_BYTES {
            q.dropped += 1;
            continue;
        }
        let at = (q.head + q.len) % QUEUE_BYTES;
        q.bytes[at] = b;
        q.len += 1;
    }
    PENDING.store(true, Ordering::Release);
}

/// Writes whatever is queued to the UART, unless another CPU is at it already. Called with
/// no kernel lock held.
pub fn drain() {
    drain_with(|| Some(lock_queue()));
}

/// Writes what is queued, then `args` and a newline as one line. From the exception path
/// too: if this CPU was interrupted while it held the queue, the queue waits for later.
pub fn print_line(args: fmt::Arguments<'_>) {
    drain_with(|| QUEUED.try_lock());
    with_writer(|w| {
        let _ = w.write_fmt(args);
        let _ = w.write_str("\n");
    });
}

fn drain_with(mut lock: impl FnMut() -> Option<spin::MutexGuard<'static, Queue>>) {
    if !PENDING.load(Ordering::Acquire) || DRAINING.swap(true, Ordering::Acquire) {
        return;
    }
    // One hold of the UART for everything queued: the queue holds whole lines (each `queue`
    // call appends one or more, under its lock), so no other CPU's line lands inside one.
    with_writer(|w| loop {
        let mut chunk = [0u8; 128];
        let (n, dropped) = {
            let Some(mut q) = lock() else {
                break;
            };
            let n = q.len.min(chunk.len());
            for (i, c) in chunk.iter_mut().take(n).enumerate() {
                *c = q.bytes[(q.head + i) % QUEUE_BYTES];
            }
            q.head = (q.head + n) % QUEUE_BYTES;
            q.len -= n;
            if q.len == 0 {
                // Under the queue's lock: a `queue` after this sets it again.
                PENDING.store(false, Ordering::Release);
            }
            (n, core::mem::take(&mut q.dropped))
        };
        if dropped > 0 {
            let _ = writeln!(w, "mica: console: {dropped} bytes dropped (queue full)");
        }
        if n == 0 {
            break;
        }
        for &b in &chunk[..n] {
            if b == b'\n' {
                w.0.put(b'\r');
            }
            w.0.put(b);
        }
    });
    DRAINING.store(false, Ordering::Release);
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
