//! The link server: one virtio-net device, raw Ethernet frames, speaking
//! [`brainix_proto::link`]. The network stack's lowest server (issue 6 builds IP and transport
//! above it, each a server of its own).
//!
//! It holds that device, its interrupt, a DMA pool, its endpoint, a private endpoint to wait for
//! the interrupt, and the log ([`brainix_proto::driver::slots`]). The device is
//! [`brainix_virtio_net::nic::Nic`]; a `RECV` takes the oldest frame that arrived, waiting for
//! the interrupt up to the caller's timeout. Frames go to and from the caller through its lease.
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
    use brainix_virtio::log;
    use brainix_virtio_net::MacText;
    use brainix_virtio_net::nic::Nic;

    pub fn run() -> ! {
        let mut nic = Nic::open_or_exit();
        log!("virtio-net ready: mac {}", MacText(nic.mac()));
        let endpoint = Endpoint(launch_handle(slots::ENDPOINT));
        let mut msg = Message::new(0);
        let mut received = endpoint.recv(&mut msg, FOREVER);
        loop {
            received = match received {
                Ok(Received::Message { token, leases, .. }) => {
                    let mut reply = Message::new(0);
                    let result = handle(&mut nic, &msg, token, leases, &mut reply);
                    reply.label = status_of(result);
                    endpoint.reply_recv(token, &reply, &mut msg, FOREVER)
                }
                Ok(Received::Notification(_)) => {
                    nic.acknowledge();
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
        nic: &mut Nic,
        msg: &Message,
        token: ReplyToken,
        leases: u64,
        reply: &mut Message,
    ) -> Result<(), Error> {
        match msg.label {
            link::INFO => {
                let mut word = [0u8; 8];
                word[..6].copy_from_slice(&nic.mac());
                reply.regs = [u64::from_le_bytes(word), link::MTU as u64, 0, 0];
                Ok(())
            }
            link::SEND => {
                let len = msg.regs[0] as usize;
                nic.send_with(len, |tx| {
                    if leases == 0 {
                        return Err(Error::BadLease);
                    }
                    if cap::lease_read(token, 0, 0, tx)? != len {
                        return Err(Error::BadLease);
                    }
                    Ok(())
                })?;
                reply.regs[0] = len as u64;
                Ok(())
            }
            link::RECV => {
                if leases == 0 {
                    return Err(Error::BadLease);
                }
                let n = nic.recv_with(msg.regs[0], |frame| {
                    cap::lease_write(token, 0, 0, frame).map(|_| frame.len())
                })?;
                reply.regs[0] = n as u64;
                Ok(())
            }
            _ => Err(Error::NoSuchCall),
        }
    }
}
