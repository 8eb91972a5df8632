//! Catalog → DNS zones (pure, apart from the SOA serial, which is the clock).
//!
//! Three zones, as on a DC/OS cluster:
//! - `mesos` (Mesos-DNS, TTL 60; its name is [`ZoneOptions::mesos_domain`],
//!   `--dns-domain`), with the cluster records of [`super::cluster`]
//!   (`leader`, `master`, `master<N>`, `slave`, `<fw>`; `--mesos` only) and
//!   per task: `<task>.<fw>.mesos` (addresses per
//!   `--dns-ip-sources`), `<task>.<fw>.slave.mesos`, canonical
//!   `<task>-<h>-<s>.<fw>.mesos` (+ `.slave`), SRV `_<task>._tcp|_udp.<fw>.mesos`,
//!   `_<portname>._<task>._tcp|_udp.<fw>.mesos` and, for host ports,
//!   `_<task>._tcp|_udp.<fw>.slave.mesos`; `<task>` is the one-label name
//!   (`big-dog`) and the legacy dotted one (`big.dog`), see [`names`].
//! - `l4lb.thisdcos.directory` (dcos-net, TTL 5): named VIPs, only once the
//!   datapath holds them (dcos-net PR #130: publishing earlier raced clients).
//! - `dcos.thisdcos.directory` (dcos-net, TTL 5):
//!   `<task>.<fw>.agentip|containerip|autoip.dcos.thisdcos.directory`.
//!
//! Every zone has an SOA and an NS (`ns1.<zone>`, Mesos-DNS's name for
//! itself) with an address record for `ns1.<zone>`: [`ZoneOptions::ns_addrs`].
//! Only TASK_RUNNING tasks are published.
use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
};

use hickory_proto::rr::{
    LowerName, Name, RData, Record, RecordType,
    rdata::{NS, SOA},
};

use super::cluster;
use super::ip_sources::{self, DCOS_IP_SOURCES, IpSource};
use super::names;
pub use super::wire_name::ZoneName;
use super::wire_name::{self, MAX_WIRE, Target, WireName};
use super::zone_index::{Datum, HashMap, Value, ZoneIndex, ZoneNode};
pub use super::zone_node::Records;
use crate::model::{Catalog, Cluster, ServiceSpec, TaskRecord, Vip};
use crate::naming::{self, NamingError, VipLabel, VipName};

/// Mesos-DNS's default domain (`--dns-domain`).
pub const MESOS_ZONE: &str = "mesos";
/// dcos-net's task zone.
pub const DCOS_ZONE: &str = "dcos.thisdcos.directory";

/// Record TTLs in seconds; also each zone's negative-caching TTL (SOA minimum).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ttls {
    /// The `mesos` zone (Mesos-DNS default 60).
    pub mesos: u32,
    /// The dcos-net zones: `l4lb.thisdcos.directory` and
    /// `dcos.thisdcos.directory` (dcos-net's 5).
    pub l4lb: u32,
}

impl Default for Ttls {
    fn default() -> Self {
        Ttls { mesos: 60, l4lb: 5 }
    }
}

/// How zones are built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneOptions {
    pub ttls: Ttls,
    /// Addresses of `ns1.<zone>`, the NS target of every zone: where this
    /// server can be reached. Default 127.0.0.1 (the agent serves its own
    /// node); see `DnsArgs` for how the agent picks them.
    pub ns_addrs: Vec<IpAddr>,
    /// Where `<task>.<fw>.mesos` takes its addresses from, in order
    /// (`--dns-ip-sources`; default DC/OS's host, netinfo).
    pub ip_sources: Vec<IpSource>,
    /// The Mesos-DNS zone's name (`--dns-domain`, checked by
    /// [`super::domain::mesos_domain`]; default `mesos`).
    pub mesos_domain: String,
}

impl ZoneOptions {
    /// Every zone served, the Mesos-DNS one first (the order of
    /// [`Zones::zones`]).
    pub fn zone_names(&self) -> [&str; 3] {
        [&self.mesos_domain, naming::L4LB_ZONE, DCOS_ZONE]
    }
}

impl Default for ZoneOptions {
    fn default() -> Self {
        ZoneOptions {
            ttls: Ttls::default(),
            ns_addrs: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            ip_sources: DCOS_IP_SOURCES.to_vec(),
            mesos_domain: MESOS_ZONE.to_owned(),
        }
    }
}

/// One zone's data: every name that exists (including empty non-terminals,
/// which answer NOERROR/no data rather than NXDOMAIN, RFC 8020) → its values
/// ([`Records`] makes the records). A persistent map: a clone is O(1) and
/// shares the nodes, so the [`ZoneIndex`] hands out snapshots while it moves on.
/// A B-tree, not a hash trie: its leaves are 16 slots mostly full where the
/// trie's are mostly empty (at 190,000 names, ~40 bytes a name against ~130;
/// BENCHMARKS.md, "Measurements behind choices").
#[derive(Clone, Debug)]
pub struct Zone {
    pub(super) origin: LowerName,
    /// The origin as the nodes' keys spell it.
    pub(super) origin_wire: WireName,
    pub(super) ttl: u32,
    /// The apex SOA and NS.
    pub(super) apex: [Record; 2],
    /// Keyed by lower-cased wire labels ([`WireName`]): ~20-40 bytes a name
    /// where a [`LowerName`] takes ~80 inline, in every slot of the map.
    pub(super) nodes: imbl::OrdMap<WireName, Arc<ZoneNode>>,
    /// The number of values in the nodes, kept by the index.
    pub(super) records: usize,
}

impl Zone {
    pub fn origin(&self) -> &LowerName {
        &self.origin
    }

    /// The apex SOA, for the AUTHORITY section of negative answers.
    pub fn soa(&self) -> &Record {
        &self.apex[0]
    }

    /// The records of `name`, `None` if the name does not exist.
    pub fn get(&self, name: &LowerName) -> Option<Records<'_>> {
        let mut buf = [0u8; MAX_WIRE];
        self.get_wire(wire_name::encode_into(name, &mut buf)?)
    }

    /// [`Self::get`] by lower-cased wire labels.
    fn get_wire(&self, name: &[u8]) -> Option<Records<'_>> {
        let apex = match *name == *self.origin_wire {
            true => &self.apex[..],
            false => &[],
        };
        match self.nodes.get_key_value(name) {
            Some((owner, node)) => Some(Records::new(owner, self.ttl, Some(node), apex)),
            None if !apex.is_empty() => Some(Records::new(&self.origin_wire, self.ttl, None, apex)),
            None => None,
        }
    }

    /// Number of records (the apex SOA and NS included).
    pub fn record_count(&self) -> usize {
        self.records + self.apex.len()
    }

    /// Every name and its records (order unspecified).
    pub fn iter(&self) -> impl Iterator<Item = (ZoneName<'_>, Records<'_>)> {
        let origin = &self.origin_wire;
        let apex_alone = (!self.nodes.contains_key(&**origin)).then_some(origin);
        let names = apex_alone.into_iter().chain(self.nodes.keys());
        names.filter_map(|n| Some((ZoneName::new(n), self.get_wire(n)?)))
    }

    /// Every name (lower-cased wire labels, see [`Records::owner`]) and its
    /// records, in canonical order (RFC 4034 §6.1), as a transfer sends
    /// them.
    pub fn sorted(&self) -> Vec<Records<'_>> {
        let mut out: Vec<Records<'_>> = self.iter().map(|(_, r)| r).collect();
        out.sort_by(|a, b| wire_name::canonical_cmp(a.owner_wire(), b.owner_wire()));
        out
    }
}

/// All zones the server answers for; swapped whole on every catalog change.
/// [`Zones::pending`] (and `Zones::default()`, for the default options)
/// holds no zone: the state before the first catalog, in which the server
/// answers SERVFAIL for its zones (not a cacheable NXDOMAIN).
#[derive(Clone, Debug)]
pub struct Zones {
    pub(super) zones: Vec<Zone>,
    /// The apex of every zone served, loaded or not.
    served: Vec<LowerName>,
}

impl Default for Zones {
    fn default() -> Self {
        Zones::pending(&ZoneOptions::default())
    }
}

/// Result of [`Zones::lookup`].
#[derive(Debug)]
pub enum Lookup<'a> {
    /// The name is in none of the zones.
    NotOurs,
    /// In `zone`, but it does not exist.
    NxDomain(&'a Zone),
    /// Exists in `zone`; no records means an empty non-terminal.
    Found(&'a Zone, Records<'a>),
}

impl Zones {
    /// No zone loaded yet, but the names of those `opts` serves are known.
    pub fn pending(opts: &ZoneOptions) -> Zones {
        let served = opts
            .zone_names()
            .iter()
            .filter_map(|z| absolute(z))
            .map(|n| LowerName::new(&n))
            .collect();
        Zones {
            zones: Vec::new(),
            served,
        }
    }

    /// `zones` (in [`ZoneOptions::zone_names`] order) as loaded.
    pub(super) fn loaded(zones: Vec<Zone>, opts: &ZoneOptions) -> Zones {
        Zones {
            zones,
            ..Zones::pending(opts)
        }
    }

    /// True if `name` is at or below a zone served (loaded or not).
    pub fn serves(&self, name: &LowerName) -> bool {
        self.served.iter().any(|z| z.zone_of(name))
    }

    /// False for [`Zones::pending`]: no catalog has been seen yet.
    pub fn is_loaded(&self) -> bool {
        !self.zones.is_empty()
    }

    pub fn zones(&self) -> &[Zone] {
        &self.zones
    }

    pub fn record_count(&self) -> usize {
        self.zones.iter().map(Zone::record_count).sum()
    }

    /// Finds `name` (already lower-cased by being a [`LowerName`]).
    pub fn lookup(&self, name: &LowerName) -> Lookup<'_> {
        // The zones are siblings, never nested: the first match is the only one.
        let Some(zone) = self.zones.iter().find(|z| z.origin.zone_of(name)) else {
            return Lookup::NotOurs;
        };
        match zone.get(name) {
            Some(records) => Lookup::Found(zone, records),
            None => Lookup::NxDomain(zone),
        }
    }

    /// The A and AAAA records of `name`, for ADDITIONAL sections.
    pub fn addresses(&self, name: &LowerName) -> Vec<Record> {
        let Lookup::Found(_, records) = self.lookup(name) else {
            return Vec::new();
        };
        let owner = Name::from(name.clone());
        let a = records.of_type(RecordType::A, &owner);
        a.chain(records.of_type(RecordType::AAAA, &owner)).collect()
    }
}

/// Builds the three zones from a catalog. `published` are the VIPs the
/// datapath holds: a named VIP gets its name only once it is there. The
/// agent keeps a [`ZoneIndex`] instead, which updates by what changed.
pub fn build_zones(catalog: &Catalog, published: &BTreeSet<Vip>, opts: &ZoneOptions) -> Zones {
    ZoneIndex::new(opts.clone()).update(catalog, published)
}

/// Index in [`ZoneOptions::zone_names`] (and [`Zones::zones`]) of each zone.
pub(crate) const MESOS: usize = 0;
pub(crate) const L4LB: usize = 1;
pub(crate) const DCOS: usize = 2;

/// Each zone's origin and TTL, in [`ZoneOptions::zone_names`] order.
pub(crate) fn zone_heads(opts: &ZoneOptions) -> [(Name, u32); 3] {
    let ttl = [opts.ttls.mesos, opts.ttls.l4lb, opts.ttls.l4lb];
    let names = opts.zone_names();
    [0, 1, 2].map(|i| (absolute(names[i]).expect("zone names are valid"), ttl[i]))
}

/// What one running task adds to the task zones (`mesos` and
/// `dcos.thisdcos.directory`), deduplicated.
pub(crate) fn task_data(task: &TaskRecord, sources: &[IpSource], domain: &str) -> Vec<Datum> {
    let mut mesos = ZoneBuilder::new(domain);
    add_mesos_task(&mut mesos, task, sources);
    let mut dcos = ZoneBuilder::new(DCOS_ZONE);
    add_dcos_task(&mut dcos, task);
    let mut out = mesos.into_data(MESOS);
    out.extend(dcos.into_data(DCOS));
    out
}

/// The name of a named VIP the datapath holds, `None` for an address VIP
/// or a label that makes no valid name.
pub(crate) fn vip_datum(vip: &Vip, spec: &ServiceSpec) -> Option<Datum> {
    let label = spec.name.as_deref()?;
    let name = match naming::parse_vip_label(label) {
        Ok(VipLabel {
            name: VipName::Named(n),
            ..
        }) => n,
        Ok(_) => return None, // an address VIP has no name
        // A name given without its port (`/redis`) is still the name.
        Err(NamingError::MissingPort { .. }) => label.to_owned(),
        Err(_) => return None,
    };
    let framework = spec
        .framework
        .as_deref()
        .unwrap_or(crate::declare::FRAMEWORK);
    let owner = absolute(&naming::vip_fqdn(&name, framework)?)?;
    Some(Datum {
        zone: L4LB,
        owner: WireName::new(&owner),
        value: Value::Addr(vip.addr.ip()),
    })
}

/// The cluster records of `c` in the Mesos-DNS zone `domain`.
pub(crate) fn cluster_data(c: &Cluster, domain: &str) -> Vec<Datum> {
    let mut z = ZoneBuilder::new(domain);
    cluster::add_cluster(&mut z, c);
    z.into_data(MESOS)
}

/// Every zone's `ns1.<zone>` addresses.
pub(crate) fn glue_data(opts: &ZoneOptions) -> Vec<Datum> {
    let mut out = Vec::new();
    for (i, zone) in opts.zone_names().iter().enumerate() {
        let mut z = ZoneBuilder::new(zone);
        let ns1 = z.name("ns1").expect("ns1.<zone> is valid");
        z.add_addrs(&ns1, opts.ns_addrs.iter().copied());
        out.extend(z.into_data(i));
    }
    out
}

/// A zone's apex records: its SOA (serial `serial`, negative TTL `ttl`) and
/// its NS, `ns1.<zone>`.
pub(crate) fn apex_records(origin: &Name, ttl: u32, serial: u32) -> [Record; 2] {
    let ns1 = Name::from_ascii("ns1")
        .and_then(|n| n.append_domain(origin))
        .expect("ns1.<zone> is valid");
    let root = Name::from_ascii("root")
        .and_then(|n| n.append_domain(&ns1))
        .expect("valid");
    let soa = SOA::new(ns1.clone(), root, serial, 60, 600, 86400, ttl);
    [
        Record::from_rdata(origin.clone(), ttl, RData::SOA(soa)),
        Record::from_rdata(origin.clone(), ttl, RData::NS(NS(ns1))),
    ]
}

/// Mesos-DNS's records of one task, once under its one-label name
/// (`big-dog`) and once under the legacy dotted name (`big.dog`) when that
/// differs, each with its own canonical name, as Mesos-DNS does for a task
/// with a DiscoveryInfo name (every Marathon task has one).
fn add_mesos_task(z: &mut ZoneBuilder, task: &TaskRecord, sources: &[IpSource]) {
    let Some(fw) = names::domain_frag(&task.framework) else {
        return;
    };
    let addrs = ip_sources::task_addrs(task, sources);
    let label = names::mesos_task_label(&task.app_id);
    let legacy = names::mesos_task_name(&task.app_id).filter(|l| Some(l) != label.as_ref());
    for tname in label.iter().chain(legacy.iter()) {
        add_mesos_names(z, task, tname, &fw, &addrs);
    }
}

fn add_mesos_names(
    z: &mut ZoneBuilder,
    task: &TaskRecord,
    tname: &str,
    fw: &str,
    addrs: &[IpAddr],
) {
    let canonical = names::canonical_name(tname, &task.task_id, &task.agent_id);
    let (Some(short), Some(canon)) = (
        z.name(&format!("{tname}.{fw}")),
        z.name(&format!("{canonical}.{fw}")),
    ) else {
        return;
    };
    z.add_addrs(&short, addrs.iter().copied());
    z.add_addrs(&canon, addrs.iter().copied());
    if let Some(agent) = task.agent_ip {
        let slave_short = z.name(&format!("{tname}.{fw}.slave"));
        let slave_canon = z.name(&format!("{canonical}.{fw}.slave"));
        for n in slave_short.iter().chain(slave_canon.iter()) {
            z.add_addrs(n, [agent]);
        }
        if let Some(target) = slave_canon.filter(|_| task.host_ports && !task.in_pod) {
            add_slave_srvs(z, task, tname, fw, target);
        }
    }
    // An SRV target must resolve: no addresses, no SRV.
    if !addrs.is_empty() {
        add_task_srvs(z, task, tname, fw, &canon);
    }
}

/// `_<task>._<proto>.<fw>.mesos` (and `_<portname>._<task>…` for named
/// ports) → the canonical name, one per port and protocol the port declares
/// (Mesos-DNS's DiscoveryInfo ports).
fn add_task_srvs(z: &mut ZoneBuilder, task: &TaskRecord, tname: &str, fw: &str, canon: &WireName) {
    let target = Target::from(canon);
    for port in &task.ports {
        let pname = port.name.as_deref().map(names::rfc1123_label);
        for proto in &port.protocols {
            let mut owners = vec![format!("_{tname}._{proto}.{fw}")];
            if let Some(p) = pname.as_deref().filter(|p| !p.is_empty()) {
                owners.push(format!("_{p}._{tname}._{proto}.{fw}"));
            }
            for owner in owners {
                if let Some(owner) = z.name(&owner) {
                    z.add_srv(&owner, port.port, target.clone());
                }
            }
        }
    }
}

/// Mesos-DNS's SRVs of a task's host-port resources:
/// `_<task>._tcp|_udp.<fw>.slave.mesos` → `<canonical>.<fw>.slave.mesos`, both
/// protocols whatever the port declares (as in a real DC/OS zone). Only tasks
/// that map host ports have such resources, and never a pod's containers
/// (Marathon gives a pod's ports to its executor).
fn add_slave_srvs(z: &mut ZoneBuilder, task: &TaskRecord, tname: &str, fw: &str, target: WireName) {
    let target = Target::from(&target);
    for proto in ["tcp", "udp"] {
        let Some(owner) = z.name(&format!("_{tname}._{proto}.{fw}.slave")) else {
            continue;
        };
        for port in &task.ports {
            z.add_srv(&owner, port.port, target.clone());
        }
    }
}

/// dcos-net's names: the whole Mesos task name mangled into one label
/// (`app.group` → `app-group`), then the framework, then the address kind.
fn add_dcos_task(z: &mut ZoneBuilder, task: &TaskRecord) {
    let (Some(tname), Some(fw)) = (
        naming::normalize_label(&names::marathon_task_name(&task.app_id)),
        naming::normalize_label(&task.framework),
    ) else {
        return;
    };
    let agent: Vec<IpAddr> = task.agent_ip.into_iter().collect();
    // autoip: the agent when the task maps host ports, else the container
    // (dcos-net); a task without container IPs falls back to its agent.
    let auto: &[IpAddr] = if task.host_ports || task.task_ips.is_empty() {
        &agent
    } else {
        &task.task_ips
    };
    for (kind, addrs) in [
        ("agentip", agent.as_slice()),
        ("containerip", &task.task_ips),
        ("autoip", auto),
    ] {
        if let Some(n) = z.name(&format!("{tname}.{fw}.{kind}")) {
            z.add_addrs(&n, addrs.iter().copied());
        }
    }
}

/// The `mesos` records of one task, as Mesos-DNS lists them in its
/// enumeration: (owner, data), each owner lower-cased and absolute, sorted.
/// The same builder as the zone's, so the two never disagree.
pub(crate) fn mesos_task_records(
    task: &TaskRecord,
    sources: &[IpSource],
    domain: &str,
) -> Vec<(Name, RData)> {
    let mut z = ZoneBuilder::new(domain);
    add_mesos_task(&mut z, task, sources);
    z.into_records()
}

/// `s` as an absolute name, `None` if it is not a valid one (too long).
fn absolute(s: &str) -> Option<Name> {
    let mut n = Name::from_ascii(s).ok()?;
    n.set_fqdn(true);
    Some(n)
}

#[derive(Default)]
struct Node {
    addrs: BTreeSet<IpAddr>,
    srv: BTreeSet<(u16, Target)>,
}

/// Collects one zone's data, deduplicated, before it becomes records.
/// Owners are kept as the zones keep them (lower-cased wire labels): made
/// once per name, hashed as bytes, handed to the zone as they are.
pub(super) struct ZoneBuilder {
    /// The origin as given (checked by [`ZoneBuilder::new`]) and as wire
    /// labels: the suffix of every name made here.
    origin: String,
    origin_wire: WireName,
    nodes: HashMap<WireName, Node>,
}

impl ZoneBuilder {
    pub(super) fn new(origin: &str) -> Self {
        let name = absolute(origin).expect("zone names are valid");
        ZoneBuilder {
            origin: origin.trim_end_matches('.').to_owned(),
            origin_wire: WireName::new(&name),
            // A task's names in one zone: 2-12.
            nodes: HashMap::with_capacity_and_hasher(16, Default::default()),
        }
    }

    /// `prefix.<origin>.`, lower-cased; `None` if not a valid name.
    pub(super) fn name(&self, prefix: &str) -> Option<WireName> {
        match wire_name::plain_prefixed(prefix, &self.origin_wire) {
            Some(name) => name,
            None => absolute(&format!("{prefix}.{}.", self.origin)).map(|n| WireName::new(&n)),
        }
    }

    pub(super) fn add_addrs(&mut self, name: &WireName, addrs: impl IntoIterator<Item = IpAddr>) {
        let mut addrs = addrs.into_iter().peekable();
        if addrs.peek().is_some() {
            self.node(name).addrs.extend(addrs);
        }
    }

    /// An SRV at `name` to `target` (a [`Target`] that other SRVs share,
    /// or a name of its own).
    pub(super) fn add_srv(&mut self, name: &WireName, port: u16, target: impl Into<Target>) {
        self.node(name).srv.insert((port, target.into()));
    }

    fn node(&mut self, name: &WireName) -> &mut Node {
        if !self.nodes.contains_key(name) {
            self.nodes.insert(name.clone(), Node::default());
        }
        self.nodes.get_mut(name).expect("inserted above")
    }

    /// The data as (owner, record data), sorted: the enumeration's view.
    pub(super) fn into_records(self) -> Vec<(Name, RData)> {
        let mut out: Vec<(Name, RData)> = self
            .into_data(MESOS)
            .into_iter()
            .map(|d| (d.owner.to_name(), d.value.rdata()))
            .collect();
        out.sort_by(|a, b| (&a.0, a.1.to_string()).cmp(&(&b.0, b.1.to_string())));
        out
    }

    /// The collected data as zone `zone`'s (see [`ZoneOptions::zone_names`]).
    fn into_data(self, zone: usize) -> Vec<Datum> {
        let mut out = Vec::new();
        for (owner, node) in self.nodes {
            let values = (node.addrs.into_iter().map(Value::Addr))
                .chain(node.srv.into_iter().map(|(p, t)| Value::Srv(p, t)));
            out.extend(values.map(|value| Datum {
                zone,
                owner: owner.clone(),
                value,
            }));
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::Proto;

    pub(crate) use crate::dns::sample::{REDIS_TASK_ID, redis_catalog};

    pub(crate) fn lower(s: &str) -> LowerName {
        LowerName::new(&absolute(s).unwrap())
    }

    fn records(z: &Zones, name: &str) -> Vec<Record> {
        match z.lookup(&lower(name)) {
            Lookup::Found(_, r) => r.iter().collect(),
            other => panic!("{name}: {other:?}"),
        }
    }

    fn addrs(z: &Zones, name: &str) -> BTreeSet<IpAddr> {
        records(z, name)
            .iter()
            .filter_map(|r| match r.data() {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })
            .collect()
    }

    fn ips(s: &[&str]) -> BTreeSet<IpAddr> {
        s.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn canonical() -> String {
        format!("redis-tutorial-{}-s1", names::task_id_hash(REDIS_TASK_ID))
    }

    #[test]
    fn redis_tutorial_mesos_records() {
        let (catalog, published) = redis_catalog();
        let z = build_zones(&catalog, &published, &ZoneOptions::default());
        let a = records(&z, "redis-tutorial.marathon.mesos");
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].ttl(), 60);
        assert_eq!(
            addrs(&z, "redis-tutorial.marathon.mesos"),
            ips(&["127.0.1.11"])
        );
        assert_eq!(
            addrs(&z, "redis-tutorial.marathon.slave.mesos"),
            ips(&["127.0.1.11"])
        );
        let canon = format!("{}.marathon.mesos", canonical());
        assert_eq!(addrs(&z, &canon), ips(&["127.0.1.11"]));
        assert_eq!(
            addrs(&z, &format!("{}.marathon.slave.mesos", canonical())),
            ips(&["127.0.1.11"])
        );
        for owner in [
            "_redis-tutorial._tcp.marathon.mesos",
            "_redis._redis-tutorial._tcp.marathon.mesos",
        ] {
            let srv = records(&z, owner);
            assert_eq!(srv.len(), 1, "{owner}");
            let RData::SRV(s) = srv[0].data() else {
                panic!("{srv:?}")
            };
            assert_eq!((s.priority(), s.weight(), s.port()), (0, 1, 31256));
            assert_eq!(s.target().to_string(), format!("{canon}."));
            assert_eq!(srv[0].ttl(), 60);
        }
        // TCP only: no _udp SRV.
        assert!(matches!(
            z.lookup(&lower("_redis-tutorial._udp.marathon.mesos")),
            Lookup::NxDomain(_)
        ));
        // Empty non-terminals exist.
        assert!(records(&z, "marathon.mesos").is_empty());
        assert!(records(&z, "_tcp.marathon.mesos").is_empty());
        assert!(matches!(
            z.lookup(&lower("nope.marathon.mesos")),
            Lookup::NxDomain(_)
        ));
    }

    #[test]
    fn vip_names_only_when_published() {
        let (catalog, published) = redis_catalog();
        let z = build_zones(&catalog, &published, &ZoneOptions::default());
        let a = records(&z, "redis.marathon.l4lb.thisdcos.directory");
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].ttl(), 5);
        assert_eq!(
            addrs(&z, "redis.marathon.l4lb.thisdcos.directory"),
            ips(&["11.22.130.195"])
        );
        let z = build_zones(&catalog, &BTreeSet::new(), &ZoneOptions::default());
        assert!(matches!(
            z.lookup(&lower("redis.marathon.l4lb.thisdcos.directory")),
            Lookup::NxDomain(_)
        ));
    }

    /// dcos-net names a VIP `<label>.<framework>`: the same label declared by
    /// an SDK framework's task (`hello-world`) is another name than
    /// Marathon's, and only the VIP's own framework gives it.
    #[test]
    fn vip_names_follow_the_declaring_framework() {
        let (mut catalog, published) = redis_catalog();
        let first = *catalog.services.services.keys().next().unwrap();
        let spec = catalog.services.services.get_mut(&first).unwrap();
        spec.name = Some("overlay-vip:80".into());
        spec.framework = Some("hello-world".into());
        let z = build_zones(&catalog, &published, &ZoneOptions::default());
        assert_eq!(
            addrs(&z, "overlay-vip.hello-world.l4lb.thisdcos.directory"),
            ips(&["11.22.130.195"])
        );
        assert!(matches!(
            z.lookup(&lower("overlay-vip.marathon.l4lb.thisdcos.directory")),
            Lookup::NxDomain(_)
        ));
    }

    #[test]
    fn dcos_zone_names() {
        let (mut catalog, published) = redis_catalog();
        let mut bridged = TaskRecord::clone(&catalog.tasks[0]);
        bridged.app_id = "/group/app".into();
        bridged.task_id = "app.group.1".into();
        bridged.agent_ip = Some("127.0.2.1".parse().unwrap());
        bridged.task_ips = vec!["127.0.9.1".parse().unwrap(), "fd00::9".parse().unwrap()].into();
        catalog.tasks.push(Arc::new(bridged.clone()));
        let mut container = bridged;
        container.app_id = "/group/web".into();
        container.host_ports = false;
        catalog.tasks.push(Arc::new(container));
        let z = build_zones(&catalog, &published, &ZoneOptions::default());
        let d = |n: &str| addrs(&z, &format!("{n}.dcos.thisdcos.directory"));
        assert_eq!(d("redis-tutorial.marathon.agentip"), ips(&["127.0.1.11"]));
        assert_eq!(d("redis-tutorial.marathon.autoip"), ips(&["127.0.1.11"]));
        assert_eq!(d("app-group.marathon.agentip"), ips(&["127.0.2.1"]));
        assert_eq!(
            d("app-group.marathon.containerip"),
            ips(&["127.0.9.1", "fd00::9"])
        );
        assert_eq!(d("app-group.marathon.autoip"), ips(&["127.0.2.1"]));
        assert_eq!(
            d("web-group.marathon.autoip"),
            ips(&["127.0.9.1", "fd00::9"])
        );
        assert_eq!(
            records(&z, "web-group.marathon.autoip.dcos.thisdcos.directory")[0].ttl(),
            5
        );
        // Mesos-DNS: one label and the legacy dotted name; DC/OS's IP
        // sources give the agent's IPv4 and the task's IPv6.
        for name in ["app-group.marathon.mesos", "app.group.marathon.mesos"] {
            assert_eq!(addrs(&z, name), ips(&["127.0.2.1", "fd00::9"]), "{name}");
        }
        assert_eq!(
            addrs(&z, "app.group.marathon.slave.mesos"),
            ips(&["127.0.2.1"])
        );
    }

    #[test]
    fn only_running_tasks_and_instances_aggregate() {
        let (mut catalog, published) = redis_catalog();
        let mut second = TaskRecord::clone(&catalog.tasks[0]);
        second.task_id = "redis-tutorial.2".into();
        second.agent_id = "x-S2".into();
        second.task_ips = vec!["127.0.1.12".parse().unwrap()].into();
        second.agent_ip = Some("127.0.1.12".parse().unwrap());
        catalog.tasks.push(Arc::new(second));
        let mut killing = TaskRecord::clone(&catalog.tasks[0]);
        killing.task_id = "redis-tutorial.3".into();
        killing.task_ips = vec!["127.0.1.13".parse().unwrap()].into();
        killing.running = false;
        catalog.tasks.push(Arc::new(killing));
        let z = build_zones(&catalog, &published, &ZoneOptions::default());
        assert_eq!(
            addrs(&z, "redis-tutorial.marathon.mesos"),
            ips(&["127.0.1.11", "127.0.1.12"])
        );
        assert_eq!(records(&z, "_redis-tutorial._tcp.marathon.mesos").len(), 2);
        let h3 = names::task_id_hash("redis-tutorial.3");
        assert!(matches!(
            z.lookup(&lower(&format!("redis-tutorial-{h3}-s1.marathon.mesos"))),
            Lookup::NxDomain(_)
        ));
    }

    #[test]
    fn udp_tcp_ports_and_agent_fallback() {
        let (mut catalog, published) = redis_catalog();
        let t = Arc::make_mut(&mut catalog.tasks[0]);
        t.task_ips = Box::default();
        t.ports[0].protocols = [Proto::Udp, Proto::Tcp].into();
        t.ports[0].name = Some("Dns_Port".into());
        let z = build_zones(&catalog, &published, &ZoneOptions::default());
        assert_eq!(
            addrs(&z, "redis-tutorial.marathon.mesos"),
            ips(&["127.0.1.11"])
        );
        for owner in [
            "_redis-tutorial._udp.marathon.mesos",
            "_redis-tutorial._tcp.marathon.mesos",
            "_dns-port._redis-tutorial._udp.marathon.mesos",
        ] {
            assert_eq!(records(&z, owner).len(), 1, "{owner}");
        }
        // No address at all: A records and SRV are left out, not dangling.
        Arc::make_mut(&mut catalog.tasks[0]).agent_ip = None;
        let z = build_zones(&catalog, &published, &ZoneOptions::default());
        assert!(matches!(
            z.lookup(&lower("_redis-tutorial._tcp.marathon.mesos")),
            Lookup::NxDomain(_)
        ));
    }

    #[test]
    fn soa_ns_and_glue() {
        let opts = ZoneOptions {
            ttls: Ttls { mesos: 30, l4lb: 7 },
            ns_addrs: ips(&["127.0.0.53", "::1"]).into_iter().collect(),
            ..ZoneOptions::default()
        };
        let z = build_zones(&Catalog::default(), &BTreeSet::new(), &opts);
        assert!(z.is_loaded());
        for (zone, ttl) in [
            ("mesos", 30),
            ("l4lb.thisdcos.directory", 7),
            ("dcos.thisdcos.directory", 7),
        ] {
            let apex = records(&z, zone);
            let soa = apex
                .iter()
                .find(|r| r.record_type() == RecordType::SOA)
                .unwrap();
            let RData::SOA(s) = soa.data() else { panic!() };
            assert_eq!(s.mname().to_string(), format!("ns1.{zone}."));
            assert_eq!(s.minimum(), ttl);
            assert_eq!(soa.ttl(), ttl);
            assert!(apex.iter().any(|r| r.record_type() == RecordType::NS));
            assert_eq!(
                addrs(&z, &format!("ns1.{zone}")),
                ips(&["127.0.0.53", "::1"])
            );
        }
        assert!(!Zones::default().is_loaded());
        assert!(Zones::default().serves(&lower("x.mesos")));
        assert!(Zones::default().serves(&lower("MESOS")));
        assert!(!Zones::default().serves(&lower("thisdcos.directory")));
        assert!(matches!(
            Zones::default().lookup(&lower("x.mesos")),
            Lookup::NotOurs
        ));
    }

    #[test]
    fn case_insensitive_lookup() {
        let (catalog, published) = redis_catalog();
        let z = build_zones(&catalog, &published, &ZoneOptions::default());
        let n = LowerName::new(&Name::from_ascii("Redis-Tutorial.MARATHON.Mesos.").unwrap());
        assert!(matches!(z.lookup(&n), Lookup::Found(_, r) if r.len() == 1));
    }

    fn srv_targets(z: &Zones, owner: &str) -> BTreeSet<(u16, String)> {
        records(z, owner)
            .iter()
            .filter_map(|r| match r.data() {
                RData::SRV(s) => Some((s.port(), s.target().to_string())),
                _ => None,
            })
            .collect()
    }

    /// App `/dog/big` (Mesos task name `big.dog`): mesos-dns
    /// generator_test.go TestInsertState's `big-dog.marathon.mesos` and
    /// `_big-dog._tcp.marathon.mesos` → `big-dog-<hash>-<tail>.marathon.mesos.`,
    /// plus the legacy dotted set Mesos-DNS serves beside it.
    #[test]
    fn group_app_gets_one_label_and_legacy_names() {
        let (mut catalog, published) = redis_catalog();
        let t = Arc::make_mut(&mut catalog.tasks[0]);
        t.app_id = "/dog/big".into();
        t.task_id = "liquor-store.b8db9f73-562f-11e4-a088-c20493233aa5".into();
        t.agent_id = "20140803-125133-3041283216-5050-2410-0".into();
        t.ports[0].name = Some("http".into());
        let z = build_zones(&catalog, &published, &ZoneOptions::default());
        let agent = ips(&["127.0.1.11"]);
        for name in [
            "big-dog.marathon.mesos",
            "big-dog.marathon.slave.mesos",
            "big-dog-4dfjd-0.marathon.mesos",
            "big-dog-4dfjd-0.marathon.slave.mesos",
            "big.dog.marathon.mesos",
            "big.dog-4dfjd-0.marathon.mesos",
        ] {
            assert_eq!(addrs(&z, name), agent, "{name}");
        }
        let canon = |n: &str| {
            [(31256, n.to_string())]
                .into_iter()
                .collect::<BTreeSet<_>>()
        };
        for owner in [
            "_big-dog._tcp.marathon.mesos",
            "_http._big-dog._tcp.marathon.mesos",
        ] {
            assert_eq!(
                srv_targets(&z, owner),
                canon("big-dog-4dfjd-0.marathon.mesos."),
                "{owner}"
            );
        }
        assert_eq!(
            srv_targets(&z, "_big.dog._tcp.marathon.mesos"),
            canon("big.dog-4dfjd-0.marathon.mesos.")
        );
        // Host ports: the agent SRVs, both protocols, to the `.slave` canonical.
        for owner in [
            "_big-dog._tcp.marathon.slave.mesos",
            "_big-dog._udp.marathon.slave.mesos",
        ] {
            assert_eq!(
                srv_targets(&z, owner),
                canon("big-dog-4dfjd-0.marathon.slave.mesos."),
                "{owner}"
            );
        }
        // The path is reversed, never taken in order.
        assert!(matches!(
            z.lookup(&lower("dog-big.marathon.mesos")),
            Lookup::NxDomain(_)
        ));
    }

    /// No host ports (container networking): no `.slave` SRV, as in the
    /// DC/OS AXFR's `docker-on-dcos`.
    #[test]
    fn container_tasks_have_no_slave_srv() {
        let (mut catalog, published) = redis_catalog();
        let t = Arc::make_mut(&mut catalog.tasks[0]);
        t.host_ports = false;
        t.task_ips = vec!["127.0.9.1".parse().unwrap()].into();
        let z = build_zones(&catalog, &published, &ZoneOptions::default());
        assert!(matches!(
            z.lookup(&lower("_redis-tutorial._tcp.marathon.slave.mesos")),
            Lookup::NxDomain(_)
        ));
        assert_eq!(records(&z, "_redis-tutorial._tcp.marathon.mesos").len(), 1);
    }

    /// `--dns-ip-sources`: DC/OS's default gives the agent, netinfo first
    /// the task's own address; the `.slave` names stay the agent's.
    #[test]
    fn ip_sources_pick_the_task_address() {
        let (mut catalog, published) = redis_catalog();
        Arc::make_mut(&mut catalog.tasks[0]).task_ips = vec!["127.0.9.1".parse().unwrap()].into();
        let z = build_zones(&catalog, &published, &ZoneOptions::default());
        assert_eq!(
            addrs(&z, "redis-tutorial.marathon.mesos"),
            ips(&["127.0.1.11"])
        );
        let opts = ZoneOptions {
            ip_sources: vec![IpSource::Netinfo, IpSource::Host],
            ..ZoneOptions::default()
        };
        let z = build_zones(&catalog, &published, &opts);
        assert_eq!(
            addrs(&z, "redis-tutorial.marathon.mesos"),
            ips(&["127.0.9.1"])
        );
        let canon = format!("{}.marathon.mesos", canonical());
        assert_eq!(addrs(&z, &canon), ips(&["127.0.9.1"]));
        assert_eq!(
            addrs(&z, "redis-tutorial.marathon.slave.mesos"),
            ips(&["127.0.1.11"])
        );
    }
}
