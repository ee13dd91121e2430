//! fibra-lab: OS threads, tokio tasks, Go goroutines and fibra fibers measured side by side on
//! this machine.
//!
//! Every (experiment, contender, N) measurement runs in its own child process (this binary
//! re-executed with the hidden `child` subcommand), so a crash or a hang is recorded as that
//! contender's failure and the lab goes on.

mod child;
mod experiments;
mod http;
mod lab;
mod load;
mod machine;
mod peers;
mod report;
mod soak;
mod stats;
mod task_stat;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use experiments::{Experiment, Size};
use peers::Contender;

/// Threads vs fibra vs tokio vs Go: spawn cost, memory per unit, switches, channels, HTTP I/O,
/// blocking, files, HTTP and redis clients.
#[derive(Parser, Debug)]
#[command(name = "fibra-lab", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// Run the full sweep (larger N, 5 repetitions) instead of the quick profile.
    #[arg(long, global = true)]
    full: bool,

    /// Contenders to measure, comma-separated.
    #[arg(long, global = true, value_delimiter = ',', value_name = "PEERS")]
    peers: Vec<Contender>,

    /// Also write all results, machine-readable, to this file.
    #[arg(long, global = true, value_name = "FILE")]
    json: Option<PathBuf>,

    /// Also write SVG plots of the results into this directory (created if missing).
    #[arg(long, global = true, value_name = "DIR")]
    plots: Option<PathBuf>,

    /// Also write one self-contained HTML page: tables, plots, machine description.
    #[arg(long, global = true, value_name = "FILE")]
    report: Option<PathBuf>,

    /// Repetitions of each measurement, each in a fresh process [default: 3 quick, 5 full].
    #[arg(long, global = true, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    reps: Option<u32>,

    /// Only the rows whose label contains TEXT (e.g. `--rows "conns open"` for io's
    /// many-connection rows).
    #[arg(long, global = true, value_name = "TEXT")]
    rows: Option<String>,

    /// List the experiments and contenders, then exit.
    #[arg(long, global = true)]
    list: bool,

    /// Problem sizes (test use: `tiny` makes the whole run take seconds).
    #[arg(long, global = true, hide = true, value_name = "SIZE")]
    size: Option<Size>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the named experiments (default without a subcommand: all of them).
    Run {
        /// Experiments to run, in this order.
        #[arg(required = true, value_name = "EXPERIMENT")]
        experiments: Vec<Experiment>,
    },
    /// Draw the plots and/or the HTML page again from a `--json` file, measuring nothing.
    Replot {
        /// A file written by `--json`.
        #[arg(value_name = "JSON")]
        from: PathBuf,
    },
    /// Mixed load in this one process for SECONDS (HTTP with connection churn, spawn churn,
    /// channels, sleepers, blocking): a line of RSS, fds, threads and live fibers every 10 s,
    /// then a verdict; exits 1 on a loss or growth (`scripts/soak.sh`).
    Soak {
        #[arg(value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
        seconds: u64,
    },
    /// io's conns rows: hold CONNS connections to ADDR, then ping each once a second for
    /// SECS seconds (used by the lab itself; see `load::ping`).
    #[command(hide = true)]
    PingClient {
        addr: std::net::SocketAddr,
        conns: u64,
        #[arg(long)]
        secs: u64,
    },
    /// One measurement in this process; prints one JSON line (used by the lab itself).
    #[command(hide = true)]
    Child {
        experiment: Experiment,
        contender: Contender,
        n: u64,
        /// Worker threads for the runtime contenders.
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// The experiment's variant (e.g. chan's `8p-bounded0`).
        #[arg(long)]
        case: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Child {
            experiment,
            contender,
            n,
            workers,
            case,
        }) => child::main(experiment, contender, n, workers, case.as_deref()),
        Some(Command::Run { ref experiments }) => lab_main(&cli, experiments),
        Some(Command::Soak { seconds }) => soak::main(seconds),
        Some(Command::PingClient { addr, conns, secs }) => load::ping::main(addr, conns, secs),
        Some(Command::Replot { ref from }) => replot(&cli, from),
        None if cli.list => {
            print!("{}", lab::listing());
            ExitCode::SUCCESS
        }
        None => lab_main(&cli, &Experiment::ALL),
    }
}

fn lab_main(cli: &Cli, experiments: &[Experiment]) -> ExitCode {
    if cli.list {
        print!("{}", lab::listing());
        return ExitCode::SUCCESS;
    }
    let size = cli
        .size
        .unwrap_or(if cli.full { Size::Full } else { Size::Quick });
    let mut contenders = dedup(if cli.peers.is_empty() {
        let mut all = Contender::DEFAULT.to_vec();
        if experiments.contains(&Experiment::Io) {
            all.insert(1, Contender::FibraHyper); // beside fibra's own server
            all.push(Contender::May); // the stackful peer (issue 21)
        }
        if experiments.contains(&Experiment::Client) {
            all.insert(1, Contender::FibraHooks); // unchanged blocking clients, hooked
        }
        all
    } else {
        cli.peers.clone()
    });
    let go_program = if contenders.contains(&Contender::Go) {
        match peers::go::prepare() {
            Ok(program) => Some(program),
            Err(reason) => {
                println!("go: skipped — {reason}");
                contenders.retain(|&c| c != Contender::Go);
                None
            }
        }
    } else {
        None
    };
    // Built only for the experiment that runs it (a first build takes minutes).
    let hooks_program = if contenders.contains(&Contender::FibraHooks)
        && experiments.contains(&Experiment::Client)
    {
        match peers::hooks::prepare() {
            Ok(program) => Some(program),
            Err(reason) => {
                println!("fibra-hooks: skipped — {reason}");
                contenders.retain(|&c| c != Contender::FibraHooks);
                None
            }
        }
    } else {
        None
    };
    if contenders.is_empty() {
        eprintln!("fibra-lab: no contender left to measure");
        return ExitCode::FAILURE;
    }
    let config = lab::Config {
        size,
        reps: cli.reps.unwrap_or(size.default_reps()),
        contenders,
        cores: machine::cores(),
        go_program,
        rows: cli.rows.clone(),
        hooks_program,
    };
    let report = lab::run(&config, &dedup(experiments.to_vec()));
    match write_outputs(cli, &report) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fibra-lab: {e}");
            ExitCode::FAILURE
        }
    }
}

fn replot(cli: &Cli, from: &std::path::Path) -> ExitCode {
    if cli.plots.is_none() && cli.report.is_none() {
        eprintln!("fibra-lab replot: nothing to draw; add --plots DIR and/or --report FILE");
        return ExitCode::FAILURE;
    }
    let written = report::saved::load(from).and_then(|report| {
        print!("{}", report.machine.header());
        for result in &report.experiments {
            print!("{}", report::table::render(result));
        }
        write_outputs(cli, &report)
    });
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fibra-lab: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--json`, `--plots`, `--report`: each written if asked for.
fn write_outputs(cli: &Cli, report: &report::Report) -> Result<(), String> {
    let cannot = |path: &std::path::Path, e: std::io::Error| {
        format!("could not write {}: {e}", path.display())
    };
    if let Some(path) = &cli.json {
        report::json::write(path, report).map_err(|e| cannot(path, e))?;
        eprintln!("results written to {}", path.display());
    }
    if cli.plots.is_none() && cli.report.is_none() {
        return Ok(());
    }
    let plots = report::plot::render_all(report)?;
    if let Some(dir) = &cli.plots {
        let written = report::plot::write_all(dir, &plots).map_err(|e| cannot(dir, e))?;
        eprintln!("{} plots written to {}", written.len(), dir.display());
    }
    if let Some(path) = &cli.report {
        report::html::write(path, report, &plots).map_err(|e| cannot(path, e))?;
        eprintln!("report written to {}", path.display());
    }
    Ok(())
}

fn dedup<T: PartialEq>(items: Vec<T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(items.len());
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}
