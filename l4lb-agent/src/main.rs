//! l4lb-agent: keeps the VIP → backends table in the l4lb BPF maps.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use l4lb_agent::{
    cli::{Cli, Command},
    run,
};

mod commands;

fn main() -> ExitCode {
    let tuned = l4lb_agent::allocator::tune();
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cli.log));
    // Colours only for a terminal: logs in files and journals stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
    if !tuned {
        tracing::warn!("malloc's options not set: the full sync's peak memory will be higher");
    }
    match dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(args) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(run::run(*args))
        }
        Command::Vips { pin_root, json } => commands::vips(&pin_root, json),
        Command::Backends { pin_root, json } => commands::backends(&pin_root, json),
        Command::Stats { pin_root, json } => commands::stats(&pin_root, json),
        Command::Check { config, json } => commands::check(&config, json),
        Command::Pktgen(a) => commands::pktgen(a),
        Command::Pktsink { iface, seconds } => commands::pktsink(&iface, seconds),
        Command::Monitor(a) => l4lb_agent::monitor::run(a),
        Command::Explain(a) => commands::explain(&a),
        Command::DebugDestroyUdp {
            backends,
            vips,
            pin_root,
        } => commands::destroy_udp(&backends, &vips, &pin_root),
        Command::Verify { pin_root, cgroup } => commands::verify(&pin_root, cgroup.as_deref()),
        Command::Teardown { pin_root } => commands::teardown(&pin_root),
    }
}
