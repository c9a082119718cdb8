//! The hypercalls' argument registers x1-x6: the types a register decodes to ([`Slot`],
//! [`Port`], ..., through [`Arg`]), the checks calls share, the traits every call's argument
//! type implements, and the `calls!` macro that generates each argument type (and `Call` and
//! `TABLE`) from the call's one entry in `abi/src/calls.rs`. The argument types, [`Args`] and
//! [`decode`] are re-exported here, where the kernel and the runtime find them.
//!
//! A call's argument type is the single definition of its argument order and argument syntax.
//! The kernel decodes with `from_regs` (refusing what does not fit the types: slots wider than
//! 16 bits, unknown rights bits, ...; then what the call's check refuses together: misaligned
//! or wrapping addresses, ...), the domain runtime encodes with `to_regs`, and `TABLE`
//! (`crate::hypercall`) names the arguments with each type's `ARGS`. For every call,
//! `from_regs(a.to_regs()) == Ok(a)`, and a register value that decodes encodes back to itself
//! (`tests::every_call_round_trips`).

use crate::hypercall::{CONSOLE_INPUT_MAX, CONSOLE_WRITE_MAX};
use crate::layout::{IPA_LIMIT, PAGE_SIZE};
use crate::{Rights, Status};

/// A capability slot in the caller's own capability space (16 bits on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot(pub u16);

impl Slot {
    /// Names the calling domain itself in calls that take a Domain capability.
    pub const SELF_DOMAIN: Slot = Slot(crate::hypercall::SELF_DOMAIN as u16);

    /// The register value.
    pub const fn raw(self) -> u64 {
        self.0 as u64
    }
}

/// A port of the caller's event page (`0..crate::event::PORTS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Port(pub u16);

impl Port {
    /// The register value.
    pub const fn raw(self) -> u64 {
        self.0 as u64
    }
}

/// A value of one argument register.
pub trait Arg: Sized {
    /// Decodes the register, or refuses it (`InvalidArgument`).
    fn from_reg(reg: u64) -> Result<Self, Status>;
    /// The register value.
    fn to_reg(&self) -> u64;
}

impl Arg for u64 {
    fn from_reg(reg: u64) -> Result<Self, Status> {
        Ok(reg)
    }
    fn to_reg(&self) -> u64 {
        *self
    }
}

impl Arg for Slot {
    fn from_reg(reg: u64) -> Result<Self, Status> {
        if cfg!(feature = "mutant-slot-truncated") {
            return Ok(Slot(reg as u16));
        }
        u16::try_from(reg)
            .map(Slot)
            .map_err(|_| Status::InvalidArgument)
    }
    fn to_reg(&self) -> u64 {
        self.raw()
    }
}

impl Arg for Port {
    fn from_reg(reg: u64) -> Result<Self, Status> {
        if reg >= crate::event::PORTS as u64 {
            return Err(Status::InvalidArgument);
        }
        Ok(Port(reg as u16))
    }
    fn to_reg(&self) -> u64 {
        self.raw()
    }
}

impl Arg for Rights {
    fn from_reg(reg: u64) -> Result<Self, Status> {
        let bits = u32::try_from(reg).map_err(|_| Status::InvalidArgument)?;
        Rights::from_bits(bits).ok_or(Status::InvalidArgument)
    }
    fn to_reg(&self) -> u64 {
        u64::from(self.bits())
    }
}

impl Arg for bool {
    fn from_reg(reg: u64) -> Result<Self, Status> {
        match reg {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Status::InvalidArgument),
        }
    }
    fn to_reg(&self) -> u64 {
        u64::from(*self)
    }
}

/// `[ipa, ipa + pages pages)` is page aligned, not empty, and below [`IPA_LIMIT`]
/// (`OutOfRange` if it is only too high).
pub fn check_ipa_range(ipa: u64, pages: u64) -> Result<(), Status> {
    if !ipa.is_multiple_of(PAGE_SIZE) || pages == 0 {
        return Err(Status::InvalidArgument);
    }
    let end = pages
        .checked_mul(PAGE_SIZE)
        .and_then(|b| ipa.checked_add(b))
        .ok_or(Status::InvalidArgument)?;
    if end > IPA_LIMIT {
        return Err(Status::OutOfRange);
    }
    Ok(())
}

/// Frames `[first, first + count)` as absolute frame numbers; `count == 0` (derive, grant)
/// means the source's whole range and then `first` must be 0 too.
pub fn check_frames(first: u64, count: u64) -> Result<(), Status> {
    match count {
        0 if first == 0 => Ok(()),
        0 => Err(Status::InvalidArgument),
        n => first
            .checked_add(n)
            .map(|_| ())
            .ok_or(Status::InvalidArgument),
    }
}

/// A call's argument type: what issues it needs (the kernel's tests and the runtime).
pub trait CallArgs {
    /// The call.
    const CALL: Call;
    /// x1-x6.
    fn regs(&self) -> [u64; 6];
}

/// The checks of one call's arguments beyond each register's type.
pub trait Checked {
    /// `Ok` if the arguments together are well formed.
    fn check(&self) -> Result<(), Status> {
        Ok(())
    }
}

/// Generates every hypercall's definitions from one entry per call; invoked once, by
/// `crate::calls`, whose header describes an entry.
///
/// From the entries it makes, in the invoking module: the `Call` enum (`#[repr(u16)]`, each
/// variant's number and doc) and `TABLE`, a [`crate::hypercall::CallSpec`] per call in the
/// entries' order; per call, its argument type (the fields, x1 first, with their docs), with
/// `CALL`, `ARGS`, `from_regs`, `to_regs`, its [`CallArgs`] impl and its [`Checked`] impl (the
/// entry's `check`, or none: `Ok(())`); then `Args`, `decode`, `names` and `round_trip` over
/// every call.
macro_rules! calls {
    ($(
        $(#[$meta:meta])*
        $number:literal $call:ident $wire:literal {
            summary: $summary:literal,
            args: { $( $(#[$fmeta:meta])* $field:ident : $ty:ty ),* $(,)? },
            returns: [$( $ret:literal ),* $(,)?],
            caps: [$( $cap:expr ),* $(,)?],
            statuses: [$( $status:ident ),* $(,)?],
            $( check: |$a:ident| $check:expr, )?
        }
    )*) => {
        /// A hypercall of this ABI.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum Call {
            $(
                $(#[$meta])*
                $call = $number,
            )*
        }

        impl Call {
            /// The call numbered `number` in the vendor range, if this ABI has one (a
            /// `match`: no search on the hypercall path, no loop for the proofs).
            pub const fn from_number(number: u16) -> Option<Call> {
                match number {
                    $( $number => Some(Call::$call), )*
                    _ => None,
                }
            }
        }

        /// Every hypercall, in numeric order.
        pub const TABLE: &[$crate::hypercall::CallSpec] = &[
            $(
                $crate::hypercall::CallSpec {
                    call: Call::$call,
                    name: $wire,
                    summary: $summary,
                    args: $call::ARGS,
                    returns: &[$($ret),*],
                    caps: &[$($cap),*],
                    statuses: &[$($crate::Status::$status),*],
                },
            )*
        ];

        $(
            #[doc = concat!("The arguments of `", $wire, "`, x1 first.")]
            #[doc = ""]
            $(#[$meta])*
            #[derive(Clone, Copy, Debug, PartialEq, Eq)]
            #[cfg_attr(kani, derive(kani::Arbitrary))]
            pub struct $call {
                $( $(#[$fmeta])* pub $field: $ty, )*
            }

            impl $crate::args::CallArgs for $call {
                const CALL: Call = Call::$call;
                fn regs(&self) -> [u64; 6] {
                    self.to_regs()
                }
            }

            impl $crate::args::Checked for $call {
                $(
                    fn check(&self) -> Result<(), $crate::Status> {
                        let $a = self;
                        $check
                    }
                )?
            }

            impl $call {
                /// The call these are the arguments of.
                pub const CALL: Call = Call::$call;
                /// The argument registers' names, x1 first.
                pub const ARGS: &'static [&'static str] = &[$(stringify!($field)),*];

                /// Decodes x1-x6 (registers past the last argument are ignored) and checks
                /// them together.
                #[allow(unused_variables, unused_mut, unused_assignments)]
                pub fn from_regs(regs: [u64; 6]) -> Result<Self, $crate::Status> {
                    let mut next = regs.iter();
                    $(
                        let $field =
                            <$ty as $crate::args::Arg>::from_reg(*next.next().unwrap_or(&0))?;
                    )*
                    let args = $call { $($field),* };
                    $crate::args::Checked::check(&args)?;
                    Ok(args)
                }

                /// x1-x6 (0 past the last argument).
                #[allow(unused_mut, unused_variables)]
                pub fn to_regs(&self) -> [u64; 6] {
                    let mut regs = [0u64; 6];
                    let mut next = regs.iter_mut();
                    $(
                        if let Some(r) = next.next() {
                            *r = $crate::args::Arg::to_reg(&self.$field);
                        }
                    )*
                    regs
                }
            }
        )*

        /// The decoded arguments of any call.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[cfg_attr(kani, derive(kani::Arbitrary))]
        pub enum Args {
            $(
                $(#[$meta])*
                $call($call),
            )*
        }

        impl Args {
            /// The call these are the arguments of.
            pub const fn call(&self) -> Call {
                match self {
                    $( Args::$call(_) => Call::$call, )*
                }
            }

            /// x1-x6.
            pub fn to_regs(&self) -> [u64; 6] {
                match self {
                    $( Args::$call(a) => a.to_regs(), )*
                }
            }

            /// The call's checks of the arguments together ([`Checked`]), for the proofs.
            ///
            /// [`Checked`]: crate::args::Checked
            #[cfg(kani)]
            pub(crate) fn check(&self) -> Result<(), $crate::Status> {
                match self {
                    $( Args::$call(a) => $crate::args::Checked::check(a), )*
                }
            }
        }

        /// Decodes x1-x6 as the arguments of `call` (what the kernel does first with every
        /// hypercall). Pure: no state is read.
        pub fn decode(call: Call, regs: [u64; 6]) -> Result<Args, $crate::Status> {
            match call {
                $( Call::$call => $call::from_regs(regs).map(Args::$call), )*
            }
        }

        /// The argument names of `call` (x1 first): the one definition `TABLE` uses.
        pub const fn names(call: Call) -> &'static [&'static str] {
            match call {
                $( Call::$call => $call::ARGS, )*
            }
        }

        /// Decodes and re-encodes `regs` as the arguments of `call` (what the tests and
        /// harnesses round-trip).
        pub fn round_trip(call: Call, regs: [u64; 6]) -> Result<[u64; 6], $crate::Status> {
            decode(call, regs).map(|a| a.to_regs())
        }
    };
}

/// For `crate::calls`, the one place that invokes it.
pub(crate) use calls;

// Every call's argument type, `Args`, `decode`, `names` and `round_trip`, generated by
// `crate::calls` (with `Call` and `TABLE`, which are at home in `crate::hypercall`).
pub use crate::calls::*;

impl ConsoleWrite {
    /// The arguments that write `bytes` (at most [`CONSOLE_WRITE_MAX`] of them; more are cut).
    pub fn new(bytes: &[u8]) -> ConsoleWrite {
        let len = bytes.len().min(CONSOLE_WRITE_MAX);
        let [bytes0, bytes1, bytes2, bytes3, bytes4] =
            crate::hypercall::pack_console_bytes(&bytes[..len]);
        ConsoleWrite {
            len: len as u64,
            bytes0,
            bytes1,
            bytes2,
            bytes3,
            bytes4,
        }
    }

    /// The packed registers.
    pub const fn packed(&self) -> [u64; 5] {
        [
            self.bytes0,
            self.bytes1,
            self.bytes2,
            self.bytes3,
            self.bytes4,
        ]
    }
}

impl ConsoleInput {
    /// The arguments that type `bytes` (at most [`CONSOLE_INPUT_MAX`] of them; more are cut)
    /// into `domain`'s console.
    pub fn new(domain: Slot, bytes: &[u8]) -> ConsoleInput {
        let len = bytes.len().min(CONSOLE_INPUT_MAX);
        let [bytes0, bytes1, bytes2, bytes3, _] =
            crate::hypercall::pack_console_bytes(&bytes[..len]);
        ConsoleInput {
            domain,
            len: len as u64,
            bytes0,
            bytes1,
            bytes2,
            bytes3,
        }
    }

    /// The bytes carried: a buffer and how many of it (at most [`CONSOLE_INPUT_MAX`], whatever
    /// `len` says).
    pub fn bytes(&self) -> ([u8; CONSOLE_INPUT_MAX], usize) {
        let regs = [self.bytes0, self.bytes1, self.bytes2, self.bytes3];
        let mut out = [0u8; CONSOLE_INPUT_MAX];
        let len = usize::try_from(self.len).map_or(CONSOLE_INPUT_MAX, |l| l.min(CONSOLE_INPUT_MAX));
        for (i, byte) in out.iter_mut().enumerate().take(len) {
            *byte = (regs[i / 8] >> ((i % 8) * 8)) as u8;
        }
        (out, len)
    }
}

impl DomainSetName {
    /// The arguments naming the domain behind `domain` `name` (its first 32 bytes).
    pub fn new(domain: Slot, name: &[u8]) -> DomainSetName {
        let mut regs = [0u64; 4];
        for (i, b) in name.iter().take(32).enumerate() {
            regs[i / 8] |= (*b as u64) << ((i % 8) * 8);
        }
        DomainSetName {
            domain,
            name0: regs[0],
            name1: regs[1],
            name2: regs[2],
            name3: regs[3],
        }
    }

    /// The name's 32 bytes, NUL-padded.
    pub fn name(&self) -> [u8; 32] {
        let mut name = [0u8; 32];
        let regs = [self.name0, self.name1, self.name2, self.name3];
        for (bytes, reg) in name.chunks_exact_mut(8).zip(regs) {
            bytes.copy_from_slice(&reg.to_le_bytes());
        }
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypercall::TABLE;

    /// A small generator biased to boundary values.
    fn values() -> impl FnMut() -> u64 {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match x % 6 {
                0 => x % 8,
                1 => x,
                2 => 0x4000_0000 + (x % 16) * 0x1000,
                3 => u64::from(u16::MAX) - (x % 2),
                4 => 1 << (x % 64),
                _ => u64::MAX - (x % 3),
            }
        }
    }

    /// For every call of the table: whatever decodes encodes back to the same argument
    /// registers, and decodes again to the same arguments; registers past the last argument
    /// never matter.
    #[test]
    fn every_call_round_trips() {
        let mut next = values();
        for spec in TABLE {
            let used = names(spec.call).len();
            for _ in 0..20_000 {
                let regs = [next(), next(), next(), next(), next(), next()];
                let Ok(encoded) = round_trip(spec.call, regs) else {
                    continue;
                };
                assert_eq!(encoded[..used], regs[..used], "{}: {regs:x?}", spec.name);
                assert!(encoded[used..].iter().all(|r| *r == 0), "{}", spec.name);
                assert_eq!(round_trip(spec.call, encoded), Ok(encoded), "{}", spec.name);
            }
            // Zeros decode for every call but the two whose arguments must name something.
            let zeros = round_trip(spec.call, [0; 6]);
            assert!(
                zeros.is_ok()
                    || matches!(
                        spec.call,
                        Call::MemMap | Call::MemUnmap | Call::DomainSetName
                    ),
                "{}: {zeros:?}",
                spec.name
            );
        }
    }

    /// Every capability argument of the table is a slot: with the other arguments valid, it
    /// takes any 16-bit value ([`Slot::SELF_DOMAIN`] among them) and refuses anything wider.
    #[test]
    fn every_capability_argument_is_a_slot() {
        let read = Rights::READ.bits() as u64;
        for spec in TABLE {
            let valid = match spec.call {
                Call::MemMap => [0, 0, 0x1000, 0, 1, read],
                Call::MemUnmap => [0, 0x1000, 1, 0, 0, 0],
                Call::DomainSetName => DomainSetName::new(Slot(0), b"web").to_regs(),
                _ => [0; 6],
            };
            assert!(decode(spec.call, valid).is_ok(), "{}", spec.name);
            for c in spec.caps {
                let i = spec
                    .args
                    .iter()
                    .position(|arg| *arg == c.arg)
                    .unwrap_or_else(|| panic!("{}: `{}` is no argument", spec.name, c.arg));
                let mut regs = valid;
                regs[i] = Slot::SELF_DOMAIN.raw();
                assert!(
                    decode(spec.call, regs).is_ok(),
                    "{}: `{}`",
                    spec.name,
                    c.arg
                );
                regs[i] = 1 << 16;
                assert_eq!(
                    decode(spec.call, regs),
                    Err(Status::InvalidArgument),
                    "{}: `{}`",
                    spec.name,
                    c.arg
                );
            }
        }
    }

    #[test]
    fn the_table_names_each_calls_arguments_from_its_type() {
        for spec in TABLE {
            assert_eq!(spec.args, names(spec.call), "{}", spec.name);
        }
    }

    #[test]
    fn argument_syntax_is_refused_before_anything_else() {
        assert_eq!(
            CapIdentify::from_regs([1 << 16, 0, 0, 0, 0, 0]),
            Err(Status::InvalidArgument)
        );
        assert_eq!(
            CapDerive::from_regs([0, 1, 1 << 40, 0, 0, 0]),
            Err(Status::InvalidArgument),
            "unknown rights bits"
        );
        assert_eq!(
            CapDerive::from_regs([0, 1, 1, 7, 0, 0]),
            Err(Status::InvalidArgument),
            "a first frame with the whole range"
        );
        let rw = (Rights::READ | Rights::WRITE).bits() as u64;
        assert_eq!(
            MemMap::from_regs([0, 0, 0x1001, 0, 1, rw]),
            Err(Status::InvalidArgument)
        );
        assert_eq!(
            MemMap::from_regs([0, 0, 0x1000, 0, 0, rw]),
            Err(Status::InvalidArgument)
        );
        assert_eq!(
            MemMap::from_regs([0, 0, IPA_LIMIT - PAGE_SIZE, 0, 2, rw]),
            Err(Status::OutOfRange)
        );
        assert_eq!(
            MemMap::from_regs([0, 0, 0x1000, 0, 1, Rights::WRITE.bits() as u64]),
            Err(Status::InvalidArgument),
            "write without read"
        );
        assert_eq!(
            EvtchnMask::from_regs([0, 2, 0, 0, 0, 0]),
            Err(Status::InvalidArgument)
        );
        assert_eq!(
            EvtchnBind::from_regs([0, crate::event::PORTS as u64, 0, 0, 0, 0]),
            Err(Status::InvalidArgument)
        );
        assert_eq!(
            ConsoleWrite::from_regs([41, 0, 0, 0, 0, 0]),
            Err(Status::InvalidArgument)
        );
        assert_eq!(
            EventPageSet::from_regs([0x1234, 0, 0, 0, 0, 0]),
            Err(Status::InvalidArgument)
        );
        let named = DomainSetName::new(Slot(3), b"web-1");
        assert_eq!(DomainSetName::from_regs(named.to_regs()), Ok(named));
        assert_eq!(&named.name()[..6], b"web-1\0");
        for bad in [&b""[..], b"Web", b"a b", b"x\0y"] {
            let regs = DomainSetName::new(Slot(3), bad).to_regs();
            assert_eq!(
                DomainSetName::from_regs(regs),
                Err(Status::InvalidArgument),
                "{bad:?}"
            );
        }
        let text = ConsoleWrite::new(b"hello");
        assert_eq!(ConsoleWrite::from_regs(text.to_regs()), Ok(text));
    }
}
