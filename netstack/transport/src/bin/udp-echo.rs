//! udp-echo: a UDP echo server (port 7) on the transport server, as far as its grant goes
//! (test system; the grant is its badge in the manifest). Lines: `UDP-ECHO bound 7`, and
//! `UDP-ECHO error <what>` when a call fails. When the transport server goes away (its calls
//! answer `peer-dead`) it binds again every 100 ms until a restarted one takes it. When the
//! network below the transport server fails (an IP server that is down), its receives fail:
//! it says so once, retries every 100 ms, and says `UDP-ECHO serving again` when one succeeds.
#![cfg_attr(target_os = "none", no_std, no_main)]

use brainix_abi::{Error, Message};
use brainix_proto::launch_handle;
use brainix_proto::transport::{self, MAX_DATAGRAM, client_slots};
use brainix_rt::{Endpoint, cap, println};
use brainix_transport::client::{call, nap};

brainix_rt::entry!(run);

const PORT: u64 = 7;

/// Binds the port, retrying while there is no transport server; a refusal ends the program.
/// Says `bound` when `quiet` is false or it had to wait.
fn bind(ep: Endpoint, quiet: bool) {
    let mut bind = Message::new(transport::BIND);
    bind.regs[0] = PORT;
    let mut said = false;
    loop {
        match call(ep, &bind, None) {
            Ok(_) if quiet && !said => return,
            Ok(_) => return println!("UDP-ECHO bound {PORT}"),
            Err(e @ Error::PeerDead) => {
                if !said {
                    println!("UDP-ECHO error bind {PORT}: {}; retrying", e.name());
                    said = true;
                }
                nap(100);
            }
            Err(e) => {
                println!("UDP-ECHO error bind {PORT}: {}", e.name());
                cap::exit(1);
            }
        }
    }
}

fn run(_pid: u64) -> ! {
    brainix_rt::set_console(Endpoint(launch_handle(client_slots::CONSOLE)));
    let ep = Endpoint(launch_handle(client_slots::TRANSPORT));
    bind(ep, false);
    let mut buf = [0u8; MAX_DATAGRAM];
    // Whether the last receive failed: the failure is said once, not every 100 ms.
    let mut failing = false;
    loop {
        let mut recv = Message::new(transport::RECV_FROM);
        recv.regs = [PORT, transport::RECV_WAIT_MAX_MS, 0, 0];
        let got = call(ep, &recv, Some(cap::lend_mut(&mut buf)));
        if failing && matches!(got, Ok(_) | Err(Error::Timeout)) {
            println!("UDP-ECHO serving again");
            failing = false;
        }
        let r = match got {
            Ok(r) => r,
            Err(Error::Timeout) => continue,
            Err(e) => {
                if !failing {
                    println!("UDP-ECHO error recv: {}", e.name());
                    failing = true;
                }
                nap(100);
                // A restarted transport server has forgotten the socket: bind anew.
                bind(ep, true);
                continue;
            }
        };
        let len = (r.regs[0] as usize).min(MAX_DATAGRAM);
        let mut send = Message::new(transport::SEND_TO);
        send.regs = [PORT, r.regs[1], r.regs[2], len as u64];
        if let Err(e) = call(ep, &send, Some(cap::lend(&buf[..len]))) {
            println!("UDP-ECHO error send: {}", e.name());
        }
    }
}
