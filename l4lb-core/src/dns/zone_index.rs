//! Zones updated by what changed, not rebuilt: the agent keeps one
//! [`ZoneIndex`] and feeds it every catalog.
//!
//! The index remembers each task under its identity (framework, task id).
//! An update compares the new catalog's tasks with the remembered ones (an
//! unchanged task costs a hash lookup and a pointer or value compare),
//! withdraws what the vanished or changed ones added (their [`Datum`]s,
//! recomputed by the same builders as a full build rather than kept: they
//! would double the index's memory), adds what the new ones add, and
//! rewrites only the names that were touched. Each name ([`ZoneNode`])
//! keeps, next to its records, reference counts: how many contributors gave
//! each record (the records are the union, addresses sorted then SRVs
//! sorted, as a full build orders them) and how many names with records lie
//! below it (an empty non-terminal exists while that count is not zero).
//! The nodes live in a persistent map, so the [`Zones`] handed out are O(1)
//! snapshots that later updates do not touch.
use std::{
    collections::BTreeSet,
    hash::{Hash, Hasher},
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use hickory_proto::rr::{LowerName, Name};

use super::wire_name::{self, WireName};

use super::records::{
    Zone, ZoneOptions, Zones, apex_records, cluster_data, glue_data, task_data, vip_datum,
    zone_heads,
};
pub(crate) use super::zone_node::{Value, ZoneNode};
use crate::model::{Catalog, Cluster, ServiceSpec, TaskRecord, Vip};

/// Every update hashes each task's identity twice: a fast hasher, seeded
/// per map (ids come from the cluster, so not a fixed seed either).
pub(super) type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// One record's worth of data a contributor adds to a zone.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Datum {
    /// Index in [`ZONE_NAMES`](super::records::ZONE_NAMES).
    pub zone: usize,
    pub owner: WireName,
    pub value: Value,
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

/// One zone and how many names the current update wrote.
struct ZoneState {
    zone: Zone,
    writes: usize,
}

/// The agent's zones, updated in time proportional to what changed.
pub struct ZoneIndex {
    opts: ZoneOptions,
    /// The running tasks of each identity (a catalog may repeat an id).
    tasks: HashMap<TaskKey, Vec<Arc<TaskRecord>>>,
    /// The last catalog's running tasks, in its order: the next catalog is
    /// compared with it by pointer (sources keep unchanged records), and
    /// only the stretch between the common head and tail is looked at.
    last: Vec<Arc<TaskRecord>>,
    /// The named VIPs in the zone.
    vips: HashMap<Vip, VipEntry>,
    /// The cluster whose records are in the Mesos-DNS zone.
    cluster: Option<Arc<Cluster>>,
    zones: Vec<ZoneState>,
}

impl ZoneIndex {
    pub fn new(opts: ZoneOptions) -> Self {
        let zones = zone_heads(&opts)
            .into_iter()
            .map(|(origin, ttl)| {
                let apex = apex_records(&origin, ttl, 0);
                ZoneState {
                    writes: 0,
                    zone: Zone {
                        origin: LowerName::new(&origin),
                        origin_wire: WireName::new(&origin),
                        ttl,
                        apex,
                        nodes: imbl::OrdMap::new(),
                        records: 0,
                    },
                }
            })
            .collect();
        let mut index = ZoneIndex {
            tasks: HashMap::default(),
            last: Vec::new(),
            vips: HashMap::default(),
            cluster: None,
            zones,
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
        self.zones.iter_mut().for_each(|z| z.writes = 0);
        self.update_tasks(catalog);
        self.update_vips(catalog, published);
        self.update_cluster(catalog);
        for z in &mut self.zones {
            z.set_apex(serial);
        }
        let zones = self.zones.iter().map(|z| z.zone.clone()).collect();
        Zones::loaded(zones, &self.opts)
    }

    /// How many times the last update wrote a name (each zone's apex
    /// included): what it cost beyond comparing the catalog with the last.
    pub fn node_writes(&self) -> usize {
        self.zones.iter().map(|z| z.writes).sum()
    }

    /// Withdraws the tasks that vanished or changed, adds the new ones:
    /// from the stretch that differs from the last catalog when it is short,
    /// else from a comparison of every task.
    fn update_tasks(&mut self, catalog: &Catalog) {
        let now: Vec<Arc<TaskRecord>> = catalog
            .tasks
            .iter()
            .filter(|t| t.running)
            .cloned()
            .collect();
        let pairs = || self.last.iter().zip(&now);
        let head = pairs().take_while(|(a, b)| Arc::ptr_eq(a, b)).count();
        let rest = || self.last[head..].iter().rev().zip(now[head..].iter().rev());
        let tail = rest().take_while(|(a, b)| Arc::ptr_eq(a, b)).count();
        let old = &self.last[head..self.last.len() - tail];
        let new = &now[head..now.len() - tail];
        let short = !self.last.is_empty() && old.len() + new.len() <= STRETCH_MAX;
        let (old, new) = (old.to_vec(), new.to_vec());
        if !(short && self.update_stretch(&old, &new)) {
            self.update_all_tasks(catalog);
        }
        self.last = now;
    }

    /// The identities of the tasks in `old` (gone from the stretch) and
    /// `new` (in it now) get their new task lists; the rest of the catalog
    /// is the same records as before. False, with nothing changed, if the
    /// index does not hold a task of `old` (then every task is compared).
    fn update_stretch(&mut self, old: &[Arc<TaskRecord>], new: &[Arc<TaskRecord>]) -> bool {
        let mut next: HashMap<TaskKey, Vec<Arc<TaskRecord>>> = HashMap::default();
        for t in old.iter().chain(new) {
            let key = TaskKey(t.clone());
            let had = self.tasks.get(&key).cloned().unwrap_or_default();
            next.entry(key).or_insert(had);
        }
        for t in old {
            let list = next.get_mut(&TaskKey(t.clone())).expect("listed above");
            match list.iter().position(|x| Arc::ptr_eq(x, t)) {
                Some(i) => drop(list.remove(i)),
                None => return false,
            }
        }
        for t in new {
            let list = next.get_mut(&TaskKey(t.clone())).expect("listed above");
            list.push(t.clone());
        }
        let (sources, domain) = (&self.opts.ip_sources, &self.opts.mesos_domain);
        for (key, now) in next {
            let had = self.tasks.remove(&key).unwrap_or_default();
            if same(&had, &now) {
                // Equal records: keep the new ones, which the next catalog
                // shares.
                self.tasks.insert(key, now);
                continue;
            }
            let gone = had.iter().flat_map(|t| task_data(t, sources, domain));
            gone.for_each(|d| withdraw(&mut self.zones, &d));
            let added = now.iter().flat_map(|t| task_data(t, sources, domain));
            added.for_each(|d| add(&mut self.zones, &d));
            if let Some(first) = now.first() {
                self.tasks.insert(TaskKey(first.clone()), now);
            }
        }
        true
    }

    /// Every task of `catalog` found in the index (a hash lookup each).
    fn update_all_tasks(&mut self, catalog: &Catalog) {
        let mut fresh: HashMap<TaskKey, Vec<Arc<TaskRecord>>> =
            HashMap::with_capacity_and_hasher(catalog.tasks.len(), Default::default());
        for t in catalog.tasks.iter().filter(|t| t.running) {
            fresh.entry(TaskKey(t.clone())).or_default().push(t.clone());
        }
        let zones = &mut self.zones;
        let (sources, domain) = (&self.opts.ip_sources, &self.opts.mesos_domain);
        let mut changed = Vec::new();
        self.tasks.retain(|key, old| match fresh.remove(key) {
            Some(now) if same(old, &now) => {
                // Equal records: keep the new ones, which the next catalog
                // shares.
                *old = now;
                true
            }
            now => {
                let data = old.iter().flat_map(|t| task_data(t, sources, domain));
                data.for_each(|d| withdraw(zones, &d));
                changed.extend(now);
                false
            }
        });
        for tasks in fresh.into_values().chain(changed) {
            let data = tasks.iter().flat_map(|t| task_data(t, sources, domain));
            data.for_each(|d| add(zones, &d));
            self.tasks.insert(TaskKey(tasks[0].clone()), tasks);
        }
    }

    /// Swaps the cluster records when the cluster changed (it rarely does:
    /// an agent, a framework or the leader).
    fn update_cluster(&mut self, catalog: &Catalog) {
        let same = match (&self.cluster, &catalog.cluster) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
            (a, b) => a.is_none() && b.is_none(),
        };
        if same {
            return;
        }
        let domain = &self.opts.mesos_domain;
        if let Some(old) = self.cluster.take() {
            cluster_data(&old, domain)
                .iter()
                .for_each(|d| withdraw(&mut self.zones, d));
        }
        if let Some(new) = &catalog.cluster {
            cluster_data(new, domain)
                .iter()
                .for_each(|d| add(&mut self.zones, d));
        }
        self.cluster = catalog.cluster.clone();
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

/// Longest stretch (old and new tasks together) that differs from the last
/// catalog and is still handled task by task.
const STRETCH_MAX: usize = 256;

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

impl ZoneState {
    /// Counts one contributor's `value` at `owner` in (`up`) or out.
    fn count(&mut self, owner: &WireName, value: &Value, up: bool) {
        let node = self.node_mut(owner);
        let had = node.len() > 0;
        let delta = node.count(value, up);
        let has = node.len() > 0;
        if node.is_unused() {
            self.zone.nodes.remove(&**owner);
        }
        self.zone.records = self.zone.records.wrapping_add_signed(delta);
        self.writes += 1;
        if had != has {
            self.count_below(owner, has);
        }
    }

    /// A name got (`up`) or lost its last record: its ancestors below the
    /// apex gain or lose a descendant, and exist (as empty non-terminals)
    /// while they have one.
    fn count_below(&mut self, name: &[u8], up: bool) {
        if !wire_name::is_within(name, &self.zone.origin_wire) {
            return;
        }
        // Each parent of a name within the origin is within it too: the
        // walk stops at the origin's length, not borrowing the origin
        // across `node_mut` (which a copy of it per name did).
        let apex_len = self.zone.origin_wire.len();
        let mut n = wire_name::parent(name);
        while n.len() > apex_len {
            let node = self.node_mut(n);
            node.count_below(up);
            if node.is_unused() {
                self.zone.nodes.remove(n);
            }
            self.writes += 1;
            n = wire_name::parent(n);
        }
    }

    /// The node of `name`, made (empty) if missing; the key is copied only
    /// then.
    fn node_mut(&mut self, name: &[u8]) -> &mut ZoneNode {
        let nodes = &mut self.zone.nodes;
        // Two walks of the tree either way (a missing name is made by the
        // second); a borrowed key is enough to find one.
        let node = if nodes.contains_key(name) {
            nodes.get_mut(name).expect("held")
        } else {
            nodes.entry(WireName::from(name)).or_default()
        };
        Arc::make_mut(node)
    }

    /// The apex's SOA (serial `serial`) and NS.
    fn set_apex(&mut self, serial: u32) {
        let origin = Name::from(self.zone.origin.clone());
        self.zone.apex = apex_records(&origin, self.zone.ttl, serial);
        self.writes += 1;
    }
}
#[cfg(test)]
mod tests;
