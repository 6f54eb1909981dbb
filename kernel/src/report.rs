//! Machine-readable output: the boot report line and the nonce-framed result lines.
//!
//! The format is the contract in `docs/serial-protocol.md`. Frames are built in a fixed buffer
//! and checksummed before a byte of them is written, so a frame either goes out whole or not at
//! all.

use core::fmt::{self, Write};

/// Longest frame line, in bytes. A frame carries at most a 64-digit nonce, a 48-byte id and a
/// 160-byte detail; 400 bytes holds that with room. A `PLAN` that would not fit is split into
/// several by [`Framer::plan`].
pub const MAX_FRAME: usize = 400;
/// Longest detail text in a `RESULT` frame.
pub const MAX_DETAIL: usize = brainix_abi::MAX_REPORT_DETAIL;

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

/// The checks the kernel reports itself at boot, in the order it reports them. A system's report
/// capabilities may not name these.
pub const KERNEL_CHECKS: [&str; 7] = [
    "boot.cpu-required",
    "boot.protections",
    "mem.wx",
    "mem.sections",
    "mem.stack-guards",
    "mem.no-wx-alias",
    "mem.frame-pool",
];

/// Longest nonce the protocol allows.
pub const MAX_NONCE: usize = 64;

/// Bytes a frame needs besides its body: `BNX1 `, the nonce, a space, up to 20 sequence digits,
/// a space, and the ` *xxxxxxxx` trailer.
const FRAME_OVERHEAD: usize = 5 + MAX_NONCE + 1 + 20 + 1 + 10;

/// Writes frames for one boot: it owns the sequence counter so numbers never repeat or skip,
/// and a copy of the nonce so it can outlive the boot path and serve the running system.
pub struct Framer {
    nonce: [u8; MAX_NONCE],
    nonce_len: usize,
    seq: u64,
    results: u64,
}

impl Framer {
    /// A framer for `nonce`, starting at sequence 0; `None` when the nonce is longer than the
    /// protocol allows (the command-line parser refuses such a nonce first).
    pub fn new(nonce: &str) -> Option<Framer> {
        let mut copy = [0; MAX_NONCE];
        copy.get_mut(..nonce.len())?
            .copy_from_slice(nonce.as_bytes());
        Some(Framer {
            nonce: copy,
            nonce_len: nonce.len(),
            seq: 0,
            results: 0,
        })
    }

    /// `PLAN id,id,...`, split into as many PLAN frames as the ids need (each frame fits in
    /// [`MAX_FRAME`]); the protocol takes their union. Ids longer than a frame are skipped, and
    /// the runner then reports them MISS.
    pub fn plan<'i, I>(&mut self, ids: I, out: &mut impl Write) -> fmt::Result
    where
        I: Iterator<Item = &'i str> + Clone,
    {
        const BUDGET: usize = MAX_FRAME - FRAME_OVERHEAD - "PLAN ".len();
        let mut rest = ids.filter(|id| id.len() <= BUDGET).peekable();
        while rest.peek().is_some() {
            // Ids joined by commas: each costs its length plus one, the first no comma.
            let mut used = 0;
            let count = rest
                .clone()
                .take_while(|id| {
                    used += id.len() + 1;
                    used <= BUDGET + 1
                })
                .count();
            let chunk = rest.clone().take(count);
            self.frame(out, |l| {
                l.write_str("PLAN ")?;
                for (i, id) in chunk.enumerate() {
                    if i > 0 {
                        l.write_char(',')?;
                    }
                    l.write_str(id)?;
                }
                Ok(())
            })?;
            for _ in 0..count {
                rest.next();
            }
        }
        Ok(())
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
        line.write_str("BNX1 ")?;
        // The nonce was copied from a `&str`, so it is valid UTF-8.
        line.write_str(
            core::str::from_utf8(&self.nonce[..self.nonce_len]).map_err(|_| fmt::Error)?,
        )?;
        write!(line, " {} ", self.seq)?;
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
        let mut f = Framer::new("00112233445566778899aabbccddeeff").unwrap();
        f.plan(["mem.wx", "mem.sections"].into_iter(), &mut out)
            .unwrap();
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
        let mut f = Framer::new("0123456789abcdef").unwrap();
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
    fn a_long_plan_is_split_into_frames_that_fit() {
        let nonce = "ab".repeat(32);
        let mut f = Framer::new(&nonce).unwrap();
        let names: Vec<String> = (0..60).map(|i| format!("check-number-{i:03}.x")).collect();
        let mut out = String::new();
        f.plan(names.iter().map(String::as_str), &mut out).unwrap();
        let mut seen = Vec::new();
        for (seq, line) in out.lines().enumerate() {
            assert!(line.len() <= MAX_FRAME, "{} bytes", line.len());
            let (text, crc) = line.rsplit_once(" *").unwrap();
            assert_eq!(crc, format!("{:08x}", crc32(text.as_bytes())));
            let body = text
                .strip_prefix(&format!("BNX1 {nonce} {seq} PLAN "))
                .unwrap();
            seen.extend(body.split(',').map(String::from));
        }
        assert!(out.lines().count() > 1);
        assert_eq!(seen, names, "every id once, in order");
        assert!(Framer::new(&"a".repeat(MAX_NONCE + 1)).is_none());
    }

    #[test]
    fn line_refuses_overflow() {
        let mut l = Line::new();
        assert!(l.write_str(&"y".repeat(MAX_FRAME)).is_ok());
        assert!(l.write_str("z").is_err());
        assert_eq!(l.as_bytes().len(), MAX_FRAME);
    }
}
