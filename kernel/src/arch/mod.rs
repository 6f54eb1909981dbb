//! The machine. Everything that executes privileged instructions, touches hardware, or depends on
//! the bare-metal target lives under here; the rest of the kernel is portable and host-tested.

pub mod x86_64;
