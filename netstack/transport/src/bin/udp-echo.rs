//! udp-echo: a UDP echo server (port 7) on the transport server, as far as its grant goes
//! (test system; the grant is its badge in the manifest). Lines: `UDP-ECHO bound 7`, or
//! `UDP-ECHO error <what>` when it cannot bind.
#![cfg_attr(target_os = "none", no_std, no_main)]

use brainix_abi::{Error, Message};
use brainix_proto::transport::{self, MAX_DATAGRAM, client_slots};
use brainix_proto::{launch_handle, status};
use brainix_rt::{Endpoint, cap, println};

brainix_rt::entry!(run);

const PORT: u64 = 7;

fn call(ep: Endpoint, msg: &Message, lease: Option<cap::Lent<'_>>) -> Result<Message, Error> {
    let mut reply = Message::new(0);
    match lease {
        Some(l) => ep.call(msg, &[l], &mut reply)?,
        None => ep.call(msg, &[], &mut reply)?,
    }
    status(&reply).map(|()| reply)
}

fn run(_pid: u64) -> ! {
    brainix_rt::set_console(Endpoint(launch_handle(client_slots::CONSOLE)));
    let ep = Endpoint(launch_handle(client_slots::TRANSPORT));
    let mut bind = Message::new(transport::BIND);
    bind.regs[0] = PORT;
    if let Err(e) = call(ep, &bind, None) {
        println!("UDP-ECHO error bind {PORT}: {}", e.name());
        cap::exit(1);
    }
    println!("UDP-ECHO bound {PORT}");
    let mut buf = [0u8; MAX_DATAGRAM];
    loop {
        let mut recv = Message::new(transport::RECV_FROM);
        recv.regs = [PORT, transport::RECV_WAIT_MAX_MS, 0, 0];
        let got = call(ep, &recv, Some(cap::lend_mut(&mut buf)));
        let r = match got {
            Ok(r) => r,
            Err(Error::Timeout) => continue,
            Err(e) => {
                println!("UDP-ECHO error recv: {}", e.name());
                cap::exit(1);
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
