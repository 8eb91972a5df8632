//! The Mesos source's counters on /metrics (`l4lb_mesos_*`).
use std::sync::{Arc, OnceLock, atomic::Ordering::Relaxed};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::counter::ConstCounter,
};

use super::source::MesosStats;

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
        ] {
            let c = ConstCounter::new(n.load(Relaxed));
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        Ok(())
    }
}
