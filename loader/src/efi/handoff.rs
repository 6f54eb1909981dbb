//! Placing the kernel, building the PVH boot record, leaving the firmware, and entering the
//! kernel's 32-bit PVH entry.
//!
//! UEFI runs us in long mode on the firmware's identity-mapped page tables. The PVH entry wants
//! 32-bit protected mode with paging off. The switch runs from one page below 4 GiB holding a
//! copy of [`TRAMPOLINE`] and its own GDT: load the GDT, far-return into a 32-bit code segment
//! (compatibility mode), clear CR0.PG (which leaves long mode), clear EFER.LME, and jump to the
//! entry with EBX pointing at the start info: the state QEMU's `-kernel` leaves. The kernel then
//! builds its own page tables from scratch, so nothing of the firmware's mapping survives.

use super::{Refusal, console};
use brainix_loader::elf::KernelImage;
use brainix_loader::media;
use brainix_loader::pvh::{Layout, MapEntry, build_map};
use core::arch::{asm, global_asm};
use uefi::boot::{self, AllocateType, MemoryType};
use uefi::mem::memory_map::MemoryMap;
use uefi::table::cfg::ConfigTableEntry;

/// Map entries set aside beyond what the firmware reports before we exit: each allocation
/// between now and `ExitBootServices` can split a region in three.
const MAP_SLACK: usize = 128;

/// Offsets in the trampoline page.
const GDT_OFFSET: usize = 0xe00;
const GDTR_OFFSET: usize = 0xf00;

/// The trampoline's GDT: null, 64-bit code (0x08), 32-bit code (0x10), 32-bit data (0x18), all
/// flat, with the accessed bits already set so the CPU never writes the table.
const GDT: [u64; 4] = [
    0,
    0x00af_9b00_0000_ffff,
    0x00cf_9b00_0000_ffff,
    0x00cf_9300_0000_ffff,
];

// The trampoline. Position independent: it is copied to a page below 4 GiB and entered there
// with RDI = start info, RSI = kernel entry, RDX = the page's address (all below 4 GiB).
global_asm!(
    r#"
    .section .text.brainix_trampoline, "ax"
    .balign 16
    .global brainix_trampoline_start
    .global brainix_trampoline_end
brainix_trampoline_start:
    cli
    lgdt {gdtr}(%rdx)
    movq %cr4, %rax
    btrq $17, %rax
    movq %rax, %cr4
    leaq (brainix_trampoline_32 - brainix_trampoline_start)(%rdx), %rax
    pushq $0x10
    pushq %rax
    lretq
    .code32
brainix_trampoline_32:
    movl $0x18, %eax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %fs
    movw %ax, %gs
    movw %ax, %ss
    movl %cr0, %eax
    btrl $31, %eax
    movl %eax, %cr0
    movl $0xc0000080, %ecx
    rdmsr
    btrl $8, %eax
    wrmsr
    movl %edi, %ebx
    xorl %eax, %eax
    jmp *%esi
    .code64
brainix_trampoline_end:
    .text
"#,
    gdtr = const GDTR_OFFSET,
    options(att_syntax)
);

unsafe extern "C" {
    static brainix_trampoline_start: u8;
    static brainix_trampoline_end: u8;
}

/// Pages below 4 GiB, zeroed.
fn low_pages(pages: usize, kind: MemoryType) -> Result<&'static mut [u8], Refusal> {
    let ptr = boot::allocate_pages(AllocateType::MaxAddress(0xffff_ffff), kind, pages)
        .map_err(|e| Refusal::LowMemory(e.status()))?;
    // SAFETY: the firmware gave us `pages` identity-mapped pages below 4 GiB that nothing else
    // owns; they are never freed.
    let block = unsafe { core::slice::from_raw_parts_mut(ptr.as_ptr(), pages * 4096) };
    block.fill(0);
    Ok(block)
}

/// Places the kernel, leaves boot services and enters the kernel. Returns only to refuse, and
/// only before boot services end.
pub fn enter(
    kernel: &KernelImage,
    image: &[u8],
    cmdline: &[u8],
) -> Result<core::convert::Infallible, Refusal> {
    // The kernel's physical range, as one allocation at exactly its addresses.
    let (lo, hi) = kernel.span();
    let first = lo & !0xfff;
    let pages = (hi - first).div_ceil(4096) as usize;
    let ptr = boot::allocate_pages(AllocateType::Address(first), MemoryType::LOADER_DATA, pages)
        .map_err(|e| Refusal::KernelMemory(lo, hi, e.status()))?;
    // SAFETY: the firmware reserved exactly these pages for us, identity-mapped.
    let dest = unsafe { core::slice::from_raw_parts_mut(ptr.as_ptr(), pages * 4096) };
    dest.fill(0);
    for seg in kernel.segments() {
        // Checked by KernelImage::parse: inside the file and inside the span.
        let at = (seg.paddr - first) as usize;
        let from = seg.offset as usize;
        dest[at..at + seg.filesz as usize]
            .copy_from_slice(&image[from..from + seg.filesz as usize]);
    }

    let rsdp = uefi::system::with_config_table(|t| {
        let find = |guid| {
            t.iter()
                .find(|e: &&uefi::table::cfg::ConfigTableEntry| e.guid == guid)
        };
        find(ConfigTableEntry::ACPI2_GUID)
            .or_else(|| find(ConfigTableEntry::ACPI_GUID))
            .map_or(0, |e| e.address as u64)
    });

    // The boot record and a scratch map, sized from the map as it is now.
    let now = boot::memory_map(MemoryType::LOADER_DATA)
        .map_err(|e| Refusal::LowMemory(e.status()))?
        .len();
    let capacity = now + MAP_SLACK;
    let layout = Layout::new(media::MAX_CMDLINE_BYTES as usize, capacity);
    let record = low_pages(layout.len.div_ceil(4096), MemoryType::LOADER_DATA)?;
    let scratch_bytes = capacity * core::mem::size_of::<MapEntry>();
    let scratch = low_pages(scratch_bytes.div_ceil(4096), MemoryType::LOADER_DATA)?;
    // SAFETY: `scratch` is at least `capacity` MapEntry values long, page aligned (more than
    // MapEntry's alignment), and zero bytes are a valid MapEntry.
    let scratch: &mut [MapEntry] =
        unsafe { core::slice::from_raw_parts_mut(scratch.as_mut_ptr().cast(), capacity) };

    let page = low_pages(1, MemoryType::LOADER_CODE)?;
    // SAFETY: the two symbols bound the trampoline's bytes in our own text.
    let code = unsafe {
        let start = &raw const brainix_trampoline_start;
        let end = &raw const brainix_trampoline_end;
        core::slice::from_raw_parts(start, end as usize - start as usize)
    };
    if code.len() > GDT_OFFSET {
        return Err(Refusal::LowMemory(uefi::Status::BUFFER_TOO_SMALL));
    }
    page[..code.len()].copy_from_slice(code);
    let base = page.as_ptr() as u64;
    for (i, d) in GDT.iter().enumerate() {
        page[GDT_OFFSET + 8 * i..GDT_OFFSET + 8 * i + 8].copy_from_slice(&d.to_le_bytes());
    }
    page[GDTR_OFFSET..GDTR_OFFSET + 2].copy_from_slice(&(GDT.len() as u16 * 8 - 1).to_le_bytes());
    page[GDTR_OFFSET + 2..GDTR_OFFSET + 10]
        .copy_from_slice(&(base + GDT_OFFSET as u64).to_le_bytes());

    console::line(format_args!(
        "brainix-loader: measured into PCR 9 and 12; entering the kernel at {:#x}",
        kernel.entry
    ));

    // SAFETY: nothing of boot services is used after this: the file buffers, the kernel and
    // the boot record are pages we own, and no protocol is touched again.
    let map = unsafe { boot::exit_boot_services(Some(MemoryType::LOADER_DATA)) };
    let entries = map.entries().map(|d| (d.phys_start, d.page_count, d.ty.0));
    let n = match build_map(entries, scratch) {
        Ok(n) => n,
        Err(_) => {
            console::com1_line(format_args!(
                "brainix-loader: REFUSED: the firmware memory map has more than {capacity} entries; not booting"
            ));
            super::stop(false)
        }
    };
    let record_base = record.as_ptr() as u64;
    layout.write(record, record_base, cmdline, rsdp, &scratch[..n]);

    // SAFETY: interrupts off and both 8259s masked so nothing the firmware armed fires before
    // the kernel has its own IDT (the PVH contract starts with interrupts disabled). The port
    // writes touch no memory.
    unsafe {
        asm!("cli", options(nomem, nostack));
        asm!("out 0x21, al", "out 0xa1, al", in("al") 0xffu8, options(nomem, nostack));
    }
    // SAFETY: `page` holds the trampoline and its GDT below 4 GiB, identity-mapped by the
    // firmware's tables, which stay loaded until the trampoline turns paging off. The start
    // info, the kernel and the entry (checked inside the kernel's code) are below 4 GiB. The
    // trampoline never returns.
    unsafe {
        asm!(
            "jmp {t}",
            t = in(reg) base,
            in("rdi") record_base,
            in("rsi") u64::from(kernel.entry),
            in("rdx") base,
            options(noreturn)
        )
    }
}
