//! Discovery and device binding under QEMU: what the kernel finds in the ACPI tables and on PCI
//! on each machine, the `devices` view, and the refusals that keep a device server inside its
//! own device.
//!
//! Needs the images from `cargo xtask build`.

use brainix_testkit::{Boot, Session, has_line, image};
use std::time::Duration;

const PROMPT: &str = "brainix> ";
const BOOT: Duration = Duration::from_secs(60);
const REPLY: Duration = Duration::from_secs(20);

fn boot(image_name: &str, machine: &str) -> Session {
    let mut s = Boot::new(image(image_name)).machine(machine).spawn();
    s.expect(PROMPT, BOOT);
    s
}

#[test]
fn q35_discovery_reads_madt_mcfg_hpet_and_walks_pci_over_ecam() {
    let mut s = boot("brainix-kernel.elf", "q35");
    let console = s.console();
    for want in [
        "brainix: acpi: 1 cpu(s), lapic 0xfee00000, ioapic 0xfec00000 gsi 0, 5 override(s) irq0->2",
        "irq10->10/level irq11->11/level; ecam 0xb0000000 buses 0-255; hpet 0xfed00000",
        "brainix: pci: 4 function(s) via ecam",
        "brainix: pci 00:00.0 8086:29c0 class 0600",
        "brainix: pci 00:1f.2 8086:2922 class 0106 intx pin 1",
    ] {
        assert!(console.contains(want), "{want:?} missing:\n{console}");
    }
    let out = s.command("devices", PROMPT, REPLY);
    assert!(
        out.lines().any(|l| l.starts_with("00:1f.2 8086:2922 class 010601 irq ")
            && l.contains(" bar5 0x")),
        "{out}"
    );
    // Nothing on this machine is bound: there is no virtio disk.
    assert!(!out.contains(" -> "), "{out}");
}

#[test]
fn pc_discovery_uses_the_configuration_ports_and_microvm_has_no_pci() {
    let s = boot("brainix-kernel.elf", "pc");
    let console = s.console();
    assert!(console.contains("; no ecam; hpet 0xfed00000"), "{console}");
    assert!(
        console.contains("brainix: pci: 4 function(s) via ports 0xcf8"),
        "{console}"
    );
    assert!(
        console.contains("brainix: pci 00:00.0 8086:1237 class 0600"),
        "{console}"
    );
    drop(s);
    let mut s = boot("brainix-kernel.elf", "microvm");
    let console = s.console();
    assert!(
        console.contains("brainix: pci: 0 function(s) via nothing (no PCI)"),
        "{console}"
    );
    assert!(console.contains("ioapic 0xfec00000 gsi 0"), "{console}");
    let out = s.command("devices", PROMPT, REPLY);
    assert!(has_line(&out, "no PCI devices"), "{out}");
}

#[test]
fn a_driver_is_refused_everything_beyond_its_own_device() {
    let mut s = boot("brainix-kernel-test.elf", "q35");
    let from = s.console().len();
    s.command("start rogue-driver", PROMPT, REPLY);
    let wait = |s: &Session, needle: &str| s.wait_for_line(from, needle, REPLY);
    // What it may do: read its own device's configuration.
    assert_eq!(
        wait(&s, "ROGUE own-device"),
        "ROGUE own-device id=0x29228086"
    );
    for (attack, error) in [
        ("bar-move", "missing-right"),
        ("config-beyond", "out-of-range"),
        ("other-device", "bad-handle"),
    ] {
        assert_eq!(
            wait(&s, &format!("ATTACK {attack} ")),
            format!("ATTACK {attack} REFUSED {error}")
        );
    }
    assert_eq!(wait(&s, "ATTACK bar-write "), "ATTACK bar-write ATTEMPT");
    let fault = wait(&s, "brainix: FAULT: rogue-driver");
    assert!(
        fault.contains("page fault (vector 14) error=0x7"),
        "{fault}"
    );
    // Its device may no longer master the bus or interrupt: the kernel turned both off.
    assert_eq!(
        wait(&s, "brainix: pci 00:1f.2:"),
        "brainix: pci 00:1f.2: bus mastering and INTx off (rogue-driver no longer runs)"
    );
    // Every device's configuration (the ECAM window) cannot be claimed as plain MMIO.
    let from = s.console().len();
    s.command("start mmio-ecam", PROMPT, REPLY);
    let refusal = s.wait_for_line(from, "brainix: cannot launch mmio-ecam (pid ", REPLY);
    assert!(
        refusal.ends_with(
            "): capability slot 1: region at 0xb0000000 is not device memory or too large"
        ),
        "{refusal}"
    );
    assert!(has_line(
        &s.command("echo still here", PROMPT, REPLY),
        "still here"
    ));
}

/// Free frames, from `mem`.
fn free_frames(s: &mut Session) -> u64 {
    let out = s.command("mem", PROMPT, REPLY);
    out.lines()
        .find_map(|l| l.strip_prefix("frames: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no frame count:\n{out}"))
}

#[test]
fn a_dead_process_s_dma_pool_goes_to_nobody_else_and_comes_back_to_it() {
    let mut s = boot("brainix-kernel-test.elf", "q35");
    let before = free_frames(&mut s);
    let mut phys = Vec::new();
    for run in 0..2 {
        let from = s.console().len();
        s.command("start region-probe", PROMPT, REPLY);
        let line = s.wait_for_line(from, "REGION dma ", REPLY);
        assert!(line.ends_with("len=16384 pattern=ok"), "{line}");
        phys.push(line.split_whitespace().nth(3).unwrap().to_owned());
        // It dies writing its read-only MMIO mapping.
        s.wait_for_line(from, "brainix: FAULT: region-probe", REPLY);
        // Its four DMA frames stay out of the pool: a device it programmed could still write
        // them. Everything else it had came back, and a second run took no more.
        assert_eq!(free_frames(&mut s), before - 4, "after run {run}");
    }
    assert_eq!(
        phys[0], phys[1],
        "the relaunched process gets its own pool back"
    );
}
