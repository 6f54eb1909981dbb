//! The block server under QEMU: a driver that faults is killed and reported, its device stops
//! mastering the bus, the supervisor restarts it, and the shell, the filesystem and the disk
//! carry on.
//!
//! Needs the images from `cargo xtask build`; the test system's block server is the
//! `virtio-blk-faulty` build, which crashes on request.

use brainix_fs_format::{BLOCK, Fs, MemDisk};
use brainix_testkit::{Boot, Scratch, Session, has_line, image};
use std::time::Duration;

const PROMPT: &str = "brainix> ";
const BOOT: Duration = Duration::from_secs(60);
const REPLY: Duration = Duration::from_secs(30);

fn disk(name: &str) -> Scratch {
    let mut bytes = vec![0u8; 1024 * 1024];
    {
        let mut fs = Fs::format(MemDisk(&mut bytes), (1024 * 1024 / BLOCK) as u32).unwrap();
        fs.write(b"hello.txt", 0, b"hello before the crash\n", true)
            .unwrap();
    }
    let s = Scratch::new(name);
    std::fs::write(&s.0, &bytes).unwrap();
    s
}

fn run(s: &mut Session, line: &str) -> String {
    s.command(line, PROMPT, REPLY)
}

#[test]
fn a_killed_block_server_is_reported_and_restarted_while_the_shell_answers() {
    let d = disk("crash.img");
    let mut s = Boot::new(image("brainix-kernel-test.elf"))
        .machine("q35")
        .disk(&d.0)
        .spawn();
    s.expect(PROMPT, BOOT);
    let out = run(&mut s, "cat hello.txt");
    assert!(has_line(&out, "hello before the crash"), "{out}");
    let from = s.console().len();
    run(&mut s, "start crash-blk");
    let wait = |s: &Session, needle: &str| s.wait_for_line(from, needle, REPLY);
    assert_eq!(s.crashed_and_restarted(from, "blk", REPLY), 2);
    // The kernel stopped the device from writing the frames it is about to reuse.
    assert_eq!(
        wait(&s, "brainix: pci 00:01.0:"),
        "brainix: pci 00:01.0: bus mastering and INTx off (blk no longer runs)"
    );
    assert!(wait(&s, "[blk] virtio-blk ready").contains("sectors"));
    // The client whose call the server died in hears peer-dead, not silence.
    assert_eq!(wait(&s, "CRASH-BLK "), "CRASH-BLK reply=peer-dead");
    // The shell kept answering, and the restarted server serves the same disk.
    assert!(has_line(&run(&mut s, "echo still here"), "still here"));
    let out = run(&mut s, "write after.txt written by the new server");
    assert!(has_line(&out, "wrote 26 bytes to after.txt"), "{out}");
    let out = run(&mut s, "cat hello.txt");
    assert!(has_line(&out, "hello before the crash"), "{out}");
    let ps = run(&mut s, "ps");
    assert!(
        ps.lines()
            .any(|l| l.contains(" blk ") && l.contains("receiving") && l.contains(" 2   ")),
        "{ps}"
    );
}

#[test]
fn on_microvm_the_board_generated_system_drives_the_disk_over_virtio_mmio() {
    let d = disk("microvm.img");
    let mut s = Boot::new(image("brainix-kernel-microvm.elf"))
        .machine("microvm")
        .disk(&d.0)
        .spawn();
    s.expect(PROMPT, BOOT);
    let console = s.console();
    // Generated from the description and the board: no PCI servers, the disk's own.
    assert!(
        console.contains("system \"default@qemu-microvm\""),
        "{console}"
    );
    for absent in ["launched rng", "launched net"] {
        assert!(!console.contains(absent), "{absent}:\n{console}");
    }
    let out = run(&mut s, "cat hello.txt");
    assert!(has_line(&out, "hello before the crash"), "{out}");
    let out = run(&mut s, "write m.txt over virtio-mmio");
    assert!(has_line(&out, "wrote 17 bytes to m.txt"), "{out}");
    let out = run(&mut s, "cat m.txt");
    assert!(has_line(&out, "over virtio-mmio"), "{out}");
    // Its interrupt is microvm's last transport's line on the second I/O APIC, and it came:
    // the one-second fallback never had to look.
    let ps = run(&mut s, "ps");
    let pid = ps
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("blk"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("{ps}"))
        .to_owned();
    let caps = run(&mut s, &format!("caps {pid}"));
    assert!(
        caps.contains("irq") && caps.contains("line 47 bit 0"),
        "{caps}"
    );
    assert!(
        caps.contains("mmio") && caps.contains("phys 0xfeb02000 pages 1"),
        "{caps}"
    );
    assert!(!s.console().contains("no interrupt for"), "{}", s.console());
}

#[test]
fn on_microvm_without_the_disk_the_block_server_says_so_and_answers() {
    let mut s = Boot::new(image("brainix-kernel-microvm.elf"))
        .machine("microvm")
        .spawn();
    s.expect(PROMPT, BOOT);
    let out = run(&mut s, "ls");
    assert!(
        has_line(&out, "error: ls: the disk reported an error"),
        "{out}"
    );
    assert!(
        s.console().contains(
            "[blk] no virtio-blk device in its virtio-mmio page; answering every request with io-error"
        ),
        "{}",
        s.console()
    );
    assert!(!s.console().contains("died"), "{}", s.console());
}
