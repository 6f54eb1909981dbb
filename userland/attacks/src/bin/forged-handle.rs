//! forged-handle: calls through a handle naming a slot the process was never given.
//! Expected: bad-handle.
#![cfg_attr(target_os = "none", no_std, no_main)]

use brainix_abi::{Handle, Message};
use brainix_rt::Endpoint;

brainix_rt::entry!(run);

/// A slot inside the table (32 slots) that the manifest leaves empty for every attack.
const NEVER_GIVEN: u16 = 17;

fn run(_pid: u64) -> ! {
    brainix_attacks::setup();
    let forged = Endpoint(Handle::new(NEVER_GIVEN, 1));
    let mut reply = Message::new(0);
    let outcome = forged.call(&Message::new(0), &[], &mut reply);
    brainix_attacks::finish("forged-handle", outcome)
}
