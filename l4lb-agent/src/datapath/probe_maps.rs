//! The agent's handles for probing down backends (`crate::health_probe`):
//! `L4LB_HEALTH` read only (the kernel programs are its writers) and
//! `L4LB_PROBES`, which the probe loop alone writes. Opened from the pins, so
//! the probe loop owns its handles and never shares the apply loop's.
use std::path::Path;

use anyhow::{Context, Result};
use aya::maps::{Array, Map, MapData};
use l4lb_common::{BackendHealth, HEALTH_MAP, PROBES_MAP, ProbeMark};

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

    /// The kernel's `down_until_ns` of a backend (0: not down; also for an
    /// id the map cannot be read at).
    pub fn down_until(&self, id: u32) -> u64 {
        self.health.get(&id, 0).map_or(0, |h| h.down_until_ns)
    }

    pub fn mark(&self, id: u32) -> Result<ProbeMark> {
        Ok(self.probes.get(&id, 0)?)
    }

    pub fn set_mark(&mut self, id: u32, mark: ProbeMark) -> Result<()> {
        Ok(self.probes.set(id, mark, 0)?)
    }
}
