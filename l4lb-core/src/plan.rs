//! Diff between what the maps hold (`Applied`) and what they should hold
//! (`DesiredState`): an ordered list of map writes. Pure; the datapath module
//! executes it. The order is the safety argument:
//!
//! 1. new backends are written before any slot names them;
//! 2. a changed service's new Maglev table is written into a FREE range of the
//!    slots array, then one update of its service value switches to that range,
//!    so a connect() or packet sees the old set or the new set, never a mix;
//! 3. removed services disappear from the services map first;
//! 4. only after a grace period (in-flight programs may still use the old
//!    range) are old members and unused backends deleted; the old range becomes
//!    free for the next plan, which starts after the grace period.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
};

use l4lb_common::{
    Backend, MAX_BACKENDS, MAX_SERVICES, MAX_SLOTS, MemberKey, ServiceKey, ServiceValue,
};
use serde::Serialize;

use crate::{
    codec,
    model::{DesiredState, ServiceSpec, Vip},
    slots::{maglev, table_size},
};

/// One service as the maps hold it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AppliedService {
    pub id: u32,
    pub revision: u32,
    /// Its Maglev table: `slot_count` slots of the array from `slot_base`.
    pub slot_base: u32,
    pub slot_count: u32,
    /// backend id → weight.
    pub members: BTreeMap<u32, u32>,
    /// Its slots are not the table of its members (adoption check, `adopt.rs`):
    /// the next plan rewrites it even if its members are unchanged.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stale: bool,
}

/// Everything the maps hold, as read back by the datapath or predicted by a plan.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Applied {
    pub services: BTreeMap<Vip, AppliedService>,
    /// backend id → address.
    pub backends: BTreeMap<u32, SocketAddr>,
    /// (service id, backend id) of members whose service is not in the
    /// services map (a crash between a removal and its cleanup, or before a
    /// new service's switch): deleted by the next plan, their ids not reused.
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub orphan_members: BTreeSet<(u32, u32)>,
}

impl Applied {
    /// The desired state these maps implement (for comparisons and the CLI).
    pub fn to_desired(&self) -> DesiredState {
        let services = self
            .services
            .iter()
            .map(|(vip, s)| {
                let backends = s
                    .members
                    .iter()
                    .filter_map(|(id, w)| Some((*self.backends.get(id)?, *w)))
                    .collect();
                (
                    *vip,
                    ServiceSpec {
                        name: None,
                        framework: None,
                        origin: None,
                        backends,
                    },
                )
            })
            .collect();
        DesiredState { services }
    }
}

/// A service's Maglev table, filled when it is written: the plan of a full
/// sync would otherwise hold every service's table at once (10,000 services
/// of 503 slots: 20 MB), where the members take a tenth of that.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotTable {
    pub size: u32,
    /// (backend id, address, weight); the address keys the permutation.
    members: Vec<(u32, SocketAddr, u32)>,
}

impl SlotTable {
    /// The table of `size` slots for (backend id, address, weight) members.
    pub fn new(size: u32, members: Vec<(u32, SocketAddr, u32)>) -> SlotTable {
        SlotTable { size, members }
    }

    /// Backend ids for the table's `size` slots.
    pub fn fill(&self) -> Vec<u32> {
        let keyed: Vec<(u32, String, u32)> = self
            .members
            .iter()
            .map(|(id, a, w)| (*id, a.to_string(), *w))
            .collect();
        maglev(&keyed, self.size)
    }
}

/// One map write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    PutBackend(u32, Backend),
    ResetBackendStats(u32),
    ResetServiceStats(u32),
    /// Slots `base..base + table.size` of the slots array.
    WriteSlots {
        base: u32,
        table: SlotTable,
    },
    PutMember(MemberKey, u32),
    DelMember(MemberKey),
    PutService(ServiceKey, ServiceValue),
    DelService(ServiceKey),
    DelBackend(u32),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub added: usize,
    pub changed: usize,
    pub removed: usize,
    pub unchanged: usize,
}

/// Sizes of the maps a plan allocates from (their max_entries).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    pub services: u32,
    pub backends: u32,
    pub slots: u32,
}

impl Default for Capacity {
    fn default() -> Self {
        Capacity {
            services: MAX_SERVICES,
            backends: MAX_BACKENDS,
            slots: MAX_SLOTS,
        }
    }
}

#[derive(Debug, Default)]
pub struct Plan {
    /// Safe to run at once, in order.
    pub now: Vec<Op>,
    /// Run after in-flight programs can no longer use what `now` replaced.
    pub after_grace: Vec<Op>,
    /// What the maps hold once both lists ran.
    pub next: Applied,
    pub summary: Summary,
    /// Services left out because a map is full (the rest apply; services
    /// already in the maps keep their table).
    pub skipped: Vec<(Vip, PlanError)>,
}

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("the services map is full ({capacity} VIPs; raise --max-services)")]
    ServicesFull { capacity: u32 },
    #[error("the backends map is full: no id for {need} new backend(s) of {vip} (it holds {max}; raise --max-backends)", max = .capacity.saturating_sub(1))]
    BackendsFull {
        vip: Vip,
        need: usize,
        capacity: u32,
    },
    #[error(
        "the slots array is full: no free range of {need} slots for {vip} (capacity {capacity}; raise --max-slots)"
    )]
    SlotsFull { vip: Vip, need: u32, capacity: u32 },
}

/// Allocator of the lowest ids not in use, in `first..limit`.
struct IdPool {
    used: BTreeSet<u32>,
    /// Every id below this is used or taken.
    next: u32,
    limit: u32,
    /// Ids left to take: `has` is O(1), so a full pool costs nothing per service.
    free: usize,
}

impl IdPool {
    fn new(used: BTreeSet<u32>, first: u32, limit: u32) -> IdPool {
        let taken = used.range(first..limit.max(first)).count();
        let free = (limit.saturating_sub(first) as usize).saturating_sub(taken);
        IdPool {
            used,
            next: first,
            limit,
            free,
        }
    }

    /// True if `n` more ids can be taken.
    fn has(&self, n: usize) -> bool {
        self.free >= n
    }

    fn take(&mut self) -> Option<u32> {
        let id = (self.next..self.limit).find(|id| !self.used.contains(id))?;
        self.used.insert(id);
        self.next = id + 1;
        self.free -= 1;
        Some(id)
    }
}

/// Backend ids by address: the ones in the maps, and those this plan adds
/// (with the writes that add them). Ids of backends about to be deleted are
/// not reused in the same plan.
struct BackendIds {
    by_addr: BTreeMap<SocketAddr, u32>,
    pool: IdPool,
    /// Counter resets, then puts: the puts form one batch write.
    resets: Vec<Op>,
    puts: Vec<Op>,
}

impl BackendIds {
    fn new(applied: &Applied, capacity: u32) -> BackendIds {
        BackendIds {
            by_addr: applied.backends.iter().map(|(id, a)| (*a, *id)).collect(),
            pool: IdPool::new(applied.backends.keys().copied().collect(), 1, capacity),
            resets: Vec::new(),
            puts: Vec::new(),
        }
    }

    /// The addresses of `spec` that have no id yet.
    fn missing(&self, spec: &ServiceSpec) -> Vec<SocketAddr> {
        spec.backends
            .keys()
            .filter(|a| !self.by_addr.contains_key(a))
            .copied()
            .collect()
    }

    /// Ids for `addrs` (all or none), with the writes that add them.
    fn add(&mut self, addrs: &[SocketAddr]) -> bool {
        if !self.pool.has(addrs.len()) {
            return false;
        }
        for addr in addrs {
            let id = self.pool.take().expect("checked by has()");
            self.resets.push(Op::ResetBackendStats(id));
            self.puts.push(Op::PutBackend(id, codec::backend(*addr)));
            self.by_addr.insert(*addr, id);
        }
        true
    }

    /// backend id → weight for `spec` (every address has an id).
    fn members(&self, spec: &ServiceSpec) -> BTreeMap<u32, u32> {
        spec.backends
            .iter()
            .map(|(a, w)| (self.by_addr[a], *w))
            .collect()
    }
}

/// First-fit allocator over the slots array. Everything an applied service
/// uses is taken (old ranges of services being replaced included: programs
/// may still read them until the grace period ends).
struct Ranges {
    /// start → len of free intervals.
    free: BTreeMap<u32, u32>,
}

impl Ranges {
    fn new(capacity: u32, used: impl Iterator<Item = (u32, u32)>) -> Ranges {
        let mut used: Vec<(u32, u32)> = used.filter(|(_, len)| *len > 0).collect();
        used.sort();
        let mut free = BTreeMap::new();
        let mut at = 0u32;
        for (base, len) in used {
            if base > at {
                free.insert(at, base - at);
            }
            at = at.max(base.saturating_add(len));
        }
        if capacity > at {
            free.insert(at, capacity - at);
        }
        Ranges { free }
    }

    fn alloc(&mut self, len: u32) -> Option<u32> {
        let (&start, &flen) = self.free.iter().find(|(_, l)| **l >= len)?;
        self.free.remove(&start);
        if flen > len {
            self.free.insert(start + len, flen - len);
        }
        Some(start)
    }
}

/// `cap` gives the maps' sizes. A service that does not fit (services map,
/// backends map or slots array full) is skipped and listed in
/// `Plan::skipped`, keeping its current table if it has one; the rest apply.
pub fn plan(applied: &Applied, desired: &DesiredState, cap: Capacity) -> Plan {
    let mut p = Plan::default();
    let mut backends = BackendIds::new(applied, cap.backends);
    // Ids of orphan members' services stay taken until those are deleted.
    let used_service_ids = applied
        .services
        .values()
        .map(|s| s.id)
        .chain(applied.orphan_members.iter().map(|(s, _)| *s));
    let mut service_ids = IdPool::new(used_service_ids.collect(), 0, cap.services);
    let mut ranges = Ranges::new(
        cap.slots,
        applied
            .services
            .values()
            .map(|s| (s.slot_base, s.slot_count)),
    );
    let mut service_ops = Vec::new();

    for (vip, spec) in &desired.services {
        let old = applied.services.get(vip);
        if let Some(old) = old
            && !old.stale
            && backends.missing(spec).is_empty()
            && old.members == backends.members(spec)
        {
            p.summary.unchanged += 1;
            p.next.services.insert(*vip, old.clone());
            continue;
        }
        match place(
            vip,
            spec,
            old,
            &mut backends,
            &mut service_ids,
            &mut ranges,
            cap,
        ) {
            Ok((svc, ops)) => {
                if old.is_some() {
                    p.summary.changed += 1
                } else {
                    p.summary.added += 1
                }
                service_ops.extend(ops);
                if let Some(old) = old {
                    for b in old.members.keys().filter(|b| !svc.members.contains_key(b)) {
                        p.after_grace.push(Op::DelMember(MemberKey {
                            service_id: svc.id,
                            backend_id: *b,
                        }));
                    }
                }
                p.next.services.insert(*vip, svc);
            }
            Err(e) => {
                // A changed service that does not fit keeps its current table.
                if let Some(old) = old {
                    p.next.services.insert(*vip, old.clone());
                }
                p.skipped.push((*vip, e));
            }
        }
    }
    // New backends exist before any slot names them.
    p.now.append(&mut backends.resets);
    p.now.append(&mut backends.puts);
    p.now.extend(service_ops);

    for (vip, old) in applied
        .services
        .iter()
        .filter(|(v, _)| !desired.services.contains_key(v))
    {
        p.summary.removed += 1;
        p.now.push(Op::DelService(codec::service_key(vip)));
        for b in old.members.keys() {
            p.after_grace.push(Op::DelMember(MemberKey {
                service_id: old.id,
                backend_id: *b,
            }));
        }
    }
    for (service_id, backend_id) in &applied.orphan_members {
        p.after_grace.push(Op::DelMember(MemberKey {
            service_id: *service_id,
            backend_id: *backend_id,
        }));
    }
    // Backends: exactly those the next table's members name.
    let addr: BTreeMap<u32, SocketAddr> =
        backends.by_addr.iter().map(|(a, id)| (*id, *a)).collect();
    p.next.backends = p
        .next
        .services
        .values()
        .flat_map(|s| s.members.keys())
        .filter_map(|id| Some((*id, *addr.get(id)?)))
        .collect();
    for id in applied
        .backends
        .keys()
        .filter(|id| !p.next.backends.contains_key(id))
    {
        p.after_grace.push(Op::DelBackend(*id));
    }
    p
}

/// Finds room for a new or changed service (backend ids, a service id, a
/// free slot range) and returns what it will be and the writes that make it
/// so (table, members, then the switch); nothing is taken if it does not fit.
fn place(
    vip: &Vip,
    spec: &ServiceSpec,
    old: Option<&AppliedService>,
    backends: &mut BackendIds,
    service_ids: &mut IdPool,
    ranges: &mut Ranges,
    cap: Capacity,
) -> Result<(AppliedService, Vec<Op>), PlanError> {
    if old.is_none() && !service_ids.has(1) {
        return Err(PlanError::ServicesFull {
            capacity: cap.services,
        });
    }
    let missing = backends.missing(spec);
    if !backends.pool.has(missing.len()) {
        return Err(PlanError::BackendsFull {
            vip: *vip,
            need: missing.len(),
            capacity: cap.backends,
        });
    }
    let live = spec.backends.values().filter(|w| **w > 0).count();
    let size = table_size(live, old.map(|o| o.slot_count).unwrap_or(0));
    // What `maglev` fills: nothing without a live backend.
    let slot_count = if live == 0 || size < 2 { 0 } else { size };
    let slot_base = match slot_count {
        0 => 0,
        n => ranges.alloc(n).ok_or(PlanError::SlotsFull {
            vip: *vip,
            need: n,
            capacity: cap.slots,
        })?,
    };
    backends.add(&missing);
    let mut ops = Vec::new();
    let (id, revision, old_members) = match old {
        Some(o) => (o.id, o.revision.wrapping_add(1), o.members.clone()),
        None => {
            let id = service_ids.take().expect("checked by has()");
            ops.push(Op::ResetServiceStats(id));
            (id, 0, BTreeMap::new())
        }
    };
    let members = backends.members(spec);
    if slot_count > 0 {
        let table = spec
            .backends
            .iter()
            .map(|(addr, w)| (backends.by_addr[addr], *addr, *w))
            .collect();
        ops.push(Op::WriteSlots {
            base: slot_base,
            table: SlotTable::new(slot_count, table),
        });
    }
    for (b, w) in &members {
        if old_members.get(b) != Some(w) {
            ops.push(Op::PutMember(
                MemberKey {
                    service_id: id,
                    backend_id: *b,
                },
                *w,
            ));
        }
    }
    ops.push(Op::PutService(
        codec::service_key(vip),
        ServiceValue {
            id,
            slot_count,
            revision,
            slot_base,
        },
    ));
    Ok((
        AppliedService {
            id,
            revision,
            slot_base,
            slot_count,
            members,
            stale: false,
        },
        ops,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Proto;

    const CAP: Capacity = Capacity {
        services: 1 << 16,
        backends: 1 << 16,
        slots: 1 << 16,
    };

    fn vip(s: &str) -> Vip {
        Vip {
            addr: s.parse().unwrap(),
            proto: Proto::Tcp,
        }
    }

    fn state(services: &[(&str, &[(&str, u32)])]) -> DesiredState {
        DesiredState {
            services: services
                .iter()
                .map(|(v, bs)| {
                    let backends = bs.iter().map(|(a, w)| (a.parse().unwrap(), *w)).collect();
                    (
                        vip(v),
                        ServiceSpec {
                            name: None,
                            framework: None,
                            origin: None,
                            backends,
                        },
                    )
                })
                .collect(),
        }
    }

    /// A simulated map set checking the safety order: after every op, every
    /// service's table is fully written and names existing backends, and no two
    /// live services share a slot.
    #[derive(Default)]
    struct Maps {
        services: BTreeMap<ServiceKey, ServiceValue>,
        slots: BTreeMap<u32, u32>,
        backends: BTreeMap<u32, Backend>,
    }

    impl Maps {
        fn run(&mut self, ops: &[Op]) {
            for op in ops {
                match op {
                    Op::PutBackend(id, b) => drop(self.backends.insert(*id, *b)),
                    Op::WriteSlots { base, table } => {
                        let backends = table.fill();
                        assert_eq!(backends.len() as u32, table.size);
                        for (i, b) in backends.iter().enumerate() {
                            self.slots.insert(base + i as u32, *b);
                        }
                    }
                    Op::PutService(k, v) => drop(self.services.insert(*k, *v)),
                    Op::DelService(k) => drop(self.services.remove(k)),
                    Op::DelBackend(id) => drop(self.backends.remove(id)),
                    _ => {}
                }
                self.assert_consistent();
            }
        }

        fn assert_consistent(&self) {
            let mut owner = BTreeMap::new();
            for v in self.services.values() {
                for i in 0..v.slot_count {
                    let s = v.slot_base + i;
                    let b = self
                        .slots
                        .get(&s)
                        .unwrap_or_else(|| panic!("slot {s} unwritten"));
                    assert!(
                        self.backends.contains_key(b),
                        "slot {s} names missing backend {b}"
                    );
                    assert_eq!(
                        owner.insert(s, v.id),
                        None,
                        "slot {s} shared by two services"
                    );
                }
            }
        }
    }

    fn apply(maps: &mut Maps, applied: &Applied, desired: &DesiredState) -> Plan {
        let p = plan(applied, desired, CAP);
        maps.run(&p.now);
        maps.run(&p.after_grace);
        p
    }

    #[test]
    fn add_change_remove_keeps_every_step_consistent() {
        let mut maps = Maps::default();
        let s1 = state(&[("11.0.0.1:80", &[("10.0.0.1:80", 1), ("10.0.0.2:80", 1)])]);
        let p1 = apply(&mut maps, &Applied::default(), &s1);
        assert_eq!(
            p1.summary,
            Summary {
                added: 1,
                ..Default::default()
            }
        );
        assert_eq!(p1.next.to_desired(), s1);

        let s2 = state(&[
            ("11.0.0.1:80", &[("10.0.0.2:80", 3), ("10.0.0.3:80", 1)]),
            ("11.0.0.2:53", &[("10.0.0.3:80", 1)]),
        ]);
        let p2 = apply(&mut maps, &p1.next, &s2);
        assert_eq!(
            p2.summary,
            Summary {
                added: 1,
                changed: 1,
                ..Default::default()
            }
        );
        let svc = &p2.next.services[&vip("11.0.0.1:80")];
        assert_eq!(svc.revision, 1, "a change bumps the revision");
        assert_ne!(
            svc.slot_base,
            p1.next.services[&vip("11.0.0.1:80")].slot_base,
            "a change writes a new range"
        );
        let gone = p1
            .next
            .backends
            .iter()
            .find(|(_, a)| a.to_string() == "10.0.0.1:80")
            .map(|(id, _)| *id)
            .unwrap();
        assert!(p2.after_grace.contains(&Op::DelBackend(gone)));
        assert_eq!(p2.next.to_desired(), s2);

        let s3 = state(&[("11.0.0.2:53", &[("10.0.0.3:80", 1)])]);
        let p3 = apply(&mut maps, &p2.next, &s3);
        assert_eq!(
            p3.summary,
            Summary {
                removed: 1,
                unchanged: 1,
                ..Default::default()
            }
        );
        assert_eq!(maps.services.len(), 1);
        assert_eq!(maps.backends.len(), 1);
    }

    #[test]
    fn the_switch_is_the_last_write_of_a_change() {
        let s1 = state(&[("11.0.0.1:80", &[("10.0.0.1:80", 1)])]);
        let p1 = plan(&Applied::default(), &s1, CAP);
        let s2 = state(&[("11.0.0.1:80", &[("10.0.0.2:80", 1)])]);
        let p2 = plan(&p1.next, &s2, CAP);
        let switch = p2
            .now
            .iter()
            .position(|o| matches!(o, Op::PutService(..)))
            .unwrap();
        let slots = p2
            .now
            .iter()
            .position(|o| matches!(o, Op::WriteSlots { .. }))
            .unwrap();
        let new_backend = p2
            .now
            .iter()
            .position(|o| matches!(o, Op::PutBackend(..)))
            .unwrap();
        assert!(new_backend < slots && slots < switch);
        // The old backend and member go only after the grace period.
        assert!(
            !p2.now
                .iter()
                .any(|o| matches!(o, Op::DelBackend(_) | Op::DelMember(_)))
        );
        assert_eq!(p2.after_grace.len(), 2);
    }

    #[test]
    fn unchanged_services_are_not_touched() {
        let s = state(&[
            ("11.0.0.1:80", &[("10.0.0.1:80", 1)]),
            ("11.0.0.2:80", &[("10.0.0.1:80", 2)]),
        ]);
        let p1 = plan(&Applied::default(), &s, CAP);
        let p2 = plan(&p1.next, &s, CAP);
        assert!(p2.now.is_empty() && p2.after_grace.is_empty());
        assert_eq!(p2.summary.unchanged, 2);
        assert_eq!(p2.next, p1.next);
    }

    #[test]
    fn weight_zero_members_hold_no_slot_and_an_all_zero_service_refuses() {
        let s = state(&[
            ("11.0.0.1:80", &[("10.0.0.1:80", 0), ("10.0.0.2:80", 1)]),
            ("11.0.0.2:80", &[("10.0.0.1:80", 0)]),
        ]);
        let mut maps = Maps::default();
        let p = apply(&mut maps, &Applied::default(), &s);
        assert_eq!(p.next.services[&vip("11.0.0.1:80")].members.len(), 2);
        let v = maps.services[&codec::service_key(&vip("11.0.0.1:80"))];
        assert_eq!(
            v.slot_count, 251,
            "one live backend: the smallest Maglev table"
        );
        let live = *p
            .next
            .backends
            .iter()
            .find(|(_, a)| a.to_string() == "10.0.0.2:80")
            .unwrap()
            .0;
        assert!((v.slot_base..v.slot_base + v.slot_count).all(|s| maps.slots[&s] == live));
        assert_eq!(
            maps.services[&codec::service_key(&vip("11.0.0.2:80"))].slot_count,
            0
        );
    }

    #[test]
    fn freed_ranges_are_reused_and_a_full_array_is_an_error() {
        // Room for exactly two 251-slot tables.
        let cap = Capacity { slots: 502, ..CAP };
        let one = |b: &str| state(&[("11.0.0.1:80", &[(b, 1)])]);
        let p1 = plan(&Applied::default(), &one("10.0.0.1:80"), cap);
        let p2 = plan(&p1.next, &one("10.0.0.2:80"), cap);
        // The next change reuses the first range (its readers are long gone).
        let p3 = plan(&p2.next, &one("10.0.0.3:80"), cap);
        assert_eq!(
            p3.next.services[&vip("11.0.0.1:80")].slot_base,
            p1.next.services[&vip("11.0.0.1:80")].slot_base
        );
        // A second service does not fit next to a table being replaced: it is
        // skipped, the changed one still applies.
        let two = state(&[
            ("11.0.0.1:80", &[("10.0.0.4:80", 1)]),
            ("11.0.0.2:80", &[("10.0.0.4:80", 1)]),
        ]);
        let p4 = plan(&p3.next, &two, cap);
        assert_eq!(p4.skipped.len(), 1, "{:?}", p4.skipped);
        assert!(
            matches!(p4.skipped[0], (v, PlanError::SlotsFull { need: 251, capacity: 502, .. }) if v == vip("11.0.0.2:80"))
        );
        assert_eq!(p4.summary.changed, 1);

        // A full services map: existing services stay, new ones beyond it are skipped.
        let small = Capacity { services: 2, ..CAP };
        let three = state(&[
            ("11.0.0.1:80", &[("10.0.0.1:80", 1)]),
            ("11.0.0.2:80", &[("10.0.0.1:80", 1)]),
            ("11.0.0.3:80", &[("10.0.0.1:80", 1)]),
        ]);
        let p = plan(&Applied::default(), &three, small);
        assert_eq!(p.next.services.len(), 2);
        assert!(
            matches!(p.skipped[..], [(v, PlanError::ServicesFull { capacity: 2 })] if v == vip("11.0.0.3:80"))
        );
    }

    #[test]
    fn the_id_pool_counts_what_is_left() {
        let mut pool = IdPool::new([1, 2, 4, 9].into(), 1, 6);
        assert!(pool.has(2) && !pool.has(3));
        assert_eq!(
            (pool.take(), pool.take(), pool.take()),
            (Some(3), Some(5), None)
        );
        assert!(!pool.has(1));
    }

    #[test]
    fn a_full_backends_map_skips_only_the_services_that_need_a_new_backend() {
        // Ids 1 and 2 only.
        let cap = Capacity { backends: 3, ..CAP };
        let s1 = state(&[
            ("11.0.0.1:80", &[("10.0.0.1:80", 1)]),
            ("11.0.0.2:80", &[("10.0.0.2:80", 1)]),
        ]);
        let mut maps = Maps::default();
        let p1 = plan(&Applied::default(), &s1, cap);
        maps.run(&p1.now);
        // 11.0.0.1 changes onto known backends; 11.0.0.3 needs a third backend.
        let s2 = state(&[
            ("11.0.0.1:80", &[("10.0.0.1:80", 1), ("10.0.0.2:80", 1)]),
            ("11.0.0.2:80", &[("10.0.0.2:80", 1)]),
            ("11.0.0.3:80", &[("10.0.0.3:80", 1)]),
        ]);
        let p2 = plan(&p1.next, &s2, cap);
        assert!(
            matches!(p2.skipped[..], [(v, PlanError::BackendsFull { need: 1, capacity: 3, .. })] if v == vip("11.0.0.3:80")),
            "{:?}",
            p2.skipped
        );
        assert!(
            p2.skipped[0].1.to_string().contains("11.0.0.3:80"),
            "the warning names the VIP"
        );
        assert_eq!(
            p2.summary,
            Summary {
                changed: 1,
                unchanged: 1,
                ..Default::default()
            }
        );
        assert!(!p2.now.iter().any(|o| matches!(o, Op::PutBackend(..))));
        maps.run(&p2.now);
        maps.run(&p2.after_grace);
        assert_eq!(p2.next.services[&vip("11.0.0.1:80")].members.len(), 2);
    }

    #[test]
    fn a_changed_service_that_keeps_its_table_keeps_its_backends() {
        // Room for two 251-slot tables: the change of 11.0.0.1 does not fit.
        let cap = Capacity { slots: 502, ..CAP };
        let s1 = state(&[
            ("11.0.0.1:80", &[("10.0.0.1:80", 1)]),
            ("11.0.0.2:80", &[("10.0.0.2:80", 1)]),
        ]);
        let mut maps = Maps::default();
        let p1 = plan(&Applied::default(), &s1, cap);
        maps.run(&p1.now);
        let s2 = state(&[
            ("11.0.0.1:80", &[("10.0.0.3:80", 1)]),
            ("11.0.0.2:80", &[("10.0.0.2:80", 1)]),
        ]);
        let p2 = plan(&p1.next, &s2, cap);
        assert_eq!(p2.skipped.len(), 1);
        // 10.0.0.1 is still in 11.0.0.1's (kept) table: it must not be deleted.
        maps.run(&p2.now);
        maps.run(&p2.after_grace);
        assert_eq!(p2.next.backends.len(), 2, "{:?}", p2.next.backends);
        assert!(
            !p2.now.iter().any(|o| matches!(o, Op::PutBackend(..))),
            "no backend for a skipped service"
        );
    }

    #[test]
    fn a_stale_service_is_rewritten_and_orphan_members_deleted() {
        let s = state(&[("11.0.0.1:80", &[("10.0.0.1:80", 1)])]);
        let mut applied = plan(&Applied::default(), &s, CAP).next;
        applied.services.get_mut(&vip("11.0.0.1:80")).unwrap().stale = true;
        applied.orphan_members.insert((5, 1));
        let p = plan(&applied, &s, CAP);
        assert_eq!(
            p.summary,
            Summary {
                changed: 1,
                ..Default::default()
            }
        );
        let old = &applied.services[&vip("11.0.0.1:80")];
        let new = &p.next.services[&vip("11.0.0.1:80")];
        assert!(!new.stale && new.revision == old.revision + 1 && new.slot_base != old.slot_base);
        assert!(p.after_grace.contains(&Op::DelMember(MemberKey {
            service_id: 5,
            backend_id: 1
        })));
        assert!(p.next.orphan_members.is_empty());
        // The orphan's service id is not handed out before it is deleted.
        let two = state(&[
            ("11.0.0.1:80", &[("10.0.0.1:80", 1)]),
            ("11.0.0.2:80", &[("10.0.0.1:80", 1)]),
        ]);
        let mut ids = applied.clone();
        ids.orphan_members = [(1, 1)].into();
        assert_ne!(
            plan(&ids, &two, CAP).next.services[&vip("11.0.0.2:80")].id,
            1
        );
    }

    #[test]
    fn ids_are_reused_only_after_removal_completes() {
        let s1 = state(&[("11.0.0.1:80", &[("10.0.0.1:80", 1)])]);
        let p1 = plan(&Applied::default(), &s1, CAP);
        let s2 = state(&[("11.0.0.2:80", &[("10.0.0.2:80", 1)])]);
        let p2 = plan(&p1.next, &s2, CAP);
        let old = &p1.next.services[&vip("11.0.0.1:80")];
        let new = &p2.next.services[&vip("11.0.0.2:80")];
        assert_ne!(
            old.id, new.id,
            "the removed service may still be in use until the grace period ends"
        );
        assert_ne!(old.slot_base, new.slot_base);
        assert!(
            !p1.next
                .backends
                .contains_key(&p2.next.backends.keys().next().copied().unwrap())
        );
    }
}
