//! wrong-type: uses its I/O-port capability (slot 1) as an endpoint. Expected: wrong-type.
#![cfg_attr(target_os = "none", no_std, no_main)]

use brainix_rt::Endpoint;

brainix_rt::entry!(run);

fn run(_pid: u64) -> ! {
    brainix_attacks::setup();
    let ports_as_endpoint = Endpoint(brainix_attacks::target());
    let outcome = brainix_attacks::call_empty(ports_as_endpoint);
    brainix_attacks::finish("wrong-type", brainix_abi::Error::WrongType, outcome)
}
