//! The `--dns-*` flags (flattened into `run`'s arguments).
use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use super::{
    records::{Ttls, ZoneOptions},
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
    /// TTL (seconds) of the `mesos` zone's records (Mesos-DNS's default).
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
    /// Address(es) published for `ns1.<zone>`, each zone's name server.
    /// Default: the specific --dns-listen IPs, else 127.0.0.1.
    #[arg(long = "dns-ns-addr", value_name = "IP")]
    pub dns_ns_addr: Vec<IpAddr>,
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
            },
            upstreams: self.dns_upstream.clone(),
            upstream_timeout: Duration::from_millis(self.dns_upstream_timeout_ms),
            ..DnsConfig::default()
        })
    }
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
