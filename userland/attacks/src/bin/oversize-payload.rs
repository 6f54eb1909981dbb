//! oversize-payload: calls the echo server (slot 1) with a message claiming one byte more than
//! MAX_PAYLOAD. Expected: payload-too-large.
#![cfg_attr(target_os = "none", no_std, no_main)]

use brainix_abi::{MAX_PAYLOAD, Message};
use brainix_rt::Endpoint;

brainix_rt::entry!(run);

fn run(_pid: u64) -> ! {
    brainix_attacks::setup();
    let echo = Endpoint(brainix_attacks::target());
    let mut msg = Message::new(0);
    msg.len = MAX_PAYLOAD as u64 + 1;
    let mut reply = Message::new(0);
    let outcome = echo.call(&msg, &[], &mut reply);
    brainix_attacks::finish(
        "oversize-payload",
        brainix_abi::Error::PayloadTooLarge,
        outcome,
    )
}
