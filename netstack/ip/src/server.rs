//! The IP server's work over any link: [`Ip`] takes frames from a [`Link`], answers ARP and
//! echo requests, queues UDP datagrams and TCP segments for the transport layer and sends its
//! messages; [`serve`]
//! is the IP server's request loop ([`brainix_proto::ip`]) around it.
//!
//! The IP server (`src/main.rs`) gives it a link that is IPC to the link server; a combined
//! network server gives it the device itself. Nothing is pushed to it: frames are taken when the
//! server asks the link (between clients' requests, and while a request waits for an answer).

use crate::{Input, MTU, Stack, Stats};
use brainix_abi::{Error, Message};
use brainix_proto::ip::{self, Config};
use brainix_proto::{config, status_of};
use brainix_rt::fmt::Buffer;
use brainix_rt::{Endpoint, Log, Received, ReplyToken, cap};
use brainix_wire::{Drop, Ipv4Addr, Mac};
use core::fmt::Write;

/// The layer below: raw Ethernet frames, one at a time.
pub trait Link {
    /// Sends one frame.
    fn send(&mut self, frame: &[u8]) -> Result<(), Error>;
    /// The next frame that arrived, into `frame`, waiting at most `ms`: its length, or
    /// [`Error::Timeout`] if none came.
    fn recv(&mut self, frame: &mut [u8; MTU], ms: u64) -> Result<usize, Error>;
    /// A notification woke the server while it waited for clients (in a process that drives the
    /// device itself: its interrupt, to acknowledge).
    fn notified(&mut self) {}
}

/// UDP datagrams and TCP segments waiting for the transport layer, in arrival order. Eight holds
/// a full TCP window of the transport server's (`brainix_transport::tcp::RECV_BUF`, 8 KiB:
/// six segments) with room for acknowledgements; when full, new ones are dropped and counted.
pub const QUEUE: usize = 8;
/// The largest transport-layer message: a full IP payload.
pub const DATAGRAM: usize = MTU - 34;

/// How long one wait on the link lasts while no client calls: a client's request waits at most
/// this long before it is seen.
pub const IDLE_MS: u64 = 20;
/// How long [`serve`] waits for a client's next request after serving one, before it goes back
/// to waiting on the link (frames meanwhile wait in the device's receive buffers).
pub const GRACE_MS: u64 = 5;

struct Queued {
    len: usize,
    from: Ipv4Addr,
    proto: u8,
    bytes: [u8; DATAGRAM],
}

/// A datagram handed to the transport layer.
pub struct Datagram<'a> {
    /// The transport-layer message, header included, its checksum verified.
    pub bytes: &'a [u8],
    /// Its sender.
    pub from: Ipv4Addr,
    /// Its IP protocol.
    pub proto: u8,
}

/// An echo reply that came in: who answered, its identifier, sequence number and TTL.
type EchoReply = (Ipv4Addr, u16, u16, u8);

/// One interface's IP layer over `L`.
pub struct Ip<L> {
    stack: Stack,
    link: L,
    ident: u16,
    frame: [u8; MTU],
    out: [u8; MTU],
    queue: [Queued; QUEUE],
    head: usize,
    queued: usize,
}

impl<L: Link> Ip<L> {
    /// The IP layer of the interface with address `mac` on `link`; `ident` tells its echo
    /// requests apart from another's.
    pub fn new(link: L, mac: Mac, config: Config, ident: u16) -> Self {
        Ip {
            stack: Stack::new(mac, config),
            link,
            ident,
            frame: [0; MTU],
            out: [0; MTU],
            queue: [const {
                Queued {
                    len: 0,
                    from: [0; 4],
                    proto: 0,
                    bytes: [0; DATAGRAM],
                }
            }; QUEUE],
            head: 0,
            queued: 0,
        }
    }

    /// The interface's configuration.
    pub fn config(&self) -> Config {
        self.stack.config()
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stack.stats
    }

    /// The link below.
    pub fn link(&mut self) -> &mut L {
        &mut self.link
    }

    /// Sends a `len`-byte transport-layer message with IP protocol `proto` to `dst`; `fill`
    /// writes it (its checksum already computed for this host's address). Resolves the next hop
    /// first, answering other frames meanwhile.
    pub fn send_with(
        &mut self,
        dst: Ipv4Addr,
        proto: u8,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        if len > DATAGRAM {
            return Err(Error::OutOfRange);
        }
        // Resolve first: answering frames meanwhile reuses `out`.
        let (start, _) = cap::uptime()?;
        let via = self.resolve(dst, start + ip::PING_TIMEOUT_MS)?;
        fill(&mut self.out[34..34 + len])?;
        let n = self
            .stack
            .wrap(via, dst, proto, len, &mut self.out)
            .ok_or(Error::OutOfRange)?;
        self.send(n)
    }

    /// Hands the oldest queued datagram to `take`, first taking frames from the link for up to
    /// `ms` if none is queued ([`Error::Timeout`] if none came). The datagram leaves the queue
    /// only if `take` succeeds.
    pub fn recv_with<R>(
        &mut self,
        ms: u64,
        take: impl FnOnce(Datagram<'_>) -> Result<R, Error>,
    ) -> Result<R, Error> {
        if self.queued == 0 {
            let (start, _) = cap::uptime()?;
            let _ = self.until(start + ms, |s, _| s.queued > 0);
        }
        if self.queued == 0 {
            return Err(Error::Timeout);
        }
        let q = &self.queue[self.head];
        let got = take(Datagram {
            bytes: &q.bytes[..q.len],
            from: q.from,
            proto: q.proto,
        })?;
        self.head = (self.head + 1) % QUEUE;
        self.queued -= 1;
        Ok(got)
    }

    fn send(&mut self, n: usize) -> Result<(), Error> {
        self.link.send(&self.out[..n])
    }

    /// Takes frames from the link for up to `ms`, answering what needs answering; returns the
    /// first echo reply for us, if one came.
    pub fn pump(&mut self, ms: u64) -> Result<Option<EchoReply>, Error> {
        let n = match self.link.recv(&mut self.frame, ms) {
            Ok(n) => n.min(MTU),
            Err(Error::Timeout) => return Ok(None),
            Err(e) => return Err(e),
        };
        match self.stack.input(&self.frame[..n], &mut self.out) {
            Input::Nothing => Ok(None),
            Input::Send(len) => self.send(len).map(|()| None),
            Input::EchoReply {
                from,
                ident,
                seq,
                ttl,
            } => Ok(Some((from, ident, seq, ttl))),
            Input::Datagram {
                at,
                len,
                from,
                proto,
            } => {
                if self.queued == QUEUE {
                    self.stack.stats.drops.count(Drop::QueueFull);
                } else {
                    let q = &mut self.queue[(self.head + self.queued) % QUEUE];
                    q.bytes[..len].copy_from_slice(&self.frame[at..at + len]);
                    q.len = len;
                    q.from = from;
                    q.proto = proto;
                    self.queued += 1;
                }
                Ok(None)
            }
        }
    }

    /// The Ethernet address of `dst`'s next hop, asking by ARP if it is not cached.
    fn resolve(&mut self, dst: Ipv4Addr, deadline: u64) -> Result<Mac, Error> {
        let hop = self.stack.next_hop(dst);
        if let Some(mac) = self.stack.lookup(hop) {
            return Ok(mac);
        }
        let n = self.stack.arp_request(hop, &mut self.out);
        self.send(n)?;
        self.until(deadline, |s, _| s.stack.lookup(hop).is_some())?;
        self.stack.lookup(hop).ok_or(Error::Timeout)
    }

    /// Pumps until `done` says yes or `deadline_ms` (uptime) passes.
    fn until(
        &mut self,
        deadline_ms: u64,
        mut done: impl FnMut(&Self, Option<EchoReply>) -> bool,
    ) -> Result<(), Error> {
        loop {
            let (now, _) = cap::uptime()?;
            if now >= deadline_ms {
                return Err(Error::Timeout);
            }
            let got = self.pump((deadline_ms - now).min(100))?;
            if done(self, got) {
                return Ok(());
            }
        }
    }

    /// Sends an echo request with sequence number `seq` to `dst` and waits for its reply:
    /// the round trip in TSC ticks, and the reply's TTL.
    pub fn ping(&mut self, dst: Ipv4Addr, seq: u16) -> Result<(u64, u8), Error> {
        let (start, _) = cap::uptime()?;
        let deadline = start + ip::PING_TIMEOUT_MS;
        let via = self.resolve(dst, deadline)?;
        let ident = self.ident;
        let n = self.stack.echo_request(via, dst, ident, seq, &mut self.out);
        let (_, sent_at) = cap::uptime()?;
        self.send(n)?;
        let mut ttl = 0;
        self.until(deadline, |_, got| match got {
            Some((from, i, q, t)) if from == dst && i == ident && q == seq => {
                ttl = t;
                true
            }
            _ => false,
        })?;
        let (_, now) = cap::uptime()?;
        Ok((now.saturating_sub(sent_at), ttl))
    }
}

/// Writes one line to `log`.
pub fn log(to: Log, args: core::fmt::Arguments<'_>) {
    let mut line = Buffer::<{ brainix_abi::MAX_LOG_LINE }>::new();
    let _ = line.write_fmt(args);
    let _ = to.write(line.as_bytes());
}

/// The interface the manifest wrote into this program's configuration block. Without one (or
/// with a block that does not parse) there is no network: the log says why, and every client on
/// `endpoint` is told `peer-dead`, for ever.
pub fn interface(endpoint: Endpoint, log_to: Log) -> Config {
    let why = match config::interface() {
        Ok(Some(c)) => return c,
        Ok(None) => "no interface in this program's configuration",
        Err(_) => "its configuration block is malformed",
    };
    log(
        log_to,
        format_args!("no network: {why}; expected `interface` on this process in the manifest"),
    );
    loop {
        refuse_for(endpoint, 1000, Error::PeerDead);
    }
}

/// Answers every request that arrives on `endpoint` in the next `ms` with `error`.
pub fn refuse_for(endpoint: Endpoint, ms: u64, error: Error) {
    let mut msg = Message::new(0);
    if let Ok(Received::Message { token, .. }) = endpoint.recv(&mut msg, ms) {
        let _ = cap::reply(token, &Message::new(error as u64));
    }
}

/// The IP server's request loop on `endpoint`: between clients' requests it takes frames from
/// the link (waiting at most [`IDLE_MS`] there); right after a request it waits [`GRACE_MS`]
/// for the next one first. A `PING` keeps taking frames while it waits for its reply, so the
/// host can ping the guest while the guest pings.
///
/// With `crash` (the test system's fault-injection build only), an [`ip::CRASH`] request calls
/// it, so the tests can watch the server die of a fault and be restarted; without, `CRASH` is
/// no call.
pub fn serve<L: Link>(ip: &mut Ip<L>, endpoint: Endpoint, log_to: Log, crash: Option<fn()>) -> ! {
    let mut msg = Message::new(0);
    // Right after a request, the next one usually follows within a few milliseconds (the
    // transport server's `SEND` after its `RECV`): wait that long for it before going back to
    // the link, where a request could wait up to IDLE_MS.
    let mut grace = 0;
    loop {
        match endpoint.recv(&mut msg, grace) {
            Ok(Received::Message { token, badge, .. }) => {
                if let (ip::CRASH, Some(crash)) = (msg.label, crash) {
                    log(log_to, format_args!("fault injection: ip::CRASH"));
                    crash();
                }
                let mut reply = Message::new(0);
                let result = handle(ip, &msg, token, badge, &mut reply);
                reply.label = status_of(result);
                let _ = cap::reply(token, &reply);
                grace = GRACE_MS;
                continue;
            }
            Ok(Received::Notification(_)) => ip.link.notified(),
            Err(Error::Timeout) => {
                grace = 0;
                match ip.pump(IDLE_MS) {
                    Ok(_) | Err(Error::Timeout) => {}
                    // Say so, and keep clients answered while the link restarts.
                    Err(e) => {
                        log(log_to, format_args!("link server: {}", e.name()));
                        refuse_for(endpoint, 1000, Error::PeerDead);
                    }
                }
            }
            Err(_) => cap::yield_now(),
        }
    }
}

fn handle<L: Link>(
    ip: &mut Ip<L>,
    msg: &Message,
    token: ReplyToken,
    badge: u64,
    reply: &mut Message,
) -> Result<(), Error> {
    let transport = badge == ip::TRANSPORT_BADGE;
    match msg.label {
        // UDP and TCP go through the transport server's grants, or not at all.
        ip::SEND | ip::RECV if !transport => Err(Error::MissingRight),
        ip::SEND => {
            let dst = (msg.regs[0] as u32).to_be_bytes();
            let len = msg.regs[2] as usize;
            ip.send_with(dst, msg.regs[1] as u8, len, |out| {
                if cap::lease_read(token, 0, 0, out)? != len {
                    return Err(Error::BadLease);
                }
                Ok(())
            })?;
            reply.regs[0] = len as u64;
            Ok(())
        }
        ip::RECV => {
            let wait = msg.regs[0].min(ip::RECV_WAIT_MAX_MS);
            ip.recv_with(wait, |d| {
                cap::lease_write(token, 0, 0, d.bytes)?;
                reply.regs = [
                    d.bytes.len() as u64,
                    u64::from(u32::from_be_bytes(d.from)),
                    u64::from(d.proto),
                    0,
                ];
                Ok(())
            })
        }
        ip::PING => {
            let dst = (msg.regs[0] as u32).to_be_bytes();
            let (ticks, ttl) = ip.ping(dst, msg.regs[1] as u16)?;
            reply.regs = [ticks, u64::from(ttl), 0, 0];
            Ok(())
        }
        ip::INFO => {
            let c = ip.config();
            reply.regs = [
                u64::from(u32::from_be_bytes(c.address)),
                u64::from(c.prefix),
                u64::from(u32::from_be_bytes(c.gateway)),
                0,
            ];
            Ok(())
        }
        ip::STATS => {
            let st = ip.stats();
            reply.regs = [
                st.frames_in,
                st.frames_out,
                st.echo_answered,
                st.drops.total(),
            ];
            for (i, c) in st.drops.0.iter().enumerate() {
                reply.payload[8 * i..8 * i + 8].copy_from_slice(&c.to_le_bytes());
            }
            reply.len = (8 * Drop::COUNT) as u64;
            Ok(())
        }
        _ => Err(Error::NoSuchCall),
    }
}
