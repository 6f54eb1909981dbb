//! The IP server: IPv4, ARP and ICMP echo on one interface, speaking [`brainix_proto::ip`] to
//! its clients and [`brainix_proto::link`] to the link server, by synchronous IPC only. Frames
//! cross to and from the link server in leases of this server's own buffers.
//!
//! Nothing is pushed to it: between clients' requests it asks the link server for the next frame
//! (waiting at most [`IDLE_MS`] there), answers ARP and echo requests, and drops and counts the
//! rest ([`brainix_ip::Stack`]). A `PING` keeps doing that while it waits for its reply, so the
//! host can ping the guest while the guest pings.
#![cfg_attr(target_os = "none", no_std, no_main)]

brainix_rt::entry!(run);

#[cfg(target_os = "none")]
fn run(pid: u64) -> ! {
    serve::run(pid)
}

#[cfg(not(target_os = "none"))]
fn run(_pid: u64) -> ! {
    unreachable!("a BraiNIX program")
}

/// How long one wait on the link server lasts while no client calls: a client's request waits
/// at most this long before it is seen.
#[cfg(target_os = "none")]
const IDLE_MS: u64 = 20;

/// How long the server waits for a client's next request after serving one, before it goes
/// back to waiting on the link (frames meanwhile wait in the link server's receive buffers).
#[cfg(target_os = "none")]
const GRACE_MS: u64 = 5;

#[cfg(target_os = "none")]
mod serve {
    use super::{GRACE_MS, IDLE_MS};
    use brainix_abi::{Error, Message};
    use brainix_ip::{Input, MTU, Stack};
    use brainix_proto::{config, ip, launch_handle, link, status, status_of};
    use brainix_rt::fmt::Buffer;
    use brainix_rt::{Endpoint, Log, Received, ReplyToken, cap};
    use brainix_wire::{Drop, IpText, Ipv4Addr, Mac, PROTO_UDP};
    use core::fmt::Write;

    fn log(args: core::fmt::Arguments<'_>) {
        let mut line = Buffer::<{ brainix_abi::MAX_LOG_LINE }>::new();
        let _ = line.write_fmt(args);
        let _ = Log(launch_handle(ip::slots::LOG)).write(line.as_bytes());
    }

    /// UDP datagrams waiting for the transport server. Four covers a burst of echo traffic
    /// between two of its `RECV`s; when full, new ones are dropped and counted.
    const QUEUE: usize = 4;
    /// The largest datagram: a full IP payload.
    const DATAGRAM: usize = MTU - 34;

    struct Queued {
        len: usize,
        from: Ipv4Addr,
        bytes: [u8; DATAGRAM],
    }

    struct Server {
        stack: Stack,
        link: Endpoint,
        ident: u16,
        frame: [u8; MTU],
        out: [u8; MTU],
        queue: [Queued; QUEUE],
        head: usize,
        queued: usize,
    }

    fn call_link(link: Endpoint, msg: &Message, lease: cap::Lent<'_>) -> Result<u64, Error> {
        let mut reply = Message::new(0);
        link.call(msg, &[lease], &mut reply)?;
        status(&reply)?;
        Ok(reply.regs[0])
    }

    /// The link server's MAC; waits for it to come up (it may start after us, or not at all).
    fn link_mac(link: Endpoint) -> Mac {
        let mut logged = false;
        loop {
            let mut reply = Message::new(0);
            let got = link
                .call(&Message::new(link::INFO), &[], &mut reply)
                .and_then(|()| status(&reply));
            match got {
                Ok(()) => {
                    let mut mac = [0u8; 6];
                    mac.copy_from_slice(&reply.regs[0].to_le_bytes()[..6]);
                    return mac;
                }
                Err(e) => {
                    if !logged {
                        log(format_args!("no link server yet ({}); waiting", e.name()));
                        logged = true;
                    }
                    // Clients meanwhile learn there is no network, rather than hang.
                    refuse_for(1000, Error::PeerDead);
                }
            }
        }
    }

    /// Answers every request that arrives in the next `ms` with `error`.
    fn refuse_for(ms: u64, error: Error) {
        let ep = Endpoint(launch_handle(ip::slots::ENDPOINT));
        let mut msg = Message::new(0);
        if let Ok(Received::Message { token, .. }) = ep.recv(&mut msg, ms) {
            let _ = cap::reply(token, &Message::new(error as u64));
        }
    }

    /// The interface the manifest wrote into this server's configuration block. Without one
    /// (or with a block that does not parse) there is no network: every client is told so.
    fn interface() -> ip::Config {
        let why = match config::interface() {
            Ok(Some(c)) => return c,
            Ok(None) => "no interface in this server's configuration",
            Err(_) => "its configuration block is malformed",
        };
        log(format_args!(
            "no network: {why}; expected `interface` on this process in the manifest"
        ));
        loop {
            refuse_for(1000, Error::PeerDead);
        }
    }

    pub fn run(pid: u64) -> ! {
        let config = interface();
        let link = Endpoint(launch_handle(ip::slots::LINK));
        let mac = link_mac(link);
        let mut s = Server {
            stack: Stack::new(mac, config),
            link,
            ident: 0x4200 ^ pid as u16,
            frame: [0; MTU],
            out: [0; MTU],
            queue: [const {
                Queued {
                    len: 0,
                    from: [0; 4],
                    bytes: [0; DATAGRAM],
                }
            }; QUEUE],
            head: 0,
            queued: 0,
        };
        log(format_args!(
            "ip {}/{} gateway {} on the link server",
            IpText(config.address),
            config.prefix,
            IpText(config.gateway)
        ));
        let endpoint = Endpoint(launch_handle(ip::slots::ENDPOINT));
        let mut msg = Message::new(0);
        // Right after a request, the next one usually follows within a few milliseconds (the
        // transport server's `SEND` after its `RECV`): wait that long for it before going back
        // to the link, where a request could wait up to IDLE_MS.
        let mut grace = 0;
        loop {
            match endpoint.recv(&mut msg, grace) {
                Ok(Received::Message { token, badge, .. }) => {
                    let mut reply = Message::new(0);
                    let result = s.handle(&msg, token, badge, &mut reply);
                    reply.label = status_of(result);
                    let _ = cap::reply(token, &reply);
                    grace = GRACE_MS;
                    continue;
                }
                Ok(Received::Notification(_)) => {}
                Err(Error::Timeout) => {
                    grace = 0;
                    if let Err(e) = s.pump(IDLE_MS) {
                        s.link_trouble(e);
                    }
                }
                Err(_) => cap::yield_now(),
            }
        }
    }

    impl Server {
        fn handle(
            &mut self,
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
                    if len > DATAGRAM {
                        return Err(Error::OutOfRange);
                    }
                    // Resolve first: answering frames meanwhile reuses `out`.
                    let (start, _) = cap::uptime()?;
                    let via = self.resolve(dst, start + ip::PING_TIMEOUT_MS)?;
                    if cap::lease_read(token, 0, 0, &mut self.out[34..34 + len])? != len {
                        return Err(Error::BadLease);
                    }
                    let n = self
                        .stack
                        .wrap(via, dst, msg.regs[1] as u8, len, &mut self.out)
                        .ok_or(Error::OutOfRange)?;
                    self.send(n)?;
                    reply.regs[0] = len as u64;
                    Ok(())
                }
                ip::RECV => {
                    if self.queued == 0 {
                        let (start, _) = cap::uptime()?;
                        let wait = msg.regs[0].min(ip::RECV_WAIT_MAX_MS);
                        let _ = self.until(start + wait, |s, _| s.queued > 0);
                    }
                    if self.queued == 0 {
                        return Err(Error::Timeout);
                    }
                    let q = &self.queue[self.head];
                    cap::lease_write(token, 0, 0, &q.bytes[..q.len])?;
                    reply.regs = [
                        q.len as u64,
                        u64::from(u32::from_be_bytes(q.from)),
                        u64::from(PROTO_UDP),
                        0,
                    ];
                    self.head = (self.head + 1) % QUEUE;
                    self.queued -= 1;
                    Ok(())
                }
                ip::PING => {
                    let dst = (msg.regs[0] as u32).to_be_bytes();
                    let (ticks, ttl) = self.ping(dst, msg.regs[1] as u16)?;
                    reply.regs = [ticks, u64::from(ttl), 0, 0];
                    Ok(())
                }
                ip::INFO => {
                    let c = self.stack.config();
                    reply.regs = [
                        u64::from(u32::from_be_bytes(c.address)),
                        u64::from(c.prefix),
                        u64::from(u32::from_be_bytes(c.gateway)),
                        0,
                    ];
                    Ok(())
                }
                ip::STATS => {
                    let st = &self.stack.stats;
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

        /// After the link server failed: say so, and keep clients answered while it restarts.
        fn link_trouble(&mut self, e: Error) {
            if e != Error::Timeout {
                log(format_args!("link server: {}", e.name()));
                refuse_for(1000, Error::PeerDead);
            }
        }

        fn send(&mut self, n: usize) -> Result<(), Error> {
            let mut msg = Message::new(link::SEND);
            msg.regs[0] = n as u64;
            call_link(self.link, &msg, cap::lend(&self.out[..n])).map(drop)
        }

        /// Takes frames from the link for up to `ms`, answering what needs answering; returns
        /// the first echo reply for us, if one came.
        fn pump(&mut self, ms: u64) -> Result<Option<(Ipv4Addr, u16, u16, u8)>, Error> {
            let mut msg = Message::new(link::RECV);
            msg.regs[0] = ms;
            let n = match call_link(self.link, &msg, cap::lend_mut(&mut self.frame)) {
                Ok(n) => (n as usize).min(MTU),
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
                Input::Datagram { at, len, from } => {
                    if self.queued == QUEUE {
                        self.stack.stats.drops.count(Drop::QueueFull);
                    } else {
                        let q = &mut self.queue[(self.head + self.queued) % QUEUE];
                        q.bytes[..len].copy_from_slice(&self.frame[at..at + len]);
                        q.len = len;
                        q.from = from;
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
            mut done: impl FnMut(&Self, Option<(Ipv4Addr, u16, u16, u8)>) -> bool,
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

        fn ping(&mut self, dst: Ipv4Addr, seq: u16) -> Result<(u64, u8), Error> {
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
}
