//! Typed capability handles and the calls each type allows.
//!
//! The types are a convenience, not a protection: the kernel checks type and rights on every use
//! (a program can always build any [`Handle`] it likes, and the attack tests do). They make the
//! honest programs say what they mean.

use crate::sys::{Out, syscall};
use brainix_abi::{
    CapInfo, CapType, DeviceInfo, Error, Handle, Lease, MAX_LEASES, MemoryInfo, Message,
    NOTIFICATION_TOKEN, ProcessInfo, Syscall,
};
use core::marker::PhantomData;

/// A call's result.
pub type Result<T> = core::result::Result<T, Error>;

fn addr<T: ?Sized>(p: *const T) -> u64 {
    p.cast::<u8>() as u64
}

/// The address of memory the kernel will write: derived from a `&mut`, so the write is allowed.
fn addr_mut<T: ?Sized>(p: &mut T) -> u64 {
    (p as *mut T).cast::<u8>() as u64
}

/// What `recv` delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// A message, now in the buffer. `token` answers it with [`reply`].
    Message {
        /// The reply token (meaningful for calls; a plain send needs no reply).
        token: ReplyToken,
        /// The badge of the capability the sender used.
        badge: u64,
        /// How many leases the caller lent.
        leases: u64,
    },
    /// Pending notification bits (IRQs, [`brainix_abi::NOTIFY_CHILD_DIED`]), now cleared.
    Notification(u64),
}

/// Names a caller waiting for a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyToken(pub u64);

fn received(out: Out, buf: &Message) -> Received {
    let [token, badge, leases, _] = out.0;
    if token == NOTIFICATION_TOKEN {
        Received::Notification(buf.label)
    } else {
        Received::Message {
            token: ReplyToken(token),
            badge,
            leases,
        }
    }
}

/// An endpoint capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint(pub Handle);

impl Endpoint {
    /// Sends `msg` and waits until a receiver takes it.
    pub fn send(self, msg: &Message) -> Result<()> {
        // SAFETY: the kernel only reads `msg`.
        unsafe { syscall(Syscall::Send, [self.0.0, addr(msg), 0, 0, 0, 0]) }.map(drop)
    }

    /// Waits for a message or notification into `buf`; `timeout_ms` may be
    /// [`brainix_abi::FOREVER`], or 0 to poll.
    pub fn recv(self, buf: &mut Message, timeout_ms: u64) -> Result<Received> {
        let p = addr_mut(buf);
        // SAFETY: `buf` is a live, exclusively borrowed `Message`, the only memory written.
        let out = unsafe { syscall(Syscall::Recv, [self.0.0, p, timeout_ms, 0, 0, 0]) }?;
        Ok(received(out, buf))
    }

    /// Sends `msg` lending `leases`, and waits for the reply in `reply`.
    pub fn call(self, msg: &Message, leases: &[Lent<'_>], reply: &mut Message) -> Result<()> {
        if leases.len() > MAX_LEASES {
            return Err(Error::PayloadTooLarge);
        }
        let args = [
            self.0.0,
            addr(msg),
            addr(leases.as_ptr()),
            leases.len() as u64,
            addr_mut(reply),
            0,
        ];
        // SAFETY: the kernel writes `reply`, exclusively borrowed, and (for the server) the
        // writable leases, each of which holds an exclusive borrow of its buffer for as long as
        // it exists, so across this call (`Lent`). `Lent` is a transparent `Lease`, so the
        // slice is the array of `Lease`s the kernel reads.
        unsafe { syscall(Syscall::Call, args) }.map(drop)
    }

    /// Answers `token` with `msg`, then waits like [`Endpoint::recv`].
    pub fn reply_recv(
        self,
        token: ReplyToken,
        msg: &Message,
        buf: &mut Message,
        timeout_ms: u64,
    ) -> Result<Received> {
        let args = [token.0, addr(msg), self.0.0, addr_mut(buf), timeout_ms, 0];
        // SAFETY: the kernel reads `msg` and writes `buf`, an exclusive borrow.
        let out = unsafe { syscall(Syscall::ReplyRecv, args) }?;
        Ok(received(out, buf))
    }

    /// Invalidates every handle to this endpoint, in every process.
    pub fn revoke(self) -> Result<()> {
        // SAFETY: no memory is passed.
        unsafe { syscall(Syscall::EndpointRevoke, [self.0.0, 0, 0, 0, 0, 0]) }.map(drop)
    }
}

/// Answers a caller blocked in `call`.
pub fn reply(token: ReplyToken, msg: &Message) -> Result<()> {
    // SAFETY: the kernel only reads `msg`.
    unsafe { syscall(Syscall::Reply, [token.0, addr(msg), 0, 0, 0, 0]) }.map(drop)
}

/// A buffer lent for a call: a [`Lease`] that keeps the buffer borrowed while it exists, so the
/// server's writes through it cannot meet another reference.
#[repr(transparent)]
#[derive(Debug)]
pub struct Lent<'a> {
    lease: Lease,
    _buffer: PhantomData<&'a mut [u8]>,
}

impl Lent<'_> {
    /// A lease from raw parts: for tests that lend what they must not.
    ///
    /// # Safety
    ///
    /// If `lease` grants [`Lease::WRITE`], the memory it names must be the caller's to have
    /// written during the call. A lease the kernel refuses is always safe.
    pub unsafe fn from_raw(lease: Lease) -> Lent<'static> {
        Lent {
            lease,
            _buffer: PhantomData,
        }
    }

    /// The lease as the kernel sees it.
    pub fn lease(&self) -> Lease {
        self.lease
    }
}

/// Lends `bytes` for the server to read.
pub fn lend(bytes: &[u8]) -> Lent<'_> {
    Lent {
        lease: Lease {
            addr: addr(bytes.as_ptr()),
            len: bytes.len() as u64,
            access: Lease::READ,
        },
        _buffer: PhantomData,
    }
}

/// Lends `bytes` for the server to write.
pub fn lend_mut(bytes: &mut [u8]) -> Lent<'_> {
    Lent {
        lease: Lease {
            addr: addr_mut(bytes),
            len: bytes.len() as u64,
            access: Lease::WRITE,
        },
        _buffer: PhantomData,
    }
}

/// Copies from the caller's lease `index`, at `offset`, into `buf`. Returns the bytes copied.
pub fn lease_read(token: ReplyToken, index: u64, offset: u64, buf: &mut [u8]) -> Result<usize> {
    let args = [token.0, index, offset, addr_mut(buf), buf.len() as u64, 0];
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`, an exclusive borrow.
    let out = unsafe { syscall(Syscall::LeaseRead, args) }?;
    Ok(out.0[0] as usize)
}

/// Copies `buf` into the caller's lease `index` at `offset`. Returns the bytes copied.
pub fn lease_write(token: ReplyToken, index: u64, offset: u64, buf: &[u8]) -> Result<usize> {
    let args = [
        token.0,
        index,
        offset,
        addr(buf.as_ptr()),
        buf.len() as u64,
        0,
    ];
    // SAFETY: the kernel only reads `buf`.
    let out = unsafe { syscall(Syscall::LeaseWrite, args) }?;
    Ok(out.0[0] as usize)
}

/// What `cap_info` says about one of the caller's own handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Info {
    /// The type number (see [`CapType::from_number`]).
    pub kind: u64,
    /// Rights bits.
    pub rights: u64,
    /// Badge or object id.
    pub detail: u64,
}

impl Info {
    /// The type, if the number is one.
    pub fn cap_type(&self) -> Option<CapType> {
        CapType::from_number(self.kind)
    }
}

/// Describes one of the caller's own capabilities.
pub fn cap_info(handle: Handle) -> Result<Info> {
    // SAFETY: no memory is passed.
    let out = unsafe { syscall(Syscall::CapInfo, [handle.0, 0, 0, 0, 0, 0]) }?;
    let [kind, rights, detail, _] = out.0;
    Ok(Info {
        kind,
        rights,
        detail,
    })
}

/// Removes a capability from the caller's table; the handle is stale afterwards.
pub fn cap_drop(handle: Handle) -> Result<()> {
    // SAFETY: no memory is passed.
    unsafe { syscall(Syscall::CapDrop, [handle.0, 0, 0, 0, 0, 0]) }.map(drop)
}

/// A range of I/O ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoPorts(pub Handle);

impl IoPorts {
    /// Reads one byte from `port`.
    pub fn inb(self, port: u16) -> Result<u8> {
        // SAFETY: no memory is passed.
        let out = unsafe { syscall(Syscall::IoIn, [self.0.0, port as u64, 0, 0, 0, 0]) }?;
        Ok(out.0[0] as u8)
    }

    /// Writes one byte to `port`.
    pub fn outb(self, port: u16, byte: u8) -> Result<()> {
        let args = [self.0.0, port as u64, byte as u64, 0, 0, 0];
        // SAFETY: no memory is passed.
        unsafe { syscall(Syscall::IoOut, args) }.map(drop)
    }
}

/// An interrupt line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Irq(pub Handle);

impl Irq {
    /// Re-arms the line after its notification was handled.
    pub fn ack(self) -> Result<()> {
        // SAFETY: no memory is passed.
        unsafe { syscall(Syscall::IrqAck, [self.0.0, 0, 0, 0, 0, 0]) }.map(drop)
    }
}

/// Where a region is, as `region_info` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionInfo {
    /// Where it is mapped in this process (`brainix_abi::layout::region` of its slot).
    pub virt: u64,
    /// Where it is physically (the device's registers, or the pool's first frame).
    pub phys: u64,
    /// Length in bytes.
    pub len: u64,
}

/// An MMIO region or a DMA pool, mapped at launch into the window of its slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region(pub Handle);

impl Region {
    /// Where the region is mapped, where it is physically, and how long it is.
    pub fn info(self) -> Result<RegionInfo> {
        // SAFETY: no memory is passed.
        let out = unsafe { syscall(Syscall::RegionInfo, [self.0.0, 0, 0, 0, 0, 0]) }?;
        let [virt, phys, len, _] = out.0;
        Ok(RegionInfo { virt, phys, len })
    }
}

/// The configuration registers of one PCI function, reached through the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciFunction(pub Handle);

impl PciFunction {
    /// Reads the 32-bit register at `offset` (a multiple of 4 below 256).
    pub fn read(self, offset: u16) -> Result<u32> {
        // SAFETY: no memory is passed.
        let out = unsafe {
            syscall(
                Syscall::PciConfigRead,
                [self.0.0, offset as u64, 0, 0, 0, 0],
            )
        }?;
        Ok(out.0[0] as u32)
    }

    /// Writes the command register's memory, bus-master and INTx-disable bits (the only
    /// configuration a driver may change; anything else is `missing-right`).
    pub fn write(self, offset: u16, value: u32) -> Result<()> {
        let args = [self.0.0, offset as u64, value as u64, 0, 0, 0];
        // SAFETY: no memory is passed.
        unsafe { syscall(Syscall::PciConfigWrite, args) }.map(drop)
    }
}

/// Stop and restart one declared process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessControl(pub Handle);

impl ProcessControl {
    /// Stops the process.
    pub fn stop(self) -> Result<()> {
        // SAFETY: no memory is passed.
        unsafe { syscall(Syscall::ProcessStop, [self.0.0, 0, 0, 0, 0, 0]) }.map(drop)
    }

    /// Stops it if running and starts it again from its image.
    pub fn restart(self) -> Result<()> {
        // SAFETY: no memory is passed.
        unsafe { syscall(Syscall::ProcessRestart, [self.0.0, 0, 0, 0, 0, 0]) }.map(drop)
    }
}

/// Read-only observation of processes, capability tables and memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditRead(pub Handle);

impl AuditRead {
    /// One process's state; [`Error::OutOfRange`] past the last pid.
    pub fn process(self, pid: u64) -> Result<ProcessInfo> {
        let mut info = ProcessInfo {
            pid: 0,
            generation: 0,
            state: 0,
            priority: 0,
            pages_used: 0,
            pages_budget: 0,
            last_exit: 0,
            last_fault_addr: 0,
            flags: 0,
            name_len: 0,
            name: [0; 32],
        };
        let p = addr_mut(&mut info);
        // SAFETY: the kernel writes one `ProcessInfo` into `info`, a local.
        unsafe { syscall(Syscall::AuditProcess, [self.0.0, pid, p, 0, 0, 0]) }?;
        Ok(info)
    }

    /// One slot of one process's capability table.
    pub fn cap(self, pid: u64, slot: u64) -> Result<CapInfo> {
        let mut info = CapInfo::default();
        let p = addr_mut(&mut info);
        // SAFETY: the kernel writes one `CapInfo` into `info`, a local.
        unsafe { syscall(Syscall::AuditCap, [self.0.0, pid, slot, p, 0, 0]) }?;
        Ok(info)
    }

    /// What the manifest gave `pid` in `slot` at launch (generation 0; a DMA pool's address 0).
    pub fn manifest_cap(self, pid: u64, slot: u64) -> Result<CapInfo> {
        let mut info = CapInfo::default();
        let p = addr_mut(&mut info);
        // SAFETY: the kernel writes one `CapInfo` into `info`, a local.
        unsafe { syscall(Syscall::AuditManifestCap, [self.0.0, pid, slot, p, 0, 0]) }?;
        Ok(info)
    }

    /// Walks `pid`'s live page tables: `Ok(pages)` when every mapping is W^X and KPTI-clean,
    /// `Err((code, address))` of the first violation ([`brainix_abi::table_audit`]); the call
    /// fails with [`Error::PeerDead`] when `pid` has no address space.
    pub fn tables(self, pid: u64) -> Result<core::result::Result<u64, (u64, u64)>> {
        // SAFETY: no memory is passed.
        let out = unsafe { syscall(Syscall::AuditTables, [self.0.0, pid, 0, 0, 0, 0]) }?;
        let [pages, code, addr, _] = out.0;
        Ok(if code == brainix_abi::table_audit::CLEAN {
            Ok(pages)
        } else {
            Err((code, addr))
        })
    }

    /// Checks that no physical page is mapped into two live processes: `Ok(pages)` checked, or
    /// `Err((page, pid, pid))` of the first shared one.
    pub fn sharing(self) -> Result<core::result::Result<u64, (u64, u64, u64)>> {
        // SAFETY: no memory is passed.
        let out = unsafe { syscall(Syscall::AuditSharing, [self.0.0, 0, 0, 0, 0, 0]) }?;
        let [pages, page, a, b] = out.0;
        Ok(if page == 0 {
            Ok(pages)
        } else {
            Err((page, a, b))
        })
    }

    /// The `index`-th PCI function discovered at boot; [`Error::OutOfRange`] past the last.
    pub fn device(self, index: u64) -> Result<DeviceInfo> {
        let mut info = DeviceInfo::default();
        let p = addr_mut(&mut info);
        // SAFETY: the kernel writes one `DeviceInfo` into `info`, a local.
        unsafe { syscall(Syscall::AuditDevice, [self.0.0, index, p, 0, 0, 0]) }?;
        Ok(info)
    }

    /// Frame and pool statistics.
    pub fn memory(self) -> Result<MemoryInfo> {
        let mut info = MemoryInfo::default();
        let p = addr_mut(&mut info);
        // SAFETY: the kernel writes one `MemoryInfo` into `info`, a local.
        unsafe { syscall(Syscall::AuditMemory, [self.0.0, p, 0, 0, 0, 0]) }?;
        Ok(info)
    }
}

/// The kernel log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Log(pub Handle);

impl Log {
    /// Writes one line (the kernel prefixes the process name).
    pub fn write(self, line: &[u8]) -> Result<()> {
        let args = [self.0.0, addr(line.as_ptr()), line.len() as u64, 0, 0, 0];
        // SAFETY: the kernel only reads `line`.
        unsafe { syscall(Syscall::Log, args) }.map(drop)
    }
}

/// The capability to report one check's verdict ([`Syscall::Report`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report(pub Handle);

impl Report {
    /// Reports PASS or FAIL with a detail of at most [`brainix_abi::MAX_REPORT_DETAIL`] bytes.
    /// The kernel frames it for the test runner; a second report is refused.
    pub fn report(self, pass: bool, detail: &[u8]) -> Result<()> {
        let args = [
            self.0.0,
            u64::from(pass),
            addr(detail.as_ptr()),
            detail.len() as u64,
            0,
            0,
        ];
        // SAFETY: the kernel only reads `detail`.
        unsafe { syscall(Syscall::Report, args) }.map(drop)
    }

    /// The `n`-th report capability in the caller's table, in slot order: programs find their
    /// verdicts this way, so the manifest decides the slots.
    pub fn nth(n: usize) -> Option<Report> {
        (0..brainix_abi::CAP_SLOTS as u16)
            .map(|slot| Handle::new(slot, 1))
            .filter(|&h| {
                cap_info(h).is_ok_and(|i| i.cap_type() == Some(brainix_abi::CapType::Report))
            })
            .nth(n)
            .map(Report)
    }
}

/// Ends the process with `code`.
pub fn exit(code: u64) -> ! {
    // SAFETY: no memory is passed.
    let _ = unsafe { syscall(Syscall::Exit, [code, 0, 0, 0, 0, 0]) };
    // The kernel never returns from exit; if it ever did, stopping here is the safe answer.
    loop {
        core::hint::spin_loop();
    }
}

/// Gives up the rest of the time slice.
pub fn yield_now() {
    // SAFETY: no memory is passed.
    let _ = unsafe { syscall(Syscall::Yield, [0; 6]) };
}

/// Milliseconds since boot and the TSC.
pub fn uptime() -> Result<(u64, u64)> {
    // SAFETY: no memory is passed.
    let out = unsafe { syscall(Syscall::Uptime, [0; 6]) }?;
    Ok((out.0[0], out.0[1]))
}

/// The call that does nothing: the bare cost of entering and leaving the kernel.
pub fn null() -> Result<()> {
    // SAFETY: no memory is passed.
    unsafe { syscall(Syscall::NullSyscall, [0; 6]) }.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lent_buffer_is_passed_as_a_plain_lease() {
        assert_eq!(size_of::<Lent<'_>>(), size_of::<Lease>());
        assert_eq!(align_of::<Lent<'_>>(), align_of::<Lease>());
        let mut buf = [0u8; 8];
        let ptr = buf.as_ptr() as u64;
        let lent = lend_mut(&mut buf);
        assert_eq!(
            lent.lease(),
            Lease {
                addr: ptr,
                len: 8,
                access: Lease::WRITE
            }
        );
        assert_eq!(lend(b"abc").lease().access, Lease::READ);
    }
}
