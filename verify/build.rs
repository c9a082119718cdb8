//! Build script: declares the `kani` cfg so the Kani-ready harness attributes pass the lints.
//!
//! `cargo kani` sets `cfg(kani)`; plain builds do not, and rustc's `unexpected_cfgs` check
//! must know the name exists.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(kani)");
}
