//! `report.md`: per-invariant tables for pull requests and chat. Everything from the target or a
//! plan is escaped so it cannot add markup, links, HTML or break out of a table or code block.

use std::fmt::Write;

use super::{Report, State};

/// Escapes text for a Markdown table cell or paragraph.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#' | '!' | '~' | '&' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c if c.is_control() => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// A code fence longer than any backtick run in `body`, so the body cannot close it.
fn fence(body: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in body.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    "`".repeat((longest + 1).max(3))
}

/// Renders the report as Markdown.
pub fn render(report: &Report) -> String {
    let mut md = String::new();
    let s = &report.summary;
    let verdict = report.verdict();
    let _ = writeln!(md, "# BraiNIX lab report: {verdict}\n");
    let _ = writeln!(
        md,
        "{} PASS, {} FAIL, {} ERROR, {} MISS, {} SKIP ({} checks, {} distrusted boots) in {:.1} s\n",
        s.pass,
        s.fail,
        s.error,
        s.miss,
        s.skip,
        s.total,
        s.distrusted_boots,
        report.duration_ms as f64 / 1000.0
    );
    let _ = writeln!(
        md,
        "| invariant | {} |",
        report
            .boards
            .iter()
            .map(|b| escape(b))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = writeln!(md, "| --- |{}", " --- |".repeat(report.boards.len()));
    for inv in report.invariants() {
        let cells: Vec<String> = report
            .boards
            .iter()
            .map(|b| {
                cell_text(
                    &report
                        .cell(&inv, b)
                        .iter()
                        .map(|r| r.state)
                        .collect::<Vec<_>>(),
                )
            })
            .collect();
        let _ = writeln!(md, "| {} | {} |", escape(&inv), cells.join(" | "));
    }
    for inv in report.invariants() {
        let _ = writeln!(md, "\n## {}\n", escape(&inv));
        let _ = writeln!(
            md,
            "| state | board | check | reason |\n| --- | --- | --- | --- |"
        );
        for r in report.results.iter().filter(|r| r.invariant == inv) {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                r.state,
                escape(&r.board),
                escape(&r.check),
                escape(&r.reason)
            );
        }
        for r in report
            .results
            .iter()
            .filter(|r| r.invariant == inv && r.state.is_bad() && !r.evidence.lines.is_empty())
        {
            let body = r.evidence.lines.join("\n");
            let f = fence(&body);
            let _ = writeln!(
                md,
                "\n**{} {} on {}**\n\n{f}text\n{body}\n{f}",
                r.state,
                escape(&r.check),
                escape(&r.board)
            );
        }
    }
    md
}

fn cell_text(states: &[State]) -> String {
    if states.is_empty() {
        return "-".into();
    }
    State::ALL
        .iter()
        .filter_map(|st| {
            let n = states.iter().filter(|s| *s == st).count();
            (n > 0).then(|| format!("{n} {st}"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_cannot_add_markup_or_close_the_fence() {
        assert_eq!(escape("a|b<c>`d`[e](f)"), "a\\|b\\<c\\>\\`d\\`\\[e\\](f)");
        assert_eq!(fence("x ```` y"), "`````");
        let md = render(&super::super::tests::sample());
        // Outside code fences, no raw HTML survives; inside them it is inert text.
        let mut in_fence = false;
        for line in md.lines() {
            if line.starts_with("```") {
                in_fence = !in_fence;
                continue;
            }
            if !in_fence {
                assert!(
                    !line.replace("\\<", "").contains('<'),
                    "raw HTML outside a fence: {line}"
                );
            }
        }
        assert!(!in_fence, "every fence is closed");
        assert!(md.contains("FAILED"));
        for line in md.lines().filter(|l| l.starts_with("| ")) {
            // Every table row keeps its column count: escaped pipes do not split cells.
            let cols = line.replace("\\|", "").matches('|').count();
            assert!(cols == 5 || cols == 3 || cols == 4, "{line}");
        }
    }
}
