//! `lab-runner`: the command line. See `docs/lab-runner.md`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

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

#[derive(Subcommand)]
enum Command {
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
