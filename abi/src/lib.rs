//! # The BraiNIX system-call ABI
//!
//! Shared, word for word, by the kernel and every userspace program. No dependencies, no
//! `unsafe`, `no_std`.
//!
//! ## Calling convention
//!
//! `syscall` with the call number in `rax` and up to six arguments in `rdi`, `rsi`, `rdx`, `r10`,
//! `r8`, `r9` (`rcx` and `r11` are clobbered by the instruction). On return `rax` holds `0` for
//! success or an [`Error`] code, and results come back in `rdi`, `rsi`, `rdx`, `r10` as each call
//! documents. Every other register is preserved.
//!
//! Every argument is untrusted: a bad handle, pointer, length or number is refused with an
//! [`Error`]; no argument can panic or hang the kernel.
//!
//! ## Authority
//!
//! There is no ambient authority. Apart from [`Syscall::Exit`], [`Syscall::Yield`] and
//! [`Syscall::Uptime`], every call names a capability by [`Handle`], and the kernel checks the
//! handle's slot, generation, type and rights on each use. A process's capabilities come only
//! from the system manifest and are frozen at launch: no call adds authority to a running
//! process. [`Syscall::CapDrop`] and [`Syscall::EndpointRevoke`] only remove.
//!
//! ## IPC
//!
//! Synchronous rendezvous only. A [`Message`] (label, [`MSG_REGS`] words and up to
//! [`MAX_PAYLOAD`] bytes) is copied by the kernel from sender to receiver when both are ready.
//! Bulk data moves through [`Lease`]s: a caller lends up to [`MAX_LEASES`] buffers for the length of
//! one [`Syscall::Call`]; the server reads or writes them with [`Syscall::LeaseRead`] and
//! [`Syscall::LeaseWrite`], which the kernel copies after checking bounds and rights. There is no
//! shared memory between processes and no kernel message queue; the only asynchronous signal is
//! a per-process notification *bit mask* (IRQs, timeouts), which coalesces and never queues.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// System-call numbers, passed in `rax`.
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syscall {
    /// `exit(code)`: ends the calling process. Never returns. The supervisor is told.
    Exit = 0,
    /// `yield()`: gives up the rest of the time slice.
    Yield = 1,
    /// `uptime() -> (rdi = milliseconds since boot, rsi = TSC ticks)`.
    Uptime = 2,
    /// `send(endpoint, msg: *const Message)`: blocks until a receiver takes the message.
    /// Needs [`rights::SEND`]. Errors: handle errors, [`Error::BadAddress`],
    /// [`Error::PayloadTooLarge`], [`Error::PeerDead`] when the endpoint has no live receiver.
    Send = 3,
    /// `recv(endpoint, buf: *mut Message, timeout_ms) -> (rdi = reply token, rsi = badge,
    /// rdx = lease count)`: blocks until a message arrives, a notification bit is pending
    /// (then `rdi` = [`NOTIFICATION_TOKEN`] and the label holds the bits), or the timeout
    /// ([`FOREVER`] for none; 0 polls) runs out ([`Error::Timeout`]). Needs [`rights::RECEIVE`].
    Recv = 4,
    /// `call(endpoint, msg: *const Message, leases: *const Lease, lease_count, reply:
    /// *mut Message)`: send, then wait for the reply in `reply`. Needs [`rights::SEND`]. A call
    /// whose server dies or is restarted before replying returns [`Error::PeerDead`]; it never
    /// hangs.
    Call = 5,
    /// `reply(token, msg: *const Message)`: answers a caller blocked in [`Syscall::Call`]. The
    /// token must name a process that is waiting for a reply from the caller; anything else is
    /// [`Error::BadToken`]. Never blocks.
    Reply = 6,
    /// `reply_recv(token, msg, endpoint, buf, timeout_ms)`: [`Syscall::Reply`] then
    /// [`Syscall::Recv`] in one call. Returns like `recv`.
    ReplyRecv = 7,
    /// `lease_read(token, index, offset, buf: *mut u8, len) -> (rdi = bytes copied)`: copies
    /// from the caller's lease `index` into the server's buffer. Needs [`Lease::READ`] on the
    /// lease. Errors: [`Error::BadToken`], [`Error::BadLease`], [`Error::BadAddress`].
    LeaseRead = 8,
    /// `lease_write(token, index, offset, buf: *const u8, len) -> (rdi = bytes copied)`. Needs
    /// [`Lease::WRITE`].
    LeaseWrite = 9,
    /// `cap_info(handle) -> (rdi = type, rsi = rights, rdx = what the type names)`: `rdx` is the
    /// badge of an endpoint, the first port of an I/O range, the line of an IRQ, the target pid
    /// of process control, the physical base of an MMIO region or DMA pool, and 0 otherwise.
    CapInfo = 10,
    /// `cap_drop(handle)`: removes the capability from the caller's own table; the handle and
    /// every copy of it are stale from now on.
    CapDrop = 11,
    /// `endpoint_revoke(endpoint)`: invalidates every handle to the endpoint in every process.
    /// Needs [`rights::REVOKE`].
    EndpointRevoke = 12,
    /// `io_in(io_ports, port) -> (rdi = byte)`: reads one byte from a port inside the
    /// capability's range.
    IoIn = 13,
    /// `io_out(io_ports, port, byte)`.
    IoOut = 14,
    /// `irq_ack(irq)`: re-arms the IRQ line after its notification bit was delivered.
    IrqAck = 15,
    /// `process_stop(process_control)`: stops the target process; its callers get
    /// [`Error::PeerDead`]. Needs [`rights::CONTROL`].
    ProcessStop = 16,
    /// `process_restart(process_control)`: stops the target (if running) and starts it again
    /// from its image, with a new generation; old reply tokens to it are dead.
    ProcessRestart = 17,
    /// `audit_process(audit_read, pid, buf: *mut ProcessInfo)`: one process's state.
    /// Returns [`Error::OutOfRange`] past the last pid.
    AuditProcess = 18,
    /// `audit_cap(audit_read, pid, slot, buf: *mut CapInfo)`: one slot of one process's
    /// capability table ([`CapInfo::kind`] 0 when empty).
    AuditCap = 19,
    /// `audit_memory(audit_read, buf: *mut MemoryInfo)`: frame and pool statistics.
    AuditMemory = 20,
    /// `log(log, buf: *const u8, len)`: writes a line of at most [`MAX_LOG_LINE`] bytes to the
    /// kernel log (COM1), prefixed with the process name; bytes that are not printable ASCII
    /// become `?`. For processes that run before the console server, and for the supervisor.
    Log = 21,
    /// `null()`: does nothing and returns 0; needs no capability. `ipc-bench` times it to
    /// measure the bare cost of entering and leaving the kernel.
    NullSyscall = 22,
    /// `region_info(mmio_or_dma) -> (rdi = virtual address, rsi = physical address, rdx =
    /// length in bytes)`: where an MMIO region or DMA pool capability is mapped in the caller
    /// (at [`layout::region`] of its slot) and, for a device, where it is physically.
    RegionInfo = 23,
    /// `report(report, outcome, buf: *const u8, len)`: the verdict of the one check the report
    /// capability names, `outcome` 1 for PASS and 0 for FAIL, with a detail of at most
    /// [`MAX_REPORT_DETAIL`] bytes. The kernel writes it as a nonce-framed `RESULT` line
    /// (`docs/serial-protocol.md`); the caller never sees the nonce, so it can report only the
    /// check its capability names, and only once per boot ([`Error::AlreadyReported`]).
    Report = 24,
    /// `audit_tables(audit_read, pid) -> (rdi = pages mapped, rsi = a [`table_audit`] code,
    /// rdx = the first offending address)`: walks `pid`'s live page tables and checks W^X and
    /// KPTI (no kernel mapping beyond the entry trampoline, no user page in the kernel half, no
    /// global page). [`Error::PeerDead`] when the process has no address space.
    AuditTables = 25,
    /// `audit_manifest_cap(audit_read, pid, slot, buf: *mut CapInfo)`: what the system manifest
    /// gave `pid` in `slot` at launch, in the same form as [`Syscall::AuditCap`] (generation 0;
    /// a DMA pool's physical address 0, as the manifest does not fix it). Comparing the two shows
    /// a capability table only ever lost entries.
    AuditManifestCap = 26,
    /// `audit_sharing(audit_read) -> (rdi = user pages checked, rsi = a physical page mapped
    /// into two processes or 0, rdx and r10 = those two pids)`: walks every live process's
    /// user mappings and checks that no physical page is reachable from two of them (INV-IPC:
    /// there is no shared memory between processes).
    AuditSharing = 27,
    /// `pci_config_read(pci_function, offset) -> (rdi = value)`: the 32-bit configuration
    /// register at `offset` (a multiple of 4 below 256) of the one PCI function the capability
    /// names. Needs [`rights::READ`]. [`Error::OutOfRange`] for any other offset.
    PciConfigRead = 28,
    /// `pci_config_write(pci_function, offset, value)`: only the command register (offset 4),
    /// and of it only memory decoding, bus mastering and INTx disable; the other bits keep their
    /// value. Any other register, a BAR above all, is [`Error::MissingRight`]: a driver cannot
    /// move its device's registers over memory it does not own. Needs [`rights::WRITE`].
    PciConfigWrite = 29,
    /// `audit_device(audit_read, index, buf: *mut DeviceInfo)`: the `index`-th PCI function
    /// discovered at boot. [`Error::OutOfRange`] past the last.
    AuditDevice = 30,
}

/// Codes of [`Syscall::AuditTables`].
pub mod table_audit {
    /// Every mapping is as it must be.
    pub const CLEAN: u64 = 0;
    /// A page is writable and executable.
    pub const WRITABLE_EXECUTABLE: u64 = 1;
    /// A user page lies in the kernel half.
    pub const USER_IN_KERNEL_HALF: u64 = 2;
    /// A kernel page outside the entry trampoline is mapped (KPTI broken).
    pub const KERNEL_OUTSIDE_TRAMPOLINE: u64 = 3;
    /// A global page (it would survive an address-space switch).
    pub const GLOBAL: u64 = 4;

    /// A short name for a code.
    pub fn name(code: u64) -> &'static str {
        match code {
            CLEAN => "clean",
            WRITABLE_EXECUTABLE => "writable-and-executable",
            USER_IN_KERNEL_HALF => "user-page-in-kernel-half",
            KERNEL_OUTSIDE_TRAMPOLINE => "kernel-page-outside-trampoline",
            GLOBAL => "global-page",
            _ => "unknown",
        }
    }
}

impl Syscall {
    /// The call for a number, if there is one.
    pub fn from_number(n: u64) -> Option<Syscall> {
        use Syscall::*;
        const ALL: [Syscall; 31] = [
            Exit,
            Yield,
            Uptime,
            Send,
            Recv,
            Call,
            Reply,
            ReplyRecv,
            LeaseRead,
            LeaseWrite,
            CapInfo,
            CapDrop,
            EndpointRevoke,
            IoIn,
            IoOut,
            IrqAck,
            ProcessStop,
            ProcessRestart,
            AuditProcess,
            AuditCap,
            AuditMemory,
            Log,
            NullSyscall,
            RegionInfo,
            Report,
            AuditTables,
            AuditManifestCap,
            AuditSharing,
            PciConfigRead,
            PciConfigWrite,
            AuditDevice,
        ];
        ALL.get(usize::try_from(n).ok()?).copied()
    }
}

/// Why a call was refused. Returned in `rax`; `0` is success.
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// No such system call.
    NoSuchCall = 1,
    /// The handle names no capability: slot out of range or empty (a forged handle).
    BadHandle = 2,
    /// The handle's generation is old: the capability was dropped or revoked.
    StaleHandle = 3,
    /// The capability is of another type than the call needs.
    WrongType = 4,
    /// The capability lacks a right the call needs.
    MissingRight = 5,
    /// A pointer or length does not lie entirely in the caller's own user memory with the
    /// access needed.
    BadAddress = 6,
    /// A payload is longer than [`MAX_PAYLOAD`] or a lease count above [`MAX_LEASES`].
    PayloadTooLarge = 7,
    /// A lease index, offset or length is out of bounds, or lacks the right.
    BadLease = 8,
    /// The reply token names no process waiting for a reply from the caller.
    BadToken = 9,
    /// The peer is dead, stopped or restarted, or the endpoint was revoked.
    PeerDead = 10,
    /// The timeout ran out.
    Timeout = 11,
    /// A port, pid or slot outside the capability's or table's range.
    OutOfRange = 12,
    /// Another process already waits on this endpoint in the same role.
    Busy = 13,
    /// The check this report capability names was already reported in this boot.
    AlreadyReported = 14,
    /// A device reported an error (servers' replies).
    Io = 15,
    /// Stored data failed its checksum; it is reported, never returned (servers' replies).
    Corrupt = 16,
    /// No such file or object (servers' replies).
    NotFound = 17,
    /// It exists already (servers' replies).
    Exists = 18,
    /// No room left (servers' replies).
    NoSpace = 19,
    /// The remote refused or reset the connection: a TCP reset came (the transport server's
    /// replies).
    Reset = 20,
    /// The remote stopped answering: a TCP connection's retransmissions (or its handshake's)
    /// ran out, the connection timed out (the transport server's replies). Unlike
    /// [`Error::Timeout`], which only says a bounded wait ended, the connection is gone.
    Unreachable = 21,
}

impl Error {
    /// The error for a code, if it is one.
    pub fn from_code(code: u64) -> Option<Error> {
        use Error::*;
        const ALL: [Error; 21] = [
            NoSuchCall,
            BadHandle,
            StaleHandle,
            WrongType,
            MissingRight,
            BadAddress,
            PayloadTooLarge,
            BadLease,
            BadToken,
            PeerDead,
            Timeout,
            OutOfRange,
            Busy,
            AlreadyReported,
            Io,
            Corrupt,
            NotFound,
            Exists,
            NoSpace,
            Reset,
            Unreachable,
        ];
        ALL.get(usize::try_from(code).ok()?.checked_sub(1)?)
            .copied()
    }

    /// A short name, for logs and the shell.
    pub fn name(self) -> &'static str {
        match self {
            Error::NoSuchCall => "no-such-call",
            Error::BadHandle => "bad-handle",
            Error::StaleHandle => "stale-handle",
            Error::WrongType => "wrong-type",
            Error::MissingRight => "missing-right",
            Error::BadAddress => "bad-address",
            Error::PayloadTooLarge => "payload-too-large",
            Error::BadLease => "bad-lease",
            Error::BadToken => "bad-token",
            Error::PeerDead => "peer-dead",
            Error::Timeout => "timeout",
            Error::OutOfRange => "out-of-range",
            Error::Busy => "busy",
            Error::AlreadyReported => "already-reported",
            Error::Io => "io-error",
            Error::Corrupt => "corrupt",
            Error::NotFound => "not-found",
            Error::Exists => "exists",
            Error::NoSpace => "no-space",
            Error::Reset => "connection-reset",
            Error::Unreachable => "unreachable",
        }
    }
}

/// A capability handle: slot in the low 16 bits, generation in bits 16 to 47. The upper 16 bits
/// must be zero. Handles are not secret: guessing one gains nothing, because the kernel checks the
/// slot's current generation, type and rights on every use.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Handle(pub u64);

impl Handle {
    /// Packs a slot and a generation.
    pub const fn new(slot: u16, generation: u32) -> Handle {
        Handle(slot as u64 | (generation as u64) << 16)
    }

    /// The slot, or `None` when reserved bits are set.
    pub const fn slot(self) -> Option<u16> {
        if self.0 >> 48 != 0 {
            None
        } else {
            Some(self.0 as u16)
        }
    }

    /// The generation.
    pub const fn generation(self) -> u32 {
        (self.0 >> 16) as u32
    }
}

/// Capability types, as [`Syscall::CapInfo`] reports them.
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapType {
    /// An IPC endpoint, with send/receive/revoke rights and a badge.
    Endpoint = 1,
    /// One interrupt line, delivered as a notification bit.
    Irq = 2,
    /// A range of I/O ports.
    IoPorts = 3,
    /// A physical MMIO region (device servers, issue 5).
    Mmio = 4,
    /// A DMA pool (device servers, issue 5).
    DmaPool = 5,
    /// Stop and restart one declared process.
    ProcessControl = 6,
    /// Read-only observation of processes, capability tables and memory statistics.
    AuditRead = 7,
    /// Writing lines to the kernel log.
    Log = 8,
    /// Reporting the verdict of one named check, once ([`Syscall::Report`]).
    Report = 9,
    /// The configuration registers of one PCI function ([`Syscall::PciConfigRead`]).
    PciFunction = 10,
}

impl CapType {
    /// The type for a number.
    pub fn from_number(n: u64) -> Option<CapType> {
        use CapType::*;
        [
            Endpoint,
            Irq,
            IoPorts,
            Mmio,
            DmaPool,
            ProcessControl,
            AuditRead,
            Log,
            Report,
            PciFunction,
        ]
        .get(usize::try_from(n).ok()?.checked_sub(1)?)
        .copied()
    }

    /// A short name.
    pub fn name(self) -> &'static str {
        match self {
            CapType::Endpoint => "endpoint",
            CapType::Irq => "irq",
            CapType::IoPorts => "io-ports",
            CapType::Mmio => "mmio",
            CapType::DmaPool => "dma-pool",
            CapType::ProcessControl => "process-control",
            CapType::AuditRead => "audit-read",
            CapType::Log => "log",
            CapType::Report => "report",
            CapType::PciFunction => "pci-function",
        }
    }
}

/// Longest detail text [`Syscall::Report`] takes (the serial protocol's RESULT detail limit).
pub const MAX_REPORT_DETAIL: usize = 160;

/// Rights bits.
pub mod rights {
    /// Endpoint: send and call.
    pub const SEND: u64 = 1 << 0;
    /// Endpoint: receive.
    pub const RECEIVE: u64 = 1 << 1;
    /// Endpoint: revoke every handle to it.
    pub const REVOKE: u64 = 1 << 2;
    /// Process control: stop and restart.
    pub const CONTROL: u64 = 1 << 3;
    /// I/O ports, MMIO: read.
    pub const READ: u64 = 1 << 4;
    /// I/O ports, MMIO: write.
    pub const WRITE: u64 = 1 << 5;
}

/// Processes in the kernel's static table, and so pids `0..MAX_PROCESSES`. Our largest manifest
/// (the test system) declares 42.
pub const MAX_PROCESSES: usize = 48;

/// Capability slots per process: handles name slots `0..CAP_SLOTS`. The test system's
/// supervisor holds 48 (a control capability per process it may start, and report capabilities);
/// 64 leaves room for a few more programs under test.
pub const CAP_SLOTS: usize = 64;

/// Longest line [`Syscall::Log`] accepts; longer is [`Error::PayloadTooLarge`].
pub const MAX_LOG_LINE: usize = 200;

/// Message words besides the label.
pub const MSG_REGS: usize = 4;
/// Largest payload the kernel copies with a message.
pub const MAX_PAYLOAD: usize = 256;
/// Most leases one call may lend.
pub const MAX_LEASES: usize = 4;
/// `timeout_ms` meaning "no timeout".
pub const FOREVER: u64 = u64::MAX;
/// The reply token [`Syscall::Recv`] returns for a notification instead of a message.
pub const NOTIFICATION_TOKEN: u64 = u64::MAX;

/// An IPC message.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Message {
    /// What the message means; the protocol between the two processes defines it.
    pub label: u64,
    /// Word-sized arguments.
    pub regs: [u64; MSG_REGS],
    /// Payload bytes used, at most [`MAX_PAYLOAD`].
    pub len: u64,
    /// The payload.
    pub payload: [u8; MAX_PAYLOAD],
}

impl Message {
    /// An empty message with `label`.
    pub const fn new(label: u64) -> Message {
        Message {
            label,
            regs: [0; MSG_REGS],
            len: 0,
            payload: [0; MAX_PAYLOAD],
        }
    }

    /// Bytes of the header the kernel copies before the payload.
    pub const HEADER: usize = 8 * (2 + MSG_REGS);

    /// The used payload, or `None` when `len` is out of range.
    pub fn data(&self) -> Option<&[u8]> {
        self.payload.get(..usize::try_from(self.len).ok()?)
    }
}

/// A buffer lent for one call.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// Start address in the caller's memory.
    pub addr: u64,
    /// Length in bytes.
    pub len: u64,
    /// [`Lease::READ`] and/or [`Lease::WRITE`]: what the server may do.
    pub access: u64,
}

impl Lease {
    /// The server may read the buffer.
    pub const READ: u64 = 1;
    /// The server may write the buffer.
    pub const WRITE: u64 = 2;
}

/// Process states as the audit calls report them.
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessState {
    /// Ready or running.
    Runnable = 1,
    /// Blocked sending or calling.
    Sending = 2,
    /// Blocked receiving.
    Receiving = 3,
    /// Waiting for a reply.
    AwaitingReply = 4,
    /// Stopped by its supervisor or not started yet.
    Stopped = 5,
    /// Killed by a fault or exited.
    Dead = 6,
}

/// One process, as [`Syscall::AuditProcess`] reports it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ProcessInfo {
    /// Process id (its index in the static process table).
    pub pid: u64,
    /// Generation: how many times it has been (re)started.
    pub generation: u64,
    /// A [`ProcessState`] number.
    pub state: u64,
    /// Priority, 0 highest.
    pub priority: u64,
    /// Pages in use / budget.
    pub pages_used: u64,
    /// The manifest's memory budget, in pages.
    pub pages_budget: u64,
    /// How the last run ended: exit code, or `0x100 + vector` for a fault; `u64::MAX` if still
    /// running.
    pub last_exit: u64,
    /// The faulting address of the last fault, or 0.
    pub last_fault_addr: u64,
    /// [`ProcessInfo::RESTARTABLE`] when the manifest says the supervisor restarts it.
    pub flags: u64,
    /// Name length.
    pub name_len: u64,
    /// Name bytes.
    pub name: [u8; 32],
}

impl ProcessInfo {
    /// Flag: the manifest marks the process restartable.
    pub const RESTARTABLE: u64 = 1;
}

/// The notification bit set, when a process dies (fault or exit), on every holder of a
/// process-control capability for it and on every holder of an audit-read capability (the
/// observers: the supervisor and the auditor).
pub const NOTIFY_CHILD_DIED: u64 = 1 << 31;

/// Where a user program is linked, and where its stack ends. Fixed (no ASLR, P-03).
pub mod layout {
    /// Lowest address of a program image.
    pub const IMAGE_BASE: u64 = 0x40_0000;
    /// Highest address of program images (exclusive).
    pub const IMAGE_END: u64 = 0x4000_0000;
    /// One past the top of the user stack. The guard page lies under the lowest stack page.
    pub const STACK_TOP: u64 = 0x0000_7fff_0000_0000;
    /// Where MMIO regions and DMA pools are mapped: each capability slot has its own window.
    pub const REGION_BASE: u64 = 0x0000_6000_0000_0000;
    /// Size of one slot's window; a region is at most this large.
    pub const REGION_STRIDE: u64 = 1 << 30;

    /// The address an MMIO region or DMA pool in capability slot `slot` is mapped at.
    pub const fn region(slot: u16) -> u64 {
        REGION_BASE + slot as u64 * REGION_STRIDE
    }
}

/// One capability slot, as [`Syscall::AuditCap`] reports it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapInfo {
    /// A [`CapType`] number, or 0 for an empty slot.
    pub kind: u64,
    /// Rights bits.
    pub rights: u64,
    /// Badge (endpoints), first port (I/O), line (IRQ), pid (process control).
    pub a: u64,
    /// Object id (endpoints), port count (I/O).
    pub b: u64,
    /// The slot's current generation.
    pub generation: u64,
}

/// Memory statistics, as [`Syscall::AuditMemory`] reports them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MemoryInfo {
    /// Frames the pool manages.
    pub frames_total: u64,
    /// Frames free.
    pub frames_free: u64,
    /// Kernel page-table pages in use.
    pub kernel_pt_pages: u64,
    /// Processes in the static table / capacity.
    pub processes: u64,
    /// Process table capacity.
    pub processes_capacity: u64,
    /// Endpoints / capacity.
    pub endpoints: u64,
    /// Endpoint capacity.
    pub endpoints_capacity: u64,
}

/// One PCI function found at boot, as [`Syscall::AuditDevice`] reports it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct DeviceInfo {
    /// Bus, device, function: `bus << 8 | device << 3 | function`.
    pub bdf: u64,
    /// Vendor id.
    pub vendor: u64,
    /// Device id.
    pub device: u64,
    /// `class << 24 | subclass << 16 | prog_if << 8 | revision`.
    pub class: u64,
    /// Interrupt line the firmware routed INTx to (0xff: none).
    pub irq_line: u64,
    /// Interrupt pin, 1 (INTA) to 4; 0 for none.
    pub irq_pin: u64,
    /// Each BAR's kind: [`DeviceInfo::BAR_ABSENT`], `MEM32`, `MEM64`, `IO` or `INVALID`.
    pub bar_kind: [u64; 6],
    /// Each BAR's base address (memory) or first port (I/O).
    pub bar_base: [u64; 6],
    /// Each BAR's size in bytes or ports.
    pub bar_size: [u64; 6],
    /// The pid of the process the manifest binds it to, or `u64::MAX`.
    pub holder: u64,
}

impl DeviceInfo {
    /// Not implemented.
    pub const BAR_ABSENT: u64 = 0;
    /// 32-bit memory BAR.
    pub const BAR_MEM32: u64 = 1;
    /// 64-bit memory BAR.
    pub const BAR_MEM64: u64 = 2;
    /// I/O BAR.
    pub const BAR_IO: u64 = 3;
    /// A value no device may present; never mapped.
    pub const BAR_INVALID: u64 = 4;
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn numbers_round_trip() {
        for n in 0..64 {
            if let Some(s) = Syscall::from_number(n) {
                assert_eq!(s as u64, n);
            }
            if let Some(e) = Error::from_code(n) {
                assert_eq!(e as u64, n);
            }
            if let Some(c) = CapType::from_number(n) {
                assert_eq!(c as u64, n);
            }
        }
        assert_eq!(Syscall::from_number(22), Some(Syscall::NullSyscall));
        assert_eq!(Syscall::from_number(23), Some(Syscall::RegionInfo));
        assert_eq!(Syscall::from_number(24), Some(Syscall::Report));
        assert_eq!(Syscall::from_number(26), Some(Syscall::AuditManifestCap));
        assert_eq!(Syscall::from_number(27), Some(Syscall::AuditSharing));
        assert_eq!(Syscall::from_number(28), Some(Syscall::PciConfigRead));
        assert_eq!(Syscall::from_number(30), Some(Syscall::AuditDevice));
        assert_eq!(Syscall::from_number(31), None);
        assert_eq!(Error::from_code(19), Some(Error::NoSpace));
        assert_eq!(Error::from_code(20), Some(Error::Reset));
        assert_eq!(Error::from_code(21), Some(Error::Unreachable));
        assert_eq!(Error::from_code(22), None);
        assert_eq!(CapType::from_number(10), Some(CapType::PciFunction));
        assert_eq!(CapType::from_number(11), None);
        assert_eq!(Error::from_code(0), None);
        assert_eq!(Error::from_code(13), Some(Error::Busy));
        assert_eq!(Syscall::from_number(u64::MAX), None);
    }

    /// A tripwire for review, not the proof (the proof is the live checks `ipc.no-shared-memory`
    /// and `ipc.no-async-queue`): every call the ABI offers, with what it does to memory and
    /// messages. A new call fails this test until it is added here, which is where a call that
    /// maps memory into two processes or queues a message would have to be argued for.
    #[test]
    fn every_call_is_reviewed_and_none_shares_memory_or_queues() {
        use Syscall::*;
        // (call, what it does to memory and messages)
        let reviewed: [(Syscall, &str); 31] = [
            (Exit, "ends the caller"),
            (Yield, "no memory"),
            (Uptime, "no memory"),
            (
                Send,
                "rendezvous: blocks until a receiver takes the message",
            ),
            (
                Recv,
                "rendezvous: blocks until a sender arrives, or a timeout",
            ),
            (Call, "rendezvous both ways"),
            (Reply, "to a caller already blocked; never queued"),
            (ReplyRecv, "reply, then receive"),
            (LeaseRead, "copy from a lease lent for one call"),
            (LeaseWrite, "copy into a lease lent for one call"),
            (CapInfo, "no memory"),
            (CapDrop, "no memory"),
            (EndpointRevoke, "no memory"),
            (IoIn, "no memory"),
            (IoOut, "no memory"),
            (IrqAck, "no memory"),
            (ProcessStop, "no memory"),
            (ProcessRestart, "no memory"),
            (AuditProcess, "copies a record out"),
            (AuditCap, "copies a record out"),
            (AuditMemory, "copies a record out"),
            (Log, "copies a line in"),
            (NullSyscall, "no memory"),
            (
                RegionInfo,
                "names the caller's own device region or DMA pool",
            ),
            (Report, "copies a detail in"),
            (AuditTables, "no memory"),
            (AuditManifestCap, "copies a record out"),
            (AuditSharing, "no memory"),
            (
                PciConfigRead,
                "a register of the caller's own PCI function; no memory",
            ),
            (
                PciConfigWrite,
                "the command register of the caller's own function; no memory",
            ),
            (AuditDevice, "copies a record out"),
        ];
        let offered: std::vec::Vec<Syscall> = (0..256).filter_map(Syscall::from_number).collect();
        assert_eq!(
            offered,
            reviewed
                .iter()
                .map(|(c, _)| *c)
                .collect::<std::vec::Vec<_>>(),
            "the ABI's calls changed: review the new one here"
        );
    }

    #[test]
    fn handles_pack_slot_and_generation_and_reject_reserved_bits() {
        let h = Handle::new(7, 0xdead_beef);
        assert_eq!((h.slot(), h.generation()), (Some(7), 0xdead_beef));
        assert_eq!(Handle(1 << 48).slot(), None);
    }
}
