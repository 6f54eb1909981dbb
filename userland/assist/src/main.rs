//! The assist tenant (INV-ASSIST), as the test system runs it: an untrusted process that may only
//! propose actions to the consent service. It holds the consent endpoint (send, without the
//! trusted bit), the console (send), audit-read (to see whether an action happened) and its
//! report capabilities; it cannot stop or start anything itself.
//!
//! It walks one scenario, each step a check lab-runner drives by typing on the trusted console:
//!
//! 1. `assist.tenant-only`: acting itself is refused (its consent capability is not process
//!    control; a slot it was never given is empty). Then it proposes #1 (restart echo).
//! 2. `assist.deny` (the runner types `deny 1`): #1 ends denied and echo was not restarted.
//! 3. `assist.approve-once` (the runner types `approve 2`): #2 ran, and echo was restarted
//!    exactly once.
//! 4. `assist.forged-refused`: with #3 pending, it sends the approval itself; it must be refused
//!    and change nothing.
//! 5. `assist.replay-refused` (the runner types `approve 2` again while #3 waits): the old
//!    approval must not run #3. `assist.timeout-denies`: #3, never answered, ends in `timeout`
//!    and nothing ran.
//!
//! Each proposal is registered before the previous step's verdict is reported, so the runner,
//! which types only after a verdict, always finds the proposal it decides.
#![cfg_attr(target_os = "none", no_std, no_main)]

use brainix_abi::{Error, Handle, Message};
use brainix_proto::{consent, consent::tenant, launch_handle, status};
use brainix_rt::fmt::Buffer;
use brainix_rt::{AuditRead, Endpoint, ProcessControl, Report, println, process};
use core::fmt::Write;

brainix_rt::entry!(run);

/// How long #1 and #2 may wait for the console, and #3 (which nobody answers).
const WAIT_MS: u64 = 60_000;
const SHORT_WAIT_MS: u64 = 3_000;

/// The verdicts, by report capability (n-th in slot order).
const TENANT_ONLY: usize = 0;
const DENY: usize = 1;
const APPROVE_ONCE: usize = 2;
const FORGED: usize = 3;
const REPLAY: usize = 4;
const TIMEOUT: usize = 5;

struct Tenant {
    consent: Endpoint,
    audit: AuditRead,
    echo: u64,
}

fn verdict(n: usize, pass: bool, detail: &str) {
    println!("ASSIST {} {detail}", if pass { "PASS" } else { "FAIL" });
    if let Some(r) = Report::nth(n) {
        let _ = r.report(pass, detail.as_bytes());
    }
}

fn run(_pid: u64) -> ! {
    brainix_rt::set_console(Endpoint(launch_handle(tenant::CONSOLE)));
    let audit = AuditRead(launch_handle(tenant::AUDIT));
    let echo = (0..brainix_abi::MAX_PROCESSES as u64)
        .find(|&pid| {
            audit
                .process(pid)
                .is_ok_and(|i| process::name(&i) == "echo")
        })
        .unwrap_or(u64::MAX);
    let t = Tenant {
        consent: Endpoint(launch_handle(tenant::CONSENT)),
        audit,
        echo,
    };
    let mut d = Buffer::<160>::new();

    let start = t.generation();
    // 1. No authority of its own.
    let own = ProcessControl(t.consent.0).restart();
    let absent = ProcessControl(Handle::new(29, 1)).restart();
    let p1 = t.propose(WAIT_MS);
    let pass = own == Err(Error::WrongType) && absent == Err(Error::BadHandle) && p1.is_ok();
    let _ = write!(
        d,
        "restart through its consent cap: {:?}; through an empty slot: {:?}; proposal #1: {:?}",
        own, absent, p1
    );
    verdict(TENANT_ONLY, pass, d.as_str());
    let Ok(p1) = p1 else { brainix_rt::exit(1) };

    // 2. Denied on the console: nothing happens. Each baseline is read before the verdict that
    // lets the runner type the next decision, so a fast decision cannot slip in before it.
    let before = start;
    let r1 = t.wait(p1);
    let after = t.generation();
    let p2 = t.propose(WAIT_MS);
    d.clear();
    let _ = write!(d, "#{p1} ended {r1:?}; echo generation {before} -> {after}");
    verdict(
        DENY,
        r1 == Err(Error::MissingRight) && before == after && p2.is_ok(),
        d.as_str(),
    );
    let Ok(p2) = p2 else { brainix_rt::exit(1) };

    // 3. Approved on the console: the action happens, once.
    let before = after;
    let r2 = t.wait(p2);
    let after = t.generation();
    let once = r2 == Ok(()) && after == before + 1;
    let mut approve = Buffer::<160>::new();
    let _ = write!(
        approve,
        "#{p2} ended {r2:?}; echo generation {before} -> {after}"
    );

    // 4. The tenant approves its own proposal: refused, nothing happens.
    let p3 = t.propose(SHORT_WAIT_MS);
    let before3 = t.generation();
    let forged = match p3 {
        Ok(id) => t.decide(id, true),
        Err(e) => Err(e),
    };
    let after3 = t.generation();
    verdict(APPROVE_ONCE, once, approve.as_str());
    d.clear();
    let _ = write!(
        d,
        "its own approval of #{}: {forged:?}; echo generation {before3} -> {after3}",
        p3.unwrap_or(0)
    );
    verdict(
        FORGED,
        p3.is_ok() && forged == Err(Error::MissingRight) && before3 == after3,
        d.as_str(),
    );
    let Ok(p3) = p3 else { brainix_rt::exit(1) };

    // 5. An old approval replayed while #3 waits does not run it; no answer denies it.
    let r3 = t.wait(p3);
    let after_wait = t.generation();
    d.clear();
    let _ = write!(
        d,
        "#{p3} ended {r3:?}; echo generation {before3} -> {after_wait}"
    );
    let untouched = before3 == after_wait;
    verdict(REPLAY, r3 != Ok(()) && untouched, d.as_str());
    verdict(TIMEOUT, r3 == Err(Error::Timeout) && untouched, d.as_str());
    brainix_rt::exit(0)
}

impl Tenant {
    /// echo's generation: it moves on exactly when echo is restarted.
    fn generation(&self) -> u64 {
        self.audit
            .process(self.echo)
            .map_or(u64::MAX, |i| i.generation)
    }

    fn call(&self, label: u64, regs: [u64; 3]) -> Result<u64, Error> {
        let mut m = Message::new(label);
        m.regs[..3].copy_from_slice(&regs);
        let mut reply = Message::new(0);
        self.consent.call(&m, &[], &mut reply)?;
        status(&reply).map(|()| reply.regs[0])
    }

    fn propose(&self, wait_ms: u64) -> Result<u64, Error> {
        self.call(consent::PROPOSE, [consent::RESTART, self.echo, wait_ms])
    }

    fn wait(&self, id: u64) -> Result<(), Error> {
        self.call(consent::AWAIT, [id, 0, 0]).map(drop)
    }

    fn decide(&self, id: u64, approve: bool) -> Result<(), Error> {
        self.call(consent::DECIDE, [id, u64::from(approve), 0])
            .map(drop)
    }
}
