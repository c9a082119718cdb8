//! PSCI (Arm DEN 0022, "Power State Coordination Interface" 1.1): function ids, return codes
//! and their names, as the kernel emulates them for domains, the runtime calls them, and the
//! aarch64 HAL calls the firmware's.

/// PSCI_VERSION.
pub const VERSION: u64 = 0x8400_0000;
/// CPU_SUSPEND, SMC32 calling convention.
pub const CPU_SUSPEND_32: u64 = 0x8400_0001;
/// CPU_SUSPEND, SMC64.
pub const CPU_SUSPEND_64: u64 = 0xC400_0001;
/// CPU_OFF.
pub const CPU_OFF: u64 = 0x8400_0002;
/// CPU_ON, SMC32.
pub const CPU_ON_32: u64 = 0x8400_0003;
/// CPU_ON, SMC64.
pub const CPU_ON_64: u64 = 0xC400_0003;
/// AFFINITY_INFO, SMC32.
pub const AFFINITY_INFO_32: u64 = 0x8400_0004;
/// AFFINITY_INFO, SMC64.
pub const AFFINITY_INFO_64: u64 = 0xC400_0004;
/// MIGRATE_INFO_TYPE.
pub const MIGRATE_INFO_TYPE: u64 = 0x8400_0006;
/// SYSTEM_OFF.
pub const SYSTEM_OFF: u64 = 0x8400_0008;
/// SYSTEM_RESET.
pub const SYSTEM_RESET: u64 = 0x8400_0009;
/// PSCI_FEATURES.
pub const FEATURES: u64 = 0x8400_000A;

/// PSCI 1.1, as PSCI_VERSION reports it (major << 16 | minor).
pub const VERSION_1_1: u64 = 0x0001_0001;

/// Return codes (DEN 0022 §5.2.2), as values of the status register x0.
pub mod ret {
    /// SUCCESS.
    pub const SUCCESS: u64 = 0;
    /// NOT_SUPPORTED (-1); also SMCCC's answer to an unknown function id.
    pub const NOT_SUPPORTED: u64 = -1i64 as u64;
    /// INVALID_PARAMETERS (-2).
    pub const INVALID_PARAMETERS: u64 = -2i64 as u64;
    /// DENIED (-3).
    pub const DENIED: u64 = -3i64 as u64;
    /// ALREADY_ON (-4).
    pub const ALREADY_ON: u64 = -4i64 as u64;
    /// INVALID_ADDRESS (-9).
    pub const INVALID_ADDRESS: u64 = -9i64 as u64;
    /// AFFINITY_INFO: ON.
    pub const AFFINITY_ON: u64 = 0;
    /// AFFINITY_INFO: OFF.
    pub const AFFINITY_OFF: u64 = 1;
}

/// A PSCI failure code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// -1: the function is not implemented.
    NotSupported,
    /// -2: an argument is invalid (e.g. no such CPU).
    InvalidParameters,
    /// -3: the caller may not do this.
    Denied,
    /// -4: the target CPU is already running.
    AlreadyOn,
    /// -5: the target CPU is being started.
    OnPending,
    /// -6: the implementation failed.
    InternalFailure,
    /// -7: the target does not exist.
    NotPresent,
    /// -8: the target is disabled.
    Disabled,
    /// -9: the entry address is invalid.
    InvalidAddress,
    /// A negative code PSCI 1.1 does not define.
    Other(i32),
}

impl Error {
    /// Decodes a negative PSCI return code.
    pub const fn from_code(code: i32) -> Error {
        match code {
            -1 => Error::NotSupported,
            -2 => Error::InvalidParameters,
            -3 => Error::Denied,
            -4 => Error::AlreadyOn,
            -5 => Error::OnPending,
            -6 => Error::InternalFailure,
            -7 => Error::NotPresent,
            -8 => Error::Disabled,
            -9 => Error::InvalidAddress,
            other => Error::Other(other),
        }
    }

    /// Decodes the status register of a PSCI reply (its low 32 bits, signed): a non-negative
    /// value, or the error.
    pub const fn from_register(x0: u64) -> Result<u32, Error> {
        let code = x0 as u32 as i32;
        if code < 0 {
            Err(Error::from_code(code))
        } else {
            Ok(code as u32)
        }
    }

    /// The specification's name (`ALREADY_ON`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            Error::NotSupported => "NOT_SUPPORTED",
            Error::InvalidParameters => "INVALID_PARAMETERS",
            Error::Denied => "DENIED",
            Error::AlreadyOn => "ALREADY_ON",
            Error::OnPending => "ON_PENDING",
            Error::InternalFailure => "INTERNAL_FAILURE",
            Error::NotPresent => "NOT_PRESENT",
            Error::Disabled => "DISABLED",
            Error::InvalidAddress => "INVALID_ADDRESS",
            Error::Other(_) => "UNKNOWN_PSCI_ERROR",
        }
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Other(code) => write!(f, "PSCI error {code}"),
            known => f.write_str(known.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_codes_decode_to_their_errors() {
        assert_eq!(Error::from_register(ret::SUCCESS), Ok(0));
        assert_eq!(Error::from_register(ret::AFFINITY_OFF), Ok(1));
        assert_eq!(Error::from_register(ret::ALREADY_ON), Err(Error::AlreadyOn));
        assert_eq!(Error::from_register(ret::DENIED), Err(Error::Denied));
        assert_eq!(
            Error::from_register(ret::INVALID_ADDRESS),
            Err(Error::InvalidAddress)
        );
        assert_eq!(
            Error::from_register(ret::NOT_SUPPORTED),
            Err(Error::NotSupported)
        );
        assert_eq!(Error::from_code(-100), Error::Other(-100));
        assert_eq!(Error::AlreadyOn.to_string(), "ALREADY_ON");
    }
}
