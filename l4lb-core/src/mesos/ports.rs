//! A task's ports, as dcos-net derives them (`handle_task_ports`): three
//! sources merged in a fixed order, then, for a task on the agent's own
//! address, folded onto host ports.
//! 1. port mappings: `container.network_infos` (else the latest status's)
//!    for MESOS containers, `container.docker.port_mappings` for DOCKER;
//! 2. the legacy `VIP_PORT<n>` task labels (`tcp://name:port`), on the
//!    n-th port of the task's `ports` resources;
//! 3. `discovery.ports` with their `VIP_*` labels and `network-scope`
//!    (`host`: the number is a host port); a task object without discovery
//!    ports (a TASK_UPDATED) reuses the ports it had.
//!
//! The list order is dcos-net's (its tests compare lists), so the merges
//! below keep its exact shape.

use super::{
    api::{DiscoveryPort, Label, PortMapping, Resource, Task},
    task::{Record, Ref, TaskPort, TaskState, latest_status},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

/// Most ports one task's resources expand to (a guard against a huge range:
/// 65536 is every port there is).
const MAX_RESOURCE_PORTS: usize = 65536;

/// The task's ports; an error leaves the previous ones in place.
pub fn task_ports(task: &Task, acc: &Record) -> Result<Vec<TaskPort>, String> {
    let mappings = port_mappings(task)?;
    let resources = port_resources(task)?;
    let discovery = discovery_ports(task, &acc.ports)?;
    let merged = merge_lists(merge_lists(mappings, resources), discovery);
    host_ports(acc, merged)
}

/// `tcp`/`udp` in any case; another value skips the port (`Ok(None)`); no
/// protocol at all is an error.
fn protocol(raw: Option<&str>) -> Result<Option<Protocol>, String> {
    let raw = raw.ok_or("a port without a protocol")?;
    Ok(match raw.to_ascii_lowercase().as_str() {
        "tcp" => Some(Protocol::Tcp),
        "udp" => Some(Protocol::Udp),
        _ => None,
    })
}

fn port_number(n: Option<u64>, what: &str) -> Result<u16, String> {
    let n = n.ok_or_else(|| format!("a port without {what}"))?;
    u16::try_from(n).map_err(|_| format!("{what} {n} is not a port"))
}

fn port_mappings(task: &Task) -> Result<Vec<TaskPort>, String> {
    let container = task.container.as_ref();
    let mappings: Vec<&PortMapping> = match container.and_then(|c| c.kind.as_deref()) {
        None | Some("MESOS") => {
            let (status, _) = latest_status(task)?;
            let infos = container
                .and_then(|c| c.network_infos.as_deref())
                .or(status.and_then(|s| s.network_infos.as_deref()))
                .unwrap_or(&[]);
            infos
                .iter()
                .flat_map(|i| i.port_mappings.iter().flatten())
                .collect()
        }
        Some("DOCKER") => container
            .and_then(|c| c.docker.as_ref())
            .and_then(|d| d.port_mappings.as_ref())
            .into_iter()
            .flatten()
            .collect(),
        Some(other) => return Err(format!("container type {other:?}")),
    };
    let mut out = Vec::new();
    for m in mappings {
        let port = port_number(m.container_port, "container_port")?;
        let host_port = port_number(m.host_port, "host_port")?;
        if let Some(protocol) = protocol(m.protocol.as_deref())? {
            out.push(TaskPort {
                name: None,
                protocol,
                port: Some(port),
                host_port: Some(host_port),
                vip: Vec::new(),
            });
        }
    }
    Ok(out)
}

/// `VIP_PORT<n>` labels (key case-insensitive): `tcp://…`/`udp://…` on the
/// n-th (from 0) resource port, as a host port.
fn port_resources(task: &Task) -> Result<Vec<TaskPort>, String> {
    let labels = task
        .labels
        .as_ref()
        .map(|l| l.labels.as_slice())
        .unwrap_or(&[]);
    let resources = task.resources.as_deref().unwrap_or(&[]);
    let mut out = Vec::new();
    for label in labels {
        let (Some(key), Some(value)) = (&label.key, &label.value) else {
            return Err("a task label without key or value".into());
        };
        let Some(idx) = vip_port_index(key) else {
            continue;
        };
        let (protocol, vip) = if let Some(v) = value.strip_prefix("tcp://") {
            (Protocol::Tcp, v)
        } else if let Some(v) = value.strip_prefix("udp://") {
            (Protocol::Udp, v)
        } else {
            continue;
        };
        let host_port = nth_resource_port(resources, idx)
            .ok_or_else(|| format!("{key}: the task has no port {idx}"))?;
        out.push(TaskPort {
            name: None,
            protocol,
            port: None,
            host_port: Some(host_port),
            vip: vec![vip.to_owned()],
        });
    }
    Ok(out)
}

/// `vip_port<n>` (any case), n ≥ 0.
fn vip_port_index(key: &str) -> Option<usize> {
    let rest = key
        .get(..8)?
        .eq_ignore_ascii_case("vip_port")
        .then(|| &key[8..])?;
    let digits = rest.strip_prefix('+').unwrap_or(rest);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The `ports` resources, in order: RANGES expanded, SCALAR as one port.
fn port_values(resources: &[Resource]) -> impl Iterator<Item = u64> + '_ {
    resources
        .iter()
        .filter(|r| r.name.as_deref() == Some("ports"))
        .flat_map(|r| -> Box<dyn Iterator<Item = u64>> {
            match (r.kind.as_deref(), &r.ranges, &r.scalar) {
                (Some("RANGES"), Some(ranges), _) => {
                    Box::new(ranges.range.iter().flat_map(|g| g.begin..=g.end))
                }
                (Some("SCALAR"), _, Some(s)) if s.value.fract() == 0.0 && s.value >= 0.0 => {
                    Box::new(std::iter::once(s.value as u64))
                }
                _ => Box::new(std::iter::empty()),
            }
        })
}

fn nth_resource_port(resources: &[Resource], idx: usize) -> Option<u16> {
    port_values(resources)
        .take(MAX_RESOURCE_PORTS)
        .nth(idx)
        .and_then(|p| u16::try_from(p).ok())
}

/// Every resource port (capped), for Mesos-DNS's SRV records.
pub fn resource_ports(resources: &[Resource]) -> Vec<u16> {
    port_values(resources)
        .take(MAX_RESOURCE_PORTS)
        .filter_map(|p| u16::try_from(p).ok())
        .collect()
}

/// `discovery.ports.ports`, or, when the object has none, the ports the
/// task already had.
fn discovery_ports(task: &Task, prev: &[TaskPort]) -> Result<Vec<TaskPort>, String> {
    let listed = task
        .discovery
        .as_ref()
        .and_then(|d| d.ports.as_ref())
        .and_then(|p| p.ports.as_ref());
    let Some(listed) = listed else {
        return Ok(prev.to_vec());
    };
    let mut out = Vec::new();
    for p in listed {
        if let Some(port) = discovery_port(p)? {
            out.push(port);
        }
    }
    out.retain(|p| p.port != Some(0));
    Ok(out)
}

fn discovery_port(p: &DiscoveryPort) -> Result<Option<TaskPort>, String> {
    let number = port_number(p.number, "number")?;
    let labels = p
        .labels
        .as_ref()
        .map(|l| l.labels.as_slice())
        .unwrap_or(&[]);
    let host_scope = host_scope(labels)?;
    let Some(protocol) = protocol(p.protocol.as_deref())? else {
        return Ok(None);
    };
    Ok(Some(TaskPort {
        name: Some(p.name.clone().unwrap_or_else(|| "default".into())),
        protocol,
        port: (!host_scope).then_some(number),
        host_port: host_scope.then_some(number),
        vip: vip_labels(labels),
    }))
}

/// Values of labels whose key starts with `VIP` or `vip`.
fn vip_labels(labels: &[Label]) -> Vec<String> {
    labels
        .iter()
        .filter_map(|l| match (&l.key, &l.value) {
            (Some(k), Some(v)) if k.starts_with("VIP") || k.starts_with("vip") => Some(v.clone()),
            _ => None,
        })
        .collect()
}

/// `network-scope`: none or `container` → the number is the task's port,
/// `host` → a host port; anything else (or two of them) is an error.
fn host_scope(labels: &[Label]) -> Result<bool, String> {
    let scopes: Vec<&str> = labels
        .iter()
        .filter(|l| l.key.as_deref() == Some("network-scope"))
        .filter_map(|l| l.value.as_deref())
        .collect();
    match scopes.as_slice() {
        [] | ["container"] => Ok(false),
        ["host"] => Ok(true),
        other => Err(format!("network-scope {other:?}")),
    }
}

/// dcos-net's `merge_task_ports/2`: each port of `first` merged into
/// `second` (the list built so far), in order.
fn merge_lists(first: Vec<TaskPort>, second: Vec<TaskPort>) -> Vec<TaskPort> {
    if first.is_empty() {
        return second;
    }
    first.into_iter().fold(second, merge_into)
}

/// dcos-net's `merge_task_port/3`: the first port of `list` that `a`
/// matches is merged with it (`a` wins) and put first, the ones scanned
/// before it follow reversed, the rest as they were; no match: `a` first,
/// then the whole list reversed.
fn merge_into(list: Vec<TaskPort>, a: TaskPort) -> Vec<TaskPort> {
    let at = list.iter().position(|b| matches(&a, b));
    let mut list = list.into_iter();
    let mut scanned: Vec<TaskPort> = list.by_ref().take(at.unwrap_or(usize::MAX)).collect();
    scanned.reverse();
    let head = match at {
        Some(_) => merge(list.next().expect("matched port"), a),
        None => a,
    };
    std::iter::once(head).chain(scanned).chain(list).collect()
}

/// Same protocol and the same `port`, or the same `host_port`.
fn matches(a: &TaskPort, b: &TaskPort) -> bool {
    a.protocol == b.protocol
        && ((a.port.is_some() && a.port == b.port)
            || (a.host_port.is_some() && a.host_port == b.host_port))
}

/// dcos-net's `merge_ports(A, B)`: B's fields win; both with VIPs: the
/// sorted union.
fn merge(a: TaskPort, b: TaskPort) -> TaskPort {
    let vip = match (a.vip.is_empty(), b.vip.is_empty()) {
        (false, false) => {
            let mut v: Vec<String> = a.vip.into_iter().chain(b.vip).collect();
            v.sort();
            v.dedup();
            v
        }
        (_, false) => b.vip,
        (_, true) => a.vip,
    };
    TaskPort {
        name: b.name.or(a.name),
        protocol: b.protocol,
        port: b.port.or(a.port),
        host_port: b.host_port.or(a.host_port),
        vip,
    }
}

/// A running task whose only IP is its agent's is reached on host ports:
/// each port becomes its host port (when it has one), ports landing on the
/// same (protocol, port) merge (the first seen wins), sorted by that key.
fn host_ports(acc: &Record, ports: Vec<TaskPort>) -> Result<Vec<TaskPort>, String> {
    if matches!(acc.state, Some(TaskState::Preparing | TaskState::Terminal)) {
        return Ok(ports);
    }
    let on_agent = match (&acc.agent, acc.task_ip.as_slice()) {
        (Ref::Known(agent), [ip]) => agent == ip,
        _ => false,
    };
    if !on_agent {
        return Ok(ports);
    }
    let mut by_key: std::collections::BTreeMap<(Protocol, u16), TaskPort> = Default::default();
    for mut p in ports {
        if let Some(h) = p.host_port.take() {
            p.port = Some(h);
        }
        let key = (p.protocol, p.port.ok_or("a port without a number")?);
        let merged = match by_key.remove(&key) {
            Some(seen) => merge(p, seen),
            None => p,
        };
        by_key.insert(key, merged);
    }
    Ok(by_key.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(proto: Protocol, port: Option<u16>, host: Option<u16>, vip: &[&str]) -> TaskPort {
        TaskPort {
            name: None,
            protocol: proto,
            port,
            host_port: host,
            vip: vip.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn merge_into_keeps_dcos_nets_order() {
        use Protocol::Tcp;
        let list = vec![
            port(Tcp, Some(1), None, &[]),
            port(Tcp, Some(2), None, &[]),
            port(Tcp, Some(3), None, &["b"]),
            port(Tcp, Some(4), None, &[]),
        ];
        let got = merge_into(list.clone(), port(Tcp, Some(3), Some(30), &["a"]));
        let ports: Vec<_> = got.iter().map(|p| p.port.unwrap()).collect();
        assert_eq!(ports, [3, 2, 1, 4]);
        assert_eq!(got[0].host_port, Some(30));
        assert_eq!(got[0].vip, ["a", "b"]);
        let got = merge_into(list, port(Tcp, Some(9), None, &[]));
        let ports: Vec<_> = got.iter().map(|p| p.port.unwrap()).collect();
        assert_eq!(ports, [9, 4, 3, 2, 1]);
    }

    #[test]
    fn vip_port_labels_are_read_as_dcos_net_reads_them() {
        assert_eq!(vip_port_index("VIP_PORT0"), Some(0));
        assert_eq!(vip_port_index("vip_port12"), Some(12));
        assert_eq!(vip_port_index("Vip_Port+1"), Some(1));
        assert_eq!(vip_port_index("VIP_PORT-1"), None);
        assert_eq!(vip_port_index("VIP_PORT"), None);
        assert_eq!(vip_port_index("VIP_0"), None);
    }

    #[test]
    fn resource_ports_expand_ranges_with_a_cap() {
        let r: Vec<Resource> = serde_json::from_str(
            r#"[{"name":"ports","type":"RANGES","ranges":{"range":[{"begin":10,"end":12},{"begin":20,"end":20}]}},
                {"name":"cpus","type":"SCALAR","scalar":{"value":1.5}},
                {"name":"ports","type":"SCALAR","scalar":{"value":31000}},
                {"name":"ports","type":"RANGES","ranges":{"range":[{"begin":0,"end":18446744073709551615}]}}]"#,
        )
        .unwrap();
        let all = resource_ports(&r);
        assert_eq!(&all[..5], [10, 11, 12, 20, 31000]);
        assert!(all.len() <= MAX_RESOURCE_PORTS);
        assert_eq!(nth_resource_port(&r, 4), Some(31000));
    }
}
