//! Line-buffered console output over the `console_write` hypercall.
//!
//! The kernel prefixes every complete line with the domain's name, so a domain should hand
//! it whole lines: [`LineWriter`] collects bytes until a newline (or until its buffer is
//! full) and then sends them in chunks of at most `CONSOLE_WRITE_MAX` (40) bytes, resending
//! whatever the kernel did not take. [`crate::println!`] formats one whole line under a lock,
//! so lines from several vCPUs never interleave.

use crate::hypercall;
use core::fmt;
use mica_abi::hypercall::CONSOLE_WRITE_MAX;
use mica_abi::Status;

/// Longest line sent in one piece; a longer line goes out in several.
pub const LINE_CAPACITY: usize = 256;

/// Where a [`LineWriter`] sends its bytes.
pub trait Sink {
    /// Writes at most [`CONSOLE_WRITE_MAX`] bytes; returns how many were taken.
    fn write(&mut self, bytes: &[u8]) -> Result<usize, Status>;
}

/// The hypervisor console (`console_write`).
#[derive(Clone, Copy, Debug, Default)]
pub struct HypercallSink;

impl Sink for HypercallSink {
    fn write(&mut self, bytes: &[u8]) -> Result<usize, Status> {
        hypercall::console_write(bytes)
    }
}

/// Buffers bytes until a line is complete, then sends it in ≤ 40-byte chunks.
#[derive(Debug)]
pub struct LineWriter<S> {
    sink: S,
    buf: [u8; LINE_CAPACITY],
    len: usize,
}

impl<S: Sink> LineWriter<S> {
    /// An empty writer over `sink`.
    pub const fn new(sink: S) -> LineWriter<S> {
        LineWriter {
            sink,
            buf: [0; LINE_CAPACITY],
            len: 0,
        }
    }

    /// Buffers `bytes`, sending each line as it completes and the buffer whenever it fills.
    pub fn push(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.buf[self.len] = byte;
            self.len += 1;
            if byte == b'\n' || self.len == LINE_CAPACITY {
                self.flush();
            }
        }
    }

    /// Sends whatever is buffered, even without a newline. Bytes the sink refuses (an
    /// error, or taking nothing) are dropped: there is nowhere else to report them.
    pub fn flush(&mut self) {
        let mut rest = &self.buf[..self.len];
        while !rest.is_empty() {
            let chunk = &rest[..rest.len().min(CONSOLE_WRITE_MAX)];
            match self.sink.write(chunk) {
                Ok(n) if n > 0 => rest = &rest[n.min(chunk.len())..],
                _ => break,
            }
        }
        self.len = 0;
    }

    /// Bytes waiting for the end of their line.
    pub fn pending(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The sink.
    pub fn sink(&self) -> &S {
        &self.sink
    }
}

impl<S: Sink> fmt::Write for LineWriter<S> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

/// The domain's console, shared by its vCPUs.
static CONSOLE: spin::Mutex<LineWriter<HypercallSink>> =
    spin::Mutex::new(LineWriter::new(HypercallSink));

/// Used by [`crate::print!`].
#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    let mut console = CONSOLE.lock();
    let _ = fmt::Write::write_fmt(&mut *console, args);
}

/// Used by [`crate::println!`]: the whole line under one lock.
#[doc(hidden)]
pub fn _println(args: fmt::Arguments<'_>) {
    let mut console = CONSOLE.lock();
    let _ = fmt::Write::write_fmt(&mut *console, args);
    console.push(b"\n");
}

/// Sends a partial line now (e.g. a prompt).
pub fn flush() {
    CONSOLE.lock().flush();
}

/// A writer of its own, for reports that must not wait for the shared console's lock
/// (panics, exceptions: the lock may be held by the code that failed).
pub fn emergency() -> LineWriter<HypercallSink> {
    LineWriter::new(HypercallSink)
}

/// Prints to the hypervisor console; the text is sent when its line ends.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::console::_print(::core::format_args!($($arg)*))
    };
}

/// Prints one line to the hypervisor console.
#[macro_export]
macro_rules! println {
    () => {
        $crate::console::_println(::core::format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::console::_println(::core::format_args!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    /// Records every chunk; optionally takes fewer bytes than offered, or fails.
    #[derive(Default)]
    struct Mock {
        chunks: Vec<Vec<u8>>,
        take_at_most: Option<usize>,
        fail: bool,
    }

    impl Sink for Mock {
        fn write(&mut self, bytes: &[u8]) -> Result<usize, Status> {
            assert!(bytes.len() <= CONSOLE_WRITE_MAX, "chunk of {}", bytes.len());
            if self.fail {
                return Err(Status::InvalidArgument);
            }
            let n = self
                .take_at_most
                .map_or(bytes.len(), |m| m.min(bytes.len()));
            self.chunks.push(bytes[..n].to_vec());
            Ok(n)
        }
    }

    fn sent(w: &LineWriter<Mock>) -> Vec<u8> {
        w.sink().chunks.concat()
    }

    #[test]
    fn nothing_is_sent_before_the_line_ends() {
        let mut w = LineWriter::new(Mock::default());
        write!(w, "hello: count {}", 3).unwrap();
        assert!(w.sink().chunks.is_empty());
        assert_eq!(w.pending(), b"hello: count 3");
        w.push(b"\n");
        assert_eq!(w.sink().chunks, vec![b"hello: count 3\n".to_vec()]);
        assert!(w.pending().is_empty());
    }

    #[test]
    fn long_lines_go_in_forty_byte_chunks() {
        let mut w = LineWriter::new(Mock::default());
        let line = "x".repeat(100) + "\n";
        w.write_str(&line).unwrap();
        let sizes: Vec<usize> = w.sink().chunks.iter().map(Vec::len).collect();
        assert_eq!(sizes, [40, 40, 21]);
        assert_eq!(sent(&w), line.as_bytes());
    }

    #[test]
    fn exactly_forty_bytes_is_one_chunk() {
        let mut w = LineWriter::new(Mock::default());
        w.push(&[b'a'; 39]);
        w.push(b"\n");
        assert_eq!(w.sink().chunks.len(), 1);
        assert_eq!(w.sink().chunks[0].len(), 40);
    }

    #[test]
    fn several_lines_in_one_write_are_sent_line_by_line() {
        let mut w = LineWriter::new(Mock::default());
        w.push(b"one\ntwo\nthr");
        assert_eq!(w.sink().chunks, vec![b"one\n".to_vec(), b"two\n".to_vec()]);
        assert_eq!(w.pending(), b"thr");
        w.flush();
        assert_eq!(w.sink().chunks.last().unwrap(), b"thr");
    }

    #[test]
    fn a_full_buffer_is_flushed_without_a_newline() {
        let mut w = LineWriter::new(Mock::default());
        w.push(&[b'z'; LINE_CAPACITY + 5]);
        assert_eq!(sent(&w).len(), LINE_CAPACITY);
        assert_eq!(w.pending().len(), 5);
    }

    #[test]
    fn partial_writes_are_resent() {
        let mut w = LineWriter::new(Mock {
            take_at_most: Some(7),
            ..Mock::default()
        });
        let line = "the quick brown fox jumps over the lazy dog, twice over\n";
        w.write_str(line).unwrap();
        assert_eq!(sent(&w), line.as_bytes());
        assert!(w.sink().chunks.iter().all(|c| c.len() <= 7));
    }

    #[test]
    fn a_refusing_sink_drops_the_line_and_does_not_hang() {
        let mut w = LineWriter::new(Mock {
            fail: true,
            ..Mock::default()
        });
        w.push(b"lost\n");
        assert!(w.pending().is_empty());
        let mut w = LineWriter::new(Mock {
            take_at_most: Some(0),
            ..Mock::default()
        });
        w.push(b"lost too\n");
        assert!(w.pending().is_empty());
    }

    #[test]
    fn println_goes_through_console_write() {
        crate::conduit::mock::take();
        crate::println!("hi {}", 42);
        let log = crate::conduit::mock::take();
        assert_eq!(log.len(), 1);
        assert_eq!(
            log[0].function,
            mica_abi::hypercall::Call::ConsoleWrite.function_id()
        );
        assert_eq!(log[0].args[0], 6);
        assert_eq!(log[0].args[1], u64::from_le_bytes(*b"hi 42\n\0\0"));
    }
}
