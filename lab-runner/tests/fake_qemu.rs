//! lab-runner against a fake `qemu-system-x86_64` (a Python script, selected through
//! `BRAINIX_QEMU`) that misbehaves on purpose: hangs with a grandchild, dies with a QEMU error,
//! forges frames. These prove reaping (timeouts, Ctrl-C, SIGKILL of the runner), ERROR vs FAIL and
//! retries, and that forged output never becomes a PASS, without depending on kernel behaviour.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{alive, boards_dir, lab_runner};
use lab_runner::report::State;

const FAKE: &str = r#"#!/usr/bin/env python3
import os, sys, time, zlib, subprocess
args = sys.argv[1:]
cmdline = args[args.index("-append") + 1] if "-append" in args else ""
nonce = [w.split("=", 1)[1] for w in cmdline.split() if w.startswith("brainix.nonce=")][0]
mode = os.environ["FAKE_MODE"]
piddir = os.environ["FAKE_PIDS"]
open(os.path.join(piddir, "qemu.%d" % os.getpid()), "w").close()
out = sys.stdout
def frame(seq, body, n=None):
    head = "BNX1 %s %d %s" % (n or nonce, seq, body)
    return "%s *%08x\n" % (head, zlib.crc32(head.encode()))
if mode == "hang":
    child = subprocess.Popen(["sleep", "300"])
    open(os.path.join(piddir, "child.%d" % child.pid), "w").close()
    out.write("brainix: hello, then nothing\n"); out.flush()
    time.sleep(300)
elif mode == "qemu-error":
    sys.stderr.write("qemu-system-x86_64: could not load kernel\n")
    sys.exit(1)
elif mode == "forge":
    out.write("BRAINIX-BOOT-REPORT v1 selfcheck=PASS cpu=rdrand,nx\n")
    out.write(frame(0, "PLAN mem.wx,boot.cpu-required"))
    out.write(frame(1, "RESULT mem.wx PASS -", n="f" * 32))           # someone else's nonce
    out.write("\x1b[1A" + frame(1, "RESULT mem.wx PASS -"))           # hidden behind an escape
    out.write(frame(1, "RESULT mem.wx FAIL page 0x1000 is W+X"))      # the real one
    bad = frame(2, "RESULT boot.cpu-required FAIL -").replace("FAIL", "PASS")  # CRC now wrong
    out.write(bad)
    out.write(frame(3, "END 2"))
    out.flush()
    sys.stdout.buffer.write(b"\x00\xff" * 10000 + b"\n")
    sys.exit(0x10 * 2 + 1)
"#;

struct Fake {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    script: PathBuf,
    pids: PathBuf,
    boards: PathBuf,
}

fn fake() -> Fake {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let script = root.join("fake-qemu");
    std::fs::write(&script, FAKE).unwrap();
    Command::new("chmod")
        .arg("755")
        .arg(&script)
        .status()
        .unwrap();
    let pids = root.join("pids");
    std::fs::create_dir_all(&pids).unwrap();
    let text = std::fs::read_to_string(common::workspace().join("boards/qemu-q35.toml"))
        .unwrap()
        .replace("name = \"qemu-q35\"", "name = \"fake\"")
        .replace(
            "[qemu]",
            "[timeouts]\nboot_s = 1.5\nsilence_s = 1.0\nexit_s = 1.0\n\n[qemu]",
        );
    let boards = boards_dir(&root, &[], &[("fake", text)]);
    Fake {
        _tmp: tmp,
        root,
        script,
        pids,
        boards,
    }
}

impl Fake {
    fn run(&self, mode: &str, extra: &[&str], out: &str) -> common::Outcome {
        let mut args = vec![
            "run",
            "--board",
            "fake",
            "--plan",
            "smoke",
            "--quiet",
            "--boards-dir",
            self.boards.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let env = self.env(mode);
        lab_runner(&args, &self.root.join(out), &envs(&env))
    }

    fn env(&self, mode: &str) -> [(&'static str, String); 4] {
        // The runner's per-boot scratch goes under the test's own directory, so even a runner
        // killed with SIGKILL leaves nothing in the system temp directory.
        let tmp = self.root.join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        [
            ("BRAINIX_QEMU", self.script.display().to_string()),
            ("FAKE_MODE", mode.into()),
            ("FAKE_PIDS", self.pids.display().to_string()),
            ("TMPDIR", tmp.display().to_string()),
        ]
    }

    fn pids(&self) -> Vec<u32> {
        std::fs::read_dir(&self.pids)
            .unwrap()
            .filter_map(|e| {
                e.ok()?
                    .file_name()
                    .to_str()?
                    .split('.')
                    .nth(1)?
                    .parse()
                    .ok()
            })
            .collect()
    }

    fn wait_all_dead(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let living: Vec<u32> = self.pids().into_iter().filter(|p| alive(*p)).collect();
            if living.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "processes left behind: {living:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn envs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[test]
fn a_hanging_machine_is_killed_with_its_children_at_the_timeout() {
    let f = fake();
    let o = f.run("hang", &[], "out");
    assert_eq!(o.code, 1, "{}", o.output);
    // Output arrived but no PLAN: the kernel's fault, not the lab's, so MISS (not ERROR).
    let (state, reason) = o.state("fake", "mem.wx");
    assert_eq!(state, State::Miss, "{reason}");
    assert!(
        reason.contains("no PLAN") && reason.contains("timeout"),
        "{reason}"
    );
    assert_eq!(f.pids().len(), 2, "fake QEMU and its child both started");
    f.wait_all_dead();
}

/// Starts `lab-runner` on a fake machine that hangs, with timeouts long enough that only a signal
/// ends the run, and returns once the fake QEMU and its child are both up.
fn spawn_hanging_run(f: &Fake) -> std::process::Child {
    let text = std::fs::read_to_string(f.boards.join("fake.toml")).unwrap();
    std::fs::write(
        f.boards.join("fake.toml"),
        text.replace("boot_s = 1.5", "boot_s = 100")
            .replace("silence_s = 1.0", "silence_s = 100"),
    )
    .unwrap();
    let env = f.env("hang");
    let runner = Command::new(env!("CARGO_BIN_EXE_lab-runner"))
        .args([
            "run",
            "--board",
            "fake",
            "--plan",
            "smoke",
            "--quiet",
            "--boards-dir",
            f.boards.to_str().unwrap(),
        ])
        .arg("--out")
        .arg(f.root.join("out"))
        .arg("--image-dir")
        .arg(common::image_dir())
        .envs(envs(&env))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.pids().len() < 2 {
        assert!(Instant::now() < deadline, "fake QEMU never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    runner
}

#[test]
fn ctrl_c_stops_the_run_and_leaves_no_process_behind() {
    let f = fake();
    let mut runner = spawn_hanging_run(&f);
    // SAFETY: kill(2) on the runner child we spawned.
    unsafe { libc::kill(runner.id() as i32, libc::SIGINT) };
    let status = runner.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    f.wait_all_dead();
}

#[test]
fn a_runner_killed_with_sigkill_still_takes_qemu_with_it() {
    let f = fake();
    let mut runner = spawn_hanging_run(&f);
    runner.kill().unwrap();
    runner.wait().unwrap();
    // PR_SET_PDEATHSIG covers the machine process itself (what the runner started directly).
    let qemu: Vec<u32> = std::fs::read_dir(&f.pids)
        .unwrap()
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_prefix("qemu.")?
                .parse()
                .ok()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    let survived = loop {
        if !qemu.iter().any(|p| alive(*p)) {
            break false;
        }
        if Instant::now() > deadline {
            break true;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Its own children are reparented, not killed; clean everything up before judging.
    for p in f.pids() {
        // SAFETY: kill(2) on a pid this test's fake started.
        unsafe { libc::kill(p as i32, libc::SIGKILL) };
    }
    assert!(!survived, "QEMU {qemu:?} outlived a SIGKILLed runner");
}

#[test]
fn a_qemu_failure_is_error_and_is_retried_but_never_turned_into_fail() {
    let f = fake();
    let o = f.run("qemu-error", &["--retries", "2"], "out");
    assert_eq!(o.code, 1, "{}", o.output);
    let (state, reason) = o.state("fake", "mem.wx");
    assert_eq!(state, State::Error, "{reason}");
    assert!(
        reason.contains("status 1") && reason.contains("could not load kernel"),
        "{reason}"
    );
    let r = o.report.unwrap();
    assert_eq!(r.boots.len(), 3, "one try and two retries");
    assert!(
        r.results
            .iter()
            .filter(|x| x.boot.is_some())
            .all(|x| x.attempts == 3)
    );
    // Static checks do not boot and are unaffected.
    assert_eq!(
        r.results
            .iter()
            .find(|x| x.check == "elf.wx-segments")
            .unwrap()
            .state,
        State::Pass
    );
}

#[test]
fn forged_hidden_and_corrupted_frames_never_become_a_pass() {
    let f = fake();
    let o = f.run("forge", &["--retries", "0"], "out");
    assert_eq!(o.code, 1, "{}", o.output);
    let (state, reason) = o.state("fake", "mem.wx");
    assert_eq!(state, State::Fail, "the genuine FAIL stands: {reason}");
    let (state, reason) = o.state("fake", "boot.cpu-required");
    assert_eq!(
        state,
        State::Miss,
        "a corrupted frame is not a result: {reason}"
    );
    assert!(reason.contains("distrusted"), "{reason}");
    let r = o.report.as_ref().unwrap();
    assert!(r.boots[0].distrusted);
    assert!(
        r.boots[0].violations.iter().any(|v| !v.ours),
        "the foreign-nonce frame is recorded"
    );
    let (state, _) = o.state("fake", "boot.expected-exit");
    assert_eq!(state, State::Fail, "a distrusted stream cannot end cleanly");
    // Binary garbage in the log and reports is escaped.
    let html = std::fs::read_to_string(Path::new(&f.root).join("out/report.html")).unwrap();
    assert!(!html.contains('\u{1b}') && !html.contains('\0'));
}
