//! Test plans (`test-plans/*.toml`): which checks prove an invariant, how each runs, what counts
//! as its pass, and the feature registry (`test-plans/features.toml`) that says which checks can run
//! on an image at all.
//!
//! A check whose kernel feature is not in the image is *listed* and reported SKIP with the issue
//! that will build it. It is never silently dropped and never PASS.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::key_path;
use crate::source::{
    Finding, Findings, ReadError, SourceText, decode, is_simple_name, read_limited, render_findings,
};

/// The only plan schema version this runner reads.
pub const PLAN_SCHEMA: u32 = 1;

/// Invariants a plan may prove, from the design contract, plus `SMOKE` for the quick health plan.
pub const INVARIANTS: &[&str] = &[
    "INV-AUTH",
    "INV-MEM",
    "INV-IPC",
    "INV-BOOT",
    "INV-AUDIT",
    "INV-ASSIST",
    "SMOKE",
];

/// Longest check id; the same limit as the serial protocol's `[a-z0-9.-]{1,48}`.
pub const MAX_CHECK_ID: usize = 48;

/// Longest timeout a single check may ask for, in seconds. A check that needs longer is a
/// benchmark, not a check.
pub const MAX_CHECK_TIMEOUT_S: f64 = 600.0;

/// Largest plan file; real plans are a few KiB.
pub const MAX_PLAN_BYTES: u64 = 256 * 1024;

/// The file in the plans directory that is the feature registry, not a plan.
pub const FEATURES_FILE: &str = "features.toml";

/// Static analyses of built artefacts the runner implements (see [`crate::artefact`]).
pub const ANALYSES: &[&str] = &[
    "elf-wx-segments",
    "elf-no-heap-symbols",
    "elf-pvh-note",
    "elf-multiboot-header",
    "elf-embedded-wx",
    "elf-fixed-layout",
    "no-private-keys",
    "ed25519-signature",
];

/// Why a plan or the feature registry could not be loaded.
#[derive(Debug, Error)]
pub enum PlanError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is wrong; every problem found is listed.
    #[error("{}", render_findings(.0))]
    Invalid(Vec<Finding>),
    /// No plan by that name.
    #[error("no test plan `{name}` in {dir} (available: {available}, or `all`)")]
    Unknown {
        /// Requested name.
        name: String,
        /// Where it was looked for.
        dir: PathBuf,
        /// What exists.
        available: String,
    },
}

/// What runs for a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum CheckKind {
    /// A kernel built-in check reported through a `RESULT` frame.
    Frame,
    /// A field of the boot's `BRAINIX-BOOT-REPORT` line.
    BootReport,
    /// How the boot ended (QEMU exit status, refusal line).
    Exit,
    /// A host-side analysis of the built image; no boot.
    Static,
    /// A command typed on the target console; the target answers with a `RESULT` frame.
    Console,
    /// A test program in the image; it reports through a `RESULT` frame.
    Program,
    /// The PCRs the boot left in the board's TPM, read by the runner from the host after the
    /// machine stopped, against what the published release and this boot predict.
    Pcr,
}

/// Which image a check boots.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum ImageKind {
    /// `brainix-kernel.elf`.
    #[default]
    Release,
    /// `brainix-kernel-test.elf`, which honours `brainix.test=<scenario>`.
    Test,
    /// `brainix-kernel-multiboot.elf`: the release kernel with a multiboot v1 header, for
    /// PXE/iPXE and other multiboot loaders.
    Multiboot,
}

impl ImageKind {
    /// File name in the image directory.
    pub fn file_name(self) -> &'static str {
        match self {
            ImageKind::Release => "brainix-kernel.elf",
            ImageKind::Test => "brainix-kernel-test.elf",
            ImageKind::Multiboot => "brainix-kernel-multiboot.elf",
        }
    }
}

/// One check as written in a plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// Unique in its plan; `[a-z0-9.-]{1,48}`.
    pub id: String,
    /// One line for people: what the check proves.
    pub title: String,
    /// What runs.
    pub kind: CheckKind,
    /// Seconds the check may take once its boot has announced its plan (scaled by the board).
    #[serde(default = "default_timeout")]
    pub timeout_s: f64,
    /// The check must have a boot of its own (nothing ran before it on that machine).
    #[serde(default)]
    pub fresh_boot: bool,
    /// Which image.
    #[serde(default)]
    pub image: ImageKind,
    /// Test image scenario (`brainix.test=`); requires `image = "test"` and `fresh_boot = true`.
    pub scenario: Option<String>,
    /// Kernel features that must be in the image; otherwise SKIP naming the feature's issue.
    #[serde(default)]
    pub requires: Vec<String>,
    /// frame/console/program: the target's check id whose `RESULT` must be `PASS` (default: `id`).
    pub result: Option<String>,
    /// boot-report: the key in `BRAINIX-BOOT-REPORT`.
    pub field: Option<String>,
    /// boot-report: the value must equal this.
    pub equals: Option<String>,
    /// boot-report: the comma list value must contain all of these.
    pub contains_all: Option<Vec<String>>,
    /// exit: the QEMU status required; absent means "what the board expects".
    pub exit_status: Option<i32>,
    /// exit: text a console line must contain.
    pub console_line: Option<String>,
    /// static: which analysis, one of [`ANALYSES`].
    pub analysis: Option<String>,
    /// console: the command line typed on the target console.
    pub command: Option<String>,
    /// program: the test program's name in the image.
    pub program: Option<String>,
    /// pcr: which PCRs of the SHA-256 bank (1 to 8 of 0..=23).
    pub pcrs: Option<Vec<u32>>,
}

fn default_timeout() -> f64 {
    10.0
}

impl Check {
    /// The target-side result id this check waits for.
    pub fn result_id(&self) -> &str {
        self.result.as_deref().unwrap_or(&self.id)
    }

    /// True when the check needs a boot (everything except static analyses).
    pub fn needs_boot(&self) -> bool {
        self.kind != CheckKind::Static
    }

    /// True when the check needs the system running, not only the kernel's boot checks: it
    /// types on the console, runs a program, or waits for a result a process reports.
    pub fn needs_system(&self) -> bool {
        matches!(self.kind, CheckKind::Console | CheckKind::Program)
            || self.requires.iter().any(|r| r == "userspace")
    }

    /// The line typed on the target console for this check: the command, or `start <program>`
    /// (the shell asks the supervisor to start the program's process).
    pub fn typed_line(&self) -> Option<String> {
        match self.kind {
            CheckKind::Console => self.command.clone(),
            CheckKind::Program => self.program.as_ref().map(|p| format!("start {p}")),
            _ => None,
        }
    }
}

/// A validated plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Must be [`PLAN_SCHEMA`].
    pub schema: u32,
    /// Equals the file stem.
    pub name: String,
    /// Which invariant this plan proves: one of [`INVARIANTS`].
    pub invariant: String,
    /// One line for people.
    pub title: String,
    /// The checks, in report order.
    #[serde(rename = "check", default)]
    pub checks: Vec<Check>,
}

/// True when `s` is a protocol check id: `[a-z0-9.-]{1,48}`.
pub fn is_check_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_CHECK_ID
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
}

fn read(path: &Path) -> Result<SourceText, PlanError> {
    read_limited(path, MAX_PLAN_BYTES).map_err(|e| match e {
        ReadError::Io(e) => PlanError::Read {
            path: path.into(),
            source: e,
        },
        ReadError::TooLarge(f) => PlanError::Invalid(vec![f]),
    })
}

impl Plan {
    /// Reads and validates a plan file against the feature registry.
    pub fn load(path: &Path, features: &FeatureRegistry) -> Result<Plan, PlanError> {
        Plan::parse(&read(path)?, features)
    }

    /// Parses and validates plan text.
    pub fn parse(source: &SourceText, features: &FeatureRegistry) -> Result<Plan, PlanError> {
        decode(source, |p: &Plan, f| p.validate(source, features, f)).map_err(PlanError::Invalid)
    }

    fn validate(&self, source: &SourceText, features: &FeatureRegistry, f: &mut Findings<'_>) {
        if self.schema != PLAN_SCHEMA {
            f.add(
                &key_path!["schema"],
                format!("schema {} is not supported", self.schema),
                format!("{PLAN_SCHEMA}"),
            );
        }
        let stem = source
            .path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("");
        if !is_simple_name(&self.name, MAX_CHECK_ID) {
            f.add(
                &key_path!["name"],
                format!("`{}` is not a plan name", self.name),
                "[a-z0-9-]",
            );
        } else if !stem.is_empty() && stem != self.name {
            f.add(
                &key_path!["name"],
                format!(
                    "plan is named `{}` but the file is `{stem}.toml`",
                    self.name
                ),
                format!("name = \"{stem}\""),
            );
        }
        if !INVARIANTS.contains(&self.invariant.as_str()) {
            f.add(
                &key_path!["invariant"],
                format!("`{}` is not an invariant", self.invariant),
                INVARIANTS.join(", "),
            );
        }
        if self.checks.is_empty() {
            f.add(
                &key_path!["check"],
                "the plan has no checks",
                "at least one [[check]]",
            );
        }
        let mut ids = BTreeSet::new();
        for (i, c) in self.checks.iter().enumerate() {
            validate_check(i, c, features, f);
            if !ids.insert(c.id.as_str()) {
                f.add(
                    &key_path!["check", i, "id"],
                    format!("check `{}` appears twice", c.id),
                    "unique check ids in a plan",
                );
            }
        }
    }
}

fn validate_check(i: usize, c: &Check, features: &FeatureRegistry, f: &mut Findings<'_>) {
    let at = |k: &str| key_path!["check", i, k];
    if !is_check_id(&c.id) {
        f.add(
            &at("id"),
            format!("`{}` is not a check id", c.id.escape_debug()),
            "[a-z0-9.-], 1 to 48 bytes",
        );
    }
    if c.title.trim().is_empty() {
        f.add(
            &at("title"),
            "empty title",
            "one line saying what the check proves",
        );
    }
    if !(0.1..=MAX_CHECK_TIMEOUT_S).contains(&c.timeout_s) {
        f.add(
            &at("timeout_s"),
            format!("{} seconds is out of range", c.timeout_s),
            format!("0.1 to {MAX_CHECK_TIMEOUT_S}"),
        );
    }
    for (j, feat) in c.requires.iter().enumerate() {
        if !features.contains(feat) {
            f.add(
                &key_path!["check", i, "requires", j],
                format!("feature `{feat}` is not in {FEATURES_FILE}"),
                format!("one of: {}", features.names().join(", ")),
            );
        }
    }
    match (&c.scenario, c.image, c.fresh_boot) {
        (Some(s), ImageKind::Test, true) => {
            if !is_simple_name(s, MAX_CHECK_ID) {
                f.add(
                    &at("scenario"),
                    format!("`{s}` is not a scenario name"),
                    "[a-z0-9-]",
                );
            }
        }
        (Some(_), ImageKind::Release | ImageKind::Multiboot, _) => f.add(
            &at("scenario"),
            "a scenario on the release image",
            "image = \"test\" (only the test image honours brainix.test=)",
        ),
        (Some(_), ImageKind::Test, false) => f.add(
            &at("fresh_boot"),
            "a scenario check that shares its boot",
            "fresh_boot = true: a scenario changes what the boot does",
        ),
        (None, _, _) => {}
    }
    // Which optional keys belong to which kind; anything else set is a mistake worth naming.
    let set: Vec<(&str, bool)> = vec![
        ("result", c.result.is_some()),
        ("field", c.field.is_some()),
        ("equals", c.equals.is_some()),
        ("contains_all", c.contains_all.is_some()),
        ("exit_status", c.exit_status.is_some()),
        ("console_line", c.console_line.is_some()),
        ("analysis", c.analysis.is_some()),
        ("command", c.command.is_some()),
        ("program", c.program.is_some()),
        ("pcrs", c.pcrs.is_some()),
    ];
    let (allowed, required): (&[&str], &[&str]) = match c.kind {
        CheckKind::Frame => (&["result"], &[]),
        CheckKind::BootReport => (&["field", "equals", "contains_all"], &["field"]),
        CheckKind::Exit => (&["exit_status", "console_line"], &[]),
        CheckKind::Static => (&["analysis"], &["analysis"]),
        CheckKind::Console => (&["command", "result"], &["command"]),
        CheckKind::Program => (&["program", "result"], &["program"]),
        CheckKind::Pcr => (&["pcrs"], &["pcrs"]),
    };
    if let Some(p) = &c.pcrs
        && (p.is_empty() || p.len() > 8 || p.iter().any(|n| *n > 23))
    {
        f.add(
            &at("pcrs"),
            format!("PCR list {p:?}"),
            "1 to 8 PCR numbers from 0 to 23 (one TPM2_PCR_Read)",
        );
    }
    let kind = serde_json::to_string(&c.kind).unwrap_or_default();
    for (key, is_set) in &set {
        if *is_set && !allowed.contains(key) {
            f.add(
                &at(key),
                format!("`{key}` does not apply to kind = {kind}"),
                format!(
                    "only {} for this kind",
                    if allowed.is_empty() {
                        "none".into()
                    } else {
                        allowed.join(", ")
                    }
                ),
            );
        }
    }
    for key in required {
        if !set.iter().any(|(k, s)| k == key && *s) {
            f.add(
                &at("kind"),
                format!("kind = {kind} without `{key}`"),
                format!("`{key}` on this check"),
            );
        }
    }
    if c.kind == CheckKind::BootReport && c.equals.is_some() == c.contains_all.is_some() {
        f.add(
            &at("kind"),
            "a boot-report check needs exactly one of `equals` and `contains_all`",
            "equals = \"...\" or contains_all = [...]",
        );
    }
    if let Some(a) = &c.analysis
        && !ANALYSES.contains(&a.as_str())
    {
        f.add(
            &at("analysis"),
            format!("unknown analysis `{a}`"),
            ANALYSES.join(", "),
        );
    }
    if let Some(r) = &c.result
        && !is_check_id(r)
    {
        f.add(
            &at("result"),
            format!("`{r}` is not a protocol check id"),
            "[a-z0-9.-], 1 to 48 bytes",
        );
    }
    if c.kind == CheckKind::Static && (c.fresh_boot || c.scenario.is_some()) {
        f.add(
            &at("fresh_boot"),
            "a static check does not boot",
            "no fresh_boot or scenario on kind = \"static\"",
        );
    }
    if let Some(s) = c.exit_status
        && !(0..=255).contains(&s)
    {
        f.add(
            &at("exit_status"),
            format!("{s} is not a process status"),
            "0 to 255",
        );
    }
    if c.kind == CheckKind::Console
        && let Some(cmd) = &c.command
        && (cmd.is_empty() || cmd.bytes().any(|b| !(0x20..0x7f).contains(&b)))
    {
        f.add(
            &at("command"),
            "console command is empty or has control characters",
            "printable ASCII typed as one line",
        );
    }
    if c.kind == CheckKind::Program
        && let Some(p) = &c.program
        && (p.is_empty()
            || p.len() > 32
            || !p
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    {
        f.add(
            &at("program"),
            format!("program name {p:?} cannot name a process in the image"),
            "1 to 32 letters, digits, '-' or '_' (a process name in the system manifest)",
        );
    }
}

/// A kernel feature a check may need, and how the runner tells whether an image has it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Feature {
    /// `[a-z0-9-]` name used in `requires`.
    pub name: String,
    /// The issue that builds it; quoted in SKIP reasons.
    pub issue: String,
    /// Present when the image's ELF symbol table has this symbol.
    pub symbol: Option<String>,
    /// Present when this file exists in the image directory.
    pub file: Option<String>,
}

/// `test-plans/features.toml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureRegistry {
    /// Must be [`PLAN_SCHEMA`].
    #[serde(default = "plan_schema")]
    pub schema: u32,
    /// Known features.
    #[serde(rename = "feature", default)]
    pub features: Vec<Feature>,
}

fn plan_schema() -> u32 {
    PLAN_SCHEMA
}

impl FeatureRegistry {
    /// Reads and validates the registry.
    pub fn load(path: &Path) -> Result<Self, PlanError> {
        Self::parse(&read(path)?)
    }

    /// Parses and validates registry text.
    pub fn parse(source: &SourceText) -> Result<Self, PlanError> {
        decode(source, |reg: &FeatureRegistry, f| reg.validate(f)).map_err(PlanError::Invalid)
    }

    fn validate(&self, f: &mut Findings<'_>) {
        let reg = self;
        if reg.schema != PLAN_SCHEMA {
            f.add(
                &key_path!["schema"],
                format!("schema {} is not supported", reg.schema),
                format!("{PLAN_SCHEMA}"),
            );
        }
        let mut seen = BTreeSet::new();
        for (i, feat) in reg.features.iter().enumerate() {
            if !is_simple_name(&feat.name, MAX_CHECK_ID) || !seen.insert(feat.name.as_str()) {
                f.add(
                    &key_path!["feature", i, "name"],
                    format!("`{}` is not a new feature name", feat.name),
                    "unique [a-z0-9-] names",
                );
            }
            if feat.issue.trim().is_empty() {
                f.add(
                    &key_path!["feature", i, "issue"],
                    "empty issue",
                    "the issue that builds the feature",
                );
            }
            if feat.symbol.is_some() == feat.file.is_some() {
                f.add(
                    &key_path!["feature", i],
                    "a feature needs exactly one detection method",
                    "symbol = \"...\" or file = \"...\"",
                );
            }
            if let Some(file) = &feat.file
                && (file.is_empty() || file.contains('/'))
            {
                f.add(
                    &key_path!["feature", i, "file"],
                    format!("`{file}` is not a file name"),
                    "a file name in the image directory",
                );
            }
        }
    }

    /// True when `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.features.iter().any(|f| f.name == name)
    }

    /// The feature called `name`.
    pub fn get(&self, name: &str) -> Option<&Feature> {
        self.features.iter().find(|f| f.name == name)
    }

    /// All names, for messages.
    pub fn names(&self) -> Vec<&str> {
        self.features.iter().map(|f| f.name.as_str()).collect()
    }
}

/// Loads the feature registry and every plan in `dir`. Errors from all files are collected.
pub fn load_dir(dir: &Path) -> (FeatureRegistry, Vec<Plan>, Vec<PlanError>) {
    let mut errors = Vec::new();
    let features = match FeatureRegistry::load(&dir.join(FEATURES_FILE)) {
        Ok(r) => r,
        Err(e) => {
            errors.push(e);
            FeatureRegistry::default()
        }
    };
    let mut plans = Vec::new();
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
        Err(e) => {
            errors.push(PlanError::Read {
                path: dir.into(),
                source: e,
            });
            Vec::new()
        }
    };
    paths.retain(|p| {
        p.extension().is_some_and(|x| x == "toml")
            && p.file_name().is_some_and(|n| n != FEATURES_FILE)
    });
    paths.sort();
    for p in paths {
        match Plan::load(&p, &features) {
            Ok(plan) => plans.push(plan),
            Err(e) => errors.push(e),
        }
    }
    (features, plans, errors)
}

/// Picks plans by name from `all`; `all` (the word) selects every plan. Unknown names are errors.
pub fn select(all: &[Plan], names: &[String], dir: &Path) -> Result<Vec<Plan>, PlanError> {
    if names.is_empty() || names.iter().any(|n| n == "all") {
        return Ok(all.to_vec());
    }
    names
        .iter()
        .map(|n| {
            all.iter()
                .find(|p| &p.name == n)
                .cloned()
                .ok_or_else(|| PlanError::Unknown {
                    name: n.clone(),
                    dir: dir.into(),
                    available: all
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> FeatureRegistry {
        FeatureRegistry::parse(&SourceText::new(
            "features.toml",
            "schema = 1\n[[feature]]\nname = \"shell\"\nissue = \"issue 3\"\nsymbol = \"BRAINIX_FEATURE_SHELL\"\n",
        ))
        .unwrap()
    }

    const GOOD: &str = r#"schema = 1
name = "p"
invariant = "INV-MEM"
title = "memory"

[[check]]
id = "mem.wx"
title = "no W+X page"
kind = "frame"

[[check]]
id = "mem.selfcheck"
title = "self check"
kind = "boot-report"
field = "selfcheck"
equals = "PASS"
"#;

    fn findings(text: &str) -> Vec<Finding> {
        match Plan::parse(&SourceText::new("test-plans/p.toml", text), &registry()) {
            Err(PlanError::Invalid(f)) => f,
            other => panic!("expected findings, got {other:?}"),
        }
    }

    #[test]
    fn good_plan_loads() {
        let p = Plan::parse(&SourceText::new("test-plans/p.toml", GOOD), &registry()).unwrap();
        assert_eq!(p.checks.len(), 2);
        assert_eq!(p.checks[0].result_id(), "mem.wx");
        assert_eq!(p.checks[0].timeout_s, 10.0);
    }

    #[test]
    fn key_of_another_kind_is_named_with_its_line() {
        let f = findings(&GOOD.replace(
            "kind = \"frame\"",
            "kind = \"frame\"\nanalysis = \"elf-wx-segments\"",
        ));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].location.line, 10);
        assert!(f[0].problem.contains("does not apply"), "{}", f[0]);
    }

    #[test]
    fn unknown_feature_and_bad_id_are_refused() {
        let f = findings(
            &GOOD
                .replace(
                    "kind = \"frame\"",
                    "kind = \"frame\"\nrequires = [\"shel\"]",
                )
                .replace("mem.wx", "Mem WX"),
        );
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(
            f.iter()
                .any(|x| x.problem.contains("shel") && x.expected.contains("shell"))
        );
    }

    #[test]
    fn duplicate_ids_and_bad_kind_are_refused() {
        let f = findings(&GOOD.replace("mem.selfcheck", "mem.wx"));
        assert!(
            f.iter()
                .any(|x| x.problem.contains("appears twice") && x.location.line == 12),
            "{f:?}"
        );
        let f = findings(&GOOD.replace("kind = \"frame\"", "kind = \"frames\""));
        assert_eq!(f[0].location.line, 9, "{f:?}");
    }

    #[test]
    fn scenario_needs_test_image_and_fresh_boot() {
        let f = findings(&GOOD.replace(
            "kind = \"frame\"",
            "kind = \"exit\"\nscenario = \"pagefault\"\nimage = \"test\"",
        ));
        assert!(
            f.iter().any(|x| x.problem.contains("shares its boot")),
            "{f:?}"
        );
    }

    #[test]
    fn garbage_never_panics() {
        let reg = registry();
        for cut in 0..GOOD.len() {
            let _ = Plan::parse(&SourceText::new("p.toml", &GOOD[..cut]), &reg);
        }
    }
}
