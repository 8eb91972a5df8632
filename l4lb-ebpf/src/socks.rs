//! The socket marks (`L4LB_SOCKS`): an array of [`SockSlot`]s indexed by
//! socket cookie. A mark lives in one of the `SOCK_PROBE_SLOTS` slots from
//! `cookie % MAX_SOCKS` on; a slot's cookie says whose it is (0: free).
//! An array write costs a fraction of a hash insert (~0.5 µs of a VIP
//! connect4 at load, measured), and the lookups by `sock_ops` on each
//! callback become reads of at most a few slots.
//!
//! Claims are compare-and-swaps, so two connects on two CPUs never take one
//! slot: a free slot by its cookie (0 → ours); a stale one (a connect that
//! never sent its SYN, `SOCK_STALE_NS` ago, of a socket still open or whose
//! release went unseen, closed before the release program was attached) by
//! its time (that time → now), then its cookie. A freed slot's time is 0
//! before its cookie is: never stale meanwhile. The socket's release frees
//! its slots (`sock_release.rs`).
use core::{
    intrinsics::{AtomicOrdering, atomic_cxchg, atomic_xchg},
    ptr::{addr_of_mut, read_volatile, write_volatile},
};

use l4lb_common::{MARK_PROBE, MAX_SOCKS, SOCK_PROBE_SLOTS, SOCK_STALE_NS, SockMark, SockSlot};

use crate::maps::L4LB_SOCKS;

const SEQ: AtomicOrdering = AtomicOrdering::SeqCst;

#[inline(always)]
fn slot(cookie: u64, i: u32) -> Option<*mut SockSlot> {
    let idx = (cookie as u32).wrapping_add(i) & (MAX_SOCKS - 1);
    L4LB_SOCKS.get_ptr_mut(idx)
}

/// Calls `f` on every slot holding a mark of the socket with this cookie:
/// one, or two when a connect() again on it found a free slot before its
/// first one.
#[inline(always)]
pub fn each(cookie: u64, mut f: impl FnMut(*mut SockSlot)) {
    let mut i = 0;
    while i < SOCK_PROBE_SLOTS {
        let Some(s) = slot(cookie, i) else {
            return;
        };
        // SAFETY: a live array value; one aligned 8-byte read.
        if unsafe { read_volatile(addr_of_mut!((*s).cookie)) } == cookie {
            f(s);
        }
        i += 1;
    }
}

/// The slot holding the mark of the socket with this cookie, if any.
#[inline(always)]
pub fn find(cookie: u64) -> Option<*mut SockSlot> {
    let mut i = 0;
    while i < SOCK_PROBE_SLOTS {
        let s = slot(cookie, i)?;
        // SAFETY: a live array value; one aligned 8-byte read.
        if unsafe { read_volatile(addr_of_mut!((*s).cookie)) } == cookie {
            return Some(s);
        }
        i += 1;
    }
    None
}

/// Writes `mark` into a slot of this socket's (its own from an earlier
/// connect, a free one or a stale one); false: none left in its range.
#[inline(always)]
pub fn put(cookie: u64, mark: &SockMark, now: u64) -> bool {
    let mut i = 0;
    while i < SOCK_PROBE_SLOTS {
        let Some(s) = slot(cookie, i) else {
            return false;
        };
        i += 1;
        if claim(s, cookie, now) {
            // SAFETY: the slot is ours now; nobody else writes its mark.
            unsafe {
                write_volatile(addr_of_mut!((*s).mark), *mark);
                // Stale from SOCK_STALE_NS on unless its SYN leaves.
                write_volatile(addr_of_mut!((*s).mark.start_ns), now);
            }
            return true;
        }
    }
    false
}

#[inline(always)]
fn claim(s: *mut SockSlot, cookie: u64, now: u64) -> bool {
    // SAFETY: a live array value, aligned 8-byte fields; atomics for the
    // fields another CPU may claim at the same time.
    unsafe {
        let owner = addr_of_mut!((*s).cookie);
        let seen = read_volatile(owner);
        if seen == cookie {
            // connect() again on this socket (after a failed connect or a
            // disconnect): what its last mark counted ends here.
            crate::sock_release::end(s);
            return true;
        }
        if seen == 0 {
            return atomic_cxchg::<u64, SEQ, SEQ>(owner, 0, cookie).1;
        }
        let since = addr_of_mut!((*s).mark.start_ns);
        let t = read_volatile(since);
        // A mark in flight, established or ending is live (its flags); one
        // being freed has time 0 (so has one an earlier `sock_ops` saw leave
        // ESTABLISHED): never stale either.
        let flags = read_volatile(addr_of_mut!((*s).mark.flags)) & !MARK_PROBE;
        if flags != 0 || t == 0 || t > now || now - t < SOCK_STALE_NS {
            return false;
        }
        if !atomic_cxchg::<u64, SEQ, SEQ>(since, t, now).1 {
            return false;
        }
        atomic_xchg::<u64, SEQ>(owner, cookie);
        true
    }
}

/// Frees the slot (its socket closed). `s` is from [`find`] or [`each`].
#[inline(always)]
pub fn free(s: *mut SockSlot) {
    // SAFETY: a live array value; its time goes to 0 before its cookie
    // does, so no claim takes it for stale in between.
    unsafe {
        write_volatile(addr_of_mut!((*s).mark.flags), 0);
        write_volatile(addr_of_mut!((*s).mark.start_ns), 0);
        atomic_xchg::<u64, SEQ>(addr_of_mut!((*s).cookie), 0);
    }
}
