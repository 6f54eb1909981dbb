//! udp-probe: tries what a grant must allow: bind UDP port 7 and 9, send to 10.0.2.2:9999 from
//! each, and prints what the transport server answered (test system: run once without a grant
//! and once with a narrow one, to watch the refusals). Lines:
//! `UDP-PROBE bind <port> OK|REFUSED <error>`, `UDP-PROBE send <port> OK|REFUSED <error>`,
//! then `UDP-PROBE done`.
#![cfg_attr(target_os = "none", no_std, no_main)]

use brainix_abi::{Error, Message};
use brainix_proto::launch_handle;
use brainix_proto::transport::{self, client_slots};
use brainix_rt::{Endpoint, cap, println};
use brainix_transport::client::call;

brainix_rt::entry!(run);

/// QEMU's user-network gateway, and a port nothing listens on: a datagram that left would be
/// seen in the capture.
const TARGET: [u8; 4] = [10, 0, 2, 2];
const TARGET_PORT: u64 = 9999;

fn say(what: &str, port: u64, r: Result<Message, Error>) {
    match r {
        Ok(_) => println!("UDP-PROBE {what} {port} OK"),
        Err(e) => println!("UDP-PROBE {what} {port} REFUSED {}", e.name()),
    }
}

fn run(_pid: u64) -> ! {
    brainix_rt::set_console(Endpoint(launch_handle(client_slots::CONSOLE)));
    let ep = Endpoint(launch_handle(client_slots::TRANSPORT));
    for port in [7u64, 9] {
        let mut bind = Message::new(transport::BIND);
        bind.regs[0] = port;
        say("bind", port, call(ep, &bind, None));
        let data = *b"udp-probe: this must not leave";
        let mut send = Message::new(transport::SEND_TO);
        send.regs = [
            port,
            u64::from(u32::from_be_bytes(TARGET)),
            TARGET_PORT,
            data.len() as u64,
        ];
        say("send", port, call(ep, &send, Some(cap::lend(&data))));
    }
    println!("UDP-PROBE done");
    cap::exit(0)
}
