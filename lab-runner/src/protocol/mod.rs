//! The serial result protocol (`docs/serial-protocol.md`), host side.
//!
//! Everything the target prints is untrusted. This module turns console bytes into lines
//! ([`lines`]), lines into checked frames ([`parse_frame`]), and a boot's frames into a
//! [`transcript::Transcript`] that is the only source of target results. A frame counts only when
//! it carries this run's nonce, the next sequence number and a correct CRC-32; the plan is announced
//! first, so a result that never arrives is MISS rather than absent.

pub mod lines;
pub mod transcript;

use std::fmt;

use thiserror::Error;

/// Longest line the parser looks at; longer lines are cut (protocol §3). Also bounds the memory a
/// target can make the runner hold for one partial line.
pub const MAX_LINE: usize = 4096;

/// Longest RESULT detail the protocol allows (protocol §2).
pub const MAX_DETAIL: usize = 160;

/// Bytes of randomness in a runner nonce: 128 bits, 32 hex digits, inside the protocol's 16..=64.
pub const NONCE_BYTES: usize = 16;

/// Prefix of every frame.
pub const FRAME_PREFIX: &[u8] = b"BNX1 ";

/// Prefix of the boot report line.
pub const BOOT_REPORT_PREFIX: &[u8] = b"BRAINIX-BOOT-REPORT v1";

/// A per-boot nonce: lowercase hex, 16 to 64 digits.
#[derive(Clone, PartialEq, Eq)]
pub struct Nonce(String);

impl Nonce {
    /// A fresh random nonce from the operating system's generator.
    pub fn generate() -> Nonce {
        let mut bytes = [0u8; NONCE_BYTES];
        // The OS generator failing is not something a test run can recover from sensibly; fall
        // back to time and pid so a run still gets a value that differs per boot.
        if getrandom::fill(&mut bytes).is_err() {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let mix = t ^ ((std::process::id() as u128) << 64);
            bytes.copy_from_slice(&mix.to_le_bytes());
        }
        Nonce(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Accepts an existing nonce if it has the protocol's shape.
    pub fn parse(s: &str) -> Option<Nonce> {
        let ok = (16..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| Nonce(s.to_owned()))
    }

    /// The hex text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nonce({})", self.0)
    }
}

/// A frame's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The checks this boot will report.
    Plan(Vec<String>),
    /// One check's verdict.
    Result {
        /// Check id.
        id: String,
        /// PASS (true) or FAIL (false).
        pass: bool,
        /// Detail text, `-` when empty.
        detail: String,
    },
    /// The number of RESULT frames the boot sent.
    End(u64),
}

/// Why a line that claims to be one of our frames was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// No ` *<crc>` trailer, or the trailer is not 8 lowercase hex digits.
    #[error("no ` *<8 lowercase hex>` CRC trailer")]
    NoCrc,
    /// The CRC does not match the line.
    #[error("CRC mismatch: line says {claimed:08x}, bytes give {actual:08x}")]
    BadCrc {
        /// What the line carried.
        claimed: u32,
        /// What the bytes hash to.
        actual: u32,
    },
    /// The sequence number is not decimal.
    #[error("sequence number `{0}` is not a decimal number")]
    BadSeq(String),
    /// Unknown frame kind.
    #[error("unknown frame kind `{0}`; expected PLAN, RESULT or END")]
    BadKind(String),
    /// Body does not follow the protocol.
    #[error("malformed {kind} body: {why}")]
    BadBody {
        /// Which kind.
        kind: &'static str,
        /// What is wrong.
        why: String,
    },
    /// The line was longer than [`MAX_LINE`] and was cut.
    #[error("line longer than {MAX_LINE} bytes")]
    Truncated,
}

/// What a console line is, as far as results go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineKind {
    /// Not a frame.
    Log,
    /// The boot report, parsed into `key=value` pairs.
    BootReport(Vec<(String, String)>),
    /// Starts like a frame but does not carry this run's nonce (stale, forged or from another run).
    ForeignFrame,
    /// Carries this run's nonce but is not a valid frame.
    BadFrame {
        /// The sequence number if it could be read.
        seq: Option<u64>,
        /// Why.
        error: FrameError,
    },
    /// A valid frame with this run's nonce.
    Frame {
        /// Sequence number.
        seq: u64,
        /// Payload.
        frame: Frame,
    },
}

/// Classifies one console line (already stripped of `\r\n`). `truncated` says the line was longer
/// than [`MAX_LINE`]. Never panics on any input.
pub fn classify(line: &[u8], truncated: bool, nonce: &Nonce) -> LineKind {
    if line.starts_with(BOOT_REPORT_PREFIX) {
        return match parse_boot_report(line) {
            Some(kv) => LineKind::BootReport(kv),
            None => LineKind::Log,
        };
    }
    let Some(rest) = line.strip_prefix(FRAME_PREFIX) else {
        return LineKind::Log;
    };
    // The nonce decides whether the line is ours at all, before anything else is believed.
    let nonce_end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
    if &rest[..nonce_end] != nonce.as_str().as_bytes() {
        return LineKind::ForeignFrame;
    }
    let after_nonce = rest.get(nonce_end + 1..).unwrap_or(&[]);
    let seq_end = after_nonce
        .iter()
        .position(|&b| b == b' ')
        .unwrap_or(after_nonce.len());
    let seq = std::str::from_utf8(&after_nonce[..seq_end])
        .ok()
        .and_then(parse_decimal);
    if truncated {
        return LineKind::BadFrame {
            seq,
            error: FrameError::Truncated,
        };
    }
    match parse_frame(line) {
        Ok((seq, frame)) => LineKind::Frame { seq, frame },
        Err(error) => LineKind::BadFrame { seq, error },
    }
}

fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty()
        || s.len() > 19
        || !s.bytes().all(|b| b.is_ascii_digit())
        || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// CRC-32 (IEEE, zlib) as the protocol uses it.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// Builds a correctly framed line (without newline). The runner never sends frames; this exists
/// so tests and fake targets speak exactly the protocol the parser checks.
pub fn encode_frame(nonce: &Nonce, seq: u64, frame: &Frame) -> String {
    let body = match frame {
        Frame::Plan(ids) => format!("PLAN {}", ids.join(",")),
        Frame::Result { id, pass, detail } => format!(
            "RESULT {id} {} {detail}",
            if *pass { "PASS" } else { "FAIL" }
        ),
        Frame::End(n) => format!("END {n}"),
    };
    let head = format!("BNX1 {} {seq} {body}", nonce.as_str());
    format!("{head} *{:08x}", crc32(head.as_bytes()))
}

/// Parses a line whose nonce was already matched: CRC, sequence, kind, body.
fn parse_frame(line: &[u8]) -> Result<(u64, Frame), FrameError> {
    let star = line
        .windows(2)
        .rposition(|w| w == b" *")
        .ok_or(FrameError::NoCrc)?;
    let crc_text = &line[star + 2..];
    if crc_text.len() != 8
        || !crc_text
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    {
        return Err(FrameError::NoCrc);
    }
    let claimed = u32::from_str_radix(
        std::str::from_utf8(crc_text).map_err(|_| FrameError::NoCrc)?,
        16,
    )
    .map_err(|_| FrameError::NoCrc)?;
    let head = &line[..star];
    let actual = crc32(head);
    if claimed != actual {
        return Err(FrameError::BadCrc { claimed, actual });
    }
    // The CRC matched, but the bytes are still the target's: everything below is checked.
    let head = std::str::from_utf8(head).map_err(|_| FrameError::BadBody {
        kind: "frame",
        why: "not ASCII".into(),
    })?;
    if !head.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(FrameError::BadBody {
            kind: "frame",
            why: "control or non-ASCII bytes".into(),
        });
    }
    let mut parts = head.splitn(5, ' ');
    let _magic = parts.next();
    let _nonce = parts.next();
    let seq_text = parts.next().unwrap_or("");
    let seq = parse_decimal(seq_text)
        .ok_or_else(|| FrameError::BadSeq(seq_text.chars().take(24).collect()))?;
    let kind = parts.next().unwrap_or("");
    let body = parts.next().unwrap_or("");
    let frame = match kind {
        "PLAN" => {
            let ids: Vec<String> = body.split(',').map(str::to_owned).collect();
            if let Some(bad) = ids.iter().find(|id| !crate::plan::is_check_id(id)) {
                return Err(FrameError::BadBody {
                    kind: "PLAN",
                    why: format!("`{}` is not a check id", clip(bad)),
                });
            }
            let mut seen = std::collections::BTreeSet::new();
            if let Some(dup) = ids.iter().find(|id| !seen.insert(id.as_str())) {
                return Err(FrameError::BadBody {
                    kind: "PLAN",
                    why: format!("`{dup}` announced twice"),
                });
            }
            Frame::Plan(ids)
        }
        "RESULT" => {
            let mut p = body.splitn(3, ' ');
            let id = p.next().unwrap_or("");
            let verdict = p.next().unwrap_or("");
            let detail = p.next().unwrap_or("");
            if !crate::plan::is_check_id(id) {
                return Err(FrameError::BadBody {
                    kind: "RESULT",
                    why: format!("`{}` is not a check id", clip(id)),
                });
            }
            let pass = match verdict {
                "PASS" => true,
                "FAIL" => false,
                other => {
                    return Err(FrameError::BadBody {
                        kind: "RESULT",
                        why: format!("verdict `{}` is not PASS or FAIL", clip(other)),
                    });
                }
            };
            if detail.is_empty() || detail.len() > MAX_DETAIL || detail.contains('*') {
                return Err(FrameError::BadBody {
                    kind: "RESULT",
                    why: format!("detail must be 1 to {MAX_DETAIL} printable bytes without `*`"),
                });
            }
            Frame::Result {
                id: id.to_owned(),
                pass,
                detail: detail.to_owned(),
            }
        }
        "END" => Frame::End(parse_decimal(body).ok_or_else(|| FrameError::BadBody {
            kind: "END",
            why: format!("count `{}` is not a number", clip(body)),
        })?),
        other => return Err(FrameError::BadKind(clip(other))),
    };
    Ok((seq, frame))
}

fn clip(s: &str) -> String {
    s.chars().take(48).collect()
}

fn parse_boot_report(line: &[u8]) -> Option<Vec<(String, String)>> {
    let text = std::str::from_utf8(line).ok()?;
    let rest = text.strip_prefix("BRAINIX-BOOT-REPORT v1")?;
    if !rest.is_empty() && !rest.starts_with(' ') {
        return None;
    }
    let mut kv = Vec::new();
    for word in rest.split(' ').filter(|w| !w.is_empty()) {
        let (k, v) = word.split_once('=')?;
        if k.is_empty() || !word.bytes().all(|b| (0x21..0x7f).contains(&b)) {
            return None;
        }
        kv.push((k.to_owned(), v.to_owned()));
    }
    Some(kv)
}

/// What a QEMU exit status means under the protocol's `isa-debug-exit` table (§4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitMeaning {
    /// 33: boot finished.
    Finished,
    /// 35..45: the kernel refused or failed in a known way; the text names which.
    Kernel(&'static str),
    /// `129 + 2*vector`: CPU exception in the kernel.
    Exception(u8),
    /// 0: the guest powered off or QEMU was quit; not a kernel exit.
    QemuQuit,
    /// Anything else: QEMU itself failed (bad arguments, missing firmware, ...).
    QemuError,
}

impl ExitMeaning {
    /// Decodes a QEMU exit status.
    pub fn decode(status: i32) -> ExitMeaning {
        match status {
            33 => ExitMeaning::Finished,
            35 => ExitMeaning::Kernel("refused: CPU lacks RDRAND"),
            37 => ExitMeaning::Kernel("refused: CPU lacks NX"),
            39 => ExitMeaning::Kernel("page-table self-check failed"),
            41 => ExitMeaning::Kernel("kernel panic"),
            43 => ExitMeaning::Kernel("refused: boot protocol not understood"),
            45 => ExitMeaning::Kernel("refused: a fixed pool was exhausted during boot"),
            // Written by the UEFI loader, not the kernel, through the same device.
            47 => ExitMeaning::Kernel("refused by the loader: signature, image or TPM"),
            0 => ExitMeaning::QemuQuit,
            s if (129..=255).contains(&s) && s % 2 == 1 => {
                ExitMeaning::Exception(((s - 129) / 2) as u8)
            }
            _ => ExitMeaning::QemuError,
        }
    }

    /// True when the status was written by the kernel through isa-debug-exit.
    pub fn is_kernel_exit(&self) -> bool {
        matches!(
            self,
            ExitMeaning::Finished | ExitMeaning::Kernel(_) | ExitMeaning::Exception(_)
        )
    }
}

impl fmt::Display for ExitMeaning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitMeaning::Finished => write!(f, "boot finished"),
            ExitMeaning::Kernel(s) => write!(f, "{s}"),
            ExitMeaning::Exception(v) => write!(f, "CPU exception {v} in the kernel"),
            ExitMeaning::QemuQuit => write!(f, "guest powered off or QEMU quit"),
            ExitMeaning::QemuError => write!(f, "QEMU failed (not a kernel exit code)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nonce() -> Nonce {
        Nonce::parse("00112233445566778899aabbccddeeff").unwrap()
    }

    #[test]
    fn round_trips_every_frame_kind() {
        let n = nonce();
        for (seq, f) in [
            (
                0,
                Frame::Plan(vec!["mem.wx".into(), "boot.cpu-required".into()]),
            ),
            (
                1,
                Frame::Result {
                    id: "mem.wx".into(),
                    pass: true,
                    detail: "-".into(),
                },
            ),
            (
                2,
                Frame::Result {
                    id: "mem.wx".into(),
                    pass: false,
                    detail: "page 0xffff8000 is W+X".into(),
                },
            ),
            (3, Frame::End(2)),
        ] {
            let line = encode_frame(&n, seq, &f);
            assert_eq!(
                classify(line.as_bytes(), false, &n),
                LineKind::Frame { seq, frame: f }
            );
        }
    }

    #[test]
    fn crc_matches_the_protocol_example_algorithm() {
        // zlib crc32("123456789") is the standard check value.
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn a_flipped_byte_is_a_bad_crc_not_a_result() {
        let n = nonce();
        let line = encode_frame(
            &n,
            1,
            &Frame::Result {
                id: "mem.wx".into(),
                pass: false,
                detail: "-".into(),
            },
        );
        let forged = line.replace("FAIL", "PASS");
        assert!(matches!(
            classify(forged.as_bytes(), false, &n),
            LineKind::BadFrame {
                seq: Some(1),
                error: FrameError::BadCrc { .. }
            }
        ));
    }

    #[test]
    fn wrong_nonce_is_foreign_even_with_a_good_crc() {
        let old = Nonce::parse("ffffffffffffffffffffffffffffffff").unwrap();
        let line = encode_frame(&old, 0, &Frame::Plan(vec!["mem.wx".into()]));
        assert_eq!(
            classify(line.as_bytes(), false, &nonce()),
            LineKind::ForeignFrame
        );
        // A nonce that is a prefix of ours is not ours either.
        let short = format!(
            "BNX1 0011223344556677 0 END 0 *{:08x}",
            crc32(b"BNX1 0011223344556677 0 END 0")
        );
        assert_eq!(
            classify(short.as_bytes(), false, &nonce()),
            LineKind::ForeignFrame
        );
    }

    #[test]
    fn malformed_bodies_are_rejected_with_reasons() {
        let n = nonce();
        let sign = |head: &str| format!("{head} *{:08x}", crc32(head.as_bytes()));
        let cases = [
            (format!("BNX1 {} 01 END 0", n.as_str()), "sequence"),
            (
                format!("BNX1 {} 1 RESULT mem.wx MAYBE -", n.as_str()),
                "verdict",
            ),
            (
                format!("BNX1 {} 1 RESULT Mem.WX PASS -", n.as_str()),
                "check id",
            ),
            (
                format!("BNX1 {} 1 RESULT mem.wx PASS ", n.as_str()),
                "detail",
            ),
            (format!("BNX1 {} 1 HELLO x", n.as_str()), "kind"),
            (format!("BNX1 {} 0 PLAN a,a", n.as_str()), "twice"),
            (
                format!("BNX1 {} 1 RESULT mem.wx PASS \x1b[31mok", n.as_str()),
                "control",
            ),
        ];
        for (head, why) in cases {
            match classify(sign(&head).as_bytes(), false, &n) {
                LineKind::BadFrame { error, .. } => {
                    assert!(error.to_string().contains(why), "{head:?}: {error}")
                }
                other => panic!("{head:?} gave {other:?}"),
            }
        }
        let no_crc = format!("BNX1 {} 1 END 0", n.as_str());
        assert!(matches!(
            classify(no_crc.as_bytes(), false, &n),
            LineKind::BadFrame {
                error: FrameError::NoCrc,
                ..
            }
        ));
    }

    #[test]
    fn truncated_frame_lines_are_never_results() {
        let n = nonce();
        let line = encode_frame(&n, 0, &Frame::End(0));
        assert!(matches!(
            classify(line.as_bytes(), true, &n),
            LineKind::BadFrame {
                error: FrameError::Truncated,
                ..
            }
        ));
    }

    #[test]
    fn boot_report_is_parsed_and_junk_is_log() {
        let kv = classify(
            b"BRAINIX-BOOT-REPORT v1 cpu=rdrand,nx selfcheck=PASS",
            false,
            &nonce(),
        );
        assert_eq!(
            kv,
            LineKind::BootReport(vec![
                ("cpu".into(), "rdrand,nx".into()),
                ("selfcheck".into(), "PASS".into())
            ])
        );
        assert_eq!(
            classify(b"BRAINIX-BOOT-REPORT v1 nonsense", false, &nonce()),
            LineKind::Log
        );
        assert_eq!(
            classify(b"BRAINIX-BOOT-REPORT v10 a=b", false, &nonce()),
            LineKind::Log
        );
    }

    #[test]
    fn exit_codes_decode_as_documented() {
        assert_eq!(ExitMeaning::decode(33), ExitMeaning::Finished);
        assert_eq!(
            ExitMeaning::decode(35),
            ExitMeaning::Kernel("refused: CPU lacks RDRAND")
        );
        assert_eq!(ExitMeaning::decode(157), ExitMeaning::Exception(14));
        assert_eq!(ExitMeaning::decode(129), ExitMeaning::Exception(0));
        assert_eq!(ExitMeaning::decode(1), ExitMeaning::QemuError);
        assert!(!ExitMeaning::decode(0).is_kernel_exit());
    }

    #[test]
    fn nonces_are_fresh_and_well_formed() {
        let a = Nonce::generate();
        let b = Nonce::generate();
        assert_ne!(a, b);
        assert!(Nonce::parse(a.as_str()).is_some());
        assert!(Nonce::parse("ABCDEF0123456789").is_none());
        assert!(Nonce::parse("abc").is_none());
    }

    #[test]
    fn random_bytes_never_panic_and_never_become_frames() {
        let n = nonce();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let mut line = b"BNX1 00112233445566778899aabbccddeeff ".to_vec();
            for _ in 0..(x % 80) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let table = b"0123 RESULTPLANEND*,.-abcxyz\x00\xff\x1b";
                line.push(table[(x % table.len() as u64) as usize]);
            }
            assert!(
                !matches!(classify(&line, false, &n), LineKind::Frame { .. }),
                "{line:?}"
            );
        }
    }
}
