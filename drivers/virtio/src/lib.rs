//! # What every virtio device server shares
//!
//! A device server holds its device and nothing else ([`brainix_proto::driver::slots`]): the
//! device's registers (a PCI function's configuration through the kernel and its BARs, or a
//! virtio-mmio page), its interrupt, a DMA pool, its own endpoints and the log. This crate turns
//! those capabilities into what `virtio-drivers` needs:
//!
//! - [`hal::PoolHal`], the `Hal` over the DMA pool: virtio-drivers' `Hal` has no `self`, so the
//!   pool's allocator is a static ([`hal::POOL`]). Buffers outside the pool are bounced through
//!   it; the device never learns any other physical address.
//! - [`config::KernelConfig`], virtio-drivers' `ConfigurationAccess` over the kernel's PCI
//!   configuration calls. The kernel lets a driver write only the command register, so BAR
//!   sizing (which virtio-drivers does by writing all ones) is answered from the regions the
//!   driver was given, never sent to the device.
//! - [`transport`], which builds the PCI or MMIO transport from whichever the manifest gave.
//! - [`wait_irq`], which blocks for the interrupt on the private endpoint.
#![no_std]
#![deny(missing_docs)]
#![forbid(unsafe_op_in_unsafe_fn)]

pub mod config;
pub mod hal;

use brainix_abi::{CapType, Error, FOREVER, Message};
use brainix_proto::{driver::slots, launch_handle};
use brainix_rt::fmt::Buffer;
use brainix_rt::{Endpoint, Irq, Log, PciFunction, Received, Region, cap};
use core::fmt::Write;
use core::ptr::NonNull;
use virtio_drivers::transport::SomeTransport;
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::pci::bus::{DeviceFunction, PciRoot};

/// Writes one line to the kernel log (prefixed with the process name by the kernel).
pub fn log(args: core::fmt::Arguments<'_>) {
    let mut line = Buffer::<{ brainix_abi::MAX_LOG_LINE }>::new();
    let _ = line.write_fmt(args);
    let _ = Log(launch_handle(slots::LOG)).write(line.as_bytes());
}

/// Logs a formatted line.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => { $crate::log(format_args!($($arg)*)) };
}

/// The device's interrupt.
pub fn irq() -> Irq {
    Irq(launch_handle(slots::IRQ))
}

/// Blocks until the device's interrupt arrives (or `timeout_ms` passes: then `false`). The
/// caller acknowledges the device first, then the line with [`Irq::ack`].
pub fn wait_irq(timeout_ms: u64) -> bool {
    let wait = Endpoint(launch_handle(slots::IRQ_WAIT));
    let mut buf = Message::new(0);
    loop {
        match wait.recv(&mut buf, timeout_ms) {
            Ok(Received::Notification(bits)) if bits & 1 << brainix_proto::driver::IRQ_BIT != 0 => {
                return true;
            }
            // Nobody can send here; other bits are not ours to wait for.
            Ok(_) => continue,
            Err(Error::Timeout) => return false,
            Err(_) => {
                cap::yield_now();
                return false;
            }
        }
    }
}

/// The same wait without a limit.
pub fn wait_irq_forever() {
    wait_irq(FOREVER);
}

/// For a server whose virtio-mmio page holds no device of its type (a board that lists the
/// device, a boot that did not attach it): says so once, then answers every request with
/// `io-error`, so that clients get an answer instead of a server that keeps dying.
pub fn serve_without_device(what: &str) -> ! {
    log!("no {what} device in its virtio-mmio page; answering every request with io-error");
    let endpoint = Endpoint(launch_handle(slots::ENDPOINT));
    let mut msg = Message::new(0);
    let reply = Message::new(Error::Io as u64);
    let mut received = endpoint.recv(&mut msg, FOREVER);
    loop {
        received = match received {
            Ok(Received::Message { token, .. }) => {
                endpoint.reply_recv(token, &reply, &mut msg, FOREVER)
            }
            _ => endpoint.recv(&mut msg, FOREVER),
        };
    }
}

/// Why the device's transport could not be built.
#[derive(Debug)]
pub enum SetupError {
    /// The DMA pool capability is missing or not a pool.
    NoDmaPool(Error),
    /// Slot [`slots::DEVICE`] is neither a PCI function nor an MMIO region.
    NoDevice,
    /// virtio-drivers refused the PCI function.
    Pci(virtio_drivers::transport::pci::VirtioPciError),
    /// virtio-drivers refused the MMIO registers.
    Mmio,
    /// No transport in the MMIO page holds a device of the wanted type.
    NoMmioDevice,
}

impl core::fmt::Display for SetupError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SetupError::NoDmaPool(e) => write!(f, "no DMA pool ({})", e.name()),
            SetupError::NoDevice => f.write_str("slot 5 holds neither a PCI function nor MMIO"),
            SetupError::Pci(e) => write!(f, "PCI transport: {e}"),
            SetupError::Mmio => f.write_str("virtio-drivers refused the virtio-mmio registers"),
            SetupError::NoMmioDevice => {
                f.write_str("no virtio-mmio device of the wanted type in the page")
            }
        }
    }
}

/// Sets up the DMA pool and the transport for a device of virtio type `device_id` (2 block,
/// 4 entropy, 1 network), from whichever the manifest gave: a PCI function with its BARs, or an
/// MMIO page (searched for the wanted device, 0x200 bytes per virtio-mmio transport).
pub fn transport(device_id: u32) -> Result<SomeTransport<'static>, SetupError> {
    let pool = Region(launch_handle(slots::DMA))
        .info()
        .map_err(SetupError::NoDmaPool)?;
    hal::POOL.init(pool.virt, pool.phys, pool.len);
    let device = launch_handle(slots::DEVICE);
    let kind = cap::cap_info(device)
        .ok()
        .and_then(|i| i.cap_type())
        .ok_or(SetupError::NoDevice)?;
    match kind {
        CapType::PciFunction => {
            let function = PciFunction(device);
            let mut config = config::KernelConfig::new(function);
            for slot in slots::FIRST_BAR..brainix_abi::CAP_SLOTS as u16 {
                let Ok(r) = Region(launch_handle(slot)).info() else {
                    break;
                };
                hal::add_mmio(r.virt, r.phys, r.len);
                config.grant(r.phys, r.len);
            }
            // The device may decode its BARs and master the bus (the kernel turned mastering
            // off if a predecessor died), and raise INTx.
            let command = function.read(4).unwrap_or(0);
            let _ = function.write(4, (command | 0b110) & !(1 << 10));
            let mut root = PciRoot::new(config);
            let df = DeviceFunction {
                bus: 0,
                device: 0,
                function: 0,
            };
            PciTransport::new::<hal::PoolHal, _>(&mut root, df)
                .map(SomeTransport::from)
                .map_err(SetupError::Pci)
        }
        CapType::Mmio => {
            let r = Region(device).info().map_err(|_| SetupError::NoDevice)?;
            const STRIDE: u64 = 0x200;
            for at in (0..r.len).step_by(STRIDE as usize) {
                let base = r.virt + at;
                // SAFETY: the kernel mapped the whole region here, uncached; the virtio-mmio
                // magic and device id are plain registers at offsets 0 and 8.
                let (magic, id) = unsafe {
                    (
                        core::ptr::read_volatile(base as *const u32),
                        core::ptr::read_volatile((base + 8) as *const u32),
                    )
                };
                if magic != 0x7472_6976 || id != device_id {
                    continue;
                }
                let header = NonNull::new(base as *mut VirtIOHeader).ok_or(SetupError::Mmio)?;
                // SAFETY: `base` is a virtio-mmio transport inside the region the kernel mapped
                // for this process alone, for the life of the process.
                return unsafe { MmioTransport::new(header, STRIDE as usize) }
                    .map(SomeTransport::from)
                    .map_err(|_| SetupError::Mmio);
            }
            Err(SetupError::NoMmioDevice)
        }
        _ => Err(SetupError::NoDevice),
    }
}
