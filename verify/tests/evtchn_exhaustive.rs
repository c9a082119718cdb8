//! Bounded-exhaustive check of the event-channel state machine (see
//! `mica_verify::evtchn::explore`). Prints the states explored (`-- --nocapture`) and asserts
//! a floor on them.

use std::time::Instant;

use mica_verify::evtchn::explore;

/// Sequence length bound.
const DEPTH: usize = 8;
/// The exploration must reach at least this many distinct states.
const MIN_STATES: usize = 35_000;

#[test]
fn every_sequence_up_to_the_bound_loses_no_event() {
    let started = Instant::now();
    match explore(DEPTH) {
        Ok(stats) => {
            println!(
                "evtchn exhaustive: depth {DEPTH}: {} states explored, {} transitions in {:.1?}",
                stats.states,
                stats.transitions,
                started.elapsed()
            );
            assert!(
                stats.states >= MIN_STATES,
                "explored only {} states",
                stats.states
            );
        }
        Err((trace, violation)) => panic!("{violation}\nafter: {trace:#?}"),
    }
}
