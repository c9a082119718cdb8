//! Interrupts at EL1: one handler per domain, IRQ masking, waiting.
//!
//! The runtime's vector for an IRQ taken at EL1 on SP_EL1 (`exception.rs`) saves every
//! general-purpose and FP/SIMD register, ELR/SPSR_EL1 and FPCR/FPSR on the interrupted stack,
//! calls the handler registered with [`set_handler`], restores everything and returns with
//! `eret`. The handler runs with IRQs masked; it acknowledges and ends interrupts itself (for
//! the virtual GICv3 with [`crate::gic::acknowledge`] and [`crate::gic::end_of_interrupt`]).
//! Without a handler an IRQ is reported like any other unexpected exception and ends the
//! domain.

use core::sync::atomic::{AtomicPtr, Ordering};

core::arch::global_asm!(
    r#"
    .section .text.mica_rt_irq, "ax"
    .balign 4
    .global __mica_rt_irq
__mica_rt_irq:
    sub     sp, sp, #800
    stp     x0, x1, [sp, #0]
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    str     x30, [sp, #240]
    mrs     x0, elr_el1
    mrs     x1, spsr_el1
    stp     x0, x1, [sp, #256]
    mrs     x0, fpcr
    mrs     x1, fpsr
    stp     x0, x1, [sp, #272]
    add     x0, sp, #288
    stp     q0, q1, [x0, #0]
    stp     q2, q3, [x0, #32]
    stp     q4, q5, [x0, #64]
    stp     q6, q7, [x0, #96]
    stp     q8, q9, [x0, #128]
    stp     q10, q11, [x0, #160]
    stp     q12, q13, [x0, #192]
    stp     q14, q15, [x0, #224]
    stp     q16, q17, [x0, #256]
    stp     q18, q19, [x0, #288]
    stp     q20, q21, [x0, #320]
    stp     q22, q23, [x0, #352]
    stp     q24, q25, [x0, #384]
    stp     q26, q27, [x0, #416]
    stp     q28, q29, [x0, #448]
    stp     q30, q31, [x0, #480]
    bl      mica_rt_irq
    add     x0, sp, #288
    ldp     q0, q1, [x0, #0]
    ldp     q2, q3, [x0, #32]
    ldp     q4, q5, [x0, #64]
    ldp     q6, q7, [x0, #96]
    ldp     q8, q9, [x0, #128]
    ldp     q10, q11, [x0, #160]
    ldp     q12, q13, [x0, #192]
    ldp     q14, q15, [x0, #224]
    ldp     q16, q17, [x0, #256]
    ldp     q18, q19, [x0, #288]
    ldp     q20, q21, [x0, #320]
    ldp     q22, q23, [x0, #352]
    ldp     q24, q25, [x0, #384]
    ldp     q26, q27, [x0, #416]
    ldp     q28, q29, [x0, #448]
    ldp     q30, q31, [x0, #480]
    ldp     x0, x1, [sp, #272]
    msr     fpcr, x0
    msr     fpsr, x1
    ldp     x0, x1, [sp, #256]
    msr     elr_el1, x0
    msr     spsr_el1, x1
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x19, [sp, #144]
    ldp     x20, x21, [sp, #160]
    ldp     x22, x23, [sp, #176]
    ldp     x24, x25, [sp, #192]
    ldp     x26, x27, [sp, #208]
    ldp     x28, x29, [sp, #224]
    ldr     x30, [sp, #240]
    ldp     x0, x1, [sp, #0]
    add     sp, sp, #800
    eret
"#
);

/// The registered handler (null: none).
static HANDLER: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// Makes `handler` the domain's IRQ handler (for every vCPU). It is called with IRQs
/// masked for each IRQ exception and must acknowledge what it handles.
pub fn set_handler(handler: fn()) {
    HANDLER.store(handler as *mut (), Ordering::Release);
}

/// Called by `__mica_rt_irq` with every register saved.
#[no_mangle]
extern "C" fn mica_rt_irq() {
    let handler = HANDLER.load(Ordering::Acquire);
    if handler.is_null() {
        let esr: u64;
        let elr: u64;
        // SAFETY: reading EL1 syndrome registers has no side effects.
        unsafe {
            core::arch::asm!("mrs {0}, esr_el1", "mrs {1}, elr_el1", out(reg) esr, out(reg) elr,
                options(nomem, nostack, preserves_flags));
        }
        crate::exception::mica_rt_exception(5, esr, elr, 0);
    }
    // SAFETY: the only non-null value ever stored in `HANDLER` is a `fn()` cast to a pointer
    // by `set_handler`; function and data pointers have the same size and representation on
    // aarch64, so casting it back gives that function.
    let handler: fn() = unsafe { core::mem::transmute::<*mut (), fn()>(handler) };
    handler();
}

/// Unmasks IRQs on this vCPU (PSTATE.I = 0).
#[inline]
pub fn enable() {
    // SAFETY: clearing PSTATE.I only lets IRQs be taken; the vector for them is installed
    // by `_start` (and by every secondary vCPU's start) before `main` runs.
    unsafe { core::arch::asm!("msr daifclr, #2", options(nostack, preserves_flags)) };
}

/// Masks IRQs on this vCPU (PSTATE.I = 1).
#[inline]
pub fn disable() {
    // SAFETY: setting PSTATE.I only defers IRQs.
    unsafe { core::arch::asm!("msr daifset, #2", options(nostack, preserves_flags)) };
}

/// Waits for an interrupt (WFI): returns when one is pending, even with IRQs masked (it is
/// then taken once they are unmasked). Under Mica the vCPU gives up its CPU meanwhile.
#[inline]
pub fn wait() {
    // SAFETY: WFI only suspends the vCPU until an interrupt or event.
    unsafe { core::arch::asm!("wfi", options(nostack, preserves_flags)) };
}

/// Runs `f` with IRQs masked, then unmasks them.
pub fn masked<T>(f: impl FnOnce() -> T) -> T {
    disable();
    let value = f();
    enable();
    value
}
