//! The transport server's request loop ([`brainix_proto::transport`]) over any network layer
//! below: [`Server`] holds the UDP sockets ([`crate::Sockets`]) and the TCP connections
//! ([`crate::tcp::Tcp`]), which hold every check, and serves one request at a time.
//!
//! Nothing is pushed to it. While any TCP listener or connection exists it never waits on its
//! endpoint for long: after a request it waits [`GRACE_MS`] for the next, then takes a message
//! from the [`Network`] (waiting at most [`IDLE_MS`] there), runs the TCP timers and sends what
//! TCP owes, and looks at its endpoint again. A request that waits (`RECV_FROM`, `ACCEPT`,
//! `CONNECT`, `SEND`, `RECV`, each bounded) keeps doing the same meanwhile, so every connection
//! moves while one client waits. With no TCP open it waits on its endpoint for ever, as before.
//!
//! The transport server (`src/main.rs`) gives it a network that is IPC to the IP server; a
//! combined network server gives it the IP layer in its own process.

use crate::tcp::{Handle, SEGMENT_MAX, Tcp};
use crate::{Grants, Sockets};
use brainix_abi::{Error, FOREVER, Message};
use brainix_proto::transport::{self, MAX_DATAGRAM, RECV_WAIT_MAX_MS};
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

/// How long the server waits for a client's next request after serving one while TCP is open,
/// before it turns to the network (the next request usually follows within a few ms).
pub const GRACE_MS: u64 = 5;
/// How long one wait on the network lasts while TCP is open and no client calls: a client's
/// request waits at most this long before it is seen, and the TCP timers run this often.
pub const IDLE_MS: u64 = 20;
/// How long the server leaves the network alone after it failed (the IP server restarting).
const TROUBLE_MS: u64 = 100;

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

    /// How long to wait on the endpoint: `ms` while TCP needs the network, else for ever.
    fn wait(&self, ms: u64) -> u64 {
        if self.tcp.active() { ms } else { FOREVER }
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
                    let mut reply = Message::new(0);
                    let result = self.handle(&msg, token, badge, leases, &mut reply);
                    if result == Err(Error::MissingRight) {
                        let denied = self.sockets.stats.denied + self.tcp.stats.denied;
                        self.log(format_args!(
                            "denied: badge {badge:#x}, request {}, port {} (denied so far: {denied})",
                            msg.label, msg.regs[0]
                        ));
                    }
                    reply.label = status_of(result);
                    endpoint.reply_recv(token, &reply, &mut msg, self.wait(GRACE_MS))
                }
                Ok(Received::Notification(_)) => {
                    self.net.notified();
                    endpoint.recv(&mut msg, self.wait(0))
                }
                Err(Error::Timeout) => {
                    // Between requests: TCP's turn.
                    let pause = match self.service(IDLE_MS) {
                        Ok(()) => 0,
                        Err(_) => TROUBLE_MS,
                    };
                    endpoint.recv(&mut msg, self.wait(pause))
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
        let (now, _) = cap::uptime()?;
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

    /// Keeps the network going until `ready` has an answer, for at most `ms` (at most
    /// [`RECV_WAIT_MAX_MS`]); [`Error::Timeout`] if none came.
    fn wait_for<R>(
        &mut self,
        ms: u64,
        mut ready: impl FnMut(&mut Self) -> Result<Option<R>, Error>,
    ) -> Result<R, Error> {
        let (start, _) = cap::uptime()?;
        let deadline = start + ms.min(RECV_WAIT_MAX_MS);
        loop {
            if let Some(r) = ready(self)? {
                return Ok(r);
            }
            let (now, _) = cap::uptime()?;
            if now >= deadline {
                return Err(Error::Timeout);
            }
            self.service((deadline - now).min(IDLE_MS))?;
        }
    }

    /// This host's address, for TCP's checksums; asked of the network before a TCP request.
    fn tcp_ready(&mut self) -> Result<(), Error> {
        let me = self.net.address()?;
        self.tcp.set_address(me);
        Ok(())
    }

    fn handle_tcp(
        &mut self,
        msg: &Message,
        token: ReplyToken,
        badge: u64,
        leases: u64,
        reply: &mut Message,
    ) -> Result<(), Error> {
        self.tcp_ready()?;
        let port = msg.regs[0] as u16;
        let conn: Handle = msg.regs[0];
        let (now, _) = cap::uptime()?;
        let needs_lease = matches!(msg.label, transport::SEND | transport::RECV);
        if needs_lease && leases == 0 {
            return Err(Error::BadLease);
        }
        match msg.label {
            transport::LISTEN => self.tcp.listen(badge, port),
            transport::ACCEPT => {
                let a = self.wait_for(msg.regs[1], |s| s.tcp.accept(badge, port))?;
                reply.regs = [
                    a.handle,
                    u64::from(u32::from_be_bytes(a.remote)),
                    u64::from(a.remote_port),
                    0,
                ];
                Ok(())
            }
            transport::CONNECT => {
                let remote = (msg.regs[1] as u32).to_be_bytes();
                // The grant is checked before anything is built or sent.
                let h = self
                    .tcp
                    .connect(badge, port, remote, msg.regs[2] as u16, now)?;
                self.flush(now);
                let open = self.wait_for(msg.regs[3], |s| {
                    Ok(s.tcp.established(badge, h)?.then_some(()))
                });
                match open {
                    Ok(()) => reply.regs = [h, 1, 0, 0],
                    Err(Error::Timeout) => reply.regs = [h, 0, 0, 0],
                    Err(e) => {
                        // Refused or unanswered: released here, the client has no handle.
                        let _ = self.tcp.close(badge, h);
                        return Err(e);
                    }
                }
                Ok(())
            }
            transport::SEND => {
                let len = msg.regs[1] as usize;
                let n = self.wait_for(msg.regs[2], |s| {
                    let n = s.tcp.send_with(badge, conn, len, |at, run| {
                        cap::lease_read(token, 0, at as u64, run)
                    })?;
                    Ok((n > 0 || len == 0).then_some(n))
                })?;
                self.flush(now);
                reply.regs[0] = n as u64;
                Ok(())
            }
            transport::RECV => {
                let max = msg.regs[1] as usize;
                let n = self.wait_for(msg.regs[2], |s| {
                    s.tcp.recv_with(badge, conn, max, |at, run| {
                        cap::lease_write(token, 0, at as u64, run).map(drop)
                    })
                })?;
                // A window update, if reading re-opened the window.
                self.flush(now);
                reply.regs[0] = n as u64;
                Ok(())
            }
            transport::CLOSE => {
                self.tcp.close(badge, conn)?;
                self.flush(now);
                Ok(())
            }
            transport::ABORT => {
                self.tcp.abort(badge, conn)?;
                self.flush(now);
                Ok(())
            }
            _ => {
                let st = &self.tcp.stats;
                reply.regs = [st.denied, st.opened, st.retransmits, st.refused()];
                Ok(())
            }
        }
    }

    fn handle(
        &mut self,
        msg: &Message,
        token: ReplyToken,
        badge: u64,
        leases: u64,
        reply: &mut Message,
    ) -> Result<(), Error> {
        let port = msg.regs[0] as u16;
        match msg.label {
            transport::BIND => self.sockets.bind(badge, port),
            transport::SEND_TO => {
                let remote = (msg.regs[1] as u32).to_be_bytes();
                // The grant is checked before anything is read, built or sent.
                self.sockets
                    .may_send(badge, port, (remote, msg.regs[2] as u16))?;
                let len = msg.regs[3] as usize;
                if len > MAX_DATAGRAM {
                    return Err(Error::OutOfRange);
                }
                if leases == 0 {
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
            transport::RECV_FROM => {
                if leases == 0 {
                    return Err(Error::BadLease);
                }
                let (copied, len, from, from_port) = self.wait_for(msg.regs[1], |s| {
                    s.sockets.take(badge, port, |m| {
                        let copied = cap::lease_write(token, 0, 0, &m.data[..m.len]);
                        (copied, m.len, m.from, m.from_port)
                    })
                })?;
                copied?;
                reply.regs = [
                    len as u64,
                    u64::from(u32::from_be_bytes(from)),
                    u64::from(from_port),
                    0,
                ];
                Ok(())
            }
            transport::STATS => {
                let st = &self.sockets.stats;
                reply.regs = [st.denied, st.delivered, st.sent, st.drops.total()];
                Ok(())
            }
            transport::LISTEN..=transport::TCP_STATS => {
                self.handle_tcp(msg, token, badge, leases, reply)
            }
            _ => Err(Error::NoSuchCall),
        }
    }
}
