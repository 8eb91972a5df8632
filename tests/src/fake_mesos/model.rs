//! Operator API v1 JSON for the fake Mesos master and the tests that drive
//! it: agents, frameworks, tasks (with DiscoveryInfo ports and `VIP_*`
//! labels), SUBSCRIBED, the task, agent and framework events, and
//! `/master/state` made from the same `get_state` object.
use serde_json::{Value, json};

/// One DiscoveryInfo port.
#[derive(Clone, Debug)]
pub struct PortSpec {
    pub number: u16,
    pub protocol: &'static str,
    pub name: Option<String>,
    /// `VIP_<i>` label values.
    pub vips: Vec<String>,
    /// `network-scope=host`: `number` is a port on the agent.
    pub host: bool,
}

impl PortSpec {
    pub fn tcp(number: u16, vip: &str) -> PortSpec {
        PortSpec {
            number,
            protocol: "tcp",
            name: None,
            vips: vec![vip.to_owned()],
            host: false,
        }
    }

    fn json(&self) -> Value {
        let mut labels: Vec<Value> = self
            .vips
            .iter()
            .enumerate()
            .map(|(i, v)| json!({"key": format!("VIP_{i}"), "value": v}))
            .collect();
        if self.host {
            labels.push(json!({"key": "network-scope", "value": "host"}));
        }
        let mut p = json!({"number": self.number, "protocol": self.protocol,
            "labels": {"labels": labels}});
        if let Some(n) = &self.name {
            p["name"] = json!(n);
        }
        p
    }
}

/// One task, running on `ip` unless `state` says otherwise.
#[derive(Clone, Debug)]
pub struct TaskSpec {
    pub id: String,
    pub name: String,
    /// DiscoveryInfo's name when it is not the task's (SDK frameworks).
    pub discovery_name: Option<String>,
    pub framework_id: String,
    pub agent_id: String,
    pub ip: String,
    pub ports: Vec<PortSpec>,
    pub state: String,
    pub healthy: Option<bool>,
}

impl TaskSpec {
    pub fn new(id: &str, framework_id: &str, agent_id: &str, ip: &str) -> TaskSpec {
        TaskSpec {
            id: id.into(),
            name: id.split('.').next().unwrap_or(id).into(),
            discovery_name: None,
            framework_id: framework_id.into(),
            agent_id: agent_id.into(),
            ip: ip.into(),
            ports: Vec::new(),
            state: "TASK_RUNNING".into(),
            healthy: None,
        }
    }

    pub fn port(mut self, p: PortSpec) -> TaskSpec {
        self.ports.push(p);
        self
    }

    pub fn json(&self) -> Value {
        let mut status = json!({"task_id": {"value": self.id}, "agent_id": {"value": self.agent_id},
            "state": self.state, "timestamp": 1.0,
            "container_status": {"network_infos": [{"ip_addresses": [{"ip_address": self.ip}]}]}});
        if let Some(h) = self.healthy {
            status["healthy"] = json!(h);
        }
        let ports: Vec<Value> = self.ports.iter().map(PortSpec::json).collect();
        let discovery = self.discovery_name.as_ref().unwrap_or(&self.name);
        json!({"name": self.name, "task_id": {"value": self.id},
            "framework_id": {"value": self.framework_id}, "agent_id": {"value": self.agent_id},
            "state": self.state, "statuses": [status],
            "discovery": {"name": discovery, "visibility": "FRAMEWORK", "ports": {"ports": ports}},
            "container": {"type": "MESOS"}})
    }
}

pub fn agent(id: &str, hostname: &str) -> Value {
    json!({"agent_info": {"id": {"value": id}, "hostname": hostname, "port": 5051}, "active": true})
}

pub fn framework(id: &str, name: &str) -> Value {
    json!({"framework_info": {"id": {"value": id}, "name": name}, "active": true})
}

/// A `get_state` object.
pub fn get_state(agents: Vec<Value>, frameworks: Vec<Value>, tasks: Vec<Value>) -> Value {
    json!({"get_agents": {"agents": agents}, "get_frameworks": {"frameworks": frameworks},
        "get_tasks": {"tasks": tasks}})
}

/// The state a newly elected master starts from: the agents of `get_state`
/// known from its registry only (`recovered_agents`, bare `agent_info`s),
/// no framework, no task; they come back as the agents re-register
/// (dcos-net's `recovered-agents.json`).
pub fn recovering(get_state: &Value) -> Value {
    let infos: Vec<Value> = list(get_state, &["get_agents", "agents"])
        .iter()
        .map(|a| a["agent_info"].clone())
        .collect();
    json!({"get_agents": {"recovered_agents": infos}, "get_frameworks": {}, "get_tasks": {}})
}

pub fn subscribed(get_state: &Value, heartbeat_secs: f64) -> Value {
    json!({"type": "SUBSCRIBED", "subscribed": {"get_state": get_state,
        "heartbeat_interval_seconds": heartbeat_secs}})
}

pub fn task_added(task: &Value) -> Value {
    json!({"type": "TASK_ADDED", "task_added": {"task": task}})
}

/// A TASK_UPDATED to `state` for the task `task_id` of `framework_id`.
pub fn task_updated(framework_id: &str, task_id: &str, agent_id: &str, state: &str) -> Value {
    json!({"type": "TASK_UPDATED", "task_updated": {"framework_id": {"value": framework_id},
        "state": state, "status": {"task_id": {"value": task_id},
        "agent_id": {"value": agent_id}, "state": state, "timestamp": 2.0}}})
}

pub fn agent_added(agent: &Value) -> Value {
    json!({"type": "AGENT_ADDED", "agent_added": {"agent": agent}})
}

pub fn agent_removed(agent_id: &str) -> Value {
    json!({"type": "AGENT_REMOVED", "agent_removed": {"agent_id": {"value": agent_id}}})
}

/// FRAMEWORK_ADDED of a [`framework`] object.
pub fn framework_added(framework: &Value) -> Value {
    json!({"type": "FRAMEWORK_ADDED", "framework_added": {"framework": framework}})
}

pub fn framework_updated(framework: &Value) -> Value {
    json!({"type": "FRAMEWORK_UPDATED", "framework_updated": {"framework": framework}})
}

/// FRAMEWORK_REMOVED carries the `framework_info` alone.
pub fn framework_removed(framework: &Value) -> Value {
    json!({"type": "FRAMEWORK_REMOVED",
        "framework_removed": {"framework_info": framework["framework_info"]}})
}

/// One RecordIO record: `<length>\n<json>`.
pub fn record(v: &Value) -> Vec<u8> {
    let s = v.to_string();
    format!("{}\n{s}", s.len()).into_bytes()
}

/// `/master/state` for the same cluster.
pub fn master_state(get_state: &Value) -> Value {
    let val = |v: &Value| v["value"].clone();
    let slaves: Vec<Value> = list(get_state, &["get_agents", "agents"])
        .iter()
        .map(
            |a| json!({"id": val(&a["agent_info"]["id"]), "hostname": a["agent_info"]["hostname"]}),
        )
        .collect();
    let tasks = list(get_state, &["get_tasks", "tasks"]);
    let frameworks: Vec<Value> = list(get_state, &["get_frameworks", "frameworks"])
        .iter()
        .map(|f| {
            let id = val(&f["framework_info"]["id"]);
            let mine: Vec<Value> = tasks
                .iter()
                .filter(|t| val(&t["framework_id"]) == id)
                .map(state_task)
                .collect();
            json!({"id": id, "name": f["framework_info"]["name"], "tasks": mine})
        })
        .collect();
    json!({"slaves": slaves, "frameworks": frameworks})
}

fn state_task(t: &Value) -> Value {
    let mut s = t.clone();
    s["id"] = t["task_id"]["value"].clone();
    s["framework_id"] = t["framework_id"]["value"].clone();
    s["slave_id"] = t["agent_id"]["value"].clone();
    for k in ["task_id", "agent_id"] {
        s.as_object_mut().map(|o| o.remove(k));
    }
    s
}

pub fn list(v: &Value, path: &[&str]) -> Vec<Value> {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_array().cloned().unwrap_or_default()
}
