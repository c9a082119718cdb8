//! Fuzz target: arbitrary capability operation sequences, every invariant checked per step.
//!
//! The input bytes decode six at a time into `mica_verify::caps::Op` (see `Op::decode_all`),
//! so libFuzzer's coverage feedback steers the same harness the bolero and exhaustive tests
//! use. Run with `cargo +nightly fuzz run caps_ops` from `verify/fuzz` (README there).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mica_verify::caps::{run, Op};

fuzz_target!(|data: &[u8]| {
    let ops = Op::decode_all(data);
    if let Err((step, violation)) = run(&ops) {
        panic!("invariant broken at step {step}: {violation}\nsequence: {ops:#?}");
    }
});
