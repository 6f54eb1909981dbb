//! # Attack programs
//!
//! Each program in `src/bin/` runs as its own process (declared in `system/test.toml` with
//! `start = false`, launched from the shell with `start <name>`), tries one thing the kernel
//! must refuse, and prints exactly one result line through the console:
//!
//! - `ATTACK <name> REFUSED <error-name>` when the kernel refused (then exit 0), or
//! - `ATTACK <name> NOT-REFUSED` when the bad operation succeeded (then exit 1).
//!
//! The attacks that must get the process killed (a fault, not an error) print
//! `ATTACK <name> ATTEMPT` first, so a test can see the attempt came before the kernel's fault
//! report; reaching the line after the attempt prints `NOT-REFUSED`.
//!
//! Slots ([`brainix_proto::attack::slots`]): 0 the console (send), 1 the capability under attack
//! when the test needs one.
#![no_std]
#![deny(missing_docs)]

use brainix_abi::{Error, Handle};
use brainix_proto::{attack::slots, launch_handle};
use brainix_rt::fmt::Buffer;
use brainix_rt::{Endpoint, cap, println};
use core::fmt::Write;

/// An address in the kernel's window (the top 2 GiB, where the kernel image is linked). With
/// KPTI no user page table maps anything there.
pub const KERNEL_ADDR: u64 = 0xffff_ffff_8010_0000;

/// Exit code when the kernel refused, as it must.
pub const EXIT_REFUSED: u64 = 0;
/// Exit code when the attack got through.
pub const EXIT_NOT_REFUSED: u64 = 1;

/// Makes the console (slot 0) the place `println!` writes to.
pub fn setup() {
    brainix_rt::set_console(console());
}

/// The console endpoint.
pub fn console() -> Endpoint {
    Endpoint(launch_handle(slots::CONSOLE))
}

/// The capability under attack (slot 1).
pub fn target() -> Handle {
    launch_handle(slots::TARGET)
}

/// Calls `endpoint` with an empty message: the attack is in the handle, not the message.
pub fn call_empty(endpoint: Endpoint) -> Result<(), Error> {
    let mut reply = brainix_abi::Message::new(0);
    endpoint.call(&brainix_abi::Message::new(0), &[], &mut reply)
}

/// The result line for an outcome: refused with an error, or not refused.
pub fn result_line(name: &str, outcome: Result<(), Error>) -> Buffer<96> {
    let mut line = Buffer::new();
    let _ = match outcome {
        Err(e) => write!(line, "ATTACK {name} REFUSED {}", e.name()),
        Ok(()) => write!(line, "ATTACK {name} NOT-REFUSED"),
    };
    line
}

/// Prints the result line and exits with [`EXIT_REFUSED`] or [`EXIT_NOT_REFUSED`].
pub fn finish(name: &str, outcome: Result<(), Error>) -> ! {
    report(name, outcome);
    cap::exit(match outcome {
        Err(_) => EXIT_REFUSED,
        Ok(()) => EXIT_NOT_REFUSED,
    })
}

/// Prints the result line and goes on (for a program that tries more than one thing).
pub fn report(name: &str, outcome: Result<(), Error>) {
    println!("{}", result_line(name, outcome).as_str());
}

/// Announces an attempt the kernel must answer by killing the process.
pub fn attempt(name: &str) {
    println!("ATTACK {name} ATTEMPT");
}

/// After an attempt the process should not have survived: say so and exit.
pub fn survived(name: &str) -> ! {
    finish(name, Ok(()))
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn result_lines_are_exact() {
        assert_eq!(
            result_line("stale-handle", Err(Error::StaleHandle)).as_str(),
            "ATTACK stale-handle REFUSED stale-handle"
        );
        assert_eq!(
            result_line("forged-handle", Ok(())).as_str(),
            "ATTACK forged-handle NOT-REFUSED"
        );
        let long = "x".repeat(60);
        assert!(!result_line(&long, Err(Error::PayloadTooLarge)).truncated());
    }
}
