//! One app's (or pod's) share of the catalog, kept between syncs, and
//! [`PartBuilder`], through which `pod_part` builds a pod's with the same
//! rules.
use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use super::{
    Keep, Warning,
    catalog::{Builder, GroupKey},
    labels::{Decl, port_decls},
    ports::PortSpec,
};
use crate::declare;
use crate::marathon::apps::App;
use crate::model::{Backends, PackedRecords, Proto, TaskRecord};

/// One app's share of the catalog: its VIP declarations, backends, task
/// records and warnings, before named VIPs get addresses. Kept per app so an
/// event that names an app re-reads and replaces only that app; held for
/// every app, so flat vectors rather than the builder's B-trees (a part of a
/// 5-task app: ~2.5 KB instead of ~6.5 KB).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppPart {
    pub(super) id: String,
    /// In key order; each key once.
    pub(super) groups: Vec<(GroupKey, PartGroup)>,
    /// The records, unless kept packed ([`Keep::Packed`]: in `packed`).
    pub(super) tasks: Vec<Arc<TaskRecord>>,
    /// The records packed in one allocation, in record order (None: not
    /// packed, or no task).
    pub(super) packed: Option<Arc<PackedRecords>>,
    pub(super) named_agents: Vec<NamedAgent>,
    pub(super) warnings: Vec<Warning>,
}

/// What one app declares for one [`GroupKey`] (sorted, each once).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct PartGroup {
    pub(super) labels: Vec<String>,
    pub(super) framework: Option<String>,
    /// Shared with the catalog's service of the group when that has them
    /// all (one part declares the group and its backends are of one family).
    pub(super) backends: Backends,
    pub(super) by_name: Vec<(HostPort, u32)>,
}

/// A host-port backend on an agent known by name: its address comes from
/// the [`HostTable`](crate::hosts::HostTable) when the catalog is built, so
/// a lookup that completes later needs no re-read of the app.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct HostPort {
    pub(super) host: Arc<str>,
    pub(super) port: u16,
    /// Under host networking Marathon's `ipAddresses` are the agent's: used
    /// while the name does not resolve.
    pub(super) fallback: Option<IpAddr>,
}

/// An agent known by name, and the address that stands in for it while the
/// name does not resolve (under host networking, the task's own).
#[derive(Clone, Debug)]
pub(crate) struct NamedAt {
    pub(in crate::marathon) host: Arc<str>,
    pub(in crate::marathon) fallback: Option<IpAddr>,
}

/// A task whose agent is known by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct NamedAgent {
    /// Index of its record in the part's tasks (None: records not kept).
    pub(super) task: Option<usize>,
    /// The task's app (or pod), named in the warning when the agent's name
    /// does not resolve.
    pub(super) app_id: Arc<str>,
    pub(super) pod: bool,
    pub(super) host: Arc<str>,
    pub(super) fallback: Option<IpAddr>,
}

impl AppPart {
    /// What this part declares for `gk` (its groups are sorted by key).
    pub(super) fn group(&self, gk: &GroupKey) -> Option<&PartGroup> {
        let i = self.groups.binary_search_by(|(k, _)| k.cmp(gk)).ok()?;
        Some(&self.groups[i].1)
    }

    /// The app's part, with its tasks' records.
    pub fn of(app: &App) -> AppPart {
        AppPart::keeping(app, Keep::Records)
    }

    /// The app's part, its tasks' records made only if `keep` says so.
    pub fn keeping(app: &App, keep: Keep) -> AppPart {
        let mut b = Builder {
            keep,
            ..Builder::default()
        };
        b.add_app(app);
        AppPart::from_builder(app.id.clone(), b)
    }

    /// The part as a decode with `keep` makes it: without records for
    /// [`Keep::ServicesOnly`], its records packed for [`Keep::Packed`] (for
    /// a part decoded elsewhere, with them).
    pub fn kept(mut self, keep: Keep) -> AppPart {
        match keep {
            Keep::Records => {
                if let Some(packed) = self.packed.take() {
                    // Written by us: an error leaves the records out.
                    let _ = packed.unpack_into(&mut self.tasks);
                }
            }
            Keep::Packed => {
                if self.packed.is_none() {
                    self.packed = PackedRecords::pack(&self.tasks).map(Arc::new);
                    self.tasks = Vec::new();
                }
            }
            Keep::ServicesOnly => {
                self.tasks = Vec::new();
                self.packed = None;
                for n in &mut self.named_agents {
                    n.task = None;
                }
            }
        }
        self
    }

    /// How this part keeps its records (Packed when they are packed).
    fn keeps(&self) -> Keep {
        match self.packed {
            Some(_) => Keep::Packed,
            None => Keep::Records,
        }
    }

    fn from_builder(id: String, b: Builder) -> AppPart {
        let groups = b
            .groups
            .into_iter()
            .map(|(k, g)| {
                let group = PartGroup {
                    labels: g.labels.into_iter().collect(),
                    framework: g.framework,
                    backends: g.backends.into_iter().collect(),
                    by_name: g.by_name.into_iter().collect(),
                };
                (k, group)
            })
            .collect();
        let (tasks, packed) = match b.keep {
            // The records made while the part was read are freed here.
            Keep::Packed => (Vec::new(), PackedRecords::pack(&b.tasks).map(Arc::new)),
            _ => (b.tasks, None),
        };
        AppPart {
            id,
            groups,
            tasks,
            packed,
            named_agents: b.named_agents,
            warnings: b.warnings,
        }
    }

    pub fn app_id(&self) -> &str {
        &self.id
    }

    /// Two list entries with the same id (Marathon never sends them) count
    /// as one app declaring both.
    pub fn absorb(&mut self, other: AppPart) {
        let keep = match (self.keeps(), other.keeps()) {
            (Keep::Records, Keep::Records) => Keep::Records,
            _ => Keep::Packed,
        };
        let mut b = Builder {
            keep,
            ..Builder::default()
        };
        b.add_part(self);
        b.add_part(&other);
        *self = AppPart::from_builder(std::mem::take(&mut self.id), b);
    }
}

/// How `pod_part` builds a pod's part: the VIP label rules, backend merging
/// and task records of an app's, through a few entry points.
pub(crate) struct PartBuilder {
    id: String,
    b: Builder,
    warnings: Vec<String>,
}

/// The VIPs one port (a pod endpoint) declares.
pub(crate) struct PortVips(Vec<Decl>);

impl PartBuilder {
    /// The part of the pod `id`, its records kept if `keep` says so.
    pub(in crate::marathon) fn pod(id: &str, keep: Keep) -> PartBuilder {
        let mut b = PartBuilder::new(id);
        b.b.keep = keep;
        b
    }

    /// A part named `id` (`app /x`, or as is when `id` is no app path).
    pub(crate) fn new(id: &str) -> PartBuilder {
        PartBuilder {
            id: id.to_owned(),
            b: Builder::default(),
            warnings: Vec::new(),
        }
    }

    /// Something left out (`what` names the field).
    pub(crate) fn warn(&mut self, what: String) {
        self.warnings.push(what);
    }

    /// Declares the `VIP_*` labels of one port (`field` names it in
    /// messages), as an app port's are.
    pub(in crate::marathon) fn port_vips(
        &mut self,
        field: String,
        protos: &[Proto],
        labels: &BTreeMap<String, String>,
    ) -> PortVips {
        let spec = PortSpec {
            field,
            protos: Some(protos.to_vec()),
            name: None,
            labels,
            host_index: None,
            container_port: None,
        };
        let mut warnings = Vec::new();
        let decls = port_decls(std::slice::from_ref(&spec), &mut |w| warnings.push(w));
        self.warnings.extend(warnings);
        for d in &decls {
            self.b.declare(d);
        }
        PortVips(decls)
    }

    /// Declares VIP label values (`/name:port`, `ip:port`) of one port,
    /// named ones under `framework` (`origin` names the port in messages).
    pub(crate) fn label_vips(
        &mut self,
        origin: &str,
        protos: &[Proto],
        values: &[String],
        framework: &str,
    ) -> PortVips {
        let mut decls = Vec::new();
        for value in values {
            match declare::label_target_in(value, framework) {
                Ok(target) => decls.push(Decl {
                    target,
                    label: value.clone(),
                    protos: protos.to_vec(),
                    spec: 0,
                    origin: origin.to_owned(),
                    framework: (framework != declare::FRAMEWORK).then(|| framework.to_owned()),
                }),
                Err(m) => self.warnings.push(format!("{origin}: {m}")),
            }
        }
        for d in &decls {
            self.b.declare(d);
        }
        PortVips(decls)
    }

    /// One serving endpoint's addresses for a port's VIPs (`at` names the
    /// task in messages).
    pub(crate) fn serve(&mut self, vips: &PortVips, addrs: &[SocketAddr], weight: u32, at: &str) {
        let mut warnings = Vec::new();
        for d in &vips.0 {
            self.b
                .add_backends(d, addrs, weight, &|| at.to_owned(), &mut |w| {
                    warnings.push(w)
                });
        }
        self.warnings.extend(warnings);
    }

    /// One serving endpoint on an agent known by name: its address comes
    /// from the host table when the catalog is built.
    pub(in crate::marathon) fn serve_on_agent(
        &mut self,
        vips: &PortVips,
        agent: &NamedAt,
        port: u16,
        weight: u32,
    ) {
        let hp = HostPort {
            host: agent.host.clone(),
            port,
            fallback: agent.fallback,
        };
        for d in &vips.0 {
            self.b.add_named_backend(d, &hp, weight);
        }
    }

    /// A task record (dropped unless records are kept); `agent` when its
    /// agent is known by name.
    pub(crate) fn task(&mut self, task: TaskRecord, agent: Option<&NamedAt>) {
        let keep = self.b.keep.records();
        if let Some(a) = agent {
            self.b.named_agents.push(NamedAgent {
                task: keep.then_some(self.b.tasks.len()),
                app_id: task.app_id.clone(),
                pod: task.in_pod,
                host: a.host.clone(),
                fallback: a.fallback,
            });
        }
        if keep {
            self.b.tasks.push(Arc::new(task));
        }
    }

    pub(crate) fn finish(self) -> AppPart {
        let PartBuilder {
            id,
            mut b,
            warnings,
        } = self;
        b.warnings.extend(warnings.into_iter().map(|what| Warning {
            app_id: Some(id.clone()),
            what,
            pod: true,
        }));
        AppPart::from_builder(id, b)
    }
}
