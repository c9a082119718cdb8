//! EL2 exception dispatch: interrupts go to their handlers; anything else is reported in
//! words and halts the CPU it happened on.

use super::{cpu, gic};
use crate::esr;

/// The registers the vector code saves (layout shared with `entry.rs`).
#[repr(C)]
pub struct TrapFrame {
    /// x0-x30.
    pub x: [u64; 31],
    /// ELR_EL2.
    pub elr: u64,
    /// SPSR_EL2.
    pub spsr: u64,
    _pad: u64,
}

const _: () = assert!(core::mem::size_of::<TrapFrame>() == 272);

/// The vector entries a guest's exceptions arrive at (Arm ARM D1.10.2: the third group of
/// four, "lower EL using AArch64").
pub mod vector {
    /// Synchronous exception from a lower EL (AArch64).
    pub const LOWER_SYNC: u64 = 8;
    /// IRQ from a lower EL (AArch64).
    pub const LOWER_IRQ: u64 = 9;
    /// FIQ from a lower EL (AArch64).
    pub const LOWER_FIQ: u64 = 10;
    /// SError from a lower EL (AArch64).
    pub const LOWER_SERROR: u64 = 11;
}

/// Vector indices (Arm ARM D1.10.2): 4 groups of sync/IRQ/FIQ/SError.
const KIND_NAMES: [&str; 4] = ["synchronous", "IRQ", "FIQ", "SError"];
const ORIGIN_NAMES: [&str; 4] = [
    "EL2 with SP_EL0",
    "EL2",
    "a lower EL (AArch64)",
    "a lower EL (AArch32)",
];

/// Called by the vector code with the vector index and the saved registers.
#[no_mangle]
extern "C" fn mica_el2_trap(kind: u64, frame: &mut TrapFrame) {
    match kind {
        // IRQ taken at EL2 (the idle loop).
        5 => handle_irqs(),
        _ => report_and_halt(kind, frame),
    }
}

/// Acknowledges and handles every pending physical interrupt.
pub fn handle_irqs() {
    while let Some(intid) = gic::acknowledge() {
        if super::irq::on_interrupt(intid) {
            gic::end_of_interrupt(intid);
        } else {
            // Forwarded to a guest as a hardware-linked virtual interrupt: the guest's EOI
            // deactivates it.
            gic::priority_drop(intid);
        }
    }
}

fn report_and_halt(kind: u64, frame: &TrapFrame) -> ! {
    let esr: u64 = super::sysreg::read_sysreg!("esr_el2");
    let far: u64 = super::sysreg::read_sysreg!("far_el2");
    let ec = esr::exception_class(esr);
    let k = (kind & 3) as usize;
    let origin = ORIGIN_NAMES[((kind >> 2) & 3) as usize];
    let me = cpu::current();
    crate::println!("");
    crate::println!(
        "EL2 exception on cpu {me}: {} exception from {origin}",
        KIND_NAMES[k]
    );
    if k == 0 {
        match esr::fault_status_name(esr) {
            Some(fault) => crate::println!(
                "  class {ec:#04x}: {} ({fault} on {})",
                esr::class_name(ec),
                if esr::is_write(esr) { "write" } else { "read" }
            ),
            None => crate::println!("  class {ec:#04x}: {}", esr::class_name(ec)),
        }
    }
    crate::println!(
        "  ESR_EL2 {esr:#018x}  ELR_EL2 {:#018x}  FAR_EL2 {far:#018x}",
        frame.elr
    );
    crate::println!(
        "  SPSR_EL2 {:#010x}  x0 {:#x}  x1 {:#x}  x30 {:#x}",
        frame.spsr,
        frame.x[0],
        frame.x[1],
        frame.x[30]
    );
    crate::println!("EL2 exception: halting cpu {me}");
    cpu::halt()
}
