//! Builds the trusted public key into the loader.
//!
//! `BRAINIX_LOADER_PUBKEY` names a public key file (`brainix-ed25519-public:<64 hex digits>`,
//! written by `cargo xtask keygen`). `cargo xtask build` sets it; building the UEFI loader without
//! it is an error, so no loader can exist that trusts a key nobody chose. Host builds (the
//! library's tests) need no key.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=BRAINIX_LOADER_PUBKEY");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let uefi = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("uefi");
    let key = match std::env::var_os("BRAINIX_LOADER_PUBKEY") {
        Some(path) => {
            let path = PathBuf::from(path);
            println!("cargo:rerun-if-changed={}", path.display());
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!("BRAINIX_LOADER_PUBKEY: cannot read {}: {e}", path.display())
            });
            parse_public(&text).unwrap_or_else(|| {
                panic!(
                    "BRAINIX_LOADER_PUBKEY: {} is not a public key file; expected one line \
                     brainix-ed25519-public:<64 hex digits> (cargo xtask keygen writes one)",
                    path.display()
                )
            })
        }
        None if uefi => panic!(
            "BRAINIX_LOADER_PUBKEY is not set: the loader must be built with the public key it \
             trusts; build it with `cargo xtask build` (development key) or `cargo xtask release`"
        ),
        None => [0; 32],
    };
    let text = format!("/// The trusted Ed25519 public key.\npub const KEY: [u8; 32] = {key:?};\n");
    std::fs::write(out.join("trusted_key.rs"), text).expect("writing trusted_key.rs");
}

fn parse_public(text: &str) -> Option<[u8; 32]> {
    let hex = text
        .strip_suffix('\n')
        .unwrap_or(text)
        .strip_prefix("brainix-ed25519-public:")?;
    if hex.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, k) in key.iter_mut().enumerate() {
        *k = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(key)
}
