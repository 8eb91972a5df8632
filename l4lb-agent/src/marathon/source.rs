//! The Marathon source: keeps a [`Catalog`] equal to Marathon's `/v2/apps`
//! and `/v2/pods/::status`.
//!
//! Marathon's advice is to treat events as a signal and re-read the state,
//! not to apply them. An event that names its app or pod (task status and
//! health changes, app and pod updates and removals) re-reads that one alone
//! (`/v2/apps/{id}`, `/v2/pods/{id}::status`), so its cost does not grow
//! with the cluster; any other
//! event, a reconnect of the event stream, a failed targeted read and the
//! periodic resync re-read everything. At start the stream is subscribed
//! before the first read, so nothing can change unseen between the two and
//! one full read is enough. Events are debounced; only complete,
//! decoded answers become an [`Update`]: a failed read sends nothing and the
//! agent keeps its last good table.
use std::{
    collections::{BTreeSet, HashSet},
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::StreamExt;
use rand::Rng;
use tokio::{
    sync::{Notify, mpsc},
    time::Instant,
};
use tracing::{debug, info, warn};

use super::{
    client::{self, ClientConfig, ClientError, FetchError, MarathonClient},
    decode::{AppSet, OneApp},
    events::{self, EventError, MarathonEvent, MarathonEvents},
};
use crate::{
    hosts::{HostTable, resolver::Resolver},
    model::Catalog,
    naming::VipAllocator,
};

/// First reconnect / retry delay ceiling; doubles per failure.
pub const BACKOFF_BASE: Duration = Duration::from_millis(250);
/// Largest reconnect / retry delay ceiling.
pub const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// Default [`Timing::first_read_wait`].
pub const FIRST_READ_WAIT: Duration = Duration::from_secs(2);
/// More apps than this named by one debounce window: one full read instead.
pub const MAX_TARGETED_APPS: usize = 16;
/// The first catalog waits this long at most for agent host names to
/// resolve (later ones never wait: they are rebuilt when answers come).
pub const FIRST_RESOLVE_WAIT: Duration = Duration::from_secs(2);
/// Answers about agent host names are gathered this long into one rebuild.
pub const HOSTS_DEBOUNCE: Duration = Duration::from_millis(100);

/// What [`super::args::MarathonArgs::resolve`] produces.
#[derive(Clone, Debug)]
pub struct SourceConfig {
    pub client: ClientConfig,
    /// Period of the full re-read done even without events.
    pub resync: Duration,
    /// Window after a first event during which more events join its re-read.
    pub debounce: Duration,
}

/// The source loop's clocks (the HTTP timeouts live in [`ClientConfig`]).
#[derive(Clone, Debug)]
pub struct Timing {
    pub resync: Duration,
    /// Window before a full re-read.
    pub debounce: Duration,
    /// Window before a re-read of only the apps events named: a quarter of
    /// `debounce` (they are cheap; the window only gathers one burst).
    pub app_debounce: Duration,
    /// How long the first read waits for the event stream to attach (so
    /// that nothing can change unseen between the two, and no second full
    /// read is needed); past it the read goes ahead and re-reads once the
    /// stream attaches.
    pub first_read_wait: Duration,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
}

impl Timing {
    pub fn new(resync: Duration, debounce: Duration) -> Timing {
        Timing {
            resync,
            debounce,
            app_debounce: debounce / 4,
            first_read_wait: FIRST_READ_WAIT,
            backoff_base: BACKOFF_BASE,
            backoff_cap: BACKOFF_CAP,
        }
    }
}

/// A complete catalog read from Marathon.
#[derive(Clone, Debug)]
pub struct Update {
    pub catalog: Catalog,
    pub trigger: Trigger,
    /// Apps (or parts of them) the parser skipped; each was logged.
    pub warnings: usize,
    /// How long the read + parse took.
    pub took: Duration,
    /// Apps re-read for this update; None: a full read.
    pub apps_read: Option<usize>,
}

/// Why a read happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// First read at start.
    Initial,
    /// Periodic resync.
    Resync,
    /// The event stream (re)attached: events may have been missed meanwhile.
    Reconnect,
    /// The operator asked (SIGHUP, the systemd unit's reload).
    Sighup,
    /// An agent host name resolved or moved: the catalog was rebuilt from
    /// what was last read, without reading Marathon.
    Hosts,
    /// One or more events. `received_at` is the EARLIEST event's arrival, so
    /// `received_at.elapsed()` once the maps are written is the event → maps latency.
    Event {
        event_type: String,
        received_at: std::time::Instant,
        /// Events served by this one read.
        events: usize,
    },
}

impl Trigger {
    /// Short name for logs.
    pub fn label(&self) -> &'static str {
        match self {
            Trigger::Initial => "initial",
            Trigger::Resync => "resync",
            Trigger::Reconnect => "reconnect",
            Trigger::Sighup => "SIGHUP",
            Trigger::Hosts => "hosts",
            Trigger::Event { .. } => "event",
        }
    }

    /// Two pending reasons for one read: events win (their latency is
    /// reported), keeping the earliest arrival and the total count.
    fn merge(self, other: Trigger) -> Trigger {
        use Trigger::*;
        match (self, other) {
            (
                Event {
                    event_type: t1,
                    received_at: r1,
                    events: n1,
                },
                Event {
                    event_type: t2,
                    received_at: r2,
                    events: n2,
                },
            ) => {
                let (event_type, received_at) = if r2 < r1 { (t2, r2) } else { (t1, r1) };
                Event {
                    event_type,
                    received_at,
                    events: n1 + n2,
                }
            }
            (e @ Event { .. }, _) | (_, e @ Event { .. }) => e,
            (Initial, _) | (_, Initial) => Initial,
            (Sighup, _) | (_, Sighup) => Sighup,
            (Reconnect, _) | (_, Reconnect) => Reconnect,
            (Resync, _) | (_, Resync) => Resync,
            (Hosts, Hosts) => Hosts,
        }
    }
}

/// Counters for the agent's status output. Monotonic.
#[derive(Debug, Default)]
pub struct SourceStats {
    /// Reads that produced an update.
    pub fetch_ok: AtomicU64,
    /// Reads that produced nothing: no answer, non-2xx, cut short, unparsable.
    pub fetch_failed: AtomicU64,
    pub events_received: AtomicU64,
    /// Frames whose data was not JSON (also counted in `events_received`).
    pub events_malformed: AtomicU64,
    /// Event stream losses and failed connection attempts.
    pub reconnects: AtomicU64,
    /// Parser warnings (apps or ports skipped), summed over all reads.
    pub warnings: AtomicU64,
    /// Of `fetch_ok`: reads of only the apps events named.
    pub targeted: AtomicU64,
    /// Redirects (or `/v2/leader` answers) to an origin that is not a
    /// configured `--marathon` URL's: refused, credentials kept home.
    pub redirects_refused: AtomicU64,
    /// Reads ended by a cap: response bodies and event-stream lines/events.
    pub over_cap: AtomicU64,
    /// Why the last read failed, published at each failure: the agent's
    /// loop hears of it as an event (a failure sends no [`Update`]).
    pub last_failure: tokio::sync::watch::Sender<Option<String>>,
}

/// A copy of [`SourceStats`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub fetch_ok: u64,
    pub fetch_failed: u64,
    pub events_received: u64,
    pub events_malformed: u64,
    pub reconnects: u64,
    pub warnings: u64,
    pub targeted: u64,
    pub redirects_refused: u64,
    pub over_cap: u64,
}

impl SourceStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            fetch_ok: g(&self.fetch_ok),
            fetch_failed: g(&self.fetch_failed),
            events_received: g(&self.events_received),
            events_malformed: g(&self.events_malformed),
            reconnects: g(&self.reconnects),
            warnings: g(&self.warnings),
            targeted: g(&self.targeted),
            redirects_refused: g(&self.redirects_refused),
            over_cap: g(&self.over_cap),
        }
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Exponential backoff with full jitter: the n-th delay is uniform in
/// `[0, min(cap, base·2ⁿ)]`, so agents restarted together do not reconnect
/// in lockstep.
#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap,
            failures: 0,
        }
    }

    /// Upper bound of the next delay.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.failures.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The next delay; raises the ceiling for the one after.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::rng().random_range(0..=nanos))
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// What the source needs from Marathon; [`MarathonClient`] in production, a
/// scripted fake in tests (so the loop runs on a paused clock).
pub trait MarathonApi: Send + Sync + 'static {
    /// `/v2/apps?embed=apps.tasks`, decoded into `set` in place; true if
    /// anything changed.
    fn fetch_apps(
        &self,
        set: Arc<Mutex<AppSet>>,
    ) -> impl Future<Output = Result<bool, FetchError>> + Send;
    /// `/v2/apps/{id}?embed=app.tasks`, decoded; None: the app is gone.
    fn fetch_app(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<OneApp>, FetchError>> + Send;
    /// `/v2/pods/::status`, decoded into `set`'s pods; true if anything
    /// changed (a Marathon without pods: none).
    fn fetch_pods(
        &self,
        set: Arc<Mutex<AppSet>>,
    ) -> impl Future<Output = Result<bool, FetchError>> + Send;
    /// `/v2/pods/{id}::status`, decoded; None: no such pod.
    fn fetch_pod(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<OneApp>, FetchError>> + Send;
    /// A fresh `/v2/events` subscription.
    fn events(&self) -> impl Future<Output = Result<MarathonEvents, FetchError>> + Send;
}

impl MarathonApi for MarathonClient {
    fn fetch_apps(
        &self,
        set: Arc<Mutex<AppSet>>,
    ) -> impl Future<Output = Result<bool, FetchError>> + Send {
        MarathonClient::refresh_app_set(self, set)
    }
    fn fetch_app(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<OneApp>, FetchError>> + Send {
        MarathonClient::fetch_app(self, id)
    }
    fn fetch_pods(
        &self,
        set: Arc<Mutex<AppSet>>,
    ) -> impl Future<Output = Result<bool, FetchError>> + Send {
        MarathonClient::refresh_pods(self, set)
    }
    fn fetch_pod(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<OneApp>, FetchError>> + Send {
        MarathonClient::fetch_pod(self, id)
    }
    fn events(&self) -> impl Future<Output = Result<MarathonEvents, FetchError>> + Send {
        MarathonClient::events(self)
    }
}

/// The Marathon source, ready to run.
pub struct MarathonSource {
    client: Arc<MarathonClient>,
    timing: Timing,
    stats: Arc<SourceStats>,
    reread: Arc<Notify>,
    hosts: Option<Arc<Resolver>>,
}

impl MarathonSource {
    pub fn new(cfg: SourceConfig) -> Result<MarathonSource, ClientError> {
        let stats = Arc::<SourceStats>::default();
        Ok(MarathonSource {
            client: Arc::new(MarathonClient::new(cfg.client)?.with_stats(stats.clone())),
            timing: Timing::new(cfg.resync, cfg.debounce),
            stats,
            reread: Arc::default(),
            hosts: None,
        })
    }

    /// Agents reported by host name get their address from `hosts`.
    pub fn with_hosts(mut self, hosts: Arc<Resolver>) -> MarathonSource {
        self.hosts = Some(hosts);
        self
    }

    /// Notifying it makes the running source re-read everything now
    /// ([`Trigger::Sighup`]).
    pub fn reread_handle(&self) -> Arc<Notify> {
        self.reread.clone()
    }

    /// Counters, readable while the source runs.
    pub fn stats(&self) -> Arc<SourceStats> {
        self.stats.clone()
    }

    /// Follows Marathon until `tx`'s receiver is dropped. Named VIPs keep
    /// their addresses because `alloc` lives as long as the source.
    pub async fn run(self, alloc: VipAllocator, tx: mpsc::Sender<Update>) {
        let hosts = self.hosts;
        run_with(
            self.client,
            self.timing,
            alloc,
            tx,
            self.stats,
            self.reread,
            hosts,
        )
        .await
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What a read covers.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Scope {
    All,
    /// Only these apps (ids checked by [`client::is_app_id`]).
    Apps(BTreeSet<String>),
}

impl Scope {
    fn merge(self, other: Scope) -> Scope {
        match (self, other) {
            (Scope::Apps(mut a), Scope::Apps(b)) => {
                a.extend(b);
                if a.len() > MAX_TARGETED_APPS {
                    Scope::All
                } else {
                    Scope::Apps(a)
                }
            }
            _ => Scope::All,
        }
    }

    /// The apps (or pods) an event is about, if it names them and every
    /// name is one we may ask for; otherwise a full read.
    fn of_event(ev: &MarathonEvent) -> Scope {
        let d = &ev.data;
        let ids: Vec<&serde_json::Value> = match ev.event_type.as_str() {
            // `uri` is the request's: `/v2/pods/{id}` for an update or a
            // delete; a create (`/v2/pods`) names no pod.
            "pod_created_event" | "pod_updated_event" | "pod_deleted_event" => {
                return match d.get("uri").and_then(|u| u.as_str()).and_then(pod_of_uri) {
                    Some(id) if client::is_app_id(id) => {
                        Scope::Apps(BTreeSet::from([id.to_owned()]))
                    }
                    _ => Scope::All,
                };
            }
            "status_update_event" | "health_status_changed_event" | "app_terminated_event" => {
                d.get("appId").into_iter().collect()
            }
            "instance_changed_event" | "instance_health_changed_event" => {
                d.get("runSpecId").into_iter().collect()
            }
            "api_post_event" => d
                .get("appDefinition")
                .and_then(|a| a.get("id"))
                .into_iter()
                .collect(),
            // `plan.steps[].actions[].app` (or `.pod`): every app and pod
            // the deployment touched.
            "deployment_success" => d
                .pointer("/plan/steps")
                .and_then(|s| s.as_array())
                .into_iter()
                .flatten()
                .filter_map(|step| step.get("actions")?.as_array())
                .flatten()
                .filter_map(|a| a.get("app").or_else(|| a.get("pod")))
                .collect(),
            _ => Vec::new(),
        };
        let mut apps = BTreeSet::new();
        for id in ids {
            match id.as_str() {
                Some(id) if client::is_app_id(id) => {
                    apps.insert(id.to_owned());
                }
                _ => return Scope::All,
            }
        }
        if apps.is_empty() || apps.len() > MAX_TARGETED_APPS {
            return Scope::All;
        }
        Scope::Apps(apps)
    }
}

/// The pod id in a pod event's `uri` (`/v2/pods/shop/web`, maybe with a
/// `::` suffix).
fn pod_of_uri(uri: &str) -> Option<&str> {
    let rest = uri.strip_prefix("/v2/pods")?;
    let id = rest
        .split("::")
        .next()
        .unwrap_or(rest)
        .trim_end_matches('/');
    (!id.is_empty()).then_some(id)
}

/// One id's targeted read: an app, a pod, or neither any more.
enum OneRead {
    App(OneApp),
    Pod(OneApp),
    Gone,
}

/// Reads `id` as what the last reads knew it as (a pod, else an app), then,
/// if Marathon has no such thing, as the other: apps and pods share ids,
/// and an id may change sides between full reads.
async fn read_one<A: MarathonApi>(
    api: &A,
    id: &str,
    pod_first: bool,
) -> Result<OneRead, FetchError> {
    if pod_first {
        if let Some(p) = api.fetch_pod(id).await? {
            return Ok(OneRead::Pod(p));
        }
        return Ok(api.fetch_app(id).await?.map_or(OneRead::Gone, OneRead::App));
    }
    if let Some(a) = api.fetch_app(id).await? {
        return Ok(OneRead::App(a));
    }
    Ok(api.fetch_pod(id).await?.map_or(OneRead::Gone, OneRead::Pod))
}

/// When a read is due, by what it covers.
#[derive(Clone, Copy, Debug)]
struct Due {
    apps: Instant,
    all: Instant,
}

impl Due {
    fn at(t: Instant) -> Due {
        Due { apps: t, all: t }
    }

    /// The debounce windows from `now`.
    fn window(now: Instant, timing: &Timing) -> Due {
        Due {
            apps: now + timing.app_debounce,
            all: now + timing.debounce,
        }
    }

    fn min(self, o: Due) -> Due {
        Due {
            apps: self.apps.min(o.apps),
            all: self.all.min(o.all),
        }
    }
}

/// Reasons waiting for a read.
struct Pending {
    trigger: Trigger,
    scope: Scope,
    due: Due,
    /// Retrying after a failure: new events must not pull the retry earlier.
    backing_off: bool,
}

impl Pending {
    fn add(slot: &mut Option<Pending>, trigger: Trigger, scope: Scope, due: Due) {
        match slot {
            None => {
                *slot = Some(Pending {
                    trigger,
                    scope,
                    due,
                    backing_off: false,
                })
            }
            Some(p) => {
                p.trigger = std::mem::replace(&mut p.trigger, Trigger::Resync).merge(trigger);
                p.scope = std::mem::replace(&mut p.scope, Scope::All).merge(scope);
                if !p.backing_off {
                    // A fixed window from the first signal, so a steady
                    // trickle of events cannot postpone the read forever.
                    p.due = p.due.min(due);
                }
            }
        }
    }

    /// A read of only some apps waits the short window, a full one the long.
    fn due_at(&self) -> Instant {
        match self.scope {
            Scope::Apps(_) => self.due.apps,
            Scope::All => self.due.all,
        }
    }
}

/// A read's answer.
enum Fetched {
    /// The shared set was refreshed; true if anything changed.
    All(bool),
    Apps(Vec<(String, OneRead)>),
}

struct Inflight {
    trigger: Trigger,
    started: Instant,
    fut: BoxFuture<Result<Fetched, FetchError>>,
}

/// The source loop, over any [`MarathonApi`]. One task; reads and the stream
/// connection run as futures polled side by side, so events keep being
/// timestamped while a read is in flight.
pub async fn run_with<A: MarathonApi>(
    api: Arc<A>,
    timing: Timing,
    mut alloc: VipAllocator,
    tx: mpsc::Sender<Update>,
    stats: Arc<SourceStats>,
    reread: Arc<Notify>,
    hosts: Option<Arc<Resolver>>,
) {
    let mut host_changes = hosts.as_ref().map(|h| h.subscribe());
    // The table a catalog is built with; what it saw is no longer news.
    let host_table = |rx: &mut Option<tokio::sync::watch::Receiver<Arc<HostTable>>>| {
        rx.as_mut()
            .map(|r| r.borrow_and_update().clone())
            .unwrap_or_default()
    };
    // An answer came since the last catalog: the next one is built even if
    // its read found nothing new, and one is due after [`HOSTS_DEBOUNCE`].
    let mut hosts_changed = false;
    let mut hosts_rebuild_due: Option<Instant> = None;
    let mut sent_first = false;
    let mut pending = Some(Pending {
        trigger: Trigger::Initial,
        scope: Scope::All,
        due: Due::at(Instant::now()),
        backing_off: false,
    });
    // Every app of the last reads, refreshed in place by full reads (the
    // decoder thread holds the lock while it reads); `have_apps` once one
    // full read succeeded.
    let apps: Arc<Mutex<AppSet>> = Arc::default();
    let mut have_apps = false;
    let mut inflight: Option<Inflight> = None;
    let mut stream: Option<MarathonEvents> = None;
    let mut connected_at = Instant::now();
    let mut connecting: Option<BoxFuture<Result<MarathonEvents, FetchError>>> = None;
    // Subscribe first, then read: a change after the subscription is either
    // in the read or an event after it. The read waits for the attach, up to
    // `first_read_wait` (an event endpoint that hangs must not delay the table).
    let mut reconnect_due: Option<Instant> = Some(Instant::now());
    let mut first_read_hold: Option<Instant> = Some(Instant::now() + timing.first_read_wait);
    // The resync clock starts from a known table.
    let mut resync_due: Option<Instant> = None;
    let mut fetch_backoff = Backoff::new(timing.backoff_base, timing.backoff_cap);
    let mut stream_backoff = Backoff::new(timing.backoff_base, timing.backoff_cap);
    let mut last_warnings: HashSet<String> = HashSet::new();

    loop {
        let fetch_due = match (&inflight, &pending) {
            (None, Some(p)) => Some(first_read_hold.map_or(p.due_at(), |h| h.max(p.due_at()))),
            _ => None,
        };
        let connect_due = match (&stream, &connecting) {
            (None, None) => reconnect_due,
            _ => None,
        };
        // A read on its way builds with the latest answers anyway.
        let rebuild_due = hosts_rebuild_due.filter(|_| inflight.is_none());
        tokio::select! {
            _ = tx.closed() => {
                debug!("marathon: update receiver gone, source stops");
                return;
            }
            result = poll_inflight(&mut inflight) => {
                let Inflight { trigger, started, .. } = inflight.take().expect("polled Some");
                let now = Instant::now();
                let mut apps_read = None;
                let mut unchanged = false;
                // A block, so the guard is gone before any await below.
                let outcome = {
                    let mut set = apps.lock().unwrap_or_else(|p| p.into_inner());
                    let outcome = match result {
                        // A full read always goes out (it is also what proves
                        // the source alive); only app reads are skipped when
                        // they find nothing new.
                        Ok(Fetched::All(changed)) => {
                            have_apps = true;
                            debug!(changed, "marathon: full read decoded in place");
                            Ok(())
                        }
                        Ok(Fetched::Apps(list)) => {
                            apps_read = Some(list.len());
                            let mut changed = false;
                            for (id, read) in list {
                                let (app, pod) = match read {
                                    OneRead::App(a) => (Some(a), None),
                                    OneRead::Pod(p) => (None, Some(p)),
                                    OneRead::Gone => (None, None),
                                };
                                changed |= set.replace(&id, app);
                                changed |= set.replace_pod(&id, pod);
                            }
                            unchanged = !changed && !hosts_changed;
                            Ok(())
                        }
                        Err(e) => {
                            if apps_read.is_none() {
                                set.mark_dirty();
                            }
                            Err(e.to_string())
                        }
                    };
                    outcome.and_then(|()| {
                        if unchanged {
                            // The catalog this would build is the one already sent.
                            return Ok(None);
                        }
                        hosts_changed = false;
                        set.catalog_with(&mut alloc, &host_table(&mut host_changes))
                            .map(Some)
                            .map_err(|e| e.to_string())
                    })
                };
                // The first table waits (boundedly) for new agent names, so a
                // restart does not withdraw their backends for a moment.
                let outcome = match (outcome, &hosts) {
                    (Ok(Some(parsed)), Some(h)) if !sent_first && !parsed.hosts.is_empty() => {
                        h.want(parsed.hosts.clone());
                        h.settled(FIRST_RESOLVE_WAIT).await;
                        let set = apps.lock().unwrap_or_else(|p| p.into_inner());
                        set.catalog_with(&mut alloc, &host_table(&mut host_changes))
                            .map(Some)
                            .map_err(|e| e.to_string())
                    }
                    (outcome, _) => outcome,
                };
                let outcome = match outcome {
                    // Only an app read: a full one always builds the catalog.
                    Ok(None) => {
                        fetch_backoff.reset();
                        SourceStats::add(&stats.fetch_ok, 1);
                        SourceStats::add(&stats.targeted, 1);
                        debug!(
                            trigger = trigger.label(),
                            apps = apps_read.unwrap_or_default(),
                            took_us = started.elapsed().as_micros() as u64,
                            "marathon: apps read, nothing changed"
                        );
                        continue;
                    }
                    Ok(Some(parsed)) => Ok(parsed),
                    Err(e) => Err(e),
                };
                match outcome {
                    Ok(parsed) => {
                        if let Some(h) = &hosts {
                            h.want(parsed.hosts.clone());
                        }
                        sent_first = true;
                        fetch_backoff.reset();
                        resync_due = Some(now + timing.resync);
                        if reconnect_due.is_none() && stream.is_none() && connecting.is_none() {
                            reconnect_due = Some(now);
                        }
                        let warnings = parsed.warnings.len();
                        let mut seen = HashSet::with_capacity(warnings);
                        for w in &parsed.warnings {
                            let line = w.to_string();
                            let app = w.app_id.as_deref().unwrap_or("-");
                            // Repeated on every read: loud only the first time.
                            if last_warnings.contains(&line) {
                                debug!(app, "marathon: {line}");
                            } else {
                                warn!(app, "marathon: {line}");
                            }
                            seen.insert(line);
                        }
                        last_warnings = seen;
                        SourceStats::add(&stats.warnings, warnings as u64);
                        SourceStats::add(&stats.fetch_ok, 1);
                        if apps_read.is_some() {
                            SourceStats::add(&stats.targeted, 1);
                        }
                        let update = Update {
                            catalog: parsed.catalog,
                            trigger,
                            warnings,
                            took: started.elapsed(),
                            apps_read,
                        };
                        debug!(
                            trigger = update.trigger.label(),
                            apps = apps_read.map_or_else(|| "all".to_owned(), |n| n.to_string()),
                            warnings,
                            took_ms = update.took.as_millis() as u64,
                            took_us = update.took.as_micros() as u64,
                            "marathon: apps read"
                        );
                        if tx.send(update).await.is_err() {
                            return;
                        }
                    }
                    Err(reason) => {
                        SourceStats::add(&stats.fetch_failed, 1);
                        stats.last_failure.send_replace(Some(reason.clone()));
                        let delay = fetch_backoff.next_delay();
                        warn!(
                            trigger = trigger.label(),
                            retry_in_ms = delay.as_millis() as u64,
                            "marathon: read failed, keeping the last table: {reason}"
                        );
                        let trigger = match pending.take() {
                            Some(p) => trigger.merge(p.trigger),
                            None => trigger,
                        };
                        // What failed may have been partly applied by
                        // Marathon meanwhile: the retry reads everything.
                        pending = Some(Pending {
                            trigger,
                            scope: Scope::All,
                            due: Due::at(now + delay),
                            backing_off: true,
                        });
                    }
                }
            }
            _ = sleep_opt(fetch_due) => {
                first_read_hold = None;
                let p = pending.take().expect("due implies pending");
                let api = api.clone();
                let fut: BoxFuture<Result<Fetched, FetchError>> = match p.scope {
                    Scope::Apps(ids) if have_apps => {
                        let pods: HashSet<String> = {
                            let set = apps.lock().unwrap_or_else(|p| p.into_inner());
                            ids.iter().filter(|id| set.is_pod(id)).cloned().collect()
                        };
                        Box::pin(async move {
                            let reads = ids.iter().map(|id| read_one(&*api, id, pods.contains(id)));
                            let got = futures_util::future::try_join_all(reads).await?;
                            Ok(Fetched::Apps(ids.into_iter().zip(got).collect()))
                        })
                    }
                    _ => {
                        let set = apps.clone();
                        // Apps, then pods: the read fails if either does,
                        // so no table is ever built from half the cluster.
                        Box::pin(async move {
                            let apps_changed = api.fetch_apps(set.clone()).await?;
                            let pods_changed = api.fetch_pods(set).await?;
                            Ok(Fetched::All(apps_changed | pods_changed))
                        })
                    }
                };
                inflight = Some(Inflight {
                    trigger: p.trigger,
                    started: Instant::now(),
                    fut,
                });
            }
            item = next_event(&mut stream) => {
                let now = Instant::now();
                match item {
                    Some(Ok(ev)) => {
                        SourceStats::add(&stats.events_received, 1);
                        on_event(&mut pending, ev, Due::window(now, &timing));
                    }
                    Some(Err(EventError::Malformed { event_type, received_at, reason })) => {
                        SourceStats::add(&stats.events_received, 1);
                        SourceStats::add(&stats.events_malformed, 1);
                        warn!(event_type, "marathon: event data is not JSON ({reason})");
                        // The type alone is signal enough: re-reading is always safe.
                        let ev = MarathonEvent {
                            event_type,
                            data: serde_json::Value::Null,
                            received_at,
                        };
                        on_event(&mut pending, ev, Due::window(now, &timing));
                    }
                    end => {
                        stream = None;
                        SourceStats::add(&stats.reconnects, 1);
                        // A connection that held for a while was healthy: start over.
                        if now - connected_at >= timing.backoff_cap {
                            stream_backoff.reset();
                        }
                        let delay = stream_backoff.next_delay();
                        reconnect_due = Some(now + delay);
                        if matches!(end, Some(Err(EventError::TooLarge(_)))) {
                            SourceStats::add(&stats.over_cap, 1);
                        }
                        let why = match end {
                            Some(Err(e)) => e.to_string(),
                            _ => "closed by Marathon".to_owned(),
                        };
                        warn!(
                            retry_in_ms = delay.as_millis() as u64,
                            "marathon: event stream lost: {why}"
                        );
                    }
                }
            }
            _ = sleep_opt(connect_due) => {
                reconnect_due = None;
                let api = api.clone();
                connecting = Some(Box::pin(async move { api.events().await }));
            }
            result = poll_boxed(&mut connecting) => {
                connecting = None;
                let now = Instant::now();
                match result {
                    Ok(s) => {
                        stream = Some(s);
                        connected_at = now;
                        if first_read_hold.take().is_none() {
                            // Whatever happened while we were not listening: re-read.
                            Pending::add(&mut pending, Trigger::Reconnect, Scope::All, Due::window(now, &timing));
                        }
                        // Else the first read has not started: it sees it all.
                    }
                    Err(e) => {
                        // No stream yet: the first read goes ahead without it.
                        first_read_hold = None;
                        SourceStats::add(&stats.reconnects, 1);
                        let delay = stream_backoff.next_delay();
                        reconnect_due = Some(now + delay);
                        warn!(
                            retry_in_ms = delay.as_millis() as u64,
                            "marathon: event stream: {e}"
                        );
                    }
                }
            }
            _ = host_table_changed(&mut host_changes) => {
                hosts_changed = true;
                hosts_rebuild_due.get_or_insert(Instant::now() + HOSTS_DEBOUNCE);
            }
            _ = sleep_opt(rebuild_due) => {
                hosts_rebuild_due = None;
                if !have_apps || !hosts_changed {
                    continue; // no table yet, or a read already used the answers
                }
                hosts_changed = false;
                let started = Instant::now();
                let built = {
                    let set = apps.lock().unwrap_or_else(|p| p.into_inner());
                    set.catalog_with(&mut alloc, &host_table(&mut host_changes))
                };
                match built {
                    Ok(parsed) => {
                        let warnings = parsed.warnings.len();
                        for w in &parsed.warnings {
                            let line = w.to_string();
                            if !last_warnings.contains(&line) {
                                warn!(app = w.app_id.as_deref().unwrap_or("-"), "marathon: {line}");
                            }
                        }
                        last_warnings = parsed.warnings.iter().map(ToString::to_string).collect();
                        debug!(took_us = started.elapsed().as_micros() as u64, "marathon: agent hosts changed, catalog rebuilt");
                        let update = Update {
                            catalog: parsed.catalog,
                            trigger: Trigger::Hosts,
                            warnings,
                            took: started.elapsed(),
                            apps_read: Some(0),
                        };
                        if tx.send(update).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => warn!("marathon: rebuilding the catalog for agent hosts: {e}"),
                }
            }
            _ = reread.notified() => {
                info!("marathon: SIGHUP, re-reading every app");
                Pending::add(&mut pending, Trigger::Sighup, Scope::All, Due::at(Instant::now()));
                if let Some(p) = pending.as_mut() {
                    // Asked for now: not after a backoff, nor a debounce.
                    p.due = Due::at(Instant::now());
                    p.backing_off = false;
                }
            }
            _ = sleep_opt(resync_due) => {
                let now = Instant::now();
                resync_due = Some(now + timing.resync);
                // A read already on its way is as good as a resync.
                if inflight.is_none() && pending.is_none() {
                    Pending::add(&mut pending, Trigger::Resync, Scope::All, Due::at(now));
                }
            }
        }
    }
}

fn on_event(pending: &mut Option<Pending>, ev: MarathonEvent, due: Due) {
    if events::triggers_reread(&ev.event_type) {
        let scope = Scope::of_event(&ev);
        Pending::add(
            pending,
            Trigger::Event {
                event_type: ev.event_type,
                received_at: ev.received_at,
                events: 1,
            },
            scope,
            due,
        );
    } else {
        debug!(event_type = ev.event_type, "marathon: event ignored");
    }
}

/// Waits for the read in flight; never resolves while there is none. The
/// caller empties the slot once it has resolved.
async fn poll_inflight(slot: &mut Option<Inflight>) -> Result<Fetched, FetchError> {
    match slot {
        Some(i) => i.fut.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Same for the connection attempt.
async fn poll_boxed<T>(slot: &mut Option<BoxFuture<T>>) -> T {
    match slot {
        Some(f) => f.as_mut().await,
        None => std::future::pending().await,
    }
}

async fn next_event(s: &mut Option<MarathonEvents>) -> Option<Result<MarathonEvent, EventError>> {
    match s {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// A new host table was published (never, without a resolver).
async fn host_table_changed(rx: &mut Option<tokio::sync::watch::Receiver<Arc<HostTable>>>) {
    match rx {
        Some(r) => {
            if r.changed().await.is_err() {
                *rx = None; // the resolver is gone: nothing more will change
            }
        }
        None => std::future::pending().await,
    }
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    //! The loop against a scripted fake, on a paused clock.
    use std::{collections::VecDeque, sync::Mutex};

    use futures_util::stream;
    use url::Url;

    use super::*;

    const GOOD: &str =
        include_str!("../../../l4lb-core/tests/fixtures/marathon/apps_redis_host.json");
    type EventTx = mpsc::UnboundedSender<Result<MarathonEvent, EventError>>;

    #[derive(Default)]
    struct Fake {
        /// `/v2/apps` answers in order (Err = HTTP status); GOOD once empty.
        answers: Mutex<VecDeque<Result<&'static str, u16>>>,
        fetch_delay: Duration,
        fetched_at: Mutex<Vec<Instant>>,
        /// `/v2/apps/{id}` answers in order (Ok(None) = 404, Err = HTTP
        /// status); 404 once empty.
        app_answers: Mutex<VecDeque<Result<Option<&'static str>, u16>>>,
        /// Ids asked for by `fetch_app`, in order.
        app_reads: Mutex<Vec<String>>,
        /// `/v2/pods/::status` answers in order (Err = HTTP status; 404 =
        /// no pods); `[]` once empty.
        pods_answers: Mutex<VecDeque<Result<&'static str, u16>>>,
        /// `/v2/pods/{id}::status` answers (as `app_answers`); 404 once empty.
        pod_answers: Mutex<VecDeque<Result<Option<&'static str>, u16>>>,
        /// Ids asked for by `fetch_pod`, in order.
        pod_reads: Mutex<Vec<String>>,
        /// One per successful subscription; none left = connection refused.
        streams: Mutex<VecDeque<mpsc::UnboundedReceiver<Result<MarathonEvent, EventError>>>>,
        connected_at: Mutex<Vec<Instant>>,
        /// Time `events()` takes to answer.
        connect_delay: Duration,
    }

    impl Fake {
        fn answers(self, a: &[Result<&'static str, u16>]) -> Fake {
            *self.answers.lock().unwrap() = a.iter().copied().collect();
            self
        }
        fn stream(&self) -> EventTx {
            let (tx, rx) = mpsc::unbounded_channel();
            self.streams.lock().unwrap().push_back(rx);
            tx
        }
        fn fetches(&self) -> Vec<Instant> {
            self.fetched_at.lock().unwrap().clone()
        }
        fn app_answers(self, a: &[Result<Option<&'static str>, u16>]) -> Fake {
            *self.app_answers.lock().unwrap() = a.iter().copied().collect();
            self
        }
        fn app_reads(&self) -> Vec<String> {
            self.app_reads.lock().unwrap().clone()
        }
        fn pods_answers(self, a: &[Result<&'static str, u16>]) -> Fake {
            *self.pods_answers.lock().unwrap() = a.iter().copied().collect();
            self
        }
        fn pod_answers(self, a: &[Result<Option<&'static str>, u16>]) -> Fake {
            *self.pod_answers.lock().unwrap() = a.iter().copied().collect();
            self
        }
        fn pod_reads(&self) -> Vec<String> {
            self.pod_reads.lock().unwrap().clone()
        }
    }

    fn status(code: u16) -> FetchError {
        FetchError::Status {
            url: fake_url(),
            status: reqwest::StatusCode::from_u16(code).unwrap(),
            body: String::new(),
        }
    }

    fn fake_url() -> Url {
        Url::parse("http://fake/").unwrap()
    }

    impl MarathonApi for Fake {
        fn fetch_apps(
            &self,
            set: Arc<Mutex<AppSet>>,
        ) -> impl Future<Output = Result<bool, FetchError>> + Send {
            self.fetched_at.lock().unwrap().push(Instant::now());
            let answer = self.answers.lock().unwrap().pop_front().unwrap_or(Ok(GOOD));
            let delay = self.fetch_delay;
            async move {
                tokio::time::sleep(delay).await;
                let body = answer.map_err(status)?;
                let mut set = set.lock().unwrap();
                set.refresh_from_slice(body.as_bytes())
                    .map_err(|source| FetchError::Decode {
                        url: fake_url(),
                        source: Box::new(source),
                    })
            }
        }

        fn fetch_app(
            &self,
            id: &str,
        ) -> impl Future<Output = Result<Option<OneApp>, FetchError>> + Send {
            self.app_reads.lock().unwrap().push(id.to_owned());
            let answer = self
                .app_answers
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Ok(None));
            let delay = self.fetch_delay;
            let id = id.to_owned();
            async move {
                tokio::time::sleep(delay).await;
                match answer.map_err(status)? {
                    None => Ok(None),
                    Some(body) => crate::marathon::decode::decode_one_app(body.as_bytes(), &id)
                        .map(Some)
                        .map_err(|source| FetchError::Decode {
                            url: fake_url(),
                            source: Box::new(source),
                        }),
                }
            }
        }

        fn fetch_pods(
            &self,
            set: Arc<Mutex<AppSet>>,
        ) -> impl Future<Output = Result<bool, FetchError>> + Send {
            let answer = self
                .pods_answers
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Ok("[]"));
            async move {
                let mut set = set.lock().unwrap();
                match answer {
                    Err(404) => Ok(set.clear_pods()),
                    Err(code) => Err(status(code)),
                    Ok(body) => set
                        .refresh_pods_from_slice(body.as_bytes())
                        .map_err(|source| FetchError::Decode {
                            url: fake_url(),
                            source: Box::new(source),
                        }),
                }
            }
        }

        fn fetch_pod(
            &self,
            id: &str,
        ) -> impl Future<Output = Result<Option<OneApp>, FetchError>> + Send {
            self.pod_reads.lock().unwrap().push(id.to_owned());
            let answer = self
                .pod_answers
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Ok(None));
            let delay = self.fetch_delay;
            let id = id.to_owned();
            async move {
                tokio::time::sleep(delay).await;
                match answer.map_err(status)? {
                    None => Ok(None),
                    Some(body) => crate::marathon::decode::decode_one_pod(body.as_bytes(), &id)
                        .map(Some)
                        .map_err(|source| FetchError::Decode {
                            url: fake_url(),
                            source: Box::new(source),
                        }),
                }
            }
        }

        fn events(&self) -> impl Future<Output = Result<MarathonEvents, FetchError>> + Send {
            self.connected_at.lock().unwrap().push(Instant::now());
            let rx = self.streams.lock().unwrap().pop_front();
            let delay = self.connect_delay;
            async move {
                tokio::time::sleep(delay).await;
                let rx = rx.ok_or(FetchError::Connect {
                    url: fake_url(),
                    reason: "refused".into(),
                })?;
                let s =
                    stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|i| (i, rx)) });
                Ok(Box::pin(s) as MarathonEvents)
            }
        }
    }

    struct Run {
        fake: Arc<Fake>,
        rx: mpsc::Receiver<Update>,
        stats: Arc<SourceStats>,
        task: tokio::task::JoinHandle<()>,
        reread: Arc<Notify>,
    }

    fn timing() -> Timing {
        Timing::new(Duration::from_secs(600), Duration::from_millis(20))
    }

    /// One app on an agent known by name (bridge: its only backend is the agent's).
    const ON_NAMED_AGENT: &str = r#"{"apps": [{"id": "/web", "networks": [{"mode": "container/bridge"}],
        "container": {"portMappings": [{"containerPort": 80, "labels": {"VIP_0": "/web:80"}}]},
        "tasks": [{"id": "web.1", "host": "agent-1.example", "ports": [31001],
                   "state": "TASK_RUNNING"}]}]}"#;

    /// Answers `agent-1.example` after `delay` with `addr` (changeable).
    struct SlowDns {
        delay: Duration,
        addr: Arc<Mutex<&'static str>>,
    }

    impl crate::hosts::resolver::Lookup for SlowDns {
        async fn lookup(&self, _: &str) -> Result<(Vec<std::net::IpAddr>, Duration), String> {
            tokio::time::sleep(self.delay).await;
            let a = *self.addr.lock().unwrap();
            Ok((vec![a.parse().unwrap()], Duration::from_secs(30)))
        }
    }

    fn web_backends(u: &Update) -> Vec<String> {
        u.catalog
            .services
            .services
            .values()
            .flat_map(|s| s.backends.keys().map(ToString::to_string))
            .collect()
    }

    fn start_with_dns(fake: Arc<Fake>, dns: SlowDns) -> mpsc::Receiver<Update> {
        let (tx, rx) = mpsc::channel(8);
        let hosts = Arc::new(Resolver::spawn(dns));
        tokio::spawn(run_with(
            fake,
            timing(),
            VipAllocator::new(),
            tx,
            Arc::default(),
            Arc::default(),
            Some(hosts),
        ));
        rx
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_table_waits_briefly_for_agent_names() {
        let fake = Arc::new(Fake::default().answers(&[Ok(ON_NAMED_AGENT)]));
        let _stream = fake.stream();
        let addr = Arc::new(Mutex::new("198.18.0.9"));
        let dns = SlowDns {
            delay: Duration::from_millis(300),
            addr: addr.clone(),
        };
        let mut rx = start_with_dns(fake.clone(), dns);
        let first = rx.recv().await.unwrap();
        assert_eq!(first.trigger, Trigger::Initial);
        assert_eq!(web_backends(&first), ["198.18.0.9:31001"]);

        // The name moves at its next refresh: the table follows, with no
        // read of Marathon.
        *addr.lock().unwrap() = "198.18.0.10";
        let moved = tokio::time::timeout(Duration::from_secs(40), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(moved.trigger, Trigger::Hosts);
        assert_eq!(web_backends(&moved), ["198.18.0.10:31001"]);
        assert_eq!(fake.fetches().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_resolver_never_holds_the_table_for_long() {
        let fake = Arc::new(Fake::default().answers(&[Ok(ON_NAMED_AGENT)]));
        let _stream = fake.stream();
        let dns = SlowDns {
            delay: Duration::from_secs(10),
            addr: Arc::new(Mutex::new("198.18.0.9")),
        };
        let t0 = Instant::now();
        let mut rx = start_with_dns(fake.clone(), dns);
        let first = rx.recv().await.unwrap();
        assert!(t0.elapsed() <= FIRST_RESOLVE_WAIT + Duration::from_millis(100));
        assert!(web_backends(&first).is_empty());
        // The answer comes later: one rebuild, no read.
        let later = rx.recv().await.unwrap();
        assert_eq!(later.trigger, Trigger::Hosts);
        assert_eq!(web_backends(&later), ["198.18.0.9:31001"]);
        assert_eq!(fake.fetches().len(), 1);
    }

    fn start(fake: Arc<Fake>, timing: Timing) -> Run {
        let (tx, rx) = mpsc::channel(8);
        let stats = Arc::new(SourceStats::default());
        let reread = Arc::new(Notify::new());
        let task = tokio::spawn(run_with(
            fake.clone(),
            timing,
            VipAllocator::new(),
            tx,
            stats.clone(),
            reread.clone(),
            None,
        ));
        Run {
            fake,
            rx,
            stats,
            task,
            reread,
        }
    }

    impl Run {
        async fn next(&mut self) -> Update {
            tokio::time::timeout(Duration::from_secs(3600), self.rx.recv())
                .await
                .expect("an update within an hour")
                .expect("source alive")
        }
        /// Stream attached, then the initial read (no second one).
        async fn settle(&mut self) {
            assert_eq!(self.next().await.trigger, Trigger::Initial);
            assert_eq!(self.fake.connected_at.lock().unwrap().len(), 1);
        }
        async fn quiet_for(&mut self, d: Duration) {
            tokio::time::sleep(d).await;
            assert!(self.rx.try_recv().is_err(), "no update expected");
        }
    }

    /// The loop on `fake` with one event stream, past its first read.
    async fn settled(fake: Fake) -> (Run, EventTx) {
        let fake = Arc::new(fake);
        let events = fake.stream();
        let mut run = start(fake, timing());
        run.settle().await;
        (run, events)
    }

    fn ev(t: &str) -> Result<MarathonEvent, EventError> {
        Ok(MarathonEvent {
            event_type: t.into(),
            data: serde_json::json!({}),
            received_at: std::time::Instant::now(),
        })
    }

    /// Regression: SIGHUP killed the agent in Marathon mode. Now it re-reads
    /// everything at once, even while a failed read is backing off.
    #[tokio::test(start_paused = true)]
    async fn sighup_rereads_everything_at_once() {
        let (mut run, _events) = settled(Fake::default()).await;
        let t0 = Instant::now();
        run.reread.notify_one();
        let u = run.next().await;
        assert_eq!(u.trigger, Trigger::Sighup);
        assert_eq!(u.trigger.label(), "SIGHUP");
        assert_eq!(u.apps_read, None, "a full read");
        assert_eq!(run.fake.fetches().len(), 2);
        assert_eq!(run.fake.fetches()[1], t0, "no debounce");
        // While a failed read backs off: the SIGHUP read goes now.
        run.fake
            .answers
            .lock()
            .unwrap()
            .extend([Err(500), Err(500)]);
        run.reread.notify_one();
        while run.stats.snapshot().fetch_failed < 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let t1 = Instant::now();
        run.reread.notify_one();
        while run.stats.snapshot().fetch_failed < 2 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(run.fake.fetches()[3], t1);
        assert_eq!(run.next().await.trigger, Trigger::Sighup);
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_events_makes_one_read_after_the_debounce() {
        let (mut run, events) = settled(Fake::default()).await;
        assert_eq!(run.fake.fetches().len(), 1);

        let t0 = Instant::now();
        let burst: Vec<_> = [
            "status_update_event",
            "instance_changed_event",
            "health_status_changed_event",
            "instance_health_changed_event",
            "deployment_success",
        ]
        .iter()
        .map(|t| ev(t).unwrap())
        .collect();
        let earliest = burst[0].received_at;
        for e in burst {
            events.send(Ok(e)).unwrap();
        }
        let u = run.next().await;
        assert_eq!(
            u.trigger,
            Trigger::Event {
                event_type: "status_update_event".into(),
                received_at: earliest,
                events: 5
            }
        );
        let fetches = run.fake.fetches();
        assert_eq!(fetches.len(), 2);
        assert_eq!(fetches[1] - t0, Duration::from_millis(20));
        run.quiet_for(Duration::from_secs(5)).await;
        assert_eq!(run.fake.fetches().len(), 2);
        assert_eq!(run.stats.snapshot().events_received, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn the_debounce_window_is_fixed_from_the_first_event() {
        let (mut run, events) = settled(Fake::default()).await;
        let t0 = Instant::now();
        events.send(ev("status_update_event")).unwrap();
        tokio::time::sleep(Duration::from_millis(15)).await;
        events.send(ev("status_update_event")).unwrap();
        let u = run.next().await;
        assert!(matches!(u.trigger, Trigger::Event { events: 2, .. }));
        tokio::time::sleep_until(t0 + Duration::from_millis(30)).await;
        events.send(ev("app_terminated_event")).unwrap();
        let u = run.next().await;
        assert!(
            matches!(u.trigger, Trigger::Event { events: 1, ref event_type, .. } if event_type == "app_terminated_event")
        );
        let f = run.fake.fetches();
        assert_eq!(f[1] - t0, Duration::from_millis(20));
        assert_eq!(f[2] - t0, Duration::from_millis(50));
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_during_a_read_causes_another_read() {
        let fake = Arc::new(Fake {
            fetch_delay: Duration::from_millis(100),
            ..Fake::default()
        });
        let events = fake.stream();
        let mut run = start(fake, timing());
        run.settle().await;
        let t0 = Instant::now();
        events.send(ev("status_update_event")).unwrap();
        // The read starts at +20 ms and answers at +120 ms; this event comes in between.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let second = ev("health_status_changed_event").unwrap();
        let second_at = second.received_at;
        events.send(Ok(second)).unwrap();
        let u = run.next().await;
        assert!(
            matches!(u.trigger, Trigger::Event { events: 1, ref event_type, .. } if event_type == "status_update_event")
        );
        let u = run.next().await;
        assert_eq!(
            u.trigger,
            Trigger::Event {
                event_type: "health_status_changed_event".into(),
                received_at: second_at,
                events: 1
            }
        );
        let f = run.fake.fetches();
        assert_eq!(f.len(), 3);
        assert_eq!(
            f[2] - t0,
            Duration::from_millis(120),
            "starts once the first read is done"
        );
        assert_eq!(u.took, Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn failed_reads_send_nothing_and_are_retried_with_backoff() {
        // Initial OK; the post-attach read gets a 500, then garbage, then OK.
        let fake = Arc::new(Fake::default().answers(&[Ok(GOOD), Err(500), Ok("<html>"), Ok(GOOD)]));
        let events = fake.stream();
        let mut run = start(fake, timing());
        assert_eq!(run.next().await.trigger, Trigger::Initial);
        while run.stats.snapshot().fetch_failed < 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // An event while backing off joins the retry but does not hurry it.
        events.send(ev("status_update_event")).unwrap();
        let u = run.next().await;
        assert!(
            matches!(u.trigger, Trigger::Event { events: 1, .. }),
            "{:?}",
            u.trigger
        );
        let s = run.stats.snapshot();
        assert_eq!((s.fetch_ok, s.fetch_failed), (2, 2));
        let f = run.fake.fetches();
        assert_eq!(f.len(), 4);
        assert!(f[2] - f[1] <= Duration::from_millis(250));
        assert!(f[3] - f[2] <= Duration::from_millis(500));
    }

    #[tokio::test(start_paused = true)]
    async fn the_stream_attaches_first_and_the_first_read_retries_until_it_succeeds() {
        let fake = Arc::new(Fake::default().answers(&[Err(503), Err(502), Ok("{"), Ok(GOOD)]));
        let _events = fake.stream();
        let t0 = Instant::now();
        let mut run = start(fake, timing());
        let u = run.next().await;
        assert_eq!(u.trigger, Trigger::Initial);
        assert_eq!(run.stats.snapshot().fetch_failed, 3);
        let f = run.fake.fetches();
        assert!(f[3] - t0 <= Duration::from_millis(250 + 500 + 1000));
        let connected = run.fake.connected_at.lock().unwrap().clone();
        assert_eq!(connected.len(), 1);
        assert!(connected[0] <= f[0], "subscribed before the first read");
        // Nothing could change unseen between the two: no second full read.
        run.quiet_for(Duration::from_secs(5)).await;
        assert_eq!(run.fake.fetches().len(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_stream_holds_the_first_read_only_so_long_then_costs_a_reread() {
        let fake = Arc::new(Fake {
            connect_delay: FIRST_READ_WAIT * 3,
            ..Fake::default()
        });
        let _events = fake.stream();
        let t0 = Instant::now();
        let mut run = start(fake, timing());
        assert_eq!(run.next().await.trigger, Trigger::Initial);
        assert_eq!(run.fake.fetches()[0] - t0, FIRST_READ_WAIT);
        // The stream attached after the read: what happened in between is re-read.
        assert_eq!(run.next().await.trigger, Trigger::Reconnect);
        assert_eq!(run.fake.fetches().len(), 2);
        assert!(run.fake.fetches()[1] - t0 >= FIRST_READ_WAIT * 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_stream_does_not_hold_the_first_read() {
        // No stream queued: every connection attempt is refused.
        let fake = Arc::new(Fake::default());
        let t0 = Instant::now();
        let mut run = start(fake, timing());
        assert_eq!(run.next().await.trigger, Trigger::Initial);
        assert!(run.fake.fetches()[0] - t0 < Duration::from_millis(1));
        // Attached later (after a refusal): re-read.
        while run.fake.connected_at.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let _events = run.fake.stream();
        assert_eq!(run.next().await.trigger, Trigger::Reconnect);
    }

    #[tokio::test(start_paused = true)]
    async fn resync_runs_periodically_without_events() {
        let fake = Arc::new(Fake::default());
        let _events = fake.stream();
        let mut run = start(
            fake,
            Timing::new(Duration::from_secs(60), Duration::from_millis(20)),
        );
        run.settle().await;
        let after_settle = *run.fake.fetches().last().unwrap();
        for _ in 0..2 {
            assert_eq!(run.next().await.trigger, Trigger::Resync);
        }
        let f = run.fake.fetches();
        assert_eq!(f[1] - after_settle, Duration::from_secs(60));
        assert_eq!(f[2] - f[1], Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_stream_is_reconnected_with_backoff_and_reread() {
        let fake = Arc::new(Fake::default());
        let first = fake.stream();
        let mut run = start(fake, timing());
        run.settle().await;
        // Marathon closes the stream (e.g. leader abdicated); the next two
        // connection attempts are refused, the third works.
        let lost_at = Instant::now();
        drop(first);
        tokio::time::sleep(Duration::from_millis(1)).await;
        let second = {
            // Queue the working stream only after two refusals.
            while run.fake.connected_at.lock().unwrap().len() < 3 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            run.fake.stream()
        };
        let u = run.next().await;
        assert_eq!(u.trigger, Trigger::Reconnect);
        let c = run.fake.connected_at.lock().unwrap().clone();
        assert_eq!(c.len(), 4);
        assert!(c[1] - lost_at <= Duration::from_millis(250));
        assert!(c[2] - c[1] <= Duration::from_millis(500));
        assert!(c[3] - c[2] <= Duration::from_millis(1000));
        assert_eq!(run.stats.snapshot().reconnects, 3);
        second.send(ev("status_update_event")).unwrap();
        assert!(matches!(run.next().await.trigger, Trigger::Event { .. }));
    }

    #[tokio::test(start_paused = true)]
    async fn attach_and_unknown_events_do_not_reread_but_malformed_ones_do() {
        let (mut run, events) = settled(Fake::default()).await;
        events.send(ev("event_stream_attached")).unwrap();
        events.send(ev("framework_message_event")).unwrap();
        run.quiet_for(Duration::from_secs(1)).await;
        assert_eq!(run.fake.fetches().len(), 1);
        let at = std::time::Instant::now();
        events
            .send(Err(EventError::Malformed {
                event_type: "status_update_event".into(),
                received_at: at,
                reason: "EOF".into(),
            }))
            .unwrap();
        let u = run.next().await;
        assert!(matches!(u.trigger, Trigger::Event { received_at, .. } if received_at == at));
        let s = run.stats.snapshot();
        assert_eq!((s.events_received, s.events_malformed), (3, 1));
    }

    fn app_ev(t: &str, data: serde_json::Value) -> Result<MarathonEvent, EventError> {
        Ok(MarathonEvent {
            event_type: t.into(),
            data,
            received_at: std::time::Instant::now(),
        })
    }

    /// GOOD's `/redis` with its first task gone, as `/v2/apps/redis` answers.
    fn redis_minus_one_task() -> &'static str {
        let mut v: serde_json::Value = serde_json::from_str(GOOD).unwrap();
        let mut app = v["apps"][0].take();
        app["tasks"].as_array_mut().unwrap().remove(0);
        Box::leak(
            serde_json::json!({ "app": app })
                .to_string()
                .into_boxed_str(),
        )
    }

    fn backends(u: &Update) -> usize {
        u.catalog
            .services
            .services
            .values()
            .map(|s| s.backends.len())
            .sum()
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_naming_an_app_rereads_only_that_app() {
        let fake =
            Arc::new(Fake::default().app_answers(&[Ok(Some(redis_minus_one_task())), Ok(None)]));
        let events = fake.stream();
        let mut run = start(fake, timing());
        run.settle().await;
        let full = run.fake.fetches().len();
        events
            .send(app_ev(
                "status_update_event",
                serde_json::json!({"appId": "/redis", "taskStatus": "TASK_KILLED"}),
            ))
            .unwrap();
        let u = run.next().await;
        assert_eq!(u.apps_read, Some(1));
        assert_eq!(backends(&u), 2, "one of three tasks left");
        assert_eq!(u.catalog.tasks.len(), 2);
        // Health events name the app as runSpecId / appId too; 404 = gone.
        events
            .send(app_ev(
                "instance_health_changed_event",
                serde_json::json!({"runSpecId": "/redis", "healthy": false}),
            ))
            .unwrap();
        let u = run.next().await;
        assert_eq!(u.apps_read, Some(1));
        assert!(
            u.catalog.services.services.is_empty(),
            "the app was the only one declaring them"
        );
        assert!(u.catalog.tasks.is_empty());
        assert_eq!(run.fake.app_reads(), ["/redis", "/redis"]);
        assert_eq!(run.fake.fetches().len(), full, "no full read");
        assert_eq!(run.stats.snapshot().targeted, 2);
    }

    const PODS: &str = include_str!("../../../l4lb-core/tests/fixtures/marathon/pods_vips.json");

    /// PODS's `/cache` with only its running instance, as
    /// `/v2/pods/cache::status` answers.
    fn cache_one_instance() -> &'static str {
        let v: serde_json::Value = serde_json::from_str(PODS).unwrap();
        let mut pod = v[1].clone();
        pod["instances"].as_array_mut().unwrap().truncate(1);
        Box::leak(pod.to_string().into_boxed_str())
    }

    fn vips_named(u: &Update, label: &str) -> Vec<usize> {
        u.catalog
            .services
            .services
            .values()
            .filter(|s| s.name.as_deref() == Some(label))
            .map(|s| s.backends.len())
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn pods_are_read_with_the_apps_and_pod_events_reread_only_that_pod() {
        let fake = Fake::default()
            .pods_answers(&[Ok(PODS)])
            .pod_answers(&[Ok(Some(cache_one_instance())), Ok(None)]);
        let (mut run, events) = settled(fake).await;
        let full = run.fake.fetches().len();
        events
            .send(app_ev(
                "pod_updated_event",
                serde_json::json!({"uri": "/v2/pods/cache", "clientIp": "10.0.0.9"}),
            ))
            .unwrap();
        let u = run.next().await;
        assert_eq!(u.apps_read, Some(1));
        assert_eq!(
            vips_named(&u, "/cache:6379"),
            [1, 1],
            "udp and tcp, one backend each"
        );
        assert_eq!(vips_named(&u, "/redis:6379").len(), 1, "the apps stay");
        assert_eq!(run.fake.pod_reads(), ["/cache"]);
        assert!(
            run.fake.app_reads().is_empty(),
            "a known pod is read as one"
        );
        // A pod task's status update names the pod as `appId`; 404: gone
        // (and not an app either).
        events
            .send(app_ev(
                "status_update_event",
                serde_json::json!({"appId": "/cache", "taskId": "cache.instance-x.redis",
                                   "taskStatus": "TASK_KILLED"}),
            ))
            .unwrap();
        let u = run.next().await;
        assert!(vips_named(&u, "/cache:6379").is_empty());
        assert_eq!(vips_named(&u, "/shop/api:80").len(), 2, "other pods stay");
        assert_eq!(run.fake.pod_reads(), ["/cache", "/cache"]);
        assert_eq!(run.fake.app_reads(), ["/cache"]);
        assert_eq!(run.fake.fetches().len(), full, "no full read");
        // A create names no pod (`uri` is `/v2/pods`): a full read.
        events
            .send(app_ev(
                "pod_created_event",
                serde_json::json!({"uri": "/v2/pods", "clientIp": "10.0.0.9"}),
            ))
            .unwrap();
        let u = run.next().await;
        assert_eq!(u.apps_read, None);
        assert_eq!(run.fake.fetches().len(), full + 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unknown_id_is_read_as_an_app_then_as_a_pod() {
        let fake = Fake::default().pod_answers(&[Ok(Some(cache_one_instance()))]);
        let (mut run, events) = settled(fake).await;
        events
            .send(app_ev(
                "instance_changed_event",
                serde_json::json!({"runSpecId": "/cache", "condition": "Running"}),
            ))
            .unwrap();
        let u = run.next().await;
        assert_eq!(u.apps_read, Some(1));
        assert_eq!(vips_named(&u, "/cache:6379"), [1, 1]);
        assert_eq!(run.fake.app_reads(), ["/cache"]);
        assert_eq!(run.fake.pod_reads(), ["/cache"]);
    }

    #[test]
    fn pod_events_name_their_pod() {
        let scope = |t: &str, d: serde_json::Value| Scope::of_event(&app_ev(t, d).unwrap());
        let one = |id: &str| Scope::Apps(BTreeSet::from([id.to_owned()]));
        assert_eq!(
            scope(
                "pod_deleted_event",
                serde_json::json!({"uri": "/v2/pods/shop/api"})
            ),
            one("/shop/api")
        );
        assert_eq!(
            scope(
                "pod_updated_event",
                serde_json::json!({"uri": "/v2/pods/web::status"})
            ),
            one("/web")
        );
        assert_eq!(
            scope("pod_created_event", serde_json::json!({"uri": "/v2/pods"})),
            Scope::All
        );
        assert_eq!(
            scope(
                "pod_updated_event",
                serde_json::json!({"uri": "/v2/pods/A"})
            ),
            Scope::All
        );
        assert_eq!(
            scope("pod_updated_event", serde_json::json!({})),
            Scope::All
        );
        let plan = serde_json::json!({"plan": {"steps": [{"actions": [
            {"action": "StartPod", "pod": "/p"}, {"action": "ScaleApplication", "app": "/a"}]}]}});
        assert_eq!(
            scope("deployment_success", plan),
            Scope::Apps(BTreeSet::from(["/a".to_owned(), "/p".to_owned()]))
        );
        for t in [
            "pod_created_event",
            "pod_updated_event",
            "pod_deleted_event",
        ] {
            assert!(events::triggers_reread(t), "{t}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_pods_read_fails_the_full_read_and_404_means_no_pods() {
        let fake = Fake::default().pods_answers(&[Err(404), Err(500), Ok(PODS)]);
        let (mut run, _events) = settled(fake).await;
        // The first read: no pods here (404), the apps as usual.
        run.reread.notify_one();
        let u = run.next().await;
        assert_eq!(u.trigger, Trigger::Sighup);
        let s = run.stats.snapshot();
        assert_eq!(
            s.fetch_failed, 1,
            "the pods read failed: no table from the apps alone"
        );
        assert_eq!(vips_named(&u, "/cache:6379"), [2, 2]);
        assert_eq!(vips_named(&u, "/redis:6379").len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn app_reads_wait_the_short_window_full_reads_the_long_one() {
        let (mut run, events) = settled(Fake::default()).await;
        let t = timing();
        assert_eq!(t.app_debounce, t.debounce / 4);
        let t0 = Instant::now();
        events
            .send(app_ev(
                "status_update_event",
                serde_json::json!({"appId": "/redis"}),
            ))
            .unwrap();
        assert_eq!(run.next().await.apps_read, Some(1));
        let waited = Instant::now() - t0;
        assert!(
            waited >= t.app_debounce && waited < t.debounce,
            "{waited:?}"
        );
        let t1 = Instant::now();
        events.send(ev("deployment_success")).unwrap();
        assert_eq!(run.next().await.apps_read, None);
        let waited = Instant::now() - t1;
        assert!(
            waited >= t.debounce && waited < t.debounce * 2,
            "{waited:?}"
        );
        // An app event joining a pending full read does not pull it earlier.
        let t2 = Instant::now();
        events.send(ev("deployment_success")).unwrap();
        events
            .send(app_ev(
                "status_update_event",
                serde_json::json!({"appId": "/redis"}),
            ))
            .unwrap();
        assert_eq!(run.next().await.apps_read, None);
        assert!(Instant::now() - t2 >= t.debounce);
    }

    #[tokio::test(start_paused = true)]
    async fn many_apps_or_an_unnamed_or_bad_id_make_a_full_read() {
        let (mut run, events) = settled(Fake::default()).await;
        let full = run.fake.fetches().len();
        for i in 0..=MAX_TARGETED_APPS {
            events
                .send(app_ev(
                    "status_update_event",
                    serde_json::json!({"appId": format!("/a{i}")}),
                ))
                .unwrap();
        }
        let u = run.next().await;
        assert_eq!(u.apps_read, None);
        assert!(
            matches!(u.trigger, Trigger::Event { events, .. } if events == MAX_TARGETED_APPS + 1)
        );
        assert_eq!(run.fake.fetches().len(), full + 1);
        assert!(run.fake.app_reads().is_empty());
        // An id that is not a Marathon app id never reaches a URL.
        for id in ["/../v2/leader", "/a?b", "redis", "/A", "/a//b"] {
            events
                .send(app_ev(
                    "status_update_event",
                    serde_json::json!({"appId": id}),
                ))
                .unwrap();
            assert_eq!(run.next().await.apps_read, None, "{id}");
        }
        // A deployment without a plan that names its apps: everything.
        events.send(ev("deployment_success")).unwrap();
        assert_eq!(run.next().await.apps_read, None);
        assert!(run.fake.app_reads().is_empty());
        // With one: those apps (steps[].actions[].app).
        let plan = serde_json::json!({"plan": {"steps": [
            {"actions": [{"action": "ScaleApplication", "app": "/redis"}]},
            {"actions": [{"action": "StartApplication", "app": "/web"}]}]}});
        events.send(app_ev("deployment_success", plan)).unwrap();
        assert_eq!(run.next().await.apps_read, Some(2));
        assert_eq!(run.fake.app_reads(), ["/redis", "/web"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_app_read_is_retried_as_a_full_read() {
        let (mut run, events) = settled(Fake::default().app_answers(&[Err(503)])).await;
        let full = run.fake.fetches().len();
        events
            .send(app_ev(
                "health_status_changed_event",
                serde_json::json!({"appId": "/redis", "alive": false}),
            ))
            .unwrap();
        let u = run.next().await;
        assert_eq!(u.apps_read, None);
        assert!(matches!(u.trigger, Trigger::Event { .. }));
        assert_eq!(run.fake.app_reads(), ["/redis"]);
        assert_eq!(run.fake.fetches().len(), full + 1);
        assert_eq!(run.stats.snapshot().fetch_failed, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn parser_warnings_are_counted_and_the_update_still_goes_out() {
        const BAD_LABEL: &str = r#"{"apps":[{"id":"/bad","instances":0,"tasks":[],
            "portDefinitions":[{"port":10000,"protocol":"tcp","labels":{"VIP_0":"no-port"}}]}]}"#;
        let want =
            crate::marathon::parse::parse_apps(BAD_LABEL.as_bytes(), &mut VipAllocator::new())
                .unwrap();
        assert!(!want.warnings.is_empty());
        let fake = Arc::new(Fake::default().answers(&[Ok(BAD_LABEL), Ok(BAD_LABEL)]));
        let _events = fake.stream();
        let mut run = start(fake, timing());
        let u = run.next().await;
        assert_eq!(
            (u.trigger, u.warnings),
            (Trigger::Initial, want.warnings.len())
        );
        assert_eq!(u.catalog, want.catalog);
        // Counted on every read (logged loudly only the first time).
        assert_eq!(run.next().await.warnings, want.warnings.len());
        assert_eq!(
            run.stats.snapshot().warnings,
            2 * want.warnings.len() as u64
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_source_stops_when_the_receiver_is_dropped() {
        let fake = Arc::new(Fake::default());
        let _events = fake.stream();
        let mut run = start(fake, timing());
        run.settle().await;
        drop(run.rx);
        tokio::time::timeout(Duration::from_secs(1), run.task)
            .await
            .expect("source stopped")
            .unwrap();
    }

    #[test]
    fn backoff_bounds() {
        let mut b = Backoff::new(BACKOFF_BASE, BACKOFF_CAP);
        let want_ms = [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000];
        for ms in want_ms {
            assert_eq!(b.ceiling(), Duration::from_millis(ms));
            b.next_delay();
        }
        for _ in 0..100 {
            b.next_delay();
        }
        assert_eq!(b.ceiling(), BACKOFF_CAP, "no overflow after many failures");
        b.reset();
        assert_eq!(b.ceiling(), BACKOFF_BASE);

        // Full jitter: every delay within [0, ceiling], and spread over it.
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(1));
        let samples: Vec<_> = (0..2000).map(|_| b.next_delay()).collect();
        assert!(samples.iter().all(|d| *d <= Duration::from_secs(1)));
        assert!(samples.iter().any(|d| *d < Duration::from_millis(100)));
        assert!(samples.iter().any(|d| *d > Duration::from_millis(900)));
    }

    #[test]
    fn trigger_merge_keeps_the_earliest_event() {
        let t0 = std::time::Instant::now();
        let t1 = t0 + Duration::from_millis(5);
        let e = |t: &str, at, n| Trigger::Event {
            event_type: t.into(),
            received_at: at,
            events: n,
        };
        assert_eq!(e("b", t1, 2).merge(e("a", t0, 1)), e("a", t0, 3));
        assert_eq!(Trigger::Resync.merge(e("a", t0, 1)), e("a", t0, 1));
        assert_eq!(
            Trigger::Resync.merge(Trigger::Reconnect),
            Trigger::Reconnect
        );
        assert_eq!(Trigger::Initial.merge(Trigger::Resync), Trigger::Initial);
    }
}

#[cfg(test)]
mod http_tests {
    //! Client + source against raw HTTP/1.1 servers on 127.0.0.1, real clock.
    use std::{
        net::SocketAddr,
        sync::{
            Mutex,
            atomic::{AtomicUsize, Ordering::SeqCst},
        },
    };

    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::{TcpListener, TcpStream},
        sync::broadcast,
    };
    use url::Url;

    use super::*;
    use crate::marathon::{args::Credentials, client::MarathonClient};

    const GOOD: &str =
        include_str!("../../../l4lb-core/tests/fixtures/marathon/apps_redis_host.json");

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
        async fn start(
            handler: impl Fn(&Req, SocketAddr) -> Reply + Send + Sync + 'static,
        ) -> Server {
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
        bad_answers_send_no_update(|| Reply::Raw(200, "text/html", "<html>login</html>".into()))
            .await;
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
        assert_eq!(u.catalog, want.catalog);
        assert!(
            !u.catalog.services.services.is_empty(),
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
}
