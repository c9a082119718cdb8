//! The trap instructions a domain reaches the hypervisor with, and what comes back.
//!
//! Mica hypercalls and PSCI share the SMCCC register convention: function id in x0,
//! arguments in x1-x6, status (or PSCI return code) in x0 and values in x1-x3. Mica calls use
//! `hvc #0`; PSCI may use `hvc` or `smc`, both trapped and emulated per domain by the kernel
//! (docs/domains.md). On x86_64 the one conduit is `vmmcall` (DESIGN.md §3). On the host,
//! unit tests replace the conduit with a recording mock ([`mock`]); other host builds get
//! [`Status::NotSupported`] from every call, as there is no hypervisor to ask.

use mica_abi::Status;

/// Which instruction carries a call to the hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conduit {
    /// `hvc #0` (aarch64) / `vmmcall` (x86_64).
    Hvc,
    /// `smc #0` (aarch64 only): trapped by the hypervisor (HCR_EL2.TSC), never firmware.
    Smc,
}

/// What a call returned: the status register and up to three values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Raw x0: a Mica status (0 = success) or a PSCI return code.
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

    /// A reply that carries only a failure status.
    pub const fn failed(status: Status) -> Reply {
        Reply {
            status: status.to_raw(),
            values: [0; 3],
        }
    }
}

/// Traps to the hypervisor through `conduit` with `function` in x0 and `args` in x1-x6.
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub fn call(conduit: Conduit, function: u64, args: [u64; 6]) -> Reply {
    let (x0, x1, x2, x3): (u64, u64, u64, u64);
    // Both arms: the hypervisor writes at most x0-x17 (SMCCC 1.0 lets x4-x17 be clobbered;
    // all are declared) and memory only as the call documents (PSCI CPU_ON makes another
    // vCPU read the memory its context id names, which is why `nomem` is not given).
    match conduit {
        // SAFETY: see above; `hvc #0` returns to the next instruction at EL1 with SP and
        // every undeclared register preserved.
        Conduit::Hvc => unsafe {
            core::arch::asm!(
                "hvc #0",
                inout("x0") function => x0,
                inout("x1") args[0] => x1,
                inout("x2") args[1] => x2,
                inout("x3") args[2] => x3,
                inout("x4") args[3] => _,
                inout("x5") args[4] => _,
                inout("x6") args[5] => _,
                out("x7") _, out("x8") _, out("x9") _, out("x10") _, out("x11") _,
                out("x12") _, out("x13") _, out("x14") _, out("x15") _, out("x16") _,
                out("x17") _,
                options(nostack),
            );
        },
        // SAFETY: as for `hvc`: the kernel traps `smc` (HCR_EL2.TSC = 1) and answers with
        // the same register convention.
        Conduit::Smc => unsafe {
            core::arch::asm!(
                "smc #0",
                inout("x0") function => x0,
                inout("x1") args[0] => x1,
                inout("x2") args[1] => x2,
                inout("x3") args[2] => x3,
                inout("x4") args[3] => _,
                inout("x5") args[4] => _,
                inout("x6") args[5] => _,
                out("x7") _, out("x8") _, out("x9") _, out("x10") _, out("x11") _,
                out("x12") _, out("x13") _, out("x14") _, out("x15") _, out("x16") _,
                out("x17") _,
                options(nostack),
            );
        },
    }
    Reply {
        status: x0,
        values: [x1, x2, x3],
    }
}

/// Traps to the hypervisor with `vmmcall` (DESIGN.md §3: id in rax, arguments in rdi, rsi,
/// rdx, r10, r8, r9; status in rax, values in rdi, rsi, rdx). There is no `smc` on x86_64.
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
pub fn call(conduit: Conduit, function: u64, args: [u64; 6]) -> Reply {
    if conduit == Conduit::Smc {
        return Reply::failed(Status::NotSupported);
    }
    let (rax, rdi, rsi, rdx): (u64, u64, u64, u64);
    // SAFETY: `vmmcall` exits to the hypervisor, which writes only the declared result
    // registers and the memory a call documents, then resumes at the next instruction.
    unsafe {
        core::arch::asm!(
            "vmmcall",
            inout("rax") function => rax,
            inout("rdi") args[0] => rdi,
            inout("rsi") args[1] => rsi,
            inout("rdx") args[2] => rdx,
            in("r10") args[3],
            in("r8") args[4],
            in("r9") args[5],
            options(nostack),
        );
    }
    Reply {
        status: rax,
        values: [rdi, rsi, rdx],
    }
}

/// Unit tests: records every call and answers from a script.
#[cfg(test)]
pub fn call(conduit: Conduit, function: u64, args: [u64; 6]) -> Reply {
    mock::call(conduit, function, args)
}

/// A host build outside tests has no hypervisor: every call is [`Status::NotSupported`].
#[cfg(not(any(test, target_os = "none")))]
pub fn call(_conduit: Conduit, _function: u64, _args: [u64; 6]) -> Reply {
    Reply::failed(Status::NotSupported)
}

/// The host-test conduit: a per-thread log of calls and a queue of scripted replies.
#[cfg(test)]
pub mod mock {
    use super::{Conduit, Reply};
    use std::cell::RefCell;
    use std::collections::VecDeque;

    /// One recorded call.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Recorded {
        /// The conduit used.
        pub conduit: Conduit,
        /// x0.
        pub function: u64,
        /// x1-x6.
        pub args: [u64; 6],
    }

    thread_local! {
        static LOG: RefCell<Vec<Recorded>> = const { RefCell::new(Vec::new()) };
        static SCRIPT: RefCell<VecDeque<Reply>> = const { RefCell::new(VecDeque::new()) };
    }

    /// Queues the reply the next unanswered call gets (default: success, values 0).
    pub fn reply(reply: Reply) {
        SCRIPT.with(|s| s.borrow_mut().push_back(reply));
    }

    /// Takes the calls recorded so far on this thread.
    pub fn take() -> Vec<Recorded> {
        LOG.with(|l| core::mem::take(&mut *l.borrow_mut()))
    }

    pub(super) fn call(conduit: Conduit, function: u64, args: [u64; 6]) -> Reply {
        LOG.with(|l| {
            l.borrow_mut().push(Recorded {
                conduit,
                function,
                args,
            })
        });
        SCRIPT
            .with(|s| s.borrow_mut().pop_front())
            .unwrap_or(Reply {
                status: 0,
                values: [0; 3],
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_decode_to_results() {
        let ok = Reply {
            status: 0,
            values: [1, 2, 3],
        };
        assert_eq!(ok.result(), Ok([1, 2, 3]));
        let refused = Reply::failed(Status::InvalidCapability);
        assert_eq!(refused.result(), Err(Status::InvalidCapability));
        let unknown = Reply {
            status: 0xFFFF,
            values: [0; 3],
        };
        assert_eq!(unknown.result(), Err(Status::NotSupported));
    }

    #[test]
    fn mock_records_and_scripts() {
        reply(Reply::failed(Status::Busy));
        assert_eq!(
            call(Conduit::Smc, 7, [1, 2, 3, 4, 5, 6]).result(),
            Err(Status::Busy)
        );
        assert_eq!(call(Conduit::Hvc, 8, [0; 6]).result(), Ok([0; 3]));
        let log = mock::take();
        assert_eq!(log.len(), 2);
        assert_eq!(log[0].conduit, Conduit::Smc);
        assert_eq!(log[0].args, [1, 2, 3, 4, 5, 6]);
        assert_eq!(log[1].function, 8);
    }

    use mock::reply;
}
