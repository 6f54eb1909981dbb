//! The consent book-keeping: one pending proposal at a time, decided once. Pure, host-tested.

use brainix_abi::Error;

/// A proposal waiting for the trusted console.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proposal {
    /// Its id: ids only grow, so an old id can never name a new proposal.
    pub id: u64,
    /// The process to restart.
    pub target: u64,
    /// When it is denied for want of an answer (uptime, ms).
    pub deadline: u64,
}

/// What a decision did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Approved: run the action now (exactly once: the proposal is gone).
    Run(Proposal),
    /// Denied, by `deny` or the deadline.
    Denied(Proposal),
}

/// The book.
#[derive(Debug)]
pub struct Book {
    next: u64,
    pending: Option<Proposal>,
    /// The last decided proposal and how it ended, for an `AWAIT` that comes after it.
    last: Option<(u64, Result<(), Error>)>,
}

impl Book {
    /// No proposal yet; the first gets id 1.
    pub const fn new() -> Book {
        Book {
            next: 1,
            pending: None,
            last: None,
        }
    }

    /// Registers a proposal; [`Error::Busy`] while another is pending.
    pub fn propose(&mut self, target: u64, now: u64, wait_ms: u64) -> Result<Proposal, Error> {
        if self.pending.is_some() {
            return Err(Error::Busy);
        }
        let wait = wait_ms.clamp(
            brainix_proto::consent::MIN_WAIT_MS,
            brainix_proto::consent::MAX_WAIT_MS,
        );
        let p = Proposal {
            id: self.next,
            target,
            deadline: now.saturating_add(wait),
        };
        self.next += 1;
        self.pending = Some(p);
        Ok(p)
    }

    /// The pending proposal.
    pub fn pending(&self) -> Option<Proposal> {
        self.pending
    }

    /// A decision from the trusted console for `id`: only the pending proposal can be decided,
    /// and only once. An old id, replayed, is [`Error::OutOfRange`] and changes nothing.
    pub fn decide(&mut self, id: u64, approve: bool) -> Result<Verdict, Error> {
        match self.pending {
            Some(p) if p.id == id => {
                self.pending = None;
                Ok(if approve {
                    Verdict::Run(p)
                } else {
                    self.last = Some((id, Err(Error::MissingRight)));
                    Verdict::Denied(p)
                })
            }
            _ => Err(Error::OutOfRange),
        }
    }

    /// Denies the pending proposal if its deadline has passed.
    pub fn expire(&mut self, now: u64) -> Option<Proposal> {
        let p = self.pending.filter(|p| now >= p.deadline)?;
        self.pending = None;
        self.last = Some((p.id, Err(Error::Timeout)));
        Some(p)
    }

    /// Records how an approved action went.
    pub fn ran(&mut self, id: u64, outcome: Result<(), Error>) {
        self.last = Some((id, outcome));
    }

    /// How proposal `id` ended, if it was the last one decided.
    pub fn outcome(&self, id: u64) -> Option<Result<(), Error>> {
        self.last.filter(|(i, _)| *i == id).map(|(_, r)| r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proposal_is_decided_once_and_old_ids_name_nothing() {
        let mut b = Book::new();
        let p1 = b.propose(3, 0, 10_000).unwrap();
        assert_eq!(p1.id, 1);
        assert_eq!(b.propose(3, 0, 10_000), Err(Error::Busy));
        assert_eq!(
            b.decide(2, true),
            Err(Error::OutOfRange),
            "not proposed yet"
        );
        assert_eq!(b.decide(1, false), Ok(Verdict::Denied(p1)));
        assert_eq!(b.outcome(1), Some(Err(Error::MissingRight)));
        assert_eq!(b.decide(1, true), Err(Error::OutOfRange), "decided already");
        let p2 = b.propose(3, 0, 10_000).unwrap();
        assert_eq!(b.decide(2, true), Ok(Verdict::Run(p2)));
        b.ran(2, Ok(()));
        assert_eq!(b.outcome(2), Some(Ok(())));
        // Replaying approval 2 while proposal 3 waits approves nothing.
        let p3 = b.propose(3, 100, 2_000).unwrap();
        assert_eq!(b.decide(2, true), Err(Error::OutOfRange));
        assert_eq!(b.pending(), Some(p3));
        assert_eq!(b.expire(2_099), None);
        assert_eq!(b.expire(2_100), Some(p3));
        assert_eq!(b.outcome(3), Some(Err(Error::Timeout)));
        assert_eq!(b.decide(3, true), Err(Error::OutOfRange), "too late");
    }

    #[test]
    fn the_wait_is_clamped() {
        let mut b = Book::new();
        let p = b.propose(1, 50, 0).unwrap();
        assert_eq!(p.deadline, 50 + brainix_proto::consent::MIN_WAIT_MS);
        b.expire(u64::MAX);
        let p = b.propose(1, 50, u64::MAX).unwrap();
        assert_eq!(p.deadline, 50 + brainix_proto::consent::MAX_WAIT_MS);
    }
}
