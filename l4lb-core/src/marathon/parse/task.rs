//! One app's tasks → the endpoints each serves on the app's ports, the
//! backends those give the app's VIPs, and each task's record.
use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use super::{
    Warning,
    catalog::Builder,
    labels::{Decl, legacy_decls, port_decls},
    part::{HostPort, NamedAgent},
    ports::{Mode, PortSpec, networking_mode, port_specs, port_u16},
};
use crate::declare::FRAMEWORK;
use crate::hosts::{AgentAt, pick_agent_addr};
use crate::intern::intern;
use crate::marathon::apps::{App, Task, TaskState, Text};
use crate::model::{Protocols, TaskPort, TaskRecord};
use crate::naming::Family;

/// What every task of an app needs: its ports and what they declare.
struct AppPorts<'a> {
    app: &'a App,
    mode: Mode,
    specs: Vec<PortSpec<'a>>,
    /// `VIP_*` port labels and legacy app labels.
    decls: Vec<Decl>,
    /// The strings every task's record shares, interned once per app.
    shared: Shared,
}

/// A task record's interned strings that are the same for every task of an
/// app (three pool lookups a task were 5 % of a full read's instructions).
struct Shared {
    app_id: Arc<str>,
    framework: Arc<str>,
    /// Each port spec's name, in `specs`' order.
    port_names: Vec<Option<Arc<str>>>,
}

impl Shared {
    fn of(app: &App, specs: &[PortSpec]) -> Shared {
        Shared {
            app_id: intern(&app.id),
            framework: intern(FRAMEWORK),
            port_names: specs.iter().map(|s| s.name.map(intern)).collect(),
        }
    }
}

impl AppPorts<'_> {
    /// Some port is mapped on the agent, so the task's host matters.
    fn any_host_port(&self) -> bool {
        self.specs.iter().any(|s| s.host_index.is_some())
    }
}

/// One task being added: what its steps share.
struct TaskCtx<'a, 'w> {
    app: &'a AppPorts<'a>,
    task: &'a Task,
    /// The task's index in the app, for messages (see [`TaskCtx::at`]).
    j: usize,
    healthy: Option<bool>,
    /// None: not a backend (neither running nor killing).
    weight: Option<u32>,
    warn: &'w mut dyn FnMut(String),
}

/// Where a task's agent is.
struct Agent {
    ip: Option<IpAddr>,
    /// Known by name: the address comes from the host table later.
    name: Option<Arc<str>>,
    /// Host networking: Marathon's ipAddresses are the agent's own, and
    /// stand in for a name that does not resolve.
    fallback: Option<IpAddr>,
}

/// What a task offers on one port.
struct Endpoint {
    /// The port clients use (host port if mapped, else container port).
    port: u16,
    /// Backend addresses: the agent's, or the task's first of each family.
    addrs: Addrs,
    /// The agent's address when the agent is known by name.
    agent: Option<HostPort>,
}

/// An endpoint's backend addresses, at most one per family, inline (a
/// vector was an allocation per task and port).
struct Addrs {
    list: [SocketAddr; 2],
    len: usize,
}

impl Addrs {
    /// The first two of `addrs`.
    fn of(addrs: impl IntoIterator<Item = SocketAddr>) -> Addrs {
        let unset = SocketAddr::from(([0, 0, 0, 0], 0));
        let mut out = Addrs {
            list: [unset; 2],
            len: 0,
        };
        for a in addrs.into_iter().take(2) {
            out.list[out.len] = a;
            out.len += 1;
        }
        out
    }

    fn as_slice(&self) -> &[SocketAddr] {
        &self.list[..self.len]
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Builder {
    /// An app's declarations and its tasks, or a warning when its
    /// networking mode is unknown.
    pub(super) fn add_app(&mut self, app: &App) {
        let mut warnings = Vec::new();
        let mut warn = |what: String| warnings.push(what);
        match networking_mode(app) {
            Ok(mode) => self.add_app_ports(app, mode, &mut warn),
            Err(what) => warn(what),
        }
        self.warnings
            .extend(warnings.into_iter().map(|what| Warning {
                app_id: Some(app.id.clone()),
                what,
                pod: false,
            }));
    }

    fn add_app_ports(&mut self, app: &App, mode: Mode, warn: &mut dyn FnMut(String)) {
        let specs = port_specs(app, mode, warn);
        let mut decls = port_decls(&specs, warn);
        decls.extend(legacy_decls(&app.labels, &specs, "", warn));
        for d in &decls {
            self.declare(d);
        }
        if app.tasks.is_empty() {
            return;
        }
        let shared = Shared::of(app, &specs);
        let ports = AppPorts {
            app,
            mode,
            specs,
            decls,
            shared,
        };
        for (j, task) in app.tasks.iter().enumerate() {
            self.add_task(&ports, j, task, warn);
        }
    }

    /// One task: its endpoints, its own legacy labels, its backends (when
    /// it serves) and its record.
    fn add_task(&mut self, app: &AppPorts, j: usize, task: &Task, warn: &mut dyn FnMut(String)) {
        if task.id.trim().is_empty() {
            warn(format!("tasks[{j}].id: missing; task skipped"));
            return;
        }
        let healthy = health(app.app, task);
        let mut t = TaskCtx {
            app,
            task,
            j,
            healthy,
            weight: weight(task, healthy),
            warn,
        };
        let task_ips = t.task_ips();
        let agent = t.agent(&task_ips);
        let endpoints: Vec<Option<Endpoint>> = app
            .specs
            .iter()
            .map(|spec| t.endpoint(spec, &agent, &task_ips))
            .collect();

        let task_decls = match task.labels.is_empty() {
            true => Vec::new(),
            false => legacy_decls(&task.labels, &app.specs, &t.at(), t.warn),
        };
        for d in &task_decls {
            self.declare(d);
        }
        if let Some(weight) = t.weight {
            let decls = app.decls.iter().chain(&task_decls);
            self.add_task_backends(decls, &endpoints, weight, &|| task_at(j, task), t.warn);
        }
        // The zone is checked either way: the same warnings, records or not.
        let zone = super::super::zone::task_zone(task.zone.as_ref()).unwrap_or_else(|why| {
            (t.warn)(format!("{}.{why}", task_at(j, task)));
            None
        });
        let record = self.keep.records().then(|| TaskRecord {
            zone: zone.as_deref().map(intern),
            ..t.record(agent.ip, task_ips, &endpoints)
        });
        self.push_task(record, agent, &app.shared.app_id);
    }

    /// A serving task's endpoints, as backends of the VIPs declared on
    /// their ports.
    fn add_task_backends<'d>(
        &mut self,
        decls: impl Iterator<Item = &'d Decl>,
        endpoints: &[Option<Endpoint>],
        weight: u32,
        at: &dyn Fn() -> String,
        warn: &mut dyn FnMut(String),
    ) {
        for d in decls {
            if let Some(Some(ep)) = endpoints.get(d.spec) {
                self.add_backends(d, ep.addrs.as_slice(), weight, at, warn);
                if let Some(hp) = &ep.agent {
                    self.add_named_backend(d, hp, weight);
                }
            }
        }
    }

    /// The record (when kept), noting an agent known by name so it gets
    /// its address when the catalog is built.
    fn push_task(&mut self, record: Option<TaskRecord>, agent: Agent, app_id: &Arc<str>) {
        if let Some(host) = agent.name {
            self.named_agents.push(NamedAgent {
                task: record.is_some().then_some(self.tasks.len()),
                app_id: app_id.clone(),
                pod: false,
                host,
                fallback: agent.fallback,
            });
        }
        if let Some(record) = record {
            self.tasks.push(Arc::new(record));
        }
    }
}

/// `tasks[0] (id)`: made only for a message (most tasks have none).
fn task_at(j: usize, task: &Task) -> String {
    format!("tasks[{j}] ({})", task.id)
}

/// None without health checks; else whether every result is alive (no
/// result yet: not healthy).
fn health(app: &App, task: &Task) -> Option<bool> {
    (!app.health_checks.is_empty()).then(|| {
        let results = &task.health_check_results;
        !results.is_empty() && results.all_alive()
    })
}

/// A backend's weight; None for tasks that are not backends.
fn weight(task: &Task, healthy: Option<bool>) -> Option<u32> {
    match task.state {
        TaskState::Running if healthy == Some(false) => Some(0),
        TaskState::Running => Some(1),
        TaskState::Killing => Some(0),
        TaskState::Other => None,
    }
}

impl TaskCtx<'_, '_> {
    fn at(&self) -> String {
        task_at(self.j, self.task)
    }

    /// Tasks that are not backends (staging, finished, …) often lack ports
    /// or addresses: only complain about the ones that serve.
    fn warn_serving(&mut self, what: String) {
        if self.weight.is_some() {
            (self.warn)(what)
        }
    }

    /// The task's own addresses (bad ones warned and skipped).
    fn task_ips(&mut self) -> Vec<IpAddr> {
        let task = self.task;
        // Kept in every task's record: sized to the list, no growth slack.
        let mut ips = Vec::with_capacity(task.ip_addresses.len());
        for (k, a) in task.ip_addresses.iter().enumerate() {
            match &a.ip_address {
                Some(Text::Ok(ip)) => ips.push(*ip),
                bad => self.warn_serving(format!(
                    "{}.ipAddresses[{k}].ipAddress: {:?} is not an IP address",
                    self.at(),
                    bad.as_ref().map_or("", Text::bad_text)
                )),
            }
        }
        ips
    }

    /// The task's agent: an address, or a name (with the task's address as
    /// a stand-in under host networking).
    fn agent(&mut self, task_ips: &[IpAddr]) -> Agent {
        let (ip, name) = match &self.task.host {
            Some(Text::Ok(AgentAt::Ip(ip))) => (Some(*ip), None),
            Some(Text::Ok(AgentAt::Name(name))) => (None, Some(name.clone())),
            bad => {
                if self.app.any_host_port() {
                    let at = self.at();
                    let what = match bad {
                        Some(Text::Bad(h)) => format!(
                            "{at}: host {h:?} is neither an IP address nor a host name; \
                             its host-port backends are left out"
                        ),
                        _ => format!("{at}: host missing; its host-port backends are left out"),
                    };
                    self.warn_serving(what);
                }
                (None, None)
            }
        };
        let fallback = name
            .as_ref()
            .filter(|_| self.app.mode == Mode::Host)
            .and_then(|_| pick_agent_addr(task_ips.iter().copied()));
        Agent { ip, name, fallback }
    }

    /// What the task offers on one port; None when it has no usable port.
    fn endpoint(
        &mut self,
        spec: &PortSpec,
        agent: &Agent,
        task_ips: &[IpAddr],
    ) -> Option<Endpoint> {
        match spec.host_index {
            Some(k) => self.host_endpoint(spec, k, agent),
            None => self.container_endpoint(spec, task_ips),
        }
    }

    /// A port mapped on the agent: its `k`-th host port.
    fn host_endpoint(&mut self, spec: &PortSpec, k: usize, agent: &Agent) -> Option<Endpoint> {
        let port = self.host_port(spec, k)?;
        let addrs = agent.ip.map(|ip| SocketAddr::new(ip, port));
        let on_named = agent.name.as_ref().map(|host| HostPort {
            host: host.clone(),
            port,
            fallback: agent.fallback,
        });
        Some(Endpoint {
            port,
            addrs: Addrs::of(addrs),
            agent: on_named,
        })
    }

    fn host_port(&mut self, spec: &PortSpec, k: usize) -> Option<u16> {
        // The message prefix is made only for a message (it was most of a
        // full read's formatting, see BENCHMARKS.md).
        let what = match self.task.ports.get(k) {
            Some(&n) => match port_u16(n) {
                Some(port) => return Some(port),
                None => format!(
                    "{}.ports[{k}]: {n} is not a port in 1..=65535; no backend for {}",
                    self.at(),
                    spec.field
                ),
            },
            None => format!(
                "{}.ports: {} entries, but {} needs ports[{k}]; no backend for it",
                self.at(),
                self.task.ports.len(),
                spec.field
            ),
        };
        self.warn_serving(what);
        None
    }

    /// A port on the task's own addresses: its first of each family.
    fn container_endpoint(&mut self, spec: &PortSpec, task_ips: &[IpAddr]) -> Option<Endpoint> {
        let port = spec.container_port?;
        let addrs = Addrs::of(
            [Family::V4, Family::V6]
                .into_iter()
                .filter_map(|f| task_ips.iter().find(|ip| Family::of(**ip) == f))
                .map(|&ip| SocketAddr::new(ip, port)),
        );
        if addrs.is_empty() {
            let what = format!(
                "{}.ipAddresses: none, but {} is reached on the task's own IP; \
                 no backend for it",
                self.at(),
                spec.field
            );
            self.warn_serving(what);
        }
        Some(Endpoint {
            port,
            addrs,
            agent: None,
        })
    }

    /// The task's record for DNS.
    fn record(
        &self,
        agent_ip: Option<IpAddr>,
        task_ips: Vec<IpAddr>,
        endpoints: &[Option<Endpoint>],
    ) -> TaskRecord {
        let (app, task) = (self.app, self.task);
        TaskRecord {
            app_id: app.shared.app_id.clone(),
            task_id: Box::from(task.id.as_str()),
            framework: app.shared.framework.clone(),
            agent_id: task.slave_id.clone().unwrap_or_else(|| intern("")),
            agent_ip,
            task_ips: task_ips.into_boxed_slice(),
            ports: task_ports(&app.specs, &app.shared.port_names, endpoints),
            host_ports: app.mode != Mode::Container || app.any_host_port(),
            running: task.state == TaskState::Running,
            healthy: self.healthy,
            in_pod: false,
            zone: None,
        }
    }
}

/// The ports a task serves on, with their protocols and names. Kept in
/// every task's record, so without the growth slack a collect leaves (a
/// one-port task's: 4 ports' room).
fn task_ports(
    specs: &[PortSpec],
    names: &[Option<Arc<str>>],
    endpoints: &[Option<Endpoint>],
) -> Box<[TaskPort]> {
    let ports: Vec<TaskPort> = specs
        .iter()
        .zip(names)
        .zip(endpoints)
        .filter_map(|((spec, name), ep)| {
            Some(TaskPort {
                port: ep.as_ref()?.port,
                protocols: Protocols::new(spec.protos.as_deref()?),
                name: name.clone(),
            })
        })
        .collect();
    ports.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::marathon::parse::test_util::*;

    #[test]
    fn weights_follow_state_and_health() {
        let t = |id: &str, host: &str, state: &str, results: Value| {
            json!({"id": id, "host": host, "ports": [31000], "state": state,
                   "healthCheckResults": results})
        };
        let checked = json!({
            "id": "/hc", "healthChecks": [{"protocol": "TCP"}],
            "portDefinitions": [{"port": 0, "labels": {"VIP_0": "/hc:80"}}],
            "tasks": [
                t("ok", "10.0.0.1", "TASK_RUNNING", json!([{"alive": true}, {"alive": true}])),
                t("sick", "10.0.0.2", "TASK_RUNNING", json!([{"alive": true}, {"alive": false}])),
                t("new", "10.0.0.3", "TASK_RUNNING", json!([])),
                t("nores", "10.0.0.4", "TASK_RUNNING", Value::Null),
                t("dying", "10.0.0.5", "TASK_KILLING", json!([{"alive": true}])),
                t("failed", "10.0.0.6", "TASK_FAILED", json!([])),
                t("staging", "10.0.0.7", "TASK_STAGING", json!([])),
                t("gone", "10.0.0.8", "TASK_UNREACHABLE", json!([{"alive": true}])),
                t("killed", "10.0.0.9", "TASK_KILLED", json!([])),
            ]
        });
        let unchecked = json!({
            "id": "/plain",
            "portDefinitions": [{"port": 0, "labels": {"VIP_0": "/plain:80"}}],
            "tasks": [
                t("p-run", "10.0.1.1", "TASK_RUNNING", json!([{"alive": false}])),
                t("p-kill", "10.0.1.2", "TASK_KILLING", json!([])),
            ]
        });
        let p = parse(&apps(json!([checked, unchecked])));
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        assert_eq!(
            only_named(&p, "/hc:80").1.backends,
            backends(&[
                ("10.0.0.1:31000", 1),
                ("10.0.0.2:31000", 0),
                ("10.0.0.3:31000", 0),
                ("10.0.0.4:31000", 0),
                ("10.0.0.5:31000", 0),
            ])
        );
        // Without health checks, results are ignored.
        assert_eq!(
            only_named(&p, "/plain:80").1.backends,
            backends(&[("10.0.1.1:31000", 1), ("10.0.1.2:31000", 0)])
        );
        // Every task has a record; `running` and `healthy` tell them apart.
        assert_eq!(p.catalog.tasks.len(), 11);
        let rh = |id| {
            let t = task(&p, id);
            (t.running, t.healthy)
        };
        assert_eq!(rh("ok"), (true, Some(true)));
        assert_eq!(rh("sick"), (true, Some(false)));
        assert_eq!(rh("new"), (true, Some(false)));
        assert_eq!(rh("dying"), (false, Some(true)));
        assert_eq!(rh("failed"), (false, Some(false)));
        assert_eq!(rh("p-run"), (true, None));
        assert_eq!(task(&p, "failed").ports[0].port, 31000);
    }

    #[test]
    fn failed_task_only_withdraws_the_vip() {
        let p = parse(&apps(json!([host_app(
            "/f",
            "/f:80",
            json!([{"id": "t", "host": "10.0.0.1", "ports": [], "state": "TASK_FAILED"}])
        )])));
        // No complaint about the missing port: a failed task needs none.
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        assert!(services(&p).is_empty(), "{:?}", services(&p));
        let t = task(&p, "t");
        assert!(!t.running && t.ports.is_empty());
    }

    /// Weight-0 backends are still backends: a VIP whose only task is
    /// killing, or failing its health check, stays (existing connections keep
    /// working, new ones are refused).
    #[test]
    fn weight_zero_backends_keep_the_vip() {
        let killing = json!([{"id": "k", "host": "10.0.0.1", "ports": [31000],
                              "state": "TASK_KILLING"}]);
        let p = parse(&apps(json!([host_app("/k", "/k:80", killing)])));
        assert_eq!(
            only_named(&p, "/k:80").1.backends,
            backends(&[("10.0.0.1:31000", 0)])
        );
        let mut sick = host_app("/s", "/s:80", json!([running("s", "10.0.0.2", &[31000])]));
        sick["healthChecks"] = json!([{"protocol": "TCP"}]);
        sick["tasks"][0]["healthCheckResults"] = json!([{"alive": false}]);
        let p = parse(&apps(json!([sick])));
        assert_eq!(
            only_named(&p, "/s:80").1.backends,
            backends(&[("10.0.0.2:31000", 0)])
        );
    }
}
