//! The kernel binary. On the bare-metal target the entry is the boot stub in `arch`; on the
//! host this file builds an empty program so that `cargo test --workspace` can build every
//! target of the crate.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
use brainix_kernel as _;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("brainix-kernel runs on bare metal: build it with `cargo xtask build`");
    std::process::exit(2);
}
