//! The request loop.

use crate::blocks::BlockServer;
use brainix_abi::{Error, FOREVER, Message};
use brainix_fs_format::{Fs, FsError};
use brainix_proto::fs::{self, slots};
use brainix_proto::{launch_handle, status_of};
use brainix_rt::fmt::Buffer;
use brainix_rt::sys::rdtsc;
use brainix_rt::{Endpoint, Log, Received, ReplyToken, cap};
use core::fmt::Write;

/// Largest `READ` or `WRITE` in one call: one buffer, and the block server's largest request.
pub const IO_MAX: usize = 64 * 1024;

struct Server {
    fs: Fs<BlockServer>,
    /// The last reason a mount failed, so it is logged once, not at every request.
    mount_error: Option<FsError>,
    buf: [u8; IO_MAX],
}

fn log(args: core::fmt::Arguments<'_>) {
    let mut line = Buffer::<{ brainix_abi::MAX_LOG_LINE }>::new();
    let _ = line.write_fmt(args);
    let _ = Log(launch_handle(slots::LOG)).write(line.as_bytes());
}

/// The reply code for a filesystem error; `Io` becomes what the block server said.
fn code(e: FsError, block_error: Option<Error>) -> Error {
    match e {
        FsError::Io => block_error.unwrap_or(Error::Io),
        FsError::NotFound => Error::NotFound,
        FsError::Exists => Error::Exists,
        FsError::NoSpace => Error::NoSpace,
        FsError::TooBig | FsError::BadName => Error::OutOfRange,
        FsError::NotFormatted | FsError::Corrupt { .. } => Error::Corrupt,
    }
}

pub fn run() -> ! {
    // The server's state is 120 KiB (directory, bitmap, scratch blocks and the I/O buffer):
    // kept off the stack, in one static the loop below owns.
    static mut SERVER: Server = Server {
        fs: Fs::unmounted(BlockServer::new(Endpoint(launch_handle(slots::BLOCK)))),
        mount_error: None,
        buf: [0; IO_MAX],
    };
    // SAFETY: `run` is entered once (the program's entry) and never returns; this is the only
    // reference ever made to `SERVER`.
    let server = unsafe { &mut *core::ptr::addr_of_mut!(SERVER) };
    let endpoint = Endpoint(launch_handle(slots::ENDPOINT));
    let mut msg = Message::new(0);
    let mut received = endpoint.recv(&mut msg, FOREVER);
    loop {
        received = match received {
            Ok(Received::Message { token, leases, .. }) => {
                let mut reply = Message::new(0);
                let result = server.handle(&msg, token, leases, &mut reply);
                reply.label = status_of(result);
                endpoint.reply_recv(token, &reply, &mut msg, FOREVER)
            }
            Ok(Received::Notification(_)) => endpoint.recv(&mut msg, FOREVER),
            Err(_) => {
                cap::yield_now();
                endpoint.recv(&mut msg, FOREVER)
            }
        };
    }
}

impl Server {
    /// Mounts the filesystem if it is not.
    fn mounted(&mut self) -> Result<(), Error> {
        if self.fs.is_mounted() {
            return Ok(());
        }
        match self.fs.remount() {
            Ok(()) => {
                let u = self.fs.usage();
                log(format_args!(
                    "mounted: {} blocks, {} free, {} files",
                    u.blocks, u.free, u.files
                ));
                self.mount_error = None;
                Ok(())
            }
            Err(e) => {
                let block_error = self.fs.device().last_error.take();
                if self.mount_error != Some(e) {
                    log(format_args!("cannot mount: {e}"));
                    self.mount_error = Some(e);
                }
                Err(code(e, block_error))
            }
        }
    }

    fn handle(
        &mut self,
        msg: &Message,
        token: ReplyToken,
        leases: u64,
        reply: &mut Message,
    ) -> Result<(), Error> {
        let name = msg.data().unwrap_or(&[]);
        let named = |name: &[u8]| {
            if fs::valid_name(name) {
                Ok(())
            } else {
                Err(Error::OutOfRange)
            }
        };
        let label = msg.label;
        if !matches!(
            label,
            fs::LIST | fs::STAT | fs::READ | fs::WRITE | fs::REMOVE | fs::BENCH | fs::INFO
        ) {
            return Err(Error::NoSuchCall);
        }
        if matches!(
            label,
            fs::STAT | fs::READ | fs::WRITE | fs::REMOVE | fs::BENCH
        ) {
            named(name)?;
        }
        self.mounted()?;
        let Server { fs, buf, .. } = self;
        let result = match label {
            fs::LIST => match fs.list(msg.regs[0] as usize) {
                Some((i, e)) => {
                    reply.regs[0] = i as u64;
                    reply.regs[1] = e.size;
                    let n = e.name().len();
                    reply.payload[..n].copy_from_slice(e.name());
                    reply.len = n as u64;
                    Ok(())
                }
                None => Err(FsError::NotFound),
            },
            fs::STAT => fs.stat(name).map(|s| {
                reply.regs = [s.size, u64::from(s.blocks), s.index as u64, 0];
            }),
            fs::INFO => {
                let u = fs.usage();
                reply.regs = [
                    u64::from(u.blocks),
                    u64::from(u.free),
                    u64::from(u.files),
                    u64::from(u.entries),
                ];
                Ok(())
            }
            fs::READ => {
                if leases == 0 {
                    return Err(Error::BadLease);
                }
                let want = (msg.regs[1] as usize).min(IO_MAX);
                match fs.read(name, msg.regs[0], &mut buf[..want]) {
                    Ok(n) => {
                        cap::lease_write(token, 0, 0, &buf[..n])?;
                        reply.regs[0] = n as u64;
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            fs::WRITE => {
                if leases == 0 {
                    return Err(Error::BadLease);
                }
                let len = msg.regs[2] as usize;
                if len > IO_MAX {
                    return Err(Error::OutOfRange);
                }
                let got = cap::lease_read(token, 0, 0, &mut buf[..len])?;
                if got != len {
                    return Err(Error::BadLease);
                }
                let truncate = msg.regs[1] & fs::TRUNCATE != 0;
                fs.write(name, msg.regs[0], &buf[..len], truncate).map(|n| {
                    reply.regs[0] = n as u64;
                })
            }
            fs::REMOVE => fs.remove(name),
            _ => {
                // BENCH: the same reads a client's READs cause, without the hop to the client.
                let start = rdtsc();
                let mut offset = 0u64;
                let result = loop {
                    match fs.read(name, offset, &mut buf[..]) {
                        Ok(0) => break Ok(()),
                        Ok(n) => offset += n as u64,
                        Err(e) => break Err(e),
                    }
                };
                reply.regs[0] = offset;
                reply.regs[1] = rdtsc().wrapping_sub(start);
                result
            }
        };
        result.map_err(|e| self.failed(e))
    }

    /// Logs what went wrong and turns it into the reply code. An I/O error drops the mounted
    /// state, so the next request mounts again (the block server may have been restarted).
    fn failed(&mut self, e: FsError) -> Error {
        let block_error = self.fs.device().last_error.take();
        match e {
            FsError::Corrupt { .. } => log(format_args!("refused to return data: {e}")),
            FsError::Io => {
                log(format_args!(
                    "block server: {}",
                    block_error.map_or("io-error", |b| b.name())
                ));
                self.fs.unmount();
            }
            _ => {}
        }
        code(e, block_error)
    }
}
