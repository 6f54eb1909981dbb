//! The IP server of the chain: [`server`](crate::server) over a link that is IPC to the link
//! server ([`brainix_proto::link`]); frames cross in leases of this server's own buffers.

use crate::MTU;
use crate::server::{self, Ip, Link, interface, log, refuse_for};
use brainix_abi::{Error, Message};
use brainix_proto::{ip, launch_handle, link, status};
use brainix_rt::{Endpoint, Log, cap};
use brainix_wire::{IpText, Mac};

/// The link server, called through its endpoint.
struct LinkServer(Endpoint);

fn call_link(link: Endpoint, msg: &Message, lease: cap::Lent<'_>) -> Result<u64, Error> {
    let mut reply = Message::new(0);
    link.call(msg, &[lease], &mut reply)?;
    status(&reply)?;
    Ok(reply.regs[0])
}

impl Link for LinkServer {
    fn send(&mut self, frame: &[u8]) -> Result<(), Error> {
        let mut msg = Message::new(link::SEND);
        msg.regs[0] = frame.len() as u64;
        call_link(self.0, &msg, cap::lend(frame)).map(drop)
    }

    fn recv(&mut self, frame: &mut [u8; MTU], ms: u64) -> Result<usize, Error> {
        let mut msg = Message::new(link::RECV);
        msg.regs[0] = ms;
        call_link(self.0, &msg, cap::lend_mut(frame)).map(|n| n as usize)
    }
}

/// The link server's MAC; waits for it to come up (it may start after us, or not at all).
fn link_mac(link: Endpoint, endpoint: Endpoint, log_to: Log) -> Mac {
    let mut logged = false;
    loop {
        let mut reply = Message::new(0);
        let got = link
            .call(&Message::new(link::INFO), &[], &mut reply)
            .and_then(|()| status(&reply));
        match got {
            Ok(()) => {
                let mut mac = [0u8; 6];
                mac.copy_from_slice(&reply.regs[0].to_le_bytes()[..6]);
                return mac;
            }
            Err(e) => {
                if !logged {
                    log(
                        log_to,
                        format_args!("no link server yet ({}); waiting", e.name()),
                    );
                    logged = true;
                }
                // Clients meanwhile learn there is no network, rather than hang.
                refuse_for(endpoint, 1000, Error::PeerDead);
            }
        }
    }
}

/// The IP server: waits for the link server, then serves [`brainix_proto::ip`] on its endpoint
/// ([`ip::slots`]) for ever. With `crash`, an `ip::CRASH` request calls it (the fault-injection
/// build of the test system); without, `CRASH` is no call.
pub fn run(pid: u64, crash: Option<fn()>) -> ! {
    let link = Endpoint(launch_handle(ip::slots::LINK));
    let endpoint = Endpoint(launch_handle(ip::slots::ENDPOINT));
    let log_to = Log(launch_handle(ip::slots::LOG));
    let config = interface(endpoint, log_to);
    let mac = link_mac(link, endpoint, log_to);
    let mut ip = Ip::new(LinkServer(link), mac, config, 0x4200 ^ pid as u16);
    log(
        log_to,
        format_args!(
            "ip {}/{} gateway {} on the link server",
            IpText(config.address),
            config.prefix,
            IpText(config.gateway)
        ),
    );
    server::serve(&mut ip, endpoint, log_to, crash)
}
