//! A simulated cluster of N nodes for tests and benchmarks: each node a
//! [`Sandbox`] (netns, child cgroup, pin root, work dir) with its own
//! `l4lb-agent run --marathon URL`, and one `l4lb-testsrv` answering every
//! VIP's backend port on the node's fabric address; the nodes joined by a
//! bridge in a fabric namespace of their own ([`fabric`]), where one fake
//! Marathon serves them all. Each VIP is one Marathon app with a task on
//! every node, so its backends spread over all of them.
//!
//! Nothing runs in the host's namespace or root cgroup: agents get only
//! their node's child cgroup, clients run in it ([`Node::stream`],
//! [`Node::probe_tcp`]), backends and the Marathon run in namespaces only.
//! Drop stops the agents (with teardown), then every sandbox removes its
//! processes, cgroup, netns (and with it the veths and the bridge) and pin root.
mod curve;
mod death;
pub mod fabric;
mod faults;
mod footprint;
mod local;
mod stream;

use std::{
    fs,
    net::SocketAddr,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

pub use curve::{Bucket, Conn, Curve, Outcome, mono_ms, parse_stream};
pub use death::{DeathRun, DeathSpec, Kill};
pub use faults::{SYN_DROP_CHAIN, SYN_DROP_TABLE};
pub use footprint::Footprint;
pub use local::{LOCAL_DROP_TABLE, LocalRun, LocalSpec};
pub use stream::{Stream, StreamSpec};

use crate::{Agent, FakeMarathon, Sandbox, TaskSpec, TestSrv, marathon::model, table::backends};
use fabric::{FABRIC_IP4, Fabric, MAX_NODES, node_ip4, node_ip6};

/// Where every node's agent answers DNS (its netns' loopback).
pub const DNS_LISTEN: &str = "127.0.0.1:5353";

/// One named VIP (`/NAME:PORT`), served on every node at `backend_port`.
#[derive(Clone, Debug)]
pub struct VipSpec {
    pub name: String,
    pub port: u16,
    pub backend_port: u16,
}

impl VipSpec {
    pub fn new(name: &str, port: u16, backend_port: u16) -> VipSpec {
        VipSpec {
            name: name.to_string(),
            port,
            backend_port,
        }
    }

    /// The Marathon app that declares it.
    pub fn app_id(&self) -> String {
        format!("/{}", self.name)
    }

    /// Its `VIP_0` label.
    pub fn label(&self) -> String {
        format!("/{}:{}", self.name, self.port)
    }

    /// The name the agents' DNS answers with the VIP address.
    pub fn dns_name(&self) -> String {
        format!("{}.marathon.l4lb.thisdcos.directory", self.name)
    }

    /// Node `i`'s backend for it, as the agents' tables print it.
    pub fn backend_on(&self, i: usize) -> String {
        format!("{}:{}", node_ip4(i), self.backend_port)
    }
}

/// What to build.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// Names the sandboxes (`l4lb-<tag>-n<i>-<pid>…`); [A-Za-z0-9_-].
    pub tag: String,
    pub nodes: usize,
    pub vips: Vec<VipSpec>,
    /// Added to every agent's `run` arguments (e.g. a policy flag).
    pub agent_args: Vec<String>,
    /// How long start-up (agents listing every VIP with every backend) may take.
    pub ready_bound: Duration,
    /// Each node's zone (empty: none): its tasks carry it in Marathon and
    /// its agent gets `--zone`.
    pub zones: Vec<String>,
    /// More Marathon apps beside the VIPs' (load for the control plane:
    /// their backends need not exist).
    pub extra_apps: Vec<Value>,
    /// The agents' map-size flags (default: [`SMALL_MAPS`]).
    pub maps: Option<Vec<String>>,
}

impl ClusterSpec {
    /// `nodes` nodes and one VIP, `/web:80` on backend port 7000.
    pub fn new(tag: &str, nodes: usize) -> ClusterSpec {
        ClusterSpec {
            tag: tag.to_string(),
            nodes,
            vips: vec![VipSpec::new("web", 80, 7000)],
            agent_args: vec![],
            ready_bound: Duration::from_secs(30 + 3 * nodes as u64),
            zones: vec![],
            extra_apps: vec![],
            maps: None,
        }
    }

    /// Adds `apps` (Marathon app JSON) beside the VIPs' apps.
    pub fn extra_apps(mut self, apps: Vec<Value>) -> ClusterSpec {
        self.extra_apps = apps;
        self
    }

    /// The agents' map-size flags instead of [`SMALL_MAPS`].
    pub fn maps(mut self, flags: &[&str]) -> ClusterSpec {
        self.maps = Some(flags.iter().map(|f| f.to_string()).collect());
        self
    }

    pub fn vips(mut self, vips: Vec<VipSpec>) -> ClusterSpec {
        self.vips = vips;
        self
    }

    pub fn agent_args(mut self, args: &[&str]) -> ClusterSpec {
        self.agent_args = args.iter().map(|a| a.to_string()).collect();
        self
    }

    /// Node `i` in zone `zones[i]`.
    pub fn zones(mut self, zones: &[&str]) -> ClusterSpec {
        self.zones = zones.iter().map(|z| z.to_string()).collect();
        self
    }

    fn check(&self) -> Result<()> {
        if !self.zones.is_empty() && self.zones.len() != self.nodes {
            bail!("{} zones for {} nodes", self.zones.len(), self.nodes);
        }
        if self.nodes == 0 || self.nodes > MAX_NODES {
            bail!("{} nodes: 1..={MAX_NODES}", self.nodes);
        }
        if self.vips.is_empty() {
            bail!("a cluster needs at least one VIP");
        }
        let mut ports: Vec<u16> = self.vips.iter().map(|v| v.backend_port).collect();
        ports.sort_unstable();
        ports.dedup();
        if ports.len() != self.vips.len() {
            bail!("every VIP needs its own backend port");
        }
        Ok(())
    }
}

/// One simulated node. Fields drop in order: the agent stops (and tears
/// down) while its sandbox still exists.
pub struct Node {
    pub agent: Agent,
    pub sb: Sandbox,
    pub index: usize,
    /// The testsrv (id `n<index>`) behind every VIP's backend port.
    pub backend: TestSrv,
}

impl Node {
    pub fn ip4(&self) -> String {
        node_ip4(self.index)
    }

    /// The testsrv id of this node's backends.
    pub fn backend_id(&self) -> String {
        backend_id(self.index)
    }

    /// `l4lb-probe tcp --to TO -n N` from inside this node's cgroup.
    pub fn probe_tcp(&self, to: SocketAddr, n: u32) -> Result<Value> {
        self.sb.probe_tcp(&to.to_string(), n)
    }

    /// Whether one `l4lb-probe tcp` from this node's cgroup to `to`
    /// (`ip:port`, `[v6]:port`) gets a greeting within `timeout_ms`.
    pub fn reaches(&self, to: &str, timeout_ms: u64) -> Result<bool> {
        let t = timeout_ms.to_string();
        let v = self
            .sb
            .probe(&["tcp", "--to", to, "-n", "1", "--timeout-ms", &t])?;
        Ok(v["errors"] == 0)
    }

    /// The A answers of `vip`'s name from this node's agent; Err: no reply.
    pub fn resolve(&self, vip: &VipSpec) -> Result<Vec<String>, String> {
        self.sb.dig_short(&vip.dns_name(), "A")
    }

    /// The health state (`up`, `suspect`, `down`, `probe-due`) this node's
    /// agent shows for `backend` under `vip_addr`; None: not listed, or no
    /// health in the table.
    pub fn backend_state(&self, vip_addr: SocketAddr, backend: &str) -> Option<String> {
        let table = self.agent.vips_json().ok()?;
        let row = table
            .as_array()?
            .iter()
            .find(|r| r["vip"] == vip_addr.to_string() && r["proto"] == "tcp")?;
        let b = row["backends"]
            .as_array()?
            .iter()
            .find(|b| b["addr"] == backend)?;
        Some(b["health"]["state"].as_str()?.to_string())
    }

    /// Backends (as the table prints them) of the row for `vip_addr`, if listed.
    pub fn backends_of(&self, vip_addr: SocketAddr) -> Option<Vec<String>> {
        let table = self.agent.vips_json().ok()?;
        let row = table
            .as_array()?
            .iter()
            .find(|r| r["vip"] == vip_addr.to_string() && r["proto"] == "tcp")?;
        let mut b: Vec<String> = backends(row).into_iter().map(|(a, _)| a).collect();
        b.sort();
        Some(b)
    }
}

/// The testsrv id node `i`'s backends greet with.
pub fn backend_id(i: usize) -> String {
    format!("n{i}")
}

/// The cluster. Fields drop in order: nodes (agents first), then the fabric
/// with the fake Marathon.
pub struct Cluster {
    nodes: Vec<Node>,
    marathon: FakeMarathon,
    fabric: Fabric,
    spec: ClusterSpec,
    /// Each VIP's address, in `spec.vips` order.
    vip_addrs: Vec<SocketAddr>,
}

impl Cluster {
    /// Builds the fabric, the nodes and their backends, the fake Marathon and
    /// the agents; returns once every agent lists every VIP with a backend on
    /// every node (bounded by `spec.ready_bound`).
    pub fn new(spec: ClusterSpec) -> Result<Cluster> {
        spec.check()?;
        let deadline = Instant::now() + spec.ready_bound;
        let mut fabric = Fabric::new(&spec.tag)?;
        let mut places = vec![];
        for i in 0..spec.nodes {
            let mut sb = Sandbox::new(&format!("{}-n{i}", spec.tag))?;
            fabric.attach(&sb, i)?;
            let backend = spawn_backends(&mut sb, i, &spec.vips)?;
            places.push((sb, backend));
        }
        let marathon = FakeMarathon::start_on(&mut fabric.sb, FABRIC_IP4, apps(&spec))?;
        let url = marathon.url(0);
        let mut nodes = vec![];
        for (index, (mut sb, backend)) in places.into_iter().enumerate() {
            let mut args = vec!["--marathon", &url, "--dns-listen", DNS_LISTEN];
            match &spec.maps {
                Some(m) => args.extend(m.iter().map(String::as_str)),
                None => args.extend_from_slice(SMALL_MAPS),
            }
            args.extend(spec.agent_args.iter().map(String::as_str));
            if let Some(zone) = spec.zones.get(index) {
                args.extend(["--zone", zone]);
            }
            let agent = Agent::start_with_args(&mut sb, "", &args)?;
            nodes.push(Node {
                agent,
                sb,
                index,
                backend,
            });
        }
        let mut c = Cluster {
            nodes,
            marathon,
            fabric,
            spec,
            vip_addrs: vec![],
        };
        c.vip_addrs = c.find_vips(deadline)?;
        let all: Vec<usize> = (0..c.nodes.len()).collect();
        for k in 0..c.spec.vips.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            c.wait_backends(k, &all, &all, left)?;
        }
        Ok(c)
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    pub fn marathon(&self) -> &FakeMarathon {
        &self.marathon
    }

    pub fn spec(&self) -> &ClusterSpec {
        &self.spec
    }

    /// The fabric namespace's sandbox (where the fake Marathon runs).
    pub fn fabric(&self) -> &Sandbox {
        &self.fabric.sb
    }

    /// The address of the `k`th VIP of the spec.
    pub fn vip_addr(&self, k: usize) -> SocketAddr {
        self.vip_addrs[k]
    }

    /// Waits until every node in `observers` lists exactly the backends of
    /// `backend_nodes` for VIP `k`, its hooks attached; when each first did (CLOCK_MONOTONIC ms,
    /// seen by polling every 20 ms, so at most that late), in `observers` order.
    pub fn wait_backends(
        &self,
        k: usize,
        observers: &[usize],
        backend_nodes: &[usize],
        bound: Duration,
    ) -> Result<Vec<f64>> {
        let vip = &self.spec.vips[k];
        let mut want: Vec<String> = backend_nodes.iter().map(|&i| vip.backend_on(i)).collect();
        want.sort();
        let addr = self.vip_addrs[k];
        let deadline = Instant::now() + bound;
        let mut seen: Vec<Option<f64>> = vec![None; observers.len()];
        loop {
            for (slot, &i) in seen.iter_mut().zip(observers) {
                let node = &self.nodes[i];
                if slot.is_none()
                    && node.backends_of(addr).as_ref() == Some(&want)
                    && node.agent.hooked()
                {
                    *slot = Some(mono_ms());
                }
            }
            if seen.iter().all(Option::is_some) {
                return Ok(seen.into_iter().flatten().collect());
            }
            if Instant::now() >= deadline {
                let got: Vec<_> = observers
                    .iter()
                    .map(|&i| (i, self.nodes[i].backends_of(addr)))
                    .collect();
                bail!(
                    "VIP {addr}: wanted {want:?} on nodes {observers:?} within {bound:?}; saw {got:?}"
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the cluster made, for a check after drop.
    pub fn footprint(&self) -> Footprint {
        let mut f = Footprint::default();
        let sandboxes = std::iter::once(&self.fabric.sb).chain(self.nodes.iter().map(|n| &n.sb));
        for sb in sandboxes {
            f.netns.push(sb.netns().to_string());
            f.cgroups.push(sb.cgroup().to_path_buf());
            f.pin_roots.push(sb.pin_root().to_path_buf());
            f.workdirs.push(sb.workdir().to_path_buf());
            let in_cgroup =
                fs::read_to_string(sb.cgroup().join("cgroup.procs")).unwrap_or_default();
            let pids = in_cgroup.lines().filter_map(|l| l.trim().parse().ok());
            for pid in sb.pids().into_iter().chain(pids) {
                f.add_proc(pid);
            }
        }
        f
    }

    /// The VIPs' addresses from node 0's table (the same on every node:
    /// a named VIP hashes to one address).
    /// Waits for every row: with `extra_apps` the first table is written
    /// service by service while `vips` reads it.
    fn find_vips(&self, deadline: Instant) -> Result<Vec<SocketAddr>> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let table = self.nodes[0]
                .agent
                .wait_vips(self.spec.vips.len(), left)
                .context("node 0's agent")?;
            let rows: Vec<_> = self
                .spec
                .vips
                .iter()
                .map(|v| crate::table::row_of(&table, &v.backend_on(0)))
                .collect();
            if rows.iter().all(Option::is_some) {
                let addrs = rows.into_iter().flatten();
                return addrs
                    .map(|r| Ok(r["vip"].as_str().unwrap_or_default().parse()?))
                    .collect();
            }
            if Instant::now() >= deadline {
                let labels: Vec<String> = self.spec.vips.iter().map(VipSpec::label).collect();
                bail!("node 0 lists no row for some of {labels:?} in time");
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Map sizes for many agents on one box: a few VIPs each, so the kernel
/// memory of N agents stays small (the defaults are sized for a real node).
pub const SMALL_MAPS: &[&str] = &[
    "--max-services",
    "256",
    "--max-backends",
    "4096",
    "--max-slots",
    "262144",
];

/// One testsrv (id `n<i>`) on node `i`'s fabric addresses, v4 and v6, at
/// every VIP's backend port; it runs in the netns only (not the cgroup).
fn spawn_backends(sb: &mut Sandbox, i: usize, vips: &[VipSpec]) -> Result<TestSrv> {
    let mut addrs = vec![];
    for v in vips {
        addrs.push(format!("{}:{}", node_ip4(i), v.backend_port));
        addrs.push(format!("[{}]:{}", node_ip6(i), v.backend_port));
    }
    let refs: Vec<&str> = addrs.iter().map(String::as_str).collect();
    sb.spawn_testsrv(&backend_id(i), &refs, &[])
}

/// `{"apps": […]}`: per VIP one host-networking app with a task on each node.
/// Task `i` (on node `i`) in `zones[i]`, as Marathon reports a fault domain.
fn add_zones(app: &mut Value, zones: &[String]) {
    if let Some(tasks) = app["tasks"].as_array_mut() {
        for (t, z) in tasks.iter_mut().zip(zones) {
            t["zone"] = json!(z);
        }
    }
}

fn apps(spec: &ClusterSpec) -> Value {
    let mut list: Vec<Value> = spec
        .vips
        .iter()
        .map(|v| {
            let tasks: Vec<TaskSpec> = (0..spec.nodes)
                .map(|i| TaskSpec::new(&node_ip4(i), v.backend_port))
                .collect();
            let mut app = model::host_app(&v.app_id(), &v.label(), &tasks, false);
            add_zones(&mut app, &spec.zones);
            app
        })
        .collect();
    list.extend(spec.extra_apps.iter().cloned());
    json!({ "apps": list })
}
