//! The way in: the PVH note, the multiboot header, and the 32-bit stub both enter.
//!
//! Both protocols start us in 32-bit protected mode with paging off, at the physical address of
//! `_start32`. The stub checks for long mode, builds throw-away tables (identity map of the low
//! 4 GiB in 2 MiB pages, plus the kernel window at `KERNEL_VMA`), turns on PAE, long mode,
//! NXE (when the CPU has NX), paging and CR0.WP, and jumps to [`start64`] in the higher half. The
//! Rust kernel then replaces these tables with its own before it reads any input beyond the
//! boot record (see `start.rs`). Nothing here is QEMU-specific: any PVH or multiboot v1 loader
//! enters the same way.

use super::stacks::{BOOT_STACK, BOOT_STACK_SIZE};
use core::arch::{global_asm, naked_asm};
use core::cell::UnsafeCell;

/// The stub's seven tables: PML4, low PDPT, high PDPT, and four PDs (2048 × 2 MiB = 4 GiB).
#[repr(C, align(4096))]
pub struct BootTables(UnsafeCell<[[u64; 512]; 7]>);

// SAFETY: written only by the stub, before any Rust code runs, and never again.
unsafe impl Sync for BootTables {}

/// Referenced from the stub by physical address.
pub static BOOT_TABLES: BootTables = BootTables(UnsafeCell::new([[0; 512]; 7]));

// The multiboot v1 header, with the a.out-kludge flag (bit 16) because iPXE loads only 32-bit
// ELF otherwise. Only the `multiboot` build carries it: QEMU's `-kernel` prefers a multiboot
// header over the PVH note, and the default image must enter by PVH.
#[cfg(feature = "multiboot")]
global_asm!(
    r#"
    .section .multiboot_header, "a"
    .p2align 2
multiboot_header:
    .long 0x1badb002
    .long 0x00010002
    .long -(0x1badb002 + 0x00010002)
    .long multiboot_header
    .long __image_phys_start
    .long __load_end_phys
    .long __image_phys_end
    .long _start32
"#,
    options(att_syntax)
);

global_asm!(
    r#"
    .section .note.Xen, "a"
    .p2align 2
    .long 4
    .long 4
    .long 18
    .asciz "Xen"
    .p2align 2
    .long _start32

    .section .boot.rodata, "a"
    .p2align 3
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff
    .quad 0x00cf92000000ffff
boot_gdt_end:
boot_gdt_ptr:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt
no_long_mode_msg:
    .asciz "brainix: FATAL: CPU lacks long mode (CPUID.80000001H:EDX[29]); BraiNIX requires x86-64 and refuses to boot\n"

    .section .boot.text, "ax"
    .code32
    .global _start32
_start32:
    cli
    cld
    movl ${stack} + {stack_size} - 0xffffffff80000000, %esp
    pushl %ebx
    pushl %eax

    movl $0x80000000, %eax
    cpuid
    cmpl $0x80000001, %eax
    jb 90f
    movl $0x80000001, %eax
    cpuid
    btl $29, %edx
    jnc 90f
    movl %edx, %ebp

    movl ${tables} - 0xffffffff80000000, %edi
    xorl %eax, %eax
    movl $(7 * 1024), %ecx
    rep stosl

    movl ${tables} - 0xffffffff80000000, %edi
    leal 0x1003(%edi), %eax
    movl %eax, (%edi)
    leal 0x2003(%edi), %eax
    movl %eax, 511 * 8(%edi)
    leal 0x3003(%edi), %eax
    movl %eax, 0x1000(%edi)
    movl %eax, 0x2000 + 510 * 8(%edi)
    leal 0x4003(%edi), %eax
    movl %eax, 0x1008(%edi)
    leal 0x5003(%edi), %eax
    movl %eax, 0x1010(%edi)
    leal 0x6003(%edi), %eax
    movl %eax, 0x1018(%edi)

    leal 0x3000(%edi), %ebx
    xorl %ecx, %ecx
1:
    movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax
    movl %eax, (%ebx, %ecx, 8)
    incl %ecx
    cmpl $2048, %ecx
    jb 1b

    movl %cr4, %eax
    orl $(1 << 5), %eax
    movl %eax, %cr4
    movl %edi, %cr3

    movl $0xc0000080, %ecx
    rdmsr
    orl $(1 << 8), %eax
    btl $20, %ebp
    jnc 2f
    orl $(1 << 11), %eax
2:
    wrmsr

    movl %cr0, %eax
    orl $((1 << 31) | (1 << 16) | 1), %eax
    movl %eax, %cr0

    lgdt boot_gdt_ptr
    popl %edi
    popl %esi
    ljmp $0x08, $3f

    .code64
3:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    movabsq ${start64}, %rax
    jmp *%rax

    .code32
90:
    movl $no_long_mode_msg, %esi
91:
    movb (%esi), %bl
    testb %bl, %bl
    jz 93f
    movw $0x3fd, %dx
92:
    inb %dx, %al
    testb $0x20, %al
    jz 92b
    movw $0x3f8, %dx
    movb %bl, %al
    outb %al, %dx
    incl %esi
    jmp 91b
93:
    cli
    hlt
    jmp 93b
    .code64
    .text
"#,
    stack = sym BOOT_STACK,
    stack_size = const BOOT_STACK_SIZE + 4096,
    tables = sym BOOT_TABLES,
    start64 = sym start64,
    options(att_syntax)
);

/// The first 64-bit instruction in the higher half: moves RSP to the virtual address of the boot
/// stack and calls [`super::start::kernel_main`] with the entry EAX and EBX, zero-extended (the
/// upper halves of registers are undefined after the mode switch).
#[unsafe(naked)]
unsafe extern "C" fn start64() -> ! {
    naked_asm!(
        "lea rsp, [rip + {stack} + {top}]",
        "xor ebp, ebp",
        "mov edi, edi",
        "mov esi, esi",
        "call {main}",
        "ud2",
        stack = sym BOOT_STACK,
        top = const BOOT_STACK_SIZE + 4096,
        main = sym super::start::kernel_main,
    )
}
