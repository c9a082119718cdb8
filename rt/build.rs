//! Puts the domain linker script (`mica-domain.ld`) on the library search path of every
//! crate that depends on `mica-rt`, for bare-metal targets.
//!
//! A domain's own build script then only passes `-Tmica-domain.ld` (see `guests/*/build.rs`);
//! the script's symbols (`__mica_rt_bss_start`, ...) are the contract with `src/entry.rs`.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=mica-domain.ld");
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("none") {
        return;
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::copy("mica-domain.ld", out.join("mica-domain.ld"))
        .expect("copy mica-domain.ld into OUT_DIR");
    println!("cargo:rustc-link-search={}", out.display());
}
