//! The transport server: UDP sockets over the IP server, default deny. Speaks
//! [`brainix_proto::transport`] to its clients and [`brainix_proto::ip`] (`SEND`, `RECV`) to the
//! IP server, by synchronous IPC only; payloads cross in leases. Each client's badge is its
//! grant; [`brainix_transport::Sockets`] holds every check.
//!
//! It serves one request at a time. A `RECV_FROM` asks the IP server for datagrams (each wait
//! bounded there) until one is for the caller's socket or the caller's timeout runs out;
//! datagrams for other sockets wait in theirs.
#![cfg_attr(target_os = "none", no_std, no_main)]

brainix_rt::entry!(run);

#[cfg(target_os = "none")]
fn run(_pid: u64) -> ! {
    serve::run()
}

#[cfg(not(target_os = "none"))]
fn run(_pid: u64) -> ! {
    unreachable!("a BraiNIX program")
}

#[cfg(target_os = "none")]
mod serve {
    use brainix_abi::{Error, FOREVER, Message};
    use brainix_proto::config;
    use brainix_proto::transport::{self, MAX_DATAGRAM, slots};
    use brainix_proto::{ip, launch_handle, status, status_of};
    use brainix_rt::fmt::Buffer;
    use brainix_rt::{Endpoint, Log, Received, ReplyToken, cap};
    use brainix_transport::{Grants, Sockets};
    use brainix_wire::{Ipv4Addr, PROTO_UDP, UDP_HEADER, write_udp};
    use core::fmt::Write;

    fn log(args: core::fmt::Arguments<'_>) {
        let mut line = Buffer::<{ brainix_abi::MAX_LOG_LINE }>::new();
        let _ = line.write_fmt(args);
        let _ = Log(launch_handle(slots::LOG)).write(line.as_bytes());
    }

    const BUF: usize = MAX_DATAGRAM + UDP_HEADER;

    struct Server {
        sockets: Sockets,
        ip: Endpoint,
        /// This host's address, asked of the IP server when first needed.
        address: Option<Ipv4Addr>,
        buf: [u8; BUF],
    }

    /// The grants the manifest wrote into this server's configuration block. A block that does
    /// not parse grants nothing, and says so.
    fn grants() -> Grants {
        match config::records().and_then(Grants::from_records) {
            Ok(g) => g,
            Err(e) => {
                log(format_args!(
                    "configuration block refused ({e:?}): every request will be denied"
                ));
                Grants::NONE
            }
        }
    }

    pub fn run() -> ! {
        let mut s = Server {
            sockets: Sockets::new(grants()),
            ip: Endpoint(launch_handle(slots::IP)),
            address: None,
            buf: [0; BUF],
        };
        log(format_args!(
            "udp sockets, default deny; {} grants",
            s.sockets.grants().count()
        ));
        let endpoint = Endpoint(launch_handle(slots::ENDPOINT));
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
                    let result = s.handle(&msg, token, badge, leases, &mut reply);
                    if result == Err(Error::MissingRight) {
                        log(format_args!(
                            "denied: badge {badge:#x}, request {}, port {} (denied so far: {})",
                            msg.label, msg.regs[0], s.sockets.stats.denied
                        ));
                    }
                    reply.label = status_of(result);
                    endpoint.reply_recv(token, &reply, &mut msg, FOREVER)
                }
                Ok(Received::Notification(_)) => endpoint.recv(&mut msg, FOREVER),
                Err(_) => {
                    cap::yield_now();
                    endpoint.recv(&mut msg, FOREVER)
                }
            };
        }
    }

    impl Server {
        /// This host's address: the IP server's interface, asked once.
        fn address(&mut self) -> Result<Ipv4Addr, Error> {
            if let Some(a) = self.address {
                return Ok(a);
            }
            let mut r = Message::new(0);
            self.ip.call(&Message::new(ip::INFO), &[], &mut r)?;
            status(&r)?;
            let a = (r.regs[0] as u32).to_be_bytes();
            self.address = Some(a);
            Ok(a)
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
                    let me = self.address()?;
                    let n = write_udp(
                        &mut self.buf,
                        me,
                        remote,
                        port,
                        msg.regs[2] as u16,
                        &data[..len],
                    )
                    .ok_or(Error::OutOfRange)?;
                    let mut send = Message::new(ip::SEND);
                    send.regs = [msg.regs[1], u64::from(PROTO_UDP), n as u64, 0];
                    let mut r = Message::new(0);
                    self.ip.call(&send, &[cap::lend(&self.buf[..n])], &mut r)?;
                    status(&r)?;
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

        /// One datagram from the IP server into its socket, waiting at most `ms` there.
        fn pull(&mut self, ms: u64) -> Result<(), Error> {
            let mut recv = Message::new(ip::RECV);
            recv.regs[0] = ms;
            let mut r = Message::new(0);
            self.ip
                .call(&recv, &[cap::lend_mut(&mut self.buf)], &mut r)?;
            match status(&r) {
                Ok(()) => {}
                Err(Error::Timeout) => return Ok(()),
                Err(e) => return Err(e),
            }
            let len = (r.regs[0] as usize).min(BUF);
            let from = (r.regs[1] as u32).to_be_bytes();
            let me = self.address()?;
            self.sockets.deliver(from, me, &self.buf[..len]);
            Ok(())
        }
    }
}
