//! The GDT and the TSS. The TSS gives the double fault, NMI and machine check their own stacks
//! (IST1 to IST3), so each is reported even when the kernel stack is gone.

use super::stacks::{DOUBLE_FAULT_STACK, ENTRY_STACK, MACHINE_CHECK_STACK, NMI_STACK};
use core::arch::asm;
use core::cell::UnsafeCell;

/// Kernel code selector.
pub const KERNEL_CODE: u16 = 0x08;
/// Kernel data selector.
pub const KERNEL_DATA: u16 = 0x10;
/// TSS selector (two slots: a 64-bit TSS descriptor is 16 bytes).
pub const TSS_SELECTOR: u16 = 0x28;

/// IST slots (1-based, as the IDT names them).
pub const IST_DOUBLE_FAULT: u8 = 1;
/// See [`IST_DOUBLE_FAULT`].
pub const IST_NMI: u8 = 2;
/// See [`IST_DOUBLE_FAULT`].
pub const IST_MACHINE_CHECK: u8 = 3;

/// The 64-bit task-state segment (Intel SDM vol. 3, 8.7).
#[repr(C, packed(4))]
pub struct Tss {
    _reserved0: u32,
    rsp: [u64; 3],
    _reserved1: u64,
    ist: [u64; 7],
    _reserved2: u64,
    _reserved3: u16,
    iomap_base: u16,
}

struct Tables {
    gdt: [u64; 7],
    tss: Tss,
}

/// Filled once by [`init`] on the boot CPU, then only read by the CPU.
struct Shared(UnsafeCell<Tables>);
// SAFETY: written once by `init` before interrupts can occur, on the only running CPU.
unsafe impl Sync for Shared {}

/// In the trampoline: the CPU reads the GDT and TSS on every entry from a process.
#[unsafe(link_section = ".bss.trampoline")]
static TABLES: Shared = Shared(UnsafeCell::new(Tables {
    gdt: [0; 7],
    tss: Tss {
        _reserved0: 0,
        rsp: [0; 3],
        _reserved1: 0,
        ist: [0; 7],
        _reserved2: 0,
        _reserved3: 0,
        iomap_base: 0,
    },
}));

/// User data selector with RPL 3.
pub const USER_DATA: u16 = 0x18 | 3;
/// User code selector with RPL 3.
pub const USER_CODE: u16 = 0x20 | 3;

/// Fills the TSS, loads the GDT, reloads the segment registers and loads the task register.
pub fn init() {
    // SAFETY: single CPU, interrupts off, called once before the IDT is loaded: nothing else
    // reads or writes the tables while this reference lives.
    let tables = unsafe { &mut *TABLES.0.get() };
    tables.gdt = [
        0,
        0x00af_9a00_0000_ffff, // 0x08 kernel code, 64-bit
        0x00cf_9200_0000_ffff, // 0x10 kernel data
        0x00cf_f200_0000_ffff, // 0x18 user data (DPL 3), in the order SYSRET expects
        0x00af_fa00_0000_ffff, // 0x20 user code, 64-bit (DPL 3)
        0,                     // 0x28 TSS, low half
        0,                     // 0x30 TSS, high half
    ];
    // No I/O bitmap: ring 3 never gets port access through the TSS.
    tables.tss.iomap_base = core::mem::size_of::<Tss>() as u16;
    // Interrupts from ring 3 push their frame on the entry stack.
    tables.tss.rsp[0] = ENTRY_STACK.top();
    tables.tss.ist[usize::from(IST_DOUBLE_FAULT - 1)] = DOUBLE_FAULT_STACK.top();
    tables.tss.ist[usize::from(IST_NMI - 1)] = NMI_STACK.top();
    tables.tss.ist[usize::from(IST_MACHINE_CHECK - 1)] = MACHINE_CHECK_STACK.top();

    let base = &raw const tables.tss as u64;
    let limit = (core::mem::size_of::<Tss>() - 1) as u64;
    tables.gdt[5] = limit & 0xffff
        | (base & 0xff_ffff) << 16
        | 0x89 << 40 // present, 64-bit available TSS
        | (base >> 24 & 0xff) << 56;
    tables.gdt[6] = base >> 32;

    let pointer = DescriptorPointer {
        limit: (core::mem::size_of::<[u64; 7]>() - 1) as u16,
        base: tables.gdt.as_ptr() as u64,
    };
    // SAFETY: the GDT is static and its code/data descriptors match the ones the boot stub
    // used, so reloading CS and the data segments keeps the running code valid; the TSS
    // descriptor was just written and is marked available, as LTR requires.
    unsafe {
        asm!(
            "lgdt [{ptr}]",
            "push {code}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov ds, {data:x}",
            "mov es, {data:x}",
            "mov ss, {data:x}",
            "mov fs, {data:x}",
            "mov gs, {data:x}",
            "ltr {tss:x}",
            ptr = in(reg) &pointer,
            code = const KERNEL_CODE as u64,
            data = in(reg) u64::from(KERNEL_DATA),
            tss = in(reg) u64::from(TSS_SELECTOR),
            tmp = out(reg) _,
        );
    }
}

/// The operand of LGDT and LIDT.
#[repr(C, packed)]
pub struct DescriptorPointer {
    /// Size in bytes minus one.
    pub limit: u16,
    /// Linear address of the table.
    pub base: u64,
}
