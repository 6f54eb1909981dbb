//! Physical boards: a per-board lock, image delivery (TFTP + iPXE script, or a command), power
//! (command templates or pdudaemon), and the console (a serial device through the serialport
//! crate, or a ser2net / RFC 2217 TCP endpoint).
//!
//! Order of a boot: lock → deliver image → power off → open console → power on → read → power
//! off → unlock. The console is open before power-on, so nothing the machine prints is lost. The
//! lock is an `flock(2)` on a file, so it dies with the process that holds it: a killed run never
//! leaves a stale lock, and a second run on the same board is refused while the first lives.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};

use super::process;
use crate::board::{Board, ConsoleMethod, ImageMethod, PhysicalBoard, PowerMethod};
use crate::console_log::ConsoleLog;
use crate::protocol::Nonce;
use crate::session::{self, ConsoleWriter, Limits, Observation, Script};
use crate::template::Template;

/// Default lock directory when the board and `$BRAINIX_LOCK_DIR` name none.
pub const DEFAULT_LOCK_DIR: &str = "/tmp/brainix-lab-locks";

/// Environment variable overriding the lock directory.
pub const LOCK_DIR_ENV: &str = "BRAINIX_LOCK_DIR";

/// Longest a power or image command may run before it counts as failed.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// Buffer between the console reader thread and the session: one pipe's worth.
pub const CONSOLE_BUFFER: usize = 64 * 1024;

/// How often the serial reader thread wakes to see whether it should stop.
pub const SERIAL_POLL: Duration = Duration::from_millis(100);

/// Why a physical boot could not run (all infrastructure: ERROR).
#[derive(Debug, thiserror::Error)]
pub enum PhysicalError {
    /// Another run holds the board.
    #[error("board `{board}` is in use ({holder}); lock file {path}")]
    Busy {
        /// Board.
        board: String,
        /// Who holds it, as far as the lock file says.
        holder: String,
        /// Lock file.
        path: PathBuf,
    },
    /// The lock file could not be created.
    #[error("cannot lock board: {0}")]
    Lock(String),
    /// The image did not reach the machine.
    #[error("image delivery failed: {0}")]
    Image(String),
    /// Power control failed.
    #[error("power {action} failed: {why}")]
    Power {
        /// on or off.
        action: &'static str,
        /// Why.
        why: String,
    },
    /// The console could not be opened.
    #[error("console: {0}")]
    Console(String),
}

/// An exclusive hold on one board, released when dropped or when the process dies.
#[derive(Debug)]
pub struct BoardLock {
    _file: File,
    /// The lock file.
    pub path: PathBuf,
}

impl BoardLock {
    /// Takes the lock for `board` in `dir` without waiting.
    pub fn acquire(dir: &Path, board: &str) -> Result<BoardLock, PhysicalError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| PhysicalError::Lock(format!("{}: {e}", dir.display())))?;
        let path = dir.join(format!("{board}.lock"));
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| PhysicalError::Lock(format!("{}: {e}", path.display())))?;
        // SAFETY: flock(2) on a descriptor this function owns; no memory is shared.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder
                    .trim()
                    .chars()
                    .filter(|c| c.is_ascii_graphic() || *c == ' ')
                    .take(120)
                    .collect::<String>();
                return Err(PhysicalError::Busy {
                    board: board.into(),
                    holder: if holder.is_empty() {
                        "unknown holder".into()
                    } else {
                        holder
                    },
                    path,
                });
            }
            return Err(PhysicalError::Lock(format!("{}: {err}", path.display())));
        }
        let _ = file.set_len(0);
        let _ = writeln!(
            file,
            "pid {} since unix {}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        );
        Ok(BoardLock { _file: file, path })
    }
}

/// The lock directory for a board.
pub fn lock_dir(p: &PhysicalBoard) -> PathBuf {
    p.lock_dir
        .clone()
        .or_else(|| std::env::var_os(LOCK_DIR_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_LOCK_DIR))
}

/// Splits `http://host:port[/path]` into host, port and path. Only plain HTTP is spoken.
pub fn parse_http_url(url: &str) -> Option<(String, u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_owned()),
        None => (rest, "/".to_owned()),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (hostport, 80),
    };
    if host.is_empty() || host.contains(['@', ' ']) {
        return None;
    }
    Some((host.to_owned(), port, path))
}

/// A minimal HTTP/1.0 GET; returns the status code. pdudaemon needs nothing more.
pub async fn http_get(url: &str) -> Result<u16, String> {
    let (host, port, path) =
        parse_http_url(url).ok_or_else(|| format!("`{url}` is not a plain http:// URL"))?;
    let fut = async {
        let mut s = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("connect {host}:{port}: {e}"))?;
        s.write_all(
            format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .map_err(|e| e.to_string())?;
        let mut head = vec![0u8; 256];
        let n = s.read(&mut head).await.map_err(|e| e.to_string())?;
        let line = String::from_utf8_lossy(&head[..n]);
        let code = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| {
                format!(
                    "not an HTTP response: {:?}",
                    line.lines().next().unwrap_or("")
                )
            })?;
        Ok(code)
    };
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .map_err(|_| "HTTP request timed out".to_string())?
}

/// Runs a command template with `values`; fails on a non-zero status or after [`COMMAND_TIMEOUT`].
pub async fn run_template(text: &str, values: &BTreeMap<&str, String>) -> Result<(), String> {
    let t = Template::parse(text).map_err(|e| e.to_string())?;
    let argv = t.expand(values);
    let mut cmd = process::quiet(&argv[0]);
    cmd.args(&argv[1..]).stderr(std::process::Stdio::piped());
    let mut child = process::spawn(&mut cmd, &argv[0])
        .map_err(|e| format!("cannot start `{}`: {e}", argv[0]))?;
    let mut err = child.child_mut().stderr.take();
    let status = tokio::time::timeout(COMMAND_TIMEOUT, child.wait())
        .await
        .map_err(|_| format!("`{}` did not finish in {COMMAND_TIMEOUT:?}", argv[0]))?;
    let mut msg = Vec::new();
    if let Some(e) = err.as_mut() {
        let _ = tokio::time::timeout(
            Duration::from_millis(200),
            e.take(4096).read_to_end(&mut msg),
        )
        .await;
    }
    match status {
        Some(0) => Ok(()),
        other => Err(format!(
            "`{}` exited with {other:?}: {}",
            argv[0],
            crate::console_log::escape_bytes(msg.trim_ascii())
        )),
    }
}

async fn power(board: &Board, p: &PhysicalBoard, on: bool) -> Result<(), PhysicalError> {
    let action = if on { "on" } else { "off" };
    let r = match &p.power {
        PowerMethod::Command {
            on: on_t,
            off: off_t,
            ..
        } => {
            let values = BTreeMap::from([
                ("board", board.name.clone()),
                ("action", action.to_string()),
            ]);
            run_template(if on { on_t } else { off_t }, &values).await
        }
        PowerMethod::Pdudaemon {
            url,
            hostname,
            port,
            ..
        } => {
            let full = pdudaemon_url(url, action, hostname, *port);
            match http_get(&full).await {
                Ok(c) if (200..300).contains(&c) => Ok(()),
                Ok(c) => Err(format!("pdudaemon answered HTTP {c}")),
                Err(e) => Err(e),
            }
        }
    };
    r.map_err(|why| PhysicalError::Power { action, why })
}

fn settle(p: &PhysicalBoard) -> Duration {
    match &p.power {
        PowerMethod::Command { settle_ms, .. } | PowerMethod::Pdudaemon { settle_ms, .. } => {
            Duration::from_millis(*settle_ms)
        }
    }
}

/// Puts the image where the machine will fetch it.
pub async fn deliver(
    board: &Board,
    p: &PhysicalBoard,
    image: &Path,
    cmdline: &str,
) -> Result<(), PhysicalError> {
    match &p.image {
        ImageMethod::Tftp {
            dir,
            ipxe_script,
            server,
        } => {
            let err = |what: &str, e: std::io::Error| PhysicalError::Image(format!("{what}: {e}"));
            std::fs::create_dir_all(dir).map_err(|e| err(&dir.display().to_string(), e))?;
            let file = format!("brainix-{}.elf", board.name);
            // Write then rename, so the machine never fetches a half-written image or script.
            let tmp = dir.join(format!(".{file}.tmp"));
            std::fs::copy(image, &tmp)
                .map_err(|e| err(&format!("copying {}", image.display()), e))?;
            std::fs::rename(&tmp, dir.join(&file)).map_err(|e| err("renaming the image", e))?;
            let script = format!("#!ipxe\nkernel tftp://{server}/{file} {cmdline}\nboot\n");
            let tmp = dir.join(format!(".{ipxe_script}.tmp"));
            std::fs::write(&tmp, script).map_err(|e| err("writing the iPXE script", e))?;
            std::fs::rename(&tmp, dir.join(ipxe_script))
                .map_err(|e| err("renaming the iPXE script", e))
        }
        ImageMethod::Command { command } => {
            let values = BTreeMap::from([
                ("board", board.name.clone()),
                ("image", image.display().to_string()),
                ("cmdline", cmdline.to_string()),
            ]);
            run_template(command, &values)
                .await
                .map_err(PhysicalError::Image)
        }
    }
}

/// An open console: the reading end, the transmit side, and what stops its threads.
pub struct Console {
    /// Bytes from the machine.
    pub reader: DuplexStream,
    /// Bytes to the machine; taken by the session that types on it.
    pub writer: Option<ConsoleWriter>,
    stop: Arc<AtomicBool>,
    reader_thread: Option<std::thread::JoinHandle<()>>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
    /// Description for the report.
    pub describe: String,
}

impl Drop for Console {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Close our end first so a reader blocked on a full pipe wakes up, then wait for the
        // thread: the device must be closed before the next boot on this board opens it.
        self.reader = tokio::io::duplex(1).0;
        self.writer = None;
        if let Some(t) = self.reader_thread.take() {
            let _ = t.join();
        }
        // The writer thread ends when the last writer handle is dropped (end of input); a
        // session that still holds one is its own bug, so wait only briefly, then let it go.
        if let Some(t) = self.writer_thread.take() {
            for _ in 0..20 {
                if t.is_finished() {
                    let _ = t.join();
                    break;
                }
                std::thread::sleep(SERIAL_POLL);
            }
        }
    }
}

/// Opens the board's console and starts moving its bytes into a bounded in-memory pipe.
pub async fn open_console(c: &ConsoleMethod) -> Result<Console, PhysicalError> {
    let (mut writer, reader) = tokio::io::duplex(CONSOLE_BUFFER);
    let stop = Arc::new(AtomicBool::new(false));
    let mut reader_thread = None;
    let mut writer_thread = None;
    let input: ConsoleWriter;
    let describe = match c {
        ConsoleMethod::Serial { device, baud, .. } => {
            let mut port = serialport::new(device.to_string_lossy(), *baud)
                .timeout(SERIAL_POLL)
                .open_native()
                .map_err(|e| {
                    PhysicalError::Console(format!("opening {}: {e}", device.display()))
                })?;
            let handle = tokio::runtime::Handle::current();
            let flag = stop.clone();
            let mut tx_port = port.try_clone_native().map_err(|e| {
                PhysicalError::Console(format!("opening {} for writing: {e}", device.display()))
            })?;
            let (typed, mut typed_rx) = tokio::io::duplex(TYPED_BUFFER);
            input = Box::new(typed);
            let tx_handle = handle.clone();
            writer_thread = Some(std::thread::spawn(move || {
                let mut buf = [0u8; TYPED_BUFFER];
                // Ends at end of input (every writer handle dropped) or when the port fails.
                while let Ok(n @ 1..) = tx_handle.block_on(typed_rx.read(&mut buf)) {
                    if port_write_all(&mut tx_port, &buf[..n]).is_err() {
                        break;
                    }
                }
            }));
            reader_thread = Some(std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !flag.load(Ordering::SeqCst) {
                    match port.read(&mut buf) {
                        Ok(0) => std::thread::sleep(SERIAL_POLL),
                        Ok(n) => {
                            if handle.block_on(writer.write_all(&buf[..n])).is_err() {
                                break;
                            }
                        }
                        Err(e)
                            if e.kind() == std::io::ErrorKind::TimedOut
                                || e.kind() == std::io::ErrorKind::Interrupted => {}
                        // A pty whose other side is not open yet reads EIO: wait, do not give up.
                        Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                            std::thread::sleep(SERIAL_POLL)
                        }
                        Err(_) => break,
                    }
                }
            }));
            format!("serial {} at {baud} baud", device.display())
        }
        ConsoleMethod::Tcp {
            address, rfc2217, ..
        } => {
            let stream = tokio::net::TcpStream::connect(address.as_str())
                .await
                .map_err(|e| PhysicalError::Console(format!("connecting to {address}: {e}")))?;
            let (mut stream, tx) = stream.into_split();
            // Typed text is printable ASCII (plans are checked), so no telnet IAC escaping.
            input = Box::new(tx);
            let telnet = *rfc2217;
            let flag = stop.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut iac = TelnetFilter::default();
                while !flag.load(Ordering::SeqCst) {
                    match tokio::time::timeout(SERIAL_POLL, stream.read(&mut buf)).await {
                        Ok(Ok(0)) | Ok(Err(_)) => break,
                        Ok(Ok(n)) => {
                            let data = if telnet {
                                iac.filter(&buf[..n])
                            } else {
                                buf[..n].to_vec()
                            };
                            if writer.write_all(&data).await.is_err() {
                                break;
                            }
                        }
                        Err(_) => {}
                    }
                }
            });
            format!("tcp {address}{}", if telnet { " (RFC 2217)" } else { "" })
        }
    };
    Ok(Console {
        reader,
        writer: Some(input),
        stop,
        reader_thread,
        writer_thread,
        describe,
    })
}

/// Bytes buffered between the session's typing and the serial writer thread.
const TYPED_BUFFER: usize = 1024;

/// Writes all of `data` to a serial port, waiting out its write timeouts.
fn port_write_all(port: &mut serialport::TTYPort, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        match port.write(data) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e)
                if e.kind() == std::io::ErrorKind::TimedOut
                    || e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    port.flush()
}

/// Removes telnet (RFC 854/2217) command sequences from a byte stream; `IAC IAC` is a data 0xff.
#[derive(Debug, Default)]
pub struct TelnetFilter {
    state: u8,
}

impl TelnetFilter {
    const IAC: u8 = 255;
    const SB: u8 = 250;
    const SE: u8 = 240;

    /// Filters one chunk; state carries across chunks.
    pub fn filter(&mut self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len());
        for &b in data {
            self.state = match (self.state, b) {
                (0, Self::IAC) => 1,
                (0, _) => {
                    out.push(b);
                    0
                }
                (1, Self::IAC) => {
                    out.push(b);
                    0
                }
                (1, Self::SB) => 3,
                (1, 251..=254) => 2, // WILL/WONT/DO/DONT take one option byte
                (1, _) => 0,
                (2, _) => 0,
                (3, Self::IAC) => 4,
                (3, _) => 3,
                (4, Self::SE) => 0,
                (4, _) => 3,
                _ => 0,
            };
        }
        out
    }
}

/// Types `text` and a newline on a console, waiting `delay` after every byte (targets without a
/// receive FIFO drop characters otherwise).
pub async fn type_line<W: AsyncWrite + Unpin>(
    w: &mut W,
    text: &str,
    delay: Duration,
) -> std::io::Result<()> {
    for b in text.bytes().chain(std::iter::once(b'\n')) {
        w.write_all(&[b]).await?;
        w.flush().await?;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
    Ok(())
}

/// Switches the machine off when dropped early (cancellation, Ctrl-C), so it is never left
/// running unattended. The normal path switches off explicitly and disarms it.
struct PowerOffOnDrop {
    off: Option<OffAction>,
}

/// How to switch a board off without the async runtime (from a destructor).
enum OffAction {
    Argv(Vec<String>),
    Url(String),
}

impl Drop for PowerOffOnDrop {
    fn drop(&mut self) {
        match self.off.take() {
            Some(OffAction::Argv(argv)) => {
                let _ = std::process::Command::new(&argv[0])
                    .args(&argv[1..])
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status();
            }
            Some(OffAction::Url(url)) => {
                let _ = http_get_blocking(&url);
            }
            None => {}
        }
    }
}

/// [`http_get`] for destructors: plain blocking sockets with short timeouts.
fn http_get_blocking(url: &str) -> Option<u16> {
    use std::net::ToSocketAddrs;
    let (host, port, path) = parse_http_url(url)?;
    let addr = (host.as_str(), port).to_socket_addrs().ok()?.next()?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(
        format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .ok()?;
    let mut head = [0u8; 256];
    let n = s.read(&mut head).ok()?;
    String::from_utf8_lossy(&head[..n])
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn pdudaemon_url(url: &str, action: &str, hostname: &str, port: u32) -> String {
    format!(
        "{}/power/control/{action}?hostname={hostname}&port={port}",
        url.trim_end_matches('/')
    )
}

/// One boot on a physical board. Every failure here is infrastructure (ERROR).
#[allow(clippy::too_many_arguments)]
pub async fn boot(
    board: &Board,
    p: &PhysicalBoard,
    image: &Path,
    cmdline: &str,
    nonce: Nonce,
    limits: &Limits,
    watch: &[String],
    log: &mut ConsoleLog,
    script: Option<Script>,
) -> Result<(Observation, Vec<String>), PhysicalError> {
    let lock = BoardLock::acquire(&lock_dir(p), &board.name)?;
    deliver(board, p, image, cmdline).await?;
    power(board, p, false).await?;
    tokio::time::sleep(settle(p)).await;
    let mut console = open_console(&p.console).await?;
    let mut off_guard = PowerOffOnDrop {
        off: match &p.power {
            PowerMethod::Command { off, .. } => Template::parse(off).ok().map(|t| {
                OffAction::Argv(t.expand(&BTreeMap::from([
                    ("board", board.name.clone()),
                    ("action", "off".to_string()),
                ])))
            }),
            PowerMethod::Pdudaemon {
                url,
                hostname,
                port,
                ..
            } => Some(OffAction::Url(pdudaemon_url(url, "off", hostname, *port))),
        },
    };
    power(board, p, true).await?;
    let input = match (script, console.writer.take()) {
        (Some(s), Some(w)) => Some((s, w)),
        _ => None,
    };
    let obs = session::drive_with(
        &mut console.reader,
        input,
        std::future::pending(),
        nonce,
        limits,
        watch,
        log,
    )
    .await;
    let mut describe = describe_of(p);
    describe[0] = format!("console: {}", console.describe);
    drop(console);
    let off = power(board, p, false).await;
    off_guard.off = None;
    drop(lock);
    off?;
    Ok((obs, describe))
}

fn describe_of(p: &PhysicalBoard) -> Vec<String> {
    let console = match &p.console {
        ConsoleMethod::Serial { device, baud, .. } => {
            format!("console: serial {} {baud}", device.display())
        }
        ConsoleMethod::Tcp {
            address, rfc2217, ..
        } => format!("console: tcp {address} rfc2217={rfc2217}"),
    };
    let power = match &p.power {
        PowerMethod::Command { on, .. } => format!("power on: {on}"),
        PowerMethod::Pdudaemon {
            url,
            hostname,
            port,
            ..
        } => format!("power: pdudaemon {url} {hostname} port {port}"),
    };
    let image = match &p.image {
        ImageMethod::Tftp {
            dir, ipxe_script, ..
        } => format!("image: tftp {}/{ipxe_script}", dir.display()),
        ImageMethod::Command { command } => format!("image: {command}"),
    };
    vec![console, power, image]
}

/// Reads any async stream to the end (test helper for consoles).
pub async fn read_all<R: AsyncRead + Unpin>(mut r: R) -> Vec<u8> {
    let mut v = Vec::new();
    let _ = r.read_to_end(&mut v).await;
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let a = BoardLock::acquire(dir.path(), "b").unwrap();
        match BoardLock::acquire(dir.path(), "b") {
            Err(PhysicalError::Busy { holder, .. }) => assert!(
                holder.contains(&format!("pid {}", std::process::id())),
                "{holder}"
            ),
            other => panic!("second lock was not refused: {other:?}"),
        }
        drop(a);
        BoardLock::acquire(dir.path(), "b").unwrap();
    }

    #[test]
    fn a_lock_held_by_a_killed_process_is_free_again() {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.lock");
        std::fs::write(&path, "").unwrap();
        // The holder and everything it forks form one process group, as a lab-runner run does.
        let mut holder = std::process::Command::new("flock")
            .arg("-x")
            .arg(&path)
            .args(["sleep", "300"])
            .process_group(0)
            .spawn()
            .unwrap();
        let mut refused = false;
        for _ in 0..100 {
            if matches!(
                BoardLock::acquire(dir.path(), "b"),
                Err(PhysicalError::Busy { .. })
            ) {
                refused = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(refused, "the other process's lock was never seen");
        // SAFETY: kill(2) on the process group created for the holder above.
        unsafe {
            libc::kill(-(holder.id() as i32), libc::SIGKILL);
        }
        holder.wait().unwrap();
        let mut last = None;
        for _ in 0..100 {
            match BoardLock::acquire(dir.path(), "b") {
                Ok(_) => return,
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("lock not released after its holder was killed: {last:?}");
    }

    #[test]
    fn telnet_commands_are_stripped_across_chunks() {
        let mut f = TelnetFilter::default();
        let mut out = f.filter(&[b'a', 255, 251]);
        out.extend(f.filter(&[1, b'b', 255, 255, b'c', 255, 250, 44, 1, 2, 255, 240, b'd']));
        assert_eq!(out, [b'a', b'b', 255, b'c', b'd']);
    }

    #[tokio::test]
    async fn an_rfc2217_console_delivers_data_without_telnet_commands() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            // WILL ECHO, a subnegotiation, then data with an escaped 0xff.
            s.write_all(&[255, 251, 1, 255, 250, 44, 1, 0, 255, 240])
                .await
                .unwrap();
            s.write_all(b"brainix: hi ").await.unwrap();
            s.write_all(&[255, 255, b'\n']).await.unwrap();
        });
        let mut c = open_console(&ConsoleMethod::Tcp {
            address,
            rfc2217: true,
            tx_char_delay_ms: 0,
        })
        .await
        .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while !got.ends_with(b"\n") {
            let n = tokio::time::timeout(Duration::from_secs(5), c.reader.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "console closed early: {got:?}");
            got.extend_from_slice(&buf[..n]);
        }
        let mut want = b"brainix: hi ".to_vec();
        want.extend_from_slice(&[255, b'\n']);
        assert_eq!(got, want);
    }

    #[test]
    fn a_cancelled_boot_switches_the_board_off() {
        let dir = tempfile::tempdir().unwrap();
        let mark = dir.path().join("off");
        drop(PowerOffOnDrop {
            off: Some(OffAction::Argv(vec![
                "sh".into(),
                "-c".into(),
                format!("echo off > {}", mark.display()),
            ])),
        });
        assert_eq!(std::fs::read_to_string(&mark).unwrap(), "off\n");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = pdudaemon_url(
            &format!("http://{}", listener.local_addr().unwrap()),
            "off",
            "pdu",
            4,
        );
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 512];
            let n = s.read(&mut buf).unwrap();
            s.write_all(b"HTTP/1.0 200 OK\r\n\r\n").unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        drop(PowerOffOnDrop {
            off: Some(OffAction::Url(url)),
        });
        assert!(
            server
                .join()
                .unwrap()
                .starts_with("GET /power/control/off?hostname=pdu&port=4 ")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn typing_waits_between_characters() {
        let (mut w, r) = tokio::io::duplex(64);
        let start = tokio::time::Instant::now();
        type_line(&mut w, "caps", Duration::from_millis(10))
            .await
            .unwrap();
        drop(w);
        assert_eq!(start.elapsed(), Duration::from_millis(50));
        assert_eq!(read_all(r).await, b"caps\n");
    }

    #[tokio::test]
    async fn pdudaemon_requests_reach_the_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 1024];
            let n = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.0 200 OK\r\n\r\n").await.unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        let code = http_get(&format!(
            "http://127.0.0.1:{port}/power/control/on?hostname=pdu&port=3"
        ))
        .await
        .unwrap();
        assert_eq!(code, 200);
        assert!(
            server
                .await
                .unwrap()
                .starts_with("GET /power/control/on?hostname=pdu&port=3 HTTP/1.0")
        );
        assert!(http_get("https://x").await.is_err());
    }

    #[tokio::test]
    async fn failing_commands_are_reported_with_their_stderr() {
        let ok = run_template("true", &BTreeMap::new()).await;
        assert!(ok.is_ok());
        let err = run_template("sh -c 'echo relay stuck >&2; exit 3'", &BTreeMap::new())
            .await
            .unwrap_err();
        assert!(
            err.contains("Some(3)") && err.contains("relay stuck"),
            "{err}"
        );
        assert!(
            run_template("/nonexistent/power-tool", &BTreeMap::new())
                .await
                .is_err()
        );
    }
}
