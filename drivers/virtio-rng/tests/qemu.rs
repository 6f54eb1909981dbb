//! The entropy server under QEMU, sharing its interrupt line with the block server: both keep
//! being served, each woken by the line and re-arming it only when both have looked.
//!
//! Needs the images from `cargo xtask build`.

use brainix_testkit::{Boot, Scratch, Session, has_line, image};
use std::time::Duration;

const PROMPT: &str = "brainix> ";
const BOOT: Duration = Duration::from_secs(60);
const REPLY: Duration = Duration::from_secs(30);

fn run(s: &mut Session, line: &str) -> String {
    s.command(line, PROMPT, REPLY)
}

/// The hex line `random` printed.
fn random(s: &mut Session, n: usize) -> String {
    let out = run(s, &format!("random {n}"));
    out.lines()
        .map(|l| l.trim_end_matches('\r'))
        .find(|l| l.len() == 2 * n && l.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("no {n}-byte hex line:\n{out}"))
        .to_owned()
}

#[test]
fn entropy_and_disk_are_served_on_one_shared_interrupt_line() {
    // An empty disk: the block server runs (the filesystem finds no BXFS, which is fine here).
    let disk = Scratch::new("rng-shared.img");
    std::fs::write(&disk.0, vec![0u8; 1 << 20]).unwrap();
    // Slot 5's INTA and slot 1's both reach IRQ 10 on q35.
    let mut s = Boot::new(image("brainix-kernel.elf"))
        .machine("q35")
        .disk(&disk.0)
        .args(&["-device", "virtio-rng-pci,addr=0x5"])
        .spawn();
    s.expect(PROMPT, BOOT);
    let devices = run(&mut s, "devices");
    let irq_of = |server: &str| {
        devices
            .lines()
            .find(|l| l.ends_with(&format!("-> {server}")))
            .and_then(|l| l.split(" irq ").nth(1))
            .and_then(|r| r.split(' ').next())
            .unwrap_or_else(|| panic!("{server} not bound:\n{devices}"))
            .to_owned()
    };
    assert_eq!(irq_of("rng"), irq_of("blk"), "{devices}");
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(random(&mut s, 16));
        // A block request in between: the line goes back and forth between the two servers.
        let out = run(&mut s, "ls");
        assert!(
            out.contains("error: ls: the data on disk fails its checksum"),
            "{out}"
        );
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 3, "the same 16 bytes twice: {seen:?}");
    let out = run(&mut s, "random 257");
    assert!(has_line(&out, "error: random: out-of-range"), "{out}");
    assert!(!s.console().contains("no interrupt for"), "{}", s.console());
}

#[test]
fn without_the_device_there_is_no_entropy_server() {
    let mut s = Boot::new(image("brainix-kernel.elf")).machine("pc").spawn();
    s.expect(PROMPT, BOOT);
    let console = s.console();
    let refusal = console
        .lines()
        .find(|l| l.starts_with("brainix: cannot launch rng (pid "))
        .unwrap_or_else(|| panic!("rng was launched:\n{console}"));
    assert!(
        refusal.ends_with(
            "): capability slot 4: no PCI device 1af4:1044 or 1af4:1005 #0 on this machine"
        ),
        "{refusal}"
    );
    let out = run(&mut s, "random 4");
    assert!(
        has_line(
            &out,
            "error: random: no entropy server (no virtio-rng device?)"
        ),
        "{out}"
    );
}
