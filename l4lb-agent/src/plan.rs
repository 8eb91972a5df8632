//! Diff between what the maps hold (`Applied`) and what they should hold
//! (`DesiredState`): an ordered list of map writes. Pure; the datapath module
//! executes it. The order is the safety argument:
//!
//! 1. new backends are written before any slot names them;
//! 2. a changed service's slots are written into its *inactive* generation,
//!    then one update of its service value flips to that generation, so a
//!    connect() sees the old set or the new set, never a mix;
//! 3. removed services disappear from the services map first;
//! 4. only after a grace period (in-flight programs may still hold the old
//!    generation) are the old slots, members and unused backends deleted.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
};

use l4lb_common::{
    Backend, MAX_BACKENDS, MAX_SERVICES, MemberKey, ServiceKey, ServiceValue, SlotKey,
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
    /// Slots present per generation (the active one is `revision & 1`).
    pub slot_counts: [u32; 2],
    /// backend id → weight.
    pub members: BTreeMap<u32, u32>,
}

/// Everything the maps hold, as read back by the datapath or predicted by a plan.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Applied {
    pub services: BTreeMap<Vip, AppliedService>,
    /// backend id → address.
    pub backends: BTreeMap<u32, SocketAddr>,
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
                        backends,
                    },
                )
            })
            .collect();
        DesiredState { services }
    }
}

/// One map write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    PutBackend(u32, Backend),
    ResetBackendStats(u32),
    ResetServiceStats(u32),
    PutSlot(SlotKey, u32),
    DelSlot(SlotKey),
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

#[derive(Debug, Default)]
pub struct Plan {
    /// Safe to run at once, in order.
    pub now: Vec<Op>,
    /// Run after in-flight programs can no longer use the previous generation.
    pub after_grace: Vec<Op>,
    /// What the maps hold once both lists ran.
    pub next: Applied,
    pub summary: Summary,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("too many services: {0} (the services map holds {MAX_SERVICES})")]
    TooManyServices(usize),
    #[error("too many backends: {0} distinct addresses (the backends map holds {max})", max = MAX_BACKENDS - 1)]
    TooManyBackends(usize),
}

/// Lowest ids not in `used`, starting at `first`, below `limit`.
fn free_ids(used: &BTreeSet<u32>, first: u32, limit: u32) -> impl Iterator<Item = u32> + '_ {
    (first..limit).filter(move |id| !used.contains(id))
}

pub fn plan(applied: &Applied, desired: &DesiredState) -> Result<Plan, PlanError> {
    let mut p = Plan::default();

    // Backend ids: keep existing ones, allocate the lowest free for new addresses.
    // Ids of backends about to be deleted are not reused in this plan.
    let by_addr: BTreeMap<SocketAddr, u32> =
        applied.backends.iter().map(|(id, a)| (*a, *id)).collect();
    let wanted: BTreeSet<SocketAddr> = desired
        .services
        .values()
        .flat_map(|s| s.backends.keys().copied())
        .collect();
    let used_backend_ids: BTreeSet<u32> = applied.backends.keys().copied().collect();
    let mut new_backend_ids = free_ids(&used_backend_ids, 1, MAX_BACKENDS);
    let mut backend_id: BTreeMap<SocketAddr, u32> = BTreeMap::new();
    for addr in &wanted {
        let id = match by_addr.get(addr) {
            Some(id) => *id,
            None => {
                let id = new_backend_ids
                    .next()
                    .ok_or(PlanError::TooManyBackends(wanted.len()))?;
                p.now.push(Op::ResetBackendStats(id));
                p.now.push(Op::PutBackend(id, codec::backend(*addr)));
                id
            }
        };
        backend_id.insert(*addr, id);
    }
    p.next.backends = backend_id.iter().map(|(a, id)| (*id, *a)).collect();

    let used_service_ids: BTreeSet<u32> = applied.services.values().map(|s| s.id).collect();
    let mut new_service_ids = free_ids(&used_service_ids, 0, MAX_SERVICES);

    for (vip, spec) in &desired.services {
        let members: BTreeMap<u32, u32> = spec
            .backends
            .iter()
            .map(|(a, w)| (backend_id[a], *w))
            .collect();
        let old = applied.services.get(vip);
        if let Some(old) = old
            && old.members == members
        {
            p.summary.unchanged += 1;
            p.next.services.insert(*vip, old.clone());
            continue;
        }
        let (id, revision, mut slot_counts, old_members) = match old {
            Some(o) => (
                o.id,
                o.revision.wrapping_add(1),
                o.slot_counts,
                o.members.clone(),
            ),
            None => {
                let id = new_service_ids
                    .next()
                    .ok_or(PlanError::TooManyServices(desired.services.len()))?;
                p.now.push(Op::ResetServiceStats(id));
                (id, 0, [0, 0], BTreeMap::new())
            }
        };
        if old.is_some() {
            p.summary.changed += 1
        } else {
            p.summary.added += 1
        }
        let generation = revision & 1;
        let keyed: Vec<(u32, String, u32)> =
            spec.backends.iter().map(|(addr, w)| (backend_id[addr], addr.to_string(), *w)).collect();
        let live = keyed.iter().filter(|(_, _, w)| *w > 0).count();
        let current = old.map(|o| o.slot_counts[(o.revision & 1) as usize]).unwrap_or(0);
        let table = maglev(&keyed, table_size(live, current));
        for (index, backend) in table.iter().enumerate() {
            p.now.push(Op::PutSlot(
                SlotKey {
                    service_id: id,
                    generation,
                    index: index as u32,
                },
                *backend,
            ));
        }
        // Slots left over in this generation from two revisions ago are beyond
        // the new count and unreachable; drop them now.
        for index in table.len() as u32..slot_counts[generation as usize] {
            p.now.push(Op::DelSlot(SlotKey {
                service_id: id,
                generation,
                index,
            }));
        }
        slot_counts[generation as usize] = table.len() as u32;
        for (b, w) in &members {
            if old_members.get(b) != Some(w) {
                p.now.push(Op::PutMember(
                    MemberKey {
                        service_id: id,
                        backend_id: *b,
                    },
                    *w,
                ));
            }
        }
        let value = ServiceValue {
            id,
            slot_count: table.len() as u32,
            revision,
            flags: 0,
        };
        p.now.push(Op::PutService(codec::service_key(vip), value));
        for b in old_members.keys().filter(|b| !members.contains_key(b)) {
            p.now.push(Op::DelMember(MemberKey {
                service_id: id,
                backend_id: *b,
            }));
        }
        p.next.services.insert(
            *vip,
            AppliedService {
                id,
                revision,
                slot_counts,
                members,
            },
        );
    }

    for (vip, old) in applied
        .services
        .iter()
        .filter(|(v, _)| !desired.services.contains_key(v))
    {
        p.summary.removed += 1;
        p.now.push(Op::DelService(codec::service_key(vip)));
        for generation in 0..2u32 {
            for index in 0..old.slot_counts[generation as usize] {
                p.after_grace.push(Op::DelSlot(SlotKey {
                    service_id: old.id,
                    generation,
                    index,
                }));
            }
        }
        for b in old.members.keys() {
            p.after_grace.push(Op::DelMember(MemberKey {
                service_id: old.id,
                backend_id: *b,
            }));
        }
    }
    for id in applied
        .backends
        .keys()
        .filter(|id| !p.next.backends.contains_key(id))
    {
        p.after_grace.push(Op::DelBackend(*id));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Proto;

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
                            backends,
                        },
                    )
                })
                .collect(),
        }
    }

    /// Applies a plan's ops to a simulated map set, checking the safety order:
    /// every slot the active generation names resolves to a backend after each op.
    #[derive(Default)]
    struct Maps {
        services: BTreeMap<ServiceKey, ServiceValue>,
        slots: BTreeMap<SlotKey, u32>,
        backends: BTreeMap<u32, Backend>,
    }

    impl Maps {
        fn run(&mut self, ops: &[Op], check: bool) {
            for op in ops {
                match op {
                    Op::PutBackend(id, b) => drop(self.backends.insert(*id, *b)),
                    Op::PutSlot(k, b) => drop(self.slots.insert(*k, *b)),
                    Op::DelSlot(k) => drop(self.slots.remove(k)),
                    Op::PutService(k, v) => drop(self.services.insert(*k, *v)),
                    Op::DelService(k) => drop(self.services.remove(k)),
                    Op::DelBackend(id) => drop(self.backends.remove(id)),
                    _ => {}
                }
                if check {
                    self.assert_consistent();
                }
            }
        }

        fn assert_consistent(&self) {
            for v in self.services.values() {
                for index in 0..v.slot_count {
                    let k = SlotKey {
                        service_id: v.id,
                        generation: v.generation(),
                        index,
                    };
                    let b = self
                        .slots
                        .get(&k)
                        .unwrap_or_else(|| panic!("missing slot {k:?}"));
                    assert!(
                        self.backends.contains_key(b),
                        "slot {k:?} names missing backend {b}"
                    );
                }
            }
        }
    }

    fn apply(maps: &mut Maps, applied: &Applied, desired: &DesiredState) -> Plan {
        let p = plan(applied, desired).unwrap();
        maps.run(&p.now, true);
        maps.run(&p.after_grace, true);
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
        assert_eq!(
            svc.revision, 1,
            "a change bumps the revision and flips the generation"
        );
        assert!(
            p2.after_grace.contains(&Op::DelBackend(
                p1.next
                    .backends
                    .iter()
                    .find(|(_, a)| a.port() == 80 && a.ip().to_string() == "10.0.0.1")
                    .map(|(id, _)| *id)
                    .unwrap()
            ))
        );
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
        // Only the remaining service's slots are left.
        assert!(
            maps.slots
                .keys()
                .all(|k| k.service_id == p3.next.services[&vip("11.0.0.2:53")].id)
        );
    }

    #[test]
    fn the_flip_is_the_last_write_of_a_change() {
        let s1 = state(&[("11.0.0.1:80", &[("10.0.0.1:80", 1)])]);
        let p1 = plan(&Applied::default(), &s1).unwrap();
        let s2 = state(&[("11.0.0.1:80", &[("10.0.0.2:80", 1)])]);
        let p2 = plan(&p1.next, &s2).unwrap();
        let flip = p2
            .now
            .iter()
            .position(|o| matches!(o, Op::PutService(..)))
            .unwrap();
        let last_slot = p2
            .now
            .iter()
            .rposition(|o| matches!(o, Op::PutSlot(..)))
            .unwrap();
        let new_backend = p2
            .now
            .iter()
            .position(|o| matches!(o, Op::PutBackend(..)))
            .unwrap();
        assert!(new_backend < last_slot && last_slot < flip);
        // The old backend goes only after the grace period.
        assert!(!p2.now.iter().any(|o| matches!(o, Op::DelBackend(_))));
        assert_eq!(p2.after_grace.len(), 1);
    }

    #[test]
    fn unchanged_services_are_not_touched() {
        let s = state(&[
            ("11.0.0.1:80", &[("10.0.0.1:80", 1)]),
            ("11.0.0.2:80", &[("10.0.0.1:80", 2)]),
        ]);
        let p1 = plan(&Applied::default(), &s).unwrap();
        let p2 = plan(&p1.next, &s).unwrap();
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
        let a = &p.next.services[&vip("11.0.0.1:80")];
        assert_eq!(a.members.len(), 2);
        let v = maps.services[&codec::service_key(&vip("11.0.0.1:80"))];
        assert_eq!(v.slot_count, 251, "one live backend: the smallest Maglev table");
        let generation = v.generation();
        assert!(maps.slots.iter().filter(|(k, _)| k.generation == generation && k.service_id == v.id).all(|(_, b)| *b == p.next.backends.iter().find(|(_, a)| a.to_string() == "10.0.0.2:80").map(|(id, _)| *id).unwrap()));
        let v = maps.services[&codec::service_key(&vip("11.0.0.2:80"))];
        assert_eq!(v.slot_count, 0);
    }

    #[test]
    fn stale_slots_of_the_reused_generation_are_dropped() {
        let mut maps = Maps::default();
        let addrs: Vec<String> = (1..=9).map(|i| format!("10.0.0.{i}:80")).collect();
        let with = |n: usize| -> DesiredState {
            let bs: Vec<(&str, u32)> = addrs[..n].iter().map(|a| (a.as_str(), 1)).collect();
            state(&[("11.0.0.1:80", &bs)])
        };
        let p1 = apply(&mut maps, &Applied::default(), &with(9)); // gen 0: M = 1009
        let p2 = apply(&mut maps, &p1.next, &with(2)); // gen 1: M stays 1009
        let _p3 = apply(&mut maps, &p2.next, &with(1)); // gen 0: M shrinks to 251
        assert_eq!(maps.slots.keys().filter(|k| k.generation == 0).count(), 251);
        assert_eq!(maps.slots.keys().filter(|k| k.generation == 1).count(), 1009);
    }

    #[test]
    fn ids_are_reused_only_after_removal_completes() {
        let s1 = state(&[("11.0.0.1:80", &[("10.0.0.1:80", 1)])]);
        let p1 = plan(&Applied::default(), &s1).unwrap();
        let s2 = state(&[("11.0.0.2:80", &[("10.0.0.2:80", 1)])]);
        let p2 = plan(&p1.next, &s2).unwrap();
        let old = &p1.next.services[&vip("11.0.0.1:80")];
        let new = &p2.next.services[&vip("11.0.0.2:80")];
        assert_ne!(
            old.id, new.id,
            "the removed service's slots are still live until the grace period ends"
        );
        assert!(
            !p1.next
                .backends
                .contains_key(&p2.next.backends.keys().next().copied().unwrap())
        );
    }
}
