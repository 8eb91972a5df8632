//! The `--dns-*` flags (flattened into `run`'s arguments).
use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use ipnet::IpNet;

use super::{
    acl::parse_net,
    domain,
    ip_sources::IpSource,
    records::{self, Ttls, ZoneOptions},
    rrl::RrlConfig,
    server::DnsConfig,
};

/// DNS port when an address is given without one.
pub const DNS_PORT: u16 = 53;

/// RFC 2181 §8: TTLs above 2^31 - 1 are to be read as 0 by resolvers.
const MAX_TTL: i64 = i32::MAX as i64;

#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct DnsArgs {
    /// Serve DNS (UDP and TCP) on ADDR: `IP` (port 53) or `IP:PORT`,
    /// `[v6]:PORT`. Repeatable. None: no DNS server.
    #[arg(long = "dns-listen", value_name = "ADDR", value_parser = parse_dns_addr)]
    pub dns_listen: Vec<SocketAddr>,
    /// The Mesos-DNS zone's name (Mesos-DNS's `domain`): task records,
    /// cluster records (`leader.`, `master.`, `slave.`, …; `--mesos` only),
    /// SOA/NS, zone transfers and the /v1 HTTP API use it. Not one of
    /// dcos-net's zones, nor inside or above one.
    #[arg(long, value_name = "NAME", default_value = records::MESOS_ZONE,
          value_parser = parse_domain)]
    pub dns_domain: String,
    /// TTL (seconds) of the Mesos-DNS zone's records (Mesos-DNS's default).
    #[arg(long, value_name = "SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u32).range(0..=MAX_TTL))]
    pub dns_ttl_mesos: u32,
    /// TTL (seconds) of the `l4lb.thisdcos.directory` and
    /// `dcos.thisdcos.directory` records (dcos-net's default).
    #[arg(long, value_name = "SECONDS", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(0..=MAX_TTL))]
    pub dns_ttl_l4lb: u32,
    /// Forward names outside our zones to this server (`IP` or `IP:PORT`),
    /// tried in order. Repeatable. None: such names are REFUSED.
    #[arg(long = "dns-upstream", value_name = "ADDR", value_parser = parse_dns_addr)]
    pub dns_upstream: Vec<SocketAddr>,
    /// How long to wait for each upstream.
    #[arg(long, value_name = "MS", default_value_t = 2000,
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub dns_upstream_timeout_ms: u64,
    /// Clients (CIDR or IP) whose queries outside our zones are forwarded;
    /// others get REFUSED for them (our zones answer everyone). Repeatable;
    /// giving it replaces the default.
    #[arg(long = "dns-allow", value_name = "CIDR", value_parser = parse_net,
          default_values = ["127.0.0.0/8", "::1/128"])]
    pub dns_allow: Vec<IpNet>,
    /// UDP responses per second per client /24 (IPv4) or /56 (IPv6), burst
    /// one second's worth; over it answers are dropped. 0: no limit.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub dns_rrl_rps: u32,
    /// Every Nth answer the rate limit drops is sent as an empty truncated
    /// reply instead (real clients retry over TCP). 0: none.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub dns_rrl_slip: u32,
    /// Clients (CIDR or IP) the rate limit never applies to. Repeatable;
    /// giving it replaces the default (loopback).
    #[arg(long = "dns-rrl-exempt", value_name = "CIDR", value_parser = parse_net,
          default_values = ["127.0.0.0/8", "::1/128"])]
    pub dns_rrl_exempt: Vec<IpNet>,
    /// Open TCP connections per listener; when full, the longest idle is
    /// closed for a newcomer.
    #[arg(long, value_name = "N", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub dns_tcp_max_connections: u32,
    /// Open TCP connections per client address; beyond, its longest idle
    /// is closed.
    #[arg(long, value_name = "N", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub dns_tcp_max_per_client: u32,
    /// A TCP connection without a query this long is closed (RFC 7766).
    #[arg(long, value_name = "MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(100..=300_000))]
    pub dns_tcp_idle_timeout_ms: u64,
    /// Address(es) published for `ns1.<zone>`, each zone's name server.
    /// Default: the specific --dns-listen IPs, else 127.0.0.1.
    #[arg(long = "dns-ns-addr", value_name = "IP")]
    pub dns_ns_addr: Vec<IpAddr>,
    /// Where `<task>.<fw>.mesos` takes its addresses from, in order
    /// (Mesos-DNS's IPSources): the first IPv4 and the first IPv6 found win.
    /// `host` = the agent, `netinfo`/`mesos`/`docker` = the task's own IPs.
    /// Default: DC/OS's `host,netinfo`; Mesos-DNS alone defaults to
    /// `netinfo,mesos,host`.
    #[arg(long = "dns-ip-sources", value_name = "SOURCES", value_parser = str::parse::<IpSource>,
          value_delimiter = ',', default_values = ["host", "netinfo"])]
    pub dns_ip_sources: Vec<IpSource>,
    /// Clients (CIDR or IP) allowed a zone transfer (AXFR over TCP) of the
    /// served zones. Repeatable. None (the default): every AXFR is REFUSED.
    #[arg(long = "dns-axfr-allow", value_name = "CIDR", value_parser = parse_net)]
    pub dns_axfr_allow: Vec<IpNet>,
}

impl DnsArgs {
    /// The server's configuration, `None` when no `--dns-listen` is given.
    pub fn config(&self) -> Option<DnsConfig> {
        if self.dns_listen.is_empty() {
            return None;
        }
        let mut ns_addrs = self.dns_ns_addr.clone();
        if ns_addrs.is_empty() {
            for a in &self.dns_listen {
                if !a.ip().is_unspecified() && !ns_addrs.contains(&a.ip()) {
                    ns_addrs.push(a.ip());
                }
            }
        }
        if ns_addrs.is_empty() {
            ns_addrs.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        Some(DnsConfig {
            listen: self.dns_listen.clone(),
            zone: ZoneOptions {
                ttls: Ttls {
                    mesos: self.dns_ttl_mesos,
                    l4lb: self.dns_ttl_l4lb,
                },
                ns_addrs,
                ip_sources: self.dns_ip_sources.clone(),
                mesos_domain: self.dns_domain.clone(),
            },
            upstreams: self.dns_upstream.clone(),
            upstream_timeout: Duration::from_millis(self.dns_upstream_timeout_ms),
            forward_allow: self.dns_allow.clone(),
            axfr_allow: self.dns_axfr_allow.clone(),
            rrl: RrlConfig {
                rps: self.dns_rrl_rps,
                slip: self.dns_rrl_slip,
                exempt: self.dns_rrl_exempt.clone(),
            },
            max_tcp_connections: self.dns_tcp_max_connections as usize,
            max_tcp_per_client: self.dns_tcp_max_per_client as usize,
            tcp_idle_timeout: Duration::from_millis(self.dns_tcp_idle_timeout_ms),
            ..DnsConfig::default()
        })
    }
}

/// `--dns-domain`: see [`domain::mesos_domain`].
fn parse_domain(s: &str) -> Result<String, String> {
    domain::mesos_domain(s).map_err(|e| e.to_string())
}

/// `IP`, `[v6]`, `IP:PORT` or `[v6]:PORT`; no port means 53.
pub fn parse_dns_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let bare = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    bare.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, DNS_PORT))
        .map_err(|_| format!("{s:?} is not an address (IP, IP:PORT or [IPv6]:PORT)"))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        dns: DnsArgs,
    }

    fn parse(args: &[&str]) -> Result<DnsArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("x").chain(args.iter().copied())).map(|c| c.dns)
    }

    #[test]
    fn defaults_mean_off() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.dns_ttl_mesos, 60);
        assert_eq!(a.dns_ttl_l4lb, 5);
        assert_eq!(a.config(), None);
        let c = parse(&["--dns-listen", "127.0.0.1"])
            .unwrap()
            .config()
            .unwrap();
        let d = DnsConfig::default();
        assert_eq!((&c.forward_allow, &c.rrl), (&d.forward_allow, &d.rrl));
        assert_eq!(c.forward_allow, crate::dns::acl::loopback());
        assert_eq!((c.rrl.rps, c.rrl.slip), (100, 2));
        assert_eq!((c.max_tcp_connections, c.max_tcp_per_client), (256, 32));
        assert_eq!(c.tcp_idle_timeout, Duration::from_secs(10));
    }

    /// `--dns-domain` names the Mesos-DNS zone; a clash with dcos-net's
    /// zones is refused, naming the zone.
    #[test]
    fn dns_domain_flag() {
        let zone = |args: &[&str]| parse(args).unwrap().config().unwrap().zone;
        assert_eq!(zone(&["--dns-listen", "127.0.0.1"]).mesos_domain, "mesos");
        let z = zone(&["--dns-listen", "127.0.0.1", "--dns-domain", "Foo.Com."]);
        assert_eq!(z.mesos_domain, "foo.com");
        let e = parse(&["--dns-domain", "x.l4lb.thisdcos.directory"]).unwrap_err();
        assert!(e.to_string().contains("l4lb.thisdcos.directory"), "{e}");
        assert!(parse(&["--dns-domain", "a..b"]).is_err());
    }

    #[test]
    fn hardening_flags() {
        let c = parse(&[
            "--dns-listen",
            "0.0.0.0",
            "--dns-allow",
            "198.18.0.0/15",
            "--dns-allow",
            "fd00::7",
            "--dns-rrl-rps",
            "0",
            "--dns-rrl-slip",
            "3",
            "--dns-rrl-exempt",
            "198.18.1.0/24",
            "--dns-tcp-max-connections",
            "10",
            "--dns-tcp-max-per-client",
            "2",
            "--dns-tcp-idle-timeout-ms",
            "2500",
        ])
        .unwrap()
        .config()
        .unwrap();
        let nets = |v: &[&str]| v.iter().map(|s| s.parse().unwrap()).collect::<Vec<IpNet>>();
        assert_eq!(c.forward_allow, nets(&["198.18.0.0/15", "fd00::7/128"]));
        assert_eq!(
            c.rrl,
            RrlConfig {
                rps: 0,
                slip: 3,
                exempt: nets(&["198.18.1.0/24"])
            }
        );
        assert_eq!((c.max_tcp_connections, c.max_tcp_per_client), (10, 2));
        assert_eq!(c.tcp_idle_timeout, Duration::from_millis(2500));
        assert!(parse(&["--dns-allow", "10.0.0.0/40"]).is_err());
        assert!(parse(&["--dns-allow", "any"]).is_err());
        assert!(parse(&["--dns-tcp-max-connections", "0"]).is_err());
        assert!(parse(&["--dns-rrl-rps", "-1"]).is_err());
    }

    #[test]
    fn full_config() {
        let a = parse(&[
            "--dns-listen",
            "127.0.0.1",
            "--dns-listen",
            "[::1]:5353",
            "--dns-listen",
            "0.0.0.0:53",
            "--dns-ttl-mesos",
            "30",
            "--dns-ttl-l4lb",
            "1",
            "--dns-upstream",
            "127.0.0.53",
            "--dns-upstream-timeout-ms",
            "500",
        ])
        .unwrap();
        let c = a.config().unwrap();
        assert_eq!(
            c.listen,
            ["127.0.0.1:53", "[::1]:5353", "0.0.0.0:53"].map(|s| s.parse().unwrap())
        );
        assert_eq!(c.zone.ttls, Ttls { mesos: 30, l4lb: 1 });
        assert_eq!(
            c.zone.ns_addrs,
            ["127.0.0.1", "::1"].map(|s| s.parse::<IpAddr>().unwrap())
        );
        assert_eq!(c.upstreams, ["127.0.0.53:53".parse().unwrap()]);
        assert_eq!(c.upstream_timeout, Duration::from_millis(500));
    }

    #[test]
    fn ip_sources_flag() {
        use IpSource::*;
        let sources = |args: &[&str]| {
            let mut a = vec!["--dns-listen", "127.0.0.1"];
            a.extend_from_slice(args);
            parse(&a).unwrap().config().unwrap().zone.ip_sources
        };
        assert_eq!(sources(&[]), [Host, Netinfo]);
        assert_eq!(
            sources(&["--dns-ip-sources", "netinfo,mesos,host"]),
            [Netinfo, Mesos, Host]
        );
        assert_eq!(
            sources(&["--dns-ip-sources", "docker", "--dns-ip-sources", "host"]),
            [Docker, Host]
        );
        assert!(parse(&["--dns-ip-sources", "autoip"]).is_err());
        assert!(parse(&["--dns-ip-sources", ""]).is_err());
    }

    #[test]
    fn ns_addr_fallbacks() {
        let c = parse(&["--dns-listen", "0.0.0.0"])
            .unwrap()
            .config()
            .unwrap();
        assert_eq!(c.zone.ns_addrs, [IpAddr::V4(Ipv4Addr::LOCALHOST)]);
        let c = parse(&["--dns-listen", "0.0.0.0", "--dns-ns-addr", "127.0.0.9"])
            .unwrap()
            .config()
            .unwrap();
        assert_eq!(c.zone.ns_addrs, ["127.0.0.9".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn bad_values() {
        assert!(parse(&["--dns-listen", "localhost:53"]).is_err());
        assert!(parse(&["--dns-upstream", "1.2.3.4:99999"]).is_err());
        assert!(parse(&["--dns-ttl-mesos", "-1"]).is_err());
        assert!(parse(&["--dns-ttl-mesos", "4294967295"]).is_err());
        assert!(parse(&["--dns-upstream-timeout-ms", "0"]).is_err());
        assert_eq!(
            parse_dns_addr("[fd00::1]"),
            Ok("[fd00::1]:53".parse().unwrap())
        );
        assert_eq!(parse_dns_addr("::1"), Ok("[::1]:53".parse().unwrap()));
    }
}
