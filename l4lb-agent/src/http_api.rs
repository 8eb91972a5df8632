//! The discovery HTTP API on the metrics listener (127.0.0.1 by default):
//! Mesos-DNS's `/v1/version`, `/v1/config`, `/v1/hosts/{host}`,
//! `/v1/services/{service}`, `/v1/enumerate` and dcos-net's `/v1/vips` (with
//! an ETag; `If-None-Match` → 304) and `/v1/records`. The documents are
//! `l4lb_core::dns::http_api`'s; this module only routes and reads the latest
//! [`View`] the apply loop publishes.
use std::{
    collections::BTreeSet,
    net::SocketAddr,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
};

use axum::{
    Router,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use l4lb_core::dns::http_api::{self, MesosDnsConfig};
use serde::Serialize;
use tokio::sync::watch;
use tracing::warn;

use crate::dns::{DnsConfig, ZoneOptions, Zones};
use crate::model::{Catalog, Vip};

/// What the API answers from: the applied catalog with the VIPs the maps
/// hold, and its zones. Swapped whole after each apply. When the DNS server
/// runs, its zone thread puts the zones it built from this view here; until
/// it has, the API answers from the last zones it published (they trail the
/// catalog by one build). Without it they are built on the first request
/// that needs them (building them at every apply would cost every apply, at
/// 10,000 apps, for an API that may never be called).
#[derive(Debug, Default)]
pub struct View {
    pub catalog: Arc<Catalog>,
    pub published: BTreeSet<Vip>,
    zone_opts: ZoneOptions,
    zones: OnceLock<Arc<Zones>>,
    /// The DNS server's last zones, when it runs.
    dns_zones: Option<watch::Receiver<Arc<Zones>>>,
}

impl View {
    /// `dns_zones`: the zones the DNS server publishes, when it runs.
    pub fn new(
        catalog: Arc<Catalog>,
        published: BTreeSet<Vip>,
        zone_opts: ZoneOptions,
        dns_zones: Option<watch::Receiver<Arc<Zones>>>,
    ) -> View {
        View {
            catalog,
            published,
            zone_opts,
            zones: OnceLock::new(),
            dns_zones,
        }
    }

    /// The zones built from this view (by the DNS server's zone thread);
    /// a later call keeps the first.
    pub fn set_zones(&self, zones: Arc<Zones>) {
        let _ = self.zones.set(zones);
    }

    /// The catalog with its task records, unpacked when the source keeps
    /// them packed (`Keep::Packed`: the API is their only reader), made for
    /// the request that asks and freed with it.
    pub fn records(&self) -> Arc<Catalog> {
        if self.catalog.packed.is_empty() {
            return self.catalog.clone();
        }
        let (catalog, skipped) = self.catalog.unpacked();
        if skipped > 0 {
            UNPACK_SKIPPED.fetch_add(skipped as u64, Ordering::Relaxed);
            warn!(
                parts = skipped,
                "task records that do not unpack (a bug): those apps' tasks are left out"
            );
        }
        Arc::new(catalog)
    }

    /// The zones set or built for this view so far (none built now).
    pub fn built_zones(&self) -> Option<Arc<Zones>> {
        self.zones.get().cloned()
    }

    /// The zones of this view, or the DNS server's last loaded ones while
    /// it builds them, or built now if there is no DNS server (or it has
    /// loaded none yet).
    pub fn zones(&self) -> Arc<Zones> {
        if let Some(z) = self.zones.get() {
            return z.clone();
        }
        if let Some(last) = self.dns_zones.as_ref().map(|rx| rx.borrow().clone())
            && last.is_loaded()
        {
            return last;
        }
        self.zones
            .get_or_init(|| {
                Arc::new(crate::dns::build_zones(
                    &self.records(),
                    &self.published,
                    &self.zone_opts,
                ))
            })
            .clone()
    }
}

/// A view's zones off the async workers (a first build can take a while).
async fn zones_of(view: Arc<View>) -> Arc<Zones> {
    match tokio::task::spawn_blocking({
        let view = view.clone();
        move || view.zones()
    })
    .await
    {
        Ok(z) => z,
        Err(_) => view.zones(),
    }
}

/// Parts whose packed task records did not unpack, since start.
pub static UNPACK_SKIPPED: AtomicU64 = AtomicU64::new(0);

#[derive(Clone)]
struct Api {
    view: watch::Receiver<Arc<View>>,
    config: Arc<MesosDnsConfig>,
}

/// Mesos-DNS's `/v1/config`, filled from our flags.
pub fn mesos_dns_config(dns: Option<&DnsConfig>, http: SocketAddr) -> MesosDnsConfig {
    let mut c = MesosDnsConfig {
        http_port: http.port(),
        http_listener: http.ip().to_string(),
        dns_on: dns.is_some(),
        ..MesosDnsConfig::default()
    };
    let zone = dns.map(|d| d.zone.clone()).unwrap_or_default();
    c.ttl = zone.ttls.mesos;
    c.soa_minttl = zone.ttls.mesos;
    c.ip_sources = http_api::ip_source_names(&zone.ip_sources);
    c.set_domain(&zone.mesos_domain);
    if let Some(d) = dns {
        if let Some(l) = d.listen.first() {
            c.listener = l.ip().to_string();
            c.port = l.port();
        }
        c.resolvers = d.upstreams.iter().map(ToString::to_string).collect();
        c.external_on = !d.upstreams.is_empty();
        c.recurse_on = !d.upstreams.is_empty();
    }
    c
}

/// The routes, to be merged into the metrics listener's router.
pub fn router(view: watch::Receiver<Arc<View>>, config: MesosDnsConfig) -> Router {
    Router::new()
        .route("/v1/version", get(version))
        .route("/v1/config", get(config_handler))
        .route("/v1/hosts/{host}", get(hosts))
        .route("/v1/services/{service}", get(services))
        .route("/v1/enumerate", get(enumerate))
        .route("/v1/records", get(records))
        .route("/v1/vips", get(vips))
        .with_state(Api {
            view,
            config: Arc::new(config),
        })
}

impl Api {
    fn view(&self) -> Arc<View> {
        self.view.borrow().clone()
    }
}

fn json_body(doc: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(doc).unwrap_or_else(|_| b"null".to_vec())
}

fn json(body: Vec<u8>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

async fn version() -> Response {
    json(json_body(&http_api::version(env!("CARGO_PKG_VERSION"))))
}

async fn config_handler(State(api): State<Api>) -> Response {
    let mut c = (*api.config).clone();
    let zones = zones_of(api.view()).await;
    if let Some(z) = zones
        .zones()
        .iter()
        .find(|z| z.origin().to_string() == format!("{}.", c.domain))
        && let hickory_proto::rr::RData::SOA(soa) = z.soa().data()
    {
        c.soa_serial = soa.serial();
    }
    json(json_body(&c))
}

async fn hosts(State(api): State<Api>, Path(host): Path<String>) -> Response {
    json(json_body(&http_api::hosts(
        &*zones_of(api.view()).await,
        &host,
    )))
}

async fn services(State(api): State<Api>, Path(service): Path<String>) -> Response {
    json(json_body(&http_api::services(
        &*zones_of(api.view()).await,
        &service,
    )))
}

async fn enumerate(State(api): State<Api>) -> Response {
    let view = api.view();
    let sources = view_sources(&api);
    let domain = &api.config.domain;
    json(json_body(&http_api::enumerate(
        &view.records(),
        &sources,
        domain,
    )))
}

fn view_sources(api: &Api) -> Vec<crate::dns::ip_sources::IpSource> {
    api.config
        .ip_sources
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect()
}

async fn records(State(api): State<Api>) -> Response {
    json(json_body(&http_api::all_records(
        &*zones_of(api.view()).await,
    )))
}

async fn vips(State(api): State<Api>, headers: HeaderMap) -> Response {
    let view = api.view();
    let body = json_body(&http_api::vips(&view.catalog, &view.published));
    let etag = http_api::etag(&body);
    let tag = HeaderValue::from_str(&etag).expect("base64 in quotes is a valid header");
    let matched = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| http_api::if_none_match(v, &etag));
    if matched {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response();
    }
    let mut resp = json(body);
    resp.headers_mut().insert(header::ETAG, tag);
    resp
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use l4lb_core::dns::{records::ZoneOptions, sample::redis_catalog};
    use tower::ServiceExt;

    use super::*;

    fn app() -> Router {
        let (catalog, published) = redis_catalog();
        let view = View::new(Arc::new(catalog), published, ZoneOptions::default(), None);
        let (_tx, rx) = watch::channel(Arc::new(view));
        std::mem::forget(_tx);
        router(
            rx,
            mesos_dns_config(
                Some(&DnsConfig::default()),
                "127.0.0.1:62080".parse().unwrap(),
            ),
        )
    }

    async fn get(app: &Router, uri: &str, inm: Option<&str>) -> (StatusCode, HeaderMap, Vec<u8>) {
        let mut req = Request::builder().uri(uri);
        if let Some(v) = inm {
            req = req.header(header::IF_NONE_MATCH, v);
        }
        let resp = app
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, headers, body.to_vec())
    }

    /// dcos-net `dcos_rest_SUITE` `json_ok` (`/v1/vips`, `/v1/version`,
    /// `/v1/records` answer 200 with JSON) and `skip` (`/v1/config`,
    /// `/v1/hosts/foobar`, `/v1/services/bazqux`, `/v1/enumerate` answer):
    /// here every one is 200 JSON, as Mesos-DNS answers them.
    #[tokio::test]
    async fn every_route_answers_json() {
        let app = app();
        for path in [
            "/v1/vips",
            "/v1/version",
            "/v1/records",
            "/v1/config",
            "/v1/hosts/foobar",
            "/v1/services/bazqux",
            "/v1/enumerate",
        ] {
            let (status, headers, body) = get(&app, path, None).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(headers[header::CONTENT_TYPE], "application/json", "{path}");
            let _: serde_json::Value = serde_json::from_slice(&body).unwrap();
        }
        let (_, _, body) = get(&app, "/v1/hosts/foobar", None).await;
        assert_eq!(body, br#"[{"host":"","ip":""}]"#);
    }

    /// `--dns-domain foo.com`: /v1/config names it (and its SOA, whose
    /// serial is the zone's), /v1/hosts and /v1/enumerate answer under it.
    #[tokio::test]
    async fn the_dns_domain_reaches_the_api() {
        let (catalog, published) = redis_catalog();
        let zone = ZoneOptions {
            mesos_domain: "foo.com".into(),
            ..ZoneOptions::default()
        };
        let view = View::new(Arc::new(catalog), published, zone.clone(), None);
        let (_tx, rx) = watch::channel(Arc::new(view));
        let dns = DnsConfig {
            zone,
            ..DnsConfig::default()
        };
        let app = router(
            rx,
            mesos_dns_config(Some(&dns), "127.0.0.1:1".parse().unwrap()),
        );
        let json = |b: Vec<u8>| serde_json::from_slice::<serde_json::Value>(&b).unwrap();
        let c = json(get(&app, "/v1/config", None).await.2);
        assert_eq!(
            (&c["Domain"], &c["SOAMname"]),
            (&"foo.com".into(), &"ns1.foo.com.".into())
        );
        assert_ne!(c["SOASerial"], 0);
        let h = json(
            get(&app, "/v1/hosts/redis-tutorial.marathon.foo.com", None)
                .await
                .2,
        );
        assert_eq!(h[0]["ip"], "127.0.1.11");
        let e = get(&app, "/v1/enumerate", None).await.2;
        let e = String::from_utf8(e).unwrap();
        assert!(e.contains("redis-tutorial.marathon.foo.com."), "{e}");
        assert!(!e.contains(".mesos."), "{e}");
    }

    /// dcos-net `dcos_rest_vips_handler`: an ETag on `/v1/vips`; a client
    /// sending it back gets 304 and no body.
    #[tokio::test]
    async fn vips_etag_304() {
        let app = app();
        let (status, headers, body) = get(&app, "/v1/vips", None).await;
        assert_eq!(status, StatusCode::OK);
        let etag = headers[header::ETAG].to_str().unwrap().to_owned();
        assert_eq!(etag, http_api::etag(&body));
        let (status, headers, body) = get(&app, "/v1/vips", Some(&etag)).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        assert_eq!(headers[header::ETAG].to_str().unwrap(), etag);
        assert!(body.is_empty());
        let (status, _, _) = get(&app, "/v1/vips", Some("\"other\"")).await;
        assert_eq!(status, StatusCode::OK);
    }

    /// A view of `apps` (a Marathon `/v2/apps` body) read keeping `keep`.
    fn marathon_view(apps: &[u8], keep: crate::marathon::parse::Keep) -> Arc<View> {
        use crate::marathon::decode::AppSet;
        let mut set = AppSet::keeping(keep);
        set.refresh_from_slice(apps).unwrap();
        let mut alloc = crate::naming::VipAllocator::new();
        let hosts = crate::hosts::HostTable::default();
        let mut p = set.update_catalog(&mut alloc, &hosts).unwrap();
        if let Some(s) = &p.services {
            p.catalog.services = crate::model::desired_state(s);
        }
        assert_eq!(
            p.catalog.packed.is_empty(),
            keep != crate::marathon::parse::Keep::Packed
        );
        let published = p.catalog.services.services.keys().copied().collect();
        let view = View::new(Arc::new(p.catalog), published, ZoneOptions::default(), None);
        Arc::new(view)
    }

    /// Apps out of id order, tasks out of id order, a task id two apps
    /// share: what the catalog's order is made of.
    fn unsorted_apps() -> Vec<u8> {
        let task = |id: &str, host: &str| {
            serde_json::json!({"id": id, "host": host, "ports": [31000],
                "state": "TASK_RUNNING", "slaveId": format!("S-{host}"),
                "ipAddresses": [{"ipAddress": host, "protocol": "IPv4"}]})
        };
        let app = |id: &str, tasks: Vec<serde_json::Value>| {
            serde_json::json!({"id": id, "portDefinitions": [{"port": 0, "name": "web",
                "labels": {"VIP_0": format!("{id}:80")}}], "tasks": tasks})
        };
        let apps = [
            app(
                "/zeta",
                vec![task("zeta.3", "10.0.0.3"), task("zeta.1", "10.0.0.1")],
            ),
            app(
                "/alpha/web",
                vec![task("same", "10.0.1.2"), task("a.0", "10.0.1.1")],
            ),
            app("/alpha", vec![task("same", "10.0.2.1")]),
        ];
        serde_json::to_vec(&serde_json::json!({ "apps": apps })).unwrap()
    }

    /// The discovery API answers the same bytes from packed records as
    /// from records (the default agent keeps them packed).
    #[tokio::test]
    async fn packed_records_answer_the_same_bytes() {
        use crate::marathon::parse::Keep;
        let fixture = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../l4lb-core/tests/fixtures/marathon/apps_redis_host.json"
        );
        let bodies = [std::fs::read(fixture).unwrap(), unsorted_apps()];
        let config = mesos_dns_config(None, "127.0.0.1:1".parse().unwrap());
        let paths = [
            "/v1/enumerate",
            "/v1/records",
            "/v1/hosts/zeta.marathon.mesos",
            "/v1/services/_web._zeta._tcp.marathon.mesos",
            "/v1/hosts/redis-tutorial.marathon.mesos",
            "/v1/vips",
        ];
        for body in &bodies {
            let mut answers = Vec::new();
            for keep in [Keep::Records, Keep::Packed] {
                let (_tx, rx) = watch::channel(marathon_view(body, keep));
                let app = router(rx, config.clone());
                let mut got = Vec::new();
                for path in paths {
                    got.push(get(&app, path, None).await.2);
                }
                answers.push(got);
            }
            assert_eq!(answers[0], answers[1]);
            let text = String::from_utf8(answers[0][0].clone()).unwrap();
            assert!(text.contains("\"id\":\""), "tasks enumerated: {text}");
        }
    }

    #[tokio::test]
    async fn config_has_our_values() {
        let (_, _, body) = get(&app(), "/v1/config", None).await;
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["HttpPort"], 62080);
        assert_eq!(v["HTTPListener"], "127.0.0.1");
        assert_eq!(v["IPSources"], serde_json::json!(["host", "netinfo"]));
        assert_ne!(v["SOASerial"], 0);
    }
}
