//! The fake master's HTTP (raw HTTP/1.1 on tokio: requests are small, the
//! stream is written as it goes). Mesos side: `POST /api/v1` SUBSCRIBE
//! (RecordIO: SUBSCRIBED, then events and heartbeats), `GET /master/state`.
//! Control side (unix socket), JSON:
//!
//! | call | body | effect |
//! |---|---|---|
//! | `POST /event` | an operator API message | applied to the state, sent on every stream |
//! | `PUT /state` | a `get_state` object | replaces the state (open streams keep theirs) |
//! | `POST /fault` | `{"fault": "cut"\|"garbage"\|"silent"\|"status", "status"?: N}` | cut: open streams get half a record and close; garbage: a record that is not JSON; silent: streams send nothing more (new ones neither); status: every Mesos request answers N |
//! | `POST /clear_faults` | | silent and status off |
//! | `GET /stats` | | `{"subscriptions", "state_reads", "open_streams"}` |
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
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Value> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
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
    let body = body.to_string();
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
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
                Err(_) => break,
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
        ("POST", "/fault") => fault(sh, &body)?,
        ("POST", "/clear_faults") => {
            sh.silent.store(false, SeqCst);
            sh.status.store(0, SeqCst);
        }
        ("GET", "/stats") => {
            return Ok(json!({"subscriptions": sh.subscriptions.load(SeqCst),
                "state_reads": sh.state_reads.load(SeqCst), "open_streams": sh.open.load(SeqCst)}));
        }
        _ => return Err(format!("no control call {method} {path}")),
    }
    Ok(json!({}))
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

/// Keeps the stored state what a new subscriber should see: TASK_ADDED
/// adds, TASK_UPDATED sets the state, a terminal one removes the task.
fn apply_event(state: &mut Value, ev: &Value) {
    let mut tasks = list(state, &["get_tasks", "tasks"]);
    match ev["type"].as_str() {
        Some("TASK_ADDED") => tasks.push(ev["task_added"]["task"].clone()),
        Some("TASK_UPDATED") => {
            let u = &ev["task_updated"];
            let id = &u["status"]["task_id"]["value"];
            let st = u["state"].as_str().unwrap_or_default();
            if TERMINAL.contains(&st) {
                tasks.retain(|t| &t["task_id"]["value"] != id);
            }
            for t in tasks.iter_mut().filter(|t| &t["task_id"]["value"] == id) {
                t["state"] = json!(st);
            }
        }
        _ => return,
    }
    state["get_tasks"]["tasks"] = Value::Array(tasks);
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
