//! Marathon data model shared by the `l4lb-fake-marathon` server and the
//! harness driver: task specs, faults, realistic ids and timestamps, and the
//! JSON shapes of apps, tasks and events as Marathon documents them (the
//! fixtures in `l4lb-core/tests/fixtures/marathon/` are real examples).
use std::{
    sync::Mutex,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Mesos agent ids are `<master uuid>-S<k>`; one fixed cluster here.
pub const AGENT_ID_PREFIX: &str = "b3c1f5e2-7d4a-4c8e-9f10-6a2b3c4d5e6f";

/// Every Mesos task state Marathon reports (field `state` / `taskStatus`).
pub const TASK_STATES: &[&str] = &[
    "TASK_STAGING",
    "TASK_STARTING",
    "TASK_RUNNING",
    "TASK_KILLING",
    "TASK_KILLED",
    "TASK_FAILED",
    "TASK_FINISHED",
    "TASK_ERROR",
    "TASK_UNREACHABLE",
    "TASK_GONE",
    "TASK_DROPPED",
    "TASK_UNKNOWN",
    "TASK_GONE_BY_OPERATOR",
    "TASK_LOST",
];

/// One task to start: where it runs and what Marathon says about it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskSpec {
    /// Agent host (an IP here, so backends are reachable): task `host`.
    pub host: String,
    /// Host ports (`ports[]`); empty = the server allocates one per app port.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// `ipAddresses[].ipAddress`; empty = `[host]` when host is an IP.
    #[serde(default)]
    pub ip_addresses: Vec<String>,
    /// Default `TASK_RUNNING`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Health-check result: `Some(alive)`, or `None` = no result yet. Only
    /// meaningful when the app has `healthChecks`.
    #[serde(default)]
    pub alive: Option<bool>,
}

impl TaskSpec {
    /// A running task on `host` with one host port, no health result.
    pub fn new(host: &str, port: u16) -> TaskSpec {
        TaskSpec {
            host: host.to_string(),
            ports: vec![port],
            ..TaskSpec::default()
        }
    }

    pub fn ports(mut self, ports: &[u16]) -> TaskSpec {
        self.ports = ports.to_vec();
        self
    }

    pub fn ips(mut self, ips: &[&str]) -> TaskSpec {
        self.ip_addresses = ips.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn state(mut self, state: &str) -> TaskSpec {
        self.state = Some(state.to_string());
        self
    }

    pub fn alive(mut self, alive: Option<bool>) -> TaskSpec {
        self.alive = alive;
        self
    }
}

/// A fault injected into one Marathon instance (control `POST /fault`,
/// JSON `{"instance": N, "fault": "<kind>", …}`). All but
/// `disconnect_events` stay until cleared.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum Fault {
    /// Listener closed (connect: ECONNREFUSED) and open connections dropped.
    Down,
    /// Connections accepted then reset at once (RST, SO_LINGER 0).
    Reset,
    /// Every Marathon API response has this status and a JSON error body.
    Status { code: u16 },
    /// 200 `application/json` with a body that is not JSON.
    Garbage,
    /// `Content-Length` is the full length but only half the body is sent,
    /// then the connection is closed (SSE: half a frame, then closed).
    Truncate,
    /// Each response (SSE: its headers) is delayed by `ms`.
    SlowMs { ms: u64 },
    /// One-shot: aborts every open SSE stream of the instance now.
    DisconnectEvents,
    /// Every `/v2/*` answer has this status and a body that never ends
    /// (1 GiB at most, so the server stops by itself).
    EndlessBody { code: u16 },
    /// New event streams send `data:` lines that no blank line ever ends
    /// (1 GiB at most).
    EndlessEventData,
    /// New event streams send one line that never ends (1 GiB at most).
    EndlessEventLine,
    /// Every `/v2/*` request but `/v2/leader` is answered 302 to `url` + the
    /// request's path and query (another host: its credentials must not follow).
    RedirectTo { url: String },
}

/// Sticky per-instance fault state as the server reports it in `GET /state`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Faults {
    pub down: bool,
    pub reset: bool,
    pub status: Option<u16>,
    pub garbage: bool,
    pub truncate: bool,
    pub slow_ms: u64,
    #[serde(default)]
    pub endless_body: Option<u16>,
    /// `data` or `line`.
    #[serde(default)]
    pub endless_events: Option<String>,
    #[serde(default)]
    pub redirect: Option<String>,
}

impl Faults {
    pub fn apply(&mut self, f: &Fault) {
        match f {
            Fault::Down => self.down = true,
            Fault::Reset => self.reset = true,
            Fault::Status { code } => self.status = Some(*code),
            Fault::Garbage => self.garbage = true,
            Fault::Truncate => self.truncate = true,
            Fault::SlowMs { ms } => self.slow_ms = *ms,
            Fault::DisconnectEvents => {}
            Fault::EndlessBody { code } => self.endless_body = Some(*code),
            Fault::EndlessEventData => self.endless_events = Some("data".into()),
            Fault::EndlessEventLine => self.endless_events = Some("line".into()),
            Fault::RedirectTo { url } => self.redirect = Some(url.clone()),
        }
    }
}

// ---------------------------------------------------------------- time, ids

/// `2020-05-04T10:00:04.512Z`, the format of every Marathon timestamp.
pub fn fmt_time(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

pub fn now() -> String {
    fmt_time(SystemTime::now())
}

struct IdGen {
    rng: u64,
    last_ts: u64,
    node: u64,
}

static IDS: Mutex<Option<IdGen>> = Mutex::new(None);

fn splitmix(s: &mut u64) -> u64 {
    *s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *s;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn with_ids<T>(f: impl FnOnce(&mut IdGen) -> T) -> T {
    let mut g = IDS.lock().unwrap_or_else(|e| e.into_inner());
    let g = g.get_or_insert_with(|| {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ (u64::from(std::process::id()) << 32);
        let mut rng = seed;
        let node = splitmix(&mut rng) & 0xffff_ffff_ffff;
        IdGen {
            rng,
            last_ts: 0,
            node,
        }
    });
    f(g)
}

/// A time-based (version 1) UUID as Marathon uses for instance ids, e.g.
/// `6f1c0b1e-8e2a-11ea-9c1d-0242ac110002`; unique within the process.
pub fn new_uuid_v1() -> String {
    with_ids(|g| {
        // 100 ns ticks since 1582-10-15.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| (d.as_nanos() / 100) as u64)
            .unwrap_or(0)
            + 0x01b2_1dd2_1381_4000;
        let ts = now.max(g.last_ts + 1);
        g.last_ts = ts;
        let clock = (splitmix(&mut g.rng) as u16 & 0x3fff) | 0x8000;
        format!(
            "{:08x}-{:04x}-{:04x}-{clock:04x}-{:012x}",
            ts & 0xffff_ffff,
            (ts >> 32) & 0xffff,
            ((ts >> 48) & 0x0fff) | 0x1000,
            g.node
        )
    })
}

/// A random (version 4) UUID, e.g. for deployment ids.
pub fn new_uuid_v4() -> String {
    with_ids(|g| {
        let (a, b) = (splitmix(&mut g.rng), splitmix(&mut g.rng));
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0x0fff,
            ((b >> 48) & 0x3fff) | 0x8000,
            b & 0xffff_ffff_ffff
        )
    })
}

/// `/shop/web` → `shop_web` (the prefix of Marathon task and instance ids).
pub fn app_id_prefix(app_id: &str) -> String {
    app_id.trim_matches('/').replace('/', "_")
}

/// `shop_web.instance-<uuid v1>`.
pub fn new_instance_id(app_id: &str) -> String {
    format!("{}.instance-{}", app_id_prefix(app_id), new_uuid_v1())
}

/// `<instance id>._app.<incarnation>` (Marathon ≥ 1.8 task ids).
pub fn task_id_of(instance_id: &str, incarnation: u32) -> String {
    format!("{instance_id}._app.{incarnation}")
}

/// The instance id a task id belongs to: strips `._app.N`; an old-style id
/// (`app.<uuid>`) is its own instance id.
pub fn instance_id_of(task_id: &str) -> String {
    match task_id.rsplit_once("._app.") {
        Some((inst, n)) if n.chars().all(|c| c.is_ascii_digit()) => inst.to_string(),
        _ => task_id.to_string(),
    }
}

/// `<AGENT_ID_PREFIX>-S<k>`.
pub fn agent_id(k: u32) -> String {
    format!("{AGENT_ID_PREFIX}-S{k}")
}

/// The `k` of an agent id `…-S<k>`.
pub fn agent_index(slave_id: &str) -> Option<u32> {
    slave_id.rsplit_once("-S")?.1.parse().ok()
}

/// Standard base64 (for `Authorization: Basic`).
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ------------------------------------------------------------- app helpers

/// Whether the app defines `healthChecks` (then tasks carry results).
pub fn has_health_checks(app: &Value) -> bool {
    app["healthChecks"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
}

/// The app's port declarations: `portDefinitions` (host networking) or
/// `container.portMappings` / `container.docker.portMappings`.
pub fn app_ports(app: &Value) -> Vec<Value> {
    for p in [
        &app["portDefinitions"],
        &app["container"]["portMappings"],
        &app["container"]["docker"]["portMappings"],
    ] {
        if let Some(a) = p.as_array()
            && !a.is_empty()
        {
            return a.clone();
        }
    }
    vec![]
}

/// `servicePorts` of the app's tasks: `port` of each port definition or
/// `servicePort` of each port mapping.
pub fn service_ports(app: &Value) -> Vec<Value> {
    app_ports(app)
        .iter()
        .map(|p| {
            p.get("servicePort")
                .or_else(|| p.get("port"))
                .cloned()
                .unwrap_or(json!(0))
        })
        .collect()
}

/// `ipAddresses[]` entries: `{"ipAddress": ip, "protocol": "IPv4"|"IPv6"}`.
pub fn ip_addresses(ips: &[String]) -> Value {
    Value::Array(
        ips.iter()
            .map(|ip| {
                let proto = if ip.contains(':') { "IPv6" } else { "IPv4" };
                json!({"ipAddress": ip, "protocol": proto})
            })
            .collect(),
    )
}

/// One `healthCheckResults[]` entry. Carries both `instanceId` (Marathon
/// ≥ 1.4, as in the fixtures) and `taskId` (older Marathon).
pub fn health_result(task_id: &str, alive: bool, when: &str) -> Value {
    json!({
        "alive": alive,
        "consecutiveFailures": if alive { 0 } else { 1 },
        "firstSuccess": if alive { json!(when) } else { Value::Null },
        "lastFailure": if alive { Value::Null } else { json!(when) },
        "lastSuccess": if alive { json!(when) } else { Value::Null },
        "lastFailureCause": if alive { Value::Null } else { json!("Connection refused") },
        "instanceId": instance_id_of(task_id),
        "taskId": task_id,
    })
}

/// Updates a task's `healthCheckResults` to `alive` (None: no result yet),
/// keeping `firstSuccess`/`lastSuccess` history like Marathon does.
pub fn set_task_health(task: &mut Value, alive: Option<bool>) {
    let id = task["id"].as_str().unwrap_or_default().to_string();
    let now = now();
    let Some(alive) = alive else {
        task["healthCheckResults"] = json!([]);
        return;
    };
    let prev = task["healthCheckResults"]
        .as_array()
        .and_then(|a| a.first().cloned());
    let mut r = health_result(&id, alive, &now);
    if let Some(p) = prev {
        if alive {
            if !p["firstSuccess"].is_null() {
                r["firstSuccess"] = p["firstSuccess"].clone();
            }
            r["lastFailure"] = p["lastFailure"].clone();
        } else {
            r["firstSuccess"] = p["firstSuccess"].clone();
            r["lastSuccess"] = p["lastSuccess"].clone();
            let fails = p["consecutiveFailures"].as_u64().unwrap_or(0);
            if p["alive"] == json!(false) {
                r["consecutiveFailures"] = json!(fails + 1);
            }
        }
    }
    task["healthCheckResults"] = json!([r]);
}

/// A task in the documented shape. `agent` is the `k` of its `slaveId`.
pub fn build_task(app: &Value, spec: &TaskSpec, agent: u32) -> Value {
    let app_id = app["id"].as_str().unwrap_or("/unknown");
    let id = task_id_of(&new_instance_id(app_id), 1);
    let state = spec.state.clone().unwrap_or_else(|| "TASK_RUNNING".into());
    let ips = if spec.ip_addresses.is_empty() && spec.host.parse::<std::net::IpAddr>().is_ok() {
        vec![spec.host.clone()]
    } else {
        spec.ip_addresses.clone()
    };
    let now = now();
    let mut task = json!({
        "id": id,
        "appId": app_id,
        "host": spec.host,
        "ipAddresses": ip_addresses(&ips),
        "ports": spec.ports,
        "servicePorts": service_ports(app),
        "slaveId": agent_id(agent),
        "state": state,
        "stagedAt": now,
        "version": app["version"].clone(),
        "healthCheckResults": [],
        "localVolumes": [],
        "role": app.get("role").cloned().unwrap_or(json!("*")),
    });
    if !matches!(state.as_str(), "TASK_STAGING" | "TASK_STARTING") {
        task["startedAt"] = json!(now);
    }
    if has_health_checks(app) {
        set_task_health(&mut task, spec.alive);
    }
    task
}

/// The MESOS_TCP health check of the fixtures.
pub fn mesos_tcp_health_check() -> Value {
    json!({"protocol": "MESOS_TCP", "portIndex": 0, "gracePeriodSeconds": 30,
           "intervalSeconds": 10, "timeoutSeconds": 5, "maxConsecutiveFailures": 3,
           "delaySeconds": 15})
}

/// A host-networking app shaped like `apps_redis_host.json`:
/// `portDefinitions[0].labels.VIP_0 = vip_label`, a MESOS_TCP health check
/// when `health_check`, and `tasks[]` built from `tasks` (host ports
/// default to 31000 + index when a spec gives none).
pub fn host_app(id: &str, vip_label: &str, tasks: &[TaskSpec], health_check: bool) -> Value {
    let version = now();
    let name = app_id_prefix(id);
    // A stable service port per app id, like Marathon's 10000+ range.
    let svc = 10_000
        + id.bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b.into()))
            % 10_000;
    let mut app = json!({
        "id": id,
        "cmd": format!("{name} --port $PORT0"),
        "instances": tasks.len(),
        "cpus": 0.5, "mem": 512, "disk": 0, "gpus": 0,
        "container": null,
        "networks": [{"mode": "host"}],
        "requirePorts": false,
        "portDefinitions": [{"port": svc, "protocol": "tcp", "name": name,
                             "labels": {"VIP_0": vip_label}}],
        "healthChecks": if health_check { json!([mesos_tcp_health_check()]) } else { json!([]) },
        "labels": {},
        "version": version,
        "versionInfo": {"lastScalingAt": version, "lastConfigChangeAt": version},
        "upgradeStrategy": {"minimumHealthCapacity": 1, "maximumOverCapacity": 1},
        "unreachableStrategy": {"inactiveAfterSeconds": 0, "expungeAfterSeconds": 0},
        "killSelection": "YOUNGEST_FIRST",
        "role": "*",
        "deployments": [],
    });
    let mut hosts: Vec<&str> = vec![];
    let built: Vec<Value> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let k = match hosts.iter().position(|h| *h == t.host) {
                Some(k) => k,
                None => {
                    hosts.push(&t.host);
                    hosts.len() - 1
                }
            };
            let mut spec = t.clone();
            if spec.ports.is_empty() {
                spec.ports = vec![31_000 + i as u16];
            }
            build_task(&app, &spec, k as u32 + 1)
        })
        .collect();
    app["tasks"] = Value::Array(built);
    fill_counts(&mut app);
    app
}

// ------------------------------------------------------------- pod helpers

/// One instance of a pod to run (its one container, `main`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodInstanceSpec {
    /// The agent (`agentHostname`; an IP here, so backends are reachable).
    pub host: String,
    /// The instance's addresses on its network (`networks[0].addresses`);
    /// empty = `[host]` (what Mesos reports for host networking).
    #[serde(default)]
    pub addresses: Vec<String>,
    /// `allocatedHostPort` of each endpoint that has a `hostPort`, in order.
    #[serde(default)]
    pub host_ports: Vec<u16>,
    /// The container's Mesos task state; default `TASK_RUNNING`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// The container's `healthy` condition (None: no health check).
    #[serde(default)]
    pub healthy: Option<bool>,
}

impl PodInstanceSpec {
    pub fn new(host: &str) -> PodInstanceSpec {
        PodInstanceSpec {
            host: host.to_string(),
            ..PodInstanceSpec::default()
        }
    }

    pub fn addresses(mut self, ips: &[&str]) -> PodInstanceSpec {
        self.addresses = ips.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn host_ports(mut self, ports: &[u16]) -> PodInstanceSpec {
        self.host_ports = ports.to_vec();
        self
    }

    pub fn state(mut self, state: &str) -> PodInstanceSpec {
        self.state = Some(state.to_string());
        self
    }
}

/// A pod's status as `GET /v2/pods/::status` shows it (Marathon's
/// `PodStatus`: `spec` + `instances`): one container `main` with
/// `endpoints`, on networks of `mode` (`host`; `container`, on the network
/// `dcos`; `container/bridge`). Agents get ids by host, as for apps.
pub fn pod_status(id: &str, mode: &str, endpoints: Value, instances: &[PodInstanceSpec]) -> Value {
    let version = now();
    let networks = match mode {
        "host" => json!([{"mode": "host"}]),
        "container" => json!([{"mode": "container", "name": "dcos", "labels": {}}]),
        m => json!([{"mode": m, "labels": {}}]),
    };
    let spec = json!({
        "id": id, "version": version, "labels": {}, "environment": {},
        "networks": networks,
        "containers": [{"name": "main", "resources": {"cpus": 0.1, "mem": 64, "disk": 0, "gpus": 0},
                        "image": {"kind": "DOCKER", "id": "busybox"},
                        "exec": {"command": {"shell": "sleep infinity"}},
                        "endpoints": endpoints, "labels": {}}],
        "scaling": {"kind": "fixed", "instances": instances.len()},
        "executorResources": {"cpus": 0.1, "mem": 32, "disk": 10},
    });
    let mut hosts: Vec<&str> = vec![];
    let built: Vec<Value> = instances
        .iter()
        .map(|inst| {
            let k = match hosts.iter().position(|h| *h == inst.host) {
                Some(k) => k,
                None => {
                    hosts.push(&inst.host);
                    hosts.len() - 1
                }
            };
            pod_instance(&spec, inst, k as u32 + 1)
        })
        .collect();
    let mut pod = json!({
        "id": id, "spec": spec, "statusSince": version,
        "instances": built, "terminationHistory": [],
        "lastUpdated": version, "lastChanged": version,
    });
    pod["status"] = json!(pod_state(&pod));
    pod
}

/// One `instances[]` entry of a pod status.
pub fn pod_instance(spec: &Value, inst: &PodInstanceSpec, agent: u32) -> Value {
    let id = spec["id"].as_str().unwrap_or("/unknown");
    let instance_id = new_instance_id(id);
    let state = inst.state.clone().unwrap_or_else(|| "TASK_RUNNING".into());
    let now = now();
    let addresses = if inst.addresses.is_empty() {
        vec![inst.host.clone()]
    } else {
        inst.addresses.clone()
    };
    let mut net = json!({"addresses": addresses});
    if let Some(name) = spec["networks"][0]["name"].as_str() {
        net["name"] = json!(name);
    }
    let mut ports = inst.host_ports.iter();
    let endpoints: Vec<Value> = spec["containers"][0]["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let mut st = json!({"name": e["name"]});
            if !e["hostPort"].is_null()
                && let Some(p) = ports.next()
            {
                st["allocatedHostPort"] = json!(p);
            }
            if let Some(h) = inst.healthy {
                st["healthy"] = json!(h);
            }
            st
        })
        .collect();
    let conditions = match inst.healthy {
        Some(h) => json!([{"name": "healthy", "value": h.to_string(),
                           "reason": "health-reported-by-mesos",
                           "lastChanged": now, "lastUpdated": now}]),
        None => json!([]),
    };
    let status = match state.as_str() {
        "TASK_RUNNING" if inst.healthy == Some(false) => "DEGRADED",
        "TASK_RUNNING" => "STABLE",
        "TASK_STAGING" | "TASK_STARTING" => "STAGING",
        "TASK_UNREACHABLE" => "DEGRADED",
        _ => "TERMINAL",
    };
    json!({
        "id": instance_id, "status": status, "statusSince": now,
        "agentId": agent_id(agent), "agentHostname": inst.host,
        "conditions": [], "resources": {"cpus": 0.2, "mem": 96, "disk": 10, "gpus": 0},
        "networks": [net],
        "containers": [{
            "name": "main", "status": state, "statusSince": now,
            "containerId": format!("{instance_id}.main"),
            "endpoints": endpoints, "conditions": conditions,
            "lastUpdated": now, "lastChanged": now,
        }],
        "specReference": format!("/v2/pods{id}::versions/{}", spec["version"].as_str().unwrap_or_default()),
        "lastUpdated": now, "lastChanged": now,
    })
}

/// `STABLE` when every instance is, else `DEGRADED` (the pod's `status`).
pub fn pod_state(pod: &Value) -> &'static str {
    let all_stable = pod["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|i| i["status"] == "STABLE");
    if all_stable { "STABLE" } else { "DEGRADED" }
}

/// Recomputes `tasksStaged/Running/Healthy/Unhealthy` from `tasks[]`.
pub fn fill_counts(app: &mut Value) {
    let hc = has_health_checks(app);
    let (mut staged, mut running, mut healthy, mut unhealthy) = (0, 0, 0, 0);
    for t in app["tasks"].as_array().into_iter().flatten() {
        match t["state"].as_str().unwrap_or_default() {
            "TASK_STAGING" | "TASK_STARTING" => staged += 1,
            "TASK_RUNNING" => running += 1,
            _ => {}
        }
        let results: Vec<&Value> = t["healthCheckResults"]
            .as_array()
            .into_iter()
            .flatten()
            .collect();
        if hc && !results.is_empty() {
            if results.iter().all(|r| r["alive"] == json!(true)) {
                healthy += 1;
            } else {
                unhealthy += 1;
            }
        }
    }
    app["tasksStaged"] = json!(staged);
    app["tasksRunning"] = json!(running);
    app["tasksHealthy"] = json!(healthy);
    app["tasksUnhealthy"] = json!(unhealthy);
}

/// `TASK_RUNNING` → `Running` (the `condition` of instance events).
pub fn condition_of(state: &str) -> String {
    let s = state
        .strip_prefix("TASK_")
        .unwrap_or(state)
        .to_ascii_lowercase();
    s.split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_format() {
        let t = UNIX_EPOCH + Duration::from_millis(1_588_586_404_512);
        assert_eq!(fmt_time(t), "2020-05-04T10:00:04.512Z");
        assert_eq!(fmt_time(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(fmt_time(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn ids() {
        let a = new_uuid_v1();
        let b = new_uuid_v1();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "1", "{a}");
        let inst = new_instance_id("/shop/web");
        assert!(inst.starts_with("shop_web.instance-"), "{inst}");
        let task = task_id_of(&inst, 1);
        assert_eq!(instance_id_of(&task), inst);
        assert_eq!(instance_id_of("redis.abc"), "redis.abc");
        assert_eq!(agent_index(&agent_id(3)), Some(3));
        let v4 = new_uuid_v4();
        assert_eq!(&v4[14..15], "4", "{v4}");
        assert_eq!(v4.len(), 36);
    }

    #[test]
    fn b64() {
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b""), "");
    }

    #[test]
    fn conditions() {
        assert_eq!(condition_of("TASK_RUNNING"), "Running");
        assert_eq!(condition_of("TASK_GONE_BY_OPERATOR"), "GoneByOperator");
    }

    #[test]
    fn host_app_shape() {
        let app = host_app(
            "/redis",
            "/redis:6379",
            &[
                TaskSpec::new("127.0.0.2", 7000).alive(Some(true)),
                TaskSpec::new("127.0.0.3", 7000).alive(Some(false)),
                TaskSpec::new("127.0.0.2", 7001),
            ],
            true,
        );
        assert_eq!(app["portDefinitions"][0]["labels"]["VIP_0"], "/redis:6379");
        assert_eq!(app["healthChecks"][0]["protocol"], "MESOS_TCP");
        let t = app["tasks"].as_array().unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t[0]["slaveId"], t[2]["slaveId"]);
        assert_ne!(t[0]["slaveId"], t[1]["slaveId"]);
        assert_eq!(
            t[0]["ipAddresses"],
            json!([{"ipAddress":"127.0.0.2","protocol":"IPv4"}])
        );
        assert_eq!(t[0]["healthCheckResults"][0]["alive"], true);
        assert_eq!(t[1]["healthCheckResults"][0]["alive"], false);
        assert_eq!(t[2]["healthCheckResults"], json!([]));
        assert_eq!(
            t[0]["servicePorts"],
            json!([app["portDefinitions"][0]["port"]])
        );
        assert_eq!(app["tasksHealthy"], 1);
        assert_eq!(app["tasksUnhealthy"], 1);
        assert_eq!(app["tasksRunning"], 3);
    }
}
