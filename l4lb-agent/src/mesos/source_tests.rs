//! The source against scripted raw HTTP/1.1 masters on 127.0.0.1.
use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, atomic::Ordering},
    time::Duration,
};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use url::Url;

use super::*;
use crate::marathon::args::Credentials;
use crate::model::{Proto, Vip};
use crate::naming;

#[derive(Clone, Debug)]
struct Req {
    head: String,
    body: String,
}

/// What the master does with one connection.
enum Reply {
    /// 200, then these byte pieces as they come; the channel closing ends it.
    Stream(mpsc::UnboundedReceiver<Vec<u8>>),
    Json(u16, String),
    Redirect(String),
}

type Handler = dyn Fn(&Req) -> Reply + Send + Sync;

struct Master {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Req>>>,
}

impl Master {
    async fn start(handler: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> Master {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let l = log.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve(sock, handler.clone(), l.clone()));
            }
        });
        Master { addr, log }
    }

    fn url(&self) -> Url {
        Url::parse(&format!("http://{}/", self.addr)).unwrap()
    }

    fn requests(&self) -> Vec<Req> {
        self.log.lock().unwrap().clone()
    }
}

async fn read_request(sock: &mut TcpStream) -> Option<Req> {
    let mut buf = Vec::new();
    let mut b = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = sock.read(&mut b).await.ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&b[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let len = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>().unwrap())
        })
        .unwrap_or(0);
    while buf.len() < end + len {
        let n = sock.read(&mut b).await.ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&b[..n]);
    }
    let body = String::from_utf8_lossy(&buf[end..end + len]).into_owned();
    Some(Req { head, body })
}

async fn serve(mut sock: TcpStream, handler: Arc<Handler>, log: Arc<Mutex<Vec<Req>>>) {
    let Some(req) = read_request(&mut sock).await else {
        return;
    };
    log.lock().unwrap().push(req.clone());
    match handler(&req) {
        Reply::Json(status, body) => {
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(format!("{head}{body}").as_bytes()).await;
        }
        Reply::Redirect(loc) => {
            let head = format!(
                "HTTP/1.1 307 X\r\nLocation: {loc}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = sock.write_all(head.as_bytes()).await;
        }
        Reply::Stream(mut rx) => {
            let head =
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
            if sock.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            while let Some(piece) = rx.recv().await {
                if sock.write_all(&piece).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn record(v: &Value) -> Vec<u8> {
    let s = v.to_string();
    format!("{}\n{s}", s.len()).into_bytes()
}

fn task(id: &str, fw: &str, ip: &str, port: u16, vip: &str) -> Value {
    json!({
        "name": id.split('.').next().unwrap(),
        "task_id": {"value": id}, "framework_id": {"value": fw}, "agent_id": {"value": "a-S1"},
        "state": "TASK_RUNNING",
        "statuses": [{"state": "TASK_RUNNING", "timestamp": 1.0,
            "container_status": {"network_infos": [{"ip_addresses": [{"ip_address": ip}]}]}}],
        "discovery": {"name": id.split('.').next().unwrap(), "ports": {"ports": [{"number": port,
            "name": "http", "protocol": "tcp",
            "labels": {"labels": [{"key": "VIP_0", "value": vip}]}}]}},
        "container": {"type": "MESOS"}
    })
}

fn subscribed(tasks: Vec<Value>, heartbeat: f64) -> Value {
    json!({"type": "SUBSCRIBED", "subscribed": {"heartbeat_interval_seconds": heartbeat,
        "get_state": {
            "get_agents": {"agents": [{"agent_info": {"id": {"value": "a-S1"}, "hostname": "127.0.0.1"}, "active": true}]},
            "get_frameworks": {"frameworks": [
                {"framework_info": {"id": {"value": "fw-m"}, "name": "marathon"}, "active": true},
                {"framework_info": {"id": {"value": "fw-h"}, "name": "hello-world"}, "active": true}]},
            "get_tasks": {"tasks": tasks}}}})
}

fn killed(id: &str, fw: &str) -> Value {
    json!({"type": "TASK_UPDATED", "task_updated": {"framework_id": {"value": fw}, "state": "TASK_KILLED",
        "status": {"task_id": {"value": id}, "agent_id": {"value": "a-S1"}, "state": "TASK_KILLED", "timestamp": 2.0}}})
}

fn two_tasks() -> Vec<Value> {
    vec![
        task("web.1", "fw-m", "198.18.0.10", 8080, "/web:80"),
        task("api.1", "fw-h", "198.18.0.11", 9090, "api:80"),
    ]
}

fn config(urls: Vec<Url>) -> MesosConfig {
    let mut cfg = MesosConfig::new(urls);
    cfg.request_timeout = Duration::from_secs(2);
    cfg
}

fn start(cfg: MesosConfig) -> (mpsc::Receiver<Update>, Arc<MesosStats>) {
    let src = MesosSource::new(cfg).unwrap();
    let stats = src.stats();
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(src.run(tx));
    (rx, stats)
}

async fn next(rx: &mut mpsc::Receiver<Update>) -> Update {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("an update within 5 s")
        .expect("source running")
}

/// The backends of `key`'s VIP in an update's services (the persistent
/// map, which the catalog's copy is made from).
fn backends_of(u: &Update, key: &str, port: u16) -> Vec<String> {
    let ip = naming::VipAllocator::new().hashed_address(naming::Family::V4, key);
    let vip = Vip {
        addr: SocketAddr::new(ip, port),
        proto: Proto::Tcp,
    };
    let services = u.services.as_ref().expect("the parts' map");
    services
        .get(&vip)
        .map(|s| s.backends.keys().map(ToString::to_string).collect())
        .unwrap_or_default()
}

/// Snapshot at once, an event later; the subscription is the operator API's.
#[tokio::test]
async fn snapshot_then_events() {
    let (ptx, prx) = mpsc::unbounded_channel();
    let prx = Mutex::new(Some(prx));
    let m = Master::start(move |_| Reply::Stream(prx.lock().unwrap().take().unwrap())).await;
    let mut cfg = config(vec![m.url()]);
    cfg.auth = Some(Credentials::Token("tok".into()));
    let (mut rx, stats) = start(cfg);
    ptx.send(record(&subscribed(two_tasks(), 15.0))).unwrap();
    let u = next(&mut rx).await;
    assert_eq!(u.trigger, "mesos SUBSCRIBED");
    assert!(u.received_at.is_none());
    assert_eq!(backends_of(&u, "web.marathon", 80), ["198.18.0.10:8080"]);
    assert_eq!(backends_of(&u, "api.hello-world", 80), ["198.18.0.11:9090"]);
    assert_eq!(u.catalog.tasks.len(), 2);
    let req = &m.requests()[0];
    assert!(req.head.starts_with("POST /api/v1 "), "{}", req.head);
    let head = req.head.to_ascii_lowercase();
    assert!(head.contains("accept: application/json"), "{head}");
    assert!(head.contains("authorization: token=tok"), "{head}");
    assert_eq!(
        req.body,
        r#"{"type":"SUBSCRIBED"}"#.replace("SUBSCRIBED", "SUBSCRIBE")
    );
    // An event split across writes; a heartbeat changes nothing.
    let rec = record(&killed("web.1", "fw-m"));
    let (a, b) = rec.split_at(7);
    ptx.send(a.to_vec()).unwrap();
    ptx.send(b.to_vec()).unwrap();
    ptx.send(record(&json!({"type": "HEARTBEAT"}))).unwrap();
    let u = next(&mut rx).await;
    assert_eq!(u.trigger, "TASK_UPDATED");
    assert!(
        u.received_at.is_some(),
        "an event's catalog carries its arrival"
    );
    assert!(backends_of(&u, "web.marathon", 80).is_empty());
    assert_eq!(u.catalog.tasks.len(), 1);
    assert_eq!(stats.events.load(Ordering::Relaxed), 3);
}

/// A stream cut mid-record, then a garbage record: no catalog from either;
/// the next SUBSCRIBED replaces the state whole.
#[tokio::test]
async fn a_broken_stream_never_replaces_the_table() {
    let conns = Arc::new(Mutex::new(Vec::new()));
    let c2 = conns.clone();
    let m = Master::start(move |_| {
        let (tx, rx) = mpsc::unbounded_channel();
        c2.lock().unwrap().push(tx);
        Reply::Stream(rx)
    })
    .await;
    let (mut rx, stats) = start(config(vec![m.url()]));
    let conn = |i: usize| {
        let conns = conns.clone();
        async move {
            loop {
                if let Some(tx) = conns.lock().unwrap().get(i).cloned() {
                    return tx;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    let bounded = |f| tokio::time::timeout(Duration::from_secs(10), f);
    let c0 = bounded(conn(0)).await.expect("a first subscription");
    let rec = record(&subscribed(two_tasks(), 15.0));
    c0.send(rec[..rec.len() / 2].to_vec()).unwrap();
    drop(c0);
    conns.lock().unwrap()[0] = mpsc::unbounded_channel().0;
    let c1 = bounded(conn(1)).await.expect("a second subscription");
    c1.send(b"5\nxxxxx".to_vec()).unwrap();
    let c2 = bounded(conn(2)).await.expect("a third subscription");
    let only_api = vec![task("api.1", "fw-h", "198.18.0.11", 9090, "api:80")];
    c2.send(record(&subscribed(only_api, 15.0))).unwrap();
    let u = next(&mut rx).await;
    assert_eq!(u.catalog.tasks.len(), 1, "only the last SUBSCRIBED counts");
    assert!(stats.reconnects.load(Ordering::Relaxed) >= 2);
    assert!(rx.try_recv().is_err());
}

/// Silence past 3 heartbeat intervals drops the stream and resubscribes.
#[tokio::test]
async fn a_silent_stream_is_reconnected() {
    let conns = Arc::new(Mutex::new(Vec::new()));
    let c2 = conns.clone();
    let m = Master::start(move |_| {
        let (tx, rx) = mpsc::unbounded_channel();
        tx.send(record(&subscribed(two_tasks(), 0.1))).unwrap();
        c2.lock().unwrap().push(tx);
        Reply::Stream(rx)
    })
    .await;
    let (mut rx, stats) = start(config(vec![m.url()]));
    next(&mut rx).await;
    tokio::time::timeout(Duration::from_secs(5), async {
        while m.requests().len() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a second subscription");
    assert!(stats.reconnects.load(Ordering::Relaxed) >= 1);
}

/// A non-leader's 307 is followed to a configured origin, with the
/// credentials; one to another origin is refused.
#[tokio::test]
async fn leader_redirects_stay_with_configured_origins() {
    let (ptx, prx) = mpsc::unbounded_channel();
    let prx = Mutex::new(Some(prx));
    let leader = Master::start(move |_| match prx.lock().unwrap().take() {
        Some(rx) => Reply::Stream(rx),
        None => Reply::Json(200, "{}".into()),
    })
    .await;
    let to = format!("//{}/api/v1", leader.addr);
    let follower = Master::start(move |_| Reply::Redirect(to.clone())).await;
    let mut cfg = config(vec![follower.url(), leader.url()]);
    cfg.auth = Some(Credentials::Token("tok".into()));
    let stats = Arc::<MesosStats>::default();
    let client = MesosClient::new(cfg, stats.clone()).unwrap();
    let resp = client.subscribe().await.unwrap();
    assert_eq!(resp.status(), 200);
    drop(resp);
    drop(ptx);
    assert!(
        leader.requests()[0]
            .head
            .to_ascii_lowercase()
            .contains("token=tok")
    );
    assert_eq!(stats.redirects.load(Ordering::Relaxed), 1);
    // The master the redirect led to is asked first from now on.
    let _ = client.subscribe().await;
    assert_eq!(follower.requests().len(), 1, "the follower was asked again");
    assert_eq!(leader.requests().len(), 2);

    let stranger = format!("http://{}/api/v1", leader.addr);
    let follower = Master::start(move |_| Reply::Redirect(stranger.clone())).await;
    let client = MesosClient::new(config(vec![follower.url()]), Arc::default()).unwrap();
    let err = client.subscribe().await.unwrap_err().to_string();
    assert!(err.contains("redirect refused"), "{err}");
    assert!(err.contains("--mesos"), "{err}");
}

/// Poll mode: `/master/state` read at each period; a 5xx sends nothing.
#[tokio::test]
async fn poll_mode_reads_master_state() {
    let state = json!({
        "leader": "master@198.18.0.1:5050",
        "slaves": [{"id": "a-S1", "hostname": "127.0.0.1"}],
        "frameworks": [{"id": "fw-m", "name": "marathon", "tasks": [{
            "id": "web.1", "name": "web", "framework_id": "fw-m", "slave_id": "a-S1",
            "state": "TASK_RUNNING",
            "statuses": [{"state": "TASK_RUNNING", "timestamp": 1.0,
                "container_status": {"network_infos": [{"ip_addresses": [{"ip_address": "198.18.0.10"}]}]}}],
            "discovery": {"name": "web", "ports": {"ports": [{"number": 8080, "protocol": "tcp",
                "labels": {"labels": [{"key": "VIP_0", "value": "/web:80"}]}}]}}
        }]}]
    })
    .to_string();
    let calls = Arc::new(Mutex::new(0));
    let c2 = calls.clone();
    let m = Master::start(move |r| {
        assert!(r.head.starts_with("GET /master/state "), "{}", r.head);
        let mut n = c2.lock().unwrap();
        *n += 1;
        match *n {
            1 => Reply::Json(503, "no leader".into()),
            _ => Reply::Json(200, state.clone()),
        }
    })
    .await;
    let mut cfg = config(vec![m.url()]);
    cfg.poll = Some(Duration::from_millis(100));
    let (mut rx, stats) = start(cfg);
    let u = next(&mut rx).await;
    assert_eq!(u.trigger, "mesos poll");
    assert_eq!(backends_of(&u, "web.marathon", 80), ["198.18.0.10:8080"]);
    assert!(stats.failures.load(Ordering::Relaxed) >= 1);
    // The leader from the state's `leader`, the masters from --mesos.
    let c = u.catalog.cluster.expect("a cluster");
    assert_eq!(c.leader, Some("198.18.0.1:5050".parse().unwrap()));
    assert_eq!(c.masters, [m.addr]);
    assert_eq!(c.agents.len(), 1);
}

/// The cluster for Mesos-DNS's records, stream mode: the leader is the
/// master the stream comes from after the 307; the masters are the
/// `--mesos` URLs in order; agents by pid, frameworks by host.
#[tokio::test]
async fn stream_catalog_names_the_master_it_follows() {
    let (ptx, prx) = mpsc::unbounded_channel();
    let prx = Mutex::new(Some(prx));
    let leader = Master::start(move |_| Reply::Stream(prx.lock().unwrap().take().unwrap())).await;
    let to = format!("//{}/api/v1", leader.addr);
    let follower = Master::start(move |_| Reply::Redirect(to.clone())).await;
    let (mut rx, _) = start(config(vec![follower.url(), leader.url()]));
    let mut sub = subscribed(two_tasks(), 15.0);
    let state = &mut sub["subscribed"]["get_state"];
    state["get_agents"]["agents"][0]["pid"] = json!("slave(1)@198.18.0.20:5051");
    state["get_frameworks"]["frameworks"][0]["framework_info"]["hostname"] = json!("198.18.0.30");
    ptx.send(record(&sub)).unwrap();
    let u = next(&mut rx).await;
    let c = u.catalog.cluster.expect("a cluster");
    assert_eq!(c.leader, Some(leader.addr));
    assert_eq!(c.masters, [follower.addr, leader.addr]);
    let ep = |ip: &str, port| crate::model::Endpoint {
        ip: ip.parse().unwrap(),
        port,
    };
    assert_eq!(c.agents, [ep("198.18.0.20", Some(5051))]);
    assert_eq!(c.frameworks, [("marathon".into(), ep("198.18.0.30", None))]);
    drop(ptx);
}

/// A 401 re-reads --mesos-auth-file once and retries with what it now holds.
#[tokio::test]
async fn a_401_rereads_the_credentials_file() {
    let m = Master::start(
        |r| match r.head.to_ascii_lowercase().contains("token=new") {
            true => Reply::Json(200, "{}".into()),
            false => Reply::Json(401, "bad token".into()),
        },
    )
    .await;
    let dir = std::env::temp_dir().join(format!("l4lb-mesos-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("auth");
    std::fs::write(&file, "token=old\n").unwrap();
    let mut cfg = config(vec![m.url()]);
    cfg.auth = Some(Credentials::from_file(&file).unwrap());
    cfg.auth_file = Some(file.clone());
    let client = MesosClient::new(cfg, Arc::default()).unwrap();
    let err = client.master_state().await.unwrap_err().to_string();
    assert!(err.contains("401"), "{err}");
    std::fs::write(&file, "token=new\n").unwrap();
    client
        .master_state()
        .await
        .expect("retried with the new token");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A record past --mesos-max-record-bytes fails the stream and is counted.
#[tokio::test]
async fn an_oversized_record_is_counted() {
    let m = Master::start(|_| {
        let (tx, rx) = mpsc::unbounded_channel();
        tx.send(b"5000\n{".to_vec()).unwrap();
        Reply::Stream(rx)
    })
    .await;
    let mut cfg = config(vec![m.url()]);
    cfg.max_record = 1024;
    let (_rx, stats) = start(cfg);
    tokio::time::timeout(Duration::from_secs(5), async {
        while stats.oversized.load(Ordering::Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the oversized record counted");
}

/// SIGHUP's notify subscribes again at once, and is not a failure.
#[tokio::test]
async fn a_reread_subscribes_again() {
    let conns = Arc::new(Mutex::new(Vec::new()));
    let c2 = conns.clone();
    let m = Master::start(move |_| {
        let (tx, rx) = mpsc::unbounded_channel();
        tx.send(record(&subscribed(two_tasks(), 15.0))).unwrap();
        c2.lock().unwrap().push(tx);
        Reply::Stream(rx)
    })
    .await;
    let src = MesosSource::new(config(vec![m.url()])).unwrap();
    let (stats, reread) = (src.stats(), src.reread_handle());
    let (tx, mut rx) = mpsc::channel(8);
    tokio::spawn(src.run(tx));
    next(&mut rx).await;
    reread.notify_one();
    tokio::time::timeout(Duration::from_secs(5), async {
        while m.requests().len() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a second subscription");
    assert_eq!(stats.failures.load(Ordering::Relaxed), 0);
    assert_eq!(stats.reads.load(Ordering::Relaxed), 2);
}

/// A lone change goes out at once; one within the debounce window after a
/// catalog waits for the window's end.
#[tokio::test]
async fn a_lone_event_waits_for_no_window() {
    let (ptx, prx) = mpsc::unbounded_channel();
    let prx = Mutex::new(Some(prx));
    let m = Master::start(move |_| Reply::Stream(prx.lock().unwrap().take().unwrap())).await;
    let mut cfg = config(vec![m.url()]);
    cfg.debounce = Duration::from_secs(2);
    let (mut rx, _stats) = start(cfg);
    ptx.send(record(&subscribed(two_tasks(), 15.0))).unwrap();
    next(&mut rx).await;
    ptx.send(record(&killed("web.1", "fw-m"))).unwrap();
    let quick = tokio::time::timeout(Duration::from_millis(1000), rx.recv()).await;
    assert!(quick.is_ok(), "a lone event waited for the window");
    ptx.send(record(&killed("api.1", "fw-h"))).unwrap();
    let early = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await;
    assert!(
        early.is_err(),
        "a second change inside the window went out at once"
    );
    let u = next(&mut rx).await;
    assert!(u.catalog.tasks.is_empty());
}
