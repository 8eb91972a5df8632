//! `GET /master/state`, the fallback read (Mesos-DNS's only one): the same
//! data model in the master's older JSON (plain string ids, `slaves`, tasks
//! inside their framework, `resources.ports` as `"[31000-31001, …]"`, status
//! labels as a plain list). Each task is turned into an operator-API
//! [`Task`] and read like a `GET_STATE` task, so both modes give the same
//! [`TaskView`](super::TaskView)s. As Mesos-DNS does, a task belongs to
//! the framework that lists it (whatever its own `framework_id` says), and
//! every listed task is kept, even two with the same id.

use serde::Deserialize;

use super::{
    api::{
        Agent, AgentInfo, ContainerInfo, ContainerStatus, Discovery, Framework, FrameworkInfo, Id,
        Label, Labels, Range, Ranges, Resource, Task, TaskStatus,
    },
    cluster,
    lenient::Lenient,
    state::{Applied, MesosState, Snapshot},
};
use crate::hosts::HostTable;

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct MasterState {
    #[serde(default)]
    pub frameworks: Vec<Lenient<StateFramework>>,
    #[serde(default)]
    pub slaves: Vec<Lenient<Slave>>,
    /// `master@10.0.0.1:5050`.
    pub leader: Option<String>,
    pub hostname: Option<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct StateFramework {
    pub id: Option<String>,
    pub name: Option<String>,
    pub hostname: Option<String>,
    /// `scheduler(1)@10.0.0.2:25501`.
    pub pid: Option<String>,
    #[serde(default)]
    pub tasks: Vec<Lenient<StateTask>>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Slave {
    pub id: Option<String>,
    pub hostname: Option<String>,
    /// `slave(1)@10.0.0.3:5051`.
    pub pid: Option<String>,
    /// Its fault domain (`fault_domain::agent_zone`).
    #[serde(default)]
    pub domain: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct StateTask {
    pub id: Option<String>,
    pub name: Option<String>,
    pub framework_id: Option<String>,
    pub slave_id: Option<String>,
    pub state: Option<String>,
    pub statuses: Option<Vec<StateStatus>>,
    pub resources: Option<StateResources>,
    pub discovery: Option<Discovery>,
    pub container: Option<ContainerInfo>,
    pub labels: Option<Vec<Label>>,
    pub health_check: Option<serde::de::IgnoredAny>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct StateStatus {
    pub state: Option<String>,
    pub timestamp: Option<f64>,
    pub healthy: Option<bool>,
    pub labels: Option<Vec<Label>>,
    pub container_status: Option<ContainerStatus>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct StateResources {
    /// `"[31000-31000, 31005-31006]"`.
    pub ports: Option<String>,
}

/// Every task of `/master/state`, in the order listed.
pub fn from_master_state(st: &MasterState, hosts: &HostTable) -> Snapshot {
    let mut out = Applied::default();
    let agents = st.slaves.iter().map(|s| lenient_ref(s, slave_to_agent));
    let frameworks = st.frameworks.iter().map(|f| lenient_ref(f, to_framework));
    let ms = MesosState::with_parts(agents, frameworks, hosts, &mut out);
    let mut snap = Snapshot::default();
    for fw in st.frameworks.iter().filter_map(|f| match f {
        Lenient::Ok(f) => Some(f),
        Lenient::Bad { .. } => None,
    }) {
        for t in &fw.tasks {
            let task = lenient_ref(t, |t| to_task(t, fw.id.as_deref()));
            ms.read_one(&task, &mut snap, &mut out);
        }
    }
    snap.cluster = ms.cluster_facts();
    snap.cluster.leader = st.leader.as_deref().and_then(cluster::parse_pid);
    snap.agents = ms.into_agents();
    snap.warnings = out.warnings;
    snap
}

fn lenient_ref<T, U>(l: &Lenient<T>, f: impl FnOnce(&T) -> U) -> Lenient<U> {
    match l {
        Lenient::Ok(t) => Lenient::Ok(f(t)),
        Lenient::Bad { id, error } => Lenient::Bad {
            id: id.clone(),
            error: error.clone(),
        },
    }
}

fn id(s: &Option<String>) -> Option<Id> {
    s.clone().map(|value| Id { value })
}

fn slave_to_agent(s: &Slave) -> Agent {
    Agent {
        agent_info: AgentInfo {
            id: id(&s.id),
            hostname: s.hostname.clone(),
            port: None,
            domain: s.domain.clone(),
        },
        active: None,
        pid: s.pid.clone(),
    }
}

fn to_framework(f: &StateFramework) -> Framework {
    Framework {
        framework_info: FrameworkInfo {
            id: id(&f.id),
            name: f.name.clone(),
            hostname: f.hostname.clone(),
        },
        active: None,
        pid: f.pid.clone(),
    }
}

fn labels(l: &Option<Vec<Label>>) -> Option<Labels> {
    l.clone().map(|labels| Labels { labels })
}

fn to_task(t: &StateTask, framework_id: Option<&str>) -> Task {
    let statuses = t.statuses.as_ref().map(|ss| {
        ss.iter()
            .map(|s| TaskStatus {
                state: s.state.clone(),
                timestamp: s.timestamp,
                healthy: s.healthy,
                container_status: s.container_status.clone(),
                labels: labels(&s.labels),
                ..TaskStatus::default()
            })
            .collect()
    });
    let ports = t.resources.as_ref().and_then(|r| r.ports.as_deref());
    Task {
        name: t.name.clone(),
        task_id: id(&t.id),
        framework_id: id(&framework_id.map(str::to_owned)),
        agent_id: id(&t.slave_id),
        state: t.state.clone(),
        statuses,
        labels: labels(&t.labels),
        discovery: t.discovery.clone(),
        container: t.container.clone(),
        resources: ports.map(|p| vec![ports_resource(p)]),
        health_check: t.health_check,
        ..Task::default()
    }
}

/// `"[31000-31000, 31005-31006]"` as a RANGES resource; a malformed piece is
/// left out (Mesos-DNS's `Resources.Ports`).
fn ports_resource(s: &str) -> Resource {
    let inner = s.trim().trim_start_matches('[').trim_end_matches(']');
    let range = inner
        .split(',')
        .filter_map(|piece| {
            let (lo, hi) = piece.trim().split_once('-')?;
            let (begin, end) = (lo.trim().parse().ok()?, hi.trim().parse().ok()?);
            (begin <= end).then_some(Range { begin, end })
        })
        .collect();
    Resource {
        name: Some("ports".into()),
        kind: Some("RANGES".into()),
        ranges: Some(Ranges { range }),
        scalar: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_strings_parse_as_mesos_dns_parses_them() {
        let r = ports_resource("[31354-31354, 31355-31357, x-1, 9-8]");
        let got: Vec<_> = r
            .ranges
            .unwrap()
            .range
            .iter()
            .map(|g| (g.begin, g.end))
            .collect();
        assert_eq!(got, [(31354, 31354), (31355, 31357)]);
        assert!(ports_resource("[]").ranges.unwrap().range.is_empty());
    }
}
