//! The link server under QEMU with a user-mode network: a client's ARP request goes out through
//! the device and the gateway's answer comes back in, each way through leases and the device's
//! interrupt.
//!
//! Needs the images from `cargo xtask build` (link-probe is in the test system).

use brainix_testkit::{Boot, image};
use std::time::Duration;

const PROMPT: &str = "brainix> ";
const BOOT: Duration = Duration::from_secs(60);
const REPLY: Duration = Duration::from_secs(30);

#[test]
fn an_arp_request_goes_out_and_the_gateway_answers() {
    let mut s = Boot::new(image("brainix-kernel-test.elf"))
        .machine("q35")
        .nic("52:54:00:be:ef:01", "user,id=n0")
        .spawn();
    s.expect(PROMPT, BOOT);
    assert!(
        s.console()
            .contains("[net] virtio-net ready: mac 52:54:00:be:ef:01"),
        "{}",
        s.console()
    );
    let from = s.console().len();
    s.command("start link-probe", PROMPT, REPLY);
    assert_eq!(
        s.wait_for_line(from, "LINK-PROBE mac=", REPLY),
        "LINK-PROBE mac=52:54:00:be:ef:01"
    );
    // QEMU's user network answers for its gateway with this fixed address.
    assert_eq!(
        s.wait_for_line(from, "LINK-PROBE arp", REPLY),
        "LINK-PROBE arp 10.0.2.2 is-at 52:55:0a:00:02:02"
    );
}
