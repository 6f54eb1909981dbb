//! The file commands: requests to the filesystem server ([`brainix_proto::fs`]).

use crate::Shell;
use crate::bench::FsBench;
use brainix_abi::{Error, Message};
use brainix_proto::{fs, status};
use brainix_rt::sys::rdtsc;
use brainix_rt::{cap, print, println};

/// Bytes moved per `READ` (the filesystem server's largest).
pub const CHUNK: usize = 64 * 1024;

/// The buffer `cat` and `fs-bench` read into: 64 KiB, too big for the shell's stack.
struct Chunk(core::cell::UnsafeCell<[u8; CHUNK]>);
// SAFETY: the shell is one thread and `with_chunk` is never re-entered.
unsafe impl Sync for Chunk {}
static BUF: Chunk = Chunk(core::cell::UnsafeCell::new([0; CHUNK]));

fn with_chunk<R>(f: impl FnOnce(&mut [u8; CHUNK]) -> R) -> R {
    // SAFETY: see `Chunk`: one thread, and no caller of `with_chunk` calls it again inside `f`.
    f(unsafe { &mut *BUF.0.get() })
}

/// What a refusal means to someone at the shell.
fn why(e: Error) -> &'static str {
    match e {
        Error::NotFound => "no such file",
        Error::Corrupt => "the data on disk fails its checksum (corrupt); not shown",
        Error::PeerDead => "no filesystem or block server is running (is there a disk?)",
        Error::NoSpace => "the disk is full",
        Error::OutOfRange => "bad name, offset or size",
        Error::Io => "the disk reported an error",
        other => other.name(),
    }
}

fn named(label: u64, name: &str) -> Result<Message, Error> {
    if !fs::valid_name(name.as_bytes()) {
        return Err(Error::OutOfRange);
    }
    let mut msg = Message::new(label);
    msg.payload[..name.len()].copy_from_slice(name.as_bytes());
    msg.len = name.len() as u64;
    Ok(msg)
}

impl Shell {
    fn fs_call(&self, msg: &Message, leases: &[cap::Lent<'_>]) -> cap::Result<Message> {
        let mut reply = Message::new(0);
        self.fs.call(msg, leases, &mut reply)?;
        status(&reply)?;
        Ok(reply)
    }

    /// `READ` of up to `buf.len()` bytes at `offset`.
    fn read_at(&self, name: &str, offset: u64, buf: &mut [u8]) -> cap::Result<usize> {
        let mut msg = named(fs::READ, name)?;
        msg.regs[0] = offset;
        msg.regs[1] = buf.len() as u64;
        let reply = self.fs_call(&msg, &[cap::lend_mut(buf)])?;
        Ok((reply.regs[0] as usize).min(buf.len()))
    }

    pub(crate) fn ls(&self) {
        let mut from = 0;
        let mut files = 0;
        loop {
            let mut msg = Message::new(fs::LIST);
            msg.regs[0] = from;
            match self.fs_call(&msg, &[]) {
                Ok(reply) => {
                    let name = reply.data().unwrap_or(&[]);
                    let name = core::str::from_utf8(name).unwrap_or("?");
                    println!("{:>8}  {name}", reply.regs[1]);
                    from = reply.regs[0] + 1;
                    files += 1;
                }
                Err(Error::NotFound) => break,
                Err(e) => return println!("error: ls: {}", why(e)),
            }
        }
        println!("{files} file(s)");
    }

    pub(crate) fn cat(&self, name: &str) {
        with_chunk(|buf| {
            let mut offset = 0u64;
            let mut last = b'\n';
            loop {
                match self.read_at(name, offset, &mut buf[..]) {
                    Ok(0) => break,
                    Ok(n) => {
                        print_text(&buf[..n]);
                        last = buf[n - 1];
                        offset += n as u64;
                    }
                    Err(e) => {
                        if last != b'\n' {
                            println!();
                        }
                        return println!("error: cat {name}: {}", why(e));
                    }
                }
            }
            if last != b'\n' {
                println!();
            }
        })
    }

    pub(crate) fn write(&self, name: &str, text: &str) {
        let mut data = [0u8; brainix_proto::console::LINE_MAX + 1];
        let n = text.len().min(data.len() - 1);
        data[..n].copy_from_slice(&text.as_bytes()[..n]);
        data[n] = b'\n';
        let result = named(fs::WRITE, name).and_then(|mut msg| {
            msg.regs = [0, fs::TRUNCATE, n as u64 + 1, 0];
            self.fs_call(&msg, &[cap::lend(&data[..n + 1])])
        });
        match result {
            Ok(_) => println!("wrote {} bytes to {name}", n + 1),
            Err(e) => println!("error: write {name}: {}", why(e)),
        }
    }

    pub(crate) fn rm(&self, name: &str) {
        match named(fs::REMOVE, name).and_then(|m| self.fs_call(&m, &[])) {
            Ok(_) => println!("removed {name}"),
            Err(e) => println!("error: rm {name}: {}", why(e)),
        }
    }

    pub(crate) fn stat(&self, name: &str) {
        match named(fs::STAT, name).and_then(|m| self.fs_call(&m, &[])) {
            Ok(r) => println!(
                "{name}: {} bytes, {} block(s), entry {}",
                r.regs[0], r.regs[1], r.regs[2]
            ),
            Err(e) => println!("error: stat {name}: {}", why(e)),
        }
    }

    pub(crate) fn df(&self) {
        match self.fs_call(&Message::new(fs::INFO), &[]) {
            Ok(r) => println!(
                "{} of {} blocks free ({} KiB); {} of {} files",
                r.regs[1],
                r.regs[0],
                r.regs[1] * 4,
                r.regs[2],
                r.regs[3]
            ),
            Err(e) => println!("error: df: {}", why(e)),
        }
    }

    /// Reads the whole file through the filesystem (shell, filesystem, block server, device),
    /// then asks the filesystem to read it itself (filesystem, block server, device), and
    /// prints both rates.
    pub(crate) fn fs_bench(&self, name: &str) {
        let result = with_chunk(|buf| -> cap::Result<FsBench> {
            let (ms0, tsc0) = cap::uptime()?;
            // Warm-up: the first pass pays for the host's page cache.
            let mut offset = 0u64;
            loop {
                match self.read_at(name, offset, &mut buf[..])? {
                    0 => break,
                    n => offset += n as u64,
                }
            }
            let bytes = offset;
            let start = rdtsc();
            offset = 0;
            loop {
                match self.read_at(name, offset, &mut buf[..])? {
                    0 => break,
                    n => offset += n as u64,
                }
            }
            let file_ticks = rdtsc().wrapping_sub(start);
            let reply = self.fs_call(&named(fs::BENCH, name)?, &[])?;
            let (ms1, tsc1) = cap::uptime()?;
            if reply.regs[0] != bytes || offset != bytes {
                return Err(Error::Io);
            }
            Ok(FsBench {
                bytes,
                file_ticks,
                direct_ticks: reply.regs[1],
                tsc_per_ms: tsc1.wrapping_sub(tsc0) / ms1.saturating_sub(ms0).max(1),
            })
        });
        match result {
            Ok(b) if b.bytes == 0 => println!("error: fs-bench {name}: the file is empty"),
            Ok(b) => println!("{b}"),
            Err(e) => println!("error: fs-bench {name}: {}", why(e)),
        }
    }
}

/// Prints file bytes, anything unprintable as `.`.
fn print_text(bytes: &[u8]) {
    let mut line = brainix_rt::fmt::Buffer::<512>::new();
    for chunk in bytes.chunks(512) {
        line.clear();
        for &b in chunk {
            let c = if b == b'\n' || b == b'\t' || (0x20..0x7f).contains(&b) {
                b
            } else {
                b'.'
            };
            line.push(&[c]);
        }
        print!("{}", line.as_str());
    }
}
