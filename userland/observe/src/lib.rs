//! Invariant checks of the running system, made from an audit-read capability, for the auditor
//! and the shell's fuzz verdict:
//!
//! - **INV-AUTH, frozen capabilities**: every process's live capability table is its manifest
//!   entry minus what it dropped. A slot that holds something the manifest did not give, or
//!   something different, is a violation ([`compare`]).
//! - **INV-MEM, W^X and KPTI**: every live process's page tables, walked by the kernel
//!   ([`brainix_abi::Syscall::AuditTables`]), are clean.
//!
//! The comparison is pure and tested on the host; the walks go through `brainix-rt`.
#![no_std]
#![deny(missing_docs)]

use brainix_abi::{CAP_SLOTS, CapInfo, CapType, Error};
use brainix_rt::AuditRead;

/// How a live slot compares with the manifest's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finding {
    /// As launched (or empty in both).
    Same,
    /// The process dropped it (allowed: authority only ever shrinks).
    Dropped,
    /// The slot holds a capability the manifest never gave.
    Added,
    /// The slot holds something other than the manifest's capability.
    Changed,
}

/// Compares one live slot with the manifest's. The generation is not compared (it moves on
/// with drops and restarts), nor a DMA pool's physical address (the kernel picks it at launch).
pub fn compare(live: &CapInfo, manifest: &CapInfo) -> Finding {
    match (live.kind, manifest.kind) {
        (0, 0) => Finding::Same,
        (0, _) => Finding::Dropped,
        (_, 0) => Finding::Added,
        (l, m) if l != m => Finding::Changed,
        _ => {
            let address_fixed = live.kind != CapType::DmaPool as u64;
            let same = live.rights == manifest.rights
                && live.b == manifest.b
                && (!address_fixed || live.a == manifest.a);
            if same {
                Finding::Same
            } else {
                Finding::Changed
            }
        }
    }
}

/// What the capability walk saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapsSummary {
    /// Processes walked.
    pub processes: u64,
    /// Capabilities held, in all of them.
    pub held: u64,
    /// Capabilities dropped since launch.
    pub dropped: u64,
    /// Processes never launched (waiting to be started): their tables are empty until launch.
    pub not_launched: u64,
}

/// The first slot that broke the rule, or a call the kernel refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapsViolation {
    /// `pid`'s `slot` was [`Finding::Added`] or [`Finding::Changed`].
    Slot {
        /// Process.
        pid: u64,
        /// Slot.
        slot: u64,
        /// What was found.
        finding: Finding,
    },
    /// An audit call failed.
    Audit(Error),
}

/// Walks every launched process's capability table against the manifest (a process never
/// launched has an empty table, which says nothing).
pub fn check_caps(audit: AuditRead) -> Result<CapsSummary, CapsViolation> {
    let mut sum = CapsSummary::default();
    for pid in 0.. {
        match audit.process(pid) {
            Ok(info) if info.generation == 0 => {
                sum.not_launched += 1;
                continue;
            }
            Ok(_) => {}
            Err(Error::OutOfRange) => break,
            Err(e) => return Err(CapsViolation::Audit(e)),
        }
        sum.processes += 1;
        for slot in 0..CAP_SLOTS as u64 {
            let live = audit.cap(pid, slot).map_err(CapsViolation::Audit)?;
            let manifest = audit
                .manifest_cap(pid, slot)
                .map_err(CapsViolation::Audit)?;
            match compare(&live, &manifest) {
                Finding::Same => sum.held += u64::from(live.kind != 0),
                Finding::Dropped => sum.dropped += 1,
                finding => return Err(CapsViolation::Slot { pid, slot, finding }),
            }
        }
    }
    Ok(sum)
}

/// What the page-table walk saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TablesSummary {
    /// Processes whose tables were walked.
    pub walked: u64,
    /// Pages mapped in them.
    pub pages: u64,
    /// Processes without an address space (never started, or dead).
    pub not_running: u64,
}

/// The first process whose tables broke the rule, or a call the kernel refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TablesViolation {
    /// `pid`'s tables: a [`brainix_abi::table_audit`] code and the address.
    Mapping {
        /// Process.
        pid: u64,
        /// What is wrong.
        code: u64,
        /// Where.
        addr: u64,
    },
    /// An audit call failed.
    Audit(Error),
}

/// Walks every live process's page tables; `each` sees every process's outcome (pages mapped,
/// or `None` when it has no address space) before the walk goes on.
pub fn check_tables(
    audit: AuditRead,
    mut each: impl FnMut(u64, Option<u64>),
) -> Result<TablesSummary, TablesViolation> {
    let mut sum = TablesSummary::default();
    for pid in 0.. {
        match audit.tables(pid) {
            Ok(Ok(pages)) => {
                sum.walked += 1;
                sum.pages += pages;
                each(pid, Some(pages));
            }
            Ok(Err((code, addr))) => return Err(TablesViolation::Mapping { pid, code, addr }),
            Err(Error::PeerDead) => {
                sum.not_running += 1;
                each(pid, None);
            }
            Err(Error::OutOfRange) => break,
            Err(e) => return Err(TablesViolation::Audit(e)),
        }
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(kind: CapType, rights: u64, a: u64, b: u64) -> CapInfo {
        CapInfo {
            kind: kind as u64,
            rights,
            a,
            b,
            generation: 3,
        }
    }

    #[test]
    fn a_table_may_only_lose_what_the_manifest_gave() {
        let ep = cap(CapType::Endpoint, 1, 7, 2);
        let none = CapInfo::default();
        assert_eq!(compare(&ep, &ep), Finding::Same);
        assert_eq!(compare(&none, &none), Finding::Same);
        assert_eq!(compare(&none, &ep), Finding::Dropped);
        assert_eq!(compare(&ep, &none), Finding::Added);
        assert_eq!(
            compare(&cap(CapType::Endpoint, 3, 7, 2), &ep),
            Finding::Changed,
            "a right more"
        );
        assert_eq!(
            compare(&cap(CapType::Endpoint, 1, 8, 2), &ep),
            Finding::Changed,
            "another badge"
        );
        assert_eq!(
            compare(&cap(CapType::Endpoint, 1, 7, 3), &ep),
            Finding::Changed,
            "another endpoint"
        );
        assert_eq!(
            compare(&cap(CapType::Log, 1, 7, 2), &ep),
            Finding::Changed,
            "another type"
        );
        // A DMA pool's address is the kernel's choice at launch; its size is the manifest's.
        let pool = cap(CapType::DmaPool, 0x30, 0, 4);
        assert_eq!(
            compare(&cap(CapType::DmaPool, 0x30, 0x2b_1000, 4), &pool),
            Finding::Same
        );
        assert_eq!(
            compare(&cap(CapType::DmaPool, 0x30, 0x2b_1000, 8), &pool),
            Finding::Changed
        );
        // An MMIO region's address is the manifest's.
        let mmio = cap(CapType::Mmio, 0x10, 0xfed0_0000, 1);
        assert_eq!(
            compare(&cap(CapType::Mmio, 0x10, 0x10_0000, 1), &mmio),
            Finding::Changed
        );
    }
}
