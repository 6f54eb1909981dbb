//! The IDT, the exception entry stubs, and what happens on an exception.
//!
//! Every exception in kernel context is fatal: [`fatal`] prints the vector, its name, the error
//! code (decoded for page faults), RIP, CR2 and the registers, then stops with the exit code
//! `0x40 + vector`. Nothing is left to a triple fault: the double fault, NMI and machine check
//! run on their own IST stacks. Exceptions in a process kill that process (`run.rs`). The entry
//! stubs live in the trampoline (`trampoline.rs`).

use super::gdt::{DescriptorPointer, IST_DOUBLE_FAULT, IST_MACHINE_CHECK, IST_NMI, KERNEL_CODE};
use super::instr::read_cr2;
use super::trampoline::STUBS;
use crate::exit::ExitCode;
use crate::kprintln;
use core::arch::asm;
use core::cell::UnsafeCell;

/// What the entry stubs leave on the stack, lowest address first.
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    /// General registers, pushed by the common stub.
    pub r15: u64,
    #[allow(missing_docs)]
    pub r14: u64,
    #[allow(missing_docs)]
    pub r13: u64,
    #[allow(missing_docs)]
    pub r12: u64,
    #[allow(missing_docs)]
    pub r11: u64,
    #[allow(missing_docs)]
    pub r10: u64,
    #[allow(missing_docs)]
    pub r9: u64,
    #[allow(missing_docs)]
    pub r8: u64,
    #[allow(missing_docs)]
    pub rbp: u64,
    #[allow(missing_docs)]
    pub rdi: u64,
    #[allow(missing_docs)]
    pub rsi: u64,
    #[allow(missing_docs)]
    pub rdx: u64,
    #[allow(missing_docs)]
    pub rcx: u64,
    #[allow(missing_docs)]
    pub rbx: u64,
    #[allow(missing_docs)]
    pub rax: u64,
    /// The vector, pushed by the per-vector stub.
    pub vector: u64,
    /// The CPU's error code, or 0 for vectors without one.
    pub error: u64,
    /// Pushed by the CPU.
    pub rip: u64,
    #[allow(missing_docs)]
    pub cs: u64,
    #[allow(missing_docs)]
    pub rflags: u64,
    #[allow(missing_docs)]
    pub rsp: u64,
    #[allow(missing_docs)]
    pub ss: u64,
}

/// Reports an exception the kernel cannot survive (any exception in kernel context, or a double
/// fault, NMI or machine check anywhere) and stops with `0x40 + vector`.
pub fn fatal(frame: &TrapFrame) -> ! {
    let vector = (frame.vector & 0x1f) as u8;
    let context = if frame.cs & 3 == 0 { "kernel" } else { "user" };
    kprintln!(
        "brainix: FATAL: exception {} (vector {}) in {} context",
        crate::cpu::exception_name(vector),
        vector,
        context
    );
    if vector == 14 {
        let e = frame.error;
        kprintln!(
            "brainix:   error={:#x} [{}, {}, {}{}] cr2={:#018x}",
            e,
            if e & 1 != 0 {
                "protection"
            } else {
                "not-present"
            },
            if e & 2 != 0 { "write" } else { "read" },
            if e & 4 != 0 { "user" } else { "supervisor" },
            if e & 16 != 0 {
                ", instruction-fetch"
            } else {
                ""
            },
            read_cr2()
        );
    } else {
        kprintln!(
            "brainix:   error={:#x} cr2={:#018x}",
            frame.error,
            read_cr2()
        );
    }
    kprintln!(
        "brainix:   rip={:#018x} cs={:#x} rflags={:#x} rsp={:#018x} ss={:#x}",
        frame.rip,
        frame.cs,
        frame.rflags,
        frame.rsp,
        frame.ss
    );
    kprintln!(
        "brainix:   rax={:#x} rbx={:#x} rcx={:#x} rdx={:#x} rsi={:#x} rdi={:#x} rbp={:#x}",
        frame.rax,
        frame.rbx,
        frame.rcx,
        frame.rdx,
        frame.rsi,
        frame.rdi,
        frame.rbp
    );
    kprintln!(
        "brainix:   r8={:#x} r9={:#x} r10={:#x} r11={:#x} r12={:#x} r13={:#x} r14={:#x} r15={:#x}",
        frame.r8,
        frame.r9,
        frame.r10,
        frame.r11,
        frame.r12,
        frame.r13,
        frame.r14,
        frame.r15
    );
    super::stop(ExitCode::Exception(vector));
}

/// One IDT gate (Intel SDM vol. 3, 6.14.1).
#[derive(Clone, Copy)]
#[repr(C)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    attributes: u8,
    offset_mid: u16,
    offset_high: u32,
    _reserved: u32,
}

impl Gate {
    const ABSENT: Gate = Gate {
        offset_low: 0,
        selector: 0,
        ist: 0,
        attributes: 0,
        offset_mid: 0,
        offset_high: 0,
        _reserved: 0,
    };

    /// A present interrupt gate, DPL 0: user code cannot raise it with `int`.
    fn new(handler: u64, ist: u8) -> Gate {
        Gate {
            offset_low: handler as u16,
            selector: KERNEL_CODE,
            ist,
            attributes: 0x8e,
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            _reserved: 0,
        }
    }
}

struct Idt(UnsafeCell<[Gate; 256]>);
// SAFETY: written once by `init` on the only CPU with interrupts off; afterwards only the CPU
// reads it.
unsafe impl Sync for Idt {}

/// In the trampoline: the CPU reads it on every entry from a process.
#[unsafe(link_section = ".bss.trampoline")]
static IDT: Idt = Idt(UnsafeCell::new([Gate::ABSENT; 256]));

/// Fills the gates of every trampoline stub and loads the IDT. Other vectors stay absent; one
/// arriving is a #GP, which is reported.
pub fn init() {
    // SAFETY: see `Idt`; no interrupt can read the table while it is being written.
    let idt = unsafe { &mut *IDT.0.get() };
    for &(vector, stub) in STUBS {
        let ist = match vector {
            2 => IST_NMI,
            8 => IST_DOUBLE_FAULT,
            18 => IST_MACHINE_CHECK,
            _ => 0,
        };
        idt[usize::from(vector)] = Gate::new(stub as usize as u64, ist);
    }
    let pointer = DescriptorPointer {
        limit: (core::mem::size_of::<[Gate; 256]>() - 1) as u16,
        base: idt.as_ptr() as u64,
    };
    // SAFETY: the IDT is static and every present gate points at a stub in kernel text.
    unsafe { asm!("lidt [{}]", in(reg) &pointer, options(readonly, nostack, preserves_flags)) }
}
