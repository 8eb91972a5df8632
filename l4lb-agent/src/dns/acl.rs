//! Address lists for `--dns-allow` and `--dns-rrl-exempt`.
use std::net::IpAddr;

use ipnet::IpNet;

/// `CIDR`, or a bare `IP` (a /32 or /128).
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>()
        .map(|n| n.trunc())
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not a CIDR (IP/LEN) or an IP"))
}

/// Loopback only: 127.0.0.0/8 and ::1/128.
pub fn loopback() -> Vec<IpNet> {
    vec![
        "127.0.0.0/8".parse().expect("valid CIDR"),
        "::1/128".parse().expect("valid CIDR"),
    ]
}

/// Whether `ip` is in one of `nets`. An IPv4 client of a dual-stack socket
/// (`::ffff:a.b.c.d`) is matched as the IPv4 address it is.
pub fn contains(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    nets.iter().any(|n| n.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parse_and_match() {
        let nets = vec![
            parse_net("198.18.0.0/24").unwrap(),
            parse_net("fd00::1").unwrap(),
        ];
        assert!(contains(&nets, ip("198.18.0.77")));
        assert!(contains(&nets, ip("::ffff:198.18.0.77")));
        assert!(!contains(&nets, ip("198.18.1.1")));
        assert!(contains(&nets, ip("fd00::1")));
        assert!(!contains(&nets, ip("fd00::2")));
        assert_eq!(parse_net("10.1.2.3/8"), Ok("10.0.0.0/8".parse().unwrap()));
        assert!(parse_net("10.0.0.0/33").is_err());
        assert!(parse_net("example.com").is_err());
        let lo = loopback();
        assert!(contains(&lo, ip("127.5.6.7")) && contains(&lo, ip("::1")));
        assert!(contains(&lo, ip("::ffff:127.0.0.1")));
        assert!(!contains(&lo, ip("198.18.0.1")));
    }
}
