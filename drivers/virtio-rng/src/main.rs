//! The entropy server: one virtio-rng device, speaking [`brainix_proto::entropy`].
//!
//! It holds that device, its interrupt, a DMA pool, its endpoint, a private endpoint to wait for
//! the interrupt, and the log ([`brainix_proto::driver::slots`]). virtio-drivers' `VirtIORng`
//! only offers a call that spins until the device answers, so the queue is driven here with
//! virtio-drivers' own transport and `VirtQueue`, blocking for the interrupt instead. The kernel
//! does not depend on this server: it still requires RDRAND.
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
    use brainix_abi::{Error, FOREVER, MAX_PAYLOAD, Message};
    use brainix_proto::{driver::slots, entropy, launch_handle, status_of};
    use brainix_rt::{Endpoint, Received, cap};
    use brainix_virtio::hal::{POOL, PoolHal};
    use brainix_virtio::log;
    use virtio_drivers::device::common::Feature;
    use virtio_drivers::queue::VirtQueue;
    use virtio_drivers::transport::{SomeTransport, Transport};

    /// virtio's device type for entropy sources.
    const VIRTIO_ENTROPY: u32 = 4;
    const QUEUE: u16 = 0;
    const QUEUE_SIZE: usize = 4;
    const IRQ_FALLBACK_MS: u64 = 1000;

    struct Rng {
        transport: SomeTransport<'static>,
        queue: VirtQueue<PoolHal, QUEUE_SIZE>,
        buf: &'static mut [u8],
    }

    pub fn run() -> ! {
        let mut transport = match brainix_virtio::transport(VIRTIO_ENTROPY) {
            Ok(t) => t,
            Err(brainix_virtio::SetupError::NoMmioDevice) => {
                brainix_virtio::serve_without_device("virtio-rng")
            }
            Err(e) => {
                log!("cannot set up the device: {e}");
                cap::exit(1)
            }
        };
        let features = transport.begin_init(Feature::VERSION_1);
        let queue = match VirtQueue::new(&mut transport, QUEUE, false, false) {
            Ok(q) => q,
            Err(e) => {
                log!("virtio-rng queue: {e}");
                cap::exit(1)
            }
        };
        transport.finish_init();
        let _ = features;
        let Some((_, page)) = POOL.alloc(1) else {
            log!("DMA pool exhausted");
            cap::exit(1)
        };
        // SAFETY: one zeroed pool page, ours alone for the life of the process.
        let buf = unsafe { core::slice::from_raw_parts_mut(page as *mut u8, MAX_PAYLOAD) };
        let mut rng = Rng {
            transport,
            queue,
            buf,
        };
        let _ = brainix_virtio::irq().ack();
        log!("virtio-rng ready");
        let endpoint = Endpoint(launch_handle(slots::ENDPOINT));
        let mut msg = Message::new(0);
        let mut received = endpoint.recv(&mut msg, FOREVER);
        loop {
            received = match received {
                Ok(Received::Message { token, .. }) => {
                    let mut reply = Message::new(0);
                    let result = rng.handle(&msg, &mut reply);
                    reply.label = status_of(result);
                    endpoint.reply_recv(token, &reply, &mut msg, FOREVER)
                }
                Ok(Received::Notification(_)) => {
                    rng.transport.ack_interrupt();
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

    impl Rng {
        fn handle(&mut self, msg: &Message, reply: &mut Message) -> Result<(), Error> {
            if msg.label != entropy::READ {
                return Err(Error::NoSuchCall);
            }
            let want = msg.regs[0] as usize;
            if want == 0 || want > MAX_PAYLOAD {
                return Err(Error::OutOfRange);
            }
            let mut got = 0;
            while got < want {
                let n = self.fill(want - got)?;
                reply.payload[got..got + n].copy_from_slice(&self.buf[..n]);
                got += n;
            }
            reply.regs[0] = got as u64;
            reply.len = got as u64;
            Ok(())
        }

        /// One request to the device for up to `want` bytes, waiting for its interrupt.
        fn fill(&mut self, want: usize) -> Result<usize, Error> {
            let buf = &mut self.buf[..want];
            // SAFETY: `buf` is pool memory this function does not touch until the request is
            // popped below.
            let token = unsafe { self.queue.add(&[], &mut [buf]) }.map_err(|_| Error::Io)?;
            if self.queue.should_notify() {
                self.transport.notify(QUEUE);
            }
            while self.queue.peek_used() != Some(token) {
                if !brainix_virtio::wait_irq(IRQ_FALLBACK_MS) {
                    log!("no interrupt for {IRQ_FALLBACK_MS} ms; looking at the queue anyway");
                }
                self.transport.ack_interrupt();
                let _ = brainix_virtio::irq().ack();
            }
            let buf = &mut self.buf[..want];
            // SAFETY: the same buffer as added for this token.
            let n =
                unsafe { self.queue.pop_used(token, &[], &mut [buf]) }.map_err(|_| Error::Io)?;
            // A device claiming more than it was given is not believed; nothing is a failure.
            match (n as usize).min(want) {
                0 => Err(Error::Io),
                n => Ok(n),
            }
        }
    }
}
