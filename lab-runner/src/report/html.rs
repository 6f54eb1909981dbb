//! `report.html`: one self-contained page (no scripts, no external files) with an invariant ×
//! board matrix. Each cell is a `<details>` element: click it to open that cell's checks with their
//! reasons and evidence. Every string is HTML-escaped.

use std::fmt::Write;

use super::{Report, State, worst};

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}\
td,th{border:1px solid #ccc;padding:.3em .6em;vertical-align:top}\
.PASS{background:#d9f2d9}.FAIL{background:#f7c6c6}.ERROR{background:#f9ddb1}.MISS{background:#f2e3f7}.SKIP{background:#eee}\
pre{background:#f8f8f8;padding:.5em;overflow-x:auto;max-width:70em}summary{cursor:pointer;font-weight:600}";

/// Renders the page.
pub fn render(report: &Report) -> String {
    let mut h = String::new();
    let s = &report.summary;
    let verdict = report.verdict();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>BraiNIX lab report: {verdict}</title><style>{STYLE}</style></head><body>\n"
    );
    let _ = writeln!(
        h,
        "<h1>BraiNIX lab report: {verdict}</h1><p>{} PASS, {} FAIL, {} ERROR, {} MISS, {} SKIP of {} checks; {} distrusted boot(s); {:.1} s; images from <code>{}</code></p>",
        s.pass,
        s.fail,
        s.error,
        s.miss,
        s.skip,
        s.total,
        s.distrusted_boots,
        report.duration_ms as f64 / 1000.0,
        escape(&report.image_dir)
    );
    h.push_str("<table><tr><th>invariant</th>");
    for b in &report.boards {
        let _ = write!(h, "<th>{}</th>", escape(b));
    }
    h.push_str("</tr>\n");
    for inv in report.invariants() {
        let _ = write!(h, "<tr><th>{}</th>", escape(&inv));
        for b in &report.boards {
            let cell = report.cell(&inv, b);
            let Some(w) = worst(cell.iter().map(|r| &r.state)) else {
                h.push_str("<td>-</td>");
                continue;
            };
            let passed = cell.iter().filter(|r| r.state == State::Pass).count();
            let counted = cell.iter().filter(|r| r.state != State::Skip).count();
            let _ = write!(
                h,
                "<td class=\"{w}\"><details><summary>{w} {passed}/{counted}</summary>"
            );
            for r in &cell {
                let _ = write!(
                    h,
                    "<p class=\"{}\"><b>{}</b> <code>{}</code> ({}): {}</p>",
                    r.state,
                    r.state,
                    escape(&r.check),
                    escape(&r.plan),
                    escape(&r.reason)
                );
                let _ = write!(h, "<p>{}</p>", escape(&r.title));
                if !r.evidence.lines.is_empty() {
                    let _ = write!(h, "<pre>{}</pre>", escape(&r.evidence.lines.join("\n")));
                }
                if let Some(log) = &r.evidence.log {
                    let _ = write!(
                        h,
                        "<p>full log: <code>{}</code> (boot <code>{}</code>)</p>",
                        escape(log),
                        escape(r.boot.as_deref().unwrap_or("-"))
                    );
                }
            }
            h.push_str("</details></td>");
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n<h2>Boots</h2><table><tr><th>boot</th><th>image</th><th>ending</th><th>time</th><th>rejected lines</th></tr>\n");
    for b in &report.boots {
        let class = if b.infra_error.is_some() {
            "ERROR"
        } else if b.distrusted {
            "FAIL"
        } else {
            ""
        };
        let _ = writeln!(
            h,
            "<tr class=\"{class}\"><td>{}</td><td>{}</td><td>{}{}</td><td>{} ms</td><td>{}</td></tr>",
            escape(&b.id),
            escape(&b.image),
            escape(&b.ending),
            b.infra_error
                .as_ref()
                .map(|e| format!("<br>{}", escape(e)))
                .unwrap_or_default(),
            b.duration_ms,
            b.rejected_lines
        );
    }
    h.push_str("</table></body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_is_self_contained_and_escapes_everything() {
        let page = render(&super::super::tests::sample());
        assert!(!page.contains("<script"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("not announced &lt;/td&gt;"));
        assert!(
            !page.contains("src=") && !page.contains("href="),
            "no external resources"
        );
        // Matrix: 2 invariants × 2 boards, each cell with a details element.
        assert_eq!(page.matches("<details>").count(), 4, "{page}");
        assert!(page.contains("<td class=\"FAIL\"><details><summary>FAIL 0/1</summary>"));
    }
}
