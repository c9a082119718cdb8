//! The raw hypercall conduit and the decoding of its results.
//!
//! On aarch64 a call is `hvc #0` with the function id in x0 and up to six arguments in
//! x1-x6; the kernel answers with a status in x0 (0 = success, else a
//! [`mica_abi::Status`]) and up to three values in x1-x3.

use mica_abi::Status;

/// What a hypercall returned: the status and up to three values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Raw status register.
    pub status: u64,
    /// x1-x3.
    pub values: [u64; 3],
}

impl Reply {
    /// The values on success, or the status; a status this ABI does not define is
    /// reported as [`Status::NotSupported`] rather than mistaken for success.
    pub fn result(self) -> Result<[u64; 3], Status> {
        match Status::from_raw(self.status) {
            Some(Ok(())) => Ok(self.values),
            Some(Err(s)) => Err(s),
            None => Err(Status::NotSupported),
        }
    }
}

/// Issues hypercall `function` with `args`.
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub fn call(function: u64, args: [u64; 6]) -> Reply {
    let (x0, x1, x2, x3);
    // SAFETY: `hvc #0` traps to the hypervisor, which by the Mica ABI writes only x0-x3
    // (declared as outputs) and the memory the call's arguments name, which the caller
    // passes by address only for calls documented to write there.
    unsafe {
        core::arch::asm!(
            "hvc #0",
            inout("x0") function => x0,
            inout("x1") args[0] => x1,
            inout("x2") args[1] => x2,
            inout("x3") args[2] => x3,
            in("x4") args[3],
            in("x5") args[4],
            in("x6") args[5],
            options(nostack),
        );
    }
    Reply { status: x0, values: [x1, x2, x3] }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_decode_to_results() {
        assert_eq!(Reply { status: 0, values: [1, 2, 3] }.result(), Ok([1, 2, 3]));
        assert_eq!(Reply { status: Status::InvalidCapability.to_raw(), values: [0; 3] }.result(), Err(Status::InvalidCapability));
        assert_eq!(Reply { status: 0xFFFF, values: [0; 3] }.result(), Err(Status::NotSupported));
    }
}
