//! Adoption check: is the table read back from the pinned maps what the
//! members say it is? A SIGKILL mid-apply can leave a service's members
//! written and its Maglev table not switched yet; trusting the members would
//! keep the stale table forever. A service that fails any check is marked
//! `stale`, and the next plan rewrites it as a changed service.
use std::collections::BTreeSet;

use serde::Serialize;

use crate::{
    plan::{Applied, AppliedService, SlotTable},
    slots::is_table_size,
};

/// One inconsistency found in the pinned maps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The service it concerns (None: not one service's).
    pub vip: Option<String>,
    pub service_id: Option<u32>,
    pub problem: String,
}

/// Checks every service of `applied` against its members and the slots read
/// by `read_slots(base, count)`; marks the inconsistent ones stale and returns
/// what was wrong. `slots_capacity`: size of the slots array.
pub fn check(
    applied: &mut Applied,
    slots_capacity: u32,
    read_slots: impl Fn(u32, u32) -> anyhow::Result<Vec<u32>>,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let overlapping = overlapping(applied, slots_capacity);
    let mut stale = Vec::new();
    for (vip, svc) in &applied.services {
        let why = if overlapping.contains(&svc.id) {
            Some("its slot range overlaps another service's".to_string())
        } else {
            service_problem(svc, &applied.backends, slots_capacity, &read_slots)
        };
        if let Some(problem) = why {
            stale.push(*vip);
            problems.push(Problem {
                vip: Some(vip.to_string()),
                service_id: Some(svc.id),
                problem,
            });
        }
    }
    for vip in stale {
        if let Some(svc) = applied.services.get_mut(&vip) {
            svc.stale = true;
        }
    }
    for (service_id, backend_id) in &applied.orphan_members {
        problems.push(Problem {
            vip: None,
            service_id: Some(*service_id),
            problem: format!(
                "member (backend {backend_id}) of a service that is not in the services map"
            ),
        });
    }
    problems
}

/// What is wrong with one service's table, if anything.
fn service_problem(
    svc: &AppliedService,
    backends: &crate::plan::BackendAddrs,
    capacity: u32,
    read_slots: &impl Fn(u32, u32) -> anyhow::Result<Vec<u32>>,
) -> Option<String> {
    if let Some(id) = svc.members.keys().find(|id| !backends.contains_key(id)) {
        return Some(format!("member backend {id} is not in the backends map"));
    }
    let live = svc.members.values().filter(|w| **w > 0).count();
    match (live, svc.slot_count) {
        (0, 0) => return None,
        (0, n) => return Some(format!("{n} slots but no member with weight > 0")),
        (_, 0) => return Some(format!("{live} members with weight > 0 but no slots")),
        _ => {}
    }
    if !is_table_size(svc.slot_count) {
        return Some(format!(
            "slot count {} is not a Maglev table size",
            svc.slot_count
        ));
    }
    if u64::from(svc.slot_base) + u64::from(svc.slot_count) > u64::from(capacity) {
        return Some(format!(
            "slots {}+{} beyond the array ({capacity})",
            svc.slot_base, svc.slot_count
        ));
    }
    let members = svc
        .members
        .iter()
        .map(|(id, w)| (*id, backends[id], *w))
        .collect();
    let want = SlotTable::new(svc.slot_count, members).fill();
    match read_slots(svc.slot_base, svc.slot_count) {
        // The count p2c reads (one backend: no draws) must be the table's.
        Ok(have) if have == want && svc.backends as usize != live => Some(format!(
            "backend count {} but {live} members with weight > 0",
            svc.backends
        )),
        Ok(have) if have == want => None,
        Ok(have) => {
            let differ = have.iter().zip(&want).filter(|(a, b)| a != b).count();
            Some(format!(
                "{differ} of {} slots differ from the table of its members",
                svc.slot_count
            ))
        }
        Err(e) => Some(format!("reading its slots: {e:#}")),
    }
}

/// Ids of services whose in-bounds slot ranges overlap another's.
fn overlapping(applied: &Applied, capacity: u32) -> BTreeSet<u32> {
    let mut ranges: Vec<(u64, u64, u32)> = applied
        .services
        .values()
        .filter(|s| {
            s.slot_count > 0
                && u64::from(s.slot_base) + u64::from(s.slot_count) <= u64::from(capacity)
        })
        .map(|s| {
            (
                u64::from(s.slot_base),
                u64::from(s.slot_base) + u64::from(s.slot_count),
                s.id,
            )
        })
        .collect();
    ranges.sort();
    let mut out = BTreeSet::new();
    // The range reaching furthest so far: any later start below its end overlaps it.
    let mut furthest: Option<(u64, u32)> = None;
    for (start, end, id) in ranges {
        if let Some((fend, fid)) = furthest
            && start < fend
        {
            out.insert(fid);
            out.insert(id);
        }
        if furthest.is_none_or(|(fend, _)| end > fend) {
            furthest = Some((end, id));
        }
    }
    out
}

/// Logs each problem (the caller counts them).
pub fn warn_all(problems: &[Problem]) {
    for p in problems {
        tracing::warn!(
            vip = p.vip.as_deref().unwrap_or("-"),
            service_id = p.service_id,
            "pinned table inconsistent, rewriting: {}",
            p.problem
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::Vip,
        plan::{Capacity, plan},
    };

    fn vip(s: &str) -> Vip {
        Vip {
            addr: s.parse().unwrap(),
            proto: crate::model::Proto::Tcp,
        }
    }

    /// A consistent two-service table, as a plan writes it, and its slots.
    fn written() -> (Applied, Vec<u32>) {
        let mut d = crate::model::DesiredState::default();
        for (v, bs) in [
            ("11.0.0.1:80", &["10.0.0.1:80", "10.0.0.2:80"][..]),
            ("11.0.0.2:80", &["10.0.0.2:80"][..]),
        ] {
            let mut spec = crate::model::ServiceSpec::default();
            for b in bs {
                spec.backends.insert(b.parse().unwrap(), 1);
            }
            d.services.insert(vip(v), spec);
        }
        let cap = Capacity {
            slots: 2048,
            ..Capacity::default()
        };
        let p = plan(&Applied::default(), &d, cap);
        let mut slots = vec![0u32; 2048];
        for op in &p.now {
            if let crate::plan::Op::WriteSlots { base, table } = op {
                let t = table.fill();
                slots[*base as usize..*base as usize + t.len()].copy_from_slice(&t);
            }
        }
        (p.next, slots)
    }

    fn run(applied: &mut Applied, slots: &[u32]) -> Vec<Problem> {
        check(applied, slots.len() as u32, |base, n| {
            Ok(slots[base as usize..(base + n) as usize].to_vec())
        })
    }

    #[test]
    fn a_consistent_table_passes() {
        let (mut a, slots) = written();
        assert_eq!(run(&mut a, &slots), vec![]);
        assert!(a.services.values().all(|s| !s.stale));
    }

    #[test]
    fn members_switched_without_their_table_are_found() {
        // The state a SIGKILL between the member writes and the service switch
        // leaves: weights changed, the table still the old one.
        let (mut a, slots) = written();
        let svc = a.services.get_mut(&vip("11.0.0.1:80")).unwrap();
        let first = *svc.members.keys().next().unwrap();
        svc.members.insert(first, 0);
        let problems = run(&mut a, &slots);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].problem.contains("slots differ"), "{problems:?}");
        assert!(a.services[&vip("11.0.0.1:80")].stale);
        assert!(!a.services[&vip("11.0.0.2:80")].stale);
    }

    type Corrupt = fn(&mut Applied);

    #[test]
    fn bad_ranges_counts_and_members_are_found() {
        let cases: [(&str, Corrupt); 6] = [
            ("backend count", |a| {
                a.services.get_mut(&vip("11.0.0.2:80")).unwrap().backends += 1
            }),
            ("overlaps", |a| {
                let base = a.services[&vip("11.0.0.1:80")].slot_base;
                a.services.get_mut(&vip("11.0.0.2:80")).unwrap().slot_base = base + 1;
            }),
            ("beyond the array", |a| {
                a.services.get_mut(&vip("11.0.0.2:80")).unwrap().slot_base = 2000
            }),
            ("not a Maglev table size", |a| {
                a.services.get_mut(&vip("11.0.0.2:80")).unwrap().slot_count = 250
            }),
            ("not in the backends map", |a| {
                a.services
                    .get_mut(&vip("11.0.0.2:80"))
                    .unwrap()
                    .members
                    .insert(99, 1);
            }),
            ("but no slots", |a| {
                a.services.get_mut(&vip("11.0.0.2:80")).unwrap().slot_count = 0
            }),
        ];
        for (want, corrupt) in cases {
            let (mut a, slots) = written();
            corrupt(&mut a);
            let problems = run(&mut a, &slots);
            assert!(
                problems.iter().any(|p| p.problem.contains(want)),
                "{want}: {problems:?}"
            );
            assert!(a.services[&vip("11.0.0.2:80")].stale, "{want}");
        }
    }

    #[test]
    fn orphan_members_are_reported() {
        let (mut a, slots) = written();
        a.orphan_members.insert((7, 1));
        let problems = run(&mut a, &slots);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].service_id, Some(7));
    }
}
