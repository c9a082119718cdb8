//! The control protocol between the host toolstack (`mica ctl`) and the `ctl` service domain.
//!
//! It runs over a byte stream (a virtio console the `ctl` domain drives, a Unix socket on the
//! host). Every message is a frame: a fixed [`FrameHeader`] (magic, protocol version, kind,
//! request id, payload length) followed by `payload_len` bytes. Requests and replies have
//! fixed, named layouts below; every field is little-endian. A receiver that sees a bad magic,
//! an unknown version, an unknown kind or a payload longer than [`MAX_PAYLOAD`] answers with an
//! [`ErrorCode`] and resynchronises by scanning for the next magic — it never trusts a length
//! it has not checked.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The first four bytes of every frame.
pub const MAGIC: [u8; 4] = *b"MCTL";
/// Protocol version; a peer speaking another answers `ErrorCode::Version`. Version 2 added
/// [`DomainRequest::flags`], the roles of [`DomainEntry`], the `refused`/`malformed` split of
/// [`StatsReply`] and error codes 9-11.
pub const VERSION: u16 = 2;
/// Largest payload accepted.
pub const MAX_PAYLOAD: usize = 1024;
/// Bytes of a domain name field (NUL-padded UTF-8).
pub const NAME_LEN: usize = 32;

/// Every frame starts with this.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct FrameHeader {
    /// [`MAGIC`].
    pub magic: [u8; 4],
    /// [`VERSION`].
    pub version: u16,
    /// A [`Kind`] value.
    pub kind: u16,
    /// Chosen by the requester, echoed in the reply.
    pub request_id: u32,
    /// Bytes following the header.
    pub payload_len: u32,
}

const _: () = assert!(core::mem::size_of::<FrameHeader>() == 16);

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Kind {
    /// Request: list domains. Payload: none.
    List = 1,
    /// Request: create a domain from an image of the system image. Payload: [`CreateRequest`].
    Create = 2,
    /// Request: pause. Payload: [`DomainRequest`].
    Pause = 3,
    /// Request: unpause. Payload: [`DomainRequest`].
    Unpause = 4,
    /// Request: destroy. Payload: [`DomainRequest`].
    Destroy = 5,
    /// Request: restart. Payload: [`DomainRequest`].
    Reboot = 6,
    /// Request: console output of a domain from an offset. Payload: [`ConsoleRequest`].
    Console = 7,
    /// Request: system statistics. Payload: none.
    Stats = 8,
    /// Request: type bytes into a domain's emulated console. Payload:
    /// [`ConsoleInputRequest`]; reply: [`ConsoleInputReply`].
    ConsoleInput = 9,
    /// Reply: success; the payload depends on the request (see each).
    Ok = 0x100,
    /// Reply: failure. Payload: [`ErrorReply`].
    Error = 0x101,
}

impl Kind {
    /// Decodes a kind; `None` for an unknown one.
    pub fn from_u16(v: u16) -> Option<Kind> {
        [
            Kind::List,
            Kind::Create,
            Kind::Pause,
            Kind::Unpause,
            Kind::Destroy,
            Kind::Reboot,
            Kind::Console,
            Kind::Stats,
            Kind::ConsoleInput,
            Kind::Ok,
            Kind::Error,
        ]
        .into_iter()
        .find(|k| *k as u16 == v)
    }
}

/// Why a request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ErrorCode {
    /// The frame was malformed (bad magic, truncated, payload size wrong for its kind).
    Malformed = 1,
    /// Another protocol version.
    Version = 2,
    /// Unknown request kind.
    UnknownRequest = 3,
    /// Payload longer than [`MAX_PAYLOAD`].
    TooLarge = 4,
    /// No domain of that name.
    NoSuchDomain = 5,
    /// No image of that name in the system image.
    NoSuchImage = 6,
    /// The kernel refused (the reply's `status` holds the `Status` code).
    Refused = 7,
    /// Not enough memory in the control domain's pool.
    NoMemory = 8,
    /// The control domain was asked to pause, unpause, destroy or reboot itself (it serves
    /// the requests; it cannot do that to itself).
    Itself = 9,
    /// `Create` with the name of a domain that exists.
    NameTaken = 10,
    /// `Destroy` or `Reboot` of a domain the system depends on (the scheduling policy)
    /// without [`FLAG_FORCE`].
    Protected = 11,
    /// `Create` from a Linux image with other memory, vCPUs or arg than its record's: its
    /// device tree, built into the system image, describes the record's.
    FixedImage = 12,
}

/// Payload of [`Kind::Error`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct ErrorReply {
    /// An [`ErrorCode`] value.
    pub code: u32,
    /// The kernel `Status` code for `Refused`, else 0.
    pub status: u32,
}

/// [`DomainRequest::flags`]: do it even to a domain the system depends on (`mica ctl
/// destroy --force`); without it such a request is answered [`ErrorCode::Protected`].
pub const FLAG_FORCE: u32 = 1 << 0;

/// Payload naming one domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct DomainRequest {
    /// The domain's name.
    pub name: [u8; NAME_LEN],
    /// `FLAG_*` bits ([`FLAG_FORCE`]); other bits must be zero.
    pub flags: u32,
    /// Reserved, zero.
    pub reserved: u32,
}

/// Payload of [`Kind::Create`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct CreateRequest {
    /// Name of the new domain.
    pub name: [u8; NAME_LEN],
    /// Name of the domain record in the system image whose image to use.
    pub image: [u8; NAME_LEN],
    /// RAM in KiB (0 = the image record's).
    pub memory_kib: u32,
    /// vCPUs (0 = the image record's).
    pub vcpus: u32,
    /// Passed in x0 (used when `use_arg` is 1, else the record's).
    pub arg: u64,
    /// 1 to use `arg`.
    pub use_arg: u32,
    /// Reserved, zero.
    pub reserved: u32,
}

/// Payload of [`Kind::Console`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct ConsoleRequest {
    /// The domain.
    pub name: [u8; NAME_LEN],
    /// Byte offset in the domain's console output to read from.
    pub offset: u64,
}

/// One line of a [`Kind::List`] reply (the payload is a sequence of these).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct DomainEntry {
    /// Name.
    pub name: [u8; NAME_LEN],
    /// Kernel domain id.
    pub id: u32,
    /// 0 running, 1 paused, 2 dying (the kernel's `domain_info` state).
    pub state: u32,
    /// vCPUs.
    pub vcpus: u32,
    /// What the domain is to the system: a `ROLE_*` value.
    pub role: u32,
    /// RAM in bytes.
    pub memory_bytes: u64,
    /// CPU time used, ns.
    pub cpu_time_ns: u64,
}

/// [`DomainEntry::role`]: an ordinary domain.
pub const ROLE_DOMAIN: u32 = 0;
/// [`DomainEntry::role`]: the control domain itself (the one answering).
pub const ROLE_CONTROL: u32 = 1;
/// [`DomainEntry::role`]: the scheduling policy domain (destroy and reboot need
/// [`FLAG_FORCE`]).
pub const ROLE_SCHED_POLICY: u32 = 2;

/// Payload of a [`Kind::Stats`] reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct StatsReply {
    /// Domains alive (as many as a `List` reply has entries, the control domain included).
    pub domains: u32,
    /// Reserved, zero.
    pub reserved: u32,
    /// Bytes left in the control domain's memory pool.
    pub pool_free_bytes: u64,
    /// Well-formed requests since start (this one included), served or refused.
    pub requests: u64,
    /// Of those, the ones answered with an error (no such domain, the kernel refused, ...).
    pub refused: u64,
    /// Frames that were no request (bad magic, version, kind or size), answered with an error.
    pub malformed: u64,
}

/// Most bytes one [`ConsoleInputRequest`] carries.
pub const CONSOLE_INPUT_BYTES: usize = 64;

/// Payload of [`Kind::ConsoleInput`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct ConsoleInputRequest {
    /// The domain.
    pub name: [u8; NAME_LEN],
    /// How many of `bytes` to type (at most [`CONSOLE_INPUT_BYTES`]).
    pub len: u32,
    /// Reserved, zero.
    pub reserved: u32,
    /// The bytes.
    pub bytes: [u8; CONSOLE_INPUT_BYTES],
}

/// Payload of a [`Kind::ConsoleInput`] reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct ConsoleInputReply {
    /// How many of the bytes the domain's console took (the rest: send again later; the
    /// guest has not read what came before).
    pub taken: u32,
    /// Reserved, zero.
    pub reserved: u32,
}

/// Header of a [`Kind::Console`] reply, followed by the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct ConsoleReply {
    /// Offset of the first byte returned (later than requested if older output is gone).
    pub offset: u64,
    /// Total bytes the domain has written so far.
    pub total: u64,
}

const _: () = assert!(core::mem::size_of::<DomainEntry>() == 64);
const _: () = assert!(core::mem::size_of::<CreateRequest>() == 88);
const _: () = assert!(core::mem::size_of::<DomainRequest>() == 40);
const _: () = assert!(core::mem::size_of::<StatsReply>() == 40);
const _: () = assert!(core::mem::size_of::<ConsoleInputRequest>() == 104);

/// Copies a name into a NUL-padded field; `None` if it does not fit.
pub fn name_field(name: &str) -> Option<[u8; NAME_LEN]> {
    if name.is_empty() || name.len() > NAME_LEN {
        return None;
    }
    let mut out = [0; NAME_LEN];
    out[..name.len()].copy_from_slice(name.as_bytes());
    Some(out)
}

/// The text of a NUL-padded name field (empty if not UTF-8).
pub fn name_str(field: &[u8; NAME_LEN]) -> &str {
    let end = field.iter().position(|b| *b == 0).unwrap_or(NAME_LEN);
    core::str::from_utf8(&field[..end]).unwrap_or("")
}

/// Checks a received header: the payload length it announces, or why it is rejected.
pub fn check_header(h: &FrameHeader) -> Result<usize, ErrorCode> {
    if h.magic != MAGIC {
        return Err(ErrorCode::Malformed);
    }
    if h.version != VERSION {
        return Err(ErrorCode::Version);
    }
    let len = h.payload_len as usize;
    if len > MAX_PAYLOAD {
        return Err(ErrorCode::TooLarge);
    }
    if Kind::from_u16(h.kind).is_none() {
        return Err(ErrorCode::UnknownRequest);
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_checked() {
        let good = FrameHeader {
            magic: MAGIC,
            version: VERSION,
            kind: Kind::List as u16,
            request_id: 1,
            payload_len: 0,
        };
        assert_eq!(check_header(&good), Ok(0));
        assert_eq!(
            check_header(&FrameHeader {
                magic: *b"XXXX",
                ..good
            }),
            Err(ErrorCode::Malformed)
        );
        assert_eq!(
            check_header(&FrameHeader { version: 9, ..good }),
            Err(ErrorCode::Version)
        );
        assert_eq!(
            check_header(&FrameHeader { kind: 77, ..good }),
            Err(ErrorCode::UnknownRequest)
        );
        assert_eq!(
            check_header(&FrameHeader {
                payload_len: u32::MAX,
                ..good
            }),
            Err(ErrorCode::TooLarge)
        );
        assert_eq!(name_str(&name_field("web").unwrap()), "web");
        assert!(name_field(&"x".repeat(33)).is_none());
    }
}
