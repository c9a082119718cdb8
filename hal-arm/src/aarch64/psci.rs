//! Calls to the firmware's PSCI (Arm DEN 0022) through `smc`.
//!
//! From EL2 the conduit is always `smc`: an `hvc` would trap to Mica itself. Only the report
//! of a boot at EL1 uses the device tree's conduit (`hvc` there).

use mica_abi::psci::{Error as PsciError, CPU_ON_64, SYSTEM_OFF, VERSION};
use mica_kernel::platform::PsciConduit;

/// x0 of a reply as a value or the error.
fn from_return(r: i64) -> Result<u64, PsciError> {
    PsciError::from_register(r as u64).map(u64::from)
}

fn smc(function: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    call(PsciConduit::Smc, function, a1, a2, a3)
}

fn call(conduit: PsciConduit, function: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    let ret: u64;
    let hvc = u64::from(conduit == PsciConduit::Hvc);
    // SAFETY: an SMCCC call to firmware (or, from EL1, to the hypervisor QEMU emulates);
    // per SMCCC x0-x17 may be overwritten, which the clobbers declare. Firmware does not
    // touch Mica's memory for these PSCI calls.
    unsafe {
        core::arch::asm!(
            "cbz {hvc}, 1f",
            "hvc #0",
            "b 2f",
            "1: smc #0",
            "2:",
            hvc = in(reg) hvc,
            inout("x0") function => ret,
            inout("x1") a1 => _,
            inout("x2") a2 => _,
            inout("x3") a3 => _,
            out("x4") _, out("x5") _, out("x6") _, out("x7") _,
            out("x8") _, out("x9") _, out("x10") _, out("x11") _,
            out("x12") _, out("x13") _, out("x14") _, out("x15") _,
            out("x16") _, out("x17") _,
            options(nostack),
        );
    }
    ret as i64
}

/// The firmware's PSCI version as (major, minor).
pub fn version() -> (u16, u16) {
    let v = smc(VERSION, 0, 0, 0) as u64;
    ((v >> 16) as u16, v as u16)
}

/// Starts the CPU with affinity `target` at physical address `entry` with `context` in x0.
pub fn cpu_on(target: u64, entry: u64, context: u64) -> Result<(), PsciError> {
    from_return(smc(CPU_ON_64, target, entry, context)).map(|_| ())
}

/// Powers the machine off. Returns only if firmware refused.
pub fn system_off() -> PsciError {
    system_off_via(PsciConduit::Smc)
}

/// [`system_off`] through `conduit`: `hvc` is for a CPU that is not at EL2 (the report of a
/// boot at the wrong exception level).
pub fn system_off_via(conduit: PsciConduit) -> PsciError {
    match from_return(call(conduit, SYSTEM_OFF, 0, 0, 0)) {
        Err(e) => e,
        Ok(_) => PsciError::Other(0),
    }
}
