//! The Mesos source's counters on /metrics (`l4lb_mesos_*`).
use std::sync::{
    Arc, OnceLock,
    atomic::{AtomicU64, Ordering::Relaxed},
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::counter::ConstCounter,
};

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
    /// 307s from a non-leading master followed to another configured origin.
    pub redirects: AtomicU64,
    /// Records or `/master/state` bodies refused for passing the size cap.
    pub oversized: AtomicU64,
    /// Why the last attempt failed (the agent's loop is told).
    pub last_failure: tokio::sync::watch::Sender<Option<String>>,
}

pub(super) fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Relaxed);
}

/// Registered at start; empty until the Mesos source runs.
#[derive(Debug, Default)]
pub struct MesosCollector(pub Arc<OnceLock<Arc<MesosStats>>>);

impl Collector for MesosCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(s) = self.0.get() else {
            return Ok(());
        };
        for (name, help, n) in [
            (
                "mesos_reads",
                "Whole snapshots read: SUBSCRIBED or /master/state",
                &s.reads,
            ),
            (
                "mesos_events",
                "Operator API stream records decoded",
                &s.events,
            ),
            (
                "mesos_stream_reconnects",
                "Operator API stream losses and failed subscriptions",
                &s.reconnects,
            ),
            (
                "mesos_read_failures",
                "Failed subscriptions, streams and /master/state reads; nothing was applied",
                &s.failures,
            ),
            (
                "mesos_skipped_tasks",
                "Tasks or task fields skipped with a warning",
                &s.skipped_tasks,
            ),
            (
                "mesos_redirects",
                "307s from a non-leading master followed to a configured origin",
                &s.redirects,
            ),
            (
                "mesos_oversized",
                "Stream records or /master/state bodies refused for passing --mesos-max-record-bytes",
                &s.oversized,
            ),
        ] {
            let c = ConstCounter::new(n.load(Relaxed));
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        Ok(())
    }
}
