//! `init`, the supervisor.
//!
//! It launches nothing itself (the kernel starts every process the manifest marks `start`), but
//! it holds a process-control capability for each process it supervises, and:
//!
//! - logs each supervised process at boot through its log capability;
//! - on [`NOTIFY_CHILD_DIED`], audits every supervised process, reports each new death (name,
//!   exit code, or fault vector and address) and restarts the ones the manifest marks
//!   restartable, at most [`supervisor::MAX_RESTARTS`] times each;
//! - serves the shell's requests on its endpoint ([`brainix_proto::supervisor`]): `KILL` and
//!   `START` a pid;
//! - judges the attacks that must end in a fault ([`brainix_proto::attack::FAULTS`]): a report
//!   capability right after a process's control capability is the verdict on that process's
//!   first death, PASS only for the expected page fault.
//!
//! Slots ([`supervisor::slots`]): log, audit (read-only), its endpoint (receive), then one
//! process-control capability per supervised process. It finds their targets with `cap_info`,
//! so the manifest alone decides whom it supervises.
#![cfg_attr(target_os = "none", no_std, no_main)]

mod supervise;

use brainix_abi::{Error, FOREVER, Handle, Message, NOTIFY_CHILD_DIED};
use brainix_proto::{launch_handle, status_of, supervisor, supervisor::slots};
use brainix_rt::fmt::Buffer;
use brainix_rt::{AuditRead, Endpoint, Log, ProcessControl, Received, Report, cap, process};
use core::fmt::Write;
use supervise::{Action, Table};

brainix_rt::entry!(run);

/// Capability slots the kernel gives a process.
const SLOTS: u16 = brainix_abi::CAP_SLOTS as u16;

struct Init {
    log: Log,
    audit: AuditRead,
    table: Table<ProcessControl>,
    /// The report capability that judges a pid's death, by pid.
    verdicts: [Option<(u64, Report)>; supervise::MAX_SUPERVISED],
}

fn run(_pid: u64) -> ! {
    let endpoint = Endpoint(launch_handle(slots::ENDPOINT));
    let mut init = Init {
        log: Log(launch_handle(slots::LOG)),
        audit: AuditRead(launch_handle(slots::AUDIT)),
        table: Table::new(),
        verdicts: [None; supervise::MAX_SUPERVISED],
    };
    let mut judged = 0;
    for slot in slots::FIRST_CONTROL..SLOTS {
        let handle = Handle::new(slot, 1);
        let is = |h: Handle, t: brainix_abi::CapType| {
            cap::cap_info(h).is_ok_and(|i| i.cap_type() == Some(t))
        };
        let Ok(info) = cap::cap_info(handle) else {
            continue;
        };
        if info.cap_type() != Some(brainix_abi::CapType::ProcessControl) {
            continue;
        }
        if !init.table.add(info.detail, ProcessControl(handle)) {
            init.say(format_args!(
                "cannot supervise pid {}: table full",
                info.detail
            ));
        }
        let next = Handle::new(slot + 1, 1);
        if is(next, brainix_abi::CapType::Report)
            && let Some(v) = init.verdicts.get_mut(judged)
        {
            *v = Some((info.detail, Report(next)));
            judged += 1;
        }
    }
    init.announce();
    // Deaths before the first receive are still pending as a notification bit; the first
    // check also catches any that coalesced.
    init.check();
    let mut msg = Message::new(0);
    loop {
        match endpoint.recv(&mut msg, FOREVER) {
            Ok(Received::Notification(bits)) => {
                if bits & NOTIFY_CHILD_DIED != 0 {
                    init.check();
                }
            }
            Ok(Received::Message { token, .. }) => {
                let reply = init.request(&msg);
                let _ = cap::reply(token, &reply);
            }
            Err(_) => cap::yield_now(),
        }
    }
}

impl Init {
    fn say(&self, args: core::fmt::Arguments<'_>) {
        let mut line = Buffer::<{ brainix_proto::LOG_LINE_MAX }>::new();
        let _ = line.write_fmt(args);
        let _ = self.log.write(line.as_bytes());
    }

    fn announce(&self) {
        for (pid, _) in self.table.iter() {
            match self.audit.process(pid) {
                Ok(info) => self.say(format_args!(
                    "supervising {} (pid {pid}, {}, {})",
                    process::name(&info),
                    match info.state {
                        s if s == brainix_abi::ProcessState::Stopped as u64 => {
                            "waiting to be started"
                        }
                        // Never launched: the kernel refused (its device is not on the machine,
                        // say) and said why.
                        s if s == brainix_abi::ProcessState::Dead as u64
                            && info.generation == 0 =>
                        {
                            "not launched"
                        }
                        _ => "launched",
                    },
                    if info.flags & brainix_abi::ProcessInfo::RESTARTABLE != 0 {
                        "restartable"
                    } else {
                        "not restarted"
                    }
                )),
                Err(e) => self.say(format_args!("pid {pid}: audit refused: {}", e.name())),
            }
        }
    }

    /// Audits every supervised process and acts on new deaths.
    fn check(&mut self) {
        for i in 0..self.table.len() {
            let Some((pid, ctl)) = self.table.get(i) else {
                continue;
            };
            let info = match self.audit.process(pid) {
                Ok(info) => info,
                Err(e) => {
                    self.say(format_args!("pid {pid}: audit refused: {}", e.name()));
                    continue;
                }
            };
            let name = process::name(&info);
            let action = self.table.observe(i, &info);
            if action != Action::Nothing {
                self.judge(pid, name, &info);
            }
            match action {
                Action::Nothing => {}
                Action::Report => self.say(format_args!(
                    "{name} (pid {pid}) died: {}; not restarted",
                    process::Exit(&info)
                )),
                Action::GiveUp => self.say(format_args!(
                    "{name} (pid {pid}) died: {}; restarted {} times already, giving up",
                    process::Exit(&info),
                    supervisor::MAX_RESTARTS
                )),
                Action::Restart => {
                    self.say(format_args!(
                        "{name} (pid {pid}) died: {}; restarting",
                        process::Exit(&info)
                    ));
                    if let Err(e) = ctl.restart() {
                        self.say(format_args!("restarting {name} refused: {}", e.name()));
                    }
                }
            }
        }
    }

    /// If `pid`'s death is a check's verdict, reports it (once: the kernel refuses a second).
    fn judge(&self, pid: u64, name: &str, info: &brainix_abi::ProcessInfo) {
        let Some((_, report)) = self.verdicts.iter().flatten().find(|(p, _)| *p == pid) else {
            return;
        };
        let mut detail = Buffer::<{ brainix_abi::MAX_REPORT_DETAIL }>::new();
        let pass = match brainix_proto::attack::fault_for(name) {
            Some(f) => {
                let _ = write!(
                    detail,
                    "{}; expected a page fault in {:#x}..{:#x}",
                    process::Exit(info),
                    f.lo,
                    f.hi
                );
                f.judge(info.last_exit, info.last_fault_addr)
            }
            None => {
                let _ = write!(detail, "no fault expectation for {name}");
                false
            }
        };
        if let Err(e) = report.report(pass, detail.as_bytes()) {
            self.say(format_args!("verdict on {name} not reported: {}", e.name()));
        }
    }

    fn request(&mut self, msg: &Message) -> Message {
        let pid = msg.regs[0];
        let Some(ctl) = self.table.control(pid) else {
            return Message::new(status_of(Err(Error::OutOfRange)));
        };
        let mut reply = Message::new(0);
        let result = match msg.label {
            supervisor::KILL => ctl.stop(),
            supervisor::START => ctl.restart().map(|()| {
                reply.regs[0] = self.audit.process(pid).map_or(0, |i| i.generation);
                self.say(format_args!("started pid {pid} on request"));
            }),
            _ => Err(Error::NoSuchCall),
        };
        reply.label = status_of(result);
        reply
    }
}
