//! The IP server under QEMU with a user-mode network: the guest pings the user network's
//! gateway through ip → link → device and back, an address nobody holds times out, and the
//! counters show what crossed.
//!
//! Needs the images from `cargo xtask build` (the IP server is in the test system).

use brainix_testkit::{Boot, Session, has_line, image};
use std::time::Duration;

const PROMPT: &str = "brainix> ";
const BOOT: Duration = Duration::from_secs(60);
const REPLY: Duration = Duration::from_secs(30);

/// The test system on q35 with a virtio network card on QEMU's user network, the IP server
/// started.
fn boot(netdev: &str) -> Session {
    let mut s = Boot::new(image("brainix-kernel-test.elf"))
        .machine("q35")
        .args(&[
            "-device",
            "virtio-net-pci,netdev=n0,mac=52:54:00:be:ef:01",
            "-netdev",
            netdev,
        ])
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
