//! A Mesos master stand-in for l4lb's kernel tests: the operator API stream
//! (`POST /api/v1` SUBSCRIBE) and `/master/state`, scripted and faulted over
//! a control socket (see `fake_mesos/server.rs`).
//!
//! ```text
//! l4lb-fake-mesos --listen 127.0.0.1:0 --control-socket PATH [--state get_state.json]
//!     [--heartbeat-ms MS] [--max-runtime-s S]
//! ```
//! stdout: `listen ADDR`, `control unix:PATH`, then `ready`. Logs on stderr.
use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{Context, Result};
use clap::Parser;
use l4lb_tests::fake_mesos::{model, server};
use tokio::net::{TcpListener, UnixListener};

#[derive(Parser)]
#[command(about = "Mesos master stand-in (operator API stream, /master/state)")]
struct Args {
    #[arg(long)]
    listen: SocketAddr,
    #[arg(long)]
    control_socket: PathBuf,
    /// The initial `get_state` object (default: no agents, frameworks, tasks).
    #[arg(long)]
    state: Option<PathBuf>,
    #[arg(long, default_value_t = 1000)]
    heartbeat_ms: u64,
    /// Exits by itself after this long, whatever happens.
    #[arg(long, default_value_t = 3600)]
    max_runtime_s: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let state = match &args.state {
        Some(p) => serde_json::from_slice(
            &std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        )
        .with_context(|| format!("parsing {}", p.display()))?,
        None => model::get_state(vec![], vec![], vec![]),
    };
    let sh = server::Shared::new(state, Duration::from_millis(args.heartbeat_ms.max(10)));
    let mesos = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    if args.control_socket.exists() {
        std::fs::remove_file(&args.control_socket)?;
    }
    let control = UnixListener::bind(&args.control_socket)
        .with_context(|| format!("binding {}", args.control_socket.display()))?;
    println!("listen {}", mesos.local_addr()?);
    println!("control unix:{}", args.control_socket.display());
    println!("ready");
    let sh2 = sh.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = control.accept().await {
            tokio::spawn(server::serve_control(sh2.clone(), s));
        }
    });
    let serve = async {
        while let Ok((s, _)) = mesos.accept().await {
            tokio::spawn(server::serve_mesos(sh.clone(), s));
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(args.max_runtime_s), serve).await;
    Ok(())
}
