//! `sock_ops` on the same cgroup as the socket hooks: watches the TCP
//! connections connect4/6 sent to a backend and records, per backend
//! (`L4LB_HEALTH`), handshakes in flight, their outcome and duration. No
//! per-packet work: only the callbacks every TCP socket gets once (connect,
//! established) plus, for VIP sockets only until established, the RTO
//! callback connect4/6 turned on.
//!
//! A socket is ours when connect4/6 left a mark under its cookie
//! (`L4LB_SOCKS`, `socks.rs`): the backend id, the probe bit (and the VIP, which
//! getpeername4/6 read there). Lifecycle:
//! TCP_CONNECT_CB (SYN out) → in flight; ACTIVE_ESTABLISHED_CB → RTT sample,
//! live; RTO_CB while in flight → failed (once per handshake). The end (a
//! live one closed, or a handshake that never completed: RST, unreachable,
//! given up) is the socket's release (`sock_release.rs`), when the
//! application closes it: no STATE callbacks, two fewer runs per VIP
//! connection. The release may race with the SYN-ACK and the RTO, so the
//! flags move by compare-and-swap here.
use core::{
    intrinsics::{AtomicOrdering, atomic_cxchg},
    ptr::{addr_of_mut, read_volatile},
};

use aya_ebpf::{
    EbpfContext,
    bindings::{
        BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB, BPF_SOCK_OPS_RTO_CB, BPF_SOCK_OPS_RTO_CB_FLAG,
        BPF_SOCK_OPS_TCP_CONNECT_CB,
    },
    helpers::bpf_get_socket_cookie,
    macros::sock_ops,
    programs::SockOpsContext,
};
use l4lb_common::{MARK_ESTABLISHED, MARK_FAILED, MARK_IN_FLIGHT, MARK_PROBE};

use crate::{health, socks};

const SEQ: AtomicOrdering = AtomicOrdering::SeqCst;

#[sock_ops]
pub fn l4lb_sockops(ctx: SockOpsContext) -> u32 {
    let op = ctx.op();
    // Sockets of an earlier program still get STATE callbacks: they
    // return here, their release ends them.
    if op != BPF_SOCK_OPS_TCP_CONNECT_CB
        && op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB
        && op != BPF_SOCK_OPS_RTO_CB
    {
        return 1;
    }
    // connect4/6 turned the RTO callbacks on for the sockets they marked
    // (off again once established): a socket without them is not ours, no
    // lookup.
    if ctx.cb_flags() & BPF_SOCK_OPS_RTO_CB_FLAG == 0 {
        return 1;
    }
    // SAFETY: bpf_get_socket_cookie is allowed for sock_ops programs.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let Some(slot) = socks::find(cookie) else {
        return 1;
    };
    // SAFETY: a map value, valid while this program runs; this socket's
    // callbacks are serialized by its lock, its release is not (`flags`).
    let m = unsafe { &mut (*slot).mark };
    let Some(h) = health::entry(m.backend_id) else {
        return 1;
    };
    let flags = addr_of_mut!(m.flags);
    // SAFETY: an aligned field of a live array value.
    let seen = unsafe { read_volatile(flags) };
    match op {
        BPF_SOCK_OPS_TCP_CONNECT_CB => {
            // connect4/6 stamped the mark in this same connect() call, a
            // few µs ago: its time starts the handshake, which saves a clock
            // read (~20 % of this program's time in the VIP path, perf). A
            // connect() that defers its SYN to the first write
            // (TCP_FASTOPEN_CONNECT) times from the connect() call; one
            // sample moves the average at most 1.375× (`handshake_next`).
            // No release can run meanwhile: the caller holds the socket.
            let now = match m.start_ns {
                0 => health::now_ns(),
                t => t,
            };
            m.start_ns = now;
            m.flags = seen | MARK_IN_FLIGHT;
            health::handshake_started(h, now);
        }
        BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB => {
            // A retransmission timeout of an established connection
            // records nothing: no more RTO callbacks for this socket.
            let _ = ctx.set_cb_flags((ctx.cb_flags() & !BPF_SOCK_OPS_RTO_CB_FLAG) as i32);
            if seen & MARK_IN_FLIGHT == 0 {
                return 1;
            }
            let now = health::now_ns();
            let live = (seen & !MARK_IN_FLIGHT) | MARK_ESTABLISHED;
            if !swap(flags, seen, live) {
                // Released meanwhile: the release counted it.
                return 1;
            }
            let rtt = now.wrapping_sub(m.start_ns);
            // From here on, start_ns is when its lifetime began. A release
            // freeing the slot after the swap may see the handshake's start
            // (a lifetime a handshake longer); this store then lands in a
            // free slot, or in one a connect took in these nanoseconds,
            // whose time it moves by as much: harmless either way.
            m.start_ns = now;
            health::established(h, rtt, now);
        }
        _ => {
            // The first SYN timeout fails the handshake; a later success still
            // brings the backend back.
            if seen & (MARK_IN_FLIGHT | MARK_FAILED) == MARK_IN_FLIGHT
                && swap(flags, seen, seen | MARK_FAILED)
            {
                let now = health::now_ns();
                health::failed(h, m.backend_id, seen & MARK_PROBE != 0, now);
            }
        }
    }
    1
}

/// Moves the mark's flags from `seen` to `new`; false if its release took
/// them first.
#[inline(always)]
fn swap(flags: *mut u32, seen: u32, new: u32) -> bool {
    // SAFETY: an aligned field of a live array value.
    unsafe { atomic_cxchg::<u32, SEQ, SEQ>(flags, seen, new).1 }
}
