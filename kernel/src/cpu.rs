//! CPU features the kernel requires or uses, decoded from CPUID values.
//!
//! The decoding is pure so it is tested on the host; `arch` executes CPUID and hands the raw
//! registers in.

use core::fmt;

/// Raw CPUID registers the kernel looks at.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuidLeaves {
    /// Leaf 1, ECX.
    pub l1_ecx: u32,
    /// Leaf 7 sub-leaf 0, EBX (zero when leaf 7 does not exist).
    pub l7_ebx: u32,
    /// Leaf 7 sub-leaf 0, ECX (zero when leaf 7 does not exist).
    pub l7_ecx: u32,
    /// Leaf 0x8000_0001, EDX.
    pub ext1_edx: u32,
}

/// The features BraiNIX cares about.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features {
    /// RDRAND: required (the kernel's only entropy source it trusts at boot).
    pub rdrand: bool,
    /// No-execute page bit: required (W^X is impossible without it).
    pub nx: bool,
    /// Supervisor-mode execution prevention: enabled when present.
    pub smep: bool,
    /// Supervisor-mode access prevention: enabled when present.
    pub smap: bool,
    /// User-mode instruction prevention: enabled when present.
    pub umip: bool,
    /// Process-context identifiers: used when present.
    pub pcid: bool,
}

impl Features {
    /// Decodes the feature bits from raw CPUID leaves.
    pub fn decode(raw: &CpuidLeaves) -> Features {
        let bit = |reg: u32, n: u32| reg & (1 << n) != 0;
        Features {
            rdrand: bit(raw.l1_ecx, 30),
            pcid: bit(raw.l1_ecx, 17),
            smep: bit(raw.l7_ebx, 7),
            smap: bit(raw.l7_ebx, 20),
            umip: bit(raw.l7_ecx, 2),
            nx: bit(raw.ext1_edx, 20),
        }
    }

    /// The required features that are missing, in a fixed order, for the refusal line.
    pub fn missing_required(&self) -> Missing {
        Missing {
            rdrand: !self.rdrand,
            nx: !self.nx,
        }
    }
}

/// Required features the CPU lacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Missing {
    /// RDRAND is missing.
    pub rdrand: bool,
    /// NX is missing.
    pub nx: bool,
}

impl Missing {
    /// True when nothing required is missing.
    pub fn is_empty(&self) -> bool {
        !self.rdrand && !self.nx
    }
}

impl fmt::Display for Missing {
    /// Names what is missing and where a reader can look it up.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        if self.rdrand {
            f.write_str("RDRAND (CPUID.01H:ECX[30])")?;
            sep = " and ";
        }
        if self.nx {
            write!(f, "{sep}NX (CPUID.80000001H:EDX[20])")?;
        }
        Ok(())
    }
}

impl fmt::Display for Features {
    /// The `cpu=` value of the boot report: each feature, `-` in front when absent.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = [
            ("rdrand", self.rdrand),
            ("nx", self.nx),
            ("smep", self.smep),
            ("smap", self.smap),
            ("umip", self.umip),
            ("pcid", self.pcid),
        ];
        for (i, (name, present)) in list.iter().enumerate() {
            let comma = if i == 0 { "" } else { "," };
            let minus = if *present { "" } else { "-" };
            write!(f, "{comma}{minus}{name}")?;
        }
        Ok(())
    }
}

/// Short names, as the SDM abbreviates them.
const EXCEPTION_NAMES: [&str; 32] = [
    "#DE divide error",
    "#DB debug",
    "NMI",
    "#BP breakpoint",
    "#OF overflow",
    "#BR bound range",
    "#UD invalid opcode",
    "#NM device not available",
    "#DF double fault",
    "coprocessor segment overrun",
    "#TS invalid TSS",
    "#NP segment not present",
    "#SS stack fault",
    "#GP general protection",
    "#PF page fault",
    "reserved 15",
    "#MF x87 error",
    "#AC alignment check",
    "#MC machine check",
    "#XM SIMD error",
    "#VE virtualization",
    "#CP control protection",
    "reserved 22",
    "reserved 23",
    "reserved 24",
    "reserved 25",
    "reserved 26",
    "reserved 27",
    "#HV hypervisor injection",
    "#VC VMM communication",
    "#SX security",
    "reserved 31",
];

/// The name of exception `vector` (0 to 31), for fault reports in the kernel and in processes.
pub fn exception_name(vector: u8) -> &'static str {
    EXCEPTION_NAMES
        .get(usize::from(vector))
        .copied()
        .unwrap_or("exception")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_each_bit_from_its_own_register() {
        let all = Features::decode(&CpuidLeaves {
            l1_ecx: 1 << 30 | 1 << 17,
            l7_ebx: 1 << 7 | 1 << 20,
            l7_ecx: 1 << 2,
            ext1_edx: 1 << 20,
        });
        assert_eq!(all.to_string(), "rdrand,nx,smep,smap,umip,pcid");
        assert!(all.missing_required().is_empty());

        let none = Features::decode(&CpuidLeaves::default());
        assert_eq!(none.to_string(), "-rdrand,-nx,-smep,-smap,-umip,-pcid");
        // A bit in the wrong register must not count.
        let swapped = Features::decode(&CpuidLeaves {
            ext1_edx: 1 << 30,
            l1_ecx: 1 << 20,
            ..Default::default()
        });
        assert!(!swapped.rdrand && !swapped.nx);
    }

    #[test]
    fn exceptions_are_named_by_vector() {
        assert_eq!(exception_name(14), "#PF page fault");
        assert_eq!(exception_name(8), "#DF double fault");
        assert_eq!(exception_name(99), "exception");
    }

    #[test]
    fn refusal_names_exactly_what_is_missing() {
        let m = |rdrand, nx| Missing { rdrand, nx }.to_string();
        assert_eq!(m(true, false), "RDRAND (CPUID.01H:ECX[30])");
        assert_eq!(m(false, true), "NX (CPUID.80000001H:EDX[20])");
        assert_eq!(
            m(true, true),
            "RDRAND (CPUID.01H:ECX[30]) and NX (CPUID.80000001H:EDX[20])"
        );
    }
}
