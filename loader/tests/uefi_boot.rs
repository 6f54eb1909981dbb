//! INV-BOOT, live: OVMF with a software TPM boots the loader, which refuses anything not signed
//! by its key, measures before it runs anything, and enters the kernel; the PCRs the host reads
//! from the TPM afterwards must equal the ones the release manifest published.
//!
//! Every boot here is a full UEFI boot under TCG (about ten seconds). Refusals end the machine
//! through the debug-exit device named on the command line, so they take no longer than that.

use brainix_loader::{disk, measure, media, pe, signature};
use brainix_testkit::uefi::{ScratchDir, Swtpm};
use brainix_testkit::{Boot, Outcome, image};
use std::path::PathBuf;
use std::time::Duration;

/// `isa-debug-exit` status for a refusal by the loader (`0x17`), and for the kernel stopping
/// after its report (`0x10`).
const REFUSED: i32 = (0x17 << 1) | 1;
const STOPPED: i32 = (0x10 << 1) | 1;

/// The command line of the tests that end the machine: refusals exit at once, and a kernel that
/// boots stops right after its report.
const EXIT_CMDLINE: &str = "brainix.exit=isa-debug-exit brainix.after-report=stop";

struct Release {
    loader: Vec<u8>,
    kernel: Vec<u8>,
    sig: Vec<u8>,
    /// Predicted PCR 4, 9 and 12 from the signed manifest.
    predicted: [[u8; 32]; 3],
}

fn hex32(s: &str) -> [u8; 32] {
    assert_eq!(s.len(), 64, "{s:?} is not a SHA-256 in hex");
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(image(name)).unwrap()
}

/// The development release `cargo xtask build` made, with its manifest checked against the
/// key it names in the image directory.
fn release() -> Release {
    let public = brainix_loader::keys::parse_public(
        &String::from_utf8(read("brainix-signing-key.pub")).unwrap(),
    )
    .unwrap();
    let manifest = read("brainix-release.json");
    signature::verify(
        &public,
        signature::Domain::ReleaseManifest,
        &manifest,
        &read("brainix-release.json.sig"),
    )
    .expect("the manifest's signature");
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let pcr = |n: u32| {
        let entry = manifest["predicted_pcrs"]["pcrs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["pcr"] == n)
            .unwrap_or_else(|| panic!("no prediction for PCR {n}"));
        hex32(entry["value"].as_str().unwrap())
    };
    Release {
        loader: read("brainix-loader.efi"),
        kernel: read("brainix-kernel.elf"),
        sig: read("brainix-kernel.elf.sig"),
        predicted: [pcr(4), pcr(9), pcr(12)],
    }
}

/// A boot disk in `scratch` with these files; `sig: None` leaves the signature out.
fn disk(
    scratch: &ScratchDir,
    loader: &[u8],
    kernel: &[u8],
    sig: Option<&[u8]>,
    cmdline: &str,
) -> PathBuf {
    let mut files = vec![
        (media::LOADER_PATH, loader),
        (media::KERNEL_FILE, kernel),
        (media::CMDLINE_FILE, cmdline.as_bytes()),
    ];
    if let Some(sig) = sig {
        files.push((media::SIGNATURE_FILE, sig));
    }
    let path = scratch.path().join("disk.img");
    std::fs::write(&path, disk::boot_disk(&files).unwrap()).unwrap();
    path
}

/// The loader's refusal lines: there must be exactly one, and nothing of the kernel.
fn refusal(out: &Outcome) -> &str {
    let lines: Vec<&str> = out
        .serial
        .lines()
        .filter(|l| l.contains("REFUSED"))
        .collect();
    assert_eq!(lines.len(), 1, "expected one refusal line:\n{}", out.dump());
    assert!(
        lines[0].starts_with("brainix-loader: REFUSED: ") && lines[0].ends_with("; not booting"),
        "{}",
        out.dump()
    );
    assert!(
        !out.serial.contains("brainix: BraiNIX kernel"),
        "the kernel ran:\n{}",
        out.dump()
    );
    assert_eq!(out.status, Some(REFUSED), "{}", out.dump());
    lines[0]
}

/// Boots a disk that must be refused, and returns the refusal line and the TPM (for PCR
/// checks).
fn refused(files: impl FnOnce(&ScratchDir) -> PathBuf) -> (String, Swtpm) {
    let scratch = ScratchDir::new("loader");
    let disk = files(&scratch);
    let tpm = Swtpm::start();
    let out = Boot::uefi(scratch.path()).boot_disk(&disk).tpm(&tpm).run();
    (refusal(&out).to_owned(), tpm)
}

#[test]
fn boots_the_published_disk_to_the_shell_and_the_pcrs_match_the_prediction() {
    let r = release();
    let scratch = ScratchDir::new("loader");
    let tpm = Swtpm::start();
    // The disk exactly as shipped: empty command line, so the kernel starts the whole system.
    let mut session = Boot::uefi(scratch.path())
        .boot_disk(&image("brainix-disk.img"))
        .tpm(&tpm)
        .spawn();
    let before_kernel = session.expect("brainix: BraiNIX kernel", Duration::from_secs(90));
    for line in [
        "brainix-loader: BraiNIX loader",
        "brainix-loader: signature good",
        "brainix-loader: measured into PCR 9 and 12; entering the kernel",
    ] {
        assert!(
            before_kernel.contains(line),
            "missing {line:?}:\n{before_kernel}"
        );
    }
    let report = session.expect("selfcheck=PASS", Duration::from_secs(30));
    assert!(
        report.contains("BRAINIX-BOOT-REPORT v1 boot=pvh"),
        "{report}"
    );
    session.expect("brainix> ", Duration::from_secs(30));
    session.kill();
    let pcrs = tpm.read_pcrs(&[4, 9, 12]).expect("reading the PCRs");
    for (i, pcr) in [4, 9, 12].iter().enumerate() {
        assert_eq!(
            pcrs[i], r.predicted[i],
            "PCR {pcr} is not the published prediction"
        );
    }
    // The prediction is not vacuous: PCR 9 is exactly one extend with the kernel's hash.
    assert_eq!(pcrs[1], measure::predict_single(&r.kernel));
}

#[test]
fn refuses_an_image_with_one_flipped_byte_after_measuring_it() {
    let r = release();
    let mut kernel = r.kernel.clone();
    let at = kernel.len() / 2;
    kernel[at] ^= 0x01;
    let tampered = kernel.clone();
    let (line, tpm) = refused(|s| disk(s, &r.loader, &kernel, Some(&r.sig), EXIT_CMDLINE));
    assert!(
        line.contains("kernel.sig: Ed25519 signature does not match the image"),
        "{line}"
    );
    // Measured before it was refused: the evidence of the attempt is in the TPM.
    let pcrs = tpm.read_pcrs(&[9, 12]).unwrap();
    assert_eq!(pcrs[0], measure::predict_single(&tampered));
    assert_ne!(pcrs[0], r.predicted[1]);
    assert_eq!(pcrs[1], measure::predict_single(EXIT_CMDLINE.as_bytes()));
}

#[test]
fn refuses_an_image_signed_by_another_key() {
    let r = release();
    let other = [0x5a; 32];
    let sig = signature::sign(&other, signature::Domain::KernelImage, &r.kernel);
    let (line, _) = refused(|s| disk(s, &r.loader, &r.kernel, Some(&sig), EXIT_CMDLINE));
    let mut fp = [0u8; 16];
    let theirs = brainix_loader::hex(
        &signature::fingerprint(&signature::public_key(&other)),
        &mut fp,
    )
    .to_owned();
    assert!(
        line.contains(&format!(
            "kernel.sig: signed by key {theirs}, but this loader trusts only key"
        )),
        "{line}"
    );
}

#[test]
fn refuses_an_image_without_a_signature() {
    let r = release();
    let (line, _) = refused(|s| disk(s, &r.loader, &r.kernel, None, EXIT_CMDLINE));
    assert!(line.contains("kernel.sig is missing"), "{line}");
}

#[test]
fn refuses_a_truncated_signature() {
    let r = release();
    let (line, _) = refused(|s| disk(s, &r.loader, &r.kernel, Some(&r.sig[..50]), EXIT_CMDLINE));
    assert!(
        line.contains("kernel.sig: signature file has 50 bytes, expected exactly 104"),
        "{line}"
    );
}

#[test]
fn refuses_to_boot_without_a_tpm() {
    let r = release();
    let scratch = ScratchDir::new("loader");
    let disk = disk(&scratch, &r.loader, &r.kernel, Some(&r.sig), EXIT_CMDLINE);
    let out = Boot::uefi(scratch.path()).boot_disk(&disk).run();
    let line = refusal(&out);
    assert!(
        line.contains("no TPM 2.0 (EFI_TCG2_PROTOCOL not found)"),
        "{line}"
    );
}

#[test]
fn a_replaced_loader_is_caught_by_the_pcr4_prediction() {
    let r = release();
    // Another loader: the same code with one byte of its banner text changed. The firmware
    // runs it (no Secure Boot on this board) and it boots the kernel; only PCR 4 tells.
    let mut loader = r.loader.clone();
    let banner = b"BraiNIX loader ";
    let at = loader
        .windows(banner.len())
        .position(|w| w == banner)
        .expect("the banner text in the loader");
    loader[at + 8] = b'L';
    let scratch = ScratchDir::new("loader");
    let disk = disk(&scratch, &loader, &r.kernel, Some(&r.sig), EXIT_CMDLINE);
    let tpm = Swtpm::start();
    let out = Boot::uefi(scratch.path()).boot_disk(&disk).tpm(&tpm).run();
    assert_eq!(out.status, Some(STOPPED), "{}", out.dump());
    assert!(
        out.serial.contains("brainix-loader: BraiNIX Loader"),
        "{}",
        out.dump()
    );
    let pcrs = tpm.read_pcrs(&[4, 9]).unwrap();
    assert_ne!(
        pcrs[0], r.predicted[0],
        "a replaced loader left PCR 4 as predicted"
    );
    assert_eq!(
        pcrs[0],
        measure::predict_pcr4(pe::authenticode_sha256(&loader).unwrap()),
        "PCR 4 follows the prediction rule for the loader that ran"
    );
    assert_eq!(pcrs[1], r.predicted[1], "the kernel is the published one");
}

#[test]
fn boots_over_uefi_pxe_from_a_tftp_directory() {
    let r = release();
    let scratch = ScratchDir::new("loader");
    let dir = scratch.path().join("tftp");
    let sub = dir.join("boards/q35");
    std::fs::create_dir_all(&sub).unwrap();
    // The loader reads its files from the directory it was served from.
    std::fs::write(sub.join("brainix-loader.efi"), &r.loader).unwrap();
    std::fs::write(sub.join(media::KERNEL_FILE), &r.kernel).unwrap();
    std::fs::write(sub.join(media::SIGNATURE_FILE), &r.sig).unwrap();
    std::fs::write(sub.join(media::CMDLINE_FILE), EXIT_CMDLINE).unwrap();
    let tpm = Swtpm::start();
    let out = Boot::uefi(scratch.path())
        .pxe(&dir, "boards/q35/brainix-loader.efi")
        .tpm(&tpm)
        .run();
    assert_eq!(out.status, Some(STOPPED), "{}", out.dump());
    assert!(
        out.serial.contains("from the PXE boot server over TFTP"),
        "{}",
        out.dump()
    );
    assert!(out.boot_report().is_some(), "{}", out.dump());
    let pcrs = tpm.read_pcrs(&[4, 9, 12]).unwrap();
    assert_eq!(pcrs[0], r.predicted[0], "PCR 4 over PXE");
    assert_eq!(pcrs[1], r.predicted[1], "PCR 9 over PXE");
    assert_eq!(pcrs[2], measure::predict_single(EXIT_CMDLINE.as_bytes()));
}
