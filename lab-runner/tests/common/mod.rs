//! The one harness lab-runner's integration tests share: where the images are, how to run the
//! `lab-runner` binary, how to read what it wrote, and the stand-in "physical" machine.

#![allow(dead_code)] // each test file uses a different part of the harness

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use lab_runner::report::{Report, State};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `BRAINIX_IMAGE_DIR`, else `<workspace>/target/brainix`. A missing image FAILS the test with the
/// command that builds it: a QEMU test never skips silently.
pub fn image_dir() -> PathBuf {
    let dir = std::env::var_os("BRAINIX_IMAGE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/brainix"));
    for f in [
        "brainix-kernel.elf",
        "brainix-kernel-test.elf",
        "brainix-kernel-multiboot.elf",
    ] {
        assert!(
            dir.join(f).is_file(),
            "kernel image {} is missing: build the images with `cargo xtask build` (`cargo xtask test` does it for you)",
            dir.join(f).display()
        );
    }
    dir
}

/// What one `lab-runner` invocation left.
pub struct Outcome {
    /// Exit status.
    pub code: i32,
    /// stdout + stderr.
    pub output: String,
    /// The JSON report, when one was written.
    pub report: Option<Report>,
}

impl Outcome {
    /// The result for `check` on `board`.
    pub fn state(&self, board: &str, check: &str) -> (State, String) {
        let r = self
            .report
            .as_ref()
            .unwrap_or_else(|| panic!("no report:\n{}", self.output));
        let x = r
            .results
            .iter()
            .find(|x| x.board == board && x.check == check)
            .unwrap_or_else(|| panic!("no result {board}/{check}:\n{}", self.output));
        (x.state, x.reason.clone())
    }
}

/// Runs `lab-runner` with `args`, writing reports into `out`.
pub fn lab_runner(args: &[&str], out: &Path, env: &[(&str, &str)]) -> Outcome {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lab-runner"));
    cmd.args(args)
        .arg("--out")
        .arg(out)
        .arg("--image-dir")
        .arg(image_dir())
        .current_dir(workspace());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().expect("lab-runner runs");
    let output =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    let report = std::fs::read_to_string(out.join("report.json"))
        .ok()
        .map(|t| lab_runner::report::json::parse(&t).expect("report.json parses"));
    Outcome {
        code: o.status.code().unwrap_or(-1),
        output,
        report,
    }
}

/// A boards directory holding copies of shipped boards plus `extra` (name, text) profiles.
pub fn boards_dir(root: &Path, shipped: &[&str], extra: &[(&str, String)]) -> PathBuf {
    let dir = root.join("boards");
    std::fs::create_dir_all(&dir).unwrap();
    for name in shipped {
        std::fs::copy(
            workspace().join("boards").join(format!("{name}.toml")),
            dir.join(format!("{name}.toml")),
        )
        .unwrap();
    }
    for (name, text) in extra {
        std::fs::write(dir.join(format!("{name}.toml")), text).unwrap();
    }
    dir
}

/// True when a process with this pid is alive (not a zombie).
pub fn alive(pid: u32) -> bool {
    lab_runner::backend::process::is_alive(pid)
}

/// A QEMU guest standing in for a physical PXE machine: its console is a pty (opened by the runner
/// through the serialport crate), its power switch is a FIFO that power commands write `on` or
/// `off` into, and it network-boots through QEMU's TFTP server from the runner's TFTP directory.
pub struct StandIn {
    /// Scratch directory.
    pub dir: PathBuf,
    /// TFTP root the runner delivers into.
    pub tftp: PathBuf,
    /// The pty the runner opens as the console.
    pub console: PathBuf,
    /// The power FIFO.
    pub fifo: PathBuf,
    /// Power-on events seen.
    pub power_ons: Arc<Mutex<u32>>,
    /// QEMU pids started.
    pub qemu_pids: Arc<Mutex<Vec<u32>>>,
    _slave: serialport::TTYPort,
}

impl StandIn {
    /// Creates the pty pair and the FIFO and starts the "lab" thread that obeys power commands.
    pub fn start(dir: &Path) -> StandIn {
        let tftp = dir.join("tftp");
        std::fs::create_dir_all(&tftp).unwrap();
        let fifo = dir.join("power");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo(3) with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        let (master, mut slave) = serialport::TTYPort::pair().expect("pty pair");
        slave.set_exclusive(false).unwrap();
        // serialport flocks every port it opens; this end stays open only to keep the pty alive,
        // so give the lock up for the runner, which opens the device by path like a real one.
        // SAFETY: flock(2) on a descriptor the slave TTYPort owns for its whole life.
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&slave), libc::LOCK_UN) };
        let console = PathBuf::from(serialport::SerialPort::name(&slave).expect("pty name"));
        let power_ons = Arc::new(Mutex::new(0));
        let qemu_pids = Arc::new(Mutex::new(Vec::new()));
        let (ons, pids, tftp2, fifo2) = (
            power_ons.clone(),
            qemu_pids.clone(),
            tftp.clone(),
            fifo.clone(),
        );
        // What the runner types goes to the running stand-in's serial input. One thread for the
        // whole life of the pty, so no byte is read by a thread left over from an earlier boot.
        let input: Arc<Mutex<Option<std::process::ChildStdin>>> = Arc::new(Mutex::new(None));
        let mut keys = master.try_clone_native().unwrap();
        let typed_to = input.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            loop {
                match std::io::Read::read(&mut keys, &mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if let Some(stdin) = typed_to.lock().unwrap().as_mut() {
                            let _ = stdin.write_all(&buf[..n]);
                            let _ = stdin.flush();
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
                }
            }
        });
        std::thread::spawn(move || {
            // Read-write, so the FIFO never reports end-of-file between writers.
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&fifo2)
                .unwrap();
            let mut qemu: Option<std::process::Child> = None;
            let stop = |q: &mut Option<std::process::Child>| {
                if let Some(mut child) = q.take() {
                    // SAFETY: kill(2) on the process group created for this QEMU below.
                    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                    let _ = child.wait();
                }
            };
            for line in BufReader::new(f).lines() {
                let Ok(line) = line else { break };
                match line.trim() {
                    "on" => {
                        stop(&mut qemu);
                        *ons.lock().unwrap() += 1;
                        let mut child = Command::new("qemu-system-x86_64")
                            .args([
                                "-accel",
                                "tcg",
                                "-machine",
                                "q35",
                                "-cpu",
                                "max",
                                "-m",
                                "256",
                                "-nodefaults",
                                "-no-user-config",
                                "-display",
                                "none",
                                "-no-reboot",
                            ])
                            .args([
                                "-chardev",
                                "stdio,id=con0,signal=off",
                                "-serial",
                                "chardev:con0",
                            ])
                            .arg("-netdev")
                            .arg(format!(
                                "user,id=n0,tftp={},bootfile=boot.ipxe",
                                tftp2.display()
                            ))
                            .args(["-device", "virtio-net-pci,netdev=n0", "-boot", "n"])
                            .stdin(Stdio::piped())
                            .stdout(Stdio::piped())
                            .stderr(Stdio::null())
                            .process_group(0)
                            .spawn()
                            .expect("stand-in QEMU starts");
                        pids.lock().unwrap().push(child.id());
                        *input.lock().unwrap() = child.stdin.take();
                        let mut out = child.stdout.take().unwrap();
                        let mut wire = master.try_clone_native().unwrap();
                        std::thread::spawn(move || {
                            let mut buf = [0u8; 4096];
                            while let Ok(n) = std::io::Read::read(&mut out, &mut buf) {
                                if n == 0 || wire.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        });
                        qemu = Some(child);
                    }
                    "off" => stop(&mut qemu),
                    "quit" => break,
                    _ => {}
                }
            }
            stop(&mut qemu);
        });
        StandIn {
            dir: dir.to_path_buf(),
            tftp,
            console,
            fifo,
            power_ons,
            qemu_pids,
            _slave: slave,
        }
    }

    /// A board profile for this stand-in.
    pub fn board(&self, name: &str) -> String {
        let fifo = self.fifo.display();
        format!(
            r#"schema = 1
name = "{name}"
description = "QEMU guest standing in for a physical PXE machine"
kind = "physical"
timeout_scale = 3.0

[physical]
lock_dir = "{locks}"

[physical.console]
kind = "serial"
device = "{console}"
baud = 115200

[physical.power]
kind = "command"
on = "sh -c 'echo on > {fifo}'"
off = "sh -c 'echo off > {fifo}'"
settle_ms = 50

[physical.image]
kind = "tftp"
dir = "{tftp}"
ipxe_script = "boot.ipxe"

[[device]]
name = "com1"
model = "uart-16550"
server = "uart-com1"
"#,
            locks = self.dir.join("locks").display(),
            console = self.console.display(),
            tftp = self.tftp.display(),
        )
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&self.fifo) {
            let _ = f.write_all(b"quit\n");
        }
    }
}
