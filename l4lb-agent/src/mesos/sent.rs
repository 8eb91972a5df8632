//! The last catalog the Mesos source sent, kept so that the same catalog is
//! not sent twice, without a copy of it: its services as a persistent map
//! (compared by a diff that skips what two versions share), its task
//! records as pointers (compared pointer first), its cluster.
use std::sync::Arc;

use crate::model::{Catalog, Cluster, ServiceMap, TaskRecord};

pub struct Sent {
    services: ServiceMap,
    tasks: Vec<Arc<TaskRecord>>,
    cluster: Option<Arc<Cluster>>,
}

impl Sent {
    /// `services`: the catalog's services as a persistent map, if the
    /// build kept one (else made from the catalog).
    pub fn new(catalog: &Catalog, services: Option<&ServiceMap>) -> Sent {
        Sent {
            services: map_of(catalog, services),
            tasks: catalog.tasks.clone(),
            cluster: catalog.cluster.clone(),
        }
    }

    /// True if `catalog` is the one sent.
    pub fn is(&self, catalog: &Catalog, services: Option<&ServiceMap>) -> bool {
        self.tasks == catalog.tasks
            && self.cluster == catalog.cluster
            && self
                .services
                .diff(&map_of(catalog, services))
                .next()
                .is_none()
    }
}

fn map_of(catalog: &Catalog, services: Option<&ServiceMap>) -> ServiceMap {
    match services {
        Some(s) => s.clone(),
        None => catalog.services.services.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Proto, ServiceSpec, Vip};

    fn catalog(backend: &str) -> Catalog {
        let mut c = Catalog::default();
        let vip = Vip {
            addr: "11.0.0.1:80".parse().unwrap(),
            proto: Proto::Tcp,
        };
        let spec = ServiceSpec {
            backends: [(backend.parse().unwrap(), 1)].into(),
            ..Default::default()
        };
        c.services.services.insert(vip, spec);
        c.tasks.push(Arc::new(TaskRecord::default()));
        c
    }

    #[test]
    fn the_same_catalog_is_recognised_with_or_without_its_map() {
        let c = catalog("10.0.0.1:80");
        let map = c.services.services.clone();
        let sent = Sent::new(&c, Some(&map));
        assert!(sent.is(&c, Some(&map)) && sent.is(&c, None));
        let other = catalog("10.0.0.2:80");
        assert!(!sent.is(&other, None));
        let mut renamed = c.clone();
        Arc::make_mut(&mut renamed.tasks[0]).task_id = "t2".into();
        assert!(!sent.is(&renamed, Some(&map)));
        renamed = c.clone();
        renamed.cluster = Some(Arc::default());
        assert!(!sent.is(&renamed, Some(&map)));
    }
}
