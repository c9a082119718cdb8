//! Harnesses that check Mica's core invariants: bolero properties (Kani-ready) and
//! bounded-exhaustive enumerations, run under plain `cargo test`.
#![forbid(unsafe_code)]
