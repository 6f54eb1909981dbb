//! Runs: from boards and plans to a [`Report`].
//!
//! Planning decides, per board, what each check needs: SKIP (feature not built, board cannot run
//! it), a static analysis of an image, or a boot. Checks that can share a boot share one (same
//! image, no scenario, not `fresh_boot`); the rest get their own. Boots run with bounded
//! parallelism; a physical board runs one boot at a time. A boot that ends in an infrastructure
//! error is retried up to `retries` times; a FAIL is final.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::artefact;
use crate::backend::{physical, qemu};
use crate::board::{Board, BoardKind, ImageMethod, Outcome, Tpm};
use crate::console_log::ConsoleLog;
use crate::plan::{Check, CheckKind, FeatureRegistry, ImageKind, Plan};
use crate::protocol::{ExitMeaning, Nonce};
use crate::report::{BootRecord, CheckResult, Evidence, Report, State};
use crate::session::{self, Ending, Limits, Observation, Script, Step};

/// Run settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// Boots running at once.
    pub jobs: usize,
    /// How many times a boot that ended in ERROR is tried again.
    pub retries: u32,
    /// The whole run's timeout; boots still running then are ERROR.
    pub run_timeout: Duration,
    /// Where logs and reports go.
    pub out_dir: PathBuf,
    /// Where the images are.
    pub image_dir: PathBuf,
    /// Print a line per finished boot to stderr.
    pub progress: bool,
    /// Shard label recorded in the report (`K/N`), if any.
    pub shard: Option<String>,
}

/// A check together with the plan it came from.
#[derive(Debug, Clone)]
struct PlannedCheck {
    plan: String,
    invariant: String,
    check: Check,
}

/// Checks that run in one boot.
#[derive(Debug, Clone)]
struct BootGroup {
    index: usize,
    image: ImageKind,
    scenario: Option<String>,
    checks: Vec<PlannedCheck>,
}

/// Reads which features an image has: ELF symbols `BRAINIX_FEATURE_*` and files in the image dir.
fn features_of(
    image_dir: &Path,
    image: &Path,
    registry: &FeatureRegistry,
) -> Result<BTreeSet<String>, String> {
    let data =
        std::fs::read(image).map_err(|e| format!("cannot read image {}: {e}", image.display()))?;
    let symbols = elf_symbol_names(&data);
    let mut have = BTreeSet::new();
    for f in &registry.features {
        let present = match (&f.symbol, &f.file) {
            (Some(sym), _) => symbols.contains(sym),
            (None, Some(file)) => image_dir.join(file).is_file(),
            (None, None) => false,
        };
        if present {
            have.insert(f.name.clone());
        }
    }
    Ok(have)
}

fn elf_symbol_names(data: &[u8]) -> BTreeSet<String> {
    use object::{Object, ObjectSymbol};
    match object::File::parse(data) {
        Ok(f) => f
            .symbols()
            .filter_map(|s| s.name().ok().map(str::to_owned))
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

/// The image file a board boots for `kind`: PXE boards load the multiboot build of the release
/// image (iPXE starts multiboot ELFs, not PVH).
pub fn image_for(board: &Board, kind: ImageKind) -> ImageKind {
    match (&board.physical, kind) {
        (Some(p), ImageKind::Release) if matches!(p.image, ImageMethod::Tftp { .. }) => {
            ImageKind::Multiboot
        }
        _ => kind,
    }
}

fn result(board: &Board, pc: &PlannedCheck, state: State, reason: String) -> CheckResult {
    CheckResult {
        board: board.name.clone(),
        plan: pc.plan.clone(),
        invariant: pc.invariant.clone(),
        check: pc.check.id.clone(),
        title: pc.check.title.clone(),
        kind: pc.check.kind,
        state,
        reason,
        boot: None,
        attempts: 0,
        duration_ms: 0,
        evidence: Evidence::default(),
    }
}

/// Decides every check's fate on `board` before anything boots: immediate results (SKIP, static
/// verdicts, ERROR for missing images) and the boot groups to run.
fn plan_board(
    board: &Board,
    plans: &[Plan],
    registry: &FeatureRegistry,
    image_dir: &Path,
) -> (Vec<CheckResult>, Vec<BootGroup>) {
    let mut done = Vec::new();
    let mut groups: Vec<BootGroup> = Vec::new();
    let mut feature_cache: BTreeMap<ImageKind, Result<BTreeSet<String>, String>> = BTreeMap::new();
    let refuse = board.expect.outcome == Outcome::Refuse;
    for plan in plans {
        for check in &plan.checks {
            let pc = PlannedCheck {
                plan: plan.name.clone(),
                invariant: plan.invariant.clone(),
                check: check.clone(),
            };
            let kind = image_for(board, check.image);
            let pxe =
                matches!(&board.physical, Some(p) if matches!(p.image, ImageMethod::Tftp { .. }));
            if pxe && kind == ImageKind::Test && check.needs_boot() {
                let reason = format!(
                    "board `{}` boots over PXE, which needs a multiboot image, and the test image has no multiboot build",
                    board.name
                );
                done.push(result(board, &pc, State::Skip, reason));
                continue;
            }
            let image = image_dir.join(kind.file_name());
            let feats = feature_cache
                .entry(kind)
                .or_insert_with(|| features_of(image_dir, &image, registry));
            let feats = match feats {
                Ok(f) => f,
                Err(e) => {
                    done.push(result(
                        board,
                        &pc,
                        State::Error,
                        format!("{e} (build the images with `cargo xtask build`)"),
                    ));
                    continue;
                }
            };
            let mut needs: Vec<&String> = check.requires.iter().collect();
            if check.needs_boot() {
                needs.extend(board.requires.iter());
            }
            if let Some(missing) = needs.iter().find(|n| !feats.contains(n.as_str())) {
                let (issue, marker) = match registry.get(missing) {
                    Some(f) => (
                        f.issue.as_str(),
                        f.symbol.as_ref().map_or_else(
                            || format!("no file `{}` beside it", f.file.as_deref().unwrap_or("")),
                            |s| format!("no `{s}` symbol"),
                        ),
                    ),
                    None => ("an unregistered issue", String::new()),
                };
                let reason = format!(
                    "needs feature `{missing}` ({issue}); {} does not declare it ({marker})",
                    kind.file_name()
                );
                done.push(result(board, &pc, State::Skip, reason));
                continue;
            }
            match check.kind {
                CheckKind::Static => {
                    let analysis = check.analysis.as_deref().unwrap_or("");
                    let (state, reason) = match read_image(&image) {
                        Ok(data) => {
                            let v = artefact::analyse_file(analysis, &image, &data);
                            (
                                if v.pass { State::Pass } else { State::Fail },
                                format!("{}: {}", kind.file_name(), v.detail),
                            )
                        }
                        Err(e) => (State::Error, e),
                    };
                    done.push(result(board, &pc, state, reason));
                    continue;
                }
                CheckKind::Pcr if !board.qemu.as_ref().is_some_and(|q| q.tpm != Tpm::None) => {
                    done.push(result(
                        board,
                        &pc,
                        State::Skip,
                        format!(
                            "board `{}` has no TPM the runner can read (a QEMU board with swtpm)",
                            board.name
                        ),
                    ));
                    continue;
                }
                CheckKind::Frame
                | CheckKind::Program
                | CheckKind::Console
                | CheckKind::BootReport
                | CheckKind::Pcr
                    if refuse =>
                {
                    done.push(result(board, &pc, State::Skip, format!("board `{}` expects the kernel to refuse to boot; only its exit check applies", board.name)));
                    continue;
                }
                CheckKind::Exit
                    if refuse && (check.exit_status.is_some() || check.scenario.is_some()) =>
                {
                    done.push(result(board, &pc, State::Skip, format!("board `{}` expects the kernel to refuse to boot, so this scenario cannot run there", board.name)));
                    continue;
                }
                CheckKind::Exit if !board.has_exit_channel() => {
                    done.push(result(board, &pc, State::Skip, format!("board `{}` has no exit channel (isa-debug-exit); the exit status cannot be observed", board.name)));
                    continue;
                }
                _ => {}
            }
            // Kernel-only checks share a boot that stops after the kernel's frames (and whose
            // exit is observed); checks on the running system share another.
            let shared = !check.fresh_boot && check.scenario.is_none();
            let existing = groups.iter_mut().find(|g| {
                shared
                    && g.image == kind
                    && g.scenario.is_none()
                    && g.checks.iter().all(|c| {
                        !c.check.fresh_boot && c.check.needs_system() == check.needs_system()
                    })
            });
            match existing {
                Some(g) => g.checks.push(pc),
                None => {
                    let index = groups.len() + 1;
                    groups.push(BootGroup {
                        index,
                        image: kind,
                        scenario: check.scenario.clone(),
                        checks: vec![pc],
                    });
                }
            }
        }
    }
    (done, groups)
}

fn read_image(path: &Path) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| {
        format!(
            "image {} is missing ({e}); build it with `cargo xtask build`",
            path.display()
        )
    })?;
    if meta.len() > artefact::MAX_IMAGE_BYTES {
        return Err(format!(
            "image {} is {} bytes, more than the {} the runner reads",
            path.display(),
            meta.len(),
            artefact::MAX_IMAGE_BYTES
        ));
    }
    std::fs::read(path).map_err(|e| format!("cannot read image {}: {e}", path.display()))
}

/// Shared state of one run.
struct Ctx {
    opts: Options,
    permits: Semaphore,
    board_locks: BTreeMap<String, Arc<Mutex<()>>>,
    total: usize,
    done: AtomicUsize,
    deadline: Instant,
}

/// Runs `plans` on `boards` and returns the report (not yet written to disk).
pub async fn run(
    boards: &[Board],
    plans: &[Plan],
    registry: &FeatureRegistry,
    opts: Options,
) -> Report {
    let started = Instant::now();
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut results = Vec::new();
    let mut work = Vec::new();
    for board in boards {
        let (done, groups) = plan_board(board, plans, registry, &opts.image_dir);
        results.extend(done);
        work.extend(groups.into_iter().map(|g| (board.clone(), g)));
    }
    let board_locks = boards
        .iter()
        .filter(|b| b.kind == BoardKind::Physical)
        .map(|b| (b.name.clone(), Arc::new(Mutex::new(()))))
        .collect();
    let ctx = Arc::new(Ctx {
        permits: Semaphore::new(opts.jobs.max(1)),
        board_locks,
        total: work.len(),
        done: AtomicUsize::new(0),
        deadline: started + opts.run_timeout,
        opts: opts.clone(),
    });
    if opts.progress {
        let statics = results
            .iter()
            .filter(|r| r.kind == CheckKind::Static)
            .count();
        eprintln!(
            "lab-runner: {} boot(s) and {statics} static check(s) on {} board(s), {} at a time",
            work.len(),
            boards.len(),
            opts.jobs.max(1)
        );
    }
    let mut set = JoinSet::new();
    for (board, group) in work {
        let ctx = ctx.clone();
        set.spawn(async move { run_group(ctx, board, group).await });
    }
    let mut boots = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((r, b)) => {
                results.extend(r);
                boots.extend(b);
            }
            Err(e) => eprintln!("lab-runner: a boot task failed: {e}"),
        }
    }
    sort_results(&mut results, boards, plans);
    boots.sort_by(|a, b| a.id.cmp(&b.id));
    let mut report = Report::new(
        results,
        boots,
        started_unix,
        started.elapsed().as_millis() as u64,
        &opts.image_dir,
    );
    report.shards = opts.shard.into_iter().collect();
    report
}

/// Orders results as the plans list them, board by board.
fn sort_results(results: &mut [CheckResult], boards: &[Board], plans: &[Plan]) {
    let board_pos = |b: &str| {
        boards
            .iter()
            .position(|x| x.name == b)
            .unwrap_or(usize::MAX)
    };
    let check_pos = |p: &str, c: &str| {
        let pi = plans.iter().position(|x| x.name == p).unwrap_or(usize::MAX);
        let ci = plans
            .get(pi)
            .and_then(|x| x.checks.iter().position(|k| k.id == c))
            .unwrap_or(usize::MAX);
        (pi, ci)
    };
    results.sort_by_key(|r| (board_pos(&r.board), check_pos(&r.plan, &r.check)));
}

async fn run_group(
    ctx: Arc<Ctx>,
    board: Board,
    group: BootGroup,
) -> (Vec<CheckResult>, Vec<BootRecord>) {
    let _permit = ctx.permits.acquire().await;
    let board_lock = ctx.board_locks.get(&board.name).cloned();
    let _board_guard = match &board_lock {
        Some(l) => Some(l.lock().await),
        None => None,
    };
    let mut boots = Vec::new();
    let mut attempt = 1;
    let outcome = loop {
        let fut = boot_once(&ctx, &board, &group, attempt);
        let (record, results) = match tokio::time::timeout_at(ctx.deadline, fut).await {
            Ok(x) => x,
            Err(_) => {
                let reason = format!(
                    "run timeout of {:?} reached before this boot finished",
                    ctx.opts.run_timeout
                );
                let results = group
                    .checks
                    .iter()
                    .map(|pc| result(&board, pc, State::Error, reason.clone()))
                    .collect();
                break results;
            }
        };
        let infra = record.infra_error.is_some();
        boots.push(record);
        if infra && attempt <= ctx.opts.retries {
            if ctx.opts.progress {
                eprintln!(
                    "lab-runner: {} boot {} attempt {attempt} hit an infrastructure error; retrying",
                    board.name, group.index
                );
            }
            attempt += 1;
            continue;
        }
        break results;
    };
    let n = ctx.done.fetch_add(1, Ordering::SeqCst) + 1;
    if ctx.opts.progress {
        let mut counts = BTreeMap::new();
        for r in &outcome {
            *counts.entry(r.state).or_insert(0) += 1;
        }
        let summary = counts
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect::<Vec<_>>()
            .join(", ");
        let ending = boots
            .last()
            .map(|b| b.ending.clone())
            .unwrap_or_else(|| "run timeout".into());
        eprintln!(
            "[{n:>3}/{}] {:<18} boot {:<2} {:<28} {summary}  ({ending})",
            ctx.total,
            board.name,
            group.index,
            group.image.file_name()
        );
    }
    (outcome, boots)
}

/// The RESULT id the target's shell reports just before it first reads the console
/// (`brainix_proto::shell::READY`); the runner types nothing before it.
pub const READY_ID: &str = "shell.ready";

/// What to type for a boot that runs the system: one step per check, in plan order. Frame checks
/// only wait; a program two checks share (one program answering both) is started once. A
/// console command is typed every time a check asks for it: typing it again may be the test
/// (a replayed approval).
fn script(board: &Board, group: &BootGroup) -> Script {
    let mut typed: Vec<String> = Vec::new();
    let steps = group
        .checks
        .iter()
        .filter(|pc| {
            matches!(
                pc.check.kind,
                CheckKind::Frame | CheckKind::Console | CheckKind::Program
            )
        })
        .map(|pc| {
            let program = pc.check.kind == CheckKind::Program;
            let line = pc
                .check
                .typed_line()
                .filter(|l| !(program && typed.contains(l)));
            if let (true, Some(l)) = (program, &line) {
                typed.push(l.clone());
            }
            Step {
                line,
                awaits: vec![pc.check.result_id().to_owned()],
                timeout: board.scaled(pc.check.timeout_s),
            }
        })
        .collect();
    let char_delay = board
        .physical
        .as_ref()
        .map_or(Duration::ZERO, |p| p.console.tx_char_delay());
    Script {
        ready: READY_ID.to_owned(),
        steps,
        char_delay,
    }
}

/// Kernel command line for a boot. `kernel_only` asks the kernel to stop right after its result
/// frames (`brainix.after-report=stop`) instead of starting the system: a boot whose checks are
/// all about the kernel then ends at once, with no wait for a shell that nothing will use.
pub fn cmdline(board: &Board, nonce: &Nonce, scenario: Option<&str>, kernel_only: bool) -> String {
    let mut words = vec![format!("brainix.nonce={}", nonce.as_str())];
    if board.has_exit_channel() {
        words.push("brainix.exit=isa-debug-exit".into());
    }
    if let Some(s) = scenario {
        words.push(format!("brainix.test={s}"));
    }
    if kernel_only {
        words.push("brainix.after-report=stop".into());
    }
    words.extend(board.cmdline.iter().cloned());
    words.join(" ")
}

/// Limits for a boot: the board's timeouts, and the group's check budget. The machine is watched
/// after END only when the group has an exit check; otherwise the boot ends at END.
pub fn limits(board: &Board, checks: &[&Check]) -> Limits {
    let budget: f64 = checks.iter().map(|c| c.timeout_s).sum();
    Limits {
        boot: board.boot_timeout(),
        checks: board.scaled(budget.max(1.0)),
        silence: board.silence_timeout(),
        exit: board.exit_timeout(),
        expect_exit: board.has_exit_channel() && checks.iter().any(|c| c.kind == CheckKind::Exit),
    }
}

async fn boot_once(
    ctx: &Ctx,
    board: &Board,
    group: &BootGroup,
    attempt: u32,
) -> (BootRecord, Vec<CheckResult>) {
    let id = format!("{}/boot-{}-a{attempt}", board.name, group.index);
    let nonce = Nonce::generate();
    // Console and program checks need the running system; every other kind is answered by the
    // kernel before it starts one.
    let kernel_only = group.checks.iter().all(|c| !c.check.needs_system());
    let script = (!kernel_only).then(|| script(board, group));
    let line = cmdline(board, &nonce, group.scenario.as_deref(), kernel_only);
    let image = ctx.opts.image_dir.join(group.image.file_name());
    let rel_dir = PathBuf::from("logs").join(&board.name);
    let stem = format!("boot-{}-a{attempt}", group.index);
    let mut record = BootRecord {
        id: id.clone(),
        board: board.name.clone(),
        image: group.image.file_name().into(),
        cmdline: line.clone(),
        attempt,
        ending: String::new(),
        exit_status: None,
        exit_meaning: None,
        infra_error: None,
        duration_ms: 0,
        first_byte_ms: None,
        plan_ms: None,
        console_bytes: 0,
        log: Some(rel_dir.join(format!("{stem}.log")).display().to_string()),
        raw_log: Some(rel_dir.join(format!("{stem}.raw")).display().to_string()),
        violations: Vec::new(),
        rejected_lines: 0,
        distrusted: false,
        command: Vec::new(),
        backend_stderr: String::new(),
    };
    let fail_all = |record: &mut BootRecord, reason: String| {
        record.infra_error = Some(reason.clone());
        record.ending = "not started".into();
        group
            .checks
            .iter()
            .map(|pc| {
                with_boot(
                    result(board, pc, State::Error, reason.clone()),
                    &id,
                    attempt,
                    0,
                    None,
                )
            })
            .collect::<Vec<_>>()
    };
    if !image.is_file() {
        let r = fail_all(
            &mut record,
            format!(
                "image {} is missing; build it with `cargo xtask build`",
                image.display()
            ),
        );
        return (record, r);
    }
    let mut log = match ConsoleLog::create(&ctx.opts.out_dir.join(&rel_dir), &stem) {
        Ok(l) => l,
        Err(e) => {
            let r = fail_all(
                &mut record,
                format!(
                    "cannot create the console log in {}: {e}",
                    ctx.opts.out_dir.display()
                ),
            );
            return (record, r);
        }
    };
    let checks: Vec<&Check> = group.checks.iter().map(|c| &c.check).collect();
    let mut lim = limits(board, &checks);
    if !kernel_only {
        // Reaching the shell is a second boot phase after the kernel's plan.
        lim.checks += board.boot_timeout();
    }
    let watch: Vec<String> = group
        .checks
        .iter()
        .filter_map(|c| c.check.console_line.clone())
        .chain(board.expect.console_line.clone())
        .collect();
    let started = Instant::now();
    let outcome: Result<Observation, String> = match board.kind {
        BoardKind::Qemu => {
            // Per-boot scratch (OVMF variables, ESP); removed when dropped, cancellation included.
            let work = match tempfile::Builder::new().prefix("brainix-lab-").tempdir() {
                Ok(w) => w,
                Err(e) => {
                    let r = fail_all(
                        &mut record,
                        format!("cannot create a scratch directory: {e}"),
                    );
                    return (record, r);
                }
            };
            match qemu::Machine::start(board, &image, &line, work.path()).await {
                Ok((mut machine, console, input)) => {
                    record.command = machine.command.clone();
                    let input: session::ConsoleWriter = Box::new(input);
                    let obs = session::drive_with(
                        console,
                        script.map(|s| (s, input)),
                        machine.wait(),
                        nonce.clone(),
                        &lim,
                        &watch,
                        &mut log,
                    )
                    .await;
                    let wanted: BTreeSet<u32> = group
                        .checks
                        .iter()
                        .filter_map(|c| c.check.pcrs.as_ref())
                        .flatten()
                        .copied()
                        .collect();
                    let wanted: Vec<u32> = wanted.into_iter().collect();
                    let (stderr, read) = machine.stop_reading_pcrs(&wanted).await;
                    record.backend_stderr = stderr;
                    let mut obs = obs;
                    if let Some(read) = read {
                        obs.pcrs = wanted
                            .iter()
                            .enumerate()
                            .map(|(i, &n)| (n, read.as_ref().map(|v| v[i]).map_err(Clone::clone)))
                            .collect();
                        obs.pcr_predictions = wanted
                            .iter()
                            .map(|&n| (n, crate::measure::predict(n, &image, &line)))
                            .collect();
                    }
                    Ok(obs)
                }
                Err(e) => Err(e.to_string()),
            }
        }
        BoardKind::Physical => match &board.physical {
            Some(p) => match physical::boot(
                board,
                p,
                &image,
                &line,
                nonce.clone(),
                &lim,
                &watch,
                &mut log,
                script,
            )
            .await
            {
                Ok((obs, command)) => {
                    record.command = command;
                    Ok(obs)
                }
                Err(e) => Err(e.to_string()),
            },
            None => Err("physical board without [physical]".into()),
        },
    };
    record.duration_ms = started.elapsed().as_millis() as u64;
    let obs = match outcome {
        Ok(o) => o,
        Err(e) => {
            let r = fail_all(&mut record, e);
            return (record, r);
        }
    };
    record.ending = obs.ending.describe();
    if let Ending::Exited(Some(s)) = obs.ending {
        record.exit_status = Some(s);
        record.exit_meaning = Some(ExitMeaning::decode(s).to_string());
    }
    record.first_byte_ms = obs.first_byte.map(|d| d.as_millis() as u64);
    record.plan_ms = obs.plan_at.map(|d| d.as_millis() as u64);
    record.console_bytes = obs.bytes;
    record.violations = obs.transcript.violations.clone();
    record.rejected_lines = obs.transcript.rejected;
    record.distrusted = obs.transcript.is_distrusted();
    if let Some(e) = &log.write_error {
        record
            .backend_stderr
            .push_str(&format!("\nconsole log incomplete: {e}"));
    }
    if let Some(infra) = infra_error(&obs, &record.backend_stderr) {
        let r = fail_all(&mut record, infra);
        record.ending = obs.ending.describe();
        return (record, r);
    }
    let log_rel = record.log.clone();
    let results = group
        .checks
        .iter()
        .map(|pc| {
            let (state, reason, lines) = evaluate(board, &pc.check, &obs);
            let mut r = with_boot(
                result(board, pc, state, reason),
                &id,
                attempt,
                record.duration_ms,
                log_rel.clone(),
            );
            r.evidence.lines = lines;
            r
        })
        .collect();
    (record, results)
}

fn with_boot(
    mut r: CheckResult,
    id: &str,
    attempt: u32,
    ms: u64,
    log: Option<String>,
) -> CheckResult {
    r.boot = Some(id.to_owned());
    r.attempts = attempt;
    r.duration_ms = ms;
    r.evidence.log = log;
    r
}

/// Decides whether a boot failed for infrastructure reasons (ERROR, retryable) rather than
/// because of the kernel.
pub fn infra_error(obs: &Observation, stderr: &str) -> Option<String> {
    let quoted = if stderr.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", stderr.trim().chars().take(300).collect::<String>())
    };
    match &obs.ending {
        Ending::Exited(Some(s)) => match ExitMeaning::decode(*s) {
            ExitMeaning::QemuError => Some(format!(
                "QEMU exited with status {s}, which is not a kernel exit code{quoted}"
            )),
            ExitMeaning::QemuQuit if obs.bytes == 0 => Some(format!(
                "QEMU exited with status 0 before any console output{quoted}"
            )),
            _ => None,
        },
        Ending::Exited(None) => Some(format!(
            "the machine process was killed by a signal{quoted}"
        )),
        Ending::ConsoleError(e) => Some(format!("console lost: {e}")),
        Ending::ConsoleClosed => Some("console closed before the boot ended".into()),
        Ending::BootTimeout | Ending::SilenceTimeout if obs.bytes == 0 => Some(format!(
            "no console output at all ({}): console, power or image delivery failed{quoted}",
            obs.ending.describe()
        )),
        _ => None,
    }
}

/// The verdict for one check from a boot that reached the kernel.
pub fn evaluate(board: &Board, check: &Check, obs: &Observation) -> (State, String, Vec<String>) {
    let t = &obs.transcript;
    let why_missing = || match t.distrusted_from {
        Some(line) => format!(
            "frames from console line {line} on were distrusted ({}); {}",
            t.violations
                .iter()
                .find(|v| v.ours)
                .map_or("protocol violation", |v| v.reason.as_str()),
            obs.ending.describe()
        ),
        None => obs.ending.describe(),
    };
    match check.kind {
        CheckKind::Frame | CheckKind::Program | CheckKind::Console => {
            let id = check.result_id();
            if let Some(r) = t.results.get(id) {
                let lines = obs.evidence.get(id).cloned().unwrap_or_default();
                let state = if r.pass { State::Pass } else { State::Fail };
                return (
                    state,
                    format!(
                        "target reported {}: {}",
                        if r.pass { "PASS" } else { "FAIL" },
                        r.detail
                    ),
                    lines,
                );
            }
            let reason = match &t.plan {
                Some((ids, _)) if !ids.iter().any(|i| i == id) => format!(
                    "the target's PLAN does not announce `{id}` (it announced {})",
                    ids.join(", ")
                ),
                Some(_) => match (&obs.typed, check.typed_line()) {
                    (Some(t), Some(line)) if t.ready_at.is_none() => format!(
                        "`{id}` was announced but never reported: the target never reported `{READY_ID}`, so `{line}` was not typed; {}",
                        why_missing()
                    ),
                    _ => format!("`{id}` was announced but never reported: {}", why_missing()),
                },
                None => format!("no PLAN frame from the target: {}", why_missing()),
            };
            (State::Miss, reason, obs.tail.clone())
        }
        CheckKind::BootReport => evaluate_boot_report(check, obs),
        CheckKind::Pcr => crate::measure::evaluate(check, obs),
        CheckKind::Exit => evaluate_exit(board, check, obs),
        CheckKind::Static => (
            State::Error,
            "a static check reached a boot (runner bug)".into(),
            Vec::new(),
        ),
    }
}

fn evaluate_boot_report(check: &Check, obs: &Observation) -> (State, String, Vec<String>) {
    let reports = &obs.transcript.boot_reports;
    let field = check.field.as_deref().unwrap_or("");
    let ev = if obs.report_evidence.is_empty() {
        obs.tail.clone()
    } else {
        obs.report_evidence.clone()
    };
    match reports.as_slice() {
        [] => (State::Miss, format!("no BRAINIX-BOOT-REPORT line: {}", obs.ending.describe()), ev),
        [_, _, ..] => (State::Fail, format!("{} boot report lines in one boot; the protocol allows exactly one, so a later one may be forged", reports.len()), ev),
        [r] if r.after_plan => (State::Fail, "the boot report came after the PLAN frame; the protocol puts it before, so it may be forged".into(), ev),
        [r] => {
            let Some((_, value)) = r.fields.iter().find(|(k, _)| k == field) else {
                return (State::Fail, format!("the boot report has no `{field}=` field"), ev);
            };
            if let Some(want) = &check.equals {
                let ok = value == want;
                return (if ok { State::Pass } else { State::Fail }, format!("{field}={value}{}", if ok { String::new() } else { format!(", expected {want}") }), ev);
            }
            let have: BTreeSet<&str> = value.split(',').collect();
            let missing: Vec<&str> = check.contains_all.iter().flatten().map(String::as_str).filter(|w| !have.contains(w)).collect();
            if missing.is_empty() {
                (State::Pass, format!("{field}={value}"), ev)
            } else {
                (State::Fail, format!("{field}={value} lacks {}", missing.join(", ")), ev)
            }
        }
    }
}

fn evaluate_exit(board: &Board, check: &Check, obs: &Observation) -> (State, String, Vec<String>) {
    let t = &obs.transcript;
    let refuse = board.expect.outcome == Outcome::Refuse;
    let want_status = check.exit_status.or(board.expect.exit_status).unwrap_or(33);
    let want_line = check
        .console_line
        .clone()
        .or_else(|| board.expect.console_line.clone());
    let mut ev: Vec<String> = obs
        .watched
        .iter()
        .map(|(n, l)| format!("{n:>5} {l}"))
        .collect();
    ev.extend(obs.tail.iter().cloned());
    let finish = !refuse && check.exit_status.is_none();
    let status = match obs.ending {
        Ending::Exited(Some(status)) => status,
        // A kernel that goes on to user space after END does not exit: still running when the
        // watch window closed is a finished boot, provided the stream was complete and clean.
        Ending::ExitTimeout if finish && t.end.is_some() && !t.is_distrusted() => {
            return (
                State::Pass,
                format!(
                    "END received and the kernel was still running {:.1} s later (it went on past boot)",
                    board.exit_timeout().as_secs_f64()
                ),
                ev,
            );
        }
        _ if refuse => {
            let why = format!(
                "the kernel did not refuse (expected exit status {want_status}): {}",
                obs.ending.describe()
            );
            return (State::Fail, why, ev);
        }
        _ => {
            let why = format!(
                "the machine did not exit with a status: {}",
                obs.ending.describe()
            );
            return (State::Fail, why, ev);
        }
    };
    let mut problems = Vec::new();
    if status != want_status {
        problems.push(format!(
            "exit status {status} ({}), expected {want_status} ({})",
            ExitMeaning::decode(status),
            ExitMeaning::decode(want_status)
        ));
    }
    if let Some(line) = &want_line
        && !obs.watched.iter().any(|(_, l)| l.contains(line.as_str()))
    {
        problems.push(format!("no console line contains `{line}`"));
    }
    if refuse && (t.plan.is_some() || !t.boot_reports.is_empty()) {
        problems.push(
            "the kernel got as far as its boot report or PLAN; it must refuse before that".into(),
        );
    }
    if !refuse && check.exit_status.is_none() {
        if t.is_distrusted() {
            problems.push("the frame stream had protocol violations".into());
        }
        if t.end.is_none() {
            problems.push("no END frame before the exit".into());
        }
    }
    if problems.is_empty() {
        let line = want_line
            .map(|l| format!(", console says `{l}`"))
            .unwrap_or_default();
        (
            State::Pass,
            format!(
                "exit status {status} ({}){line}",
                ExitMeaning::decode(status)
            ),
            ev,
        )
    } else {
        (State::Fail, problems.join("; "), ev)
    }
}

/// Picks the boards of shard `k` of `n` (1-based): every n-th board by name, so shards are
/// disjoint, cover everything and do not depend on the machine that computes them.
pub fn shard(boards: &[Board], k: usize, n: usize) -> Vec<Board> {
    let mut sorted: Vec<&Board> = boards.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    sorted
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % n == k - 1)
        .map(|(_, b)| b.clone())
        .collect()
}

/// Parses `K/N` with 1 <= K <= N.
pub fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let (k, n) = s
        .split_once('/')
        .ok_or_else(|| format!("shard `{s}` is not K/N"))?;
    let k: usize = k
        .parse()
        .map_err(|_| format!("shard `{s}`: K is not a number"))?;
    let n: usize = n
        .parse()
        .map_err(|_| format!("shard `{s}`: N is not a number"))?;
    if n == 0 || k == 0 || k > n {
        return Err(format!("shard `{s}`: expected 1 <= K <= N"));
    }
    Ok((k, n))
}

/// The JSON a CI matrix consumes (GitHub Actions `strategy.matrix` via `fromJSON`): one entry
/// per shard, each naming its shard and boards.
pub fn github_matrix(boards: &[Board], shards: usize) -> serde_json::Value {
    let n = shards.max(1);
    let include: Vec<serde_json::Value> = (1..=n)
        .map(|k| {
            let names: Vec<String> = shard(boards, k, n).into_iter().map(|b| b.name).collect();
            serde_json::json!({ "shard": format!("{k}/{n}"), "boards": names.join(",") })
        })
        .filter(|v| v["boards"] != "")
        .collect();
    serde_json::json!({ "include": include })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::lines::Line;
    use crate::protocol::transcript::Transcript;
    use crate::protocol::{Frame, encode_frame};

    fn board(name: &str) -> Board {
        crate::board::shipped(name)
    }

    fn plans() -> (FeatureRegistry, Vec<Plan>) {
        let (reg, plans, errors) =
            crate::plan::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../test-plans"));
        assert!(errors.is_empty());
        (reg, plans)
    }

    fn obs(lines: &[String], ending: Ending) -> Observation {
        let n = Nonce::parse("0123456789abcdef0123456789abcdef").unwrap();
        let mut t = Transcript::new(n);
        for (i, l) in lines.iter().enumerate() {
            t.feed(
                i as u64 + 1,
                &Line {
                    bytes: l.as_bytes().to_vec(),
                    truncated: false,
                    unterminated: false,
                },
            );
        }
        let watched = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.contains("RDRAND"))
            .map(|(i, l)| (i as u64 + 1, l.clone()))
            .collect();
        Observation {
            transcript: t,
            ending,
            bytes: 100,
            first_byte: None,
            plan_at: None,
            duration: Duration::ZERO,
            evidence: BTreeMap::new(),
            report_evidence: vec![],
            tail: vec![],
            typed: None,
            pcrs: BTreeMap::new(),
            pcr_predictions: BTreeMap::new(),
            watched,
        }
    }

    fn check(kind: CheckKind) -> Check {
        Check {
            id: "mem.wx".into(),
            title: "t".into(),
            kind,
            timeout_s: 10.0,
            fresh_boot: false,
            image: ImageKind::Release,
            scenario: None,
            requires: vec![],
            result: None,
            field: Some("selfcheck".into()),
            equals: Some("PASS".into()),
            contains_all: None,
            exit_status: None,
            console_line: None,
            analysis: None,
            command: None,
            program: None,
            pcrs: None,
        }
    }

    fn n() -> Nonce {
        Nonce::parse("0123456789abcdef0123456789abcdef").unwrap()
    }

    #[test]
    fn frame_checks_pass_fail_and_miss() {
        let b = board("qemu-q35");
        let lines = vec![
            encode_frame(
                &n(),
                0,
                &Frame::Plan(vec!["mem.wx".into(), "mem.sections".into()]),
            ),
            encode_frame(
                &n(),
                1,
                &Frame::Result {
                    id: "mem.wx".into(),
                    pass: true,
                    detail: "ok".into(),
                },
            ),
        ];
        let o = obs(&lines, Ending::Exited(Some(41)));
        assert_eq!(evaluate(&b, &check(CheckKind::Frame), &o).0, State::Pass);
        let mut c = check(CheckKind::Frame);
        c.id = "mem.sections".into();
        let (s, why, _) = evaluate(&b, &c, &o);
        assert_eq!(s, State::Miss);
        assert!(
            why.contains("announced but never reported") && why.contains("kernel panic"),
            "{why}"
        );
        c.id = "mem.no-heap".into();
        let (s, why, _) = evaluate(&b, &c, &o);
        assert_eq!(s, State::Miss);
        assert!(why.contains("does not announce"), "{why}");
    }

    #[test]
    fn a_second_boot_report_is_a_fail_not_a_pass() {
        let b = board("qemu-q35");
        let one = obs(
            &["BRAINIX-BOOT-REPORT v1 selfcheck=PASS".into()],
            Ending::Exited(Some(33)),
        );
        assert_eq!(
            evaluate(&b, &check(CheckKind::BootReport), &one).0,
            State::Pass
        );
        let two = obs(
            &[
                "BRAINIX-BOOT-REPORT v1 selfcheck=FAIL@0x1".into(),
                "BRAINIX-BOOT-REPORT v1 selfcheck=PASS".into(),
            ],
            Ending::Exited(Some(33)),
        );
        assert_eq!(
            evaluate(&b, &check(CheckKind::BootReport), &two).0,
            State::Fail
        );
        let late = obs(
            &[
                encode_frame(&n(), 0, &Frame::Plan(vec!["a".into()])),
                "BRAINIX-BOOT-REPORT v1 selfcheck=PASS".into(),
            ],
            Ending::Exited(Some(33)),
        );
        assert_eq!(
            evaluate(&b, &check(CheckKind::BootReport), &late).0,
            State::Fail
        );
    }

    #[test]
    fn refusal_board_passes_only_on_the_refusal() {
        let b = board("qemu-no-rdrand");
        let c = check(CheckKind::Exit);
        let refused = obs(
            &["brainix: FATAL: CPU lacks RDRAND".into()],
            Ending::Exited(Some(35)),
        );
        assert_eq!(evaluate(&b, &c, &refused).0, State::Pass);
        let booted = obs(
            &["BRAINIX-BOOT-REPORT v1 selfcheck=PASS".into()],
            Ending::Exited(Some(33)),
        );
        let (s, why, _) = evaluate(&b, &c, &booted);
        assert_eq!(s, State::Fail);
        assert!(
            why.contains("expected 35") && why.contains("RDRAND"),
            "{why}"
        );
        let silent = obs(&[], Ending::Exited(Some(35)));
        assert_eq!(
            evaluate(&b, &c, &silent).0,
            State::Fail,
            "the refusal line is required"
        );
    }

    #[test]
    fn clean_exit_needs_end_and_a_trusted_stream() {
        let b = board("qemu-q35");
        let c = check(CheckKind::Exit);
        let good = obs(
            &[
                encode_frame(&n(), 0, &Frame::Plan(vec!["a".into()])),
                encode_frame(
                    &n(),
                    1,
                    &Frame::Result {
                        id: "a".into(),
                        pass: true,
                        detail: "-".into(),
                    },
                ),
                encode_frame(&n(), 2, &Frame::End(1)),
            ],
            Ending::Exited(Some(33)),
        );
        assert_eq!(evaluate(&b, &c, &good).0, State::Pass);
        let no_end = obs(
            &[encode_frame(&n(), 0, &Frame::Plan(vec!["a".into()]))],
            Ending::Exited(Some(33)),
        );
        assert_eq!(evaluate(&b, &c, &no_end).0, State::Fail);
    }

    #[test]
    fn infrastructure_failures_are_errors_and_kernel_failures_are_not() {
        let mut o = obs(&[], Ending::Exited(Some(1)));
        assert!(
            infra_error(&o, "qemu: could not load kernel")
                .unwrap()
                .contains("could not load kernel")
        );
        o.ending = Ending::Exited(Some(41));
        assert!(
            infra_error(&o, "").is_none(),
            "a kernel panic is the kernel's"
        );
        o.ending = Ending::BootTimeout;
        o.bytes = 0;
        assert!(infra_error(&o, "").is_some());
        o.bytes = 10;
        assert!(
            infra_error(&o, "").is_none(),
            "output then a hang is the kernel's"
        );
    }

    #[test]
    fn planning_skips_unbuilt_features_and_shares_boots() {
        let (reg, plans) = plans();
        let dir = tempfile::tempdir().unwrap();
        // No images at all: every check is ERROR, never SKIP or PASS.
        let (done, groups) = plan_board(&board("qemu-q35"), &plans, &reg, dir.path());
        assert!(groups.is_empty());
        assert!(done.iter().all(|r| r.state == State::Error), "{done:?}");
        // A fake image without feature symbols.
        let img = artefact::testelf::build(
            &[artefact::testelf::Seg {
                kind: object::elf::PT_LOAD,
                flags: object::elf::PF_R,
                data: vec![0; 8],
            }],
            &["kmain"],
        );
        for f in [
            "brainix-kernel.elf",
            "brainix-kernel-test.elf",
            "brainix-kernel-multiboot.elf",
        ] {
            std::fs::write(dir.path().join(f), &img).unwrap();
        }
        let (done, groups) = plan_board(&board("qemu-q35"), &plans, &reg, dir.path());
        let skip = done.iter().filter(|r| r.state == State::Skip).count();
        assert!(skip >= 10, "{done:?}");
        assert!(
            done.iter()
                .filter(|r| r.state == State::Skip)
                .all(|r| r.reason.contains("issue"))
        );
        assert!(
            !done
                .iter()
                .any(|r| r.state == State::Pass && r.kind != CheckKind::Static)
        );
        // Shared release boot + the pagefault scenario boot.
        assert_eq!(groups.len(), 2, "{groups:?}");
        assert!(
            groups
                .iter()
                .any(|g| g.scenario.as_deref() == Some("pagefault"))
        );
        // With the features built: the kernel-only checks (exit included) boot apart from the
        // checks on the running system, and the system boot's script types each program once.
        let full = artefact::testelf::build(
            &[artefact::testelf::Seg {
                kind: object::elf::PT_LOAD,
                flags: object::elf::PF_R,
                data: vec![0; 8],
            }],
            &[
                "kmain",
                "BRAINIX_FEATURE_USERSPACE",
                "BRAINIX_FEATURE_SHELL",
                "BRAINIX_FEATURE_IPC",
                "BRAINIX_FEATURE_KPTI",
                "BRAINIX_FEATURE_TEST_PROGRAMS",
            ],
        );
        for f in ["brainix-kernel.elf", "brainix-kernel-test.elf"] {
            std::fs::write(dir.path().join(f), &full).unwrap();
        }
        let b = board("qemu-q35");
        let (_, groups) = plan_board(&b, &plans, &reg, dir.path());
        for g in &groups {
            let system = g.checks.iter().filter(|c| c.check.needs_system()).count();
            assert!(system == 0 || system == g.checks.len(), "mixed boot: {g:?}");
        }
        let test_system = groups
            .iter()
            .find(|g| g.image == ImageKind::Test && g.checks[0].check.needs_system())
            .expect("a test-image system boot");
        let s = script(&b, test_system);
        let typed: Vec<&str> = s.steps.iter().filter_map(|st| st.line.as_deref()).collect();
        let unique: BTreeSet<&str> = typed.iter().copied().collect();
        assert_eq!(typed.len(), unique.len(), "each line typed once: {typed:?}");
        assert!(typed.contains(&"start region-probe") && typed.contains(&"start kernel-read"));
        assert_eq!(s.ready, READY_ID);
        // The TPM board needs the UEFI loader: all boot checks SKIP, no boots.
        let (_, groups) = plan_board(&board("qemu-q35-uefi-tpm"), &plans, &reg, dir.path());
        assert!(groups.is_empty());
        // The refusal board boots once per image, for the exit checks only.
        let (_, groups) = plan_board(&board("qemu-no-rdrand"), &plans, &reg, dir.path());
        assert!(
            groups
                .iter()
                .all(|g| g.checks.iter().all(|c| c.check.kind == CheckKind::Exit)),
            "{groups:?}"
        );
    }

    #[test]
    fn shards_are_disjoint_and_complete() {
        let names = [
            "qemu-q35",
            "qemu-pc",
            "qemu-microvm",
            "qemu-no-rdrand",
            "qemu-q35-smp4",
        ];
        let boards: Vec<Board> = names.iter().map(|n| board(n)).collect();
        let mut all: Vec<String> = (1..=3)
            .flat_map(|k| shard(&boards, k, 3))
            .map(|b| b.name)
            .collect();
        all.sort();
        let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(all, want);
        assert!(
            parse_shard("0/3").is_err() && parse_shard("4/3").is_err() && parse_shard("x").is_err()
        );
        assert_eq!(parse_shard("2/3"), Ok((2, 3)));
        let m = github_matrix(&boards, 2);
        assert_eq!(m["include"].as_array().unwrap().len(), 2);
        assert_eq!(
            github_matrix(&boards, 9)["include"]
                .as_array()
                .unwrap()
                .len(),
            5,
            "empty shards are not emitted"
        );
    }
}
