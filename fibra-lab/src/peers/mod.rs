//! The contenders, and the dispatch from (experiment, contender) to the code that measures it.
//! Runs in the child process.

pub mod blocking_client;
pub mod fibra;
pub mod go;
pub mod hooks;
pub mod may;
pub mod threads;
pub mod tokio;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use crate::child::Figures;
use crate::experiments::chan::Case;
use crate::experiments::Experiment;

/// Who is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Contender {
    /// fibra fibers.
    Fibra,
    /// hyper's HTTP/1 server on fibra (fibra/examples/hyper_hello.rs): the io experiment only.
    #[serde(rename = "fibra-hyper")]
    #[value(name = "fibra-hyper")]
    FibraHyper,
    /// Unchanged blocking clients (ureq 2, sync redis) on fibra with the `hooks` feature
    /// (fibra/examples/lab_hooks.rs, built on demand): the client experiment only.
    #[serde(rename = "fibra-hooks")]
    #[value(name = "fibra-hooks")]
    FibraHooks,
    /// OS threads (std::thread).
    Threads,
    /// tokio tasks on a multi-thread runtime.
    Tokio,
    /// Go goroutines: the bundled Go program, when a `go` toolchain is on PATH.
    Go,
    /// may_minihttp's server on may's stackful coroutines: the io experiment only.
    May,
    /// Test-only: aborts in the child, to show that a crashing contender is reported.
    #[value(hide = true)]
    Crash,
}

impl Contender {
    /// The contenders measured when `--peers` is not given.
    /// Go is skipped, with a message, when no `go` toolchain is on PATH.
    pub const DEFAULT: [Contender; 4] = [
        Contender::Fibra,
        Contender::Threads,
        Contender::Tokio,
        Contender::Go,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Contender::Fibra => "fibra",
            Contender::FibraHyper => "fibra-hyper",
            Contender::FibraHooks => "fibra-hooks",
            Contender::Threads => "threads",
            Contender::Tokio => "tokio",
            Contender::Go => "go",
            Contender::May => "may",
            Contender::Crash => "crash",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Contender::Fibra => "fibra fibers (stackful, M:N, work stealing)",
            Contender::FibraHyper => "hyper's server on fibra sockets and fibers (io only)",
            Contender::FibraHooks => {
                "unchanged ureq/redis on hooked fibra (client only; built with --features hooks)"
            }
            Contender::Threads => "OS threads (std::thread, 64 KiB stacks where it matters)",
            Contender::Tokio => "tokio tasks (stackless, multi-thread runtime)",
            Contender::Go => "Go goroutines (bundled Go program; needs `go` on PATH)",
            Contender::May => "may_minihttp on may's stackful coroutines (io only)",
            Contender::Crash => "test-only contender that aborts",
        }
    }
}

/// Measure one (experiment, contender) in this process.
pub fn measure(
    experiment: Experiment,
    contender: Contender,
    n: u64,
    workers: usize,
    case: Option<&str>,
) -> Result<Figures, String> {
    let client_job = || crate::experiments::client::Job::from_child(n, case);
    let fs_job = || crate::experiments::fs::Job::from_child(n, case);
    let chan_case = || -> Result<Case, String> { case.ok_or("chan needs --case")?.parse() };
    match (contender, experiment) {
        (Contender::Crash, _) => std::process::abort(),
        (Contender::Go, _) => Err("the Go peer runs as its own program, not in this one".into()),
        (Contender::FibraHooks, _) => {
            Err("fibra-hooks runs as its own program (fibra/examples/lab_hooks.rs)".into())
        }
        (Contender::Fibra, Experiment::Client) => fibra::client(&client_job()?, workers),
        (Contender::Threads, Experiment::Client) => threads::client(&client_job()?),
        (Contender::Tokio, Experiment::Client) => tokio::client(&client_job()?, workers),
        (Contender::Threads, Experiment::Spawn) => threads::spawn(n),
        (Contender::Threads, Experiment::Switch) => threads::switch(n),
        (Contender::Threads, Experiment::Churn) => threads::churn(n),
        (Contender::Threads, Experiment::Blocking) => threads::blocking(n),
        (Contender::Tokio, Experiment::Blocking) => tokio::blocking(n, workers),
        (Contender::Fibra, Experiment::Blocking) => fibra::blocking(n, workers),
        (Contender::Threads, Experiment::Chan) => threads::chan(chan_case()?, n),
        (Contender::Tokio, Experiment::Spawn) => tokio::spawn(n, workers),
        (Contender::Tokio, Experiment::Switch) => tokio::switch(n, workers),
        (Contender::Tokio, Experiment::Churn) => tokio::churn(n, workers),
        (Contender::Tokio, Experiment::Chan) => tokio::chan(chan_case()?, n, workers),
        (Contender::Fibra, Experiment::Spawn) => fibra::spawn(n, workers),
        (Contender::Fibra, Experiment::Switch) => fibra::switch(n, workers, case),
        (Contender::Fibra, Experiment::Churn) => fibra::churn(n, workers),
        (Contender::Fibra, Experiment::Chan) => fibra::chan(chan_case()?, n, workers),
        (Contender::Threads, Experiment::Io) => threads::io_server(),
        (Contender::Tokio, Experiment::Io) => tokio::io_server(workers),
        (Contender::Fibra, Experiment::Io) => fibra::io_server(workers, case),
        (Contender::FibraHyper, Experiment::Io) => fibra::io_hyper_server(workers),
        (Contender::Threads, Experiment::Fs) => threads::fs(&fs_job()?),
        (Contender::Tokio, Experiment::Fs) => tokio::fs(&fs_job()?, workers),
        (Contender::Fibra, Experiment::Fs) => fibra::fs(&fs_job()?, workers),
        (Contender::FibraHyper, _) => Err("fibra-hyper runs in the io experiment only".into()),
        (Contender::May, Experiment::Io) => may::io_server(workers),
        (Contender::May, _) => Err("may runs in the io experiment only".into()),
    }
}
