//! The desired state: what the datapath should hold, independent of where it
//! came from (static file, Marathon) and of how the maps encode it. Pure data.
use std::{
    fmt,
    net::{IpAddr, SocketAddr},
};

use serde::Serialize;

mod backends;
mod packed;
mod protocols;
pub use backends::Backends;
pub use packed::{PackedRecords, UnpackError};
pub use protocols::Protocols;

/// Transport protocol of a VIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn ipproto(self) -> u8 {
        match self {
            Proto::Tcp => l4lb_common::IPPROTO_TCP,
            Proto::Udp => l4lb_common::IPPROTO_UDP,
        }
    }

    pub fn from_ipproto(p: u8) -> Option<Proto> {
        match p {
            l4lb_common::IPPROTO_TCP => Some(Proto::Tcp),
            l4lb_common::IPPROTO_UDP => Some(Proto::Udp),
            _ => None,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

impl std::str::FromStr for Proto {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            other => Err(format!("unknown protocol {other:?} (expected tcp or udp)")),
        }
    }
}

/// A service's identity in the datapath: the address clients connect to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Vip {
    pub addr: SocketAddr,
    pub proto: Proto,
}

impl fmt::Display for Vip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.proto)
    }
}

/// What one VIP balances to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ServiceSpec {
    /// The VIP label it was declared with (`/redis:6379`), for named VIPs.
    pub name: Option<String>,
    /// The framework a named VIP belongs to, when it is not Marathon's
    /// (a Mesos task's: `hello-world`); its DNS name is `<label>.<framework>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub framework: Option<String>,
    /// Who declared it (`app /shop/web`, `vips[2] (vip …)`), for warnings
    /// only: it is not part of what the datapath holds.
    pub origin: Option<String>,
    /// Backend → weight (0 = no new connections, existing ones untouched).
    pub backends: Backends,
}

/// Everything the datapath should hold. Same family for a VIP and all its
/// backends is an invariant the sources guarantee (see `config`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DesiredState {
    pub services: ServiceMap,
}

/// The desired services as a persistent map: a copy is O(1) and shares
/// everything, and [`imbl::OrdMap::diff`] of two versions skips the parts
/// they share, so the planner finds what changed since the last catalog by
/// itself (a source that keeps one between catalogs makes that O(change)).
pub type ServiceMap = imbl::OrdMap<Vip, ServiceSpec>;

/// The catalog's services for the readers of a catalog (DNS, the HTTP
/// API): a copy of `map` that shares every node with it, O(1) in memory.
pub fn desired_state(map: &ServiceMap) -> DesiredState {
    DesiredState {
        services: map.clone(),
    }
}

/// `services` as a [`ServiceMap`] that shares with `last` every service the
/// two have equal: each service is compared once and only those that differ
/// are copied, so a diff of the result with `last` visits only those. For a
/// source that rebuilds its catalog whole (a file, a full Marathon read).
pub fn service_map(last: &ServiceMap, services: &ServiceMap) -> ServiceMap {
    if services.ptr_eq(last) {
        return last.clone();
    }
    let mut map = last.clone();
    for vip in last.keys().filter(|v| !services.contains_key(*v)) {
        map.remove(vip);
    }
    for (vip, spec) in services {
        if last.get(vip) != Some(spec) {
            map.insert(*vip, spec.clone());
        }
    }
    map
}

/// True if both addresses are the same family (the socket hooks cannot turn an
/// IPv4 connect() into an IPv6 one).
pub fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

/// One task as the DNS zones need it (Mesos-DNS and dcos-net records).
/// Produced by the Marathon source; the static file has none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TaskRecord {
    /// Marathon app id, absolute: `/group/app` (shared by the app's tasks).
    pub app_id: std::sync::Arc<str>,
    /// Mesos task id (`redis.instance-…._app.1`).
    pub task_id: Box<str>,
    /// Framework name for DNS (`marathon`), shared by every task that names it.
    pub framework: std::sync::Arc<str>,
    /// Mesos agent id (`…-S1`): its last `-` field is the canonical name's suffix.
    pub agent_id: std::sync::Arc<str>,
    /// The agent's address (`task.host` when it is an IP, else None).
    pub agent_ip: Option<IpAddr>,
    /// The task's own addresses (`ipAddresses`), IPv4 and IPv6.
    pub task_ips: Box<[IpAddr]>,
    /// Ports the task serves, in port-definition / port-mapping order.
    pub ports: Box<[TaskPort]>,
    /// True if the task maps host ports (host or bridge networking): dcos-net's
    /// `autoip` is then the agent IP, else the container IP.
    pub host_ports: bool,
    /// TASK_RUNNING (TASK_KILLING and others are false).
    pub running: bool,
    /// None: no health checks; Some(false): unhealthy or no result yet.
    pub healthy: Option<bool>,
    /// A container of a Marathon pod. Marathon gives a pod's host ports to
    /// the pod's executor, not to its tasks, so Mesos-DNS serves no `.slave`
    /// SRVs for them (those come from a task's port resources).
    pub in_pod: bool,
    /// The task's zone (fault domain) as the control plane reports it
    /// (Marathon's `tasks[].zone`): what `--locality zone` compares.
    /// Interned: a cluster has a handful of zones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<std::sync::Arc<str>>,
}

/// One port of a task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TaskPort {
    /// The port clients use for this task: the host port for host/bridge
    /// networking, the container port for container networking.
    pub port: u16,
    /// One or both protocols (`udp,tcp` gives both).
    pub protocols: Protocols,
    /// The port's name (`portDefinitions[].name` / `portMappings[].name`), if
    /// any; interned (every task of an app names its ports alike).
    pub name: Option<std::sync::Arc<str>>,
}

/// Everything a source knows: the datapath's desired state plus the task
/// records the DNS server publishes. Replaced whole on every sync; the
/// records are shared with the source's per-app state, not copied.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Catalog {
    pub services: DesiredState,
    pub tasks: Vec<std::sync::Arc<TaskRecord>>,
    /// Records kept packed (the Marathon source's `Keep::Packed`), one per
    /// part in the parts' order: [`Catalog::unpacked`] makes them `tasks`
    /// for a reader.
    #[serde(skip)]
    pub packed: Vec<std::sync::Arc<PackedRecords>>,
    /// The Mesos cluster itself (masters, agents, frameworks), for
    /// Mesos-DNS's cluster records. Only the `--mesos` source knows it.
    pub cluster: Option<std::sync::Arc<Cluster>>,
}

/// The Mesos cluster as Mesos-DNS's cluster records need it, every address
/// already resolved (what has none is left out).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Cluster {
    /// The leading master (`/master/state`'s `leader`, or the master the
    /// operator API stream is held from). None: no master records at all.
    pub leader: Option<SocketAddr>,
    /// The configured masters (`--mesos`), in order.
    pub masters: Vec<SocketAddr>,
    /// Each agent's address, with its port when known.
    pub agents: Vec<Endpoint>,
    /// Each framework: its name (raw) and its scheduler's address.
    pub frameworks: Vec<(String, Endpoint)>,
}

/// An address with an optional port (an agent's or a scheduler's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: Option<u16>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rebuilt_catalog_shares_what_did_not_change() {
        let vip = |i: u8| Vip {
            addr: SocketAddr::new(IpAddr::from([11, 0, 0, i]), 80),
            proto: Proto::Tcp,
        };
        let spec = |w: u32| ServiceSpec {
            backends: [("10.0.0.1:80".parse().unwrap(), w)].into(),
            ..Default::default()
        };
        let mut services: ServiceMap = (0..200).map(|i| (vip(i), spec(1))).collect();
        let last = service_map(&ServiceMap::new(), &services);
        assert!(last.iter().eq(&services));
        services.insert(vip(7), spec(0));
        services.remove(&vip(9));
        services.insert(vip(250), spec(1));
        let next = service_map(&last, &services);
        assert!(next.iter().eq(&services));
        let changed: Vec<Vip> = crate::plan::changed_vips(&last, &next);
        assert_eq!(changed, [vip(7), vip(9), vip(250)]);
        assert!(
            service_map(&next, &services).ptr_eq(&next),
            "nothing changed, nothing copied"
        );
    }
}
