//! The transport server under QEMU: a UDP and a TCP echo server in the guest answer the host
//! through the user network's host forwarding (host → QEMU → link → ip → transport → udp-echo
//! or tcp-echo and back), and processes without a grant, or with a grant that does not reach,
//! are refused with no packet of theirs on the wire (QEMU's `filter-dump` capture, read back
//! here); a stopped transport server fails its client with an error, and restarted, serves it
//! again.
//!
//! Needs the images from `cargo xtask build`.

use brainix_testkit::{
    Boot, Scratch, Session, free_tcp_port, free_udp_port, image, pattern, tcp_echo_connect,
    tcp_echo_over, udp_echo_socket,
};
use brainix_wire::{ETHERTYPE_IPV4, Ethernet, Ipv4, PROTO_TCP, PROTO_UDP, Tcp, Udp};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

const PROMPT: &str = "brainix> ";
const BOOT: Duration = Duration::from_secs(60);
const REPLY: Duration = Duration::from_secs(30);

/// A transport-layer message seen in a capture.
#[derive(Debug)]
struct Seen {
    proto: u8,
    src: [u8; 4],
    src_port: u16,
    dst: [u8; 4],
    dst_port: u16,
}

/// Every UDP datagram and TCP segment in a pcap file whose checksums verify.
fn transport_in_capture(pcap: &[u8]) -> Vec<Seen> {
    assert!(pcap.len() >= 24, "no pcap header");
    assert_eq!(
        &pcap[..4],
        &0xa1b2c3d4u32.to_le_bytes(),
        "not a little-endian pcap"
    );
    let mut at = 24;
    let mut out = Vec::new();
    while at + 16 <= pcap.len() {
        let caplen = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
        let frame = &pcap[at + 16..(at + 16 + caplen).min(pcap.len())];
        at += 16 + caplen;
        let Ok(eth) = Ethernet::parse(frame, 1514) else {
            continue;
        };
        if eth.ethertype != ETHERTYPE_IPV4 {
            continue;
        }
        let Ok(ip) = Ipv4::parse(eth.payload) else {
            continue;
        };
        let ports = match ip.proto {
            PROTO_UDP => Udp::parse(ip.payload, ip.src, ip.dst).map(|u| (u.src_port, u.dst_port)),
            PROTO_TCP => Tcp::parse(ip.payload, ip.src, ip.dst).map(|t| (t.src_port, t.dst_port)),
            _ => continue,
        };
        if let Ok((src_port, dst_port)) = ports {
            out.push(Seen {
                proto: ip.proto,
                src: ip.src,
                src_port,
                dst: ip.dst,
                dst_port,
            });
        }
    }
    out
}

/// What the capture in `pcap` holds of IP protocol `proto`: how many messages the guest's port 7
/// sent and received, and every one to port 9999 (the probes' target, which nothing may reach).
fn echo_in_capture(pcap: &Scratch, proto: u8) -> (usize, usize, Vec<Seen>) {
    let guest = [10, 0, 2, 15];
    let seen = transport_in_capture(&std::fs::read(&pcap.0).expect("the capture"));
    let seen = seen.into_iter().filter(|d| d.proto == proto);
    let (mut from, mut to, mut leaked) = (0, 0, Vec::new());
    for d in seen {
        from += usize::from(d.src == guest && d.src_port == 7);
        to += usize::from(d.dst == guest && d.dst_port == 7);
        if d.dst_port == 9999 {
            leaked.push(d);
        }
    }
    (from, to, leaked)
}

/// Boots the test system on QEMU's user network with the host forwarding `hostfwd`, capturing
/// into `pcap`, and starts the IP and transport servers and `echo`.
fn boot(hostfwd: &str, pcap: &Scratch, echo: &str) -> Session {
    let netdev = format!("user,id=n0,hostfwd={hostfwd}");
    let dump = format!("filter-dump,id=f0,netdev=n0,file={}", pcap.0.display());
    let mut s = Boot::new(image("brainix-kernel-test.elf"))
        .machine("q35")
        .nic("52:54:00:be:ef:01", &netdev)
        .args(&["-object", &dump])
        .spawn();
    s.expect(PROMPT, BOOT);
    s.start_all(&["ip", "transport", echo], PROMPT, REPLY);
    s
}

#[test]
fn udp_echo_answers_the_host_and_ungranted_senders_are_refused_without_a_packet() {
    let pcap = Scratch::new("udp-echo.pcap");
    let port = free_udp_port();
    let mut s = boot(&format!("udp:127.0.0.1:{port}-:7"), &pcap, "udp-echo");
    s.wait_for_line(0, "UDP-ECHO bound 7", REPLY);

    // The host's side: once the first echo came back, every one must, byte for byte.
    let host = udp_echo_socket(port, &s, REPLY);
    let mut buf = [0u8; 2048];
    let mut rtts = Vec::new();
    for i in 0..50u32 {
        let msg = format!("datagram {i} {}", "x".repeat(i as usize * 20));
        let t = Instant::now();
        host.send(msg.as_bytes()).unwrap();
        let n = host
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("datagram {i} not echoed ({e}):\n{}", s.console()));
        rtts.push(t.elapsed());
        assert_eq!(&buf[..n], msg.as_bytes(), "datagram {i}");
    }
    rtts.sort();
    eprintln!(
        "UDP echo round trip host<->guest over 50 datagrams (8 to 1000 bytes): min {:?}, median {:?}, max {:?}",
        rtts[0], rtts[25], rtts[49]
    );

    // No grant: refused everything. A narrow grant (port 9, towards port 53 on 10.0.2.0/24):
    // binds 9; its datagram to 10.0.2.2:9999 is refused for the remote port.
    let from = s.console().len();
    s.command("start udp-probe", PROMPT, REPLY);
    s.wait_for_line(from, "UDP-PROBE done", REPLY);
    let out = &s.console()[from..];
    for line in [
        "UDP-PROBE bind 7 REFUSED missing-right",
        "UDP-PROBE send 7 REFUSED missing-right",
        "UDP-PROBE bind 9 REFUSED missing-right",
        "UDP-PROBE send 9 REFUSED missing-right",
    ] {
        assert!(out.contains(line), "{line:?} missing:\n{out}");
    }
    let from = s.console().len();
    s.command("start udp-probe-narrow", PROMPT, REPLY);
    s.wait_for_line(from, "UDP-PROBE done", REPLY);
    let out = &s.console()[from..];
    for line in [
        "UDP-PROBE bind 7 REFUSED missing-right",
        "UDP-PROBE send 7 REFUSED missing-right",
        "UDP-PROBE bind 9 OK",
        "UDP-PROBE send 9 REFUSED missing-right",
    ] {
        assert!(out.contains(line), "{line:?} missing:\n{out}");
    }
    // The transport server counted every refusal: four, then three.
    let denied = s.wait_for_line(from, "[transport] denied: ", REPLY);
    std::thread::sleep(Duration::from_millis(300));
    let console = s.console();
    let denied = console[from..]
        .lines()
        .rfind(|l| l.starts_with("[transport] denied: "))
        .unwrap_or(&denied)
        .to_owned();
    assert!(
        denied.ends_with("(denied so far: 7)"),
        "{denied}\n{console}"
    );
    // udp-probe-narrow's socket is the second in the manifest: grant 1.
    let narrow = brainix_proto::transport::grant_badge(1);
    assert!(
        denied.starts_with(&format!("[transport] denied: badge {narrow:#x}")),
        "{denied}"
    );
    // The echo server still answers.
    host.send(b"after").unwrap();
    let n = host.recv(&mut buf).expect("echo after the refusals");
    assert_eq!(&buf[..n], b"after");

    // Containment: the transport server stopped, its client gets an error (not a hang) and
    // the host no echo; restarted, the client binds again and the echo comes back. The IP and
    // link servers and the kernel carry on throughout.
    let from = s.console().len();
    s.stop("transport", PROMPT, REPLY);
    s.wait_for_line(from, "UDP-ECHO error recv: peer-dead", REPLY);
    host.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    host.send(b"while down").unwrap();
    assert!(
        host.recv(&mut buf).is_err(),
        "an echo with no transport server"
    );
    let from = s.console().len();
    s.command("start transport", PROMPT, REPLY);
    s.wait_for_line(from, "UDP-ECHO bound 7", REPLY);
    host.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    host.send(b"after restart").unwrap();
    let mut n = host.recv(&mut buf).expect("echo after the restart");
    // The datagram sent while it was down waited in the IP server's queue, and may come first.
    if &buf[..n] == b"while down" {
        n = host.recv(&mut buf).expect("echo after the restart");
    }
    assert_eq!(&buf[..n], b"after restart");
    let out = s.command("ping 10.0.2.2", PROMPT, REPLY);
    assert!(out.contains("ping 10.0.2.2: 3 sent, 3 received"), "{out}");
    drop(s);

    // The capture holds the echo traffic both ways, and nothing for the probes' port 9999.
    let (echoed, asked, leaked) = echo_in_capture(&pcap, PROTO_UDP);
    assert!(
        echoed >= 52 && asked >= echoed,
        "{echoed} echoed, {asked} asked"
    );
    assert!(
        leaked.is_empty(),
        "refused datagrams on the wire: {leaked:?}"
    );
}

#[test]
fn tcp_echo_answers_the_host_byte_for_byte_and_a_client_without_a_tcp_grant_sends_nothing() {
    let pcap = Scratch::new("tcp-echo.pcap");
    let port = free_tcp_port();
    let mut s = boot(&format!("tcp:127.0.0.1:{port}-:7"), &pcap, "tcp-echo");
    s.wait_for_line(0, "TCP-ECHO listening 7", REPLY);

    // Connections one after another, payloads of many sizes (a segment, one byte over, many
    // windows' worth): each written whole, the host's half closed, the echo read to its end.
    let mut conns = 0;
    for (i, len) in [1, 100, 1460, 1461, 8192, 8193, 65_536, 300_001]
        .into_iter()
        .enumerate()
    {
        let c = tcp_echo_connect(port, &s, REPLY);
        let data = pattern(len, i as u8);
        let back = tcp_echo_over(c, &data);
        assert_eq!(back.len(), len, "{len} bytes: {} back", back.len());
        assert!(back == data, "{len} bytes differ");
        conns += 1;
    }
    let from = s.console().len();
    s.wait_for_line(0, "TCP-ECHO closed after 300002 bytes", REPLY);

    // Throughput, host -> guest -> host: 1 MiB echoed, five runs.
    let mut rates = Vec::new();
    for run in 0..5u8 {
        let c = tcp_echo_connect(port, &s, REPLY);
        let data = pattern(1 << 20, run);
        let t = Instant::now();
        let back = tcp_echo_over(c, &data);
        let elapsed = t.elapsed();
        assert!(back == data, "run {run}");
        rates.push((1 << 20) as f64 / elapsed.as_secs_f64() / (1 << 20) as f64);
        conns += 1;
    }
    rates.sort_by(f64::total_cmp);
    let counters = s.wait_for_line(0, "TCP-ECHO closed after 1048577 bytes", REPLY);
    eprintln!("{counters}");
    eprintln!(
        "TCP echo throughput host->guest->host, 1 MiB each way, 5 runs: median {:.2} MiB/s (min {:.2}, max {:.2})",
        rates[2], rates[0], rates[4]
    );

    // The host resets a connection mid-stream: the echo program hears of it and goes on.
    let c = tcp_echo_connect(port, &s, REPLY);
    let fd = std::os::fd::AsRawFd::as_raw_fd(&c);
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `fd` is the open socket `c` owns; the option value is a live `linger`, its size
    // given.
    let set = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(set, 0);
    drop(c);
    s.wait_for_line(from, "TCP-ECHO error echo: connection-reset", REPLY);
    conns += 1;
    let mut c = tcp_echo_connect(port, &s, REPLY);
    c.write_all(b"after the reset").unwrap();
    let mut b = [0u8; 15];
    c.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"after the reset");
    drop(c);
    conns += 1;
    let accepted = s.console()[..]
        .matches("TCP-ECHO accepted 10.0.2.2:")
        .count();
    assert!(accepted >= conns, "{accepted} accepted, {conns} made");

    // Without a TCP grant: refused, counted, and no SYN of it leaves.
    let from = s.console().len();
    s.command("start tcp-probe", PROMPT, REPLY);
    s.wait_for_line(from, "TCP-PROBE done", REPLY);
    let out = &s.console()[from..];
    for line in [
        "TCP-PROBE listen 7 REFUSED missing-right",
        "TCP-PROBE connect 7 REFUSED missing-right",
    ] {
        assert!(out.contains(line), "{line:?} missing:\n{out}");
    }
    s.wait_for_line(from, "(denied so far: 2)", REPLY);

    // Containment: the transport server stopped, the echo program's call fails (no hang);
    // restarted, it listens again and the host connects again.
    let from = s.console().len();
    s.stop("transport", PROMPT, REPLY);
    s.wait_for_line(from, "TCP-ECHO error accept: peer-dead", REPLY);
    let from = s.console().len();
    s.command("start transport", PROMPT, REPLY);
    s.wait_for_line(from, "TCP-ECHO listening 7", REPLY);
    let c = tcp_echo_connect(port, &s, REPLY);
    let back = tcp_echo_over(c, b"after restart");
    assert_eq!(back, b"after restart");

    // Crashed with a connection open: a page fault kills the transport server, the supervisor
    // restarts it on its own, the echo program's call fails (no hang) and it listens again. The
    // host's connection died with the server: its next write ends it (the new server resets
    // QEMU's side, and QEMU closes or resets the host's), rather than meeting silence. The IP
    // server is not restarted, and the guest still pings.
    let mut open = tcp_echo_connect(port, &s, REPLY);
    open.write_all(b"before the crash").unwrap();
    let mut b = [0u8; 16];
    open.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"before the crash");
    let from = s.console().len();
    s.command("start crash-transport", PROMPT, REPLY);
    let wait = |s: &Session, needle: &str| s.wait_for_line(from, needle, REPLY);
    assert_eq!(s.crashed_and_restarted(from, "transport", REPLY), 3);
    assert_eq!(
        wait(&s, "CRASH-TRANSPORT "),
        "CRASH-TRANSPORT reply=peer-dead"
    );
    wait(&s, "TCP-ECHO error ");
    wait(&s, "TCP-ECHO listening 7");
    open.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = open.write_all(b"after the crash");
    let mut rest = Vec::new();
    let ended = open.read_to_end(&mut rest);
    let closed = match &ended {
        Ok(0) => rest.is_empty(),
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    };
    assert!(
        closed,
        "the old connection after the crash: {ended:?}, read {rest:?}"
    );
    let back = tcp_echo_over(tcp_echo_connect(port, &s, REPLY), b"after the crash");
    assert_eq!(back, b"after the crash");
    let out = s.command("ping 10.0.2.2", PROMPT, REPLY);
    assert!(out.contains("ping 10.0.2.2: 3 sent, 3 received"), "{out}");
    assert!(
        !s.console()[from..].contains("brainix: launched ip "),
        "the IP server was restarted:\n{}",
        &s.console()[from..]
    );
    drop(s);

    // The capture: the echo traffic both ways, and nothing to the probe's port 9999.
    let (from_echo, to_echo, leaked) = echo_in_capture(&pcap, PROTO_TCP);
    assert!(
        from_echo > 1000 && to_echo > 1000,
        "{from_echo} from, {to_echo} to the echo"
    );
    assert!(
        leaked.is_empty(),
        "refused segments on the wire: {leaked:?}"
    );
}
