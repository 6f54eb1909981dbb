//! The supervisor's bookkeeping: whom it supervises and what it already did about each death.
//! Pure, tested on the host; `C` is the process-control capability (a unit in the tests).

use brainix_abi::{ProcessInfo, ProcessState};
use brainix_proto::supervisor::MAX_RESTARTS;

/// Most processes supervised: as many as the kernel's process table holds.
pub const MAX_SUPERVISED: usize = brainix_abi::MAX_PROCESSES;

/// What to do about a process after auditing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Alive, stopped, or a death already handled.
    Nothing,
    /// A new death of a process that is not restartable: report it.
    Report,
    /// A new death of a restartable process: report it and restart it.
    Restart,
    /// A new death of a restartable process that used up its restarts: report, leave it dead.
    GiveUp,
}

#[derive(Clone, Copy)]
struct Entry<C> {
    pid: u64,
    control: C,
    /// The generation whose death was last handled (0: none yet; generations start at 1).
    handled: u64,
    restarts: u32,
}

/// The supervised processes.
pub struct Table<C> {
    entries: [Option<Entry<C>>; MAX_SUPERVISED],
    len: usize,
}

impl<C: Copy> Table<C> {
    /// Nobody supervised yet.
    pub const fn new() -> Table<C> {
        Table {
            entries: [None; MAX_SUPERVISED],
            len: 0,
        }
    }

    /// Supervises `pid` through `control`; `false` when the table is full.
    pub fn add(&mut self, pid: u64, control: C) -> bool {
        let Some(slot) = self.entries.get_mut(self.len) else {
            return false;
        };
        *slot = Some(Entry {
            pid,
            control,
            handled: 0,
            restarts: 0,
        });
        self.len += 1;
        true
    }

    /// How many processes are supervised.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Entry `i`: pid and control.
    pub fn get(&self, i: usize) -> Option<(u64, C)> {
        self.entries.get(i)?.map(|e| (e.pid, e.control))
    }

    /// Every entry: pid and control.
    pub fn iter(&self) -> impl Iterator<Item = (u64, C)> + '_ {
        self.entries.iter().flatten().map(|e| (e.pid, e.control))
    }

    /// The control capability for `pid`, if supervised.
    pub fn control(&self, pid: u64) -> Option<C> {
        self.iter().find(|&(p, _)| p == pid).map(|(_, c)| c)
    }

    /// Decides what to do about entry `i`, given its audit record, and remembers the decision.
    pub fn observe(&mut self, i: usize, info: &ProcessInfo) -> Action {
        let Some(Some(entry)) = self.entries.get_mut(i) else {
            return Action::Nothing;
        };
        if info.state != ProcessState::Dead as u64 || info.generation == entry.handled {
            return Action::Nothing;
        }
        entry.handled = info.generation;
        if info.flags & ProcessInfo::RESTARTABLE == 0 {
            Action::Report
        } else if entry.restarts < MAX_RESTARTS {
            entry.restarts += 1;
            Action::Restart
        } else {
            Action::GiveUp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(state: ProcessState, generation: u64, restartable: bool) -> ProcessInfo {
        ProcessInfo {
            pid: 2,
            generation,
            state: state as u64,
            priority: 3,
            pages_used: 0,
            pages_budget: 0,
            last_exit: 0x10e,
            last_fault_addr: 0,
            flags: if restartable {
                ProcessInfo::RESTARTABLE
            } else {
                0
            },
            name_len: 0,
            name: [0; 32],
        }
    }

    #[test]
    fn each_death_is_handled_once() {
        let mut t = Table::new();
        assert!(t.add(2, ()));
        assert_eq!(
            t.observe(0, &info(ProcessState::Runnable, 1, false)),
            Action::Nothing
        );
        assert_eq!(
            t.observe(0, &info(ProcessState::Dead, 1, false)),
            Action::Report
        );
        assert_eq!(
            t.observe(0, &info(ProcessState::Dead, 1, false)),
            Action::Nothing
        );
        assert_eq!(
            t.observe(0, &info(ProcessState::Stopped, 2, false)),
            Action::Nothing
        );
        assert_eq!(
            t.observe(0, &info(ProcessState::Dead, 2, false)),
            Action::Report
        );
    }

    #[test]
    fn restarts_are_bounded() {
        let mut t = Table::new();
        t.add(5, ());
        for generation in 1..=u64::from(MAX_RESTARTS) {
            assert_eq!(
                t.observe(0, &info(ProcessState::Dead, generation, true)),
                Action::Restart
            );
        }
        let last = u64::from(MAX_RESTARTS) + 1;
        assert_eq!(
            t.observe(0, &info(ProcessState::Dead, last, true)),
            Action::GiveUp
        );
        assert_eq!(
            t.observe(0, &info(ProcessState::Dead, last, true)),
            Action::Nothing
        );
    }

    #[test]
    fn lookups_and_capacity() {
        let mut t = Table::new();
        for pid in 0..MAX_SUPERVISED as u64 {
            assert!(t.add(pid, pid * 10));
        }
        assert!(!t.add(99, 990));
        assert_eq!(t.control(7), Some(70));
        assert_eq!(t.control(99), None);
        assert_eq!(t.get(3), Some((3, 30)));
        assert_eq!(t.len(), MAX_SUPERVISED);
        assert_eq!(t.iter().count(), MAX_SUPERVISED);
    }
}
