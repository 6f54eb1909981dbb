extern crate std;
use super::*;
use brainix_wire::write_udp;

const ME: Ipv4Addr = [10, 0, 2, 15];
const HOST: Ipv4Addr = [10, 0, 2, 2];

use brainix_proto::transport::{PortRange, grant_badge};

/// A `protocol` grant for local `port`, remotes `remote/prefix`, remote ports `first` and up
/// (the TCP tests' too).
pub(crate) fn grant_of(
    protocol: Protocol,
    port: u16,
    (remote, prefix): (Ipv4Addr, u8),
    first: u16,
) -> Grant {
    Grant {
        protocol,
        local_ports: PortRange {
            first: port,
            last: port,
        },
        remote,
        prefix,
        remote_ports: PortRange {
            first,
            last: u16::MAX,
        },
    }
}

/// A UDP grant for local `port`, remotes `remote/prefix`, remote ports 1024 and up.
fn udp(port: u16, remote: Ipv4Addr, prefix: u8) -> Grant {
    grant_of(Protocol::Udp, port, (remote, prefix), 1024)
}

/// A socket table enforcing `grants` (index = position), and their badges.
fn table(grants: &[Grant]) -> (Sockets, std::vec::Vec<u64>) {
    let records = grants.iter().enumerate().map(|(i, g)| {
        Ok(Record::Grant {
            index: i as u16,
            grant: *g,
        })
    });
    let grants = Grants::from_records(records).unwrap();
    let badges = (0..grants.count() as u16).map(grant_badge).collect();
    (Sockets::new(grants), badges)
}

fn datagram(from_port: u16, to_port: u16, data: &[u8], from: Ipv4Addr) -> std::vec::Vec<u8> {
    let mut d = std::vec![0u8; 8 + data.len()];
    write_udp(&mut d, from, ME, from_port, to_port, data).unwrap();
    d
}

#[test]
fn without_a_grant_everything_is_denied_and_counted() {
    let tcp = Grant {
        protocol: Protocol::Tcp,
        ..udp(7, HOST, 32)
    };
    let (mut s, b) = table(&[tcp]);
    // A pid as badge, the shell's reader badge, a grant index with no grant, a TCP grant.
    for badge in [9, 0x1_0000_0002, grant_badge(5), b[0]] {
        assert_eq!(s.bind(badge, 7), Err(Error::MissingRight));
        assert_eq!(s.may_send(badge, 7, (HOST, 4000)), Err(Error::MissingRight));
    }
    assert_eq!(s.stats.denied, 8);
}

#[test]
fn a_doubtful_grant_table_is_refused_whole() {
    let g = udp(7, HOST, 32);
    let twice = [0, 0].map(|index| Ok(Record::Grant { index, grant: g }));
    assert_eq!(Grants::from_records(twice), Err(Malformed::Field));
    let past = [Ok(Record::Grant {
        index: MAX_GRANTS as u16,
        grant: g,
    })];
    assert_eq!(Grants::from_records(past), Err(Malformed::Field));
    let fault = [
        Ok(Record::Grant { index: 0, grant: g }),
        Err(Malformed::Truncated),
    ];
    assert_eq!(Grants::from_records(fault), Err(Malformed::Truncated));
}

#[test]
fn a_grant_allows_its_port_and_remotes_only() {
    let (mut s, b) = table(&[udp(7, [10, 0, 2, 0], 24), udp(7, [10, 0, 0, 0], 8)]);
    let (echo, other) = (b[0], b[1]);
    let host = (HOST, 4000);
    assert_eq!(s.may_send(echo, 7, host), Err(Error::NotFound), "unbound");
    assert_eq!(s.stats.denied, 0);
    assert_eq!(s.bind(echo, 8), Err(Error::MissingRight));
    assert_eq!(s.bind(echo, 7), Ok(()));
    assert_eq!(s.bind(echo, 7), Ok(()), "binding again is no error");
    assert_eq!(s.may_send(echo, 7, host), Ok(()));
    assert_eq!(
        s.may_send(echo, 7, ([10, 0, 3, 1], 4000)),
        Err(Error::MissingRight)
    );
    assert_eq!(
        s.may_send(echo, 7, (HOST, 53)),
        Err(Error::MissingRight),
        "remote port"
    );
    assert_eq!(s.may_send(echo, 8, host), Err(Error::MissingRight));
    assert_eq!(s.stats.denied, 4);
    // Another client granted the same port cannot take it over.
    assert_eq!(s.bind(other, 7), Err(Error::Busy));
    assert_eq!(s.may_send(other, 7, host), Err(Error::NotFound));
}

#[test]
fn ingress_reaches_a_bound_port_from_a_granted_remote_only() {
    let (mut s, b) = table(&[udp(7, [10, 0, 2, 0], 24)]);
    let echo = b[0];
    s.bind(echo, 7).unwrap();
    s.deliver(HOST, ME, &datagram(4000, 7, b"hi", HOST));
    let got = s.take(echo, 7, |m| (m.from, m.from_port, m.data[..m.len].to_vec()));
    assert_eq!(got, Ok(Some((HOST, 4000, b"hi".to_vec()))));
    assert_eq!(s.take(echo, 7, |_| ()), Ok(None));
    // An unbound port; senders outside the grant (address, port); a bad checksum; a full
    // mailbox.
    s.deliver(HOST, ME, &datagram(4000, 9, b"x", HOST));
    let outsider = [10, 0, 3, 9];
    s.deliver(outsider, ME, &datagram(4000, 7, b"x", outsider));
    s.deliver(HOST, ME, &datagram(53, 7, b"x", HOST));
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
        (1, 2, 1, 1)
    );
    assert_eq!(s.take(echo, 7, |m| m.data[0]), Ok(Some(b'1')));
    assert_eq!(s.stats.delivered, 2);
    // Nobody else reads the socket.
    assert_eq!(s.take(9, 7, |_| ()), Err(Error::NotFound));
}

#[test]
fn the_table_fills_and_says_so() {
    let grants: std::vec::Vec<Grant> = (1..=SOCKETS as u16 + 1)
        .map(|port| udp(port, HOST, 32))
        .collect();
    let (mut s, b) = table(&grants);
    for (i, port) in (1..=SOCKETS as u16).enumerate() {
        s.bind(b[i], port).unwrap();
    }
    assert_eq!(s.bind(b[SOCKETS], SOCKETS as u16 + 1), Err(Error::NoSpace));
}
