//! The VIP address map (`L4LB_VIP_ADDRS`: address → number of services on
//! it) kept equal to the services map, and the XDP guard counters
//! (`L4LB_VIP_GUARD`). XDP drops what it cannot balance (fragments, IPv4
//! options, IPv6 extension headers, ICMP, …) when it is sent to one of these
//! addresses, so no VIP packet is passed on unchanged.
//!
//! `Maps` calls [`VipAddrs::added`]/[`VipAddrs::removed`] after each service
//! write or delete that succeeded. The first call rebuilds the map from the
//! services map (adoption, or a previous failure), so it never drifts.
//! The VIP pre-filter (`fast_path.rs`), which XDP and the socket hooks read
//! before any hash lookup, follows the same addresses, and takes an address
//! in before its service is written ([`VipAddrs::announce`]).
use std::collections::{HashMap as StdHashMap, HashSet};

use std::os::fd::{AsFd, OwnedFd};

use aya::{
    maps::{HashMap, Map, MapData, MapError, PerCpuArray},
    sys::SyscallError,
};
use l4lb_common::{Addr6, ServiceKey, ServiceValue};

use super::fast_path::VipFilter;

type Services = HashMap<MapData, ServiceKey, ServiceValue>;

pub struct VipAddrs {
    map: HashMap<MapData, Addr6, u32>,
    /// The same map, for batch writes (aya 0.14 has none, `batch.rs`).
    fd: OwnedFd,
    /// The pre-filter of the same addresses (XDP, socket hooks).
    filter: VipFilter,
    /// What the map holds, once synced: the service keys and, per address, how many.
    state: Option<State>,
}

#[derive(Default)]
struct State {
    keys: HashSet<ServiceKey>,
    counts: StdHashMap<Addr6, u32>,
}

impl State {
    /// Counts `key` in; its address and new count if it was not in yet.
    fn add(&mut self, key: &ServiceKey) -> Option<(Addr6, u32)> {
        if !self.keys.insert(*key) {
            return None;
        }
        let n = self.counts.entry(key.addr).or_default();
        *n += 1;
        Some((key.addr, *n))
    }

    /// Counts `key` out; its address and new count (0: gone) if it was in.
    fn remove(&mut self, key: &ServiceKey) -> Option<(Addr6, u32)> {
        if !self.keys.remove(key) {
            return None;
        }
        let n = self.counts.get_mut(&key.addr)?;
        *n -= 1;
        let n = *n;
        if n == 0 {
            self.counts.remove(&key.addr);
        }
        Some((key.addr, n))
    }
}

impl VipAddrs {
    pub fn new(map: Map, fd: OwnedFd, filter: VipFilter) -> Result<VipAddrs, MapError> {
        Ok(VipAddrs {
            map: map.try_into()?,
            fd,
            filter,
            state: None,
        })
    }

    /// Rebuilds the map from the services map now (at load: a previous run
    /// may have stopped between a service write and this map's).
    pub fn sync(&mut self, services: &Services) -> Result<(), MapError> {
        self.state = None;
        self.update(services, |_| None)
    }

    /// A service on `addr` is about to be written: the pre-filter holds the
    /// address first, so a hook never skips a service the map holds (an
    /// address left over by a failed write costs a hash lookup, until the
    /// next resync).
    pub fn announce(&mut self, addr: &Addr6) {
        self.filter.add(addr);
    }

    /// `key` is in the services map now.
    pub fn added(&mut self, key: &ServiceKey, services: &Services) -> Result<(), MapError> {
        self.update(services, |s| s.add(key))
    }

    /// `keys` are in the services map now (a batch of service puts): the
    /// addresses whose count changed in one batch write, where one write
    /// each was a fifth of a full sync's plan + writes at 10,000 VIPs.
    pub fn added_all(&mut self, keys: &[ServiceKey], services: &Services) -> Result<(), MapError> {
        let result = self.write_all(keys, services);
        self.forget_on_error(result)
    }

    fn write_all(&mut self, keys: &[ServiceKey], services: &Services) -> Result<(), MapError> {
        let state = self.synced(services)?;
        // An address added twice keeps its last count, the higher one.
        let changed: StdHashMap<Addr6, u32> = keys.iter().filter_map(|k| state.add(k)).collect();
        for addr in changed.keys() {
            self.filter.add(addr);
        }
        let (addrs, counts): (Vec<Addr6>, Vec<u32>) = changed.into_iter().unzip();
        super::batch::update(self.fd.as_fd(), &addrs, &counts).map_err(|(_, e)| {
            MapError::SyscallError(SyscallError {
                call: "bpf_map_update_batch",
                io_error: e,
            })
        })
    }

    /// `key` is no longer in the services map.
    pub fn removed(&mut self, key: &ServiceKey, services: &Services) -> Result<(), MapError> {
        self.update(services, |s| s.remove(key))
    }

    /// Applies `change` (Some((addr, new count)) when the map must change).
    fn update(
        &mut self,
        services: &Services,
        change: impl FnOnce(&mut State) -> Option<(Addr6, u32)>,
    ) -> Result<(), MapError> {
        let result = self.write(services, change);
        self.forget_on_error(result)
    }

    /// On any error the state is dropped, so the next call resyncs.
    fn forget_on_error(&mut self, result: Result<(), MapError>) -> Result<(), MapError> {
        if result.is_err() {
            self.state = None;
        }
        result
    }

    /// The state, made from the services map first if there is none.
    fn synced(&mut self, services: &Services) -> Result<&mut State, MapError> {
        if self.state.is_none() {
            self.state = Some(self.resync(services)?);
        }
        Ok(self.state.as_mut().expect("synced above"))
    }

    fn write(
        &mut self,
        services: &Services,
        change: impl FnOnce(&mut State) -> Option<(Addr6, u32)>,
    ) -> Result<(), MapError> {
        match change(self.synced(services)?) {
            Some((addr, 0)) => {
                ignore_missing(self.map.remove(&addr))?;
                self.filter.remove(&addr);
                Ok(())
            }
            Some((addr, n)) => {
                self.filter.add(&addr);
                self.map.insert(addr, n, 0)
            }
            None => Ok(()),
        }
    }

    /// Makes the map equal to what the services map implies.
    fn resync(&mut self, services: &Services) -> Result<State, MapError> {
        let mut state = State::default();
        for key in services.keys() {
            let key = key?;
            state.keys.insert(key);
            *state.counts.entry(key.addr).or_default() += 1;
        }
        self.filter.rebuild(state.counts.keys());
        let stale: Vec<Addr6> = self
            .map
            .keys()
            .filter_map(Result::ok)
            .filter(|a| !state.counts.contains_key(a))
            .collect();
        for addr in stale {
            ignore_missing(self.map.remove(&addr))?;
        }
        for (addr, n) in &state.counts {
            self.map.insert(addr, n, 0)?;
        }
        Ok(state)
    }

    /// The addresses in the map (tests, CLI).
    pub fn addrs(&self) -> Vec<(Addr6, u32)> {
        self.map.iter().filter_map(Result::ok).collect()
    }
}

fn ignore_missing(r: Result<(), MapError>) -> Result<(), MapError> {
    match r {
        Err(MapError::KeyNotFound) => Ok(()),
        other => other,
    }
}

/// Per-CPU `u64` counters with a name per slot, summed over CPUs: packets
/// to a VIP address XDP dropped (`GUARD_REASONS`), ICMP errors about VIP
/// flows (`ICMP_COUNTERS`).
pub struct SlotCounters(PerCpuArray<MapData, u64>, &'static [&'static str]);

impl SlotCounters {
    pub fn new(map: Map, names: &'static [&'static str]) -> Result<SlotCounters, MapError> {
        Ok(SlotCounters(map.try_into()?, names))
    }

    /// (name, count) for every slot, in index order.
    pub fn read(&self) -> Vec<(&'static str, u64)> {
        self.1
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let n = self
                    .0
                    .get(&(i as u32), 0)
                    .map(|v| v.iter().sum())
                    .unwrap_or(0);
                (*name, n)
            })
            .collect()
    }
}
