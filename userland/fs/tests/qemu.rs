//! The filesystem server under QEMU, with a real virtio disk: files written from the shell reach
//! the disk image (read back on the host with the format's own code) and survive a reboot;
//! corrupt data is reported and never shown; a machine without a disk says so.
//!
//! Needs the images from `cargo xtask build`.

use brainix_fs_format::{BLOCK, Fs, MemDisk};
use brainix_testkit::{Boot, Scratch, Session, has_line, image};
use std::path::Path;
use std::time::Duration;

const PROMPT: &str = "brainix> ";
const BOOT: Duration = Duration::from_secs(60);
const REPLY: Duration = Duration::from_secs(30);

/// A BXFS image of `mib` MiB holding `files`, written to a scratch file.
fn disk(name: &str, files: &[(&str, &[u8])], mib: usize) -> Scratch {
    let blocks = mib * 1024 * 1024 / BLOCK;
    let mut bytes = vec![0u8; blocks * BLOCK];
    {
        let mut fs = Fs::format(MemDisk(&mut bytes), blocks as u32).unwrap();
        for (n, data) in files {
            fs.write(n.as_bytes(), 0, data, true).unwrap();
        }
    }
    let scratch = Scratch::new(name);
    std::fs::write(&scratch.0, &bytes).unwrap();
    scratch
}

fn boot(machine: &str, disk: Option<&Path>) -> Session {
    let mut b = Boot::new(image("brainix-kernel.elf")).machine(machine);
    if let Some(d) = disk {
        b = b.disk(d);
    }
    let mut s = b.spawn();
    s.expect(PROMPT, BOOT);
    s
}

fn run(s: &mut Session, line: &str) -> String {
    s.command(line, PROMPT, REPLY)
}

/// The data blocks of `name` in the image at `path`.
fn blocks_of(path: &Path, name: &str) -> Vec<u32> {
    let mut bytes = std::fs::read(path).unwrap();
    let mut fs = Fs::mount(MemDisk(&mut bytes)).unwrap();
    let mut blocks = Vec::new();
    fs.blocks_of(name.as_bytes(), |_, b, _| {
        blocks.push(b);
        Ok(())
    })
    .unwrap();
    blocks
}

#[test]
fn files_written_reach_the_disk_and_survive_a_reboot() {
    let d = disk("persist.img", &[("hello.txt", b"hello from the host\n")], 4);
    {
        let mut s = boot("q35", Some(&d.0));
        let out = run(&mut s, "cat hello.txt");
        assert!(has_line(&out, "hello from the host"), "{out}");
        let out = run(&mut s, "write note.txt written on BraiNIX");
        assert!(has_line(&out, "wrote 19 bytes to note.txt"), "{out}");
        let out = run(&mut s, "rm hello.txt");
        assert!(has_line(&out, "removed hello.txt"), "{out}");
        let out = run(&mut s, "cat hello.txt");
        assert!(
            has_line(&out, "error: cat hello.txt: no such file"),
            "{out}"
        );
    }
    // QEMU is gone: what the block server wrote is in the image file, in BXFS, checksums and
    // all.
    let mut bytes = std::fs::read(&d.0).unwrap();
    let mut fs = Fs::mount(MemDisk(&mut bytes)).expect("the image still mounts on the host");
    let mut out = [0u8; 64];
    let n = fs.read(b"note.txt", 0, &mut out).unwrap();
    assert_eq!(&out[..n], b"written on BraiNIX\n");
    assert!(fs.stat(b"hello.txt").is_err());
    // And BraiNIX finds it after a reboot, on the other PC machine (configuration by ports).
    let mut s = boot("pc", Some(&d.0));
    let out = run(&mut s, "cat note.txt");
    assert!(has_line(&out, "written on BraiNIX"), "{out}");
    let out = run(&mut s, "ls");
    assert!(
        has_line(&out, "1 file(s)") && out.contains("note.txt"),
        "{out}"
    );
}

#[test]
fn larger_files_round_trip_through_every_block() {
    // 300 KiB of a pattern no two blocks share: a misplaced sector would show.
    let data: Vec<u8> = (0..300 * 1024u32)
        .map(|i| (i ^ ((i >> 12) * 31)) as u8)
        .collect();
    let d = disk("big.img", &[("big.bin", &data)], 4);
    let mut s = boot("q35", Some(&d.0));
    let out = run(&mut s, "stat big.bin");
    assert!(
        has_line(&out, "big.bin: 307200 bytes, 75 block(s), entry 0"),
        "{out}"
    );
    let out = run(&mut s, "fs-bench big.bin");
    let line = out
        .lines()
        .find(|l| l.starts_with("FS-BENCH "))
        .unwrap_or_else(|| panic!("no FS-BENCH line:\n{out}"));
    let field = |k: &str| -> f64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k} missing: {line}"))
            .parse()
            .unwrap()
    };
    // Both paths read every byte.
    assert_eq!(field("bytes"), 307_200.0, "{line}");
    assert!(
        field("file_mib_s") > 0.0 && field("direct_mib_s") > 0.0,
        "{line}"
    );
    // Every block passed its CRC in the server on both paths: a misread sector would have
    // failed the command instead of printing the line.
    assert!(!out.contains("error:"), "{out}");
}

#[test]
fn corrupt_data_is_reported_and_never_shown() {
    let secret = b"the plan: sixteen bytes of plain text\n";
    let d = disk(
        "corrupt.img",
        &[("secret.txt", secret), ("ok.txt", b"fine\n")],
        4,
    );
    let block = blocks_of(&d.0, "secret.txt")[0];
    // Flip one bit of the file's data on the disk.
    let mut bytes = std::fs::read(&d.0).unwrap();
    bytes[block as usize * BLOCK + 4] ^= 0x20;
    std::fs::write(&d.0, &bytes).unwrap();
    let mut s = boot("q35", Some(&d.0));
    let out = run(&mut s, "cat secret.txt");
    assert!(
        has_line(
            &out,
            "error: cat secret.txt: the data on disk fails its checksum (corrupt); not shown"
        ),
        "{out}"
    );
    assert!(
        !out.contains("plan") && !out.contains("PLAN"),
        "corrupt data shown:\n{out}"
    );
    let console = s.console();
    assert!(
        console.contains(&format!(
            "[fs] refused to return data: block {block} (file data) fails its checksum"
        )),
        "{console}"
    );
    // The rest of the disk is still served.
    let out = run(&mut s, "cat ok.txt");
    assert!(has_line(&out, "fine"), "{out}");
}

#[test]
fn a_corrupt_superblock_refuses_the_mount_with_the_reason() {
    let d = disk("nosuper.img", &[("a.txt", b"a\n")], 1);
    let mut bytes = std::fs::read(&d.0).unwrap();
    bytes[16] ^= 1; // total_blocks, under the superblock's checksum
    std::fs::write(&d.0, &bytes).unwrap();
    let mut s = boot("pc", Some(&d.0));
    let out = run(&mut s, "ls");
    assert!(
        has_line(
            &out,
            "error: ls: the data on disk fails its checksum (corrupt); not shown"
        ),
        "{out}"
    );
    assert!(
        s.console()
            .contains("[fs] cannot mount: block 0 (superblock) fails its checksum"),
        "{}",
        s.console()
    );
    // The shell and the rest of the system are unaffected.
    assert!(has_line(&run(&mut s, "echo still here"), "still here"));
}

#[test]
fn without_a_disk_the_block_server_is_not_launched_and_the_shell_says_so() {
    let mut s = boot("q35", None);
    let console = s.console();
    let refusal = console
        .lines()
        .find(|l| l.starts_with("brainix: cannot launch blk (pid "))
        .unwrap_or_else(|| panic!("blk was launched:\n{console}"));
    assert!(
        refusal.ends_with(
            "): capability slot 4: no PCI device 1af4:1042 or 1af4:1001 #0 on this machine"
        ),
        "{refusal}"
    );
    // The supervisor does not pretend otherwise.
    assert!(
        console.contains("[init] supervising blk (pid ")
            && console.contains(", not launched, restartable)"),
        "{console}"
    );
    let out = run(&mut s, "ls");
    assert!(
        has_line(
            &out,
            "error: ls: no filesystem or block server is running (is there a disk?)"
        ),
        "{out}"
    );
}
