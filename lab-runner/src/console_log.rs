//! The console log of one boot: the raw bytes exactly as received, a timestamped line log for
//! people, and a bounded in-memory window from which each result takes its evidence.
//!
//! Target bytes are untrusted. Before any of them reaches a person (log file, evidence, report,
//! terminal) they go through [`escape_bytes`], which leaves printable ASCII and renders everything
//! else — escape sequences included — as visible `\xNN` text.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::protocol::lines::Line;

/// Most bytes written per boot to each of the raw and the line log. 16 MiB is ~200k lines of
/// verbose kernel output; past it the logs say so and stop growing while parsing continues.
pub const MAX_LOG_BYTES: u64 = 16 * 1024 * 1024;

/// Lines kept in memory for evidence. 512 lines covers a whole boot of today's kernel (~40
/// lines) many times over, while bounding memory to about 512 × [`EVIDENCE_LINE_CHARS`].
pub const EVIDENCE_RING_LINES: usize = 512;

/// Characters of one line kept for evidence (the full line stays in the log file).
pub const EVIDENCE_LINE_CHARS: usize = 400;

/// Most lines one result carries as evidence: enough context to read, small enough that a report
/// with hundreds of results stays readable.
pub const EVIDENCE_MAX_LINES: usize = 40;

/// Renders untrusted bytes as printable ASCII: `\\`, `\t`, `\r`, `\xNN` for the rest.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\r' => out.push_str("\\r"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

/// Where a boot's logs are.
#[derive(Debug, Clone, Default)]
pub struct LogPaths {
    /// Exact bytes from the console.
    pub raw: Option<PathBuf>,
    /// `[seconds] escaped line`, one per console line.
    pub text: Option<PathBuf>,
}

/// One boot's console log.
pub struct ConsoleLog {
    start: Instant,
    raw: Option<BufWriter<File>>,
    text: Option<BufWriter<File>>,
    raw_written: u64,
    text_written: u64,
    ring: VecDeque<(u64, String)>,
    lines: u64,
    /// The files, if any.
    pub paths: LogPaths,
    /// First I/O error writing the logs; the boot goes on, the report says the log is incomplete.
    pub write_error: Option<String>,
}

impl ConsoleLog {
    /// A log writing `<dir>/<stem>.raw` and `<dir>/<stem>.log`; timestamps count from now.
    pub fn create(dir: &Path, stem: &str) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let raw_path = dir.join(format!("{stem}.raw"));
        let text_path = dir.join(format!("{stem}.log"));
        let mut log = ConsoleLog::in_memory();
        log.raw = Some(BufWriter::new(File::create(&raw_path)?));
        log.text = Some(BufWriter::new(File::create(&text_path)?));
        log.paths = LogPaths {
            raw: Some(raw_path),
            text: Some(text_path),
        };
        Ok(log)
    }

    /// A log that keeps only the evidence window (unit tests, dry runs).
    pub fn in_memory() -> Self {
        ConsoleLog {
            start: Instant::now(),
            raw: None,
            text: None,
            raw_written: 0,
            text_written: 0,
            ring: VecDeque::new(),
            lines: 0,
            paths: LogPaths::default(),
            write_error: None,
        }
    }

    /// Records bytes exactly as received.
    pub fn raw(&mut self, bytes: &[u8]) {
        let Some(w) = self.raw.as_mut() else { return };
        let room = MAX_LOG_BYTES.saturating_sub(self.raw_written) as usize;
        let take = bytes.len().min(room);
        if let Err(e) = w.write_all(&bytes[..take]) {
            self.write_error.get_or_insert(e.to_string());
        }
        self.raw_written += take as u64;
    }

    /// Records a complete line; returns its number (from 1).
    pub fn line(&mut self, line: &Line) -> u64 {
        self.lines += 1;
        let mut text = escape_bytes(&line.bytes);
        if line.truncated {
            text.push_str(" [line cut at 4096 bytes]");
        }
        if line.unterminated {
            text.push_str(" [no newline before the console ended]");
        }
        let secs = self.start.elapsed().as_secs_f64();
        let entry = format!("[{secs:>10.6}] {text}\n");
        if let Some(w) = self.text.as_mut() {
            if self.text_written + entry.len() as u64 <= MAX_LOG_BYTES {
                if let Err(e) = w.write_all(entry.as_bytes()) {
                    self.write_error.get_or_insert(e.to_string());
                }
                self.text_written += entry.len() as u64;
            } else if self.text_written < MAX_LOG_BYTES {
                let _ = w.write_all(b"[log limit reached; later lines are not written]\n");
                self.text_written = MAX_LOG_BYTES;
            }
        }
        let mut kept: String = text.chars().take(EVIDENCE_LINE_CHARS).collect();
        if kept.len() < text.len() {
            kept.push_str(" [...]");
        }
        if self.ring.len() == EVIDENCE_RING_LINES {
            self.ring.pop_front();
        }
        self.ring.push_back((
            self.lines,
            format!("{:>5} [{secs:>9.6}] {kept}", self.lines),
        ));
        self.lines
    }

    /// Lines numbered `from..=to` still in the window, at most [`EVIDENCE_MAX_LINES`] (the last
    /// ones when more), each prefixed by its number and time.
    pub fn slice(&self, from: u64, to: u64) -> Vec<String> {
        let mut v: Vec<String> = self
            .ring
            .iter()
            .filter(|(n, _)| (from..=to).contains(n))
            .map(|(_, s)| s.clone())
            .collect();
        if v.len() > EVIDENCE_MAX_LINES {
            v.drain(..v.len() - EVIDENCE_MAX_LINES);
        }
        v
    }

    /// The last [`EVIDENCE_MAX_LINES`] lines.
    pub fn tail(&self) -> Vec<String> {
        self.slice(
            self.lines.saturating_sub(EVIDENCE_MAX_LINES as u64 - 1),
            self.lines,
        )
    }

    /// Lines so far.
    pub fn line_count(&self) -> u64 {
        self.lines
    }

    /// Seconds since the log started.
    pub fn elapsed(&self) -> std::time::Duration {
        self.start.elapsed()
    }

    /// Flushes both files.
    pub fn flush(&mut self) {
        for w in [self.raw.as_mut(), self.text.as_mut()]
            .into_iter()
            .flatten()
        {
            if let Err(e) = w.flush() {
                self.write_error.get_or_insert(e.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(s: &[u8]) -> Line {
        Line {
            bytes: s.to_vec(),
            truncated: false,
            unterminated: false,
        }
    }

    #[test]
    fn escape_sequences_become_visible_text() {
        assert_eq!(
            escape_bytes(b"\x1b[2Jok\\\x00\xff"),
            "\\x1b[2Jok\\\\\\x00\\xff"
        );
    }

    #[test]
    fn raw_and_line_logs_are_written_and_capped() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = ConsoleLog::create(dir.path(), "boot").unwrap();
        log.raw(b"a\x1bb\n");
        log.line(&l(b"a\x1bb"));
        log.flush();
        assert_eq!(
            std::fs::read(dir.path().join("boot.raw")).unwrap(),
            b"a\x1bb\n"
        );
        let text = std::fs::read_to_string(dir.path().join("boot.log")).unwrap();
        assert!(text.ends_with("] a\\x1bb\n"), "{text}");
        let big = vec![b'x'; 1 << 20];
        for _ in 0..20 {
            log.raw(&big);
        }
        log.flush();
        assert_eq!(
            std::fs::metadata(dir.path().join("boot.raw"))
                .unwrap()
                .len(),
            MAX_LOG_BYTES
        );
    }

    #[test]
    fn evidence_window_is_bounded() {
        let mut log = ConsoleLog::in_memory();
        let long = vec![b'y'; 4096];
        for _ in 0..5000 {
            log.line(&l(&long));
        }
        assert_eq!(log.ring.len(), EVIDENCE_RING_LINES);
        assert!(
            log.ring
                .iter()
                .all(|(_, s)| s.len() < EVIDENCE_LINE_CHARS + 64)
        );
        assert_eq!(log.slice(0, 5000).len(), EVIDENCE_MAX_LINES);
        assert_eq!(log.tail().len(), EVIDENCE_MAX_LINES);
        assert!(
            log.slice(1, 10).is_empty(),
            "old lines have left the window"
        );
    }
}
