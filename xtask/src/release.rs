//! INV-BOOT on the build side: keys, the loader built with the key it trusts, signatures, the
//! boot disk and PXE directory, and the release manifest with the predicted PCRs.
//!
//! `cargo xtask build` packages its images with a development key kept in `target/dev-key/`
//! (made on first use, never committed), so every test boots signed images through the same
//! code a release uses. `cargo xtask release --key FILE --out DIR` does the same with a real
//! key and writes only what ships.

use brainix_loader::{disk, keys, measure, media, pe, signature};
use serde_json::json;
use std::path::{Path, PathBuf};

/// The loader, as built.
pub const LOADER_FILE: &str = "brainix-loader.efi";
/// The boot disk image (GPT, FAT32 ESP).
pub const DISK_FILE: &str = "brainix-disk.img";
/// The directory to serve over TFTP for UEFI PXE boot (DHCP boot file `brainix-loader.efi`).
pub const PXE_DIR: &str = "pxe";
/// The release manifest; its signature is `<name>.sig`.
pub const MANIFEST_FILE: &str = "brainix-release.json";
/// The public key file shipped with a release.
pub const PUBLIC_KEY_FILE: &str = "brainix-signing-key.pub";
/// The kernel image that ships.
pub const KERNEL_FILE: &str = "brainix-kernel.elf";

/// The loader's target.
pub const UEFI_TARGET: &str = "x86_64-unknown-uefi";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))
}

fn write(path: &Path, data: &[u8]) -> Result<(), String> {
    std::fs::write(path, data).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Writes a new key pair: the secret key to `path` (mode 0600) and the public key to
/// `path.pub`. Refuses to overwrite either.
pub fn keygen(path: &Path) -> Result<PathBuf, String> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let public = public_path(path);
    for p in [path, public.as_path()] {
        if p.exists() {
            return Err(format!("{} exists; not overwriting a key", p.display()));
        }
    }
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .map_err(|e| format!("reading /dev/urandom: {e}"))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("creating {}: {e}", path.display()))?;
    file.write_all(keys::format_secret(&seed).as_bytes())
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    write(
        &public,
        keys::format_public(&signature::public_key(&seed)).as_bytes(),
    )?;
    Ok(public)
}

/// Where the public key of secret key `path` is written: `path.pub`.
pub fn public_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

/// Reads a secret key file.
pub fn read_secret(path: &Path) -> Result<[u8; 32], String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("reading the signing key {}: {e}", path.display()))?;
    keys::parse_secret(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The development key (`target/dev-key/brainix-dev.key`), made on first use.
pub fn dev_key(workspace: &Path) -> Result<PathBuf, String> {
    let dir = workspace.join("target/dev-key");
    let key = dir.join("brainix-dev.key");
    if !key.exists() {
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        keygen(&key)?;
        eprintln!(
            "xtask: made a development signing key in {} (throw-away; never ship it)",
            dir.display()
        );
    }
    Ok(key)
}

/// Builds the loader trusting the public key of `secret`, and copies it to `out`.
pub fn build_loader(
    workspace: &Path,
    mut cargo: std::process::Command,
    secret: &[u8; 32],
    out: &Path,
) -> Result<(), String> {
    let target_dir = workspace.join("target/loader");
    std::fs::create_dir_all(&target_dir)
        .map_err(|e| format!("creating {}: {e}", target_dir.display()))?;
    // The key file the build script reads; rewritten only when it changes, so an unchanged key
    // does not rebuild the loader.
    let key_file = target_dir.join("trusted.pub");
    let text = keys::format_public(&signature::public_key(secret));
    if std::fs::read_to_string(&key_file).ok().as_deref() != Some(text.as_str()) {
        write(&key_file, text.as_bytes())?;
    }
    cargo
        .args(["build", "--quiet", "--release", "-p", "brainix-loader"])
        .args(["--target", UEFI_TARGET])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("BRAINIX_LOADER_PUBKEY", &key_file);
    crate::reproducible(&mut cargo, UEFI_TARGET);
    crate::status(&mut cargo, "building the UEFI loader")?;
    let built = target_dir
        .join(UEFI_TARGET)
        .join("release")
        .join(LOADER_FILE);
    std::fs::copy(&built, out)
        .map_err(|e| format!("copying {} to {}: {e}", built.display(), out.display()))?;
    Ok(())
}

/// Signs `file` into `file.sig`.
pub fn sign_file(secret: &[u8; 32], file: &Path) -> Result<(), String> {
    let data = read(file)?;
    let sig = signature::sign(secret, signature::Domain::KernelImage, &data);
    let mut path = file.as_os_str().to_owned();
    path.push(".sig");
    write(Path::new(&path), &sig)
}

/// The boot disk for `loader`, `kernel` and its signature `sig`, with command line `cmdline`.
pub fn boot_disk(
    loader: &[u8],
    kernel: &[u8],
    sig: &[u8],
    cmdline: &str,
) -> Result<Vec<u8>, String> {
    disk::boot_disk(&[
        (media::LOADER_PATH, loader),
        (media::KERNEL_FILE, kernel),
        (media::SIGNATURE_FILE, sig),
        (media::CMDLINE_FILE, cmdline.as_bytes()),
    ])
    .map_err(|e| format!("building the boot disk: {e}"))
}

/// Writes the PXE directory: the loader (the DHCP boot file) and, beside it, the files it reads.
pub fn pxe_dir(
    dir: &Path,
    loader: &[u8],
    kernel: &[u8],
    sig: &[u8],
    cmdline: &str,
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    write(&dir.join(LOADER_FILE), loader)?;
    write(&dir.join(media::KERNEL_FILE), kernel)?;
    write(&dir.join(media::SIGNATURE_FILE), sig)?;
    write(&dir.join(media::CMDLINE_FILE), cmdline.as_bytes())
}

/// The predicted PCR values (SHA-256 bank) for a boot of `loader` and `kernel` with
/// `cmdline`, as lowercase hex: PCR 4, 9 and 12.
pub fn predict(loader: &[u8], kernel: &[u8], cmdline: &str) -> Result<[(u32, String); 3], String> {
    let authenticode =
        pe::authenticode_sha256(loader).map_err(|e| format!("{LOADER_FILE}: {e}"))?;
    Ok([
        (
            measure::LOADER_PCR,
            hex(&measure::predict_pcr4(authenticode)),
        ),
        (measure::KERNEL_PCR, hex(&measure::predict_single(kernel))),
        (
            measure::CMDLINE_PCR,
            hex(&measure::predict_single(cmdline.as_bytes())),
        ),
    ])
}

/// Packages the built images in `out`: loader, signatures, boot disk, PXE directory, public key,
/// and the signed release manifest. `images` are files in `out` to sign besides the kernel
/// (the test and multiboot images of a development build).
pub fn package(
    workspace: &Path,
    cargo: std::process::Command,
    secret: &[u8; 32],
    out: &Path,
    extra_images: &[&str],
) -> Result<(), String> {
    let loader_path = out.join(LOADER_FILE);
    build_loader(workspace, cargo, secret, &loader_path)?;
    for name in std::iter::once(&KERNEL_FILE).chain(extra_images) {
        sign_file(secret, &out.join(name))?;
    }
    let loader = read(&loader_path)?;
    let kernel = read(&out.join(KERNEL_FILE))?;
    let sig = read(&out.join(format!("{KERNEL_FILE}.sig")))?;
    // The shipped command line is empty: the kernel's defaults are its strictest behaviour.
    let cmdline = "";
    write(
        &out.join(DISK_FILE),
        &boot_disk(&loader, &kernel, &sig, cmdline)?,
    )?;
    pxe_dir(&out.join(PXE_DIR), &loader, &kernel, &sig, cmdline)?;
    let public = signature::public_key(secret);
    write(
        &out.join(PUBLIC_KEY_FILE),
        keys::format_public(&public).as_bytes(),
    )?;
    let manifest = manifest(workspace, out, &public, &loader, &kernel, cmdline)?;
    write(&out.join(MANIFEST_FILE), manifest.as_bytes())?;
    write(
        &out.join(format!("{MANIFEST_FILE}.sig")),
        &signature::sign(
            secret,
            signature::Domain::ReleaseManifest,
            manifest.as_bytes(),
        ),
    )?;
    Ok(())
}

/// The release manifest: what was built from which source, every shipped file's hash, and the
/// PCR values a machine that boots it must end up with. No time stamps: it is part of the
/// reproducible output.
fn manifest(
    workspace: &Path,
    out: &Path,
    public: &[u8; 32],
    loader: &[u8],
    kernel: &[u8],
    cmdline: &str,
) -> Result<String, String> {
    let mut files = Vec::new();
    for name in [
        LOADER_FILE.to_owned(),
        KERNEL_FILE.to_owned(),
        format!("{KERNEL_FILE}.sig"),
        DISK_FILE.to_owned(),
        PUBLIC_KEY_FILE.to_owned(),
    ] {
        let data = read(&out.join(&name))?;
        files.push(json!({
            "name": name,
            "bytes": data.len(),
            "sha256": hex(&measure::sha256(&data)),
        }));
    }
    let pcrs = predict(loader, kernel, cmdline)?;
    let authenticode = pe::authenticode_sha256(loader).map_err(|e| e.to_string())?;
    let value = json!({
        "schema": 1,
        "product": "BraiNIX",
        "version": env!("CARGO_PKG_VERSION"),
        "source": source_description(workspace),
        "signing_key": keys::format_public(public).trim_end(),
        "files": files,
        "loader_authenticode_sha256": hex(&authenticode),
        "predicted_pcrs": {
            "bank": "sha256",
            "boot": "the boot disk or PXE directory as shipped: EDK2-based UEFI firmware starts brainix-loader.efi from its first boot option",
            "pcrs": [
                {
                    "pcr": pcrs[0].0,
                    "value": pcrs[0].1,
                    "events": [
                        "EV_EFI_ACTION \"Calling EFI Application from Boot Option\"",
                        "EV_SEPARATOR 00000000",
                        format!("EV_EFI_BOOT_SERVICES_APPLICATION {LOADER_FILE} (Authenticode SHA-256 {})", hex(&authenticode)),
                    ],
                },
                {
                    "pcr": pcrs[1].0,
                    "value": pcrs[1].1,
                    "events": [format!("EV_IPL {KERNEL_FILE} (SHA-256 {})", hex(&measure::sha256(kernel)))],
                },
                {
                    "pcr": pcrs[2].0,
                    "value": pcrs[2].1,
                    "events": [format!("EV_IPL command line {cmdline:?}")],
                },
            ],
        },
    });
    serde_json::to_string_pretty(&value)
        .map(|s| s + "\n")
        .map_err(|e| format!("writing the manifest: {e}"))
}

/// The source a build comes from: `BRAINIX_SOURCE` when set (the reproducibility check passes
/// the outer tree's to its copy, which has no git), else the git commit, with `+dirty` when the
/// work tree has changes.
pub fn source_description(workspace: &Path) -> String {
    if let Ok(s) = std::env::var("BRAINIX_SOURCE") {
        return s;
    }
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(workspace)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match (git(&["rev-parse", "HEAD"]), git(&["status", "--porcelain"])) {
        (Some(commit), Some(status)) if status.is_empty() => commit,
        (Some(commit), Some(_)) => format!("{commit}+dirty"),
        _ => "unknown".into(),
    }
}

/// Checks a release directory: the manifest's signature against `public`, every file's hash,
/// the kernel's signature, that the boot disk holds exactly the listed loader and kernel, and
/// that the predicted PCRs follow from the files. Returns the manifest.
pub fn verify(dir: &Path, public: &[u8; 32]) -> Result<serde_json::Value, String> {
    let manifest = read(&dir.join(MANIFEST_FILE))?;
    let sig = read(&dir.join(format!("{MANIFEST_FILE}.sig")))?;
    signature::verify(public, signature::Domain::ReleaseManifest, &manifest, &sig)
        .map_err(|e| format!("{MANIFEST_FILE}.sig: {e}"))?;
    let value: serde_json::Value =
        serde_json::from_slice(&manifest).map_err(|e| format!("{MANIFEST_FILE}: {e}"))?;
    for f in value["files"].as_array().ok_or("manifest lists no files")? {
        let name = f["name"].as_str().ok_or("a file without a name")?;
        if name.contains('/') || name.starts_with('.') {
            return Err(format!(
                "manifest names {name:?}, which is not a plain file name"
            ));
        }
        let data = read(&dir.join(name))?;
        let want = f["sha256"].as_str().unwrap_or_default();
        if hex(&measure::sha256(&data)) != want {
            return Err(format!("{name}: SHA-256 does not match the manifest"));
        }
    }
    let loader = read(&dir.join(LOADER_FILE))?;
    let kernel = read(&dir.join(KERNEL_FILE))?;
    let ksig = read(&dir.join(format!("{KERNEL_FILE}.sig")))?;
    signature::verify(public, signature::Domain::KernelImage, &kernel, &ksig)
        .map_err(|e| format!("{KERNEL_FILE}.sig: {e}"))?;
    let disk_image = read(&dir.join(DISK_FILE))?;
    for (path, want) in [
        (media::LOADER_PATH, &loader),
        (media::KERNEL_FILE, &kernel),
        (media::SIGNATURE_FILE, &ksig),
    ] {
        let got = disk::read_file(&disk_image, path).map_err(|e| format!("{DISK_FILE}: {e}"))?;
        if got.as_ref() != Some(want) {
            return Err(format!("{DISK_FILE}: {path} is not the release's file"));
        }
    }
    let cmdline = disk::read_file(&disk_image, media::CMDLINE_FILE)
        .map_err(|e| format!("{DISK_FILE}: {e}"))?
        .unwrap_or_default();
    let cmdline =
        String::from_utf8(cmdline).map_err(|_| format!("{DISK_FILE}: command line is not text"))?;
    let predicted = predict(&loader, &kernel, &cmdline)?;
    let listed = &value["predicted_pcrs"]["pcrs"];
    for (pcr, v) in predicted {
        let entry = listed
            .as_array()
            .and_then(|a| a.iter().find(|p| p["pcr"] == pcr))
            .ok_or(format!("manifest has no prediction for PCR {pcr}"))?;
        if entry["value"] != v.as_str() {
            return Err(format!(
                "manifest predicts PCR {pcr} = {}, but the files give {v}",
                entry["value"]
            ));
        }
    }
    Ok(value)
}
