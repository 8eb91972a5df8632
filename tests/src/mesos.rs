//! Drives `l4lb-fake-mesos` inside a sandbox: the master on
//! `127.0.0.1:<port>` in the sandbox netns, scripted over a unix socket in
//! the sandbox workdir. Two of them make a failover pair
//! ([`FakeMesos::start_pair`], [`FakeMesos::hand_over`]).
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

pub use crate::bins::fake_mesos_bin;
use crate::fake_marathon::client;
pub use crate::fake_mesos::model;
use crate::sandbox::{Sandbox, lock};

static SEQ: AtomicUsize = AtomicUsize::new(0);

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

    /// The counter `key` of [`stats`](Self::stats).
    pub fn stat(&self, key: &str) -> u64 {
        let stats = self.stats().expect("fake-mesos stats");
        stats[key]
            .as_u64()
            .unwrap_or_else(|| panic!("no counter {key} in {stats}"))
    }

    /// Waits until the counter `key` exceeds `than`; panics after `bound`.
    pub fn wait_stat_above(&self, key: &str, than: u64, bound: Duration) -> u64 {
        crate::wait::until(&format!("fake-mesos {key} > {than}"), bound, || {
            let n = self.stat(key);
            if n > than { Ok(n) } else { Err(n.to_string()) }
        })
    }

    /// The master's current `get_state` object.
    pub fn state(&self) -> Result<Value> {
        self.control("GET", "/state", None)
    }

    pub fn put_state(&self, get_state: &Value) -> Result<()> {
        self.control("PUT", "/state", Some(get_state)).map(drop)
    }

    /// `Some(m)`: stop leading (open streams end, requests get 307 to `m`);
    /// `None`: lead again.
    pub fn follow(&self, leader: Option<&FakeMesos>) -> Result<()> {
        let body = json!({"leader": leader.map(FakeMesos::url)});
        self.control("POST", "/leader", Some(&body)).map(drop)
    }

    /// Starts two masters on `get_state`: the first leads, the second
    /// redirects to it.
    pub fn start_pair(
        sb: &mut Sandbox,
        get_state: &Value,
        heartbeat_ms: u64,
    ) -> Result<(FakeMesos, FakeMesos)> {
        let leader = FakeMesos::start(sb, get_state, heartbeat_ms)?;
        let standby = FakeMesos::start(sb, get_state, heartbeat_ms)?;
        standby.follow(Some(&leader))?;
        Ok((leader, standby))
    }

    /// Leadership moves to `to`: it takes this master's state and leads,
    /// then this one steps down (its streams end, it answers 307 → `to`).
    pub fn hand_over(&self, to: &FakeMesos) -> Result<()> {
        to.put_state(&self.state()?)?;
        to.follow(None)?;
        self.follow(Some(to))
    }

    /// A real failover: `to` leads knowing only the agents, as recovered
    /// ones, and this master steps down. Returns the cluster as it was, for
    /// [`reregister`](Self::reregister).
    pub fn fail_over_to(&self, to: &FakeMesos) -> Result<Value> {
        let was = self.state()?;
        to.put_state(&model::recovering(&was))?;
        to.follow(None)?;
        self.follow(Some(to))?;
        Ok(was)
    }

    /// The agents of `cluster` re-register with this (new) leader: for each,
    /// AGENT_ADDED, then FRAMEWORK_ADDED of the frameworks of its tasks not
    /// yet added, then TASK_ADDED of its tasks (the order of dcos-net's
    /// `recovered-agents.json`).
    pub fn reregister(&self, cluster: &Value) -> Result<()> {
        let tasks = model::list(cluster, &["get_tasks", "tasks"]);
        let mut added = std::collections::BTreeSet::new();
        for a in model::list(cluster, &["get_agents", "agents"]) {
            self.emit(&model::agent_added(&a))?;
            let id = &a["agent_info"]["id"]["value"];
            for t in tasks.iter().filter(|t| &t["agent_id"]["value"] == id) {
                let fw = &t["framework_id"]["value"];
                let framework = model::list(cluster, &["get_frameworks", "frameworks"])
                    .into_iter()
                    .find(|f| &f["framework_info"]["id"]["value"] == fw);
                if let Some(f) = framework.filter(|_| added.insert(fw.to_string())) {
                    self.emit(&model::framework_added(&f))?;
                }
                self.emit(&model::task_added(t))?;
            }
        }
        Ok(())
    }

    /// What a Mesos master does when an agent is removed: each of its tasks
    /// gets a TASK_UPDATED to `task_state` (TASK_LOST, TASK_GONE_BY_OPERATOR,
    /// …), then AGENT_REMOVED.
    pub fn remove_agent(&self, agent_id: &str, task_state: &str) -> Result<()> {
        for [fw, task, agent] in self.tasks_where(|t| t["agent_id"]["value"] == agent_id)? {
            self.emit(&model::task_updated(&fw, &task, &agent, task_state))?;
        }
        self.emit(&model::agent_removed(agent_id))
    }

    /// A framework torn down, as Mesos reports it: TASK_KILLED for each of
    /// its tasks, then FRAMEWORK_REMOVED (the sequence of dcos-net's
    /// `hello-world.json`).
    pub fn teardown(&self, framework: &Value) -> Result<()> {
        let id = &framework["framework_info"]["id"]["value"];
        for [fw, task, agent] in self.tasks_where(|t| &t["framework_id"]["value"] == id)? {
            self.emit(&model::task_updated(&fw, &task, &agent, "TASK_KILLED"))?;
        }
        self.emit(&model::framework_removed(framework))
    }

    /// [framework id, task id, agent id] of the tasks `pick` selects.
    fn tasks_where(&self, pick: impl Fn(&Value) -> bool) -> Result<Vec<[String; 3]>> {
        let state = self.state()?;
        let s = |v: &Value| v["value"].as_str().unwrap_or_default().to_owned();
        Ok(model::list(&state, &["get_tasks", "tasks"])
            .iter()
            .filter(|t| pick(t))
            .map(|t| [s(&t["framework_id"]), s(&t["task_id"]), s(&t["agent_id"])])
            .collect())
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
