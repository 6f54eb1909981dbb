//! dead-endpoint: calls an endpoint (slot 1) whose only receiver is a process that is stopped
//! (the test system declares it and never starts it). Expected: peer-dead.
#![cfg_attr(target_os = "none", no_std, no_main)]

use brainix_rt::Endpoint;

brainix_rt::entry!(run);

fn run(_pid: u64) -> ! {
    brainix_attacks::setup();
    let victim = Endpoint(brainix_attacks::target());
    let outcome = brainix_attacks::call_empty(victim);
    brainix_attacks::finish("dead-endpoint", brainix_abi::Error::PeerDead, outcome)
}
