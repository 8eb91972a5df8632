//! An app's networking mode and its ports, whichever field declares them.
use std::collections::BTreeMap;

use crate::declare::{self, Repeats};
use crate::marathon::apps::App;
use crate::model::Proto;

/// How an app's tasks are reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    /// `host`: the agent IP and the task's host ports.
    Host,
    /// `container/bridge`: every mapping has a host port on the agent.
    Bridge,
    /// `container`: the task's own IP, unless a mapping has a `hostPort`.
    Container,
}

/// `networks[0].mode` (an entry without one is `container`, as in Marathon's
/// API), else the legacy `container.docker.network`, else host (Marathon's
/// default).
pub(super) fn networking_mode(app: &App) -> Result<Mode, String> {
    if let Some(net) = app.networks.first() {
        return match net.mode.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("host") => Ok(Mode::Host),
            Some("container/bridge") => Ok(Mode::Bridge),
            Some("container") | None => Ok(Mode::Container),
            Some(_) => Err(format!(
                "networks[0].mode: {:?} is not host, container or container/bridge; app skipped",
                net.mode.as_deref().unwrap_or("")
            )),
        };
    }
    let legacy = app
        .container
        .as_ref()
        .and_then(|c| c.docker.as_ref())
        .and_then(|d| d.network.as_deref());
    match legacy.map(str::to_ascii_uppercase).as_deref() {
        None | Some("HOST") => Ok(Mode::Host),
        Some("BRIDGE") => Ok(Mode::Bridge),
        Some("USER") => Ok(Mode::Container),
        Some(_) => Err(format!(
            "container.docker.network: {:?} is not HOST, BRIDGE or USER; app skipped",
            legacy.unwrap_or("")
        )),
    }
}

/// One port of an app, whatever field it came from.
pub(super) struct PortSpec<'a> {
    /// `portDefinitions[0]`, `container.portMappings[1]`, … for messages.
    pub(super) field: String,
    /// None: the protocol was bad (warned); the port declares no VIPs.
    pub(super) protos: Option<Vec<Proto>>,
    pub(super) name: Option<&'a str>,
    pub(super) labels: &'a BTreeMap<String, String>,
    /// Index into `Task::ports` when the port is mapped on the agent.
    pub(super) host_index: Option<usize>,
    /// The port on the task's own IP, for ports that are not host-mapped
    /// (None if missing or bad: warned, no backends).
    pub(super) container_port: Option<u16>,
}

/// The app's ports in the fields its networking mode uses.
pub(super) fn port_specs<'a>(
    app: &'a App,
    mode: Mode,
    warn: &mut dyn FnMut(String),
) -> Vec<PortSpec<'a>> {
    if mode == Mode::Host {
        return definition_specs(app, warn);
    }
    let Some(container) = &app.container else {
        return Vec::new();
    };
    // Marathon ≥ 1.5 moved the mappings up from `docker`; use whichever is set.
    let (base, mappings) = match &container.docker {
        Some(d) if container.port_mappings.is_empty() && !d.port_mappings.is_empty() => {
            ("container.docker.portMappings", &d.port_mappings)
        }
        _ => ("container.portMappings", &container.port_mappings),
    };
    let mut next_host = 0;
    mappings
        .iter()
        .enumerate()
        .map(|(i, pm)| {
            let field = format!("{base}[{i}]");
            let mapped = mode == Mode::Bridge || pm.host_port.is_some();
            let host_index = mapped.then(|| {
                next_host += 1;
                next_host - 1
            });
            let container_port = if mapped {
                None
            } else {
                container_port(&field, pm.container_port, warn)
            };
            PortSpec {
                protos: protos(&field, pm.protocol.as_deref(), warn),
                field,
                name: pm.name.as_deref(),
                labels: &pm.labels,
                host_index,
                container_port,
            }
        })
        .collect()
}

/// Host networking: the `portDefinitions`, each a host port in order.
fn definition_specs<'a>(app: &'a App, warn: &mut dyn FnMut(String)) -> Vec<PortSpec<'a>> {
    app.port_definitions
        .iter()
        .enumerate()
        .map(|(i, pd)| {
            let field = format!("portDefinitions[{i}]");
            PortSpec {
                protos: protos(&field, pd.protocol.as_deref(), warn),
                field,
                name: pd.name.as_deref(),
                labels: &pd.labels,
                host_index: Some(i),
                container_port: None,
            }
        })
        .collect()
}

/// A mapping's `containerPort` where container networking reaches the task;
/// None when missing or bad (warned): the port has no backends.
fn container_port(field: &str, port: Option<i64>, warn: &mut dyn FnMut(String)) -> Option<u16> {
    let p = port.and_then(port_u16);
    if p.is_none() {
        let why = port.map_or_else(
            || "missing".to_owned(),
            |n| format!("{n} is not a port in 1..=65535"),
        );
        warn(format!(
            "{field}.containerPort: {why}, but container networking reaches \
             the task on it; the port has no backends"
        ));
    }
    p
}

/// A port's protocols; None when bad (warned): the port declares no VIPs.
fn protos(field: &str, p: Option<&str>, warn: &mut dyn FnMut(String)) -> Option<Vec<Proto>> {
    parse_protocols(p)
        .map_err(|m| warn(format!("{field}.protocol: {m}; the port declares no VIPs")))
        .ok()
}

/// A port's protocol list. Marathon accepts `tcp,tcp`: the same as `tcp`.
pub(in crate::marathon) fn parse_protocols(s: Option<&str>) -> Result<Vec<Proto>, String> {
    declare::protocols(s, Repeats::Merge)
}

/// 1..=65535.
pub(in crate::marathon) fn port_u16(n: i64) -> Option<u16> {
    u16::try_from(n).ok().filter(|&p| p != 0)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::marathon::parse::test_util::*;
    use crate::model::{Proto, TaskPort};
    use crate::naming::Family;

    #[test]
    fn bridge_fixture_uses_host_ports() {
        let (p, alloc) = parse_with(BRIDGE_DOCKER);
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        let (v, spec) = only_named(&p, "/shop/web:80");
        assert!(in_v4_range(v.addr.ip()) && v.addr.port() == 80, "{v}");
        assert_eq!(alloc.get(Family::V4, "shopweb.marathon"), Some(v.addr.ip()));
        // Bridge: agent IP + host port, never the 172.17 container address.
        assert_eq!(
            spec.backends,
            backends(&[("10.0.1.11:31001", 1), ("10.0.1.12:31544", 1)])
        );
        // `udp,tcp` on an IP VIP: two VIPs with the second host port.
        let stats = backends(&[("10.0.1.11:31002", 1), ("10.0.1.12:31545", 1)]);
        for proto in [Proto::Tcp, Proto::Udp] {
            let s = &services(&p)[&vip("11.22.33.44:9090", proto)];
            assert_eq!((s.name.as_ref(), &s.backends), (None, &stats));
        }
        assert_eq!(services(&p).len(), 3);

        let t = task(
            &p,
            "shop_web.instance-0a3d9c1f-8e33-11ea-9c1d-0242ac110002._app.1",
        );
        assert_eq!(*t.task_ips, vec![ip("172.17.0.3")]);
        assert_eq!(t.agent_ip, Some(ip("10.0.1.11")));
        assert!(t.host_ports && t.running && t.healthy == Some(true));
        assert_eq!(
            *t.ports,
            vec![
                TaskPort {
                    port: 31001,
                    protocols: [Proto::Tcp].into(),
                    name: Some("http".into())
                },
                TaskPort {
                    port: 31002,
                    protocols: [Proto::Tcp, Proto::Udp].into(),
                    name: Some("stats".into())
                },
            ]
        );
    }

    #[test]
    fn container_mode_ipv6_task() {
        let p = parse(&apps(json!([{
            "id": "/v6app",
            "networks": [{"mode": "container", "name": "dcos6"}],
            "container": {"type": "MESOS", "portMappings": [
                {"containerPort": 8080, "name": "web", "labels": {"VIP_0": "/v6app:80"}}]},
            "tasks": [{"id": "t6", "host": "10.0.1.11", "state": "TASK_RUNNING", "ports": [],
                       "slaveId": "a-S7",
                       "ipAddresses": [{"ipAddress": "fd00::5", "protocol": "IPv6"}]}]
        }])));
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        let (v, spec) = only_named(&p, "/v6app:80");
        assert!(in_v6_range(v.addr.ip()) && v.addr.port() == 80, "{v}");
        assert_eq!(spec.backends, backends(&[("[fd00::5]:8080", 1)]));
        let t = task(&p, "t6");
        assert!(!t.host_ports);
        assert_eq!(*t.task_ips, vec![ip("fd00::5")]);
        assert_eq!(t.agent_ip, Some(ip("10.0.1.11")));
        assert_eq!(t.ports[0].port, 8080);
    }

    #[test]
    fn container_mode_dual_stack_and_ip_vips() {
        let p = parse(&apps(json!([{
            "id": "/dual",
            // No mode: Marathon's default for a network entry is `container`.
            "networks": [{"name": "dcos"}],
            "container": {"portMappings": [
                {"containerPort": 80, "labels": {"VIP_0": "/dual:80", "VIP_1": "12.0.0.1:80",
                                                 "VIP_2": "[fd02::1]:80"}}]},
            "tasks": [{"id": "t", "host": "10.0.1.11", "state": "TASK_RUNNING",
                       "ipAddresses": [{"ipAddress": "9.0.2.5"}, {"ipAddress": "fd00::6"},
                                       {"ipAddress": "9.0.2.99"}]}]
        }])));
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        // A named VIP gets an address in each family its backends have.
        let vips = named(&p, "/dual:80");
        assert_eq!(vips.len(), 2);
        for v in vips {
            let want = if v.addr.is_ipv4() {
                assert!(in_v4_range(v.addr.ip()));
                "9.0.2.5:80"
            } else {
                assert!(in_v6_range(v.addr.ip()));
                "[fd00::6]:80"
            };
            assert_eq!(services(&p)[&v].backends, backends(&[(want, 1)]));
        }
        // An IP VIP takes the task's first address of its own family.
        assert_eq!(
            services(&p)[&vip("12.0.0.1:80", Proto::Tcp)].backends,
            backends(&[("9.0.2.5:80", 1)])
        );
        assert_eq!(
            services(&p)[&vip("[fd02::1]:80", Proto::Tcp)].backends,
            backends(&[("[fd00::6]:80", 1)])
        );
    }

    #[test]
    fn container_mode_with_host_port_uses_agent() {
        // Only mappings with a hostPort consume `ports` entries.
        let p = parse(&apps(json!([{
            "id": "/mixed",
            "networks": [{"mode": "container", "name": "dcos"}],
            "container": {"portMappings": [
                {"containerPort": 80, "labels": {"VIP_0": "/mixed:80"}},
                {"containerPort": 81, "hostPort": 0, "labels": {"VIP_0": "/mixed:81"}}]},
            "tasks": [{"id": "t", "host": "10.0.1.11", "state": "TASK_RUNNING", "ports": [31500],
                       "ipAddresses": [{"ipAddress": "9.0.2.5"}]}]
        }])));
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        assert_eq!(
            only_named(&p, "/mixed:80").1.backends,
            backends(&[("9.0.2.5:80", 1)])
        );
        assert_eq!(
            only_named(&p, "/mixed:81").1.backends,
            backends(&[("10.0.1.11:31500", 1)])
        );
        let t = task(&p, "t");
        assert!(t.host_ports);
        assert_eq!(
            t.ports.iter().map(|p| p.port).collect::<Vec<_>>(),
            [80, 31500]
        );
    }

    #[test]
    fn udp_tcp_makes_two_vips() {
        for proto in ["udp,tcp", "tcp,udp", "UDP, TCP"] {
            let p = parse(&apps(json!([{
                "id": "/dns",
                "portDefinitions": [{"port": 0, "protocol": proto, "labels": {"VIP_0": "/dns:53"}}],
                "tasks": [running("t", "10.0.0.1", &[31053])]
            }])));
            assert!(p.warnings.is_empty(), "{:?}", p.warnings);
            let vips = named(&p, "/dns:53");
            assert_eq!(
                vips.iter().map(|v| v.proto).collect::<Vec<_>>(),
                [Proto::Tcp, Proto::Udp],
                "{proto}"
            );
            assert_eq!(vips[0].addr, vips[1].addr);
            for v in vips {
                assert_eq!(
                    services(&p)[&v].backends,
                    backends(&[("10.0.0.1:31053", 1)])
                );
            }
            assert_eq!(task(&p, "t").ports[0].protocols, [Proto::Tcp, Proto::Udp]);
        }
    }

    #[test]
    fn legacy_docker_port_mappings() {
        let docker = |network: &str| {
            json!({
                "id": format!("/legacy-{}", network.to_lowercase()),
                "container": {"type": "DOCKER", "docker": {"image": "x", "network": network,
                    "portMappings": [{"containerPort": 80, "hostPort": 0, "protocol": "tcp",
                                      "labels": {"VIP_0": format!("/legacy-{}:80", network.to_lowercase())}}]}},
                "tasks": [{"id": format!("t-{network}"), "host": "10.0.1.11", "ports": [31080],
                           "state": "TASK_RUNNING",
                           "ipAddresses": [{"ipAddress": "172.17.0.9"}]}]
            })
        };
        let mut user = docker("USER");
        // USER networking: a mapping without hostPort is reached on the container IP.
        user["container"]["docker"]["portMappings"][0]
            .as_object_mut()
            .unwrap()
            .remove("hostPort");
        user["tasks"][0]["ports"] = json!([]);
        let p = parse(&apps(json!([docker("BRIDGE"), user])));
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        assert_eq!(
            only_named(&p, "/legacy-bridge:80").1.backends,
            backends(&[("10.0.1.11:31080", 1)])
        );
        assert_eq!(
            only_named(&p, "/legacy-user:80").1.backends,
            backends(&[("172.17.0.9:80", 1)])
        );
        assert!(task(&p, "t-BRIDGE").host_ports);
        assert!(!task(&p, "t-USER").host_ports);
    }
}
