//! Frames and independent checksum checks shared by the packet-program
//! tests (`xdp_prog.rs`, `xdp_tc_ingress.rs`): checksums are recomputed
//! from scratch over the returned frame (RFC 1071), sharing no code with the
//! programs' incremental updates.
// Each test file uses a part of these.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};

use l4lb_agent::packet::{self, FrameOpts, Tuple};

/// One's-complement sum of 16-bit big-endian words, folded.
pub fn sum16(parts: &[&[u8]]) -> u16 {
    let bytes: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
    let mut sum: u32 = 0;
    for pair in bytes.chunks(2) {
        let hi = u32::from(pair[0]) << 8;
        let lo = pair.get(1).copied().map(u32::from).unwrap_or(0);
        sum += hi | lo;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// (L3 offset, L4 offset, proto) of an Ethernet + IPv4/IPv6 frame.
pub fn layout(f: &[u8]) -> (usize, usize, u8, bool) {
    match u16::from_be_bytes([f[12], f[13]]) {
        0x0800 => (14, 14 + usize::from(f[14] & 0xf) * 4, f[14 + 9], true),
        0x86dd => (14, 14 + 40, f[14 + 6], false),
        t => panic!("not IP: ethertype {t:#x}"),
    }
}

/// IPv4 header checksum verifies (sums to 0xffff over the header).
pub fn valid_ip4(f: &[u8]) -> bool {
    let (l3, l4, _, v4) = layout(f);
    assert!(v4);
    sum16(&[&f[l3..l4]]) == 0xffff
}

/// Sets IPv4 total length and recomputes the header checksum.
pub fn fix_ip4(f: &mut [u8], tot_len: u16) {
    f[16..18].copy_from_slice(&tot_len.to_be_bytes());
    f[24..26].copy_from_slice(&[0, 0]);
    let ihl = usize::from(f[14] & 0xf) * 4;
    let c = !sum16(&[&f[14..14 + ihl]]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
}

/// An ICMP "fragmentation needed" (IPv4) or ICMPv6 "packet too big" from
/// `from` to `to`, embedding the first 8 L4 bytes of `about`, with valid
/// checksums.
pub fn icmp_error(from: IpAddr, to: IpAddr, about: &Tuple) -> Vec<u8> {
    let inner_frame = packet::frame(about, &FrameOpts::default());
    let (_, l4, _, v4) = layout(&inner_frame);
    let inner = &inner_frame[14..l4 + 8];
    let mut icmp = if v4 {
        vec![3, 4, 0, 0, 0, 0, 0x05, 0x00]
    } else {
        vec![2, 0, 0, 0, 0, 0, 0x05, 0x00]
    };
    icmp.extend_from_slice(inner);
    let mut f = inner_frame[..12].to_vec();
    match (from, to) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let c = !sum16(&[&icmp]);
            icmp[2..4].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
            f.extend_from_slice(&icmp);
            let len = (f.len() - 14) as u16;
            fix_ip4(&mut f, len);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let len = icmp.len() as u16;
            f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
            f.extend_from_slice(&len.to_be_bytes());
            f.extend_from_slice(&[58, 64]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
            let c = !sum16(&[
                &f[22..54],
                &u32::from(len).to_be_bytes(),
                &[0, 0, 0, 58],
                &icmp,
            ]);
            icmp[2..4].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&icmp);
        }
        _ => panic!("mixed families"),
    }
    f
}

/// The embedded packet's (source, destination) and whether the ICMP
/// checksum (and the embedded IPv4 header checksum) verify.
pub fn embedded(f: &[u8]) -> (SocketAddr, SocketAddr, bool) {
    let (_, l4, _, v4) = layout(f);
    let inner = &f[l4 + 8..];
    let (ilen, a) = if v4 { (20, 12) } else { (40, 8) };
    let alen = (ilen - a) / 2;
    let ip = |b: &[u8]| -> IpAddr {
        if v4 {
            IpAddr::from(<[u8; 4]>::try_from(b).unwrap())
        } else {
            IpAddr::from(<[u8; 16]>::try_from(b).unwrap())
        }
    };
    let port = |o: usize| u16::from_be_bytes([inner[ilen + o], inner[ilen + o + 1]]);
    let src = SocketAddr::new(ip(&inner[a..a + alen]), port(0));
    let dst = SocketAddr::new(ip(&inner[a + alen..ilen]), port(2));
    let ok = if v4 {
        sum16(&[&f[l4..]]) == 0xffff && sum16(&[&inner[..20]]) == 0xffff
    } else {
        let len = (f.len() - l4) as u32;
        sum16(&[&f[22..54], &len.to_be_bytes(), &[0, 0, 0, 58], &f[l4..]]) == 0xffff
    };
    (src, dst, ok)
}
