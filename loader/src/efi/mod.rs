//! The loader under UEFI: the boot flow, and the one refusal line.

mod console;
mod handoff;
mod source;
mod tpm;

use brainix_loader::elf::{ElfError, KernelImage};
use brainix_loader::media::{self, CmdlineError};
use brainix_loader::signature::{self, Domain, SignatureError};
use core::fmt;
use uefi::Status;

/// The public key this loader trusts, from `BRAINIX_LOADER_PUBKEY` at build time.
mod trusted {
    include!(concat!(env!("OUT_DIR"), "/trusted_key.rs"));
}

/// `isa-debug-exit` code for "refused by the loader" (QEMU exits with 47). Written only when the
/// command line names that device, as the kernel does (`docs/serial-protocol.md`).
const EXIT_REFUSED: u8 = 0x17;

/// Why the loader will not boot. Each is shown as one line.
pub enum Refusal {
    /// A file could not be read; which one and the firmware's status.
    Read(&'static str, Status),
    /// A required file is absent.
    Missing(&'static str),
    /// A file is larger than the loader accepts.
    TooLarge(&'static str, u64, u64),
    /// The loader was not started from a disk or a PXE boot it can read from.
    NoSource,
    /// PXE: the DHCP reply names no TFTP server.
    NoTftpServer,
    /// The command line file is not acceptable.
    Cmdline(CmdlineError),
    /// No TPM 2.0 through EFI_TCG2_PROTOCOL.
    NoTpm,
    /// The TPM has no active SHA-256 bank (the predicted PCRs are SHA-256).
    NoSha256Bank,
    /// Extending a PCR failed.
    Measure(&'static str, Status),
    /// The signature is missing, malformed, by another key, or does not match.
    Signature(SignatureError),
    /// The image is not a kernel the loader can place.
    Elf(ElfError),
    /// The physical memory the kernel is linked at is not free.
    KernelMemory(u64, u64, Status),
    /// Memory for the boot record or the mode switch could not be had below 4 GiB.
    LowMemory(Status),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Read(file, s) => write!(f, "cannot read {file} ({s:?})"),
            Refusal::Missing(file) => write!(f, "{file} is missing"),
            Refusal::TooLarge(file, n, max) => {
                write!(f, "{file} has {n} bytes; the loader accepts at most {max}")
            }
            Refusal::NoSource => f.write_str(
                "the loader's device has neither a FAT file system nor PXE; cannot find the kernel",
            ),
            Refusal::NoTftpServer => {
                f.write_str("PXE boot without a TFTP server address in the DHCP reply")
            }
            Refusal::Cmdline(e) => write!(f, "{e}"),
            Refusal::NoTpm => f.write_str(
                "no TPM 2.0 (EFI_TCG2_PROTOCOL not found); the image cannot be measured",
            ),
            Refusal::NoSha256Bank => f.write_str("the TPM has no active SHA-256 PCR bank"),
            Refusal::Measure(what, s) => {
                write!(f, "measuring the {what} into the TPM failed ({s:?})")
            }
            Refusal::Signature(e) => write!(f, "{}: {e}", media::SIGNATURE_FILE),
            Refusal::Elf(e) => write!(f, "{e}"),
            Refusal::KernelMemory(lo, hi, s) => write!(
                f,
                "physical memory {lo:#x}..{hi:#x} for the kernel is not free ({s:?})"
            ),
            Refusal::LowMemory(s) => {
                write!(f, "no free memory below 4 GiB for the boot record ({s:?})")
            }
        }
    }
}

/// Whether the command line names the debug-exit device, so that a refusal can end a QEMU test
/// at once. Decided from the same bytes the kernel gets.
fn wants_debug_exit(cmdline: &[u8]) -> bool {
    cmdline
        .split(|b| *b == b' ' || *b == b'\t')
        .any(|w| w == b"brainix.exit=isa-debug-exit")
}

#[uefi::entry]
fn main() -> Status {
    let mut debug_exit = false;
    let Err(refusal) = boot(&mut debug_exit);
    console::line(format_args!(
        "brainix-loader: REFUSED: {refusal}; not booting"
    ));
    stop(debug_exit)
}

/// Stops for good: through the debug-exit port when the command line named it, else by halting
/// with the firmware still running (its watchdog is off, so nothing reboots behind our back).
fn stop(debug_exit: bool) -> ! {
    if debug_exit {
        // SAFETY: the command line says the machine has QEMU's isa-debug-exit device at 0xf4;
        // writing it ends the machine and touches no memory.
        unsafe {
            core::arch::asm!("out dx, al", in("dx") 0xf4u16, in("al") EXIT_REFUSED, options(nomem, nostack));
        }
    }
    loop {
        // SAFETY: `hlt` waits for the next interrupt and has no other effect.
        unsafe { core::arch::asm!("hlt", options(nomem, nostack)) };
    }
}

/// The whole flow; returns only to refuse.
fn boot(debug_exit: &mut bool) -> Result<core::convert::Infallible, Refusal> {
    // The firmware's five-minute watchdog would reset a machine that stops to refuse.
    let _ = uefi::boot::set_watchdog_timer(0, 0x10000, None);
    let mut key_hex = [0u8; 16];
    console::line(format_args!(
        "brainix-loader: BraiNIX loader {} (trusts key {})",
        env!("CARGO_PKG_VERSION"),
        brainix_loader::hex(&signature::fingerprint(&trusted::KEY), &mut key_hex)
    ));

    let mut src = source::Source::open()?;
    let cmdline_file = src.read(media::CMDLINE_FILE, media::MAX_CMDLINE_BYTES + 2, false)?;
    let cmdline = media::cmdline(cmdline_file).map_err(Refusal::Cmdline)?;
    *debug_exit = wants_debug_exit(cmdline);
    let image = src.read(media::KERNEL_FILE, media::MAX_KERNEL_BYTES, true)?;
    let sig = src.read(media::SIGNATURE_FILE, signature::FILE_LEN as u64 + 1, true)?;
    console::line(format_args!(
        "brainix-loader: read {} ({} bytes) from {}",
        media::KERNEL_FILE,
        image.len(),
        src.describe()
    ));

    // INV-BOOT: measure before anything of the image is used, refused images included.
    tpm::measure(image, cmdline)?;

    // INV-BOOT: only an image signed by the built-in key runs.
    signature::verify(&trusted::KEY, Domain::KernelImage, image, sig)
        .map_err(Refusal::Signature)?;
    let kernel = KernelImage::parse(image).map_err(Refusal::Elf)?;
    let (lo, hi) = kernel.span();
    console::line(format_args!(
        "brainix-loader: signature good; kernel {lo:#x}..{hi:#x}, PVH entry {:#x}",
        kernel.entry
    ));
    handoff::enter(&kernel, image, cmdline)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    console::line(format_args!(
        "brainix-loader: REFUSED: loader bug: {info}; not booting"
    ));
    stop(false)
}
