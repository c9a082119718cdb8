//! Guest-facing PSCI (Arm DEN 0022): how a call is classified (ids and return codes are
//! `mica_abi::psci`'s).
//!
//! Guests reach PSCI through `hvc` or `smc` (HCR_EL2.TSC traps the latter); either way the
//! kernel emulates it for the calling domain and nothing reaches firmware. SYSTEM_OFF and
//! SYSTEM_RESET end or restart only the calling domain.

use mica_abi::psci as abi;
pub use mica_abi::psci::CPU_OFF;
pub use mica_abi::psci::{
    ret, FEATURES, MIGRATE_INFO_TYPE, SYSTEM_OFF, SYSTEM_RESET, VERSION, VERSION_1_1,
};

/// CPU_SUSPEND (SMC32 / SMC64).
pub const CPU_SUSPEND: [u64; 2] = [abi::CPU_SUSPEND_32, abi::CPU_SUSPEND_64];
/// CPU_ON (SMC32 / SMC64).
pub const CPU_ON: [u64; 2] = [abi::CPU_ON_32, abi::CPU_ON_64];
/// AFFINITY_INFO (SMC32 / SMC64).
pub const AFFINITY_INFO: [u64; 2] = [abi::AFFINITY_INFO_32, abi::AFFINITY_INFO_64];

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
