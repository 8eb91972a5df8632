//! The state every Marathon instance of one `l4lb-fake-marathon` shares:
//! apps with their tasks, the leader, per-instance faults, and the event bus.
//! Every change goes through here and publishes the events Marathon would.
use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use super::model::{self, Faults, TaskSpec};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};

/// One event as it goes on the wire: `event: <event_type>\ndata: <data>`.
#[derive(Debug)]
pub struct Event {
    pub event_type: String,
    pub data: String,
}

pub struct Instance {
    pub addr: SocketAddr,
    pub faults: watch::Sender<Faults>,
    /// Bumped to abort this instance's SSE streams.
    pub sse_kill: watch::Sender<u64>,
    /// Bumped to drop every open connection of this instance.
    pub conn_kill: watch::Sender<u64>,
    pub sse_open: AtomicUsize,
    /// Requests to the Marathon API, and those that carried an
    /// `Authorization` header (whatever its value).
    pub requests: AtomicUsize,
    pub with_auth: AtomicUsize,
}

pub struct Opts {
    /// `Authorization: token=<T>` accepted.
    pub token: Option<String>,
    /// `Authorization: Basic <b64>` accepted (already encoded).
    pub basic: Option<String>,
    pub kill_grace: Option<Duration>,
    pub keepalive: Duration,
    pub crlf: bool,
    /// A Marathon without pods: every `/v2/pods…` is 404.
    pub no_pods: bool,
}

pub struct Shared {
    apps: Mutex<Apps>,
    pub events: broadcast::Sender<Arc<Event>>,
    pub leader: watch::Sender<Option<usize>>,
    pub instances: Vec<Instance>,
    pub opts: Opts,
    /// Requests and body bytes served, over every instance.
    pub served: super::served::Served,
}

struct Apps {
    list: Vec<Value>,
    /// Pod statuses (`spec` + `instances`), as `/v2/pods/::status` lists them.
    pods: Vec<Value>,
    next_port: u16,
    /// `GET /v2/apps` bodies (without, with tasks) as last served: a 10,000-app
    /// body takes the server ~2 s to render, which is not what a benchmark
    /// of the agent should measure. Cleared by every change.
    rendered: [Option<Bytes>; 2],
}

/// A control error: HTTP status and message.
pub type CtlResult<T> = Result<T, (u16, String)>;

fn bad(msg: impl Into<String>) -> (u16, String) {
    (400, msg.into())
}

fn not_found(msg: impl Into<String>) -> (u16, String) {
    (404, msg.into())
}

/// Mesos states after which Marathon expunges the task from `tasks[]`.
pub fn is_terminal(state: &str) -> bool {
    matches!(
        state,
        "TASK_KILLED"
            | "TASK_FAILED"
            | "TASK_FINISHED"
            | "TASK_ERROR"
            | "TASK_GONE"
            | "TASK_GONE_BY_OPERATOR"
            | "TASK_DROPPED"
    )
}

fn alive_of(task: &Value) -> Option<bool> {
    task["healthCheckResults"]
        .as_array()
        .and_then(|a| a.first())
        .and_then(|r| r["alive"].as_bool())
}

/// The app without what Marathon computes (tasks, counts, deployments).
fn definition(app: &Value) -> Value {
    let mut d = app.clone();
    if let Some(o) = d.as_object_mut() {
        for k in [
            "tasks",
            "tasksStaged",
            "tasksRunning",
            "tasksHealthy",
            "tasksUnhealthy",
            "deployments",
            "lastTaskFailure",
        ] {
            o.remove(k);
        }
    }
    d
}

/// Normalizes an app given by a test: absolute `id`, a `tasks` array whose
/// entries have `id` and `appId`.
pub fn normalize_app(mut app: Value) -> CtlResult<Value> {
    let Some(id) = app["id"].as_str() else {
        return Err(bad("app without a string \"id\""));
    };
    let id = if id.starts_with('/') {
        id.to_string()
    } else {
        format!("/{id}")
    };
    app["id"] = json!(id);
    if app["version"].is_null() {
        app["version"] = json!(model::now());
    }
    if !app["tasks"].is_array() {
        app["tasks"] = json!([]);
    }
    for t in app["tasks"].as_array_mut().into_iter().flatten() {
        if !t.is_object() {
            return Err(bad("task is not an object"));
        }
        if t["id"].as_str().is_none() {
            t["id"] = json!(model::task_id_of(&model::new_instance_id(&id), 1));
        }
        if t["appId"].is_null() {
            t["appId"] = json!(id);
        }
    }
    Ok(app)
}

/// `{"apps": [...]}` or a bare array.
pub fn parse_apps(v: Value) -> CtlResult<Vec<Value>> {
    let list = match v {
        Value::Array(a) => a,
        Value::Object(mut o) => match o.remove("apps") {
            Some(Value::Array(a)) => a,
            _ => return Err(bad("expected {\"apps\": [...]}")),
        },
        _ => return Err(bad("expected {\"apps\": [...]}")),
    };
    list.into_iter().map(normalize_app).collect()
}

// ------------------------------------------------------------ event shapes

fn status_update(task: &Value, state: &str, message: &str) -> Value {
    json!({
        "eventType": "status_update_event",
        "slaveId": task["slaveId"],
        "taskId": task["id"],
        "taskStatus": state,
        "message": message,
        "appId": task["appId"],
        "host": task["host"],
        "ipAddresses": task.get("ipAddresses").cloned().unwrap_or(json!([])),
        "ports": task.get("ports").cloned().unwrap_or(json!([])),
        "version": task["version"],
    })
}

fn instance_changed(task: &Value, state: &str) -> Value {
    json!({
        "eventType": "instance_changed_event",
        "instanceId": model::instance_id_of(task["id"].as_str().unwrap_or_default()),
        "condition": model::condition_of(state),
        "runSpecId": task["appId"],
        "agentId": task["slaveId"],
        "host": task["host"],
        "runSpecVersion": task["version"],
    })
}

fn task_events(task: &Value, state: &str, message: &str) -> [Value; 2] {
    [
        status_update(task, state, message),
        instance_changed(task, state),
    ]
}

fn health_events(task: &Value, alive: bool) -> [Value; 2] {
    let task_id = task["id"].as_str().unwrap_or_default();
    let instance_id = model::instance_id_of(task_id);
    [
        json!({
            "eventType": "health_status_changed_event",
            "appId": task["appId"],
            "instanceId": instance_id,
            "taskId": task_id,
            "version": task["version"],
            "alive": alive,
        }),
        json!({
            "eventType": "instance_health_changed_event",
            "instanceId": instance_id,
            "runSpecId": task["appId"],
            "healthy": alive,
            "runSpecVersion": task["version"],
        }),
    ]
}

fn api_post(app: &Value) -> Value {
    let id = app["id"].as_str().unwrap_or_default();
    json!({
        "eventType": "api_post_event",
        "clientIp": "127.0.0.1",
        "uri": format!("/v2/apps{id}"),
        "appDefinition": definition(app),
    })
}

fn deployment_success(actions: &[(String, &'static str)]) -> Value {
    let id = model::new_uuid_v4();
    let steps: Vec<Value> = actions
        .iter()
        .map(|(app, action)| json!({"actions": [{"action": action, "app": app}]}))
        .collect();
    json!({
        "eventType": "deployment_success",
        "id": id,
        "plan": {"id": id, "steps": steps, "version": model::now()},
    })
}

/// The Mesos tasks of a pod status: one per container of each instance,
/// with what its events carry.
fn pod_tasks(pod: &Value) -> Vec<Value> {
    let id = &pod["id"];
    let version = &pod["spec"]["version"];
    let mut out = vec![];
    for inst in pod["instances"].as_array().into_iter().flatten() {
        let ips = ip_addresses_of(inst);
        for c in inst["containers"].as_array().into_iter().flatten() {
            out.push(json!({
                "id": c["containerId"], "appId": id, "host": inst["agentHostname"],
                "slaveId": inst["agentId"], "state": c["status"], "ipAddresses": ips,
                "ports": [], "version": version,
                "instanceId": inst["id"],
            }));
        }
    }
    out
}

fn ip_addresses_of(inst: &Value) -> Value {
    let ips: Vec<String> = inst["networks"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|n| n["addresses"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(String::from))
        .collect();
    model::ip_addresses(&ips)
}

fn pod_task_events(task: &Value, state: &str) -> [Value; 2] {
    let mut ev = task_events(task, state, "");
    // A pod task's instance id is its own field, not a prefix of the task id.
    ev[1]["instanceId"] = task["instanceId"].clone();
    ev
}

/// The events Marathon would emit for a pod going from `old` to `new`
/// (None: absent): the API event (`uri` is the request's: `/v2/pods` for a
/// create), container task status changes, then one deployment_success.
fn pod_diff_events(old: Option<&Value>, new: Option<&Value>) -> Vec<Value> {
    let id = new
        .or(old)
        .and_then(|p| p["id"].as_str())
        .unwrap_or_default()
        .to_string();
    let api =
        |kind: &str, uri: String| json!({"eventType": kind, "clientIp": "127.0.0.1", "uri": uri});
    let mut ev = vec![];
    let action = match (old, new) {
        (None, Some(_)) => {
            ev.push(api("pod_created_event", "/v2/pods".into()));
            "StartPod"
        }
        (Some(_), Some(_)) => {
            ev.push(api("pod_updated_event", format!("/v2/pods{id}")));
            "ScalePod"
        }
        (Some(_), None) => {
            ev.push(api("pod_deleted_event", format!("/v2/pods{id}")));
            "StopPod"
        }
        (None, None) => return ev,
    };
    let old_tasks = old.map(pod_tasks).unwrap_or_default();
    let new_tasks = new.map(pod_tasks).unwrap_or_default();
    for t in &new_tasks {
        let prev = old_tasks.iter().find(|o| o["id"] == t["id"]);
        if prev.is_none_or(|p| p["state"] != t["state"]) {
            ev.extend(pod_task_events(
                t,
                t["state"].as_str().unwrap_or("TASK_RUNNING"),
            ));
        }
    }
    for o in &old_tasks {
        if !new_tasks.iter().any(|t| t["id"] == o["id"]) {
            ev.extend(pod_task_events(o, "TASK_KILLED"));
        }
    }
    let did = model::new_uuid_v4();
    ev.push(json!({
        "eventType": "deployment_success", "id": did,
        "plan": {"id": did, "steps": [{"actions": [{"action": action, "pod": id}]}],
                 "version": model::now()},
    }));
    ev
}

/// The events Marathon would emit going from `old` to `new`, in its order:
/// api_post_event per changed definition, task status / health changes,
/// app_terminated_event per removed app, then one deployment_success.
fn diff_events(old: &[Value], new: &[Value]) -> Vec<Value> {
    let mut ev = vec![];
    let mut actions = vec![];
    let tasks_of = |app: &Value| app["tasks"].as_array().cloned().unwrap_or_default();
    for app in new {
        let id = app["id"].as_str().unwrap_or_default().to_string();
        let before = old.iter().find(|a| a["id"] == app["id"]);
        match before {
            None => {
                ev.push(api_post(app));
                actions.push((id.clone(), "StartApplication"));
            }
            Some(b) if definition(b) != definition(app) => {
                ev.push(api_post(app));
                actions.push((id.clone(), "RestartApplication"));
            }
            Some(_) => {}
        }
        let old_tasks = before.map(tasks_of).unwrap_or_default();
        let new_tasks = tasks_of(app);
        for t in &new_tasks {
            let prev = old_tasks.iter().find(|o| o["id"] == t["id"]);
            let state = t["state"].as_str().unwrap_or("TASK_RUNNING");
            if prev.is_none_or(|p| p["state"] != t["state"]) {
                ev.extend(task_events(t, state, ""));
            }
            if let Some(alive) = alive_of(t)
                && prev.is_none_or(|p| alive_of(p) != Some(alive))
            {
                ev.extend(health_events(t, alive));
            }
        }
        for o in &old_tasks {
            if !new_tasks.iter().any(|t| t["id"] == o["id"]) {
                ev.extend(task_events(o, "TASK_KILLED", ""));
            }
        }
    }
    for app in old {
        if !new.iter().any(|a| a["id"] == app["id"]) {
            for o in tasks_of(app) {
                ev.extend(task_events(&o, "TASK_KILLED", ""));
            }
            let id = app["id"].as_str().unwrap_or_default().to_string();
            ev.push(json!({"eventType": "app_terminated_event", "appId": id}));
            actions.push((id, "StopApplication"));
        }
    }
    if !actions.is_empty() {
        ev.push(deployment_success(&actions));
    }
    ev
}

impl Shared {
    pub fn new(
        addrs: &[SocketAddr],
        apps: Vec<Value>,
        leader: Option<usize>,
        opts: Opts,
    ) -> Shared {
        let instances = addrs
            .iter()
            .map(|&addr| Instance {
                addr,
                faults: watch::Sender::new(Faults::default()),
                sse_kill: watch::Sender::new(0),
                conn_kill: watch::Sender::new(0),
                sse_open: AtomicUsize::new(0),
                requests: AtomicUsize::new(0),
                with_auth: AtomicUsize::new(0),
            })
            .collect();
        Shared {
            apps: Mutex::new(Apps {
                list: apps,
                pods: vec![],
                next_port: 31_000,
                rendered: [None, None],
            }),
            events: broadcast::Sender::new(4096),
            leader: watch::Sender::new(leader),
            instances,
            opts,
            served: Default::default(),
        }
    }

    /// The apps, for a change: the rendered bodies are dropped.
    fn lock_mut(&self) -> MutexGuard<'_, Apps> {
        let mut g = self.lock_read();
        g.rendered = [None, None];
        g
    }

    fn lock_read(&self) -> MutexGuard<'_, Apps> {
        self.apps.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stamps `timestamp` and sends to every open stream. Called with the
    /// apps lock held where order matters, so streams see changes in order.
    pub fn publish(&self, mut ev: Value) {
        let Some(ty) = ev["eventType"].as_str().map(String::from) else {
            return;
        };
        if ev["timestamp"].is_null() {
            ev["timestamp"] = json!(model::now());
        }
        let _ = self.events.send(Arc::new(Event {
            event_type: ty,
            data: ev.to_string(),
        }));
    }

    fn publish_all(&self, evs: impl IntoIterator<Item = Value>) {
        for e in evs {
            self.publish(e);
        }
    }

    /// `{"apps": [...]}` as `GET /v2/apps` serves it (tasks only if asked).
    pub fn apps_json(&self, embed_tasks: bool) -> Value {
        let apps = self.lock_read();
        let list: Vec<Value> = apps
            .list
            .iter()
            .map(|a| render_app(a, embed_tasks))
            .collect();
        json!({ "apps": list })
    }

    /// [`Shared::apps_json`] serialized, rendered once per state.
    pub fn apps_body(&self, embed_tasks: bool) -> Bytes {
        let mut apps = self.lock_read();
        let slot = usize::from(embed_tasks);
        if let Some(b) = &apps.rendered[slot] {
            return b.clone();
        }
        let list: Vec<Value> = apps
            .list
            .iter()
            .map(|a| render_app(a, embed_tasks))
            .collect();
        let body = Bytes::from(json!({ "apps": list }).to_string());
        apps.rendered[slot] = Some(body.clone());
        body
    }

    pub fn app_json(&self, id: &str) -> Option<Value> {
        self.lock_read()
            .list
            .iter()
            .find(|a| a["id"] == id)
            .map(|a| render_app(a, true))
    }

    pub fn tasks_json(&self, app: Option<&str>) -> Option<Value> {
        let apps = self.lock_read();
        let mut tasks = vec![];
        let mut found = app.is_none();
        for a in &apps.list {
            if app.is_some_and(|id| a["id"] != id) {
                continue;
            }
            found = true;
            tasks.extend(a["tasks"].as_array().cloned().unwrap_or_default());
        }
        found.then(|| json!({ "tasks": tasks }))
    }

    /// Every pod status (`GET /v2/pods/::status`).
    pub fn pods_status(&self) -> Value {
        Value::Array(self.lock_read().pods.clone())
    }

    /// One pod's status (`GET /v2/pods/{id}::status`).
    pub fn pod_status(&self, id: &str) -> Option<Value> {
        self.lock_read()
            .pods
            .iter()
            .find(|p| p["id"] == id)
            .cloned()
    }

    /// Every pod definition (`GET /v2/pods`).
    pub fn pod_specs(&self) -> Value {
        Value::Array(
            self.lock_read()
                .pods
                .iter()
                .map(|p| p["spec"].clone())
                .collect(),
        )
    }

    /// Adds or replaces one pod status (`id` absolute); publishes Marathon's
    /// events for the change.
    pub fn put_pod(&self, mut pod: Value) -> CtlResult<()> {
        let Some(id) = pod["id"].as_str().map(String::from) else {
            return Err(bad("pod without a string \"id\""));
        };
        if !id.starts_with('/') {
            return Err(bad("pod id must be absolute"));
        }
        if !pod["spec"].is_object() {
            return Err(bad("pod status without a \"spec\" object"));
        }
        pod["spec"]["id"] = json!(id);
        pod["status"] = json!(model::pod_state(&pod));
        let mut apps = self.lock_mut();
        let old = apps.pods.iter().position(|p| p["id"] == id.as_str());
        let evs = pod_diff_events(old.map(|i| &apps.pods[i]), Some(&pod));
        match old {
            Some(i) => apps.pods[i] = pod,
            None => apps.pods.push(pod),
        }
        self.publish_all(evs);
        Ok(())
    }

    pub fn remove_pod(&self, id: &str) -> CtlResult<()> {
        let mut apps = self.lock_mut();
        let Some(i) = apps.pods.iter().position(|p| p["id"] == id) else {
            return Err(not_found(format!("Pod '{id}' does not exist")));
        };
        let old = apps.pods.remove(i);
        self.publish_all(pod_diff_events(Some(&old), None));
        Ok(())
    }

    pub fn put_apps(&self, new: Vec<Value>) {
        let mut apps = self.lock_mut();
        let evs = diff_events(&apps.list, &new);
        apps.list = new;
        self.publish_all(evs);
    }

    pub fn add_app(&self, app: Value) -> CtlResult<()> {
        let app = normalize_app(app)?;
        let mut apps = self.lock_mut();
        let mut new = apps.list.clone();
        match new.iter_mut().find(|a| a["id"] == app["id"]) {
            Some(slot) => *slot = app,
            None => new.push(app),
        }
        let evs = diff_events(&apps.list, &new);
        apps.list = new;
        self.publish_all(evs);
        Ok(())
    }

    pub fn remove_app(&self, id: &str) -> CtlResult<()> {
        let mut apps = self.lock_mut();
        if !apps.list.iter().any(|a| a["id"] == id) {
            return Err(not_found(format!("App '{id}' does not exist")));
        }
        let new: Vec<Value> = apps
            .list
            .iter()
            .filter(|a| a["id"] != id)
            .cloned()
            .collect();
        let evs = diff_events(&apps.list, &new);
        apps.list = new;
        self.publish_all(evs);
        Ok(())
    }

    /// Starts one task of `app_id` (Marathon: scale up by one). Returns it.
    pub fn scale(&self, app_id: &str, mut spec: TaskSpec) -> CtlResult<Value> {
        if spec.host.is_empty() {
            return Err(bad("task spec without \"host\""));
        }
        let state = spec.state.clone().unwrap_or_else(|| "TASK_RUNNING".into());
        if !model::TASK_STATES.contains(&state.as_str()) || is_terminal(&state) {
            return Err(bad(format!("cannot start a task in state {state:?}")));
        }
        let mut apps = self.lock_mut();
        let apps = &mut *apps;
        // The same host keeps its agent id; a new host is the next agent.
        let all_tasks: Vec<&Value> = apps
            .list
            .iter()
            .flat_map(|a| a["tasks"].as_array().into_iter().flatten())
            .collect();
        let agent = all_tasks
            .iter()
            .find(|t| t["host"] == spec.host.as_str())
            .and_then(|t| t["slaveId"].as_str().and_then(model::agent_index))
            .unwrap_or_else(|| {
                all_tasks
                    .iter()
                    .filter_map(|t| t["slaveId"].as_str().and_then(model::agent_index))
                    .max()
                    .unwrap_or(0)
                    + 1
            });
        let Some(app) = apps.list.iter_mut().find(|a| a["id"] == app_id) else {
            return Err(not_found(format!("App '{app_id}' does not exist")));
        };
        if spec.ports.is_empty() {
            let n = model::app_ports(app).len().max(1);
            for _ in 0..n {
                spec.ports.push(apps.next_port);
                apps.next_port = apps.next_port.wrapping_add(1).max(31_000);
            }
        }
        let version = model::now();
        let instances = app["instances"].as_u64().unwrap_or(0) + 1;
        app["instances"] = json!(instances);
        app["version"] = json!(version);
        app["versionInfo"]["lastScalingAt"] = json!(version);
        if app["versionInfo"]["lastConfigChangeAt"].is_null() {
            app["versionInfo"]["lastConfigChangeAt"] = json!(version);
        }
        let task = model::build_task(app, &spec, agent);
        app["tasks"]
            .as_array_mut()
            .expect("normalized")
            .push(task.clone());
        let mut evs = vec![api_post(app)];
        evs.extend(task_events(&task, &state, ""));
        if model::has_health_checks(app)
            && let Some(alive) = spec.alive
        {
            evs.extend(health_events(&task, alive));
        }
        evs.push(deployment_success(&[(
            app_id.to_string(),
            "ScaleApplication",
        )]));
        self.publish_all(evs);
        Ok(task)
    }

    fn with_task<T>(
        &self,
        task_id: &str,
        f: impl FnOnce(&mut Value, usize) -> CtlResult<(T, Vec<Value>)>,
    ) -> CtlResult<T> {
        let mut apps = self.lock_mut();
        for app in apps.list.iter_mut() {
            let Some(tasks) = app["tasks"].as_array_mut() else {
                continue;
            };
            if let Some(i) = tasks.iter().position(|t| t["id"] == task_id) {
                let (out, evs) = f(app, i)?;
                self.publish_all(evs);
                return Ok(out);
            }
        }
        Err(not_found(format!("Task '{task_id}' does not exist")))
    }

    /// First call: TASK_KILLING (the app is scaled down by one). Second call,
    /// `force`, or the kill grace timer: TASK_KILLED and the task is gone.
    /// Returns the state the task is now in.
    pub fn kill(&self, task_id: &str, force: bool) -> CtlResult<&'static str> {
        self.with_task(task_id, |app, i| {
            let task = &mut app["tasks"][i];
            let killing = task["state"] == "TASK_KILLING";
            if killing || force {
                let task = app["tasks"].as_array_mut().expect("array").remove(i);
                if !killing {
                    let n = app["instances"].as_u64().unwrap_or(1).saturating_sub(1);
                    app["instances"] = json!(n);
                }
                let msg = "Command terminated with signal Terminated";
                Ok(("TASK_KILLED", task_events(&task, "TASK_KILLED", msg).into()))
            } else {
                task["state"] = json!("TASK_KILLING");
                let evs = task_events(task, "TASK_KILLING", "").into();
                let n = app["instances"].as_u64().unwrap_or(1).saturating_sub(1);
                app["instances"] = json!(n);
                Ok(("TASK_KILLING", evs))
            }
        })
    }

    /// Removes a task still in TASK_KILLING (the grace timer).
    pub fn expire_killing(&self, task_id: &str) {
        let _ = self.with_task(task_id, |app, i| {
            if app["tasks"][i]["state"] != "TASK_KILLING" {
                return Ok(((), vec![]));
            }
            let task = app["tasks"].as_array_mut().expect("array").remove(i);
            let msg = "Command terminated with signal Terminated";
            Ok(((), task_events(&task, "TASK_KILLED", msg).into()))
        });
    }

    pub fn set_health(&self, task_id: &str, alive: Option<bool>) -> CtlResult<()> {
        self.with_task(task_id, |app, i| {
            if !model::has_health_checks(app) {
                return Err((
                    409,
                    format!("app {} has no healthChecks, so no results", app["id"]),
                ));
            }
            let task = &mut app["tasks"][i];
            let before = alive_of(task);
            model::set_task_health(task, alive);
            let evs = match alive {
                Some(a) if before != Some(a) => health_events(task, a).into(),
                _ => vec![],
            };
            Ok(((), evs))
        })
    }

    /// Any Mesos state; a terminal one expunges the task like Marathon does.
    pub fn set_task_state(&self, task_id: &str, state: &str, message: &str) -> CtlResult<()> {
        if !model::TASK_STATES.contains(&state) {
            return Err(bad(format!("unknown task state {state:?}")));
        }
        self.with_task(task_id, |app, i| {
            let tasks = app["tasks"].as_array_mut().expect("array");
            tasks[i]["state"] = json!(state);
            if state == "TASK_RUNNING" && tasks[i]["startedAt"].is_null() {
                tasks[i]["startedAt"] = json!(model::now());
            }
            if state == "TASK_UNREACHABLE" {
                // Marathon reports no addresses for an unreachable task.
                let mut ev = task_events(&tasks[i], state, message);
                ev[0]["ipAddresses"] = json!([]);
                return Ok(((), ev.into()));
            }
            let task = if is_terminal(state) {
                tasks.remove(i)
            } else {
                tasks[i].clone()
            };
            Ok(((), task_events(&task, state, message).into()))
        })
    }

    pub fn set_leader(&self, leader: Option<usize>) -> CtlResult<()> {
        if let Some(i) = leader
            && i >= self.instances.len()
        {
            return Err(not_found(format!("no instance {i}")));
        }
        self.leader.send_replace(leader);
        Ok(())
    }

    pub fn instance(&self, i: usize) -> CtlResult<&Instance> {
        self.instances
            .get(i)
            .ok_or_else(|| not_found(format!("no instance {i}")))
    }

    pub fn sse_streams(&self, i: usize) -> usize {
        self.instances[i].sse_open.load(Ordering::Relaxed)
    }
}

/// An app as the API renders it: counts always, `tasks` only when embedded.
fn render_app(app: &Value, embed_tasks: bool) -> Value {
    let mut a = app.clone();
    model::fill_counts(&mut a);
    if a["deployments"].is_null() {
        a["deployments"] = json!([]);
    }
    if !embed_tasks && let Some(o) = a.as_object_mut() {
        o.remove("tasks");
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(evs: &[Value]) -> Vec<&str> {
        evs.iter()
            .map(|e| e["eventType"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn pod_events_name_the_pod() {
        let ep = json!([{"name": "http", "containerPort": 80, "labels": {"VIP_0": "/p:80"}}]);
        let one = model::pod_status(
            "/p",
            "container",
            ep.clone(),
            &[model::PodInstanceSpec::new("127.0.0.5")],
        );
        let evs = pod_diff_events(None, Some(&one));
        assert_eq!(
            types(&evs),
            [
                "pod_created_event",
                "status_update_event",
                "instance_changed_event",
                "deployment_success"
            ]
        );
        assert_eq!(evs[0]["uri"], "/v2/pods");
        assert_eq!(evs[1]["appId"], "/p");
        assert!(evs[1]["taskId"].as_str().unwrap().ends_with(".main"));
        assert_eq!(evs[2]["runSpecId"], "/p");
        assert_eq!(evs[3]["plan"]["steps"][0]["actions"][0]["pod"], "/p");
        let evs = pod_diff_events(Some(&one), None);
        assert_eq!(evs[0]["eventType"], "pod_deleted_event");
        assert_eq!(evs[0]["uri"], "/v2/pods/p");
        assert_eq!(evs[1]["taskStatus"], "TASK_KILLED");
    }

    #[test]
    fn diff_new_changed_removed() {
        let a = model::host_app("/a", "/a:1", &[TaskSpec::new("127.0.0.1", 1)], false);
        let evs = diff_events(&[], std::slice::from_ref(&a));
        assert_eq!(
            types(&evs),
            [
                "api_post_event",
                "status_update_event",
                "instance_changed_event",
                "deployment_success"
            ]
        );
        assert!(diff_events(std::slice::from_ref(&a), std::slice::from_ref(&a)).is_empty());
        let evs = diff_events(std::slice::from_ref(&a), &[]);
        assert_eq!(
            types(&evs),
            [
                "status_update_event",
                "instance_changed_event",
                "app_terminated_event",
                "deployment_success"
            ]
        );
        assert_eq!(evs[0]["taskStatus"], "TASK_KILLED");
    }
}
