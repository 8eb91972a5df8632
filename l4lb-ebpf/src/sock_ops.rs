//! `sock_ops` on the same cgroup as the socket hooks: watches the TCP
//! connections connect4/6 sent to a backend and records, per backend
//! (`L4LB_HEALTH`), handshakes in flight, their outcome and duration, and live
//! connections. No per-packet work: only the callbacks every TCP socket gets
//! once (connect, established) plus, for VIP sockets only, the RTO and state
//! callbacks turned on with `bpf_sock_ops_cb_flags_set` (RTO off again once
//! established: only a handshake's timeout is recorded).
//!
//! A socket is ours when connect4/6 left a mark under its cookie
//! (`L4LB_SOCKS`, `socks.rs`): the backend id, the probe bit (and the VIP, which
//! getpeername4/6 read there). Lifecycle:
//! TCP_CONNECT_CB (SYN out) → in flight; ACTIVE_ESTABLISHED_CB → RTT sample,
//! live; RTO_CB while in flight → failed (once per handshake); STATE_CB to
//! CLOSE → in flight: failed (RST, unreachable, given up); an established
//! one leaving ESTABLISHED (either side closed) → live − 1 and a lifetime
//! sample (established → first close); at CLOSE the mark goes.
use aya_ebpf::{
    EbpfContext,
    bindings::{
        BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB, BPF_SOCK_OPS_RTO_CB, BPF_SOCK_OPS_RTO_CB_FLAG,
        BPF_SOCK_OPS_STATE_CB, BPF_SOCK_OPS_STATE_CB_FLAG, BPF_SOCK_OPS_TCP_CONNECT_CB,
        BPF_TCP_CLOSE, BPF_TCP_ESTABLISHED,
    },
    helpers::bpf_get_socket_cookie,
    macros::sock_ops,
    programs::SockOpsContext,
};
use l4lb_common::{MARK_ESTABLISHED, MARK_FAILED, MARK_IN_FLIGHT, MARK_PROBE, SockMark};

use crate::{health, socks};

#[sock_ops]
pub fn l4lb_sockops(ctx: SockOpsContext) -> u32 {
    let op = ctx.op();
    if op != BPF_SOCK_OPS_TCP_CONNECT_CB
        && op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB
        && op != BPF_SOCK_OPS_RTO_CB
        && op != BPF_SOCK_OPS_STATE_CB
    {
        return 1;
    }
    // Of the state changes, only leaving ESTABLISHED (arg 0: the old state)
    // and reaching CLOSE (arg 1: the new one) change what is recorded; the
    // others (to ESTABLISHED, which ACTIVE_ESTABLISHED follows, and
    // FIN_WAIT2, CLOSING, LAST_ACK on the way out) skip the lookup by cookie.
    if op == BPF_SOCK_OPS_STATE_CB
        && ctx.arg(0) != BPF_TCP_ESTABLISHED
        && ctx.arg(1) != BPF_TCP_CLOSE
    {
        return 1;
    }
    // connect4/6 turned the RTO callbacks on for the sockets they marked
    // (STATE follows at TCP_CONNECT, RTO goes once established): a socket
    // with neither is not ours, no lookup.
    if ctx.cb_flags() & (BPF_SOCK_OPS_RTO_CB_FLAG | BPF_SOCK_OPS_STATE_CB_FLAG) == 0 {
        return 1;
    }
    // SAFETY: bpf_get_socket_cookie is allowed for sock_ops programs.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let Some(slot) = socks::find(cookie) else {
        return 1;
    };
    // SAFETY: a map value, valid while this program runs; only this
    // socket's callbacks (serialized by its lock) write its mark.
    let m = unsafe { &mut (*slot).mark };
    let Some(h) = health::entry(m.backend_id) else {
        return 1;
    };
    // The clock is read only where a time is recorded: not on the state
    // change to ESTABLISHED, which every VIP connection also makes.
    match op {
        BPF_SOCK_OPS_TCP_CONNECT_CB => {
            // A failure from here shows as a close, a close of a live one
            // as a close (connect4/6 turned RTO on already).
            let _ = ctx.set_cb_flags((ctx.cb_flags() | BPF_SOCK_OPS_STATE_CB_FLAG) as i32);
            // connect4/6 stamped the mark in this same connect() call, a
            // few µs ago: its time starts the handshake, which saves a clock
            // read (~20 % of this program's time in the VIP path, perf). A
            // connect() that defers its SYN to the first write
            // (TCP_FASTOPEN_CONNECT) times from the connect() call; one
            // sample moves the average at most 1.375× (`handshake_next`).
            let now = match m.start_ns {
                0 => health::now_ns(),
                t => t,
            };
            m.start_ns = now;
            m.flags |= MARK_IN_FLIGHT;
            health::handshake_started(h, now);
        }
        BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB => {
            if m.flags & MARK_IN_FLIGHT != 0 {
                // A retransmission timeout of an established connection
                // records nothing: no more RTO callbacks for this socket.
                let _ = ctx.set_cb_flags((ctx.cb_flags() & !BPF_SOCK_OPS_RTO_CB_FLAG) as i32);
                let now = health::now_ns();
                m.flags = (m.flags & !MARK_IN_FLIGHT) | MARK_ESTABLISHED;
                health::established(h, now.wrapping_sub(m.start_ns), now);
                // From here on, start_ns is when its lifetime began.
                m.start_ns = now;
            }
        }
        BPF_SOCK_OPS_RTO_CB => {
            // The first SYN timeout fails the handshake; a later success still
            // brings the backend back.
            if m.flags & (MARK_IN_FLIGHT | MARK_FAILED) == MARK_IN_FLIGHT {
                m.flags |= MARK_FAILED;
                let now = health::now_ns();
                health::failed(h, m.backend_id, m.flags & MARK_PROBE != 0, now);
            }
        }
        _ => {
            let state = ctx.arg(1);
            // Its work is done once either side closes (FIN_WAIT1,
            // CLOSE_WAIT, …): no longer live for p2c, and its lifetime ends
            // there, not after the closing handshake.
            if m.flags & MARK_ESTABLISHED != 0 && state != BPF_TCP_ESTABLISHED {
                m.flags &= !MARK_ESTABLISHED;
                health::closed(h, health::now_ns().wrapping_sub(m.start_ns));
                // Time 0: closing, not a stale slot to take (`socks.rs`).
                m.start_ns = 0;
            }
            if state != BPF_TCP_CLOSE {
                return 1;
            }
            if m.flags & MARK_IN_FLIGHT != 0 {
                if m.flags & MARK_FAILED == 0 {
                    let now = health::now_ns();
                    health::failed(h, m.backend_id, m.flags & MARK_PROBE != 0, now);
                }
                health::handshake_ended(h);
            }
            socks::free(slot);
        }
    }
    1
}
