//! The Mesos source loop. Stream mode: subscribe, feed the RecordIO body to
//! [`MesosState`]; nothing is sent before SUBSCRIBED, then a catalog right
//! after the snapshot and after each change (debounced). A stream that is
//! cut, sends a bad record, or stays silent for 3 heartbeat intervals is
//! dropped and reconnected with backoff; the catalog already sent stays
//! until the next SUBSCRIBED, which replaces the state whole, except for
//! the last tasks of agents a newly elected master lists as recovered
//! ([`TaskParts`], for at most [`RECOVERY_WAIT`]). Poll mode:
//! `GET /master/state` every period; a failed read sends nothing.
//!
//! Each catalog carries the cluster for Mesos-DNS's cluster records: the
//! leader (`/master/state`'s `leader`, or the master the stream is held
//! from after any 307), the `--mesos` masters in order, the agents and the
//! frameworks, host names resolved like agent names.
use std::{collections::BTreeSet, sync::Arc, time::Duration};

use futures_util::StreamExt;
use tokio::{
    sync::{Notify, mpsc},
    time::Instant,
};
use tracing::{info, warn};

use super::sent::Sent;
pub use super::stats::MesosStats;
use super::{
    ClusterFacts, HostPort, args::MesosConfig, client::MesosClient, cluster::parse_host_port,
    stats::bump,
};
use crate::{
    hosts::{AgentAt, HostTable, resolver::Resolver},
    marathon::source::Backoff,
    mesos::{
        MesosState, Message, RecordIoDecoder, RecordIoError, TaskParts, Warning, WarningKind,
        catalog, decode_message, from_master_state, master_state::MasterState,
    },
    model::{Catalog, ServiceMap},
    naming::{NamingError, VipAllocator},
};

/// Mesos's default heartbeat interval, until SUBSCRIBED names one.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);
/// Longest wait for agent names before the first catalog.
const FIRST_RESOLVE_WAIT: Duration = Duration::from_secs(2);
const BACKOFF_BASE: Duration = Duration::from_millis(250);
const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// Longest a recovered agent's last tasks are carried over a master
/// failover: Mesos's default `--agent_reregister_timeout`, after which the
/// master gives up on the agent itself.
pub const RECOVERY_WAIT: Duration = Duration::from_secs(600);

/// A catalog for the agent's loop.
pub struct Update {
    pub catalog: Catalog,
    /// The services as the persistent map the parts keep (the catalog's
    /// copy of them is made by the agent's loop: `SourceEvent::Update`).
    pub services: Option<ServiceMap>,
    pub trigger: String,
    pub warnings: usize,
    /// When the first stream record of the change arrived (event → maps).
    pub received_at: Option<std::time::Instant>,
}

pub struct MesosSource {
    client: MesosClient,
    hosts: Option<Arc<Resolver>>,
    stats: Arc<MesosStats>,
    alloc: VipAllocator,
    sent_first: bool,
    last_sent: Option<Sent>,
    /// Woken by SIGHUP: subscribe (or poll) again now.
    reread: Arc<Notify>,
    /// When the last catalog after an event went out: the next one waits
    /// until a debounce window after it.
    last_event_catalog: Option<Instant>,
    /// The `--mesos` masters, in order (Mesos-DNS's `masters`).
    masters: Vec<HostPort>,
    /// The catalog's per-task parts, redone as tasks change; kept across
    /// connections to carry tasks over a master failover.
    parts: TaskParts,
}

/// A base URL's `host:port` (the scheme's default port when none is given).
fn url_host_port(u: &url::Url) -> Option<HostPort> {
    parse_host_port(&format!("{}:{}", u.host_str()?, u.port_or_known_default()?))
}

/// How one connection ended.
enum Ended {
    /// SUBSCRIBED was seen: the next attempt starts from a short delay.
    AfterSubscribed(String),
    Before(String),
    /// SIGHUP: subscribe again at once; not a failure.
    Reread,
    /// The agent's loop is gone.
    Stop,
}

impl MesosSource {
    pub fn new(cfg: MesosConfig) -> anyhow::Result<MesosSource> {
        let stats = Arc::<MesosStats>::default();
        Ok(MesosSource {
            masters: cfg.urls.iter().filter_map(url_host_port).collect(),
            client: MesosClient::new(cfg, stats.clone())?,
            hosts: None,
            stats,
            alloc: VipAllocator::new(),
            sent_first: false,
            last_sent: None,
            reread: Arc::default(),
            last_event_catalog: None,
            parts: TaskParts::default(),
        })
    }

    /// Notify it to subscribe (or poll) again at once, e.g. on SIGHUP.
    pub fn reread_handle(&self) -> Arc<Notify> {
        self.reread.clone()
    }

    /// Agents reported by host name get their address from `hosts`.
    pub fn with_hosts(mut self, hosts: Arc<Resolver>) -> MesosSource {
        self.hosts = Some(hosts);
        self
    }

    pub fn stats(&self) -> Arc<MesosStats> {
        self.stats.clone()
    }

    /// Runs until `tx` closes.
    pub async fn run(mut self, tx: mpsc::Sender<Update>) {
        let mut backoff = Backoff::new(BACKOFF_BASE, BACKOFF_CAP);
        let poll = self.client.config().poll;
        loop {
            let wait = match poll {
                Some(period) => match self.poll_once(&tx).await {
                    Ok(true) => period,
                    Ok(false) => return,
                    Err(e) => {
                        self.failed(format!("mesos /master/state: {e}"));
                        period
                    }
                },
                None => match self.stream_once(&tx).await {
                    Ended::Stop => return,
                    Ended::AfterSubscribed(e) => {
                        backoff.reset();
                        self.reconnect(e, &mut backoff)
                    }
                    Ended::Before(e) => self.reconnect(e, &mut backoff),
                    Ended::Reread => {
                        backoff.reset();
                        Duration::ZERO
                    }
                },
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.reread.notified() => info!("mesos: SIGHUP, reading again"),
            }
        }
    }

    fn reconnect(&self, why: String, backoff: &mut Backoff) -> Duration {
        bump(&self.stats.reconnects, 1);
        self.failed(format!("mesos stream: {why}"));
        backoff.next_delay()
    }

    fn failed(&self, why: String) {
        warn!("{why}; the table stays as it is");
        bump(&self.stats.failures, 1);
        self.stats.last_failure.send_replace(Some(why));
    }

    fn table(&self) -> Arc<HostTable> {
        self.hosts.as_ref().map(|h| h.table()).unwrap_or_default()
    }

    /// One `/master/state` read; Ok(false): the agent's loop is gone.
    async fn poll_once(&mut self, tx: &mpsc::Sender<Update>) -> Result<bool, String> {
        let body = self
            .client
            .master_state()
            .await
            .map_err(|e| e.to_string())?;
        let st: MasterState =
            serde_json::from_slice(&body).map_err(|e| format!("not a master state: {e}"))?;
        let mut snap = from_master_state(&st, &self.table());
        snap.cluster.masters = self.masters.clone();
        let wanted = snap.agents.values().filter_map(|a| match &a.host {
            Some(AgentAt::Name(n)) => Some(n.clone()),
            _ => None,
        });
        let wanted = wanted.chain(snap.cluster.wanted_hosts().cloned());
        if self.want_hosts(wanted.collect()).await {
            let cluster = snap.cluster;
            snap = from_master_state(&st, &self.table());
            snap.cluster = cluster;
        }
        bump(&self.stats.reads, 1);
        let built = catalog::catalog(snap.tasks.iter().map(|(k, v)| (k, v)), &mut self.alloc);
        self.send(built, &snap.cluster, snap.warnings, "mesos poll", None, tx)
            .await
    }

    /// Tells the resolver which names matter; true if the first catalog
    /// waited for their answers.
    async fn want_hosts(&self, names: BTreeSet<Arc<str>>) -> bool {
        let Some(h) = &self.hosts else { return false };
        let wait = !self.sent_first && !names.is_empty();
        h.want(names);
        if wait {
            h.settled(FIRST_RESOLVE_WAIT).await;
        }
        wait
    }

    /// Builds the catalog of `tasks` and sends it if it differs from the
    /// last one sent; Ok(false): the agent's loop is gone.
    async fn send(
        &mut self,
        built: Result<catalog::Built, NamingError>,
        cluster: &ClusterFacts,
        mut warnings: Vec<Warning>,
        trigger: &str,
        received_at: Option<std::time::Instant>,
        tx: &mpsc::Sender<Update>,
    ) -> Result<bool, String> {
        let mut built = built.map_err(|e| format!("allocating named VIP addresses: {e}"))?;
        built.catalog.cluster = Some(Arc::new(cluster.resolve(&self.table())));
        warnings.extend(built.warnings);
        self.count_warnings(&warnings);
        let services = built.services.as_ref();
        if let Some(sent) = &self.last_sent
            && sent.is(&built.catalog, services)
        {
            return Ok(true);
        }
        self.sent_first = true;
        self.last_sent = Some(Sent::new(&built.catalog, services));
        let update = Update {
            catalog: built.catalog,
            services: built.services,
            trigger: trigger.to_owned(),
            warnings: warnings.len(),
            received_at,
        };
        Ok(tx.send(update).await.is_ok())
    }

    fn count_warnings(&self, warnings: &[Warning]) {
        for w in warnings {
            warn!(kind = w.kind.as_str(), "mesos: {w}");
        }
        let tasks = warnings.iter().filter(|w| is_task(w.kind)).count();
        bump(&self.stats.skipped_tasks, tasks as u64);
    }
}

fn is_task(kind: WarningKind) -> bool {
    matches!(kind, WarningKind::SkippedTask | WarningKind::TaskField)
}

/// One subscription's state, while it lasts.
struct Conn {
    state: MesosState,
    decoder: RecordIoDecoder,
    subscribed: bool,
    /// When the debounced catalog is due.
    due: Option<Instant>,
    /// The first change since the last catalog: its type and arrival.
    first_change: Option<(&'static str, std::time::Instant)>,
    last_record: Instant,
    /// The master this stream comes from: the leader.
    leader: Option<HostPort>,
    /// When the tasks carried over a failover are dropped whatever happens.
    carried_until: Option<Instant>,
}

impl Conn {
    fn dead_at(&self) -> Instant {
        let hb = self.state.heartbeat_interval().unwrap_or(DEFAULT_HEARTBEAT);
        self.last_record + hb.saturating_mul(3)
    }
}

impl MesosSource {
    /// One subscription, until it fails or the agent's loop goes.
    async fn stream_once(&mut self, tx: &mpsc::Sender<Update>) -> Ended {
        let resp = match self.client.subscribe().await {
            Ok(r) => r,
            Err(e) => return Ended::Before(e.to_string()),
        };
        info!(master = %resp.url(), "mesos: subscribed to the operator API");
        let leader = url_host_port(resp.url());
        let mut body = resp.bytes_stream();
        let reread = self.reread.clone();
        let mut host_changes = self.hosts.as_ref().map(|h| h.subscribe());
        let mut c = Conn {
            state: MesosState::new(),
            decoder: RecordIoDecoder::new(self.client.config().max_record),
            subscribed: false,
            due: None,
            first_change: None,
            last_record: Instant::now(),
            leader,
            carried_until: None,
        };
        loop {
            let step = tokio::select! {
                chunk = body.next() => self.on_chunk(&mut c, chunk, tx).await,
                _ = tokio::time::sleep_until(c.dead_at()) => {
                    Err("no record for 3 heartbeat intervals".to_owned())
                }
                _ = sleep_opt(c.due) => self.on_due(&mut c, tx).await,
                _ = reread.notified() => {
                    info!("mesos: SIGHUP, subscribing again");
                    break Ended::Reread;
                }
                _ = sleep_opt(c.carried_until) => {
                    c.carried_until = None;
                    self.parts.drop_carried();
                    self.send_state(&mut c, "mesos recovery wait over", None, tx).await
                }
                _ = hosts_changed(&mut host_changes) => {
                    self.on_hosts(&mut c);
                    Ok(true)
                }
            };
            match step {
                Ok(true) => continue,
                Ok(false) => break Ended::Stop,
                Err(e) if c.subscribed => break Ended::AfterSubscribed(e),
                Err(e) => break Ended::Before(e),
            }
        }
    }

    async fn on_chunk(
        &mut self,
        c: &mut Conn,
        chunk: Option<reqwest::Result<bytes::Bytes>>,
        tx: &mpsc::Sender<Update>,
    ) -> Result<bool, String> {
        let bytes = match chunk {
            Some(Ok(b)) => b,
            Some(Err(e)) => return Err(format!("cut: {}", crate::marathon::client::describe(&e))),
            None => return Err("the master ended the stream".into()),
        };
        let records = c.decoder.feed(&bytes).map_err(|e| {
            if matches!(e, RecordIoError::TooLarge { .. }) {
                bump(&self.stats.oversized, 1);
            }
            e.to_string()
        })?;
        for rec in records {
            c.last_record = Instant::now();
            bump(&self.stats.events, 1);
            let msg = decode_message(&rec).map_err(|e| format!("bad record: {e}"))?;
            // A snapshot's bytes go before its state is built.
            drop(rec);
            if !self.on_message(c, msg, tx).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Applies one message; a SUBSCRIBED is sent at once, a change later.
    async fn on_message(
        &mut self,
        c: &mut Conn,
        msg: Message,
        tx: &mpsc::Sender<Update>,
    ) -> Result<bool, String> {
        let subscribed = matches!(msg, Message::Subscribed(_));
        let kind = msg.kind();
        let applied = c.state.apply(msg, &self.table());
        self.count_warnings(&applied.warnings);
        if subscribed {
            c.subscribed = true;
            c.due = None;
            c.first_change = None;
            bump(&self.stats.reads, 1);
            if self.want_hosts(self.wanted(c)).await {
                c.state.refresh_hosts(&self.table());
            }
            return self.send_state(c, "mesos SUBSCRIBED", None, tx).await;
        }
        if applied.changed && c.subscribed {
            c.first_change
                .get_or_insert_with(|| (kind, std::time::Instant::now()));
            let at = self.next_event_catalog();
            c.due.get_or_insert(at);
        }
        Ok(true)
    }

    /// When a change seen now goes out: at once (once the records already
    /// received are applied) unless a catalog went out less than a debounce
    /// window ago; then at the window's end, with whatever else came. A
    /// lone event waits for nothing, a burst gives one catalog per window.
    fn next_event_catalog(&self) -> Instant {
        let now = Instant::now();
        let window = self.client.config().debounce;
        self.last_event_catalog
            .map_or(now, |last| (last + window).max(now))
    }

    async fn on_due(&mut self, c: &mut Conn, tx: &mpsc::Sender<Update>) -> Result<bool, String> {
        c.due = None;
        self.last_event_catalog = Some(Instant::now());
        if let Some(h) = &self.hosts {
            h.want(self.wanted(c));
        }
        match c.first_change.take() {
            Some((kind, at)) => self.send_state(c, kind, Some(at), tx).await,
            None => self.send_state(c, "mesos agent address", None, tx).await,
        }
    }

    /// A newer host table: agents move, and cluster records may resolve
    /// anew (an unchanged catalog is not sent again).
    fn on_hosts(&mut self, c: &mut Conn) {
        c.state.refresh_hosts(&self.table());
        if c.subscribed {
            c.due.get_or_insert_with(Instant::now);
        }
    }

    /// The stream's cluster: the state's agents and frameworks, the
    /// leader it is held from, the configured masters.
    fn cluster(&self, c: &Conn) -> ClusterFacts {
        ClusterFacts {
            leader: c.leader.clone(),
            masters: self.masters.clone(),
            ..c.state.cluster_facts()
        }
    }

    /// Every name the stream's catalog needs resolved.
    fn wanted(&self, c: &Conn) -> BTreeSet<Arc<str>> {
        let cluster = self.cluster(c);
        let extra: Vec<Arc<str>> = cluster.wanted_hosts().cloned().collect();
        c.state.wanted_hosts().map(Arc::from).chain(extra).collect()
    }

    /// The catalog of the state: only the tasks changed since the last one
    /// are redone.
    async fn send_state(
        &mut self,
        c: &mut Conn,
        trigger: &str,
        received_at: Option<std::time::Instant>,
        tx: &mpsc::Sender<Update>,
    ) -> Result<bool, String> {
        let changes = c.state.take_changes();
        self.parts.follow(&c.state, changes);
        if c.carried_until.is_none() && self.parts.carried() > 0 {
            c.carried_until = Some(Instant::now() + RECOVERY_WAIT);
        }
        let built = self.parts.catalog(&mut self.alloc);
        let cluster = self.cluster(c);
        self.send(built, &cluster, Vec::new(), trigger, received_at, tx)
            .await
    }
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn hosts_changed(rx: &mut Option<tokio::sync::watch::Receiver<Arc<HostTable>>>) {
    let Some(rx) = rx else {
        return std::future::pending().await;
    };
    if rx.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
#[path = "source_tests.rs"]
mod tests;
