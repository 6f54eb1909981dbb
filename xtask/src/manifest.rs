//! The manifest compiler: `system/<name>.toml` in, a checked static system table out.
//!
//! A system description names the endpoints and the processes, and gives each process its
//! complete, ordered capability set (slot = position in `caps`). The compiler refuses anything
//! the kernel would have to refuse at boot, and more: it checks names, references, rights,
//! ranges, capacities, and each program's ELF (W^X, inside the user window, fits the memory
//! budget). Every error names the file, the line, what is wrong and what was expected, and all
//! of them are reported at once.
//!
//! The output is one Rust expression of type `brainix_kernel::manifest::SystemSpec`, with the
//! program images pulled in by `include_bytes!` from absolute paths; `kernel/build.rs` includes
//! it when `BRAINIX_SYSTEM_RS` names the file.
//!
//! ## Format
//!
//! ```toml
//! name = "default"
//!
//! [[endpoint]]
//! name = "console"
//!
//! [[process]]
//! name = "console"            # unique, 1 to 32 bytes
//! program = "brainix-console" # the cargo package
//! bin = "brainix-console"     # optional: the binary, when it is not named like the package
//! priority = 1                # 0 (highest) to 7
//! memory_pages = 32           # image + stack + page tables, in 4 KiB pages
//! stack_pages = 4
//! start = true                # optional, default true: started at boot
//! restartable = true          # optional, default false: the supervisor restarts it
//! caps = [                    # slot 0, 1, ...
//!   { type = "endpoint", endpoint = "console", rights = ["receive"] }, # badge: default the pid
//!   { type = "io-ports", base = 0x3f8, count = 8, rights = ["read", "write"] },
//!   { type = "irq", line = 4, bit = 0 },
//!   { type = "process-control", process = "shell" },
//!   { type = "audit-read" },
//!   { type = "log" },
//!   { type = "report", check = "auth.forged-handle" }, # one check id, one holder per system
//! ]
//!
//! [[device]]                  # a PCI function the kernel looks for at boot
//! name = "blk0"
//! vendor = 0x1af4
//! device = 0x1042
//! alt_device = 0x1001         # optional: another device id that also matches
//! index = 0                   # optional, default 0: which of the matching functions
//!
//! # ... and in the `caps` of the one process that drives it:
//! #   { type = "device-config", device = "blk0", rights = ["read", "write"] },
//! #   { type = "device-bar", device = "blk0", bar = 4, rights = ["read", "write"] },
//! #   { type = "device-irq", device = "blk0", bit = 1 },
//! ```
//!
//! A process whose device is not on the machine is not launched (the kernel says which device
//! is missing); every other process runs as usual.

use brainix_abi::rights;
use brainix_proto::config::Record;
use brainix_proto::transport::{Grant, MAX_GRANTS, grant_badge};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Capacities and ranges, in one place. The kernel's own constants are used where it has them,
/// so the checker and the kernel cannot drift apart.
pub mod limits {
    /// Processes in the kernel's static table.
    pub const MAX_PROCESSES: usize = brainix_kernel::system::MAX_PROCESSES;
    /// Capability slots per process.
    pub const MAX_CAPS: usize = brainix_kernel::cap::CAPS_PER_PROCESS;
    /// Endpoint objects.
    pub const MAX_ENDPOINTS: usize = brainix_kernel::system::MAX_ENDPOINTS;
    /// Lowest priority (0 is highest).
    pub const MAX_PRIORITY: u8 = brainix_kernel::manifest::MAX_PRIORITY;
    /// Highest IRQ line (a GSI): the kernel drives two 24-input I/O APICs.
    pub const MAX_IRQ_LINE: u8 = brainix_kernel::platform::IRQ_LINES - 1;
    /// Highest notification bit a manifest may assign; bit 31 is
    /// [`brainix_abi::NOTIFY_CHILD_DIED`], which the kernel sets.
    pub const MAX_NOTIFY_BIT: u8 = 30;
    /// Longest process name (the audit record's name field).
    pub const MAX_NAME: usize = 32;
    /// Largest stack: 1 MiB. Nothing we run needs more than 64 KiB.
    pub const MAX_STACK_PAGES: u32 = 256;
    /// Largest memory budget: what the kernel lets one process own.
    pub const MAX_MEMORY_PAGES: u32 = brainix_kernel::system::MAX_PROCESS_PAGES as u32;
    /// Report capabilities (check ids) in one system.
    pub const MAX_REPORTS: usize = brainix_kernel::manifest::MAX_REPORTS;
    /// Longest check id (the serial protocol's limit).
    pub const MAX_CHECK_ID: usize = 48;
    /// Largest MMIO region or DMA pool: one capability slot's window.
    pub const MAX_REGION_PAGES: u32 = (brainix_abi::layout::REGION_STRIDE / 4096) as u32;
    /// Pages of page tables to allow for every process, besides the ones its image and stack
    /// need (see [`super::page_table_pages`]): one PML4, plus 4 for whatever the kernel maps into
    /// every user table for KPTI (entry code, GDT/TSS/IDT and the stacks they name).
    pub const PT_FIXED_PAGES: u64 = 1 + 4;
}

/// Page tables a process needs besides [`limits::PT_FIXED_PAGES`]: the image (below 1 GiB, so
/// one PDPT and one PD) with one page table per 2 MiB it spans, and the stack (under
/// `STACK_TOP`, another PML4 entry) with its own PDPT, PD, and one page table per 2 MiB.
pub fn page_table_pages(image_span_pages: u64, stack_pages: u64) -> u64 {
    let per_pt = 512;
    2 + image_span_pages.div_ceil(per_pt).max(1) + 2 + stack_pages.div_ceil(per_pt).max(1)
}

/// One complaint, with where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The manifest file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// Every complaint about one manifest.
#[derive(Debug)]
pub struct Errors(pub Vec<Diagnostic>);

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        write!(f, "{} error(s) in the system manifest", self.0.len())
    }
}

mod net;
pub use net::configure;

// ---- the file as written ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    name: Spanned<String>,
    #[serde(default, rename = "endpoint")]
    endpoints: Vec<Spanned<EndpointToml>>,
    #[serde(default, rename = "process")]
    processes: Vec<Spanned<ProcessToml>>,
    #[serde(default, rename = "device")]
    devices: Vec<Spanned<DeviceToml>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceToml {
    name: Spanned<String>,
    vendor: Spanned<i64>,
    device: Spanned<i64>,
    alt_device: Option<Spanned<i64>>,
    index: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointToml {
    name: Spanned<String>,
    /// Its server drives a device a board may lack: with the server left out for such a board
    /// (`crate::board`), nobody receives here and callers get `peer-dead`.
    #[serde(default)]
    server_absent: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProcessToml {
    name: Spanned<String>,
    program: Spanned<String>,
    bin: Option<Spanned<String>>,
    priority: Spanned<i64>,
    memory_pages: Spanned<i64>,
    stack_pages: Spanned<i64>,
    #[serde(default = "yes")]
    start: bool,
    #[serde(default)]
    restartable: bool,
    caps: Option<Spanned<Vec<Spanned<CapToml>>>>,
    interface: Option<Spanned<net::InterfaceToml>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CapToml {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    endpoint: Option<Spanned<String>>,
    rights: Option<Spanned<Vec<Spanned<String>>>>,
    badge: Option<Spanned<i64>>,
    base: Option<Spanned<i64>>,
    count: Option<Spanned<i64>>,
    line: Option<Spanned<i64>>,
    bit: Option<Spanned<i64>>,
    process: Option<Spanned<String>>,
    pages: Option<Spanned<i64>>,
    check: Option<Spanned<String>>,
    device: Option<Spanned<String>>,
    bar: Option<Spanned<i64>>,
    protocol: Option<Spanned<String>>,
    local_ports: Option<Spanned<String>>,
    remote: Option<Spanned<String>>,
    remote_ports: Option<Spanned<String>>,
}

// ---- the checked system ----

/// A capability, resolved to ids and rights bits: the kernel's own type, so what is checked is
/// exactly what is generated.
pub use brainix_kernel::manifest::CapSpec as Cap;
use brainix_kernel::manifest::{DevicePart, PciMatch};

/// A checked process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    /// Name.
    pub name: String,
    /// Cargo package.
    pub package: String,
    /// Binary name.
    pub bin: String,
    /// Priority.
    pub priority: u8,
    /// Budget in pages.
    pub memory_pages: u32,
    /// Stack pages.
    pub stack_pages: u32,
    /// Started at boot.
    pub start: bool,
    /// Restarted by the supervisor.
    pub restartable: bool,
    /// Capabilities, in slot order.
    pub caps: Vec<Cap>,
    /// What goes into its configuration block: its interface, and the socket grants it
    /// enforces as the receiver of their endpoint.
    pub config: Vec<Record>,
    /// Line of `program`, for image errors.
    program_line: usize,
    /// Line of `memory_pages`, for budget errors.
    memory_line: usize,
}

/// A system that passed every check that needs no program image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct System {
    /// The manifest file.
    pub file: PathBuf,
    /// Name.
    pub name: String,
    /// Endpoint names, by id.
    pub endpoints: Vec<String>,
    /// Processes, by pid.
    pub processes: Vec<Process>,
    /// Check ids of the report capabilities, by index.
    pub reports: Vec<String>,
}

/// Line of a byte offset (1-based).
fn line_of(src: &str, offset: usize) -> usize {
    src.as_bytes()[..offset.min(src.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

struct Checker<'a> {
    file: &'a Path,
    src: &'a str,
    errors: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn error<T>(&mut self, at: &Spanned<T>, message: impl Into<String>) {
        let line = line_of(self.src, at.span().start);
        self.error_at(line, message);
    }

    fn error_at(&mut self, line: usize, message: impl Into<String>) {
        self.errors.push(Diagnostic {
            file: self.file.to_path_buf(),
            line,
            message: message.into(),
        });
    }

    /// A number in `lo..=hi`, or an error naming `what`.
    fn ranged(&mut self, v: &Spanned<i64>, what: &str, lo: i64, hi: i64) -> Option<i64> {
        let n = *v.get_ref();
        if (lo..=hi).contains(&n) {
            Some(n)
        } else {
            self.error(
                v,
                format!("{what} = {n} is out of range; expected {lo} to {hi}"),
            );
            None
        }
    }

    fn name(&mut self, v: &Spanned<String>, what: &str) {
        let n = v.get_ref();
        if n.is_empty() || n.len() > limits::MAX_NAME {
            self.error(
                v,
                format!(
                    "{what} name {n:?} is {} bytes; expected 1 to {}",
                    n.len(),
                    limits::MAX_NAME
                ),
            );
        } else if !n
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            self.error(
                v,
                format!("{what} name {n:?} has other characters than letters, digits, '-' and '_'"),
            );
        }
    }
}

/// Parses `src` (the content of `file`) and runs every check that needs no program image.
pub fn check(file: &Path, src: &str) -> Result<System, Errors> {
    let mut c = Checker {
        file,
        src,
        errors: Vec::new(),
    };
    let parsed: FileToml = match toml::from_str(src) {
        Ok(p) => p,
        Err(e) => {
            let line = e.span().map_or(1, |s| line_of(src, s.start));
            return Err(Errors(vec![Diagnostic {
                file: file.to_path_buf(),
                line,
                message: format!("not a valid system manifest: {}", e.message().trim_end()),
            }]));
        }
    };
    if parsed.name.get_ref().is_empty() {
        c.error(
            &parsed.name,
            "the system name is empty; expected a name for the boot log",
        );
    }

    // Endpoints: unique names, within capacity.
    let mut endpoint_ids: BTreeMap<String, u16> = BTreeMap::new();
    for (i, e) in parsed.endpoints.iter().enumerate() {
        c.name(&e.get_ref().name, "endpoint");
        let name = e.get_ref().name.get_ref().clone();
        if i == limits::MAX_ENDPOINTS {
            c.error(
                e,
                format!(
                    "endpoint {name:?} is one too many; expected at most {} endpoints",
                    limits::MAX_ENDPOINTS
                ),
            );
        }
        if endpoint_ids.insert(name.clone(), i as u16).is_some() {
            c.error(
                &e.get_ref().name,
                format!("endpoint {name:?} is declared twice; expected unique endpoint names"),
            );
        }
    }

    // Devices: unique names, ids in range.
    let mut devices: BTreeMap<String, PciMatch> = BTreeMap::new();
    for d in &parsed.devices {
        let d = d.get_ref();
        c.name(&d.name, "device");
        let vendor = c.ranged(&d.vendor, "vendor", 0, 0xfffe);
        let device = c.ranged(&d.device, "device", 0, 0xffff);
        let alt = match &d.alt_device {
            Some(a) => c.ranged(a, "alt_device", 0, 0xffff),
            None => device,
        };
        let index = match &d.index {
            Some(i) => c.ranged(i, "index", 0, 255),
            None => Some(0),
        };
        let (Some(vendor), Some(device), Some(alt), Some(index)) = (vendor, device, alt, index)
        else {
            continue;
        };
        let m = PciMatch {
            vendor: vendor as u16,
            device: device as u16,
            alt_device: alt as u16,
            index: index as u8,
        };
        let name = d.name.get_ref().clone();
        if devices.insert(name.clone(), m).is_some() {
            c.error(
                &d.name,
                format!("device {name:?} is declared twice; expected unique device names"),
            );
        }
    }
    // Which process each device is bound to: one only, or the isolation between drivers is gone.
    let mut device_owner: BTreeMap<String, String> = BTreeMap::new();

    // Processes: unique names, within capacity (needed first: process-control names targets).
    let mut pids: BTreeMap<String, u16> = BTreeMap::new();
    for (i, p) in parsed.processes.iter().enumerate() {
        let name = p.get_ref().name.get_ref().clone();
        if i == limits::MAX_PROCESSES {
            c.error(
                p,
                format!(
                    "process {name:?} is one too many; expected at most {} processes",
                    limits::MAX_PROCESSES
                ),
            );
        }
        if pids.insert(name.clone(), i as u16).is_some() {
            c.error(
                &p.get_ref().name,
                format!("process {name:?} is declared twice; expected unique process names"),
            );
        }
    }
    if parsed.processes.is_empty() {
        c.error(
            &parsed.name,
            "the system declares no process; expected at least one [[process]]",
        );
    }

    let mut processes = Vec::new();
    // Who holds RECEIVE on each endpoint, and where.
    let mut receivers: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    let mut reports: Vec<String> = Vec::new();
    let mut irq_owner: BTreeMap<u8, String> = BTreeMap::new();
    // Badges of the senders on each endpoint, so that no two processes look alike to a server.
    let mut badges: BTreeMap<(u16, u64), String> = BTreeMap::new();
    // Socket grants by endpoint, with the line of each; and where an explicit badge was set.
    let mut grants: BTreeMap<u16, Vec<(Grant, usize)>> = BTreeMap::new();
    let mut explicit_badges: Vec<(u16, usize)> = Vec::new();
    for (pid, p) in parsed.processes.iter().enumerate() {
        let p = p.get_ref();
        let pname = p.name.get_ref().clone();
        c.name(&p.name, "process");
        let prio = c.ranged(&p.priority, "priority", 0, i64::from(limits::MAX_PRIORITY));
        let stack = c.ranged(
            &p.stack_pages,
            "stack_pages",
            1,
            i64::from(limits::MAX_STACK_PAGES),
        );
        let memory = c.ranged(
            &p.memory_pages,
            "memory_pages",
            1,
            i64::from(limits::MAX_MEMORY_PAGES),
        );
        let no_caps = Vec::new();
        let cap_list = p.caps.as_ref().map_or(&no_caps, |c| c.get_ref());
        if let Some(list) = &p.caps
            && list.get_ref().len() > limits::MAX_CAPS
        {
            c.error(
                list,
                format!(
                    "process {pname:?} has {} capabilities; expected at most {}",
                    list.get_ref().len(),
                    limits::MAX_CAPS
                ),
            );
        }
        let mut caps = Vec::new();
        let mut lines = BTreeSet::new();
        let mut bits = BTreeSet::new();
        for cap in cap_list {
            let resolved = check_cap(
                &mut c,
                (pid, &pname),
                cap,
                (&endpoint_ids, &pids),
                &mut reports,
                &devices,
                &mut grants,
            );
            let Some(resolved) = resolved else {
                continue;
            };
            if let (Cap::Endpoint { endpoint, .. }, Some(b)) = (&resolved, &cap.get_ref().badge) {
                explicit_badges.push((*endpoint, line_of(src, b.span().start)));
            }
            if let Some(dev) = &cap.get_ref().device {
                let dev = dev.get_ref().clone();
                if let Some(other) = device_owner.insert(dev.clone(), pname.clone())
                    && other != pname
                {
                    c.error(cap, format!("device {dev:?} is given to both {other:?} and {pname:?}; expected one server per device"));
                }
            }
            match resolved {
                Cap::Endpoint {
                    endpoint,
                    rights,
                    badge,
                } => {
                    if rights & rights::RECEIVE != 0 {
                        receivers.entry(endpoint).or_default().push(pname.clone());
                    }
                    if rights & rights::SEND != 0
                        && let Some(other) = badges.insert((endpoint, badge), pname.clone())
                        && other != pname
                    {
                        c.error(cap, format!("process {pname:?} sends on endpoint {:?} with badge {badge}, as {other:?} does; expected a badge of its own (the server tells clients apart by it)", parsed.endpoints[usize::from(endpoint)].get_ref().name.get_ref()));
                    }
                }
                Cap::Device {
                    part: DevicePart::Irq { bit },
                    ..
                } if !bits.insert(bit) => {
                    c.error(cap, format!("process {pname:?} uses notification bit {bit} twice; expected a distinct bit per IRQ"));
                }
                Cap::Irq { line, bit } => {
                    if !lines.insert(line) {
                        c.error(cap, format!("process {pname:?} holds IRQ line {line} twice; expected each line once"));
                    } else if let Some(other) = irq_owner.insert(line, pname.clone())
                        && other != pname
                    {
                        c.error(cap, format!("IRQ line {line} is given to both {other:?} and {pname:?}; expected one owner per line"));
                    }
                    if !bits.insert(bit) {
                        c.error(cap, format!("process {pname:?} uses notification bit {bit} twice; expected a distinct bit per IRQ"));
                    }
                }
                Cap::ProcessControl { pid }
                    if parsed
                        .processes
                        .get(usize::from(pid))
                        .is_some_and(|t| t.get_ref().name.get_ref() == &pname) =>
                {
                    c.error(cap, format!("process {pname:?} is given control of itself; expected a supervisor to hold it"));
                }
                _ => {}
            }
            caps.push(resolved);
        }
        let config = match &p.interface {
            Some(i) => net::interface(&mut c, &pname, i)
                .map(Record::Interface)
                .into_iter()
                .collect(),
            None => Vec::new(),
        };
        processes.push(Process {
            config,
            name: pname,
            package: p.program.get_ref().clone(),
            bin: p
                .bin
                .as_ref()
                .map_or_else(|| p.program.get_ref().clone(), |b| b.get_ref().clone()),
            priority: prio.unwrap_or(0) as u8,
            memory_pages: memory.unwrap_or(0) as u32,
            stack_pages: stack.unwrap_or(0) as u32,
            start: p.start,
            restartable: p.restartable,
            caps,
            program_line: line_of(src, p.program.span().start),
            memory_line: line_of(src, p.memory_pages.span().start),
        });
    }

    for (name, &id) in &endpoint_ids {
        let at = &parsed.endpoints[usize::from(id)].get_ref().name;
        let absent = parsed.endpoints[usize::from(id)].get_ref().server_absent;
        match receivers.get(&id).map(Vec::as_slice) {
            None | Some([]) if absent => {}
            Some([_]) if absent => c.error(
                at,
                format!("endpoint {name:?} is marked server_absent but has a receiver; expected the mark only where a board left its server out"),
            ),
            None | Some([]) => c.error(
                at,
                format!("endpoint {name:?} has no receiver; expected exactly one process with the \"receive\" right"),
            ),
            Some([_]) => {}
            Some(many) => c.error(
                at,
                format!(
                    "endpoint {name:?} is received by {}; expected exactly one process with the \"receive\" right",
                    many.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(" and ")
                ),
            ),
        }
    }

    // Socket grants go to the one receiver of their endpoint, which enforces them; nothing else
    // on that endpoint may carry a badge of its choosing.
    for (endpoint, list) in &grants {
        let ename = parsed.endpoints[usize::from(*endpoint)]
            .get_ref()
            .name
            .get_ref();
        for &(e, line) in &explicit_badges {
            if e == *endpoint {
                c.error_at(line, format!("endpoint {ename:?} serves sockets, so its capabilities take no explicit badge; expected a socket capability for a grant, or no badge"));
            }
        }
        if let Some(&(_, line)) = list.get(MAX_GRANTS) {
            c.error_at(
                line,
                format!(
                    "endpoint {ename:?} has {} socket grants; expected at most {MAX_GRANTS}",
                    list.len()
                ),
            );
        }
        let receiver = receivers.get(endpoint).and_then(|r| r.first());
        if let Some(server) = processes.iter_mut().find(|p| Some(&p.name) == receiver) {
            for (index, (grant, _)) in list.iter().enumerate().take(MAX_GRANTS) {
                server.config.push(Record::Grant {
                    index: index as u16,
                    grant: *grant,
                });
            }
        }
    }

    if !c.errors.is_empty() {
        c.errors.sort_by_key(|d| d.line);
        return Err(Errors(c.errors));
    }
    let mut endpoints = vec![String::new(); endpoint_ids.len()];
    for (name, id) in endpoint_ids {
        endpoints[usize::from(id)] = name;
    }
    Ok(System {
        file: file.to_path_buf(),
        name: parsed.name.into_inner(),
        endpoints,
        processes,
        reports,
    })
}

/// Which fields each capability type takes.
fn fields_allowed(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "endpoint" => &["endpoint", "rights", "badge"],
        "io-ports" => &["base", "count", "rights"],
        "irq" => &["line", "bit"],
        "process-control" => &["process"],
        "mmio" => &["base", "pages", "rights"],
        "dma-pool" => &["pages"],
        "report" => &["check"],
        "device-config" => &["device", "rights"],
        "device-bar" => &["device", "bar", "rights"],
        "device-irq" => &["device", "bit"],
        "socket" => &[
            "endpoint",
            "protocol",
            "local_ports",
            "remote",
            "remote_ports",
        ],
        "audit-read" | "log" => &[],
        _ => return None,
    })
}

fn check_cap(
    c: &mut Checker<'_>,
    (pid, pname): (usize, &str),
    cap: &Spanned<CapToml>,
    (endpoints, pids): (&BTreeMap<String, u16>, &BTreeMap<String, u16>),
    reports: &mut Vec<String>,
    devices: &BTreeMap<String, PciMatch>,
    grants: &mut BTreeMap<u16, Vec<(Grant, usize)>>,
) -> Option<Cap> {
    let t = cap.get_ref();
    let kind = t.kind.get_ref().as_str();
    let Some(allowed) = fields_allowed(kind) else {
        c.error(
            &t.kind,
            format!(
                "process {pname:?}: unknown capability type {kind:?}; expected one of endpoint, io-ports, irq, mmio, dma-pool, process-control, audit-read, log, report, device-config, device-bar, device-irq, socket"
            ),
        );
        return None;
    };
    let present = [
        ("endpoint", t.endpoint.is_some()),
        ("rights", t.rights.is_some()),
        ("badge", t.badge.is_some()),
        ("base", t.base.is_some()),
        ("count", t.count.is_some()),
        ("line", t.line.is_some()),
        ("bit", t.bit.is_some()),
        ("process", t.process.is_some()),
        ("pages", t.pages.is_some()),
        ("check", t.check.is_some()),
        ("device", t.device.is_some()),
        ("bar", t.bar.is_some()),
        ("protocol", t.protocol.is_some()),
        ("local_ports", t.local_ports.is_some()),
        ("remote", t.remote.is_some()),
        ("remote_ports", t.remote_ports.is_some()),
    ];
    let mut ok = true;
    for (field, is) in present {
        if is && !allowed.contains(&field) {
            c.error(
                cap,
                format!("process {pname:?}: {kind} capabilities take no {field:?}; expected only {allowed:?}"),
            );
            ok = false;
        }
    }
    let mut need = |c: &mut Checker<'_>, field: &str, has: bool| {
        if !has {
            c.error(
                cap,
                format!("process {pname:?}: {kind} capabilities need {field:?}"),
            );
            ok = false;
        }
    };
    match kind {
        "endpoint" => {
            need(c, "endpoint", t.endpoint.is_some());
            need(c, "rights", t.rights.is_some());
        }
        "io-ports" => {
            need(c, "base", t.base.is_some());
            need(c, "count", t.count.is_some());
            need(c, "rights", t.rights.is_some());
        }
        "irq" => {
            need(c, "line", t.line.is_some());
            need(c, "bit", t.bit.is_some());
        }
        "process-control" => need(c, "process", t.process.is_some()),
        "mmio" => {
            need(c, "base", t.base.is_some());
            need(c, "pages", t.pages.is_some());
            need(c, "rights", t.rights.is_some());
        }
        "dma-pool" => need(c, "pages", t.pages.is_some()),
        "report" => need(c, "check", t.check.is_some()),
        "device-config" => {
            need(c, "device", t.device.is_some());
            need(c, "rights", t.rights.is_some());
        }
        "device-bar" => {
            need(c, "device", t.device.is_some());
            need(c, "bar", t.bar.is_some());
            need(c, "rights", t.rights.is_some());
        }
        "device-irq" => {
            need(c, "device", t.device.is_some());
            need(c, "bit", t.bit.is_some());
        }
        "socket" => {
            need(c, "endpoint", t.endpoint.is_some());
            need(c, "protocol", t.protocol.is_some());
            need(c, "local_ports", t.local_ports.is_some());
            need(c, "remote", t.remote.is_some());
            need(c, "remote_ports", t.remote_ports.is_some());
        }
        _ => {}
    }
    if !ok {
        return None;
    }
    let rights_of = |c: &mut Checker<'_>, valid: &[(&str, u64)]| -> Option<u64> {
        let list = t.rights.as_ref()?;
        let mut bits = 0;
        let mut good = true;
        for r in list.get_ref() {
            match valid.iter().find(|(n, _)| n == r.get_ref()) {
                Some((_, b)) => bits |= b,
                None => {
                    c.error(
                        r,
                        format!(
                            "process {pname:?}: {:?} is not a right of {kind} capabilities; expected some of {:?}",
                            r.get_ref(),
                            valid.iter().map(|(n, _)| *n).collect::<Vec<_>>()
                        ),
                    );
                    good = false;
                }
            }
        }
        if good && bits == 0 {
            c.error(list, format!("process {pname:?}: {kind} capabilities need at least one right; the list is empty"));
            good = false;
        }
        good.then_some(bits)
    };
    match kind {
        "endpoint" | "socket" => {
            let name = t.endpoint.as_ref()?;
            let endpoint = endpoints.get(name.get_ref()).copied();
            if endpoint.is_none() {
                c.error(
                    name,
                    format!("process {pname:?}: endpoint {:?} is not declared; expected an [[endpoint]] with that name", name.get_ref()),
                );
            }
            if kind == "socket" {
                let asked = net::SocketToml {
                    protocol: t.protocol.as_ref()?,
                    local_ports: t.local_ports.as_ref()?,
                    remote: t.remote.as_ref()?,
                    remote_ports: t.remote_ports.as_ref()?,
                };
                let grant = net::grant(c, pname, asked)?;
                let list = grants.entry(endpoint?).or_default();
                list.push((grant, line_of(c.src, cap.span().start)));
                return Some(Cap::Endpoint {
                    endpoint: endpoint?,
                    rights: rights::SEND,
                    badge: grant_badge((list.len() - 1) as u16),
                });
            }
            let valid = [
                ("send", rights::SEND),
                ("receive", rights::RECEIVE),
                ("revoke", rights::REVOKE),
            ];
            let rights = rights_of(c, &valid);
            let badge = match &t.badge {
                Some(b) => c.ranged(b, "badge", 0, i64::MAX)? as u64,
                None => pid as u64,
            };
            Some(Cap::Endpoint {
                endpoint: endpoint?,
                rights: rights?,
                badge,
            })
        }
        "io-ports" => {
            let rights = rights_of(c, &[("read", rights::READ), ("write", rights::WRITE)]);
            let base = c.ranged(t.base.as_ref()?, "base", 0, 0xffff);
            let count = c.ranged(t.count.as_ref()?, "count", 1, 0x1_0000);
            let (base, count) = (base?, count?);
            if base + count > 0x1_0000 {
                c.error(
                    cap,
                    format!("process {pname:?}: ports {base:#x}+{count} run past 0xffff; expected a range inside the 64 Ki port space"),
                );
                return None;
            }
            Some(Cap::IoPorts {
                base: base as u16,
                count: u16::try_from(count).ok()?,
                rights: rights?,
            })
        }
        "irq" => {
            let line = c.ranged(t.line.as_ref()?, "line", 0, i64::from(limits::MAX_IRQ_LINE));
            let bit = c.ranged(t.bit.as_ref()?, "bit", 0, i64::from(limits::MAX_NOTIFY_BIT));
            Some(Cap::Irq {
                line: line? as u8,
                bit: bit? as u8,
            })
        }
        "process-control" => {
            let target = t.process.as_ref()?;
            match pids.get(target.get_ref()) {
                Some(&pid) => Some(Cap::ProcessControl { pid }),
                None => {
                    c.error(
                        target,
                        format!("process {pname:?}: process-control of {:?}, which is not declared; expected the name of a [[process]]", target.get_ref()),
                    );
                    None
                }
            }
        }
        "mmio" => {
            let rights = rights_of(c, &[("read", rights::READ), ("write", rights::WRITE)]);
            let base = c.ranged(t.base.as_ref()?, "base", 0, 1 << 52);
            let pages = c.ranged(
                t.pages.as_ref()?,
                "pages",
                1,
                i64::from(limits::MAX_REGION_PAGES),
            );
            let base = base? as u64;
            if !base.is_multiple_of(4096) {
                c.error(
                    cap,
                    format!("process {pname:?}: mmio base {base:#x} is not page aligned; expected a multiple of 0x1000"),
                );
                return None;
            }
            Some(Cap::Mmio {
                base,
                pages: pages? as u32,
                rights: rights?,
            })
        }
        "dma-pool" => {
            let pages = c.ranged(
                t.pages.as_ref()?,
                "pages",
                1,
                i64::from(limits::MAX_REGION_PAGES),
            );
            Some(Cap::DmaPool {
                pages: pages? as u32,
            })
        }
        "device-config" | "device-bar" | "device-irq" => {
            let name = t.device.as_ref()?;
            let pci = devices.get(name.get_ref()).copied();
            if pci.is_none() {
                c.error(
                    name,
                    format!("process {pname:?}: device {:?} is not declared; expected a [[device]] with that name", name.get_ref()),
                );
            }
            let part = match kind {
                "device-config" => DevicePart::Config {
                    rights: rights_of(c, &[("read", rights::READ), ("write", rights::WRITE)])?,
                },
                "device-bar" => {
                    let rights = rights_of(c, &[("read", rights::READ), ("write", rights::WRITE)]);
                    let bar = c.ranged(t.bar.as_ref()?, "bar", 0, 5);
                    DevicePart::Bar {
                        bar: bar? as u8,
                        rights: rights?,
                    }
                }
                _ => DevicePart::Irq {
                    bit: c.ranged(t.bit.as_ref()?, "bit", 0, i64::from(limits::MAX_NOTIFY_BIT))?
                        as u8,
                },
            };
            Some(Cap::Device { pci: pci?, part })
        }
        "audit-read" => Some(Cap::AuditRead),
        "report" => check_report(c, pname, t.check.as_ref()?, reports),
        _ => Some(Cap::Log),
    }
}

/// A report capability: a well-formed check id that no other capability and no kernel check
/// reports, within the kernel's capacity.
fn check_report(
    c: &mut Checker<'_>,
    pname: &str,
    id: &Spanned<String>,
    reports: &mut Vec<String>,
) -> Option<Cap> {
    let text = id.get_ref();
    let well_formed = (1..=limits::MAX_CHECK_ID).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let problem = if !well_formed {
        Some(format!(
            "check id {text:?} is not 1 to {} of a-z, 0-9, '.' and '-' (the serial protocol's id)",
            limits::MAX_CHECK_ID
        ))
    } else if brainix_kernel::report::KERNEL_CHECKS.contains(&text.as_str()) {
        Some(format!(
            "check {text:?} is one the kernel reports itself; expected an id of this system's own"
        ))
    } else if reports.contains(text) {
        Some(format!(
            "check {text:?} already has a report capability; expected exactly one holder per check"
        ))
    } else if reports.len() == limits::MAX_REPORTS {
        Some(format!(
            "check {text:?} is one report capability too many; expected at most {}",
            limits::MAX_REPORTS
        ))
    } else {
        None
    };
    if let Some(p) = problem {
        c.error(id, format!("process {pname:?}: {p}"));
        return None;
    }
    reports.push(text.clone());
    Some(Cap::Report {
        index: (reports.len() - 1) as u16,
    })
}

/// The workspace's programs: package name to the names of its binaries.
pub type Catalog = BTreeMap<String, Vec<String>>;

/// Checks that each process names a package of the workspace and a binary it builds.
pub fn check_programs(system: &System, catalog: &Catalog) -> Result<(), Errors> {
    let mut errors = Vec::new();
    for p in &system.processes {
        let message = match catalog.get(&p.package) {
            None => format!(
                "process {:?}: program {:?} is not a package of the workspace with binaries; expected one of {:?}",
                p.name,
                p.package,
                catalog.keys().collect::<Vec<_>>()
            ),
            Some(bins) if !bins.contains(&p.bin) => format!(
                "process {:?}: package {:?} has no binary {:?}; expected `bin` to be one of {bins:?}",
                p.name, p.package, p.bin
            ),
            Some(_) => continue,
        };
        errors.push(Diagnostic {
            file: system.file.clone(),
            line: p.program_line,
            message,
        });
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Errors(errors))
    }
}

/// Checks each process's program image against the kernel's ELF rules and the process's memory
/// budget. `image` reads the bytes of a binary.
pub fn check_images(
    system: &System,
    image: &dyn Fn(&Process) -> Result<Vec<u8>, String>,
) -> Result<(), Errors> {
    let mut errors = Vec::new();
    let mut at = |line, message: String| {
        errors.push(Diagnostic {
            file: system.file.clone(),
            line,
            message,
        })
    };
    for p in &system.processes {
        let bytes = match image(p) {
            Ok(b) => b,
            Err(e) => {
                at(p.program_line, format!("process {:?}: {e}", p.name));
                continue;
            }
        };
        let program = match brainix_kernel::elf::Program::parse(&bytes) {
            Ok(program) => program,
            Err(e) => {
                at(
                    p.program_line,
                    format!("process {:?}: program {:?} is refused: {e}", p.name, p.bin),
                );
                continue;
            }
        };
        let image_pages = program.pages();
        let span = program
            .segments()
            .map(|s| (s.vaddr + s.mem_len).div_ceil(4096))
            .max()
            .unwrap_or(0)
            - program
                .segments()
                .map(|s| s.vaddr / 4096)
                .min()
                .unwrap_or(0);
        let stack = u64::from(p.stack_pages);
        // MMIO regions and DMA pools sit in their own windows: one PDPT for all of them, then a
        // PD and a page table per 2 MiB for each; DMA frames count as memory too.
        let regions: Vec<(u64, bool)> = p
            .caps
            .iter()
            .filter_map(|c| match *c {
                Cap::Mmio { pages, .. } => Some((u64::from(pages), false)),
                Cap::DmaPool { pages } => Some((u64::from(pages), true)),
                // Its size is known only at boot; budgeted as up to 2 MiB (one page table).
                Cap::Device {
                    part: DevicePart::Bar { .. },
                    ..
                } => Some((1, false)),
                _ => None,
            })
            .collect();
        let dma: u64 = regions.iter().filter(|r| r.1).map(|r| r.0).sum();
        let region_tables: u64 = u64::from(!regions.is_empty())
            + regions.iter().map(|r| 1 + r.0.div_ceil(512)).sum::<u64>();
        let tables = limits::PT_FIXED_PAGES + page_table_pages(span, stack) + region_tables;
        let needed = image_pages + stack + dma + tables;
        if u64::from(p.memory_pages) < needed {
            at(
                p.memory_line,
                format!(
                    "process {:?}: memory_pages = {} is too small; expected at least {needed} ({image_pages} for the image, {stack} for the stack, {dma} for DMA pools, {tables} for page tables)",
                    p.name, p.memory_pages
                ),
            );
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Errors(errors))
    }
}

/// The Rust expression for the kernel: a `SystemSpec` with the images at `images[pid]`.
pub fn generate(system: &System, images: &[PathBuf]) -> String {
    use std::fmt::Write;
    let rights = |bits: u64| -> String {
        let names = [
            (rights::SEND, "SEND"),
            (rights::RECEIVE, "RECEIVE"),
            (rights::REVOKE, "REVOKE"),
            (rights::READ, "READ"),
            (rights::WRITE, "WRITE"),
        ];
        let parts: Vec<String> = names
            .iter()
            .filter(|(b, _)| bits & b != 0)
            .map(|(_, n)| format!("brainix_abi::rights::{n}"))
            .collect();
        parts.join(" | ")
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "// Generated by `cargo xtask` from {}. Do not edit.",
        system.file.display()
    );
    let _ = writeln!(out, "crate::manifest::SystemSpec {{");
    let _ = writeln!(out, "    name: {:?},", system.name);
    let _ = writeln!(out, "    processes: &[");
    for (pid, (p, image)) in system.processes.iter().zip(images).enumerate() {
        let _ = writeln!(out, "        // pid {pid}");
        let _ = writeln!(out, "        crate::manifest::ProcessSpec {{");
        let _ = writeln!(out, "            name: {:?},", p.name);
        let _ = writeln!(
            out,
            "            image: include_bytes!({:?}),",
            image.display().to_string()
        );
        let _ = writeln!(out, "            priority: {},", p.priority);
        let _ = writeln!(out, "            memory_pages: {},", p.memory_pages);
        let _ = writeln!(out, "            stack_pages: {},", p.stack_pages);
        let _ = writeln!(out, "            start: {},", p.start);
        let _ = writeln!(out, "            restartable: {},", p.restartable);
        let _ = writeln!(out, "            caps: &[");
        for (slot, cap) in p.caps.iter().enumerate() {
            let text = match *cap {
                Cap::Endpoint {
                    endpoint,
                    rights: r,
                    badge,
                } => format!(
                    "Endpoint {{ endpoint: {endpoint}, rights: {}, badge: {badge} }}",
                    rights(r)
                ),
                Cap::Irq { line, bit } => format!("Irq {{ line: {line}, bit: {bit} }}"),
                Cap::IoPorts {
                    base,
                    count,
                    rights: r,
                } => format!(
                    "IoPorts {{ base: {base:#x}, count: {count}, rights: {} }}",
                    rights(r)
                ),
                Cap::Mmio {
                    base,
                    pages,
                    rights: r,
                } => format!(
                    "Mmio {{ base: {base:#x}, pages: {pages}, rights: {} }}",
                    rights(r)
                ),
                Cap::DmaPool { pages } => format!("DmaPool {{ pages: {pages} }}"),
                Cap::ProcessControl { pid } => format!("ProcessControl {{ pid: {pid} }}"),
                Cap::AuditRead => "AuditRead".into(),
                Cap::Log => "Log".into(),
                Cap::Report { index } => format!("Report {{ index: {index} }}"),
                Cap::Device { pci, part } => {
                    let part = match part {
                        DevicePart::Config { rights: r } => {
                            format!("Config {{ rights: {} }}", rights(r))
                        }
                        DevicePart::Bar { bar, rights: r } => {
                            format!("Bar {{ bar: {bar}, rights: {} }}", rights(r))
                        }
                        DevicePart::Irq { bit } => format!("Irq {{ bit: {bit} }}"),
                    };
                    format!(
                        "Device {{ pci: crate::manifest::PciMatch {{ vendor: {:#06x}, device: {:#06x}, alt_device: {:#06x}, index: {} }}, part: crate::manifest::DevicePart::{part} }}",
                        pci.vendor, pci.device, pci.alt_device, pci.index
                    )
                }
            };
            let _ = writeln!(
                out,
                "                crate::manifest::CapSpec::{text}, // slot {slot}"
            );
        }
        let _ = writeln!(out, "            ],");
        let _ = writeln!(out, "        }},");
    }
    let _ = writeln!(out, "    ],");
    let _ = writeln!(out, "    endpoints: {},", system.endpoints.len());
    let _ = writeln!(out, "    reports: &{:?},", system.reports);
    let _ = writeln!(out, "}}");
    out
}

#[cfg(test)]
mod tests;
