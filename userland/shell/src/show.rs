//! How the shell shows kernel records: pure formatting, tested on the host.

use brainix_abi::{CapInfo, CapType, DeviceInfo, MemoryInfo, ProcessInfo, ProcessState, rights};
use core::fmt;

use brainix_rt::process::Exit;
pub use brainix_rt::process::name;

fn state_name(state: u64) -> &'static str {
    use ProcessState::*;
    match state {
        s if s == Runnable as u64 => "runnable",
        s if s == Sending as u64 => "sending",
        s if s == Receiving as u64 => "receiving",
        s if s == AwaitingReply as u64 => "awaiting-reply",
        s if s == Stopped as u64 => "stopped",
        s if s == Dead as u64 => "dead",
        _ => "?",
    }
}

/// The `ps` header.
pub const PS_HEADER: &str = "PID NAME             STATE          PRIO PAGES     GEN LAST";

/// One `ps` row.
pub struct PsRow<'a>(pub &'a ProcessInfo);

impl fmt::Display for PsRow<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.0;
        let mut pages = brainix_rt::fmt::Buffer::<24>::new();
        let _ = fmt::Write::write_fmt(
            &mut pages,
            format_args!("{}/{}", p.pages_used, p.pages_budget),
        );
        write!(
            f,
            "{:<3} {:<16} {:<14} {:<4} {:<9} {:<3} {}",
            p.pid,
            name(p),
            state_name(p.state),
            p.priority,
            pages.as_str(),
            p.generation,
            Exit(p)
        )
    }
}

/// Rights bits by name, `|`-separated; `-` for none.
pub struct Rights(pub u64);

impl fmt::Display for Rights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(u64, &str); 6] = [
            (rights::SEND, "send"),
            (rights::RECEIVE, "receive"),
            (rights::REVOKE, "revoke"),
            (rights::CONTROL, "control"),
            (rights::READ, "read"),
            (rights::WRITE, "write"),
        ];
        // Built first, then padded, so that `{:<20}` lines columns up.
        let mut out = brainix_rt::fmt::Buffer::<64>::new();
        for (bit, name) in NAMES {
            if self.0 & bit != 0 {
                if !out.as_bytes().is_empty() {
                    out.push(b"|");
                }
                out.push(name.as_bytes());
            }
        }
        let unknown = self.0 & !NAMES.iter().fold(0, |a, (b, _)| a | b);
        if unknown != 0 {
            if !out.as_bytes().is_empty() {
                out.push(b"|");
            }
            let _ = fmt::Write::write_fmt(&mut out, format_args!("{unknown:#x}"));
        }
        f.pad(if out.as_bytes().is_empty() {
            "-"
        } else {
            out.as_str()
        })
    }
}

/// One `caps` row: slot, type, rights and what the type's fields mean.
pub struct CapRow<'a> {
    /// Slot number.
    pub slot: u64,
    /// The record.
    pub cap: &'a CapInfo,
}

impl fmt::Display for CapRow<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.cap;
        let kind = CapType::from_number(c.kind);
        write!(
            f,
            "slot {:<2} {:<15} {:<20}",
            self.slot,
            kind.map_or("?", CapType::name),
            Rights(c.rights)
        )?;
        match kind {
            Some(CapType::Endpoint) => write!(f, " endpoint {} badge {}", c.b, c.a)?,
            Some(CapType::IoPorts) => write!(f, " ports {:#x}+{}", c.a, c.b)?,
            Some(CapType::Irq) => write!(f, " line {} bit {}", c.a, c.b)?,
            Some(CapType::Mmio | CapType::DmaPool) => write!(f, " phys {:#x} pages {}", c.a, c.b)?,
            Some(CapType::ProcessControl) => write!(f, " pid {}", c.a)?,
            Some(CapType::PciFunction) => write!(f, " pci {}", Bdf(c.a))?,
            _ => {}
        }
        write!(f, " gen {}", c.generation)
    }
}

/// A PCI bus/device/function number as `bb:dd.f`.
pub struct Bdf(pub u64);

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}.{}",
            (b >> 8) & 0xff,
            (b >> 3) & 0x1f,
            b & 7
        )
    }
}

/// One `devices` row: where, what, its interrupt and memory BARs, and its server.
pub struct DeviceRow<'a> {
    /// The record.
    pub dev: &'a DeviceInfo,
    /// The name of the process bound to it, if any.
    pub holder: Option<&'a str>,
}

impl fmt::Display for DeviceRow<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.dev;
        write!(
            f,
            "{} {:04x}:{:04x} class {:06x}",
            Bdf(d.bdf),
            d.vendor,
            d.device,
            d.class >> 8
        )?;
        if d.irq_pin != 0 && d.irq_line < 16 {
            write!(f, " irq {}", d.irq_line)?;
        }
        for i in 0..6 {
            match d.bar_kind[i] {
                DeviceInfo::BAR_MEM32 | DeviceInfo::BAR_MEM64 => {
                    write!(f, " bar{i} {:#x}+{}K", d.bar_base[i], d.bar_size[i] / 1024)?
                }
                DeviceInfo::BAR_IO => {
                    write!(f, " bar{i} io {:#x}+{}", d.bar_base[i], d.bar_size[i])?
                }
                DeviceInfo::BAR_INVALID => write!(f, " bar{i} invalid")?,
                _ => {}
            }
        }
        match self.holder {
            Some(name) => write!(f, " -> {name}"),
            None => Ok(()),
        }
    }
}

/// The `mem` report.
pub struct Memory<'a>(pub &'a MemoryInfo);

impl fmt::Display for Memory<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        writeln!(
            f,
            "frames: {} free of {} ({} KiB free)",
            m.frames_free,
            m.frames_total,
            m.frames_free * 4
        )?;
        writeln!(f, "kernel page-table pages: {}", m.kernel_pt_pages)?;
        writeln!(f, "processes: {} of {}", m.processes, m.processes_capacity)?;
        write!(f, "endpoints: {} of {}", m.endpoints, m.endpoints_capacity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(name: &str, last_exit: u64) -> ProcessInfo {
        let mut info = ProcessInfo {
            pid: 3,
            generation: 2,
            state: ProcessState::Dead as u64,
            priority: 4,
            pages_used: 12,
            pages_budget: 48,
            last_exit,
            last_fault_addr: 0xffff_ffff_8010_0000,
            flags: 0,
            name_len: name.len() as u64,
            name: [0; 32],
        };
        info.name[..name.len()].copy_from_slice(name.as_bytes());
        info
    }

    #[test]
    fn ps_rows_show_exits_and_faults() {
        let row = PsRow(&process("kernel-read", 0x100 + 14)).to_string();
        assert_eq!(
            row,
            "3   kernel-read      dead           4    12/48     2   fault vector 14 at 0xffffffff80100000"
        );
        assert!(PsRow(&process("x", 0)).to_string().ends_with(" exit 0"));
        assert!(PsRow(&process("x", u64::MAX)).to_string().ends_with(" -"));
        let mut bad = process("x", 0);
        bad.name_len = 99;
        assert_eq!(name(&bad).len(), 32);
    }

    #[test]
    fn rights_and_caps_read_plainly() {
        assert_eq!(
            Rights(rights::SEND | rights::RECEIVE).to_string(),
            "send|receive"
        );
        assert_eq!(Rights(0).to_string(), "-");
        assert_eq!(Rights(1 << 40).to_string(), "0x10000000000");
        let cap = CapInfo {
            kind: CapType::IoPorts as u64,
            rights: rights::READ | rights::WRITE,
            a: 0x3f8,
            b: 8,
            generation: 1,
        };
        assert_eq!(
            CapRow { slot: 1, cap: &cap }.to_string(),
            "slot 1  io-ports        read|write           ports 0x3f8+8 gen 1"
        );
    }

    #[test]
    fn regions_and_irqs_show_where_they_are() {
        let mmio = CapInfo {
            kind: CapType::Mmio as u64,
            rights: rights::READ,
            a: 0xfed0_0000,
            b: 1,
            generation: 1,
        };
        assert!(
            CapRow {
                slot: 1,
                cap: &mmio
            }
            .to_string()
            .ends_with("read                 phys 0xfed00000 pages 1 gen 1")
        );
        let irq = CapInfo {
            kind: CapType::Irq as u64,
            rights: 0,
            a: 4,
            b: 0,
            generation: 1,
        };
        assert!(
            CapRow { slot: 2, cap: &irq }
                .to_string()
                .ends_with(" line 4 bit 0 gen 1")
        );
    }

    #[test]
    fn caps_without_detail_have_single_spaces() {
        let cap = CapInfo {
            kind: CapType::AuditRead as u64,
            rights: rights::READ,
            a: 0,
            b: 0,
            generation: 1,
        };
        assert_eq!(
            CapRow { slot: 2, cap: &cap }.to_string(),
            "slot 2  audit-read      read                 gen 1"
        );
    }

    #[test]
    fn memory_report() {
        let m = MemoryInfo {
            frames_total: 100,
            frames_free: 25,
            kernel_pt_pages: 8,
            processes: 4,
            processes_capacity: 16,
            endpoints: 3,
            endpoints_capacity: 64,
        };
        assert_eq!(
            Memory(&m).to_string(),
            "frames: 25 free of 100 (100 KiB free)\nkernel page-table pages: 8\nprocesses: 4 of 16\nendpoints: 3 of 64"
        );
    }

    #[test]
    fn device_rows_name_the_bound_server() {
        let mut d = DeviceInfo {
            bdf: 0x08,
            vendor: 0x1af4,
            device: 0x1001,
            class: 0x0100_0000,
            irq_line: 10,
            irq_pin: 1,
            holder: 4,
            ..DeviceInfo::default()
        };
        d.bar_kind[0] = DeviceInfo::BAR_IO;
        d.bar_base[0] = 0xc040;
        d.bar_size[0] = 64;
        d.bar_kind[4] = DeviceInfo::BAR_MEM64;
        d.bar_base[4] = 0xfe00_0000;
        d.bar_size[4] = 0x4000;
        assert_eq!(
            DeviceRow {
                dev: &d,
                holder: Some("blk")
            }
            .to_string(),
            "00:01.0 1af4:1001 class 010000 irq 10 bar0 io 0xc040+64 bar4 0xfe000000+16K -> blk"
        );
    }
}
