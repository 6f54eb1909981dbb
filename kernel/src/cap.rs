//! Capabilities: per-process fixed-size tables of typed, unforgeable tokens.
//!
//! INV-AUTH: a [`Handle`] is a claim, checked on every use against the caller's own table: the
//! slot must exist and hold a capability, the generation must be the slot's current one, the
//! type must be the one the call needs, and the rights must include what it needs. Each check has
//! its own error, so a test can see exactly which refusal happened.
//!
//! Tables are filled once, at launch, from the manifest ([`CapTable::from_specs`]). Nothing here
//! adds a capability to a running process: the only mutations are [`CapTable::drop_slot`] and the
//! object revocation the endpoint table does by bumping its generation.

use crate::manifest::{CapSpec, DevicePart, PciMatch};
use crate::platform::Resolved;
use brainix_abi::{CapType, Error, Handle};

/// Slots per process (an ABI constant). The largest process in our manifests (the supervisor of
/// the test system) holds 20; the manifest checker refuses more than this.
pub const CAPS_PER_PROCESS: usize = brainix_abi::CAP_SLOTS;

/// What a capability refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Object {
    /// Endpoint `id`, as of endpoint generation `generation` (revocation bumps the endpoint's).
    Endpoint {
        /// Endpoint id.
        id: u16,
        /// The endpoint's generation when the capability was made.
        generation: u32,
        /// Shown to the receiver.
        badge: u64,
    },
    /// IRQ line, delivered as notification bit `bit`.
    Irq {
        /// Line.
        line: u8,
        /// Notification bit.
        bit: u8,
    },
    /// Ports `base .. base + count`.
    IoPorts {
        /// First port.
        base: u16,
        /// Count.
        count: u16,
    },
    /// A device region mapped into the holder at [`brainix_abi::layout::region`] of its slot.
    Mmio {
        /// First physical address.
        phys: u64,
        /// Pages.
        pages: u32,
    },
    /// A DMA pool mapped into the holder at [`brainix_abi::layout::region`] of its slot.
    DmaPool {
        /// First physical address of the contiguous frames.
        phys: u64,
        /// Pages.
        pages: u32,
    },
    /// Control over process `pid`.
    ProcessControl {
        /// Target.
        pid: u16,
    },
    /// Observation.
    AuditRead,
    /// Kernel log output.
    Log,
    /// The verdict of check `SystemSpec::reports[index]`.
    Report {
        /// Index into the manifest's report ids.
        index: u16,
    },
    /// The configuration registers of one PCI function, reached through the kernel.
    PciFunction {
        /// Bus, device, function ([`crate::platform::pci::Bdf`]).
        bdf: u16,
    },
}

impl Object {
    /// The ABI type of the object.
    pub fn kind(&self) -> CapType {
        match self {
            Object::Endpoint { .. } => CapType::Endpoint,
            Object::Irq { .. } => CapType::Irq,
            Object::IoPorts { .. } => CapType::IoPorts,
            Object::Mmio { .. } => CapType::Mmio,
            Object::DmaPool { .. } => CapType::DmaPool,
            Object::ProcessControl { .. } => CapType::ProcessControl,
            Object::AuditRead => CapType::AuditRead,
            Object::Log => CapType::Log,
            Object::Report { .. } => CapType::Report,
            Object::PciFunction { .. } => CapType::PciFunction,
        }
    }
}

/// A capability: an object and the rights over it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cap {
    /// The object.
    pub object: Object,
    /// Rights bits ([`brainix_abi::rights`]).
    pub rights: u64,
}

impl Cap {
    /// The capability a manifest entry grants: `endpoint_generation` is the endpoint's
    /// generation at launch, `dma_phys` where the kernel placed a DMA pool.
    pub fn from_spec(spec: &CapSpec, endpoint_generation: u32, dma_phys: u64) -> Cap {
        let (object, rights) = match *spec {
            CapSpec::Endpoint {
                endpoint,
                rights,
                badge,
            } => (
                Object::Endpoint {
                    id: endpoint,
                    generation: endpoint_generation,
                    badge,
                },
                rights,
            ),
            CapSpec::Irq { line, bit } => (Object::Irq { line, bit }, 0),
            CapSpec::IoPorts {
                base,
                count,
                rights,
            } => (Object::IoPorts { base, count }, rights),
            CapSpec::Mmio {
                base,
                pages,
                rights,
            } => (Object::Mmio { phys: base, pages }, rights),
            CapSpec::DmaPool { pages } => (
                Object::DmaPool {
                    phys: dma_phys,
                    pages,
                },
                brainix_abi::rights::READ | brainix_abi::rights::WRITE,
            ),
            CapSpec::ProcessControl { pid } => {
                (Object::ProcessControl { pid }, brainix_abi::rights::CONTROL)
            }
            CapSpec::AuditRead => (Object::AuditRead, brainix_abi::rights::READ),
            CapSpec::Log => (Object::Log, brainix_abi::rights::WRITE),
            CapSpec::Report { index } => (Object::Report { index }, brainix_abi::rights::WRITE),
            // What the manifest alone says of a device capability, before it is bound to a
            // machine: the type and rights, no address (as for a DMA pool).
            CapSpec::Device { part, .. } => match part {
                DevicePart::Config { rights } => (Object::PciFunction { bdf: 0 }, rights),
                DevicePart::Bar { rights, .. } => (Object::Mmio { phys: 0, pages: 0 }, rights),
                DevicePart::Irq { bit } => (Object::Irq { line: 0, bit }, 0),
            },
        };
        Cap { object, rights }
    }

    /// The capability a device capability was bound to ([`crate::platform::Platform::resolve`]).
    pub fn bound(resolved: Resolved) -> Cap {
        let (object, rights) = match resolved {
            Resolved::Config { bdf, rights } => (Object::PciFunction { bdf: bdf.0 }, rights),
            Resolved::Region {
                phys,
                pages,
                rights,
            } => (Object::Mmio { phys, pages }, rights),
            Resolved::Irq { route, bit } => (
                Object::Irq {
                    line: route.gsi,
                    bit,
                },
                0,
            ),
        };
        Cap { object, rights }
    }
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    cap: Option<Cap>,
    generation: u32,
}

/// One process's capability table.
#[derive(Clone, Debug)]
pub struct CapTable {
    slots: [Slot; CAPS_PER_PROCESS],
}

/// The generation every slot has at launch; handle generation 0 therefore never matches, so the
/// all-zero handle is always refused.
pub const FIRST_GENERATION: u32 = 1;

impl CapTable {
    /// An empty table.
    pub const fn new() -> CapTable {
        CapTable {
            slots: [Slot {
                cap: None,
                generation: FIRST_GENERATION,
            }; CAPS_PER_PROCESS],
        }
    }

    /// The table a process gets at launch: one slot per manifest entry, in order. `endpoint_gen`
    /// gives each endpoint's current generation, `dma_phys` the physical address of the DMA pool
    /// launched for a slot, `device` what a device capability was bound to (a device the
    /// machine lacks leaves its slot empty; launch refuses that earlier). Entries past the
    /// capacity are refused by the manifest checker at build time; here they are ignored rather
    /// than trusted.
    pub fn from_specs(
        specs: &[CapSpec],
        endpoint_gen: impl Fn(u16) -> u32,
        dma_phys: impl Fn(usize) -> u64,
        device: impl Fn(&PciMatch, &DevicePart) -> Option<Resolved>,
    ) -> CapTable {
        let mut table = CapTable::new();
        for (i, (slot, spec)) in table.slots.iter_mut().zip(specs).enumerate() {
            let generation = match *spec {
                CapSpec::Endpoint { endpoint, .. } => endpoint_gen(endpoint),
                _ => 0,
            };
            let phys = match spec {
                CapSpec::DmaPool { .. } => dma_phys(i),
                _ => 0,
            };
            slot.cap = match *spec {
                // A device capability becomes what it was bound to on this machine.
                CapSpec::Device { pci, part } => device(&pci, &part).map(Cap::bound),
                _ => Some(Cap::from_spec(spec, generation, phys)),
            };
        }
        table
    }

    /// Checks `handle` for a use that needs type `kind` and every bit of `rights`.
    pub fn lookup(&self, handle: Handle, kind: CapType, rights: u64) -> Result<Cap, Error> {
        let slot = handle
            .slot()
            .and_then(|s| self.slots.get(usize::from(s)))
            .ok_or(Error::BadHandle)?;
        if handle.generation() != slot.generation {
            return Err(mismatch(handle.generation(), slot.generation));
        }
        let cap = slot.cap.ok_or(Error::BadHandle)?;
        if cap.object.kind() != kind {
            return Err(Error::WrongType);
        }
        if cap.rights & rights != rights {
            return Err(Error::MissingRight);
        }
        Ok(cap)
    }

    /// Empties the slot `handle` names and moves its generation on, so the handle and every copy
    /// of it are stale. Only ever removes authority.
    pub fn drop_slot(&mut self, handle: Handle) -> Result<(), Error> {
        let slot = handle
            .slot()
            .and_then(|s| self.slots.get_mut(usize::from(s)))
            .ok_or(Error::BadHandle)?;
        if handle.generation() != slot.generation {
            return Err(mismatch(handle.generation(), slot.generation));
        }
        if slot.cap.is_none() {
            return Err(Error::BadHandle);
        }
        slot.cap = None;
        slot.generation = slot.generation.wrapping_add(1).max(FIRST_GENERATION);
        Ok(())
    }

    /// Slot `i`: its capability (if any) and current generation.
    pub fn slot(&self, i: usize) -> Option<(Option<Cap>, u32)> {
        self.slots.get(i).map(|s| (s.cap, s.generation))
    }

    /// Every capability with its slot.
    pub fn iter(&self) -> impl Iterator<Item = (usize, Cap)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.cap.map(|c| (i, c)))
    }
}

/// A generation the slot had before is stale; any other (never issued: zero, or from the
/// future) is a forgery.
fn mismatch(handle: u32, slot: u32) -> Error {
    if (FIRST_GENERATION..slot).contains(&handle) {
        Error::StaleHandle
    } else {
        Error::BadHandle
    }
}

impl Default for CapTable {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brainix_abi::rights::{RECEIVE, SEND};

    fn table() -> CapTable {
        CapTable::from_specs(
            &[
                CapSpec::Endpoint {
                    endpoint: 3,
                    rights: SEND,
                    badge: 42,
                },
                CapSpec::IoPorts {
                    base: 0x3f8,
                    count: 8,
                    rights: brainix_abi::rights::READ,
                },
                CapSpec::Log,
            ],
            |_| 7,
            |_| 0,
            |_, _| None,
        )
    }

    #[test]
    fn the_handles_a_process_is_launched_with_work() {
        let t = table();
        let cap = t
            .lookup(Handle::new(0, 1), CapType::Endpoint, SEND)
            .unwrap();
        assert_eq!(
            cap.object,
            Object::Endpoint {
                id: 3,
                generation: 7,
                badge: 42
            }
        );
        assert!(t.lookup(Handle::new(2, 1), CapType::Log, 0).is_ok());
    }

    #[test]
    fn forged_handles_are_refused() {
        let t = table();
        for forged in [
            Handle(0),
            Handle::new(5, 1),
            Handle::new(31, 1),
            Handle::new(32, 1),
            Handle::new(u16::MAX, 1),
            Handle::new(0, 2),
            Handle(1 << 50),
        ] {
            assert_eq!(
                t.lookup(forged, CapType::Endpoint, SEND),
                Err(Error::BadHandle),
                "{forged:?}"
            );
        }
    }

    #[test]
    fn wrong_type_and_missing_right_are_told_apart() {
        let t = table();
        assert_eq!(
            t.lookup(Handle::new(1, 1), CapType::Endpoint, SEND),
            Err(Error::WrongType)
        );
        assert_eq!(
            t.lookup(Handle::new(0, 1), CapType::Endpoint, RECEIVE),
            Err(Error::MissingRight)
        );
        assert_eq!(
            t.lookup(Handle::new(0, 1), CapType::Endpoint, SEND | RECEIVE),
            Err(Error::MissingRight)
        );
    }

    #[test]
    fn a_dropped_capability_leaves_only_stale_handles() {
        let mut t = table();
        let h = Handle::new(0, 1);
        t.drop_slot(h).unwrap();
        assert_eq!(
            t.lookup(h, CapType::Endpoint, SEND),
            Err(Error::StaleHandle)
        );
        assert_eq!(t.drop_slot(h), Err(Error::StaleHandle));
        // Guessing the next generation finds an empty slot, not authority.
        assert_eq!(
            t.lookup(Handle::new(0, 2), CapType::Endpoint, SEND),
            Err(Error::BadHandle)
        );
        assert_eq!(t.iter().count(), 2);
    }

    #[test]
    fn arbitrary_handles_never_panic_and_never_grant_more_than_the_table_holds() {
        let t = table();
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let kind = CapType::from_number(x % 9).unwrap_or(CapType::Endpoint);
            if let Ok(cap) = t.lookup(Handle(x >> 3), kind, x & 0x3f) {
                assert!(t.iter().any(|(_, c)| c == cap));
            }
        }
    }
}
