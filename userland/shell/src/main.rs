//! The BraiNIX shell, on the trusted console.
//!
//! Prints the prompt [`PROMPT`] (its first appearance marks the end of boot), reads a line
//! through the console, runs one command ([`command::HELP`] lists them). It holds the console
//! and the supervisor endpoints (send), audit (read-only) and the echo endpoint (send) for
//! `ipc-bench`: slot layout in [`brainix_proto::shell::slots`]. It cannot stop or start anything
//! itself; `kill` and `start` are requests the supervisor may refuse. The file commands are
//! requests to the filesystem server (slot `FS`), which alone reaches the disk.
//!
//! When the manifest gives it a report capability (check [`brainix_proto::shell::READY`]), it
//! reports PASS on it once, just before it first reads the console: the test runner's signal
//! that typed input will now be read, instead of guessing from a prompt that anything could
//! print.
#![cfg_attr(target_os = "none", no_std, no_main)]

mod bench;
mod command;
mod files;
mod show;

use brainix_abi::{Error, Message};
use brainix_proto::{console, launch_handle, shell::slots, status, supervisor};
use brainix_rt::{AuditRead, Endpoint, Report, cap, print, println, sys::rdtsc};
use command::{Command, Target};
use core::fmt::Write;

brainix_rt::entry!(run);

/// The prompt.
pub const PROMPT: &str = "brainix> ";

/// Slots `caps` asks about before it stops; the kernel's tables hold 32 and answer
/// `out-of-range` past the end.
const MAX_SLOTS: u64 = 64;
/// Pids `ps` asks about before it stops (the kernel answers `out-of-range` past the last).
const MAX_PIDS: u64 = 256;

struct Shell {
    console: Endpoint,
    supervisor: Endpoint,
    audit: AuditRead,
    echo: Endpoint,
    fs: Endpoint,
    entropy: Endpoint,
    ip: Endpoint,
}

fn run(_pid: u64) -> ! {
    let shell = Shell {
        console: Endpoint(launch_handle(slots::CONSOLE)),
        supervisor: Endpoint(launch_handle(slots::SUPERVISOR)),
        audit: AuditRead(launch_handle(slots::AUDIT)),
        echo: Endpoint(launch_handle(slots::ECHO)),
        fs: Endpoint(launch_handle(slots::FS)),
        entropy: Endpoint(launch_handle(slots::ENTROPY)),
        ip: Endpoint(launch_handle(slots::IP)),
    };
    brainix_rt::set_console(shell.console);
    println!("BraiNIX shell; type 'help' for the commands");
    let mut ready = Report::nth(0);
    loop {
        print!("{PROMPT}");
        // A restarted shell finds the check already reported; the kernel refuses, harmlessly.
        if let Some(r) = ready.take() {
            let _ = r.report(true, b"reading the trusted console");
        }
        let mut line = [0u8; console::LINE_MAX];
        match shell.read_line(&mut line) {
            Ok(n) => shell.execute(&line[..n]),
            Err(e) => {
                // Most likely the console died; the supervisor restarts it, and the same
                // endpoint works again. Until then, give others the CPU.
                println!("error: reading the console: {}", e.name());
                cap::yield_now();
            }
        }
    }
}

impl Shell {
    fn read_line(&self, line: &mut [u8]) -> cap::Result<usize> {
        let mut reply = Message::new(0);
        self.console.call(
            &Message::new(console::READ_LINE),
            &[cap::lend_mut(line)],
            &mut reply,
        )?;
        status(&reply)?;
        Ok((reply.regs[0] as usize).min(line.len()))
    }

    fn execute(&self, line: &[u8]) {
        let command = match command::parse(line) {
            Ok(c) => c,
            Err(e) => return println!("{e}"),
        };
        match command {
            Command::Nothing => {}
            Command::Help => print!("{}", command::HELP),
            Command::Ps => self.ps(),
            Command::Caps(pid) => self.caps(pid),
            Command::Mem => match self.audit.memory() {
                Ok(m) => println!("{}", show::Memory(&m)),
                Err(e) => println!("error: mem: {}", e.name()),
            },
            Command::Uptime => match cap::uptime() {
                Ok((ms, tsc)) => println!("up {}.{:03} s (tsc {tsc})", ms / 1000, ms % 1000),
                Err(e) => println!("error: uptime: {}", e.name()),
            },
            Command::Echo(text) => println!("{text}"),
            Command::IpcBench => self.ipc_bench(),
            Command::Kill(pid) => match self.ask(supervisor::KILL, pid) {
                Ok(_) => println!("stopped pid {pid}"),
                Err(e) => println!("error: kill {pid}: {}{}", e.name(), unsupervised(e)),
            },
            Command::Start(target) => self.start(target),
            Command::Audit => self.audit(),
            Command::Decide { id, approve } => self.decide(id, approve),
            Command::Fuzz { calls, seed } => self.fuzz(calls, seed.unwrap_or_else(rdtsc)),
            Command::Devices => self.devices(),
            Command::Ls => self.ls(),
            Command::Cat(name) => self.cat(name),
            Command::Write(name, text) => self.write(name, text),
            Command::Rm(name) => self.rm(name),
            Command::Stat(name) => self.stat(name),
            Command::Df => self.df(),
            Command::FsBench(name) => self.fs_bench(name),
            Command::Random(n) => self.random(n),
            Command::Ping(addr) => self.ping(addr),
            Command::Netstat => self.netstat(),
        }
    }

    fn ps(&self) {
        println!("{}", show::PS_HEADER);
        for pid in 0..MAX_PIDS {
            match self.audit.process(pid) {
                Ok(info) => println!("{}", show::PsRow(&info)),
                Err(Error::OutOfRange) => return,
                Err(e) => return println!("error: ps: pid {pid}: {}", e.name()),
            }
        }
    }

    fn random(&self, n: u64) {
        let mut msg = Message::new(brainix_proto::entropy::READ);
        msg.regs[0] = n;
        let mut reply = Message::new(0);
        match self
            .entropy
            .call(&msg, &[], &mut reply)
            .and_then(|()| status(&reply))
        {
            Ok(()) => {
                let bytes = reply.data().unwrap_or(&[]);
                for b in bytes {
                    print!("{b:02x}");
                }
                println!();
            }
            Err(Error::PeerDead) => {
                println!("error: random: no entropy server (no virtio-rng device?)")
            }
            Err(e) => println!("error: random: {}", e.name()),
        }
    }

    fn ip_call(&self, msg: &Message) -> Result<Message, Error> {
        let mut reply = Message::new(0);
        self.ip.call(msg, &[], &mut reply)?;
        status(&reply).map(|()| reply)
    }

    fn ping(&self, addr: [u8; 4]) {
        let ip = brainix_wire::IpText(addr);
        // TSC ticks per millisecond, from the kernel's clock since boot.
        let per_ms = match cap::uptime() {
            Ok((ms, tsc)) if ms > 0 => (tsc / ms).max(1),
            _ => 1,
        };
        let mut received = 0;
        for seq in 1..=3u64 {
            let mut msg = Message::new(brainix_proto::ip::PING);
            msg.regs = [u64::from(u32::from_be_bytes(addr)), seq, 0, 0];
            match self.ip_call(&msg) {
                Ok(r) => {
                    received += 1;
                    let us = r.regs[0].saturating_mul(1000) / per_ms;
                    println!(
                        "reply from {ip}: seq={seq} ttl={} time={}.{:03} ms",
                        r.regs[1],
                        us / 1000,
                        us % 1000
                    );
                }
                Err(Error::Timeout) => println!("no reply from {ip}: seq={seq} timeout"),
                Err(e @ (Error::PeerDead | Error::BadHandle)) => {
                    return println!("error: ping: no network stack ({})", e.name());
                }
                Err(e) => println!("error: ping {ip}: seq={seq}: {}", e.name()),
            }
        }
        println!("ping {ip}: 3 sent, {received} received");
    }

    fn netstat(&self) {
        match self.ip_call(&Message::new(brainix_proto::ip::STATS)) {
            Ok(r) => {
                let [rx, tx, echo, dropped] = r.regs;
                println!(
                    "ip: frames in {rx} out {tx}; echo requests answered {echo}; dropped {dropped}"
                );
                let counts = r.data().unwrap_or(&[]);
                for (why, c) in brainix_wire::Drop::ALL.iter().zip(counts.chunks_exact(8)) {
                    let mut word = [0u8; 8];
                    word.copy_from_slice(c);
                    println!("  drop {}: {}", why.name(), u64::from_le_bytes(word));
                }
            }
            Err(e) => println!("error: netstat: {}", e.name()),
        }
    }

    fn devices(&self) {
        for index in 0..MAX_PIDS {
            match self.audit.device(index) {
                Ok(dev) => {
                    let holder = self.audit.process(dev.holder).ok();
                    let holder = holder.as_ref().map(show::name);
                    println!("{}", show::DeviceRow { dev: &dev, holder });
                }
                Err(Error::OutOfRange) if index == 0 => return println!("no PCI devices"),
                Err(Error::OutOfRange) => return,
                Err(e) => return println!("error: devices: {}", e.name()),
            }
        }
    }

    fn caps(&self, pid: u64) {
        if let Err(e) = self.audit.process(pid) {
            return println!("error: caps {pid}: {}", e.name());
        }
        for slot in 0..MAX_SLOTS {
            match self.audit.cap(pid, slot) {
                Ok(cap) if cap.kind == 0 => {}
                Ok(cap) => println!("{}", show::CapRow { slot, cap: &cap }),
                Err(Error::OutOfRange) => return,
                Err(e) => return println!("error: caps {pid}: slot {slot}: {}", e.name()),
            }
        }
    }

    /// Sends a supervisor request about `pid`; returns the reply's first word.
    fn ask(&self, label: u64, pid: u64) -> cap::Result<u64> {
        let mut msg = Message::new(label);
        msg.regs[0] = pid;
        let mut reply = Message::new(0);
        self.supervisor.call(&msg, &[], &mut reply)?;
        status(&reply)?;
        Ok(reply.regs[0])
    }

    fn start(&self, target: Target<'_>) {
        let found = match target {
            Target::Pid(pid) => self.audit.process(pid).map(|i| (pid, i)).ok(),
            Target::Name(name) => (0..MAX_PIDS)
                .map_while(|pid| self.audit.process(pid).ok().map(|i| (pid, i)))
                .find(|(_, info)| show::name(info) == name),
        };
        let Some((pid, info)) = found else {
            return match target {
                Target::Pid(pid) => println!("error: start: no process with pid {pid}"),
                Target::Name(name) => {
                    println!("error: start: no process named '{name}' (see 'ps')")
                }
            };
        };
        match self.ask(supervisor::START, pid) {
            Ok(generation) => println!(
                "started {} (pid {pid}, generation {generation})",
                show::name(&info)
            ),
            Err(e) => println!(
                "error: start {}: {}{}",
                show::name(&info),
                e.name(),
                unsupervised(e)
            ),
        }
    }

    fn ipc_bench(&self) {
        // First one call whose every field is checked: the reply is exactly what the echo server
        // received, delivered only when it replied. Check `ipc.call-reply` (second report cap).
        let verdict = self.round_trip();
        if let Some(r) = Report::nth(1) {
            let _ = r.report(
                verdict.is_ok(),
                verdict.unwrap_or_else(|why| why).as_bytes(),
            );
        }
        let mut samples = [0u32; bench::ROUNDS];
        let null = time(&mut samples, cap::null);
        let ping = Message::new(0);
        let mut pong = Message::new(0);
        let call = time(&mut samples, || self.echo.call(&ping, &[], &mut pong));
        match (null, call) {
            (Ok(null), Ok(call)) => println!(
                "{}",
                bench::Line {
                    null,
                    call,
                    n: bench::ROUNDS
                }
            ),
            (Err(e), _) => println!("error: ipc-bench: null system call: {}", e.name()),
            (_, Err(e)) => println!("error: ipc-bench: call to echo: {}", e.name()),
        }
    }
}

impl Shell {
    /// Takes the console's decision on an assist proposal to the consent service: only this
    /// shell's capability carries the trusted bit.
    fn decide(&self, id: u64, approve: bool) {
        let consent = Endpoint(launch_handle(slots::CONSENT));
        let mut m = Message::new(brainix_proto::consent::DECIDE);
        m.regs[0] = id;
        m.regs[1] = u64::from(approve);
        let mut reply = Message::new(0);
        let word = if approve { "approve" } else { "deny" };
        match consent
            .call(&m, &[], &mut reply)
            .and_then(|()| status(&reply))
        {
            Ok(()) => println!("{word} {id}: done"),
            Err(Error::OutOfRange) => {
                println!(
                    "error: {word} {id}: no such proposal is waiting (decided already, or never made)"
                )
            }
            Err(e) => println!("error: {word} {id}: {}", e.name()),
        }
    }

    /// Asks the auditor for its report; it prints the report itself.
    fn audit(&self) {
        let auditor = Endpoint(launch_handle(slots::AUDITOR));
        let mut reply = Message::new(0);
        let asked = auditor
            .call(
                &Message::new(brainix_proto::auditor::REPORT),
                &[],
                &mut reply,
            )
            .and_then(|()| status(&reply));
        if let Err(e) = asked {
            println!("error: audit: {}", e.name());
        }
    }

    /// Runs the fuzzer, then judges: the fuzzer made every call and answered, the echo server
    /// still round-trips exactly, every live page table is clean, and every capability table is
    /// its manifest entry minus drops. Check `fuzz.survived` (third report capability).
    fn fuzz(&self, calls: u64, seed: u64) {
        let fuzzer = Endpoint(launch_handle(slots::FUZZ));
        let mut ask = Message::new(brainix_proto::fuzz::RUN);
        ask.regs[0] = calls;
        ask.regs[1] = seed;
        let mut reply = Message::new(0);
        let ms = || cap::uptime().map_or(0, |(ms, _)| ms);
        let start = ms();
        let ran = fuzzer
            .call(&ask, &[], &mut reply)
            .and_then(|()| status(&reply));
        let elapsed = ms().saturating_sub(start);
        // Calls per second, for the record (the timer ticks at 1 kHz).
        let rate = reply.regs[0].saturating_mul(1000) / elapsed.max(1);
        let mut detail = brainix_rt::fmt::Buffer::<{ brainix_abi::MAX_REPORT_DETAIL }>::new();
        let pass = match ran {
            Err(e) => {
                let _ = write!(
                    detail,
                    "seed={seed:#x}: the fuzzer did not answer: {}",
                    e.name()
                );
                false
            }
            Ok(()) if reply.regs[0] != calls.min(brainix_proto::fuzz::MAX_CALLS) => {
                let made = reply.regs[0];
                let _ = write!(detail, "seed={seed:#x}: {made} of {calls} calls made");
                false
            }
            Ok(()) => self.invariants_hold(seed, reply.regs[0], reply.regs[1], &mut detail),
        };
        println!(
            "FUZZ seed={seed:#x} calls={} refused={} ms={elapsed} calls_per_s={rate} verdict={} {}",
            reply.regs[0],
            reply.regs[1],
            if pass { "PASS" } else { "FAIL" },
            detail.as_str()
        );
        if let Some(r) = Report::nth(2) {
            let _ = r.report(pass, detail.as_bytes());
        }
    }

    /// After a fuzz run: everything the run must not have broken.
    fn invariants_hold<const N: usize>(
        &self,
        seed: u64,
        calls: u64,
        refused: u64,
        d: &mut brainix_rt::fmt::Buffer<N>,
    ) -> bool {
        let _ = match (
            self.round_trip(),
            brainix_observe::check_tables(self.audit, |_, _| {}),
            brainix_observe::check_caps(self.audit),
        ) {
            (Err(why), _, _) => write!(d, "seed={seed:#x}: echo after the run: {why}"),
            (_, Err(v), _) => write!(d, "seed={seed:#x}: page tables: {v:?}"),
            (_, _, Err(v)) => write!(d, "seed={seed:#x}: capabilities: {v:?}"),
            (Ok(_), Ok(tables), Ok(caps)) => {
                let _ = write!(
                    d,
                    "seed={seed:#x} calls={calls} refused={refused}; echo ok; {} tables clean; caps frozen ({} dropped)",
                    tables.walked, caps.dropped
                );
                return true;
            }
        };
        false
    }

    /// One call to the echo server with every field of the message set; `Ok` with a detail when
    /// the reply carries exactly the same label, words and payload.
    fn round_trip(&self) -> Result<&'static str, &'static str> {
        let mut ping = Message::new(0x1234_5678_9abc_def0);
        ping.regs = [1, u64::MAX, 0x5a5a_5a5a, 42];
        ping.len = brainix_abi::MAX_PAYLOAD as u64;
        for (i, b) in ping.payload.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(31) ^ 0xa5;
        }
        let mut pong = Message::new(0);
        match self.echo.call(&ping, &[], &mut pong) {
            Err(_) => Err("the call to echo failed"),
            Ok(()) if pong.label != ping.label || pong.regs != ping.regs => {
                Err("the reply's label or words differ from what was sent")
            }
            Ok(()) if pong.len != ping.len || pong.payload != ping.payload => {
                Err("the reply's payload differs from what was sent")
            }
            Ok(()) => Ok("256-byte payload, label and 4 words came back exactly"),
        }
    }
}

/// The supervisor's `out-of-range`, explained.
fn unsupervised(e: Error) -> &'static str {
    match e {
        Error::OutOfRange => " (the supervisor holds no control of that process)",
        _ => "",
    }
}

/// Times `op` [`bench::ROUNDS`] times after [`bench::WARMUP`] untimed runs.
fn time(
    samples: &mut [u32; bench::ROUNDS],
    mut op: impl FnMut() -> cap::Result<()>,
) -> cap::Result<bench::Summary> {
    for _ in 0..bench::WARMUP {
        op()?;
    }
    for s in samples.iter_mut() {
        let start = rdtsc();
        op()?;
        *s = u32::try_from(rdtsc().wrapping_sub(start)).unwrap_or(u32::MAX);
    }
    bench::summarize(samples).ok_or(Error::OutOfRange)
}
