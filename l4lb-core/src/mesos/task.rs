//! The task view: what dcos-net's `dcos_net_mesos_listener` makes of one
//! Mesos task (`from_state/1`'s map), plus the few fields Mesos-DNS also
//! needs. [`derive`] is dcos-net's `task/4`: each field is derived on its
//! own from the new task object and the previous record; a field that
//! cannot be derived, or derives to nothing (no name, an empty list), keeps
//! its previous value. That is what lets a TASK_UPDATED (a bare status)
//! update a TASK_ADDED's task without losing its name or ports.

use std::{fmt, net::IpAddr};

use super::{
    api::{ContainerStatus, Task, TaskStatus},
    ports::{self, Protocol},
    warning::{Warning, WarningKind},
};

/// A task's identity: dcos-net keys tasks by (framework id, task id).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskKey {
    pub framework_id: String,
    pub task_id: String,
}

impl fmt::Display for TaskKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task {} by {}", self.task_id, self.framework_id)
    }
}

/// dcos-net's `task_state()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TaskState {
    /// Staging, starting, killing, unreachable, unknown: not (yet) running.
    Preparing,
    Running,
    /// Finished, failed, killed, lost, error, dropped, gone, gone by
    /// operator (Mesos's `isTerminalState`): the task is dropped.
    Terminal,
}

impl TaskState {
    pub fn from_mesos(state: &str) -> TaskState {
        match state {
            "TASK_FINISHED"
            | "TASK_FAILED"
            | "TASK_KILLED"
            | "TASK_LOST"
            | "TASK_ERROR"
            | "TASK_DROPPED"
            | "TASK_GONE"
            | "TASK_GONE_BY_OPERATOR" => TaskState::Terminal,
            "TASK_RUNNING" => TaskState::Running,
            _ => TaskState::Preparing,
        }
    }
}

/// The containerizer, from `container.type`; a task without one keeps its
/// last value (`unknown` at first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Runtime {
    Mesos,
    Docker,
    Unknown,
}

/// One port of a task (dcos-net's `task_port()`): `port` is the port
/// reached at the task's IP, `host_port` the agent port mapped to it; `vip`
/// holds the `VIP_<n>` label values (empty when none).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskPort {
    pub name: Option<String>,
    pub protocol: Protocol,
    pub port: Option<u16>,
    pub host_port: Option<u16>,
    pub vip: Vec<String>,
}

/// A task whose agent and framework are known: the unit a catalog is built
/// from. The first eight fields are exactly dcos-net's map (an absent key
/// is `None` or empty); the rest are for Mesos-DNS's records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskView {
    /// `discovery.name`, else the task's name.
    pub name: Option<String>,
    pub runtime: Runtime,
    /// The framework's name (`marathon`, `hello-world`).
    pub framework: String,
    pub agent_ip: IpAddr,
    /// From the latest status's `container_status.network_infos`.
    pub task_ip: Vec<IpAddr>,
    pub ports: Vec<TaskPort>,
    pub state: Option<TaskState>,
    /// Present when the task has a health check or a status says.
    pub healthy: Option<bool>,
    /// The agent's id (Mesos-DNS's canonical names end in its last field).
    pub agent_id: String,
    /// The task's `ports` resources, expanded (Mesos-DNS's SRV ports).
    pub resource_ports: Vec<u16>,
    /// `Docker.NetworkSettings.IPAddress` labels of the latest RUNNING
    /// status (Mesos-DNS's `docker` IP source).
    pub docker_ips: Vec<IpAddr>,
    /// `MesosContainerizer.NetworkSettings.IPAddress` labels, likewise
    /// (Mesos-DNS's `mesos` IP source).
    pub mesos_ips: Vec<IpAddr>,
    /// Its agent's zone (fault domain), filled in by `MesosState`.
    pub zone: Option<String>,
}

/// Known, or only the id seen so far (dcos-net's `{id, Id}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ref<T> {
    Known(T),
    Pending(String),
}

impl<T> Ref<T> {
    pub fn known(&self) -> Option<&T> {
        match self {
            Ref::Known(t) => Some(t),
            Ref::Pending(_) => None,
        }
    }
}

/// What is kept per task: the view's fields with the agent and framework
/// possibly not known yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub agent: Ref<IpAddr>,
    pub framework: Ref<String>,
    pub agent_id: String,
    pub name: Option<String>,
    pub runtime: Option<Runtime>,
    pub task_ip: Vec<IpAddr>,
    pub ports: Vec<TaskPort>,
    pub state: Option<TaskState>,
    pub healthy: Option<bool>,
    pub resource_ports: Vec<u16>,
    pub docker_ips: Vec<IpAddr>,
    pub mesos_ips: Vec<IpAddr>,
}

impl Record {
    fn new(agent: Ref<IpAddr>, framework: Ref<String>, agent_id: String) -> Record {
        Record {
            agent,
            framework,
            agent_id,
            name: None,
            runtime: None,
            task_ip: Vec::new(),
            ports: Vec::new(),
            state: None,
            healthy: None,
            resource_ports: Vec::new(),
            docker_ips: Vec::new(),
            mesos_ips: Vec::new(),
        }
    }

    /// Waiting for its agent or its framework.
    pub fn is_waiting(&self) -> bool {
        self.agent.known().is_none() || self.framework.known().is_none()
    }

    /// The view, once agent and framework are known.
    pub fn view(&self) -> Option<TaskView> {
        Some(TaskView {
            name: self.name.clone(),
            runtime: self.runtime.unwrap_or(Runtime::Unknown),
            framework: self.framework.known()?.clone(),
            agent_ip: *self.agent.known()?,
            task_ip: self.task_ip.clone(),
            ports: self.ports.clone(),
            state: self.state,
            healthy: self.healthy,
            agent_id: self.agent_id.clone(),
            resource_ports: self.resource_ports.clone(),
            docker_ips: self.docker_ips.clone(),
            mesos_ips: self.mesos_ips.clone(),
            zone: None,
        })
    }
}

/// Where the task's agent and framework stand, for [`derive`].
pub struct Context<'a> {
    pub key: &'a TaskKey,
    pub agent_id: &'a str,
    pub agent: Ref<IpAddr>,
    pub framework: Ref<String>,
}

/// dcos-net's `task/4`: the new record from the task object and the
/// previous record. Fields in dcos-net's order (ports last but one: it
/// reads the state and IPs just derived).
pub fn derive(task: &Task, prev: Option<&Record>, cx: Context, warn: &mut Vec<Warning>) -> Record {
    let mut r = match prev {
        Some(p) => Record {
            agent: cx.agent,
            framework: cx.framework,
            agent_id: cx.agent_id.to_owned(),
            ..p.clone()
        },
        None => Record::new(cx.agent, cx.framework, cx.agent_id.to_owned()),
    };
    let mut field = |name: &str, e: String| {
        warn.push(Warning::new(
            WarningKind::TaskField,
            cx.key.to_string(),
            format!("{name}: {e}"),
        ))
    };
    if let Some(n) = task_name(task) {
        r.name = Some(n.to_owned());
    }
    match task_ips(task) {
        Ok(ips) if !ips.is_empty() => r.task_ip = ips,
        Ok(_) => {}
        Err(e) => field("task_ip", e),
    }
    match &task.state {
        Some(s) => r.state = Some(TaskState::from_mesos(s)),
        None => field("state", "no state".into()),
    }
    match task_healthy(task) {
        Ok(Some(h)) => r.healthy = Some(h),
        Ok(None) => {}
        Err(e) => field("healthy", e),
    }
    match ports::task_ports(task, &r) {
        Ok(p) if !p.is_empty() => r.ports = p,
        Ok(_) => {}
        Err(e) => field("ports", e),
    }
    r.runtime = Some(task_runtime(task, r.runtime));
    mesos_dns_fields(task, &mut r);
    r
}

/// `discovery.name`, else `name`.
fn task_name(task: &Task) -> Option<&str> {
    let discovery = task.discovery.as_ref().and_then(|d| d.name.as_deref());
    discovery.or(task.name.as_deref())
}

/// The latest status's container status and health: the status with the
/// greatest timestamp (the last of equals), or, for an object without a
/// `statuses` list, the object itself (TASK_UPDATED's status). An empty
/// list is an error: dcos-net's fields that need a status keep their value.
pub fn latest_status(task: &Task) -> Result<(Option<&ContainerStatus>, Option<bool>), String> {
    let Some(statuses) = &task.statuses else {
        return Ok((task.container_status.as_ref(), task.healthy));
    };
    let mut best: Option<(f64, usize)> = None;
    for (i, s) in statuses.iter().enumerate() {
        let ts = match (s.timestamp, statuses.len()) {
            (Some(ts), _) => ts,
            (None, 1) => 0.0,
            (None, _) => return Err("a status without a timestamp".into()),
        };
        if best.is_none_or(|(b, _)| ts >= b) {
            best = Some((ts, i));
        }
    }
    let (_, i) = best.ok_or("no status in the statuses list")?;
    let s = &statuses[i];
    Ok((s.container_status.as_ref(), s.healthy))
}

/// Every parseable `ip_address` of the latest status's network infos; a
/// network info without `ip_addresses` is an error (dcos-net's).
fn task_ips(task: &Task) -> Result<Vec<IpAddr>, String> {
    let (cs, _) = latest_status(task)?;
    let infos = cs.and_then(|c| c.network_infos.as_deref()).unwrap_or(&[]);
    let mut out = Vec::new();
    for info in infos {
        let addrs = info
            .ip_addresses
            .as_ref()
            .ok_or("a network info without ip_addresses")?;
        out.extend(
            addrs
                .iter()
                .filter_map(|a| a.ip_address.as_deref()?.parse::<IpAddr>().ok()),
        );
    }
    Ok(out)
}

/// The latest status's `healthy`; else `false` for a task with a health
/// check (no result yet), else nothing.
fn task_healthy(task: &Task) -> Result<Option<bool>, String> {
    let checked = task.health_check.is_some().then_some(false);
    let (_, healthy) = latest_status(task)?;
    Ok(healthy.or(checked))
}

/// `container.type`: MESOS, DOCKER, anything else unknown; none: the last.
fn task_runtime(task: &Task, prev: Option<Runtime>) -> Runtime {
    match task.container.as_ref().and_then(|c| c.kind.as_deref()) {
        Some("MESOS") => Runtime::Mesos,
        Some("DOCKER") => Runtime::Docker,
        Some(_) => Runtime::Unknown,
        None => prev.unwrap_or(Runtime::Unknown),
    }
}

/// Mesos-DNS's inputs: resource ports, and the IP labels of the latest
/// TASK_RUNNING status (a status-less object keeps the last ones).
fn mesos_dns_fields(task: &Task, r: &mut Record) {
    let ports = ports::resource_ports(task.resources.as_deref().unwrap_or(&[]));
    if !ports.is_empty() {
        r.resource_ports = ports;
    }
    let Some(statuses) = &task.statuses else {
        return;
    };
    let running = statuses
        .iter()
        .filter(|s| s.state.as_deref() == Some("TASK_RUNNING"))
        .fold(None, |best: Option<&TaskStatus>, s| match best {
            Some(b) if b.timestamp.unwrap_or(0.0) >= s.timestamp.unwrap_or(0.0) => Some(b),
            _ => Some(s),
        });
    let labels = running
        .and_then(|s| s.labels.as_ref())
        .map(|l| l.labels.as_slice())
        .unwrap_or(&[]);
    let ips = |key: &str| -> Vec<IpAddr> {
        labels
            .iter()
            .filter(|l| l.key.as_deref() == Some(key))
            .filter_map(|l| l.value.as_deref()?.parse().ok())
            .collect()
    };
    r.docker_ips = ips("Docker.NetworkSettings.IPAddress");
    r.mesos_ips = ips("MesosContainerizer.NetworkSettings.IPAddress");
}
