//! The pure part: names, their states, the snapshot a catalog is built
//! against (no I/O; the fuzz build compiles it alone).
use std::{collections::HashMap, fmt, net::IpAddr, sync::Arc};

/// Longest DNS name (RFC 1035, without the trailing dot).
const MAX_NAME: usize = 253;
/// Longest label.
const MAX_LABEL: usize = 63;

/// Where a task's agent is, as the control plane reported it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AgentAt {
    Ip(IpAddr),
    /// A host name, lower case, no trailing dot.
    Name(Arc<str>),
}

/// `task.host` → [`AgentAt`]: an IP literal, or a syntactically valid host
/// name (letters, digits, `-`, `_`; dot-separated labels of 1–63 bytes, at
/// most 253 in all). Anything else is None (the caller warns).
pub fn parse_agent_host(raw: &str) -> Option<AgentAt> {
    let s = raw.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(AgentAt::Ip(ip.to_canonical()));
    }
    let name = s.strip_suffix('.').unwrap_or(s);
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= MAX_LABEL
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        // All digits and dots is a malformed address, not a name.
        && !name.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    valid.then(|| AgentAt::Name(Arc::from(name.to_ascii_lowercase())))
}

/// What is known about one name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostState {
    /// Asked for, no answer yet.
    Pending,
    /// The address in use. `stale` holds the error of the last refresh when
    /// it failed: the last good address stays (a DNS hiccup must not take
    /// every backend of an agent away).
    Resolved { addr: IpAddr, stale: Option<String> },
    /// Never resolved: why.
    Failed(String),
}

/// Names → state: a snapshot the catalog is built against.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostTable {
    names: HashMap<Arc<str>, HostState>,
}

/// [`HostTable::lookup`]'s answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup<'a> {
    Addr(IpAddr),
    /// Not resolved (yet, or at all): why, for the warning.
    Missing(Missing<'a>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missing<'a> {
    /// The resolver has not answered yet (or was never asked).
    Pending,
    Failed(&'a str),
}

impl fmt::Display for Missing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Missing::Pending => f.write_str("not resolved yet"),
            Missing::Failed(why) => write!(f, "does not resolve ({why})"),
        }
    }
}

impl HostTable {
    pub fn lookup(&self, name: &str) -> Lookup<'_> {
        match self.names.get(name) {
            Some(HostState::Resolved { addr, .. }) => Lookup::Addr(*addr),
            Some(HostState::Failed(why)) => Lookup::Missing(Missing::Failed(why)),
            Some(HostState::Pending) | None => Lookup::Missing(Missing::Pending),
        }
    }

    pub fn get(&self, name: &str) -> Option<&HostState> {
        self.names.get(name)
    }

    pub fn set(&mut self, name: Arc<str>, state: HostState) {
        self.names.insert(name, state);
    }

    pub fn remove(&mut self, name: &str) {
        self.names.remove(name);
    }

    pub fn names(&self) -> impl Iterator<Item = (&Arc<str>, &HostState)> {
        self.names.iter()
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// A test or a static snapshot: every name resolved.
    pub fn resolved<'a>(pairs: impl IntoIterator<Item = (&'a str, IpAddr)>) -> HostTable {
        let mut t = HostTable::default();
        for (name, addr) in pairs {
            t.set(Arc::from(name), HostState::Resolved { addr, stale: None });
        }
        t
    }
}

/// The address a name's answer gives an agent: the first IPv4 address, else
/// the first IPv6 one (dcos-net, marathon-lb and Mesos-DNS use IPv4 only; an
/// IPv6-only agent is still reachable here).
pub fn pick_agent_addr(addrs: impl IntoIterator<Item = IpAddr>) -> Option<IpAddr> {
    let mut v6 = None;
    for a in addrs {
        let a = a.to_canonical();
        if a.is_ipv4() {
            return Some(a);
        }
        v6.get_or_insert(a);
    }
    v6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Option<AgentAt> {
        Some(AgentAt::Name(Arc::from(s)))
    }

    #[test]
    fn agent_hosts_parse_as_ip_or_name() {
        assert_eq!(
            parse_agent_host(" 10.0.1.11 "),
            Some(AgentAt::Ip("10.0.1.11".parse().unwrap()))
        );
        assert_eq!(
            parse_agent_host("::ffff:10.0.1.11"),
            Some(AgentAt::Ip("10.0.1.11".parse().unwrap()))
        );
        assert_eq!(
            parse_agent_host("Agent-1.Example.COM."),
            name("agent-1.example.com")
        );
        assert_eq!(parse_agent_host("ip-10-0-1-11_x"), name("ip-10-0-1-11_x"));
        for bad in [
            "",
            " ",
            ".",
            "a..b",
            "a b",
            "10.0.1",
            "10.0.1.300",
            "agent/1",
            "http://agent",
            &"a".repeat(64),
            &["abc"; 64].join("."),
        ] {
            assert_eq!(parse_agent_host(bad), None, "{bad:?}");
        }
        assert!(parse_agent_host(&vec!["a".repeat(63); 3].join(".")).is_some());
    }

    #[test]
    fn lookups_say_why_a_name_is_missing() {
        let mut t = HostTable::resolved([("a.example", "10.0.0.1".parse().unwrap())]);
        t.set(Arc::from("b.example"), HostState::Failed("NXDOMAIN".into()));
        t.set(Arc::from("c.example"), HostState::Pending);
        t.set(
            Arc::from("d.example"),
            HostState::Resolved {
                addr: "10.0.0.4".parse().unwrap(),
                stale: Some("timed out".into()),
            },
        );
        assert_eq!(
            t.lookup("a.example"),
            Lookup::Addr("10.0.0.1".parse().unwrap())
        );
        assert_eq!(
            t.lookup("d.example"),
            Lookup::Addr("10.0.0.4".parse().unwrap())
        );
        assert_eq!(
            t.lookup("b.example").to_string_missing(),
            "does not resolve (NXDOMAIN)"
        );
        assert_eq!(
            t.lookup("c.example").to_string_missing(),
            "not resolved yet"
        );
        assert_eq!(
            t.lookup("z.example").to_string_missing(),
            "not resolved yet"
        );
    }

    impl Lookup<'_> {
        fn to_string_missing(self) -> String {
            match self {
                Lookup::Missing(m) => m.to_string(),
                Lookup::Addr(a) => panic!("resolved to {a}"),
            }
        }
    }

    #[test]
    fn ipv4_is_preferred_then_ipv6() {
        let ips = |s: &[&str]| {
            s.iter()
                .map(|a| a.parse().unwrap())
                .collect::<Vec<IpAddr>>()
        };
        assert_eq!(
            pick_agent_addr(ips(&["fd00::1", "198.18.0.2", "198.18.0.3"])),
            Some("198.18.0.2".parse().unwrap())
        );
        assert_eq!(
            pick_agent_addr(ips(&["fd00::1", "fd00::2"])),
            Some("fd00::1".parse().unwrap())
        );
        assert_eq!(pick_agent_addr(ips(&[])), None);
    }
}
