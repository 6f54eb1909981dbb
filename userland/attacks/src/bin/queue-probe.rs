//! `queue-probe`: started by `queue-sink`, sends one message to the sink's endpoint (slot 1) and
//! exits. With rendezvous IPC the send blocks until the sink receives; the sink watches that.
#![cfg_attr(target_os = "none", no_std, no_main)]

use brainix_abi::Message;
use brainix_rt::{Endpoint, cap, println};

brainix_rt::entry!(run);

/// What the sink expects to receive, intact.
pub const LABEL: u64 = 0x51ee_0051;

fn run(_pid: u64) -> ! {
    brainix_attacks::setup();
    let mut m = Message::new(LABEL);
    m.regs = [1, 2, 3, 4];
    let sent = Endpoint(brainix_attacks::target()).send(&m);
    println!(
        "QUEUE probe: send returned {:?}",
        sent.map_err(|e| e.name())
    );
    cap::exit(u64::from(sent.is_err()))
}
