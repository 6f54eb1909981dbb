//! The echo server: answers every call on its endpoint with the message it received, unchanged.
//!
//! `ipc-bench` in the shell times call/reply round trips to it. It holds one capability, its
//! endpoint with `RECEIVE` (slot [`brainix_proto::echo::slots::ENDPOINT`]), and nothing else.
#![cfg_attr(target_os = "none", no_std, no_main)]

use brainix_abi::{FOREVER, Message};
use brainix_proto::{echo::slots, launch_handle};
use brainix_rt::{Endpoint, Received};

brainix_rt::entry!(run);

fn run(_pid: u64) -> ! {
    let endpoint = Endpoint(launch_handle(slots::ENDPOINT));
    let mut msg = Message::new(0);
    let mut next = endpoint.recv(&mut msg, FOREVER);
    loop {
        next = match next {
            Ok(Received::Message { token, .. }) => {
                let echo = msg;
                endpoint.reply_recv(token, &echo, &mut msg, FOREVER)
            }
            // Notifications and refused replies (a caller that died) change nothing.
            Ok(Received::Notification(_)) | Err(_) => endpoint.recv(&mut msg, FOREVER),
        };
    }
}
