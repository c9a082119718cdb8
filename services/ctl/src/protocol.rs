//! The server side of the control protocol (`mica_abi::ctl`): bytes in, requests out.
//!
//! [`FrameReader`] takes the byte stream as it arrives, in any pieces, and yields one
//! [`Event`] per complete request or per problem. It never trusts a length it has not
//! checked: a header must carry the magic, the version, a request kind and exactly that
//! kind's payload size, and a payload must decode (names of `[a-z0-9-]`, NUL-padded; reserved
//! fields zero). Anything else is answered with an error and the reader *resynchronises*: it
//! drops the first byte of what it had and scans what follows for the next magic, so a frame
//! that starts inside a truncated one is still served. Bytes that are no frame at all (a run
//! of junk) earn one error per run, not one per byte.

use heapless::Deque;
use mica_abi::ctl::{
    check_header, name_str, ConsoleInputRequest, ConsoleRequest, CreateRequest, DomainRequest,
    ErrorCode, ErrorReply, FrameHeader, Kind, FLAG_FORCE, MAGIC, MAX_PAYLOAD, NAME_LEN, VERSION,
};
use zerocopy::{FromBytes, IntoBytes};

/// Bytes of a frame header.
pub const HEADER_LEN: usize = core::mem::size_of::<FrameHeader>();
/// Bytes of the largest frame.
pub const MAX_FRAME: usize = HEADER_LEN + MAX_PAYLOAD;

/// A checked domain name (1..=31 bytes of `[a-z0-9-]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Name([u8; NAME_LEN]);

impl Name {
    /// Checks a NUL-padded field: a valid name, then only NULs.
    pub fn from_field(field: &[u8; NAME_LEN]) -> Option<Name> {
        let text = name_str(field);
        let valid = (1..NAME_LEN).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && field[text.len()..].iter().all(|b| *b == 0);
        valid.then_some(Name(*field))
    }

    /// From text (`None` if not a valid name).
    pub fn new(text: &str) -> Option<Name> {
        Name::from_field(&mica_abi::ctl::name_field(text)?)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        name_str(&self.0)
    }

    /// The NUL-padded field.
    pub fn field(&self) -> [u8; NAME_LEN] {
        self.0
    }
}

/// A decoded request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// List domains.
    List,
    /// Create a domain.
    Create {
        /// Its name.
        name: Name,
        /// The image record to create it from.
        image: Name,
        /// RAM in KiB, or 0 for the record's.
        memory_kib: u32,
        /// vCPUs, or 0 for the record's.
        vcpus: u32,
        /// x0, or `None` for the record's.
        arg: Option<u64>,
    },
    /// Pause a domain.
    Pause(Name),
    /// Unpause a domain.
    Unpause(Name),
    /// Destroy a domain.
    Destroy {
        /// The domain.
        name: Name,
        /// Even one the system depends on (`FLAG_FORCE`).
        force: bool,
    },
    /// Restart a domain.
    Reboot {
        /// The domain.
        name: Name,
        /// Even one the system depends on (`FLAG_FORCE`).
        force: bool,
    },
    /// Bytes to type into a domain's emulated console.
    ConsoleInput {
        /// The domain.
        name: Name,
        /// How many of `bytes`.
        len: usize,
        /// The bytes.
        bytes: [u8; mica_abi::ctl::CONSOLE_INPUT_BYTES],
    },
    /// Console output of a domain from an offset.
    Console {
        /// The domain.
        name: Name,
        /// From this byte.
        offset: u64,
    },
    /// System statistics.
    Stats,
}

/// What the reader found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A well-formed request.
    Request {
        /// To echo in the reply.
        id: u32,
        /// The request.
        request: Request,
    },
    /// Something to answer with an error (`id` 0 when no header was readable).
    Error {
        /// To echo in the reply.
        id: u32,
        /// Why.
        code: ErrorCode,
    },
}

/// The payload size a request kind must carry.
fn payload_size(kind: Kind) -> Option<usize> {
    match kind {
        Kind::List | Kind::Stats => Some(0),
        Kind::Create => Some(core::mem::size_of::<CreateRequest>()),
        Kind::Pause | Kind::Unpause | Kind::Destroy | Kind::Reboot => {
            Some(core::mem::size_of::<DomainRequest>())
        }
        Kind::Console => Some(core::mem::size_of::<ConsoleRequest>()),
        Kind::ConsoleInput => Some(core::mem::size_of::<ConsoleInputRequest>()),
        Kind::Ok | Kind::Error => None,
    }
}

/// Decodes the payload of a request of `kind` (its size already checked).
pub fn decode(kind: Kind, payload: &[u8]) -> Result<Request, ErrorCode> {
    let malformed = ErrorCode::Malformed;
    // The name and whether FLAG_FORCE is set; unknown flags and reserved bits are malformed.
    let domain = || -> Result<(Name, bool), ErrorCode> {
        let r = DomainRequest::read_from_bytes(payload).map_err(|_| malformed)?;
        if r.flags & !FLAG_FORCE != 0 || r.reserved != 0 {
            return Err(malformed);
        }
        Ok((
            Name::from_field(&r.name).ok_or(malformed)?,
            r.flags & FLAG_FORCE != 0,
        ))
    };
    Ok(match kind {
        Kind::List => Request::List,
        Kind::Stats => Request::Stats,
        Kind::Pause => Request::Pause(domain()?.0),
        Kind::Unpause => Request::Unpause(domain()?.0),
        Kind::Destroy => {
            let (name, force) = domain()?;
            Request::Destroy { name, force }
        }
        Kind::Reboot => {
            let (name, force) = domain()?;
            Request::Reboot { name, force }
        }
        Kind::Create => {
            let c = CreateRequest::read_from_bytes(payload).map_err(|_| malformed)?;
            if c.reserved != 0 || c.use_arg > 1 || c.vcpus > 8 {
                return Err(malformed);
            }
            Request::Create {
                name: Name::from_field(&c.name).ok_or(malformed)?,
                image: Name::from_field(&c.image).ok_or(malformed)?,
                memory_kib: c.memory_kib,
                vcpus: c.vcpus,
                arg: (c.use_arg == 1).then_some(c.arg),
            }
        }
        Kind::Console => {
            let c = ConsoleRequest::read_from_bytes(payload).map_err(|_| malformed)?;
            Request::Console {
                name: Name::from_field(&c.name).ok_or(malformed)?,
                offset: c.offset,
            }
        }
        Kind::ConsoleInput => {
            let c = ConsoleInputRequest::read_from_bytes(payload).map_err(|_| malformed)?;
            let len = c.len as usize;
            if c.reserved != 0 || len > c.bytes.len() {
                return Err(malformed);
            }
            Request::ConsoleInput {
                name: Name::from_field(&c.name).ok_or(malformed)?,
                len,
                bytes: c.bytes,
            }
        }
        Kind::Ok | Kind::Error => return Err(ErrorCode::UnknownRequest),
    })
}

/// Reassembles requests from a byte stream (module documentation).
#[derive(Debug, Default)]
pub struct FrameReader {
    /// The frame being read (synchronised) or the last bytes scanned (hunting).
    frame: heapless::Vec<u8, MAX_FRAME>,
    /// Bytes to look at again before new input, after a resynchronisation.
    replay: Deque<u8, { 2 * MAX_FRAME }>,
    /// Skipping junk until the next magic; its error was reported.
    hunting: bool,
}

impl FrameReader {
    /// A reader at the start of a stream.
    pub fn new() -> FrameReader {
        FrameReader::default()
    }

    /// Takes `bytes` and calls `out` for every event they complete.
    pub fn feed(&mut self, bytes: &[u8], out: &mut impl FnMut(Event)) {
        for &b in bytes {
            self.step(b, out);
            while let Some(again) = self.replay.pop_front() {
                self.step(again, out);
            }
        }
    }

    /// Reports `code` and rescans the frame from its second byte.
    fn resync(&mut self, id: u32, code: ErrorCode, out: &mut impl FnMut(Event)) {
        out(Event::Error { id, code });
        for &b in self.frame.iter().skip(1).rev() {
            // Never more than the frame came from: it fits.
            let _ = self.replay.push_front(b);
        }
        self.frame.clear();
        self.hunting = true;
    }

    fn step(&mut self, b: u8, out: &mut impl FnMut(Event)) {
        if self.hunting {
            if self.frame.len() == MAGIC.len() {
                self.frame.remove(0);
            }
            let _ = self.frame.push(b);
            if self.frame.as_slice() == MAGIC {
                self.hunting = false;
            }
            return;
        }
        let _ = self.frame.push(b);
        let len = self.frame.len();
        if len <= MAGIC.len() {
            if self.frame[..] != MAGIC[..len] {
                // Junk: one error, then hunt. The junk's own bytes may hold a magic start.
                self.resync(0, ErrorCode::Malformed, out);
            }
            return;
        }
        if len < HEADER_LEN {
            return;
        }
        let Ok(header) = FrameHeader::read_from_bytes(&self.frame[..HEADER_LEN]) else {
            return;
        };
        if len == HEADER_LEN {
            let expected = check_header(&header).and_then(|n| {
                let kind = Kind::from_u16(header.kind).ok_or(ErrorCode::UnknownRequest)?;
                match payload_size(kind) {
                    None => Err(ErrorCode::UnknownRequest),
                    Some(size) if size == n => Ok(n),
                    Some(_) => Err(ErrorCode::Malformed),
                }
            });
            match expected {
                Err(code) => self.resync(header.request_id, code, out),
                Ok(0) => self.finish(header, out),
                Ok(_) => {}
            }
            return;
        }
        if len == HEADER_LEN + header.payload_len as usize {
            self.finish(header, out);
        }
    }

    fn finish(&mut self, header: FrameHeader, out: &mut impl FnMut(Event)) {
        let payload = &self.frame[HEADER_LEN..];
        // A magic inside a payload (names cannot hold capitals) means this frame was cut
        // short and the next one began: answer the cut one, serve the next.
        if let Some(at) = payload.windows(MAGIC.len()).position(|w| w == MAGIC) {
            out(Event::Error {
                id: header.request_id,
                code: ErrorCode::Malformed,
            });
            for &b in payload[at..].iter().rev() {
                let _ = self.replay.push_front(b);
            }
            self.frame.clear();
            return;
        }
        let event = match Kind::from_u16(header.kind)
            .ok_or(ErrorCode::UnknownRequest)
            .and_then(|kind| decode(kind, payload))
        {
            Ok(request) => Event::Request {
                id: header.request_id,
                request,
            },
            Err(code) => Event::Error {
                id: header.request_id,
                code,
            },
        };
        self.frame.clear();
        out(event);
    }
}

/// Writes one frame (header and payload parts) into `out`; false if it is too large.
pub fn frame(out: &mut heapless::Vec<u8, MAX_FRAME>, kind: Kind, id: u32, parts: &[&[u8]]) -> bool {
    out.clear();
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if len > MAX_PAYLOAD {
        return false;
    }
    let header = FrameHeader {
        magic: MAGIC,
        version: VERSION,
        kind: kind as u16,
        request_id: id,
        payload_len: len as u32,
    };
    let _ = out.extend_from_slice(header.as_bytes());
    for p in parts {
        let _ = out.extend_from_slice(p);
    }
    true
}

/// An error reply frame.
pub fn error_frame(out: &mut heapless::Vec<u8, MAX_FRAME>, id: u32, code: ErrorCode, status: u32) {
    let reply = ErrorReply {
        code: code as u32,
        status,
    };
    frame(out, Kind::Error, id, &[reply.as_bytes()]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use mica_abi::ctl::name_field;

    fn request(kind: Kind, id: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = heapless::Vec::new();
        assert!(frame(&mut out, kind, id, &[payload]));
        out.to_vec()
    }

    fn events(reader: &mut FrameReader, bytes: &[u8]) -> Vec<Event> {
        let mut got = Vec::new();
        reader.feed(bytes, &mut |e| got.push(e));
        got
    }

    fn domain_request(name: &str, flags: u32) -> DomainRequest {
        DomainRequest {
            name: name_field(name).unwrap(),
            flags,
            reserved: 0,
        }
    }

    fn pause(name: &str, id: u32) -> Vec<u8> {
        request(Kind::Pause, id, domain_request(name, 0).as_bytes())
    }

    #[test]
    fn destroy_and_reboot_carry_the_force_flag() {
        let mut reader = FrameReader::new();
        let mut bytes = request(Kind::Destroy, 1, domain_request("sched", 0).as_bytes());
        bytes.extend(request(
            Kind::Reboot,
            2,
            domain_request("sched", FLAG_FORCE).as_bytes(),
        ));
        bytes.extend(request(
            Kind::Destroy,
            3,
            domain_request("sched", 2).as_bytes(),
        ));
        let mut reserved = domain_request("sched", 0);
        reserved.reserved = 1;
        bytes.extend(request(Kind::Destroy, 4, reserved.as_bytes()));
        assert_eq!(
            events(&mut reader, &bytes),
            [
                Event::Request {
                    id: 1,
                    request: Request::Destroy {
                        name: name("sched"),
                        force: false
                    }
                },
                Event::Request {
                    id: 2,
                    request: Request::Reboot {
                        name: name("sched"),
                        force: true
                    }
                },
                Event::Error {
                    id: 3,
                    code: ErrorCode::Malformed
                },
                Event::Error {
                    id: 4,
                    code: ErrorCode::Malformed
                },
            ]
        );
    }

    fn name(s: &str) -> Name {
        Name::new(s).unwrap()
    }

    #[test]
    fn requests_in_any_pieces() {
        let mut bytes = request(Kind::List, 7, &[]);
        bytes.extend(pause("web-1", 8));
        let create = CreateRequest {
            name: name_field("c").unwrap(),
            image: name_field("spinner").unwrap(),
            memory_kib: 1024,
            vcpus: 0,
            arg: 22,
            use_arg: 1,
            reserved: 0,
        };
        bytes.extend(request(Kind::Create, 9, create.as_bytes()));
        let expected = vec![
            Event::Request {
                id: 7,
                request: Request::List,
            },
            Event::Request {
                id: 8,
                request: Request::Pause(name("web-1")),
            },
            Event::Request {
                id: 9,
                request: Request::Create {
                    name: name("c"),
                    image: name("spinner"),
                    memory_kib: 1024,
                    vcpus: 0,
                    arg: Some(22),
                },
            },
        ];
        for chunk in [1, 3, 16, 17, 1000] {
            let mut reader = FrameReader::new();
            let mut got = Vec::new();
            for piece in bytes.chunks(chunk) {
                got.extend(events(&mut reader, piece));
            }
            assert_eq!(got, expected, "chunks of {chunk}");
        }
    }

    #[test]
    fn junk_earns_one_error_per_run_and_the_next_frame_is_served() {
        let mut reader = FrameReader::new();
        let mut bytes = b"hello, this is not a frame at all".to_vec();
        bytes.extend(request(Kind::Stats, 3, &[]));
        let got = events(&mut reader, &bytes);
        assert_eq!(
            got,
            [
                Event::Error {
                    id: 0,
                    code: ErrorCode::Malformed
                },
                Event::Request {
                    id: 3,
                    request: Request::Stats
                }
            ]
        );
    }

    #[test]
    fn bad_headers_are_answered_and_resynchronised() {
        let mut reader = FrameReader::new();
        let mut bad_version = request(Kind::List, 1, &[]);
        bad_version[4] = 9;
        let mut too_large = request(Kind::List, 2, &[]);
        too_large[12..16].copy_from_slice(&5000u32.to_le_bytes());
        let mut wrong_size = request(Kind::Pause, 3, &[0; 40]);
        wrong_size[12] = 31;
        let reply_kind = request(Kind::Ok, 4, &[]);
        let mut unknown = request(Kind::List, 5, &[]);
        unknown[6] = 0x77;
        let mut bytes = Vec::new();
        for b in [&bad_version, &too_large, &wrong_size, &reply_kind, &unknown] {
            bytes.extend_from_slice(b);
        }
        bytes.extend(request(Kind::List, 6, &[]));
        let got = events(&mut reader, &bytes);
        let errors: Vec<(u32, ErrorCode)> = got
            .iter()
            .filter_map(|e| match e {
                Event::Error { id, code } => Some((*id, *code)),
                _ => None,
            })
            .collect();
        assert_eq!(
            errors[..5],
            [
                (1, ErrorCode::Version),
                (2, ErrorCode::TooLarge),
                (3, ErrorCode::Malformed),
                (4, ErrorCode::UnknownRequest),
                (5, ErrorCode::UnknownRequest),
            ]
        );
        assert_eq!(
            got.last(),
            Some(&Event::Request {
                id: 6,
                request: Request::List
            })
        );
    }

    #[test]
    fn a_truncated_frame_does_not_swallow_the_next() {
        let mut reader = FrameReader::new();
        let cut = pause("web", 1);
        let mut bytes = cut[..HEADER_LEN + 5].to_vec();
        bytes.extend(pause("db", 2));
        bytes.extend(request(Kind::List, 3, &[]));
        let got = events(&mut reader, &bytes);
        assert_eq!(
            got,
            [
                Event::Error {
                    id: 1,
                    code: ErrorCode::Malformed
                },
                Event::Request {
                    id: 2,
                    request: Request::Pause(name("db"))
                },
                Event::Request {
                    id: 3,
                    request: Request::List
                },
            ]
        );
        // A header cut short inside its first sixteen bytes.
        let mut reader = FrameReader::new();
        let mut bytes = request(Kind::List, 9, &[])[..7].to_vec();
        bytes.extend(request(Kind::Stats, 10, &[]));
        let got = events(&mut reader, &bytes);
        assert_eq!(
            got.last(),
            Some(&Event::Request {
                id: 10,
                request: Request::Stats
            })
        );
    }

    #[test]
    fn bad_payloads_are_malformed() {
        let mut reader = FrameReader::new();
        let mut bad_name = [0u8; 32];
        bad_name[..3].copy_from_slice(b"A!b");
        let mut trailing = name_field("ok").unwrap();
        trailing[5] = b'x';
        for (i, field) in [bad_name, [0; 32], trailing].iter().enumerate() {
            let payload = DomainRequest {
                name: *field,
                flags: 0,
                reserved: 0,
            };
            let got = events(
                &mut reader,
                &request(Kind::Destroy, i as u32, payload.as_bytes()),
            );
            assert_eq!(
                got,
                [Event::Error {
                    id: i as u32,
                    code: ErrorCode::Malformed
                }]
            );
        }
    }

    #[test]
    fn random_bytes_never_panic_and_the_reader_recovers() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut reader = FrameReader::new();
        for round in 0..200 {
            let mut junk = Vec::new();
            for _ in 0..(round * 7 % 300) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                junk.push(state as u8);
                if state.is_multiple_of(97) {
                    junk.extend_from_slice(&MAGIC);
                }
            }
            let _ = events(&mut reader, &junk);
            // A well-formed request after junk: served, possibly after errors for frames the
            // junk started (whose payload the request completes): send it twice.
            let mut ok = request(Kind::List, 77, &[]);
            ok.extend(request(Kind::List, 78, &[]));
            let got = events(&mut reader, &ok);
            assert!(
                got.contains(&Event::Request {
                    id: 78,
                    request: Request::List
                }),
                "round {round}: {got:?}"
            );
        }
    }
}
