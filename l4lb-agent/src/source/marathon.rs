//! The Marathon source, as the agent runs it: the loop of
//! `crate::marathon::source`, started through [`relay`].
use std::{path::Path, sync::Arc};

use anyhow::Result;
use tokio::sync::mpsc;

use super::{SourceEvent, relay};
use crate::{
    hosts::resolver::HostStats,
    marathon::source::{MarathonSource, SourceConfig, SourceStats, Trigger, Update},
    naming::VipAllocator,
};

/// What a running Marathon source exposes to /metrics.
pub struct Running {
    pub stats: Arc<SourceStats>,
    pub hosts: Arc<HostStats>,
}

/// Follows Marathon (until the agent stops); its updates and failures join
/// the agent's loop. Until the first good read the maps keep what they hold
/// (adopted from a previous run, or empty on a fresh node): a failed read is
/// never a table.
pub fn spawn(
    cfg: SourceConfig,
    resolv_conf: &Path,
    tx: mpsc::Sender<SourceEvent>,
) -> Result<Running> {
    let hosts = Arc::new(relay::host_resolver(resolv_conf));
    let host_stats = hosts.stats();
    let src = MarathonSource::new(cfg)?.with_hosts(hosts);
    let stats = src.stats();
    // SIGHUP (the unit's reload) re-reads everything.
    relay::reread_on_sighup(src.reread_handle())?;
    let (mtx, updates) = mpsc::channel(4);
    tokio::spawn(src.run(VipAllocator::new(), mtx));
    let failures = stats.last_failure.subscribe();
    relay::relay(updates, failures, "marathon read", update_event, tx);
    Ok(Running {
        stats,
        hosts: host_stats,
    })
}

fn update_event(u: Update) -> SourceEvent {
    let (trigger, received_at) = match &u.trigger {
        Trigger::Event {
            event_type,
            received_at,
            ..
        } => (event_type.clone(), Some(*received_at)),
        Trigger::Sighup => ("SIGHUP".to_owned(), None),
        t => (format!("marathon {}", t.label()), None),
    };
    SourceEvent::Update {
        catalog: u.catalog,
        services: u.services,
        trigger,
        received_at,
        skipped: u.warnings,
    }
}
