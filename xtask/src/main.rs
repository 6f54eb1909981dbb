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
//! - `cargo xtask bench-boot [N]`: time QEMU start to boot report, median of N (default 10).
//! - `cargo xtask mkfs <dir> <image> [--mib N]`: a BXFS disk image holding every file of
//!   `<dir>` (see `docs/filesystem.md`).
//!
//! Plain `std`: the build tool must build before anything else has.

mod board;
// Checked by `cargo xtask test` (its unit tests run there); nothing else calls it.
#[cfg(test)]
mod deps;
mod manifest;
mod mkfs;

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
        _ => Err(format!(
            "usage: cargo xtask <build | qemu [--machine M] [--cpu C] [-- QEMU-ARGS] | run [LAB-RUNNER-ARGS] | test | bench-boot [N] | mkfs DIR IMAGE [--mib N]>{}",
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

fn status(cmd: &mut Command, what: &str) -> Result<(), String> {
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
        .env("BRAINIX_SYSTEM_RS", &systems[image.system]);
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
    for p in &packages {
        cmd.args(["-p", p]);
    }
    status(&mut cmd, "building the user programs")?;
    let bin_dir = workspace()
        .join(USER_TARGET_DIR)
        .join(KERNEL_TARGET)
        .join("release");
    let mut files = BTreeMap::new();
    for (name, system) in systems {
        let path_of = |p: &manifest::Process| bin_dir.join(&p.bin);
        let read = |p: &manifest::Process| {
            std::fs::read(path_of(p)).map_err(|e| {
                format!(
                    "cannot read program {} ({e}); expected package {:?} to build a binary {:?}",
                    path_of(p).display(),
                    p.package,
                    p.bin
                )
            })
        };
        manifest::check_images(&system, &read).map_err(|e| e.to_string())?;
        let images: Vec<PathBuf> = system.processes.iter().map(path_of).collect();
        let text = manifest::generate(&system, &images);
        let file = out.join(format!("system-{name}.rs"));
        // Rewritten only when it changes, so that an unchanged system does not relink.
        if std::fs::read_to_string(&file).ok().as_deref() != Some(text.as_str()) {
            std::fs::write(&file, text).map_err(|e| format!("writing {}: {e}", file.display()))?;
        }
        files.insert(name, file);
    }
    Ok(files)
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
    Ok(())
}

fn qemu(args: &[String]) -> Result<(), String> {
    check_prerequisites()?;
    let (mut machine, mut cpu) = ("q35".to_string(), "max".to_string());
    let mut extra: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--machine" => machine = it.next().ok_or("--machine needs a value")?.clone(),
            "--cpu" => cpu = it.next().ok_or("--cpu needs a value")?.clone(),
            "--" => extra.extend(it.by_ref().cloned()),
            other => return Err(format!("qemu: unknown option {other:?}")),
        }
    }
    let dir = build()?;
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
    )
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
    Ok(())
}
