//! The Mesos source, as the agent runs it: the loop of
//! `crate::mesos::source`, started through [`relay`].
use std::{path::Path, sync::Arc};

use anyhow::Result;
use tokio::sync::mpsc;

use super::{SourceEvent, relay};
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
    let hosts = Arc::new(relay::host_resolver(resolv_conf));
    let host_stats = hosts.stats();
    let src = MesosSource::new(cfg)?.with_hosts(hosts);
    let stats = src.stats();
    // SIGHUP (the unit's reload) subscribes again: a fresh SUBSCRIBED
    // snapshot (or /master/state read) replaces the state whole.
    relay::reread_on_sighup(src.reread_handle())?;
    let (utx, updates) = mpsc::channel(4);
    tokio::spawn(src.run(utx));
    let failures = stats.last_failure.subscribe();
    relay::relay(updates, failures, "mesos read", update_event, tx);
    Ok(Running {
        stats,
        hosts: host_stats,
    })
}

fn update_event(u: Update) -> SourceEvent {
    SourceEvent::Update {
        catalog: u.catalog,
        services: u.services,
        trigger: u.trigger,
        received_at: u.received_at,
        skipped: u.warnings,
    }
}
