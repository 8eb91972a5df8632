//! Drives `l4lb-fake-mesos` inside a sandbox: the master on
//! `127.0.0.1:<port>` in the sandbox netns, scripted over a unix socket in
//! the sandbox workdir.
use std::{
    fs,
    io::{BufRead, BufReader},
    net::SocketAddr,
    os::unix::net::UnixStream,
    path::PathBuf,
    process::Stdio,
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

use crate::fake_marathon::client;
pub use crate::fake_mesos::model;
use crate::sandbox::{Sandbox, lock};

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// `l4lb-fake-mesos` (env `L4LB_FAKE_MESOS_BIN` overrides), next to the
/// test binary or one directory up.
pub fn fake_mesos_bin() -> PathBuf {
    const NAME: &str = "l4lb-fake-mesos";
    if let Some(p) = std::env::var_os("L4LB_FAKE_MESOS_BIN").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let dir = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(PathBuf::from))
        .unwrap_or_default();
    let mut candidates = vec![dir.join(NAME)];
    if let Some(parent) = dir.parent() {
        candidates.push(parent.join(NAME));
    }
    candidates
        .iter()
        .find(|p| p.is_file())
        .unwrap_or(&candidates[0])
        .clone()
}

pub struct FakeMesos {
    pub addr: SocketAddr,
    control: PathBuf,
    log: PathBuf,
}

impl FakeMesos {
    /// Starts the master with `get_state` and a heartbeat every `heartbeat_ms`.
    pub fn start(sb: &mut Sandbox, get_state: &Value, heartbeat_ms: u64) -> Result<FakeMesos> {
        let bin = fake_mesos_bin();
        if !bin.is_file() {
            bail!("{} not found (cargo build -p l4lb-tests)", bin.display());
        }
        let base = sb.workdir().join(format!(
            "fake-mesos-{}",
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let (state, control, log) = (
            base.with_extension("json"),
            base.with_extension("sock"),
            base.with_extension("log"),
        );
        fs::write(&state, serde_json::to_vec(get_state)?)?;
        let mut cmd = sb.in_netns(&bin);
        cmd.args([
            "--listen",
            "127.0.0.1:0",
            "--heartbeat-ms",
            &heartbeat_ms.to_string(),
        ])
        .arg("--state")
        .arg(&state)
        .arg("--control-socket")
        .arg(&control)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(fs::File::create(&log)?);
        let mut child = cmd.spawn().with_context(|| format!("spawning {cmd:?}"))?;
        let out = child.stdout.take().context("fake-mesos stdout")?;
        lock(&sb.children).push(child);
        let addr = ready(out, &log)?;
        Ok(FakeMesos { addr, control, log })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One control call; its JSON answer.
    pub fn control(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let timeout = Duration::from_secs(10);
        let s = UnixStream::connect(&self.control)
            .with_context(|| format!("connecting to {}", self.control.display()))?;
        s.set_read_timeout(Some(timeout))?;
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let r = client::exchange(s, method, "fake-mesos", path, &[], &body, timeout)?;
        let v = r.json()?;
        if r.status != 200 {
            bail!("control {method} {path} -> {}: {}", r.status, v["message"]);
        }
        Ok(v)
    }

    /// Applies `event` to the master's state and sends it on every stream.
    pub fn emit(&self, event: &Value) -> Result<()> {
        self.control("POST", "/event", Some(event)).map(drop)
    }

    /// `cut`, `garbage`, `silent`, or `status` (with `status`).
    pub fn fault(&self, fault: &str, status: Option<u16>) -> Result<()> {
        let body = json!({"fault": fault, "status": status});
        self.control("POST", "/fault", Some(&body)).map(drop)
    }

    pub fn clear_faults(&self) -> Result<()> {
        self.control("POST", "/clear_faults", None).map(drop)
    }

    pub fn stats(&self) -> Result<Value> {
        self.control("GET", "/stats", None)
    }
}

/// Reads `listen ADDR` … `ready` from the server's stdout (10 s at most).
fn ready(out: std::process::ChildStdout, log: &std::path::Path) -> Result<SocketAddr> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut addr = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).map_err(|_| {
            anyhow!(
                "fake-mesos did not become ready; log:\n{}",
                fs::read_to_string(log).unwrap_or_default()
            )
        })?;
        match line.split_once(' ') {
            _ if line == "ready" => break,
            Some(("listen", a)) => addr = Some(a.parse()?),
            Some(("control", _)) => {}
            _ => bail!("unexpected fake-mesos output {line:?}"),
        }
    }
    addr.context("fake-mesos named no address")
}
