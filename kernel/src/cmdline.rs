//! The kernel command line: the few options a boot loader or lab-runner may pass.
//!
//! The command line is input from outside the kernel. A malformed option is reported and
//! ignored, which always leaves the kernel in its stricter state: no nonce means no result
//! frames, no exit option means the debug-exit port is never written.

/// Longest command line kept, in bytes. Our own options need under 200; the rest is slack for a
/// loader's additions. A longer line is cut here and the cut is reported.
pub const MAX_CMDLINE: usize = 1024;

/// Nonce length bounds, in hex digits (64 to 256 bits).
pub const NONCE_MIN: usize = 16;
/// See [`NONCE_MIN`].
pub const NONCE_MAX: usize = 64;

/// The options the kernel understands, borrowed from the command line text.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Options<'a> {
    /// The runner's per-run nonce, already checked to be 16 to 64 lowercase hex digits.
    pub nonce: Option<&'a str>,
    /// Whether the board has QEMU's `isa-debug-exit` device the kernel may leave through.
    pub debug_exit: bool,
    /// The test scenario; honoured only by the test image.
    pub test: Option<&'a str>,
    /// Stop (exit code 0x10) right after the boot report and result frames instead of starting
    /// the system: for runs that check only the kernel, so they need not wait for a shell.
    pub stop_after_report: bool,
}

/// Something on the command line the kernel did not accept, for the boot log.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejected<'a> {
    /// `brainix.nonce` was not 16 to 64 lowercase hex digits.
    BadNonce(&'a str),
    /// `brainix.exit` named an exit method we do not have.
    BadExit(&'a str),
    /// `brainix.after-report` had a value other than `stop`.
    BadAfterReport(&'a str),
    /// A `brainix.` option we do not know.
    UnknownOption(&'a str),
}

impl Options<'_> {
    /// Parses `text`, calling `reject` for every option it refuses.
    pub fn parse<'a>(text: &'a str, mut reject: impl FnMut(Rejected<'a>)) -> Options<'a> {
        let mut options = Options::default();
        for word in text.split_ascii_whitespace() {
            let (key, value) = word.split_once('=').unwrap_or((word, ""));
            match key {
                "brainix.nonce" if is_nonce(value) => options.nonce = Some(value),
                "brainix.nonce" => reject(Rejected::BadNonce(value)),
                "brainix.exit" if value == "isa-debug-exit" => options.debug_exit = true,
                "brainix.exit" => reject(Rejected::BadExit(value)),
                "brainix.after-report" if value == "stop" => options.stop_after_report = true,
                "brainix.after-report" => reject(Rejected::BadAfterReport(value)),
                "brainix.test" if !value.is_empty() => options.test = Some(value),
                _ if key.starts_with("brainix.") => reject(Rejected::UnknownOption(word)),
                // Options for someone else (a loader's own words) are none of our business.
                _ => {}
            }
        }
        options
    }
}

fn is_nonce(value: &str) -> bool {
    (NONCE_MIN..=NONCE_MAX).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Options<'_>, Vec<Rejected<'_>>) {
        let mut rejected = Vec::new();
        let options = Options::parse(text, |r| rejected.push(r));
        (options, rejected)
    }

    #[test]
    fn accepts_the_runner_options() {
        let (o, r) = parse("brainix.nonce=0123456789abcdef brainix.exit=isa-debug-exit quiet");
        assert_eq!(o.nonce, Some("0123456789abcdef"));
        assert!(o.debug_exit);
        assert_eq!(o.test, None);
        assert!(r.is_empty());
    }

    #[test]
    fn a_bad_nonce_gives_no_nonce_and_is_reported() {
        for bad in [
            "",
            "short",
            "0123456789ABCDEF",
            "0123456789abcdeg",
            &"a".repeat(65),
        ] {
            let line = format!("brainix.nonce={bad}");
            let (o, r) = parse(&line);
            assert_eq!(o.nonce, None, "{bad:?} accepted");
            assert_eq!(r, vec![Rejected::BadNonce(bad)]);
        }
    }

    #[test]
    fn stopping_after_the_report_needs_the_exact_value() {
        let (o, r) = parse("brainix.after-report=stop");
        assert!(o.stop_after_report && r.is_empty());
        let (o, r) = parse("brainix.after-report=halt brainix.after-report");
        assert!(!o.stop_after_report);
        assert_eq!(
            r,
            vec![
                Rejected::BadAfterReport("halt"),
                Rejected::BadAfterReport("")
            ]
        );
    }

    #[test]
    fn exit_is_off_unless_asked_for_exactly() {
        let (o, r) = parse("brainix.exit=reboot brainix.exitx=1");
        assert!(!o.debug_exit);
        assert_eq!(
            r,
            vec![
                Rejected::BadExit("reboot"),
                Rejected::UnknownOption("brainix.exitx=1")
            ]
        );
        assert!(!parse("").0.debug_exit);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 0x1234_5678_u32;
        for _ in 0..2000 {
            let bytes: Vec<u8> = (0..64)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    b" =.abcdefbrainix.nonceexit0123"[(seed % 30) as usize]
                })
                .collect();
            let text = String::from_utf8(bytes).unwrap();
            let _ = parse(&text);
        }
    }
}
