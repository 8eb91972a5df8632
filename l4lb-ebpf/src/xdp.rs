//! XDP ingress: packet-level load balancing for traffic entering the node.
//!
//! For a TCP or UDP packet to a VIP:port (IPv4 without options and not a
//! fragment, or IPv6 whose next header is TCP/UDP) the program
//!
//! 1. leaves at once if the destination's slot in the VIP pre-filter
//!    (`L4LB_VIP_FILTER`, an array) is 0; else looks the client's 5-tuple up
//!    in the connection table (`ct.rs`: `L4LB_CONNTRACK4` for IPv4 under a
//!    16-byte key, `L4LB_CONNTRACK` for IPv6): an entry whose generation
//!    `L4LB_SVC_GEN` still holds for its service goes to the backend address
//!    it recorded (no other lookup); otherwise, after the service lookup, a
//!    tracked flow keeps its backend while that backend is still a member of
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
//! The parsing and steps 1, 2 and 4 are `balance.rs`, shared with the tc
//! ingress program (`tc_in.rs`); this file reads and rewrites XDP frames.
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
use l4lb_common::{Backend, EXPLAIN_MAGIC, IPPROTO_TCP, IPPROTO_UDP, XDP_F_DSR_L2, XDP_F_FIB};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
    udp::UdpHdr,
};

use crate::{
    balance::{self, Nat, Packet, Step},
    csum::{csum_apply, csum_update, delta32, udp_nonzero},
    icmp,
    maps::L4LB_XDP_CONFIG,
    net::{
        AF_INET, AF_INET6, IP4_CHECK_OFF, IP4_DST_OFF, IP4_LEN_OFF, IP6_LEN_OFF, L4_V4, L4_V6,
        bytes, l4_check_off, ptr_at, words,
    },
    wide,
};

// Forced inline into the wrapper the macro makes: left to itself, the
// compiler made this body a BPF subprogram, a call on every packet.
#[xdp]
#[inline(always)]
pub fn l4lb_xdp(ctx: XdpContext) -> u32 {
    match balance::decide(&ctx) {
        Step::Done(action) => action,
        Step::Icmp { dst, v6 } => icmp::steer(&ctx, dst, v6),
    }
}

impl Packet for XdpContext {
    type Verdict = u32;

    #[inline(always)]
    fn read<T>(&self, off: usize) -> Result<T, ()> {
        let p: *const T = ptr_at(self, off)?;
        // SAFETY: bounds-checked by ptr_at; T has alignment 1 (bytes, headers).
        Ok(unsafe { wide::read(p) })
    }

    #[inline(always)]
    fn fits(&self, end: usize) -> bool {
        self.data() + end <= self.data_end()
    }

    #[inline(always)]
    fn explain(&self) -> bool {
        is_explain(self)
    }

    #[inline(always)]
    fn len(&self) -> u64 {
        (self.data_end() - self.data()) as u64
    }

    #[inline(always)]
    fn verdict(&self, drop: bool) -> u32 {
        if drop {
            xdp_action::XDP_DROP
        } else {
            xdp_action::XDP_PASS
        }
    }

    #[inline(always)]
    fn nat(&self, nat: &Nat<'_>) -> u32 {
        // The mode flags, read once per packet.
        let flags = xdp_flags(self);
        if flags & XDP_F_DSR_L2 != 0 && nat.backend.port == nat.key.dport() {
            balance::finish(self, nat);
            return to_backend_l2(self, nat.backend);
        }
        let fib = flags & XDP_F_FIB != 0;
        let done = if nat.backend.family == 4 {
            nat4(self, nat, fib)
        } else {
            nat6(self, nat, fib)
        };
        done.unwrap_or(xdp_action::XDP_PASS)
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
    u32::from_ne_bytes(unsafe { wide::read(meta as *const [u8; 4]) }) == EXPLAIN_MAGIC
}

#[inline(always)]
fn nat4(ctx: &XdpContext, nat: &Nat<'_>, fib: bool) -> Result<u32, ()> {
    let proto = nat.key.proto();
    let (dst, dport) = (nat.key.dst4(), nat.key.dport());
    let (new_ip, port) = (nat.backend.addr[3], nat.backend.port);
    // One bounds check up to the ports, every field at a constant offset
    // from the frame's start; the L4 checksum's offset depends on the
    // protocol, so it is checked on its own.
    let frame: *mut [u8; L4_V4 + 4] = ptr_at(ctx, 0)?;
    let check: *mut [u8; 2] = ptr_at(ctx, l4_check_off(L4_V4, proto))?;
    let frame = frame.cast::<u8>();
    // SAFETY: bounds-checked (frame, check); whole-word accesses.
    unsafe {
        // The address's difference, once for both checksums.
        let d = delta32(&[dst], &[new_ip]);
        // IPv4 header checksum: only the destination address changed.
        let ipc = wide::load16_at::<{ IP4_CHECK_OFF as i16 }>(frame);
        wide::write16_at::<{ IP4_CHECK_OFF as i16 }>(frame, csum_apply(ipc, d));
        wide::write32_at::<{ IP4_DST_OFF as i16 }>(frame, new_ip);
        let old = wide::load16_at::<0>(check.cast());
        // UDP over IPv4 with checksum 0 means "no checksum": keep it 0.
        if !(proto == IPPROTO_UDP && old == 0) {
            let c = csum_apply(old, d + u64::from(!dport) + u64::from(port));
            wide::write16_at::<0>(check.cast(), udp_nonzero(proto, c));
        }
        // TCP and UDP both keep the destination port at byte 2.
        wide::write16_at::<{ (L4_V4 + 2) as i16 }>(frame, port);
    }
    balance::finish(ctx, nat);
    Ok(if fib {
        fib4(ctx, frame.wrapping_add(EthHdr::LEN).cast())
    } else {
        xdp_action::XDP_PASS
    })
}

#[inline(always)]
fn nat6(ctx: &XdpContext, nat: &Nat<'_>, fib: bool) -> Result<u32, ()> {
    let (proto, dst) = (nat.key.proto(), nat.key.dst());
    let ip: *mut Ipv6Hdr = ptr_at(ctx, EthHdr::LEN)?;
    let check: *mut [u8; 2] = ptr_at(ctx, l4_check_off(L4_V6, proto))?;
    // SAFETY: bounds-checked.
    unsafe {
        // No IPv6 header checksum; TCP/UDP cover the address in the pseudo-header.
        let old = u16::from_ne_bytes(*check);
        let c = csum_update(
            old,
            &dst,
            &nat.backend.addr,
            &[nat.key.dport()],
            &[nat.backend.port],
        );
        *check = udp_nonzero(proto, c).to_ne_bytes();
        (*ip).dst_addr = bytes(&nat.backend.addr);
        set_dport(ctx, L4_V6, proto, nat.backend.port)?;
    }
    balance::finish(ctx, nat);
    Ok(if fib {
        fib6(ctx, ip)
    } else {
        xdp_action::XDP_PASS
    })
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

// ---- forwarding from XDP (`--xdp-forward fib`) ----
//
// After the rewrite, with XDP_F_FIB set, ask the kernel's FIB where the
// backend is: on success set the MACs, decrement TTL / hop limit and
// redirect (XDP_TX on the ingress interface), skipping the node's stack.
// Anything else (no neighbour yet, TTL 1, MTU, forwarding off, explain mode)
// returns XDP_PASS, and the kernel forwards the packet as without the flag.

// ---- L2 direct server return (`--xdp-dsr l2`) ----
//
// With XDP_F_DSR_L2 set, a packet whose backend listens on the VIP's own
// port keeps its IP header as it is (the VIP stays the destination: the
// backend holds it on a loopback and does not answer ARP/ND for it) and only
// its MACs change, to the backend's neighbour entry, found by
// `bpf_fib_lookup` on the backend's address. The backend answers the client
// directly: no reply crosses the node. A backend reached through a gateway,
// or whose neighbour is not resolved yet (the agent resolves them), gets
// nothing: the packet passes untouched, and the node's `l4lb0` route drops
// and counts it (`l4lb_escaped_vip_packets_total`); rewriting it to the
// backend instead would split the flow between two destinations. A backend
// on another port is translated as without the flag. Encapsulation (IPIP,
// GUE) would be another XDP_F_DSR_* flag and its own `to_backend_*`.

/// The `XDP_F_*` mode flags; none while explaining (the packet is only
/// rewritten, never forwarded). DSR applies to a packet whose backend
/// listens on the VIP's port.
#[inline(always)]
fn xdp_flags(ctx: &XdpContext) -> u32 {
    match L4LB_XDP_CONFIG.get(0) {
        Some(f) if *f != 0 && !is_explain(ctx) => *f,
        _ => 0,
    }
}

/// Sends the unchanged packet to `backend`'s MAC. Out of line: the lookup's
/// parameters stay off the balancing's stack frame.
#[inline(never)]
fn to_backend_l2(ctx: &XdpContext, backend: &Backend) -> u32 {
    let v4 = backend.family == 4;
    let mut p = fib_params(ctx, if v4 { AF_INET } else { AF_INET6 });
    let Ok(len) = ctx.read::<[u8; 2]>(if v4 { IP4_LEN_OFF } else { IP6_LEN_OFF }) else {
        return xdp_action::XDP_PASS;
    };
    let len = u16::from_be_bytes(len);
    // Writing a union's integer field is safe; reading it back below is not.
    if v4 {
        p.__bindgen_anon_1.tot_len = len;
        p.__bindgen_anon_4.ipv4_dst = backend.addr[3];
    } else {
        p.__bindgen_anon_1.tot_len = len.wrapping_add(Ipv6Hdr::LEN as u16);
        p.__bindgen_anon_4.ipv6_dst = backend.addr;
    }
    // SAFETY: `p` is a valid, fully initialized bpf_fib_lookup on our stack.
    let rc = unsafe { bpf_fib_lookup(ctx.as_ptr(), &mut p, size_of::<FibParams>() as i32, 0) };
    // On success the kernel leaves the next hop in the destination: a
    // gateway there means the backend is not on this L2 segment.
    // SAFETY: reading the integers the helper wrote.
    let on_link = unsafe {
        if v4 {
            p.__bindgen_anon_4.ipv4_dst == backend.addr[3]
        } else {
            p.__bindgen_anon_4.ipv6_dst == backend.addr
        }
    };
    if rc != i64::from(BPF_FIB_LKUP_RET_SUCCESS) || !on_link {
        return xdp_action::XDP_PASS;
    }
    redirect(ctx, &p)
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

/// Out of line: the lookup's parameters stay off the balancing's stack frame.
#[inline(never)]
fn fib4(ctx: &XdpContext, ip: *mut Ipv4Hdr) -> u32 {
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

/// Out of line: the lookup's parameters stay off the balancing's stack frame.
#[inline(never)]
fn fib6(ctx: &XdpContext, ip: *mut Ipv6Hdr) -> u32 {
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
