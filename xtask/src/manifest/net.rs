//! The network part of a manifest: socket grants, the interface, and the configuration block
//! they are written into ([`brainix_proto::config`]).
//!
//! ```toml
//! [[process]]
//! name = "ip"
//! interface = { address = "10.0.2.15/24", gateway = "10.0.2.2" }
//!
//! [[process]]
//! name = "tcp-echo"
//! caps = [
//!   # A capability to the transport server's endpoint whose badge names this grant.
//!   { type = "socket", endpoint = "transport", protocol = "tcp", local_ports = "7",
//!     remote = "10.0.2.0/24", remote_ports = "1024-65535" },
//! ]
//! ```
//!
//! Each socket capability becomes a `send` capability to its endpoint with the badge of grant
//! `n` ([`brainix_proto::transport::grant_badge`]), and grant `n` goes into the configuration
//! of the endpoint's receiver, which enforces it. An explicit `badge` on an endpoint that serves
//! sockets is refused, so no other capability can carry a grant's badge.

use super::{Checker, Process};
use brainix_proto::config::{self, Record};
use brainix_proto::ip;
use brainix_proto::transport::{Grant, PortRange, Protocol};
use serde::Deserialize;
use toml::Spanned;

/// `interface = { ... }` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InterfaceToml {
    address: Spanned<String>,
    gateway: Spanned<String>,
}

/// The fields of a socket capability as written.
pub(super) struct SocketToml<'a> {
    pub protocol: &'a Spanned<String>,
    pub local_ports: &'a Spanned<String>,
    pub remote: &'a Spanned<String>,
    pub remote_ports: &'a Spanned<String>,
}

fn parse_address(text: &str) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut parts = text.split('.');
    for byte in &mut out {
        let p = parts.next()?;
        // Digits only, no sign and no leading zero: "010" is octal to some readers.
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if p.len() > 1 && p.starts_with('0') {
            return None;
        }
        *byte = p.parse().ok()?;
    }
    parts.next().is_none().then_some(out)
}

fn network(text: &str) -> Option<([u8; 4], u8)> {
    let (addr, prefix) = text.split_once('/')?;
    let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32)?;
    Some((parse_address(addr)?, prefix))
}

fn mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn ports(text: &str) -> Option<PortRange> {
    let (first, last) = text.split_once('-').unwrap_or((text, text));
    let number = |t: &str| -> Option<u16> {
        let t = t.trim();
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    let r = PortRange {
        first: number(first)?,
        last: number(last)?,
    };
    (r.first >= 1 && r.first <= r.last).then_some(r)
}

/// The interface a process is given, checked: an address with its prefix, and a gateway on
/// that network.
pub(super) fn interface(
    c: &mut Checker<'_>,
    pname: &str,
    t: &Spanned<InterfaceToml>,
) -> Option<ip::Config> {
    let t = t.get_ref();
    let Some((address, prefix)) = network(t.address.get_ref()) else {
        c.error(
            &t.address,
            format!(
                "process {pname:?}: interface address {:?} is not an IPv4 address with its prefix; expected e.g. \"10.0.2.15/24\"",
                t.address.get_ref()
            ),
        );
        return None;
    };
    let Some(gateway) = parse_address(t.gateway.get_ref()) else {
        c.error(
            &t.gateway,
            format!(
                "process {pname:?}: gateway {:?} is not an IPv4 address; expected e.g. \"10.0.2.2\"",
                t.gateway.get_ref()
            ),
        );
        return None;
    };
    let m = mask(prefix);
    let (a, g) = (u32::from_be_bytes(address), u32::from_be_bytes(gateway));
    let host = a & !m;
    if prefix < 31 && (host == 0 || host == !m) {
        c.error(
            &t.address,
            format!("process {pname:?}: {:?} is the network's own or broadcast address; expected a host address", t.address.get_ref()),
        );
        return None;
    }
    if g & m != a & m || g == a {
        c.error(
            &t.gateway,
            format!(
                "process {pname:?}: gateway {:?} is not another host on {:?}; expected a neighbour the interface can reach",
                t.gateway.get_ref(),
                t.address.get_ref()
            ),
        );
        return None;
    }
    Some(ip::Config {
        address,
        prefix,
        gateway,
    })
}

/// The grant one socket capability asks for, checked.
pub(super) fn grant(c: &mut Checker<'_>, pname: &str, t: SocketToml<'_>) -> Option<Grant> {
    let protocol = match t.protocol.get_ref().as_str() {
        "udp" => Some(Protocol::Udp),
        "tcp" => Some(Protocol::Tcp),
        other => {
            c.error(
                t.protocol,
                format!("process {pname:?}: protocol {other:?} is not one a socket has; expected \"udp\" or \"tcp\""),
            );
            None
        }
    };
    let range = |c: &mut Checker<'_>, field: &str, v: &Spanned<String>| {
        let r = ports(v.get_ref());
        if r.is_none() {
            c.error(
                v,
                format!(
                    "process {pname:?}: {field} {:?} is not a port range; expected \"7\" or \"1024-65535\" (1 to 65535, first not past last)",
                    v.get_ref()
                ),
            );
        }
        r
    };
    let local_ports = range(c, "local_ports", t.local_ports);
    let remote_ports = range(c, "remote_ports", t.remote_ports);
    let remote = network(t.remote.get_ref());
    if remote.is_none() {
        c.error(
            t.remote,
            format!(
                "process {pname:?}: remote {:?} is not an IPv4 network; expected e.g. \"10.0.2.0/24\" (\"0.0.0.0/0\" for anywhere)",
                t.remote.get_ref()
            ),
        );
    }
    let (remote, prefix) = remote?;
    if u32::from_be_bytes(remote) & !mask(prefix) != 0 {
        c.error(
            t.remote,
            format!(
                "process {pname:?}: remote {:?} has host bits set past its prefix; expected the network's own address",
                t.remote.get_ref()
            ),
        );
        return None;
    }
    Some(Grant {
        protocol: protocol?,
        local_ports: local_ports?,
        remote,
        prefix,
        remote_ports: remote_ports?,
    })
}

/// The image `process` runs, with its configuration written into the program's block: `None`
/// when the process has no configuration (it runs the program as built).
pub fn configure(process: &Process, program: &[u8]) -> Result<Option<Vec<u8>>, String> {
    if process.config.is_empty() {
        return Ok(None);
    }
    let mut records = Vec::new();
    for r in &process.config {
        config::encode(r, &mut records);
    }
    let hits: Vec<usize> = program
        .windows(config::MAGIC.len())
        .enumerate()
        .filter(|(_, w)| *w == config::MAGIC)
        .map(|(i, _)| i)
        .collect();
    let at = match hits.as_slice() {
        [at] => *at,
        [] => {
            return Err(format!(
                "process {:?} is given {} but program {:?} has no configuration block; expected a program that reads brainix_proto::config",
                process.name,
                what(&process.config),
                process.bin
            ));
        }
        _ => {
            return Err(format!(
                "program {:?} has {} configuration blocks; expected exactly one",
                process.bin,
                hits.len()
            ));
        }
    };
    let mut image = program.to_vec();
    let block = image.get_mut(at..at + config::BLOCK).ok_or_else(|| {
        format!(
            "program {:?}: its configuration block is cut short",
            process.bin
        )
    })?;
    config::fill(block, &records).map_err(|need| {
        format!(
            "process {:?}: its configuration ({}) takes {need} bytes; expected at most {}",
            process.name,
            what(&process.config),
            config::BLOCK - config::HEADER
        )
    })?;
    Ok(Some(image))
}

fn what(records: &[Record]) -> String {
    let grants = records
        .iter()
        .filter(|r| matches!(r, Record::Grant { .. }))
        .count();
    let interface = records.len() - grants;
    match (interface, grants) {
        (0, n) => format!("{n} socket grant(s)"),
        (_, 0) => "an interface".into(),
        (_, n) => format!("an interface and {n} socket grant(s)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_networks_and_port_ranges_parse_strictly() {
        assert_eq!(parse_address("10.0.2.15"), Some([10, 0, 2, 15]));
        for bad in [
            "10.0.2",
            "10.0.2.15.1",
            "256.0.0.1",
            "10.0.02.1",
            "-1.0.0.0",
            "a.b.c.d",
            "",
        ] {
            assert_eq!(parse_address(bad), None, "{bad}");
        }
        assert_eq!(network("0.0.0.0/0"), Some(([0; 4], 0)));
        assert_eq!(network("10.0.2.0/33"), None);
        assert_eq!(network("10.0.2.0"), None);
        assert_eq!(ports("7"), Some(PortRange { first: 7, last: 7 }));
        assert_eq!(
            ports("1024-65535"),
            Some(PortRange {
                first: 1024,
                last: 65535
            })
        );
        for bad in ["0", "9-7", "65536", "1-", "x", "-5", "1-2-3", ""] {
            assert_eq!(ports(bad), None, "{bad}");
        }
    }
}
