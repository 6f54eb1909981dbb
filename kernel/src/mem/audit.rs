//! INV-MEM self-check: walk page tables and prove what [`super::paging`] promised.
//!
//! Each check is its own function returning the first offending address, so the boot report and
//! the result frames can name exactly which property failed and where. The checks read only the
//! tables (and, for the register check, values `arch` read from the CPU); they never trust the
//! code that built the tables.

use super::paging::{Leaf, TableMemory, translate, walk};

/// Executable physical ranges tracked by [`no_wx_alias`]. The kernel has one text range, and
/// later each process adds one or two; 64 leaves ample room. More is reported as a failure,
/// never silently skipped.
pub const MAX_EXEC_RANGES: usize = 64;

/// A failed check: which one, where, and what was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The check's id, as reported in result frames (`mem.wx`, ...).
    pub check: &'static str,
    /// The first offending virtual address.
    pub addr: u64,
    /// A short description for the log.
    pub what: &'static str,
}

/// A kernel section and the rights every page of it must have.
#[derive(Clone, Copy, Debug)]
pub struct Section {
    /// Name for the log.
    pub name: &'static str,
    /// First virtual address (page aligned).
    pub start: u64,
    /// One past the last (page aligned).
    pub end: u64,
    /// Must be writable.
    pub writable: bool,
    /// Must be executable.
    pub executable: bool,
}

/// `mem.wx`: no leaf is both writable and executable.
pub fn wx(mem: &impl TableMemory, root: u64) -> Result<usize, Violation> {
    let mut leaves = 0;
    walk(mem, root, |l: &Leaf| {
        leaves += 1;
        if l.writable && l.executable {
            return Err(Violation {
                check: "mem.wx",
                addr: l.virt,
                what: "page is writable and executable",
            });
        }
        Ok(())
    })?;
    Ok(leaves)
}

/// `mem.sections`: every page of each section is mapped, supervisor-only, with exactly the
/// section's rights.
pub fn sections(
    mem: &impl TableMemory,
    root: u64,
    sections: &[Section],
    skip: &[u64],
) -> Result<(), Violation> {
    for s in sections {
        let mut page = s.start;
        while page < s.end {
            if !skip.contains(&page) {
                let fail = |what| Violation {
                    check: "mem.sections",
                    addr: page,
                    what,
                };
                let leaf = translate(mem, root, page).ok_or(fail("section page not mapped"))?;
                if leaf.user {
                    return Err(fail("kernel page is user-accessible"));
                }
                if leaf.writable != s.writable {
                    return Err(fail("section page has the wrong write right"));
                }
                if leaf.executable != s.executable {
                    return Err(fail("section page has the wrong execute right"));
                }
            }
            page += 4096;
        }
    }
    Ok(())
}

/// `mem.stack-guards`: each guard page is unmapped.
pub fn stack_guards(mem: &impl TableMemory, root: u64, guards: &[u64]) -> Result<(), Violation> {
    match guards.iter().find(|&&g| translate(mem, root, g).is_some()) {
        Some(&addr) => Err(Violation {
            check: "mem.stack-guards",
            addr,
            what: "stack guard page is mapped",
        }),
        None => Ok(()),
    }
}

/// `mem.no-wx-alias`: no writable mapping reaches a physical frame that some mapping executes.
/// W^X per page is not enough if the same frame is writable through a second address.
pub fn no_wx_alias(mem: &impl TableMemory, root: u64) -> Result<(), Violation> {
    let mut exec = [(0u64, 0u64); MAX_EXEC_RANGES];
    let mut count = 0;
    walk(mem, root, |l: &Leaf| {
        if !l.executable {
            return Ok(());
        }
        let end = l.phys + l.size;
        if count > 0 && exec[count - 1].1 == l.phys {
            exec[count - 1].1 = end;
        } else if count < MAX_EXEC_RANGES {
            exec[count] = (l.phys, end);
            count += 1;
        } else {
            return Err(Violation {
                check: "mem.no-wx-alias",
                addr: l.virt,
                what: "too many executable ranges to check",
            });
        }
        Ok(())
    })?;
    let exec = &exec[..count];
    walk(mem, root, |l: &Leaf| {
        let end = l.phys + l.size;
        if l.writable && exec.iter().any(|&(s, e)| l.phys < e && end > s) {
            return Err(Violation {
                check: "mem.no-wx-alias",
                addr: l.virt,
                what: "writable mapping aliases an executable frame",
            });
        }
        Ok(())
    })
}

/// `ipc.no-shared-memory`: given every (physical page, pid) a user mapping reaches, the first
/// page two processes reach, with both pids. Sorts `pages` in place.
pub fn shared_page(pages: &mut [(u64, u16)]) -> Option<(u64, u16, u16)> {
    pages.sort_unstable();
    pages
        .windows(2)
        .find(|w| w[0].0 == w[1].0 && w[0].1 != w[1].1)
        .map(|w| (w[0].0, w[0].1, w[1].1))
}

/// What [`user_space`] found wrong.
pub const USER_WX: &str = "page is writable and executable";
/// What [`user_space`] found wrong.
pub const USER_IN_KERNEL_HALF: &str = "user page in the kernel half";
/// What [`user_space`] found wrong.
pub const KERNEL_OUTSIDE_TRAMPOLINE: &str = "kernel page outside the entry trampoline";
/// What [`user_space`] found wrong.
pub const GLOBAL_PAGE: &str = "global page in a process table";

/// The ABI code ([`brainix_abi::table_audit`]) of a [`user_space`] violation.
pub fn table_audit_code(v: &Violation) -> u64 {
    use brainix_abi::table_audit as t;
    match v.what {
        USER_WX => t::WRITABLE_EXECUTABLE,
        USER_IN_KERNEL_HALF => t::USER_IN_KERNEL_HALF,
        KERNEL_OUTSIDE_TRAMPOLINE => t::KERNEL_OUTSIDE_TRAMPOLINE,
        _ => t::GLOBAL,
    }
}

/// `mem.user-space`: a process's tables map nothing writable and executable, map user pages only
/// in the lower half, and map of the kernel only pages inside `trampoline` (KPTI), supervisor-only.
pub fn user_space(
    mem: &impl TableMemory,
    root: u64,
    trampoline: &[(u64, u64)],
) -> Result<usize, Violation> {
    let mut leaves = 0;
    walk(mem, root, |l: &Leaf| {
        leaves += 1;
        let fail = |what| {
            Err(Violation {
                check: "mem.user-space",
                addr: l.virt,
                what,
            })
        };
        if l.writable && l.executable {
            return fail(USER_WX);
        }
        if l.user && l.virt >= 1 << 47 {
            return fail(USER_IN_KERNEL_HALF);
        }
        let in_trampoline = trampoline
            .iter()
            .any(|&(s, e)| l.virt >= s && l.virt + l.size <= e);
        if !l.user && !in_trampoline {
            return fail(KERNEL_OUTSIDE_TRAMPOLINE);
        }
        if l.global {
            return fail(GLOBAL_PAGE);
        }
        Ok(())
    })?;
    Ok(leaves)
}

#[cfg(test)]
mod tests {
    use super::super::paging::{Perm, SIZE_2M, SIZE_4K, bits, fake::FakeTables, map, map_raw};
    use super::*;

    const TEXT: u64 = 0xffff_ffff_8010_0000;

    /// A small kernel: 2 text pages, 1 rodata, a guard, 2 data pages; plus a direct map.
    fn kernel() -> (FakeTables, u64, [Section; 3], u64) {
        let (mut t, root) = FakeTables::with_root();
        let phys = |v: u64| v - 0xffff_ffff_8000_0000;
        for (v, p) in [(TEXT, Perm::ReadExec), (TEXT + 0x1000, Perm::ReadExec)]
            .into_iter()
            .chain([(TEXT + 0x2000, Perm::Read)])
            .chain([
                (TEXT + 0x4000, Perm::ReadWrite),
                (TEXT + 0x5000, Perm::ReadWrite),
            ])
        {
            map(&mut t, root, v, phys(v), SIZE_4K, p).unwrap();
        }
        map(
            &mut t,
            root,
            0xffff_8000_0040_0000,
            0x40_0000,
            SIZE_2M,
            Perm::ReadWrite,
        )
        .unwrap();
        let sections = [
            Section {
                name: "text",
                start: TEXT,
                end: TEXT + 0x2000,
                writable: false,
                executable: true,
            },
            Section {
                name: "rodata",
                start: TEXT + 0x2000,
                end: TEXT + 0x3000,
                writable: false,
                executable: false,
            },
            Section {
                name: "data",
                start: TEXT + 0x3000,
                end: TEXT + 0x6000,
                writable: true,
                executable: false,
            },
        ];
        (t, root, sections, TEXT + 0x3000)
    }

    #[test]
    fn a_correct_kernel_passes_every_check() {
        let (t, root, sections, guard) = kernel();
        assert_eq!(wx(&t, root), Ok(6));
        assert_eq!(super::sections(&t, root, &sections, &[guard]), Ok(()));
        assert_eq!(stack_guards(&t, root, &[guard]), Ok(()));
        assert_eq!(no_wx_alias(&t, root), Ok(()));
    }

    #[test]
    fn a_planted_wx_page_is_found_at_its_address() {
        let (mut t, root, _, _) = kernel();
        let bad = 0xffff_ff00_0000_0000;
        map_raw(
            &mut t,
            root,
            bad,
            0x9000,
            SIZE_4K,
            bits::PRESENT | bits::WRITABLE,
        )
        .unwrap();
        let v = wx(&t, root).unwrap_err();
        assert_eq!((v.check, v.addr), ("mem.wx", bad));
    }

    #[test]
    fn a_wrong_right_in_a_section_is_named() {
        let (mut t, root, sections, guard) = kernel();
        // Make the rodata page writable behind the builder's back.
        let leaf_table = {
            let l3 = t.table(root)[511] & bits::ADDR;
            let l2 = t.table(l3)[510] & bits::ADDR;
            t.table(l2)[0] & bits::ADDR
        };
        t.table_mut(leaf_table)[0x102] |= bits::WRITABLE;
        let v = super::sections(&t, root, &sections, &[guard]).unwrap_err();
        assert_eq!((v.check, v.addr), ("mem.sections", TEXT + 0x2000));
        assert_eq!(v.what, "section page has the wrong write right");
        // And a missing page.
        t.table_mut(leaf_table)[0x101] = 0;
        let v = super::sections(&t, root, &sections, &[guard]).unwrap_err();
        assert_eq!((v.addr, v.what), (TEXT + 0x1000, "section page not mapped"));
    }

    #[test]
    fn a_mapped_guard_page_is_caught() {
        let (mut t, root, _, guard) = kernel();
        map(&mut t, root, guard, 0x10_3000, SIZE_4K, Perm::ReadWrite).unwrap();
        assert_eq!(stack_guards(&t, root, &[guard]).unwrap_err().addr, guard);
    }

    #[test]
    fn a_page_two_processes_reach_is_found() {
        let mut pages = [(0x5000, 1), (0x3000, 2), (0x4000, 1), (0x4000, 1)];
        assert_eq!(
            shared_page(&mut pages),
            None,
            "one process mapping a page twice is not sharing"
        );
        let mut pages = [(0x5000, 1), (0x3000, 2), (0x4000, 1), (0x3000, 4)];
        assert_eq!(shared_page(&mut pages), Some((0x3000, 2, 4)));
        assert_eq!(shared_page(&mut []), None);
    }

    #[test]
    fn a_process_table_may_hold_only_its_pages_and_the_trampoline() {
        use super::super::paging::map_user;
        let (mut t, root) = FakeTables::with_root();
        let tramp = (TEXT, TEXT + 0x1000);
        map(&mut t, root, TEXT, 0x10_0000, SIZE_4K, Perm::ReadExec).unwrap();
        map_user(&mut t, root, 0x40_0000, 0x50_0000, Perm::ReadExec).unwrap();
        map_user(&mut t, root, 0x40_1000, 0x50_1000, Perm::ReadWrite).unwrap();
        assert_eq!(user_space(&t, root, &[tramp]), Ok(3));
        // Any other kernel page is a KPTI violation.
        map(&mut t, root, TEXT + 0x2000, 0x10_2000, SIZE_4K, Perm::Read).unwrap();
        let v = user_space(&t, root, &[tramp]).unwrap_err();
        assert_eq!(
            (v.addr, v.what),
            (TEXT + 0x2000, "kernel page outside the entry trampoline")
        );
        let (mut t, root) = FakeTables::with_root();
        map_raw(
            &mut t,
            root,
            0x40_0000,
            0x5000,
            SIZE_4K,
            bits::PRESENT | bits::USER | bits::WRITABLE,
        )
        .unwrap();
        assert_eq!(
            user_space(&t, root, &[]).unwrap_err().what,
            "page is writable and executable"
        );
    }

    #[test]
    fn a_writable_alias_of_text_is_caught() {
        let (mut t, root, _, _) = kernel();
        let alias = 0xffff_8000_0010_1000;
        map(&mut t, root, alias, 0x10_1000, SIZE_4K, Perm::ReadWrite).unwrap();
        assert_eq!(wx(&t, root).map(|_| ()), Ok(()), "each page alone is W^X");
        let v = no_wx_alias(&t, root).unwrap_err();
        assert_eq!((v.check, v.addr), ("mem.no-wx-alias", alias));
    }
}
