//! One boot's frames, checked against each other: the only source of target results.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::lines::Line;
use super::{Frame, LineKind, Nonce, classify};

/// Most rejected lines kept with their text per boot; beyond this they are only counted, so a
/// target spraying fake frames cannot grow the report without bound. 64 is far more than a real
/// protocol fault produces (one violation distrusts the rest of the boot).
pub const MAX_RECORDED_VIOLATIONS: usize = 64;

/// A result frame that was accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetResult {
    /// PASS or FAIL as the target said.
    pub pass: bool,
    /// The target's detail text.
    pub detail: String,
    /// Console line number (1-based, in this boot's log).
    pub line: u64,
}

/// A line that was not accepted as a frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// Console line number.
    pub line: u64,
    /// `true` when the line carried this run's nonce (the stream is distrusted from here on);
    /// `false` for foreign frames (stale, forged, other run), which are rejected and otherwise
    /// harmless.
    pub ours: bool,
    /// What was wrong.
    pub reason: String,
}

/// A boot report line as seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootReportSeen {
    /// Console line number.
    pub line: u64,
    /// Its fields.
    pub fields: Vec<(String, String)>,
    /// It came after the PLAN frame (the protocol puts it before; a late one is suspect).
    pub after_plan: bool,
}

/// What a line did to the transcript, for the session's bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Plain log line.
    Log,
    /// A boot report line.
    BootReport,
    /// The PLAN frame was accepted.
    Plan,
    /// A RESULT frame for this id was accepted.
    Result(String),
    /// The END frame was accepted.
    End,
    /// The line was rejected (see the violations).
    Rejected,
}

/// The checked state of one boot's protocol stream.
#[derive(Debug, Clone)]
pub struct Transcript {
    nonce: Nonce,
    next_seq: u64,
    /// Set at the first violation by a line with our nonce; no later frame is accepted.
    pub distrusted_from: Option<u64>,
    /// Ids the target announced, and the line of the announcement.
    pub plan: Option<(Vec<String>, u64)>,
    /// Accepted results by id.
    pub results: BTreeMap<String, TargetResult>,
    /// The END count and its line.
    pub end: Option<(u64, u64)>,
    /// Every boot report line.
    pub boot_reports: Vec<BootReportSeen>,
    /// Rejected lines (first [`MAX_RECORDED_VIOLATIONS`]).
    pub violations: Vec<Violation>,
    /// All rejected lines, including those not recorded.
    pub rejected: u64,
}

impl Transcript {
    /// An empty transcript for a boot given `nonce`.
    pub fn new(nonce: Nonce) -> Self {
        Transcript {
            nonce,
            next_seq: 0,
            distrusted_from: None,
            plan: None,
            results: BTreeMap::new(),
            end: None,
            boot_reports: Vec::new(),
            violations: Vec::new(),
            rejected: 0,
        }
    }

    /// Feeds one line (numbered from 1).
    pub fn feed(&mut self, line_no: u64, line: &Line) -> Event {
        match classify(&line.bytes, line.truncated, &self.nonce) {
            LineKind::Log => Event::Log,
            LineKind::BootReport(fields) => {
                self.boot_reports.push(BootReportSeen {
                    line: line_no,
                    fields,
                    after_plan: self.plan.is_some(),
                });
                Event::BootReport
            }
            LineKind::ForeignFrame => self.reject(
                line_no,
                false,
                "frame without this run's nonce (stale, forged or from another run)".into(),
            ),
            LineKind::BadFrame { seq, error } => {
                let at = seq.map_or(String::new(), |s| format!(" (seq {s})"));
                self.reject(line_no, true, format!("bad frame{at}: {error}"))
            }
            LineKind::Frame { seq, frame } => self.accept(line_no, seq, frame),
        }
    }

    fn reject(&mut self, line: u64, ours: bool, reason: String) -> Event {
        self.rejected += 1;
        if ours && self.distrusted_from.is_none() {
            self.distrusted_from = Some(line);
        }
        if self.violations.len() < MAX_RECORDED_VIOLATIONS {
            self.violations.push(Violation { line, ours, reason });
        }
        Event::Rejected
    }

    fn accept(&mut self, line: u64, seq: u64, frame: Frame) -> Event {
        if let Some(from) = self.distrusted_from {
            return self.reject(
                line,
                true,
                format!("frame after the stream was distrusted at line {from}"),
            );
        }
        if seq != self.next_seq {
            return self.reject(
                line,
                true,
                format!(
                    "sequence {seq} where {} was next: a frame was lost, split or injected",
                    self.next_seq
                ),
            );
        }
        if self.end.is_some() {
            return self.reject(line, true, "frame after END".into());
        }
        self.next_seq += 1;
        match frame {
            // A plan too long for one frame comes as several, all before the first result.
            Frame::Plan(ids) => {
                if !self.results.is_empty() {
                    return self.reject(line, true, "PLAN after a RESULT".into());
                }
                let known = self.plan.as_ref().map_or(&[][..], |(k, _)| k.as_slice());
                let dup = ids
                    .iter()
                    .enumerate()
                    .find(|(n, i)| known.contains(i) || ids[..*n].contains(i));
                if let Some((_, dup)) = dup {
                    let reason = format!("PLAN announces `{dup}` twice");
                    return self.reject(line, true, reason);
                }
                self.plan
                    .get_or_insert_with(|| (Vec::new(), line))
                    .0
                    .extend(ids);
                Event::Plan
            }
            Frame::Result { id, pass, detail } => {
                let Some((ids, _)) = &self.plan else {
                    return self.reject(line, true, "RESULT before PLAN".into());
                };
                if !ids.contains(&id) {
                    return self.reject(
                        line,
                        true,
                        format!("RESULT for `{id}`, which PLAN did not announce"),
                    );
                }
                if self.results.contains_key(&id) {
                    return self.reject(line, true, format!("second RESULT for `{id}`"));
                }
                self.results
                    .insert(id.clone(), TargetResult { pass, detail, line });
                Event::Result(id)
            }
            Frame::End(count) => {
                if self.plan.is_none() {
                    return self.reject(line, true, "END before PLAN".into());
                }
                if count != self.results.len() as u64 {
                    return self.reject(
                        line,
                        true,
                        format!(
                            "END says {count} results, {} were received",
                            self.results.len()
                        ),
                    );
                }
                self.end = Some((count, line));
                Event::End
            }
        }
    }

    /// True when a frame with our nonce was rejected: the stream cannot be fully trusted.
    pub fn is_distrusted(&self) -> bool {
        self.distrusted_from.is_some()
    }

    /// True when the target announced `id` and every announced check has reported.
    pub fn all_reported(&self) -> bool {
        self.plan
            .as_ref()
            .is_some_and(|(ids, _)| ids.iter().all(|i| self.results.contains_key(i)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::encode_frame;
    use super::*;

    fn nonce() -> Nonce {
        Nonce::parse("0123456789abcdef0123456789abcdef").unwrap()
    }

    fn line(s: &str) -> Line {
        Line {
            bytes: s.as_bytes().to_vec(),
            truncated: false,
            unterminated: false,
        }
    }

    fn run(lines: &[String]) -> Transcript {
        let mut t = Transcript::new(nonce());
        for (i, l) in lines.iter().enumerate() {
            t.feed(i as u64 + 1, &line(l));
        }
        t
    }

    fn res(id: &str, pass: bool) -> Frame {
        Frame::Result {
            id: id.into(),
            pass,
            detail: "-".into(),
        }
    }

    #[test]
    fn a_clean_stream_is_accepted() {
        let n = nonce();
        let t = run(&[
            "brainix: hello".into(),
            "BRAINIX-BOOT-REPORT v1 selfcheck=PASS".into(),
            encode_frame(&n, 0, &Frame::Plan(vec!["a".into(), "b".into()])),
            encode_frame(&n, 1, &res("a", true)),
            encode_frame(&n, 2, &res("b", false)),
            encode_frame(&n, 3, &Frame::End(2)),
        ]);
        assert!(!t.is_distrusted());
        assert!(t.all_reported());
        assert!(t.results["a"].pass && !t.results["b"].pass);
        assert_eq!(t.end, Some((2, 6)));
        assert!(!t.boot_reports[0].after_plan);
    }

    #[test]
    fn a_plan_may_span_frames_until_the_first_result() {
        let n = nonce();
        let t = run(&[
            encode_frame(&n, 0, &Frame::Plan(vec!["a".into(), "b".into()])),
            encode_frame(&n, 1, &Frame::Plan(vec!["c".into()])),
            encode_frame(&n, 2, &res("c", true)),
        ]);
        assert_eq!(t.plan, Some((vec!["a".into(), "b".into(), "c".into()], 1)));
        assert!(t.results["c"].pass && !t.is_distrusted());
        // An id announced twice, or a plan after a result, distrusts the stream.
        let t = run(&[
            encode_frame(&n, 0, &Frame::Plan(vec!["a".into()])),
            encode_frame(&n, 1, &Frame::Plan(vec!["b".into(), "a".into()])),
        ]);
        assert_eq!(t.distrusted_from, Some(2));
        assert_eq!(t.plan.unwrap().0, ["a"]);
        let t = run(&[
            encode_frame(&n, 0, &Frame::Plan(vec!["a".into()])),
            encode_frame(&n, 1, &res("a", true)),
            encode_frame(&n, 2, &Frame::Plan(vec!["b".into()])),
            encode_frame(&n, 3, &res("b", true)),
        ]);
        assert_eq!(t.distrusted_from, Some(3));
        assert!(!t.results.contains_key("b"));
    }

    #[test]
    fn a_result_before_plan_distrusts_the_stream() {
        let n = nonce();
        let t = run(&[
            encode_frame(&n, 0, &res("a", true)),
            encode_frame(&n, 1, &Frame::Plan(vec!["a".into()])),
        ]);
        assert!(t.results.is_empty());
        assert!(t.plan.is_none());
        assert_eq!(t.distrusted_from, Some(1));
    }

    #[test]
    fn a_sequence_gap_distrusts_every_later_frame() {
        let n = nonce();
        let t = run(&[
            encode_frame(&n, 0, &Frame::Plan(vec!["a".into(), "b".into()])),
            encode_frame(&n, 2, &res("a", true)),
            encode_frame(&n, 3, &res("b", true)),
        ]);
        assert!(t.results.is_empty(), "{t:?}");
        assert_eq!(t.violations.len(), 2);
        assert!(t.violations[0].reason.contains("sequence 2 where 1"));
    }

    #[test]
    fn replayed_frames_from_an_old_nonce_change_nothing() {
        let old = Nonce::parse("ffffffffffffffffffffffffffffffff").unwrap();
        let n = nonce();
        let t = run(&[
            encode_frame(&old, 0, &Frame::Plan(vec!["a".into()])),
            encode_frame(&old, 1, &res("a", true)),
            encode_frame(&n, 0, &Frame::Plan(vec!["a".into()])),
            encode_frame(&n, 1, &res("a", false)),
        ]);
        assert!(!t.is_distrusted());
        assert!(!t.results["a"].pass, "the replayed PASS must not win");
        assert_eq!(t.rejected, 2);
        assert!(t.violations.iter().all(|v| !v.ours));
    }

    #[test]
    fn unannounced_duplicate_and_late_results_are_refused() {
        let n = nonce();
        let t = run(&[
            encode_frame(&n, 0, &Frame::Plan(vec!["a".into()])),
            encode_frame(&n, 1, &res("zzz", true)),
        ]);
        assert!(t.results.is_empty() && t.is_distrusted());
        let t = run(&[
            encode_frame(&n, 0, &Frame::Plan(vec!["a".into()])),
            encode_frame(&n, 1, &res("a", false)),
            encode_frame(&n, 2, &res("a", true)),
        ]);
        assert!(
            !t.results["a"].pass,
            "a second RESULT must not overwrite the first"
        );
        let t = run(&[
            encode_frame(&n, 0, &Frame::Plan(vec!["a".into()])),
            encode_frame(&n, 1, &Frame::End(0)),
            encode_frame(&n, 2, &res("a", true)),
        ]);
        assert!(t.results.is_empty());
    }

    #[test]
    fn end_count_must_match() {
        let n = nonce();
        let t = run(&[
            encode_frame(&n, 0, &Frame::Plan(vec!["a".into()])),
            encode_frame(&n, 1, &Frame::End(1)),
        ]);
        assert!(t.end.is_none() && t.is_distrusted());
    }

    #[test]
    fn violations_are_bounded() {
        let old = Nonce::parse("ffffffffffffffffffffffffffffffff").unwrap();
        let lines: Vec<String> = (0..10_000)
            .map(|i| encode_frame(&old, i, &Frame::End(0)))
            .collect();
        let t = run(&lines);
        assert_eq!(t.violations.len(), MAX_RECORDED_VIOLATIONS);
        assert_eq!(t.rejected, 10_000);
    }
}
