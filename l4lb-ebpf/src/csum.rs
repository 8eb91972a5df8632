//! Checksum helpers for the packet programs: the RFC 1624 incremental update
//! XDP computes itself, and the flags the tc program passes to the kernel's
//! `bpf_l4_csum_replace`.
use aya_ebpf::bindings::BPF_F_MARK_MANGLED_0;
use l4lb_common::IPPROTO_UDP;

/// RFC 1624 eqn 3 over 16-bit words: HC' = ~(~HC + ~m + m'). The words are
/// read in host order from network-order bytes; one's-complement sums do not
/// depend on the byte order as long as every term uses the same one.
#[inline(always)]
pub fn csum_update(check: u16, old32: &[u32], new32: &[u32], old16: &[u16], new16: &[u16]) -> u16 {
    let mut d = delta32(old32, new32);
    for w in old16 {
        d += u64::from(!*w);
    }
    for w in new16 {
        d += u64::from(*w);
    }
    csum_apply(check, d)
}

/// The `~m + m'` part of RFC 1624 eqn 3 for 32-bit words, unfolded: one
/// computation serves every checksum that covers the same words (XDP's
/// IPv4 header and TCP/UDP checksums both cover the destination address).
#[inline(always)]
pub fn delta32(old: &[u32], new: &[u32]) -> u64 {
    let mut d = 0u64;
    for w in old {
        let w = !*w;
        d += u64::from(w >> 16) + u64::from(w & 0xffff);
    }
    for w in new {
        d += u64::from(*w >> 16) + u64::from(*w & 0xffff);
    }
    d
}

/// `check` updated by the unfolded difference `d` ([`delta32`] plus `~m +
/// m'` of any 16-bit words).
#[inline(always)]
pub fn csum_apply(check: u16, d: u64) -> u16 {
    let mut sum = u64::from(!check) + d;
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// A computed UDP checksum of 0 goes out as 0xffff (0 means "no checksum").
#[inline(always)]
pub fn udp_nonzero(proto: u8, check: u16) -> u16 {
    if proto == IPPROTO_UDP && check == 0 {
        0xffff
    } else {
        check
    }
}

/// Extra `bpf_l4_csum_replace` flags for `proto`: BPF_F_MARK_MANGLED_0 for
/// UDP, so a zero checksum (none) stays zero and a computed zero is mangled.
#[inline(always)]
pub fn l4_replace_flags(proto: u8) -> u64 {
    if proto == IPPROTO_UDP {
        BPF_F_MARK_MANGLED_0 as u64
    } else {
        0
    }
}
