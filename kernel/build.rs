//! Links the bare-metal kernel with its own script. Host builds (unit tests) are left alone.

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    // Cargo does not relink when only the script changes; this makes it.
    println!("cargo:rerun-if-changed=link.ld");
    println!("cargo:rerun-if-changed=build.rs");
    if target_os == "none" {
        println!("cargo:rustc-link-arg-bins=-T{manifest}/link.ld");
        println!("cargo:rustc-link-arg-bins=--no-dynamic-linker");
        println!("cargo:rustc-link-arg-bins=-z");
        println!("cargo:rustc-link-arg-bins=max-page-size=4096");
        println!("cargo:rustc-link-arg-bins=--build-id=none");
    }
}
