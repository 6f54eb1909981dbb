//! crash-blk: not an attack but a fault injection. Asks the test system's block server (the
//! `virtio-blk-faulty` build) to crash with `block::CRASH`; the call must come back
//! `peer-dead`, because the kernel killed the server while it owed the reply.
//!
//! Line: `CRASH-BLK reply=<error-name>` (or `reply=ok` if the server survived).
#![cfg_attr(target_os = "none", no_std, no_main)]

use brainix_abi::Message;
use brainix_rt::{Endpoint, println};

brainix_rt::entry!(run);

fn run(_pid: u64) -> ! {
    brainix_attacks::setup();
    let block = Endpoint(brainix_attacks::target());
    let mut reply = Message::new(0);
    let outcome = block
        .call(&Message::new(brainix_proto::block::CRASH), &[], &mut reply)
        .and_then(|()| brainix_proto::status(&reply));
    match outcome {
        Ok(()) => println!("CRASH-BLK reply=ok"),
        Err(e) => println!("CRASH-BLK reply={}", e.name()),
    }
    brainix_rt::exit(0)
}
