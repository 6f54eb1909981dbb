//! `lab-runner`: the command line. See `docs/lab-runner.md`.

use std::path::PathBuf;
use std::process::ExitCode;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use lab_runner::report::{self, Report};
use lab_runner::run::{self, Options};
use lab_runner::workspace::Layout;
use lab_runner::{board, plan};

/// Exit status for a configuration problem (bad board or plan, unknown name, bad flag).
const EXIT_CONFIG: u8 = 2;

#[derive(Parser)]
#[command(
    name = "lab-runner",
    version,
    about = "Run BraiNIX invariant test plans on QEMU boards and physical machines"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Dirs {
    /// Directory with the built images (default: $BRAINIX_IMAGE_DIR, else <workspace>/target/brainix).
    #[arg(long)]
    image_dir: Option<PathBuf>,
    /// Board profiles directory (default: <workspace>/boards).
    #[arg(long)]
    boards_dir: Option<PathBuf>,
    /// Test plans directory (default: <workspace>/test-plans).
    #[arg(long)]
    plans_dir: Option<PathBuf>,
}

impl Dirs {
    fn layout(&self) -> anyhow::Result<Layout> {
        let mut l = Layout::discover(self.image_dir.clone())?;
        if let Some(b) = &self.boards_dir {
            l.boards = b.clone();
        }
        if let Some(p) = &self.plans_dir {
            l.plans = p.clone();
        }
        Ok(l)
    }
}

#[derive(Args, Clone)]
struct RunFlags {
    /// Test plans to run (repeatable, or comma-separated); `all` for every plan.
    #[arg(
        long = "plan",
        visible_alias = "plans",
        value_delimiter = ',',
        default_value = "all"
    )]
    plans: Vec<String>,
    /// Boots running at once (default: number of CPUs).
    #[arg(long)]
    jobs: Option<usize>,
    /// Times a boot that ended in ERROR is tried again (FAIL is never retried).
    #[arg(long, default_value_t = 1)]
    retries: u32,
    /// Whole-run timeout in seconds.
    #[arg(long, default_value_t = 1800)]
    run_timeout: u64,
    /// Directory for logs and reports (default: <workspace>/target/lab-runner/<run-id>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// No progress lines on stderr.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    dirs: Dirs,
}

#[derive(Subcommand)]
enum Command {
    /// Run test plans on one board and print the per-invariant report.
    Run {
        /// Board profile name (a file in boards/).
        #[arg(long)]
        board: String,
        #[command(flatten)]
        flags: RunFlags,
    },
    /// Run plans across several boards (default: every QEMU board), optionally one shard of them.
    Matrix {
        /// Boards (comma-separated); default every board of kind qemu.
        #[arg(long, value_delimiter = ',')]
        boards: Vec<String>,
        /// Run only shard K of N (boards are dealt round-robin by name).
        #[arg(long)]
        shard: Option<String>,
        /// Print the CI matrix JSON instead of running (`github`: {"include":[{"shard":..}]}).
        #[arg(long, value_parser = ["github"])]
        emit: Option<String>,
        /// With --emit: how many shards (default: one per board).
        #[arg(long)]
        shards: Option<usize>,
        #[command(flatten)]
        flags: RunFlags,
    },
    /// Reports.
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// Board profiles.
    Boards {
        #[command(subcommand)]
        command: BoardsCommand,
    },
    /// Test plans.
    Plans {
        #[command(subcommand)]
        command: PlansCommand,
    },
}

#[derive(Subcommand)]
enum BoardsCommand {
    /// Validate every profile in the boards directory; exit 2 if any is invalid.
    Check(Dirs),
}

#[derive(Subcommand)]
enum ReportCommand {
    /// Merge shard reports (report.json files) into one report directory.
    Merge {
        /// Where the merged report goes.
        #[arg(long)]
        out: PathBuf,
        /// report.json files, or directories containing one.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum PlansCommand {
    /// Validate every plan and the feature registry; exit 2 if any is invalid.
    Check(Dirs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Boards {
            command: BoardsCommand::Check(dirs),
        } => boards_check(&dirs),
        Command::Plans {
            command: PlansCommand::Check(dirs),
        } => plans_check(&dirs),
        Command::Run { board, flags } => run_boards(Selection::One(board), None, &flags),
        Command::Matrix {
            boards,
            shard,
            emit: Some(_),
            shards,
            flags,
        } => emit_github(&boards, shard.as_deref(), shards, &flags),
        Command::Matrix {
            boards,
            shard,
            emit: None,
            flags,
            ..
        } => run_boards(Selection::Many(boards), shard, &flags),
        Command::Report {
            command: ReportCommand::Merge { out, inputs },
        } => merge(&out, &inputs),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lab-runner: {e:#}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn boards_check(dirs: &Dirs) -> anyhow::Result<ExitCode> {
    let layout = dirs.layout()?;
    let (boards, errors) = board::load_dir(&layout.boards);
    for b in &boards {
        println!("ok    {:<22} {:?}  {}", b.name, b.kind, b.description);
    }
    for e in &errors {
        println!("error {e}");
    }
    println!("{} board(s) valid, {} invalid", boards.len(), errors.len());
    Ok(if errors.is_empty() && !boards.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CONFIG)
    })
}

fn plans_check(dirs: &Dirs) -> anyhow::Result<ExitCode> {
    let layout = dirs.layout()?;
    let (_, plans, errors) = plan::load_dir(&layout.plans);
    for p in &plans {
        println!(
            "ok    {:<12} {:<10} {} check(s)  {}",
            p.name,
            p.invariant,
            p.checks.len(),
            p.title
        );
    }
    for e in &errors {
        println!("error {e}");
    }
    println!("{} plan(s) valid, {} invalid", plans.len(), errors.len());
    Ok(if errors.is_empty() && !plans.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CONFIG)
    })
}

enum Selection {
    One(String),
    Many(Vec<String>),
}

fn load_boards(layout: &Layout, names: &[String]) -> anyhow::Result<Vec<board::Board>> {
    if names.is_empty() {
        let (boards, errors) = board::load_dir(&layout.boards);
        if let Some(e) = errors.first() {
            bail!("{e}\n(run `lab-runner boards check` for every problem)");
        }
        return Ok(boards
            .into_iter()
            .filter(|b| b.kind == board::BoardKind::Qemu)
            .collect());
    }
    names
        .iter()
        .map(|n| board::load_named(&layout.boards, n).map_err(anyhow::Error::from))
        .collect()
}

fn load_plans(
    layout: &Layout,
    names: &[String],
) -> anyhow::Result<(plan::FeatureRegistry, Vec<plan::Plan>)> {
    let (registry, plans, errors) = plan::load_dir(&layout.plans);
    if let Some(e) = errors.first() {
        bail!("{e}\n(run `lab-runner plans check` for every problem)");
    }
    let selected = plan::select(&plans, names, &layout.plans)?;
    Ok((registry, selected))
}

fn run_id() -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("run-{t}-{}", std::process::id())
}

fn run_boards(
    selection: Selection,
    shard: Option<String>,
    flags: &RunFlags,
) -> anyhow::Result<ExitCode> {
    let layout = flags.dirs.layout()?;
    let mut boards = match &selection {
        Selection::One(name) => load_boards(&layout, std::slice::from_ref(name))?,
        Selection::Many(names) => load_boards(&layout, names)?,
    };
    if let Some(s) = &shard {
        let (k, n) = run::parse_shard(s).map_err(anyhow::Error::msg)?;
        boards = run::shard(&boards, k, n);
    }
    let (registry, plans) = load_plans(&layout, &flags.plans)?;
    let out = flags
        .out
        .clone()
        .unwrap_or_else(|| layout.out.join(run_id()));
    let opts = Options {
        jobs: flags.jobs.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        }),
        retries: flags.retries,
        run_timeout: Duration::from_secs(flags.run_timeout),
        out_dir: out.clone(),
        image_dir: layout.images.clone(),
        progress: !flags.quiet,
        shard: shard.clone(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let outcome = rt.block_on(async {
        tokio::select! {
            r = run::run(&boards, &plans, &registry, opts) => Some(r),
            _ = interrupted() => None,
        }
    });
    // Dropping the run above dropped every machine guard; shutting the runtime down drops the
    // aborted tasks too, which kills whatever they had started.
    rt.shutdown_timeout(Duration::from_secs(5));
    let Some(report) = outcome else {
        eprintln!("lab-runner: interrupted; every machine this run started has been stopped");
        return Ok(ExitCode::from(130));
    };
    let written = report
        .write_all(&out)
        .with_context(|| format!("writing reports to {}", out.display()))?;
    print!("{}", report::terminal::render(&report));
    for p in written {
        println!("  {}", p.display());
    }
    Ok(ExitCode::from(report.exit_code()))
}

/// Resolves on Ctrl-C or SIGTERM.
async fn interrupted() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
    }
}

fn emit_github(
    names: &[String],
    shard: Option<&str>,
    shards: Option<usize>,
    flags: &RunFlags,
) -> anyhow::Result<ExitCode> {
    if shard.is_some() {
        bail!("--emit prints the whole matrix; it does not take --shard");
    }
    let layout = flags.dirs.layout()?;
    let boards = load_boards(&layout, names)?;
    let n = shards.unwrap_or(boards.len()).max(1);
    println!("{}", run::github_matrix(&boards, n));
    Ok(ExitCode::SUCCESS)
}

fn merge(out: &std::path::Path, inputs: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let mut reports = Vec::new();
    for input in inputs {
        let path = if input.is_dir() {
            input.join("report.json")
        } else {
            input.clone()
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let r: Report = report::json::parse(&text)
            .with_context(|| format!("{} is not a lab-runner report", path.display()))?;
        reports.push((path.display().to_string(), r));
    }
    let merged = Report::merge(reports)?;
    let written = merged
        .write_all(out)
        .with_context(|| format!("writing {}", out.display()))?;
    print!("{}", report::terminal::render(&merged));
    for p in written {
        println!("  {}", p.display());
    }
    Ok(ExitCode::from(merged.exit_code()))
}
