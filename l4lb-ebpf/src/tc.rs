//! tc reply program: backend → VIP for packets the XDP path sent to a backend.
//!
//! Attached to the egress of the interfaces the XDP program serves (the reply
//! leaves the node where the request came in). A packet whose own 5-tuple
//! (backend → client) is in `L4LB_XDP_REVNAT` gets its source rewritten to the
//! VIP:port the client used, so the client only ever sees the VIP. Checksums
//! are updated by the kernel helpers (`bpf_l3_csum_replace`,
//! `bpf_l4_csum_replace` with BPF_F_PSEUDO_HDR), which also handle packets
//! whose L4 checksum is still to be completed by offload (CHECKSUM_PARTIAL,
//! as on veth); BPF_F_MARK_MANGLED_0 keeps a zero UDP checksum zero.
//! ICMP errors about a client → backend packet are shown to the client as
//! about its VIP flow (`icmp.rs`).
//! A TCP reply's FIN, RST or last ACK marks or removes the flow's entries
//! (`flow_close.rs`), as XDP does for the client's. Everything else passes
//! unchanged (TC_ACT_OK).
use aya_ebpf::{
    bindings::{BPF_F_PSEUDO_HDR, TC_ACT_OK},
    macros::classifier,
    programs::TcContext,
};
use l4lb_common::{
    CloseStep, FLOW_FIN_BACKEND, FlowKey, FlowRevNatValue, IPPROTO_TCP, IPPROTO_UDP, TCP_FLAGS_OFF,
    close_step, v4_mapped,
};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
};

use crate::{
    csum::l4_replace_flags as l4_flags,
    flow_close,
    icmp::{self, IPPROTO_ICMP, IPPROTO_ICMPV6},
    lb::count_service,
    maps::L4LB_XDP_REVNAT,
    net::{
        ETH_P_IP_BE, ETH_P_IPV6_BE, ETH_TYPE_OFF, IP4_CHECK_OFF, IP4_SRC_OFF, IP6_SRC_OFF, L4_V4,
        L4_V6, ipv4_is_fragment, ipv4_plain_header, l4_check_off, words,
    },
};

#[classifier]
pub fn l4lb_tc_reply(ctx: TcContext) -> i32 {
    let _ = reply(&ctx);
    TC_ACT_OK as i32
}

#[inline(always)]
fn reply(ctx: &TcContext) -> Result<(), i64> {
    let ether_type: u16 = ctx.load(ETH_TYPE_OFF)?;
    if ether_type == ETH_P_IP_BE {
        reply4(ctx)
    } else if ether_type == ETH_P_IPV6_BE {
        reply6(ctx)
    } else {
        Ok(())
    }
}

/// (source port, destination port) in network order, and the checksum offset.
#[inline(always)]
fn ports(ctx: &TcContext, l4: usize, proto: u8) -> Result<(u16, u16, usize), i64> {
    let ports: [u16; 2] = ctx.load(l4)?;
    Ok((ports[0], ports[1], l4_check_off(l4, proto)))
}

#[inline(always)]
fn reply4(ctx: &TcContext) -> Result<(), i64> {
    let ip: Ipv4Hdr = ctx.load(EthHdr::LEN)?;
    if !ipv4_plain_header(ip.vihl) || ipv4_is_fragment(ip.frags) {
        return Ok(());
    }
    if ip.proto == IPPROTO_ICMP {
        return icmp::to_client4(ctx);
    }
    if ip.proto != IPPROTO_TCP && ip.proto != IPPROTO_UDP {
        return Ok(());
    }
    let (sport, dport, check_off) = ports(ctx, L4_V4, ip.proto)?;
    let (src, dst) = (
        u32::from_ne_bytes(ip.src_addr),
        u32::from_ne_bytes(ip.dst_addr),
    );
    let key = FlowKey {
        src: v4_mapped(src),
        dst: v4_mapped(dst),
        sport,
        dport,
        proto: ip.proto,
        _pad: [0; 3],
    };
    // SAFETY: copied out at once.
    let Some(vip) = (unsafe { L4LB_XDP_REVNAT.get(&key) }).copied() else {
        return Ok(());
    };
    let (new_ip, flags) = (vip.addr[3], l4_flags(ip.proto));
    ctx.skb.l4_csum_replace(
        check_off,
        src as u64,
        new_ip as u64,
        flags | BPF_F_PSEUDO_HDR as u64 | 4,
    )?;
    ctx.skb
        .l4_csum_replace(check_off, sport as u64, vip.port as u64, flags | 2)?;
    ctx.skb
        .l3_csum_replace(IP4_CHECK_OFF, src as u64, new_ip as u64, 4)?;
    ctx.skb.store(IP4_SRC_OFF, &new_ip, 0)?;
    ctx.skb.store(L4_V4, &vip.port, 0)?;
    count_service(vip.service_id, |s| s.reply_packets += 1);
    follow_close(ctx, L4_V4, &key, &vip)
}

#[inline(always)]
fn reply6(ctx: &TcContext) -> Result<(), i64> {
    let ip: Ipv6Hdr = ctx.load(EthHdr::LEN)?;
    let proto = ip.next_hdr;
    if proto == IPPROTO_ICMPV6 {
        return icmp::to_client6(ctx);
    }
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        return Ok(());
    }
    let (sport, dport, check_off) = ports(ctx, L4_V6, proto)?;
    let src = words(&ip.src_addr);
    let key = FlowKey {
        src,
        dst: words(&ip.dst_addr),
        sport,
        dport,
        proto,
        _pad: [0; 3],
    };
    // SAFETY: copied out at once.
    let Some(vip) = (unsafe { L4LB_XDP_REVNAT.get(&key) }).copied() else {
        return Ok(());
    };
    let flags = l4_flags(proto) | BPF_F_PSEUDO_HDR as u64 | 4;
    for i in 0..4 {
        ctx.skb
            .l4_csum_replace(check_off, src[i] as u64, vip.addr[i] as u64, flags)?;
    }
    ctx.skb.l4_csum_replace(
        check_off,
        sport as u64,
        vip.port as u64,
        l4_flags(proto) | 2,
    )?;
    ctx.skb.store(IP6_SRC_OFF, &vip.addr, 0)?;
    ctx.skb.store(L4_V6, &vip.port, 0)?;
    count_service(vip.service_id, |s| s.reply_packets += 1);
    follow_close(ctx, L4_V6, &key, &vip)
}

/// The backend's FIN, RST or last ACK of a TCP flow: marks or removes both
/// entries. `key` is the reply's 5-tuple as it was before the rewrite.
#[inline(always)]
fn follow_close(
    ctx: &TcContext,
    l4: usize,
    key: &FlowKey,
    vip: &FlowRevNatValue,
) -> Result<(), i64> {
    if key.proto != IPPROTO_TCP {
        return Ok(());
    }
    let tcp: u8 = ctx.load(l4 + TCP_FLAGS_OFF)?;
    let step = close_step(tcp, vip.flags, FLOW_FIN_BACKEND);
    if step != CloseStep::Keep {
        flow_close::from_backend(flow_close::encode(step), key, vip);
    }
    Ok(())
}
