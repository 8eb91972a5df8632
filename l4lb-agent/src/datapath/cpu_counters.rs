//! `L4LB_SVC_STATS` and `L4LB_BE_STATS`: one counter record per (id, CPU),
//! at `id * cpus + cpu` of a plain mmap-able array (the programs'
//! `cpu_record`). A per-CPU array made one kernel per-CPU allocation per
//! entry, ~50 ms of the agent's start per 65,536-entry map; this is one
//! allocation. The agent sums an id's run of records and zeroes it on id
//! reuse through a mapping of that run's pages only, made per access: a
//! mapping of a whole array puts all its pages in the agent's resident set
//! (24 MB on 2 CPUs), and one per id costs one mmap and munmap whatever
//! the CPU count (a syscall per record would cost one per CPU).
use std::{os::fd::AsFd, path::Path};

use anyhow::{Context, Result};
use aya::maps::{Map, MapData, MapError, MapInfo};

use super::mmap::Mapping;

/// Records of one counter map, `cpus` per id.
pub(super) struct CpuCounters<T> {
    map: MapData,
    records: usize,
    cpus: usize,
    _elem: std::marker::PhantomData<T>,
}

impl<T: Copy + Default> CpuCounters<T> {
    pub(super) fn new(map: Map, name: &str, cpus: usize) -> Result<CpuCounters<T>> {
        let Map::Array(map) = map else {
            anyhow::bail!("{name} is not an array");
        };
        let info = map.info()?;
        // The kernel's element stride is the value size rounded up to 8.
        let stride = (info.value_size() as usize).next_multiple_of(8);
        let records = info.max_entries() as usize;
        if stride != size_of::<T>() || cpus == 0 || !records.is_multiple_of(cpus) {
            anyhow::bail!(
                "{name} holds {records} records of {stride} B, not whole runs of {cpus} of {} B",
                size_of::<T>()
            );
        }
        Ok(CpuCounters {
            map,
            records,
            cpus,
            _elem: std::marker::PhantomData,
        })
    }

    /// Runs `f` on id `id`'s records, mapped for the call only.
    fn with_run<R>(&self, id: u32, f: impl FnOnce(*mut T) -> R) -> Result<R, MapError> {
        let out_of_bounds = MapError::OutOfBounds {
            index: id,
            max_entries: self.records as u32,
        };
        let first = (id as usize).checked_mul(self.cpus);
        let Some(first) = first.filter(|f| f + self.cpus <= self.records) else {
            return Err(out_of_bounds);
        };
        let size = size_of::<T>();
        let fd = self.map.fd().as_fd();
        let mapping = Mapping::pages(fd, first * size, (first + self.cpus) * size)?;
        // The start is 8-aligned: the values start on a page, T's size is a multiple of 8.
        Ok(f(mapping.start().cast::<T>()))
    }

    /// Id `id`'s records added up (zero: the id is out of range).
    pub(super) fn sum(&self, id: u32, add: fn(&mut T, &T)) -> T {
        let mut total = T::default();
        let _ = self.with_run(id, |run| {
            for i in 0..self.cpus {
                // SAFETY: record i of the run, inside the live mapping;
                // volatile: the programs write it while we read.
                add(&mut total, &unsafe { std::ptr::read_volatile(run.add(i)) });
            }
        });
        total
    }

    /// Zeroes id `id`'s records (the id goes to a new service or backend).
    pub(super) fn reset(&mut self, id: u32) -> Result<(), MapError> {
        self.with_run(id, |run| {
            for i in 0..self.cpus {
                // SAFETY: record i of the run, inside the live mapping.
                unsafe { std::ptr::write_volatile(run.add(i), T::default()) };
            }
        })
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
