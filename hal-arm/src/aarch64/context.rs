//! A vCPU's complete register state and the world switch that loads and saves it.
//!
//! The state is what an unmodified Linux kernel at EL1 needs preserved across a switch: the
//! general registers, PC and PSTATE, FP/SIMD, the EL1 system registers (translation, exception,
//! thread-pointer, timer and debug state), the virtual timer, the GIC virtual CPU interface
//! (list registers, VMCR, active priorities) and the per-vCPU EL2 view (VMPIDR_EL2, HCR_EL2).
//!
//! [`enter`] runs a vCPU until it traps: the general and FP registers are switched in assembly
//! (Rust code at EL2 uses the SIMD registers, so the guest's must be saved before any Rust code
//! runs), the system registers in Rust around it.

use core::arch::global_asm;
use core::sync::atomic::{AtomicPtr, Ordering};
use mica_kernel::hal::VcpuContext;

use super::cpu::MAX_CPUS;

use super::sysreg::{isb, read_sysreg, write_sysreg};

pub use super::el2::hcr::DC as HCR_DC;
pub use super::el2::HCR_GUEST;
/// SPSR for a vCPU's first instruction: EL1h, D/A/I/F masked.
pub const SPSR_EL1H_MASKED: u64 = 0x3C5;
/// SCTLR_EL1 at reset: RES1 bits, MMU and caches off.
pub const SCTLR_EL1_RESET: u64 = 0x30D0_0800;
/// Room for list registers per vCPU: the most a GICv3 has. Only the ones the GIC has
/// ([`super::el2::list_registers`]) are switched.
pub const LIST_REGISTERS: usize = crate::vgic::MAX_LIST_REGISTERS;

/// A vCPU's saved state. The first fields are laid out for the assembly below.
#[repr(C, align(16))]
#[derive(Clone)]
pub struct ArmContext {
    /// x0-x30 (offset 0).
    pub x: [u64; 31],
    /// Guest PC, ELR_EL2 (offset 248).
    pub pc: u64,
    /// Guest PSTATE, SPSR_EL2 (offset 256).
    pub pstate: u64,
    /// FPCR (offset 264).
    pub fpcr: u64,
    /// FPSR (offset 272).
    pub fpsr: u64,
    _pad: u64,
    /// q0-q31 (offset 288).
    pub q: [u128; 32],
    /// EL1 system registers, see [`El1`].
    pub el1: El1,
    /// Virtual GIC CPU interface.
    pub gic: GicState,
    /// VMPIDR_EL2.
    pub vmpidr: u64,
    /// HCR_EL2 while this vCPU runs.
    pub hcr: u64,
    /// CNTVOFF_EL2 while this vCPU runs: its domain's clock base in counter ticks (the same
    /// for every vCPU of the domain, so their virtual counters agree wherever they run).
    pub cntvoff: u64,
    /// The CPU whose registers still hold this context's EL1 and GIC CPU-interface state as
    /// saved here (see [`enter`]), or [`NOT_LOADED`].
    loaded_on: usize,
}

/// [`ArmContext`]'s `loaded_on` when no CPU's registers are known to match it.
const NOT_LOADED: usize = usize::MAX;

/// Per CPU: the context whose state it loaded last (null: none, or its registers changed
/// since). With the context's `loaded_on` naming this CPU, the registers still match the
/// saved copy, and entering the same vCPU again skips reloading them.
static LOADED: [AtomicPtr<ArmContext>; MAX_CPUS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_CPUS];

const _: () = assert!(core::mem::offset_of!(ArmContext, pc) == 248);
const _: () = assert!(core::mem::offset_of!(ArmContext, pstate) == 256);
const _: () = assert!(core::mem::offset_of!(ArmContext, fpcr) == 264);
const _: () = assert!(core::mem::offset_of!(ArmContext, q) == 288);

/// EL1 (and EL0) system registers of a vCPU.
#[derive(Clone, Default)]
#[repr(C)]
#[allow(missing_docs)]
pub struct El1 {
    pub sctlr: u64,
    pub ttbr0: u64,
    pub ttbr1: u64,
    pub tcr: u64,
    pub mair: u64,
    pub amair: u64,
    pub contextidr: u64,
    pub tpidr_el0: u64,
    pub tpidr_el1: u64,
    pub tpidrro_el0: u64,
    pub sp_el0: u64,
    pub sp_el1: u64,
    pub elr: u64,
    pub spsr: u64,
    pub vbar: u64,
    pub cpacr: u64,
    pub esr: u64,
    pub far: u64,
    pub afsr0: u64,
    pub afsr1: u64,
    pub par: u64,
    pub cntkctl: u64,
    pub mdscr: u64,
    pub csselr: u64,
    pub cntv_ctl: u64,
    pub cntv_cval: u64,
}

/// The GIC virtual CPU interface state of a vCPU.
#[derive(Clone, Default)]
#[repr(C)]
pub struct GicState {
    /// ICH_LR<n>_EL2.
    pub lr: [u64; LIST_REGISTERS],
    /// ICH_VMCR_EL2.
    pub vmcr: u64,
    /// ICH_AP0R<n>_EL2 (group 0 active priorities; as many as the priority bits need).
    pub ap0r: [u64; 4],
    /// ICH_AP1R<n>_EL2 (group 1 active priorities).
    pub ap1r: [u64; 4],
    /// ICH_HCR_EL2 to run with: En, plus UIE when the vGIC asked for an underflow
    /// maintenance interrupt (set before every entry from the fill of the list registers).
    pub hcr: u64,
}

impl ArmContext {
    /// A vCPU that has never run.
    pub const fn new() -> ArmContext {
        ArmContext {
            x: [0; 31],
            pc: 0,
            pstate: SPSR_EL1H_MASKED,
            fpcr: 0,
            fpsr: 0,
            _pad: 0,
            q: [0; 32],
            el1: El1 {
                sctlr: SCTLR_EL1_RESET,
                ttbr0: 0,
                ttbr1: 0,
                tcr: 0,
                mair: 0,
                amair: 0,
                contextidr: 0,
                tpidr_el0: 0,
                tpidr_el1: 0,
                tpidrro_el0: 0,
                sp_el0: 0,
                sp_el1: 0,
                elr: 0,
                spsr: 0,
                vbar: 0,
                cpacr: 0,
                esr: 0,
                far: 0,
                afsr0: 0,
                afsr1: 0,
                par: 0,
                cntkctl: 0,
                mdscr: 0,
                csselr: 0,
                cntv_ctl: 0,
                cntv_cval: 0,
            },
            gic: GicState {
                lr: [0; LIST_REGISTERS],
                vmcr: 0,
                ap0r: [0; 4],
                ap1r: [0; 4],
                hcr: crate::vgic::hcr::EN,
            },
            vmpidr: 1 << 31,
            hcr: HCR_GUEST,
            cntvoff: 0,
            loaded_on: NOT_LOADED,
        }
    }

    /// Software changed a saved EL1 register of this (stopped) vCPU: the next entry loads
    /// them all, wherever it runs.
    pub fn el1_changed(&mut self) {
        self.loaded_on = NOT_LOADED;
    }
}

/// This CPU's EL1 registers were changed by the hypervisor (an address translation writes
/// PAR_EL1): the next entry on it loads every register.
pub fn registers_changed(cpu: usize) {
    if let Some(loaded) = LOADED.get(cpu) {
        loaded.store(core::ptr::null_mut(), Ordering::Relaxed);
    }
}

impl Default for ArmContext {
    fn default() -> Self {
        Self::new()
    }
}

impl VcpuContext for ArmContext {
    fn reset(&mut self, entry: u64, regs: [u64; 4], index: u16, default_cacheable: bool) {
        *self = ArmContext::new();
        self.x[..4].copy_from_slice(&regs);
        self.pc = entry;
        // VMPIDR_EL2: RES1 bit 31, U = 0 (multiprocessor), Aff0 = the vCPU index (the
        // affinity the vGIC's redistributors report).
        self.vmpidr = crate::vgic::vmpidr(usize::from(index));
        self.hcr = HCR_GUEST | if default_cacheable { HCR_DC } else { 0 };
        // ICH_VMCR_EL2.VENG1 = 1, VPMR = 0xFF: group 1 on, every priority let through.
        self.gic.vmcr = (1 << 1) | (0xFF << 24);
    }

    fn set_result(&mut self, regs: [u64; 4]) {
        self.x[..4].copy_from_slice(&regs);
    }

    fn set_clock_base(&mut self, ns: u64) {
        self.cntvoff = super::sysreg::clock().ticks(ns);
    }

    fn timer_deadline_ns(&self) -> Option<u64> {
        // CNTV_CTL_EL0: ENABLE (bit 0) set and IMASK (bit 1) clear: it fires at CVAL, in
        // virtual counter ticks, which are the physical counter's minus CNTVOFF_EL2.
        let ctl = self.el1.cntv_ctl;
        if ctl & 1 == 0 || ctl & 2 != 0 {
            return None;
        }
        let physical = self.el1.cntv_cval.saturating_add(self.cntvoff);
        Some(super::sysreg::clock().ns(physical))
    }
}

// The world switch. `mica_guest_enter(ctx)` saves the host's callee-saved registers (x19-x30,
// d8-d15) on the EL2 stack, records `ctx` in the CPU-local block (TPIDR_EL2 + 8), loads the
// guest's FP and general registers and erets. A trap from the guest lands in one of the
// lower-EL vectors (`entry.rs`), which push x0/x1 and branch to `mica_guest_exit` with the
// vector index in x1; it saves the guest's registers into `ctx` and returns the vector index
// to `mica_guest_enter`'s caller.
global_asm!(
    r#"
    .text
    .global mica_guest_enter
mica_guest_enter:
    stp     x29, x30, [sp, #-160]!
    stp     x19, x20, [sp, #16]
    stp     x21, x22, [sp, #32]
    stp     x23, x24, [sp, #48]
    stp     x25, x26, [sp, #64]
    stp     x27, x28, [sp, #80]
    stp     d8, d9, [sp, #96]
    stp     d10, d11, [sp, #112]
    stp     d12, d13, [sp, #128]
    stp     d14, d15, [sp, #144]
    mrs     x1, tpidr_el2
    str     x0, [x1, #8]
    ldr     x1, [x0, #248]
    msr     elr_el2, x1
    ldr     x1, [x0, #256]
    msr     spsr_el2, x1
    ldr     x1, [x0, #264]
    msr     fpcr, x1
    ldr     x1, [x0, #272]
    msr     fpsr, x1
    add     x1, x0, #288
    ldp     q0, q1, [x1, #0]
    ldp     q2, q3, [x1, #32]
    ldp     q4, q5, [x1, #64]
    ldp     q6, q7, [x1, #96]
    ldp     q8, q9, [x1, #128]
    ldp     q10, q11, [x1, #160]
    ldp     q12, q13, [x1, #192]
    ldp     q14, q15, [x1, #224]
    ldp     q16, q17, [x1, #256]
    ldp     q18, q19, [x1, #288]
    ldp     q20, q21, [x1, #320]
    ldp     q22, q23, [x1, #352]
    ldp     q24, q25, [x1, #384]
    ldp     q26, q27, [x1, #416]
    ldp     q28, q29, [x1, #448]
    ldp     q30, q31, [x1, #480]
    ldp     x2, x3, [x0, #16]
    ldp     x4, x5, [x0, #32]
    ldp     x6, x7, [x0, #48]
    ldp     x8, x9, [x0, #64]
    ldp     x10, x11, [x0, #80]
    ldp     x12, x13, [x0, #96]
    ldp     x14, x15, [x0, #112]
    ldp     x16, x17, [x0, #128]
    ldp     x18, x19, [x0, #144]
    ldp     x20, x21, [x0, #160]
    ldp     x22, x23, [x0, #176]
    ldp     x24, x25, [x0, #192]
    ldp     x26, x27, [x0, #208]
    ldp     x28, x29, [x0, #224]
    ldr     x30, [x0, #240]
    ldp     x0, x1, [x0, #0]
    eret

    // Entered from a lower-EL vector: guest x0/x1 pushed on the EL2 stack, vector index in x1.
    .global mica_guest_exit
mica_guest_exit:
    mrs     x0, tpidr_el2
    ldr     x0, [x0, #8]
    stp     x2, x3, [x0, #16]
    stp     x4, x5, [x0, #32]
    stp     x6, x7, [x0, #48]
    stp     x8, x9, [x0, #64]
    stp     x10, x11, [x0, #80]
    stp     x12, x13, [x0, #96]
    stp     x14, x15, [x0, #112]
    stp     x16, x17, [x0, #128]
    stp     x18, x19, [x0, #144]
    stp     x20, x21, [x0, #160]
    stp     x22, x23, [x0, #176]
    stp     x24, x25, [x0, #192]
    stp     x26, x27, [x0, #208]
    stp     x28, x29, [x0, #224]
    str     x30, [x0, #240]
    ldp     x2, x3, [sp], #16
    stp     x2, x3, [x0, #0]
    mrs     x2, elr_el2
    str     x2, [x0, #248]
    mrs     x2, spsr_el2
    str     x2, [x0, #256]
    mrs     x2, fpcr
    str     x2, [x0, #264]
    mrs     x2, fpsr
    str     x2, [x0, #272]
    add     x2, x0, #288
    stp     q0, q1, [x2, #0]
    stp     q2, q3, [x2, #32]
    stp     q4, q5, [x2, #64]
    stp     q6, q7, [x2, #96]
    stp     q8, q9, [x2, #128]
    stp     q10, q11, [x2, #160]
    stp     q12, q13, [x2, #192]
    stp     q14, q15, [x2, #224]
    stp     q16, q17, [x2, #256]
    stp     q18, q19, [x2, #288]
    stp     q20, q21, [x2, #320]
    stp     q22, q23, [x2, #352]
    stp     q24, q25, [x2, #384]
    stp     q26, q27, [x2, #416]
    stp     q28, q29, [x2, #448]
    stp     q30, q31, [x2, #480]
    mov     x0, x1
    ldp     d14, d15, [sp, #144]
    ldp     d12, d13, [sp, #128]
    ldp     d10, d11, [sp, #112]
    ldp     d8, d9, [sp, #96]
    ldp     x27, x28, [sp, #80]
    ldp     x25, x26, [sp, #64]
    ldp     x23, x24, [sp, #48]
    ldp     x21, x22, [sp, #32]
    ldp     x19, x20, [sp, #16]
    ldp     x29, x30, [sp], #160
    ret
"#
);

extern "C" {
    fn mica_guest_enter(ctx: *mut ArmContext) -> u64;
}

/// Writes ICH_LR<n>_EL2 (GIC spec 12.5.11: LR0-7 are S3_4_C12_C12_n, LR8-15 S3_4_C12_C13_n).
fn write_list_register(n: usize, value: u64) {
    match n {
        0 => write_sysreg!("s3_4_c12_c12_0", value),
        1 => write_sysreg!("s3_4_c12_c12_1", value),
        2 => write_sysreg!("s3_4_c12_c12_2", value),
        3 => write_sysreg!("s3_4_c12_c12_3", value),
        4 => write_sysreg!("s3_4_c12_c12_4", value),
        5 => write_sysreg!("s3_4_c12_c12_5", value),
        6 => write_sysreg!("s3_4_c12_c12_6", value),
        7 => write_sysreg!("s3_4_c12_c12_7", value),
        8 => write_sysreg!("s3_4_c12_c13_0", value),
        9 => write_sysreg!("s3_4_c12_c13_1", value),
        10 => write_sysreg!("s3_4_c12_c13_2", value),
        11 => write_sysreg!("s3_4_c12_c13_3", value),
        12 => write_sysreg!("s3_4_c12_c13_4", value),
        13 => write_sysreg!("s3_4_c12_c13_5", value),
        14 => write_sysreg!("s3_4_c12_c13_6", value),
        15 => write_sysreg!("s3_4_c12_c13_7", value),
        _ => {}
    }
}

/// Reads ICH_LR<n>_EL2.
fn read_list_register(n: usize) -> u64 {
    match n {
        0 => read_sysreg!("s3_4_c12_c12_0"),
        1 => read_sysreg!("s3_4_c12_c12_1"),
        2 => read_sysreg!("s3_4_c12_c12_2"),
        3 => read_sysreg!("s3_4_c12_c12_3"),
        4 => read_sysreg!("s3_4_c12_c12_4"),
        5 => read_sysreg!("s3_4_c12_c12_5"),
        6 => read_sysreg!("s3_4_c12_c12_6"),
        7 => read_sysreg!("s3_4_c12_c12_7"),
        8 => read_sysreg!("s3_4_c12_c13_0"),
        9 => read_sysreg!("s3_4_c12_c13_1"),
        10 => read_sysreg!("s3_4_c12_c13_2"),
        11 => read_sysreg!("s3_4_c12_c13_3"),
        12 => read_sysreg!("s3_4_c12_c13_4"),
        13 => read_sysreg!("s3_4_c12_c13_5"),
        14 => read_sysreg!("s3_4_c12_c13_6"),
        15 => read_sysreg!("s3_4_c12_c13_7"),
        _ => 0,
    }
}

/// Writes ICH_AP0R<n>_EL2 (S3_4_C12_C8_n) and ICH_AP1R<n>_EL2 (S3_4_C12_C9_n).
fn write_active_priorities(n: usize, group0: u64, group1: u64) {
    match n {
        0 => {
            write_sysreg!("s3_4_c12_c8_0", group0);
            write_sysreg!("s3_4_c12_c9_0", group1);
        }
        1 => {
            write_sysreg!("s3_4_c12_c8_1", group0);
            write_sysreg!("s3_4_c12_c9_1", group1);
        }
        2 => {
            write_sysreg!("s3_4_c12_c8_2", group0);
            write_sysreg!("s3_4_c12_c9_2", group1);
        }
        3 => {
            write_sysreg!("s3_4_c12_c8_3", group0);
            write_sysreg!("s3_4_c12_c9_3", group1);
        }
        _ => {}
    }
}

/// Reads ICH_AP0R<n>_EL2 and ICH_AP1R<n>_EL2.
fn read_active_priorities(n: usize) -> (u64, u64) {
    match n {
        0 => (read_sysreg!("s3_4_c12_c8_0"), read_sysreg!("s3_4_c12_c9_0")),
        1 => (read_sysreg!("s3_4_c12_c8_1"), read_sysreg!("s3_4_c12_c9_1")),
        2 => (read_sysreg!("s3_4_c12_c8_2"), read_sysreg!("s3_4_c12_c9_2")),
        3 => (read_sysreg!("s3_4_c12_c8_3"), read_sysreg!("s3_4_c12_c9_3")),
        _ => (0, 0),
    }
}

/// Loads the EL1 and per-vCPU EL2 system registers of `c`. `warm`: this CPU's EL1 and GIC
/// CPU-interface registers still hold `c`'s saved values, and only what the exit changed
/// (the timer's control, HCR_EL2, the list registers and ICH_HCR_EL2) is loaded.
fn load_system_registers(c: &ArmContext, vttbr: u64, warm: bool) {
    if !warm {
        load_el1_and_gic_interface(c);
    }
    // The timer's offset and compare value before its control, which may enable it.
    write_sysreg!("cntvoff_el2", c.cntvoff);
    write_sysreg!("cntv_ctl_el0", c.el1.cntv_ctl);
    write_sysreg!("hcr_el2", c.hcr);
    write_sysreg!("vttbr_el2", vttbr);
    // The list registers the model filled for this entry.
    let lrs = super::el2::list_registers();
    if lrs == 4 {
        // The common GIC (QEMU's, Cortex-A53/A57/A72's): straight-line, on every entry.
        write_sysreg!("s3_4_c12_c12_0", c.gic.lr[0]);
        write_sysreg!("s3_4_c12_c12_1", c.gic.lr[1]);
        write_sysreg!("s3_4_c12_c12_2", c.gic.lr[2]);
        write_sysreg!("s3_4_c12_c12_3", c.gic.lr[3]);
    } else {
        for (n, value) in c.gic.lr.iter().enumerate().take(lrs) {
            write_list_register(n, *value);
        }
    }
    write_sysreg!("s3_4_c12_c11_0", c.gic.hcr); // ICH_HCR_EL2: En (and UIE)
    isb();
}

/// The registers the guest changes only by running (saved at every exit, unchanged by the
/// hypervisor in between unless it says so: [`ArmContext::el1_changed`],
/// [`registers_changed`]).
fn load_el1_and_gic_interface(c: &ArmContext) {
    let e = &c.el1;
    write_sysreg!("sctlr_el1", e.sctlr);
    write_sysreg!("ttbr0_el1", e.ttbr0);
    write_sysreg!("ttbr1_el1", e.ttbr1);
    write_sysreg!("tcr_el1", e.tcr);
    write_sysreg!("mair_el1", e.mair);
    write_sysreg!("amair_el1", e.amair);
    write_sysreg!("contextidr_el1", e.contextidr);
    write_sysreg!("tpidr_el0", e.tpidr_el0);
    write_sysreg!("tpidr_el1", e.tpidr_el1);
    write_sysreg!("tpidrro_el0", e.tpidrro_el0);
    write_sysreg!("sp_el0", e.sp_el0);
    write_sysreg!("sp_el1", e.sp_el1);
    write_sysreg!("elr_el1", e.elr);
    write_sysreg!("spsr_el1", e.spsr);
    write_sysreg!("vbar_el1", e.vbar);
    write_sysreg!("cpacr_el1", e.cpacr);
    write_sysreg!("esr_el1", e.esr);
    write_sysreg!("far_el1", e.far);
    write_sysreg!("afsr0_el1", e.afsr0);
    write_sysreg!("afsr1_el1", e.afsr1);
    write_sysreg!("par_el1", e.par);
    write_sysreg!("cntkctl_el1", e.cntkctl);
    write_sysreg!("mdscr_el1", e.mdscr);
    write_sysreg!("csselr_el1", e.csselr);
    write_sysreg!("cntv_cval_el0", e.cntv_cval);
    write_sysreg!("vmpidr_el2", c.vmpidr);
    write_sysreg!("vpidr_el2", read_sysreg!("midr_el1"));
    // GIC virtual CPU interface: VMCR and active priorities (the list registers and the
    // enable follow in `load_system_registers`).
    write_sysreg!("s3_4_c12_c11_7", c.gic.vmcr); // ICH_VMCR_EL2
    write_sysreg!("s3_4_c12_c8_0", c.gic.ap0r[0]); // ICH_AP0R0_EL2
    write_sysreg!("s3_4_c12_c9_0", c.gic.ap1r[0]); // ICH_AP1R0_EL2
    for n in 1..super::el2::active_priority_registers() {
        write_active_priorities(n, c.gic.ap0r[n], c.gic.ap1r[n]);
    }
}

/// Saves the EL1 and GIC state of the vCPU that just exited, and quiets its timer so it
/// cannot fire for whoever runs next.
fn save_system_registers(c: &mut ArmContext) {
    let e = &mut c.el1;
    e.sctlr = read_sysreg!("sctlr_el1");
    e.ttbr0 = read_sysreg!("ttbr0_el1");
    e.ttbr1 = read_sysreg!("ttbr1_el1");
    e.tcr = read_sysreg!("tcr_el1");
    e.mair = read_sysreg!("mair_el1");
    e.amair = read_sysreg!("amair_el1");
    e.contextidr = read_sysreg!("contextidr_el1");
    e.tpidr_el0 = read_sysreg!("tpidr_el0");
    e.tpidr_el1 = read_sysreg!("tpidr_el1");
    e.tpidrro_el0 = read_sysreg!("tpidrro_el0");
    e.sp_el0 = read_sysreg!("sp_el0");
    e.sp_el1 = read_sysreg!("sp_el1");
    e.elr = read_sysreg!("elr_el1");
    e.spsr = read_sysreg!("spsr_el1");
    e.vbar = read_sysreg!("vbar_el1");
    e.cpacr = read_sysreg!("cpacr_el1");
    e.esr = read_sysreg!("esr_el1");
    e.far = read_sysreg!("far_el1");
    e.afsr0 = read_sysreg!("afsr0_el1");
    e.afsr1 = read_sysreg!("afsr1_el1");
    e.par = read_sysreg!("par_el1");
    e.cntkctl = read_sysreg!("cntkctl_el1");
    e.mdscr = read_sysreg!("mdscr_el1");
    e.csselr = read_sysreg!("csselr_el1");
    e.cntv_ctl = read_sysreg!("cntv_ctl_el0");
    e.cntv_cval = read_sysreg!("cntv_cval_el0");
    write_sysreg!("cntv_ctl_el0", 0);
    let lrs = super::el2::list_registers();
    if lrs == 4 {
        c.gic.lr[0] = read_sysreg!("s3_4_c12_c12_0");
        c.gic.lr[1] = read_sysreg!("s3_4_c12_c12_1");
        c.gic.lr[2] = read_sysreg!("s3_4_c12_c12_2");
        c.gic.lr[3] = read_sysreg!("s3_4_c12_c12_3");
    } else {
        for (n, value) in c.gic.lr.iter_mut().enumerate().take(lrs) {
            *value = read_list_register(n);
        }
    }
    c.gic.vmcr = read_sysreg!("s3_4_c12_c11_7");
    c.gic.ap0r[0] = read_sysreg!("s3_4_c12_c8_0");
    c.gic.ap1r[0] = read_sysreg!("s3_4_c12_c9_0");
    for n in 1..super::el2::active_priority_registers() {
        (c.gic.ap0r[n], c.gic.ap1r[n]) = read_active_priorities(n);
    }
    write_sysreg!("s3_4_c12_c11_0", 0);
    // Back to the hypervisor's own HCR (no stage 2, no WFI traps).
    write_sysreg!("hcr_el2", super::entry::HCR_EL2_HOST);
    isb();
}

/// Runs the vCPU whose state is `ctx` in the address space `vttbr` on CPU `cpu` (this one)
/// until it traps, and returns the vector index of the trap (8-11: synchronous, IRQ, FIQ,
/// SError from AArch64 EL1).
///
/// Every register is saved at the exit, but when the same vCPU enters again on the same CPU
/// and nothing changed its registers in between (no other context loaded here, this
/// context not loaded elsewhere, neither changed by the hypervisor), the EL1 and GIC
/// CPU-interface registers are not loaded again: the hypercall fast path.
///
/// # Safety
/// `ctx` must stay valid and unaliased until this returns: the vCPU must be `Running` on this
/// CPU, which the kernel guarantees nobody else touches. `vttbr` must name a stage-2 table that
/// maps only memory the vCPU's domain may use.
pub unsafe fn enter(ctx: *mut ArmContext, vttbr: u64, cpu: usize) -> u64 {
    // SAFETY: the caller guarantees `ctx` is valid and exclusively ours for the call.
    let c = unsafe { &mut *ctx };
    let loaded = LOADED.get(cpu);
    let warm = c.loaded_on == cpu && loaded.is_some_and(|l| l.load(Ordering::Relaxed) == ctx);
    load_system_registers(c, vttbr, warm);
    if let Some(l) = loaded {
        l.store(ctx, Ordering::Relaxed);
        c.loaded_on = cpu;
    }
    // SAFETY: the world switch saves and restores every callee-saved register of the host
    // (x19-x30, d8-d15) and returns on the same stack; the guest runs at EL1 under stage 2
    // with `vttbr` and cannot reach EL2 state except through the vectors.
    let kind = unsafe { mica_guest_enter(ctx) };
    save_system_registers(c);
    kind
}
