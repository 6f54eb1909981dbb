//! The one harness every QEMU integration test uses: find a built image, boot it with a board's
//! flags, collect the serial output and the exit status, and always reap QEMU.
//!
//! Plain `std` on purpose: the kernel's tests need no async runtime, and a dependency here would
//! be a dependency of every crate that tests under QEMU. The one exception is `libc`, for the
//! file-descriptor passing that reading a software TPM's PCRs needs ([`uefi::Swtpm`]).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod uefi;

/// xorshift64*: the seeded generator of the host tests' random cases. A fixed seed names a
/// case that reproduces; the same sequence on every machine.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % (n as u64).max(1)) as usize
    }

    /// True `p` times in a hundred.
    pub fn percent(&mut self, p: usize) -> bool {
        self.below(100) < p
    }
}

/// The directory holding the built images: `BRAINIX_IMAGE_DIR`, else `<workspace>/target/brainix`.
pub fn image_dir() -> PathBuf {
    match std::env::var_os("BRAINIX_IMAGE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/brainix"),
    }
}

/// The path of image `name`, or a panic that says how to build it. A missing image fails the
/// test: it is never a silent skip.
pub fn image(name: &str) -> PathBuf {
    let path = image_dir().join(name);
    assert!(
        path.is_file(),
        "kernel image {} is missing: build the images with `cargo xtask build` \
         (`cargo xtask test` does it for you)",
        path.display()
    );
    path
}

/// One QEMU boot, described the way a board profile would.
#[derive(Clone, Debug)]
pub struct Boot {
    image: PathBuf,
    machine: String,
    cpu: String,
    memory: String,
    append: String,
    debug_exit: bool,
    timeout: Duration,
    extra: Vec<String>,
    firmware: Firmware,
    netns: Option<String>,
}

/// How the machine starts the kernel.
#[derive(Clone, Debug)]
enum Firmware {
    /// QEMU loads the ELF itself (`-kernel`, PVH).
    Pvh,
    /// OVMF, with its variable store copied to `vars`, booting from a disk image or over PXE,
    /// with or without a TPM.
    Uefi {
        vars: PathBuf,
        disk: Option<PathBuf>,
        pxe: Option<(PathBuf, String)>,
        tpm: Option<PathBuf>,
    },
}

/// What a boot left behind.
#[derive(Debug)]
pub struct Outcome {
    /// QEMU's exit status; `None` when the harness had to kill it.
    pub status: Option<i32>,
    /// Everything the guest wrote to COM1, lossily decoded.
    pub serial: String,
    /// QEMU's own complaints.
    pub stderr: String,
    /// Whether the timeout ran out.
    pub timed_out: bool,
    /// From spawning QEMU to its exit (or the kill).
    pub elapsed: Duration,
}

impl Boot {
    /// A boot of `image` on q35 with `-cpu max`, 128 MiB, and the debug-exit device.
    pub fn new(image: PathBuf) -> Boot {
        Boot {
            image,
            machine: "q35".into(),
            cpu: "max".into(),
            memory: "128M".into(),
            append: String::new(),
            debug_exit: true,
            timeout: Duration::from_secs(30),
            extra: Vec::new(),
            firmware: Firmware::Pvh,
            netns: None,
        }
    }

    /// A UEFI boot on q35 (`-cpu max`, 256 MiB) with OVMF and nothing to boot yet: add a
    /// [`Boot::boot_disk`] or [`Boot::pxe`]. OVMF's variable store is copied into `scratch`,
    /// which must outlive the boot. The kernel command line comes from the boot medium, not from
    /// [`Boot::append`].
    pub fn uefi(scratch: &Path) -> Boot {
        uefi::require_ovmf();
        let vars = scratch.join("ovmf-vars.fd");
        std::fs::copy(uefi::OVMF_VARS, &vars)
            .unwrap_or_else(|e| panic!("copying {} to {}: {e}", uefi::OVMF_VARS, vars.display()));
        Boot {
            memory: "256M".into(),
            timeout: Duration::from_secs(90),
            firmware: Firmware::Uefi {
                vars,
                disk: None,
                pxe: None,
                tpm: None,
            },
            ..Boot::new(PathBuf::new())
        }
    }

    /// UEFI: boot from this raw disk image (read-only, virtio); the firmware finds the loader
    /// on its EFI system partition.
    pub fn boot_disk(mut self, image: &Path) -> Boot {
        if let Firmware::Uefi { disk, .. } = &mut self.firmware {
            *disk = Some(image.to_path_buf());
        }
        self
    }

    /// UEFI: boot over PXE from QEMU's TFTP server serving `dir`, DHCP boot file `bootfile`.
    pub fn pxe(mut self, dir: &Path, bootfile: &str) -> Boot {
        if let Firmware::Uefi { pxe, .. } = &mut self.firmware {
            *pxe = Some((dir.to_path_buf(), bootfile.to_owned()));
        }
        self
    }

    /// UEFI: a TPM 2.0 on TIS backed by `tpm`.
    pub fn tpm(mut self, tpm: &uefi::Swtpm) -> Boot {
        if let Firmware::Uefi { tpm: t, .. } = &mut self.firmware {
            *t = Some(tpm.socket());
        }
        self
    }

    /// More QEMU arguments, after the harness's own (devices, drives, netdevs).
    pub fn args<S: AsRef<str>>(mut self, args: &[S]) -> Boot {
        self.extra
            .extend(args.iter().map(|a| a.as_ref().to_string()));
        self
    }

    /// A raw disk image as a virtio block device: `virtio-blk-pci` on PC machines,
    /// `virtio-blk-device` (virtio-mmio) on `microvm`. Writes reach the file.
    pub fn disk(self, image: &Path) -> Boot {
        let device = if self.machine.starts_with("microvm") {
            "virtio-blk-device,drive=disk0"
        } else {
            "virtio-blk-pci,drive=disk0"
        };
        let drive = format!("if=none,id=disk0,format=raw,file={}", image.display());
        self.args(&["-device", device, "-drive", &drive])
    }

    /// A virtio network card on PCI with Ethernet address `mac`, on the QEMU network backend
    /// `netdev` (`user,id=n0,...`, `tap,id=n0,...`): its `id=` names the card's backend. Cards
    /// are numbered in the order they are added (the manifest's `index`).
    pub fn nic(self, mac: &str, netdev: &str) -> Boot {
        let id = netdev
            .split(',')
            .find_map(|part| part.strip_prefix("id="))
            .unwrap_or_else(|| panic!("netdev {netdev:?} has no id=..."));
        let device = format!("virtio-net-pci,netdev={id},mac={mac}");
        self.args(&["-device", &device, "-netdev", netdev])
    }

    /// The QEMU machine type (`q35`, `pc`, `microvm`).
    pub fn machine(mut self, machine: &str) -> Boot {
        self.machine = machine.into();
        self
    }

    /// The CPU model and flags, as `-cpu` takes them.
    pub fn cpu(mut self, cpu: &str) -> Boot {
        self.cpu = cpu.into();
        self
    }

    /// Extra kernel command line, after the harness's own `brainix.exit` option.
    pub fn append(mut self, append: &str) -> Boot {
        self.append = append.into();
        self
    }

    /// Leaves out the debug-exit device and the option naming it.
    pub fn without_debug_exit(mut self) -> Boot {
        self.debug_exit = false;
        self
    }

    /// How long before QEMU is killed.
    pub fn timeout(mut self, timeout: Duration) -> Boot {
        self.timeout = timeout;
        self
    }

    /// Runs QEMU inside the network namespace `name` (through `ip netns exec`, which needs
    /// root), so a `tap` netdev opens that namespace's device and nothing of the host's.
    pub fn netns(mut self, name: &str) -> Boot {
        self.netns = Some(name.into());
        self
    }

    /// The full QEMU command.
    pub fn command(&self) -> Command {
        let mut cmd = match &self.netns {
            // `ip netns exec` enters the namespace and executes QEMU in its own place, so the
            // child the harness kills is QEMU itself.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "qemu-system-x86_64"]);
                c
            }
            None => Command::new("qemu-system-x86_64"),
        };
        let mut append = String::new();
        if self.debug_exit {
            cmd.args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
            append.push_str("brainix.exit=isa-debug-exit ");
        }
        append.push_str(&self.append);
        cmd.args([
            "-M",
            &self.machine,
            "-accel",
            "tcg",
            "-cpu",
            &self.cpu,
            "-m",
            &self.memory,
        ])
        .args([
            "-nodefaults",
            "-no-reboot",
            "-display",
            "none",
            "-serial",
            "stdio",
        ]);
        match &self.firmware {
            Firmware::Pvh => {
                cmd.arg("-kernel")
                    .arg(&self.image)
                    .args(["-append", append.trim_end()]);
            }
            Firmware::Uefi {
                vars,
                disk,
                pxe,
                tpm,
            } => {
                let drive = |kind: &str, path: &Path| format!("{kind}file={}", path.display());
                cmd.arg("-drive").arg(drive(
                    "if=pflash,format=raw,unit=0,readonly=on,",
                    Path::new(uefi::OVMF_CODE),
                ));
                cmd.arg("-drive")
                    .arg(drive("if=pflash,format=raw,unit=1,", vars));
                if let Some(disk) = disk {
                    cmd.arg("-drive")
                        .arg(drive("if=virtio,format=raw,readonly=on,", disk));
                }
                if let Some((dir, bootfile)) = pxe {
                    cmd.arg("-netdev").arg(format!(
                        "user,id=net0,tftp={},bootfile={bootfile}",
                        dir.display()
                    ));
                    // OVMF's own virtio-net driver and PXE stack, not QEMU's iPXE option ROM.
                    cmd.args(["-device", "virtio-net-pci,netdev=net0,romfile="]);
                }
                if let Some(socket) = tpm {
                    cmd.arg("-chardev")
                        .arg(format!("socket,id=chrtpm,path={}", socket.display()));
                    cmd.args([
                        "-tpmdev",
                        "emulator,id=tpm0,chardev=chrtpm",
                        "-device",
                        "tpm-tis,tpmdev=tpm0",
                    ]);
                }
            }
        }
        cmd.args(&self.extra);
        cmd
    }

    /// Boots and waits for QEMU to exit or the timeout to run out. QEMU is killed and reaped on
    /// every path, a panic in the caller included.
    pub fn run(&self) -> Outcome {
        let start = Instant::now();
        let child = self
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start qemu-system-x86_64 ({e}): install it with `sudo apt-get install -y qemu-system-x86`")
            });
        let mut child = Reaped(child);
        let stdout = child.0.stdout.take().map(drain);
        let stderr = child.0.stderr.take().map(drain);
        let mut timed_out = false;
        let status = loop {
            if let Some(status) = child.0.try_wait().expect("waiting for qemu") {
                break status.code();
            }
            if start.elapsed() >= self.timeout {
                timed_out = true;
                let _ = child.0.kill();
                let _ = child.0.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let elapsed = start.elapsed();
        let join = |h: Option<std::thread::JoinHandle<Vec<u8>>>| {
            String::from_utf8_lossy(&h.map(|h| h.join().unwrap_or_default()).unwrap_or_default())
                .into_owned()
        };
        Outcome {
            status,
            serial: join(stdout),
            stderr: join(stderr),
            timed_out,
            elapsed,
        }
    }
}

/// A running boot that a test talks to over the serial console.
pub struct Session {
    child: Reaped,
    stdin: std::process::ChildStdin,
    output: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    /// Bytes of `output` already matched by [`Session::expect`].
    seen: usize,
    started: Instant,
}

impl Boot {
    /// Boots with the console connected both ways and returns at once.
    pub fn spawn(&self) -> Session {
        let mut child = Reaped(
            self.command()
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start qemu-system-x86_64 ({e})")),
        );
        let stdin = child.0.stdin.take().expect("piped stdin");
        let mut stdout = child.0.stdout.take().expect("piped stdout");
        let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Session {
            child,
            stdin,
            output,
            seen: 0,
            started: Instant::now(),
        }
    }
}

impl Session {
    /// Waits until `needle` appears after what earlier calls matched, and returns the text up
    /// to and including it. Panics with the whole console so far when it does not come in
    /// `timeout` or QEMU exits first.
    pub fn expect(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let out = self.output.lock().unwrap();
                let text = String::from_utf8_lossy(&out[self.seen..]).into_owned();
                if let Some(at) = text.find(needle) {
                    let upto = text[..at + needle.len()].to_owned();
                    self.seen += upto.len();
                    return upto;
                }
            }
            let exited = matches!(self.child.0.try_wait(), Ok(Some(_)));
            if exited || Instant::now() >= deadline {
                // Let the reader thread drain what is left before reporting.
                std::thread::sleep(Duration::from_millis(50));
                panic!(
                    "{:?} did not appear within {timeout:?} (qemu exited: {exited}); console:\n{}",
                    needle,
                    self.console()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Types `line` and a carriage return on the console, one byte at a time as a person
    /// would, so a UART FIFO never overflows.
    pub fn type_line(&mut self, line: &str) {
        use std::io::Write;
        for b in line.bytes().chain([b'\r']) {
            let _ = self.stdin.write_all(&[b]);
            let _ = self.stdin.flush();
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Types `line` and returns what the console showed until `prompt` next appears (which
    /// includes the echo of the line itself).
    pub fn command(&mut self, line: &str, prompt: &str, timeout: Duration) -> String {
        self.type_line(line);
        self.expect(prompt, timeout)
    }

    /// Starts each of `programs` with the shell's `start <name>`, in order; returns where the
    /// console stood before, for [`Session::wait_for_line`] on what they print.
    pub fn start_all(&mut self, programs: &[&str], prompt: &str, timeout: Duration) -> usize {
        let from = self.console().len();
        for p in programs {
            self.command(&format!("start {p}"), prompt, timeout);
        }
        from
    }

    /// The shell's `ps` row for process `name`. Panics with the table when it has none.
    pub fn ps(&mut self, name: &str, prompt: &str, timeout: Duration) -> PsRow {
        let out = self.command("ps", prompt, timeout);
        out.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|w| w.len() > 5 && w[1] == name)
            .and_then(|w| {
                Some(PsRow {
                    pid: w[0].parse().ok()?,
                    state: w[2].to_owned(),
                    generation: w[5].parse().ok()?,
                })
            })
            .unwrap_or_else(|| panic!("no {name} in ps:\n{out}"))
    }

    /// Stops the running process `name` with the shell's `kill`, and checks that it stopped.
    pub fn stop(&mut self, name: &str, prompt: &str, timeout: Duration) {
        let pid = self.ps(name, prompt, timeout).pid;
        let out = self.command(&format!("kill {pid}"), prompt, timeout);
        assert!(
            out.contains(&format!("stopped pid {pid}")),
            "kill {name}: {out}"
        );
    }

    /// Waits until the console shows `needle` somewhere after byte `from` (for output a
    /// program prints on its own time) and returns the rest of that line. Panics with the
    /// console when it does not come in `timeout`.
    pub fn wait_for_line(&self, from: usize, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let console = self.console();
            if let Some(at) = console.get(from..).and_then(|t| t.find(needle)) {
                let rest = &console[from + at..];
                if let Some(end) = rest.find('\n') {
                    return rest[..end].trim_end_matches('\r').to_owned();
                }
            }
            assert!(
                Instant::now() < deadline,
                "{needle:?} did not appear within {timeout:?}; console:\n{console}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits (after console byte `from`) for the kernel to kill `process` for the fault
    /// injection's write at 0x10 (`brainix_rt::crash`) and for the supervisor to restart it;
    /// returns the generation it was launched with again. Panics, with the line, on any other
    /// death.
    pub fn crashed_and_restarted(&self, from: usize, process: &str, timeout: Duration) -> u64 {
        let fault = self.wait_for_line(from, &format!("brainix: FAULT: {process} "), timeout);
        assert!(
            fault.contains("killed: #PF page fault (vector 14)") && fault.contains("addr=0x10"),
            "{fault}"
        );
        let died = self.wait_for_line(from, &format!("[init] {process} "), timeout);
        assert!(
            died.contains("died: fault vector 14 at 0x10; restarting"),
            "{died}"
        );
        let launched = self.wait_for_line(from, &format!("brainix: launched {process} "), timeout);
        launched
            .split("generation ")
            .nth(1)
            .and_then(|g| g.trim_end_matches(')').split([')', ',']).next())
            .and_then(|g| g.trim().parse().ok())
            .unwrap_or_else(|| panic!("no generation in {launched:?}"))
    }

    /// Kills QEMU and waits for it to be gone (a TPM it used can then be read).
    pub fn kill(&mut self) {
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
    }

    /// Everything the console printed so far.
    pub fn console(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// What the console shows so far, as an [`Outcome`] of a boot that is still running.
    pub fn outcome(&self) -> Outcome {
        Outcome {
            status: None,
            serial: self.console(),
            stderr: String::new(),
            timed_out: false,
            elapsed: self.started.elapsed(),
        }
    }
}

/// A process as the shell's `ps` shows it.
#[derive(Clone, Debug)]
pub struct PsRow {
    pub pid: u64,
    /// `running`, `stopped`, `dead`, ...
    pub state: String,
    /// How many times it was launched.
    pub generation: u64,
}

/// A free host UDP port on the loopback address, for a QEMU `hostfwd` (taken, then released for
/// QEMU).
pub fn free_udp_port() -> u16 {
    free_port(
        "UDP",
        std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()),
    )
}

/// The port of the address a socket just bound to port 0 got (the socket is dropped, the port
/// released).
fn free_port(what: &str, bound: std::io::Result<std::net::SocketAddr>) -> u16 {
    bound
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free {what} port on 127.0.0.1: {e}"))
}

/// A host socket connected to a UDP echo server in the guest, reached through the host port
/// `port` that QEMU forwards, once an echo came back within `within` (the first datagrams may be
/// lost while QEMU learns the guest's address by ARP); late echoes of the warm-up are drained.
/// Reads on it then time out after 5 s.
pub fn udp_echo_socket(port: u16, s: &Session, within: Duration) -> std::net::UdpSocket {
    let host = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    host.connect(("127.0.0.1", port)).unwrap();
    host.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let until = Instant::now() + within;
    loop {
        host.send(b"warm-up").unwrap();
        if let Ok(n) = host.recv(&mut buf) {
            assert_eq!(&buf[..n], b"warm-up");
            break;
        }
        assert!(
            Instant::now() < until,
            "no echo through host port {port}:\n{}",
            s.console()
        );
    }
    // Late echoes of earlier warm-ups would be taken for answers: let them come, and drop them.
    host.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    while host.recv(&mut buf).is_ok() {}
    host.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    host
}

/// A free host TCP port on the loopback address, for a QEMU `hostfwd` (taken, then released for
/// QEMU).
pub fn free_tcp_port() -> u16 {
    free_port(
        "TCP",
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()),
    )
}

/// A connection to a TCP echo server in the guest, reached through the host port `port` that
/// QEMU forwards, once its echo works (within `within`). QEMU accepts on the host at once and
/// closes again when the guest did not answer, so this retries until a byte comes back; that
/// byte is read here, the echo of what follows is the caller's.
pub fn tcp_echo_connect(port: u16, s: &Session, within: Duration) -> std::net::TcpStream {
    use std::io::{Read, Write};
    let until = Instant::now() + within;
    loop {
        if let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut b = [0u8; 1];
            if c.write_all(b"?").is_ok() && c.read_exact(&mut b).is_ok() && &b == b"?" {
                c.set_read_timeout(None).unwrap();
                return c;
            }
        }
        assert!(
            Instant::now() < until,
            "no TCP echo through host port {port}:\n{}",
            s.console()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The host's side of one TCP echo: writes `data` (from a thread of its own, the echo flowing
/// back meanwhile), shuts its sending half, and reads the echo to the end (each read waiting at
/// most 60 s): what came back.
pub fn tcp_echo_over(stream: std::net::TcpStream, data: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut writer = stream.try_clone().unwrap();
    let data = data.to_vec();
    let sending = std::thread::spawn(move || {
        writer.write_all(&data).unwrap();
        writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    let mut reader = stream;
    reader
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    reader.read_to_end(&mut back).unwrap();
    sending.join().unwrap();
    back
}

/// `len` bytes of a pattern that `salt` varies and that does not repeat every 256 bytes, so a
/// byte lost, doubled or moved shows.
pub fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u8)
                .wrapping_mul(31)
                .wrapping_add(salt ^ (i >> 8) as u8)
        })
        .collect()
}

/// Whether `out` has a line that is exactly `text` (ignoring the line end).
pub fn has_line(out: &str, text: &str) -> bool {
    out.lines().any(|l| l.trim_end_matches('\r') == text)
}

/// A scratch file for one test (a disk image, say), removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// A path unique to this process and `name`, in the system's temporary directory.
    pub fn new(name: &str) -> Scratch {
        Scratch(std::env::temp_dir().join(format!("brainix-{}-{name}", std::process::id())))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Kills the child when dropped, so no QEMU outlives a failing test.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

impl Outcome {
    /// The first line that starts with `prefix`.
    pub fn line(&self, prefix: &str) -> Option<&str> {
        self.serial.lines().find(|l| l.starts_with(prefix))
    }

    /// The boot report's fields, when there is exactly one report line.
    pub fn boot_report(&self) -> Option<BTreeMap<String, String>> {
        let mut reports = self
            .serial
            .lines()
            .filter(|l| l.starts_with("BRAINIX-BOOT-REPORT v1 "));
        let line = reports.next()?;
        if reports.next().is_some() {
            return None;
        }
        Some(
            line.split_ascii_whitespace()
                .skip(2)
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    /// A readable dump for assertion messages.
    pub fn dump(&self) -> String {
        format!(
            "status={:?} timed_out={} elapsed={:?}\n--- serial ---\n{}\n--- qemu stderr ---\n{}",
            self.status, self.timed_out, self.elapsed, self.serial, self.stderr
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_report_needs_exactly_one_line() {
        let out = |serial: &str| Outcome {
            status: Some(33),
            serial: serial.into(),
            stderr: String::new(),
            timed_out: false,
            elapsed: Duration::ZERO,
        };
        let one = out("x\nBRAINIX-BOOT-REPORT v1 a=1 selfcheck=PASS junk\n");
        let r = one.boot_report().unwrap();
        assert_eq!(r["selfcheck"], "PASS");
        assert_eq!(r.len(), 2);
        assert!(
            out("BRAINIX-BOOT-REPORT v1 a=1\nBRAINIX-BOOT-REPORT v1 a=2\n")
                .boot_report()
                .is_none()
        );
        assert!(
            out("echo BRAINIX-BOOT-REPORT v1 a=1\n")
                .boot_report()
                .is_none()
        );
    }

    #[test]
    fn the_command_names_the_debug_exit_device_only_when_asked() {
        let with = format!("{:?}", Boot::new("k.elf".into()).append("x=1").command());
        assert!(
            with.contains("isa-debug-exit,iobase=0xf4")
                && with.contains("brainix.exit=isa-debug-exit x=1")
        );
        let without = format!(
            "{:?}",
            Boot::new("k.elf".into()).without_debug_exit().command()
        );
        assert!(!without.contains("isa-debug-exit"));
    }

    #[test]
    fn a_disk_is_a_virtio_block_device_of_the_machine_s_transport() {
        let pc = format!(
            "{:?}",
            Boot::new("k.elf".into()).disk(Path::new("d.img")).command()
        );
        assert!(
            pc.contains("virtio-blk-pci,drive=disk0") && pc.contains("file=d.img"),
            "{pc}"
        );
        let mvm = format!(
            "{:?}",
            Boot::new("k.elf".into())
                .machine("microvm")
                .disk(Path::new("d.img"))
                .command()
        );
        assert!(mvm.contains("virtio-blk-device,drive=disk0"), "{mvm}");
    }
}
