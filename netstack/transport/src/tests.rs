extern crate std;
use super::*;
use brainix_wire::write_udp;

const ME: Ipv4Addr = [10, 0, 2, 15];
const HOST: Ipv4Addr = [10, 0, 2, 2];

fn grant(port: u16, remote: Ipv4Addr, prefix: u8) -> u64 {
    Grant {
        local_port: port,
        remote,
        prefix,
        udp: true,
    }
    .badge()
}

fn datagram(from_port: u16, to_port: u16, data: &[u8], from: Ipv4Addr) -> std::vec::Vec<u8> {
    let mut d = std::vec![0u8; 8 + data.len()];
    write_udp(&mut d, from, ME, from_port, to_port, data).unwrap();
    d
}

#[test]
fn without_a_grant_everything_is_denied_and_counted() {
    let mut s = Sockets::new();
    // A pid as badge, the shell's reader badge, a marker without UDP.
    for badge in [9, 0x1_0000_0002, Grant::MARKER | 7] {
        assert_eq!(s.bind(badge, 7), Err(Error::MissingRight));
        assert_eq!(s.may_send(badge, 7, HOST), Err(Error::MissingRight));
    }
    assert_eq!(s.stats.denied, 6);
}

#[test]
fn a_grant_allows_its_port_and_remotes_only() {
    let mut s = Sockets::new();
    let echo = grant(7, [10, 0, 2, 0], 24);
    assert_eq!(s.may_send(echo, 7, HOST), Err(Error::NotFound), "unbound");
    assert_eq!(s.stats.denied, 0);
    assert_eq!(s.bind(echo, 8), Err(Error::MissingRight));
    assert_eq!(s.bind(echo, 7), Ok(()));
    assert_eq!(s.bind(echo, 7), Ok(()), "binding again is no error");
    assert_eq!(s.may_send(echo, 7, HOST), Ok(()));
    assert_eq!(s.may_send(echo, 7, [10, 0, 3, 1]), Err(Error::MissingRight));
    assert_eq!(s.may_send(echo, 8, HOST), Err(Error::MissingRight));
    assert_eq!(s.stats.denied, 3);
    // Another client granted the same port cannot take it over.
    let other = grant(7, [10, 0, 0, 0], 8);
    assert_eq!(s.bind(other, 7), Err(Error::Busy));
    assert_eq!(s.may_send(other, 7, HOST), Err(Error::NotFound));
}

#[test]
fn ingress_reaches_a_bound_port_from_a_granted_remote_only() {
    let mut s = Sockets::new();
    let echo = grant(7, [10, 0, 2, 0], 24);
    s.bind(echo, 7).unwrap();
    s.deliver(HOST, ME, &datagram(4000, 7, b"hi", HOST));
    let got = s.take(echo, 7, |m| (m.from, m.from_port, m.data[..m.len].to_vec()));
    assert_eq!(got, Ok(Some((HOST, 4000, b"hi".to_vec()))));
    assert_eq!(s.take(echo, 7, |_| ()), Ok(None));
    // An unbound port; a sender outside the grant; a bad checksum; a full mailbox.
    s.deliver(HOST, ME, &datagram(4000, 9, b"x", HOST));
    let outsider = [10, 0, 3, 9];
    s.deliver(outsider, ME, &datagram(4000, 7, b"x", outsider));
    let mut bad = datagram(4000, 7, b"xy", HOST);
    bad[9] ^= 1;
    s.deliver(HOST, ME, &bad);
    s.deliver(HOST, ME, &datagram(4000, 7, b"1", HOST));
    s.deliver(HOST, ME, &datagram(4000, 7, b"2", HOST));
    let d = s.stats.drops;
    assert_eq!(
        (
            d.of(Drop::NotForUs),
            d.of(Drop::Denied),
            d.of(Drop::BadChecksum),
            d.of(Drop::QueueFull)
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(s.take(echo, 7, |m| m.data[0]), Ok(Some(b'1')));
    assert_eq!(s.stats.delivered, 2);
    // Nobody else reads the socket.
    assert_eq!(s.take(9, 7, |_| ()), Err(Error::NotFound));
}

#[test]
fn the_table_fills_and_says_so() {
    let mut s = Sockets::new();
    for port in 1..=SOCKETS as u16 {
        s.bind(grant(port, HOST, 32), port).unwrap();
    }
    let late = grant(100, HOST, 32);
    assert_eq!(s.bind(late, 100), Err(Error::NoSpace));
}
