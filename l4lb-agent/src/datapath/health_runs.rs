//! Many backends' health read at once: the health and probe arrays are read
//! in runs of ids (one `BPF_MAP_LOOKUP_BATCH` each) instead of three bpf()
//! calls per backend. `/metrics` at 10,000 VIPs x 5 backends reads every
//! backend's; that was ~150,000 calls a scrape.
use std::os::fd::AsFd;

use aya::maps::{Array, IterableMap, MapData};
use l4lb_common::{BackendHealth, ProbeMark};

use super::{batch, health::HealthView};

/// Ids per run: ~72 KB of buffers.
const RUN: u32 = 1024;

impl super::Maps {
    /// Calls `f` with the health of each backend in `ids` (ascending) that
    /// the health map holds, as [`super::Maps::health_view`] reads it one by
    /// one (which it falls back to where this kernel has no batch lookup).
    pub fn for_each_health(&self, ids: &[u32], now_ns: u64, mut f: impl FnMut(u32, HealthView)) {
        let Some(maps) = self.health.as_ref() else {
            return;
        };
        let mode = self.health_probes().unwrap_or_default();
        let cap = maps.health.map().info().map_or(0, |i| i.max_entries());
        for (first, end, now) in batch::id_runs(ids, RUN, cap) {
            match runs(&maps.health, maps.probes.as_ref(), first, end) {
                Some((health, probes)) => {
                    for &id in now {
                        let i = (id - first) as usize;
                        let mark = probes.get(i).copied().unwrap_or_default();
                        f(id, HealthView::new(&health[i], &mark, mode, now_ns));
                    }
                }
                None => {
                    for &id in now {
                        if let Some(h) = self.health_view(id, now_ns) {
                            f(id, h);
                        }
                    }
                }
            }
        }
    }
}

/// Entries `first..end` of the health array and of the probe array (empty:
/// no probe map); None if a batch read failed (the caller reads one by one).
fn runs(
    health: &Array<MapData, BackendHealth>,
    probes: Option<&Array<MapData, ProbeMark>>,
    first: u32,
    end: u32,
) -> Option<(Vec<BackendHealth>, Vec<ProbeMark>)> {
    let len = end.checked_sub(first).filter(|n| *n > 0)? as usize;
    let mut h = vec![BackendHealth::default(); len];
    batch::lookup_array_run(health.map().fd().as_fd(), first, &mut h).ok()?;
    let mut p = Vec::new();
    if let Some(probes) = probes {
        p = vec![ProbeMark::default(); len];
        batch::lookup_array_run(probes.map().fd().as_fd(), first, &mut p).ok()?;
    }
    Some((h, p))
}
