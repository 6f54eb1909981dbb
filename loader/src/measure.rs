//! What the loader measures into the TPM, where, and how to predict the resulting PCRs.
//!
//! PCRs 8 to 15 belong to the operating system's boot (TCG PC Client Platform Firmware Profile);
//! firmware leaves them at zero. We follow the conventions Linux loaders use, so that tools
//! that read event logs show our events in the expected places:
//!
//! - **PCR 9: the kernel image**, one `EV_IPL` event whose digest is the SHA-256 of the whole
//!   `kernel.elf` file (GRUB and the Linux EFI stub measure loaded files and the initrd there).
//! - **PCR 12: the kernel command line**, one `EV_IPL` event over the exact bytes handed to the
//!   kernel (systemd-stub's place for the command line). It is kept apart from PCR 9 because it
//!   is configuration, different per board and per test run, while PCR 9 is fixed per release.
//!
//! Both are extended once per boot from their reset value (zero), so each is predicted by one
//! extend: `PCR = SHA-256(0^32 || SHA-256(data))`.
//!
//! PCR 4 is the firmware's: it measures every boot application it starts. On EDK2-based firmware
//! (OVMF, and most PC firmware) a boot that starts the loader from the first boot option holds
//! three events in PCR 4: the `EV_EFI_ACTION` "Calling EFI Application from Boot Option", the
//! `EV_SEPARATOR` (four zero bytes) that ends the pre-boot measurements, and the loader's
//! Authenticode hash (`EV_EFI_BOOT_SERVICES_APPLICATION`). [`predict_pcr4`] computes that. A
//! firmware that first tries another boot application measures it too, and the prediction no
//! longer holds: that is a different boot path, and the check says so.

use sha2::{Digest, Sha256};

/// The PCR the kernel image is measured into.
pub const KERNEL_PCR: u32 = 9;

/// The PCR the command line is measured into.
pub const CMDLINE_PCR: u32 = 12;

/// The PCR the firmware measures boot applications (the loader) into.
pub const LOADER_PCR: u32 = 4;

/// `EV_IPL`: "events related to the IPL" (TCG PC Client PFP), what OS loaders log.
pub const EV_IPL: u32 = 0x0000_000d;

/// The event text logged with the kernel measurement (not part of the PCR value).
pub const KERNEL_EVENT: &[u8] = b"BraiNIX kernel image (kernel.elf)";

/// The event text logged with the command-line measurement (not part of the PCR value).
pub const CMDLINE_EVENT: &[u8] = b"BraiNIX kernel command line";

/// `EV_EFI_ACTION` text EDK2 measures into PCR 4 before it starts the first boot application.
pub const CALLING_EFI_APPLICATION: &[u8] = b"Calling EFI Application from Boot Option";

/// The SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// A TPM 2.0 extend of the SHA-256 bank: `SHA-256(pcr || digest)`.
pub fn extend(pcr: [u8; 32], digest: [u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(pcr);
    h.update(digest);
    h.finalize().into()
}

/// The value of a PCR after one measurement of `data` from reset.
pub fn predict_single(data: &[u8]) -> [u8; 32] {
    extend([0; 32], sha256(data))
}

/// PCR 4 after EDK2 firmware started the loader whose Authenticode SHA-256 is `loader` from the
/// first boot option (see the module text for the three events).
pub fn predict_pcr4(loader: [u8; 32]) -> [u8; 32] {
    let action = extend([0; 32], sha256(CALLING_EFI_APPLICATION));
    let separator = extend(action, sha256(&[0, 0, 0, 0]));
    extend(separator, loader)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extend_matches_the_tpm_definition() {
        // SHA-256 of 64 zero bytes: extending zero with a zero digest.
        assert_eq!(
            crate::hex(&extend([0; 32], [0; 32]), &mut [0; 64]),
            "f5a5fd42d16a20302798ef6ed309979b43003d2320d9f0e8ea9831a92759fb4b"
        );
        // PCR 12 with an empty command line: SHA-256(0^32 || SHA-256("")).
        assert_eq!(
            predict_single(b""),
            extend(
                [0; 32],
                hex32("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
            )
        );
    }

    #[test]
    fn pcr4_prediction_chains_three_events_in_order() {
        let a = predict_pcr4([1; 32]);
        assert_ne!(a, predict_pcr4([2; 32]));
        let by_hand = extend(
            extend(
                extend([0; 32], sha256(CALLING_EFI_APPLICATION)),
                sha256(&[0; 4]),
            ),
            [1; 32],
        );
        assert_eq!(a, by_hand);
    }

    fn hex32(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }
}
