//! region-probe: uses an MMIO capability (slot 1, the HPET's registers, read-only) and a DMA pool
//! (slot 2) the way a device server will, prints what it found, then tries to write the
//! read-only device mapping, which must get it killed (page fault, vector 14).
//!
//! Lines: `REGION mmio virt=… phys=… len=… vendor=…` (the HPET's vendor id, bits 31:16 of its
//! capability register), `REGION dma virt=… phys=… len=… pattern=ok|bad`, then
//! `ATTACK mmio-write ATTEMPT`.
#![cfg_attr(target_os = "none", no_std, no_main)]

use brainix_abi::Error;
use brainix_proto::launch_handle;
use brainix_rt::{Region, println};
use core::fmt::Write;

brainix_rt::entry!(run);

/// Where the region of `slot` is: (virtual, physical, length) or the kernel's error name.
fn region(slot: u16) -> Result<(u64, u64, u64), &'static str> {
    match Region(launch_handle(slot)).info() {
        Ok(r) => Ok((r.virt, r.phys, r.len)),
        Err(e) => Err(e.name()),
    }
}

fn run(_pid: u64) -> ! {
    brainix_attacks::setup();
    match region(1) {
        Ok((virt, phys, len)) => {
            // SAFETY: the kernel mapped the HPET's first page here, readable and uncached.
            let gcap = unsafe { core::ptr::read_volatile(virt as *const u32) };
            println!(
                "REGION mmio virt={virt:#x} phys={phys:#x} len={len} vendor={:#06x}",
                gcap >> 16
            );
        }
        Err(e) => println!("REGION mmio error {e}"),
    }
    match region(2) {
        Ok((virt, phys, len)) => {
            let pool = virt as *mut u8;
            let mut good = true;
            for i in 0..len as usize {
                // SAFETY: the kernel mapped `len` bytes of DMA pool here, read-write.
                unsafe { pool.add(i).write_volatile(i as u8 ^ 0x5a) };
            }
            for i in 0..len as usize {
                // SAFETY: as above.
                good &= unsafe { pool.add(i).read_volatile() } == i as u8 ^ 0x5a;
            }
            let verdict = if good { "ok" } else { "bad" };
            println!("REGION dma virt={virt:#x} phys={phys:#x} len={len} pattern={verdict}");
            // A device needs a real, page-aligned physical address to point at the pool.
            let pass = good && phys != 0 && phys.is_multiple_of(4096) && len > 0;
            let mut detail = brainix_rt::fmt::Buffer::<96>::new();
            let _ = write!(detail, "phys={phys:#x} len={len} pattern={verdict}");
            brainix_attacks::check(pass, detail.as_bytes());
        }
        Err(e) => {
            println!("REGION dma error {e}");
            brainix_attacks::check(false, e.as_bytes());
        }
    }
    // The console handle is not a region: the kernel must say so.
    let outcome = Region(launch_handle(0)).info().map(drop);
    brainix_attacks::report("region-type", Error::WrongType, outcome);
    brainix_attacks::attempt("mmio-write");
    if let Ok((virt, _, _)) = region(1) {
        // SAFETY: not sound, on purpose: the mapping is read-only; the kernel must kill us.
        unsafe { core::ptr::write_volatile(virt as *mut u32, 0) };
    }
    brainix_attacks::survived("mmio-write")
}
