//! The shipped board profiles and test plans are valid, and `boards check` / `plans check` refuse
//! broken ones with located messages and exit status 2.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn runner(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lab-runner"))
        .args(args)
        .current_dir(workspace())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn every_shipped_board_is_valid_and_the_required_ones_exist() {
    let (boards, errors) = lab_runner::board::load_dir(&workspace().join("boards"));
    assert!(
        errors.is_empty(),
        "{}",
        errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let names: Vec<&str> = boards.iter().map(|b| b.name.as_str()).collect();
    for required in [
        "qemu-q35",
        "qemu-pc",
        "qemu-microvm",
        "qemu-q35-smp4",
        "qemu-q35-uefi-tpm",
        "qemu-no-rdrand",
        "metal-pxe-example",
    ] {
        assert!(names.contains(&required), "missing board {required}");
    }
}

#[test]
fn every_shipped_plan_is_valid_and_each_invariant_has_one() {
    let (_, plans, errors) = lab_runner::plan::load_dir(&workspace().join("test-plans"));
    assert!(
        errors.is_empty(),
        "{}",
        errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    for inv in lab_runner::plan::INVARIANTS {
        assert!(
            plans.iter().any(|p| p.invariant == *inv),
            "no plan for {inv}"
        );
    }
}

#[test]
fn boards_check_passes_on_the_tree() {
    let (code, out) = runner(&["boards", "check"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = runner(&["plans", "check"]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn boards_check_names_file_line_and_expectation_for_a_broken_profile() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(workspace().join("boards/qemu-q35.toml")).unwrap();
    std::fs::write(dir.path().join("qemu-q35.toml"), &good).unwrap();
    std::fs::write(
        dir.path().join("broken.toml"),
        good.replace("qemu-q35\"", "broken\"")
            .replace("smp = 1", "smp = 0"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("garbage.toml"),
        "\u{1b}[31m[[[ \u{0} not toml",
    )
    .unwrap();
    let (code, out) = runner(&[
        "boards",
        "check",
        "--boards-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{out}");
    let line = good.lines().position(|l| l.starts_with("smp")).unwrap() + 1;
    assert!(
        out.contains(&format!("broken.toml:{line}:")) && out.contains("expected 1 to 64"),
        "{out}"
    );
    assert!(out.contains("garbage.toml:1:"), "{out}");
    assert!(out.contains("1 board(s) valid, 2 invalid"), "{out}");
}
