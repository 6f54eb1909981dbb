//! Kernel stacks, each with an unmapped guard page below it.
//!
//! INV-MEM: a stack that overflows runs into its guard page and faults instead of overwriting
//! whatever lies below. The page tables leave every guard unmapped (`paging.rs`) and the
//! self-check proves it (`mem.stack-guards`). The double-fault handler runs on its own IST
//! stack, so an overflow of the boot stack is still reported.

use core::cell::UnsafeCell;

/// Bytes of the boot stack: the kernel's only stack, for the boot path and then every system
/// call. The deepest use is building the `System` value (about 86 KiB with 48 processes of 48
/// capability slots) before it moves into its static; 256 KiB holds it twice with room. An overflow hits the guard
/// page and is reported as a double fault.
pub const BOOT_STACK_SIZE: usize = 256 * 1024;
/// Bytes of each IST stack (double fault, NMI, machine check). Their handlers print and halt.
pub const IST_STACK_SIZE: usize = 16 * 1024;

/// A stack and the guard page under it, page aligned so the guard is exactly one page.
#[repr(C, align(4096))]
pub struct GuardedStack<const N: usize> {
    guard: [u8; 4096],
    stack: UnsafeCell<[u8; N]>,
}

// SAFETY: the stack memory is only ever used as a CPU stack by one context at a time (the boot
// path, or one exception class); Rust code never forms references into it.
unsafe impl<const N: usize> Sync for GuardedStack<N> {}

impl<const N: usize> GuardedStack<N> {
    const fn new() -> Self {
        GuardedStack {
            guard: [0; 4096],
            stack: UnsafeCell::new([0; N]),
        }
    }

    /// Address of the guard page.
    pub fn guard(&self) -> u64 {
        self.guard.as_ptr() as u64
    }

    /// The initial stack pointer: one past the highest byte.
    pub fn top(&self) -> u64 {
        self.stack.get() as u64 + N as u64
    }
}

/// The stack the boot path runs on; the boot stub points RSP at its top.
#[unsafe(link_section = ".bss.stacks")]
pub static BOOT_STACK: GuardedStack<BOOT_STACK_SIZE> = GuardedStack::new();
/// Bytes of the entry stack: the CPU pushes a process's interrupt frame here (TSS.RSP0) and the
/// syscall stub its registers; the kernel itself then runs on [`BOOT_STACK`]. It holds one
/// frame of the running process's own registers and nothing else.
pub const ENTRY_STACK_SIZE: usize = 4096;

/// The entry stack. In the trampoline: mapped (supervisor-only) in every process table.
#[unsafe(link_section = ".bss.trampoline")]
pub static ENTRY_STACK: GuardedStack<ENTRY_STACK_SIZE> = GuardedStack::new();
/// IST1: double fault. In the trampoline, because the CPU switches to it before the kernel can
/// switch page tables.
#[unsafe(link_section = ".bss.trampoline")]
pub static DOUBLE_FAULT_STACK: GuardedStack<IST_STACK_SIZE> = GuardedStack::new();
/// IST2: NMI.
#[unsafe(link_section = ".bss.trampoline")]
pub static NMI_STACK: GuardedStack<IST_STACK_SIZE> = GuardedStack::new();
/// IST3: machine check.
#[unsafe(link_section = ".bss.trampoline")]
pub static MACHINE_CHECK_STACK: GuardedStack<IST_STACK_SIZE> = GuardedStack::new();

/// Every guard page, for the page-table builders and the self-checks.
pub fn guards() -> [u64; 5] {
    [
        BOOT_STACK.guard(),
        ENTRY_STACK.guard(),
        DOUBLE_FAULT_STACK.guard(),
        NMI_STACK.guard(),
        MACHINE_CHECK_STACK.guard(),
    ]
}
