//! Mesos task views → [`Catalog`]: the VIP table dcos-net's poller builds
//! from the same tasks, plus one task record per task for DNS. Built
//! through the Marathon catalog's [`PartBuilder`], so label rules, backend
//! merging, withdrawal of VIPs without backends and named-VIP addresses are
//! the same as for Marathon apps.
//!
//! Rules (dcos-net's `dcos_l4lb_mesos_poller`):
//! - backends are TASK_RUNNING tasks; an unhealthy one weighs 0 (dcos-net
//!   leaves it out; weight 0 also refuses new connections, and keeps
//!   the existing ones);
//! - a port with a host port is served at agent IP:host port, another at
//!   each of the task's IPs:port (both families);
//! - a named VIP label belongs to the task's framework:
//!   `overlay-vip:80` on a `hello-world` task is
//!   `overlay-vip.hello-world.l4lb.thisdcos.directory`, `/api.hello-world:80`
//!   on a Marathon task `api.hello-world.marathon.l4lb.thisdcos.directory`.
use std::net::{IpAddr, SocketAddr};

use super::{
    Protocol, TaskKey, TaskParts, TaskState, TaskView,
    warning::{Warning, WarningKind},
};
use crate::marathon::parse::{self, PartBuilder};
use crate::model::{Catalog, Proto, TaskPort as RecordPort, TaskRecord};
use crate::naming::{NamingError, VipAllocator};

/// A catalog and what was left out of it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Built {
    pub catalog: Catalog,
    /// The services as the persistent map the build keeps, when it keeps
    /// one (`TaskParts`): `catalog.services` is then empty, see `fill`.
    pub services: Option<crate::model::ServiceMap>,
    pub warnings: Vec<Warning>,
}

impl Built {
    /// The catalog with its services, copied from the map if it has one.
    pub fn fill(mut self) -> Built {
        if let Some(services) = &self.services {
            self.catalog.services = crate::model::desired_state(services);
        }
        self
    }
}

/// The catalog of `tasks` (any order gives the same catalog), services
/// filled. Named VIPs get their addresses from `alloc`: keep one for the
/// source's life.
pub fn catalog<'a>(
    tasks: impl IntoIterator<Item = (&'a TaskKey, &'a TaskView)>,
    alloc: &mut VipAllocator,
) -> Result<Built, NamingError> {
    let mut parts = TaskParts::default();
    for (k, v) in tasks {
        parts.set(k, Some(v));
    }
    parts.catalog(alloc).map(Built::fill)
}

/// A parts catalog's result in the Mesos source's terms.
pub(super) fn built(
    parsed: Result<parse::Parsed, parse::ParseError>,
) -> Result<Built, NamingError> {
    let parsed = match parsed {
        Ok(p) => p,
        Err(parse::ParseError::Naming(e)) => return Err(e),
        Err(e) => unreachable!("parts never fail to parse: {e}"),
    };
    let warnings = parsed
        .warnings
        .into_iter()
        .map(|w| {
            let subject = w.app_id.unwrap_or_else(|| "Mesos task".into());
            Warning::new(WarningKind::TaskField, subject, w.what)
        })
        .collect();
    Ok(Built {
        catalog: parsed.catalog,
        services: parsed.services,
        warnings,
    })
}

/// One task's VIP declarations, backends and record.
pub(super) fn task_part(key: &TaskKey, view: &TaskView) -> parse::AppPart {
    let mut b = PartBuilder::new(&format!("task {} of {}", key.task_id, view.framework));
    let weight = weight(view);
    for (i, port) in view.ports.iter().enumerate() {
        let origin = format!("ports[{i}]");
        let protos = [proto(port.protocol)];
        let vips = b.label_vips(&origin, &protos, &port.vip, &view.framework);
        let Some(weight) = weight.filter(|_| !port.vip.is_empty()) else {
            continue;
        };
        match endpoints(view, port) {
            Ok(addrs) => b.serve(&vips, &addrs, weight, &origin),
            Err(what) => b.warn(format!("{origin}: {what}")),
        }
    }
    b.task(record(key, view), None);
    b.finish()
}

/// None: not a backend (not running).
fn weight(view: &TaskView) -> Option<u32> {
    match (view.state, view.healthy) {
        (Some(TaskState::Running), Some(false)) => Some(0),
        (Some(TaskState::Running), _) => Some(1),
        _ => None,
    }
}

fn proto(p: Protocol) -> Proto {
    match p {
        Protocol::Tcp => Proto::Tcp,
        Protocol::Udp => Proto::Udp,
    }
}

/// Where a port is served: agent IP:host port, else every task IP:port.
fn endpoints(view: &TaskView, port: &super::TaskPort) -> Result<Vec<SocketAddr>, String> {
    if let Some(hp) = port.host_port {
        return Ok(vec![SocketAddr::new(view.agent_ip, hp)]);
    }
    let p = port.port.ok_or("a port without a number")?;
    if view.task_ip.is_empty() {
        return Err("no task IP to serve it on".into());
    }
    Ok(view
        .task_ip
        .iter()
        .map(|ip: &IpAddr| SocketAddr::new(*ip, p))
        .collect())
}

/// The task's DNS record. `app_id` is the path whose Marathon task name is
/// the Mesos task's name (`app.group` ↔ `/group/app`), which is what the
/// DNS zones derive their task names from.
fn record(key: &TaskKey, view: &TaskView) -> TaskRecord {
    let ports = view
        .ports
        .iter()
        .filter_map(|p| {
            Some(RecordPort {
                port: p.host_port.or(p.port)?,
                protocols: [proto(p.protocol)].into(),
                name: p.name.as_deref().map(crate::intern::intern),
            })
        })
        .collect();
    TaskRecord {
        app_id: crate::intern::intern(&app_path(view.name.as_deref().unwrap_or(&key.task_id))),
        task_id: key.task_id.as_str().into(),
        framework: crate::intern::intern(&view.framework),
        agent_id: crate::intern::intern(&view.agent_id),
        agent_ip: Some(view.agent_ip),
        task_ips: view.task_ip.as_slice().into(),
        ports,
        host_ports: view.ports.iter().any(|p| p.host_port.is_some()),
        running: view.state == Some(TaskState::Running),
        healthy: view.healthy,
        in_pod: false,
        zone: view.zone.as_deref().map(crate::intern::intern),
    }
}

/// `app.group` → `/group/app`; `/` in the name is dropped (DNS names drop
/// it too), empty pieces are left out.
pub fn app_path(task_name: &str) -> String {
    let clean = task_name.replace('/', "");
    let pieces: Vec<&str> = clean.split('.').filter(|p| !p.is_empty()).rev().collect();
    format!("/{}", pieces.join("/"))
}

#[cfg(test)]
#[path = "catalog_tests.rs"]
mod tests;
