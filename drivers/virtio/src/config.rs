//! virtio-drivers' `ConfigurationAccess` over the kernel's PCI configuration calls.
//!
//! The kernel reads any register of the driver's one function and writes only the command
//! register's memory, bus-master and INTx bits. virtio-drivers sizes a BAR before using it, the
//! usual way: write all ones, read back, restore. Those writes are answered here: while a BAR is
//! being sized, reads of it return the size mask of the region the manifest granted at that
//! address, or zero (not implemented) for a BAR the driver was not given. Nothing reaches the
//! device's BARs.

use brainix_rt::PciFunction;
use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction};

/// Registers the way the kernel lets a driver reach them.
pub trait Registers: Copy {
    /// Reads a 32-bit register (all ones if the kernel refuses).
    fn read(&self, offset: u16) -> u32;
    /// Writes one (a refusal is dropped: the kernel allows what a driver may do).
    fn write(&self, offset: u16, value: u32);
}

impl Registers for PciFunction {
    fn read(&self, offset: u16) -> u32 {
        PciFunction::read(*self, offset).unwrap_or(u32::MAX)
    }
    fn write(&self, offset: u16, value: u32) {
        let _ = PciFunction::write(*self, offset, value);
    }
}

/// BARs are registers 0x10 to 0x24.
const BAR0: u16 = 0x10;

/// The configuration of the driver's one function.
#[derive(Clone, Copy, Debug)]
pub struct KernelConfig<R: Registers = PciFunction> {
    regs: R,
    /// Regions granted: (physical base, length).
    granted: [(u64, u64); 6],
    count: usize,
    /// BAR registers being sized (all ones written, not yet restored).
    sizing: [bool; 6],
}

impl<R: Registers> KernelConfig<R> {
    /// Access through `regs`, with no region granted yet.
    pub fn new(regs: R) -> Self {
        KernelConfig {
            regs,
            granted: [(0, 0); 6],
            count: 0,
            sizing: [false; 6],
        }
    }

    /// Records a region the manifest granted (a BAR mapped into this process).
    pub fn grant(&mut self, phys: u64, len: u64) {
        if self.count < self.granted.len() {
            self.granted[self.count] = (phys, len);
            self.count += 1;
        }
    }

    fn granted_size(&self, base: u64) -> Option<u64> {
        self.granted[..self.count]
            .iter()
            .find(|(phys, _)| *phys == base)
            .map(|(_, len)| *len)
    }

    /// Which BAR register `i` belongs to: walking from BAR 0, a 64-bit memory BAR takes the
    /// register after it as its upper half. Returns the first register of that BAR.
    fn owner(&self, i: usize) -> usize {
        let mut j = 0;
        while j < i {
            let low = self.regs.read(BAR0 + 4 * j as u16);
            let wide = low & 0b111 == 0b100;
            if wide && j + 1 == i {
                return j;
            }
            j += if wide { 2 } else { 1 };
        }
        i
    }

    /// The base address of the BAR whose first register is `i`, or `None` for I/O.
    fn base(&self, i: usize) -> Option<u64> {
        let low = self.regs.read(BAR0 + 4 * i as u16);
        if low & 1 == 1 {
            return None;
        }
        let mut base = u64::from(low & !0xf);
        if low & 0b110 == 0b100 && i < 5 {
            base |= u64::from(self.regs.read(BAR0 + 4 * (i as u16 + 1))) << 32;
        }
        Some(base)
    }

    /// What reading BAR register `i` returns while it is being sized: the mask of the granted
    /// region at that BAR's address, or 0 (not implemented) when nothing was granted there.
    fn size_mask(&self, i: usize) -> u32 {
        let first = self.owner(i);
        let Some(size) = self
            .base(first)
            .and_then(|b| self.granted_size(b))
            .filter(|s| s.is_power_of_two())
        else {
            return 0;
        };
        if first != i {
            return (!(size - 1) >> 32) as u32;
        }
        let low = self.regs.read(BAR0 + 4 * i as u16);
        (!(size - 1) as u32 & !0xf) | (low & 0xf)
    }

    /// Reads register `offset`.
    pub fn read(&self, offset: u16) -> u32 {
        match bar_index(offset) {
            Some(i) if self.sizing[i] => self.size_mask(i),
            _ => self.regs.read(offset),
        }
    }

    /// Writes register `offset`: BAR writes only move the sizing state; the command register
    /// goes to the kernel; anything else is dropped (the kernel would refuse it).
    pub fn write(&mut self, offset: u16, value: u32) {
        match bar_index(offset) {
            Some(i) => self.sizing[i] = value == u32::MAX,
            None if offset == 4 => self.regs.write(offset, value),
            None => {}
        }
    }
}

fn bar_index(offset: u16) -> Option<usize> {
    (BAR0..BAR0 + 24)
        .contains(&offset)
        .then(|| usize::from((offset - BAR0) / 4))
}

impl<R: Registers> ConfigurationAccess for KernelConfig<R> {
    fn read_word(&self, _: DeviceFunction, register_offset: u8) -> u32 {
        self.read(u16::from(register_offset))
    }
    fn write_word(&mut self, _: DeviceFunction, register_offset: u8, data: u32) {
        self.write(u16::from(register_offset), data)
    }
    unsafe fn unsafe_clone(&self) -> Self {
        *self
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::cell::RefCell;
    use std::vec::Vec;

    /// A function with a 64-bit prefetchable BAR 4 at 0xfe000000 (16 KiB), an I/O BAR 0 and a
    /// 32-bit BAR 1; records what reaches the "kernel".
    #[derive(Clone, Copy)]
    struct Fake<'a>(&'a RefCell<Vec<(u16, u32)>>);

    impl Registers for Fake<'_> {
        fn read(&self, offset: u16) -> u32 {
            match offset {
                0x10 => 0xc041,
                0x14 => 0xfebd_1000,
                0x20 => 0xfe00_000c,
                0x24 => 0,
                _ => 0x1234,
            }
        }
        fn write(&self, offset: u16, value: u32) {
            self.0.borrow_mut().push((offset, value));
        }
    }

    fn df() -> DeviceFunction {
        DeviceFunction {
            bus: 0,
            device: 0,
            function: 0,
        }
    }

    #[test]
    fn sizing_a_granted_bar_answers_its_size_and_writes_nothing_to_it() {
        let log = RefCell::new(Vec::new());
        let mut c = KernelConfig::new(Fake(&log));
        c.grant(0xfe00_0000, 0x4000);
        // virtio-drivers' sequence for a 64-bit BAR.
        assert_eq!(c.read_word(df(), 0x20), 0xfe00_000c);
        c.write_word(df(), 0x20, u32::MAX);
        assert_eq!(c.read_word(df(), 0x20), 0xffff_c00c);
        c.write_word(df(), 0x24, u32::MAX);
        assert_eq!(c.read_word(df(), 0x24), 0xffff_ffff);
        c.write_word(df(), 0x24, 0);
        c.write_word(df(), 0x20, 0xfe00_000c);
        assert_eq!(c.read_word(df(), 0x20), 0xfe00_000c);
        // Only the command register reached the kernel.
        c.write_word(df(), 0x04, 0x6);
        c.write_word(df(), 0x3c, 0xff);
        assert_eq!(*log.borrow(), [(0x04, 0x6)]);
    }

    #[test]
    fn bars_not_granted_look_unimplemented() {
        let log = RefCell::new(Vec::new());
        let mut c = KernelConfig::new(Fake(&log));
        for bar in [0x10u8, 0x14] {
            c.write_word(df(), bar, u32::MAX);
            assert_eq!(c.read_word(df(), bar), 0, "{bar:#x}");
        }
        assert!(log.borrow().is_empty());
    }
}
