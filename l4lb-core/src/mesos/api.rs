//! The Mesos master operator API v1 (JSON), as far as discovery needs it:
//! the `SUBSCRIBE` stream's messages (SUBSCRIBED with its `get_state`
//! snapshot, TASK_ADDED, TASK_UPDATED, AGENT_ADDED/REMOVED,
//! FRAMEWORK_ADDED/UPDATED/REMOVED, HEARTBEAT) and a `GET_STATE` answer.
//! Lenient: unknown fields are ignored, every field this code does not
//! strictly need is optional, and a task, agent or framework that does not
//! decode is kept as [`Lenient::Bad`] so the rest of the message is used.

use serde::Deserialize;

use super::lenient::Lenient;

/// `{"value": "…"}`: how Mesos spells every id.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Id {
    pub value: String,
}

/// `{"labels": [{"key", "value"}]}`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Labels {
    #[serde(default)]
    pub labels: Vec<Label>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Label {
    pub key: Option<String>,
    pub value: Option<String>,
}

/// One message of the stream (or a `GET_STATE` answer), by its `type`.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    Subscribed(Subscribed),
    TaskAdded(Lenient<Task>),
    TaskUpdated(Lenient<TaskUpdated>),
    AgentAdded(Lenient<Agent>),
    AgentRemoved(Id),
    FrameworkAdded(Lenient<Framework>),
    FrameworkUpdated(Lenient<Framework>),
    FrameworkRemoved(Lenient<FrameworkInfo>),
    Heartbeat,
    /// A `GET_STATE` call's answer (the poll mode, and dcos-net's tests).
    GetState(GetState),
    /// Another type: ignored with a warning.
    Unknown(String),
}

impl Message {
    /// The operator API's name of the message type (`TASK_UPDATED`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Subscribed(_) => "SUBSCRIBED",
            Message::TaskAdded(_) => "TASK_ADDED",
            Message::TaskUpdated(_) => "TASK_UPDATED",
            Message::AgentAdded(_) => "AGENT_ADDED",
            Message::AgentRemoved(_) => "AGENT_REMOVED",
            Message::FrameworkAdded(_) => "FRAMEWORK_ADDED",
            Message::FrameworkUpdated(_) => "FRAMEWORK_UPDATED",
            Message::FrameworkRemoved(_) => "FRAMEWORK_REMOVED",
            Message::Heartbeat => "HEARTBEAT",
            Message::GetState(_) => "GET_STATE",
            Message::Unknown(_) => "UNKNOWN",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("Mesos message is not JSON of the expected shape: {0}")]
    Json(#[from] serde_json::Error),
    #[error("Mesos {kind} message without its {field:?} object")]
    Missing { kind: String, field: &'static str },
}

/// The wire form: `type` plus the one object it names (read in one pass,
/// nothing buffered twice).
#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "type")]
    kind: String,
    subscribed: Option<Subscribed>,
    task_added: Option<TaskAdded>,
    task_updated: Option<Lenient<TaskUpdated>>,
    agent_added: Option<AgentAdded>,
    agent_removed: Option<AgentRemoved>,
    framework_added: Option<FrameworkEvent>,
    framework_updated: Option<FrameworkEvent>,
    framework_removed: Option<FrameworkRemoved>,
    get_state: Option<GetState>,
}

#[derive(Deserialize)]
struct TaskAdded {
    task: Lenient<Task>,
}

#[derive(Deserialize)]
struct AgentAdded {
    agent: Lenient<Agent>,
}

#[derive(Deserialize)]
struct AgentRemoved {
    agent_id: Id,
}

#[derive(Deserialize)]
struct FrameworkEvent {
    framework: Lenient<Framework>,
}

#[derive(Deserialize)]
struct FrameworkRemoved {
    framework_info: Lenient<FrameworkInfo>,
}

/// Decodes one RecordIO record (or a whole `GET_STATE` body).
pub fn decode_message(bytes: &[u8]) -> Result<Message, MessageError> {
    let raw: Raw = serde_json::from_slice(bytes)?;
    let missing = |field| MessageError::Missing {
        kind: raw.kind.clone(),
        field,
    };
    Ok(match raw.kind.as_str() {
        "SUBSCRIBED" => Message::Subscribed(raw.subscribed.ok_or_else(|| missing("subscribed"))?),
        "TASK_ADDED" => {
            Message::TaskAdded(raw.task_added.ok_or_else(|| missing("task_added"))?.task)
        }
        "TASK_UPDATED" => {
            Message::TaskUpdated(raw.task_updated.ok_or_else(|| missing("task_updated"))?)
        }
        "AGENT_ADDED" => {
            Message::AgentAdded(raw.agent_added.ok_or_else(|| missing("agent_added"))?.agent)
        }
        "AGENT_REMOVED" => Message::AgentRemoved(
            raw.agent_removed
                .ok_or_else(|| missing("agent_removed"))?
                .agent_id,
        ),
        "FRAMEWORK_ADDED" => Message::FrameworkAdded(
            raw.framework_added
                .ok_or_else(|| missing("framework_added"))?
                .framework,
        ),
        "FRAMEWORK_UPDATED" => Message::FrameworkUpdated(
            raw.framework_updated
                .ok_or_else(|| missing("framework_updated"))?
                .framework,
        ),
        "FRAMEWORK_REMOVED" => Message::FrameworkRemoved(
            raw.framework_removed
                .ok_or_else(|| missing("framework_removed"))?
                .framework_info,
        ),
        "HEARTBEAT" => Message::Heartbeat,
        "GET_STATE" => Message::GetState(raw.get_state.ok_or_else(|| missing("get_state"))?),
        _ => Message::Unknown(raw.kind),
    })
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Subscribed {
    #[serde(default)]
    pub get_state: GetState,
    pub heartbeat_interval_seconds: Option<f64>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct GetState {
    #[serde(default)]
    pub get_agents: GetAgents,
    #[serde(default)]
    pub get_frameworks: GetFrameworks,
    #[serde(default)]
    pub get_tasks: GetTasks,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct GetAgents {
    #[serde(default)]
    pub agents: Vec<Lenient<Agent>>,
    /// Agents the master knows from its registry but that have not
    /// re-registered yet: bare `AgentInfo`s. dcos-net ignores them (their
    /// AGENT_ADDED follows once they are back); [`super::MesosState`] notes
    /// their ids only, for [`super::TaskParts`].
    #[serde(default)]
    pub recovered_agents: Vec<Lenient<AgentInfo>>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct GetFrameworks {
    #[serde(default)]
    pub frameworks: Vec<Lenient<Framework>>,
    #[serde(default)]
    pub completed_frameworks: Vec<Lenient<Framework>>,
}

/// The task lists. `tasks` is the current field; Mesos before 1.5 called it
/// `launched_tasks` (dcos-net reads `tasks`, else `launched_tasks`). The
/// other lists are decoded for completeness; discovery uses none of them.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct GetTasks {
    pub tasks: Option<Vec<Lenient<Task>>>,
    pub launched_tasks: Option<Vec<Lenient<Task>>>,
    #[serde(default)]
    pub pending_tasks: Vec<Lenient<Task>>,
    #[serde(default)]
    pub completed_tasks: Vec<Lenient<Task>>,
    #[serde(default)]
    pub unreachable_tasks: Vec<Lenient<Task>>,
    #[serde(default)]
    pub orphan_tasks: Vec<Lenient<Task>>,
}

impl GetTasks {
    /// The running set: `tasks`, else `launched_tasks`.
    pub fn current(&self) -> &[Lenient<Task>] {
        self.tasks
            .as_deref()
            .or(self.launched_tasks.as_deref())
            .unwrap_or(&[])
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Agent {
    pub agent_info: AgentInfo,
    pub active: Option<bool>,
    /// `slave(1)@10.0.0.3:5051`; anything but a string reads as absent
    /// (it only feeds Mesos-DNS's `slave.<domain>` records).
    #[serde(default, deserialize_with = "string_or_none")]
    pub pid: Option<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct AgentInfo {
    pub id: Option<Id>,
    pub hostname: Option<String>,
    pub port: Option<u16>,
    /// Its fault domain, any JSON here (`fault_domain::agent_zone` reads it).
    #[serde(default)]
    pub domain: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Framework {
    pub framework_info: FrameworkInfo,
    pub active: Option<bool>,
    /// The scheduler's pid: `/master/state` has it, the operator API not.
    #[serde(skip)]
    pub pid: Option<String>,
}

fn string_or_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(v.as_str().map(str::to_owned))
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct FrameworkInfo {
    pub id: Option<Id>,
    pub name: Option<String>,
    pub hostname: Option<String>,
}

/// TASK_UPDATED: the new status, the framework, and the task's state
/// (dcos-net trusts this `state` over the status's own).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct TaskUpdated {
    pub framework_id: Id,
    pub state: Option<String>,
    pub status: TaskStatus,
}

/// A task as the master reports it. The status fields at the end
/// (`container_status`, `healthy`) are not Mesos's: they are what a task
/// object carries when it *is* a status (TASK_UPDATED, see
/// [`Task::from_update`]), read where dcos-net reads them.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Task {
    pub name: Option<String>,
    pub task_id: Option<Id>,
    pub framework_id: Option<Id>,
    pub agent_id: Option<Id>,
    pub state: Option<String>,
    pub statuses: Option<Vec<TaskStatus>>,
    pub labels: Option<Labels>,
    pub discovery: Option<Discovery>,
    pub container: Option<ContainerInfo>,
    pub resources: Option<Vec<Resource>>,
    pub health_check: Option<serde::de::IgnoredAny>,
    pub container_status: Option<ContainerStatus>,
    pub healthy: Option<bool>,
}

impl Task {
    /// TASK_UPDATED as dcos-net reads it: the status, with the event's
    /// framework id and state put in.
    pub fn from_update(u: TaskUpdated) -> Task {
        let s = u.status;
        Task {
            task_id: s.task_id,
            framework_id: Some(u.framework_id),
            agent_id: s.agent_id,
            state: u.state.or(s.state),
            container_status: s.container_status,
            healthy: s.healthy,
            ..Task::default()
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct TaskStatus {
    pub task_id: Option<Id>,
    pub agent_id: Option<Id>,
    pub state: Option<String>,
    pub timestamp: Option<f64>,
    pub healthy: Option<bool>,
    pub container_status: Option<ContainerStatus>,
    pub labels: Option<Labels>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct ContainerStatus {
    pub network_infos: Option<Vec<NetworkInfo>>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct NetworkInfo {
    pub name: Option<String>,
    pub ip_addresses: Option<Vec<IpAddress>>,
    pub port_mappings: Option<Vec<PortMapping>>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct IpAddress {
    pub ip_address: Option<String>,
    pub protocol: Option<String>,
}

/// A port mapping (`network_infos[].port_mappings[]`, or Docker's
/// `container.docker.port_mappings[]`: the same three fields).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct PortMapping {
    pub container_port: Option<u64>,
    pub host_port: Option<u64>,
    pub protocol: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct ContainerInfo {
    /// `MESOS`, `DOCKER`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub docker: Option<DockerInfo>,
    pub network_infos: Option<Vec<NetworkInfo>>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct DockerInfo {
    pub port_mappings: Option<Vec<PortMapping>>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Discovery {
    pub name: Option<String>,
    pub ports: Option<DiscoveryPorts>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct DiscoveryPorts {
    pub ports: Option<Vec<DiscoveryPort>>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct DiscoveryPort {
    pub number: Option<u64>,
    pub name: Option<String>,
    pub protocol: Option<String>,
    pub labels: Option<Labels>,
}

/// A resource; discovery reads only `ports` (RANGES or SCALAR).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Resource {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub ranges: Option<Ranges>,
    pub scalar: Option<Scalar>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Ranges {
    #[serde(default)]
    pub range: Vec<Range>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub struct Range {
    pub begin: u64,
    pub end: u64,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
pub struct Scalar {
    pub value: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_decode_by_type() {
        assert_eq!(
            decode_message(br#"{"type":"HEARTBEAT","x":1}"#).unwrap(),
            Message::Heartbeat
        );
        assert_eq!(
            decode_message(br#"{"type":"TASK_DROPPED_ALL"}"#).unwrap(),
            Message::Unknown("TASK_DROPPED_ALL".into())
        );
        let m = decode_message(
            br#"{"type":"AGENT_REMOVED","agent_removed":{"agent_id":{"value":"S1"}}}"#,
        )
        .unwrap();
        assert_eq!(m, Message::AgentRemoved(Id { value: "S1".into() }));
    }

    #[test]
    fn an_unusable_message_is_an_error() {
        assert!(decode_message(b"{").is_err());
        assert!(decode_message(br#"{"subscribed":{}}"#).is_err());
        assert!(matches!(
            decode_message(br#"{"type":"TASK_ADDED"}"#),
            Err(MessageError::Missing { .. })
        ));
        assert!(decode_message(br#"{"type":"SUBSCRIBED","subscribed":{"get_state":7}}"#).is_err());
    }

    #[test]
    fn a_bad_task_does_not_fail_the_snapshot() {
        let m = decode_message(
            br#"{"type":"SUBSCRIBED","subscribed":{"get_state":{"get_tasks":{"tasks":[
                {"task_id":{"value":"ok.1"}},
                {"task_id":{"value":"bad.1"},"statuses":"not a list"}]}}}}"#,
        )
        .unwrap();
        let Message::Subscribed(s) = m else { panic!() };
        let tasks = s.get_state.get_tasks.current();
        assert!(matches!(&tasks[0], Lenient::Ok(_)));
        assert!(matches!(&tasks[1], Lenient::Bad { id: Some(id), .. } if id == "bad.1"));
    }
}
