//! What every control-plane source shares once its loop runs: the host-name
//! resolver, the SIGHUP handler, and the relay that turns its updates and
//! failures into [`SourceEvent`]s for the agent's loop.
use std::{path::Path, sync::Arc};

use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{Notify, mpsc, watch},
};
use tracing::warn;

use super::SourceEvent;
use crate::hosts::resolver::{HickoryLookup, Resolver};

/// Looks up agents known by name. Without a usable resolv.conf only
/// /etc/hosts answers (each failed name is a warning, the agent runs on).
pub fn host_resolver(resolv_conf: &Path) -> Resolver {
    let lookup = HickoryLookup::from_resolv_conf(resolv_conf).unwrap_or_else(|e| {
        warn!("agent host names: {e:#}; only /etc/hosts will answer");
        HickoryLookup::hosts_file_only()
    });
    Resolver::spawn(lookup)
}

/// SIGHUP (the unit's reload) wakes `reread`: the source reads everything
/// again. Without a handler the signal would kill the agent.
pub fn reread_on_sighup(reread: Arc<Notify>) -> std::io::Result<()> {
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            reread.notify_one();
        }
    });
    Ok(())
}

/// Forwards a source's updates (through `event`) and each new failure reason
/// (as `trigger` failed) to the agent's loop, until either side is gone.
pub fn relay<U: Send + 'static>(
    mut updates: mpsc::Receiver<U>,
    mut failures: watch::Receiver<Option<String>>,
    trigger: &'static str,
    event: fn(U) -> SourceEvent,
    tx: mpsc::Sender<SourceEvent>,
) {
    tokio::spawn(async move {
        loop {
            let ev = tokio::select! {
                u = updates.recv() => match u {
                    Some(u) => event(u),
                    None => return,
                },
                changed = failures.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let reason = failures.borrow_and_update().clone().unwrap_or_default();
                    SourceEvent::Failed { trigger: trigger.into(), reason }
                }
            };
            if tx.send(ev).await.is_err() {
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::Catalog;

    fn update(trigger: &'static str) -> SourceEvent {
        SourceEvent::Update {
            catalog: Catalog::default(),
            services: None,
            trigger: trigger.into(),
            received_at: None,
            skipped: 0,
        }
    }

    async fn next(rx: &mut mpsc::Receiver<SourceEvent>) -> Option<SourceEvent> {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("relay stalled")
    }

    #[tokio::test]
    async fn updates_and_failures_reach_the_loop_in_order_then_it_stops() {
        let (utx, urx) = mpsc::channel(4);
        let (ftx, frx) = watch::channel(None);
        let (tx, mut rx) = mpsc::channel(4);
        relay(urx, frx, "test read", update, tx);
        utx.send("first").await.unwrap();
        match next(&mut rx).await {
            Some(SourceEvent::Update { trigger, .. }) => assert_eq!(trigger, "first"),
            _ => panic!("no update"),
        }
        ftx.send_replace(Some("boom".into()));
        match next(&mut rx).await {
            Some(SourceEvent::Failed { trigger, reason }) => {
                assert_eq!((trigger.as_str(), reason.as_str()), ("test read", "boom"));
            }
            _ => panic!("no failure"),
        }
        drop(utx);
        assert!(
            next(&mut rx).await.is_none(),
            "the relay outlived its source"
        );
    }
}
