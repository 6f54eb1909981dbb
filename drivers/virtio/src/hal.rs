//! virtio-drivers' `Hal` over the process's DMA pool.
//!
//! The pool is physically contiguous frames the kernel allocated at launch and mapped into this
//! process (`region_info` says where, virtually and physically). Pages are handed out first-fit
//! from a bitmap. A buffer the driver shares that lies outside the pool is copied through pool
//! pages (a bounce buffer), so the device only ever sees pool addresses.
//!
//! `Hal` has no `self`, so the state is a static. A device server is one thread and never
//! re-enters the allocator, which is what makes the `UnsafeCell` below sound.

use core::cell::UnsafeCell;
use core::ptr::NonNull;
use virtio_drivers::{BufferDirection, Hal, PhysAddr};

/// Pages a pool may have here: 4 words of bitmap. Our servers use 16 to 64.
pub const MAX_POOL_PAGES: usize = 256;
/// MMIO regions (BARs) `mmio_phys_to_virt` can translate.
pub const MAX_MMIO: usize = 6;
const PAGE: u64 = 4096;

/// The pool's state.
pub struct Pool(UnsafeCell<State>);

/// Where the pool is and which pages are taken.
#[derive(Clone, Copy)]
pub struct State {
    virt: u64,
    phys: u64,
    pages: usize,
    used: [u64; MAX_POOL_PAGES / 64],
    mmio: [(u64, u64, u64); MAX_MMIO],
    mmio_count: usize,
}

// SAFETY: a device server is a single thread, and no method of `Pool` calls back into another
// while it holds the state (see the module comment).
unsafe impl Sync for Pool {}

/// The one pool of this process.
pub static POOL: Pool = Pool(UnsafeCell::new(State::EMPTY));

impl State {
    /// No pool yet.
    pub const EMPTY: State = State {
        virt: 0,
        phys: 0,
        pages: 0,
        used: [0; MAX_POOL_PAGES / 64],
        mmio: [(0, 0, 0); MAX_MMIO],
        mmio_count: 0,
    };

    fn taken(&self, page: usize) -> bool {
        self.used[page / 64] & 1 << (page % 64) != 0
    }

    fn mark(&mut self, first: usize, count: usize, on: bool) {
        for p in first..first + count {
            if on {
                self.used[p / 64] |= 1 << (p % 64);
            } else {
                self.used[p / 64] &= !(1 << (p % 64));
            }
        }
    }

    /// First fit: `count` free pages in a row. Returns the first page's index.
    pub fn alloc(&mut self, count: usize) -> Option<usize> {
        if count == 0 || count > self.pages {
            return None;
        }
        let mut run = 0;
        for p in 0..self.pages {
            run = if self.taken(p) { 0 } else { run + 1 };
            if run == count {
                let first = p + 1 - count;
                self.mark(first, count, true);
                return Some(first);
            }
        }
        None
    }

    /// Returns pages. Pages that are outside the pool or not taken are ignored.
    pub fn free(&mut self, first: usize, count: usize) {
        if first < self.pages && count <= self.pages - first {
            self.mark(first, count, false);
        }
    }

    /// The page index of pool address `virt`, when it lies in the pool.
    pub fn page_of(&self, virt: u64) -> Option<usize> {
        let off = virt.checked_sub(self.virt)?;
        (off < self.pages as u64 * PAGE).then_some((off / PAGE) as usize)
    }

    /// Pages in use.
    pub fn used_pages(&self) -> usize {
        self.used.iter().map(|w| w.count_ones() as usize).sum()
    }
}

impl Pool {
    /// Sets where the pool is (once, at start).
    pub fn init(&self, virt: u64, phys: u64, len: u64) {
        self.with(|s| {
            s.virt = virt;
            s.phys = phys;
            s.pages = ((len / PAGE) as usize).min(MAX_POOL_PAGES);
        });
    }

    /// Runs `f` on the state.
    pub fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        // SAFETY: see `unsafe impl Sync for Pool`: one thread, no re-entry, so this is the only
        // reference while `f` runs.
        f(unsafe { &mut *self.0.get() })
    }

    /// `pages` zeroed pages: (physical, virtual), or `None` when the pool is exhausted.
    pub fn alloc(&self, pages: usize) -> Option<(u64, u64)> {
        self.with(|s| {
            let first = s.alloc(pages)?;
            let virt = s.virt + first as u64 * PAGE;
            // SAFETY: the pages lie in the pool the kernel mapped read-write for this process,
            // and the bitmap just gave them to us alone.
            unsafe { core::ptr::write_bytes(virt as *mut u8, 0, pages * PAGE as usize) };
            Some((s.phys + first as u64 * PAGE, virt))
        })
    }

    /// Physical address of pool memory at `virt`.
    pub fn phys_of(&self, virt: u64) -> Option<u64> {
        self.with(|s| s.page_of(virt).map(|_| s.phys + (virt - s.virt)))
    }
}

/// Records that physical `[phys, phys + len)` is mapped at `virt` (a BAR).
pub fn add_mmio(virt: u64, phys: u64, len: u64) {
    POOL.with(|s| {
        if s.mmio_count < MAX_MMIO {
            s.mmio[s.mmio_count] = (virt, phys, len);
            s.mmio_count += 1;
        }
    });
}

/// The `Hal` of every device server.
pub struct PoolHal;

// SAFETY: `dma_alloc` returns zeroed, page-aligned pool pages no one else holds until
// `dma_dealloc`; `mmio_phys_to_virt` returns only addresses inside regions the kernel mapped
// for this process; `share` returns pool addresses the device may use for the buffer's length.
unsafe impl Hal for PoolHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        match POOL.alloc(pages) {
            Some((phys, virt)) => (
                phys,
                NonNull::new(virt as *mut u8).unwrap_or(NonNull::dangling()),
            ),
            // virtio-drivers reads a zero physical address as failure.
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        let _ = paddr;
        POOL.with(|s| match s.page_of(vaddr.as_ptr() as u64) {
            Some(first) => {
                s.free(first, pages);
                0
            }
            None => -1,
        })
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        let virt = POOL.with(|s| {
            s.mmio[..s.mmio_count]
                .iter()
                .find_map(|&(virt, phys, len)| {
                    let off = paddr.checked_sub(phys)?;
                    (off.checked_add(size as u64)? <= len).then_some(virt + off)
                })
        });
        // A device pointing its structures outside the BARs we were given cannot be driven; the
        // panic ends this server, which is the containment working.
        let virt =
            virt.unwrap_or_else(|| panic!("device names MMIO {paddr:#x}+{size} outside its BARs"));
        NonNull::new(virt as *mut u8).unwrap_or(NonNull::dangling())
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> PhysAddr {
        let virt = buffer.as_ptr().cast::<u8>() as u64;
        let len = buffer.len();
        if let Some(phys) = POOL.phys_of(virt)
            && POOL.phys_of(virt + len as u64 - 1).is_some()
        {
            return phys;
        }
        let pages = len.div_ceil(PAGE as usize).max(1);
        let Some((phys, bounce)) = POOL.alloc(pages) else {
            panic!("DMA pool exhausted sharing {len} bytes");
        };
        if direction != BufferDirection::DeviceToDriver {
            // SAFETY: the caller promises `buffer` is valid for `len` bytes; the bounce pages
            // are ours and at least `len` long.
            unsafe { core::ptr::copy_nonoverlapping(virt as *const u8, bounce as *mut u8, len) };
        }
        phys
    }

    unsafe fn unshare(paddr: PhysAddr, buffer: NonNull<[u8]>, direction: BufferDirection) {
        let virt = buffer.as_ptr().cast::<u8>() as u64;
        let len = buffer.len();
        if POOL.phys_of(virt).is_some() {
            return;
        }
        POOL.with(|s| {
            let Some(off) = paddr.checked_sub(s.phys) else {
                return;
            };
            let bounce = s.virt + off;
            if direction != BufferDirection::DriverToDevice {
                // SAFETY: `share` copied into these bounce pages, which are still ours; the
                // caller promises `buffer` is valid for `len` bytes and not otherwise in use.
                unsafe {
                    core::ptr::copy_nonoverlapping(bounce as *const u8, virt as *mut u8, len)
                };
            }
            if let Some(first) = s.page_of(bounce) {
                s.free(first, len.div_ceil(PAGE as usize).max(1));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(pages: usize) -> State {
        let mut s = State::EMPTY;
        s.virt = 0x6000_0000_0000;
        s.phys = 0x20_0000;
        s.pages = pages;
        s
    }

    #[test]
    fn first_fit_allocates_runs_and_frees_them() {
        let mut s = state(8);
        assert_eq!(s.alloc(3), Some(0));
        assert_eq!(s.alloc(2), Some(3));
        s.free(0, 3);
        // Pages 0-2 and 5-7 are free: no run of 4.
        assert_eq!(s.alloc(4), None);
        assert_eq!(s.used_pages(), 2);
        assert_eq!(s.alloc(3), Some(0));
        assert_eq!(s.alloc(3), Some(5));
        assert_eq!(s.alloc(1), None);
        assert_eq!(s.alloc(0), None);
        assert_eq!(s.alloc(9), None);
        // Out of range frees are ignored.
        s.free(7, 100);
        assert_eq!(s.used_pages(), 8);
        s.free(5, 3);
        assert_eq!(s.used_pages(), 5);
    }

    #[test]
    fn only_pool_addresses_have_pages() {
        let s = state(4);
        assert_eq!(s.page_of(0x6000_0000_0000 + 4095), Some(0));
        assert_eq!(s.page_of(0x6000_0000_0000 + 4 * 4096), None);
        assert_eq!(s.page_of(0x5fff_ffff_ffff), None);
    }
}
