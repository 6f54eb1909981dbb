//! What the machine has, found once at boot, and how a manifest's device capabilities bind to it.
//!
//! Discovery is part of booting: the kernel reads the ACPI tables it needs itself ([`acpi`]: the
//! I/O APICs and interrupt overrides it must program, the ECAM window, the HPET) and walks PCI
//! ([`pci`]). It interprets no AML and drives no device. Each [`CapSpec::Device`] capability is
//! then resolved against what was found ([`Platform::resolve`]): a BAR becomes an MMIO region, the
//! INTx pin the firmware routed becomes an IRQ line, the configuration registers become a
//! [`crate::cap::Object::PciFunction`]. A process is bound to its device at launch, and its
//! capability set is frozen from then on, as every other.
//!
//! [`CapSpec::Device`]: crate::manifest::CapSpec::Device

pub mod acpi;
pub mod pci;

use crate::manifest::{DevicePart, PciMatch};
use acpi::Acpi;
use core::fmt;
use pci::{Bar, Bdf, Function, Pci};

/// Interrupt lines (global system interrupts) the kernel routes: GSIs 0 to 47, the inputs of
/// two 24-input I/O APICs (PC chipsets have one; QEMU's microvm a second for its virtio-mmio
/// devices).
pub const IRQ_LINES: u8 = 48;

/// Everything discovered.
#[derive(Clone, Copy, Debug)]
pub struct Platform {
    /// From the ACPI tables.
    pub acpi: Acpi,
    /// From the PCI walk.
    pub pci: Pci,
}

/// How an interrupt line is programmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// Global system interrupt (the I/O APIC input).
    pub gsi: u8,
    /// Level triggered (else edge).
    pub level: bool,
    /// Active low (else high).
    pub active_low: bool,
}

/// What a device capability became.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// The function's configuration registers.
    Config {
        /// Where it is.
        bdf: Bdf,
        /// Rights.
        rights: u64,
    },
    /// A memory BAR, as a region.
    Region {
        /// Physical base.
        phys: u64,
        /// Pages.
        pages: u32,
        /// Rights.
        rights: u64,
    },
    /// Its interrupt.
    Irq {
        /// How the line is programmed.
        route: Route,
        /// Notification bit.
        bit: u8,
    },
}

/// Why a device capability could not be bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceError {
    /// No such function on this machine.
    NotFound(PciMatch),
    /// The BAR is not implemented.
    NoBar(u8),
    /// The BAR is I/O space or invalid, not a memory region we can map.
    NotMemory(u8),
    /// The BAR is smaller than a page and another device's registers share that page, or it is
    /// not page aligned: mapping it would hand out more than this device.
    SharesPage(u8),
    /// The BAR is larger than a capability slot's window.
    TooLarge(u8),
    /// The function has no interrupt pin, or the firmware routed none.
    NoInterrupt,
    /// The routed interrupt is beyond the lines the kernel drives.
    LineBeyond(u32),
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceError::NotFound(m) => {
                write!(f, "no PCI device {:04x}:{:04x}", m.vendor, m.device)?;
                if m.alt_device != m.device {
                    write!(f, " or {:04x}:{:04x}", m.vendor, m.alt_device)?;
                }
                write!(f, " #{} on this machine", m.index)
            }
            DeviceError::NoBar(b) => write!(f, "BAR {b} is not implemented"),
            DeviceError::NotMemory(b) => write!(f, "BAR {b} is not a valid memory BAR"),
            DeviceError::SharesPage(b) => {
                write!(f, "BAR {b} shares a page with other registers")
            }
            DeviceError::TooLarge(b) => write!(f, "BAR {b} is larger than a region window"),
            DeviceError::NoInterrupt => f.write_str("no interrupt was routed for it"),
            DeviceError::LineBeyond(gsi) => {
                write!(
                    f,
                    "its interrupt is GSI {gsi}, beyond the {IRQ_LINES} lines driven"
                )
            }
        }
    }
}

impl Platform {
    /// Nothing found (host builds, tests, a machine without ACPI or PCI).
    pub const EMPTY: Platform = Platform {
        acpi: Acpi::NONE,
        pci: Pci::NONE,
    };

    /// The function `m` names, with its index in [`Pci::functions`].
    pub fn find(&self, m: &PciMatch) -> Option<(usize, &Function)> {
        self.pci
            .functions()
            .iter()
            .enumerate()
            .filter(|(_, f)| {
                f.vendor == m.vendor && (f.device == m.device || f.device == m.alt_device)
            })
            .nth(usize::from(m.index))
    }

    /// Binds one device capability to what the machine has.
    pub fn resolve(&self, m: &PciMatch, part: &DevicePart) -> Result<Resolved, DeviceError> {
        let (_, f) = self.find(m).ok_or(DeviceError::NotFound(*m))?;
        match *part {
            DevicePart::Config { rights } => Ok(Resolved::Config { bdf: f.bdf, rights }),
            DevicePart::Bar { bar, rights } => {
                let (base, size) = match f.bars.get(usize::from(bar)) {
                    None | Some(Bar::Absent) => return Err(DeviceError::NoBar(bar)),
                    Some(Bar::Memory { base, size, .. }) => (*base, *size),
                    Some(_) => return Err(DeviceError::NotMemory(bar)),
                };
                if base % 4096 != 0 {
                    return Err(DeviceError::SharesPage(bar));
                }
                let pages = size.div_ceil(4096);
                if pages * 4096 > brainix_abi::layout::REGION_STRIDE {
                    return Err(DeviceError::TooLarge(bar));
                }
                // A BAR smaller than a page is mapped as the whole page: only if nothing else
                // (another BAR of any device, this one's included) decodes there.
                if size < 4096 && self.page_is_shared(f, bar, base) {
                    return Err(DeviceError::SharesPage(bar));
                }
                Ok(Resolved::Region {
                    phys: base,
                    pages: pages as u32,
                    rights,
                })
            }
            DevicePart::Irq { bit } => {
                if f.irq_pin == 0 || f.irq_pin > 4 || f.irq_line >= 16 {
                    return Err(DeviceError::NoInterrupt);
                }
                Ok(Resolved::Irq {
                    route: self.pci_route(f.irq_line)?,
                    bit,
                })
            }
        }
    }

    fn page_is_shared(&self, owner: &Function, bar: u8, page: u64) -> bool {
        self.pci.functions().iter().any(|f| {
            f.bars.iter().enumerate().any(|(i, b)| match *b {
                Bar::Memory { base, size, .. } => {
                    let same = f.bdf == owner.bdf && i == usize::from(bar);
                    !same && base < page + 4096 && base.saturating_add(size) > page
                }
                _ => false,
            })
        })
    }

    /// The route of a PCI INTx the firmware sent to ISA IRQ `line`: through the MADT's override
    /// for that IRQ if there is one, level triggered and active low unless it says otherwise
    /// (the PCI defaults).
    fn pci_route(&self, line: u8) -> Result<Route, DeviceError> {
        let (gsi, level, active_low) = match self.acpi.override_for(line) {
            Some(o) => (o.gsi, (o.flags >> 2) & 3 != 1, o.flags & 3 != 1),
            None => (u32::from(line), true, true),
        };
        let gsi = u8::try_from(gsi)
            .ok()
            .filter(|g| *g < IRQ_LINES)
            .ok_or(DeviceError::LineBeyond(gsi))?;
        Ok(Route {
            gsi,
            level,
            active_low,
        })
    }

    /// The route of a line named directly in a manifest (`irq`, a GSI): as an override that
    /// arrives there says, else edge triggered and active high (the ISA defaults).
    pub fn line_route(&self, gsi: u8) -> Route {
        match self.acpi.override_to(u32::from(gsi)) {
            Some(o) => Route {
                gsi,
                level: o.level(),
                active_low: o.active_low(),
            },
            None => Route {
                gsi,
                level: false,
                active_low: false,
            },
        }
    }

    /// Whether `[base, end)` overlaps a memory BAR of a PCI function. Plain `mmio` capabilities
    /// may not: a PCI device's registers are reachable only through a device capability, which
    /// names the device and binds it to one server.
    pub fn overlaps_pci(&self, base: u64, end: u64) -> bool {
        self.pci.bar_overlaps(base, end, None)
    }

    /// The physical address of the first I/O APIC (GSI base 0), or the PC default.
    pub fn ioapic(&self) -> u64 {
        self.acpi
            .ioapics()
            .iter()
            .find(|a| a.gsi_base == 0)
            .map_or(DEFAULT_IOAPIC, |a| a.addr)
    }

    /// The I/O APIC serving `gsi` and its input number there, given each I/O APIC's number of
    /// inputs (`pins`, read from the chip). Without a MADT, the PC default serves GSIs 0 to 23.
    pub fn ioapic_for(&self, gsi: u8, pins: impl Fn(u64) -> u32) -> Option<(u64, u8)> {
        let gsi = u32::from(gsi);
        if self.acpi.ioapics().is_empty() {
            return (gsi < 24).then_some((DEFAULT_IOAPIC, gsi as u8));
        }
        self.acpi.ioapics().iter().find_map(|a| {
            let pin = gsi.checked_sub(a.gsi_base)?;
            (pin < pins(a.addr).min(u32::from(IRQ_LINES))).then_some((a.addr, pin as u8))
        })
    }

    /// Every I/O APIC's register page (the PC default without a MADT).
    pub fn ioapic_pages(&self) -> impl Iterator<Item = u64> + '_ {
        let default = self.acpi.ioapics().is_empty().then_some(DEFAULT_IOAPIC);
        self.acpi.ioapics().iter().map(|a| a.addr).chain(default)
    }
}

impl Default for Platform {
    fn default() -> Self {
        Platform::EMPTY
    }
}

/// Where PC-compatible machines (and QEMU's microvm) put the I/O APIC.
pub const DEFAULT_IOAPIC: u64 = 0xfec0_0000;

/// The boot log's lines about what was found.
pub struct Summary<'a>(pub &'a Platform);

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = &self.0.acpi;
        write!(f, "brainix: acpi")?;
        if a.madt {
            write!(f, ": {} cpu(s), lapic {:#x}", a.cpus, a.lapic)?;
            for io in a.ioapics() {
                write!(f, ", ioapic {:#x} gsi {}", io.addr, io.gsi_base)?;
            }
            write!(f, ", {} override(s)", a.override_count)?;
            for o in a.overrides() {
                write!(
                    f,
                    " irq{}->{}{}",
                    o.source,
                    o.gsi,
                    match (o.level(), o.active_low()) {
                        (true, true) => "/level-low",
                        (true, false) => "/level",
                        (false, true) => "/low",
                        _ => "",
                    }
                )?;
            }
        } else {
            write!(f, ": no MADT (I/O APIC assumed at {DEFAULT_IOAPIC:#x})")?;
        }
        match a.ecam {
            Some(e) => write!(
                f,
                "; ecam {:#x} buses {}-{}",
                e.base, e.bus_start, e.bus_end
            )?,
            None => write!(f, "; no ecam")?,
        }
        match a.hpet {
            Some(h) => write!(f, "; hpet {h:#x}")?,
            None => write!(f, "; no hpet")?,
        }
        if let Some(e) = a.error {
            write!(f, "; refused: {e}")?;
        }
        let p = &self.0.pci;
        write!(
            f,
            "\nbrainix: pci: {} function(s) via {}",
            p.functions().len(),
            match p.mechanism {
                pci::Mechanism::None => "nothing (no PCI)",
                pci::Mechanism::Ecam => "ecam",
                pci::Mechanism::Ports => "ports 0xcf8",
            }
        )?;
        if p.dropped > 0 {
            write!(f, ", {} more not kept", p.dropped)?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use acpi::tests::{machine, madt_body, sdt};
    use pci::Mechanism;
    use pci::tests::q35;

    pub fn platform() -> Platform {
        let mem = machine(&[sdt(b"APIC", &madt_body())]);
        Platform {
            acpi: Acpi::read(&mem, Some(0x100)),
            pci: Pci::enumerate(&mut q35(), Mechanism::Ecam, 0, 255),
        }
    }

    pub const BLK: PciMatch = PciMatch {
        vendor: 0x1af4,
        device: 0x1042,
        alt_device: 0x1001,
        index: 0,
    };

    #[test]
    fn device_capabilities_bind_to_what_was_found() {
        let p = platform();
        let rw = brainix_abi::rights::READ | brainix_abi::rights::WRITE;
        assert_eq!(
            p.resolve(&BLK, &DevicePart::Bar { bar: 4, rights: rw }),
            Ok(Resolved::Region {
                phys: 0xfe00_0000,
                pages: 4,
                rights: rw
            })
        );
        assert_eq!(
            p.resolve(&BLK, &DevicePart::Config { rights: rw }),
            Ok(Resolved::Config {
                bdf: Bdf::new(0, 3, 0),
                rights: rw
            })
        );
        // INTA went to ISA IRQ 10, which the MADT says is level triggered, active high.
        assert_eq!(
            p.resolve(&BLK, &DevicePart::Irq { bit: 1 }),
            Ok(Resolved::Irq {
                route: Route {
                    gsi: 10,
                    level: true,
                    active_low: false
                },
                bit: 1
            })
        );
        // The second virtio device (device id 0x1005) is a different match; index 1 of blk is
        // not there.
        let second = PciMatch { index: 1, ..BLK };
        let e = p.resolve(&second, &DevicePart::Irq { bit: 0 }).unwrap_err();
        assert_eq!(e, DeviceError::NotFound(second));
        assert_eq!(
            e.to_string(),
            "no PCI device 1af4:1042 or 1af4:1001 #1 on this machine"
        );
    }

    #[test]
    fn bars_that_are_not_memory_or_share_a_page_are_refused() {
        let p = platform();
        let part = |bar| DevicePart::Bar { bar, rights: 1 };
        assert_eq!(p.resolve(&BLK, &part(0)), Err(DeviceError::NotMemory(0)));
        assert_eq!(p.resolve(&BLK, &part(2)), Err(DeviceError::NoBar(2)));
        assert_eq!(p.resolve(&BLK, &part(9)), Err(DeviceError::NoBar(9)));
        // A 256-byte BAR whose page holds another device's BAR.
        let mut c = q35();
        c.add(
            Bdf::new(0, 5, 0),
            0x0001_1234,
            0,
            &[(0xfebd_1800, 0xffff_ff00)],
        );
        let p = Platform {
            acpi: Acpi::NONE,
            pci: Pci::enumerate(&mut c, Mechanism::Ecam, 0, 255),
        };
        let m = PciMatch {
            vendor: 0x1234,
            device: 0x0001,
            alt_device: 0x0001,
            index: 0,
        };
        assert_eq!(p.resolve(&m, &part(0)), Err(DeviceError::SharesPage(0)));
        assert!(p.overlaps_pci(0xfebd_1000, 0xfebd_2000));
        // Without ACPI the INTx route is the PCI default: level, active low.
        assert_eq!(
            p.resolve(&m, &DevicePart::Irq { bit: 0 }),
            Ok(Resolved::Irq {
                route: Route {
                    gsi: 10,
                    level: true,
                    active_low: true
                },
                bit: 0
            })
        );
    }

    #[test]
    fn manifest_lines_follow_the_overrides_else_isa_defaults() {
        let p = platform();
        assert_eq!(
            p.line_route(4),
            Route {
                gsi: 4,
                level: false,
                active_low: false
            }
        );
        assert!(p.line_route(10).level);
        assert_eq!(p.ioapic(), 0xfec0_0000);
        assert_eq!(p.ioapic_for(23, |_| 24), Some((0xfec0_0000, 23)));
        assert_eq!(p.ioapic_for(24, |_| 24), None, "one I/O APIC of 24 inputs");
        assert_eq!(
            Platform::EMPTY.ioapic_for(5, |_| 0),
            Some((DEFAULT_IOAPIC, 5))
        );
        let mut two = p;
        two.acpi.ioapics[1] = acpi::IoApic {
            id: 1,
            addr: 0xfec1_0000,
            gsi_base: 24,
        };
        two.acpi.ioapic_count = 2;
        assert_eq!(two.ioapic_for(47, |_| 24), Some((0xfec1_0000, 23)));
        assert_eq!(
            two.ioapic_for(30, |a| if a == 0xfec1_0000 { 4 } else { 24 }),
            None
        );
        assert_eq!(
            two.ioapic_pages().collect::<Vec<_>>(),
            [0xfec0_0000, 0xfec1_0000]
        );
        let s = Summary(&p).to_string();
        assert!(
            s.contains("ioapic 0xfec00000 gsi 0") && s.contains("irq10->10/level"),
            "{s}"
        );
        assert!(s.contains("pci: 4 function(s) via ecam"), "{s}");
    }
}
