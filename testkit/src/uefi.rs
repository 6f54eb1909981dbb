//! UEFI boots: OVMF firmware, a software TPM (swtpm), per-boot scratch directories, and reading
//! PCRs from the TPM from the host.
//!
//! The PCRs are read by the harness, not by anything in the guest: once QEMU is gone, the harness
//! connects to swtpm's control socket, hands it a fresh data channel (`CMD_SET_DATAFD`, the way
//! QEMU does) and sends `TPM2_PCR_Read`. swtpm keeps the TPM's state when QEMU dies, so what it
//! returns is exactly what the firmware and the loader extended.

use std::io::{Read, Write};
use std::os::unix::io::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// OVMF's code image (read-only pflash), as Debian's `ovmf` package installs it.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// The template of OVMF's variable store; every boot gets its own copy.
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// How long swtpm may take to create its control socket.
const SWTPM_READY: Duration = Duration::from_secs(5);

/// A directory that is removed when dropped. Short paths under the system temp directory,
/// because Unix socket paths are limited to 108 bytes.
#[derive(Debug)]
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// A new empty directory named after `tag`.
    pub fn new(tag: &str) -> ScratchDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("bnx-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        ScratchDir(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Panics with the install command when OVMF is missing.
pub fn require_ovmf() {
    for f in [OVMF_CODE, OVMF_VARS] {
        assert!(
            Path::new(f).is_file(),
            "{f} is missing: install OVMF with `sudo apt-get install -y ovmf`"
        );
    }
}

/// A running swtpm (TPM 2.0) with its own state directory; killed and removed when dropped.
pub struct Swtpm {
    child: Child,
    dir: ScratchDir,
}

impl Swtpm {
    /// Starts a fresh TPM and waits for its control socket.
    pub fn start() -> Swtpm {
        let dir = ScratchDir::new("tpm");
        let socket = dir.path().join("ctrl.sock");
        let child = Command::new("swtpm")
            .args(["socket", "--tpm2", "--tpmstate"])
            .arg(format!("dir={}", dir.path().display()))
            .arg("--ctrl")
            .arg(format!("type=unixio,path={}", socket.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start swtpm ({e}): install it with `sudo apt-get install -y swtpm swtpm-tools`")
            });
        let tpm = Swtpm { child, dir };
        let deadline = Instant::now() + SWTPM_READY;
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "swtpm made no control socket in {SWTPM_READY:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        tpm
    }

    /// The control socket QEMU's `-chardev socket` connects to.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("ctrl.sock")
    }

    /// Reads SHA-256 PCRs (at most eight) from the TPM. Call it after QEMU has exited or been
    /// killed: swtpm serves one control connection at a time.
    pub fn read_pcrs(&self, pcrs: &[u32]) -> Result<Vec<[u8; 32]>, String> {
        read_pcrs(&self.socket(), pcrs)
    }
}

/// Reads SHA-256 PCRs (at most eight) from the swtpm whose control socket is `socket`, once no
/// QEMU holds it (swtpm serves one control connection at a time). lab-runner uses this too.
pub fn read_pcrs(socket: &Path, pcrs: &[u32]) -> Result<Vec<[u8; 32]>, String> {
    if pcrs.is_empty() || pcrs.len() > 8 || pcrs.iter().any(|p| *p > 23) {
        return Err(format!("cannot read PCRs {pcrs:?} in one command"));
    }
    let ctrl = UnixStream::connect(socket)
        .map_err(|e| format!("connecting to swtpm's control socket: {e}"))?;
    ctrl.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let (ours, theirs) = UnixStream::pair().map_err(|e| format!("making a data channel: {e}"))?;
    ours.set_read_timeout(Some(Duration::from_secs(5))).ok();
    // CMD_SET_DATAFD (16), with the data channel's other end attached.
    send_fd(&ctrl, &16u32.to_be_bytes(), theirs.as_raw_fd())
        .map_err(|e| format!("passing swtpm a data channel: {e}"))?;
    drop(theirs);
    let mut result = [0u8; 4];
    (&ctrl)
        .read_exact(&mut result)
        .map_err(|e| format!("swtpm did not answer CMD_SET_DATAFD: {e}"))?;
    if result != [0; 4] {
        return Err(format!("swtpm refused CMD_SET_DATAFD: {result:02x?}"));
    }
    let mut ours = ours;
    ours.write_all(&pcr_read_command(pcrs))
        .map_err(|e| format!("sending TPM2_PCR_Read: {e}"))?;
    let mut head = [0u8; 10];
    ours.read_exact(&mut head)
        .map_err(|e| format!("reading the TPM's answer: {e}"))?;
    let size = u32::from_be_bytes(head[2..6].try_into().unwrap()) as usize;
    let rc = u32::from_be_bytes(head[6..10].try_into().unwrap());
    if rc != 0 || !(10..=4096).contains(&size) {
        return Err(format!("TPM2_PCR_Read failed: rc {rc:#x}, {size} bytes"));
    }
    let mut body = vec![0u8; size - 10];
    ours.read_exact(&mut body)
        .map_err(|e| format!("reading the TPM's answer: {e}"))?;
    parse_pcr_read(&body, pcrs.len())
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `TPM2_PCR_Read` for `pcrs` in the SHA-256 bank.
fn pcr_read_command(pcrs: &[u32]) -> Vec<u8> {
    let mut select = [0u8; 3];
    for p in pcrs {
        select[*p as usize / 8] |= 1 << (p % 8);
    }
    let mut body = Vec::new();
    body.extend_from_slice(&1u32.to_be_bytes()); // one selection
    body.extend_from_slice(&0x000bu16.to_be_bytes()); // TPM_ALG_SHA256
    body.push(3);
    body.extend_from_slice(&select);
    let mut cmd = Vec::new();
    cmd.extend_from_slice(&0x8001u16.to_be_bytes()); // TPM_ST_NO_SESSIONS
    cmd.extend_from_slice(&(10 + body.len() as u32).to_be_bytes());
    cmd.extend_from_slice(&0x0000_017eu32.to_be_bytes()); // TPM_CC_PCR_Read
    cmd.extend_from_slice(&body);
    cmd
}

/// The digests of a `TPM2_PCR_Read` answer, in PCR order.
fn parse_pcr_read(body: &[u8], want: usize) -> Result<Vec<[u8; 32]>, String> {
    let bad = || format!("malformed TPM2_PCR_Read answer: {body:02x?}");
    let u16_at = |at: usize| {
        body.get(at..at + 2)
            .map(|b| u16::from_be_bytes(b.try_into().unwrap()))
    };
    let u32_at = |at: usize| {
        body.get(at..at + 4)
            .map(|b| u32::from_be_bytes(b.try_into().unwrap()))
    };
    // pcrUpdateCounter, then the selection that was read.
    let mut at = 4;
    let selections = u32_at(at).ok_or_else(bad)?;
    at += 4;
    for _ in 0..selections {
        let size = *body.get(at + 2).ok_or_else(bad)? as usize;
        at += 3 + size;
    }
    let count = u32_at(at).ok_or_else(bad)? as usize;
    at += 4;
    if count != want {
        return Err(format!(
            "the TPM returned {count} of {want} PCRs (is the SHA-256 bank active?)"
        ));
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let size = u16_at(at).ok_or_else(bad)? as usize;
        let digest = body.get(at + 2..at + 2 + size).ok_or_else(bad)?;
        out.push(digest.try_into().map_err(|_| bad())?);
        at += 2 + size;
    }
    Ok(out)
}

/// Sends `payload` with `fd` attached (SCM_RIGHTS), as swtpm's `CMD_SET_DATAFD` expects.
fn send_fd(sock: &UnixStream, payload: &[u8], fd: RawFd) -> std::io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    };
    // Room for one descriptor, aligned for cmsghdr.
    let mut control = [0u64; 4];
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    assert!(space <= std::mem::size_of_val(&control));
    // SAFETY: an all-zero msghdr is a valid empty message.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space;
    // SAFETY: msg_control points at `space` writable, aligned bytes, enough for one header
    // and one descriptor, so CMSG_FIRSTHDR is non-null and CMSG_DATA is inside the buffer;
    // `sendmsg` reads only `msg`, `iov` and `control`, which outlive the call.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        if libc::sendmsg(sock.as_raw_fd(), &msg, 0) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcr_read_command_selects_the_right_bits() {
        let cmd = pcr_read_command(&[4, 9, 12]);
        assert_eq!(&cmd[..10], &[0x80, 0x01, 0, 0, 0, 20, 0, 0, 0x01, 0x7e]);
        assert_eq!(&cmd[10..], &[0, 0, 0, 1, 0, 0x0b, 3, 0x10, 0x12, 0]);
    }

    #[test]
    fn a_pcr_read_answer_parses_and_short_answers_are_errors() {
        let mut body = vec![
            0, 0, 0, 7, 0, 0, 0, 1, 0, 0x0b, 3, 0x10, 0x12, 0, 0, 0, 0, 2,
        ];
        for v in [1u8, 2] {
            body.extend_from_slice(&[0, 32]);
            body.extend_from_slice(&[v; 32]);
        }
        assert_eq!(parse_pcr_read(&body, 2).unwrap(), vec![[1; 32], [2; 32]]);
        assert!(parse_pcr_read(&body, 3).is_err());
        for n in 0..body.len() {
            assert!(parse_pcr_read(&body[..n], 2).is_err(), "prefix {n}");
        }
    }
}
