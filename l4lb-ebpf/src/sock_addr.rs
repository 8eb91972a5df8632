//! cgroup sock_addr hooks: socket-level load balancing for clients on this node.
//!
//! connect4/6 and sendmsg4/6 translate VIP → backend before the kernel routes
//! anything, so no packet ever carries the VIP and no per-packet NAT is needed.
//! recvmsg4/6 and getpeername4/6 translate backend → VIP, so applications only
//! ever see the VIP: UDP through the reverse-NAT LRU (socket cookie + backend),
//! TCP through the socket's mark (`L4LB_SOCKS`, by cookie, `socks.rs`), which
//! a TCP connect writes anyway for `sock_ops`: one slot write per TCP connect.
//!
//! The agent's own calls (its Marathon reads, DNS upstream queries) are never
//! rewritten: the process registered in `L4LB_SELF` is checked once a call
//! has hit a VIP (or a reverse-NAT entry), so other calls pay nothing for it.
//!
//! Return values: 1 = let the call proceed (possibly rewritten); 0 = refuse it
//! with EPERM, used only for a VIP that has no backend taking new connections.
use core::ptr::{addr_of_mut, write_volatile};

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_SOCK_OPS_RTO_CB_FLAG, bpf_pidns_info, bpf_sock_addr},
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_ns_current_pid_tgid, bpf_get_prandom_u32,
        bpf_get_socket_cookie, bpf_setsockopt,
    },
    macros::cgroup_sock_addr,
    programs::SockAddrContext,
};
use aya_log_ebpf::debug;
use l4lb_common::{
    Addr6, Backend, FlowKey, HOOK_CONNECT, HOOK_SENDMSG, IPPROTO_TCP, IPPROTO_UDP, LB_POLICY_P2C,
    LB_POLICY_RANDOM, MARK_PROBE, REASON_NEW, REASON_NO_BACKEND, REASON_PROBE, REASON_REFUSED,
    REASON_SOCKET, RevNatKey, RevNatValue, SockMark, v4_mapped,
};

use crate::{
    health,
    lb::{
        MemberEvent, Verdict, backend_verdict, choose, count_member, count_service, lookup_service,
        maybe_vip, mix_cookie, p2c,
    },
    maps::{L4LB_REVNAT, L4LB_SELF},
    monitor, socks,
};

const ALLOW: i32 = 1;
const DENY: i32 = 0;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Call {
    Connect,
    Sendmsg,
}

#[cgroup_sock_addr(connect4)]
pub fn l4lb_connect4(ctx: SockAddrContext) -> i32 {
    forward(&ctx, Family::V4, Call::Connect)
}

#[cgroup_sock_addr(connect6)]
pub fn l4lb_connect6(ctx: SockAddrContext) -> i32 {
    forward(&ctx, Family::V6, Call::Connect)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn l4lb_sendmsg4(ctx: SockAddrContext) -> i32 {
    forward(&ctx, Family::V4, Call::Sendmsg)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn l4lb_sendmsg6(ctx: SockAddrContext) -> i32 {
    forward(&ctx, Family::V6, Call::Sendmsg)
}

#[cgroup_sock_addr(recvmsg4)]
pub fn l4lb_recvmsg4(ctx: SockAddrContext) -> i32 {
    reverse(&ctx, Family::V4)
}

#[cgroup_sock_addr(recvmsg6)]
pub fn l4lb_recvmsg6(ctx: SockAddrContext) -> i32 {
    reverse(&ctx, Family::V6)
}

#[cgroup_sock_addr(getpeername4)]
pub fn l4lb_peername4(ctx: SockAddrContext) -> i32 {
    reverse(&ctx, Family::V4)
}

#[cgroup_sock_addr(getpeername6)]
pub fn l4lb_peername6(ctx: SockAddrContext) -> i32 {
    reverse(&ctx, Family::V6)
}

#[inline(always)]
fn sock_addr(ctx: &SockAddrContext) -> &bpf_sock_addr {
    // SAFETY: the kernel passes a valid context for the program's lifetime.
    unsafe { &*ctx.sock_addr }
}

/// The user-supplied address (destination for connect/sendmsg, source for
/// recvmsg, peer for getpeername) in the maps' IPv4-mapped form.
#[inline(always)]
fn user_addr(sa: &bpf_sock_addr, family: Family) -> Addr6 {
    match family {
        Family::V4 => v4_mapped(sa.user_ip4),
        Family::V6 => sa.user_ip6,
    }
}

/// Writes the address the call will use (connect/sendmsg) or report
/// (recvmsg/getpeername).
#[inline(always)]
fn set_user_addr(sa: *mut bpf_sock_addr, family: Family, addr: &Addr6, port_be: u16) {
    match family {
        Family::V4 => set_user_addr4(sa, addr[3], port_be),
        // A v4 service reached through a dual-stack socket stays v4-mapped.
        Family::V6 => set_user_addr6(sa, addr, port_be),
    }
}

// The setters are out of line, one per family, with volatile stores at
// constant offsets from the context register: the verifier rejects a store
// through a context pointer the compiler has offset (which it does when it
// merges the v4 and v6 stores of addr[3] into one computed address).

#[inline(never)]
fn set_user_addr4(sa: *mut bpf_sock_addr, ip_be: u32, port_be: u16) {
    // SAFETY: `sa` is the program's context; both fields are writable here.
    unsafe {
        write_volatile(addr_of_mut!((*sa).user_ip4), ip_be);
        write_volatile(addr_of_mut!((*sa).user_port), port_be as u32);
    }
}

#[inline(never)]
fn set_user_addr6(sa: *mut bpf_sock_addr, addr: &Addr6, port_be: u16) {
    // SAFETY: `sa` is the program's context; these fields are writable here.
    unsafe {
        write_volatile(addr_of_mut!((*sa).user_ip6[0]), addr[0]);
        write_volatile(addr_of_mut!((*sa).user_ip6[1]), addr[1]);
        write_volatile(addr_of_mut!((*sa).user_ip6[2]), addr[2]);
        write_volatile(addr_of_mut!((*sa).user_ip6[3]), addr[3]);
        write_volatile(addr_of_mut!((*sa).user_port), port_be as u32);
    }
}

#[inline(always)]
fn cookie(ctx: &SockAddrContext) -> u64 {
    // SAFETY: bpf_get_socket_cookie is allowed for sock_addr programs.
    unsafe { bpf_get_socket_cookie(ctx.as_ptr()) }
}

/// True when the calling process is the agent registered in `L4LB_SELF`.
/// sock_addr programs run in the caller's syscall, so "current" is the caller.
/// bpf_get_ns_current_pid_tgid (allowed for every program type since Linux
/// 6.10) answers only if the caller lives in the agent's pid namespace, so a
/// process elsewhere with the same pid number is never taken for the agent.
/// The initial pid namespace's inode number (`PROC_PID_INIT_INO`), the same
/// on every kernel.
const INIT_PIDNS_INO: u64 = 0xEFFF_FFFC;

#[inline(always)]
fn is_agent() -> bool {
    let Some(id) = L4LB_SELF.get(0) else {
        return false;
    };
    if id.tgid == 0 {
        return false;
    }
    if id.pidns_ino == INIT_PIDNS_INO {
        // The agent lives in the initial pid namespace, whose numbers the
        // plain helper returns: the same answer without the namespace
        // helper's lookups (~9% of a VIP connect's program time).
        // SAFETY: helper without preconditions.
        let tgid = (unsafe { bpf_get_current_pid_tgid() } >> 32) as u32;
        return tgid == id.tgid;
    }
    let mut ns = bpf_pidns_info { pid: 0, tgid: 0 };
    // SAFETY: `ns` is a writable bpf_pidns_info on our stack, its size passed along.
    let rc = unsafe {
        bpf_get_ns_current_pid_tgid(
            id.pidns_dev,
            id.pidns_ino,
            &mut ns,
            core::mem::size_of::<bpf_pidns_info>() as u32,
        )
    };
    rc == 0 && ns.tgid == id.tgid
}

#[inline(always)]
fn forward(ctx: &SockAddrContext, family: Family, call: Call) -> i32 {
    let sa = sock_addr(ctx);
    let proto = sa.protocol as u8;
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        return ALLOW;
    }
    let vip = user_addr(sa, family);
    if !maybe_vip(&vip) {
        return ALLOW;
    }
    let vip_port = sa.user_port as u16;
    let Some(svc) = lookup_service(vip, vip_port, proto) else {
        return ALLOW;
    };
    if is_agent() {
        // A VIP on the agent's own control-plane address must not capture it.
        return ALLOW;
    }
    let cookie = cookie(ctx);
    let tcp_connect = call == Call::Connect && proto == IPPROTO_TCP;
    // One read of the policy per call: it decides the choice and the report.
    let policy = if tcp_connect {
        p2c::policy()
    } else {
        LB_POLICY_RANDOM
    };
    // One clock read per TCP connect, for p2c and the mark's time: a
    // second one cost ~5 % of a VIP connect4 (perf, `bench socket`).
    let now = if tcp_connect { health::now_ns() } else { 0 };
    let (verdict, probe) = if policy == LB_POLICY_P2C && svc.slot_count > 0 {
        match p2c::choose(&svc, now) {
            Some(c) => (backend_verdict(&svc, c.backend_id), c.probe),
            None => (choose(&svc, 0), false),
        }
    } else {
        // connect(): a fresh choice per connection. sendmsg() on an unconnected UDP
        // socket: the same socket keeps its backend while the set is unchanged.
        let pick = match call {
            // SAFETY: helper without preconditions.
            Call::Connect => unsafe { bpf_get_prandom_u32() },
            Call::Sendmsg => mix_cookie(cookie),
        };
        (choose(&svc, pick), false)
    };
    match verdict {
        Verdict::NoBackend { service_id } => {
            count_service(service_id, |s| s.no_backend += 1);
            report(
                call,
                REASON_NO_BACKEND,
                policy,
                (vip, vip_port, proto),
                service_id,
                0,
            );
            debug!(
                ctx,
                "l4lb: service {} has no backend for new connections", service_id
            );
            DENY
        }
        Verdict::Backend {
            service_id,
            backend_id,
            backend,
        } => {
            if family == Family::V4 && backend.family != 4 {
                // The agent never pairs a v4 VIP with a v6 backend; refuse rather than misroute.
                count_service(service_id, |s| s.no_backend += 1);
                let svc = (vip, vip_port, proto);
                report(call, REASON_REFUSED, policy, svc, service_id, backend_id);
                return DENY;
            }
            let conn = Remembered {
                cookie,
                now,
                vip,
                vip_port,
                service_id,
                backend_id,
                backend,
            };
            remember(&conn, tcp_connect, probe);
            if tcp_connect {
                follow(ctx);
            }
            set_user_addr(ctx.sock_addr, family, &backend.addr, backend.port);
            // Per service and per (service, backend) pair: nothing reads a
            // backend's own connects or sendmsgs (the CLI and /metrics show
            // the pair's), so `L4LB_BE_STATS` is not one more line to touch.
            match call {
                Call::Connect => {
                    count_service(service_id, |s| s.connects += 1);
                    count_member(service_id, backend_id, MemberEvent::Connect);
                }
                Call::Sendmsg => {
                    count_service(service_id, |s| s.sendmsgs += 1);
                    count_member(service_id, backend_id, MemberEvent::Sendmsg);
                }
            }
            let reason = match call {
                Call::Connect if probe => REASON_PROBE,
                Call::Connect => REASON_NEW,
                Call::Sendmsg => REASON_SOCKET,
            };
            let svc = (vip, vip_port, proto);
            report(call, reason, policy, svc, service_id, backend_id);
            ALLOW
        }
    }
}

/// What the reverse path needs to show the VIP again.
struct Remembered<'a> {
    cookie: u64,
    /// The connect's clock read (TCP only).
    now: u64,
    vip: Addr6,
    vip_port: u16,
    service_id: u32,
    backend_id: u32,
    backend: &'a Backend,
}

/// One map write per call: a TCP socket's mark (`L4LB_SOCKS`, by cookie) is
/// both what `sock_ops` follows and what its getpeername reads; a UDP socket
/// may talk to several backends, so it gets a reverse-NAT entry per backend.
/// A failed write only means the backend shows (or the connection goes
/// unobserved, counted in `LbStats::unmarked`); never fail the call for
/// it. Under either policy: `random` is observed too, so both can be
/// compared in one run.
#[inline(always)]
fn remember(c: &Remembered, tcp_connect: bool, probe: bool) {
    if tcp_connect {
        let m = SockMark {
            backend_id: c.backend_id,
            flags: if probe { MARK_PROBE } else { 0 },
            start_ns: 0,
            backend: c.backend.addr,
            backend_port: c.backend.port,
            vip_port: c.vip_port,
            service_id: c.service_id,
            vip: c.vip,
        };
        if !socks::put(c.cookie, &m, c.now) {
            // Balanced all the same, but unobserved: counted so it shows.
            p2c::count(c.service_id, |s| s.unmarked += 1);
        }
    } else {
        let key = RevNatKey {
            cookie: c.cookie,
            addr: c.backend.addr,
            port: c.backend.port,
            _pad: [0; 6],
        };
        let value = RevNatValue {
            addr: c.vip,
            port: c.vip_port,
            _pad: 0,
            service_id: c.service_id,
        };
        let _ = L4LB_REVNAT.insert(&key, &value, 0);
    }
}

/// `TCP_BPF_SOCK_OPS_CB_FLAGS` (linux/bpf.h, Linux 6.10): a socket's
/// sock_ops callback flags, settable with `bpf_setsockopt` from connect4/6.
const TCP_BPF_SOCK_OPS_CB_FLAGS: i32 = 1008;
const SOL_TCP: i32 = 6;

/// Turns on this socket's RTO callbacks (a SYN timeout fails the
/// handshake); `sock_ops` adds the STATE ones when the SYN leaves (here,
/// they would add a callback for the move to SYN_SENT). Sockets of no VIP
/// never get either, so `sock_ops` knows them by their flags, without a
/// lookup.
#[inline(always)]
fn follow(ctx: &SockAddrContext) {
    let mut flags = BPF_SOCK_OPS_RTO_CB_FLAG as i32;
    // SAFETY: bpf_setsockopt is allowed for connect4/6 (the socket is
    // locked there); `flags` is a writable i32 on our stack, its size passed.
    let _ = unsafe {
        bpf_setsockopt(
            ctx.as_ptr(),
            SOL_TCP,
            TCP_BPF_SOCK_OPS_CB_FLAGS,
            &mut flags as *mut i32 as *mut core::ffi::c_void,
            core::mem::size_of::<i32>() as i32,
        )
    };
}

/// The VIP side of a monitor event (the client is the calling task).
#[inline(always)]
fn svc_key(vip: Addr6, vip_port: u16, proto: u8) -> FlowKey {
    FlowKey {
        src: [0; 4],
        dst: vip,
        sport: 0,
        dport: vip_port,
        proto,
        _pad: [0; 3],
    }
}

/// A monitor event, when a monitor listens (see `monitor.rs`). `svc`: VIP,
/// port, protocol; the event's key is made only then: made before the
/// check, it cost every VIP connect two `memset` calls and 40 bytes of
/// stack stores while nobody listened.
#[inline(always)]
fn report(
    call: Call,
    reason: u8,
    policy: u32,
    svc: (Addr6, u16, u8),
    service_id: u32,
    backend_id: u32,
) {
    if !monitor::watching() {
        return;
    }
    let key = svc_key(svc.0, svc.1, svc.2);
    let hook = match call {
        Call::Connect => HOOK_CONNECT,
        Call::Sendmsg => HOOK_SENDMSG,
    };
    // SAFETY: helper without preconditions; sock_addr programs run in the caller's task.
    let pid_tgid = unsafe { bpf_get_current_pid_tgid() };
    let what = monitor::what(hook, reason, policy);
    monitor::emit(what, &key, service_id, backend_id, pid_tgid);
}

#[inline(always)]
fn reverse(ctx: &SockAddrContext, family: Family) -> i32 {
    let sa = sock_addr(ctx);
    let peer = user_addr(sa, family);
    let port = sa.user_port as u16;
    let found = if sa.protocol as u8 == IPPROTO_TCP {
        tcp_vip(cookie(ctx), &peer, port)
    } else {
        let key = RevNatKey {
            cookie: cookie(ctx),
            addr: peer,
            port,
            _pad: [0; 6],
        };
        // SAFETY: the value is copied out before any other map operation.
        unsafe { L4LB_REVNAT.get(&key) }
            .copied()
            .map(|v| (v.addr, v.port, v.service_id))
    };
    if let Some((vip, vip_port, service_id)) = found
        && !is_agent()
    {
        set_user_addr(ctx.sock_addr, family, &vip, vip_port);
        count_service(service_id, |s| s.revnat += 1);
    }
    ALLOW
}

/// The VIP a TCP socket connected to, from its mark, while its peer is the
/// backend connect4/6 sent it to (a socket connected again elsewhere is not).
#[inline(always)]
fn tcp_vip(cookie: u64, peer: &Addr6, port: u16) -> Option<(Addr6, u16, u32)> {
    // SAFETY: a live array value; another CPU may free and retake the
    // slot, so the cookie is checked again after the copy.
    let m = unsafe { *socks::find(cookie)? };
    if m.cookie != cookie {
        return None;
    }
    let m = m.mark;
    (m.vip_port != 0 && m.backend == *peer && m.backend_port == port).then_some((
        m.vip,
        m.vip_port,
        m.service_id,
    ))
}
