//! Why the kernel stopped, as a number a test harness can check.
//!
//! On a board with QEMU's `isa-debug-exit` device (and only when the command line says so, see
//! [`crate::cmdline`]) the kernel writes the code to port `0xf4`, and QEMU exits with status
//! `(code << 1) | 1`. The table is mirrored in `docs/serial-protocol.md`.

/// A reason to stop the machine. Each has its own code so that a harness never confuses a
/// refusal with a crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCode {
    /// Boot finished and there is nothing left to run.
    Success,
    /// The CPU lacks RDRAND (or it never returned a value).
    MissingRdrand,
    /// The CPU lacks the no-execute bit.
    MissingNx,
    /// The page-table self-check found a violation.
    SelfCheckFailed,
    /// The kernel panicked.
    Panic,
    /// Neither a PVH start info nor a multiboot info was handed over.
    BadBootProtocol,
    /// A fixed-size pool ran out while booting.
    PoolExhausted,
    /// A CPU exception in kernel context, with its vector.
    Exception(u8),
}

impl ExitCode {
    /// The value written to the debug-exit port.
    pub const fn code(self) -> u8 {
        match self {
            ExitCode::Success => 0x10,
            ExitCode::MissingRdrand => 0x11,
            ExitCode::MissingNx => 0x12,
            ExitCode::SelfCheckFailed => 0x13,
            ExitCode::Panic => 0x14,
            ExitCode::BadBootProtocol => 0x15,
            ExitCode::PoolExhausted => 0x16,
            // Vectors are below 32 for exceptions; masking keeps the value in range for any u8.
            ExitCode::Exception(vector) => 0x40 | (vector & 0x3f),
        }
    }

    /// The status QEMU exits with when the kernel leaves through `isa-debug-exit`.
    pub const fn qemu_status(self) -> i32 {
        ((self.code() as i32) << 1) | 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_match_the_documented_qemu_statuses() {
        assert_eq!(ExitCode::Success.qemu_status(), 33);
        assert_eq!(ExitCode::MissingRdrand.qemu_status(), 35);
        assert_eq!(ExitCode::MissingNx.qemu_status(), 37);
        assert_eq!(ExitCode::SelfCheckFailed.qemu_status(), 39);
        assert_eq!(ExitCode::Panic.qemu_status(), 41);
        assert_eq!(ExitCode::Exception(14).qemu_status(), 157);
        let mut seen = std::collections::HashSet::new();
        let all = [
            ExitCode::Success,
            ExitCode::MissingRdrand,
            ExitCode::MissingNx,
            ExitCode::SelfCheckFailed,
            ExitCode::Panic,
            ExitCode::BadBootProtocol,
            ExitCode::PoolExhausted,
        ];
        for c in all.into_iter().chain((0..32).map(ExitCode::Exception)) {
            assert!(seen.insert(c.code()), "{c:?} reuses code {:#x}", c.code());
        }
    }
}
