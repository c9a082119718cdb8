//! Links the guest with its own layout (`nullbench.ld`) on bare metal: no `mica-rt`, so that
//! the same image boots under Mica (as an ELF) and under Xen (as an arm64 Image).
fn main() {
    println!("cargo:rerun-if-changed=nullbench.ld");
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
        println!("cargo:rustc-link-search={dir}");
        println!("cargo:rustc-link-arg-bins=-Tnullbench.ld");
    }
}
