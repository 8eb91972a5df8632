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
    parse::{self, AppPart, Keep, NamedAt, PartBuilder, PortVips},
    pods::{ContainerStatus, PodContainer, PodEndpoint, PodInstance, PodSpec, PodStatus},
};
use crate::{
    declare::FRAMEWORK,
    hosts::{AgentAt, parse_agent_host, pick_agent_addr},
    model::{Proto, Protocols, TaskPort, TaskRecord},
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

/// The pod's part of the catalog, its instances' records kept if `keep`
/// says so (they are made either way: pods are few).
pub fn pod_part(pod: &PodStatus, keep: Keep) -> AppPart {
    let mut b = PartBuilder::pod(&pod.id, keep);
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
    let at = format!("instances[{ii}] ({})", inst.id);
    let (networks, bad_addrs) = networks(inst, &at);
    let i = Instance::new(pod, inst, mode, at, networks);
    let mut any_serving = false;
    for (ki, cs) in inst.containers.iter().enumerate() {
        any_serving |= add_container(b, &i, containers, ki, cs);
    }
    if any_serving {
        for w in bad_addrs {
            b.warn(w);
        }
    }
}

/// An instance as its containers' records and backends need it.
struct Instance<'a> {
    pod: &'a PodStatus,
    inst: &'a PodInstance,
    mode: Mode,
    /// `instances[i] (id)`, for warnings.
    at: String,
    /// TERMINAL: its running containers stay, with weight 0.
    terminal: bool,
    networks: Networks<'a>,
    /// Every address of every network once, in order.
    task_ips: Vec<IpAddr>,
    agent_ip: Option<IpAddr>,
    /// An agent known by name: its address comes from the host table;
    /// under host networking the instance's addresses are the agent's
    /// meanwhile.
    named: Option<NamedAt>,
}

/// Each network's name and addresses, in order.
type Networks<'a> = Vec<(Option<&'a str>, Vec<IpAddr>)>;

/// The instance's networks, and a warning for each bad address (a bad
/// address costs itself).
fn networks<'a>(inst: &'a PodInstance, at_inst: &str) -> (Networks<'a>, Vec<String>) {
    let mut networks = Vec::new();
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
    (networks, bad_addrs)
}

impl<'a> Instance<'a> {
    fn new(
        pod: &'a PodStatus,
        inst: &'a PodInstance,
        mode: Mode,
        at: String,
        networks: Networks<'a>,
    ) -> Instance<'a> {
        let mut task_ips: Vec<IpAddr> = Vec::new();
        for ip in networks.iter().flat_map(|(_, ips)| ips) {
            if !task_ips.contains(ip) {
                task_ips.push(*ip);
            }
        }
        let agent = inst.agent_hostname.as_deref().map(parse_agent_host);
        let agent_ip = match &agent {
            Some(Some(AgentAt::Ip(ip))) => Some(*ip),
            _ => None,
        };
        let named = match agent {
            Some(Some(AgentAt::Name(host))) => Some(NamedAt {
                host,
                fallback: (mode == Mode::Host)
                    .then(|| pick_agent_addr(task_ips.iter().copied()))
                    .flatten(),
            }),
            _ => None,
        };
        Instance {
            pod,
            inst,
            mode,
            at,
            terminal: inst.status.as_deref() == Some("TERMINAL"),
            networks,
            task_ips,
            agent_ip,
            named,
        }
    }

    fn record(
        &self,
        task_id: &str,
        ports: Vec<TaskPort>,
        state: &str,
        healthy: Option<bool>,
    ) -> TaskRecord {
        record(
            self.pod,
            self.inst,
            task_id,
            self.agent_ip,
            &self.task_ips,
            ports,
            self.mode,
            state,
            healthy,
        )
    }
}

/// One container's task record and backends; true if it serves (running
/// or killing), which a skipped container may too.
fn add_container(
    b: &mut PartBuilder,
    i: &Instance,
    containers: &BTreeMap<&str, Container>,
    ki: usize,
    cs: &ContainerStatus,
) -> bool {
    let at = format!("{}.containers[{ki}] ({})", i.at, cs.name);
    let c = containers.get(cs.name.as_str());
    let state = cs.status.as_deref().unwrap_or_default();
    let healthy = health(c.map(|c| c.spec), cs);
    let weight = match state {
        "TASK_RUNNING" if i.terminal || healthy == Some(false) => Some(0),
        "TASK_RUNNING" => Some(1),
        "TASK_KILLING" => Some(0),
        _ => None,
    };
    let serving = weight.is_some();
    let Some(task_id) = task_id(i.inst, cs) else {
        if serving {
            b.warn(format!(
                "{at}: no containerId, instance id or name; container skipped"
            ));
        }
        return serving;
    };
    let Some(c) = c else {
        // A container the current spec no longer has (an instance of an
        // older version): a task without known ports.
        b.task(
            i.record(&task_id, Vec::new(), state, healthy),
            i.named.as_ref(),
        );
        return serving;
    };
    if serving {
        warn_no_agent(b, i, c);
    }
    let mut ports = Vec::new();
    for ep in &c.endpoints {
        let Some((port, addrs)) = endpoint_backends(b, i, cs, ep, serving, &at) else {
            continue;
        };
        if let (Some(w), Some(vips)) = (weight, &ep.vips) {
            b.serve(vips, &addrs, w, &at);
            if let Some(a) = i.named.as_ref().filter(|_| ep.on_agent) {
                b.serve_on_agent(vips, a, port, w);
            }
        }
        if let Some(protocols) = &ep.protos {
            ports.push(TaskPort {
                port,
                protocols: Protocols::new(protocols),
                name: Some(ep.spec.name.as_str())
                    .filter(|n| !n.is_empty())
                    .map(crate::intern::intern),
            });
        }
    }
    let mut rec = i.record(&task_id, ports, state, healthy);
    rec.host_ports = i.mode != Mode::Container || c.endpoints.iter().any(|e| e.on_agent);
    b.task(rec, i.named.as_ref());
    serving
}

/// The container's task id: its containerId, else `instance id.name`.
fn task_id(inst: &PodInstance, cs: &ContainerStatus) -> Option<String> {
    match (
        &cs.container_id,
        inst.id.trim().is_empty(),
        cs.name.is_empty(),
    ) {
        (Some(id), _, _) if !id.trim().is_empty() => Some(id.clone()),
        (_, false, false) => Some(format!("{}.{}", inst.id, cs.name)),
        _ => None,
    }
}

/// Host-port endpoints of an instance whose agent is neither an address
/// nor a name get no backend: said once per serving container.
fn warn_no_agent(b: &mut PartBuilder, i: &Instance, c: &Container) {
    if i.agent_ip.is_some() || i.named.is_some() || !c.endpoints.iter().any(|e| e.on_agent) {
        return;
    }
    let at_inst = &i.at;
    b.warn(match &i.inst.agent_hostname {
        Some(h) => format!(
            "{at_inst}: agentHostname {h:?} is neither an IP address nor a host \
             name; its host-port backends are left out"
        ),
        None => format!("{at_inst}: agentHostname missing; its host-port backends are left out"),
    });
}

/// An endpoint's port and backend addresses (None: no port; warned if
/// the container serves).
fn endpoint_backends(
    b: &mut PartBuilder,
    i: &Instance,
    cs: &ContainerStatus,
    ep: &Endpoint,
    serving: bool,
    at: &str,
) -> Option<(u16, Vec<SocketAddr>)> {
    let name = &ep.spec.name;
    let mut warn = |what: String| {
        if serving {
            b.warn(what)
        }
    };
    if ep.on_agent {
        let allocated = cs
            .endpoints
            .iter()
            .find(|e| &e.name == name)
            .and_then(|e| e.allocated_host_port);
        // A fixed host port is the port even when not reported.
        let fixed = ep.spec.host_port.filter(|&p| p != 0);
        let Some(port) = allocated.or(fixed).and_then(parse::port_u16) else {
            warn(format!(
                "{at}.endpoints: no allocatedHostPort in 1..=65535 for endpoint \
                 {name:?}; no backend for it"
            ));
            return None;
        };
        let addrs = i.agent_ip.map(|ip| SocketAddr::new(ip, port));
        return Some((port, addrs.into_iter().collect()));
    }
    let port = ep.container_port?;
    let names = &ep.spec.network_names;
    let on: Vec<IpAddr> = i
        .networks
        .iter()
        .filter(|(n, _)| names.is_empty() || n.is_some_and(|n| names.iter().any(|x| x == n)))
        .flat_map(|(_, ips)| ips.iter().copied())
        .collect();
    // The first address of each family, as for an app's task.
    let addrs: Vec<SocketAddr> = [Family::V4, Family::V6]
        .into_iter()
        .filter_map(|f| on.iter().find(|ip| Family::of(**ip) == f))
        .map(|&ip| SocketAddr::new(ip, port))
        .collect();
    if addrs.is_empty() {
        warn(format!(
            "{}.networks: no address, but endpoint {name:?} is reached \
             on the instance's own address; no backend for it",
            i.at
        ));
    }
    Some((port, addrs))
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
        app_id: crate::intern::intern(&pod.id),
        task_id: task_id.into(),
        framework: crate::intern::intern(FRAMEWORK),
        agent_id: crate::intern::intern(inst.agent_id.as_deref().unwrap_or_default()),
        agent_ip,
        task_ips: task_ips.into(),
        ports: ports.into_boxed_slice(),
        host_ports: mode != Mode::Container,
        running: state == "TASK_RUNNING",
        healthy,
        in_pod: true,
        zone: None,
    }
}

#[cfg(test)]
mod tests {
    //! The pods of the peers' own test inputs, as Marathon's
    //! `/v2/pods/::status` shows the same clusters
    //! (`tests/fixtures/marathon/pods_status.json`, `pods_vips.json`).
    use std::collections::BTreeSet;

    use hickory_proto::rr::{LowerName, Name, RData};
    use serde_json::json;

    use super::*;
    use crate::{
        dns::{
            names,
            records::{Lookup, ZoneOptions, Zones, build_zones},
        },
        marathon::{
            decode::{AppSet, decode_one_pod, decode_pods},
            parse::Parsed,
        },
        model::{ServiceSpec, Vip},
        naming::VipAllocator,
    };

    const STATUS: &str = include_str!("../../tests/fixtures/marathon/pods_status.json");
    const VIPS: &str = include_str!("../../tests/fixtures/marathon/pods_vips.json");

    fn parsed(body: &str) -> Parsed {
        decode_pods(body.as_bytes())
            .unwrap()
            .catalog(&mut VipAllocator::new())
            .unwrap()
    }

    /// A pod instance on an agent known by name: its host-port backends and
    /// records take the name's address from the host table, as an app's do;
    /// under host networking the instance's addresses stand in meanwhile.
    #[test]
    fn a_pod_on_an_agent_known_by_name_follows_the_host_table() {
        let pod = |mode: &str| {
            serde_json::json!([{"id": "/web", "spec": {"networks": [{"mode": mode}],
                "containers": [{"name": "a", "endpoints": [{"name": "p", "hostPort": 0,
                    "labels": {"VIP_0": "/web:80"}}]}]},
             "instances": [{"id": "web.instance-1", "agentHostname": "agent-1.example",
                "networks": [{"addresses": ["198.18.0.5"]}],
                "containers": [{"name": "a", "status": "TASK_RUNNING",
                    "endpoints": [{"name": "p", "allocatedHostPort": 31000}]}]}]}])
            .to_string()
        };
        let build = |mode: &str, hosts: &crate::hosts::HostTable| {
            decode_pods(pod(mode).as_bytes())
                .unwrap()
                .catalog_with(&mut VipAllocator::new(), hosts)
                .unwrap()
        };
        let resolved = crate::hosts::HostTable::resolved([("agent-1.example", ip("198.18.0.9"))]);
        for mode in ["host", "container/bridge"] {
            let p = build(mode, &resolved);
            assert_eq!(
                named(&p, "/web:80")[0].1.backends,
                [(sa("198.18.0.9:31000"), 1)].into()
            );
            assert_eq!(p.catalog.tasks[0].agent_ip, Some(ip("198.18.0.9")));
        }
        // Not resolved yet: host networking falls back to the instance's
        // address; a bridge has none to fall back on.
        let empty = crate::hosts::HostTable::default();
        let p = build("host", &empty);
        assert_eq!(
            named(&p, "/web:80")[0].1.backends,
            [(sa("198.18.0.5:31000"), 1)].into()
        );
        assert!(named(&build("container/bridge", &empty), "/web:80").is_empty());
        assert!(p.hosts.contains("agent-1.example"));
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn running<'a>(p: &'a Parsed, pod: &str) -> Vec<&'a TaskRecord> {
        p.catalog
            .tasks
            .iter()
            .filter(|t| *t.app_id == *pod && t.running)
            .map(|t| &**t)
            .collect()
    }

    fn tcp(port: u16, name: &str) -> TaskPort {
        TaskPort {
            port,
            protocols: [Proto::Tcp].into(),
            name: Some(name.into()),
        }
    }

    fn named<'a>(p: &'a Parsed, label: &str) -> Vec<(&'a Vip, &'a ServiceSpec)> {
        p.catalog
            .services
            .services
            .iter()
            .filter(|(_, s)| s.name.as_deref() == Some(label))
            .collect()
    }

    fn lower(s: &str) -> LowerName {
        let mut n = Name::from_ascii(s).unwrap();
        n.set_fqdn(true);
        LowerName::new(&n)
    }

    fn found(z: &Zones, name: &str) -> Vec<RData> {
        match z.lookup(&lower(name)) {
            Lookup::Found(_, r) => r.iter().map(|r| r.data().clone()).collect(),
            other => panic!("{name}: {other:?}"),
        }
    }

    fn addrs(z: &Zones, name: &str) -> BTreeSet<IpAddr> {
        found(z, name)
            .into_iter()
            .filter_map(|d| match d {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })
            .collect()
    }

    fn srvs(z: &Zones, name: &str) -> BTreeSet<(u16, String)> {
        found(z, name)
            .into_iter()
            .filter_map(|d| match d {
                RData::SRV(s) => Some((s.port(), s.target().to_string())),
                _ => None,
            })
            .collect()
    }

    fn absent(z: &Zones, name: &str) {
        assert!(
            matches!(z.lookup(&lower(name)), Lookup::NxDomain(_)),
            "{name} should not exist"
        );
    }

    /// dcos-net `dcos_net_mesos_listener_tests` `pod_tasks` (input
    /// `pod-tasks.json`: pod `/app`, containers `foo` running and `bar`
    /// finished, on the `dcos` network): one task, `foo`, named `app` (the
    /// DiscoveryInfo name, not the container's), agent 172.17.0.3, task IP
    /// 9.0.0.2, no ports.
    #[test]
    fn dcos_net_pod_tasks() {
        let p = parsed(STATUS);
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        let t = running(&p, "/app");
        assert_eq!(t.len(), 1, "{t:?}");
        assert_eq!(
            *t[0],
            TaskRecord {
                app_id: "/app".into(),
                task_id: "app.instance-caff1565-d0db-11e8-aa23-70b3d5800002.foo".into(),
                framework: "marathon".into(),
                agent_id: "8ae294b7-a766-42d6-960c-ad8acf0f0db6-S0".into(),
                agent_ip: Some(ip("172.17.0.3")),
                task_ips: [ip("9.0.0.2")].into(),
                ports: Box::default(),
                host_ports: false,
                running: true,
                healthy: None,
                in_pod: true,
                zone: None,
            }
        );
        // `bar` finished: in the catalog, not running (DNS leaves it out).
        let bar = p
            .catalog
            .tasks
            .iter()
            .find(|t| t.task_id.ends_with(".bar"))
            .unwrap();
        assert!(!bar.running);
        // dcos-net's names for it (dcos_dns_mesos: the task name `app`).
        let z = build_zones(&p.catalog, &BTreeSet::new(), &ZoneOptions::default());
        let d = "dcos.thisdcos.directory";
        assert_eq!(
            addrs(&z, &format!("app.marathon.agentip.{d}")),
            [ip("172.17.0.3")].into()
        );
        assert_eq!(
            addrs(&z, &format!("app.marathon.containerip.{d}")),
            [ip("9.0.0.2")].into()
        );
        assert_eq!(
            addrs(&z, &format!("app.marathon.autoip.{d}")),
            [ip("9.0.0.2")].into()
        );
        // Mesos-DNS: the DiscoveryInfo name too; never the container's.
        assert_eq!(addrs(&z, "app.marathon.mesos"), [ip("172.17.0.3")].into());
        absent(&z, "foo.marathon.mesos");
        absent(&z, "bar.marathon.mesos");
    }

    /// dcos-net `dcos_net_mesos_listener_tests` `pod_on_host`, `pod_on_bridge`
    /// and `pod_on_dcos` (input `operator-api.json`): the port each container
    /// task advertises (DiscoveryInfo), its agent and task addresses.
    #[test]
    fn dcos_net_pods_in_every_networking_mode() {
        let p = parsed(STATUS);
        let one = |pod: &str| {
            let t = running(&p, pod);
            assert_eq!(t.len(), 1, "{pod}: {t:?}");
            t[0]
        };
        // pod_on_host: agent 172.17.0.4, port 28064 (the allocated host port).
        let t = one("/pod-on-host");
        assert_eq!(
            &*t.task_id,
            "pod-on-host.instance-ea1231bf-2930-11e8-96bf-70b3d5800001.app"
        );
        assert_eq!(t.agent_ip, Some(ip("172.17.0.4")));
        assert_eq!(*t.task_ips, [ip("172.17.0.4")]);
        assert_eq!(*t.ports, [tcp(28064, "http")]);
        assert!(t.host_ports);
        // pod_on_bridge: host_port 2254 (advertised) for container port 8080.
        let t = one("/pod-on-bridge");
        assert_eq!(t.agent_ip, Some(ip("172.17.0.3")));
        assert_eq!(*t.task_ips, [ip("172.31.254.4")]);
        assert_eq!(*t.ports, [tcp(2254, "http")]);
        assert!(t.host_ports, "a port mapping: autoip is the agent");
        // pod_on_dcos: container port 8080 on the task's own 9.0.1.3.
        let t = one("/pod-on-dcos");
        assert_eq!(t.agent_ip, Some(ip("172.17.0.3")));
        assert_eq!(*t.task_ips, [ip("9.0.1.3")]);
        assert_eq!(*t.ports, [tcp(8080, "http")]);
        assert!(!t.host_ports);
        assert!(t.in_pod && t.agent_id.ends_with("-S1"));

        let z = build_zones(&p.catalog, &BTreeSet::new(), &ZoneOptions::default());
        let d = "dcos.thisdcos.directory";
        // dcos_dns_mesos task_autoip: the agent when a port maps a host port.
        assert_eq!(
            addrs(&z, &format!("pod-on-bridge.marathon.autoip.{d}")),
            [ip("172.17.0.3")].into()
        );
        assert_eq!(
            addrs(&z, &format!("pod-on-dcos.marathon.autoip.{d}")),
            [ip("9.0.1.3")].into()
        );
        assert_eq!(
            addrs(&z, &format!("pod-on-host.marathon.autoip.{d}")),
            [ip("172.17.0.4")].into()
        );
    }

    /// Mesos-DNS `records/generator.go` taskRecord on the same tasks: a task
    /// with a DiscoveryInfo is named by it (the pod), its DiscoveryInfo ports
    /// make `_<pod>._tcp` SRVs (and named-port ones) to the canonical name,
    /// hashed from the container's task id; a pod task has no port
    /// resources, so no `.slave` SRV.
    #[test]
    fn mesos_dns_names_pod_tasks_by_the_pod() {
        let p = parsed(STATUS);
        let z = build_zones(&p.catalog, &BTreeSet::new(), &ZoneOptions::default());
        let id = "pod-on-host.instance-ea1231bf-2930-11e8-96bf-70b3d5800001.app";
        let canon = format!("pod-on-host-{}-s0.marathon.mesos.", names::task_id_hash(id));
        assert_eq!(
            srvs(&z, "_pod-on-host._tcp.marathon.mesos"),
            [(28064, canon.clone())].into()
        );
        assert_eq!(
            srvs(&z, "_http._pod-on-host._tcp.marathon.mesos"),
            [(28064, canon.clone())].into()
        );
        assert_eq!(
            addrs(&z, canon.trim_end_matches('.')),
            [ip("172.17.0.4")].into()
        );
        assert_eq!(
            addrs(&z, "pod-on-host.marathon.slave.mesos"),
            [ip("172.17.0.4")].into()
        );
        absent(&z, "_pod-on-host._tcp.marathon.slave.mesos");
        absent(&z, "_app._tcp.marathon.mesos");
        let id = "pod-on-dcos.instance-ea1231be-2930-11e8-96bf-70b3d5800001.app";
        let canon = format!("pod-on-dcos-{}-s1.marathon.mesos.", names::task_id_hash(id));
        assert_eq!(
            srvs(&z, "_pod-on-dcos._tcp.marathon.mesos"),
            [(8080, canon)].into()
        );
    }

    /// VIP labels on endpoints, as dcos-net reads them off each container
    /// task's DiscoveryInfo ports and turns them into backends
    /// (`dcos_l4lb_mesos_poller` `backends/2`: a host port → agent:host port,
    /// else every task IP:port), with l4lb's app weights (unhealthy and
    /// killing: 0).
    #[test]
    fn endpoint_vips_in_every_mode() {
        let p = parsed(VIPS);
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        // Container networking, no host port: the instance addresses.
        let api = named(&p, "/shop/api:80");
        assert_eq!(api.len(), 2, "one VIP per family: {api:?}");
        let v4: Vec<_> = api.iter().filter(|(v, _)| v.addr.is_ipv4()).collect();
        assert_eq!(v4[0].0.addr.port(), 80);
        assert_eq!(
            v4[0].1.backends,
            [(sa("9.0.0.10:8080"), 1), (sa("9.0.0.11:8080"), 0)].into()
        );
        let v6: Vec<_> = api.iter().filter(|(v, _)| v.addr.is_ipv6()).collect();
        assert_eq!(v6[0].1.backends, [(sa("[fd01:b::10]:8080"), 1)].into());
        // Container networking with a hostPort: agent + allocated host port.
        let admin = named(&p, "/shop/admin:9000");
        assert_eq!(admin.len(), 1);
        assert_eq!(
            admin[0].1.backends,
            [(sa("10.0.1.21:31005"), 1), (sa("10.0.1.22:31006"), 0)].into()
        );
        // Host networking, udp + tcp: two VIPs; the killing instance at 0.
        let cache = named(&p, "/cache:6379");
        assert_eq!(cache.len(), 2);
        for (v, s) in cache {
            assert_eq!(v.addr.port(), 6379);
            assert_eq!(
                s.backends,
                [(sa("10.0.1.23:31000"), 1), (sa("10.0.1.24:31001"), 0)].into()
            );
        }
        // Every container of an instance is a task; the sidecar too.
        assert_eq!(running(&p, "/shop/api").len(), 4);
        let web = p
            .catalog
            .tasks
            .iter()
            .find(|t| *t.task_id == *"shop_api.instance-5c2f3122-8e3b-11ea-9c1d-0242ac110002.web")
            .unwrap();
        assert_eq!(web.healthy, Some(false));
        assert_eq!(*web.ports, [tcp(8080, "http"), tcp(31006, "admin")]);
        assert!(
            web.host_ports,
            "a host-mapped endpoint: autoip is the agent"
        );
    }

    /// The named VIP's address and DNS name are dcos-net's, whatever declared
    /// it (`dcos_l4lb_lashup_vip_listener`: `<label>.<framework>`, label
    /// split at dots).
    #[test]
    fn pod_vip_names_are_dcos_nets() {
        let p = parsed(VIPS);
        let mut alloc = VipAllocator::new();
        let (v, _) = named(&p, "/cache:6379")[0];
        assert_eq!(
            v.addr.ip(),
            alloc.hashed_address(Family::V4, "cache.marathon")
        );
        assert_eq!(
            crate::naming::vip_fqdn("/shop/api", FRAMEWORK).as_deref(),
            Some("shopapi.marathon.l4lb.thisdcos.directory")
        );
        let (v, _) = named(&p, "/shop/api:80")
            .into_iter()
            .find(|(v, _)| v.addr.is_ipv4())
            .unwrap();
        assert_eq!(
            v.addr.ip(),
            alloc.hashed_address(Family::V4, "shopapi.marathon")
        );
        let _ = &mut alloc;
    }

    #[test]
    fn health_from_conditions_and_endpoints() {
        let c = |hc: bool| PodContainer {
            name: "c".into(),
            health_check: hc,
            ..PodContainer::default()
        };
        let st = |v: serde_json::Value| -> ContainerStatus { serde_json::from_value(v).unwrap() };
        assert_eq!(health(Some(&c(false)), &st(json!({}))), None);
        assert_eq!(
            health(Some(&c(true)), &st(json!({}))),
            Some(false),
            "no result yet"
        );
        assert_eq!(
            health(
                Some(&c(true)),
                &st(json!({"conditions": [{"name": "healthy", "value": "true"}]}))
            ),
            Some(true)
        );
        assert_eq!(
            health(
                None,
                &st(json!({"endpoints": [{"name": "a", "healthy": false}]}))
            ),
            Some(false)
        );
        assert_eq!(
            health(
                Some(&c(true)),
                &st(json!({"conditions": [{"name": "healthy", "value": "true"}],
                           "endpoints": [{"name": "a", "healthy": false}]}))
            ),
            Some(false)
        );
    }

    #[test]
    fn bad_pods_are_skipped_with_a_warning_naming_pod_and_field() {
        let body = json!([
            {"id": "/ok", "spec": {"networks": [{"mode": "host"}], "containers": [{"name": "a",
                "endpoints": [{"name": "p", "hostPort": 0, "labels": {"VIP_0": "/ok:80"}}]}]},
             "instances": [{"id": "ok.instance-1", "agentHostname": "10.0.0.1", "containers": [
                {"name": "a", "status": "TASK_RUNNING", "endpoints": [{"name": "p", "allocatedHostPort": 31000}]}]}]},
            {"id": "/bad", "spec": {"containers": [{"name": "a", "endpoints": [{"containerPort": "x"}]}]}},
            {"id": "/mode", "spec": {"networks": [{"mode": "overlay"}]}},
            {"id": "/label", "spec": {"networks": [{"mode": "host"}], "containers": [{"name": "a",
                "endpoints": [{"name": "p", "hostPort": 0, "protocol": ["sctp"], "labels": {"VIP_0": "/x:80"}},
                              {"name": "q", "hostPort": 0, "labels": {"VIP_0": "/x:0"}}]}]},
             "instances": [{"id": "label.instance-1", "agentHostname": "agent-7.example", "containers": [
                {"name": "a", "status": "TASK_RUNNING",
                 "endpoints": [{"name": "q", "allocatedHostPort": 31001}]}]}]},
            {"id": "/nohost", "spec": {"networks": [{"mode": "container"}], "containers": [{"name": "a",
                "endpoints": [{"name": "p", "labels": {"VIP_0": "/nohost:80"}}]}]}},
            7
        ])
        .to_string();
        let p = parsed(&body);
        assert_eq!(
            named(&p, "/ok:80")[0].1.backends,
            [(sa("10.0.0.1:31000"), 1)].into()
        );
        let w: Vec<String> = p.warnings.iter().map(|w| w.to_string()).collect();
        let has = |needles: &[&str]| {
            assert!(
                w.iter().any(|w| needles.iter().all(|n| w.contains(n))),
                "no warning with {needles:?} in {w:#?}"
            )
        };
        has(&[
            "pod /bad: spec.containers[0].endpoints[0].containerPort",
            "pod skipped",
        ]);
        has(&["pod /mode: spec.networks[0].mode", "\"overlay\""]);
        has(&[
            "pod /label: spec.containers[0].endpoints[0].protocol",
            "sctp",
        ]);
        has(&[
            "pod /label: spec.containers[0].endpoints[1] label VIP_0",
            "/x:0",
        ]);
        // An agent known by name is looked up, not warned about (here no
        // resolver has answered yet: its host-port backends wait).
        assert!(!w.iter().any(|w| w.contains("agent-7.example")), "{w:#?}");
        assert!(p.hosts.contains("agent-7.example"));
        has(&["pod /nohost: spec.containers[0].endpoints[0].containerPort: missing"]);
        has(&["pods[5]", "expected a pod status object"]);
        assert!(p.warnings.iter().all(|w| w.pod));
    }

    #[test]
    fn one_pod_replaces_its_part_and_an_answer_about_another_is_refused() {
        let mut set = decode_pods(VIPS.as_bytes()).unwrap();
        assert!(set.is_pod("/cache") && !set.is_pod("/nope"));
        let all: serde_json::Value = serde_json::from_str(VIPS).unwrap();
        let cache = all[1].to_string();
        let one = decode_one_pod(cache.as_bytes(), "/cache").unwrap();
        assert!(!set.replace_pod("/cache", Some(one)), "the same pod again");
        assert!(set.replace_pod("/cache", None));
        let p = set.catalog(&mut VipAllocator::new()).unwrap();
        assert!(named(&p, "/cache:6379").is_empty());
        assert!(!named(&p, "/shop/api:80").is_empty());
        let e = decode_one_pod(cache.as_bytes(), "/other").unwrap_err();
        assert!(e.to_string().contains("asked for pod /other"), "{e}");
        // A list that is not one fails whole and changes nothing.
        let before = set.clone();
        assert!(set.refresh_pods_from_slice(b"{\"pods\": []}").is_err());
        assert!(set.same_content(&before));
        assert!(set.refresh_pods_from_slice(b"[").is_err());
        assert!(set.same_content(&before));
        assert!(set.clear_pods());
        assert!(!set.is_pod("/shop/api"));
    }

    /// Apps and pods live in one catalog: a named VIP declared by both gets
    /// every backend, and apps refreshes leave the pods alone.
    #[test]
    fn apps_and_pods_share_one_catalog() {
        let mut set = AppSet::default();
        let apps = json!({"apps": [{"id": "/cache-app", "portDefinitions": [{"port": 0,
            "labels": {"VIP_0": "/cache:6379"}, "protocol": "udp,tcp"}],
            "tasks": [{"id": "t1", "host": "10.0.2.1", "ports": [32000], "state": "TASK_RUNNING"}]}]})
        .to_string();
        set.refresh_from_slice(apps.as_bytes()).unwrap();
        set.refresh_pods_from_slice(VIPS.as_bytes()).unwrap();
        set.refresh_from_slice(apps.as_bytes()).unwrap();
        let p = set.catalog(&mut VipAllocator::new()).unwrap();
        let cache = named(&p, "/cache:6379");
        assert_eq!(cache.len(), 2);
        assert_eq!(cache[0].1.backends.len(), 3, "{:?}", cache[0].1.backends);
        assert!(cache[0].1.origin.as_deref().unwrap().contains("/cache-app"));
    }
}
