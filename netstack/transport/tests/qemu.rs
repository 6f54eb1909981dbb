//! The transport server under QEMU: a UDP echo server in the guest answers the host through
//! the user network's host forwarding (host → QEMU → link → ip → transport → udp-echo and
//! back), and processes without a grant, or with a grant that does not reach, are refused with
//! no packet of theirs on the wire (QEMU's `filter-dump` capture, read back here); a stopped
//! transport server fails its client with an error, and restarted, serves it again.
//!
//! Needs the images from `cargo xtask build`.

use brainix_testkit::{Boot, Scratch, free_udp_port, image, udp_echo_socket};
use brainix_wire::{ETHERTYPE_IPV4, Ethernet, Ipv4, PROTO_UDP, Udp};
use std::time::{Duration, Instant};

const PROMPT: &str = "brainix> ";
const BOOT: Duration = Duration::from_secs(60);
const REPLY: Duration = Duration::from_secs(30);

/// Every UDP datagram in a pcap file: (source, source port, destination, destination port).
fn udp_in_capture(pcap: &[u8]) -> Vec<([u8; 4], u16, [u8; 4], u16)> {
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
        if ip.proto == PROTO_UDP
            && let Ok(u) = Udp::parse(ip.payload, ip.src, ip.dst)
        {
            out.push((ip.src, u.src_port, ip.dst, u.dst_port));
        }
    }
    out
}

#[test]
fn udp_echo_answers_the_host_and_ungranted_senders_are_refused_without_a_packet() {
    let pcap = Scratch::new("udp-echo.pcap");
    let port = free_udp_port();
    let netdev = format!("user,id=n0,hostfwd=udp:127.0.0.1:{port}-:7");
    let dump = format!("filter-dump,id=f0,netdev=n0,file={}", pcap.0.display());
    let mut s = Boot::new(image("brainix-kernel-test.elf"))
        .machine("q35")
        .nic("52:54:00:be:ef:01", &netdev)
        .args(&["-object", &dump])
        .spawn();
    s.expect(PROMPT, BOOT);
    let from = s.start_all(&["ip", "transport", "udp-echo"], PROMPT, REPLY);
    s.wait_for_line(from, "UDP-ECHO bound 7", REPLY);

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
    let console = s.console();
    let pid: u64 = console
        .lines()
        .find_map(|l| l.strip_prefix("brainix: launched transport (pid "))
        .and_then(|l| l.split(',').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no transport pid:\n{console}"));
    let from = s.console().len();
    let out = s.command(&format!("kill {pid}"), PROMPT, REPLY);
    assert!(out.contains(&format!("stopped pid {pid}")), "{out}");
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
    let udp = udp_in_capture(&std::fs::read(&pcap.0).expect("the capture"));
    let guest = [10, 0, 2, 15];
    let echoed = udp.iter().filter(|d| d.0 == guest && d.1 == 7).count();
    let asked = udp.iter().filter(|d| d.2 == guest && d.3 == 7).count();
    assert!(
        echoed >= 52 && asked >= echoed,
        "{echoed} echoed, {asked} asked"
    );
    let leaked: Vec<_> = udp.iter().filter(|d| d.3 == 9999).collect();
    assert!(
        leaked.is_empty(),
        "refused datagrams on the wire: {leaked:?}"
    );
}
