//! A Marathon-compatible test server for l4lb's kernel tests (Marathon, Mesos
//! and ZooKeeper cannot run here). One process plays a Marathon cluster:
//! every `--listen ADDR` is one instance, all sharing one state.
//!
//! ```text
//! l4lb-fake-marathon --listen 127.0.0.1:0 [--listen …] [--state apps.json]
//!     [--control-socket PATH] [--control ADDR] [--leader N|none]
//!     [--require-token T] [--require-basic USER:PASS] [--kill-grace-ms MS]
//!     [--sse-keepalive-ms MS] [--sse-crlf] [--max-runtime-s S]
//! ```
//! stdout: `listen ADDR` per instance (in order), `control unix:PATH` /
//! `control ADDR`, then `ready`; nothing else. Logs go to stderr.
//!
//! Marathon API per instance (see `fake_marathon/api.rs`):
//! - `GET /v2/apps[?embed=apps.tasks]`, `/v2/apps/{id}`, `/v2/apps/{id}/tasks`,
//!   `/v2/tasks`, `/v2/info`, `/ping`; pods: `/v2/pods`, `/v2/pods/::status`,
//!   `/v2/pods/{id}::status`, `/v2/pods/{id}` (404 with `--no-pods`).
//! - `GET /v2/leader` → `{"leader":"host:port"}`, 404 when there is none.
//! - `GET /v2/events` (needs `Accept: text/event-stream`, else 405 as
//!   Jetty's EventSourceServlet does), `event_type=` filters (repeatable).
//!   `event_stream_attached` is published on the bus when a stream opens, so
//!   it is a stream's first frame unless filtered out. Keepalive comment
//!   line `: keepalive` every `--sse-keepalive-ms`. Streams close when their
//!   instance loses the leadership.
//! - A non-leader redirects `/v2/events` (307, Location on the leader) and
//!   serves the other `/v2/*` itself from the shared state, which is what
//!   proxying to the leader returns; as a proxy it also passes on the
//!   leader's faults (leader down/reset → 502) and adds `X-Marathon-Via`.
//!   With no leader every `/v2/*` but `/v2/leader` is 503.
//! - Auth (`--require-token`, `--require-basic`; either passes): 401 with
//!   `WWW-Authenticate` on every `/v2/*` otherwise.
//!
//! The control API (scripting, faults) is JSON over HTTP on the control
//! listeners only, never on a Marathon port; see `fake_marathon/control.rs`.
use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context, Result, bail};
use clap::Parser;
use hyper::{server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use l4lb_tests::fake_marathon::{api, control, model, state};
use tokio::net::{TcpListener, TcpStream, UnixListener};

use state::{Opts, Shared};

#[derive(Parser)]
#[command(about = "Marathon-compatible test server (one process, N instances)")]
struct Args {
    /// One Marathon instance per address (port 0: any free port).
    #[arg(long, required = true)]
    listen: Vec<SocketAddr>,
    /// Initial apps: `{"apps":[…]}` with embedded tasks (or a bare array).
    #[arg(long)]
    state: Option<PathBuf>,
    /// Control API on a unix socket (the harness uses this).
    #[arg(long)]
    control_socket: Option<PathBuf>,
    /// Control API on a TCP address (loopback only).
    #[arg(long)]
    control: Option<SocketAddr>,
    /// Index of the leading instance, or `none`.
    #[arg(long, default_value = "0")]
    leader: String,
    /// Require `Authorization: token=T` (DC/OS ACS token style).
    #[arg(long)]
    require_token: Option<String>,
    /// Require HTTP Basic `USER:PASS` (plain Marathon `--http_credentials`).
    #[arg(long)]
    require_basic: Option<String>,
    /// A killed task leaves TASK_KILLING after this long (default: only on
    /// a second kill).
    #[arg(long)]
    kill_grace_ms: Option<u64>,
    #[arg(long, default_value_t = 5000)]
    sse_keepalive_ms: u64,
    /// CRLF line ends in SSE frames, as Jetty writes them (default LF).
    #[arg(long)]
    sse_crlf: bool,
    /// Play a Marathon without pods: every `/v2/pods…` answers 404.
    #[arg(long)]
    no_pods: bool,
    /// Exits by itself after this long, whatever happens.
    #[arg(long, default_value_t = 3600)]
    max_runtime_s: u64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(c) = args.control
        && !c.ip().is_loopback()
    {
        bail!("--control must be a loopback address");
    }
    let leader = match args.leader.as_str() {
        "none" => None,
        n => Some(n.parse::<usize>().context("--leader N|none")?),
    };
    if leader.is_some_and(|l| l >= args.listen.len()) {
        bail!(
            "--leader {} but only {} instances",
            args.leader,
            args.listen.len()
        );
    }
    let apps = match &args.state {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            let v =
                serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))?;
            state::parse_apps(v).map_err(|(_, m)| anyhow::anyhow!("{}: {m}", p.display()))?
        }
        None => vec![],
    };

    let mut out = String::new();
    let mut listeners = vec![];
    for a in &args.listen {
        let l = TcpListener::bind(a)
            .await
            .with_context(|| format!("binding {a}"))?;
        let addr = l.local_addr()?;
        out.push_str(&format!("listen {addr}\n"));
        listeners.push((l, addr));
    }
    let addrs: Vec<SocketAddr> = listeners.iter().map(|(_, a)| *a).collect();
    let opts = Opts {
        token: args.require_token.clone(),
        basic: args
            .require_basic
            .as_deref()
            .map(|b| model::base64(b.as_bytes())),
        kill_grace: args.kill_grace_ms.map(Duration::from_millis),
        keepalive: Duration::from_millis(args.sse_keepalive_ms.max(10)),
        crlf: args.sse_crlf,
        no_pods: args.no_pods,
    };
    let sh = Arc::new(Shared::new(&addrs, apps, leader, opts));

    if let Some(p) = &args.control_socket {
        if p.exists() {
            std::fs::remove_file(p).with_context(|| format!("removing stale {}", p.display()))?;
        }
        let l = UnixListener::bind(p).with_context(|| format!("binding {}", p.display()))?;
        out.push_str(&format!("control unix:{}\n", p.display()));
        let sh = sh.clone();
        tokio::spawn(async move {
            loop {
                if let Ok((s, _)) = l.accept().await {
                    tokio::spawn(serve_control(sh.clone(), TokioIo::new(s)));
                }
            }
        });
    }
    if let Some(a) = args.control {
        let l = TcpListener::bind(a)
            .await
            .with_context(|| format!("binding {a}"))?;
        out.push_str(&format!("control {}\n", l.local_addr()?));
        let sh = sh.clone();
        tokio::spawn(async move {
            loop {
                if let Ok((s, _)) = l.accept().await {
                    tokio::spawn(serve_control(sh.clone(), TokioIo::new(s)));
                }
            }
        });
    }
    for (i, (l, _)) in listeners.into_iter().enumerate() {
        tokio::spawn(run_instance(sh.clone(), i, l));
    }
    out.push_str("ready\n");
    {
        use std::io::Write;
        let mut so = std::io::stdout().lock();
        so.write_all(out.as_bytes())?;
        so.flush()?;
    }
    eprintln!("fake-marathon: instances {addrs:?}, leader {leader:?}");
    tokio::time::sleep(Duration::from_secs(args.max_runtime_s)).await;
    eprintln!(
        "fake-marathon: --max-runtime-s {} reached, exiting",
        args.max_runtime_s
    );
    std::process::exit(0);
}

async fn serve_control<S>(sh: Arc<Shared>, io: TokioIo<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| control::handle(sh.clone(), req));
    if let Err(e) = http1::Builder::new().serve_connection(io, svc).await {
        eprintln!("fake-marathon[control] connection: {e}");
    }
}

/// Accepts for instance `i` while it is up; `down` closes the listener (new
/// connections are refused) and a later clear binds the same address again.
async fn run_instance(sh: Arc<Shared>, i: usize, first: TcpListener) {
    let addr = sh.instances[i].addr;
    let mut faults = sh.instances[i].faults.subscribe();
    let mut listener = Some(first);
    loop {
        let down = faults.borrow_and_update().down;
        if down {
            if listener.take().is_some() {
                eprintln!("fake-marathon[{i}] down: listener {addr} closed");
            }
            if faults.changed().await.is_err() {
                return;
            }
            continue;
        }
        let l = match &listener {
            Some(l) => l,
            None => match TcpListener::bind(addr).await {
                Ok(l) => {
                    eprintln!("fake-marathon[{i}] up again on {addr}");
                    listener.insert(l)
                }
                Err(e) => {
                    eprintln!("fake-marathon[{i}] rebinding {addr}: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        tokio::select! {
            r = l.accept() => match r {
                Ok((s, peer)) => { tokio::spawn(serve_conn(sh.clone(), i, s, peer)); }
                Err(e) => {
                    eprintln!("fake-marathon[{i}] accept: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            r = faults.changed() => if r.is_err() { return },
        }
    }
}

async fn serve_conn(sh: Arc<Shared>, i: usize, s: TcpStream, peer: SocketAddr) {
    let inst = &sh.instances[i];
    if inst.faults.borrow().reset {
        // SO_LINGER 0: close() sends RST instead of FIN.
        let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
        drop(s);
        eprintln!("fake-marathon[{i}] reset connection from {peer}");
        return;
    }
    let mut kill = inst.conn_kill.subscribe();
    let svc = {
        let sh = sh.clone();
        service_fn(move |req| api::handle(sh.clone(), i, peer, req))
    };
    let conn = http1::Builder::new().serve_connection(TokioIo::new(s), svc);
    tokio::select! {
        r = conn => if let Err(e) = r {
            eprintln!("fake-marathon[{i}] connection from {peer}: {e}");
        },
        _ = kill.changed() => eprintln!("fake-marathon[{i}] dropped connection from {peer}"),
    }
}
