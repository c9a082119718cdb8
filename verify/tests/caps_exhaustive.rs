//! Bounded-exhaustive check of the capability invariants (see `mica_verify::exhaustive`).
//!
//! Prints the number of states explored (`cargo test -p mica-verify -- --nocapture`) and
//! asserts a floor on it, so a change that silently shrinks the search fails loudly.

use std::time::Instant;

use mica_verify::exhaustive::explore;

/// Sequence length bound; chosen to finish in well under a minute in a debug build.
const DEPTH: usize = 4;
/// The exploration must reach at least this many distinct states.
const MIN_STATES: usize = 80_000;

#[test]
fn every_sequence_up_to_the_bound_keeps_every_invariant() {
    let started = Instant::now();
    match explore(DEPTH) {
        Ok(stats) => {
            println!(
                "caps exhaustive: depth {DEPTH}: {} states explored, {} transitions ({} succeeded) in {:.1?}",
                stats.states,
                stats.transitions,
                stats.successes,
                started.elapsed()
            );
            assert!(
                stats.states >= MIN_STATES,
                "explored only {} states",
                stats.states
            );
        }
        Err((trace, violation)) => {
            panic!("invariant broken: {violation}\nafter: {trace:#?}");
        }
    }
}
