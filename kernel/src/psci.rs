//! Guest-facing PSCI (Arm DEN 0022): function ids, return codes and how a call is classified.
//!
//! Guests reach PSCI through `hvc` or `smc` (HCR_EL2.TSC traps the latter); either way the
//! kernel emulates it for the calling domain and nothing reaches firmware. SYSTEM_OFF and
//! SYSTEM_RESET end or restart only the calling domain.

/// PSCI_VERSION.
pub const VERSION: u64 = 0x8400_0000;
/// CPU_SUSPEND (SMC32 / SMC64).
pub const CPU_SUSPEND: [u64; 2] = [0x8400_0001, 0xC400_0001];
/// CPU_OFF.
pub const CPU_OFF: u64 = 0x8400_0002;
/// CPU_ON (SMC32 / SMC64).
pub const CPU_ON: [u64; 2] = [0x8400_0003, 0xC400_0003];
/// AFFINITY_INFO (SMC32 / SMC64).
pub const AFFINITY_INFO: [u64; 2] = [0x8400_0004, 0xC400_0004];
/// MIGRATE_INFO_TYPE.
pub const MIGRATE_INFO_TYPE: u64 = 0x8400_0006;
/// SYSTEM_OFF.
pub const SYSTEM_OFF: u64 = 0x8400_0008;
/// SYSTEM_RESET.
pub const SYSTEM_RESET: u64 = 0x8400_0009;
/// PSCI_FEATURES.
pub const FEATURES: u64 = 0x8400_000A;

/// PSCI 1.1, the version reported.
pub const VERSION_1_1: u64 = 0x0001_0001;

/// Return codes (DEN 0022 §5.2.2), as register values.
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

/// Whether `function` lies in the PSCI range (standard secure service calls 0x00-0x1F,
/// SMC32 or SMC64).
pub fn is_psci(function: u64) -> bool {
    function >> 32 == 0 && (function & 0xBFFF_FFE0) == 0x8400_0000
}

/// The emulated calls [`FEATURES`] reports as implemented.
pub fn implemented(function: u64) -> bool {
    matches!(
        function,
        VERSION | CPU_OFF | SYSTEM_OFF | SYSTEM_RESET | FEATURES | MIGRATE_INFO_TYPE
    ) || CPU_ON.contains(&function)
        || AFFINITY_INFO.contains(&function)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        for f in [
            VERSION,
            CPU_OFF,
            SYSTEM_OFF,
            SYSTEM_RESET,
            FEATURES,
            CPU_ON[0],
            CPU_ON[1],
            AFFINITY_INFO[1],
        ] {
            assert!(is_psci(f), "{f:#x}");
            assert!(implemented(f), "{f:#x}");
        }
        assert!(is_psci(CPU_SUSPEND[1]));
        assert!(!implemented(CPU_SUSPEND[1]));
        for f in [
            0u64,
            0x8000_0000,
            0xC600_0000,
            0x8400_0020,
            0x1_8400_0000,
            0x8600_0000,
        ] {
            assert!(!is_psci(f), "{f:#x}");
        }
    }
}
