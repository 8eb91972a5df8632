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

/// Records [`CpuCounters::sums`] reads per call (~128 KB of service records).
const RUN_RECORDS: usize = 1024;

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

    /// Calls `f` with each id of `ids` (ascending) and its records added up,
    /// as [`Self::sum`] gives them, reading a run of ids per call: a scrape
    /// at 10,000 VIPs made one call per VIP.
    pub(super) fn sums(&self, ids: &[u32], add: fn(&mut T, &T), mut f: impl FnMut(u32, T)) {
        let per_run = u32::try_from(RUN_RECORDS / self.cpus).unwrap_or(1);
        let len = u32::try_from(self.records / self.cpus).unwrap_or(u32::MAX);
        for (first, end, now) in batch::id_runs(ids, per_run, len) {
            let run = self.run(first, end);
            for &id in now {
                let total = match &run {
                    Some(records) => {
                        let at = (id - first) as usize * self.cpus;
                        let mut total = T::default();
                        records[at..at + self.cpus]
                            .iter()
                            .for_each(|r| add(&mut total, r));
                        total
                    }
                    None => self.sum(id, add),
                };
                f(id, total);
            }
        }
    }

    /// The records of ids `first..end` (None: none, or the read failed).
    fn run(&self, first: u32, end: u32) -> Option<Vec<T>> {
        let ids = end.checked_sub(first).filter(|n| *n > 0)? as usize;
        let mut records = vec![T::default(); ids * self.cpus];
        let at = self.first(first).ok()?;
        batch::lookup_array_run(self.map.fd().as_fd(), at, &mut records).ok()?;
        Some(records)
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

#[cfg(test)]
mod tests {
    use aya::maps::{Map, MapData};

    use super::*;

    /// Records of id `id` on CPU `cpu`, as the test writes them.
    fn value(id: u32, cpu: u32) -> u64 {
        u64::from(id) * 1000 + u64::from(cpu) + 1
    }

    /// Sums read in runs equal the one-id reads, across the runs' edges,
    /// for ids past the array too (zero, as one read gives them).
    #[test]
    fn sums_in_runs_equal_one_id_at_a_time() {
        // A kernel test fails without root, never passes by skipping.
        // SAFETY: plain FFI.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(euid, 0, "creating a BPF map needs root: run as root");
        const BPF_MAP_TYPE_ARRAY: u32 = 2;
        let (cpus, ids) = (2usize, 600u32);
        let records = ids * cpus as u32;
        let obj = aya_obj::Map::new_from_params(BPF_MAP_TYPE_ARRAY, 4, 8, records, 0);
        let map = MapData::create(obj, "l4lb_test_ctr", None).expect("creating the array (root?)");
        let c: CpuCounters<u64> = CpuCounters::new(Map::Array(map), "test", cpus).unwrap();
        let keys: Vec<u32> = (0..records).collect();
        let values: Vec<u64> = keys.iter().map(|k| value(k / 2, k % 2)).collect();
        batch::update(c.map.fd().as_fd(), &keys, &values).unwrap();
        let add = |t: &mut u64, r: &u64| *t += r;
        let per_run = (RUN_RECORDS / cpus) as u32;
        let wanted = [
            0,
            5,
            per_run - 1,
            per_run,
            per_run + 1,
            ids - 1,
            ids,
            ids + 3,
            1 << 20,
        ];
        let mut seen = Vec::new();
        c.sums(&wanted, add, |id, total| seen.push((id, total)));
        let expect: Vec<(u32, u64)> = wanted.iter().map(|&id| (id, c.sum(id, add))).collect();
        assert_eq!(seen, expect);
        assert_eq!(seen[1], (5, value(5, 0) + value(5, 1)));
        assert_eq!(seen[6], (ids, 0), "past the array");
    }
}
