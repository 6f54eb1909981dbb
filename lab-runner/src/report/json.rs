//! `report.json`: the machine-readable report (schema in `docs/lab-runner.md`).

use super::Report;

/// Pretty JSON. serde_json escapes every control character, so console bytes cannot break it.
pub fn render(report: &Report) -> String {
    serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")) + "\n"
}

/// Reads a report back (for `report merge`).
pub fn parse(text: &str) -> Result<Report, serde_json::Error> {
    serde_json::from_str(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_hostile_content() {
        let r = super::super::tests::sample();
        let text = render(&r);
        assert_eq!(parse(&text).unwrap(), r);
        assert!(
            !text.bytes().any(|b| b < 0x20 && b != b'\n'),
            "raw control bytes in JSON"
        );
    }
}
