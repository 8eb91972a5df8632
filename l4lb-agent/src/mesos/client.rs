//! HTTP client for the Mesos master: the operator API subscription
//! (`POST /api/v1` SUBSCRIBE, a RecordIO body) and `GET /master/state`.
//! Built from the Marathon client's pieces: configured origins alone see the
//! credentials, a non-leading master's 307 is followed only to one of them
//! and the master it led to is tried first next time, the credentials file is
//! re-read once on a 401, every body is capped, every wait bounded.
use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use bytes::Bytes;
use reqwest::{
    Method, StatusCode,
    header::{ACCEPT, CONTENT_TYPE, HeaderValue, LOCATION},
};
use tracing::{debug, info, warn};
use url::Url;

use super::{
    args::MesosConfig,
    stats::{MesosStats, bump},
};
use crate::marathon::{
    args::Credentials,
    body::{self, BodyError},
    client::describe,
    origin::{self, Leader, Trusted},
};

/// The SUBSCRIBE call's body.
const SUBSCRIBE: &str = r#"{"type":"SUBSCRIBE"}"#;

/// Why a request gave nothing usable.
#[derive(Debug, thiserror::Error)]
pub enum MesosError {
    #[error("{url}: {reason}")]
    Connect { url: Url, reason: String },
    #[error("{url}: no answer within {timeout:?}")]
    Timeout { url: Url, timeout: Duration },
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        url: Url,
        status: StatusCode,
        body: String,
    },
    #[error("{url}: {reason}")]
    Redirect { url: Url, reason: String },
    #[error("{url}: {reason}")]
    Body { url: Url, reason: String },
    #[error("every Mesos URL failed: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    AllFailed(Vec<MesosError>),
}

pub struct MesosClient {
    cfg: MesosConfig,
    trusted: Trusted,
    http: reqwest::Client,
    stats: Arc<MesosStats>,
    state: Mutex<State>,
}

/// What the client learns as it runs.
struct State {
    /// The master a redirect led to that answered: tried first.
    leader: Leader,
    auth: Option<Credentials>,
}

impl MesosClient {
    pub fn new(cfg: MesosConfig, stats: Arc<MesosStats>) -> anyhow::Result<MesosClient> {
        anyhow::ensure!(!cfg.urls.is_empty(), "no Mesos URL");
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .user_agent(concat!("l4lb-agent/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(cfg.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .tcp_keepalive(Duration::from_secs(30))
            .no_proxy();
        if let Some(pem) = &cfg.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)?;
            anyhow::ensure!(!certs.is_empty(), "no PEM certificate in the CA file");
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        Ok(MesosClient {
            trusted: Trusted::new(&cfg.urls),
            http: b.build()?,
            stats,
            state: Mutex::new(State {
                leader: Leader::default(),
                auth: cfg.auth.clone(),
            }),
            cfg,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is plain data, consistent after any panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn config(&self) -> &MesosConfig {
        &self.cfg
    }

    /// Subscribes: the 2xx response whose body is the RecordIO stream (its
    /// headers within the request timeout; the body has no overall limit).
    pub async fn subscribe(&self) -> Result<reqwest::Response, MesosError> {
        self.each_url(|base| async move {
            let url = join(&base, "api/v1");
            self.request(Method::POST, &base, url, Some(SUBSCRIBE))
                .await
        })
        .await
    }

    /// `GET /master/state`, whole, within the request timeout and the cap.
    pub async fn master_state(&self) -> Result<Bytes, MesosError> {
        self.each_url(|base| async move {
            let url = join(&base, "master/state");
            let resp = self.request(Method::GET, &base, url.clone(), None).await?;
            let announced = resp.content_length();
            let read = body::read_capped(resp.bytes_stream(), announced, self.cfg.max_record);
            match tokio::time::timeout(self.cfg.request_timeout, read).await {
                Err(_) => Err(self.timeout(&url)),
                Ok(Ok(b)) => Ok(b),
                Ok(Err(e)) => {
                    if matches!(e, BodyError::TooLarge(_)) {
                        bump(&self.stats.oversized, 1);
                    }
                    Err(body_error(&url, e))
                }
            }
        })
        .await
    }

    /// Tries the known leader, then each configured URL in turn, until one
    /// answers. A leader that fails is forgotten.
    async fn each_url<T, F, Fut>(&self, attempt: F) -> Result<T, MesosError>
    where
        F: Fn(Url) -> Fut,
        Fut: Future<Output = Result<T, MesosError>>,
    {
        let leader = self.state().leader.first().cloned();
        let others = self.cfg.urls.iter().filter(|u| Some(*u) != leader.as_ref());
        let bases: Vec<Url> = leader.iter().chain(others).cloned().collect();
        let mut errors = Vec::new();
        for base in bases {
            match attempt(base.clone()).await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    if self.state().leader.failed(&base) {
                        warn!("mesos: leader {base} failed, trying the configured URLs: {e}");
                    } else {
                        debug!("mesos: {e}");
                    }
                    errors.push(e);
                }
            }
        }
        Err(match errors.len() {
            1 => errors.pop().expect("one error"),
            _ => MesosError::AllFailed(errors),
        })
    }

    /// One call to `url` (below `base`) with 307s followed to configured
    /// origins and the credentials re-read once on a 401. Where a redirect
    /// led and got a 2xx is the leader from now on.
    async fn request(
        &self,
        method: Method,
        base: &Url,
        mut url: Url,
        body: Option<&'static str>,
    ) -> Result<reqwest::Response, MesosError> {
        let mut hops = 0;
        let mut reloaded = false;
        loop {
            let resp = self.send(method.clone(), &url, body).await?;
            let status = resp.status();
            if status.is_success() {
                if let Some(leader) = self.state().leader.answered(base, &url) {
                    info!(%leader, "mesos: leading master");
                }
                return Ok(resp);
            }
            if status == StatusCode::TEMPORARY_REDIRECT {
                hops += 1;
                let location = resp.headers().get(LOCATION).map(HeaderValue::as_bytes);
                url = origin::redirect_target(&url, 307, location, hops, &self.trusted).map_err(
                    |why| MesosError::Redirect {
                        url: url.clone(),
                        reason: why.to_string().replace("--marathon", "--mesos"),
                    },
                )?;
                bump(&self.stats.redirects, 1);
                debug!(to = %url, "mesos: following the leader");
                continue;
            }
            if status == StatusCode::UNAUTHORIZED && !reloaded && self.reload_auth() {
                reloaded = true;
                continue;
            }
            let snippet = body::error_snippet(resp.bytes_stream());
            let body = tokio::time::timeout(self.cfg.request_timeout, snippet)
                .await
                .unwrap_or_default();
            return Err(MesosError::Status { url, status, body });
        }
    }

    /// Re-reads the credentials file; true if it now holds other credentials.
    fn reload_auth(&self) -> bool {
        let Some(path) = &self.cfg.auth_file else {
            return false;
        };
        Credentials::reload(path, &mut self.state().auth, "mesos")
    }

    async fn send(
        &self,
        method: Method,
        url: &Url,
        body: Option<&'static str>,
    ) -> Result<reqwest::Response, MesosError> {
        let mut req = self
            .http
            .request(method, url.clone())
            .header(ACCEPT, HeaderValue::from_static("application/json"));
        if let Some(b) = body {
            req = req
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(b);
        }
        if self.trusted.allows(url)
            && let Some(auth) = self.state().auth.clone()
        {
            req = auth.authorize(req);
        }
        match tokio::time::timeout(self.cfg.request_timeout, req.send()).await {
            Err(_) => Err(self.timeout(url)),
            Ok(Err(e)) if e.is_timeout() => Err(self.timeout(url)),
            Ok(Err(e)) => Err(MesosError::Connect {
                url: url.clone(),
                reason: describe(&e),
            }),
            Ok(Ok(resp)) => Ok(resp),
        }
    }

    fn timeout(&self, url: &Url) -> MesosError {
        MesosError::Timeout {
            url: url.clone(),
            timeout: self.cfg.request_timeout,
        }
    }
}

fn join(base: &Url, path: &str) -> Url {
    base.join(path).expect("a relative path joins any base")
}

fn body_error(url: &Url, e: BodyError<reqwest::Error>) -> MesosError {
    MesosError::Body {
        url: url.clone(),
        reason: match e {
            BodyError::Transport(e) => describe(&e),
            other => other.to_string(),
        },
    }
}
