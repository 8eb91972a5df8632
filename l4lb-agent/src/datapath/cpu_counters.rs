//! `L4LB_SVC_STATS` and `L4LB_BE_STATS`: one counter record per (id, CPU),
//! at `id * cpus + cpu` of a plain array (the programs' `cpu_record`). A
//! per-CPU array made one kernel per-CPU allocation per entry, ~50 ms of the
//! agent's start per 65,536-entry map; this is one allocation. The agent
//! reads an id's run of records in one `BPF_MAP_LOOKUP_BATCH` and zeroes it
//! on id reuse in one `BPF_MAP_UPDATE_BATCH`, as the kernel summed and zeroed
//! per-CPU values. Not through a mapping: a mapped page is resident in the
//! agent from mmap on (a whole array is 24 MB on 2 CPUs), and a mapping per
//! read costs an mmap, a munmap and its TLB flush on every CPU the agent's
//! threads ran on.
use std::{os::fd::AsFd, path::Path};

use anyhow::{Context, Result};
use aya::maps::{Map, MapData, MapError, MapInfo};

use super::batch;

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
        let size = info.value_size() as usize;
        let records = info.max_entries() as usize;
        if size != size_of::<T>() || cpus == 0 || !records.is_multiple_of(cpus) {
            anyhow::bail!(
                "{name} holds {records} records of {size} B, not whole runs of {cpus} of {} B",
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

    /// The key of id `id`'s first record (None: past the array).
    fn first(&self, id: u32) -> Result<u32, MapError> {
        (id as usize)
            .checked_mul(self.cpus)
            .filter(|f| f + self.cpus <= self.records)
            .and_then(|f| u32::try_from(f).ok())
            .ok_or(MapError::OutOfBounds {
                index: id,
                max_entries: self.records as u32,
            })
    }

    /// Id `id`'s records added up (zero: the id is out of range).
    pub(super) fn sum(&self, id: u32, add: fn(&mut T, &T)) -> T {
        let mut total = T::default();
        let mut run = vec![T::default(); self.cpus];
        let read = self
            .first(id)
            .ok()
            .and_then(|first| batch::lookup_array_run(self.map.fd().as_fd(), first, &mut run).ok());
        if read.is_some() {
            run.iter().for_each(|r| add(&mut total, r));
        }
        total
    }

    /// Zeroes id `id`'s records (the id goes to a new service or backend).
    pub(super) fn reset(&mut self, id: u32) -> Result<(), MapError> {
        let first = self.first(id)?;
        let keys: Vec<u32> = (first..).take(self.cpus).collect();
        let zeros = vec![T::default(); self.cpus];
        batch::update(self.map.fd().as_fd(), &keys, &zeros).map_err(|(_, e)| {
            MapError::SyscallError(aya::sys::SyscallError {
                call: "bpf_map_update_batch",
                io_error: e,
            })
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
