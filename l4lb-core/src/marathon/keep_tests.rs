//! A set that keeps no task records ([`Keep::ServicesOnly`]) gives the same
//! services, backends, weights, warnings and agent names as one that keeps
//! them, on full reads and on one app re-read, and holds no record.
use std::{path::Path, sync::Arc};

use serde_json::{Value, json};

use super::decode::{AppSet, decode_one_app, decode_one_pod};
use super::parse::{Keep, Parsed};
use crate::hosts::{HostState, HostTable};
use crate::naming::VipAllocator;

pub(super) const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/marathon/");
pub(super) const PEERS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/peer-fixtures/");

pub(super) fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| {
        panic!("{path}: {e} (shared/peer-fixtures must sit beside the checkout)")
    })
}

/// A name that resolves and one that does not, for the apps on named agents.
pub(super) fn hosts() -> HostTable {
    let mut t = HostTable::resolved([("agent-1.example", "198.18.0.9".parse().unwrap())]);
    t.set(
        Arc::from("agent-2.example"),
        HostState::Failed("NXDOMAIN".into()),
    );
    t
}

/// The bench's shape (host networking, `VIP_0`, a MESOS_TCP check), some
/// tasks failing it, killing or staging, some on agents known by name.
pub(super) fn bench_shape(apps: usize, tasks: usize) -> Vec<u8> {
    let task = |i: usize, j: usize| {
        let host = match (i + j) % 7 {
            0 => "agent-1.example".to_owned(),
            1 => "agent-2.example".to_owned(),
            k => format!("127.1.0.{k}"),
        };
        let state = [
            "TASK_RUNNING",
            "TASK_RUNNING",
            "TASK_KILLING",
            "TASK_STAGING",
        ][j % 4];
        json!({"id": format!("app-{i}.instance-{j}._app.1"), "host": host,
               "ports": [31000 + j], "state": state, "slaveId": format!("S{}", j % 3),
               "ipAddresses": [{"ipAddress": "127.1.0.1", "protocol": "IPv4"}],
               "healthCheckResults": [{"alive": !(i + j).is_multiple_of(5)}]})
    };
    let list: Vec<Value> = (0..apps)
        .map(|i| {
            json!({"id": format!("/app-{i}"),
                   "portDefinitions": [{"port": 10000 + i, "protocol": "tcp", "name": "web",
                                        "labels": {"VIP_0": format!("/app-{i}:80")}}],
                   "healthChecks": [{"protocol": "MESOS_TCP", "portIndex": 0}],
                   "tasks": (0..tasks).map(|j| task(i, j)).collect::<Vec<_>>()})
        })
        .collect();
    serde_json::to_vec(&json!({ "apps": list })).unwrap()
}

/// `apps` (and `pods`) read into a set keeping `keep`.
pub(super) fn read_set(keep: Keep, apps: &[u8], pods: Option<&[u8]>) -> AppSet {
    let mut set = AppSet::keeping(keep);
    set.refresh_from_slice(apps).unwrap();
    if let Some(pods) = pods {
        set.refresh_pods_from_slice(pods).unwrap();
    }
    set
}

/// The catalog kept up to date and the whole build, the same both ways.
pub(super) fn catalogs(set: &mut AppSet) -> [Parsed; 2] {
    let (hosts, mut alloc) = (hosts(), VipAllocator::new());
    let kept = set.update_catalog(&mut alloc, &hosts).unwrap();
    let whole = set.catalog_with(&mut VipAllocator::new(), &hosts).unwrap();
    [kept, whole]
}

/// Equal but for the records, which only `full` has.
fn same_but_records(full: &mut AppSet, lean: &mut AppSet, what: &str) {
    assert_eq!(
        (full.keep(), lean.keep()),
        (Keep::Records, Keep::ServicesOnly)
    );
    for (f, l) in catalogs(full).into_iter().zip(catalogs(lean)) {
        assert!(l.catalog.tasks.is_empty(), "{what}: {:?}", l.catalog.tasks);
        same_services(&f, &l, what);
    }
}

/// The same services, warnings and agent names in both.
pub(super) fn same_services(f: &Parsed, other: &Parsed, what: &str) {
    assert_eq!(
        other
            .services
            .as_ref()
            .map(|s| s.iter().collect::<Vec<_>>()),
        f.services.as_ref().map(|s| s.iter().collect::<Vec<_>>()),
        "{what}"
    );
    assert_eq!(other.catalog.services, f.catalog.services, "{what}");
    assert_eq!(other.warnings, f.warnings, "{what}");
    assert_eq!(other.hosts, f.hosts, "{what}");
}

/// Every fixture body the mode tests read: (name, apps, pods).
pub(super) fn fixture_bodies() -> Vec<(String, Vec<u8>, Option<Vec<u8>>)> {
    let pods = read(&format!("{FIXTURES}pods_vips.json"));
    let mut bodies = Vec::new();
    for name in [
        "apps_redis_host.json",
        "apps_bridge_docker.json",
        "apps_malformed.json",
    ] {
        let apps = read(&format!("{FIXTURES}{name}"));
        bodies.push((name.to_owned(), apps.clone(), None));
        bodies.push((format!("{name} + pods_vips.json"), apps, Some(pods.clone())));
    }
    let status = read(&format!("{FIXTURES}pods_status.json"));
    let no_apps = br#"{"apps": []}"#.to_vec();
    bodies.push(("pods_status.json".to_owned(), no_apps, Some(status)));
    for name in ["marathon15_apps.json", "zdd_apps.json"] {
        let path = Path::new(PEERS).join("marathon-lb/tests").join(name);
        bodies.push((name.to_owned(), read(path.to_str().unwrap()), None));
    }
    bodies
}

fn both(apps: &[u8], pods: Option<&[u8]>, what: &str) -> (AppSet, AppSet) {
    let mut full = read_set(Keep::Records, apps, pods);
    let mut lean = read_set(Keep::ServicesOnly, apps, pods);
    same_but_records(&mut full, &mut lean, what);
    let [f, _] = catalogs(&mut full);
    assert!(!f.catalog.tasks.is_empty(), "{what}: a body with tasks");
    (full, lean)
}

#[test]
fn services_are_the_same_without_records() {
    for (name, apps, pods) in fixture_bodies() {
        both(&apps, pods.as_deref(), &name);
    }
    let (full, lean) = both(&bench_shape(40, 5), None, "the bench's shape");
    assert_eq!(full.len(), lean.len());
}

/// The bench's shape, then one app re-read (a task gone, a health flip),
/// then a pod re-read, then the app gone: both sets stay equal but for the
/// records.
#[test]
fn one_app_reread_keeps_the_mode() {
    let first = bench_shape(12, 5);
    let (mut full, mut lean) = both(&first, None, "first read");
    let body = bench_shape(12, 4);
    let v: Value = serde_json::from_slice(&body).unwrap();
    let mut app = v["apps"][3].clone();
    app["tasks"][1]["healthCheckResults"] = json!([{"alive": false}]);
    let one = serde_json::to_vec(&json!({ "app": app })).unwrap();
    for set in [&mut full, &mut lean] {
        assert!(set.replace("/app-3", Some(decode_one_app(&one, "/app-3").unwrap())));
    }
    same_but_records(&mut full, &mut lean, "/app-3 re-read");

    let pods = read(&format!("{FIXTURES}pods_vips.json"));
    let list: Vec<Value> = serde_json::from_slice(&pods).unwrap();
    let pod = serde_json::to_vec(&list[0]).unwrap();
    let id = list[0]["id"].as_str().unwrap();
    for set in [&mut full, &mut lean] {
        assert!(set.replace_pod(id, Some(decode_one_pod(&pod, id).unwrap())));
    }
    same_but_records(&mut full, &mut lean, "a pod re-read");

    for set in [&mut full, &mut lean] {
        assert!(set.replace("/app-3", None));
    }
    same_but_records(&mut full, &mut lean, "/app-3 gone");
    // A re-read equal to what a lean set holds changes nothing.
    let v: Value = serde_json::from_slice(&first).unwrap();
    let again = serde_json::to_vec(&json!({ "app": v["apps"][5] })).unwrap();
    assert!(!lean.replace("/app-5", Some(decode_one_app(&again, "/app-5").unwrap())));
}
