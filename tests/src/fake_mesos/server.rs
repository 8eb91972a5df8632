//! The fake master's HTTP (raw HTTP/1.1 on tokio: requests are small, the
//! stream is written as it goes). Mesos side: `POST /api/v1` SUBSCRIBE
//! (RecordIO: SUBSCRIBED, then events and heartbeats), `GET /master/state`;
//! a non-leader answers both with 307 to the leader, as a Mesos master does
//! (`Location: //host:port/path`).
//! Control side (unix socket), JSON:
//!
//! | call | body | effect |
//! |---|---|---|
//! | `POST /event` | an operator API message | applied to the state (TASK_ADDED, TASK_UPDATED, AGENT_ADDED, AGENT_REMOVED, FRAMEWORK_ADDED, FRAMEWORK_UPDATED, FRAMEWORK_REMOVED; a removed agent or framework takes its tasks), sent on every stream |
//! | `PUT /state` | a `get_state` object | replaces the state (open streams keep theirs); a master just elected has only `recovered_agents` (`model::recovering`) |
//! | `GET /state` | | the current `get_state` object |
//! | `POST /leader` | `{"leader": URL\|null}` | URL: not the leader any more: open streams end, every Mesos request answers 307 to URL; null: leader again |
//! | `POST /fault` | `{"fault": "cut"\|"garbage"\|"silent"\|"status", "status"?: N}` | cut: open streams get half a record and close; garbage: a record that is not JSON; silent: streams send nothing more (new ones neither); status: every Mesos request answers N |
//! | `POST /clear_faults` | | silent and status off |
//! | `GET /stats` | | `{"subscriptions", "state_reads", "open_streams", "redirects", "leader"}` (leader: null when leading) |
use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering::SeqCst},
    },
    time::Duration,
};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    sync::broadcast,
};

use super::model::{self, list, record};

/// What open streams are told.
#[derive(Clone, Debug)]
enum Frame {
    Record(Vec<u8>),
    Cut,
    Garbage,
    /// Leadership lost: the stream ends (a Mesos master that is no longer
    /// leading exits, closing its connections).
    Close,
}

pub struct Shared {
    state: Mutex<Value>,
    frames: broadcast::Sender<Frame>,
    heartbeat: Duration,
    silent: AtomicBool,
    status: AtomicU16,
    subscriptions: AtomicUsize,
    state_reads: AtomicUsize,
    open: AtomicUsize,
    redirects: AtomicUsize,
    /// The leader's URL while this master is not leading.
    leader: Mutex<Option<String>>,
}

pub struct Req {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
}

impl Shared {
    pub fn new(get_state: Value, heartbeat: Duration) -> Arc<Shared> {
        Arc::new(Shared {
            state: Mutex::new(get_state),
            frames: broadcast::channel(1024).0,
            heartbeat,
            silent: AtomicBool::new(false),
            status: AtomicU16::new(0),
            subscriptions: AtomicUsize::new(0),
            state_reads: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            redirects: AtomicUsize::new(0),
            leader: Mutex::new(None),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Value> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn leader(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.leader.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Reads one request (head + Content-Length body, both bounded).
pub async fn read_request<S: AsyncRead + Unpin>(sock: &mut S) -> Option<Req> {
    let mut buf = Vec::new();
    let mut b = [0u8; 8192];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 << 10 {
            return None;
        }
        let n = sock.read(&mut b).await.ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&b[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut first = head.split_whitespace();
    let (method, path) = (first.next()?.to_owned(), first.next()?.to_owned());
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0)
        .min(16 << 20);
    while buf.len() < end + len {
        let n = sock.read(&mut b).await.ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&b[..n]);
    }
    Some(Req {
        method,
        path,
        body: buf[end..end + len].to_vec(),
    })
}

pub async fn reply<S: AsyncWrite + Unpin>(sock: &mut S, status: u16, body: &Value) {
    reply_with(sock, status, "", body).await
}

/// A reply with `extra` header lines (each ending in CRLF).
async fn reply_with<S: AsyncWrite + Unpin>(sock: &mut S, status: u16, extra: &str, body: &Value) {
    let body = body.to_string();
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    );
    let _ = sock.write_all(format!("{head}{body}").as_bytes()).await;
}

/// One connection to the Mesos port.
pub async fn serve_mesos<S: AsyncRead + AsyncWrite + Unpin>(sh: Arc<Shared>, mut sock: S) {
    let Some(req) = read_request(&mut sock).await else {
        return;
    };
    eprintln!("fake-mesos {} {}", req.method, req.path);
    let status = sh.status.load(SeqCst);
    if status != 0 {
        return reply(&mut sock, status, &json!({"message": "fault"})).await;
    }
    let leader = sh.leader().clone();
    if let Some(leader) = leader {
        sh.redirects.fetch_add(1, SeqCst);
        let location = format!("Location: {}\r\n", location(&leader, &req.path));
        return reply_with(&mut sock, 307, &location, &json!({})).await;
    }
    match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/api/v1") if is_subscribe(&req.body) => stream(sh, sock).await,
        ("POST", "/api/v1") => reply(&mut sock, 400, &json!({"message": "only SUBSCRIBE"})).await,
        ("GET", "/master/state") => {
            sh.state_reads.fetch_add(1, SeqCst);
            let st = model::master_state(&sh.state());
            reply(&mut sock, 200, &st).await
        }
        _ => reply(&mut sock, 404, &json!({"message": "not found"})).await,
    }
}

/// Where a non-leader sends `path`: the leader's `//host:port/path`, the
/// scheme-relative form a Mesos master writes.
fn location(leader: &str, path: &str) -> String {
    let authority = leader.split_once("://").map_or(leader, |(_, a)| a);
    format!("//{}{path}", authority.trim_end_matches('/'))
}

fn is_subscribe(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body).is_ok_and(|v| v["type"] == "SUBSCRIBE")
}

/// The RecordIO stream of one subscription.
async fn stream<S: AsyncWrite + Unpin>(sh: Arc<Shared>, mut sock: S) {
    sh.subscriptions.fetch_add(1, SeqCst);
    let mut frames = sh.frames.subscribe();
    let first = model::subscribed(&sh.state(), sh.heartbeat.as_secs_f64());
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
    if sock.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    sh.open.fetch_add(1, SeqCst);
    if !sh.silent.load(SeqCst) {
        let _ = sock.write_all(&record(&first)).await;
    }
    let mut beat = tokio::time::interval(sh.heartbeat);
    loop {
        let out = tokio::select! {
            _ = beat.tick() => record(&json!({"type": "HEARTBEAT"})),
            f = frames.recv() => match f {
                Ok(Frame::Record(r)) => r,
                Ok(Frame::Cut) => {
                    let r = record(&json!({"type": "HEARTBEAT", "padding": "x".repeat(64)}));
                    let _ = sock.write_all(&r[..r.len() / 2]).await;
                    break;
                }
                Ok(Frame::Garbage) => b"9\nnot json!".to_vec(),
                Ok(Frame::Close) | Err(_) => break,
            },
        };
        if sh.silent.load(SeqCst) {
            continue;
        }
        if sock.write_all(&out).await.is_err() {
            break;
        }
    }
    sh.open.fetch_sub(1, SeqCst);
}

/// One control call.
pub async fn serve_control<S: AsyncRead + AsyncWrite + Unpin>(sh: Arc<Shared>, mut sock: S) {
    let Some(req) = read_request(&mut sock).await else {
        return;
    };
    let body = serde_json::from_slice::<Value>(&req.body).unwrap_or(Value::Null);
    let (status, answer) = match control(&sh, &req.method, &req.path, body) {
        Ok(v) => (200, v),
        Err(m) => (400, json!({"message": m})),
    };
    eprintln!(
        "fake-mesos[control] {} {} -> {status}",
        req.method, req.path
    );
    reply(&mut sock, status, &answer).await
}

fn control(sh: &Shared, method: &str, path: &str, body: Value) -> Result<Value, String> {
    match (method, path) {
        ("POST", "/event") => {
            apply_event(&mut sh.state(), &body);
            let _ = sh.frames.send(Frame::Record(record(&body)));
        }
        ("PUT", "/state") => *sh.state() = body,
        ("GET", "/state") => return Ok(sh.state().clone()),
        ("POST", "/leader") => lead(sh, &body)?,
        ("POST", "/fault") => fault(sh, &body)?,
        ("POST", "/clear_faults") => {
            sh.silent.store(false, SeqCst);
            sh.status.store(0, SeqCst);
        }
        ("GET", "/stats") => {
            return Ok(json!({"subscriptions": sh.subscriptions.load(SeqCst),
                "state_reads": sh.state_reads.load(SeqCst), "open_streams": sh.open.load(SeqCst),
                "redirects": sh.redirects.load(SeqCst), "leader": sh.leader().clone()}));
        }
        _ => return Err(format!("no control call {method} {path}")),
    }
    Ok(json!({}))
}

/// `{"leader": URL}`: step down (open streams end); `{"leader": null}`: lead.
fn lead(sh: &Shared, body: &Value) -> Result<(), String> {
    match &body["leader"] {
        Value::Null => *sh.leader() = None,
        Value::String(url) if !url.is_empty() => {
            *sh.leader() = Some(url.clone());
            let _ = sh.frames.send(Frame::Close);
        }
        other => return Err(format!("leader: a URL or null, not {other}")),
    }
    Ok(())
}

fn fault(sh: &Shared, body: &Value) -> Result<(), String> {
    match body["fault"].as_str() {
        Some("cut") => drop(sh.frames.send(Frame::Cut)),
        Some("garbage") => drop(sh.frames.send(Frame::Garbage)),
        Some("silent") => sh.silent.store(true, SeqCst),
        Some("status") => {
            let s = body["status"].as_u64().and_then(|s| u16::try_from(s).ok());
            sh.status.store(
                s.filter(|s| (100..600).contains(s)).ok_or("status: N")?,
                SeqCst,
            );
        }
        other => return Err(format!("unknown fault {other:?}")),
    }
    Ok(())
}

/// Keeps the stored state what a new subscriber should see, as the
/// master's own would be: TASK_ADDED adds, TASK_UPDATED sets the state (a
/// terminal one removes the task), AGENT_ADDED and FRAMEWORK_ADDED/UPDATED
/// add or replace (a re-registered agent is no longer recovered), AGENT_REMOVED and FRAMEWORK_REMOVED remove it with its
/// tasks (Mesos ends those tasks first, with TASK_UPDATEDs).
fn apply_event(state: &mut Value, ev: &Value) {
    let id_of = |v: &Value| v["value"].clone();
    match ev["type"].as_str() {
        Some("TASK_ADDED") => upsert(state, TASKS, &ev["task_added"]["task"], &["task_id"]),
        Some("TASK_UPDATED") => task_updated(state, &ev["task_updated"]),
        Some("AGENT_ADDED") => {
            let a = &ev["agent_added"]["agent"];
            let id = id_of(&a["agent_info"]["id"]);
            retain(state, RECOVERED, |r| id_of(&r["id"]) != id);
            upsert(state, AGENTS, a, AGENT_ID)
        }
        Some("AGENT_REMOVED") => {
            let id = id_of(&ev["agent_removed"]["agent_id"]);
            retain(state, AGENTS, |a| id_of(&a["agent_info"]["id"]) != id);
            retain(state, TASKS, |t| id_of(&t["agent_id"]) != id);
        }
        Some("FRAMEWORK_ADDED") => upsert(
            state,
            FRAMEWORKS,
            &ev["framework_added"]["framework"],
            FW_ID,
        ),
        Some("FRAMEWORK_UPDATED") => upsert(
            state,
            FRAMEWORKS,
            &ev["framework_updated"]["framework"],
            FW_ID,
        ),
        Some("FRAMEWORK_REMOVED") => {
            let id = id_of(&ev["framework_removed"]["framework_info"]["id"]);
            retain(state, FRAMEWORKS, |f| {
                id_of(&f["framework_info"]["id"]) != id
            });
            retain(state, TASKS, |t| id_of(&t["framework_id"]) != id);
        }
        _ => {}
    }
}

const TASKS: [&str; 2] = ["get_tasks", "tasks"];
const AGENTS: [&str; 2] = ["get_agents", "agents"];
const RECOVERED: [&str; 2] = ["get_agents", "recovered_agents"];
const FRAMEWORKS: [&str; 2] = ["get_frameworks", "frameworks"];
const AGENT_ID: &[&str] = &["agent_info", "id"];
const FW_ID: &[&str] = &["framework_info", "id"];

fn task_updated(state: &mut Value, u: &Value) {
    let id = u["status"]["task_id"]["value"].clone();
    let st = u["state"].as_str().unwrap_or_default();
    if TERMINAL.contains(&st) {
        return retain(state, TASKS, |t| t["task_id"]["value"] != id);
    }
    let mut tasks = list(state, &TASKS);
    for t in tasks.iter_mut().filter(|t| t["task_id"]["value"] == id) {
        t["state"] = json!(st);
    }
    state[TASKS[0]][TASKS[1]] = Value::Array(tasks);
}

/// Replaces the item of `list_at` whose `id_at` is `item`'s, or appends it.
fn upsert(state: &mut Value, list_at: [&str; 2], item: &Value, id_at: &[&str]) {
    let id = |v: &Value| id_at.iter().fold(v, |v, k| &v[*k])["value"].clone();
    let mut items = list(state, &list_at);
    items.retain(|i| id(i) != id(item));
    items.push(item.clone());
    state[list_at[0]][list_at[1]] = Value::Array(items);
}

fn retain(state: &mut Value, list_at: [&str; 2], keep: impl Fn(&Value) -> bool) {
    let mut items = list(state, &list_at);
    items.retain(keep);
    state[list_at[0]][list_at[1]] = Value::Array(items);
}

const TERMINAL: &[&str] = &[
    "TASK_FINISHED",
    "TASK_FAILED",
    "TASK_KILLED",
    "TASK_LOST",
    "TASK_ERROR",
    "TASK_DROPPED",
    "TASK_GONE",
    "TASK_GONE_BY_OPERATOR",
];

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
