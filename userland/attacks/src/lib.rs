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
//! Each refusal is also a check verdict for lab-runner: the program holds one report capability
//! per refusal it tries, after its other capabilities, and reports them in the order it tries
//! them. A verdict is PASS only when the kernel refused with exactly the expected error. The
//! attempts that must end in a fault are judged by the supervisor, which sees the fault
//! ([`brainix_proto::attack::FAULTS`]).
//!
//! Slots ([`brainix_proto::attack::slots`]): 0 the console (send), 1 the capability under attack
//! when the test needs one, then the report capabilities.
#![no_std]
#![deny(missing_docs)]

use brainix_abi::{Error, Handle};
use brainix_proto::{attack::slots, launch_handle};
use brainix_rt::fmt::Buffer;
use brainix_rt::{Endpoint, Report, cap, println};
use core::fmt::Write;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Which report capability the next verdict goes to.
static NEXT_VERDICT: AtomicUsize = AtomicUsize::new(0);

pub use brainix_proto::attack::KERNEL_ADDR;

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

/// Fault injection, not an attack: asks the server in slot 1 (a fault-injection build in the test
/// system) to crash with request `label`, prints `<line> reply=<error-name>` (`reply=ok` if the
/// server survived) and exits. The reply must be `peer-dead`: the kernel killed the server while
/// it owed the reply.
pub fn crash(label: u64, line: &str) -> ! {
    setup();
    let server = Endpoint(target());
    let mut reply = brainix_abi::Message::new(0);
    let outcome = server
        .call(&brainix_abi::Message::new(label), &[], &mut reply)
        .and_then(|()| brainix_proto::status(&reply));
    match outcome {
        Ok(()) => println!("{line} reply=ok"),
        Err(e) => println!("{line} reply={}", e.name()),
    }
    brainix_rt::exit(0)
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

/// The verdict on an outcome: PASS only for a refusal with `expected`, and its detail.
pub fn verdict(outcome: Result<(), Error>, expected: Error) -> (bool, Buffer<96>) {
    let mut detail = Buffer::new();
    let pass = outcome == Err(expected);
    let _ = match outcome {
        Err(e) if pass => write!(detail, "refused with {}", e.name()),
        Err(e) => write!(
            detail,
            "refused with {}, expected {}",
            e.name(),
            expected.name()
        ),
        Ok(()) => write!(detail, "NOT refused; expected {}", expected.name()),
    };
    (pass, detail)
}

/// Prints the result line, reports the verdict, and exits with [`EXIT_REFUSED`] or
/// [`EXIT_NOT_REFUSED`].
pub fn finish(name: &str, expected: Error, outcome: Result<(), Error>) -> ! {
    report(name, expected, outcome);
    cap::exit(match outcome {
        Err(_) => EXIT_REFUSED,
        Ok(()) => EXIT_NOT_REFUSED,
    })
}

/// Prints the result line and reports the verdict through the next report capability, then
/// goes on (for a program that tries more than one thing).
pub fn report(name: &str, expected: Error, outcome: Result<(), Error>) {
    println!("{}", result_line(name, outcome).as_str());
    let (pass, detail) = verdict(outcome, expected);
    check(pass, detail.as_bytes());
}

/// Reports the next check's verdict. Without a report capability (a system that does not
/// test) there is nobody to tell, and the printed line stands alone.
pub fn check(pass: bool, detail: &[u8]) {
    let n = NEXT_VERDICT.fetch_add(1, Ordering::Relaxed);
    if let Some(r) = Report::nth(n)
        && let Err(e) = r.report(pass, detail)
    {
        println!("ATTACK verdict {n} not reported: {}", e.name());
    }
}

/// Announces an attempt the kernel must answer by killing the process.
pub fn attempt(name: &str) {
    println!("ATTACK {name} ATTEMPT");
}

/// After an attempt the process should not have survived: say so and exit.
/// The verdict is the supervisor's, which sees the exit instead of the expected fault.
pub fn survived(name: &str) -> ! {
    println!("{}", result_line(name, Ok(())).as_str());
    cap::exit(EXIT_NOT_REFUSED)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn only_the_expected_refusal_passes() {
        let (pass, detail) = verdict(Err(Error::BadHandle), Error::BadHandle);
        assert!(pass);
        assert_eq!(detail.as_str(), "refused with bad-handle");
        let (pass, detail) = verdict(Err(Error::WrongType), Error::BadHandle);
        assert!(!pass);
        assert_eq!(
            detail.as_str(),
            "refused with wrong-type, expected bad-handle"
        );
        let (pass, detail) = verdict(Ok(()), Error::StaleHandle);
        assert!(!pass);
        assert_eq!(detail.as_str(), "NOT refused; expected stale-handle");
    }

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
