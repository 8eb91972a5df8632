//! HTTP client for the Marathon REST API: several base URLs, leader discovery,
//! redirects followed by hand (only between configured origins, which alone
//! see the credentials: see [`super::origin`]), timeouts on every request and
//! a size cap on every body, error bodies and the event stream included.
//!
//! A failed or incomplete answer is always an error, never an empty or partial
//! table: the caller keeps its last good state.
use std::{
    error::Error as _,
    path::PathBuf,
    sync::{Arc, Mutex, atomic::Ordering},
    time::Duration,
};

use bytes::Bytes;
use reqwest::{
    StatusCode,
    header::{ACCEPT, HeaderValue, LOCATION},
};
use tracing::{debug, info, warn};
use url::Url;

pub use super::origin::MAX_REDIRECTS;
use super::{
    args::Credentials,
    body::{self, BodyError},
    decode::{self, AppSet, OneApp},
    events::{self, MarathonEvents},
    origin::{self, Leader, Refused, Trusted},
    parse::ParseError,
    source::SourceStats,
};

/// Default largest `/v2/apps` body (`--marathon-max-body-bytes`): room for
/// 10,000 apps of 5 tasks and more (sizes in BENCHMARKS.md). A body past the
/// cap is refused rather than half-read; it is decoded as it arrives, never
/// held whole.
pub const DEFAULT_MAX_BODY: usize = 128 << 20;
/// Largest `/v2/leader` answer (`{"leader":"host:port"}`).
const LEADER_BODY_MAX: usize = 64 << 10;
/// Body chunks waiting for the decoder of a full read (see `decode_body`).
const IN_FLIGHT_CHUNKS: usize = 4;

/// Everything the client needs; built by [`super::args::MarathonArgs::resolve`].
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Base URLs, each ending in `/`, tried in this order.
    pub urls: Vec<Url>,
    pub auth: Option<Credentials>,
    /// Where `auth` came from, re-read on a 401.
    pub auth_file: Option<PathBuf>,
    /// Extra trusted roots (PEM, one or more certificates).
    pub ca_pem: Option<Vec<u8>>,
    /// Connect + complete answer, per request (connect + headers for the event stream).
    pub request_timeout: Duration,
    /// Event stream silence that counts as a dead connection.
    pub idle_timeout: Duration,
    /// Cap on a response body (`--marathon-max-body-bytes`).
    pub max_body: usize,
    /// Cap on one event-stream line and on one event (`--marathon-max-event-bytes`).
    pub max_event: usize,
}

impl ClientConfig {
    /// No auth, no CA, default limits: for tests and simple setups.
    pub fn new(urls: Vec<Url>) -> ClientConfig {
        ClientConfig {
            urls,
            auth: None,
            auth_file: None,
            ca_pem: None,
            request_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            max_body: DEFAULT_MAX_BODY,
            max_event: events::DEFAULT_MAX_EVENT,
        }
    }
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no Marathon URL")]
    NoUrl,
    #[error("--marathon-ca-file: {0}")]
    Ca(String),
    #[error("building the HTTP client: {0}")]
    Build(String),
}

/// Why a request produced no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No response at all: refused, reset, DNS, TLS.
    #[error("{url}: no response: {reason}")]
    Connect { url: Url, reason: String },
    #[error("{url}: no complete answer within {timeout:?}")]
    Timeout { url: Url, timeout: Duration },
    #[error("{url}: HTTP {status}{}", if body.is_empty() { String::new() } else { format!(": {body}") })]
    Status {
        url: Url,
        status: StatusCode,
        /// The start of the error body (Marathon explains itself there).
        body: String,
    },
    /// The body broke off (shorter than announced, connection reset).
    #[error("{url}: incomplete response body: {reason}")]
    Body { url: Url, reason: String },
    #[error("{url}: response body over the {limit}-byte limit")]
    TooLarge { url: Url, limit: usize },
    #[error("{url}: redirect not followed: {reason}")]
    Redirect { url: Url, reason: String },
    #[error("{url}: {reason}")]
    Protocol { url: Url, reason: String },
    /// A complete answer that is not a usable app list / app.
    #[error("{url}: {source}")]
    Decode {
        url: Url,
        #[source]
        source: Box<ParseError>,
    },
    #[error("every Marathon URL failed: {}", join(.0))]
    AllFailed(Vec<FetchError>),
}

fn join(errors: &[FetchError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl FetchError {
    /// Whether another Marathon instance may do better: true for no answer,
    /// a timeout, a 5xx or a broken body; false for answers every instance
    /// would give (401, 403, 404, 422…).
    pub fn try_next_url(&self) -> bool {
        match self {
            FetchError::Connect { .. }
            | FetchError::Timeout { .. }
            | FetchError::Body { .. }
            | FetchError::Redirect { .. }
            | FetchError::Protocol { .. } => true,
            FetchError::Status { status, .. } => status.is_server_error(),
            FetchError::TooLarge { .. } | FetchError::Decode { .. } | FetchError::AllFailed(_) => {
                false
            }
        }
    }

    /// The HTTP status, if the failure was one (last one for `AllFailed`).
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            FetchError::Status { status, .. } => Some(*status),
            FetchError::AllFailed(v) => v.last().and_then(FetchError::status),
            _ => None,
        }
    }
}

/// `v2/apps/{id}?embed=app.tasks` below `base`, or None if `id` is not a
/// Marathon app id (path segments of `a-z`, `0-9`, `-` and `.`): an id that
/// came off the event stream never gets to shape the URL otherwise.
pub fn app_url(base: &Url, id: &str) -> Option<Url> {
    if !is_app_id(id) {
        return None;
    }
    let mut u = base.join(&format!("v2/apps{id}")).ok()?;
    u.query_pairs_mut().append_pair("embed", "app.tasks");
    Some(u)
}

/// True for an absolute Marathon app id: `/` then path segments of `a-z`,
/// `0-9`, `-` and `.` (not `.` or `..` alone).
pub fn is_app_id(id: &str) -> bool {
    let Some(path) = id.strip_prefix('/') else {
        return false;
    };
    !path.is_empty()
        && path.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        })
}

/// `v2/pods/{id}::status` below `base`, or None if `id` is not a Marathon id
/// (pods and apps share the id syntax, see [`is_app_id`]).
pub fn pod_status_url(base: &Url, id: &str) -> Option<Url> {
    if !is_app_id(id) {
        return None;
    }
    base.join(&format!("v2/pods{id}::status")).ok()
}

/// `v2/pods/::status` (every pod with its instances) below `base`.
pub fn pods_status_url(base: &Url) -> Url {
    base.join("v2/pods/::status").expect("relative path joins")
}

/// `v2/apps?embed=apps.tasks` below `base`.
pub fn apps_url(base: &Url) -> Url {
    let mut u = base.join("v2/apps").expect("relative path joins");
    u.query_pairs_mut().append_pair("embed", "apps.tasks");
    u
}

/// `v2/events?event_type=…` (every type in [`events::SUBSCRIBED`]) below `base`.
pub fn events_url(base: &Url) -> Url {
    let mut u = base.join("v2/events").expect("relative path joins");
    {
        let mut q = u.query_pairs_mut();
        for t in events::SUBSCRIBED {
            q.append_pair("event_type", t);
        }
    }
    u
}

/// `v2/leader` below `base`.
pub fn leader_url(base: &Url) -> Url {
    base.join("v2/leader").expect("relative path joins")
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// JSON request with a total timeout.
    Api,
    /// The SSE stream: no total timeout.
    Stream,
}

#[derive(Default)]
struct State {
    /// Leader learnt from `/v2/leader` or a redirect; tried first.
    leader: Leader,
    /// The configured URL that answered last: tried before the others, so a
    /// dead first URL does not cost a timeout on every request.
    last_good: Option<Url>,
    auth: Option<Credentials>,
}

/// The Marathon API client. Cheap to share (`Arc`); all methods take `&self`.
pub struct MarathonClient {
    cfg: ClientConfig,
    /// The configured origins: the only ones that see the credentials.
    trusted: Trusted,
    api: reqwest::Client,
    stream: reqwest::Client,
    state: Mutex<State>,
    /// Refused redirects and over-cap reads are counted here.
    stats: Arc<SourceStats>,
    /// "No pods here" was logged (once per client).
    no_pods_logged: std::sync::atomic::AtomicBool,
}

impl MarathonClient {
    pub fn new(cfg: ClientConfig) -> Result<MarathonClient, ClientError> {
        if cfg.urls.is_empty() {
            return Err(ClientError::NoUrl);
        }
        let roots = match &cfg.ca_pem {
            Some(pem) => {
                let certs = reqwest::Certificate::from_pem_bundle(pem)
                    .map_err(|e| ClientError::Ca(describe(&e)))?;
                if certs.is_empty() {
                    return Err(ClientError::Ca("no PEM certificate in the file".into()));
                }
                certs
            }
            None => Vec::new(),
        };
        let builder = || {
            let mut b = reqwest::Client::builder()
                .use_rustls_tls()
                .user_agent(concat!("l4lb-agent/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(cfg.request_timeout)
                // Redirects are followed by hand: reqwest drops the
                // Authorization header on a cross-host hop, which is exactly
                // the non-leader → leader hop.
                .redirect(reqwest::redirect::Policy::none())
                // Marathon is cluster-internal; an HTTP proxy from the
                // environment would also buffer the event stream.
                .no_proxy();
            for c in &roots {
                b = b.add_root_certificate(c.clone());
            }
            b
        };
        let api = builder()
            .timeout(cfg.request_timeout)
            .build()
            .map_err(|e| ClientError::Build(describe(&e)))?;
        let stream = builder()
            // Notices a vanished peer even if the idle timeout were long.
            .tcp_keepalive(Duration::from_secs(30))
            .build()
            .map_err(|e| ClientError::Build(describe(&e)))?;
        let state = State {
            auth: cfg.auth.clone(),
            ..State::default()
        };
        Ok(MarathonClient {
            trusted: Trusted::new(&cfg.urls),
            cfg,
            api,
            stream,
            state: Mutex::new(state),
            stats: Arc::default(),
            no_pods_logged: Default::default(),
        })
    }

    /// Counts into `stats` (the source's) instead of its own.
    pub fn with_stats(mut self, stats: Arc<SourceStats>) -> MarathonClient {
        self.stats = stats;
        self
    }

    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    /// The leader's base URL, if it answered 2xx (pinned).
    pub fn leader(&self) -> Option<Url> {
        self.state().leader.pinned().cloned()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain data behind: keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refreshes `set` from the full app list with tasks, decoded while it
    /// arrives (the body is never held whole) straight into the set (see
    /// [`AppSet::refresh_from`]); true if anything changed. Any failure (no
    /// answer, timeout, non-2xx, body too large or cut short, not an app
    /// list) is an error, after which the set must not be used before a
    /// refresh succeeds.
    pub async fn refresh_app_set(&self, set: Arc<Mutex<AppSet>>) -> Result<bool, FetchError> {
        self.with_candidates(|base| {
            let set = set.clone();
            async move {
                let (url, resp) = self.get(&base, apps_url(&base), Kind::Api).await?;
                self.decode_body(&url, resp, self.cfg.max_body, set).await
            }
        })
        .await
    }

    /// One app with its tasks (`GET /v2/apps/{id}?embed=app.tasks`); Ok(None)
    /// when Marathon answers 404 (the app is gone). `id` must be a valid app
    /// id (see [`app_url`]), else the answer is a `Protocol` error.
    pub async fn fetch_app(&self, id: &str) -> Result<Option<OneApp>, FetchError> {
        self.with_candidates(|base| async move {
            let Some(url) = app_url(&base, id) else {
                return Err(FetchError::Protocol {
                    url: base,
                    reason: format!("{id:?} is not a Marathon app id"),
                });
            };
            let (url, resp) = match self.get(&base, url, Kind::Api).await {
                Ok(r) => r,
                Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => return Ok(None),
                Err(e) => return Err(e),
            };
            let body = self.read_body(&url, resp, self.cfg.max_body).await?;
            decode::decode_one_app(&body, id)
                .map(Some)
                .map_err(|e| FetchError::Decode {
                    url,
                    source: Box::new(e),
                })
        })
        .await
    }

    /// Refreshes the pods of `set` from `GET /v2/pods/::status` (read whole,
    /// within the body cap, then decoded off the runtime); true if anything
    /// changed. A Marathon without pods (404) has none: logged once. Any
    /// other failure is an error, as for [`Self::refresh_app_set`].
    pub async fn refresh_pods(&self, set: Arc<Mutex<AppSet>>) -> Result<bool, FetchError> {
        let body = self
            .with_candidates(|base| async move {
                let (url, resp) = match self.get(&base, pods_status_url(&base), Kind::Api).await {
                    Ok(r) => r,
                    Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => return Ok(None),
                    Err(e) => return Err(e),
                };
                let body = self.read_body(&url, resp, self.cfg.max_body).await?;
                Ok(Some((url, body)))
            })
            .await?;
        let Some((url, body)) = body else {
            if !self.no_pods_logged.swap(true, Ordering::Relaxed) {
                info!(
                    "marathon: /v2/pods/::status answers 404 (a Marathon without pods): apps only"
                );
            }
            return Ok(set.lock().unwrap_or_else(|p| p.into_inner()).clear_pods());
        };
        let decoded = tokio::task::spawn_blocking(move || {
            set.lock()
                .unwrap_or_else(|p| p.into_inner())
                .refresh_pods_from_slice(&body)
        })
        .await;
        match decoded {
            Ok(Ok(changed)) => Ok(changed),
            Ok(Err(e)) => Err(FetchError::Decode {
                url,
                source: Box::new(e),
            }),
            Err(join) => Err(FetchError::Protocol {
                url,
                reason: format!("decoder thread failed: {join}"),
            }),
        }
    }

    /// One pod with its instances (`GET /v2/pods/{id}::status`); Ok(None)
    /// when Marathon answers 404 (no such pod). `id` must be a valid id.
    pub async fn fetch_pod(&self, id: &str) -> Result<Option<OneApp>, FetchError> {
        self.with_candidates(|base| async move {
            let Some(url) = pod_status_url(&base, id) else {
                return Err(FetchError::Protocol {
                    url: base,
                    reason: format!("{id:?} is not a Marathon pod id"),
                });
            };
            let (url, resp) = match self.get(&base, url, Kind::Api).await {
                Ok(r) => r,
                Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => return Ok(None),
                Err(e) => return Err(e),
            };
            let body = self.read_body(&url, resp, self.cfg.max_body).await?;
            decode::decode_one_pod(&body, id)
                .map(Some)
                .map_err(|e| FetchError::Decode {
                    url,
                    source: Box::new(e),
                })
        })
        .await
    }

    /// Subscribes to `/v2/events` (leader first, redirects followed). The
    /// stream ends after an error or `idle_timeout` of silence; the caller
    /// reconnects.
    pub async fn events(&self) -> Result<MarathonEvents, FetchError> {
        // The stream only lives on the leader: ask who it is rather than be
        // redirected every time. Best effort; redirects cover the rest.
        if let Err(e) = self.refresh_leader().await {
            debug!("marathon: leader lookup failed: {e}");
        }
        let resp = self
            .with_candidates(|base| async move {
                let (url, resp) = self.get(&base, events_url(&base), Kind::Stream).await?;
                let ctype = resp
                    .headers()
                    .get(reqwest::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if !ctype.to_ascii_lowercase().starts_with("text/event-stream") {
                    return Err(FetchError::Protocol {
                        url,
                        reason: format!("expected text/event-stream, got {ctype:?}"),
                    });
                }
                let mut shown = url.clone();
                shown.set_query(None);
                info!(url = %shown, "marathon: event stream attached");
                Ok(resp)
            })
            .await?;
        Ok(events::from_bytes_capped(
            resp.bytes_stream(),
            self.cfg.idle_timeout,
            self.cfg.max_event,
        ))
    }

    /// Asks the configured URLs who leads (`GET /v2/leader`). The answer is
    /// used only for URLs that reach Marathon directly (path `/`): behind a
    /// proxy such as Admin Router the internal `host:port` may be unreachable
    /// and the proxy routes to the leader anyway. `Ok(None)`: no leader now,
    /// or not used.
    pub async fn refresh_leader(&self) -> Result<Option<Url>, FetchError> {
        if self.cfg.urls.iter().all(|u| u.path() != "/") {
            return Ok(None);
        }
        let bases = self.configured_order();
        let mut errors = Vec::new();
        for base in bases {
            let answer = async {
                let (url, resp) = self.get(&base, leader_url(&base), Kind::Api).await?;
                let body = self.read_body(&url, resp, LEADER_BODY_MAX).await?;
                Ok::<_, FetchError>((url, body))
            }
            .await;
            match answer {
                Ok((url, body)) => {
                    let leader =
                        parse_leader(&base, &body).map_err(|reason| FetchError::Protocol {
                            url: url.clone(),
                            reason,
                        })?;
                    return Ok(self.set_leader(&base, leader));
                }
                Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => {
                    // Marathon answers 404 while no leader is elected.
                    self.state().leader.none();
                    return Ok(None);
                }
                Err(e) if e.try_next_url() => errors.push(e),
                Err(e) => return Err(e),
            }
        }
        Err(FetchError::AllFailed(errors))
    }

    /// Takes `leader` (named by `/v2/leader` via `via`) as the candidate to
    /// try first, if `via` reaches Marathon directly and the leader is a
    /// configured origin (no other sees the credentials). Pinned once it
    /// answers 2xx.
    fn set_leader(&self, via: &Url, leader: Url) -> Option<Url> {
        if via.path() != "/" {
            return None;
        }
        if !self.trusted.allows(&leader) {
            self.refused(&format!(
                "/v2/leader names {leader}, not the origin of a configured --marathon URL: not used"
            ));
            return None;
        }
        let mut st = self.state();
        st.leader.named(leader);
        st.leader.first().cloned()
    }

    /// Counts a refused redirect or leader; loud the first time only.
    fn refused(&self, what: &str) {
        if self.stats.redirects_refused.fetch_add(1, Ordering::Relaxed) == 0 {
            warn!("marathon: {what} (list every Marathon instance in --marathon)");
        } else {
            debug!("marathon: {what}");
        }
    }

    /// Configured URLs, the last one that answered first.
    fn configured_order(&self) -> Vec<Url> {
        let last_good = self.state().last_good.clone();
        let mut v: Vec<Url> = last_good.into_iter().collect();
        for u in &self.cfg.urls {
            if !v.contains(u) {
                v.push(u.clone());
            }
        }
        v
    }

    /// Runs `attempt` against the leader (if known), then the configured URLs,
    /// until one succeeds or fails in a way another URL would not fix. Any
    /// failure of the leader drops it and moves on.
    async fn with_candidates<T, F, Fut>(&self, attempt: F) -> Result<T, FetchError>
    where
        F: Fn(Url) -> Fut,
        Fut: Future<Output = Result<T, FetchError>>,
    {
        let leader = self.state().leader.first().cloned();
        let mut bases: Vec<Url> = leader.iter().cloned().collect();
        bases.extend(
            self.configured_order()
                .into_iter()
                .filter(|u| Some(u) != leader.as_ref()),
        );
        let mut errors = Vec::new();
        for base in bases {
            match attempt(base.clone()).await {
                Ok(v) => {
                    if self.cfg.urls.contains(&base) {
                        self.state().last_good = Some(base);
                    }
                    return Ok(v);
                }
                Err(e) if self.state().leader.failed(&base) => {
                    warn!("marathon: leader {base} failed, using the configured URLs: {e}");
                    errors.push(e);
                }
                Err(e) if e.try_next_url() => {
                    debug!("marathon: {e}");
                    errors.push(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(match errors.len() {
            1 => errors.pop().expect("one error"),
            _ => FetchError::AllFailed(errors),
        })
    }

    /// One GET of `url` (below `base`) with redirects between configured
    /// origins followed and the credentials re-read once on a 401. Returns the
    /// final URL and its 2xx response; a redirect's target that answered 2xx
    /// is pinned as the leader.
    async fn get(
        &self,
        base: &Url,
        url: Url,
        kind: Kind,
    ) -> Result<(Url, reqwest::Response), FetchError> {
        let mut url = url;
        let mut hops = 0;
        let mut reloaded = false;
        loop {
            let resp = self.send(&url, kind).await?;
            let status = resp.status();
            if status.is_success() {
                if let Some(leader) = self.state().leader.answered(base, &url) {
                    info!(%leader, "marathon: leader");
                }
                return Ok((url, resp));
            }
            if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
                hops += 1;
                let location = resp.headers().get(LOCATION).map(HeaderValue::as_bytes);
                let next =
                    origin::redirect_target(&url, status.as_u16(), location, hops, &self.trusted)
                        .map_err(|why| {
                        if matches!(why, Refused::OtherOrigin(_)) {
                            self.refused(&format!("{url}: {why}"));
                        }
                        FetchError::Redirect {
                            url: url.clone(),
                            reason: why.to_string(),
                        }
                    })?;
                debug!(from = %url, to = %next, "marathon: following redirect");
                url = next;
                continue;
            }
            if status == StatusCode::UNAUTHORIZED && !reloaded && self.reload_auth() {
                reloaded = true;
                continue;
            }
            // Bounded in size and, for the stream client, which has no
            // total timeout, in time.
            let snippet = body::error_snippet(resp.bytes_stream());
            let body = tokio::time::timeout(self.cfg.request_timeout, snippet)
                .await
                .unwrap_or_default();
            return Err(FetchError::Status { url, status, body });
        }
    }

    /// One request, no redirect following.
    async fn send(&self, url: &Url, kind: Kind) -> Result<reqwest::Response, FetchError> {
        let (client, accept) = match kind {
            Kind::Api => (&self.api, "application/json"),
            Kind::Stream => (&self.stream, "text/event-stream"),
        };
        let mut req = client
            .get(url.clone())
            .header(ACCEPT, HeaderValue::from_static(accept));
        // Every URL got here through the origin checks; this is the last line.
        let auth = match self.trusted.allows(url) {
            true => self.state().auth.clone(),
            false => None,
        };
        if let Some(auth) = &auth {
            req = auth.authorize(req);
        }
        // The API client's own timeout covers the body too; the stream client
        // has none, so bound the wait for its response headers here.
        let sent = tokio::time::timeout(self.cfg.request_timeout, req.send()).await;
        match sent {
            Err(_) => Err(FetchError::Timeout {
                url: url.clone(),
                timeout: self.cfg.request_timeout,
            }),
            Ok(Err(e)) if e.is_timeout() => Err(FetchError::Timeout {
                url: url.clone(),
                timeout: self.cfg.request_timeout,
            }),
            Ok(Err(e)) => Err(FetchError::Connect {
                url: url.clone(),
                reason: describe(&e),
            }),
            Ok(Ok(resp)) => Ok(resp),
        }
    }

    /// Re-reads the credentials file; true if it now holds other credentials.
    fn reload_auth(&self) -> bool {
        let Some(path) = &self.cfg.auth_file else {
            return false;
        };
        Credentials::reload(path, &mut self.state().auth, "marathon")
    }

    /// Feeds the body to [`AppSet::refresh_from_pieces`] on a blocking thread
    /// as chunks arrive. Transport errors win over what the decoder made of a
    /// body that broke off.
    async fn decode_body(
        &self,
        url: &Url,
        mut resp: reqwest::Response,
        limit: usize,
        set: Arc<Mutex<AppSet>>,
    ) -> Result<bool, FetchError> {
        let announced = resp.content_length();
        if announced.is_some_and(|n| n > limit as u64) {
            return Err(self.over_cap(url, limit));
        }
        // A few chunks in flight: each can be hyper's whole read buffer
        // (~400 KB on a fast link), and whatever waits here is held on top
        // of the set (64 of them were ~25 MB of a full read's peak RSS at
        // 10,000 apps, see BENCHMARKS.md; one alone made the decoder wait on
        // the reader at each hand-off on a busy machine). The decoder is the
        // slow side: a full channel makes the sender wait, and TCP backs
        // Marathon off.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(IN_FLIGHT_CHUNKS);
        let decoder = tokio::task::spawn_blocking(move || {
            let mut set = set.lock().unwrap_or_else(|p| p.into_inner());
            // The chunks as they come (see `AppSet::refresh_from_pieces`: only
            // chunks under 256 KiB are joined, into one buffer).
            set.refresh_from_pieces(std::iter::from_fn(|| {
                rx.blocking_recv().map(Ok::<_, std::io::Error>)
            }))
        });
        let mut total = 0usize;
        let transport = loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    total += chunk.len();
                    if total > limit {
                        break Err(self.over_cap(url, limit));
                    }
                    // A closed channel: the decoder stopped on bad JSON.
                    if tx.send(chunk).await.is_err() {
                        break Ok(());
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) if e.is_timeout() => {
                    break Err(FetchError::Timeout {
                        url: url.clone(),
                        timeout: self.cfg.request_timeout,
                    });
                }
                Err(e) => {
                    break Err(FetchError::Body {
                        url: url.clone(),
                        reason: describe(&e),
                    });
                }
            }
        };
        drop(tx);
        let decoded = decoder.await;
        transport?;
        if let Some(n) = announced
            && total as u64 != n
            && decoded.as_ref().is_ok_and(|d| d.is_ok())
        {
            return Err(FetchError::Body {
                url: url.clone(),
                reason: format!("{total} of {n} announced bytes"),
            });
        }
        match decoded {
            Ok(Ok(changed)) => Ok(changed),
            Ok(Err(e)) => Err(FetchError::Decode {
                url: url.clone(),
                source: Box::new(e),
            }),
            Err(join) => Err(FetchError::Protocol {
                url: url.clone(),
                reason: format!("decoder thread failed: {join}"),
            }),
        }
    }

    /// Reads the whole body, refusing more than `limit` bytes. A body that
    /// ends early (fewer bytes than Content-Length, a broken chunked body) is
    /// an error from hyper, reported as `Body`.
    async fn read_body(
        &self,
        url: &Url,
        resp: reqwest::Response,
        limit: usize,
    ) -> Result<Bytes, FetchError> {
        let announced = resp.content_length();
        body::read_capped(resp.bytes_stream(), announced, limit)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge(limit) => self.over_cap(url, limit),
                BodyError::Transport(e) if e.is_timeout() => FetchError::Timeout {
                    url: url.clone(),
                    timeout: self.cfg.request_timeout,
                },
                BodyError::Transport(e) => FetchError::Body {
                    url: url.clone(),
                    reason: describe(&e),
                },
                short @ BodyError::Short { .. } => FetchError::Body {
                    url: url.clone(),
                    reason: short.to_string(),
                },
            })
    }

    /// A body over its cap: counted, and an error.
    fn over_cap(&self, url: &Url, limit: usize) -> FetchError {
        self.stats.over_cap.fetch_add(1, Ordering::Relaxed);
        FetchError::TooLarge {
            url: url.clone(),
            limit,
        }
    }
}

/// `{"leader":"host:port"}` → `<scheme of base>://host:port/`.
fn parse_leader(base: &Url, body: &[u8]) -> Result<Url, String> {
    #[derive(serde::Deserialize)]
    struct Leader {
        leader: String,
    }
    let l: Leader =
        serde_json::from_slice(body).map_err(|e| format!("bad /v2/leader answer: {e}"))?;
    let url = Url::parse(&format!("{}://{}/", base.scheme(), l.leader))
        .map_err(|e| format!("bad leader {:?}: {e}", l.leader))?;
    if url.path() != "/" || !url.username().is_empty() || url.host().is_none() {
        return Err(format!("bad leader {:?}", l.leader));
    }
    Ok(url)
}

/// A reqwest error with its causes ("connection refused" sits three levels
/// down), without the URL, which our messages carry already. The Mesos
/// client's too.
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&dyn std::error::Error> = e.source();
    while let Some(err) = cur {
        let s = err.to_string();
        if parts.last() != Some(&s) {
            parts.push(s);
        }
        cur = err.source();
    }
    if parts.is_empty() {
        parts.push(e.to_string());
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_below_the_base() {
        let base = Url::parse("https://master.mesos/marathon/").unwrap();
        assert_eq!(
            apps_url(&base).as_str(),
            "https://master.mesos/marathon/v2/apps?embed=apps.tasks"
        );
        assert_eq!(
            leader_url(&base).as_str(),
            "https://master.mesos/marathon/v2/leader"
        );
        let ev = events_url(&Url::parse("http://m:8080/").unwrap());
        assert_eq!(
            ev.as_str(),
            "http://m:8080/v2/events?event_type=status_update_event\
             &event_type=health_status_changed_event&event_type=api_post_event\
             &event_type=instance_changed_event&event_type=instance_health_changed_event\
             &event_type=app_terminated_event&event_type=deployment_success\
             &event_type=pod_created_event&event_type=pod_updated_event\
             &event_type=pod_deleted_event&event_type=event_stream_attached"
        );
        assert_eq!(
            pods_status_url(&base).as_str(),
            "https://master.mesos/marathon/v2/pods/::status"
        );
        assert_eq!(
            pod_status_url(&base, "/g/web").unwrap().as_str(),
            "https://master.mesos/marathon/v2/pods/g/web::status"
        );
        assert!(pod_status_url(&base, "/../x").is_none());
        assert!(pod_status_url(&base, "g/web").is_none());
        let types: Vec<_> = ev
            .query_pairs()
            .filter(|(k, _)| k == "event_type")
            .map(|(_, v)| v.into_owned())
            .collect();
        assert_eq!(types, events::SUBSCRIBED);
    }

    #[test]
    fn leader_answer() {
        let http = Url::parse("http://m1:8080/").unwrap();
        let https = Url::parse("https://m1:8443/").unwrap();
        assert_eq!(
            parse_leader(&http, br#"{"leader": "10.0.0.5:8080"}"#)
                .unwrap()
                .as_str(),
            "http://10.0.0.5:8080/"
        );
        assert_eq!(
            parse_leader(&https, br#"{"leader":"master-2.example:8443"}"#)
                .unwrap()
                .as_str(),
            "https://master-2.example:8443/"
        );
        assert!(parse_leader(&http, b"{}").is_err());
        assert!(parse_leader(&http, br#"{"leader":"a/b:1"}"#).is_err());
        assert!(parse_leader(&http, br#"{"leader":"u:p@h:1"}"#).is_err());
    }

    #[test]
    fn retry_elsewhere_classification() {
        let url = Url::parse("http://m/").unwrap();
        let status = |s: u16| FetchError::Status {
            url: url.clone(),
            status: StatusCode::from_u16(s).unwrap(),
            body: String::new(),
        };
        assert!(status(500).try_next_url());
        assert!(status(503).try_next_url());
        assert!(!status(401).try_next_url());
        assert!(!status(404).try_next_url());
        assert!(
            FetchError::Timeout {
                url: url.clone(),
                timeout: Duration::from_secs(1)
            }
            .try_next_url()
        );
        assert!(
            !FetchError::TooLarge {
                url: url.clone(),
                limit: 1
            }
            .try_next_url()
        );
    }
}
