//! `cargo xtask <task>`: the project's developer and CI entry points.
mod bench;
mod build_and_load;
mod demo;
mod deny;
mod fuzz;
mod interrupt;
mod plot;
mod preflight;
mod probe;
mod report;
mod setup;
mod tasks;
mod toolchain;
mod util;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "l4lb developer tasks"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the eBPF toolchain and runtime tools (root; idempotent).
    Setup,
    /// Build the workspace (the agent's build.rs builds the eBPF object).
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Check the toolchain, build, and run every test (kernel tests need root).
    Test {
        /// Extra arguments for the test binaries (e.g. a test name filter).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Balance 300 redis-cli connections over 3 redis-server backends via a VIP.
    Demo {
        /// Agent config (default: examples/demo.yaml).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Build, then load and attach the datapath with `l4lb-agent run` on a
    /// given cgroup (or `--sandbox`), print what is attached, keep it running.
    BuildAndLoad(build_and_load::LoadArgs),
    /// `cargo deny` over every dependency (deny.toml); part of `test`.
    Deny,
    /// A short run of every fuzz target from its committed corpus and
    /// regression inputs (nightly + cargo-fuzz, installed if missing).
    Fuzz {
        /// Seconds of fuzzing per target.
        #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u32).range(1..=3600))]
        seconds: u32,
        /// Only this target.
        #[arg(long)]
        target: Option<String>,
    },
    /// Benchmarks (no subcommand: all of them, see `bench all`).
    Bench {
        #[command(subcommand)]
        what: Option<bench::Bench>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup => setup::run_setup(),
        Task::Build { release } => tasks::build(release),
        Task::Test { args } => tasks::test(&args),
        Task::Demo { config } => demo::run(config),
        Task::Deny => deny::check(),
        Task::BuildAndLoad(args) => build_and_load::run(args).map(|_| ()),
        Task::Fuzz { seconds, target } => fuzz::run(seconds, target),
        Task::Bench { what } => {
            bench::run(what.unwrap_or_else(|| bench::Bench::All(Default::default())))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
