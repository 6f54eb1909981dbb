//! The local APIC (timer, end of interrupt) and the IOAPIC (device interrupt lines).
//!
//! Both are reached through uncached mappings in the kernel's MMIO window, never in a process
//! table. The timer is calibrated once at boot against PIT channel 2, the smallest of three 2 ms
//! windows; where there is no PIT (its output never goes low, the wait times out, or the reading
//! is implausible), it falls back to QEMU's 1 GHz APIC bus and says so.

use super::instr::{self, inb, outb};
use crate::kprintln;
use crate::mem::layout::MMIO;
use crate::system::TICK_HZ;
use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

/// The timer's vector.
pub const TIMER_VECTOR: u8 = 32;
/// IOAPIC line `n` arrives on vector `IRQ_BASE + n`.
pub const IRQ_BASE: u8 = 33;
/// IOAPIC lines we route (the first IOAPIC of PC-compatible machines has 24).
pub const IRQ_LINES: u8 = crate::platform::IRQ_LINES;
/// The spurious-interrupt vector.
pub const SPURIOUS_VECTOR: u8 = 255;

const IA32_APIC_BASE: u32 = 0x1b;

static LAPIC: AtomicU64 = AtomicU64::new(0);

/// How each line is programmed: bit 0 level triggered, bit 1 active low (0: edge, high, the ISA
/// default). Set by [`route`] before the line is unmasked.
static MODES: [AtomicU8; IRQ_LINES as usize] = [const { AtomicU8::new(0) }; IRQ_LINES as usize];

/// Inputs of the I/O APIC at `phys` (its version register, bits 16 to 23, plus one).
fn ioapic_pins(phys: u64) -> u32 {
    (ioapic_read(phys, 1) >> 16 & 0xff) + 1
}

/// Physical address of the local APIC, from IA32_APIC_BASE.
pub fn lapic_phys() -> u64 {
    // SAFETY: IA32_APIC_BASE exists on every x86-64 CPU.
    unsafe { instr::rdmsr(IA32_APIC_BASE) & 0x000f_ffff_ffff_f000 }
}

fn lapic_reg(offset: u64) -> *mut u32 {
    (LAPIC.load(Ordering::Relaxed) + offset) as *mut u32
}

fn lapic_read(offset: u64) -> u32 {
    // SAFETY: `init` mapped the LAPIC page uncached at this address; registers are 32-bit.
    unsafe { core::ptr::read_volatile(lapic_reg(offset)) }
}

fn lapic_write(offset: u64, value: u32) {
    // SAFETY: as for `lapic_read`.
    unsafe { core::ptr::write_volatile(lapic_reg(offset), value) }
}

fn ioapic_write(phys: u64, reg: u32, value: u32) {
    let base = (MMIO + phys) as *mut u32;
    // SAFETY: the boot path mapped every I/O APIC's page uncached in the MMIO window (the
    // platform's `ioapic_pages`); IOREGSEL is at +0, IOWIN at +0x10.
    unsafe {
        core::ptr::write_volatile(base, reg);
        core::ptr::write_volatile(base.add(4), value);
    }
}

fn ioapic_read(phys: u64, reg: u32) -> u32 {
    let base = (MMIO + phys) as *mut u32;
    // SAFETY: as for `ioapic_write`.
    unsafe {
        core::ptr::write_volatile(base, reg);
        core::ptr::read_volatile(base.add(4))
    }
}

/// Acknowledges the interrupt being handled.
pub fn eoi() {
    lapic_write(0xb0, 0);
}

/// Masks (`true`) or unmasks IOAPIC line `line`, routed to vector `IRQ_BASE + line` with the
/// trigger mode and polarity [`route`] gave it, delivered to this CPU.
pub fn set_line(line: u8, masked: bool) {
    let Some(mode) = MODES.get(usize::from(line)) else {
        return;
    };
    let mode = u32::from(mode.load(Ordering::Relaxed));
    let Some((ioapic, pin)) = super::pci::platform().ioapic_for(line, ioapic_pins) else {
        return;
    };
    let apic_id = lapic_read(0x20) >> 24;
    let reg = 0x10 + 2 * u32::from(pin);
    // Redirection entry: vector, fixed delivery, physical destination, polarity (bit 13),
    // trigger mode (bit 15), mask (bit 16).
    let entry = u32::from(IRQ_BASE + line) | (mode >> 1 & 1) << 13 | (mode & 1) << 15;
    ioapic_write(ioapic, reg + 1, apic_id << 24);
    ioapic_write(ioapic, reg, entry | u32::from(masked) << 16);
}

/// Sets how line `r.gsi` is triggered, leaving it masked until [`set_line`] unmasks it.
pub fn route(r: crate::platform::Route) {
    if let Some(mode) = MODES.get(usize::from(r.gsi)) {
        mode.store(
            u8::from(r.level) | u8::from(r.active_low) << 1,
            Ordering::Relaxed,
        );
        set_line(r.gsi, true);
    }
}

/// Waits about `ms` milliseconds on PIT channel 2 and returns how far the LAPIC timer (counting
/// down from its maximum) moved, or `None` when the PIT never signalled.
fn measure_with_pit(ms: u32) -> Option<u32> {
    const PIT_HZ: u32 = 1_193_182;
    let count = PIT_HZ * ms / 1000;
    // SAFETY: ports 0x61, 0x42 and 0x43 are the PC's speaker gate and PIT channel 2; with the
    // speaker bit clear, gating channel 2 has no effect beyond the count.
    unsafe {
        let gate = inb(0x61);
        outb(0x61, (gate & !0x02) & !0x01);
        outb(0x43, 0xb0); // channel 2, low then high byte, mode 0, binary
        outb(0x42, count as u8);
        outb(0x42, (count >> 8) as u8);
        // Mode 0 drives OUT2 low until the count runs out. If it already reads high, there is
        // no PIT behind these ports (microvm has no port 0x61; it reads all ones).
        if inb(0x61) & 0x20 != 0 {
            return None;
        }
        lapic_write(0x380, u32::MAX);
        outb(0x61, (gate & !0x02) | 0x01); // gate high: the count starts
        let start = instr::rdtsc();
        // Bounded: a missing PIT must not hang the boot. 2^32 TSC ticks is seconds.
        while inb(0x61) & 0x20 == 0 {
            if instr::rdtsc().wrapping_sub(start) > 1 << 32 {
                return None;
            }
        }
    }
    Some(u32::MAX - lapic_read(0x390))
}

/// Maps nothing itself (the caller mapped [`lapic_phys`] and every I/O APIC into the MMIO
/// window); enables the LAPIC, masks every IOAPIC line, and starts the periodic timer at
/// [`TICK_HZ`]. Returns the LAPIC timer counts per tick.
pub fn init() -> u32 {
    LAPIC.store(MMIO + lapic_phys(), Ordering::Relaxed);
    // Software enable, spurious vector 255; accept every priority.
    lapic_write(0xf0, 0x100 | u32::from(SPURIOUS_VECTOR));
    lapic_write(0x80, 0);
    for line in 0..IRQ_LINES {
        set_line(line, true);
    }
    lapic_write(0x3e0, 0x3); // divide by 16
    lapic_write(0x320, 1 << 16); // timer masked while calibrating
    // Three short windows, keeping the smallest: a measurement can only come out too long (the
    // CPU was away between the PIT's signal and our look at it, as a loaded host does to a
    // virtual machine), never too short.
    let best = (0..3).filter_map(|_| measure_with_pit(2)).min();
    let per_tick = match best {
        // Fewer than 1000 counts in 2 ms would be an APIC bus under 8 MHz: not a real reading.
        Some(counts) if counts >= 1000 => counts / 2 * 1000 / TICK_HZ as u32,
        _ => {
            kprintln!("brainix: no PIT answered; assuming a 1 GHz APIC bus for the timer");
            (1_000_000_000 / 16 / TICK_HZ) as u32
        }
    };
    let per_tick = per_tick.max(1);
    lapic_write(0x320, u32::from(TIMER_VECTOR) | 1 << 17); // periodic
    lapic_write(0x380, per_tick);
    per_tick
}
