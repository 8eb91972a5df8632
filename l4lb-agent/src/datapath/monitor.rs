//! The pinned monitor maps (`L4LB_MONITOR` ring buffer, `L4LB_MONITOR_CONFIG`
//! lease and filters) as `l4lb-agent monitor` uses them.
use std::path::Path;

use anyhow::{Context, Result, bail};
use aya::maps::{Array, Map, MapData, RingBuf};
use l4lb_common::{MONITOR_CONFIG_MAP, MONITOR_MAP, MonitorConfig, MonitorEvent};

use super::health::monotonic_ns;

pub struct MonitorMaps {
    ring: RingBuf<MapData>,
    config: Array<MapData, MonitorConfig>,
}

fn open(pin_root: &Path, name: &str) -> Result<Map> {
    let path = pin_root.join(name);
    let data = MapData::from_pin(&path).with_context(|| {
        format!(
            "opening {} (is an agent with monitor support running with --pin-root {}?)",
            path.display(),
            pin_root.display()
        )
    })?;
    Map::from_map_data(data).with_context(|| format!("map {}", path.display()))
}

impl MonitorMaps {
    pub fn open_pinned(pin_root: &Path) -> Result<MonitorMaps> {
        Ok(MonitorMaps {
            ring: open(pin_root, MONITOR_MAP)?.try_into()?,
            config: open(pin_root, MONITOR_CONFIG_MAP)?.try_into()?,
        })
    }

    /// Takes (or renews) the lease for `lease_ns` from now. Refuses a live
    /// lease of another running process: the filters are shared.
    pub fn lease(&mut self, mut want: MonitorConfig, lease_ns: u64) -> Result<()> {
        let now = monotonic_ns();
        let held = self.config.get(&0, 0).unwrap_or_default();
        let me = std::process::id();
        if held.until_ns > now && held.owner_pid != me && process_alive(held.owner_pid) {
            bail!(
                "another monitor (pid {}) is running; the programs serve one at a time",
                held.owner_pid
            );
        }
        want.until_ns = now + lease_ns;
        want.owner_pid = me;
        self.config.set(0, want, 0)?;
        Ok(())
    }

    /// Ends the lease: the programs stop sending events.
    pub fn release(&mut self) {
        let _ = self.config.set(0, MonitorConfig::default(), 0);
    }

    /// The events waiting in the ring buffer, oldest first.
    pub fn drain(&mut self, mut each: impl FnMut(MonitorEvent)) {
        while let Some(item) = self.ring.next() {
            if item.len() >= size_of::<MonitorEvent>() {
                // SAFETY: the programs write whole `MonitorEvent`s; the read
                // is unaligned-safe and the length checked.
                each(unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) });
            }
        }
    }
}

fn process_alive(pid: u32) -> bool {
    pid != 0 && Path::new(&format!("/proc/{pid}")).exists()
}
