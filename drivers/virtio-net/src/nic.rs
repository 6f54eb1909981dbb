//! The virtio-net device in this process: what the link server (`src/main.rs`) serves over IPC,
//! and what a combined network server (`netstack/combined`) drives directly.
//!
//! The process holds the device server's slots ([`brainix_proto::driver::slots`]): the device,
//! its interrupt, a DMA pool and the private endpoint to wait for the interrupt on. Receive
//! buffers stay posted in the DMA pool; [`Nic::recv_with`] takes the oldest frame that arrived,
//! waiting for the interrupt up to a timeout, and posts its buffer again whatever happens.

use crate::Mac;
use brainix_abi::Error;
use brainix_rt::cap;
use brainix_virtio::hal::{POOL, PoolHal};
use brainix_virtio::{SetupError, log};
use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::transport::SomeTransport;

/// virtio's device type for network cards.
const VIRTIO_NET: u32 = 1;
/// Descriptors per queue: the receive queue holds [`RX`] buffers, transmit one at a time.
const QUEUE_SIZE: usize = 8;
/// Receive buffers kept posted: frames that arrive while nobody asks wait here.
const RX: usize = 4;
/// One buffer: a frame with its virtio-net header, rounded to half a page.
const BUF: usize = 2048;
/// Largest frame without the FCS (the link protocol's limit).
pub const MTU: usize = brainix_proto::link::MTU;

type Net = VirtIONetRaw<PoolHal, SomeTransport<'static>, QUEUE_SIZE>;

/// Why the device could not be brought up.
#[derive(Debug)]
pub enum OpenError {
    /// The transport could not be built (no such device among the capabilities, and the like).
    Setup(SetupError),
    /// virtio-drivers refused to start the device.
    Start(virtio_drivers::Error),
    /// The DMA pool has no page left for a buffer.
    PoolExhausted,
    /// The device refused a receive buffer.
    Post(virtio_drivers::Error),
}

impl core::fmt::Display for OpenError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            OpenError::Setup(e) => write!(f, "cannot set up the device: {e}"),
            OpenError::Start(e) => write!(f, "virtio-net refused to start: {e}"),
            OpenError::PoolExhausted => f.write_str("DMA pool exhausted"),
            OpenError::Post(e) => write!(f, "posting a receive buffer: {e}"),
        }
    }
}

/// One virtio-net device, started, its receive buffers posted and its interrupt enabled.
pub struct Nic {
    net: Net,
    rx: [(&'static mut [u8], u16); RX],
    tx: &'static mut [u8],
}

fn buffer() -> Result<&'static mut [u8], OpenError> {
    let (_, page) = POOL.alloc(1).ok_or(OpenError::PoolExhausted)?;
    // SAFETY: a zeroed pool page, ours alone for the life of the process.
    Ok(unsafe { core::slice::from_raw_parts_mut(page as *mut u8, BUF) })
}

impl Nic {
    /// Brings up the device the process's capabilities name.
    pub fn open() -> Result<Nic, OpenError> {
        let transport = brainix_virtio::transport(VIRTIO_NET).map_err(OpenError::Setup)?;
        let mut net = Net::new(transport).map_err(OpenError::Start)?;
        let mut rx = [const { None }; RX];
        for slot in rx.iter_mut() {
            let buf = buffer()?;
            // SAFETY: the buffer is pool memory that only the device touches until it is
            // popped in `recv_with`.
            let token = unsafe { net.receive_begin(buf) }.map_err(OpenError::Post)?;
            *slot = Some((buf, token));
        }
        // Every slot was filled above, or `open` returned.
        let rx = rx.map(|s| s.unwrap_or_else(|| cap::exit(1)));
        net.enable_interrupts();
        let _ = brainix_virtio::irq().ack();
        Ok(Nic {
            net,
            rx,
            tx: buffer()?,
        })
    }

    /// [`Nic::open`] for a server: without a device in its virtio-mmio page it answers every
    /// request with `io-error` for ever ([`brainix_virtio::serve_without_device`]); any other
    /// failure is logged and ends the process.
    pub fn open_or_exit() -> Nic {
        match Nic::open() {
            Ok(n) => n,
            Err(OpenError::Setup(SetupError::NoMmioDevice)) => {
                brainix_virtio::serve_without_device("virtio-net")
            }
            Err(e) => {
                log!("{e}");
                cap::exit(1)
            }
        }
    }

    /// The device's Ethernet address.
    pub fn mac(&self) -> Mac {
        self.net.mac_address()
    }

    /// After the device's interrupt was delivered to a wait that was not [`Nic::recv_with`]'s
    /// (the process's own endpoint): acknowledges it at the device and re-arms the line, which
    /// may be shared with other devices' servers.
    pub fn acknowledge(&mut self) {
        self.net.ack_interrupt();
        let _ = brainix_virtio::irq().ack();
    }

    fn wait(&mut self, ms: u64) -> bool {
        let woke = brainix_virtio::wait_irq(ms);
        self.acknowledge();
        woke
    }

    /// Sends one `len`-byte frame (14 to [`MTU`]) that `fill` writes into the transmit buffer,
    /// and waits until the device has taken it.
    pub fn send_with(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        if !(14..=MTU).contains(&len) {
            return Err(Error::OutOfRange);
        }
        let hdr = self
            .net
            .fill_buffer_header(self.tx)
            .map_err(|_| Error::Io)?;
        fill(&mut self.tx[hdr..hdr + len])?;
        let total = hdr + len;
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

    /// Sends `frame`.
    pub fn send(&mut self, frame: &[u8]) -> Result<(), Error> {
        self.send_with(frame.len(), |tx| {
            tx.copy_from_slice(frame);
            Ok(())
        })
    }

    /// Hands the next frame that arrived to `take`, waiting up to `timeout_ms` for one
    /// ([`Error::Timeout`] if none came).
    pub fn recv_with<R>(
        &mut self,
        timeout_ms: u64,
        take: impl FnOnce(&[u8]) -> Result<R, Error>,
    ) -> Result<R, Error> {
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
            Ok((hdr, len)) if hdr + len <= buf.len() => take(&buf[hdr..hdr + len]),
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
