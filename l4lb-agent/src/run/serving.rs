//! The agent's loop once it serves: each catalog a source sends is screened,
//! applied to the maps and then published to DNS and the HTTP API.
use std::{collections::BTreeSet, sync::Arc, time::Instant};

use anyhow::Result;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
};
use tracing::error;

use super::{Dns, Refusals, apply, attaching::Attaching, sync_vip_routes};
use crate::{
    datapath, http_api,
    locality::Locality,
    metrics::Metrics,
    model::{Catalog, ServiceMap, Vip, desired_state, service_map},
    node::Protected,
    reconcile::Reconciler,
    source::SourceEvent,
};

/// Everything the loop owns; the loop is the only writer of the maps.
pub(super) struct Serving {
    pub rec: Reconciler<datapath::Maps>,
    pub refusals: Refusals,
    pub locality: Locality,
    pub protected: Protected,
    pub metrics: Arc<Metrics>,
    pub dns: Option<Dns>,
    pub view_tx: watch::Sender<Arc<http_api::View>>,
    pub attaching: Attaching,
    pub escape: Option<datapath::escape::EscapeRoutes>,
    pub backends_tx: super::BackendsTx,
    /// The services of the last catalog, before the guard's screen.
    pub last_services: ServiceMap,
}

impl Serving {
    /// Follows the sources until SIGTERM or SIGINT; an error only when the
    /// datapath cannot be written or attached.
    pub async fn follow(&mut self, rx: &mut mpsc::Receiver<SourceEvent>) -> Result<()> {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        loop {
            let event = tokio::select! {
                Some(ev) = rx.recv() => ev,
                done = self.attaching.finish(), if self.attaching.is_pending() => {
                    done?;
                    continue;
                }
                _ = term.recv() => return Ok(()),
                _ = int.recv() => return Ok(()),
            };
            match event {
                SourceEvent::Update {
                    catalog,
                    services,
                    trigger,
                    received_at,
                    skipped,
                } => {
                    if skipped > 0 {
                        self.metrics.skipped.inc_by(skipped as u64);
                    }
                    self.update(catalog, services, &trigger, received_at)
                        .await?;
                }
                SourceEvent::Failed { trigger, reason } => {
                    self.metrics.source_failed();
                    error!(%trigger, "keeping the previous table: {reason}");
                }
            }
        }
    }

    /// One catalog: screened, applied, then published once the table serves.
    async fn update(
        &mut self,
        mut catalog: Catalog,
        services: Option<ServiceMap>,
        trigger: &str,
        received_at: Option<Instant>,
    ) -> Result<()> {
        let from_map = services.is_some();
        // A source without a map of its own: one that shares with the last
        // every service that did not change.
        let wanted = services
            .unwrap_or_else(|| service_map(&self.last_services, &catalog.services.services));
        let guard = self.protected.guard();
        let services = (self.refusals).screen_map(&guard, &wanted, &mut catalog, &self.metrics);
        self.last_services = wanted;
        self.locality.learn(&catalog);
        if from_map {
            // The readers' services share every node with the screened map.
            catalog.services = desired_state(&services);
        }
        let (dns, view_tx) = (&self.dns, &self.view_tx);
        let publish = |in_maps: BTreeSet<Vip>| {
            let catalog = Arc::new(catalog);
            let zone_opts = dns.as_ref().map(|d| d.2.clone()).unwrap_or_default();
            let dns_zones = dns.as_ref().map(|(_, zones, _)| zones.published());
            let view = Arc::new(http_api::View::new(catalog, in_maps, zone_opts, dns_zones));
            // Zones are built only for the DNS server (the HTTP API builds
            // its own on demand when there is none), on its zone thread:
            // the next apply does not wait for them.
            if let Some((_, zones, _)) = dns.as_ref() {
                zones.submit(view.clone(), trigger, received_at);
            }
            let old = view_tx.send_replace(view);
            // The last view's catalog (its tasks) is freed off the loop: an
            // event that arrives meanwhile does not wait for it.
            tokio::task::spawn_blocking(move || drop(old));
        };
        let staged = services.clone();
        let out = (&*self.metrics, &mut self.locality);
        let wait = &mut self.attaching;
        apply(
            &mut self.rec,
            staged,
            trigger,
            received_at,
            out,
            wait,
            publish,
        )
        .await?;
        self.backends_tx
            .send_replace(self.rec.applied().backends.clone());
        sync_vip_routes(&mut self.escape, &self.rec, &self.metrics).await;
        Ok(())
    }
}
