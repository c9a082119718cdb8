//! `nullbench`: the peer-comparison guest — one source, built for Mica or for Xen.
//!
//! `mica bench-xen` boots this guest alone as a Mica domain and as a Xen dom0less domain
//! under the same QEMU machine and `-icount shift=0,sleep=off` (1 virtual ns per executed
//! instruction), and compares what each hypervisor costs it (docs/PERFORMANCE.md, "Mica
//! against Xen"). It uses no runtime (`mica-rt` is Mica's own), so that the code timed is the
//! same on both: only the hypercall instruction, the null call and the console differ, chosen
//! by the cargo feature `xen`:
//!
//! | | Mica (default) | Xen (`--features xen`) |
//! | --- | --- | --- |
//! | loaded as | ELF (`mica build`) | arm64 Image (the same bytes, flattened by `mica bench-xen`) |
//! | null hypercall | `whoami`: `hvc #0`, x0 = function id | `xen_version(XENVER_version)`: `hvc #0xEA1`, x16 = 17, x0 = 0 |
//! | console | `console_write` hypercalls | the emulated SBSA/PL011 UART (`vpl011`) at `0x2200_0000` |
//!
//! Its first instruction (the Image header's branch) is at IPA `0x4000_0000` under both; the
//! second reads the physical counter `CNTPCT_EL0`, which counts from machine start (virtual
//! time 0) and which both hypervisors let EL1 read (`CNTHCTL_EL2.EL1PCTEN`). Each figure is
//! then measured before anything is printed, and printed as `mica bench` lines:
//! `bench: NAME: median M ns, min A ns, max B ns, N iterations` for `boot` (machine start →
//! first instruction, one sample), `counter-read` (two readings back to back) and
//! `null-hypercall`, each over [`ITERATIONS`] after [`WARMUP`] uncounted ones. Then
//! `bench: done (nullbench)` and PSCI `SYSTEM_OFF`.
#![no_std]
#![no_main]

use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};

/// Counted iterations of each repeated measurement.
const ITERATIONS: usize = 1000;
/// Iterations run before counting.
const WARMUP: usize = 16;
/// Bytes of stack (in BSS).
const STACK_SIZE: usize = 16 * 1024;
/// PSCI `SYSTEM_OFF` (both hypervisors emulate PSCI over `hvc #0`).
const PSCI_SYSTEM_OFF: u64 = 0x8400_0008;

/// The counter at the second instruction, stored by the entry code before BSS is cleared (it
/// lives in `.data`).
#[no_mangle]
static NULLBENCH_BOOT_STAMP: AtomicU64 = AtomicU64::new(u64::MAX);

core::arch::global_asm!(
    r#"
    .section .text.header, "ax"
    .global nullbench_header
nullbench_header:
    b       nullbench_entry             // code0: the first instruction either hypervisor runs
    .long   0                           // code1
    .quad   0                           // text_offset: at the RAM base itself
    .quad   __nullbench_image_size      // image_size, BSS included
    .quad   0x2                         // flags: little-endian, 4 KiB pages, not relocatable
    .quad   0, 0, 0                     // res2-res4
    .ascii  "ARM\x64"                   // the arm64 Image magic
    .long   0                           // res5

nullbench_entry:
    mrs     x9, cntpct_el0              // machine start -> here: the boot figure
    adrp    x10, {stamp}
    str     x9, [x10, :lo12:{stamp}]
    mov     x9, #(3 << 20)              // CPACR_EL1.FPEN = 0b11: no FP/SIMD traps
    msr     cpacr_el1, x9
    isb
    adrp    x9, __nullbench_bss_start
    add     x9, x9, :lo12:__nullbench_bss_start
    adrp    x10, __nullbench_bss_end
    add     x10, x10, :lo12:__nullbench_bss_end
1:  cmp     x9, x10                     // both 16-byte aligned by nullbench.ld
    b.hs    2f
    stp     xzr, xzr, [x9], #16
    b       1b
2:  adrp    x9, nullbench_stack_top
    add     x9, x9, :lo12:nullbench_stack_top
    mov     sp, x9
    mov     x29, xzr
    mov     x30, xzr
    bl      nullbench_main
3:  wfi
    b       3b

    .section .bss.nullbench_stack, "aw", %nobits
    .balign 16
    .space  {stack}
nullbench_stack_top:
    "#,
    stamp = sym NULLBENCH_BOOT_STAMP,
    stack = const STACK_SIZE,
);

/// Mica: `whoami` is the null call; the console is the `console_write` hypercall.
#[cfg(not(feature = "xen"))]
mod hypervisor {
    use mica_abi::hypercall::{pack_console_bytes, Call, CONSOLE_WRITE_MAX};

    /// Which hypervisor this build is for.
    pub const NAME: &str = "mica";
    /// What the null hypercall is.
    pub const NULL_CALL: &str = "whoami (hvc #0)";

    /// `whoami`: the domain id, or the status the kernel refused it with.
    pub fn null_call() -> Result<u64, u64> {
        let (status, domain) = super::hvc0(Call::Whoami.function_id(), [0; 6]);
        if status == 0 {
            Ok(domain)
        } else {
            Err(status)
        }
    }

    /// Writes `bytes` with `console_write`, at most 40 at a time, resending what the kernel
    /// did not take; gives up on a refusal.
    pub fn write(mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let chunk = &bytes[..bytes.len().min(CONSOLE_WRITE_MAX)];
            let [b0, b1, b2, b3, b4] = pack_console_bytes(chunk);
            let (status, taken) = super::hvc0(
                Call::ConsoleWrite.function_id(),
                [chunk.len() as u64, b0, b1, b2, b3, b4],
            );
            match usize::try_from(taken) {
                Ok(n) if status == 0 && n > 0 => bytes = &bytes[n.min(chunk.len())..],
                _ => return,
            }
        }
    }
}

/// Xen: `xen_version(XENVER_version)` is the null call; the console is the `vpl011` UART.
#[cfg(feature = "xen")]
mod hypervisor {
    /// Which hypervisor this build is for.
    pub const NAME: &str = "xen";
    /// What the null hypercall is.
    pub const NULL_CALL: &str = "xen_version(XENVER_version) (hvc #0xEA1)";

    /// `__HYPERVISOR_xen_version` (xen/include/public/xen.h).
    const HYPERVISOR_XEN_VERSION: u64 = 17;
    /// `XENVER_version` (xen/include/public/version.h): answers `major << 16 | minor`.
    const XENVER_VERSION: u64 = 0;
    /// The emulated PL011 of a dom0less domain with `vpl011` (GUEST_PL011_BASE).
    const UART_BASE: usize = 0x2200_0000;
    /// UARTDR: data register.
    const UARTDR: usize = 0x000;
    /// UARTFR: flag register.
    const UARTFR: usize = 0x018;
    /// UARTFR.TXFF: transmit FIFO full.
    const TXFF: u32 = 1 << 5;

    /// `xen_version(XENVER_version, NULL)`: the version, or the negative errno as a u64.
    pub fn null_call() -> Result<u64, u64> {
        let result: u64;
        // SAFETY: Xen's arm64 hypercall ABI: `hvc #0xEA1`, number in x16, arguments in
        // x0-x4, result in x0; a debug build may clobber x1-x4 and x16, so all are declared.
        // XENVER_version reads and writes no guest memory (its argument is NULL).
        unsafe {
            core::arch::asm!(
                "hvc #0xea1",
                inout("x0") XENVER_VERSION => result,
                inout("x1") 0u64 => _,
                inout("x2") 0u64 => _,
                inout("x3") 0u64 => _,
                inout("x4") 0u64 => _,
                inout("x16") HYPERVISOR_XEN_VERSION => _,
                options(nostack),
            );
        }
        if (result as i64) < 0 {
            Err(result)
        } else {
            Ok(result)
        }
    }

    /// Writes `bytes` to the UART, waiting while its FIFO is full.
    pub fn write(bytes: &[u8]) {
        let fr = (UART_BASE + UARTFR) as *const u32;
        let dr = (UART_BASE + UARTDR) as *mut u32;
        for &byte in bytes {
            // SAFETY: the domain node `mica bench-xen` writes has `vpl011`, so Xen emulates
            // a PL011 at UART_BASE (trapped MMIO; nothing else lives there); the MMU is off,
            // so these are its physical addresses, and 32-bit accesses are what it expects.
            unsafe {
                while core::ptr::read_volatile(fr) & TXFF != 0 {}
                core::ptr::write_volatile(dr, u32::from(byte));
            }
        }
    }
}

/// `hvc #0` with the SMCCC register convention (function id in x0, arguments in x1-x6):
/// Mica's hypercalls, and PSCI under both hypervisors. Returns x0 and x1.
fn hvc0(function: u64, args: [u64; 6]) -> (u64, u64) {
    let (x0, x1): (u64, u64);
    // SAFETY: the hypervisor returns to the next instruction with SP preserved; it may write
    // x0-x17 (SMCCC 1.0), all declared. The calls used (whoami, console_write, PSCI
    // SYSTEM_OFF) touch no guest memory beyond what they are given in registers.
    unsafe {
        core::arch::asm!(
            "hvc #0",
            inout("x0") function => x0,
            inout("x1") args[0] => x1,
            inout("x2") args[1] => _,
            inout("x3") args[2] => _,
            inout("x4") args[3] => _,
            inout("x5") args[4] => _,
            inout("x6") args[5] => _,
            out("x7") _, out("x8") _, out("x9") _, out("x10") _, out("x11") _,
            out("x12") _, out("x13") _, out("x14") _, out("x15") _, out("x16") _,
            out("x17") _,
            options(nostack),
        );
    }
    (x0, x1)
}

/// Reads the physical counter (after an `isb`, so earlier instructions have completed).
fn now() -> u64 {
    let ticks: u64;
    // SAFETY: reading CNTPCT_EL0 has no side effects; both hypervisors let EL1 read it.
    unsafe {
        core::arch::asm!(
            "isb",
            "mrs {t}, cntpct_el0",
            t = out(reg) ticks,
            options(nomem, nostack, preserves_flags)
        );
    }
    ticks
}

/// The counter's frequency (`CNTFRQ_EL0`, set by the machine; 62.5 MHz on QEMU `virt`).
fn counter_hz() -> u64 {
    let hz: u64;
    // SAFETY: reading CNTFRQ_EL0 has no side effects and is allowed at EL1.
    unsafe {
        core::arch::asm!(
            "mrs {f}, cntfrq_el0",
            f = out(reg) hz,
            options(nomem, nostack, preserves_flags)
        );
    }
    hz
}

/// Counter ticks as nanoseconds.
fn ns(ticks: u64, hz: u64) -> u64 {
    (u128::from(ticks) * 1_000_000_000 / u128::from(hz.max(1))) as u64
}

/// One line of console output, sent whole when it ends.
struct Line {
    buf: [u8; 160],
    len: usize,
}

impl Line {
    const fn new() -> Line {
        Line {
            buf: [0; 160],
            len: 0,
        }
    }

    /// Sends the line with a newline.
    fn end(&mut self) {
        let _ = self.write_str("\n");
        hypervisor::write(&self.buf[..self.len]);
        self.len = 0;
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for &byte in s.as_bytes() {
            if self.len == self.buf.len() {
                hypervisor::write(&self.buf[..self.len]);
                self.len = 0;
            }
            self.buf[self.len] = byte;
            self.len += 1;
        }
        Ok(())
    }
}

/// Prints one line.
macro_rules! println {
    ($($arg:tt)*) => {{
        let mut line = Line::new();
        let _ = write!(line, $($arg)*);
        line.end();
    }};
}

/// The samples of one measurement, in counter ticks.
struct Samples {
    ticks: [u32; ITERATIONS],
    len: usize,
}

impl Samples {
    const fn new() -> Samples {
        Samples {
            ticks: [0; ITERATIONS],
            len: 0,
        }
    }

    fn push(&mut self, ticks: u64) {
        if self.len < ITERATIONS {
            self.ticks[self.len] = u32::try_from(ticks).unwrap_or(u32::MAX);
            self.len += 1;
        }
    }

    /// Median (upper middle), minimum and maximum, in ticks; sorts the samples.
    fn summary(&mut self) -> Summary {
        let s = &mut self.ticks[..self.len];
        s.sort_unstable();
        match (s.first(), s.last()) {
            (Some(&min), Some(&max)) => Summary {
                median: u64::from(s[s.len() / 2]),
                min: u64::from(min),
                max: u64::from(max),
                iterations: s.len(),
            },
            _ => Summary::default(),
        }
    }
}

/// What one measurement printed: counter ticks and how many samples.
#[derive(Clone, Copy, Default)]
struct Summary {
    median: u64,
    min: u64,
    max: u64,
    iterations: usize,
}

impl Summary {
    fn single(ticks: u64) -> Summary {
        Summary {
            median: ticks,
            min: ticks,
            max: ticks,
            iterations: 1,
        }
    }

    /// Prints `bench: NAME: median M ns, min A ns, max B ns, N iterations`.
    fn report(&self, name: &str, hz: u64) {
        println!(
            "bench: {name}: median {} ns, min {} ns, max {} ns, {} iterations",
            ns(self.median, hz),
            ns(self.min, hz),
            ns(self.max, hz),
            self.iterations
        );
    }
}

/// Times `body` `WARMUP + ITERATIONS` times, counting the last `ITERATIONS`.
fn time(mut body: impl FnMut()) -> Summary {
    let mut samples = Samples::new();
    for i in 0..WARMUP + ITERATIONS {
        let t0 = now();
        body();
        let t1 = now();
        if i >= WARMUP {
            samples.push(t1.wrapping_sub(t0));
        }
    }
    samples.summary()
}

/// Ends the run: PSCI `SYSTEM_OFF` (the domain ends), or WFI if that returns.
fn power_off() -> ! {
    let _ = hvc0(PSCI_SYSTEM_OFF, [0; 6]);
    loop {
        // SAFETY: WFI only waits for an interrupt or event.
        unsafe { core::arch::asm!("wfi", options(nomem, nostack, preserves_flags)) };
    }
}

/// Called by the entry code on the boot stack: measures everything, then prints it.
#[no_mangle]
extern "C" fn nullbench_main() -> ! {
    let boot = Summary::single(NULLBENCH_BOOT_STAMP.load(Ordering::Relaxed));
    let hz = counter_hz();
    let answer = hypervisor::null_call();
    let (counter_read, null_hypercall) = match answer {
        Ok(_) => (
            time(|| {}),
            time(|| {
                let _ = hypervisor::null_call();
            }),
        ),
        Err(status) => {
            println!(
                "bench: FAILED: the null hypercall {} was refused ({status:#x})",
                hypervisor::NULL_CALL
            );
            power_off()
        }
    };
    println!(
        "bench: nullbench on {}: null hypercall {} answered {:#x}; counter at {hz} Hz",
        hypervisor::NAME,
        hypervisor::NULL_CALL,
        answer.unwrap_or_default()
    );
    boot.report("boot", hz);
    counter_read.report("counter-read", hz);
    null_hypercall.report("null-hypercall", hz);
    println!("bench: done (nullbench)");
    power_off()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    println!("bench: FAILED: panic: {}", info.message());
    power_off()
}
