//! The IP server under QEMU with a user-mode network: the guest pings the user network's
//! gateway through ip → link → device and back, an address nobody holds times out, and the
//! counters show what crossed. Containment: the IP server stopped, and then crashed, while UDP
//! echo traffic flows through it: the transport server's client gets an error, not a hang; the
//! link server and the kernel carry on; restarted, the IP server serves ping and echo again.
//!
//! Needs the images from `cargo xtask build` (the IP server is in the test system).

use brainix_testkit::{Boot, PsRow, Session, free_udp_port, has_line, image, udp_echo_socket};
use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const PROMPT: &str = "brainix> ";
const BOOT: Duration = Duration::from_secs(60);
const REPLY: Duration = Duration::from_secs(30);

/// The test system on q35 with a virtio network card on QEMU's user network, the IP server
/// started.
fn boot(netdev: &str) -> Session {
    let mut s = Boot::new(image("brainix-kernel-test.elf"))
        .machine("q35")
        .nic("52:54:00:be:ef:01", netdev)
        .spawn();
    s.expect(PROMPT, BOOT);
    let from = s.console().len();
    s.command("start ip", PROMPT, REPLY);
    assert_eq!(
        s.wait_for_line(from, "[ip] ip ", REPLY),
        "[ip] ip 10.0.2.15/24 gateway 10.0.2.2 on the link server"
    );
    s
}

#[test]
fn the_guest_pings_the_gateway_and_an_absent_host_times_out() {
    let mut s = boot("user,id=n0");
    let out = s.command("ping 10.0.2.2", PROMPT, REPLY);
    for seq in 1..=3 {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("reply from 10.0.2.2: seq={seq} ttl=")))
            .unwrap_or_else(|| panic!("no reply {seq}:\n{out}"));
        assert!(line.ends_with(" ms"), "{line}");
    }
    assert!(has_line(&out, "ping 10.0.2.2: 3 sent, 3 received"), "{out}");

    // Nobody answers ARP for this address: every request times out, nothing is made up.
    let out = s.command("ping 10.0.2.99", PROMPT, REPLY);
    assert!(
        has_line(&out, "ping 10.0.2.99: 3 sent, 0 received"),
        "{out}"
    );
    assert!(
        has_line(&out, "no reply from 10.0.2.99: seq=1 timeout"),
        "{out}"
    );

    // In: at least the gateway's ARP reply and three echo replies. Out: at least the ARP
    // requests (one for the gateway, one per attempt at .99) and three echo requests.
    let out = s.command("netstat", PROMPT, REPLY);
    let counters = out
        .lines()
        .find_map(|l| l.strip_prefix("ip: frames in "))
        .unwrap_or_else(|| panic!("{out}"));
    let words: Vec<&str> = counters.split_whitespace().collect();
    let rx: u64 = words[0].parse().unwrap();
    let tx: u64 = words[2].trim_end_matches(';').parse().unwrap();
    assert!(rx >= 4 && tx >= 7, "{out}");
    assert!(has_line(&out, "  drop bad-checksum: 0"), "{out}");
}

/// A network namespace of the test's own with one tap device holding 10.0.2.2/24 (where the
/// guest's gateway is configured), removed on every path out of the test.
struct Namespace(String);

impl Namespace {
    /// `None`, with the reason, when this machine cannot make one (no root, no /dev/net/tun,
    /// no `ip`, no `ping`).
    fn create() -> Result<Namespace, String> {
        if !std::path::Path::new("/dev/net/tun").exists() {
            return Err("no /dev/net/tun".into());
        }
        if std::process::Command::new("ping")
            .arg("-V")
            .output()
            .is_err()
        {
            return Err("no ping on the host (iputils-ping)".into());
        }
        let ns = Namespace(format!("brx-ip-{}", std::process::id()));
        let ip = |args: &[&str]| -> Result<(), String> {
            let out = std::process::Command::new("ip")
                .args(args)
                .output()
                .map_err(|e| format!("cannot run ip: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "ip {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        };
        ip(&["netns", "add", &ns.0])?;
        let inside = |rest: &[&str]| {
            let mut a = vec!["netns", "exec", ns.0.as_str(), "ip"];
            a.extend_from_slice(rest);
            ip(&a)
        };
        inside(&["tuntap", "add", "dev", "tap0", "mode", "tap"])?;
        inside(&["addr", "add", "10.0.2.2/24", "dev", "tap0"])?;
        inside(&["link", "set", "tap0", "up"])?;
        inside(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .output();
    }
}

#[test]
fn the_host_pings_the_guest_over_a_tap_device_in_a_namespace_of_its_own() {
    let ns = match Namespace::create() {
        Ok(ns) => ns,
        Err(why) => {
            // Stated, not hidden: the test cannot run on this machine.
            eprintln!("SKIP host-to-guest ping: {why}");
            return;
        }
    };
    let mut s = Boot::new(image("brainix-kernel-test.elf"))
        .machine("q35")
        .netns(&ns.0)
        .nic(
            "52:54:00:be:ef:01",
            "tap,id=n0,ifname=tap0,script=no,downscript=no",
        )
        .spawn();
    s.expect(PROMPT, BOOT);
    let from = s.console().len();
    s.command("start ip", PROMPT, REPLY);
    s.wait_for_line(from, "[ip] ip 10.0.2.15/24", REPLY);
    // The host's side: ARP for the guest, then echo requests the guest's IP server answers.
    let ping = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.0,
            "ping",
            "-c",
            "3",
            "-W",
            "5",
            "10.0.2.15",
        ])
        .output()
        .expect("running ping");
    let text = String::from_utf8_lossy(&ping.stdout);
    assert!(ping.status.success(), "{text}\n{}", s.console());
    assert!(text.contains("3 packets transmitted, 3 received"), "{text}");
    // The guest counted them, and pings the namespace's end of the tap as its gateway.
    let out = s.command("netstat", PROMPT, REPLY);
    assert!(
        out.contains("ip: frames in ") && out.contains("echo requests answered 3;"),
        "{out}"
    );
    let out = s.command("ping 10.0.2.2", PROMPT, REPLY);
    assert!(has_line(&out, "ping 10.0.2.2: 3 sent, 3 received"), "{out}");
    // The guest answers only for its own address: a neighbour it is not stays silent.
    let stranger = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.0,
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            "10.0.2.16",
        ])
        .output()
        .expect("running ping");
    assert!(!stranger.status.success());
}

/// Host UDP echo traffic through the guest, one datagram at a time from a thread of its own,
/// each waiting at most 200 ms for its echo. Every echo must be byte for byte one of the
/// datagrams sent (a late one may come after a later one was sent).
struct Flow {
    echoed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn flow_datagram(i: u64) -> Vec<u8> {
    let mut d = format!("flow {i} ").into_bytes();
    d.resize(d.len() + (i as usize * 13) % 600, b'f');
    d
}

impl Flow {
    fn start(host: UdpSocket) -> Flow {
        let echoed = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (e, st) = (echoed.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            host.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let mut buf = [0u8; 2048];
            let mut i = 0u64;
            while !st.load(Ordering::Relaxed) {
                host.send(&flow_datagram(i)).unwrap();
                i += 1;
                while let Ok(n) = host.recv(&mut buf) {
                    let got = &buf[..n];
                    let which = std::str::from_utf8(got)
                        .ok()
                        .and_then(|t| t.strip_prefix("flow "))
                        .and_then(|t| t.split(' ').next())
                        .and_then(|t| t.parse::<u64>().ok())
                        .filter(|&m| m < i && flow_datagram(m) == got);
                    assert!(which.is_some(), "not an echo of what was sent: {got:?}");
                    e.fetch_add(1, Ordering::Relaxed);
                    if which == Some(i - 1) {
                        break;
                    }
                }
            }
        });
        Flow {
            echoed,
            stop,
            thread: Some(thread),
        }
    }

    fn echoed(&self) -> u64 {
        self.echoed.load(Ordering::Relaxed)
    }

    /// Waits until more than `than` echoes came back.
    fn resumes(&self, than: u64, s: &Session) {
        let until = Instant::now() + REPLY;
        while self.echoed() <= than {
            assert!(
                Instant::now() < until,
                "the echo never came back:\n{}",
                s.console()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the traffic; panics if the thread saw a wrong echo.
    fn end(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("the traffic thread saw a wrong echo");
        }
    }
}

/// The link server is the one that started at boot, and alive.
fn link_server_carries_on(s: &mut Session) {
    let PsRow {
        state, generation, ..
    } = s.ps("net", PROMPT, REPLY);
    assert!(
        generation == 1 && state != "dead" && state != "stopped",
        "the link server: {state}, generation {generation}"
    );
    assert!(has_line(
        &s.command("echo still here", PROMPT, REPLY),
        "still here"
    ));
}

#[test]
fn the_ip_server_stopped_or_crashed_under_traffic_fails_its_clients_and_comes_back() {
    let port = free_udp_port();
    let mut s = Boot::new(image("brainix-kernel-test.elf"))
        .machine("q35")
        .nic(
            "52:54:00:be:ef:01",
            &format!("user,id=n0,hostfwd=udp:127.0.0.1:{port}-:7"),
        )
        .spawn();
    s.expect(PROMPT, BOOT);
    let from = s.start_all(&["ip", "transport", "udp-echo"], PROMPT, REPLY);
    s.wait_for_line(from, "UDP-ECHO bound 7", REPLY);
    let flow = Flow::start(udp_echo_socket(port, &s, REPLY));
    flow.resumes(10, &s);

    // Stopped: the echo server's receive fails at once (the transport server's call to the IP
    // server answers peer-dead), and no echo comes back while it is down.
    let ip = s.ps("ip", PROMPT, REPLY).pid;
    let from = s.console().len();
    let out = s.command(&format!("kill {ip}"), PROMPT, REPLY);
    assert!(out.contains(&format!("stopped pid {ip}")), "{out}");
    s.wait_for_line(from, "UDP-ECHO error recv: peer-dead", REPLY);
    link_server_carries_on(&mut s);
    let before = flow.echoed();
    std::thread::sleep(Duration::from_secs(1));
    // One echo may have been on its way when the server stopped.
    assert!(flow.echoed() <= before + 1, "echoes with no IP server");
    // The shell's ping, a client of the IP server itself, hears the same.
    let out = s.command("ping 10.0.2.2", PROMPT, REPLY);
    assert!(
        has_line(&out, "error: ping: no network stack (peer-dead)"),
        "{out}"
    );

    // Started again by the supervisor: the client serves again, without being restarted.
    let from = s.console().len();
    s.command("start ip", PROMPT, REPLY);
    s.wait_for_line(from, "[ip] ip 10.0.2.15/24", REPLY);
    s.wait_for_line(from, "UDP-ECHO serving again", REPLY);
    flow.resumes(flow.echoed(), &s);
    let out = s.command("ping 10.0.2.2", PROMPT, REPLY);
    assert!(has_line(&out, "ping 10.0.2.2: 3 sent, 3 received"), "{out}");

    // Crashed: a page fault kills it, the supervisor restarts it on its own, and the traffic
    // comes back. Its client's call comes back peer-dead.
    let from = s.console().len();
    s.command("start crash-ip", PROMPT, REPLY);
    let wait = |s: &Session, needle: &str| s.wait_for_line(from, needle, REPLY);
    assert_eq!(s.crashed_and_restarted(from, "ip", REPLY), 3);
    assert_eq!(wait(&s, "CRASH-IP "), "CRASH-IP reply=peer-dead");
    wait(&s, "[ip] ip 10.0.2.15/24");
    flow.resumes(flow.echoed(), &s);
    link_server_carries_on(&mut s);
    let out = s.command("ping 10.0.2.2", PROMPT, REPLY);
    assert!(has_line(&out, "ping 10.0.2.2: 3 sent, 3 received"), "{out}");
    let generation = s.ps("ip", PROMPT, REPLY).generation;
    assert_eq!(generation, 3);
    flow.end();
}
