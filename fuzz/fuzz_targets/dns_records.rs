//! Arbitrary app ids, task ids, agent ids, framework and port names, and a
//! scheduler's framework name in the cluster records, into the zone
//! builder. Checks: no panic; every running task's Mesos-DNS names
//! (one-label and legacy dotted, when they fit in a DNS name) answer, the
//! one-label name having no dot; no framework name adds to `leader.mesos`;
//! and an index that first saw the catalog without its cluster, then with
//! it, holds what a fresh build holds.
#![no_main]

use hickory_proto::rr::{LowerName, Name};
use l4lb_fuzz::{
    dns::{
        ZoneIndex, names,
        records::{Lookup, ZoneOptions, Zones, build_zones},
    },
    model::{Catalog, Cluster, Endpoint, ServiceSpec},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut fields = text.split('\n');
    let (mut catalog, published) = l4lb_fuzz::sample_catalog(1);
    let mut task = std::sync::Arc::unwrap_or_clone(catalog.tasks.pop().unwrap());
    task.app_id = fields.next().unwrap_or_default().into();
    task.task_id = fields.next().unwrap_or_default().into();
    task.agent_id = fields.next().unwrap_or_default().into();
    task.framework = fields.next().unwrap_or("marathon").into();
    task.ports[0].name = fields.next().map(Into::into);
    let label = fields.next().map(|l| l.to_owned());
    let services = std::mem::take(&mut catalog.services.services).into_iter();
    catalog.services.services = services
        .map(|(vip, spec)| {
            (
                vip,
                ServiceSpec {
                    name: label.clone(),
                    ..spec
                },
            )
        })
        .collect();
    let scheduler = fields.next().unwrap_or("chronos").to_owned();
    let leader = "198.18.9.1:5050".parse().unwrap();
    let at = |ip: &str| Endpoint {
        ip: ip.parse().unwrap(),
        port: Some(25501),
    };
    let cluster = Cluster {
        leader: Some(leader),
        masters: vec![leader],
        agents: vec![at("198.18.0.1")],
        frameworks: vec![(scheduler, at("198.18.9.9"))],
    };
    let bare = Catalog {
        tasks: vec![std::sync::Arc::new(task.clone())],
        ..catalog
    };
    let catalog = Catalog {
        cluster: Some(std::sync::Arc::new(cluster)),
        ..bare.clone()
    };
    let opts = ZoneOptions::default();
    let zones = build_zones(&catalog, &published, &opts);
    let leader_name = LowerName::new(&Name::from_ascii("leader.mesos.").unwrap());
    match zones.lookup(&leader_name) {
        Lookup::Found(_, r) => assert_eq!(r.len(), 1, "a framework added to leader.mesos"),
        other => panic!("leader.mesos: {other:?}"),
    }
    let mut index = ZoneIndex::new(opts);
    index.update_at(&bare, &published, 1);
    let moved = index.update_at(&catalog, &published, 1);
    assert_eq!(dump(&moved), dump(&build_zones_at(&catalog, &published)));
    // The one-label name and the legacy dotted one.
    let label = names::mesos_task_label(&task.app_id);
    if let Some(l) = &label {
        assert!(!l.contains('.') && l.len() <= names::MAX_LABEL, "{l:?}");
    }
    for t in label
        .into_iter()
        .chain(names::mesos_task_name(&task.app_id))
    {
        let canonical = names::canonical_name(&t, &task.task_id, &task.agent_id);
        for label in canonical.split('.') {
            assert!(label.len() <= names::MAX_LABEL, "label {label:?}");
        }
        if let Some(fw) = names::domain_frag(&task.framework)
            && let Ok(n) = Name::from_ascii(format!("{t}.{fw}.mesos."))
            && Name::from_ascii(format!("{canonical}.{fw}.slave.mesos.")).is_ok()
        {
            assert!(
                matches!(zones.lookup(&LowerName::new(&n)), Lookup::Found(_, r) if !r.is_empty()),
                "{n} missing"
            );
        }
    }
});

/// Every zone's names and records, sorted.
fn dump(z: &Zones) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = z
        .zones()
        .iter()
        .flat_map(|zone| zone.iter())
        .map(|(n, r)| (n.to_string(), r.iter().map(|r| r.to_string()).collect()))
        .collect();
    out.sort();
    out
}

/// A fresh build with the serial the index was given.
fn build_zones_at(
    c: &Catalog,
    published: &std::collections::BTreeSet<l4lb_fuzz::model::Vip>,
) -> Zones {
    ZoneIndex::new(ZoneOptions::default()).update_at(c, published, 1)
}
