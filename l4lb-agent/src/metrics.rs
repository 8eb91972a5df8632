//! Prometheus metrics (prometheus-client) and the agent's HTTP endpoints:
//! `/metrics`, `/healthz` (the process answers) and `/readyz` (a table from the
//! source is in the maps and the last sync did not fail). Bound to 127.0.0.1
//! unless told otherwise.
mod locality;

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
    encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeMetric},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::{ConstGauge, Gauge},
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use crate::{
    datapath::{Maps, health::HealthView},
    dns::DnsCounters,
    hosts::resolver::HostStats,
    marathon::source::SourceStats,
    table,
};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:62080";

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
    pub fn new(pin_root: PathBuf) -> Arc<Metrics> {
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
        registry.register_collector(Box::new(DatapathCollector { pin_root }));
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

    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!("encoding metrics: {e}");
        }
        out
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
        let c = ConstCounter::new(0u64);
        let mut desc = encoder.encode_descriptor(
            "dns_queries",
            "DNS queries answered, by result",
            None,
            c.metric_type(),
        )?;
        let snap = counters.snapshot();
        for (result, n) in snap.by_result() {
            ConstCounter::new(n)
                .encode(desc.encode_family(&vec![("result".to_string(), result.to_string())])?)?;
        }
        let desc = encoder.encode_descriptor(
            "dns_reply_cache_hits",
            "UDP replies served from a socket's reply cache (also counted by result)",
            None,
            c.metric_type(),
        )?;
        ConstCounter::new(snap.cache_hits).encode(desc)?;
        let mut family = |name: &str,
                          help: &str,
                          label: &str,
                          series: &[(&str, u64)]|
         -> Result<(), std::fmt::Error> {
            let mut desc = encoder.encode_descriptor(name, help, None, c.metric_type())?;
            for (value, n) in series {
                ConstCounter::new(*n)
                    .encode(desc.encode_family(&vec![(label.to_string(), value.to_string())])?)?;
            }
            Ok(())
        };
        family(
            "dns_rrl",
            "UDP answers the response-rate limit dropped or sent truncated (slipped)",
            "action",
            &snap.rrl(),
        )?;
        family(
            "dns_tcp_closed",
            "TCP connections the DNS server closed: message cut short or stalled, idle one evicted for a newcomer, newcomer refused",
            "reason",
            &snap.tcp_closed(),
        )?;
        Ok(())
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
        let mut counter =
            |name: &str, help: &str, series: &[(&str, &str, u64)]| -> Result<(), std::fmt::Error> {
                let c = ConstCounter::new(0u64);
                let mut desc = encoder.encode_descriptor(name, help, None, c.metric_type())?;
                for (key, value, n) in series {
                    let labels: Vec<(String, String)> = if key.is_empty() {
                        vec![]
                    } else {
                        vec![(key.to_string(), value.to_string())]
                    };
                    ConstCounter::new(*n).encode(desc.encode_family(&labels)?)?;
                }
                Ok(())
            };
        counter(
            "marathon_reads",
            "Good reads of Marathon: the whole app list (all) or only the apps events named (app)",
            &[
                ("scope", "all", s.fetch_ok.saturating_sub(s.targeted)),
                ("scope", "app", s.targeted),
            ],
        )?;
        counter(
            "marathon_read_failures",
            "Reads of Marathon that failed; nothing was applied",
            &[("", "", s.fetch_failed)],
        )?;
        counter(
            "marathon_events",
            "Events received on the event stream (malformed: data not JSON)",
            &[
                ("kind", "all", s.events_received),
                ("kind", "malformed", s.events_malformed),
            ],
        )?;
        counter(
            "marathon_stream_reconnects",
            "Event stream losses and failed connection attempts",
            &[("", "", s.reconnects)],
        )?;
        counter(
            "marathon_redirects_refused",
            "Redirects or /v2/leader answers naming a host outside --marathon: refused, no credentials sent",
            &[("", "", s.redirects_refused)],
        )?;
        counter(
            "marathon_reads_over_cap",
            "Response bodies and event-stream lines/events over their cap: dropped",
            &[("", "", s.over_cap)],
        )?;
        Ok(())
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
        let c = ConstCounter::new(s.lookups.load(Relaxed));
        c.encode(encoder.encode_descriptor(
            "agent_host_lookups",
            "DNS lookups of agents the control plane reports by host name",
            None,
            c.metric_type(),
        )?)?;
        let c = ConstCounter::new(s.failures.load(Relaxed));
        c.encode(encoder.encode_descriptor(
            "agent_host_lookup_failures",
            "Those lookups that failed (a name never resolved leaves its host-port backends out)",
            None,
            c.metric_type(),
        )?)?;
        let g = ConstGauge::new(0i64);
        let mut desc = encoder.encode_descriptor(
            "agent_hosts",
            "Agent host names followed, by state (unresolved: pending or failed)",
            None,
            g.metric_type(),
        )?;
        for (state, n) in [("resolved", &s.resolved), ("unresolved", &s.unresolved)] {
            let labels = vec![("state".to_owned(), state.to_owned())];
            ConstGauge::new(n.load(Relaxed) as i64).encode(desc.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// Reads the pinned maps at scrape time: per-VIP and per-backend counters
/// (kept by the kernel programs) and map usage against capacity.
#[derive(Debug)]
struct DatapathCollector {
    pin_root: PathBuf,
}

impl Collector for DatapathCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(maps) = Maps::open_pinned(&self.pin_root) else {
            return Ok(());
        };
        let Ok(rows) = table::vip_rows(&maps) else {
            return Ok(());
        };
        let mut counter = |name: &str,
                           help: &str,
                           series: Vec<(Vec<(String, String)>, u64)>|
         -> Result<(), std::fmt::Error> {
            let c = ConstCounter::new(0u64);
            let mut desc = encoder.encode_descriptor(name, help, None, c.metric_type())?;
            for (labels, v) in series {
                ConstCounter::new(v).encode(desc.encode_family(&labels)?)?;
            }
            Ok(())
        };
        counter(
            "vip_connections",
            "connect() and unconnected sendmsg() calls sent to a backend, per VIP",
            rows.iter()
                .map(|r| (vip_labels(r), r.connects + r.sendmsgs))
                .collect(),
        )?;
        counter(
            "vip_refused",
            "connect()/sendmsg() refused: no backend takes new connections",
            rows.iter().map(|r| (vip_labels(r), r.no_backend)).collect(),
        )?;
        for (name, help, pick) in [
            (
                "vip_xdp_packets",
                "Packets to the VIP balanced by the XDP program",
                0usize,
            ),
            (
                "vip_xdp_bytes",
                "Bytes to the VIP balanced by the XDP program",
                1,
            ),
            (
                "vip_xdp_flows",
                "New flows the XDP program picked a backend for",
                2,
            ),
            (
                "vip_reply_packets",
                "Reply packets rewritten back to the VIP by the tc program",
                3,
            ),
        ] {
            counter(
                name,
                help,
                rows.iter()
                    .map(|r| {
                        (
                            vip_labels(r),
                            [r.packets, r.bytes, r.flows, r.reply_packets][pick],
                        )
                    })
                    .collect(),
            )?;
        }
        counter(
            "backend_flows",
            "New XDP flows sent to a backend, per VIP and backend",
            per_pair(&rows, |b| b.flows),
        )?;
        counter(
            "backend_connections",
            "connect() and unconnected sendmsg() calls sent to a backend, per VIP and backend",
            per_pair(&rows, |b| b.connects + b.sendmsgs),
        )?;
        for (name, help, pick) in [
            (
                "vip_p2c_fallbacks",
                "TCP connects where every p2c candidate was down or suspect for this node: the first random slot was used",
                0usize,
            ),
            (
                "vip_p2c_avoided",
                "TCP connects where p2c avoided the first random slot's backend (down or suspect)",
                1,
            ),
            (
                "vip_p2c_probes",
                "TCP connects sent as the one half-open probe of a backend down for this node (--health-probes connection only)",
                2,
            ),
            (
                "vip_unmarked_connects",
                "TCP connects balanced without a socket mark (its L4LB_SOCKS slots were all live): sock_ops does not follow them and getpeername shows the backend",
                3,
            ),
        ] {
            counter(
                name,
                help,
                rows.iter()
                    .map(|r| {
                        let v = [r.p2c_fallbacks, r.p2c_avoided, r.p2c_probes, r.unmarked][pick];
                        (vip_labels(r), v)
                    })
                    .collect(),
            )?;
        }
        let health = backend_health(&rows);
        let by_backend = |f: fn(&HealthView) -> u64| -> Vec<(Vec<(String, String)>, u64)> {
            health
                .iter()
                .map(|(addr, h)| (vec![("backend".to_string(), addr.clone())], f(h)))
                .collect()
        };
        counter(
            "backend_handshakes",
            "TCP handshakes through a VIP that completed, per backend (this node)",
            by_backend(|h| h.handshakes),
        )?;
        counter(
            "backend_handshake_failures",
            "TCP handshakes through a VIP that failed (SYN timeout, RST, unreachable, abandoned), per backend",
            by_backend(|h| h.handshake_failures),
        )?;
        let probe_results: [(&str, HealthField); 3] = [
            ("sent", |h| h.agent_probes),
            ("ok", |h| h.agent_probes_ok),
            ("failed", |h| h.agent_probes_failed),
        ];
        counter(
            "backend_agent_probes",
            "The agent's own TCP probes of a backend down for this node, by result (sent, ok: answered, failed)",
            probe_results
                .iter()
                .flat_map(|(result, f)| {
                    health.iter().map(move |(addr, h)| {
                        let labels = vec![
                            ("backend".to_string(), addr.clone()),
                            ("result".to_string(), result.to_string()),
                        ];
                        (labels, f(h))
                    })
                })
                .collect(),
        )?;
        counter(
            "health_probes",
            "The agent's own TCP probes of backends down for this node, all backends, by result (sent, ok, failed)",
            probe_results
                .iter()
                .map(|(result, f)| {
                    let labels = vec![("result".to_string(), result.to_string())];
                    (labels, health.values().map(f).sum())
                })
                .collect(),
        )?;
        if let Some(n) = crate::datapath::escape::escaped_packets() {
            counter(
                "escaped_vip_packets",
                "Packets to a VIP address that escaped the hooks, dropped by the l4lb0 route",
                vec![(vec![], n)],
            )?;
        }
        counter(
            "xdp_vip_guard_drops",
            "Packets to a VIP address XDP dropped because it cannot balance them (fragment, IP options, IPv6 extension header, other protocol, truncated)",
            maps.vip_guard_drops()
                .into_iter()
                .map(|(r, n)| (vec![("reason".to_string(), r.to_string())], n))
                .collect(),
        )?;
        counter(
            "xdp_icmp_errors",
            "ICMP errors about VIP flows: translated for the client (tc), steered to the backend (XDP), dropped for no flow, rate-limited",
            maps.icmp_errors()
                .into_iter()
                .map(|(r, n)| (vec![("result".to_string(), r.to_string())], n))
                .collect(),
        )?;
        for (metric, help, pick) in [
            ("map_entries", "Entries in each BPF map", 0usize),
            (
                "map_capacity",
                "Capacity (max_entries) of each BPF map",
                1usize,
            ),
        ] {
            let g = ConstGauge::new(0i64);
            let mut desc = encoder.encode_descriptor(metric, help, None, g.metric_type())?;
            for (name, entries, cap) in maps.usage() {
                let v = if pick == 0 { entries } else { cap };
                ConstGauge::new(v as i64)
                    .encode(desc.encode_family(&vec![("map".to_string(), name.to_string())])?)?;
            }
        }
        encode_health_gauges(&mut encoder, &health)?;
        locality::encode(&mut encoder, &rows)?;
        Ok(())
    }
}

fn vip_labels(r: &table::VipRow) -> Vec<(String, String)> {
    vec![
        ("vip".to_string(), r.vip.to_string()),
        ("proto".to_string(), r.proto.to_string()),
    ]
}

/// One value per (VIP, backend), labelled with both.
fn per_pair(
    rows: &[table::VipRow],
    value: fn(&table::BackendRow) -> u64,
) -> Vec<(Vec<(String, String)>, u64)> {
    rows.iter()
        .flat_map(|r| {
            r.backends.iter().map(move |b| {
                let mut l = vip_labels(r);
                l.push(("backend".into(), b.addr.to_string()));
                (l, value(b))
            })
        })
        .collect()
}
/// Reads one number of a backend's health.
type HealthField = fn(&HealthView) -> u64;

/// Each backend once (it may serve several VIPs) with its health, by address.
fn backend_health(rows: &[table::VipRow]) -> std::collections::BTreeMap<String, HealthView> {
    rows.iter()
        .flat_map(|r| r.backends.iter())
        .filter_map(|b| Some((b.addr.to_string(), b.health?)))
        .collect()
}

/// `l4lb_backend_state{backend,state}` (1 for the current state), the
/// handshake EWMA, live connections and handshakes in flight.
fn encode_health_gauges(
    encoder: &mut DescriptorEncoder,
    health: &std::collections::BTreeMap<String, HealthView>,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(0i64);
    let mut desc = encoder.encode_descriptor(
        "backend_state",
        "1 for the backend's state as this node's connect() sees it: up, suspect (handshakes stuck), down, probe-due",
        None,
        g.metric_type(),
    )?;
    for (addr, h) in health {
        for state in ["up", "suspect", "down", "probe-due"] {
            let labels = vec![
                ("backend".to_string(), addr.clone()),
                ("state".to_string(), state.to_string()),
            ];
            ConstGauge::new(i64::from(h.state == state)).encode(desc.encode_family(&labels)?)?;
        }
    }
    let seconds = |us: f64| us / 1e6;
    per_backend(
        encoder,
        health,
        "backend_handshake_ewma_seconds",
        "Moving average of the TCP handshake time through a VIP, per backend (0: none yet)",
        |h| seconds(h.handshake_ewma_us),
    )?;
    per_backend(
        encoder,
        health,
        "backend_lifetime_ewma_seconds",
        "Moving average of how long TCP connections through a VIP lived (established to closed), per backend, as p2c reads it now (halved per second without a new connection; 0: none yet)",
        |h| seconds(h.lifetime_ewma_us),
    )?;
    per_backend(
        encoder,
        health,
        "backend_live_connections",
        "TCP connections through a VIP established and not yet closed, per backend",
        |h| h.live_connections as i64,
    )?;
    per_backend(
        encoder,
        health,
        "backend_handshakes_in_flight",
        "TCP handshakes through a VIP in flight, per backend",
        |h| h.handshakes_in_flight as i64,
    )?;
    Ok(())
}

/// A gauge family with one value per backend, labelled with its address.
fn per_backend<N: EncodeGaugeValue + Default>(
    encoder: &mut DescriptorEncoder,
    health: &std::collections::BTreeMap<String, HealthView>,
    name: &str,
    help: &str,
    value: impl Fn(&HealthView) -> N,
) -> Result<(), std::fmt::Error> {
    let kind = ConstGauge::new(N::default()).metric_type();
    let mut desc = encoder.encode_descriptor(name, help, None, kind)?;
    for (addr, h) in health {
        let labels = vec![("backend".to_string(), addr.clone())];
        ConstGauge::new(value(h)).encode(desc.encode_family(&labels)?)?;
    }
    Ok(())
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
    tracing::info!(%listen, "metrics, /healthz, /readyz and the /v1 discovery API listening");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("metrics endpoint stopped: {e}");
        }
    });
    Ok(())
}

async fn metrics_handler(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    // Scrapes read the maps (blocking syscalls): keep them off the async workers.
    let body = tokio::task::spawn_blocking(move || m.render())
        .await
        .unwrap_or_default();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

async fn ready_handler(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    if m.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}
