//! The transport server of the chain: [`brainix_transport::server`] over a network that is IPC
//! to the IP server. Shared by the server (`main.rs`) and its fault-injection build
//! (`bin/transport-faulty.rs`).

use brainix_abi::{Error, Message};
use brainix_proto::transport::slots;
use brainix_proto::{ip, launch_handle, status};
use brainix_rt::{Endpoint, Log, cap};
use brainix_transport::server::{Arrival, Network, Server};
use brainix_wire::Ipv4Addr;

/// The IP server, called through its endpoint (with [`ip::TRANSPORT_BADGE`]), and this
/// host's address once it has been asked.
struct IpServer(Endpoint, Option<Ipv4Addr>);

impl Network for IpServer {
    fn address(&mut self) -> Result<Ipv4Addr, Error> {
        if let Some(a) = self.1 {
            return Ok(a);
        }
        let mut r = Message::new(0);
        self.0.call(&Message::new(ip::INFO), &[], &mut r)?;
        status(&r)?;
        let a = (r.regs[0] as u32).to_be_bytes();
        self.1 = Some(a);
        Ok(a)
    }

    fn send(&mut self, dst: Ipv4Addr, proto: u8, message: &[u8]) -> Result<(), Error> {
        let mut send = Message::new(ip::SEND);
        send.regs = [
            u64::from(u32::from_be_bytes(dst)),
            u64::from(proto),
            message.len() as u64,
            0,
        ];
        let mut r = Message::new(0);
        self.0.call(&send, &[cap::lend(message)], &mut r)?;
        status(&r)
    }

    fn recv(&mut self, into: &mut [u8], ms: u64) -> Result<Arrival, Error> {
        let mut recv = Message::new(ip::RECV);
        recv.regs[0] = ms;
        let mut r = Message::new(0);
        self.0.call(&recv, &[cap::lend_mut(into)], &mut r)?;
        status(&r)?;
        Ok(Arrival {
            len: r.regs[0] as usize,
            from: (r.regs[1] as u32).to_be_bytes(),
            proto: r.regs[2] as u8,
        })
    }
}

/// The transport server over the IP server, for ever. With `crash` (the fault-injection build,
/// `src/bin/transport-faulty.rs`), a `transport::CRASH` request calls it.
pub fn run(crash: Option<fn()>) -> ! {
    // 75 KiB, most of it TCP's buffers: in a static, built at compile time, not on the stack.
    static mut SERVER: Server<IpServer> = Server::new(
        IpServer(Endpoint(launch_handle(slots::IP)), None),
        Log(launch_handle(slots::LOG)),
    );
    // SAFETY: `run` is entered once (the program's entry) and never returns; this is the
    // only reference ever made to `SERVER`.
    let server = unsafe { &mut *core::ptr::addr_of_mut!(SERVER) };
    server.run(Endpoint(launch_handle(slots::ENDPOINT)), crash)
}
