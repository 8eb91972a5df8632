//! Zones updated by what changed, not rebuilt: the agent keeps one
//! [`ZoneIndex`] and feeds it every catalog.
//!
//! The index remembers each task under its identity (framework, task id).
//! An update compares the new catalog's tasks with the remembered ones (an
//! unchanged task costs a hash lookup and a pointer or value compare),
//! withdraws what the vanished or changed ones added (their [`Datum`]s,
//! recomputed by the same builders as a full build rather than kept: they
//! would double the index's memory), adds what the new ones add, and
//! recomputes only the names that were touched. Each name keeps reference counts: how many
//! contributors gave each address or SRV (the name's records are the union,
//! addresses sorted then SRVs sorted, as a full build orders them) and how
//! many names with records lie below it (an empty non-terminal exists while
//! that count is not zero). The published nodes are a persistent map, so the
//! [`Zones`] handed out are O(1) snapshots that later updates do not touch.
use std::{
    collections::{BTreeSet, HashMap, HashSet},
    hash::{Hash, Hasher},
    net::IpAddr,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use hickory_proto::rr::{
    LowerName, Name, RData, Record,
    rdata::{A, AAAA, SRV},
};

use super::records::{
    Zone, ZoneOptions, Zones, apex_records, glue_data, task_data, vip_datum, zone_heads,
};
use crate::model::{Catalog, ServiceSpec, TaskRecord, Vip};

/// One record's worth of data a contributor adds to a zone.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Datum {
    /// Index in [`ZONE_NAMES`](super::records::ZONE_NAMES).
    pub zone: usize,
    pub owner: LowerName,
    pub value: Value,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Value {
    Addr(IpAddr),
    /// Port and target (priority 0, weight 1, as Mesos-DNS).
    Srv(u16, Name),
}

impl Value {
    pub(crate) fn rdata(&self) -> RData {
        match self {
            Value::Addr(IpAddr::V4(a)) => RData::A(A(*a)),
            Value::Addr(IpAddr::V6(a)) => RData::AAAA(AAAA(*a)),
            Value::Srv(port, target) => RData::SRV(SRV::new(0, 1, *port, target.clone())),
        }
    }
}

/// A task's identity: framework and task id. Holds the record it came from
/// so that building the key costs no allocation.
#[derive(Clone)]
struct TaskKey(Arc<TaskRecord>);

impl Hash for TaskKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.framework.hash(state);
        self.0.task_id.hash(state);
    }
}

impl PartialEq for TaskKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.framework == other.0.framework && self.0.task_id == other.0.task_id
    }
}

impl Eq for TaskKey {}

/// A published VIP's name, remembered with what it was made from.
struct VipEntry {
    label: Option<String>,
    framework: Option<String>,
    datum: Option<Datum>,
}

impl VipEntry {
    fn made_from(&self, spec: &ServiceSpec) -> bool {
        self.label == spec.name && self.framework == spec.framework
    }
}

/// One name's reference counts, sorted (a `Vec`: most names have a few
/// values, and a `BTreeMap` node would cost ten times the memory).
#[derive(Default)]
struct Node {
    addrs: Vec<(IpAddr, u32)>,
    srv: Vec<((u16, Name), u32)>,
    /// Names with records strictly below this one.
    below: u32,
}

impl Node {
    fn has_data(&self) -> bool {
        !self.addrs.is_empty() || !self.srv.is_empty()
    }
}

/// One zone: its counts, the names touched since the last publish, and the
/// published snapshot.
struct ZoneState {
    ttl: u32,
    nodes: HashMap<LowerName, Node>,
    dirty: HashSet<LowerName>,
    zone: Zone,
}

/// The agent's zones, updated in time proportional to what changed.
pub struct ZoneIndex {
    opts: ZoneOptions,
    /// The running tasks of each identity (a catalog may repeat an id).
    tasks: HashMap<TaskKey, Vec<Arc<TaskRecord>>>,
    /// The named VIPs in the zone.
    vips: HashMap<Vip, VipEntry>,
    zones: Vec<ZoneState>,
    /// Names recomputed by the last update.
    recomputed: usize,
}

impl ZoneIndex {
    pub fn new(opts: ZoneOptions) -> Self {
        let zones = zone_heads(&opts)
            .into_iter()
            .map(|(origin, ttl)| {
                let [soa, _] = apex_records(&origin, ttl, 0);
                ZoneState {
                    ttl,
                    nodes: HashMap::new(),
                    dirty: HashSet::new(),
                    zone: Zone {
                        origin: LowerName::new(&origin),
                        soa,
                        nodes: imbl::HashMap::new(),
                        records: 0,
                    },
                }
            })
            .collect();
        let mut index = ZoneIndex {
            tasks: HashMap::new(),
            vips: HashMap::new(),
            zones,
            recomputed: 0,
            opts,
        };
        for d in glue_data(&index.opts) {
            add(&mut index.zones, &d);
        }
        index
    }

    /// The zones of `catalog` (named VIPs only for `published`), serial now.
    pub fn update(&mut self, catalog: &Catalog, published: &BTreeSet<Vip>) -> Zones {
        let serial = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(1);
        self.update_at(catalog, published, serial)
    }

    /// [`Self::update`] with a given SOA serial.
    pub fn update_at(
        &mut self,
        catalog: &Catalog,
        published: &BTreeSet<Vip>,
        serial: u32,
    ) -> Zones {
        self.update_tasks(catalog);
        self.update_vips(catalog, published);
        self.recomputed = 0;
        for z in &mut self.zones {
            self.recomputed += z.publish(serial);
        }
        Zones {
            zones: self.zones.iter().map(|z| z.zone.clone()).collect(),
        }
    }

    /// How many names the last update recomputed (each zone's apex included).
    pub fn recomputed(&self) -> usize {
        self.recomputed
    }

    /// Withdraws the tasks that vanished or changed, adds the new ones.
    fn update_tasks(&mut self, catalog: &Catalog) {
        let mut fresh: HashMap<TaskKey, Vec<Arc<TaskRecord>>> =
            HashMap::with_capacity(catalog.tasks.len());
        for t in catalog.tasks.iter().filter(|t| t.running) {
            fresh.entry(TaskKey(t.clone())).or_default().push(t.clone());
        }
        let zones = &mut self.zones;
        let sources = &self.opts.ip_sources;
        self.tasks.retain(|key, old| {
            let unchanged = fresh.get(key).is_some_and(|now| same(old, now));
            if unchanged {
                fresh.remove(key);
            } else {
                let data = old.iter().flat_map(|t| task_data(t, sources));
                data.for_each(|d| withdraw(zones, &d));
            }
            unchanged
        });
        for (key, tasks) in fresh {
            let data = tasks.iter().flat_map(|t| task_data(t, sources));
            data.for_each(|d| add(zones, &d));
            self.tasks.insert(key, tasks);
        }
    }

    /// Withdraws the names of VIPs gone, unpublished or renamed; adds the new.
    fn update_vips(&mut self, catalog: &Catalog, published: &BTreeSet<Vip>) {
        let services = &catalog.services.services;
        let zones = &mut self.zones;
        self.vips.retain(|vip, old| {
            let keep = published.contains(vip)
                && services.get(vip).is_some_and(|spec| old.made_from(spec));
            if !keep && let Some(d) = &old.datum {
                withdraw(zones, d);
            }
            keep
        });
        for (vip, spec) in services.iter().filter(|(v, _)| published.contains(v)) {
            if self.vips.contains_key(vip) {
                continue;
            }
            let datum = vip_datum(vip, spec);
            if let Some(d) = &datum {
                add(zones, d);
            }
            let entry = VipEntry {
                label: spec.name.clone(),
                framework: spec.framework.clone(),
                datum,
            };
            self.vips.insert(*vip, entry);
        }
    }
}

/// Unchanged: the same records, shared (Marathon keeps unchanged ones) or
/// equal (a Mesos snapshot builds new ones).
fn same(old: &[Arc<TaskRecord>], now: &[Arc<TaskRecord>]) -> bool {
    old.len() == now.len()
        && old
            .iter()
            .zip(now)
            .all(|(a, b)| Arc::ptr_eq(a, b) || a == b)
}

fn add(zones: &mut [ZoneState], d: &Datum) {
    zones[d.zone].count(&d.owner, &d.value, true);
}

fn withdraw(zones: &mut [ZoneState], d: &Datum) {
    zones[d.zone].count(&d.owner, &d.value, false);
}

/// `count` up or down by one.
fn step(count: &mut u32, up: bool) {
    *count = if up {
        *count + 1
    } else {
        count.saturating_sub(1)
    };
}

impl ZoneState {
    /// Counts one contributor's `value` at `owner` in (`up`) or out.
    fn count(&mut self, owner: &LowerName, value: &Value, up: bool) {
        let node = self.nodes.entry(owner.clone()).or_default();
        let had = node.has_data();
        match value {
            Value::Addr(ip) => step_entry(&mut node.addrs, *ip, up),
            Value::Srv(port, target) => step_entry(&mut node.srv, (*port, target.clone()), up),
        }
        let has = node.has_data();
        let gone = !has && node.below == 0;
        if gone {
            self.nodes.remove(owner);
        }
        self.dirty.insert(owner.clone());
        if had != has {
            self.count_below(owner, has);
        }
    }

    /// A name got (`up`) or lost its last record: its ancestors below the
    /// apex gain or lose a descendant, and exist (as empty non-terminals)
    /// while they have one.
    fn count_below(&mut self, name: &LowerName, up: bool) {
        let origin = self.zone.origin.clone();
        let mut n = name.base_name();
        while origin.zone_of(&n) && n != origin {
            let node = self.nodes.entry(n.clone()).or_default();
            step(&mut node.below, up);
            if node.below == u32::from(up) {
                // Crossed zero: the name appears or (if empty) goes.
                if node.below == 0 && !node.has_data() {
                    self.nodes.remove(&n);
                }
                self.dirty.insert(n.clone());
            }
            n = n.base_name();
        }
    }

    /// Writes the touched names and the apex (new serial) into the
    /// published map; returns how many names it wrote.
    fn publish(&mut self, serial: u32) -> usize {
        let origin = self.zone.origin.clone();
        let [soa, ns] = apex_records(&origin, self.ttl, serial);
        self.zone.soa = soa.clone();
        self.dirty.insert(origin.clone());
        let touched = self.dirty.len();
        for name in std::mem::take(&mut self.dirty) {
            let mut records = self.nodes.get(&name).map(|n| self.records(&name, n));
            if name == origin {
                records
                    .get_or_insert_default()
                    .extend([soa.clone(), ns.clone()]);
            }
            let old = match records {
                Some(r) => {
                    self.zone.records += r.len();
                    self.zone.nodes.insert(name, r.into())
                }
                None => self.zone.nodes.remove(&name),
            };
            self.zone.records -= old.map_or(0, |r| r.len());
        }
        touched
    }

    /// A name's records: addresses sorted, then SRVs sorted.
    fn records(&self, name: &LowerName, node: &Node) -> Vec<Record> {
        let owner = Name::from(name.clone());
        let values = (node.addrs.iter().map(|(ip, _)| Value::Addr(*ip)))
            .chain(node.srv.iter().map(|((p, t), _)| Value::Srv(*p, t.clone())));
        values
            .map(|v| Record::from_rdata(owner.clone(), self.ttl, v.rdata()))
            .collect()
    }
}

/// One contributor more (`up`) or less for `key`; the key goes at zero.
fn step_entry<K: Ord>(counts: &mut Vec<(K, u32)>, key: K, up: bool) {
    match (counts.binary_search_by(|(k, _)| k.cmp(&key)), up) {
        (Ok(i), true) => counts[i].1 += 1,
        (Err(i), true) => counts.insert(i, (key, 1)),
        (Ok(i), false) => {
            counts[i].1 -= 1;
            if counts[i].1 == 0 {
                counts.remove(i);
            }
        }
        (Err(_), false) => {}
    }
}

#[cfg(test)]
mod tests;
