//! The balancing of packets entering the node, shared by the two ingress
//! programs: `xdp.rs` (frames, XDP) and `tc_in.rs` (skbs, tc ingress, for
//! interfaces whose packets may still carry a partial checksum). Parsing,
//! the service lookup, the connection table, the Maglev pick, the close
//! tracking and the counters live here once; the programs differ only in how
//! they read the packet ([`Packet`]) and how they rewrite it (XDP computes
//! the checksums itself, tc asks the kernel's helpers).
use l4lb_common::{
    Addr6, Backend, CloseStep, FLOW_FIN_CLIENT, FlowKey, FlowValue, GUARD_EXT_HEADER,
    GUARD_FRAGMENT, GUARD_IP_OPTIONS, GUARD_OTHER_PROTO, GUARD_TRUNCATED, HOOK_XDP, IPPROTO_TCP,
    IPPROTO_UDP, MemberKey, REASON_NEW, REASON_NO_BACKEND, REASON_TRACKED, REASON_TRACKED_WEIGHT0,
    ServiceValue, TCP_FLAGS_OFF, close_step, may_open, reopens, v4_mapped,
};
use network_types::{eth::EthHdr, ip::Ipv4Hdr};

use crate::{
    client::{Client, Key4},
    ct, flow_close,
    icmp::{IPPROTO_ICMP, IPPROTO_ICMPV6},
    lb::{
        MemberEvent, Verdict, choose_up, count_member, count_service, count_service_backend,
        lookup_service, maybe_vip,
    },
    maps::{self, L4LB_MEMBERS, L4LB_SVC_GEN, L4LB_VIP_ADDRS, L4LB_VIP_GUARD},
    monitor,
    net::{
        ETH_P_IP_BE, ETH_P_IPV6_BE, ETH_TYPE_OFF, IP6_DST_OFF, IP6_SRC_OFF, L4_V4, L4_V6,
        ipv4_is_fragment, ipv4_plain_header, words,
    },
};

/// What differs between the programs that balance: reading the packet, and
/// acting on the decision.
pub trait Packet {
    /// The program's return code.
    type Verdict;
    /// A copy of the `T` (alignment 1: bytes and header structs) at `off`.
    fn read<T>(&self, off: usize) -> Result<T, ()>;
    /// The packet holds at least `end` bytes.
    fn fits(&self, end: usize) -> bool;
    /// `l4lb-agent explain` is asking: decide, but write no map and no counter.
    fn explain(&self) -> bool;
    /// The packet's length from the Ethernet header on (counted per VIP).
    fn len(&self) -> u64;
    /// Untouched (`drop` false) or dropped.
    fn verdict(&self, drop: bool) -> Self::Verdict;
    /// Sends the packet to `nat.backend` (of the packet's family): rewrites
    /// its destination (XDP under `--xdp-dsr l2`: only its MACs), and calls
    /// [`finish`].
    fn nat(&self, nat: &Nat<'_>) -> Self::Verdict;
}

/// Where [`decide`] leaves a packet.
pub enum Step<V> {
    /// Decided (and rewritten, if it went to a backend).
    Done(V),
    /// An ICMP(v6) error to VIP address `dst`: the program steers it to the
    /// flow's backend if it can (`icmp.rs`), else guards it as other ICMP.
    /// Left to the caller so that its stack frame is not added to the
    /// balancing's (BPF's 512 bytes are shared by a call chain).
    Icmp { dst: Addr6, v6: bool },
}

/// A packet to send to a backend: its client-side 5-tuple, the pick, and
/// what the close tracking needs. The key and the backend by reference (the
/// backend of an established flow is read in its connection-table entry):
/// copies of them were stack moves on every packet.
pub struct Nat<'a> {
    pub key: Client<'a>,
    pub service_id: u32,
    pub backend_id: u32,
    pub backend: &'a Backend,
    /// The tracked flow's close bits; None for a new (or no) entry.
    pub flags: Option<u32>,
    /// TCP flags (0 for UDP).
    pub tcp: u8,
}

/// Parses the packet and decides. Only untagged Ethernet, IPv4 without
/// options and not a fragment, IPv6 whose next header is TCP/UDP.
#[inline(always)]
pub fn decide<P: Packet>(p: &P) -> Step<P::Verdict> {
    let Ok(ether_type) = p.read::<[u8; 2]>(ETH_TYPE_OFF) else {
        return Step::Done(p.verdict(false));
    };
    let ether_type = u16::from_ne_bytes(ether_type);
    if ether_type == ETH_P_IP_BE {
        decide4(p)
    } else if ether_type == ETH_P_IPV6_BE {
        decide6(p)
    } else {
        Step::Done(p.verdict(false))
    }
}

#[inline(always)]
fn decide4<P: Packet>(p: &P) -> Step<P::Verdict> {
    let Ok(ip) = p.read::<Ipv4Hdr>(EthHdr::LEN) else {
        return Step::Done(p.verdict(false));
    };
    let (src, dst) = (
        v4_mapped(u32::from_ne_bytes(ip.src_addr)),
        v4_mapped(u32::from_ne_bytes(ip.dst_addr)),
    );
    // Fragments (MF set or offset != 0), IP options (IHL != 5) and other
    // protocols: not balanced here; dropped if sent to a VIP address.
    if ipv4_is_fragment(ip.frags) {
        return Step::Done(p.verdict(guard(p, dst, GUARD_FRAGMENT)));
    }
    if !ipv4_plain_header(ip.vihl) {
        return Step::Done(p.verdict(guard(p, dst, GUARD_IP_OPTIONS)));
    }
    if ip.proto == IPPROTO_ICMP && is_vip_addr(p, dst) {
        return Step::Icmp { dst, v6: false };
    }
    Step::Done(nat(p, L4_V4, ip.proto, src, dst, 4))
}

#[inline(always)]
fn decide6<P: Packet>(p: &P) -> Step<P::Verdict> {
    // Field by field: a copy of the whole header would take stack. The
    // addresses first: their bounds check covers the next header's, and
    // a short packet leaves before any read (read together, the compiler
    // skipped a failed read's load, leaving a register the verifier
    // cannot prove unused).
    let (Ok(src), Ok(dst)) = (
        p.read::<[u8; 16]>(IP6_SRC_OFF),
        p.read::<[u8; 16]>(IP6_DST_OFF),
    ) else {
        return Step::Done(p.verdict(false));
    };
    let Ok(next) = p.read::<u8>(IP6_NEXT_OFF) else {
        return Step::Done(p.verdict(false));
    };
    let (src, dst) = (words(&src), words(&dst));
    // Extension headers (fragments included) and other protocols: not
    // balanced here; dropped if sent to a VIP address.
    if next == IPPROTO_ICMPV6 && is_vip_addr(p, dst) {
        return Step::Icmp { dst, v6: true };
    }
    if next != IPPROTO_TCP && next != IPPROTO_UDP {
        return Step::Done(p.verdict(guard(p, dst, ipv6_reason(next))));
    }
    Step::Done(nat(p, L4_V6, next, src, dst, 6))
}

/// TCP or UDP at `l4` from `src` to `dst`: the service's backend, if a VIP.
#[inline(always)]
fn nat<P: Packet>(p: &P, l4: usize, proto: u8, src: Addr6, dst: Addr6, family: u8) -> P::Verdict {
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        return p.verdict(guard(p, dst, GUARD_OTHER_PROTO));
    }
    let Ok((sport, dport, tcp)) = l4_ports(p, l4, proto) else {
        return p.verdict(guard(p, dst, GUARD_TRUNCATED));
    };
    // The filter first, on the address in registers: the key is built after
    // it, so no helper call stands between its stores and the lookup's loads.
    if !maybe_vip(&dst) {
        return p.verdict(false);
    }
    if family == 4 {
        // The 16-byte key from registers; the full one only off the
        // established path.
        let k4 = Key4::new(src[3], dst[3], sport, dport, proto);
        return balance(p, Client::V4(k4.get()), ct::get4(&k4), tcp);
    }
    let key = FlowKey::new(src, dst, sport, dport, proto);
    balance(p, Client::V6(&key), ct::get(&key), tcp)
}

/// A packet to a VIP address whose connection-table entry (if any) is
/// `flow`. The established path: an entry current for its service (one
/// array read), no SYN reopening a closed flow, no monitor listening.
#[inline(always)]
fn balance<P: Packet>(p: &P, client: Client<'_>, flow: Option<&FlowValue>, tcp: u8) -> P::Verdict {
    if let Some(f) = flow
        && current(f)
        && !reopens(tcp, f.flags)
        && (!monitor::watching() || p.explain())
    {
        let b = (f.service_id, f.backend_id, &f.backend);
        return to_backend(p, client, b, Some(f.flags), tcp);
    }
    match client {
        Client::V4(k4) => pick(p, client, &k4.key(), flow, tcp),
        Client::V6(key) => pick(p, client, key, flow, tcp),
    }
}

/// Off the established path: the service lookup, then the tracked backend
/// or a new pick (`select`), under the full key `key`.
#[inline(always)]
fn pick<P: Packet>(
    p: &P,
    client: Client<'_>,
    key: &FlowKey,
    flow: Option<&FlowValue>,
    tcp: u8,
) -> P::Verdict {
    let Some(svc) = lookup_service(key.dst, key.dport, key.proto) else {
        return p.verdict(false);
    };
    let Some((backend_id, backend, flags)) = select(p.explain(), key, flow, &svc, tcp) else {
        return p.verdict(true);
    };
    to_backend(p, client, (svc.id, backend_id, &backend), flags, tcp)
}

#[inline(always)]
fn to_backend<P: Packet>(
    p: &P,
    key: Client<'_>,
    (service_id, backend_id, backend): (u32, u32, &Backend),
    flags: Option<u32>,
    tcp: u8,
) -> P::Verdict {
    let family = if matches!(key, Client::V4(_)) { 4 } else { 6 };
    if backend.family != family {
        // The agent never pairs a VIP with a backend of the other family;
        // drop rather than misroute.
        return p.verdict(true);
    }
    p.nat(&Nat {
        key,
        service_id,
        backend_id,
        backend,
        flags,
        tcp,
    })
}

/// The generation `L4LB_SVC_GEN` holds for `svc`'s id (0: none).
#[inline(always)]
fn svc_generation(svc: &ServiceValue) -> u32 {
    L4LB_SVC_GEN.get(svc.id).map_or(0, |g| g.generation)
}

/// The flow's generation is still its service's: same backend set, and the
/// service neither removed nor re-created since (generations never repeat
/// for an id), so the backend recorded is a member at the address recorded.
#[inline(always)]
fn current(f: &FlowValue) -> bool {
    f.generation != 0
        && matches!(L4LB_SVC_GEN.get(f.service_id), Some(g) if g.generation == f.generation)
}

/// Source and destination ports (network order) and the TCP flags (0 for
/// UDP); Err when the header is cut short (TCP: 20 bytes, UDP: 8).
#[inline(always)]
fn l4_ports<P: Packet>(p: &P, l4: usize, proto: u8) -> Result<(u16, u16, u8), ()> {
    let tcp = proto == IPPROTO_TCP;
    if !p.fits(l4 + if tcp { TCP_HDR_LEN } else { UDP_HDR_LEN }) {
        return Err(());
    }
    let ports = p.read::<[u8; 4]>(l4)?;
    let flags = if tcp {
        p.read::<u8>(l4 + TCP_FLAGS_OFF)?
    } else {
        0
    };
    Ok((
        u16::from_ne_bytes([ports[0], ports[1]]),
        u16::from_ne_bytes([ports[2], ports[3]]),
        flags,
    ))
}

/// The TCP header without options, the UDP header.
const TCP_HDR_LEN: usize = 20;
const UDP_HDR_LEN: usize = 8;
/// The IPv6 next header of an untagged frame.
const IP6_NEXT_OFF: usize = EthHdr::LEN + 6;

/// A packet the program does not balance: true (drop, counted under
/// `reason`) if `dst` is a VIP address (the kernel would route it on with
/// the VIP in it), false (pass untouched) otherwise.
#[inline(always)]
pub fn guard<P: Packet>(p: &P, dst: Addr6, reason: u32) -> bool {
    // SAFETY: only the presence of the key is used.
    if unsafe { L4LB_VIP_ADDRS.get(&dst) }.is_none() {
        return false;
    }
    if !p.explain()
        && let Some(n) = L4LB_VIP_GUARD.get_ptr_mut(reason)
    {
        // SAFETY: per-CPU array element, only this CPU writes it while we run.
        unsafe { *n += 1 };
    }
    true
}

/// An ICMP error to a VIP address is steered to its flow's backend
/// (`icmp.rs`); explaining never translates.
#[inline(always)]
fn is_vip_addr<P: Packet>(p: &P, dst: Addr6) -> bool {
    // SAFETY: only the presence of the key is used.
    !p.explain() && unsafe { L4LB_VIP_ADDRS.get(&dst) }.is_some()
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

/// The flow's backend and its TCP close bits (None: a new entry, or none),
/// when the established path did not answer: the tracked one while it is
/// still a member of the service, else a fresh Maglev pick (recorded unless
/// explaining, or unless `tcp` is a FIN/RST that must not bring a closed flow
/// back). None = the VIP has no backend for new flows (counted, dropped).
#[inline(always)]
fn select(
    explain: bool,
    key: &FlowKey,
    flow: Option<&FlowValue>,
    svc: &ServiceValue,
    tcp: u8,
) -> Option<(u32, Backend, Option<u32>)> {
    if let Some(flow) = flow
        && flow.service_id == svc.id
        && !reopens(tcp, flow.flags)
        && let Some(weight) = unsafe {
            L4LB_MEMBERS.get(MemberKey {
                service_id: svc.id,
                backend_id: flow.backend_id,
            })
        }
        .map(|m| m.weight)
        && let Some(backend) = maps::backend(flow.backend_id).copied()
    {
        if !explain && flow.generation != svc_generation(svc) {
            flow_close::refresh(key, svc, &backend);
        }
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
                flow_close::open(key, svc, backend_id, backend);
                count_service_backend(service_id, backend_id, |s| s.flows += 1);
                count_member(service_id, backend_id, MemberEvent::Flow);
                if monitor::watching() {
                    report(REASON_NEW, key, service_id, backend_id);
                }
            }
            Some((backend_id, *backend, None))
        }
    }
}

/// After the rewrite: the counters, and a tracked TCP flow's FIN or RST (or
/// its last ACK) marks or removes its entries (`l4lb_common::tcp_close`).
/// Nothing to read or write for any other packet: `close_step` answers from
/// the flags already in hand.
#[inline(always)]
pub fn finish<P: Packet>(p: &P, nat: &Nat<'_>) {
    if p.explain() {
        return;
    }
    let len = p.len();
    count_service_backend(nat.service_id, nat.backend_id, |s| {
        s.packets += 1;
        s.bytes += len;
    });
    let Some(flags) = nat.flags else { return };
    let step = close_step(nat.tcp, flags, FLOW_FIN_CLIENT);
    if step != CloseStep::Keep {
        flow_close::from_client(flow_close::encode(step), nat.key, nat.backend_id);
    }
}

/// A monitor event (no calling task: pid 0; Maglev: policy 0). Both
/// ingress programs report as the packet path (`HOOK_XDP`).
#[inline(always)]
fn report(reason: u8, key: &FlowKey, service_id: u32, backend_id: u32) {
    let what = monitor::what(HOOK_XDP, reason, 0);
    monitor::emit(what, key, service_id, backend_id, 0);
}

/// The 5-tuple's Maglev hash. Every node runs the same program, so the same
/// flow maps to the same slot everywhere (and XDP and tc pick alike).
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
