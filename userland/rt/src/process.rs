//! Reading the kernel's process records: names and how a run ended.

use brainix_abi::ProcessInfo;
use core::fmt;

/// A process's name from its record (`?` if the kernel sent bytes that are not text).
pub fn name(info: &ProcessInfo) -> &str {
    let len = (info.name_len as usize).min(info.name.len());
    core::str::from_utf8(&info.name[..len]).unwrap_or("?")
}

/// How the last run ended, decoded from [`ProcessInfo::last_exit`]: `exit N`,
/// `fault vector V at 0xADDR`, or `-` while it runs.
pub struct Exit<'a>(pub &'a ProcessInfo);

/// [`ProcessInfo::last_exit`] values from here up are faults: `FAULT + vector`.
pub const FAULT: u64 = 0x100;

impl fmt::Display for Exit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.last_exit {
            u64::MAX => f.write_str("-"),
            code if code < FAULT => write!(f, "exit {code}"),
            code => write!(
                f,
                "fault vector {} at {:#x}",
                code - FAULT,
                self.0.last_fault_addr
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    #[test]
    fn exits_and_faults_decode() {
        let mut p = ProcessInfo {
            pid: 1,
            generation: 1,
            state: 6,
            priority: 0,
            pages_used: 0,
            pages_budget: 0,
            last_exit: 101,
            last_fault_addr: 0x40_1000,
            flags: 0,
            name_len: 40,
            name: [b'a'; 32],
        };
        assert_eq!(Exit(&p).to_string(), "exit 101");
        p.last_exit = FAULT + 14;
        assert_eq!(Exit(&p).to_string(), "fault vector 14 at 0x401000");
        p.last_exit = u64::MAX;
        assert_eq!(Exit(&p).to_string(), "-");
        assert_eq!(name(&p).len(), 32);
    }
}
