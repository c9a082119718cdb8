//! `mica ctl`: the host side of the control protocol (`mica_abi::ctl`), over the Unix socket
//! QEMU connects to the `ctl` domain's virtio console.
//!
//! [`Client`] frames requests and reads replies, skipping anything that is not the reply to
//! its request (error replies the server sent for earlier junk, bytes of an earlier client).
//! [`execute`] runs one command and formats the answer as a table or JSON; it returns the
//! exit status, so `mica ctl` and the smoke harness's `ctl` steps share it. Formatting is
//! pure ([`format_list`], [`format_stats`], ...) and unit-tested.

use mica_abi::ctl::{
    check_header, name_field, name_str, ConsoleReply, ConsoleRequest, CreateRequest, DomainEntry,
    DomainRequest, ErrorCode, ErrorReply, FrameHeader, Kind, StatsReply, MAGIC, VERSION,
};
use mica_abi::Status;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use zerocopy::{FromBytes, IntoBytes};

/// Where `mica run` puts the control socket unless told otherwise.
pub const DEFAULT_SOCKET: &str = "build/ctl.sock";
/// How long a request may wait for its reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

/// Exit status: done.
pub const EXIT_OK: u8 = 0;
/// Exit status: the system refused (no such domain, no memory, the kernel said no).
pub const EXIT_REFUSED: u8 = 1;
/// Exit status: bad command line, no connection, or no (sensible) answer.
pub const EXIT_USAGE: u8 = 2;

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// The socket cannot be reached.
    #[error("cannot connect to {path}: {source} (is the system running? `mica run` prints where its control socket is)")]
    Connect {
        /// The socket.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Reading or writing failed.
    #[error("control channel: {0}")]
    Io(#[from] std::io::Error),
    /// No reply in time.
    #[error("no reply from the ctl domain within {0} s (is the system booted and `ctl: ready` printed?)")]
    Timeout(u64),
    /// A reply that breaks the protocol.
    #[error("the ctl domain sent a malformed reply: {0}")]
    BadReply(&'static str),
    /// A name that does not fit the protocol.
    #[error("`{0}` is not a domain name: use 1 to 31 characters from a-z, 0-9, -")]
    BadName(String),
}

/// A reply: success with its payload, or the server's error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `Kind::Ok` and its payload.
    Ok(Vec<u8>),
    /// `Kind::Error`.
    Error(ErrorReply),
}

/// A connection to the ctl domain.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    next_id: u32,
    /// Error replies to other requests (or to junk) seen while waiting.
    pub stray_errors: Vec<ErrorReply>,
}

/// One frame: a header and a payload.
pub fn frame(kind: Kind, id: u32, payload: &[u8]) -> Vec<u8> {
    let header = FrameHeader {
        magic: MAGIC,
        version: VERSION,
        kind: kind as u16,
        request_id: id,
        payload_len: payload.len() as u32,
    };
    let mut out = header.as_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

impl Client {
    /// Connects to the socket at `path`.
    pub fn connect(path: &Path) -> Result<Client, CtlError> {
        let stream = UnixStream::connect(path).map_err(|source| CtlError::Connect {
            path: path.to_owned(),
            source,
        })?;
        // Request ids: distinct across clients, never 0 (the server's id for junk).
        let next_id = (std::process::id() << 12) | 1;
        Ok(Client {
            stream,
            next_id,
            stray_errors: Vec::new(),
        })
    }

    /// Sends raw bytes (the garbage tests).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), CtlError> {
        self.stream.write_all(bytes)?;
        Ok(())
    }

    /// Sends a request and waits for its reply.
    pub fn request(&mut self, kind: Kind, payload: &[u8]) -> Result<Reply, CtlError> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.stream.write_all(&frame(kind, id, payload))?;
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            let (header, payload) = self.read_frame(deadline)?;
            let reply = match Kind::from_u16(header.kind) {
                Some(Kind::Ok) => Reply::Ok(payload),
                Some(Kind::Error) => Reply::Error(
                    ErrorReply::read_from_bytes(&payload)
                        .map_err(|_| CtlError::BadReply("an error reply of the wrong size"))?,
                ),
                _ => return Err(CtlError::BadReply("a frame that is no reply")),
            };
            if header.request_id == id {
                return Ok(reply);
            }
            if let Reply::Error(e) = reply {
                self.stray_errors.push(e);
            }
        }
    }

    fn read_exact(&mut self, buf: &mut [u8], deadline: Instant) -> Result<(), CtlError> {
        let mut got = 0;
        while got < buf.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(CtlError::Timeout(REPLY_TIMEOUT.as_secs()));
            }
            self.stream.set_read_timeout(Some(left))?;
            match self.stream.read(&mut buf[got..]) {
                Ok(0) => return Err(CtlError::BadReply("the connection closed")),
                Ok(n) => got += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(CtlError::Timeout(REPLY_TIMEOUT.as_secs()))
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The next frame: scans for the magic, checks the header, reads the payload.
    fn read_frame(&mut self, deadline: Instant) -> Result<(FrameHeader, Vec<u8>), CtlError> {
        let mut window = [0u8; 4];
        self.read_exact(&mut window, deadline)?;
        while window != MAGIC {
            let mut b = [0u8];
            self.read_exact(&mut b, deadline)?;
            window.rotate_left(1);
            window[3] = b[0];
        }
        let mut rest = [0u8; 12];
        self.read_exact(&mut rest, deadline)?;
        let mut bytes = window.to_vec();
        bytes.extend_from_slice(&rest);
        let header = FrameHeader::read_from_bytes(&bytes)
            .map_err(|_| CtlError::BadReply("a short header"))?;
        let len = check_header(&header).map_err(|code| match code {
            ErrorCode::Version => CtlError::BadReply("another protocol version"),
            ErrorCode::TooLarge => CtlError::BadReply("a payload larger than the protocol allows"),
            _ => CtlError::BadReply("a bad header"),
        })?;
        let mut payload = vec![0u8; len];
        self.read_exact(&mut payload, deadline)?;
        Ok((header, payload))
    }
}

/// A `mica ctl` command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Every domain.
    List,
    /// Create a domain from an image record.
    Create {
        /// Its name.
        name: String,
        /// The image record.
        image: String,
        /// RAM override.
        memory_kib: Option<u32>,
        /// vCPU override.
        vcpus: Option<u32>,
        /// x0 override.
        arg: Option<u64>,
    },
    /// Pause.
    Pause(String),
    /// Unpause.
    Unpause(String),
    /// Destroy.
    Destroy(String),
    /// Restart.
    Reboot(String),
    /// Console output.
    Console {
        /// The domain.
        name: String,
        /// Keep printing what comes.
        follow: bool,
    },
    /// Statistics.
    Stats,
}

fn name(text: &str) -> Result<[u8; 32], CtlError> {
    name_field(text)
        .filter(|_| {
            text.len() < 32
                && text
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
        .ok_or_else(|| CtlError::BadName(text.to_owned()))
}

/// The state name of a `DomainEntry::state`.
pub fn state_name(state: u32) -> &'static str {
    match state {
        0 => "running",
        1 => "paused",
        2 => "dying",
        _ => "unknown",
    }
}

/// The entries of a list reply.
pub fn parse_list(payload: &[u8]) -> Result<Vec<DomainEntry>, CtlError> {
    if !payload.len().is_multiple_of(size_of::<DomainEntry>()) {
        return Err(CtlError::BadReply("a list reply of the wrong size"));
    }
    Ok(payload
        .chunks(size_of::<DomainEntry>())
        .filter_map(|c| DomainEntry::read_from_bytes(c).ok())
        .collect())
}

/// `list` as a table.
pub fn format_list(entries: &[DomainEntry]) -> String {
    let mut out = format!(
        "{:<4} {:<24} {:<8} {:>5} {:>12} {:>12}\n",
        "ID", "NAME", "STATE", "VCPUS", "MEMORY", "CPU TIME"
    );
    for e in entries {
        out.push_str(&format!(
            "{:<4} {:<24} {:<8} {:>5} {:>8} KiB {:>10.3} s\n",
            e.id,
            name_str(&e.name),
            state_name(e.state),
            e.vcpus,
            e.memory_bytes / 1024,
            e.cpu_time_ns as f64 / 1e9
        ));
    }
    out
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `list --json`: one object per domain.
pub fn format_list_json(entries: &[DomainEntry]) -> String {
    let items: Vec<String> = entries
        .iter()
        .map(|e| {
            format!(
                "{{\"id\": {}, \"name\": {}, \"state\": \"{}\", \"vcpus\": {}, \"memory_kib\": {}, \"cpu_time_ns\": {}}}",
                e.id,
                json_string(name_str(&e.name)),
                state_name(e.state),
                e.vcpus,
                e.memory_bytes / 1024,
                e.cpu_time_ns
            )
        })
        .collect();
    format!("[{}]\n", items.join(", "))
}

/// `stats` as lines.
pub fn format_stats(s: &StatsReply) -> String {
    format!(
        "domains:          {}\npool free:        {} KiB\nrequests served:  {}\nerrors answered:  {}\n",
        s.domains,
        s.pool_free_bytes / 1024,
        s.requests,
        s.errors
    )
}

/// `stats --json`.
pub fn format_stats_json(s: &StatsReply) -> String {
    format!(
        "{{\"domains\": {}, \"pool_free_kib\": {}, \"requests\": {}, \"errors\": {}}}\n",
        s.domains,
        s.pool_free_bytes / 1024,
        s.requests,
        s.errors
    )
}

/// What an error reply means, in words, and the exit status it gives.
pub fn describe_error(e: &ErrorReply) -> (String, u8) {
    let status = match Status::from_raw(u64::from(e.status)) {
        Some(Err(s)) => format!("{s:?}"),
        _ => e.status.to_string(),
    };
    let refused = |s: &str| (s.to_owned(), EXIT_REFUSED);
    match e.code {
        1 => (
            "the ctl domain found the request malformed".into(),
            EXIT_USAGE,
        ),
        2 => (
            "the ctl domain speaks another protocol version".into(),
            EXIT_USAGE,
        ),
        3 => (
            "the ctl domain does not know this request".into(),
            EXIT_USAGE,
        ),
        4 => ("the request is too large".into(), EXIT_USAGE),
        5 => refused("no such domain"),
        6 => refused("no such image in the system image"),
        7 => (format!("refused by the system ({status})"), EXIT_REFUSED),
        8 => refused("not enough memory in the ctl domain's pool"),
        _ => (format!("unknown error code {}", e.code), EXIT_USAGE),
    }
}

/// The short name of an error code (JSON).
fn error_key(code: u32) -> &'static str {
    match code {
        1 => "malformed",
        2 => "version",
        3 => "unknown-request",
        4 => "too-large",
        5 => "no-such-domain",
        6 => "no-such-image",
        7 => "refused",
        8 => "no-memory",
        _ => "unknown",
    }
}

/// The request for a command (`None` for console, which pages).
fn request_of(command: &Command) -> Result<Option<(Kind, Vec<u8>)>, CtlError> {
    let domain = |n: &str| -> Result<Vec<u8>, CtlError> {
        Ok(DomainRequest { name: name(n)? }.as_bytes().to_vec())
    };
    Ok(Some(match command {
        Command::List => (Kind::List, Vec::new()),
        Command::Stats => (Kind::Stats, Vec::new()),
        Command::Pause(n) => (Kind::Pause, domain(n)?),
        Command::Unpause(n) => (Kind::Unpause, domain(n)?),
        Command::Destroy(n) => (Kind::Destroy, domain(n)?),
        Command::Reboot(n) => (Kind::Reboot, domain(n)?),
        Command::Create {
            name: n,
            image,
            memory_kib,
            vcpus,
            arg,
        } => (
            Kind::Create,
            CreateRequest {
                name: name(n)?,
                image: name(image)?,
                memory_kib: memory_kib.unwrap_or(0),
                vcpus: vcpus.unwrap_or(0),
                arg: arg.unwrap_or(0),
                use_arg: u32::from(arg.is_some()),
                reserved: 0,
            }
            .as_bytes()
            .to_vec(),
        ),
        Command::Console { .. } => return Ok(None),
    }))
}

/// Runs `command` against the socket at `socket`, writing its answer to `out` and problems
/// to `err`; returns the exit status.
pub fn execute(
    socket: &Path,
    command: &Command,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    match execute_inner(socket, command, json, out) {
        Ok(Ok(())) => EXIT_OK,
        Ok(Err(e)) => {
            let (text, status) = describe_error(&e);
            if json {
                let _ = writeln!(
                    out,
                    "{{\"error\": \"{}\", \"message\": {}, \"status\": {}}}",
                    error_key(e.code),
                    json_string(&text),
                    e.status
                );
            }
            let _ = writeln!(err, "mica ctl: {text}");
            status
        }
        Err(e) => {
            let _ = writeln!(err, "mica ctl: {e}");
            EXIT_USAGE
        }
    }
}

fn execute_inner(
    socket: &Path,
    command: &Command,
    json: bool,
    out: &mut dyn Write,
) -> Result<Result<(), ErrorReply>, CtlError> {
    let request = request_of(command)?;
    let mut client = Client::connect(socket)?;
    if let Command::Console { name: n, follow } = command {
        return console(&mut client, n, *follow, json, out);
    }
    let Some((kind, payload)) = request else {
        return Ok(Ok(()));
    };
    let reply = match client.request(kind, &payload)? {
        Reply::Ok(p) => p,
        Reply::Error(e) => return Ok(Err(e)),
    };
    let done = |what: &str, n: &str| {
        if json {
            format!("{{\"ok\": true, \"{what}\": {}}}\n", json_string(n))
        } else {
            format!("{what} {n}\n")
        }
    };
    let text = match command {
        Command::List => {
            let entries = parse_list(&reply)?;
            if json {
                format_list_json(&entries)
            } else {
                format_list(&entries)
            }
        }
        Command::Stats => {
            let s = StatsReply::read_from_bytes(&reply)
                .map_err(|_| CtlError::BadReply("a stats reply of the wrong size"))?;
            if json {
                format_stats_json(&s)
            } else {
                format_stats(&s)
            }
        }
        Command::Create { name: n, .. } => done("created", n),
        Command::Pause(n) => done("paused", n),
        Command::Unpause(n) => done("unpaused", n),
        Command::Destroy(n) => done("destroyed", n),
        Command::Reboot(n) => done("rebooted", n),
        Command::Console { .. } => String::new(),
    };
    out.write_all(text.as_bytes())?;
    Ok(Ok(()))
}

/// `console NAME [--follow]`: what the domain printed (the last 4 KiB the kernel keeps),
/// then with `--follow` whatever comes, until interrupted.
fn console(
    client: &mut Client,
    n: &str,
    follow: bool,
    json: bool,
    out: &mut dyn Write,
) -> Result<Result<(), ErrorReply>, CtlError> {
    let mut offset = 0u64;
    let mut all = Vec::new();
    loop {
        let request = ConsoleRequest {
            name: name(n)?,
            offset,
        };
        let payload = match client.request(Kind::Console, request.as_bytes())? {
            Reply::Ok(p) => p,
            Reply::Error(e) => return Ok(Err(e)),
        };
        let (head, bytes) = ConsoleReply::read_from_prefix(&payload)
            .map_err(|_| CtlError::BadReply("a console reply without its header"))?;
        if json {
            all.extend_from_slice(bytes);
        } else {
            out.write_all(bytes)?;
            out.flush()?;
        }
        offset = head.offset + bytes.len() as u64;
        if offset >= head.total {
            if !follow {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    if json {
        writeln!(
            out,
            "{{\"name\": {}, \"output\": {}}}",
            json_string(n),
            json_string(&String::from_utf8_lossy(&all))
        )?;
    }
    Ok(Ok(()))
}

/// What the garbage test sends (a smoke step, `garbage = { ... }`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Garbage {
    /// Random bytes (xorshift from `seed`).
    #[serde(default)]
    pub random_bytes: usize,
    /// The seed.
    #[serde(default)]
    pub seed: u64,
    /// Frames cut short (each followed by the next).
    #[serde(default)]
    pub truncated_frames: usize,
    /// Frames announcing a payload larger than the protocol allows.
    #[serde(default)]
    pub oversized_frames: usize,
}

/// The bytes of a garbage run.
pub fn garbage_bytes(g: &Garbage) -> Vec<u8> {
    let mut state = g.seed | 1;
    let mut out = Vec::with_capacity(g.random_bytes);
    for _ in 0..g.random_bytes {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.push((state >> 24) as u8);
    }
    for i in 0..g.truncated_frames {
        let whole = frame(
            Kind::Pause,
            0x7000 + i as u32,
            DomainRequest {
                name: name_field("nobody").unwrap_or([0; 32]),
            }
            .as_bytes(),
        );
        // Cut inside the header, then inside the payload, alternately.
        let cut = if i % 2 == 0 { 7 } else { 16 + 5 };
        out.extend_from_slice(&whole[..cut]);
    }
    for i in 0..g.oversized_frames {
        let mut f = frame(Kind::List, 0x7800 + i as u32, &[]);
        f[12..16].copy_from_slice(&0x00FF_FFFFu32.to_le_bytes());
        out.extend_from_slice(&f);
    }
    out
}

/// Sends a garbage run, then a `stats` request, and reports what came back: the error
/// replies the junk earned and that `stats` was still answered.
pub fn garbage(socket: &Path, g: &Garbage, out: &mut dyn Write) -> Result<u8, CtlError> {
    let mut client = Client::connect(socket)?;
    let bytes = garbage_bytes(g);
    client.send_raw(&bytes)?;
    let reply = client.request(Kind::Stats, &[])?;
    let mut counts = std::collections::BTreeMap::new();
    for e in &client.stray_errors {
        *counts.entry(error_key(e.code)).or_insert(0u32) += 1;
    }
    let summary: Vec<String> = counts.iter().map(|(k, n)| format!("{k} x{n}")).collect();
    writeln!(
        out,
        "garbage: sent {} bytes; {} error replies ({})",
        bytes.len(),
        client.stray_errors.len(),
        summary.join(", ")
    )?;
    match reply {
        Reply::Ok(p) => {
            let s = StatsReply::read_from_bytes(&p)
                .map_err(|_| CtlError::BadReply("a stats reply of the wrong size"))?;
            writeln!(
                out,
                "garbage: then stats answered: {} requests served, {} errors answered",
                s.requests, s.errors
            )?;
            Ok(EXIT_OK)
        }
        Reply::Error(e) => {
            writeln!(out, "garbage: stats refused: {}", describe_error(&e).0)?;
            Ok(EXIT_REFUSED)
        }
    }
}

/// The QEMU arguments that give the control domain its console on `socket`: a
/// virtio-serial device (QEMU places it in the highest free virtio-mmio transport: 31,
/// at 0x0a003e00 with INTID 79, when it is the only virtio device) with a console port
/// whose other end is a Unix socket QEMU listens on.
pub fn qemu_args(socket: &Path) -> Vec<String> {
    let path = socket.display().to_string().replace(',', ",,");
    vec![
        "-device".into(),
        "virtio-serial-device".into(),
        "-chardev".into(),
        format!("socket,id=ctl,path={path},server=on,wait=off"),
        "-device".into(),
        "virtconsole,chardev=ctl".into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u32, n: &str, state: u32) -> DomainEntry {
        DomainEntry {
            name: name_field(n).unwrap(),
            id,
            state,
            vcpus: 1,
            reserved: 0,
            memory_bytes: 1 << 20,
            cpu_time_ns: 1_500_000_000,
        }
    }

    #[test]
    fn list_formats_as_table_and_json() {
        let entries = [entry(3, "spin-a", 0), entry(4, "spin-\"b", 1)];
        let table = format_list(&entries);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("ID   NAME"), "{table}");
        assert!(lines[1].starts_with("3    spin-a "), "{table}");
        assert!(lines[1].contains("running"));
        assert!(lines[1].contains(" 1024 KiB"));
        assert!(lines[1].ends_with("1.500 s"));
        assert!(lines[2].contains("paused"));
        assert_eq!(
            format_list_json(&entries[..1]),
            "[{\"id\": 3, \"name\": \"spin-a\", \"state\": \"running\", \"vcpus\": 1, \"memory_kib\": 1024, \"cpu_time_ns\": 1500000000}]\n"
        );
        assert!(format_list_json(&entries).contains("\"spin-\\\"b\""));
        let bytes: Vec<u8> = entries.iter().flat_map(|e| e.as_bytes().to_vec()).collect();
        assert_eq!(parse_list(&bytes).unwrap(), entries);
        assert!(parse_list(&bytes[..10]).is_err());
    }

    #[test]
    fn stats_and_errors_format() {
        let s = StatsReply {
            domains: 4,
            cpus: 0,
            pool_free_bytes: 60 << 20,
            requests: 9,
            errors: 2,
        };
        assert!(format_stats(&s).contains("pool free:        61440 KiB"));
        assert_eq!(
            format_stats_json(&s),
            "{\"domains\": 4, \"pool_free_kib\": 61440, \"requests\": 9, \"errors\": 2}\n"
        );
        let e = ErrorReply { code: 5, status: 0 };
        assert_eq!(describe_error(&e), ("no such domain".into(), EXIT_REFUSED));
        let e = ErrorReply {
            code: 7,
            status: Status::WrongState as u32,
        };
        assert_eq!(
            describe_error(&e),
            ("refused by the system (WrongState)".into(), EXIT_REFUSED)
        );
        assert_eq!(
            describe_error(&ErrorReply { code: 1, status: 0 }).1,
            EXIT_USAGE
        );
    }

    #[test]
    fn requests_are_framed_with_checked_names() {
        let (kind, payload) = request_of(&Command::Create {
            name: "c".into(),
            image: "spinner".into(),
            memory_kib: Some(1024),
            vcpus: None,
            arg: Some(20),
        })
        .unwrap()
        .unwrap();
        assert_eq!(kind, Kind::Create);
        let c = CreateRequest::read_from_bytes(&payload).unwrap();
        assert_eq!((c.memory_kib, c.vcpus, c.arg, c.use_arg), (1024, 0, 20, 1));
        assert!(matches!(
            request_of(&Command::Pause("Bad Name".into())),
            Err(CtlError::BadName(_))
        ));
        let f = frame(Kind::List, 5, &[]);
        let h = FrameHeader::read_from_bytes(&f).unwrap();
        assert_eq!(check_header(&h), Ok(0));
        assert_eq!(h.request_id, 5);
    }

    #[test]
    fn a_missing_socket_is_a_usage_error() {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let status = execute(
            Path::new("/nonexistent/ctl.sock"),
            &Command::List,
            false,
            &mut out,
            &mut err,
        );
        assert_eq!(status, EXIT_USAGE);
        assert!(String::from_utf8(err)
            .unwrap()
            .contains("cannot connect to /nonexistent/ctl.sock"));
    }

    #[test]
    fn a_fake_server_is_answered_and_junk_replies_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut header = [0u8; 16];
            s.read_exact(&mut header).unwrap();
            let h = FrameHeader::read_from_bytes(&header).unwrap();
            // Junk, a stray error, then the reply.
            s.write_all(b"noise").unwrap();
            let stray = ErrorReply { code: 1, status: 0 };
            s.write_all(&frame(Kind::Error, 0, stray.as_bytes()))
                .unwrap();
            let e = entry(1, "sched", 0);
            s.write_all(&frame(Kind::Ok, h.request_id, e.as_bytes()))
                .unwrap();
        });
        let mut out = Vec::new();
        let mut err = Vec::new();
        let status = execute(&path, &Command::List, false, &mut out, &mut err);
        server.join().unwrap();
        assert_eq!(status, EXIT_OK, "{}", String::from_utf8_lossy(&err));
        assert!(String::from_utf8(out).unwrap().contains("sched"));
    }

    #[test]
    fn garbage_and_qemu_args() {
        let g = Garbage {
            random_bytes: 100,
            seed: 7,
            truncated_frames: 2,
            oversized_frames: 1,
        };
        let bytes = garbage_bytes(&g);
        assert_eq!(bytes.len(), 100 + 7 + 21 + 16);
        assert_eq!(garbage_bytes(&g), bytes, "deterministic");
        assert_eq!(
            qemu_args(Path::new("build/a,b.sock"))[3],
            "socket,id=ctl,path=build/a,,b.sock,server=on,wait=off"
        );
    }
}
