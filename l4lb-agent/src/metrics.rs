//! Prometheus metrics (prometheus-client) and the agent's HTTP endpoints:
//! `/metrics`, `/healthz` (the process answers) and `/readyz` (a table from the
//! source is in the maps and the last sync did not fail). Bound to 127.0.0.1
//! unless told otherwise.
mod datapath;
mod family;
mod locality;
mod stream;

use family::{Labels, by_label};

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result};
use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use prometheus_client::{
    collector::Collector,
    encoding::DescriptorEncoder,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use crate::{dns::DnsCounters, hosts::resolver::HostStats, marathon::source::SourceStats};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:62080";
/// `--metrics-max-backends`: ~61,000 per-backend series at most (15 a
/// backend of a VIP), ~5 MB of a scrape's text.
pub const DEFAULT_MAX_BACKENDS: usize = 4096;

/// Counters and gauges the agent updates as it works.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Tables applied to the maps, by what triggered them.
    pub applies: Family<Vec<(String, String)>, Counter>,
    /// Applies that failed (map full, …): the previous table stayed.
    pub apply_errors: Counter,
    /// Services left out of an apply because a map was full.
    pub capacity_skips: Counter,
    /// Inconsistencies found in the pinned maps (adoption check): each rewritten.
    pub table_repairs: Counter,
    /// 1 while the last read of the source succeeded.
    pub sync_ok: Gauge,
    /// Unix time of the last good sync (its age is now − this).
    pub last_good_sync: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Source read failures (refused, timeout, non-2xx, unparsable): nothing applied.
    pub source_failures: Counter,
    /// Items the source skipped with a warning (bad app, label, …).
    pub skipped: Counter,
    /// Event received → maps updated, seconds.
    pub event_to_maps: Histogram,
    /// VIPs refused by the guard (control-plane, node or backend address,
    /// outside --vip-cidr), counted once each time the refused set changes.
    pub refused_vips: Counter,
    /// VIPs the guard refuses in the current table.
    pub refused_vips_now: Gauge,
    /// Failed syncs of the VIP routes to `l4lb0` (retried at the next apply).
    pub vip_route_errors: Counter,
    /// The DNS server's counters, once it runs (read at scrape time).
    dns: Arc<OnceLock<Arc<DnsCounters>>>,
    /// The Marathon source's counters, when it is the source.
    marathon: Arc<OnceLock<Arc<SourceStats>>>,
    mesos: Arc<OnceLock<Arc<crate::mesos::source::MesosStats>>>,
    hosts: Arc<OnceLock<Arc<HostStats>>>,
    ready: AtomicBool,
}

impl Metrics {
    /// `max_backends`: per-backend series only up to that many VIP members
    /// (`--metrics-max-backends`).
    pub fn new(pin_root: PathBuf, max_backends: usize) -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("l4lb");
        let applies = Family::default();
        registry.register(
            "table_applies",
            "Tables applied to the BPF maps, by trigger",
            applies.clone(),
        );
        let apply_errors = Counter::default();
        registry.register(
            "table_apply_errors",
            "Applies that failed; the previous table stayed",
            apply_errors.clone(),
        );
        let capacity_skips = Counter::default();
        registry.register(
            "capacity_skipped_services",
            "Services not applied because a map was full",
            capacity_skips.clone(),
        );
        let table_repairs = Counter::default();
        registry.register(
            "table_repairs",
            "Pinned services whose table did not match their members, rewritten",
            table_repairs.clone(),
        );
        let sync_ok = Gauge::default();
        registry.register(
            "sync_ok",
            "1 while the last read of the service source succeeded",
            sync_ok.clone(),
        );
        let last_good_sync = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "last_good_sync_timestamp_seconds",
            "Unix time of the last good source sync",
            last_good_sync.clone(),
        );
        let source_failures = Counter::default();
        registry.register(
            "source_failures",
            "Source reads that failed; nothing was applied",
            source_failures.clone(),
        );
        let skipped = Counter::default();
        registry.register(
            "source_skipped_items",
            "Apps, labels or entries skipped with a warning",
            skipped.clone(),
        );
        let event_to_maps = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "event_to_maps_seconds",
            "Source event received to BPF maps updated",
            event_to_maps.clone(),
        );
        let refused_vips = Counter::default();
        registry.register(
            "refused_vips",
            "VIPs refused because they collide with an address the node depends on",
            refused_vips.clone(),
        );
        let refused_vips_now = Gauge::default();
        registry.register(
            "refused_vips_current",
            "VIPs refused in the current table",
            refused_vips_now.clone(),
        );
        let vip_route_errors = Counter::default();
        registry.register(
            "vip_route_errors",
            "Failed syncs of the VIP routes to l4lb0, retried at the next apply",
            vip_route_errors.clone(),
        );
        let dns = Arc::new(OnceLock::new());
        registry.register_collector(Box::new(DnsCollector(dns.clone())));
        let marathon = Arc::new(OnceLock::new());
        registry.register_collector(Box::new(MarathonCollector(marathon.clone())));
        let mesos = Arc::new(OnceLock::new());
        registry.register_collector(Box::new(crate::mesos::stats::MesosCollector(mesos.clone())));
        let hosts = Arc::new(OnceLock::new());
        registry.register_collector(Box::new(HostsCollector(hosts.clone())));
        registry.register_collector(Box::new(datapath::DatapathCollector {
            pin_root,
            max_backends,
        }));
        Arc::new(Metrics {
            registry,
            applies,
            apply_errors,
            capacity_skips,
            table_repairs,
            sync_ok,
            last_good_sync,
            source_failures,
            skipped,
            event_to_maps,
            refused_vips,
            refused_vips_now,
            vip_route_errors,
            dns,
            marathon,
            mesos,
            hosts,
            ready: AtomicBool::new(false),
        })
    }

    /// Records a table that reached the maps.
    pub fn applied(&self, trigger: &str) {
        self.applies
            .get_or_create(&vec![("trigger".into(), trigger.into())])
            .inc();
        self.sync_ok.set(1);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        self.last_good_sync.set(now.as_secs_f64());
        self.ready.store(true, Ordering::Relaxed);
    }

    pub fn set_dns(&self, counters: Arc<DnsCounters>) {
        let _ = self.dns.set(counters);
    }

    pub fn set_marathon(&self, stats: Arc<SourceStats>) {
        let _ = self.marathon.set(stats);
    }

    pub fn set_mesos(&self, stats: Arc<crate::mesos::source::MesosStats>) {
        let _ = self.mesos.set(stats);
    }

    pub fn set_hosts(&self, stats: Arc<HostStats>) {
        let _ = self.hosts.set(stats);
    }

    pub fn source_failed(&self) {
        self.source_failures.inc();
        self.sync_ok.set(0);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && self.sync_ok.get() == 1
    }
}

/// `l4lb_dns_queries_total{result}`, `l4lb_dns_rrl_total{action}` and
/// `l4lb_dns_tcp_closed_total{reason}` from the DNS server's atomics.
#[derive(Debug)]
struct DnsCollector(Arc<OnceLock<Arc<DnsCounters>>>);

impl Collector for DnsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(counters) = self.0.get() else {
            return Ok(());
        };
        let snap = counters.snapshot();
        family::counters(
            &mut encoder,
            "dns_queries",
            "DNS queries answered, by result",
            by_label("result", snap.by_result()),
        )?;
        family::counters(
            &mut encoder,
            "dns_reply_cache_hits",
            "UDP replies served from a socket's reply cache (also counted by result)",
            [(Labels::new(), snap.cache_hits)],
        )?;
        family::counters(
            &mut encoder,
            "dns_rrl",
            "UDP answers the response-rate limit dropped or sent truncated (slipped)",
            by_label("action", snap.rrl()),
        )?;
        family::counters(
            &mut encoder,
            "dns_tcp_closed",
            "TCP connections the DNS server closed: message cut short or stalled, idle one evicted for a newcomer, newcomer refused",
            by_label("reason", snap.tcp_closed()),
        )
    }
}

/// The Marathon source's reads, events and stream reconnects.
#[derive(Debug)]
struct MarathonCollector(Arc<OnceLock<Arc<SourceStats>>>);

impl Collector for MarathonCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(stats) = self.0.get() else {
            return Ok(());
        };
        let s = stats.snapshot();
        let e = &mut encoder;
        let one = |n: u64| [(Labels::new(), n)];
        family::counters(
            e,
            "marathon_reads",
            "Good reads of Marathon: the whole app list (all) or only the apps events named (app)",
            by_label(
                "scope",
                [
                    ("all", s.fetch_ok.saturating_sub(s.targeted)),
                    ("app", s.targeted),
                ],
            ),
        )?;
        family::counters(
            e,
            "marathon_read_failures",
            "Reads of Marathon that failed; nothing was applied",
            one(s.fetch_failed),
        )?;
        family::counters(
            e,
            "marathon_events",
            "Events received on the event stream (malformed: data not JSON)",
            by_label(
                "kind",
                [
                    ("all", s.events_received),
                    ("malformed", s.events_malformed),
                ],
            ),
        )?;
        family::counters(
            e,
            "marathon_stream_reconnects",
            "Event stream losses and failed connection attempts",
            one(s.reconnects),
        )?;
        family::counters(
            e,
            "marathon_redirects_refused",
            "Redirects or /v2/leader answers naming a host outside --marathon: refused, no credentials sent",
            one(s.redirects_refused),
        )?;
        family::counters(
            e,
            "marathon_reads_over_cap",
            "Response bodies and event-stream lines/events over their cap: dropped",
            one(s.over_cap),
        )?;
        let unpack = crate::http_api::UNPACK_SKIPPED.load(std::sync::atomic::Ordering::Relaxed);
        family::counters(
            e,
            "discovery_unpack_errors",
            "Apps whose packed task records did not unpack for the discovery API (a bug): their tasks were left out of that answer",
            one(unpack),
        )
    }
}

/// Agents known by host name: lookups, failures, names resolved or not.
#[derive(Debug)]
struct HostsCollector(Arc<OnceLock<Arc<HostStats>>>);

impl Collector for HostsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(s) = self.0.get() else {
            return Ok(());
        };
        family::counters(
            &mut encoder,
            "agent_host_lookups",
            "DNS lookups of agents the control plane reports by host name",
            [(Labels::new(), s.lookups.load(Relaxed))],
        )?;
        family::counters(
            &mut encoder,
            "agent_host_lookup_failures",
            "Those lookups that failed (a name never resolved leaves its host-port backends out)",
            [(Labels::new(), s.failures.load(Relaxed))],
        )?;
        family::gauges(
            &mut encoder,
            "agent_hosts",
            "Agent host names followed, by state (unresolved: pending or failed)",
            [("resolved", &s.resolved), ("unresolved", &s.unresolved)]
                .map(|(state, n)| (family::labels(&[("state", state)]), n.load(Relaxed) as i64)),
        )
    }
}

/// Serves the endpoints until the runtime stops.
/// Serves `/metrics`, `/healthz`, `/readyz` and the routes of `extra` (the
/// discovery HTTP API) on `listen`.
pub async fn serve(listen: SocketAddr, metrics: Arc<Metrics>, extra: Router) -> Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready_handler))
        .with_state(metrics)
        .merge(extra);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the metrics endpoint {listen}"))?;
    tracing::info!(%listen, "metrics, /healthz, /readyz (and the /v1 discovery API unless turned off) listening");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("metrics endpoint stopped: {e}");
        }
    });
    Ok(())
}

async fn metrics_handler(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    // Scrapes read the maps (blocking syscalls): keep them off the async
    // workers. The text goes out as it is encoded (see `stream`).
    let (mut writer, chunks) = stream::ChunkWriter::new();
    tokio::task::spawn_blocking(move || {
        match prometheus_client::encoding::text::encode(&mut writer, &m.registry) {
            Ok(()) => writer.finish(),
            Err(e) => {
                tracing::warn!("encoding metrics: {e}");
                writer.fail(format!("encoding metrics: {e}"));
            }
        }
    });
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        axum::body::Body::from_stream(chunks),
    )
}

async fn ready_handler(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    if m.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}
