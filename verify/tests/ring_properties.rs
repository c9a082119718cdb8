//! Bolero properties of the inter-domain ring (`mica_rt::ring`, see `mica_verify::ring`).
//!
//! Random sequences of pushes, pops, each nested in the other at a random access, and (in the
//! hostile harness) garbage written by a misbehaving peer at any point; every property is
//! checked after every step and the ring is drained at the end.

use std::time::Duration;

use mica_verify::ring::{run, Op, Violation};

/// Random sequences per harness under plain `cargo test`.
const ITERATIONS: usize = 20_000;

fn report(capacity: u32, ops: &[Op], (step, violation): (usize, Violation)) -> ! {
    panic!("capacity {capacity}: broken at step {step}: {violation}\nsequence: {ops:#?}");
}

/// A well-behaved producer and consumer, any interleaving: every message comes out once, in
/// order, intact; `Full`/empty only when true; no wake-up lost; bounded work.
#[test]
#[cfg_attr(kani, kani::proof, kani::unwind(6))]
fn honest_sides_lose_nothing_in_any_interleaving() {
    bolero::check!()
        .with_type::<(bool, Vec<Op>)>()
        .with_iterations(ITERATIONS)
        .with_shrink_time(Duration::from_secs(5))
        .for_each(|(big, ops)| {
            let capacity = if *big { 4 } else { 2 };
            if let Err(e) = run(capacity, 16, ops, false) {
                report(capacity, ops, e);
            }
        });
}

/// The same with a peer writing arbitrary values into the header and the length prefixes,
/// between and inside operations: no access leaves the ring, every call does bounded work and
/// answers `Ok` or an error its situation allows (`Corrupt` once garbage is there).
#[test]
#[cfg_attr(kani, kani::proof, kani::unwind(6))]
fn a_misbehaving_peer_cannot_push_the_other_side_out_of_bounds() {
    bolero::check!()
        .with_type::<(bool, Vec<Op>)>()
        .with_iterations(ITERATIONS)
        .with_shrink_time(Duration::from_secs(5))
        .for_each(|(big, ops)| {
            let capacity = if *big { 4 } else { 2 };
            if let Err(e) = run(capacity, 16, ops, true) {
                report(capacity, ops, e);
            }
        });
}
