//! System manifests generated for a board: the system description (`system/<name>.toml`) plus
//! the devices the board profile names (`boards/<board>.toml`, its `[[device]]` list), so that a
//! board without a device gets no server for it.
//!
//! The description declares its devices as PCI functions (`[[device]]`) and binds each to one
//! server with `device-config`, `device-bar` and `device-irq` capabilities. For a board, each
//! described device is either
//!
//! - **on the board as a PCI model** (`virtio-blk-pci`, ...): kept as written; the kernel finds
//!   it at boot;
//! - **on the board as a virtio-mmio model** (`virtio-blk-mmio`, ... on `microvm`): its server
//!   gets the transport's page as an `mmio` region instead of `device-config`, the transport's
//!   line as an `irq` instead of `device-irq`, and no BAR (the `device-bar` capabilities must
//!   come last in its list);
//! - **not on the board**: its server is left out, with every process-control capability that
//!   names it, and the endpoints it received on are marked `server_absent` (callers get
//!   `peer-dead`).
//!
//! Where virtio-mmio devices sit is QEMU's microvm layout: with its second I/O APIC (the
//! default), 24 transports of 0x200 bytes from 0xfeb00000, transport `n` on GSI `24 + n`, and
//! the `k`-th `-device` on the command line in transport `23 - k`. The board lists its
//! virtio-mmio devices in command-line order.

use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use toml::{Table, Value};

/// One `[[device]]` of a board profile (the fields this generator reads).
#[derive(Clone, Debug, Deserialize)]
pub struct BoardDevice {
    /// Device name; the system description's `[[device]]` name.
    pub name: String,
    /// What it is.
    pub model: String,
}

#[derive(Deserialize)]
struct Profile {
    name: String,
    #[serde(default)]
    qemu: Option<Qemu>,
    #[serde(default, rename = "device")]
    devices: Vec<BoardDevice>,
}

#[derive(Deserialize)]
struct Qemu {
    machine: String,
}

/// The parts of a board profile generation needs.
#[derive(Clone, Debug)]
pub struct Board {
    /// Board name.
    pub name: String,
    /// QEMU machine type, for QEMU boards.
    pub machine: Option<String>,
    /// Its devices, in command-line order.
    pub devices: Vec<BoardDevice>,
}

impl Board {
    /// Reads the fields generation needs from a board profile; lab-runner checks the rest.
    pub fn parse(src: &str) -> Result<Board, String> {
        let p: Profile = toml::from_str(src).map_err(|e| format!("not a board profile: {e}"))?;
        Ok(Board {
            name: p.name,
            machine: p.qemu.map(|q| q.machine),
            devices: p.devices,
        })
    }
}

/// How a board model is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    /// A PCI function with these ids (device, alternative device).
    Pci(u16, u16, u16),
    /// A virtio-mmio transport.
    Mmio,
}

fn model(name: &str) -> Option<Transport> {
    Some(match name {
        "virtio-blk-pci" => Transport::Pci(0x1af4, 0x1042, 0x1001),
        "virtio-rng-pci" => Transport::Pci(0x1af4, 0x1044, 0x1005),
        "virtio-net-pci" => Transport::Pci(0x1af4, 0x1041, 0x1000),
        "virtio-blk-mmio" | "virtio-rng-mmio" | "virtio-net-mmio" => Transport::Mmio,
        _ => return None,
    })
}

/// microvm's virtio-mmio transports (with its second I/O APIC).
const MMIO_BASE: i64 = 0xfeb0_0000;
const MMIO_STRIDE: i64 = 0x200;
const MMIO_TRANSPORTS: i64 = 24;
const MMIO_GSI_BASE: i64 = 24;

/// The generated manifest text for `board`, from the description `src`.
pub fn generate(src: &str, board: &Board) -> Result<String, String> {
    let mut doc: Table = toml::from_str(src).map_err(|e| format!("the description: {e}"))?;
    let described: Vec<String> = array(&doc, "device")
        .iter()
        .filter_map(|d| d.get("name")?.as_str().map(String::from))
        .collect();
    let on_board: BTreeMap<&str, Transport> = board
        .devices
        .iter()
        .filter_map(|d| Some((d.name.as_str(), model(&d.model)?)))
        .collect();
    // The k-th virtio-mmio device of the board.
    let mmio_index: BTreeMap<&str, i64> = board
        .devices
        .iter()
        .filter(|d| model(&d.model) == Some(Transport::Mmio))
        .enumerate()
        .map(|(k, d)| (d.name.as_str(), k as i64))
        .collect();
    if !mmio_index.is_empty() && board.machine.as_deref() != Some("microvm") {
        return Err(format!(
            "board {:?} names virtio-mmio devices but is not a QEMU microvm; expected the PCI models there",
            board.name
        ));
    }
    if mmio_index.len() as i64 > MMIO_TRANSPORTS {
        return Err("more virtio-mmio devices than microvm has transports".into());
    }

    let mut absent_servers = BTreeSet::new();
    let mut devices_kept = Vec::new();
    for d in array(&doc, "device") {
        let name = d.get("name").and_then(Value::as_str).unwrap_or_default();
        match on_board.get(name) {
            Some(Transport::Pci(vendor, device, alt)) => {
                let mut d = d.clone();
                d.insert("vendor".into(), Value::Integer(i64::from(*vendor)));
                d.insert("device".into(), Value::Integer(i64::from(*device)));
                d.insert("alt_device".into(), Value::Integer(i64::from(*alt)));
                devices_kept.push(Value::Table(d));
            }
            Some(Transport::Mmio) => {}
            None => {}
        }
    }
    // Each process: rewrite, keep, or leave out.
    let mut processes = Vec::new();
    for p in array(&doc, "process") {
        let pname = p
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let caps = p
            .get("caps")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let drives: BTreeSet<String> = caps
            .iter()
            .filter_map(|c| c.get("device")?.as_str().map(String::from))
            .collect();
        if let Some(missing) = drives.iter().find(|d| !on_board.contains_key(d.as_str())) {
            if !described.contains(missing) {
                return Err(format!(
                    "process {pname:?} names device {missing:?}, which the description does not declare"
                ));
            }
            absent_servers.insert(pname);
            continue;
        }
        let mut p = p.clone();
        let mut new_caps = Vec::new();
        let mut bars_from = None;
        for (slot, c) in caps.iter().enumerate() {
            let Some(dev) = c.get("device").and_then(Value::as_str) else {
                if bars_from.is_some() {
                    return Err(format!(
                        "process {pname:?}: slot {slot} follows a device-bar of a virtio-mmio device; expected the BARs last"
                    ));
                }
                new_caps.push(c.clone());
                continue;
            };
            let Some(&k) = mmio_index.get(dev) else {
                new_caps.push(c.clone());
                continue;
            };
            let transport = MMIO_TRANSPORTS - 1 - k;
            let kind = c.get("type").and_then(Value::as_str).unwrap_or_default();
            let mut t = Table::new();
            match kind {
                "device-config" => {
                    let at = MMIO_BASE + transport * MMIO_STRIDE;
                    t.insert("type".into(), "mmio".into());
                    t.insert("base".into(), Value::Integer(at & !0xfff));
                    t.insert("pages".into(), Value::Integer(1));
                    t.insert(
                        "rights".into(),
                        c.get("rights").cloned().unwrap_or(Value::Array(vec![])),
                    );
                }
                "device-irq" => {
                    t.insert("type".into(), "irq".into());
                    t.insert("line".into(), Value::Integer(MMIO_GSI_BASE + transport));
                    t.insert(
                        "bit".into(),
                        c.get("bit").cloned().unwrap_or(Value::Integer(0)),
                    );
                }
                _ => {
                    bars_from.get_or_insert(slot);
                    continue;
                }
            }
            new_caps.push(Value::Table(t));
        }
        p.insert("caps".into(), Value::Array(new_caps));
        processes.push(p);
    }
    // Nobody controls, or is served by, a server that is not there.
    for p in processes.iter_mut() {
        if let Some(Value::Array(caps)) = p.get_mut("caps") {
            caps.retain(|c| {
                let controls = c.get("type").and_then(Value::as_str) == Some("process-control");
                let target = c.get("process").and_then(Value::as_str).unwrap_or_default();
                !(controls && absent_servers.contains(target))
            });
        }
    }
    let mut endpoints = array(&doc, "endpoint");
    for e in endpoints.iter_mut() {
        let name = e.get("name").and_then(Value::as_str).unwrap_or_default();
        let served_by_absent = array(&doc, "process").iter().any(|p| {
            let pname = p.get("name").and_then(Value::as_str).unwrap_or_default();
            absent_servers.contains(pname)
                && p.get("caps").and_then(Value::as_array).is_some_and(|caps| {
                    caps.iter().any(|c| {
                        c.get("endpoint").and_then(Value::as_str) == Some(name)
                            && c.get("rights")
                                .and_then(Value::as_array)
                                .is_some_and(|r| r.iter().any(|r| r.as_str() == Some("receive")))
                    })
                })
        });
        if served_by_absent {
            e.insert("server_absent".into(), Value::Boolean(true));
        }
    }
    let name = doc
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("system")
        .to_string();
    doc.insert("name".into(), format!("{name}@{}", board.name).into());
    doc.insert("endpoint".into(), tables(endpoints));
    doc.insert("process".into(), tables(processes));
    if devices_kept.is_empty() {
        doc.remove("device");
    } else {
        doc.insert("device".into(), Value::Array(devices_kept));
    }
    let body = toml::to_string(&doc).map_err(|e| format!("writing the generated system: {e}"))?;
    Ok(format!(
        "# Generated by `cargo xtask` from the system description and board {:?}. Do not edit.\n{body}",
        board.name
    ))
}

fn array(doc: &Table, key: &str) -> Vec<Table> {
    doc.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_table().cloned()).collect())
        .unwrap_or_default()
}

fn tables(v: Vec<Table>) -> Value {
    Value::Array(v.into_iter().map(Value::Table).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Cap, check};
    use brainix_kernel::manifest::DevicePart;
    use std::path::Path;

    fn board(machine: &str, devices: &[(&str, &str)]) -> Board {
        Board {
            name: format!("test-{machine}"),
            machine: Some(machine.into()),
            devices: devices
                .iter()
                .map(|(n, m)| BoardDevice {
                    name: n.to_string(),
                    model: m.to_string(),
                })
                .collect(),
        }
    }

    fn default_system() -> String {
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../system/default.toml"),
        )
        .unwrap()
    }

    fn generated(b: &Board) -> crate::manifest::System {
        let text = generate(&default_system(), b).unwrap();
        check(Path::new("generated.toml"), &text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    #[test]
    fn a_board_without_a_device_gets_no_server_for_it() {
        let s = generated(&board("q35", &[("blk0", "virtio-blk-pci")]));
        let names: Vec<&str> = s.processes.iter().map(|p| p.name.as_str()).collect();
        assert!(names.contains(&"blk") && names.contains(&"fs"), "{names:?}");
        assert!(
            !names.contains(&"rng") && !names.contains(&"net"),
            "{names:?}"
        );
        // Nobody controls a process that is not there.
        let init = &s.processes[0];
        assert_eq!(
            init.caps
                .iter()
                .filter(|c| matches!(c, Cap::ProcessControl { .. }))
                .count(),
            s.processes.len() - 1
        );
        // The shell still holds the entropy endpoint; nobody receives there.
        assert!(s.endpoints.iter().any(|e| e == "entropy"));
    }

    #[test]
    fn a_virtio_mmio_device_becomes_its_transport_page_and_line() {
        let s = generated(&board("microvm", &[("blk0", "virtio-blk-mmio")]));
        let blk = s.processes.iter().find(|p| p.name == "blk").unwrap();
        // The first -device is transport 23: 0xfeb02e00, GSI 47; no BAR.
        assert_eq!(
            blk.caps[4..],
            [
                Cap::Irq { line: 47, bit: 0 },
                Cap::Mmio {
                    base: 0xfeb0_2000,
                    pages: 1,
                    rights: brainix_abi::rights::READ | brainix_abi::rights::WRITE
                },
            ]
        );
        assert!(!blk.caps.iter().any(|c| matches!(c, Cap::Device { .. })));
        // A PCI model keeps the description's binding.
        let s = generated(&board("q35", &[("rng0", "virtio-rng-pci")]));
        let rng = s.processes.iter().find(|p| p.name == "rng").unwrap();
        assert!(matches!(
            rng.caps[6],
            Cap::Device {
                part: DevicePart::Bar { bar: 4, .. },
                ..
            }
        ));
    }

    #[test]
    fn mmio_models_only_on_microvm() {
        let e = generate(
            &default_system(),
            &board("q35", &[("blk0", "virtio-blk-mmio")]),
        )
        .unwrap_err();
        assert!(e.contains("not a QEMU microvm"), "{e}");
    }
}
