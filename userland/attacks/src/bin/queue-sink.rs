//! `queue-sink` (check `ipc.no-async-queue`): proves a send is a rendezvous, not a queue.
//!
//! It starts `queue-probe`, which sends to the sink's endpoint, and then does not receive for a
//! while: it only yields and watches the probe through audit-read. With no kernel queue the probe
//! must sit in `sending` for that whole time; a queue would let its send return at once. Then the
//! sink receives, the message must arrive intact, and only then may the probe move on.
//!
//! Slots: 0 console, 1 its endpoint (receive), 2 audit-read, 3 process control of the probe, 4 its
//! report capability.
#![cfg_attr(target_os = "none", no_std, no_main)]

use brainix_abi::{Handle, Message, ProcessState};
use brainix_rt::fmt::Buffer;
use brainix_rt::{AuditRead, Endpoint, ProcessControl, Received, cap, println};
use core::fmt::Write;

brainix_rt::entry!(run);

/// How long the sink stays away from `recv` once the probe is sending.
const HOLD_MS: u64 = 200;
/// How long it waits for the probe to start sending at all.
const START_MS: u64 = 3_000;

fn now() -> u64 {
    cap::uptime().map_or(0, |(ms, _)| ms)
}

fn run(_pid: u64) -> ! {
    brainix_attacks::setup();
    let endpoint = Endpoint(brainix_attacks::target());
    let audit = AuditRead(Handle::new(2, 1));
    let control = Handle::new(3, 1);
    let probe = cap::cap_info(control).map_or(u64::MAX, |i| i.detail);
    let state = |pid| audit.process(pid).map_or(0, |i| i.state);
    let sending = ProcessState::Sending as u64;
    let mut d = Buffer::<160>::new();

    let started = ProcessControl(control).restart();
    let t0 = now();
    while state(probe) != sending && now() - t0 < START_MS {
        cap::yield_now();
    }
    let t1 = now();
    let mut held = true;
    while now() - t1 < HOLD_MS {
        held &= state(probe) == sending;
        cap::yield_now();
    }
    // Audit-read holders hear of every death as a notification; skip those.
    let mut msg = Message::new(0);
    let got = loop {
        match endpoint.recv(&mut msg, 1_000) {
            Ok(Received::Notification(_)) => continue,
            other => break other,
        }
    };
    let intact = matches!(got, Ok(Received::Message { .. }))
        && msg.label == 0x51ee_0051
        && msg.regs == [1, 2, 3, 4];
    // After the rendezvous the probe goes on (and exits).
    let t2 = now();
    while state(probe) == sending && now() - t2 < 1_000 {
        cap::yield_now();
    }
    let released = state(probe) != sending;
    let pass = started.is_ok() && held && intact && released;
    let _ = write!(
        d,
        "probe {} for {HOLD_MS} ms while nobody received; message {} at the rendezvous; probe {}",
        if held {
            "stayed in send"
        } else {
            "was NOT blocked"
        },
        if intact {
            "arrived intact"
        } else {
            "did not arrive intact"
        },
        if released {
            "released"
        } else {
            "still blocked"
        }
    );
    println!(
        "QUEUE {}: {}",
        if pass { "PASS" } else { "FAIL" },
        d.as_str()
    );
    brainix_attacks::check(pass, d.as_bytes());
    cap::exit(u64::from(!pass))
}
