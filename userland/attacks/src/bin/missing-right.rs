//! missing-right: receives on an endpoint it may only send to (slot 1). Expected:
//! missing-right, from the kernel.
//!
//! Then, as `console-read`, asks the console for the next typed line, though its console badge
//! lacks the reader bit. Expected: missing-right, from the trusted console (a server's refusal,
//! reported the same way). Printed first, so the one `missing-right` line still ends the run.
#![cfg_attr(target_os = "none", no_std, no_main)]

use brainix_abi::{Error, Message};
use brainix_proto::console::{LINE_MAX, READ_LINE};
use brainix_rt::{Endpoint, cap};

brainix_rt::entry!(run);

fn run(_pid: u64) -> ! {
    brainix_attacks::setup();
    let mut line = [0u8; LINE_MAX];
    let mut reply = Message::new(0);
    let read = brainix_attacks::console()
        .call(
            &Message::new(READ_LINE),
            &[cap::lend_mut(&mut line)],
            &mut reply,
        )
        .and_then(|()| brainix_proto::status(&reply));
    brainix_attacks::report("console-read", Error::MissingRight, read);

    let send_only = Endpoint(brainix_attacks::target());
    let mut buf = Message::new(0);
    // Poll (timeout 0): if the kernel wrongly let it wait, the test must not hang.
    let outcome = send_only.recv(&mut buf, 0).map(drop);
    brainix_attacks::finish("missing-right", Error::MissingRight, outcome)
}
