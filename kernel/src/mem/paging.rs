//! x86-64 four-level page tables: building them and walking them.
//!
//! INV-MEM: W^X is structural here. A mapping is requested with a [`Perm`], and no `Perm` is both
//! writable and executable, so [`map`] cannot create a W+X page. Intermediate entries are always
//! permissive (present, writable, executable) and the leaf decides; the walker computes the
//! effective rights as the AND over all levels, which is what the CPU enforces.
//!
//! Table memory is reached through [`TableMemory`], so the same code builds tables in the kernel
//! (through the boot identity map, then the direct map) and in host tests (a `Vec` of pages).

use core::fmt;

/// Entry bits.
pub mod bits {
    /// The entry is valid.
    pub const PRESENT: u64 = 1 << 0;
    /// Writes are allowed (with CR0.WP, also for the kernel).
    pub const WRITABLE: u64 = 1 << 1;
    /// Ring 3 may access.
    pub const USER: u64 = 1 << 2;
    /// In a PD or PDPT entry: maps a 2 MiB or 1 GiB page instead of pointing to a table.
    pub const HUGE: u64 = 1 << 7;
    /// Survives CR3 reloads. The kernel never sets it: with KPTI, kernel translations must not
    /// outlive a switch to a user table.
    pub const GLOBAL: u64 = 1 << 8;
    /// No instruction fetch (needs EFER.NXE).
    pub const NX: u64 = 1 << 63;
    /// The physical address field.
    pub const ADDR: u64 = 0x000f_ffff_ffff_f000;
}

/// Bytes mapped by one leaf at each level.
pub const SIZE_4K: u64 = 1 << 12;
/// A PD leaf.
pub const SIZE_2M: u64 = 1 << 21;
/// A PDPT leaf.
pub const SIZE_1G: u64 = 1 << 30;

/// One page table: 512 entries.
pub type Table = [u64; 512];

/// The rights of a mapping. There is deliberately no writable-and-executable variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Perm {
    /// Read only, not executable: rodata.
    Read,
    /// Read and write, not executable: data, bss, stacks, the direct map.
    ReadWrite,
    /// Read and execute, not writable: text.
    ReadExec,
}

impl Perm {
    fn leaf_bits(self) -> u64 {
        match self {
            Perm::Read => bits::PRESENT | bits::NX,
            Perm::ReadWrite => bits::PRESENT | bits::WRITABLE | bits::NX,
            Perm::ReadExec => bits::PRESENT,
        }
    }

    /// Whether the permission allows writes.
    pub fn writable(self) -> bool {
        matches!(self, Perm::ReadWrite)
    }

    /// Whether the permission allows instruction fetch.
    pub fn executable(self) -> bool {
        matches!(self, Perm::ReadExec)
    }
}

/// Access to page-table memory by physical address.
pub trait TableMemory {
    /// The table stored in the frame at `phys`.
    fn table(&self, phys: u64) -> &Table;
    /// The same, for writing.
    fn table_mut(&mut self, phys: u64) -> &mut Table;
    /// A fresh, zeroed frame for a new table.
    fn new_table(&mut self) -> Result<u64, MapError>;
}

/// Why a mapping was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// An address or size is not aligned to the page size asked for.
    Misaligned {
        /// The virtual address.
        virt: u64,
    },
    /// The virtual address is not canonical (bits 63..47 not all equal).
    NonCanonical {
        /// The virtual address.
        virt: u64,
    },
    /// Something is already mapped there; remapping silently is never allowed.
    AlreadyMapped {
        /// The virtual address.
        virt: u64,
    },
    /// No frame for a new table.
    OutOfFrames,
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapError::Misaligned { virt } => write!(f, "mapping at {virt:#x} is misaligned"),
            MapError::NonCanonical { virt } => write!(f, "{virt:#x} is not canonical"),
            MapError::AlreadyMapped { virt } => write!(f, "{virt:#x} is already mapped"),
            MapError::OutOfFrames => f.write_str("no frame left for a page table"),
        }
    }
}

/// Whether `virt` is a canonical 48-bit address.
pub fn is_canonical(virt: u64) -> bool {
    let top = virt >> 47;
    top == 0 || top == 0x1_ffff
}

fn index(virt: u64, level: u32) -> usize {
    ((virt >> (12 + 9 * level)) & 0x1ff) as usize
}

/// Maps one page of `size` ([`SIZE_4K`] or [`SIZE_2M`]) at `virt` to `phys` with `perm`,
/// creating intermediate tables as needed. Never replaces an existing mapping.
pub fn map(
    mem: &mut impl TableMemory,
    root: u64,
    virt: u64,
    phys: u64,
    size: u64,
    perm: Perm,
) -> Result<(), MapError> {
    map_raw(mem, root, virt, phys, size, perm.leaf_bits())
}

/// Maps one 4 KiB user page: like [`map`], plus the user bit on the leaf and on every table
/// above it. Refused for addresses in the kernel's (upper) half.
pub fn map_user(
    mem: &mut impl TableMemory,
    root: u64,
    virt: u64,
    phys: u64,
    perm: Perm,
) -> Result<(), MapError> {
    if virt >= 1 << 47 {
        return Err(MapError::NonCanonical { virt });
    }
    map_raw(
        mem,
        root,
        virt,
        phys,
        SIZE_4K,
        perm.leaf_bits() | bits::USER,
    )
}

/// Maps with raw leaf bits. Only the test image uses this directly, to plant a W+X page and
/// watch the self-check catch it; everything else goes through [`map`].
pub fn map_raw(
    mem: &mut impl TableMemory,
    root: u64,
    virt: u64,
    phys: u64,
    size: u64,
    leaf: u64,
) -> Result<(), MapError> {
    if !is_canonical(virt) {
        return Err(MapError::NonCanonical { virt });
    }
    let leaf_level = match size {
        SIZE_4K => 0,
        SIZE_2M => 1,
        _ => return Err(MapError::Misaligned { virt }),
    };
    if !virt.is_multiple_of(size) || !phys.is_multiple_of(size) || phys & !bits::ADDR != 0 {
        return Err(MapError::Misaligned { virt });
    }
    let mut table = root;
    for level in (leaf_level + 1..4).rev() {
        let i = index(virt, level);
        let entry = mem.table(table)[i];
        let user = leaf & bits::USER;
        table = if entry & bits::PRESENT == 0 {
            let new = mem.new_table()?;
            mem.table_mut(table)[i] = new | bits::PRESENT | bits::WRITABLE | user;
            new
        } else if entry & bits::HUGE != 0 {
            return Err(MapError::AlreadyMapped { virt });
        } else {
            mem.table_mut(table)[i] |= user;
            entry & bits::ADDR
        };
    }
    let i = index(virt, leaf_level);
    let slot = &mut mem.table_mut(table)[i];
    if *slot & bits::PRESENT != 0 {
        return Err(MapError::AlreadyMapped { virt });
    }
    *slot = phys | leaf | if leaf_level == 1 { bits::HUGE } else { 0 };
    Ok(())
}

/// Maps `[virt, virt + len)` to `[phys, phys + len)`, using 2 MiB pages where both sides are
/// aligned and 4 KiB pages elsewhere. `len` must be a multiple of 4 KiB.
pub fn map_range(
    mem: &mut impl TableMemory,
    root: u64,
    virt: u64,
    phys: u64,
    len: u64,
    perm: Perm,
) -> Result<(), MapError> {
    if !len.is_multiple_of(SIZE_4K) {
        return Err(MapError::Misaligned { virt });
    }
    let mut off = 0;
    while off < len {
        let (v, p, left) = (virt + off, phys + off, len - off);
        let size = if v % SIZE_2M == 0 && p % SIZE_2M == 0 && left >= SIZE_2M {
            SIZE_2M
        } else {
            SIZE_4K
        };
        map(mem, root, v, p, size, perm)?;
        off += size;
    }
    Ok(())
}

/// One present leaf, with the rights the CPU would give it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// First virtual address.
    pub virt: u64,
    /// First physical address.
    pub phys: u64,
    /// Bytes mapped.
    pub size: u64,
    /// Writable at every level.
    pub writable: bool,
    /// Executable at every level (no NX anywhere on the path).
    pub executable: bool,
    /// User-accessible at every level.
    pub user: bool,
    /// Global bit set on the leaf.
    pub global: bool,
}

impl Leaf {
    /// Whether the leaf covers `virt`.
    pub fn contains(&self, virt: u64) -> bool {
        virt >= self.virt && virt - self.virt < self.size
    }
}

fn sign_extend(virt: u64) -> u64 {
    if virt & (1 << 47) != 0 {
        virt | 0xffff_0000_0000_0000
    } else {
        virt
    }
}

/// Calls `visit` for every present leaf reachable from `root`, in address order. Stops early
/// and returns the visitor's error if it gives one.
pub fn walk<E>(
    mem: &impl TableMemory,
    root: u64,
    mut visit: impl FnMut(&Leaf) -> Result<(), E>,
) -> Result<(), E> {
    let full = bits::WRITABLE | bits::USER;
    walk_level(mem, root, 3, 0, full, false, &mut visit)
}

fn walk_level<E>(
    mem: &impl TableMemory,
    table: u64,
    level: u32,
    base: u64,
    allowed: u64,
    nx: bool,
    visit: &mut impl FnMut(&Leaf) -> Result<(), E>,
) -> Result<(), E> {
    let entries = mem.table(table);
    for (i, &entry) in entries.iter().enumerate() {
        if entry & bits::PRESENT == 0 {
            continue;
        }
        let virt = base | (i as u64) << (12 + 9 * level);
        let allowed = allowed & entry;
        let nx = nx || entry & bits::NX != 0;
        if level == 0 || entry & bits::HUGE != 0 {
            let leaf = Leaf {
                virt: sign_extend(virt),
                phys: entry & bits::ADDR & !((1u64 << (12 + 9 * level)) - 1),
                size: 1 << (12 + 9 * level),
                writable: allowed & bits::WRITABLE != 0,
                executable: !nx,
                user: allowed & bits::USER != 0,
                global: entry & bits::GLOBAL != 0,
            };
            visit(&leaf)?;
        } else {
            walk_level(mem, entry & bits::ADDR, level - 1, virt, allowed, nx, visit)?;
        }
    }
    Ok(())
}

/// The leaf that maps `virt`, if any.
pub fn translate(mem: &impl TableMemory, root: u64, virt: u64) -> Option<Leaf> {
    if !is_canonical(virt) {
        return None;
    }
    let mut table = root;
    let (mut allowed, mut nx) = (bits::WRITABLE | bits::USER, false);
    for level in (0..4).rev() {
        let entry = mem.table(table)[index(virt, level)];
        if entry & bits::PRESENT == 0 {
            return None;
        }
        allowed &= entry;
        nx |= entry & bits::NX != 0;
        if level == 0 || entry & bits::HUGE != 0 {
            let size = 1u64 << (12 + 9 * level);
            return Some(Leaf {
                virt: virt & !(size - 1),
                phys: entry & bits::ADDR & !(size - 1),
                size,
                writable: allowed & bits::WRITABLE != 0,
                executable: !nx,
                user: allowed & bits::USER != 0,
                global: entry & bits::GLOBAL != 0,
            });
        }
        table = entry & bits::ADDR;
    }
    None
}

/// Page tables in host memory, for the unit tests of this module and of [`super::audit`].
#[cfg(test)]
pub(crate) mod fake {
    use super::*;

    /// Frames at fake physical addresses `0x1000 * (i + 1)`.
    #[derive(Default)]
    pub struct FakeTables {
        pub tables: Vec<Box<Table>>,
        pub limit: Option<usize>,
    }

    impl FakeTables {
        pub fn with_root() -> (FakeTables, u64) {
            let mut t = FakeTables::default();
            let root = t.new_table().unwrap();
            (t, root)
        }
        fn slot(phys: u64) -> usize {
            (phys / 0x1000 - 1) as usize
        }
    }

    impl TableMemory for FakeTables {
        fn table(&self, phys: u64) -> &Table {
            &self.tables[Self::slot(phys)]
        }
        fn table_mut(&mut self, phys: u64) -> &mut Table {
            &mut self.tables[Self::slot(phys)]
        }
        fn new_table(&mut self) -> Result<u64, MapError> {
            if self.limit.is_some_and(|l| self.tables.len() >= l) {
                return Err(MapError::OutOfFrames);
            }
            self.tables.push(Box::new([0; 512]));
            Ok(self.tables.len() as u64 * 0x1000)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeTables;
    use super::*;

    const KTEXT: u64 = 0xffff_ffff_8010_0000;

    #[test]
    fn maps_and_translates_with_effective_rights() {
        let (mut t, root) = FakeTables::with_root();
        map(&mut t, root, KTEXT, 0x10_0000, SIZE_4K, Perm::ReadExec).unwrap();
        map(&mut t, root, KTEXT + 0x1000, 0x10_1000, SIZE_4K, Perm::Read).unwrap();
        map(
            &mut t,
            root,
            KTEXT + 0x2000,
            0x10_2000,
            SIZE_4K,
            Perm::ReadWrite,
        )
        .unwrap();

        let text = translate(&t, root, KTEXT + 0x123).unwrap();
        assert_eq!(
            (text.phys, text.writable, text.executable),
            (0x10_0000, false, true)
        );
        let ro = translate(&t, root, KTEXT + 0x1fff).unwrap();
        assert_eq!((ro.writable, ro.executable), (false, false));
        let rw = translate(&t, root, KTEXT + 0x2000).unwrap();
        assert_eq!((rw.writable, rw.executable, rw.user), (true, false, false));
        assert_eq!(translate(&t, root, KTEXT + 0x3000), None);
        // 4 tables: the root plus one each for PDPT, PD and PT.
        assert_eq!(t.tables.len(), 4);
    }

    #[test]
    fn walk_visits_every_leaf_in_order_with_sign_extended_addresses() {
        let (mut t, root) = FakeTables::with_root();
        map_range(
            &mut t,
            root,
            0x20_0000,
            0x20_0000,
            0x40_2000,
            Perm::ReadWrite,
        )
        .unwrap();
        map(&mut t, root, KTEXT, 0x10_0000, SIZE_4K, Perm::ReadExec).unwrap();
        let mut leaves = Vec::new();
        walk::<()>(&t, root, |l| {
            leaves.push((l.virt, l.size));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            leaves,
            vec![
                (0x20_0000, SIZE_2M),
                (0x40_0000, SIZE_2M),
                (0x60_0000, SIZE_4K),
                (0x60_1000, SIZE_4K),
                (KTEXT, SIZE_4K),
            ]
        );
    }

    #[test]
    fn refuses_bad_requests_without_changing_anything() {
        let (mut t, root) = FakeTables::with_root();
        map(&mut t, root, 0x1000, 0x1000, SIZE_4K, Perm::Read).unwrap();
        let before: Vec<Table> = t.tables.iter().map(|b| **b).collect();
        let cases = [
            (
                0x1000,
                0x2000,
                SIZE_4K,
                MapError::AlreadyMapped { virt: 0x1000 },
            ),
            (
                0x1001,
                0x2000,
                SIZE_4K,
                MapError::Misaligned { virt: 0x1001 },
            ),
            (
                0x20_0000,
                0x1000,
                SIZE_2M,
                MapError::Misaligned { virt: 0x20_0000 },
            ),
            (0x3000, 0x2000, 12345, MapError::Misaligned { virt: 0x3000 }),
            (
                0x0000_8000_0000_0000,
                0x2000,
                SIZE_4K,
                MapError::NonCanonical {
                    virt: 0x0000_8000_0000_0000,
                },
            ),
            (
                0x5000,
                1 << 52,
                SIZE_4K,
                MapError::Misaligned { virt: 0x5000 },
            ),
        ];
        for (virt, phys, size, err) in cases {
            assert_eq!(
                map(&mut t, root, virt, phys, size, Perm::ReadWrite),
                Err(err)
            );
        }
        let after: Vec<Table> = t.tables.iter().map(|b| **b).collect();
        assert_eq!(before, after);
    }

    #[test]
    fn a_huge_page_is_never_split_or_overwritten() {
        let (mut t, root) = FakeTables::with_root();
        map(&mut t, root, 0x20_0000, 0x20_0000, SIZE_2M, Perm::Read).unwrap();
        assert_eq!(
            map(&mut t, root, 0x20_1000, 0x5000, SIZE_4K, Perm::ReadWrite),
            Err(MapError::AlreadyMapped { virt: 0x20_1000 })
        );
    }

    #[test]
    fn running_out_of_table_frames_is_an_error() {
        let (mut t, root) = FakeTables::with_root();
        t.limit = Some(2);
        assert_eq!(
            map(&mut t, root, 0x1000, 0x1000, SIZE_4K, Perm::Read),
            Err(MapError::OutOfFrames)
        );
    }

    #[test]
    fn user_pages_are_user_at_every_level_and_only_in_the_lower_half() {
        let (mut t, root) = FakeTables::with_root();
        map_user(&mut t, root, 0x40_0000, 0x9000, Perm::ReadExec).unwrap();
        map(&mut t, root, 0x40_1000, 0xa000, SIZE_4K, Perm::Read).unwrap();
        let u = translate(&t, root, 0x40_0000).unwrap();
        assert!(u.user && u.executable && !u.writable);
        assert!(
            !translate(&t, root, 0x40_1000).unwrap().user,
            "a supervisor page stays one"
        );
        assert_eq!(
            map_user(&mut t, root, KTEXT, 0x9000, Perm::Read),
            Err(MapError::NonCanonical { virt: KTEXT })
        );
    }

    #[test]
    fn no_perm_is_writable_and_executable() {
        for p in [Perm::Read, Perm::ReadWrite, Perm::ReadExec] {
            let b = p.leaf_bits();
            let w = b & bits::WRITABLE != 0;
            let x = b & bits::NX == 0;
            assert!(!(w && x), "{p:?} is W+X");
            assert_eq!((w, x), (p.writable(), p.executable()));
        }
    }

    #[test]
    fn nx_or_read_only_at_any_level_wins() {
        let (mut t, root) = FakeTables::with_root();
        map(&mut t, root, 0x1000, 0x1000, SIZE_4K, Perm::ReadExec).unwrap();
        let pml4e = t.table(root)[0];
        t.table_mut(root)[0] = pml4e | bits::NX;
        assert!(!translate(&t, root, 0x1000).unwrap().executable);
        map(&mut t, root, 0x2000, 0x2000, SIZE_4K, Perm::ReadWrite).unwrap();
        t.table_mut(root)[0] = pml4e & !bits::WRITABLE;
        assert!(!translate(&t, root, 0x2000).unwrap().writable);
    }
}
