//! Calls to the firmware's PSCI (Arm DEN 0022) through `smc`.
//!
//! From EL2 the conduit is always `smc`: an `hvc` would trap to Mica itself.

/// PSCI_VERSION.
pub const PSCI_VERSION: u64 = 0x8400_0000;
/// CPU_ON, SMC64 calling convention.
pub const CPU_ON_64: u64 = 0xC400_0003;
/// SYSTEM_OFF.
pub const SYSTEM_OFF: u64 = 0x8400_0008;
/// SYSTEM_RESET.
pub const SYSTEM_RESET: u64 = 0x8400_0009;

/// A PSCI error return (the negative values of DEN 0022 §5.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciError {
    /// -1
    NotSupported,
    /// -2
    InvalidParameters,
    /// -3
    Denied,
    /// -4
    AlreadyOn,
    /// -5
    OnPending,
    /// -6
    InternalFailure,
    /// -9
    InvalidAddress,
    /// Anything else.
    Other(i64),
}

impl PsciError {
    fn from_return(r: i64) -> Result<u64, PsciError> {
        match r {
            r if r >= 0 => Ok(r as u64),
            -1 => Err(PsciError::NotSupported),
            -2 => Err(PsciError::InvalidParameters),
            -3 => Err(PsciError::Denied),
            -4 => Err(PsciError::AlreadyOn),
            -5 => Err(PsciError::OnPending),
            -6 => Err(PsciError::InternalFailure),
            -9 => Err(PsciError::InvalidAddress),
            other => Err(PsciError::Other(other)),
        }
    }
}

fn smc(function: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    let ret: u64;
    // SAFETY: an SMCCC call to firmware; per SMCCC x0-x17 may be overwritten, which the
    // clobbers declare. Firmware does not touch EL2 memory for these PSCI calls.
    unsafe {
        core::arch::asm!(
            "smc #0",
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
    let v = smc(PSCI_VERSION, 0, 0, 0) as u64;
    ((v >> 16) as u16, v as u16)
}

/// Starts the CPU with affinity `target` at physical address `entry` with `context` in x0.
pub fn cpu_on(target: u64, entry: u64, context: u64) -> Result<(), PsciError> {
    PsciError::from_return(smc(CPU_ON_64, target, entry, context)).map(|_| ())
}

/// Powers the machine off. Returns only if firmware refused.
pub fn system_off() -> PsciError {
    match PsciError::from_return(smc(SYSTEM_OFF, 0, 0, 0)) {
        Err(e) => e,
        Ok(_) => PsciError::Other(0),
    }
}
