//! Wrappers for the privileged instructions the kernel uses. This file and `boot.rs`, `trap.rs`
//! hold the kernel's `unsafe`; each wrapper says what makes a call sound.

use core::arch::asm;

/// Executes CPUID for `leaf`/`subleaf`; returns (eax, ebx, ecx, edx).
pub fn cpuid(leaf: u32, subleaf: u32) -> (u32, u32, u32, u32) {
    // CPUID exists on every x86-64 CPU and has no side effects beyond its outputs.
    let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    (r.eax, r.ebx, r.ecx, r.edx)
}

/// Writes a byte to an I/O port.
///
/// # Safety
/// The caller must know what the device at `port` does with the byte.
pub unsafe fn outb(port: u16, value: u8) {
    // SAFETY: the caller vouches for the device; the instruction itself touches no memory.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    }
}

/// Reads a byte from an I/O port.
///
/// # Safety
/// Reading some device registers has side effects; the caller must accept them.
pub unsafe fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: as for `outb`.
    unsafe {
        asm!("in al, dx", out("al") value, in("dx") port, options(nomem, nostack, preserves_flags))
    }
    value
}

/// Writes a 32-bit word to an I/O port.
///
/// # Safety
/// As for [`outb`].
pub unsafe fn outl(port: u16, value: u32) {
    // SAFETY: as for `outb`.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags))
    }
}

/// Reads a 32-bit word from an I/O port.
///
/// # Safety
/// As for [`inb`].
pub unsafe fn inl(port: u16) -> u32 {
    let value: u32;
    // SAFETY: as for `outb`.
    unsafe {
        asm!("in eax, dx", out("eax") value, in("dx") port, options(nomem, nostack, preserves_flags))
    }
    value
}

/// Reads a model-specific register.
///
/// # Safety
/// `msr` must exist on this CPU, or the read faults.
pub unsafe fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: the caller guarantees the MSR exists.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    }
    u64::from(hi) << 32 | u64::from(lo)
}

/// Writes a model-specific register.
///
/// # Safety
/// `msr` must exist, and the value must not break what runs afterwards.
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the caller vouches for the MSR and the value.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nostack, preserves_flags))
    }
}

/// EFER and its no-execute enable bit.
pub const IA32_EFER: u32 = 0xc000_0080;
/// EFER.NXE.
pub const EFER_NXE: u64 = 1 << 11;

/// CR0.WP: supervisor writes honour read-only pages.
pub const CR0_WP: u64 = 1 << 16;
/// CR4 bits we set.
pub mod cr4 {
    /// User-mode instruction prevention.
    pub const UMIP: u64 = 1 << 11;
    /// Process-context identifiers.
    pub const PCIDE: u64 = 1 << 17;
    /// Supervisor-mode execution prevention.
    pub const SMEP: u64 = 1 << 20;
    /// Supervisor-mode access prevention.
    pub const SMAP: u64 = 1 << 21;
}

/// Reads CR0.
pub fn read_cr0() -> u64 {
    let v: u64;
    // SAFETY: reading a control register has no side effects.
    unsafe { asm!("mov {}, cr0", out(reg) v, options(nomem, nostack, preserves_flags)) }
    v
}

/// Reads CR2 (the faulting address of the last page fault).
pub fn read_cr2() -> u64 {
    let v: u64;
    // SAFETY: as above.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) }
    v
}

/// Reads CR3.
pub fn read_cr3() -> u64 {
    let v: u64;
    // SAFETY: as above.
    unsafe { asm!("mov {}, cr3", out(reg) v, options(nomem, nostack, preserves_flags)) }
    v
}

/// Reads CR4.
pub fn read_cr4() -> u64 {
    let v: u64;
    // SAFETY: as above.
    unsafe { asm!("mov {}, cr4", out(reg) v, options(nomem, nostack, preserves_flags)) }
    v
}

/// Writes CR4.
///
/// # Safety
/// Every bit set must be supported by the CPU (or the write faults) and must not break code
/// that runs afterwards (SMAP, for one, forbids touching user pages without `stac`).
pub unsafe fn write_cr4(v: u64) {
    // SAFETY: the caller vouches for the bits.
    unsafe { asm!("mov cr4, {}", in(reg) v, options(nostack, preserves_flags)) }
}

/// Switches to the page tables rooted at `root`.
///
/// # Safety
/// The new tables must map the currently running code, its stack and everything the kernel
/// dereferences afterwards, with the rights it needs.
pub unsafe fn write_cr3(root: u64) {
    // SAFETY: the caller vouches for the tables.
    unsafe { asm!("mov cr3, {}", in(reg) root, options(nostack, preserves_flags)) }
}

/// Reads the time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC is available on every x86-64 CPU and only reads a counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Asks RDRAND for a value, retrying a few times as Intel's guidance says.
pub fn rdrand() -> Option<u64> {
    for _ in 0..10 {
        let value: u64;
        let ok: u8;
        // SAFETY: only called after CPUID reported RDRAND; the instruction writes two registers.
        unsafe {
            asm!("rdrand {}", "setc {}", out(reg) value, out(reg_byte) ok, options(nomem, nostack))
        }
        if ok == 1 {
            return Some(value);
        }
    }
    None
}

/// Stops this CPU for good: interrupts off, then halt forever (NMIs return into the loop).
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: disabling interrupts and halting cannot break memory safety.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) }
    }
}
