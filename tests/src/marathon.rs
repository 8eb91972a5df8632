//! Drives `l4lb-fake-marathon`, a Marathon-compatible test server, inside a
//! sandbox: N instances on `127.0.0.1:<port>` in the sandbox netns (one
//! shared state), scripted over a unix socket in the sandbox workdir (the
//! test process is not in the netns; a unix socket needs no setns per call).
//!
//! ```no_run
//! # use l4lb_tests::{Sandbox, marathon::{FakeMarathon, TaskSpec, redis_app}};
//! let mut sb = Sandbox::new("mara").unwrap();
//! let m = FakeMarathon::start(&mut sb, 2, serde_json::json!({"apps": [
//!     redis_app("/redis", "/redis:6379", &[TaskSpec::new("127.0.0.2", 7000)]),
//! ]})).unwrap();
//! let t = m.scale("/redis", &TaskSpec::new("127.0.0.3", 7000).alive(Some(true))).unwrap();
//! m.kill(t["id"].as_str().unwrap()).unwrap(); // TASK_KILLING
//! ```
use std::{
    fs,
    io::{BufRead, BufReader},
    net::SocketAddr,
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
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

pub use crate::bins::fake_marathon_bin;
use crate::sandbox::{Sandbox, lock};

pub use crate::fake_marathon::{client, model};

pub use client::{HttpReply, SseClient, SseEvent, StreamEnd};
pub use model::{Fault, PodInstanceSpec, TaskSpec, pod_status};

/// A host-networking app in the documented shape (like the fixture
/// `apps_redis_host.json`): `portDefinitions[0].labels.VIP_0 = vip_label`,
/// tasks built from `tasks`, and a MESOS_TCP health check when any task spec
/// sets `alive` (use [`redis_app_opts`] to choose).
pub fn redis_app(id: &str, vip_label: &str, tasks: &[TaskSpec]) -> Value {
    let hc = tasks.iter().any(|t| t.alive.is_some());
    model::host_app(id, vip_label, tasks, hc)
}

/// [`redis_app`] with the health check chosen explicitly (a health-checked
/// app whose tasks have `alive: None` has tasks with no result yet).
pub fn redis_app_opts(id: &str, vip_label: &str, tasks: &[TaskSpec], health_check: bool) -> Value {
    model::host_app(id, vip_label, tasks, health_check)
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A running `l4lb-fake-marathon` in a sandbox. It is killed with the
/// sandbox (or earlier with `sb.kill(m.pid())`).
pub struct FakeMarathon {
    pid: u32,
    addrs: Vec<SocketAddr>,
    control: PathBuf,
    log: PathBuf,
    netns: PathBuf,
}

impl FakeMarathon {
    /// `instances` Marathon instances on 127.0.0.1:0 in the sandbox netns,
    /// instance 0 leading, initial apps `initial_apps` (`{"apps":[…]}`, a
    /// bare array, or `Value::Null` for none).
    pub fn start(sb: &mut Sandbox, instances: usize, initial_apps: Value) -> Result<FakeMarathon> {
        Self::start_with_args(sb, instances, initial_apps, &[])
    }

    /// [`FakeMarathon::start`] plus server flags, e.g.
    /// `["--require-token", "T"]`, `["--kill-grace-ms", "500"]`,
    /// `["--sse-keepalive-ms", "200"]`, `["--leader", "none"]`.
    pub fn start_with_args(
        sb: &mut Sandbox,
        instances: usize,
        initial_apps: Value,
        extra_args: &[&str],
    ) -> Result<FakeMarathon> {
        Self::spawn_on(sb, "127.0.0.1", instances, initial_apps, extra_args)
    }

    /// One instance listening on `ip` (an address of the sandbox netns, e.g.
    /// of a veth, so other namespaces reach it by a route).
    pub fn start_on(sb: &mut Sandbox, ip: &str, initial_apps: Value) -> Result<FakeMarathon> {
        Self::spawn_on(sb, ip, 1, initial_apps, &[])
    }

    fn spawn_on(
        sb: &mut Sandbox,
        ip: &str,
        instances: usize,
        initial_apps: Value,
        extra_args: &[&str],
    ) -> Result<FakeMarathon> {
        if instances == 0 {
            bail!("a Marathon cluster needs at least one instance");
        }
        let bin = fake_marathon_bin();
        if !bin.is_file() {
            bail!(
                "{} not found (cargo build -p l4lb-tests, or set L4LB_FAKE_MARATHON_BIN)",
                bin.display()
            );
        }
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let base = sb.workdir().join(format!("fake-marathon-{n}"));
        let state = base.with_extension("json");
        let control = base.with_extension("sock");
        let log = base.with_extension("log");
        let apps = if initial_apps.is_null() {
            json!({"apps": []})
        } else {
            initial_apps
        };
        fs::write(&state, serde_json::to_vec_pretty(&apps)?)
            .with_context(|| format!("writing {}", state.display()))?;
        let log_file =
            fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;

        let mut cmd = sb.in_netns(&bin);
        let listen = format!("{ip}:0");
        for _ in 0..instances {
            cmd.args(["--listen", &listen]);
        }
        cmd.arg("--state")
            .arg(&state)
            .arg("--control-socket")
            .arg(&control)
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file);
        let mut child = cmd.spawn().with_context(|| format!("spawning {cmd:?}"))?;
        let out = child.stdout.take().context("fake-marathon stdout")?;
        let pid = child.id();
        lock(&sb.children).push(child);

        // Readiness lines on a thread so a wedged server cannot hang us; it
        // keeps draining stdout afterwards.
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut addrs = vec![];
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).map_err(|_| {
                anyhow!(
                    "fake-marathon did not become ready (exited or timed out); log:\n{}",
                    fs::read_to_string(&log).unwrap_or_default()
                )
            })?;
            match line.split_once(' ') {
                _ if line == "ready" => break,
                Some(("listen", a)) => addrs.push(a.parse()?),
                Some(("control", _)) => {}
                _ => bail!("unexpected fake-marathon output {line:?}"),
            }
        }
        if addrs.len() != instances {
            bail!("fake-marathon listed {addrs:?}, expected {instances} instances");
        }
        Ok(FakeMarathon {
            pid,
            addrs,
            control,
            log,
            netns: sb.netns_path(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// `http://127.0.0.1:PORT` per instance, in instance order.
    pub fn urls(&self) -> Vec<String> {
        self.addrs.iter().map(|a| format!("http://{a}")).collect()
    }

    pub fn url(&self, instance: usize) -> String {
        format!("http://{}", self.addrs[instance])
    }

    pub fn control_socket(&self) -> &Path {
        &self.control
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The server's stderr so far (one line per request and control call).
    pub fn log(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// One control call; the JSON answer, or an error with the server's message.
    pub fn control(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        // A PUT of 10,000 apps re-renders the whole state in the (debug)
        // fake: seconds on a loaded 2-core box.
        let timeout = Duration::from_secs(30);
        let s = UnixStream::connect(&self.control)
            .with_context(|| format!("connecting to {}", self.control.display()))?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let r = client::exchange(s, method, "fake-marathon", path, &[], &body, timeout)
            .with_context(|| format!("control {method} {path}"))?;
        let v = r
            .json()
            .with_context(|| format!("control {method} {path}"))?;
        if r.status != 200 {
            bail!("control {method} {path} -> {}: {}", r.status, v["message"]);
        }
        Ok(v)
    }

    /// Current state, `{"apps":[…]}` with tasks.
    pub fn apps(&self) -> Result<Value> {
        self.control("GET", "/apps", None)
    }

    /// `{"leader", "instances":[{"index","addr","url","faults","sseStreams","requests","withAuth"}], "apps"}`.
    pub fn state(&self) -> Result<Value> {
        self.control("GET", "/state", None)
    }

    /// Requests and body bytes served so far, by kind (`served::Kind`).
    pub fn served(&self) -> Result<Value> {
        self.control("GET", "/served", None)
    }

    /// Replaces every app (events for what changed).
    pub fn put_apps(&self, apps: Value) -> Result<()> {
        self.control("PUT", "/apps", Some(&apps)).map(drop)
    }

    /// Adds one app or replaces the one with its id.
    pub fn add_app(&self, app: Value) -> Result<()> {
        self.control("POST", "/apps", Some(&app)).map(drop)
    }

    /// Removes an app: its tasks TASK_KILLED, `app_terminated_event`.
    pub fn remove_app(&self, app_id: &str) -> Result<()> {
        let id = app_id.trim_start_matches('/');
        self.control("DELETE", &format!("/apps/{id}"), None)
            .map(drop)
    }

    /// Adds or replaces one pod (a status as [`pod_status`] builds it);
    /// the fake publishes the pod and task events Marathon would.
    pub fn put_pod(&self, pod: &Value) -> Result<()> {
        self.control("POST", "/pods", Some(pod)).map(drop)
    }

    /// Removes a pod (`pod_deleted_event`).
    pub fn remove_pod(&self, pod_id: &str) -> Result<()> {
        let id = pod_id.trim_start_matches('/');
        self.control("DELETE", &format!("/pods/{id}"), None)
            .map(drop)
    }

    /// Every pod status, as `/v2/pods/::status` lists them.
    pub fn pods(&self) -> Result<Value> {
        self.control("GET", "/pods", None)
    }

    /// Starts one more task of `app`; returns the task as Marathon lists it.
    pub fn scale(&self, app: &str, task: &TaskSpec) -> Result<Value> {
        let mut body = serde_json::to_value(task)?;
        body["app"] = json!(app);
        Ok(self.control("POST", "/scale", Some(&body))?["task"].clone())
    }

    /// First call: TASK_KILLING; second call (or the server's
    /// `--kill-grace-ms`): TASK_KILLED and removed. Returns the new state.
    pub fn kill(&self, task_id: &str) -> Result<String> {
        let v = self.control("POST", "/kill", Some(&json!({"taskId": task_id})))?;
        Ok(v["state"].as_str().unwrap_or_default().to_string())
    }

    /// Straight to TASK_KILLED and removed.
    pub fn kill_now(&self, task_id: &str) -> Result<()> {
        let body = json!({"taskId": task_id, "force": true});
        self.control("POST", "/kill", Some(&body)).map(drop)
    }

    /// Health-check result: `Some(alive)`, or `None` for "no result yet".
    pub fn set_health(&self, task_id: &str, alive: Option<bool>) -> Result<()> {
        let body = json!({"taskId": task_id, "alive": alive});
        self.control("POST", "/health", Some(&body)).map(drop)
    }

    /// Any Mesos state (e.g. TASK_UNREACHABLE); terminal states remove the task.
    pub fn set_task_state(&self, task_id: &str, state: &str) -> Result<()> {
        let body = json!({"taskId": task_id, "state": state});
        self.control("POST", "/task_state", Some(&body)).map(drop)
    }

    /// The leading instance; `None`: `/v2/leader` is 404, the rest 503.
    pub fn set_leader(&self, leader: Option<usize>) -> Result<()> {
        self.control("POST", "/leader", Some(&json!({ "leader": leader })))
            .map(drop)
    }

    pub fn fault(&self, instance: usize, fault: Fault) -> Result<()> {
        let mut body = serde_json::to_value(&fault)?;
        body["instance"] = json!(instance);
        self.control("POST", "/fault", Some(&body)).map(drop)
    }

    /// Clears every instance's faults (a down instance listens again).
    pub fn clear_faults(&self) -> Result<()> {
        self.control("POST", "/clear_faults", Some(&json!({})))
            .map(drop)
    }

    pub fn clear_faults_of(&self, instance: usize) -> Result<()> {
        let body = json!({ "instance": instance });
        self.control("POST", "/clear_faults", Some(&body)).map(drop)
    }

    /// Publishes a raw event (`eventType` required) on the event bus.
    pub fn emit(&self, event: Value) -> Result<()> {
        self.control("POST", "/event", Some(&event)).map(drop)
    }

    /// GET `path` (with query) on an instance, from inside the netns.
    pub fn get(&self, instance: usize, path: &str, headers: &[(&str, &str)]) -> Result<HttpReply> {
        client::get_in_netns(
            &self.netns,
            &format!("{}{path}", self.url(instance)),
            headers,
        )
    }

    /// Opens `/v2/events{query}` on an instance (e.g. query
    /// `?event_type=status_update_event`), from inside the netns.
    pub fn events(
        &self,
        instance: usize,
        query: &str,
        headers: &[(&str, &str)],
    ) -> Result<SseClient> {
        SseClient::open(
            &self.netns,
            &format!("{}/v2/events{query}", self.url(instance)),
            headers,
        )
    }
}

/// GET an `http://IP:PORT/…` URL from inside the sandbox netns.
pub fn http_get(sb: &Sandbox, url: &str, headers: &[(&str, &str)]) -> Result<HttpReply> {
    client::get_in_netns(&sb.netns_path(), url, headers)
}
