//! The chain of network servers against the combined server, in one boot: QEMU with two
//! network cards, each on a user network of its own with its own host forwardings. The first is
//! the link server's (link → ip → transport → udp-echo, tcp-echo), the second the combined
//! server's (one process → udp-echo-combined, tcp-echo-combined); the same echo programs with
//! the same grants answer on each. The host's traffic alternates between them (UDP in batches,
//! TCP connection by connection), so that both see the same machine load, and the test prints
//! each one's UDP round trips and TCP throughput. It asserts only what it can know: every echo
//! byte for byte. Timings are printed, never asserted.
//!
//! A board with one network card is not changed by the combined server: it is not launched.
//!
//! Needs the images from `cargo xtask build`.

use brainix_testkit::{
    Boot, Session, free_tcp_port, free_udp_port, has_line, image, pattern, tcp_echo_connect,
    tcp_echo_over, udp_echo_socket,
};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

/// The tests here boot one at a time: a second QEMU on the same cores would skew the timings.
static ONE_BOOT: std::sync::Mutex<()> = std::sync::Mutex::new(());

const PROMPT: &str = "brainix> ";
const BOOT: Duration = Duration::from_secs(60);
const REPLY: Duration = Duration::from_secs(30);

/// The guest's UDP and TCP echo port (udp-echo's and tcp-echo's grants).
const ECHO_PORT: u16 = 7;

/// The first card's address: the link server's.
const CHAIN_MAC: &str = "52:54:00:be:ef:01";

fn the_link_server_has_the_first_card(s: &Session) {
    let ready = format!("[net] virtio-net ready: mac {CHAIN_MAC}");
    assert!(
        s.console().contains(&ready),
        "{ready:?} missing:\n{}",
        s.console()
    );
}

/// The host ports forwarded to one guest port, one per network stack.
#[derive(Clone, Copy)]
struct Forward {
    chain: u16,
    combined: u16,
}

/// The test system with both network stacks running and their UDP echo servers bound; each
/// card forwards a host UDP and a host TCP port to the echo port.
struct TwoStacks {
    s: Session,
    udp: Forward,
    tcp: Forward,
}

/// Boots with two network cards: the first (index 0) the chain's, the second (index 1) the
/// combined server's. The TCP echo servers are not started here: a TCP listener changes how the
/// servers wait (they poll the network), and the UDP round trips are measured without one.
fn boot_two_stacks() -> TwoStacks {
    let udp = Forward {
        chain: free_udp_port(),
        combined: free_udp_port(),
    };
    let tcp = Forward {
        chain: free_tcp_port(),
        combined: free_tcp_port(),
    };
    let netdev = |id: &str, udp: u16, tcp: u16| {
        format!(
            "user,id={id},hostfwd=udp:127.0.0.1:{udp}-:{ECHO_PORT},\
             hostfwd=tcp:127.0.0.1:{tcp}-:{ECHO_PORT}"
        )
    };
    let n0 = netdev("n0", udp.chain, tcp.chain);
    let n1 = netdev("n1", udp.combined, tcp.combined);
    let mut s = Boot::new(image("brainix-kernel-test.elf"))
        .machine("q35")
        .nic(CHAIN_MAC, &n0)
        .nic("52:54:00:be:ef:02", &n1)
        .spawn();
    s.expect(PROMPT, BOOT);
    the_link_server_has_the_first_card(&s);
    let from = s.start_all(&["ip", "transport", "udp-echo"], PROMPT, REPLY);
    s.wait_for_line(from, "UDP-ECHO bound 7", REPLY);
    let from = s.start_all(&["combined", "udp-echo-combined"], PROMPT, REPLY);
    assert_eq!(
        s.wait_for_line(from, "[combined] virtio-net mac", REPLY),
        "[combined] virtio-net mac 52:54:00:be:ef:02, ip 10.0.2.15/24 gateway 10.0.2.2: \
         link, ip and transport in one process"
    );
    s.wait_for_line(from, "UDP-ECHO bound 7", REPLY);
    TwoStacks { s, udp, tcp }
}

/// Datagram `i` of a batch: 8 to about 1000 bytes, each different.
fn datagram(round: usize, i: usize) -> Vec<u8> {
    let mut d = format!("r{round} d{i:02} ").into_bytes();
    d.resize(8 + (i * 41 + round * 7) % 992, b'a' + (i % 26) as u8);
    d
}

/// Sends `count` datagrams one after the other through `host`, each answered byte for byte
/// before the next goes; adds each round trip to `rtts`.
fn echo_batch(
    host: &UdpSocket,
    what: &str,
    round: usize,
    count: usize,
    rtts: &mut Vec<Duration>,
    s: &Session,
) {
    let mut buf = [0u8; 2048];
    for i in 0..count {
        let msg = datagram(round, i);
        let t = Instant::now();
        host.send(&msg).unwrap();
        let n = host.recv(&mut buf).unwrap_or_else(|e| {
            panic!(
                "{what}: round {round} datagram {i} not echoed ({e}):\n{}",
                s.console()
            )
        });
        rtts.push(t.elapsed());
        assert!(
            buf[..n] == msg[..],
            "{what}: round {round} datagram {i}: {n} bytes back, not the {} sent",
            msg.len()
        );
    }
}

/// Median and 99th percentile of a set of samples.
struct Spread {
    median: Duration,
    p99: Duration,
}

fn spread(samples: &mut [Duration]) -> Spread {
    assert!(!samples.is_empty());
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Spread {
        median: at(0.5),
        p99: at(0.99),
    }
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

/// UDP echo round trips through each stack: batches of datagrams alternating between them;
/// prints their medians and 99th percentiles.
fn udp_round_trips(s: &Session, udp: Forward) {
    let chain = udp_echo_socket(udp.chain, s, REPLY);
    let combined = udp_echo_socket(udp.combined, s, REPLY);
    const ROUNDS: usize = 20;
    const BATCH: usize = 25;
    let paths = [(&chain, "chain"), (&combined, "combined")];
    let mut rtts = [Vec::new(), Vec::new()];
    for round in 0..ROUNDS {
        // Alternate which goes first, so neither always follows the other's traffic.
        for k in 0..paths.len() {
            let which = (round + k) % paths.len();
            let (host, what) = paths[which];
            echo_batch(host, what, round, BATCH, &mut rtts[which], s);
        }
    }
    let n = ROUNDS * BATCH;
    let [through_chain, through_combined] = &mut rtts;
    let c = spread(through_chain);
    let one = spread(through_combined);
    eprintln!(
        "UDP echo round trip host<->guest, {n} datagrams of 8 to 1000 bytes each way, \
         interleaved in batches of {BATCH}:\n  \
         chain (link, ip, transport servers): median {:?}, p99 {:?}\n  \
         combined server:                     median {:?}, p99 {:?}\n  \
         chain / combined: median {:.2}x, p99 {:.2}x",
        c.median,
        c.p99,
        one.median,
        one.p99,
        ratio(c.median, one.median),
        ratio(c.p99, one.p99)
    );
    // Neither echo server saw a call fail.
    let console = s.console();
    assert!(!console.contains("UDP-ECHO error"), "{console}");
}

/// Starts `program` (a tcp-echo) and waits until it listens.
fn start_tcp_echo(s: &mut Session, program: &str) {
    let from = s.start_all(&[program], PROMPT, REPLY);
    s.wait_for_line(from, "TCP-ECHO listening 7", REPLY);
}

/// One TCP echo of `len` bytes through host port `port`, on a connection of its own: the bytes
/// per second, host → guest → host (the host writes while it reads the echo), timed from the
/// connection's first echoed byte to the echo's end. Asserts that every byte came back, and that
/// the echo server counted them all (the probe byte too) and closed.
fn tcp_echo_rate(s: &Session, what: &str, port: u16, len: usize, salt: u8) -> f64 {
    let from = s.console().len();
    let c = tcp_echo_connect(port, s, REPLY);
    let data = pattern(len, salt);
    let t = Instant::now();
    let back = tcp_echo_over(c, &data);
    let elapsed = t.elapsed();
    assert_eq!(back.len(), len, "{what}: {len} bytes, {} back", back.len());
    assert!(back == data, "{what}: {len} bytes differ");
    s.wait_for_line(
        from,
        &format!("TCP-ECHO closed after {} bytes", len + 1),
        REPLY,
    );
    len as f64 / elapsed.as_secs_f64()
}

/// Median, minimum and maximum of a set of rates, in MiB/s.
struct Rates {
    median: f64,
    min: f64,
    max: f64,
}

fn rates(samples: &mut [f64]) -> Rates {
    assert!(!samples.is_empty());
    samples.sort_by(f64::total_cmp);
    let mib = |r: f64| r / f64::from(1 << 20);
    Rates {
        median: mib(samples[samples.len() / 2]),
        min: mib(samples[0]),
        max: mib(samples[samples.len() - 1]),
    }
}

/// TCP echo throughput through each stack: connections of each size, alternating between the
/// stacks; prints medians, minima and maxima and the echo servers' TCP counters.
fn tcp_throughput(s: &mut Session, tcp: Forward) {
    start_tcp_echo(s, "tcp-echo");
    start_tcp_echo(s, "tcp-echo-combined");
    // First with the UDP echo servers bound, each waiting in a receive (parked in the server):
    // it must not hold up the TCP client's calls.
    let len = 256 << 10;
    let beside = [(tcp.chain, "chain"), (tcp.combined, "combined")]
        .map(|(port, what)| tcp_echo_rate(s, what, port, len, 0xee) / f64::from(1 << 20));
    eprintln!(
        "TCP echo throughput with a UDP echo server waiting in a receive on the same server, \
         {} KiB: chain {:.2} MiB/s, combined {:.2} MiB/s",
        len >> 10,
        beside[0],
        beside[1]
    );
    // Then alone, as in the transport server's own test.
    s.stop("udp-echo", PROMPT, REPLY);
    s.stop("udp-echo-combined", PROMPT, REPLY);
    const ROUNDS: usize = 7;
    const SIZES: [usize; 2] = [64 << 10, 1 << 20];
    let paths = [(tcp.chain, "chain"), (tcp.combined, "combined")];
    // Per size, per path.
    let mut samples = [[Vec::new(), Vec::new()], [Vec::new(), Vec::new()]];
    let mut counters = [String::new(), String::new()];
    for round in 0..ROUNDS {
        for k in 0..paths.len() {
            let which = (round + k) % paths.len();
            let (port, what) = paths[which];
            for (i, &len) in SIZES.iter().enumerate() {
                let salt = (round * SIZES.len() + i) as u8;
                samples[i][which].push(tcp_echo_rate(s, what, port, len, salt));
            }
            // The server's counters after this path's last connection (retransmissions).
            let console = s.console();
            let closed = console
                .lines()
                .rfind(|l| l.starts_with("TCP-ECHO closed after"));
            counters[which] = closed.unwrap_or_default().trim_end().to_owned();
        }
    }
    let mut report = format!(
        "TCP echo throughput host->guest->host (the host writes while it reads the echo), \
         {ROUNDS} connections per size and stack, alternating:"
    );
    for (i, len) in SIZES.iter().enumerate() {
        let [through_chain, through_combined] = &mut samples[i];
        let c = rates(through_chain);
        let one = rates(through_combined);
        report += &format!(
            "\n  {} KiB: chain (link, ip, transport servers): median {:.2} MiB/s (min {:.2}, max {:.2})\
             \n  {} KiB: combined server:                     median {:.2} MiB/s (min {:.2}, max {:.2})\
             \n  {} KiB: combined / chain: median {:.2}x",
            len >> 10,
            c.median,
            c.min,
            c.max,
            len >> 10,
            one.median,
            one.min,
            one.max,
            len >> 10,
            one.median / c.median
        );
    }
    eprintln!("{report}");
    eprintln!("  chain's tcp-echo, last connection: {}", counters[0]);
    eprintln!("  combined's tcp-echo, last connection: {}", counters[1]);
    let console = s.console();
    assert!(!console.contains("TCP-ECHO error"), "{console}");
}

#[test]
fn udp_round_trips_and_tcp_throughput_through_the_chain_and_the_combined_server_in_one_run() {
    let _one = ONE_BOOT.lock().unwrap_or_else(|e| e.into_inner());
    let TwoStacks { mut s, udp, tcp } = boot_two_stacks();
    udp_round_trips(&s, udp);
    tcp_throughput(&mut s, tcp);
}

#[test]
fn with_one_network_card_the_combined_server_is_not_launched_and_the_chain_serves() {
    let _one = ONE_BOOT.lock().unwrap_or_else(|e| e.into_inner());
    let mut s = Boot::new(image("brainix-kernel-test.elf"))
        .machine("q35")
        .nic(CHAIN_MAC, "user,id=n0")
        .spawn();
    s.expect(PROMPT, BOOT);
    the_link_server_has_the_first_card(&s);
    // Started on request only, and then the kernel refuses: its card is not on this machine.
    let from = s.console().len();
    let out = s.command("start combined", PROMPT, REPLY);
    assert!(out.contains("error: start combined: "), "{out}");
    let refused = s.wait_for_line(from, "brainix: cannot launch combined ", REPLY);
    assert!(
        refused.ends_with(
            "capability slot 4: no PCI device 1af4:1041 or 1af4:1000 #1 on this machine"
        ),
        "{refused}"
    );
    // The chain on the one card is as before.
    let from = s.console().len();
    s.command("start ip", PROMPT, REPLY);
    s.wait_for_line(from, "[ip] ip 10.0.2.15/24", REPLY);
    let out = s.command("ping 10.0.2.2", PROMPT, REPLY);
    assert!(has_line(&out, "ping 10.0.2.2: 3 sent, 3 received"), "{out}");
}
