//! Where the kernel comes from: the FAT file system of the device the loader was started from
//! (the ESP of a boot disk or USB stick), or, after a PXE boot, the TFTP server that served the
//! loader, in the same directory.

use super::Refusal;
use core::net::{IpAddr, Ipv4Addr};
use core::ptr::NonNull;
use uefi::boot::{
    self, AllocateType, MemoryType, OpenProtocolAttributes, OpenProtocolParams, ScopedProtocol,
};
use uefi::proto::loaded_image::LoadedImage;
use uefi::proto::media::file::{Directory, File, FileAttribute, FileMode, RegularFile};
use uefi::proto::media::fs::SimpleFileSystem;
use uefi::proto::network::pxe::BaseCode;
use uefi::{CStr8, CStr16, Status};

/// The longest TFTP path the loader builds (the DHCP boot file field is 128 bytes).
const MAX_PATH: usize = 160;

/// An open source of files. There is one, on the loader's stack, so the PXE variant's path
/// buffer costs nothing worth a heap the loader does not have.
#[allow(clippy::large_enum_variant)]
pub enum Source {
    /// The root directory of the loader's FAT volume.
    Disk(Directory),
    /// PXE: the base code protocol, the TFTP server, and the directory the loader came from.
    Tftp {
        pxe: ScopedProtocol<BaseCode>,
        server: IpAddr,
        dir: [u8; MAX_PATH],
        dir_len: usize,
    },
}

impl Source {
    /// Finds the device the loader was started from and opens it.
    pub fn open() -> Result<Source, Refusal> {
        let image = boot::image_handle();
        let device = boot::open_protocol_exclusive::<LoadedImage>(image)
            .ok()
            .and_then(|li| li.device())
            .ok_or(Refusal::NoSource)?;
        if let Ok(mut fs) = boot::open_protocol_exclusive::<SimpleFileSystem>(device) {
            let root = fs
                .open_volume()
                .map_err(|e| Refusal::Read("the boot volume", e.status()))?;
            return Ok(Source::Disk(root));
        }
        // The PXE driver keeps the base code open, so ask for it without exclusive access.
        // SAFETY: the protocol stays installed while boot services run, and the loader is the
        // only code using it from here on.
        let pxe = unsafe {
            boot::open_protocol::<BaseCode>(
                OpenProtocolParams {
                    handle: device,
                    agent: image,
                    controller: None,
                },
                OpenProtocolAttributes::GetProtocol,
            )
        }
        .map_err(|_| Refusal::NoSource)?;
        let mode = pxe.mode();
        let packet = if mode.proxy_offer_received() {
            mode.proxy_offer()
        } else {
            mode.dhcp_ack()
        };
        let dhcp: &uefi::proto::network::pxe::DhcpV4Packet = packet.as_ref();
        let server = dhcp.bootp_si_addr;
        if server == [0; 4] {
            return Err(Refusal::NoTftpServer);
        }
        // The directory part of the boot file name ("boards/x/loader.efi" -> "boards/x/").
        let file = &dhcp.bootp_boot_file;
        let file_len = file.iter().position(|b| *b == 0).unwrap_or(file.len());
        let dir_len = file[..file_len]
            .iter()
            .rposition(|b| *b == b'/')
            .map_or(0, |i| i + 1);
        let mut dir = [0u8; MAX_PATH];
        dir[..dir_len].copy_from_slice(&file[..dir_len]);
        Ok(Source::Tftp {
            pxe,
            server: IpAddr::V4(Ipv4Addr::from(server)),
            dir,
            dir_len,
        })
    }

    /// Says where files come from, for the log.
    pub fn describe(&self) -> &'static str {
        match self {
            Source::Disk(_) => "the boot disk's EFI system partition",
            Source::Tftp { .. } => "the PXE boot server over TFTP",
        }
    }

    /// Reads `name` whole into fresh loader memory, refusing more than `max` bytes. A file that
    /// is absent is an error when `required`, else empty.
    pub fn read(
        &mut self,
        name: &'static str,
        max: u64,
        required: bool,
    ) -> Result<&'static [u8], Refusal> {
        let absent = || {
            if required {
                Err(Refusal::Missing(name))
            } else {
                Ok(&[][..])
            }
        };
        match self {
            Source::Disk(root) => {
                let mut path_buf = [0u16; MAX_PATH];
                let mut path = [0u8; MAX_PATH];
                path[0] = b'\\';
                path[1..1 + name.len()].copy_from_slice(name.as_bytes());
                let path = core::str::from_utf8(&path[..1 + name.len()]).unwrap_or(name);
                let path = CStr16::from_str_with_buf(path, &mut path_buf)
                    .map_err(|_| Refusal::Read(name, Status::INVALID_PARAMETER))?;
                let handle = match root.open(path, FileMode::Read, FileAttribute::empty()) {
                    Ok(h) => h,
                    Err(e) if e.status() == Status::NOT_FOUND => return absent(),
                    Err(e) => return Err(Refusal::Read(name, e.status())),
                };
                let mut file: RegularFile =
                    handle.into_regular_file().ok_or(Refusal::Missing(name))?;
                let err = |e: uefi::Error| Refusal::Read(name, e.status());
                file.set_position(RegularFile::END_OF_FILE).map_err(err)?;
                let size = file.get_position().map_err(err)?;
                file.set_position(0).map_err(err)?;
                if size > max {
                    return Err(Refusal::TooLarge(name, size, max));
                }
                let buf = allocate(size).map_err(|s| Refusal::Read(name, s))?;
                let mut at = 0;
                while at < buf.len() {
                    let n = file.read(&mut buf[at..]).map_err(err)?;
                    if n == 0 {
                        return Err(Refusal::Read(name, Status::END_OF_FILE));
                    }
                    at += n;
                }
                Ok(buf)
            }
            Source::Tftp {
                pxe,
                server,
                dir,
                dir_len,
            } => {
                let mut path = [0u8; MAX_PATH];
                let n = *dir_len + name.len();
                if n + 1 > MAX_PATH {
                    return Err(Refusal::Read(name, Status::BAD_BUFFER_SIZE));
                }
                path[..*dir_len].copy_from_slice(&dir[..*dir_len]);
                path[*dir_len..n].copy_from_slice(name.as_bytes());
                let path = CStr8::from_bytes_with_nul(&path[..=n])
                    .map_err(|_| Refusal::Read(name, Status::INVALID_PARAMETER))?;
                let size = match pxe.tftp_get_file_size(server, path) {
                    Ok(s) => s,
                    Err(e) if matches!(e.status(), Status::TFTP_ERROR | Status::NOT_FOUND) => {
                        return absent();
                    }
                    Err(e) => return Err(Refusal::Read(name, e.status())),
                };
                if size > max {
                    return Err(Refusal::TooLarge(name, size, max));
                }
                let buf = allocate(size).map_err(|s| Refusal::Read(name, s))?;
                if buf.is_empty() {
                    return Ok(buf);
                }
                let got = pxe
                    .tftp_read_file(server, path, Some(buf))
                    .map_err(|e| Refusal::Read(name, e.status()))?;
                if got != size {
                    return Err(Refusal::Read(name, Status::END_OF_FILE));
                }
                Ok(buf)
            }
        }
    }
}

/// `size` bytes of zeroed loader memory that live until the kernel takes over.
fn allocate(size: u64) -> Result<&'static mut [u8], Status> {
    if size == 0 {
        return Ok(&mut []);
    }
    let pages = size.div_ceil(4096) as usize;
    let ptr: NonNull<u8> =
        boot::allocate_pages(AllocateType::AnyPages, MemoryType::LOADER_DATA, pages)
            .map_err(|e| e.status())?;
    // SAFETY: the firmware gave us `pages` pages at `ptr`, identity-mapped and owned by nothing
    // else; they are never freed, so the slice may live for the rest of the loader.
    let buf = unsafe { core::slice::from_raw_parts_mut(ptr.as_ptr(), size as usize) };
    buf.fill(0);
    Ok(buf)
}
