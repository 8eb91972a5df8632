//! The agent's identity in the pinned self map (`L4LB_SELF`): the socket
//! hooks never rewrite the calls of that process, so a VIP on Marathon's
//! address (or a DNS upstream's) cannot capture the agent's own reads.
//!
//! Written before the agent makes any control-plane connection: on a restart
//! the map is already pinned (and read by the programs the previous agent left
//! attached), so `register` opens and writes it before the sources start; on
//! a fresh node nothing is attached yet and `load` writes it once the map
//! exists, before it attaches the hooks.
use std::{os::unix::fs::MetadataExt, path::Path};

use anyhow::{Context, Result};
use aya::maps::{Array, MapData};
use l4lb_common::{AgentId, SELF_MAP};

/// This process as the hooks see it: its pid namespace and its pid there.
pub fn identity() -> Result<AgentId> {
    let ns = std::fs::metadata("/proc/self/ns/pid").context("reading /proc/self/ns/pid")?;
    Ok(AgentId {
        pidns_dev: kernel_dev(ns.dev()),
        pidns_ino: ns.ino(),
        // getpid(): the pid in our own namespace, as the helper reports it.
        tgid: std::process::id(),
        _pad: 0,
    })
}

/// stat's st_dev (glibc encoding) as the kernel's internal dev_t
/// (major << 20 | minor), which is what bpf_get_ns_current_pid_tgid compares.
fn kernel_dev(st_dev: u64) -> u64 {
    (u64::from(libc::major(st_dev)) << 20) | u64::from(libc::minor(st_dev))
}

/// Writes this process into the pinned self map under `pin_root`. Ok(false):
/// no such pin yet (a fresh node, where no hook is attached either).
pub fn register(pin_root: &Path) -> Result<bool> {
    let path = pin_root.join(SELF_MAP);
    if !path.exists() {
        return Ok(false);
    }
    let data = MapData::from_pin(&path).with_context(|| format!("opening {}", path.display()))?;
    let mut map: Array<MapData, AgentId> = aya::maps::Map::Array(data).try_into()?;
    map.set(0, identity()?, 0)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(true)
}

/// The identity registered under `pin_root`, if any (CLI, tests).
pub fn registered(pin_root: &Path) -> Result<AgentId> {
    let path = pin_root.join(SELF_MAP);
    let data = MapData::from_pin(&path).with_context(|| format!("opening {}", path.display()))?;
    let map: Array<MapData, AgentId> = aya::maps::Map::Array(data).try_into()?;
    Ok(map.get(&0, 0)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_dev_packs_major_and_minor_like_mkdev() {
        // glibc makedev(0, 0x1234) = 0x34 | 0x1200 << 12; the kernel's MKDEV(0, 0x1234) = 0x1234.
        let st_dev = libc::makedev(0, 0x1234);
        assert_eq!(kernel_dev(st_dev), 0x1234);
        assert_eq!(kernel_dev(libc::makedev(8, 1)), (8 << 20) | 1);
    }

    #[test]
    fn identity_is_this_process_in_its_pid_namespace() {
        let id = identity().unwrap();
        assert_eq!(id.tgid, std::process::id());
        assert_ne!(id.pidns_ino, 0);
    }
}
