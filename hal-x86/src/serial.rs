//! The 16550 UART on COM1, transmit only, through port I/O.

use core::arch::asm;

/// Line status register offset; bit 5 = transmit holding register empty.
const LSR: u16 = 5;

fn outb(port: u16, value: u8) {
    // SAFETY: writing the COM1 data port only transmits a byte; the port is owned by the
    // hypervisor console.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    };
}

fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: reading the COM1 line status register has no side effect.
    unsafe {
        asm!("in al, dx", in("dx") port, out("al") v, options(nomem, nostack, preserves_flags))
    };
    v
}

/// Writes `s` to COM1, waiting for the transmitter before each byte.
pub fn write(s: &str) {
    for b in s.bytes() {
        while inb(crate::COM1 + LSR) & (1 << 5) == 0 {
            core::hint::spin_loop();
        }
        outb(crate::COM1, b);
    }
}
