//! The summary printed at the end of a run: an invariant × board table, then every result that is
//! not PASS or SKIP with its reason, then where the reports are. Nothing the target printed reaches
//! the terminal unescaped.

use std::fmt::Write;

use super::{Report, State, worst};

/// Replaces anything that could drive a terminal (ESC, other controls) with `?`.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Renders the terminal summary.
pub fn render(report: &Report) -> String {
    let mut t = String::new();
    let width = report
        .boards
        .iter()
        .map(|b| b.len())
        .max()
        .unwrap_or(5)
        .max(9);
    let _ = write!(t, "\n{:<12}", "invariant");
    for b in &report.boards {
        let _ = write!(t, " {:<width$}", sanitize(b));
    }
    t.push('\n');
    for inv in report.invariants() {
        let _ = write!(t, "{:<12}", inv);
        for b in &report.boards {
            let cell = report.cell(&inv, b);
            let text = match worst(cell.iter().map(|r| &r.state)) {
                None => "-".to_string(),
                Some(w) => format!(
                    "{w} {}/{}",
                    cell.iter().filter(|r| r.state == State::Pass).count(),
                    cell.iter().filter(|r| r.state != State::Skip).count()
                ),
            };
            let _ = write!(t, " {:<width$}", text);
        }
        t.push('\n');
    }
    let bad: Vec<_> = report.results.iter().filter(|r| r.state.is_bad()).collect();
    if !bad.is_empty() {
        t.push('\n');
        for r in bad {
            let _ = writeln!(
                t,
                "{:<5} {} {} ({}): {}",
                r.state,
                sanitize(&r.board),
                sanitize(&r.check),
                sanitize(&r.plan),
                sanitize(&r.reason)
            );
        }
    }
    let skipped = report.summary.skip;
    if skipped > 0 {
        let _ = writeln!(
            t,
            "\n{skipped} check(s) SKIP: features not built yet or not runnable on the board (see the report for each reason)"
        );
    }
    let s = &report.summary;
    let _ = writeln!(
        t,
        "\n{}: {} PASS, {} FAIL, {} ERROR, {} MISS, {} SKIP; {} distrusted boot(s); {:.1} s",
        if report.is_success() { "ok" } else { "FAILED" },
        s.pass,
        s.fail,
        s.error,
        s.miss,
        s.skip,
        s.distrusted_boots,
        report.duration_ms as f64 / 1000.0
    );
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_neutralised_and_bad_results_listed() {
        let mut r = super::super::tests::sample();
        r.results[2].reason = "evil \u{1b}[2J reason".into();
        let out = render(&r);
        assert!(!out.contains('\u{1b}'));
        assert!(
            out.contains("FAIL  qemu-pc mem.wx (inv-mem): evil ?[2J reason"),
            "{out}"
        );
        assert!(
            out.contains("FAILED: 1 PASS, 1 FAIL, 1 ERROR, 1 MISS, 1 SKIP"),
            "{out}"
        );
        assert!(out.contains("FAIL 0/1"), "{out}");
    }
}
