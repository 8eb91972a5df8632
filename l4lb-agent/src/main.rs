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
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_arena_eager_commit` and `mi_option_purge_delay` in mimalloc v3's
/// `mi_option_e` (include/mimalloc.h; the -sys crate builds v3 unless its `v2`
/// feature is on, and names only some options).
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Freed memory goes back to the OS at once and arena memory is committed
/// when used, so the agent's peak RSS follows what it holds, at the same
/// speed (BENCHMARKS.md, "Measurements behind choices in the code"). It
/// must run before the first allocation creates mimalloc's first arena (set
/// in `main`, the arena option comes too late): hence a constructor in
/// `.init_array`, as `MIMALLOC_*` variables would be read.
extern "C" fn tune_allocator() {
    // SAFETY: setters of mimalloc's global options; no thread exists yet.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
        libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
    }
}

#[used]
#[unsafe(link_section = ".init_array")]
static TUNE_ALLOCATOR: extern "C" fn() = tune_allocator;

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
