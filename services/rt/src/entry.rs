//! A domain's first instructions: a stack, then the domain's `mica_main`.

core::arch::global_asm!(
    r#"
    .section .text.entry, "ax"
    .global _start
_start:
    adrp    x9, __mica_rt_stack_top
    add     x9, x9, :lo12:__mica_rt_stack_top
    mov     sp, x9
    bl      mica_main
1:  wfe
    b       1b

    .section .bss.mica_rt_stack, "aw", %nobits
    .balign 16
    .space  {stack}
__mica_rt_stack_top:
"#,
    stack = const STACK_SIZE,
);

/// Bytes of stack a domain's first vCPU starts with.
pub const STACK_SIZE: usize = 64 * 1024;
