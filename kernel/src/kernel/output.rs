//! Domains' console lines and the kernel's log lines about them, each paid from a console
//! budget (`crate::console`).

use super::*;

impl<H: Hal> Kernel<H> {
    /// Buffers console output of `domain`, printing each complete line with its name (see
    /// [`Kernel::flush_console`]); `\r` is dropped. Every byte also goes to the domain's
    /// console log (`console_read`).
    pub fn console_bytes(&mut self, domain: DomainId, bytes: &[u8]) {
        if let Some(d) = self.domains[domain.index()].as_mut() {
            for &b in bytes {
                d.log_console(b);
            }
        }
        for &b in bytes {
            match b {
                b'\n' => self.flush_console(domain),
                b'\r' => {}
                _ => {
                    let full = match self.domains[domain.index()].as_mut() {
                        Some(d) => d.console.push(b).is_err(),
                        None => return,
                    };
                    if full {
                        self.flush_console(domain);
                        if let Some(d) = self.domains[domain.index()].as_mut() {
                            let _ = d.console.push(b);
                        }
                    }
                }
            }
        }
    }

    /// Prints `domain`'s buffered console line as `[name] text`: plain text only (see
    /// [`crate::console::sanitize`]), paid from the domain's console budget (dropped, and
    /// counted, when it cannot pay).
    pub(super) fn flush_console(&mut self, domain: DomainId) {
        let now = self.hal.now_ns();
        let Some(d) = self.domains[domain.index()].as_mut() else {
            return;
        };
        let mut line = heapless::Vec::<u8, 256>::new();
        if self.console_timestamps {
            let mut stamp = heapless::String::<24>::new();
            let _ = write_stamp(&mut stamp, now);
            let _ = line.extend_from_slice(stamp.as_bytes());
        }
        let _ = line.push(b'[');
        let _ = line.extend_from_slice(d.name.as_bytes());
        let _ = line.extend_from_slice(b"] ");
        crate::console::sanitize(&d.console, &mut line);
        let _ = line.push(b'\n');
        d.console.clear();
        match d.console_budget.pay(now, line.len()) {
            Some(0) => {}
            Some(dropped) => {
                let mut note = heapless::String::<128>::new();
                let _ = writeln!(
                    note,
                    "[{}] ({dropped} bytes of console output dropped: over its budget)",
                    d.name
                );
                self.hal.console_write(note.as_bytes());
            }
            None => return,
        }
        self.hal.console_write(&line);
    }

    /// Prints a kernel line about something domain `about` did, paid from the console budget
    /// of the domain answerable for it (see [`Kernel::payer`]): a domain cannot flood the
    /// console through the kernel's log either.
    pub(super) fn log_for(&mut self, about: DomainId, args: fmt::Arguments<'_>) {
        let payer = self.payer(about);
        self.log_paid_by(payer, args);
    }

    /// Prints a kernel line paid from `payer`'s console budget (unconditionally if it is
    /// gone).
    pub(super) fn log_paid_by(&mut self, payer: DomainId, args: fmt::Arguments<'_>) {
        let mut line = heapless::String::<256>::new();
        let now = self.hal.now_ns();
        if self.console_timestamps {
            let _ = write_stamp(&mut line, now);
        }
        let _ = line.write_str("mica: ");
        let _ = line.write_fmt(args);
        let _ = line.write_str("\n");
        let Some(d) = self.domains[payer.index()].as_mut() else {
            self.hal.console_write(line.as_bytes());
            return;
        };
        match d.console_budget.pay(now, line.len()) {
            Some(0) => {}
            Some(dropped) => {
                let mut note = heapless::String::<128>::new();
                let _ = writeln!(
                    note,
                    "mica: ({dropped} bytes of log about domain {} dropped: over its budget)",
                    d.name
                );
                self.hal.console_write(note.as_bytes());
            }
            None => return,
        }
        self.hal.console_write(line.as_bytes());
    }

    /// The domain whose console budget pays for log lines about `id`: the domain that created
    /// it, if a domain did (so creating and destroying domains in a loop cannot flood the
    /// console), else `id` itself.
    pub(super) fn payer(&self, id: DomainId) -> DomainId {
        match self.domain(id) {
            Some(d) if Some(d.original.space) != self.root => {
                let creator = DomainId(d.original.space.0);
                if self.domain(creator).is_some() {
                    creator
                } else {
                    id
                }
            }
            _ => id,
        }
    }
}

/// The hypercalls on output (routed by `invoke.rs`, their arguments decoded by `mica-abi`):
/// each checks with no side effect, then acts.
impl<H: Hal> Kernel<H> {
    /// `console_write`.
    pub(super) fn invoke_console_write(
        &mut self,
        caller: DomainId,
        x: mica_abi::args::ConsoleWrite,
    ) -> Result<[u64; 3], Status> {
        let len = x.len;
        let mut buf = [0u8; mica_abi::hypercall::CONSOLE_WRITE_MAX];
        let bytes = mica_abi::hypercall::unpack_console_bytes(len, x.packed(), &mut buf)
            .ok_or(Status::InvalidArgument)?;
        let copy: heapless::Vec<u8, { mica_abi::hypercall::CONSOLE_WRITE_MAX }> =
            heapless::Vec::from_slice(bytes).map_err(|_| Status::InvalidArgument)?;
        self.console_bytes(caller, &copy);
        Ok([len, 0, 0])
    }

    /// `console_read`.
    pub(super) fn invoke_console_read(
        &mut self,
        caller: DomainId,
        mica_abi::args::ConsoleRead { domain, offset }: mica_abi::args::ConsoleRead,
    ) -> Result<[u64; 3], Status> {
        let target = self.domain_arg(caller, domain, Rights::CONTROL)?;
        let d = self.domain(target).ok_or(Status::StaleCapability)?;
        let (_, words) = d.read_console(offset);
        Ok([d.console_total, words[0], words[1]])
    }

    /// `console_input`: bytes for the receive FIFO of a domain's emulated PL011; its
    /// interrupt line follows, and a vCPU it wakes is kicked.
    pub(super) fn invoke_console_input(
        &mut self,
        caller: DomainId,
        x: mica_abi::args::ConsoleInput,
    ) -> Result<[u64; 3], Status> {
        // Typing into a console needs authority over its domain: a capability, never the
        // implicit one over itself.
        if x.domain == Slot::SELF_DOMAIN {
            return Err(Status::InsufficientRights);
        }
        let target = self.domain_arg(caller, x.domain, Rights::CONTROL)?;
        let d = self.domains[target.index()]
            .as_mut()
            .ok_or(Status::StaleCapability)?;
        let uart = d.uart.as_mut().ok_or(Status::WrongState)?;
        let (bytes, len) = x.bytes();
        let taken = uart.receive(&bytes[..len]);
        let line = uart.line();
        let woken = self
            .hal
            .set_line(&mut d.arch, mica_abi::layout::devices::UART_INTID, line);
        self.interrupt_vcpus(target, woken);
        Ok([taken as u64, 0, 0])
    }
}

/// `[seconds.micros] ` of `ns` since the machine started, the width Linux and Xen use.
fn write_stamp(out: &mut impl fmt::Write, ns: u64) -> fmt::Result {
    write!(
        out,
        "[{:5}.{:06}] ",
        ns / 1_000_000_000,
        ns % 1_000_000_000 / 1_000
    )
}
