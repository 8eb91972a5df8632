//! [`MesosState`]: dcos-net's listener as a pure state machine. It holds
//! agents (id → address), frameworks (id → name) and tasks (by framework id
//! and task id); a task whose agent or framework is not known yet is held,
//! not shown, until both are (an AGENT_ADDED or FRAMEWORK_ADDED/UPDATED
//! releases it); a task reaching a terminal state is dropped; AGENT_REMOVED
//! and FRAMEWORK_REMOVED forget the agent or framework only (tasks go when
//! Mesos says they ended); the snapshot's `recovered_agents` are noted as
//! recovering until they re-register or go. [`from_state`] is dcos-net's `from_state/1`: one
//! `GET_STATE` answer read on its own.
//!
//! Agent addresses: an IP literal is used as is; a host name is looked up
//! in the [`HostTable`] passed in (never DNS from here). An agent whose name
//! has no address yet holds its tasks like an unknown agent;
//! [`MesosState::wanted_hosts`] lists the names to resolve and
//! [`MesosState::refresh_hosts`] applies a newer table.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::Duration,
};

use super::{
    api::{Agent, Framework, FrameworkInfo, GetState, Message, Task},
    cluster::{self, ClusterFacts},
    lenient::Lenient,
    task::{Context, Record, Ref, TaskKey, TaskState, TaskView, derive},
    warning::{Warning, WarningKind},
};
use crate::hosts::{AgentAt, HostTable, Lookup, parse_agent_host};

/// An agent as last reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownAgent {
    /// Its `hostname`, parsed (None: absent or invalid).
    pub host: Option<AgentAt>,
    /// The address tasks get: the literal, or the name's current address.
    pub ip: Option<IpAddr>,
    /// Its fault domain's zone, which its tasks are in.
    pub zone: Option<String>,
}

/// What one call changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// The visible task set, or the agents and frameworks (cluster records,
    /// tasks carried over a failover) changed: rebuild the catalog.
    pub changed: bool,
    pub warnings: Vec<Warning>,
}

/// Which tasks' views may have changed since [`MesosState::take_changes`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Changes {
    /// All of them (a snapshot started over).
    #[default]
    All,
    /// These (visible, hidden or gone now).
    Tasks(BTreeSet<TaskKey>),
}

#[derive(Clone, Debug, Default)]
pub struct MesosState {
    agents: BTreeMap<String, KnownAgent>,
    frameworks: BTreeMap<String, String>,
    tasks: BTreeMap<TaskKey, Record>,
    waiting: BTreeSet<TaskKey>,
    /// `recovered_agents` of the snapshot not re-registered (AGENT_ADDED)
    /// or removed since: a master just elected lists no task of theirs yet.
    recovering: BTreeSet<String>,
    heartbeat: Option<Duration>,
    changes: Changes,
    /// Agents' and frameworks' addresses, for Mesos-DNS's cluster records
    /// (no leader or masters: the caller knows those).
    cluster: ClusterFacts,
}

impl MesosState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one message of the stream. SUBSCRIBED (and a GET_STATE
    /// answer) starts over from its snapshot.
    pub fn apply(&mut self, msg: Message, hosts: &HostTable) -> Applied {
        let mut out = Applied::default();
        match msg {
            Message::Subscribed(s) => {
                *self = MesosState::new();
                self.heartbeat = s
                    .heartbeat_interval_seconds
                    .and_then(|s| Duration::try_from_secs_f64(s).ok());
                self.snapshot(s.get_state, hosts, &mut out);
            }
            Message::GetState(g) => {
                *self = MesosState::new();
                self.snapshot(g, hosts, &mut out);
            }
            Message::TaskAdded(t) => self.task(t, &mut out),
            Message::TaskUpdated(u) => self.task(lenient_map(u, Task::from_update), &mut out),
            Message::AgentAdded(a) => self.agent_added(a, hosts, &mut out),
            Message::AgentRemoved(id) => {
                self.recovering.remove(&id.value);
                self.agents.remove(&id.value);
                self.cluster.agents.remove(&id.value);
                out.changed = true;
            }
            Message::FrameworkAdded(f) | Message::FrameworkUpdated(f) => {
                self.framework_updated(f, &mut out)
            }
            Message::FrameworkRemoved(f) => self.framework_removed(f, &mut out),
            Message::Heartbeat => {}
            Message::Unknown(kind) => out.warnings.push(Warning::new(
                WarningKind::UnknownMessage,
                "Mesos stream",
                format!("message type {kind:?} ignored"),
            )),
        }
        out
    }

    /// dcos-net's `handle_subscribed`: agents, then frameworks, then tasks.
    fn snapshot(&mut self, g: GetState, hosts: &HostTable, out: &mut Applied) {
        let recovered = g.get_agents.recovered_agents.into_iter();
        self.recovering = recovered.filter_map(|a| Some(a.ok()?.id?.value)).collect();
        for a in g.get_agents.agents {
            self.agent_added(a, hosts, out);
        }
        for f in g.get_frameworks.frameworks {
            self.framework_updated(f, out);
        }
        let tasks = match g.get_tasks.tasks {
            Some(t) => t,
            None => g.get_tasks.launched_tasks.unwrap_or_default(),
        };
        for t in tasks {
            self.task(t, out);
        }
        out.changed = true;
    }

    /// The tasks whose agent and framework are known.
    pub fn tasks(&self) -> impl Iterator<Item = (&TaskKey, TaskView)> {
        self.tasks
            .iter()
            .filter(|(k, _)| !self.waiting.contains(*k))
            .filter_map(|(k, r)| Some((k, self.zoned(r.view()?))))
    }

    /// The view with its agent's zone.
    fn zoned(&self, mut v: TaskView) -> TaskView {
        v.zone = self.agents.get(&v.agent_id).and_then(|a| a.zone.clone());
        v
    }

    /// The view of one task, if it is visible.
    pub fn view(&self, key: &TaskKey) -> Option<TaskView> {
        match self.waiting.contains(key) {
            true => None,
            false => Some(self.zoned(self.tasks.get(key)?.view()?)),
        }
    }

    /// The tasks whose view may have changed since the last call (all of
    /// them after a snapshot): a catalog is kept up to date by redoing only
    /// those.
    pub fn take_changes(&mut self) -> Changes {
        std::mem::replace(&mut self.changes, Changes::Tasks(BTreeSet::new()))
    }

    fn touched(&mut self, key: &TaskKey) {
        if let Changes::Tasks(keys) = &mut self.changes {
            keys.insert(key.clone());
        }
    }

    /// True while `agent_id` is a recovered agent of the snapshot that has
    /// not re-registered (nor been removed).
    pub fn is_recovering(&self, agent_id: &str) -> bool {
        self.recovering.contains(agent_id)
    }

    /// How many tasks wait for their agent or framework.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn agents(&self) -> impl Iterator<Item = (&str, &KnownAgent)> {
        self.agents.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Framework id → name.
    pub fn frameworks(&self) -> impl Iterator<Item = (&str, &str)> {
        self.frameworks
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// SUBSCRIBED's heartbeat interval: the stream is dead after 3 of them
    /// without a message (dcos-net's timer).
    pub fn heartbeat_interval(&self) -> Option<Duration> {
        self.heartbeat
    }

    /// Host names the resolver should answer (agents', and those of the
    /// cluster records: agent pids, framework hosts), each once, sorted.
    pub fn wanted_hosts(&self) -> impl Iterator<Item = &str> {
        let agents = self.agents.values().filter_map(|a| match &a.host {
            Some(AgentAt::Name(n)) => Some(&**n),
            _ => None,
        });
        let all: BTreeSet<&str> = agents
            .chain(self.cluster.wanted_hosts().map(|n| &**n))
            .collect();
        all.into_iter()
    }

    /// The agents' and frameworks' addresses as last reported.
    pub fn cluster_facts(&self) -> ClusterFacts {
        self.cluster.clone()
    }

    /// A newer host table: agents whose name now has another address take
    /// it (with their tasks), held tasks whose agent now resolves go out.
    pub fn refresh_hosts(&mut self, hosts: &HostTable) -> Applied {
        let mut out = Applied::default();
        let moved: Vec<(String, IpAddr)> = self
            .agents
            .iter()
            .filter_map(|(id, a)| {
                let now = resolve(a.host.as_ref(), hosts)?;
                (a.ip != Some(now)).then(|| (id.clone(), now))
            })
            .collect();
        for (id, ip) in moved {
            self.agents.get_mut(&id).expect("listed").ip = Some(ip);
            self.readdress_tasks(&id, ip, &mut out);
            self.release(Release::Agent(&id, ip), &mut out);
        }
        out
    }

    /// Visible tasks on an agent whose address changed.
    fn readdress_tasks(&mut self, agent_id: &str, ip: IpAddr, out: &mut Applied) {
        let mut moved = Vec::new();
        for (key, r) in self.tasks.iter_mut() {
            if r.agent_id == agent_id && matches!(r.agent, Ref::Known(_)) {
                r.agent = Ref::Known(ip);
                out.changed |= !self.waiting.contains(key);
                moved.push(key.clone());
            }
        }
        for key in &moved {
            self.touched(key);
        }
    }

    fn task(&mut self, t: Lenient<Task>, out: &mut Applied) {
        let task = match t {
            Lenient::Ok(task) => task,
            Lenient::Bad { id, error } => return skip_task(id.as_deref(), &error, out),
        };
        let (Some(fw), Some(id)) = (&task.framework_id, &task.task_id) else {
            let id = task.task_id.as_ref().map(|i| i.value.as_str());
            return skip_task(id, "no framework_id or task_id", out);
        };
        let key = TaskKey {
            framework_id: fw.value.clone(),
            task_id: id.value.clone(),
        };
        let Some(agent_id) = task.agent_id.as_ref().map(|a| a.value.as_str()) else {
            return skip_task(Some(&key.to_string()), "no agent_id", out);
        };
        let cx = Context {
            key: &key,
            agent_id,
            agent: self.agent_ref(agent_id),
            framework: self.framework_ref(&key.framework_id),
        };
        let prev = self.tasks.get(&key);
        let new = derive(&task, prev, cx, &mut out.warnings);
        if prev != Some(&new) {
            self.add_task(key, new, out);
        }
    }

    fn agent_ref(&self, id: &str) -> Ref<IpAddr> {
        match self.agents.get(id).and_then(|a| a.ip) {
            Some(ip) => Ref::Known(ip),
            None => Ref::Pending(id.to_owned()),
        }
    }

    fn framework_ref(&self, id: &str) -> Ref<String> {
        match self.frameworks.get(id) {
            Some(name) => Ref::Known(name.clone()),
            None => Ref::Pending(id.to_owned()),
        }
    }

    /// dcos-net's `add_task/3`: terminal → dropped; agent or framework
    /// unknown → held; else shown.
    fn add_task(&mut self, key: TaskKey, r: Record, out: &mut Applied) {
        self.touched(&key);
        let was_visible = self.tasks.contains_key(&key) && !self.waiting.contains(&key);
        if r.state == Some(TaskState::Terminal) {
            self.tasks.remove(&key);
            self.waiting.remove(&key);
            out.changed |= was_visible;
        } else if r.is_waiting() {
            self.waiting.insert(key.clone());
            self.tasks.insert(key, r);
            out.changed |= was_visible;
        } else {
            self.waiting.remove(&key);
            self.tasks.insert(key, r);
            out.changed = true;
        }
    }

    fn agent_added(&mut self, a: Lenient<Agent>, hosts: &HostTable, out: &mut Applied) {
        let (info, pid) = match a {
            Lenient::Ok(a) => (a.agent_info, a.pid),
            Lenient::Bad { id, error } => {
                return out.warnings.push(Warning::new(
                    WarningKind::SkippedAgent,
                    format!("agent {}", id.as_deref().unwrap_or("?")),
                    error,
                ));
            }
        };
        let Some(id) = info.id.map(|i| i.value) else {
            return out.warnings.push(Warning::new(
                WarningKind::SkippedAgent,
                format!("agent {}", info.hostname.as_deref().unwrap_or("?")),
                "no id",
            ));
        };
        let node = cluster::endpoint(pid.as_deref(), info.hostname.as_deref(), info.port);
        match node {
            Some(n) => self.cluster.agents.insert(id.clone(), n),
            None => self.cluster.agents.remove(&id),
        };
        self.recovering.remove(&id);
        out.changed = true;
        let host = info.hostname.as_deref().and_then(parse_agent_host);
        if host.is_none() {
            out.warnings.push(Warning::new(
                WarningKind::AgentHost,
                format!("agent {id}"),
                format!(
                    "hostname {:?} is neither an address nor a name",
                    info.hostname
                ),
            ));
        }
        let ip = resolve(host.as_ref(), hosts);
        let zone = super::fault_domain::agent_zone(info.domain.as_ref()).unwrap_or_else(|why| {
            let subject = format!("agent {id}");
            out.warnings
                .push(Warning::new(WarningKind::AgentZone, subject, why));
            None
        });
        let entry = self.agents.entry(id.clone()).or_insert(KnownAgent {
            host: None,
            ip: None,
            zone: None,
        });
        entry.host = host;
        entry.zone = zone;
        // As dcos-net: no address now keeps the one it had.
        entry.ip = ip.or(entry.ip);
        if let Some(ip) = entry.ip {
            self.release(Release::Agent(&id, ip), out);
        }
    }

    fn framework_updated(&mut self, f: Lenient<Framework>, out: &mut Applied) {
        let mut pid = None;
        let f = lenient_map(f, |f| {
            pid = f.pid;
            f.framework_info
        });
        let Some(info) = framework_info(f, out) else {
            return;
        };
        let Some((id, Some(name))) = info.id.map(|i| (i.value, info.name)) else {
            return;
        };
        match cluster::endpoint(pid.as_deref(), info.hostname.as_deref(), None) {
            Some(n) => self
                .cluster
                .frameworks
                .insert(id.clone(), (name.clone(), n)),
            None => self.cluster.frameworks.remove(&id),
        };
        self.frameworks.insert(id.clone(), name.clone());
        out.changed = true;
        self.release(Release::Framework(&id, name), out);
    }

    fn framework_removed(&mut self, f: Lenient<FrameworkInfo>, out: &mut Applied) {
        if let Some(id) = framework_info(f, out).and_then(|i| i.id) {
            self.frameworks.remove(&id.value);
            self.cluster.frameworks.remove(&id.value);
            out.changed = true;
        }
    }

    /// dcos-net's `handle_waiting_tasks`: held tasks waiting for this agent
    /// or framework take it and are re-added.
    fn release(&mut self, what: Release, out: &mut Applied) {
        let held: Vec<TaskKey> = self.waiting.iter().cloned().collect();
        for key in held {
            let mut r = self.tasks[&key].clone();
            match &what {
                Release::Agent(id, ip) if r.agent == Ref::Pending(id.to_string()) => {
                    r.agent = Ref::Known(*ip)
                }
                Release::Framework(id, name) if r.framework == Ref::Pending(id.to_string()) => {
                    r.framework = Ref::Known(name.clone())
                }
                _ => continue,
            }
            self.add_task(key, r, out);
        }
    }
}

enum Release<'a> {
    Agent(&'a str, IpAddr),
    Framework(&'a str, String),
}

fn lenient_map<T, U>(l: Lenient<T>, f: impl FnOnce(T) -> U) -> Lenient<U> {
    match l {
        Lenient::Ok(t) => Lenient::Ok(f(t)),
        Lenient::Bad { id, error } => Lenient::Bad { id, error },
    }
}

fn framework_info(f: Lenient<FrameworkInfo>, out: &mut Applied) -> Option<FrameworkInfo> {
    match f {
        Lenient::Ok(info) if info.id.is_some() => Some(info),
        Lenient::Ok(info) => {
            out.warnings.push(Warning::new(
                WarningKind::SkippedFramework,
                format!("framework {}", info.name.as_deref().unwrap_or("?")),
                "no id",
            ));
            None
        }
        Lenient::Bad { id, error } => {
            out.warnings.push(Warning::new(
                WarningKind::SkippedFramework,
                format!("framework {}", id.as_deref().unwrap_or("?")),
                error,
            ));
            None
        }
    }
}

fn skip_task(id: Option<&str>, error: &str, out: &mut Applied) {
    let subject = match id {
        Some(id) if id.starts_with("task ") => id.to_owned(),
        Some(id) => format!("task {id}"),
        None => "task ?".to_owned(),
    };
    out.warnings
        .push(Warning::new(WarningKind::SkippedTask, subject, error));
}

/// The address an agent's host gives: the literal, or the name's answer.
pub fn resolve(host: Option<&AgentAt>, hosts: &HostTable) -> Option<IpAddr> {
    match host? {
        AgentAt::Ip(ip) => Some(*ip),
        AgentAt::Name(n) => match hosts.lookup(n) {
            Lookup::Addr(a) => Some(a),
            Lookup::Missing(_) => None,
        },
    }
}

/// A one-shot read's tasks (a `GET_STATE` answer, `/master/state`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// In the order read; a task whose agent or framework is unknown is
    /// left out (dcos-net's `from_state`). Terminal tasks stay (with state
    /// `Terminal`): a one-shot read has no later update to drop them.
    pub tasks: Vec<(TaskKey, TaskView)>,
    pub agents: BTreeMap<String, KnownAgent>,
    /// The cluster records' inputs (with the leader for `/master/state`).
    pub cluster: ClusterFacts,
    pub warnings: Vec<Warning>,
}

impl Snapshot {
    /// By key, the last read winning (dcos-net's map).
    pub fn by_key(&self) -> BTreeMap<TaskKey, TaskView> {
        self.tasks.iter().cloned().collect()
    }
}

/// dcos-net's `from_state/1`: every task of a `GET_STATE` answer, each
/// derived on its own against the answer's agents and frameworks.
pub fn from_state(g: &GetState, hosts: &HostTable) -> Snapshot {
    let mut out = Applied::default();
    let agents = g.get_agents.agents.iter().cloned();
    let frameworks = g.get_frameworks.frameworks.iter().cloned();
    let st = MesosState::with_parts(agents, frameworks, hosts, &mut out);
    let mut snap = Snapshot::default();
    for t in g.get_tasks.current() {
        st.read_one(t, &mut snap, &mut out);
    }
    snap.cluster = st.cluster_facts();
    snap.agents = st.agents;
    snap.warnings = out.warnings;
    snap
}

impl MesosState {
    /// One task of a one-shot read, without history.
    pub(super) fn read_one(&self, t: &Lenient<Task>, snap: &mut Snapshot, out: &mut Applied) {
        let task = match t {
            Lenient::Ok(task) => task,
            Lenient::Bad { id, error } => return skip_task(id.as_deref(), error, out),
        };
        let (Some(fw), Some(id), Some(agent)) = (&task.framework_id, &task.task_id, &task.agent_id)
        else {
            let id = task.task_id.as_ref().map(|i| i.value.as_str());
            return skip_task(id, "no framework_id, task_id or agent_id", out);
        };
        let key = TaskKey {
            framework_id: fw.value.clone(),
            task_id: id.value.clone(),
        };
        let cx = Context {
            key: &key,
            agent_id: &agent.value,
            agent: self.agent_ref(&agent.value),
            framework: self.framework_ref(&key.framework_id),
        };
        if let Some(view) = derive(task, None, cx, &mut out.warnings).view() {
            snap.tasks.push((key, view));
        }
    }

    /// The agents and frameworks of a one-shot read.
    pub(super) fn with_parts(
        agents: impl IntoIterator<Item = Lenient<Agent>>,
        frameworks: impl IntoIterator<Item = Lenient<Framework>>,
        hosts: &HostTable,
        out: &mut Applied,
    ) -> MesosState {
        let mut st = MesosState::new();
        for a in agents {
            st.agent_added(a, hosts, out);
        }
        for f in frameworks {
            st.framework_updated(f, out);
        }
        st
    }

    pub(super) fn into_agents(self) -> BTreeMap<String, KnownAgent> {
        self.agents
    }
}
