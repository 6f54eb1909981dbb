//! Faults and bad mappings on purpose, for the QEMU tests to watch being caught. Compiled only
//! into the test image (`--features test-hooks`); the release image has none of this.

use super::paging::KernelTables;
use crate::kprintln;
use crate::mem::paging::{SIZE_4K, bits, map_raw};

/// An address the kernel never maps (the lower half is empty in kernel tables).
const UNMAPPED: u64 = 0x0000_7000_0000_0000;
/// Where the `wx-violation` scenario plants its page.
pub const PLANTED_WX: u64 = 0xffff_ff00_0000_0000;

/// A byte of code (`ret`) placed in writable, non-executable data.
#[unsafe(link_section = ".data")]
static mut RET_IN_DATA: [u8; 1] = [0xc3];

/// Runs before the switch to the kernel tables: corrupts them for the self-check to find.
pub fn before_switch(test: Option<&str>, tables: &mut KernelTables<'_>, root: u64) {
    if test == Some("wx-violation") {
        let frame = tables
            .pool()
            .alloc()
            .expect("a frame for the planted page")
            .addr();
        map_raw(
            tables,
            root,
            PLANTED_WX,
            frame,
            SIZE_4K,
            bits::PRESENT | bits::WRITABLE,
        )
        .expect("planting the W+X page");
        kprintln!("brainix: test: planted a writable+executable page at {PLANTED_WX:#x}");
    }
}

/// Runs after the boot report, on the finished kernel.
pub fn after_boot(test: Option<&str>, tables: &mut KernelTables<'_>) {
    let Some(test) = test else { return };
    kprintln!("brainix: test: running scenario {test}");
    match test {
        "pagefault" => {
            // SAFETY: deliberately unsound: this read must fault, which is the test.
            let v = unsafe { core::ptr::read_volatile(UNMAPPED as *const u64) };
            kprintln!("brainix: test: read {v:#x} from an unmapped address?!");
        }
        "write-text" => {
            let target = after_boot as *const () as *mut u8;
            // SAFETY: deliberately unsound: text is read-only, this write must fault.
            unsafe { core::ptr::write_volatile(target, 0xcc) };
            kprintln!("brainix: test: wrote to kernel text at {target:p}?!");
        }
        "exec-data" => {
            let target = &raw const RET_IN_DATA as *const u8;
            // SAFETY: deliberately unsound: data is NX, this call must fault.
            let f: extern "C" fn() = unsafe { core::mem::transmute(target) };
            f();
            kprintln!("brainix: test: executed data at {target:p}?!");
        }
        "stack-overflow" => {
            let depth = recurse(0);
            kprintln!("brainix: test: recursed {depth} deep without a fault?!");
        }
        "invalid-opcode" => {
            // SAFETY: deliberately raises #UD.
            unsafe { core::arch::asm!("ud2") };
        }
        "panic" => panic!("test scenario asked for a panic"),
        "pool-exhaust" => {
            let mut table_frames = [0u64; crate::mem::KERNEL_PT_BUDGET];
            let n = tables.frames().len();
            table_frames[..n].copy_from_slice(tables.frames());
            let pool = tables.pool();
            let free = pool.free_frames();
            let mut taken = 0usize;
            while pool.alloc().is_ok() {
                taken += 1;
            }
            let err = pool.alloc().unwrap_err();
            kprintln!("brainix: test: pool exhausted after {taken} of {free} free frames: {err}");
            // Every frame in use now is either a page table or one we just took.
            let mut returned = 0usize;
            let limit = crate::mem::KernelFramePool::CAPACITY as u64 * 4096;
            let mut addr = 0;
            while addr < limit {
                if let Some(f) = crate::mem::frames::Frame::at(addr)
                    && pool.is_allocated(f)
                    && !table_frames[..n].contains(&addr)
                    && pool.free(f).is_ok()
                {
                    returned += 1;
                }
                addr += 4096;
            }
            kprintln!(
                "brainix: test: returned {returned}; free again {}",
                pool.free_frames()
            );
        }
        other => kprintln!("brainix: test: unknown scenario {other:?}; nothing done"),
    }
}

#[inline(never)]
#[allow(unconditional_recursion)] // the point: run into the guard page
fn recurse(depth: u64) -> u64 {
    let pad = core::hint::black_box([depth; 64]);
    recurse(depth + 1) + pad[7]
}
