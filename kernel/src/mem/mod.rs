//! Memory: the frame pool, page tables, the fixed virtual layout, and the INV-MEM self-check.

pub mod audit;
pub mod frames;
pub mod paging;

/// Where things live in the kernel's address space. There is no KASLR (P-03): these are fixed,
/// documented in `docs/ARCHITECTURE.md`, and safe to know.
pub mod layout {
    /// The kernel image is linked here plus its physical address (top 2 GiB, code-model=kernel).
    pub const KERNEL_VMA: u64 = 0xffff_ffff_8000_0000;
    /// Physical address the image is loaded at.
    pub const KERNEL_PHYS: u64 = 0x10_0000;
    /// The direct map: physical address `p` of a pool frame is at `PHYSMAP + p`, read-write and
    /// never executable. Only frames the pool manages are in it, so the kernel image (and with
    /// it the text) has no writable alias.
    pub const PHYSMAP: u64 = 0xffff_8000_0000_0000;
    /// Device registers (LAPIC, IOAPIC): physical address `p` at `MMIO + p`, read-write, never
    /// executable, uncached. Never mapped in a process table.
    pub const MMIO: u64 = 0xffff_c000_0000_0000;
    /// RAM below this is left to firmware and legacy devices and never pooled.
    pub const LOW_MEMORY_END: u64 = 0x10_0000;
}

/// Words of the frame-pool bitmaps. 16 Ki words cover 2^20 frames, which is 4 GiB of physical
/// address space. The boot identity map covers the same 4 GiB, and every board we ship has
/// less RAM; RAM above is reported in the boot log and left unused. Two bitmaps of 128 KiB each
/// sit in `.bss`.
pub const FRAME_POOL_WORDS: usize = 16 * 1024;

/// The kernel's frame pool type.
pub type KernelFramePool = frames::FramePool<FRAME_POOL_WORDS>;

/// Page-table pages the kernel may use for its own tables. The kernel image needs about 6 and
/// the direct map of 4 GiB in 2 MiB pages about 8; 64 leaves room for unaligned regions that
/// need 4 KiB pages. Running out stops the boot with [`crate::exit::ExitCode::PoolExhausted`].
pub const KERNEL_PT_BUDGET: usize = 64;
