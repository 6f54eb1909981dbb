//! The auditor's checks on itself: it holds only observation, and every action is refused.

use brainix_abi::{CapType, Error, Handle};
use brainix_rt::fmt::Buffer;
use brainix_rt::{AuditRead, Endpoint, IoPorts, ProcessControl, Region};
use core::fmt::Write;

/// Capability types that only observe or talk: anything else would let the auditor act.
pub fn observe_only_type(kind: u64) -> bool {
    [
        CapType::Endpoint,
        CapType::AuditRead,
        CapType::Report,
        CapType::Log,
    ]
    .iter()
    .any(|&t| t as u64 == kind)
}

/// `audit.capabilities`: every slot of its own table is as the manifest gave it, and each
/// capability only observes (endpoints: its own receive-only one, and sends).
pub fn observe_only<const N: usize>(audit: AuditRead, pid: u64, out: &mut Buffer<N>) -> bool {
    let mut held = 0;
    for slot in 0..brainix_abi::CAP_SLOTS as u64 {
        let (live, manifest) = match (audit.cap(pid, slot), audit.manifest_cap(pid, slot)) {
            (Ok(l), Ok(m)) => (l, m),
            (Err(e), _) | (_, Err(e)) => {
                let _ = write!(out, "audit of own slot {slot} refused: {}", e.name());
                return false;
            }
        };
        if brainix_observe::compare(&live, &manifest) != brainix_observe::Finding::Same {
            let _ = write!(out, "slot {slot} differs from the manifest");
            return false;
        }
        if live.kind == 0 {
            continue;
        }
        held += 1;
        let name = CapType::from_number(live.kind).map_or("?", CapType::name);
        if !observe_only_type(live.kind) {
            let _ = write!(out, "slot {slot} is {name}: authority to act");
            return false;
        }
        let is_endpoint = live.kind == CapType::Endpoint as u64;
        let revoke = brainix_abi::rights::REVOKE;
        if is_endpoint && live.rights & revoke != 0 {
            let _ = write!(out, "slot {slot}: endpoint with the revoke right");
            return false;
        }
    }
    let _ = write!(
        out,
        "{held} capabilities as the manifest gave them, all observe-only"
    );
    true
}

/// `audit.forbidden-refused`: each action an auditor must not have is tried and must be refused
/// with exactly the expected error.
pub fn forbidden<const N: usize>(
    endpoint: Endpoint,
    audit: AuditRead,
    out: &mut Buffer<N>,
) -> bool {
    // A slot the manifest never fills for the auditor.
    let nothing = Handle::new(30, 1);
    let tries: [(&str, Result<(), Error>, Error); 6] = [
        (
            "stop a process",
            ProcessControl(audit.0).stop(),
            Error::WrongType,
        ),
        (
            "restart a process",
            ProcessControl(nothing).restart(),
            Error::BadHandle,
        ),
        (
            "write a port",
            IoPorts(audit.0).outb(0x80, 0),
            Error::WrongType,
        ),
        (
            "map a device",
            Region(audit.0).info().map(drop),
            Error::WrongType,
        ),
        (
            "revoke its endpoint",
            endpoint.revoke(),
            Error::MissingRight,
        ),
        (
            "call the supervisor",
            Endpoint(nothing).call(
                &brainix_abi::Message::new(brainix_proto::supervisor::KILL),
                &[],
                &mut brainix_abi::Message::new(0),
            ),
            Error::BadHandle,
        ),
    ];
    for (what, got, want) in tries {
        if got != Err(want) {
            let _ = match got {
                Ok(()) => write!(out, "{what}: NOT refused"),
                Err(e) => write!(
                    out,
                    "{what}: {} where {} was expected",
                    e.name(),
                    want.name()
                ),
            };
            return false;
        }
    }
    let _ = write!(
        out,
        "stop, restart, port, device, revoke and supervisor call all refused"
    );
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_observing_types_pass() {
        for t in [
            CapType::Endpoint,
            CapType::AuditRead,
            CapType::Report,
            CapType::Log,
        ] {
            assert!(observe_only_type(t as u64), "{t:?}");
        }
        for t in [
            CapType::ProcessControl,
            CapType::IoPorts,
            CapType::Irq,
            CapType::Mmio,
            CapType::DmaPool,
        ] {
            assert!(!observe_only_type(t as u64), "{t:?}");
        }
    }
}
