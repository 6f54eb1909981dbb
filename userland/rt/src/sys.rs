//! The raw `syscall` instruction. Everything above it in this crate is a typed wrapper.
//!
//! On the host (unit tests, `cargo test --workspace`) there is no BraiNIX kernel to call; the
//! raw call panics there instead of asking Linux for whatever its call number means.

use brainix_abi::{Error, Syscall};

/// The four result words a call returns besides `rax`: `rdi`, `rsi`, `rdx`, `r10`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Out(pub [u64; 4]);

/// Makes system call `nr` with six argument words and turns `rax` into a `Result`.
///
/// # Safety
///
/// The kernel reads and writes the caller's memory at the addresses the arguments name (message
/// buffers, lease lists, info records). The caller must make sure every address the call writes
/// through is memory Rust lets it mutate for the length the call documents; addresses the call
/// only reads, or that the kernel will refuse, cannot break Rust's rules.
pub unsafe fn syscall(nr: Syscall, args: [u64; 6]) -> Result<Out, Error> {
    let (rax, out) = raw(nr as u64, args);
    match rax {
        0 => Ok(out),
        code => Err(Error::from_code(code).unwrap_or(Error::NoSuchCall)),
    }
}

/// Makes system call number `nr`, which need not be a call the ABI defines (the fuzzer tries
/// numbers past the last one).
///
/// # Safety
///
/// As [`syscall`].
pub unsafe fn syscall_number(nr: u64, args: [u64; 6]) -> Result<Out, Error> {
    let (rax, out) = raw(nr, args);
    match rax {
        0 => Ok(out),
        code => Err(Error::from_code(code).unwrap_or(Error::NoSuchCall)),
    }
}

#[cfg(target_os = "none")]
fn raw(nr: u64, args: [u64; 6]) -> (u64, Out) {
    let rax: u64;
    let (o0, o1, o2, o3): (u64, u64, u64, u64);
    // SAFETY: the `syscall` instruction enters the BraiNIX kernel, which preserves every register
    // but rax, rdi, rsi, rdx, r10 (declared as outputs) and rcx, r11 (clobbered by the
    // instruction), and does not touch the user stack. What the kernel does to memory is the
    // caller's contract (see `syscall`), which is why `nomem` is not claimed.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") nr => rax,
            inlateout("rdi") args[0] => o0,
            inlateout("rsi") args[1] => o1,
            inlateout("rdx") args[2] => o2,
            inlateout("r10") args[3] => o3,
            in("r8") args[4],
            in("r9") args[5],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    (rax, Out([o0, o1, o2, o3]))
}

#[cfg(not(target_os = "none"))]
fn raw(nr: u64, _args: [u64; 6]) -> (u64, Out) {
    panic!("BraiNIX system call {nr} made on the host: there is no BraiNIX kernel here")
}

/// Reads the time-stamp counter (allowed in ring 3; the kernel leaves `CR4.TSD` clear).
#[inline(always)]
pub fn rdtsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `rdtsc` reads a counter into edx:eax and has no other effect.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}
