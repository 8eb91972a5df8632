//! The locality map (`L4LB_LOCAL`): the agent writes each service's local set
//! (`crate::locality`), read back for the CLI. How the connect hooks used it
//! is counted in the service's `L4LB_SVC_STATS` record (`Maps::local_stats`).
use aya::maps::{HashMap, MapData};
use l4lb_common::LocalSet;

use super::Maps;

/// Handle on the locality map (None under a pin root that predates it).
pub(super) struct LocalMaps {
    pub(super) sets: HashMap<MapData, u32, LocalSet>,
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
