//! The transport server's request loop ([`brainix_proto::transport`]) over any network layer
//! below: [`Server`] holds the sockets ([`crate::Sockets`], every check) and serves one request
//! at a time. A `RECV_FROM` takes messages from the [`Network`] (each wait bounded there) until
//! one is for the caller's socket or the caller's timeout runs out; datagrams for other sockets
//! wait in theirs.
//!
//! The transport server (`src/main.rs`) gives it a network that is IPC to the IP server; a
//! combined network server gives it the IP layer in its own process.

use crate::{Grants, Sockets};
use brainix_abi::{Error, FOREVER, Message};
use brainix_proto::transport::{self, MAX_DATAGRAM};
use brainix_proto::{config, status_of};
use brainix_rt::fmt::Buffer;
use brainix_rt::{Endpoint, Log, Received, ReplyToken, cap};
use brainix_wire::{Ipv4Addr, PROTO_UDP, UDP_HEADER, write_udp};
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

/// The largest message handled: a full UDP datagram.
const BUF: usize = MAX_DATAGRAM + UDP_HEADER;

/// The transport server over `N`.
pub struct Server<N> {
    sockets: Sockets,
    net: N,
    log: Log,
    buf: [u8; BUF],
}

impl<N: Network> Server<N> {
    /// No sockets yet; clients may do what the grants in this program's configuration block
    /// say (a block that does not parse grants nothing, and the log says so); lines go to `log`.
    pub fn new(net: N, log: Log) -> Self {
        let mut s = Server {
            sockets: Sockets::new(Grants::NONE),
            net,
            log,
            buf: [0; BUF],
        };
        match config::records().and_then(Grants::from_records) {
            Ok(g) => s.sockets = Sockets::new(g),
            Err(e) => s.log(format_args!(
                "configuration block refused ({e:?}): every request will be denied"
            )),
        }
        s
    }

    fn log(&self, args: core::fmt::Arguments<'_>) {
        let mut line = Buffer::<{ brainix_abi::MAX_LOG_LINE }>::new();
        let _ = line.write_fmt(args);
        let _ = self.log.write(line.as_bytes());
    }

    /// Serves clients on `endpoint`, for ever. Each client's badge is its grant.
    pub fn run(&mut self, endpoint: Endpoint) -> ! {
        self.log(format_args!(
            "udp sockets, default deny; {} grants",
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
                    let mut reply = Message::new(0);
                    let result = self.handle(&msg, token, badge, leases, &mut reply);
                    if result == Err(Error::MissingRight) {
                        self.log(format_args!(
                            "denied: badge {badge:#x}, request {}, port {} (denied so far: {})",
                            msg.label, msg.regs[0], self.sockets.stats.denied
                        ));
                    }
                    reply.label = status_of(result);
                    endpoint.reply_recv(token, &reply, &mut msg, FOREVER)
                }
                Ok(Received::Notification(_)) => {
                    self.net.notified();
                    endpoint.recv(&mut msg, FOREVER)
                }
                Err(_) => {
                    cap::yield_now();
                    endpoint.recv(&mut msg, FOREVER)
                }
            };
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
                let (start, _) = cap::uptime()?;
                let deadline = start + msg.regs[1].min(transport::RECV_WAIT_MAX_MS);
                loop {
                    let taken = self.sockets.take(badge, port, |m| {
                        let copied = cap::lease_write(token, 0, 0, &m.data[..m.len]);
                        (copied, m.len, m.from, m.from_port)
                    })?;
                    if let Some((copied, len, from, from_port)) = taken {
                        copied?;
                        reply.regs = [
                            len as u64,
                            u64::from(u32::from_be_bytes(from)),
                            u64::from(from_port),
                            0,
                        ];
                        return Ok(());
                    }
                    let (now, _) = cap::uptime()?;
                    if now >= deadline {
                        return Err(Error::Timeout);
                    }
                    self.pull(deadline - now)?;
                }
            }
            transport::STATS => {
                let st = &self.sockets.stats;
                reply.regs = [st.denied, st.delivered, st.sent, st.drops.total()];
                Ok(())
            }
            _ => Err(Error::NoSuchCall),
        }
    }

    /// One message from the network into its socket, waiting at most `ms` there.
    fn pull(&mut self, ms: u64) -> Result<(), Error> {
        let got = match self.net.recv(&mut self.buf, ms) {
            Ok(got) => got,
            Err(Error::Timeout) => return Ok(()),
            Err(e) => return Err(e),
        };
        if got.proto == PROTO_UDP {
            let len = got.len.min(BUF);
            let me = self.net.address()?;
            self.sockets.deliver(got.from, me, &self.buf[..len]);
        }
        Ok(())
    }
}
