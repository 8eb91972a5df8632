//! Client + source against raw HTTP/1.1 servers on 127.0.0.1, real clock.
use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering::SeqCst},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{broadcast, mpsc},
};
use url::Url;

use super::{SourceStats, Timing, Trigger, Update, run_with};
use crate::{
    marathon::{
        args::Credentials,
        client::{ClientConfig, FetchError, MarathonClient},
    },
    naming::VipAllocator,
};

const GOOD: &str =
    include_str!("../../../../l4lb-core/tests/fixtures/marathon/apps_redis_host.json");

#[derive(Clone, Debug)]
struct Req {
    target: String,
    headers: Vec<(String, String)>,
}

impl Req {
    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

enum Reply {
    Json(u16, String),
    Raw(u16, &'static str, String),
    Redirect(String),
    /// Announces `announced` bytes, sends `body`, closes.
    Truncated {
        announced: usize,
        body: String,
    },
    Sse(broadcast::Receiver<String>),
    /// Accepts and never answers.
    Hang,
}

type Handler = dyn Fn(&Req, SocketAddr) -> Reply + Send + Sync;

struct Server {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Req>>>,
}

impl Server {
    async fn start(handler: impl Fn(&Req, SocketAddr) -> Reply + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let l = log.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve(sock, addr, handler.clone(), l.clone()));
            }
        });
        Server { addr, log }
    }
    fn url(&self) -> Url {
        Url::parse(&format!("http://{}/", self.addr)).unwrap()
    }
    fn count(&self, path: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path() == path)
            .count()
    }
    fn requests(&self, path: &str) -> Vec<Req> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path() == path)
            .cloned()
            .collect()
    }
}

async fn serve(
    mut sock: TcpStream,
    me: SocketAddr,
    handler: Arc<Handler>,
    log: Arc<Mutex<Vec<Req>>>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = head.split("\r\n");
    let target = lines.next().unwrap().split(' ').nth(1).unwrap().to_owned();
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let req = Req { target, headers };
    log.lock().unwrap().push(req.clone());
    let full = |status: u16, ctype: &str, body: &str| {
        format!(
            "HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let out = match handler(&req, me) {
        Reply::Json(s, body) => full(s, "application/json", &body),
        Reply::Raw(s, ctype, body) => full(s, ctype, &body),
        Reply::Redirect(loc) => format!(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: {loc}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
        Reply::Truncated { announced, body } => format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {announced}\r\nConnection: close\r\n\r\n{body}"
        ),
        Reply::Hang => {
            std::future::pending::<()>().await;
            unreachable!()
        }
        Reply::Sse(mut rx) => {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n";
            if sock.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            loop {
                match rx.recv().await {
                    Ok(frame) => {
                        if sock.write_all(frame.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        }
    };
    let _ = sock.write_all(out.as_bytes()).await;
    let _ = sock.shutdown().await;
}

/// A Marathon that leads itself: `/v2/apps` answered by `apps(n)` for the
/// n-th request (0-based), events from `sse`.
async fn marathon(
    sse: &broadcast::Sender<String>,
    apps: impl Fn(usize) -> Reply + Send + Sync + 'static,
) -> Server {
    let sse = sse.clone();
    let n = AtomicUsize::new(0);
    Server::start(move |req, me| match req.path() {
        "/v2/leader" => Reply::Json(200, format!(r#"{{"leader":"{me}"}}"#)),
        "/v2/apps" => apps(n.fetch_add(1, SeqCst)),
        "/v2/events" => Reply::Sse(sse.subscribe()),
        // GOOD's apps one by one, as Marathon answers `/v2/apps/{id}`.
        p if p.starts_with("/v2/apps/") => match one_app(GOOD, &p["/v2/apps".len()..]) {
            Some(body) => Reply::Json(200, body),
            None => Reply::Json(404, r#"{"message":"App does not exist"}"#.into()),
        },
        _ => Reply::Json(404, r#"{"message":"not found"}"#.into()),
    })
    .await
}

fn client(urls: Vec<Url>) -> ClientConfig {
    ClientConfig {
        request_timeout: Duration::from_secs(2),
        ..ClientConfig::new(urls)
    }
}

struct Run {
    rx: mpsc::Receiver<Update>,
    stats: Arc<SourceStats>,
    client: Arc<MarathonClient>,
}

fn start(cfg: ClientConfig) -> Run {
    let client = Arc::new(MarathonClient::new(cfg).unwrap());
    let (tx, rx) = mpsc::channel(8);
    let stats = Arc::new(SourceStats::default());
    let timing = Timing {
        backoff_base: Duration::from_millis(50),
        backoff_cap: Duration::from_millis(200),
        ..Timing::new(Duration::from_secs(600), Duration::from_millis(20))
    };
    tokio::spawn(run_with(
        client.clone(),
        timing,
        VipAllocator::new(),
        tx,
        stats.clone(),
        Arc::default(),
        None,
    ));
    Run { rx, stats, client }
}

impl Run {
    async fn next(&mut self) -> Update {
        tokio::time::timeout(Duration::from_secs(10), self.rx.recv())
            .await
            .expect("an update within 10 s")
            .expect("source alive")
    }
    async fn none_within(&mut self, d: Duration) {
        if let Ok(u) = tokio::time::timeout(d, self.rx.recv()).await {
            panic!("unexpected update: {:?}", u.map(|u| u.trigger));
        }
    }
}

/// The first read is good; every later one gets `bad`: after the initial
/// table, nothing more may come out, however long we wait.
async fn bad_answers_send_no_update(bad: fn() -> Reply) {
    let (sse, _keep) = broadcast::channel(16);
    let m = marathon(&sse, move |n| {
        if n == 0 {
            Reply::Json(200, GOOD.into())
        } else {
            bad()
        }
    })
    .await;
    let mut run = start(client(vec![m.url()]));
    assert_eq!(run.next().await.trigger, Trigger::Initial);
    // An event that names no app: a full re-read, which fails, as do its retries.
    sse.send("event: deployment_success\ndata: {}\n\n".into())
        .unwrap();
    run.none_within(Duration::from_millis(800)).await;
    let s = run.stats.snapshot();
    assert_eq!(s.fetch_ok, 1);
    assert!(s.fetch_failed >= 2, "{s:?}");
    assert!(m.count("/v2/apps") >= 3);
}

#[tokio::test]
async fn http_500_sends_no_update() {
    bad_answers_send_no_update(|| Reply::Json(500, r#"{"message":"boom"}"#.into())).await;
}

#[tokio::test]
async fn garbage_body_sends_no_update() {
    bad_answers_send_no_update(|| Reply::Raw(200, "text/html", "<html>login</html>".into())).await;
}

#[tokio::test]
async fn truncated_body_sends_no_update() {
    // The part that arrives is valid JSON for an EMPTY table: reading it
    // as the truth would delete every VIP.
    bad_answers_send_no_update(|| Reply::Truncated {
        announced: 1000,
        body: r#"{"apps":[]}"#.into(),
    })
    .await;
}

#[tokio::test]
async fn client_errors_name_the_failure() {
    let m = Server::start(|_, _| Reply::Truncated {
        announced: 1000,
        body: r#"{"apps":[]}"#.into(),
    })
    .await;
    let c = MarathonClient::new(client(vec![m.url()])).unwrap();
    let e = c.refresh_app_set(Arc::default()).await.unwrap_err();
    eprintln!("truncated: {e}");
    assert!(matches!(e, FetchError::Body { .. }), "{e}");

    let big = Server::start(|_, _| {
        Reply::Json(
            200,
            format!(r#"{{"apps":[],"pad":"{}"}}"#, "x".repeat(1000)),
        )
    })
    .await;
    let c = MarathonClient::new(ClientConfig {
        max_body: 100,
        ..client(vec![big.url()])
    })
    .unwrap();
    let e = c.refresh_app_set(Arc::default()).await.unwrap_err();
    assert!(matches!(e, FetchError::TooLarge { limit: 100, .. }), "{e}");

    let hang = Server::start(|_, _| Reply::Hang).await;
    let c = MarathonClient::new(ClientConfig {
        request_timeout: Duration::from_millis(300),
        ..client(vec![hang.url()])
    })
    .unwrap();
    let t0 = std::time::Instant::now();
    let e = c.refresh_app_set(Arc::default()).await.unwrap_err();
    eprintln!("timeout: {e}");
    assert!(matches!(e, FetchError::Timeout { .. }), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(2));

    let e = MarathonClient::new(client(vec![m.url()]))
        .unwrap()
        .refresh_leader()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("/v2/leader"), "{e}");
}

fn refused_url() -> Url {
    // Bind, learn the port, close: nothing listens there any more.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    Url::parse(&format!("http://{addr}/")).unwrap()
}

#[tokio::test]
async fn a_refusing_first_url_falls_through_to_the_second() {
    let (sse, _keep) = broadcast::channel(16);
    let m = marathon(&sse, |_| Reply::Json(200, GOOD.into())).await;
    let dead = refused_url();
    let mut run = start(client(vec![dead.clone(), m.url()]));
    let u = run.next().await;
    assert_eq!(u.trigger, Trigger::Initial);
    let want =
        crate::marathon::parse::parse_apps(GOOD.as_bytes(), &mut VipAllocator::new()).unwrap();
    assert_eq!(u.full_catalog(), want.catalog);
    assert!(
        !u.full_catalog().services.services.is_empty(),
        "the fixture declares a VIP"
    );
    assert_eq!(m.count("/v2/apps"), 1);
    assert_eq!(
        run.stats.snapshot().fetch_failed,
        0,
        "a fall-through is not a failed read"
    );

    // A 5xx moves on too, a 4xx does not.
    let e500 = Server::start(|_, _| Reply::Json(503, "{}".into())).await;
    let c = MarathonClient::new(client(vec![e500.url(), m.url()])).unwrap();
    assert!(c.refresh_app_set(Arc::default()).await.is_ok());
    let e403 = Server::start(|_, _| Reply::Json(403, r#"{"message":"denied"}"#.into())).await;
    let c = MarathonClient::new(client(vec![e403.url(), m.url()])).unwrap();
    let e = c.refresh_app_set(Arc::default()).await.unwrap_err();
    assert_eq!(e.status(), Some(reqwest::StatusCode::FORBIDDEN));
    assert!(e.to_string().contains("denied"), "{e}");
    let c = MarathonClient::new(client(vec![dead.clone()])).unwrap();
    let e = c.refresh_app_set(Arc::default()).await.unwrap_err();
    eprintln!("refused: {e}");
    assert!(matches!(e, FetchError::Connect { .. }), "{e}");
    assert!(e.to_string().to_lowercase().contains("refused"), "{e}");
}

#[tokio::test]
async fn events_redirected_to_the_leader_are_followed_with_credentials() {
    let (sse, _keep) = broadcast::channel(16);
    // B leads.
    let b = marathon(&sse, |_| Reply::Json(200, GOOD.into())).await;
    let b_addr = b.addr;
    // A is a deposed leader that still names itself, proxies /v2/apps and
    // redirects /v2/events to B.
    let a = Server::start(move |req, me| match req.path() {
        "/v2/leader" => Reply::Json(200, format!(r#"{{"leader":"{me}"}}"#)),
        "/v2/apps" => Reply::Json(200, GOOD.into()),
        "/v2/events" => Reply::Redirect(format!("http://{b_addr}{}", req.target)),
        _ => Reply::Json(404, "{}".into()),
    })
    .await;
    // Both are configured: B's origin may see the credentials.
    let mut run = start(ClientConfig {
        auth: Some(Credentials::Token("tok3n".into())),
        ..client(vec![a.url(), b.url()])
    });
    assert_eq!(run.next().await.trigger, Trigger::Initial);

    let at_b = b.requests("/v2/events");
    assert_eq!(at_b.len(), 1);
    assert_eq!(at_b[0].header("authorization"), Some("token=tok3n"));
    assert_eq!(at_b[0].header("accept"), Some("text/event-stream"));
    assert!(at_b[0].target.contains("event_type=status_update_event"));
    assert_eq!(a.count("/v2/events"), 1);
    assert_eq!(
        run.client.leader(),
        Some(b.url()),
        "the redirect named the leader"
    );
    // Reads now go to the leader directly: the stream attached first.
    assert_eq!(b.count("/v2/apps"), 1, "the first read went to B");
    assert_eq!(a.count("/v2/apps"), 0);

    sse.send("event: status_update_event\ndata: {\"appId\":\"/redis\"}\n\n".into())
        .unwrap();
    // The app did not change: a read, and no update.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while run.stats.snapshot().targeted == 0 {
        assert!(std::time::Instant::now() < deadline, "no read of the app");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    run.none_within(Duration::from_millis(100)).await;
    assert_eq!(b.count("/v2/apps"), 1, "no full read");
    let one = b.requests("/v2/apps/redis");
    assert_eq!(one.len(), 1);
    assert!(
        one[0].target.ends_with("?embed=app.tasks"),
        "{}",
        one[0].target
    );
    assert_eq!(one[0].header("authorization"), Some("token=tok3n"));
}

/// Regression: one 302 to a host that is not configured sent the token
/// there, pinned it as the leader, and its 404s stopped the client from
/// asking the healthy Marathon again. Now the redirect is refused: the
/// other host sees no request at all, and the next read asks A.
#[tokio::test]
async fn a_redirect_to_an_unconfigured_host_is_refused_and_never_sticks() {
    let c = Server::start(|_, _| Reply::Json(404, "{}".into())).await;
    let c_addr = c.addr;
    let n = AtomicUsize::new(0);
    let a = Server::start(move |req, _| match req.path() {
        "/v2/apps" if n.fetch_add(1, SeqCst) == 0 => {
            Reply::Redirect(format!("http://{c_addr}/v2/apps?embed=apps.tasks"))
        }
        "/v2/apps" => Reply::Json(200, GOOD.into()),
        _ => Reply::Json(404, "{}".into()),
    })
    .await;
    let stats = Arc::new(SourceStats::default());
    let c_client = MarathonClient::new(ClientConfig {
        auth: Some(Credentials::Token("tok3n".into())),
        ..client(vec![a.url()])
    })
    .unwrap()
    .with_stats(stats.clone());
    let e = c_client.refresh_app_set(Arc::default()).await.unwrap_err();
    assert!(matches!(e, FetchError::Redirect { .. }), "{e}");
    assert!(e.to_string().contains("refused"), "{e}");
    assert!(c.log.lock().unwrap().is_empty(), "the other host was asked");
    assert_eq!(stats.snapshot().redirects_refused, 1);
    assert_eq!(c_client.leader(), None);
    assert!(c_client.refresh_app_set(Arc::default()).await.is_ok());
    assert_eq!(a.count("/v2/apps"), 2);
    assert_eq!(
        a.requests("/v2/apps")[1].header("authorization"),
        Some("token=tok3n")
    );
}

/// A leader is pinned only once it answered 2xx, and a 404 from it drops
/// it: the configured URLs answer again.
#[tokio::test]
async fn a_leader_is_pinned_after_a_2xx_and_dropped_on_a_404() {
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let h = healthy.clone();
    let b = Server::start(move |_, _| match h.load(SeqCst) {
        true => Reply::Json(200, GOOD.into()),
        false => Reply::Json(404, "{}".into()),
    })
    .await;
    let b_addr = b.addr;
    let a = Server::start(move |req, _| match req.path() {
        "/v2/leader" => Reply::Json(200, format!(r#"{{"leader":"{b_addr}"}}"#)),
        "/v2/apps" => Reply::Json(200, GOOD.into()),
        _ => Reply::Json(404, "{}".into()),
    })
    .await;
    let c = MarathonClient::new(client(vec![a.url(), b.url()])).unwrap();
    assert_eq!(c.refresh_leader().await.unwrap(), Some(b.url()));
    assert_eq!(c.leader(), None, "named, not pinned before it answered");
    assert!(c.refresh_app_set(Arc::default()).await.is_ok());
    assert_eq!(c.leader(), Some(b.url()));
    assert_eq!((a.count("/v2/apps"), b.count("/v2/apps")), (0, 1));
    healthy.store(false, SeqCst);
    assert!(c.refresh_app_set(Arc::default()).await.is_ok());
    assert_eq!(c.leader(), None);
    assert_eq!((a.count("/v2/apps"), b.count("/v2/apps")), (1, 2));
    // A leader outside the configured origins is never used.
    let only_a = MarathonClient::new(client(vec![a.url()])).unwrap();
    assert_eq!(only_a.refresh_leader().await.unwrap(), None);
    assert!(only_a.refresh_app_set(Arc::default()).await.is_ok());
    assert_eq!(b.count("/v2/apps"), 2);
}

/// Regression: an HTTP 500 with an endless body was read whole (2 GB
/// RSS in 5 s); now 64 KiB at most, and the read fails at once.
#[tokio::test]
async fn an_endless_error_body_is_not_read() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let head = "HTTP/1.1 500 Oops\r\nContent-Type: text/plain\r\n\r\n";
                if sock.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = [b'x'; 64 << 10];
                // Bounded: 1 GiB at most.
                for _ in 0..(1 << 14) {
                    if sock.write_all(&chunk).await.is_err() {
                        return;
                    }
                    counter.fetch_add(chunk.len(), SeqCst);
                }
            });
        }
    });
    let c = MarathonClient::new(ClientConfig {
        request_timeout: Duration::from_secs(10),
        ..client(vec![url])
    })
    .unwrap();
    let t0 = std::time::Instant::now();
    let e = c.refresh_app_set(Arc::default()).await.unwrap_err();
    assert_eq!(
        e.status(),
        Some(reqwest::StatusCode::INTERNAL_SERVER_ERROR),
        "{e}"
    );
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let n = sent.load(SeqCst);
    // What the socket buffers hold plus our 64 KiB: far from the 1 GiB offered.
    assert!(n < 32 << 20, "{n} bytes of the error body were read");
}

/// `{"app": …}` for app `id` of a `{"apps": […]}` body.
fn one_app(apps: &str, id: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(apps).unwrap();
    let app = v["apps"].as_array()?.iter().find(|a| a["id"] == id)?;
    Some(serde_json::json!({ "app": app }).to_string())
}

#[tokio::test]
async fn five_events_at_once_make_exactly_one_read() {
    let (sse, _keep) = broadcast::channel(16);
    let m = marathon(&sse, |_| Reply::Json(200, GOOD.into())).await;
    let mut run = start(client(vec![m.url()]));
    assert_eq!(run.next().await.trigger, Trigger::Initial);
    assert_eq!(m.count("/v2/apps"), 1);

    let burst: String = [
        "status_update_event",
        "instance_changed_event",
        "health_status_changed_event",
        "instance_health_changed_event",
        "status_update_event",
    ]
    .iter()
    .map(|t| format!("event: {t}\ndata: {{\"eventType\":\"{t}\"}}\n\n"))
    .collect();
    sse.send(burst).unwrap();
    let u = run.next().await;
    assert!(
        matches!(u.trigger, Trigger::Event { events: 5, ref event_type, .. } if event_type == "status_update_event"),
        "{:?}",
        u.trigger
    );
    run.none_within(Duration::from_millis(500)).await;
    assert_eq!(m.count("/v2/apps"), 2);
    assert_eq!(run.stats.snapshot().events_received, 5);
}

#[tokio::test]
async fn a_silent_stream_is_dropped_and_reconnected() {
    let (sse, _keep) = broadcast::channel(16);
    let m = marathon(&sse, |_| Reply::Json(200, GOOD.into())).await;
    let mut run = start(ClientConfig {
        idle_timeout: Duration::from_millis(300),
        ..client(vec![m.url()])
    });
    assert_eq!(run.next().await.trigger, Trigger::Initial);
    // Nothing is written: after 300 ms the stream is declared dead.
    assert_eq!(run.next().await.trigger, Trigger::Reconnect);
    assert!(m.count("/v2/events") >= 2);
    assert!(run.stats.snapshot().reconnects >= 1);
}

#[tokio::test]
async fn a_401_rereads_the_credentials_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth");
    std::fs::write(&path, "token=old\n").unwrap();
    let m = Server::start(|req, _| match req.header("authorization") {
        Some("token=new") => Reply::Json(200, GOOD.into()),
        _ => Reply::Json(401, r#"{"message":"invalid token"}"#.into()),
    })
    .await;
    let c = MarathonClient::new(ClientConfig {
        auth: Some(Credentials::from_file(&path).unwrap()),
        auth_file: Some(path.clone()),
        ..client(vec![m.url()])
    })
    .unwrap();
    let e = c.refresh_app_set(Arc::default()).await.unwrap_err();
    assert_eq!(e.status(), Some(reqwest::StatusCode::UNAUTHORIZED));
    assert!(!e.to_string().contains("old"), "{e}");
    std::fs::write(&path, "token=new\n").unwrap();
    assert!(c.refresh_app_set(Arc::default()).await.is_ok());
}
