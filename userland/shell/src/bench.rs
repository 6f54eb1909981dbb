//! `ipc-bench` statistics and its result line: pure, tested on the host.

use core::fmt;

/// Round trips timed per kind.
pub const ROUNDS: usize = 10_000;
/// Untimed round trips first, so the first timed ones do not pay for cold caches and TLBs.
pub const WARMUP: usize = 100;

/// Median and 99th percentile of a set of TSC deltas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The middle sample (the upper one of the two middles for an even count).
    pub median: u64,
    /// The smallest sample at or above 99 % of the samples (nearest rank).
    pub p99: u64,
}

/// Sorts `samples` and summarises them; `None` when there are none.
pub fn summarize(samples: &mut [u32]) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let n = samples.len();
    let rank = (n * 99).div_ceil(100).max(1);
    Some(Summary {
        median: u64::from(samples[n / 2]),
        p99: u64::from(samples[rank - 1]),
    })
}

/// What `fs-bench` measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsBench {
    /// The file's size, read once per path.
    pub bytes: u64,
    /// TSC ticks for the read through the filesystem server (shell → fs → block → device).
    pub file_ticks: u64,
    /// TSC ticks for the same read inside the filesystem server (fs → block → device).
    pub direct_ticks: u64,
    /// TSC ticks per millisecond, from the kernel's clock across the whole run.
    pub tsc_per_ms: u64,
}

/// MiB/s in hundredths for `bytes` in `ticks` at `tsc_per_ms` (integer arithmetic only).
pub fn mib_per_s_hundredths(bytes: u64, ticks: u64, tsc_per_ms: u64) -> u64 {
    let num = u128::from(bytes) * u128::from(tsc_per_ms) * 1000 * 100;
    let den = u128::from(ticks.max(1)) * 1024 * 1024;
    ((num + den / 2) / den) as u64
}

impl fmt::Display for FsBench {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = mib_per_s_hundredths(self.bytes, self.file_ticks, self.tsc_per_ms);
        let direct = mib_per_s_hundredths(self.bytes, self.direct_ticks, self.tsc_per_ms);
        write!(
            f,
            "FS-BENCH bytes={} file_mib_s={}.{:02} direct_mib_s={}.{:02} file_ticks={} direct_ticks={} tsc_per_ms={}",
            self.bytes,
            file / 100,
            file % 100,
            direct / 100,
            direct % 100,
            self.file_ticks,
            self.direct_ticks,
            self.tsc_per_ms
        )
    }
}

/// The one machine-readable line `ipc-bench` prints (without the newline).
pub struct Line {
    /// The bare kernel entry and exit.
    pub null: Summary,
    /// A call to the echo server and its reply.
    pub call: Summary,
    /// Samples per kind.
    pub n: usize,
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Integer arithmetic (the target has no floating point): hundredths, rounded half up.
        let null = self.null.median.max(1);
        let hundredths =
            (u128::from(self.call.median) * 100 + u128::from(null) / 2) / u128::from(null);
        write!(
            f,
            "IPC-BENCH null_median={} null_p99={} call_median={} call_p99={} n={} ratio={}.{:02}",
            self.null.median,
            self.null.p99,
            self.call.median,
            self.call.p99,
            self.n,
            hundredths / 100,
            hundredths % 100
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p99_by_nearest_rank() {
        let mut s: Vec<u32> = (1..=10_000).rev().collect();
        assert_eq!(
            summarize(&mut s),
            Some(Summary {
                median: 5001,
                p99: 9900
            })
        );
        assert_eq!(summarize(&mut [7]), Some(Summary { median: 7, p99: 7 }));
        assert_eq!(summarize(&mut []), None);
    }

    #[test]
    fn the_line_is_exact() {
        let line = Line {
            null: Summary {
                median: 300,
                p99: 900,
            },
            call: Summary {
                median: 2_005,
                p99: 5_000,
            },
            n: ROUNDS,
        };
        assert_eq!(
            line.to_string(),
            "IPC-BENCH null_median=300 null_p99=900 call_median=2005 call_p99=5000 n=10000 ratio=6.68"
        );
    }

    #[test]
    fn a_zero_null_median_does_not_divide_by_zero() {
        let zero = Summary { median: 0, p99: 0 };
        let line = Line {
            null: zero,
            call: Summary { median: 5, p99: 5 },
            n: 1,
        };
        assert!(line.to_string().ends_with("ratio=5.00"));
    }

    #[test]
    fn fs_bench_rates_are_bytes_over_time() {
        // 1 MiB in 1000 ticks at 1000 ticks per ms: 1 MiB in 1 ms = 1000 MiB/s.
        assert_eq!(mib_per_s_hundredths(1 << 20, 1000, 1000), 100_000);
        let b = FsBench {
            bytes: 1 << 20,
            file_ticks: 4_000_000,
            direct_ticks: 2_000_000,
            tsc_per_ms: 2_000_000,
        };
        assert_eq!(
            b.to_string(),
            "FS-BENCH bytes=1048576 file_mib_s=500.00 direct_mib_s=1000.00 file_ticks=4000000 direct_ticks=2000000 tsc_per_ms=2000000"
        );
        assert_eq!(
            mib_per_s_hundredths(1 << 20, 0, 1),
            100_000,
            "zero ticks counts as one, never a division by zero"
        );
    }
}
