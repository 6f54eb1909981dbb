//! The result of a run, and its renderings: JSON (the schema other tools read, documented in
//! `docs/lab-runner.md`), JUnit XML, Markdown, one self-contained HTML page, and the terminal
//! summary. Every renderer escapes for its own medium; evidence arrives already reduced to
//! printable ASCII by [`crate::console_log::escape_bytes`].

pub mod html;
pub mod json;
pub mod junit;
pub mod markdown;
pub mod terminal;

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::plan::CheckKind;
use crate::protocol::transcript::Violation;

/// Schema identifier written into every JSON report.
pub const REPORT_SCHEMA: &str = "brainix-lab-report/1";

/// The five result states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum State {
    /// The property was shown to hold.
    Pass,
    /// The property was shown not to hold. Never retried.
    Fail,
    /// The infrastructure failed (QEMU died, console lost, power failed, image missing). May be
    /// retried.
    Error,
    /// The result was expected and never arrived (never announced, never reported, distrusted).
    Miss,
    /// Not run, with a reason (feature not built yet, board cannot run it).
    Skip,
}

impl State {
    /// All states in display order.
    pub const ALL: [State; 5] = [
        State::Pass,
        State::Fail,
        State::Error,
        State::Miss,
        State::Skip,
    ];

    /// True for the states that make a run fail.
    pub fn is_bad(self) -> bool {
        matches!(self, State::Fail | State::Error | State::Miss)
    }

    /// Upper-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pass => "PASS",
            State::Fail => "FAIL",
            State::Error => "ERROR",
            State::Miss => "MISS",
            State::Skip => "SKIP",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Evidence attached to a result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Console lines (escaped, numbered, timestamped) that led to the result.
    pub lines: Vec<String>,
    /// The boot's line log, relative to the report directory.
    pub log: Option<String>,
}

/// One check on one board.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Board name.
    pub board: String,
    /// Plan name.
    pub plan: String,
    /// The plan's invariant.
    pub invariant: String,
    /// Check id.
    pub check: String,
    /// Check title.
    pub title: String,
    /// Check kind.
    pub kind: CheckKind,
    /// Outcome.
    pub state: State,
    /// Why, in one line.
    pub reason: String,
    /// The boot that produced it, if any.
    pub boot: Option<String>,
    /// Boot attempts made (more than one when ERROR was retried).
    pub attempts: u32,
    /// Time spent, in milliseconds (the boot's, for boot checks).
    pub duration_ms: u64,
    /// What the result rests on.
    pub evidence: Evidence,
}

/// One boot attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootRecord {
    /// Unique in the report: `<board>/boot-<n>-a<attempt>`.
    pub id: String,
    /// Board name.
    pub board: String,
    /// Image file name.
    pub image: String,
    /// Kernel command line given.
    pub cmdline: String,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// How the boot ended, in words.
    pub ending: String,
    /// QEMU exit status, when the machine exited.
    pub exit_status: Option<i32>,
    /// What the exit status means (serial-protocol.md §4).
    pub exit_meaning: Option<String>,
    /// Set when the boot failed for infrastructure reasons.
    pub infra_error: Option<String>,
    /// Milliseconds from start to end.
    pub duration_ms: u64,
    /// Milliseconds to the first console byte.
    pub first_byte_ms: Option<u64>,
    /// Milliseconds to the PLAN frame.
    pub plan_ms: Option<u64>,
    /// Console bytes received.
    pub console_bytes: u64,
    /// Timestamped line log, relative to the report directory.
    pub log: Option<String>,
    /// Raw byte log, relative to the report directory.
    pub raw_log: Option<String>,
    /// Rejected frame lines (first 64).
    pub violations: Vec<Violation>,
    /// All rejected frame lines.
    pub rejected_lines: u64,
    /// A frame with this run's nonce was rejected: later frames of this boot were not trusted.
    pub distrusted: bool,
    /// The machine command (QEMU argv) or the backend's description.
    pub command: Vec<String>,
    /// QEMU's stderr (escaped, bounded).
    pub backend_stderr: String,
}

/// Counts per state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// PASS results.
    pub pass: usize,
    /// FAIL results.
    pub fail: usize,
    /// ERROR results.
    pub error: usize,
    /// MISS results.
    pub miss: usize,
    /// SKIP results.
    pub skip: usize,
    /// All results.
    pub total: usize,
    /// Boots whose stream was distrusted.
    pub distrusted_boots: usize,
}

impl Summary {
    /// Counts `results` and `boots`.
    pub fn of(results: &[CheckResult], boots: &[BootRecord]) -> Summary {
        let mut s = Summary {
            total: results.len(),
            distrusted_boots: boots.iter().filter(|b| b.distrusted).count(),
            ..Summary::default()
        };
        for r in results {
            *s.slot(r.state) += 1;
        }
        s
    }

    fn slot(&mut self, state: State) -> &mut usize {
        match state {
            State::Pass => &mut self.pass,
            State::Fail => &mut self.fail,
            State::Error => &mut self.error,
            State::Miss => &mut self.miss,
            State::Skip => &mut self.skip,
        }
    }

    /// Count for one state.
    pub fn count(&self, state: State) -> usize {
        match state {
            State::Pass => self.pass,
            State::Fail => self.fail,
            State::Error => self.error,
            State::Miss => self.miss,
            State::Skip => self.skip,
        }
    }
}

/// A whole run (or several shards merged).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`REPORT_SCHEMA`].
    pub schema: String,
    /// lab-runner version that wrote it.
    pub runner_version: String,
    /// Seconds since the Unix epoch at the start.
    pub started_unix: u64,
    /// Wall time of the run in milliseconds (for merged reports: the longest shard).
    pub duration_ms: u64,
    /// Shards this report covers, e.g. `["1/3"]`; empty for an unsharded run.
    pub shards: Vec<String>,
    /// Boards run.
    pub boards: Vec<String>,
    /// Plans run.
    pub plans: Vec<String>,
    /// Image directory used.
    pub image_dir: String,
    /// One entry per (board, plan, check).
    pub results: Vec<CheckResult>,
    /// One entry per boot attempt.
    pub boots: Vec<BootRecord>,
    /// Counts.
    pub summary: Summary,
}

/// Why reports could not be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// Different schema.
    #[error("{0}: schema `{1}` is not {REPORT_SCHEMA}")]
    Schema(String, String),
    /// The same result appears in two inputs.
    #[error(
        "{0}: board `{1}`, plan `{2}`, check `{3}` is already in another report (overlapping shards?)"
    )]
    Duplicate(String, String, String, String),
    /// Nothing to merge.
    #[error("no reports to merge")]
    Empty,
}

impl Report {
    /// A report over `results` and `boots` with the summary computed.
    pub fn new(
        results: Vec<CheckResult>,
        boots: Vec<BootRecord>,
        started_unix: u64,
        duration_ms: u64,
        image_dir: &Path,
    ) -> Report {
        let boards: BTreeSet<String> = results.iter().map(|r| r.board.clone()).collect();
        let plans: BTreeSet<String> = results.iter().map(|r| r.plan.clone()).collect();
        let summary = Summary::of(&results, &boots);
        Report {
            schema: REPORT_SCHEMA.into(),
            runner_version: env!("CARGO_PKG_VERSION").into(),
            started_unix,
            duration_ms,
            shards: Vec::new(),
            boards: boards.into_iter().collect(),
            plans: plans.into_iter().collect(),
            image_dir: image_dir.display().to_string(),
            results,
            boots,
            summary,
        }
    }

    /// True when nothing failed, errored or went missing and no boot's stream was distrusted.
    pub fn is_success(&self) -> bool {
        !self.results.iter().any(|r| r.state.is_bad())
            && self.summary.distrusted_boots == 0
            && !self.results.is_empty()
    }

    /// `passed` or `FAILED`, for headings.
    pub fn verdict(&self) -> &'static str {
        if self.is_success() {
            "passed"
        } else {
            "FAILED"
        }
    }

    /// Process exit status for this report: 0 on success, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        if self.is_success() { 0 } else { 1 }
    }

    /// Merges shard reports (named for messages) into one. The same (board, plan, check) in two
    /// inputs is an error: shards must not overlap.
    pub fn merge(inputs: Vec<(String, Report)>) -> Result<Report, MergeError> {
        if inputs.is_empty() {
            return Err(MergeError::Empty);
        }
        let mut seen = BTreeSet::new();
        let mut results = Vec::new();
        let mut boots = Vec::new();
        let mut shards = Vec::new();
        let mut started = u64::MAX;
        let mut duration = 0;
        let mut image_dir = String::new();
        for (name, r) in inputs {
            if r.schema != REPORT_SCHEMA {
                return Err(MergeError::Schema(name, r.schema));
            }
            for res in &r.results {
                if !seen.insert((res.board.clone(), res.plan.clone(), res.check.clone())) {
                    return Err(MergeError::Duplicate(
                        name,
                        res.board.clone(),
                        res.plan.clone(),
                        res.check.clone(),
                    ));
                }
            }
            started = started.min(r.started_unix);
            duration = duration.max(r.duration_ms);
            shards.extend(r.shards);
            image_dir = r.image_dir;
            results.extend(r.results);
            boots.extend(r.boots);
        }
        let mut merged = Report::new(results, boots, started, duration, Path::new(&image_dir));
        shards.sort();
        merged.shards = shards;
        Ok(merged)
    }

    /// Invariants present, in contract order.
    pub fn invariants(&self) -> Vec<String> {
        let present: BTreeSet<&str> = self.results.iter().map(|r| r.invariant.as_str()).collect();
        crate::plan::INVARIANTS
            .iter()
            .filter(|i| present.contains(*i))
            .map(|s| s.to_string())
            .collect()
    }

    /// Results for one (invariant, board) cell.
    pub fn cell(&self, invariant: &str, board: &str) -> Vec<&CheckResult> {
        self.results
            .iter()
            .filter(|r| r.invariant == invariant && r.board == board)
            .collect()
    }

    /// Writes report.json, junit.xml, report.md and report.html into `dir`.
    pub fn write_all(&self, dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
        std::fs::create_dir_all(dir)?;
        let files = [
            ("report.json", json::render(self)),
            ("junit.xml", junit::render(self)),
            ("report.md", markdown::render(self)),
            ("report.html", html::render(self)),
        ];
        let mut written = Vec::new();
        for (name, text) in files {
            let p = dir.join(name);
            std::fs::write(&p, text)?;
            written.push(p);
        }
        Ok(written)
    }
}

/// The worst state among `states` (for matrix cells): FAIL > ERROR > MISS > PASS > SKIP.
pub fn worst<'a>(states: impl IntoIterator<Item = &'a State>) -> Option<State> {
    let rank = |s: &State| match s {
        State::Fail => 4,
        State::Error => 3,
        State::Miss => 2,
        State::Pass => 1,
        State::Skip => 0,
    };
    states.into_iter().max_by_key(|s| rank(s)).copied()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small report with every state and hostile evidence, shared by the renderer tests.
    pub fn sample() -> Report {
        let mk = |board: &str, inv: &str, check: &str, state: State, reason: &str| CheckResult {
            board: board.into(),
            plan: inv.to_lowercase(),
            invariant: inv.into(),
            check: check.into(),
            title: format!("title of {check} <b>&"),
            kind: CheckKind::Frame,
            state,
            reason: reason.into(),
            boot: Some(format!("{board}/boot-1-a1")),
            attempts: 1,
            duration_ms: 12,
            evidence: Evidence {
                lines: vec!["    3 [ 0.000100] <script>alert(1)</script> | `x` \\x1b[31m".into()],
                log: Some("logs/x.log".into()),
            },
        };
        let results = vec![
            mk(
                "qemu-q35",
                "INV-MEM",
                "mem.wx",
                State::Pass,
                "target: no page is W+X",
            ),
            mk(
                "qemu-q35",
                "INV-MEM",
                "mem.no-heap",
                State::Miss,
                "not announced </td>",
            ),
            mk(
                "qemu-pc",
                "INV-MEM",
                "mem.wx",
                State::Fail,
                "page 0x1000 is W+X",
            ),
            mk(
                "qemu-pc",
                "INV-AUTH",
                "auth.cap-forge",
                State::Skip,
                "needs userspace",
            ),
            mk(
                "qemu-q35",
                "INV-AUTH",
                "auth.cap-forge",
                State::Error,
                "QEMU died ]]> --",
            ),
        ];
        Report::new(results, Vec::new(), 1, 2, Path::new("/img"))
    }

    #[test]
    fn summary_and_exit_code_follow_the_states() {
        let r = sample();
        assert_eq!(
            (
                r.summary.pass,
                r.summary.fail,
                r.summary.error,
                r.summary.miss,
                r.summary.skip
            ),
            (1, 1, 1, 1, 1)
        );
        assert_eq!(r.exit_code(), 1);
        let mut ok = r.clone();
        ok.results.retain(|x| !x.state.is_bad());
        assert_eq!(ok.exit_code(), 0);
        ok.summary.distrusted_boots = 1;
        assert_eq!(ok.exit_code(), 1, "a distrusted boot fails the run");
        ok.results.clear();
        ok.summary.distrusted_boots = 0;
        assert_eq!(ok.exit_code(), 1, "a run with no results proves nothing");
    }

    #[test]
    fn merge_joins_shards_and_refuses_overlap() {
        let r = sample();
        let (a, b): (Vec<_>, Vec<_>) = r
            .results
            .iter()
            .cloned()
            .partition(|x| x.board == "qemu-q35");
        let mut ra = Report::new(a, vec![], 5, 10, Path::new("/img"));
        ra.shards = vec!["1/2".into()];
        let mut rb = Report::new(b, vec![], 3, 20, Path::new("/img"));
        rb.shards = vec!["2/2".into()];
        let m = Report::merge(vec![("a".into(), ra.clone()), ("b".into(), rb)]).unwrap();
        assert_eq!(m.summary, r.summary);
        assert_eq!(m.shards, ["1/2", "2/2"]);
        assert_eq!((m.started_unix, m.duration_ms), (3, 20));
        assert!(matches!(
            Report::merge(vec![("a".into(), ra.clone()), ("a2".into(), ra)]),
            Err(MergeError::Duplicate(..))
        ));
    }

    #[test]
    fn worst_orders_states() {
        assert_eq!(
            worst(&[State::Pass, State::Skip, State::Miss]),
            Some(State::Miss)
        );
        assert_eq!(worst(&[State::Skip]), Some(State::Skip));
        assert_eq!(worst(&[]), None);
    }
}
