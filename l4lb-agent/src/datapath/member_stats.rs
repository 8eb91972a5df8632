//! Counters per (VIP's service, backend) (`L4LB_MEMBER_STATS`): the
//! programs make a pair's entry on its first connect, sendmsg or XDP flow;
//! the agent removes it with the member, and at load drops the entries of
//! pairs that are no longer members (a connect racing the member's removal
//! can recreate one just after it).
use aya::maps::{HashMap, MapData, PerCpuHashMap};
use l4lb_common::{MemberKey, MemberValue, Stats};

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

    /// Removes the entries whose pair is not in `members`; returns how many.
    pub fn sweep(&mut self, members: &HashMap<MapData, MemberKey, MemberValue>) -> usize {
        let orphans: Vec<MemberKey> = self
            .map
            .keys()
            .filter_map(Result::ok)
            .filter(|k| members.get(k, 0).is_err())
            .collect();
        orphans.iter().filter(|k| self.remove(k).is_ok()).count()
    }
}
