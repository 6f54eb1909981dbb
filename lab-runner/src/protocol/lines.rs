//! Cutting console bytes into lines with bounded memory.
//!
//! A target that prints forever without a newline must not grow the runner's memory: a line is
//! kept up to [`MAX_LINE`] bytes, the rest of it is dropped and the line is flagged `truncated`.

use super::MAX_LINE;

/// One console line, without its `\n` (and without a `\r` right before it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// At most [`MAX_LINE`] bytes.
    pub bytes: Vec<u8>,
    /// The line was longer and was cut.
    pub truncated: bool,
    /// The console ended before the line's newline.
    pub unterminated: bool,
}

/// Accumulates bytes into lines.
#[derive(Debug, Default)]
pub struct LineAssembler {
    buf: Vec<u8>,
    truncated: bool,
}

impl LineAssembler {
    /// An empty assembler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes; calls `emit` for every line completed by them.
    pub fn feed(&mut self, bytes: &[u8], mut emit: impl FnMut(Line)) {
        let mut rest = bytes;
        while !rest.is_empty() {
            match rest.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.push(&rest[..i]);
                    emit(self.take(false));
                    rest = &rest[i + 1..];
                }
                None => {
                    self.push(rest);
                    rest = &[];
                }
            }
        }
    }

    /// The partial line left when the console ends, if any.
    pub fn finish(&mut self) -> Option<Line> {
        (!self.buf.is_empty() || self.truncated).then(|| self.take(true))
    }

    /// Bytes currently held for the unfinished line (never more than `MAX_LINE`).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    fn push(&mut self, bytes: &[u8]) {
        let room = MAX_LINE.saturating_sub(self.buf.len());
        if bytes.len() > room {
            self.truncated = true;
        }
        self.buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn take(&mut self, unterminated: bool) -> Line {
        let mut bytes = std::mem::take(&mut self.buf);
        if !unterminated && !self.truncated && bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        let truncated = std::mem::replace(&mut self.truncated, false);
        Line {
            bytes,
            truncated,
            unterminated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(chunks: &[&[u8]]) -> Vec<Line> {
        let mut a = LineAssembler::new();
        let mut out = Vec::new();
        for c in chunks {
            a.feed(c, |l| out.push(l));
        }
        out.extend(a.finish());
        out
    }

    #[test]
    fn joins_lines_split_across_reads_and_drops_cr() {
        let l = lines(&[b"BNX1 ab", b"c 0 END", b" 0\r", b"\nnext\n"]);
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].bytes, b"BNX1 abc 0 END 0");
        assert_eq!(l[1].bytes, b"next");
    }

    #[test]
    fn only_a_final_cr_is_dropped() {
        let l = lines(&[b"a\rb\r\n"]);
        assert_eq!(l[0].bytes, b"a\rb");
    }

    #[test]
    fn endless_output_is_cut_and_memory_stays_bounded() {
        let mut a = LineAssembler::new();
        let chunk = vec![b'A'; 1000];
        let mut out = Vec::new();
        for _ in 0..10_000 {
            a.feed(&chunk, |l| out.push(l));
            assert!(a.pending() <= MAX_LINE);
        }
        assert!(out.is_empty());
        a.feed(b"\nok\n", |l| out.push(l));
        assert_eq!(out.len(), 2);
        assert!(out[0].truncated);
        assert_eq!(out[0].bytes.len(), MAX_LINE);
        assert!(!out[1].truncated);
    }

    #[test]
    fn unterminated_tail_is_reported() {
        let l = lines(&[b"done\npartial"]);
        assert!(l[1].unterminated);
        assert_eq!(l[1].bytes, b"partial");
    }
}
