//! Helpers shared by the parse tests: fixtures, a parse with a fresh
//! allocator, and lookups into the result.
use std::net::{IpAddr, SocketAddr};

use serde_json::{Value, json};

use super::{Parsed, parse_apps};
use crate::model::{Proto, ServiceSpec, TaskRecord, Vip};
use crate::naming::VipAllocator;

/// The shared fixtures, copied into the repo so tests need nothing outside it.
pub(super) const REDIS_HOST: &str =
    include_str!("../../../tests/fixtures/marathon/apps_redis_host.json");
pub(super) const BRIDGE_DOCKER: &str =
    include_str!("../../../tests/fixtures/marathon/apps_bridge_docker.json");
pub(super) const MALFORMED: &str =
    include_str!("../../../tests/fixtures/marathon/apps_malformed.json");

pub(super) fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub(super) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub(super) fn backends(list: &[(&str, u32)]) -> crate::model::Backends {
    list.iter().map(|(a, w)| (sa(a), *w)).collect()
}

pub(super) fn parse_with(body: &str) -> (Parsed, VipAllocator) {
    let mut alloc = VipAllocator::new();
    let p = parse_apps(body.as_bytes(), &mut alloc).unwrap();
    (p, alloc)
}

pub(super) fn parse(body: &str) -> Parsed {
    parse_with(body).0
}

pub(super) fn apps(list: Value) -> String {
    json!({ "apps": list }).to_string()
}

pub(super) fn services(p: &Parsed) -> &crate::model::ServiceMap {
    &p.catalog.services.services
}

/// The VIPs (address/protocol) the named VIP with this label value got.
pub(super) fn named(p: &Parsed, label: &str) -> Vec<Vip> {
    services(p)
        .iter()
        .filter(|(_, s)| s.name.as_deref() == Some(label))
        .map(|(v, _)| *v)
        .collect()
}

pub(super) fn only_named(p: &Parsed, label: &str) -> (Vip, ServiceSpec) {
    let vips = named(p, label);
    assert_eq!(vips.len(), 1, "{label}: {vips:?}");
    (vips[0], services(p)[&vips[0]].clone())
}

pub(super) fn vip(addr: &str, proto: Proto) -> Vip {
    Vip {
        addr: sa(addr),
        proto,
    }
}

pub(super) fn in_v4_range(a: IpAddr) -> bool {
    matches!(a, IpAddr::V4(v) if v.octets()[0] == 11)
}

pub(super) fn in_v6_range(a: IpAddr) -> bool {
    matches!(a, IpAddr::V6(v) if v.segments()[..4] == [0xfd01, 0xc, 0, 0])
}

pub(super) fn task<'a>(p: &'a Parsed, id: &str) -> &'a TaskRecord {
    p.catalog.tasks.iter().find(|t| *t.task_id == *id).unwrap()
}

/// Some warning is about `app` and contains every needle.
#[track_caller]
pub(super) fn warned(p: &Parsed, app: Option<&str>, needles: &[&str]) {
    let hit = p.warnings.iter().any(|w| {
        let s = w.to_string();
        w.app_id.as_deref() == app && needles.iter().all(|n| s.contains(n))
    });
    assert!(
        hit,
        "no warning for {app:?} with {needles:?} in:\n{}",
        p.warnings
            .iter()
            .map(|w| format!("  {w}\n"))
            .collect::<String>()
    );
}

pub(super) fn running(id: &str, host: &str, ports: &[u16]) -> Value {
    json!({"id": id, "host": host, "ports": ports, "state": "TASK_RUNNING",
           "slaveId": "agent-S1", "ipAddresses": [{"ipAddress": host, "protocol": "IPv4"}]})
}

pub(super) fn host_app(id: &str, label: &str, tasks: Value) -> Value {
    json!({"id": id, "portDefinitions": [{"port": 0, "labels": {"VIP_0": label}}], "tasks": tasks})
}
