//! The agent's handles for probing down backends (`crate::health_probe`):
//! `L4LB_HEALTH` read only (the kernel programs are its writers) and
//! `L4LB_PROBES`, which the probe loop alone writes. Opened from the pins, so
//! the probe loop owns its handles and never shares the apply loop's.
//!
//! Both are read and written a run of ids per bpf() call (`batch.rs`): a
//! tick reads up to 1,024 health entries and a new table resets a mark per
//! backend (50,000 at 10,000 services), where one call per entry was 10,240
//! syscalls a second at rest and 50,000 after the first apply.
use std::{ops::Range, os::fd::AsFd, path::Path};

use anyhow::{Context, Result};
use aya::maps::{Array, IterableMap, Map, MapData};
use l4lb_common::{BackendHealth, HEALTH_MAP, PROBES_MAP, ProbeMark};

use super::batch;

/// Ids this close together are read as one run: the entries in between
/// cost less to copy than a bpf() call.
const MAX_GAP: u32 = 32;
/// Entries a run spans at most (128 KB of `BackendHealth`): sparse ids
/// never make one read, or its buffer, larger than a tick's dense one.
const MAX_SPAN: u32 = 1024;

pub struct ProbeMaps {
    health: Array<MapData, BackendHealth>,
    probes: Array<MapData, ProbeMark>,
}

impl ProbeMaps {
    /// Opens both maps pinned under `pin_root` (after the datapath loaded).
    pub fn open(pin_root: &Path) -> Result<ProbeMaps> {
        let open = |name: &str| -> Result<Map> {
            let path = pin_root.join(name);
            let data = MapData::from_pin(&path)
                .with_context(|| format!("opening pinned map {}", path.display()))?;
            Ok(Map::from_map_data(data)?)
        };
        Ok(ProbeMaps {
            health: open(HEALTH_MAP)?.try_into()?,
            probes: open(PROBES_MAP)?.try_into()?,
        })
    }

    /// The kernel's `down_until_ns` of each backend of `ids` (0: not down;
    /// also for an id the map cannot be read at), a run of ids per call.
    pub fn down_until(&self, ids: &[u32]) -> Vec<u64> {
        let mut out = vec![0; ids.len()];
        let mut run = Vec::new();
        for r in runs(ids, MAX_GAP, MAX_SPAN) {
            let first = ids[r.start];
            run.resize(span(ids, &r), BackendHealth::default());
            let fd = self.health.map().fd().as_fd();
            if batch::lookup_array_run(fd, first, &mut run).is_ok() {
                for i in r {
                    out[i] = run[(ids[i] - first) as usize].down_until_ns;
                }
            } else {
                // One entry at a time (a kernel without batch lookups, an
                // id past the array's end).
                for i in r {
                    out[i] = self.health.get(&ids[i], 0).map_or(0, |h| h.down_until_ns);
                }
            }
        }
        out
    }

    pub fn mark(&self, id: u32) -> Result<ProbeMark> {
        Ok(self.probes.get(&id, 0)?)
    }

    pub fn set_mark(&mut self, id: u32, mark: ProbeMark) -> Result<()> {
        Ok(self.probes.set(id, mark, 0)?)
    }

    /// Zero marks for `ids` (backends new to the loop), in batches.
    pub fn reset_marks(&mut self, ids: &[u32]) -> Result<()> {
        let zeros = vec![ProbeMark::default(); ids.len()];
        let fd = self.probes.map().fd().as_fd();
        batch::update(fd, ids, &zeros).map_err(|(written, e)| {
            anyhow::anyhow!(
                "resetting probe marks: {written} of {} written: {e}",
                ids.len()
            )
        })
    }
}

/// Entries from `ids[r.start]` to `ids[r.end - 1]`, both included.
fn span(ids: &[u32], r: &Range<usize>) -> usize {
    (ids[r.end - 1] - ids[r.start]) as usize + 1
}

/// `ids` cut into runs read in one call each: ascending ids at most
/// `max_gap` apart, spanning fewer than `max_span` entries (a wrap back to
/// a lower id starts a new run).
fn runs(ids: &[u32], max_gap: u32, max_span: u32) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=ids.len() {
        let breaks = i == ids.len()
            || ids[i] <= ids[i - 1]
            || ids[i] - ids[i - 1] > max_gap
            || ids[i] - ids[start] >= max_span;
        if breaks {
            if start < i {
                out.push(start..i);
            }
            start = i;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_ascending_ids_share_a_run_and_a_wrap_or_gap_cuts_it() {
        assert!(runs(&[], 32, 1024).is_empty());
        assert_eq!(runs(&[7], 32, 1024), vec![0..1]);
        assert_eq!(runs(&[1, 2, 3, 35, 36, 200], 32, 1024), [0..5, 5..6]);
        assert_eq!(runs(&[1, 34], 32, 1024), [0..1, 1..2], "33 apart");
        // next_batch's wrap: the ids after the cursor, then those from the start.
        assert_eq!(runs(&[9, 10, 11, 1, 2], 32, 1024), [0..3, 3..5]);
        assert_eq!(
            runs(&[5, 5], 32, 1024),
            [0..1, 1..2],
            "never a run backwards"
        );
        // Ids 30 apart: a run spans fewer than 100 entries.
        let sparse: Vec<u32> = (0..10).map(|i| i * 30).collect();
        assert_eq!(runs(&sparse, 32, 100), [0..4, 4..8, 8..10]);
        assert!(
            runs(&sparse, 32, 100)
                .iter()
                .all(|r| span(&sparse, r) < 100)
        );
        assert_eq!(span(&[1, 2, 3, 40], &(0..4)), 40);
    }
}
