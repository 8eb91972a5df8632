//! Which VIPs the agent refuses to install, whatever its source says.
//!
//! A VIP rewrites every matching connect() on the node, so a cluster app that
//! declares one on an address the node itself depends on could take that
//! traffic: the control plane the agent reads (Marathon with its token), a
//! DNS upstream, the node's own addresses, another app's backend. Such VIPs
//! are dropped from the desired state before it is planned, each with a
//! reason naming who declared it. Pure: the caller gathers the addresses.
use std::{
    collections::{BTreeMap, HashSet},
    net::IpAddr,
};

use ipnet::IpNet;

use crate::model::{DesiredState, Vip};

mod screen;

pub use screen::Screener;

/// The `--vip-cidr` default: explicit VIPs anywhere (DC/OS puts no range on
/// them), minus the special-purpose addresses `special_purpose` always refuses.
pub const DEFAULT_VIP_CIDRS: [&str; 2] = ["0.0.0.0/0", "::/0"];

/// What a VIP must not collide with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guard {
    /// Where explicit (IP) VIPs may live; named VIPs are allocated by the
    /// agent in dcos-net's ranges and are not held to it.
    allowed: Vec<IpNet>,
    /// Addresses no VIP may take, with what they are.
    protected: BTreeMap<IpAddr, String>,
}

/// One VIP left out, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub vip: Vip,
    /// Who declared it (`app /shop/web`, `services[2]`), when the source says.
    pub origin: Option<String>,
    pub reason: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.origin {
            Some(o) => write!(
                f,
                "VIP {} declared by {o} refused: {}",
                self.vip, self.reason
            ),
            None => write!(f, "VIP {} refused: {}", self.vip, self.reason),
        }
    }
}

impl Guard {
    pub fn new(allowed: Vec<IpNet>) -> Guard {
        Guard {
            allowed,
            protected: BTreeMap::new(),
        }
    }

    /// This guard without the `--vip-cidr` rule, for a table read back from
    /// the maps, which no longer says which VIPs were named.
    pub fn collisions_only(mut self) -> Guard {
        self.allowed = DEFAULT_VIP_CIDRS
            .iter()
            .filter_map(|c| parse_cidr(c).ok())
            .collect();
        self
    }

    /// No VIP may take `ip` (any port): `what` says whose it is.
    pub fn protect(&mut self, ip: IpAddr, what: impl Into<String>) {
        self.protected
            .entry(ip.to_canonical())
            .or_insert_with(|| what.into());
    }

    /// Removes every VIP that breaks a rule from `state`; returns them.
    pub fn screen(&self, state: &mut DesiredState) -> Vec<Refused> {
        // VIP addresses that are also some backend's: one pass over the
        // backends against the (smaller) set of VIP addresses.
        let vip_ips: HashSet<IpAddr> = state
            .services
            .keys()
            .map(|v| v.addr.ip().to_canonical())
            .collect();
        let backend_ips: HashSet<IpAddr> = state
            .services
            .values()
            .flat_map(|s| s.backends.keys().map(|b| b.ip().to_canonical()))
            .filter(|ip| vip_ips.contains(ip))
            .collect();
        let refused: Vec<Refused> = state
            .services
            .iter()
            .filter_map(|(vip, spec)| {
                let reason =
                    self.reason(vip, spec.name.is_some(), |ip| backend_ips.contains(ip))?;
                Some(Refused {
                    vip: *vip,
                    origin: spec.origin.clone(),
                    reason,
                })
            })
            .collect();
        // Removed one by one: the map keeps sharing what stays.
        for r in &refused {
            state.services.remove(&r.vip);
        }
        refused
    }

    /// Why `vip` is refused, if it is; `is_backend`: whether a (canonical)
    /// address is some service's backend's.
    fn reason(
        &self,
        vip: &Vip,
        named: bool,
        is_backend: impl Fn(&IpAddr) -> bool,
    ) -> Option<String> {
        let ip = vip.addr.ip().to_canonical();
        if let Some(kind) = special_purpose(ip) {
            return Some(format!("{ip} is a {kind} address"));
        }
        if !named && !self.allowed.iter().any(|net| net.contains(&ip)) {
            let nets: Vec<String> = self.allowed.iter().map(ToString::to_string).collect();
            return Some(format!("{ip} is outside --vip-cidr {}", nets.join(",")));
        }
        if let Some(what) = self.protected.get(&ip) {
            return Some(format!("{ip} is {what}"));
        }
        if is_backend(&ip) {
            return Some(format!("{ip} is a backend's address"));
        }
        None
    }
}

/// Addresses no VIP may take on any node: the VIP would capture the node's
/// own loopback services, or could never be a unicast destination.
fn special_purpose(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(a) if a.is_loopback() => Some("loopback"),
        IpAddr::V4(a) if a.is_unspecified() || a.octets()[0] == 0 => {
            Some("\"this network\" (0.0.0.0/8)")
        }
        IpAddr::V4(a) if a.is_link_local() => Some("link-local"),
        IpAddr::V4(a) if a.is_multicast() => Some("multicast"),
        IpAddr::V4(a) if a.is_broadcast() || a.octets()[0] >= 240 => Some("reserved (240.0.0.0/4)"),
        IpAddr::V6(a) if a.is_loopback() => Some("loopback"),
        IpAddr::V6(a) if a.is_unspecified() => Some("unspecified"),
        IpAddr::V6(a) if a.is_unicast_link_local() => Some("link-local"),
        IpAddr::V6(a) if a.is_multicast() => Some("multicast"),
        _ => None,
    }
}

/// Parses `--vip-cidr` values (`10.0.0.0/8`, `fd00::/8`; a bare address is
/// a /32 or /128).
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("{s:?} is not a CIDR (10.0.0.0/8, fd00::/8) or an address"))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::model::{Proto, ServiceSpec};

    fn vip(s: &str) -> Vip {
        Vip {
            addr: s.parse().unwrap(),
            proto: Proto::Tcp,
        }
    }

    fn spec(named: bool, origin: &str, backends: &[&str]) -> ServiceSpec {
        ServiceSpec {
            name: named.then(|| "/x:80".to_owned()),
            framework: None,
            origin: Some(origin.to_owned()),
            backends: backends
                .iter()
                .map(|b| (b.parse::<SocketAddr>().unwrap(), 1))
                .collect(),
        }
    }

    fn any() -> Guard {
        Guard::new(
            DEFAULT_VIP_CIDRS
                .iter()
                .map(|c| parse_cidr(c).unwrap())
                .collect(),
        )
    }

    fn screened(g: &Guard, services: Vec<(&str, ServiceSpec)>) -> (Vec<String>, Vec<Refused>) {
        let mut state = DesiredState {
            services: services.into_iter().map(|(v, s)| (vip(v), s)).collect(),
        };
        let refused = g.screen(&mut state);
        (
            state.services.keys().map(|v| v.addr.to_string()).collect(),
            refused,
        )
    }

    #[test]
    fn a_vip_on_the_control_plane_is_refused_naming_the_app() {
        let mut g = any();
        g.protect(
            "198.18.0.10".parse().unwrap(),
            "the Marathon endpoint http://198.18.0.10:8080",
        );
        let (kept, refused) = screened(
            &g,
            vec![
                (
                    "198.18.0.10:8080",
                    spec(false, "app /evil", &["198.18.1.1:80"]),
                ),
                (
                    "198.18.0.10:2181",
                    spec(false, "app /evil", &["198.18.1.1:80"]),
                ),
                (
                    "198.18.5.5:80",
                    spec(false, "app /good", &["198.18.1.2:80"]),
                ),
            ],
        );
        assert_eq!(kept, ["198.18.5.5:80"]);
        assert_eq!(refused.len(), 2);
        let text = refused[0].to_string();
        assert!(
            text.contains("app /evil") && text.contains("Marathon endpoint"),
            "{text}"
        );
    }

    #[test]
    fn a_vip_on_another_apps_backend_or_a_special_address_is_refused() {
        let (kept, refused) = screened(
            &any(),
            vec![
                (
                    "198.18.1.1:9999",
                    spec(false, "app /thief", &["198.18.2.2:80"]),
                ),
                (
                    "198.18.3.3:80",
                    spec(false, "app /victim", &["198.18.1.1:80"]),
                ),
                (
                    "127.0.0.1:6379",
                    spec(false, "services[0]", &["198.18.2.2:6379"]),
                ),
                ("[::1]:53", spec(false, "services[1]", &["[fd00::1]:53"])),
                (
                    "[::ffff:127.0.0.2]:80",
                    spec(false, "services[2]", &["[fd00::1]:53"]),
                ),
                (
                    "224.0.0.1:80",
                    spec(false, "services[3]", &["198.18.2.2:80"]),
                ),
                ("0.0.0.1:80", spec(false, "services[4]", &["198.18.2.2:80"])),
            ],
        );
        assert_eq!(kept, ["198.18.3.3:80"]);
        let reasons: Vec<&str> = refused.iter().map(|r| r.reason.as_str()).collect();
        assert!(
            reasons.iter().any(|r| r.contains("backend's address")),
            "{reasons:?}"
        );
        assert_eq!(
            reasons.iter().filter(|r| r.contains("loopback")).count(),
            3,
            "{reasons:?}"
        );
    }

    #[test]
    fn vip_cidr_limits_explicit_vips_only() {
        let g = Guard::new(vec![
            parse_cidr("198.18.0.0/16").unwrap(),
            parse_cidr("fd00::/8").unwrap(),
        ]);
        let (kept, refused) = screened(
            &g,
            vec![
                ("198.18.9.9:80", spec(false, "app /in", &["198.19.0.1:80"])),
                ("198.19.9.9:80", spec(false, "app /out", &["198.19.0.1:80"])),
                (
                    "11.202.66.162:6379",
                    spec(true, "app /redis", &["198.19.0.2:6379"]),
                ),
            ],
        );
        assert_eq!(kept, ["11.202.66.162:6379", "198.18.9.9:80"]);
        assert_eq!(refused.len(), 1);
        assert!(
            refused[0]
                .reason
                .contains("outside --vip-cidr 198.18.0.0/16,fd00::/8"),
            "{}",
            refused[0]
        );
    }

    #[test]
    fn an_adopted_table_is_held_to_collisions_only() {
        let mut g = Guard::new(vec![parse_cidr("198.18.0.0/16").unwrap()]);
        g.protect("198.18.0.10".parse().unwrap(), "the Marathon endpoint");
        let (kept, refused) = screened(
            &g.collisions_only(),
            vec![
                (
                    "11.202.66.162:6379",
                    spec(false, "maps", &["198.19.0.2:6379"]),
                ),
                ("198.18.0.10:8080", spec(false, "maps", &["198.19.0.2:80"])),
            ],
        );
        assert_eq!(kept, ["11.202.66.162:6379"]);
        assert!(refused[0].reason.contains("Marathon"), "{}", refused[0]);
    }

    #[test]
    fn a_node_address_is_protected_for_every_port_and_both_spellings() {
        let mut g = any();
        g.protect("198.18.0.1".parse().unwrap(), "an address of this node");
        let (kept, _) = screened(
            &g,
            vec![
                ("198.18.0.1:22", spec(false, "app /a", &["198.19.0.1:22"])),
                (
                    "[::ffff:198.18.0.1]:80",
                    spec(false, "app /b", &["198.19.0.1:80"]),
                ),
            ],
        );
        assert!(kept.is_empty(), "{kept:?}");
    }

    #[test]
    fn cidrs_parse_with_clear_errors() {
        assert_eq!(parse_cidr("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(
            parse_cidr("198.18.0.1").unwrap().to_string(),
            "198.18.0.1/32"
        );
        assert!(
            parse_cidr("10.0.0.0/33")
                .unwrap_err()
                .contains("not a CIDR")
        );
    }
}
