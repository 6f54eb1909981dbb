//! System-call dispatch: one function reads the call and its arguments from the caller's saved
//! registers, runs it, and writes the result back. Every argument is untrusted; every failure is
//! an [`Error`] value returned to the caller, never a kernel panic.

use crate::cap::Object;
use crate::platform::pci::{Bar, Bdf, reg};
use crate::system::{CallArgs, Death, Machine, Spaces, State, System, TICK_HZ};
use brainix_abi::{
    CapInfo, CapType, DeviceInfo, Error, Handle, MemoryInfo, ProcessInfo, Syscall, rights,
};

/// Longest line [`Syscall::Log`] copies (an ABI constant).
pub const MAX_LOG: usize = brainix_abi::MAX_LOG_LINE;

/// What the arch layer reports about memory for [`Syscall::AuditMemory`].
#[derive(Clone, Copy, Debug, Default)]
pub struct MemoryStats {
    /// Frames managed.
    pub frames_total: u64,
    /// Frames free.
    pub frames_free: u64,
    /// Kernel page-table pages.
    pub kernel_pt_pages: u64,
}

/// Reinterprets a plain `repr(C)` struct of `u64` fields as bytes for copying out.
fn bytes_of<T: Copy>(value: &T) -> &[u8] {
    // SAFETY: only used with the ABI's `repr(C)` structs made entirely of `u64` and byte
    // arrays, which have no padding and no invalid bit patterns.
    unsafe {
        core::slice::from_raw_parts((value as *const T).cast::<u8>(), core::mem::size_of::<T>())
    }
}

impl<S: Spaces, M: Machine> System<S, M> {
    /// Runs the system call process `pid` made; its registers were saved by the entry path.
    pub fn syscall(&mut self, pid: u16, memory: MemoryStats) {
        let r = self.procs[usize::from(pid)].regs;
        let generation = self.procs[usize::from(pid)].generation;
        let (a0, a1, a2, a3, a4) = (r.rdi, r.rsi, r.rdx, r.r10, r.r8);
        let Some(call) = Syscall::from_number(r.rax) else {
            self.wake_with(pid, Err(Error::NoSuchCall));
            return;
        };
        let result: Option<Result<[u64; 4], Error>> = match call {
            Syscall::Exit => {
                self.kill(pid, Death::Exit(a0));
                return;
            }
            Syscall::Yield => {
                self.yield_now(pid);
                Some(Ok([0; 4]))
            }
            Syscall::NullSyscall => Some(Ok([0; 4])),
            Syscall::Uptime => Some(Ok([self.ticks * 1000 / TICK_HZ, self.machine.tsc(), 0, 0])),
            Syscall::Send => self.send(pid, a0, a1, None),
            Syscall::Call => self.send(
                pid,
                a0,
                a1,
                Some(CallArgs {
                    leases: a2,
                    lease_count: a3,
                    reply: a4,
                }),
            ),
            Syscall::Recv => self.recv(pid, a0, a1, a2),
            Syscall::Reply => Some(self.reply(pid, a0, a1)),
            Syscall::ReplyRecv => match self.reply(pid, a0, a1) {
                Ok(_) => self.recv(pid, a2, a3, a4),
                Err(e) => Some(Err(e)),
            },
            Syscall::LeaseRead => Some(self.lease_copy(pid, [a0, a1, a2, a3, a4], true)),
            Syscall::LeaseWrite => Some(self.lease_copy(pid, [a0, a1, a2, a3, a4], false)),
            Syscall::CapInfo => Some(self.cap_info(pid, a0)),
            Syscall::CapDrop => Some(
                self.procs[usize::from(pid)]
                    .caps
                    .drop_slot(Handle(a0))
                    .map(|()| [0; 4]),
            ),
            Syscall::EndpointRevoke => Some(self.revoke(pid, a0)),
            Syscall::IoIn => Some(self.io(pid, a0, a1, None)),
            Syscall::IoOut => Some(self.io(pid, a0, a1, Some(a2 as u8))),
            Syscall::IrqAck => Some(self.irq_ack(pid, a0)),
            Syscall::ProcessStop | Syscall::ProcessRestart => {
                Some(self.control(pid, a0, call == Syscall::ProcessRestart))
            }
            Syscall::AuditProcess => Some(self.audit_process(pid, a0, a1, a2)),
            Syscall::AuditCap => Some(self.audit_cap(pid, a0, a1, a2, a3)),
            Syscall::AuditMemory => Some(self.audit_memory(pid, a0, a1, memory)),
            Syscall::Log => Some(self.log(pid, a0, a1, a2)),
            Syscall::RegionInfo => Some(self.region_info(pid, a0)),
            Syscall::Report => Some(self.report(pid, [a0, a1, a2, a3])),
            Syscall::AuditTables => Some(self.audit_tables(pid, a0, a1)),
            Syscall::AuditManifestCap => Some(self.audit_manifest_cap(pid, a0, a1, a2, a3)),
            Syscall::AuditSharing => {
                Some(
                    self.audit(pid, a0)
                        .map(|()| match self.spaces.audit_sharing() {
                            Ok(pages) => [pages, 0, 0, 0],
                            Err((page, a, b)) => [0, page, u64::from(a), u64::from(b)],
                        }),
                )
            }
            Syscall::PciConfigRead => Some(self.pci_config(pid, a0, a1, None)),
            Syscall::PciConfigWrite => Some(self.pci_config(pid, a0, a1, Some(a2))),
            Syscall::AuditDevice => Some(self.audit_device(pid, a0, a1, a2)),
        };
        // A process killed or restarted by its own call has no result to receive, and one
        // that blocked gets its result when it is woken.
        let p = &self.procs[usize::from(pid)];
        if let Some(result) = result
            && p.state == State::Runnable
            && p.generation == generation
        {
            self.wake_with(pid, result);
        }
    }

    fn cap_info(&self, pid: u16, h: u64) -> Result<[u64; 4], Error> {
        let caps = &self.procs[usize::from(pid)].caps;
        // Any type will do, so check the handle as the type its slot holds.
        let slot = Handle(h).slot().ok_or(Error::BadHandle)?;
        let kind = caps
            .slot(usize::from(slot))
            .and_then(|(cap, _)| cap)
            .map_or(CapType::Endpoint, |c| c.object.kind());
        let cap = caps.lookup(Handle(h), kind, 0)?;
        let (a, _) = describe(&cap.object);
        Ok([cap.object.kind() as u64, cap.rights, a, 0])
    }

    fn io(&mut self, pid: u16, h: u64, port: u64, out: Option<u8>) -> Result<[u64; 4], Error> {
        let need = if out.is_some() {
            rights::WRITE
        } else {
            rights::READ
        };
        let cap = self.procs[usize::from(pid)]
            .caps
            .lookup(Handle(h), CapType::IoPorts, need)?;
        let Object::IoPorts { base, count } = cap.object else {
            return Err(Error::WrongType);
        };
        let port = u16::try_from(port).map_err(|_| Error::OutOfRange)?;
        if port < base || u32::from(port) >= u32::from(base) + u32::from(count) {
            return Err(Error::OutOfRange);
        }
        match out {
            Some(v) => {
                self.machine.port_out(port, v);
                Ok([0; 4])
            }
            None => Ok([u64::from(self.machine.port_in(port)), 0, 0, 0]),
        }
    }

    fn region_info(&self, pid: u16, h: u64) -> Result<[u64; 4], Error> {
        let caps = &self.procs[usize::from(pid)].caps;
        let handle = Handle(h);
        let cap = caps
            .lookup(handle, CapType::Mmio, 0)
            .or_else(|_| caps.lookup(handle, CapType::DmaPool, 0))?;
        let (phys, pages) = match cap.object {
            Object::Mmio { phys, pages } | Object::DmaPool { phys, pages } => (phys, pages),
            _ => return Err(Error::WrongType),
        };
        let slot = handle.slot().ok_or(Error::BadHandle)?;
        Ok([
            brainix_abi::layout::region(slot),
            phys,
            u64::from(pages) * 4096,
            0,
        ])
    }

    fn irq_ack(&mut self, pid: u16, h: u64) -> Result<[u64; 4], Error> {
        let cap = self.procs[usize::from(pid)]
            .caps
            .lookup(Handle(h), CapType::Irq, 0)?;
        let Object::Irq { line, .. } = cap.object else {
            return Err(Error::WrongType);
        };
        self.acknowledge_irq(pid, line);
        Ok([0; 4])
    }

    /// `pci_config_read` (`write` = None) and `pci_config_write`.
    fn pci_config(
        &mut self,
        pid: u16,
        h: u64,
        offset: u64,
        write: Option<u64>,
    ) -> Result<[u64; 4], Error> {
        let need = if write.is_some() {
            rights::WRITE
        } else {
            rights::READ
        };
        let cap =
            self.procs[usize::from(pid)]
                .caps
                .lookup(Handle(h), CapType::PciFunction, need)?;
        let Object::PciFunction { bdf } = cap.object else {
            return Err(Error::WrongType);
        };
        let bdf = Bdf(bdf);
        let offset = u16::try_from(offset)
            .ok()
            .filter(|o| o % 4 == 0 && *o < 256)
            .ok_or(Error::OutOfRange)?;
        let Some(value) = write else {
            return Ok([u64::from(self.machine.pci_read(bdf, offset)), 0, 0, 0]);
        };
        // INV-AUTH: of the whole configuration space, a driver may change only whether its
        // device decodes memory, masters the bus and raises INTx. BARs, bridges' windows and
        // the rest stay as discovery found them.
        if offset != reg::COMMAND {
            return Err(Error::MissingRight);
        }
        let allowed = reg::CMD_MEMORY | reg::CMD_BUS_MASTER | reg::CMD_INTX_DISABLE;
        let command = self.machine.pci_read(bdf, reg::COMMAND) & 0xffff;
        let new = (command & !allowed) | (value as u32 & allowed);
        // The status half is written as zero: its bits are write-one-to-clear.
        self.machine.pci_write(bdf, reg::COMMAND, new);
        Ok([0; 4])
    }

    fn audit_device(&mut self, pid: u16, h: u64, index: u64, buf: u64) -> Result<[u64; 4], Error> {
        self.audit(pid, h)?;
        let platform = self.machine.platform();
        let f = *usize::try_from(index)
            .ok()
            .and_then(|i| platform.pci.functions().get(i))
            .ok_or(Error::OutOfRange)?;
        let mut info = DeviceInfo {
            bdf: u64::from(f.bdf.0),
            vendor: u64::from(f.vendor),
            device: u64::from(f.device),
            class: u64::from(u32::from_be_bytes(f.class)),
            irq_line: u64::from(f.irq_line),
            irq_pin: u64::from(f.irq_pin),
            holder: u64::MAX,
            ..DeviceInfo::default()
        };
        for (i, bar) in f.bars.iter().enumerate() {
            (info.bar_kind[i], info.bar_base[i], info.bar_size[i]) = match *bar {
                Bar::Absent => (DeviceInfo::BAR_ABSENT, 0, 0),
                Bar::Memory {
                    base, size, wide, ..
                } => (
                    if wide {
                        DeviceInfo::BAR_MEM64
                    } else {
                        DeviceInfo::BAR_MEM32
                    },
                    base,
                    size,
                ),
                Bar::Io { base, size } => (DeviceInfo::BAR_IO, u64::from(base), u64::from(size)),
                Bar::Invalid => (DeviceInfo::BAR_INVALID, 0, 0),
            };
        }
        let holder = self.spec.processes.iter().position(|p| {
            p.caps.iter().any(|c| match c {
                crate::manifest::CapSpec::Device { pci, .. } => platform
                    .find(pci)
                    .is_some_and(|(_, found)| found.bdf == f.bdf),
                _ => false,
            })
        });
        if let Some(holder) = holder {
            info.holder = holder as u64;
        }
        self.write_record(pid, buf, &info)
    }

    fn control(&mut self, pid: u16, h: u64, restart: bool) -> Result<[u64; 4], Error> {
        let cap = self.procs[usize::from(pid)].caps.lookup(
            Handle(h),
            CapType::ProcessControl,
            rights::CONTROL,
        )?;
        let Object::ProcessControl { pid: target } = cap.object else {
            return Err(Error::WrongType);
        };
        if usize::from(target) >= self.process_count() {
            return Err(Error::OutOfRange);
        }
        if restart {
            if !self.restart(target) {
                return Err(Error::OutOfRange);
            }
        } else if self.procs[usize::from(target)].state.is_alive() {
            self.kill(target, Death::Stopped);
        }
        Ok([0; 4])
    }

    fn audit(&self, pid: u16, h: u64) -> Result<(), Error> {
        self.procs[usize::from(pid)]
            .caps
            .lookup(Handle(h), CapType::AuditRead, rights::READ)
            .map(|_| ())
    }

    /// Checks the audit capability and that `target` names a declared process.
    fn audited_target(&self, pid: u16, h: u64, target: u64) -> Result<usize, Error> {
        self.audit(pid, h)?;
        usize::try_from(target)
            .ok()
            .filter(|&t| t < self.process_count())
            .ok_or(Error::OutOfRange)
    }

    /// Copies a record out to the caller.
    fn write_record<T: Copy>(&mut self, pid: u16, buf: u64, record: &T) -> Result<[u64; 4], Error> {
        self.spaces.write(pid, buf, bytes_of(record))?;
        Ok([0; 4])
    }

    fn audit_process(
        &mut self,
        pid: u16,
        h: u64,
        target: u64,
        buf: u64,
    ) -> Result<[u64; 4], Error> {
        let t = self.audited_target(pid, h, target)?;
        let spec = &self.spec.processes[t];
        let p = &self.procs[t];
        let mut info = ProcessInfo {
            pid: t as u64,
            generation: u64::from(p.generation),
            state: p.state.abi() as u64,
            priority: u64::from(spec.priority),
            pages_used: p.pages,
            pages_budget: u64::from(spec.memory_pages),
            last_exit: p.last_exit,
            last_fault_addr: p.last_fault_addr,
            flags: if spec.restartable {
                ProcessInfo::RESTARTABLE
            } else {
                0
            },
            name_len: 0,
            name: [0; 32],
        };
        let name = spec.name.as_bytes();
        let n = name.len().min(32);
        info.name[..n].copy_from_slice(&name[..n]);
        info.name_len = n as u64;
        self.write_record(pid, buf, &info)
    }

    fn audit_cap(
        &mut self,
        pid: u16,
        h: u64,
        target: u64,
        slot: u64,
        buf: u64,
    ) -> Result<[u64; 4], Error> {
        let t = self.audited_target(pid, h, target)?;
        let (cap, generation) = usize::try_from(slot)
            .ok()
            .and_then(|s| self.procs[t].caps.slot(s))
            .ok_or(Error::OutOfRange)?;
        let info = cap_info(cap.as_ref(), generation);
        self.write_record(pid, buf, &info)
    }

    fn audit_tables(&mut self, pid: u16, h: u64, target: u64) -> Result<[u64; 4], Error> {
        let t = self.audited_target(pid, h, target)? as u16;
        match self.spaces.audit_tables(t) {
            None => Err(Error::PeerDead),
            Some(Ok(pages)) => Ok([pages, brainix_abi::table_audit::CLEAN, 0, 0]),
            Some(Err((code, addr))) => Ok([0, code, addr, 0]),
        }
    }

    fn audit_manifest_cap(
        &mut self,
        pid: u16,
        h: u64,
        target: u64,
        slot: u64,
        buf: u64,
    ) -> Result<[u64; 4], Error> {
        let t = self.audited_target(pid, h, target)?;
        let slot = usize::try_from(slot)
            .ok()
            .filter(|&s| s < crate::cap::CAPS_PER_PROCESS)
            .ok_or(Error::OutOfRange)?;
        let info = match self.spec.processes[t].caps.get(slot) {
            Some(spec) => {
                // Generation and DMA address are decided at launch, not by the manifest; a
                // device capability is what it binds to on this machine.
                let cap = match *spec {
                    crate::manifest::CapSpec::Device { pci, part } => {
                        match self.machine.platform().resolve(&pci, &part) {
                            Ok(bound) => crate::cap::Cap::bound(bound),
                            Err(_) => crate::cap::Cap::from_spec(spec, 0, 0),
                        }
                    }
                    _ => crate::cap::Cap::from_spec(spec, 0, 0),
                };
                cap_info(Some(&cap), 0)
            }
            None => CapInfo::default(),
        };
        self.write_record(pid, buf, &info)
    }

    fn audit_memory(
        &mut self,
        pid: u16,
        h: u64,
        buf: u64,
        memory: MemoryStats,
    ) -> Result<[u64; 4], Error> {
        self.audit(pid, h)?;
        let info = MemoryInfo {
            frames_total: memory.frames_total,
            frames_free: memory.frames_free,
            kernel_pt_pages: memory.kernel_pt_pages,
            processes: self.process_count() as u64,
            processes_capacity: crate::system::MAX_PROCESSES as u64,
            endpoints: u64::from(self.spec.endpoints),
            endpoints_capacity: crate::system::MAX_ENDPOINTS as u64,
        };
        self.write_record(pid, buf, &info)
    }

    fn log(&mut self, pid: u16, h: u64, buf: u64, len: u64) -> Result<[u64; 4], Error> {
        self.procs[usize::from(pid)]
            .caps
            .lookup(Handle(h), CapType::Log, rights::WRITE)?;
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= MAX_LOG)
            .ok_or(Error::PayloadTooLarge)?;
        let mut text = [0u8; MAX_LOG];
        self.spaces.read(pid, buf, &mut text[..len])?;
        // Printable ASCII only: a process cannot write escape sequences or fake a second line.
        for b in &mut text[..len] {
            if !(0x20..0x7f).contains(b) {
                *b = b'?';
            }
        }
        let line = core::str::from_utf8(&text[..len]).unwrap_or("?");
        let name = self.process_spec(pid).name;
        self.machine.log(format_args!("[{name}] {line}"));
        Ok([0; 4])
    }

    /// `report(report, outcome, buf, len)`. Every argument is checked before anything is
    /// written, and the reported-bit is set before the frame goes out, so a check reports at
    /// most once per boot whatever its holder does (a restarted process included).
    fn report(&mut self, pid: u16, [h, outcome, buf, len]: [u64; 4]) -> Result<[u64; 4], Error> {
        let cap =
            self.procs[usize::from(pid)]
                .caps
                .lookup(Handle(h), CapType::Report, rights::WRITE)?;
        let Object::Report { index } = cap.object else {
            return Err(Error::WrongType);
        };
        let pass = match outcome {
            0 => false,
            1 => true,
            _ => return Err(Error::OutOfRange),
        };
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= brainix_abi::MAX_REPORT_DETAIL)
            .ok_or(Error::PayloadTooLarge)?;
        let mut detail = [0u8; brainix_abi::MAX_REPORT_DETAIL];
        self.spaces.read(pid, buf, &mut detail[..len])?;
        // The manifest checker keeps indexes inside both; a table that disagrees is refused here
        // rather than trusted.
        let id = self
            .spec
            .reports
            .get(usize::from(index))
            .filter(|_| usize::from(index) < crate::manifest::MAX_REPORTS)
            .ok_or(Error::BadHandle)?;
        let bit = 1u64 << index;
        if self.reported & bit != 0 {
            return Err(Error::AlreadyReported);
        }
        self.reported |= bit;
        // The framer makes every byte printable and drops `*`; text that is not UTF-8 is shown
        // as `?` rather than refused, so a verdict is never lost to its detail.
        let text = core::str::from_utf8(&detail[..len]).unwrap_or("?");
        self.report_result(id, pass, text);
        Ok([0; 4])
    }
}

/// A slot as the audit calls report it: empty (`kind` 0) or the capability's type, rights and
/// the two numbers [`describe`] gives, with the slot's generation.
fn cap_info(cap: Option<&crate::cap::Cap>, generation: u32) -> CapInfo {
    let generation = u64::from(generation);
    match cap {
        Some(c) => {
            let (a, b) = describe(&c.object);
            CapInfo {
                kind: c.object.kind() as u64,
                rights: c.rights,
                a,
                b,
                generation,
            }
        }
        None => CapInfo {
            generation,
            ..CapInfo::default()
        },
    }
}

/// The two numbers an audit reports for an object.
fn describe(object: &Object) -> (u64, u64) {
    match *object {
        Object::Endpoint { id, badge, .. } => (badge, u64::from(id)),
        Object::Irq { line, bit } => (u64::from(line), u64::from(bit)),
        Object::IoPorts { base, count } => (u64::from(base), u64::from(count)),
        Object::Mmio { phys, pages } | Object::DmaPool { phys, pages } => (phys, u64::from(pages)),
        Object::ProcessControl { pid } => (u64::from(pid), 0),
        Object::AuditRead | Object::Log => (0, 0),
        Object::Report { index } => (u64::from(index), 0),
        Object::PciFunction { bdf } => (u64::from(bdf), 0),
    }
}

#[cfg(test)]
mod tests {
    use crate::manifest::CapSpec;
    use crate::report::{Framer, crc32};
    use crate::system::Spaces;
    use crate::system::fixture::*;
    use brainix_abi::{Error, MAX_REPORT_DETAIL, Syscall};

    const NONCE: &str = "0123456789abcdef0123456789abcdef";

    /// `reporter` holds report index 0 (`auth.one`) in slot 0 and a log capability in slot 1;
    /// `other` holds index 1 (`auth.two`).
    fn reporters(framed: bool) -> TestSystem {
        let mut s = system(
            &[
                (
                    "reporter",
                    1,
                    vec![CapSpec::Report { index: 0 }, CapSpec::Log],
                ),
                ("other", 2, vec![CapSpec::Report { index: 1 }]),
            ],
            0,
        );
        if framed {
            let mut f = Framer::new(NONCE).unwrap();
            // The boot path announced the plan (sequence 0) before the system started.
            f.plan(["auth.one", "auth.two"].into_iter(), &mut String::new())
                .unwrap();
            s.framer = Some(f);
        }
        s
    }

    fn report(
        s: &mut TestSystem,
        pid: u16,
        slot: u16,
        outcome: u64,
        detail: &[u8],
    ) -> Result<[u64; 4], Error> {
        s.spaces.write(pid, MEM, detail).unwrap();
        call(
            s,
            pid,
            Syscall::Report,
            [h(slot), outcome, MEM, detail.len() as u64, 0],
        );
        result(s, pid).unwrap()
    }

    fn frames(console: &str) -> Vec<String> {
        console
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (text, crc) = l.rsplit_once(" *").expect("a CRC trailer");
                assert_eq!(crc, format!("{:08x}", crc32(text.as_bytes())));
                text.strip_prefix(&format!("BNX1 {NONCE} "))
                    .expect("our nonce")
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn a_report_becomes_one_framed_result_and_the_last_one_ends_the_stream() {
        let mut s = reporters(true);
        assert_eq!(report(&mut s, 0, 0, 1, b"refused: bad-handle"), Ok([0; 4]));
        assert!(
            s.machine.console.starts_with('\n'),
            "a frame starts on a fresh line"
        );
        assert_eq!(
            frames(&s.machine.console),
            ["1 RESULT auth.one PASS refused: bad-handle"]
        );
        assert_eq!(report(&mut s, 1, 0, 0, b"it\x1b[2J*worked\n"), Ok([0; 4]));
        assert_eq!(
            frames(&s.machine.console)[1..],
            ["2 RESULT auth.two FAIL it?[2J?worked?", "3 END 2"]
        );
    }

    #[test]
    fn a_check_reports_once_and_only_through_its_own_capability() {
        let mut s = reporters(true);
        assert_eq!(report(&mut s, 0, 0, 1, b""), Ok([0; 4]));
        let before = s.machine.console.clone();
        // Once reported, the verdict stands: a second report (from a restarted process too) is
        // refused and writes nothing.
        assert_eq!(
            report(&mut s, 0, 0, 0, b"changed my mind"),
            Err(Error::AlreadyReported)
        );
        // Another capability type, an empty slot and a forged generation are refused.
        assert_eq!(report(&mut s, 0, 1, 1, b""), Err(Error::WrongType));
        assert_eq!(report(&mut s, 0, 5, 1, b""), Err(Error::BadHandle));
        s.spaces.write(1, MEM, b"x").unwrap();
        call(&mut s, 1, Syscall::Report, [h(0) + (7 << 16), 1, MEM, 1, 0]);
        assert!(matches!(
            result(&s, 1),
            Some(Err(Error::StaleHandle | Error::BadHandle))
        ));
        assert_eq!(s.machine.console, before, "no refused call wrote a byte");
        assert_eq!(s.reported, 1);
    }

    #[test]
    fn bad_arguments_are_refused_before_anything_is_reported() {
        let mut s = reporters(true);
        assert_eq!(report(&mut s, 0, 0, 2, b""), Err(Error::OutOfRange));
        let long = [b'a'; MAX_REPORT_DETAIL + 1];
        assert_eq!(report(&mut s, 0, 0, 1, &long), Err(Error::PayloadTooLarge));
        call(&mut s, 0, Syscall::Report, [h(0), 1, 0xdead_0000, 4, 0]);
        assert_eq!(result(&s, 0), Some(Err(Error::BadAddress)));
        assert_eq!((s.reported, s.machine.console.as_str()), (0, ""));
        // The check can still be reported properly afterwards.
        assert_eq!(
            report(&mut s, 0, 0, 1, &long[..MAX_REPORT_DETAIL]),
            Ok([0; 4])
        );
    }

    fn read_info(s: &TestSystem, pid: u16) -> brainix_abi::CapInfo {
        let mut raw = [0u8; core::mem::size_of::<brainix_abi::CapInfo>()];
        s.spaces.read(pid, MEM, &mut raw).unwrap();
        let w = |i: usize| u64::from_le_bytes(raw[i * 8..i * 8 + 8].try_into().unwrap());
        brainix_abi::CapInfo {
            kind: w(0),
            rights: w(1),
            a: w(2),
            b: w(3),
            generation: w(4),
        }
    }

    /// An observer (audit-read in slot 0) and a target with a few capabilities.
    fn observed() -> TestSystem {
        system(
            &[
                ("observer", 1, vec![CapSpec::AuditRead]),
                (
                    "target",
                    2,
                    vec![
                        CapSpec::Endpoint {
                            endpoint: 0,
                            rights: brainix_abi::rights::SEND,
                            badge: 9,
                        },
                        CapSpec::Log,
                        CapSpec::Report { index: 1 },
                    ],
                ),
            ],
            1,
        )
    }

    #[test]
    fn the_manifest_view_matches_the_live_table_until_a_capability_is_dropped() {
        let mut s = observed();
        let views = |s: &mut TestSystem, call: Syscall, slot: u64| {
            call_and(s, 0, call, [h(0), 1, slot, MEM, 0]);
            let mut i = read_info(s, 0);
            i.generation = 0;
            i
        };
        for slot in 0..4 {
            let live = views(&mut s, Syscall::AuditCap, slot);
            let manifest = views(&mut s, Syscall::AuditManifestCap, slot);
            assert_eq!(live, manifest, "slot {slot}");
        }
        assert_eq!(
            views(&mut s, Syscall::AuditManifestCap, 0).a,
            9,
            "the badge"
        );
        // The target drops its log capability: the live slot empties, the manifest's does not.
        call(&mut s, 1, Syscall::CapDrop, [h(1), 0, 0, 0, 0]);
        assert_eq!(result(&s, 1), Some(Ok([0; 4])));
        assert_eq!(views(&mut s, Syscall::AuditCap, 1).kind, 0);
        assert_eq!(
            views(&mut s, Syscall::AuditManifestCap, 1).kind,
            brainix_abi::CapType::Log as u64
        );
        // Out of range, a pid that does not exist, and no audit capability are refused.
        let past = brainix_abi::CAP_SLOTS as u64;
        call(
            &mut s,
            0,
            Syscall::AuditManifestCap,
            [h(0), 1, past, MEM, 0],
        );
        assert_eq!(result(&s, 0), Some(Err(Error::OutOfRange)));
        call(&mut s, 0, Syscall::AuditManifestCap, [h(0), 7, 0, MEM, 0]);
        assert_eq!(result(&s, 0), Some(Err(Error::OutOfRange)));
        call(&mut s, 1, Syscall::AuditManifestCap, [h(0), 0, 0, MEM, 0]);
        assert_eq!(result(&s, 1), Some(Err(Error::WrongType)));
    }

    #[test]
    fn table_audits_need_an_audit_capability_and_a_live_process() {
        let mut s = observed();
        call(&mut s, 0, Syscall::AuditTables, [h(0), 1, 0, 0, 0]);
        assert_eq!(
            result(&s, 0),
            Some(Ok([3, 0, 0, 0])),
            "the fake walks 3 pages, clean"
        );
        call(&mut s, 1, Syscall::AuditTables, [h(0), 0, 0, 0, 0]);
        assert_eq!(result(&s, 1), Some(Err(Error::WrongType)));
        // The target dies: the observer is told, and its tables are gone.
        call(&mut s, 1, Syscall::Exit, [0, 0, 0, 0, 0]);
        assert_ne!(s.procs[0].notify & brainix_abi::NOTIFY_CHILD_DIED, 0);
        call(&mut s, 0, Syscall::AuditTables, [h(0), 1, 0, 0, 0]);
        assert_eq!(result(&s, 0), Some(Err(Error::PeerDead)));
    }

    fn call_and(s: &mut TestSystem, pid: u16, c: Syscall, args: [u64; 5]) {
        call(s, pid, c, args);
        assert_eq!(result(s, pid), Some(Ok([0; 4])), "{c:?}");
    }

    #[test]
    fn without_a_nonce_a_report_is_a_log_line_for_people() {
        let mut s = reporters(false);
        assert_eq!(report(&mut s, 1, 0, 1, b"fine"), Ok([0; 4]));
        assert_eq!(s.machine.console, "");
        assert!(
            s.machine
                .log
                .iter()
                .any(|l| l == "check auth.two PASS: fine")
        );
    }
}

#[cfg(test)]
mod device_tests {
    use crate::manifest::{CapSpec, DevicePart, PciMatch};
    use crate::platform::pci::tests::q35;
    use crate::platform::pci::{Bdf, reg};
    use crate::platform::tests::{BLK, platform};
    use crate::system::fixture::*;
    use brainix_abi::rights::{READ, WRITE};
    use brainix_abi::{CapType, DeviceInfo, Error, Syscall};

    fn machine() -> FakeMachine {
        FakeMachine {
            platform: platform(),
            config: q35(),
            ..FakeMachine::default()
        }
    }

    fn driver(bit: u8) -> Vec<CapSpec> {
        vec![
            CapSpec::Device {
                pci: BLK,
                part: DevicePart::Config {
                    rights: READ | WRITE,
                },
            },
            CapSpec::Device {
                pci: BLK,
                part: DevicePart::Bar {
                    bar: 4,
                    rights: READ | WRITE,
                },
            },
            CapSpec::Device {
                pci: BLK,
                part: DevicePart::Irq { bit },
            },
        ]
    }

    const BLK_BDF: Bdf = Bdf::new(0, 3, 0);

    #[test]
    fn a_driver_gets_exactly_its_device_bound_at_launch() {
        let mut s = system_on(machine(), &[("blk", 1, driver(3))], 0);
        call(&mut s, 0, Syscall::CapInfo, [h(0), 0, 0, 0, 0]);
        assert_eq!(
            result(&s, 0),
            Some(Ok([
                CapType::PciFunction as u64,
                READ | WRITE,
                u64::from(BLK_BDF.0),
                0
            ]))
        );
        call(&mut s, 0, Syscall::RegionInfo, [h(1), 0, 0, 0, 0]);
        let Some(Ok([_, phys, len, _])) = result(&s, 0) else {
            panic!("{:?}", result(&s, 0))
        };
        assert_eq!((phys, len), (0xfe00_0000, 0x4000));
        call(&mut s, 0, Syscall::CapInfo, [h(2), 0, 0, 0, 0]);
        assert_eq!(result(&s, 0), Some(Ok([CapType::Irq as u64, 0, 10, 0])));
    }

    #[test]
    fn a_process_whose_device_is_missing_is_not_launched_and_says_why() {
        let absent = PciMatch {
            vendor: 0x1af4,
            device: 0x1044,
            alt_device: 0x1005,
            index: 1,
        };
        let caps = vec![CapSpec::Device {
            pci: absent,
            part: DevicePart::Irq { bit: 0 },
        }];
        let s = system_on(machine(), &[("echo", 1, vec![]), ("rng", 1, caps)], 0);
        assert!(s.procs[1].state == crate::system::State::Dead);
        assert_eq!(s.spaces.launched, [0]);
        assert!(
            s.machine.log.iter().any(|l| l
                == "brainix: cannot launch rng (pid 1): capability slot 0: no PCI device \
                    1af4:1044 or 1af4:1005 #1 on this machine"),
            "{:?}",
            s.machine.log
        );
    }

    #[test]
    fn configuration_reads_are_bounded_and_writes_reach_only_the_command_bits() {
        let mut s = system_on(machine(), &[("blk", 1, driver(3))], 0);
        call(&mut s, 0, Syscall::PciConfigRead, [h(0), 0, 0, 0, 0]);
        assert_eq!(result(&s, 0), Some(Ok([0x1001_1af4, 0, 0, 0])));
        for bad in [2, 256, 4096, u64::MAX] {
            call(&mut s, 0, Syscall::PciConfigRead, [h(0), bad, 0, 0, 0]);
            assert_eq!(result(&s, 0), Some(Err(Error::OutOfRange)), "{bad}");
        }
        // A BAR, the interrupt line, a bridge window: refused, and nothing written.
        let before = s.machine.config.writes.len();
        for offset in [0x10, 0x20, 0x3c, 0x18, 0x30, 0] {
            call(&mut s, 0, Syscall::PciConfigWrite, [h(0), offset, 0, 0, 0]);
            assert_eq!(result(&s, 0), Some(Err(Error::MissingRight)), "{offset:#x}");
        }
        assert_eq!(s.machine.config.writes.len(), before);
        // The command register: memory, bus master, INTx disable change; I/O decoding and the
        // rest keep their value whatever is asked.
        call(
            &mut s,
            0,
            Syscall::PciConfigWrite,
            [h(0), 4, 0xffff_0000, 0, 0],
        );
        assert_eq!(result(&s, 0), Some(Ok([0; 4])));
        let cmd = s.machine.config.fns[&BLK_BDF.0].regs[1];
        assert_eq!(cmd, reg::CMD_IO);
        call(
            &mut s,
            0,
            Syscall::PciConfigWrite,
            [h(0), 4, 0xffff_ffff, 0, 0],
        );
        let cmd = s.machine.config.fns[&BLK_BDF.0].regs[1];
        assert_eq!(
            cmd,
            reg::CMD_IO | reg::CMD_MEMORY | reg::CMD_BUS_MASTER | reg::CMD_INTX_DISABLE
        );
        // Other capability types are not configuration access.
        call(&mut s, 0, Syscall::PciConfigRead, [h(1), 0, 0, 0, 0]);
        assert_eq!(result(&s, 0), Some(Err(Error::WrongType)));
    }

    #[test]
    fn config_rights_are_checked() {
        let caps = vec![CapSpec::Device {
            pci: BLK,
            part: DevicePart::Config { rights: READ },
        }];
        let mut s = system_on(machine(), &[("ro", 1, caps)], 0);
        call(&mut s, 0, Syscall::PciConfigWrite, [h(0), 4, 6, 0, 0]);
        assert_eq!(result(&s, 0), Some(Err(Error::MissingRight)));
    }

    #[test]
    fn a_shared_line_is_rearmed_only_when_every_holder_acknowledged() {
        let other = vec![CapSpec::Irq { line: 10, bit: 5 }];
        let mut s = system_on(machine(), &[("blk", 1, driver(3)), ("rng", 1, other)], 0);
        s.irq(10);
        assert_eq!((s.procs[0].notify, s.procs[1].notify), (1 << 3, 1 << 5));
        call(&mut s, 0, Syscall::IrqAck, [h(2), 0, 0, 0, 0]);
        assert_eq!(result(&s, 0), Some(Ok([0; 4])));
        assert!(s.machine.unmasked.is_empty(), "rng has not acknowledged");
        call(&mut s, 1, Syscall::IrqAck, [h(0), 0, 0, 0, 0]);
        assert_eq!(s.machine.unmasked, [10]);
        // A holder that dies owes nothing: the line is re-armed for the one left.
        s.irq(10);
        call(&mut s, 1, Syscall::IrqAck, [h(0), 0, 0, 0, 0]);
        assert_eq!(s.machine.unmasked, [10]);
        call(&mut s, 0, Syscall::Exit, [0, 0, 0, 0, 0]);
        assert_eq!(s.machine.unmasked, [10, 10]);
    }

    #[test]
    fn a_dead_driver_leaves_its_device_unable_to_dma_or_interrupt() {
        let mut s = system_on(machine(), &[("blk", 1, driver(3))], 0);
        call(&mut s, 0, Syscall::PciConfigWrite, [h(0), 4, 0x6, 0, 0]);
        let cmd = s.machine.config.fns[&BLK_BDF.0].regs[1];
        assert_eq!(cmd & reg::CMD_BUS_MASTER, reg::CMD_BUS_MASTER);
        s.fault(0, 14, 0, 0);
        let cmd = s.machine.config.fns[&BLK_BDF.0].regs[1];
        assert_eq!(cmd & reg::CMD_BUS_MASTER, 0);
        assert_eq!(cmd & reg::CMD_INTX_DISABLE, reg::CMD_INTX_DISABLE);
        assert!(
            s.machine
                .log
                .iter()
                .any(|l| l
                    == "brainix: pci 00:03.0: bus mastering and INTx off (blk no longer runs)"),
            "{:?}",
            s.machine.log
        );
    }

    #[test]
    fn the_manifest_view_of_a_device_capability_is_its_binding() {
        let mut s = system_on(
            machine(),
            &[
                ("shell", 1, vec![CapSpec::AuditRead]),
                ("blk", 1, driver(3)),
            ],
            0,
        );
        for slot in 0..3 {
            let mut views = [[0u8; 40]; 2];
            for (i, call_nr) in [Syscall::AuditCap, Syscall::AuditManifestCap]
                .into_iter()
                .enumerate()
            {
                call(&mut s, 0, call_nr, [h(0), 1, slot, MEM, 0]);
                assert_eq!(result(&s, 0), Some(Ok([0; 4])));
                crate::system::Spaces::read(&s.spaces, 0, MEM, &mut views[i]).unwrap();
            }
            // Everything but the generation (the last word) agrees.
            assert_eq!(views[0][..32], views[1][..32], "slot {slot}");
        }
    }

    #[test]
    fn audit_device_reports_what_was_found_and_who_holds_it() {
        let mut s = system_on(
            machine(),
            &[
                ("shell", 1, vec![CapSpec::AuditRead]),
                ("blk", 1, driver(3)),
            ],
            0,
        );
        call(&mut s, 0, Syscall::AuditDevice, [h(0), 1, MEM, 0, 0]);
        assert_eq!(result(&s, 0), Some(Ok([0; 4])));
        let mut raw = vec![0u8; core::mem::size_of::<DeviceInfo>()];
        crate::system::Spaces::read(&s.spaces, 0, MEM, &mut raw).unwrap();
        let w = |i: usize| u64::from_le_bytes(raw[i * 8..i * 8 + 8].try_into().unwrap());
        assert_eq!(
            (w(0), w(1), w(2), w(4), w(5)),
            (0x18, 0x1af4, 0x1001, 10, 1)
        );
        // bar_kind[4], bar_base[4], bar_size[4], holder
        assert_eq!(
            (w(6 + 4), w(12 + 4), w(18 + 4), w(24)),
            (2, 0xfe00_0000, 0x4000, 1)
        );
        call(&mut s, 0, Syscall::AuditDevice, [h(0), 4, MEM, 0, 0]);
        assert_eq!(result(&s, 0), Some(Err(Error::OutOfRange)));
    }
}
