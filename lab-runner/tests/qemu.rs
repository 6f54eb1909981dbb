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

#[test]
fn matrix_runs_every_qemu_board_and_shards_merge_back() {
    let tmp = tempfile::tempdir().unwrap();
    let a = lab_runner(
        &["matrix", "--plan", "smoke", "--shard", "1/2", "--quiet"],
        &tmp.path().join("a"),
        &[],
    );
    let b = lab_runner(
        &["matrix", "--plan", "smoke", "--shard", "2/2", "--quiet"],
        &tmp.path().join("b"),
        &[],
    );
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
    assert_eq!(m.shards, ["1/2", "2/2"]);
    assert_eq!(out.status.code(), Some(m.exit_code() as i32));
    let html = std::fs::read_to_string(merged.join("report.html")).unwrap();
    assert_eq!(
        html.matches("<th>qemu-").count(),
        6,
        "matrix has a column per board"
    );
}
