//! XDP ingress: packet-level load balancing for traffic entering the node.
//!
//! For a TCP or UDP packet to a VIP:port (IPv4 without options and not a
//! fragment, or IPv6 whose next header is TCP/UDP) the program
//!
//! 1. looks the client's 5-tuple up in the connection table (`L4LB_CONNTRACK`):
//!    a tracked flow keeps its backend while that backend is still a member of
//!    the service (weight 0 included), whatever the revision;
//! 2. otherwise picks slot `hash(5-tuple) % slot_count` of the service's active
//!    Maglev generation (the same table the socket hooks use) — a few slots
//!    further, by the same hash, when that backend is down for this node
//!    (`L4LB_HEALTH`, seen by the socket path; existing flows keep theirs) — records the flow
//!    and the reverse-NAT entry the tc reply program needs (`L4LB_XDP_REVNAT`);
//! 3. rewrites the destination address and port with incremental IPv4 header
//!    and TCP/UDP checksum updates (RFC 1624; a zero IPv4 UDP checksum stays 0)
//!    and returns XDP_PASS, so the kernel routes the packet to the backend;
//! 4. follows a TCP flow to its end (`l4lb_common::tcp_close`): the client's
//!    first FIN sets a close bit in both entries, a RST or the last ACK after
//!    both FINs removes them (the tc program does the same for the backend's
//!    side). A FIN or RST that finds no entry does not create one.
//!
//! An ICMP error to a VIP address about a reply is sent on to the flow's
//! backend (`icmp.rs`). What the program cannot balance (fragments, IPv4
//! options, IPv6 extension headers, other ICMP and protocols, a cut-off L4 header) is dropped and
//! counted per reason (`L4LB_VIP_GUARD`) when its destination is a VIP address
//! (`L4LB_VIP_ADDRS`): passed on, it would reach the node's routes with the VIP
//! still in it. To any other address it passes untouched, as do ARP, VLAN-tagged
//! frames and TCP/UDP to a port of a VIP address that is not a service. A VIP
//! with no backend taking new flows drops the packet and counts `no_backend`.
//!
//! `l4lb-agent explain` runs this program through BPF_PROG_TEST_RUN with
//! [`EXPLAIN_MAGIC`] as XDP metadata: same decision path, but no map writes
//! and no counters, so asking does not change the answer to the next packet.
use core::mem::size_of;

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_FIB_LKUP_RET_SUCCESS, bpf_fib_lookup as FibParams, xdp_action},
    helpers::{bpf_fib_lookup, bpf_redirect},
    macros::xdp,
    programs::XdpContext,
};
use l4lb_common::{
    Addr6, Backend, CloseStep, EXPLAIN_MAGIC, FLOW_FIN_CLIENT, FlowKey, GUARD_EXT_HEADER,
    GUARD_FRAGMENT, GUARD_IP_OPTIONS, GUARD_OTHER_PROTO, GUARD_TRUNCATED, HOOK_XDP, IPPROTO_TCP,
    IPPROTO_UDP, MemberKey, REASON_NEW, REASON_NO_BACKEND, REASON_TRACKED, REASON_TRACKED_WEIGHT0,
    ServiceValue, TCP_FLAGS_OFF, XDP_F_FIB, close_step, may_open, reopens, v4_mapped,
};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
    udp::UdpHdr,
};

use crate::{
    csum::{csum_update, udp_nonzero},
    flow_close,
    icmp::{self, IPPROTO_ICMP, IPPROTO_ICMPV6},
    lb::{
        MemberEvent, Verdict, choose_up, count_backend, count_member, count_service, lookup_service,
    },
    maps::{
        L4LB_BACKENDS, L4LB_CONNTRACK, L4LB_MEMBERS, L4LB_VIP_ADDRS, L4LB_VIP_GUARD,
        L4LB_XDP_CONFIG,
    },
    monitor,
    net::{
        AF_INET, AF_INET6, ETH_P_IP_BE, ETH_P_IPV6_BE, L4_V4, L4_V6, TCP_CHECK_OFF, UDP_CHECK_OFF,
        bytes, ipv4_is_fragment, ipv4_plain_header, ptr_at, words,
    },
};

#[xdp]
pub fn l4lb_xdp(ctx: XdpContext) -> u32 {
    match ingress(&ctx) {
        Ok(action) => action,
        Err(()) => xdp_action::XDP_PASS,
    }
}

/// True when the caller put [`EXPLAIN_MAGIC`] in front of the packet as XDP
/// metadata (only BPF_PROG_TEST_RUN does; received frames carry none).
#[inline(always)]
fn is_explain(ctx: &XdpContext) -> bool {
    let meta = ctx.metadata();
    if meta + size_of::<u32>() > ctx.metadata_end() {
        return false;
    }
    // SAFETY: bounds checked against the end of the metadata just above.
    unsafe { core::ptr::read_unaligned(meta as *const u32) == EXPLAIN_MAGIC }
}

#[inline(always)]
fn ingress(ctx: &XdpContext) -> Result<u32, ()> {
    let eth: *const EthHdr = ptr_at(ctx, 0)?;
    // SAFETY: every packet pointer below was bounds-checked by ptr_at.
    let ether_type = unsafe { (*eth).ether_type };
    if ether_type == ETH_P_IP_BE {
        ingress4(ctx)
    } else if ether_type == ETH_P_IPV6_BE {
        ingress6(ctx)
    } else {
        Ok(xdp_action::XDP_PASS)
    }
}

/// Source and destination ports (network order), the checksum's offset and
/// the TCP flags (0 for UDP).
#[inline(always)]
fn l4_ports(ctx: &XdpContext, l4: usize, proto: u8) -> Result<(u16, u16, usize, u8), ()> {
    if proto == IPPROTO_TCP {
        let th: *const TcpHdr = ptr_at(ctx, l4)?;
        // SAFETY: bounds-checked; the flags byte lies inside the 20-byte header.
        unsafe {
            Ok((
                u16::from_ne_bytes((*th).source),
                u16::from_ne_bytes((*th).dest),
                l4 + TCP_CHECK_OFF,
                *(th as *const u8).add(TCP_FLAGS_OFF),
            ))
        }
    } else {
        let uh: *const UdpHdr = ptr_at(ctx, l4)?;
        // SAFETY: bounds-checked.
        unsafe {
            Ok((
                u16::from_ne_bytes((*uh).src),
                u16::from_ne_bytes((*uh).dst),
                l4 + UDP_CHECK_OFF,
                0,
            ))
        }
    }
}

#[inline(always)]
fn ingress4(ctx: &XdpContext) -> Result<u32, ()> {
    let ip: *mut Ipv4Hdr = ptr_at(ctx, EthHdr::LEN)?;
    // SAFETY: bounds-checked.
    let (vihl, frags, proto, src, dst) = unsafe {
        (
            (*ip).vihl,
            (*ip).frags,
            (*ip).proto,
            (*ip).src_addr,
            (*ip).dst_addr,
        )
    };
    let (src, dst) = (u32::from_ne_bytes(src), u32::from_ne_bytes(dst));
    // Fragments (MF set or offset != 0), IP options (IHL != 5) and other
    // protocols: not balanced here; dropped if sent to a VIP address.
    if ipv4_is_fragment(frags) {
        return Ok(guard(ctx, v4_mapped(dst), GUARD_FRAGMENT));
    }
    if !ipv4_plain_header(vihl) {
        return Ok(guard(ctx, v4_mapped(dst), GUARD_IP_OPTIONS));
    }
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        if proto == IPPROTO_ICMP && is_vip_addr(ctx, v4_mapped(dst)) {
            return Ok(icmp::to_backend4(ctx)
                .unwrap_or_else(|()| guard(ctx, v4_mapped(dst), GUARD_OTHER_PROTO)));
        }
        return Ok(guard(ctx, v4_mapped(dst), GUARD_OTHER_PROTO));
    }
    let Ok((sport, dport, check_off, tcp)) = l4_ports(ctx, L4_V4, proto) else {
        return Ok(guard(ctx, v4_mapped(dst), GUARD_TRUNCATED));
    };
    let key = FlowKey {
        src: v4_mapped(src),
        dst: v4_mapped(dst),
        sport,
        dport,
        proto,
        _pad: [0; 3],
    };
    let Some(svc) = lookup_service(key.dst, dport, proto) else {
        return Ok(xdp_action::XDP_PASS);
    };
    let Some((backend_id, backend, flags)) = select(ctx, &key, &svc, tcp) else {
        return Ok(xdp_action::XDP_DROP);
    };
    if backend.family != 4 {
        // The agent never pairs a v4 VIP with a v6 backend; drop rather than misroute.
        return Ok(xdp_action::XDP_DROP);
    }
    let new_ip = backend.addr[3];
    let check: *mut [u8; 2] = ptr_at(ctx, check_off)?;
    // SAFETY: bounds-checked (ip, check) and the ports were read through the same bounds.
    unsafe {
        // IPv4 header checksum: only the destination address changed.
        let ipc = u16::from_ne_bytes((*ip).check);
        (*ip).check = csum_update(ipc, &[dst], &[new_ip], &[], &[]).to_ne_bytes();
        (*ip).dst_addr = new_ip.to_ne_bytes();
        let old = u16::from_ne_bytes(*check);
        // UDP over IPv4 with checksum 0 means "no checksum": keep it 0.
        if !(proto == IPPROTO_UDP && old == 0) {
            let c = csum_update(old, &[dst], &[new_ip], &[dport], &[backend.port]);
            *check = udp_nonzero(proto, c).to_ne_bytes();
        }
        set_dport(ctx, L4_V4, proto, backend.port)?;
    }
    count(ctx, &svc, backend_id);
    follow_close(ctx, &key, backend_id, flags, tcp);
    Ok(forward4(ctx, ip))
}

#[inline(always)]
fn ingress6(ctx: &XdpContext) -> Result<u32, ()> {
    let ip: *mut Ipv6Hdr = ptr_at(ctx, EthHdr::LEN)?;
    // SAFETY: bounds-checked.
    let (proto, src, dst) = unsafe { ((*ip).next_hdr, (*ip).src_addr, (*ip).dst_addr) };
    // Extension headers (fragments included) and other protocols: not
    // balanced here; dropped if sent to a VIP address.
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        if proto == IPPROTO_ICMPV6 && is_vip_addr(ctx, words(&dst)) {
            return Ok(icmp::to_backend6(ctx)
                .unwrap_or_else(|()| guard(ctx, words(&dst), GUARD_OTHER_PROTO)));
        }
        return Ok(guard(ctx, words(&dst), ipv6_reason(proto)));
    }
    let Ok((sport, dport, check_off, tcp)) = l4_ports(ctx, L4_V6, proto) else {
        return Ok(guard(ctx, words(&dst), GUARD_TRUNCATED));
    };
    let key = FlowKey {
        src: words(&src),
        dst: words(&dst),
        sport,
        dport,
        proto,
        _pad: [0; 3],
    };
    let Some(svc) = lookup_service(key.dst, dport, proto) else {
        return Ok(xdp_action::XDP_PASS);
    };
    let Some((backend_id, backend, flags)) = select(ctx, &key, &svc, tcp) else {
        return Ok(xdp_action::XDP_DROP);
    };
    if backend.family != 6 {
        return Ok(xdp_action::XDP_DROP);
    }
    let check: *mut [u8; 2] = ptr_at(ctx, check_off)?;
    // SAFETY: bounds-checked.
    unsafe {
        // No IPv6 header checksum; TCP/UDP cover the address in the pseudo-header.
        let old = u16::from_ne_bytes(*check);
        let c = csum_update(old, &key.dst, &backend.addr, &[dport], &[backend.port]);
        *check = udp_nonzero(proto, c).to_ne_bytes();
        (*ip).dst_addr = bytes(&backend.addr);
        set_dport(ctx, L4_V6, proto, backend.port)?;
    }
    count(ctx, &svc, backend_id);
    follow_close(ctx, &key, backend_id, flags, tcp);
    Ok(forward6(ctx, ip))
}

/// A packet the program does not balance: dropped and counted under `reason`
/// if `dst` is a VIP address (the kernel would route it on with the VIP in
/// it), passed untouched otherwise.
#[inline(always)]
fn guard(ctx: &XdpContext, dst: Addr6, reason: u32) -> u32 {
    // SAFETY: only the presence of the key is used.
    if unsafe { L4LB_VIP_ADDRS.get(&dst) }.is_none() {
        return xdp_action::XDP_PASS;
    }
    if !is_explain(ctx)
        && let Some(n) = L4LB_VIP_GUARD.get_ptr_mut(reason)
    {
        // SAFETY: per-CPU array element, only this CPU writes it while we run.
        unsafe { *n += 1 };
    }
    xdp_action::XDP_DROP
}

/// An ICMP error to a VIP address is steered to its flow's backend
/// (`icmp.rs`); explaining never translates.
#[inline(always)]
fn is_vip_addr(ctx: &XdpContext, dst: Addr6) -> bool {
    // SAFETY: only the presence of the key is used.
    !is_explain(ctx) && unsafe { L4LB_VIP_ADDRS.get(&dst) }.is_some()
}

/// Why an IPv6 packet whose next header is not TCP/UDP is not balanced.
#[inline(always)]
fn ipv6_reason(next_hdr: u8) -> u32 {
    match next_hdr {
        44 => GUARD_FRAGMENT,
        // Hop-by-hop, routing, destination options, AH, mobility, HIP, shim6.
        0 | 43 | 51 | 60 | 135 | 139 | 140 => GUARD_EXT_HEADER,
        _ => GUARD_OTHER_PROTO,
    }
}

/// # Safety
/// `l4` must be the offset of a TCP or UDP header already bounds-checked.
#[inline(always)]
unsafe fn set_dport(ctx: &XdpContext, l4: usize, proto: u8, port_be: u16) -> Result<(), ()> {
    if proto == IPPROTO_TCP {
        let th: *mut TcpHdr = ptr_at(ctx, l4)?;
        // SAFETY: bounds-checked.
        unsafe { (*th).dest = port_be.to_ne_bytes() };
    } else {
        let uh: *mut UdpHdr = ptr_at(ctx, l4)?;
        // SAFETY: bounds-checked.
        unsafe { (*uh).dst = port_be.to_ne_bytes() };
    }
    Ok(())
}

/// The flow's backend and its TCP close bits (None: a new entry, or none):
/// the tracked one while it is still a member of the service, else a fresh
/// Maglev pick (recorded unless explaining, or unless `tcp` is a FIN/RST that
/// must not bring a closed flow back). None = the VIP has no backend for new
/// flows (counted, dropped).
#[inline(always)]
fn select(
    ctx: &XdpContext,
    key: &FlowKey,
    svc: &ServiceValue,
    tcp: u8,
) -> Option<(u32, Backend, Option<u32>)> {
    // SAFETY: values are copied out before any other map operation.
    let explain = is_explain(ctx);
    if let Some(flow) = unsafe { L4LB_CONNTRACK.get(key) }.copied()
        && flow.service_id == svc.id
        && !reopens(tcp, flow.flags)
        && let Some(weight) = unsafe {
            L4LB_MEMBERS.get(MemberKey {
                service_id: svc.id,
                backend_id: flow.backend_id,
            })
        }
        .map(|m| m.weight)
        && let Some(backend) = unsafe { L4LB_BACKENDS.get(flow.backend_id) }.copied()
    {
        if !explain && monitor::watching() {
            let reason = if weight == 0 {
                REASON_TRACKED_WEIGHT0
            } else {
                REASON_TRACKED
            };
            report(reason, key, svc.id, flow.backend_id);
        }
        return Some((flow.backend_id, backend, Some(flow.flags)));
    }
    // New flow (or its backend left): Maglev, skipping backends down for this node.
    match choose_up(svc, flow_hash(key)) {
        Verdict::NoBackend { service_id } => {
            if !explain {
                count_service(service_id, |s| s.no_backend += 1);
                if monitor::watching() {
                    report(REASON_NO_BACKEND, key, service_id, 0);
                }
            }
            None
        }
        Verdict::Backend {
            service_id,
            backend_id,
            backend,
        } => {
            if !explain && may_open(tcp) {
                flow_close::open(key, service_id, backend_id, &backend);
                count_service(service_id, |s| s.flows += 1);
                count_backend(backend_id, |s| s.flows += 1);
                count_member(service_id, backend_id, MemberEvent::Flow);
                if monitor::watching() {
                    report(REASON_NEW, key, service_id, backend_id);
                }
            }
            Some((backend_id, backend, None))
        }
    }
}

/// A tracked TCP flow's FIN or RST (or its last ACK): marks or removes its
/// entries (`l4lb_common::tcp_close`). Nothing to read or write for any other
/// packet: `close_step` answers from the flags already in hand.
#[inline(always)]
fn follow_close(ctx: &XdpContext, key: &FlowKey, backend_id: u32, flags: Option<u32>, tcp: u8) {
    let Some(flags) = flags else { return };
    let step = close_step(tcp, flags, FLOW_FIN_CLIENT);
    if step != CloseStep::Keep && !is_explain(ctx) {
        flow_close::from_client(step, key, backend_id);
    }
}

/// A monitor event (XDP has no calling task: pid 0; Maglev: policy 0).
#[inline(always)]
fn report(reason: u8, key: &FlowKey, service_id: u32, backend_id: u32) {
    let what = monitor::what(HOOK_XDP, reason, 0);
    monitor::emit(what, key, service_id, backend_id, 0);
}

#[inline(always)]
fn count(ctx: &XdpContext, svc: &ServiceValue, backend_id: u32) {
    if is_explain(ctx) {
        return;
    }
    let len = (ctx.data_end() - ctx.data()) as u64;
    count_service(svc.id, |s| {
        s.packets += 1;
        s.bytes += len;
    });
    count_backend(backend_id, |s| {
        s.packets += 1;
        s.bytes += len;
    });
}

/// The 5-tuple's Maglev hash. Every node runs the same program, so the same
/// flow maps to the same slot everywhere.
#[inline(always)]
fn flow_hash(k: &FlowKey) -> u32 {
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15 ^ u64::from(k.proto);
    h = mix(h ^ u64::from(k.src[0]) ^ (u64::from(k.src[1]) << 32));
    h = mix(h ^ u64::from(k.src[2]) ^ (u64::from(k.src[3]) << 32));
    h = mix(h ^ u64::from(k.sport) ^ (u64::from(k.dport) << 16) ^ (u64::from(k.dst[3]) << 32));
    (h >> 32) as u32
}

#[inline(always)]
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

// ---- forwarding from XDP (`--xdp-forward fib`) ----
//
// After the rewrite, with XDP_F_FIB set, ask the kernel's FIB where the
// backend is: on success set the MACs, decrement TTL / hop limit and
// redirect (XDP_TX on the ingress interface), skipping the node's stack.
// Anything else (no neighbour yet, TTL 1, MTU, forwarding off, explain mode)
// returns XDP_PASS, and the kernel forwards the packet as without the flag.

#[inline(always)]
fn fib_enabled(ctx: &XdpContext) -> bool {
    matches!(L4LB_XDP_CONFIG.get(0), Some(f) if f & XDP_F_FIB != 0) && !is_explain(ctx)
}

#[inline(always)]
fn fib_params(ctx: &XdpContext, family: u8) -> FibParams {
    // SAFETY: a plain C struct of integers and unions of integers.
    let mut p: FibParams = unsafe { core::mem::zeroed() };
    p.family = family;
    p.ifindex = ctx.ingress_ifindex() as u32;
    p
}

/// Sets the MACs and sends the frame out of `p.ifindex`.
#[inline(always)]
fn redirect(ctx: &XdpContext, p: &FibParams) -> u32 {
    let Ok(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: bounds-checked.
    unsafe {
        (*eth).dst_addr = p.dmac;
        (*eth).src_addr = p.smac;
    }
    if p.ifindex == ctx.ingress_ifindex() as u32 {
        return xdp_action::XDP_TX;
    }
    // SAFETY: helper without memory arguments; returns XDP_REDIRECT or XDP_ABORTED.
    unsafe { bpf_redirect(p.ifindex, 0) as u32 }
}

#[inline(always)]
fn forward4(ctx: &XdpContext, ip: *mut Ipv4Hdr) -> u32 {
    if !fib_enabled(ctx) {
        return xdp_action::XDP_PASS;
    }
    let mut p = fib_params(ctx, AF_INET);
    // SAFETY: `ip` was bounds-checked by the caller.
    let ttl = unsafe {
        p.l4_protocol = (*ip).proto;
        p.__bindgen_anon_1.tot_len = u16::from_be_bytes((*ip).tot_len);
        p.__bindgen_anon_2.tos = (*ip).tos;
        p.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes((*ip).src_addr);
        p.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes((*ip).dst_addr);
        (*ip).ttl
    };
    if ttl <= 1 {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: `p` is a valid, fully initialized bpf_fib_lookup on our stack.
    let rc = unsafe { bpf_fib_lookup(ctx.as_ptr(), &mut p, size_of::<FibParams>() as i32, 0) };
    if rc != i64::from(BPF_FIB_LKUP_RET_SUCCESS) {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: bounds-checked by the caller. TTL and protocol share a 16-bit word.
    unsafe {
        let old = u16::from_ne_bytes([ttl, (*ip).proto]);
        let new = u16::from_ne_bytes([ttl - 1, (*ip).proto]);
        (*ip).ttl = ttl - 1;
        let c = u16::from_ne_bytes((*ip).check);
        (*ip).check = csum_update(c, &[], &[], &[old], &[new]).to_ne_bytes();
    }
    redirect(ctx, &p)
}

#[inline(always)]
fn forward6(ctx: &XdpContext, ip: *mut Ipv6Hdr) -> u32 {
    if !fib_enabled(ctx) {
        return xdp_action::XDP_PASS;
    }
    let mut p = fib_params(ctx, AF_INET6);
    // SAFETY: `ip` was bounds-checked by the caller.
    let hops = unsafe {
        p.l4_protocol = (*ip).next_hdr;
        p.__bindgen_anon_1.tot_len =
            u16::from_be_bytes((*ip).payload_len).wrapping_add(Ipv6Hdr::LEN as u16);
        p.__bindgen_anon_3.ipv6_src = words(&(*ip).src_addr);
        p.__bindgen_anon_4.ipv6_dst = words(&(*ip).dst_addr);
        (*ip).hop_limit
    };
    if hops <= 1 {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: as in forward4.
    let rc = unsafe { bpf_fib_lookup(ctx.as_ptr(), &mut p, size_of::<FibParams>() as i32, 0) };
    if rc != i64::from(BPF_FIB_LKUP_RET_SUCCESS) {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: bounds-checked by the caller; IPv6 has no header checksum.
    unsafe { (*ip).hop_limit = hops - 1 };
    redirect(ctx, &p)
}
