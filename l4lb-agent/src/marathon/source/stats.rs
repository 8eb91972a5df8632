//! The source's counters, shared with the client and read by `/metrics`.
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters for the agent's status output. Monotonic.
#[derive(Debug, Default)]
pub struct SourceStats {
    /// Reads that produced an update.
    pub fetch_ok: AtomicU64,
    /// Reads that produced nothing: no answer, non-2xx, cut short, unparsable.
    pub fetch_failed: AtomicU64,
    pub events_received: AtomicU64,
    /// Frames whose data was not JSON (also counted in `events_received`).
    pub events_malformed: AtomicU64,
    /// Event stream losses and failed connection attempts.
    pub reconnects: AtomicU64,
    /// Parser warnings (apps or ports skipped), summed over all reads.
    pub warnings: AtomicU64,
    /// Of `fetch_ok`: reads of only the apps events named.
    pub targeted: AtomicU64,
    /// Redirects (or `/v2/leader` answers) to an origin that is not a
    /// configured `--marathon` URL's: refused, credentials kept home.
    pub redirects_refused: AtomicU64,
    /// Reads ended by a cap: response bodies and event-stream lines/events.
    pub over_cap: AtomicU64,
    /// Why the last read failed, published at each failure: the agent's
    /// loop hears of it as an event (a failure sends no [`Update`](super::Update)).
    pub last_failure: tokio::sync::watch::Sender<Option<String>>,
}

/// A copy of [`SourceStats`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub fetch_ok: u64,
    pub fetch_failed: u64,
    pub events_received: u64,
    pub events_malformed: u64,
    pub reconnects: u64,
    pub warnings: u64,
    pub targeted: u64,
    pub redirects_refused: u64,
    pub over_cap: u64,
}

impl SourceStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            fetch_ok: g(&self.fetch_ok),
            fetch_failed: g(&self.fetch_failed),
            events_received: g(&self.events_received),
            events_malformed: g(&self.events_malformed),
            reconnects: g(&self.reconnects),
            warnings: g(&self.warnings),
            targeted: g(&self.targeted),
            redirects_refused: g(&self.redirects_refused),
            over_cap: g(&self.over_cap),
        }
    }

    pub(super) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
