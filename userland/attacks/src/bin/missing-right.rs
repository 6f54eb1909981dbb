//! missing-right: receives on an endpoint it may only send to (slot 1). Expected:
//! missing-right.
#![cfg_attr(target_os = "none", no_std, no_main)]

use brainix_abi::Message;
use brainix_rt::Endpoint;

brainix_rt::entry!(run);

fn run(_pid: u64) -> ! {
    brainix_attacks::setup();
    let send_only = Endpoint(brainix_attacks::target());
    let mut buf = Message::new(0);
    // Poll (timeout 0): if the kernel wrongly let it wait, the test must not hang.
    let outcome = send_only.recv(&mut buf, 0).map(drop);
    brainix_attacks::finish("missing-right", outcome)
}
