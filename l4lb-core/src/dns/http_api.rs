//! The discovery HTTP API's documents (pure): what clients of Mesos-DNS and
//! dcos-net already read, built from the served [`Zones`] and the applied
//! [`Catalog`]. The agent's `http_api` serves them on the metrics listener.
//!
//! Mesos-DNS (`resolver/resolver.go`, `records/generator.go`,
//! `records/config.go`):
//! - `/v1/version` → `{"Service":"Mesos-DNS","URL":…,"Version":…}`.
//! - `/v1/config` → its `Config` object (Go field names and order).
//! - `/v1/hosts/{host}` → `[{"host","ip"}]` for the name's A records; an
//!   unknown name is still 200 with `[{"host":"","ip":""}]`.
//! - `/v1/services/{service}` → `[{"service","host","ip","port"}]` per SRV
//!   (port a string, ip the target's first A or `""`); unknown → one entry
//!   of empty strings.
//! - `/v1/enumerate` → `{"frameworks":[{"tasks":[{"name","id","records":[
//!   {"name","host","rtype"}]}],"name"}]}`: each running task's `mesos`
//!   records, a record listed under the first task that produced it.
//!
//! dcos-net (`dcos_rest_vips_handler`, `dcos_rest_dns_handler`):
//! - `/v1/vips` → `[{"vip":"<name or ip>:<port>","protocol","backend":[{"ip","port"}]}]`
//!   with an ETag (dcos-net: base64 of a SHA-1).
//! - `/v1/records` → `[{"name","host","rtype"}]`: every A, AAAA and SRV of
//!   every zone, names without the trailing dot, SRV host `target:port`.
use std::{
    collections::{BTreeMap, HashSet},
    net::IpAddr,
};

use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use serde::Serialize;
use sha1::{Digest, Sha1};

use super::ip_sources::IpSource;
use super::names;
use super::records::{self, Lookup, Zones};
use crate::model::{Catalog, Proto, Vip};
use crate::naming::{self, NamingError, VipLabel, VipName};

/// Mesos-DNS's project URL, part of its `/v1/version`.
pub const MESOS_DNS_URL: &str = "https://github.com/mesosphere/mesos-dns";

/// Mesos-DNS's `/v1/version` (a Go map: keys sorted).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Version {
    #[serde(rename = "Service")]
    pub service: &'static str,
    #[serde(rename = "URL")]
    pub url: &'static str,
    #[serde(rename = "Version")]
    pub version: String,
}

pub fn version(ours: &str) -> Version {
    Version {
        service: "Mesos-DNS",
        url: MESOS_DNS_URL,
        version: ours.to_owned(),
    }
}

/// Mesos-DNS's `Config` as `/v1/config` shows it: Go's field names (and its
/// JSON renames `HttpPort`, `DnsOn`, `HttpOn`) in its field order. Values are
/// ours, mapped onto its meaning; credentials are never shown.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct MesosDnsConfig {
    pub refresh_seconds: u32,
    pub port: u16,
    pub timeout: u32,
    pub state_timeout_seconds: u32,
    pub zk_detection_timeout: u32,
    pub http_port: u16,
    #[serde(rename = "TTL")]
    pub ttl: u32,
    #[serde(rename = "SOASerial")]
    pub soa_serial: u32,
    #[serde(rename = "SOARefresh")]
    pub soa_refresh: u32,
    #[serde(rename = "SOARetry")]
    pub soa_retry: u32,
    #[serde(rename = "SOAExpire")]
    pub soa_expire: u32,
    #[serde(rename = "SOAMinttl")]
    pub soa_minttl: u32,
    #[serde(rename = "SOAMname")]
    pub soa_mname: String,
    #[serde(rename = "SOARname")]
    pub soa_rname: String,
    pub masters: Vec<String>,
    pub resolvers: Vec<String>,
    #[serde(rename = "IPSources")]
    pub ip_sources: Vec<String>,
    pub zk: String,
    pub domain: String,
    pub file: String,
    pub listener: String,
    #[serde(rename = "HTTPListener")]
    pub http_listener: String,
    pub recurse_on: bool,
    pub dns_on: bool,
    pub http_on: bool,
    pub external_on: bool,
    #[serde(rename = "EnforceRFC952")]
    pub enforce_rfc952: bool,
    pub enumeration_on: bool,
    #[serde(rename = "MesosHTTPSOn")]
    pub mesos_https_on: bool,
    #[serde(rename = "CACertFile")]
    pub ca_cert_file: String,
    #[serde(rename = "IAMConfigFile")]
    pub iam_config_file: String,
    pub mesos_authentication: String,
}

impl Default for MesosDnsConfig {
    /// Mesos-DNS's `NewConfig()` defaults, with our TTL, SOA and IP sources.
    fn default() -> Self {
        MesosDnsConfig {
            refresh_seconds: 60,
            port: 53,
            timeout: 5,
            state_timeout_seconds: 300,
            zk_detection_timeout: 30,
            http_port: 8123,
            ttl: 60,
            soa_serial: 0,
            soa_refresh: 60,
            soa_retry: 600,
            soa_expire: 86400,
            soa_minttl: 60,
            soa_mname: "ns1.mesos.".into(),
            soa_rname: "root.ns1.mesos.".into(),
            masters: Vec::new(),
            resolvers: Vec::new(),
            ip_sources: Vec::new(),
            zk: String::new(),
            domain: records::MESOS_ZONE.into(),
            file: String::new(),
            listener: "0.0.0.0".into(),
            http_listener: "0.0.0.0".into(),
            recurse_on: false,
            dns_on: true,
            http_on: true,
            external_on: false,
            enforce_rfc952: false,
            enumeration_on: true,
            mesos_https_on: false,
            ca_cert_file: String::new(),
            iam_config_file: String::new(),
            mesos_authentication: String::new(),
        }
    }
}

impl MesosDnsConfig {
    /// Mesos-DNS's `domain` (`--dns-domain`) and the SOA names under it.
    pub fn set_domain(&mut self, domain: &str) {
        self.domain = domain.to_owned();
        self.soa_mname = format!("ns1.{domain}.");
        self.soa_rname = format!("root.ns1.{domain}.");
    }
}

/// `--dns-ip-sources` in Mesos-DNS's spelling.
pub fn ip_source_names(sources: &[IpSource]) -> Vec<String> {
    sources
        .iter()
        .map(|s| format!("{s:?}").to_ascii_lowercase())
        .collect()
}

/// One entry of Mesos-DNS's `/v1/hosts/{host}`.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct HostEntry {
    pub host: String,
    pub ip: String,
}

/// One entry of Mesos-DNS's `/v1/services/{service}`.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct ServiceEntry {
    pub service: String,
    pub host: String,
    pub ip: String,
    pub port: String,
}

/// Mesos-DNS's clean-up of a path name: `.*` wildcards dropped, lower-cased,
/// absolute (trailing dot).
pub fn clean_name(raw: &str) -> String {
    let mut dom = raw.replace(".*", "").to_ascii_lowercase();
    if !dom.ends_with('.') {
        dom.push('.');
    }
    dom
}

/// The records of `dom`, none if it does not exist.
fn lookup(zones: &Zones, dom: &str) -> Vec<Record> {
    let Ok(name) = Name::from_ascii(dom) else {
        return Vec::new();
    };
    match zones.lookup(&LowerName::new(&name)) {
        Lookup::Found(_, r) => r.iter().collect(),
        _ => Vec::new(),
    }
}

fn ipv4s(zones: &Zones, dom: &str) -> Vec<String> {
    let mut ips: Vec<std::net::Ipv4Addr> = lookup(zones, dom)
        .iter()
        .filter_map(|r| match r.data() {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect();
    ips.sort();
    ips.iter().map(ToString::to_string).collect()
}

/// `/v1/hosts/{host}`: the A records of the name (sorted by address);
/// `[{"host":"","ip":""}]` when there is none.
pub fn hosts(zones: &Zones, raw: &str) -> Vec<HostEntry> {
    let dom = clean_name(raw);
    let out: Vec<HostEntry> = ipv4s(zones, &dom)
        .into_iter()
        .map(|ip| HostEntry {
            host: dom.clone(),
            ip,
        })
        .collect();
    if out.is_empty() {
        vec![HostEntry::default()]
    } else {
        out
    }
}

/// `/v1/services/{service}`: one entry per SRV of the name (sorted by target
/// and port), `service` echoing the name as asked; one empty entry when there
/// is none.
pub fn services(zones: &Zones, raw: &str) -> Vec<ServiceEntry> {
    let dom = clean_name(raw);
    let mut srvs: Vec<(String, u16)> = lookup(zones, &dom)
        .iter()
        .filter_map(|r| match r.data() {
            RData::SRV(s) => Some((s.target().to_ascii().to_ascii_lowercase(), s.port())),
            _ => None,
        })
        .collect();
    srvs.sort();
    let out: Vec<ServiceEntry> = srvs
        .into_iter()
        .map(|(host, port)| ServiceEntry {
            service: raw.to_owned(),
            ip: ipv4s(zones, &host).into_iter().next().unwrap_or_default(),
            host,
            port: port.to_string(),
        })
        .collect();
    if out.is_empty() {
        vec![ServiceEntry::default()]
    } else {
        out
    }
}

/// One record in Mesos-DNS's enumeration and dcos-net's `/v1/records`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordEntry {
    pub name: String,
    pub host: String,
    pub rtype: &'static str,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct EnumTask {
    pub name: String,
    pub id: String,
    /// `null` when the task produced no new record (Go's nil slice).
    pub records: Option<Vec<RecordEntry>>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct EnumFramework {
    pub tasks: Vec<EnumTask>,
    pub name: String,
}

/// Mesos-DNS's `/v1/enumerate`.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Enumeration {
    pub frameworks: Vec<EnumFramework>,
}

/// A record as Mesos-DNS writes it (`trailing_dot`) or dcos-net does (not).
fn record_entry(name: &Name, data: &RData, trailing_dot: bool) -> Option<RecordEntry> {
    let text = |n: &Name| {
        let s = n.to_ascii().to_ascii_lowercase();
        match trailing_dot {
            true => s,
            false => s.trim_end_matches('.').to_owned(),
        }
    };
    let (host, rtype) = match data {
        RData::A(a) => (a.0.to_string(), "A"),
        RData::AAAA(a) => (a.0.to_string(), "AAAA"),
        RData::SRV(s) => (format!("{}:{}", text(s.target()), s.port()), "SRV"),
        _ => return None,
    };
    Some(RecordEntry {
        name: text(name),
        host,
        rtype,
    })
}

/// `/v1/enumerate`: frameworks in the order their first task appears; each
/// running task (Mesos task name = the Marathon one, `/dog/big` → `big.dog`)
/// with its `mesos` records, each record only under the first task that
/// produced it (Mesos-DNS's `insertTaskRR`).
pub fn enumerate(catalog: &Catalog, sources: &[IpSource], domain: &str) -> Enumeration {
    let mut frameworks: Vec<EnumFramework> = Vec::new();
    let mut seen: HashSet<RecordEntry> = HashSet::new();
    for task in &catalog.tasks {
        let fw = match frameworks.iter().position(|f| *f.name == *task.framework) {
            Some(i) => i,
            None => {
                frameworks.push(EnumFramework {
                    tasks: Vec::new(),
                    name: task.framework.to_string(),
                });
                frameworks.len() - 1
            }
        };
        if !task.running {
            continue;
        }
        let fresh: Vec<RecordEntry> = records::mesos_task_records(task, sources, domain)
            .iter()
            .filter_map(|(n, d)| record_entry(n, d, true))
            .filter(|r| seen.insert(r.clone()))
            .collect();
        frameworks[fw].tasks.push(EnumTask {
            name: names::marathon_task_name(&task.app_id),
            id: task.task_id.to_string(),
            records: (!fresh.is_empty()).then_some(fresh),
        });
    }
    Enumeration { frameworks }
}

/// dcos-net's `/v1/records`: every A, AAAA and SRV of every zone, sorted.
pub fn all_records(zones: &Zones) -> Vec<RecordEntry> {
    let mut out: Vec<RecordEntry> = zones
        .zones()
        .iter()
        .flat_map(|z| z.iter())
        .flat_map(|(_, rs)| rs.iter())
        .filter(|r| {
            matches!(
                r.record_type(),
                RecordType::A | RecordType::AAAA | RecordType::SRV
            )
        })
        .filter_map(|r| record_entry(r.name(), r.data(), false))
        .collect();
    out.sort();
    out
}

/// One backend in dcos-net's `/v1/vips`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct VipBackend {
    pub ip: String,
    pub port: u16,
}

/// One VIP in dcos-net's `/v1/vips`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct VipEntry {
    /// `<label>.<framework>.l4lb.thisdcos.directory:<port>` for a named VIP,
    /// `<ip>:<port>` otherwise (IPv6 unbracketed, as `inet:ntoa` writes it).
    pub vip: String,
    pub protocol: &'static str,
    pub backend: Vec<VipBackend>,
}

/// The DNS name of a named VIP's label, `None` for an address VIP.
fn vip_name(label: &str) -> Option<String> {
    let name = match naming::parse_vip_label(label) {
        Ok(VipLabel {
            name: VipName::Named(n),
            ..
        }) => n,
        Err(NamingError::MissingPort { .. }) => label.to_owned(),
        _ => return None,
    };
    naming::vip_fqdn(&name, crate::declare::FRAMEWORK)
}

/// dcos-net's `/v1/vips`: the VIPs the datapath holds (`published`), each
/// with its backends taking new connections (weight > 0). Ordered as
/// dcos-net's orddict of `{Protocol, VIP, Port}`: tcp before udp, named
/// VIPs (a 2-tuple in Erlang's term order) before addresses, then by name or
/// address, then port.
pub fn vips(catalog: &Catalog, published: &std::collections::BTreeSet<Vip>) -> Vec<VipEntry> {
    // (proto, named first, name or address, port) → entry
    let mut out: BTreeMap<(u8, u8, String, IpAddr, u16), VipEntry> = BTreeMap::new();
    for (vip, spec) in &catalog.services.services {
        if !published.contains(vip) {
            continue;
        }
        let name = spec.name.as_deref().and_then(vip_name);
        let protocol = match vip.proto {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        };
        let host = name.clone().unwrap_or_else(|| vip.addr.ip().to_string());
        let backend = spec
            .backends
            .iter()
            .filter(|(_, w)| **w > 0)
            .map(|(b, _)| VipBackend {
                ip: b.ip().to_string(),
                port: b.port(),
            })
            .collect();
        let key = (
            u8::from(vip.proto == Proto::Udp),
            u8::from(name.is_none()),
            name.unwrap_or_default(),
            vip.addr.ip(),
            vip.addr.port(),
        );
        out.insert(
            key,
            VipEntry {
                vip: format!("{host}:{}", vip.addr.port()),
                protocol,
                backend,
            },
        );
    }
    out.into_values().collect()
}

/// A strong ETag for a document: `"<base64 of its SHA-1>"` (dcos-net sends
/// base64(SHA-1) of its VIP set's vector clock; ours hashes the document, so
/// equal documents have equal tags across restarts).
pub fn etag(body: &[u8]) -> String {
    format!("\"{}\"", base64(&Sha1::digest(body)))
}

/// True if an `If-None-Match` header value matches `etag` (RFC 9110 §13.1.2:
/// weak comparison, `*`, comma-separated lists).
pub fn if_none_match(header: &str, etag: &str) -> bool {
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    header
        .split(',')
        .any(|t| t.trim() == "*" || bare(t) == bare(etag))
}

/// Standard base64 with padding (RFC 4648 §4), what Erlang's `base64:encode` writes.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::ip_sources::DCOS_IP_SOURCES;
    use crate::dns::records::{ZoneOptions, build_zones};
    use crate::dns::sample::{REDIS_TASK_ID, redis_catalog};

    fn zones() -> Zones {
        let (c, p) = redis_catalog();
        build_zones(&c, &p, &ZoneOptions::default())
    }

    fn canonical() -> String {
        format!(
            "{}.marathon.mesos.",
            names::canonical_name(
                "redis-tutorial",
                REDIS_TASK_ID,
                "5d5a0c9e-1b2f-4f0e-9d1c-3c2b1a0f9e8d-S1"
            )
        )
    }

    /// Mesos-DNS `resolver.go` `RestVersion`: the three keys, sorted as Go
    /// marshals a map.
    #[test]
    fn version_shape() {
        let v = serde_json::to_string(&version("1.2.3")).unwrap();
        assert_eq!(
            v,
            r#"{"Service":"Mesos-DNS","URL":"https://github.com/mesosphere/mesos-dns","Version":"1.2.3"}"#
        );
    }

    /// Mesos-DNS `records/config.go` `NewConfig` + `initSOA`: the field names
    /// (`HttpPort`, `DnsOn`, `HttpOn` renamed) and defaults.
    #[test]
    fn config_shape() {
        let v = serde_json::to_value(MesosDnsConfig::default()).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        for k in [
            "RefreshSeconds",
            "Port",
            "HttpPort",
            "TTL",
            "SOAMname",
            "SOARname",
            "SOAMinttl",
            "IPSources",
            "Domain",
            "HTTPListener",
            "DnsOn",
            "HttpOn",
            "ExternalOn",
            "EnforceRFC952",
            "EnumerationOn",
            "MesosHTTPSOn",
        ] {
            assert!(keys.contains(&k), "{k} missing in {keys:?}");
        }
        assert_eq!(v["SOAMname"], "ns1.mesos.");
        assert_eq!(v["SOARname"], "root.ns1.mesos.");
        assert_eq!(v["SOAExpire"], 86400);
        assert_eq!(v["Domain"], "mesos");
        assert_eq!(v["EnumerationOn"], true);
        // Go's struct order: RefreshSeconds first, TTL after HttpPort.
        let s = serde_json::to_string(&MesosDnsConfig::default()).unwrap();
        assert!(s.starts_with(r#"{"RefreshSeconds":60,"Port":53,"#), "{s}");
        assert!(s.find("\"HttpPort\"").unwrap() < s.find("\"TTL\"").unwrap());
        assert_eq!(
            ip_source_names(&DCOS_IP_SOURCES),
            vec!["host".to_string(), "netinfo".to_string()]
        );
    }

    /// Mesos-DNS `RestHost` (and `resolver_test.go`'s host lookups):
    /// lower-cased, `.*` dropped, absolute; unknown → one empty entry, 200.
    #[test]
    fn hosts_shape() {
        let z = zones();
        assert_eq!(
            hosts(&z, "Redis-Tutorial.marathon.mesos"),
            vec![HostEntry {
                host: "redis-tutorial.marathon.mesos.".into(),
                ip: "127.0.1.11".into()
            }]
        );
        assert_eq!(
            serde_json::to_string(&hosts(&z, "nope.marathon.mesos")).unwrap(),
            r#"[{"host":"","ip":""}]"#
        );
        assert_eq!(
            hosts(&z, "redis.marathon.l4lb.thisdcos.directory")[0].ip,
            "11.22.130.195"
        );
    }

    /// Mesos-DNS `RestService`: service echoed as asked, host the SRV target
    /// (absolute), its first A, the port as a string; unknown → empties.
    #[test]
    fn services_shape() {
        let z = zones();
        let s = services(&z, "_redis-tutorial._tcp.marathon.mesos");
        assert_eq!(
            s,
            vec![ServiceEntry {
                service: "_redis-tutorial._tcp.marathon.mesos".into(),
                host: canonical(),
                ip: "127.0.1.11".into(),
                port: "31256".into(),
            }]
        );
        assert_eq!(
            serde_json::to_string(&services(&z, "_nope._tcp.marathon.mesos")).unwrap(),
            r#"[{"service":"","host":"","ip":"","port":""}]"#
        );
    }

    /// Mesos-DNS `generator.go` `EnumerationData` / `taskContextRecord`: a
    /// framework's tasks with `name` (the Mesos task name), `id` and their
    /// records (A on the name and the canonical name, `.slave` A, SRVs to
    /// `canonical.:port`), field order `tasks` before `name`.
    #[test]
    fn enumerate_shape() {
        let (c, _) = redis_catalog();
        let e = enumerate(&c, &DCOS_IP_SOURCES, "mesos");
        assert_eq!(e.frameworks.len(), 1);
        let fw = &e.frameworks[0];
        assert_eq!(fw.name, "marathon");
        assert_eq!(fw.tasks[0].name, "redis-tutorial");
        assert_eq!(fw.tasks[0].id, REDIS_TASK_ID);
        let recs = fw.tasks[0].records.as_ref().unwrap();
        let has = |name: &str, host: &str, rtype: &str| {
            recs.iter()
                .any(|r| r.name == name && r.host == host && r.rtype == rtype)
        };
        assert!(has("redis-tutorial.marathon.mesos.", "127.0.1.11", "A"));
        assert!(has(&canonical(), "127.0.1.11", "A"));
        assert!(has(
            "redis-tutorial.marathon.slave.mesos.",
            "127.0.1.11",
            "A"
        ));
        assert!(has(
            "_redis-tutorial._tcp.marathon.mesos.",
            &format!("{}:31256", canonical()),
            "SRV"
        ));
        let s = serde_json::to_string(&e).unwrap();
        assert!(s.starts_with(r#"{"frameworks":[{"tasks":[{"name":"redis-tutorial","id":"#));
        // A second task with the same records lists none of them again.
        let mut c2 = c.clone();
        c2.tasks.push(c.tasks[0].clone());
        let e2 = enumerate(&c2, &DCOS_IP_SOURCES, "mesos");
        assert_eq!(e2.frameworks[0].tasks[1].records, None);
        assert!(
            serde_json::to_string(&e2)
                .unwrap()
                .contains(r#""records":null"#)
        );
    }

    /// dcos-net `dcos_rest_dns_handler` `record_to_term`: names without the
    /// trailing dot, SRV host `target:port`, A/AAAA/SRV only (no SOA, NS).
    #[test]
    fn records_shape() {
        let r = all_records(&zones());
        assert!(r.contains(&RecordEntry {
            name: "redis.marathon.l4lb.thisdcos.directory".into(),
            host: "11.22.130.195".into(),
            rtype: "A"
        }));
        let canon = canonical();
        assert!(r.contains(&RecordEntry {
            name: "_redis-tutorial._tcp.marathon.mesos".into(),
            host: format!("{}:31256", canon.trim_end_matches('.')),
            rtype: "SRV"
        }));
        assert!(r.iter().all(|e| ["A", "AAAA", "SRV"].contains(&e.rtype)));
        assert!(r.iter().all(|e| !e.name.ends_with('.')));
    }

    /// dcos-net `dcos_rest_vips_handler` `vip_to_json_term`: `vip` is the
    /// full name `<label>.marathon.l4lb.thisdcos.directory:<port>`,
    /// `protocol` tcp/udp, `backend` [{ip, port}].
    #[test]
    fn vips_shape() {
        let (c, p) = redis_catalog();
        let v = serde_json::to_string(&vips(&c, &p)).unwrap();
        assert_eq!(
            v,
            r#"[{"vip":"redis.marathon.l4lb.thisdcos.directory:6379","protocol":"tcp","backend":[{"ip":"127.0.1.11","port":31256}]}]"#
        );
        // Not in the maps yet: not listed.
        assert!(vips(&c, &Default::default()).is_empty());
    }

    /// An address VIP is `<ip>:<port>`, listed after the named ones.
    #[test]
    fn vips_address_after_names() {
        let (mut c, mut p) = redis_catalog();
        let vip = Vip {
            addr: "198.18.0.7:80".parse().unwrap(),
            proto: Proto::Tcp,
        };
        c.services.services.insert(vip, Default::default());
        p.insert(vip);
        let v = vips(&c, &p);
        assert_eq!(v[0].vip, "redis.marathon.l4lb.thisdcos.directory:6379");
        assert_eq!(v[1].vip, "198.18.0.7:80");
    }

    #[test]
    fn etag_and_if_none_match() {
        // RFC 4648 test vectors for the encoder.
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        let t = etag(b"[]");
        assert!(
            t.starts_with('"') && t.ends_with('"') && t.len() == 30,
            "{t}"
        );
        assert_eq!(t, etag(b"[]"));
        assert_ne!(t, etag(b"[1]"));
        assert!(if_none_match(&t, &t));
        assert!(if_none_match(&format!("W/{t}, \"x\""), &t));
        assert!(if_none_match("*", &t));
        assert!(!if_none_match("\"x\"", &t));
    }
}
