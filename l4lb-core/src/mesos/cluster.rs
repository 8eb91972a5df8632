//! The cluster itself as Mesos reports it (leader, masters, agents,
//! frameworks), before host names are resolved: [`ClusterFacts`]. Resolved
//! against a [`HostTable`] it becomes the model's [`Cluster`], which
//! `dns::cluster` turns into Mesos-DNS's cluster records.
//!
//! Addresses come from libprocess pids (`slave(1)@10.0.0.3:5051`,
//! `scheduler(1)@[2001:db8::1]:25501`, the leader `master@10.0.0.1:5050`),
//! else from a reported host name (no port then). Anything malformed is
//! left out: those records are extras, never worth a warning per poll.
use std::{collections::BTreeMap, net::SocketAddr, sync::Arc};

use super::state::resolve;
use crate::hosts::{AgentAt, HostTable, parse_agent_host};
use crate::model::{Cluster, Endpoint};

/// A host as reported (address or name), with its port when known.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HostPort {
    pub host: AgentAt,
    pub port: Option<u16>,
}

impl HostPort {
    fn name(&self) -> Option<&Arc<str>> {
        match &self.host {
            AgentAt::Name(n) => Some(n),
            AgentAt::Ip(_) => None,
        }
    }

    fn resolve(&self, hosts: &HostTable) -> Option<Endpoint> {
        let ip = resolve(Some(&self.host), hosts)?;
        Some(Endpoint {
            ip,
            port: self.port,
        })
    }

    fn socket(&self, hosts: &HostTable) -> Option<SocketAddr> {
        let e = self.resolve(hosts)?;
        Some(SocketAddr::new(e.ip, e.port?))
    }
}

/// `host:port` (`10.0.0.1:5050`, `[2001:db8::1]:7`, `m1.example:5050`);
/// None if malformed.
pub fn parse_host_port(s: &str) -> Option<HostPort> {
    let (host, port) = s.rsplit_once(':')?;
    let port = Some(port.parse().ok()?);
    if let Some(inner) = host.strip_prefix('[') {
        let ip: std::net::Ipv6Addr = inner.strip_suffix(']')?.parse().ok()?;
        let host = AgentAt::Ip(std::net::IpAddr::V6(ip).to_canonical());
        return Some(HostPort { host, port });
    }
    if host.contains(':') || host.trim() != host {
        return None;
    }
    Some(HostPort {
        host: parse_agent_host(host)?,
        port,
    })
}

/// A libprocess pid `name@host:port` (also the master's `leader` field);
/// None if it is not one (`3@4`, `@`, `1@`).
pub fn parse_pid(s: &str) -> Option<HostPort> {
    let (_, addr) = s.split_once('@')?;
    parse_host_port(addr)
}

/// An agent's or a framework's address: its pid's, else its host name's
/// (then with `port`, if given).
pub fn endpoint(pid: Option<&str>, hostname: Option<&str>, port: Option<u16>) -> Option<HostPort> {
    if let Some(hp) = pid.and_then(parse_pid) {
        return Some(hp);
    }
    Some(HostPort {
        host: parse_agent_host(hostname?)?,
        port,
    })
}

/// Everything the cluster records come from, names not yet resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterFacts {
    /// The leading master (its port is required).
    pub leader: Option<HostPort>,
    /// The configured masters, in order.
    pub masters: Vec<HostPort>,
    /// Agent id → address.
    pub agents: BTreeMap<String, HostPort>,
    /// Framework id → (name, scheduler address).
    pub frameworks: BTreeMap<String, (String, HostPort)>,
}

impl ClusterFacts {
    /// Host names to resolve for these facts.
    pub fn wanted_hosts(&self) -> impl Iterator<Item = &Arc<str>> {
        let fws = self.frameworks.values().map(|(_, hp)| hp);
        self.leader
            .iter()
            .chain(&self.masters)
            .chain(self.agents.values())
            .chain(fws)
            .filter_map(HostPort::name)
    }

    /// The model's view: what resolves, in a stable order.
    pub fn resolve(&self, hosts: &HostTable) -> Cluster {
        Cluster {
            leader: self.leader.as_ref().and_then(|l| l.socket(hosts)),
            masters: self
                .masters
                .iter()
                .filter_map(|m| m.socket(hosts))
                .collect(),
            agents: self
                .agents
                .values()
                .filter_map(|a| a.resolve(hosts))
                .collect(),
            frameworks: self
                .frameworks
                .values()
                .filter_map(|(name, hp)| Some((name.clone(), hp.resolve(hosts)?)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(s: &str) -> Option<(String, Option<u16>)> {
        parse_host_port(s).map(|h| {
            let host = match h.host {
                AgentAt::Ip(ip) => ip.to_string(),
                AgentAt::Name(n) => n.to_string(),
            };
            (host, h.port)
        })
    }

    #[test]
    fn host_ports_and_pids() {
        assert_eq!(hp("10.0.0.1:5050"), Some(("10.0.0.1".into(), Some(5050))));
        assert_eq!(hp("[2001:db8::1]:7"), Some(("2001:db8::1".into(), Some(7))));
        assert_eq!(
            hp("M1.Example:5050"),
            Some(("m1.example".into(), Some(5050)))
        );
        for bad in [
            "",
            "4",
            ":5",
            "2001:db8::1:7",
            "[x]:1",
            "a:b",
            "a:70000",
            " a:1",
        ] {
            assert_eq!(hp(bad), None, "{bad:?}");
        }
        for bad in ["", "@", "1@", "@2", "3@4"] {
            assert_eq!(parse_pid(bad), None, "{bad:?}");
        }
        assert!(parse_pid("slave(1)@1.2.3.10:5051").is_some());
    }

    /// No pid: the host name, with the port given (operator API agents).
    #[test]
    fn endpoint_falls_back_to_the_host_name() {
        let e = endpoint(None, Some("agent-1"), Some(5051)).unwrap();
        assert_eq!(e.host, AgentAt::Name("agent-1".into()));
        assert_eq!(e.port, Some(5051));
        let e = endpoint(Some("bad"), Some("10.0.0.9"), None).unwrap();
        assert_eq!(
            (e.host, e.port),
            (AgentAt::Ip("10.0.0.9".parse().unwrap()), None)
        );
        assert_eq!(endpoint(None, None, Some(1)), None);
    }

    /// Names go through the host table; an unresolved one is left out.
    #[test]
    fn facts_resolve_through_the_host_table() {
        let mut f = ClusterFacts {
            leader: parse_pid("master@m1:5050"),
            masters: vec![
                parse_host_port("m1:5050").unwrap(),
                parse_host_port("m2:5050").unwrap(),
            ],
            ..ClusterFacts::default()
        };
        f.agents.insert(
            "a".into(),
            endpoint(None, Some("agent-1"), Some(5051)).unwrap(),
        );
        let names: Vec<_> = f.wanted_hosts().map(|n| n.to_string()).collect();
        assert_eq!(names, ["m1", "m1", "m2", "agent-1"]);
        let ip = "198.18.0.1".parse().unwrap();
        let c = f.resolve(&HostTable::resolved([("m1", ip)]));
        assert_eq!(c.leader, Some(SocketAddr::new(ip, 5050)));
        assert_eq!(c.masters, [SocketAddr::new(ip, 5050)]);
        assert!(c.agents.is_empty());
    }
}
