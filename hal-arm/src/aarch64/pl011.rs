//! The Arm PrimeCell PL011 UART, transmit side only (ARM DDI 0183).
//!
//! Mica does not reprogram the baud rate: firmware (or QEMU) has set it up, and the
//! clock needed to compute a divisor is not always described. It only makes sure the
//! UART and its transmitter are enabled.

use core::ptr::{read_volatile, write_volatile};

/// UARTDR, data register.
const DR: usize = 0x000;
/// UARTFR, flag register; bit 5 TXFF = transmit FIFO full.
const FR: usize = 0x018;
const FR_TXFF: u32 = 1 << 5;
/// UARTCR, control register; bit 0 UARTEN, bit 8 TXE.
const CR: usize = 0x030;
const CR_UARTEN: u32 = 1 << 0;
const CR_TXE: u32 = 1 << 8;

/// A PL011 at a mapped MMIO base.
pub struct Pl011 {
    base: usize,
}

impl Pl011 {
    /// # Safety
    /// `base` must be the address of a PL011's registers, mapped as device memory, and
    /// no other code may drive this UART concurrently except through this value's lock.
    pub const unsafe fn new(base: usize) -> Pl011 {
        Pl011 { base }
    }

    /// Enables the UART and its transmitter if firmware left them off.
    pub fn enable(&mut self) {
        // SAFETY: `base` points at PL011 registers (constructor contract); CR is a
        // 32-bit register at offset 0x30.
        unsafe {
            let cr = read_volatile((self.base + CR) as *const u32);
            if cr & (CR_UARTEN | CR_TXE) != (CR_UARTEN | CR_TXE) {
                write_volatile((self.base + CR) as *mut u32, cr | CR_UARTEN | CR_TXE);
            }
        }
    }

    /// Sends one byte, waiting while the transmit FIFO is full.
    pub fn put(&mut self, byte: u8) {
        // SAFETY: `base` points at PL011 registers (constructor contract); FR and DR are
        // 32-bit registers at offsets 0x18 and 0x00.
        unsafe {
            while read_volatile((self.base + FR) as *const u32) & FR_TXFF != 0 {
                core::hint::spin_loop();
            }
            write_volatile((self.base + DR) as *mut u32, byte as u32);
        }
    }
}
