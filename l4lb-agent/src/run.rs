//! `l4lb-agent run`: load, adopt, reconcile, then follow the source until told to stop.
//!
//! Sources run as tasks that send whole catalogs (or failures) over a channel;
//! this loop is the only writer of the maps.
use std::{
    collections::BTreeSet,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use tokio::{io::unix::AsyncFd, sync::mpsc};
use tracing::{error, info, warn};

use crate::{
    cli::RunArgs,
    datapath, dns,
    guard::{Guard, Refused, Screener},
    health_probe, http_api,
    metrics::{self, Metrics},
    model::{Catalog, ServiceMap, Vip},
    node::Protected,
    reconcile::{Reconciler, Staged},
    sockdestroy,
    source::{self, static_file::StaticSource},
};

pub use crate::source::SourceEvent;

mod attaching;
mod low_priority;
mod serving;
mod zone_publisher;

use attaching::Attaching;
use zone_publisher::ZonePublisher;

/// Exactly one of --config/--demo, --marathon, --mesos.
fn check_one_source(marathon: bool, mesos: bool, args: &RunArgs) -> Result<()> {
    let file = args.config.is_some() || args.demo;
    if [file, marathon, mesos].iter().filter(|s| **s).count() > 1 {
        anyhow::bail!(
            "--config/--demo, --marathon and --mesos are sources for one table: give one of them"
        );
    }
    if !(file || marathon || mesos) {
        anyhow::bail!(
            "no source: give --marathon URL[,URL…], --mesos URL[,URL…] or --config FILE (or --demo for the embedded demo table)"
        );
    }
    Ok(())
}

/// What the flags say before anything runs: the sources (at most one), what
/// the VIP routes must leave alone, and the static file's first table.
struct Startup {
    marathon: Option<crate::marathon::source::SourceConfig>,
    mesos: Option<crate::mesos::args::MesosConfig>,
    protected: Protected,
    static_source: Option<(StaticSource, crate::model::DesiredState)>,
}

/// Validates the flags and the static file before the kernel is touched:
/// a bad file never loads anything.
fn startup(args: &RunArgs) -> Result<Startup> {
    let marathon = args
        .marathon
        .resolve(marathon_keeps(args))
        .context("Marathon flags")?;
    // The URL and credential checks are Marathon's: name the Mesos flags.
    let mesos = args.mesos.resolve().map_err(|e| {
        anyhow::anyhow!(
            "Mesos flags: {}",
            e.to_string().replace("--marathon", "--mesos")
        )
    })?;
    check_one_source(marathon.is_some(), mesos.is_some(), args)?;
    let control_plane = marathon
        .as_ref()
        .map(|m| m.client.urls.clone())
        .or_else(|| mesos.as_ref().map(|m| m.urls.clone()))
        .unwrap_or_default();
    let protected = Protected::new(
        args.vip_cidrs.clone(),
        control_plane,
        &args.dns.dns_upstream,
        &args.resolv_conf,
    );
    let static_source = match marathon.is_some() || mesos.is_some() {
        true => None,
        false => {
            let mut source = StaticSource::new(args.config.clone());
            let first = source
                .load()
                .with_context(|| format!("invalid VIP file {}", source.describe()))?;
            Some((source, first))
        }
    };
    Ok(Startup {
        marathon,
        mesos,
        protected,
        static_source,
    })
}

pub async fn run(args: RunArgs) -> Result<()> {
    let Startup {
        marathon,
        mesos,
        protected,
        static_source,
    } = startup(&args)?;

    // One agent per pin root, before anything (the sources included) runs.
    let _pin_root_lock = datapath::pin_root::create_and_lock(&args.pin_root)?;
    let cgroup = match &args.cgroup {
        Some(c) => c.clone(),
        None => datapath::cgroup2_root()?,
    };
    let metrics = Metrics::new(args.pin_root.clone(), args.metrics_max_backends);
    let (tx, mut rx) = mpsc::channel::<SourceEvent>(8);
    // On a restart the hooks are still attached: register this process in
    // the pinned self map before its first control-plane connection.
    if let Err(e) = datapath::self_exempt::register(&args.pin_root) {
        warn!("could not register the agent in the self map yet: {e:#}");
    }
    // What the VIP routes must leave alone: the control plane's addresses
    // (looked up now, then in the background: no apply waits on DNS).
    protected.resolve_and_follow().await;
    let protect = protected.control_plane();
    // Marathon's first read (subscribe, GET, decode) runs while the kernel
    // verifies and attaches the programs below: nothing is applied before
    // the loop at the end, so only the wait overlaps.
    spawn_sources(marathon, mesos, &args, &metrics, &tx)?;
    let (maps, mut attaching) = start_datapath(&args, &cgroup)?;
    let view_tx = start_http(&args, &metrics).await?;
    let dns = start_dns(&args, &metrics)?;

    let (rec, locality, refusals, backends_tx) =
        adopt(maps, &args, &protected, &metrics, &mut attaching).await?;
    let mut escape = match args.no_vip_routes {
        true => None,
        false => Some(
            datapath::escape::EscapeRoutes::setup(protect)
                .await
                .context("VIP routes to l4lb0 (--no-vip-routes turns them off)")?,
        ),
    };
    if !rec.applied().services.is_empty() {
        // Escaped packets to these VIPs are dropped: only once hooks serve them.
        attaching.ready().await?;
    }
    sync_vip_routes(&mut escape, &rec, &metrics).await;

    // The file watcher must live as long as the loop.
    let mut _watcher = None;
    if let Some((source, first)) = static_source {
        _watcher = source::static_file::spawn(source, first, tx.clone()).await?;
    }

    let mut serving = serving::Serving {
        rec,
        refusals,
        locality,
        protected,
        metrics,
        dns,
        view_tx,
        attaching,
        escape,
        backends_tx,
        last_services: ServiceMap::new(),
    };
    serving.follow(&mut rx).await?;
    info!(
        "stopping: the datapath keeps serving from {} (pinned links and maps); `l4lb-agent teardown` removes it",
        args.pin_root.display()
    );
    Ok(())
}

/// Starts the control-plane source (at most one): its first read runs while
/// the kernel verifies the programs.
fn spawn_sources(
    marathon: Option<crate::marathon::source::SourceConfig>,
    mesos: Option<crate::mesos::args::MesosConfig>,
    args: &RunArgs,
    metrics: &Metrics,
    tx: &mpsc::Sender<SourceEvent>,
) -> Result<()> {
    if let Some(cfg) = marathon {
        info!(task_records = ?cfg.keep, "marathon");
        let src = source::marathon::spawn(cfg, &args.resolv_conf, tx.clone())?;
        metrics.set_marathon(src.stats);
        metrics.set_hosts(src.hosts);
    }
    if let Some(cfg) = mesos {
        let src = source::mesos::spawn(cfg, &args.resolv_conf, tx.clone())?;
        metrics.set_mesos(src.stats);
        metrics.set_hosts(src.hosts);
    }
    Ok(())
}

/// What the Marathon source keeps of each task: its record only while
/// something reads records: the DNS zones and locality (records as they
/// are), the discovery HTTP API on the metrics listener alone (packed: it
/// unpacks them per request, for Mesos-DNS's task names, from zones it
/// builds on demand; `--no-discovery-api` turns it off). Services are the
/// same either way.
fn marathon_keeps(args: &RunArgs) -> crate::marathon::parse::Keep {
    use crate::marathon::parse::Keep;
    let dns = !args.dns.dns_listen.is_empty();
    let http_api = args.metrics_listen.is_some() && !args.no_metrics && !args.no_discovery_api;
    let locality = args.locality.locality != crate::locality::LocalityFlag::Off;
    match (dns || locality, http_api) {
        (true, _) => Keep::Records,
        (false, true) => Keep::Packed,
        (false, false) => Keep::ServicesOnly,
    }
}

/// /metrics and the discovery HTTP API, which reads what the loop publishes
/// after each apply (through the returned sender).
async fn start_http(
    args: &RunArgs,
    metrics: &Arc<Metrics>,
) -> Result<tokio::sync::watch::Sender<Arc<http_api::View>>> {
    let (view_tx, view_rx) = tokio::sync::watch::channel(Arc::new(http_api::View::default()));
    if let Some(listen) = args.metrics_listen.filter(|_| !args.no_metrics) {
        let api = match args.no_discovery_api {
            true => axum::Router::new(),
            false => {
                let config = http_api::mesos_dns_config(args.dns.config().as_ref(), listen);
                http_api::router(view_rx, config)
            }
        };
        metrics::serve(listen, metrics.clone(), api).await?;
    }
    Ok(view_tx)
}

/// The reconciler over the pinned maps with the table a previous run left
/// (screened for collisions with what this run protects), the locality
/// sets checked against it, and the followers of its backends.
async fn adopt(
    maps: datapath::Maps,
    args: &RunArgs,
    protected: &Protected,
    metrics: &Metrics,
    attaching: &mut Attaching,
) -> Result<(
    Reconciler<datapath::Maps>,
    crate::locality::Locality,
    Refusals,
    BackendsTx,
)> {
    let mut rec = Reconciler::adopt(maps, Duration::from_millis(args.grace_ms))?;
    let mut locality = crate::locality::Locality::new(&args.locality);
    info!(locality = locality.mode().name(), "locality");
    let backends_tx = follow_backends(args, &rec)?;
    metrics.table_repairs.inc_by(rec.repairs as u64);
    let mut refusals = Refusals::default();
    if !rec.applied().services.is_empty() {
        let guard = protected.guard().collisions_only();
        let out = (metrics, &mut locality);
        if screen_adopted(&mut rec, &mut refusals, &guard, out, attaching).await? {
            backends_tx.send_replace(rec.applied().backends.clone());
        }
    }
    // The adopted table (or none): the sets a previous run left are checked now.
    let adopted = rec.applied().clone();
    locality.sync(&adopted, &mut rec.writer);
    Ok((rec, locality, refusals, backends_tx))
}

/// Feeds the tasks that follow the backends the maps hold.
type BackendsTx = tokio::sync::watch::Sender<crate::plan::BackendAddrs>;

/// The maps now, the programs on a blocking thread: the first table is
/// read and written while the kernel verifies them (see `attaching`).
fn start_datapath(args: &RunArgs, cgroup: &std::path::Path) -> Result<(datapath::Maps, Attaching)> {
    let t = std::time::Instant::now();
    let datapath::Created {
        maps,
        programs,
        logger,
    } = datapath::create(
        &args.pin_root,
        cgroup,
        crate::plan::Capacity {
            services: args.max_services,
            backends: args.max_backends,
            slots: args.max_slots,
        },
        datapath::health::LbConfigArgs {
            policy: args.lb_policy,
            probes: args.health_probes,
            locality_step: args.locality.locality != crate::locality::LocalityFlag::Off,
        },
    )?;
    info!(cgroup = %cgroup.display(), pin_root = %args.pin_root.display(), lb_policy = args.lb_policy.name(), health_probes = args.health_probes.name(), took_ms = t.elapsed().as_millis() as u64, "maps ready; verifying the programs");
    let packet = datapath::xdp::PacketAttach {
        xdp_ifaces: args.xdp_ifaces.clone(),
        reply_ifaces: args.xdp_reply_ifaces.clone(),
        mode: args.xdp_mode,
        fib: args.xdp_forward.is_fib(),
        dsr: args.xdp_dsr,
    };
    let attaching = Attaching::spawn(programs, packet, cgroup.display().to_string());
    if let Some(logger) = logger {
        spawn_kernel_log(logger)?;
    }
    Ok((maps, attaching))
}

/// The DNS server, the thread that builds its zones, and their options.
type Dns = (dns::DnsServer, ZonePublisher, dns::ZoneOptions);

/// DNS answers from the same catalogs as the maps; VIP names only once the
/// maps hold the VIP. None without a DNS listener.
fn start_dns(args: &RunArgs, metrics: &Metrics) -> Result<Option<Dns>> {
    let Some(cfg) = args.dns.config() else {
        return Ok(None);
    };
    let (zones_tx, zones_rx) =
        tokio::sync::watch::channel(Arc::new(dns::Zones::pending(&cfg.zone)));
    let server = dns::spawn(cfg.clone(), zones_rx)?;
    info!(listen = ?server.local_addrs(), "DNS server listening");
    metrics.set_dns(server.counters());
    let index = dns::ZoneIndex::new(cfg.zone.clone());
    let publisher = ZonePublisher::spawn(index, zones_tx)?;
    Ok(Some((server, publisher, cfg.zone)))
}

/// The tasks that follow the backends the maps hold (the DSR neighbour
/// refresh, the agent's health probes), and the sender that feeds them.
fn follow_backends(args: &RunArgs, rec: &Reconciler<datapath::Maps>) -> Result<BackendsTx> {
    let (backends_tx, backends_rx) = tokio::sync::watch::channel(rec.applied().backends.clone());
    if args.xdp_dsr != datapath::dsr::Dsr::Off && !args.xdp_ifaces.is_empty() {
        datapath::dsr::spawn_neighbour_refresh(backends_tx.subscribe());
    }
    if args.health_probes == datapath::health::HealthProbes::Agent {
        let maps = datapath::probe_maps::ProbeMaps::open(&args.pin_root)
            .context("the health probe maps (--health-probes connection runs without them)")?;
        health_probe::spawn(maps, backends_rx);
    }
    Ok(backends_tx)
}

/// A table a previous run installed may hold a VIP that collides with what
/// this run protects (say, an app's VIP on the control plane): it goes
/// before this run's source is read. True if that rewrote the table.
async fn screen_adopted(
    rec: &mut Reconciler<datapath::Maps>,
    refusals: &mut Refusals,
    collisions: &Guard,
    (metrics, locality): (&Metrics, &mut crate::locality::Locality),
    attaching: &mut Attaching,
) -> Result<bool> {
    info!(
        services = rec.applied().services.len(),
        "adopted the table already in the pinned maps"
    );
    let mut adopted = Catalog {
        services: rec.applied().to_desired(),
        ..Default::default()
    };
    if !refusals.screen(collisions, &mut adopted, metrics) {
        return Ok(false);
    }
    let services = adopted.services.services.clone();
    let out = (metrics, locality);
    apply(rec, services, "adoption", None, out, attaching, |_| {}).await?;
    Ok(true)
}

/// The VIPs the guard refuses, remembered so that a refusal is logged (and
/// counted) when it appears, not again on every re-read of the same source.
#[derive(Default)]
struct Refusals {
    current: BTreeSet<Vip>,
    /// Screens a catalog's services by what changed since the last one.
    screener: Screener,
}

impl Refusals {
    /// Drops refused VIPs from `catalog`; true if it refused any.
    fn screen(&mut self, guard: &Guard, catalog: &mut Catalog, metrics: &Metrics) -> bool {
        let refused = guard.screen(&mut catalog.services);
        self.note(&refused, metrics);
        !refused.is_empty()
    }

    /// `services` less the VIPs `guard` refuses, which also leave
    /// `catalog` (if it holds its services: those of `services`).
    fn screen_map(
        &mut self,
        guard: &Guard,
        services: &ServiceMap,
        catalog: &mut Catalog,
        metrics: &Metrics,
    ) -> ServiceMap {
        let (kept, refused) = self.screener.screen(guard, services);
        let held = &mut catalog.services.services;
        for r in &refused {
            held.remove(&r.vip);
        }
        self.note(&refused, metrics);
        debug_assert!(
            held.is_empty() || kept.iter().eq(&*held),
            "a source's persistent map is not its catalog's services"
        );
        kept
    }

    fn note(&mut self, refused: &[Refused], metrics: &Metrics) {
        let now: BTreeSet<_> = refused.iter().map(|r| r.vip).collect();
        for r in refused.iter().filter(|r| !self.current.contains(&r.vip)) {
            metrics.refused_vips.inc();
            warn!(vip = %r.vip, "{r}");
        }
        metrics.refused_vips_now.set(now.len() as i64);
        self.current = now;
    }
}

/// Writes `catalog`'s table; `on_serving` gets the VIPs the maps serve as
/// soon as it serves (or, if the write failed, what they still serve),
/// before the grace period that precedes the cleanup of what it replaced.
/// The first apply may write before the programs are attached: it serves,
/// and says so, once they are. Errs only if they failed to load.
async fn apply(
    rec: &mut Reconciler<datapath::Maps>,
    services: ServiceMap,
    trigger: &str,
    received_at: Option<Instant>,
    (metrics, locality): (&Metrics, &mut crate::locality::Locality),
    attaching: &mut Attaching,
    on_serving: impl FnOnce(BTreeSet<Vip>),
) -> Result<()> {
    // O(1): the applied table is persistent maps.
    let before = rec.applied().clone();
    let repairs = rec.repairs;
    let mut staged = stage(rec, services, trigger, metrics);
    let serving = staged
        .as_ref()
        .map_or(rec.applied(), Staged::serving)
        .clone();
    // The local sets name the revisions that serve now; written before the
    // hooks read them, so the table serves with its sets from the start.
    locality.sync(&serving, &mut rec.writer);
    let attached_at = attaching.ready().await?;
    if let Some(s) = staged.as_mut() {
        s.serves_from(attached_at);
    }
    on_serving(serving.services.keys().copied().collect());
    let planned = match staged {
        Some(staged) => finish(rec, staged, trigger, received_at, metrics).await,
        None => false,
    };
    metrics.table_repairs.inc_by((rec.repairs - repairs) as u64);
    // After a failure too: `applied()` is then what the maps really hold,
    // compared whole with what they held.
    let stale = match planned {
        true => sockdestroy::StaleUdp::after_plan(&before, rec.applied()),
        false => sockdestroy::StaleUdp::between(&before, rec.applied()),
    };
    destroy_stale_udp(stale, rec);
    Ok(())
}

/// Writes the new table (it serves from here); `None` if that failed (the
/// maps hold what `rec.applied()` says).
fn stage(
    rec: &mut Reconciler<datapath::Maps>,
    services: ServiceMap,
    trigger: &str,
    metrics: &Metrics,
) -> Option<Staged> {
    match rec.stage_services(services) {
        Ok(s) => Some(s),
        Err(e) => {
            metrics.apply_errors.inc();
            error!(trigger, "{e:#}");
            None
        }
    }
}

/// The grace period and the cleanup, then the apply's log line; true if
/// the maps hold the plan's table.
async fn finish(
    rec: &mut Reconciler<datapath::Maps>,
    staged: Staged,
    trigger: &str,
    received_at: Option<Instant>,
    metrics: &Metrics,
) -> bool {
    match rec.finish(staged).await {
        Ok(o) => {
            metrics.applied(trigger);
            for (vip, why) in &o.skipped {
                metrics.capacity_skips.inc();
                warn!(trigger, %vip, "not applied: {why}");
            }
            let latency = received_at.map(|t| o.serving_at.saturating_duration_since(t));
            if let Some(l) = latency {
                metrics.event_to_maps.observe(l.as_secs_f64());
            }
            info!(
                trigger,
                added = o.summary.added,
                changed = o.summary.changed,
                removed = o.summary.removed,
                unchanged = o.summary.unchanged,
                full_plan = o.full,
                writes = o.writes,
                took_us = o.took.as_micros() as u64,
                event_to_maps_us = latency.map(|l| l.as_micros() as u64),
                // The zones and the grace period come between serving and this line.
                serving_for_us = o.serving_at.elapsed().as_micros() as u64,
                "table applied"
            );
            true
        }
        Err(e) => {
            metrics.apply_errors.inc();
            error!(trigger, "{e:#}");
            false
        }
    }
}

/// Routes the applied VIP addresses to `l4lb0` (escaped VIP packets are
/// dropped there); a failure is retried at the next apply.
async fn sync_vip_routes(
    escape: &mut Option<datapath::escape::EscapeRoutes>,
    rec: &Reconciler<datapath::Maps>,
    metrics: &Arc<Metrics>,
) {
    let Some(escape) = escape else { return };
    let start = Instant::now();
    match escape.sync(rec.applied()).await {
        Ok(s) => {
            if s.added + s.removed > 0 {
                let took_us = start.elapsed().as_micros() as u64;
                info!(
                    added = s.added,
                    removed = s.removed,
                    routes = escape.routes().len(),
                    took_us,
                    "VIP routes to l4lb0 updated"
                );
            }
            for ip in &s.skipped {
                warn!(%ip, "VIP address is also a backend or control-plane address: no l4lb0 route for it");
            }
        }
        Err(e) => {
            metrics.vip_route_errors.inc();
            warn!("VIP routes to l4lb0: {e:#}");
        }
    }
}

/// A connected UDP socket whose backend left the VIP it was connected
/// through is destroyed, so the application sees an error and reconnects, to a
/// live backend (the new table is already in the maps). Only sockets the hooks
/// connected through that VIP (reverse-NAT entry for their cookie + backend)
/// are touched, and only in the agent's network namespace.
fn destroy_stale_udp(stale: sockdestroy::StaleUdp, rec: &Reconciler<datapath::Maps>) {
    if stale.is_empty() {
        return;
    }
    let maps = &rec.writer;
    let backends = stale.backends();
    match sockdestroy::destroy_connected_udp(&backends, |cookie, backend| {
        maps.revnat_vip(cookie, backend)
            .is_some_and(|vip| stale.is_stale(vip, backend))
    }) {
        Ok(r) => {
            info!(
                backends = backends.len(),
                found = r.found,
                destroyed = r.destroyed,
                vanished = r.vanished,
                not_ours = r.not_ours,
                errors = r.errors.len(),
                "stale connected UDP sockets destroyed"
            );
            for e in &r.errors {
                warn!("stale UDP sockets: {e}");
            }
        }
        Err(e) => warn!("stale UDP sockets left connected: {e:#}"),
    }
}

/// Forwards aya-log records from the kernel programs to our log (at their level, debug mostly).
fn spawn_kernel_log(logger: aya_log::EbpfLogger<&'static dyn log::Log>) -> Result<()> {
    // SAFETY: the logger owns its ring buffer map fd for as long as it lives,
    // and the AsyncFd owns the logger.
    let mut fd = unsafe { AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("registering the kernel log reader: {e}"))?;
    tokio::spawn(async move {
        loop {
            match fd.readable_mut().await {
                Ok(mut guard) => {
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                }
                Err(e) => {
                    warn!("kernel log reader stopped: {e}");
                    return;
                }
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::marathon_keeps;
    use crate::{
        cli::{Cli, Command},
        marathon::parse::Keep,
    };

    fn keeps(extra: &[&str]) -> Keep {
        let argv = [
            &["l4lb-agent", "run", "--marathon", "http://m:8080"][..],
            extra,
        ]
        .concat();
        let Command::Run(args) = Cli::try_parse_from(argv).unwrap().command else {
            unreachable!("parsed `run`")
        };
        marathon_keeps(&args)
    }

    /// Task records are made only for a reader: DNS, the discovery API on
    /// the metrics listener (on by default: packed when it is the only
    /// one), locality.
    #[test]
    fn marathon_task_records_only_for_a_reader() {
        assert_eq!(keeps(&[]), Keep::Packed, "the discovery API alone");
        assert_eq!(keeps(&["--no-metrics"]), Keep::ServicesOnly);
        assert_eq!(
            keeps(&["--no-discovery-api"]),
            Keep::ServicesOnly,
            "/metrics alone"
        );
        for reader in [
            &["--dns-listen", "127.0.0.1:53"][..],
            &["--locality", "node"],
            &["--locality", "zone"],
        ] {
            let args = [&["--no-metrics"][..], reader].concat();
            assert_eq!(keeps(&args), Keep::Records, "{reader:?}");
            assert_eq!(keeps(reader), Keep::Records, "{reader:?} and the API");
        }
    }
}
