//! Counters per (VIP's service, backend) (`L4LB_MEMBER_STATS`): the
//! programs make a pair's entry on its first connect, sendmsg or XDP flow;
//! the agent removes it with the member, and at load drops the entries of
//! pairs that are no longer members (a connect racing the member's removal
//! can recreate one just after it).
use std::os::fd::AsFd;

use aya::maps::{IterableMap, MapData, PerCpuHashMap};
use l4lb_common::{MemberKey, Stats};

use super::sum;

pub struct MemberStats {
    map: PerCpuHashMap<MapData, MemberKey, Stats>,
}

impl MemberStats {
    pub fn new(map: aya::maps::Map) -> anyhow::Result<MemberStats> {
        Ok(MemberStats {
            map: map.try_into()?,
        })
    }

    /// Zero for a pair that never carried traffic.
    pub fn get(&self, service_id: u32, backend_id: u32) -> Stats {
        let key = MemberKey {
            service_id,
            backend_id,
        };
        sum(self.map.get(&key, 0).ok(), Stats::add)
    }

    /// Every pair's counters summed over CPUs (`cpus`: the possible CPUs),
    /// read in batches of ~256 KB; None if this kernel cannot batch the
    /// map's reads or the read failed (read pair by pair then).
    pub fn all(&self, cpus: usize) -> Option<std::collections::HashMap<MemberKey, Stats>> {
        let fd = self.map.map().fd().as_fd();
        let mut sums = std::collections::HashMap::new();
        super::batch::for_each_in_hash::<MemberKey, Stats>(fd, per_call(cpus), cpus, |k, run| {
            let mut total = Stats::default();
            run.iter().for_each(|r| total.add(r));
            sums.insert(*k, total);
        })
        .ok()
        .flatten()?;
        Some(sums)
    }

    /// A pair that never carried traffic has no entry: not an error.
    pub fn remove(&mut self, key: &MemberKey) -> Result<(), aya::maps::MapError> {
        match self.map.remove(key) {
            // aya reports a per-CPU hash's missing key as the syscall's ENOENT.
            Err(aya::maps::MapError::SyscallError(e))
                if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
            {
                Ok(())
            }
            other => super::ignore_missing(other),
        }
    }

    /// Removes the entries whose pair is not in `members` (the members
    /// map's keys); returns how many.
    pub fn sweep(&mut self, mut members: Vec<MemberKey>, cpus: usize) -> usize {
        members.sort_unstable();
        let orphans: Vec<MemberKey> = self
            .pairs(cpus)
            .into_iter()
            .filter(|k| members.binary_search(k).is_err())
            .collect();
        orphans.iter().filter(|k| self.remove(k).is_ok()).count()
    }

    /// Every pair the map holds: in batches (the values come along and are
    /// dropped), key by key on a kernel without batch lookups.
    fn pairs(&self, cpus: usize) -> Vec<MemberKey> {
        let fd = self.map.map().fd().as_fd();
        let mut keys = Vec::new();
        let read =
            super::batch::for_each_in_hash::<MemberKey, Stats>(fd, per_call(cpus), cpus, |k, _| {
                keys.push(*k)
            });
        match read {
            Ok(Some(())) => keys,
            _ => self.map.keys().filter_map(Result::ok).collect(),
        }
    }
}

/// Pairs a batched read takes per call: ~256 KB of per-CPU values, so a
/// node with hundreds of CPUs never holds them all at once.
fn per_call(cpus: usize) -> usize {
    ((256 << 10) / (cpus.max(1) * size_of::<Stats>())).max(1)
}

#[cfg(test)]
mod tests {
    use aya::maps::{Map, PerCpuValues};

    use super::*;

    /// A pair counters map of `n` pairs, each CPU's counters distinct.
    fn pairs_map(n: u32) -> (MemberStats, Vec<MemberKey>, usize) {
        // A kernel test fails without root, never passes by skipping.
        // SAFETY: plain FFI.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(euid, 0, "creating a BPF map needs root: run as root");
        const BPF_MAP_TYPE_PERCPU_HASH: u32 = 5;
        let size = size_of::<Stats>() as u32;
        let obj = aya_obj::Map::new_from_params(BPF_MAP_TYPE_PERCPU_HASH, 8, size, 4096, 0);
        let data = MapData::create(obj, "l4lb_test_pairs", None).expect("creating the map (root?)");
        let mut m = MemberStats::new(Map::PerCpuHashMap(data)).unwrap();
        let cpus = aya::util::nr_cpus().unwrap();
        let keys: Vec<MemberKey> = (0..n)
            .map(|i| MemberKey {
                service_id: i / 5,
                backend_id: i * 31 + 7,
            })
            .collect();
        for (i, k) in keys.iter().enumerate() {
            let per_cpu = (0..cpus as u64).map(|c| Stats {
                connects: i as u64 * 10 + c,
                flows: c + 1,
                ..Stats::default()
            });
            let values = PerCpuValues::try_from(per_cpu.collect::<Vec<_>>()).unwrap();
            m.map.insert(k, values, 0).unwrap();
        }
        (m, keys, cpus)
    }

    /// The batched read sums each pair over CPUs as the one-pair read does,
    /// for every pair the map holds.
    #[test]
    fn all_pairs_read_in_batches_equal_one_pair_reads() {
        let (m, keys, cpus) = pairs_map(2500);
        let all = m.all(cpus).expect("batch reads on this kernel");
        assert_eq!(all.len(), keys.len());
        for k in &keys {
            assert_eq!(all[k], m.get(k.service_id, k.backend_id), "{k:?}");
        }
        let c = cpus as u64;
        assert_eq!(all[&keys[3]].connects, 30 * c + c * (c - 1) / 2);
    }

    /// The sweep removes exactly the pairs that are not members and leaves
    /// the members' counters as they were.
    #[test]
    fn sweep_removes_only_the_pairs_that_are_not_members() {
        let (mut m, keys, cpus) = pairs_map(2500);
        let members: Vec<MemberKey> = keys
            .iter()
            .copied()
            .filter(|k| k.backend_id % 3 != 0)
            .collect();
        let before = m.get(members[7].service_id, members[7].backend_id);
        assert_eq!(m.sweep(members.clone(), cpus), keys.len() - members.len());
        let mut left = m.pairs(cpus);
        left.sort_unstable();
        let mut want = members.clone();
        want.sort_unstable();
        assert_eq!(left, want);
        assert_eq!(m.get(members[7].service_id, members[7].backend_id), before);
        assert_eq!(m.sweep(members, cpus), 0, "a second sweep finds nothing");
    }
}
