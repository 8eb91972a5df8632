//! The Marathon source, as the agent runs it: the loop of
//! `crate::marathon::source` with its SIGHUP handler and the host-name
//! resolver, its updates and failures relayed as [`SourceEvent`]s.
use std::{path::Path, sync::Arc};

use anyhow::Result;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};
use tracing::warn;

use super::SourceEvent;
use crate::{
    hosts::resolver::{HickoryLookup, HostStats, Resolver},
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
    let hosts = Arc::new(host_resolver(resolv_conf));
    let host_stats = hosts.stats();
    let src = MarathonSource::new(cfg)?.with_hosts(hosts);
    let stats = src.stats();
    // SIGHUP (the unit's reload) re-reads everything; without a handler it killed the agent.
    let reread = src.reread_handle();
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            reread.notify_one();
        }
    });
    let (mtx, mut updates) = mpsc::channel(4);
    tokio::spawn(src.run(VipAllocator::new(), mtx));
    let mut failures = stats.last_failure.subscribe();
    tokio::spawn(async move {
        loop {
            let ev = tokio::select! {
                u = updates.recv() => match u {
                    Some(u) => update_event(u),
                    None => return,
                },
                changed = failures.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let reason = failures.borrow_and_update().clone().unwrap_or_default();
                    SourceEvent::Failed { trigger: "marathon read".into(), reason }
                }
            };
            if tx.send(ev).await.is_err() {
                return;
            }
        }
    });
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
        trigger,
        received_at,
        skipped: u.warnings,
    }
}

/// Looks up agents known by name. Without a usable resolv.conf only
/// /etc/hosts answers (each failed name is a warning, the agent runs on).
pub(super) fn host_resolver(resolv_conf: &Path) -> Resolver {
    let lookup = HickoryLookup::from_resolv_conf(resolv_conf).unwrap_or_else(|e| {
        warn!("agent host names: {e:#}; only /etc/hosts will answer");
        HickoryLookup::hosts_file_only()
    });
    Resolver::spawn(lookup)
}
