//! Console lines. Before `ExitBootServices` they go to the firmware's console (ConOut), which
//! UEFI firmware shows on screen and, when it has a serial console as QEMU's OVMF does, mirrors
//! to COM1. After it, only [`com1_line`] is left.

use core::fmt::{self, Write};
use uefi::CStr16;

/// UCS-2 characters buffered before a call into the firmware.
const CHUNK: usize = 128;

struct ConOut {
    buf: [u16; CHUNK + 1],
    len: usize,
}

impl ConOut {
    fn flush(&mut self) {
        self.buf[self.len] = 0;
        if let Ok(text) = CStr16::from_u16_with_nul(&self.buf[..=self.len]) {
            uefi::system::with_stdout(|out| {
                let _ = out.output_string(text);
            });
        }
        self.len = 0;
    }

    fn push(&mut self, c: u16) {
        if self.len == CHUNK {
            self.flush();
        }
        self.buf[self.len] = c;
        self.len += 1;
    }
}

impl Write for ConOut {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for ch in s.chars() {
            // UCS-2 has no room for characters outside the BMP; none of ours are.
            let c = u16::try_from(u32::from(ch)).unwrap_or(u16::from(b'?'));
            if c == 0 {
                continue;
            }
            self.push(c);
        }
        Ok(())
    }
}

/// Prints one line on the firmware console. Boot services must still be running.
pub fn line(args: fmt::Arguments) {
    let mut out = ConOut {
        buf: [0; CHUNK + 1],
        len: 0,
    };
    let _ = out.write_fmt(args);
    let _ = out.write_str("\r\n");
    out.flush();
}

/// Prints one line on COM1 directly, for the time after `ExitBootServices` (the firmware set the
/// port up; we only wait for the transmitter and write bytes).
pub fn com1_line(args: fmt::Arguments) {
    struct Com1;
    impl Write for Com1 {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            for b in s.bytes() {
                com1_byte(b);
            }
            Ok(())
        }
    }
    let _ = Com1.write_fmt(args);
    let _ = Com1.write_str("\r\n");
}

fn com1_byte(b: u8) {
    for _ in 0..100_000 {
        let status: u8;
        // SAFETY: reading the 16550's line status register at 0x3fd has no side effect.
        unsafe {
            core::arch::asm!("in al, dx", out("al") status, in("dx") 0x3fdu16, options(nomem, nostack))
        };
        if status & 0x20 != 0 {
            break;
        }
    }
    // SAFETY: writing the 16550's transmit register sends one byte and touches no memory.
    unsafe {
        core::arch::asm!("out dx, al", in("dx") 0x3f8u16, in("al") b, options(nomem, nostack))
    };
}
