//! Process address spaces: built from the frame pool, reached by the kernel only through the
//! direct map.
//!
//! The kernel's tables never map a process page, so the kernel cannot touch user memory by
//! accident (SMAP holds trivially). To copy, it walks the process's tables in software, treating
//! the user pointer as a claim: every page must be present, user-accessible and, for writes,
//! writable, or the copy is [`Error::BadAddress`]. Only then does it touch the frame, through
//! the direct map.

use super::trampoline;
use crate::elf::Program;
use crate::kprintln;
use crate::manifest::{CapSpec, DevicePart, ProcessSpec};
use crate::mem::KernelFramePool;
use crate::mem::audit;
use crate::mem::frames::Frame;
use crate::mem::layout::{KERNEL_VMA, PHYSMAP};
use crate::mem::paging::{
    self, Leaf, MapError, Perm, SIZE_4K, Table, TableMemory, bits, map, map_raw, map_user,
    translate,
};
use crate::platform::Resolved;
use crate::system::{Launch, LaunchError, MAX_PROCESS_PAGES, MAX_PROCESSES, Spaces};
use brainix_abi::Error;
use brainix_abi::layout::STACK_TOP;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

/// The frames of one process, so teardown can return every one of them but its DMA pools.
pub struct FrameList {
    frames: [u64; MAX_PROCESS_PAGES],
    count: usize,
    root: u64,
    /// The DMA pool of each capability slot: first frame and pages (0 for none). These frames
    /// stay the process's across its deaths: a device its dead server programmed may still
    /// write them (there is no IOMMU, and a virtio-mmio device has no bus-master switch), so
    /// they must go to nobody else. The next launch of the same process gets them again,
    /// zeroed.
    dma: [(u64, u32); crate::cap::CAPS_PER_PROCESS],
}

impl FrameList {
    const EMPTY: FrameList = FrameList {
        frames: [0; MAX_PROCESS_PAGES],
        count: 0,
        root: 0,
        dma: [(0, 0); crate::cap::CAPS_PER_PROCESS],
    };

    /// Whether `frame` belongs to one of the process's DMA pools.
    fn in_dma_pool(&self, frame: u64) -> bool {
        self.dma
            .iter()
            .any(|&(first, pages)| (first..first + u64::from(pages) * SIZE_4K).contains(&frame))
    }
}

/// The kernel's side of every process address space.
pub struct ArchSpaces {
    pool: &'static mut KernelFramePool,
    lists: &'static mut [FrameList; MAX_PROCESSES],
    guards: [u64; 5],
    /// Physical extent of the kernel image, which no MMIO capability may cover.
    image: (u64, u64),
    /// CR4.PCIDE is on: each process runs under PCID `pid + 1`, the kernel under 0.
    pcid: bool,
    /// The process was (re)launched since its PCID was last loaded: that load must flush.
    fresh: [bool; MAX_PROCESSES],
}

/// CR3 bit 63: keep the TLB entries of the PCID being loaded.
pub const CR3_NO_FLUSH: u64 = 1 << 63;

/// The per-process frame lists, handed out once by [`ArchSpaces::new`].
struct Lists(UnsafeCell<[FrameList; MAX_PROCESSES]>, AtomicBool);
// SAFETY: the only access is the single `&mut` that `ArchSpaces::new` takes, guarded by the flag.
unsafe impl Sync for Lists {}
static FRAME_LISTS: Lists = Lists(
    UnsafeCell::new([FrameList::EMPTY; MAX_PROCESSES]),
    AtomicBool::new(false),
);

/// Scratch for [`ArchSpaces::audit_sharing`]: one entry per user page any process can map.
struct Sharing(UnsafeCell<[(u64, u16); MAX_PROCESSES * MAX_PROCESS_PAGES]>);
// SAFETY: only `audit_sharing` touches it, on one CPU with interrupts off (see there).
unsafe impl Sync for Sharing {}
static SHARING: Sharing = Sharing(UnsafeCell::new([(0, 0); MAX_PROCESSES * MAX_PROCESS_PAGES]));

/// Reads tables through the direct map; builds none.
struct Physmap;

impl TableMemory for Physmap {
    fn table(&self, phys: u64) -> &Table {
        // SAFETY: `phys` comes from CR3 or a present entry of a table the kernel built from pool
        // frames, which the direct map covers.
        unsafe { &*((PHYSMAP + phys) as *const Table) }
    }
    fn table_mut(&mut self, phys: u64) -> &mut Table {
        // SAFETY: as above; `&mut self` is the only way in.
        unsafe { &mut *((PHYSMAP + phys) as *mut Table) }
    }
    fn new_table(&mut self) -> Result<u64, MapError> {
        Err(MapError::OutOfFrames)
    }
}

/// Builds one process's tables, charging every frame to its list and budget.
struct Builder<'a> {
    pool: &'a mut KernelFramePool,
    list: &'a mut FrameList,
    budget: usize,
}

impl Builder<'_> {
    fn frame(&mut self) -> Result<u64, MapError> {
        if self.list.count >= self.budget.min(MAX_PROCESS_PAGES) {
            return Err(MapError::OutOfFrames);
        }
        let frame = self.pool.alloc().map_err(|_| MapError::OutOfFrames)?.addr();
        self.charge(frame);
        Ok(frame)
    }

    /// Records a frame just taken from the pool as the process's, and zeroes it.
    fn charge(&mut self, frame: u64) {
        self.list.frames[self.list.count] = frame;
        self.list.count += 1;
        // SAFETY: a pool frame, mapped in the direct map, handed out just now to nobody else.
        unsafe { core::ptr::write_bytes((PHYSMAP + frame) as *mut u8, 0, SIZE_4K as usize) };
    }
}

impl Builder<'_> {
    /// The process's DMA pool for `slot` of `pages` pages: the frames it kept from its last run
    /// when there are such (charged again and zeroed), else new contiguous ones.
    fn dma_pool(&mut self, slot: usize, pages: u32) -> Result<u64, LaunchError> {
        let (kept, kept_pages) = self.list.dma[slot];
        if kept != 0 && kept_pages == pages {
            if self.list.count + pages as usize > self.budget.min(MAX_PROCESS_PAGES) {
                return Err(LaunchError::OverBudget {
                    needed: (self.list.count + pages as usize) as u64,
                    budget: self.budget as u64,
                });
            }
            for i in 0..u64::from(pages) {
                self.charge(kept + i * SIZE_4K);
            }
            return Ok(kept);
        }
        // A pool of another size (the manifest cannot change, so this is only defence): the
        // old frames go back before new ones are taken.
        for i in 0..u64::from(kept_pages) {
            if let Some(f) = Frame::at(kept + i * SIZE_4K) {
                let _ = self.pool.free(f);
            }
        }
        self.list.dma[slot] = (0, 0);
        let first = self.contiguous(pages as usize)?;
        self.list.dma[slot] = (first, pages);
        Ok(first)
    }

    /// `count` physically contiguous frames, zeroed and charged to the process. Returns the
    /// first.
    fn contiguous(&mut self, count: usize) -> Result<u64, LaunchError> {
        if self.list.count + count > self.budget.min(MAX_PROCESS_PAGES) {
            return Err(LaunchError::OverBudget {
                needed: (self.list.count + count) as u64,
                budget: self.budget as u64,
            });
        }
        let first = self
            .pool
            .alloc_contiguous(count)
            .map_err(|_| LaunchError::OutOfMemory)?
            .addr();
        for i in 0..count as u64 {
            self.charge(first + i * SIZE_4K);
        }
        Ok(first)
    }
}

impl TableMemory for Builder<'_> {
    fn table(&self, phys: u64) -> &Table {
        Physmap.table(phys)
    }
    fn table_mut(&mut self, phys: u64) -> &mut Table {
        // SAFETY: as for `Physmap::table_mut`.
        unsafe { &mut *((PHYSMAP + phys) as *mut Table) }
    }
    fn new_table(&mut self) -> Result<u64, MapError> {
        self.frame()
    }
}

impl ArchSpaces {
    /// Takes the pool and the frame lists for good.
    pub fn new(
        pool: &'static mut KernelFramePool,
        guards: [u64; 5],
        image: (u64, u64),
        pcid: bool,
    ) -> ArchSpaces {
        if FRAME_LISTS.1.swap(true, Ordering::AcqRel) {
            crate::kprintln!("brainix: FATAL: process frame lists taken twice");
            super::stop(crate::exit::ExitCode::Panic);
        }
        // SAFETY: the flag above makes this the only reference ever made to the lists.
        let lists = unsafe { &mut *FRAME_LISTS.0.get() };
        ArchSpaces {
            pool,
            lists,
            guards,
            image,
            pcid,
            fresh: [true; MAX_PROCESSES],
        }
    }

    /// The root table of `pid`, or 0 when it has no address space.
    pub fn root(&self, pid: u16) -> u64 {
        self.lists[usize::from(pid)].root
    }

    /// The CR3 value that switches to `pid`. With PCIDs, a switch keeps the TLB, except the
    /// first one after a launch, which flushes whatever the PCID cached of the previous run.
    pub fn cr3(&mut self, pid: u16) -> u64 {
        let root = self.root(pid);
        if !self.pcid {
            return root;
        }
        let tagged = root | (u64::from(pid) + 1);
        if core::mem::take(&mut self.fresh[usize::from(pid)]) {
            tagged
        } else {
            tagged | CR3_NO_FLUSH
        }
    }

    /// The pool, for statistics.
    pub fn pool(&self) -> &KernelFramePool {
        self.pool
    }

    /// Checks every page of `[addr, addr + len)` in `pid`'s space: present, user, and writable
    /// when `write`. Returns the root table.
    fn check_range(&self, pid: u16, addr: u64, len: u64, write: bool) -> Result<u64, Error> {
        let root = self.root(pid);
        if root == 0 {
            return Err(Error::BadAddress);
        }
        let end = addr.checked_add(len).ok_or(Error::BadAddress)?;
        if end > 1 << 47 {
            return Err(Error::BadAddress);
        }
        let mut page = addr & !0xfff;
        while page < end {
            let leaf = translate(&Physmap, root, page).ok_or(Error::BadAddress)?;
            if !leaf.user || (write && !leaf.writable) {
                return Err(Error::BadAddress);
            }
            page += SIZE_4K;
        }
        Ok(root)
    }

    /// Walks `[addr, addr + len)` of `pid`'s space page by page, calling `f` with the direct-map
    /// address and length of each piece. Every page is checked before any is touched, so a
    /// failed write changes nothing; the checked leaves are kept so each page is walked once.
    fn each_piece(
        &self,
        pid: u16,
        addr: u64,
        len: usize,
        write: bool,
        mut f: impl FnMut(u64, usize, usize),
    ) -> Result<(), Error> {
        /// Pages remembered between the check and the copy; longer ranges walk twice.
        const REMEMBERED: usize = 4;
        let root = self.root(pid);
        let end = addr.checked_add(len as u64).ok_or(Error::BadAddress)?;
        if root == 0 || end > 1 << 47 {
            return Err(Error::BadAddress);
        }
        let mut leaves = [None; REMEMBERED];
        let mut page = addr & !0xfff;
        let mut i = 0;
        while page < end {
            let leaf = translate(&Physmap, root, page).ok_or(Error::BadAddress)?;
            if !leaf.user || (write && !leaf.writable) {
                return Err(Error::BadAddress);
            }
            if let Some(slot) = leaves.get_mut(i) {
                *slot = Some(leaf);
            }
            i += 1;
            page += SIZE_4K;
        }
        let mut done = 0;
        let mut i = 0;
        while done < len {
            let at = addr + done as u64;
            let leaf = match leaves.get(i).copied().flatten() {
                Some(leaf) if leaf.contains(at) => leaf,
                _ => translate(&Physmap, root, at).ok_or(Error::BadAddress)?,
            };
            let within = (at - leaf.virt) as usize;
            let n = (len - done).min(leaf.size as usize - within);
            f(PHYSMAP + leaf.phys + within as u64, n, done);
            done += n;
            i += 1;
        }
        Ok(())
    }

    fn build(&mut self, pid: u16, spec: &ProcessSpec) -> Result<Launch, LaunchError> {
        let program = Program::parse(spec.image).map_err(LaunchError::Image)?;
        let budget = spec.memory_pages as usize;
        let needed = program.pages() + u64::from(spec.stack_pages);
        if needed > budget as u64 {
            return Err(LaunchError::OverBudget {
                needed,
                budget: budget as u64,
            });
        }
        let image = self.image;
        let list = &mut self.lists[usize::from(pid)];
        let mut b = Builder {
            pool: self.pool,
            list,
            budget,
        };
        let oom = |_| LaunchError::OutOfMemory;
        let root = b.frame().map_err(oom)?;
        b.list.root = root;
        // KPTI: the trampoline, supervisor-only, guard pages left out.
        let [text, data] = trampoline::ranges();
        for (range, perm) in [(text, Perm::ReadExec), (data, Perm::ReadWrite)] {
            let mut page = range.0;
            while page < range.1 {
                if !self.guards.contains(&page) {
                    map(&mut b, root, page, page - KERNEL_VMA, SIZE_4K, perm).map_err(oom)?;
                }
                page += SIZE_4K;
            }
        }
        for seg in program.segments() {
            let mut page = seg.vaddr & !0xfff;
            while page < seg.vaddr + seg.mem_len {
                let frame = b.frame().map_err(oom)?;
                // The file bytes that fall in this page.
                let from = page.max(seg.vaddr);
                let to = (page + SIZE_4K).min(seg.vaddr + seg.file_len as u64);
                if from < to {
                    let src = seg.file_offset + (from - seg.vaddr) as usize;
                    let bytes = &spec.image[src..src + (to - from) as usize];
                    // SAFETY: the frame is ours and mapped in the direct map; the copy stays
                    // inside it because `from..to` lies inside `page..page + 4096`.
                    unsafe {
                        core::ptr::copy_nonoverlapping(
                            bytes.as_ptr(),
                            (PHYSMAP + frame + (from - page)) as *mut u8,
                            bytes.len(),
                        )
                    };
                }
                map_user(&mut b, root, page, frame, seg.perm).map_err(|e| match e {
                    MapError::OutOfFrames => LaunchError::OutOfMemory,
                    _ => LaunchError::Image(crate::elf::ElfError::BadAddress { vaddr: page }),
                })?;
                page += SIZE_4K;
            }
        }
        // The stack, NX, with an unmapped guard page under it.
        for i in 1..=u64::from(spec.stack_pages) {
            let frame = b.frame().map_err(oom)?;
            map_user(
                &mut b,
                root,
                STACK_TOP - i * SIZE_4K,
                frame,
                Perm::ReadWrite,
            )
            .map_err(oom)?;
        }
        // Device regions and DMA pools, each in its slot's window.
        let mut dma = [0u64; crate::cap::CAPS_PER_PROCESS];
        for (slot, cap) in spec
            .caps
            .iter()
            .enumerate()
            .take(crate::cap::CAPS_PER_PROCESS)
        {
            let window = brainix_abi::layout::region(slot as u16);
            let (phys, pages, writable) = match *cap {
                CapSpec::Mmio {
                    base,
                    pages,
                    rights,
                } => {
                    Self::check_mmio(b.pool, image, base, pages, false)
                        .map_err(|()| LaunchError::BadRegion { slot, phys: base })?;
                    (base, pages, rights & brainix_abi::rights::WRITE != 0)
                }
                CapSpec::Device {
                    pci,
                    part: part @ DevicePart::Bar { .. },
                } => match super::pci::platform().resolve(&pci, &part) {
                    Ok(Resolved::Region {
                        phys,
                        pages,
                        rights,
                    }) => {
                        // A hostile device can claim a BAR over RAM: the same checks apply.
                        Self::check_mmio(b.pool, image, phys, pages, true)
                            .map_err(|()| LaunchError::BadRegion { slot, phys })?;
                        (phys, pages, rights & brainix_abi::rights::WRITE != 0)
                    }
                    Ok(_) => continue,
                    Err(error) => return Err(LaunchError::Device { slot, error }),
                },
                CapSpec::DmaPool { pages } => {
                    if u64::from(pages) * SIZE_4K > brainix_abi::layout::REGION_STRIDE {
                        return Err(LaunchError::BadRegion { slot, phys: 0 });
                    }
                    let first = b.dma_pool(slot, pages)?;
                    dma[slot] = first;
                    (first, pages, true)
                }
                _ => continue,
            };
            let device = matches!(cap, CapSpec::Mmio { .. } | CapSpec::Device { .. });
            for i in 0..u64::from(pages) {
                // User, never executable; device registers uncached (PCD | PWT).
                let mut leaf = bits::PRESENT | bits::USER | bits::NX;
                if writable {
                    leaf |= bits::WRITABLE;
                }
                if device {
                    leaf |= 1 << 4 | 1 << 3;
                }
                map_raw(
                    &mut b,
                    root,
                    window + i * SIZE_4K,
                    phys + i * SIZE_4K,
                    SIZE_4K,
                    leaf,
                )
                .map_err(oom)?;
            }
        }
        let pages = b.list.count as u64;
        // INV-MEM, KPTI: prove the new table before anything runs in it.
        if let Err(v) = audit::user_space(&Physmap, root, &trampoline::ranges()) {
            kprintln!(
                "brainix: FATAL: process table of pid {pid} fails {} at {:#x}: {}",
                v.check,
                v.addr,
                v.what
            );
            super::stop(crate::exit::ExitCode::SelfCheckFailed);
        }
        Ok(Launch {
            entry: program.entry,
            stack_top: STACK_TOP,
            pages,
            dma,
        })
    }

    /// An MMIO region must be device space: page aligned, within one slot window, and not one
    /// byte of RAM the pool manages, of the kernel image, of the interrupt controllers or of
    /// the ECAM window (every device's configuration). A plain `mmio` region (`bar` false) may
    /// not cover a PCI device's BAR either: those are reached only through a device
    /// capability, which binds the device to one server.
    fn check_mmio(
        pool: &KernelFramePool,
        image: (u64, u64),
        base: u64,
        pages: u32,
        bar: bool,
    ) -> Result<(), ()> {
        let len = u64::from(pages) * SIZE_4K;
        let end = base.checked_add(len).ok_or(())?;
        if !base.is_multiple_of(SIZE_4K) || pages == 0 || len > brainix_abi::layout::REGION_STRIDE {
            return Err(());
        }
        let overlaps = |s: u64, e: u64| base < e && end > s;
        if overlaps(image.0, image.1) {
            return Err(());
        }
        let platform = super::pci::platform();
        let lapic = super::apic::lapic_phys();
        for page in platform.ioapic_pages().chain([lapic]) {
            if overlaps(page, page + SIZE_4K) {
                return Err(());
            }
        }
        if let Some(e) = platform.acpi.ecam
            && overlaps(
                e.base,
                e.base + ((u64::from(e.bus_end - e.bus_start) + 1) << 20),
            )
        {
            return Err(());
        }
        if !bar && platform.overlaps_pci(base, end) {
            return Err(());
        }
        let mut at = base;
        while at < end {
            if Frame::at(at).is_some_and(|f| pool.manages(f)) {
                return Err(());
            }
            at += SIZE_4K;
        }
        Ok(())
    }
}

impl Spaces for ArchSpaces {
    fn read(&self, pid: u16, addr: u64, buf: &mut [u8]) -> Result<(), Error> {
        let len = buf.len();
        let dst = buf.as_mut_ptr();
        self.each_piece(pid, addr, len, false, |src, n, done| {
            // SAFETY: `src..src + n` is a checked user page of `pid` in the direct map, and
            // `done + n <= len` keeps the destination inside `buf`.
            unsafe { core::ptr::copy_nonoverlapping(src as *const u8, dst.add(done), n) }
        })
    }

    fn write(&mut self, pid: u16, addr: u64, data: &[u8]) -> Result<(), Error> {
        self.each_piece(pid, addr, data.len(), true, |dst, n, done| {
            // SAFETY: `dst..dst + n` is a checked writable user page of `pid` in the direct
            // map, and `done + n <= data.len()`.
            unsafe { core::ptr::copy_nonoverlapping(data.as_ptr().add(done), dst as *mut u8, n) }
        })
    }

    fn check(&self, pid: u16, addr: u64, len: u64, write: bool) -> Result<(), Error> {
        self.check_range(pid, addr, len, write).map(|_| ())
    }

    fn launch(&mut self, pid: u16, spec: &ProcessSpec) -> Result<Launch, LaunchError> {
        self.teardown(pid);
        self.fresh[usize::from(pid)] = true;
        let launched = self.build(pid, spec);
        if launched.is_err() {
            self.teardown(pid);
        }
        launched
    }

    fn audit_sharing(&self) -> Result<u64, (u64, u16, u16)> {
        // SAFETY: one CPU, and the system (this call's only caller) runs with interrupts off,
        // so nothing else borrows the buffer while this function does.
        let buf = unsafe { &mut *SHARING.0.get() };
        let mut n = 0;
        for pid in 0..MAX_PROCESSES as u16 {
            let root = self.root(pid);
            if root == 0 {
                continue;
            }
            let _ = paging::walk(&Physmap, root, |l: &Leaf| {
                if !l.user {
                    return Ok(());
                }
                let mut page = l.phys;
                while page < l.phys + l.size {
                    let slot = buf.get_mut(n).ok_or(())?;
                    *slot = (page, pid);
                    n += 1;
                    page += 4096;
                }
                Ok::<(), ()>(())
            });
        }
        match audit::shared_page(&mut buf[..n]) {
            Some(shared) => Err(shared),
            None => Ok(n as u64),
        }
    }

    fn audit_tables(&self, pid: u16) -> Option<Result<u64, (u64, u64)>> {
        let root = self.root(pid);
        if root == 0 {
            return None;
        }
        Some(
            audit::user_space(&Physmap, root, &trampoline::ranges())
                .map(|leaves| leaves as u64)
                .map_err(|v| (audit::table_audit_code(&v), v.addr)),
        )
    }

    fn teardown(&mut self, pid: u16) {
        let list = &mut self.lists[usize::from(pid)];
        for &frame in &list.frames[..list.count] {
            // INV-MEM: a DMA pool stays reserved for its process (see `FrameList::dma`).
            if list.in_dma_pool(frame) {
                continue;
            }
            if let Some(f) = Frame::at(frame) {
                // Every frame in the list came from the pool; a refusal would mean corruption,
                // which the pool reports rather than hides.
                if let Err(e) = self.pool.free(f) {
                    kprintln!("brainix: returning frames of pid {pid}: {e}");
                }
            }
        }
        list.count = 0;
        list.root = 0;
    }
}
