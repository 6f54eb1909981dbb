//! x86-64: boot stub, descriptor tables, traps, the kernel's own page tables, and the COM1 log.

pub mod apic;
pub mod boot;
pub mod gdt;
pub mod instr;
pub mod paging;
pub mod pci;
pub mod run;
pub mod serial;
pub mod spaces;
pub mod stacks;
mod start;
#[cfg(feature = "test-hooks")]
mod test_hooks;
pub mod trampoline;
pub mod trap;

use crate::exit::ExitCode;
use core::sync::atomic::{AtomicBool, Ordering};

/// QEMU's `isa-debug-exit` port.
const DEBUG_EXIT_PORT: u16 = 0xf4;

/// Set from the command line; off by default, because on a real machine port 0xf4 may belong to
/// anything.
static DEBUG_EXIT: AtomicBool = AtomicBool::new(false);

/// Stops the machine: leaves through `isa-debug-exit` when the board has it, else halts.
pub fn stop(code: ExitCode) -> ! {
    crate::kprintln!("brainix: stopping, exit code {:#x}", code.code());
    if DEBUG_EXIT.load(Ordering::Relaxed) {
        // SAFETY: the command line said this board has `isa-debug-exit` at this port; writing
        // it ends the virtual machine.
        unsafe { instr::outb(DEBUG_EXIT_PORT, code.code()) };
    }
    instr::halt_forever()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    crate::kprintln!("brainix: FATAL: kernel panic: {}", info);
    stop(ExitCode::Panic)
}
