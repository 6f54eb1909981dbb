//! The boot disk: a GPT disk with one EFI system partition, FAT32, written byte by byte here so
//! that the same files always give the same image (host only).
//!
//! No host tool touches the image: `mkfs` and `mtools` stamp times, volume serial numbers and
//! their own names into it. Here every field is a constant or derived from the files:
//!
//! - timestamps are all 1980-01-01 00:00:00, the FAT epoch;
//! - the volume serial number, the disk GUID and the partition GUID are taken from the SHA-256
//!   of the files (names and contents), so a different release gets different identifiers and
//!   the same release always the same;
//! - directories and files are laid out in name order, each file in one contiguous run of
//!   clusters.
//!
//! Names must be 8.3 names (`KERNEL.ELF`), so there are no long-name entries. They are stored
//! in upper case; FAT lookups, UEFI's included, ignore case.
//!
//! [`read_file`] parses an image back (GPT header and entry CRCs, the ESP, the FAT chain), for
//! the tests and for `cargo xtask verify-release`.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;

/// Bytes per sector.
pub const SECTOR: usize = 512;

/// The ESP's first sector: 1 MiB, the alignment every partitioning tool uses.
pub const ESP_START_LBA: u64 = 2048;

/// The ESP's size in sectors: 64 MiB, enough for FAT32's minimum of 65525 clusters with
/// 512-byte clusters (the UEFI specification asks for FAT32 on fixed disks) and many times
/// what a release holds (under 2 MiB).
pub const ESP_SECTORS: u64 = 131_072;

/// Sectors before the first FAT (boot sector, FSInfo, backup boot sector at 6).
const RESERVED_SECTORS: u64 = 32;
/// GPT partition entries, and their size: the usual 128 × 128 bytes (32 sectors).
const GPT_ENTRIES: usize = 128;
const GPT_ENTRY_LEN: usize = 128;
const GPT_ENTRY_SECTORS: u64 = (GPT_ENTRIES * GPT_ENTRY_LEN / SECTOR) as u64;
/// The EFI system partition type, C12A7328-F81F-11D2-BA4B-00A0C93EC93B, in on-disk byte order.
pub const ESP_TYPE: [u8; 16] = [
    0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b,
];
/// 1980-01-01 in FAT date format.
const FAT_EPOCH_DATE: u16 = (1 << 5) | 1;
const END_OF_CHAIN: u32 = 0x0fff_ffff;

/// Why a disk image cannot be made or read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskError {
    /// A path component is not an 8.3 name of letters, digits, `_` and `-`.
    NotShortName(String),
    /// The same path twice, or a path used both as a file and as a directory.
    Conflict(String),
    /// The files need more clusters than the partition has.
    TooLarge {
        /// Clusters needed.
        needed: u64,
        /// Clusters available.
        available: u64,
    },
    /// Reading back: the image is not what this module writes.
    Malformed(&'static str),
}

impl fmt::Display for DiskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiskError::NotShortName(p) => write!(
                f,
                "{p:?} is not an 8.3 name (up to 8 characters, optionally a dot and up to 3, \
                 letters, digits, '_' or '-')"
            ),
            DiskError::Conflict(p) => {
                write!(f, "{p:?} is given twice or is both a file and a directory")
            }
            DiskError::TooLarge { needed, available } => write!(
                f,
                "the files need {needed} clusters of {SECTOR} bytes; the ESP has {available}"
            ),
            DiskError::Malformed(what) => write!(f, "not a BraiNIX boot disk: {what}"),
        }
    }
}

impl std::error::Error for DiskError {}

/// CRC-32 (IEEE 802.3), as GPT uses it.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xedb8_8320 & 0u32.wrapping_sub(crc & 1));
        }
    }
    !crc
}

/// The 11-byte directory name of an 8.3 component, upper case.
fn short_name(component: &str, path: &str) -> Result<[u8; 11], DiskError> {
    let bad = || DiskError::NotShortName(path.to_owned());
    let (base, ext) = component.split_once('.').unwrap_or((component, ""));
    let ok = |s: &str, max: usize| {
        s.len() <= max
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    if base.is_empty() || !ok(base, 8) || !ok(ext, 3) || (component.ends_with('.')) {
        return Err(bad());
    }
    let mut name = [b' '; 11];
    name[..base.len()].copy_from_slice(base.to_ascii_uppercase().as_bytes());
    name[8..8 + ext.len()].copy_from_slice(ext.to_ascii_uppercase().as_bytes());
    Ok(name)
}

/// A directory: its entries by on-disk name.
type Tree<'a> = BTreeMap<[u8; 11], Node<'a>>;

enum Node<'a> {
    Dir(Tree<'a>),
    File(&'a [u8]),
}

/// Puts `data` at `parts` under `dir`, creating directories on the way.
fn insert<'a>(
    dir: &mut BTreeMap<[u8; 11], Node<'a>>,
    parts: &[&str],
    data: &'a [u8],
    path: &str,
) -> Result<(), DiskError> {
    use std::collections::btree_map::Entry;
    let conflict = || DiskError::Conflict(path.to_owned());
    let (first, rest) = parts.split_first().ok_or_else(conflict)?;
    let name = short_name(first, path)?;
    match (dir.entry(name), rest.is_empty()) {
        (Entry::Vacant(v), true) => {
            v.insert(Node::File(data));
            Ok(())
        }
        (Entry::Vacant(v), false) => match v.insert(Node::Dir(BTreeMap::new())) {
            Node::Dir(d) => insert(d, rest, data, path),
            Node::File(_) => Err(conflict()),
        },
        (Entry::Occupied(o), false) => match o.into_mut() {
            Node::Dir(d) => insert(d, rest, data, path),
            Node::File(_) => Err(conflict()),
        },
        (Entry::Occupied(_), true) => Err(conflict()),
    }
}

/// A node with its clusters assigned.
struct Placed {
    first: u32,
    clusters: u32,
}

fn clusters_for(bytes: u64) -> u64 {
    bytes.div_ceil(SECTOR as u64)
}

fn dir_clusters(entries: usize) -> u64 {
    clusters_for(32 * entries as u64).max(1)
}

/// Derives 16 identifier bytes from `seed` and a purpose, marked as an RFC 9562 version 8
/// (custom) UUID in GPT's mixed-endian byte order.
fn derived_guid(seed: &[u8; 32], purpose: &[u8]) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(b"BraiNIX boot disk identifier\0");
    h.update(purpose);
    h.update(seed);
    let d = h.finalize();
    let mut g = [0u8; 16];
    g.copy_from_slice(&d[..16]);
    g[7] = (g[7] & 0x0f) | 0x80;
    g[8] = (g[8] & 0x3f) | 0x80;
    g
}

/// A FAT32 volume of `sectors` sectors holding `files` (`"EFI/BOOT/BOOTX64.EFI"` paths);
/// `hidden` is its first sector on the disk. `seed` makes the volume serial number.
pub fn fat32(
    files: &[(&str, &[u8])],
    sectors: u64,
    hidden: u64,
    seed: &[u8; 32],
) -> Result<Vec<u8>, DiskError> {
    // The tree, sorted by on-disk name.
    let mut root: BTreeMap<[u8; 11], Node> = BTreeMap::new();
    for (path, data) in files {
        let parts: Vec<&str> = path.split('/').collect();
        insert(&mut root, &parts, data, path)?;
    }

    // Geometry: one sector per cluster; the FAT size from the FAT specification's formula.
    let fat_sectors = (sectors - RESERVED_SECTORS).div_ceil((256 + 2) / 2);
    let data_start = RESERVED_SECTORS + 2 * fat_sectors;
    let available = sectors - data_start;

    // Clusters, breadth first in name order: each directory, then what it holds.
    let mut next: u64 = 2;
    let mut placed: Vec<Placed> = Vec::new();
    let mut alloc = |n: u64| -> Placed {
        let p = Placed {
            first: if n == 0 { 0 } else { next as u32 },
            clusters: n as u32,
        };
        next += n;
        p
    };
    // Root: its entries plus the volume label.
    placed.push(alloc(dir_clusters(root.len() + 1)));
    let mut queue: Vec<(&BTreeMap<[u8; 11], Node>, bool)> = vec![(&root, true)];
    let mut order: Vec<&Node> = Vec::new();
    let mut qi = 0;
    while qi < queue.len() {
        let (dir, _) = queue[qi];
        qi += 1;
        for node in dir.values() {
            let n = match node {
                Node::Dir(d) => dir_clusters(d.len() + 2),
                Node::File(f) => clusters_for(f.len() as u64),
            };
            placed.push(alloc(n));
            order.push(node);
            if let Node::Dir(d) = node {
                queue.push((d, false));
            }
        }
    }
    let used = next - 2;
    if used > available {
        return Err(DiskError::TooLarge {
            needed: used,
            available,
        });
    }

    let mut vol = vec![0u8; sectors as usize * SECTOR];
    let put16 = |b: &mut [u8], at: usize, v: u16| b[at..at + 2].copy_from_slice(&v.to_le_bytes());
    let put32 = |b: &mut [u8], at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());

    // Boot sector (BPB for FAT32).
    {
        let b = &mut vol[..SECTOR];
        b[..3].copy_from_slice(&[0xeb, 0x58, 0x90]);
        b[3..11].copy_from_slice(b"BRAINIX ");
        put16(b, 11, SECTOR as u16);
        b[13] = 1; // sectors per cluster
        put16(b, 14, RESERVED_SECTORS as u16);
        b[16] = 2; // FATs
        b[21] = 0xf8; // fixed disk
        put16(b, 24, 63);
        put16(b, 26, 255);
        put32(b, 28, hidden as u32);
        put32(b, 32, sectors as u32);
        put32(b, 36, fat_sectors as u32);
        put32(b, 44, 2); // root cluster
        put16(b, 48, 1); // FSInfo sector
        put16(b, 50, 6); // backup boot sector
        b[64] = 0x80;
        b[66] = 0x29;
        b[67..71].copy_from_slice(&derived_guid(seed, b"volume")[..4]);
        b[71..82].copy_from_slice(b"BRAINIX    ");
        b[82..90].copy_from_slice(b"FAT32   ");
        b[510] = 0x55;
        b[511] = 0xaa;
    }
    // FSInfo.
    {
        let b = &mut vol[SECTOR..2 * SECTOR];
        put32(b, 0, 0x4161_5252);
        put32(b, 484, 0x6141_7272);
        put32(b, 488, (available - used) as u32);
        put32(b, 492, next as u32);
        put32(b, 508, 0xaa55_0000);
    }
    // Sector 2 ends with the boot signature too (the FAT32 boot record is three sectors).
    vol[3 * SECTOR - 2] = 0x55;
    vol[3 * SECTOR - 1] = 0xaa;
    let boot_area = vol[..3 * SECTOR].to_vec();
    vol[6 * SECTOR..9 * SECTOR].copy_from_slice(&boot_area);

    // FAT: media entry, end-of-chain entry, then one contiguous chain per node.
    let mut fat = vec![0u8; fat_sectors as usize * SECTOR];
    put32(&mut fat, 0, 0x0fff_fff8);
    put32(&mut fat, 4, END_OF_CHAIN);
    for p in &placed {
        for i in 0..p.clusters {
            let c = p.first + i;
            let link = if i + 1 == p.clusters {
                END_OF_CHAIN
            } else {
                c + 1
            };
            put32(&mut fat, 4 * c as usize, link);
        }
    }
    for copy in 0..2 {
        let at = (RESERVED_SECTORS + copy * fat_sectors) as usize * SECTOR;
        vol[at..at + fat.len()].copy_from_slice(&fat);
    }

    // Directory entries and file contents.
    let cluster_at = |c: u32| (data_start + u64::from(c) - 2) as usize * SECTOR;
    let entry = |name: &[u8; 11], attr: u8, first: u32, size: u32| {
        let mut e = [0u8; 32];
        e[..11].copy_from_slice(name);
        e[11] = attr;
        put16(&mut e, 16, FAT_EPOCH_DATE); // created
        put16(&mut e, 18, FAT_EPOCH_DATE); // accessed
        put16(&mut e, 20, (first >> 16) as u16);
        put16(&mut e, 24, FAT_EPOCH_DATE); // written
        put16(&mut e, 26, first as u16);
        put32(&mut e, 28, size);
        e
    };
    // Walk the same order again, writing each directory's entries into its clusters.
    // (directory, its index in `placed`, its parent's first cluster)
    let mut dirs: Vec<(&Tree, usize, u32)> = vec![(&root, 0, 0)];
    let index_of = |node: &Node| order.iter().position(|n| std::ptr::eq(*n, node)).unwrap() + 1;
    let mut di = 0;
    while di < dirs.len() {
        let (dir, placed_index, parent_first) = dirs[di];
        di += 1;
        let me = &placed[placed_index];
        let mut at = cluster_at(me.first);
        let mut push = |vol: &mut Vec<u8>, e: [u8; 32]| {
            vol[at..at + 32].copy_from_slice(&e);
            at += 32;
        };
        if placed_index == 0 {
            push(&mut vol, entry(b"BRAINIX    ", 0x08, 0, 0));
        } else {
            push(&mut vol, entry(b".          ", 0x10, me.first, 0));
            push(&mut vol, entry(b"..         ", 0x10, parent_first, 0));
        }
        for (name, node) in dir {
            let i = index_of(node);
            let p = &placed[i];
            match node {
                Node::Dir(d) => {
                    push(&mut vol, entry(name, 0x10, p.first, 0));
                    // ".." of a directory in the root names cluster 0.
                    let parent = if placed_index == 0 { 0 } else { me.first };
                    dirs.push((d, i, parent));
                }
                Node::File(data) => {
                    push(&mut vol, entry(name, 0x20, p.first, data.len() as u32));
                    if p.first != 0 {
                        let start = cluster_at(p.first);
                        vol[start..start + data.len()].copy_from_slice(data);
                    }
                }
            }
        }
    }
    Ok(vol)
}

/// A GPT disk whose only partition, the ESP, holds `esp` (a multiple of [`SECTOR`] bytes) at
/// [`ESP_START_LBA`]. `seed` makes the disk and partition GUIDs.
pub fn gpt(esp: &[u8], seed: &[u8; 32]) -> Vec<u8> {
    let esp_sectors = (esp.len() / SECTOR) as u64;
    let total = ESP_START_LBA + esp_sectors + 1 + GPT_ENTRY_SECTORS;
    let mut disk = vec![0u8; total as usize * SECTOR];
    let last_usable = total - 2 - GPT_ENTRY_SECTORS;

    // Protective MBR: one partition of type 0xEE covering the disk.
    {
        let m = &mut disk[446..462];
        m[1..4].copy_from_slice(&[0x00, 0x02, 0x00]);
        m[4] = 0xee;
        m[5..8].copy_from_slice(&[0xff, 0xff, 0xff]);
        m[8..12].copy_from_slice(&1u32.to_le_bytes());
        m[12..16].copy_from_slice(&((total - 1).min(0xffff_ffff) as u32).to_le_bytes());
        disk[510] = 0x55;
        disk[511] = 0xaa;
    }

    let mut entries = vec![0u8; GPT_ENTRIES * GPT_ENTRY_LEN];
    entries[..16].copy_from_slice(&ESP_TYPE);
    entries[16..32].copy_from_slice(&derived_guid(seed, b"partition"));
    entries[32..40].copy_from_slice(&ESP_START_LBA.to_le_bytes());
    entries[40..48].copy_from_slice(&(ESP_START_LBA + esp_sectors - 1).to_le_bytes());
    for (i, c) in "EFI system partition".encode_utf16().enumerate() {
        entries[56 + 2 * i..58 + 2 * i].copy_from_slice(&c.to_le_bytes());
    }
    let entries_crc = crc32(&entries);
    let disk_guid = derived_guid(seed, b"disk");

    let header = |my_lba: u64, other_lba: u64, entries_lba: u64| {
        let mut h = [0u8; 92];
        h[..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&my_lba.to_le_bytes());
        h[32..40].copy_from_slice(&other_lba.to_le_bytes());
        h[40..48].copy_from_slice(&(2 + GPT_ENTRY_SECTORS).to_le_bytes());
        h[48..56].copy_from_slice(&last_usable.to_le_bytes());
        h[56..72].copy_from_slice(&disk_guid);
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&(GPT_ENTRIES as u32).to_le_bytes());
        h[84..88].copy_from_slice(&(GPT_ENTRY_LEN as u32).to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = crc32(&h);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    };
    let backup_entries = total - 1 - GPT_ENTRY_SECTORS;
    let s = SECTOR;
    disk[s..s + 92].copy_from_slice(&header(1, total - 1, 2));
    disk[2 * s..2 * s + entries.len()].copy_from_slice(&entries);
    let at = ESP_START_LBA as usize * s;
    disk[at..at + esp.len()].copy_from_slice(esp);
    let at = backup_entries as usize * s;
    disk[at..at + entries.len()].copy_from_slice(&entries);
    let at = (total - 1) as usize * s;
    disk[at..at + 92].copy_from_slice(&header(total - 1, 1, backup_entries));
    disk
}

/// The seed every identifier of a disk with `files` is derived from.
pub fn seed(files: &[(&str, &[u8])]) -> [u8; 32] {
    let mut h = Sha256::new();
    for (path, data) in files {
        h.update((path.len() as u64).to_le_bytes());
        h.update(path.as_bytes());
        h.update((data.len() as u64).to_le_bytes());
        h.update(data);
    }
    h.finalize().into()
}

/// The boot disk holding `files`: GPT, one 64 MiB FAT32 ESP.
pub fn boot_disk(files: &[(&str, &[u8])]) -> Result<Vec<u8>, DiskError> {
    let seed = seed(files);
    Ok(gpt(
        &fat32(files, ESP_SECTORS, ESP_START_LBA, &seed)?,
        &seed,
    ))
}

/// Reads `path` back from a disk this module wrote, checking the GPT on the way (signature,
/// header CRC, entry CRC, an ESP entry). `None` when the file is not there.
pub fn read_file(disk: &[u8], path: &str) -> Result<Option<Vec<u8>>, DiskError> {
    let m = DiskError::Malformed;
    let u16_at = |b: &[u8], at: usize| -> Result<u16, DiskError> {
        Ok(u16::from_le_bytes(
            b.get(at..at + 2).ok_or(m("truncated"))?.try_into().unwrap(),
        ))
    };
    let u32_at = |b: &[u8], at: usize| -> Result<u32, DiskError> {
        Ok(u32::from_le_bytes(
            b.get(at..at + 4).ok_or(m("truncated"))?.try_into().unwrap(),
        ))
    };
    let u64_at = |b: &[u8], at: usize| -> Result<u64, DiskError> {
        Ok(u64::from_le_bytes(
            b.get(at..at + 8).ok_or(m("truncated"))?.try_into().unwrap(),
        ))
    };
    let header = disk.get(SECTOR..SECTOR + 92).ok_or(m("no GPT header"))?;
    if &header[..8] != b"EFI PART" {
        return Err(m("no GPT signature at LBA 1"));
    }
    let mut h = header.to_vec();
    h[16..20].fill(0);
    if crc32(&h) != u32_at(header, 16)? {
        return Err(m("GPT header CRC does not match"));
    }
    let entries_at = u64_at(header, 72)? as usize * SECTOR;
    let count = u32_at(header, 80)? as usize;
    let size = u32_at(header, 84)? as usize;
    let table = disk
        .get(entries_at..entries_at + count * size)
        .ok_or(m("GPT entries outside the disk"))?;
    if crc32(table) != u32_at(header, 88)? {
        return Err(m("GPT entry CRC does not match"));
    }
    let esp = (0..count)
        .map(|i| &table[i * size..(i + 1) * size])
        .find(|e| e[..16] == ESP_TYPE)
        .ok_or(m("no EFI system partition"))?;
    let first = u64_at(esp, 32)? as usize * SECTOR;
    let last = u64_at(esp, 40)? as usize * SECTOR + SECTOR;
    let vol = disk.get(first..last).ok_or(m("ESP outside the disk"))?;

    if u16_at(vol, 11)? as usize != SECTOR
        || vol[13] != 1
        || vol.get(510..512) != Some(&[0x55, 0xaa])
    {
        return Err(m("ESP is not a FAT32 volume with 512-byte clusters"));
    }
    let reserved = u64::from(u16_at(vol, 14)?);
    let fat_sectors = u64::from(u32_at(vol, 36)?);
    let data_start = reserved + u64::from(vol[16]) * fat_sectors;
    let fat_at = reserved as usize * SECTOR;
    let chain = |first: u32, len: Option<usize>| -> Result<Vec<u8>, DiskError> {
        let mut out = Vec::new();
        let mut c = first;
        while (2..0x0fff_fff8).contains(&c) {
            let at = (data_start + u64::from(c) - 2) as usize * SECTOR;
            out.extend_from_slice(
                vol.get(at..at + SECTOR)
                    .ok_or(m("cluster outside the ESP"))?,
            );
            if out.len() > vol.len() {
                return Err(m("FAT chain loops"));
            }
            c = u32_at(vol, fat_at + 4 * c as usize)? & 0x0fff_ffff;
        }
        if let Some(len) = len {
            if out.len() < len {
                return Err(m("file shorter than its directory entry"));
            }
            out.truncate(len);
        }
        Ok(out)
    };
    let mut dir = chain(u32_at(vol, 44)?, None)?;
    let parts: Vec<&str> = path.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        let name = short_name(part, path)?;
        let Some(e) = dir
            .chunks(32)
            .take_while(|e| e[0] != 0)
            .find(|e| e[..11] == name && e[11] & 0x08 == 0)
        else {
            return Ok(None);
        };
        let first = (u32::from(u16_at(e, 20)?) << 16) | u32::from(u16_at(e, 26)?);
        let is_dir = e[11] & 0x10 != 0;
        if i + 1 == parts.len() {
            return if is_dir {
                Ok(None)
            } else {
                chain(first, Some(u32_at(e, 28)? as usize)).map(Some)
            };
        }
        if !is_dir {
            return Ok(None);
        }
        dir = chain(first, None)?;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> Vec<(&'static str, Vec<u8>)> {
        vec![
            (
                "EFI/BOOT/BOOTX64.EFI",
                (0..70_000u32).map(|i| i as u8).collect(),
            ),
            ("kernel.elf", vec![0x7f; 1200]),
            ("kernel.sig", vec![1; 104]),
            ("cmdline.txt", Vec::new()),
        ]
    }

    fn disk(files: &[(&'static str, Vec<u8>)]) -> Vec<u8> {
        let refs: Vec<(&str, &[u8])> = files.iter().map(|(p, d)| (*p, d.as_slice())).collect();
        boot_disk(&refs).unwrap()
    }

    #[test]
    fn crc32_is_the_ieee_one() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn every_file_reads_back_and_case_does_not_matter() {
        let f = files();
        let d = disk(&f);
        for (path, data) in &f {
            assert_eq!(read_file(&d, path).unwrap().as_ref(), Some(data), "{path}");
        }
        assert_eq!(
            read_file(&d, "efi/boot/bootx64.efi").unwrap().unwrap(),
            f[0].1
        );
        assert_eq!(read_file(&d, "missing.txt").unwrap(), None);
        assert_eq!(read_file(&d, "kernel.elf/x").unwrap(), None);
        assert_eq!(read_file(&d, "EFI").unwrap(), None);
    }

    #[test]
    fn the_layout_is_what_firmware_expects() {
        let d = disk(&files());
        assert_eq!(
            d.len() as u64,
            (ESP_START_LBA + ESP_SECTORS + 33) * SECTOR as u64
        );
        // Protective MBR.
        assert_eq!(d[450], 0xee);
        assert_eq!(&d[510..512], &[0x55, 0xaa]);
        // Primary and backup headers agree on everything but their own positions.
        let primary = &d[SECTOR..SECTOR + 92];
        let last = d.len() - SECTOR;
        let backup = &d[last..last + 92];
        assert_eq!(primary[56..72], backup[56..72], "disk GUID");
        assert_eq!(primary[88..92], backup[88..92], "entry CRC");
        assert_eq!(
            u64::from_le_bytes(backup[24..32].try_into().unwrap()),
            (d.len() / SECTOR - 1) as u64
        );
        // The ESP's boot sector is FAT32 with enough clusters to be FAT32 by count.
        let vol = &d[ESP_START_LBA as usize * SECTOR..];
        assert_eq!(&vol[82..90], b"FAT32   ");
        let fat = u64::from(u32::from_le_bytes(vol[36..40].try_into().unwrap()));
        let clusters = ESP_SECTORS - RESERVED_SECTORS - 2 * fat;
        assert!(clusters >= 65_525, "{clusters} clusters is not FAT32");
        assert!(fat * 128 >= clusters + 2, "the FAT covers every cluster");
        // Backup boot sector.
        assert_eq!(vol[..SECTOR], vol[6 * SECTOR..7 * SECTOR]);
    }

    #[test]
    fn the_same_files_give_the_same_bytes_and_other_files_other_identifiers() {
        let a = disk(&files());
        assert_eq!(a, disk(&files()), "two builds differ");
        let mut other = files();
        other[1].1[0] = 0;
        let b = disk(&other);
        assert_ne!(a[SECTOR + 56..SECTOR + 72], b[SECTOR + 56..SECTOR + 72]);
    }

    #[test]
    fn corrupted_tables_are_reported() {
        let mut d = disk(&files());
        d[SECTOR + 40] ^= 1;
        assert_eq!(
            read_file(&d, "kernel.elf"),
            Err(DiskError::Malformed("GPT header CRC does not match"))
        );
        let mut d = disk(&files());
        d[2 * SECTOR + 60] ^= 1;
        assert_eq!(
            read_file(&d, "kernel.elf"),
            Err(DiskError::Malformed("GPT entry CRC does not match"))
        );
        assert!(read_file(&d[..100], "kernel.elf").is_err());
    }

    #[test]
    fn bad_names_conflicts_and_overflow_are_errors() {
        let long = [("averylongname.elf", &b""[..])];
        assert!(matches!(boot_disk(&long), Err(DiskError::NotShortName(_))));
        for bad in ["a.b.c", "a b", ".x", "x.", "x.four", "", "a//b"] {
            assert!(
                matches!(
                    boot_disk(&[(bad, &b""[..])]),
                    Err(DiskError::NotShortName(_))
                ),
                "{bad:?}"
            );
        }
        let twice = [("A.TXT", &b"1"[..]), ("a.txt", &b"2"[..])];
        assert!(matches!(boot_disk(&twice), Err(DiskError::Conflict(_))));
        let both = [("A", &b"1"[..]), ("A/B", &b"2"[..])];
        assert!(matches!(boot_disk(&both), Err(DiskError::Conflict(_))));
        let big = vec![0u8; 40 << 20];
        let seed = [0; 32];
        assert!(matches!(
            fat32(&[("BIG", &big)], 65_536, 2048, &seed),
            Err(DiskError::TooLarge { .. })
        ));
    }
}
