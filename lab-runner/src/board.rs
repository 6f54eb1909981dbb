//! Board profiles: what a test machine *is* (`boards/*.toml`).
//!
//! A profile describes resources only — machine type, firmware, console, power, how an image gets
//! there, which device servers it gets. How to drive those resources lives in `backend`. Loading
//! never panics on a malformed file: every problem becomes a [`Finding`] naming file, line, what is
//! wrong and what was expected, and all findings of a file are reported together.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::key_path;
use crate::source::{
    Finding, Findings, Key, ReadError, SourceText, decode, is_simple_name, read_limited,
    render_findings,
};
use crate::template::Template;

/// The only board schema version this runner reads.
pub const BOARD_SCHEMA: u32 = 1;

/// Longest board, device or server name. Names end up in file names and report ids, 48 keeps
/// them readable and well under any path limit.
pub const MAX_NAME: usize = 48;

/// Largest file a profile may be. Real profiles are about 2 KiB; anything bigger is a mistake.
pub const MAX_PROFILE_BYTES: u64 = 256 * 1024;

/// QEMU machine types the kernel is known to boot on (PVH direct boot or OVMF).
pub const QEMU_MACHINES: &[&str] = &["q35", "pc", "microvm"];

/// Why a board could not be loaded.
#[derive(Debug, Error)]
pub enum BoardError {
    /// The file could not be read.
    #[error("{path}: cannot read board profile: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file was read and is wrong; every problem found is listed.
    #[error("{}", render_findings(.0))]
    Invalid(Vec<Finding>),
    /// No profile with that name in the boards directory.
    #[error("no board profile `{name}` in {dir} (available: {available})")]
    Unknown {
        /// The requested name.
        name: String,
        /// Where it was looked for.
        dir: PathBuf,
        /// What exists.
        available: String,
    },
}

/// Machine kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BoardKind {
    /// A QEMU configuration the runner starts itself.
    Qemu,
    /// A real machine reached through console, power and image-delivery methods.
    Physical,
}

/// A validated board profile.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Board {
    /// Schema version, must be [`BOARD_SCHEMA`].
    pub schema: u32,
    /// Board name; equals the file stem.
    pub name: String,
    /// One line for people.
    pub description: String,
    /// QEMU or physical.
    pub kind: BoardKind,
    /// Multiplies every boot, silence and check timeout (slow machines, slow firmware).
    #[serde(default = "one")]
    pub timeout_scale: f64,
    /// Timeouts in seconds before scaling.
    #[serde(default)]
    pub timeouts: BoardTimeouts,
    /// Extra kernel command-line words for this board.
    #[serde(default)]
    pub cmdline: Vec<String>,
    /// Kernel features the board needs before any boot check can run on it (for example
    /// `uefi-loader`); while one is not built, boot checks on this board are SKIP.
    #[serde(default)]
    pub requires: Vec<String>,
    /// How a healthy boot ends on this board.
    #[serde(default)]
    pub expect: Expectation,
    /// Devices the board has, each with the one user-space server that owns it.
    #[serde(default, rename = "device")]
    pub devices: Vec<Device>,
    /// QEMU settings, for `kind = "qemu"`.
    pub qemu: Option<QemuBoard>,
    /// Physical machine settings, for `kind = "physical"`.
    pub physical: Option<PhysicalBoard>,
}

fn one() -> f64 {
    1.0
}

/// Board-level timeouts in seconds (before `timeout_scale`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardTimeouts {
    /// From power-on to the target's `PLAN` frame (or its refusal).
    #[serde(default = "default_boot_s")]
    pub boot_s: f64,
    /// Longest stretch without a console byte before the boot is given up.
    #[serde(default = "default_silence_s")]
    pub silence_s: f64,
    /// After `END`, how long an exit check watches the machine: it must exit with status 33 or
    /// still be running (gone on to user space) when this window closes.
    #[serde(default = "default_exit_s")]
    pub exit_s: f64,
}

fn default_boot_s() -> f64 {
    30.0
}
fn default_silence_s() -> f64 {
    20.0
}
fn default_exit_s() -> f64 {
    1.0
}

impl Default for BoardTimeouts {
    fn default() -> Self {
        BoardTimeouts {
            boot_s: default_boot_s(),
            silence_s: default_silence_s(),
            exit_s: default_exit_s(),
        }
    }
}

/// What a healthy boot on this board looks like.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// `finish`: the kernel boots, reports and exits (or halts). `refuse`: the kernel must refuse
    /// to boot on this machine, and that refusal is the board's pass.
    #[serde(default)]
    pub outcome: Outcome,
    /// For `refuse`: the QEMU exit status the refusal must produce (see serial-protocol.md §4).
    pub exit_status: Option<i32>,
    /// For `refuse`: text a console log line must contain (the kernel's refusal line).
    pub console_line: Option<String>,
}

impl Default for Expectation {
    fn default() -> Self {
        Expectation {
            outcome: Outcome::Finish,
            exit_status: None,
            console_line: None,
        }
    }
}

/// How a boot is expected to end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Boot, report, exit.
    #[default]
    Finish,
    /// Refuse to boot.
    Refuse,
}

/// A device on the board and the server that owns it. Each device gets its own server and no
/// server serves two devices (the design's "one server per device").
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    /// Device name on this board, e.g. `com1`.
    pub name: String,
    /// What it is, e.g. `uart-16550`, `virtio-net`, `tpm-tis`.
    pub model: String,
    /// The user-space server that drives it.
    pub server: String,
    /// QEMU boards: a `-device` argument that creates it; absent when the machine type has it
    /// built in or the runner adds it (console, TPM).
    pub qemu_device: Option<String>,
}

/// QEMU machine description.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QemuBoard {
    /// `-machine` type: one of [`QEMU_MACHINES`].
    pub machine: String,
    /// `-cpu` model, e.g. `max`.
    pub cpu: String,
    /// CPU flags appended to the model: `+x` or `-x`.
    #[serde(default)]
    pub cpu_flags: Vec<String>,
    /// RAM in MiB.
    pub memory_mib: u32,
    /// Number of CPUs.
    #[serde(default = "one_u32")]
    pub smp: u32,
    /// How the kernel is started.
    #[serde(default)]
    pub firmware: Firmware,
    /// OVMF images, for `firmware = "ovmf"`.
    pub ovmf: Option<Ovmf>,
    /// TPM emulation.
    #[serde(default)]
    pub tpm: Tpm,
    /// The machine has `isa-debug-exit` at 0xf4 and the kernel is told so.
    #[serde(default = "yes")]
    pub debug_exit: bool,
}

fn one_u32() -> u32 {
    1
}
fn yes() -> bool {
    true
}

/// Firmware path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    /// QEMU loads the ELF through its PVH note (`-kernel`).
    #[default]
    Pvh,
    /// UEFI firmware (OVMF) in pflash.
    Ovmf,
}

/// OVMF pflash images.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ovmf {
    /// Read-only code image.
    pub code: PathBuf,
    /// Variable store template; the runner copies it per boot so boots never share state.
    pub vars: PathBuf,
}

/// TPM emulation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tpm {
    /// No TPM.
    #[default]
    None,
    /// swtpm behind a TIS interface.
    Tis,
    /// swtpm behind a CRB interface.
    Crb,
}

/// Physical machine description.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhysicalBoard {
    /// The console.
    pub console: ConsoleMethod,
    /// Power control.
    pub power: PowerMethod,
    /// How an image reaches the machine.
    pub image: ImageMethod,
    /// Directory for the per-board lock file; default `$BRAINIX_LOCK_DIR` or
    /// `/tmp/brainix-lab-locks`.
    pub lock_dir: Option<PathBuf>,
}

/// How the runner reaches the console.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ConsoleMethod {
    /// A local serial device, opened through the serialport crate.
    Serial {
        /// Device path, e.g. `/dev/ttyUSB0`.
        device: PathBuf,
        /// Baud rate.
        #[serde(default = "default_baud")]
        baud: u32,
        /// Delay between transmitted characters, for targets without a FIFO.
        #[serde(default)]
        tx_char_delay_ms: u64,
    },
    /// A TCP endpoint: ser2net raw mode, or RFC 2217 (telnet) when `rfc2217 = true`.
    Tcp {
        /// `host:port`.
        address: String,
        /// Speak telnet/RFC 2217 framing (IAC sequences are stripped and escaped).
        #[serde(default)]
        rfc2217: bool,
        /// Delay between transmitted characters.
        #[serde(default)]
        tx_char_delay_ms: u64,
    },
}

fn default_baud() -> u32 {
    115_200
}

impl ConsoleMethod {
    /// Per-character transmit delay.
    pub fn tx_char_delay(&self) -> Duration {
        match self {
            ConsoleMethod::Serial {
                tx_char_delay_ms, ..
            }
            | ConsoleMethod::Tcp {
                tx_char_delay_ms, ..
            } => Duration::from_millis(*tx_char_delay_ms),
        }
    }
}

/// How the runner switches the machine on and off.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum PowerMethod {
    /// Command templates (ipmitool, a relay script, ...). See [`crate::template`].
    Command {
        /// Switch on.
        on: String,
        /// Switch off.
        off: String,
        /// Wait after switching off before switching on, in milliseconds.
        #[serde(default = "default_settle_ms")]
        settle_ms: u64,
    },
    /// A pdudaemon HTTP endpoint (`GET /power/control/<on|off>?hostname=..&port=..`).
    Pdudaemon {
        /// Base URL, `http://host:port`.
        url: String,
        /// PDU name as pdudaemon knows it.
        hostname: String,
        /// Outlet.
        port: u32,
        /// Wait after switching off before switching on, in milliseconds.
        #[serde(default = "default_settle_ms")]
        settle_ms: u64,
    },
}

fn default_settle_ms() -> u64 {
    1000
}

/// How an image reaches the machine.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ImageMethod {
    /// Copy the image into a TFTP directory and write an iPXE script next to it.
    Tftp {
        /// The directory the lab's TFTP server serves for this machine.
        dir: PathBuf,
        /// File name of the iPXE script the machine's DHCP `bootfile` points at.
        #[serde(default = "default_ipxe")]
        ipxe_script: String,
        /// Host part of the TFTP URL in the script; default `${next-server}` (iPXE fills it in).
        #[serde(default = "default_tftp_server")]
        server: String,
    },
    /// A command template that writes the image (USB/SD mux, a flashing tool, ...).
    Command {
        /// The command.
        command: String,
    },
}

fn default_ipxe() -> String {
    "boot.ipxe".into()
}
fn default_tftp_server() -> String {
    "${next-server}".into()
}

impl Board {
    /// Reads and validates one profile. The board name must equal the file stem.
    pub fn load(path: &Path) -> Result<Board, BoardError> {
        match read_limited(path, MAX_PROFILE_BYTES) {
            Ok(source) => Board::parse(&source),
            Err(ReadError::Io(e)) => Err(BoardError::Read {
                path: path.into(),
                source: e,
            }),
            Err(ReadError::TooLarge(f)) => Err(BoardError::Invalid(vec![f])),
        }
    }

    /// Parses and validates profile text.
    pub fn parse(source: &SourceText) -> Result<Board, BoardError> {
        decode(source, |b: &Board, f| b.validate(source, f)).map_err(BoardError::Invalid)
    }

    fn validate(&self, source: &SourceText, f: &mut Findings<'_>) {
        if self.schema != BOARD_SCHEMA {
            f.add(
                &key_path!["schema"],
                format!("schema {} is not supported", self.schema),
                format!("{BOARD_SCHEMA}"),
            );
        }
        let stem = source
            .path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("");
        if !is_simple_name(&self.name, MAX_NAME) {
            f.add(
                &key_path!["name"],
                format!("`{}` is not a valid board name", self.name),
                format!("[a-z0-9-], 1 to {MAX_NAME} bytes"),
            );
        } else if !stem.is_empty() && stem != self.name {
            f.add(
                &key_path!["name"],
                format!(
                    "board is named `{}` but the file is `{stem}.toml`",
                    self.name
                ),
                format!("name = \"{stem}\""),
            );
        }
        if self.description.trim().is_empty() {
            f.add(
                &key_path!["description"],
                "description is empty",
                "one line saying what the machine is",
            );
        }
        if !(0.1..=100.0).contains(&self.timeout_scale) {
            f.add(
                &key_path!["timeout_scale"],
                format!("{} is out of range", self.timeout_scale),
                "a number from 0.1 to 100",
            );
        }
        for (key, v) in [
            ("boot_s", self.timeouts.boot_s),
            ("silence_s", self.timeouts.silence_s),
            ("exit_s", self.timeouts.exit_s),
        ] {
            if !(0.1..=3600.0).contains(&v) {
                f.add(
                    &key_path!["timeouts", key],
                    format!("{v} seconds is out of range"),
                    "0.1 to 3600 seconds",
                );
            }
        }
        for (i, word) in self.cmdline.iter().enumerate() {
            if word.is_empty()
                || word.bytes().any(|b| !(0x21..0x7f).contains(&b))
                || word.starts_with("brainix.nonce")
            {
                f.add(
                    &key_path!["cmdline", i],
                    format!(
                        "`{}` is not a usable command-line word",
                        word.escape_debug()
                    ),
                    "printable ASCII without spaces; `brainix.nonce` is the runner's",
                );
            }
        }
        for (i, feat) in self.requires.iter().enumerate() {
            if !is_simple_name(feat, MAX_NAME) {
                f.add(
                    &key_path!["requires", i],
                    format!("`{feat}` is not a feature name"),
                    "[a-z0-9-] feature names from test-plans/features.toml",
                );
            }
        }
        self.validate_devices(f);
        self.validate_expectation(f);
        match (self.kind, &self.qemu, &self.physical) {
            (BoardKind::Qemu, Some(q), None) => q.validate(f),
            (BoardKind::Physical, None, Some(p)) => p.validate(f),
            (BoardKind::Qemu, _, _) => f.add(
                &key_path!["kind"],
                "kind = \"qemu\" needs a [qemu] table and no [physical] table",
                "a [qemu] table",
            ),
            (BoardKind::Physical, _, _) => f.add(
                &key_path!["kind"],
                "kind = \"physical\" needs a [physical] table and no [qemu] table",
                "[physical.console], [physical.power], [physical.image]",
            ),
        }
    }

    fn validate_devices(&self, f: &mut Findings<'_>) {
        let mut names = BTreeSet::new();
        let mut servers = BTreeSet::new();
        for (i, d) in self.devices.iter().enumerate() {
            for (key, v) in [
                ("name", &d.name),
                ("model", &d.model),
                ("server", &d.server),
            ] {
                if !is_simple_name(v, MAX_NAME) {
                    f.add(
                        &key_path!["device", i, key],
                        format!("`{v}` is not a valid {key}"),
                        format!("[a-z0-9-], 1 to {MAX_NAME} bytes"),
                    );
                }
            }
            if !names.insert(d.name.as_str()) {
                f.add(
                    &key_path!["device", i, "name"],
                    format!("device `{}` is listed twice", d.name),
                    "unique device names",
                );
            }
            if !servers.insert(d.server.as_str()) {
                f.add(
                    &key_path!["device", i, "server"],
                    format!("server `{}` already serves another device", d.server),
                    "one server per device",
                );
            }
            if d.qemu_device.is_some() && self.kind == BoardKind::Physical {
                f.add(
                    &key_path!["device", i, "qemu_device"],
                    "qemu_device on a physical board",
                    "no qemu_device",
                );
            }
            if let Some(q) = &d.qemu_device
                && (q.is_empty() || q.starts_with('-') || q.chars().any(char::is_whitespace))
            {
                f.add(
                    &key_path!["device", i, "qemu_device"],
                    format!("`{q}` is not a -device argument"),
                    "a QEMU -device value such as `virtio-rng-pci`",
                );
            }
        }
        if self.devices.is_empty() {
            f.add(
                &key_path!["device"],
                "the board lists no devices",
                "at least the console device, each with its server",
            );
        }
    }

    fn validate_expectation(&self, f: &mut Findings<'_>) {
        let e = &self.expect;
        match e.outcome {
            Outcome::Refuse => {
                if e.exit_status.is_none() && self.kind == BoardKind::Qemu {
                    f.add(
                        &key_path!["expect"],
                        "outcome = \"refuse\" without exit_status",
                        "the QEMU status of the refusal, e.g. exit_status = 35",
                    );
                }
                if e.console_line
                    .as_deref()
                    .is_none_or(|s| s.trim().is_empty())
                {
                    f.add(
                        &key_path!["expect"],
                        "outcome = \"refuse\" without console_line",
                        "text of the kernel's refusal line, e.g. console_line = \"RDRAND\"",
                    );
                }
            }
            Outcome::Finish => {
                if e.exit_status.is_some() {
                    f.add(&key_path!["expect", "exit_status"], "exit_status with outcome = \"finish\"", "no exit_status: a finished boot exits with status 33 (serial-protocol.md §4)");
                }
            }
        }
        if let Some(s) = e.exit_status
            && !(0..=255).contains(&s)
        {
            f.add(
                &key_path!["expect", "exit_status"],
                format!("{s} is not a process exit status"),
                "0 to 255",
            );
        }
    }

    /// Scaled boot timeout.
    pub fn boot_timeout(&self) -> Duration {
        self.scaled(self.timeouts.boot_s)
    }

    /// Scaled silence timeout.
    pub fn silence_timeout(&self) -> Duration {
        self.scaled(self.timeouts.silence_s)
    }

    /// Scaled timeout for the machine to exit after `END`.
    pub fn exit_timeout(&self) -> Duration {
        self.scaled(self.timeouts.exit_s)
    }

    /// `seconds` times the board's scale.
    pub fn scaled(&self, seconds: f64) -> Duration {
        Duration::from_secs_f64((seconds * self.timeout_scale).clamp(0.0, 86_400.0))
    }

    /// True when the board has a way to report the kernel's exit code (QEMU `isa-debug-exit`).
    pub fn has_exit_channel(&self) -> bool {
        self.qemu.as_ref().is_some_and(|q| q.debug_exit)
    }
}

impl QemuBoard {
    fn validate(&self, f: &mut Findings<'_>) {
        if !QEMU_MACHINES.contains(&self.machine.as_str()) {
            f.add(
                &key_path!["qemu", "machine"],
                format!("machine `{}` is not supported", self.machine),
                QEMU_MACHINES.join(", "),
            );
        }
        if self.cpu.is_empty()
            || !self
                .cpu
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            f.add(
                &key_path!["qemu", "cpu"],
                format!("`{}` is not a CPU model name", self.cpu),
                "a QEMU -cpu model such as `max` or `Skylake-Server`",
            );
        }
        for (i, flag) in self.cpu_flags.iter().enumerate() {
            let ok = flag.len() > 1
                && (flag.starts_with('+') || flag.starts_with('-'))
                && flag[1..]
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
            if !ok {
                f.add(
                    &key_path!["qemu", "cpu_flags", i],
                    format!("`{flag}` is not a CPU flag"),
                    "`+name` or `-name`, e.g. \"-rdrand\"",
                );
            }
        }
        if !(32..=65_536).contains(&self.memory_mib) {
            f.add(
                &key_path!["qemu", "memory_mib"],
                format!("{} MiB is out of range", self.memory_mib),
                "32 to 65536 MiB",
            );
        }
        if !(1..=64).contains(&self.smp) {
            f.add(
                &key_path!["qemu", "smp"],
                format!("{} CPUs is out of range", self.smp),
                "1 to 64",
            );
        }
        match (self.firmware, &self.ovmf) {
            (Firmware::Ovmf, None) => f.add(
                &key_path!["qemu", "firmware"],
                "firmware = \"ovmf\" without [qemu.ovmf]",
                "[qemu.ovmf] with code and vars paths",
            ),
            (Firmware::Pvh, Some(_)) => f.add(
                &key_path!["qemu", "ovmf"],
                "[qemu.ovmf] with firmware = \"pvh\"",
                "no [qemu.ovmf], or firmware = \"ovmf\"",
            ),
            _ => {}
        }
        if self.firmware == Firmware::Ovmf && self.machine == "microvm" {
            f.add(
                &key_path!["qemu", "firmware"],
                "microvm has no pflash for OVMF",
                "firmware = \"pvh\" on microvm",
            );
        }
        if self.tpm != Tpm::None && self.machine == "microvm" {
            f.add(
                &key_path!["qemu", "tpm"],
                "microvm has no bus for a TPM",
                "tpm = \"none\" on microvm",
            );
        }
    }
}

impl PhysicalBoard {
    fn validate(&self, f: &mut Findings<'_>) {
        match &self.console {
            ConsoleMethod::Serial {
                device,
                baud,
                tx_char_delay_ms,
            } => {
                if !device.is_absolute() {
                    f.add(
                        &key_path!["physical", "console", "device"],
                        format!("`{}` is not an absolute device path", device.display()),
                        "e.g. /dev/ttyUSB0",
                    );
                }
                if !(300..=4_000_000).contains(baud) {
                    f.add(
                        &key_path!["physical", "console", "baud"],
                        format!("{baud} baud is out of range"),
                        "300 to 4000000",
                    );
                }
                check_delay(f, *tx_char_delay_ms);
            }
            ConsoleMethod::Tcp {
                address,
                tx_char_delay_ms,
                ..
            } => {
                if address
                    .rsplit_once(':')
                    .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
                {
                    f.add(
                        &key_path!["physical", "console", "address"],
                        format!("`{address}` is not host:port"),
                        "e.g. ser2net.lab:3001",
                    );
                }
                check_delay(f, *tx_char_delay_ms);
            }
        }
        match &self.power {
            PowerMethod::Command { on, off, .. } => {
                check_template(f, &["physical", "power", "on"], on);
                check_template(f, &["physical", "power", "off"], off);
            }
            PowerMethod::Pdudaemon { url, hostname, .. } => {
                if crate::backend::physical::parse_http_url(url).is_none() {
                    f.add(
                        &key_path!["physical", "power", "url"],
                        format!("`{url}` is not a plain http://host:port URL"),
                        "e.g. http://pdu.lab:16421",
                    );
                }
                if hostname.is_empty() {
                    f.add(
                        &key_path!["physical", "power", "hostname"],
                        "empty PDU hostname",
                        "the PDU name configured in pdudaemon",
                    );
                }
            }
        }
        match &self.image {
            ImageMethod::Tftp {
                dir,
                ipxe_script,
                server,
            } => {
                if !dir.is_absolute() {
                    f.add(
                        &key_path!["physical", "image", "dir"],
                        format!("`{}` is not absolute", dir.display()),
                        "an absolute TFTP directory",
                    );
                }
                if ipxe_script.is_empty() || ipxe_script.contains('/') {
                    f.add(
                        &key_path!["physical", "image", "ipxe_script"],
                        format!("`{ipxe_script}` is not a file name"),
                        "a file name inside dir, e.g. boot.ipxe",
                    );
                }
                if server.is_empty() || server.chars().any(char::is_whitespace) {
                    f.add(
                        &key_path!["physical", "image", "server"],
                        format!("`{server}` is not a host"),
                        "a host name, address or ${next-server}",
                    );
                }
            }
            ImageMethod::Command { command } => {
                check_template(f, &["physical", "image", "command"], command)
            }
        }
    }
}

fn check_delay(f: &mut Findings<'_>, ms: u64) {
    if ms > 1000 {
        f.add(
            &key_path!["physical", "console", "tx_char_delay_ms"],
            format!("{ms} ms per character is out of range"),
            "0 to 1000 ms",
        );
    }
}

fn check_template(f: &mut Findings<'_>, path: &[&str], text: &str) {
    if let Err(e) = Template::parse(text) {
        let keys: Vec<Key> = path.iter().map(|k| Key::from(*k)).collect();
        let names: Vec<&str> = crate::template::PLACEHOLDERS
            .iter()
            .map(|(p, _)| *p)
            .collect();
        f.add(
            &keys,
            format!("command template: {e}"),
            format!(
                "a command with placeholders among {{{}}}",
                names.join("}, {")
            ),
        );
    }
}

/// Loads every `*.toml` in `dir`, sorted by name. Returns the boards that loaded and, per failing
/// file, its error; one bad file does not hide the others.
pub fn load_dir(dir: &Path) -> (Vec<Board>, Vec<BoardError>) {
    let mut boards = Vec::new();
    let mut errors = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errors.push(BoardError::Read {
                path: dir.into(),
                source: e,
            });
            return (boards, errors);
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    for p in paths {
        match Board::load(&p) {
            Ok(b) => boards.push(b),
            Err(e) => errors.push(e),
        }
    }
    (boards, errors)
}

/// Loads the board called `name` from `dir`.
pub fn load_named(dir: &Path, name: &str) -> Result<Board, BoardError> {
    let path = dir.join(format!("{name}.toml"));
    if !is_simple_name(name, MAX_NAME) || !path.is_file() {
        let (boards, _) = load_dir(dir);
        let available = boards
            .iter()
            .map(|b| b.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(BoardError::Unknown {
            name: name.into(),
            dir: dir.into(),
            available,
        });
    }
    Board::load(&path)
}

/// A board shipped in `boards/`, for unit tests elsewhere in the crate.
#[cfg(test)]
pub(crate) fn shipped(name: &str) -> Board {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../boards")
        .join(format!("{name}.toml"));
    Board::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
schema = 1
name = "t"
description = "test board"
kind = "qemu"

[qemu]
machine = "q35"
cpu = "max"
cpu_flags = ["-rdrand"]
memory_mib = 128

[[device]]
name = "com1"
model = "uart-16550"
server = "uart"
"#;

    fn parse(text: &str) -> Result<Board, BoardError> {
        Board::parse(&SourceText::new("boards/t.toml", text))
    }

    fn findings(text: &str) -> Vec<Finding> {
        match parse(text) {
            Err(BoardError::Invalid(f)) => f,
            other => panic!("expected findings, got {other:?}"),
        }
    }

    #[test]
    fn good_profile_loads_with_defaults() {
        let b = parse(GOOD).unwrap();
        assert_eq!(b.qemu.as_ref().unwrap().smp, 1);
        assert_eq!(b.boot_timeout(), Duration::from_secs(30));
        assert!(b.has_exit_channel());
    }

    #[test]
    fn semantic_error_names_line_problem_and_expectation() {
        let f = findings(&GOOD.replace("memory_mib = 128", "memory_mib = 4"));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].location.line, 11);
        assert!(f[0].problem.contains("qemu.memory_mib"), "{}", f[0]);
        assert_eq!(f[0].expected, "32 to 65536 MiB");
        assert!(
            f[0].to_string().starts_with("boards/t.toml:11:"),
            "{}",
            f[0]
        );
    }

    #[test]
    fn unknown_key_is_reported_at_its_line() {
        let f = findings(&GOOD.replace("cpu = \"max\"", "cpu = \"max\"\nmemroy_mib = 3"));
        assert_eq!(f[0].location.line, 10, "{}", f[0]);
        assert!(f[0].problem.contains("memroy_mib"), "{}", f[0]);
    }

    #[test]
    fn wrong_type_and_syntax_errors_have_lines() {
        let f = findings(&GOOD.replace("memory_mib = 128", "memory_mib = \"lots\""));
        assert_eq!(f[0].location.line, 11, "{}", f[0]);
        let f = findings(&GOOD.replace("[qemu]", "[qemu"));
        assert_eq!(f[0].location.line, 7, "{}", f[0]);
    }

    #[test]
    fn one_server_per_device_is_enforced() {
        let extra = "\n[[device]]\nname = \"com2\"\nmodel = \"uart-16550\"\nserver = \"uart\"\n";
        let f = findings(&format!("{GOOD}{extra}"));
        assert!(
            f.iter()
                .any(|x| x.problem.contains("already serves") && x.location.line == 21),
            "{f:?}"
        );
    }

    #[test]
    fn name_must_match_file() {
        let f = findings(&GOOD.replace("name = \"t\"", "name = \"other\""));
        assert!(f[0].problem.contains("file is `t.toml`"), "{}", f[0]);
    }

    #[test]
    fn refusal_needs_status_and_line() {
        let f = findings(&format!("{GOOD}\n[expect]\noutcome = \"refuse\"\n"));
        assert_eq!(f.len(), 2, "{f:?}");
    }

    #[test]
    fn kind_and_sections_must_agree() {
        let f = findings(&GOOD.replace("kind = \"qemu\"", "kind = \"physical\""));
        assert!(
            f.iter()
                .any(|x| x.problem.contains("needs a [physical] table")),
            "{f:?}"
        );
    }

    #[test]
    fn bad_physical_templates_are_refused() {
        let text = r#"
schema = 1
name = "t"
description = "metal"
kind = "physical"
[physical.console]
kind = "serial"
device = "/dev/ttyUSB0"
[physical.power]
kind = "command"
on = "ipmitool power {acton}"
off = "ipmitool power off"
[physical.image]
kind = "tftp"
dir = "/srv/tftp"
[[device]]
name = "com1"
model = "uart-16550"
server = "uart"
"#;
        let f = findings(text);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].location.line, 11);
        assert!(f[0].problem.contains("{acton}"));
    }

    #[test]
    fn arbitrary_garbage_never_panics() {
        // A crude fuzz: every prefix of a good file, and byte noise, must give Ok or findings.
        for cut in 0..GOOD.len() {
            if GOOD.is_char_boundary(cut) {
                let _ = parse(&GOOD[..cut]);
            }
        }
        let mut x: u32 = 12345;
        for _ in 0..500 {
            let mut s = String::new();
            for _ in 0..64 {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                s.push(b"[]=\"'\n.abc123{},#-_ "[(x >> 16) as usize % 20] as char);
            }
            let _ = parse(&s);
        }
    }
}
