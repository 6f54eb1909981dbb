//! What the loader reads, and how much of it.
//!
//! On a boot disk the files sit in the root of the ESP, next to `EFI/BOOT/BOOTX64.EFI`; their
//! names are valid 8.3 names so the FAT volume needs no long-name entries. Over PXE they sit in
//! the TFTP directory the loader itself was served from (the directory part of the DHCP boot file
//! name), under the same names.

/// The kernel ELF.
pub const KERNEL_FILE: &str = "kernel.elf";

/// Its detached signature ([`crate::signature`]).
pub const SIGNATURE_FILE: &str = "kernel.sig";

/// The kernel command line, plain text; optional (absent means empty).
pub const CMDLINE_FILE: &str = "cmdline.txt";

/// Where UEFI firmware looks for the loader on removable media and on a disk without boot
/// entries.
pub const LOADER_PATH: &str = "EFI/BOOT/BOOTX64.EFI";

/// The largest kernel image the loader reads. Our images are under 1 MiB; this leaves room for
/// a system with many programs while bounding what a hostile medium can make the loader allocate.
pub const MAX_KERNEL_BYTES: u64 = 64 << 20;

/// The longest command line: the kernel keeps 1024 bytes including the terminating NUL
/// (`kernel::cmdline::MAX_CMDLINE`), so a longer one would be cut after it was measured.
pub const MAX_CMDLINE_BYTES: u64 = 1023;

/// Why a command line is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmdlineError {
    /// Longer than [`MAX_CMDLINE_BYTES`].
    TooLong(u64),
    /// A byte that is not printable ASCII (or tab), at this offset.
    NotText(usize),
}

impl core::fmt::Display for CmdlineError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CmdlineError::TooLong(n) => write!(
                f,
                "{CMDLINE_FILE} has {n} bytes; at most {MAX_CMDLINE_BYTES} are allowed"
            ),
            CmdlineError::NotText(at) => write!(
                f,
                "{CMDLINE_FILE} has a byte that is not printable ASCII at offset {at}"
            ),
        }
    }
}

/// The command line as the kernel will get it: the file's bytes with one trailing newline (and
/// carriage return) removed, which is what editors leave. The same bytes are measured.
pub fn cmdline(file: &[u8]) -> Result<&[u8], CmdlineError> {
    if file.len() as u64 > MAX_CMDLINE_BYTES + 2 {
        return Err(CmdlineError::TooLong(file.len() as u64));
    }
    let mut text = file;
    if let Some(rest) = text.strip_suffix(b"\n") {
        text = rest.strip_suffix(b"\r").unwrap_or(rest);
    }
    if text.len() as u64 > MAX_CMDLINE_BYTES {
        return Err(CmdlineError::TooLong(text.len() as u64));
    }
    if let Some(at) = text
        .iter()
        .position(|b| !(b' '..=b'~').contains(b) && *b != b'\t')
    {
        return Err(CmdlineError::NotText(at));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_line_loses_one_trailing_newline_and_must_be_text() {
        assert_eq!(cmdline(b"a=1 b=2\n").unwrap(), b"a=1 b=2");
        assert_eq!(cmdline(b"a=1\r\n").unwrap(), b"a=1");
        assert_eq!(cmdline(b"").unwrap(), b"");
        assert_eq!(cmdline(b"a\n\n"), Err(CmdlineError::NotText(1)));
        assert_eq!(cmdline(b"a\0b"), Err(CmdlineError::NotText(1)));
        let long = vec![b'x'; MAX_CMDLINE_BYTES as usize + 1];
        assert_eq!(
            cmdline(&long),
            Err(CmdlineError::TooLong(MAX_CMDLINE_BYTES + 1))
        );
        assert!(cmdline(&long[1..]).is_ok());
    }
}
