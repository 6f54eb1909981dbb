//! tcp-probe: tries what a TCP grant must allow, holding none (test system: its capability to
//! the transport endpoint names a UDP grant): listen on port 7, and connect from port 7 to
//! 10.0.2.2:9999, a port nothing listens on: a SYN that left would be seen in the capture.
//! Lines: `TCP-PROBE listen 7 OK|REFUSED <error>`, `TCP-PROBE connect 7 OK|REFUSED <error>`,
//! then `TCP-PROBE done`.
#![cfg_attr(target_os = "none", no_std, no_main)]

use brainix_abi::Message;
use brainix_proto::launch_handle;
use brainix_proto::transport::{self, client_slots};
use brainix_rt::{Endpoint, cap, println};
use brainix_transport::client::call;

brainix_rt::entry!(run);

const TARGET: [u8; 4] = [10, 0, 2, 2];
const TARGET_PORT: u64 = 9999;

fn run(_pid: u64) -> ! {
    brainix_rt::set_console(Endpoint(launch_handle(client_slots::CONSOLE)));
    let ep = Endpoint(launch_handle(client_slots::TRANSPORT));
    let mut listen = Message::new(transport::LISTEN);
    listen.regs[0] = 7;
    let mut connect = Message::new(transport::CONNECT);
    connect.regs = [7, u64::from(u32::from_be_bytes(TARGET)), TARGET_PORT, 100];
    for (what, msg) in [("listen", &listen), ("connect", &connect)] {
        match call(ep, msg, None) {
            Ok(_) => println!("TCP-PROBE {what} 7 OK"),
            Err(e) => println!("TCP-PROBE {what} 7 REFUSED {}", e.name()),
        }
    }
    println!("TCP-PROBE done");
    cap::exit(0)
}
