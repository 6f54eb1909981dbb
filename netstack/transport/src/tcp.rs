//! # TCP: a fixed pool of connections, driven by segments, the clock and the clients' calls
//!
//! [`Tcp`] is pure: no IPC and no clock of its own, so every rule here is tested on the host.
//! The server feeds it each TCP segment for this host ([`Tcp::input`]), the time
//! ([`Tcp::tick`]) and its clients' calls (listen, accept, connect, send, receive, close,
//! abort), and takes the segments to send ([`Tcp::output`], one per call, into the caller's
//! buffer). Times are milliseconds of uptime.
//!
//! What it does:
//! - the three-way handshake both ways, with the maximum segment size option on the SYN;
//! - retransmission: one timer per connection (RFC 6298: smoothed round trip, Karn's rule, the
//!   timeout doubled on each expiry), which resends everything unacknowledged (SYN, data and FIN
//!   alike) from the oldest byte; the third duplicate acknowledgement resends at once; after
//!   [`RETRIES`] ([`SYN_RETRIES`] for a handshake) the connection dies with
//!   [`Error::Unreachable`];
//! - flow control: never more in flight than the peer's window; our window is the free room in
//!   the receive buffer, re-opened by a window update when the client reads; a zero window is
//!   probed (persist timer);
//! - orderly close (FIN each way, every close state, simultaneous close), TIME-WAIT bounded by
//!   [`TIME_WAIT_MS`];
//! - reset: a segment for no connection or listener gets RST; a client may abort (RST); a RST
//!   received in window tears the connection down and the client gets [`Error::Reset`].
//!
//! Hostile segments never panic: a parse failure is counted by [`Drop`] reason, a segment that
//! breaks a TCP rule by [`Reject`] reason. In-window resets and SYNs on a synchronized connection
//! get a challenge acknowledgement (RFC 5961), not obedience.
//!
//! No heap: [`CONNS`] connections, each with a [`SEND_BUF`] and [`RECV_BUF`] buffer, and
//! [`LISTENERS`] listeners. Segments that arrive out of order are not kept (the peer resends);
//! no congestion control, no window scaling, SACK or timestamps.

use crate::Grants;
use brainix_abi::Error;
use brainix_proto::transport::Protocol;
use brainix_wire::{
    Drop, Drops, Ipv4Addr, TCP_ACK, TCP_FIN, TCP_HEADER, TCP_PSH, TCP_RST, TCP_SYN, Tcp as Segment,
    TcpHeader, tcp_mss,
};

/// Connections at once. The test system's clients each hold one or two; a connection in
/// TIME-WAIT is recycled when a new one needs its slot.
pub const CONNS: usize = 4;
/// Listening ports at once: one per granted server is what the manifests need.
pub const LISTENERS: usize = 4;
/// Send buffer per connection: what the peer has not acknowledged plus what waits for its
/// window. 8 KiB keeps five full segments in flight and the pool at 64 KiB.
pub const SEND_BUF: usize = 8192;
/// Receive buffer per connection, and so the largest window we advertise. 8 KiB (five full
/// segments) fits in the IP server's queue for us, so a full window is never dropped there.
pub const RECV_BUF: usize = 8192;
/// Our maximum segment size: a 1500-byte IP packet less the IP and TCP headers.
pub const MSS: usize = 1460;
/// The segment size assumed when the peer's SYN names none (RFC 9293).
pub const DEFAULT_MSS: usize = 536;
/// The smallest segment size believed from a peer: a smaller one only multiplies segments.
pub const MIN_MSS: usize = 64;
/// The largest segment [`Tcp::output`] writes: header and a full segment (a SYN, with its
/// option, carries no data).
pub const SEGMENT_MAX: usize = TCP_HEADER + MSS;
/// Resets owed to segments for no connection, waiting for [`Tcp::output`]; more are not sent
/// (counted): a flood of strays cannot make us flood back.
pub const RESETS: usize = 4;
/// The retransmission timeout before any round trip is measured (RFC 6298).
pub const RTO_INITIAL_MS: u64 = 1000;
/// The shortest retransmission timeout: above the host's delayed acknowledgement.
pub const RTO_MIN_MS: u64 = 200;
/// The longest retransmission timeout, reached by doubling.
pub const RTO_MAX_MS: u64 = 8000;
/// Retransmissions of a SYN before the connection attempt fails: 1 + 2 + 4 + 8 + 8 s.
pub const SYN_RETRIES: u32 = 5;
/// Retransmissions of data before the connection fails.
pub const RETRIES: u32 = 8;
/// How long a connection stays in TIME-WAIT (2 MSL with the segment lifetime of a LAN, not the
/// Internet's two minutes): bounded, and recycled early when the pool is full.
pub const TIME_WAIT_MS: u64 = 2000;
/// How long a closed connection waits in FIN-WAIT-2 for the peer's FIN before it is dropped.
pub const FIN_WAIT_2_MS: u64 = 20_000;
/// The largest window a peer can offer without window scaling: acknowledgements older than
/// this below our oldest unacknowledged byte are refused (RFC 5961).
const MAX_WINDOW: u32 = 65_535;

/// A connection as the client knows it: slot and generation, so a stale handle fails.
pub type Handle = u64;

/// A connection's state (RFC 9293), plus the slot states of the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// The slot is unused.
    Free,
    /// Our SYN sent, waiting for the peer's.
    SynSent,
    /// The peer's SYN received, ours sent, waiting for its acknowledgement.
    SynReceived,
    /// Open both ways.
    Established,
    /// We closed; our FIN not yet acknowledged.
    FinWait1,
    /// We closed and our FIN is acknowledged; waiting for the peer's.
    FinWait2,
    /// The peer closed; we may still send.
    CloseWait,
    /// Both closed at once; our FIN not yet acknowledged.
    Closing,
    /// The peer closed, then we did; waiting for our FIN's acknowledgement.
    LastAck,
    /// Both closed; lingering for stray segments.
    TimeWait,
    /// Reset or timed out; the client still holds the handle and learns the error.
    Dead(Error),
}

/// Why a well-formed segment was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Reject {
    /// For no connection and no listener: answered with RST (unless it was one).
    NoConnection = 0,
    /// A SYN to a listener whose grant does not reach the sender: answered with RST.
    Denied = 1,
    /// A SYN for a listener while every connection slot is taken: answered with RST.
    NoRoom = 2,
    /// A flag combination TCP does not allow (SYN with FIN or RST, no ACK when one is due).
    BadFlags = 3,
    /// A sequence number outside the receive window: acknowledged, not taken.
    OutOfWindow = 4,
    /// An acknowledgement of data never sent, or far older than anything in flight.
    BadAck = 5,
    /// A SYN on a synchronized connection, or a RST in the window but not at its edge: a
    /// challenge acknowledgement answers it (RFC 5961).
    Challenged = 6,
    /// Data ahead of a gap: not kept, a duplicate acknowledgement asks for the gap.
    OutOfOrder = 7,
}

impl Reject {
    /// How many reasons there are.
    pub const COUNT: usize = 8;
}

/// What the TCP side counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpStats {
    /// Segments handed to [`Tcp::input`].
    pub segments_in: u64,
    /// Segments written by [`Tcp::output`].
    pub segments_out: u64,
    /// Retransmissions: timer expiries and fast retransmits.
    pub retransmits: u64,
    /// Connections that completed their handshake.
    pub opened: u64,
    /// RSTs sent (to strays, on abort, on data after close).
    pub resets_sent: u64,
    /// RSTs that tore a connection down.
    pub resets_received: u64,
    /// RSTs owed but not sent: the queue of [`RESETS`] was full.
    pub resets_unsent: u64,
    /// Connections that died with their retransmissions exhausted.
    pub timed_out: u64,
    /// Client requests refused for want of a grant.
    pub denied: u64,
    /// Segments that did not parse, by reason.
    pub drops: Drops,
    /// Well-formed segments refused, by [`Reject`] reason.
    pub rejects: [u64; Reject::COUNT],
}

impl TcpStats {
    /// The count for `why`.
    pub fn rejected(&self, why: Reject) -> u64 {
        self.rejects[why as usize]
    }

    /// Every refused segment: parse failures and rejections.
    pub fn refused(&self) -> u64 {
        self.rejects
            .iter()
            .fold(self.drops.total(), |a, b| a.saturating_add(*b))
    }
}

/// `a` before `b` in sequence space.
fn lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// `lo <= x < hi` in sequence space.
fn within(x: u32, lo: u32, hi: u32) -> bool {
    x.wrapping_sub(lo) < hi.wrapping_sub(lo)
}

/// A byte ring: what a connection holds for the peer or for the client.
struct Ring<const N: usize> {
    bytes: [u8; N],
    head: usize,
    len: usize,
}

impl<const N: usize> Ring<N> {
    const fn new() -> Self {
        Ring {
            bytes: [0; N],
            head: 0,
            len: 0,
        }
    }

    fn free(&self) -> usize {
        N - self.len
    }

    fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }

    /// Appends up to `max` bytes, which `fill(offset, run)` writes into each contiguous run of
    /// free room and returns how many it wrote. How many were appended.
    fn append_with(
        &mut self,
        max: usize,
        mut fill: impl FnMut(usize, &mut [u8]) -> Result<usize, Error>,
    ) -> Result<usize, Error> {
        let want = max.min(self.free());
        let mut done = 0;
        while done < want {
            let tail = (self.head + self.len) % N;
            let run = (N - tail).min(want - done);
            let got = fill(done, &mut self.bytes[tail..tail + run])?.min(run);
            self.len += got;
            done += got;
            if got < run {
                break;
            }
        }
        Ok(done)
    }

    /// Copies the bytes `offset..offset + out.len()` past the head into `out`.
    fn read_at(&self, offset: usize, out: &mut [u8]) {
        let start = (self.head + offset) % N;
        let first = out.len().min(N - start);
        out[..first].copy_from_slice(&self.bytes[start..start + first]);
        let rest = out.len() - first;
        out[first..].copy_from_slice(&self.bytes[..rest]);
    }

    /// Hands up to `max` bytes from the head to `take(offset, run)`, run by run, and drops
    /// each run `take` accepted. How many were taken.
    fn drain_with(
        &mut self,
        max: usize,
        mut take: impl FnMut(usize, &[u8]) -> Result<(), Error>,
    ) -> Result<usize, Error> {
        let want = max.min(self.len);
        let mut done = 0;
        while done < want {
            let run = (N - self.head).min(want - done);
            take(done, &self.bytes[self.head..self.head + run])?;
            self.consume(run);
            done += run;
        }
        Ok(done)
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.len -= n;
        self.head = if self.len == 0 {
            0
        } else {
            (self.head + n) % N
        };
    }
}

/// A connection's control block: everything but its buffers.
#[derive(Clone, Copy)]
struct Tcb {
    state: State,
    /// Bumped each time the slot is taken: the handle's upper half.
    generation: u32,
    /// The badge of the client it belongs to (for a passive open, the listener's).
    owner: u64,
    /// The client holds the handle (connected, or accepted).
    held: bool,
    /// The listening port it came in on, until accepted.
    listener: Option<u16>,
    local_port: u16,
    remote: Ipv4Addr,
    remote_port: u16,
    iss: u32,
    irs: u32,
    /// Oldest unacknowledged sequence number.
    snd_una: u32,
    /// Next sequence number to send (moved back to `snd_una` to retransmit).
    snd_nxt: u32,
    /// Highest sequence number sent so far.
    snd_max: u32,
    snd_wnd: u32,
    snd_wl1: u32,
    snd_wl2: u32,
    /// The peer's maximum segment size.
    mss: usize,
    /// The client closed: a FIN follows the data.
    fin_queued: bool,
    /// The sequence number our FIN took, once sent.
    fin_seq: Option<u32>,
    rcv_nxt: u32,
    fin_received: bool,
    /// The right edge of the window last advertised.
    rcv_adv: u32,
    /// Send an acknowledgement (or window update) at the next output.
    ack_now: bool,
    /// Send a zero-window probe at the next output.
    probe_now: bool,
    /// Send RST at the next output, then free the slot.
    abort_now: bool,
    rto: u64,
    rto_at: Option<u64>,
    retries: u32,
    /// Smoothed round trip ×8 and its variation ×4 (RFC 6298 in integers); 0: none measured.
    srtt8: u64,
    rttvar4: u64,
    /// The segment being timed: (sequence number that acknowledges it, when it was sent).
    timing: Option<(u32, u64)>,
    dupacks: u32,
    persist_at: Option<u64>,
    probes: u32,
    /// When TIME-WAIT or FIN-WAIT-2 ends.
    linger_at: Option<u64>,
}

/// A connection: its control block and its two buffers, which stay in place when the slot is
/// reused (a fresh control block, emptied buffers).
struct Conn {
    tcb: Tcb,
    /// Data from `snd_una` (the first data byte once the SYN is acknowledged) on.
    send: Ring<SEND_BUF>,
    /// Data received in order, not yet read by the client.
    recv: Ring<RECV_BUF>,
}

impl core::ops::Deref for Conn {
    type Target = Tcb;
    fn deref(&self) -> &Tcb {
        &self.tcb
    }
}

impl core::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Tcb {
        &mut self.tcb
    }
}

impl Tcb {
    const fn new(generation: u32) -> Self {
        Tcb {
            state: State::Free,
            generation,
            owner: 0,
            held: false,
            listener: None,
            local_port: 0,
            remote: [0; 4],
            remote_port: 0,
            iss: 0,
            irs: 0,
            snd_una: 0,
            snd_nxt: 0,
            snd_max: 0,
            snd_wnd: 0,
            snd_wl1: 0,
            snd_wl2: 0,
            mss: DEFAULT_MSS,
            fin_queued: false,
            fin_seq: None,
            rcv_nxt: 0,
            fin_received: false,
            rcv_adv: 0,
            ack_now: false,
            probe_now: false,
            abort_now: false,
            rto: RTO_INITIAL_MS,
            rto_at: None,
            retries: 0,
            srtt8: 0,
            rttvar4: 0,
            timing: None,
            dupacks: 0,
            persist_at: None,
            probes: 0,
            linger_at: None,
        }
    }
}

impl Conn {
    const fn new() -> Self {
        Conn {
            tcb: Tcb::new(0),
            send: Ring::new(),
            recv: Ring::new(),
        }
    }

    /// Empties the slot for a new connection; the generation moves on.
    fn reset(&mut self) {
        self.tcb = Tcb::new(self.generation.wrapping_add(1));
        self.send.clear();
        self.recv.clear();
    }

    fn handle(&self, slot: usize) -> Handle {
        u64::from(self.generation) << 8 | slot as u64
    }

    fn synchronized(&self) -> bool {
        !matches!(
            self.state,
            State::Free | State::SynSent | State::SynReceived | State::Dead(_)
        )
    }

    /// The window we advertise: the free receive buffer.
    fn window(&self) -> u32 {
        self.recv.free().min(MAX_WINDOW as usize) as u32
    }

    /// The sequence number of the first byte in the send buffer.
    fn data_seq(&self) -> u32 {
        if self.snd_una == self.iss {
            self.iss.wrapping_add(1)
        } else {
            self.snd_una
        }
    }

    fn arm(&mut self, now: u64) {
        if self.rto_at.is_none() {
            self.rto_at = Some(now + self.rto);
        }
    }

    /// A round trip measured: the new timeout (RFC 6298, with its clock granularity 1 ms).
    fn sample(&mut self, rtt: u64) {
        if self.srtt8 == 0 {
            self.srtt8 = (rtt << 3).max(1);
            self.rttvar4 = rtt << 1;
        } else {
            let srtt = self.srtt8 >> 3;
            let delta = rtt.abs_diff(srtt);
            self.srtt8 = self.srtt8 - srtt + rtt;
            self.rttvar4 = self.rttvar4 - (self.rttvar4 >> 2) + delta;
        }
        self.rto = ((self.srtt8 >> 3) + self.rttvar4.max(1)).clamp(RTO_MIN_MS, RTO_MAX_MS);
    }
}

struct Listener {
    port: u16,
    owner: u64,
}

/// A RST owed to a segment for no connection.
#[derive(Clone, Copy)]
struct Stray {
    to: Ipv4Addr,
    ports: (u16, u16),
    seq: u32,
    ack: u32,
    flags: u8,
}

/// A connection handed to [`Tcp::accept`]'s caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The connection.
    pub handle: Handle,
    /// The peer's address.
    pub remote: Ipv4Addr,
    /// The peer's port.
    pub remote_port: u16,
}

/// The TCP connections and listeners of one host address.
pub struct Tcp {
    local: Ipv4Addr,
    grants: Grants,
    conns: [Conn; CONNS],
    listeners: [Option<Listener>; LISTENERS],
    strays: [Option<Stray>; RESETS],
    rng: u64,
    /// The counters.
    pub stats: TcpStats,
}

impl Tcp {
    /// No connections, for the host address `local`; clients may do what `grants` say;
    /// `seed` varies the initial sequence numbers (the server gives the cycle counter).
    pub const fn new(local: Ipv4Addr, grants: Grants, seed: u64) -> Self {
        Tcp {
            local,
            grants,
            conns: [const { Conn::new() }; CONNS],
            listeners: [const { None }; LISTENERS],
            strays: [None; RESETS],
            rng: seed | 1,
            stats: TcpStats {
                segments_in: 0,
                segments_out: 0,
                retransmits: 0,
                opened: 0,
                resets_sent: 0,
                resets_received: 0,
                resets_unsent: 0,
                timed_out: 0,
                denied: 0,
                drops: Drops([0; Drop::COUNT]),
                rejects: [0; Reject::COUNT],
            },
        }
    }

    /// Enforces `grants` from now on, and varies the initial sequence numbers by `seed`.
    pub fn configure(&mut self, grants: Grants, seed: u64) {
        self.grants = grants;
        self.rng = seed | 1;
    }

    /// Sets the host address (once the layer below has said it).
    pub fn set_address(&mut self, local: Ipv4Addr) {
        self.local = local;
    }

    /// Whether anything is open (a listener or a connection): the server must then keep taking
    /// segments and running [`Tcp::tick`] between its clients' calls.
    pub fn active(&self) -> bool {
        self.listeners.iter().any(Option::is_some)
            || self.conns.iter().any(|c| c.state != State::Free)
            || self.strays.iter().any(Option::is_some)
    }

    /// The state of the connection `handle` of `owner` (for tests and `netstat`).
    pub fn state(&self, owner: u64, handle: Handle) -> Result<State, Error> {
        self.held(owner, handle).map(|i| self.conns[i].state)
    }

    fn deny(&mut self) -> Error {
        self.stats.denied = self.stats.denied.saturating_add(1);
        Error::MissingRight
    }

    /// An initial sequence number: a fresh pseudo-random number (xorshift) plus the clock.
    fn isn(&mut self, now: u64) -> u32 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 16) as u32 ^ (now as u32).wrapping_mul(250)
    }

    /// The slot of `owner`'s connection `handle`, which it holds.
    fn held(&self, owner: u64, handle: Handle) -> Result<usize, Error> {
        let slot = (handle & 0xff) as usize;
        let c = self.conns.get(slot).ok_or(Error::NotFound)?;
        let current = c.handle(slot) == handle && c.state != State::Free;
        if current && c.held && c.owner == owner {
            Ok(slot)
        } else {
            Err(Error::NotFound)
        }
    }

    /// A slot for a new connection: a free one, else the one longest in TIME-WAIT.
    fn allocate(&mut self) -> Option<usize> {
        if let Some(i) = self.conns.iter().position(|c| c.state == State::Free) {
            self.conns[i].reset();
            return Some(i);
        }
        let i = (0..CONNS)
            .filter(|&i| self.conns[i].state == State::TimeWait)
            .min_by_key(|&i| self.conns[i].linger_at)?;
        self.conns[i].reset();
        Some(i)
    }

    fn free(&mut self, i: usize) {
        self.conns[i].reset();
    }

    /// The connection failed: a client holding it learns `why`; else it is gone.
    fn die(&mut self, i: usize, why: Error) {
        let c = &mut self.conns[i];
        if c.held {
            // Keep the handle (same generation) so the client learns why.
            c.tcb = Tcb {
                state: State::Dead(why),
                owner: c.owner,
                held: true,
                ..Tcb::new(c.generation)
            };
            c.send.clear();
            c.recv.clear();
        } else {
            self.free(i);
        }
    }

    /// Listens on `port` for `owner`, whose grant must name TCP and the port. Listening again
    /// where it listens is no error (a restarted client listens anew).
    pub fn listen(&mut self, owner: u64, port: u16) -> Result<(), Error> {
        if !self.grants.permits(owner, Protocol::Tcp, port, None) {
            return Err(self.deny());
        }
        if let Some(l) = self.listeners.iter().flatten().find(|l| l.port == port) {
            return if l.owner == owner {
                Ok(())
            } else {
                Err(Error::Busy)
            };
        }
        let slot = self.listeners.iter_mut().find(|l| l.is_none());
        *slot.ok_or(Error::NoSpace)? = Some(Listener { port, owner });
        Ok(())
    }

    /// A connection that came in on `owner`'s listening `port` and completed its handshake, if
    /// one waits; the client holds it from now on.
    pub fn accept(&mut self, owner: u64, port: u16) -> Result<Option<Accepted>, Error> {
        if !self.grants.permits(owner, Protocol::Tcp, port, None) {
            return Err(self.deny());
        }
        let mut listening = self.listeners.iter().flatten();
        if !listening.any(|l| l.port == port && l.owner == owner) {
            return Err(Error::NotFound);
        }
        let ready = self.conns.iter().position(|c| {
            c.listener == Some(port)
                && c.owner == owner
                && matches!(c.state, State::Established | State::CloseWait)
        });
        Ok(ready.map(|i| {
            let c = &mut self.conns[i];
            c.listener = None;
            c.held = true;
            Accepted {
                handle: c.handle(i),
                remote: c.remote,
                remote_port: c.remote_port,
            }
        }))
    }

    /// Opens a connection from `owner`'s `local_port` to `remote`:`remote_port`, which its
    /// grant must allow; the SYN goes at the next [`Tcp::output`]. [`Tcp::established`] says
    /// when it is open.
    pub fn connect(
        &mut self,
        owner: u64,
        local_port: u16,
        remote: Ipv4Addr,
        remote_port: u16,
        now: u64,
    ) -> Result<Handle, Error> {
        if !self.grants.permits(
            owner,
            Protocol::Tcp,
            local_port,
            Some((remote, remote_port)),
        ) {
            return Err(self.deny());
        }
        if remote_port == 0 || !unicast(remote) {
            return Err(Error::OutOfRange);
        }
        if let Some(i) = self.find(remote, remote_port, local_port) {
            if self.conns[i].state != State::TimeWait {
                return Err(Error::Busy);
            }
            self.free(i);
        }
        let i = self.allocate().ok_or(Error::NoSpace)?;
        let iss = self.isn(now);
        let c = &mut self.conns[i];
        c.state = State::SynSent;
        c.owner = owner;
        c.held = true;
        c.local_port = local_port;
        c.remote = remote;
        c.remote_port = remote_port;
        c.iss = iss;
        c.snd_una = iss;
        c.snd_nxt = iss;
        c.snd_max = iss;
        Ok(c.handle(i))
    }

    /// Whether the connection is open: `Ok(false)` while its handshake runs, the error it
    /// died of once it failed ([`Error::Reset`]: refused; [`Error::Unreachable`]: no answer).
    pub fn established(&self, owner: u64, handle: Handle) -> Result<bool, Error> {
        match self.conns[self.held(owner, handle)?].state {
            State::Dead(why) => Err(why),
            State::SynSent | State::SynReceived => Ok(false),
            _ => Ok(true),
        }
    }

    /// Takes up to `max` bytes to send, which `read(offset, run)` copies into the send buffer
    /// (from the client's lease); how many were taken (0 when the buffer is full).
    pub fn send_with(
        &mut self,
        owner: u64,
        handle: Handle,
        max: usize,
        read: impl FnMut(usize, &mut [u8]) -> Result<usize, Error>,
    ) -> Result<usize, Error> {
        let c = &mut self.conns[self.held(owner, handle)?];
        match c.state {
            State::Dead(why) => Err(why),
            State::SynSent | State::SynReceived | State::Established | State::CloseWait => {
                c.send.append_with(max, read)
            }
            // Closed for sending: the client closed it.
            _ => Err(Error::NotFound),
        }
    }

    /// Hands up to `max` received bytes to `write(offset, run)` (into the client's lease):
    /// `Some(n)` bytes, `Some(0)` once the peer closed and everything was read, `None` when
    /// nothing waits yet.
    pub fn recv_with(
        &mut self,
        owner: u64,
        handle: Handle,
        max: usize,
        write: impl FnMut(usize, &[u8]) -> Result<(), Error>,
    ) -> Result<Option<usize>, Error> {
        let c = &mut self.conns[self.held(owner, handle)?];
        if let State::Dead(why) = c.state {
            return Err(why);
        }
        if c.recv.len == 0 {
            return Ok(c.fin_received.then_some(0));
        }
        let n = c.recv.drain_with(max, write)?;
        // A window update when the window last advertised is under a segment, or the window
        // has since grown by half the buffer: no silly windows, and not an update per read.
        let advertised = c.rcv_adv.wrapping_sub(c.rcv_nxt) as usize;
        let grown = c.rcv_nxt.wrapping_add(c.window()).wrapping_sub(c.rcv_adv) as usize;
        let open = c.window() as usize >= c.mss.min(RECV_BUF / 2);
        if (advertised < c.mss && open) || grown >= RECV_BUF / 2 {
            c.ack_now = true;
        }
        Ok(Some(n))
    }

    /// Closes the connection: a FIN follows what was sent; the handle is gone. Data still
    /// unread is discarded; data that arrives later is answered with RST.
    pub fn close(&mut self, owner: u64, handle: Handle) -> Result<(), Error> {
        let i = self.held(owner, handle)?;
        let c = &mut self.conns[i];
        let next = match c.state {
            State::SynReceived | State::Established => State::FinWait1,
            State::CloseWait => State::LastAck,
            _ => {
                self.free(i);
                return Ok(());
            }
        };
        c.state = next;
        c.held = false;
        c.recv.clear();
        c.fin_queued = true;
        Ok(())
    }

    /// Aborts the connection: RST at the next output, everything discarded, the handle gone.
    pub fn abort(&mut self, owner: u64, handle: Handle) -> Result<(), Error> {
        let i = self.held(owner, handle)?;
        let c = &mut self.conns[i];
        if c.synchronized() || c.state == State::SynReceived {
            c.held = false;
            c.abort_now = true;
        } else {
            self.free(i);
        }
        Ok(())
    }

    fn find(&self, remote: Ipv4Addr, remote_port: u16, local_port: u16) -> Option<usize> {
        self.conns.iter().position(|c| {
            !matches!(c.state, State::Free | State::Dead(_))
                && c.remote == remote
                && c.remote_port == remote_port
                && c.local_port == local_port
        })
    }

    /// Takes one TCP segment (header included) from `from` to `to`, the payload of an IPv4
    /// packet whose header verified.
    pub fn input(&mut self, from: Ipv4Addr, to: Ipv4Addr, bytes: &[u8], now: u64) {
        self.stats.segments_in = self.stats.segments_in.saturating_add(1);
        let seg = match Segment::parse(bytes, from, to) {
            Ok(s) if to == self.local && unicast(from) => s,
            Ok(_) => return self.stats.drops.count(Drop::NotForUs),
            Err(why) => return self.stats.drops.count(why),
        };
        if let Err(why) = self.segment(from, &seg, now) {
            let c = &mut self.stats.rejects[why as usize];
            *c = c.saturating_add(1);
        }
    }

    fn segment(&mut self, from: Ipv4Addr, seg: &Segment<'_>, now: u64) -> Result<(), Reject> {
        let f = seg.flags;
        if f & TCP_SYN != 0 && f & (TCP_FIN | TCP_RST) != 0 {
            return Err(Reject::BadFlags);
        }
        if let Some(i) = self.find(from, seg.src_port, seg.dst_port) {
            let c = &self.conns[i];
            // A new SYN past an old incarnation in TIME-WAIT opens anew (RFC 9293 3.6.1).
            let reopen = c.state == State::TimeWait
                && f & (TCP_SYN | TCP_ACK) == TCP_SYN
                && lt(c.rcv_nxt, seg.seq);
            if !reopen {
                return self.on_segment(i, seg, now);
            }
            self.free(i);
        }
        if f & TCP_RST != 0 {
            return Err(Reject::NoConnection);
        }
        let listener = self
            .listeners
            .iter()
            .flatten()
            .find(|l| l.port == seg.dst_port);
        let (port, owner) = match listener {
            Some(l) if f & (TCP_SYN | TCP_ACK) == TCP_SYN => (l.port, l.owner),
            _ => {
                self.stray(from, seg);
                return Err(Reject::NoConnection);
            }
        };
        if !self
            .grants
            .permits(owner, Protocol::Tcp, port, Some((from, seg.src_port)))
        {
            self.stray(from, seg);
            return Err(Reject::Denied);
        }
        let Some(i) = self.allocate() else {
            self.stray(from, seg);
            return Err(Reject::NoRoom);
        };
        let iss = self.isn(now);
        let c = &mut self.conns[i];
        c.state = State::SynReceived;
        c.owner = owner;
        c.listener = Some(port);
        c.local_port = port;
        c.remote = from;
        c.remote_port = seg.src_port;
        c.iss = iss;
        c.snd_una = iss;
        c.snd_nxt = iss;
        c.snd_max = iss;
        c.synchronize(seg);
        Ok(())
    }

    /// Queues the RST a segment for no connection gets (never for a RST).
    fn stray(&mut self, from: Ipv4Addr, seg: &Segment<'_>) {
        if seg.flags & TCP_RST != 0 {
            return;
        }
        let (seq, ack, flags) = if seg.flags & TCP_ACK != 0 {
            (seg.ack, 0, TCP_RST)
        } else {
            (0, seg.seq.wrapping_add(seg_len(seg)), TCP_RST | TCP_ACK)
        };
        let stray = Stray {
            to: from,
            ports: (seg.dst_port, seg.src_port),
            seq,
            ack,
            flags,
        };
        match self.strays.iter_mut().find(|s| s.is_none()) {
            Some(s) => *s = Some(stray),
            None => self.stats.resets_unsent = self.stats.resets_unsent.saturating_add(1),
        }
    }

    fn on_segment(&mut self, i: usize, seg: &Segment<'_>, now: u64) -> Result<(), Reject> {
        let f = seg.flags;
        let c = &mut self.conns[i];
        if c.state == State::SynSent {
            return self.syn_sent(i, seg, now);
        }
        if c.state == State::SynReceived && f & (TCP_SYN | TCP_RST) == TCP_SYN && seg.seq == c.irs {
            if f & TCP_ACK == 0 {
                // The peer resent its SYN: our SYN-ACK was lost; send it again.
                c.snd_nxt = c.iss;
                return Ok(());
            }
            if within(seg.ack, c.iss.wrapping_add(1), c.snd_max.wrapping_add(1)) {
                // Simultaneous open: its SYN-ACK acknowledges ours (RFC 9293 figure 7).
                c.acknowledge(seg, now);
                c.state = State::Established;
                c.ack_now = true;
                self.stats.opened = self.stats.opened.saturating_add(1);
                return Ok(());
            }
        }
        // A segment wholly before the window is an old duplicate: its data is not taken, but
        // its acknowledgement is (a peer may resend its FIN with each acknowledgement).
        let old = !c.acceptable(seg) && lt(seg.seq, c.rcv_nxt);
        if !c.acceptable(seg) {
            if f & TCP_RST == 0 {
                c.ack_now = true;
            }
            if !old || f & (TCP_RST | TCP_SYN) != 0 || c.state == State::SynReceived {
                return Err(Reject::OutOfWindow);
            }
        }
        if f & TCP_RST != 0 {
            if seg.seq != c.rcv_nxt {
                c.ack_now = true;
                return Err(Reject::Challenged);
            }
            self.stats.resets_received = self.stats.resets_received.saturating_add(1);
            match c.state {
                State::Closing | State::LastAck | State::TimeWait => self.free(i),
                _ => self.die(i, Error::Reset),
            }
            return Ok(());
        }
        if f & TCP_SYN != 0 {
            c.ack_now = true;
            return Err(Reject::Challenged);
        }
        if f & TCP_ACK == 0 {
            return Err(Reject::BadFlags);
        }
        if c.state == State::SynReceived {
            if !within(
                seg.ack,
                c.snd_una.wrapping_add(1),
                c.snd_max.wrapping_add(1),
            ) {
                let remote = c.remote;
                self.stray(remote, seg);
                return Err(Reject::BadAck);
            }
            c.state = State::Established;
            self.stats.opened = self.stats.opened.saturating_add(1);
        }
        let c = &mut self.conns[i];
        if lt(c.snd_max, seg.ack) {
            c.ack_now = true;
            return Err(Reject::BadAck);
        }
        if lt(seg.ack, c.snd_una.wrapping_sub(MAX_WINDOW)) {
            return Err(Reject::BadAck);
        }
        if c.acknowledge(seg, now) {
            self.stats.retransmits = self.stats.retransmits.saturating_add(1);
        }
        let c = &mut self.conns[i];
        let fin_acked = c.fin_seq.is_some_and(|s| lt(s, c.snd_una));
        match c.state {
            State::FinWait1 if fin_acked => {
                c.state = State::FinWait2;
                c.linger_at = Some(now + FIN_WAIT_2_MS);
            }
            State::Closing if fin_acked => {
                c.state = State::TimeWait;
                c.linger_at = Some(now + TIME_WAIT_MS);
            }
            State::LastAck if fin_acked => {
                self.free(i);
                return Ok(());
            }
            _ => {}
        }
        if old {
            return Err(Reject::OutOfWindow);
        }
        self.take_data(i, seg, now)
    }

    /// The data and FIN of an acceptable segment.
    fn take_data(&mut self, i: usize, seg: &Segment<'_>, now: u64) -> Result<(), Reject> {
        let c = &mut self.conns[i];
        let open = matches!(
            c.state,
            State::Established | State::FinWait1 | State::FinWait2
        );
        if !seg.data.is_empty() || seg.flags & TCP_FIN != 0 {
            c.ack_now = true;
        }
        if lt(c.rcv_nxt, seg.seq) {
            return if seg.data.is_empty() && seg.flags & TCP_FIN == 0 {
                Ok(())
            } else {
                Err(Reject::OutOfOrder)
            };
        }
        let skip = c.rcv_nxt.wrapping_sub(seg.seq) as usize;
        let fresh = seg.data.get(skip..).unwrap_or(&[]);
        let mut taken = fresh.len();
        if open && !fresh.is_empty() {
            if !c.held && c.listener.is_none() {
                // Closed by its client: nobody will read this (RFC 9293 3.10.7.4, as stacks do).
                c.abort_now = true;
                return Ok(());
            }
            taken = c
                .recv
                .append_with(fresh.len(), |at, run| {
                    run.copy_from_slice(&fresh[at..at + run.len()]);
                    Ok(run.len())
                })
                .unwrap_or(0);
            c.rcv_nxt = c.rcv_nxt.wrapping_add(taken as u32);
        }
        let in_order = seg.seq.wrapping_add(seg.data.len() as u32) == c.rcv_nxt;
        if seg.flags & TCP_FIN != 0 && taken == fresh.len() && in_order && !c.fin_received {
            c.rcv_nxt = c.rcv_nxt.wrapping_add(1);
            c.fin_received = true;
            let fin_acked = c.fin_seq.is_some_and(|s| lt(s, c.snd_una));
            c.state = match c.state {
                State::Established => State::CloseWait,
                State::FinWait1 if fin_acked => State::TimeWait,
                State::FinWait1 => State::Closing,
                State::FinWait2 => State::TimeWait,
                other => other,
            };
            if c.state == State::TimeWait {
                c.linger_at = Some(now + TIME_WAIT_MS);
            }
        }
        Ok(())
    }

    fn syn_sent(&mut self, i: usize, seg: &Segment<'_>, now: u64) -> Result<(), Reject> {
        let f = seg.flags;
        let c = &mut self.conns[i];
        let ack_ok = within(seg.ack, c.iss.wrapping_add(1), c.snd_max.wrapping_add(1));
        if f & TCP_ACK != 0 && !ack_ok {
            let remote = c.remote;
            self.stray(remote, seg);
            return Err(Reject::BadAck);
        }
        if f & TCP_RST != 0 {
            if f & TCP_ACK == 0 {
                return Err(Reject::BadFlags);
            }
            self.stats.resets_received = self.stats.resets_received.saturating_add(1);
            self.die(i, Error::Reset);
            return Ok(());
        }
        if f & TCP_SYN == 0 {
            return Err(Reject::BadFlags);
        }
        c.synchronize(seg);
        if f & TCP_ACK != 0 {
            c.acknowledge(seg, now);
            c.state = State::Established;
            c.ack_now = true;
            self.stats.opened = self.stats.opened.saturating_add(1);
        } else {
            // Simultaneous open: our SYN goes again, with an ACK.
            c.state = State::SynReceived;
            c.snd_nxt = c.iss;
        }
        Ok(())
    }

    /// Sends what is due at `now`: one segment written into `out` (at least [`SEGMENT_MAX`]
    /// bytes), returning its destination and length; `None` when nothing is due.
    pub fn output(&mut self, now: u64, out: &mut [u8]) -> Option<(Ipv4Addr, usize)> {
        if out.len() < SEGMENT_MAX {
            return None;
        }
        let sent = self.stray_out(out).or_else(|| {
            (0..CONNS).find_map(|i| {
                let s = self.conns[i].emit(self.local, now, out)?;
                if self.conns[i].abort_now {
                    self.stats.resets_sent = self.stats.resets_sent.saturating_add(1);
                    self.free(i);
                }
                Some(s)
            })
        });
        if sent.is_some() {
            self.stats.segments_out = self.stats.segments_out.saturating_add(1);
        }
        sent
    }

    fn stray_out(&mut self, out: &mut [u8]) -> Option<(Ipv4Addr, usize)> {
        let s = self.strays.iter_mut().find_map(Option::take)?;
        let header = TcpHeader {
            ports: s.ports,
            seq: s.seq,
            ack: s.ack,
            flags: s.flags,
            window: 0,
            mss: None,
        };
        let n = header.write(out, self.local, s.to, &[])?;
        self.stats.resets_sent = self.stats.resets_sent.saturating_add(1);
        Some((s.to, n))
    }

    /// Runs the timers at `now`: retransmission, zero-window probes, TIME-WAIT and FIN-WAIT-2.
    pub fn tick(&mut self, now: u64) {
        for i in 0..CONNS {
            let c = &mut self.conns[i];
            if matches!(c.state, State::Free | State::Dead(_)) {
                continue;
            }
            if c.linger_at.is_some_and(|t| now >= t)
                && matches!(c.state, State::TimeWait | State::FinWait2)
            {
                self.free(i);
                continue;
            }
            if c.rto_at.is_some_and(|t| now >= t) {
                c.rto_at = None;
                if c.snd_una != c.snd_max {
                    let limit = if c.synchronized() {
                        RETRIES
                    } else {
                        SYN_RETRIES
                    };
                    if c.retries >= limit {
                        self.stats.timed_out = self.stats.timed_out.saturating_add(1);
                        self.die(i, Error::Unreachable);
                        continue;
                    }
                    // Go back to the oldest unacknowledged byte; Karn: time nothing resent.
                    c.retries += 1;
                    c.rto = (c.rto * 2).min(RTO_MAX_MS);
                    c.snd_nxt = c.snd_una;
                    c.timing = None;
                    c.dupacks = 0;
                    self.stats.retransmits = self.stats.retransmits.saturating_add(1);
                }
            }
            let c = &mut self.conns[i];
            // Nothing in flight or timed, and data the window keeps back: probe it.
            let stalled = c.synchronized()
                && c.snd_wnd == 0
                && c.snd_nxt == c.snd_una
                && c.rto_at.is_none()
                && c.send.len > 0;
            if !stalled {
                c.persist_at = None;
                c.probes = 0;
            } else if c.persist_at.is_none() {
                c.persist_at = Some(now + c.rto);
            } else if c.persist_at.is_some_and(|t| now >= t) {
                c.probe_now = true;
                c.probes = (c.probes + 1).min(16);
                c.persist_at = Some(now + (c.rto << c.probes.min(6)).min(RTO_MAX_MS));
            }
        }
    }
}

/// Not the unspecified address, a multicast or the broadcast one: something a connection can
/// have at its other end.
fn unicast(a: Ipv4Addr) -> bool {
    a != [0; 4] && a[0] < 224
}

/// The sequence space a segment takes: its data, plus one each for SYN and FIN.
fn seg_len(seg: &Segment<'_>) -> u32 {
    seg.data.len() as u32
        + u32::from(seg.flags & TCP_SYN != 0)
        + u32::from(seg.flags & TCP_FIN != 0)
}

impl Conn {
    /// Takes the peer's SYN: its sequence numbers, window and segment size.
    fn synchronize(&mut self, seg: &Segment<'_>) {
        self.irs = seg.seq;
        self.rcv_nxt = seg.seq.wrapping_add(1);
        self.snd_wnd = u32::from(seg.window);
        // So that the next acceptable segment's window is taken, whatever its numbers.
        self.snd_wl1 = seg.seq.wrapping_sub(1);
        self.snd_wl2 = seg.ack;
        let mss = tcp_mss(seg.options).map_or(DEFAULT_MSS, usize::from);
        self.mss = mss.clamp(MIN_MSS, MSS);
    }

    /// Whether a segment's sequence numbers fall in the receive window (RFC 9293 3.10.7.4).
    /// With the window closed, a segment exactly at its edge still counts, so that its ACK and
    /// RST are seen.
    fn acceptable(&self, seg: &Segment<'_>) -> bool {
        let len = seg_len(seg);
        let wnd = self.window();
        let end = self.rcv_nxt.wrapping_add(wnd);
        if wnd == 0 {
            return seg.seq == self.rcv_nxt;
        }
        within(seg.seq, self.rcv_nxt, end)
            || (len > 0 && within(seg.seq.wrapping_add(len - 1), self.rcv_nxt, end))
    }

    /// Takes an acknowledgement (already checked against what was sent) and the window that
    /// came with it. Whether it triggered a fast retransmit.
    fn acknowledge(&mut self, seg: &Segment<'_>, now: u64) -> bool {
        let ack = seg.ack;
        let mut fast = false;
        if lt(self.snd_una, ack) {
            let mut n = ack.wrapping_sub(self.snd_una);
            if self.snd_una == self.iss {
                n -= 1; // the SYN
            }
            if self.fin_seq.is_some_and(|s| lt(s, ack)) {
                n = n.saturating_sub(1); // the FIN
            }
            self.send.consume(n as usize);
            self.snd_una = ack;
            if lt(self.snd_nxt, ack) {
                self.snd_nxt = ack;
            }
            if let Some((seq, at)) = self.timing
                && !lt(ack, seq)
            {
                self.sample(now.saturating_sub(at));
                self.timing = None;
            }
            self.retries = 0;
            self.dupacks = 0;
            self.rto_at = (self.snd_una != self.snd_max).then_some(now + self.rto);
        } else if ack == self.snd_una
            && seg.data.is_empty()
            && seg.flags & TCP_FIN == 0
            && u32::from(seg.window) == self.snd_wnd
            && self.snd_una != self.snd_max
        {
            self.dupacks += 1;
            if self.dupacks == 3 {
                self.snd_nxt = self.snd_una;
                self.timing = None;
                fast = true;
            }
        }
        if lt(self.snd_wl1, seg.seq) || (self.snd_wl1 == seg.seq && !lt(ack, self.snd_wl2)) {
            self.snd_wnd = u32::from(seg.window);
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = ack;
        }
        fast
    }

    /// The segment this connection owes at `now`, written into `out`.
    fn emit(&mut self, local: Ipv4Addr, now: u64, out: &mut [u8]) -> Option<(Ipv4Addr, usize)> {
        if matches!(self.state, State::Free | State::Dead(_)) {
            return None;
        }
        let mut h = TcpHeader {
            ports: (self.local_port, self.remote_port),
            seq: self.snd_nxt,
            ack: self.rcv_nxt,
            flags: TCP_ACK,
            window: self.window() as u16,
            mss: None,
        };
        if self.abort_now {
            h.flags = TCP_RST | TCP_ACK;
            h.window = 0;
            return Some((self.remote, h.write(out, local, self.remote, &[])?));
        }
        let mut n = 0;
        let mut fin = false;
        if !self.synchronized() {
            if self.snd_nxt != self.iss {
                if !self.ack_now || self.state == State::SynSent {
                    return None;
                }
            } else {
                h.flags = if self.state == State::SynSent {
                    TCP_SYN
                } else {
                    TCP_SYN | TCP_ACK
                };
                h.mss = Some(MSS as u16);
                self.snd_nxt = self.iss.wrapping_add(1);
            }
        } else {
            let sent = self.snd_nxt.wrapping_sub(self.data_seq()) as usize;
            let fin_sent = self.fin_seq.is_some_and(|s| lt(s, self.snd_nxt));
            let unsent = self.send.len.saturating_sub(sent);
            let window_end = self.snd_una.wrapping_add(self.snd_wnd);
            let usable = if lt(self.snd_nxt, window_end) {
                window_end.wrapping_sub(self.snd_nxt) as usize
            } else {
                0
            };
            let room = out.len().saturating_sub(TCP_HEADER);
            n = unsent.min(usable).min(self.mss).min(room);
            if fin_sent {
                n = 0;
            }
            fin = self.fin_queued && !fin_sent && sent + n == self.send.len;
            if n > 0 || fin {
                self.send
                    .read_at(sent, &mut out[TCP_HEADER..TCP_HEADER + n]);
                if n > 0 && sent + n == self.send.len {
                    h.flags |= TCP_PSH;
                }
                if fin {
                    h.flags |= TCP_FIN;
                    self.fin_seq = Some(self.snd_nxt.wrapping_add(n as u32));
                }
                self.snd_nxt = self.snd_nxt.wrapping_add(n as u32 + u32::from(fin));
            } else if self.probe_now {
                // An old sequence number: the peer answers with its window (RFC 9293 3.8.6.1).
                h.seq = self.snd_una.wrapping_sub(1);
                self.probe_now = false;
            } else if !self.ack_now {
                return None;
            }
        }
        if n > 0 || fin || h.mss.is_some() {
            // It takes sequence space: time it unless it is a retransmission (Karn).
            let fresh = !lt(h.seq, self.snd_max);
            if lt(self.snd_max, self.snd_nxt) {
                self.snd_max = self.snd_nxt;
            }
            if fresh && self.timing.is_none() {
                self.timing = Some((self.snd_nxt, now));
            }
            self.arm(now);
        }
        self.ack_now = false;
        self.rcv_adv = self.rcv_nxt.wrapping_add(u32::from(h.window));
        if h.flags & TCP_SYN == TCP_SYN && self.state == State::SynSent {
            h.ack = 0;
            h.flags = TCP_SYN;
        }
        let len = if h.mss.is_some() {
            // A SYN: the option, no data.
            h.write(out, local, self.remote, &[])?
        } else {
            h.write_over(out.get_mut(..h.len() + n)?, local, self.remote)?
        };
        Some((self.remote, len))
    }
}

#[cfg(test)]
mod tests;
