//! Service lookup and backend choice, shared by every hook.
use aya_ebpf::bindings::BPF_NOEXIST;
use l4lb_common::{
    Addr6, Backend, HealthState, MemberKey, ServiceKey, ServiceStats, ServiceValue, Stats,
    UP_SCAN_SLOTS, vip_filter_bit, vip_filter_slot,
};

use crate::maps::{
    L4LB_BE_STATS, L4LB_MEMBER_STATS, L4LB_SERVICES, L4LB_SLOTS, L4LB_SVC_STATS, L4LB_VIP_FILTER,
    cpu_record, this_cpu,
};

pub mod local;
pub mod p2c;

/// What a lookup found for a destination.
pub enum Verdict {
    /// A VIP with no backend taking new connections.
    NoBackend { service_id: u32 },
    /// Send to this backend.
    Backend {
        service_id: u32,
        backend_id: u32,
        /// In the backends array: read through, never copied whole.
        backend: &'static Backend,
    },
}

/// False when `addr` is surely no VIP address (its bit in the VIP
/// pre-filter is clear): one read of an 8 KB bitmap, which stays cached,
/// instead of the services hash lookup, which every connect on the node
/// would pay, to a VIP or not. The agent sets an address's bit before any
/// service on it is written and clears it after the last one is removed
/// (and no other VIP address hashes there), so a false answer is never
/// wrong. XDP and the socket hooks share this one function.
#[inline(always)]
pub fn maybe_vip(addr: &Addr6) -> bool {
    let (word, mask) = vip_filter_bit(vip_filter_slot(addr));
    matches!(L4LB_VIP_FILTER.get(word), Some(w) if *w & mask != 0)
}

#[inline(always)]
pub fn lookup_service(addr: Addr6, port: u16, proto: u8) -> Option<ServiceValue> {
    let key = ServiceKey {
        addr,
        port,
        proto,
        _pad: 0,
    };
    // SAFETY: the value is copied out before any other map operation.
    unsafe { L4LB_SERVICES.get(&key) }.copied()
}

/// Picks the backend in slot `pick % slot_count` of the service's table. The
/// table was complete before the service value naming it was written, and is
/// not reused until well after it was replaced, so the set seen here is whole.
#[inline(always)]
pub fn choose(svc: &ServiceValue, pick: u32) -> Verdict {
    if svc.slot_count == 0 {
        return Verdict::NoBackend { service_id: svc.id };
    }
    let Some(backend_id) = slot_backend(svc, pick) else {
        return Verdict::NoBackend { service_id: svc.id };
    };
    backend_verdict(svc, backend_id)
}

/// XDP's Maglev pick for a new flow, skipping a backend down for this node
/// (`L4LB_HEALTH`): up to [`XDP_REPICKS`] more slots, derived from the same
/// hash so every packet of the flow (and every node that agrees the backend
/// is down) lands on the same one, then the [`first_up`] walk from there;
/// all down → the plain Maglev pick. Suspect
/// backends are not skipped: without a local socket there is no handshake to
/// wait on, and a flow must not move while the judgment is pending. Under
/// `--lb-policy random` the plain pick, as before health existed.
#[inline(always)]
pub fn choose_up(svc: &ServiceValue, hash: u32) -> Verdict {
    if svc.slot_count == 0 || p2c::policy() != l4lb_common::LB_POLICY_P2C {
        return choose(svc, hash);
    }
    let Some(first) = slot_backend(svc, hash) else {
        return Verdict::NoBackend { service_id: svc.id };
    };
    let now = crate::health::now_ns();
    let mut id = first;
    let mut pick = hash;
    let mut k = 0;
    while k < XDP_REPICKS {
        if !is_down(crate::health::state_of(id, now)) {
            return backend_verdict(svc, id);
        }
        k += 1;
        pick = hash.wrapping_add(k.wrapping_mul(0x9e37_79b9));
        id = match slot_backend(svc, pick) {
            Some(b) => b,
            None => break,
        };
    }
    let up = first_up(svc, pick, now, |s| !is_down(s));
    backend_verdict(svc, up.unwrap_or(first))
}

#[inline(always)]
fn is_down(state: HealthState) -> bool {
    matches!(state, HealthState::Down | HealthState::ProbeDue)
}

/// Further slots XDP tries when a new flow's Maglev pick is down for this node.
const XDP_REPICKS: u32 = 4;

/// The first backend whose state `takes` in the [`UP_SCAN_SLOTS`] slots
/// after `pick`. Random draws alone leave a chance that every draw lands on
/// down backends while others are up ((1/2)^8 per connect with one of two
/// down): Maglev spreads each backend's slots over the table, so a short
/// walk of neighbouring slots finds an up one wherever one holds a fair
/// share, and a down backend gets a new connection only when (nearly) all are.
#[inline(always)]
pub fn first_up(
    svc: &ServiceValue,
    pick: u32,
    now: u64,
    takes: impl Fn(HealthState) -> bool,
) -> Option<u32> {
    let mut j = 1;
    while j <= UP_SCAN_SLOTS {
        let id = slot_backend(svc, pick.wrapping_add(j))?;
        if takes(crate::health::state_of(id, now)) {
            return Some(id);
        }
        j += 1;
    }
    None
}

/// The backend id in slot `pick % slot_count` (`slot_count` > 0).
#[inline(always)]
pub fn slot_backend(svc: &ServiceValue, pick: u32) -> Option<u32> {
    // checked_rem: no division-by-zero panic path, which the verifier
    // refuses when the caller's `slot_count > 0` check is not in sight.
    let slot = svc
        .slot_base
        .wrapping_add(pick.checked_rem(svc.slot_count)?);
    L4LB_SLOTS.get(slot).copied()
}

/// The verdict for a backend id taken from the service's table.
#[inline(always)]
pub fn backend_verdict(svc: &ServiceValue, backend_id: u32) -> Verdict {
    let Some(backend) = crate::maps::backend(backend_id) else {
        return Verdict::NoBackend { service_id: svc.id };
    };
    Verdict::Backend {
        service_id: svc.id,
        backend_id,
        backend,
    }
}

/// Counts into the service's record on this CPU (one per service: its
/// traffic, p2c and locality counters; each writer takes its part).
#[inline(always)]
pub(crate) fn count_in_record(service_id: u32, f: impl FnOnce(&mut ServiceStats)) {
    let Some(i) = cpu_record(service_id) else {
        return;
    };
    if let Some(s) = L4LB_SVC_STATS.get_ptr_mut(i) {
        // SAFETY: this CPU's record, only this CPU writes it while we run.
        f(unsafe { &mut *s });
    }
}

#[inline(always)]
pub fn count_service(service_id: u32, f: impl FnOnce(&mut Stats)) {
    count_in_record(service_id, |r| f(&mut r.stats));
}

/// The same event in the service's and the backend's records (XDP's flows,
/// packets and bytes): the CPU is read once for both.
#[inline(always)]
pub fn count_service_backend(service_id: u32, backend_id: u32, f: impl Fn(&mut Stats)) {
    let Some(cpu) = this_cpu() else {
        return;
    };
    if let Some(i) = cpu.record(service_id)
        && let Some(s) = L4LB_SVC_STATS.get_ptr_mut(i)
    {
        // SAFETY: this CPU's record, only this CPU writes it while we run.
        f(unsafe { &mut (*s).stats });
    }
    if let Some(i) = cpu.record(backend_id)
        && let Some(s) = L4LB_BE_STATS.get_ptr_mut(i)
    {
        // SAFETY: as above.
        f(unsafe { &mut *s });
    }
}

/// What [`count_member`] counts.
#[derive(Clone, Copy)]
pub enum MemberEvent {
    Connect,
    Sendmsg,
    Flow,
}

#[inline(always)]
fn add_event(s: &mut Stats, event: MemberEvent) {
    match event {
        MemberEvent::Connect => s.connects += 1,
        MemberEvent::Sendmsg => s.sendmsgs += 1,
        MemberEvent::Flow => s.flows += 1,
    }
}

/// Counts a connection event of one (service, backend) pair. The pair's
/// entry is made on its first event (a per-CPU hash without preallocation:
/// only pairs that carried traffic take memory); when two CPUs make it at
/// once, both add to the one that was made. Out of line: inlined, its
/// calls pushed the hooks' return value onto the stack, where the verifier
/// no longer sees that it is 0 or 1.
#[inline(never)]
pub fn count_member(service_id: u32, backend_id: u32, event: MemberEvent) {
    let key = MemberKey {
        service_id,
        backend_id,
    };
    if let Some(s) = L4LB_MEMBER_STATS.get_ptr_mut(key) {
        // SAFETY: this CPU's value, only this CPU writes it while we run.
        add_event(unsafe { &mut *s }, event);
        return;
    }
    // Made from a zero value in read-only data, not on the stack: XDP's
    // frame plus this one must stay within the 512-byte stack.
    let _ = L4LB_MEMBER_STATS.insert(key, &ZERO_STATS, BPF_NOEXIST as u64);
    if let Some(s) = L4LB_MEMBER_STATS.get_ptr_mut(key) {
        // SAFETY: as above.
        add_event(unsafe { &mut *s }, event);
    }
}

static ZERO_STATS: Stats = Stats {
    connects: 0,
    sendmsgs: 0,
    no_backend: 0,
    revnat: 0,
    packets: 0,
    bytes: 0,
    flows: 0,
    reply_packets: 0,
};

/// A well-mixed 32-bit value from a socket cookie: the same socket keeps
/// choosing the same slot while the backend set is unchanged.
#[inline(always)]
pub fn mix_cookie(cookie: u64) -> u32 {
    let mut h = cookie ^ (cookie >> 33);
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    (h >> 32) as u32
}
