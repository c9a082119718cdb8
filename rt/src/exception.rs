//! Exception vectors for EL1: any exception a domain takes is reported and ends it, except
//! an IRQ on SP_EL1, which goes to the handler the domain registered with
//! [`crate::irq::set_handler`] (`irq.rs`; without one it is reported like the rest).
//!
//! Domains run with interrupts masked and nothing that should trap to EL1, so any other EL1
//! exception means a bug (an undefined instruction, an alignment fault, a bad jump). The
//! report names the vector, ESR_EL1, ELR_EL1 and FAR_EL1; stage-2 faults never come here
//! (they go to the kernel, which stops the domain and reports them itself).

use crate::console;
use core::fmt::Write;

core::arch::global_asm!(
    r#"
    .section .text.mica_rt_vectors, "ax"
    .balign 2048
    .global __mica_rt_vectors
__mica_rt_vectors:
    .irp n, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
    .balign 128
    .if \n == 5
    b       __mica_rt_irq               // IRQ at EL1 on SP_EL1: the domain's handler (irq.rs)
    .else
    mov     x0, #\n
    b       __mica_rt_exception
    .endif
    .endr

__mica_rt_exception:
    mrs     x1, esr_el1
    mrs     x2, elr_el1
    mrs     x3, far_el1
    bl      mica_rt_exception
    b       .
"#
);

/// Vector names, in VBAR_EL1 order.
const VECTORS: [&str; 16] = [
    "synchronous (current EL, SP_EL0)",
    "IRQ (current EL, SP_EL0)",
    "FIQ (current EL, SP_EL0)",
    "SError (current EL, SP_EL0)",
    "synchronous",
    "IRQ",
    "FIQ",
    "SError",
    "synchronous (lower EL, AArch64)",
    "IRQ (lower EL, AArch64)",
    "FIQ (lower EL, AArch64)",
    "SError (lower EL, AArch64)",
    "synchronous (lower EL, AArch32)",
    "IRQ (lower EL, AArch32)",
    "FIQ (lower EL, AArch32)",
    "SError (lower EL, AArch32)",
];

/// Called from the vectors: prints one line and ends the domain.
#[no_mangle]
pub(crate) extern "C" fn mica_rt_exception(vector: u64, esr: u64, elr: u64, far: u64) -> ! {
    let name = VECTORS.get(vector as usize).copied().unwrap_or("unknown");
    let mut out = console::emergency();
    let _ = writeln!(
        out,
        "exception: {name} at elr {elr:#x} (esr {esr:#x}, far {far:#x}); ending the domain"
    );
    crate::exit()
}
