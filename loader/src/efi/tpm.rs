//! Measuring the kernel and its command line through EFI_TCG2_PROTOCOL.
//!
//! `HashLogExtendEvent` hashes the data in firmware, extends every active PCR bank and appends
//! the event to the firmware's TCG event log, which the firmware hands to the OS. The PCRs and
//! event texts are fixed in `brainix_loader::measure`.

use super::Refusal;
use brainix_loader::measure;
use uefi::boot;
use uefi::proto::tcg::v2::{HashLogExtendEventFlags, PcrEventInputs, Tcg};
use uefi::proto::tcg::{EventType, HashAlgorithm, PcrIndex};

/// Room for an event header and our longest event text.
const EVENT_BUF: usize = 128;

/// Measures `image` into PCR 9 and `cmdline` into PCR 12. A machine without a TPM 2.0, or
/// whose TPM has no SHA-256 bank, is refused: INV-BOOT requires every boot to be measured.
pub fn measure(image: &[u8], cmdline: &[u8]) -> Result<(), Refusal> {
    let handle = boot::get_handle_for_protocol::<Tcg>().map_err(|_| Refusal::NoTpm)?;
    let mut tcg = boot::open_protocol_exclusive::<Tcg>(handle).map_err(|_| Refusal::NoTpm)?;
    let caps = tcg.get_capability().map_err(|_| Refusal::NoTpm)?;
    if !caps.tpm_present() {
        return Err(Refusal::NoTpm);
    }
    if !caps.active_pcr_banks.contains(HashAlgorithm::SHA256) {
        return Err(Refusal::NoSha256Bank);
    }
    extend(
        &mut tcg,
        measure::KERNEL_PCR,
        measure::KERNEL_EVENT,
        image,
        "kernel image",
    )?;
    extend(
        &mut tcg,
        measure::CMDLINE_PCR,
        measure::CMDLINE_EVENT,
        cmdline,
        "command line",
    )
}

fn extend(
    tcg: &mut Tcg,
    pcr: u32,
    text: &[u8],
    data: &[u8],
    what: &'static str,
) -> Result<(), Refusal> {
    let mut buf = [0u8; EVENT_BUF];
    let event = PcrEventInputs::new_in_buffer(&mut buf, PcrIndex(pcr), EventType::IPL, text)
        .map_err(|e| Refusal::Measure(what, e.status()))?;
    tcg.hash_log_extend_event(HashLogExtendEventFlags::empty(), data, event)
        .map_err(|e| Refusal::Measure(what, e.status()))
}
