//! `L4LB_SVC_STATS` and `L4LB_BE_STATS`: one counter record per (id, CPU),
//! at `id * cpus + cpu` of a plain mmap-able array (the programs'
//! `cpu_record`). A per-CPU array made one kernel per-CPU allocation per
//! entry, ~50 ms of the agent's start per 65,536-entry map; this is one
//! allocation. The agent sums an id's run of records and zeroes it on id
//! reuse through memory, as the kernel summed and zeroed per-CPU values.
use std::path::Path;

use anyhow::{Context, Result};
use aya::maps::{Map, MapError, MapInfo};

use super::mmap::Mapped;

/// Records of one counter map, `cpus` per id.
pub(super) struct CpuCounters<T> {
    elems: Mapped<T>,
    cpus: usize,
}

impl<T: Copy + Default> CpuCounters<T> {
    pub(super) fn new(map: Map, name: &str, cpus: usize) -> Result<CpuCounters<T>> {
        let elems = Mapped::new(map, name).with_context(|| format!("mapping {name}"))?;
        if cpus == 0 || elems.len % cpus != 0 {
            anyhow::bail!(
                "{name} holds {} records, not a whole number per id for {cpus} CPUs",
                elems.len
            );
        }
        Ok(CpuCounters { elems, cpus })
    }

    /// Id `id`'s records, one per CPU (None: the id is out of range).
    fn run(&self, id: u32) -> Option<&[T]> {
        let first = (id as usize).checked_mul(self.cpus)?;
        self.elems
            .as_slice()
            .get(first..first.checked_add(self.cpus)?)
    }

    /// Id `id`'s records added up (zero: the id is out of range).
    pub(super) fn sum(&self, id: u32, add: fn(&mut T, &T)) -> T {
        let mut total = T::default();
        for r in self.run(id).unwrap_or_default() {
            // SAFETY: an aligned element of the live mapping; volatile: the
            // programs write it while we read.
            add(&mut total, &unsafe { std::ptr::read_volatile(r) });
        }
        total
    }

    /// Zeroes id `id`'s records (the id goes to a new service or backend).
    pub(super) fn reset(&mut self, id: u32) -> Result<(), MapError> {
        let (cpus, max_entries) = (self.cpus, self.elems.len as u32);
        let run = (id as usize)
            .checked_mul(cpus)
            .and_then(|first| self.elems.slice().get_mut(first..first.checked_add(cpus)?))
            .ok_or(MapError::OutOfBounds {
                index: id,
                max_entries,
            })?;
        for r in run {
            // SAFETY: an aligned element of the live mapping.
            unsafe { std::ptr::write_volatile(r, T::default()) };
        }
        Ok(())
    }
}

/// The size (records) of a counter map for the ids of `id_map` under
/// `pin_root` (its pinned size, or `ids` when it is not pinned yet), and
/// `cpus` CPUs. A pinned counter map of another size is unpinned, so this
/// load creates it anew: its records would sit at other indices (possible
/// CPUs only change across a reboot, which empties bpffs, so this is a
/// safety net, and recreating costs the counts of one map instead of a
/// teardown of every table and flow).
pub(super) fn records(
    pin_root: &Path,
    counters: &str,
    id_map: &str,
    ids: u32,
    cpus: usize,
) -> Result<u32> {
    let ids = match MapInfo::from_pin(pin_root.join(id_map)) {
        Ok(info) => info.max_entries(),
        Err(_) => ids,
    };
    let records = u32::try_from(cpus)
        .ok()
        .and_then(|c| ids.checked_mul(c))
        .with_context(|| format!("{counters}: {ids} ids x {cpus} CPUs do not fit a map"))?;
    let path = pin_root.join(counters);
    if let Ok(info) = MapInfo::from_pin(&path)
        && info.max_entries() != records
    {
        tracing::warn!(
            map = counters,
            pinned = info.max_entries(),
            records,
            "counter map sized for another CPU or id count: made anew, its counts restart"
        );
        std::fs::remove_file(&path).with_context(|| format!("unpinning {}", path.display()))?;
    }
    Ok(records)
}
