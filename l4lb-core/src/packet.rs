//! Ethernet frames for BPF_PROG_TEST_RUN: `explain` crafts one, the tests and
//! the benchmark use them as fixtures. Pure (no aya): builds IPv4/IPv6 +
//! TCP/UDP frames with correct checksums computed from scratch (RFC 1071) and
//! reads addresses and ports back out of a frame a program returned.
use std::net::{IpAddr, SocketAddr};

use crate::model::Proto;

pub const ETH_LEN: usize = 14;
pub const IPV4_LEN: usize = 20;
pub const IPV6_LEN: usize = 40;
pub const TCP_LEN: usize = 20;
pub const UDP_LEN: usize = 8;

const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// What a frame carries, as far as the load balancer cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuple {
    pub proto: Proto,
    pub src: SocketAddr,
    pub dst: SocketAddr,
}

/// Options of [`frame`] beyond the 5-tuple.
#[derive(Clone, Debug)]
pub struct FrameOpts {
    pub payload: Vec<u8>,
    /// TCP flags byte (default SYN).
    pub tcp_flags: u8,
    /// IPv4 UDP only: send checksum 0 ("none").
    pub udp_no_checksum: bool,
}

impl Default for FrameOpts {
    fn default() -> Self {
        FrameOpts {
            payload: b"l4lb".to_vec(),
            tcp_flags: 0x02,
            udp_no_checksum: false,
        }
    }
}

/// An Ethernet frame src → dst with valid IP and L4 checksums.
/// Panics if src and dst are of different families.
pub fn frame(t: &Tuple, opts: &FrameOpts) -> Vec<u8> {
    let l4 = l4_segment(t, opts);
    let mut f = Vec::with_capacity(ETH_LEN + IPV6_LEN + l4.len());
    f.extend_from_slice(&DST_MAC);
    f.extend_from_slice(&SRC_MAC);
    match (t.src.ip(), t.dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f.extend_from_slice(&0x0800u16.to_be_bytes());
            let mut ip = [0u8; IPV4_LEN];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&((IPV4_LEN + l4.len()) as u16).to_be_bytes());
            ip[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
            ip[6] = 0x40; // DF
            ip[8] = 64;
            ip[9] = t.proto.ipproto();
            ip[12..16].copy_from_slice(&s.octets());
            ip[16..20].copy_from_slice(&d.octets());
            let c = checksum(&[&ip]);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&ip);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            f.extend_from_slice(&0x86ddu16.to_be_bytes());
            let mut ip = [0u8; IPV6_LEN];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&(l4.len() as u16).to_be_bytes());
            ip[6] = t.proto.ipproto();
            ip[7] = 64;
            ip[8..24].copy_from_slice(&s.octets());
            ip[24..40].copy_from_slice(&d.octets());
            f.extend_from_slice(&ip);
        }
        _ => panic!("frame: {} and {} are of different families", t.src, t.dst),
    }
    f.extend_from_slice(&l4);
    f
}

fn l4_segment(t: &Tuple, opts: &FrameOpts) -> Vec<u8> {
    let mut seg = match t.proto {
        Proto::Tcp => {
            let mut h = vec![0u8; TCP_LEN];
            h[0..2].copy_from_slice(&t.src.port().to_be_bytes());
            h[2..4].copy_from_slice(&t.dst.port().to_be_bytes());
            h[4..8].copy_from_slice(&1u32.to_be_bytes());
            h[12] = 5 << 4;
            h[13] = opts.tcp_flags;
            h[14..16].copy_from_slice(&65535u16.to_be_bytes());
            h
        }
        Proto::Udp => {
            let mut h = vec![0u8; UDP_LEN];
            h[0..2].copy_from_slice(&t.src.port().to_be_bytes());
            h[2..4].copy_from_slice(&t.dst.port().to_be_bytes());
            h[4..6].copy_from_slice(&((UDP_LEN + opts.payload.len()) as u16).to_be_bytes());
            h
        }
    };
    seg.extend_from_slice(&opts.payload);
    let off = check_offset(t.proto);
    if t.proto == Proto::Udp && opts.udp_no_checksum && t.src.is_ipv4() {
        return seg;
    }
    let mut c = checksum(&[
        &pseudo_header(t.src.ip(), t.dst.ip(), t.proto, seg.len()),
        &seg,
    ]);
    if t.proto == Proto::Udp && c == 0 {
        c = 0xffff;
    }
    seg[off..off + 2].copy_from_slice(&c.to_be_bytes());
    seg
}

/// Offset of the checksum inside the TCP or UDP header.
pub fn check_offset(proto: Proto) -> usize {
    match proto {
        Proto::Tcp => 16,
        Proto::Udp => 6,
    }
}

pub fn pseudo_header(src: IpAddr, dst: IpAddr, proto: Proto, l4_len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(40);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.push(0);
            p.push(proto.ipproto());
            p.extend_from_slice(&(l4_len as u16).to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&(l4_len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, proto.ipproto()]);
        }
        _ => panic!("pseudo_header: mixed families"),
    }
    p
}

/// The Internet checksum (RFC 1071) of the concatenated parts.
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u64 = 0;
    let mut odd: Option<u8> = None;
    for part in parts {
        for &b in *part {
            match odd.take() {
                Some(hi) => sum += u64::from(u16::from_be_bytes([hi, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u64::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The 5-tuple of an Ethernet + IPv4/IPv6 (no options) + TCP/UDP frame.
pub fn parse(f: &[u8]) -> Option<Tuple> {
    let ether_type = u16::from_be_bytes(f.get(12..14)?.try_into().ok()?);
    let (src, dst, proto, l4) = match ether_type {
        0x0800 => {
            let ip = f.get(ETH_LEN..ETH_LEN + IPV4_LEN)?;
            let s: [u8; 4] = ip[12..16].try_into().ok()?;
            let d: [u8; 4] = ip[16..20].try_into().ok()?;
            (
                IpAddr::from(s),
                IpAddr::from(d),
                ip[9],
                ETH_LEN + usize::from(ip[0] & 0xf) * 4,
            )
        }
        0x86dd => {
            let ip = f.get(ETH_LEN..ETH_LEN + IPV6_LEN)?;
            let s: [u8; 16] = ip[8..24].try_into().ok()?;
            let d: [u8; 16] = ip[24..40].try_into().ok()?;
            (IpAddr::from(s), IpAddr::from(d), ip[6], ETH_LEN + IPV6_LEN)
        }
        _ => return None,
    };
    let proto = Proto::from_ipproto(proto)?;
    let ports = f.get(l4..l4 + 4)?;
    let sport = u16::from_be_bytes([ports[0], ports[1]]);
    let dport = u16::from_be_bytes([ports[2], ports[3]]);
    Some(Tuple {
        proto,
        src: SocketAddr::new(src, sport),
        dst: SocketAddr::new(dst, dport),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3 example bytes: sum 0xddf2, checksum its complement.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&[&data]), !0xddf2);
    }

    #[test]
    fn frames_round_trip_and_verify() {
        for (src, dst) in [
            ("198.18.1.2:40000", "11.0.0.1:80"),
            ("[fd00:c1::2]:40000", "[fd01:c::1]:80"),
        ] {
            for proto in [Proto::Tcp, Proto::Udp] {
                let t = Tuple {
                    proto,
                    src: src.parse().unwrap(),
                    dst: dst.parse().unwrap(),
                };
                let f = frame(&t, &FrameOpts::default());
                assert_eq!(parse(&f), Some(t));
                let l4 = if t.src.is_ipv4() {
                    ETH_LEN + IPV4_LEN
                } else {
                    ETH_LEN + IPV6_LEN
                };
                if t.src.is_ipv4() {
                    assert_eq!(checksum(&[&f[ETH_LEN..l4]]), 0);
                }
                let ph = pseudo_header(t.src.ip(), t.dst.ip(), proto, f.len() - l4);
                assert_eq!(checksum(&[&ph, &f[l4..]]), 0, "{t:?}");
            }
        }
    }
}
