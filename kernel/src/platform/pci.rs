//! PCI enumeration: every function reachable from the root bus, its identity, its BARs (sized)
//! and the interrupt the firmware routed for it.
//!
//! Configuration space is reached through [`ConfigSpace`]: ECAM (memory-mapped, from the MCFG)
//! where the machine has it, the `0xcf8`/`0xcfc` ports otherwise, a fake in the tests. Device
//! values are input: a BAR of a reserved type, a 64-bit BAR in the last slot, a size that is not
//! a power of two or a range that wraps is recorded as [`Bar::Invalid`] and never mapped; a
//! bridge loop cannot make the walk revisit a bus.

use core::fmt;

/// Functions kept. QEMU's q35 has 6 with our devices; a large server a few hundred, which is
/// where this would have to grow. Functions past it are counted in [`Pci::dropped`].
pub const MAX_FUNCTIONS: usize = 64;

/// Bus, device and function, packed as `bus << 8 | device << 3 | function`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bdf(pub u16);

impl Bdf {
    /// Packs the three numbers; `device` and `function` are masked to 5 and 3 bits.
    pub const fn new(bus: u8, device: u8, function: u8) -> Bdf {
        Bdf((bus as u16) << 8 | ((device as u16) & 0x1f) << 3 | (function as u16) & 7)
    }
    /// The bus.
    pub const fn bus(self) -> u8 {
        (self.0 >> 8) as u8
    }
    /// The device.
    pub const fn device(self) -> u8 {
        (self.0 >> 3) as u8 & 0x1f
    }
    /// The function.
    pub const fn function(self) -> u8 {
        self.0 as u8 & 7
    }
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02x}:{:02x}.{}",
            self.bus(),
            self.device(),
            self.function()
        )
    }
}

/// Access to configuration space. Reads of an absent function return all ones.
pub trait ConfigSpace {
    /// Reads the 32-bit register at `offset` (a multiple of 4, below 256).
    fn read32(&mut self, bdf: Bdf, offset: u16) -> u32;
    /// Writes the 32-bit register at `offset`.
    fn write32(&mut self, bdf: Bdf, offset: u16, value: u32);
}

/// Offsets and bits of the type-0 and type-1 headers.
pub mod reg {
    /// Vendor id (low 16) and device id (high 16).
    pub const ID: u16 = 0x00;
    /// Command (low 16) and status (high 16).
    pub const COMMAND: u16 = 0x04;
    /// Revision, prog-if, subclass, class (low to high).
    pub const CLASS: u16 = 0x08;
    /// Cache line, latency, header type (byte 2), BIST.
    pub const HEADER: u16 = 0x0c;
    /// BAR 0; BAR n is at `BAR0 + 4 * n`.
    pub const BAR0: u16 = 0x10;
    /// Type 1: primary, secondary (byte 1), subordinate bus.
    pub const BUSES: u16 = 0x18;
    /// Interrupt line (byte 0) and pin (byte 1).
    pub const INTERRUPT: u16 = 0x3c;
    /// Command: I/O space decoding.
    pub const CMD_IO: u32 = 1 << 0;
    /// Command: memory space decoding.
    pub const CMD_MEMORY: u32 = 1 << 1;
    /// Command: bus mastering (the device may DMA).
    pub const CMD_BUS_MASTER: u32 = 1 << 2;
    /// Command: legacy INTx disabled.
    pub const CMD_INTX_DISABLE: u32 = 1 << 10;
}

/// One base address register, decoded and sized.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Bar {
    /// Not implemented (or the upper half of the 64-bit BAR before it).
    #[default]
    Absent,
    /// Memory space.
    Memory {
        /// Physical base.
        base: u64,
        /// Size in bytes, a power of two.
        size: u64,
        /// Prefetchable.
        prefetchable: bool,
        /// A 64-bit BAR (it also uses the next slot).
        wide: bool,
    },
    /// I/O space.
    Io {
        /// First port.
        base: u32,
        /// Ports.
        size: u32,
    },
    /// A value no device may present: reserved type, 64-bit in the last slot, a range that
    /// wraps. Never mapped.
    Invalid,
}

/// One function.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Function {
    /// Where it is.
    pub bdf: Bdf,
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// Class, subclass, prog-if, revision.
    pub class: [u8; 4],
    /// Header type (0 endpoint, 1 bridge), without the multi-function bit.
    pub header: u8,
    /// BARs (a bridge has two).
    pub bars: [Bar; 6],
    /// Interrupt line as the firmware left it (the ISA IRQ it routed INTx to), 0xff for none.
    pub irq_line: u8,
    /// Interrupt pin (1 = INTA .. 4 = INTD), 0 for none.
    pub irq_pin: u8,
}

/// How configuration space was reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mechanism {
    /// No PCI found (microvm).
    #[default]
    None,
    /// ECAM, from the MCFG.
    Ecam,
    /// The `0xcf8`/`0xcfc` ports.
    Ports,
}

/// Every function found.
#[derive(Clone, Copy, Debug)]
pub struct Pci {
    functions: [Function; MAX_FUNCTIONS],
    count: usize,
    /// Functions found past [`MAX_FUNCTIONS`].
    pub dropped: usize,
    /// How configuration space is reached.
    pub mechanism: Mechanism,
}

impl Pci {
    /// No PCI.
    pub const NONE: Pci = Pci {
        functions: [Function {
            bdf: Bdf(0),
            vendor: 0,
            device: 0,
            class: [0; 4],
            header: 0,
            bars: [Bar::Absent; 6],
            irq_line: 0xff,
            irq_pin: 0,
        }; MAX_FUNCTIONS],
        count: 0,
        dropped: 0,
        mechanism: Mechanism::None,
    };

    /// The functions, in bus order.
    pub fn functions(&self) -> &[Function] {
        &self.functions[..self.count]
    }

    /// Walks every bus reachable from `root` (following bridges, never leaving
    /// `root..=last_bus`), recording each function with its BARs sized.
    pub fn enumerate(
        cfg: &mut impl ConfigSpace,
        mechanism: Mechanism,
        root: u8,
        last_bus: u8,
    ) -> Pci {
        let mut pci = Pci::NONE;
        pci.mechanism = mechanism;
        let mut seen = [false; 256];
        let mut todo = [0u8; 256];
        let mut pending = 1;
        todo[0] = root;
        seen[usize::from(root)] = true;
        while pending > 0 {
            pending -= 1;
            let bus = todo[pending];
            for device in 0..32 {
                let first = Bdf::new(bus, device, 0);
                if cfg.read32(first, reg::ID) & 0xffff == 0xffff {
                    continue;
                }
                let multi = (cfg.read32(first, reg::HEADER) >> 16) & 0x80 != 0;
                for function in 0..if multi { 8 } else { 1 } {
                    let bdf = Bdf::new(bus, device, function);
                    let Some(f) = probe(cfg, bdf) else { continue };
                    if f.header == 1 {
                        let secondary = (cfg.read32(bdf, reg::BUSES) >> 8) as u8;
                        // A bridge pointing back, or outside the decoded buses, is not followed.
                        if secondary > root
                            && secondary <= last_bus
                            && !seen[usize::from(secondary)]
                        {
                            seen[usize::from(secondary)] = true;
                            todo[pending] = secondary;
                            pending += 1;
                        }
                    }
                    if pci.count < MAX_FUNCTIONS {
                        pci.functions[pci.count] = f;
                        pci.count += 1;
                    } else {
                        pci.dropped += 1;
                    }
                }
            }
        }
        pci.functions[..pci.count].sort_unstable_by_key(|f| f.bdf);
        pci
    }

    /// Whether any memory BAR of any function overlaps `[base, end)`.
    pub fn bar_overlaps(&self, base: u64, end: u64, except: Option<Bdf>) -> bool {
        self.functions()
            .iter()
            .filter(|f| Some(f.bdf) != except)
            .flat_map(|f| f.bars.iter())
            .any(|b| match *b {
                Bar::Memory { base: b, size, .. } => base < b.saturating_add(size) && end > b,
                _ => false,
            })
    }
}

/// Reads one function, sizing its BARs with decoding switched off meanwhile.
fn probe(cfg: &mut impl ConfigSpace, bdf: Bdf) -> Option<Function> {
    let id = cfg.read32(bdf, reg::ID);
    if id & 0xffff == 0xffff {
        return None;
    }
    let class = cfg.read32(bdf, reg::CLASS).to_le_bytes();
    let header = (cfg.read32(bdf, reg::HEADER) >> 16) as u8 & 0x7f;
    let interrupt = cfg.read32(bdf, reg::INTERRUPT);
    let mut f = Function {
        bdf,
        vendor: id as u16,
        device: (id >> 16) as u16,
        class: [class[3], class[2], class[1], class[0]],
        header,
        bars: [Bar::Absent; 6],
        irq_line: interrupt as u8,
        irq_pin: (interrupt >> 8) as u8,
    };
    let bar_count = match header {
        0 => 6,
        1 => 2,
        _ => 0,
    };
    if bar_count > 0 {
        let command = cfg.read32(bdf, reg::COMMAND) & 0xffff;
        let quiet = command & !(reg::CMD_IO | reg::CMD_MEMORY);
        if quiet != command {
            cfg.write32(bdf, reg::COMMAND, quiet);
        }
        let mut i = 0;
        while i < bar_count {
            let (bar, slots) = size_bar(cfg, bdf, i, bar_count);
            f.bars[i] = bar;
            i += slots;
        }
        if quiet != command {
            cfg.write32(bdf, reg::COMMAND, command);
        }
    }
    Some(f)
}

/// Sizes BAR `i` (decoding is off). Returns it and how many slots it takes.
fn size_bar(cfg: &mut impl ConfigSpace, bdf: Bdf, i: usize, count: usize) -> (Bar, usize) {
    let off = reg::BAR0 + 4 * i as u16;
    let orig = cfg.read32(bdf, off);
    /// Writes all ones, reads back which bits stuck, restores the register.
    fn probe(cfg: &mut impl ConfigSpace, bdf: Bdf, off: u16) -> u32 {
        let orig = cfg.read32(bdf, off);
        cfg.write32(bdf, off, u32::MAX);
        let mask = cfg.read32(bdf, off);
        cfg.write32(bdf, off, orig);
        mask
    }
    if orig & 1 == 1 {
        let mask = probe(cfg, bdf, off) & !3 & 0xffff;
        if mask == 0 {
            return (Bar::Absent, 1);
        }
        let size = 1u32 << mask.trailing_zeros();
        let base = orig & !3;
        return match base.checked_add(size) {
            Some(end) if end <= 0x1_0000 => (Bar::Io { base, size }, 1),
            _ => (Bar::Invalid, 1),
        };
    }
    let prefetchable = orig & 8 != 0;
    let (wide, slots) = match (orig >> 1) & 3 {
        0 | 1 => (false, 1),
        2 if i + 1 < count => (true, 2),
        // Reserved type, or a 64-bit BAR with no slot for its upper half.
        _ => return (Bar::Invalid, 1),
    };
    let mut mask = u64::from(probe(cfg, bdf, off) & !0xf);
    let mut base = u64::from(orig & !0xf);
    if wide {
        let high = reg::BAR0 + 4 * (i as u16 + 1);
        base |= u64::from(cfg.read32(bdf, high)) << 32;
        mask |= u64::from(probe(cfg, bdf, high)) << 32;
    } else if mask != 0 {
        mask |= 0xffff_ffff_0000_0000;
    }
    if mask == 0 {
        return (Bar::Absent, slots);
    }
    // Sizes are powers of two; the lowest writable bit is the size whatever the bits above say.
    let size = 1u64 << mask.trailing_zeros();
    if base.checked_add(size).is_none() || base % size != 0 {
        return (Bar::Invalid, slots);
    }
    (
        Bar::Memory {
            base,
            size,
            prefetchable,
            wide,
        },
        slots,
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// One fake function: 64 registers and the writable mask of each BAR.
    #[derive(Clone)]
    pub struct FakeFn {
        pub regs: [u32; 64],
        pub bar_masks: [u32; 6],
    }

    /// Fake configuration space; logs writes.
    #[derive(Default)]
    pub struct FakeConfig {
        pub fns: BTreeMap<u16, FakeFn>,
        pub writes: Vec<(Bdf, u16, u32)>,
    }

    impl FakeConfig {
        /// Adds a function with `id`, `class`, the given BARs as (value, mask).
        pub fn add(&mut self, bdf: Bdf, id: u32, header: u8, bars: &[(u32, u32)]) -> &mut FakeFn {
            let mut f = FakeFn {
                regs: [0; 64],
                bar_masks: [0; 6],
            };
            f.regs[0] = id;
            f.regs[1] = 0x0007;
            f.regs[2] = 0x0100_0000;
            f.regs[3] = u32::from(header) << 16;
            f.regs[15] = 0x0000_010a; // INTA, line 10
            for (i, (v, m)) in bars.iter().enumerate() {
                f.regs[4 + i] = *v;
                f.bar_masks[i] = *m;
            }
            self.fns.entry(bdf.0).or_insert(f)
        }
    }

    impl ConfigSpace for FakeConfig {
        fn read32(&mut self, bdf: Bdf, offset: u16) -> u32 {
            self.fns
                .get(&bdf.0)
                .map_or(u32::MAX, |f| f.regs[usize::from(offset / 4)])
        }
        fn write32(&mut self, bdf: Bdf, offset: u16, value: u32) {
            self.writes.push((bdf, offset, value));
            if let Some(f) = self.fns.get_mut(&bdf.0) {
                let i = usize::from(offset / 4);
                if (4..10).contains(&i) {
                    let m = f.bar_masks[i - 4];
                    // Writable address bits take the value; type bits stay.
                    f.regs[i] = (value & m) | (f.regs[i] & !m);
                } else {
                    f.regs[i] = value;
                }
            }
        }
    }

    /// A q35-like machine: host bridge, a virtio-blk with an I/O BAR, a 4 KiB BAR1 and a 16 KiB
    /// 64-bit BAR4, and a bridge to bus 1 holding one more device.
    pub fn q35() -> FakeConfig {
        let mut c = FakeConfig::default();
        c.add(Bdf::new(0, 0, 0), 0x29c0_8086, 0, &[]);
        c.add(
            Bdf::new(0, 3, 0),
            0x1001_1af4,
            0,
            &[
                (0xc041, 0xffff_ffc1),
                (0xfebd_1000, 0xffff_f000),
                (0, 0),
                (0, 0),
                (0xfe00_000c, 0xffff_c00c),
                (0, 0xffff_ffff),
            ],
        );
        let bridge = c.add(Bdf::new(0, 4, 0), 0x0001_1b36, 1, &[]);
        bridge.regs[6] = 0x0001_0100; // primary 0, secondary 1, subordinate 1
        c.add(
            Bdf::new(1, 0, 0),
            0x1005_1af4,
            0,
            &[(0xfe80_0000, 0xffff_f000)],
        );
        c
    }

    #[test]
    fn finds_every_function_and_sizes_its_bars() {
        let mut c = q35();
        let pci = Pci::enumerate(&mut c, Mechanism::Ecam, 0, 255);
        let ids: Vec<_> = pci
            .functions()
            .iter()
            .map(|f| (f.bdf.to_string(), f.vendor, f.device))
            .collect();
        assert_eq!(
            ids,
            [
                ("00:00.0".to_string(), 0x8086, 0x29c0),
                ("00:03.0".to_string(), 0x1af4, 0x1001),
                ("00:04.0".to_string(), 0x1b36, 0x0001),
                ("01:00.0".to_string(), 0x1af4, 0x1005),
            ]
        );
        let blk = pci.functions()[1];
        assert_eq!(
            blk.bars[0],
            Bar::Io {
                base: 0xc040,
                size: 0x40
            }
        );
        assert_eq!(
            blk.bars[1],
            Bar::Memory {
                base: 0xfebd_1000,
                size: 0x1000,
                prefetchable: false,
                wide: false
            }
        );
        assert_eq!(
            blk.bars[4],
            Bar::Memory {
                base: 0xfe00_0000,
                size: 0x4000,
                prefetchable: true,
                wide: true
            }
        );
        assert_eq!(blk.bars[5], Bar::Absent);
        assert_eq!((blk.irq_line, blk.irq_pin, blk.class[0]), (10, 1, 1));
        // Sizing left every BAR as it was, and decoding was off while it happened.
        assert_eq!(c.fns[&Bdf::new(0, 3, 0).0].regs[8], 0xfe00_000c);
        let w: Vec<_> = c
            .writes
            .iter()
            .filter(|w| w.0 == Bdf::new(0, 3, 0))
            .collect();
        assert_eq!(w.first().unwrap().1, reg::COMMAND);
        assert_eq!(w.first().unwrap().2 & 3, 0);
        assert_eq!(w.last().unwrap().1, reg::COMMAND);
        assert_eq!(w.last().unwrap().2 & 3, 3);
        assert!(pci.bar_overlaps(0xfe00_1000, 0xfe00_2000, None));
        assert!(!pci.bar_overlaps(0xfe00_1000, 0xfe00_2000, Some(Bdf::new(0, 3, 0))));
        assert!(!pci.bar_overlaps(0xfe00_4000, 0xfe00_5000, None));
    }

    #[test]
    fn hostile_values_are_recorded_as_invalid_never_trusted() {
        let mut c = FakeConfig::default();
        c.add(
            Bdf::new(0, 1, 0),
            0x1234_5678,
            0,
            &[
                (0x0000_0006, 0xffff_fff0), // reserved memory type
                (0xffff_f004, 0xffff_f000), // 64-bit, and base + size wraps past 2^64
                (0xffff_ffff, 0xffff_ffff),
                (0, 0),
                (0, 0),
                (0x0000_0004, 0xffff_fff0), // 64-bit in the last slot
            ],
        );
        // A bridge whose secondary bus is its own: not followed twice.
        let b = c.add(Bdf::new(0, 2, 0), 0x0001_1b36, 1, &[]);
        b.regs[6] = 0x0000_0000;
        let pci = Pci::enumerate(&mut c, Mechanism::Ports, 0, 255);
        let f = pci.functions()[0];
        assert_eq!(f.bars[0], Bar::Invalid);
        assert_eq!(f.bars[1], Bar::Invalid);
        assert_eq!(f.bars[5], Bar::Invalid);
        assert_eq!(pci.functions().len(), 2);
    }

    #[test]
    fn too_many_functions_are_counted_not_overrun() {
        let mut c = FakeConfig::default();
        for d in 0..32 {
            let f = c.add(Bdf::new(0, d, 0), 0x1000_8086, 0, &[]);
            f.regs[3] |= 0x80 << 16; // multi-function
            for func in 1..8 {
                c.add(Bdf::new(0, d, func), 0x1000_8086, 0, &[]);
            }
        }
        let pci = Pci::enumerate(&mut c, Mechanism::Ecam, 0, 0);
        assert_eq!(
            (pci.functions().len(), pci.dropped),
            (MAX_FUNCTIONS, 256 - 64)
        );
    }
}
