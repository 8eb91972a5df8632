//! Which address `<task>.<fw>.mesos` gets: Mesos-DNS's `IPSources`.
//!
//! Mesos-DNS walks its sources in order, appends every address each one has,
//! then publishes the first IPv4 and the first IPv6 of that list
//! (records/generator.go). So with DC/OS's `["host", "netinfo"]` the A record
//! is the agent and the AAAA a container's IPv6 when the agent has none (the
//! `docker-on-ipv6` task in a real DC/OS zone transfer).
//!
//! Marathon reports one list of task addresses (`ipAddresses`, from the Mesos
//! NetworkInfo), so `netinfo`, `mesos` and `docker` all read that list here;
//! `host` is the agent's address (`task.host`).
use std::{net::IpAddr, str::FromStr};

use crate::model::TaskRecord;

/// One Mesos-DNS IP source. (No clap derive: the fuzz crate compiles this
/// file without clap.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpSource {
    /// The agent's address.
    Host,
    /// The task's NetworkInfo addresses (Marathon's `ipAddresses`).
    Netinfo,
    /// Mesos containerizer address: Marathon's `ipAddresses` here.
    Mesos,
    /// Docker containerizer address: Marathon's `ipAddresses` here.
    Docker,
}

impl FromStr for IpSource {
    type Err = String;

    /// Mesos-DNS's config names: `host`, `netinfo`, `mesos`, `docker`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "host" => Ok(IpSource::Host),
            "netinfo" => Ok(IpSource::Netinfo),
            "mesos" => Ok(IpSource::Mesos),
            "docker" => Ok(IpSource::Docker),
            _ => Err(format!(
                "{s:?} is not an IP source (host, netinfo, mesos, docker)"
            )),
        }
    }
}

/// DC/OS's order (`/opt/mesosphere/etc/mesos-dns.json`): agent first.
pub const DCOS_IP_SOURCES: [IpSource; 2] = [IpSource::Host, IpSource::Netinfo];

/// The addresses of `<task>.<fw>.mesos` (and its canonical name): at most the
/// first IPv4 and the first IPv6 found walking `sources` in order.
pub fn task_addrs(task: &TaskRecord, sources: &[IpSource]) -> Vec<IpAddr> {
    let mut all = sources.iter().flat_map(|s| source_addrs(task, *s));
    let mut v4 = None;
    let mut v6 = None;
    while v4.is_none() || v6.is_none() {
        match all.next() {
            Some(ip @ IpAddr::V4(_)) => v4 = v4.or(Some(ip)),
            Some(ip @ IpAddr::V6(_)) => v6 = v6.or(Some(ip)),
            None => break,
        }
    }
    v4.into_iter().chain(v6).collect()
}

fn source_addrs(task: &TaskRecord, source: IpSource) -> Vec<IpAddr> {
    match source {
        IpSource::Host => task.agent_ip.into_iter().collect(),
        IpSource::Netinfo | IpSource::Mesos | IpSource::Docker => task.task_ips.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(agent: Option<&str>, ips: &[&str]) -> TaskRecord {
        TaskRecord {
            app_id: "/t".into(),
            task_id: "t.1".into(),
            framework: "marathon".into(),
            agent_id: "a-S0".into(),
            agent_ip: agent.map(|a| a.parse().unwrap()),
            task_ips: ips.iter().map(|s| s.parse().unwrap()).collect(),
            ports: Box::default(),
            host_ports: false,
            running: true,
            healthy: None,
            in_pod: false,
            zone: None,
        }
    }

    fn addrs(t: &TaskRecord, s: &[IpSource]) -> Vec<String> {
        task_addrs(t, s).iter().map(ToString::to_string).collect()
    }

    /// Mirrors mesos-dns records/generator_test.go TestInsertState on the
    /// cases Marathon's data can express: the `rgSlave` (host) and `rg`
    /// (netinfo first) generators, and the ipv6-framework task whose agent
    /// is IPv6 only.
    #[test]
    fn first_v4_and_first_v6_in_source_order() {
        use IpSource::*;
        let nginx = task(Some("1.2.3.11"), &["10.3.0.3"]);
        assert_eq!(addrs(&nginx, &[Host]), ["1.2.3.11"]);
        assert_eq!(addrs(&nginx, &[Netinfo, Docker, Mesos, Host]), ["10.3.0.3"]);
        assert_eq!(addrs(&nginx, &DCOS_IP_SOURCES), ["1.2.3.11"]);
        let toy = task(Some("2001:db8::1"), &["12.0.1.2", "fd01:b::1:8000:2"]);
        assert_eq!(addrs(&toy, &[Host]), ["2001:db8::1"]);
        assert_eq!(
            addrs(&toy, &[Netinfo, Host]),
            ["12.0.1.2", "fd01:b::1:8000:2"]
        );
        // DC/OS's order: the agent's IPv6 comes first, the container's IPv4
        // is the only IPv4.
        assert_eq!(addrs(&toy, &DCOS_IP_SOURCES), ["12.0.1.2", "2001:db8::1"]);
        // The real DC/OS AXFR's docker-on-ipv6: agent A, container AAAA.
        let v6 = task(Some("172.17.0.6"), &["fd01:b::2:8000:0:2"]);
        assert_eq!(
            addrs(&v6, &DCOS_IP_SOURCES),
            ["172.17.0.6", "fd01:b::2:8000:0:2"]
        );
        // A source without addresses is skipped; no source at all: nothing.
        let bare = task(None, &["10.0.0.9"]);
        assert_eq!(addrs(&bare, &DCOS_IP_SOURCES), ["10.0.0.9"]);
        assert!(addrs(&bare, &[Host]).is_empty());
        assert!(addrs(&nginx, &[]).is_empty());
    }
}
