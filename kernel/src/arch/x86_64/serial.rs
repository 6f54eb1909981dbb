//! The kernel log on COM1, a 16550 UART at port 0x3f8, written by polling.
//!
//! The writer keeps no state, so the trap handler can use it even if a fault hit in the middle
//! of another line: the worst case is one mixed line, never a deadlock. Issue 3's console server
//! takes the port over through an I/O-port capability; the kernel keeps only this output path.

use super::instr::{inb, outb};
use core::fmt;

const COM1: u16 = 0x3f8;
const LINE_STATUS: u16 = COM1 + 5;
const TX_EMPTY: u8 = 1 << 5;
/// Polls of the line-status register before a byte is dropped. At 115200 baud a byte takes
/// about 87 µs; this bound is far above that and keeps a missing UART from hanging the kernel.
const TX_SPIN_LIMIT: u32 = 100_000;

/// Programs COM1: 115200 8N1, FIFOs on, interrupts off.
pub fn init() {
    // SAFETY: the writes follow the 16550 programming sequence; port 0x3f8..0x3ff is COM1 on
    // every PC-compatible machine (and simply ignored where there is none).
    unsafe {
        outb(COM1 + 1, 0x00); // no interrupts
        outb(COM1 + 3, 0x80); // DLAB on
        outb(COM1, 0x01); // divisor 1: 115200 baud
        outb(COM1 + 1, 0x00);
        outb(COM1 + 3, 0x03); // 8N1, DLAB off
        outb(COM1 + 2, 0xc7); // FIFO on, cleared, 14-byte threshold
        outb(COM1 + 4, 0x03); // DTR, RTS
    }
}

fn put(byte: u8) {
    for _ in 0..TX_SPIN_LIMIT {
        // SAFETY: reading the line-status register has no side effect.
        if unsafe { inb(LINE_STATUS) } & TX_EMPTY != 0 {
            break;
        }
    }
    // SAFETY: writing the transmit register sends one byte.
    unsafe { outb(COM1, byte) }
}

/// A handle to the log; costs nothing to make.
pub struct Com1;

impl fmt::Write for Com1 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        s.bytes().for_each(put);
        Ok(())
    }
}

/// Prints a log line on COM1.
#[macro_export]
macro_rules! kprintln {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let _ = writeln!($crate::arch::x86_64::serial::Com1, $($arg)*);
    }};
}
