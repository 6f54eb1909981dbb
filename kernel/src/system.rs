//! The running system: the static process table, the endpoints, the clock, and the lifecycle of
//! each process (launch, death, stop, restart, notifications).
//!
//! This is portable logic. Address spaces and hardware are reached through [`Spaces`] and
//! [`Machine`], which `arch` implements with page tables and ports, and the tests implement with
//! vectors. IPC lives in [`crate::ipc`], system calls in [`crate::syscall`], scheduling in
//! [`crate::sched`].

use crate::cap::CapTable;
use crate::manifest::{CapSpec, MAX_REPORTS, ProcessSpec, SystemSpec};
use crate::platform::pci::{Bdf, reg};
use crate::platform::{DeviceError, IRQ_LINES, Platform};
use crate::report::Outcome;
use brainix_abi::{Error, NOTIFY_CHILD_DIED, ProcessState};
use core::fmt;

/// Processes in the static table (an ABI constant, so the supervisor sizes its table the same);
/// the manifest checker refuses more.
pub const MAX_PROCESSES: usize = brainix_abi::MAX_PROCESSES;
/// Frames one process may own: image, stack, DMA pools and its own page tables. The manifest
/// checker refuses larger budgets; 256 pages is 1 MiB, several times what our servers need.
pub const MAX_PROCESS_PAGES: usize = 256;
/// Endpoint objects. The manifest checker refuses more.
pub const MAX_ENDPOINTS: usize = 64;
/// Timer ticks per second (1 ms ticks; receive timeouts are in milliseconds).
pub const TICK_HZ: u64 = 1000;
/// Ticks a process runs before a process of the same priority gets the CPU.
pub const TIME_SLICE_TICKS: u32 = 10;

/// A process's user registers, saved while it is not running.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct UserRegs {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub rsp: u64,
    pub rflags: u64,
}

/// What a process is doing. Blocked states carry the user pointers of the call that blocked, so
/// the rendezvous can finish it later; nothing is buffered in the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Declared but not running: not started yet, or stopped by its supervisor.
    Stopped,
    /// Exited or killed by a fault.
    Dead,
    /// Ready to run.
    Runnable,
    /// Blocked in `send` or `call` until the endpoint's receiver takes the message.
    Sending {
        /// Endpoint.
        ep: u16,
        /// Badge of the capability used.
        badge: u64,
        /// The message, in the sender's memory.
        msg: u64,
        /// A call: after delivery, wait for the reply.
        call: Option<CallArgs>,
    },
    /// Blocked in `recv` until a message or notification arrives, or the deadline.
    Receiving {
        /// Endpoint.
        ep: u16,
        /// Where the message goes.
        buf: u64,
        /// Tick at which the wait ends with `Timeout`; `u64::MAX` for never.
        deadline: u64,
    },
    /// Delivered a call; waiting for `server` to reply.
    AwaitingReply {
        /// The server.
        server: u16,
        /// The call's reply buffer and leases.
        call: CallArgs,
    },
}

/// The parts of a `call` that outlive delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallArgs {
    /// Where the reply goes.
    pub reply: u64,
    /// The caller's lease descriptors.
    pub leases: u64,
    /// How many.
    pub lease_count: u64,
}

impl State {
    /// The ABI's name for the state.
    pub fn abi(&self) -> ProcessState {
        match self {
            State::Stopped => ProcessState::Stopped,
            State::Dead => ProcessState::Dead,
            State::Runnable => ProcessState::Runnable,
            State::Sending { .. } => ProcessState::Sending,
            State::Receiving { .. } => ProcessState::Receiving,
            State::AwaitingReply { .. } => ProcessState::AwaitingReply,
        }
    }

    /// Whether the process exists as a running program (not stopped or dead).
    pub fn is_alive(&self) -> bool {
        !matches!(self, State::Stopped | State::Dead)
    }
}

/// One entry of the process table.
#[derive(Clone, Debug)]
pub struct Process {
    /// Incremented at every launch; part of reply tokens.
    pub generation: u32,
    /// What it is doing.
    pub state: State,
    /// Saved registers.
    pub regs: UserRegs,
    /// Capabilities, fixed at launch.
    pub caps: CapTable,
    /// Pending notification bits.
    pub notify: u64,
    /// Pages of memory in use (image, stack, tables).
    pub pages: u64,
    /// Exit code, `0x100 + vector` after a fault, `u64::MAX` while running.
    pub last_exit: u64,
    /// Faulting address of the last fault.
    pub last_fault_addr: u64,
    /// Ticks left in the current slice.
    pub slice_left: u32,
}

impl Process {
    const fn new() -> Process {
        Process {
            generation: 0,
            state: State::Stopped,
            regs: UserRegs {
                rax: 0,
                rbx: 0,
                rcx: 0,
                rdx: 0,
                rsi: 0,
                rdi: 0,
                rbp: 0,
                r8: 0,
                r9: 0,
                r10: 0,
                r11: 0,
                r12: 0,
                r13: 0,
                r14: 0,
                r15: 0,
                rip: 0,
                rsp: 0,
                rflags: 0,
            },
            caps: CapTable::new(),
            notify: 0,
            pages: 0,
            last_exit: u64::MAX,
            last_fault_addr: 0,
            slice_left: 0,
        }
    }
}

/// An endpoint: a rendezvous point with one receiving process.
#[derive(Clone, Copy, Debug)]
pub struct Endpoint {
    /// Bumped by revocation; capabilities made under an older one are stale.
    pub generation: u32,
    /// The process whose manifest gives it the receive right.
    pub receiver: Option<u16>,
}

/// Where a launched program starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Launch {
    /// Entry point.
    pub entry: u64,
    /// Initial stack pointer.
    pub stack_top: u64,
    /// Pages used.
    pub pages: u64,
    /// Physical address of the DMA pool allocated for each capability slot (0 for others).
    pub dma: [u64; crate::cap::CAPS_PER_PROCESS],
}

/// Why a launch failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LaunchError {
    /// The image did not parse or was refused.
    Image(crate::elf::ElfError),
    /// The process would exceed its memory budget.
    OverBudget {
        /// Pages needed.
        needed: u64,
        /// Pages allowed.
        budget: u64,
    },
    /// The frame pool is exhausted.
    OutOfMemory,
    /// An MMIO region that is not device space (RAM, the kernel, the interrupt controllers), or
    /// a region larger than its window.
    BadRegion {
        /// Capability slot.
        slot: usize,
        /// Its physical address.
        phys: u64,
    },
    /// A device capability names a device the machine lacks, or a part of it that cannot be
    /// handed out.
    Device {
        /// Capability slot.
        slot: usize,
        /// Why.
        error: DeviceError,
    },
}

impl fmt::Display for LaunchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LaunchError::Image(e) => write!(f, "bad image: {e}"),
            LaunchError::OverBudget { needed, budget } => {
                write!(f, "needs {needed} pages, budget is {budget}")
            }
            LaunchError::OutOfMemory => f.write_str("frame pool exhausted"),
            LaunchError::BadRegion { slot, phys } => write!(
                f,
                "capability slot {slot}: region at {phys:#x} is not device memory or too large"
            ),
            LaunchError::Device { slot, error } => write!(f, "capability slot {slot}: {error}"),
        }
    }
}

/// Process address spaces, seen from the portable kernel.
pub trait Spaces {
    /// Copies `buf.len()` bytes from process `pid`'s user memory at `addr`. Every byte must be in
    /// a user-accessible page of that process, else [`Error::BadAddress`].
    fn read(&self, pid: u16, addr: u64, buf: &mut [u8]) -> Result<(), Error>;
    /// Copies into user memory; every byte must be in a user-writable page.
    fn write(&mut self, pid: u16, addr: u64, data: &[u8]) -> Result<(), Error>;
    /// Checks, without copying, that `[addr, addr + len)` is user memory of `pid` that
    /// [`Spaces::read`] (and, with `write`, [`Spaces::write`]) would accept.
    fn check(&self, pid: u16, addr: u64, len: u64, write: bool) -> Result<(), Error>;
    /// Builds a fresh address space for `pid` from `spec`.
    fn launch(&mut self, pid: u16, spec: &ProcessSpec) -> Result<Launch, LaunchError>;
    /// Frees every page of `pid`'s address space.
    fn teardown(&mut self, pid: u16);
    /// Walks `pid`'s live tables as the launch-time audit does (INV-MEM, KPTI): the pages
    /// mapped, or `(code, address)` of the first violation ([`brainix_abi::table_audit`]);
    /// `None` when `pid` has no address space.
    fn audit_tables(&self, pid: u16) -> Option<Result<u64, (u64, u64)>>;
    /// Checks that no physical page is reachable from two live processes' user mappings: the
    /// user pages checked, or `(page, pid, pid)` of the first shared one.
    fn audit_sharing(&self) -> Result<u64, (u64, u16, u16)>;
}

/// The hardware the portable kernel touches.
pub trait Machine {
    /// Writes a line to the kernel log.
    fn log(&mut self, line: fmt::Arguments<'_>);
    /// Reads an I/O port.
    fn port_in(&mut self, port: u16) -> u8;
    /// Writes an I/O port.
    fn port_out(&mut self, port: u16, value: u8);
    /// Re-enables an interrupt line after its notification was delivered.
    fn irq_unmask(&mut self, line: u8);
    /// The time-stamp counter.
    fn tsc(&self) -> u64;
    /// What discovery found at boot.
    fn platform(&self) -> &Platform {
        &Platform::EMPTY
    }
    /// Reads a PCI configuration register (all ones where there is none).
    fn pci_read(&mut self, bdf: Bdf, offset: u16) -> u32 {
        let _ = (bdf, offset);
        u32::MAX
    }
    /// Writes a PCI configuration register.
    fn pci_write(&mut self, bdf: Bdf, offset: u16, value: u32) {
        let _ = (bdf, offset, value);
    }
    /// Writes text to the console as it is: for result frames, which carry their own line end.
    fn console_write(&mut self, text: &str);
}

/// The console as a [`fmt::Write`], for the framer.
struct ConsoleOut<'a, M: Machine>(&'a mut M);

impl<M: Machine> fmt::Write for ConsoleOut<'_, M> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.console_write(s);
        Ok(())
    }
}

/// Why a process stopped running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Death {
    /// It called `exit`.
    Exit(u64),
    /// A CPU exception in user mode.
    Fault {
        /// Vector.
        vector: u8,
        /// Error code.
        error: u64,
        /// Faulting address (CR2 for page faults).
        addr: u64,
        /// Instruction pointer.
        rip: u64,
    },
    /// Its supervisor stopped it.
    Stopped,
}

/// The whole running system.
pub struct System<S: Spaces, M: Machine> {
    /// The process table, indexed by pid.
    pub procs: [Process; MAX_PROCESSES],
    /// The endpoints, indexed by id.
    pub endpoints: [Endpoint; MAX_ENDPOINTS],
    /// The manifest.
    pub spec: &'static SystemSpec,
    /// Address spaces.
    pub spaces: S,
    /// Hardware.
    pub machine: M,
    /// Ticks since the timer started.
    pub ticks: u64,
    /// The process on the CPU, if any.
    pub current: Option<u16>,
    /// The run's result frames after boot, when the command line gave a nonce and the boot
    /// path announced the manifest's report ids; `None` otherwise.
    pub framer: Option<crate::report::Framer>,
    /// Which of [`SystemSpec::reports`] have been reported (bit = index).
    pub reported: u64,
    /// Per interrupt line, the processes (a bit per pid) that were notified of its last
    /// interrupt and have not acknowledged it. The line stays masked until this is empty, so a
    /// line PCI devices share is re-armed only when every driver on it has looked at its device.
    pub irq_unacked: [u64; IRQ_LINES as usize],
}

// A bit per pid in `irq_unacked`.
const _: () = assert!(MAX_PROCESSES <= 64);

impl<S: Spaces, M: Machine> System<S, M> {
    /// The system described by `spec`, with nothing launched yet. Processes beyond
    /// [`MAX_PROCESSES`] and endpoints beyond [`MAX_ENDPOINTS`] are refused by the manifest
    /// checker; here they are ignored rather than trusted.
    pub fn new(spec: &'static SystemSpec, spaces: S, machine: M) -> Self {
        let mut endpoints = [Endpoint {
            generation: 1,
            receiver: None,
        }; MAX_ENDPOINTS];
        for (pid, p) in spec.processes.iter().enumerate().take(MAX_PROCESSES) {
            for cap in p.caps {
                if let CapSpec::Endpoint {
                    endpoint, rights, ..
                } = *cap
                    && rights & brainix_abi::rights::RECEIVE != 0
                    && let Some(e) = endpoints.get_mut(usize::from(endpoint))
                {
                    e.receiver = Some(pid as u16);
                }
            }
        }
        System {
            procs: [const { Process::new() }; MAX_PROCESSES],
            endpoints,
            spec,
            spaces,
            machine,
            ticks: 0,
            current: None,
            irq_unacked: [0; IRQ_LINES as usize],
            framer: None,
            reported: 0,
        }
    }

    /// Writes one check's verdict: a RESULT frame when the run has a framer (and END once every
    /// announced report id has reported), a log line for people otherwise. The frame starts on a
    /// fresh line, because a process may have left a line half written on the shared UART.
    pub fn report_result(&mut self, id: &str, pass: bool, detail: &str) {
        let outcome = if pass { Outcome::Pass } else { Outcome::Fail };
        let all = self.spec.reports.len().min(MAX_REPORTS);
        let done = self.reported.count_ones() as usize >= all;
        match self.framer.as_mut() {
            Some(framer) => {
                let out = &mut ConsoleOut(&mut self.machine);
                let _ = fmt::Write::write_char(out, '\n');
                let _ = framer.result(id, outcome, format_args!("{detail}"), out);
                if done {
                    let _ = framer.end(out);
                }
            }
            None => self.machine.log(format_args!(
                "check {id} {}: {detail}",
                if pass { "PASS" } else { "FAIL" }
            )),
        }
    }

    /// Number of declared processes.
    pub fn process_count(&self) -> usize {
        self.spec.processes.len().min(MAX_PROCESSES)
    }

    /// The manifest entry of `pid`.
    pub fn process_spec(&self, pid: u16) -> &'static ProcessSpec {
        &self.spec.processes[usize::from(pid)]
    }

    /// Launches every process the manifest starts at boot.
    pub fn boot(&mut self) {
        for pid in 0..self.process_count() as u16 {
            if self.process_spec(pid).start {
                self.launch(pid);
            }
        }
    }

    /// Builds `pid` from its image and makes it runnable. A failure leaves it dead and logged.
    pub fn launch(&mut self, pid: u16) -> bool {
        let spec = self.process_spec(pid);
        let launched = self
            .resolve_devices(spec)
            .and_then(|()| self.spaces.launch(pid, spec));
        match launched {
            Ok(l) => {
                let endpoints = self.endpoints;
                let platform = self.machine.platform();
                let p = &mut self.procs[usize::from(pid)];
                p.generation = p.generation.wrapping_add(1);
                p.caps = CapTable::from_specs(
                    spec.caps,
                    |e| endpoints.get(usize::from(e)).map_or(0, |e| e.generation),
                    |slot| l.dma.get(slot).copied().unwrap_or(0),
                    |m, part| platform.resolve(m, part).ok(),
                );
                p.regs = UserRegs {
                    rip: l.entry,
                    rsp: l.stack_top,
                    // Interrupts on (IF), reserved bit 1.
                    rflags: 0x202,
                    rdi: u64::from(pid),
                    rsi: u64::from(p.generation),
                    ..UserRegs::default()
                };
                p.state = State::Runnable;
                p.notify = 0;
                p.pages = l.pages;
                p.last_exit = u64::MAX;
                p.slice_left = TIME_SLICE_TICKS;
                let generation = p.generation;
                self.machine.log(format_args!(
                    "brainix: launched {} (pid {pid}, generation {generation}, {} pages, priority {})",
                    spec.name, l.pages, spec.priority
                ));
                true
            }
            Err(e) => {
                self.procs[usize::from(pid)].state = State::Dead;
                self.machine.log(format_args!(
                    "brainix: cannot launch {} (pid {pid}): {e}",
                    spec.name
                ));
                false
            }
        }
    }

    /// Ends `pid`: frees its memory, fails everyone waiting on it with [`Error::PeerDead`] so
    /// nobody hangs, and tells its supervisors.
    pub fn kill(&mut self, pid: u16, death: Death) {
        let name = self.process_spec(pid).name;
        match death {
            Death::Exit(code) => self.machine.log(format_args!(
                "brainix: {name} (pid {pid}) exited with code {code}"
            )),
            Death::Fault {
                vector,
                error,
                addr,
                rip,
            } => self.machine.log(format_args!(
                "brainix: FAULT: {name} (pid {pid}) killed: {} (vector {vector}) error={error:#x} \
                 addr={addr:#x} rip={rip:#x}",
                crate::cpu::exception_name(vector)
            )),
            Death::Stopped => self
                .machine
                .log(format_args!("brainix: {name} (pid {pid}) stopped")),
        }
        let was_alive = self.procs[usize::from(pid)].state.is_alive();
        {
            let p = &mut self.procs[usize::from(pid)];
            p.state = match death {
                Death::Stopped => State::Stopped,
                _ => State::Dead,
            };
            p.last_exit = match death {
                Death::Exit(code) => code,
                Death::Fault { vector, .. } => 0x100 + u64::from(vector),
                Death::Stopped => p.last_exit,
            };
            if let Death::Fault { addr, .. } = death {
                p.last_fault_addr = addr;
            }
            p.notify = 0;
            p.pages = 0;
        }
        if self.current == Some(pid) {
            self.current = None;
        }
        if was_alive {
            self.quiesce_devices_of(pid);
            self.spaces.teardown(pid);
        }
        self.fail_waiters_of(pid);
        self.forget_irq_acks_of(pid);
        for other in 0..self.process_count() as u16 {
            let controls = self.procs[usize::from(other)]
                .caps
                .iter()
                .any(|(_, c)| c.object == crate::cap::Object::ProcessControl { pid });
            let observes = self.procs[usize::from(other)]
                .caps
                .iter()
                .any(|(_, c)| c.object == crate::cap::Object::AuditRead);
            if (controls || observes) && other != pid {
                self.notify(other, NOTIFY_CHILD_DIED);
            }
        }
    }

    /// Every process blocked on `pid` (calling it, sending to an endpoint it receives on, or
    /// awaiting its reply) gets [`Error::PeerDead`].
    fn fail_waiters_of(&mut self, pid: u16) {
        for other in 0..self.process_count() {
            let waits = match self.procs[other].state {
                State::AwaitingReply { server, .. } => server == pid,
                State::Sending { ep, .. } => self.endpoints[usize::from(ep)].receiver == Some(pid),
                _ => false,
            };
            if waits {
                self.wake_with(other as u16, Err(Error::PeerDead));
            }
        }
    }

    /// Stops `pid` (if running) and launches it again with a new generation.
    pub fn restart(&mut self, pid: u16) -> bool {
        if self.procs[usize::from(pid)].state.is_alive() {
            self.kill(pid, Death::Stopped);
        }
        self.launch(pid)
    }

    /// Makes `pid` runnable with a system call's result: `rax` = 0 and up to four values, or
    /// the error code.
    pub fn wake_with(&mut self, pid: u16, result: Result<[u64; 4], Error>) {
        let p = &mut self.procs[usize::from(pid)];
        set_result(&mut p.regs, result);
        p.state = State::Runnable;
    }

    /// Sets notification bits on `pid`; a process blocked in `recv` gets them at once.
    pub fn notify(&mut self, pid: u16, bits: u64) {
        let p = &mut self.procs[usize::from(pid)];
        if !p.state.is_alive() {
            return;
        }
        p.notify |= bits;
        if let State::Receiving { buf, .. } = p.state {
            let result = self.take_notification(pid, buf);
            self.wake_with(pid, result);
        }
    }

    /// An interrupt on `line` (the arch layer masked it): notify every live holder of a
    /// capability for it. The line stays masked until each of them has acknowledged it
    /// ([`System::acknowledge_irq`]); with no live holder it stays masked until one starts and
    /// acknowledges.
    pub fn irq(&mut self, line: u8) {
        let mut notified = 0u64;
        for pid in 0..self.process_count() as u16 {
            if !self.procs[usize::from(pid)].state.is_alive() {
                continue;
            }
            let bits = self.irq_bits(pid, line);
            if bits != 0 {
                notified |= 1 << pid;
                self.notify(pid, bits);
            }
        }
        if let Some(u) = self.irq_unacked.get_mut(usize::from(line)) {
            *u = notified;
        }
    }

    /// The notification bits `pid` holds for `line`.
    fn irq_bits(&self, pid: u16, line: u8) -> u64 {
        self.procs[usize::from(pid)]
            .caps
            .iter()
            .filter_map(|(_, c)| match c.object {
                crate::cap::Object::Irq { line: l, bit } if l == line => Some(1u64 << bit),
                _ => None,
            })
            .fold(0, |a, b| a | b)
    }

    /// `pid` has handled `line`: once nobody notified of its last interrupt still owes an
    /// acknowledgement, the line is unmasked. A holder acknowledges once when it starts, which
    /// arms a line no interrupt has come on yet, or one left masked by a dead predecessor.
    pub fn acknowledge_irq(&mut self, pid: u16, line: u8) {
        let Some(unacked) = self.irq_unacked.get_mut(usize::from(line)) else {
            return;
        };
        *unacked &= !(1u64 << pid);
        if *unacked == 0 {
            self.machine.irq_unmask(line);
        }
    }

    /// A dead process owes no acknowledgement; a line only it still owed one on is unmasked if
    /// someone else alive holds it.
    fn forget_irq_acks_of(&mut self, pid: u16) {
        for line in 0..IRQ_LINES {
            let u = &mut self.irq_unacked[usize::from(line)];
            if *u & (1 << pid) == 0 {
                continue;
            }
            *u &= !(1u64 << pid);
            if *u == 0
                && (0..self.process_count() as u16).any(|p| {
                    self.procs[usize::from(p)].state.is_alive() && self.irq_bits(p, line) != 0
                })
            {
                self.machine.irq_unmask(line);
            }
        }
    }

    /// The PCI functions `pid`'s manifest binds to it stop mastering the bus and raising INTx:
    /// the frames of its DMA pool go back to the pool, and its device must not write them.
    fn quiesce_devices_of(&mut self, pid: u16) {
        let spec = self.process_spec(pid);
        let mut done: [Option<Bdf>; crate::cap::CAPS_PER_PROCESS] =
            [None; crate::cap::CAPS_PER_PROCESS];
        for (i, cap) in spec.caps.iter().enumerate().take(done.len()) {
            let CapSpec::Device { pci, .. } = cap else {
                continue;
            };
            let Some((_, f)) = self.machine.platform().find(pci) else {
                continue;
            };
            let bdf = f.bdf;
            if done.contains(&Some(bdf)) {
                continue;
            }
            done[i] = Some(bdf);
            let command = self.machine.pci_read(bdf, reg::COMMAND) & 0xffff;
            let quiet = (command & !reg::CMD_BUS_MASTER) | reg::CMD_INTX_DISABLE;
            self.machine.pci_write(bdf, reg::COMMAND, quiet);
            self.machine.log(format_args!(
                "brainix: pci {bdf}: bus mastering and INTx off ({} no longer runs)",
                spec.name
            ));
        }
    }

    /// Checks that every device capability of `spec` binds on this machine; the first that does
    /// not is the launch error.
    pub fn resolve_devices(&self, spec: &ProcessSpec) -> Result<(), LaunchError> {
        for (slot, cap) in spec.caps.iter().enumerate() {
            if let CapSpec::Device { pci, part } = cap {
                self.machine
                    .platform()
                    .resolve(pci, part)
                    .map_err(|error| LaunchError::Device { slot, error })?;
            }
        }
        Ok(())
    }

    /// A CPU exception in user mode: the process is killed and reported; nothing else stops.
    pub fn fault(&mut self, pid: u16, vector: u8, error: u64, addr: u64) {
        let rip = self.procs[usize::from(pid)].regs.rip;
        self.kill(
            pid,
            Death::Fault {
                vector,
                error,
                addr,
                rip,
            },
        );
    }
}

/// Writes a system call's result into saved registers.
pub fn set_result(regs: &mut UserRegs, result: Result<[u64; 4], Error>) {
    match result {
        Ok([a, b, c, d]) => {
            regs.rax = 0;
            regs.rdi = a;
            regs.rsi = b;
            regs.rdx = c;
            regs.r10 = d;
        }
        Err(e) => regs.rax = e as u64,
    }
}

/// A system in host memory for the tests of this module, [`crate::ipc`], [`crate::sched`] and
/// [`crate::syscall`]: each process gets 64 KiB of writable user memory at [`fixture::MEM`] and
/// one read-only page at [`fixture::RO`]; everything else is unmapped.
#[cfg(test)]
#[allow(missing_docs)]
pub mod fixture {
    use super::*;
    use crate::manifest::CapSpec;
    use brainix_abi::{Handle, Message, Syscall};

    /// Start of each process's writable memory.
    pub const MEM: u64 = 0x10_0000;
    /// Size of it.
    pub const MEM_LEN: u64 = 0x1_0000;
    /// A read-only page.
    pub const RO: u64 = 0x20_0000;

    /// Fake address spaces.
    #[derive(Default)]
    pub struct FakeSpaces {
        pub mem: Vec<Vec<u8>>,
        pub launched: Vec<u16>,
        pub torn_down: Vec<u16>,
    }

    impl Spaces for FakeSpaces {
        fn read(&self, pid: u16, addr: u64, buf: &mut [u8]) -> Result<(), Error> {
            let end = addr
                .checked_add(buf.len() as u64)
                .ok_or(Error::BadAddress)?;
            if addr >= RO && end <= RO + 4096 {
                buf.fill(0x5a);
                return Ok(());
            }
            if addr < MEM || end > MEM + MEM_LEN {
                return Err(Error::BadAddress);
            }
            let m = &self.mem[usize::from(pid)];
            buf.copy_from_slice(&m[(addr - MEM) as usize..(end - MEM) as usize]);
            Ok(())
        }
        fn write(&mut self, pid: u16, addr: u64, data: &[u8]) -> Result<(), Error> {
            let end = addr
                .checked_add(data.len() as u64)
                .ok_or(Error::BadAddress)?;
            if addr < MEM || end > MEM + MEM_LEN {
                return Err(Error::BadAddress);
            }
            let m = &mut self.mem[usize::from(pid)];
            m[(addr - MEM) as usize..(end - MEM) as usize].copy_from_slice(data);
            Ok(())
        }
        fn check(&self, _: u16, addr: u64, len: u64, write: bool) -> Result<(), Error> {
            let end = addr.checked_add(len).ok_or(Error::BadAddress)?;
            let ro = addr >= RO && end <= RO + 4096;
            let rw = addr >= MEM && end <= MEM + MEM_LEN;
            if rw || (ro && !write) {
                Ok(())
            } else {
                Err(Error::BadAddress)
            }
        }
        fn launch(&mut self, pid: u16, _: &ProcessSpec) -> Result<Launch, LaunchError> {
            while self.mem.len() <= usize::from(pid) {
                self.mem.push(vec![0; MEM_LEN as usize]);
            }
            self.mem[usize::from(pid)].fill(0);
            self.launched.push(pid);
            Ok(Launch {
                entry: 0x40_0000,
                stack_top: MEM + MEM_LEN,
                pages: 3,
                dma: [0; crate::cap::CAPS_PER_PROCESS],
            })
        }
        fn teardown(&mut self, pid: u16) {
            self.torn_down.push(pid);
        }
        fn audit_tables(&self, pid: u16) -> Option<Result<u64, (u64, u64)>> {
            (self.launched.contains(&pid) && !self.torn_down.contains(&pid)).then_some(Ok(3))
        }
        fn audit_sharing(&self) -> Result<u64, (u64, u16, u16)> {
            Ok(self.launched.len() as u64)
        }
    }

    /// Fake hardware: records log lines, port writes and unmasks; a platform and its
    /// configuration space for the device tests.
    #[derive(Default)]
    pub struct FakeMachine {
        pub log: Vec<String>,
        pub ports: Vec<(u16, u8)>,
        pub unmasked: Vec<u8>,
        pub console: String,
        pub platform: Platform,
        pub config: crate::platform::pci::tests::FakeConfig,
    }

    impl Machine for FakeMachine {
        fn log(&mut self, line: fmt::Arguments<'_>) {
            self.log.push(line.to_string());
        }
        fn port_in(&mut self, port: u16) -> u8 {
            port as u8
        }
        fn port_out(&mut self, port: u16, value: u8) {
            self.ports.push((port, value));
        }
        fn irq_unmask(&mut self, line: u8) {
            self.unmasked.push(line);
        }
        fn tsc(&self) -> u64 {
            12345
        }
        fn platform(&self) -> &Platform {
            &self.platform
        }
        fn pci_read(&mut self, bdf: Bdf, offset: u16) -> u32 {
            use crate::platform::pci::ConfigSpace;
            self.config.read32(bdf, offset)
        }
        fn pci_write(&mut self, bdf: Bdf, offset: u16, value: u32) {
            use crate::platform::pci::ConfigSpace;
            self.config.write32(bdf, offset, value)
        }
        fn console_write(&mut self, text: &str) {
            self.console.push_str(text);
        }
    }

    /// The test system.
    pub type TestSystem = System<FakeSpaces, FakeMachine>;

    /// Builds and boots a system from (name, priority, caps) triples, all started.
    pub fn system(procs: &[(&'static str, u8, Vec<CapSpec>)], endpoints: u16) -> TestSystem {
        system_on(FakeMachine::default(), procs, endpoints)
    }

    /// As [`system`], on the given hardware.
    pub fn system_on(
        machine: FakeMachine,
        procs: &[(&'static str, u8, Vec<CapSpec>)],
        endpoints: u16,
    ) -> TestSystem {
        let processes: Vec<ProcessSpec> = procs
            .iter()
            .map(|(name, priority, caps)| ProcessSpec {
                name,
                image: &[],
                priority: *priority,
                memory_pages: 16,
                stack_pages: 1,
                start: true,
                restartable: false,
                caps: Box::leak(caps.clone().into_boxed_slice()),
            })
            .collect();
        let spec = Box::leak(Box::new(SystemSpec {
            name: "test",
            processes: Box::leak(processes.into_boxed_slice()),
            endpoints,
            reports: &["auth.one", "auth.two"],
        }));
        let mut s = System::new(spec, FakeSpaces::default(), machine);
        s.boot();
        s
    }

    /// Handle of slot `i` at launch.
    pub fn h(i: u16) -> u64 {
        Handle::new(i, crate::cap::FIRST_GENERATION).0
    }

    /// Makes `pid` issue `call` with `args` (rdi, rsi, rdx, r10, r8) as if trapping in.
    pub fn call(s: &mut TestSystem, pid: u16, call: Syscall, args: [u64; 5]) {
        let r = &mut s.procs[usize::from(pid)].regs;
        r.rax = call as u64;
        [r.rdi, r.rsi, r.rdx, r.r10, r.r8] = args;
        s.syscall(pid, crate::syscall::MemoryStats::default());
    }

    /// `pid`'s result: `Ok(rdi..r10)` or the error, once it is runnable; `None` while blocked.
    pub fn result(s: &TestSystem, pid: u16) -> Option<Result<[u64; 4], Error>> {
        let p = &s.procs[usize::from(pid)];
        if p.state != State::Runnable {
            return None;
        }
        let r = p.regs;
        Some(match r.rax {
            0 => Ok([r.rdi, r.rsi, r.rdx, r.r10]),
            e => Err(Error::from_code(e).expect("an error code")),
        })
    }

    /// Writes a message into `pid`'s memory at `addr`.
    pub fn put_message(s: &mut TestSystem, pid: u16, addr: u64, label: u64, payload: &[u8]) {
        let mut m = Message::new(label);
        m.len = payload.len() as u64;
        m.payload[..payload.len()].copy_from_slice(payload);
        m.regs[0] = 0x1111;
        let bytes: Vec<u8> = [m.label, m.regs[0], m.regs[1], m.regs[2], m.regs[3], m.len]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .chain(m.payload.iter().copied())
            .collect();
        s.spaces.write(pid, addr, &bytes).unwrap();
    }

    /// Reads back (label, regs[0], payload) of a message in `pid`'s memory.
    pub fn get_message(s: &TestSystem, pid: u16, addr: u64) -> (u64, u64, Vec<u8>) {
        let mut raw = vec![0u8; core::mem::size_of::<Message>()];
        s.spaces.read(pid, addr, &mut raw).unwrap();
        let w = |i: usize| u64::from_le_bytes(raw[i * 8..i * 8 + 8].try_into().unwrap());
        let len = w(5) as usize;
        (w(0), w(1), raw[48..48 + len].to_vec())
    }
}
