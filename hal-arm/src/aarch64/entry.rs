//! The first instructions: the arm64 Image header, EL2 set-up, stacks, BSS, the
//! secondary-CPU entry, and the EL2 exception vector table.
//!
//! The hypervisor is loaded as a Linux arm64 `Image` (Documentation/arch/arm64/booting
//! in Linux describes the protocol): the boot loader jumps to offset 0 at EL2 with the
//! DTB's physical address in x0 and the MMU off. Mica is linked at RAM base + 2 MiB
//! (`text_offset` = 2 MiB, flags bit 3 = 0, so QEMU `-kernel` and U-Boot `booti` both put
//! it there) and checks that it runs where it was linked.

use core::arch::global_asm;

use super::cpu::{MAX_CPUS, STACK_SIZE};
use super::el2::hcr;

/// HCR_EL2 while no guest runs: RW (EL1 is AArch64), TSC (trap SMC), AMO/IMO/FMO
/// (physical SError/IRQ/FIQ are taken to EL2). VM (stage 2) is set per guest later.
pub const HCR_EL2_HOST: u64 = hcr::RW | hcr::TSC | hcr::AMO | hcr::IMO | hcr::FMO;
/// SCTLR_EL2 with the MMU and caches off: only the RES1 bits, plus SA (stack alignment
/// check).
pub const SCTLR_EL2_OFF: u64 = 0x30C5_0838;
/// CPTR_EL2: RES1 bits, no FP/SIMD/SVE traps (rustc emits SIMD for this target).
pub const CPTR_EL2_INIT: u64 = 0x33FF;

global_asm!(
    r#"
    .section .text.head, "ax"
    .global _start
_start:
    b       primary_entry           // code0
    .long   0                       // code1
    .quad   0x200000                // text_offset: 2 MiB above a 2 MiB-aligned RAM base
    .quad   _kernel_size            // image_size, BSS included
    .quad   0x2                     // flags: little-endian, 4 KiB pages, bit 3 = 0 (near RAM base)
    .quad   0                       // res2
    .quad   0                       // res3
    .quad   0                       // res4
    .ascii  "ARM\x64"               // magic
    .long   0                       // res5

    .text
primary_entry:
    mov     x19, x0                 // the DTB's physical address
    // Park any CPU but the one with affinity 0 (firmware should have started only it).
    mrs     x1, mpidr_el1
    ubfx    x2, x1, #0, #24
    ubfx    x3, x1, #32, #8
    orr     x2, x2, x3
    cbnz    x2, park
    // Run where we were linked, or not at all: absolute addresses in the image assume it.
    adr     x1, _start
    ldr     x2, =_start
    cmp     x1, x2
    b.ne    park
    bl      zero_bss
    mrs     x20, CurrentEL
    cmp     x20, #(2 << 2)
    b.ne    wrong_el                // Mica must be entered at EL2
    bl      el2_setup
    mov     x0, #0
    bl      set_stack
    mov     x0, x19
    bl      mica_primary_main       // never returns
    b       park

    // x0 = logical CPU index (the PSCI CPU_ON context id).
    .global mica_secondary_entry
mica_secondary_entry:
    mov     x19, x0
    cmp     x19, #{max_cpus}
    b.hs    park
    bl      el2_setup
    // The EL2 translation regime the boot CPU built (MMU config words: MAIR, TCR, TTBR0).
    adrp    x1, MICA_MMU_CONFIG
    add     x1, x1, :lo12:MICA_MMU_CONFIG
    ldp     x2, x3, [x1]
    ldr     x4, [x1, #16]
    msr     mair_el2, x2
    msr     tcr_el2, x3
    msr     ttbr0_el2, x4
    isb
    tlbi    alle2
    dsb     nsh
    isb
    mrs     x2, sctlr_el2
    mov     x3, #((1 << 0) | (1 << 2))  // M, C
    orr     x3, x3, #(1 << 12)          // I
    orr     x2, x2, x3
    msr     sctlr_el2, x2
    isb
    mov     x0, x19
    bl      set_stack
    mov     x0, x19
    bl      mica_secondary_main     // never returns
    b       park

    // Entered at another exception level: CPU 0's stack, no EL2 state (set_stack writes
    // TPIDR_EL2), then the report (x0 = the tree, x1 = CurrentEL), which powers off.
wrong_el:
    cmp     x20, #(1 << 2)
    b.ne    1f
    mov     x1, #(3 << 20)          // CPACR_EL1.FPEN: no FP/SIMD traps (rustc emits SIMD)
    msr     cpacr_el1, x1
    isb
1:  adrp    x1, __stacks_start
    add     x1, x1, :lo12:__stacks_start
    mov     x2, #{stack_size}
    add     x1, x1, x2
    mov     sp, x1
    mov     x0, x19
    mov     x1, x20
    bl      mica_wrong_el_main      // never returns
    b       park

    // Zero BSS (8-byte aligned by the linker script). Clobbers x1, x2.
zero_bss:
    adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
1:  cmp     x1, x2
    b.hs    2f
    str     xzr, [x1], #8
    b       1b
2:  ret

    // EL2 control registers every CPU starts with. Clobbers x1.
el2_setup:
    ldr     x1, ={sctlr}
    msr     sctlr_el2, x1
    ldr     x1, ={cptr}
    msr     cptr_el2, x1
    ldr     x1, ={hcr}
    msr     hcr_el2, x1
    adrp    x1, mica_el2_vectors
    add     x1, x1, :lo12:mica_el2_vectors
    msr     vbar_el2, x1
    msr     cntvoff_el2, xzr
    mov     x1, #1                  // CNTHCTL_EL2: EL1 may read the physical counter; its timer traps
    msr     cnthctl_el2, x1
    isb
    ret

    // sp = top of CPU x0's stack; tpidr_el2 = x0. Clobbers x1, x2.
set_stack:
    adrp    x1, __stacks_start
    add     x1, x1, :lo12:__stacks_start
    add     x2, x0, #1
    mov     x3, #{stack_size}
    madd    x1, x2, x3, x1
    mov     sp, x1
    adrp    x1, MICA_CPU_LOCALS
    add     x1, x1, :lo12:MICA_CPU_LOCALS
    add     x1, x1, x0, lsl #4
    msr     tpidr_el2, x1
    ret

park:
    wfe
    b       park

    .section .bss.stacks, "aw", %nobits
    .balign 4096
    .global __stacks_start
__stacks_start:
    .space  {stacks_bytes}
    .global __stacks_end
__stacks_end:
"#,
    max_cpus = const MAX_CPUS,
    stack_size = const STACK_SIZE,
    stacks_bytes = const MAX_CPUS * STACK_SIZE,
    sctlr = const SCTLR_EL2_OFF,
    cptr = const CPTR_EL2_INIT,
    hcr = const HCR_EL2_HOST,
);

// The vector table: 16 entries of 0x80 bytes (Arm ARM D1.10.2). The eight entries for
// exceptions taken from EL2 itself save x0/x1, put their index in x0 and jump to the common
// path, which saves the rest of the general registers with ELR/SPSR into a `TrapFrame` on the
// current stack and calls `mica_el2_trap(kind, frame)`. The eight for exceptions from a guest
// leave through the world switch instead.
global_asm!(
    r#"
    .macro  vector kind
    .balign 0x80
    sub     sp, sp, #{frame_size}
    stp     x0, x1, [sp, #0]
    mov     x0, #\kind
    b       el2_trap_common
    .endm

    // A trap from a guest: leave through the world switch (`context.rs`).
    .macro  guest_vector kind
    .balign 0x80
    stp     x0, x1, [sp, #-16]!
    mov     x1, #\kind
    b       mica_guest_exit
    .endm

    .text
    .balign 0x800
    .global mica_el2_vectors
mica_el2_vectors:
    vector 0
    vector 1
    vector 2
    vector 3
    vector 4
    vector 5
    vector 6
    vector 7
    guest_vector 8
    guest_vector 9
    guest_vector 10
    guest_vector 11
    guest_vector 12
    guest_vector 13
    guest_vector 14
    guest_vector 15

el2_trap_common:
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
    mrs     x1, elr_el2
    stp     x30, x1, [sp, #240]
    mrs     x1, spsr_el2
    str     x1, [sp, #256]
    mov     x1, sp
    bl      mica_el2_trap
    ldr     x1, [sp, #256]
    msr     spsr_el2, x1
    ldp     x30, x1, [sp, #240]
    msr     elr_el2, x1
    ldp     x28, x29, [sp, #224]
    ldp     x26, x27, [sp, #208]
    ldp     x24, x25, [sp, #192]
    ldp     x22, x23, [sp, #176]
    ldp     x20, x21, [sp, #160]
    ldp     x18, x19, [sp, #144]
    ldp     x16, x17, [sp, #128]
    ldp     x14, x15, [sp, #112]
    ldp     x12, x13, [sp, #96]
    ldp     x10, x11, [sp, #80]
    ldp     x8, x9, [sp, #64]
    ldp     x6, x7, [sp, #48]
    ldp     x4, x5, [sp, #32]
    ldp     x2, x3, [sp, #16]
    ldp     x0, x1, [sp, #0]
    add     sp, sp, #{frame_size}
    eret
"#,
    frame_size = const core::mem::size_of::<super::trap::TrapFrame>(),
);
