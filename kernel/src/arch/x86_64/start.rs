//! The boot path, from the first Rust instruction to the boot report.
//!
//! Order matters and each step says why it comes where it does:
//! 1. serial, so every later refusal can be read;
//! 2. the boot record, copied out while the loader's memory is still identity-mapped;
//! 3. required CPU features: fail closed before anything depends on them;
//! 4. GDT/TSS/IDT, so any fault from here on is reported, never a triple fault;
//! 5. SMEP/SMAP/UMIP (and PCID) on, read back from the registers for the report;
//! 6. discovery (ACPI tables, PCI), still through the identity map;
//! 7. the frame pool and the kernel's own tables; switch to them;
//! 8. the self-check walks the live tables; then the boot report and the result frames.

use super::instr::{self, CR0_WP, EFER_NXE, IA32_EFER, cr4};
use super::paging::{self, Image, KernelTables, SelfCheck};
use super::{DEBUG_EXIT, gdt, serial, stacks, stop, trap};
use crate::bootinfo::{BootInfo, BootInfoError, PhysRead, RegionKind};
use crate::cmdline::Options;
use crate::cpu::{CpuidLeaves, Features};
use crate::exit::ExitCode;
use crate::kprintln;
use crate::mem::frames::Frame;
use crate::mem::layout::LOW_MEMORY_END;
use crate::mem::{KERNEL_PT_BUDGET, KernelFramePool, audit::Violation};
use crate::report::{Framer, Outcome};
use core::cell::UnsafeCell;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, Ordering};

/// Reads the loader's memory through the boot identity map (the low 4 GiB).
struct IdentityMap;

impl PhysRead for IdentityMap {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), BootInfoError> {
        let end = addr.checked_add(buf.len() as u64);
        if end.is_none_or(|end| end > 1 << 32) {
            return Err(BootInfoError::Unreadable { addr });
        }
        // SAFETY: the boot stub identity-maps all of [0, 4 GiB) read-write, and reading RAM or
        // a reserved hole there cannot fault; volatile because the loader wrote it, not Rust.
        for (i, byte) in buf.iter_mut().enumerate() {
            *byte = unsafe { core::ptr::read_volatile((addr + i as u64) as *const u8) };
        }
        Ok(())
    }
}

/// The pool lives in `.bss` and is handed out exactly once, so there is never a second `&mut`.
struct PoolCell(UnsafeCell<KernelFramePool>, AtomicBool);
// SAFETY: access goes through `take_frame_pool`, which succeeds once.
unsafe impl Sync for PoolCell {}

static FRAME_POOL: PoolCell = PoolCell(
    UnsafeCell::new(KernelFramePool::new()),
    AtomicBool::new(false),
);

/// Hands out the frame pool, once.
fn take_frame_pool() -> Option<&'static mut KernelFramePool> {
    if FRAME_POOL.1.swap(true, Ordering::AcqRel) {
        return None;
    }
    // SAFETY: the flag guarantees this reference is created only once.
    Some(unsafe { &mut *FRAME_POOL.0.get() })
}

/// Usable RAM ranges handed to the pool: at or above 1 MiB, page aligned, without the kernel
/// image. Split around the image, so up to two per region.
const MAX_POOL_RANGES: usize = crate::bootinfo::MAX_REGIONS * 2;

fn pool_ranges(info: &BootInfo, image: &Image) -> ([(u64, u64); MAX_POOL_RANGES], usize) {
    let mut out = [(0, 0); MAX_POOL_RANGES];
    let mut n = 0;
    let (img_start, img_end) = image.phys;
    let cap = KernelFramePool::CAPACITY as u64 * 4096;
    for r in info
        .regions()
        .iter()
        .filter(|r| r.kind == RegionKind::Usable)
    {
        let start = r.start.max(LOW_MEMORY_END).next_multiple_of(4096);
        let end = (r.end() & !0xfff).min(cap);
        for (s, e) in [(start, end.min(img_start)), (start.max(img_end), end)] {
            if s < e && n < MAX_POOL_RANGES {
                out[n] = (s, e);
                n += 1;
            }
        }
    }
    (out, n)
}

fn detect_features() -> Features {
    let max_leaf = instr::cpuid(0, 0).0;
    let max_ext = instr::cpuid(0x8000_0000, 0).0;
    let l1 = instr::cpuid(1, 0);
    let l7 = if max_leaf >= 7 {
        instr::cpuid(7, 0)
    } else {
        (0, 0, 0, 0)
    };
    let ext1 = if max_ext >= 0x8000_0001 {
        instr::cpuid(0x8000_0001, 0)
    } else {
        (0, 0, 0, 0)
    };
    Features::decode(&CpuidLeaves {
        l1_ecx: l1.2,
        l7_ebx: l7.1,
        l7_ecx: l7.2,
        ext1_edx: ext1.3,
    })
}

/// The protections actually on, read back from the registers.
#[derive(Clone, Copy)]
struct Enabled {
    nxe: bool,
    wp: bool,
    smep: bool,
    smap: bool,
    umip: bool,
    pcid: bool,
}

impl Enabled {
    fn read() -> Enabled {
        // SAFETY: EFER exists on every CPU with long mode, which we are running in.
        let efer = unsafe { instr::rdmsr(IA32_EFER) };
        let cr4 = instr::read_cr4();
        Enabled {
            nxe: efer & EFER_NXE != 0,
            wp: instr::read_cr0() & CR0_WP != 0,
            smep: cr4 & cr4::SMEP != 0,
            smap: cr4 & cr4::SMAP != 0,
            umip: cr4 & cr4::UMIP != 0,
            pcid: cr4 & cr4::PCIDE != 0,
        }
    }

    /// Every protection the CPU offers is on, and the two INV-MEM needs always are.
    fn matches(&self, f: &Features) -> bool {
        self.nxe
            && self.wp
            && self.smep == f.smep
            && self.smap == f.smap
            && self.umip == f.umip
            && self.pcid == f.pcid
    }
}

impl core::fmt::Display for Enabled {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let list = [
            ("nxe", self.nxe),
            ("wp", self.wp),
            ("smep", self.smep),
            ("smap", self.smap),
            ("umip", self.umip),
            ("pcid", self.pcid),
        ];
        let mut sep = "";
        for (name, on) in list.iter().filter(|(_, on)| *on) {
            let _ = on;
            write!(f, "{sep}{name}")?;
            sep = ",";
        }
        if sep.is_empty() {
            f.write_str("none")?;
        }
        Ok(())
    }
}

fn enable_protections(f: &Features) -> Enabled {
    let mut bits = 0;
    if f.smep {
        bits |= cr4::SMEP;
    }
    if f.smap {
        bits |= cr4::SMAP;
    }
    if f.umip {
        bits |= cr4::UMIP;
    }
    if f.pcid {
        // CR3[11:0] is 0 (the boot tables' PCID), as setting PCIDE requires.
        bits |= cr4::PCIDE;
    }
    // SAFETY: each bit is set only when CPUID reports the feature. SMAP is safe to turn on: the
    // kernel never touches user pages (there are none yet), and the boot identity map is
    // supervisor-only.
    unsafe { instr::write_cr4(instr::read_cr4() | bits) };
    Enabled::read()
}

/// The entry from the boot stub, with EAX and EBX as the loader left them.
pub extern "C" fn kernel_main(eax: u32, ebx: u32) -> ! {
    let tsc_entry = instr::rdtsc();
    serial::init();
    kprintln!(
        "brainix: BraiNIX kernel {} starting",
        env!("CARGO_PKG_VERSION")
    );

    let info = match BootInfo::parse(eax, ebx, &IdentityMap) {
        Ok(info) => info,
        Err(e) => {
            kprintln!("brainix: FATAL: {e}; refusing to boot");
            // Without a boot record there is no command line, so no permission to use the
            // debug-exit port: halt.
            stop(ExitCode::BadBootProtocol)
        }
    };
    let cmdline = info.cmdline().unwrap_or_else(|_| {
        kprintln!("brainix: command line is not UTF-8 text; ignoring all of it");
        ""
    });
    if info.cmdline_truncated {
        kprintln!(
            "brainix: command line cut at {} bytes",
            crate::cmdline::MAX_CMDLINE
        );
    }
    let options = Options::parse(cmdline, |r| {
        kprintln!("brainix: command line: ignored {r:?}")
    });
    DEBUG_EXIT.store(options.debug_exit, Ordering::Relaxed);
    kprintln!(
        "brainix: booted by {}, {} memory regions, rsdp {:#x}",
        info.protocol.name(),
        info.regions().len(),
        info.rsdp.unwrap_or(0)
    );

    // P-02: refuse before anything depends on a missing feature.
    let features = detect_features();
    let missing = features.missing_required();
    if !missing.is_empty() {
        kprintln!("brainix: FATAL: CPU lacks {missing}; BraiNIX requires it and refuses to boot");
        stop(if missing.rdrand {
            ExitCode::MissingRdrand
        } else {
            ExitCode::MissingNx
        });
    }
    if instr::rdrand().is_none() {
        kprintln!(
            "brainix: FATAL: CPU lacks a working RDRAND (no value in 10 tries); refusing to boot"
        );
        stop(ExitCode::MissingRdrand);
    }

    gdt::init();
    trap::init();
    mask_legacy_pic();
    let enabled = enable_protections(&features);
    kprintln!("brainix: cpu {features}; enabled {enabled}");

    let Some(pool) = take_frame_pool() else {
        kprintln!("brainix: FATAL: frame pool taken twice");
        stop(ExitCode::Panic)
    };
    let image = paging::image();
    // Discovery reads firmware tables and configuration space through the boot identity map,
    // so it runs before the switch to the kernel's own tables.
    super::pci::discover(&info, &IdentityMap, image.phys);
    let (ranges, range_count) = pool_ranges(&info, &image);
    let ranges = &ranges[..range_count];
    let mut beyond = 0;
    for &(s, e) in ranges {
        beyond += pool.add_region(s, e, &[]);
    }
    if info.dropped_regions > 0 || beyond > 0 {
        kprintln!(
            "brainix: memory left unused: {} map entries past {}, {} frames past the pool's {} capacity",
            info.dropped_regions,
            crate::bootinfo::MAX_REGIONS,
            beyond,
            KernelFramePool::CAPACITY
        );
    }

    let guards = stacks::guards();
    let mut tables = KernelTables::identity(pool);
    // The local APIC, every I/O APIC, and the ECAM page of every PCI function found.
    const MMIO_PAGES: usize =
        1 + crate::platform::acpi::MAX_IOAPICS + crate::platform::pci::MAX_FUNCTIONS;
    let mut mmio = [0u64; MMIO_PAGES];
    let mut n = 0;
    mmio[n] = super::apic::lapic_phys();
    n += 1;
    for page in super::pci::platform().ioapic_pages() {
        mmio[n] = page;
        n += 1;
    }
    let mut pages = [0u64; crate::platform::pci::MAX_FUNCTIONS];
    let ecam = super::pci::ecam_pages(&mut pages);
    mmio[n..n + ecam].copy_from_slice(&pages[..ecam]);
    let mmio = &mmio[..n + ecam];
    let root = match paging::build(&mut tables, &image, &guards, ranges, mmio) {
        Ok(root) => root,
        Err(e) => {
            kprintln!("brainix: FATAL: building the kernel page tables: {e}");
            stop(ExitCode::PoolExhausted)
        }
    };
    #[cfg(feature = "test-hooks")]
    super::test_hooks::before_switch(options.test, &mut tables, root);
    // SAFETY: `build` mapped every section of the running image (text, rodata, data, bss and
    // the stacks we run on) and the direct map through which `tables` reaches table frames;
    // the self-check right after proves it on the live tables.
    unsafe { instr::write_cr3(root) };
    tables.use_physmap();

    let check = paging::self_check(&tables, root, &image, &guards);
    let pool_check = check_pool(&mut tables, &image);
    let verdict = check.first_violation();
    if let Some(v) = verdict {
        kprintln!(
            "brainix: self-check FAIL: {} at {:#x}: {}",
            v.check,
            v.addr,
            v.what
        );
    }

    let pool = tables.pool();
    let (free, managed) = (pool.free_frames(), pool.managed());
    let mut report = crate::report::Line::new();
    let _ = write!(
        report,
        "BRAINIX-BOOT-REPORT v1 boot={} cpu={features} enabled={enabled} mem_usable_kib={} \
         frames={free}/{managed} pools=frames:{}/{managed},kernel-pt:{}/{KERNEL_PT_BUDGET} \
         pt_pages={} selfcheck=",
        info.protocol.name(),
        info.usable_bytes() / 1024,
        managed - free,
        tables.frames().len(),
        tables.frames().len(),
    );
    let _ = match verdict {
        None => write!(report, "PASS"),
        Some(v) => write!(report, "FAIL@{:#x}", v.addr),
    };
    let _ = write!(report, " tsc_boot={}", instr::rdtsc() - tsc_entry);
    kprintln!(
        "{}",
        core::str::from_utf8(report.as_bytes()).unwrap_or("BRAINIX-BOOT-REPORT v1 overflow")
    );

    // The manifest's report ids are announced only when the system will run to report them.
    let system_runs = !options.stop_after_report
        && (options.test.is_none() || !cfg!(feature = "test-hooks"))
        && !crate::manifest::SYSTEM.processes.is_empty()
        && verdict.is_none();
    let user_ids: &[&str] = if system_runs {
        crate::manifest::SYSTEM.reports
    } else {
        &[]
    };
    let framer = options
        .nonce
        .and_then(|nonce| send_results(nonce, user_ids, &check, &pool_check, &features, &enabled));
    if verdict.is_some() {
        stop(ExitCode::SelfCheckFailed);
    }

    #[cfg(feature = "test-hooks")]
    if options.test.is_some() {
        super::test_hooks::after_boot(options.test, &mut tables);
        stop(ExitCode::Success);
    }
    #[cfg(not(feature = "test-hooks"))]
    if let Some(t) = options.test {
        kprintln!("brainix: test scenario {t:?} ignored: this is the release image");
    }

    if options.stop_after_report {
        kprintln!("brainix: stopping after the report, as the command line asks");
        stop(ExitCode::Success);
    }
    if crate::manifest::SYSTEM.processes.is_empty() {
        kprintln!("brainix: boot complete; no processes in this image");
        stop(ExitCode::Success);
    }
    let pt_pages = tables.frames().len();
    let spaces =
        super::spaces::ArchSpaces::new(tables.into_pool(), guards, image.phys, enabled.pcid);
    super::run::start(root, pt_pages, spaces, framer)
}

/// `mem.frame-pool`: the bitmaps agree with their counters, no frame of the kernel image is
/// managed, every table frame is marked in use, and a frame can be taken and given back.
fn check_pool(tables: &mut KernelTables<'_>, image: &Image) -> Result<usize, &'static str> {
    let table_frames = {
        let mut all = [0u64; KERNEL_PT_BUDGET];
        let n = tables.frames().len();
        all[..n].copy_from_slice(tables.frames());
        (all, n)
    };
    let pool = tables.pool();
    if !pool.is_consistent() {
        return Err("bitmaps disagree with their counters");
    }
    let mut page = image.phys.0;
    while page < image.phys.1 {
        if Frame::at(page).is_some_and(|f| pool.manages(f)) {
            return Err("a kernel image frame is in the pool");
        }
        page += 4096;
    }
    let (frames, n) = table_frames;
    if frames[..n]
        .iter()
        .any(|&f| Frame::at(f).is_none_or(|f| !pool.is_allocated(f)))
    {
        return Err("a page-table frame is not marked in use");
    }
    let before = pool.free_frames();
    let frame = pool.alloc().map_err(|_| "no frame to take")?;
    if paging::in_image(image, frame) || pool.free(frame).is_err() || pool.free_frames() != before {
        return Err("take-and-return round trip failed");
    }
    Ok(pool.managed())
}

/// Announces the kernel's checks and `user_ids` (which processes report later, through their
/// report capabilities) and sends the kernel's results. Returns the framer for the running
/// system when user results are still to come; otherwise ends the stream with END.
fn send_results(
    nonce: &str,
    user_ids: &[&str],
    check: &SelfCheck,
    pool: &Result<usize, &'static str>,
    features: &Features,
    enabled: &Enabled,
) -> Option<Framer> {
    let out = &mut serial::Com1;
    let mut framer = Framer::new(nonce)?;
    let ids = crate::report::KERNEL_CHECKS;
    let _ = framer.plan(ids.iter().chain(user_ids).copied(), out);
    // Reaching this point means RDRAND returned a value and NX is on: both were refused earlier
    // otherwise. The detail is what CPUID said.
    let _ = framer.result(ids[0], Outcome::Pass, format_args!("cpu={features}"), out);
    let outcome = |ok: bool| if ok { Outcome::Pass } else { Outcome::Fail };
    let _ = framer.result(
        ids[1],
        outcome(enabled.matches(features)),
        format_args!("enabled={enabled} cpu={features}"),
        out,
    );
    let mut violation = |id: &str, r: Result<(), Violation>, ok: &str| {
        let _ = match r {
            Ok(()) => framer.result(id, Outcome::Pass, format_args!("{ok}"), out),
            Err(v) => framer.result(
                id,
                Outcome::Fail,
                format_args!("{} at {:#x}", v.what, v.addr),
                out,
            ),
        };
    };
    violation(
        ids[2],
        check.wx.map(|_| ()),
        "no page is writable and executable",
    );
    violation(ids[3], check.sections, "text RX, rodata R, data/bss RW");
    violation(ids[4], check.guards, "every guard page unmapped");
    violation(
        ids[5],
        check.alias,
        "no writable alias of an executable frame",
    );
    let _ = match pool {
        Ok(managed) => framer.result(
            ids[6],
            Outcome::Pass,
            format_args!("{managed} frames consistent"),
            out,
        ),
        Err(why) => framer.result(ids[6], Outcome::Fail, format_args!("{why}"), out),
    };
    if user_ids.is_empty() {
        let _ = framer.end(out);
        return None;
    }
    Some(framer)
}

/// Masks both legacy 8259 PICs: no device interrupt reaches the CPU until issue 3 routes them.
fn mask_legacy_pic() {
    // SAFETY: writing the interrupt-mask registers of the 8259s only masks lines; on machines
    // without a PIC the ports are unused.
    unsafe {
        instr::outb(0x21, 0xff);
        instr::outb(0xa1, 0xff);
    }
}
