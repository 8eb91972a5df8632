//! `cgroup/sock_release` on the same cgroup: the application closed a socket
//! (its last reference). For a TCP socket connect4/6 marked (`L4LB_SOCKS`),
//! that ends what the mark counts in `L4LB_HEALTH` and frees the slot: a
//! live connection leaves `live` (its lifetime sample: established →
//! closed), a handshake still in flight leaves `inflight` and counts as
//! failed unless its SYN timeout counted it already (refused, unreachable,
//! timed out, or given up: the application closes a connect() that failed).
//!
//! This replaces the sock_ops STATE callbacks, two more per VIP connection
//! (to ESTABLISHED, then to the first close), with one run per socket of the
//! cgroup at its close; UDP and the other protocols return at the first test.
//!
//! The release runs without the socket's lock, so a SYN-ACK or a SYN
//! timeout (`sock_ops`, under the lock) may race with it: each side moves
//! the mark's flags with a compare-and-swap, and only the one that moved
//! them counts the change.
use core::{
    intrinsics::{AtomicOrdering, atomic_xchg},
    ptr::{addr_of_mut, read_volatile},
};

use aya_ebpf::{
    EbpfContext, helpers::bpf_get_socket_cookie, macros::cgroup_sock, programs::SockContext,
};
use l4lb_common::{
    IPPROTO_TCP, MARK_ENDED, MARK_ESTABLISHED, MARK_FAILED, MARK_IN_FLIGHT, MARK_PROBE, SockSlot,
};

use crate::{health, socks};

const SEQ: AtomicOrdering = AtomicOrdering::SeqCst;

#[cgroup_sock(sock_release)]
pub fn l4lb_release(ctx: SockContext) -> i32 {
    // SAFETY: the kernel passes a valid context for the program's lifetime.
    if unsafe { (*ctx.sock).protocol } != u32::from(IPPROTO_TCP) {
        return 1;
    }
    // SAFETY: bpf_get_socket_cookie is allowed for cgroup sock programs.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    socks::each(cookie, |s| {
        end(s);
        socks::free(s);
    });
    1
}

/// Counts the end of what the mark in `s` (a slot of its socket's) records:
/// live − 1 and a lifetime sample, or a handshake out of flight (failed if
/// not counted yet). Leaves the flags at `MARK_ENDED`: not stale, and no
/// `sock_ops` callback changes them any more. Out of line: one copy for
/// the release's walk over the slots and connect4/6's own one.
#[inline(never)]
pub fn end(s: *mut SockSlot) {
    // SAFETY: a live array value, aligned fields; the swap takes the flags
    // from any callback racing with it.
    let (flags, start_ns, backend_id) = unsafe {
        let flags = atomic_xchg::<u32, SEQ>(addr_of_mut!((*s).mark.flags), MARK_ENDED);
        (
            flags,
            read_volatile(addr_of_mut!((*s).mark.start_ns)),
            read_volatile(addr_of_mut!((*s).mark.backend_id)),
        )
    };
    if flags & (MARK_ESTABLISHED | MARK_IN_FLIGHT) == 0 {
        return;
    }
    let Some(h) = health::entry(backend_id) else {
        return;
    };
    let now = health::now_ns();
    if flags & MARK_ESTABLISHED != 0 {
        health::closed(h, now.wrapping_sub(start_ns));
        return;
    }
    if flags & MARK_FAILED == 0 {
        health::failed(h, backend_id, flags & MARK_PROBE != 0, now);
    }
    health::handshake_ended(h);
}
