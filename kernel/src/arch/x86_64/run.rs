//! Running the system: the one [`System`] instance, entries from the trampoline, and idle.
//!
//! The kernel is not preemptible: it runs with interrupts off, on the kernel stack, and decides
//! at each exit which process runs next. Interrupts are taken only in ring 3 and while idle
//! (`sti; hlt`), where no reference into the system is alive.

use super::apic::{self, IRQ_BASE, IRQ_LINES, SPURIOUS_VECTOR, TIMER_VECTOR};
use super::gdt::{USER_CODE, USER_DATA};
use super::instr;
use super::spaces::ArchSpaces;
use super::trampoline::{self, SCRATCH, SYSCALL_VECTOR};
use super::trap::{self, TrapFrame};
use crate::exit::ExitCode;
use crate::kprintln;
use crate::manifest::{CapSpec, SYSTEM};
use crate::platform::pci::{Bdf, ConfigSpace};
use crate::platform::{Platform, Resolved};
use crate::syscall::MemoryStats;
use crate::system::{Machine, System, UserRegs};
use core::arch::asm;
use core::cell::UnsafeCell;
use core::fmt;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU64, Ordering};

/// The hardware as the portable kernel sees it.
pub struct ArchMachine;

impl Machine for ArchMachine {
    fn log(&mut self, line: fmt::Arguments<'_>) {
        kprintln!("{}", line);
    }
    fn port_in(&mut self, port: u16) -> u8 {
        // SAFETY: the caller checked an I/O-port capability covering `port`.
        unsafe { instr::inb(port) }
    }
    fn port_out(&mut self, port: u16, value: u8) {
        // SAFETY: as above.
        unsafe { instr::outb(port, value) }
    }
    fn irq_unmask(&mut self, line: u8) {
        apic::set_line(line, false);
    }
    fn tsc(&self) -> u64 {
        instr::rdtsc()
    }
    fn console_write(&mut self, text: &str) {
        let _ = core::fmt::Write::write_str(&mut super::serial::Com1, text);
    }
    fn platform(&self) -> &Platform {
        super::pci::platform()
    }
    fn pci_read(&mut self, bdf: Bdf, offset: u16) -> u32 {
        super::pci::Config.read32(bdf, offset)
    }
    fn pci_write(&mut self, bdf: Bdf, offset: u16, value: u32) {
        super::pci::Config.write32(bdf, offset, value)
    }
}

type Running = System<ArchSpaces, ArchMachine>;

struct Cell(UnsafeCell<MaybeUninit<Running>>);
// SAFETY: one CPU; the system is touched only with interrupts off, through `with_system`, whose
// borrows never live across the idle `hlt` (the only place an interrupt can nest).
unsafe impl Sync for Cell {}

static RUNNING: Cell = Cell(UnsafeCell::new(MaybeUninit::uninit()));

fn with_system<R>(f: impl FnOnce(&mut Running) -> R) -> R {
    // SAFETY: written by `start` before any entry can happen, and see `Cell` for exclusivity.
    f(unsafe { (*RUNNING.0.get()).assume_init_mut() })
}

fn save(frame: &TrapFrame) -> UserRegs {
    UserRegs {
        rax: frame.rax,
        rbx: frame.rbx,
        rcx: frame.rcx,
        rdx: frame.rdx,
        rsi: frame.rsi,
        rdi: frame.rdi,
        rbp: frame.rbp,
        r8: frame.r8,
        r9: frame.r9,
        r10: frame.r10,
        r11: frame.r11,
        r12: frame.r12,
        r13: frame.r13,
        r14: frame.r14,
        r15: frame.r15,
        rip: frame.rip,
        rsp: frame.rsp,
        rflags: frame.rflags,
    }
}

/// Writes `r` into the frame, with ring-3 selectors and interrupts on: a process can never
/// leave the kernel in another ring or with interrupts masked, whatever it put in RFLAGS.
fn load(frame: &mut TrapFrame, r: &UserRegs) {
    *frame = TrapFrame {
        r15: r.r15,
        r14: r.r14,
        r13: r.r13,
        r12: r.r12,
        r11: r.r11,
        r10: r.r10,
        r9: r.r9,
        r8: r.r8,
        rbp: r.rbp,
        rdi: r.rdi,
        rsi: r.rsi,
        rdx: r.rdx,
        rcx: r.rcx,
        rbx: r.rbx,
        rax: r.rax,
        vector: 0,
        error: 0,
        rip: r.rip,
        cs: u64::from(USER_CODE),
        // Keep the arithmetic flags, force IF and reserved bit 1, clear IOPL, TF, NT, AC, VM.
        rflags: (r.rflags & 0xcd5) | 0x202,
        rsp: r.rsp,
        ss: u64::from(USER_DATA),
    };
}

fn memory_stats(s: &Running) -> MemoryStats {
    let pool = s.spaces.pool();
    MemoryStats {
        frames_total: pool.managed() as u64,
        frames_free: pool.free_frames() as u64,
        kernel_pt_pages: KERNEL_PT_PAGES.load(Ordering::Relaxed),
    }
}

/// An interrupt, wherever it arrived.
fn interrupt(s: &mut Running, vector: u8) {
    match vector {
        TIMER_VECTOR => {
            apic::eoi();
            s.tick();
        }
        v if (IRQ_BASE..IRQ_BASE + IRQ_LINES).contains(&v) => {
            // Masked until the holder acknowledges it with `irq_ack`.
            apic::set_line(v - IRQ_BASE, true);
            apic::eoi();
            s.irq(v - IRQ_BASE);
        }
        _ => {}
    }
}

/// Called by the trampoline for every entry from ring 3, on the kernel stack with the kernel's
/// tables. Returns the CR3 of the process to run next; its registers are in `frame`.
pub extern "C" fn from_user(frame: &mut TrapFrame) -> u64 {
    let vector = frame.vector;
    if matches!(vector, 2 | 8 | 18) {
        trap::fatal(frame);
    }
    with_system(|s| {
        let Some(pid) = s.current else {
            kprintln!("brainix: FATAL: entry from ring 3 with no current process");
            super::stop(ExitCode::Panic)
        };
        s.procs[usize::from(pid)].regs = save(frame);
        match vector {
            SYSCALL_VECTOR => {
                let stats = memory_stats(s);
                s.syscall(pid, stats);
            }
            0..=31 => {
                let addr = if vector == 14 { instr::read_cr2() } else { 0 };
                s.fault(pid, vector as u8, frame.error, addr);
            }
            v => interrupt(s, v as u8),
        }
    });
    next(frame)
}

/// Picks the next process, idling until there is one, and loads its registers into `frame`.
fn next(frame: &mut TrapFrame) -> u64 {
    loop {
        let chosen = with_system(|s| {
            let pid = s.schedule()?;
            load(frame, &s.procs[usize::from(pid)].regs);
            Some(s.spaces.cr3(pid))
        });
        if let Some(cr3) = chosen {
            return cr3;
        }
        let anyone = with_system(|s| (0..s.process_count()).any(|p| s.procs[p].state.is_alive()));
        if !anyone {
            kprintln!("brainix: every process has ended; nothing can run again");
            super::stop(ExitCode::Success);
        }
        // SAFETY: no borrow of the system is alive; an interrupt here runs `from_kernel`.
        unsafe { asm!("sti", "hlt", "cli", options(nomem, nostack)) };
    }
}

/// Called by the trampoline for entries from ring 0: interrupts while idle are handled; any
/// exception is a kernel bug and fatal.
pub extern "C" fn from_kernel(frame: &mut TrapFrame) {
    let vector = frame.vector;
    if vector < 32 {
        trap::fatal(frame);
    }
    if vector != u64::from(SPURIOUS_VECTOR) {
        with_system(|s| interrupt(s, vector as u8));
    }
}

/// IA32_EFER.SCE, STAR, LSTAR and FMASK.
fn enable_syscall() {
    const EFER: u32 = 0xc000_0080;
    const STAR: u32 = 0xc000_0081;
    const LSTAR: u32 = 0xc000_0082;
    const FMASK: u32 = 0xc000_0084;
    let star = (0x08u64 << 32) | (0x10u64 << 48);
    // Mask IF, TF, DF and AC on entry.
    let fmask = 0x200 | 0x100 | 0x400 | 0x4_0000;
    // SAFETY: these MSRs exist on every x86-64 CPU; the kernel selectors match the GDT, and
    // LSTAR points at the trampoline's syscall stub, mapped in every process table.
    unsafe {
        instr::wrmsr(EFER, instr::rdmsr(EFER) | 1);
        instr::wrmsr(STAR, star);
        instr::wrmsr(LSTAR, trampoline::syscall_entry as *const () as u64);
        instr::wrmsr(FMASK, fmask);
    }
}

/// Page-table pages of the kernel's own tables, for `audit_memory`.
static KERNEL_PT_PAGES: AtomicU64 = AtomicU64::new(0);

/// Launches the manifest's processes and enters the first. Never returns.
pub fn start(
    kernel_cr3: u64,
    kernel_pt_pages: usize,
    spaces: ArchSpaces,
    framer: Option<crate::report::Framer>,
) -> ! {
    KERNEL_PT_PAGES.store(kernel_pt_pages as u64, Ordering::Relaxed);
    // With PCIDs the kernel keeps PCID 0 and its entries survive every switch: its own tables
    // never change after boot.
    let pcid = instr::read_cr4() & instr::cr4::PCIDE != 0;
    let kernel_cr3 = if pcid {
        kernel_cr3 | super::spaces::CR3_NO_FLUSH
    } else {
        kernel_cr3
    };
    // SAFETY: the trampoline reads this on every entry; written once here, before any entry.
    unsafe { (*SCRATCH.0.get()).kernel_cr3 = kernel_cr3 };
    enable_syscall();
    let per_tick = apic::init();
    kprintln!(
        "brainix: system {:?}: {} processes, {} endpoints; timer {} Hz ({} APIC counts per tick)",
        SYSTEM.name,
        SYSTEM.processes.len(),
        SYSTEM.endpoints,
        crate::system::TICK_HZ,
        per_tick
    );
    // SAFETY: nothing has read the cell yet; this is its only initialisation.
    unsafe { (*RUNNING.0.get()).write(System::new(&SYSTEM, spaces, ArchMachine)) };
    with_system(|s| {
        s.framer = framer;
        // Route every interrupt line some process holds, with the trigger mode and polarity
        // the platform gives it.
        let platform = super::pci::platform();
        for pid in 0..s.process_count() {
            for cap in s.spec.processes[pid].caps {
                let route = match *cap {
                    CapSpec::Irq { line, .. } => Some(platform.line_route(line)),
                    CapSpec::Device { pci, part } => match platform.resolve(&pci, &part) {
                        Ok(Resolved::Irq { route, .. }) => Some(route),
                        _ => None,
                    },
                    _ => None,
                };
                if let Some(route) = route {
                    apic::route(route);
                    apic::set_line(route.gsi, false);
                }
            }
        }
        s.boot();
    });
    // SAFETY: the frame pointer is the trampoline's fixed frame slot on the entry stack.
    let cr3 = next(unsafe { &mut *trampoline::frame() });
    // SAFETY: `next` loaded a ring-3 frame for a process whose table maps the trampoline.
    unsafe { trampoline::enter_user(cr3) }
}
