//! The transport server's request loop ([`brainix_proto::transport`]) over any network layer
//! below: [`Server`] holds the UDP sockets ([`crate::Sockets`]) and the TCP connections
//! ([`crate::tcp::Tcp`]), which hold every check, and serves one request at a time.
//!
//! A request that waits (`RECV_FROM`, `ACCEPT`, `CONNECT`, `SEND`, `RECV`, each bounded) and
//! cannot be answered at once is parked: its caller stays blocked in its call while the server
//! serves other clients, and is answered as soon as the network brings what it waits for, or at
//! its deadline. So a client waiting for a datagram never holds up another's TCP.
//!
//! Nothing is pushed to it. While any TCP listener or connection exists, or a request is parked,
//! it never waits on its endpoint for long: after a request it waits [`GRACE_MS`] for the next,
//! then takes a message from the [`Network`] (waiting at most [`IDLE_MS`] there), runs the TCP
//! timers, sends what TCP owes, answers the parked requests it can, and looks at its endpoint
//! again. With nothing open or parked it waits on its endpoint for ever.
//!
//! The transport server (`src/main.rs`) gives it a network that is IPC to the IP server; a
//! combined network server gives it the IP layer in its own process.

use crate::tcp::{Handle, SEGMENT_MAX, Tcp};
use crate::{Grants, Sockets};
use brainix_abi::{Error, FOREVER, Message};
use brainix_proto::transport::{self, MAX_DATAGRAM, MAX_GRANTS, RECV_WAIT_MAX_MS};
use brainix_proto::{config, status_of};
use brainix_rt::fmt::Buffer;
use brainix_rt::{Endpoint, Log, Received, ReplyToken, cap};
use brainix_wire::{Ipv4Addr, PROTO_TCP, PROTO_UDP, UDP_HEADER, write_udp};
use core::fmt::Write;

/// A transport-layer message that came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    /// Its length (header included).
    pub len: usize,
    /// Its sender.
    pub from: Ipv4Addr,
    /// Its IP protocol.
    pub proto: u8,
}

/// The layer below: transport-layer messages to and from this host's address, one at a time.
pub trait Network {
    /// This host's address (for the checksums' pseudo-header).
    fn address(&mut self) -> Result<Ipv4Addr, Error>;
    /// Sends `message` (header included, checksum computed) to `dst` with IP protocol `proto`.
    fn send(&mut self, dst: Ipv4Addr, proto: u8, message: &[u8]) -> Result<(), Error>;
    /// The next message for this host, into `into`, waiting at most `ms`
    /// ([`Error::Timeout`] if none came).
    fn recv(&mut self, into: &mut [u8], ms: u64) -> Result<Arrival, Error>;
    /// A notification woke the server while it waited for clients (in a process that drives the
    /// device itself: its interrupt, to acknowledge).
    fn notified(&mut self) {}
}

/// The largest message handled: a full UDP datagram (a full TCP segment is as long).
const BUF: usize = MAX_DATAGRAM + UDP_HEADER;

/// How long the server waits for a client's next request after answering one while TCP is open
/// or a request is parked, before it turns to the network (the next request usually follows
/// within a few ms).
pub const GRACE_MS: u64 = 5;
/// How long one wait on the network lasts while TCP is open or a request is parked and no client
/// calls: a client's request waits at most this long before it is seen, and the TCP timers run
/// this often.
pub const IDLE_MS: u64 = 20;
/// How long the server leaves the network alone after it failed (the IP server restarting).
const TROUBLE_MS: u64 = 100;

/// How many requests may be parked at once: one per grant is enough, since a client makes one
/// call at a time and a request without a grant is refused before it waits. Should the table
/// still be full, a request waits in the server as it did before parking existed.
const PARKED: usize = MAX_GRANTS;

/// A client's request as it came.
#[derive(Clone, Copy)]
struct Request {
    msg: Message,
    /// Its caller's, for the reply and the leases.
    token: ReplyToken,
    /// Names the caller's grant.
    badge: u64,
    /// How many leases it lends.
    leases: u64,
}

/// A waiting request not answered yet: its caller is blocked in its call, the reply token and
/// the leases stay good until it is answered (or the caller dies, and the answer fails).
#[derive(Clone, Copy)]
struct Parked {
    req: Request,
    /// `CONNECT`: the connection made for it.
    conn: Handle,
    /// Uptime in ms when it is answered, ready or not.
    deadline: u64,
}

/// The uptime in ms at which a request that came at `now` and may wait `ms` is answered, ready
/// or not (at most [`RECV_WAIT_MAX_MS`] later).
fn deadline(now: u64, ms: u64) -> u64 {
    now + ms.min(RECV_WAIT_MAX_MS)
}

/// What became of a request.
enum Answer {
    /// Answered now, with this status.
    Now(Result<(), Error>),
    /// Parked: answered later by [`Server::answer_parked`].
    Later,
}

/// The transport server over `N`.
pub struct Server<N> {
    sockets: Sockets,
    tcp: Tcp,
    net: N,
    log: Log,
    /// The last error the network gave, said once.
    trouble: Option<Error>,
    buf: [u8; BUF],
    segment: [u8; SEGMENT_MAX],
    parked: [Option<Parked>; PARKED],
    /// The uptime in ms when last read ([`Server::read_clock`]): read once per request and
    /// once per message from the network, since each system call costs.
    now: u64,
}

impl<N: Network> Server<N> {
    /// No sockets or connections yet, and no grants until [`Server::run`] reads them from this
    /// program's configuration block; lines go to `log`. A `const fn`, so that a program can
    /// keep the server (75 KiB, most of it TCP's buffers) in a static rather than on its stack.
    pub const fn new(net: N, log: Log) -> Self {
        Server {
            sockets: Sockets::new(Grants::NONE),
            tcp: Tcp::new([0; 4], Grants::NONE, 0),
            net,
            log,
            trouble: None,
            buf: [0; BUF],
            segment: [0; SEGMENT_MAX],
            parked: [None; PARKED],
            now: 0,
        }
    }

    /// The network below (for a program that puts it in after building the server).
    pub fn network(&mut self) -> &mut N {
        &mut self.net
    }

    /// Takes the grants in this program's configuration block (a block that does not parse
    /// grants nothing, and the log says so), and seeds TCP's initial sequence numbers.
    fn configure(&mut self) {
        let grants = match config::records().and_then(Grants::from_records) {
            Ok(g) => g,
            Err(e) => {
                self.log(format_args!(
                    "configuration block refused ({e:?}): every request will be denied"
                ));
                Grants::NONE
            }
        };
        // The cycle counter varies the initial sequence numbers from boot to boot.
        let (_, seed) = cap::uptime().unwrap_or((0, 0));
        self.sockets.set_grants(grants);
        self.tcp.configure(grants, seed);
    }

    fn log(&self, args: core::fmt::Arguments<'_>) {
        let mut line = Buffer::<{ brainix_abi::MAX_LOG_LINE }>::new();
        let _ = line.write_fmt(args);
        let _ = self.log.write(line.as_bytes());
    }

    /// How long to wait on the endpoint: `ms` while TCP or a parked request needs the network,
    /// else for ever.
    fn wait(&self, ms: u64) -> u64 {
        if self.tcp.active() || self.parked.iter().any(Option::is_some) {
            ms
        } else {
            FOREVER
        }
    }

    /// Reads the uptime in ms into [`Server::now`] (which keeps its last value should the
    /// kernel refuse).
    fn read_clock(&mut self) -> u64 {
        if let Ok((now, _)) = cap::uptime() {
            self.now = now;
        }
        self.now
    }

    /// How long the next wait on the network may last: [`IDLE_MS`], or less when a parked
    /// request's deadline comes sooner (as of the clock last read).
    fn idle_ms(&self) -> u64 {
        let now = self.now;
        self.parked
            .iter()
            .flatten()
            .map(|p| p.deadline.saturating_sub(now))
            .fold(IDLE_MS, u64::min)
    }

    /// Serves clients on `endpoint`, for ever. Each client's badge names its grant.
    ///
    /// With `crash` (the test system's fault-injection build only), a [`transport::CRASH`]
    /// request calls it, so the tests can watch the server die of a fault and be restarted;
    /// without, `CRASH` is no call.
    pub fn run(&mut self, endpoint: Endpoint, crash: Option<fn()>) -> ! {
        self.configure();
        self.log(format_args!(
            "udp sockets and tcp, default deny; {} grants",
            self.sockets.grants().count()
        ));
        let mut msg = Message::new(0);
        let mut received = endpoint.recv(&mut msg, FOREVER);
        // Until when the server waits on its endpoint before it turns to the network. A
        // notification (the device's interrupt, in a server that drives its device) does not
        // cut that short: the client answered last is usually about to call again, and the
        // network waits for it.
        let mut until = 0;
        loop {
            received = match received {
                Ok(Received::Message {
                    token,
                    badge,
                    leases,
                }) => {
                    if let (transport::CRASH, Some(crash)) = (msg.label, crash) {
                        self.log(format_args!("fault injection: transport::CRASH"));
                        crash();
                    }
                    self.read_clock();
                    let mut reply = Message::new(0);
                    let req = Request {
                        msg,
                        token,
                        badge,
                        leases,
                    };
                    match self.handle(&req, &mut reply) {
                        Answer::Now(result) => {
                            if result == Err(Error::MissingRight) {
                                let denied = self.sockets.stats.denied + self.tcp.stats.denied;
                                self.log(format_args!(
                                    "denied: badge {badge:#x}, request {}, port {} (denied so far: {denied})",
                                    msg.label, msg.regs[0]
                                ));
                            }
                            reply.label = status_of(result);
                            until = self.now + GRACE_MS;
                            endpoint.reply_recv(token, &reply, &mut msg, self.wait(GRACE_MS))
                        }
                        // Another request may be queued already; else the network's turn.
                        Answer::Later => {
                            until = 0;
                            endpoint.recv(&mut msg, self.wait(0))
                        }
                    }
                }
                Ok(Received::Notification(_)) => {
                    self.net.notified();
                    let left = until.saturating_sub(self.read_clock());
                    endpoint.recv(&mut msg, self.wait(left))
                }
                Err(Error::Timeout) => {
                    // Between requests: the network's turn, then the parked requests'.
                    let serviced = self.service(self.idle_ms());
                    match (serviced, self.answer_parked(serviced)) {
                        // A client answered usually calls again within a few ms.
                        (_, Some((token, reply))) => {
                            until = self.now + GRACE_MS;
                            endpoint.reply_recv(token, &reply, &mut msg, self.wait(GRACE_MS))
                        }
                        (Err(_), None) => {
                            until = self.now + TROUBLE_MS;
                            endpoint.recv(&mut msg, self.wait(TROUBLE_MS))
                        }
                        (Ok(()), None) => {
                            until = 0;
                            endpoint.recv(&mut msg, self.wait(0))
                        }
                    }
                }
                Err(_) => {
                    cap::yield_now();
                    endpoint.recv(&mut msg, self.wait(0))
                }
            };
        }
    }

    /// One message from the network (waiting at most `ms` for it) to its socket or connection,
    /// then the TCP timers, then every segment TCP owes. A failure of the network is logged
    /// once and returned.
    fn service(&mut self, ms: u64) -> Result<(), Error> {
        let got = match self.net.recv(&mut self.buf, ms.max(1)) {
            Ok(got) => Some(got),
            Err(Error::Timeout) => None,
            Err(e) => {
                if self.trouble != Some(e) {
                    self.log(format_args!("network: {}", e.name()));
                }
                self.trouble = Some(e);
                return Err(e);
            }
        };
        self.trouble = None;
        let me = self.net.address()?;
        self.tcp.set_address(me);
        let now = self.read_clock();
        if let Some(got) = got {
            let message = &self.buf[..got.len.min(BUF)];
            match got.proto {
                PROTO_UDP => self.sockets.deliver(got.from, me, message),
                PROTO_TCP => self.tcp.input(got.from, me, message, now),
                _ => {}
            }
        }
        self.tcp.tick(now);
        self.flush(now);
        Ok(())
    }

    /// Sends every segment TCP owes. One the network refuses is lost like any other, and
    /// retransmitted like any other.
    fn flush(&mut self, now: u64) {
        while let Some((to, n)) = self.tcp.output(now, &mut self.segment) {
            let _ = self.net.send(to, PROTO_TCP, &self.segment[..n]);
        }
    }

    /// One try at a waiting request: `Some` with `reply` filled when it is answered now, `None`
    /// when what it waits for has not come.
    fn attempt(&mut self, p: &Parked, reply: &mut Message) -> Result<Option<()>, Error> {
        let (msg, token, badge) = (&p.req.msg, p.req.token, p.req.badge);
        let conn: Handle = msg.regs[0];
        match msg.label {
            transport::RECV_FROM => {
                let got = self.sockets.take(badge, msg.regs[0] as u16, |m| {
                    let copied = cap::lease_write(token, 0, 0, &m.data[..m.len]);
                    (copied, m.len, m.from, m.from_port)
                })?;
                let Some((copied, len, from, from_port)) = got else {
                    return Ok(None);
                };
                copied?;
                reply.regs = [
                    len as u64,
                    u64::from(u32::from_be_bytes(from)),
                    u64::from(from_port),
                    0,
                ];
            }
            transport::ACCEPT => {
                let Some(a) = self.tcp.accept(badge, msg.regs[0] as u16)? else {
                    return Ok(None);
                };
                reply.regs = [
                    a.handle,
                    u64::from(u32::from_be_bytes(a.remote)),
                    u64::from(a.remote_port),
                    0,
                ];
            }
            transport::CONNECT => {
                if !self.tcp.established(badge, p.conn)? {
                    return Ok(None);
                }
                reply.regs = [p.conn, 1, 0, 0];
            }
            transport::SEND => {
                let len = msg.regs[1] as usize;
                let n = self.tcp.send_with(badge, conn, len, |at, run| {
                    cap::lease_read(token, 0, at as u64, run)
                })?;
                if n == 0 && len > 0 {
                    return Ok(None);
                }
                self.flush(self.now);
                reply.regs[0] = n as u64;
            }
            transport::RECV => {
                let max = msg.regs[1] as usize;
                let Some(n) = self.tcp.recv_with(badge, conn, max, |at, run| {
                    cap::lease_write(token, 0, at as u64, run).map(drop)
                })?
                else {
                    return Ok(None);
                };
                // A window update, if reading re-opened the window.
                self.flush(self.now);
                reply.regs[0] = n as u64;
            }
            _ => return Err(Error::NoSuchCall),
        }
        Ok(Some(()))
    }

    /// The end of a waiting request that got no answer: its deadline passed
    /// ([`Error::Timeout`]) or it failed with `e`. A `CONNECT` still opening at its deadline
    /// answers its handle; one that failed releases its connection (the client has no handle).
    fn unanswered(&mut self, p: &Parked, e: Error, reply: &mut Message) -> Result<(), Error> {
        if p.req.msg.label != transport::CONNECT {
            return Err(e);
        }
        if e == Error::Timeout {
            reply.regs = [p.conn, 0, 0, 0];
            return Ok(());
        }
        let _ = self.tcp.close(p.req.badge, p.conn);
        Err(e)
    }

    /// A waiting request: answered now if it can be, else parked until it can be or its
    /// deadline passes. Only with every place taken does it wait here, keeping the network
    /// going meanwhile (and other clients waiting).
    fn answer_or_park(&mut self, p: Parked, reply: &mut Message) -> Answer {
        match self.attempt(&p, reply) {
            Ok(Some(())) => return Answer::Now(Ok(())),
            Ok(None) => {}
            Err(e) => return Answer::Now(self.unanswered(&p, e, reply)),
        }
        // A request that may not wait (0 ms) is not parked.
        if self.now >= p.deadline {
            return Answer::Now(self.unanswered(&p, Error::Timeout, reply));
        }
        if let Some(place) = self.parked.iter_mut().find(|q| q.is_none()) {
            *place = Some(p);
            return Answer::Later;
        }
        let result = loop {
            let now = self.read_clock();
            if now >= p.deadline {
                break Err(Error::Timeout);
            }
            if let Err(e) = self.service((p.deadline - now).min(IDLE_MS)) {
                break Err(e);
            }
            if let Some((token, answer)) = self.answer_parked(Ok(())) {
                let _ = cap::reply(token, &answer);
            }
            match self.attempt(&p, reply) {
                Ok(Some(())) => break Ok(()),
                Ok(None) => {}
                Err(e) => break Err(e),
            }
        };
        Answer::Now(result.or_else(|e| self.unanswered(&p, e, reply)))
    }

    /// Answers each parked request that can be answered now, whose deadline passed, or (when
    /// `network` failed and it is not ready) with the network's error. The first answer is
    /// handed back, not sent, for the caller's `reply_recv`: a reply and a receive of their own
    /// cost a round trip under emulation that one call does not.
    fn answer_parked(&mut self, network: Result<(), Error>) -> Option<(ReplyToken, Message)> {
        let now = self.now;
        let mut held = None;
        for i in 0..PARKED {
            let Some(p) = self.parked[i] else {
                continue;
            };
            let mut reply = Message::new(0);
            let result = match self.attempt(&p, &mut reply) {
                Ok(Some(())) => Ok(()),
                Ok(None) => match network {
                    Err(e) => self.unanswered(&p, e, &mut reply),
                    Ok(()) if now >= p.deadline => self.unanswered(&p, Error::Timeout, &mut reply),
                    Ok(()) => continue,
                },
                Err(e) => self.unanswered(&p, e, &mut reply),
            };
            self.parked[i] = None;
            reply.label = status_of(result);
            if held.is_none() {
                held = Some((p.req.token, reply));
            } else {
                // A caller that died meanwhile is not there to hear it: nothing to do.
                let _ = cap::reply(p.req.token, &reply);
            }
        }
        held
    }

    /// This host's address, for TCP's checksums; asked of the network before a TCP request.
    fn tcp_ready(&mut self) -> Result<(), Error> {
        let me = self.net.address()?;
        self.tcp.set_address(me);
        Ok(())
    }

    fn handle_tcp(&mut self, req: &Request, reply: &mut Message) -> Result<Answer, Error> {
        let (msg, badge, leases) = (&req.msg, req.badge, req.leases);
        self.tcp_ready()?;
        let port = msg.regs[0] as u16;
        let conn: Handle = msg.regs[0];
        let now = self.now;
        let needs_lease = matches!(msg.label, transport::SEND | transport::RECV);
        if needs_lease && leases == 0 {
            return Err(Error::BadLease);
        }
        let waiting = |ms: u64, conn: Handle| Parked {
            req: *req,
            conn,
            deadline: deadline(now, ms),
        };
        match msg.label {
            transport::LISTEN => self.tcp.listen(badge, port)?,
            transport::ACCEPT => return Ok(self.answer_or_park(waiting(msg.regs[1], 0), reply)),
            transport::CONNECT => {
                let remote = (msg.regs[1] as u32).to_be_bytes();
                // The grant is checked before anything is built or sent.
                let h = self
                    .tcp
                    .connect(badge, port, remote, msg.regs[2] as u16, now)?;
                self.flush(now);
                return Ok(self.answer_or_park(waiting(msg.regs[3], h), reply));
            }
            transport::SEND | transport::RECV => {
                return Ok(self.answer_or_park(waiting(msg.regs[2], conn), reply));
            }
            transport::CLOSE => {
                self.tcp.close(badge, conn)?;
                self.flush(now);
            }
            transport::ABORT => {
                self.tcp.abort(badge, conn)?;
                self.flush(now);
            }
            _ => {
                let st = &self.tcp.stats;
                reply.regs = [st.denied, st.opened, st.retransmits, st.refused()];
            }
        }
        Ok(Answer::Now(Ok(())))
    }

    /// Serves one request: answered now, or parked.
    fn handle(&mut self, req: &Request, reply: &mut Message) -> Answer {
        let (msg, badge) = (&req.msg, req.badge);
        let now = |r: Result<(), Error>| Answer::Now(r);
        match msg.label {
            transport::BIND => now(self.sockets.bind(badge, msg.regs[0] as u16)),
            transport::SEND_TO => now(self.send_to(req, reply)),
            transport::RECV_FROM => {
                if req.leases == 0 {
                    return now(Err(Error::BadLease));
                }
                let p = Parked {
                    req: *req,
                    conn: 0,
                    deadline: deadline(self.now, msg.regs[1]),
                };
                self.answer_or_park(p, reply)
            }
            transport::STATS => {
                let st = &self.sockets.stats;
                reply.regs = [st.denied, st.delivered, st.sent, st.drops.total()];
                now(Ok(()))
            }
            transport::LISTEN..=transport::TCP_STATS => {
                self.handle_tcp(req, reply).unwrap_or_else(|e| now(Err(e)))
            }
            _ => now(Err(Error::NoSuchCall)),
        }
    }

    /// `SEND_TO`: one datagram, if the grant reaches its destination.
    fn send_to(&mut self, req: &Request, reply: &mut Message) -> Result<(), Error> {
        let (msg, token, badge) = (&req.msg, req.token, req.badge);
        let port = msg.regs[0] as u16;
        let remote = (msg.regs[1] as u32).to_be_bytes();
        // The grant is checked before anything is read, built or sent.
        self.sockets
            .may_send(badge, port, (remote, msg.regs[2] as u16))?;
        let len = msg.regs[3] as usize;
        if len > MAX_DATAGRAM {
            return Err(Error::OutOfRange);
        }
        if req.leases == 0 {
            return Err(Error::BadLease);
        }
        let mut data = [0u8; MAX_DATAGRAM];
        if cap::lease_read(token, 0, 0, &mut data[..len])? != len {
            return Err(Error::BadLease);
        }
        let me = self.net.address()?;
        let n = write_udp(
            &mut self.buf,
            me,
            remote,
            port,
            msg.regs[2] as u16,
            &data[..len],
        )
        .ok_or(Error::OutOfRange)?;
        self.net.send(remote, PROTO_UDP, &self.buf[..n])?;
        self.sockets.stats.sent += 1;
        reply.regs[0] = len as u64;
        Ok(())
    }
}
