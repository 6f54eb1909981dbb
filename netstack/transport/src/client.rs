//! What the transport server's test clients (`src/bin`) share: a call with at most one lease
//! whose reply status is the result, and a nap between attempts while the server is away.

use brainix_abi::{Error, Message};
use brainix_proto::transport::client_slots;
use brainix_proto::{launch_handle, status};
use brainix_rt::{Endpoint, cap, println};

/// Calls `ep` with `msg` and `lease`, if any: the reply, or the error its status (or the call)
/// gave.
pub fn call(ep: Endpoint, msg: &Message, lease: Option<cap::Lent<'_>>) -> Result<Message, Error> {
    let mut reply = Message::new(0);
    match lease {
        Some(l) => ep.call(msg, &[l], &mut reply)?,
        None => ep.call(msg, &[], &mut reply)?,
    }
    status(&reply).map(|()| reply)
}

/// Waits `ms` on the client's own endpoint ([`client_slots::NAP`]), which nobody sends to.
pub fn nap(ms: u64) {
    let mut msg = Message::new(0);
    let _ = Endpoint(launch_handle(client_slots::NAP)).recv(&mut msg, ms);
}

/// Calls `ep` with `msg` (no lease) until a transport server answers: while there is none (its
/// calls answer `peer-dead`: stopped, or restarting) it says `<what>: peer-dead; retrying` once
/// and naps 100 ms between tries. The answer, or the error it gave.
pub fn call_when_served(ep: Endpoint, msg: &Message, what: &str) -> Result<Message, Error> {
    let mut said = false;
    loop {
        match call(ep, msg, None) {
            Err(e @ Error::PeerDead) => {
                if !said {
                    println!("{what}: {}; retrying", e.name());
                    said = true;
                }
                nap(100);
            }
            answer => return answer,
        }
    }
}

/// Takes `port` with `label` (`BIND` or `LISTEN`), retrying while there is no transport server,
/// and says `<tag> <done> <port>` (e.g. `UDP-ECHO bound 7`); a refusal is said
/// (`<tag> error <verb> <port>: <error>`) and ends the program.
pub fn claim(ep: Endpoint, label: u64, port: u16, tag: &str, (verb, done): (&str, &str)) {
    let mut msg = Message::new(label);
    msg.regs[0] = u64::from(port);
    let mut what = brainix_rt::fmt::Buffer::<64>::new();
    let _ = core::fmt::Write::write_fmt(&mut what, format_args!("{tag} error {verb} {port}"));
    let what = core::str::from_utf8(what.as_bytes()).unwrap_or(tag);
    match call_when_served(ep, &msg, what) {
        Ok(_) => println!("{tag} {done} {port}"),
        Err(e) => {
            println!("{what}: {}", e.name());
            cap::exit(1);
        }
    }
}
