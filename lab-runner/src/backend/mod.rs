//! How the runner drives a machine: QEMU it starts itself, or a physical board through console,
//! power and image-delivery methods.

pub mod physical;
