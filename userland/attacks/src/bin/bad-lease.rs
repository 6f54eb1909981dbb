//! bad-lease: asks the console to print from two leases it has no right to lend: one at a
//! kernel address, one running past the top of its own stack. The console reads what it is
//! lent, so a kernel that did not check at the call would have to refuse the console's read;
//! either refusal counts. Expected: bad-address (or bad-lease) for both; the line names the
//! first refusal, and `NOT-REFUSED` if either got through.
#![cfg_attr(target_os = "none", no_std, no_main)]

use brainix_abi::layout::STACK_TOP;
use brainix_abi::{Error, Lease, Message};
use brainix_proto::console::WRITE;

brainix_rt::entry!(run);

/// Bytes asked for from each lease: enough to cross from the stack's last 16 bytes into the
/// unmapped page above it.
const LEN: u64 = 256;

fn print_from(lease: Lease) -> Result<(), Error> {
    let mut msg = Message::new(WRITE);
    msg.regs[0] = LEN;
    let mut reply = Message::new(0);
    // SAFETY: the lease is read-only: nothing is written through it.
    let lent = unsafe { brainix_rt::cap::Lent::from_raw(lease) };
    brainix_attacks::console().call(&msg, &[lent], &mut reply)?;
    brainix_proto::status(&reply)
}

fn run(_pid: u64) -> ! {
    brainix_attacks::setup();
    let kernel = print_from(Lease {
        addr: brainix_attacks::KERNEL_ADDR,
        len: LEN,
        access: Lease::READ,
    });
    let overrun = print_from(Lease {
        addr: STACK_TOP - 16,
        len: LEN,
        access: Lease::READ,
    });
    let outcome = match (kernel, overrun) {
        (Err(first), Err(_)) => Err(first),
        _ => Ok(()),
    };
    brainix_attacks::finish("bad-lease", Error::BadLease, outcome)
}
