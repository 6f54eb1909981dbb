//! lab-runner against the real kernel image under QEMU: the smoke plan on q35, pc and microvm; the
//! no-RDRAND board, whose pass is the kernel's refusal; and a board that should refuse but does
//! not, which must fail.

mod common;

use common::{boards_dir, lab_runner};
use lab_runner::report::State;

fn smoke_passes_on(board: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let o = lab_runner(
        &["run", "--board", board, "--plan", "smoke", "--quiet"],
        tmp.path(),
        &[],
    );
    assert_eq!(o.code, 0, "{}", o.output);
    let report = o.report.as_ref().unwrap();
    assert_eq!(report.results.len(), 5, "{}", o.output);
    for r in &report.results {
        assert_eq!(
            r.state,
            State::Pass,
            "{} {}: {}\n{}",
            r.board,
            r.check,
            r.reason,
            o.output
        );
    }
    // Evidence and logs exist for the boot checks.
    let frame = report.results.iter().find(|r| r.check == "mem.wx").unwrap();
    assert!(
        frame
            .evidence
            .lines
            .iter()
            .any(|l| l.contains("RESULT mem.wx PASS")),
        "{:?}",
        frame.evidence
    );
    let boot = &report.boots[0];
    let log = std::fs::read_to_string(tmp.path().join(boot.log.as_ref().unwrap())).unwrap();
    assert!(log.contains("BRAINIX-BOOT-REPORT v1"), "{log}");
    let raw = std::fs::read(tmp.path().join(boot.raw_log.as_ref().unwrap())).unwrap();
    assert!(
        raw.starts_with(b"brainix: "),
        "the first console byte is in the raw log"
    );
}

#[test]
fn smoke_plan_passes_on_q35() {
    smoke_passes_on("qemu-q35");
}

#[test]
fn smoke_plan_passes_on_pc() {
    smoke_passes_on("qemu-pc");
}

#[test]
fn smoke_plan_passes_on_microvm() {
    smoke_passes_on("qemu-microvm");
}

#[test]
fn no_rdrand_board_passes_because_the_kernel_refuses() {
    let tmp = tempfile::tempdir().unwrap();
    let o = lab_runner(
        &[
            "run",
            "--board",
            "qemu-no-rdrand",
            "--plan",
            "smoke",
            "--quiet",
        ],
        tmp.path(),
        &[],
    );
    assert_eq!(o.code, 0, "{}", o.output);
    let (state, reason) = o.state("qemu-no-rdrand", "boot.expected-exit");
    assert_eq!(state, State::Pass, "{reason}");
    assert!(
        reason.contains("exit status 35") && reason.contains("RDRAND"),
        "{reason}"
    );
    // Boot checks cannot run on a refusing machine: SKIP with the reason, never PASS.
    let (state, reason) = o.state("qemu-no-rdrand", "mem.wx");
    assert_eq!(state, State::Skip, "{reason}");
}

#[test]
fn a_refusal_board_whose_cpu_has_rdrand_fails() {
    // The same expectation on a CPU that has RDRAND: the kernel boots, so the board must FAIL.
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(common::workspace().join("boards/qemu-no-rdrand.toml"))
        .unwrap()
        .replace("name = \"qemu-no-rdrand\"", "name = \"still-has-rdrand\"")
        .replace("cpu_flags = [\"-rdrand\"]", "cpu_flags = []");
    let boards = boards_dir(tmp.path(), &[], &[("still-has-rdrand", text)]);
    let out = tmp.path().join("out");
    let o = lab_runner(
        &[
            "run",
            "--board",
            "still-has-rdrand",
            "--plan",
            "smoke",
            "--quiet",
            "--boards-dir",
            boards.to_str().unwrap(),
        ],
        &out,
        &[],
    );
    assert_eq!(o.code, 1, "{}", o.output);
    let (state, reason) = o.state("still-has-rdrand", "boot.expected-exit");
    assert_eq!(state, State::Fail, "{reason}");
    assert!(
        reason.contains("expected 35 (refused: CPU lacks RDRAND)")
            && reason.contains("must refuse before that"),
        "{reason}"
    );
}

/// The CI matrix: every plan on every QEMU board, in two shards merged back into one report.
/// Every check passes or is SKIP with its reason; `qemu-no-rdrand` passes by refusing to boot.
#[test]
fn matrix_runs_every_plan_on_every_qemu_board_and_shards_merge_back() {
    let tmp = tempfile::tempdir().unwrap();
    let a = lab_runner(
        &["matrix", "--plan", "all", "--shard", "1/2", "--quiet"],
        &tmp.path().join("a"),
        &[],
    );
    let b = lab_runner(
        &["matrix", "--plan", "all", "--shard", "2/2", "--quiet"],
        &tmp.path().join("b"),
        &[],
    );
    assert_eq!(a.code, 0, "{}", a.output);
    assert_eq!(b.code, 0, "{}", b.output);
    let (ra, rb) = (a.report.unwrap(), b.report.unwrap());
    let boards_a: std::collections::BTreeSet<_> = ra.boards.iter().cloned().collect();
    assert!(
        rb.boards.iter().all(|x| !boards_a.contains(x)),
        "shards overlap"
    );
    assert_eq!(
        ra.boards.len() + rb.boards.len(),
        6,
        "every QEMU board is in one shard"
    );
    let merged = tmp.path().join("merged");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lab-runner"))
        .args(["report", "merge", "--out"])
        .arg(&merged)
        .arg(tmp.path().join("a"))
        .arg(tmp.path().join("b"))
        .output()
        .unwrap();
    let m = lab_runner::report::json::parse(
        &std::fs::read_to_string(merged.join("report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(m.results.len(), ra.results.len() + rb.results.len());
    for r in &m.results {
        assert!(
            matches!(r.state, State::Pass | State::Skip),
            "{} {}: {} {}",
            r.board,
            r.check,
            r.state,
            r.reason
        );
    }
    let refused = m
        .results
        .iter()
        .find(|r| r.board == "qemu-no-rdrand" && r.check == "boot.expected-exit")
        .unwrap();
    assert_eq!(refused.state, State::Pass, "{}", refused.reason);
    let passed = m.results.iter().filter(|r| r.state == State::Pass).count();
    assert!(passed >= 200, "{passed} checks passed across the boards");
    assert_eq!(m.shards, ["1/2", "2/2"]);
    assert_eq!(out.status.code(), Some(m.exit_code() as i32));
    let html = std::fs::read_to_string(merged.join("report.html")).unwrap();
    assert_eq!(
        html.matches("<th>qemu-").count(),
        6,
        "matrix has a column per board"
    );
}

#[test]
fn program_checks_are_typed_after_ready_and_judged_from_the_targets_frames() {
    let tmp = tempfile::tempdir().unwrap();
    let o = lab_runner(
        &["run", "--board", "qemu-q35", "--plan", "all", "--quiet"],
        tmp.path(),
        &[],
    );
    assert_eq!(o.code, 0, "{}", o.output);
    let report = o.report.as_ref().unwrap();
    let programs: Vec<_> = report
        .results
        .iter()
        .filter(|r| r.kind == lab_runner::plan::CheckKind::Program && r.state == State::Pass)
        .collect();
    assert!(programs.len() >= 17, "{}", o.output);
    for r in &report.results {
        assert!(
            matches!(r.state, State::Pass | State::Skip),
            "{} {}: {}",
            r.check,
            r.state,
            r.reason
        );
    }
    // The verdict is the target's own frame, and its evidence shows the typed command.
    let (state, reason) = o.state("qemu-q35", "mem.write-text");
    assert_eq!(state, State::Pass, "{reason}");
    assert!(reason.contains("fault vector 14"), "{reason}");
    let r = report
        .results
        .iter()
        .find(|r| r.check == "auth.forged-handle")
        .unwrap();
    assert!(
        r.evidence
            .lines
            .iter()
            .any(|l| l.contains("start forged-handle"))
            && r.evidence
                .lines
                .iter()
                .any(|l| l.contains("RESULT auth.forged-handle PASS refused with bad-handle")),
        "{:?}",
        r.evidence.lines
    );
}

#[test]
fn a_program_check_the_target_never_answers_is_miss_not_pass() {
    // A plan asking for a result no process of the image reports, and a program the image does
    // not have: both are MISS with the reason, and the run fails.
    let tmp = tempfile::tempdir().unwrap();
    let plans = tmp.path().join("plans");
    std::fs::create_dir_all(&plans).unwrap();
    std::fs::copy(
        common::workspace().join("test-plans/features.toml"),
        plans.join("features.toml"),
    )
    .unwrap();
    std::fs::write(
        plans.join("inv-auth.toml"),
        r#"schema = 1
name = "inv-auth"
invariant = "INV-AUTH"
title = "t"

[[check]]
id = "auth.unreported"
title = "a result nobody reports"
kind = "program"
image = "test"
program = "forged-handle"
result = "auth.nobody"
timeout_s = 2
requires = ["userspace", "test-programs"]

[[check]]
id = "auth.no-such-program"
title = "a program the image lacks"
kind = "program"
image = "test"
program = "no-such-program"
result = "auth.stale-handle"
timeout_s = 2
requires = ["userspace", "test-programs"]
"#,
    )
    .unwrap();
    let out = tmp.path().join("out");
    let o = lab_runner(
        &[
            "run",
            "--board",
            "qemu-q35",
            "--plan",
            "inv-auth",
            "--quiet",
            "--plans-dir",
            plans.to_str().unwrap(),
        ],
        &out,
        &[],
    );
    assert_eq!(o.code, 1, "{}", o.output);
    let (state, reason) = o.state("qemu-q35", "auth.unreported");
    assert_eq!(state, State::Miss, "{reason}");
    assert!(
        reason.contains("PLAN does not announce `auth.nobody`"),
        "{reason}"
    );
    let (state, reason) = o.state("qemu-q35", "auth.no-such-program");
    assert_eq!(state, State::Miss, "{reason}");
    assert!(reason.contains("announced but never reported"), "{reason}");
}

#[test]
fn a_kernel_changed_after_release_is_refused_by_the_loader_and_fails_measured_and_signed() {
    // The published images, with one byte of the kernel flipped after signing.
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    for f in [
        "brainix-kernel.elf",
        "brainix-kernel.elf.sig",
        "brainix-loader.efi",
        "brainix-release.json",
        "brainix-signing-key.pub",
        "brainix-kernel-test.elf",
        "brainix-kernel-multiboot.elf",
    ] {
        std::fs::copy(common::image_dir().join(f), images.join(f)).unwrap();
    }
    let kernel = images.join("brainix-kernel.elf");
    let mut bytes = std::fs::read(&kernel).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&kernel, bytes).unwrap();
    let out = tmp.path().join("out");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_lab-runner"))
        .args([
            "run",
            "--board",
            "qemu-q35-uefi-tpm",
            "--plan",
            "inv-boot",
            "--quiet",
        ])
        .arg("--out")
        .arg(&out)
        .arg("--image-dir")
        .arg(&images)
        .current_dir(common::workspace())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let report =
        lab_runner::report::json::parse(&std::fs::read_to_string(out.join("report.json")).unwrap())
            .unwrap();
    let state = |id: &str| {
        let r = report.results.iter().find(|r| r.check == id).unwrap();
        (r.state, r.reason.clone())
    };
    let (s, reason) = state("boot.signed-release");
    assert_eq!(s, State::Fail, "{reason}");
    assert!(reason.contains("signature refused"), "{reason}");
    let (s, reason) = state("boot.measured");
    assert_eq!(s, State::Fail, "{reason}");
    assert!(reason.contains("not the image"), "{reason}");
    // The loader refused before the kernel ran: no kernel result can exist, none is a PASS.
    let (s, reason) = state("boot.cpu-required");
    assert_eq!(s, State::Miss, "{reason}");
    assert!(reason.contains("refused by the loader"), "{reason}");
}
