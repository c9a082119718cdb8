//! Bolero property harnesses over random operation sequences on the capability system.
//!
//! Under `cargo test` bolero draws a bounded number of random sequences (seconds, not minutes)
//! and shrinks a failing one; under `cargo kani` the same harnesses are proofs over bounded
//! inputs; `cargo bolero test` can drive them with a coverage-guided fuzzer.

use std::time::Duration;

use mica_caps::{CapAddr, SpaceId, SpaceState};
use mica_verify::caps::{run, Op, ROOT, SLOTS, SPACES};

/// Random sequences per harness under plain `cargo test`.
const ITERATIONS: usize = 20_000;

fn report(ops: &[Op], (step, violation): (usize, mica_verify::caps::Violation)) -> ! {
    panic!("invariant broken at step {step}: {violation}\nsequence: {ops:#?}");
}

/// Every invariant (I1..I9) holds after every step of any sequence.
#[test]
#[cfg_attr(kani, kani::proof, kani::unwind(6))]
fn random_sequences_keep_every_invariant() {
    bolero::check!()
        .with_type::<Vec<Op>>()
        .with_iterations(ITERATIONS)
        .with_shrink_time(Duration::from_secs(5))
        .for_each(|ops| {
            if let Err(e) = run(ops) {
                report(ops, e);
            }
        });
}

/// After any sequence, revoking every capability of every space leaves no derived
/// capability anywhere: only roots remain (I2, I4).
#[test]
#[cfg_attr(kani, kani::proof, kani::unwind(6))]
fn revoking_everything_leaves_only_roots() {
    bolero::check!()
        .with_type::<Vec<Op>>()
        .with_iterations(ITERATIONS)
        .with_shrink_time(Duration::from_secs(5))
        .for_each(|ops| {
            let mut h = run(ops).unwrap_or_else(|e| report(ops, e));
            for space in 0..SPACES as u8 {
                for slot in 0..SLOTS as u8 {
                    if let Err(v) = h.step(Op::Revoke { space, slot }) {
                        report(ops, (ops.len(), v));
                    }
                }
            }
            for (addr, view) in h.sys.capabilities() {
                assert_eq!(
                    view.parent, None,
                    "{addr:?} still derived after revoking all"
                );
            }
        });
}

/// After any sequence, deleting every capability (repeatedly, since deleting a Domain
/// capability empties that domain's space) refunds every byte: the root is charged nothing
/// and every other space is free again (I6), and no object is left alive (I5).
#[test]
#[cfg_attr(kani, kani::proof, kani::unwind(6))]
fn deleting_everything_refunds_every_quota() {
    bolero::check!()
        .with_type::<Vec<Op>>()
        .with_iterations(ITERATIONS)
        .with_shrink_time(Duration::from_secs(5))
        .for_each(|ops| {
            let mut h = run(ops).unwrap_or_else(|e| report(ops, e));
            loop {
                let first = h.sys.capabilities().next();
                let Some((addr, _)) = first else { break };
                let CapAddr { space, slot } = addr;
                let op = Op::Delete {
                    space: space.0 as u8,
                    slot: slot as u8,
                };
                match h.step(op) {
                    Ok(Ok(())) => {}
                    Ok(Err(status)) => panic!("deleting {addr:?} failed: {status:?}"),
                    Err(v) => report(ops, (ops.len(), v)),
                }
            }
            assert_eq!(
                h.sys.objects().count(),
                0,
                "objects outlived every capability"
            );
            assert_eq!(
                h.sys.space(ROOT).map(|s| s.used),
                Some(0),
                "root not refunded"
            );
            for space in 1..SPACES as u16 {
                let state = h.sys.space(SpaceId(space)).map(|s| s.state);
                assert_eq!(state, Some(SpaceState::Free), "space {space} not released");
            }
        });
}
