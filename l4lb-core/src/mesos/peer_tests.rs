//! dcos-net's own listener tests (`apps/dcos_net/test/
//! dcos_net_mesos_listener_tests.erl`) on its own payloads, and Mesos-DNS's
//! `records/generator_test.go` inputs (`factories/fake.json`), read from
//! ../shared/peer-fixtures beside the checkout. Each test names the peer
//! test it mirrors; the expected maps are the peer's, field for field.
use std::{collections::BTreeMap, net::IpAddr, path::PathBuf};

use serde_json::Value;

use super::*;
use crate::hosts::HostTable;

fn fixture_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/peer-fixtures")
        .join(rel)
}

pub(super) fn read_fixture(rel: &str) -> String {
    let path = fixture_path(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "peer fixture {} missing ({e}): shared/peer-fixtures must sit beside the checkout",
            path.display()
        )
    })
}

/// Every dcos-net stream fixture (`apps/dcos_net/test/*.json`).
pub(super) const STREAMS: [&str; 9] = [
    "dns-hostname.json",
    "hello-overlay.json",
    "hello-world.json",
    "operator-api.json",
    "pod-tasks.json",
    "recovered-agents.json",
    "tcp-and-udp.json",
    "unhealthy.json",
    "vip-labels.json",
];

/// A dcos-net fixture's non-empty lines (one message each).
pub(super) fn lines(name: &str) -> Vec<String> {
    read_fixture(&format!("dcos-net/apps/dcos_net/test/{name}"))
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The lines as the peer's fake master sends them (`<size>\n<line>`), fed
/// in `chunk`-byte pieces through RecordIO into a [`MesosState`].
fn stream_with(name: &str, hosts: &HostTable, chunk: usize) -> (MesosState, Vec<Warning>) {
    let mut body = Vec::new();
    for l in lines(name) {
        body.extend_from_slice(format!("{}\n{l}", l.len()).as_bytes());
    }
    let mut dec = RecordIoDecoder::new(1 << 20);
    let mut st = MesosState::new();
    let mut warnings = Vec::new();
    for piece in body.chunks(chunk) {
        for rec in dec.feed(piece).unwrap() {
            let msg = decode_message(&rec).unwrap();
            warnings.extend(st.apply(msg, hosts).warnings);
        }
    }
    dec.finish().unwrap();
    (st, warnings)
}

pub(super) fn stream(name: &str) -> MesosState {
    let (st, warnings) = stream_with(name, &HostTable::default(), 4096);
    assert!(warnings.is_empty(), "{name}: {warnings:?}");
    st
}

/// What the subscriber sees: dcos-net's `subscribe/0` map.
fn visible(st: &MesosState) -> BTreeMap<TaskKey, Peer> {
    st.tasks().map(|(k, v)| (k.clone(), Peer::of(&v))).collect()
}

/// A one-line `GET_STATE` fixture through [`from_state`].
fn get_state(name: &str, hosts: &HostTable) -> BTreeMap<TaskKey, Peer> {
    let [line] = &lines(name)[..] else {
        panic!("{name}: one line expected")
    };
    let Message::GetState(g) = decode_message(line.as_bytes()).unwrap() else {
        panic!("{name}: not GET_STATE")
    };
    let snap = from_state(&g, hosts);
    assert!(snap.warnings.is_empty(), "{name}: {:?}", snap.warnings);
    snap.by_key()
        .iter()
        .map(|(k, v)| (k.clone(), Peer::of(v)))
        .collect()
}

/// dcos-net's task map, exactly its keys (an absent key: None or empty).
#[derive(Clone, Debug, PartialEq)]
struct Peer {
    name: Option<String>,
    runtime: Runtime,
    framework: String,
    agent_ip: IpAddr,
    task_ip: Vec<IpAddr>,
    ports: Vec<TaskPort>,
    state: Option<TaskState>,
    healthy: Option<bool>,
}

impl Peer {
    fn of(v: &TaskView) -> Peer {
        Peer {
            name: v.name.clone(),
            runtime: v.runtime,
            framework: v.framework.clone(),
            agent_ip: v.agent_ip,
            task_ip: v.task_ip.clone(),
            ports: v.ports.clone(),
            state: v.state,
            healthy: v.healthy,
        }
    }
}

/// `#{name, runtime, framework, agent_ip, task_ip, state => running}`.
fn running(name: &str, runtime: Runtime, framework: &str, agent: &str, ips: &[&str]) -> Peer {
    Peer {
        name: Some(name.into()),
        runtime,
        framework: framework.into(),
        agent_ip: agent.parse().unwrap(),
        task_ip: ips.iter().map(|i| i.parse().unwrap()).collect(),
        ports: Vec::new(),
        state: Some(TaskState::Running),
        healthy: None,
    }
}

impl Peer {
    fn ports(mut self, ports: Vec<TaskPort>) -> Peer {
        self.ports = ports;
        self
    }
    fn healthy(mut self, h: bool) -> Peer {
        self.healthy = Some(h);
        self
    }
}

/// `#{name, protocol, port[, host_port][, vip]}`.
fn port(name: &str, proto: Protocol, port: u16, host_port: Option<u16>, vip: &[&str]) -> TaskPort {
    TaskPort {
        name: Some(name.into()),
        protocol: proto,
        port: Some(port),
        host_port,
        vip: vip.iter().map(|s| s.to_string()).collect(),
    }
}

fn key(framework: &str, task: &str) -> TaskKey {
    TaskKey {
        framework_id: framework.into(),
        task_id: task.into(),
    }
}

use Protocol::{Tcp, Udp};
use Runtime::{Docker, Mesos};

/// Mirrors `vip_labels_test`.
#[test]
fn vip_labels_test() {
    let got = get_state("vip-labels.json", &HostTable::default());
    let want = running("app", Mesos, "marathon", "172.17.0.3", &["172.17.0.3"])
        .ports(vec![
            port("foo", Tcp, 9999, None, &["/abc:80", "/cbd:80", "def:80"]),
            port("bar", Tcp, 10000, None, &["jkl:80"]),
            port("baz", Tcp, 10001, None, &["/xyz:443"]),
            port("qux", Tcp, 10002, None, &[]),
        ])
        .healthy(true);
    let k = key(
        "3de98647-82e7-4a22-8fb5-32df27c1ef69-0001",
        "app.c9e19be4-6a94-11e8-bfc9-70b3d5800002",
    );
    assert_eq!(got, BTreeMap::from([(k, want)]));
}

/// Mirrors `dns_hostname_test`: the agent is `localhost`, resolved through
/// the host table (dcos-net asks its resolver); without an answer the task
/// is left out, as dcos-net leaves out a task on an agent it cannot resolve.
#[test]
fn dns_hostname_test() {
    let hosts = HostTable::resolved([("localhost", "127.0.0.1".parse().unwrap())]);
    let got = get_state("dns-hostname.json", &hosts);
    let want = running("test", Docker, "marathon", "127.0.0.1", &["127.0.0.1"]);
    let k = key(
        "d0a07cf9-7424-426b-b138-2be9d07b8e62-0001",
        "test.f12cc459-cb38-11e8-a264-2e431fa5cff2",
    );
    assert_eq!(got, BTreeMap::from([(k, want)]));
    assert!(get_state("dns-hostname.json", &HostTable::default()).is_empty());
}

/// Mirrors `tcp_udp_test`.
#[test]
fn tcp_udp_test() {
    let got = get_state("tcp-and-udp.json", &HostTable::default());
    let want = running("app", Docker, "marathon", "172.17.0.3", &["172.17.0.3"])
        .ports(vec![
            port("http", Tcp, 6416, None, &["/app:80"]),
            port("foobar", Tcp, 6417, None, &[]),
            port("http", Udp, 6416, None, &["/app:80"]),
            port("foobar", Udp, 6417, None, &[]),
        ])
        .healthy(true);
    let k = key(
        "0e559f52-e43a-497a-90b8-11688d98f60c-0000",
        "app.80eefa01-d956-11e8-8b68-70b3d5800002",
    );
    assert_eq!(got, BTreeMap::from([(k, want)]));
}

/// Mirrors `unhealthy_test`.
#[test]
fn unhealthy_test() {
    let got = get_state("unhealthy.json", &HostTable::default());
    let want = running("app", Mesos, "marathon", "172.17.0.4", &["9.0.1.6"])
        .ports(vec![port("http", Tcp, 80, None, &["/foobar:80"])])
        .healthy(false);
    let k = key(
        "ca0f7f0e-30a7-471b-8e2e-500e1e8a3799-0000",
        "app.7a5a8aa6-d8be-11e8-9bf3-70b3d5800001",
    );
    assert_eq!(got, BTreeMap::from([(k, want)]));
}

const BASIC_FW: &str = "30257977-0153-499d-a5b0-35afd842ef4d-0001";

/// `basic_test_`'s expectations, one per peer case (`none_on_host` …
/// `pod_on_dcos`).
fn basic_expected() -> Vec<(&'static str, &'static str, Peer)> {
    let h = |p: u16| vec![port("http", Tcp, p, None, &[])];
    let hb = |p: u16, hp: u16| vec![port("http", Tcp, p, Some(hp), &[])];
    let a3 = "172.17.0.3";
    let a4 = "172.17.0.4";
    vec![
        (
            "none_on_host",
            "none-on-host.1458594c-2630-11e8-af52-70b3d5800001",
            running("none-on-host", Mesos, "marathon", a4, &[a4]).ports(h(13977)),
        ),
        (
            "none_on_dcos",
            "none-on-dcos.115c093a-2630-11e8-af52-70b3d5800001",
            running("none-on-dcos", Mesos, "marathon", a4, &["9.0.2.5"]),
        ),
        (
            "ucr_on_host",
            "ucr-on-host.1755bacf-2630-11e8-af52-70b3d5800001",
            running("ucr-on-host", Mesos, "marathon", a3, &[a3]).ports(h(10323)),
        ),
        (
            "ucr_on_bridge",
            "ucr-on-bridge.1458805d-2630-11e8-af52-70b3d5800001",
            running("ucr-on-bridge", Mesos, "marathon", a3, &["172.31.254.3"])
                .ports(hb(8080, 15263)),
        ),
        (
            "ucr_on_dcos",
            "ucr-on-dcos.145ec1ee-2630-11e8-af52-70b3d5800001",
            running("ucr-on-dcos", Mesos, "marathon", a3, &["9.0.1.6"]),
        ),
        (
            "docker_on_host",
            "docker-on-host.116271db-2630-11e8-af52-70b3d5800001",
            running("docker-on-host", Docker, "marathon", a4, &[a4]).ports(h(31168)),
        ),
        (
            "docker_on_bridge",
            "docker-on-bridge.0ef76549-2630-11e8-af52-70b3d5800001",
            running("docker-on-bridge", Docker, "marathon", a4, &["172.18.0.2"])
                .ports(hb(8080, 20560)),
        ),
        (
            "docker_on_dcos",
            "docker-on-dcos.0ebe53e8-2630-11e8-af52-70b3d5800001",
            running("docker-on-dcos", Docker, "marathon", a4, &["9.0.2.130"]).ports(h(8080)),
        ),
        (
            "docker_on_ipv6",
            "docker-on-ipv6.602453f2-28e7-11e8-8cba-70b3d5800001",
            running(
                "docker-on-ipv6",
                Docker,
                "marathon",
                a4,
                &["172.19.0.2", "fd01:b::2:8000:0:2"],
            )
            .ports(h(8080)),
        ),
        (
            "pod_on_host",
            "pod-on-host.instance-ea1231bf-2930-11e8-96bf-70b3d5800001.app",
            running("pod-on-host", Mesos, "marathon", a4, &[a4]).ports(h(28064)),
        ),
        (
            "pod_on_bridge",
            "pod-on-bridge.instance-e9d06dcd-2930-11e8-96bf-70b3d5800001.app",
            running("pod-on-bridge", Mesos, "marathon", a3, &["172.31.254.4"])
                .ports(hb(8080, 2254)),
        ),
        (
            "pod_on_dcos",
            "pod-on-dcos.instance-ea1231be-2930-11e8-96bf-70b3d5800001.app",
            running("pod-on-dcos", Mesos, "marathon", a3, &["9.0.1.3"]).ports(h(8080)),
        ),
    ]
}

/// Mirrors `basic_test_` (operator-api.json streamed): `none_on_host`,
/// `none_on_dcos`, `ucr_on_host`, `ucr_on_bridge`, `ucr_on_dcos`,
/// `docker_on_host`, `docker_on_bridge`, `docker_on_dcos`, `docker_on_ipv6`,
/// `pod_on_host`, `pod_on_bridge`, `pod_on_dcos`. (`is_leader` is about
/// dcos-net's process, not the data: nothing to mirror.)
#[test]
fn basic_test() {
    let tasks = visible(&stream("operator-api.json"));
    for (case, task_id, want) in basic_expected() {
        let got = tasks.get(&key(BASIC_FW, task_id));
        assert_eq!(got, Some(&want), "{case}");
    }
}

/// Mirrors `basic_from_state`: the stream's lines merged into one
/// `GET_STATE` answer as the peer's `from_state_merge` does, read by
/// [`from_state`], give the same tasks as the stream.
#[test]
fn basic_from_state() {
    let streamed = visible(&stream("operator-api.json"));
    let merged = from_state_merge(&lines("operator-api.json"));
    let Message::GetState(g) = decode_message(merged.to_string().as_bytes()).unwrap() else {
        panic!("merged state is not GET_STATE")
    };
    let snap = from_state(&g, &HostTable::default());
    assert!(snap.warnings.is_empty(), "{:?}", snap.warnings);
    let read: BTreeMap<_, _> = snap
        .by_key()
        .iter()
        .map(|(k, v)| (k.clone(), Peer::of(v)))
        .collect();
    assert_eq!(read, streamed);
    assert_eq!(read.len(), basic_expected().len());
}

/// The peer test's `from_state_merge/1`: SUBSCRIBED's state, then each
/// TASK_ADDED prepended, each FRAMEWORK_UPDATED / TASK_UPDATED (status)
/// deep-merged into the entry with its id (or prepended).
fn from_state_merge(lines: &[String]) -> Value {
    let mut acc = serde_json::json!({"type": "GET_STATE"});
    for l in lines {
        let msg: Value = serde_json::from_str(l).unwrap();
        match msg["type"].as_str().unwrap() {
            "SUBSCRIBED" => acc["get_state"] = msg["subscribed"]["get_state"].clone(),
            "TASK_ADDED" => tasks_of(&mut acc).insert(0, msg["task_added"]["task"].clone()),
            "TASK_UPDATED" => {
                let status = msg["task_updated"]["status"].clone();
                merge_by_id(tasks_of(&mut acc), &["task_id", "value"], status)
            }
            "FRAMEWORK_UPDATED" => {
                let fw = msg["framework_updated"]["framework"].clone();
                let list = acc["get_state"]["get_frameworks"]["frameworks"]
                    .as_array_mut()
                    .unwrap();
                merge_by_id(list, &["framework_info", "id", "value"], fw)
            }
            other => panic!("from_state_merge has no clause for {other}"),
        }
    }
    acc
}

fn tasks_of(acc: &mut Value) -> &mut Vec<Value> {
    let t = &mut acc["get_state"]["get_tasks"]["tasks"];
    if t.is_null() {
        *t = Value::Array(Vec::new());
    }
    t.as_array_mut().unwrap()
}

fn merge_by_id(list: &mut Vec<Value>, path: &[&str], obj: Value) {
    let id_of = |v: &Value| path.iter().fold(v, |v, k| &v[*k]).clone();
    let id = id_of(&obj);
    match list.iter().position(|o| id_of(o) == id) {
        Some(i) => {
            let mut o = list.remove(i);
            deep_merge(&mut o, obj);
            list.insert(0, o);
        }
        None => list.insert(0, obj),
    }
}

/// The peer's `mmerge`: objects merge key by key, anything else is replaced.
fn deep_merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, vb) in b {
                match a.get_mut(&k) {
                    Some(va) => deep_merge(va, vb),
                    None => {
                        a.insert(k, vb);
                    }
                }
            }
        }
        (a, b) => *a = b,
    }
}

/// Mirrors `hello_world_test_`: every task ends terminal or is never
/// complete, so nothing is left.
#[test]
fn hello_world_test() {
    let st = stream("hello-world.json");
    assert_eq!(visible(&st), BTreeMap::new());
    // Not empty for want of reading: the snapshot alone shows four tasks.
    let mut first = MesosState::new();
    let sub = decode_message(lines("hello-world.json")[0].as_bytes()).unwrap();
    first.apply(sub, &HostTable::default());
    assert_eq!(first.tasks().count(), 4);
}

/// Mirrors `hello_overlay_test_`: `hello_overlay_world`,
/// `hello_overlay_server`, `hello_overlay_vip`, `hello_overlay_host_vip`.
#[test]
fn hello_overlay_test() {
    let tasks = visible(&stream("hello-overlay.json"));
    let marathon = "c620b0f5-ce56-472b-814a-aa36b40206af-0001";
    let sdk = "c620b0f5-ce56-472b-814a-aa36b40206af-0002";
    let agent = "10.0.0.49";
    let cases = [
        (
            "hello_overlay_world",
            marathon,
            "hello-world.cea59641-2bea-11e8-93f9-6a3d376ad59c",
            running("hello-world", Runtime::Unknown, "marathon", agent, &[agent]).ports(vec![
                port("api", Tcp, 19630, None, &["/api.hello-world:80"]),
            ]),
        ),
        (
            "hello_overlay_server",
            sdk,
            "hello-overlay-0-server__7a7fe08f-7870-4def-a3ac-da5f18377dab",
            running(
                "hello-overlay-0-server",
                Mesos,
                "hello-world",
                agent,
                &["9.0.2.2"],
            )
            .ports(vec![
                port("overlay-dummy", Tcp, 1025, None, &[]),
                port("overlay-dynport", Tcp, 1026, None, &[]),
            ]),
        ),
        (
            "hello_overlay_vip",
            sdk,
            "hello-overlay-vip-0-server__3b071c4d-ef05-4344-9910-867431def3d7",
            running(
                "hello-overlay-vip-0-server",
                Mesos,
                "hello-world",
                agent,
                &["9.0.2.3"],
            )
            .ports(vec![port(
                "overlay-vip",
                Tcp,
                4044,
                None,
                &["overlay-vip:80"],
            )]),
        ),
        (
            "hello_overlay_host_vip",
            sdk,
            "hello-host-vip-0-server__2e5e76da-1d8c-4435-b152-70002de6ca9b",
            running(
                "hello-host-vip-0-server",
                Mesos,
                "hello-world",
                agent,
                &[agent],
            )
            .ports(vec![port("host-vip", Tcp, 4044, None, &["host-vip:80"])]),
        ),
    ];
    for (case, fw, task, want) in cases {
        assert_eq!(tasks.get(&key(fw, task)), Some(&want), "{case}");
    }
}

/// Mirrors `pod_tasks_test_`: of the pod's two containers only `foo` is
/// running; it is named after the pod (`app`), on the overlay IP.
#[test]
fn pod_tasks_test() {
    let tasks = visible(&stream("pod-tasks.json"));
    let k = key(
        "8ae294b7-a766-42d6-960c-ad8acf0f0db6-0000",
        "app.instance-caff1565-d0db-11e8-aa23-70b3d5800002.foo",
    );
    let want = running("app", Mesos, "marathon", "172.17.0.3", &["9.0.0.2"]);
    assert_eq!(tasks, BTreeMap::from([(k, want)]));
}

/// recovered-agents.json (no peer assertion in the stored tests: the
/// expectation follows dcos-net's rules). SUBSCRIBED knows the agent only
/// as recovered, so nothing is known until AGENT_ADDED; the first task
/// arrives failed and is dropped; the second runs on the bridge, its
/// discovery port a host port merged with its port mapping.
#[test]
fn recovered_agents() {
    let all = lines("recovered-agents.json");
    let mut st = MesosState::new();
    let hosts = HostTable::default();
    let first = st.apply(decode_message(all[0].as_bytes()).unwrap(), &hosts);
    assert!(first.warnings.is_empty());
    assert_eq!(
        st.agents().count(),
        0,
        "recovered agents are not agents yet"
    );
    let tasks = visible(&stream("recovered-agents.json"));
    let fw = "65fccc5d-35a8-4cae-9eb2-05922043018e-0001";
    let k = key(
        fw,
        "web.instance-8b38cc52-c951-11e9-8d5b-70b3d5800001._app.2",
    );
    let want =
        running("web", Mesos, "marathon", "172.17.0.4", &["172.31.254.10"]).ports(vec![port(
            "default",
            Tcp,
            10080,
            Some(16424),
            &["/web:10080"],
        )]);
    assert_eq!(tasks, BTreeMap::from([(k, want)]));
}

/// dcos-net's "tasks can arrive before their agent or framework": the same
/// stream with AGENT_ADDED and FRAMEWORK_ADDED moved to the end holds the
/// task, then gives the same result.
#[test]
fn tasks_wait_for_their_agent_and_framework() {
    let all = lines("recovered-agents.json");
    let (parents, rest): (Vec<_>, Vec<_>) = all[1..]
        .iter()
        .partition(|l| l.contains("\"AGENT_ADDED\"") || l.contains("\"FRAMEWORK_ADDED\""));
    let hosts = HostTable::default();
    let mut st = MesosState::new();
    st.apply(decode_message(all[0].as_bytes()).unwrap(), &hosts);
    for l in rest.iter().filter(|l| !l.contains("FRAMEWORK_UPDATED")) {
        st.apply(decode_message(l.as_bytes()).unwrap(), &hosts);
    }
    assert_eq!(st.tasks().count(), 0);
    assert_eq!(st.waiting(), 1);
    st.apply(decode_message(parents[0].as_bytes()).unwrap(), &hosts);
    assert_eq!(
        st.tasks().count(),
        0,
        "agent known, framework still missing"
    );
    let f = st.apply(decode_message(parents[1].as_bytes()).unwrap(), &hosts);
    assert!(f.changed);
    assert_eq!(st.waiting(), 0);
    assert_eq!(visible(&st), visible(&stream("recovered-agents.json")));
}

/// Removals drop what dcos-net drops: AGENT_REMOVED / FRAMEWORK_REMOVED
/// forget the agent or framework (a task's later update then waits), a
/// terminal update drops the task.
#[test]
fn removals_and_terminal_updates() {
    let mut st = stream("recovered-agents.json");
    let hosts = HostTable::default();
    let fw = "65fccc5d-35a8-4cae-9eb2-05922043018e-0001";
    let task = "web.instance-8b38cc52-c951-11e9-8d5b-70b3d5800001._app.2";
    let removed = format!(
        r#"{{"type":"FRAMEWORK_REMOVED","framework_removed":{{"framework_info":{{"id":{{"value":"{fw}"}},"name":"marathon"}}}}}}"#
    );
    // A change for the cluster records (framework records), not for tasks.
    let a = st.apply(decode_message(removed.as_bytes()).unwrap(), &hosts);
    assert!(a.changed);
    assert_eq!(st.frameworks().count(), 0);
    assert_eq!(st.tasks().count(), 1, "tasks stay until Mesos ends them");
    let update = |state: &str| {
        format!(
            r#"{{"type":"TASK_UPDATED","task_updated":{{"framework_id":{{"value":"{fw}"}},"state":"{state}",
                "status":{{"task_id":{{"value":"{task}"}},"agent_id":{{"value":"65fccc5d-35a8-4cae-9eb2-05922043018e-S0"}},
                "state":"{state}","timestamp":1566970999.0}}}}}}"#
        )
    };
    let a = st.apply(
        decode_message(update("TASK_KILLING").as_bytes()).unwrap(),
        &hosts,
    );
    assert!(a.changed);
    assert_eq!(
        (st.tasks().count(), st.waiting()),
        (0, 1),
        "held: framework gone"
    );
    let a = st.apply(
        decode_message(update("TASK_KILLED").as_bytes()).unwrap(),
        &hosts,
    );
    assert!(!a.changed, "it was not visible");
    assert_eq!((st.tasks().count(), st.waiting()), (0, 0));
    let gone = r#"{"type":"AGENT_REMOVED","agent_removed":{"agent_id":{"value":"65fccc5d-35a8-4cae-9eb2-05922043018e-S0"}}}"#;
    st.apply(decode_message(gone.as_bytes()).unwrap(), &hosts);
    assert_eq!(st.agents().count(), 0);
}

/// An agent known by name waits for the host table; a newer table releases
/// its tasks (and re-addresses them when the answer changes).
#[test]
fn agent_names_resolve_through_the_host_table() {
    // dns-hostname.json as a stream: its GET_STATE as a SUBSCRIBED snapshot.
    let line = &lines("dns-hostname.json")[0];
    let mut v: Value = serde_json::from_str(line).unwrap();
    let sub = serde_json::json!({"type": "SUBSCRIBED",
        "subscribed": {"get_state": v["get_state"].take(), "heartbeat_interval_seconds": 15.0}});
    let mut st = MesosState::new();
    st.apply(
        decode_message(sub.to_string().as_bytes()).unwrap(),
        &HostTable::default(),
    );
    assert_eq!(
        st.heartbeat_interval(),
        Some(std::time::Duration::from_secs(15))
    );
    assert_eq!(st.wanted_hosts().collect::<Vec<_>>(), ["localhost"]);
    assert_eq!((st.tasks().count(), st.waiting()), (0, 1));
    let a = st.refresh_hosts(&HostTable::resolved([(
        "localhost",
        "127.0.0.1".parse().unwrap(),
    )]));
    assert!(a.changed);
    let (_, v) = st.tasks().next().unwrap();
    assert_eq!(v.agent_ip, "127.0.0.1".parse::<IpAddr>().unwrap());
    let a = st.refresh_hosts(&HostTable::resolved([(
        "localhost",
        "127.0.0.2".parse().unwrap(),
    )]));
    assert!(a.changed);
    assert_eq!(
        st.tasks().next().unwrap().1.agent_ip.to_string(),
        "127.0.0.2"
    );
    assert!(
        !st.refresh_hosts(&HostTable::default()).changed,
        "no answer keeps the address"
    );
}

/// One bad task is skipped with a warning naming it; the rest of the
/// snapshot is used.
#[test]
fn a_bad_task_is_skipped_and_named() {
    let mut all = lines("hello-world.json");
    let mut sub: Value = serde_json::from_str(&all[0]).unwrap();
    let tasks = sub["subscribed"]["get_state"]["get_tasks"]["tasks"]
        .as_array_mut()
        .unwrap();
    assert!(!tasks.is_empty());
    let id = tasks[0]["task_id"]["value"].as_str().unwrap().to_owned();
    tasks[0]["statuses"] = Value::String("garbage".into());
    all[0] = sub.to_string();
    let mut st = MesosState::new();
    let a = st.apply(
        decode_message(all[0].as_bytes()).unwrap(),
        &HostTable::default(),
    );
    assert_eq!(a.warnings.len(), 1, "{:?}", a.warnings);
    assert_eq!(a.warnings[0].kind, WarningKind::SkippedTask);
    assert!(a.warnings[0].to_string().contains(&id), "{}", a.warnings[0]);
}

/// The stream fed in small and odd chunks decodes to the same state.
#[test]
fn chunking_does_not_change_the_result() {
    let whole = visible(&stream("operator-api.json"));
    for chunk in [1, 2, 3, 7, 64, 1000] {
        let (st, w) = stream_with("operator-api.json", &HostTable::default(), chunk);
        assert!(w.is_empty());
        assert_eq!(visible(&st), whole, "chunk {chunk}");
    }
}

/// Mesos-DNS's `/master/state` (factories/fake.json), read into the same
/// views: the tasks and agents `records/generator_test.go`'s
/// `TestInsertState` relies on.
#[test]
fn mesos_dns_fake_state() {
    let st: MasterState =
        serde_json::from_str(&read_fixture("mesos-dns/factories/fake.json")).unwrap();
    let snap = from_master_state(&st, &HostTable::default());
    assert!(snap.warnings.is_empty(), "{:?}", snap.warnings);
    let marathon = "20140703-014514-3041283216-5050-5348-0000";
    let find = |id: &str, name: &str| {
        snap.tasks
            .iter()
            .find(|(k, v)| k.task_id == id && v.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("{id} ({name}) missing"))
    };
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    // liquor-store.marathon.mesos → 10.3.0.1, 10.3.0.2 (docker labels of the
    // latest RUNNING status); .slave.mesos → 1.2.3.11, 1.2.3.12.
    let (k, ls) = find(
        "liquor-store.b8db9f73-562f-11e4-a088-c20493233aa5",
        "liquor.store",
    );
    assert_eq!(k.framework_id, marathon);
    assert_eq!(
        (ls.framework.as_str(), ls.agent_ip),
        ("marathon", ip("1.2.3.11"))
    );
    assert_eq!(ls.docker_ips, [ip("10.3.0.1")]);
    assert_eq!(ls.resource_ports, [31354, 31355]);
    let disc: Vec<_> = ls
        .ports
        .iter()
        .map(|p| (p.name.as_deref().unwrap(), p.port.unwrap()))
        .collect();
    assert_eq!(disc, [("http", 80), ("https", 443)]);
    let (_, nh) = find(
        "liquor-store.b71166c1-562f-11e4-a088-c20493233aa5",
        "liquor.store",
    );
    assert_eq!(
        (nh.agent_ip, nh.docker_ips.as_slice()),
        (ip("1.2.3.12"), &[ip("10.3.0.2")][..])
    );
    assert_eq!(nh.resource_ports, [31737, 31738]);
    // Two tasks share one id: both are kept (the second named big.dog).
    find(
        "liquor-store.b8db9f73-562f-11e4-a088-c20493233aa5",
        "big.dog",
    );
    // car-store: no IP labels, SRV ports from resources, on 1.2.3.11.
    let (_, car) = find(
        "car-store.43758382-562f-11e4-a088-c20493233aa5",
        "car.store",
    );
    assert_eq!(
        (car.agent_ip, car.resource_ports.as_slice()),
        (ip("1.2.3.11"), &[31364, 31365][..])
    );
    assert!(car.docker_ips.is_empty() && car.mesos_ips.is_empty());
    // nginx: the Mesos containerizer's label → 10.3.0.3.
    assert_eq!(
        find("nginx.1bc32344-3dda-11e4-a088-c20493233aa5", "nginx")
            .1
            .mesos_ips,
        [ip("10.3.0.3")]
    );
    // some-box: its framework_id is mistyped; it belongs to the framework
    // listing it (→ some-box.chronoswithaspaceandmixe.mesos on 1.2.3.11).
    let (k, sb) = find("some-box.b8db9f73-562f-11e4-a088-c20493233aa5", "some-box");
    assert_eq!(k.framework_id, "20140703-014514-3041283216-5050-5348-0001");
    assert_eq!(sb.framework, "chronos with a space AND MIXED CASE-2.0.1");
    assert_eq!(sb.agent_ip, ip("1.2.3.11"));
    // toy-store on the IPv6 agent, its IPs from the status's network infos.
    let (_, toy) = find(
        "toy-store.b8db9f73-562f-11e4-a088-c20493233aa5",
        "toy-store",
    );
    assert_eq!(toy.agent_ip, ip("2001:db8::1"));
    assert_eq!(
        toy.task_ip,
        [ip("12.0.1.3"), ip("12.0.1.2"), ip("fd01:b::1:8000:2")]
    );
    // poseidon is TASK_KILLED: no records (terminal in the view).
    let (_, pos) = find(
        "poseidon.bc4e3796-2d7a-11e4-b8df-d43d7edb01cd",
        "poseidon.bc4e3796-2d7a-11e4-b8df-d43d7edb01cd",
    );
    assert_eq!(pos.state, Some(TaskState::Terminal));
    // slave.mesos: the agents' addresses.
    let mut agents: Vec<_> = snap.agents.values().filter_map(|a| a.ip).collect();
    agents.sort();
    assert_eq!(
        agents,
        [
            ip("1.2.3.10"),
            ip("1.2.3.11"),
            ip("1.2.3.12"),
            ip("2001:db8::1")
        ]
    );
}
