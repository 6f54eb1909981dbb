//! The BraiNIX UEFI loader, portable half.
//!
//! INV-BOOT: every release is measured into the TPM, reproducibly built, and Ed25519-signed, with
//! predicted PCRs published before the artefact ships. The loader is where a machine enforces the
//! first two: it refuses any kernel image that is not signed by the key built into it, and it
//! measures the image and its command line into the TPM before it runs a byte of either.
//!
//! The order is fixed and fail closed (`src/main.rs` does it, this library decides it):
//!
//! 1. read `kernel.elf`, `kernel.sig` and `cmdline.txt` ([`media`]) from the device the loader came
//!    from (the ESP, or the TFTP server that served the loader);
//! 2. measure the image into PCR 9 and the command line into PCR 12 ([`measure`]), so that even an
//!    image the loader goes on to refuse leaves its hash in the TPM;
//! 3. verify the signature against the built-in key with `verify_strict` ([`signature`]);
//! 4. check the ELF: every loadable segment inside the file, between 1 MiB and 4 GiB, no two
//!    overlapping, and a PVH entry inside an executable segment ([`elf`]);
//! 5. copy the segments to their physical addresses, build a PVH `hvm_start_info` from the UEFI
//!    memory map ([`pvh`]), exit boot services, and enter the kernel's 32-bit PVH entry, exactly
//!    as QEMU's `-kernel` does. The kernel builds its own page tables from there, so the memory
//!    model is the PVH path's.
//!
//! Any failure prints one line, `brainix-loader: REFUSED: <what> (<detail>)`, and stops.
//!
//! Everything here is checked on the host with `cargo test`; only `src/main.rs` (UEFI calls and
//! the mode switch) needs firmware, and the QEMU tests in `tests/` boot it under OVMF and swtpm.
#![cfg_attr(target_os = "uefi", no_std)]
#![forbid(unsafe_code)]

pub mod elf;
pub mod measure;
pub mod media;
pub mod pvh;
pub mod signature;

#[cfg(not(target_os = "uefi"))]
pub mod disk;
#[cfg(not(target_os = "uefi"))]
pub mod keys;
#[cfg(not(target_os = "uefi"))]
pub mod pe;

/// Lowercase hex of `bytes` into `out` (two characters per byte); returns the text written.
///
/// For the loader's console lines, which cannot allocate.
pub fn hex<'a>(bytes: &[u8], out: &'a mut [u8]) -> &'a str {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let n = bytes.len().min(out.len() / 2);
    for (i, b) in bytes[..n].iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 15)];
    }
    // Only ASCII hex digits were written.
    core::str::from_utf8(&out[..2 * n]).unwrap_or("")
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_is_lowercase_and_bounded_by_the_buffer() {
        let mut buf = [0u8; 6];
        assert_eq!(super::hex(&[0x0a, 0xff, 0x10, 0x99], &mut buf), "0aff10");
    }
}
