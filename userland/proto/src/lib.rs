//! # BraiNIX userspace protocols
//!
//! The labels and message layouts that BraiNIX programs speak to each other over synchronous IPC,
//! and the capability slot layout each program expects. Both sides of every protocol import it
//! from here, so a client and its server cannot disagree about a number.
//!
//! ## Replies
//!
//! Every protocol answers a [`brainix_abi::Syscall::Call`] with one reply whose label is a
//! [`Status`]: `0` for success, otherwise an [`Error`] code saying why the server refused. The
//! caller reads it with [`status`].
//!
//! ## Slots
//!
//! The kernel hands a process its capabilities as `Handle::new(slot, 1)`, the slot being the
//! capability's position in the process's `caps` list in the system manifest (`system/*.toml`).
//! Each program module below names the slots it expects; the manifest must list the capabilities
//! in that order.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use brainix_abi::{Error, Handle, Message};

pub mod config;

/// The reply label meaning success.
pub const OK: u64 = 0;

/// A reply label: [`OK`], or the code of the [`Error`] that made the server refuse.
pub type Status = u64;

/// Reads a reply label: `Ok` for [`OK`], the server's [`Error`] otherwise. A label that is no
/// error code is [`Error::NoSuchCall`]: the server spoke another protocol, which is a refusal.
pub fn status(reply: &Message) -> Result<(), Error> {
    match reply.label {
        OK => Ok(()),
        code => Err(Error::from_code(code).unwrap_or(Error::NoSuchCall)),
    }
}

/// The reply label for a result.
pub fn status_of(result: Result<(), Error>) -> Status {
    match result {
        Ok(()) => OK,
        Err(e) => e as u64,
    }
}

/// Longest line the kernel's `log` call copies.
pub const LOG_LINE_MAX: usize = brainix_abi::MAX_LOG_LINE;

/// The handle of slot `slot` as the kernel issues it at launch (generation 1).
pub const fn launch_handle(slot: u16) -> Handle {
    Handle::new(slot, 1)
}

/// The trusted console: owns COM1, prints what its clients write, and hands out lines typed on it.
///
/// One server, one endpoint. Requests:
///
/// | label | request | reply |
/// | --- | --- | --- |
/// | [`console::WRITE`] | `regs[0]` = byte count; the bytes come from lease 0 (needs [`brainix_abi::Lease::READ`]) when the call lends one, else from the payload | status; `regs[0]` = bytes written |
/// | [`console::READ_LINE`] | lease 0 (needs [`brainix_abi::Lease::WRITE`]) receives the line when lent, else the reply payload does | status; `regs[0]` = line length, without the terminator |
///
/// Reading is a separate authority: `READ_LINE` is served only to a client whose badge has the
/// [`console::READER`] bit, which the manifest gives to the shell alone (others get
/// [`Error::MissingRight`]). The kernel attaches badges, so no client can claim the bit. Without
/// it, any process that may print could take the next line typed, a password or a consent.
///
/// `READ_LINE` waits until a line is complete; the console keeps serving other clients meanwhile.
/// One reader waits at a time: a new `READ_LINE` displaces the waiting one, which gets
/// [`Error::Busy`] (so that a restarted shell is never locked out by its dead predecessor). A line is at most
/// [`console::LINE_MAX`] bytes; CR or LF ends it (CR LF counts once); backspace (0x08) and DEL
/// (0x7f) erase the last byte. Typed bytes are echoed. Lines typed while nobody reads wait in a
/// queue of [`console::QUEUED_LINES`]; when it is full the oldest is dropped.
///
/// Clients are told apart by badge (the manifest compiler gives each sender a badge of its own).
/// A client's output always starts on a line of its own: if another client left a line open
/// (a prompt, say), the console ends it first. No client can complete, and so forge, a line
/// that another began.
pub mod console {
    /// Print bytes.
    pub const WRITE: u64 = 1;
    /// Wait for one typed line.
    pub const READ_LINE: u64 = 2;
    /// The badge bit that lets a client read lines (badges below it are the client's identity,
    /// by default its pid).
    pub const READER: u64 = 1 << 32;
    /// Longest line: one payload, so a reader needs no lease.
    pub const LINE_MAX: usize = brainix_abi::MAX_PAYLOAD;
    /// Largest `WRITE` the console takes in one call; more is [`brainix_abi::Error::OutOfRange`].
    /// Sized for a full screen of `ps` output.
    pub const WRITE_MAX: u64 = 4096;
    /// Complete lines kept while no reader waits. Four covers a pasted command or two.
    pub const QUEUED_LINES: usize = 4;

    /// The console server's slots.
    pub mod slots {
        /// The console endpoint, with `RECEIVE`.
        pub const ENDPOINT: u16 = 0;
        /// I/O ports `0x3f8..0x400` (COM1), read and write.
        pub const COM1: u16 = 1;
        /// IRQ 4 (COM1), as notification bit [`super::IRQ_BIT`].
        pub const IRQ: u16 = 2;
        /// The kernel log, for the panic handler.
        pub const LOG: u16 = 3;
    }

    /// The notification bit the manifest assigns to COM1's IRQ.
    pub const IRQ_BIT: u8 = 0;
}

/// The supervisor (`init`): starts nothing itself, but stops and restarts the processes it
/// holds process-control capabilities for, and reports their deaths.
///
/// | label | request | reply |
/// | --- | --- | --- |
/// | [`supervisor::KILL`] | `regs[0]` = pid | status |
/// | [`supervisor::START`] | `regs[0]` = pid; restarts it (or starts it the first time) | status; `regs[0]` = new generation |
///
/// A pid the supervisor holds no process-control capability for is [`Error::OutOfRange`].
pub mod supervisor {
    /// Stop a process.
    pub const KILL: u64 = 1;
    /// Start or restart a process.
    pub const START: u64 = 2;

    /// The supervisor's slots. Every slot from [`slots::FIRST_CONTROL`] on holds a
    /// process-control capability; the supervisor finds their targets with `audit_cap`.
    pub mod slots {
        /// The kernel log.
        pub const LOG: u16 = 0;
        /// Audit (read-only observation), to read exit reasons and its own capability table.
        pub const AUDIT: u16 = 1;
        /// The supervisor endpoint, with `RECEIVE`.
        pub const ENDPOINT: u16 = 2;
        /// The first process-control capability.
        pub const FIRST_CONTROL: u16 = 3;
    }

    /// Restarts of one process before the supervisor stops trying: a program that dies at once
    /// every time would otherwise keep the machine busy forever.
    pub const MAX_RESTARTS: u32 = 8;
}

/// The auditor: an observe-only server. It prints a report of the whole system on request and
/// a line whenever a process dies.
pub mod auditor {
    /// Print the full report (processes, capability tables against the manifest, page tables,
    /// memory); the reply comes when it is printed.
    pub const REPORT: u64 = 1;

    /// The auditor's slots; its report capabilities (test system) follow.
    pub mod slots {
        /// Its endpoint, `RECEIVE` only.
        pub const ENDPOINT: u16 = 0;
        /// The console endpoint, `SEND`, for its output.
        pub const CONSOLE: u16 = 1;
        /// Audit (read-only observation).
        pub const AUDIT: u16 = 2;
    }
}

/// The consent service (INV-ASSIST): an assist tenant may only propose an action; the action
/// runs only after `approve <id>` typed on the trusted console, once. `deny <id>`, or no answer
/// before the proposal's deadline, denies it.
pub mod consent {
    /// Propose: `regs[0]` the action ([`RESTART`]), `regs[1]` the target pid, `regs[2]` how long
    /// to wait for an answer in ms (clamped to [`MIN_WAIT_MS`]..=[`MAX_WAIT_MS`]). The reply
    /// comes at once: `regs[0]` the proposal's id. [`brainix_abi::Error::Busy`] while another
    /// proposal is pending; [`brainix_abi::Error::OutOfRange`] for an action or target the
    /// service does not offer.
    pub const PROPOSE: u64 = 1;
    /// Wait for proposal `regs[0]` to be decided: OK when it was approved and ran,
    /// [`brainix_abi::Error::MissingRight`] when denied, [`brainix_abi::Error::Timeout`] when
    /// nobody answered in time; another error is the action's own failure.
    pub const AWAIT: u64 = 2;
    /// Decide proposal `regs[0]`: `regs[1]` 1 approves, 0 denies. Only from a sender whose badge
    /// has [`TRUSTED`] (the shell on the trusted console); anyone else gets
    /// [`brainix_abi::Error::MissingRight`]. A proposal that is not the pending one (decided
    /// already, or never made) gets [`brainix_abi::Error::OutOfRange`].
    pub const DECIDE: u64 = 3;

    /// Action: restart a process.
    pub const RESTART: u64 = 1;

    /// The badge bit of the trusted console's sender (the manifest gives it to the shell alone).
    pub const TRUSTED: u64 = 1 << 33;

    /// Shortest wait for an answer.
    pub const MIN_WAIT_MS: u64 = 1_000;
    /// Longest wait for an answer.
    pub const MAX_WAIT_MS: u64 = 120_000;

    /// The consent service's slots: then one process-control capability per process an
    /// approved action may restart.
    pub mod slots {
        /// Its endpoint, `RECEIVE`.
        pub const ENDPOINT: u16 = 0;
        /// The console endpoint, `SEND`, to show proposals and decisions.
        pub const CONSOLE: u16 = 1;
        /// Audit (read-only), to name processes.
        pub const AUDIT: u16 = 2;
        /// The first process-control capability.
        pub const FIRST_CONTROL: u16 = 3;
    }

    /// The assist tenant's slots (test system); its report capabilities follow.
    pub mod tenant {
        /// The consent endpoint, `SEND`, without [`super::TRUSTED`].
        pub const CONSENT: u16 = 0;
        /// The console endpoint, `SEND`.
        pub const CONSOLE: u16 = 1;
        /// Audit (read-only), to see whether an action happened.
        pub const AUDIT: u16 = 2;
    }
}

/// The system-call fuzzer (test system): runs seeded random system calls on request.
pub mod fuzz {
    /// Run `regs[0]` random calls from seed `regs[1]`; the reply's words are the calls made,
    /// those refused with an error, and the seed.
    pub const RUN: u64 = 1;
    /// Most calls one request may ask for.
    pub const MAX_CALLS: u64 = 10_000_000;

    /// The fuzzer's slots: what its random calls have to play with.
    pub mod slots {
        /// Its endpoint, `RECEIVE` only: never dropped or revoked by the fuzzing.
        pub const ENDPOINT: u16 = 0;
        /// The echo endpoint, `SEND`.
        pub const ECHO: u16 = 1;
        /// Port `0x80`, read.
        pub const PORT: u16 = 2;
        /// Audit (read-only observation).
        pub const AUDIT: u16 = 3;
    }
}

/// The echo server: answers every call with the message it got (label, words and payload).
/// `ipc-bench` times call/reply round trips to it; the test system also runs a second copy,
/// never started, as a server that is not there (`dead-endpoint`).
pub mod echo {
    /// The echo server's slots.
    pub mod slots {
        /// The endpoint it serves, with `RECEIVE`.
        pub const ENDPOINT: u16 = 0;
    }
}

/// Every virtio device server (`drivers/`): one process per device, holding that device and
/// nothing else.
///
/// A server blocks for its device's interrupt by receiving on a private endpoint that nobody can
/// send to ([`driver::slots::IRQ_WAIT`]): the only thing that can arrive there is a
/// notification, so the wait never takes a client's request out of turn.
pub mod driver {
    /// The notification bit the manifests give a device server's interrupt.
    pub const IRQ_BIT: u8 = 0;

    /// A device server's slots.
    pub mod slots {
        /// The endpoint it serves, with `RECEIVE`.
        pub const ENDPOINT: u16 = 0;
        /// Its private endpoint, `RECEIVE` only, with no senders: where it waits for its IRQ.
        pub const IRQ_WAIT: u16 = 1;
        /// The kernel log.
        pub const LOG: u16 = 2;
        /// Its DMA pool.
        pub const DMA: u16 = 3;
        /// Its device's interrupt (`device-irq`, or `irq` for a virtio-mmio device).
        pub const IRQ: u16 = 4;
        /// `device-config` of a PCI device (PCI transport), or the `mmio` page holding a
        /// virtio-mmio device's registers (MMIO transport).
        pub const DEVICE: u16 = 5;
        /// The first `device-bar` region of a PCI device; more may follow.
        pub const FIRST_BAR: u16 = 6;
    }
}

/// The block server (`drivers/virtio-blk`): sectors of 512 bytes, moved through leases.
///
/// | label | request | reply |
/// | --- | --- | --- |
/// | [`block::INFO`] | | `regs[0]` = sectors, `regs[1]` = most sectors per request, `regs[2]` = 1 if read-only |
/// | [`block::READ`] | `regs[0]` = first sector, `regs[1]` = count (1 to [`block::MAX_SECTORS`]); lease 0 (`WRITE`) at least `count * 512` bytes | `regs[0]` = bytes |
/// | [`block::WRITE`] | the same, lease 0 (`READ`) | `regs[0]` = bytes |
/// | [`block::FLUSH`] | | |
///
/// Errors: [`Error::OutOfRange`] for sectors past the end or a bad count, [`Error::BadLease`]
/// for a missing or short lease, [`Error::Io`] when the device fails the request,
/// [`Error::NoSuchCall`] for any other label.
pub mod block {
    /// Capacity and limits.
    pub const INFO: u64 = 1;
    /// Read sectors.
    pub const READ: u64 = 2;
    /// Write sectors.
    pub const WRITE: u64 = 3;
    /// Flush the device's write cache.
    pub const FLUSH: u64 = 4;
    /// Only in the fault-injection build (`virtio-blk-faulty`, test system): the server writes
    /// through a null pointer, so the tests can watch a driver die, be reported and restarted.
    pub const CRASH: u64 = 0x7e;
    /// Bytes per sector.
    pub const SECTOR: usize = 512;
    /// Most sectors one request moves (64 KiB): the server's DMA buffer.
    pub const MAX_SECTORS: u64 = 128;
}

/// The entropy server (`drivers/virtio-rng`): bytes from the virtio entropy device. The kernel
/// never depends on it (it requires RDRAND); programs that want a second source ask here.
///
/// | label | request | reply |
/// | --- | --- | --- |
/// | [`entropy::READ`] | `regs[0]` = bytes wanted, 1 to [`brainix_abi::MAX_PAYLOAD`] | the bytes in the payload; `regs[0]` = count |
///
/// Errors: [`Error::OutOfRange`] for a count outside the range, [`Error::Io`] when the device
/// fails or returns nothing.
pub mod entropy {
    /// Random bytes.
    pub const READ: u64 = 1;
}

/// The link server (`drivers/virtio-net`): raw Ethernet frames, the network stack's lowest
/// layer. One frame per call, through the caller's lease.
///
/// | label | request | reply |
/// | --- | --- | --- |
/// | [`link::INFO`] | | `regs[0]` = MAC (6 bytes, little-endian), `regs[1]` = largest frame |
/// | [`link::SEND`] | `regs[0]` = frame length (14 to [`link::MTU`]); lease 0 (`READ`) holds the frame | `regs[0]` = bytes sent |
/// | [`link::RECV`] | `regs[0]` = timeout in ms; lease 0 (`WRITE`) gets the frame | `regs[0]` = frame length |
///
/// Errors: [`Error::Timeout`] when no frame came in time, [`Error::OutOfRange`] for a bad
/// length, [`Error::BadLease`] for a missing or short lease, [`Error::Io`] when the device fails.
pub mod link {
    /// MAC address and limits.
    pub const INFO: u64 = 1;
    /// Send one frame.
    pub const SEND: u64 = 2;
    /// Take the next frame received.
    pub const RECV: u64 = 3;
    /// Largest frame without the FCS: 1500 bytes of payload and the 14-byte header.
    pub const MTU: usize = 1514;
}

/// The IP server (`netstack/ip`): IPv4 on one interface, ARP, ICMP echo; a client of the link
/// server. Its interface is static: the `interface` the manifest gives it, written into its
/// configuration block ([`crate::config`]).
///
/// | label | request | reply |
/// | --- | --- | --- |
/// | [`ip::PING`] | `regs[0]` = destination address (big-endian in the low 32 bits), `regs[1]` = sequence number | `regs[0]` = round trip in TSC ticks, `regs[1]` = the reply's TTL |
/// | [`ip::INFO`] | | `regs[0]` = this host's address, `regs[1]` = prefix length, `regs[2]` = gateway |
/// | [`ip::STATS`] | | `regs[0]` = frames in, `regs[1]` = frames out, `regs[2]` = echo requests answered, `regs[3]` = frames dropped; payload = one little-endian `u64` per drop reason, in `brainix_wire::Drop` order |
///
/// `SEND` and `RECV` serve the transport server alone ([`ip::TRANSPORT_BADGE`]).
///
/// Errors: [`Error::Timeout`] when no echo reply (or no ARP answer) came within
/// [`ip::PING_TIMEOUT_MS`], [`Error::PeerDead`] when there is no link server,
/// [`Error::Io`] when the link server failed.
pub mod ip {
    /// Send one ICMP echo request and wait for its reply.
    pub const PING: u64 = 1;
    /// Counters.
    pub const STATS: u64 = 2;
    /// Transport server only: send one transport-layer message. `regs[0]` = destination
    /// address, `regs[1]` = IP protocol, `regs[2]` = length; lease 0 (`READ`) holds it,
    /// checksum filled with this host's address ([`INFO`]) in the pseudo-header.
    pub const SEND: u64 = 3;
    /// Transport server only: the next UDP datagram or TCP segment for this host, in arrival
    /// order, waiting up to `regs[0]` ms (at most [`RECV_WAIT_MAX_MS`]). Lease 0 (`WRITE`) gets
    /// it (header included, its checksum already verified); reply `regs[0]` = length, `regs[1]` = source address,
    /// `regs[2]` = IP protocol.
    pub const RECV: u64 = 4;
    /// The interface: address, prefix, gateway.
    pub const INFO: u64 = 5;
    /// Only in the fault-injection build (`ip-faulty`, test system): the server dies of a page
    /// fault, so the tests can watch the IP server fail and be restarted under its clients.
    pub const CRASH: u64 = 0x7e;
    /// The longest a `RECV` waits: other clients (a `ping`) wait behind it.
    pub const RECV_WAIT_MAX_MS: u64 = 50;
    /// The badge the manifest gives the transport server's capability to the IP endpoint:
    /// `SEND` and `RECV` are refused ([`crate::Error::MissingRight`]) to every other badge, so
    /// no process reaches UDP or TCP but through the transport server's grants.
    pub const TRANSPORT_BADGE: u64 = 0x7472_616e_7370_6f72;
    /// How long `PING` waits for the answer (ARP included).
    pub const PING_TIMEOUT_MS: u64 = 2000;

    /// One interface's static IPv4 configuration.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Config {
        /// This host's address.
        pub address: [u8; 4],
        /// Prefix length of the local network.
        pub prefix: u8,
        /// Where everything off the local network goes.
        pub gateway: [u8; 4],
    }

    /// The IP server's slots.
    pub mod slots {
        /// The IP endpoint, with `RECEIVE`.
        pub const ENDPOINT: u16 = 0;
        /// The link server's endpoint, with `SEND`.
        pub const LINK: u16 = 1;
        /// The kernel log.
        pub const LOG: u16 = 2;
    }
}

/// The transport server (`netstack/transport`): UDP sockets and TCP connections, default deny.
/// A client reaches the
/// network only as far as its grant says, and the grant is its badge on the transport endpoint,
/// set in the manifest (the kernel attaches it; no client can claim another). See
/// [`transport::Grant`] for the layout.
///
/// | label | request | reply |
/// | --- | --- | --- |
/// | [`transport::BIND`] | `regs[0]` = local UDP port | |
/// | [`transport::SEND_TO`] | `regs[0]` = bound local port, `regs[1]` = remote address (big-endian, low 32 bits), `regs[2]` = remote port, `regs[3]` = length (at most [`transport::MAX_DATAGRAM`]); lease 0 (`READ`) | `regs[0]` = bytes sent |
/// | [`transport::RECV_FROM`] | `regs[0]` = bound local port, `regs[1]` = timeout in ms; lease 0 (`WRITE`) | `regs[0]` = length, `regs[1]` = remote address, `regs[2]` = remote port |
/// | [`transport::STATS`] | | `regs[0]` = requests denied, `regs[1]` = datagrams delivered, `regs[2]` = datagrams sent, `regs[3]` = datagrams dropped (no socket, or a sender outside the grant) |
/// | [`transport::LISTEN`] | `regs[0]` = local TCP port | |
/// | [`transport::ACCEPT`] | `regs[0]` = listening port, `regs[1]` = wait in ms | `regs[0]` = connection, `regs[1]` = remote address, `regs[2]` = remote port |
/// | [`transport::CONNECT`] | `regs[0]` = local port, `regs[1]` = remote address, `regs[2]` = remote port, `regs[3]` = wait in ms | `regs[0]` = connection, `regs[1]` = 1 once open, 0 while the handshake still runs (errors then come from the next call) |
/// | [`transport::SEND`] | `regs[0]` = connection, `regs[1]` = length, `regs[2]` = wait in ms; lease 0 (`READ`) | `regs[0]` = bytes taken into the send buffer (at least 1; it waits for room) |
/// | [`transport::RECV`] | `regs[0]` = connection, `regs[1]` = most bytes, `regs[2]` = wait in ms; lease 0 (`WRITE`) | `regs[0]` = bytes received, 0 once the peer closed and all was read |
/// | [`transport::CLOSE`] | `regs[0]` = connection | FIN after what was sent; the connection is released |
/// | [`transport::ABORT`] | `regs[0]` = connection | RST; the connection is released |
/// | [`transport::TCP_STATS`] | | `regs[0]` = requests denied, `regs[1]` = connections opened, `regs[2]` = retransmissions, `regs[3]` = segments refused (malformed, for no connection or listener, or breaking a TCP rule) |
///
/// Every wait is bounded by [`transport::RECV_WAIT_MAX_MS`]. A request that must wait is parked
/// in the server, which serves other clients meanwhile and keeps TCP running (segments in,
/// timers, segments out); it is answered when what it waits for comes, or at its deadline.
///
/// Errors: [`Error::MissingRight`] when the caller's grant does not name the port, protocol or
/// remote (counted as denied; nothing is sent), [`Error::NotFound`] for a port the caller has
/// not bound or listened on, or a connection that is not its own (or was released),
/// [`Error::Busy`] for a port another client bound or listens on, [`Error::NoSpace`] when every
/// socket, listener or connection is taken, [`Error::Timeout`] when nothing came within the
/// wait (try again). A connection fails with [`Error::Reset`] when the peer refused or reset it,
/// and [`Error::Unreachable`] when the peer stopped answering (retransmissions ran out); its
/// client then releases it with `CLOSE`. [`Error::PeerDead`] means the transport server itself
/// went away: its connections are gone.
///
/// The combined network server (`netstack/combined`: link, IP and transport in one process, on
/// a network card of its own) serves the same protocol on its own endpoint; its slots are a
/// device server's ([`driver::slots`], [`driver::slots::ENDPOINT`] the transport endpoint).
pub mod transport {
    /// Bind a UDP port.
    pub const BIND: u64 = 1;
    /// Send a datagram.
    pub const SEND_TO: u64 = 2;
    /// Receive a datagram.
    pub const RECV_FROM: u64 = 3;
    /// Counters.
    pub const STATS: u64 = 4;
    /// Listen on a TCP port.
    pub const LISTEN: u64 = 5;
    /// Take a connection that came in on a listening port.
    pub const ACCEPT: u64 = 6;
    /// Open a TCP connection.
    pub const CONNECT: u64 = 7;
    /// Send on a connection.
    pub const SEND: u64 = 8;
    /// Receive from a connection.
    pub const RECV: u64 = 9;
    /// Close a connection (FIN).
    pub const CLOSE: u64 = 10;
    /// Abort a connection (RST).
    pub const ABORT: u64 = 11;
    /// TCP counters.
    pub const TCP_STATS: u64 = 12;
    /// Only in the fault-injection build (`transport-faulty`, test system): the server dies of a
    /// page fault, so the tests can watch the transport server fail under its clients and be
    /// restarted while the IP and link servers carry on.
    pub const CRASH: u64 = 0x7e;
    /// Largest UDP payload: a 1500-byte IP packet less the IP and UDP headers.
    pub const MAX_DATAGRAM: usize = 1472;
    /// How long one `RECV_FROM`, `ACCEPT`, `CONNECT`, `SEND` or `RECV` may wait (parked in the
    /// server, which serves other clients meanwhile); a client waiting longer calls again.
    pub const RECV_WAIT_MAX_MS: u64 = 200;

    /// The most grants one transport server enforces (the manifest compiler refuses more).
    /// Sized for a system's worth of network clients, and so that the records fit in one
    /// [`crate::config::BLOCK`].
    pub const MAX_GRANTS: usize = 32;

    /// The part of a badge that marks it as a grant; the low 16 bits are the grant's index in
    /// the transport server's configuration. The manifest compiler gives these badges only to
    /// `socket` capabilities and refuses an explicit badge on an endpoint that serves sockets,
    /// so a plain badge (a pid) is never a grant.
    pub const GRANT_BADGE: u64 = 0x736f_636b_6574_0000;

    /// The badge of grant `index`.
    pub const fn grant_badge(index: u16) -> u64 {
        GRANT_BADGE | index as u64
    }

    /// The grant index a badge carries, if it is a grant's.
    pub const fn grant_index(badge: u64) -> Option<u16> {
        if badge & !0xffff == GRANT_BADGE {
            Some(badge as u16)
        } else {
            None
        }
    }

    /// A transport protocol a grant names.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Protocol {
        /// UDP.
        Udp,
        /// TCP.
        Tcp,
    }

    /// Ports `first..=last`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct PortRange {
        /// The first port.
        pub first: u16,
        /// The last port, at least `first`.
        pub last: u16,
    }

    impl PortRange {
        /// Whether `port` lies in the range.
        pub fn contains(&self, port: u16) -> bool {
            (self.first..=self.last).contains(&port)
        }
    }

    /// A socket grant: what one `socket` capability of the manifest lets its holder reach.
    /// The transport server holds the grants in its configuration block
    /// ([`crate::config`]); a client's badge names its grant ([`grant_badge`]), and the kernel
    /// attaches the badge, so no client can claim another's.
    ///
    /// ```toml
    /// { type = "socket", endpoint = "transport", protocol = "tcp", local_ports = "7",
    ///   remote = "10.0.2.0/24", remote_ports = "1-65535" }
    /// ```
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Grant {
        /// The protocol.
        pub protocol: Protocol,
        /// The local ports it may bind, listen on or send from.
        pub local_ports: PortRange,
        /// Remote network address.
        pub remote: [u8; 4],
        /// Remote network prefix length, 0 to 32.
        pub prefix: u8,
        /// The remote ports it may reach, and hear from.
        pub remote_ports: PortRange,
    }

    impl Grant {
        /// Whether the grant covers local `port` for `protocol`.
        pub fn local(&self, protocol: Protocol, port: u16) -> bool {
            self.protocol == protocol && port != 0 && self.local_ports.contains(port)
        }

        /// Whether `addr`, port `port`, lies in what the grant reaches.
        pub fn reaches(&self, addr: [u8; 4], port: u16) -> bool {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(self.prefix.min(32)))
                .unwrap_or(0);
            u32::from_be_bytes(addr) & mask == u32::from_be_bytes(self.remote) & mask
                && self.remote_ports.contains(port)
        }
    }

    /// The transport server's slots.
    pub mod slots {
        /// The transport endpoint, with `RECEIVE`.
        pub const ENDPOINT: u16 = 0;
        /// The IP server's endpoint, with `SEND` and [`crate::ip::TRANSPORT_BADGE`].
        pub const IP: u16 = 1;
        /// The kernel log.
        pub const LOG: u16 = 2;
    }

    /// The test clients' slots (`udp-echo`, `udp-probe`, `tcp-echo`, `tcp-probe`).
    pub mod client_slots {
        /// The console, `SEND`.
        pub const CONSOLE: u16 = 0;
        /// The transport endpoint, `SEND`, badge = the grant (or none).
        pub const TRANSPORT: u16 = 1;
        /// `udp-echo` and `tcp-echo`: an endpoint of their own, `RECEIVE`, that nobody sends
        /// to: they wait there (with a timeout) between attempts while the transport server is
        /// down.
        pub const NAP: u16 = 2;
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_grant_badge_names_its_index_and_a_plain_badge_names_none() {
            for i in [0, 1, 31, u16::MAX] {
                assert_eq!(grant_index(grant_badge(i)), Some(i));
            }
            for plain in [0, 2, 31, 0x1_0000_0002, GRANT_BADGE ^ 1 << 16, u64::MAX] {
                assert_eq!(grant_index(plain), None, "{plain:#x}");
            }
        }

        #[test]
        fn a_grant_covers_its_protocol_ports_and_remotes_only() {
            let g = Grant {
                protocol: Protocol::Tcp,
                local_ports: PortRange { first: 7, last: 9 },
                remote: [10, 0, 2, 0],
                prefix: 24,
                remote_ports: PortRange {
                    first: 1024,
                    last: 2048,
                },
            };
            assert!(g.local(Protocol::Tcp, 7) && g.local(Protocol::Tcp, 9));
            assert!(!g.local(Protocol::Udp, 7) && !g.local(Protocol::Tcp, 10));
            assert!(g.reaches([10, 0, 2, 2], 1024) && g.reaches([10, 0, 2, 255], 2048));
            assert!(!g.reaches([10, 0, 2, 2], 1023) && !g.reaches([10, 0, 2, 2], 2049));
            assert!(!g.reaches([10, 0, 3, 2], 1500) && !g.reaches([8, 8, 8, 8], 1500));
            let any = Grant { prefix: 0, ..g };
            assert!(any.reaches([8, 8, 8, 8], 1500));
            let zero = Grant {
                local_ports: PortRange { first: 0, last: 0 },
                ..g
            };
            assert!(!zero.local(Protocol::Tcp, 0), "port 0 is never bound");
        }
    }
}

/// The filesystem server (`userland/fs`): flat namespace of files over the block server, every
/// block checksummed (`docs/filesystem.md`). Names travel in the payload (1 to
/// [`fs::NAME_MAX`] bytes of printable ASCII, no `/`); data in leases.
///
/// | label | request | reply |
/// | --- | --- | --- |
/// | [`fs::LIST`] | `regs[0]` = first entry index to look at | `regs[0]` = index of the entry found, `regs[1]` = size; payload = name; [`Error::NotFound`] past the last |
/// | [`fs::STAT`] | name | `regs[0]` = size, `regs[1]` = data blocks, `regs[2]` = entry index |
/// | [`fs::READ`] | name; `regs[0]` = offset; lease 0 (`WRITE`) | `regs[0]` = bytes read (0 at the end) |
/// | [`fs::WRITE`] | name; `regs[0]` = offset, `regs[1]` = [`fs::TRUNCATE`] or 0; lease 0 (`READ`) | `regs[0]` = bytes written; creates the file |
/// | [`fs::REMOVE`] | name | |
/// | [`fs::BENCH`] | name | reads the whole file from the block server inside the filesystem server (checksums verified, nothing returned): `regs[0]` = bytes, `regs[1]` = TSC ticks taken |
/// | [`fs::INFO`] | | `regs[0]` = blocks, `regs[1]` = free blocks, `regs[2]` = files, `regs[3]` = most files |
///
/// Errors: [`Error::NotFound`], [`Error::Exists`], [`Error::NoSpace`], [`Error::Corrupt`] (a
/// checksum failed: the data is not returned), [`Error::Io`], [`Error::PeerDead`] (no block
/// server), [`Error::OutOfRange`] (a bad name, offset or size).
pub mod fs {
    /// List entries.
    pub const LIST: u64 = 1;
    /// Size and blocks of one file.
    pub const STAT: u64 = 2;
    /// Read from a file.
    pub const READ: u64 = 3;
    /// Write to a file, creating it.
    pub const WRITE: u64 = 4;
    /// Remove a file.
    pub const REMOVE: u64 = 5;
    /// Time a whole-file read without the client hop.
    pub const BENCH: u64 = 6;
    /// Sizes and counts.
    pub const INFO: u64 = 7;
    /// `WRITE` flag: the file ends where this write ends.
    pub const TRUNCATE: u64 = 1;
    /// Longest file name.
    pub const NAME_MAX: usize = 55;

    /// The filesystem server's slots.
    pub mod slots {
        /// The endpoint it serves, with `RECEIVE`.
        pub const ENDPOINT: u16 = 0;
        /// The block server, `SEND`.
        pub const BLOCK: u16 = 1;
        /// The kernel log.
        pub const LOG: u16 = 2;
    }

    /// Whether `name` is a valid file name.
    pub fn valid_name(name: &[u8]) -> bool {
        (1..=NAME_MAX).contains(&name.len())
            && name.iter().all(|&b| b.is_ascii_graphic() && b != b'/')
    }
}

/// The shell's slots.
pub mod shell {
    /// The check id the shell reports once, just before it first reads the console
    /// (`docs/serial-protocol.md`: the console is ready for typed input).
    pub const READY: &str = "shell.ready";

    /// The shell's slots.
    pub mod slots {
        /// The console endpoint, `SEND`.
        pub const CONSOLE: u16 = 0;
        /// The supervisor endpoint, `SEND`.
        pub const SUPERVISOR: u16 = 1;
        /// Audit (read-only observation) for `ps`, `caps`, `mem`.
        pub const AUDIT: u16 = 2;
        /// The echo endpoint, `SEND`, for `ipc-bench`.
        pub const ECHO: u16 = 3;
        /// The auditor's endpoint, `SEND`, for `audit` (slots 4 and 5 are report capabilities).
        pub const AUDITOR: u16 = 6;
        /// The consent endpoint, `SEND` with the [`super::super::consent::TRUSTED`] badge bit,
        /// for `approve` and `deny`.
        pub const CONSENT: u16 = 7;
        /// The filesystem endpoint, `SEND`, for `ls`, `cat`, `write`, `rm`, `stat`, `df`.
        pub const FS: u16 = 8;
        /// The entropy endpoint, `SEND`, for `random`.
        pub const ENTROPY: u16 = 9;
        /// The fuzzer's endpoint, `SEND`, for `fuzz` (test system only).
        pub const FUZZ: u16 = 10;
        /// The IP server's endpoint (`ping`, `netstat`); test system only.
        pub const IP: u16 = 12;
    }
}

/// The attack programs (negative tests). Every one holds the console in slot 0 and the object it
/// attacks, if any, in slot 1; its report capabilities come last.
pub mod attack {
    use brainix_abi::layout::{IMAGE_BASE, IMAGE_END, STACK_TOP, region};

    /// The attack programs' slots.
    pub mod slots {
        /// The console endpoint, `SEND`, for the result line.
        pub const CONSOLE: u16 = 0;
        /// The capability under attack (which one depends on the test).
        pub const TARGET: u16 = 1;
    }

    /// An address in the kernel's window (the top 2 GiB, where the kernel image is linked). With
    /// KPTI no user page table maps anything there.
    pub const KERNEL_ADDR: u64 = 0xffff_ffff_8010_0000;

    /// `ProcessInfo::last_exit` of a process killed by a page fault (`0x100 + vector 14`).
    pub const PAGE_FAULT_EXIT: u64 = 0x100 + 14;

    /// An attempt the kernel must answer by killing the process with a page fault at an address
    /// in `lo..hi`: the supervisor, which holds the check's report capability, judges it.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Fault {
        /// The attacking process's name in the manifest.
        pub process: &'static str,
        /// Lowest faulting address that counts.
        pub lo: u64,
        /// One past the highest.
        pub hi: u64,
    }

    /// Every attack judged by its fault.
    pub const FAULTS: &[Fault] = &[
        Fault {
            process: "kernel-read",
            lo: KERNEL_ADDR,
            hi: KERNEL_ADDR + 1,
        },
        Fault {
            process: "kernel-write",
            lo: KERNEL_ADDR,
            hi: KERNEL_ADDR + 1,
        },
        // Its own text, inside the image window.
        Fault {
            process: "write-text",
            lo: IMAGE_BASE,
            hi: IMAGE_END,
        },
        // An instruction fetch from its stack (at most 1 MiB under the top).
        Fault {
            process: "exec-stack",
            lo: STACK_TOP - (1 << 20),
            hi: STACK_TOP,
        },
        // A write to its read-only MMIO region in slot 1.
        Fault {
            process: "region-probe",
            lo: region(1),
            hi: region(1) + 4096,
        },
    ];

    /// The expectation for `process`, if its death is a verdict.
    pub fn fault_for(process: &str) -> Option<&'static Fault> {
        FAULTS.iter().find(|f| f.process == process)
    }

    impl Fault {
        /// PASS only for a page fault inside the expected range: an exit (the attempt got
        /// through), another exception, or a fault elsewhere (a bug before the attempt) fails.
        pub fn judge(&self, last_exit: u64, fault_addr: u64) -> bool {
            last_exit == PAGE_FAULT_EXIT && (self.lo..self.hi).contains(&fault_addr)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_passes_only_as_the_expected_page_fault_at_the_expected_place() {
        use attack::*;
        let k = fault_for("kernel-read").unwrap();
        assert!(k.judge(PAGE_FAULT_EXIT, KERNEL_ADDR));
        assert!(!k.judge(PAGE_FAULT_EXIT, KERNEL_ADDR + 0x1000), "elsewhere");
        assert!(
            !k.judge(0x100 + 13, KERNEL_ADDR),
            "a #GP is not the refusal"
        );
        assert!(!k.judge(1, 0), "it exited: the attempt got through");
        let t = fault_for("write-text").unwrap();
        assert!(t.judge(PAGE_FAULT_EXIT, 0x40_1234) && !t.judge(PAGE_FAULT_EXIT, 0));
        assert!(fault_for("shell").is_none());
    }

    #[test]
    fn status_round_trips_every_error() {
        let mut m = Message::new(status_of(Ok(())));
        assert_eq!(status(&m), Ok(()));
        for code in (1..=13).chain(15..=21) {
            let e = Error::from_code(code).unwrap();
            m.label = status_of(Err(e));
            assert_eq!(status(&m), Err(e));
        }
        m.label = 999;
        assert_eq!(status(&m), Err(Error::NoSuchCall));
    }
}
