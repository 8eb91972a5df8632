//! The static VIP file (a source layer): YAML, or JSON (a YAML subset, read
//! by the same parser so errors carry the same `vips[i].field` paths).
//!
//! ```yaml
//! vips:
//!   - vip: 11.0.0.1:6379          # an explicit VIP …
//!     protocol: tcp               # tcp | udp | "udp,tcp" (two VIPs); default tcp
//!     backends: ["127.0.0.2:7001", {addr: "127.0.0.3:7001", weight: 2}]
//!   - name: /redis:6379           # … or a named VIP (a Marathon VIP_n label value)
//!     backends: ["[::1]:7002"]
//! ```
//!
//! [`parse_config`] checks everything it can on its own; the rest (a named
//! VIP's allocated address clashing with an explicit one) is checked when
//! [`StaticConfig::desired_state`] resolves names. Errors name the entry and
//! the field: `vips[1] (vip 11.0.0.1:6379): backends[2]: weight 101 out of
//! range 0..=100`.
use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
};

use l4lb_common::{MAX_SERVICES, MAX_WEIGHT};
use serde::{
    Deserialize, Deserializer,
    de::{self, MapAccess, Visitor},
};

use crate::declare::{self, Repeats};
use crate::model::{DesiredState, Proto, ServiceSpec, Vip};
use crate::naming::{self, Family, NamingError, VipAllocator, VipName};

/// What `l4lb-agent run` serves without `--config`.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../examples/demo.yaml");

pub use crate::declare::FRAMEWORK;

/// Why a VIP file was refused (the agent then keeps its last good state).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not YAML/JSON, or not the file's shape (unknown field, wrong type);
    /// the message carries the entry's path (`vips[0]: unknown field …`).
    #[error("{0}")]
    Parse(String),
    /// A bad value in entry `index`; `entry` reads `vips[1] (vip 11.0.0.1:6379)`.
    #[error("{entry}: {msg}")]
    Entry {
        index: usize,
        entry: String,
        msg: String,
    },
    #[error("{count} VIPs, more than the datapath's {MAX_SERVICES}")]
    TooManyServices { count: usize },
    #[error(transparent)]
    Naming(#[from] NamingError),
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        source: Box<ConfigError>,
    },
}

/// Backend → weight, as in [`ServiceSpec::backends`].
pub type Backends = BTreeMap<SocketAddr, u32>;

/// Where an entry's VIP address comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `vip: 11.0.0.1:6379`.
    Addr(SocketAddr),
    /// `name: /redis:6379`: the address is allocated per backend family.
    Named {
        /// The label value as written (`/redis:6379`): `ServiceSpec::name`.
        label: String,
        /// Allocator key, `redis.marathon`.
        key: String,
        port: u16,
    },
}

/// One validated `vips[index]` entry.
///
/// An empty `backends` list is valid: the VIP stays in the datapath and
/// refuses connections, which fails fast where an absent VIP would leave
/// clients waiting on a route to nowhere. A named VIP with no backends has no
/// family to follow and gets an IPv4 address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipEntry {
    pub index: usize,
    pub target: Target,
    /// Sorted, no duplicates; `protocol: udp,tcp` gives both.
    pub protos: Vec<Proto>,
    /// Backend → weight (0..=MAX_WEIGHT).
    pub backends: Backends,
}

impl VipEntry {
    /// The backends' families, or IPv4 for `backends: []`. Unlike a Marathon
    /// app scaled to 0 (withdrawn, as dcos-net does), an empty list here is
    /// the operator's explicit choice: the VIP stays and refuses connections
    /// with EPERM.
    fn families(&self) -> BTreeSet<Family> {
        let mut f: BTreeSet<Family> = self.backends.keys().map(|b| Family::of(b.ip())).collect();
        if f.is_empty() {
            f.insert(Family::V4);
        }
        f
    }

    /// The entry's VIP address(es), each with the backends it balances to:
    /// one per backend family for a named VIP.
    fn resolve(&self, alloc: &VipAllocator) -> Result<Vec<(SocketAddr, Backends)>, ConfigError> {
        let (key, port) = match &self.target {
            Target::Addr(a) => return Ok(vec![(*a, self.backends.clone())]),
            Target::Named { key, port, .. } => (key, *port),
        };
        self.families()
            .into_iter()
            .map(|family| {
                let ip = alloc.get(family, key).ok_or_else(|| {
                    self.error(format!("no {family} address allocated for {key:?}"))
                })?;
                let backends = self
                    .backends
                    .iter()
                    .filter(|(b, _)| Family::of(b.ip()) == family)
                    .map(|(b, w)| (*b, *w))
                    .collect();
                Ok((SocketAddr::new(ip, port), backends))
            })
            .collect()
    }

    fn error(&self, msg: String) -> ConfigError {
        ConfigError::Entry {
            index: self.index,
            entry: self.to_string(),
            msg,
        }
    }
}

impl fmt::Display for VipEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            Target::Addr(a) => write!(f, "vips[{}] (vip {a})", self.index),
            Target::Named { label, .. } => write!(f, "vips[{}] (name {label})", self.index),
        }
    }
}

/// A parsed and validated static VIP file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StaticConfig {
    pub entries: Vec<VipEntry>,
}

impl StaticConfig {
    /// Allocator keys of the named VIPs that need a `family` address.
    pub fn named_keys(&self, family: Family) -> BTreeSet<String> {
        self.entries
            .iter()
            .filter_map(|e| match &e.target {
                Target::Named { key, .. } if e.families().contains(&family) => Some(key.clone()),
                _ => None,
            })
            .collect()
    }

    /// Allocates this file's named VIPs (releasing every other name in
    /// `alloc`: right when this file is the allocator's only user) and builds
    /// the desired state. Reuse `alloc` across reloads so names keep their
    /// addresses.
    pub fn desired_state(&self, alloc: &mut VipAllocator) -> Result<DesiredState, ConfigError> {
        for family in [Family::V4, Family::V6] {
            alloc.allocate(family, &self.named_keys(family))?;
        }
        self.desired_state_with(alloc)
    }

    /// Builds the desired state from addresses already in `alloc`, for an
    /// agent that shares one allocator between sources and allocates the
    /// union of their [`StaticConfig::named_keys`] itself.
    pub fn desired_state_with(&self, alloc: &VipAllocator) -> Result<DesiredState, ConfigError> {
        let mut services = crate::model::ServiceMap::new();
        let mut owner: BTreeMap<Vip, usize> = BTreeMap::new();
        for e in &self.entries {
            let name = match &e.target {
                Target::Addr(_) => None,
                Target::Named { label, .. } => Some(label.clone()),
            };
            for (addr, backends) in e.resolve(alloc)? {
                for &proto in &e.protos {
                    let vip = Vip { addr, proto };
                    if let Some(first) = owner.insert(vip, e.index) {
                        return Err(e.error(format!(
                            "duplicate VIP {vip}, already declared by {}",
                            self.describe(first)
                        )));
                    }
                    services.insert(
                        vip,
                        ServiceSpec {
                            name: name.clone(),
                            framework: None,
                            origin: Some(e.to_string()),
                            backends: (&backends).into(),
                        },
                    );
                }
            }
        }
        if services.len() > MAX_SERVICES as usize {
            return Err(ConfigError::TooManyServices {
                count: services.len(),
            });
        }
        Ok(DesiredState { services })
    }

    fn describe(&self, index: usize) -> String {
        self.entries
            .iter()
            .find(|e| e.index == index)
            .map_or_else(|| format!("vips[{index}]"), |e| e.to_string())
    }
}

const EMPTY: &str = "empty config: expected a mapping with a `vips` list (`vips: []` for none)";

/// Parses and validates a VIP file's text (YAML or JSON).
///
/// `vips` is required, so an empty or truncated file (an editor mid-save) is
/// an error and the agent keeps its last good state; `vips: []` means no VIPs.
pub fn parse_config(text: &str) -> Result<StaticConfig, ConfigError> {
    if text.trim().is_empty() {
        return Err(ConfigError::Parse(EMPTY.into()));
    }
    let raw = deserialize_yaml(text)?;
    let entries = raw
        .vips
        .into_iter()
        .enumerate()
        .map(|(i, r)| validate_entry(i, r))
        .collect::<Result<Vec<_>, _>>()?;
    check_duplicates(&entries)?;
    Ok(StaticConfig { entries })
}

/// The file's YAML (JSON is YAML) into its raw shape. serde-saphyr parses
/// within its default budgets (events, depth, aliases), so a hostile file
/// cannot make the agent allocate without bound; `serde_path_to_error` puts
/// the entry's path (`vips[0].backends[1]`) in front of the parser's
/// one-line message, which carries the line and column.
fn deserialize_yaml(text: &str) -> Result<RawFile, ConfigError> {
    let options = serde_saphyr::options! { with_snippet: false };
    let mut path = String::new();
    serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            path = e.path().to_string();
            e.into_inner()
        })
    })
    .map_err(|e| {
        let mut msg = e.to_string();
        if path == "." && msg.starts_with("unexpected end of input") {
            // Only comments: as empty as an empty file.
            return ConfigError::Parse(EMPTY.into());
        }
        if !path.is_empty() && path != "." {
            msg = format!("{path}: {msg}");
        }
        if msg.contains("expected string") && text.contains(": [") {
            // `vip: [::1]:80` unquoted is a YAML list.
            msg.push_str(" (quote addresses that start with '[', e.g. \"[::1]:80\")");
        }
        ConfigError::Parse(msg)
    })
}

/// [`parse_config`] with errors that start with the path.
pub fn parse_file_text(path: &Path, text: &str) -> Result<StaticConfig, ConfigError> {
    parse_config(text).map_err(|e| ConfigError::File {
        path: path.to_owned(),
        source: Box::new(e),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with a `vips` list")]
struct RawFile {
    vips: Vec<RawEntry>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a VIP entry: a mapping with `vip` or `name`, optional `protocol`, and `backends`"
)]
struct RawEntry {
    vip: Option<String>,
    name: Option<String>,
    protocol: Option<String>,
    /// Required (may be `[]`) so a VIP with no backends is always deliberate.
    backends: Vec<RawBackend>,
}

/// `"addr:port"` or `{addr: "addr:port", weight: n}`. Hand-written instead of
/// `#[serde(untagged)]`, whose errors lose the reason and the unknown field.
struct RawBackend {
    addr: String,
    /// Signed so `weight: -1` gets our range message, not serde's type error.
    weight: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWeighted {
    addr: String,
    weight: Option<i64>,
}

impl<'de> Deserialize<'de> for RawBackend {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawBackend;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a backend: \"addr:port\" or {addr: \"addr:port\", weight: n}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawBackend, E> {
                Ok(RawBackend {
                    addr: v.to_owned(),
                    weight: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawBackend, A::Error> {
                let w = RawWeighted::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawBackend {
                    addr: w.addr,
                    weight: w.weight,
                })
            }
        }
        d.deserialize_any(V)
    }
}

fn validate_entry(index: usize, raw: RawEntry) -> Result<VipEntry, ConfigError> {
    let entry = match (&raw.vip, &raw.name) {
        (Some(v), None) => format!("vips[{index}] (vip {v})"),
        (None, Some(n)) => format!("vips[{index}] (name {n})"),
        _ => format!("vips[{index}]"),
    };
    let err = |msg: String| ConfigError::Entry {
        index,
        entry: entry.clone(),
        msg,
    };
    let target = match (raw.vip, raw.name) {
        (Some(_), Some(_)) => {
            return Err(err("has both `vip` and `name`; give exactly one".into()));
        }
        (None, None) => {
            return Err(err(
                "needs `vip` (an address:port) or `name` (a VIP label like /redis:6379)".into(),
            ));
        }
        (Some(v), None) => {
            let addr = parse_addr(&v).map_err(|m| err(format!("vip: {m}")))?;
            Target::Addr(declare::explicit(addr).map_err(|m| err(format!("vip: {m}")))?)
        }
        (None, Some(n)) => {
            let label = naming::parse_vip_label(&n).map_err(|e| err(format!("name: {e}")))?;
            match label.name {
                VipName::Ip(_) => {
                    return Err(err(format!(
                        "name: {n:?} is an address, not a name; write `vip: \"{n}\"` instead"
                    )));
                }
                VipName::Named(s) => Target::Named {
                    // parse_vip_label refuses names that normalize to nothing.
                    key: declare::named_key(&s).map_err(|m| err(format!("name: {m}")))?,
                    label: n,
                    port: label.port,
                },
            }
        }
    };
    // The operator's file: `tcp,tcp` is a mistake worth saying.
    let protos = declare::protocols(raw.protocol.as_deref(), Repeats::Refuse)
        .map_err(|m| err(format!("protocol: {m}")))?;

    let mut backends = BTreeMap::new();
    let mut first_at: BTreeMap<SocketAddr, usize> = BTreeMap::new();
    for (i, b) in raw.backends.into_iter().enumerate() {
        let at = |m: String| err(format!("backends[{i}]: {m}"));
        let addr = parse_addr(&b.addr).map_err(at)?;
        let weight = b.weight.unwrap_or(1);
        let weight = u32::try_from(weight)
            .ok()
            .filter(|w| *w <= MAX_WEIGHT)
            .ok_or_else(|| at(format!("weight {weight} out of range 0..={MAX_WEIGHT}")))?;
        if let Target::Addr(vip) = target {
            declare::backend_family(vip.ip(), addr).map_err(at)?;
        }
        if let Some(j) = first_at.insert(addr, i) {
            return Err(at(format!(
                "duplicate backend {addr}, already backends[{j}]"
            )));
        }
        backends.insert(addr, weight);
    }
    Ok(VipEntry {
        index,
        target,
        protos,
        backends,
    })
}

/// Same VIP twice is an error, not a merge: which entry's backends would win?
/// Named entries clash on (name key, port, protocol) whatever their families.
/// Clashes that need allocated addresses are caught in `desired_state_with`.
fn check_duplicates(entries: &[VipEntry]) -> Result<(), ConfigError> {
    let mut explicit: BTreeMap<(SocketAddr, Proto), usize> = BTreeMap::new();
    let mut named: BTreeMap<(&str, u16, Proto), usize> = BTreeMap::new();
    for (pos, e) in entries.iter().enumerate() {
        for &proto in &e.protos {
            let (first, what) = match &e.target {
                Target::Addr(a) => (explicit.insert((*a, proto), pos), format!("{a}/{proto}")),
                Target::Named { key, port, .. } => (
                    named.insert((key, *port, proto), pos),
                    format!("{key}:{port}/{proto}"),
                ),
            };
            if let Some(first) = first {
                return Err(e.error(format!(
                    "duplicate VIP {what}, already declared by {}",
                    entries[first]
                )));
            }
        }
    }
    Ok(())
}

/// `addr:port` with IPv6 in brackets, port 1–65535, with a specific message
/// for each way it can be wrong (std's parser says only "invalid socket
/// address syntax", also for port 65536). IPv4-mapped IPv6 addresses become
/// IPv4: the datapath stores IPv4 that way, so `[::ffff:11.0.0.1]:80` and
/// `11.0.0.1:80` are the same VIP and must be seen as duplicates.
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    let canonical = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    if let Ok(a) = s.parse::<SocketAddr>() {
        if a.port() == 0 {
            return Err(format!("port 0 in {s:?} is out of range 1..=65535"));
        }
        return Ok(canonical(a));
    }
    if s.trim().parse::<IpAddr>().is_ok() {
        return Err(format!(
            "missing port in {s:?} (expected addr:port, IPv6 as [addr]:port)"
        ));
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!(
            "missing port in {s:?} (expected addr:port, IPv6 as [addr]:port)"
        ));
    };
    let ip = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        inner.parse::<std::net::Ipv6Addr>().map(IpAddr::V6).ok()
    } else if host.contains(':') {
        return Err(format!("IPv6 address in {s:?} needs brackets: [addr]:port"));
    } else {
        host.parse::<std::net::Ipv4Addr>().map(IpAddr::V4).ok()
    };
    let Some(ip) = ip else {
        return Err(format!("bad IP address {host:?} in {s:?}"));
    };
    if let Some(p) = naming::parse_port(port) {
        return Ok(canonical(SocketAddr::new(ip, p)));
    }
    if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
        Err(format!("port {port} in {s:?} is out of range 1..=65535"))
    } else {
        Err(format!("bad port {port:?} in {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn vip(s: &str, proto: Proto) -> Vip {
        Vip { addr: sa(s), proto }
    }

    fn backends(list: &[(&str, u32)]) -> crate::model::Backends {
        list.iter().map(|(a, w)| (sa(a), *w)).collect()
    }

    fn state(text: &str) -> Result<DesiredState, ConfigError> {
        parse_config(text)?.desired_state(&mut VipAllocator::new())
    }

    /// The error message of parsing `text`, which must fail.
    fn parse_err(text: &str) -> String {
        match parse_config(text) {
            Ok(c) => panic!("parsed, expected an error: {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn assert_has(msg: &str, needles: &[&str]) {
        for n in needles {
            assert!(msg.contains(n), "{msg:?} lacks {n:?}");
        }
    }

    fn named_addr(key: &str, family: Family, port: u16) -> SocketAddr {
        let mut a = VipAllocator::new();
        a.allocate(family, &[key.to_string()].into()).unwrap();
        SocketAddr::new(a.get(family, key).unwrap(), port)
    }

    const EXAMPLE: &str = include_str!("../tests/fixtures/config/example.yaml");

    fn example_state() -> DesiredState {
        let redis6 = named_addr("redis.marathon", Family::V6, 6379);
        let mut services = crate::model::ServiceMap::new();
        services.insert(
            vip("11.0.0.1:6379", Proto::Tcp),
            ServiceSpec {
                name: None,
                framework: None,
                origin: Some("vips[0] (vip 11.0.0.1:6379)".into()),
                backends: backends(&[("127.0.0.2:7001", 1), ("127.0.0.3:7001", 2)]),
            },
        );
        services.insert(
            Vip {
                addr: redis6,
                proto: Proto::Tcp,
            },
            ServiceSpec {
                name: Some("/redis:6379".into()),
                framework: None,
                origin: Some("vips[1] (name /redis:6379)".into()),
                backends: backends(&[("[::1]:7002", 1)]),
            },
        );
        DesiredState { services }
    }

    #[test]
    fn example_parses_to_expected_state() {
        assert_eq!(state(EXAMPLE).unwrap(), example_state());
        let redis6 = named_addr("redis.marathon", Family::V6, 6379);
        assert_eq!(redis6.ip().to_string(), "fd01:c::da94:49ac:1e87:4a07");
    }

    #[test]
    fn json_parses_the_same() {
        let json = include_str!("../tests/fixtures/config/example.json");
        assert!(json.trim_start().starts_with('{'));
        assert_eq!(state(json).unwrap(), example_state());
        let compact =
            serde_json::to_string(&serde_json::from_str::<serde_json::Value>(json).unwrap())
                .unwrap();
        assert_eq!(state(&compact).unwrap(), example_state());
    }

    #[test]
    fn embedded_default_parses() {
        let s = state(EMBEDDED_DEFAULT).unwrap();
        assert_eq!(s.services.len(), 2);
        let redis4 = named_addr("redis.marathon", Family::V4, 6379);
        let spec = &s.services[&Vip {
            addr: redis4,
            proto: Proto::Tcp,
        }];
        assert_eq!(spec.name.as_deref(), Some("/redis:6379"));
        assert_eq!(spec.backends.len(), 3);
    }

    #[test]
    fn weights() {
        let s = state(
            r#"
vips:
  - vip: 11.0.0.1:80
    backends:
      - 127.0.0.1:1
      - {addr: "127.0.0.1:2", weight: 0}
      - {addr: "127.0.0.1:3", weight: 100}
      - {addr: "127.0.0.1:4"}
"#,
        )
        .unwrap();
        assert_eq!(
            s.services[&vip("11.0.0.1:80", Proto::Tcp)].backends,
            backends(&[
                ("127.0.0.1:1", 1),
                ("127.0.0.1:2", 0),
                ("127.0.0.1:3", 100),
                ("127.0.0.1:4", 1)
            ])
        );
    }

    #[test]
    fn udp_tcp_makes_two_vips() {
        for p in ["udp,tcp", "tcp,udp", "UDP, TCP"] {
            let s = state(&format!(
                "vips:\n  - vip: 11.0.0.1:53\n    protocol: \"{p}\"\n    backends: [\"127.0.0.1:5353\"]\n"
            ))
            .unwrap();
            let keys: Vec<Vip> = s.services.keys().copied().collect();
            assert_eq!(
                keys,
                [
                    vip("11.0.0.1:53", Proto::Tcp),
                    vip("11.0.0.1:53", Proto::Udp)
                ],
                "{p}"
            );
        }
        let s =
            state("vips:\n  - vip: 11.0.0.1:53\n    protocol: udp\n    backends: []\n").unwrap();
        assert_eq!(
            s.services.keys().copied().collect::<Vec<_>>(),
            [vip("11.0.0.1:53", Proto::Udp)]
        );
    }

    /// A dotted label keeps its dots in the static file too (mesos_state
    /// domain_frag), so it gets dcos-net's name and address.
    #[test]
    fn named_vip_with_dots() {
        let s = state("vips:\n  - name: /api.hello-world:80\n    backends: [\"127.0.0.1:8080\"]\n")
            .unwrap();
        let a = named_addr("api.hello-world.marathon", Family::V4, 80);
        assert_eq!(a.to_string(), "11.46.7.245:80");
        let spec = &s.services[&Vip {
            addr: a,
            proto: Proto::Tcp,
        }];
        assert_eq!(spec.name.as_deref(), Some("/api.hello-world:80"));
    }

    #[test]
    fn named_vip_ipv4() {
        let s =
            state("vips:\n  - name: /group/app:80\n    backends: [\"127.0.0.1:8080\"]\n").unwrap();
        let a = named_addr("groupapp.marathon", Family::V4, 80);
        // dcos-net's rule: 11.0.0.0 + phash2(<<"groupapp.marathon">>, 16#FFFFFE).
        assert_eq!(a.ip().to_string(), "11.101.236.127");
        assert_eq!(s.services.len(), 1);
        let spec = &s.services[&Vip {
            addr: a,
            proto: Proto::Tcp,
        }];
        assert_eq!(spec.name.as_deref(), Some("/group/app:80"));
        assert_eq!(spec.backends, backends(&[("127.0.0.1:8080", 1)]));
    }

    #[test]
    fn named_vip_ipv6() {
        let s =
            state("vips:\n  - name: redis:6379\n    backends: [\"[::1]:7002\", \"[::2]:7002\"]\n")
                .unwrap();
        let a = named_addr("redis.marathon", Family::V6, 6379);
        assert_eq!(s.services.len(), 1);
        let spec = &s.services[&Vip {
            addr: a,
            proto: Proto::Tcp,
        }];
        assert_eq!(spec.name.as_deref(), Some("redis:6379"));
        assert_eq!(
            spec.backends,
            backends(&[("[::1]:7002", 1), ("[::2]:7002", 1)])
        );
    }

    #[test]
    fn named_vip_mixed_splits_by_family() {
        let s = state(
            "vips:\n  - name: /redis:6379\n    protocol: udp,tcp\n    backends: [\"127.0.0.2:1\", \"[::1]:2\", {addr: \"127.0.0.3:1\", weight: 5}]\n",
        )
        .unwrap();
        let a4 = named_addr("redis.marathon", Family::V4, 6379);
        let a6 = named_addr("redis.marathon", Family::V6, 6379);
        assert_eq!(s.services.len(), 4);
        for proto in [Proto::Tcp, Proto::Udp] {
            let v4 = &s.services[&Vip { addr: a4, proto }];
            assert_eq!(
                v4.backends,
                backends(&[("127.0.0.2:1", 1), ("127.0.0.3:1", 5)])
            );
            let v6 = &s.services[&Vip { addr: a6, proto }];
            assert_eq!(v6.backends, backends(&[("[::1]:2", 1)]));
            assert_eq!(v6.name.as_deref(), Some("/redis:6379"));
        }
    }

    #[test]
    fn named_vip_without_backends_is_ipv4_and_empty() {
        let s = state("vips:\n  - name: /redis:6379\n    backends: []\n").unwrap();
        let a4 = named_addr("redis.marathon", Family::V4, 6379);
        assert!(
            s.services[&Vip {
                addr: a4,
                proto: Proto::Tcp
            }]
                .backends
                .is_empty()
        );
    }

    #[test]
    fn allocator_keeps_addresses_across_reloads() {
        let mut alloc = VipAllocator::new();
        let two = "vips:\n  - name: /a:80\n    backends: []\n  - name: /b:80\n    backends: []\n";
        let s1 = parse_config(two)
            .unwrap()
            .desired_state(&mut alloc)
            .unwrap();
        let s2 = parse_config("vips:\n  - name: /b:80\n    backends: []\n")
            .unwrap()
            .desired_state(&mut alloc)
            .unwrap();
        let b = |s: &DesiredState| {
            s.services
                .iter()
                .find(|(_, v)| v.name.as_deref() == Some("/b:80"))
                .map(|(k, _)| *k)
                .unwrap()
        };
        assert_eq!(b(&s1), b(&s2));
        assert_eq!(alloc.allocations(Family::V4).len(), 1);
    }

    #[test]
    fn addr_forms() {
        assert_eq!(parse_addr("127.0.0.1:0080"), Ok(sa("127.0.0.1:80")));
        assert_eq!(parse_addr("[fd01::1]:80"), Ok(sa("[fd01::1]:80")));
        assert_eq!(parse_addr("[::ffff:1.2.3.4]:1"), Ok(sa("1.2.3.4:1")));
        assert!(
            parse_addr("[::1]:65536")
                .unwrap_err()
                .contains("port 65536")
        );
    }

    #[test]
    fn ipv4_mapped_is_ipv4() {
        let s = state(
            "vips:\n  - vip: \"[::ffff:11.0.0.1]:80\"\n    backends: [\"[::ffff:127.0.0.1]:1\"]\n",
        )
        .unwrap();
        assert_eq!(
            s.services[&vip("11.0.0.1:80", Proto::Tcp)].backends,
            backends(&[("127.0.0.1:1", 1)])
        );
    }

    // ---- errors: each names the entry and the field ----

    #[test]
    fn err_weight_out_of_range() {
        let msg = parse_err(include_str!("../tests/fixtures/config/bad-weight.yaml"));
        assert_eq!(
            msg,
            "vips[1] (vip 11.0.0.1:6379): backends[2]: weight 101 out of range 0..=100"
        );
        let msg = parse_err(
            "vips:\n  - name: /x:1\n    backends: [{addr: \"127.0.0.1:1\", weight: -1}]\n",
        );
        assert_has(
            &msg,
            &["vips[0] (name /x:1): backends[0]: weight -1 out of range 0..=100"],
        );
        let msg = parse_err(
            "vips:\n  - name: /x:1\n    backends: [{addr: \"127.0.0.1:1\", weight: 1.5}]\n",
        );
        assert_has(
            &msg,
            &["vips[0].backends[0].weight", "invalid i64", "line 3"],
        );
    }

    #[test]
    fn err_unknown_fields() {
        let msg = parse_err(include_str!("../tests/fixtures/config/unknown-field.yaml"));
        assert_has(&msg, &["vips[0]", "unknown field", "protcol", "line 3"]);
        let msg = parse_err(
            "vips:\n  - vip: 11.0.0.1:1\n    backends: [{addr: \"127.0.0.1:1\", wieght: 2}]\n",
        );
        assert_has(&msg, &["vips[0].backends[0]", "unknown field", "wieght"]);
        let msg = parse_err("vips: []\nextra: 1\n");
        assert_has(&msg, &["unknown field", "extra"]);
        let msg =
            parse_err(r#"{"vips": [{"vip": "11.0.0.1:1", "backends": [], "protcol": "tcp"}]}"#);
        assert_has(&msg, &["vips[0]", "unknown field", "protcol"]);
    }

    #[test]
    fn err_shape() {
        assert_has(&parse_err(""), &["empty config", "vips: []"]);
        assert_has(&parse_err("# nothing\n"), &["empty config", "vips: []"]);
        assert_has(&parse_err("{}\n"), &["missing field `vips`"]);
        assert_has(
            &parse_err("vips:\n  - vip: 11.0.0.1:1\n"),
            &["vips[0]", "missing field `backends`"],
        );
        assert_has(
            &parse_err("vips:\n  - 3\n"),
            &["vips[0]", "expected mapping", "line 2"],
        );
        assert_has(
            &parse_err("vips:\n  - vip: 11.0.0.1:1\n    backends: [80]\n"),
            &["vips[0].backends[0]", "a backend"],
        );
        assert_has(
            &parse_err("vips:\n  - vip: [::1]:80\n    backends: []\n"),
            &["vips[0].vip", "quote"],
        );
        assert_has(&parse_err("vips: [\n"), &["line"]);
        assert!(parse_config("vips: []\n").unwrap().entries.is_empty());
    }

    #[test]
    fn err_bad_addresses() {
        for (text, needles) in [
            (
                "vip: 11.0.0.1:65536\n    backends: []",
                &[
                    "vips[0] (vip 11.0.0.1:65536): vip: port 65536",
                    "out of range 1..=65535",
                ][..],
            ),
            (
                "vip: 11.0.0.1:0\n    backends: []",
                &["vips[0] (vip 11.0.0.1:0): vip: port 0", "1..=65535"],
            ),
            (
                "vip: 11.0.0.1\n    backends: []",
                &["vips[0] (vip 11.0.0.1): vip: missing port"],
            ),
            (
                "vip: 11.0.0.300:80\n    backends: []",
                &["vip: bad IP address \"11.0.0.300\""],
            ),
            (
                "vip: \"fd01::1:80\"\n    backends: []",
                &["vip: missing port in \"fd01::1:80\"", "[addr]:port"],
            ),
            (
                "vip: \"fd01::1:99999\"\n    backends: []",
                &["vip: IPv6 address in \"fd01::1:99999\" needs brackets"],
            ),
            (
                "vip: 11.0.0.1:http\n    backends: []",
                &["vip: bad port \"http\""],
            ),
            (
                "vip: \"11.0.0.1:\"\n    backends: []",
                &["vip: bad port \"\""],
            ),
            (
                "vip: 0.0.0.0:80\n    backends: []",
                &["vip: 0.0.0.0:80 is the unspecified address"],
            ),
            (
                "vip: 11.0.0.1:80\n    backends: [\"127.0.0.1:99999\"]",
                &[
                    "vips[0] (vip 11.0.0.1:80): backends[0]: port 99999",
                    "1..=65535",
                ],
            ),
            (
                "vip: 11.0.0.1:80\n    backends: [\"127.0.0.1:1\", \"localhost:80\"]",
                &["backends[1]: bad IP address \"localhost\""],
            ),
            (
                "vip: 11.0.0.1:80\n    backends: [{addr: \"127.0.0.1:0\"}]",
                &["backends[0]: port 0"],
            ),
        ] {
            let msg = parse_err(&format!("vips:\n  - {text}\n"));
            assert_has(&msg, needles);
        }
    }

    #[test]
    fn err_bad_names() {
        let msg = parse_err("vips:\n  - name: /redis:0\n    backends: []\n");
        assert_has(
            &msg,
            &[
                "vips[0] (name /redis:0): name: VIP label \"/redis:0\"",
                "1..=65535",
            ],
        );
        let msg = parse_err("vips:\n  - name: /redis\n    backends: []\n");
        assert_has(&msg, &["vips[0] (name /redis): name:", "missing \":port\""]);
        let msg = parse_err("vips:\n  - name: 1.2.3.4:80\n    backends: []\n");
        assert_has(
            &msg,
            &["vips[0] (name 1.2.3.4:80): name:", "not a name", "vip:"],
        );
        let msg = parse_err("vips:\n  - name: \"/:80\"\n    backends: []\n");
        assert_has(&msg, &["vips[0] (name /:80): name:", "no letter or digit"]);
    }

    #[test]
    fn err_vip_and_name() {
        let msg = parse_err(
            "vips:\n  - vip: 11.0.0.1:80\n    backends: []\n  - vip: 11.0.0.2:80\n    name: /a:80\n    backends: []\n",
        );
        assert_has(&msg, &["vips[1]: has both `vip` and `name`"]);
        let msg = parse_err("vips:\n  - backends: []\n");
        assert_has(&msg, &["vips[0]: needs `vip`", "or `name`"]);
    }

    #[test]
    fn err_protocol() {
        let msg = parse_err("vips:\n  - vip: 11.0.0.1:80\n    protocol: sctp\n    backends: []\n");
        assert_has(
            &msg,
            &["vips[0] (vip 11.0.0.1:80): protocol: unknown protocol \"sctp\""],
        );
        let msg =
            parse_err("vips:\n  - vip: 11.0.0.1:80\n    protocol: tcp,tcp\n    backends: []\n");
        assert_has(&msg, &["vips[0] (vip 11.0.0.1:80): protocol:", "tcp twice"]);
        let msg = parse_err("vips:\n  - vip: 11.0.0.1:80\n    protocol: \"\"\n    backends: []\n");
        assert_has(&msg, &["protocol: unknown protocol \"\""]);
    }

    #[test]
    fn err_family_mismatch() {
        let msg = parse_err(
            "vips:\n  - vip: 11.0.0.1:80\n    backends: [\"127.0.0.1:1\", \"[::1]:1\"]\n",
        );
        assert_has(
            &msg,
            &["vips[0] (vip 11.0.0.1:80): backends[1]: [::1]:1 is IPv6 but the VIP is IPv4"],
        );
        let msg = parse_err("vips:\n  - vip: \"[fd00::1]:80\"\n    backends: [\"127.0.0.1:1\"]\n");
        assert_has(
            &msg,
            &["vips[0] (vip [fd00::1]:80): backends[0]: 127.0.0.1:1 is IPv4 but the VIP is IPv6"],
        );
    }

    #[test]
    fn err_duplicate_backend() {
        let msg = parse_err(
            "vips:\n  - vip: 11.0.0.1:80\n    backends: [\"127.0.0.1:1\", \"127.0.0.2:1\", {addr: \"127.0.0.1:1\", weight: 3}]\n",
        );
        assert_has(
            &msg,
            &[
                "vips[0] (vip 11.0.0.1:80): backends[2]: duplicate backend 127.0.0.1:1, already backends[0]",
            ],
        );
    }

    #[test]
    fn err_duplicate_vip() {
        let msg = parse_err(
            "vips:\n  - vip: 11.0.0.1:80\n    backends: []\n  - vip: 11.0.0.2:80\n    backends: []\n  - vip: 11.0.0.1:80\n    protocol: udp,tcp\n    backends: []\n",
        );
        assert_has(
            &msg,
            &[
                "vips[2] (vip 11.0.0.1:80): duplicate VIP 11.0.0.1:80/tcp, already declared by vips[0]",
            ],
        );
        // Same address, other protocol or port: fine.
        parse_config("vips:\n  - vip: 11.0.0.1:80\n    backends: []\n  - vip: 11.0.0.1:80\n    protocol: udp\n    backends: []\n  - vip: 11.0.0.1:81\n    backends: []\n").unwrap();
        // `/redis` and `redis` are the same name.
        let msg = parse_err(
            "vips:\n  - name: /redis:80\n    backends: []\n  - name: redis:80\n    backends: []\n",
        );
        assert_has(
            &msg,
            &[
                "vips[1] (name redis:80): duplicate VIP redis.marathon:80/tcp, already declared by vips[0] (name /redis:80)",
            ],
        );
        // Spelled differently but the same address.
        let msg = parse_err(
            "vips:\n  - vip: \"[::ffff:11.0.0.1]:80\"\n    backends: []\n  - vip: 11.0.0.1:80\n    backends: []\n",
        );
        assert_has(
            &msg,
            &["vips[1] (vip 11.0.0.1:80): duplicate VIP 11.0.0.1:80/tcp"],
        );
    }

    #[test]
    fn err_duplicate_vip_after_allocation() {
        // An explicit VIP on the address the name hashes to.
        let taken = named_addr("redis.marathon", Family::V4, 6379);
        let text = format!(
            "vips:\n  - vip: {taken}\n    backends: []\n  - name: /redis:6379\n    backends: [\"127.0.0.1:1\"]\n"
        );
        let cfg = parse_config(&text).unwrap();
        let msg = cfg
            .desired_state(&mut VipAllocator::new())
            .unwrap_err()
            .to_string();
        assert_has(
            &msg,
            &[&format!(
                "vips[1] (name /redis:6379): duplicate VIP {taken}/tcp, already declared by vips[0] (vip {taken})"
            )],
        );
    }

    #[test]
    fn desired_state_with_needs_allocations() {
        let cfg = parse_config("vips:\n  - name: /redis:6379\n    backends: []\n").unwrap();
        let msg = cfg
            .desired_state_with(&VipAllocator::new())
            .unwrap_err()
            .to_string();
        assert_has(
            &msg,
            &["vips[0] (name /redis:6379): no IPv4 address allocated for \"redis.marathon\""],
        );
        let mut alloc = VipAllocator::new();
        alloc
            .allocate(Family::V4, &cfg.named_keys(Family::V4))
            .unwrap();
        assert_eq!(
            cfg.desired_state_with(&alloc).unwrap(),
            cfg.desired_state(&mut VipAllocator::new()).unwrap()
        );
        assert!(cfg.named_keys(Family::V6).is_empty());
    }
}
