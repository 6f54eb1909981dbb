//! Reading a user program's ELF image: its entry point and loadable segments.
//!
//! The manifest checker validates every image at build time, but the kernel does not rely on
//! that: every offset and size is bounds-checked here, and a segment that is writable and
//! executable, outside the user image window, or overlapping another is refused (INV-MEM).

use crate::mem::paging::Perm;
use brainix_abi::layout::{IMAGE_BASE, IMAGE_END};
use core::fmt;

/// Loadable segments kept per image. Our link script makes three or four.
pub const MAX_SEGMENTS: usize = 8;

/// One `PT_LOAD` segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Virtual address of the first byte.
    pub vaddr: u64,
    /// Bytes in memory (the tail past `file_len` is zero).
    pub mem_len: u64,
    /// Offset of the file bytes in the image.
    pub file_offset: usize,
    /// File bytes to copy.
    pub file_len: usize,
    /// Rights; never writable and executable.
    pub perm: Perm,
}

/// A checked image.
#[derive(Debug)]
pub struct Program {
    /// Entry point.
    pub entry: u64,
    segments: [Option<Segment>; MAX_SEGMENTS],
}

impl Program {
    /// The loadable segments, in file order.
    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.segments.iter().flatten()
    }

    /// Pages the segments occupy (each segment page-rounded on both ends).
    pub fn pages(&self) -> u64 {
        self.segments()
            .map(|s| (s.vaddr + s.mem_len).div_ceil(4096) - s.vaddr / 4096)
            .sum()
    }
}

/// Why an image was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// Not a little-endian ELF64 x86-64 executable.
    NotAnExecutable,
    /// A header or segment lies outside the file.
    Truncated,
    /// A segment is writable and executable.
    WritableAndExecutable {
        /// Its address.
        vaddr: u64,
    },
    /// A segment lies outside `IMAGE_BASE .. IMAGE_END`, or overlaps another.
    BadAddress {
        /// Its address.
        vaddr: u64,
    },
    /// More than [`MAX_SEGMENTS`] loadable segments.
    TooManySegments,
    /// The entry point is not in an executable segment.
    BadEntry,
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElfError::NotAnExecutable => f.write_str("not an x86-64 ELF64 executable"),
            ElfError::Truncated => f.write_str("a header or segment lies outside the file"),
            ElfError::WritableAndExecutable { vaddr } => {
                write!(f, "segment at {vaddr:#x} is writable and executable")
            }
            ElfError::BadAddress { vaddr } => write!(
                f,
                "segment at {vaddr:#x} is outside {IMAGE_BASE:#x}..{IMAGE_END:#x} or overlaps another"
            ),
            ElfError::TooManySegments => {
                write!(f, "more than {MAX_SEGMENTS} loadable segments")
            }
            ElfError::BadEntry => f.write_str("entry point is not in an executable segment"),
        }
    }
}

fn bytes<const N: usize>(data: &[u8], at: usize) -> Result<[u8; N], ElfError> {
    data.get(at..at.checked_add(N).ok_or(ElfError::Truncated)?)
        .and_then(|s| s.try_into().ok())
        .ok_or(ElfError::Truncated)
}
fn u16_at(d: &[u8], at: usize) -> Result<u16, ElfError> {
    bytes(d, at).map(u16::from_le_bytes)
}
fn u32_at(d: &[u8], at: usize) -> Result<u32, ElfError> {
    bytes(d, at).map(u32::from_le_bytes)
}
fn u64_at(d: &[u8], at: usize) -> Result<u64, ElfError> {
    bytes(d, at).map(u64::from_le_bytes)
}

const PT_LOAD: u32 = 1;
const PF_X: u32 = 1;
const PF_W: u32 = 2;

impl Program {
    /// Parses and checks `image`.
    pub fn parse(image: &[u8]) -> Result<Program, ElfError> {
        let ident: [u8; 8] = bytes(image, 0)?;
        // Magic, 64-bit, little-endian, version 1.
        if ident[..7] != [0x7f, b'E', b'L', b'F', 2, 1, 1]
            || u16_at(image, 16)? != 2 // ET_EXEC
            || u16_at(image, 18)? != 62
        // EM_X86_64
        {
            return Err(ElfError::NotAnExecutable);
        }
        let entry = u64_at(image, 24)?;
        let phoff = usize::try_from(u64_at(image, 32)?).map_err(|_| ElfError::Truncated)?;
        let phentsize = usize::from(u16_at(image, 54)?);
        let phnum = usize::from(u16_at(image, 56)?);
        if phentsize < 56 {
            return Err(ElfError::NotAnExecutable);
        }
        let mut program = Program {
            entry,
            segments: [None; MAX_SEGMENTS],
        };
        let mut count = 0;
        for i in 0..phnum {
            let ph = phoff
                .checked_add(i.checked_mul(phentsize).ok_or(ElfError::Truncated)?)
                .ok_or(ElfError::Truncated)?;
            if u32_at(image, ph)? != PT_LOAD {
                continue;
            }
            let flags = u32_at(image, ph + 4)?;
            let offset = u64_at(image, ph + 8)?;
            let vaddr = u64_at(image, ph + 16)?;
            let file_len = u64_at(image, ph + 32)?;
            let mem_len = u64_at(image, ph + 40)?;
            if mem_len == 0 {
                continue;
            }
            let perm = match (flags & PF_W != 0, flags & PF_X != 0) {
                (true, true) => return Err(ElfError::WritableAndExecutable { vaddr }),
                (true, false) => Perm::ReadWrite,
                (false, true) => Perm::ReadExec,
                (false, false) => Perm::Read,
            };
            let end = vaddr
                .checked_add(mem_len)
                .ok_or(ElfError::BadAddress { vaddr })?;
            if vaddr < IMAGE_BASE || end > IMAGE_END || file_len > mem_len {
                return Err(ElfError::BadAddress { vaddr });
            }
            let file_end = offset.checked_add(file_len).ok_or(ElfError::Truncated)?;
            if file_end > image.len() as u64 {
                return Err(ElfError::Truncated);
            }
            // Overlap is checked page-wise: two segments must not share a page, or the page
            // would need two sets of rights.
            let first_page = vaddr / 4096;
            let last_page = (end - 1) / 4096;
            for other in program.segments() {
                let (o_first, o_last) =
                    (other.vaddr / 4096, (other.vaddr + other.mem_len - 1) / 4096);
                if first_page <= o_last && o_first <= last_page {
                    return Err(ElfError::BadAddress { vaddr });
                }
            }
            let slot = program
                .segments
                .get_mut(count)
                .ok_or(ElfError::TooManySegments)?;
            *slot = Some(Segment {
                vaddr,
                mem_len,
                file_offset: offset as usize,
                file_len: file_len as usize,
                perm,
            });
            count += 1;
        }
        if !program
            .segments()
            .any(|s| s.perm == Perm::ReadExec && (s.vaddr..s.vaddr + s.mem_len).contains(&entry))
        {
            return Err(ElfError::BadEntry);
        }
        Ok(program)
    }
}

/// Builds small ELF images for tests.
#[cfg(test)]
pub(crate) mod build {
    /// An ELF with `segments` of (vaddr, flags, file bytes, mem_len) and `entry`.
    pub fn image(entry: u64, segments: &[(u64, u32, &[u8], u64)]) -> Vec<u8> {
        let phoff = 64u64;
        let data_start = phoff + 56 * segments.len() as u64;
        let mut out = vec![0u8; data_start as usize];
        out[..7].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1]);
        out[16..18].copy_from_slice(&2u16.to_le_bytes());
        out[18..20].copy_from_slice(&62u16.to_le_bytes());
        out[24..32].copy_from_slice(&entry.to_le_bytes());
        out[32..40].copy_from_slice(&phoff.to_le_bytes());
        out[54..56].copy_from_slice(&56u16.to_le_bytes());
        out[56..58].copy_from_slice(&(segments.len() as u16).to_le_bytes());
        for (i, (vaddr, flags, data, mem_len)) in segments.iter().enumerate() {
            let offset = out.len() as u64;
            out.extend_from_slice(data);
            let ph = 64 + 56 * i;
            out[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes());
            out[ph + 4..ph + 8].copy_from_slice(&flags.to_le_bytes());
            out[ph + 8..ph + 16].copy_from_slice(&offset.to_le_bytes());
            out[ph + 16..ph + 24].copy_from_slice(&vaddr.to_le_bytes());
            out[ph + 32..ph + 40].copy_from_slice(&(data.len() as u64).to_le_bytes());
            out[ph + 40..ph + 48].copy_from_slice(&mem_len.to_le_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::build::image;
    use super::*;

    const RX: u32 = 5;
    const R: u32 = 4;
    const RW: u32 = 6;

    #[test]
    fn reads_segments_with_their_rights() {
        let img = image(
            0x40_0010,
            &[
                (0x40_0000, RX, &[0xc3; 32], 32),
                (0x40_1000, R, b"hello", 5),
                (0x40_2000, RW, b"x", 0x2000),
            ],
        );
        let p = Program::parse(&img).unwrap();
        let segs: Vec<_> = p
            .segments()
            .map(|s| (s.vaddr, s.perm, s.file_len))
            .collect();
        assert_eq!(
            segs,
            vec![
                (0x40_0000, Perm::ReadExec, 32),
                (0x40_1000, Perm::Read, 5),
                (0x40_2000, Perm::ReadWrite, 1)
            ]
        );
        assert_eq!(p.entry, 0x40_0010);
        assert_eq!(p.pages(), 4);
        let text = p.segments().next().unwrap();
        assert_eq!(&img[text.file_offset..text.file_offset + 32], &[0xc3; 32]);
    }

    #[test]
    fn refuses_writable_and_executable_segments() {
        let img = image(0x40_0000, &[(0x40_0000, 7, &[0xc3], 1)]);
        assert_eq!(
            Program::parse(&img).unwrap_err(),
            ElfError::WritableAndExecutable { vaddr: 0x40_0000 }
        );
    }

    #[test]
    fn refuses_segments_outside_the_window_or_sharing_a_page() {
        let kernel = image(
            0xffff_ffff_8010_0000,
            &[(0xffff_ffff_8010_0000, RX, &[0xc3], 1)],
        );
        assert!(matches!(
            Program::parse(&kernel),
            Err(ElfError::BadAddress { .. })
        ));
        let low = image(0x1000, &[(0x1000, RX, &[0xc3], 1)]);
        assert!(matches!(
            Program::parse(&low),
            Err(ElfError::BadAddress { .. })
        ));
        let wrap = image(0x40_0000, &[(0x40_0000, RX, &[0xc3], u64::MAX)]);
        assert!(matches!(
            Program::parse(&wrap),
            Err(ElfError::BadAddress { .. })
        ));
        let shared = image(
            0x40_0000,
            &[(0x40_0000, RX, &[0xc3], 0x10), (0x40_0800, RW, b"", 0x10)],
        );
        assert_eq!(
            Program::parse(&shared).unwrap_err(),
            ElfError::BadAddress { vaddr: 0x40_0800 }
        );
    }

    #[test]
    fn refuses_an_entry_outside_text() {
        let img = image(
            0x40_1000,
            &[(0x40_0000, RX, &[0xc3], 1), (0x40_1000, RW, b"", 8)],
        );
        assert_eq!(Program::parse(&img).unwrap_err(), ElfError::BadEntry);
    }

    #[test]
    fn truncated_or_garbage_images_never_panic() {
        let good = image(0x40_0000, &[(0x40_0000, RX, &[0xc3; 64], 64)]);
        for len in 0..good.len() {
            let _ = Program::parse(&good[..len]);
        }
        let mut x = 0x1234_5678_9abc_def0_u64;
        for _ in 0..20_000 {
            let mut img = good.clone();
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let at = (x % img.len() as u64) as usize;
                img[at] = (x >> 32) as u8;
            }
            if let Ok(p) = Program::parse(&img) {
                for s in p.segments() {
                    assert!(s.file_offset + s.file_len <= img.len());
                    assert!(!(s.perm.writable() && s.perm.executable()));
                }
            }
        }
        assert_eq!(Program::parse(b"\x7fELF").unwrap_err(), ElfError::Truncated);
    }
}
