//! A running QEMU whose console is read line by line with a deadline.
//!
//! QEMU's stdout (the serial console) and stderr are read by one thread each and sent over a
//! channel, so a caller can wait for the next line with a time limit: a guest that prints
//! nothing still times out. `mica smoke` judges these lines and `mica bench` collects
//! measurements from them; both boot through [`crate::qemu`].

use crate::qemu::{self, Launch, QemuError};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Instant;

/// What the reader threads send.
enum Event {
    /// A line of the serial console (QEMU's stdout).
    Serial(String),
    /// A line of QEMU's own stderr.
    Stderr(String),
    /// One of the two pipes closed.
    Closed,
}

/// What came next from QEMU.
#[derive(Debug)]
pub enum Next {
    /// A line of the serial console (QEMU's stdout), without its line end.
    Serial(String),
    /// A line QEMU itself printed on stderr.
    Stderr(String),
    /// QEMU exited (both pipes closed) with this status; every line has been returned.
    Exited(ExitStatus),
    /// The deadline passed first.
    TimedOut,
}

/// QEMU started with stdin closed and stdout/stderr piped to reader threads.
pub struct Running {
    child: Child,
    rx: mpsc::Receiver<Event>,
    readers: Vec<JoinHandle<()>>,
    open_pipes: usize,
}

/// Sends every line of `pipe` as `wrap(line)`, then [`Event::Closed`]; with `log`, also
/// writes each line there as it came.
fn pump(
    pipe: impl Read,
    tx: mpsc::Sender<Event>,
    wrap: fn(String) -> Event,
    mut log: Option<std::fs::File>,
) {
    let mut reader = BufReader::new(pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if let Some(file) = log.as_mut() {
                    if file.write_all(&buf).is_err() {
                        log = None;
                    }
                }
                let text = String::from_utf8_lossy(&buf);
                let line = text.trim_end_matches(['\n', '\r']).to_owned();
                if tx.send(wrap(line)).is_err() {
                    break;
                }
            }
        }
    }
    let _ = tx.send(Event::Closed);
}

impl Running {
    /// Starts `launch` with stdin closed and both output pipes read.
    pub fn spawn(launch: &Launch) -> Result<Running, QemuError> {
        Running::spawn_logged(launch, None)
    }

    /// As [`Running::spawn`], also writing the serial lines to `log` as they come (the serial
    /// log `mica ctl console` reads for domains that have ended).
    pub fn spawn_logged(launch: &Launch, log: Option<std::fs::File>) -> Result<Running, QemuError> {
        let mut child = launch
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| QemuError::Spawn {
                program: launch.program.clone(),
                source,
            })?;
        let (tx, rx) = mpsc::channel();
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            let tx = tx.clone();
            readers.push(std::thread::spawn(move || {
                pump(out, tx, Event::Serial, log)
            }));
        }
        if let Some(err) = child.stderr.take() {
            let tx = tx.clone();
            readers.push(std::thread::spawn(move || {
                pump(err, tx, Event::Stderr, None)
            }));
        }
        let open_pipes = readers.len();
        Ok(Running {
            child,
            rx,
            readers,
            open_pipes,
        })
    }

    /// QEMU's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line, QEMU's exit, or [`Next::TimedOut`] at `deadline`.
    pub fn next(&mut self, deadline: Instant) -> Result<Next, QemuError> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(Event::Serial(line)) => return Ok(Next::Serial(line)),
                Ok(Event::Stderr(line)) => return Ok(Next::Stderr(line)),
                Ok(Event::Closed) => {
                    self.open_pipes -= 1;
                    if self.open_pipes == 0 {
                        // Both pipes closed: QEMU has exited (or is about to); every line is in.
                        let status = self.child.wait().map_err(QemuError::Wait)?;
                        return Ok(Next::Exited(status));
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => return Ok(Next::TimedOut),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().map_err(QemuError::Wait)?;
                    return Ok(Next::Exited(status));
                }
            }
        }
    }

    /// Stops QEMU if it still runs (SIGTERM, then SIGKILL), reaps it and joins the readers.
    pub fn stop(mut self) -> Result<ExitStatus, QemuError> {
        let status = qemu::stop(&mut self.child)?;
        drop(self.rx);
        for reader in self.readers {
            // A reader only ends when its pipe closes, which stopping QEMU guarantees.
            let _ = reader.join();
        }
        Ok(status)
    }
}
