//! BraiNIX lab-runner: drives BraiNIX images on QEMU configurations and physical test machines,
//! and reports, per invariant, which checks passed.
//!
//! Principles this crate is checked against (see `docs/lab-runner.md`):
//! - **A missing result is never a pass.** The runner announces what it expects; the target
//!   announces what it will report (`PLAN`); anything announced and not reported is MISS.
//! - **Target output is hostile.** Only framed lines with this run's nonce, the next sequence number
//!   and a good CRC become results (`protocol`); memory per boot is bounded by the runner.
//! - **Infrastructure is not the kernel.** QEMU dying, a lost console or a failed power switch is
//!   ERROR and may be retried; a FAIL is never retried.
//! - **Leave nothing behind.** Every process the runner starts runs in its own process group and is
//!   killed with it (`backend::process`); board locks are `flock`s that die with the process.
//! - **Resources apart from drivers.** `board` says what a machine is; `backend` says how to drive
//!   it; `run` decides how to reach the states a plan needs.

#![warn(missing_docs)]

pub mod artefact;
pub mod backend;
pub mod board;
pub mod console_log;
pub mod measure;
pub mod plan;
pub mod protocol;
pub mod report;
pub mod run;
pub mod session;
pub mod source;
pub mod template;
pub mod workspace;
