//! kernel-read: first passes a kernel address as the message to send (the kernel would have to
//! read its own memory for us), expected bad-address, reported as `kernel-read-buf`; then loads
//! from that address directly, which must get the process killed (page fault, vector 14).
#![cfg_attr(target_os = "none", no_std, no_main)]

use brainix_abi::{Message, Syscall};
use brainix_attacks::KERNEL_ADDR;

brainix_rt::entry!(run);

fn run(_pid: u64) -> ! {
    brainix_attacks::setup();
    let echo = brainix_attacks::target();
    let mut reply = Message::new(0);
    let args = [echo.0, KERNEL_ADDR, 0, 0, &raw mut reply as u64, 0];
    // SAFETY: the only memory the call may write is `reply`, a local we own.
    let outcome = unsafe { brainix_rt::raw_syscall(Syscall::Call, args) }.map(drop);
    brainix_attacks::report("kernel-read-buf", brainix_abi::Error::BadAddress, outcome);
    brainix_attacks::attempt("kernel-read");
    // SAFETY: not sound, on purpose: the address is not ours. The kernel must kill us here.
    let byte = unsafe { core::ptr::read_volatile(KERNEL_ADDR as *const u8) };
    core::hint::black_box(byte);
    brainix_attacks::survived("kernel-read")
}
