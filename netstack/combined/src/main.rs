//! The combined network server: the link, IP and transport layers in one process. It drives its
//! own virtio-net device ([`brainix_virtio_net::nic::Nic`]), runs the IP layer
//! ([`brainix_ip::server::Ip`]) over it and serves [`brainix_proto::transport`] to its clients
//! ([`brainix_transport::server::Server`]): the same library code as the three servers of the
//! chain, with calls where the chain has IPC. It exists to measure what the chain's isolation
//! costs (`netstack/combined/tests/qemu.rs`), and gives up that isolation: a fault in any layer
//! takes down all three.
//!
//! Its slots are a device server's ([`brainix_proto::driver::slots`]); its endpoint serves the
//! transport protocol. ARP and echo requests are answered whenever it turns to the network (a
//! client's request parked, or TCP open); the chain's IP server also answers them between
//! requests.
#![cfg_attr(target_os = "none", no_std, no_main)]

brainix_rt::entry!(run);

#[cfg(target_os = "none")]
fn run(pid: u64) -> ! {
    combined::run(pid)
}

#[cfg(not(target_os = "none"))]
fn run(_pid: u64) -> ! {
    unreachable!("a BraiNIX program")
}

#[cfg(target_os = "none")]
mod combined {
    use brainix_abi::Error;
    use brainix_ip::MTU;
    use brainix_ip::server::{Ip, Link, interface};
    use brainix_proto::{driver::slots, launch_handle};
    use brainix_rt::{Endpoint, Log};
    use brainix_transport::server::{Arrival, Network, Server};
    use brainix_virtio::log;
    use brainix_virtio_net::MacText;
    use brainix_virtio_net::nic::Nic;
    use brainix_wire::{IpText, Ipv4Addr};

    /// The device as the IP layer's link: a call where the chain asks the link server.
    struct Device(Nic);

    impl Link for Device {
        fn send(&mut self, frame: &[u8]) -> Result<(), Error> {
            self.0.send(frame)
        }

        fn recv(&mut self, frame: &mut [u8; MTU], ms: u64) -> Result<usize, Error> {
            self.0.recv_with(ms, |got| {
                // A longer frame is cut short, and then dropped as truncated by the parser.
                let n = got.len().min(MTU);
                frame[..n].copy_from_slice(&got[..n]);
                Ok(n)
            })
        }

        fn notified(&mut self) {
            self.0.acknowledge();
        }
    }

    /// The IP layer as the transport layer's network: a call where the chain asks the IP server.
    /// `None` only until `run` has opened the device (the server is built at compile time).
    struct Local(Option<Ip<Device>>);

    impl Local {
        fn ip(&mut self) -> Result<&mut Ip<Device>, Error> {
            self.0.as_mut().ok_or(Error::PeerDead)
        }
    }

    impl Network for Local {
        fn address(&mut self) -> Result<Ipv4Addr, Error> {
            Ok(self.ip()?.config().address)
        }

        fn send(&mut self, dst: Ipv4Addr, proto: u8, message: &[u8]) -> Result<(), Error> {
            self.ip()?.send_with(dst, proto, message.len(), |out| {
                out.copy_from_slice(message);
                Ok(())
            })
        }

        fn recv(&mut self, into: &mut [u8], ms: u64) -> Result<Arrival, Error> {
            self.ip()?.recv_with(ms, |d| {
                let len = d.bytes.len().min(into.len());
                into[..len].copy_from_slice(&d.bytes[..len]);
                Ok(Arrival {
                    len,
                    from: d.from,
                    proto: d.proto,
                })
            })
        }

        fn notified(&mut self) {
            if let Ok(ip) = self.ip() {
                ip.link().notified();
            }
        }
    }

    pub fn run(pid: u64) -> ! {
        let endpoint = Endpoint(launch_handle(slots::ENDPOINT));
        let config = interface(endpoint, Log(launch_handle(slots::LOG)));
        let nic = Nic::open_or_exit();
        let mac = nic.mac();
        log!(
            "virtio-net mac {}, ip {}/{} gateway {}: link, ip and transport in one process",
            MacText(mac),
            IpText(config.address),
            config.prefix,
            IpText(config.gateway)
        );
        // The transport layer's state is 75 KiB, most of it TCP's buffers: in a static, built
        // at compile time, not on the stack; the IP layer goes in once the device is open.
        static mut SERVER: Server<Local> = Server::new(Local(None), Log(launch_handle(slots::LOG)));
        // SAFETY: `run` is entered once (the program's entry) and never returns; this is the
        // only reference ever made to `SERVER`.
        let server = unsafe { &mut *core::ptr::addr_of_mut!(SERVER) };
        *server.network() = Local(Some(Ip::new(Device(nic), mac, config, 0x4300 ^ pid as u16)));
        server.run(endpoint, None)
    }
}
