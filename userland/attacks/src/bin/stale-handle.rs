//! stale-handle: drops its endpoint capability (slot 1), then calls through the old handle.
//! Expected: stale-handle.
#![cfg_attr(target_os = "none", no_std, no_main)]

use brainix_rt::{Endpoint, cap};

brainix_rt::entry!(run);

fn run(_pid: u64) -> ! {
    brainix_attacks::setup();
    let handle = brainix_attacks::target();
    if let Err(e) = cap::cap_drop(handle) {
        // The drop itself must work; a refusal here means the test could not be set up.
        brainix_rt::println!("ATTACK stale-handle SETUP-FAILED {}", e.name());
        cap::exit(2);
    }
    let outcome = brainix_attacks::call_empty(Endpoint(handle));
    brainix_attacks::finish("stale-handle", brainix_abi::Error::StaleHandle, outcome)
}
