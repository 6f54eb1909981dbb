//! The BraiNIX UEFI loader (`BOOTX64.EFI`): read, measure, verify, load, enter. See the library's
//! documentation (`src/lib.rs`) for the order and why it is fail closed.
//!
//! On the host this is an empty program, so `cargo test --workspace` builds it; the loader
//! itself is built for `x86_64-unknown-uefi` by `cargo xtask build`, with the trusted public key
//! given in `BRAINIX_LOADER_PUBKEY` (see `build.rs`).
#![cfg_attr(target_os = "uefi", no_std, no_main)]

#[cfg(target_os = "uefi")]
mod efi;

#[cfg(not(target_os = "uefi"))]
fn main() {}
