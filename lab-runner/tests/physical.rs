//! The physical-board path end to end without hardware: a QEMU guest stands in for the machine,
//! its console is a pty the runner opens through the serialport crate, its power commands start
//! and stop it, and it boots over PXE (iPXE) from the runner's TFTP directory.

mod common;

use common::{StandIn, boards_dir, lab_runner};
use lab_runner::report::State;

#[test]
fn smoke_plan_runs_on_a_pxe_stand_in_and_the_board_lock_keeps_a_second_run_off() {
    let tmp = tempfile::tempdir().unwrap();
    let standin = StandIn::start(tmp.path());
    let boards = boards_dir(
        tmp.path(),
        &[],
        &[("standin-pxe", standin.board("standin-pxe"))],
    );
    let boards = boards.to_str().unwrap();

    let o = lab_runner(
        &[
            "run",
            "--board",
            "standin-pxe",
            "--plan",
            "smoke",
            "--quiet",
            "--boards-dir",
            boards,
        ],
        &tmp.path().join("out"),
        &[],
    );
    assert_eq!(o.code, 0, "{}", o.output);
    for check in [
        "boot.report-selfcheck",
        "boot.cpu-required",
        "mem.wx",
        "elf.wx-segments",
    ] {
        let (state, reason) = o.state("standin-pxe", check);
        assert_eq!(state, State::Pass, "{check}: {reason}\n{}", o.output);
    }
    // No exit channel on a physical board: the exit check is SKIP with that reason, never PASS.
    let (state, reason) = o.state("standin-pxe", "boot.expected-exit");
    assert_eq!(state, State::Skip, "{reason}");
    // It really went through PXE: multiboot, from the TFTP directory, with this boot's nonce.
    let report = o.report.as_ref().unwrap();
    let boot = &report.boots[0];
    assert_eq!(boot.image, "brainix-kernel-multiboot.elf");
    let log =
        std::fs::read_to_string(tmp.path().join("out").join(boot.log.as_ref().unwrap())).unwrap();
    assert!(log.contains("booted by multiboot"), "{log}");
    let script = std::fs::read_to_string(standin.tftp.join("boot.ipxe")).unwrap();
    assert!(
        script.contains(&boot.cmdline) && script.contains("brainix-standin-pxe.elf"),
        "{script}"
    );
    assert!(
        boot.command.iter().any(|c| c.contains("serial")),
        "{:?}",
        boot.command
    );
    assert_eq!(*standin.power_ons.lock().unwrap(), 1);

    // A second run on the same board reopens the console the first one closed, and runs the
    // invariant plans too: a scenario needing the test image is SKIP (no multiboot build of it),
    // and a console check is typed over the pty once the shell reports ready.
    let o = lab_runner(
        &[
            "run",
            "--board",
            "standin-pxe",
            "--plan",
            "inv-mem",
            "--plan",
            "inv-ipc",
            "--quiet",
            "--boards-dir",
            boards,
        ],
        &tmp.path().join("out1"),
        &[],
    );
    let (state, reason) = o.state("standin-pxe", "mem.sections");
    assert_eq!(state, State::Pass, "{reason}\n{}", o.output);
    let (state, reason) = o.state("standin-pxe", "mem.fault-is-fatal");
    assert_eq!(state, State::Skip, "{reason}");
    let (state, reason) = o.state("standin-pxe", "ipc.call-reply");
    assert_eq!(state, State::Pass, "{reason}\n{}", o.output);
    let powered = *standin.power_ons.lock().unwrap();
    assert_eq!(
        powered, 3,
        "the second run: one boot for the kernel checks, one for the running system"
    );

    // Powered off after the run: the stand-in QEMU is gone.
    std::thread::sleep(std::time::Duration::from_millis(500));
    for pid in standin.qemu_pids.lock().unwrap().iter() {
        assert!(
            !common::alive(*pid),
            "stand-in QEMU {pid} still running after power off"
        );
    }

    // While another holder has the board, a run is refused (ERROR, infrastructure) and the
    // machine is never powered on.
    let held =
        lab_runner::backend::physical::BoardLock::acquire(&tmp.path().join("locks"), "standin-pxe")
            .unwrap();
    let o = lab_runner(
        &[
            "run",
            "--board",
            "standin-pxe",
            "--plan",
            "smoke",
            "--quiet",
            "--retries",
            "0",
            "--boards-dir",
            boards,
        ],
        &tmp.path().join("out2"),
        &[],
    );
    assert_eq!(o.code, 1, "{}", o.output);
    let (state, reason) = o.state("standin-pxe", "mem.wx");
    assert_eq!(state, State::Error, "{reason}");
    assert!(reason.contains("in use"), "{reason}");
    assert_eq!(
        *standin.power_ons.lock().unwrap(),
        powered,
        "a locked board must not be powered on"
    );
    drop(held);
}
