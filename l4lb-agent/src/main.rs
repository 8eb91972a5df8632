//! l4lb-agent: keeps the VIP → backends table in the l4lb BPF maps.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use l4lb_agent::{
    cli::{Cli, Command},
    run,
};

mod commands;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its first allocation (the symbol the -sys
/// crate's prefixed build looks for): two arenas (the runtime's two workers
/// and a few blocking threads; one per CPU x 4 by default), and freed pages
/// returned at once, by a background thread, so the peak RSS follows what
/// is held (BENCHMARKS.md, "Measurements behind choices in the code").
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8] =
    b"background_thread:true,narenas:2,dirty_decay_ms:0,muzzy_decay_ms:0\0";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cli.log));
    // Colours only for a terminal: logs in files and journals stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
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
