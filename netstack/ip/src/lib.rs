//! # The IP layer of the BraiNIX network stack
//!
//! What the IP server (`src/main.rs`) decides about each frame, kept apart from the IPC so it is
//! tested on the host: [`Stack::input`] takes one frame from the link server and says what to do
//! with it (nothing, send an answer, or hand an echo reply to the waiting `PING`). Every frame
//! that is not taken is dropped for a counted reason ([`brainix_wire::Drops`]).
//!
//! [`server`] is the server's work and request loop around it, over any [`server::Link`]: IPC
//! to the link server in the IP server, the device itself in a combined network server.
//!
//! One interface, static configuration ([`brainix_proto::ip::Config`]), a small ARP cache that
//! learns only from ARP traffic addressed to this host (a gratuitous or third-party announcement
//! cannot redirect it), ICMP echo answered. UDP datagrams and TCP segments for this host (header
//! and checksum verified) are handed on, for the transport server to take.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod chain;
pub mod server;

use brainix_proto::ip::Config;
use brainix_wire::{
    ARP_REPLY, ARP_REQUEST, Arp, BROADCAST, Drop, Drops, ETH_HEADER, ETHERTYPE_ARP, ETHERTYPE_IPV4,
    Ethernet, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, Icmp, Ipv4, Ipv4Addr, Mac, PROTO_ICMP, PROTO_TCP,
    PROTO_UDP, Tcp, Udp, write_ethernet, write_icmp_echo, write_ipv4,
};

/// Largest frame, without the FCS (the link server's limit).
pub const MTU: usize = brainix_proto::link::MTU;
/// ARP cache entries. The stack talks to its gateway and a few neighbours; when full, the oldest
/// entry is replaced.
pub const ARP_ENTRIES: usize = 8;

/// What the server counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames taken from the link server.
    pub frames_in: u64,
    /// Frames handed to the link server.
    pub frames_out: u64,
    /// Echo requests answered.
    pub echo_answered: u64,
    /// Frames dropped, by reason.
    pub drops: Drops,
}

/// What to do with a frame that came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// Nothing (it was consumed, or dropped and counted).
    Nothing,
    /// Send the first `n` bytes of the output buffer (an ARP or echo reply).
    Send(usize),
    /// A UDP datagram or TCP segment for this host (its header and checksum verified):
    /// `frame[at..at + len]`.
    Datagram {
        /// Where it starts in the frame.
        at: usize,
        /// Its length.
        len: usize,
        /// Its sender.
        from: Ipv4Addr,
        /// Its IP protocol: [`PROTO_UDP`] or [`PROTO_TCP`].
        proto: u8,
    },
    /// An echo reply for this host.
    EchoReply {
        /// Who answered.
        from: Ipv4Addr,
        /// Its identifier.
        ident: u16,
        /// Its sequence number.
        seq: u16,
        /// Its time to live.
        ttl: u8,
    },
}

/// One interface's IPv4 state.
pub struct Stack {
    mac: Mac,
    config: Config,
    arp: [Option<(Ipv4Addr, Mac)>; ARP_ENTRIES],
    arp_next: usize,
    next_id: u16,
    /// The counters.
    pub stats: Stats,
}

impl Stack {
    /// A stack for the interface with address `mac`.
    pub fn new(mac: Mac, config: Config) -> Self {
        Stack {
            mac,
            config,
            arp: [None; ARP_ENTRIES],
            arp_next: 0,
            next_id: 1,
            stats: Stats::default(),
        }
    }

    /// This host's address.
    pub fn address(&self) -> Ipv4Addr {
        self.config.address
    }

    /// The interface's configuration.
    pub fn config(&self) -> Config {
        self.config
    }

    fn on_link(&self, ip: Ipv4Addr) -> bool {
        let prefix = u32::from(self.config.prefix.min(32));
        let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
        u32::from_be_bytes(ip) & mask == u32::from_be_bytes(self.config.address) & mask
    }

    /// Where a packet for `dst` goes first: `dst` itself on the local network, else the gateway.
    pub fn next_hop(&self, dst: Ipv4Addr) -> Ipv4Addr {
        if self.on_link(dst) {
            dst
        } else {
            self.config.gateway
        }
    }

    /// The cached Ethernet address of `ip`.
    pub fn lookup(&self, ip: Ipv4Addr) -> Option<Mac> {
        self.arp
            .iter()
            .flatten()
            .find(|(i, _)| *i == ip)
            .map(|e| e.1)
    }

    fn learn(&mut self, ip: Ipv4Addr, mac: Mac) {
        // Only unicast neighbours on our own network are worth remembering.
        if !self.on_link(ip) || ip == self.config.address || mac[0] & 1 != 0 {
            return;
        }
        if let Some(e) = self.arp.iter_mut().flatten().find(|(i, _)| *i == ip) {
            e.1 = mac;
            return;
        }
        self.arp[self.arp_next] = Some((ip, mac));
        self.arp_next = (self.arp_next + 1) % ARP_ENTRIES;
    }

    /// Writes a broadcast ARP request for `ip` into `out`; its length.
    pub fn arp_request(&mut self, ip: Ipv4Addr, out: &mut [u8; MTU]) -> usize {
        write_ethernet(out, BROADCAST, self.mac, ETHERTYPE_ARP);
        let arp = Arp {
            op: ARP_REQUEST,
            sender_mac: self.mac,
            sender_ip: self.config.address,
            target_mac: [0; 6],
            target_ip: ip,
        };
        self.stats.frames_out += 1;
        ETH_HEADER + arp.write(&mut out[ETH_HEADER..]).unwrap_or(0)
    }

    /// Writes an echo request to `dst` (reached through `via`) into `out`; its length.
    pub fn echo_request(
        &mut self,
        via: Mac,
        dst: Ipv4Addr,
        ident: u16,
        seq: u16,
        out: &mut [u8; MTU],
    ) -> usize {
        // 32 bytes of recognisable data, like most pings.
        let mut data = [0u8; 32];
        for (i, b) in data.iter_mut().enumerate() {
            *b = b'a' + (i % 26) as u8;
        }
        let id = self.take_id();
        write_ethernet(out, via, self.mac, ETHERTYPE_IPV4);
        let icmp = write_icmp_echo(&mut out[34..], ICMP_ECHO_REQUEST, ident, seq, &data);
        let n = icmp.unwrap_or(0);
        write_ipv4(
            &mut out[ETH_HEADER..],
            self.config.address,
            dst,
            PROTO_ICMP,
            id,
            n,
        );
        self.stats.frames_out += 1;
        34 + n
    }

    /// Writes the Ethernet and IPv4 headers in front of a `len`-byte transport message already
    /// at `out[34..]`, for `dst` reached through `via`; the frame's length, or `None` if it
    /// would not fit the link.
    pub fn wrap(
        &mut self,
        via: Mac,
        dst: Ipv4Addr,
        proto: u8,
        len: usize,
        out: &mut [u8; MTU],
    ) -> Option<usize> {
        if 34 + len > MTU {
            return None;
        }
        let id = self.take_id();
        write_ethernet(out, via, self.mac, ETHERTYPE_IPV4)?;
        write_ipv4(
            &mut out[ETH_HEADER..],
            self.config.address,
            dst,
            proto,
            id,
            len,
        )?;
        self.stats.frames_out += 1;
        Some(34 + len)
    }

    fn take_id(&mut self) -> u16 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    /// Decides what to do with one frame from the link; a reply is built in `out`.
    pub fn input(&mut self, frame: &[u8], out: &mut [u8; MTU]) -> Input {
        self.stats.frames_in += 1;
        match self.take(frame, out) {
            Ok(what) => what,
            Err(why) => {
                self.stats.drops.count(why);
                Input::Nothing
            }
        }
    }

    fn take(&mut self, frame: &[u8], out: &mut [u8; MTU]) -> Result<Input, Drop> {
        let eth = Ethernet::parse(frame, MTU)?;
        if eth.dst != self.mac && eth.dst != BROADCAST {
            return Err(Drop::NotForUs);
        }
        match eth.ethertype {
            ETHERTYPE_ARP => self.arp(Arp::parse(eth.payload)?, out),
            ETHERTYPE_IPV4 => {
                let ip = Ipv4::parse(eth.payload)?;
                if ip.dst != self.config.address {
                    return Err(Drop::NotForUs);
                }
                if ip.proto == PROTO_UDP || ip.proto == PROTO_TCP {
                    // Checked here so the transport server is never woken for a corrupt one.
                    if ip.proto == PROTO_UDP {
                        Udp::parse(ip.payload, ip.src, ip.dst)?;
                    } else {
                        Tcp::parse(ip.payload, ip.src, ip.dst)?;
                    }
                    let at = ETH_HEADER + usize::from(eth.payload[0] & 0x0f) * 4;
                    return Ok(Input::Datagram {
                        at,
                        len: ip.payload.len(),
                        from: ip.src,
                        proto: ip.proto,
                    });
                }
                if ip.proto != PROTO_ICMP {
                    return Err(Drop::NotForUs);
                }
                let icmp = Icmp::parse(ip.payload)?;
                match (icmp.kind, icmp.code) {
                    (ICMP_ECHO_REQUEST, 0) => {
                        let data = icmp.data;
                        let n = ETH_HEADER + 20 + 8 + data.len();
                        if n > MTU {
                            return Err(Drop::Oversize);
                        }
                        // Answer where it came from: the frame's source, not a cache lookup.
                        write_ethernet(out, eth.src, self.mac, ETHERTYPE_IPV4);
                        write_icmp_echo(
                            &mut out[34..],
                            ICMP_ECHO_REPLY,
                            icmp.ident,
                            icmp.seq,
                            data,
                        );
                        let id = self.take_id();
                        let (me, to) = (self.config.address, ip.src);
                        write_ipv4(
                            &mut out[ETH_HEADER..],
                            me,
                            to,
                            PROTO_ICMP,
                            id,
                            8 + data.len(),
                        );
                        self.stats.echo_answered += 1;
                        self.stats.frames_out += 1;
                        Ok(Input::Send(n))
                    }
                    (ICMP_ECHO_REPLY, 0) => Ok(Input::EchoReply {
                        from: ip.src,
                        ident: icmp.ident,
                        seq: icmp.seq,
                        ttl: ip.ttl,
                    }),
                    _ => Err(Drop::NotForUs),
                }
            }
            _ => Err(Drop::Unsupported),
        }
    }

    fn arp(&mut self, arp: Arp, out: &mut [u8; MTU]) -> Result<Input, Drop> {
        if arp.target_ip != self.config.address {
            return Err(Drop::NotForUs);
        }
        self.learn(arp.sender_ip, arp.sender_mac);
        if arp.op != ARP_REQUEST {
            return Ok(Input::Nothing);
        }
        write_ethernet(out, arp.sender_mac, self.mac, ETHERTYPE_ARP);
        let reply = Arp {
            op: ARP_REPLY,
            sender_mac: self.mac,
            sender_ip: self.config.address,
            target_mac: arp.sender_mac,
            target_ip: arp.sender_ip,
        };
        let n = reply.write(&mut out[ETH_HEADER..]).unwrap_or(0);
        self.stats.frames_out += 1;
        Ok(Input::Send(ETH_HEADER + n))
    }
}

#[cfg(test)]
mod tests;
