//! Bounded-exhaustive check of the inter-domain ring (see `mica_verify::ring::explore`).
//!
//! Every sequence of operations up to a depth, for capacities 2 and 4, honest and with a
//! misbehaving peer. Prints the states explored (`cargo test -p mica-verify --test
//! ring_exhaustive -- --nocapture`) and asserts a floor on them, so a change that silently
//! shrinks the search fails loudly.

use std::time::Instant;

use mica_verify::ring::explore;

/// Bytes per slot: a 4-byte length and up to 4 bytes of message.
const SLOT: usize = 8;

fn check(capacity: u32, depth: usize, hostile: bool, min_states: usize) {
    let started = Instant::now();
    match explore(capacity, SLOT, depth, hostile) {
        Ok(stats) => {
            println!(
                "ring exhaustive: capacity {capacity}, {}, depth {depth}: {} states explored, {} transitions in {:.1?}",
                if hostile { "hostile peer" } else { "honest peers" },
                stats.states,
                stats.transitions,
                started.elapsed()
            );
            assert!(
                stats.states >= min_states,
                "explored only {} states",
                stats.states
            );
        }
        Err((trace, violation)) => {
            panic!("capacity {capacity}: {violation}\nafter: {trace:#?}");
        }
    }
}

#[test]
fn honest_capacity_2() {
    check(2, 10, false, 40_000);
}

#[test]
fn honest_capacity_4() {
    check(4, 10, false, 40_000);
}

#[test]
fn hostile_capacity_2() {
    check(2, 3, true, 15_000);
}

#[test]
fn hostile_capacity_4() {
    check(4, 3, true, 30_000);
}
