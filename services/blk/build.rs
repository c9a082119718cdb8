//! Links the guest with `mica-rt`'s domain layout (`mica-domain.ld`) on bare metal.
fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bins=-Tmica-domain.ld");
    }
}
