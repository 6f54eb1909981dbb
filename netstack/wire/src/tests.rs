extern crate std;
use super::*;
use brainix_testkit::Rng;
use std::vec::Vec;

const A: Ipv4Addr = [10, 0, 2, 15];
const B: Ipv4Addr = [10, 0, 2, 2];
const MAC_A: Mac = [0x52, 0x54, 0, 0xbe, 0xef, 1];
const MAC_B: Mac = [0x52, 0x55, 10, 0, 2, 2];

/// A whole frame: Ethernet, IPv4 and `proto`'s payload built by `body`.
fn frame(proto: u8, body: &dyn Fn(&mut [u8]) -> usize) -> Vec<u8> {
    let mut f = std::vec![0u8; 1514];
    write_ethernet(&mut f, MAC_B, MAC_A, ETHERTYPE_IPV4).unwrap();
    let n = body(&mut f[34..]);
    write_ipv4(&mut f[14..], A, B, proto, 7, n).unwrap();
    f.truncate(34 + n);
    f
}

fn udp_frame(data: &[u8]) -> Vec<u8> {
    frame(PROTO_UDP, &|o| write_udp(o, A, B, 5000, 7, data).unwrap())
}
fn icmp_frame(data: &[u8]) -> Vec<u8> {
    frame(PROTO_ICMP, &|o| {
        write_icmp_echo(o, ICMP_ECHO_REQUEST, 0x1234, 9, data).unwrap()
    })
}
fn tcp_frame(data: &[u8]) -> Vec<u8> {
    frame(PROTO_TCP, &|o| {
        write_tcp(o, A, B, (40000, 7), 1, 2, TCP_ACK | TCP_PSH, 4096, data).unwrap()
    })
}
fn arp_frame() -> Vec<u8> {
    let mut f = std::vec![0u8; 60];
    write_ethernet(&mut f, BROADCAST, MAC_A, ETHERTYPE_ARP).unwrap();
    Arp {
        op: ARP_REQUEST,
        sender_mac: MAC_A,
        sender_ip: A,
        target_mac: [0; 6],
        target_ip: B,
    }
    .write(&mut f[14..])
    .unwrap();
    f
}

/// What the stack does with a frame, all the way down: the layers a server would parse, with
/// every refusal returned as its reason. Never panics: that is what the fuzz test checks.
fn dissect(f: &[u8]) -> Result<(), Drop> {
    let eth = Ethernet::parse(f, 1514)?;
    match eth.ethertype {
        ETHERTYPE_ARP => Arp::parse(eth.payload).map(drop),
        ETHERTYPE_IPV4 => {
            let ip = Ipv4::parse(eth.payload)?;
            match ip.proto {
                PROTO_ICMP => Icmp::parse(ip.payload).map(drop),
                PROTO_UDP => Udp::parse(ip.payload, ip.src, ip.dst).map(drop),
                PROTO_TCP => Tcp::parse(ip.payload, ip.src, ip.dst).map(|t| {
                    tcp_mss(t.options);
                }),
                _ => Err(Drop::NotForUs),
            }
        }
        _ => Err(Drop::Unsupported),
    }
}

#[test]
fn the_rfc_1071_example_and_a_known_ipv4_header() {
    // RFC 1071 section 3's worked example: the sum is ddf2, so the checksum is its complement.
    assert_eq!(
        checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
        !0xddf2
    );
    // A captured header, its checksum field (b861) zeroed: we compute the same value.
    let mut h = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];
    assert_eq!(checksum(&h), 0xb861);
    h[10..12].copy_from_slice(&[0xb8, 0x61]);
    assert_eq!(checksum(&h), 0);
    // Odd length pads with a zero byte.
    assert_eq!(checksum(&[0xab]), !0xab00);
}

#[test]
fn what_is_built_parses_back() {
    let f = udp_frame(b"hello");
    let eth = Ethernet::parse(&f, 1514).unwrap();
    assert_eq!(
        (eth.dst, eth.src, eth.ethertype),
        (MAC_B, MAC_A, ETHERTYPE_IPV4)
    );
    let ip = Ipv4::parse(eth.payload).unwrap();
    assert_eq!(
        (ip.src, ip.dst, ip.proto, ip.ttl, ip.id),
        (A, B, PROTO_UDP, 64, 7)
    );
    let u = Udp::parse(ip.payload, ip.src, ip.dst).unwrap();
    assert_eq!((u.src_port, u.dst_port, u.data), (5000, 7, &b"hello"[..]));
    // The checksum binds the addresses: the same datagram read as from elsewhere is refused.
    assert_eq!(
        Udp::parse(ip.payload, [10, 0, 2, 16], ip.dst),
        Err(Drop::BadChecksum)
    );

    let f = icmp_frame(b"abcdefgh");
    let ip = Ipv4::parse(&f[14..]).unwrap();
    let i = Icmp::parse(ip.payload).unwrap();
    assert_eq!(
        (i.kind, i.code, i.ident, i.seq, i.data),
        (8, 0, 0x1234, 9, &b"abcdefgh"[..])
    );

    let f = tcp_frame(b"xyz");
    let ip = Ipv4::parse(&f[14..]).unwrap();
    let t = Tcp::parse(ip.payload, ip.src, ip.dst).unwrap();
    assert_eq!((t.src_port, t.dst_port, t.seq, t.ack), (40000, 7, 1, 2));
    assert_eq!(
        (t.flags, t.window, t.data),
        (TCP_ACK | TCP_PSH, 4096, &b"xyz"[..])
    );

    let f = arp_frame();
    let a = Arp::parse(&f[14..]).unwrap();
    assert_eq!(
        (a.op, a.sender_ip, a.target_ip, a.sender_mac),
        (ARP_REQUEST, A, B, MAC_A)
    );
}

#[test]
fn link_padding_is_not_payload() {
    // A short datagram padded to Ethernet's 60-byte minimum: IPv4 cuts at its total length.
    let mut f = udp_frame(b"x");
    f.resize(60, 0);
    let ip = Ipv4::parse(&f[14..]).unwrap();
    assert_eq!(ip.payload.len(), 9);
    assert_eq!(Udp::parse(ip.payload, A, B).unwrap().data, b"x");
}

#[test]
fn each_kind_of_bad_packet_is_refused_for_its_reason() {
    let good = udp_frame(b"payload");
    assert_eq!(dissect(&good), Ok(()));
    let with = |at: usize, v: u8| {
        let mut f = good.clone();
        f[at] = v;
        f
    };
    // Re-checksum the IPv4 header after an edit, so the edit itself is what is judged.
    let fix = |mut f: Vec<u8>| {
        // The good frame has no options: its header is 20 bytes whatever the edit says.
        f[24..26].copy_from_slice(&[0, 0]);
        let c = checksum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        f
    };
    assert_eq!(dissect(&good[..13]), Err(Drop::Truncated));
    assert_eq!(dissect(&good[..30]), Err(Drop::Truncated));
    let mut big = good.clone();
    big.resize(1515, 0);
    assert_eq!(dissect(&big), Err(Drop::Oversize));
    assert_eq!(dissect(&fix(with(14, 0x65))), Err(Drop::Unsupported));
    assert_eq!(dissect(&fix(with(14, 0x44))), Err(Drop::BadLength));
    assert_eq!(dissect(&fix(with(14, 0x4f))), Err(Drop::BadLength));
    assert_eq!(dissect(&fix(with(17, 0xff))), Err(Drop::BadLength));
    assert_eq!(dissect(&fix(with(17, 19))), Err(Drop::BadLength));
    assert_eq!(dissect(&with(22, 63)), Err(Drop::BadChecksum));
    // More-fragments, and an offset without it (the last fragment).
    assert_eq!(dissect(&fix(with(20, 0x20))), Err(Drop::Fragment));
    assert_eq!(dissect(&fix(with(21, 0x01))), Err(Drop::Fragment));
    // The UDP length past the datagram, under the header; a flipped data byte.
    assert_eq!(dissect(&with(39, 200)), Err(Drop::BadLength));
    assert_eq!(dissect(&with(39, 7)), Err(Drop::BadLength));
    assert_eq!(dissect(&with(42, b'P')), Err(Drop::BadChecksum));
    // No checksum at all is allowed in IPv4.
    let mut none = good.clone();
    none[40..42].copy_from_slice(&[0, 0]);
    none[42] = b'P';
    assert_eq!(dissect(&none), Ok(()));
    // ICMP and TCP checksums.
    let mut i = icmp_frame(b"ping");
    i[40] ^= 1;
    assert_eq!(dissect(&i), Err(Drop::BadChecksum));
    let mut t = tcp_frame(b"data");
    t[54] ^= 0x80;
    assert_eq!(dissect(&t), Err(Drop::BadChecksum));
    // A TCP data offset under 5 or past the segment.
    let mut t = tcp_frame(b"");
    t[46] = 4 << 4;
    assert_eq!(dissect(&t), Err(Drop::BadLength));
    t[46] = 15 << 4;
    assert_eq!(dissect(&t), Err(Drop::BadLength));
    // ARP that is not Ethernet/IPv4, and an unknown operation.
    let mut a = arp_frame();
    a[19] = 16;
    assert_eq!(dissect(&a), Err(Drop::Unsupported));
    let mut a = arp_frame();
    a[21] = 3;
    assert_eq!(dissect(&a), Err(Drop::Unsupported));
    assert_eq!(dissect(&arp_frame()[..41]), Err(Drop::Truncated));
}

/// An IPv4 header with `options` (padded to a multiple of 4) in front of a UDP datagram.
fn with_ip_options(options: &[u8]) -> Vec<u8> {
    let good = udp_frame(b"opt");
    let pad = options.len().div_ceil(4) * 4;
    let mut f = good[..34].to_vec();
    f.extend_from_slice(options);
    f.resize(34 + pad, 0);
    f.extend_from_slice(&good[34..]);
    f[14] = 0x45 + (pad / 4) as u8;
    let total = (f.len() - 14) as u16;
    f[16..18].copy_from_slice(&total.to_be_bytes());
    f[24..26].copy_from_slice(&[0, 0]);
    let c = checksum(&f[14..34 + pad]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f
}

#[test]
fn ip_options_well_formed_pass_and_malformed_are_refused() {
    // No-ops, a 4-byte router alert (148), end of list.
    assert_eq!(dissect(&with_ip_options(&[1, 1, 148, 4, 0, 0, 0])), Ok(()));
    // Length 0 and 1 would never advance; a length past the header.
    assert_eq!(dissect(&with_ip_options(&[148, 0])), Err(Drop::BadOptions));
    assert_eq!(dissect(&with_ip_options(&[148, 1])), Err(Drop::BadOptions));
    assert_eq!(
        dissect(&with_ip_options(&[1, 1, 148, 9])),
        Err(Drop::BadOptions)
    );
    // A kind with no length byte left.
    assert_eq!(
        dissect(&with_ip_options(&[1, 1, 1, 148])),
        Err(Drop::BadOptions)
    );
}

#[test]
fn a_syn_with_the_mss_option_parses_back_and_the_option_is_found_among_others() {
    let h = TcpHeader {
        ports: (40000, 7),
        seq: 0xffff_fff0,
        ack: 0,
        flags: TCP_SYN,
        window: 8192,
        mss: Some(1460),
    };
    let mut o = [0u8; 64];
    let n = h.write(&mut o, A, B, b"").unwrap();
    assert_eq!(n, 24);
    let t = Tcp::parse(&o[..n], A, B).unwrap();
    assert_eq!(
        (t.seq, t.flags, t.window, t.data),
        (0xffff_fff0, TCP_SYN, 8192, &b""[..])
    );
    assert_eq!(tcp_mss(t.options), Some(1460));
    // Data after the option; too short a buffer.
    let n = h.write(&mut o, A, B, b"abc").unwrap();
    assert_eq!(Tcp::parse(&o[..n], A, B).unwrap().data, b"abc");
    assert_eq!(h.write(&mut o[..26], A, B, b"abc"), None);
    // NOPs, window scale and timestamps before it; an end-of-list before it hides it; a
    // malformed length or a wrongly sized MSS is no MSS.
    assert_eq!(
        tcp_mss(&[1, 1, 3, 3, 7, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0, 2, 4, 5, 0xb4]),
        Some(1460)
    );
    assert_eq!(tcp_mss(&[0, 0, 2, 4, 5, 0xb4]), None);
    assert_eq!(tcp_mss(&[2, 3, 5, 0]), None);
    assert_eq!(tcp_mss(&[5, 0, 2, 4, 5, 0xb4]), None);
    assert_eq!(tcp_mss(&[2]), None);
    assert_eq!(tcp_mss(&[]), None);
}

#[test]
fn addresses_print_and_parse() {
    use std::string::ToString;
    assert_eq!(IpText([10, 0, 2, 15]).to_string(), "10.0.2.15");
    assert_eq!(parse_ip("10.0.2.2"), Some([10, 0, 2, 2]));
    for bad in [
        "10.0.2",
        "10.0.2.2.1",
        "256.0.0.1",
        "1..2.3",
        "+1.2.3.4",
        "1.2.3.4 ",
        "",
    ] {
        assert_eq!(parse_ip(bad), None, "{bad:?}");
    }
}

/// The fuzz test: 300,000 frames, each a valid one of a random kind mutated at random (bytes
/// overwritten, bit flips, cuts, extensions) or plain noise. No parser may panic, every frame
/// ends accepted or dropped for a reason that is counted, and the counts must show that every
/// layer's refusals were reached (a fuzzer that never gets past Ethernet proves nothing).
#[test]
fn seeded_fuzz_never_panics_and_counts_every_drop() {
    let mut rng = Rng(0x6272_6169_6e69_7836);
    let seeds = [
        udp_frame(b"fuzz me"),
        icmp_frame(b"0123456789abcdef"),
        tcp_frame(b"segment"),
        arp_frame(),
        with_ip_options(&[1, 148, 4, 0, 0]),
    ];
    let mut drops = Drops::default();
    let mut accepted = 0u64;
    const CASES: u64 = 300_000;
    for case in 0..CASES {
        let mut f = seeds[rng.below(seeds.len())].clone();
        match rng.below(10) {
            0 => {
                let n = rng.below(1600);
                f = (0..n).map(|_| rng.next_u64() as u8).collect();
            }
            1 => f.truncate(rng.below(f.len() + 1)),
            2 => f.extend((0..rng.below(1600)).map(|_| rng.next_u64() as u8)),
            _ => {
                for _ in 0..1 + rng.below(3) {
                    let at = rng.below(f.len());
                    if rng.below(2) == 0 {
                        f[at] ^= 1 << rng.below(8);
                    } else {
                        f[at] = rng.next_u64() as u8;
                    }
                }
            }
        }
        match std::panic::catch_unwind(|| dissect(&f)) {
            Ok(Ok(())) => accepted += 1,
            Ok(Err(why)) => drops.count(why),
            Err(_) => panic!("case {case} panicked on {f:02x?}"),
        }
    }
    assert_eq!(accepted + drops.total(), CASES);
    for why in [
        Drop::Truncated,
        Drop::Unsupported,
        Drop::BadLength,
        Drop::BadChecksum,
        Drop::BadOptions,
        Drop::Fragment,
        Drop::Oversize,
        Drop::NotForUs,
    ] {
        assert!(
            drops.of(why) > 0,
            "no {} drop reached: {drops:?}",
            why.name()
        );
    }
    assert!(accepted > 0);
}

/// One bit flipped anywhere in an IPv4 header, or in a UDP, ICMP or TCP message, is never
/// accepted as a different packet: the checksums catch every single-bit error. The one
/// exception is a UDP checksum field flipped to zero ("none"), which the test allows for.
#[test]
fn every_single_bit_flip_is_refused() {
    for (name, good) in [
        ("udp", udp_frame(b"single bit")),
        ("icmp", icmp_frame(b"single bit")),
        ("tcp", tcp_frame(b"single bit")),
    ] {
        assert_eq!(dissect(&good), Ok(()));
        for byte in 14..good.len() {
            for bit in 0..8 {
                let mut f = good.clone();
                f[byte] ^= 1 << bit;
                let udp_sum_zero = name == "udp" && f[40..42] == [0, 0];
                if !udp_sum_zero {
                    assert!(
                        dissect(&f).is_err(),
                        "{name} byte {byte} bit {bit} accepted"
                    );
                }
            }
        }
    }
}
