//! The ACPI tables the kernel needs, read raw from the RSDP the boot protocol handed over: the
//! MADT (local APIC, I/O APICs, interrupt source overrides), the MCFG (where PCI configuration
//! space is memory-mapped) and the HPET table. No AML is interpreted.
//!
//! Firmware tables are input like any other: every pointer is read through [`PhysRead`], every
//! length is checked against the table it lies in and against [`MAX_TABLE_LEN`], every checksum
//! is verified, and a table that fails any of it is refused with an [`AcpiError`] naming it and
//! what was wrong. Nothing here loops on a zero length or panics on a short table.

use crate::bootinfo::PhysRead;
use core::fmt;

/// Longest table read. QEMU's largest is the DSDT (which we do not read); MADTs on large servers
/// stay under 16 KiB. A longer claim is refused rather than walked.
pub const MAX_TABLE_LEN: u32 = 64 * 1024;
/// Root-table entries looked at. QEMU has 5 to 8, firmware rarely more than 30.
pub const MAX_ROOT_ENTRIES: usize = 64;
/// I/O APICs kept. PC chipsets have one, large servers up to 8 per socket pair.
pub const MAX_IOAPICS: usize = 8;
/// Interrupt source overrides kept (one per ISA IRQ at most).
pub const MAX_OVERRIDES: usize = 16;

/// Header size of every system description table.
const SDT_HEADER: u32 = 36;

/// Why a table was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiError {
    /// The boot record named no RSDP and none was found in the BIOS area.
    NoRsdp,
    /// Memory at `addr` could not be read.
    Unreadable {
        /// Physical address.
        addr: u64,
    },
    /// A structure does not start with the signature it should.
    BadSignature {
        /// What was expected there.
        expected: [u8; 4],
        /// Physical address.
        addr: u64,
    },
    /// A checksum does not add up to zero.
    BadChecksum {
        /// The table.
        table: [u8; 4],
        /// Physical address.
        addr: u64,
    },
    /// A length field is too small for the structure or larger than [`MAX_TABLE_LEN`].
    BadLength {
        /// The table.
        table: [u8; 4],
        /// The length claimed.
        length: u32,
    },
    /// A MADT entry is shorter than its type needs or runs past the end of the table.
    BadEntry {
        /// The table.
        table: [u8; 4],
        /// Offset of the entry in the table.
        offset: u32,
    },
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcpiError::NoRsdp => f.write_str("no RSDP was handed over or found"),
            AcpiError::Unreadable { addr } => write!(f, "cannot read physical {addr:#x}"),
            AcpiError::BadSignature { expected, addr } => {
                write!(f, "no {} signature at {addr:#x}", Sig(*expected))
            }
            AcpiError::BadChecksum { table, addr } => {
                write!(f, "{} at {addr:#x} fails its checksum", Sig(*table))
            }
            AcpiError::BadLength { table, length } => write!(
                f,
                "{} claims length {length}; expected {SDT_HEADER} to {MAX_TABLE_LEN}",
                Sig(*table)
            ),
            AcpiError::BadEntry { table, offset } => write!(
                f,
                "{} entry at offset {offset} is too short or runs past the table",
                Sig(*table)
            ),
        }
    }
}

/// A table signature, printed with anything unprintable as `?`.
struct Sig([u8; 4]);

impl fmt::Display for Sig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            let c = if b.is_ascii_graphic() { b as char } else { '?' };
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// One I/O APIC: where its registers are and the first global system interrupt it serves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoApic {
    /// Its APIC id.
    pub id: u8,
    /// Physical address of its registers.
    pub addr: u64,
    /// GSI of its input 0.
    pub gsi_base: u32,
}

/// An ISA interrupt that does not arrive on the I/O APIC input of the same number, or not edge
/// triggered and active high as ISA interrupts are by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Override {
    /// The ISA IRQ.
    pub source: u8,
    /// The global system interrupt it arrives on.
    pub gsi: u32,
    /// MPS INTI flags: bits 0-1 polarity (1 high, 3 low), bits 2-3 trigger (1 edge, 3 level);
    /// 0 means "as the bus says".
    pub flags: u16,
}

impl Override {
    /// Level triggered, per the flags (bus default for ISA: edge).
    pub fn level(&self) -> bool {
        (self.flags >> 2) & 3 == 3
    }
    /// Active low, per the flags (bus default for ISA: high).
    pub fn active_low(&self) -> bool {
        self.flags & 3 == 3
    }
}

/// Where PCI configuration space is memory-mapped (one MCFG allocation, segment 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ecam {
    /// Physical address of bus `bus_start`, device 0, function 0.
    pub base: u64,
    /// First bus decoded.
    pub bus_start: u8,
    /// Last bus decoded.
    pub bus_end: u8,
}

/// What the kernel learned from ACPI. Every table is optional: a machine without ACPI (or with
/// a table refused) leaves its part at the default, and the refusal is in `errors`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acpi {
    /// RSDP revision (0: ACPI 1.0, RSDT; 2 and above: XSDT).
    pub revision: u8,
    /// Whether a MADT was read.
    pub madt: bool,
    /// Local APIC address from the MADT (or its 64-bit override).
    pub lapic: u64,
    /// Enabled local APICs (processors).
    pub cpus: u16,
    /// MADT flags bit 0: the machine also has 8259 PICs.
    pub pcat_compat: bool,
    /// I/O APICs.
    pub ioapics: [IoApic; MAX_IOAPICS],
    /// How many of `ioapics` are valid.
    pub ioapic_count: usize,
    /// Interrupt source overrides.
    pub overrides: [Override; MAX_OVERRIDES],
    /// How many of `overrides` are valid.
    pub override_count: usize,
    /// The ECAM window, from the MCFG.
    pub ecam: Option<Ecam>,
    /// The HPET's register block, from the HPET table (system memory only).
    pub hpet: Option<u64>,
    /// The first error met, if any: the tables after it may still have been read.
    pub error: Option<AcpiError>,
}

impl Acpi {
    /// Nothing known: no ACPI.
    pub const NONE: Acpi = Acpi {
        revision: 0,
        madt: false,
        lapic: 0,
        cpus: 0,
        pcat_compat: false,
        ioapics: [IoApic {
            id: 0,
            addr: 0,
            gsi_base: 0,
        }; MAX_IOAPICS],
        ioapic_count: 0,
        overrides: [Override {
            source: 0,
            gsi: 0,
            flags: 0,
        }; MAX_OVERRIDES],
        override_count: 0,
        ecam: None,
        hpet: None,
        error: None,
    };

    /// The I/O APICs found.
    pub fn ioapics(&self) -> &[IoApic] {
        &self.ioapics[..self.ioapic_count.min(MAX_IOAPICS)]
    }

    /// The overrides found.
    pub fn overrides(&self) -> &[Override] {
        &self.overrides[..self.override_count.min(MAX_OVERRIDES)]
    }

    /// The override for ISA IRQ `irq`, if the MADT has one.
    pub fn override_for(&self, irq: u8) -> Option<&Override> {
        self.overrides().iter().find(|o| o.source == irq)
    }

    /// The override whose GSI is `gsi`, if any.
    pub fn override_to(&self, gsi: u32) -> Option<&Override> {
        self.overrides().iter().find(|o| o.gsi == gsi)
    }

    /// Reads the tables from the RSDP at `rsdp`. Never fails as a whole: what could be read is
    /// kept, and the first refusal is recorded in [`Acpi::error`].
    pub fn read(mem: &impl PhysRead, rsdp: Option<u64>) -> Acpi {
        let mut acpi = Acpi::NONE;
        if let Err(e) = acpi.read_all(mem, rsdp) {
            acpi.error.get_or_insert(e);
        }
        acpi
    }

    fn note(&mut self, r: Result<(), AcpiError>) {
        if let Err(e) = r {
            self.error.get_or_insert(e);
        }
    }

    fn read_all(&mut self, mem: &impl PhysRead, rsdp: Option<u64>) -> Result<(), AcpiError> {
        let rsdp = rsdp.ok_or(AcpiError::NoRsdp)?;
        let mut head = [0u8; 36];
        read(mem, rsdp, &mut head[..20])?;
        if &head[..8] != b"RSD PTR " {
            return Err(AcpiError::BadSignature {
                expected: *b"RSD ",
                addr: rsdp,
            });
        }
        if sum(&head[..20]) != 0 {
            return Err(AcpiError::BadChecksum {
                table: *b"RSD ",
                addr: rsdp,
            });
        }
        self.revision = head[15];
        let (root, entry_size, sig) = if self.revision >= 2 {
            read(mem, rsdp, &mut head)?;
            if sum(&head) != 0 {
                return Err(AcpiError::BadChecksum {
                    table: *b"RSD ",
                    addr: rsdp,
                });
            }
            (le64(&head[24..32]), 8u32, *b"XSDT")
        } else {
            (u64::from(le32(&head[16..20])), 4, *b"RSDT")
        };
        let length = table(mem, root, sig)?;
        let entries = ((length - SDT_HEADER) / entry_size).min(MAX_ROOT_ENTRIES as u32);
        for i in 0..entries {
            let at = root + u64::from(SDT_HEADER + i * entry_size);
            let mut b = [0u8; 8];
            read(mem, at, &mut b[..entry_size as usize])?;
            let addr = le64(&b);
            let mut sig = [0u8; 4];
            if read(mem, addr, &mut sig).is_err() {
                self.note(Err(AcpiError::Unreadable { addr }));
                continue;
            }
            let r = match &sig {
                b"APIC" => self.madt(mem, addr),
                b"MCFG" => self.mcfg(mem, addr),
                b"HPET" => self.hpet(mem, addr),
                _ => Ok(()),
            };
            self.note(r);
        }
        Ok(())
    }

    fn madt(&mut self, mem: &impl PhysRead, addr: u64) -> Result<(), AcpiError> {
        const SIG: [u8; 4] = *b"APIC";
        let length = table(mem, addr, SIG)?;
        if length < SDT_HEADER + 8 {
            return Err(AcpiError::BadLength { table: SIG, length });
        }
        let mut fixed = [0u8; 8];
        read(mem, addr + u64::from(SDT_HEADER), &mut fixed)?;
        self.madt = true;
        self.lapic = u64::from(le32(&fixed[..4]));
        self.pcat_compat = le32(&fixed[4..]) & 1 != 0;
        let mut offset = SDT_HEADER + 8;
        while offset < length {
            let bad = AcpiError::BadEntry { table: SIG, offset };
            let mut e = [0u8; 16];
            if length - offset < 2 {
                return Err(bad);
            }
            read(mem, addr + u64::from(offset), &mut e[..2])?;
            let (kind, len) = (e[0], u32::from(e[1]));
            // A length under 2 would never advance; one past the table would read beyond it.
            if len < 2 || len > length - offset {
                return Err(bad);
            }
            let need = match kind {
                0 => 8,
                1 => 12,
                2 => 10,
                5 => 12,
                _ => 2,
            };
            if len < need {
                return Err(bad);
            }
            let take = (len as usize).min(e.len());
            read(mem, addr + u64::from(offset), &mut e[..take])?;
            match kind {
                // Processor local APIC: enabled (bit 0) or online-capable (bit 1).
                0 if le32(&e[4..8]) & 3 != 0 => self.cpus = self.cpus.saturating_add(1),
                1 if self.ioapic_count < MAX_IOAPICS => {
                    self.ioapics[self.ioapic_count] = IoApic {
                        id: e[2],
                        addr: u64::from(le32(&e[4..8])),
                        gsi_base: le32(&e[8..12]),
                    };
                    self.ioapic_count += 1;
                }
                2 if self.override_count < MAX_OVERRIDES => {
                    self.overrides[self.override_count] = Override {
                        source: e[3],
                        gsi: le32(&e[4..8]),
                        flags: u16::from_le_bytes([e[8], e[9]]),
                    };
                    self.override_count += 1;
                }
                5 => self.lapic = le64(&e[4..12]),
                _ => {}
            }
            offset += len;
        }
        Ok(())
    }

    fn mcfg(&mut self, mem: &impl PhysRead, addr: u64) -> Result<(), AcpiError> {
        const SIG: [u8; 4] = *b"MCFG";
        let length = table(mem, addr, SIG)?;
        // Header, 8 reserved bytes, then 16-byte allocations; we use segment 0's first.
        let mut offset = SDT_HEADER + 8;
        while offset + 16 <= length {
            let mut e = [0u8; 16];
            read(mem, addr + u64::from(offset), &mut e)?;
            let segment = u16::from_le_bytes([e[8], e[9]]);
            let (bus_start, bus_end) = (e[10], e[11]);
            if segment == 0 && bus_start <= bus_end {
                self.ecam = Some(Ecam {
                    base: le64(&e[..8]),
                    bus_start,
                    bus_end,
                });
                return Ok(());
            }
            offset += 16;
        }
        Ok(())
    }

    fn hpet(&mut self, mem: &impl PhysRead, addr: u64) -> Result<(), AcpiError> {
        const SIG: [u8; 4] = *b"HPET";
        let length = table(mem, addr, SIG)?;
        if length < SDT_HEADER + 20 {
            return Err(AcpiError::BadLength { table: SIG, length });
        }
        let mut gas = [0u8; 12];
        read(mem, addr + u64::from(SDT_HEADER) + 4, &mut gas)?;
        // Address space 0: system memory. An HPET in I/O space is not one we can map.
        if gas[0] == 0 {
            self.hpet = Some(le64(&gas[4..12]));
        }
        Ok(())
    }
}

fn read(mem: &impl PhysRead, addr: u64, buf: &mut [u8]) -> Result<(), AcpiError> {
    mem.read(addr, buf)
        .map_err(|_| AcpiError::Unreadable { addr })
}

/// Checks the header of the table at `addr`: signature, length within bounds, checksum over the
/// whole length. Returns the length.
fn table(mem: &impl PhysRead, addr: u64, sig: [u8; 4]) -> Result<u32, AcpiError> {
    let mut h = [0u8; SDT_HEADER as usize];
    read(mem, addr, &mut h)?;
    if h[..4] != sig {
        return Err(AcpiError::BadSignature {
            expected: sig,
            addr,
        });
    }
    let length = le32(&h[4..8]);
    if !(SDT_HEADER..=MAX_TABLE_LEN).contains(&length) {
        return Err(AcpiError::BadLength { table: sig, length });
    }
    let mut total = 0u8;
    let mut chunk = [0u8; 256];
    let mut done = 0;
    while done < length {
        let n = (length - done).min(chunk.len() as u32) as usize;
        read(mem, addr + u64::from(done), &mut chunk[..n])?;
        total = total.wrapping_add(sum(&chunk[..n]));
        done += n as u32;
    }
    if total != 0 {
        return Err(AcpiError::BadChecksum { table: sig, addr });
    }
    Ok(length)
}

fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b))
}

fn le32(b: &[u8]) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[..4]);
    u32::from_le_bytes(w)
}

fn le64(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    let n = b.len().min(8);
    w[..n].copy_from_slice(&b[..n]);
    u64::from_le_bytes(w)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::bootinfo::BootInfoError;

    /// Fake physical memory: a buffer from address 0.
    pub struct Phys(pub Vec<u8>);

    impl PhysRead for Phys {
        fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), BootInfoError> {
            let at = usize::try_from(addr).map_err(|_| BootInfoError::Unreadable { addr })?;
            let src = at
                .checked_add(buf.len())
                .and_then(|end| self.0.get(at..end))
                .ok_or(BootInfoError::Unreadable { addr })?;
            buf.copy_from_slice(src);
            Ok(())
        }
    }

    impl Phys {
        pub fn put(&mut self, addr: u64, data: &[u8]) {
            self.0[addr as usize..addr as usize + data.len()].copy_from_slice(data);
        }
    }

    /// A table with a valid header and checksum around `body`.
    pub fn sdt(sig: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut t = vec![0u8; 36];
        t[..4].copy_from_slice(sig);
        t.extend_from_slice(body);
        let len = t.len() as u32;
        t[4..8].copy_from_slice(&len.to_le_bytes());
        t[8] = 1;
        fix(&mut t);
        t
    }

    /// Sets the checksum byte (offset 9) so the table sums to zero.
    pub fn fix(t: &mut [u8]) {
        t[9] = 0;
        t[9] = 0u8.wrapping_sub(sum(t));
    }

    pub fn madt_body() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&0xfee0_0000u32.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&[0, 8, 0, 0, 1, 0, 0, 0]); // LAPIC, enabled
        b.extend_from_slice(&[0, 8, 1, 1, 0, 0, 0, 0]); // LAPIC, disabled
        b.extend_from_slice(&[1, 12, 0, 0, 0, 0, 0xc0, 0xfe, 0, 0, 0, 0]); // IOAPIC fec00000
        b.extend_from_slice(&[2, 10, 0, 0, 2, 0, 0, 0, 0, 0]); // IRQ0 -> GSI2
        b.extend_from_slice(&[2, 10, 0, 10, 10, 0, 0, 0, 0x0d, 0]); // IRQ10 level high
        b.extend_from_slice(&[4, 6, 0xff, 0, 0, 1]); // LAPIC NMI: skipped
        b
    }

    /// Memory with an RSDP (revision 2) at 0x100, an XSDT at 0x200 and the given tables at
    /// 0x1000, 0x2000, ...
    pub fn machine(tables: &[Vec<u8>]) -> Phys {
        let mut mem = Phys(vec![0; 0x10000]);
        let mut xsdt = Vec::new();
        for (i, t) in tables.iter().enumerate() {
            let at = 0x1000 * (i as u64 + 1);
            mem.put(at, t);
            xsdt.extend_from_slice(&at.to_le_bytes());
        }
        mem.put(0x200, &sdt(b"XSDT", &xsdt));
        let mut rsdp = [0u8; 36];
        rsdp[..8].copy_from_slice(b"RSD PTR ");
        rsdp[15] = 2;
        rsdp[20..24].copy_from_slice(&36u32.to_le_bytes());
        rsdp[24..32].copy_from_slice(&0x200u64.to_le_bytes());
        rsdp[8] = 0u8.wrapping_sub(sum(&rsdp[..20]));
        rsdp[32] = 0u8.wrapping_sub(sum(&rsdp));
        mem.put(0x100, &rsdp);
        mem
    }

    fn mcfg() -> Vec<u8> {
        let mut b = vec![0u8; 8];
        b.extend_from_slice(&0xb000_0000u64.to_le_bytes());
        b.extend_from_slice(&[0, 0, 0, 0xff, 0, 0, 0, 0]);
        sdt(b"MCFG", &b)
    }

    fn hpet() -> Vec<u8> {
        let mut b = vec![0u8; 4];
        b.extend_from_slice(&[0, 64, 0, 0]);
        b.extend_from_slice(&0xfed0_0000u64.to_le_bytes());
        b.extend_from_slice(&[0, 0, 0, 0]);
        sdt(b"HPET", &b)
    }

    #[test]
    fn reads_madt_mcfg_and_hpet_through_the_xsdt() {
        let mem = machine(&[
            sdt(b"FACP", &[0; 16]),
            sdt(b"APIC", &madt_body()),
            mcfg(),
            hpet(),
        ]);
        let a = Acpi::read(&mem, Some(0x100));
        assert_eq!(a.error, None);
        assert_eq!(
            (a.revision, a.lapic, a.cpus, a.pcat_compat),
            (2, 0xfee0_0000, 1, true)
        );
        assert_eq!(
            a.ioapics(),
            &[IoApic {
                id: 0,
                addr: 0xfec0_0000,
                gsi_base: 0
            }]
        );
        assert_eq!(a.overrides().len(), 2);
        let irq10 = a.override_for(10).unwrap();
        assert!(irq10.level() && !irq10.active_low() && irq10.gsi == 10);
        assert_eq!(a.override_for(0).unwrap().gsi, 2);
        assert!(!a.override_for(0).unwrap().level());
        assert_eq!(
            a.ecam,
            Some(Ecam {
                base: 0xb000_0000,
                bus_start: 0,
                bus_end: 0xff
            })
        );
        assert_eq!(a.hpet, Some(0xfed0_0000));
    }

    #[test]
    fn an_acpi_1_rsdt_is_read_too() {
        let mut mem = machine(&[]);
        let madt = sdt(b"APIC", &madt_body());
        mem.put(0x1000, &madt);
        mem.put(0x300, &sdt(b"RSDT", &0x1000u32.to_le_bytes()));
        let mut rsdp = [0u8; 20];
        rsdp[..8].copy_from_slice(b"RSD PTR ");
        rsdp[16..20].copy_from_slice(&0x300u32.to_le_bytes());
        rsdp[8] = 0u8.wrapping_sub(sum(&rsdp));
        mem.put(0x400, &rsdp);
        let a = Acpi::read(&mem, Some(0x400));
        assert_eq!((a.error, a.revision, a.ioapic_count), (None, 0, 1));
    }

    #[test]
    fn hostile_tables_are_refused_not_walked() {
        // A MADT entry of length 0 would loop forever; one of length 255 runs past the table.
        for bad_len in [0u8, 1, 255] {
            let mut body = madt_body();
            body[17] = bad_len; // the second LAPIC entry's length
            let mem = machine(&[sdt(b"APIC", &body)]);
            let a = Acpi::read(&mem, Some(0x100));
            assert!(
                matches!(a.error, Some(AcpiError::BadEntry { offset: 52, .. })),
                "{bad_len}: {:?}",
                a.error
            );
            assert_eq!(a.cpus, 1, "entries before the bad one are kept");
        }
        // An IOAPIC entry shorter than its type needs.
        let mut body = madt_body();
        body[25] = 6;
        let a = Acpi::read(&machine(&[sdt(b"APIC", &body)]), Some(0x100));
        assert!(matches!(a.error, Some(AcpiError::BadEntry { .. })), "{a:?}");
        // Bad checksum: the table is refused whole; later tables are still read.
        let mut madt = sdt(b"APIC", &madt_body());
        madt[40] ^= 1;
        let a = Acpi::read(&machine(&[madt, mcfg()]), Some(0x100));
        assert!(matches!(a.error, Some(AcpiError::BadChecksum { .. })));
        assert!(!a.madt && a.ecam.is_some());
        // Lengths: shorter than a header, longer than the bound, past the end of memory.
        for length in [10u32, MAX_TABLE_LEN + 1, 0xffff] {
            let mut madt = sdt(b"APIC", &madt_body());
            madt[4..8].copy_from_slice(&length.to_le_bytes());
            fix(&mut madt);
            let a = Acpi::read(&machine(&[madt]), Some(0x100));
            assert!(
                matches!(
                    a.error,
                    Some(AcpiError::BadLength { .. } | AcpiError::Unreadable { .. })
                ),
                "{length}: {:?}",
                a.error
            );
            assert!(!a.madt);
        }
        // A root-table entry pointing nowhere.
        let mut mem = machine(&[]);
        mem.put(0x200, &sdt(b"XSDT", &u64::MAX.to_le_bytes()));
        let a = Acpi::read(&mem, Some(0x100));
        assert!(matches!(a.error, Some(AcpiError::Unreadable { .. })));
    }

    #[test]
    fn no_rsdp_or_a_bad_one_is_an_error_not_a_guess() {
        let mem = machine(&[]);
        assert_eq!(Acpi::read(&mem, None).error, Some(AcpiError::NoRsdp));
        assert!(matches!(
            Acpi::read(&mem, Some(0x108)).error,
            Some(AcpiError::BadSignature { .. })
        ));
        let mut bad = machine(&[]);
        bad.0[0x100 + 9] ^= 0xff;
        assert!(matches!(
            Acpi::read(&bad, Some(0x100)).error,
            Some(AcpiError::BadChecksum { .. })
        ));
        let e = Acpi::read(&bad, Some(0x100)).error.unwrap().to_string();
        assert!(e.contains("RSD") && e.contains("checksum"), "{e}");
    }
}
