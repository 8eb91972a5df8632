//! Arbitrary app ids, task ids, agent ids, framework and port names into the
//! zone builder. Checks: no panic, and every running task's Mesos-DNS names
//! (one-label and legacy dotted, when they fit in a DNS name) answer, the
//! one-label name having no dot.
#![no_main]

use hickory_proto::rr::{LowerName, Name};
use l4lb_fuzz::{
    dns::{
        names,
        records::{Lookup, ZoneOptions, build_zones},
    },
    model::Catalog,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut fields = text.split('\n');
    let (mut catalog, published) = l4lb_fuzz::sample_catalog(1);
    let mut task = std::sync::Arc::unwrap_or_clone(catalog.tasks.pop().unwrap());
    task.app_id = fields.next().unwrap_or_default().to_owned();
    task.task_id = fields.next().unwrap_or_default().to_owned();
    task.agent_id = fields.next().unwrap_or_default().to_owned();
    task.framework = fields.next().unwrap_or("marathon").to_owned();
    task.ports[0].name = fields.next().map(str::to_owned);
    let label = fields.next().map(|l| l.to_owned());
    for spec in catalog.services.services.values_mut() {
        spec.name = label.clone();
    }
    let catalog = Catalog {
        tasks: vec![std::sync::Arc::new(task.clone())],
        ..catalog
    };
    let zones = build_zones(&catalog, &published, &ZoneOptions::default());
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
