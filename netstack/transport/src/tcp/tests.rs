//! Two of these stacks talking through a simulated wire (which can drop, duplicate and reorder
//! with a seeded generator), and hostile segments thrown at one.
extern crate std;
use super::*;
use brainix_proto::transport::{Grant, MAX_GRANTS, grant_badge};
use brainix_testkit::Rng as Prng;
use brainix_wire::write_tcp;
use std::boxed::Box;
use std::vec::Vec;

const A: Ipv4Addr = [10, 0, 2, 15];
const B: Ipv4Addr = [10, 0, 2, 2];
const SERVER_PORT: u16 = 7;
const CLIENT_PORT: u16 = 40000;

/// The ports the test grants name, each a TCP grant towards 10.0.2.0/24, any remote port; the
/// grant's index is the port's place here.
const PORTS: [u16; 12] = [
    7, 9, 40000, 5000, 6000, 41000, 41001, 41002, 41003, 42000, 43000, 5,
];
/// More grants: UDP port 7; TCP port 9 towards 10.0.3.0/24 only; TCP port 7 towards anywhere.
const UDP_ONLY: u16 = 20;
const NARROW: u16 = 21;
const WIDE: u16 = 22;

fn tcp_grant(port: u16, remote: Ipv4Addr, prefix: u8) -> Grant {
    crate::tests::grant_of(Protocol::Tcp, port, (remote, prefix), 1)
}

/// The grants table every test stack enforces.
fn table() -> Grants {
    let mut t = [None; MAX_GRANTS];
    for (i, p) in PORTS.iter().enumerate() {
        t[i] = Some(tcp_grant(*p, [10, 0, 2, 0], 24));
    }
    t[usize::from(UDP_ONLY)] = Some(Grant {
        protocol: Protocol::Udp,
        ..tcp_grant(7, [10, 0, 2, 0], 24)
    });
    t[usize::from(NARROW)] = Some(tcp_grant(9, [10, 0, 3, 0], 24));
    t[usize::from(WIDE)] = Some(tcp_grant(7, [0; 4], 0));
    Grants(t)
}

/// The badge of the grant for TCP `port`.
fn grant(port: u16) -> u64 {
    grant_badge(PORTS.iter().position(|p| *p == port).unwrap() as u16)
}

/// A stack at `addr` with the test grants.
fn stack(addr: Ipv4Addr, seed: u64) -> Box<Tcp> {
    Box::new(Tcp::new(addr, table(), seed))
}

/// A segment on the wire, due at `at`.
struct InFlight {
    at: u64,
    from: Ipv4Addr,
    to: Ipv4Addr,
    bytes: Vec<u8>,
}

/// What the wire does to segments.
#[derive(Clone, Copy, Default)]
struct Faults {
    /// Percent dropped.
    loss: usize,
    /// Percent delivered twice.
    dup: usize,
    /// Extra delay, uniformly up to this many ms: segments overtake each other.
    jitter: usize,
}

/// Stack `a` at 10.0.2.15 and `b` at 10.0.2.2, one wire between them, a clock in ms.
struct Net {
    a: Box<Tcp>,
    b: Box<Tcp>,
    now: u64,
    wire: Vec<InFlight>,
    rng: Prng,
    faults: Faults,
    /// Every segment either stack sent: (from, bytes).
    sent: Vec<(Ipv4Addr, Vec<u8>)>,
}

impl Net {
    fn new(seed: u64) -> Net {
        Net {
            a: stack(A, seed),
            b: stack(B, seed ^ 0x5555),
            now: 1,
            wire: Vec::new(),
            rng: Prng(seed | 1),
            faults: Faults::default(),
            sent: Vec::new(),
        }
    }

    fn stack(&mut self, addr: Ipv4Addr) -> &mut Tcp {
        if addr == A { &mut self.a } else { &mut self.b }
    }

    /// Takes every segment both stacks owe and puts it on the wire.
    fn flush(&mut self) {
        let mut out = [0u8; SEGMENT_MAX];
        let now = self.now;
        for from in [A, B] {
            while let Some((to, n)) = self.stack(from).output(now, &mut out) {
                let bytes = out[..n].to_vec();
                self.sent.push((from, bytes.clone()));
                let f = self.faults;
                if self.rng.percent(f.loss) {
                    continue;
                }
                let copies = if self.rng.percent(f.dup) { 2 } else { 1 };
                for _ in 0..copies {
                    let at = self.now + 1 + self.rng.below(f.jitter + 1) as u64;
                    let bytes = bytes.clone();
                    self.wire.push(InFlight {
                        at,
                        from,
                        to,
                        bytes,
                    });
                }
            }
        }
    }

    /// One millisecond: timers, output, then whatever is due arrives.
    fn step(&mut self) {
        let now = self.now;
        self.a.tick(now);
        self.b.tick(now);
        self.flush();
        let (due, later): (Vec<_>, Vec<_>) = self.wire.drain(..).partition(|s| s.at <= now);
        self.wire = later;
        for s in due {
            self.stack(s.to).input(s.from, s.to, &s.bytes, now);
        }
        self.flush();
        self.now += 1;
    }

    /// Steps until `done` or `ms` pass; whether `done` held.
    fn until(&mut self, ms: u64, mut done: impl FnMut(&mut Net) -> bool) -> bool {
        let end = self.now + ms;
        while self.now < end {
            if done(self) {
                return true;
            }
            self.step();
        }
        done(self)
    }

    /// The segments sent by `from` so far, parsed.
    fn sent_by(&self, from: Ipv4Addr) -> Vec<Segment<'_>> {
        let to = if from == A { B } else { A };
        self.sent
            .iter()
            .filter(|(f, _)| *f == from)
            .map(|(_, b)| Segment::parse(b, from, to).unwrap())
            .collect()
    }
}

/// No connection left (listeners aside).
fn idle(t: &Tcp) -> bool {
    t.conns.iter().all(|c| c.state == State::Free)
}

/// `b` listens on 7; `a` connects from 40000; both ends open. The handles: (a's, b's).
fn open(net: &mut Net) -> (Handle, Handle) {
    let (ga, gb) = (grant(CLIENT_PORT), grant(SERVER_PORT));
    net.b.listen(gb, SERVER_PORT).unwrap();
    let ha = net
        .a
        .connect(ga, CLIENT_PORT, B, SERVER_PORT, net.now)
        .unwrap();
    let mut hb = None;
    let ok = net.until(60_000, |n| {
        if hb.is_none() {
            hb = n.b.accept(gb, SERVER_PORT).unwrap().map(|x| x.handle);
        }
        hb.is_some() && n.a.established(ga, ha) == Ok(true)
    });
    assert!(ok, "no connection");
    (ha, hb.unwrap())
}

/// One end of a transfer: what it still has to send and what it got.
struct End {
    badge: u64,
    handle: Handle,
    out: Vec<u8>,
    sent: usize,
    got: Vec<u8>,
    eof: bool,
    read: bool,
    /// The first error a call returned.
    error: Option<Error>,
}

impl End {
    fn new(badge: u64, handle: Handle, out: Vec<u8>) -> End {
        End {
            badge,
            handle,
            out,
            sent: 0,
            got: Vec::new(),
            eof: false,
            read: true,
            error: None,
        }
    }

    /// Feeds what the send buffer takes, reads what arrived.
    fn pump(&mut self, tcp: &mut Tcp) {
        if self.error.is_some() {
            return;
        }
        let rest = &self.out[self.sent..];
        let sent = tcp.send_with(self.badge, self.handle, rest.len(), |at, run| {
            run.copy_from_slice(&rest[at..at + run.len()]);
            Ok(run.len())
        });
        match sent {
            Ok(n) => self.sent += n,
            Err(e) => return self.error = Some(e),
        }
        if !self.read {
            return;
        }
        let got = &mut self.got;
        match tcp.recv_with(self.badge, self.handle, 3000, |_, run| {
            got.extend_from_slice(run);
            Ok(())
        }) {
            Ok(Some(0)) => self.eof = true,
            Ok(_) => {}
            Err(e) => self.error = Some(e),
        }
    }
}

fn pattern(len: usize, salt: u64) -> Vec<u8> {
    let mut r = Prng(salt | 1);
    (0..len).map(|_| r.next_u64() as u8).collect()
}

/// Both ends send their bytes and read the other's, until both have everything.
fn exchange(net: &mut Net, a: &mut End, b: &mut End, ms: u64) {
    let (want_a, want_b) = (b.out.len(), a.out.len());
    let ok = net.until(ms, |n| {
        a.pump(&mut n.a);
        b.pump(&mut n.b);
        a.got.len() >= want_a && b.got.len() >= want_b
    });
    assert_eq!((a.error, b.error), (None, None));
    assert!(
        ok,
        "transfer stuck at {} of {want_b} and {} of {want_a} (a {:?}, b {:?})",
        b.got.len(),
        a.got.len(),
        net.a.stats,
        net.b.stats
    );
    assert!(b.got == a.out, "a -> b differs");
    assert!(a.got == b.out, "b -> a differs");
}

#[test]
fn handshake_both_ways_and_simultaneous_open() {
    let mut net = Net::new(1);
    let (ha, hb) = open(&mut net);
    assert_eq!(net.a.state(grant(CLIENT_PORT), ha), Ok(State::Established));
    assert_eq!(net.b.state(grant(SERVER_PORT), hb), Ok(State::Established));
    // What went: SYN with the MSS option; SYN-ACK acknowledging it; the ACK.
    let a = net.sent_by(A);
    let b = net.sent_by(B);
    assert_eq!(a[0].flags, TCP_SYN);
    assert_eq!(tcp_mss(a[0].options), Some(MSS as u16));
    assert_eq!(b[0].flags, TCP_SYN | TCP_ACK);
    assert_eq!(b[0].ack, a[0].seq.wrapping_add(1));
    assert_eq!((a[1].flags, a[1].ack), (TCP_ACK, b[0].seq.wrapping_add(1)));
    assert_eq!((net.a.stats.opened, net.b.stats.opened), (1, 1));

    // The other way round: b connects to a listener on a.
    let (ga, gb) = (grant(9), grant(9));
    net.a.listen(ga, 9).unwrap();
    let hb2 = net.b.connect(gb, 9, A, 9, net.now).unwrap();
    let mut ha2 = None;
    assert!(net.until(5000, |n| {
        ha2 = ha2.or(n.a.accept(ga, 9).unwrap());
        ha2.is_some() && n.b.established(gb, hb2) == Ok(true)
    }));
    assert_eq!(ha2.unwrap().remote, B);

    // Both connect to each other at once, no listener: SYNs cross, each answers SYN-ACK.
    let mut net = Net::new(2);
    let (ga, gb) = (grant(5000), grant(6000));
    let ha = net.a.connect(ga, 5000, B, 6000, 1).unwrap();
    let hb = net.b.connect(gb, 6000, A, 5000, 1).unwrap();
    assert!(net.until(5000, |n| n.a.established(ga, ha) == Ok(true)
        && n.b.established(gb, hb) == Ok(true)));
    let mut a = End::new(ga, ha, pattern(5000, 1));
    let mut b = End::new(gb, hb, pattern(7000, 2));
    exchange(&mut net, &mut a, &mut b, 5000);
}

#[test]
fn data_both_ways_arrives_byte_for_byte() {
    let mut net = Net::new(3);
    let (ha, hb) = open(&mut net);
    let mut a = End::new(grant(CLIENT_PORT), ha, pattern(100_000, 3));
    let mut b = End::new(grant(SERVER_PORT), hb, pattern(60_001, 4));
    exchange(&mut net, &mut a, &mut b, 10_000);
    // A clean wire: nothing resent, no segment larger than the peer's MSS, never more in
    // flight than the window (a full window's worth is a handful of segments).
    assert_eq!((net.a.stats.retransmits, net.b.stats.retransmits), (0, 0));
    assert!(net.sent_by(A).iter().all(|s| s.data.len() <= MSS));
    assert_eq!(net.a.stats.refused() + net.b.stats.refused(), 0);
}

/// The wire drops, duplicates and reorders; 200 KiB each way still arrive exactly, because
/// lost segments are resent.
#[test]
fn a_lossy_duplicating_reordering_wire_still_delivers_200_kib_each_way() {
    for seed in [11, 12, 13] {
        let mut net = Net::new(seed);
        let (ha, hb) = open(&mut net);
        net.faults = Faults {
            loss: 8,
            dup: 5,
            jitter: 6,
        };
        let mut a = End::new(grant(CLIENT_PORT), ha, pattern(200 * 1024, seed));
        let mut b = End::new(grant(SERVER_PORT), hb, pattern(200 * 1024, !seed));
        exchange(&mut net, &mut a, &mut b, 600_000);
        let (sa, sb) = (net.a.stats, net.b.stats);
        assert!(sa.retransmits > 0 && sb.retransmits > 0, "{sa:?} {sb:?}");
        // Duplicates and overtaken segments were seen and refused, never taken twice.
        assert!(sa.rejected(Reject::OutOfWindow) + sb.rejected(Reject::OutOfWindow) > 0);
        assert!(sa.rejected(Reject::OutOfOrder) + sb.rejected(Reject::OutOfOrder) > 0);
        // And it closes cleanly over the same wire.
        net.a.close(a.badge, ha).unwrap();
        assert!(net.until(60_000, |n| {
            b.pump(&mut n.b);
            b.eof
        }));
        net.b.close(b.badge, hb).unwrap();
        assert!(net.until(60_000, |n| idle(&n.a) && idle(&n.b)));
    }
}

/// a sends three buffers' worth to b, which does not read, for `ms`.
fn stalled(seed: u64, ms: u64) -> (Net, End, End) {
    let mut net = Net::new(seed);
    let (ha, hb) = open(&mut net);
    let mut a = End::new(grant(CLIENT_PORT), ha, pattern(3 * RECV_BUF, seed));
    let mut b = End::new(grant(SERVER_PORT), hb, Vec::new());
    b.read = false;
    net.until(ms, |n| {
        a.pump(&mut n.a);
        false
    });
    (net, a, b)
}

#[test]
fn a_closed_window_holds_the_sender_until_the_update_even_when_the_update_is_lost() {
    let (mut net, mut a, mut b) = stalled(4, 3000);
    // b's buffer is full and its window closed; a stopped with the rest in its buffer.
    let zero = net.sent_by(B).iter().filter(|s| s.window == 0).count();
    assert!(zero > 0, "b never closed its window");
    let received: usize = net.sent_by(A).iter().map(|s| s.data.len()).sum();
    assert_eq!(received, RECV_BUF, "a sent past the window");
    assert_eq!(a.sent, RECV_BUF + SEND_BUF);
    // b reads, but its window update is lost: a's zero-window probes find the window.
    let probes_before = net.sent_by(A).len();
    net.faults.loss = 100;
    b.read = true;
    while b.got.len() < RECV_BUF {
        b.pump(&mut net.b);
        net.step();
    }
    net.faults.loss = 0;
    exchange(&mut net, &mut a, &mut b, 60_000);
    // A probe: no data, one below the first byte the window kept back.
    let edge = net.sent_by(A)[0].seq.wrapping_add(1 + RECV_BUF as u32);
    let after: Vec<_> = net.sent_by(A).into_iter().skip(probes_before).collect();
    assert!(
        after
            .iter()
            .any(|s| s.data.is_empty() && s.seq == edge.wrapping_sub(1)),
        "no probe"
    );
    // Without loss, the update alone re-opens it.
    let (mut net, mut a, mut b) = stalled(5, 500);
    let start = net.now;
    b.read = true;
    exchange(&mut net, &mut a, &mut b, 60_000);
    assert!(net.now - start < RTO_INITIAL_MS, "waited for a probe");
    let updates = net.sent_by(B);
    assert!(
        updates
            .iter()
            .any(|s| s.data.is_empty() && s.window as usize >= RECV_BUF / 2),
        "no window update"
    );
}

#[test]
fn orderly_close_from_either_side_and_time_wait_ends() {
    let mut net = Net::new(6);
    let (ha, hb) = open(&mut net);
    let (ga, gb) = (grant(CLIENT_PORT), grant(SERVER_PORT));
    let mut b = End::new(gb, hb, Vec::new());
    let mut a = End::new(ga, ha, b"last words".to_vec());
    net.until(100, |n| {
        a.pump(&mut n.a);
        false
    });
    net.a.close(ga, ha).unwrap();
    assert_eq!(
        net.a.state(ga, ha),
        Err(Error::NotFound),
        "the handle is gone"
    );
    assert!(net.until(1000, |n| {
        b.pump(&mut n.b);
        b.eof
    }));
    assert_eq!(b.got, b"last words");
    assert_eq!(net.b.state(gb, hb), Ok(State::CloseWait));
    // b can still send after a's FIN: a has closed, so a answers that with RST.
    net.b.close(gb, hb).unwrap();
    let closed_at = net.now;
    assert!(net.until(1000, |n| !n.b.active()
        || n.b.listeners.iter().flatten().count() == 1
            && n.b.conns.iter().all(|c| c.state == State::Free)));
    // a lingers in TIME-WAIT, then lets go.
    assert_eq!(net.a.conns[(ha & 0xff) as usize].state, State::TimeWait);
    assert!(net.until(TIME_WAIT_MS + 100, |n| !n.a.active()));
    assert!(net.now - closed_at >= TIME_WAIT_MS - 10);
    let fins = |from| {
        net.sent_by(from)
            .iter()
            .filter(|s| s.flags & TCP_FIN != 0)
            .count()
    };
    assert_eq!((fins(A), fins(B)), (1, 1));
}

#[test]
fn simultaneous_close_goes_through_closing_to_time_wait_on_both_sides() {
    let mut net = Net::new(7);
    let (ha, hb) = open(&mut net);
    let (ga, gb) = (grant(CLIENT_PORT), grant(SERVER_PORT));
    net.a.close(ga, ha).unwrap();
    net.b.close(gb, hb).unwrap();
    let slot = |h: Handle| (h & 0xff) as usize;
    let mut closing = (false, false);
    assert!(net.until(1000, |n| {
        closing.0 |= n.a.conns[slot(ha)].state == State::Closing;
        closing.1 |= n.b.conns[slot(hb)].state == State::Closing;
        n.a.conns[slot(ha)].state == State::TimeWait && n.b.conns[slot(hb)].state == State::TimeWait
    }));
    assert_eq!(closing, (true, true));
    assert!(net.until(TIME_WAIT_MS + 100, |n| !n.a.active()
        && n.b.conns.iter().all(|c| c.state == State::Free)));
}

/// A raw segment from b's address to a.
fn raw(from_port: u16, to_port: u16, seq: u32, ack: u32, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut s = std::vec![0u8; TCP_HEADER + data.len()];
    write_tcp(
        &mut s,
        B,
        A,
        (from_port, to_port),
        seq,
        ack,
        flags,
        4096,
        data,
    )
    .unwrap();
    s
}

/// Everything `tcp` sends now, parsed (as sent to b).
fn drain(tcp: &mut Tcp, now: u64) -> Vec<(u16, u16, u32, u32, u8)> {
    let mut out = [0u8; SEGMENT_MAX];
    let mut got = Vec::new();
    while let Some((to, n)) = tcp.output(now, &mut out) {
        let s = Segment::parse(&out[..n], A, to).unwrap();
        got.push((s.src_port, s.dst_port, s.seq, s.ack, s.flags));
    }
    got
}

/// QEMU's user network resends its FIN with every acknowledgement after it closed: the data is
/// old, the acknowledgement is not, and must be taken (else everything sent after is resent).
#[test]
fn an_acknowledgement_on_an_old_duplicate_segment_is_taken() {
    let mut tcp = stack(A, 21);
    let g = grant(CLIENT_PORT);
    let (p, q) = (SERVER_PORT, CLIENT_PORT);
    let h = tcp.connect(g, CLIENT_PORT, B, SERVER_PORT, 1).unwrap();
    let syn = drain(&mut tcp, 1);
    let iss = syn[0].2;
    tcp.input(B, A, &raw(p, q, 1000, iss + 1, TCP_SYN | TCP_ACK, b""), 2);
    tcp.input(B, A, &raw(p, q, 1001, iss + 1, TCP_FIN | TCP_ACK, b""), 3);
    assert_eq!(tcp.state(g, h), Ok(State::CloseWait));
    let data = pattern(3000, 1);
    tcp.send_with(g, h, data.len(), |at, run| {
        run.copy_from_slice(&data[at..at + run.len()]);
        Ok(run.len())
    })
    .unwrap();
    let sent = drain(&mut tcp, 4);
    assert!(sent.iter().any(|s| s.2 == iss + 1));
    // Its FIN again, acknowledging everything: an old segment whose acknowledgement counts.
    tcp.input(
        B,
        A,
        &raw(p, q, 1001, iss + 3001, TCP_FIN | TCP_ACK, b""),
        5,
    );
    assert_eq!(tcp.stats.rejected(Reject::OutOfWindow), 1);
    let c = &tcp.conns[(h & 0xff) as usize];
    assert_eq!((c.snd_una, c.send.len), (iss + 3001, 0));
    // Nothing is resent when the timer would have run out.
    drain(&mut tcp, 5);
    tcp.tick(5 + RTO_MAX_MS);
    assert!(drain(&mut tcp, 5 + RTO_MAX_MS).is_empty());
    assert_eq!(tcp.stats.retransmits, 0);
}

#[test]
fn segments_for_no_connection_get_a_reset_and_a_refused_connect_says_reset() {
    let mut tcp = stack(A, 9);
    // A SYN to a port nobody listens on: RST|ACK acknowledging it.
    tcp.input(B, A, &raw(1234, 80, 1000, 0, TCP_SYN, b""), 1);
    assert_eq!(drain(&mut tcp, 1), [(80, 1234, 0, 1001, TCP_RST | TCP_ACK)]);
    // An ACK for nothing: RST at its acknowledgement number. A RST: nothing.
    tcp.input(B, A, &raw(1234, 80, 5, 777, TCP_ACK, b"xyz"), 2);
    assert_eq!(drain(&mut tcp, 2), [(80, 1234, 777, 0, TCP_RST)]);
    tcp.input(B, A, &raw(1234, 80, 5, 777, TCP_RST, b""), 3);
    assert_eq!(drain(&mut tcp, 3), []);
    assert_eq!(tcp.stats.rejected(Reject::NoConnection), 3);
    assert_eq!(tcp.stats.resets_sent, 2);
    // A flood of strays is answered only as far as the queue goes.
    for i in 0..10 {
        tcp.input(B, A, &raw(1234, 80, i, 0, TCP_SYN, b""), 4);
    }
    assert_eq!(drain(&mut tcp, 4).len(), RESETS);
    assert_eq!(tcp.stats.resets_unsent, (10 - RESETS) as u64);

    // Between two stacks: a connect to a port b does not listen on fails with Reset.
    let mut net = Net::new(10);
    let g = grant(CLIENT_PORT);
    let h = net.a.connect(g, CLIENT_PORT, B, 81, 1).unwrap();
    assert!(net.until(1000, |n| n.a.established(g, h) == Err(Error::Reset)));
    assert_eq!(net.b.stats.rejected(Reject::NoConnection), 1);
    // The client releases the dead handle.
    net.a.close(g, h).unwrap();
    assert!(!net.a.active());
}

#[test]
fn an_abort_resets_the_peer_and_a_dead_peer_times_out() {
    let mut net = Net::new(12);
    let (ha, hb) = open(&mut net);
    let (ga, gb) = (grant(CLIENT_PORT), grant(SERVER_PORT));
    net.a.abort(ga, ha).unwrap();
    assert!(net.until(100, |n| n.b.state(gb, hb) == Ok(State::Dead(Error::Reset))));
    let none = |_: usize, _: &[u8]| Ok(());
    assert_eq!(net.b.recv_with(gb, hb, 10, none), Err(Error::Reset));
    assert_eq!(net.b.send_with(gb, hb, 10, |_, _| Ok(0)), Err(Error::Reset));
    assert_eq!(net.a.stats.resets_sent, 1);
    assert_eq!(net.b.stats.resets_received, 1);
    assert!(!net.a.active());

    // The peer goes silent mid-transfer: retransmissions run out, the client gets
    // Unreachable, within the bounded time the timers allow.
    let mut net = Net::new(13);
    let (ha, _) = open(&mut net);
    let mut a = End::new(ga, ha, pattern(5000, 7));
    net.faults.loss = 100;
    let start = net.now;
    assert!(net.until(200_000, |n| {
        if n.a.established(ga, ha).is_err() {
            return true;
        }
        a.pump(&mut n.a);
        false
    }));
    assert_eq!(net.a.established(ga, ha), Err(Error::Unreachable));
    assert_eq!(net.a.stats.retransmits, u64::from(RETRIES));
    assert!(net.now - start <= u64::from(RETRIES + 1) * RTO_MAX_MS);
    // A connect into the void: the handshake's retries run out.
    let h = net.a.connect(grant(5), 5, B, 7, net.now).unwrap();
    assert!(net.until(60_000, |n| n.a.established(grant(5), h).is_err()));
    assert_eq!(net.a.established(grant(5), h), Err(Error::Unreachable));
}

#[test]
fn grants_decide_listen_connect_and_who_may_reach_a_listener() {
    let mut net = Net::new(14);
    let udp_only = grant_badge(UDP_ONLY);
    for badge in [3, 0x1_0000_0002, udp_only] {
        assert_eq!(net.b.listen(badge, 7), Err(Error::MissingRight));
        assert_eq!(net.b.connect(badge, 7, A, 80, 1), Err(Error::MissingRight));
        assert_eq!(net.b.accept(badge, 7), Err(Error::MissingRight));
    }
    let g = grant(7);
    assert_eq!(net.b.listen(g, 8), Err(Error::MissingRight), "another port");
    assert_eq!(
        net.b.connect(g, 7, [10, 0, 3, 1], 80, 1),
        Err(Error::MissingRight),
        "a remote outside the grant"
    );
    assert_eq!(net.b.stats.denied, 11);
    assert_eq!(net.b.listen(g, 7), Ok(()));
    assert_eq!(net.b.listen(g, 7), Ok(()), "again: no error");
    assert_eq!(net.b.listen(grant_badge(WIDE), 7), Err(Error::Busy));
    // A listener whose grant does not reach the caller: its SYN gets RST, counted.
    let narrow = grant_badge(NARROW);
    net.b.listen(narrow, 9).unwrap();
    let h = net
        .a
        .connect(grant(CLIENT_PORT), CLIENT_PORT, B, 9, 1)
        .unwrap();
    assert!(net.until(1000, |n| n.a.established(grant(CLIENT_PORT), h)
        == Err(Error::Reset)));
    assert_eq!(net.b.stats.rejected(Reject::Denied), 1);
    assert_eq!(net.b.accept(narrow, 9), Ok(None));
}

#[test]
fn time_wait_is_recycled_when_the_pool_is_full_and_a_full_pool_resets_new_syns() {
    let mut net = Net::new(15);
    let gb = grant(SERVER_PORT);
    net.b.listen(gb, SERVER_PORT).unwrap();
    // Fill a's pool with connections b accepts; a closes them all first (TIME-WAIT on a).
    let mut handles = Vec::new();
    for p in 0..CONNS as u16 {
        let ga = grant(41000 + p);
        let h = net
            .a
            .connect(ga, 41000 + p, B, SERVER_PORT, net.now)
            .unwrap();
        let mut hb = None;
        assert!(net.until(1000, |n| {
            hb = hb.or(n.b.accept(gb, SERVER_PORT).unwrap());
            hb.is_some()
        }));
        handles.push((ga, h, hb.unwrap().handle));
    }
    assert_eq!(
        net.a.connect(grant(42000), 42000, B, SERVER_PORT, net.now),
        Err(Error::NoSpace)
    );
    // b's pool is full too: another SYN to its listener gets RST.
    let mut c = stack([10, 0, 2, 3], 99);
    let g3 = grant(43000);
    let h3 = c.connect(g3, 43000, B, SERVER_PORT, net.now).unwrap();
    let mut out = [0u8; SEGMENT_MAX];
    let (_, n) = c.output(net.now, &mut out).unwrap();
    net.b.input([10, 0, 2, 3], B, &out[..n], net.now);
    assert_eq!(net.b.stats.rejected(Reject::NoRoom), 1);
    let (to, n) = net.b.output(net.now, &mut out).unwrap();
    c.input(B, to, &out[..n], net.now);
    assert_eq!(c.established(g3, h3), Err(Error::Reset));
    for &(ga, ha, hb) in &handles {
        net.a.close(ga, ha).unwrap();
        net.b.close(gb, hb).unwrap();
    }
    assert!(net.until(1000, |n| {
        n.a.conns.iter().all(|c| c.state == State::TimeWait)
    }));
    // Every slot in TIME-WAIT: a new connection takes the oldest.
    let ga = grant(42000);
    let h = net.a.connect(ga, 42000, B, SERVER_PORT, net.now).unwrap();
    assert!(net.until(1000, |n| n.a.established(ga, h) == Ok(true)));
}

/// Hostile segments against an open connection, one rule each: refused, counted, answered as
/// TCP says, and the connection carries on.
#[test]
fn hostile_segments_are_refused_counted_and_the_connection_survives() {
    let mut net = Net::new(16);
    let (ha, hb) = open(&mut net);
    let (ga, gb) = (grant(CLIENT_PORT), grant(SERVER_PORT));
    let c = &net.a.conns[(ha & 0xff) as usize];
    let (rcv, una) = (c.rcv_nxt, c.snd_una);
    let (p, q) = (SERVER_PORT, CLIENT_PORT);
    let now = net.now;
    let cases: [(Vec<u8>, Reject); 9] = [
        (
            raw(p, q, rcv, una, TCP_SYN | TCP_FIN | TCP_ACK, b""),
            Reject::BadFlags,
        ),
        (
            raw(p, q, rcv, una, TCP_SYN | TCP_RST, b""),
            Reject::BadFlags,
        ),
        (raw(p, q, rcv, una, TCP_PSH, b"no ack"), Reject::BadFlags),
        (raw(p, q, rcv, una, TCP_SYN, b""), Reject::Challenged),
        (raw(p, q, rcv + 100, una, TCP_RST, b""), Reject::Challenged),
        (
            raw(p, q, rcv + 1_000_000, una, TCP_ACK, b"far"),
            Reject::OutOfWindow,
        ),
        (
            raw(p, q, rcv - 10, una, TCP_ACK, b"old"),
            Reject::OutOfWindow,
        ),
        (raw(p, q, rcv, una + 5000, TCP_ACK, b""), Reject::BadAck),
        (
            raw(p, q, rcv + 10, una, TCP_ACK, b"gap"),
            Reject::OutOfOrder,
        ),
    ];
    for (seg, why) in &cases {
        let before = net.a.stats.rejected(*why);
        net.a.input(B, A, seg, now);
        assert_eq!(net.a.stats.rejected(*why), before + 1, "{why:?}");
        assert_eq!(net.a.state(ga, ha), Ok(State::Established), "{why:?}");
    }
    // The answers: challenge and duplicate ACKs at the right numbers, no RST.
    let answers = drain(&mut net.a, now);
    assert!(
        answers.iter().all(|s| s.4 == TCP_ACK && s.3 == rcv),
        "{answers:?}"
    );
    // A huge window, odd options, an MSS of zero or 65535 in a SYN: no harm.
    let mut odd = raw(p, q, rcv, una, TCP_ACK, b"");
    odd[14] = 0xff;
    odd[15] = 0xff;
    odd[16] = 0;
    odd[17] = 0;
    let sum = brainix_wire::transport_checksum(B, A, brainix_wire::PROTO_TCP, &odd);
    odd[16..18].copy_from_slice(&sum.to_be_bytes());
    net.a.input(B, A, &odd, now);
    let mut syn = [0u8; 64];
    for mss in [0u16, 1, 65535] {
        let h = TcpHeader {
            ports: (1, 2000),
            seq: 5,
            ack: 0,
            flags: TCP_SYN,
            window: 65535,
            mss: Some(mss),
        };
        let n = h.write(&mut syn, B, A, &[]).unwrap();
        net.a.input(B, A, &syn[..n], now);
    }
    // A corrupted segment, a truncated one: parse drops.
    let mut bad = raw(p, q, rcv, una, TCP_ACK, b"x");
    bad[20] ^= 1;
    net.a.input(B, A, &bad, now);
    net.a.input(B, A, &bad[..10], now);
    assert_eq!(net.a.stats.drops.of(Drop::BadChecksum), 1);
    assert_eq!(net.a.stats.drops.of(Drop::Truncated), 1);
    // Still a working connection.
    let mut a = End::new(ga, ha, pattern(30_000, 8));
    let mut b = End::new(gb, hb, pattern(20_000, 9));
    exchange(&mut net, &mut a, &mut b, 30_000);
}

/// What must hold of every connection whatever arrived: sequence numbers in order, buffers
/// within their sizes, the window within the buffer.
fn check_invariants(t: &Tcp) {
    for c in t.conns.iter().filter(|c| c.state != State::Free) {
        assert!(!lt(c.snd_nxt, c.snd_una), "snd_nxt behind snd_una");
        assert!(!lt(c.snd_max, c.snd_nxt), "snd_nxt past snd_max");
        assert!(c.send.len <= SEND_BUF && c.recv.len <= RECV_BUF);
        assert!(c.window() as usize <= RECV_BUF);
        assert!(c.mss >= MIN_MSS && c.mss <= MSS);
        if c.synchronized() {
            let in_flight = c.snd_max.wrapping_sub(c.snd_una) as usize;
            assert!(
                in_flight <= c.send.len + 2,
                "{in_flight} in flight, {} held",
                c.send.len
            );
        }
    }
}

/// One hostile segment towards `target` (a or b, whose connection is `h`): random flags,
/// sequence and acknowledgement numbers (near the right ones unless `blind`), data, options,
/// ports, corruption.
fn hostile(rng: &mut Prng, net: &Net, target: Ipv4Addr, h: Handle, blind: bool) -> Vec<u8> {
    let (from, ports) = if target == A {
        (B, (SERVER_PORT, CLIENT_PORT))
    } else {
        (A, (CLIENT_PORT, SERVER_PORT))
    };
    let c = &if target == A { &net.a } else { &net.b }.conns[h as usize & 0xff];
    let mut near = |x: u32| match rng.below(4) {
        _ if blind => x.wrapping_add(100_000 + rng.below(1 << 31) as u32),
        0 => x,
        1 => x.wrapping_add(rng.below(20_000) as u32),
        2 => x.wrapping_sub(rng.below(20_000) as u32),
        _ => rng.next_u64() as u32,
    };
    let (seq, ack) = (near(c.rcv_nxt), near(c.snd_una));
    let ports = if rng.percent(90) {
        ports
    } else {
        (rng.next_u64() as u16, rng.next_u64() as u16)
    };
    let data = pattern(rng.below(1500), rng.next_u64());
    let mut h = TcpHeader {
        ports,
        seq,
        ack,
        flags: rng.next_u64() as u8,
        window: rng.next_u64() as u16,
        mss: rng.percent(20).then(|| rng.next_u64() as u16),
    };
    if rng.percent(30) {
        // Mostly-sane flags make the deeper paths reachable.
        h.flags &= TCP_ACK | TCP_FIN | TCP_PSH | if rng.percent(5) { TCP_RST } else { 0 };
    }
    let mut buf = [0u8; 1600];
    let n = h.write(&mut buf, from, target, &data).unwrap();
    let mut seg = buf[..n].to_vec();
    if rng.percent(10) {
        let i = rng.below(n);
        seg[i] ^= 1 << rng.below(8);
    }
    if rng.percent(5) {
        seg.truncate(rng.below(n));
    }
    seg
}

/// Many seeded random segments thrown at both ends of a connection in the middle of a
/// transfer, 2,500 per round. Near the right numbers, some are TCP's to take (data at exactly
/// the next sequence number, a RST there, an acknowledgement in window: what only a secret
/// sequence number prevents), so those rounds only check that nothing panics and every
/// connection stays consistent. Blind (numbers outside the window), every segment is refused
/// and counted and every transfer arrives intact.
#[test]
fn seeded_random_hostile_segments_never_panic_and_are_counted() {
    let mut rng = Prng(0x7c9_2025);
    for round in 0..60u64 {
        let blind = round % 2 == 1;
        let mut net = Net::new(100 + round);
        let (ha, hb) = open(&mut net);
        let (ga, gb) = (grant(CLIENT_PORT), grant(SERVER_PORT));
        let mut a = End::new(ga, ha, pattern(20_000, round));
        let mut b = End::new(gb, hb, pattern(20_000, !round));
        let hostile_segments = 2500;
        for _ in 0..hostile_segments {
            let (target, from, h) = if rng.percent(50) {
                (A, B, ha)
            } else {
                (B, A, hb)
            };
            let seg = hostile(&mut rng, &net, target, h, blind);
            let now = net.now;
            net.stack(target).input(from, target, &seg, now);
            check_invariants(&net.a);
            check_invariants(&net.b);
            if rng.percent(20) {
                // Real traffic in between.
                a.pump(&mut net.a);
                b.pump(&mut net.b);
                net.step();
            }
        }
        let over = |t: &Tcp, g, h| !matches!(t.state(g, h), Ok(State::Established));
        let done = net.until(120_000, |n| {
            check_invariants(&n.a);
            check_invariants(&n.b);
            if over(&n.a, ga, ha) || over(&n.b, gb, hb) || a.eof || b.eof {
                return true;
            }
            a.pump(&mut n.a);
            b.pump(&mut n.b);
            a.got.len() >= b.out.len() && b.got.len() >= a.out.len()
        });
        let (sa, sb) = (net.a.stats, net.b.stats);
        assert!(sa.segments_in + sb.segments_in > hostile_segments);
        if blind {
            assert!(done, "round {round}: stuck: {sa:?} {sb:?}");
            assert_eq!((a.error, b.error), (None, None), "round {round}");
            assert!(
                b.got == a.out && a.got == b.out,
                "round {round}: data differs"
            );
            let refused = sa.refused() + sb.refused();
            assert!(
                refused >= hostile_segments,
                "round {round}: {refused} refused"
            );
        }
    }
}
