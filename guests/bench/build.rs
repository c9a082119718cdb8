//! Links the bench guest with `mica-rt`'s domain layout (`mica-domain.ld`) on bare metal, with
//! its own entry point `mica_bench_entry` (it reads the virtual counter before anything else
//! runs, then jumps to `mica-rt`'s `_start`).
fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bins=-Tmica-domain.ld");
        println!("cargo:rustc-link-arg-bins=--entry=mica_bench_entry");
    }
}
