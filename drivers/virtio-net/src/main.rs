//! The link server: one virtio-net device, raw Ethernet frames, speaking
//! [`brainix_proto::link`]. The network stack's lowest server (issue 6 builds IP and transport
//! above it, each a server of its own).
//!
//! It holds that device, its interrupt, a DMA pool, its endpoint, a private endpoint to wait for
//! the interrupt, and the log ([`brainix_proto::driver::slots`]). Receive buffers stay posted
//! in the DMA pool; a `RECV` takes the oldest frame that arrived, waiting for the interrupt up
//! to the caller's timeout. Frames go to and from the caller through its lease.
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
    use brainix_proto::{driver::slots, launch_handle, link, status_of};
    use brainix_rt::{Endpoint, Received, ReplyToken, cap};
    use brainix_virtio::hal::{POOL, PoolHal};
    use brainix_virtio::log;
    use brainix_virtio_net::MacText;
    use virtio_drivers::device::net::VirtIONetRaw;
    use virtio_drivers::transport::SomeTransport;

    /// virtio's device type for network cards.
    const VIRTIO_NET: u32 = 1;
    const QUEUE_SIZE: usize = 8;
    /// Receive buffers kept posted.
    const RX: usize = 4;
    /// One buffer: a frame with its virtio-net header, rounded to half a page.
    const BUF: usize = 2048;

    type Net = VirtIONetRaw<PoolHal, SomeTransport<'static>, QUEUE_SIZE>;

    struct Link {
        net: Net,
        rx: [(&'static mut [u8], u16); RX],
        tx: &'static mut [u8],
    }

    fn buffer() -> &'static mut [u8] {
        let Some((_, page)) = POOL.alloc(1) else {
            log!("DMA pool exhausted");
            cap::exit(1)
        };
        // SAFETY: a zeroed pool page, ours alone for the life of the process.
        unsafe { core::slice::from_raw_parts_mut(page as *mut u8, BUF) }
    }

    pub fn run() -> ! {
        let transport = match brainix_virtio::transport(VIRTIO_NET) {
            Ok(t) => t,
            Err(brainix_virtio::SetupError::NoMmioDevice) => {
                brainix_virtio::serve_without_device("virtio-net")
            }
            Err(e) => {
                log!("cannot set up the device: {e}");
                cap::exit(1)
            }
        };
        let mut net = match Net::new(transport) {
            Ok(n) => n,
            Err(e) => {
                log!("virtio-net refused to start: {e}");
                cap::exit(1)
            }
        };
        let mut rx = [const { None }; RX];
        for slot in rx.iter_mut() {
            let buf = buffer();
            // SAFETY: the buffer is pool memory that only the device touches until it is
            // popped in `recv`.
            match unsafe { net.receive_begin(buf) } {
                Ok(token) => *slot = Some((buf, token)),
                Err(e) => {
                    log!("posting a receive buffer: {e}");
                    cap::exit(1)
                }
            }
        }
        let rx = rx.map(|s| s.unwrap_or_else(|| cap::exit(1)));
        net.enable_interrupts();
        let _ = brainix_virtio::irq().ack();
        log!("virtio-net ready: mac {}", MacText(net.mac_address()));
        let mut link = Link {
            net,
            rx,
            tx: buffer(),
        };
        let endpoint = Endpoint(launch_handle(slots::ENDPOINT));
        let mut msg = Message::new(0);
        let mut received = endpoint.recv(&mut msg, FOREVER);
        loop {
            received = match received {
                Ok(Received::Message { token, leases, .. }) => {
                    let mut reply = Message::new(0);
                    let result = link.handle(&msg, token, leases, &mut reply);
                    reply.label = status_of(result);
                    endpoint.reply_recv(token, &reply, &mut msg, FOREVER)
                }
                Ok(Received::Notification(_)) => {
                    link.net.ack_interrupt();
                    let _ = brainix_virtio::irq().ack();
                    endpoint.recv(&mut msg, FOREVER)
                }
                Err(_) => {
                    cap::yield_now();
                    endpoint.recv(&mut msg, FOREVER)
                }
            };
        }
    }

    impl Link {
        fn handle(
            &mut self,
            msg: &Message,
            token: ReplyToken,
            leases: u64,
            reply: &mut Message,
        ) -> Result<(), Error> {
            match msg.label {
                link::INFO => {
                    let mac = self.net.mac_address();
                    let mut word = [0u8; 8];
                    word[..6].copy_from_slice(&mac);
                    reply.regs = [u64::from_le_bytes(word), link::MTU as u64, 0, 0];
                    Ok(())
                }
                link::SEND => {
                    let len = msg.regs[0] as usize;
                    if !(14..=link::MTU).contains(&len) {
                        return Err(Error::OutOfRange);
                    }
                    if leases == 0 {
                        return Err(Error::BadLease);
                    }
                    let hdr = self
                        .net
                        .fill_buffer_header(self.tx)
                        .map_err(|_| Error::Io)?;
                    let got = cap::lease_read(token, 0, 0, &mut self.tx[hdr..hdr + len])?;
                    if got != len {
                        return Err(Error::BadLease);
                    }
                    self.send(hdr + len)?;
                    reply.regs[0] = len as u64;
                    Ok(())
                }
                link::RECV => {
                    if leases == 0 {
                        return Err(Error::BadLease);
                    }
                    let n = self.recv(token, msg.regs[0])?;
                    reply.regs[0] = n as u64;
                    Ok(())
                }
                _ => Err(Error::NoSuchCall),
            }
        }

        fn wait(&mut self, ms: u64) -> bool {
            let woke = brainix_virtio::wait_irq(ms);
            self.net.ack_interrupt();
            let _ = brainix_virtio::irq().ack();
            woke
        }

        fn send(&mut self, total: usize) -> Result<(), Error> {
            let frame = &self.tx[..total];
            // SAFETY: `tx` is pool memory this function does not touch until it is popped.
            let token = unsafe { self.net.transmit_begin(frame) }.map_err(|_| Error::Io)?;
            while self.net.poll_transmit() != Some(token) {
                if !self.wait(1000) {
                    log!("no transmit interrupt for 1000 ms; looking at the queue anyway");
                }
            }
            // SAFETY: the same buffer as given to `transmit_begin` for this token.
            unsafe { self.net.transmit_complete(token, &self.tx[..total]) }
                .map(drop)
                .map_err(|_| Error::Io)
        }

        /// The next frame into the caller's lease, waiting up to `timeout_ms`.
        fn recv(&mut self, client: ReplyToken, timeout_ms: u64) -> Result<usize, Error> {
            let (start, _) = cap::uptime()?;
            let token = loop {
                if let Some(t) = self.net.poll_receive() {
                    break t;
                }
                let (now, _) = cap::uptime()?;
                let waited = now.saturating_sub(start);
                if waited >= timeout_ms {
                    return Err(Error::Timeout);
                }
                self.wait(timeout_ms - waited);
            };
            let Some(i) = self.rx.iter().position(|(_, t)| *t == token) else {
                log!("the device returned a buffer it was never given (token {token})");
                return Err(Error::Io);
            };
            let buf = &mut *self.rx[i].0;
            // SAFETY: the buffer posted with this token.
            let done = unsafe { self.net.receive_complete(token, buf) };
            let result = match done {
                Ok((hdr, len)) if hdr + len <= buf.len() => {
                    cap::lease_write(client, 0, 0, &buf[hdr..hdr + len]).map(|_| len)
                }
                _ => Err(Error::Io),
            };
            // Re-post the buffer whatever happened to the frame.
            // SAFETY: as when it was first posted.
            match unsafe { self.net.receive_begin(buf) } {
                Ok(t) => self.rx[i].1 = t,
                Err(e) => log!("re-posting a receive buffer: {e}"),
            }
            result
        }
    }
}
