//! The PL011 a Linux guest has as its console: an emulated Arm PrimeCell UART (PL011 r1p5
//! as the TRM describes it), as much of it as a driver sees.
//!
//! Transmitted bytes go straight to the domain's console (the kernel prints them as `[name]
//! ...` lines), so the transmit FIFO is always empty: `FR.TXFE` set, `TXFF` and `BUSY`
//! clear, and the transmit interrupt (`RIS.TX`, "FIFO at or below its trigger level") always
//! raised — a driver that unmasks it is called to send more, as on the hardware. Received
//! bytes come from the control domain (`mica ctl console NAME --attach`) into a
//! [`RX_FIFO`]-byte FIFO; `RIS.RX` is raised while it holds any (the receive-timeout
//! interrupt `RT` with it, which is what a driver waits for when fewer bytes than its
//! trigger level arrive). The interrupt line is `RIS & IMSC`, level-sensitive.
//!
//! The line-control, baud-rate, control, FIFO-level and DMA registers hold what is written
//! and change nothing (there is no wire); the PrimeCell identification registers answer as a
//! PL011 so the AMBA bus binds the driver. A pure model: the caller decodes the guest's
//! access, applies [`Pl011::read`]/[`Pl011::write`], prints what [`Pl011::write`] returns and
//! drives the interrupt from [`Pl011::line`].

/// Register offsets (PL011 TRM, table 3-1).
pub mod reg {
    /// Data: write transmits, read takes a received byte.
    pub const DR: u64 = 0x000;
    /// Receive status / error clear.
    pub const RSR: u64 = 0x004;
    /// Flags.
    pub const FR: u64 = 0x018;
    /// IrDA low-power counter.
    pub const ILPR: u64 = 0x020;
    /// Integer baud-rate divisor.
    pub const IBRD: u64 = 0x024;
    /// Fractional baud-rate divisor.
    pub const FBRD: u64 = 0x028;
    /// Line control.
    pub const LCR_H: u64 = 0x02C;
    /// Control.
    pub const CR: u64 = 0x030;
    /// FIFO level select.
    pub const IFLS: u64 = 0x034;
    /// Interrupt mask set/clear.
    pub const IMSC: u64 = 0x038;
    /// Raw interrupt status.
    pub const RIS: u64 = 0x03C;
    /// Masked interrupt status.
    pub const MIS: u64 = 0x040;
    /// Interrupt clear.
    pub const ICR: u64 = 0x044;
    /// DMA control.
    pub const DMACR: u64 = 0x048;
    /// First of the eight identification registers (PeriphID0-3, PCellID0-3).
    pub const ID: u64 = 0xFE0;
}

/// `FR` bits.
pub mod fr {
    /// Transmit FIFO empty.
    pub const TXFE: u32 = 1 << 7;
    /// Receive FIFO full.
    pub const RXFF: u32 = 1 << 6;
    /// Receive FIFO empty.
    pub const RXFE: u32 = 1 << 4;
}

/// Interrupt bits (`IMSC`, `RIS`, `MIS`, `ICR`).
pub mod int {
    /// Receive.
    pub const RX: u32 = 1 << 4;
    /// Transmit.
    pub const TX: u32 = 1 << 5;
    /// Receive timeout.
    pub const RT: u32 = 1 << 6;
    /// Every interrupt the PL011 has (modem, receive, transmit, timeout, errors).
    pub const ALL: u32 = 0x7FF;
}

/// PeriphID0-3 and PCellID0-3, as the PL011 r1p5 answers them: part number 0x011, designer
/// Arm (0x41), revision 1; the PrimeCell preamble 0xB105F00D.
pub const ID_VALUES: [u32; 8] = [0x11, 0x10, 0x14, 0x00, 0x0D, 0xF0, 0x05, 0xB1];
/// Bytes of the receive FIFO (the PL011 r1p5's depth).
pub const RX_FIFO: usize = 32;
/// Bytes of the register window the guest sees.
pub const WINDOW: u64 = mica_abi::layout::devices::UART_SIZE;

/// One PL011.
#[derive(Clone, Debug)]
pub struct Pl011 {
    rx: heapless::Deque<u8, RX_FIFO>,
    imsc: u32,
    ibrd: u32,
    fbrd: u32,
    lcr_h: u32,
    cr: u32,
    ifls: u32,
    dmacr: u32,
    ilpr: u32,
}

impl Default for Pl011 {
    fn default() -> Pl011 {
        Pl011::new()
    }
}

impl Pl011 {
    /// A PL011 in its reset state (TRM: `CR` = 0x300, transmit and receive enabled but the
    /// UART off; `IFLS` = 0x12, both FIFOs at half).
    pub const fn new() -> Pl011 {
        Pl011 {
            rx: heapless::Deque::new(),
            imsc: 0,
            ibrd: 0,
            fbrd: 0,
            lcr_h: 0,
            cr: 0x300,
            ifls: 0x12,
            dmacr: 0,
            ilpr: 0,
        }
    }

    /// The raw interrupt status: transmit always (the FIFO is always empty), receive and
    /// receive-timeout while a byte waits.
    pub fn raw_status(&self) -> u32 {
        int::TX
            | if self.rx.is_empty() {
                0
            } else {
                int::RX | int::RT
            }
    }

    /// The interrupt line: any unmasked raw interrupt.
    pub fn line(&self) -> bool {
        self.raw_status() & self.imsc != 0
    }

    /// A read of the register at `offset` (bytes into the window); reading `DR` takes a
    /// received byte. Unknown offsets read as zero.
    pub fn read(&mut self, offset: u64) -> u32 {
        match offset {
            reg::DR => self.rx.pop_front().map_or(0, u32::from),
            reg::FR => {
                let mut flags = fr::TXFE;
                if self.rx.is_empty() {
                    flags |= fr::RXFE;
                }
                if self.rx.is_full() {
                    flags |= fr::RXFF;
                }
                flags
            }
            reg::ILPR => self.ilpr,
            reg::IBRD => self.ibrd,
            reg::FBRD => self.fbrd,
            reg::LCR_H => self.lcr_h,
            reg::CR => self.cr,
            reg::IFLS => self.ifls,
            reg::IMSC => self.imsc,
            reg::RIS => self.raw_status(),
            reg::MIS => self.raw_status() & self.imsc,
            reg::DMACR => self.dmacr,
            o if (reg::ID..reg::ID + 32).contains(&o) && o.is_multiple_of(4) => {
                ID_VALUES[((o - reg::ID) / 4) as usize]
            }
            _ => 0,
        }
    }

    /// A write of `value` to the register at `offset`: the byte transmitted, if it was `DR`.
    /// Read-only and unknown offsets ignore it.
    pub fn write(&mut self, offset: u64, value: u32) -> Option<u8> {
        match offset {
            reg::DR => return Some(value as u8),
            reg::ILPR => self.ilpr = value & 0xFF,
            reg::IBRD => self.ibrd = value & 0xFFFF,
            reg::FBRD => self.fbrd = value & 0x3F,
            reg::LCR_H => self.lcr_h = value & 0xFF,
            reg::CR => self.cr = value & 0xFF87,
            reg::IFLS => self.ifls = value & 0x3F,
            reg::IMSC => self.imsc = value & int::ALL,
            reg::DMACR => self.dmacr = value & 0x7,
            // RSR/ECR clears errors and ICR clears latched interrupts: there are none to
            // clear (the raw status is the FIFOs' state, which a clear does not change).
            _ => {}
        }
        None
    }

    /// Puts received bytes in the FIFO; returns how many fit (the rest is the sender's to
    /// try again).
    pub fn receive(&mut self, bytes: &[u8]) -> usize {
        bytes
            .iter()
            .take_while(|b| self.rx.push_back(**b).is_ok())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identification_registers_say_pl011_primecell() {
        let mut u = Pl011::new();
        let ids: heapless::Vec<u32, 8> = (0..8).map(|i| u.read(reg::ID + 4 * i)).collect();
        assert_eq!(ids.as_slice(), &ID_VALUES);
        // Part number 0x011 in PeriphID0/1, the PrimeCell preamble in PCellID0-3.
        assert_eq!(ids[0] | (ids[1] & 0xF) << 8, 0x011);
        let cell = ids[4] | ids[5] << 8 | ids[6] << 16 | ids[7] << 24;
        assert_eq!(cell, 0xB105_F00D);
        assert_eq!(u.read(reg::ID + 2), 0, "unaligned offsets are not IDs");
    }

    #[test]
    fn transmit_never_waits_and_returns_each_byte() {
        let mut u = Pl011::new();
        assert_eq!(u.read(reg::FR) & fr::TXFE, fr::TXFE);
        assert_eq!(u.write(reg::DR, 0x141), Some(b'A'));
        assert_eq!(u.write(reg::CR, 0x301), None);
        assert_eq!(u.read(reg::CR), 0x301);
    }

    #[test]
    fn the_line_follows_the_mask_and_the_fifo() {
        let mut u = Pl011::new();
        assert!(!u.line(), "everything masked at reset");
        u.write(reg::IMSC, int::RX | int::RT);
        assert!(!u.line(), "nothing received");
        assert_eq!(u.receive(b"ls\n"), 3);
        assert!(u.line());
        assert_eq!(u.read(reg::MIS), int::RX | int::RT);
        u.write(reg::ICR, int::ALL);
        assert!(u.line(), "a clear does not empty the FIFO");
        assert_eq!(u.read(reg::DR), u32::from(b'l'));
        assert_eq!(u.read(reg::DR), u32::from(b's'));
        assert_eq!(u.read(reg::DR), u32::from(b'\n'));
        assert_eq!(u.read(reg::FR) & fr::RXFE, fr::RXFE);
        assert!(!u.line());
        assert_eq!(u.read(reg::DR), 0, "an empty FIFO reads as zero");
        u.write(reg::IMSC, int::TX);
        assert!(u.line(), "transmit asks for more while unmasked");
    }

    #[test]
    fn a_full_fifo_takes_what_fits() {
        let mut u = Pl011::new();
        assert_eq!(u.receive(&[b'x'; RX_FIFO + 5]), RX_FIFO);
        assert_eq!(u.read(reg::FR) & fr::RXFF, fr::RXFF);
        assert_eq!(u.receive(b"y"), 0);
        u.read(reg::DR);
        assert_eq!(u.receive(b"yz"), 1);
    }

    #[test]
    fn any_offset_and_value_is_harmless() {
        let mut u = Pl011::new();
        for offset in (0..WINDOW + 8).step_by(2) {
            let _ = u.write(offset, u32::MAX);
            let _ = u.read(offset);
        }
        assert!(u.read(reg::IMSC) <= int::ALL);
    }
}
