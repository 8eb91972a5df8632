use std::collections::BTreeMap;

use super::*;
use crate::{codec, model::Proto};

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
    let mut pool = free::FreeList::ids(1, 6, [1, 2, 4, 9].into_iter());
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

/// A member read back from corrupt pinned maps may name any backend id:
/// the index counts only ids a backend can have (the counts are a vector
/// by id), and the next plan rewrites the service.
#[test]
fn a_member_naming_an_id_past_the_capacity_is_rewritten() {
    let s = state(&[("11.0.0.1:80", &[("10.0.0.1:80", 1)])]);
    let mut applied = plan(&Applied::default(), &s, CAP).next;
    let svc = applied.services.get_mut(&vip("11.0.0.1:80")).unwrap();
    svc.members = [(1, 1), (u32::MAX, 1)].into();
    svc.stale = true;
    let p = plan(&applied, &s, CAP);
    let new = &p.next.services[&vip("11.0.0.1:80")];
    assert_eq!(new.members.keys().copied().collect::<Vec<_>>(), [1]);
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
