//! PSCI as a Mica domain sees it: emulated by the kernel per domain, over `hvc` or `smc`.
//!
//! CPU_ON starts another of the domain's own vCPUs (target = its index in MPIDR Aff0),
//! CPU_OFF stops the calling vCPU, SYSTEM_OFF ends the calling domain and SYSTEM_RESET
//! restarts it; no call ever reaches firmware (docs/domains.md). The free functions use
//! `hvc`; [`Psci::SMC`] issues the same calls through `smc`. Return codes are the low 32
//! bits of x0, read as a signed PSCI status.

use crate::conduit::{self, Conduit, Reply};

/// PSCI function ids (PSCI 1.1, DEN0022), as this runtime issues them.
pub mod function {
    pub use mica_abi::psci::{
        AFFINITY_INFO_64 as AFFINITY_INFO, CPU_OFF, CPU_ON_64 as CPU_ON, FEATURES, SYSTEM_OFF,
        SYSTEM_RESET, VERSION,
    };
}

/// A PSCI failure code (`mica_abi::psci::Error`).
pub use mica_abi::psci::Error;

/// Decodes x0 of a PSCI reply: a non-negative value, or the error.
pub fn decode(reply: Reply) -> Result<u32, Error> {
    Error::from_register(reply.status)
}

/// AFFINITY_INFO's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AffinityState {
    /// 0: running.
    On,
    /// 1: stopped.
    Off,
    /// 2: being started.
    OnPending,
}

/// PSCI through one conduit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Psci {
    conduit: Conduit,
}

impl Psci {
    /// PSCI over `hvc #0` (what the free functions use).
    pub const HVC: Psci = Psci {
        conduit: Conduit::Hvc,
    };
    /// PSCI over `smc #0`: trapped by the kernel and emulated identically.
    pub const SMC: Psci = Psci {
        conduit: Conduit::Smc,
    };

    /// Issues PSCI `function` with `args` in x1-x3, unchecked.
    pub fn raw(self, function: u64, args: [u64; 3]) -> Reply {
        conduit::call(self.conduit, function, [args[0], args[1], args[2], 0, 0, 0])
    }

    /// PSCI_VERSION: `(major, minor)`.
    pub fn version(self) -> Result<(u16, u16), Error> {
        let v = decode(self.raw(function::VERSION, [0; 3]))?;
        Ok(((v >> 16) as u16, v as u16))
    }

    /// PSCI_FEATURES of `function_id`: its feature flags if implemented.
    pub fn features(self, function_id: u64) -> Result<u32, Error> {
        decode(self.raw(function::FEATURES, [function_id, 0, 0]))
    }

    /// CPU_ON: starts vCPU `target` (its index, MPIDR Aff0) at IPA `entry`, MMU off, with
    /// `context` in x0.
    pub fn cpu_on(self, target: u64, entry: u64, context: u64) -> Result<(), Error> {
        decode(self.raw(function::CPU_ON, [target, entry, context])).map(drop)
    }

    /// CPU_OFF: stops the calling vCPU; returns only if refused.
    pub fn cpu_off(self) -> Error {
        match decode(self.raw(function::CPU_OFF, [0; 3])) {
            Err(e) => e,
            Ok(_) => Error::InternalFailure,
        }
    }

    /// AFFINITY_INFO of vCPU `target` (affinity level 0).
    pub fn affinity_info(self, target: u64) -> Result<AffinityState, Error> {
        match decode(self.raw(function::AFFINITY_INFO, [target, 0, 0]))? {
            0 => Ok(AffinityState::On),
            1 => Ok(AffinityState::Off),
            2 => Ok(AffinityState::OnPending),
            other => Err(Error::Other(other as i32)),
        }
    }

    /// SYSTEM_OFF: ends the calling domain. Returns only if the hypervisor did not, with
    /// what x0 said (`Ok` if it claimed success).
    pub fn system_off(self) -> Result<(), Error> {
        decode(self.raw(function::SYSTEM_OFF, [0; 3])).map(drop)
    }

    /// SYSTEM_RESET: restarts the calling domain from its image. Returns only if refused.
    pub fn system_reset(self) -> Result<(), Error> {
        decode(self.raw(function::SYSTEM_RESET, [0; 3])).map(drop)
    }
}

/// PSCI_VERSION over `hvc`.
pub fn version() -> Result<(u16, u16), Error> {
    Psci::HVC.version()
}

/// PSCI_FEATURES over `hvc`.
pub fn features(function_id: u64) -> Result<u32, Error> {
    Psci::HVC.features(function_id)
}

/// CPU_ON over `hvc`.
pub fn cpu_on(target: u64, entry: u64, context: u64) -> Result<(), Error> {
    Psci::HVC.cpu_on(target, entry, context)
}

/// CPU_OFF over `hvc`; returns only if refused.
pub fn cpu_off() -> Error {
    Psci::HVC.cpu_off()
}

/// AFFINITY_INFO over `hvc`.
pub fn affinity_info(target: u64) -> Result<AffinityState, Error> {
    Psci::HVC.affinity_info(target)
}

/// SYSTEM_OFF over `hvc`: ends the calling domain.
pub fn system_off() -> Result<(), Error> {
    Psci::HVC.system_off()
}

/// SYSTEM_RESET over `hvc`: restarts the calling domain.
pub fn system_reset() -> Result<(), Error> {
    Psci::HVC.system_reset()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conduit::mock;

    fn answer(x0: u64) {
        mock::reply(Reply {
            status: x0,
            values: [0; 3],
        });
    }

    #[test]
    fn calls_go_through_the_chosen_conduit_with_psci_ids() {
        answer(0);
        assert_eq!(cpu_on(1, 0x4000_2000, 0x4001_0000), Ok(()));
        answer(0x0001_0001);
        assert_eq!(Psci::SMC.version(), Ok((1, 1)));
        answer(0);
        assert_eq!(Psci::SMC.system_off(), Ok(()));
        answer(1);
        assert_eq!(affinity_info(1), Ok(AffinityState::Off));
        let log = mock::take();
        assert_eq!(log[0].conduit, Conduit::Hvc);
        assert_eq!(log[0].function, 0xC400_0003);
        assert_eq!(log[0].args, [1, 0x4000_2000, 0x4001_0000, 0, 0, 0]);
        assert_eq!(log[1].conduit, Conduit::Smc);
        assert_eq!(log[1].function, 0x8400_0000);
        assert_eq!(log[2].conduit, Conduit::Smc);
        assert_eq!(log[2].function, 0x8400_0008);
        assert_eq!(log[3].function, 0xC400_0004);
        assert_eq!(log[3].args[..2], [1, 0]);
    }

    #[test]
    fn negative_codes_are_errors_in_32_or_64_bits() {
        // An SMC32 function may leave the upper half of x0 zero...
        answer(0xFFFF_FFFC);
        assert_eq!(cpu_on(1, 0, 0), Err(Error::AlreadyOn));
        // ...or sign-extend.
        answer(-2i64 as u64);
        assert_eq!(Psci::SMC.cpu_on(9, 0, 0), Err(Error::InvalidParameters));
        answer(-3i64 as u64);
        assert_eq!(cpu_off(), Error::Denied);
        answer(-42i64 as u64);
        assert_eq!(system_reset(), Err(Error::Other(-42)));
        mock::take();
        assert_eq!(Error::from_code(-9).name(), "INVALID_ADDRESS");
        assert_eq!(format!("{}", Error::Other(-42)), "PSCI error -42");
        assert_eq!(format!("{}", Error::NotPresent), "NOT_PRESENT");
    }
}
