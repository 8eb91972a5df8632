//! Marathon apps (with embedded tasks) → [`Catalog`]: the VIP table dcos-net
//! would build from the same apps, plus the task records DNS needs.
//!
//! Rules (dcos-net's, so both build the same table):
//! - A port declares VIPs with labels whose key starts with `VIP_`
//!   (`/name:port`, `name:port`, `ip:port`, `[v6]:port`); protocol `udp,tcp`
//!   makes one VIP per protocol. Legacy `vip_PORT<n>` labels (`tcp://name:port`)
//!   on the app or a task declare a VIP for the app's n-th port.
//! - Backends follow the networking mode: host-mapped ports (host networking,
//!   bridge, or a container port mapping with `hostPort`) are the agent IP and
//!   the task's host port; other container ports are the task's own IP and the
//!   container port.
//! - TASK_RUNNING weighs 1, or 0 while a health-checked task has no result or
//!   a failing one; TASK_KILLING weighs 0; other tasks are not backends.
//! - Named VIPs are keyed by (name, `marathon`), get one address per backend
//!   family, and gather the backends of every app that declares them.
//! - A VIP (named or IP) with no backend at all is withdrawn, with its name,
//!   as dcos-net does when an app scales to 0; it comes back at the same
//!   address (a hash) with its first task. Backends of weight 0 (killing,
//!   unhealthy) still count: the VIP stays and refuses new connections.
//!
//! Bad input never fails the whole sync unless the body itself is unusable
//! ([`ParseError`]): a bad app, port, label or task is left out with a
//! [`Warning`] naming the app and the field.
//!
//! The steps, one file each: `ports` (networking mode, an app's ports),
//! `labels` (VIP declarations), `task` (one app's tasks → backends and task
//! records), `part` (one app's or pod's share), `catalog` (parts → VIPs,
//! named ones with addresses), `incremental` (the same, kept up to date
//! part by part), `agents` (agents known by name → addresses), `keep`
//! (whether task records are made at all).
use std::{collections::BTreeSet, fmt, sync::Arc};

use crate::hosts::HostTable;
use crate::marathon::apps::App;
use crate::model::Catalog;
use crate::naming::{NamingError, VipAllocator};

mod agents;
mod catalog;
mod declared;
mod group_view;
mod incremental;
mod keep;
mod labels;
mod part;
mod ports;
mod task;
mod task_runs;
#[cfg(test)]
mod test_util;

use catalog::Builder;
pub use incremental::IncrementalCatalog;
pub use keep::Keep;
pub use part::AppPart;
pub(super) use part::NamedAt;
pub(crate) use part::{PartBuilder, PortVips};
pub(super) use ports::{parse_protocols, port_u16};

/// A sync's result: the catalog and what was left out of it, and why.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    pub catalog: Catalog,
    /// `catalog.services` as the persistent map an incremental build keeps
    /// between catalogs (the planner diffs it with the last one); None from
    /// a full build. From `IncrementalCatalog::catalog_map`, the services
    /// are here only (`catalog.services` is empty).
    pub services: Option<crate::model::ServiceMap>,
    pub warnings: Vec<Warning>,
    /// Agent host names the catalog needed (resolved or not): what the
    /// host resolver should follow.
    pub hosts: BTreeSet<Arc<str>>,
}

/// Something left out of the catalog. Displays as
/// `app /redis: portDefinitions[0] label VIP_0: VIP label "/redis:0": port "0" is not an integer in 1..=65535`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// The app (or pod) it is about; None when it has no usable id.
    pub app_id: Option<String>,
    /// The field and the problem.
    pub what: String,
    /// `app_id` is a pod's (`/v2/pods`), not an app's.
    pub pod: bool,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.pod { "pod" } else { "app" };
        match &self.app_id {
            Some(id) => write!(f, "{kind} {id}: {}", self.what),
            None => f.write_str(&self.what),
        }
    }
}

/// The response as a whole is unusable: the caller keeps its last good table.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Not JSON, or cut short.
    #[error("Marathon apps response is not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// JSON, but not `{"apps": [...]}`.
    #[error("Marathon apps response is not {{\"apps\": [...]}}: {0}")]
    Shape(#[source] serde_json::Error),
    /// `/v2/pods/::status` (or one pod's status) is not JSON, cut short, or
    /// not a list of pod statuses (an object).
    #[error("Marathon pods response is not a list of pod statuses: {0}")]
    Pods(#[source] serde_json::Error),
    /// The named-VIP ranges are full (the allocator is left unchanged).
    #[error("allocating named VIP addresses: {0}")]
    Naming(#[from] NamingError),
}

/// Parses a `GET /v2/apps?embed=apps.tasks` body into a catalog. Named VIPs
/// get their addresses from `alloc`: keep one allocator for the source's life
/// so names keep their addresses; names absent from this body are released.
pub fn parse_apps(body: &[u8], alloc: &mut VipAllocator) -> Result<Parsed, ParseError> {
    super::decode::decode_apps(body)?.catalog(alloc)
}

/// Builds the catalog from decoded apps (also for apps that come from
/// somewhere else than `/v2/apps`, and for tests). Same allocator rules as
/// [`parse_apps`]. The result does not depend on the order of `apps` or of
/// their tasks.
pub fn catalog_from_apps(apps: &[App], alloc: &mut VipAllocator) -> Result<Parsed, ParseError> {
    let parts: Vec<AppPart> = apps.iter().map(AppPart::of).collect();
    catalog_from_parts(&parts, &[], alloc)
}

/// The catalog of several apps' parts; `warnings` (apps that were skipped
/// whole) go first. Order-independent like [`catalog_from_apps`].
pub fn catalog_from_parts<'a>(
    parts: impl IntoIterator<Item = &'a AppPart>,
    warnings: &[Warning],
    alloc: &mut VipAllocator,
) -> Result<Parsed, ParseError> {
    catalog_with_hosts(parts, warnings, alloc, &HostTable::default())
}

/// [`catalog_from_parts`] with agents known by name looked up in `hosts`.
pub fn catalog_with_hosts<'a>(
    parts: impl IntoIterator<Item = &'a AppPart>,
    warnings: &[Warning],
    alloc: &mut VipAllocator,
    hosts: &HostTable,
) -> Result<Parsed, ParseError> {
    let mut b = Builder {
        warnings: warnings.to_vec(),
        ..Builder::default()
    };
    for p in parts {
        b.add_part(p);
    }
    b.resolve_agents(hosts);
    b.finish(alloc)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::test_util::*;
    use super::*;
    use crate::declare::FRAMEWORK;
    use crate::model::{Proto, TaskPort, TaskRecord};
    use crate::naming::{self, Family, VipAllocator};

    #[test]
    fn fixture_copies_match_shared() {
        // CI lays shared/ beside the checkout; the copies must not drift.
        let shared = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/fixtures/marathon/"
        );
        for (name, copy) in [
            ("apps_redis_host.json", REDIS_HOST),
            ("apps_bridge_docker.json", BRIDGE_DOCKER),
        ] {
            match std::fs::read_to_string(format!("{shared}{name}")) {
                Ok(orig) => assert_eq!(orig, copy, "{name} differs from shared/"),
                Err(e) => eprintln!("shared/ fixture {name} not found ({e}); copy not compared"),
            }
        }
    }

    #[test]
    fn redis_host_fixture() {
        let (p, alloc) = parse_with(REDIS_HOST);
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        assert_eq!(services(&p).len(), 1);
        let (v, spec) = only_named(&p, "/redis:6379");
        assert_eq!(
            naming::vip_fqdn("/redis", FRAMEWORK).as_deref(),
            Some("redis.marathon.l4lb.thisdcos.directory")
        );
        // dcos-net's address for redis.marathon (phash2, naming's vectors).
        assert_eq!(v, vip("11.202.66.162:6379", Proto::Tcp));
        assert_eq!(alloc.get(Family::V4, "redis.marathon"), Some(v.addr.ip()));
        // Host networking: agent IP + host port; the third task fails its check.
        assert_eq!(
            spec.backends,
            backends(&[
                ("10.0.1.11:31256", 1),
                ("10.0.1.12:31877", 1),
                ("10.0.1.13:31090", 0)
            ])
        );

        assert_eq!(p.catalog.tasks.len(), 3);
        let t = task(
            &p,
            "redis.instance-6f1c0b1e-8e2a-11ea-9c1d-0242ac110002._app.1",
        );
        assert_eq!(
            *t,
            TaskRecord {
                app_id: "/redis".into(),
                task_id: "redis.instance-6f1c0b1e-8e2a-11ea-9c1d-0242ac110002._app.1".into(),
                framework: "marathon".into(),
                agent_id: "5d5a0c9e-1b2f-4f0e-9d1c-3c2b1a0f9e8d-S1".into(),
                agent_ip: Some(ip("10.0.1.11")),
                task_ips: [ip("10.0.1.11")].into(),
                ports: vec![TaskPort {
                    port: 31256,
                    protocols: [Proto::Tcp].into(),
                    name: Some("redis".into())
                }]
                .into(),
                host_ports: true,
                running: true,
                healthy: Some(true),
                in_pod: false,
                zone: Some("us-east-1a".into()),
            }
        );
        let t = task(
            &p,
            "redis.instance-6f1c5941-8e2a-11ea-9c1d-0242ac110002._app.1",
        );
        assert_eq!((t.running, t.healthy), (true, Some(false)));
        assert_eq!(t.zone.as_deref(), Some("us-east-1c"));
    }

    #[test]
    fn malformed_inputs_warn_and_the_rest_applies() {
        let (p, _) = parse_with(MALFORMED);
        for (app, needles) in [
            (
                Some("/noport"),
                &[
                    "portDefinitions[0] label VIP_0",
                    "\"redis\"",
                    "missing \":port\"",
                ][..],
            ),
            (
                Some("/port0"),
                &[
                    "portDefinitions[0] label VIP_0",
                    "\"/redis:0\"",
                    "port \"0\"",
                ],
            ),
            (
                Some("/port70000"),
                &[
                    "portDefinitions[0] label VIP_0",
                    "port \"70000\"",
                    "1..=65535",
                ],
            ),
            (
                Some("/badip"),
                &[
                    "portDefinitions[0] label VIP_1",
                    "\"1.2.3.4:x\"",
                    "port \"x\"",
                ],
            ),
            (
                Some("/emptyname"),
                &[
                    "portDefinitions[0] label VIP_0",
                    "\":80\"",
                    "no letter or digit",
                ],
            ),
            (
                Some("/noports"),
                &[
                    "tasks[0] (noports.1).ports: 0 entries",
                    "portDefinitions[0] needs ports[0]",
                ],
            ),
            (
                None,
                &["apps[7]: expected an app object, got a string; app skipped"],
            ),
            (
                Some("/pdnotlist"),
                &[
                    "portDefinitions: invalid type",
                    "expected a sequence",
                    "app skipped",
                ],
            ),
            (
                Some("/badproto"),
                &["portDefinitions[0].protocol: unknown protocol \"sctp\""],
            ),
            (
                Some("/badmode"),
                &["networks[0].mode: \"overlay\"", "app skipped"],
            ),
            (
                Some("/nocport"),
                &["container.portMappings[0].containerPort: missing"],
            ),
            (
                Some("/badlegacy"),
                &["tasks[0] (badlegacy.1) label vip_PORT0", "not tcp://"],
            ),
            (
                Some("/badlegacy"),
                &["tasks[0] (badlegacy.1) label vip_PORT5", "no port 5"],
            ),
            (None, &["apps[16].id: missing; app skipped"]),
            (
                Some("/tasksbad"),
                &["tasks: invalid type: map, expected a sequence; app skipped"],
            ),
            (
                Some("/cport0"),
                &["container.portMappings[0].containerPort: 0 is not a port in 1..=65535"],
            ),
            (
                Some("/badtaskip"),
                &["tasks[0] (badtaskip.1).ipAddresses[0].ipAddress: \"9.0.0.300\""],
            ),
            (
                Some("/unspec"),
                &["VIP_0", "0.0.0.0 is the unspecified address"],
            ),
        ] {
            warned(&p, app, needles);
        }
        // Display names the app first.
        assert!(
            p.warnings.iter().any(|w| w
                .to_string()
                .starts_with("app /port70000: portDefinitions[0] label VIP_0: ")),
            "{:?}",
            p.warnings
        );
        // The good app, and the good ports of partly bad apps, still apply.
        assert_eq!(
            only_named(&p, "/ok:80").1.backends,
            backends(&[("10.0.0.1:31000", 1)])
        );
        assert_eq!(
            only_named(&p, "/badip-ok:81").1.backends,
            backends(&[("10.0.0.2:31001", 1)])
        );
        // A bad task address is skipped, the next one of its family is used.
        assert_eq!(
            only_named(&p, "/badtaskip:80").1.backends,
            backends(&[("9.0.0.8:80", 1)])
        );
        // A task whose agent is a name keeps its record; with the name not
        // looked up yet (no resolver here) its host-port VIP has no backend,
        // so no VIP, and no warning: the resolver is asked for it.
        assert!(named(&p, "/hostname:80").is_empty());
        assert_eq!(task(&p, "hostname.1").agent_ip, None);
        assert!(p.hosts.contains("agent-3.example.com"));
        assert!(!p.warnings.iter().any(|w| w.to_string().contains("agent-3")));
        // Skipped apps leave no tasks behind.
        assert!(
            p.catalog
                .tasks
                .iter()
                .all(|t| &*t.app_id != "/pdnotlist" && &*t.app_id != "/badmode")
        );
        // Every warning names an app or an index.
        for w in &p.warnings {
            assert!(w.app_id.is_some() || w.what.starts_with("apps["), "{w}");
        }
    }

    #[test]
    fn body_level_errors() {
        let mut alloc = VipAllocator::new();
        let err =
            |body: &str, alloc: &mut VipAllocator| parse_apps(body.as_bytes(), alloc).unwrap_err();
        assert!(matches!(
            err("<html>502</html>", &mut alloc),
            ParseError::Json(_)
        ));
        assert!(matches!(err("", &mut alloc), ParseError::Json(_)));
        let cut = &REDIS_HOST[..REDIS_HOST.len() / 2];
        let e = err(cut, &mut alloc);
        assert!(matches!(e, ParseError::Json(_)), "{e}");
        assert!(e.to_string().contains("not valid JSON"), "{e}");
        for shape in ["{}", "[]", "{\"apps\": null}", "{\"apps\": {}}", "3"] {
            let e = err(shape, &mut alloc);
            assert!(matches!(e, ParseError::Shape(_)), "{shape}: {e}");
        }
        assert!(
            err("{}", &mut alloc)
                .to_string()
                .contains("missing field `apps`")
        );
        let p = parse_apps(b"{\"apps\": []}", &mut alloc).unwrap();
        assert_eq!(p, Parsed::default());
    }

    #[test]
    fn failed_sync_keeps_allocations() {
        let mut alloc = VipAllocator::new();
        parse_apps(REDIS_HOST.as_bytes(), &mut alloc).unwrap();
        parse_apps(b"{", &mut alloc).unwrap_err();
        assert!(alloc.get(Family::V4, "redis.marathon").is_some());
    }

    #[test]
    fn order_independent() {
        let mut all: Vec<Value> = Vec::new();
        for text in [REDIS_HOST, BRIDGE_DOCKER, MALFORMED] {
            let v: Value = serde_json::from_str(text).unwrap();
            all.extend(v["apps"].as_array().unwrap().iter().cloned());
        }
        all.push(host_app(
            "/dup",
            "/redis:6379",
            json!([running("d1", "10.9.9.9", &[30000])]),
        ));
        let fwd = parse(&apps(Value::Array(all.clone())));
        let mut rev = all;
        rev.reverse();
        for app in &mut rev {
            if let Some(tasks) = app.get_mut("tasks").and_then(Value::as_array_mut) {
                tasks.reverse();
            }
        }
        let back = parse(&apps(Value::Array(rev)));
        assert_eq!(fwd.catalog, back.catalog);
        assert_eq!(fwd.warnings.len(), back.warnings.len());
        assert!(services(&fwd).len() > 5);
    }
}
