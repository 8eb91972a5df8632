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
//!
//! Here: the public face ([`MarathonSource`], [`Update`]) and the loop that
//! waits on everything at once; `schedule` decides when to read and what,
//! `api` does the reads, `stats` counts, `wait` holds the futures the loop
//! waits on.
use std::{
    collections::{BTreeSet, HashSet},
    ops::ControlFlow::{self, Break, Continue},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    sync::{Notify, mpsc, watch},
    time::Instant,
};
use tracing::{debug, info, warn};

use self::{
    api::{BoxFuture, Fetched, OneRead},
    schedule::{Due, Pending, Scope},
    wait::{host_table_changed, next_event, poll_boxed, poll_inflight, sleep_opt},
};
use super::{
    client::{ClientConfig, ClientError, FetchError, MarathonClient},
    decode::AppSet,
    events::{self, EventError, MarathonEvent, MarathonEvents},
    parse::{Keep, Parsed, Warning},
};
use crate::{
    hosts::{HostTable, resolver::Resolver},
    model::{Catalog, ServiceMap},
    naming::VipAllocator,
};

mod api;
mod schedule;
mod stats;
mod wait;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod http_tests;
#[cfg(test)]
mod tests;

pub use self::{
    api::MarathonApi,
    schedule::{
        BACKOFF_BASE, BACKOFF_CAP, Backoff, FIRST_READ_WAIT, FIRST_RESOLVE_WAIT, HOSTS_DEBOUNCE,
        MAX_TARGETED_APPS, Timing, Trigger,
    },
    stats::{SourceStats, StatsSnapshot},
};

/// What [`super::args::MarathonArgs::resolve`] produces.
#[derive(Clone, Debug)]
pub struct SourceConfig {
    pub client: ClientConfig,
    /// Period of the full re-read done even without events.
    pub resync: Duration,
    /// Window after a first event during which more events join its re-read.
    pub debounce: Duration,
    /// Fraction each resync period may be cut by ([`Timing::resync_jitter`]).
    pub resync_jitter: f64,
    /// Whether the catalogs carry task records: only when something reads
    /// them (the agent decides from its flags; see `run::marathon_keeps`).
    pub keep: Keep,
}

/// A complete catalog read from Marathon.
#[derive(Clone, Debug)]
pub struct Update {
    pub catalog: Catalog,
    /// The catalog's services as a persistent map (`Parsed::services`);
    /// when Some, `catalog.services` is empty (the agent's loop shares the
    /// map with it once the maps serve them).
    pub services: Option<ServiceMap>,
    pub trigger: Trigger,
    /// Apps (or parts of them) the parser skipped; each was logged.
    pub warnings: usize,
    /// How long the read + parse took.
    pub took: Duration,
    /// Apps re-read for this update; None: a full read.
    pub apps_read: Option<usize>,
}

#[cfg(test)]
impl Update {
    /// The catalog with its services, from the map when it came with one.
    pub(crate) fn full_catalog(&self) -> Catalog {
        let mut c = self.catalog.clone();
        if let Some(s) = &self.services {
            c.services = crate::model::desired_state(s);
        }
        c
    }
}

/// The Marathon source, ready to run.
pub struct MarathonSource {
    client: Arc<MarathonClient>,
    timing: Timing,
    stats: Arc<SourceStats>,
    reread: Arc<Notify>,
    hosts: Option<Arc<Resolver>>,
    keep: Keep,
}

impl MarathonSource {
    pub fn new(cfg: SourceConfig) -> Result<MarathonSource, ClientError> {
        let stats = Arc::<SourceStats>::default();
        Ok(MarathonSource {
            client: Arc::new(MarathonClient::new(cfg.client)?.with_stats(stats.clone())),
            timing: Timing {
                resync_jitter: cfg.resync_jitter,
                ..Timing::new(cfg.resync, cfg.debounce)
            },
            stats,
            reread: Arc::default(),
            hosts: None,
            keep: cfg.keep,
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
        SourceLoop::new(
            self.client,
            self.timing,
            alloc,
            tx,
            self.stats,
            self.reread,
            hosts,
        )
        .keeping(self.keep)
        .run()
        .await
    }
}

/// A read on its way.
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
    alloc: VipAllocator,
    tx: mpsc::Sender<Update>,
    stats: Arc<SourceStats>,
    reread: Arc<Notify>,
    hosts: Option<Arc<Resolver>>,
) {
    SourceLoop::new(api, timing, alloc, tx, stats, reread, hosts)
        .run()
        .await
}

/// What the loop keeps between wake-ups.
struct SourceLoop<A> {
    api: Arc<A>,
    timing: Timing,
    alloc: VipAllocator,
    tx: mpsc::Sender<Update>,
    stats: Arc<SourceStats>,
    reread: Arc<Notify>,
    hosts: Option<Arc<Resolver>>,
    host_changes: Option<watch::Receiver<Arc<HostTable>>>,
    /// An answer came since the last catalog: the next one is built even if
    /// its read found nothing new, and one is due after [`HOSTS_DEBOUNCE`].
    hosts_changed: bool,
    hosts_rebuild_due: Option<Instant>,
    sent_first: bool,
    pending: Option<Pending>,
    /// Every app of the last reads, refreshed in place by full reads (the
    /// decoder thread holds the lock while it reads).
    apps: Arc<Mutex<AppSet>>,
    /// Once one full read succeeded.
    have_apps: bool,
    inflight: Option<Inflight>,
    stream: Option<MarathonEvents>,
    connected_at: Instant,
    connecting: Option<BoxFuture<Result<MarathonEvents, FetchError>>>,
    reconnect_due: Option<Instant>,
    /// Until the stream attaches, the first read waits, up to this.
    first_read_hold: Option<Instant>,
    resync_due: Option<Instant>,
    fetch_backoff: Backoff,
    stream_backoff: Backoff,
    /// The last catalog's parser warnings: repeats are not news.
    last_warnings: HashSet<String>,
}

impl<A: MarathonApi> SourceLoop<A> {
    fn new(
        api: Arc<A>,
        timing: Timing,
        alloc: VipAllocator,
        tx: mpsc::Sender<Update>,
        stats: Arc<SourceStats>,
        reread: Arc<Notify>,
        hosts: Option<Arc<Resolver>>,
    ) -> SourceLoop<A> {
        let now = Instant::now();
        SourceLoop {
            host_changes: hosts.as_ref().map(|h| h.subscribe()),
            hosts_changed: false,
            hosts_rebuild_due: None,
            sent_first: false,
            pending: Some(Pending {
                trigger: Trigger::Initial,
                scope: Scope::All,
                due: Due::at(now),
                backing_off: false,
            }),
            apps: Arc::default(),
            have_apps: false,
            inflight: None,
            stream: None,
            connected_at: now,
            connecting: None,
            // Subscribe first, then read: a change after the subscription is
            // either in the read or an event after it. The read waits for the
            // attach, up to `first_read_wait` (an event endpoint that hangs
            // must not delay the table).
            reconnect_due: Some(now),
            first_read_hold: Some(now + timing.first_read_wait),
            // The resync clock starts from a known table.
            resync_due: None,
            fetch_backoff: Backoff::new(timing.backoff_base, timing.backoff_cap),
            stream_backoff: Backoff::new(timing.backoff_base, timing.backoff_cap),
            last_warnings: HashSet::new(),
            api,
            timing,
            alloc,
            tx,
            stats,
            reread,
            hosts,
        }
    }

    /// The set keeps what `keep` says of each task (a new loop's keeps the
    /// records).
    fn keeping(mut self, keep: Keep) -> SourceLoop<A> {
        self.apps = Arc::new(Mutex::new(AppSet::keeping(keep)));
        self
    }

    /// Waits on everything at once and hands each wake-up to its method.
    async fn run(mut self) {
        loop {
            let read_due = self.read_due();
            let connect_due = self.connect_due();
            let rebuild_due = self.rebuild_due();
            let resync_due = self.resync_due;
            let flow = tokio::select! {
                _ = self.tx.closed() => {
                    debug!("marathon: update receiver gone, source stops");
                    Break(())
                }
                result = poll_inflight(&mut self.inflight) => self.read_finished(result).await,
                _ = sleep_opt(read_due) => {
                    self.start_read();
                    Continue(())
                }
                item = next_event(&mut self.stream) => {
                    self.stream_item(item);
                    Continue(())
                }
                _ = sleep_opt(connect_due) => {
                    self.start_connect();
                    Continue(())
                }
                result = poll_boxed(&mut self.connecting) => {
                    self.connect_finished(result);
                    Continue(())
                }
                _ = host_table_changed(&mut self.host_changes) => {
                    self.hosts_answered();
                    Continue(())
                }
                _ = sleep_opt(rebuild_due) => self.rebuild_for_hosts().await,
                _ = self.reread.notified() => {
                    self.sighup();
                    Continue(())
                }
                _ = sleep_opt(resync_due) => {
                    self.resync();
                    Continue(())
                }
            };
            if flow.is_break() {
                return;
            }
        }
    }

    /// When the pending read may start: not while another is in flight, and
    /// the first not before the stream attached (or the hold ran out).
    fn read_due(&self) -> Option<Instant> {
        match (&self.inflight, &self.pending) {
            (None, Some(p)) => Some(
                self.first_read_hold
                    .map_or(p.due_at(), |h| h.max(p.due_at())),
            ),
            _ => None,
        }
    }

    fn connect_due(&self) -> Option<Instant> {
        match (&self.stream, &self.connecting) {
            (None, None) => self.reconnect_due,
            _ => None,
        }
    }

    /// A read on its way builds with the latest answers anyway.
    fn rebuild_due(&self) -> Option<Instant> {
        self.hosts_rebuild_due.filter(|_| self.inflight.is_none())
    }

    /// The pending read is due: only the apps it names once a full read
    /// gave us the rest, else everything.
    fn start_read(&mut self) {
        self.first_read_hold = None;
        let p = self.pending.take().expect("due implies pending");
        let api = self.api.clone();
        let fut = match p.scope {
            Scope::Apps(ids) if self.have_apps => {
                let pods = self.known_pods(&ids);
                api::targeted_read(api, ids, pods)
            }
            _ => api::full_read(api, self.apps.clone()),
        };
        self.inflight = Some(Inflight {
            trigger: p.trigger,
            started: Instant::now(),
            fut,
        });
    }

    /// Those of `ids` the last reads knew as pods.
    fn known_pods(&self, ids: &BTreeSet<String>) -> HashSet<String> {
        let set = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        ids.iter().filter(|id| set.is_pod(id)).cloned().collect()
    }

    /// A read answered: the catalog goes out, or is already out, or the
    /// read is retried.
    async fn read_finished(&mut self, result: Result<Fetched, FetchError>) -> ControlFlow<()> {
        let Inflight {
            trigger, started, ..
        } = self.inflight.take().expect("polled Some");
        let now = Instant::now();
        let apps_read = match &result {
            Ok(Fetched::Apps(list)) => Some(list.len()),
            _ => None,
        };
        let built = self.absorb(result);
        let built = self.first_table_waits_for_names(built).await;
        match built {
            // Only an app read: a full one always builds the catalog.
            Ok(None) => {
                self.count_unchanged_read(&trigger, apps_read, started);
                Continue(())
            }
            Ok(Some(parsed)) => {
                self.send_read(parsed, trigger, apps_read, started, now)
                    .await
            }
            Err(reason) => {
                self.retry_after_failure(trigger, reason, now);
                // What a failed read decoded is freed: back to the OS, not
                // held until the next good read (a good one is applied at
                // once; its frees are reused by the next read).
                crate::allocator::release_free_pages();
                Continue(())
            }
        }
    }

    /// Folds a read's answer into the kept apps and builds the catalog;
    /// None: an app read found nothing new (nor did the resolver), so the
    /// catalog it would build is the one already sent.
    fn absorb(&mut self, result: Result<Fetched, FetchError>) -> Result<Option<Parsed>, String> {
        let unchanged = match result {
            // A full read always goes out (it is also what proves the source
            // alive); only app reads are skipped when they find nothing new.
            Ok(Fetched::All(changed)) => {
                self.have_apps = true;
                debug!(changed, "marathon: full read decoded in place");
                false
            }
            Ok(Fetched::Apps(list)) => !self.replace_apps(list) && !self.hosts_changed,
            Err(e) => {
                // A failed read may have left the set half refreshed: the
                // next read builds a catalog whatever it finds.
                self.apps
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .mark_dirty();
                return Err(e.to_string());
            }
        };
        if unchanged {
            return Ok(None);
        }
        self.hosts_changed = false;
        self.build_catalog().map(Some)
    }

    /// Puts what an app read found in place of what was kept for those ids;
    /// true if anything changed.
    fn replace_apps(&self, list: Vec<(String, OneRead)>) -> bool {
        let mut set = self.apps.lock().unwrap_or_else(|p| p.into_inner());
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
        changed
    }

    /// The catalog of the kept apps, with the latest host table (whose
    /// answers are then no longer news): the last one brought up to date by
    /// the apps that changed since, its services in `Parsed::services`.
    fn build_catalog(&mut self) -> Result<Parsed, String> {
        let hosts = self
            .host_changes
            .as_mut()
            .map(|r| r.borrow_and_update().clone())
            .unwrap_or_default();
        let mut set = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        set.update_catalog(&mut self.alloc, &hosts)
            .map_err(|e| e.to_string())
    }

    /// The first table waits (boundedly) for new agent names, so a restart
    /// does not withdraw their backends for a moment.
    async fn first_table_waits_for_names(
        &mut self,
        built: Result<Option<Parsed>, String>,
    ) -> Result<Option<Parsed>, String> {
        match (built, self.hosts.clone()) {
            (Ok(Some(parsed)), Some(h)) if !self.sent_first && !parsed.hosts.is_empty() => {
                h.want(parsed.hosts.clone());
                h.settled(FIRST_RESOLVE_WAIT).await;
                self.build_catalog().map(Some)
            }
            (built, _) => built,
        }
    }

    fn count_unchanged_read(
        &mut self,
        trigger: &Trigger,
        apps_read: Option<usize>,
        started: Instant,
    ) {
        self.fetch_backoff.reset();
        SourceStats::add(&self.stats.fetch_ok, 1);
        SourceStats::add(&self.stats.targeted, 1);
        debug!(
            trigger = trigger.label(),
            apps = apps_read.unwrap_or_default(),
            took_us = started.elapsed().as_micros() as u64,
            "marathon: apps read, nothing changed"
        );
    }

    /// A read built a catalog: the clocks restart from it, it is counted
    /// and sent.
    async fn send_read(
        &mut self,
        parsed: Parsed,
        trigger: Trigger,
        apps_read: Option<usize>,
        started: Instant,
        now: Instant,
    ) -> ControlFlow<()> {
        if let Some(h) = &self.hosts {
            h.want(parsed.hosts.clone());
        }
        self.sent_first = true;
        self.fetch_backoff.reset();
        self.resync_due = Some(now + self.timing.next_resync());
        // Never left without a stream nor a time to ask for one.
        if self.reconnect_due.is_none() && self.stream.is_none() && self.connecting.is_none() {
            self.reconnect_due = Some(now);
        }
        let warnings = parsed.warnings.len();
        self.log_warnings(&parsed.warnings, true);
        SourceStats::add(&self.stats.warnings, warnings as u64);
        SourceStats::add(&self.stats.fetch_ok, 1);
        if apps_read.is_some() {
            SourceStats::add(&self.stats.targeted, 1);
        }
        let update = Update {
            catalog: parsed.catalog,
            services: parsed.services,
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
        self.send(update).await
    }

    /// Logs a catalog's parser warnings, loudly only those the last catalog
    /// did not have (the others at debug level if `log_repeats`), and
    /// remembers them for the next.
    fn log_warnings(&mut self, warnings: &[Warning], log_repeats: bool) {
        let mut seen = HashSet::with_capacity(warnings.len());
        for w in warnings {
            let line = w.to_string();
            let app = w.app_id.as_deref().unwrap_or("-");
            if !self.last_warnings.contains(&line) {
                warn!(app, "marathon: {line}");
            } else if log_repeats {
                debug!(app, "marathon: {line}");
            }
            seen.insert(line);
        }
        self.last_warnings = seen;
    }

    /// Break once the receiver is gone: the source stops.
    async fn send(&mut self, update: Update) -> ControlFlow<()> {
        match self.tx.send(update).await {
            Ok(()) => Continue(()),
            Err(_) => Break(()),
        }
    }

    /// A read failed: nothing goes out (the agent keeps its last table), and
    /// everything is read again after a backoff.
    fn retry_after_failure(&mut self, trigger: Trigger, reason: String, now: Instant) {
        SourceStats::add(&self.stats.fetch_failed, 1);
        self.stats.last_failure.send_replace(Some(reason.clone()));
        let delay = self.fetch_backoff.next_delay();
        warn!(
            trigger = trigger.label(),
            retry_in_ms = delay.as_millis() as u64,
            "marathon: read failed, keeping the last table: {reason}"
        );
        let trigger = match self.pending.take() {
            Some(p) => trigger.merge(p.trigger),
            None => trigger,
        };
        // What failed may have been partly applied by Marathon meanwhile:
        // the retry reads everything.
        self.pending = Some(Pending {
            trigger,
            scope: Scope::All,
            due: Due::at(now + delay),
            backing_off: true,
        });
    }

    fn stream_item(&mut self, item: Option<Result<MarathonEvent, EventError>>) {
        let now = Instant::now();
        match item {
            Some(Ok(ev)) => {
                SourceStats::add(&self.stats.events_received, 1);
                self.on_event(ev, now);
            }
            Some(Err(EventError::Malformed {
                event_type,
                received_at,
                reason,
            })) => {
                SourceStats::add(&self.stats.events_received, 1);
                SourceStats::add(&self.stats.events_malformed, 1);
                warn!(event_type, "marathon: event data is not JSON ({reason})");
                // The type alone is signal enough: re-reading is always safe.
                let ev = MarathonEvent {
                    event_type,
                    data: serde_json::Value::Null,
                    received_at,
                };
                self.on_event(ev, now);
            }
            end => self.stream_lost(end, now),
        }
    }

    fn on_event(&mut self, ev: MarathonEvent, now: Instant) {
        if events::triggers_reread(&ev.event_type) {
            let scope = Scope::of_event(&ev);
            let trigger = Trigger::Event {
                event_type: ev.event_type,
                received_at: ev.received_at,
                events: 1,
            };
            let due = Due::window(now, &self.timing);
            Pending::add(&mut self.pending, trigger, scope, due);
        } else {
            debug!(event_type = ev.event_type, "marathon: event ignored");
        }
    }

    /// The stream ended (closed, failed, over a cap): reconnect after a
    /// backoff.
    fn stream_lost(&mut self, end: Option<Result<MarathonEvent, EventError>>, now: Instant) {
        self.stream = None;
        SourceStats::add(&self.stats.reconnects, 1);
        // A connection that held for a while was healthy: start over.
        if now - self.connected_at >= self.timing.backoff_cap {
            self.stream_backoff.reset();
        }
        let delay = self.stream_backoff.next_delay();
        self.reconnect_due = Some(now + delay);
        if matches!(end, Some(Err(EventError::TooLarge(_)))) {
            SourceStats::add(&self.stats.over_cap, 1);
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

    fn start_connect(&mut self) {
        self.reconnect_due = None;
        let api = self.api.clone();
        self.connecting = Some(Box::pin(async move { api.events().await }));
    }

    fn connect_finished(&mut self, result: Result<MarathonEvents, FetchError>) {
        self.connecting = None;
        let now = Instant::now();
        match result {
            Ok(stream) => self.stream_attached(stream, now),
            Err(e) => self.connect_failed(e, now),
        }
    }

    fn stream_attached(&mut self, stream: MarathonEvents, now: Instant) {
        self.stream = Some(stream);
        self.connected_at = now;
        if self.first_read_hold.take().is_none() {
            // Whatever happened while we were not listening: re-read.
            let due = Due::window(now, &self.timing);
            Pending::add(&mut self.pending, Trigger::Reconnect, Scope::All, due);
        }
        // Else the first read has not started: it sees it all.
    }

    fn connect_failed(&mut self, e: FetchError, now: Instant) {
        // No stream yet: the first read goes ahead without it.
        self.first_read_hold = None;
        SourceStats::add(&self.stats.reconnects, 1);
        let delay = self.stream_backoff.next_delay();
        self.reconnect_due = Some(now + delay);
        warn!(
            retry_in_ms = delay.as_millis() as u64,
            "marathon: event stream: {e}"
        );
    }

    fn hosts_answered(&mut self) {
        self.hosts_changed = true;
        self.hosts_rebuild_due
            .get_or_insert(Instant::now() + HOSTS_DEBOUNCE);
    }

    /// Agent names resolved or moved: the catalog again from the kept apps,
    /// without reading Marathon.
    async fn rebuild_for_hosts(&mut self) -> ControlFlow<()> {
        self.hosts_rebuild_due = None;
        if !self.have_apps || !self.hosts_changed {
            return Continue(()); // no table yet, or a read already used the answers
        }
        self.hosts_changed = false;
        let started = Instant::now();
        let parsed = match self.build_catalog() {
            Ok(parsed) => parsed,
            Err(e) => {
                warn!("marathon: rebuilding the catalog for agent hosts: {e}");
                return Continue(());
            }
        };
        let warnings = parsed.warnings.len();
        self.log_warnings(&parsed.warnings, false);
        debug!(
            took_us = started.elapsed().as_micros() as u64,
            "marathon: agent hosts changed, catalog rebuilt"
        );
        let update = Update {
            catalog: parsed.catalog,
            services: parsed.services,
            trigger: Trigger::Hosts,
            warnings,
            took: started.elapsed(),
            apps_read: Some(0),
        };
        self.send(update).await
    }

    fn sighup(&mut self) {
        info!("marathon: SIGHUP, re-reading every app");
        Pending::add(
            &mut self.pending,
            Trigger::Sighup,
            Scope::All,
            Due::at(Instant::now()),
        );
        if let Some(p) = self.pending.as_mut() {
            // Asked for now: not after a backoff, nor a debounce.
            p.due = Due::at(Instant::now());
            p.backing_off = false;
        }
    }

    fn resync(&mut self) {
        let now = Instant::now();
        self.resync_due = Some(now + self.timing.next_resync());
        // A read already on its way is as good as a resync.
        if self.inflight.is_none() && self.pending.is_none() {
            Pending::add(&mut self.pending, Trigger::Resync, Scope::All, Due::at(now));
        }
    }
}
