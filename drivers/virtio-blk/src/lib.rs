//! # The block server
//!
//! One process per virtio-blk device, holding that device (its PCI function and BAR, or its
//! virtio-mmio page), its interrupt, a DMA pool, its endpoint, a private endpoint to wait for
//! the interrupt on, and the log; nothing else ([`brainix_proto::driver::slots`]). It speaks
//! [`brainix_proto::block`]: whole 512-byte sectors, moved through the caller's lease.
//!
//! Requests are served one at a time. Each is handed to the device from a buffer inside the DMA
//! pool, and the server blocks for the device's interrupt (with a one-second fallback poll, so a
//! lost interrupt costs time, never a hang). Data reaches the client only after the device
//! reported success.
#![no_std]
#![deny(missing_docs)]
#![forbid(unsafe_op_in_unsafe_fn)]

use brainix_abi::{Error, FOREVER, Message};
use brainix_proto::block::{self, MAX_SECTORS, SECTOR};
use brainix_proto::{driver::slots, launch_handle, status_of};
use brainix_rt::{Endpoint, Received, ReplyToken, cap};
use brainix_virtio::hal::{POOL, PoolHal};
use brainix_virtio::log;
use virtio_drivers::device::blk::{BlkReq, BlkResp, VirtIOBlk};
use virtio_drivers::transport::SomeTransport;

type Blk = VirtIOBlk<PoolHal, SomeTransport<'static>>;

/// virtio's device type for block devices.
const VIRTIO_BLOCK: u32 = 2;
/// How long to wait for an interrupt before looking at the queue anyway.
const IRQ_FALLBACK_MS: u64 = 1000;

/// The request header and status byte, kept in the pool so they need no bounce buffer.
struct Slots {
    req: &'static mut BlkReq,
    resp: &'static mut BlkResp,
    data: &'static mut [u8],
}

/// What one request needs checked before it reaches the device: the first sector and the count
/// must lie inside a device of `capacity` sectors, and the count within one DMA buffer.
pub fn check_range(first: u64, count: u64, capacity: u64) -> Result<usize, Error> {
    if count == 0 || count > MAX_SECTORS {
        return Err(Error::OutOfRange);
    }
    let end = first.checked_add(count).ok_or(Error::OutOfRange)?;
    if end > capacity {
        return Err(Error::OutOfRange);
    }
    Ok(count as usize * SECTOR)
}

/// Runs the server; `faulty` adds the [`block::CRASH`] request (test system only).
pub fn serve(faulty: bool) -> ! {
    let transport = match brainix_virtio::transport(VIRTIO_BLOCK) {
        Ok(t) => t,
        Err(brainix_virtio::SetupError::NoMmioDevice) => {
            brainix_virtio::serve_without_device("virtio-blk")
        }
        Err(e) => {
            log!("cannot set up the device: {e}");
            cap::exit(1)
        }
    };
    let mut blk = match Blk::new(transport) {
        Ok(b) => b,
        Err(e) => {
            log!("virtio-blk refused to start: {e}");
            cap::exit(1)
        }
    };
    let Some(mut slots) = pool_slots() else {
        log!(
            "DMA pool too small for a {} KiB buffer",
            MAX_SECTORS * SECTOR as u64 / 1024
        );
        cap::exit(1)
    };
    blk.enable_interrupts();
    // Arms the line (a predecessor that died may have left it masked).
    let _ = brainix_virtio::irq().ack();
    log!(
        "virtio-blk ready: {} sectors ({} KiB){}",
        blk.capacity(),
        blk.capacity() / 2,
        if blk.readonly() { ", read-only" } else { "" }
    );
    let endpoint = Endpoint(launch_handle(slots::ENDPOINT));
    let mut msg = Message::new(0);
    let mut received = endpoint.recv(&mut msg, FOREVER);
    loop {
        received = match received {
            Ok(Received::Message { token, leases, .. }) => {
                let mut reply = Message::new(0);
                let result = handle(
                    &mut blk, &mut slots, &msg, token, leases, &mut reply, faulty,
                );
                reply.label = status_of(result);
                endpoint.reply_recv(token, &reply, &mut msg, FOREVER)
            }
            // An interrupt with no request waiting (a late one): acknowledge and re-arm.
            Ok(Received::Notification(_)) => {
                blk.ack_interrupt();
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

/// The request header, status and data buffer, placed in the DMA pool.
fn pool_slots() -> Option<Slots> {
    let (_, small) = POOL.alloc(1)?;
    let pages = MAX_SECTORS as usize * SECTOR / 4096;
    let (_, data) = POOL.alloc(pages)?;
    let req = small as *mut BlkReq;
    let resp = (small + 64) as *mut BlkResp;
    // SAFETY: both lie in a zeroed pool page that is ours alone for the life of the process,
    // suitably aligned (page start, and 64 bytes in for a one-byte struct), and are initialised
    // here before the references are made.
    let (req, resp) = unsafe {
        req.write(BlkReq::default());
        (&mut *req, &mut *resp)
    };
    // SAFETY: `pages` whole pool pages, zeroed, ours alone for the life of the process.
    let data = unsafe { core::slice::from_raw_parts_mut(data as *mut u8, pages * 4096) };
    Some(Slots { req, resp, data })
}

fn handle(
    blk: &mut Blk,
    s: &mut Slots,
    msg: &Message,
    token: ReplyToken,
    leases: u64,
    reply: &mut Message,
    faulty: bool,
) -> Result<(), Error> {
    match msg.label {
        block::INFO => {
            reply.regs = [blk.capacity(), MAX_SECTORS, u64::from(blk.readonly()), 0];
            Ok(())
        }
        block::READ | block::WRITE => {
            let len = check_range(msg.regs[0], msg.regs[1], blk.capacity())?;
            if leases == 0 {
                return Err(Error::BadLease);
            }
            let write = msg.label == block::WRITE;
            if write {
                if blk.readonly() {
                    return Err(Error::Io);
                }
                let got = cap::lease_read(token, 0, 0, &mut s.data[..len])?;
                if got != len {
                    return Err(Error::BadLease);
                }
            }
            transfer(blk, s, msg.regs[0] as usize, len, write)?;
            if !write {
                cap::lease_write(token, 0, 0, &s.data[..len])?;
            }
            reply.regs[0] = len as u64;
            Ok(())
        }
        block::FLUSH => blk.flush().map_err(|_| Error::Io),
        block::CRASH if faulty => {
            log!("fault injection: writing through a null pointer");
            brainix_rt::crash();
            Err(Error::Io)
        }
        _ => Err(Error::NoSuchCall),
    }
}

/// Moves `len` bytes between the pool buffer and the device at `sector`, waiting for the
/// interrupt.
fn transfer(
    blk: &mut Blk,
    s: &mut Slots,
    sector: usize,
    len: usize,
    write: bool,
) -> Result<(), Error> {
    let buf = &mut s.data[..len];
    // SAFETY: `req`, `resp` and `buf` are pool memory this function does not touch again until
    // the request completes below (virtio-drivers' contract for the non-blocking calls).
    let token = unsafe {
        if write {
            blk.write_blocks_nb(sector, s.req, buf, s.resp)
        } else {
            blk.read_blocks_nb(sector, s.req, buf, s.resp)
        }
    }
    .map_err(|_| Error::Io)?;
    while blk.peek_used() != Some(token) {
        if !brainix_virtio::wait_irq(IRQ_FALLBACK_MS) {
            log!("no interrupt for {IRQ_FALLBACK_MS} ms; looking at the queue anyway");
        }
        blk.ack_interrupt();
        let _ = brainix_virtio::irq().ack();
    }
    // SAFETY: the same buffers as passed to the `_nb` call for this token.
    let done = unsafe {
        if write {
            blk.complete_write_blocks(token, s.req, buf, s.resp)
        } else {
            blk.complete_read_blocks(token, s.req, buf, s.resp)
        }
    };
    done.map_err(|_| Error::Io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_outside_the_device_or_the_buffer_are_refused() {
        assert_eq!(check_range(0, 1, 8), Ok(512));
        assert_eq!(check_range(7, 1, 8), Ok(512));
        assert_eq!(check_range(0, MAX_SECTORS, 1 << 20), Ok(64 * 1024));
        assert_eq!(
            check_range(0, MAX_SECTORS + 1, 1 << 20),
            Err(Error::OutOfRange)
        );
        for (first, count) in [(8, 1), (7, 2), (0, 0), (u64::MAX, 2)] {
            assert_eq!(
                check_range(first, count, 8),
                Err(Error::OutOfRange),
                "{first} {count}"
            );
        }
    }
}
