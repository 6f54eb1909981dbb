//! The consent service (INV-ASSIST). An assist tenant may only *propose* an action; this service
//! holds the authority, shows each proposal on the trusted console, and runs it only after an
//! explicit `approve <id>` from the shell, whose badge alone carries
//! [`consent::TRUSTED`]. `deny <id>`, or no answer before the deadline, denies. Each proposal is
//! decided once; ids only grow, so replaying an old approval names nothing
//! ([`pending::Book`]).
//!
//! Capabilities: its endpoint (receive), the console (send), audit-read (to name processes), and
//! one process-control capability per process an approved action may restart.
#![cfg_attr(target_os = "none", no_std, no_main)]

mod pending;

use brainix_abi::{CapType, Error, FOREVER, Handle, Message};
use brainix_proto::{consent, consent::slots, launch_handle, status_of};
use brainix_rt::fmt::Buffer;
use brainix_rt::{
    AuditRead, Endpoint, ProcessControl, Received, ReplyToken, cap, println, process,
};
use core::fmt::Write;
use pending::{Book, Verdict};

brainix_rt::entry!(run);

struct Service {
    audit: AuditRead,
    book: Book,
    /// The tenant waiting in `AWAIT` for the pending proposal.
    waiting: Option<ReplyToken>,
}

fn run(_pid: u64) -> ! {
    let endpoint = Endpoint(launch_handle(slots::ENDPOINT));
    brainix_rt::set_console(Endpoint(launch_handle(slots::CONSOLE)));
    let mut s = Service {
        audit: AuditRead(launch_handle(slots::AUDIT)),
        book: Book::new(),
        waiting: None,
    };
    let mut msg = Message::new(0);
    loop {
        let now = now_ms();
        if let Some(p) = s.book.expire(now) {
            println!("CONSENT #{}: no answer in time; denied", p.id);
            s.answer(Err(Error::Timeout));
        }
        let timeout = s
            .book
            .pending()
            .map_or(FOREVER, |p| p.deadline.saturating_sub(now).max(1));
        match endpoint.recv(&mut msg, timeout) {
            Ok(Received::Message { token, badge, .. }) => s.request(&msg, token, badge),
            Ok(Received::Notification(_)) | Err(_) => {}
        }
    }
}

/// Milliseconds since boot.
fn now_ms() -> u64 {
    cap::uptime().map_or(0, |(ms, _)| ms)
}

/// The process-control capability this service holds for `pid`.
fn control_for(pid: u64) -> Option<ProcessControl> {
    (slots::FIRST_CONTROL..brainix_abi::CAP_SLOTS as u16)
        .map(|slot| Handle::new(slot, 1))
        .find(|&h| {
            cap::cap_info(h)
                .is_ok_and(|i| i.cap_type() == Some(CapType::ProcessControl) && i.detail == pid)
        })
        .map(ProcessControl)
}

impl Service {
    fn name(&self, pid: u64) -> Buffer<32> {
        let mut b = Buffer::new();
        let _ = match self.audit.process(pid) {
            Ok(info) => b.write_str(process::name(&info)),
            Err(_) => b.write_str("?"),
        };
        b
    }

    /// Replies to the tenant waiting on the pending proposal, if it is waiting already.
    fn answer(&mut self, outcome: Result<(), Error>) {
        if let Some(token) = self.waiting.take() {
            let _ = cap::reply(token, &Message::new(status_of(outcome)));
        }
    }

    fn request(&mut self, msg: &Message, token: ReplyToken, badge: u64) {
        let reply = |status: Result<(), Error>, id: u64| {
            let mut m = Message::new(status_of(status));
            m.regs[0] = id;
            let _ = cap::reply(token, &m);
        };
        match msg.label {
            consent::PROPOSE => {
                let (action, target, wait) = (msg.regs[0], msg.regs[1], msg.regs[2]);
                if action != consent::RESTART || control_for(target).is_none() {
                    return reply(Err(Error::OutOfRange), 0);
                }
                let now = now_ms();
                match self.book.propose(target, now, wait) {
                    Ok(p) => {
                        println!(
                            "CONSENT #{}: pid {badge} proposes to restart {} (pid {target}). On this console: 'approve {}' or 'deny {}' within {} ms",
                            p.id,
                            self.name(target).as_str(),
                            p.id,
                            p.id,
                            p.deadline - now
                        );
                        reply(Ok(()), p.id);
                    }
                    Err(e) => reply(Err(e), 0),
                }
            }
            consent::AWAIT => {
                let id = msg.regs[0];
                if let Some(outcome) = self.book.outcome(id) {
                    return reply(outcome, id);
                }
                match self.book.pending() {
                    Some(p) if p.id == id && self.waiting.is_none() => self.waiting = Some(token),
                    _ => reply(Err(Error::OutOfRange), id),
                }
            }
            consent::DECIDE => {
                let (id, approve) = (msg.regs[0], msg.regs[1] == 1);
                if badge & consent::TRUSTED == 0 {
                    println!(
                        "CONSENT: a decision on #{id} from pid {badge}, not the trusted console: refused"
                    );
                    return reply(Err(Error::MissingRight), id);
                }
                match self.book.decide(id, approve) {
                    Err(e) => {
                        println!(
                            "CONSENT: #{id} is not pending (decided already, or never proposed): refused"
                        );
                        reply(Err(e), id);
                    }
                    Ok(Verdict::Denied(p)) => {
                        println!("CONSENT #{}: denied on the console", p.id);
                        reply(Ok(()), id);
                        self.answer(Err(Error::MissingRight));
                    }
                    Ok(Verdict::Run(p)) => {
                        let outcome = control_for(p.target)
                            .ok_or(Error::OutOfRange)
                            .and_then(ProcessControl::restart);
                        self.book.ran(p.id, outcome);
                        println!(
                            "CONSENT #{}: approved on the console; restarting {}: {}",
                            p.id,
                            self.name(p.target).as_str(),
                            outcome.map_or_else(|e| e.name(), |()| "done")
                        );
                        reply(Ok(()), id);
                        self.answer(outcome);
                    }
                }
            }
            _ => reply(Err(Error::NoSuchCall), 0),
        }
    }
}
