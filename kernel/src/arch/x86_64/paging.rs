//! The kernel's own page tables, built from the frame pool, and the self-check run on them.
//!
//! INV-MEM: text is RX, rodata R+NX, data/bss/stacks RW+NX, every guard page unmapped, and the
//! direct map covers only pool frames, RW+NX, so no frame of the kernel image has a second,
//! writable address. Nothing is global (see `mem::paging::bits::GLOBAL`).

use crate::mem::audit::{self, Section, Violation};
use crate::mem::frames::Frame;
use crate::mem::layout::{KERNEL_VMA, MMIO, PHYSMAP};
use crate::mem::paging::{
    MapError, Perm, SIZE_4K, Table, TableMemory, bits, map, map_range, map_raw,
};
use crate::mem::{KERNEL_PT_BUDGET, KernelFramePool};

unsafe extern "C" {
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_start: u8;
    static __rodata_end: u8;
    static __data_start: u8;
    static __bss_end: u8;
    static __image_phys_start: u8;
    static __image_phys_end: u8;
}

/// Addresses from the linker script.
pub struct Image {
    /// Kernel sections with the rights each must have.
    pub sections: [Section; 3],
    /// Physical extent of the whole image, boot stub included.
    pub phys: (u64, u64),
}

/// Reads the section bounds the linker script defines.
pub fn image() -> Image {
    // Only the addresses of these symbols are used, never their contents.
    let text = (&raw const __text_start as u64, &raw const __text_end as u64);
    let rodata = (
        &raw const __rodata_start as u64,
        &raw const __rodata_end as u64,
    );
    let data = (&raw const __data_start as u64, &raw const __bss_end as u64);
    let section = |name, (start, end): (u64, u64), writable, executable| Section {
        name,
        start,
        end,
        writable,
        executable,
    };
    Image {
        sections: [
            section("text", text, false, true),
            section("rodata", rodata, false, false),
            section("data+bss", data, true, false),
        ],
        phys: (
            &raw const __image_phys_start as u64,
            &raw const __image_phys_end as u64,
        ),
    }
}

/// Page-table memory reached at `base + phys`: 0 through the boot identity map, [`PHYSMAP`]
/// once the kernel's tables are live. New tables come from the frame pool, at most
/// [`KERNEL_PT_BUDGET`] of them.
pub struct KernelTables<'a> {
    base: u64,
    pool: &'a mut KernelFramePool,
    used: [u64; KERNEL_PT_BUDGET],
    count: usize,
}

impl<'a> KernelTables<'a> {
    /// Tables reached through the identity map, as during boot.
    pub fn identity(pool: &'a mut KernelFramePool) -> Self {
        KernelTables {
            base: 0,
            pool,
            used: [0; KERNEL_PT_BUDGET],
            count: 0,
        }
    }

    /// From now on, reach tables through the direct map.
    pub fn use_physmap(&mut self) {
        self.base = PHYSMAP;
    }

    /// The frames handed out as tables so far.
    pub fn frames(&self) -> &[u64] {
        &self.used[..self.count]
    }

    /// The pool the tables come from.
    pub fn pool(&mut self) -> &mut KernelFramePool {
        self.pool
    }

    /// Gives the pool back, once the kernel's tables are final.
    pub fn into_pool(self) -> &'a mut KernelFramePool {
        self.pool
    }
}

impl TableMemory for KernelTables<'_> {
    fn table(&self, phys: u64) -> &Table {
        // SAFETY: `phys` comes from a present table entry the kernel wrote (or CR3), so it is a
        // pool frame holding a table; pool frames are mapped at `base + phys` in both phases.
        unsafe { &*((self.base + phys) as *const Table) }
    }

    fn table_mut(&mut self, phys: u64) -> &mut Table {
        // SAFETY: as for `table`; `&mut self` makes this the only reference made through us.
        unsafe { &mut *((self.base + phys) as *mut Table) }
    }

    fn new_table(&mut self) -> Result<u64, MapError> {
        if self.count == KERNEL_PT_BUDGET {
            return Err(MapError::OutOfFrames);
        }
        let frame = self.pool.alloc().map_err(|_| MapError::OutOfFrames)?;
        self.used[self.count] = frame.addr();
        self.count += 1;
        *self.table_mut(frame.addr()) = [0; 512];
        Ok(frame.addr())
    }
}

/// Builds the kernel's address space: each section with its rights, guard pages left out, the
/// direct map over `pool_ranges`, and the device pages `mmio` uncached in the MMIO window.
/// Returns the new root.
pub fn build(
    tables: &mut KernelTables<'_>,
    image: &Image,
    guards: &[u64],
    pool_ranges: &[(u64, u64)],
    mmio: &[u64],
) -> Result<u64, MapError> {
    let root = tables.new_table()?;
    for s in &image.sections {
        let perm = match (s.writable, s.executable) {
            (false, true) => Perm::ReadExec,
            (false, false) => Perm::Read,
            _ => Perm::ReadWrite,
        };
        let mut page = s.start;
        while page < s.end {
            if !guards.contains(&page) {
                map(tables, root, page, page - KERNEL_VMA, SIZE_4K, perm)?;
            }
            page += SIZE_4K;
        }
    }
    for &(start, end) in pool_ranges {
        map_range(
            tables,
            root,
            PHYSMAP + start,
            start,
            end - start,
            Perm::ReadWrite,
        )?;
    }
    for &page in mmio {
        // Read-write, never executable, cache disabled (PCD | PWT).
        let leaf = bits::PRESENT | bits::WRITABLE | bits::NX | 1 << 4 | 1 << 3;
        map_raw(tables, root, MMIO + page, page, SIZE_4K, leaf)?;
    }
    Ok(root)
}

/// Results of the self-check, one per property.
pub struct SelfCheck {
    /// `mem.wx`, with the number of leaves walked.
    pub wx: Result<usize, Violation>,
    /// `mem.sections`.
    pub sections: Result<(), Violation>,
    /// `mem.stack-guards`.
    pub guards: Result<(), Violation>,
    /// `mem.no-wx-alias`.
    pub alias: Result<(), Violation>,
}

impl SelfCheck {
    /// The first violation, in report order.
    pub fn first_violation(&self) -> Option<Violation> {
        [
            self.wx.err(),
            self.sections.err(),
            self.guards.err(),
            self.alias.err(),
        ]
        .into_iter()
        .flatten()
        .next()
    }
}

/// Walks the tables at `root` and checks every INV-MEM property of the kernel's address space.
pub fn self_check(
    tables: &KernelTables<'_>,
    root: u64,
    image: &Image,
    guards: &[u64],
) -> SelfCheck {
    SelfCheck {
        wx: audit::wx(tables, root),
        sections: audit::sections(tables, root, &image.sections, guards),
        guards: audit::stack_guards(tables, root, guards),
        alias: audit::no_wx_alias(tables, root),
    }
}

/// Whether a frame lies in the image.
pub fn in_image(image: &Image, frame: Frame) -> bool {
    (image.phys.0..image.phys.1).contains(&frame.addr())
}
