//! link-probe: the link server's test client (test system only). Asks the link server for its
//! MAC, broadcasts an ARP request for the QEMU user-network gateway (10.0.2.2, from 10.0.2.15)
//! and waits for the answer.
//!
//! Lines: `LINK-PROBE mac=<mac>`, then `LINK-PROBE arp 10.0.2.2 is-at <mac>` or
//! `LINK-PROBE error <what>`.
#![cfg_attr(target_os = "none", no_std, no_main)]

use brainix_abi::{Error, Message};
use brainix_proto::{launch_handle, link, status};
use brainix_rt::{Endpoint, cap, println};
use brainix_virtio_net::{MacText, arp_reply_for, arp_request};

brainix_rt::entry!(run);

const ME: [u8; 4] = [10, 0, 2, 15];
const GATEWAY: [u8; 4] = [10, 0, 2, 2];

fn call(ep: Endpoint, msg: &Message, lease: Option<cap::Lent<'_>>) -> Result<Message, Error> {
    let mut reply = Message::new(0);
    match lease {
        Some(l) => ep.call(msg, &[l], &mut reply)?,
        None => ep.call(msg, &[], &mut reply)?,
    }
    status(&reply)?;
    Ok(reply)
}

fn probe(ep: Endpoint) -> Result<[u8; 6], &'static str> {
    let info = call(ep, &Message::new(link::INFO), None).map_err(|e| e.name())?;
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&info.regs[0].to_le_bytes()[..6]);
    println!("LINK-PROBE mac={}", MacText(mac));
    let frame = arp_request(mac, ME, GATEWAY);
    let mut send = Message::new(link::SEND);
    send.regs[0] = frame.len() as u64;
    call(ep, &send, Some(cap::lend(&frame))).map_err(|e| e.name())?;
    let mut buf = [0u8; link::MTU];
    for _ in 0..16 {
        let mut recv = Message::new(link::RECV);
        recv.regs[0] = 3000;
        let reply = call(ep, &recv, Some(cap::lend_mut(&mut buf))).map_err(|e| e.name())?;
        let n = (reply.regs[0] as usize).min(buf.len());
        if let Some(gw) = arp_reply_for(&buf[..n], GATEWAY) {
            return Ok(gw);
        }
    }
    Err("no ARP reply among 16 frames")
}

fn run(_pid: u64) -> ! {
    // Slot 0: the console; slot 1: the link server.
    brainix_rt::set_console(Endpoint(launch_handle(0)));
    match probe(Endpoint(launch_handle(1))) {
        Ok(gw) => println!("LINK-PROBE arp 10.0.2.2 is-at {}", MacText(gw)),
        Err(what) => println!("LINK-PROBE error {what}"),
    }
    cap::exit(0)
}
