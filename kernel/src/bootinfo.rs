//! What the boot loader hands over: the memory map, the ACPI RSDP and the command line.
//!
//! Two protocols enter the same 32-bit stub: PVH (QEMU `-kernel`, Firecracker,
//! cloud-hypervisor) and multiboot v1 (iPXE, for network boot on lab machines). Both records are
//! read through [`PhysRead`] and copied into fixed-size storage here, before the kernel builds its
//! own page tables and the loader's memory stops being mapped. Every field is a claim by the
//! loader and is bounds-checked; a record we cannot make sense of is an error, not a guess.

use core::fmt;

/// Memory-map entries kept. QEMU hands over 3 to 8; firmware on real machines rarely more than
/// 64. Entries past this are dropped and counted in [`BootInfo::dropped_regions`].
pub const MAX_REGIONS: usize = 128;

/// `hvm_start_info.magic` (Xen's `XEN_HVM_START_MAGIC_VALUE`).
pub const PVH_MAGIC: u32 = 0x336e_c578;
/// The value a multiboot v1 loader leaves in EAX.
pub const MULTIBOOT_MAGIC: u32 = 0x2bad_b002;

/// Reads physical memory on behalf of the parser. The kernel reads through its boot identity
/// map; tests read from a byte buffer.
pub trait PhysRead {
    /// Reads `buf.len()` bytes at physical address `addr`, or fails when that is not readable.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), BootInfoError>;

    /// Reads a little-endian `u32`.
    fn read_u32(&self, addr: u64) -> Result<u32, BootInfoError> {
        let mut b = [0; 4];
        self.read(addr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Reads a little-endian `u64`.
    fn read_u64(&self, addr: u64) -> Result<u64, BootInfoError> {
        let mut b = [0; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
}

/// Why the handed-over record was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootInfoError {
    /// Neither the multiboot magic in EAX nor the PVH magic at EBX.
    UnknownProtocol {
        /// EAX at entry.
        eax: u32,
        /// EBX at entry.
        ebx: u32,
    },
    /// A pointer in the record points outside what can be read.
    Unreadable {
        /// The physical address.
        addr: u64,
    },
    /// The record says it has no memory map, so we cannot know what RAM is ours.
    NoMemoryMap,
}

impl fmt::Display for BootInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootInfoError::UnknownProtocol { eax, ebx } => write!(
                f,
                "no boot record: EAX={eax:#x} is not the multiboot magic {MULTIBOOT_MAGIC:#x} \
                 and EBX={ebx:#x} does not point to PVH start info (magic {PVH_MAGIC:#x})"
            ),
            BootInfoError::Unreadable { addr } => {
                write!(
                    f,
                    "boot record points at unreadable physical address {addr:#x}"
                )
            }
            BootInfoError::NoMemoryMap => f.write_str("boot record carries no memory map"),
        }
    }
}

/// Which protocol brought us here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Xen PVH direct boot.
    Pvh,
    /// Multiboot v1.
    Multiboot,
}

impl Protocol {
    /// The boot report's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Pvh => "pvh",
            Protocol::Multiboot => "multiboot",
        }
    }
}

/// What a memory-map region holds. Only [`RegionKind::Usable`] ever reaches the frame pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionKind {
    /// Free RAM.
    Usable,
    /// ACPI tables, reclaimable after they have been read.
    AcpiReclaimable,
    /// ACPI non-volatile storage.
    AcpiNvs,
    /// Anything else: reserved, bad, or a type we do not know.
    Reserved,
}

impl RegionKind {
    /// Both protocols use the E820 type numbers.
    fn from_e820(kind: u32) -> RegionKind {
        match kind {
            1 => RegionKind::Usable,
            3 => RegionKind::AcpiReclaimable,
            4 => RegionKind::AcpiNvs,
            _ => RegionKind::Reserved,
        }
    }
}

/// One physical memory region, `[start, start + len)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// First byte.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
    /// What it holds.
    pub kind: RegionKind,
}

impl Region {
    const EMPTY: Region = Region {
        start: 0,
        len: 0,
        kind: RegionKind::Reserved,
    };

    /// One past the last byte, saturating so a hostile length cannot wrap.
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.len)
    }
}

/// The boot record, copied out of loader memory.
pub struct BootInfo {
    /// How we booted.
    pub protocol: Protocol,
    regions: [Region; MAX_REGIONS],
    region_count: usize,
    /// Memory-map entries that did not fit in [`MAX_REGIONS`].
    pub dropped_regions: usize,
    /// Physical address of the ACPI RSDP, when the loader gave one or the BIOS area has one.
    pub rsdp: Option<u64>,
    cmdline: [u8; crate::cmdline::MAX_CMDLINE],
    cmdline_len: usize,
    /// The command line was longer than [`crate::cmdline::MAX_CMDLINE`] and was cut.
    pub cmdline_truncated: bool,
}

impl BootInfo {
    /// Parses the record the loader left: `eax` and `ebx` are the registers at entry.
    pub fn parse(eax: u32, ebx: u32, mem: &impl PhysRead) -> Result<BootInfo, BootInfoError> {
        let mut info = BootInfo {
            protocol: Protocol::Pvh,
            regions: [Region::EMPTY; MAX_REGIONS],
            region_count: 0,
            dropped_regions: 0,
            rsdp: None,
            cmdline: [0; crate::cmdline::MAX_CMDLINE],
            cmdline_len: 0,
            cmdline_truncated: false,
        };
        let base = u64::from(ebx);
        // PVH first: its record carries its own magic, while EAX is not defined by the PVH ABI
        // and some loaders (qboot on microvm) leave the multiboot value in it.
        if mem.read_u32(base).ok() == Some(PVH_MAGIC) {
            info.parse_pvh(base, mem)?;
        } else if eax == MULTIBOOT_MAGIC {
            info.protocol = Protocol::Multiboot;
            info.parse_multiboot(base, mem)?;
        } else {
            return Err(BootInfoError::UnknownProtocol { eax, ebx });
        }
        if info.region_count == 0 {
            return Err(BootInfoError::NoMemoryMap);
        }
        if info.rsdp.is_none() {
            info.rsdp = find_rsdp_in_bios_area(mem);
        }
        Ok(info)
    }

    /// `struct hvm_start_info` (Xen `arch-x86/hvm/start_info.h`), version 1 for the memory map.
    fn parse_pvh(&mut self, base: u64, mem: &impl PhysRead) -> Result<(), BootInfoError> {
        let version = mem.read_u32(base + 4)?;
        let cmdline = mem.read_u64(base + 24)?;
        let rsdp = mem.read_u64(base + 32)?;
        self.rsdp = (rsdp != 0).then_some(rsdp);
        if cmdline != 0 {
            self.copy_cmdline(cmdline, mem)?;
        }
        if version >= 1 {
            let map = mem.read_u64(base + 40)?;
            let entries = mem.read_u32(base + 48)?;
            for i in 0..u64::from(entries) {
                // struct hvm_memmap_table_entry { u64 addr; u64 size; u32 type; u32 reserved; }
                let entry = map + i * 24;
                let start = mem.read_u64(entry)?;
                let len = mem.read_u64(entry + 8)?;
                let kind = mem.read_u32(entry + 16)?;
                self.push_region(start, len, RegionKind::from_e820(kind));
            }
        }
        Ok(())
    }

    /// The multiboot v1 information structure: flags bit 2 (command line) and bit 6 (memory map).
    fn parse_multiboot(&mut self, base: u64, mem: &impl PhysRead) -> Result<(), BootInfoError> {
        let flags = mem.read_u32(base)?;
        if flags & (1 << 2) != 0 {
            let cmdline = u64::from(mem.read_u32(base + 16)?);
            self.copy_cmdline(cmdline, mem)?;
        }
        if flags & (1 << 6) != 0 {
            let length = u64::from(mem.read_u32(base + 44)?);
            let addr = u64::from(mem.read_u32(base + 48)?);
            let mut at = addr;
            // Each entry is `u32 size` followed by `size` bytes: u64 base, u64 len, u32 type.
            while at + 4 <= addr + length {
                let size = u64::from(mem.read_u32(at)?);
                if size < 20 {
                    // A size this small cannot hold an entry and would loop forever if zero.
                    return Err(BootInfoError::Unreadable { addr: at });
                }
                let start = mem.read_u64(at + 4)?;
                let len = mem.read_u64(at + 12)?;
                let kind = mem.read_u32(at + 20)?;
                self.push_region(start, len, RegionKind::from_e820(kind));
                at += size + 4;
            }
        }
        Ok(())
    }

    fn push_region(&mut self, start: u64, len: u64, kind: RegionKind) {
        if len == 0 {
            return;
        }
        match self.regions.get_mut(self.region_count) {
            Some(slot) => {
                *slot = Region { start, len, kind };
                self.region_count += 1;
            }
            None => self.dropped_regions += 1,
        }
    }

    /// Copies a NUL-terminated string, at most [`crate::cmdline::MAX_CMDLINE`] bytes of it.
    fn copy_cmdline(&mut self, addr: u64, mem: &impl PhysRead) -> Result<(), BootInfoError> {
        let mut len = 0;
        let mut byte = [0u8; 1];
        loop {
            mem.read(addr + len as u64, &mut byte)?;
            if byte[0] == 0 {
                break;
            }
            if len == self.cmdline.len() {
                self.cmdline_truncated = true;
                break;
            }
            self.cmdline[len] = byte[0];
            len += 1;
        }
        self.cmdline_len = len;
        Ok(())
    }

    /// The memory map, in the loader's order.
    pub fn regions(&self) -> &[Region] {
        &self.regions[..self.region_count]
    }

    /// The command line; bytes that are not ASCII text make the whole line be ignored.
    pub fn cmdline(&self) -> Result<&str, core::str::Utf8Error> {
        core::str::from_utf8(&self.cmdline[..self.cmdline_len])
    }

    /// Usable RAM in the map, in bytes.
    pub fn usable_bytes(&self) -> u64 {
        self.regions()
            .iter()
            .filter(|r| r.kind == RegionKind::Usable)
            .fold(0u64, |sum, r| sum.saturating_add(r.len))
    }
}

/// Searches the BIOS read-only area (0xE0000 to 0xFFFFF) for the RSDP, on 16-byte boundaries,
/// accepting it only when its ACPI 1.0 checksum holds. Multiboot v1 carries no RSDP, and some
/// PVH loaders leave the field zero.
pub fn find_rsdp_in_bios_area(mem: &impl PhysRead) -> Option<u64> {
    const START: u64 = 0xe_0000;
    const END: u64 = 0x10_0000;
    let mut addr = START;
    while addr < END {
        let mut head = [0u8; 20];
        if mem.read(addr, &mut head).is_ok()
            && &head[..8] == b"RSD PTR "
            && head.iter().fold(0u8, |s, b| s.wrapping_add(*b)) == 0
        {
            return Some(addr);
        }
        addr += 16;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A window of fake physical memory.
    struct Phys {
        base: u64,
        bytes: Vec<u8>,
    }

    impl Phys {
        fn new(base: u64, size: usize) -> Phys {
            Phys {
                base,
                bytes: vec![0; size],
            }
        }
        fn put(&mut self, addr: u64, data: &[u8]) {
            let at = (addr - self.base) as usize;
            self.bytes[at..at + data.len()].copy_from_slice(data);
        }
        fn put32(&mut self, addr: u64, v: u32) {
            self.put(addr, &v.to_le_bytes());
        }
        fn put64(&mut self, addr: u64, v: u64) {
            self.put(addr, &v.to_le_bytes());
        }
    }

    impl PhysRead for Phys {
        fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), BootInfoError> {
            let at = addr
                .checked_sub(self.base)
                .filter(|at| at + buf.len() as u64 <= self.bytes.len() as u64)
                .ok_or(BootInfoError::Unreadable { addr })? as usize;
            buf.copy_from_slice(&self.bytes[at..at + buf.len()]);
            Ok(())
        }
    }

    fn pvh_record(mem: &mut Phys, entries: &[(u64, u64, u32)], cmdline: &[u8]) {
        mem.put32(0x1000, PVH_MAGIC);
        mem.put32(0x1004, 1);
        mem.put64(0x1000 + 24, 0x2000);
        mem.put(0x2000, cmdline);
        mem.put64(0x1000 + 32, 0xf_5a40);
        mem.put64(0x1000 + 40, 0x3000);
        mem.put32(0x1000 + 48, entries.len() as u32);
        for (i, (start, len, kind)) in entries.iter().enumerate() {
            let e = 0x3000 + 24 * i as u64;
            mem.put64(e, *start);
            mem.put64(e + 8, *len);
            mem.put32(e + 16, *kind);
        }
    }

    #[test]
    fn reads_a_pvh_start_info() {
        let mut mem = Phys::new(0, 0x10_0000);
        pvh_record(
            &mut mem,
            &[
                (0, 0x9fc00, 1),
                (0x9fc00, 0x400, 2),
                (0x10_0000, 0x7f0_0000, 1),
                (0xfeff_c000, 0x4000, 2),
            ],
            b"brainix.exit=isa-debug-exit\0",
        );
        let info = BootInfo::parse(0, 0x1000, &mem).unwrap();
        assert_eq!(info.protocol, Protocol::Pvh);
        assert_eq!(info.regions().len(), 4);
        assert_eq!(info.regions()[2].kind, RegionKind::Usable);
        assert_eq!(info.usable_bytes(), 0x9fc00 + 0x7f0_0000);
        assert_eq!(info.rsdp, Some(0xf_5a40));
        assert_eq!(info.cmdline().unwrap(), "brainix.exit=isa-debug-exit");
    }

    #[test]
    fn reads_a_multiboot_info_and_finds_the_rsdp_by_scanning() {
        let mut mem = Phys::new(0, 0x10_0000);
        mem.put32(0x1000, 1 << 2 | 1 << 6);
        mem.put32(0x1000 + 16, 0x2000);
        mem.put(0x2000, b"k.elf brainix.nonce=00112233445566778899\0");
        mem.put32(0x1000 + 44, 2 * 24);
        mem.put32(0x1000 + 48, 0x3000);
        for (i, (start, len, kind)) in [(0u64, 0x9f000u64, 1u32), (0x10_0000, 0x100_0000, 1)]
            .iter()
            .enumerate()
        {
            let e = 0x3000 + 24 * i as u64;
            mem.put32(e, 20);
            mem.put64(e + 4, *start);
            mem.put64(e + 12, *len);
            mem.put32(e + 20, *kind);
        }
        let mut rsdp = *b"RSD PTR \0BOCHS \0\0\0\0\0\0\0\0";
        let sum = rsdp[..20].iter().fold(0u8, |s, b| s.wrapping_add(*b));
        rsdp[8] = 0u8.wrapping_sub(sum);
        mem.put(0xf_0010, &rsdp);
        // A signature with a bad checksum earlier in the area must be skipped.
        mem.put(0xe_0000, b"RSD PTR \x01");

        let info = BootInfo::parse(MULTIBOOT_MAGIC, 0x1000, &mem).unwrap();
        assert_eq!(info.protocol, Protocol::Multiboot);
        assert_eq!(info.regions().len(), 2);
        assert_eq!(info.rsdp, Some(0xf_0010));
        assert!(
            info.cmdline()
                .unwrap()
                .ends_with("nonce=00112233445566778899")
        );
    }

    #[test]
    fn a_pvh_record_wins_over_a_stray_multiboot_magic_in_eax() {
        let mut mem = Phys::new(0, 0x10_0000);
        pvh_record(&mut mem, &[(0x10_0000, 0x10_0000, 1)], b"\0");
        let info = BootInfo::parse(MULTIBOOT_MAGIC, 0x1000, &mem).unwrap();
        assert_eq!(info.protocol, Protocol::Pvh);
        assert_eq!(info.regions().len(), 1);
    }

    #[test]
    fn refuses_an_unknown_protocol() {
        let mem = Phys::new(0, 0x1000);
        assert_eq!(
            BootInfo::parse(0x1234, 0x10, &mem).err(),
            Some(BootInfoError::UnknownProtocol {
                eax: 0x1234,
                ebx: 0x10
            })
        );
        // EBX pointing outside memory is not a PVH record either.
        assert!(matches!(
            BootInfo::parse(0, 0xffff_fff0, &mem),
            Err(BootInfoError::UnknownProtocol { .. })
        ));
    }

    #[test]
    fn refuses_a_record_without_memory_map_or_with_wild_pointers() {
        let mut mem = Phys::new(0, 0x10_0000);
        pvh_record(&mut mem, &[], b"\0");
        assert_eq!(
            BootInfo::parse(0, 0x1000, &mem).err(),
            Some(BootInfoError::NoMemoryMap)
        );
        pvh_record(&mut mem, &[(0, 0x1000, 1)], b"\0");
        mem.put64(0x1000 + 40, 0xdead_0000_0000);
        assert!(matches!(
            BootInfo::parse(0, 0x1000, &mem),
            Err(BootInfoError::Unreadable { .. })
        ));
        // A multiboot map entry with size 0 would loop forever; it is refused.
        let mut mb = Phys::new(0, 0x10_0000);
        mb.put32(0x1000, 1 << 6);
        mb.put32(0x1000 + 44, 48);
        mb.put32(0x1000 + 48, 0x3000);
        assert!(matches!(
            BootInfo::parse(MULTIBOOT_MAGIC, 0x1000, &mb),
            Err(BootInfoError::Unreadable { addr: 0x3000 })
        ));
    }

    #[test]
    fn keeps_at_most_max_regions_and_a_bounded_cmdline() {
        let mut mem = Phys::new(0, 0x10_0000);
        let many: Vec<_> = (0..MAX_REGIONS as u64 + 5)
            .map(|i| (i * 0x1000, 0x1000, 1))
            .collect();
        let long = vec![b'x'; crate::cmdline::MAX_CMDLINE + 100];
        pvh_record(&mut mem, &many, &long);
        let info = BootInfo::parse(0, 0x1000, &mem).unwrap();
        assert_eq!(info.regions().len(), MAX_REGIONS);
        assert_eq!(info.dropped_regions, 5);
        assert!(info.cmdline_truncated);
        assert_eq!(info.cmdline().unwrap().len(), crate::cmdline::MAX_CMDLINE);
    }

    #[test]
    fn hostile_lengths_do_not_overflow() {
        let r = Region {
            start: u64::MAX - 10,
            len: u64::MAX,
            kind: RegionKind::Usable,
        };
        assert_eq!(r.end(), u64::MAX);
    }
}
