//! How the runner drives a machine: QEMU it starts itself, or a physical board through console,
//! power and image-delivery methods. Resources (what a board has) live in [`crate::board`]; this
//! module only knows how to use them.

pub mod physical;
pub mod process;
pub mod qemu;
