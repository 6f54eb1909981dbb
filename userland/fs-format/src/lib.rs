//! # BXFS: the BraiNIX on-disk format
//!
//! A flat namespace of files in 4 KiB blocks, every block covered by a CRC-32C, so that corrupt
//! data is detected and reported, never returned. The same code formats an image on the host
//! (`cargo xtask mkfs`) and serves it on BraiNIX (the filesystem server); it needs no heap and no
//! standard library. The layout is specified in `docs/filesystem.md`:
//!
//! | blocks | what | checksum kept in |
//! | --- | --- | --- |
//! | 0 | superblock | its own last 4 bytes |
//! | 1 ..= D | directory: 32 entries of 128 bytes per block | the superblock (`dir_crc[i]`) |
//! | D+1 ..= D+B | allocation bitmap, one bit per block | the superblock (`bitmap_crc[i]`) |
//! | the rest | map blocks and data blocks | map: its directory entry; data: the map |
//!
//! A file's map block lists its data blocks in order, each with the CRC-32C of its 4096 bytes
//! (bytes of the last block past the file's size are not part of the file). Updates are not atomic: a crash in the middle of a
//! write can leave a block whose checksum no longer matches, which the next read reports as
//! corruption rather than returning it.
#![no_std]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

use core::fmt;

/// Bytes per block.
pub const BLOCK: usize = 4096;
/// The superblock's magic.
pub const MAGIC: [u8; 8] = *b"BRAINXFS";
/// The format version this code reads and writes.
pub const VERSION: u32 = 1;
/// Directory blocks at most (256 files).
pub const MAX_DIR_BLOCKS: usize = 8;
/// Bitmap blocks at most (4 × 32768 blocks: 512 MiB).
pub const MAX_BITMAP_BLOCKS: usize = 4;
/// Directory entries per block.
pub const ENTRIES_PER_BLOCK: usize = BLOCK / ENTRY;
/// Bytes per directory entry.
pub const ENTRY: usize = 128;
/// Longest name.
pub const NAME_MAX: usize = 55;
/// Data blocks one map block lists, so the largest file is 2 MiB.
pub const MAP_ENTRIES: usize = BLOCK / 8;
/// Largest file.
pub const MAX_FILE: u64 = (MAP_ENTRIES * BLOCK) as u64;
/// Smallest image: superblock, one directory block, one bitmap block, and room for a file.
pub const MIN_BLOCKS: u32 = 8;

/// CRC-32C (Castagnoli), reflected, as iSCSI and ext4 use it.
pub fn crc32c(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0x82f6_3b78 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    !bytes.iter().fold(!0u32, |c, &b| {
        TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8)
    })
}

/// Why an operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsError {
    /// The block device failed or is not there.
    Io,
    /// No file by that name.
    NotFound,
    /// A file by that name exists.
    Exists,
    /// No free block or directory entry.
    NoSpace,
    /// The file would exceed [`MAX_FILE`], or the offset lies past its end.
    TooBig,
    /// Not a valid name (1 to [`NAME_MAX`] printable ASCII bytes, no `/`).
    BadName,
    /// No BXFS superblock (wrong magic or version) or an impossible geometry.
    NotFormatted,
    /// A block failed its checksum, or holds a value that cannot be (a block number outside the
    /// image, a size its map cannot hold).
    Corrupt {
        /// The block.
        block: u32,
        /// What it is.
        what: &'static str,
    },
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsError::Io => f.write_str("the block device failed"),
            FsError::NotFound => f.write_str("no such file"),
            FsError::Exists => f.write_str("the file exists"),
            FsError::NoSpace => f.write_str("no space left"),
            FsError::TooBig => write!(f, "beyond the largest file ({MAX_FILE} bytes)"),
            FsError::BadName => write!(
                f,
                "not a file name (1 to {NAME_MAX} printable ASCII bytes, no '/')"
            ),
            FsError::NotFormatted => f.write_str("no BXFS filesystem on the device"),
            FsError::Corrupt { block, what } => {
                write!(
                    f,
                    "block {block} ({what}) fails its checksum or is impossible"
                )
            }
        }
    }
}

/// Whether `name` is a valid file name.
pub fn valid_name(name: &[u8]) -> bool {
    (1..=NAME_MAX).contains(&name.len()) && name.iter().all(|&b| b.is_ascii_graphic() && b != b'/')
}

/// Where the blocks are.
pub trait Blocks {
    /// Reads block `block` into `buf`.
    fn read(&mut self, block: u32, buf: &mut [u8; BLOCK]) -> Result<(), FsError>;
    /// Writes `buf` to block `block`.
    fn write(&mut self, block: u32, buf: &[u8; BLOCK]) -> Result<(), FsError>;
    /// Reads `out.len() / BLOCK` consecutive blocks from `first`; a device that can move
    /// several blocks per request overrides this.
    fn read_run(&mut self, first: u32, out: &mut [u8]) -> Result<(), FsError> {
        let mut buf = [0u8; BLOCK];
        for (i, chunk) in out.chunks_mut(BLOCK).enumerate() {
            self.read(first + i as u32, &mut buf)?;
            chunk.copy_from_slice(&buf[..chunk.len()]);
        }
        Ok(())
    }
}

/// An image in memory (host tools and tests).
pub struct MemDisk<'a>(pub &'a mut [u8]);

impl Blocks for MemDisk<'_> {
    fn read(&mut self, block: u32, buf: &mut [u8; BLOCK]) -> Result<(), FsError> {
        let at = block as usize * BLOCK;
        let src = self.0.get(at..at + BLOCK).ok_or(FsError::Io)?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn write(&mut self, block: u32, buf: &[u8; BLOCK]) -> Result<(), FsError> {
        let at = block as usize * BLOCK;
        self.0
            .get_mut(at..at + BLOCK)
            .ok_or(FsError::Io)?
            .copy_from_slice(buf);
        Ok(())
    }
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// The superblock, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Super {
    /// Blocks in the image.
    pub total_blocks: u32,
    /// Directory blocks.
    pub dir_blocks: u32,
    /// Bitmap blocks.
    pub bitmap_blocks: u32,
    /// CRC of each directory block.
    pub dir_crc: [u32; MAX_DIR_BLOCKS],
    /// CRC of each bitmap block.
    pub bitmap_crc: [u32; MAX_BITMAP_BLOCKS],
}

impl Super {
    /// The geometry for an image of `total` blocks: one directory block per 512 blocks (at
    /// least 1, at most [`MAX_DIR_BLOCKS`]), and as many bitmap blocks as it takes.
    pub fn for_blocks(total: u32) -> Result<Super, FsError> {
        let bitmap_blocks = total.div_ceil(BLOCK as u32 * 8);
        if total < MIN_BLOCKS || bitmap_blocks as usize > MAX_BITMAP_BLOCKS {
            return Err(FsError::NoSpace);
        }
        Ok(Super {
            total_blocks: total,
            dir_blocks: (total / 512).clamp(1, MAX_DIR_BLOCKS as u32),
            bitmap_blocks,
            dir_crc: [0; MAX_DIR_BLOCKS],
            bitmap_crc: [0; MAX_BITMAP_BLOCKS],
        })
    }

    /// First block after the metadata.
    pub fn first_data(&self) -> u32 {
        1 + self.dir_blocks + self.bitmap_blocks
    }

    fn encode(&self, b: &mut [u8; BLOCK]) {
        b.fill(0);
        b[..8].copy_from_slice(&MAGIC);
        put32(b, 8, VERSION);
        put32(b, 12, BLOCK as u32);
        put32(b, 16, self.total_blocks);
        put32(b, 20, self.dir_blocks);
        put32(b, 24, self.bitmap_blocks);
        for (i, c) in self.dir_crc.iter().enumerate() {
            put32(b, 32 + 4 * i, *c);
        }
        for (i, c) in self.bitmap_crc.iter().enumerate() {
            put32(b, 64 + 4 * i, *c);
        }
        let crc = crc32c(&b[..BLOCK - 4]);
        put32(b, BLOCK - 4, crc);
    }

    fn decode(b: &[u8; BLOCK]) -> Result<Super, FsError> {
        if b[..8] != MAGIC || le32(b, 8) != VERSION || le32(b, 12) != BLOCK as u32 {
            return Err(FsError::NotFormatted);
        }
        if crc32c(&b[..BLOCK - 4]) != le32(b, BLOCK - 4) {
            return Err(FsError::Corrupt {
                block: 0,
                what: "superblock",
            });
        }
        let mut s = Super {
            total_blocks: le32(b, 16),
            dir_blocks: le32(b, 20),
            bitmap_blocks: le32(b, 24),
            dir_crc: [0; MAX_DIR_BLOCKS],
            bitmap_crc: [0; MAX_BITMAP_BLOCKS],
        };
        for i in 0..MAX_DIR_BLOCKS {
            s.dir_crc[i] = le32(b, 32 + 4 * i);
        }
        for i in 0..MAX_BITMAP_BLOCKS {
            s.bitmap_crc[i] = le32(b, 64 + 4 * i);
        }
        let geometry_ok = (1..=MAX_DIR_BLOCKS as u32).contains(&s.dir_blocks)
            && (1..=MAX_BITMAP_BLOCKS as u32).contains(&s.bitmap_blocks)
            && u64::from(s.bitmap_blocks) * BLOCK as u64 * 8 >= u64::from(s.total_blocks)
            && s.first_data() < s.total_blocks;
        if !geometry_ok {
            return Err(FsError::Corrupt {
                block: 0,
                what: "superblock geometry",
            });
        }
        Ok(s)
    }
}

/// One directory entry, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Name bytes (`name_len` of them are used).
    pub name: [u8; NAME_MAX],
    /// Name length; 0 for a free entry.
    pub name_len: u8,
    /// Size in bytes.
    pub size: u64,
    /// The map block, 0 when the file has no data.
    pub map: u32,
    /// CRC of the map block.
    pub map_crc: u32,
    /// Data blocks in the map.
    pub blocks: u32,
}

impl Entry {
    const FREE: Entry = Entry {
        name: [0; NAME_MAX],
        name_len: 0,
        size: 0,
        map: 0,
        map_crc: 0,
        blocks: 0,
    };

    /// The name.
    pub fn name(&self) -> &[u8] {
        &self.name[..usize::from(self.name_len).min(NAME_MAX)]
    }

    fn decode(b: &[u8]) -> Entry {
        let mut e = Entry::FREE;
        e.name_len = b[0];
        e.name.copy_from_slice(&b[1..1 + NAME_MAX]);
        e.size = u64::from_le_bytes([b[56], b[57], b[58], b[59], b[60], b[61], b[62], b[63]]);
        e.map = le32(b, 64);
        e.map_crc = le32(b, 68);
        e.blocks = le32(b, 72);
        e
    }

    fn encode(&self, b: &mut [u8]) {
        b[..ENTRY].fill(0);
        b[0] = self.name_len;
        b[1..1 + NAME_MAX].copy_from_slice(&self.name);
        b[56..64].copy_from_slice(&self.size.to_le_bytes());
        put32(b, 64, self.map);
        put32(b, 68, self.map_crc);
        put32(b, 72, self.blocks);
    }
}

/// What `stat` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// Bytes.
    pub size: u64,
    /// Data blocks.
    pub blocks: u32,
    /// Directory entry index.
    pub index: usize,
}

/// Totals, for `INFO`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// Blocks in the image.
    pub blocks: u32,
    /// Free blocks.
    pub free: u32,
    /// Files.
    pub files: u32,
    /// Directory entries.
    pub entries: u32,
}

/// A filesystem: the superblock, directory and bitmap are kept in memory (verified when
/// mounted) and written through on every change. It is 56 KiB; a server keeps it in a static
/// ([`Fs::unmounted`] is `const`) and mounts it in place.
pub struct Fs<B: Blocks> {
    dev: B,
    sb: Super,
    mounted: bool,
    dir: [[u8; BLOCK]; MAX_DIR_BLOCKS],
    bitmap: [[u8; BLOCK]; MAX_BITMAP_BLOCKS],
    map: [u8; BLOCK],
    block: [u8; BLOCK],
}

impl<B: Blocks> Fs<B> {
    /// A filesystem on `dev` that is not mounted yet: every operation but [`Fs::remount`] and
    /// [`Fs::reformat`] is [`FsError::NotFormatted`] until it is.
    pub const fn unmounted(dev: B) -> Self {
        Fs {
            dev,
            sb: Super {
                total_blocks: 0,
                dir_blocks: 0,
                bitmap_blocks: 0,
                dir_crc: [0; MAX_DIR_BLOCKS],
                bitmap_crc: [0; MAX_BITMAP_BLOCKS],
            },
            mounted: false,
            dir: [[0; BLOCK]; MAX_DIR_BLOCKS],
            bitmap: [[0; BLOCK]; MAX_BITMAP_BLOCKS],
            map: [0; BLOCK],
            block: [0; BLOCK],
        }
    }

    /// Whether the last mount succeeded.
    pub fn is_mounted(&self) -> bool {
        self.mounted
    }

    /// Forgets the mounted state (after the device failed: the next operation needs a mount).
    pub fn unmount(&mut self) {
        self.mounted = false;
    }

    /// Writes an empty filesystem over all `total` blocks of `dev`.
    pub fn format(dev: B, total: u32) -> Result<Self, FsError> {
        let mut fs = Fs::unmounted(dev);
        fs.reformat(total)?;
        Ok(fs)
    }

    /// Reads and verifies the superblock, the directory and the bitmap of `dev`.
    pub fn mount(dev: B) -> Result<Self, FsError> {
        let mut fs = Fs::unmounted(dev);
        fs.remount()?;
        Ok(fs)
    }

    /// Writes an empty filesystem over `total` blocks, in place.
    pub fn reformat(&mut self, total: u32) -> Result<(), FsError> {
        let sb = Super::for_blocks(total)?;
        self.sb = sb;
        self.dir = [[0; BLOCK]; MAX_DIR_BLOCKS];
        self.bitmap = [[0; BLOCK]; MAX_BITMAP_BLOCKS];
        let fs = self;
        for b in 0..sb.first_data() {
            fs.set_used(b, true);
        }
        // Blocks past the end of the image are marked used, so they are never handed out.
        for b in total..sb.bitmap_blocks * BLOCK as u32 * 8 {
            fs.set_used(b, true);
        }
        for i in 0..sb.dir_blocks as usize {
            fs.write_dir(i)?;
        }
        for i in 0..sb.bitmap_blocks as usize {
            fs.write_bitmap(i)?;
        }
        fs.write_super()?;
        fs.mounted = true;
        Ok(())
    }

    /// Reads and verifies the superblock, the directory and the bitmap, in place.
    pub fn remount(&mut self) -> Result<(), FsError> {
        self.mounted = false;
        let fs = self;
        fs.dev.read(0, &mut fs.block)?;
        let sb = Super::decode(&fs.block)?;
        fs.sb = sb;
        for i in 0..sb.dir_blocks as usize {
            let block = 1 + i as u32;
            fs.dev.read(block, &mut fs.dir[i])?;
            if crc32c(&fs.dir[i]) != sb.dir_crc[i] {
                return Err(FsError::Corrupt {
                    block,
                    what: "directory",
                });
            }
        }
        for i in 0..sb.bitmap_blocks as usize {
            let block = 1 + sb.dir_blocks + i as u32;
            fs.dev.read(block, &mut fs.bitmap[i])?;
            if crc32c(&fs.bitmap[i]) != sb.bitmap_crc[i] {
                return Err(FsError::Corrupt {
                    block,
                    what: "bitmap",
                });
            }
        }
        fs.mounted = true;
        Ok(())
    }

    /// The device, for the caller's own use (a benchmark reading underneath).
    pub fn device(&mut self) -> &mut B {
        &mut self.dev
    }

    /// The superblock.
    pub fn superblock(&self) -> &Super {
        &self.sb
    }

    fn entries(&self) -> usize {
        self.sb.dir_blocks.min(MAX_DIR_BLOCKS as u32) as usize * ENTRIES_PER_BLOCK
    }

    /// Directory entry `i`.
    pub fn entry(&self, i: usize) -> Entry {
        let b = &self.dir[i / ENTRIES_PER_BLOCK];
        let at = (i % ENTRIES_PER_BLOCK) * ENTRY;
        Entry::decode(&b[at..at + ENTRY])
    }

    fn set_entry(&mut self, i: usize, e: &Entry) -> Result<(), FsError> {
        let at = (i % ENTRIES_PER_BLOCK) * ENTRY;
        e.encode(&mut self.dir[i / ENTRIES_PER_BLOCK][at..at + ENTRY]);
        self.write_dir(i / ENTRIES_PER_BLOCK)
    }

    fn write_dir(&mut self, i: usize) -> Result<(), FsError> {
        self.sb.dir_crc[i] = crc32c(&self.dir[i]);
        self.dev.write(1 + i as u32, &self.dir[i])
    }

    fn write_bitmap(&mut self, i: usize) -> Result<(), FsError> {
        self.sb.bitmap_crc[i] = crc32c(&self.bitmap[i]);
        self.dev
            .write(1 + self.sb.dir_blocks + i as u32, &self.bitmap[i])
    }

    fn write_super(&mut self) -> Result<(), FsError> {
        self.sb.encode(&mut self.block);
        let b = self.block;
        self.dev.write(0, &b)
    }

    fn used(&self, block: u32) -> bool {
        let bit = block as usize;
        self.bitmap[bit / (BLOCK * 8)][bit % (BLOCK * 8) / 8] & 1 << (bit % 8) != 0
    }

    fn set_used(&mut self, block: u32, on: bool) {
        let bit = block as usize;
        let byte = &mut self.bitmap[bit / (BLOCK * 8)][bit % (BLOCK * 8) / 8];
        if on {
            *byte |= 1 << (bit % 8);
        } else {
            *byte &= !(1 << (bit % 8));
        }
    }

    fn alloc(&mut self) -> Result<u32, FsError> {
        let b = (self.sb.first_data()..self.sb.total_blocks)
            .find(|&b| !self.used(b))
            .ok_or(FsError::NoSpace)?;
        self.set_used(b, true);
        Ok(b)
    }

    /// Writes every bitmap block (after a change; there are at most four).
    fn flush_bitmap(&mut self) -> Result<(), FsError> {
        for i in 0..self.sb.bitmap_blocks as usize {
            self.write_bitmap(i)?;
        }
        Ok(())
    }

    /// The entry at or after `from` that holds a file.
    pub fn list(&self, from: usize) -> Option<(usize, Entry)> {
        let end = if self.mounted { self.entries() } else { 0 };
        (from..end)
            .map(|i| (i, self.entry(i)))
            .find(|(_, e)| e.name_len != 0)
    }

    fn find(&self, name: &[u8]) -> Result<(usize, Entry), FsError> {
        if !self.mounted {
            return Err(FsError::NotFormatted);
        }
        if !valid_name(name) {
            return Err(FsError::BadName);
        }
        (0..self.entries())
            .map(|i| (i, self.entry(i)))
            .find(|(_, e)| e.name_len != 0 && e.name() == name)
            .ok_or(FsError::NotFound)
    }

    /// Size and blocks of `name`.
    pub fn stat(&self, name: &[u8]) -> Result<Stat, FsError> {
        let (index, e) = self.find(name)?;
        Ok(Stat {
            size: e.size,
            blocks: e.blocks,
            index,
        })
    }

    /// Totals.
    pub fn usage(&self) -> Usage {
        let free = (self.sb.first_data()..self.sb.total_blocks)
            .filter(|&b| !self.used(b))
            .count() as u32;
        Usage {
            blocks: self.sb.total_blocks,
            free,
            files: (0..self.entries())
                .filter(|&i| self.entry(i).name_len != 0)
                .count() as u32,
            entries: self.entries() as u32,
        }
    }

    /// Reads and verifies the map of `e` into `self.map`.
    fn load_map(&mut self, e: &Entry) -> Result<(), FsError> {
        let corrupt = FsError::Corrupt {
            block: e.map,
            what: "file map",
        };
        if e.map == 0 {
            self.map.fill(0);
            return if e.blocks == 0 && e.size == 0 {
                Ok(())
            } else {
                Err(corrupt)
            };
        }
        let sane = e.map >= self.sb.first_data()
            && e.map < self.sb.total_blocks
            && e.blocks as usize <= MAP_ENTRIES
            && e.size.div_ceil(BLOCK as u64) == u64::from(e.blocks);
        if !sane {
            return Err(corrupt);
        }
        self.dev.read(e.map, &mut self.map)?;
        if crc32c(&self.map) != e.map_crc {
            return Err(corrupt);
        }
        Ok(())
    }

    /// Data block `i` of the loaded map and its CRC, checked to lie in the data area.
    fn map_entry(&self, i: usize) -> Result<(u32, u32), FsError> {
        let block = le32(&self.map, 8 * i);
        if block < self.sb.first_data() || block >= self.sb.total_blocks {
            return Err(FsError::Corrupt {
                block,
                what: "file map entry",
            });
        }
        Ok((block, le32(&self.map, 8 * i + 4)))
    }

    /// Reads up to `out.len()` bytes of `name` from `offset`. Every block is checked against
    /// its CRC before a byte of it is copied out. Returns the bytes read (0 at the end).
    pub fn read(&mut self, name: &[u8], offset: u64, out: &mut [u8]) -> Result<usize, FsError> {
        let (_, e) = self.find(name)?;
        if offset >= e.size {
            return Ok(0);
        }
        self.load_map(&e)?;
        let len = (out.len() as u64).min(e.size - offset) as usize;
        let mut done = 0;
        while done < len {
            let at = offset + done as u64;
            let i = (at / BLOCK as u64) as usize;
            let within = (at % BLOCK as u64) as usize;
            // Consecutive blocks on disk, wholly wanted and aligned: one request for the run.
            let (block, _) = self.map_entry(i)?;
            let mut run = 1;
            if within == 0 {
                while done + (run + 1) * BLOCK <= len
                    && i + run < e.blocks as usize
                    && self.map_entry(i + run)?.0 == block + run as u32
                {
                    run += 1;
                }
            }
            if within == 0 && run > 1 {
                let dst = &mut out[done..done + run * BLOCK];
                self.dev.read_run(block, dst)?;
                for k in 0..run {
                    let (b, crc) = self.map_entry(i + k)?;
                    if crc32c(&dst[k * BLOCK..(k + 1) * BLOCK]) != crc {
                        dst.fill(0);
                        return Err(FsError::Corrupt {
                            block: b,
                            what: "file data",
                        });
                    }
                }
                done += run * BLOCK;
                continue;
            }
            let (block, crc) = self.map_entry(i)?;
            self.dev.read(block, &mut self.block)?;
            if crc32c(&self.block) != crc {
                return Err(FsError::Corrupt {
                    block,
                    what: "file data",
                });
            }
            let n = (BLOCK - within).min(len - done);
            out[done..done + n].copy_from_slice(&self.block[within..within + n]);
            done += n;
        }
        Ok(len)
    }

    /// Writes `data` into `name` at `offset`, creating the file if it does not exist. With
    /// `truncate` the file ends where the write ends. Returns the bytes written.
    pub fn write(
        &mut self,
        name: &[u8],
        offset: u64,
        data: &[u8],
        truncate: bool,
    ) -> Result<usize, FsError> {
        let (index, mut e) = match self.find(name) {
            Ok(found) => found,
            Err(FsError::NotFound) => {
                let free = (0..self.entries())
                    .find(|&i| self.entry(i).name_len == 0)
                    .ok_or(FsError::NoSpace)?;
                let mut e = Entry::FREE;
                e.name_len = name.len() as u8;
                e.name[..name.len()].copy_from_slice(name);
                (free, e)
            }
            Err(other) => return Err(other),
        };
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or(FsError::TooBig)?;
        if offset > e.size || end > MAX_FILE {
            return Err(FsError::TooBig);
        }
        let new_size = if truncate { end } else { e.size.max(end) };
        let new_blocks = new_size.div_ceil(BLOCK as u64) as usize;
        self.load_map(&e)?;
        let old_blocks = e.blocks as usize;
        // Blocks needed beyond what the file has, plus a map block for a file that had none.
        let need =
            new_blocks.saturating_sub(old_blocks) + usize::from(e.map == 0 && new_blocks > 0);
        let free = self.usage().free as usize;
        if need > free {
            return Err(FsError::NoSpace);
        }
        // Blocks past the new end go back to the bitmap.
        for i in new_blocks..old_blocks {
            let (b, _) = self.map_entry(i)?;
            self.set_used(b, false);
            put32(&mut self.map, 8 * i, 0);
            put32(&mut self.map, 8 * i + 4, 0);
        }
        // The blocks the write covers: they are all below `new_blocks`, because a write may
        // not start past the end of the file.
        let first = (offset / BLOCK as u64) as usize;
        let last = if data.is_empty() {
            first
        } else {
            ((end - 1) / BLOCK as u64) as usize + 1
        };
        for i in first..last {
            let block_start = i as u64 * BLOCK as u64;
            if i < old_blocks {
                let (b, crc) = self.map_entry(i)?;
                self.dev.read(b, &mut self.block)?;
                if crc32c(&self.block) != crc {
                    return Err(FsError::Corrupt {
                        block: b,
                        what: "file data",
                    });
                }
            } else {
                self.block.fill(0);
            }
            // Copy the part of `data` that falls in this block.
            let from = block_start.max(offset);
            let to = (block_start + BLOCK as u64).min(end);
            if from < to {
                let src = &data[(from - offset) as usize..(to - offset) as usize];
                let at = (from - block_start) as usize;
                self.block[at..at + src.len()].copy_from_slice(src);
            }
            let b = if i < old_blocks {
                self.map_entry(i)?.0
            } else {
                self.alloc()?
            };
            let crc = crc32c(&self.block);
            let block = self.block;
            self.dev.write(b, &block)?;
            put32(&mut self.map, 8 * i, b);
            put32(&mut self.map, 8 * i + 4, crc);
        }
        if new_blocks == 0 {
            if e.map != 0 {
                self.set_used(e.map, false);
            }
            e.map = 0;
            e.map_crc = 0;
        } else {
            if e.map == 0 {
                e.map = self.alloc()?;
            }
            e.map_crc = crc32c(&self.map);
            let map = self.map;
            self.dev.write(e.map, &map)?;
        }
        e.size = new_size;
        e.blocks = new_blocks as u32;
        self.flush_bitmap()?;
        self.set_entry(index, &e)?;
        self.write_super()?;
        Ok(data.len())
    }

    /// Removes `name` and frees its blocks.
    pub fn remove(&mut self, name: &[u8]) -> Result<(), FsError> {
        let (index, e) = self.find(name)?;
        // A file whose map is corrupt is still removed; its blocks are only freed when the map
        // can be trusted.
        if self.load_map(&e).is_ok() {
            for i in 0..e.blocks as usize {
                if let Ok((b, _)) = self.map_entry(i) {
                    self.set_used(b, false);
                }
            }
            if e.map != 0 {
                self.set_used(e.map, false);
            }
        }
        self.flush_bitmap()?;
        self.set_entry(index, &Entry::FREE)?;
        self.write_super()
    }

    /// Every data block of `name` in order, with its CRC: for a caller that reads underneath
    /// (the throughput benchmark), which must still check each block.
    pub fn blocks_of(
        &mut self,
        name: &[u8],
        mut each: impl FnMut(&mut B, u32, u32) -> Result<(), FsError>,
    ) -> Result<u64, FsError> {
        let (_, e) = self.find(name)?;
        self.load_map(&e)?;
        for i in 0..e.blocks as usize {
            let (b, crc) = self.map_entry(i)?;
            each(&mut self.dev, b, crc)?;
        }
        Ok(e.size)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;
    use std::vec::Vec;

    fn image(blocks: usize) -> Vec<u8> {
        vec![0u8; blocks * BLOCK]
    }

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn files_round_trip_and_survive_a_remount() {
        let mut img = image(64);
        let big: Vec<u8> = (0..3 * BLOCK + 100).map(|i| (i * 7) as u8).collect();
        {
            let mut fs = Fs::format(MemDisk(&mut img), 64).unwrap();
            assert_eq!(fs.write(b"hello.txt", 0, b"hello, world\n", false), Ok(13));
            assert_eq!(fs.write(b"big", 0, &big, false), Ok(big.len()));
            assert_eq!(fs.write(b"hello.txt", 7, b"BraiNIX\n", false), Ok(8));
        }
        let mut fs = Fs::mount(MemDisk(&mut img)).unwrap();
        let mut out = [0u8; 64];
        let n = fs.read(b"hello.txt", 0, &mut out).unwrap();
        assert_eq!(&out[..n], b"hello, BraiNIX\n");
        let mut back = vec![0u8; big.len() + 10];
        assert_eq!(fs.read(b"big", 0, &mut back), Ok(big.len()));
        assert_eq!(&back[..big.len()], &big[..]);
        let mut part = [0u8; 200];
        assert_eq!(fs.read(b"big", BLOCK as u64 - 50, &mut part), Ok(200));
        assert_eq!(&part[..], &big[BLOCK - 50..BLOCK + 150]);
        assert_eq!(fs.read(b"big", big.len() as u64, &mut part), Ok(0));
        let names: Vec<Vec<u8>> = (0..)
            .scan(0, |from, _| {
                let (i, e) = fs.list(*from)?;
                *from = i + 1;
                Some(e.name().to_vec())
            })
            .collect();
        assert_eq!(names, [b"hello.txt".to_vec(), b"big".to_vec()]);
        assert_eq!(fs.stat(b"big").unwrap().blocks, 4);
    }

    #[test]
    fn truncate_remove_and_space_are_accounted() {
        let mut img = image(16);
        let mut fs = Fs::format(MemDisk(&mut img), 16).unwrap();
        let free = fs.usage().free;
        fs.write(b"a", 0, &[1u8; 3 * BLOCK], false).unwrap();
        assert_eq!(fs.usage().free, free - 4);
        fs.write(b"a", 0, b"xy", true).unwrap();
        assert_eq!(
            fs.stat(b"a").unwrap(),
            Stat {
                size: 2,
                blocks: 1,
                index: 0
            }
        );
        assert_eq!(fs.usage().free, free - 2);
        let mut out = [0u8; 8];
        assert_eq!(fs.read(b"a", 0, &mut out), Ok(2));
        fs.write(b"a", 0, b"", true).unwrap();
        assert_eq!(fs.usage().free, free);
        fs.remove(b"a").unwrap();
        assert_eq!(fs.stat(b"a"), Err(FsError::NotFound));
        assert_eq!(fs.remove(b"a"), Err(FsError::NotFound));
        // More than the image holds.
        assert_eq!(
            fs.write(b"b", 0, &vec![0u8; 20 * BLOCK], false),
            Err(FsError::NoSpace)
        );
        assert_eq!(fs.usage().free, free, "a refused write takes nothing");
        assert_eq!(fs.write(b"c", 5, b"x", false), Err(FsError::TooBig));
        assert_eq!(fs.write(b"bad/name", 0, b"x", false), Err(FsError::BadName));
        assert_eq!(fs.write(b"", 0, b"x", false), Err(FsError::BadName));
    }

    #[test]
    fn corruption_anywhere_is_reported_and_never_returned() {
        let mut img = image(32);
        {
            let mut fs = Fs::format(MemDisk(&mut img), 32).unwrap();
            fs.write(b"f", 0, &[0x42u8; 2 * BLOCK], false).unwrap();
        }
        let data_block = {
            let mut fs = Fs::mount(MemDisk(&mut img)).unwrap();
            let mut first = 0;
            fs.blocks_of(b"f", |_, b, _| {
                if first == 0 {
                    first = b;
                }
                Ok(())
            })
            .unwrap();
            first as usize
        };
        // A flipped bit in file data: the read fails and the caller's buffer holds none of it.
        let mut bad = img.clone();
        bad[data_block * BLOCK + 100] ^= 1;
        let mut fs = Fs::mount(MemDisk(&mut bad)).unwrap();
        let mut out = vec![0u8; 2 * BLOCK];
        assert_eq!(
            fs.read(b"f", 0, &mut out),
            Err(FsError::Corrupt {
                block: data_block as u32,
                what: "file data"
            })
        );
        assert!(
            out.iter().all(|&b| b == 0),
            "corrupt data reached the caller"
        );
        let mut small = [0u8; 10];
        assert!(matches!(
            fs.read(b"f", 0, &mut small),
            Err(FsError::Corrupt { .. })
        ));
        // Superblock, directory, bitmap: the mount fails, naming the block.
        for (block, what) in [(0, "superblock"), (1, "directory"), (2, "bitmap")] {
            let mut bad = img.clone();
            bad[block * BLOCK + 40] ^= 0x80;
            match Fs::mount(MemDisk(&mut bad)) {
                Err(FsError::Corrupt { block: b, what: w }) => {
                    assert_eq!((b as usize, w), (block, what))
                }
                other => panic!("{what}: {:?}", other.err()),
            }
        }
        // Not a filesystem at all.
        let mut zero = image(8);
        assert_eq!(
            Fs::mount(MemDisk(&mut zero)).err(),
            Some(FsError::NotFormatted)
        );
    }

    #[test]
    fn impossible_values_are_corruption_not_a_panic() {
        let mut img = image(32);
        {
            let mut fs = Fs::format(MemDisk(&mut img), 32).unwrap();
            fs.write(b"f", 0, b"data", false).unwrap();
        }
        // An entry claiming a map outside the image, with a matching directory CRC.
        let mut bad = img.clone();
        let at = BLOCK + 64;
        bad[at..at + 4].copy_from_slice(&9999u32.to_le_bytes());
        let dir_crc = crc32c(&bad[BLOCK..2 * BLOCK]);
        let mut sb = [0u8; BLOCK];
        sb.copy_from_slice(&bad[..BLOCK]);
        put32(&mut sb, 32, dir_crc);
        let crc = crc32c(&sb[..BLOCK - 4]);
        put32(&mut sb, BLOCK - 4, crc);
        bad[..BLOCK].copy_from_slice(&sb);
        let mut fs = Fs::mount(MemDisk(&mut bad)).unwrap();
        let mut out = [0u8; 8];
        assert!(matches!(
            fs.read(b"f", 0, &mut out),
            Err(FsError::Corrupt {
                what: "file map",
                ..
            })
        ));
    }
}
