//! kernel-write: first passes a kernel address as the reply buffer of a call (the kernel would
//! have to write its own memory for us), expected bad-address, reported as `kernel-write-buf`;
//! then stores to that address directly, which must get the process killed (page fault,
//! vector 14).
#![cfg_attr(target_os = "none", no_std, no_main)]

use brainix_abi::{Message, Syscall};
use brainix_attacks::KERNEL_ADDR;

brainix_rt::entry!(run);

fn run(_pid: u64) -> ! {
    brainix_attacks::setup();
    let echo = brainix_attacks::target();
    let msg = Message::new(0);
    let args = [echo.0, &raw const msg as u64, 0, 0, KERNEL_ADDR, 0];
    // SAFETY: the call reads `msg`; the one address it would write is the kernel's, which the
    // kernel must refuse. Nothing of ours is written.
    let outcome = unsafe { brainix_rt::raw_syscall(Syscall::Call, args) }.map(drop);
    brainix_attacks::report("kernel-write-buf", brainix_abi::Error::BadAddress, outcome);
    brainix_attacks::attempt("kernel-write");
    // SAFETY: not sound, on purpose: the address is not ours. The kernel must kill us here.
    unsafe { core::ptr::write_volatile(KERNEL_ADDR as *mut u8, 0x90) };
    brainix_attacks::survived("kernel-write")
}
