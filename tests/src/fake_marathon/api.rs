//! The Marathon HTTP API one instance serves: `/v2/apps`, `/v2/apps/{id}`,
//! `/v2/apps/{id}/tasks`, `/v2/tasks`, `/v2/leader`, `/v2/info`, `/ping`,
//! and the SSE stream `/v2/events`, with the instance's faults applied.
use std::{
    convert::Infallible,
    io,
    net::SocketAddr,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use super::model::{self, Faults};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::{
    HeaderMap, Method, Request, Response,
    body::{Body as _, Frame, Incoming},
    header,
};
use serde_json::{Value, json};
use tokio::{
    sync::{broadcast, broadcast::error::RecvError, watch},
    time::{Instant, Interval, interval_at},
};

use super::{
    served::Kind,
    state::{Event, Shared},
};

pub type Body = UnsyncBoxBody<Bytes, io::Error>;

pub fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into())
        .map_err(|e: Infallible| match e {})
        .boxed_unsync()
}

/// A finished response; `truncate` sends the full `Content-Length` but only
/// half the body, then closes the connection.
pub fn reply(status: u16, ctype: &str, body: impl Into<Bytes>, truncate: bool) -> Response<Body> {
    let body: Bytes = body.into();
    let b = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, ctype);
    let body = if truncate && !body.is_empty() {
        let len = body.len();
        let half = body.slice(..len / 2);
        // Pending for a moment after the half so hyper flushes it, then an
        // error: hyper closes the connection without completing the body.
        let parts = futures_util::stream::unfold(0u8, move |step| {
            let half = half.clone();
            async move {
                match step {
                    0 => Some((Ok(Frame::data(half)), 1)),
                    1 => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Some((Err(io::Error::other("body truncated by fault")), 2))
                    }
                    _ => None,
                }
            }
        });
        return b
            .header(header::CONTENT_LENGTH, len)
            .body(StreamBody::new(parts).boxed_unsync())
            .expect("valid response");
    } else {
        full(body)
    };
    b.body(body).expect("valid response")
}

pub fn json_reply(status: u16, v: &Value, truncate: bool) -> Response<Body> {
    reply(
        status,
        "application/json",
        v.to_string().into_bytes(),
        truncate,
    )
}

fn message(status: u16, msg: &str) -> Response<Body> {
    json_reply(status, &json!({ "message": msg }), false)
}

/// Percent-decoded `key=value` pairs of a query string.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    fn dec(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz");
                    match u8::from_str_radix(hex, 16) {
                        Ok(v) => {
                            out.push(v);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (dec(k), dec(v)),
            None => (dec(p), String::new()),
        })
        .collect()
}

fn query_values(query: &str, key: &str) -> Vec<String> {
    query_pairs(query)
        .into_iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v)
        .collect()
}

/// `None` when the request may pass, else the 401 to send.
fn check_auth(sh: &Shared, headers: &HeaderMap) -> Option<Response<Body>> {
    let (token, basic) = (&sh.opts.token, &sh.opts.basic);
    if token.is_none() && basic.is_none() {
        return None;
    }
    let got = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .trim();
    if let Some(t) = token
        && got.strip_prefix("token=") == Some(t.as_str())
    {
        return None;
    }
    if let Some(b) = basic
        && got.len() > 6
        && got[..6].eq_ignore_ascii_case("basic ")
        && got[6..].trim() == b
    {
        return None;
    }
    // DC/OS (Admin Router) asks for an ACS token; plain Marathon for Basic.
    let challenge = if token.is_some() {
        "acsjwt"
    } else {
        "Basic realm=\"Mesosphere Marathon\""
    };
    let mut r = message(401, "Unauthorized: missing or invalid credentials");
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, challenge.parse().expect("ascii"));
    Some(r)
}

pub async fn handle(
    sh: Arc<Shared>,
    idx: usize,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let uri = req.uri().clone();
    let resp = serve(&sh, idx, peer, &req).await;
    eprintln!(
        "fake-marathon[{idx}] {} {uri} from {peer} -> {}",
        req.method(),
        resp.status().as_u16()
    );
    Ok(resp)
}

fn url_of(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// Status / garbage faults answer the request before routing.
async fn early_faults(f: &Faults) -> Option<Response<Body>> {
    if f.slow_ms > 0 {
        tokio::time::sleep(Duration::from_millis(f.slow_ms)).await;
    }
    if let Some(code) = f.status {
        return Some(message(code, &format!("fault injected: HTTP {code}")));
    }
    if f.garbage {
        let body = b"<html><body><h1>Oops</h1> this is not JSON {\"apps\": [".to_vec();
        return Some(reply(200, "application/json", body, false));
    }
    None
}

/// Bytes an endless fault sends at most per response: it stops by itself.
const ENDLESS_MAX: usize = 1 << 30;
static XS: [u8; 64 << 10] = [b'x'; 64 << 10];

/// `head`, then `chunk` over and over up to [`ENDLESS_MAX`] bytes.
fn endless(head: &'static [u8], chunk: Bytes) -> Body {
    let parts = futures_util::stream::unfold(0usize, move |sent| {
        let chunk = chunk.clone();
        async move {
            if sent >= ENDLESS_MAX {
                return None;
            }
            let next = if sent == 0 {
                Bytes::from_static(head)
            } else {
                chunk
            };
            let n = next.len();
            Some((Ok::<_, io::Error>(Frame::data(next)), sent + n))
        }
    });
    StreamBody::new(parts).boxed_unsync()
}

/// The endless-body, endless-event and redirect faults of `/v2/*`.
fn endless_faults(f: &Faults, path: &str, query: &str) -> Option<Response<Body>> {
    if !path.starts_with("/v2/") || path.starts_with("/v2/leader") {
        return None;
    }
    if let Some(to) = &f.redirect {
        let q = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        let loc = format!("{}{path}{q}", to.trim_end_matches('/'));
        let r = Response::builder()
            .status(302)
            .header(header::LOCATION, loc)
            .header(header::CONTENT_LENGTH, 0)
            .body(full(Bytes::new()));
        return Some(r.expect("valid response"));
    }
    if let Some(code) = f.endless_body {
        let body = endless(b"{\"message\":\"", Bytes::from_static(&XS));
        let r = Response::builder()
            .status(code)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body);
        return Some(r.expect("valid response"));
    }
    let is_events = path.trim_end_matches('/') == "/v2/events";
    let body = match f.endless_events.as_deref() {
        Some("data") if is_events => {
            let mut line = b"data: ".to_vec();
            line.extend_from_slice(&XS[..1000]);
            line.push(b'\n');
            endless(
                b"event: status_update_event\n",
                Bytes::from(line.repeat(64)),
            )
        }
        Some(_) if is_events => endless(b"data: {\"x\":\"", Bytes::from_static(&XS)),
        _ => return None,
    };
    let r = Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "text/event-stream;charset=utf-8")
        .body(body);
    Some(r.expect("valid response"))
}

async fn serve(
    sh: &Arc<Shared>,
    idx: usize,
    peer: SocketAddr,
    req: &Request<Incoming>,
) -> Response<Body> {
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or_default();
    let leader = *sh.leader.borrow();
    let own = sh.instances[idx].faults.borrow().clone();
    let inst = &sh.instances[idx];
    inst.requests.fetch_add(1, Ordering::Relaxed);
    if req.headers().contains_key(header::AUTHORIZATION) {
        inst.with_auth.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(r) = early_faults(&own).await {
        return r;
    }
    if let Some(r) = endless_faults(&own, path, query) {
        return r;
    }
    let mut truncate = own.truncate;

    if path == "/ping" {
        return reply(200, "text/plain", b"pong".to_vec(), truncate);
    }
    if path == "/v2/leader" || path == "/v2/leader/" {
        if let Some(r) = check_auth(sh, req.headers()) {
            return r;
        }
        return match leader {
            Some(l) => json_reply(
                200,
                &json!({"leader": sh.instances[l].addr.to_string()}),
                truncate,
            ),
            None => message(404, "There is no leader"),
        };
    }
    if !path.starts_with("/v2/") {
        return message(404, "Not Found");
    }
    let Some(l) = leader else {
        return message(503, "Could not determine the current leader");
    };
    let is_events = path == "/v2/events" || path == "/v2/events/";
    if is_events && l != idx {
        // A standby sends event-stream clients to the leader.
        let q = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        return Response::builder()
            .status(307)
            .header(
                header::LOCATION,
                format!("{}{path}{q}", url_of(sh.instances[l].addr)),
            )
            .header(header::CONTENT_LENGTH, 0)
            .body(full(Bytes::new()))
            .expect("valid response");
    }
    let proxied = l != idx;
    if proxied {
        // A standby proxies to the leader: the leader's faults apply too.
        let lf = sh.instances[l].faults.borrow().clone();
        if lf.down || lf.reset {
            return message(502, "Connection to leader refused.");
        }
        if let Some(r) = early_faults(&lf).await {
            return r;
        }
        truncate |= lf.truncate;
    }
    if let Some(r) = check_auth(sh, req.headers()) {
        return r;
    }
    if req.method() != Method::GET {
        return message(
            405,
            "HTTP 405 Method Not Allowed (this fake serves reads only)",
        );
    }
    let kind = Kind::of(path);
    sh.served.request(kind);
    let mut resp = if is_events {
        events(sh, idx, peer, req.headers(), query, truncate)
    } else {
        route(sh, idx, path, query, truncate)
    };
    if let Some(n) = resp.body().size_hint().exact() {
        sh.served.bytes(kind, n);
    }
    let h = resp.headers_mut();
    h.insert(
        "X-Marathon-Leader",
        url_of(sh.instances[l].addr).parse().expect("ascii"),
    );
    if proxied {
        h.insert(
            "X-Marathon-Via",
            format!("1.1 {}", sh.instances[idx].addr)
                .parse()
                .expect("ascii"),
        );
    }
    if !is_events {
        h.insert(
            header::CACHE_CONTROL,
            "no-cache, no-store, must-revalidate"
                .parse()
                .expect("ascii"),
        );
    }
    resp
}

fn route(sh: &Shared, idx: usize, path: &str, query: &str, truncate: bool) -> Response<Body> {
    let path = path.trim_end_matches('/');
    if path == "/v2/apps" {
        let embed = query_values(query, "embed");
        let tasks = embed.iter().any(|e| e == "apps.tasks" || e == "app.tasks");
        return reply(200, "application/json", sh.apps_body(tasks), truncate);
    }
    if path == "/v2/pods" || path.starts_with("/v2/pods/") {
        if sh.opts.no_pods {
            return message(404, "Not Found");
        }
        if path == "/v2/pods" {
            return json_reply(200, &sh.pod_specs(), truncate);
        }
        if path == "/v2/pods/::status" {
            return json_reply(200, &sh.pods_status(), truncate);
        }
        let rest = &path["/v2/pods".len()..];
        return match rest.strip_suffix("::status") {
            Some(id) => match sh.pod_status(id) {
                Some(p) => json_reply(200, &p, truncate),
                None => message(404, &format!("Pod '{id}' does not exist")),
            },
            None => match sh.pod_status(rest) {
                Some(p) => json_reply(200, &p["spec"], truncate),
                None => message(404, &format!("Pod '{rest}' does not exist")),
            },
        };
    }
    if path == "/v2/tasks" {
        return json_reply(200, &sh.tasks_json(None).expect("all"), truncate);
    }
    if path == "/v2/info" {
        let l = (*sh.leader.borrow()).map(|l| sh.instances[l].addr.to_string());
        let info = json!({
            "name": "marathon",
            "version": "1.8.222-l4lb-fake",
            "elected": true,
            "leader": l,
            "frameworkId": format!("{}-0001", model::AGENT_ID_PREFIX),
            "http_config": {"http_port": sh.instances[idx].addr.port()},
            "event_subscriber": {"type": "http_callback"},
        });
        return json_reply(200, &info, truncate);
    }
    if let Some(rest) = path.strip_prefix("/v2/apps/") {
        if let Some(app) = rest.strip_suffix("/tasks") {
            let id = format!("/{app}");
            return match sh.tasks_json(Some(&id)) {
                Some(t) => json_reply(200, &t, truncate),
                None => message(404, &format!("App '{id}' does not exist")),
            };
        }
        let id = format!("/{rest}");
        return match sh.app_json(&id) {
            Some(a) => json_reply(200, &json!({ "app": a }), truncate),
            None => message(404, &format!("App '{id}' does not exist")),
        };
    }
    message(404, "Not Found")
}

// ------------------------------------------------------------------- SSE

enum After {
    Continue,
    Abort,
    Done,
}

struct Stream {
    sh: Arc<Shared>,
    idx: usize,
    remote: String,
    rx: broadcast::Receiver<Arc<Event>>,
    filter: Vec<String>,
    keepalive: Interval,
    sse_kill: watch::Receiver<u64>,
    conn_kill: watch::Receiver<u64>,
    leader: watch::Receiver<Option<usize>>,
    truncate: bool,
    eol: &'static str,
    after: After,
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.sh.instances[self.idx]
            .sse_open
            .fetch_sub(1, Ordering::Relaxed);
        self.sh.publish(json!({
            "eventType": "event_stream_detached",
            "remoteAddress": self.remote,
        }));
    }
}

type Item = Result<Frame<Bytes>, io::Error>;

async fn next_frame(mut st: Stream) -> Option<(Item, Stream)> {
    loop {
        match st.after {
            After::Done => return None,
            After::Abort => {
                // Pending for a moment first so hyper flushes what it holds.
                tokio::time::sleep(Duration::from_millis(50)).await;
                st.after = After::Done;
                return Some((Err(io::Error::other("event stream dropped")), st));
            }
            After::Continue => {}
        }
        tokio::select! {
            r = st.rx.recv() => match r {
                Ok(ev) => {
                    if !st.filter.is_empty() && !st.filter.contains(&ev.event_type) {
                        continue;
                    }
                    let eol = st.eol;
                    let mut frame =
                        format!("event: {}{eol}data: {}{eol}{eol}", ev.event_type, ev.data).into_bytes();
                    if st.truncate {
                        frame.truncate(frame.len() / 2);
                        st.after = After::Abort;
                    }
                    st.sh.served.bytes(Kind::Events, frame.len() as u64);
                    return Some((Ok(Frame::data(Bytes::from(frame))), st));
                }
                // Marathon drops events for a slow consumer and goes on.
                Err(RecvError::Lagged(n)) => {
                    eprintln!("fake-marathon[{}] slow event consumer: {n} events dropped", st.idx);
                }
                Err(RecvError::Closed) => return None,
            },
            _ = st.keepalive.tick() => {
                let ka = format!(": keepalive{}", st.eol);
                st.sh.served.bytes(Kind::Events, ka.len() as u64);
                return Some((Ok(Frame::data(Bytes::from(ka))), st));
            }
            _ = st.sse_kill.changed() => st.after = After::Abort,
            _ = st.conn_kill.changed() => st.after = After::Abort,
            r = st.leader.changed() => {
                // Abdication closes every stream (Marathon's standby closes handles).
                if r.is_err() || *st.leader.borrow() != Some(st.idx) {
                    return None;
                }
            }
        }
    }
}

fn events(
    sh: &Arc<Shared>,
    idx: usize,
    peer: SocketAddr,
    headers: &HeaderMap,
    query: &str,
    truncate: bool,
) -> Response<Body> {
    // Jetty's EventSourceServlet opens a stream only for this exact Accept
    // value; anything else falls through to HttpServlet.doGet: 405.
    let sse = headers.get_all(header::ACCEPT).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.trim().eq_ignore_ascii_case("text/event-stream"))
    });
    if !sse {
        return reply(
            405,
            "text/html;charset=iso-8859-1",
            b"HTTP method GET is not supported by this URL (send Accept: text/event-stream)"
                .to_vec(),
            false,
        );
    }
    let inst = &sh.instances[idx];
    let period = sh.opts.keepalive;
    let st = Stream {
        sh: sh.clone(),
        idx,
        remote: peer.ip().to_string(),
        rx: sh.events.subscribe(),
        filter: query_values(query, "event_type"),
        keepalive: interval_at(Instant::now() + period, period),
        sse_kill: inst.sse_kill.subscribe(),
        conn_kill: inst.conn_kill.subscribe(),
        leader: sh.leader.subscribe(),
        truncate,
        eol: if sh.opts.crlf { "\r\n" } else { "\n" },
        after: After::Continue,
    };
    inst.sse_open.fetch_add(1, Ordering::Relaxed);
    // Published on the bus after subscribing: every stream (this one first)
    // sees it, subject to its event_type filter, as in Marathon.
    sh.publish(json!({
        "eventType": "event_stream_attached",
        "remoteAddress": peer.ip().to_string(),
    }));
    let body = StreamBody::new(futures_util::stream::unfold(st, next_frame)).boxed_unsync();
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "text/event-stream;charset=utf-8")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
        .expect("valid response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query() {
        assert_eq!(
            query_values(
                "event_type=a&event_type=b%5Fc&embed=apps.tasks",
                "event_type"
            ),
            ["a", "b_c"]
        );
        assert_eq!(query_values("x=%zz%4", "x"), ["%zz%4"]);
        assert!(query_values("", "x").is_empty());
    }
}
