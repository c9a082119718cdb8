//! `mica`: the host command line for Mica systems.
#![forbid(unsafe_code)]

fn main() {}
