//! QEMU boards: the runner builds the command line from the board profile, starts QEMU (and swtpm
//! where the board has a TPM), and reads the console from QEMU's stdout.
//!
//! No early byte is lost: the console is a pipe (`-chardev stdio`) that exists before the QEMU
//! process does, so the guest's first byte is already in the runner's hands. QEMU's own messages
//! go to stderr and are kept apart (bounded) for ERROR reports.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::{ChildStdin, ChildStdout, Command};
use tokio::task::JoinHandle;

use super::process::{self, Guard};
use crate::board::{Board, Firmware, QemuBoard, Tpm};

/// Environment variable overriding the QEMU binary (tests use a fake one).
pub const QEMU_ENV: &str = "BRAINIX_QEMU";

/// Default QEMU binary.
pub const QEMU_DEFAULT: &str = "qemu-system-x86_64";

/// QEMU stderr bytes kept for error messages; QEMU's complaints are a few lines.
pub const MAX_STDERR: usize = 16 * 1024;

/// How long swtpm may take to create its control socket.
pub const SWTPM_READY: Duration = Duration::from_secs(5);

/// Why a QEMU machine could not be started.
#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    /// The binary could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// Program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// swtpm did not come up.
    #[error("swtpm: {0}")]
    Swtpm(String),
    /// Preparing files for the boot failed.
    #[error("preparing {path}: {source}")]
    Prepare {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The board is not a QEMU board.
    #[error("board `{0}` is not a QEMU board")]
    NotQemu(String),
}

/// The QEMU binary to use.
pub fn qemu_program() -> String {
    std::env::var(QEMU_ENV).unwrap_or_else(|_| QEMU_DEFAULT.to_owned())
}

/// QEMU arguments for `board` booting `image` with `cmdline`. `work` is a directory private to
/// this boot (OVMF variables); `tpm_socket` is swtpm's control socket when the board has a TPM.
pub fn args(
    board: &Board,
    q: &QemuBoard,
    image: &Path,
    cmdline: &str,
    work: &Path,
    tpm_socket: Option<&Path>,
) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
    push(&["-accel", "tcg", "-machine", &q.machine]);
    let cpu = std::iter::once(q.cpu.clone())
        .chain(q.cpu_flags.iter().cloned())
        .collect::<Vec<_>>()
        .join(",");
    push(&[
        "-cpu",
        &cpu,
        "-m",
        &q.memory_mib.to_string(),
        "-smp",
        &q.smp.to_string(),
    ]);
    push(&[
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
    ]);
    push(&[
        "-chardev",
        "stdio,id=con0,signal=off",
        "-serial",
        "chardev:con0",
    ]);
    if q.debug_exit {
        push(&["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
    }
    for d in &board.devices {
        if let Some(dev) = &d.qemu_device {
            push(&["-device", dev]);
        }
    }
    if let Some(sock) = tpm_socket {
        let model = if q.tpm == Tpm::Crb {
            "tpm-crb"
        } else {
            "tpm-tis"
        };
        push(&[
            "-chardev",
            &format!("socket,id=chrtpm,path={}", sock.display()),
        ]);
        push(&[
            "-tpmdev",
            "emulator,id=tpm0,chardev=chrtpm",
            "-device",
            &format!("{model},tpmdev=tpm0"),
        ]);
    }
    match (q.firmware, &q.ovmf) {
        (Firmware::Ovmf, Some(ovmf)) => {
            push(&[
                "-drive",
                &format!(
                    "if=pflash,format=raw,unit=0,readonly=on,file={}",
                    ovmf.code.display()
                ),
            ]);
            push(&[
                "-drive",
                &format!(
                    "if=pflash,format=raw,unit=1,file={}",
                    work.join("ovmf-vars.fd").display()
                ),
            ]);
            push(&[
                "-drive",
                &format!("format=raw,file=fat:rw:{}", work.join("esp").display()),
            ]);
        }
        _ => push(&["-kernel", &image.display().to_string(), "-append", cmdline]),
    }
    a
}

/// A running QEMU machine.
pub struct Machine {
    qemu: Guard,
    swtpm: Option<Guard>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    tpm_dir: Option<PathBuf>,
    /// The full command line, for the report.
    pub command: Vec<String>,
}

impl Machine {
    /// Starts QEMU for `board`; returns the machine and its console.
    pub async fn start(
        board: &Board,
        image: &Path,
        cmdline: &str,
        work: &Path,
    ) -> Result<(Machine, ChildStdout, ChildStdin), QemuError> {
        let q = board
            .qemu
            .as_ref()
            .ok_or_else(|| QemuError::NotQemu(board.name.clone()))?;
        std::fs::create_dir_all(work).map_err(|e| QemuError::Prepare {
            path: work.into(),
            source: e,
        })?;
        if q.firmware == Firmware::Ovmf {
            prepare_esp(q, image, cmdline, work)?;
        }
        let (swtpm, tpm_dir) = if q.tpm != Tpm::None {
            start_swtpm().await.map(|(g, d)| (Some(g), Some(d)))?
        } else {
            (None, None)
        };
        let socket = tpm_dir.as_ref().map(|d| d.join("ctrl.sock"));
        let program = qemu_program();
        let argv = args(board, q, image, cmdline, work, socket.as_deref());
        let mut cmd = Command::new(&program);
        cmd.args(&argv)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut qemu = process::spawn(&mut cmd, "qemu").map_err(|e| QemuError::Spawn {
            program: program.clone(),
            source: e,
        })?;
        let stdout = qemu.child_mut().stdout.take().expect("stdout was piped");
        // The console's transmit side: `-chardev stdio` reads the guest's serial input here.
        let stdin = qemu.child_mut().stdin.take().expect("stdin was piped");
        let stderr = qemu.child_mut().stderr.take().map(|mut err| {
            tokio::spawn(async move {
                let mut kept = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let room = MAX_STDERR.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
                kept
            })
        });
        let mut command = vec![program];
        command.extend(argv);
        Ok((
            Machine {
                qemu,
                swtpm,
                stderr,
                tpm_dir,
                command,
            },
            stdout,
            stdin,
        ))
    }

    /// Resolves when QEMU exits: its status, or `None` for a signal.
    pub async fn wait(&mut self) -> Option<i32> {
        self.qemu.wait().await
    }

    /// Kills QEMU and swtpm, reaps them, and returns what QEMU wrote to stderr.
    pub async fn stop(self) -> String {
        self.stop_reading_pcrs(&[]).await.0
    }

    /// Like [`Machine::stop`], but first, once QEMU is gone and before swtpm goes, reads the
    /// SHA-256 PCRs `pcrs` the boot left in the board's TPM (`None` when none were asked for or
    /// the board has no TPM).
    pub async fn stop_reading_pcrs(
        mut self,
        pcrs: &[u32],
    ) -> (String, Option<Result<Vec<[u8; 32]>, String>>) {
        self.qemu.kill_and_reap().await;
        let read = match (&self.tpm_dir, pcrs.is_empty()) {
            (Some(dir), false) => {
                let socket = dir.join("ctrl.sock");
                let pcrs = pcrs.to_vec();
                Some(
                    tokio::task::spawn_blocking(move || {
                        brainix_testkit::uefi::read_pcrs(&socket, &pcrs)
                    })
                    .await
                    .unwrap_or_else(|e| Err(format!("PCR reader failed: {e}"))),
                )
            }
            _ => None,
        };
        if let Some(t) = self.swtpm.as_mut() {
            t.kill_and_reap().await;
        }
        let err = match self.stderr.take() {
            Some(h) => tokio::time::timeout(Duration::from_secs(1), h)
                .await
                .ok()
                .and_then(|r| r.ok())
                .unwrap_or_default(),
            None => Vec::new(),
        };
        (crate::console_log::escape_bytes(&err), read)
    }

    /// Process ids of QEMU and swtpm (for leak tests).
    pub fn pids(&self) -> Vec<u32> {
        self.qemu
            .pid()
            .into_iter()
            .chain(self.swtpm.as_ref().and_then(|s| s.pid()))
            .collect()
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        // The guards kill their groups; the TPM state is per boot and goes too.
        if let Some(d) = self.tpm_dir.take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// OVMF boots the UEFI loader from a FAT directory: `EFI/BOOT/BOOTX64.EFI`, with the kernel, its
/// signature and its command line next to it (`kernel.elf`, `kernel.sig`, `cmdline.txt`: the
/// names in `brainix_loader::media`).
fn prepare_esp(q: &QemuBoard, image: &Path, cmdline: &str, work: &Path) -> Result<(), QemuError> {
    let prep = |path: &Path, r: std::io::Result<()>| {
        r.map_err(|e| QemuError::Prepare {
            path: path.into(),
            source: e,
        })
    };
    if let Some(ovmf) = &q.ovmf {
        let vars = work.join("ovmf-vars.fd");
        prep(&vars, std::fs::copy(&ovmf.vars, &vars).map(|_| ()))?;
    }
    let boot = work.join("esp/EFI/BOOT");
    prep(&boot, std::fs::create_dir_all(&boot))?;
    let loader = image
        .parent()
        .unwrap_or(Path::new("."))
        .join("brainix-loader.efi");
    if loader.is_file() {
        prep(
            &loader,
            std::fs::copy(&loader, boot.join("BOOTX64.EFI")).map(|_| ()),
        )?;
    }
    let esp = work.join("esp");
    prep(
        &esp,
        std::fs::copy(image, esp.join("kernel.elf")).map(|_| ()),
    )?;
    // The loader refuses a kernel without its signature (`<image>.sig`, written by the build).
    let mut sig = image.as_os_str().to_owned();
    sig.push(".sig");
    let sig = PathBuf::from(sig);
    if sig.is_file() {
        prep(
            &sig,
            std::fs::copy(&sig, esp.join("kernel.sig")).map(|_| ()),
        )?;
    }
    prep(&esp, std::fs::write(esp.join("cmdline.txt"), cmdline))
}

/// Starts swtpm (TPM 2.0) with a fresh state directory in the system temp dir (a short path: Unix
/// socket paths are limited to 108 bytes) and waits for its socket.
async fn start_swtpm() -> Result<(Guard, PathBuf), QemuError> {
    let dir = std::env::temp_dir().join(format!(
        "bnx-tpm-{}-{}",
        std::process::id(),
        crate::protocol::Nonce::generate()
            .as_str()
            .get(..8)
            .unwrap_or("x")
    ));
    std::fs::create_dir_all(&dir).map_err(|e| QemuError::Prepare {
        path: dir.clone(),
        source: e,
    })?;
    let sock = dir.join("ctrl.sock");
    let mut cmd = process::quiet("swtpm");
    cmd.args(["socket", "--tpm2", "--tpmstate"])
        .arg(format!("dir={}", dir.display()))
        .arg("--ctrl")
        .arg(format!("type=unixio,path={}", sock.display()));
    let guard = process::spawn(&mut cmd, "swtpm")
        .map_err(|e| QemuError::Swtpm(format!("cannot start swtpm: {e}")))?;
    let deadline = tokio::time::Instant::now() + SWTPM_READY;
    while !sock.exists() {
        if tokio::time::Instant::now() > deadline {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(QemuError::Swtpm(format!(
                "no control socket after {SWTPM_READY:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((guard, dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board(name: &str) -> Board {
        crate::board::shipped(name)
    }

    #[test]
    fn q35_args_have_console_exit_device_and_pvh_kernel() {
        let b = board("qemu-q35");
        let a = args(
            &b,
            b.qemu.as_ref().unwrap(),
            Path::new("/img/k.elf"),
            "brainix.nonce=00",
            Path::new("/w"),
            None,
        );
        let joined = a.join(" ");
        assert!(
            joined.contains("-machine q35 -cpu max -m 256 -smp 1"),
            "{joined}"
        );
        assert!(
            joined.contains("-chardev stdio,id=con0,signal=off -serial chardev:con0"),
            "{joined}"
        );
        assert!(
            joined.contains("-device isa-debug-exit,iobase=0xf4,iosize=0x04"),
            "{joined}"
        );
        assert!(
            joined.ends_with("-kernel /img/k.elf -append brainix.nonce=00"),
            "{joined}"
        );
    }

    #[test]
    fn no_rdrand_board_removes_the_flag_and_tpm_board_wires_swtpm_and_ovmf() {
        let b = board("qemu-no-rdrand");
        let a = args(
            &b,
            b.qemu.as_ref().unwrap(),
            Path::new("/k"),
            "x",
            Path::new("/w"),
            None,
        );
        assert!(a.windows(2).any(|w| w == ["-cpu", "max,-rdrand"]), "{a:?}");
        let b = board("qemu-q35-uefi-tpm");
        let a = args(
            &b,
            b.qemu.as_ref().unwrap(),
            Path::new("/k"),
            "x",
            Path::new("/w"),
            Some(Path::new("/t/ctrl.sock")),
        )
        .join(" ");
        assert!(
            a.contains("-tpmdev emulator,id=tpm0,chardev=chrtpm -device tpm-tis,tpmdev=tpm0"),
            "{a}"
        );
        assert!(
            a.contains("if=pflash,format=raw,unit=1,file=/w/ovmf-vars.fd"),
            "{a}"
        );
        assert!(!a.contains("-kernel"), "{a}");
    }
}
