//! Measuring: deterministic cost figures under QEMU `-icount` (`bench`), the same guest under
//! Xen side by side (`bench_xen`), and the trusted-code count (`tcb`).

pub mod bench;
pub mod bench_xen;
pub mod tcb;
