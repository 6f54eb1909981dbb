//! forged-handle: calls through a handle naming a slot the process was never given.
//! Expected: bad-handle.
#![cfg_attr(target_os = "none", no_std, no_main)]

use brainix_abi::{Error, Handle};
use brainix_rt::Endpoint;

brainix_rt::entry!(run);

/// A slot inside the table (32 slots) that the manifest leaves empty for every attack.
const NEVER_GIVEN: u16 = 17;

fn run(_pid: u64) -> ! {
    brainix_attacks::setup();
    let forged = Endpoint(Handle::new(NEVER_GIVEN, 1));
    let outcome = brainix_attacks::call_empty(forged);
    brainix_attacks::finish("forged-handle", Error::BadHandle, outcome)
}
