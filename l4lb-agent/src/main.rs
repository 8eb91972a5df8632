//! l4lb-agent: keeps the VIP → backends table in the l4lb BPF maps.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use l4lb_agent::{
    cli::{Cli, Command},
    datapath, naming, run, table,
};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_arena_eager_commit` and `mi_option_purge_delay` in mimalloc v2's
/// `mi_option_e` (include/mimalloc.h; the -sys crate names only some options).
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Freed memory goes back to the OS at once and arena memory is committed
/// when used, so the agent's peak RSS follows what it holds, at the same
/// speed (BENCHMARKS.md, "Measurements behind choices in the code"). It must run before the first allocation creates mimalloc's first
/// arena (set in `main`, the arena option comes too late): hence a
/// constructor in `.init_array`, as `MIMALLOC_*` variables would be read.
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
        Command::Vips { pin_root, json } => {
            let maps = datapath::Maps::open_pinned(&pin_root)?;
            let rows = table::vip_rows(&maps)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                if let Some(p) = maps.lb_policy() {
                    let probes = maps.health_probes().unwrap_or_default();
                    println!(
                        "TCP connect() policy: {}; down backends probed by: {}",
                        p.name(),
                        probes.name()
                    );
                }
                table::print_vips(&rows);
            }
            Ok(())
        }
        Command::Backends { pin_root, json } => {
            let maps = datapath::Maps::open_pinned(&pin_root)?;
            let rows = table::backend_rows(&table::vip_rows(&maps)?);
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                table::print_backends(&rows);
            }
            Ok(())
        }
        Command::Stats { pin_root, json } => {
            let maps = datapath::Maps::open_pinned(&pin_root)?;
            let stats = table::stats(&maps)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                table::print_stats(&stats);
            }
            Ok(())
        }
        Command::Check { config, json } => {
            let cfg = l4lb_agent::source::config_file::load_config(&config)?;
            let desired = cfg.desired_state(&mut naming::VipAllocator::default())?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&desired.services.iter().collect::<Vec<_>>())?
                );
            } else {
                for (vip, spec) in &desired.services {
                    let name = spec
                        .name
                        .as_deref()
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default();
                    println!("{vip}{name}");
                    for (addr, w) in &spec.backends {
                        println!("  -> {addr} weight {w}");
                    }
                }
                println!("ok: {} VIPs", desired.services.len());
            }
            Ok(())
        }
        Command::Pktgen(a) => {
            if !(a.seconds > 0.0 && a.seconds <= 60.0) {
                anyhow::bail!("--seconds must be in (0, 60]");
            }
            let spec = datapath::pktgen::Spec {
                iface: a.iface,
                src_mac: datapath::pktgen::parse_mac(&a.src_mac)?,
                dst_mac: datapath::pktgen::parse_mac(&a.dst_mac)?,
                src: a.src,
                dst: a.dst,
                flows: a.flows,
                payload: a.payload as usize,
                max_frames: a.frames,
                max_time: std::time::Duration::from_secs_f64(a.seconds),
                rate: a.rate,
            };
            let r = datapath::pktgen::run(&spec)?;
            println!("{}", serde_json::to_string(&r)?);
            Ok(())
        }
        Command::Pktsink { iface, seconds } => {
            datapath::pktgen::sink(&iface, std::time::Duration::from_secs(seconds), || {
                // The caller waits for this line before it sends.
                println!("ready");
                let _ = std::io::Write::flush(&mut std::io::stdout());
            })
        }
        Command::Monitor(a) => l4lb_agent::monitor::run(a),
        Command::Explain(a) => {
            let tuple = l4lb_agent::packet::Tuple {
                proto: a.proto,
                src: a.src,
                dst: a.vip,
            };
            if a.src.is_ipv4() != a.vip.is_ipv4() {
                anyhow::bail!(
                    "--src {} and --vip {} must be of the same family",
                    a.src,
                    a.vip
                );
            }
            let socket = {
                let maps = datapath::Maps::open_pinned(&a.pin_root)?;
                l4lb_agent::lb_explain::explain(&maps, a.vip, a.proto)?
            };
            let e = datapath::xdp::explain(&a.pin_root, &tuple, a.repeat, a.live)?;
            if a.json {
                // The XDP answer's fields at the top, the socket path's under "socket".
                let mut v = serde_json::to_value(&e)?;
                v["socket"] = serde_json::to_value(&socket)?;
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("XDP {}: {}", e.packet, e.verdict);
                if a.repeat > 1 {
                    println!("{} runs, {} ns per run", a.repeat, e.ns_per_run);
                }
                l4lb_agent::lb_explain::print(socket.as_ref());
            }
            Ok(())
        }
        Command::DebugDestroyUdp {
            backends,
            vips,
            pin_root,
        } => {
            let maps = datapath::Maps::open_pinned(&pin_root)?;
            let report =
                l4lb_agent::sockdestroy::destroy_connected_udp(&backends, |cookie, backend| {
                    maps.revnat_vip(cookie, backend)
                        .is_some_and(|vip| vips.is_empty() || vips.contains(&vip))
                })?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Command::Verify { pin_root, cgroup } => {
            let report = l4lb_agent::verify::verify(&pin_root, cgroup.as_deref())?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if !report.problems.is_empty() {
                anyhow::bail!(
                    "{} problem(s) in {}",
                    report.problems.len(),
                    pin_root.display()
                );
            }
            Ok(())
        }
        Command::Teardown { pin_root } => {
            for path in datapath::teardown(&pin_root)? {
                println!("removed {}", path.display());
            }
            if datapath::escape::teardown()? {
                println!(
                    "removed interface {} and its VIP routes",
                    datapath::escape::DEV
                );
            }
            Ok(())
        }
    }
}
