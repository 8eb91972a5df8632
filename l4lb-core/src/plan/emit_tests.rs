//! `plan_all_emitting`: the full plan handed on a part at a time.
use super::*;
use crate::model::Proto;

const CAP: Capacity = Capacity {
    services: 1 << 16,
    backends: 1 << 16,
    slots: 1 << 16,
};

/// `n` services from `first`, service i with backends i and i + 1 (shared
/// with the next service), `port` on each.
fn services(first: u16, n: u16, port: u16) -> ServiceMap {
    (first..first + n)
        .map(|i| {
            let vip = Vip {
                addr: format!("11.0.{}.{}:80", i / 200, i % 200 + 1)
                    .parse()
                    .unwrap(),
                proto: Proto::Tcp,
            };
            let backend = |b: u16| format!("10.0.{}.{}:{port}", b / 200, b % 200 + 1);
            let spec = ServiceSpec {
                backends: [
                    (backend(i).parse().unwrap(), 1),
                    (backend(i + 1).parse().unwrap(), 1),
                ]
                .into(),
                ..Default::default()
            };
            (vip, spec)
        })
        .collect()
}

/// Plans `desired` over `applied` in parts of `every`: (the parts, plan).
fn emitted(applied: &Applied, desired: &ServiceMap, every: usize) -> (Vec<Vec<Op>>, Plan) {
    let mut parts = Vec::new();
    let mut write = |ops: &[Op]| {
        parts.push(ops.to_vec());
        true
    };
    let mut index = Index::new(applied, CAP);
    let (plan, n) = plan_all_emitting(applied, desired, &mut index, every, &mut write).unwrap();
    assert_eq!(n, parts.iter().map(Vec::len).sum::<usize>());
    (parts, plan)
}

#[test]
fn one_part_writes_what_the_whole_plan_writes_in_its_order() {
    let first = plan_all(&Applied::default(), &services(0, 5, 80), CAP).next;
    let desired = services(2, 6, 81);
    let whole = plan_all(&first, &desired, CAP);
    let (parts, plan) = emitted(&first, &desired, 100);
    assert_eq!(parts.len(), 1);
    let written: Vec<Op> = parts.concat().into_iter().chain(plan.now.clone()).collect();
    assert_eq!(written, whole.now);
    assert_eq!(plan.after_grace, whole.after_grace);
    assert_eq!((plan.next, plan.summary), (whole.next, whole.summary));
}

#[test]
fn parts_name_only_backends_written_before_and_end_as_the_whole_plan() {
    let first = plan_all(&Applied::default(), &services(0, 5, 80), CAP).next;
    let desired = services(2, 7, 81);
    let whole = plan_all(&first, &desired, CAP);
    let (parts, plan) = emitted(&first, &desired, 2);
    // 7 services placed: parts of 2, 2, 2 and the last one.
    assert_eq!(parts.len(), 4);
    let mut backends: BTreeSet<u32> = first.backends.keys().copied().collect();
    for part in &parts {
        for op in part {
            match op {
                Op::PutBackend(id, _) => drop(backends.insert(*id)),
                Op::PutMember(k, _) => assert!(backends.contains(&k.backend_id), "{op:?}"),
                _ => {}
            }
        }
        // Each part ends with a service's switch: no table is left half written.
        assert!(matches!(part.last(), Some(Op::PutService(..))), "{part:?}");
    }
    let mut written: Vec<Op> = parts.concat().into_iter().chain(plan.now).collect();
    let mut want = whole.now;
    let key = |o: &Op| format!("{o:?}");
    written.sort_by_key(key);
    want.sort_by_key(key);
    assert_eq!(written, want);
    assert_eq!(plan.after_grace, whole.after_grace);
    assert_eq!((plan.next, plan.summary), (whole.next, whole.summary));
}

#[test]
fn a_refused_part_stops_the_plan() {
    let desired = services(0, 9, 80);
    let mut calls = 0;
    let mut write = |_: &[Op]| {
        calls += 1;
        calls < 2
    };
    let mut index = Index::new(&Applied::default(), CAP);
    let r = plan_all_emitting(&Applied::default(), &desired, &mut index, 3, &mut write);
    // Two parts of 3 services: 3 x (reset, slots, 2 members, service) and
    // their new backends (4, then 3) with their counter resets.
    assert_eq!(r.unwrap_err(), 2 * 15 + 2 * (4 + 3));
    assert_eq!(calls, 2);
}
