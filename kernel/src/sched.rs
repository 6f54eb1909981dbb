//! Scheduling: fixed priorities (0 highest), round robin inside one priority, preemption by the
//! timer. The kernel is not preemptible: it runs with interrupts off and decides who runs next
//! each time it leaves.

use crate::system::{Machine, Spaces, State, System, TIME_SLICE_TICKS};
use brainix_abi::Error;

impl<S: Spaces, M: Machine> System<S, M> {
    /// One timer tick: time passes for the running process, and waits whose deadline came end
    /// with [`Error::Timeout`].
    pub fn tick(&mut self) {
        self.ticks += 1;
        if let Some(cur) = self.current {
            let p = &mut self.procs[usize::from(cur)];
            p.slice_left = p.slice_left.saturating_sub(1);
        }
        for pid in 0..self.process_count() as u16 {
            if let State::Receiving { deadline, .. } = self.procs[usize::from(pid)].state
                && deadline != u64::MAX
                && self.ticks >= deadline
            {
                self.wake_with(pid, Err(Error::Timeout));
            }
        }
    }

    /// Picks the process to run next and makes it current; `None` means idle. The current
    /// process keeps the CPU while it is runnable, has slice left, and nothing of better
    /// priority is runnable; otherwise the next runnable process of the best priority after it,
    /// in pid order, gets a fresh slice.
    pub fn schedule(&mut self) -> Option<u16> {
        let n = self.process_count();
        let runnable = |s: &Self, pid: usize| s.procs[pid].state == State::Runnable;
        let best = (0..n)
            .filter(|&p| runnable(self, p))
            .map(|p| self.spec.processes[p].priority)
            .min()?;
        if let Some(cur) = self.current.map(usize::from)
            && runnable(self, cur)
            && self.spec.processes[cur].priority == best
            && self.procs[cur].slice_left > 0
        {
            return self.current;
        }
        let start = self.current.map_or(0, |c| usize::from(c) + 1);
        let next = (0..n)
            .map(|i| (start + i) % n)
            .find(|&p| runnable(self, p) && self.spec.processes[p].priority == best)?;
        self.procs[next].slice_left = TIME_SLICE_TICKS;
        self.current = Some(next as u16);
        self.current
    }

    /// `yield`: the rest of the slice goes to the next process of the same priority.
    pub fn yield_now(&mut self, pid: u16) {
        self.procs[usize::from(pid)].slice_left = 0;
    }
}

#[cfg(test)]
mod tests {
    use crate::system::fixture::system;
    use crate::system::{Death, TIME_SLICE_TICKS};

    #[test]
    fn the_best_priority_runs_and_equals_share_by_slices() {
        let mut s = system(&[("low", 3, vec![]), ("a", 1, vec![]), ("b", 1, vec![])], 0);
        assert_eq!(s.schedule(), Some(1));
        for _ in 0..TIME_SLICE_TICKS - 1 {
            s.tick();
            assert_eq!(s.schedule(), Some(1), "keeps the CPU inside its slice");
        }
        s.tick();
        assert_eq!(s.schedule(), Some(2), "round robin at the end of the slice");
        s.yield_now(2);
        assert_eq!(s.schedule(), Some(1));
        s.kill(1, Death::Exit(0));
        s.kill(2, Death::Exit(0));
        assert_eq!(
            s.schedule(),
            Some(0),
            "the low priority runs only when nothing better can"
        );
        s.kill(0, Death::Exit(0));
        assert_eq!(s.schedule(), None, "idle");
    }
}
