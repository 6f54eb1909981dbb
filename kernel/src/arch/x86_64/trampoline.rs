//! KPTI: the entry trampoline, the only kernel code and data mapped in a process's page tables.
//!
//! A process table maps, of the kernel, exactly the pages between `__trampoline_text_start` and
//! `__trampoline_text_end` (these stubs, RX) and between `__trampoline_data_start` and
//! `__trampoline_data_end` (entry stack, IST stacks, GDT, TSS, IDT and [`SCRATCH`], RW+NX), all
//! supervisor-only, guard pages left out. `docs/ARCHITECTURE.md` lists them by address.
//!
//! Way in: an interrupt or exception from ring 3 lands on the entry stack (TSS.RSP0); `syscall`
//! lands in [`syscall_entry`], which moves to the entry stack itself. Both build the same
//! [`TrapFrame`], switch CR3 to the kernel's tables, move to the kernel stack and call
//! [`super::run::from_user`]. Way out: that returns the CR3 of the process to run; the frame on
//! the entry stack now holds its registers; the stub loads CR3, pops and `iretq`s.

use super::gdt::{USER_CODE, USER_DATA};
use super::run;
use super::stacks::{BOOT_STACK, BOOT_STACK_SIZE, ENTRY_STACK, ENTRY_STACK_SIZE};
use super::trap::TrapFrame;
use core::arch::naked_asm;
use core::cell::UnsafeCell;

/// The `vector` value of a frame built by `syscall`.
pub const SYSCALL_VECTOR: u64 = 0x80;

/// Bytes of a [`TrapFrame`].
const FRAME_SIZE: usize = core::mem::size_of::<TrapFrame>();
/// Offset from the entry stack's base symbol to the frame of the running process: the stack's
/// top minus one frame (the CPU keeps the top 16-byte aligned, and 176 is a multiple of 16).
const FRAME_OFFSET: usize = 4096 + ENTRY_STACK_SIZE - FRAME_SIZE;
/// Offset to the entry stack's top.
const ENTRY_TOP: usize = 4096 + ENTRY_STACK_SIZE;
/// Offset to the kernel stack's top.
const KERNEL_TOP: usize = 4096 + BOOT_STACK_SIZE;

/// Values the stubs need before the kernel's tables are live.
#[repr(C)]
pub struct Scratch {
    /// CR3 of the kernel's tables.
    pub kernel_cr3: u64,
    /// The process's RSP while `syscall_entry` moves to the entry stack.
    pub user_rsp: u64,
}

/// One per CPU (one CPU for now).
pub struct ScratchCell(pub UnsafeCell<Scratch>);
// SAFETY: written by the boot CPU before any process runs (`kernel_cr3`) and by the syscall
// stub with interrupts masked (`user_rsp`); never accessed concurrently.
unsafe impl Sync for ScratchCell {}

/// The trampoline's scratch words.
#[unsafe(link_section = ".bss.trampoline")]
pub static SCRATCH: ScratchCell = ScratchCell(UnsafeCell::new(Scratch {
    kernel_cr3: 0,
    user_rsp: 0,
}));

/// The frame of the running process, on the entry stack.
pub fn frame() -> *mut TrapFrame {
    (ENTRY_STACK.guard() + FRAME_OFFSET as u64) as *mut TrapFrame
}

macro_rules! stubs {
    ($($v:literal),*) => {
        /// Entry stubs and their vectors: exceptions 0 to 31, the timer (32), interrupt
        /// lines (GSIs) 0 to 47 (33 to 80), and the spurious vector (255).
        pub const STUBS: &[(u8, unsafe extern "C" fn() -> !)] = &[$(($v, stub::<$v>)),*];
    };
}
stubs!(
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
    26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49,
    50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73,
    74, 75, 76, 77, 78, 79, 80, 255
);

/// The vectors for which the CPU pushes an error code.
const fn has_error_code(vector: u8) -> bool {
    matches!(vector, 8 | 10 | 11 | 12 | 13 | 14 | 17 | 21 | 29 | 30)
}

/// One vector's entry: a zero error code where the CPU pushes none, then the vector.
#[unsafe(naked)]
#[unsafe(link_section = ".trampoline.text")]
unsafe extern "C" fn stub<const V: u8>() -> ! {
    naked_asm!(
        ".if {err} == 0",
        "push 0",
        ".endif",
        "push {v}",
        "jmp {common}",
        err = const has_error_code(V) as u8,
        v = const V,
        common = sym common,
    )
}

/// `syscall` lands here (IA32_LSTAR) with interrupts masked (IA32_FMASK), RCX = return RIP,
/// R11 = RFLAGS and RSP still the process's. It builds the same frame an interrupt would.
///
/// # Safety
/// Only the CPU enters it, through `syscall` from ring 3; it is never called.
#[unsafe(naked)]
#[unsafe(link_section = ".trampoline.text")]
pub unsafe extern "C" fn syscall_entry() -> ! {
    naked_asm!(
        "mov [rip + {scratch} + 8], rsp",
        "lea rsp, [rip + {entry} + {top}]",
        "push {ss}",
        "push qword ptr [rip + {scratch} + 8]",
        "push r11",
        "push {cs}",
        "push rcx",
        "push 0",
        "push {vector}",
        "jmp {common}",
        scratch = sym SCRATCH,
        entry = sym ENTRY_STACK,
        top = const ENTRY_TOP,
        ss = const USER_DATA as u64,
        cs = const USER_CODE as u64,
        vector = const SYSCALL_VECTOR,
        common = sym common,
    )
}

/// Saves the registers. From ring 3: switches to the kernel's tables and stack and calls
/// [`run::from_user`], then loads the CR3 it returns and leaves through the frame at the fixed
/// place on the entry stack. From ring 0 (an interrupt while idle, or a kernel fault): calls
/// [`run::from_kernel`] on the current stack and returns to where it was.
#[unsafe(naked)]
#[unsafe(link_section = ".trampoline.text")]
unsafe extern "C" fn common() -> ! {
    naked_asm!(
        "push rax", "push rbx", "push rcx", "push rdx", "push rsi", "push rdi", "push rbp",
        "push r8", "push r9", "push r10", "push r11", "push r12", "push r13", "push r14",
        "push r15",
        "cld",
        "test byte ptr [rsp + 18 * 8], 3",
        "jz 2f",
        "mov rax, [rip + {scratch}]",
        "mov cr3, rax",
        "mov rdi, rsp",
        "lea rsp, [rip + {kstack} + {ktop}]",
        "call {from_user}",
        "lea rsp, [rip + {entry} + {frame}]",
        "mov cr3, rax",
        "jmp 3f",
        "2:",
        "mov rdi, rsp",
        "call {from_kernel}",
        "3:",
        "pop r15", "pop r14", "pop r13", "pop r12", "pop r11", "pop r10", "pop r9", "pop r8",
        "pop rbp", "pop rdi", "pop rsi", "pop rdx", "pop rcx", "pop rbx", "pop rax",
        "add rsp, 16",
        "iretq",
        scratch = sym SCRATCH,
        kstack = sym BOOT_STACK,
        ktop = const KERNEL_TOP,
        entry = sym ENTRY_STACK,
        frame = const FRAME_OFFSET,
        from_user = sym run::from_user,
        from_kernel = sym run::from_kernel,
    )
}

/// Enters a process for the first time: the frame at [`frame`] holds its registers.
///
/// # Safety
/// `cr3` must be a process table that maps this trampoline, and the frame must hold ring-3
/// selectors and an address the process may execute.
#[unsafe(naked)]
#[unsafe(link_section = ".trampoline.text")]
pub unsafe extern "C" fn enter_user(cr3: u64) -> ! {
    naked_asm!(
        "lea rsp, [rip + {entry} + {frame}]",
        "mov cr3, rdi",
        "pop r15", "pop r14", "pop r13", "pop r12", "pop r11", "pop r10", "pop r9", "pop r8",
        "pop rbp", "pop rdi", "pop rsi", "pop rdx", "pop rcx", "pop rbx", "pop rax",
        "add rsp, 16",
        "iretq",
        entry = sym ENTRY_STACK,
        frame = const FRAME_OFFSET,
    )
}

unsafe extern "C" {
    static __trampoline_text_start: u8;
    static __trampoline_text_end: u8;
    static __trampoline_data_start: u8;
    static __trampoline_data_end: u8;
}

/// The trampoline's text and data ranges, `[start, end)`.
pub fn ranges() -> [(u64, u64); 2] {
    [
        (
            &raw const __trampoline_text_start as u64,
            &raw const __trampoline_text_end as u64,
        ),
        (
            &raw const __trampoline_data_start as u64,
            &raw const __trampoline_data_end as u64,
        ),
    ]
}
