//! `mica ctl`: the host side of the control protocol (`mica_abi::ctl`), over the Unix socket
//! QEMU connects to the `ctl` domain's virtio console.
//!
//! [`Client`] frames requests and reads replies, skipping anything that is not the reply to
//! its request (error replies the server sent for earlier junk, bytes of an earlier client).
//! [`execute`] runs one command and formats the answer as a table or JSON; it returns the
//! exit status, so `mica ctl` and the smoke harness's `ctl` steps share it. Formatting is
//! pure ([`format_list`], [`format_stats`], ...) and unit-tested.

use mica_abi::ctl::{
    check_header, name_field, name_str, ConsoleInputReply, ConsoleInputRequest, ConsoleReply,
    ConsoleRequest, CreateRequest, DomainEntry, DomainRequest, ErrorCode, ErrorReply, FrameHeader,
    Kind, StatsReply, CONSOLE_INPUT_BYTES, FLAG_FORCE, MAGIC, ROLE_CONTROL, ROLE_SCHED_POLICY,
    VERSION,
};
use mica_abi::Status;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use zerocopy::{FromBytes, IntoBytes};

/// Every `mica ctl` command with its arguments, as `mica ctl --help` shows it (its usage) and
/// docs/toolstack.md repeats it (a test checks they agree).
pub const SYNOPSIS: &str = "mica ctl [--socket PATH] [--json] list
       mica ctl create NAME --image IMG [--memory-kib N] [--vcpus N] [--arg N]
       mica ctl pause NAME | unpause NAME
       mica ctl destroy NAME [--force] | reboot NAME [--force]
       mica ctl console NAME [--follow | --attach]
       mica ctl stats";

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
    /// There is no socket at the path.
    #[error("no control socket at {path}{relative}: `mica run` (and `make run`) creates it there while it runs a system with a control domain (`control = true`), from the directory it was started in; start one, or give its socket with --socket PATH (`mica run` prints where it is)")]
    NoSocket {
        /// The socket, absolute.
        path: PathBuf,
        /// How a relative `--socket` was resolved (empty for an absolute one).
        relative: String,
    },
    /// The socket exists but nothing listens on it.
    #[error("nothing listens on {path}{relative}: the system that created it has stopped; start it again (`make run`) or give another socket with --socket PATH")]
    NotListening {
        /// The socket, absolute.
        path: PathBuf,
        /// How a relative `--socket` was resolved (empty for an absolute one).
        relative: String,
    },
    /// The socket cannot be reached for another reason.
    #[error("cannot connect to the control socket {path}{relative}: {source}")]
    Connect {
        /// The socket, absolute.
        path: PathBuf,
        /// How a relative `--socket` was resolved (empty for an absolute one).
        relative: String,
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
    /// A RAM size the control domain cannot give.
    #[error("--memory-kib {0}: give a multiple of 4 (whole 4 KiB pages), at least 8 (the image and its boot-info page); leave it out for the image record's size")]
    BadMemory(u32),
}

/// Why `connect(2)` failed on `path`, as a [`CtlError`] that names the socket it tried.
pub fn connect_error(path: &Path, source: std::io::Error) -> CtlError {
    let (absolute, relative) = if path.is_absolute() {
        (path.to_owned(), String::new())
    } else {
        let cwd = std::env::current_dir().unwrap_or_default();
        (
            cwd.join(path),
            format!(" (`{}` relative to {})", path.display(), cwd.display()),
        )
    };
    match source.kind() {
        std::io::ErrorKind::NotFound => CtlError::NoSocket {
            path: absolute,
            relative,
        },
        std::io::ErrorKind::ConnectionRefused => CtlError::NotListening {
            path: absolute,
            relative,
        },
        _ => CtlError::Connect {
            path: absolute,
            relative,
            source,
        },
    }
}

/// The serial log `mica run` keeps beside control socket `socket` (`build/ctl.sock` ->
/// `build/ctl.log`): everything the system printed, which `console` reads for a domain that
/// has ended.
pub fn console_log_path(socket: &Path) -> PathBuf {
    socket.with_extension("log")
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
        let stream = UnixStream::connect(path).map_err(|source| connect_error(path, source))?;
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
    /// Destroy (`force`: even a domain the system depends on).
    Destroy {
        /// The domain.
        name: String,
        /// Even the scheduling policy domain.
        force: bool,
    },
    /// Restart (`force`: even a domain the system depends on).
    Reboot {
        /// The domain.
        name: String,
        /// Even the scheduling policy domain.
        force: bool,
    },
    /// Console output.
    Console {
        /// The domain.
        name: String,
        /// Keep printing what comes.
        follow: bool,
        /// Type into it too (`--attach`).
        attach: bool,
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

/// The role name of a `DomainEntry::role` (empty for an ordinary domain).
pub fn role_name(role: u32) -> &'static str {
    match role {
        ROLE_CONTROL => "control",
        ROLE_SCHED_POLICY => "sched-policy",
        _ => "",
    }
}

/// `list` as a table.
pub fn format_list(entries: &[DomainEntry]) -> String {
    let mut out = format!(
        "{:<4} {:<24} {:<8} {:>5} {:>12} {:>12}  {}\n",
        "ID", "NAME", "STATE", "VCPUS", "MEMORY", "CPU TIME", "ROLE"
    );
    for e in entries {
        let line = format!(
            "{:<4} {:<24} {:<8} {:>5} {:>8} KiB {:>10.3} s  {}",
            e.id,
            name_str(&e.name),
            state_name(e.state),
            e.vcpus,
            e.memory_bytes / 1024,
            e.cpu_time_ns as f64 / 1e9,
            role_name(e.role)
        );
        out.push_str(line.trim_end());
        out.push('\n');
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
                "{{\"id\": {}, \"name\": {}, \"state\": \"{}\", \"vcpus\": {}, \"memory_kib\": {}, \"cpu_time_ns\": {}, \"role\": \"{}\"}}",
                e.id,
                json_string(name_str(&e.name)),
                state_name(e.state),
                e.vcpus,
                e.memory_bytes / 1024,
                e.cpu_time_ns,
                match role_name(e.role) {
                    "" => "domain",
                    r => r,
                }
            )
        })
        .collect();
    format!("[{}]\n", items.join(", "))
}

/// `stats` as lines.
pub fn format_stats(s: &StatsReply) -> String {
    format!(
        "domains:          {}\npool free:        {} KiB\nrequests:         {}\n  refused:        {}\nmalformed frames: {}\n",
        s.domains,
        s.pool_free_bytes / 1024,
        s.requests,
        s.refused,
        s.malformed
    )
}

/// `stats --json`.
pub fn format_stats_json(s: &StatsReply) -> String {
    format!(
        "{{\"domains\": {}, \"pool_free_kib\": {}, \"requests\": {}, \"refused\": {}, \"malformed\": {}}}\n",
        s.domains,
        s.pool_free_bytes / 1024,
        s.requests,
        s.refused,
        s.malformed
    )
}

/// What an error reply to a request naming domain `name` (if any) means, in words, and the
/// exit status it gives.
pub fn describe_error(e: &ErrorReply, name: Option<&str>) -> (String, u8) {
    let name = name.unwrap_or("the domain");
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
        9 => refused(&format!(
            "{name} is the control domain itself: it serves `mica ctl`, so it cannot pause, destroy or reboot itself"
        )),
        10 => refused(&format!(
            "a domain called {name} exists: destroy it first or choose another name"
        )),
        11 => refused(&format!(
            "{name} is the scheduling policy domain: without it the pools keep their last scheduling parameters and nothing adjusts them; add --force to do it anyway"
        )),
        12 => refused(&format!(
            "the image is a Linux guest whose device tree was built for its record's memory and vCPUs (and x0 must point at it): create {name} without --memory-kib, --vcpus and --arg"
        )),
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
        9 => "itself",
        10 => "name-taken",
        11 => "protected",
        12 => "fixed-image",
        _ => "unknown",
    }
}

/// The request for a command (`None` for console, which pages).
fn request_of(command: &Command) -> Result<Option<(Kind, Vec<u8>)>, CtlError> {
    let domain = |n: &str, force: bool| -> Result<Vec<u8>, CtlError> {
        Ok(DomainRequest {
            name: name(n)?,
            flags: if force { FLAG_FORCE } else { 0 },
            reserved: 0,
        }
        .as_bytes()
        .to_vec())
    };
    Ok(Some(match command {
        Command::List => (Kind::List, Vec::new()),
        Command::Stats => (Kind::Stats, Vec::new()),
        Command::Pause(n) => (Kind::Pause, domain(n, false)?),
        Command::Unpause(n) => (Kind::Unpause, domain(n, false)?),
        Command::Destroy { name: n, force } => (Kind::Destroy, domain(n, *force)?),
        Command::Reboot { name: n, force } => (Kind::Reboot, domain(n, *force)?),
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
                memory_kib: match memory_kib {
                    None => 0,
                    Some(kib) => check_memory_kib(*kib)?,
                },
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

/// Checks a `--memory-kib` value (0 would mean "the record's" on the wire: refused, as
/// every size the control domain cannot give).
pub fn check_memory_kib(kib: u32) -> Result<u32, CtlError> {
    if kib >= 8 && kib.is_multiple_of(4) {
        Ok(kib)
    } else {
        Err(CtlError::BadMemory(kib))
    }
}

/// The domain a command names, if any.
fn target(command: &Command) -> Option<&str> {
    match command {
        Command::List | Command::Stats => None,
        Command::Create { name, .. }
        | Command::Pause(name)
        | Command::Unpause(name)
        | Command::Destroy { name, .. }
        | Command::Reboot { name, .. }
        | Command::Console { name, .. } => Some(name),
    }
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
    match execute_inner(socket, command, json, out, err) {
        Ok(Ok(())) => EXIT_OK,
        Ok(Err(e)) => {
            let (text, status) = describe_error(&e, target(command));
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
    err: &mut dyn Write,
) -> Result<Result<(), ErrorReply>, CtlError> {
    let request = request_of(command)?;
    let mut client = Client::connect(socket)?;
    if let Command::Console {
        name: n,
        attach: true,
        ..
    } = command
    {
        return attach(&mut client, n, out, err);
    }
    if let Command::Console {
        name: n, follow, ..
    } = command
    {
        return match console(&mut client, n, *follow, json, out)? {
            Err(e) if e.code == ErrorCode::NoSuchDomain as u32 => {
                ended_console(socket, n, e, json, out, err)
            }
            answer => Ok(answer),
        };
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
        Command::Destroy { name: n, .. } => done("destroyed", n),
        Command::Reboot { name: n, .. } => done("rebooted", n),
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
        let (head, bytes) = match console_chunk(client, n, offset)? {
            Ok(chunk) => chunk,
            Err(e) => return Ok(Err(e)),
        };
        if json {
            all.extend_from_slice(&bytes);
        } else {
            out.write_all(&bytes)?;
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

/// The key that leaves `console --attach` on a terminal: Ctrl-] (as `telnet` and `xl
/// console` use).
pub const ATTACH_ESCAPE: u8 = 0x1D;
/// After its input ends (not a terminal), how long `console --attach` waits for output to
/// stop before it leaves, and the most it waits.
pub const ATTACH_QUIET: Duration = Duration::from_millis(1500);
/// The most `console --attach` waits for output after its input ended.
pub const ATTACH_LINGER: Duration = Duration::from_secs(15);

/// Puts the terminal on stdin in raw mode (every key at once, no echo) while it lives, with
/// `stty`, and restores the settings it found when dropped.
struct RawTerminal(Option<String>);

impl RawTerminal {
    fn enter() -> RawTerminal {
        use std::process::{Command as Process, Stdio};
        let saved = Process::new("stty")
            .arg("-g")
            .stdin(Stdio::inherit())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
        if saved.is_some() {
            let _ = Process::new("stty")
                .args(["raw", "-echo"])
                .stdin(Stdio::inherit())
                .status();
        }
        RawTerminal(saved)
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = std::process::Command::new("stty")
                .arg(saved)
                .stdin(std::process::Stdio::inherit())
                .status();
        }
    }
}

/// `console NAME --attach`: the domain's new output as it comes, and what is typed on stdin
/// sent to its console (`console_input`; only a domain with an emulated console, a Linux
/// guest, takes it). On a terminal, keys go one by one (raw mode) and Ctrl-] leaves; from a
/// pipe or file, the input is sent as it is read and, once it ends, output is printed until it
/// has been quiet for [`ATTACH_QUIET`] (at most [`ATTACH_LINGER`]).
fn attach(
    client: &mut Client,
    n: &str,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Result<(), ErrorReply>, CtlError> {
    use std::io::IsTerminal;
    use std::sync::mpsc;
    let terminal = std::io::stdin().is_terminal();
    // Start from what the domain has written so far: only new output is shown.
    let mut offset = match console_chunk(client, n, u64::MAX)? {
        Ok((head, _)) => head.total,
        Err(e) => return Ok(Err(e)),
    };
    let _raw = terminal.then(|| {
        let _ = writeln!(err, "mica ctl: attached to {n}'s console; Ctrl-] leaves");
        RawTerminal::enter()
    });
    let (keys, typed) = mpsc::channel::<Option<Vec<u8>>>();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 256];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = keys.send(None);
                    return;
                }
                Ok(k) => {
                    if keys.send(Some(buf[..k].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut pending: Vec<u8> = Vec::new();
    // Whether the domain's last output left a line unfinished (a shell prompt).
    let mut line_open = false;
    let mut ended: Option<Instant> = None;
    let mut last_output = Instant::now();
    loop {
        while let Ok(message) = typed.try_recv() {
            match message {
                Some(bytes) => {
                    if terminal && bytes.contains(&ATTACH_ESCAPE) {
                        let before = bytes.iter().position(|b| *b == ATTACH_ESCAPE).unwrap_or(0);
                        pending.extend_from_slice(&bytes[..before]);
                        ended = Some(Instant::now() - ATTACH_LINGER);
                    } else {
                        pending.extend_from_slice(&bytes);
                    }
                }
                None => {
                    ended.get_or_insert_with(Instant::now);
                }
            }
        }
        if !pending.is_empty() {
            let len = pending.len().min(CONSOLE_INPUT_BYTES);
            let mut request = ConsoleInputRequest {
                name: name(n)?,
                len: len as u32,
                reserved: 0,
                bytes: [0; CONSOLE_INPUT_BYTES],
            };
            request.bytes[..len].copy_from_slice(&pending[..len]);
            let payload = match client.request(Kind::ConsoleInput, request.as_bytes())? {
                Reply::Ok(p) => p,
                Reply::Error(e) => return Ok(gone(e, n, line_open, out, err)),
            };
            let reply = ConsoleInputReply::read_from_bytes(&payload)
                .map_err(|_| CtlError::BadReply("a console-input reply of the wrong size"))?;
            let taken = (reply.taken as usize).min(len);
            pending.drain(..taken);
        }
        let (head, bytes) = match console_chunk(client, n, offset)? {
            Ok(chunk) => chunk,
            Err(e) => return Ok(gone(e, n, line_open, out, err)),
        };
        if let Some(last) = bytes.last() {
            out.write_all(&bytes)?;
            out.flush()?;
            last_output = Instant::now();
            line_open = *last != b'\n';
        }
        offset = head.offset + bytes.len() as u64;
        if let Some(since) = ended {
            let quiet = last_output.elapsed() >= ATTACH_QUIET && since.elapsed() >= ATTACH_QUIET;
            if pending.is_empty() && (quiet || since.elapsed() >= ATTACH_LINGER) {
                break;
            }
        }
        if bytes.is_empty() && pending.is_empty() {
            std::thread::sleep(Duration::from_millis(if terminal { 30 } else { 100 }));
        }
    }
    if terminal {
        let _ = writeln!(err, "\r\nmica ctl: left {n}'s console");
    }
    Ok(Ok(()))
}

/// How `console --attach` ends on error reply `e` after it attached: a domain that is gone
/// (it powered off, or was destroyed) ends the session normally, saying so; anything else is
/// the error.
fn gone(
    e: ErrorReply,
    n: &str,
    line_open: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), ErrorReply> {
    if e.code != ErrorCode::NoSuchDomain as u32 {
        return Err(e);
    }
    if line_open {
        // The note starts a line of its own, after the guest's unfinished one.
        let _ = out.write_all(b"\r\n");
        let _ = out.flush();
    }
    let _ = writeln!(err, "mica ctl: {n} has ended");
    Ok(())
}

/// One `Console` request from `offset` (`u64::MAX`: none of the bytes, only the totals).
fn console_chunk(
    client: &mut Client,
    n: &str,
    offset: u64,
) -> Result<Result<(ConsoleReply, Vec<u8>), ErrorReply>, CtlError> {
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
    Ok(Ok((head, bytes.to_vec())))
}

/// Most bytes of an ended domain's output shown (as much as the kernel keeps of a live one).
pub const ENDED_CONSOLE_BYTES: usize = 4096;

/// The console output of the last run of domain `name` in serial log `log`: the text of its
/// `[NAME] ` lines since the kernel last reported a domain of that name destroyed before
/// them (a name used again starts afresh), at most the last [`ENDED_CONSOLE_BYTES`]. `None`
/// if it printed nothing.
pub fn ended_output(log: &str, name: &str) -> Option<String> {
    let prefix = format!("[{name}] ");
    let destroyed = format!("mica: domain {name} (id ");
    let mut runs: Vec<Vec<&str>> = vec![Vec::new()];
    for line in log.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(text) = line.strip_prefix(&prefix) {
            if let Some(run) = runs.last_mut() {
                run.push(text);
            }
        } else if line.starts_with(&destroyed)
            && line.contains(") destroyed: ")
            && runs.last().is_some_and(|r| !r.is_empty())
        {
            runs.push(Vec::new());
        }
    }
    let run = runs.into_iter().rev().find(|r| !r.is_empty())?;
    let mut text: String = run.iter().map(|l| format!("{l}\n")).collect();
    if text.len() > ENDED_CONSOLE_BYTES {
        let mut cut = text.len() - ENDED_CONSOLE_BYTES;
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        text.drain(..cut);
    }
    Some(text)
}

/// `console NAME` of a domain the control domain does not know (any more): its output from
/// the serial log `mica run` keeps beside the socket, if it printed any there; otherwise the
/// control domain's answer `e` stands.
fn ended_console(
    socket: &Path,
    n: &str,
    e: ErrorReply,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Result<(), ErrorReply>, CtlError> {
    let log_path = console_log_path(socket);
    let Some(text) = std::fs::read(&log_path)
        .ok()
        .and_then(|bytes| ended_output(&String::from_utf8_lossy(&bytes), n))
    else {
        return Ok(Err(e));
    };
    if json {
        writeln!(
            out,
            "{{\"name\": {}, \"output\": {}, \"ended\": true}}",
            json_string(n),
            json_string(&text)
        )?;
    } else {
        writeln!(
            err,
            "mica ctl: {n} has ended; its last output, from the serial log {}:",
            log_path.display()
        )?;
        out.write_all(text.as_bytes())?;
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
                flags: 0,
                reserved: 0,
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
                "garbage: then stats answered: {} requests, {} malformed frames",
                s.requests, s.malformed
            )?;
            Ok(EXIT_OK)
        }
        Reply::Error(e) => {
            writeln!(
                out,
                "garbage: stats refused: {}",
                describe_error(&e, None).0
            )?;
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
            role: 0,
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
            "[{\"id\": 3, \"name\": \"spin-a\", \"state\": \"running\", \"vcpus\": 1, \"memory_kib\": 1024, \"cpu_time_ns\": 1500000000, \"role\": \"domain\"}]\n"
        );
        let ctl = DomainEntry {
            role: ROLE_CONTROL,
            ..entry(6, "ctl", 0)
        };
        let sched = DomainEntry {
            role: ROLE_SCHED_POLICY,
            ..entry(1, "sched", 0)
        };
        let table = format_list(&[sched, ctl]);
        assert!(
            table.lines().next().unwrap().ends_with("CPU TIME  ROLE"),
            "{table}"
        );
        assert!(
            table
                .lines()
                .nth(1)
                .unwrap()
                .ends_with("1.500 s  sched-policy"),
            "{table}"
        );
        assert!(
            table.lines().nth(2).unwrap().ends_with("1.500 s  control"),
            "{table}"
        );
        assert!(format_list_json(&[ctl]).contains("\"role\": \"control\""));
        assert!(format_list_json(&entries).contains("\"spin-\\\"b\""));
        let bytes: Vec<u8> = entries.iter().flat_map(|e| e.as_bytes().to_vec()).collect();
        assert_eq!(parse_list(&bytes).unwrap(), entries);
        assert!(parse_list(&bytes[..10]).is_err());
    }

    #[test]
    fn stats_and_errors_format() {
        let s = StatsReply {
            domains: 4,
            reserved: 0,
            pool_free_bytes: 60 << 20,
            requests: 9,
            refused: 3,
            malformed: 2,
        };
        assert_eq!(
            format_stats(&s),
            "domains:          4\npool free:        61440 KiB\nrequests:         9\n  refused:        3\nmalformed frames: 2\n"
        );
        assert_eq!(
            format_stats_json(&s),
            "{\"domains\": 4, \"pool_free_kib\": 61440, \"requests\": 9, \"refused\": 3, \"malformed\": 2}\n"
        );
        let e = ErrorReply { code: 5, status: 0 };
        assert_eq!(
            describe_error(&e, None),
            ("no such domain".into(), EXIT_REFUSED)
        );
        let e = ErrorReply {
            code: 7,
            status: Status::WrongState as u32,
        };
        assert_eq!(
            describe_error(&e, None),
            ("refused by the system (WrongState)".into(), EXIT_REFUSED)
        );
        assert_eq!(
            describe_error(&ErrorReply { code: 1, status: 0 }, None).1,
            EXIT_USAGE
        );
        let (text, status) = describe_error(
            &ErrorReply {
                code: ErrorCode::Protected as u32,
                status: 0,
            },
            Some("sched"),
        );
        assert!(
            text.starts_with("sched is the scheduling policy domain")
                && text.ends_with("add --force to do it anyway"),
            "{text}"
        );
        assert_eq!(status, EXIT_REFUSED);
        let (text, _) = describe_error(
            &ErrorReply {
                code: ErrorCode::Itself as u32,
                status: 0,
            },
            Some("ctl"),
        );
        assert!(
            text.starts_with("ctl is the control domain itself"),
            "{text}"
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
        let (kind, payload) = request_of(&Command::Destroy {
            name: "sched".into(),
            force: true,
        })
        .unwrap()
        .unwrap();
        assert_eq!(kind, Kind::Destroy);
        assert_eq!(
            DomainRequest::read_from_bytes(&payload).unwrap().flags,
            FLAG_FORCE
        );
        for kib in [0, 4, 6, 1022] {
            let create = Command::Create {
                name: "c".into(),
                image: "spinner".into(),
                memory_kib: Some(kib),
                vcpus: None,
                arg: None,
            };
            assert!(
                matches!(request_of(&create), Err(CtlError::BadMemory(k)) if k == kib),
                "--memory-kib {kib} is refused before anything is sent"
            );
        }
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
            .starts_with("mica ctl: no control socket at /nonexistent/ctl.sock: `mica run`"));
    }

    #[test]
    fn connect_errors_name_the_socket_and_why() {
        let gone = std::io::Error::from(std::io::ErrorKind::NotFound);
        let text = connect_error(Path::new("build/ctl.sock"), gone).to_string();
        let cwd = std::env::current_dir().unwrap();
        assert!(
            text.starts_with(&format!(
                "no control socket at {} (`build/ctl.sock` relative to {}): ",
                cwd.join("build/ctl.sock").display(),
                cwd.display()
            )),
            "{text}"
        );
        // A socket file nobody listens on: the system has stopped.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let text = Client::connect(&path).unwrap_err().to_string();
        assert!(
            text.starts_with(&format!(
                "nothing listens on {}: the system",
                path.display()
            )),
            "{text}"
        );
    }

    #[test]
    fn an_ended_domain_s_output_comes_from_the_serial_log() {
        let log =
            "mica: domain hello (id 1): 2048 KiB RAM at PA 0x40000000, 1 vCPU(s) on CPU [0]\r\n\
                   [hello] hello: started\r\n[other] x\r\n[hello] hello: done\r\n\
                   mica: domain hello (id 1) destroyed: 2048 KiB scrubbed, 1003 MiB free\r\n\
                   [hello-b] not this one\r\n";
        assert_eq!(
            ended_output(log, "hello").as_deref(),
            Some("hello: started\nhello: done\n")
        );
        assert_eq!(ended_output(log, "nobody"), None);
        // A name used again: the last run only.
        let again = format!(
            "{log}[hello] second run\nmica: domain hello (id 7) destroyed: 0 KiB scrubbed, 1 MiB free\n"
        );
        assert_eq!(
            ended_output(&again, "hello").as_deref(),
            Some("second run\n")
        );
        let long: String = (0..1000).map(|i| format!("[spin] line {i}\n")).collect();
        let text = ended_output(&long, "spin").unwrap();
        assert_eq!(text.len(), ENDED_CONSOLE_BYTES);
        assert!(text.ends_with("line 999\n"));
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
