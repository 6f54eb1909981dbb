//! # The BraiNIX kernel
//!
//! The smallest ring-0 surface we can build: booting, page tables, and (as the later issues land)
//! capabilities, synchronous IPC and scheduling. Nothing else lives here.
//!
//! The principles this code is checked against (the full text is the product's seed):
//!
//! - **P-01 Least authority.** Nothing holds what it does not need; nothing is ambient.
//! - **P-02 Fail closed.** A missing CPU feature, an unparseable boot record, an exhausted pool or
//!   a failed self-check stops the boot with one clear line; it is never worked around.
//! - **P-03 Structure over secrecy.** There is no KASLR: the layout is fixed and documented in
//!   `docs/ARCHITECTURE.md`. Safety comes from the page tables, not from where things are.
//! - **P-04 Minimize and name the trust.** No external crates. `unsafe` lives in `arch/`; every
//!   block says why it is sound.
//! - **P-05 Every claim is falsifiable.** INV-MEM is not only set up at boot, it is checked: the
//!   kernel walks its own page tables ([`mem::audit`]) and reports PASS or the first offending
//!   address in its boot report.
//!
//! Everything outside `arch/` is portable logic that also compiles on the host and is unit-tested
//! with plain `cargo test`. Only `arch/` and the boot path need QEMU to test.
//!
//! There is no heap: this crate never links `alloc` and defines no global allocator. Every
//! kernel object comes from a fixed-size pool whose capacity is a named constant.
#![cfg_attr(target_os = "none", no_std)]
#![forbid(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]

#[cfg(target_os = "none")]
pub mod arch;
pub mod bootinfo;
pub mod cap;
pub mod cmdline;
pub mod cpu;
pub mod elf;
pub mod exit;
pub mod ipc;
pub mod manifest;
pub mod mem;
pub mod platform;
pub mod report;
pub mod sched;
pub mod syscall;
pub mod system;
