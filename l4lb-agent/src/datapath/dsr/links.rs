//! The node's connected subnets, from its interface addresses: a backend in
//! one of them is on-link (reached without a gateway), the only kind L2 DSR
//! serves. A more specific route through a gateway would make the XDP
//! program pass such a backend's packets anyway (its `bpf_fib_lookup` is
//! the authority); the upkeep would only poke it needlessly.
use std::net::IpAddr;

use ipnet::IpNet;

/// The subnets of the node's non-loopback interface addresses.
#[derive(Debug, Default)]
pub struct Links {
    nets: Vec<IpNet>,
}

impl Links {
    /// Read now (getifaddrs); an error reads as no link (nothing poked).
    pub fn read() -> Links {
        let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
            return Links::default();
        };
        let nets = addrs
            .filter_map(|ifa| net(ifa.address?, ifa.netmask?))
            .filter(|n| !n.addr().is_loopback())
            .collect();
        Links { nets }
    }

    /// `ip` is in a connected subnet and is not the node's own address.
    pub fn on_link(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(&ip) && n.addr() != ip)
    }
}

fn net(
    addr: nix::sys::socket::SockaddrStorage,
    mask: nix::sys::socket::SockaddrStorage,
) -> Option<IpNet> {
    if let (Some(a), Some(m)) = (addr.as_sockaddr_in(), mask.as_sockaddr_in()) {
        let prefix = m.ip().to_bits().count_ones() as u8;
        return IpNet::new(IpAddr::V4(a.ip()), prefix).ok();
    }
    let (a, m) = (addr.as_sockaddr_in6()?, mask.as_sockaddr_in6()?);
    let prefix = m.ip().to_bits().count_ones() as u8;
    IpNet::new(IpAddr::V6(a.ip()), prefix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_in_a_connected_subnet_is_on_link_the_node_itself_is_not() {
        let l = Links {
            nets: vec![
                "198.18.2.1/24".parse().unwrap(),
                "fd00:b1::1/64".parse().unwrap(),
            ],
        };
        assert!(l.on_link("198.18.2.2".parse().unwrap()));
        assert!(l.on_link("fd00:b1::2".parse().unwrap()));
        assert!(!l.on_link("198.18.2.1".parse().unwrap()));
        assert!(!l.on_link("198.18.3.2".parse().unwrap()));
    }
}
