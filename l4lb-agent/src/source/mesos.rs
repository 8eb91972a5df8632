//! The Mesos source, as the agent runs it: the loop of
//! `crate::mesos::source` with the host-name resolver, its catalogs and
//! failures relayed as [`SourceEvent`]s.
use std::{path::Path, sync::Arc};

use anyhow::Result;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};
use tracing::info;

use super::SourceEvent;
use crate::{
    hosts::resolver::HostStats,
    mesos::{
        args::MesosConfig,
        source::{MesosSource, MesosStats, Update},
    },
};

/// What a running Mesos source exposes to /metrics.
pub struct Running {
    pub stats: Arc<MesosStats>,
    pub hosts: Arc<HostStats>,
}

/// Follows the Mesos master until the agent stops. Until SUBSCRIBED (or the
/// first good poll) the maps keep what they hold.
pub fn spawn(
    cfg: MesosConfig,
    resolv_conf: &Path,
    tx: mpsc::Sender<SourceEvent>,
) -> Result<Running> {
    let hosts = Arc::new(super::marathon::host_resolver(resolv_conf));
    let host_stats = hosts.stats();
    let src = MesosSource::new(cfg)?.with_hosts(hosts);
    let stats = src.stats();
    // SIGHUP (the unit's reload) must not kill the agent; the stream already
    // carries every change, so there is nothing to re-read.
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            info!("mesos: SIGHUP ignored (the operator API stream is followed)");
        }
    });
    let (utx, mut updates) = mpsc::channel(4);
    tokio::spawn(src.run(utx));
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
                    SourceEvent::Failed { trigger: "mesos read".into(), reason }
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
    SourceEvent::Update {
        catalog: u.catalog,
        trigger: u.trigger,
        received_at: None,
        skipped: u.warnings,
    }
}
