//! Conversions between the model's std types and the maps' `#[repr(C)]` types
//! (network byte order, IPv4-mapped addresses). Pure; no aya.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use l4lb_common::{Addr6, Backend, ServiceKey, is_v4_mapped, v4_mapped};

use crate::model::{Proto, Vip};

pub fn addr6(ip: IpAddr) -> Addr6 {
    match ip {
        IpAddr::V4(v4) => v4_mapped(u32::from_ne_bytes(v4.octets())),
        IpAddr::V6(v6) => {
            let o = v6.octets();
            core::array::from_fn(|i| {
                u32::from_ne_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])
            })
        }
    }
}

pub fn ip(addr: &Addr6) -> IpAddr {
    if is_v4_mapped(addr) {
        IpAddr::V4(Ipv4Addr::from(addr[3].to_ne_bytes()))
    } else {
        let mut o = [0u8; 16];
        for (i, w) in addr.iter().enumerate() {
            o[4 * i..4 * i + 4].copy_from_slice(&w.to_ne_bytes());
        }
        IpAddr::V6(Ipv6Addr::from(o))
    }
}

pub fn service_key(vip: &Vip) -> ServiceKey {
    ServiceKey {
        addr: addr6(vip.addr.ip()),
        port: vip.addr.port().to_be(),
        proto: vip.proto.ipproto(),
        _pad: 0,
    }
}

/// None for a protocol the agent never writes (a foreign or corrupted entry).
pub fn vip(key: &ServiceKey) -> Option<Vip> {
    Some(Vip {
        addr: SocketAddr::new(ip(&key.addr), u16::from_be(key.port)),
        proto: Proto::from_ipproto(key.proto)?,
    })
}

pub fn backend(addr: SocketAddr) -> Backend {
    Backend {
        addr: addr6(addr.ip()),
        port: addr.port().to_be(),
        family: if addr.is_ipv4() { 4 } else { 6 },
        _pad: 0,
    }
}

pub fn backend_addr(b: &Backend) -> SocketAddr {
    SocketAddr::new(ip(&b.addr), u16::from_be(b.port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for s in [
            "11.0.0.1:6379",
            "[fd01:c::6d6d:9c64:fd19:f251]:80",
            "[::1]:7002",
            "127.0.0.2:1",
        ] {
            let a: SocketAddr = s.parse().unwrap();
            assert_eq!(backend_addr(&backend(a)), a);
            let v = Vip {
                addr: a,
                proto: Proto::Udp,
            };
            assert_eq!(vip(&service_key(&v)), Some(v));
        }
    }

    #[test]
    fn layout_matches_the_kernel() {
        // bpf_sock_addr.user_ip4 holds the address bytes in network order.
        let k = service_key(&Vip {
            addr: "11.0.0.1:6379".parse().unwrap(),
            proto: Proto::Tcp,
        });
        assert_eq!(k.addr[3].to_ne_bytes(), [11, 0, 0, 1]);
        assert_eq!(k.addr[2].to_ne_bytes(), [0, 0, 0xff, 0xff]);
        assert_eq!(k.port.to_ne_bytes(), 6379u16.to_be_bytes());
        assert_eq!(k.proto, 6);
    }
}
