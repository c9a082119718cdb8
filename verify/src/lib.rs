//! Harnesses that check Mica's core invariants: bolero properties (Kani-ready) and
//! bounded-exhaustive enumerations, run under plain `cargo test`.
//!
//! Covered: the capability system (`caps`, `exhaustive`), the whole kernel's domain and vCPU
//! lifecycle (`lifecycle`: isolation invariants over hypercalls, faults and scheduling), the
//! kernel's event-channel state machine (`evtchn`: `mica_kernel::evtchn`) and the
//! inter-domain ring (`ring`:
//! `mica_rt::ring`, the very code domains run, over a model of shared memory with preemption
//! and a misbehaving peer).
//!
//! The library holds what the test files, the fuzz target (`verify/fuzz/`) and the mutation
//! script (`verify/mutants.sh`) share: an operation language over a small capability system,
//! a harness that applies operations and checks every invariant of `docs/capabilities.md`
//! after every step, and the exhaustive explorer. Keeping it in one place means a new
//! invariant is checked by all three tools at once.
#![forbid(unsafe_code)]

pub mod caps;
pub mod evtchn;
pub mod exhaustive;
pub mod lifecycle;
pub mod ring;
