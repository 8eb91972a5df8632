//! The Mesos source loop. Stream mode: subscribe, feed the RecordIO body to
//! [`MesosState`]; nothing is sent before SUBSCRIBED, then a catalog right
//! after the snapshot and after each change (debounced). A stream that is
//! cut, sends a bad record, or stays silent for 3 heartbeat intervals is
//! dropped and reconnected with backoff; the catalog already sent stays
//! until the next SUBSCRIBED, which replaces the state whole, except for
//! the last tasks of agents a newly elected master lists as recovered
//! ([`Carried`], for at most [`RECOVERY_WAIT`]). Poll mode:
//! `GET /master/state` every period; a failed read sends nothing.
use std::{
    collections::BTreeSet,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::StreamExt;
use tokio::{sync::mpsc, time::Instant};
use tracing::{info, warn};

use super::{args::MesosConfig, client::MesosClient};
use crate::{
    hosts::{AgentAt, HostTable, resolver::Resolver},
    marathon::source::Backoff,
    mesos::{
        Carried, MesosState, Message, RecordIoDecoder, TaskKey, TaskView, Warning, WarningKind,
        catalog, decode_message, from_master_state, master_state::MasterState,
    },
    model::Catalog,
    naming::VipAllocator,
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

/// Counters for /metrics. Monotonic.
#[derive(Debug, Default)]
pub struct MesosStats {
    /// Catalogs built from a whole snapshot (SUBSCRIBED or /master/state).
    pub reads: AtomicU64,
    /// Stream records decoded (SUBSCRIBED, events, heartbeats).
    pub events: AtomicU64,
    pub reconnects: AtomicU64,
    /// Failed connections, streams and reads.
    pub failures: AtomicU64,
    /// Tasks (or task fields) skipped with a warning.
    pub skipped_tasks: AtomicU64,
    /// Why the last attempt failed (the agent's loop is told).
    pub last_failure: tokio::sync::watch::Sender<Option<String>>,
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// A catalog for the agent's loop.
pub struct Update {
    pub catalog: Catalog,
    pub trigger: String,
    pub warnings: usize,
}

pub struct MesosSource {
    client: MesosClient,
    hosts: Option<Arc<Resolver>>,
    stats: Arc<MesosStats>,
    alloc: VipAllocator,
    sent_first: bool,
    last_sent: Option<Catalog>,
    /// The tasks of the last catalog sent from the stream.
    last_tasks: Vec<(TaskKey, TaskView)>,
}

/// How one connection ended.
enum Ended {
    /// SUBSCRIBED was seen: the next attempt starts from a short delay.
    AfterSubscribed(String),
    Before(String),
    /// The agent's loop is gone.
    Stop,
}

impl MesosSource {
    pub fn new(cfg: MesosConfig) -> anyhow::Result<MesosSource> {
        Ok(MesosSource {
            client: MesosClient::new(cfg)?,
            hosts: None,
            stats: Arc::default(),
            alloc: VipAllocator::new(),
            sent_first: false,
            last_sent: None,
            last_tasks: Vec::new(),
        })
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
                },
            };
            tokio::time::sleep(wait).await;
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
        let wanted = snap.agents.values().filter_map(|a| match &a.host {
            Some(AgentAt::Name(n)) => Some(n.clone()),
            _ => None,
        });
        if self.want_hosts(wanted.collect()).await {
            snap = from_master_state(&st, &self.table());
        }
        bump(&self.stats.reads, 1);
        let tasks: Vec<_> = snap.tasks;
        self.send(tasks, snap.warnings, "mesos poll", tx).await
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
        tasks: Vec<(TaskKey, TaskView)>,
        mut warnings: Vec<Warning>,
        trigger: &str,
        tx: &mpsc::Sender<Update>,
    ) -> Result<bool, String> {
        let built = catalog::catalog(tasks.iter().map(|(k, v)| (k, v)), &mut self.alloc)
            .map_err(|e| format!("allocating named VIP addresses: {e}"))?;
        warnings.extend(built.warnings);
        self.count_warnings(&warnings);
        if self.last_sent.as_ref() == Some(&built.catalog) {
            return Ok(true);
        }
        self.sent_first = true;
        self.last_sent = Some(built.catalog.clone());
        let update = Update {
            catalog: built.catalog,
            trigger: trigger.to_owned(),
            warnings: warnings.len(),
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
    last_record: Instant,
    carried: Carried,
    /// When the carried tasks are dropped whatever happens.
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
        info!("mesos: subscribed to the operator API");
        let mut body = resp.bytes_stream();
        let mut host_changes = self.hosts.as_ref().map(|h| h.subscribe());
        let mut c = Conn {
            state: MesosState::new(),
            decoder: RecordIoDecoder::new(self.client.config().max_record),
            subscribed: false,
            due: None,
            last_record: Instant::now(),
            carried: Carried::default(),
            carried_until: None,
        };
        loop {
            let step = tokio::select! {
                chunk = body.next() => self.on_chunk(&mut c, chunk, tx).await,
                _ = tokio::time::sleep_until(c.dead_at()) => {
                    Err("no record for 3 heartbeat intervals".to_owned())
                }
                _ = sleep_opt(c.due) => self.on_due(&mut c, tx).await,
                _ = sleep_opt(c.carried_until) => {
                    (c.carried, c.carried_until) = (Carried::default(), None);
                    self.send_state(&c, "mesos recovery wait over", tx).await
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
            Some(Err(e)) => return Err(format!("cut: {}", super::client::describe(&e))),
            None => return Err("the master ended the stream".into()),
        };
        let records = c.decoder.feed(&bytes).map_err(|e| e.to_string())?;
        for rec in records {
            c.last_record = Instant::now();
            bump(&self.stats.events, 1);
            let msg = decode_message(&rec).map_err(|e| format!("bad record: {e}"))?;
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
        let applied = c.state.apply(msg, &self.table());
        self.count_warnings(&applied.warnings);
        if subscribed {
            c.subscribed = true;
            c.due = None;
            bump(&self.stats.reads, 1);
            c.carried = Carried::from_last(&self.last_tasks, &c.state);
            c.carried_until = (!c.carried.is_empty()).then(|| Instant::now() + RECOVERY_WAIT);
            let names = c.state.wanted_hosts().map(Arc::from).collect();
            if self.want_hosts(names).await {
                c.state.refresh_hosts(&self.table());
            }
            return self.send_state(c, "mesos SUBSCRIBED", tx).await;
        }
        if applied.changed && c.subscribed {
            let debounce = self.client.config().debounce;
            c.due.get_or_insert_with(|| Instant::now() + debounce);
        }
        Ok(true)
    }

    async fn on_due(&mut self, c: &mut Conn, tx: &mpsc::Sender<Update>) -> Result<bool, String> {
        c.due = None;
        if let Some(h) = &self.hosts {
            h.want(c.state.wanted_hosts().map(Arc::from).collect());
        }
        self.send_state(c, "mesos event", tx).await
    }

    fn on_hosts(&mut self, c: &mut Conn) {
        if c.state.refresh_hosts(&self.table()).changed && c.subscribed {
            c.due.get_or_insert_with(Instant::now);
        }
    }

    async fn send_state(
        &mut self,
        c: &Conn,
        trigger: &str,
        tx: &mpsc::Sender<Update>,
    ) -> Result<bool, String> {
        let tasks = c.carried.with_state(&c.state);
        self.last_tasks = tasks.clone();
        self.send(tasks, Vec::new(), trigger, tx).await
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
