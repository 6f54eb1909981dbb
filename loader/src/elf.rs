//! The kernel image as the loader sees it: loadable segments at physical addresses and a PVH
//! entry point.
//!
//! The image has passed signature verification before it is parsed, but it is still checked as
//! if it were hostile: a signing mistake must give a refusal, never a write to the wrong place.
//! Every offset and size is checked against the file, every segment against the range the PVH
//! entry can reach (1 MiB to 4 GiB, above the real-mode area and the firmware's low memory), and
//! no two segments may overlap.

/// The most loadable segments accepted. The kernel has four (boot stub, text, rodata, data).
pub const MAX_SEGMENTS: usize = 16;

/// No segment may start below 1 MiB: the first megabyte holds the real-mode IVT, the EBDA and
/// firmware ROM shadows.
pub const LOW_LIMIT: u64 = 0x10_0000;

/// No segment may end above 4 GiB: the PVH entry runs in 32-bit mode with paging off.
pub const HIGH_LIMIT: u64 = 0x1_0000_0000;

/// `XEN_ELFNOTE_PHYS32_ENTRY`: the PVH entry note's type.
pub const PVH_NOTE_TYPE: u32 = 18;

const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const PF_X: u32 = 1;

/// Why an image was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// Shorter than an ELF header.
    TooShort,
    /// Not an ELF file, or not 64-bit little-endian x86-64.
    NotX86_64Elf,
    /// Not an executable (`ET_EXEC`); the value found.
    NotExecutable(u16),
    /// The program headers are not where the header says, or not 56 bytes each.
    BadProgramHeaders,
    /// More than [`MAX_SEGMENTS`] loadable segments.
    TooManySegments,
    /// No loadable segment at all.
    NoSegments,
    /// Segment `index` reads past the end of the file, or its sizes overflow.
    SegmentOutsideFile(usize),
    /// Segment `index` has more bytes in the file than in memory.
    FileLargerThanMemory(usize),
    /// Segment `index` lies outside [`LOW_LIMIT`]..[`HIGH_LIMIT`].
    SegmentOutOfRange {
        /// The program header's index.
        index: usize,
        /// Its physical start.
        start: u64,
        /// Its physical end.
        end: u64,
    },
    /// Segments `a` and `b` overlap in physical memory.
    Overlap(usize, usize),
    /// No well-formed PVH entry note (type 18, name "Xen").
    NoPvhEntry,
    /// The PVH entry point is not inside an executable loadable segment.
    EntryNotInCode(u64),
}

impl core::fmt::Display for ElfError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ElfError::TooShort => f.write_str("kernel image is shorter than an ELF header"),
            ElfError::NotX86_64Elf => {
                f.write_str("kernel image is not a 64-bit little-endian x86-64 ELF file")
            }
            ElfError::NotExecutable(t) => {
                write!(f, "kernel ELF type is {t}, expected 2 (executable)")
            }
            ElfError::BadProgramHeaders => {
                f.write_str("kernel ELF program headers are outside the file or malformed")
            }
            ElfError::TooManySegments => write!(
                f,
                "kernel ELF has more than {MAX_SEGMENTS} loadable segments"
            ),
            ElfError::NoSegments => f.write_str("kernel ELF has no loadable segment"),
            ElfError::SegmentOutsideFile(i) => {
                write!(f, "kernel ELF segment {i} reaches past the end of the file")
            }
            ElfError::FileLargerThanMemory(i) => write!(
                f,
                "kernel ELF segment {i} has more bytes in the file than in memory"
            ),
            ElfError::SegmentOutOfRange { index, start, end } => write!(
                f,
                "kernel ELF segment {index} at {start:#x}..{end:#x} is outside \
                 {LOW_LIMIT:#x}..{HIGH_LIMIT:#x}"
            ),
            ElfError::Overlap(a, b) => write!(f, "kernel ELF segments {a} and {b} overlap"),
            ElfError::NoPvhEntry => f.write_str("kernel ELF has no PVH entry note (Xen, type 18)"),
            ElfError::EntryNotInCode(e) => write!(
                f,
                "kernel PVH entry {e:#x} is not inside an executable segment"
            ),
        }
    }
}

/// One loadable segment: copy `filesz` bytes from `offset` in the file to `paddr`, then zero up
/// to `memsz`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Segment {
    /// Physical load address.
    pub paddr: u64,
    /// Offset of its bytes in the file.
    pub offset: u64,
    /// Bytes in the file.
    pub filesz: u64,
    /// Bytes in memory (the rest is zero).
    pub memsz: u64,
    /// The program header's index, for messages.
    pub index: usize,
    /// Executable.
    pub exec: bool,
}

impl Segment {
    /// One past the last byte in memory (checked not to overflow by [`KernelImage::parse`]).
    pub fn end(&self) -> u64 {
        self.paddr + self.memsz
    }
}

/// A checked kernel image.
#[derive(Clone, Copy, Debug)]
pub struct KernelImage {
    segments: [Segment; MAX_SEGMENTS],
    count: usize,
    /// The PVH entry: a 32-bit physical address inside an executable segment.
    pub entry: u32,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

impl KernelImage {
    /// Checks `file` and returns its segments and entry.
    pub fn parse(file: &[u8]) -> Result<KernelImage, ElfError> {
        if file.len() < 64 {
            return Err(ElfError::TooShort);
        }
        // ELFCLASS64, ELFDATA2LSB, version 1, EM_X86_64.
        if file[..4] != *b"\x7fELF" || file[4] != 2 || file[5] != 1 || file[6] != 1 {
            return Err(ElfError::NotX86_64Elf);
        }
        let bad = ElfError::BadProgramHeaders;
        if u16_at(file, 18) != Some(62) {
            return Err(ElfError::NotX86_64Elf);
        }
        let kind = u16_at(file, 16).ok_or(ElfError::TooShort)?;
        if kind != 2 {
            return Err(ElfError::NotExecutable(kind));
        }
        let phoff = u64_at(file, 32).ok_or(bad)?;
        let phentsize = u16_at(file, 54).ok_or(bad)?;
        let phnum = u16_at(file, 56).ok_or(bad)?;
        if phentsize != 56 {
            return Err(bad);
        }
        phoff
            .checked_add(56 * u64::from(phnum))
            .filter(|end| *end <= file.len() as u64)
            .ok_or(bad)?;

        let mut image = KernelImage {
            segments: [Segment::default(); MAX_SEGMENTS],
            count: 0,
            entry: 0,
        };
        let mut entry = None;
        for index in 0..usize::from(phnum) {
            let ph = phoff as usize + 56 * index;
            let kind = u32_at(file, ph).ok_or(bad)?;
            let flags = u32_at(file, ph + 4).ok_or(bad)?;
            let offset = u64_at(file, ph + 8).ok_or(bad)?;
            let paddr = u64_at(file, ph + 24).ok_or(bad)?;
            let filesz = u64_at(file, ph + 32).ok_or(bad)?;
            let memsz = u64_at(file, ph + 40).ok_or(bad)?;
            let in_file = offset
                .checked_add(filesz)
                .is_some_and(|end| end <= file.len() as u64);
            match kind {
                PT_LOAD => {
                    if !in_file {
                        return Err(ElfError::SegmentOutsideFile(index));
                    }
                    if filesz > memsz {
                        return Err(ElfError::FileLargerThanMemory(index));
                    }
                    if memsz == 0 {
                        continue;
                    }
                    let end = paddr.saturating_add(memsz);
                    if paddr < LOW_LIMIT || end > HIGH_LIMIT {
                        return Err(ElfError::SegmentOutOfRange {
                            index,
                            start: paddr,
                            end,
                        });
                    }
                    let seg = Segment {
                        paddr,
                        offset,
                        filesz,
                        memsz,
                        index,
                        exec: flags & PF_X != 0,
                    };
                    for other in image.segments() {
                        if seg.paddr < other.end() && other.paddr < seg.end() {
                            return Err(ElfError::Overlap(other.index, index));
                        }
                    }
                    let slot = image
                        .segments
                        .get_mut(image.count)
                        .ok_or(ElfError::TooManySegments)?;
                    *slot = seg;
                    image.count += 1;
                }
                PT_NOTE if in_file && entry.is_none() => {
                    entry = pvh_entry(&file[offset as usize..(offset + filesz) as usize]);
                }
                _ => {}
            }
        }
        if image.count == 0 {
            return Err(ElfError::NoSegments);
        }
        let entry = entry.ok_or(ElfError::NoPvhEntry)?;
        let in_code = image
            .segments()
            .iter()
            .any(|s| s.exec && s.paddr <= entry && entry < s.paddr + s.filesz);
        if !in_code || entry >= HIGH_LIMIT {
            return Err(ElfError::EntryNotInCode(entry));
        }
        image.entry = entry as u32;
        Ok(image)
    }

    /// The loadable segments, in program-header order.
    pub fn segments(&self) -> &[Segment] {
        &self.segments[..self.count]
    }

    /// The lowest and one-past-highest physical address the segments occupy.
    pub fn span(&self) -> (u64, u64) {
        let lo = self.segments().iter().map(|s| s.paddr).min().unwrap_or(0);
        let hi = self.segments().iter().map(|s| s.end()).max().unwrap_or(0);
        (lo, hi)
    }
}

/// The PVH entry from a note segment: the first note named "Xen" of type 18, whose descriptor
/// is a 32- or 64-bit physical address.
fn pvh_entry(notes: &[u8]) -> Option<u64> {
    let align4 = |n: usize| n.checked_add(3).map(|n| n & !3);
    let mut at = 0usize;
    while at + 12 <= notes.len() {
        let namesz = u32_at(notes, at)? as usize;
        let descsz = u32_at(notes, at + 4)? as usize;
        let kind = u32_at(notes, at + 8)?;
        let name_at = at + 12;
        let desc_at = name_at.checked_add(align4(namesz)?)?;
        let next = desc_at.checked_add(align4(descsz)?)?;
        let name = notes.get(name_at..name_at.checked_add(namesz)?)?;
        let desc = notes.get(desc_at..desc_at.checked_add(descsz)?)?;
        if kind == PVH_NOTE_TYPE && name == b"Xen\0" {
            return match descsz {
                4 => u32_at(desc, 0).map(u64::from),
                8 => u64_at(desc, 0),
                _ => None,
            };
        }
        at = next;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal image: one RX segment at 1 MiB holding the entry, one RW segment after it, and
    /// the PVH note.
    fn image(segments: &[(u64, u64, u64, u32)], entry: u32) -> Vec<u8> {
        let phnum = segments.len() + 1;
        let data_at = 64 + 56 * phnum;
        let note_at = data_at + 0x100;
        let mut f = vec![0u8; note_at + 20];
        f[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
        f[16..18].copy_from_slice(&2u16.to_le_bytes());
        f[18..20].copy_from_slice(&62u16.to_le_bytes());
        f[32..40].copy_from_slice(&64u64.to_le_bytes());
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        f[56..58].copy_from_slice(&(phnum as u16).to_le_bytes());
        let mut ph = |i: usize, kind: u32, flags: u32, off: u64, paddr: u64, fs: u64, ms: u64| {
            let p = 64 + 56 * i;
            f[p..p + 4].copy_from_slice(&kind.to_le_bytes());
            f[p + 4..p + 8].copy_from_slice(&flags.to_le_bytes());
            f[p + 8..p + 16].copy_from_slice(&off.to_le_bytes());
            f[p + 24..p + 32].copy_from_slice(&paddr.to_le_bytes());
            f[p + 32..p + 40].copy_from_slice(&fs.to_le_bytes());
            f[p + 40..p + 48].copy_from_slice(&ms.to_le_bytes());
        };
        for (i, (paddr, filesz, memsz, flags)) in segments.iter().enumerate() {
            ph(i, PT_LOAD, *flags, data_at as u64, *paddr, *filesz, *memsz);
        }
        ph(segments.len(), PT_NOTE, 4, note_at as u64, 0, 20, 20);
        let n = note_at;
        f[n..n + 4].copy_from_slice(&4u32.to_le_bytes());
        f[n + 4..n + 8].copy_from_slice(&4u32.to_le_bytes());
        f[n + 8..n + 12].copy_from_slice(&PVH_NOTE_TYPE.to_le_bytes());
        f[n + 12..n + 16].copy_from_slice(b"Xen\0");
        f[n + 16..n + 20].copy_from_slice(&entry.to_le_bytes());
        f
    }

    const RX: u32 = 5;
    const RW: u32 = 6;

    #[test]
    fn accepts_the_kernel_shape() {
        let f = image(
            &[(0x10_0000, 0x80, 0x1000, RX), (0x10_1000, 0x10, 0x5000, RW)],
            0x10_0010,
        );
        let k = KernelImage::parse(&f).unwrap();
        assert_eq!(k.entry, 0x10_0010);
        assert_eq!(k.segments().len(), 2);
        assert_eq!(k.span(), (0x10_0000, 0x10_6000));
        assert!(k.segments()[0].exec && !k.segments()[1].exec);
    }

    #[test]
    fn refuses_segments_outside_the_file_range_or_each_other() {
        let f = image(&[(0x10_0000, 0x10_0000, 0x10_0000, RX)], 0x10_0000);
        assert_eq!(
            KernelImage::parse(&f).unwrap_err(),
            ElfError::SegmentOutsideFile(0)
        );
        let f = image(&[(0x10_0000, 0x20, 0x10, RX)], 0x10_0000);
        assert_eq!(
            KernelImage::parse(&f).unwrap_err(),
            ElfError::FileLargerThanMemory(0)
        );
        let f = image(&[(0x8000, 0x10, 0x10, RX)], 0x8000);
        assert!(matches!(
            KernelImage::parse(&f).unwrap_err(),
            ElfError::SegmentOutOfRange { index: 0, .. }
        ));
        let f = image(&[(0xffff_f000, 0x10, 0x2000, RX)], 0xffff_f000);
        assert!(matches!(
            KernelImage::parse(&f).unwrap_err(),
            ElfError::SegmentOutOfRange { index: 0, .. }
        ));
        let f = image(&[(u64::MAX - 4, 0x10, 0x10, RX)], 0x10_0000);
        assert!(matches!(
            KernelImage::parse(&f).unwrap_err(),
            ElfError::SegmentOutOfRange { .. }
        ));
        let f = image(
            &[(0x10_0000, 0x10, 0x2000, RX), (0x10_1000, 0x10, 0x10, RW)],
            0x10_0000,
        );
        assert_eq!(KernelImage::parse(&f).unwrap_err(), ElfError::Overlap(0, 1));
    }

    #[test]
    fn the_entry_must_be_in_loaded_code() {
        let f = image(
            &[(0x10_0000, 0x80, 0x1000, RX), (0x20_0000, 0x10, 0x10, RW)],
            0x20_0000,
        );
        assert_eq!(
            KernelImage::parse(&f).unwrap_err(),
            ElfError::EntryNotInCode(0x20_0000)
        );
        // Past the file bytes of the code segment (in its zeroed tail) does not count.
        let f = image(&[(0x10_0000, 0x80, 0x1000, RX)], 0x10_0800);
        assert_eq!(
            KernelImage::parse(&f).unwrap_err(),
            ElfError::EntryNotInCode(0x10_0800)
        );
        let mut f = image(&[(0x10_0000, 0x80, 0x1000, RX)], 0x10_0000);
        let note = f.len() - 20;
        f[note + 12] = b'Y';
        assert_eq!(KernelImage::parse(&f).unwrap_err(), ElfError::NoPvhEntry);
    }

    #[test]
    fn malformed_headers_and_every_truncation_are_errors_not_panics() {
        let f = image(&[(0x10_0000, 0x80, 0x1000, RX)], 0x10_0000);
        for n in 0..f.len() {
            assert!(KernelImage::parse(&f[..n]).is_err(), "prefix {n} accepted");
        }
        let mut g = f.clone();
        g[4] = 1;
        assert_eq!(KernelImage::parse(&g).unwrap_err(), ElfError::NotX86_64Elf);
        let mut g = f.clone();
        g[16] = 3;
        assert_eq!(
            KernelImage::parse(&g).unwrap_err(),
            ElfError::NotExecutable(3)
        );
        let mut g = f.clone();
        g[56..58].copy_from_slice(&u16::MAX.to_le_bytes());
        assert_eq!(
            KernelImage::parse(&g).unwrap_err(),
            ElfError::BadProgramHeaders
        );
        let mut g = f.clone();
        g[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(
            KernelImage::parse(&g).unwrap_err(),
            ElfError::BadProgramHeaders
        );
        // A note whose sizes point past its segment.
        let mut g = f.clone();
        let note = g.len() - 20;
        g[note..note + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(KernelImage::parse(&g).unwrap_err(), ElfError::NoPvhEntry);
    }

    #[test]
    fn too_many_segments_is_an_error() {
        let segs: Vec<_> = (0..MAX_SEGMENTS as u64 + 1)
            .map(|i| (0x10_0000 + i * 0x1000, 0x10, 0x10, RX))
            .collect();
        let f = image(&segs, 0x10_0000);
        assert_eq!(
            KernelImage::parse(&f).unwrap_err(),
            ElfError::TooManySegments
        );
    }
}
