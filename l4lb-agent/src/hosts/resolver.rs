//! Keeps a [`HostTable`] of agent host names fresh, in the background.
//!
//! The source says which names it needs ([`Resolver::want`]); each new name
//! is looked up at once (at most [`CONCURRENCY`] at a time), then again when
//! its answer's TTL runs out (held between [`MIN_REFRESH`] and
//! [`MAX_REFRESH`]); failures are retried with a backoff up to
//! [`MAX_RETRY`]. A refresh that fails keeps the last good address. Every
//! change is published as a new snapshot: the source rebuilds its catalog
//! from it, no apply ever waits for a lookup.
use std::{
    collections::{BTreeSet, HashMap},
    future::Future,
    net::IpAddr,
    path::Path,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::{StreamExt, stream::FuturesUnordered};
use tokio::{sync::watch, time::Instant};
use tracing::{debug, info, warn};

use super::{HostState, HostTable, pick_agent_addr};

/// Lookups in flight at once.
pub const CONCURRENCY: usize = 8;
/// Names followed at once; more are marked failed, not looked up.
pub const MAX_NAMES: usize = 16_384;
/// A TTL shorter than this is refreshed this often (a TTL of 0 would be a
/// lookup per catalog).
pub const MIN_REFRESH: Duration = Duration::from_secs(5);
/// An answer is looked up again after this at the latest.
pub const MAX_REFRESH: Duration = Duration::from_secs(300);
/// First retry after a failure; doubles up to [`MAX_RETRY`].
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
pub const MAX_RETRY: Duration = Duration::from_secs(60);

/// One name → its addresses and how long they hold.
pub trait Lookup: Send + Sync + 'static {
    fn lookup(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<(Vec<IpAddr>, Duration), String>> + Send;
}

/// Lookups through hickory with the node's resolver configuration.
pub struct HickoryLookup(hickory_resolver::TokioResolver);

impl HickoryLookup {
    /// Reads `resolv_conf` (nameservers, search domains, options); /etc/hosts
    /// is consulted first, as the system resolver does.
    pub fn from_resolv_conf(resolv_conf: &Path) -> anyhow::Result<HickoryLookup> {
        use anyhow::Context;
        use hickory_resolver::{Resolver, name_server::TokioConnectionProvider};
        let text = std::fs::read(resolv_conf)
            .with_context(|| format!("reading {}", resolv_conf.display()))?;
        let (config, mut opts) = hickory_resolver::system_conf::parse_resolv_conf(text)
            .with_context(|| format!("parsing {}", resolv_conf.display()))?;
        // An agent name answers in well under a second or not at all: do not
        // hold a retry slot for long.
        opts.timeout = opts.timeout.min(Duration::from_secs(2));
        opts.attempts = opts.attempts.min(2);
        let mut b = Resolver::builder_with_config(config, TokioConnectionProvider::default());
        *b.options_mut() = opts;
        Ok(HickoryLookup(b.build()))
    }

    /// No nameserver: /etc/hosts (and `localhost`) only.
    pub fn hosts_file_only() -> HickoryLookup {
        use hickory_resolver::{
            Resolver, config::ResolverConfig, name_server::TokioConnectionProvider,
        };
        let b = Resolver::builder_with_config(
            ResolverConfig::new(),
            TokioConnectionProvider::default(),
        );
        HickoryLookup(b.build())
    }
}

impl Lookup for HickoryLookup {
    async fn lookup(&self, name: &str) -> Result<(Vec<IpAddr>, Duration), String> {
        let answer = self.0.lookup_ip(name).await.map_err(|e| e.to_string())?;
        let ttl = answer
            .valid_until()
            .saturating_duration_since(std::time::Instant::now());
        Ok((answer.iter().collect(), ttl))
    }
}

/// Counters for /metrics.
#[derive(Debug, Default)]
pub struct HostStats {
    pub lookups: AtomicU64,
    pub failures: AtomicU64,
    /// Gauges, as of the last published table.
    pub resolved: AtomicU64,
    pub unresolved: AtomicU64,
}

/// The running resolver's handle; dropping it stops the resolver.
pub struct Resolver {
    want: watch::Sender<BTreeSet<Arc<str>>>,
    table: watch::Receiver<Arc<HostTable>>,
    stats: Arc<HostStats>,
}

impl Resolver {
    /// Starts the background task (on the current tokio runtime).
    pub fn spawn<L: Lookup>(lookup: L) -> Resolver {
        let (want, want_rx) = watch::channel(BTreeSet::new());
        let (table_tx, table) = watch::channel(Arc::new(HostTable::default()));
        let stats = Arc::<HostStats>::default();
        tokio::spawn(run(Arc::new(lookup), want_rx, table_tx, stats.clone()));
        Resolver { want, table, stats }
    }

    /// The names the catalog needs now; names no longer in it are dropped.
    pub fn want(&self, names: BTreeSet<Arc<str>>) {
        self.want.send_if_modified(|w| {
            let changed = *w != names;
            *w = names;
            changed
        });
    }

    /// The latest snapshot.
    pub fn table(&self) -> Arc<HostTable> {
        self.table.borrow().clone()
    }

    /// Changes whenever the snapshot does.
    pub fn subscribe(&self) -> watch::Receiver<Arc<HostTable>> {
        self.table.clone()
    }

    pub fn stats(&self) -> Arc<HostStats> {
        self.stats.clone()
    }

    /// Waits, at most `bound`, until every wanted name has an answer (good
    /// or bad). For the first catalog only: later ones never wait.
    pub async fn settled(&self, bound: Duration) {
        let mut rx = self.table.clone();
        let wanted = self.want.borrow().clone();
        let done = |t: &HostTable| {
            wanted
                .iter()
                .all(|n| !matches!(t.get(n), None | Some(HostState::Pending)))
        };
        let _ = tokio::time::timeout(bound, rx.wait_for(|t| done(t))).await;
    }
}

/// One name's schedule.
struct Entry {
    due: Instant,
    failures: u32,
    inflight: bool,
}

type Answer = (Arc<str>, Result<(Vec<IpAddr>, Duration), String>);
type Inflight = FuturesUnordered<Pin<Box<dyn Future<Output = Answer> + Send>>>;

async fn run<L: Lookup>(
    lookup: Arc<L>,
    mut want: watch::Receiver<BTreeSet<Arc<str>>>,
    publish: watch::Sender<Arc<HostTable>>,
    stats: Arc<HostStats>,
) {
    let mut entries: HashMap<Arc<str>, Entry> = HashMap::new();
    let mut table = HostTable::default();
    let mut inflight: Inflight = FuturesUnordered::new();
    loop {
        start_due(&lookup, &mut entries, &mut inflight, &stats);
        let next_due = (inflight.len() < CONCURRENCY)
            .then(|| {
                entries
                    .values()
                    .filter(|e| !e.inflight)
                    .map(|e| e.due)
                    .min()
            })
            .flatten();

        tokio::select! {
            changed = want.changed() => {
                if changed.is_err() {
                    return; // the handle is gone
                }
                let names = want.borrow_and_update().clone();
                // New names are pending and gone ones unused: no catalog
                // changes until an answer comes, so nothing is published.
                let over_cap = follow(&names, &mut entries, &mut table, Instant::now());
                count(&table, &stats);
                if over_cap {
                    publish.send_replace(Arc::new(table.clone()));
                }
            }
            Some((name, answer)) = inflight.next(), if !inflight.is_empty() => {
                if take_answer(&name, answer, &mut entries, &mut table, &stats) {
                    publish.send_replace(Arc::new(table.clone()));
                }
            }
            _ = sleep_until(next_due) => {}
        }
    }
}

/// Starts the lookups that are due, the longest due first, up to the
/// concurrency cap.
fn start_due<L: Lookup>(
    lookup: &Arc<L>,
    entries: &mut HashMap<Arc<str>, Entry>,
    inflight: &mut Inflight,
    stats: &HostStats,
) {
    let now = Instant::now();
    let mut due: Vec<(Instant, Arc<str>)> = entries
        .iter()
        .filter(|(_, e)| !e.inflight && e.due <= now)
        .map(|(n, e)| (e.due, n.clone()))
        .collect();
    due.sort();
    for (_, name) in due
        .into_iter()
        .take(CONCURRENCY.saturating_sub(inflight.len()))
    {
        if let Some(e) = entries.get_mut(&name) {
            e.inflight = true;
        }
        stats.lookups.fetch_add(1, Ordering::Relaxed);
        let lookup = lookup.clone();
        inflight.push(Box::pin(async move {
            let r = lookup.lookup(&name).await;
            (name, r)
        }));
    }
}

/// Records a lookup's answer; true if what a catalog sees of the name (the
/// address, or why there is none) changed: a refresh that changes nothing
/// is not news.
fn take_answer(
    name: &Arc<str>,
    answer: Result<(Vec<IpAddr>, Duration), String>,
    entries: &mut HashMap<Arc<str>, Entry>,
    table: &mut HostTable,
    stats: &HostStats,
) -> bool {
    let Some(e) = entries.get_mut(name) else {
        return false; // no longer wanted
    };
    e.inflight = false;
    let before = table.get(name).cloned();
    let after = settle(name, answer, e, before.as_ref(), stats);
    let seen_before = visible(table, name);
    table.set(name.clone(), after);
    count(table, stats);
    visible(table, name) != seen_before
}

/// What a catalog sees of a name: its address, or why it has none.
fn visible(table: &HostTable, name: &str) -> Result<IpAddr, String> {
    match table.lookup(name) {
        super::Lookup::Addr(a) => Ok(a),
        super::Lookup::Missing(why) => Err(why.to_string()),
    }
}

/// Brings the schedule in line with the wanted names. True if names over
/// [`MAX_NAMES`] were marked failed (news for the catalog).
fn follow(
    names: &BTreeSet<Arc<str>>,
    entries: &mut HashMap<Arc<str>, Entry>,
    table: &mut HostTable,
    now: Instant,
) -> bool {
    let mut over_cap = false;
    entries.retain(|n, _| names.contains(n));
    let gone: Vec<Arc<str>> = table
        .names()
        .map(|(n, _)| n.clone())
        .filter(|n| !names.contains(n))
        .collect();
    for n in &gone {
        table.remove(n);
    }
    for (i, name) in names.iter().enumerate() {
        if table.get(name).is_some() {
            continue;
        }
        if i >= MAX_NAMES {
            let why = format!("more than {MAX_NAMES} agent host names: not looked up");
            table.set(name.clone(), HostState::Failed(why));
            over_cap = true;
        } else {
            entries.insert(
                name.clone(),
                Entry {
                    due: now,
                    failures: 0,
                    inflight: false,
                },
            );
            table.set(name.clone(), HostState::Pending);
        }
    }
    over_cap
}

/// One answer → the name's new state and next due time.
fn settle(
    name: &str,
    answer: Result<(Vec<IpAddr>, Duration), String>,
    e: &mut Entry,
    before: Option<&HostState>,
    stats: &HostStats,
) -> HostState {
    let now = Instant::now();
    let answer = answer.and_then(|(addrs, ttl)| {
        pick_agent_addr(addrs)
            .map(|a| (a, ttl))
            .ok_or_else(|| "no address in the answer".to_owned())
    });
    match answer {
        Ok((addr, ttl)) => {
            e.failures = 0;
            e.due = now + ttl.clamp(MIN_REFRESH, MAX_REFRESH);
            match before {
                Some(HostState::Resolved { addr: old, .. }) if *old != addr => {
                    info!("agent host {name}: now {addr} (was {old})");
                }
                Some(HostState::Resolved { .. }) => {}
                _ => debug!("agent host {name}: {addr}"),
            }
            HostState::Resolved { addr, stale: None }
        }
        Err(why) => {
            stats.failures.fetch_add(1, Ordering::Relaxed);
            e.failures = e.failures.saturating_add(1);
            let retry = FIRST_RETRY
                .saturating_mul(1 << e.failures.saturating_sub(1).min(16))
                .min(MAX_RETRY);
            e.due = now + retry;
            match before {
                Some(HostState::Resolved { addr, .. }) => {
                    warn!(
                        "agent host {name}: refresh failed ({why}); keeping {addr}, retry in {}s",
                        retry.as_secs()
                    );
                    HostState::Resolved {
                        addr: *addr,
                        stale: Some(why),
                    }
                }
                _ => HostState::Failed(why),
            }
        }
    }
}

/// The gauges, from the table.
fn count(table: &HostTable, stats: &HostStats) {
    let resolved = table
        .names()
        .filter(|(_, s)| matches!(s, HostState::Resolved { .. }))
        .count();
    stats.resolved.store(resolved as u64, Ordering::Relaxed);
    stats
        .unresolved
        .store((table.len() - resolved) as u64, Ordering::Relaxed);
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    type Answers = HashMap<String, Result<(Vec<IpAddr>, Duration), String>>;

    /// Answers from a table the test edits; records every lookup.
    #[derive(Clone, Default)]
    struct Fake {
        answers: Arc<Mutex<Answers>>,
        asked: Arc<Mutex<Vec<String>>>,
    }

    impl Fake {
        fn set(&self, name: &str, a: Result<(&[&str], u64), &str>) {
            let a = a
                .map(|(ips, ttl)| {
                    let ips = ips.iter().map(|s| s.parse().unwrap()).collect();
                    (ips, Duration::from_secs(ttl))
                })
                .map_err(str::to_owned);
            self.answers.lock().unwrap().insert(name.to_owned(), a);
        }
        fn asked(&self, name: &str) -> usize {
            self.asked
                .lock()
                .unwrap()
                .iter()
                .filter(|n| *n == name)
                .count()
        }
    }

    impl Lookup for Fake {
        async fn lookup(&self, name: &str) -> Result<(Vec<IpAddr>, Duration), String> {
            self.asked.lock().unwrap().push(name.to_owned());
            tokio::time::sleep(Duration::from_millis(10)).await;
            self.answers
                .lock()
                .unwrap()
                .get(name)
                .cloned()
                .unwrap_or_else(|| Err("NXDOMAIN".to_owned()))
        }
    }

    fn names(n: &[&str]) -> BTreeSet<Arc<str>> {
        n.iter().map(|s| Arc::from(*s)).collect()
    }

    fn addr(r: &Resolver, name: &str) -> Option<IpAddr> {
        match r.table().get(name) {
            Some(HostState::Resolved { addr, .. }) => Some(*addr),
            _ => None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn names_resolve_in_the_background_and_follow_their_ttl() {
        let fake = Fake::default();
        fake.set("a.example", Ok((&["fd00::1", "198.18.0.1"], 30)));
        let r = Resolver::spawn(fake.clone());
        let mut changes = r.subscribe();
        r.want(names(&["a.example"]));
        r.settled(Duration::from_secs(5)).await;
        assert_eq!(addr(&r, "a.example"), Some("198.18.0.1".parse().unwrap()));
        assert_eq!(fake.asked("a.example"), 1);

        // Nothing changes before the TTL; the refresh after it sees the move.
        fake.set("a.example", Ok((&["198.18.0.9"], 30)));
        tokio::time::sleep(Duration::from_secs(29)).await;
        assert_eq!(fake.asked("a.example"), 1);
        changes.borrow_and_update();
        tokio::time::timeout(Duration::from_secs(5), changes.changed())
            .await
            .expect("a refresh after the TTL")
            .unwrap();
        assert_eq!(addr(&r, "a.example"), Some("198.18.0.9".parse().unwrap()));
        assert_eq!(fake.asked("a.example"), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_ttl_is_not_a_lookup_loop() {
        let fake = Fake::default();
        fake.set("a.example", Ok((&["198.18.0.1"], 0)));
        let r = Resolver::spawn(fake.clone());
        r.want(names(&["a.example"]));
        tokio::time::sleep(Duration::from_secs(60)).await;
        let n = fake.asked("a.example");
        assert!((12..=13).contains(&n), "{n} lookups in 60 s");
    }

    #[tokio::test(start_paused = true)]
    async fn failures_retry_with_backoff_and_keep_the_last_good_address() {
        let fake = Fake::default();
        let r = Resolver::spawn(fake.clone());
        r.want(names(&["gone.example", "flaky.example"]));
        fake.set("flaky.example", Ok((&["198.18.0.2"], 10)));
        r.settled(Duration::from_secs(5)).await;
        assert_eq!(
            r.table().get("gone.example"),
            Some(&HostState::Failed("NXDOMAIN".into()))
        );
        assert_eq!(r.stats().failures.load(Ordering::Relaxed), 1);

        // Retries at 1, 2, 4, 8, 16 s after the failures: 6 lookups by ~32 s.
        tokio::time::sleep(Duration::from_secs(32)).await;
        assert_eq!(fake.asked("gone.example"), 6);

        // The flaky name's refresh fails: its address stays, and since a
        // catalog sees nothing new, nothing is published.
        let mut changes = r.subscribe();
        changes.borrow_and_update();
        let failures = r.stats().failures.load(Ordering::Relaxed);
        fake.set("flaky.example", Err("timed out"));
        tokio::time::sleep(Duration::from_secs(15)).await;
        assert!(r.stats().failures.load(Ordering::Relaxed) > failures + 1);
        assert_eq!(
            r.table().lookup("flaky.example"),
            super::super::Lookup::Addr("198.18.0.2".parse().unwrap())
        );
        // Back, at a new address: published.
        fake.set("flaky.example", Ok((&["198.18.0.3"], 10)));
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(changes.has_changed().unwrap());
        assert_eq!(
            r.table().get("flaky.example"),
            Some(&HostState::Resolved {
                addr: "198.18.0.3".parse().unwrap(),
                stale: None
            })
        );
        assert_eq!(r.stats().resolved.load(Ordering::Relaxed), 1);
        assert_eq!(r.stats().unresolved.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn names_no_longer_wanted_are_dropped_and_lookups_are_bounded() {
        let fake = Fake::default();
        let r = Resolver::spawn(fake.clone());
        let many: Vec<String> = (0..50).map(|i| format!("h{i:02}.example")).collect();
        for n in &many {
            fake.set(n, Ok((&["198.18.1.1"], 300)));
        }
        r.want(many.iter().map(|s| Arc::from(s.as_str())).collect());
        r.settled(Duration::from_secs(5)).await;
        assert_eq!(r.table().len(), 50);
        assert_eq!(r.stats().resolved.load(Ordering::Relaxed), 50);
        // 8 at a time, 10 ms each: 7 rounds, one lookup per name.
        assert_eq!(fake.asked.lock().unwrap().len(), 50);

        r.want(names(&["h00.example"]));
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(r.stats().resolved.load(Ordering::Relaxed), 1);
        assert_eq!(r.stats().unresolved.load(Ordering::Relaxed), 0);
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert_eq!(
            fake.asked("h01.example"),
            1,
            "a dropped name is not refreshed"
        );
        assert_eq!(fake.asked("h00.example"), 3);
    }

    /// dcos-net's `dns_hostname_test` (`dcos_net_mesos_listener_tests.erl`):
    /// an agent registered as `localhost` is 127.0.0.1, through the real
    /// resolver (RFC 6761: answered locally, no query leaves the process).
    #[tokio::test]
    async fn localhost_is_127_0_0_1_through_hickory() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("resolv.conf");
        std::fs::write(
            &conf,
            "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
        )
        .unwrap();
        let lookup = HickoryLookup::from_resolv_conf(&conf).unwrap();
        let (addrs, _ttl) = lookup.lookup("localhost").await.unwrap();
        assert_eq!(pick_agent_addr(addrs), Some("127.0.0.1".parse().unwrap()));
        let e = HickoryLookup::from_resolv_conf(&dir.path().join("missing")).err();
        assert!(format!("{:#}", e.unwrap()).contains("reading"));
    }

    #[tokio::test(start_paused = true)]
    async fn settled_is_bounded_when_the_resolver_hangs() {
        struct Hang;
        impl Lookup for Hang {
            async fn lookup(&self, _: &str) -> Result<(Vec<IpAddr>, Duration), String> {
                std::future::pending().await
            }
        }
        let r = Resolver::spawn(Hang);
        r.want(names(&["a.example"]));
        let t = Instant::now();
        r.settled(Duration::from_secs(2)).await;
        assert_eq!(t.elapsed(), Duration::from_secs(2));
        assert_eq!(
            r.table().lookup("a.example"),
            super::super::Lookup::Missing(super::super::Missing::Pending)
        );
        assert_eq!(r.stats().unresolved.load(Ordering::Relaxed), 1);
    }
}
