//! Packet headers: EtherType values, field offsets and the parsing helpers the
//! packet programs (`xdp.rs`, `tc.rs`, the benchmark's `pktgen.rs`) share.
//! Only untagged Ethernet, IPv4 without options and IPv6 without extension
//! headers are parsed; everything else is the caller's to pass or guard.
use core::mem::size_of;

use aya_ebpf::programs::{TcContext, XdpContext};
use l4lb_common::{Addr6, IPPROTO_TCP};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
};

/// `AF_INET` / `AF_INET6` as `bpf_fib_lookup` takes them.
pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;

/// EtherTypes as they sit in the frame (network order read as a native u16).
pub const ETH_P_IP_BE: u16 = 0x0800u16.to_be();
pub const ETH_P_IPV6_BE: u16 = 0x86DDu16.to_be();

/// Offsets inside the headers (network-types has no field offsets).
pub const ETH_TYPE_OFF: usize = 12;
/// The IPv4 protocol, header checksum, source and destination addresses of
/// an untagged frame.
#[allow(dead_code)] // only the benchmark object (`pktgen.rs`) reads it
pub const IP4_PROTO_OFF: usize = EthHdr::LEN + 9;
pub const IP4_CHECK_OFF: usize = EthHdr::LEN + 10;
/// The IPv4 total length, the IPv6 payload length.
pub const IP4_LEN_OFF: usize = EthHdr::LEN + 2;
pub const IP6_LEN_OFF: usize = EthHdr::LEN + 4;
pub const IP4_SRC_OFF: usize = EthHdr::LEN + 12;
pub const IP4_DST_OFF: usize = EthHdr::LEN + 16;
/// The IPv6 source and destination addresses of an untagged frame.
pub const IP6_SRC_OFF: usize = EthHdr::LEN + 8;
pub const IP6_DST_OFF: usize = EthHdr::LEN + 24;
/// Where the TCP/UDP header starts: IPv4 without options, IPv6 without
/// extension headers.
pub const L4_V4: usize = EthHdr::LEN + Ipv4Hdr::LEN;
pub const L4_V6: usize = EthHdr::LEN + Ipv6Hdr::LEN;
/// Offset of the checksum inside the TCP and the UDP header.
pub const TCP_CHECK_OFF: usize = 16;
pub const UDP_CHECK_OFF: usize = 6;

/// The L4 checksum's offset in a TCP (`proto` = IPPROTO_TCP) or UDP header
/// that starts at `l4`.
#[inline(always)]
pub fn l4_check_off(l4: usize, proto: u8) -> usize {
    if proto == IPPROTO_TCP {
        l4 + TCP_CHECK_OFF
    } else {
        l4 + UDP_CHECK_OFF
    }
}

/// IPv4 header fields → "a fragment": MF set or a fragment offset (the
/// first byte's low 6 bits are MF and the offset's high bits; DF is ignored).
#[inline(always)]
pub fn ipv4_is_fragment(frags: [u8; 2]) -> bool {
    (frags[0] & 0x3f) != 0 || frags[1] != 0
}

/// IPv4 with a 20-byte header (version 4, IHL 5): no options.
#[inline(always)]
pub fn ipv4_plain_header(vihl: u8) -> bool {
    vihl == 0x45
}

/// A packet read and written in place: an XDP frame, or the linear head
/// of a tc skb (pulled first: `bpf_skb_pull_data`).
pub trait Direct {
    fn data(&self) -> usize;
    fn data_end(&self) -> usize;
}

impl Direct for XdpContext {
    #[inline(always)]
    fn data(&self) -> usize {
        XdpContext::data(self)
    }

    #[inline(always)]
    fn data_end(&self) -> usize {
        XdpContext::data_end(self)
    }
}

impl Direct for TcContext {
    #[inline(always)]
    fn data(&self) -> usize {
        TcContext::data(self)
    }

    #[inline(always)]
    fn data_end(&self) -> usize {
        TcContext::data_end(self)
    }
}

/// A bounds-checked pointer to a `T` at `offset` in the packet.
#[inline(always)]
pub fn ptr_at<T>(ctx: &impl Direct, offset: usize) -> Result<*mut T, ()> {
    let start = ctx.data();
    if start + offset + size_of::<T>() > ctx.data_end() {
        return Err(());
    }
    Ok((start + offset) as *mut T)
}

/// An IPv6 address (network-order bytes) as the four words the maps key on.
#[inline(always)]
pub fn words(b: &[u8; 16]) -> Addr6 {
    [
        u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
        u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        u32::from_ne_bytes([b[8], b[9], b[10], b[11]]),
        u32::from_ne_bytes([b[12], b[13], b[14], b[15]]),
    ]
}

/// The inverse of [`words`].
#[inline(always)]
pub fn bytes(a: &Addr6) -> [u8; 16] {
    let (w0, w1, w2, w3) = (
        a[0].to_ne_bytes(),
        a[1].to_ne_bytes(),
        a[2].to_ne_bytes(),
        a[3].to_ne_bytes(),
    );
    [
        w0[0], w0[1], w0[2], w0[3], w1[0], w1[1], w1[2], w1[3], w2[0], w2[1], w2[2], w2[3], w3[0],
        w3[1], w3[2], w3[3],
    ]
}
