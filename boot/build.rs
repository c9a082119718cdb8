//! Gives each bare-metal binary its linker script, for the target it is built for.
//!
//! Host builds (clippy, `cargo check` on the workspace) get no linker arguments; the
//! binaries are only linked for their `*-unknown-none` targets.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "none" {
        match arch.as_str() {
            "aarch64" => {
                println!("cargo:rustc-link-arg-bin=mica-aarch64=-T{dir}/src/arch/aarch64.ld")
            }
            "x86_64" => println!("cargo:rustc-link-arg-bin=mica-x86_64=-T{dir}/src/arch/x86_64.ld"),
            _ => {}
        }
    }
    println!("cargo:rerun-if-changed=src/arch/aarch64.ld");
    println!("cargo:rerun-if-changed=src/arch/x86_64.ld");
}
