//! The serial console of `mica run`: passed through to the terminal as it comes, kept in a
//! log, and watched for the lines that decide how `mica run` ends.
//!
//! `mica run` used to leave QEMU's stdout on the terminal, so it could not tell a boot that
//! ended in `mica: fatal: ...` (the hypervisor powers off, QEMU exits 0) from a clean one.
//! Now QEMU's stdout is a pipe that [`pass_through`] copies byte for byte (partial lines
//! too, so nothing waits for a newline) while it assembles lines for [`Watch`]. QEMU still
//! owns the terminal's input (stdin is inherited: Ctrl-A X works as before).

use std::io::{ErrorKind, Read, Write};
use std::time::Duration;

/// What a console line tells `mica run`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The hypervisor gave up: `mica: fatal: ...` (a boot failure or a kernel panic); it
    /// powers off (or halts) next.
    Fatal(String),
    /// `mica: all domains have ended; ...`: nothing runs any more, but the machine stays up.
    AllEnded,
}

/// The hypervisor's fatal-error prefix (`hal-arm`'s `fatal`).
pub const FATAL: &str = "mica: fatal: ";
/// The kernel's line when the last domain is gone.
pub const ALL_ENDED: &str = "mica: all domains have ended";

/// What `line` (without its line end) means to `mica run`, if anything.
pub fn classify(line: &str) -> Option<Event> {
    if let Some(at) = line.find(FATAL) {
        return Some(Event::Fatal(line[at + FATAL.len()..].trim_end().to_owned()));
    }
    line.contains(ALL_ENDED).then_some(Event::AllEnded)
}

/// Writes all of `bytes` to `out`, waiting out `WouldBlock`: QEMU makes the terminal's
/// file description non-blocking for its input, and our stdout may share it.
pub fn write_fully(out: &mut dyn Write, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        match out.write(bytes) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    loop {
        match out.flush() {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                std::thread::sleep(Duration::from_millis(1))
            }
            other => return other,
        }
    }
}

/// Copies `input` (QEMU's stdout) to `out` as it arrives and to `log` if given, and calls
/// `on_line` with every complete line (line end and `\r` removed), until `input` ends. A
/// failing `out` (a closed terminal) does not stop the copy to `log` or the watching.
pub fn pass_through(
    mut input: impl Read,
    out: &mut dyn Write,
    mut log: Option<&mut dyn Write>,
    on_line: &mut dyn FnMut(&str),
) {
    let mut buf = [0u8; 4096];
    let mut line = Vec::new();
    let mut out_ok = true;
    // A full disk loses the log, not the console.
    let mut log_ok = true;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let chunk = &buf[..n];
        if out_ok {
            out_ok = write_fully(out, chunk).is_ok();
        }
        if let Some(log) = log.as_mut().filter(|_| log_ok) {
            log_ok = log.write_all(chunk).and_then(|()| log.flush()).is_ok();
        }
        for &b in chunk {
            if b == b'\n' {
                let text = String::from_utf8_lossy(&line);
                on_line(text.trim_end_matches('\r'));
                line.clear();
            } else {
                line.push(b);
            }
        }
    }
    if !line.is_empty() {
        on_line(String::from_utf8_lossy(&line).trim_end_matches('\r'));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fatal_and_idle_lines_are_recognised() {
        assert_eq!(
            classify("mica: fatal: cannot start the system: out of memory\r"),
            Some(Event::Fatal(
                "cannot start the system: out of memory".to_owned()
            ))
        );
        assert_eq!(
            classify("mica: all domains have ended; 1003520 KiB free, as at boot"),
            Some(Event::AllEnded)
        );
        assert_eq!(classify("[hello] hello: fatal: not really"), None);
        assert_eq!(
            classify("mica: domain hello (id 1) powered itself off"),
            None
        );
    }

    #[test]
    fn bytes_pass_unchanged_and_lines_are_seen() {
        let input: &[u8] = b"mica: starting\r\n[hello] hi\npartial";
        let mut out = Vec::new();
        let mut log = Vec::new();
        let mut lines = Vec::new();
        pass_through(input, &mut out, Some(&mut log), &mut |l| {
            lines.push(l.to_owned())
        });
        assert_eq!(out, input);
        assert_eq!(log, input);
        assert_eq!(lines, ["mica: starting", "[hello] hi", "partial"]);
    }

    /// A terminal that says "try again" now and then still gets every byte.
    #[test]
    fn would_block_is_waited_out() {
        struct Flaky {
            got: Vec<u8>,
            calls: u32,
        }
        impl Write for Flaky {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.calls += 1;
                if self.calls % 2 == 1 {
                    return Err(ErrorKind::WouldBlock.into());
                }
                let n = buf.len().min(3);
                self.got.extend_from_slice(&buf[..n]);
                Ok(n)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut out = Flaky {
            got: Vec::new(),
            calls: 0,
        };
        write_fully(&mut out, b"0123456789").unwrap();
        assert_eq!(out.got, b"0123456789");
    }
}
