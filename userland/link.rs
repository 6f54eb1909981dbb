//! The build script every BraiNIX program shares (each program's `Cargo.toml` points its `build`
//! key here): on the bare-metal target, link the binaries with `userland/link.ld`. Host builds
//! (`cargo test`) are left alone.

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    // Programs in userland/ find it beside them, servers in drivers/ under ../userland.
    let here = std::path::Path::new(&manifest);
    let script = [here.join("../link.ld"), here.join("../../userland/link.ld")]
        .into_iter()
        .find(|p| p.is_file())
        .expect("userland/link.ld is where every program's build script expects it");
    // Cargo does not relink when only the script changes; this makes it.
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:rerun-if-changed=../link.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default() == "none" {
        println!("cargo:rustc-link-arg-bins=-T{}", script.display());
        println!("cargo:rustc-link-arg-bins=--no-dynamic-linker");
        println!("cargo:rustc-link-arg-bins=-static");
        println!("cargo:rustc-link-arg-bins=-z");
        println!("cargo:rustc-link-arg-bins=max-page-size=4096");
        println!("cargo:rustc-link-arg-bins=--build-id=none");
        // The images are embedded in the kernel: symbols stay (fault reports can name a
        // function), debug information goes.
        println!("cargo:rustc-link-arg-bins=--strip-debug");
    }
}
