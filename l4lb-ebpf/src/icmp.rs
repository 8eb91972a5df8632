//! ICMP errors about VIP flows (destination unreachable incl. fragmentation
//! needed; IPv6 destination unreachable and packet too big), in both
//! directions, so path-MTU discovery works through a VIP:
//!
//! - **to the client** (tc egress, `tc.rs`): an error about a client → backend
//!   packet (from a router on the backend side, or the node itself) embeds
//!   client → backend:port, which the client's socket does not know. Its
//!   embedded destination becomes VIP:port again (found in `L4LB_XDP_REVNAT`
//!   by the embedded tuple reversed), with the embedded IPv4 header checksum
//!   and the ICMP checksum updated.
//! - **to the backend** (XDP, `xdp.rs`, and tc ingress, `tc_in.rs`, on the
//!   skb's linear head): an error about a reply arrives
//!   addressed to the VIP and embeds VIP → client. The flow's backend (found
//!   in the connection table, `ct.rs`, by the embedded tuple reversed) becomes the outer
//!   destination and the embedded source, and the kernel routes it there.
//!
//! The embedded L4 checksum is left alone (receivers do not check it: the
//! embedded packet is usually cut short). Both directions are counted
//! (`L4LB_ICMP_STATS`) and limited to `ICMP_PER_CPU_PER_SEC` translations per
//! CPU per second; beyond that an error to the client passes as it is and one
//! to a VIP is dropped.
use aya_ebpf::{helpers::bpf_ktime_get_ns, programs::TcContext};
use l4lb_common::{
    Addr6, FlowKey, GUARD_OTHER_PROTO, ICMP_NO_FLOW, ICMP_PER_CPU_PER_SEC, ICMP_RATE_LIMITED,
    ICMP_TO_BACKEND, ICMP_TO_CLIENT, IPPROTO_TCP, IPPROTO_UDP, v4_mapped,
};

use crate::{
    balance::{self, Packet},
    csum::csum_update,
    ct,
    maps::{self, L4LB_ICMP_RATE, L4LB_ICMP_STATS, L4LB_XDP_REVNAT},
    net::{Direct, IP4_CHECK_OFF, IP4_DST_OFF, IP6_DST_OFF, L4_V4, L4_V6, bytes, ptr_at, words},
};

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_ICMPV6: u8 = 58;

/// Offsets in an untagged frame: ICMP where L4 starts after a 20-byte IPv4
/// header, the embedded IPv4 header after the 8-byte ICMP header, its L4
/// ports after it.
const ICMP4: usize = L4_V4;
const ICMP4_CHECK: usize = ICMP4 + 2;
const IN4: usize = ICMP4 + 8;
const IN4_PROTO: usize = IN4 + 9;
const IN4_CHECK: usize = IN4 + 10;
const IN4_SRC: usize = IN4 + 12;
const IN4_DST: usize = IN4 + 16;
const IN4_L4: usize = IN4 + 20;
/// The same after a 40-byte IPv6 header.
const ICMP6: usize = L4_V6;
const ICMP6_CHECK: usize = ICMP6 + 2;
const IN6: usize = ICMP6 + 8;
const IN6_NEXT: usize = IN6 + 6;
const IN6_SRC: usize = IN6 + 8;
const IN6_DST: usize = IN6 + 24;
const IN6_L4: usize = IN6 + 40;
/// The end of the embedded ports: what the steering reads and writes.
pub const IN4_END: usize = IN4_L4 + 4;
pub const IN6_END: usize = IN6_L4 + 4;

/// ICMP types translated: IPv4 destination unreachable (fragmentation needed
/// is its code 4); IPv6 destination unreachable and packet too big.
#[inline(always)]
fn is_error4(kind: u8) -> bool {
    kind == 3
}

#[inline(always)]
fn is_error6(kind: u8) -> bool {
    kind == 1 || kind == 2
}

#[inline(always)]
fn count(what: u32) {
    if let Some(n) = L4LB_ICMP_STATS.get_ptr_mut(what) {
        // SAFETY: per-CPU array element, only this CPU writes it while we run.
        unsafe { *n += 1 };
    }
}

/// One more translation this second on this CPU, if under the limit
/// (counted as rate-limited otherwise).
#[inline(always)]
fn allow() -> bool {
    let Some(w) = L4LB_ICMP_RATE.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: per-CPU array element ([window start, count]), this CPU only.
    let ok = unsafe {
        if now.wrapping_sub((*w)[0]) >= 1_000_000_000 {
            (*w)[0] = now;
            (*w)[1] = 0;
        }
        (*w)[1] += 1;
        (*w)[1] <= ICMP_PER_CPU_PER_SEC
    };
    if !ok {
        count(ICMP_RATE_LIMITED);
    }
    ok
}

/// The embedded tuple reversed: the embedded packet went `a` → `b`, the
/// key describes `b` → `a`.
#[inline(always)]
fn reversed(a: Addr6, b: Addr6, ports: [u16; 2], proto: u8) -> FlowKey {
    FlowKey {
        src: b,
        dst: a,
        sport: ports[1],
        dport: ports[0],
        proto,
        _pad: [0; 3],
    }
}

/// Two ports (network order, read as native u16) from 4 packet bytes.
#[inline(always)]
fn port_pair(b: [u8; 4]) -> [u16; 2] {
    [
        u16::from_ne_bytes([b[0], b[1]]),
        u16::from_ne_bytes([b[2], b[3]]),
    ]
}

/// # Safety
/// `ports` points to 4 bounds-checked packet bytes.
#[inline(always)]
unsafe fn set_first_port(ports: *mut [u8; 4], port: u16) {
    let p = port.to_ne_bytes();
    // SAFETY: the caller's.
    unsafe {
        (*ports)[0] = p[0];
        (*ports)[1] = p[1];
    }
}

/// # Safety
/// `check` points to a bounds-checked checksum in the packet.
#[inline(always)]
unsafe fn update(check: *mut [u8; 2], old32: &[u32], new32: &[u32], old16: &[u16], new16: &[u16]) {
    // SAFETY: the caller's.
    unsafe {
        let c = u16::from_ne_bytes(*check);
        *check = csum_update(c, old32, new32, old16, new16).to_ne_bytes();
    }
}

// ---- to the client: tc egress ----

/// An IPv4 ICMP error leaving the node: rewritten if it is about a VIP flow.
#[inline(always)]
pub fn to_client4(ctx: &TcContext) -> Result<(), i64> {
    let kind: u8 = ctx.load(ICMP4)?;
    let vihl: u8 = ctx.load(IN4)?;
    let proto: u8 = ctx.load(IN4_PROTO)?;
    if !is_error4(kind) || vihl != 0x45 || (proto != IPPROTO_TCP && proto != IPPROTO_UDP) {
        return Ok(());
    }
    let (src, dst): (u32, u32) = (ctx.load(IN4_SRC)?, ctx.load(IN4_DST)?);
    let ports: [u16; 2] = ctx.load(IN4_L4)?;
    let key = reversed(v4_mapped(src), v4_mapped(dst), ports, proto);
    // SAFETY: copied out at once.
    let Some(vip) = (unsafe { L4LB_XDP_REVNAT.get(&key) }).copied() else {
        return Ok(());
    };
    if !allow() {
        return Ok(());
    }
    let new_dst = vip.addr[3];
    // The embedded header's sum is unchanged once its checksum follows the
    // address, so the ICMP checksum only sees the port change.
    ctx.skb
        .l3_csum_replace(IN4_CHECK, dst as u64, new_dst as u64, 4)?;
    ctx.skb
        .l4_csum_replace(ICMP4_CHECK, ports[1] as u64, vip.port as u64, 2)?;
    ctx.skb.store(IN4_DST, &new_dst, 0)?;
    ctx.skb.store(IN4_L4 + 2, &vip.port, 0)?;
    count(ICMP_TO_CLIENT);
    Ok(())
}

/// An ICMPv6 error leaving the node: rewritten if it is about a VIP flow.
#[inline(always)]
pub fn to_client6(ctx: &TcContext) -> Result<(), i64> {
    let kind: u8 = ctx.load(ICMP6)?;
    let proto: u8 = ctx.load(IN6_NEXT)?;
    if !is_error6(kind) || (proto != IPPROTO_TCP && proto != IPPROTO_UDP) {
        return Ok(());
    }
    let src: [u8; 16] = ctx.load(IN6_SRC)?;
    let dst: [u8; 16] = ctx.load(IN6_DST)?;
    let ports: [u16; 2] = ctx.load(IN6_L4)?;
    let old = words(&dst);
    let key = reversed(words(&src), old, ports, proto);
    // SAFETY: copied out at once.
    let Some(vip) = (unsafe { L4LB_XDP_REVNAT.get(&key) }).copied() else {
        return Ok(());
    };
    if !allow() {
        return Ok(());
    }
    // No embedded header checksum; the ICMPv6 checksum covers the message.
    for i in 0..4 {
        ctx.skb
            .l4_csum_replace(ICMP6_CHECK, old[i] as u64, vip.addr[i] as u64, 4)?;
    }
    ctx.skb
        .l4_csum_replace(ICMP6_CHECK, ports[1] as u64, vip.port as u64, 2)?;
    ctx.skb.store(IN6_DST, &bytes(&vip.addr), 0)?;
    ctx.skb.store(IN6_L4 + 2, &vip.port, 0)?;
    count(ICMP_TO_CLIENT);
    Ok(())
}

// ---- to the backend: XDP ingress ----

/// An ICMP(v6) error to VIP address `dst`, as the ingress programs meet it
/// (`balance::Step::Icmp`): to the flow's backend, else guarded like other
/// ICMP. The packet's headers must be readable in place (tc pulls its head
/// first). The steering's larger parts are out of line: BPF's 512 bytes of
/// stack are counted along a call chain, and the balancing, inline in the
/// caller (a call on every packet would cost ~9 ns), fills most of its frame.
#[inline(always)]
pub fn steer<P: Packet + Direct>(ctx: &P, dst: Addr6, v6: bool) -> P::Verdict {
    let steered = if v6 {
        to_backend6(ctx)
    } else {
        to_backend4(ctx)
    };
    let drop = steered.unwrap_or_else(|()| balance::guard(ctx, dst, GUARD_OTHER_PROTO));
    ctx.verdict(drop)
}

/// The backend (address, port) of the flow `key` (client → VIP), if tracked.
#[inline(always)]
fn backend_of(key: &FlowKey) -> Option<(Addr6, u16)> {
    let flow = ct::get(key)?;
    let b = maps::backend(flow.backend_id)?;
    Some((b.addr, b.port))
}

/// An IPv4 ICMP error to a VIP address (the caller checked): sent on to the
/// flow's backend (Ok(false): pass it, rewritten), or to be dropped
/// (Ok(true): no such flow, over the limit). Err: not an error about
/// TCP/UDP, or cut short: the caller guards it like other ICMP. Out of
/// line: its frame stays off the balancing program's.
#[inline(never)]
pub fn to_backend4<C: Direct>(ctx: &C) -> Result<bool, ()> {
    let kind: *mut u8 = ptr_at(ctx, ICMP4)?;
    let vihl: *mut u8 = ptr_at(ctx, IN4)?;
    let proto: *mut u8 = ptr_at(ctx, IN4_PROTO)?;
    let in_src: *mut [u8; 4] = ptr_at(ctx, IN4_SRC)?;
    let in_dst: *mut [u8; 4] = ptr_at(ctx, IN4_DST)?;
    let ports: *mut [u8; 4] = ptr_at(ctx, IN4_L4)?;
    // SAFETY: every pointer was bounds-checked by ptr_at.
    let (kind, vihl, proto, vip, client, p) = unsafe {
        (
            *kind,
            *vihl,
            *proto,
            u32::from_ne_bytes(*in_src),
            u32::from_ne_bytes(*in_dst),
            port_pair(*ports),
        )
    };
    if !is_error4(kind) || vihl != 0x45 || (proto != IPPROTO_TCP && proto != IPPROTO_UDP) {
        return Err(());
    }
    let key = reversed(v4_mapped(vip), v4_mapped(client), p, proto);
    let Some((addr, port)) = backend_of(&key) else {
        count(ICMP_NO_FLOW);
        return Ok(true);
    };
    if !allow() {
        return Ok(true);
    }
    let be = addr[3];
    let outer_dst: *mut [u8; 4] = ptr_at(ctx, IP4_DST_OFF)?;
    let outer_check: *mut [u8; 2] = ptr_at(ctx, IP4_CHECK_OFF)?;
    let in_check: *mut [u8; 2] = ptr_at(ctx, IN4_CHECK)?;
    let icmp_check: *mut [u8; 2] = ptr_at(ctx, ICMP4_CHECK)?;
    // SAFETY: bounds-checked above.
    unsafe {
        let od = u32::from_ne_bytes(*outer_dst);
        update(outer_check, &[od], &[be], &[], &[]);
        *outer_dst = be.to_ne_bytes();
        update(in_check, &[vip], &[be], &[], &[]);
        *in_src = be.to_ne_bytes();
        // The embedded header's sum is unchanged: only the port moves the ICMP sum.
        update(icmp_check, &[], &[], &[p[0]], &[port]);
        set_first_port(ports, port);
    }
    count(ICMP_TO_BACKEND);
    Ok(false)
}

/// An ICMPv6 error to a VIP address: as [`to_backend4`]; the ICMPv6 checksum
/// also covers the outer destination (pseudo-header). The lookup and the
/// rewrite are out of line, each with its own stack frame: this runs from the
/// balancing program's, which the balancing fills.
#[inline(always)]
pub fn to_backend6<C: Direct>(ctx: &C) -> Result<bool, ()> {
    let kind: *mut u8 = ptr_at(ctx, ICMP6)?;
    let proto: *mut u8 = ptr_at(ctx, IN6_NEXT)?;
    // SAFETY: bounds-checked by ptr_at.
    let (kind, proto) = unsafe { (*kind, *proto) };
    if !is_error6(kind) || (proto != IPPROTO_TCP && proto != IPPROTO_UDP) {
        return Err(());
    }
    // The subprograms get the packet, not the context: a packet pointer
    // keeps its checked range across the call.
    let pkt: *mut [u8; IN6_END] = ptr_at(ctx, 0)?;
    let mut to = Backend6 {
        addr: [0; 4],
        port: 0,
    };
    if !find6(pkt, proto, &mut to) {
        count(ICMP_NO_FLOW);
        return Ok(true);
    }
    if !allow() {
        return Ok(true);
    }
    rewrite6(pkt, &to);
    count(ICMP_TO_BACKEND);
    Ok(false)
}

/// The flow's backend, as [`find6`] leaves it for [`rewrite6`].
pub struct Backend6 {
    addr: Addr6,
    port: u16,
}

/// The backend of the flow the embedded packet (VIP → client) belongs to,
/// into `to`; false: no such flow.
#[inline(never)]
fn find6(pkt: *mut [u8; IN6_END], proto: u8, to: &mut Backend6) -> bool {
    // SAFETY: `pkt` spans the embedded header and ports (checked by the caller).
    let (in_src, in_dst, p) = unsafe {
        (
            at::<[u8; 16]>(pkt, IN6_SRC),
            at::<[u8; 16]>(pkt, IN6_DST),
            port_pair(*at::<[u8; 4]>(pkt, IN6_L4)),
        )
    };
    let mut key = reversed([0; 4], [0; 4], p, proto);
    // Word by word: the whole addresses in registers at once spill byte by
    // byte, and the frame would not fit beside the XDP program's.
    for i in 0..4 {
        // SAFETY: as above.
        unsafe {
            key.src[i] = word(in_dst, i);
            key.dst[i] = word(in_src, i);
        }
    }
    match backend_of(&key) {
        Some((addr, port)) => {
            to.addr = addr;
            to.port = port;
            true
        }
        None => false,
    }
}

/// A `T` at `off` inside `pkt`.
///
/// # Safety
/// `off + size_of::<T>()` is at most `IN6_END`.
#[inline(always)]
unsafe fn at<T>(pkt: *mut [u8; IN6_END], off: usize) -> *mut T {
    // SAFETY: the caller's.
    unsafe { (pkt as *mut u8).add(off) as *mut T }
}

/// Word `i` of the 16 address bytes at `a` (network order, as the maps keep it).
///
/// # Safety
/// `a` points to 16 bounds-checked packet bytes.
#[inline(always)]
unsafe fn word(a: *const [u8; 16], i: usize) -> u32 {
    // SAFETY: the caller's.
    let b = unsafe { &*a };
    u32::from_ne_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
}

/// Outer destination and embedded source (address and port) become `to`'s,
/// with the ICMPv6 checksum following.
#[inline(never)]
fn rewrite6(pkt: *mut [u8; IN6_END], to: &Backend6) {
    // SAFETY: `pkt` spans every field below (checked by the caller). The
    // ICMPv6 checksum covers the outer destination (pseudo-header) and the
    // embedded source and port.
    unsafe {
        let outer_dst = at::<[u8; 16]>(pkt, IP6_DST_OFF);
        let in_src = at::<[u8; 16]>(pkt, IN6_SRC);
        let ports = at::<[u8; 4]>(pkt, IN6_L4);
        let icmp_check = at::<[u8; 2]>(pkt, ICMP6_CHECK);
        let (od, vip, p) = (words(&*outer_dst), words(&*in_src), port_pair(*ports));
        update(icmp_check, &vip, &to.addr, &[p[0]], &[to.port]);
        update(icmp_check, &od, &to.addr, &[], &[]);
        *outer_dst = bytes(&to.addr);
        *in_src = bytes(&to.addr);
        set_first_port(ports, to.port);
    }
}
