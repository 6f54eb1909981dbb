//! The system manifest as the kernel sees it: a static table, generated at build time by
//! `cargo xtask` from `system/*.toml` after checking it, and compiled into read-only data.
//!
//! The kernel creates every process from this table at boot. There is no runtime spawn and no
//! dynamic loading: the only lifecycle operations are stop and restart of a declared process,
//! through a process-control capability.

/// The whole system: processes and the endpoints they talk through.
#[derive(Debug)]
pub struct SystemSpec {
    /// Name of the system description, for the boot log.
    pub name: &'static str,
    /// The processes, indexed by pid.
    pub processes: &'static [ProcessSpec],
    /// How many endpoint objects exist; endpoint ids are `0..endpoints`.
    pub endpoints: u16,
    /// The check ids processes report through report capabilities, indexed by
    /// [`CapSpec::Report::index`]: each is held by exactly one capability in the system, and at
    /// most [`MAX_REPORTS`] exist.
    pub reports: &'static [&'static str],
}

/// Report capabilities in one system: one bit each in the kernel's reported-set.
pub const MAX_REPORTS: usize = 64;

/// One declared process.
#[derive(Debug)]
pub struct ProcessSpec {
    /// Name, unique in the system, at most 32 bytes.
    pub name: &'static str,
    /// The program's ELF image (statically linked, `x86_64-unknown-none`).
    pub image: &'static [u8],
    /// Scheduling priority, 0 highest, at most [`MAX_PRIORITY`].
    pub priority: u8,
    /// Memory budget in 4 KiB pages: image, stack and the process's page tables together.
    pub memory_pages: u32,
    /// Stack size in pages (the guard page under it is not counted).
    pub stack_pages: u32,
    /// Started at boot; otherwise it waits, stopped, until a supervisor restarts it.
    pub start: bool,
    /// The supervisor restarts it when it dies.
    pub restartable: bool,
    /// The complete capability set, in slot order.
    pub caps: &'static [CapSpec],
}

/// Lowest scheduling priority.
pub const MAX_PRIORITY: u8 = 7;

/// One capability a process holds from launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapSpec {
    /// An endpoint with rights ([`brainix_abi::rights`]) and a badge the receiver sees.
    Endpoint {
        /// Endpoint id.
        endpoint: u16,
        /// `SEND`, `RECEIVE`, `REVOKE`.
        rights: u64,
        /// Shown to the receiver with each message sent through this capability.
        badge: u64,
    },
    /// An interrupt line, delivered as notification bit `bit`.
    Irq {
        /// ISA IRQ / GSI number.
        line: u8,
        /// Notification bit, 0 to 30.
        bit: u8,
    },
    /// I/O ports `base .. base + count`.
    IoPorts {
        /// First port.
        base: u16,
        /// Number of ports.
        count: u16,
        /// `READ` and/or `WRITE`.
        rights: u64,
    },
    /// Stop and restart process `pid`.
    ProcessControl {
        /// Target pid.
        pid: u16,
    },
    /// A device's registers: `pages` pages of physical address space from `base`, mapped
    /// uncached into the holder at [`brainix_abi::layout::region`] of its slot. Never RAM, the
    /// kernel image or the interrupt controllers: the kernel refuses such a region at launch.
    Mmio {
        /// First physical address (page aligned).
        base: u64,
        /// Pages.
        pages: u32,
        /// `READ` and/or `WRITE`.
        rights: u64,
    },
    /// `pages` physically contiguous frames the kernel allocates at launch, zeroed, mapped
    /// read-write into the holder; [`brainix_abi::Syscall::RegionInfo`] tells their physical
    /// address for the device. Charged to the memory budget.
    DmaPool {
        /// Pages.
        pages: u32,
    },
    /// Read-only observation of processes, capabilities and memory.
    AuditRead,
    /// Writing to the kernel log.
    Log,
    /// Reporting the verdict of check [`SystemSpec::reports`]`[index]`, once per boot.
    Report {
        /// Index into [`SystemSpec::reports`].
        index: u16,
    },
    /// Part of a PCI device the kernel finds at boot ([`crate::platform`]): its configuration
    /// registers, one of its memory BARs, or its interrupt. The kernel binds it to the holder at
    /// launch; a process whose device is not on the machine is not launched.
    Device {
        /// Which function.
        pci: PciMatch,
        /// Which part of it.
        part: DevicePart,
    },
}

/// Names a PCI function: the `index`-th (in bus order) whose vendor is `vendor` and whose
/// device id is `device` or `alt_device` (virtio devices have a transitional and a modern id).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciMatch {
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// Another device id that also matches (the same as `device` when there is none).
    pub alt_device: u16,
    /// Which of the matching functions, from 0.
    pub index: u8,
}

/// The part of a device a [`CapSpec::Device`] grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DevicePart {
    /// Its configuration registers, through the kernel: `READ` for all of the header and
    /// capability list, `WRITE` for the command register's memory, bus-master and INTx bits
    /// only (never a BAR).
    Config {
        /// `READ` and/or `WRITE`.
        rights: u64,
    },
    /// Memory BAR `bar`, mapped uncached like an MMIO region.
    Bar {
        /// 0 to 5.
        bar: u8,
        /// `READ` and/or `WRITE`.
        rights: u64,
    },
    /// The interrupt the firmware routed its INTx pin to, as notification bit `bit`.
    Irq {
        /// Notification bit, 0 to 30.
        bit: u8,
    },
}

/// The system compiled into this image.
#[cfg(brainix_system)]
pub static SYSTEM: SystemSpec = include!(concat!(env!("OUT_DIR"), "/system.rs"));

/// Without a generated system (host builds, `cargo build` by hand) the kernel has no processes.
#[cfg(not(brainix_system))]
pub static SYSTEM: SystemSpec = SystemSpec {
    name: "empty",
    processes: &[],
    endpoints: 0,
    reports: &[],
};
