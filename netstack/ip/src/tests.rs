extern crate std;
use super::*;
use brainix_proto::ip::Config;

/// QEMU's user network, as the test system's manifest gives it.
const CONFIG: Config = Config {
    address: [10, 0, 2, 15],
    prefix: 24,
    gateway: [10, 0, 2, 2],
};
use brainix_wire::{PROTO_TCP, PROTO_UDP, TCP_SYN, write_tcp, write_udp};
use std::vec::Vec;

const ME: Mac = [0x52, 0x54, 0, 0xbe, 0xef, 1];
const GW: Mac = [0x52, 0x55, 10, 0, 2, 2];
const HOST: Ipv4Addr = [10, 0, 2, 2];

fn stack() -> Stack {
    Stack::new(ME, CONFIG)
}

fn arp(op: u16, sender: Ipv4Addr, target: Ipv4Addr, dst: Mac) -> Vec<u8> {
    let mut f = std::vec![0u8; 60];
    write_ethernet(&mut f, dst, GW, ETHERTYPE_ARP).unwrap();
    Arp {
        op,
        sender_mac: GW,
        sender_ip: sender,
        target_mac: if op == ARP_REPLY { ME } else { [0; 6] },
        target_ip: target,
    }
    .write(&mut f[14..])
    .unwrap();
    f
}

fn ipv4(dst: Ipv4Addr, proto: u8, body: &dyn Fn(&mut [u8]) -> usize) -> Vec<u8> {
    let mut f = std::vec![0u8; MTU];
    write_ethernet(&mut f, ME, GW, ETHERTYPE_IPV4).unwrap();
    let n = body(&mut f[34..]);
    write_ipv4(&mut f[14..], HOST, dst, proto, 99, n).unwrap();
    f.truncate(34 + n);
    f
}

fn echo(kind: u8, dst: Ipv4Addr) -> Vec<u8> {
    ipv4(dst, PROTO_ICMP, &|o| {
        write_icmp_echo(o, kind, 0x77, 3, b"hello there").unwrap()
    })
}

#[test]
fn an_arp_request_for_us_is_answered_and_its_sender_learned() {
    let mut s = stack();
    let mut out = [0u8; MTU];
    let n = match s.input(&arp(ARP_REQUEST, HOST, CONFIG.address, BROADCAST), &mut out) {
        Input::Send(n) => n,
        other => panic!("{other:?}"),
    };
    let eth = Ethernet::parse(&out[..n], MTU).unwrap();
    assert_eq!((eth.dst, eth.src, eth.ethertype), (GW, ME, ETHERTYPE_ARP));
    let a = Arp::parse(eth.payload).unwrap();
    assert_eq!(
        (a.op, a.sender_mac, a.sender_ip),
        (ARP_REPLY, ME, CONFIG.address)
    );
    assert_eq!((a.target_mac, a.target_ip), (GW, HOST));
    assert_eq!(s.lookup(HOST), Some(GW));
    assert_eq!((s.stats.frames_in, s.stats.frames_out), (1, 1));
}

#[test]
fn arp_not_addressed_to_us_is_neither_answered_nor_believed() {
    let mut s = stack();
    let mut out = [0u8; MTU];
    // Someone asks for another host; someone announces a mapping to a third party.
    assert_eq!(
        s.input(&arp(ARP_REQUEST, HOST, [10, 0, 2, 3], BROADCAST), &mut out),
        Input::Nothing
    );
    assert_eq!(
        s.input(&arp(ARP_REPLY, HOST, [10, 0, 2, 3], ME), &mut out),
        Input::Nothing
    );
    assert_eq!(s.lookup(HOST), None);
    assert_eq!(s.stats.drops.of(Drop::NotForUs), 2);
    // A reply to us is learned, but answers nothing.
    assert_eq!(
        s.input(&arp(ARP_REPLY, HOST, CONFIG.address, ME), &mut out),
        Input::Nothing
    );
    assert_eq!(s.lookup(HOST), Some(GW));
    assert_eq!(s.stats.frames_out, 0);
}

#[test]
fn an_echo_request_is_answered_with_the_same_data() {
    let mut s = stack();
    let mut out = [0u8; MTU];
    let n = match s.input(&echo(ICMP_ECHO_REQUEST, CONFIG.address), &mut out) {
        Input::Send(n) => n,
        other => panic!("{other:?}"),
    };
    let eth = Ethernet::parse(&out[..n], MTU).unwrap();
    assert_eq!((eth.dst, eth.src), (GW, ME));
    let ip = Ipv4::parse(eth.payload).unwrap();
    assert_eq!(
        (ip.src, ip.dst, ip.proto),
        (CONFIG.address, HOST, PROTO_ICMP)
    );
    let i = Icmp::parse(ip.payload).unwrap();
    assert_eq!(
        (i.kind, i.ident, i.seq, i.data),
        (ICMP_ECHO_REPLY, 0x77, 3, &b"hello there"[..])
    );
    assert_eq!(s.stats.echo_answered, 1);
}

#[test]
fn an_echo_reply_goes_to_the_waiting_ping_and_the_rest_is_counted() {
    let mut s = stack();
    let mut out = [0u8; MTU];
    assert_eq!(
        s.input(&echo(ICMP_ECHO_REPLY, CONFIG.address), &mut out),
        Input::EchoReply {
            from: HOST,
            ident: 0x77,
            seq: 3,
            ttl: 64
        }
    );
    // For another address; a protocol not served (IGMP); another host's unicast frame.
    assert_eq!(
        s.input(&echo(ICMP_ECHO_REQUEST, [10, 0, 2, 16]), &mut out),
        Input::Nothing
    );
    let igmp = ipv4(CONFIG.address, 2, &|o| {
        o[..8].copy_from_slice(&[0x11, 0, 0xee, 0xff, 0, 0, 0, 0]);
        8
    });
    assert_eq!(s.input(&igmp, &mut out), Input::Nothing);
    let mut other = echo(ICMP_ECHO_REQUEST, CONFIG.address);
    other[..6].copy_from_slice(&[0x52, 0x54, 0, 0, 0, 9]);
    assert_eq!(s.input(&other, &mut out), Input::Nothing);
    assert_eq!(s.stats.drops.of(Drop::NotForUs), 3);
    // A corrupted request is refused by its checksum, not answered.
    let mut bad = echo(ICMP_ECHO_REQUEST, CONFIG.address);
    let last = bad.len() - 1;
    bad[last] ^= 4;
    assert_eq!(s.input(&bad, &mut out), Input::Nothing);
    assert_eq!(s.stats.drops.of(Drop::BadChecksum), 1);
    assert_eq!(s.stats.echo_answered, 0);
}

#[test]
fn a_udp_datagram_for_us_is_handed_on_whole_and_a_corrupt_one_dropped() {
    let mut s = stack();
    let mut out = [0u8; MTU];
    let udp = ipv4(CONFIG.address, PROTO_UDP, &|o| {
        write_udp(o, HOST, CONFIG.address, 5555, 7, b"datagram").unwrap()
    });
    let Input::Datagram {
        at,
        len,
        from,
        proto,
    } = s.input(&udp, &mut out)
    else {
        panic!("not handed on");
    };
    assert_eq!((at, len, from, proto), (34, 16, HOST, PROTO_UDP));
    let d = brainix_wire::Udp::parse(&udp[at..at + len], HOST, CONFIG.address).unwrap();
    assert_eq!(
        (d.src_port, d.dst_port, d.data),
        (5555, 7, &b"datagram"[..])
    );
    let mut bad = udp.clone();
    bad[40] ^= 0x10;
    assert_eq!(s.input(&bad, &mut out), Input::Nothing);
    assert_eq!(s.stats.drops.of(Drop::BadChecksum), 1);
    // What the transport server gives back goes out with headers that parse.
    let n = write_udp(&mut out[34..], CONFIG.address, HOST, 7, 5555, b"back").unwrap();
    let n = s.wrap(GW, HOST, PROTO_UDP, n, &mut out).unwrap();
    let ip = Ipv4::parse(&out[14..n]).unwrap();
    assert_eq!(
        brainix_wire::Udp::parse(ip.payload, ip.src, ip.dst)
            .unwrap()
            .data,
        b"back"
    );
    assert_eq!(s.wrap(GW, HOST, PROTO_UDP, MTU, &mut out), None);
}

#[test]
fn a_tcp_segment_for_us_is_handed_on_with_its_protocol_and_a_corrupt_one_dropped() {
    let mut s = stack();
    let mut out = [0u8; MTU];
    let tcp = ipv4(CONFIG.address, PROTO_TCP, &|o| {
        write_tcp(
            o,
            HOST,
            CONFIG.address,
            (40000, 7),
            9,
            0,
            TCP_SYN,
            4096,
            b"",
        )
        .unwrap()
    });
    assert_eq!(
        s.input(&tcp, &mut out),
        Input::Datagram {
            at: 34,
            len: 20,
            from: HOST,
            proto: PROTO_TCP
        }
    );
    let mut bad = tcp.clone();
    bad[38] ^= 1;
    assert_eq!(s.input(&bad, &mut out), Input::Nothing);
    assert_eq!(s.stats.drops.of(Drop::BadChecksum), 1);
}

#[test]
fn the_next_hop_is_the_gateway_off_the_local_network() {
    let s = stack();
    assert_eq!(s.next_hop([10, 0, 2, 2]), [10, 0, 2, 2]);
    assert_eq!(s.next_hop([10, 0, 2, 200]), [10, 0, 2, 200]);
    assert_eq!(s.next_hop([10, 0, 3, 1]), CONFIG.gateway);
    assert_eq!(s.next_hop([8, 8, 8, 8]), CONFIG.gateway);
}

#[test]
fn what_the_stack_sends_parses_back() {
    let mut s = stack();
    let mut out = [0u8; MTU];
    let n = s.arp_request(HOST, &mut out);
    let eth = Ethernet::parse(&out[..n], MTU).unwrap();
    assert_eq!(eth.dst, BROADCAST);
    let a = Arp::parse(eth.payload).unwrap();
    assert_eq!(
        (a.op, a.target_ip, a.sender_ip),
        (ARP_REQUEST, HOST, CONFIG.address)
    );
    let n = s.echo_request(GW, HOST, 5, 6, &mut out);
    let eth = Ethernet::parse(&out[..n], MTU).unwrap();
    let ip = Ipv4::parse(eth.payload).unwrap();
    let i = Icmp::parse(ip.payload).unwrap();
    assert_eq!(
        (eth.dst, ip.dst, i.kind, i.ident, i.seq),
        (GW, HOST, ICMP_ECHO_REQUEST, 5, 6)
    );
}

/// Hostile frames at the stack: mutated valid ones and noise. Nothing panics, and every frame
/// is accounted for: answered, handed on, or dropped for a counted reason.
#[test]
fn hostile_frames_are_answered_or_counted_never_fatal() {
    let mut s = stack();
    let mut out = [0u8; MTU];
    let seeds = [
        arp(ARP_REQUEST, HOST, CONFIG.address, BROADCAST),
        echo(ICMP_ECHO_REQUEST, CONFIG.address),
        echo(ICMP_ECHO_REPLY, CONFIG.address),
    ];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let (mut sent, mut handed) = (0u64, 0u64);
    const CASES: u64 = 100_000;
    for _ in 0..CASES {
        let mut f = seeds[(next() % 3) as usize].clone();
        match next() % 4 {
            0 => f.truncate((next() as usize) % (f.len() + 1)),
            1 => f = (0..next() % 1600).map(|_| next() as u8).collect(),
            _ => {
                let at = (next() as usize) % f.len();
                f[at] = next() as u8;
            }
        }
        match s.input(&f, &mut out) {
            Input::Send(n) => {
                sent += 1;
                // What it sends is itself well formed.
                assert!(n <= MTU && Ethernet::parse(&out[..n], MTU).is_ok());
            }
            Input::EchoReply { .. } | Input::Datagram { .. } => handed += 1,
            Input::Nothing => {}
        }
    }
    assert_eq!(s.stats.frames_in, CASES);
    assert!(sent > 0 && handed > 0);
    // Learned ARP replies answer nothing, so they are the one silent, uncounted outcome.
    assert!(s.stats.drops.total() + sent + handed <= CASES);
    assert!(s.stats.drops.total() > CASES / 2, "{:?}", s.stats.drops);
}
