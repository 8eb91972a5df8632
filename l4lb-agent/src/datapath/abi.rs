//! The map layout (`l4lb_common::ABI_VERSION`) the pinned maps were created
//! with, recorded in the pinned `L4LB_META` array, and checked before any
//! pinned map is adopted: aya reuses whatever is pinned at a map's path without
//! looking at it, so maps of another layout would be read and written as ours.
use std::{fs, os::unix::fs::PermissionsExt, path::Path};

use anyhow::{Context, Result, bail};
use aya::maps::{Array, Map, MapData};
use l4lb_common::{ABI_MAGIC, ABI_VERSION, ALL_MAPS, AbiRecord, META_MAP, UNRECORDED_ABI_VERSION};

/// `BPF_MAP_TYPE_ARRAY` (uapi `enum bpf_map_type`).
const BPF_MAP_TYPE_ARRAY: u32 = 2;

/// Refuses pinned maps of another layout; records ours when there is no record yet.
/// Runs before the object is loaded, so a fresh pin root gets its record first.
pub fn check_and_record(pin_root: &Path, object: &[u8]) -> Result<()> {
    let pinned: Vec<&str> = ALL_MAPS
        .iter()
        .copied()
        .filter(|n| pin_root.join(n).exists())
        .collect();
    let recorded = read(pin_root)?;
    let version = match recorded {
        Some(v) => v,
        None if pinned.is_empty() => ABI_VERSION,
        None => UNRECORDED_ABI_VERSION,
    };
    refuse_other(pin_root, version)?;
    check_shapes(pin_root, object, &pinned)?;
    if recorded.is_none() {
        record(pin_root)?;
    }
    Ok(())
}

/// The recorded version (None: no record). A record that is not ours is an error.
pub fn read(pin_root: &Path) -> Result<Option<u32>> {
    let path = pin_root.join(META_MAP);
    if !path.exists() {
        return Ok(None);
    }
    let map = MapData::from_pin(&path).with_context(|| format!("opening {}", path.display()))?;
    let array: Array<MapData, AbiRecord> = Map::from_map_data(map)?
        .try_into()
        .with_context(|| format!("{} is not an l4lb metadata map", path.display()))?;
    let rec = array
        .get(&0, 0)
        .with_context(|| format!("reading {}", path.display()))?;
    if rec.magic != ABI_MAGIC {
        bail!(
            "{} holds no l4lb layout record; {}",
            path.display(),
            advice(pin_root)
        );
    }
    Ok(Some(rec.abi_version))
}

fn refuse_other(pin_root: &Path, version: u32) -> Result<()> {
    if version != ABI_VERSION {
        bail!(
            "the maps pinned under {} have layout version {version}, this agent writes version {ABI_VERSION}: \
             they cannot be adopted; {}",
            pin_root.display(),
            advice(pin_root)
        );
    }
    Ok(())
}

pub(super) fn advice(pin_root: &Path) -> String {
    format!(
        "run `l4lb-agent teardown --pin-root {}` (VIP connections fail until this agent has loaded its maps), \
         or run the agent version that created them",
        pin_root.display()
    )
}

/// Every pinned map must have the type, key and value size of the object's.
fn check_shapes(pin_root: &Path, object: &[u8], pinned: &[&str]) -> Result<()> {
    let obj = aya_obj::Object::parse(object).context("parsing the BPF object")?;
    for name in pinned {
        let Some(want) = obj.maps.get(*name) else {
            continue;
        };
        let path = pin_root.join(name);
        let info = MapData::from_pin(&path)
            .and_then(|m| m.info())
            .with_context(|| format!("inspecting the pinned map {}", path.display()))?;
        let have = (
            info.map_type().map(|t| t as u32).unwrap_or(u32::MAX),
            info.key_size(),
            info.value_size(),
        );
        let wanted = (want.map_type(), want.key_size(), want.value_size());
        if have != wanted {
            bail!(
                "the pinned map {} has (type, key size, value size) {have:?}, this agent's is {wanted:?}: \
                 another layout; {}",
                path.display(),
                advice(pin_root)
            );
        }
    }
    Ok(())
}

fn record(pin_root: &Path) -> Result<()> {
    let rec = AbiRecord {
        magic: ABI_MAGIC,
        abi_version: ABI_VERSION,
    };
    pin_record(pin_root, META_MAP, rec).context("creating the metadata map")
}

/// Creates a one-entry array holding `value` and pins it at
/// `pin_root/name`, only once written: a crash leaves no record or a whole
/// one. Root-only, as the maps.
pub(super) fn pin_record<V: aya::Pod>(pin_root: &Path, name: &str, value: V) -> Result<()> {
    let path = pin_root.join(name);
    let obj = aya_obj::Map::new_from_params(BPF_MAP_TYPE_ARRAY, 4, size_of::<V>() as u32, 1, 0);
    let map = MapData::create(obj, name, None).with_context(|| format!("creating {name}"))?;
    let mut array: Array<MapData, V> = Map::from_map_data(map)?.try_into()?;
    array.set(0, value, 0)?;
    array
        .pin(&path)
        .with_context(|| format!("pinning {}", path.display()))?;
    let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o600));
    Ok(())
}
