//! The DNS zones, built on a thread of their own from the latest applied
//! view. The maps' apply never waits for them (a first build at 10,000 apps
//! takes seconds); views applied while a build runs are coalesced, the
//! newest wins. A view is handed over only once the maps hold its VIPs, so
//! DNS still names a VIP only after the maps serve it.
use std::{
    sync::{Arc, Condvar, Mutex, PoisonError, Weak},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use tokio::sync::watch;
use tracing::info;

use crate::{
    dns::{ZoneIndex, Zones},
    http_api::View,
};

/// One applied view waiting for its zones.
struct Job {
    view: Arc<View>,
    trigger: String,
    /// The earliest event among the coalesced views (their latency counts
    /// from it).
    received_at: Option<Instant>,
    /// Views replaced by a newer one before their build started.
    coalesced: u32,
}

#[derive(Default)]
struct Slot {
    /// The newest view not built yet; None when the thread is idle.
    next: Mutex<Option<Job>>,
    wake: Condvar,
}

/// Hands applied views to the zone thread; the thread ends within half a
/// second of it (after the build it may be running).
pub(crate) struct ZonePublisher {
    slot: Arc<Slot>,
    published: watch::Receiver<Arc<Zones>>,
}

impl ZonePublisher {
    /// Starts the thread that owns `index` and sends each build on `tx`.
    pub(crate) fn spawn(index: ZoneIndex, tx: watch::Sender<Arc<Zones>>) -> Result<Self> {
        let slot = Arc::new(Slot::default());
        let published = tx.subscribe();
        let weak = Arc::downgrade(&slot);
        thread::Builder::new()
            .name("l4lb-zones".into())
            .spawn(move || build_loop(weak, index, tx))
            .context("spawning the DNS zone thread")?;
        Ok(ZonePublisher { slot, published })
    }

    /// The last zones published (what the DNS server answers from).
    pub(crate) fn published(&self) -> watch::Receiver<Arc<Zones>> {
        self.published.clone()
    }

    /// Queues `view` (whose VIPs the maps now hold), replacing any view
    /// still waiting; never blocks on a build.
    pub(crate) fn submit(&self, view: Arc<View>, trigger: &str, received_at: Option<Instant>) {
        let mut next = self
            .slot
            .next
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (earliest, coalesced) = match next.take() {
            Some(old) => (earliest(old.received_at, received_at), old.coalesced + 1),
            None => (received_at, 0),
        };
        *next = Some(Job {
            view,
            trigger: trigger.to_string(),
            received_at: earliest,
            coalesced,
        });
        self.slot.wake.notify_one();
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Builds the newest waiting view until the publisher is dropped.
fn build_loop(slot: Weak<Slot>, mut index: ZoneIndex, tx: watch::Sender<Arc<Zones>>) {
    while let Some(job) = next_job(&slot) {
        publish(&mut index, &tx, job);
    }
}

/// Waits for a job; None once the publisher is gone.
fn next_job(slot: &Weak<Slot>) -> Option<Job> {
    let slot = slot.upgrade()?;
    let mut next = slot.next.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        if let Some(job) = next.take() {
            return Some(job);
        }
        // Ours is the last: the publisher is gone. It holds no way to wake
        // us when it drops, hence the timeout.
        if Arc::strong_count(&slot) == 1 {
            return None;
        }
        next = slot
            .wake
            .wait_timeout(next, Duration::from_millis(500))
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

/// One build: the zones of `job.view`, sent to the DNS server and kept in
/// the view for the HTTP API.
fn publish(index: &mut ZoneIndex, tx: &watch::Sender<Arc<Zones>>, job: Job) {
    let start = Instant::now();
    let zones = Arc::new(index.update(&job.view.catalog, &job.view.published));
    tx.send_replace(zones.clone());
    job.view.set_zones(zones.clone());
    let now = Instant::now();
    info!(
        trigger = job.trigger,
        records = zones.record_count(),
        took_us = (now - start).as_micros() as u64,
        event_to_dns_us = job.received_at.map(|t| (now - t).as_micros() as u64),
        coalesced = job.coalesced,
        "zones published"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::ZoneOptions;

    fn view() -> Arc<View> {
        let dns = None;
        Arc::new(View::new(
            Default::default(),
            Default::default(),
            ZoneOptions::default(),
            dns,
        ))
    }

    /// Views handed over in a burst: the newest gets its zones, and they
    /// are what the DNS server was sent.
    #[test]
    fn the_newest_view_gets_the_zones_published() {
        let opts = ZoneOptions::default();
        let (tx, rx) = watch::channel(Arc::new(Zones::pending(&opts)));
        let publisher = ZonePublisher::spawn(ZoneIndex::new(opts), tx).unwrap();
        let views: Vec<Arc<View>> = (0..5).map(|_| view()).collect();
        for v in &views {
            publisher.submit(v.clone(), "test", Some(Instant::now()));
        }
        let newest = views.last().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !newest
            .built_zones()
            .is_some_and(|z| Arc::ptr_eq(&z, &rx.borrow()))
        {
            assert!(
                Instant::now() < deadline,
                "the newest view's zones were not published"
            );
            thread::sleep(Duration::from_millis(5));
        }
        assert!(rx.borrow().is_loaded());
        assert!(publisher.published().borrow().is_loaded());
    }

    #[test]
    fn coalesced_jobs_keep_the_earliest_event() {
        let (t0, t1) = (Instant::now(), Instant::now() + Duration::from_millis(1));
        assert_eq!(earliest(Some(t1), Some(t0)), Some(t0));
        assert_eq!(earliest(None, Some(t1)), Some(t1));
        assert_eq!(earliest(Some(t0), None), Some(t0));
        assert_eq!(earliest(None, None), None);
    }
}
