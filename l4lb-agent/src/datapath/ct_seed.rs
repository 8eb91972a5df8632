//! The node's seed for the IPv4 connection table's slot hash
//! (`l4lb_common::flow_slot`, `CT_SEED_MAP`): random per pin root, so no
//! client can pick sources whose flows crowd one slot range. Pinned beside
//! the maps because the slots it placed outlive the agent: every load
//! (a restart included) hands the programs the pinned value as a constant.
use std::path::Path;

use anyhow::{Context, Result, bail};
use aya::maps::{Array, Map, MapData};
use l4lb_common::{CONNTRACK4_MAP, CT_SEED_MAP};

/// The pinned seed, made (random) when the pin root has none. Runs before
/// the maps are created, so a connection table is never pinned without it.
pub fn read_or_create(pin_root: &Path) -> Result<u64> {
    if pin_root.join(CT_SEED_MAP).exists() {
        return read(pin_root);
    }
    if pin_root.join(CONNTRACK4_MAP).exists() {
        bail!(
            "{} is pinned without its slot-hash seed {}: its flows cannot be found; {}",
            pin_root.join(CONNTRACK4_MAP).display(),
            CT_SEED_MAP,
            super::abi::advice(pin_root)
        );
    }
    create(pin_root)
}

/// The pinned seed (for `explain` and the tests, which place flows as the
/// programs do).
pub fn read(pin_root: &Path) -> Result<u64> {
    let path = pin_root.join(CT_SEED_MAP);
    let map = MapData::from_pin(&path).with_context(|| format!("opening {}", path.display()))?;
    let array: Array<MapData, u64> = Map::from_map_data(map)?
        .try_into()
        .with_context(|| format!("{} is not a seed map", path.display()))?;
    match array.get(&0, 0) {
        Ok(0) => bail!("{} holds no seed", path.display()),
        Ok(seed) => Ok(seed),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn create(pin_root: &Path) -> Result<u64> {
    // Never 0: 0 is a map nobody wrote.
    let seed = rand::random::<u64>() | 1;
    super::abi::pin_record(pin_root, CT_SEED_MAP, seed)?;
    Ok(seed)
}
