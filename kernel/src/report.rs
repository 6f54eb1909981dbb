//! Machine-readable output: the boot report line and the nonce-framed result lines.
//!
//! The format is the contract in `docs/serial-protocol.md`. Frames are built in a fixed buffer
//! and checksummed before a byte of them is written, so a frame either goes out whole or not at
//! all.

use core::fmt::{self, Write};

/// Longest frame line, in bytes. A frame carries at most a 64-digit nonce, a 48-byte id and a
/// 160-byte detail; 400 bytes holds that with room. A `PLAN` that would not fit is split by the
/// caller into several.
pub const MAX_FRAME: usize = 400;
/// Longest detail text in a `RESULT` frame.
pub const MAX_DETAIL: usize = 160;

/// CRC-32 (IEEE 802.3, reflected, as zlib computes it).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xedb8_8320 & mask);
        }
    }
    !crc
}

/// A fixed-capacity line buffer; writing past its end is an error, never a reallocation.
pub struct Line {
    buf: [u8; MAX_FRAME],
    len: usize,
}

impl Line {
    /// An empty line.
    pub const fn new() -> Line {
        Line {
            buf: [0; MAX_FRAME],
            len: 0,
        }
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Default for Line {
    fn default() -> Self {
        Self::new()
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        let dst = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Writes into a [`Line`] and silently drops what does not fit: for details, which are cut.
struct Cut<'a>(&'a mut Line);

impl Write for Cut<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = MAX_FRAME - self.0.len;
        let take = s.len().min(room);
        // Cutting inside a multi-byte character is fine: bytes are made printable later.
        self.0.buf[self.0.len..self.0.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.0.len += take;
        Ok(())
    }
}

/// The outcome of a target-side check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The property held.
    Pass,
    /// The property did not hold.
    Fail,
}

/// Writes frames for one boot: it owns the sequence counter so numbers never repeat or skip.
pub struct Framer<'a> {
    nonce: &'a str,
    seq: u64,
    results: u64,
}

impl<'a> Framer<'a> {
    /// A framer for `nonce`, starting at sequence 0.
    pub fn new(nonce: &'a str) -> Framer<'a> {
        Framer {
            nonce,
            seq: 0,
            results: 0,
        }
    }

    /// `PLAN id,id,...`.
    pub fn plan(&mut self, ids: &[&str], out: &mut impl Write) -> fmt::Result {
        self.frame(out, |l| {
            l.write_str("PLAN ")?;
            for (i, id) in ids.iter().enumerate() {
                if i > 0 {
                    l.write_char(',')?;
                }
                l.write_str(id)?;
            }
            Ok(())
        })
    }

    /// `RESULT id PASS|FAIL detail`; the detail is made printable and cut to [`MAX_DETAIL`].
    pub fn result(
        &mut self,
        id: &str,
        outcome: Outcome,
        detail: fmt::Arguments<'_>,
        out: &mut impl Write,
    ) -> fmt::Result {
        let mut text = Line::new();
        Cut(&mut text).write_fmt(detail)?;
        let verdict = match outcome {
            Outcome::Pass => "PASS",
            Outcome::Fail => "FAIL",
        };
        self.results += 1;
        self.frame(out, |l| {
            write!(l, "RESULT {id} {verdict} ")?;
            let bytes = &text.as_bytes()[..text.len.min(MAX_DETAIL)];
            if bytes.is_empty() {
                return l.write_char('-');
            }
            for &b in bytes {
                let printable = (0x20..0x7f).contains(&b) && b != b'*';
                l.write_char(if printable { b as char } else { '?' })?;
            }
            Ok(())
        })
    }

    /// `END n` with the number of results sent.
    pub fn end(&mut self, out: &mut impl Write) -> fmt::Result {
        let n = self.results;
        self.frame(out, |l| write!(l, "END {n}"))
    }

    fn frame(
        &mut self,
        out: &mut impl Write,
        body: impl FnOnce(&mut Line) -> fmt::Result,
    ) -> fmt::Result {
        let mut line = Line::new();
        write!(line, "BNX1 {} {} ", self.nonce, self.seq)?;
        body(&mut line)?;
        let crc = crc32(line.as_bytes());
        write!(line, " *{crc:08x}")?;
        self.seq += 1;
        // The buffer only ever receives `&str` data, so it is valid UTF-8.
        out.write_str(core::str::from_utf8(line.as_bytes()).map_err(|_| fmt::Error)?)?;
        out.write_char('\n')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_zlib_check_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn frames_carry_nonce_sequence_and_a_checksum_of_the_line() {
        let mut out = String::new();
        let mut f = Framer::new("00112233445566778899aabbccddeeff");
        f.plan(&["mem.wx", "mem.sections"], &mut out).unwrap();
        f.result(
            "mem.wx",
            Outcome::Pass,
            format_args!("{} leaves", 12),
            &mut out,
        )
        .unwrap();
        f.result("mem.sections", Outcome::Fail, format_args!(""), &mut out)
            .unwrap();
        f.end(&mut out).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        let n = "00112233445566778899aabbccddeeff";
        let expect = [
            format!("BNX1 {n} 0 PLAN mem.wx,mem.sections"),
            format!("BNX1 {n} 1 RESULT mem.wx PASS 12 leaves"),
            format!("BNX1 {n} 2 RESULT mem.sections FAIL -"),
            format!("BNX1 {n} 3 END 2"),
        ];
        for (line, body) in lines.iter().zip(expect.iter()) {
            let (text, crc) = line.rsplit_once(" *").unwrap();
            assert_eq!(text, body);
            assert_eq!(crc, format!("{:08x}", crc32(body.as_bytes())));
        }
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn details_cannot_break_the_frame() {
        let mut out = String::new();
        let mut f = Framer::new("0123456789abcdef");
        let hostile = format!("a*b\nBNX1 fake\x1b[2J{}", "x".repeat(500));
        f.result("x", Outcome::Fail, format_args!("{hostile}"), &mut out)
            .unwrap();
        assert_eq!(out.matches('\n').count(), 1, "one line only");
        let line = out.trim_end();
        let (text, _) = line.rsplit_once(" *").unwrap();
        assert!(!text.contains('*') && !text.contains('\x1b'));
        let detail = text
            .strip_prefix("BNX1 0123456789abcdef 0 RESULT x FAIL ")
            .unwrap();
        assert_eq!(detail.len(), MAX_DETAIL);
        assert!(detail.starts_with("a?b?BNX1 fake?[2J"));
    }

    #[test]
    fn line_refuses_overflow() {
        let mut l = Line::new();
        assert!(l.write_str(&"y".repeat(MAX_FRAME)).is_ok());
        assert!(l.write_str("z").is_err());
        assert_eq!(l.as_bytes().len(), MAX_FRAME);
    }
}
