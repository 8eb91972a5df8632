//! Marathon apps (with embedded tasks) → [`Catalog`]: the VIP table dcos-net
//! would build from the same apps, plus the task records DNS needs.
//!
//! Rules (see shared/notes/dcos.md):
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
use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use crate::declare::{self, FRAMEWORK, Repeats, Target};
use crate::hosts::{AgentAt, HostTable, Lookup, parse_agent_host, pick_agent_addr};
use crate::marathon::apps::{App, Task};
use crate::model::{Catalog, DesiredState, Proto, ServiceSpec, TaskPort, TaskRecord, Vip};
use crate::naming::{Family, NamingError, VipAllocator};

/// A sync's result: the catalog and what was left out of it, and why.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    pub catalog: Catalog,
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

/// One app's share of the catalog: its VIP declarations, backends, task
/// records and warnings, before named VIPs get addresses. Kept per app so an
/// event that names an app re-reads and replaces only that app; held for
/// every app, so flat vectors rather than the builder's B-trees (a part of a
/// 5-task app: ~2.5 KB instead of ~6.5 KB).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppPart {
    id: String,
    /// In key order; each key once.
    groups: Vec<(GroupKey, PartGroup)>,
    tasks: Vec<Arc<TaskRecord>>,
    named_agents: Vec<NamedAgent>,
    warnings: Vec<Warning>,
}

/// What one app declares for one [`GroupKey`] (sorted, each once).
#[derive(Clone, Debug, PartialEq, Eq)]
struct PartGroup {
    labels: Vec<String>,
    backends: Vec<(SocketAddr, u32)>,
    by_name: Vec<(HostPort, u32)>,
}

/// A host-port backend on an agent known by name: its address comes from
/// the [`HostTable`] when the catalog is built, so a lookup that completes
/// later needs no re-read of the app.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct HostPort {
    host: Arc<str>,
    port: u16,
    /// Under host networking Marathon's `ipAddresses` are the agent's: used
    /// while the name does not resolve.
    fallback: Option<IpAddr>,
}

/// An agent known by name, and the address that stands in for it while the
/// name does not resolve (under host networking, the task's own).
#[derive(Clone, Debug)]
pub(super) struct NamedAt {
    pub(super) host: Arc<str>,
    pub(super) fallback: Option<IpAddr>,
}

/// A task whose agent is known by name (index into the part's tasks).
#[derive(Clone, Debug, PartialEq, Eq)]
struct NamedAgent {
    task: usize,
    host: Arc<str>,
    fallback: Option<IpAddr>,
}

impl AppPart {
    pub fn of(app: &App) -> AppPart {
        let mut b = Builder::default();
        b.add_app(app);
        AppPart::from_builder(app.id.clone(), b)
    }

    fn from_builder(id: String, b: Builder) -> AppPart {
        let groups = b
            .groups
            .into_iter()
            .map(|(k, g)| {
                let group = PartGroup {
                    labels: g.labels.into_iter().collect(),
                    backends: g.backends.into_iter().collect(),
                    by_name: g.by_name.into_iter().collect(),
                };
                (k, group)
            })
            .collect();
        AppPart {
            id,
            groups,
            tasks: b.tasks,
            named_agents: b.named_agents,
            warnings: b.warnings,
        }
    }

    pub fn app_id(&self) -> &str {
        &self.id
    }

    /// Two list entries with the same id (Marathon never sends them) count
    /// as one app declaring both.
    pub fn absorb(&mut self, other: AppPart) {
        let mut b = Builder::default();
        b.add_part(self);
        b.add_part(&other);
        *self = AppPart::from_builder(std::mem::take(&mut self.id), b);
    }
}

/// How `pod_part` builds a pod's part: the VIP label rules, backend merging
/// and task records of an app's, through a few entry points.
pub(super) struct PartBuilder {
    id: String,
    b: Builder,
    warnings: Vec<String>,
}

/// The VIPs one port (a pod endpoint) declares.
pub(super) struct PortVips(Vec<Decl>);

impl PartBuilder {
    /// The part of the pod `id`.
    pub(super) fn pod(id: &str) -> PartBuilder {
        PartBuilder {
            id: id.to_owned(),
            b: Builder::default(),
            warnings: Vec::new(),
        }
    }

    /// Something left out (`what` names the field).
    pub(super) fn warn(&mut self, what: String) {
        self.warnings.push(what);
    }

    /// Declares the `VIP_*` labels of one port (`field` names it in
    /// messages), as an app port's are.
    pub(super) fn port_vips(
        &mut self,
        field: String,
        protos: &[Proto],
        labels: &BTreeMap<String, String>,
    ) -> PortVips {
        let spec = PortSpec {
            field,
            protos: Some(protos.to_vec()),
            name: None,
            labels,
            host_index: None,
            container_port: None,
        };
        let mut warnings = Vec::new();
        let decls = port_decls(std::slice::from_ref(&spec), &mut |w| warnings.push(w));
        self.warnings.extend(warnings);
        for d in &decls {
            self.b.declare(d, &self.id);
        }
        PortVips(decls)
    }

    /// One serving endpoint's addresses for a port's VIPs (`at` names the
    /// task in messages).
    pub(super) fn serve(&mut self, vips: &PortVips, addrs: &[SocketAddr], weight: u32, at: &str) {
        let mut warnings = Vec::new();
        for d in &vips.0 {
            self.b
                .add_backends(d, addrs, weight, at, &mut |w| warnings.push(w));
        }
        self.warnings.extend(warnings);
    }

    /// One serving endpoint on an agent known by name: its address comes
    /// from the host table when the catalog is built.
    pub(super) fn serve_on_agent(
        &mut self,
        vips: &PortVips,
        agent: &NamedAt,
        port: u16,
        weight: u32,
    ) {
        let hp = HostPort {
            host: agent.host.clone(),
            port,
            fallback: agent.fallback,
        };
        for d in &vips.0 {
            self.b.add_named_backend(d, &hp, weight);
        }
    }

    /// A task record; `agent` when its agent is known by name.
    pub(super) fn task(&mut self, task: TaskRecord, agent: Option<&NamedAt>) {
        if let Some(a) = agent {
            self.b.named_agents.push(NamedAgent {
                task: self.b.tasks.len(),
                host: a.host.clone(),
                fallback: a.fallback,
            });
        }
        self.b.tasks.push(Arc::new(task));
    }

    pub(super) fn finish(self) -> AppPart {
        let PartBuilder {
            id,
            mut b,
            warnings,
        } = self;
        b.warnings.extend(warnings.into_iter().map(|what| Warning {
            app_id: Some(id.clone()),
            what,
            pod: true,
        }));
        AppPart::from_builder(id, b)
    }
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

/// How an app's tasks are reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
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
fn networking_mode(app: &App) -> Result<Mode, String> {
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
struct PortSpec<'a> {
    /// `portDefinitions[0]`, `container.portMappings[1]`, … for messages.
    field: String,
    /// None: the protocol was bad (warned); the port declares no VIPs.
    protos: Option<Vec<Proto>>,
    name: Option<&'a str>,
    labels: &'a BTreeMap<String, String>,
    /// Index into `Task::ports` when the port is mapped on the agent.
    host_index: Option<usize>,
    /// The port on the task's own IP, for ports that are not host-mapped
    /// (None if missing or bad: warned, no backends).
    container_port: Option<u16>,
}

/// The app's ports in the fields its networking mode uses.
fn port_specs<'a>(app: &'a App, mode: Mode, warn: &mut impl FnMut(String)) -> Vec<PortSpec<'a>> {
    let protos = |field: &str, p: Option<&str>, warn: &mut dyn FnMut(String)| {
        parse_protocols(p)
            .map_err(|m| warn(format!("{field}.protocol: {m}; the port declares no VIPs")))
            .ok()
    };
    if mode == Mode::Host {
        return app
            .port_definitions
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
            .collect();
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
                let p = pm.container_port.and_then(port_u16);
                if p.is_none() {
                    let why = pm.container_port.map_or_else(
                        || "missing".to_owned(),
                        |n| format!("{n} is not a port in 1..=65535"),
                    );
                    warn(format!(
                        "{field}.containerPort: {why}, but container networking reaches \
                         the task on it; the port has no backends"
                    ));
                }
                p
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

/// A port's protocol list. Marathon accepts `tcp,tcp`: the same as `tcp`.
pub(super) fn parse_protocols(s: Option<&str>) -> Result<Vec<Proto>, String> {
    declare::protocols(s, Repeats::Merge)
}

/// 1..=65535.
pub(super) fn port_u16(n: i64) -> Option<u16> {
    u16::try_from(n).ok().filter(|&p| p != 0)
}

/// One VIP declaration on one port of an app (or of one task).
struct Decl {
    target: Target,
    /// The label value as written, minus a legacy `tcp://`: `ServiceSpec::name`.
    label: String,
    protos: Vec<Proto>,
    /// Index into the app's [`PortSpec`]s.
    spec: usize,
    /// `portDefinitions[0] label VIP_0`, for messages.
    origin: String,
}

/// `VIP_*` labels of every port.
fn port_decls(specs: &[PortSpec], warn: &mut impl FnMut(String)) -> Vec<Decl> {
    let mut out = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let Some(protos) = &spec.protos else { continue };
        for (key, value) in spec.labels.iter().filter(|(k, _)| k.starts_with("VIP_")) {
            let origin = format!("{} label {key}", spec.field);
            match declare::label_target(value) {
                Ok(target) => out.push(Decl {
                    target,
                    label: value.clone(),
                    protos: protos.clone(),
                    spec: i,
                    origin,
                }),
                Err(m) => warn(format!("{origin}: {m}")),
            }
        }
    }
    out
}

/// Legacy `vip_PORT<n>` = `tcp://name:port` / `udp://name:port` labels (the
/// key is matched case-insensitively: both `vip_PORT0` and `vip_port0` exist
/// in the wild). `at` prefixes messages: `""` for app labels, `tasks[0] (id) `.
fn legacy_decls(
    labels: &BTreeMap<String, String>,
    specs: &[PortSpec],
    at: &str,
    warn: &mut impl FnMut(String),
) -> Vec<Decl> {
    let mut out = Vec::new();
    for (key, value) in labels {
        let Some(index) = key
            .get(..8)
            .filter(|p| p.eq_ignore_ascii_case("vip_port"))
            .and_then(|_| key.get(8..))
        else {
            continue;
        };
        let origin = format!("{at}label {key}");
        let Some(spec) = index
            .parse::<usize>()
            .ok()
            .filter(|_| index.bytes().all(|b| b.is_ascii_digit()))
        else {
            warn(format!("{origin}: {index:?} is not a port index"));
            continue;
        };
        if spec >= specs.len() {
            warn(format!(
                "{origin}: the app has {} port(s), no port {spec}",
                specs.len()
            ));
            continue;
        }
        let scheme = value.get(..6).map(str::to_ascii_lowercase);
        let proto = match scheme.as_deref() {
            Some("tcp://") => Proto::Tcp,
            Some("udp://") => Proto::Udp,
            _ => {
                warn(format!(
                    "{origin}: {value:?} is not tcp://name:port or udp://name:port"
                ));
                continue;
            }
        };
        let rest = value.get(6..).unwrap_or_default();
        match declare::label_target(rest) {
            Ok(target) => out.push(Decl {
                target,
                label: rest.to_owned(),
                protos: vec![proto],
                spec,
                origin,
            }),
            Err(m) => warn(format!("{origin}: {m}")),
        }
    }
    out
}

/// A datapath VIP before named ones have addresses.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum GroupKey {
    Named {
        key: String,
        port: u16,
        proto: Proto,
    },
    Ip(Vip),
}

/// Everything declared for one [`GroupKey`], from any app.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Group {
    /// Label values it was declared with; the smallest becomes the name, so
    /// the name does not depend on app order.
    labels: BTreeSet<String>,
    apps: BTreeSet<String>,
    backends: BTreeMap<SocketAddr, u32>,
    /// Until [`Builder::resolve_agents`] moves them into `backends`.
    by_name: BTreeMap<HostPort, u32>,
}

impl Group {
    /// Families a named VIP needs an address in: its backends'. None when it
    /// has no backend: an app scaled to 0 withdraws its VIP (unlike the
    /// static file, where an empty list is the operator's explicit choice).
    fn families(&self) -> BTreeSet<Family> {
        self.backends.keys().map(|b| Family::of(b.ip())).collect()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Builder {
    groups: BTreeMap<GroupKey, Group>,
    tasks: Vec<Arc<TaskRecord>>,
    named_agents: Vec<NamedAgent>,
    warnings: Vec<Warning>,
}

/// What a task offers on one port.
struct Endpoint {
    /// The port clients use (host port if mapped, else container port).
    port: u16,
    /// Backend addresses: the agent's, or the task's first of each family.
    addrs: Vec<SocketAddr>,
    /// The agent's address when the agent is known by name.
    agent: Option<HostPort>,
}

impl Builder {
    /// Adds one app's part: same rules as declaring it here (labels and apps
    /// join, an endpoint keeps its highest weight).
    fn add_part(&mut self, p: &AppPart) {
        for (k, pg) in &p.groups {
            let g = self.groups.entry(k.clone()).or_default();
            g.labels.extend(pg.labels.iter().cloned());
            g.apps.insert(p.id.clone());
            for &(a, w) in &pg.backends {
                let e = g.backends.entry(a).or_insert(w);
                *e = (*e).max(w);
            }
            for (hp, w) in &pg.by_name {
                let e = g.by_name.entry(hp.clone()).or_insert(*w);
                *e = (*e).max(*w);
            }
        }
        let offset = self.tasks.len();
        self.named_agents
            .extend(p.named_agents.iter().map(|n| NamedAgent {
                task: n.task + offset,
                ..n.clone()
            }));
        self.tasks.extend(p.tasks.iter().cloned());
        self.warnings.extend(p.warnings.iter().cloned());
    }

    /// Gives agents known by name their address from `hosts` (else, under
    /// host networking, the task's own): in the backends of every VIP and in
    /// the task records. A name with neither is one warning per app, and its
    /// host-port backends stay out until it resolves; a name still being
    /// looked up is left out without one (it settles within seconds).
    fn resolve_agents(&mut self, hosts: &HostTable) {
        let addr_of = |host: &str, fallback: Option<IpAddr>| match hosts.lookup(host) {
            Lookup::Addr(ip) => Ok(ip),
            Lookup::Missing(why) => fallback.ok_or(why),
        };
        for (gk, g) in &mut self.groups {
            for (hp, w) in std::mem::take(&mut g.by_name) {
                let Ok(ip) = addr_of(&hp.host, hp.fallback) else {
                    continue; // warned once per app below
                };
                if let GroupKey::Ip(vip) = gk
                    && Family::of(ip) != Family::of(vip.addr.ip())
                {
                    self.warnings.push(Warning {
                        app_id: g.apps.first().cloned(),
                        pod: false,
                        what: format!(
                            "agent {} is at {ip}, {} but the VIP {vip} is {}; left out",
                            hp.host,
                            Family::of(ip),
                            Family::of(vip.addr.ip())
                        ),
                    });
                    continue;
                }
                let e = g.backends.entry(SocketAddr::new(ip, hp.port)).or_insert(w);
                *e = (*e).max(w);
            }
        }
        let mut warned = BTreeSet::new();
        for n in &self.named_agents {
            let Some(task) = self.tasks.get_mut(n.task) else {
                continue;
            };
            let (app_id, pod) = (task.app_id.clone(), task.in_pod);
            match (hosts.lookup(&n.host), n.fallback) {
                (Lookup::Addr(ip), _) => Arc::make_mut(task).agent_ip = Some(ip),
                (Lookup::Missing(why), fallback) => {
                    if let Some(ip) = fallback {
                        Arc::make_mut(task).agent_ip = Some(ip);
                    }
                    if matches!(why, crate::hosts::Missing::Pending)
                        || !warned.insert((app_id.clone(), n.host.clone()))
                    {
                        continue;
                    }
                    let what = match fallback {
                        Some(_) => format!(
                            "agent host {:?} {why}: its host-networking tasks are reached \
                             at their ipAddresses",
                            n.host
                        ),
                        None => format!(
                            "agent host {:?} {why}: its tasks' host-port backends are left out",
                            n.host
                        ),
                    };
                    self.warnings.push(Warning {
                        app_id: Some(app_id),
                        pod,
                        what,
                    });
                }
            }
        }
    }

    fn add_app(&mut self, app: &App) {
        let mut warnings = Vec::new();
        let mut warn = |what: String| warnings.push(what);
        match networking_mode(app) {
            Ok(mode) => {
                let specs = port_specs(app, mode, &mut warn);
                let mut decls = port_decls(&specs, &mut warn);
                decls.extend(legacy_decls(&app.labels, &specs, "", &mut warn));
                for d in &decls {
                    self.declare(d, &app.id);
                }
                for (j, task) in app.tasks.iter().enumerate() {
                    self.add_task(app, mode, &specs, &decls, j, task, &mut warn);
                }
            }
            Err(what) => warn(what),
        }
        self.warnings
            .extend(warnings.into_iter().map(|what| Warning {
                app_id: Some(app.id.clone()),
                what,
                pod: false,
            }));
    }

    fn declare(&mut self, d: &Decl, app_id: &str) {
        for &proto in &d.protos {
            let g = self.groups.entry(group_key(&d.target, proto)).or_default();
            g.labels.insert(d.label.clone());
            g.apps.insert(app_id.to_owned());
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn add_task(
        &mut self,
        app: &App,
        mode: Mode,
        specs: &[PortSpec],
        app_decls: &[Decl],
        j: usize,
        task: &Task,
        warn: &mut impl FnMut(String),
    ) {
        if task.id.trim().is_empty() {
            warn(format!("tasks[{j}].id: missing; task skipped"));
            return;
        }
        let at = format!("tasks[{j}] ({})", task.id);
        let state = task.state.as_deref().unwrap_or_default();
        let healthy = (!app.health_checks.is_empty()).then(|| {
            !task.health_check_results.is_empty()
                && task
                    .health_check_results
                    .iter()
                    .all(|r| r.alive == Some(true))
        });
        let weight = match state {
            "TASK_RUNNING" if healthy == Some(false) => Some(0),
            "TASK_RUNNING" => Some(1),
            "TASK_KILLING" => Some(0),
            _ => None,
        };
        // Tasks that are not backends (staging, finished, …) often lack
        // ports or addresses: only complain about the ones that serve.
        let serving = weight.is_some();
        let mut warn_serving = |what: String| {
            if serving {
                warn(what)
            }
        };

        let mut task_ips = Vec::new();
        for (k, a) in task.ip_addresses.iter().enumerate() {
            match a.ip_address.as_deref().map(|s| s.trim().parse::<IpAddr>()) {
                Some(Ok(ip)) => task_ips.push(ip.to_canonical()),
                Some(Err(_)) | None => warn_serving(format!(
                    "{at}.ipAddresses[{k}].ipAddress: {:?} is not an IP address",
                    a.ip_address.as_deref().unwrap_or("")
                )),
            }
        }
        let (agent_ip, agent_name) = match task.host.as_deref().map(parse_agent_host) {
            Some(Some(AgentAt::Ip(ip))) => (Some(ip), None),
            Some(Some(AgentAt::Name(name))) => (None, Some(name)),
            bad => {
                if specs.iter().any(|s| s.host_index.is_some()) {
                    warn_serving(match (bad, &task.host) {
                        (Some(None), Some(h)) => format!(
                            "{at}: host {h:?} is neither an IP address nor a host name; \
                             its host-port backends are left out"
                        ),
                        _ => format!("{at}: host missing; its host-port backends are left out"),
                    });
                }
                (None, None)
            }
        };
        // Host networking: Marathon's ipAddresses are the agent's own.
        let fallback = agent_name
            .as_ref()
            .filter(|_| mode == Mode::Host)
            .and_then(|_| pick_agent_addr(task_ips.iter().copied()));

        let endpoints: Vec<Option<Endpoint>> = specs
            .iter()
            .map(|spec| {
                if let Some(k) = spec.host_index {
                    let port = match task.ports.get(k) {
                        Some(&n) => port_u16(n).or_else(|| {
                            warn_serving(format!(
                                "{at}.ports[{k}]: {n} is not a port in 1..=65535; no backend for {}",
                                spec.field
                            ));
                            None
                        }),
                        None => {
                            warn_serving(format!(
                                "{at}.ports: {} entries, but {} needs ports[{k}]; no backend for it",
                                task.ports.len(),
                                spec.field
                            ));
                            None
                        }
                    }?;
                    let addrs = agent_ip.map(|ip| SocketAddr::new(ip, port));
                    let agent = agent_name.as_ref().map(|host| HostPort {
                        host: host.clone(),
                        port,
                        fallback,
                    });
                    Some(Endpoint {
                        port,
                        addrs: addrs.into_iter().collect(),
                        agent,
                    })
                } else {
                    let port = spec.container_port?;
                    let addrs: Vec<SocketAddr> = [Family::V4, Family::V6]
                        .into_iter()
                        .filter_map(|f| task_ips.iter().find(|ip| Family::of(**ip) == f))
                        .map(|&ip| SocketAddr::new(ip, port))
                        .collect();
                    if addrs.is_empty() {
                        warn_serving(format!(
                            "{at}.ipAddresses: none, but {} is reached on the task's own IP; \
                             no backend for it",
                            spec.field
                        ));
                    }
                    Some(Endpoint {
                        port,
                        addrs,
                        agent: None,
                    })
                }
            })
            .collect();

        let task_decls = legacy_decls(&task.labels, specs, &format!("{at} "), &mut *warn);
        for d in &task_decls {
            self.declare(d, &app.id);
        }
        if let Some(weight) = weight {
            for d in app_decls.iter().chain(&task_decls) {
                if let Some(Some(ep)) = endpoints.get(d.spec) {
                    self.add_backends(d, &ep.addrs, weight, &at, &mut *warn);
                    if let Some(hp) = &ep.agent {
                        self.add_named_backend(d, hp, weight);
                    }
                }
            }
        }

        let ports = specs
            .iter()
            .zip(&endpoints)
            .filter_map(|(spec, ep)| {
                Some(TaskPort {
                    port: ep.as_ref()?.port,
                    protocols: spec.protos.clone()?,
                    name: spec.name.map(str::to_owned),
                })
            })
            .collect();
        if let Some(host) = agent_name {
            self.named_agents.push(NamedAgent {
                task: self.tasks.len(),
                host,
                fallback,
            });
        }
        self.tasks.push(Arc::new(TaskRecord {
            app_id: app.id.clone(),
            task_id: task.id.clone(),
            framework: FRAMEWORK.to_owned(),
            agent_id: task.slave_id.clone().unwrap_or_default(),
            agent_ip,
            task_ips,
            ports,
            host_ports: mode != Mode::Container || specs.iter().any(|s| s.host_index.is_some()),
            running: state == "TASK_RUNNING",
            healthy,
            in_pod: false,
        }));
    }

    /// Adds one task's addresses for one declaration. An IP VIP takes only
    /// its own family (a socket hook cannot change it); a named VIP takes
    /// all and gets an address per family.
    fn add_backends(
        &mut self,
        d: &Decl,
        addrs: &[SocketAddr],
        weight: u32,
        at: &str,
        warn: &mut impl FnMut(String),
    ) {
        let addrs: Vec<SocketAddr> = match &d.target {
            Target::Named { .. } => addrs.to_vec(),
            Target::Ip(vip) => {
                let same: Vec<SocketAddr> = addrs
                    .iter()
                    .copied()
                    .filter(|a| Family::of(a.ip()) == Family::of(vip.ip()))
                    .collect();
                if same.is_empty() {
                    for a in addrs {
                        warn(format!(
                            "{}: {at} backend {a} is {} but the VIP {vip} is {}; left out",
                            d.origin,
                            Family::of(a.ip()),
                            Family::of(vip.ip())
                        ));
                    }
                }
                same
            }
        };
        for &proto in &d.protos {
            let g = self.groups.entry(group_key(&d.target, proto)).or_default();
            for &a in &addrs {
                // The same endpoint declared twice (two labels, or a port
                // label and a legacy one): one serving claim is enough.
                let w = g.backends.entry(a).or_insert(weight);
                *w = (*w).max(weight);
            }
        }
    }

    /// A host-port backend on an agent known by name, for every protocol of
    /// the declaration (an IP VIP's family is checked once it resolves).
    fn add_named_backend(&mut self, d: &Decl, hp: &HostPort, weight: u32) {
        for &proto in &d.protos {
            let g = self.groups.entry(group_key(&d.target, proto)).or_default();
            let w = g.by_name.entry(hp.clone()).or_insert(weight);
            *w = (*w).max(weight);
        }
    }

    fn finish(mut self, alloc: &mut VipAllocator) -> Result<Parsed, ParseError> {
        let mut keys: BTreeMap<Family, BTreeSet<String>> = BTreeMap::new();
        for (gk, g) in &self.groups {
            if let GroupKey::Named { key, .. } = gk {
                for f in g.families() {
                    keys.entry(f).or_default().insert(key.clone());
                }
            }
        }
        // Every family every sync, so names that are gone are released.
        let mut addrs = BTreeMap::new();
        for family in [Family::V4, Family::V6] {
            let wanted = keys.remove(&family).unwrap_or_default();
            addrs.insert(family, alloc.allocate(family, &wanted)?);
        }

        let mut services: BTreeMap<Vip, ServiceSpec> = BTreeMap::new();
        let mut named_at: BTreeMap<Vip, &str> = BTreeMap::new();
        for (gk, g) in &self.groups {
            let GroupKey::Named { key, port, proto } = gk else {
                continue;
            };
            for family in g.families() {
                let Some(&ip) = addrs.get(&family).and_then(|a| a.get(key)) else {
                    continue; // allocate() returned every wanted key
                };
                let vip = Vip {
                    addr: SocketAddr::new(ip, *port),
                    proto: *proto,
                };
                let backends = g
                    .backends
                    .iter()
                    .filter(|(b, _)| Family::of(b.ip()) == family)
                    .map(|(b, w)| (*b, *w))
                    .collect();
                named_at.insert(vip, key);
                services.insert(
                    vip,
                    ServiceSpec {
                        name: g.labels.first().cloned(),
                        origin: origin(&g.apps),
                        backends,
                    },
                );
            }
        }
        for (gk, g) in &self.groups {
            let GroupKey::Ip(vip) = gk else { continue };
            if g.backends.is_empty() {
                continue; // scaled to 0: withdrawn, like a named VIP
            }
            if let Some(key) = named_at.get(vip) {
                // Explicit addresses are the user's choice, allocated ones are
                // stable: the named VIP keeps the address either way.
                self.warnings.push(Warning {
                    pod: false,
                    app_id: g.apps.first().cloned(),
                    what: format!(
                        "VIP {vip} ({}) is the address allocated to named VIP {key}; left out",
                        g.labels.iter().cloned().collect::<Vec<_>>().join(", ")
                    ),
                });
                continue;
            }
            services.insert(
                *vip,
                ServiceSpec {
                    name: None,
                    origin: origin(&g.apps),
                    backends: g.backends.clone(),
                },
            );
        }

        self.tasks
            .sort_by(|a, b| (&a.app_id, &a.task_id).cmp(&(&b.app_id, &b.task_id)));
        let hosts = self.named_agents.into_iter().map(|n| n.host).collect();
        Ok(Parsed {
            catalog: Catalog {
                services: DesiredState { services },
                tasks: self.tasks,
            },
            warnings: self.warnings,
            hosts,
        })
    }
}

/// `app /a` or `apps /a, /b`: who declared a VIP, for the guard's warnings.
fn origin(apps: &BTreeSet<String>) -> Option<String> {
    let list: Vec<&str> = apps.iter().map(String::as_str).collect();
    match list.len() {
        0 => None,
        1 => Some(format!("app {}", list[0])),
        _ => Some(format!("apps {}", list.join(", "))),
    }
}

fn group_key(target: &Target, proto: Proto) -> GroupKey {
    match target {
        Target::Named { key, port } => GroupKey::Named {
            key: key.clone(),
            port: *port,
            proto,
        },
        Target::Ip(addr) => GroupKey::Ip(Vip { addr: *addr, proto }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::naming;
    use serde_json::{Value, json};

    /// The shared fixtures, copied into the repo so tests need nothing outside it.
    const REDIS_HOST: &str = include_str!("../../tests/fixtures/marathon/apps_redis_host.json");
    const BRIDGE_DOCKER: &str =
        include_str!("../../tests/fixtures/marathon/apps_bridge_docker.json");
    const MALFORMED: &str = include_str!("../../tests/fixtures/marathon/apps_malformed.json");

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn backends(list: &[(&str, u32)]) -> BTreeMap<SocketAddr, u32> {
        list.iter().map(|(a, w)| (sa(a), *w)).collect()
    }

    fn parse_with(body: &str) -> (Parsed, VipAllocator) {
        let mut alloc = VipAllocator::new();
        let p = parse_apps(body.as_bytes(), &mut alloc).unwrap();
        (p, alloc)
    }

    fn parse(body: &str) -> Parsed {
        parse_with(body).0
    }

    fn apps(list: Value) -> String {
        json!({ "apps": list }).to_string()
    }

    fn services(p: &Parsed) -> &BTreeMap<Vip, ServiceSpec> {
        &p.catalog.services.services
    }

    /// The VIPs (address/protocol) the named VIP with this label value got.
    fn named(p: &Parsed, label: &str) -> Vec<Vip> {
        services(p)
            .iter()
            .filter(|(_, s)| s.name.as_deref() == Some(label))
            .map(|(v, _)| *v)
            .collect()
    }

    fn only_named(p: &Parsed, label: &str) -> (Vip, ServiceSpec) {
        let vips = named(p, label);
        assert_eq!(vips.len(), 1, "{label}: {vips:?}");
        (vips[0], services(p)[&vips[0]].clone())
    }

    fn vip(addr: &str, proto: Proto) -> Vip {
        Vip {
            addr: sa(addr),
            proto,
        }
    }

    fn in_v4_range(a: IpAddr) -> bool {
        matches!(a, IpAddr::V4(v) if v.octets()[0] == 11)
    }

    fn in_v6_range(a: IpAddr) -> bool {
        matches!(a, IpAddr::V6(v) if v.segments()[..4] == [0xfd01, 0xc, 0, 0])
    }

    fn task<'a>(p: &'a Parsed, id: &str) -> &'a TaskRecord {
        p.catalog.tasks.iter().find(|t| t.task_id == id).unwrap()
    }

    /// Some warning is about `app` and contains every needle.
    #[track_caller]
    fn warned(p: &Parsed, app: Option<&str>, needles: &[&str]) {
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

    fn running(id: &str, host: &str, ports: &[u16]) -> Value {
        json!({"id": id, "host": host, "ports": ports, "state": "TASK_RUNNING",
               "slaveId": "agent-S1", "ipAddresses": [{"ipAddress": host, "protocol": "IPv4"}]})
    }

    fn host_app(id: &str, label: &str, tasks: Value) -> Value {
        json!({"id": id, "portDefinitions": [{"port": 0, "labels": {"VIP_0": label}}], "tasks": tasks})
    }

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
                task_ips: vec![ip("10.0.1.11")],
                ports: vec![TaskPort {
                    port: 31256,
                    protocols: vec![Proto::Tcp],
                    name: Some("redis".into())
                }],
                host_ports: true,
                running: true,
                healthy: Some(true),
                in_pod: false,
            }
        );
        let t = task(
            &p,
            "redis.instance-6f1c5941-8e2a-11ea-9c1d-0242ac110002._app.1",
        );
        assert_eq!((t.running, t.healthy), (true, Some(false)));
    }

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
        assert_eq!(t.task_ips, vec![ip("172.17.0.3")]);
        assert_eq!(t.agent_ip, Some(ip("10.0.1.11")));
        assert!(t.host_ports && t.running && t.healthy == Some(true));
        assert_eq!(
            t.ports,
            vec![
                TaskPort {
                    port: 31001,
                    protocols: vec![Proto::Tcp],
                    name: Some("http".into())
                },
                TaskPort {
                    port: 31002,
                    protocols: vec![Proto::Tcp, Proto::Udp],
                    name: Some("stats".into())
                },
            ]
        );
    }

    #[test]
    fn group_path_name() {
        let p = parse(&apps(json!([host_app(
            "/group/app",
            "/group/app:80",
            json!([running("t1", "10.0.0.1", &[31000])])
        )])));
        let (v, spec) = only_named(&p, "/group/app:80");
        assert_eq!(
            naming::vip_fqdn("/group/app", FRAMEWORK).as_deref(),
            Some("groupapp.marathon.l4lb.thisdcos.directory")
        );
        let mut alloc = VipAllocator::new();
        let want = alloc
            .allocate(Family::V4, &["groupapp.marathon".to_owned()].into())
            .unwrap();
        assert_eq!(
            v,
            vip(&format!("{}:80", want["groupapp.marathon"]), Proto::Tcp)
        );
        assert_eq!(spec.backends, backends(&[("10.0.0.1:31000", 1)]));
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
        assert_eq!(t.task_ips, vec![ip("fd00::5")]);
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
    fn weights_follow_state_and_health() {
        let t = |id: &str, host: &str, state: &str, results: Value| {
            json!({"id": id, "host": host, "ports": [31000], "state": state,
                   "healthCheckResults": results})
        };
        let checked = json!({
            "id": "/hc", "healthChecks": [{"protocol": "TCP"}],
            "portDefinitions": [{"port": 0, "labels": {"VIP_0": "/hc:80"}}],
            "tasks": [
                t("ok", "10.0.0.1", "TASK_RUNNING", json!([{"alive": true}, {"alive": true}])),
                t("sick", "10.0.0.2", "TASK_RUNNING", json!([{"alive": true}, {"alive": false}])),
                t("new", "10.0.0.3", "TASK_RUNNING", json!([])),
                t("nores", "10.0.0.4", "TASK_RUNNING", Value::Null),
                t("dying", "10.0.0.5", "TASK_KILLING", json!([{"alive": true}])),
                t("failed", "10.0.0.6", "TASK_FAILED", json!([])),
                t("staging", "10.0.0.7", "TASK_STAGING", json!([])),
                t("gone", "10.0.0.8", "TASK_UNREACHABLE", json!([{"alive": true}])),
                t("killed", "10.0.0.9", "TASK_KILLED", json!([])),
            ]
        });
        let unchecked = json!({
            "id": "/plain",
            "portDefinitions": [{"port": 0, "labels": {"VIP_0": "/plain:80"}}],
            "tasks": [
                t("p-run", "10.0.1.1", "TASK_RUNNING", json!([{"alive": false}])),
                t("p-kill", "10.0.1.2", "TASK_KILLING", json!([])),
            ]
        });
        let p = parse(&apps(json!([checked, unchecked])));
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        assert_eq!(
            only_named(&p, "/hc:80").1.backends,
            backends(&[
                ("10.0.0.1:31000", 1),
                ("10.0.0.2:31000", 0),
                ("10.0.0.3:31000", 0),
                ("10.0.0.4:31000", 0),
                ("10.0.0.5:31000", 0),
            ])
        );
        // Without health checks, results are ignored.
        assert_eq!(
            only_named(&p, "/plain:80").1.backends,
            backends(&[("10.0.1.1:31000", 1), ("10.0.1.2:31000", 0)])
        );
        // Every task has a record; `running` and `healthy` tell them apart.
        assert_eq!(p.catalog.tasks.len(), 11);
        let rh = |id| {
            let t = task(&p, id);
            (t.running, t.healthy)
        };
        assert_eq!(rh("ok"), (true, Some(true)));
        assert_eq!(rh("sick"), (true, Some(false)));
        assert_eq!(rh("new"), (true, Some(false)));
        assert_eq!(rh("dying"), (false, Some(true)));
        assert_eq!(rh("failed"), (false, Some(false)));
        assert_eq!(rh("p-run"), (true, None));
        assert_eq!(task(&p, "failed").ports[0].port, 31000);
    }

    #[test]
    fn failed_task_only_withdraws_the_vip() {
        let p = parse(&apps(json!([host_app(
            "/f",
            "/f:80",
            json!([{"id": "t", "host": "10.0.0.1", "ports": [], "state": "TASK_FAILED"}])
        )])));
        // No complaint about the missing port: a failed task needs none.
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        assert!(services(&p).is_empty(), "{:?}", services(&p));
        let t = task(&p, "t");
        assert!(!t.running && t.ports.is_empty());
    }

    #[test]
    fn apps_sharing_a_vip_merge() {
        let p = parse(&apps(json!([
            host_app(
                "/redis-a",
                "redis:6379",
                json!([running("a1", "10.0.0.1", &[31001])])
            ),
            host_app(
                "/redis-b",
                "/redis:6379",
                json!([running("b1", "10.0.0.2", &[31002])])
            ),
        ])));
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        assert_eq!(services(&p).len(), 1);
        let (v, spec) = services(&p).iter().next().unwrap();
        assert_eq!(v.addr, sa("11.202.66.162:6379"));
        // The smallest spelling names it, whatever the app order.
        assert_eq!(spec.name.as_deref(), Some("/redis:6379"));
        assert_eq!(
            spec.backends,
            backends(&[("10.0.0.1:31001", 1), ("10.0.0.2:31002", 1)])
        );
    }

    #[test]
    fn legacy_vip_port_labels() {
        let p = parse(&apps(json!([
            {"id": "/old", "portDefinitions": [{"port": 0}, {"port": 0, "protocol": "udp"}],
             "tasks": [
                {"id": "t1", "host": "10.0.0.1", "ports": [31000, 31001], "state": "TASK_RUNNING",
                 "labels": {"vip_PORT0": "tcp://legacy:5000", "vip_port1": "udp://10.10.0.1:53"}},
                {"id": "t2", "host": "10.0.0.2", "ports": [31100, 31101], "state": "TASK_RUNNING",
                 "labels": [{"key": "vip_PORT0", "value": "tcp://legacy:5000"}]},
                {"id": "t3", "host": "10.0.0.3", "ports": [31200, 31201], "state": "TASK_RUNNING"}
             ]},
            {"id": "/old-app-label", "labels": {"VIP_PORT0": "TCP:///applabel:7000"},
             "portDefinitions": [{"port": 0}],
             "tasks": [running("u1", "10.0.0.9", &[32000])]}
        ])));
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        // Task labels apply to their own task only.
        let (v, spec) = only_named(&p, "legacy:5000");
        assert_eq!((v.proto, v.addr.port()), (Proto::Tcp, 5000));
        assert_eq!(
            spec.backends,
            backends(&[("10.0.0.1:31000", 1), ("10.0.0.2:31100", 1)])
        );
        assert_eq!(
            services(&p)[&vip("10.10.0.1:53", Proto::Udp)].backends,
            backends(&[("10.0.0.1:31001", 1)])
        );
        // App labels reach every task of the app.
        assert_eq!(
            only_named(&p, "/applabel:7000").1.backends,
            backends(&[("10.0.0.9:32000", 1)])
        );
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
                .all(|t| t.app_id != "/pdnotlist" && t.app_id != "/badmode")
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

    #[test]
    fn addresses_stable_across_syncs() {
        let mut alloc = VipAllocator::new();
        let both = apps(json!([
            host_app("/a", "/a:80", json!([running("a", "10.0.0.1", &[1])])),
            host_app("/b", "/b:80", json!([running("b", "10.0.0.2", &[1])])),
        ]));
        let s1 = parse_apps(both.as_bytes(), &mut alloc).unwrap();
        let only_b = apps(json!([host_app(
            "/b",
            "/b:80",
            json!([running("b", "10.0.0.2", &[1])])
        )]));
        let s2 = parse_apps(only_b.as_bytes(), &mut alloc).unwrap();
        assert_eq!(named(&s1, "/b:80"), named(&s2, "/b:80"));
        // `/a` is gone, so its name is released.
        assert_eq!(alloc.allocations(Family::V4).len(), 1);
        assert_eq!(alloc.get(Family::V4, "a.marathon"), None);
    }

    #[test]
    fn ip_vip_keeps_its_family() {
        let p = parse(&apps(json!([{
            "id": "/v6only",
            "networks": [{"mode": "container", "name": "dcos6"}],
            "container": {"portMappings": [{"containerPort": 80, "labels": {"VIP_0": "12.0.0.2:80"}}]},
            "tasks": [{"id": "t", "host": "10.0.1.11", "state": "TASK_RUNNING",
                       "ipAddresses": [{"ipAddress": "fd00::7"}]}]
        }, {
            "id": "/v4host",
            "portDefinitions": [{"port": 0, "labels": {"VIP_0": "12.0.0.2:80"}}],
            "tasks": [running("h", "10.0.0.1", &[31000])]
        }])));
        warned(
            &p,
            Some("/v6only"),
            &[
                "container.portMappings[0] label VIP_0: tasks[0] (t) backend [fd00::7]:80 is IPv6 but the VIP 12.0.0.2:80 is IPv4",
            ],
        );
        assert_eq!(
            services(&p)[&vip("12.0.0.2:80", Proto::Tcp)].backends,
            backends(&[("10.0.0.1:31000", 1)])
        );
    }

    #[test]
    fn ip_vip_on_a_named_address_is_left_out() {
        let taken = "11.202.66.162:6379"; // redis.marathon's address
        let p = parse(&apps(json!([
            host_app(
                "/redis",
                "/redis:6379",
                json!([running("r", "10.0.0.1", &[31000])])
            ),
            host_app(
                "/squatter",
                taken,
                json!([running("s", "10.0.0.2", &[31000])])
            ),
        ])));
        warned(
            &p,
            Some("/squatter"),
            &[&format!(
                "VIP {taken}/tcp ({taken}) is the address allocated to named VIP redis.marathon"
            )],
        );
        let s = &services(&p)[&vip(taken, Proto::Tcp)];
        assert_eq!(s.name.as_deref(), Some("/redis:6379"));
        assert_eq!(s.backends, backends(&[("10.0.0.1:31000", 1)]));
    }

    #[test]
    fn named_vip_follows_backend_family() {
        // Host networking on an IPv6 agent: only an IPv6 VIP.
        let p = parse(&apps(json!([host_app(
            "/h6",
            "/h6:80",
            json!([{"id": "t", "host": "fd00::11", "ports": [31000], "state": "TASK_RUNNING"}])
        )])));
        let (v, spec) = only_named(&p, "/h6:80");
        assert!(in_v6_range(v.addr.ip()), "{v}");
        assert_eq!(spec.backends, backends(&[("[fd00::11]:31000", 1)]));
        // No backends at all: no VIP in either family.
        let p = parse(&apps(json!([host_app("/none", "/none:80", json!([]))])));
        assert!(services(&p).is_empty(), "{:?}", services(&p));
    }

    /// Mirrors dcos-net's dcos_l4lb_mesos_poller_SUITE `test_app_restart`: an
    /// app with VIP `merp:5000` has its VIP while a task runs, none once it
    /// has no task (scaled to 0), and the same VIP again, now to the new
    /// task's host port, after the restart. Here also for an IP VIP, and the
    /// named VIP's address comes back identical (lookup_vips: names go when
    /// their last backend goes).
    #[test]
    fn app_scaled_to_zero_withdraws_its_vips_until_tasks_return() {
        let app = |tasks: Value| {
            json!({"id": "/app", "portDefinitions": [{"port": 0, "labels": {
                "VIP_0": "merp:5000", "VIP_1": "198.18.0.9:5000"}}], "tasks": tasks})
        };
        let mut alloc = VipAllocator::new();
        let mut sync = |tasks: Value| parse_apps(apps(json!([app(tasks)])).as_bytes(), &mut alloc);
        let up = sync(json!([running("t1", "10.0.0.243", &[12049])])).unwrap();
        let (v1, spec) = only_named(&up, "merp:5000");
        assert_eq!(spec.backends, backends(&[("10.0.0.243:12049", 1)]));
        assert!(services(&up).contains_key(&vip("198.18.0.9:5000", Proto::Tcp)));

        let zero = sync(json!([])).unwrap();
        assert!(services(&zero).is_empty(), "{:?}", services(&zero));
        assert!(zero.warnings.is_empty(), "{:?}", zero.warnings);

        let back = sync(json!([running("t2", "10.0.0.243", &[23176])])).unwrap();
        let (v3, spec) = only_named(&back, "merp:5000");
        assert_eq!(v3, v1, "the address is a hash: it comes back identical");
        assert_eq!(spec.backends, backends(&[("10.0.0.243:23176", 1)]));
        assert_eq!(
            services(&back)[&vip("198.18.0.9:5000", Proto::Tcp)].backends,
            backends(&[("10.0.0.243:23176", 1)])
        );
    }

    /// Weight-0 backends are still backends: a VIP whose only task is
    /// killing, or failing its health check, stays (existing connections keep
    /// working, new ones are refused).
    #[test]
    fn weight_zero_backends_keep_the_vip() {
        let killing = json!([{"id": "k", "host": "10.0.0.1", "ports": [31000],
                              "state": "TASK_KILLING"}]);
        let p = parse(&apps(json!([host_app("/k", "/k:80", killing)])));
        assert_eq!(
            only_named(&p, "/k:80").1.backends,
            backends(&[("10.0.0.1:31000", 0)])
        );
        let mut sick = host_app("/s", "/s:80", json!([running("s", "10.0.0.2", &[31000])]));
        sick["healthChecks"] = json!([{"protocol": "TCP"}]);
        sick["tasks"][0]["healthCheckResults"] = json!([{"alive": false}]);
        let p = parse(&apps(json!([sick])));
        assert_eq!(
            only_named(&p, "/s:80").1.backends,
            backends(&[("10.0.0.2:31000", 0)])
        );
    }

    /// dcos-net's dcos_net_mesos_listener_SUITE `hello_overlay_world`: the
    /// hello-world SDK scheduler's task declares `VIP_0: /api.hello-world:80`;
    /// dcos-net names it `api.hello-world.marathon.l4lb.thisdcos.directory`
    /// (mesos_state domain_frag keeps the dot) and hashes
    /// `api.hello-world.marathon` to 11.46.7.245.
    #[test]
    fn dotted_label_keeps_its_dots() {
        let p = parse(&apps(json!([host_app(
            "/hello-world",
            "/api.hello-world:80",
            json!([running("hello-world.1", "10.0.0.49", &[19630])])
        )])));
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        let (v, spec) = only_named(&p, "/api.hello-world:80");
        assert_eq!(v, vip("11.46.7.245:80", Proto::Tcp));
        assert_eq!(spec.backends, backends(&[("10.0.0.49:19630", 1)]));
        assert_eq!(
            naming::vip_fqdn("/api.hello-world", FRAMEWORK).as_deref(),
            Some("api.hello-world.marathon.l4lb.thisdcos.directory")
        );
    }

    #[test]
    fn allocation_failure_is_an_error() {
        let mut tiny = VipAllocator::with_ranges(
            (std::net::Ipv4Addr::new(10, 0, 0, 0), 1),
            (naming::V6_RANGE_START, naming::V6_RANGE_SIZE),
        );
        let body = apps(json!([
            host_app("/a", "/a:80", json!([running("a", "10.0.0.1", &[1])])),
            host_app("/b", "/b:80", json!([running("b", "10.0.0.2", &[1])])),
        ]));
        let e = parse_apps(body.as_bytes(), &mut tiny).unwrap_err();
        assert!(matches!(e, ParseError::Naming(_)), "{e}");
    }
}

/// Agents known by name (`task.host` a hostname): the catalog takes their
/// address from a [`HostTable`] snapshot.
#[cfg(test)]
mod agent_names {
    use std::net::{IpAddr, SocketAddr};

    use serde_json::{Value, json};

    use super::*;
    use crate::{hosts::HostState, marathon::decode::decode_apps};

    fn build(apps: Value, hosts: &HostTable) -> Parsed {
        let body = json!({ "apps": apps }).to_string();
        let set = decode_apps(body.as_bytes()).unwrap();
        set.catalog_with(&mut VipAllocator::new(), hosts).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn backends_of(p: &Parsed, label: &str) -> Vec<SocketAddr> {
        p.catalog
            .services
            .services
            .values()
            .filter(|s| s.name.as_deref() == Some(label))
            .flat_map(|s| s.backends.keys().copied())
            .collect()
    }

    fn warnings(p: &Parsed) -> Vec<String> {
        p.warnings.iter().map(ToString::to_string).collect()
    }

    /// dcos-net's `dns_hostname_test` (`dcos_net_mesos_listener_tests.erl`,
    /// on `dns-hostname.json`): an agent registered as `localhost` has agent
    /// IP 127.0.0.1, and its task's records carry it.
    #[test]
    fn an_agent_named_localhost_is_127_0_0_1() {
        let apps = json!([{"id": "/test", "networks": [{"mode": "host"}],
            "portDefinitions": [{"port": 0, "labels": {"VIP_0": "/test:80"}}],
            "tasks": [{"id": "test.f12cc459-cb38-11e8-a264-2e431fa5cff2", "host": "localhost",
                       "ports": [31000], "state": "TASK_RUNNING", "slaveId": "x-S4"}]}]);
        let hosts = HostTable::resolved([("localhost", ip("127.0.0.1"))]);
        let p = build(apps, &hosts);
        assert_eq!(p.catalog.tasks[0].agent_ip, Some(ip("127.0.0.1")));
        assert_eq!(
            backends_of(&p, "/test:80"),
            ["127.0.0.1:31000".parse().unwrap()]
        );
        assert!(p.hosts.contains("localhost"));
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    }

    fn bridge_app(host: &str) -> Value {
        json!([{"id": "/web", "networks": [{"mode": "container/bridge"}],
            "container": {"portMappings": [{"containerPort": 80, "labels": {"VIP_0": "/web:80"}}]},
            "tasks": [
                {"id": "web.1", "host": host, "ports": [31001], "state": "TASK_RUNNING",
                 "ipAddresses": [{"ipAddress": "172.17.0.2", "protocol": "IPv4"}]},
                {"id": "web.2", "host": "198.18.0.3", "ports": [31002], "state": "TASK_RUNNING"}]}])
    }

    #[test]
    fn host_ports_on_a_named_agent_follow_its_address() {
        let host = "Agent-1.Example.";
        let pending = build(bridge_app(host), &HostTable::default());
        // Not looked up yet: that task's backend waits (never the container
        // address); no warning; the resolver is asked for the lower-case name.
        assert_eq!(
            backends_of(&pending, "/web:80"),
            ["198.18.0.3:31002".parse().unwrap()]
        );
        assert!(pending.warnings.is_empty(), "{:?}", pending.warnings);
        assert_eq!(
            pending.hosts.iter().map(|h| &**h).collect::<Vec<_>>(),
            ["agent-1.example"]
        );

        let resolved = HostTable::resolved([("agent-1.example", ip("198.18.0.9"))]);
        let p = build(bridge_app(host), &resolved);
        assert_eq!(
            backends_of(&p, "/web:80"),
            [
                "198.18.0.3:31002".parse().unwrap(),
                "198.18.0.9:31001".parse().unwrap()
            ]
        );
        let t = p
            .catalog
            .tasks
            .iter()
            .find(|t| t.task_id == "web.1")
            .unwrap();
        assert_eq!(t.agent_ip, Some(ip("198.18.0.9")));

        let mut failed = HostTable::default();
        failed.set(
            Arc::from("agent-1.example"),
            HostState::Failed("NXDOMAIN".into()),
        );
        let p = build(bridge_app(host), &failed);
        assert_eq!(
            backends_of(&p, "/web:80"),
            ["198.18.0.3:31002".parse().unwrap()]
        );
        assert_eq!(
            warnings(&p),
            [
                "app /web: agent host \"agent-1.example\" does not resolve (NXDOMAIN): \
              its tasks' host-port backends are left out"
            ]
        );
    }

    #[test]
    fn host_networking_falls_back_to_the_tasks_ip_addresses() {
        let apps = json!([{"id": "/db", "portDefinitions": [{"port": 0, "labels": {"VIP_0": "/db:5432"}}],
            "tasks": [{"id": "db.1", "host": "agent-2", "ports": [31010], "state": "TASK_RUNNING",
                       "ipAddresses": [{"ipAddress": "fd00::7", "protocol": "IPv6"},
                                       {"ipAddress": "198.18.0.7", "protocol": "IPv4"}]}]}]);
        let mut failed = HostTable::default();
        failed.set(Arc::from("agent-2"), HostState::Failed("timed out".into()));
        for (table, want) in [
            (HostTable::default(), "198.18.0.7"),
            (failed, "198.18.0.7"),
            (
                HostTable::resolved([("agent-2", ip("198.18.0.70"))]),
                "198.18.0.70",
            ),
        ] {
            let p = build(apps.clone(), &table);
            let addr = SocketAddr::new(ip(want), 31010);
            assert_eq!(backends_of(&p, "/db:5432"), [addr]);
            assert_eq!(p.catalog.tasks[0].agent_ip, Some(ip(want)));
        }
        let mut failed = HostTable::default();
        failed.set(Arc::from("agent-2"), HostState::Failed("timed out".into()));
        assert_eq!(
            warnings(&build(apps, &failed)),
            [
                "app /db: agent host \"agent-2\" does not resolve (timed out): \
              its host-networking tasks are reached at their ipAddresses"
            ]
        );
    }

    #[test]
    fn one_warning_per_app_and_host_and_ip_vips_keep_their_family() {
        let task = |id: &str, port: u16| json!({"id": id, "host": "gone.example", "ports": [port], "state": "TASK_RUNNING"});
        let apps = json!([
            {"id": "/a", "networks": [{"mode": "container/bridge"}],
             "container": {"portMappings": [{"containerPort": 80, "labels": {"VIP_0": "/a:80"}}]},
             "tasks": [task("a.1", 31000), task("a.2", 31001), task("a.3", 31002)]},
            {"id": "/v6", "networks": [{"mode": "container/bridge"}],
             "container": {"portMappings": [{"containerPort": 80, "labels": {"VIP_0": "[fd00::80]:80"}}]},
             "tasks": [{"id": "v6.1", "host": "v4only.example", "ports": [31003],
                        "state": "TASK_RUNNING"}]}]);
        let mut t = HostTable::resolved([("v4only.example", ip("198.18.0.4"))]);
        t.set(
            Arc::from("gone.example"),
            HostState::Failed("NXDOMAIN".into()),
        );
        let p = build(apps, &t);
        assert_eq!(
            warnings(&p),
            [
                "app /v6: agent v4only.example is at 198.18.0.4, IPv4 but the VIP \
                 [fd00::80]:80/tcp is IPv6; left out",
                "app /a: agent host \"gone.example\" does not resolve (NXDOMAIN): \
                 its tasks' host-port backends are left out",
            ]
        );
        assert!(p.catalog.services.services.is_empty());
    }

    #[test]
    fn a_host_that_is_neither_address_nor_name_is_warned_about() {
        let p = build(bridge_app("agent 1"), &HostTable::default());
        assert_eq!(
            warnings(&p),
            [
                "app /web: tasks[0] (web.1): host \"agent 1\" is neither an IP address nor a \
              host name; its host-port backends are left out"
            ]
        );
        assert!(p.hosts.is_empty());
    }
}
