//! # Packet formats of the BraiNIX network stack
//!
//! Ethernet II, ARP (IPv4 over Ethernet), IPv4, ICMP echo, UDP and the TCP header: each parsed
//! from a borrowed buffer into a view, and built into a caller's buffer. No allocation, no
//! `unsafe`, no panics on any input: every packet is hostile until a parser has accepted it.
//!
//! A parser either returns the view or a [`Drop`] naming the first rule the packet broke. The
//! servers count every drop in a [`Drops`] table (what `netstat` shows), so a bad packet is
//! never silent and never fatal. The rules, and what is refused:
//!
//! - Ethernet: shorter than its header.
//! - ARP: not Ethernet/IPv4 with 6- and 4-byte addresses, or truncated.
//! - IPv4: version not 4, header length under 20 or past the buffer, total length under the
//!   header or past the buffer, a bad header checksum, malformed options (a length under 2 or
//!   past the header), and fragments (more-fragments set or an offset: the stack does not
//!   reassemble, so a fragment is dropped and counted, never half-delivered).
//! - ICMP: shorter than 8 bytes or a bad checksum.
//! - UDP: shorter than 8 bytes, a length field under 8 or past the datagram, a bad checksum
//!   (a zero checksum means "none" in IPv4 and is accepted).
//! - TCP: data offset under 5 or past the segment, malformed options, a bad checksum.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// An Ethernet address.
pub type Mac = [u8; 6];
/// An IPv4 address.
pub type Ipv4Addr = [u8; 4];

/// The broadcast Ethernet address.
pub const BROADCAST: Mac = [0xff; 6];
/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// IP protocol number of ICMP.
pub const PROTO_ICMP: u8 = 1;
/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;
/// Length of an Ethernet II header.
pub const ETH_HEADER: usize = 14;
/// Length of an IPv4-over-Ethernet ARP packet.
pub const ARP_LEN: usize = 28;
/// Length of an IPv4 header without options.
pub const IPV4_HEADER: usize = 20;
/// Length of a UDP header.
pub const UDP_HEADER: usize = 8;
/// Length of an ICMP echo header.
pub const ICMP_HEADER: usize = 8;
/// Length of a TCP header without options.
pub const TCP_HEADER: usize = 20;

/// Why a packet was dropped: the first rule it broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Drop {
    /// Shorter than the header its type needs.
    Truncated = 0,
    /// A field says something this stack does not speak (IP version, ARP hardware type, ...).
    Unsupported = 1,
    /// A length field that contradicts the buffer or the header.
    BadLength = 2,
    /// A checksum that does not verify.
    BadChecksum = 3,
    /// IPv4 or TCP options that are malformed.
    BadOptions = 4,
    /// An IPv4 fragment: not reassembled, dropped.
    Fragment = 5,
    /// Larger than the link's largest frame.
    Oversize = 6,
    /// Well formed, but for nobody here (another address, a protocol or port nobody serves).
    NotForUs = 7,
    /// Refused by policy: no grant names it.
    Denied = 8,
    /// Well formed and for us, but the queue it would wait in is full.
    QueueFull = 9,
}

impl Drop {
    /// How many reasons there are ([`Drops`] has a counter for each).
    pub const COUNT: usize = 10;
    /// Every reason, in code order.
    pub const ALL: [Drop; Drop::COUNT] = [
        Drop::Truncated,
        Drop::Unsupported,
        Drop::BadLength,
        Drop::BadChecksum,
        Drop::BadOptions,
        Drop::Fragment,
        Drop::Oversize,
        Drop::NotForUs,
        Drop::Denied,
        Drop::QueueFull,
    ];

    /// A short name, as `netstat` prints it.
    pub fn name(self) -> &'static str {
        match self {
            Drop::Truncated => "truncated",
            Drop::Unsupported => "unsupported",
            Drop::BadLength => "bad-length",
            Drop::BadChecksum => "bad-checksum",
            Drop::BadOptions => "bad-options",
            Drop::Fragment => "fragment",
            Drop::Oversize => "oversize",
            Drop::NotForUs => "not-for-us",
            Drop::Denied => "denied",
            Drop::QueueFull => "queue-full",
        }
    }
}

/// A counter per [`Drop`] reason. Counters saturate; they never wrap to look healthy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drops(pub [u64; Drop::COUNT]);

impl Drops {
    /// Counts one drop for `why`.
    pub fn count(&mut self, why: Drop) {
        let c = &mut self.0[why as usize];
        *c = c.saturating_add(1);
    }
    /// The count for `why`.
    pub fn of(&self, why: Drop) -> u64 {
        self.0[why as usize]
    }
    /// All drops together.
    pub fn total(&self) -> u64 {
        self.0.iter().fold(0u64, |a, b| a.saturating_add(*b))
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn ip_at(b: &[u8], at: usize) -> Ipv4Addr {
    [b[at], b[at + 1], b[at + 2], b[at + 3]]
}

fn mac_at(b: &[u8], at: usize) -> Mac {
    [b[at], b[at + 1], b[at + 2], b[at + 3], b[at + 4], b[at + 5]]
}

/// The Internet checksum's running sum (RFC 1071), before folding. Odd lengths pad with zero.
fn sum(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc = acc.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
        // Fold early so no length of buffer can overflow the accumulator.
        acc = (acc & 0xffff) + (acc >> 16);
    }
    if let [last] = chunks.remainder() {
        acc = acc.wrapping_add(u32::from(*last) << 8);
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// The Internet checksum of `data`: what goes in the field (computed with the field zero), or
/// 0 when `data` includes a correct checksum field.
pub fn checksum(data: &[u8]) -> u16 {
    fold(sum(0, data))
}

/// The checksum of a UDP or TCP segment with its IPv4 pseudo-header.
pub fn transport_checksum(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, segment: &[u8]) -> u16 {
    let mut acc = sum(0, &src);
    acc = sum(acc, &dst);
    acc = sum(acc, &[0, proto]);
    acc = sum(acc, &(segment.len().min(0xffff) as u16).to_be_bytes());
    fold(sum(acc, segment))
}

/// An Ethernet II frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ethernet<'a> {
    /// Destination address.
    pub dst: Mac,
    /// Source address.
    pub src: Mac,
    /// What the payload is ([`ETHERTYPE_IPV4`], [`ETHERTYPE_ARP`], ...).
    pub ethertype: u16,
    /// Everything after the header (may include the link's padding).
    pub payload: &'a [u8],
}

impl<'a> Ethernet<'a> {
    /// Reads a frame of at most `mtu` bytes (without the FCS).
    pub fn parse(frame: &'a [u8], mtu: usize) -> Result<Self, Drop> {
        if frame.len() < ETH_HEADER {
            return Err(Drop::Truncated);
        }
        if frame.len() > mtu {
            return Err(Drop::Oversize);
        }
        Ok(Ethernet {
            dst: mac_at(frame, 0),
            src: mac_at(frame, 6),
            ethertype: be16(frame, 12),
            payload: &frame[ETH_HEADER..],
        })
    }
}

/// Writes an Ethernet header into `out[..14]`; `None` if `out` is too short.
pub fn write_ethernet(out: &mut [u8], dst: Mac, src: Mac, ethertype: u16) -> Option<()> {
    let h = out.get_mut(..ETH_HEADER)?;
    h[..6].copy_from_slice(&dst);
    h[6..12].copy_from_slice(&src);
    h[12..14].copy_from_slice(&ethertype.to_be_bytes());
    Some(())
}

/// ARP operation: request.
pub const ARP_REQUEST: u16 = 1;
/// ARP operation: reply.
pub const ARP_REPLY: u16 = 2;

/// An ARP packet for IPv4 over Ethernet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arp {
    /// [`ARP_REQUEST`] or [`ARP_REPLY`] (others are refused as unsupported).
    pub op: u16,
    /// Sender's Ethernet address.
    pub sender_mac: Mac,
    /// Sender's IPv4 address.
    pub sender_ip: Ipv4Addr,
    /// Target's Ethernet address (zero in a request).
    pub target_mac: Mac,
    /// Target's IPv4 address.
    pub target_ip: Ipv4Addr,
}

impl Arp {
    /// Reads the ARP packet at the start of `p` (an Ethernet payload; padding after it is fine).
    pub fn parse(p: &[u8]) -> Result<Self, Drop> {
        if p.len() < ARP_LEN {
            return Err(Drop::Truncated);
        }
        // Ethernet hardware, IPv4 protocol, 6- and 4-byte addresses.
        if p[..6] != [0, 1, 0x08, 0x00, 6, 4] {
            return Err(Drop::Unsupported);
        }
        let op = be16(p, 6);
        if op != ARP_REQUEST && op != ARP_REPLY {
            return Err(Drop::Unsupported);
        }
        Ok(Arp {
            op,
            sender_mac: mac_at(p, 8),
            sender_ip: ip_at(p, 14),
            target_mac: mac_at(p, 18),
            target_ip: ip_at(p, 24),
        })
    }

    /// Writes the packet into `out[..28]`; its length, or `None` if `out` is too short.
    pub fn write(&self, out: &mut [u8]) -> Option<usize> {
        let p = out.get_mut(..ARP_LEN)?;
        p[..6].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4]);
        p[6..8].copy_from_slice(&self.op.to_be_bytes());
        p[8..14].copy_from_slice(&self.sender_mac);
        p[14..18].copy_from_slice(&self.sender_ip);
        p[18..24].copy_from_slice(&self.target_mac);
        p[24..28].copy_from_slice(&self.target_ip);
        Some(ARP_LEN)
    }
}

/// An IPv4 packet whose header verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4<'a> {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Protocol of the payload ([`PROTO_ICMP`], [`PROTO_UDP`], [`PROTO_TCP`], ...).
    pub proto: u8,
    /// Time to live.
    pub ttl: u8,
    /// Identification.
    pub id: u16,
    /// The payload, cut to the total length (the link's padding is not part of it).
    pub payload: &'a [u8],
}

/// Checks an options area (IPv4 or TCP): end-of-list (0) and no-op (1) are single bytes, every
/// other option has a length byte of at least 2 that stays inside the area.
fn options_ok(mut o: &[u8]) -> bool {
    while let [kind, rest @ ..] = o {
        match kind {
            0 => return true,
            1 => o = rest,
            _ => {
                let Some(&len) = rest.first() else {
                    return false;
                };
                let len = usize::from(len);
                if len < 2 || len > o.len() {
                    return false;
                }
                o = &o[len..];
            }
        }
    }
    true
}

impl<'a> Ipv4<'a> {
    /// Reads the IPv4 packet at the start of `p` (an Ethernet payload).
    pub fn parse(p: &'a [u8]) -> Result<Self, Drop> {
        if p.len() < IPV4_HEADER {
            return Err(Drop::Truncated);
        }
        if p[0] >> 4 != 4 {
            return Err(Drop::Unsupported);
        }
        let ihl = usize::from(p[0] & 0x0f) * 4;
        if ihl < IPV4_HEADER || ihl > p.len() {
            return Err(Drop::BadLength);
        }
        let total = usize::from(be16(p, 2));
        if total < ihl || total > p.len() {
            return Err(Drop::BadLength);
        }
        if checksum(&p[..ihl]) != 0 {
            return Err(Drop::BadChecksum);
        }
        if !options_ok(&p[IPV4_HEADER..ihl]) {
            return Err(Drop::BadOptions);
        }
        let flags_frag = be16(p, 6);
        // More-fragments (0x2000) or a fragment offset: part of a larger datagram.
        if flags_frag & 0x3fff != 0 {
            return Err(Drop::Fragment);
        }
        Ok(Ipv4 {
            src: ip_at(p, 12),
            dst: ip_at(p, 16),
            proto: p[9],
            ttl: p[8],
            id: be16(p, 4),
            payload: &p[ihl..total],
        })
    }
}

/// Writes a 20-byte IPv4 header (no options, don't-fragment set, checksum filled) for a payload
/// of `payload_len` bytes. Its length, or `None` if `out` is too short or the packet too long.
pub fn write_ipv4(
    out: &mut [u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    id: u16,
    payload_len: usize,
) -> Option<usize> {
    let total = u16::try_from(IPV4_HEADER + payload_len).ok()?;
    let h = out.get_mut(..IPV4_HEADER)?;
    h[0] = 0x45;
    h[1] = 0;
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h[4..6].copy_from_slice(&id.to_be_bytes());
    h[6..8].copy_from_slice(&0x4000u16.to_be_bytes());
    h[8] = 64;
    h[9] = proto;
    h[10..12].copy_from_slice(&[0, 0]);
    h[12..16].copy_from_slice(&src);
    h[16..20].copy_from_slice(&dst);
    let c = checksum(h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    Some(IPV4_HEADER)
}

/// ICMP type: echo reply.
pub const ICMP_ECHO_REPLY: u8 = 0;
/// ICMP type: echo request.
pub const ICMP_ECHO_REQUEST: u8 = 8;

/// An ICMP message whose checksum verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Icmp<'a> {
    /// Type.
    pub kind: u8,
    /// Code.
    pub code: u8,
    /// For echo: identifier.
    pub ident: u16,
    /// For echo: sequence number.
    pub seq: u16,
    /// What follows the 8-byte header.
    pub data: &'a [u8],
}

impl<'a> Icmp<'a> {
    /// Reads an ICMP message (an IPv4 payload).
    pub fn parse(p: &'a [u8]) -> Result<Self, Drop> {
        if p.len() < ICMP_HEADER {
            return Err(Drop::Truncated);
        }
        if checksum(p) != 0 {
            return Err(Drop::BadChecksum);
        }
        Ok(Icmp {
            kind: p[0],
            code: p[1],
            ident: be16(p, 4),
            seq: be16(p, 6),
            data: &p[ICMP_HEADER..],
        })
    }
}

/// Writes an echo message (`kind` [`ICMP_ECHO_REQUEST`] or [`ICMP_ECHO_REPLY`]) with `data`
/// after the header, checksum filled. Its length, or `None` if `out` is too short.
pub fn write_icmp_echo(
    out: &mut [u8],
    kind: u8,
    ident: u16,
    seq: u16,
    data: &[u8],
) -> Option<usize> {
    let len = ICMP_HEADER + data.len();
    let m = out.get_mut(..len)?;
    m[0] = kind;
    m[1] = 0;
    m[2..4].copy_from_slice(&[0, 0]);
    m[4..6].copy_from_slice(&ident.to_be_bytes());
    m[6..8].copy_from_slice(&seq.to_be_bytes());
    m[8..].copy_from_slice(data);
    let c = checksum(m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    Some(len)
}

/// A UDP datagram whose length and checksum verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Udp<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// The data, cut to the length field.
    pub data: &'a [u8],
}

impl<'a> Udp<'a> {
    /// Reads a UDP datagram (the payload of an IPv4 packet from `src` to `dst`).
    pub fn parse(p: &'a [u8], src: Ipv4Addr, dst: Ipv4Addr) -> Result<Self, Drop> {
        if p.len() < UDP_HEADER {
            return Err(Drop::Truncated);
        }
        let len = usize::from(be16(p, 4));
        if len < UDP_HEADER || len > p.len() {
            return Err(Drop::BadLength);
        }
        let d = &p[..len];
        // Zero: the sender computed none (allowed in IPv4).
        if be16(d, 6) != 0 && transport_checksum(src, dst, PROTO_UDP, d) != 0 {
            return Err(Drop::BadChecksum);
        }
        Ok(Udp {
            src_port: be16(d, 0),
            dst_port: be16(d, 2),
            data: &d[UDP_HEADER..],
        })
    }
}

/// Writes a UDP datagram carrying `data`, checksum filled (with the pseudo-header of `src` and
/// `dst`). Its length, or `None` if `out` is too short or the datagram too long.
pub fn write_udp(
    out: &mut [u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    src_port: u16,
    dst_port: u16,
    data: &[u8],
) -> Option<usize> {
    let len = UDP_HEADER + data.len();
    let len16 = u16::try_from(len).ok()?;
    let d = out.get_mut(..len)?;
    d[0..2].copy_from_slice(&src_port.to_be_bytes());
    d[2..4].copy_from_slice(&dst_port.to_be_bytes());
    d[4..6].copy_from_slice(&len16.to_be_bytes());
    d[6..8].copy_from_slice(&[0, 0]);
    d[8..].copy_from_slice(data);
    let mut c = transport_checksum(src, dst, PROTO_UDP, d);
    // A computed zero is sent as all ones: zero would mean "no checksum".
    if c == 0 {
        c = 0xffff;
    }
    d[6..8].copy_from_slice(&c.to_be_bytes());
    Some(len)
}

/// TCP flag FIN.
pub const TCP_FIN: u8 = 0x01;
/// TCP flag SYN.
pub const TCP_SYN: u8 = 0x02;
/// TCP flag RST.
pub const TCP_RST: u8 = 0x04;
/// TCP flag PSH.
pub const TCP_PSH: u8 = 0x08;
/// TCP flag ACK.
pub const TCP_ACK: u8 = 0x10;

/// A TCP segment whose header and checksum verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tcp<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// Flags ([`TCP_SYN`], ...).
    pub flags: u8,
    /// Receive window.
    pub window: u16,
    /// The options area (already checked to be well formed).
    pub options: &'a [u8],
    /// The data after the header.
    pub data: &'a [u8],
}

impl<'a> Tcp<'a> {
    /// Reads a TCP segment (the payload of an IPv4 packet from `src` to `dst`).
    pub fn parse(p: &'a [u8], src: Ipv4Addr, dst: Ipv4Addr) -> Result<Self, Drop> {
        if p.len() < TCP_HEADER {
            return Err(Drop::Truncated);
        }
        let off = usize::from(p[12] >> 4) * 4;
        if off < TCP_HEADER || off > p.len() {
            return Err(Drop::BadLength);
        }
        if transport_checksum(src, dst, PROTO_TCP, p) != 0 {
            return Err(Drop::BadChecksum);
        }
        let options = &p[TCP_HEADER..off];
        if !options_ok(options) {
            return Err(Drop::BadOptions);
        }
        Ok(Tcp {
            src_port: be16(p, 0),
            dst_port: be16(p, 2),
            seq: u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
            ack: u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
            flags: p[13],
            window: be16(p, 14),
            options,
            data: &p[off..],
        })
    }
}

/// Writes a TCP segment without options carrying `data`, checksum filled. Its length, or
/// `None` if `out` is too short.
#[allow(clippy::too_many_arguments)]
pub fn write_tcp(
    out: &mut [u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ports: (u16, u16),
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    data: &[u8],
) -> Option<usize> {
    let header = TcpHeader {
        ports,
        seq,
        ack,
        flags,
        window,
        mss: None,
    };
    header.write(out, src, dst, data)
}

/// The fields of a TCP header this stack writes; the only option it sends is the maximum
/// segment size, on a SYN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpHeader {
    /// Source and destination port.
    pub ports: (u16, u16),
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// Flags ([`TCP_SYN`], ...).
    pub flags: u8,
    /// Receive window.
    pub window: u16,
    /// The maximum segment size option (kind 2), if sent.
    pub mss: Option<u16>,
}

impl TcpHeader {
    /// The header's length: 20 bytes, 24 with the MSS option.
    pub fn len(&self) -> usize {
        TCP_HEADER + if self.mss.is_some() { 4 } else { 0 }
    }

    /// Always false: a TCP header is never empty (for clippy's `len` convention).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Writes the segment with `data` into `out`, checksum filled with the pseudo-header of
    /// `src` to `dst`. Its length, or `None` if `out` is too short.
    pub fn write(
        &self,
        out: &mut [u8],
        src: Ipv4Addr,
        dst: Ipv4Addr,
        data: &[u8],
    ) -> Option<usize> {
        let off = self.len();
        let s = out.get_mut(..off + data.len())?;
        s[off..].copy_from_slice(data);
        self.write_over(s, src, dst)
    }

    /// Writes the header in front of data already at `segment[self.len()..]` (the whole slice
    /// is the segment), checksum filled. Its length, or `None` if `segment` is too short.
    pub fn write_over(&self, segment: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr) -> Option<usize> {
        let off = self.len();
        if segment.len() < off {
            return None;
        }
        let s = segment;
        s[0..2].copy_from_slice(&self.ports.0.to_be_bytes());
        s[2..4].copy_from_slice(&self.ports.1.to_be_bytes());
        s[4..8].copy_from_slice(&self.seq.to_be_bytes());
        s[8..12].copy_from_slice(&self.ack.to_be_bytes());
        s[12] = ((off / 4) as u8) << 4;
        s[13] = self.flags;
        s[14..16].copy_from_slice(&self.window.to_be_bytes());
        s[16..20].copy_from_slice(&[0, 0, 0, 0]);
        if let Some(mss) = self.mss {
            s[20..22].copy_from_slice(&[2, 4]);
            s[22..24].copy_from_slice(&mss.to_be_bytes());
        }
        let c = transport_checksum(src, dst, PROTO_TCP, s);
        s[16..18].copy_from_slice(&c.to_be_bytes());
        Some(s.len())
    }
}

/// The maximum segment size a TCP options area announces (kind 2, length 4), if it does.
/// `options` is a parsed segment's [`Tcp::options`], already checked to be well formed; an
/// MSS option of another length is ignored.
pub fn tcp_mss(mut o: &[u8]) -> Option<u16> {
    while let [kind, rest @ ..] = o {
        match kind {
            0 => return None,
            1 => o = rest,
            _ => {
                let len = usize::from(*rest.first()?);
                if len < 2 || len > o.len() {
                    return None;
                }
                if *kind == 2 && len == 4 {
                    return Some(be16(o, 2));
                }
                o = &o[len..];
            }
        }
    }
    None
}

/// `a.b.c.d`.
pub struct IpText(pub Ipv4Addr);

impl core::fmt::Display for IpText {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let [a, b, c, d] = self.0;
        write!(f, "{a}.{b}.{c}.{d}")
    }
}

/// Parses `a.b.c.d` (each part 0 to 255, no leading sign, no spaces).
pub fn parse_ip(s: &str) -> Option<Ipv4Addr> {
    let mut out = [0u8; 4];
    let mut parts = s.split('.');
    for o in out.iter_mut() {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *o = p.parse().ok()?;
    }
    parts.next().is_none().then_some(out)
}

#[cfg(test)]
mod tests;
