//! `junit.xml`: one testsuite per invariant, one testcase per (board, check). FAIL and MISS are
//! `<failure>` (type `FAIL` or `MISS`), ERROR is `<error>`, SKIP is `<skipped>`: CI systems keep
//! infrastructure errors apart from test failures.

use std::time::Duration;

use quick_junit::{NonSuccessKind, Report as JReport, TestCase, TestCaseStatus, TestSuite};

use super::{Report, State};

/// Renders the report as JUnit XML.
pub fn render(report: &Report) -> String {
    let mut j = JReport::new("brainix-lab");
    j.set_time(Duration::from_millis(report.duration_ms));
    for inv in report.invariants() {
        let mut suite = TestSuite::new(inv.clone());
        for r in report.results.iter().filter(|r| r.invariant == inv) {
            let mut status = match r.state {
                State::Pass => TestCaseStatus::success(),
                State::Fail | State::Miss => TestCaseStatus::non_success(NonSuccessKind::Failure),
                State::Error => TestCaseStatus::non_success(NonSuccessKind::Error),
                State::Skip => TestCaseStatus::skipped(),
            };
            if r.state != State::Pass {
                status.set_message(xml_safe(&r.reason));
                if r.state != State::Skip {
                    status.set_type(r.state.as_str());
                }
            }
            let mut case = TestCase::new(format!("{}::{}", r.board, r.check), status);
            case.set_classname(format!("{}.{}", r.plan, r.board));
            case.set_time(Duration::from_millis(r.duration_ms));
            if !r.evidence.lines.is_empty() {
                case.set_system_out(xml_safe(&r.evidence.lines.join("\n")));
            }
            suite.add_test_case(case);
        }
        j.add_test_suite(suite);
    }
    j.to_string().unwrap_or_else(|e| {
        format!(
            "<!-- junit serialisation failed: {} -->\n",
            xml_safe(&e.to_string()).replace("--", "- -")
        )
    })
}

/// XML 1.0 cannot carry most control characters even escaped; evidence is already printable,
/// this is the last line of defence for reasons and titles.
fn xml_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '?'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_suite_per_invariant_and_failure_error_skip_are_distinct() {
        let x = render(&super::super::tests::sample());
        assert_eq!(x.matches("<testsuite ").count(), 2, "{x}");
        assert_eq!(x.matches("<failure").count(), 2, "FAIL and MISS: {x}");
        assert!(x.contains("type=\"MISS\"") && x.contains("type=\"FAIL\""));
        assert_eq!(x.matches("<error").count(), 1);
        assert_eq!(x.matches("<skipped").count(), 1);
        assert!(!x.contains("<script>"), "evidence must be escaped: {x}");
        assert!(x.contains("&lt;script&gt;"));
    }
}
