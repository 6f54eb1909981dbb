//! The boot record the loader hands the kernel: a PVH `struct hvm_start_info` (Xen
//! `arch-x86/hvm/start_info.h`, version 1, the one QEMU's `-kernel` builds) with the command line
//! and an E820-typed memory map converted from the firmware's final UEFI memory map.
//!
//! Handing over PVH keeps one boot-record parser in the kernel (`kernel/src/bootinfo.rs`) and the
//! same entry state as every PVH loader: 32-bit protected mode, paging off, EBX pointing here.
//!
//! The whole record lives in one block below 4 GiB ([`Layout`]): start info, then the command
//! line, then the map. The kernel copies what it needs before it reuses any memory.

/// `hvm_start_info.magic`.
pub const START_INFO_MAGIC: u32 = 0x336e_c578;

/// Bytes of `struct hvm_start_info` (version 1).
pub const START_INFO_LEN: usize = 56;

/// Bytes of one `struct hvm_memmap_table_entry`.
pub const MAP_ENTRY_LEN: usize = 24;

/// E820 region types, as the kernel's PVH parser reads them.
pub mod e820 {
    /// Usable RAM.
    pub const RAM: u32 = 1;
    /// Reserved.
    pub const RESERVED: u32 = 2;
    /// ACPI tables, reclaimable once read.
    pub const ACPI: u32 = 3;
    /// ACPI non-volatile storage.
    pub const NVS: u32 = 4;
    /// Bad memory.
    pub const UNUSABLE: u32 = 5;
}

/// The E820 type for a UEFI memory type (UEFI 2.10, table 7.10).
///
/// After `ExitBootServices` the loader's and boot services' memory is free RAM: the kernel copies
/// the boot record before it reuses anything, as under PVH. Runtime-services memory, MMIO and
/// everything unknown stay reserved: the kernel never calls runtime services, and what it does
/// not know it must not touch.
pub fn e820_type(uefi_type: u32) -> u32 {
    match uefi_type {
        // LoaderCode, LoaderData, BootServicesCode, BootServicesData, ConventionalMemory.
        1 | 2 | 3 | 4 | 7 => e820::RAM,
        8 => e820::UNUSABLE,
        9 => e820::ACPI,
        10 => e820::NVS,
        _ => e820::RESERVED,
    }
}

/// One region of the handed-over map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MapEntry {
    /// First byte.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
    /// E820 type.
    pub kind: u32,
}

impl MapEntry {
    fn end(&self) -> u64 {
        self.start.saturating_add(self.len)
    }
}

/// The map did not fit in the space set aside before boot services ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapFull;

/// Converts firmware descriptors (`(physical start, pages, UEFI type)`) into a sorted map in
/// `out`, merging neighbours of the same type. Where firmware reports overlapping regions, RAM
/// is cut back so that no RAM byte is also claimed by another type. Returns the entries used.
pub fn build_map(
    descriptors: impl Iterator<Item = (u64, u64, u32)>,
    out: &mut [MapEntry],
) -> Result<usize, MapFull> {
    let mut n = 0;
    for (start, pages, kind) in descriptors {
        let len = pages.saturating_mul(4096);
        if len == 0 {
            continue;
        }
        *out.get_mut(n).ok_or(MapFull)? = MapEntry {
            start,
            len,
            kind: e820_type(kind),
        };
        n += 1;
    }
    let map = &mut out[..n];
    // Insertion sort: a few hundred entries at most, and no allocator.
    for i in 1..map.len() {
        let mut j = i;
        while j > 0 && map[j - 1].start > map[j].start {
            map.swap(j - 1, j);
            j -= 1;
        }
    }
    // Kept entries never let RAM overlap anything: a RAM entry starts after everything kept so
    // far, and a later non-RAM entry cuts back the RAM entry just before it (anything earlier
    // already ends before that RAM entry).
    let mut kept = 0;
    let mut covered = 0u64;
    for i in 0..n {
        let mut e = out[i];
        if e.kind == e820::RAM && e.start < covered {
            let end = e.end();
            e.start = covered.min(end);
            e.len = end - e.start;
        } else if e.kind != e820::RAM && kept > 0 {
            let prev = &mut out[kept - 1];
            if prev.kind == e820::RAM && e.start < prev.end() {
                prev.len = e.start - prev.start;
                if prev.len == 0 {
                    kept -= 1;
                }
            }
        }
        if e.len == 0 {
            continue;
        }
        covered = covered.max(e.end());
        if kept > 0 {
            let prev = &mut out[kept - 1];
            if prev.kind == e.kind && prev.end() == e.start {
                prev.len += e.len;
                continue;
            }
        }
        out[kept] = e;
        kept += 1;
    }
    Ok(kept)
}

/// Where each part of the boot record sits in its block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Offset of the NUL-terminated command line.
    pub cmdline: usize,
    /// Offset of the memory map.
    pub map: usize,
    /// Entries the map has room for.
    pub map_capacity: usize,
    /// Bytes of the block.
    pub len: usize,
}

impl Layout {
    /// A block for a command line of up to `cmdline_max` bytes and `map_capacity` map entries.
    pub fn new(cmdline_max: usize, map_capacity: usize) -> Layout {
        let cmdline = 64;
        let map = (cmdline + cmdline_max + 1).next_multiple_of(8);
        Layout {
            cmdline,
            map,
            map_capacity,
            len: map + map_capacity * MAP_ENTRY_LEN,
        }
    }

    /// Writes the start info, the command line and the map into `block`, which sits at
    /// physical address `base`. `block` must be [`Layout::len`] bytes and `map` must fit.
    pub fn write(&self, block: &mut [u8], base: u64, cmdline: &[u8], rsdp: u64, map: &[MapEntry]) {
        block.fill(0);
        let entries = map.len().min(self.map_capacity);
        let put32 =
            |b: &mut [u8], at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        let put64 =
            |b: &mut [u8], at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_le_bytes());
        put32(block, 0, START_INFO_MAGIC);
        put32(block, 4, 1);
        // flags, nr_modules, modlist_paddr: none.
        put64(block, 24, base + self.cmdline as u64);
        put64(block, 32, rsdp);
        put64(block, 40, base + self.map as u64);
        put32(block, 48, entries as u32);
        let n = cmdline.len().min(self.map - self.cmdline - 1);
        block[self.cmdline..self.cmdline + n].copy_from_slice(&cmdline[..n]);
        for (i, e) in map[..entries].iter().enumerate() {
            let at = self.map + i * MAP_ENTRY_LEN;
            put64(block, at, e.start);
            put64(block, at + 8, e.len);
            put32(block, at + 16, e.kind);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(descs: &[(u64, u64, u32)]) -> Vec<MapEntry> {
        let mut out = vec![MapEntry::default(); descs.len()];
        let n = build_map(descs.iter().copied(), &mut out).unwrap();
        out.truncate(n);
        out
    }

    #[test]
    fn sorts_converts_and_merges() {
        let m = map(&[
            (0x10_0000, 0x100, 7),
            (0, 0xa0, 7),
            (0x20_0000, 0x10, 2),
            (0x21_0000, 0x10, 4),
            (0x80_0000, 0x8, 10),
            (0x7f00_0000, 0x10, 9),
            (0xfee0_0000, 1, 11),
            (0x7e00_0000, 0x10, 5),
        ]);
        assert_eq!(
            m,
            vec![
                MapEntry {
                    start: 0,
                    len: 0xa_0000,
                    kind: e820::RAM
                },
                MapEntry {
                    start: 0x10_0000,
                    len: 0x12_0000,
                    kind: e820::RAM
                },
                MapEntry {
                    start: 0x80_0000,
                    len: 0x8000,
                    kind: e820::NVS
                },
                MapEntry {
                    start: 0x7e00_0000,
                    len: 0x1_0000,
                    kind: e820::RESERVED
                },
                MapEntry {
                    start: 0x7f00_0000,
                    len: 0x1_0000,
                    kind: e820::ACPI
                },
                MapEntry {
                    start: 0xfee0_0000,
                    len: 0x1000,
                    kind: e820::RESERVED
                },
            ]
        );
    }

    #[test]
    fn overlapping_ram_yields_to_reserved_memory() {
        let m = map(&[(0x10_0000, 0x10, 7), (0x10_8000, 0x10, 0)]);
        assert_eq!(
            m,
            vec![
                MapEntry {
                    start: 0x10_0000,
                    len: 0x8000,
                    kind: e820::RAM
                },
                MapEntry {
                    start: 0x10_8000,
                    len: 0x1_0000,
                    kind: e820::RESERVED
                },
            ]
        );
        let m = map(&[(0x10_0000, 0x10, 0), (0x10_8000, 0x10, 7)]);
        assert_eq!(
            m,
            vec![
                MapEntry {
                    start: 0x10_0000,
                    len: 0x1_0000,
                    kind: e820::RESERVED
                },
                MapEntry {
                    start: 0x11_0000,
                    len: 0x8000,
                    kind: e820::RAM
                },
            ]
        );
        // RAM entirely inside a reserved region disappears.
        let m = map(&[(0x10_0000, 0x10, 0), (0x10_1000, 0x1, 7)]);
        assert_eq!(m.len(), 1);
        // RAM after a reserved region it does not follow directly is still cut back.
        let m = map(&[(0, 0x100, 0), (0x1_0000, 0x10, 0), (0x5_0000, 0x10, 7)]);
        assert_eq!(m.len(), 2);
        assert!(m.iter().all(|e| e.kind == e820::RESERVED));
        // A RAM region entirely covered by a later reserved one at the same start disappears.
        let m = map(&[(0x10_0000, 0x1, 7), (0x10_0000, 0x10, 0)]);
        assert_eq!(
            m,
            vec![MapEntry {
                start: 0x10_0000,
                len: 0x1_0000,
                kind: e820::RESERVED
            }]
        );
    }

    #[test]
    fn a_map_larger_than_the_space_is_an_error() {
        let mut out = [MapEntry::default(); 2];
        assert_eq!(
            build_map(
                [(0, 1, 7), (0x1000, 1, 0), (0x2000, 1, 7)].into_iter(),
                &mut out
            ),
            Err(MapFull)
        );
    }

    #[test]
    fn the_record_reads_back_as_the_kernel_parses_it() {
        let layout = Layout::new(1023, 4);
        let mut block = vec![0xaa; layout.len];
        let entries = [
            MapEntry {
                start: 0,
                len: 0xa_0000,
                kind: 1,
            },
            MapEntry {
                start: 0x10_0000,
                len: 0x100_0000,
                kind: 1,
            },
        ];
        layout.write(
            &mut block,
            0x7000_0000,
            b"brainix.nonce=00",
            0xf_0000,
            &entries,
        );
        let u32_at = |at: usize| u32::from_le_bytes(block[at..at + 4].try_into().unwrap());
        let u64_at = |at: usize| u64::from_le_bytes(block[at..at + 8].try_into().unwrap());
        assert_eq!(u32_at(0), START_INFO_MAGIC);
        assert_eq!(u32_at(4), 1);
        assert_eq!(u64_at(24), 0x7000_0000 + layout.cmdline as u64);
        assert_eq!(u64_at(32), 0xf_0000);
        assert_eq!(u64_at(40), 0x7000_0000 + layout.map as u64);
        assert_eq!(u32_at(48), 2);
        assert_eq!(
            &block[layout.cmdline..layout.cmdline + 17],
            b"brainix.nonce=00\0"
        );
        assert_eq!(u64_at(layout.map + 24), 0x10_0000);
        assert_eq!(u64_at(layout.map + 32), 0x100_0000);
        assert_eq!(u32_at(layout.map + 40), 1);
        assert!(layout.map >= layout.cmdline + 1024);
    }
}
