//! tcp-echo: a TCP echo server (port 7) on the transport server, as far as its grant goes (test
//! system). It listens, accepts one connection at a time, sends back everything it receives
//! until the peer closes, closes in turn, and accepts again. Lines: `TCP-ECHO listening 7`,
//! `TCP-ECHO accepted <address>:<port>`, `TCP-ECHO closed after <n> bytes (server: ...)` with
//! the server's TCP counters, and
//! `TCP-ECHO error <what>: <error>` when a call fails (a reset connection is released and the
//! next one accepted). When the transport server goes away (`peer-dead`) it listens again every
//! 100 ms until a restarted one takes it.
#![cfg_attr(target_os = "none", no_std, no_main)]

use brainix_abi::{Error, Message};
use brainix_proto::launch_handle;
use brainix_proto::transport::{self, RECV_WAIT_MAX_MS, client_slots};
use brainix_rt::{Endpoint, cap, println};
use brainix_transport::client::{call, claim};
use brainix_wire::IpText;

brainix_rt::entry!(run);

const PORT: u16 = 7;
/// Bytes asked for per receive: half the server's receive buffer, so a read leaves room.
const CHUNK: usize = 4096;

/// Listens on the port, retrying while there is no transport server; a refusal ends the program.
fn listen(ep: Endpoint) {
    claim(
        ep,
        transport::LISTEN,
        PORT,
        "TCP-ECHO",
        ("listen", "listening"),
    );
}

/// Echoes connection `conn` until the peer closes: the bytes echoed, or the error that ended it.
fn echo(ep: Endpoint, conn: u64, buf: &mut [u8; CHUNK]) -> Result<u64, Error> {
    let mut total = 0;
    loop {
        let mut recv = Message::new(transport::RECV);
        recv.regs = [conn, CHUNK as u64, RECV_WAIT_MAX_MS, 0];
        let n = loop {
            match call(ep, &recv, Some(cap::lend_mut(buf))) {
                Ok(r) => break (r.regs[0] as usize).min(CHUNK),
                Err(Error::Timeout) => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            return Ok(total);
        }
        let mut sent = 0;
        while sent < n {
            let mut send = Message::new(transport::SEND);
            send.regs = [conn, (n - sent) as u64, RECV_WAIT_MAX_MS, 0];
            match call(ep, &send, Some(cap::lend(&buf[sent..n]))) {
                Ok(r) => sent += (r.regs[0] as usize).min(n - sent),
                Err(Error::Timeout) => continue,
                Err(e) => return Err(e),
            }
        }
        total += n as u64;
    }
}

fn run(_pid: u64) -> ! {
    brainix_rt::set_console(Endpoint(launch_handle(client_slots::CONSOLE)));
    let ep = Endpoint(launch_handle(client_slots::TRANSPORT));
    listen(ep);
    let mut buf = [0u8; CHUNK];
    loop {
        let mut accept = Message::new(transport::ACCEPT);
        accept.regs = [u64::from(PORT), RECV_WAIT_MAX_MS, 0, 0];
        let a = match call(ep, &accept, None) {
            Ok(a) => a,
            Err(Error::Timeout) => continue,
            Err(e) => {
                // A restarted transport server has forgotten the listener: listen anew.
                println!("TCP-ECHO error accept: {}", e.name());
                listen(ep);
                continue;
            }
        };
        let conn = a.regs[0];
        let from = (a.regs[1] as u32).to_be_bytes();
        println!("TCP-ECHO accepted {}:{}", IpText(from), a.regs[2]);
        let mut close = Message::new(transport::CLOSE);
        close.regs[0] = conn;
        match echo(ep, conn, &mut buf) {
            Ok(total) => {
                let closed = call(ep, &close, None);
                let stats = call(ep, &Message::new(transport::TCP_STATS), None);
                let [_, opened, resent, refused] = stats.map_or([0; 4], |r| r.regs);
                match closed {
                    Ok(_) => println!(
                        "TCP-ECHO closed after {total} bytes (server: {opened} opened, {resent} retransmissions, {refused} segments refused)"
                    ),
                    Err(e) => println!("TCP-ECHO error close: {}", e.name()),
                }
            }
            Err(e @ Error::PeerDead) => {
                println!("TCP-ECHO error echo: {}", e.name());
                listen(ep);
            }
            Err(e) => {
                // Reset or unanswered: release the connection, take the next.
                println!("TCP-ECHO error echo: {}", e.name());
                let _ = call(ep, &close, None);
            }
        }
    }
}
