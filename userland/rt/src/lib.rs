//! # The BraiNIX user runtime
//!
//! What every BraiNIX program links: typed wrappers for each system call in [`brainix_abi`]
//! ([`cap`]), the raw instruction ([`sys`]), the program entry ([`entry!`]), a panic handler,
//! and [`print!`]/[`println!`] through the console server.
//!
//! ## How a program starts
//!
//! The kernel enters the ELF entry `_start` with `rdi` = pid, `rsi` = generation, `rsp` =
//! [`brainix_abi::layout::STACK_TOP`] (16-byte aligned) and every other register zero. `_start`
//! calls the program's entry function (`run(pid)` by convention) through [`entry!`] with the stack aligned as the System V ABI
//! expects after a `call`.
//!
//! ## Host builds
//!
//! `cargo test --workspace` compiles every program for the host too. There [`entry!`] expands
//! to an empty `fn main() {}`, the panic handler and `_start` are left out, and a system call
//! panics. Logic worth testing lives in plain functions that never make one.
#![no_std]
#![forbid(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]

pub mod cap;
pub mod fmt;
pub mod process;
pub mod sys;

pub use brainix_abi as abi;
pub use cap::{
    AuditRead, Endpoint, IoPorts, Irq, Log, PciFunction, ProcessControl, Received, Region,
    ReplyToken, Report, exit,
};

use brainix_abi::{CapType, Handle, Message, Syscall};
use core::sync::atomic::{AtomicU64, Ordering};

/// Exit code of a program that panicked.
pub const PANIC_EXIT: u64 = 101;

/// Slots a panicking program searches for a log capability: the whole table.
const SLOTS: u16 = brainix_abi::CAP_SLOTS as u16;

static PID: AtomicU64 = AtomicU64::new(u64::MAX);
static GENERATION: AtomicU64 = AtomicU64::new(0);
static CONSOLE: AtomicU64 = AtomicU64::new(u64::MAX);

/// This process's pid, as the kernel passed it at entry.
pub fn pid() -> u64 {
    PID.load(Ordering::Relaxed)
}

/// How many times this process has been started, as the kernel passed it at entry.
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}

/// Makes `console` the endpoint [`print!`] writes to. Until then printing is dropped.
pub fn set_console(console: Endpoint) {
    CONSOLE.store(console.0.0, Ordering::Relaxed);
}

/// The endpoint [`print!`] writes to, if one was set.
pub fn console() -> Option<Endpoint> {
    match CONSOLE.load(Ordering::Relaxed) {
        u64::MAX => None,
        h => Some(Endpoint(Handle(h))),
    }
}

/// Called by `_start` through [`entry!`]; not for programs.
#[doc(hidden)]
pub fn start(pid: u64, generation: u64, main: fn(u64) -> !) -> ! {
    PID.store(pid, Ordering::Relaxed);
    GENERATION.store(generation, Ordering::Relaxed);
    main(pid)
}

/// Declares the program's entry function, a `fn(pid: u64) -> !`: `brainix_rt::entry!(run);`.
///
/// On `x86_64-unknown-none` it defines the symbol `_start` calls; on the host it expands to an
/// empty `fn main() {}` so that the program builds for `cargo test`. That is why the entry
/// function must not itself be called `main`.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[cfg(target_os = "none")]
        #[unsafe(no_mangle)]
        extern "C" fn __brainix_main(pid: u64, generation: u64) -> ! {
            $crate::start(pid, generation, $main)
        }

        #[cfg(not(target_os = "none"))]
        fn main() {
            let _: fn(u64) -> ! = $main;
        }
    };
}

// The entry point. The kernel enters with rsp 16-byte aligned; `call` pushes the return address
// so `__brainix_main` sees the alignment the System V ABI promises a function. rbp is zeroed so
// frame-pointer walks end here.
#[cfg(target_os = "none")]
core::arch::global_asm!(
    ".section .text._start,\"ax\",@progbits",
    ".global _start",
    ".type _start,@function",
    "_start:",
    "xor ebp, ebp",
    "call __brainix_main",
    "ud2",
    ".size _start, . - _start",
);

/// Fault injection, for the test system's faulty server builds only: writes through address
/// 0x10, where nothing is ever mapped, so the kernel kills the caller with a page fault. Returns
/// only if that write did not fault, which the tests then see.
pub fn crash() {
    // SAFETY: not sound, on purpose: nothing is mapped at address 0x10, and the kernel must kill
    // this process for it.
    unsafe { core::ptr::write_volatile(0x10 as *mut u64, 0xdead) };
}

/// Writes `bytes` to the console server, in pieces of at most
/// [`brainix_proto::console::WRITE_MAX`], each lent for one call.
pub fn write_console(console: Endpoint, bytes: &[u8]) -> cap::Result<()> {
    let mut reply = Message::new(0);
    for piece in bytes.chunks(brainix_proto::console::WRITE_MAX as usize) {
        let mut msg = Message::new(brainix_proto::console::WRITE);
        msg.regs[0] = piece.len() as u64;
        console.call(&msg, &[cap::lend(piece)], &mut reply)?;
        brainix_proto::status(&reply)?;
    }
    Ok(())
}

/// Prints to the console set with [`set_console`]. Errors are dropped: there is nowhere to
/// report them.
#[doc(hidden)]
pub fn _print(args: core::fmt::Arguments<'_>) {
    let Some(console) = console() else { return };
    let mut out = fmt::Buffer::<512>::new();
    out.sink(args, |chunk| {
        let _ = write_console(console, chunk);
    });
}

/// Prints through the console server.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::_print(format_args!($($arg)*)) };
}

/// Prints a line through the console server.
#[macro_export]
macro_rules! println {
    () => { $crate::_print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::_print(format_args!("{}\n", format_args!($($arg)*))) };
}

/// The first capability of type Log in this process's table, if it has one.
pub fn find_log() -> Option<Log> {
    (0..SLOTS)
        .map(|slot| Handle::new(slot, 1))
        .find(|&h| cap::cap_info(h).is_ok_and(|i| i.cap_type() == Some(CapType::Log)))
        .map(Log)
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    use core::fmt::Write;
    let mut line = fmt::Buffer::<256>::new();
    let _ = write!(line, "panic: {}", info.message());
    if let Some(at) = info.location() {
        let _ = write!(line, " at {}:{}", at.file(), at.line());
    }
    if let Some(log) = find_log() {
        let _ = log.write(line.as_bytes());
    } else if let Some(console) = console() {
        let _ = line.write_str("\n");
        let _ = write_console(console, line.as_bytes());
    }
    cap::exit(PANIC_EXIT)
}

/// Makes a raw system call; for the attack tests, which must pass arguments the typed wrappers
/// would never build.
///
/// # Safety
///
/// As [`sys::syscall`]: every address the call writes through must be memory the caller may
/// mutate.
pub unsafe fn raw_syscall(nr: Syscall, args: [u64; 6]) -> cap::Result<sys::Out> {
    // SAFETY: the caller's contract is the same.
    unsafe { sys::syscall(nr, args) }
}
