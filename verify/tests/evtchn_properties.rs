//! Bolero properties of the event-channel state machine (see `mica_verify::evtchn`).

use std::time::Duration;

use mica_verify::evtchn::{run, Op};

/// Random sequences under plain `cargo test`.
const ITERATIONS: usize = 20_000;

/// Any sequence of creates, binds, sends, masks, closes and domain unbinds: every result is
/// the one it must be, no event or wake-up is lost, none reaches a closed endpoint, nothing
/// leaks.
#[test]
#[cfg_attr(kani, kani::proof, kani::unwind(6))]
fn no_event_is_lost_and_none_reaches_a_closed_endpoint() {
    bolero::check!()
        .with_type::<Vec<Op>>()
        .with_iterations(ITERATIONS)
        .with_shrink_time(Duration::from_secs(5))
        .for_each(|ops| {
            if let Err((step, v)) = run(ops) {
                panic!("broken at step {step}: {v}\nsequence: {ops:#?}");
            }
        });
}

/// After any sequence, closing every endpoint empties the table (entries are freed when both
/// sides are closed) and leaves room for new channels.
#[test]
#[cfg_attr(kani, kani::proof, kani::unwind(6))]
fn closing_everything_frees_every_entry() {
    bolero::check!()
        .with_type::<Vec<Op>>()
        .with_iterations(ITERATIONS)
        .with_shrink_time(Duration::from_secs(5))
        .for_each(|ops| {
            let mut h = run(ops).unwrap_or_else(|(step, v)| {
                panic!("broken at step {step}: {v}\nsequence: {ops:#?}")
            });
            for ep in 0..h.endpoints() as u8 {
                if let Err(v) = h.step(Op::Close { ep }) {
                    panic!("closing {ep}: {v}\nsequence: {ops:#?}");
                }
            }
            assert!(h.table.is_empty(), "entries left after closing everything");
            assert!(h.table.has_room());
        });
}
