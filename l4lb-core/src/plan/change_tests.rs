//! A plan of a change against the full plan: over random sequences of
//! added, changed and removed services (shared backends, weight 0, tight
//! maps that skip), every step gives the same writes in the same order, the
//! same `next`, summary and skips, and the committed index is the one built
//! from `next`.
use std::net::SocketAddr;

use rand::{Rng, SeedableRng, rngs::StdRng};

use super::*;
use crate::model::Proto;

const VIPS: u16 = 24;
const BACKENDS: u16 = 30;

fn vip(i: u16) -> Vip {
    let proto = if i.is_multiple_of(3) {
        Proto::Udp
    } else {
        Proto::Tcp
    };
    let addr: SocketAddr = match i % 5 {
        4 => format!("[fd01:c::{}]:80", i + 1).parse().unwrap(),
        _ => format!("11.0.0.{}:80", i + 1).parse().unwrap(),
    };
    Vip { addr, proto }
}

/// A backend of `v`'s family.
fn backend(v: &Vip, i: u16) -> SocketAddr {
    match v.addr {
        SocketAddr::V4(_) => format!("10.0.0.{}:80", i + 1).parse().unwrap(),
        SocketAddr::V6(_) => format!("[fd00::{}]:80", i + 1).parse().unwrap(),
    }
}

fn random_spec(rng: &mut StdRng, v: &Vip) -> ServiceSpec {
    let n = rng.random_range(0..6);
    let backends = (0..n)
        .map(|_| {
            (
                backend(v, rng.random_range(0..BACKENDS)),
                rng.random_range(0..3),
            )
        })
        .collect();
    ServiceSpec {
        name: rng
            .random_bool(0.3)
            .then(|| format!("/app-{}:80", v.addr.port())),
        framework: None,
        origin: None,
        backends,
    }
}

/// One step: a few services added, changed (backends, weights or only the
/// name) or removed.
fn mutate(rng: &mut StdRng, map: &mut ServiceMap) {
    for _ in 0..rng.random_range(1..4) {
        let v = vip(rng.random_range(0..VIPS));
        match (rng.random_range(0..4), map.get(&v).cloned()) {
            (0 | 3, Some(_)) => drop(map.remove(&v)),
            (1, Some(mut spec)) => {
                spec.name = Some("/renamed:80".into());
                map.insert(v, spec);
            }
            (2, Some(mut spec)) if !spec.backends.is_empty() => {
                let b = *spec.backends.keys().next().unwrap();
                spec.backends.insert(b, rng.random_range(0..3));
                map.insert(v, spec);
            }
            _ => drop(map.insert(v, random_spec(rng, &v))),
        }
    }
}

fn caps() -> [Capacity; 4] {
    let roomy = Capacity {
        services: 1 << 10,
        backends: 1 << 10,
        slots: 1 << 16,
    };
    [
        roomy,
        Capacity {
            slots: 251 * 20,
            ..roomy
        },
        Capacity {
            backends: 30,
            ..roomy
        },
        Capacity {
            services: 17,
            ..roomy
        },
    ]
}

/// What the agent's reconciler keeps for the next plan of a change.
struct Known {
    desired: ServiceMap,
    index: Index,
}

fn check_sequence(seed: u64, cap: Capacity, steps: usize) -> (usize, usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut applied, mut map) = (Applied::default(), ServiceMap::new());
    let mut known: Option<Known> = None;
    let (mut fast, mut skips) = (0, 0);
    for step in 0..steps {
        mutate(&mut rng, &mut map);
        let desired = DesiredState {
            services: map.iter().map(|(v, s)| (*v, s.clone())).collect(),
        };
        let full = plan(&applied, &desired, cap);
        let mut index = match known.take() {
            Some(mut k) => {
                let mut changed = changed_vips(&k.desired, &map);
                // A VIP listed though unchanged changes nothing.
                if rng.random_bool(0.3) {
                    changed.push(vip(rng.random_range(0..VIPS)));
                    changed.sort_unstable();
                    changed.dedup();
                }
                let p = plan_change(&applied, &map, &changed, &mut k.index);
                let at = format!("seed {seed} step {step} changed {changed:?}");
                assert_eq!(p.now, full.now, "{at}");
                assert_eq!(p.after_grace, full.after_grace, "{at}");
                assert_eq!(p.next, full.next, "{at}");
                assert_eq!(p.summary, full.summary, "{at}");
                assert_eq!(p.skipped, full.skipped, "{at}");
                fast += 1;
                k.index.commit();
                k.index
            }
            None => {
                // The full plan from a map: the index it leaves, committed.
                let mut index = Index::new(&applied, cap);
                let p = plan_all_indexed(&applied, &map, &mut index);
                assert_eq!(p.now, full.now, "seed {seed} step {step}");
                assert_eq!(p.next, full.next, "seed {seed} step {step}");
                assert!(applied.index_follows());
                index.commit();
                index
            }
        };
        applied = full.next;
        assert_eq!(index, Index::new(&applied, cap), "seed {seed} step {step}");
        if full.skipped.is_empty() {
            known = Some(Known {
                desired: map.clone(),
                index: std::mem::replace(&mut index, Index::new(&Applied::default(), cap)),
            });
        } else {
            skips += 1;
        }
    }
    (fast, skips)
}

#[test]
fn a_change_plans_what_the_full_plan_plans() {
    let (mut fast, mut skips) = (0, 0);
    for (i, cap) in caps().into_iter().enumerate() {
        for seed in 0..40 {
            let (f, s) = check_sequence(seed * 10 + i as u64, cap, 60);
            fast += f;
            skips += s;
        }
    }
    assert!(fast > 7000, "{fast} plans of a change");
    assert!(skips > 1000, "{skips} plans that skipped (tight maps)");
}

#[test]
fn a_change_of_nothing_writes_nothing() {
    let cap = caps()[0];
    let mut rng = StdRng::seed_from_u64(7);
    let mut map = ServiceMap::new();
    for _ in 0..10 {
        mutate(&mut rng, &mut map);
    }
    let desired = DesiredState {
        services: map.iter().map(|(v, s)| (*v, s.clone())).collect(),
    };
    let first = plan(&Applied::default(), &desired, cap);
    let mut index = Index::new(&first.next, cap);
    let p = plan_change(&first.next, &map, &[], &mut index);
    assert!(p.now.is_empty() && p.after_grace.is_empty());
    assert_eq!(p.summary.unchanged, map.len());
    assert!(p.next.services.ptr_eq(&first.next.services));
}

/// Why a full plan's index is rebuilt after adoption with a stale table:
/// freeing the range of a table that overlapped a kept one would free the
/// kept one's slots.
#[test]
fn an_index_is_not_carried_past_overlapping_tables() {
    let cap = caps()[0];
    let (a, b) = (vip(1), vip(2));
    let mut map = ServiceMap::new();
    for v in [a, b] {
        let spec = ServiceSpec {
            backends: [(backend(&v, 1), 1)].into(),
            ..Default::default()
        };
        map.insert(v, spec);
    }
    let mut applied = plan_all(&Applied::default(), &map, cap).next;
    // As adoption reads a crash's leftovers: b's range overlaps a's.
    let base = applied.services[&a].slot_base;
    let svc = applied.services.get_mut(&b).unwrap();
    (svc.slot_base, svc.stale) = (base + 100, true);
    assert!(!applied.index_follows());
    let mut index = Index::new(&applied, cap);
    let p = plan_all_indexed(&applied, &map, &mut index);
    index.commit();
    assert_ne!(index, Index::new(&p.next, cap));
    assert!(p.next.index_follows());
}
