//! The locality maps (`L4LB_LOCAL`, `L4LB_LOCAL_STATS`): the agent writes each
//! service's local set (`crate::locality`), the connect hooks count how they
//! used it; read back for the CLI and `/metrics`.
use aya::maps::{HashMap, MapData, PerCpuArray, PerCpuValues};
use l4lb_common::{LocalSet, LocalStats};

use super::Maps;

/// Handles on the locality maps (None under a pin root that predates them).
pub(super) struct LocalMaps {
    pub(super) sets: HashMap<MapData, u32, LocalSet>,
    pub(super) stats: PerCpuArray<MapData, LocalStats>,
}

impl LocalMaps {
    pub(super) fn reset_service(
        &mut self,
        id: u32,
        nr_cpus: usize,
    ) -> Result<(), aya::maps::MapError> {
        let zero =
            PerCpuValues::try_from(vec![LocalStats::default(); nr_cpus]).expect("nr_cpus > 0");
        self.stats.set(id, zero, 0)
    }
}

impl Maps {
    /// A service's local set as the kernel sees it.
    pub fn local_set(&self, service_id: u32) -> Option<LocalSet> {
        self.local.as_ref()?.sets.get(&service_id, 0).ok()
    }

    /// Every service id with a local set.
    pub fn local_set_ids(&self) -> Vec<u32> {
        self.local
            .as_ref()
            .map(|l| l.sets.keys().filter_map(Result::ok).collect())
            .unwrap_or_default()
    }

    pub fn put_local_set(&mut self, service_id: u32, set: LocalSet) -> anyhow::Result<()> {
        let Some(l) = self.local.as_mut() else {
            anyhow::bail!("no {} map under this pin root", l4lb_common::LOCAL_MAP);
        };
        Ok(l.sets.insert(service_id, set, 0)?)
    }

    pub fn del_local_set(&mut self, service_id: u32) -> anyhow::Result<()> {
        let Some(l) = self.local.as_mut() else {
            return Ok(());
        };
        match l.sets.remove(&service_id) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// How connect() used a service's local set, summed over CPUs.
    pub fn local_stats(&self, service_id: u32) -> LocalStats {
        let mut total = LocalStats::default();
        if let Some(v) = self
            .local
            .as_ref()
            .and_then(|l| l.stats.get(&service_id, 0).ok())
        {
            for s in v.iter() {
                total.add(s);
            }
        }
        total
    }

    /// `--locality` as the running agent set it (None: no config map here).
    pub fn locality_mode(&self) -> Option<l4lb_core::locality::Mode> {
        let c = self.health.as_ref()?.config.get(&0, 0).ok()?;
        Some(l4lb_core::locality::Mode::from_raw(u32::from(c.locality)))
    }

    /// Records `--locality` in the config map, for the CLI.
    pub fn set_locality_mode(&mut self, mode: l4lb_core::locality::Mode) -> anyhow::Result<()> {
        let Some(h) = self.health.as_mut() else {
            return Ok(());
        };
        let mut c = h.config.get(&0, 0)?;
        c.locality = mode.raw() as u16;
        Ok(h.config.set(0, c, 0)?)
    }
}
