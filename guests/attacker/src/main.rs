//! `attacker`: tries everything a hostile domain could, and reports each refusal by name.
//!
//! Every attack prints one line, `attacker: <attack>: refused (<status>)` or
//! `attacker: <attack>: NOT REFUSED`; the `isolation` smoke scenario forbids the latter.
//! First the hypercall attacks (capability slots it does not hold, forged slot numbers,
//! out-of-range arguments, unknown call ids, PSCI aimed at vCPUs it does not have, other
//! domains' memory, a vCPU of its own outside its pinning), then `attacker: hypercall attacks
//! done`, then one fatal attack chosen by `arg`: 0 = read IPA 0x8000_0000, which it was not
//! given (the kernel must stop it); 1 = PSCI SYSTEM_OFF through `smc` (must end only this
//! domain); other values end quietly.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use mica_abi::hypercall::{Call, VENDOR_HYP_BASE};
use mica_rt::hypercall::{self, raw_call, CapInfo};
use mica_rt::psci::{self, Psci};
use mica_rt::{memory, println, BootInfo, FrameRange, ObjectType, Rights, Slot, Status};

/// A slot number with bits above the 16-bit slot index set: a forged generation/selector.
const FORGED_SLOT: u64 = 0x1_0000 | 3;
/// An IPA it was not given (beyond any RAM a test manifest gives a domain).
const WILD_IPA: u64 = 0x8000_0000;
/// An IPA inside another domain's usual RAM window, where it would like to map frames.
const MAP_IPA: u64 = 0x4800_0000;
/// Slots scanned to learn what it holds.
const SCAN_LIMIT: u64 = 256;

/// Prints the verdict on a Mica hypercall attack.
fn report<T>(attack: &str, outcome: Result<T, Status>) {
    match outcome {
        Err(status) => println!("attacker: {attack}: refused ({status:?})"),
        Ok(_) => println!("attacker: {attack}: NOT REFUSED"),
    }
}

/// Prints the verdict on a PSCI attack.
fn report_psci<T>(attack: &str, outcome: Result<T, psci::Error>) {
    match outcome {
        Err(error) => println!("attacker: {attack}: refused ({error})"),
        Ok(_) => println!("attacker: {attack}: NOT REFUSED"),
    }
}

/// Judges a raw status register: 0 is success (not refused); anything else names a Mica
/// status, an SMCCC/PSCI code (the kernel answers ids outside the Mica and PSCI ranges
/// with SMCCC NOT_SUPPORTED, -1), or failing both its raw value.
fn verdict(attack: &str, x0: u64) {
    if x0 == 0 {
        println!("attacker: {attack}: NOT REFUSED");
    } else if let Some(Err(status)) = Status::from_raw(x0) {
        println!("attacker: {attack}: refused ({status:?})");
    } else if (x0 as u32 as i32) < 0 {
        let code = psci::Error::from_code(x0 as u32 as i32);
        println!("attacker: {attack}: refused ({code})");
    } else {
        println!("attacker: {attack}: refused ({x0:#x})");
    }
}

/// Issues a raw call and judges its status register.
fn raw(attack: &str, call: u64, args: [u64; 6]) {
    verdict(attack, raw_call(call, args).status);
}

/// What the attacker learned about its own capability space.
struct Space {
    /// Slots in its space.
    slots: u64,
    /// Its vCPU index.
    vcpu: u64,
    /// A slot it does not hold.
    empty: Slot,
    /// Its first Memory capability, if any.
    memory: Option<(Slot, CapInfo)>,
    /// Its first capability of any type, if any.
    any: Option<(Slot, CapInfo)>,
}

fn survey() -> Space {
    let (slots, vcpu) = match hypercall::whoami() {
        Ok(me) => (me.slots, me.vcpu_index),
        Err(status) => {
            println!("attacker: whoami refused ({status:?}); assuming 64 slots");
            (64, 0)
        }
    };
    let mut space = Space {
        slots,
        vcpu,
        empty: Slot(slots.saturating_sub(1).min(0xFFFE) as u16),
        memory: None,
        any: None,
    };
    let mut held = 0;
    let mut last_empty = None;
    for index in 0..slots.min(SCAN_LIMIT) {
        let slot = Slot(index as u16);
        match hypercall::cap_identify(slot) {
            Ok(info) => {
                held += 1;
                space.any.get_or_insert((slot, info));
                if info.object_type == ObjectType::Memory {
                    space.memory.get_or_insert((slot, info));
                }
            }
            Err(Status::InvalidCapability) => last_empty = Some(slot),
            Err(_) => {}
        }
    }
    if let Some(slot) = last_empty {
        space.empty = slot;
    }
    println!(
        "attacker: holds {held} of {slots} slots; attacking through empty slot {}",
        space.empty.0
    );
    space
}

fn capability_attacks(space: &Space) {
    let empty = space.empty;
    report("identify an empty slot", hypercall::cap_identify(empty));
    raw(
        "identify a slot beyond its space",
        Call::CapIdentify.function_id(),
        [space.slots, 0, 0, 0, 0, 0],
    );
    raw(
        "identify a forged slot 0x10003",
        Call::CapIdentify.function_id(),
        [FORGED_SLOT, 0, 0, 0, 0, 0],
    );
    report(
        "derive from an empty slot",
        hypercall::cap_derive(empty, empty, Rights::READ, None),
    );
    match space.any {
        Some((slot, info)) => {
            let missing = Rights::all().difference(info.rights);
            let wanted = if missing.is_empty() {
                // Holds every right there is: ask for one that does not exist.
                info.rights.bits() as u64 | 1 << 20
            } else {
                (info.rights | missing).bits() as u64
            };
            raw(
                "derive with rights it does not have",
                Call::CapDerive.function_id(),
                [slot.raw(), empty.raw(), wanted, 0, 0, 0],
            );
        }
        None => report(
            "derive with rights it does not have",
            hypercall::cap_derive(empty, empty, Rights::all(), None),
        ),
    }
    let src = space.any.map_or(empty, |(slot, _)| slot);
    report(
        "grant into a domain it does not hold",
        hypercall::cap_grant(src, empty, Slot(0), Rights::READ, None),
    );
    raw(
        "revoke a slot beyond its space",
        Call::CapRevoke.function_id(),
        [space.slots + 1, 0, 0, 0, 0, 0],
    );
    raw(
        "delete a forged slot u64::MAX",
        Call::CapDelete.function_id(),
        [u64::MAX, 0, 0, 0, 0, 0],
    );
    report(
        "destroy a domain through an empty slot",
        hypercall::domain_destroy(empty),
    );
    raw(
        "pause a domain through a forged slot 0x10003",
        Call::DomainPause.function_id(),
        [FORGED_SLOT, 0, 0, 0, 0, 0],
    );
    report(
        "unpause a domain through an empty slot",
        hypercall::domain_unpause(empty),
    );
    report(
        "create a vcpu in a domain it does not hold",
        hypercall::vcpu_create(empty, empty, 1, 0),
    );
    report(
        "start a vcpu through an empty slot",
        hypercall::vcpu_start(empty, 0x4000_0000, 0),
    );
    raw(
        "start a vcpu through a forged slot 0x10003",
        Call::VcpuStart.function_id(),
        [FORGED_SLOT, 0x4000_0000, 0, 0, 0, 0],
    );
    report(
        "create a domain with unbounded quota",
        hypercall::domain_create(empty, 64, u64::MAX),
    );
}

/// `[first, first + count)`: every range these attacks name is well formed (a malformed one
/// can only be sent raw, as `raw` does).
fn frames(first: u64, count: u64) -> FrameRange {
    FrameRange::new(first, count).expect("a well-formed frame range")
}

fn argument_attacks(space: &Space) {
    let bytes =
        mica_abi::hypercall::pack_console_bytes(b"attacker: this line must never appear!!!");
    let console = Call::ConsoleWrite.function_id();
    raw(
        "console_write len 41",
        console,
        [41, bytes[0], bytes[1], bytes[2], bytes[3], bytes[4]],
    );
    raw(
        "console_write len u64::MAX",
        console,
        [u64::MAX, bytes[0], bytes[1], bytes[2], bytes[3], bytes[4]],
    );
    let memory = space.memory.map_or(space.empty, |(slot, _)| slot);
    let rw = Rights::READ | Rights::WRITE;
    report(
        "mem_map at a misaligned ipa",
        hypercall::mem_map(
            Slot::SELF_DOMAIN,
            memory,
            MAP_IPA + 1,
            frames(0, 1),
            Rights::READ,
        ),
    );
    report(
        "mem_map a huge frame count",
        hypercall::mem_map(Slot::SELF_DOMAIN, memory, MAP_IPA, frames(0, 1 << 52), rw),
    );
    // Frames are absolute: the first one past the capability's range.
    let past_end = space
        .memory
        .and_then(|(_, info)| info.frames)
        .map_or(0, FrameRange::end);
    report(
        "mem_map frames beyond its capability",
        hypercall::mem_map(Slot::SELF_DOMAIN, memory, MAP_IPA, frames(past_end, 1), rw),
    );
    raw(
        "mem_map with undefined permission bits",
        Call::MemMap.function_id(),
        [
            Slot::SELF_DOMAIN.raw(),
            memory.raw(),
            MAP_IPA,
            0,
            1,
            1 << 40,
        ],
    );
}

fn foreign_memory_attacks(space: &Space) {
    let rw = Rights::READ | Rights::WRITE;
    report(
        "mem_map another domain's memory",
        hypercall::mem_map(Slot::SELF_DOMAIN, space.empty, MAP_IPA, frames(0, 16), rw),
    );
    raw(
        "mem_map another domain's memory via a forged slot 0x10003",
        Call::MemMap.function_id(),
        [
            Slot::SELF_DOMAIN.raw(),
            FORGED_SLOT,
            MAP_IPA,
            0,
            16,
            rw.bits() as u64,
        ],
    );
    let memory = space.memory.map_or(space.empty, |(slot, _)| slot);
    report(
        "mem_map into a domain it does not hold",
        hypercall::mem_map(space.empty, memory, MAP_IPA, frames(0, 1), rw),
    );
    report(
        "mem_unmap in a domain it does not hold",
        hypercall::mem_unmap(space.empty, 0x4000_0000, 1),
    );
}

fn unknown_call_attacks() {
    raw(
        "unknown vendor call 0x7fff",
        VENDOR_HYP_BASE | 0x7FFF,
        [0; 6],
    );
    raw("unassigned vendor call 0x3", VENDOR_HYP_BASE | 0x3, [0; 6]);
    raw("non-vendor call 0x86000000", 0x8600_0000, [0; 6]);
    raw("call id 0", 0, [0; 6]);
}

fn psci_attacks(space: &Space) {
    report_psci(
        "psci cpu_on of a vcpu it does not have",
        psci::cpu_on(7, 0x4000_0000, 0),
    );
    report_psci(
        "psci cpu_on of itself (hijack a running vcpu)",
        psci::cpu_on(space.vcpu, 0x4000_0000, 0),
    );
    report_psci(
        "psci cpu_on via smc of a vcpu it does not have",
        Psci::SMC.cpu_on(7, 0x4000_0000, 0),
    );
    // Not PSCI: SMCCC says NOT_SUPPORTED (-1); it must never reach firmware.
    verdict(
        "smc to a firmware service 0xc2000000",
        Psci::SMC.raw(0xC200_0000, [0; 3]).status,
    );
}

fn main(info: BootInfo) -> ! {
    println!("attacker: started (arg {})", info.arg);
    let space = survey();
    capability_attacks(&space);
    argument_attacks(&space);
    foreign_memory_attacks(&space);
    unknown_call_attacks();
    psci_attacks(&space);
    // The manifest pins `attacker` (arg 0) to CPU 0 and `attacker-smc` (arg 1) to CPU 1: a
    // vCPU of its own on the other CPU would escape that pinning.
    let other_cpu = if info.arg == 1 { 0 } else { 1 };
    report(
        "create a vcpu in itself on another CPU",
        hypercall::vcpu_create(Slot::SELF_DOMAIN, space.empty, 1, other_cpu),
    );
    println!("attacker: hypercall attacks done");
    match info.arg {
        0 => {
            println!("attacker: wild read of {WILD_IPA:#x} (the kernel must stop this domain)");
            match memory::probe_read(WILD_IPA) {
                Some(_) => println!("attacker: wild read: NOT REFUSED"),
                None => println!("attacker: wild read: skipped ({WILD_IPA:#x} is in its RAM)"),
            }
        }
        1 => {
            println!("attacker: psci system_off via smc (must end this domain only)");
            let outcome = Psci::SMC.system_off();
            println!("attacker: psci system_off via smc: returned ({outcome:?})");
        }
        _ => {}
    }
    mica_rt::exit()
}

mica_rt::entry!(main);
