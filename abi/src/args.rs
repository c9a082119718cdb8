//! One argument type per hypercall: the registers x1-x6 of every call, in order, with the
//! checks a call's registers must pass before anything looks at the caller's capabilities.
//!
//! This is the single definition of each call's argument order and argument syntax. The kernel
//! decodes with `from_regs` (refusing what does not fit the types: slots wider than 16 bits,
//! unknown rights bits, misaligned or wrapping addresses, ...), the domain runtime encodes
//! with `to_regs`, and `TABLE` (`crate::hypercall`) names the arguments with each type's
//! `ARGS`. For every call, `from_regs(a.to_regs()) == Ok(a)`, and a register value that
//! decodes encodes back to itself (`tests::every_call_round_trips`).

use crate::hypercall::{Call, CONSOLE_INPUT_MAX, CONSOLE_WRITE_MAX};
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

macro_rules! calls {
    ($(
        $(#[$meta:meta])*
        $name:ident => $call:ident { $( $(#[$fmeta:meta])* $field:ident : $ty:ty ),* $(,)? }
    )*) => {
        $(
            $(#[$meta])*
            #[derive(Clone, Copy, Debug, PartialEq, Eq)]
            #[cfg_attr(kani, derive(kani::Arbitrary))]
            pub struct $name {
                $( $(#[$fmeta])* pub $field: $ty, )*
            }

            impl CallArgs for $name {
                const CALL: Call = Call::$call;
                fn regs(&self) -> [u64; 6] {
                    self.to_regs()
                }
            }

            impl $name {
                /// The call these are the arguments of.
                pub const CALL: Call = Call::$call;
                /// The argument registers' names, x1 first.
                pub const ARGS: &'static [&'static str] = &[$(stringify!($field)),*];

                /// Decodes x1-x6 (registers past the last argument are ignored) and checks
                /// them together.
                #[allow(unused_variables, unused_mut, unused_assignments)]
                pub fn from_regs(regs: [u64; 6]) -> Result<Self, Status> {
                    let mut next = regs.iter();
                    $( let $field = <$ty as Arg>::from_reg(*next.next().unwrap_or(&0))?; )*
                    let args = $name { $($field),* };
                    args.check()?;
                    Ok(args)
                }

                /// x1-x6 (0 past the last argument).
                #[allow(unused_mut, unused_variables)]
                pub fn to_regs(&self) -> [u64; 6] {
                    let mut regs = [0u64; 6];
                    let mut next = regs.iter_mut();
                    $( if let Some(r) = next.next() { *r = self.$field.to_reg(); } )*
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
                $call($name),
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
            #[cfg(kani)]
            pub(crate) fn check(&self) -> Result<(), Status> {
                match self {
                    $( Args::$call(a) => a.check(), )*
                }
            }
        }

        /// Decodes x1-x6 as the arguments of `call` (what the kernel does first with every
        /// hypercall). Pure: no state is read.
        pub fn decode(call: Call, regs: [u64; 6]) -> Result<Args, Status> {
            match call {
                $( Call::$call => $name::from_regs(regs).map(Args::$call), )*
            }
        }

        /// The argument names of `call` (x1 first): the one definition `TABLE` uses.
        pub const fn names(call: Call) -> &'static [&'static str] {
            match call {
                $( Call::$call => $name::ARGS, )*
            }
        }

        /// Decodes and re-encodes `regs` as the arguments of `call` (what the tests and
        /// harnesses round-trip).
        pub fn round_trip(call: Call, regs: [u64; 6]) -> Result<[u64; 6], Status> {
            decode(call, regs).map(|a| a.to_regs())
        }
    };
}

calls! {
    /// `whoami`.
    Whoami => Whoami {}
    /// `console_write`: `len` bytes (at most [`CONSOLE_WRITE_MAX`]) packed little-endian
    /// into five registers.
    ConsoleWrite => ConsoleWrite {
        /// Bytes to write.
        len: u64,
        /// Bytes 0-7.
        bytes0: u64,
        /// Bytes 8-15.
        bytes1: u64,
        /// Bytes 16-23.
        bytes2: u64,
        /// Bytes 24-31.
        bytes3: u64,
        /// Bytes 32-39.
        bytes4: u64,
    }
    /// `yield`.
    Yield => Yield {}
    /// `cap_identify`.
    CapIdentify => CapIdentify {
        /// The slot.
        slot: Slot,
    }
    /// `cap_derive`.
    CapDerive => CapDerive {
        /// Source slot.
        src: Slot,
        /// Destination slot.
        dst: Slot,
        /// Rights of the copy.
        rights: Rights,
        /// First frame of the sub-range (absolute).
        first_frame: u64,
        /// Frames in it (0: the source's range).
        frame_count: u64,
    }
    /// `cap_grant`.
    CapGrant => CapGrant {
        /// Source slot.
        src: Slot,
        /// Slot of the receiver's Domain capability.
        domain: Slot,
        /// Slot in the receiver's space.
        dst: Slot,
        /// Rights of the copy.
        rights: Rights,
        /// First frame of the sub-range (absolute).
        first_frame: u64,
        /// Frames in it (0: the source's range).
        frame_count: u64,
    }
    /// `cap_revoke`.
    CapRevoke => CapRevoke {
        /// The slot.
        slot: Slot,
    }
    /// `cap_delete`.
    CapDelete => CapDelete {
        /// The slot.
        slot: Slot,
    }
    /// `mem_map`.
    MemMap => MemMap {
        /// Domain capability slot, or [`Slot::SELF_DOMAIN`].
        domain: Slot,
        /// Memory or DeviceMemory capability slot.
        memory: Slot,
        /// Guest-physical address (page aligned).
        ipa: u64,
        /// First frame (absolute).
        first_frame: u64,
        /// Frames.
        frame_count: u64,
        /// READ, WRITE, EXECUTE (READ included).
        perms: Rights,
    }
    /// `mem_unmap`.
    MemUnmap => MemUnmap {
        /// Domain capability slot, or [`Slot::SELF_DOMAIN`].
        domain: Slot,
        /// Guest-physical address (page aligned).
        ipa: u64,
        /// Pages.
        frame_count: u64,
    }
    /// `domain_create`.
    DomainCreate => DomainCreate {
        /// Slot for the new Domain capability.
        dst: Slot,
        /// Slots of its space (16 bits).
        slots: Slot,
        /// Kernel-memory quota in bytes.
        quota: u64,
    }
    /// `domain_destroy`.
    DomainDestroy => DomainDestroy {
        /// Domain capability slot, or [`Slot::SELF_DOMAIN`].
        domain: Slot,
    }
    /// `domain_pause`.
    DomainPause => DomainPause {
        /// Domain capability slot, or [`Slot::SELF_DOMAIN`].
        domain: Slot,
    }
    /// `domain_unpause`.
    DomainUnpause => DomainUnpause {
        /// Domain capability slot, or [`Slot::SELF_DOMAIN`].
        domain: Slot,
    }
    /// `domain_restart`.
    DomainRestart => DomainRestart {
        /// Domain capability slot, or [`Slot::SELF_DOMAIN`].
        domain: Slot,
    }
    /// `domain_info`.
    DomainInfo => DomainInfo {
        /// Domain capability slot, or [`Slot::SELF_DOMAIN`].
        domain: Slot,
    }
    /// `console_read`.
    ConsoleRead => ConsoleRead {
        /// Domain capability slot, or [`Slot::SELF_DOMAIN`].
        domain: Slot,
        /// Byte offset in its console output.
        offset: u64,
    }
    /// `domain_set_name`: 1-31 bytes of `[a-z0-9-]`, packed little-endian, NUL-padded.
    DomainSetName => DomainSetName {
        /// Domain capability slot.
        domain: Slot,
        /// Bytes 0-7.
        name0: u64,
        /// Bytes 8-15.
        name1: u64,
        /// Bytes 16-23.
        name2: u64,
        /// Bytes 24-31.
        name3: u64,
    }
    /// `console_input`: `len` bytes (at most [`CONSOLE_INPUT_MAX`]) packed little-endian
    /// into four registers.
    ConsoleInput => ConsoleInput {
        /// Domain capability slot.
        domain: Slot,
        /// Bytes to type.
        len: u64,
        /// Bytes 0-7.
        bytes0: u64,
        /// Bytes 8-15.
        bytes1: u64,
        /// Bytes 16-23.
        bytes2: u64,
        /// Bytes 24-31.
        bytes3: u64,
    }
    /// `domain_set_boot`.
    DomainSetBoot => DomainSetBoot {
        /// Domain capability slot.
        domain: Slot,
        /// [`crate::hypercall::BOOT_MICA`] or [`crate::hypercall::BOOT_LINUX`].
        protocol: u64,
    }
    /// `vcpu_create`.
    VcpuCreate => VcpuCreate {
        /// Domain capability slot, or [`Slot::SELF_DOMAIN`].
        domain: Slot,
        /// Slot for the Vcpu capability.
        dst: Slot,
        /// Its index in the domain (16 bits).
        index: Slot,
        /// Physical CPU (`ANY_CPU`: the kernel picks).
        cpu: u64,
    }
    /// `vcpu_start`.
    VcpuStart => VcpuStart {
        /// Vcpu capability slot.
        vcpu: Slot,
        /// Guest-physical entry point.
        entry: u64,
        /// x0 at entry.
        arg: u64,
    }
    /// `evtchn_create`.
    EvtchnCreate => EvtchnCreate {
        /// Slot for the first endpoint.
        dst_a: Slot,
        /// Slot for the second endpoint.
        dst_b: Slot,
    }
    /// `evtchn_bind`.
    EvtchnBind => EvtchnBind {
        /// Endpoint capability slot.
        endpoint: Slot,
        /// Event-page port.
        port: Port,
        /// Index of the vCPU to wake (16 bits).
        vcpu: Slot,
    }
    /// `evtchn_send`.
    EvtchnSend => EvtchnSend {
        /// Endpoint capability slot.
        endpoint: Slot,
    }
    /// `evtchn_mask`.
    EvtchnMask => EvtchnMask {
        /// Endpoint capability slot.
        endpoint: Slot,
        /// Mask (1) or unmask (0).
        masked: bool,
    }
    /// `event_page_set`.
    EventPageSet => EventPageSet {
        /// Guest-physical address of the page (page aligned).
        ipa: u64,
    }
    /// `sched_set`.
    SchedSet => SchedSet {
        /// SchedControl capability slot.
        control: Slot,
        /// Domain, vCPU and priority (`crate::sched::pack_target`).
        target: u64,
        /// Budget per period, ns.
        budget_ns: u64,
        /// Period, ns.
        period_ns: u64,
        /// Physical CPUs it may run on (a bit per CPU).
        affinity: u64,
    }
    /// `irq_bind_event`.
    IrqBindEvent => IrqBindEvent {
        /// Irq capability slot.
        irq: Slot,
        /// Endpoint capability slot.
        endpoint: Slot,
    }
    /// `irq_bind_virtual`.
    IrqBindVirtual => IrqBindVirtual {
        /// Irq capability slot.
        irq: Slot,
        /// Index of the vCPU (16 bits).
        vcpu: Slot,
    }
    /// `irq_ack`.
    IrqAck => IrqAck {
        /// Irq capability slot.
        irq: Slot,
    }
    /// `irq_unbind`.
    IrqUnbind => IrqUnbind {
        /// Irq capability slot.
        irq: Slot,
    }
}

impl Checked for Whoami {}
impl Checked for Yield {}
impl Checked for CapIdentify {}
impl Checked for CapRevoke {}
impl Checked for CapDelete {}
impl Checked for DomainCreate {}
impl Checked for DomainDestroy {}
impl Checked for DomainPause {}
impl Checked for DomainUnpause {}
impl Checked for DomainRestart {}
impl Checked for DomainInfo {}
impl Checked for ConsoleRead {}
impl Checked for VcpuCreate {}
impl Checked for VcpuStart {}
impl Checked for EvtchnCreate {}
impl Checked for EvtchnBind {}
impl Checked for EvtchnSend {}
impl Checked for EvtchnMask {}
impl Checked for IrqBindEvent {}
impl Checked for IrqBindVirtual {}
impl Checked for IrqAck {}
impl Checked for IrqUnbind {}

impl Checked for ConsoleWrite {
    fn check(&self) -> Result<(), Status> {
        if self.len > CONSOLE_WRITE_MAX as u64 {
            return Err(Status::InvalidArgument);
        }
        Ok(())
    }
}

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

impl Checked for CapDerive {
    fn check(&self) -> Result<(), Status> {
        check_frames(self.first_frame, self.frame_count)
    }
}

impl Checked for CapGrant {
    fn check(&self) -> Result<(), Status> {
        check_frames(self.first_frame, self.frame_count)
    }
}

impl Checked for MemMap {
    fn check(&self) -> Result<(), Status> {
        let perms = self.perms;
        if !(Rights::READ | Rights::WRITE | Rights::EXECUTE).contains(perms)
            || !perms.contains(Rights::READ)
        {
            return Err(Status::InvalidArgument);
        }
        check_ipa_range(self.ipa, self.frame_count)
    }
}

impl Checked for MemUnmap {
    fn check(&self) -> Result<(), Status> {
        check_ipa_range(self.ipa, self.frame_count)
    }
}

impl Checked for EventPageSet {
    fn check(&self) -> Result<(), Status> {
        if !self.ipa.is_multiple_of(PAGE_SIZE) {
            return Err(Status::InvalidArgument);
        }
        Ok(())
    }
}

impl Checked for SchedSet {
    fn check(&self) -> Result<(), Status> {
        crate::sched::unpack_target(self.target)
            .map(|_| ())
            .ok_or(Status::InvalidArgument)
    }
}

impl Checked for DomainSetBoot {
    fn check(&self) -> Result<(), Status> {
        match self.protocol {
            crate::hypercall::BOOT_MICA | crate::hypercall::BOOT_LINUX => Ok(()),
            _ => Err(Status::InvalidArgument),
        }
    }
}

impl Checked for ConsoleInput {
    fn check(&self) -> Result<(), Status> {
        if self.len > CONSOLE_INPUT_MAX as u64 {
            return Err(Status::InvalidArgument);
        }
        Ok(())
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

impl Checked for DomainSetName {
    fn check(&self) -> Result<(), Status> {
        let name = self.name();
        let len = name.iter().position(|b| *b == 0).unwrap_or(32);
        let valid = (1..=31).contains(&len)
            && name[..len]
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
            && name[len..].iter().all(|b| *b == 0);
        if !valid {
            return Err(Status::InvalidArgument);
        }
        Ok(())
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
