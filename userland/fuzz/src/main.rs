//! The system-call fuzzer (test system only). It waits on its endpoint; a
//! [`brainix_proto::fuzz::RUN`] request makes it issue that many seeded random system calls
//! ([`calls`]) and reply with what happened. It judges nothing: the shell, which asked, checks
//! afterwards that the kernel still answers and that every invariant still holds.
//!
//! Its capabilities are what the random calls play with: its endpoint (receive), the echo
//! endpoint (send), port `0x80` (read) and audit-read. A process that fuzzes must not be able to
//! do harm with what it holds; the point is that what it does not hold stays out of reach.
#![cfg_attr(target_os = "none", no_std, no_main)]

mod calls;

use brainix_abi::{Error, FOREVER, Message};
use brainix_proto::{fuzz, fuzz::slots, launch_handle, status_of};
use brainix_rt::{Endpoint, Received, cap};

brainix_rt::entry!(run);

/// Where the random pointers aim: the kernel may write anything here.
static mut SCRATCH: [u8; 8192] = [0; 8192];

fn run(_pid: u64) -> ! {
    let endpoint = Endpoint(launch_handle(slots::ENDPOINT));
    let mut msg = Message::new(0);
    loop {
        let Ok(Received::Message { token, .. }) = endpoint.recv(&mut msg, FOREVER) else {
            continue;
        };
        let mut reply = Message::new(status_of(Err(Error::NoSuchCall)));
        if msg.label == fuzz::RUN {
            let (count, seed) = (msg.regs[0].min(fuzz::MAX_CALLS), msg.regs[1]);
            let (calls, refused) = fuzz(count, seed, token.0);
            reply = Message::new(status_of(Ok(())));
            reply.regs = [calls, refused, seed, 0];
        }
        // A reply that fails means the shell is gone; wait for the next request.
        let _ = cap::reply(token, &reply);
    }
}

/// Makes `count` random calls from `seed`; returns the calls made and those refused.
fn fuzz(count: u64, seed: u64, token: u64) -> (u64, u64) {
    let targets = calls::Targets {
        scratch: (core::ptr::addr_of_mut!(SCRATCH) as u64, 8192),
        text: run as fn(u64) -> ! as usize as u64,
        token,
    };
    let mut rng = calls::Rng::new(seed);
    let mut refused = 0;
    for _ in 0..count {
        let c = calls::next_call(&mut rng, &targets);
        // SAFETY: every address a call may write through is either the scratch buffer, which
        // nothing in Rust reads or borrows, or one the kernel must refuse (kernel, unmapped,
        // read-only text, or a random word); surviving that is what is under test.
        if unsafe { brainix_rt::sys::syscall_number(c.nr, c.args) }.is_err() {
            refused += 1;
        }
    }
    (count, refused)
}
