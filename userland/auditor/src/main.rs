//! The auditor (INV-AUDIT): an observe-only server.
//!
//! It holds its endpoint (receive only), the console (send, for its output) and audit-read; in
//! the test system also its report capabilities. Nothing that could change anything: no process
//! control, no ports, no interrupts, no device memory, no network. Compromising it costs
//! visibility, never integrity.
//!
//! - At start it checks its own table ([`observe_only`]) and tries every kind of action it must
//!   not have ([`forbidden`]), reporting both as checks.
//! - On [`auditor::REPORT`] it prints the whole system: each process, its capability table
//!   against the manifest (`brainix-observe`), its live page tables (W^X, KPTI), and memory.
//! - On a death (the kernel notifies audit-read holders) it prints the process and how it
//!   ended.
//!
//! Report capabilities, in order (test system): `audit.capabilities`,
//! `audit.forbidden-refused`, `audit.fault-observed`, `audit.on-demand`, `auth.caps-frozen`,
//! `mem.kpti`, `ipc.no-shared-memory`.
#![cfg_attr(target_os = "none", no_std, no_main)]

mod checks;

use brainix_abi::{Error, FOREVER, Message, NOTIFY_CHILD_DIED, ProcessState};
use brainix_observe::{CapsViolation, TablesViolation};
use brainix_proto::{OK, auditor, auditor::slots, launch_handle, status_of};
use brainix_rt::fmt::Buffer;
use brainix_rt::{AuditRead, Endpoint, Received, Report, cap, println, process};
use core::fmt::Write;

brainix_rt::entry!(run);

/// The auditor's verdicts, by report capability (n-th in slot order).
mod verdict {
    pub const CAPABILITIES: usize = 0;
    pub const FORBIDDEN: usize = 1;
    pub const FAULT: usize = 2;
    pub const ON_DEMAND: usize = 3;
    pub const CAPS_FROZEN: usize = 4;
    pub const TABLES: usize = 5;
    pub const SHARING: usize = 6;
}

/// Reports verdict `n` if this system gives the auditor that report capability.
fn report(n: usize, pass: bool, detail: &[u8]) {
    if let Some(r) = Report::nth(n) {
        let _ = r.report(pass, detail);
    }
}

struct Auditor {
    audit: AuditRead,
    /// The generation whose death was last printed, by pid.
    seen: [u64; brainix_abi::MAX_PROCESSES],
    fault_reported: bool,
}

fn run(pid: u64) -> ! {
    let endpoint = Endpoint(launch_handle(slots::ENDPOINT));
    brainix_rt::set_console(Endpoint(launch_handle(slots::CONSOLE)));
    let audit = AuditRead(launch_handle(slots::AUDIT));
    let mut detail = Buffer::<{ brainix_abi::MAX_REPORT_DETAIL }>::new();
    let own = checks::observe_only(audit, pid, &mut detail);
    println!("AUDIT self: {}", detail.as_str());
    report(verdict::CAPABILITIES, own, detail.as_bytes());
    let mut detail = Buffer::<{ brainix_abi::MAX_REPORT_DETAIL }>::new();
    let refused = checks::forbidden(endpoint, audit, &mut detail);
    println!("AUDIT forbidden: {}", detail.as_str());
    report(verdict::FORBIDDEN, refused, detail.as_bytes());

    let mut auditor = Auditor {
        audit,
        seen: [0; brainix_abi::MAX_PROCESSES],
        fault_reported: false,
    };
    auditor.deaths();
    let mut msg = Message::new(0);
    loop {
        match endpoint.recv(&mut msg, FOREVER) {
            Ok(Received::Notification(bits)) if bits & NOTIFY_CHILD_DIED != 0 => auditor.deaths(),
            Ok(Received::Notification(_)) => {}
            Ok(Received::Message { token, .. }) => {
                let status = match msg.label {
                    auditor::REPORT => {
                        auditor.full_report();
                        OK
                    }
                    _ => status_of(Err(Error::NoSuchCall)),
                };
                let _ = cap::reply(token, &Message::new(status));
            }
            Err(_) => cap::yield_now(),
        }
    }
}

impl Auditor {
    /// Prints each death not printed yet; the first death by a fault is `audit.fault-observed`.
    fn deaths(&mut self) {
        for pid in 0..brainix_abi::MAX_PROCESSES as u64 {
            let Ok(info) = self.audit.process(pid) else {
                break;
            };
            let seen = &mut self.seen[pid as usize];
            if info.state != ProcessState::Dead as u64 || info.generation == *seen {
                continue;
            }
            *seen = info.generation;
            let name = process::name(&info);
            println!(
                "AUDIT death: {name} (pid {pid}, generation {}): {}",
                info.generation,
                process::Exit(&info)
            );
            if info.last_exit >= process::FAULT && !self.fault_reported {
                self.fault_reported = true;
                let mut d = Buffer::<{ brainix_abi::MAX_REPORT_DETAIL }>::new();
                let _ = write!(d, "saw {name} (pid {pid}) die: {}", process::Exit(&info));
                report(verdict::FAULT, true, d.as_bytes());
            }
        }
    }

    /// The whole system, then the verdicts on capability tables and page tables.
    fn full_report(&mut self) {
        println!("AUDIT report begin");
        let mut processes = 0;
        for pid in 0..brainix_abi::MAX_PROCESSES as u64 {
            let Ok(info) = self.audit.process(pid) else {
                break;
            };
            processes += 1;
            let state = match info.state {
                s if s == ProcessState::Dead as u64 => "dead",
                s if s == ProcessState::Stopped as u64 => "stopped",
                _ => "alive",
            };
            println!(
                "AUDIT process {pid} {} gen={} {state} pages={}/{} last={}",
                process::name(&info),
                info.generation,
                info.pages_used,
                info.pages_budget,
                process::Exit(&info)
            );
        }
        let mut d = Buffer::<{ brainix_abi::MAX_REPORT_DETAIL }>::new();
        let caps = brainix_observe::check_caps(self.audit);
        let caps_ok = match caps {
            Ok(s) => write!(
                d,
                "{} launched processes: {} capabilities as launched, {} dropped, none added or changed",
                s.processes, s.held, s.dropped
            )
            .is_ok(),
            Err(CapsViolation::Slot { pid, slot, finding }) => {
                let _ = write!(d, "pid {pid} slot {slot}: {finding:?} against the manifest");
                false
            }
            Err(CapsViolation::Audit(e)) => {
                let _ = write!(d, "audit refused: {}", e.name());
                false
            }
        };
        println!("AUDIT capabilities: {}", d.as_str());
        report(verdict::CAPS_FROZEN, caps_ok, d.as_bytes());

        let mut d = Buffer::<{ brainix_abi::MAX_REPORT_DETAIL }>::new();
        let tables = brainix_observe::check_tables(self.audit, |pid, pages| match pages {
            Some(p) => println!("AUDIT tables {pid}: {p} pages, W^X and KPTI clean"),
            None => println!("AUDIT tables {pid}: no address space"),
        });
        let tables_ok = match tables {
            Ok(s) => write!(
                d,
                "{} live processes, {} pages: no W+X page, no kernel page beyond the trampoline",
                s.walked, s.pages
            )
            .is_ok(),
            Err(TablesViolation::Mapping { pid, code, addr }) => {
                let _ = write!(
                    d,
                    "pid {pid}: {} at {addr:#x}",
                    brainix_abi::table_audit::name(code)
                );
                false
            }
            Err(TablesViolation::Audit(e)) => {
                let _ = write!(d, "audit refused: {}", e.name());
                false
            }
        };
        println!("AUDIT tables: {}", d.as_str());
        report(verdict::TABLES, tables_ok, d.as_bytes());

        let mut d = Buffer::<{ brainix_abi::MAX_REPORT_DETAIL }>::new();
        let shared_ok = match self.audit.sharing() {
            Ok(Ok(pages)) => write!(
                d,
                "{pages} user pages of live processes: no physical page in two of them"
            )
            .is_ok(),
            Ok(Err((page, a, b))) => {
                let _ = write!(
                    d,
                    "physical page {page:#x} is mapped by pid {a} and pid {b}"
                );
                false
            }
            Err(e) => {
                let _ = write!(d, "audit refused: {}", e.name());
                false
            }
        };
        println!("AUDIT sharing: {}", d.as_str());
        report(verdict::SHARING, shared_ok, d.as_bytes());

        if let Ok(m) = self.audit.memory() {
            println!(
                "AUDIT memory: frames {}/{} free, processes {}/{}, endpoints {}/{}",
                m.frames_free,
                m.frames_total,
                m.processes,
                m.processes_capacity,
                m.endpoints,
                m.endpoints_capacity
            );
        }
        println!("AUDIT report end");
        let mut d = Buffer::<{ brainix_abi::MAX_REPORT_DETAIL }>::new();
        let _ = write!(
            d,
            "reported {processes} processes, capability and page tables"
        );
        report(verdict::ON_DEMAND, processes > 0, d.as_bytes());
    }
}
