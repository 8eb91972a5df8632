//! [`IncrementalCatalog`]: the catalog of a set of parts, kept up to date
//! part by part in time proportional to the change, with the same result as
//! [`catalog_from_parts`](super::catalog_from_parts) over the same parts in
//! key order.
//!
//! A replaced part marks the groups (datapath VIPs) it declares, before and
//! after, as dirty; the next catalog merges only those again, from the
//! parts that still declare them, and re-derives their services, and the IP
//! VIPs sitting where a re-derived named VIP was or is. Named-VIP addresses
//! are asked of the allocator only when the set of wanted names of a family
//! changed, or the allocator is not in the state they were taken from (its
//! generation differs); otherwise the last addresses hold.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use super::{
    AppPart, ParseError, Parsed, Warning,
    catalog::{Allocated, Families, Group, GroupKey, ip_service, named_group_services, squatter},
    catalog_with_hosts,
    declared::Declared,
    group_view::GroupView,
    task_runs::TaskRuns,
};
use crate::hosts::HostTable;
use crate::model::{Catalog, DesiredState, Proto, ServiceMap, Vip, desired_state};
use crate::naming::{Family, VipAllocator};

/// Parts keyed by `K` (the catalog takes them in `K` order) and the catalog
/// they make, kept between changes.
#[derive(Clone, Debug)]
pub struct IncrementalCatalog<K> {
    parts: BTreeMap<K, AppPart>,
    /// Every declared group; one no part declares any more stays until its
    /// services are derived again (its VIPs are withdrawn then).
    groups: BTreeMap<GroupKey, Declared<K>>,
    /// Groups whose parts changed since the last catalog.
    dirty: BTreeSet<GroupKey>,
    /// Per family, how many named groups of each key have a backend in it.
    wanted: BTreeMap<Family, BTreeMap<Arc<str>, usize>>,
    wanted_changed: bool,
    /// The allocator generation `addrs` were taken at.
    generation: Option<u64>,
    addrs: Allocated,
    /// The addresses the derived named VIPs sit at, from when `addrs` is
    /// taken anew until they are derived again (None: at `addrs`).
    derived_at: Option<Allocated>,
    /// Persistent: each catalog hands out an O(1) copy that shares what
    /// the next change leaves alone.
    services: ServiceMap,
    /// Which named key holds each named VIP.
    named_at: BTreeMap<Vip, Arc<str>>,
    /// IP VIPs left out because a named VIP holds their address.
    squatters: BTreeMap<Vip, Warning>,
    tasks: TaskRuns<K>,
    /// The parts' own warnings, of parts that have some.
    warnings: BTreeMap<K, Vec<Warning>>,
    /// Parts with agents known by name: while there is one, catalogs are
    /// full builds (their backends need the host table's resolution).
    named_agents: BTreeSet<K>,
}

impl<K> Default for IncrementalCatalog<K> {
    fn default() -> Self {
        IncrementalCatalog {
            parts: BTreeMap::new(),
            groups: BTreeMap::new(),
            dirty: BTreeSet::new(),
            wanted: BTreeMap::new(),
            wanted_changed: false,
            generation: None,
            addrs: Allocated::new(),
            derived_at: None,
            services: ServiceMap::new(),
            named_at: BTreeMap::new(),
            squatters: BTreeMap::new(),
            tasks: TaskRuns::default(),
            warnings: BTreeMap::new(),
            named_agents: BTreeSet::new(),
        }
    }
}

impl<K: Ord + Clone> IncrementalCatalog<K> {
    pub fn len(&self) -> usize {
        self.parts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// The parts, in key order (the order the catalog takes them in).
    pub fn parts(&self) -> impl Iterator<Item = &AppPart> {
        self.parts.values()
    }

    /// The keys of the parts, in order.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.parts.keys()
    }

    pub fn get(&self, id: &K) -> Option<&AppPart> {
        self.parts.get(id)
    }

    /// True while a part has agents known by name (catalogs are then full
    /// builds, see [`catalog_map_with`](Self::catalog_map_with)).
    pub fn has_named_agents(&self) -> bool {
        !self.named_agents.is_empty()
    }

    /// Sets (`Some`) or removes (`None`) the part `id`.
    pub fn replace(&mut self, id: K, part: Option<AppPart>) {
        self.swap(id, part);
    }

    /// [`replace`](Self::replace), returning what the part was if that
    /// changed anything (`Some(None)`: there was none), None if it was
    /// already equal: what a caller needs to undo it.
    pub fn swap(&mut self, id: K, part: Option<AppPart>) -> Option<Option<AppPart>> {
        if self.parts.get(&id) == part.as_ref() {
            return None; // e.g. a snapshot repeating a task as it was
        }
        let old = self.parts.remove(&id);
        if let Some(old) = &old {
            self.withdraw(&id, old);
        }
        if let Some(new) = part {
            self.enter(&id, &new);
            self.parts.insert(id, new);
        }
        Some(old)
    }

    fn withdraw(&mut self, id: &K, old: &AppPart) {
        for (gk, _) in &old.groups {
            if let Some(d) = self.groups.get_mut(gk) {
                d.remove(id);
            }
            self.dirty.insert(gk.clone());
        }
        self.tasks.withdraw(id, old);
        self.warnings.remove(id);
        self.named_agents.remove(id);
    }

    fn enter(&mut self, id: &K, new: &AppPart) {
        for (gk, _) in &new.groups {
            let d = self.groups.entry(gk.clone()).or_default();
            d.add(id);
            self.dirty.insert(gk.clone());
        }
        self.tasks.enter(id, new);
        if !new.warnings.is_empty() {
            self.warnings.insert(id.clone(), new.warnings.clone());
        }
        let by_name = new.groups.iter().any(|(_, g)| !g.by_name.is_empty());
        if by_name || !new.named_agents.is_empty() {
            self.named_agents.insert(id.clone());
        }
    }

    /// The catalog of the parts: what [`catalog_from_parts`](super::catalog_from_parts) gives for them
    /// in key order, with the same allocator rules. On error (a family's
    /// range is full) the allocator is left as a full build leaves it and
    /// the next call retries the same changes. While a part has agents known
    /// by name (Marathon's; Mesos parts have none) this is a full build.
    pub fn catalog(&mut self, alloc: &mut VipAllocator) -> Result<Parsed, ParseError> {
        let mut p = self.catalog_map(alloc)?;
        if let Some(services) = &p.services {
            p.catalog.services = desired_state(services);
        }
        Ok(p)
    }

    /// [`catalog`](Self::catalog), whose `catalog.services` is left empty
    /// when `services` holds them: the copy of every service the catalog
    /// needs is made by the caller, off the path to the maps (a full build
    /// fills it).
    pub fn catalog_map(&mut self, alloc: &mut VipAllocator) -> Result<Parsed, ParseError> {
        self.catalog_map_with(alloc, &HostTable::default())
    }

    /// [`catalog_map`](Self::catalog_map); while a part has agents known by
    /// name, a full build that looks them up in `hosts`.
    pub fn catalog_map_with(
        &mut self,
        alloc: &mut VipAllocator,
        hosts: &HostTable,
    ) -> Result<Parsed, ParseError> {
        // Out while merged (a merge leaves it alone), kept for a retry.
        let dirty = std::mem::take(&mut self.dirty);
        for gk in &dirty {
            self.merge(gk);
        }
        self.dirty = dirty;
        if !self.named_agents.is_empty() {
            return catalog_with_hosts(self.parts.values(), &[], alloc, hosts);
        }
        self.allocate(alloc)?;
        let dirty = std::mem::take(&mut self.dirty);
        self.derive(dirty);
        Ok(self.parsed())
    }

    /// Merges `gk` again from the parts that declare it: counts the names
    /// its backends' families want (the group itself is made only when its
    /// services are derived).
    fn merge(&mut self, gk: &GroupKey) {
        let Some(d) = self.groups.get_mut(gk) else {
            return; // no part declares it, nor has since it was derived away
        };
        let (before, after) = (d.families, families(&self.parts, d.parts(), gk));
        d.families = after;
        let GroupKey::Named { key, .. } = gk else {
            return;
        };
        for f in before.minus(after).iter() {
            self.unwant(f, key);
        }
        for f in after.minus(before).iter() {
            *self
                .wanted
                .entry(f)
                .or_default()
                .entry(key.clone())
                .or_default() += 1;
            self.wanted_changed = true;
        }
    }

    /// `gk` merged from the parts that declare it (None: none does).
    fn group(&self, gk: &GroupKey) -> Option<Group> {
        let d = self.groups.get(gk)?;
        let mut group = Group::default();
        for id in d.parts() {
            let part = &self.parts[id];
            if let Some(pg) = part.group(gk) {
                group.add(&part.id, pg);
            }
        }
        Some(group)
    }

    fn unwant(&mut self, family: Family, key: &str) {
        let Some(keys) = self.wanted.get_mut(&family) else {
            return;
        };
        if let Some(n) = keys.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                keys.remove(key);
                self.wanted_changed = true;
            }
        }
    }

    /// Asks `alloc` for the wanted names' addresses when they, or the
    /// allocator, changed; named groups whose address moved become dirty.
    fn allocate(&mut self, alloc: &mut VipAllocator) -> Result<(), ParseError> {
        if !self.wanted_changed && self.generation == Some(alloc.generation()) {
            return Ok(());
        }
        // Both families, V4 first, like a full build (same errors, same
        // allocator state after one).
        let mut addrs = Allocated::new();
        for family in [Family::V4, Family::V6] {
            let keys: BTreeSet<String> = self
                .wanted
                .get(&family)
                .map(|w| w.keys().map(|k| k.to_string()).collect())
                .unwrap_or_default();
            addrs.insert(family, alloc.allocate(family, &keys)?);
        }
        let old = std::mem::replace(&mut self.addrs, addrs);
        let old = self.derived_at.get_or_insert(old);
        // Until a first allocation succeeds nothing was derived, so every
        // group is dirty still: no moved name's groups to add (a search
        // per name in a first build).
        if self.generation.is_some() {
            for key in moved(old, &self.addrs) {
                self.dirty.extend(named_groups(&self.groups, key).cloned());
            }
        }
        self.generation = Some(alloc.generation());
        self.wanted_changed = false;
        Ok(())
    }

    /// Re-derives the services of `dirty` groups, and of IP VIPs where a
    /// re-derived named VIP was or is.
    fn derive(&mut self, dirty: BTreeSet<GroupKey>) {
        let derived_at = self.derived_at.take();
        let mut ip_vips = BTreeSet::new();
        let mut named = Vec::new();
        for gk in dirty {
            for vip in self
                .take_vips(&gk, derived_at.as_ref())
                .into_iter()
                .flatten()
            {
                self.services.remove(&vip);
                self.named_at.remove(&vip);
                ip_vips.insert(vip);
            }
            if self.groups.get(&gk).is_some_and(|d| d.parts().is_empty()) {
                self.groups.remove(&gk);
            }
            match gk {
                GroupKey::Ip(vip) => drop(ip_vips.insert(vip)),
                GroupKey::Named { .. } => named.push(gk),
            }
        }
        for vip in &ip_vips {
            self.squatters.remove(vip);
            if !self.named_at.contains_key(vip) {
                self.services.remove(vip);
            }
        }
        for gk in named {
            self.derive_named(gk, &mut ip_vips);
        }
        for vip in ip_vips {
            self.derive_ip(vip);
        }
    }

    /// The VIPs the named group `gk` got when its services were last
    /// derived (at its name's address then: `derived_at`, else `addrs`),
    /// forgotten; none for an IP VIP's group.
    fn take_vips(&mut self, gk: &GroupKey, derived_at: Option<&Allocated>) -> [Option<Vip>; 2] {
        let mut out = [None; 2];
        let (GroupKey::Named { key, port, proto }, Some(d)) = (gk, self.groups.get_mut(gk)) else {
            return out;
        };
        let at = derived_at.unwrap_or(&self.addrs);
        for (vip, family) in out.iter_mut().zip(std::mem::take(&mut d.vips).iter()) {
            let ip = at.get(&family).and_then(|a| a.get(&**key));
            *vip = ip.map(|&ip| Vip {
                addr: SocketAddr::new(ip, *port),
                proto: *proto,
            });
        }
        out
    }

    fn derive_named(&mut self, gk: GroupKey, ip_vips: &mut BTreeSet<Vip>) {
        let GroupKey::Named { key, port, proto } = &gk else {
            return;
        };
        let named = (&**key, *port, *proto);
        let made = self.with_group(&gk, |g| named_group_services(named, g, &self.addrs));
        let mut vips = Families::default();
        for (vip, spec) in made.unwrap_or_default() {
            self.named_at.insert(vip, key.clone());
            self.services.insert(vip, spec);
            ip_vips.insert(vip);
            vips = vips.with(Family::of(vip.addr.ip()));
        }
        if let Some(d) = self.groups.get_mut(&gk) {
            d.vips = vips;
        }
    }

    fn derive_ip(&mut self, vip: Vip) {
        let named = self.named_at.get(&vip);
        let made = self.with_group(&GroupKey::Ip(vip), |g| {
            // No backend (scaled to 0): withdrawn.
            g.has_backends().then(|| match named {
                Some(key) => Err(squatter(&vip, g, key)),
                None => Ok(ip_service(g)),
            })
        });
        match made.flatten() {
            Some(Ok(spec)) => drop(self.services.insert(vip, spec)),
            Some(Err(squat)) => drop(self.squatters.insert(vip, squat)),
            None => {}
        }
    }

    /// `f` of `gk`'s group (None: no part declares it), read in place when
    /// one part declares it, else merged from its parts.
    fn with_group<T>(&self, gk: &GroupKey, f: impl FnOnce(GroupView) -> T) -> Option<T> {
        let d = self.groups.get(gk)?;
        if let [id] = d.parts() {
            let part = &self.parts[id];
            if let Some(pg) = part.group(gk) {
                return Some(f(GroupView::One {
                    app_id: &part.id,
                    pg,
                }));
            }
        }
        let group = self.group(gk)?;
        Some(f(GroupView::Merged(&group)))
    }

    /// The catalog, its services in `services` only.
    fn parsed(&self) -> Parsed {
        let warnings = self.warnings.values().flatten();
        Parsed {
            services: Some(self.services.clone()),
            catalog: Catalog {
                services: DesiredState::default(),
                tasks: self.tasks.list(),
                packed: self
                    .parts
                    .values()
                    .filter_map(|p| p.packed.clone())
                    .collect(),
                cluster: None,
            },
            warnings: warnings.chain(self.squatters.values()).cloned().collect(),
            hosts: BTreeSet::new(),
        }
    }
}

/// The families of the backends `parts` declare for `gk`: what merging
/// them into a [`Group`] would give, without making it.
fn families<K: Ord>(all: &BTreeMap<K, AppPart>, parts: &[K], gk: &GroupKey) -> Families {
    let mut out = Families::default();
    for id in parts {
        if let Some(pg) = all[id].group(gk) {
            out = out.union(Families::of(pg.backends.iter().map(|(a, _)| a)));
        }
    }
    out
}

/// Names whose address changed (or came, or went) in some family, a name
/// once per family it moved in (its groups are marked dirty, a set).
fn moved<'a>(old: &'a Allocated, new: &'a Allocated) -> Vec<&'a str> {
    static EMPTY: BTreeMap<String, IpAddr> = BTreeMap::new();
    let mut keys = Vec::new();
    for family in [Family::V4, Family::V6] {
        let (a, b) = (old.get(&family), new.get(&family));
        let (a, b) = (a.unwrap_or(&EMPTY), b.unwrap_or(&EMPTY));
        for (k, ip) in a {
            if b.get(k) != Some(ip) {
                keys.push(k.as_str());
            }
        }
        for k in b.keys() {
            if !a.contains_key(k) {
                keys.push(k.as_str());
            }
        }
    }
    keys
}

/// The named groups of `key` (every port and protocol).
fn named_groups<'g, K>(
    groups: &'g BTreeMap<GroupKey, Declared<K>>,
    key: &str,
) -> impl Iterator<Item = &'g GroupKey> {
    let first = GroupKey::Named {
        key: Arc::from(key),
        port: 0,
        proto: Proto::Tcp,
    };
    groups
        .range(first..)
        .map(|(gk, _)| gk)
        .take_while(move |gk| matches!(gk, GroupKey::Named { key: k, .. } if **k == *key))
}

#[cfg(test)]
#[path = "incremental_tests.rs"]
mod tests;
