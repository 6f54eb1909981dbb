//! `cargo xtask`: the BraiNIX build tool.
//!
//! - `cargo xtask build`: check the system manifests (`system/*.toml`), build the user programs
//!   they name, generate the kernel's system tables, and build the kernel images into
//!   `target/brainix/`.
//! - `cargo xtask qemu [--machine M] [--cpu C] [-- ARGS]`: build, then boot the release image
//!   with the console on the terminal.
//! - `cargo xtask run`: the main job: build, then run every invariant plan through lab-runner on
//!   the default QEMU board.
//! - `cargo xtask test`: check the machine has what the tests need, build, run every test.
//! - `cargo xtask bench-boot [N]`: time QEMU start to boot report, median of N (default 10),
//!   and QEMU start to the shell prompt by PVH and through OVMF and the UEFI loader.
//! - `cargo xtask mkfs <dir> <image> [--mib N]`: a BXFS disk image holding every file of
//!   `<dir>` (see `docs/filesystem.md`).
//! - `cargo xtask keygen FILE`: a new Ed25519 signing key (FILE, mode 0600) and FILE.pub.
//! - `cargo xtask release --key FILE --out DIR`: build reproducibly, sign with FILE, and write
//!   the release (loader, kernel, signature, boot disk, PXE directory, signed manifest with the
//!   predicted PCRs) into DIR.
//! - `cargo xtask verify-release --key FILE.pub --dir DIR`: check a release against its key.
//! - `cargo xtask reproduce`: build the release a second time from a copy of the source in
//!   another directory and compare every file, byte for byte.
//!
//! Plain `std` plus the manifest and boot-media crates: the build tool must build before
//! anything else has.

mod board;
// Checked by `cargo xtask test` (its unit tests run there); nothing else calls it.
#[cfg(test)]
mod deps;
mod manifest;
mod mkfs;
mod release;

use brainix_testkit::Boot;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// One kernel image: its file name, the features it is built with, and the system manifest
/// (`system/<name>.toml`) compiled into it.
struct KernelImage {
    file: &'static str,
    features: &'static [&'static str],
    system: &'static str,
}

/// The kernel images.
const IMAGES: &[KernelImage] = &[
    KernelImage {
        file: "brainix-kernel.elf",
        features: &[],
        system: "default",
    },
    KernelImage {
        file: "brainix-kernel-test.elf",
        features: &["test-hooks"],
        system: "test",
    },
    KernelImage {
        file: "brainix-kernel-multiboot.elf",
        features: &["multiboot"],
        system: "default",
    },
    // The default system generated for the microvm board: its virtio-mmio devices come from
    // the board profile (`board.rs`).
    KernelImage {
        file: "brainix-kernel-microvm.elf",
        features: &[],
        system: "default@qemu-microvm",
    },
];

/// Where the user programs are built (one target directory: they share no features).
const USER_TARGET_DIR: &str = "target/userland";

const KERNEL_TARGET: &str = "x86_64-unknown-none";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("build") => build().map(|_| ()),
        Some("qemu") => qemu(&args[1..]),
        Some("run") => run(&args[1..]),
        Some("test") => test(),
        Some("bench-boot") => bench_boot(&args[1..]),
        Some("mkfs") => mkfs::command(&args[1..]),
        Some("keygen") => keygen(&args[1..]),
        Some("release") => release_cmd(&args[1..]),
        Some("verify-release") => verify_release(&args[1..]),
        Some("reproduce") => reproduce().map(|_| ()),
        _ => Err(format!(
            "usage: cargo xtask <build | qemu [--uefi] [--machine M] [--cpu C] [-- QEMU-ARGS] | run [LAB-RUNNER-ARGS] \
             | test | bench-boot [N] | mkfs DIR IMAGE [--mib N] | keygen FILE \
             | release --key FILE --out DIR | verify-release --key FILE.pub --dir DIR | reproduce>{}",
            args.first()
                .map(|a| format!("\nunknown command {a:?}"))
                .unwrap_or_default()
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::from(2)
        }
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace")
        .to_path_buf()
}

fn image_dir() -> PathBuf {
    workspace().join("target/brainix")
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace());
    // A RUSTFLAGS variable would replace the bare-metal flags in .cargo/config.toml.
    cmd.env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    cmd
}

/// Makes a bare-metal or UEFI build reproducible: the workspace and cargo's home are remapped to
/// fixed names in every path the compiler records (debug info, panic locations), and the lock
/// file is used as it is. The flags are added to `.cargo/config.toml`'s for `target` (cargo
/// merges `--config` arrays), never put in RUSTFLAGS, which would replace them.
pub(crate) fn reproducible(cmd: &mut Command, target: &str) {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo")
        });
    let flags = [
        format!("--remap-path-prefix={}=/brainix", workspace().display()),
        format!("--remap-path-prefix={}=/cargo", home.display()),
    ];
    let list: Vec<String> = flags
        .iter()
        .map(|f| toml::Value::String(f.clone()).to_string())
        .collect();
    cmd.arg("--locked")
        .arg("--config")
        .arg(format!("target.{target}.rustflags = [{}]", list.join(", ")));
}

pub(crate) fn status(cmd: &mut Command, what: &str) -> Result<(), String> {
    let status = cmd
        .status()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

/// Builds every image, each in its own target directory so that features never mix, each with
/// its system table.
fn build() -> Result<PathBuf, String> {
    if std::env::var_os("RUSTFLAGS").is_some() {
        eprintln!("xtask: note: RUSTFLAGS is set; it is ignored for the kernel build");
    }
    let out = image_dir();
    std::fs::create_dir_all(&out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    let systems = compile_systems(&out)?;
    for image in IMAGES {
        let name = image.file;
        let variant = name.trim_end_matches(".elf");
        let target_dir = workspace().join("target/kernel").join(variant);
        let mut cmd = cargo();
        cmd.args([
            "build",
            "--quiet",
            "--release",
            "-p",
            "brainix-kernel",
            "--target",
            KERNEL_TARGET,
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("BRAINIX_SYSTEM_RS", &systems[image.system])
        .env(PROGRAMS_DIR_ENV, programs_dir());
        reproducible(&mut cmd, KERNEL_TARGET);
        if !image.features.is_empty() {
            cmd.args(["--features", &image.features.join(",")]);
        }
        status(&mut cmd, &format!("building {name}"))?;
        let built = target_dir
            .join(KERNEL_TARGET)
            .join("release/brainix-kernel");
        std::fs::copy(&built, out.join(name))
            .map_err(|e| format!("copying {} to {}: {e}", built.display(), out.display()))?;
    }
    // INV-BOOT: the loader, every image's signature, the boot disk, the PXE directory and the
    // manifest, with the development key.
    let secret = release::read_secret(&release::dev_key(&workspace())?)?;
    let extra: Vec<&str> = IMAGES
        .iter()
        .map(|i| i.file)
        .filter(|f| *f != release::KERNEL_FILE)
        .collect();
    release::package(&workspace(), cargo(), &secret, &out, &extra)?;
    eprintln!("xtask: images in {}", out.display());
    Ok(out)
}

/// Checks every system manifest the images use, builds the programs they name, checks the
/// programs against them, and writes `system-<name>.rs` into `out`. Returns the file per system.
fn compile_systems(out: &Path) -> Result<BTreeMap<&'static str, PathBuf>, String> {
    let names: BTreeSet<&'static str> = IMAGES.iter().map(|i| i.system).collect();
    let mut systems = Vec::new();
    for name in names {
        // `<system>@<board>`: the description generated for a board profile.
        let (description, board) = match name.split_once('@') {
            Some((d, b)) => (d, Some(b)),
            None => (name, None),
        };
        let relative = PathBuf::from("system").join(format!("{description}.toml"));
        let path = workspace().join(&relative);
        let mut src = std::fs::read_to_string(&path)
            .map_err(|e| format!("reading the system manifest {}: {e}", path.display()))?;
        let mut checked_as = relative;
        if let Some(board) = board {
            let profile = workspace().join("boards").join(format!("{board}.toml"));
            let board = std::fs::read_to_string(&profile)
                .map_err(|e| e.to_string())
                .and_then(|b| board::Board::parse(&b))
                .map_err(|e| format!("board profile {}: {e}", profile.display()))?;
            src = board::generate(&src, &board)
                .map_err(|e| format!("generating {name} from {}: {e}", path.display()))?;
            // Written out, so that an error's file and line can be read.
            let generated = out.join(format!("system-{description}-{}.toml", board.name));
            std::fs::write(&generated, &src)
                .map_err(|e| format!("writing {}: {e}", generated.display()))?;
            checked_as = generated;
        }
        let system = manifest::check(&checked_as, &src).map_err(|e| e.to_string())?;
        systems.push((name, system));
    }
    let catalog = workspace_programs()?;
    for (_, system) in &systems {
        manifest::check_programs(system, &catalog).map_err(|e| e.to_string())?;
        eprintln!(
            "xtask: system {:?} ({}): {} processes, {} endpoints",
            system.name,
            system.file.display(),
            system.processes.len(),
            system.endpoints.len()
        );
    }
    let packages: BTreeSet<&str> = systems
        .iter()
        .flat_map(|(_, s)| s.processes.iter().map(|p| p.package.as_str()))
        .collect();
    let mut cmd = cargo();
    cmd.args(["build", "--quiet", "--release", "--target", KERNEL_TARGET])
        .arg("--target-dir")
        .arg(workspace().join(USER_TARGET_DIR));
    reproducible(&mut cmd, KERNEL_TARGET);
    for p in &packages {
        cmd.args(["-p", p]);
    }
    status(&mut cmd, "building the user programs")?;
    let bin_dir = programs_dir();
    let mut files = BTreeMap::new();
    for (name, system) in systems {
        let configured = configured_images(name, &system, &bin_dir)?;
        // Each image was read once, by `configured_images`; processes have unique names.
        let read = |p: &manifest::Process| {
            let at = system.processes.iter().position(|q| q.name == p.name);
            at.map(|i| configured[i].1.clone())
                .ok_or_else(|| format!("process {:?} is not in the system", p.name))
        };
        manifest::check_images(&system, &read).map_err(|e| e.to_string())?;
        let images: Vec<PathBuf> = configured.into_iter().map(|(path, _)| path).collect();
        let text = programs_by_env(manifest::generate(&system, &images), &images)?;
        let file = out.join(format!("system-{name}.rs"));
        // Rewritten only when it changes, so that an unchanged system does not relink.
        if std::fs::read_to_string(&file).ok().as_deref() != Some(text.as_str()) {
            std::fs::write(&file, text).map_err(|e| format!("writing {}: {e}", file.display()))?;
        }
        files.insert(name, file);
    }
    Ok(files)
}

/// The image each process of `system` runs, by pid, with its bytes: the program as built, or,
/// for a process with a configuration (an interface, socket grants), a copy with its block
/// written (`manifest::configure`), next to the program as `<bin>.<system>.<process>`. A copy is
/// rewritten only when it changes, so that an unchanged system does not relink.
fn configured_images(
    system_name: &str,
    system: &manifest::System,
    bin_dir: &Path,
) -> Result<Vec<(PathBuf, Vec<u8>)>, String> {
    let mut images = Vec::new();
    for p in &system.processes {
        let built = bin_dir.join(&p.bin);
        let bytes = std::fs::read(&built).map_err(|e| {
            format!(
                "cannot read program {} ({e}); expected package {:?} to build a binary {:?}",
                built.display(),
                p.package,
                p.bin
            )
        })?;
        let configured = manifest::configure(p, &bytes)
            .map_err(|e| format!("{}: {e}", system.file.display()))?;
        let Some(image) = configured else {
            images.push((built, bytes));
            continue;
        };
        let path = bin_dir.join(format!("{}.{system_name}.{}", p.bin, p.name));
        if std::fs::read(&path).ok().as_deref() != Some(image.as_slice()) {
            std::fs::write(&path, &image)
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
        }
        images.push((path, image));
    }
    Ok(images)
}

/// The environment variable naming the directory of the built user programs, for the kernel
/// build (see [`programs_by_env`]).
const PROGRAMS_DIR_ENV: &str = "BRAINIX_PROGRAMS_DIR";

/// Rewrites each `include_bytes!("<absolute path>")` of the generated system table into
/// `include_bytes!(concat!(env!("BRAINIX_PROGRAMS_DIR"), "/<file>"))`.
///
/// Reproducibility: rustc hashes the text of every source file into the debug info it hands
/// LLVM (DIFile checksums), and ThinLTO names promoted symbols after that hash. With absolute
/// paths in the text, the same source built in another directory got other symbol names. With
/// the directory in the environment, the text is the same everywhere.
fn programs_by_env(text: String, images: &[PathBuf]) -> Result<String, String> {
    let mut text = text;
    // A program several processes run appears once per process.
    let unique: BTreeSet<&PathBuf> = images.iter().collect();
    for image in unique {
        let literal = format!("include_bytes!({:?})", image.display().to_string());
        let file = image
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .ok_or_else(|| format!("program path {} has no file name", image.display()))?;
        let by_env = format!(
            "include_bytes!(concat!(env!({PROGRAMS_DIR_ENV:?}), {:?}))",
            format!("/{file}")
        );
        if !text.contains(&literal) {
            return Err(format!(
                "the generated system table does not include {literal}; \
                 update programs_by_env to the generator's format"
            ));
        }
        text = text.replace(&literal, &by_env);
    }
    Ok(text)
}

/// Where the user programs are built.
fn programs_dir() -> PathBuf {
    workspace()
        .join(USER_TARGET_DIR)
        .join(KERNEL_TARGET)
        .join("release")
}

/// Every workspace package with binaries, and their names, from `cargo metadata`.
fn workspace_programs() -> Result<manifest::Catalog, String> {
    let output = cargo()
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .output()
        .map_err(|e| format!("cargo metadata: cannot start: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("cargo metadata: unreadable output: {e}"))?;
    let mut catalog = manifest::Catalog::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        let bins: Vec<String> = package["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| {
                t["kind"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "bin"))
            })
            .filter_map(|t| t["name"].as_str().map(String::from))
            .collect();
        if let (Some(name), false) = (package["name"].as_str(), bins.is_empty()) {
            catalog.insert(name.to_string(), bins);
        }
    }
    Ok(catalog)
}

/// Stops with the exact command to run when OVMF or swtpm is missing (the UEFI boots: tests,
/// `qemu --uefi`, `bench-boot`).
fn check_uefi_prerequisites() -> Result<(), String> {
    let swtpm = Command::new("swtpm")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !swtpm || !Path::new(brainix_testkit::uefi::OVMF_CODE).is_file() {
        return Err("OVMF or swtpm is not installed. Install them with:\n\n    \
             sudo apt-get update && sudo apt-get install -y ovmf swtpm swtpm-tools\n"
            .into());
    }
    Ok(())
}

/// Stops with the exact command to run when a tool the tests need is missing.
fn check_prerequisites() -> Result<(), String> {
    // rustup installs the toolchain file's targets with the toolchain; a machine whose rustup
    // does not auto-install (RUSTUP_AUTO_INSTALL=0) may have the toolchain without them.
    if let Ok(out) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(workspace())
        .output()
        && out.status.success()
        && !String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|t| t.trim() == KERNEL_TARGET)
    {
        return Err(format!(
            "the Rust target {KERNEL_TARGET} is not installed. Install the pinned toolchain and \
             its targets (rust-toolchain.toml) with:\n\n    rustup toolchain install\n"
        ));
    }
    let found = Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        return Err(
            "qemu-system-x86_64 is not installed. Install it with:\n\n    \
             sudo apt-get update && sudo apt-get install -y qemu-system-x86\n"
                .into(),
        );
    }
    // The loader's target, like the kernel's, comes with the pinned toolchain.
    if let Ok(out) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(workspace())
        .output()
        && out.status.success()
        && !String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|t| t.trim() == release::UEFI_TARGET)
    {
        return Err(format!(
            "the Rust target {} is not installed. Install the pinned toolchain and its targets \
             (rust-toolchain.toml) with:\n\n    rustup toolchain install\n",
            release::UEFI_TARGET
        ));
    }
    Ok(())
}

fn qemu(args: &[String]) -> Result<(), String> {
    check_prerequisites()?;
    let (mut machine, mut cpu) = ("q35".to_string(), "max".to_string());
    let mut extra: Vec<String> = Vec::new();
    let mut uefi = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--uefi" => uefi = true,
            "--machine" => machine = it.next().ok_or("--machine needs a value")?.clone(),
            "--cpu" => cpu = it.next().ok_or("--cpu needs a value")?.clone(),
            "--" => extra.extend(it.by_ref().cloned()),
            other => return Err(format!("qemu: unknown option {other:?}")),
        }
    }
    if uefi {
        check_uefi_prerequisites()?;
    }
    let dir = build()?;
    if uefi {
        // OVMF with a fresh software TPM boots the published disk through the loader.
        let scratch = brainix_testkit::uefi::ScratchDir::new("qemu");
        let tpm = brainix_testkit::uefi::Swtpm::start();
        let mut cmd = Boot::uefi(scratch.path())
            .boot_disk(&dir.join(release::DISK_FILE))
            .tpm(&tpm)
            .machine(&machine)
            .cpu(&cpu)
            .command();
        cmd.args(&extra);
        eprintln!(
            "xtask: booting {} through OVMF and the loader (about 7 s of firmware); Ctrl-C quits QEMU",
            release::DISK_FILE
        );
        cmd.status().map_err(|e| format!("starting QEMU: {e}"))?;
        return Ok(());
    }
    let mut cmd = Boot::new(dir.join("brainix-kernel.elf"))
        .machine(&machine)
        .cpu(&cpu)
        .command();
    cmd.args(&extra);
    eprintln!("xtask: booting {machine}; the shell's prompt is `brainix> `; Ctrl-C quits QEMU");
    cmd.status().map_err(|e| format!("starting QEMU: {e}"))?;
    Ok(())
}

fn run(args: &[String]) -> Result<(), String> {
    check_prerequisites()?;
    let dir = build()?;
    let mut cmd = cargo();
    cmd.args([
        "run",
        "--quiet",
        "--release",
        "-p",
        "lab-runner",
        "--",
        "run",
    ]);
    // The main job's defaults, unless the caller names their own.
    let given = |flag: &str| {
        args.iter()
            .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
    };
    if !given("--board") {
        cmd.args(["--board", "qemu-q35"]);
    }
    if !given("--plan") && !given("--plans") {
        cmd.args(["--plan", "all"]);
    }
    if !given("--image-dir") {
        cmd.arg("--image-dir").arg(&dir);
    }
    status(cmd.args(args), "lab-runner")
}

fn test() -> Result<(), String> {
    check_prerequisites()?;
    check_uefi_prerequisites()?;
    status(
        cargo().args(["fmt", "--all", "--", "--check"]),
        "cargo fmt --check (run `cargo fmt --all`)",
    )?;
    let dir = build()?;
    status(
        cargo()
            .args(["test", "--workspace", "--no-fail-fast"])
            .env("BRAINIX_IMAGE_DIR", &dir),
        "cargo test --workspace",
    )?;
    // INV-BOOT: the release is reproducible (a second build from a copy of the source, in
    // another directory, gives the same bytes).
    reproduce().map(|_| ())
}

/// Wall time from spawning QEMU to the boot-report line, read as the bytes arrive.
fn bench_boot(args: &[String]) -> Result<(), String> {
    use std::io::{BufRead, BufReader};
    check_prerequisites()?;
    let n: usize = match args.first() {
        Some(a) => a
            .parse()
            .map_err(|_| format!("bench-boot: {a:?} is not a count"))?,
        None => 10,
    };
    check_uefi_prerequisites()?;
    let dir = build()?;
    for machine in ["q35", "pc", "microvm"] {
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let start = Instant::now();
            let mut child = Boot::new(dir.join("brainix-kernel.elf"))
                .machine(machine)
                .command()
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|e| format!("starting QEMU: {e}"))?;
            let stdout = child.stdout.take().ok_or("no stdout")?;
            let mut seen = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("BRAINIX-BOOT-REPORT") {
                    seen = Some(start.elapsed());
                    break;
                }
            }
            // The system goes on to its shell; the measurement is done.
            let _ = child.kill();
            let _ = child.wait();
            times.push(seen.ok_or("no boot report")?);
        }
        times.sort();
        let median = times[n / 2];
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "boot-to-report {machine}: median {:.1} ms, min {:.1} ms, max {:.1} ms (n={n}, TCG)",
            ms(median),
            ms(times[0]),
            ms(times[n - 1])
        );
    }
    let elf = std::fs::read(dir.join("brainix-kernel.elf")).map_err(|e| e.to_string())?;
    println!("brainix-kernel.elf: {} bytes", elf.len());
    bench_uefi(&dir, n)?;
    let loader = std::fs::metadata(dir.join(release::LOADER_FILE)).map_err(|e| e.to_string())?;
    println!("{}: {} bytes", release::LOADER_FILE, loader.len());
    Ok(())
}

/// QEMU start to the loader's first line (UEFI only), the kernel's first line, its boot report
/// and the shell prompt, by PVH and through OVMF, swtpm and the UEFI loader (the published boot
/// disk), alternating, median of `n`.
fn bench_uefi(dir: &Path, n: usize) -> Result<(), String> {
    use brainix_testkit::uefi::{ScratchDir, Swtpm};
    const MARKS: [(&str, &str); 4] = [
        ("loader's first line", "brainix-loader: BraiNIX loader"),
        ("first kernel line", "brainix: BraiNIX kernel"),
        ("boot report", "BRAINIX-BOOT-REPORT"),
        ("shell prompt", "brainix> "),
    ];
    let times = |boot: Boot, marks: &[(&str, &str)]| {
        let start = Instant::now();
        let mut session = boot.spawn();
        let t: Vec<Duration> = marks
            .iter()
            .map(|(_, mark)| {
                session.expect(mark, Duration::from_secs(120));
                start.elapsed()
            })
            .collect();
        session.kill();
        t
    };
    let (mut pvh, mut uefi) = (Vec::new(), Vec::new());
    for _ in 0..n {
        pvh.push(times(
            Boot::new(dir.join("brainix-kernel.elf")),
            &MARKS[1..],
        ));
        let scratch = ScratchDir::new("bench");
        let tpm = Swtpm::start();
        let boot = Boot::uefi(scratch.path())
            .boot_disk(&dir.join(release::DISK_FILE))
            .tpm(&tpm);
        uefi.push(times(boot, &MARKS));
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    for (name, mut runs, marks) in [
        ("pvh q35", pvh, &MARKS[1..]),
        ("ovmf+swtpm+loader q35", uefi, &MARKS[..]),
    ] {
        let mut parts = Vec::new();
        for (i, (what, _)) in marks.iter().enumerate() {
            runs.sort_by_key(|r| r[i]);
            parts.push(format!("{what} {:.0} ms", ms(runs[runs.len() / 2][i])));
        }
        println!("{name}: {} (median of {n}, TCG)", parts.join("; "));
    }
    Ok(())
}

/// `--flag VALUE` from `args`.
fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn keygen(args: &[String]) -> Result<(), String> {
    let [path] = args else {
        return Err("usage: cargo xtask keygen FILE (writes FILE, mode 0600, and FILE.pub)".into());
    };
    let public = release::keygen(Path::new(path))?;
    eprintln!(
        "xtask: secret key in {path} (keep it off the repository); public key in {}",
        public.display()
    );
    Ok(())
}

/// `cargo xtask release --key FILE --out DIR`.
fn release_cmd(args: &[String]) -> Result<(), String> {
    let (Some(key), Some(out)) = (flag(args, "--key"), flag(args, "--out")) else {
        return Err("usage: cargo xtask release --key FILE --out DIR".into());
    };
    let secret = release::read_secret(Path::new(key))?;
    release_into(&secret, Path::new(out))?;
    eprintln!(
        "xtask: release in {out}; check it with `cargo xtask verify-release --key {key}.pub --dir {out}`"
    );
    Ok(())
}

/// Builds everything and writes a release signed with `secret` into `out`.
fn release_into(secret: &[u8; 32], out: &Path) -> Result<(), String> {
    let images = build()?;
    std::fs::create_dir_all(out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    let kernel = release::KERNEL_FILE;
    std::fs::copy(images.join(kernel), out.join(kernel))
        .map_err(|e| format!("copying {kernel} to {}: {e}", out.display()))?;
    release::package(&workspace(), cargo(), secret, out, &[])?;
    // The development build's loader trusts the development key again.
    let dev = release::read_secret(&release::dev_key(&workspace())?)?;
    release::build_loader(
        &workspace(),
        cargo(),
        &dev,
        &images.join(release::LOADER_FILE),
    )
}

/// `cargo xtask verify-release --key FILE.pub --dir DIR`.
fn verify_release(args: &[String]) -> Result<(), String> {
    let (Some(key), Some(dir)) = (flag(args, "--key"), flag(args, "--dir")) else {
        return Err("usage: cargo xtask verify-release --key FILE.pub --dir DIR".into());
    };
    let text = std::fs::read_to_string(key).map_err(|e| format!("reading {key}: {e}"))?;
    let public = brainix_loader::keys::parse_public(&text).map_err(|e| format!("{key}: {e}"))?;
    let manifest = release::verify(Path::new(dir), &public)?;
    println!(
        "release in {dir}: manifest signature, file hashes, kernel signature and boot disk check out"
    );
    for p in manifest["predicted_pcrs"]["pcrs"]
        .as_array()
        .into_iter()
        .flatten()
    {
        println!(
            "  predicted PCR {:>2} (sha256) = {}",
            p["pcr"],
            p["value"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}

/// Builds the release twice, the second time from a copy of the source in another directory
/// with its own target directory, and compares every file. Returns the release directory of the
/// first build.
fn reproduce() -> Result<PathBuf, String> {
    let key = release::dev_key(&workspace())?;
    let secret = release::read_secret(&key)?;
    let here = workspace().join("target/reproduce/here");
    let _ = std::fs::remove_dir_all(&here);
    let started = Instant::now();
    release_into(&secret, &here)?;
    eprintln!("xtask: reproduce: first build in {:.0?}", started.elapsed());

    let copy = std::env::temp_dir().join(format!("brainix-reproduce-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&copy);
    let result = (|| {
        copy_source(&copy.join("src"))?;
        let there = copy.join("out");
        let started = Instant::now();
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.current_dir(copy.join("src"))
            .args(["xtask", "release", "--key"])
            .arg(&key)
            .arg("--out")
            .arg(&there)
            .env("BRAINIX_SOURCE", release::source_description(&workspace()))
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS");
        status(&mut cmd, "the second build (in a copy of the source)")?;
        eprintln!(
            "xtask: reproduce: second build in {:.0?}",
            started.elapsed()
        );
        compare_trees(&here, &there)
    })();
    let _ = std::fs::remove_dir_all(&copy);
    result?;
    Ok(here)
}

/// Copies the work tree's files that git tracks or would track (not ignored ones) to `to`.
fn copy_source(to: &Path) -> Result<(), String> {
    let out = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(workspace())
        .output()
        .map_err(|e| format!("git ls-files: {e}"))?;
    if !out.status.success() {
        return Err("git ls-files failed: the reproducibility check needs a git work tree".into());
    }
    for name in out.stdout.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name);
        let from = workspace().join(&*name);
        if !from.is_file() {
            continue; // deleted in the work tree
        }
        let dest = to.join(&*name);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("creating {}: {e}", parent.display()))?;
        }
        std::fs::copy(&from, &dest).map_err(|e| format!("copying {name}: {e}"))?;
    }
    Ok(())
}

/// Every file under `a` and `b` (recursively) must exist in both with the same bytes.
fn compare_trees(a: &Path, b: &Path) -> Result<(), String> {
    fn files(root: &Path, dir: &Path, out: &mut BTreeSet<PathBuf>) -> Result<(), String> {
        for entry in
            std::fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))?
        {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.is_dir() {
                files(root, &path, out)?;
            } else {
                out.insert(path.strip_prefix(root).unwrap_or(&path).to_path_buf());
            }
        }
        Ok(())
    }
    let (mut fa, mut fb) = (BTreeSet::new(), BTreeSet::new());
    files(a, a, &mut fa)?;
    files(b, b, &mut fb)?;
    if fa != fb {
        return Err(format!(
            "the two builds made different files; only in one of them: {:?}",
            fa.symmetric_difference(&fb).collect::<Vec<_>>()
        ));
    }
    let mut differ = Vec::new();
    for f in &fa {
        let (x, y) = (std::fs::read(a.join(f)), std::fs::read(b.join(f)));
        match (x, y) {
            (Ok(x), Ok(y)) if x == y => {}
            _ => differ.push(f.display().to_string()),
        }
    }
    if differ.is_empty() {
        println!(
            "reproducible: {} files bit-identical between {} and {}",
            fa.len(),
            a.display(),
            b.display()
        );
        Ok(())
    } else {
        Err(format!(
            "not reproducible: {} differ between {} and {}",
            differ.join(", "),
            a.display(),
            b.display()
        ))
    }
}
