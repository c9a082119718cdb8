//! Starting a domain's other vCPUs with PSCI CPU_ON, each on a stack of its own.
//!
//! CPU_ON starts the target at an IPA with only x0 (the context id) set, MMU off and SP
//! undefined. [`start_vcpu`] passes the address of a [`VcpuStack`]'s header as the context;
//! `__mica_rt_secondary_start` (assembly) enables FP/SIMD, installs the runtime's vectors,
//! takes the stack top from the header and calls the Rust entry the header names.
//!
//! A `VcpuStack` is handed out once: a vCPU that stopped (CPU_OFF) may still be between its
//! last instruction and the kernel noticing, so its stack is never reused.

use crate::psci;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

core::arch::global_asm!(
    r#"
    .section .text.mica_rt_secondary, "ax"
    .global __mica_rt_secondary_start
    .balign 4
__mica_rt_secondary_start:
    mov     x9, #(3 << 20)                  // CPACR_EL1.FPEN = 0b11
    msr     cpacr_el1, x9
    adrp    x9, __mica_rt_vectors
    add     x9, x9, :lo12:__mica_rt_vectors
    msr     vbar_el1, x9
    isb
    ldr     x9, [x0]                        // VcpuStackHeader::stack_top
    mov     sp, x9
    mov     x29, xzr
    mov     x30, xzr
    bl      mica_rt_secondary_main          // x0 = the header
1:  wfe
    b       1b
"#
);

extern "C" {
    fn __mica_rt_secondary_start();
}

/// What a starting vCPU reads: its stack top (first: the assembly loads it), what to run.
#[repr(C)]
struct Header {
    stack_top: u64,
    entry: Option<fn(u64) -> !>,
    arg: u64,
}

/// A stack of `N` bytes for one further vCPU, declared as a `static`.
#[repr(C, align(16))]
pub struct VcpuStack<const N: usize> {
    memory: UnsafeCell<[u8; N]>,
    header: UnsafeCell<Header>,
    taken: AtomicBool,
}

// SAFETY: `memory` and `header` are written only by the one `start_vcpu` that wins `taken`,
// before CPU_ON; afterwards only the started vCPU uses them.
unsafe impl<const N: usize> Sync for VcpuStack<N> {}

impl<const N: usize> VcpuStack<N> {
    /// A fresh stack (all zero, so it lives in BSS).
    #[allow(clippy::new_without_default)]
    pub const fn new() -> VcpuStack<N> {
        VcpuStack {
            memory: UnsafeCell::new([0; N]),
            header: UnsafeCell::new(Header {
                stack_top: 0,
                entry: None,
                arg: 0,
            }),
            taken: AtomicBool::new(false),
        }
    }
}

/// Why a vCPU was not started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartError {
    /// The stack was already given to a vCPU.
    StackInUse,
    /// PSCI CPU_ON refused.
    Psci(psci::Error),
}

impl core::fmt::Display for StartError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StartError::StackInUse => f.write_str("stack already in use"),
            StartError::Psci(e) => write!(f, "CPU_ON refused: {e}"),
        }
    }
}

/// Starts vCPU `target` (its index) running `entry(arg)` on `stack`.
pub fn start_vcpu<const N: usize>(
    target: u64,
    stack: &'static VcpuStack<N>,
    entry: fn(u64) -> !,
    arg: u64,
) -> Result<(), StartError> {
    if stack.taken.swap(true, Ordering::AcqRel) {
        return Err(StartError::StackInUse);
    }
    let top = (stack.memory.get() as u64 + N as u64) & !15;
    let header = stack.header.get();
    // SAFETY: winning `taken` makes this the only code touching the header until CPU_ON
    // below starts the vCPU that reads it; the hvc that issues CPU_ON is a full compiler
    // barrier (no `nomem`) and the kernel's world switch orders the stores before the
    // target runs.
    unsafe {
        header.write(Header {
            stack_top: top,
            entry: Some(entry),
            arg,
        });
    }
    let start = __mica_rt_secondary_start as *const () as u64;
    match psci::cpu_on(target, start, header as u64) {
        Ok(()) => Ok(()),
        Err(e) => {
            // The vCPU never started: the stack can be offered again.
            stack.taken.store(false, Ordering::Release);
            Err(StartError::Psci(e))
        }
    }
}

/// The Rust side of `__mica_rt_secondary_start`, on the new vCPU's own stack.
#[no_mangle]
extern "C" fn mica_rt_secondary_main(header: *const Header) -> ! {
    // SAFETY: `header` is the context id `start_vcpu` passed to CPU_ON: a `Header` inside a
    // `'static` `VcpuStack`, fully written before CPU_ON and not written again.
    let (entry, arg) = unsafe { ((*header).entry, (*header).arg) };
    match entry {
        Some(entry) => entry(arg),
        None => crate::exit(),
    }
}
