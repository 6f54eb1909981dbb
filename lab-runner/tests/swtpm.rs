//! The measured-boot board's wiring: OVMF in pflash plus a per-boot swtpm. This test proves the
//! runner's side of it: QEMU accepts the board's firmware and TPM arguments, and stopping the
//! machine reaps both QEMU and swtpm. Booting through the loader is the matrix test's.

mod common;

use std::time::Duration;

use lab_runner::backend::qemu::Machine;
use lab_runner::board::Board;

#[tokio::test]
async fn ovmf_tpm_board_starts_qemu_with_swtpm_and_stop_reaps_both() {
    let board = Board::load(&common::workspace().join("boards/qemu-q35-uefi-tpm.toml")).unwrap();
    let image = common::image_dir().join("brainix-kernel.elf");
    let work = tempfile::tempdir().unwrap();
    let (machine, _console, _input) =
        Machine::start(&board, &image, "brainix.nonce=00", work.path())
            .await
            .expect("machine starts");
    let pids = machine.pids();
    assert_eq!(pids.len(), 2, "QEMU and swtpm");
    // A wrong -tpmdev, pflash or drive argument makes QEMU exit at once; it must still run.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for p in &pids {
        assert!(common::alive(*p), "process {p} died early");
    }
    let stderr = machine.stop().await;
    for p in &pids {
        assert!(
            !common::alive(*p),
            "process {p} outlived stop(); QEMU said: {stderr}"
        );
    }
}
