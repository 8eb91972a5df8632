//! The agent's probes of TCP backends down for this node (`--health-probes
//! agent`, the default): while the kernel says a backend is down
//! (`L4LB_HEALTH`), this loop connects to it from the agent's own process —
//! outside the hooked cgroup, so no hook rewrites or observes it — on the
//! schedule of `l4lb_common::probe` (first when the kernel's 2 s back-off
//! ends, then doubling to 30 s per failure), one probe in flight per backend,
//! each bounded by [`AGENT_PROBE_TIMEOUT_NS`]. An answer is written to
//! `L4LB_PROBES` (this loop is its only writer), which the kernel rules read:
//! the backend is up for this node again, and no client connection was ever
//! risked on it. UDP backends are never down (no handshake to observe), so
//! they are never probed.
//!
//! Its own task: the apply loop only publishes the backends it applied, and
//! each tick reads at most [`READS_PER_TICK`] health entries.
use std::{collections::HashSet, net::SocketAddr, ops::Bound, time::Duration};

use imbl::ordmap::DiffItem;
use l4lb_common::{AGENT_PROBE_TIMEOUT_NS, ProbeStep};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::datapath::{health::monotonic_ns, probe_maps::ProbeMaps};

/// Backend id → address, as the maps hold it (the applied table's backends).
pub type Backends = crate::plan::BackendAddrs;

/// How often the loop looks at the health entries.
const TICK: Duration = Duration::from_millis(100);
/// Health entries read per tick, round robin over the backends: a bounded
/// number of map reads however large the table (a full pass over 65,536
/// backends takes 6.4 s; every table up to 1,024 backends, every tick).
const READS_PER_TICK: usize = 1024;
/// Probes in flight at once, over all backends.
const MAX_IN_FLIGHT: usize = 64;

/// A probe's result: backend id, the address probed, answered or not.
type Outcome = (u32, SocketAddr, bool);

pub struct Prober {
    maps: ProbeMaps,
    backends: watch::Receiver<Backends>,
    /// The backends the marks belong to; an id given to another address gets a fresh mark.
    known: Backends,
    /// Where the last tick's reads stopped.
    cursor: u32,
    in_flight: HashSet<u32>,
    done_tx: mpsc::Sender<Outcome>,
    done_rx: mpsc::Receiver<Outcome>,
}

/// Starts the probe loop on its own task.
pub fn spawn(maps: ProbeMaps, mut backends: watch::Receiver<Backends>) {
    let (done_tx, done_rx) = mpsc::channel(MAX_IN_FLIGHT);
    // The table adopted at start keeps its pinned marks (an agent restart).
    let known = backends.borrow_and_update().clone();
    let prober = Prober {
        maps,
        backends,
        known,
        cursor: 0,
        in_flight: HashSet::new(),
        done_tx,
        done_rx,
    };
    tokio::spawn(prober.run());
}

impl Prober {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.tick(),
                Some((id, addr, answered)) = self.done_rx.recv() => self.record(id, addr, answered),
            }
        }
    }

    fn tick(&mut self) {
        if self.backends.has_changed().unwrap_or(false) {
            let now = self.backends.borrow_and_update().clone();
            self.follow(now);
        }
        let now = monotonic_ns();
        let batch = next_batch(&self.known, self.cursor, READS_PER_TICK);
        let ids: Vec<u32> = batch.iter().map(|(id, _)| *id).collect();
        let down = self.maps.down_until(&ids);
        for ((id, addr), down_until) in batch.into_iter().zip(down) {
            self.cursor = id;
            if down_until == 0 || self.in_flight.contains(&id) {
                continue;
            }
            if self.in_flight.len() >= MAX_IN_FLIGHT {
                break;
            }
            if let Err(e) = self.consider(id, addr, down_until, now) {
                warn!(backend = %addr, "health probe: {e:#}");
            }
        }
    }

    /// Steps one down backend's schedule; sends its probe when due.
    fn consider(
        &mut self,
        id: u32,
        addr: SocketAddr,
        down_until: u64,
        now: u64,
    ) -> anyhow::Result<()> {
        let mut mark = self.maps.mark(id)?;
        let before = mark;
        let step = mark.step(down_until, now);
        if step == ProbeStep::Probe {
            mark.sent();
            self.in_flight.insert(id);
            let done = self.done_tx.clone();
            tokio::spawn(async move {
                let answered = probe(addr).await;
                let _ = done.send((id, addr, answered)).await;
            });
        }
        if mark != before {
            self.maps.set_mark(id, mark)?;
        }
        Ok(())
    }

    fn record(&mut self, id: u32, addr: SocketAddr, answered: bool) {
        self.in_flight.remove(&id);
        if self.known.get(&id) != Some(&addr) {
            return; // the id went to another backend meanwhile
        }
        let result = self.maps.mark(id).and_then(|mut m| {
            m.outcome(answered, monotonic_ns());
            self.maps.set_mark(id, m).map(|_| m)
        });
        match result {
            Ok(m) if answered => {
                info!(backend = %addr, probes = m.sent, "health probe answered: the backend is up for this node again")
            }
            Ok(m) => {
                debug!(backend = %addr, next_in_ms = m.backoff_ns / 1_000_000, "health probe failed")
            }
            Err(e) => warn!(backend = %addr, "health probe result not recorded: {e:#}"),
        }
    }

    /// Adopts the applied backends: an id new to this loop or given to
    /// another address starts with a zero mark (no history, no counts), as
    /// the apply loop zeroes its `L4LB_HEALTH` entry.
    /// The persistent maps' diff visits only what changed.
    fn follow(&mut self, now: Backends) {
        let fresh: Vec<u32> = self
            .known
            .diff(&now)
            .filter_map(|d| match d {
                DiffItem::Add(id, _) | DiffItem::Update { new: (id, _), .. } => Some(*id),
                DiffItem::Remove(..) => None,
            })
            .collect();
        if let Err(e) = self.maps.reset_marks(&fresh) {
            warn!("health probe marks not reset: {e:#}");
        }
        self.known = now;
    }
}

/// Up to `n` backends after `cursor`, wrapping around once.
fn next_batch(all: &Backends, cursor: u32, n: usize) -> Vec<(u32, SocketAddr)> {
    let after = all.range((Bound::Excluded(cursor), Bound::Unbounded));
    let wrapped = all.range(..=cursor);
    after
        .chain(wrapped)
        .take(n.min(all.len()))
        .map(|(id, a)| (*id, *a))
        .collect()
}

/// One TCP connect to `addr`, bounded; true if it was accepted.
async fn probe(addr: SocketAddr) -> bool {
    let timeout = Duration::from_nanos(AGENT_PROBE_TIMEOUT_NS);
    matches!(
        tokio::time::timeout(timeout, tokio::net::TcpStream::connect(plain(addr))).await,
        Ok(Ok(_))
    )
}

/// An IPv4-mapped address as IPv4 (the socket is then an AF_INET one).
fn plain(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), a.port()),
            None => addr,
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(n: u32) -> Backends {
        (1..=n)
            .map(|i| (i, SocketAddr::from(([198, 18, 0, i as u8], 80))))
            .collect()
    }

    #[test]
    fn batches_go_round_robin_and_wrap() {
        let t = table(5);
        let ids = |c, n| {
            next_batch(&t, c, n)
                .into_iter()
                .map(|(i, _)| i)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(0, 3), [1, 2, 3]);
        assert_eq!(ids(3, 3), [4, 5, 1]);
        assert_eq!(ids(5, 10), [1, 2, 3, 4, 5], "each at most once a tick");
        assert!(next_batch(&Backends::new(), 0, 4).is_empty());
    }

    #[test]
    fn mapped_addresses_are_probed_as_ipv4() {
        let a: SocketAddr = "[::ffff:198.18.0.1]:80".parse().unwrap();
        assert_eq!(plain(a), "198.18.0.1:80".parse().unwrap());
        let b: SocketAddr = "[fd00::1]:80".parse().unwrap();
        assert_eq!(plain(b), b);
    }

    #[tokio::test]
    async fn a_probe_is_answered_by_a_listener_and_not_by_a_closed_port() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = l.local_addr().unwrap();
        assert!(probe(open).await);
        drop(l);
        assert!(!probe(open).await, "refused");
    }
}
