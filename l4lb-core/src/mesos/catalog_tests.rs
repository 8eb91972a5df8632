//! The catalog of dcos-net's own fixtures (the task views its listener
//! tests assert, see `peer_tests`) and of its poller test's task.
use std::net::{IpAddr, SocketAddr};

use super::*;
use crate::hosts::HostTable;
use crate::mesos::{
    MesosState, Message, Runtime, TaskPort, decode_message, from_state,
    peer_tests::{lines, stream},
};
use crate::model::{ServiceSpec, Vip};
use crate::naming::{self, Family};

fn build(st: &MesosState) -> (Built, VipAllocator) {
    let tasks: Vec<(TaskKey, TaskView)> = st.tasks().map(|(k, v)| (k.clone(), v)).collect();
    let mut alloc = VipAllocator::new();
    let b = catalog(tasks.iter().map(|(k, v)| (k, v)), &mut alloc).unwrap();
    (b, alloc)
}

/// A one-line `GET_STATE` fixture read alone.
fn snapshot(name: &str) -> Vec<(TaskKey, TaskView)> {
    let line = &lines(name)[0];
    let Message::GetState(g) = decode_message(line.as_bytes()).unwrap() else {
        panic!("{name}: not GET_STATE")
    };
    from_state(&g, &HostTable::default()).tasks
}

fn build_snapshot(name: &str) -> (Built, VipAllocator) {
    let tasks = snapshot(name);
    let mut alloc = VipAllocator::new();
    let b = catalog(tasks.iter().map(|(k, v)| (k, v)), &mut alloc).unwrap();
    (b, alloc)
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn backends(list: &[(&str, u32)]) -> crate::model::Backends {
    list.iter().map(|(a, w)| (sa(a), *w)).collect()
}

/// The VIP of allocator key `key` on `port`/`proto`, checked to be at the
/// key's address.
fn named<'c>(
    b: &'c Built,
    alloc: &VipAllocator,
    key: &str,
    port: u16,
    proto: Proto,
) -> &'c ServiceSpec {
    let ip = alloc
        .get(Family::V4, key)
        .unwrap_or_else(|| panic!("{key} has no address: {:?}", b.catalog.services));
    let vip = Vip {
        addr: SocketAddr::new(ip, port),
        proto,
    };
    b.catalog.services.services.get(&vip).unwrap()
}

/// hello-overlay: a Marathon task's `/api.hello-world:80` is a Marathon
/// VIP; the SDK framework's `overlay-vip:80` (on the overlay IP) and
/// `host-vip:80` (on the agent) are `hello-world`'s.
#[test]
fn hello_overlay_vips_belong_to_their_framework() {
    let (b, alloc) = build(&stream("hello-overlay.json"));
    assert!(b.warnings.is_empty(), "{:?}", b.warnings);
    for (label, fw, fqdn) in [
        (
            "/api.hello-world",
            "marathon",
            "api.hello-world.marathon.l4lb.thisdcos.directory",
        ),
        (
            "overlay-vip",
            "hello-world",
            "overlay-vip.hello-world.l4lb.thisdcos.directory",
        ),
    ] {
        assert_eq!(naming::vip_fqdn(label, fw).as_deref(), Some(fqdn));
    }
    let api = named(&b, &alloc, "api.hello-world.marathon", 80, Proto::Tcp);
    assert_eq!(api.backends, backends(&[("10.0.0.49:19630", 1)]));
    assert_eq!(api.name.as_deref(), Some("/api.hello-world:80"));
    let overlay = named(&b, &alloc, "overlay-vip.hello-world", 80, Proto::Tcp);
    assert_eq!(overlay.backends, backends(&[("9.0.2.3:4044", 1)]));
    assert_eq!(api.framework, None, "Marathon's");
    assert_eq!(overlay.framework.as_deref(), Some("hello-world"));
    let host = named(&b, &alloc, "host-vip.hello-world", 80, Proto::Tcp);
    assert_eq!(host.backends, backends(&[("10.0.0.49:4044", 1)]));
    assert_eq!(b.catalog.services.services.len(), 3);
    assert!(
        host.origin
            .as_deref()
            .unwrap()
            .starts_with("task hello-host-vip-0-server__"),
        "{:?}",
        host.origin
    );
}

/// hello-overlay: one record per visible task, named for DNS after the
/// task, under its framework's name.
#[test]
fn hello_overlay_task_records() {
    let st = stream("hello-overlay.json");
    let (b, _) = build(&st);
    assert_eq!(b.catalog.tasks.len(), st.tasks().count());
    let t = b
        .catalog
        .tasks
        .iter()
        .find(|t| t.task_id.starts_with("hello-overlay-vip-0-server__"))
        .unwrap();
    assert_eq!(&*t.app_id, "/hello-overlay-vip-0-server");
    assert_eq!(&*t.framework, "hello-world");
    assert_eq!(t.agent_ip, Some("10.0.0.49".parse().unwrap()));
    assert_eq!(*t.task_ips, vec!["9.0.2.3".parse::<IpAddr>().unwrap()]);
    assert_eq!((t.running, t.host_ports), (true, false));
    assert_eq!(t.ports[0].port, 4044);
    // Its agent's fault domain.
    assert_eq!(t.zone.as_deref(), Some("aws/us-west-2a"));
    let m = b
        .catalog
        .tasks
        .iter()
        .find(|t| t.task_id.starts_with("hello-world."))
        .unwrap();
    assert_eq!((&*m.app_id, &*m.framework), ("/hello-world", "marathon"));
}

/// tcp-and-udp: the VIP label on the tcp and the udp port gives one VIP
/// per protocol at the same address.
#[test]
fn tcp_and_udp() {
    let (b, alloc) = build_snapshot("tcp-and-udp.json");
    assert!(b.warnings.is_empty(), "{:?}", b.warnings);
    for proto in [Proto::Tcp, Proto::Udp] {
        let s = named(&b, &alloc, "app.marathon", 80, proto);
        assert_eq!(s.backends, backends(&[("172.17.0.3:6416", 1)]));
    }
    assert_eq!(b.catalog.services.services.len(), 2);
}

/// unhealthy: a running task whose health check fails weighs 0.
#[test]
fn unhealthy_weighs_zero() {
    let (b, alloc) = build_snapshot("unhealthy.json");
    let s = named(&b, &alloc, "foobar.marathon", 80, Proto::Tcp);
    assert_eq!(s.backends, backends(&[("9.0.1.6:80", 0)]));
    assert_eq!(b.catalog.tasks[0].healthy, Some(false));
}

/// vip-labels: several labels on a port (`/abc` and `abc` are one name),
/// a port without labels declares nothing.
#[test]
fn vip_labels() {
    let (b, alloc) = build_snapshot("vip-labels.json");
    assert!(b.warnings.is_empty(), "{:?}", b.warnings);
    for (key, port, backend) in [
        ("abc.marathon", 80, "172.17.0.3:9999"),
        ("cbd.marathon", 80, "172.17.0.3:9999"),
        ("def.marathon", 80, "172.17.0.3:9999"),
        ("jkl.marathon", 80, "172.17.0.3:10000"),
        ("xyz.marathon", 443, "172.17.0.3:10001"),
    ] {
        let s = named(&b, &alloc, key, port, Proto::Tcp);
        assert_eq!(s.backends, backends(&[(backend, 1)]), "{key}");
    }
    assert_eq!(b.catalog.services.services.len(), 5);
}

/// recovered-agents: a bridged port is served at agent IP:host port.
#[test]
fn host_port_is_served_on_the_agent() {
    let (b, alloc) = build(&stream("recovered-agents.json"));
    let s = named(&b, &alloc, "web.marathon", 10080, Proto::Tcp);
    assert_eq!(s.backends, backends(&[("172.17.0.4:16424", 1)]));
    assert!(b.catalog.tasks[0].host_ports);
}

fn poller_task(state: Option<TaskState>) -> (TaskKey, TaskView) {
    let key = TaskKey {
        framework_id: "fw".into(),
        task_id: "app.6e53a5c1-1f27-11e6-bc04-4e40412869d8".into(),
    };
    let view = TaskView {
        name: Some("app".into()),
        runtime: Runtime::Mesos,
        framework: "marathon".into(),
        agent_ip: "10.0.0.243".parse().unwrap(),
        task_ip: vec!["9.0.1.29".parse().unwrap()],
        ports: vec![TaskPort {
            name: Some("http".into()),
            protocol: Protocol::Tcp,
            port: Some(80),
            host_port: Some(12049),
            vip: vec!["merp:5000".into()],
        }],
        state,
        healthy: None,
        agent_id: "agent-S1".into(),
        resource_ports: Vec::new(),
        docker_ips: Vec::new(),
        mesos_ips: Vec::new(),
        zone: None,
    };
    (key, view)
}

/// dcos-net's poller suite (`test_lashup`): the task's one backend is the
/// agent's host port.
#[test]
fn poller_suite_task() {
    let (k, v) = poller_task(Some(TaskState::Running));
    let mut alloc = VipAllocator::new();
    let b = catalog([(&k, &v)], &mut alloc).unwrap();
    let s = named(&b, &alloc, "merp.marathon", 5000, Proto::Tcp);
    assert_eq!(s.backends, backends(&[("10.0.0.243:12049", 1)]));
}

/// A task that is not running serves nothing: its VIP is withdrawn, its
/// record stays.
#[test]
fn tasks_not_running_are_no_backends() {
    for state in [None, Some(TaskState::Preparing), Some(TaskState::Terminal)] {
        let (k, v) = poller_task(state);
        let b = catalog([(&k, &v)], &mut VipAllocator::new()).unwrap();
        assert!(b.catalog.services.services.is_empty(), "{state:?}");
        assert_eq!(b.catalog.tasks.len(), 1);
        assert!(!b.catalog.tasks[0].running);
    }
}

/// A bad label is skipped with a warning naming the task; the others apply.
#[test]
fn bad_label_warns() {
    let (k, mut v) = poller_task(Some(TaskState::Running));
    v.ports[0].vip.push("merp:0".into());
    v.ports.push(TaskPort {
        port: None,
        host_port: None,
        ..v.ports[0].clone()
    });
    let mut alloc = VipAllocator::new();
    let b = catalog([(&k, &v)], &mut alloc).unwrap();
    let text: Vec<String> = b.warnings.iter().map(ToString::to_string).collect();
    assert!(
        text.iter()
            .any(|w| w.contains("ports[0]") && w.contains("merp:0")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|w| w.contains("ports[1]: a port without a number")),
        "{text:?}"
    );
    assert!(
        text.iter().all(|w| w.starts_with("task app.6e53a5c1")),
        "{text:?}"
    );
    assert_eq!(b.catalog.services.services.len(), 1);
}

#[test]
fn app_paths_give_back_the_task_name() {
    use crate::dns::names::marathon_task_name;
    for (name, path) in [
        ("app.group", "/group/app"),
        ("hello-0-server", "/hello-0-server"),
        ("a/b", "/ab"),
    ] {
        assert_eq!(app_path(name), path);
        assert_eq!(marathon_task_name(path), name.replace('/', ""));
    }
}
