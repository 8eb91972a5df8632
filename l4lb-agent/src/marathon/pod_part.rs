//! A Marathon pod (its status: spec + instances) → its part of the catalog,
//! the same kind of part an app makes, so VIPs, named-VIP addresses and DNS
//! come out of one catalog whatever declared them.
//!
//! Rules (what Marathon puts in each container task's DiscoveryInfo, and
//! what dcos-net and Mesos-DNS make of it):
//! - Each container of each instance is one Mesos task. Its DNS name is the
//!   pod's (DiscoveryInfo name = the pod id in hostname form, `/g/web` →
//!   `web.g`), not the container's; its task id is `<instance>.<container>`.
//! - A container's endpoints are its ports: `VIP_*` labels on an endpoint
//!   declare VIPs (`protocol` gives one per protocol), as on an app port.
//! - Backends by networking mode: `host` and `container/bridge` → the agent
//!   (`agentHostname`) and the endpoint's `allocatedHostPort`; `container` →
//!   the instance's addresses (`networks[].addresses`, the endpoint's
//!   `networkNames` only when it names some) and `containerPort`, or the
//!   agent and the allocated host port when the endpoint has a `hostPort`.
//! - Weights from the container's Mesos task state and health: TASK_RUNNING
//!   → 1, or 0 while its health condition (or an endpoint's `healthy`) is
//!   not true, or while its instance is TERMINAL; TASK_KILLING → 0; any
//!   other state: not a backend.
//! - Pod tasks hold no port resources (Marathon gives them to the pod's
//!   executor): no `.slave` SRVs in Mesos-DNS ([`TaskRecord::in_pod`]).
//!
//! Bad input costs the field it is in, with a warning naming the pod and
//! the field; never the other pods.
use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
};

use super::{
    parse::{self, AppPart, PartBuilder, PortVips},
    pods::{ContainerStatus, PodContainer, PodEndpoint, PodInstance, PodSpec, PodStatus},
};
use crate::{
    config::FRAMEWORK,
    model::{Proto, TaskPort, TaskRecord},
    naming::Family,
};

/// How a pod's containers are reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Host,
    Bridge,
    Container,
}

/// `spec.networks[0].mode`; no networks: host (Marathon's default for pods),
/// a network without a mode: container (the API's default).
fn networking_mode(spec: &PodSpec) -> Result<Mode, String> {
    let Some(net) = spec.networks.first() else {
        return Ok(Mode::Host);
    };
    match net.mode.as_deref().map(str::to_ascii_lowercase).as_deref() {
        Some("host") => Ok(Mode::Host),
        Some("container/bridge") => Ok(Mode::Bridge),
        Some("container") | None => Ok(Mode::Container),
        Some(_) => Err(format!(
            "spec.networks[0].mode: {:?} is not host, container or container/bridge; pod skipped",
            net.mode.as_deref().unwrap_or("")
        )),
    }
}

/// One endpoint of the spec, ready for every instance.
struct Endpoint<'a> {
    spec: &'a PodEndpoint,
    /// None: the protocol was bad (warned); no VIPs, no SRV.
    protos: Option<Vec<Proto>>,
    vips: Option<PortVips>,
    /// Reached on the agent at its allocated host port.
    on_agent: bool,
    /// The port on the instance's own addresses, when not on the agent.
    container_port: Option<u16>,
}

/// One container of the spec.
struct Container<'a> {
    spec: &'a PodContainer,
    endpoints: Vec<Endpoint<'a>>,
}

/// The pod's part of the catalog.
pub fn pod_part(pod: &PodStatus) -> AppPart {
    let mut b = PartBuilder::pod(&pod.id);
    build(&mut b, pod);
    b.finish()
}

fn build(b: &mut PartBuilder, pod: &PodStatus) {
    let Some(spec) = &pod.spec else {
        b.warn("spec: missing; pod skipped".into());
        return;
    };
    let mode = match networking_mode(spec) {
        Ok(m) => m,
        Err(w) => return b.warn(w),
    };
    let mut containers: BTreeMap<&str, Container> = BTreeMap::new();
    for (ci, c) in spec.containers.iter().enumerate() {
        if c.name.trim().is_empty() {
            b.warn(format!(
                "spec.containers[{ci}].name: missing; container skipped"
            ));
            continue;
        }
        if containers.contains_key(c.name.as_str()) {
            b.warn(format!(
                "spec.containers[{ci}].name: {:?} twice; the second is skipped",
                c.name
            ));
            continue;
        }
        let endpoints = c
            .endpoints
            .iter()
            .enumerate()
            .map(|(ei, ep)| {
                endpoint(
                    b,
                    mode,
                    &format!("spec.containers[{ci}].endpoints[{ei}]"),
                    ep,
                )
            })
            .collect();
        containers.insert(&c.name, Container { spec: c, endpoints });
    }
    for (ii, inst) in pod.instances.iter().enumerate() {
        add_instance(b, pod, mode, &containers, ii, inst);
    }
}

fn endpoint<'a>(b: &mut PartBuilder, mode: Mode, field: &str, ep: &'a PodEndpoint) -> Endpoint<'a> {
    let joined = ep.protocol.join(",");
    let protos = parse::parse_protocols((!ep.protocol.is_empty()).then_some(joined.as_str()))
        .map_err(|m| {
            b.warn(format!(
                "{field}.protocol: {m}; the endpoint declares no VIPs"
            ))
        })
        .ok();
    let vips = protos
        .as_ref()
        .map(|p| b.port_vips(field.to_owned(), p, &ep.labels));
    let on_agent = mode != Mode::Container || ep.host_port.is_some();
    let container_port = if on_agent {
        None
    } else {
        let p = ep.container_port.and_then(parse::port_u16);
        if p.is_none() {
            let why = ep.container_port.map_or_else(
                || "missing".to_owned(),
                |n| format!("{n} is not a port in 1..=65535"),
            );
            b.warn(format!(
                "{field}.containerPort: {why}, but container networking reaches the \
                 container on it; the endpoint has no backends"
            ));
        }
        p
    };
    Endpoint {
        spec: ep,
        protos,
        vips,
        on_agent,
        container_port,
    }
}

/// True/false from the container's `healthy` condition and its endpoints'
/// `healthy`; a health check without either yet is not healthy; None
/// without a health check.
fn health(spec: Option<&PodContainer>, cs: &ContainerStatus) -> Option<bool> {
    let cond = cs
        .conditions
        .iter()
        .find(|c| c.name == "healthy")
        .map(|c| c.value.eq_ignore_ascii_case("true"));
    let eps: Vec<bool> = cs.endpoints.iter().filter_map(|e| e.healthy).collect();
    if cond.is_none() && eps.is_empty() {
        return spec.is_some_and(|c| c.health_check).then_some(false);
    }
    Some(cond.unwrap_or(true) && eps.iter().all(|&h| h))
}

fn add_instance(
    b: &mut PartBuilder,
    pod: &PodStatus,
    mode: Mode,
    containers: &BTreeMap<&str, Container>,
    ii: usize,
    inst: &PodInstance,
) {
    let at_inst = format!("instances[{ii}] ({})", inst.id);
    let terminal = inst.status.as_deref() == Some("TERMINAL");
    let agent_ip = inst
        .agent_hostname
        .as_deref()
        .and_then(parse::agent_address);
    // Each network's addresses, in order; a bad one costs itself.
    let mut networks: Vec<(Option<&str>, Vec<IpAddr>)> = Vec::new();
    let mut bad_addrs = Vec::new();
    for (ni, n) in inst.networks.iter().enumerate() {
        let mut ips = Vec::new();
        for (ai, a) in n.addresses.iter().enumerate() {
            match a.trim().parse::<IpAddr>() {
                Ok(ip) => ips.push(ip.to_canonical()),
                Err(_) => bad_addrs.push(format!(
                    "{at_inst}.networks[{ni}].addresses[{ai}]: {a:?} is not an IP address"
                )),
            }
        }
        networks.push((n.name.as_deref(), ips));
    }
    let mut task_ips: Vec<IpAddr> = Vec::new();
    for ip in networks.iter().flat_map(|(_, ips)| ips) {
        if !task_ips.contains(ip) {
            task_ips.push(*ip);
        }
    }
    let mut any_serving = false;
    for (ki, cs) in inst.containers.iter().enumerate() {
        let at = format!("{at_inst}.containers[{ki}] ({})", cs.name);
        let c = containers.get(cs.name.as_str());
        let state = cs.status.as_deref().unwrap_or_default();
        let healthy = health(c.map(|c| c.spec), cs);
        let weight = match state {
            "TASK_RUNNING" if terminal || healthy == Some(false) => Some(0),
            "TASK_RUNNING" => Some(1),
            "TASK_KILLING" => Some(0),
            _ => None,
        };
        let serving = weight.is_some();
        any_serving |= serving;
        let task_id = match (
            &cs.container_id,
            inst.id.trim().is_empty(),
            cs.name.is_empty(),
        ) {
            (Some(id), _, _) if !id.trim().is_empty() => id.clone(),
            (_, false, false) => format!("{}.{}", inst.id, cs.name),
            _ => {
                if serving {
                    b.warn(format!(
                        "{at}: no containerId, instance id or name; container skipped"
                    ));
                }
                continue;
            }
        };
        let Some(c) = c else {
            // A container the current spec no longer has (an instance of an
            // older version): a task without known ports.
            b.task(record(
                pod,
                inst,
                &task_id,
                agent_ip,
                &task_ips,
                Vec::new(),
                mode,
                state,
                healthy,
            ));
            continue;
        };
        let warn_serving = |b: &mut PartBuilder, what: String| {
            if serving {
                b.warn(what)
            }
        };
        if agent_ip.is_none() && c.endpoints.iter().any(|e| e.on_agent) {
            warn_serving(
                b,
                match &inst.agent_hostname {
                    Some(h) => format!(
                        "{at_inst}: agentHostname {h:?} is not an IP address (no DNS lookups \
                         here); its host-port backends are left out"
                    ),
                    None => format!(
                        "{at_inst}: agentHostname missing; its host-port backends are left out"
                    ),
                },
            );
        }
        let mut ports = Vec::new();
        for ep in &c.endpoints {
            let name = &ep.spec.name;
            let (port, addrs) = if ep.on_agent {
                let allocated = cs
                    .endpoints
                    .iter()
                    .find(|e| &e.name == name)
                    .and_then(|e| e.allocated_host_port);
                // A fixed host port is the port even when not reported.
                let fixed = ep.spec.host_port.filter(|&p| p != 0);
                let Some(port) = allocated.or(fixed).and_then(parse::port_u16) else {
                    warn_serving(
                        b,
                        format!(
                            "{at}.endpoints: no allocatedHostPort in 1..=65535 for endpoint \
                             {name:?}; no backend for it"
                        ),
                    );
                    continue;
                };
                (
                    port,
                    agent_ip
                        .map(|ip| SocketAddr::new(ip, port))
                        .into_iter()
                        .collect(),
                )
            } else {
                let Some(port) = ep.container_port else {
                    continue;
                };
                let names = &ep.spec.network_names;
                let on: Vec<IpAddr> = networks
                    .iter()
                    .filter(|(n, _)| {
                        names.is_empty() || n.is_some_and(|n| names.iter().any(|x| x == n))
                    })
                    .flat_map(|(_, ips)| ips.iter().copied())
                    .collect();
                // The first address of each family, as for an app's task.
                let addrs: Vec<SocketAddr> = [Family::V4, Family::V6]
                    .into_iter()
                    .filter_map(|f| on.iter().find(|ip| Family::of(**ip) == f))
                    .map(|&ip| SocketAddr::new(ip, port))
                    .collect();
                if addrs.is_empty() {
                    warn_serving(
                        b,
                        format!(
                            "{at_inst}.networks: no address, but endpoint {name:?} is reached \
                             on the instance's own address; no backend for it"
                        ),
                    );
                }
                (port, addrs)
            };
            if let (Some(w), Some(vips)) = (weight, &ep.vips) {
                b.serve(vips, &addrs, w, &at);
            }
            if let Some(protocols) = &ep.protos {
                ports.push(TaskPort {
                    port,
                    protocols: protocols.clone(),
                    name: Some(name.clone()).filter(|n| !n.is_empty()),
                });
            }
        }
        let on_agent = mode != Mode::Container || c.endpoints.iter().any(|e| e.on_agent);
        let mut rec = record(
            pod, inst, &task_id, agent_ip, &task_ips, ports, mode, state, healthy,
        );
        rec.host_ports = on_agent;
        b.task(rec);
    }
    if any_serving {
        for w in bad_addrs {
            b.warn(w);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn record(
    pod: &PodStatus,
    inst: &PodInstance,
    task_id: &str,
    agent_ip: Option<IpAddr>,
    task_ips: &[IpAddr],
    ports: Vec<TaskPort>,
    mode: Mode,
    state: &str,
    healthy: Option<bool>,
) -> TaskRecord {
    TaskRecord {
        app_id: pod.id.clone(),
        task_id: task_id.to_owned(),
        framework: FRAMEWORK.to_owned(),
        agent_id: inst.agent_id.clone().unwrap_or_default(),
        agent_ip,
        task_ips: task_ips.to_vec(),
        ports,
        host_ports: mode != Mode::Container,
        running: state == "TASK_RUNNING",
        healthy,
        in_pod: true,
    }
}
