//! Reaching PCI configuration space: ECAM through the boot identity map while discovering,
//! ECAM through the kernel's MMIO window afterwards, or the `0xcf8`/`0xcfc` ports where there is
//! no ECAM (the i440FX `pc`).
//!
//! Discovery ([`discover`]) runs once, before the kernel's own tables exist; it keeps what it
//! found in a static that is written once and only read from then on ([`platform`]).

use super::instr::{inl, outl};
use crate::bootinfo::{BootInfo, PhysRead, RegionKind};
use crate::kprintln;
use crate::mem::layout::MMIO;
use crate::platform::acpi::{Acpi, Ecam};
use crate::platform::pci::{Bdf, ConfigSpace, MAX_FUNCTIONS, Mechanism, Pci};
use crate::platform::{Platform, Summary};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;

/// The ports mechanism: the first 256 bytes of every function.
pub struct Ports;

impl ConfigSpace for Ports {
    fn read32(&mut self, bdf: Bdf, offset: u16) -> u32 {
        let address = 1 << 31 | u32::from(bdf.0) << 8 | u32::from(offset & 0xfc);
        // SAFETY: 0xcf8/0xcfc are the PCI configuration mechanism #1 ports of every PC chipset;
        // the address selects one register of one function, and reading it has no side effect.
        unsafe {
            outl(CONFIG_ADDRESS, address);
            inl(CONFIG_DATA)
        }
    }
    fn write32(&mut self, bdf: Bdf, offset: u16, value: u32) {
        let address = 1 << 31 | u32::from(bdf.0) << 8 | u32::from(offset & 0xfc);
        // SAFETY: as for `read32`; callers write only what `platform::pci` and the config
        // system call allow (BAR sizing at discovery, the command register).
        unsafe {
            outl(CONFIG_ADDRESS, address);
            outl(CONFIG_DATA, value);
        }
    }
}

/// ECAM at `virt`, the virtual address of bus `ecam.bus_start`'s first function.
struct EcamAt {
    ecam: Ecam,
    virt: u64,
}

impl EcamAt {
    fn register(&self, bdf: Bdf, offset: u16) -> Option<*mut u32> {
        let bus = bdf.bus();
        if bus < self.ecam.bus_start
            || bus > self.ecam.bus_end
            || !offset.is_multiple_of(4)
            || offset >= 4096
        {
            return None;
        }
        let function = u64::from(bdf.0 & 0xff) << 12;
        let at = u64::from(bus - self.ecam.bus_start) << 20 | function | u64::from(offset);
        Some((self.virt + at) as *mut u32)
    }
}

impl ConfigSpace for EcamAt {
    fn read32(&mut self, bdf: Bdf, offset: u16) -> u32 {
        match self.register(bdf, offset) {
            // SAFETY: the ECAM window was checked to lie outside RAM and the kernel, and is
            // mapped at `virt` (the identity map while discovering, the MMIO window after, for
            // every function found); configuration reads have no side effects.
            Some(r) => unsafe { core::ptr::read_volatile(r) },
            None => u32::MAX,
        }
    }
    fn write32(&mut self, bdf: Bdf, offset: u16, value: u32) {
        if let Some(r) = self.register(bdf, offset) {
            // SAFETY: as for `read32`; see `Ports::write32` for what is ever written.
            unsafe { core::ptr::write_volatile(r, value) }
        }
    }
}

struct PlatformCell(UnsafeCell<Platform>, AtomicBool);
// SAFETY: written once by `discover` on the boot path before anything reads it (the flag says
// when); read-only afterwards.
unsafe impl Sync for PlatformCell {}

static PLATFORM: PlatformCell =
    PlatformCell(UnsafeCell::new(Platform::EMPTY), AtomicBool::new(false));

/// 0: no PCI, 1: ECAM, 2: ports (the mechanism after the switch to the kernel's tables).
static MECHANISM: AtomicU8 = AtomicU8::new(0);

/// What discovery found (empty before it ran).
pub fn platform() -> &'static Platform {
    // SAFETY: see `PlatformCell`: after `discover` nothing writes it.
    unsafe { &*PLATFORM.0.get() }
}

/// Whether `[start, end)` touches RAM the memory map calls usable, or the kernel image.
fn overlaps_ram(info: &BootInfo, image: (u64, u64), start: u64, end: u64) -> bool {
    let hit = |s: u64, e: u64| start < e && end > s;
    hit(image.0, image.1)
        || info
            .regions()
            .iter()
            .filter(|r| r.kind == RegionKind::Usable)
            .any(|r| hit(r.start, r.end()))
}

/// Reads the ACPI tables and walks PCI, while the boot identity map (the low 4 GiB) is live.
/// Prints what it found. Runs once.
pub fn discover(info: &BootInfo, mem: &impl PhysRead, image: (u64, u64)) {
    if PLATFORM.1.swap(true, Ordering::AcqRel) {
        return;
    }
    let mut acpi = Acpi::read(mem, info.rsdp);
    // The firmware's word on where the ECAM is must not make us write RAM while sizing BARs,
    // and the boot identity map reaches only the low 4 GiB.
    if let Some(e) = acpi.ecam {
        let end = e.base + ((u64::from(e.bus_end - e.bus_start) + 1) << 20);
        if end > 1 << 32 || overlaps_ram(info, image, e.base, end) {
            kprintln!(
                "brainix: acpi: ECAM at {:#x}..{end:#x} overlaps RAM or lies above 4 GiB; using the configuration ports",
                e.base
            );
            acpi.ecam = None;
        }
    }
    // The I/O APIC gets written through an uncached mapping: never over RAM.
    if acpi
        .ioapics()
        .iter()
        .any(|a| a.addr % 4096 != 0 || overlaps_ram(info, image, a.addr, a.addr + 4096))
    {
        kprintln!(
            "brainix: acpi: an I/O APIC address overlaps RAM or is unaligned; ignoring the MADT's I/O APICs"
        );
        acpi.ioapic_count = 0;
    }
    let pci = match acpi.ecam {
        Some(ecam) => {
            let mut cfg = EcamAt {
                ecam,
                virt: ecam.base,
            };
            Pci::enumerate(&mut cfg, Mechanism::Ecam, ecam.bus_start, ecam.bus_end)
        }
        // Without an MCFG, probe the ports: a PC chipset answers the host bridge's vendor id
        // at 00:00.0; microvm has nothing there and reads all ones.
        None if Ports.read32(Bdf::new(0, 0, 0), 0) & 0xffff != 0xffff => {
            Pci::enumerate(&mut Ports, Mechanism::Ports, 0, 255)
        }
        None => Pci::NONE,
    };
    MECHANISM.store(
        match pci.mechanism {
            Mechanism::None => 0,
            Mechanism::Ecam => 1,
            Mechanism::Ports => 2,
        },
        Ordering::Relaxed,
    );
    // SAFETY: the flag above makes this the one write; nothing has read the cell yet.
    unsafe { *PLATFORM.0.get() = Platform { acpi, pci } };
    let p = platform();
    kprintln!("{}", Summary(p));
    for f in p.pci.functions() {
        kprintln!(
            "brainix: pci {} {:04x}:{:04x} class {:02x}{:02x} intx pin {} line {}",
            f.bdf,
            f.vendor,
            f.device,
            f.class[0],
            f.class[1],
            f.irq_pin,
            f.irq_line
        );
    }
}

/// The physical pages the kernel maps uncached in its MMIO window for configuration access:
/// each function's ECAM page. Returns how many were written to `out`.
pub fn ecam_pages(out: &mut [u64; MAX_FUNCTIONS]) -> usize {
    let p = platform();
    let Some(ecam) = p.acpi.ecam.filter(|_| p.pci.mechanism == Mechanism::Ecam) else {
        return 0;
    };
    let at = EcamAt {
        ecam,
        virt: ecam.base,
    };
    let mut n = 0;
    for f in p.pci.functions() {
        if let Some(r) = at.register(f.bdf, 0) {
            out[n] = r as u64;
            n += 1;
        }
    }
    n
}

/// Configuration access after the switch to the kernel's tables.
pub struct Config;

impl ConfigSpace for Config {
    fn read32(&mut self, bdf: Bdf, offset: u16) -> u32 {
        match (MECHANISM.load(Ordering::Relaxed), mapped(bdf)) {
            (1, Some(mut ecam)) => ecam.read32(bdf, offset),
            (2, _) => Ports.read32(bdf, offset),
            _ => u32::MAX,
        }
    }
    fn write32(&mut self, bdf: Bdf, offset: u16, value: u32) {
        match (MECHANISM.load(Ordering::Relaxed), mapped(bdf)) {
            (1, Some(mut ecam)) => ecam.write32(bdf, offset, value),
            (2, _) => Ports.write32(bdf, offset, value),
            _ => {}
        }
    }
}

/// The ECAM window as mapped in the kernel's MMIO window, for a function found at discovery
/// (only those pages are mapped).
fn mapped(bdf: Bdf) -> Option<EcamAt> {
    let p = platform();
    p.pci.functions().iter().find(|f| f.bdf == bdf)?;
    let ecam = p.acpi.ecam?;
    Some(EcamAt {
        ecam,
        virt: MMIO + ecam.base,
    })
}
