//! Per-backend health updates (`L4LB_HEALTH`), shared by the connect hooks
//! (probe claims) and the `sock_ops` program (handshake outcomes). Every CPU
//! updates the same entry, so counters move with atomic operations and the
//! probe slot with a compare-and-swap; the rules themselves are
//! `l4lb_common::health`, the same code the CLI runs.
use core::{
    intrinsics::{AtomicOrdering, atomic_cxchg, atomic_xadd},
    ptr::{read_volatile, write_volatile},
};

use aya_ebpf::helpers::bpf_ktime_get_ns;
use l4lb_common::{
    BackendHealth, HealthState, after_failure, failure_run, handshake_next, handshake_now,
    lifetime_next, lifetime_now,
};

use crate::maps::{L4LB_HEALTH, L4LB_PROBES};

#[inline(always)]
pub fn now_ns() -> u64 {
    // SAFETY: helper without arguments.
    unsafe { bpf_ktime_get_ns() }
}

#[inline(always)]
pub fn entry(backend_id: u32) -> Option<*mut BackendHealth> {
    L4LB_HEALTH.get_ptr_mut(backend_id)
}

/// One `u64` field of a map value that every CPU updates. Loads and stores
/// are single aligned 8-byte accesses (atomic on BPF); add and compare-and-swap
/// are the ISA v3 atomic instructions. Relaxed: each field is its own fact.
#[derive(Clone, Copy)]
struct Shared(*mut u64);

const RELAXED: AtomicOrdering = AtomicOrdering::Relaxed;

impl Shared {
    #[inline(always)]
    fn load(self) -> u64 {
        // SAFETY: an aligned field of a live map value (see `at`).
        unsafe { read_volatile(self.0) }
    }

    #[inline(always)]
    fn store(self, v: u64) {
        // SAFETY: as in `load`.
        unsafe { write_volatile(self.0, v) }
    }

    /// Adds `v`; returns the value before.
    #[inline(always)]
    fn fetch_add(self, v: u64) -> u64 {
        // SAFETY: as in `load`.
        unsafe { atomic_xadd::<u64, u64, RELAXED>(self.0, v) }
    }

    /// Sets `new` if the value is `old`; true if it did.
    #[inline(always)]
    fn compare_exchange(self, old: u64, new: u64) -> bool {
        // SAFETY: as in `load`.
        unsafe { atomic_cxchg::<u64, RELAXED, RELAXED>(self.0, old, new).1 }
    }
}

/// A field of a map value: array map values live as long as the map and are
/// 8-byte aligned (the struct is all u64).
#[inline(always)]
fn at(p: *mut u64) -> Shared {
    Shared(p)
}

/// Decrements without going below 0 (an entry the agent zeroed while a socket
/// of the id's previous backend was still open must not wrap).
#[inline(always)]
fn dec(p: *mut u64) {
    let a = at(p);
    for _ in 0..4 {
        let v = a.load();
        if v == 0 || a.compare_exchange(v, v - 1) {
            return;
        }
    }
}

/// `down_until_ns` as the rules read it: 0 when the agent's probe found the
/// backend answering in this down episode (`L4LB_PROBES`, written by the
/// agent only; `l4lb_common::probe`). The agent's map is read only for a
/// backend that is down, so an up backend costs no extra lookup.
#[inline(always)]
fn effective_down_until(backend_id: u32, down_until_ns: u64) -> u64 {
    if down_until_ns == 0 {
        return 0;
    }
    match L4LB_PROBES.get_ptr(backend_id) {
        // SAFETY: a live map value; one aligned 8-byte read.
        Some(m) => l4lb_common::effective_down_until(down_until_ns, unsafe {
            read_volatile(&raw const (*m).revived_for_ns)
        }),
        None => down_until_ns,
    }
}

/// The state connect() sees now, the connections it has (live and
/// handshaking), its handshake and lifetime averages as they read now
/// (faded by `handshake_now` / `lifetime_now`): what the costs read.
#[inline(always)]
pub fn snapshot(h: *mut BackendHealth, backend_id: u32, now: u64) -> (HealthState, u64, u64, u64) {
    // SAFETY: `h` is a live map value; racy plain reads are fine for a heuristic.
    let (down, inflight, stall, ewma, live, life, last_ok) = unsafe {
        (
            effective_down_until(backend_id, at(&raw mut (*h).down_until_ns).load()),
            at(&raw mut (*h).inflight).load(),
            at(&raw mut (*h).stall_since_ns).load(),
            at(&raw mut (*h).ewma_ns).load(),
            at(&raw mut (*h).live).load(),
            at(&raw mut (*h).lifetime_ewma_ns).load(),
            at(&raw mut (*h).last_ok_ns).load(),
        )
    };
    (
        l4lb_common::state(down, inflight, stall, ewma, now),
        live.wrapping_add(inflight),
        handshake_now(ewma, last_ok, now),
        lifetime_now(life, last_ok, now),
    )
}

/// The backend's state at `now` (an id without a health entry: up).
#[inline(always)]
pub fn state_of(backend_id: u32, now: u64) -> HealthState {
    match entry(backend_id) {
        Some(h) => snapshot(h, backend_id, now).0,
        None => HealthState::Up,
    }
}

/// Takes the backend's probe slot (one probe at a time, CAS on its start
/// time); false if another connect holds it.
#[inline(always)]
pub fn claim_probe(h: *mut BackendHealth, now: u64) -> bool {
    // SAFETY: live map value.
    let slot = at(unsafe { &raw mut (*h).probe_since_ns });
    let seen = slot.load();
    if !l4lb_common::probe_claimable(seen, now) {
        return false;
    }
    if !slot.compare_exchange(seen, now) {
        return false;
    }
    // SAFETY: live map value.
    at(unsafe { &raw mut (*h).probes }).fetch_add(1);
    true
}

/// The SYN is leaving: one more handshake in flight.
#[inline(always)]
pub fn handshake_started(h: *mut BackendHealth, now: u64) {
    // SAFETY: live map value.
    unsafe {
        if at(&raw mut (*h).inflight).fetch_add(1) == 0 {
            at(&raw mut (*h).stall_since_ns).store(now);
        }
    }
}

/// The handshake completed after `rtt_ns`: the backend is up (a down one
/// comes back), its average moves, the connection counts as live.
#[inline(always)]
pub fn established(h: *mut BackendHealth, rtt_ns: u64, now: u64) {
    // SAFETY: live map value.
    unsafe {
        dec(&raw mut (*h).inflight);
        at(&raw mut (*h).live).fetch_add(1);
        at(&raw mut (*h).handshakes).fetch_add(1);
        // Both averages keep the fading they had until now: this handshake
        // and the next close move them from there, not from where they
        // stood before the backend was starved.
        let last_ok = at(&raw mut (*h).last_ok_ns);
        let ewma = at(&raw mut (*h).ewma_ns);
        let faded = handshake_now(ewma.load(), last_ok.load(), now);
        ewma.store(handshake_next(faded, rtt_ns));
        at(&raw mut (*h).consecutive).store(0);
        let life = at(&raw mut (*h).lifetime_ewma_ns);
        life.store(lifetime_now(life.load(), last_ok.load(), now));
        last_ok.store(now);
        at(&raw mut (*h).stall_since_ns).store(now);
        at(&raw mut (*h).down_until_ns).store(0);
        at(&raw mut (*h).backoff_ns).store(0);
        at(&raw mut (*h).probe_since_ns).store(0);
    }
}

/// A handshake failed (first SYN timeout, RST, unreachable, abandoned): one
/// more in the run of failures, which may take the backend down; a failed
/// probe puts it back to sleep for a longer back-off.
#[inline(always)]
pub fn failed(h: *mut BackendHealth, backend_id: u32, was_probe: bool, now: u64) {
    // Before this handshake leaves flight: was the backend stuck?
    let stalled = snapshot(h, backend_id, now).0 == HealthState::Suspect;
    // SAFETY: live map value.
    unsafe {
        at(&raw mut (*h).failures).fetch_add(1);
        let run = at(&raw mut (*h).consecutive);
        let start = at(&raw mut (*h).window_start_ns);
        let (n, w) = failure_run(run.load(), start.load(), now);
        run.store(n);
        start.store(w);
        let down = at(&raw mut (*h).down_until_ns);
        let backoff = at(&raw mut (*h).backoff_ns);
        // A backend the agent revived is up: a new run of failures takes it
        // down again (a new episode), rather than counting as stragglers.
        let raw = down.load();
        let (d, b) = after_failure(
            effective_down_until(backend_id, raw),
            backoff.load(),
            n,
            was_probe,
            stalled,
            now,
        );
        if d != raw {
            down.store(d);
        }
        backoff.store(b);
        if was_probe {
            at(&raw mut (*h).probe_since_ns).store(0);
        }
    }
}

/// A handshake left flight without completing (counted as failed already or now).
#[inline(always)]
pub fn handshake_ended(h: *mut BackendHealth) {
    // SAFETY: live map value.
    unsafe { dec(&raw mut (*h).inflight) };
}

/// An established connection closed after `lifetime_ns`.
#[inline(always)]
pub fn closed(h: *mut BackendHealth, lifetime_ns: u64) {
    // SAFETY: live map value.
    unsafe {
        dec(&raw mut (*h).live);
        let life = at(&raw mut (*h).lifetime_ewma_ns);
        life.store(lifetime_next(life.load(), lifetime_ns));
    }
}
